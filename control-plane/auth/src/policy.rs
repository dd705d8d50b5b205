//! The roles and bindings a new cluster starts with: kube-apiserver's RBAC bootstrap policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`: `policy.go`, `controller_policy.go`,
//! `namespace_policy.go`), which its `rbac/bootstrap-roles` post-start hook creates. Skiff keeps
//! the equivalent rules as data (`policy/bootstrap.yaml`) and expands them here into objects.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::rbac::{AGGREGATE_TO_PREFIX, API_GROUP, PolicyRule};

/// The label every bootstrapped object carries.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
/// The annotation that lets the api server bring a default object back up to date at start
/// (`"false"` keeps an administrator's edits).
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The prefix of the controllers' ClusterRoles and bindings.
pub const CONTROLLER_PREFIX: &str = "system:controller:";

const BOOTSTRAP_POLICY: &str = include_str!("policy/bootstrap.yaml");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyData {
    /// YAML anchors the rules refer to; read through the aliases.
    #[allow(dead_code)]
    anchors: IgnoredAny,
    cluster_roles: Vec<RoleData>,
    controllers: Vec<RoleData>,
    cluster_role_bindings: Vec<BindingData>,
    roles: Vec<RoleData>,
    role_bindings: Vec<BindingData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleData {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `X`: an aggregationRule selecting `rbac.authorization.k8s.io/aggregate-to-X: "true"`.
    #[serde(default)]
    aggregate: Option<String>,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BindingData {
    name: String,
    #[serde(default)]
    namespace: String,
    /// A Role in the binding's namespace.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    cluster_role: Option<String>,
    /// `User <name>`, `Group <name>` or `ServiceAccount <namespace>/<name>`.
    subjects: Vec<String>,
}

fn metadata(name: &str, namespace: &str, extra_labels: &BTreeMap<String, String>) -> Value {
    let mut labels = extra_labels.clone();
    labels.insert(BOOTSTRAPPING_LABEL.to_string(), BOOTSTRAPPING_VALUE.to_string());
    let mut meta = json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE_ANNOTATION: "true"},
    });
    if !namespace.is_empty() {
        meta["namespace"] = json!(namespace);
    }
    meta
}

fn role_object(kind: &str, role: &RoleData, name: &str) -> Value {
    let mut obj = json!({
        "apiVersion": format!("{API_GROUP}/v1"),
        "kind": kind,
        "metadata": metadata(name, &role.namespace, &role.labels),
        "rules": role.rules,
    });
    if let Some(to) = &role.aggregate {
        obj["aggregationRule"] = json!({
            "clusterRoleSelectors": [{"matchLabels": {format!("{AGGREGATE_TO_PREFIX}{to}"): "true"}}],
        });
    }
    obj
}

/// A subject written `Kind name` (`ServiceAccount namespace/name`) as a binding holds it.
/// The data is compiled in and checked by the tests, so a malformed entry is a bug.
fn subject(text: &str) -> Value {
    let (kind, name) = text.split_once(' ').unwrap_or(("", text));
    match kind {
        "User" | "Group" => json!({"apiGroup": API_GROUP, "kind": kind, "name": name}),
        "ServiceAccount" => {
            let (namespace, name) = name.split_once('/').unwrap_or(("", name));
            json!({"kind": kind, "name": name, "namespace": namespace})
        }
        _ => panic!("bootstrap policy: subject {text:?} is not `User|Group|ServiceAccount name`"),
    }
}

fn binding_object(
    kind: &str,
    name: &str,
    namespace: &str,
    role_ref: (&str, &str),
    subjects: Vec<Value>,
) -> Value {
    let mut obj = json!({
        "apiVersion": format!("{API_GROUP}/v1"),
        "kind": kind,
        "metadata": metadata(name, namespace, &BTreeMap::new()),
        "roleRef": {"apiGroup": API_GROUP, "kind": role_ref.0, "name": role_ref.1},
    });
    // A binding without subjects has none at all, as upstream's `system:node`.
    if !subjects.is_empty() {
        obj["subjects"] = Value::Array(subjects);
    }
    obj
}

fn binding(kind: &str, b: &BindingData) -> Value {
    let role_ref = match (&b.role, &b.cluster_role) {
        (Some(role), _) => ("Role", role.as_str()),
        (None, Some(cluster_role)) => ("ClusterRole", cluster_role.as_str()),
        // A ClusterRoleBinding names the ClusterRole, a RoleBinding the Role, of its own name.
        (None, None) if kind == "ClusterRoleBinding" => ("ClusterRole", b.name.as_str()),
        (None, None) => ("Role", b.name.as_str()),
    };
    let subjects = b.subjects.iter().map(|s| subject(s)).collect();
    binding_object(kind, &b.name, &b.namespace, role_ref, subjects)
}

/// Every ClusterRole, ClusterRoleBinding, Role and RoleBinding a new cluster starts with, as
/// `rbac.authorization.k8s.io/v1` JSON objects labelled `kubernetes.io/bootstrapping:
/// rbac-defaults` and annotated `rbac.authorization.kubernetes.io/autoupdate: "true"`, in the
/// order kube-apiserver creates them: ClusterRoles (the controllers' last), ClusterRoleBindings
/// (likewise), Roles, RoleBindings. The Roles live in `kube-system` and `kube-public`, which
/// must exist first.
///
/// `admin`, `edit` and `view` are aggregated ClusterRoles with no rules of their own: the
/// RBAC index computes their rules (see [`crate::rbac::aggregate`]), and so does the ClusterRole
/// aggregation controller when it runs.
pub fn bootstrap_objects() -> Vec<Value> {
    let data: PolicyData = serde_yaml_ng::from_str(BOOTSTRAP_POLICY)
        .expect("the compiled-in bootstrap policy parses (checked by the tests)");
    let mut out = Vec::new();
    for role in &data.cluster_roles {
        out.push(role_object("ClusterRole", role, &role.name));
    }
    for role in &data.controllers {
        out.push(role_object("ClusterRole", role, &format!("{CONTROLLER_PREFIX}{}", role.name)));
    }
    for b in &data.cluster_role_bindings {
        out.push(binding("ClusterRoleBinding", b));
    }
    for role in &data.controllers {
        let name = format!("{CONTROLLER_PREFIX}{}", role.name);
        let sa = subject(&format!("ServiceAccount kube-system/{}", role.name));
        out.push(binding_object("ClusterRoleBinding", &name, "", ("ClusterRole", &name), vec![sa]));
    }
    for role in &data.roles {
        out.push(role_object("Role", role, &role.name));
    }
    for b in &data.role_bindings {
        out.push(binding("RoleBinding", b));
    }
    out
}

#[cfg(test)]
mod tests;
