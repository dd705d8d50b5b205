//! The bootstrap policy against the RBAC evaluator: every reference resolves, the aggregated
//! user-facing roles grant what Kubernetes' do, and the system identities can do their jobs.

use std::collections::HashSet;

use serde_json::Value;

use super::*;
use crate::rbac::{RbacIndex, RbacObjects, aggregate};
use crate::{Attributes, UserInfo};

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or("")
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or("")
}

#[test]
fn bootstrap_objects_should_be_labelled_unique_and_in_creation_order() {
    let objects = bootstrap_objects();
    assert!(objects.len() > 60, "{} objects", objects.len());
    let mut seen = HashSet::new();
    let rank = |k: &str| match k {
        "ClusterRole" => 0,
        "ClusterRoleBinding" => 1,
        "Role" => 2,
        "RoleBinding" => 3,
        other => panic!("unexpected kind {other}"),
    };
    let mut last = 0;
    for obj in &objects {
        assert_eq!(obj["apiVersion"], "rbac.authorization.k8s.io/v1");
        assert_eq!(obj["metadata"]["labels"][BOOTSTRAPPING_LABEL], BOOTSTRAPPING_VALUE, "{obj}");
        assert_eq!(obj["metadata"]["annotations"][AUTOUPDATE_ANNOTATION], "true", "{obj}");
        assert!(
            seen.insert((kind(obj).to_string(), namespace(obj).to_string(), name(obj).to_string())),
            "duplicate {obj}"
        );
        assert!(rank(kind(obj)) >= last, "{} out of order", name(obj));
        last = rank(kind(obj));
        let namespaced = matches!(kind(obj), "Role" | "RoleBinding");
        assert_eq!(namespaced, !namespace(obj).is_empty(), "{obj}");
    }
}

#[test]
fn bootstrap_bindings_should_refer_to_existing_roles() {
    let objects = bootstrap_objects();
    let cluster_roles: HashSet<&str> =
        objects.iter().filter(|o| kind(o) == "ClusterRole").map(name).collect();
    let roles: HashSet<(&str, &str)> =
        objects.iter().filter(|o| kind(o) == "Role").map(|o| (namespace(o), name(o))).collect();
    let mut bindings = 0;
    for obj in objects.iter().filter(|o| kind(o).ends_with("Binding")) {
        bindings += 1;
        let role_ref = &obj["roleRef"];
        assert_eq!(role_ref["apiGroup"], "rbac.authorization.k8s.io");
        let target = role_ref["name"].as_str().unwrap_or("");
        match role_ref["kind"].as_str() {
            Some("ClusterRole") => assert!(cluster_roles.contains(target), "{obj}"),
            Some("Role") => {
                assert_eq!(kind(obj), "RoleBinding", "{obj}");
                assert!(roles.contains(&(namespace(obj), target)), "{obj}");
            }
            other => panic!("roleRef kind {other:?} in {obj}"),
        }
    }
    assert!(bindings > 30);
    // Nothing reports a missing role, whoever asks.
    let idx = RbacIndex::build(&RbacObjects::from_objects(&objects));
    let everyone =
        UserInfo::new("system:kube-scheduler", &["system:masters", "system:serviceaccounts"]);
    for ns in ["", "kube-system", "kube-public"] {
        assert!(idx.rules_for(&everyone, ns).1.is_empty());
    }
}

/// The objects as kube-apiserver stores them, with `admin`, `edit` and `view` given the rules
/// `aggregate` computes, in the order the aggregation controller settles them.
fn aggregated_objects() -> Vec<Value> {
    let mut objects = bootstrap_objects();
    for target in ["view", "edit", "admin"] {
        let cluster_roles: Vec<&Value> =
            objects.iter().filter(|o| kind(o) == "ClusterRole").collect();
        let i = objects
            .iter()
            .position(|o| kind(o) == "ClusterRole" && name(o) == target)
            .expect("role exists");
        assert_eq!(objects[i]["rules"], serde_json::json!([]), "{target} starts empty");
        let rules = aggregate(&objects[i], &cluster_roles).expect("aggregated");
        objects[i]["rules"] = serde_json::to_value(rules).expect("serializes");
    }
    objects
}

fn attrs(verb: &str, group: &str, resource: &str, subresource: &str, ns: &str) -> Attributes {
    Attributes::resource(verb, group, resource, ns, "").with_subresource(subresource)
}

#[test]
fn aggregated_roles_should_grant_what_kubernetes_does() {
    let mut objects = aggregated_objects();
    for (role, user) in [("admin", "ann"), ("edit", "ed"), ("view", "vi")] {
        objects.push(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": user, "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
        }));
    }
    let idx = RbacIndex::build(&RbacObjects::from_objects(&objects));
    let can = |user: &str, a: Attributes| idx.authorize(&UserInfo::new(user, &[]), &a).is_allowed();

    assert!(can("ed", attrs("create", "apps", "deployments", "", "team")));
    assert!(can("ed", attrs("create", "", "pods", "exec", "team")));
    assert!(can("ed", attrs("get", "", "secrets", "", "team")));
    assert!(can("ed", attrs("list", "", "pods", "", "team")), "edit includes view");
    assert!(!can("ed", attrs("create", "rbac.authorization.k8s.io", "roles", "", "team")));
    assert!(!can("ed", attrs("create", "rbac.authorization.k8s.io", "rolebindings", "", "team")));
    assert!(!can("ed", attrs("update", "", "resourcequotas", "", "team")));
    assert!(!can("ed", attrs("create", "apps", "deployments", "", "other")));

    assert!(can("vi", attrs("get", "", "pods", "", "team")));
    assert!(can("vi", attrs("get", "", "pods", "log", "team")));
    assert!(!can("vi", attrs("get", "", "secrets", "", "team")));
    assert!(!can("vi", attrs("create", "", "pods", "", "team")));

    assert!(can("ann", attrs("create", "rbac.authorization.k8s.io", "roles", "", "team")));
    assert!(can("ann", attrs("create", "rbac.authorization.k8s.io", "rolebindings", "", "team")));
    assert!(can("ann", attrs("create", "apps", "deployments", "", "team")), "admin includes edit");
    assert!(can("ann", attrs("watch", "", "configmaps", "", "team")), "admin includes view");
    assert!(!can("ann", attrs("create", "rbac.authorization.k8s.io", "roles", "", "other")));
    assert!(!can("ann", attrs("list", "", "nodes", "", "")));

    // The index computes the same rules from the objects as stored, with no controller.
    let raw = bootstrap_objects();
    let from_raw = RbacIndex::build(&RbacObjects::from_objects(&raw));
    for role in ["admin", "edit", "view"] {
        assert_eq!(
            from_raw.role_rules("ClusterRole", "", role),
            idx.role_rules("ClusterRole", "", role),
            "{role}"
        );
        assert!(!from_raw.role_rules("ClusterRole", "", role).unwrap_or_default().is_empty());
    }
}

#[test]
fn default_bindings_should_serve_anonymous_users_and_system_identities() {
    let objects = bootstrap_objects();
    let idx = RbacIndex::build(&RbacObjects::from_objects(&objects));
    let can = |user: &UserInfo, a: Attributes| idx.authorize(user, &a).is_allowed();
    let get = |path: &str| Attributes::non_resource("get", path);

    let anonymous = UserInfo::anonymous();
    assert!(can(&anonymous, get("/healthz")));
    assert!(can(&anonymous, get("/version")));
    assert!(can(&anonymous, get("/readyz")));
    assert!(!can(&anonymous, get("/api")));
    assert!(!can(&anonymous, get("/metrics")));
    assert!(!can(&anonymous, attrs("list", "", "pods", "", "default")));

    let user = UserInfo::new("alice", &[]);
    assert!(can(&user, get("/api")));
    assert!(can(&user, get("/apis/apps/v1")));
    assert!(can(
        &user,
        attrs("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "")
    ));
    assert!(can(&user, attrs("create", "authentication.k8s.io", "selfsubjectreviews", "", "")));
    assert!(!can(&user, attrs("list", "", "pods", "", "default")));
    assert!(!can(&user, get("/metrics")));

    let master = UserInfo::new("root", &["system:masters"]);
    assert!(can(&master, attrs("delete", "anything.example", "widgets", "", "ns")));
    assert!(can(&master, Attributes::non_resource("post", "/anything")));

    let sa = UserInfo::new("system:serviceaccount:default:app", &["system:serviceaccounts"]);
    assert!(can(&sa, get("/openid/v1/jwks")));
    assert!(can(&sa, get("/.well-known/openid-configuration")));

    let scheduler = UserInfo::new("system:kube-scheduler", &[]);
    assert!(can(&scheduler, attrs("create", "", "pods", "binding", "default")));
    assert!(can(&scheduler, attrs("patch", "", "persistentvolumes", "", "")));
    // Its own Lease anywhere (by name); any Lease in kube-system (its leader-locking Role).
    let mut lease = Attributes::resource(
        "update",
        "coordination.k8s.io",
        "leases",
        "default",
        "kube-scheduler",
    );
    assert!(can(&scheduler, lease.clone()));
    lease.name = "kube-controller-manager".into();
    assert!(!can(&scheduler, lease.clone()));
    lease.namespace = "kube-system".into();
    assert!(can(&scheduler, lease));

    let proxy = UserInfo::new("system:kube-proxy", &[]);
    assert!(can(&proxy, attrs("watch", "discovery.k8s.io", "endpointslices", "", "")));
    assert!(!can(&proxy, attrs("get", "", "secrets", "", "default")));

    let kcm = UserInfo::new("system:kube-controller-manager", &[]);
    assert!(can(&kcm, attrs("list", "apps", "deployments", "", "")));
    assert!(can(&kcm, attrs("update", "coordination.k8s.io", "leases", "", "kube-system")));

    let controller = |name: &str| {
        UserInfo::new(
            format!("system:serviceaccount:kube-system:{name}"),
            &["system:serviceaccounts"],
        )
    };
    assert!(can(
        &controller("deployment-controller"),
        attrs("update", "apps", "deployments", "status", "ns")
    ));
    assert!(can(
        &controller("deployment-controller"),
        attrs("create", "apps", "replicasets", "", "ns")
    ));
    assert!(!can(&controller("deployment-controller"), attrs("create", "", "secrets", "", "ns")));
    assert!(can(
        &controller("horizontal-pod-autoscaler"),
        attrs("update", "apps", "deployments", "scale", "ns")
    ));
    assert!(can(
        &controller("namespace-controller"),
        attrs("deletecollection", "apps", "deployments", "", "ns")
    ));
    assert!(can(
        &controller("generic-garbage-collector"),
        attrs("delete", "example.com", "widgets", "", "ns")
    ));
    assert!(can(
        &controller("clusterrole-aggregation-controller"),
        attrs("escalate", "rbac.authorization.k8s.io", "clusterroles", "", "")
    ));
    assert!(can(&controller("token-cleaner"), attrs("delete", "", "secrets", "", "kube-system")));
    assert!(!can(&controller("token-cleaner"), attrs("delete", "", "secrets", "", "default")));
    let mut cluster_info =
        Attributes::resource("update", "", "configmaps", "kube-public", "cluster-info");
    assert!(can(&controller("bootstrap-signer"), cluster_info.clone()));
    cluster_info.name = "other".into();
    assert!(!can(&controller("bootstrap-signer"), cluster_info));

    // Nodes get nothing from RBAC by default: the node authorizer serves them.
    let node = UserInfo::new("system:node:n1", &["system:nodes"]);
    assert!(!can(&node, attrs("get", "", "secrets", "", "default")));
}
