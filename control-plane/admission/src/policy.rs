//! ValidatingAdmissionPolicy and MutatingAdmissionPolicy as kube-apiserver applies them
//! (`pkg/admission/plugin/policy/{generic,matching,validating,mutating}`), as pure functions:
//! the api server resolves the bindings' params and the request's namespace from its caches
//! and passes them in.
//!
//! A policy is compiled once per generation ([`compile_validating`], [`compile_mutating`]);
//! expressions that do not compile are kept as errors, reported by [`type_checking`] and, at
//! admission, handled by the policy's `failurePolicy` as kube does.

mod matching;
mod mutation;
mod typecheck;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use crate::cel::{
    self, Activation, Authorizer, Budget, CompileError, Declarations, EvalError, Program, Session,
    Variables,
};

pub use matching::{Matcher, matches};
pub use typecheck::type_checking;

/// `failurePolicy`: what an error (not a failed validation) does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Deny (kube's default).
    Fail,
    /// Admit as if the policy were not there.
    Ignore,
}

/// One expression of a policy: its text, where it sits in the policy, and what compiling it
/// gave.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub field: String,
    pub expression: String,
    pub program: Result<Program, CompileError>,
}

#[derive(Debug, Clone)]
struct Validation {
    check: Compiled,
    message: Option<String>,
    message_expression: Option<Compiled>,
    reason: Option<String>,
}

#[derive(Debug, Clone)]
struct AuditAnnotation {
    key: String,
    value: Compiled,
}

/// How a mutation's expression changes the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// A list of `JSONPatch{op, path, value}`.
    JsonPatch,
    /// An `Object{...}` merged as server-side apply would.
    ApplyConfiguration,
}

#[derive(Debug, Clone)]
struct Mutation {
    patch_type: PatchType,
    expr: Compiled,
}

/// A compiled ValidatingAdmissionPolicy or MutatingAdmissionPolicy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub name: String,
    pub mutating: bool,
    pub failure_policy: FailurePolicy,
    /// `spec.paramKind` as (apiVersion, kind).
    pub param_kind: Option<(String, String)>,
    /// `reinvocationPolicy: IfNeeded` (mutating policies).
    pub reinvoke_if_needed: bool,
    match_conditions: Vec<(String, Compiled)>,
    variables: Variables,
    variable_exprs: Vec<Compiled>,
    validations: Vec<Validation>,
    audit_annotations: Vec<AuditAnnotation>,
    mutations: Vec<Mutation>,
}

impl CompiledPolicy {
    /// Every expression that did not compile, with its field path and kube's message.
    pub fn compile_errors(&self) -> Vec<(String, String)> {
        self.expressions()
            .filter_map(|c| c.program.as_ref().err().map(|e| (c.field.clone(), e.to_string())))
            .collect()
    }

    fn expressions(&self) -> impl Iterator<Item = &Compiled> {
        self.match_conditions
            .iter()
            .map(|(_, c)| c)
            .chain(self.variable_exprs.iter())
            .chain(
                self.validations
                    .iter()
                    .flat_map(|v| std::iter::once(&v.check).chain(v.message_expression.as_ref())),
            )
            .chain(self.audit_annotations.iter().map(|a| &a.value))
            .chain(self.mutations.iter().map(|m| &m.expr))
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The names each kind of expression may use (kube's `OptionalVariableDeclarations`).
struct Scopes {
    has_params: bool,
}

impl Scopes {
    fn decls(&self, authorizer: bool, variables: &[String]) -> Declarations {
        let mut names = vec!["object", "oldObject", "request", "namespaceObject", "variables"];
        if self.has_params {
            names.push("params");
        }
        if authorizer {
            names.extend(["authorizer", "authorizer.requestResource"]);
        }
        Declarations::of(&names).with_variables(variables.iter().map(String::as_str))
    }
}

fn compile_at(field: String, expression: &str, decls: &Declarations) -> Compiled {
    Compiled {
        field,
        expression: expression.to_string(),
        program: cel::compile_with(expression, decls),
    }
}

/// The parts both kinds of policy share.
fn compile_common(policy: &Value, mutating: bool) -> (CompiledPolicy, Scopes, Vec<String>) {
    let spec = policy.get("spec").unwrap_or(&Value::Null);
    let param_kind = spec.get("paramKind").map(|pk| {
        (
            text(pk, "apiVersion").unwrap_or_default().to_string(),
            text(pk, "kind").unwrap_or_default().to_string(),
        )
    });
    let scopes = Scopes { has_params: param_kind.is_some() };
    let mut variables = Variables::new();
    let mut variable_exprs = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, v) in items(spec, "variables").enumerate() {
        let name = text(v, "name").unwrap_or_default().to_string();
        let compiled = compile_at(
            format!("spec.variables[{i}].expression"),
            text(v, "expression").unwrap_or_default(),
            &scopes.decls(true, &names),
        );
        variables.push(name.clone(), compiled.program.clone());
        variable_exprs.push(compiled);
        names.push(name);
    }
    let match_conditions = items(spec, "matchConditions")
        .enumerate()
        .map(|(i, mc)| {
            let name = text(mc, "name").unwrap_or_default().to_string();
            let compiled = compile_at(
                format!("spec.matchConditions[{i}].expression"),
                text(mc, "expression").unwrap_or_default(),
                &scopes.decls(true, &names),
            );
            (name, compiled)
        })
        .collect();
    let compiled = CompiledPolicy {
        name: policy
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        mutating,
        failure_policy: match text(spec, "failurePolicy") {
            Some("Ignore") => FailurePolicy::Ignore,
            _ => FailurePolicy::Fail,
        },
        param_kind,
        reinvoke_if_needed: text(spec, "reinvocationPolicy") == Some("IfNeeded"),
        match_conditions,
        variables,
        variable_exprs,
        validations: Vec::new(),
        audit_annotations: Vec::new(),
        mutations: Vec::new(),
    };
    (compiled, scopes, names)
}

/// Compiles a ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`).
pub fn compile_validating(policy: &Value) -> CompiledPolicy {
    let (mut compiled, scopes, names) = compile_common(policy, false);
    let spec = policy.get("spec").unwrap_or(&Value::Null);
    compiled.validations = items(spec, "validations")
        .enumerate()
        .map(|(i, v)| Validation {
            check: compile_at(
                format!("spec.validations[{i}].expression"),
                text(v, "expression").unwrap_or_default(),
                &scopes.decls(true, &names),
            ),
            message: text(v, "message").map(str::to_string),
            message_expression: text(v, "messageExpression").map(|m| {
                compile_at(
                    format!("spec.validations[{i}].messageExpression"),
                    m,
                    &scopes.decls(false, &names),
                )
            }),
            reason: text(v, "reason").map(str::to_string),
        })
        .collect();
    compiled.audit_annotations = items(spec, "auditAnnotations")
        .enumerate()
        .map(|(i, a)| AuditAnnotation {
            key: text(a, "key").unwrap_or_default().to_string(),
            value: compile_at(
                format!("spec.auditAnnotations[{i}].valueExpression"),
                text(a, "valueExpression").unwrap_or_default(),
                &scopes.decls(false, &names),
            ),
        })
        .collect();
    compiled
}

/// Compiles a MutatingAdmissionPolicy (`admissionregistration.k8s.io/v1beta1`).
pub fn compile_mutating(policy: &Value) -> CompiledPolicy {
    let (mut compiled, scopes, names) = compile_common(policy, true);
    let spec = policy.get("spec").unwrap_or(&Value::Null);
    compiled.mutations = items(spec, "mutations")
        .enumerate()
        .filter_map(|(i, m)| {
            let (patch_type, key, field) = match text(m, "patchType") {
                Some("JSONPatch") => (PatchType::JsonPatch, "jsonPatch", "jsonPatch"),
                _ => (PatchType::ApplyConfiguration, "applyConfiguration", "applyConfiguration"),
            };
            let expression = m.get(key).and_then(|p| text(p, "expression"))?;
            Some(Mutation {
                patch_type,
                expr: compile_at(
                    format!("spec.mutations[{i}].{field}.expression"),
                    expression,
                    &scopes.decls(true, &names),
                ),
            })
        })
        .collect();
    compiled
}

/// A request as policies see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyRequest<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    /// The plural (`deployments`).
    pub resource: &'a str,
    /// `""` for the resource itself.
    pub subresource: &'a str,
    /// The kind (`Deployment`), in `group`/`version`.
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Whether the resource is namespaced.
    pub namespaced: bool,
    /// The requester's `authentication.k8s.io/v1` UserInfo (`username`, `uid`, `groups`,
    /// `extra`).
    pub user_info: Option<&'a Value>,
    pub dry_run: bool,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The request's Namespace object (its labels drive `namespaceSelector`); `None` for
    /// cluster-scoped resources.
    pub namespace_object: Option<&'a Value>,
    /// The operation's options (`CreateOptions`, …).
    pub options: Option<&'a Value>,
}

impl PolicyRequest<'_> {
    /// kube's `CreateAdmissionRequest`: the `request` variable.
    pub fn request_json(&self) -> Value {
        let user = self.user_info.cloned().unwrap_or_else(|| json!({}));
        let user = json!({
            "username": user.get("username").cloned().unwrap_or_else(|| json!("")),
            "uid": user.get("uid").cloned().unwrap_or_else(|| json!("")),
            "groups": user.get("groups").cloned().unwrap_or_else(|| json!([])),
            "extra": user.get("extra").cloned().unwrap_or_else(|| json!({})),
        });
        let kind = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let resource =
            json!({"group": self.group, "version": self.version, "resource": self.resource});
        json!({
            "kind": kind,
            "resource": resource,
            "subResource": self.subresource,
            "requestKind": kind,
            "requestResource": resource,
            "requestSubResource": self.subresource,
            "name": self.name,
            "namespace": self.namespace,
            "operation": self.operation,
            "userInfo": user,
            "dryRun": self.dry_run,
            "options": self.options.cloned().unwrap_or(Value::Null),
        })
    }

    /// kube's `CreateNamespaceObject`: the Namespace without managed fields and the like;
    /// none for a Namespace request itself.
    fn namespace_json(&self) -> Option<Value> {
        if self.group.is_empty() && self.resource == "namespaces" {
            return None;
        }
        let ns = self.namespace_object?;
        let meta = ns.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let keep = [
            "name",
            "generateName",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "finalizers",
        ];
        let meta: serde_json::Map<String, Value> = meta
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(json!({
            "metadata": meta,
            "spec": ns.get("spec").cloned().unwrap_or_else(|| json!({})),
            "status": ns.get("status").cloned().unwrap_or_else(|| json!({})),
        }))
    }
}

/// What one (policy, binding, params) decided about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The denial: HTTP code, status reason and message.
    pub denied: Option<(u16, String, String)>,
    pub warnings: Vec<String>,
    /// Audit annotations to record: `<policy>/<key>` from `auditAnnotations`, and
    /// `validation.policy.admission.k8s.io/validation_failure` for `Audit` actions.
    pub audit_annotations: Vec<(String, String)>,
}

/// kube's `reasonToCode`.
fn reason_to_code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// Where a binding's params come from (`spec.paramRef`). The caller looks them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRef {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// A `LabelSelector`; with no name, the params are every object it selects.
    pub selector: Option<Value>,
    /// `parameterNotFoundAction: Deny`.
    pub deny_when_not_found: bool,
}

/// The binding's `spec.paramRef`, if any. It only matters when the policy has a
/// `paramKind`: without one, the policy is evaluated once, with `params` null.
pub fn param_ref(binding: &Value) -> Option<ParamRef> {
    let r = binding.pointer("/spec/paramRef")?;
    Some(ParamRef {
        name: text(r, "name").filter(|s| !s.is_empty()).map(str::to_string),
        namespace: text(r, "namespace").filter(|s| !s.is_empty()).map(str::to_string),
        selector: r.get("selector").cloned(),
        deny_when_not_found: text(r, "parameterNotFoundAction") == Some("Deny"),
    })
}

impl ParamRef {
    /// The namespace to read params from, for a namespaced `paramKind` (kube's
    /// `CollectParams`): the paramRef's, else the request's. `Err` is kube's configuration
    /// error.
    pub fn params_namespace(
        &self,
        request_namespace: &str,
        param_kind_namespaced: bool,
    ) -> Result<Option<String>, String> {
        if !param_kind_namespaced {
            if self.namespace.is_some() {
                return Err(
                    "paramRef.namespace must not be provided for a cluster-scoped `paramKind`"
                        .into(),
                );
            }
            return Ok(None);
        }
        match (&self.namespace, request_namespace) {
            (Some(ns), _) => Ok(Some(ns.clone())),
            (None, "") => Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into()),
            (None, ns) => Ok(Some(ns.to_string())),
        }
    }

    /// What to do when no params were found: `Ok` means admit without evaluating
    /// (`Allow`), `Err` is kube's configuration error (`Deny`), to pass to
    /// [`configuration_error`] or [`mutation_configuration_error`].
    pub fn when_not_found(&self) -> Result<(), String> {
        if self.deny_when_not_found {
            Err("no params found for policy binding with `Deny` parameterNotFoundAction".into())
        } else {
            Ok(())
        }
    }
}

fn binding_name(binding: &Value) -> &str {
    binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// A configuration error of a validating policy or its binding (params not found, a
/// namespaced paramRef on a cluster-scoped request), as kube reports it under the policy's
/// `failurePolicy`.
pub fn configuration_error(
    policy: &CompiledPolicy,
    binding: Option<&Value>,
    error: &str,
) -> Outcome {
    if policy.failure_policy == FailurePolicy::Ignore {
        return Outcome::default();
    }
    let message = match binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: failed to configure binding: {error}",
            policy.name,
            binding_name(b)
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: failed to configure policy: {error}",
            policy.name
        ),
    };
    Outcome { denied: Some((422, "Invalid".into(), message)), ..Outcome::default() }
}

/// As [`configuration_error`], for a mutating policy: `Err` is the denial message.
pub fn mutation_configuration_error(
    policy: &CompiledPolicy,
    binding: Option<&Value>,
    error: &str,
) -> Result<bool, String> {
    if policy.failure_policy == FailurePolicy::Ignore {
        return Ok(false);
    }
    Err(match binding {
        Some(b) => format!(
            "policy '{}' with binding '{}' denied request: failed to configure binding: {error}",
            policy.name,
            binding_name(b)
        ),
        None => {
            format!("policy {:?} denied request: failed to configure policy: {error}", policy.name)
        }
    })
}

/// An evaluation's error, as kube's `cel.Error` words it.
fn expression_error(c: &Compiled, e: &EvalError) -> String {
    match e {
        EvalError::BudgetExhausted => e.to_string(),
        _ => format!("expression '{}' resulted in error: {e}", c.expression),
    }
}

/// Evaluates `c`: `Err` is the message of its failure (compile or runtime) and whether it
/// was the binding's budget running out.
fn run(c: &Compiled, session: &Session<'_>, budget: &mut Budget) -> Result<Value, (String, bool)> {
    let program = c.program.as_ref().map_err(|e| (format!("compilation error: {e}"), false))?;
    session
        .eval(program, budget)
        .map_err(|e| (expression_error(c, &e), e == EvalError::BudgetExhausted))
}

/// The outcome of `matchConditions`: whether the policy applies, or kube's error.
fn match_conditions(policy: &CompiledPolicy, session: &Session<'_>) -> Result<bool, String> {
    let mut budget = Budget::per_binding();
    let mut errors = Vec::new();
    for (name, c) in &policy.match_conditions {
        match run(c, session, &mut budget) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Ok(false),
            Ok(_) => errors.push(format!("matchCondition {name:?} did not evaluate to a bool")),
            Err((e, _)) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(true),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// kube's `PolicyDecision`: one validation's result.
struct Decision {
    deny: bool,
    message: String,
    reason: Option<String>,
}

/// `MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
/// `maxAuditAnnotationValueLength`.
const MAX_AUDIT_VALUE_BYTES: usize = 10 * 1024;

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
        Value::String(_) => "string",
        Value::Null => "null_type",
    }
}

/// Runs a validating policy under one binding with the given params (`None` when the policy
/// has no `paramKind` or the binding no `paramRef`): matchConditions, validations with their
/// messages, audit annotations, then the binding's `validationActions`.
pub fn validate(
    policy: &CompiledPolicy,
    binding: &Value,
    params: Option<&Value>,
    req: &PolicyRequest<'_>,
    authz: Option<&dyn Authorizer>,
) -> Outcome {
    validate_prepared(policy, binding, params, req, &req.prepare(), authz)
}

/// The `request` and `namespaceObject` variables of a request, built once and shared by every
/// (policy, binding) the request meets.
pub struct Prepared {
    request: Value,
    namespace: Option<Value>,
}

impl PolicyRequest<'_> {
    pub fn prepare(&self) -> Prepared {
        Prepared { request: self.request_json(), namespace: self.namespace_json() }
    }
}

/// [`validate`] with the request's variables built beforehand ([`PolicyRequest::prepare`]).
pub fn validate_prepared(
    policy: &CompiledPolicy,
    binding: &Value,
    params: Option<&Value>,
    req: &PolicyRequest<'_>,
    prepared: &Prepared,
    authz: Option<&dyn Authorizer>,
) -> Outcome {
    let activation = Activation {
        object: req.object,
        old_object: req.old_object,
        request: &prepared.request,
        params,
        namespace_object: prepared.namespace.as_ref(),
        variables: Some(&policy.variables),
        authorizer: authz,
    };
    let session = Session::new(activation);
    let fail_deny = policy.failure_policy == FailurePolicy::Fail;
    let error_decision = |message: String| Decision { deny: fail_deny, message, reason: None };

    let decisions: Vec<Decision> = match match_conditions(policy, &session) {
        Ok(false) => return Outcome::default(),
        Err(e) => vec![error_decision(e)],
        Ok(true) => evaluate_validations(policy, &session, &error_decision),
    };

    let mut outcome = Outcome::default();
    let binding_name = binding_name(binding);
    let actions: Vec<&str> =
        items(binding.get("spec").unwrap_or(&Value::Null), "validationActions")
            .filter_map(Value::as_str)
            .collect();
    let mut denials = Vec::new();
    for (i, d) in decisions.iter().enumerate().filter(|(_, d)| d.deny) {
        for action in &actions {
            match *action {
                "Deny" => denials.push(d),
                "Warn" => outcome.warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{binding_name}': {}",
                    policy.name, d.message
                )),
                "Audit" => {
                    const KEY: &str = "validation.policy.admission.k8s.io/validation_failure";
                    // kube's AddAnnotation keeps the first value of a key.
                    if !outcome.audit_annotations.iter().any(|(k, _)| k == KEY) {
                        outcome.audit_annotations.push((KEY.to_string(), validation_failure_json(policy, binding, i, &d.message, &actions)));
                    }
                }
                _ => {}
            }
        }
    }

    // Audit annotations run with a budget of their own, as in kube.
    let mut budget = Budget::per_binding();
    for a in &policy.audit_annotations {
        match run(&a.value, &session, &mut budget) {
            Ok(Value::String(s)) => {
                let value = s.trim();
                if !value.is_empty() {
                    let key = format!("{}/{}", policy.name, a.key);
                    let value = truncate(value, MAX_AUDIT_VALUE_BYTES).to_string();
                    if !outcome.audit_annotations.iter().any(|(k, v)| *k == key && *v == value) {
                        outcome.audit_annotations.push((key, value));
                    }
                }
            }
            Ok(Value::Null) => {}
            Ok(other) => {
                if fail_deny {
                    denials_owned_push(
                        &mut outcome,
                        policy,
                        binding_name,
                        format!(
                            "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                            a.value.expression,
                            json_type_name(&other)
                        ),
                    );
                }
            }
            Err((e, _)) => {
                if fail_deny {
                    denials_owned_push(&mut outcome, policy, binding_name, e);
                }
            }
        }
    }

    if let Some(d) = denials.first() {
        let reason = d.reason.clone().unwrap_or_else(|| "Invalid".to_string());
        let message = format!(
            "ValidatingAdmissionPolicy '{}' with binding '{binding_name}' denied request: {}",
            policy.name, d.message
        );
        outcome.denied = Some((reason_to_code(&reason), reason, message));
    }
    outcome
}

/// An audit annotation error under `failurePolicy: Fail` denies (after any validation denial).
fn denials_owned_push(
    outcome: &mut Outcome,
    policy: &CompiledPolicy,
    binding_name: &str,
    message: String,
) {
    if outcome.denied.is_none() {
        outcome.denied = Some((
            422,
            "Invalid".to_string(),
            format!(
                "ValidatingAdmissionPolicy '{}' with binding '{binding_name}' denied request: {message}",
                policy.name
            ),
        ));
    }
}

fn validation_failure_json(
    policy: &CompiledPolicy,
    binding: &Value,
    index: usize,
    message: &str,
    actions: &[&str],
) -> String {
    // Field order as kube's `ValidationFailureValue` marshals it.
    let policy_name =
        binding.pointer("/spec/policyName").and_then(Value::as_str).unwrap_or(&policy.name);
    format!(
        "[{{\"message\":{},\"policy\":{},\"binding\":{},\"expressionIndex\":{index},\"validationActions\":{}}}]",
        Value::from(message),
        Value::from(policy_name),
        Value::from(binding_name(binding)),
        Value::from(actions.to_vec()),
    )
}

fn evaluate_validations(
    policy: &CompiledPolicy,
    session: &Session<'_>,
    error_decision: &dyn Fn(String) -> Decision,
) -> Vec<Decision> {
    let mut budget = Budget::per_binding();
    let mut decisions = Vec::with_capacity(policy.validations.len());
    for v in &policy.validations {
        let decision = match run(&v.check, session, &mut budget) {
            Err((e, true)) => return vec![error_decision(e)],
            Err((e, false)) => error_decision(e),
            Ok(Value::Bool(true)) => Decision { deny: false, message: String::new(), reason: None },
            Ok(_) => {
                let from_expression = match &v.message_expression {
                    Some(m) => match run(m, session, &mut budget) {
                        Ok(Value::String(s)) => {
                            let s = s.trim();
                            if s.len() > MAX_MESSAGE_BYTES || s.contains('\n') {
                                String::new()
                            } else {
                                s.to_string()
                            }
                        }
                        Err((e, true)) => {
                            decisions
                                .push(error_decision(format!("failed messageExpression: {e}")));
                            continue;
                        }
                        _ => String::new(),
                    },
                    None => String::new(),
                };
                let message = if !from_expression.is_empty() {
                    from_expression
                } else if let Some(m) =
                    v.message.as_deref().map(str::trim).filter(|m| !m.is_empty())
                {
                    m.to_string()
                } else {
                    format!("failed expression: {}", v.check.expression.trim())
                };
                Decision {
                    deny: true,
                    message,
                    reason: Some(v.reason.clone().unwrap_or_else(|| "Invalid".into())),
                }
            }
        };
        decisions.push(decision);
    }
    decisions
}

/// Applies a mutating policy under one binding with the given params to `object` (the
/// request's object, changed in place, mutation after mutation): matchConditions, then each
/// mutation in order. `Ok(changed)`; `Err` is kube's denial message when an expression or a
/// patch failed under `failurePolicy: Fail` (with `Ignore`, failed mutations are skipped).
/// The object is left partly mutated on `Err`; the request is denied anyway.
pub fn mutate(
    policy: &CompiledPolicy,
    binding: &Value,
    params: Option<&Value>,
    req: &PolicyRequest<'_>,
    object: &mut Value,
) -> Result<bool, String> {
    let before = object.clone();
    let request = req.request_json();
    let namespace = req.namespace_json();
    let deny = |message: String| {
        format!(
            "policy '{}' with binding '{}' denied request: {message}",
            policy.name,
            binding_name(binding)
        )
    };
    let mut first_error: Option<String> = None;
    {
        let current = object.clone();
        let activation = Activation {
            object: Some(&current),
            old_object: req.old_object,
            request: &request,
            params,
            namespace_object: namespace.as_ref(),
            variables: Some(&policy.variables),
            authorizer: None,
        };
        let session = Session::new(activation);
        match match_conditions(policy, &session) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                return if policy.failure_policy == FailurePolicy::Fail {
                    Err(deny(e))
                } else {
                    Ok(false)
                };
            }
        }
    }
    for m in &policy.mutations {
        let current = object.clone();
        let activation = Activation {
            object: Some(&current),
            old_object: req.old_object,
            request: &request,
            params,
            namespace_object: namespace.as_ref(),
            variables: Some(&policy.variables),
            authorizer: None,
        };
        let session = Session::new(activation);
        let mut budget = Budget::per_binding();
        let applied = match run(&m.expr, &session, &mut budget) {
            Err((e, _)) => Err(e),
            Ok(result) => match m.patch_type {
                PatchType::JsonPatch => mutation::apply_json_patch(object, &result),
                PatchType::ApplyConfiguration => mutation::apply_configuration(object, &result),
            },
        };
        if let Err(e) = applied {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error
        && policy.failure_policy == FailurePolicy::Fail
    {
        return Err(deny(e));
    }
    Ok(*object != before)
}
