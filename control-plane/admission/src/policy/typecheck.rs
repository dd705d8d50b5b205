//! A policy's `status.typeChecking` (kube's `validating/typechecking.go`): warnings for
//! expressions that do not compile, and for field references the schemas of `params` (the
//! `paramKind`) and of `object`/`oldObject` (the kinds the policy's resource rules name) do
//! not have.
//!
//! Without a type checker, the field check follows plain paths only: `object.a.b`,
//! `object.a[0].b`, `params.x.y` outside comprehension variables, through `properties`,
//! `items` and `additionalProperties`, stopping at schemas it cannot see into
//! (`x-kubernetes-preserve-unknown-fields`, `$ref`, `allOf`, no `properties`).

use cel::common::ast::{Expr, IdedExpr};
use serde_json::{Value, json};

use super::{compile_mutating, compile_validating};

/// Kinds of built-in resources, for naming the schemas of matched resources.
const KINDS: &[(&str, &str, &str)] = &[
    ("", "pods", "Pod"),
    ("", "services", "Service"),
    ("", "configmaps", "ConfigMap"),
    ("", "secrets", "Secret"),
    ("", "namespaces", "Namespace"),
    ("", "nodes", "Node"),
    ("", "serviceaccounts", "ServiceAccount"),
    ("", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("", "persistentvolumes", "PersistentVolume"),
    ("apps", "deployments", "Deployment"),
    ("apps", "statefulsets", "StatefulSet"),
    ("apps", "daemonsets", "DaemonSet"),
    ("apps", "replicasets", "ReplicaSet"),
    ("batch", "jobs", "Job"),
    ("batch", "cronjobs", "CronJob"),
    ("networking.k8s.io", "ingresses", "Ingress"),
    ("networking.k8s.io", "networkpolicies", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "roles", "Role"),
    ("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding"),
];

/// kube's `GroupVersionKind.String()`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// The (apiVersion, kind)s the policy's `matchConstraints.resourceRules` name explicitly.
fn matched_kinds(policy: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = policy.pointer("/spec/matchConstraints/resourceRules").and_then(Value::as_array);
    for rule in rules.into_iter().flatten() {
        let list = |k: &str| -> Vec<String> {
            rule.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        for group in list("apiGroups") {
            for version in list("apiVersions") {
                for resource in list("resources") {
                    let found = KINDS.iter().find(|(g, r, _)| *g == group && *r == resource);
                    if let (Some((_, _, kind)), false) = (found, version == "*") {
                        let api_version = if group.is_empty() {
                            version.clone()
                        } else {
                            format!("{group}/{version}")
                        };
                        let entry = (api_version, kind.to_string());
                        if !out.contains(&entry) {
                            out.push(entry);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The schema of property `field` of `schema`; `Err(())` when the schema has no such
/// field, `Ok(None)` when it cannot tell.
fn property<'s>(schema: &'s Value, field: &str) -> Result<Option<&'s Value>, ()> {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("$ref").is_some()
        || schema.get("allOf").is_some()
    {
        return Ok(None);
    }
    if let Some(p) = schema.get("properties").and_then(|p| p.get(field)) {
        return Ok(Some(p));
    }
    if let Some(extra) = schema.get("additionalProperties") {
        return Ok(extra.is_object().then_some(extra));
    }
    if schema.get("properties").is_some() {
        return Err(());
    }
    Ok(None)
}

/// Steps from a root variable to a node: fields, and `[_]` indexing.
enum Step<'e> {
    Field(&'e str),
    Index,
}

/// The root variable and steps of `object.a[0].b`, if the expression is such a path.
fn path(expr: &IdedExpr) -> Option<(&str, Vec<(u64, Step<'_>)>)> {
    let mut steps = Vec::new();
    let mut e = expr;
    loop {
        match &e.expr {
            Expr::Ident(name) => {
                steps.reverse();
                return Some((name.as_str(), steps));
            }
            Expr::Select(s) => {
                steps.push((e.id, Step::Field(s.field.as_str())));
                e = &s.operand;
            }
            Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 => {
                steps.push((e.id, Step::Index));
                e = &c.args[0];
            }
            _ => return None,
        }
    }
}

/// The first field `schema` lacks on a path from `root` in `expr` (node id and field).
fn unknown_field<'e>(
    expr: &'e IdedExpr,
    root: &str,
    schema: &Value,
    shadowed: &mut Vec<String>,
) -> Option<(u64, &'e str)> {
    if let Some((r, steps)) = path(expr)
        && r == root
        && !shadowed.iter().any(|s| s == root)
        && !steps.is_empty()
    {
        let mut current = Some(schema);
        for (id, step) in &steps {
            let Some(s) = current else { break };
            current = match step {
                Step::Field(f) => match property(s, f) {
                    Ok(next) => next,
                    Err(()) => return Some((*id, f)),
                },
                Step::Index => s
                    .get("items")
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
            };
        }
    }
    let walk =
        |e: &'e IdedExpr, shadowed: &mut Vec<String>| unknown_field(e, root, schema, shadowed);
    match &expr.expr {
        Expr::Select(s) => walk(&s.operand, shadowed),
        Expr::Call(c) => {
            c.target.iter().map(|t| t.as_ref()).chain(c.args.iter()).find_map(|e| walk(e, shadowed))
        }
        Expr::List(l) => l.elements.iter().find_map(|e| walk(e, shadowed)),
        Expr::Map(m) => m.entries.iter().find_map(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(e) => {
                walk(&e.key, shadowed).or_else(|| walk(&e.value, shadowed))
            }
            cel::common::ast::EntryExpr::StructField(f) => walk(&f.value, shadowed),
        }),
        Expr::Struct(s) => s.entries.iter().find_map(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(e) => walk(&e.value, shadowed),
            cel::common::ast::EntryExpr::StructField(f) => walk(&f.value, shadowed),
        }),
        Expr::Comprehension(c) => {
            let found = walk(&c.iter_range, shadowed).or_else(|| walk(&c.accu_init, shadowed));
            if found.is_some() {
                return found;
            }
            let before = shadowed.len();
            shadowed.extend(
                [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            let found =
                [&c.loop_cond, &c.loop_step, &c.result].into_iter().find_map(|e| walk(e, shadowed));
            shadowed.truncate(before);
            found
        }
        _ => None,
    }
}

/// `status.typeChecking` for a ValidatingAdmissionPolicy or MutatingAdmissionPolicy:
/// `{"expressionWarnings": [{"fieldRef", "warning"}]}`, or `{}` when there is nothing to say.
/// `schema_lookup(apiVersion, kind)` gives a resolved OpenAPI v3 schema.
pub fn type_checking(policy: &Value, schema_lookup: &dyn Fn(&str, &str) -> Option<Value>) -> Value {
    let mutating = policy.pointer("/spec/mutations").is_some();
    let compiled = if mutating { compile_mutating(policy) } else { compile_validating(policy) };
    let mut contexts: Vec<(&str, String, Value)> = Vec::new();
    if let Some((api_version, kind)) = &compiled.param_kind
        && let Some(schema) = schema_lookup(api_version, kind)
    {
        contexts.push(("params", gvk_string(api_version, kind), schema));
    }
    for (api_version, kind) in matched_kinds(policy) {
        if let Some(schema) = schema_lookup(&api_version, &kind) {
            contexts.push(("object", gvk_string(&api_version, &kind), schema.clone()));
            contexts.push(("oldObject", gvk_string(&api_version, &kind), schema));
        }
    }

    let mut warnings = Vec::new();
    for c in compiled.expressions() {
        let mut lines = Vec::new();
        match &c.program {
            Err(e) => {
                lines.push(e.to_string().trim_start_matches("compilation failed: ").to_string())
            }
            Ok(_) => {
                // Field checks run on the expression as written, not the instrumented one.
                let Ok(parsed) = cel::Env::stdlib().compile(&c.expression) else { continue };
                for (root, gvk, schema) in &contexts {
                    if let Some((id, field)) =
                        unknown_field(parsed.expression(), root, schema, &mut Vec::new())
                    {
                        let offset = parsed
                            .source_info()
                            .offset_for(id)
                            .map_or(0, |(start, _)| start as usize);
                        let at = field_offset(&c.expression, offset, field);
                        let issue = crate::cel::error_at(
                            &c.expression,
                            at,
                            &format!("undefined field '{field}'"),
                        );
                        let line = format!("{gvk}: {issue}");
                        if !lines.contains(&line) {
                            lines.push(line);
                        }
                    }
                }
            }
        }
        if !lines.is_empty() {
            warnings.push(json!({"fieldRef": c.field, "warning": lines.join("\n")}));
        }
    }
    if warnings.is_empty() { json!({}) } else { json!({"expressionWarnings": warnings}) }
}

/// Where `.field` is written at or after `offset` (a select's recorded position is its dot).
fn field_offset(source: &str, offset: usize, field: &str) -> usize {
    source.get(offset..).and_then(|rest| rest.find(field)).map_or(offset, |i| offset + i)
}
