//! The CEL validation rules of custom resources (`x-kubernetes-validations`), as kube's
//! apiextensions-apiserver compiles and runs them (`pkg/apiserver/schema/cel`,
//! `validation.go` and `compilation.go`), and the checks the CRD's own validation makes of
//! them (`pkg/apis/apiextensions/validation`: rule shape, compilation, estimated cost).
//!
//! A rule sees `self`, the value at its node, typed by the node's schema (see `decl`), and in
//! a transition rule `oldSelf`, the old value at the same path: it runs only on update and
//! only where that old value exists (properties and map values by key, items of
//! `x-kubernetes-list-type: map` lists by their keys), unless `optionalOldSelf` makes
//! `oldSelf` an optional. All the rules of one object share one cost budget.
//!
//! Compiled once per schema ([`Rules::compile`]). Validation converts the object to CEL
//! values only where rules are, once per node (a node's children borrow their values from
//! its conversion), and evaluates a node's rules in one session.

mod check;
mod decl;
mod fieldpath;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use cel::common::types::{CelList, CelMap, CelOptional, CelString};
use cel::common::value::{CowVal, Val};
use serde_json::{Value, json};
use skiff_admission::cel::{
    Budget, CompileError, Declarations, EvalError, Program, Scope, Session, compile_checked,
};

use crate::errors::{ErrorType, FieldError};
use check::Ty;
use decl::{Decl, Kind, decl_of, escape, to_cel};

pub(crate) use fieldpath::valid_field_path;
pub use skiff_admission::cel::{PER_CALL_LIMIT, RUNTIME_COST_BUDGET};

/// kube's `StaticEstimatedCostLimit`: the largest estimated cost of one rule (times the
/// number of times it may run in one object).
pub const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
/// kube's `StaticEstimatedCRDCostLimit`: the largest estimated cost of all the rules of a
/// version's schema.
pub const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
/// `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_EXPRESSION_SIZE: usize = 5 * 1024;

const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

/// Every `x-kubernetes-validations` rule of a version's schema (the `openAPIV3Schema`),
/// compiled once. Cheap to share (`Send + Sync`); validation holds no state.
#[derive(Debug)]
pub struct Rules {
    root: Option<Validator>,
}

/// What validating one object found: errors, and the warnings kube gives instead of errors
/// for values an update left unchanged (validation ratcheting).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Rules {
    /// Compiles the rules of `schema`. Errors are the CRD's own validation errors, with
    /// paths under `path` (e.g. `spec.versions[0].schema.openAPIV3Schema`): the shape of
    /// each rule (`rule: Required value: rule is not specified`), compilation
    /// (`rule: Invalid value: {"Rule":…}: compilation failed: ERROR: <input>:1:6: …`) and
    /// estimated cost (`rule: Forbidden: estimated rule cost exceeds budget by factor of …`).
    pub fn compile(schema: &Value, path: &str) -> Result<Rules, Vec<FieldError>> {
        let (rules, errors) = compile_with(schema, path, CompileOptions::default());
        if errors.is_empty() { Ok(rules) } else { Err(errors) }
    }

    /// The rules of a stored CRD's version, compiled to serve it: no cost estimate (kube
    /// holds rules to it when the CRD is written, not when it is served), and a rule that
    /// does not compile fails every object it applies to instead of being dropped.
    pub fn for_serving(schema: &Value) -> Rules {
        compile_with(schema, "", CompileOptions { cel: true, per_expression_cost: false }).0
    }

    /// No rule anywhere in the schema.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Evaluates every rule against a custom object (`obj`, the whole object) and, on
    /// update, the old one, within one [`RUNTIME_COST_BUDGET`]. Errors as kube reports them:
    /// `spec: Invalid value: "object": <message>`.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        self.check(obj, old).errors
    }

    /// [`Rules::validate`], with the warnings of ratcheted errors.
    pub fn check(&self, obj: &Value, old: Option<&Value>) -> Outcome {
        let mut run = Run {
            outcome: Outcome::default(),
            budget: Budget::new(RUNTIME_COST_BUDGET),
            stopped: false,
        };
        if let Some(root) = &self.root {
            let mut path = String::new();
            run.node(root, &mut path, obj, old, old.map(|o| (obj, o)), None);
        }
        run.outcome
    }
}

/// How the CRD's validation wants a schema's rules checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompileOptions {
    /// Report compilation and cost (kube skips both when the schema is not structural).
    pub cel: bool,
    /// Hold each rule to [`STATIC_ESTIMATED_COST_LIMIT`] (not for a version whose schema an
    /// update left unchanged).
    pub per_expression_cost: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { cel: true, per_expression_cost: true }
    }
}

/// Compiles `schema`'s rules; the errors are the CRD validation's.
pub(crate) fn compile_with(
    schema: &Value,
    path: &str,
    opts: CompileOptions,
) -> (Rules, Vec<FieldError>) {
    let mut build =
        Build { opts, shape: Vec::new(), cel: Vec::new(), total: 0, expensive: Vec::new() };
    let site = Site {
        path: path.to_string(),
        cardinality: Some(1),
        forbid_old_self: None,
        report: opts.cel,
    };
    let (root, _) = build.node(schema, Some(schema), decl_of(schema, true), false, &site);
    let mut errors = build.shape;
    errors.append(&mut build.cel);
    if opts.cel && build.total > STATIC_ESTIMATED_CRD_COST_LIMIT {
        for (rule_path, _) in &build.expensive {
            errors.push(FieldError::forbidden(
                rule_path.clone(),
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        errors.push(FieldError::forbidden(
            path.to_string(),
            cost_error_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                build.total,
                STATIC_ESTIMATED_CRD_COST_LIMIT,
            ),
        ));
    }
    (Rules { root }, errors)
}

/// kube's `getCostErrorMessage`.
fn cost_error_message(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// `field.Path.Child`.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// One schema node with rules, or with rules below it.
#[derive(Debug)]
struct Validator {
    decl: Arc<Decl>,
    /// The node's `type`, kube's bad value in a rule's error.
    schema_type: String,
    rules: Vec<Rule>,
    all_of: Vec<Validator>,
    properties: Vec<Property>,
    items: Option<Box<Validator>>,
    additional: Option<Box<Validator>>,
    /// `x-kubernetes-list-map-keys` of a `map` list: how old items are found.
    map_keys: Vec<String>,
    /// The node's value is a field, item or value of its parent's CEL value (so it can be
    /// borrowed from there): its type is the one the parent declares.
    borrowable: bool,
    uses_old_self: bool,
    optional_old_self: bool,
}

#[derive(Debug)]
struct Property {
    name: String,
    /// The name in the parent's CEL value, when the child's can be borrowed from there.
    cel_key: Option<String>,
    validator: Validator,
}

#[derive(Debug)]
struct Rule {
    rule: String,
    message: String,
    message_expression: String,
    reason: Option<String>,
    /// `fieldPath`, as kube normalizes it (`spec.x`), when it is valid.
    field_path: Option<String>,
    optional_old_self: bool,
    /// `None`: an empty rule, which kube skips.
    program: Option<Result<Program, String>>,
    message_program: Option<Program>,
    uses_old_self: bool,
}

impl Rule {
    /// kube's `ruleErrorString`: the message, else the rule.
    fn error_string(&self) -> &str {
        let message = self.message.trim();
        if message.is_empty() { self.rule.trim() } else { message }
    }
}

/// Where a node sits, for the CRD's validation.
struct Site {
    path: String,
    /// How many times the node may occur in one object; `None`: unbounded.
    cardinality: Option<u64>,
    /// The uncorrelatable ancestor (a list that is not a `map` list) under which `oldSelf`
    /// is refused.
    forbid_old_self: Option<String>,
    /// Report compilation and cost here (not inside `allOf` and friends).
    report: bool,
}

struct Build {
    opts: CompileOptions,
    shape: Vec<FieldError>,
    cel: Vec<FieldError>,
    total: u64,
    /// The (at most four) most expensive expressions of at least 1% of the CRD limit.
    expensive: Vec<(String, u64)>,
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// kube's `extractMaxElements`: how many children a node may have; `None`: unbounded.
fn max_children(schema: &Value) -> Option<u64> {
    let bound = |key: &str| schema.get(key).and_then(Value::as_i64).map(|n| n.max(0) as u64);
    match str_of(schema, "type") {
        "object" if schema.get("additionalProperties").is_some() => bound("maxProperties"),
        "array" => bound("maxItems"),
        _ => Some(1),
    }
}

fn has_newlines(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// A Go struct as `encoding/json` marshals it: HTML characters escaped.
fn go_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// kube's bad value for a rule: its internal `ValidationRule`, marshalled.
fn rule_shown(rule: &Value) -> String {
    let text = |k: &str| json!(str_of(rule, k));
    let reason = rule.get("reason").filter(|r| r.is_string()).cloned().unwrap_or(Value::Null);
    let optional = rule.get("optionalOldSelf").filter(|b| b.is_boolean()).cloned();
    // Field order matters to the text; serde_json's maps are sorted, so build it by hand.
    format!(
        "{{\"Rule\":{},\"Message\":{},\"MessageExpression\":{},\"Reason\":{},\"FieldPath\":{},\"OptionalOldSelf\":{}}}",
        go_json(&text("rule")),
        go_json(&text("message")),
        go_json(&text("messageExpression")),
        go_json(&reason),
        go_json(&text("fieldPath")),
        go_json(&optional.unwrap_or(Value::Null)),
    )
}

const REASONS: [&str; 4] =
    ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

impl Build {
    /// Walks `validation` (the schema whose rules apply), typed by `decl`, over the node
    /// schema `node` (the same schema, except under `allOf`). Returns the node's validator
    /// and whether the CRD's validation found a problem with a rule at or below it.
    fn node(
        &mut self,
        validation: &Value,
        node: Option<&Value>,
        decl: Option<Arc<Decl>>,
        borrowable: bool,
        site: &Site,
    ) -> (Option<Validator>, bool) {
        let mut bad = false;
        let list_map = str_of(validation, "x-kubernetes-list-type") == "map";
        let child_site = |name: &str, forbid: Option<String>, report: bool| {
            let cardinality = match (site.cardinality, max_children(validation)) {
                (Some(c), Some(m)) => Some(c.saturating_mul(m)),
                _ => None,
            };
            Site {
                path: child(&site.path, name),
                cardinality,
                forbid_old_self: forbid.or_else(|| site.forbid_old_self.clone()),
                report,
            }
        };

        let mut additional = None;
        if let Some(values) = validation.get("additionalProperties").filter(|a| a.is_object()) {
            let values_node =
                node.and_then(|n| n.get("additionalProperties")).filter(|a| a.is_object());
            let (child_decl, from_parent) = match decl.as_deref().map(|d| &d.kind) {
                Some(Kind::Map { values }) => (Some(values.clone()), true),
                _ => (values_node.and_then(|v| decl_of(v, is_embedded(v))), false),
            };
            let (v, b) = self.node(
                values,
                values_node,
                child_decl,
                from_parent,
                &child_site("additionalProperties", None, site.report),
            );
            bad |= b;
            additional = v.map(Box::new);
        }

        let mut properties = Vec::new();
        if let Some(props) = validation.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let prop_node = node.and_then(|n| n.get("properties")).and_then(|p| p.get(name));
                let parent_field = decl.as_deref().and_then(|d| match &d.kind {
                    Kind::Object { fields } => fields.get(name).map(|f| f.decl.clone()),
                    _ => None,
                });
                let from_parent = parent_field.is_some();
                let child_decl =
                    parent_field.or_else(|| prop_node.and_then(|p| decl_of(p, is_embedded(p))));
                let path = format!("properties[{name}]");
                let cel_key = escape(name).filter(|_| from_parent);
                let (v, b) = self.node(
                    prop,
                    prop_node,
                    child_decl,
                    cel_key.is_some(),
                    &child_site(&path, None, site.report),
                );
                bad |= b;
                if let Some(validator) = v {
                    properties.push(Property { name: name.clone(), cel_key, validator });
                }
            }
        }

        let mut all_of = Vec::new();
        for (key, runtime) in [("allOf", true), ("oneOf", false), ("anyOf", false)] {
            for (i, sub) in
                validation.get(key).and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                let sub_site = Site {
                    path: format!("{}[{i}]", child(&site.path, key)),
                    cardinality: site.cardinality,
                    forbid_old_self: site.forbid_old_self.clone(),
                    report: false,
                };
                let sub_node = if runtime { node } else { None };
                let sub_decl = if runtime { decl.clone() } else { None };
                let (v, b) = self.node(sub, sub_node, sub_decl, borrowable, &sub_site);
                bad |= b;
                all_of.extend(v);
            }
        }
        if let Some(not) = validation.get("not").filter(|n| n.is_object()) {
            let not_site = Site {
                path: child(&site.path, "not"),
                cardinality: site.cardinality,
                forbid_old_self: site.forbid_old_self.clone(),
                report: false,
            };
            bad |= self.node(not, None, None, false, &not_site).1;
        }

        let mut items = None;
        if let Some(item) = validation.get("items").filter(|i| i.is_object()) {
            let item_node = node.and_then(|n| n.get("items")).filter(|i| i.is_object());
            let (child_decl, from_parent) = match decl.as_deref().map(|d| &d.kind) {
                Some(Kind::List { items }) => (Some(items.clone()), true),
                _ => (item_node.and_then(|i| decl_of(i, is_embedded(i))), false),
            };
            // Only items of `map` lists are correlated with old items.
            let forbid = (!list_map).then(|| site.path.clone());
            let (v, b) = self.node(
                item,
                item_node,
                child_decl,
                from_parent,
                &child_site("items", forbid, site.report),
            );
            bad |= b;
            items = v.map(Box::new);
        }

        let xvs: &[Value] = validation
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let rules_path = child(&site.path, "x-kubernetes-validations");
        let shape_before = self.shape.len();
        for (i, xv) in xvs.iter().enumerate() {
            self.rule_shape(xv, &format!("{rules_path}[{i}]"), node.unwrap_or(validation));
        }
        bad |= self.shape.len() > shape_before;

        let mut rules = Vec::new();
        if !xvs.is_empty() {
            let report = site.report && !bad;
            match &decl {
                None => {
                    if report {
                        self.cel.push(FieldError::new(
                            ErrorType::Internal,
                            rules_path.clone(),
                            None,
                            "internal error: failed to construct type information for x-kubernetes-validations rules: unable to convert structural schema to CEL declarations",
                        ));
                    }
                }
                Some(d) => {
                    for (i, xv) in xvs.iter().enumerate() {
                        let at = format!("{rules_path}[{i}]");
                        let rule = self.rule(xv, d, node.unwrap_or(validation), &at, site, report);
                        rules.push(rule);
                    }
                }
            }
        }

        let Some(decl) = decl else { return (None, bad) };
        if node.is_none() {
            return (None, bad);
        }
        let uses_old_self = rules.iter().any(|r| r.uses_old_self);
        let optional_old_self = rules.iter().any(|r| r.uses_old_self && r.optional_old_self);
        let empty = rules.is_empty()
            && all_of.is_empty()
            && properties.is_empty()
            && items.is_none()
            && additional.is_none();
        if empty {
            return (None, bad);
        }
        let map_keys = if list_map {
            validation
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let validator = Validator {
            decl,
            schema_type: str_of(node.unwrap_or(validation), "type").to_string(),
            rules,
            all_of,
            properties,
            items,
            additional,
            map_keys,
            borrowable,
            uses_old_self,
            optional_old_self,
        };
        (Some(validator), bad)
    }

    /// The checks kube makes of a rule's fields before compiling it.
    fn rule_shape(&mut self, xv: &Value, at: &str, schema: &Value) {
        let rule = str_of(xv, "rule");
        let message = str_of(xv, "message");
        let trimmed_rule = rule.trim();
        let trimmed_message = message.trim();
        let field = |name: &str| format!("{at}.{name}");
        if trimmed_rule.is_empty() {
            self.shape.push(FieldError::required(field("rule"), "rule is not specified"));
        } else if !message.is_empty() && trimmed_message.is_empty() {
            self.shape.push(FieldError::invalid(
                field("message"),
                json!(message),
                "must be non-empty if specified",
            ));
        } else if has_newlines(trimmed_message) {
            self.shape.push(FieldError::invalid(
                field("message"),
                json!(message),
                "must not contain line breaks",
            ));
        } else if has_newlines(trimmed_rule) && trimmed_message.is_empty() {
            self.shape.push(FieldError::required(
                field("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let message_expression = str_of(xv, "messageExpression");
        if !message_expression.is_empty() && message_expression.trim().is_empty() {
            self.shape.push(FieldError::required(
                field("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = xv.get("reason").and_then(Value::as_str)
            && !REASONS.contains(&reason)
        {
            self.shape.push(FieldError::not_supported(field("reason"), json!(reason), &REASONS));
        }
        let field_path = str_of(xv, "fieldPath");
        if !field_path.is_empty() && field_path.trim().is_empty() {
            self.shape.push(FieldError::invalid(
                field("fieldPath"),
                json!(field_path),
                "must be non-empty if specified",
            ));
        }
        if has_newlines(field_path) {
            self.shape.push(FieldError::invalid(
                field("fieldPath"),
                json!(field_path),
                "must not contain line breaks",
            ));
        }
        if !field_path.is_empty() && valid_field_path(field_path, schema, true).is_err() {
            self.shape.push(FieldError::invalid(
                field("fieldPath"),
                json!(field_path),
                "must be a valid path",
            ));
        }
    }

    /// Compiles one rule; reports its compilation, cost and `oldSelf` use when `report`.
    fn rule(
        &mut self,
        xv: &Value,
        decl: &Arc<Decl>,
        schema: &Value,
        at: &str,
        site: &Site,
        report: bool,
    ) -> Rule {
        let text = |k: &str| str_of(xv, k).to_string();
        let optional_flag = xv.get("optionalOldSelf").and_then(Value::as_bool);
        let optional_old_self = optional_flag == Some(true);
        let mut rule = Rule {
            rule: text("rule"),
            message: text("message"),
            message_expression: text("messageExpression"),
            reason: xv.get("reason").and_then(Value::as_str).map(str::to_string),
            field_path: None,
            optional_old_self,
            program: None,
            message_program: None,
            uses_old_self: false,
        };
        let field_path = str_of(xv, "fieldPath");
        if !field_path.is_empty() {
            rule.field_path = valid_field_path(field_path, schema, true).ok().map(|(p, _)| p);
        }
        if rule.rule.trim().is_empty() {
            return rule;
        }
        let self_ty = Ty::of(decl);
        let old_ty = if optional_old_self {
            Ty::Optional(Box::new(self_ty.clone()))
        } else {
            self_ty.clone()
        };
        let decls = Declarations::of(&["self", "oldSelf"]);
        let mut found = None;
        let compiled = compile_checked(&rule.rule, &decls, &mut |expr| {
            let checked = check::check(expr, &self_ty, &old_ty);
            let issues = checked.issues.clone();
            found = Some(checked);
            issues
        });
        let field = |name: &str| format!("{at}.{name}");
        let mut cost = 0;
        let result = match (compiled, found) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), Some(checked)) if !matches!(checked.ty, Ty::Bool | Ty::Dyn(_)) => {
                Err("cel expression must evaluate to a bool".to_string())
            }
            (Ok(program), checked) => {
                if let Some(checked) = checked {
                    cost = checked.cost;
                    rule.uses_old_self = checked.uses_old_self;
                }
                Ok(program)
            }
        };
        let compiled_ok = result.is_ok();
        let mut message_error = None;
        let mut message_cost = 0;
        if compiled_ok && !rule.message_expression.is_empty() {
            let mut found = None;
            let compiled = compile_checked(&rule.message_expression, &decls, &mut |expr| {
                let checked = check::check(expr, &self_ty, &old_ty);
                let issues = checked.issues.clone();
                found = Some(checked);
                issues
            });
            match (compiled, found) {
                (Err(CompileError::Syntax(e) | CompileError::Undeclared(e)), _) => {
                    message_error = Some(format!("messageExpression compilation failed: {e}"));
                }
                (Ok(_), Some(checked)) if !matches!(checked.ty, Ty::String(_) | Ty::Dyn(_)) => {
                    message_error = Some("messageExpression must evaluate to a string".to_string());
                }
                (Ok(program), checked) => {
                    message_cost = checked.map_or(0, |c| c.cost);
                    rule.message_program = Some(program);
                }
            }
        }
        if report {
            let rule_path = field("rule");
            let cardinality =
                site.cardinality.unwrap_or(decl::MAX_REQUEST_SIZE / (decl.min_size + 1));
            let expression_cost = if cost == 0 { 0 } else { cost.saturating_mul(cardinality) };
            if self.opts.per_expression_cost && expression_cost > STATIC_ESTIMATED_COST_LIMIT {
                self.cel.push(FieldError::forbidden(
                    rule_path.clone(),
                    cost_error_message(
                        "estimated rule cost",
                        expression_cost,
                        STATIC_ESTIMATED_COST_LIMIT,
                    ),
                ));
            }
            self.observe(&rule_path, expression_cost);
            if let Err(detail) = &result {
                self.cel.push(FieldError::invalid_shown(
                    rule_path.clone(),
                    &rule_shown(xv),
                    detail,
                ));
            }
            if let Some(detail) = &message_error {
                self.cel.push(FieldError::invalid_shown(
                    field("messageExpression"),
                    &rule_shown(xv),
                    detail,
                ));
            } else if rule.message_program.is_some() {
                if self.opts.per_expression_cost && message_cost > STATIC_ESTIMATED_COST_LIMIT {
                    self.cel.push(FieldError::forbidden(
                        field("messageExpression"),
                        cost_error_message(
                            "estimated messageExpression cost",
                            message_cost,
                            STATIC_ESTIMATED_COST_LIMIT,
                        ),
                    ));
                }
                self.observe(&field("messageExpression"), message_cost);
            }
            if rule.uses_old_self {
                if let Some(within) = &site.forbid_old_self {
                    self.cel.push(FieldError::invalid(
                        rule_path,
                        json!(rule.rule),
                        format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
                    ));
                }
            } else if let Some(flag) = optional_flag {
                self.cel.push(FieldError::invalid(
                    field("optionalOldSelf"),
                    json!(flag),
                    "may not be set if oldSelf is not used in rule",
                ));
            }
        }
        rule.program = Some(result);
        rule
    }

    /// kube's `TotalCost.ObserveExpressionCost`.
    fn observe(&mut self, path: &str, cost: u64) {
        self.total = self.total.saturating_add(cost);
        if cost < STATIC_ESTIMATED_CRD_COST_LIMIT / 100 {
            return;
        }
        self.expensive.push((path.to_string(), cost));
        self.expensive.sort_by_key(|e| std::cmp::Reverse(e.1));
        self.expensive.truncate(4);
    }
}

fn is_embedded(schema: &Value) -> bool {
    schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true)
}

/// One validation of one object.
struct Run {
    outcome: Outcome,
    budget: Budget,
    /// kube stops every further rule after a cost error.
    stopped: bool,
}

/// `parent`'s field, item or value: the CEL value of a child node, when it is there.
fn cel_child<'b, 'v>(parent: &'b (dyn Val + 'v), key: ChildKey<'_>) -> Option<&'b (dyn Val + 'v)> {
    match key {
        ChildKey::Name(name) => {
            let map = parent.downcast_ref::<CelMap>()?;
            match cel::common::traits::Indexer::get(map, &CelString::from(name)) {
                Ok(CowVal::Borrowed(v)) => Some(v),
                _ => None,
            }
        }
        ChildKey::Index(i) => parent.downcast_ref::<CelList>()?.inner().get(i).map(|b| b.as_ref()),
    }
}

#[derive(Clone, Copy)]
enum ChildKey<'k> {
    Name(&'k str),
    Index(usize),
}

/// The old item of a `map` list matching `item`'s keys (the first such, as kube's
/// `MapList` finds it).
fn correlated_item<'o>(old_items: &'o [Value], keys: &[String], item: &Value) -> Option<&'o Value> {
    let key_of = |v: &Value| -> Option<Vec<Value>> {
        let obj = v.as_object()?;
        keys.iter()
            .map(|k| {
                obj.get(k).filter(|x| !x.is_array() && !x.is_object() && !x.is_null()).cloned()
            })
            .collect()
    };
    let want = key_of(item)?;
    old_items.iter().find(|o| key_of(o).as_ref() == Some(&want))
}

impl Run {
    fn error(&mut self, e: FieldError) {
        self.outcome.errors.push(e);
    }

    /// Validates `obj` at `v`: its rules, then its `allOf` validators and children.
    /// `correlated`: the nearest (new, old) pair up the tree whose old value was found,
    /// which decides whether an error is ratcheted.
    fn node<'v>(
        &mut self,
        v: &'v Validator,
        path: &mut String,
        obj: &'v Value,
        old: Option<&'v Value>,
        correlated: Option<(&'v Value, &'v Value)>,
        parent_cel: Option<&(dyn Val + 'v)>,
    ) {
        if self.stopped || obj.is_null() {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        let correlated = match old {
            Some(o) => Some((obj, o)),
            None => correlated,
        };
        // Converted here only for rules here; children borrow from it.
        let converted = (parent_cel.is_none() && !v.rules.is_empty()).then(|| to_cel(obj, &v.decl));
        let self_cel: Option<&(dyn Val + 'v)> = parent_cel.or(converted.as_deref());
        if let Some(self_val) = self_cel.filter(|_| !v.rules.is_empty()) {
            self.rules(v, path, self_val, old, correlated);
            if self.stopped {
                return;
            }
        }
        for sub in &v.all_of {
            self.node(sub, path, obj, old, correlated, self_cel);
            if self.stopped {
                return;
            }
        }
        let len = path.len();
        match obj {
            Value::Array(list) => {
                let Some(items) = &v.items else { return };
                let old_items = old.and_then(Value::as_array).filter(|_| !v.map_keys.is_empty());
                for (i, item) in list.iter().enumerate() {
                    let old_item = old_items.and_then(|o| correlated_item(o, &v.map_keys, item));
                    use std::fmt::Write;
                    let _ = write!(path, "[{i}]");
                    let cel = self_cel
                        .filter(|_| items.borrowable)
                        .and_then(|c| cel_child(c, ChildKey::Index(i)));
                    self.node(items, path, item, old_item, correlated, cel);
                    path.truncate(len);
                    if self.stopped {
                        return;
                    }
                }
            }
            Value::Object(map) => {
                let old_map = old.and_then(Value::as_object);
                if let Some(values) = &v.additional {
                    for (k, value) in map {
                        path.push('[');
                        path.push_str(k);
                        path.push(']');
                        let cel = self_cel
                            .filter(|_| values.borrowable)
                            .and_then(|c| cel_child(c, ChildKey::Name(k)));
                        self.node(
                            values,
                            path,
                            value,
                            old_map.and_then(|o| o.get(k)),
                            correlated,
                            cel,
                        );
                        path.truncate(len);
                        if self.stopped {
                            return;
                        }
                    }
                }
                for prop in &v.properties {
                    let Some(value) = map.get(&prop.name) else { continue };
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&prop.name);
                    let cel = match (self_cel, &prop.cel_key) {
                        (Some(c), Some(key)) => cel_child(c, ChildKey::Name(key)),
                        _ => None,
                    };
                    let old_value = old_map.and_then(|o| o.get(&prop.name));
                    self.node(&prop.validator, path, value, old_value, correlated, cel);
                    path.truncate(len);
                    if self.stopped {
                        return;
                    }
                }
            }
            _ => {}
        }
    }

    /// Evaluates the rules of one node, `self` being `self_val`.
    fn rules<'v>(
        &mut self,
        v: &'v Validator,
        path: &str,
        self_val: &(dyn Val + 'v),
        old: Option<&'v Value>,
        correlated: Option<(&'v Value, &'v Value)>,
    ) {
        let bad_value = || json!(v.schema_type);
        if self.budget.remaining() == 0 {
            self.error(FieldError::invalid(path, bad_value(), OUT_OF_BUDGET));
            self.stopped = true;
            return;
        }
        let old_cel = old.filter(|_| v.uses_old_self).map(|o| to_cel(o, &v.decl));
        let optional = v.optional_old_self.then(|| match &old_cel {
            Some(o) => CelOptional::of(o.clone_as_boxed()),
            None => CelOptional::none(),
        });
        let plain = Session::scoped(Scope { self_value: self_val, old_self: old_cel.as_deref() });
        let optional_session = optional.as_ref().map(|o| {
            Session::scoped(Scope { self_value: self_val, old_self: Some(o as &dyn Val) })
        });
        for rule in &v.rules {
            let program = match &rule.program {
                None => continue,
                Some(Err(e)) => {
                    self.error(FieldError::invalid(
                        path,
                        bad_value(),
                        format!("rule compile error: {e}"),
                    ));
                    continue;
                }
                Some(Ok(p)) => p,
            };
            if rule.uses_old_self && old.is_none() && !rule.optional_old_self {
                continue;
            }
            let session = match (&optional_session, rule.optional_old_self) {
                (Some(s), true) => s,
                _ => &plain,
            };
            let r = rule.error_string();
            match session.eval(program, &mut self.budget) {
                Ok(Value::Bool(true)) => continue,
                Ok(_) => {}
                Err(EvalError::BudgetExhausted) => {
                    self.error(FieldError::invalid(path, bad_value(), OUT_OF_BUDGET));
                    self.stopped = true;
                    return;
                }
                Err(e @ EvalError::CostExceeded { .. }) => {
                    self.error(FieldError::invalid(
                        path,
                        bad_value(),
                        format!("'{e}': no further validation rules will be run due to call cost exceeds limit for rule: {r}"),
                    ));
                    self.stopped = true;
                    return;
                }
                Err(EvalError::Runtime(e)) => {
                    let detail = if e.starts_with("no such overload") {
                        format!(
                            "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {r}"
                        )
                    } else {
                        format!("{e} evaluating rule: {r}")
                    };
                    self.error(FieldError::invalid(path, bad_value(), detail));
                    continue;
                }
            }
            let at = match &rule.field_path {
                Some(p) => child(path, p),
                None => path.to_string(),
            };
            let mut detail = None;
            if let Some(message) = &rule.message_program {
                match session.eval(message, &mut self.budget) {
                    Ok(Value::String(s)) => {
                        let s = s.trim();
                        if !s.is_empty()
                            && s.len() <= MAX_MESSAGE_EXPRESSION_SIZE
                            && !s.contains('\n')
                        {
                            detail = Some(s.to_string());
                        }
                    }
                    Ok(_) | Err(EvalError::Runtime(_)) => {}
                    Err(EvalError::BudgetExhausted) => {
                        self.error(FieldError::invalid(
                            at,
                            bad_value(),
                            "messageExpression evaluation failed due to running out of cost budget, no further validation rules will be run",
                        ));
                        self.stopped = true;
                        return;
                    }
                    Err(EvalError::CostExceeded { .. }) => {
                        self.error(FieldError::invalid(
                            at,
                            bad_value(),
                            format!(
                                "no further validation rules will be run due to call cost exceeds limit for messageExpression: {:?}",
                                rule.message_expression
                            ),
                        ));
                        self.stopped = true;
                        return;
                    }
                }
            }
            let detail = detail.unwrap_or_else(|| {
                let message = rule.message.trim();
                if message.is_empty() { format!("failed rule: {r}") } else { message.to_string() }
            });
            let e = match rule.reason.as_deref() {
                Some("FieldValueForbidden") => FieldError::forbidden(at, detail),
                Some("FieldValueRequired") => FieldError::required(at, detail),
                Some("FieldValueDuplicate") => FieldError::duplicate(at, bad_value()),
                _ => FieldError::invalid(at, bad_value(), detail),
            };
            // Ratcheting: an error of a value the update left as it was is only a warning
            // (not for transition rules, which are about the change).
            let unchanged = correlated.is_some_and(|(new, old)| new == old);
            if !rule.uses_old_self && unchanged {
                self.outcome.warnings.push(e.to_string());
            } else {
                self.error(e);
            }
        }
    }
}
