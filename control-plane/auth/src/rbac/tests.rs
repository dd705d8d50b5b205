//! Cases modelled on Kubernetes' `plugin/pkg/auth/authorizer/rbac/rbac_test.go`,
//! `component-helpers/auth/rbac/validation/policy_comparator_test.go` and the ClusterRole
//! aggregation controller's tests.

use serde_json::{Value, json};

use super::*;
use crate::user::{AUTHENTICATED, SERVICE_ACCOUNTS};

fn cluster_role(name: &str, rules: &[PolicyRule]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules})
}

fn role(ns: &str, name: &str, rules: &[PolicyRule]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

/// `Kind:name` subjects; `ServiceAccount:ns/name` (an empty `ns` leaves the namespace out).
fn subjects(subjects: &[&str]) -> Value {
    subjects
        .iter()
        .map(|s| {
            let (kind, name) = s.split_once(':').expect("Kind:name");
            match kind {
                "ServiceAccount" => {
                    let (ns, name) = name.split_once('/').expect("ns/name");
                    if ns.is_empty() {
                        json!({"kind": kind, "name": name})
                    } else {
                        json!({"kind": kind, "name": name, "namespace": ns})
                    }
                }
                _ => json!({"kind": kind, "apiGroup": API_GROUP, "name": name}),
            }
        })
        .collect()
}

fn cluster_binding(name: &str, cluster_role: &str, subs: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": API_GROUP, "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects(subs)})
}

/// `role_ref` is `Role:name` or `ClusterRole:name`.
fn binding(ns: &str, name: &str, role_ref: &str, subs: &[&str]) -> Value {
    let (kind, role) = role_ref.split_once(':').expect("Kind:name");
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": API_GROUP, "kind": kind, "name": role},
        "subjects": subjects(subs)})
}

fn index(objects: &[Value]) -> RbacIndex {
    RbacIndex::build(&RbacObjects::from_objects(objects))
}

fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    Attributes::resource(verb, group, resource, ns, name)
}

fn sub(verb: &str, group: &str, resource: &str, subresource: &str, ns: &str) -> Attributes {
    Attributes::resource(verb, group, resource, ns, "x").with_subresource(subresource)
}

fn url(verb: &str, path: &str) -> Attributes {
    Attributes::non_resource(verb, path)
}

#[test]
fn rule_allows_should_match_as_kubernetes_does() {
    let r = PolicyRule::resource;
    let u = PolicyRule::non_resource;
    // (rule, request, allowed)
    let cases: Vec<(PolicyRule, Attributes, bool)> = vec![
        // Star verb, exact group and resource.
        (r(&["*"], &["g1"], &["r1"]), res("get", "g1", "r1", "", ""), true),
        (r(&["*"], &["g1"], &["r1"]), res("get", "g2", "r1", "", ""), false),
        (r(&["*"], &["g1"], &["r1"]), res("get", "g1", "r2", "", ""), false),
        // Exact verb.
        (r(&["get"], &["g1"], &["r1"]), res("get", "g1", "r1", "", ""), true),
        (r(&["get"], &["g1"], &["r1"]), res("list", "g1", "r1", "", ""), false),
        // Star group, star resource.
        (r(&["get"], &["*"], &["r1"]), res("get", "anything", "r1", "", ""), true),
        (r(&["get"], &["g1"], &["*"]), res("get", "g1", "anything", "", ""), true),
        (r(&["get"], &["g1"], &["*"]), sub("get", "g1", "pods", "log", ""), true),
        // Tuple expansion.
        (
            r(&["get", "update"], &["g1", "g2"], &["r1", "r2"]),
            res("update", "g2", "r1", "", ""),
            true,
        ),
        (
            r(&["get", "update"], &["g1", "g2"], &["r1", "r2"]),
            res("delete", "g2", "r1", "", ""),
            false,
        ),
        // Subresources must be named: the resource alone does not grant them, nor they it.
        (r(&["get"], &[""], &["pods/log"]), sub("get", "", "pods", "log", "ns"), true),
        (r(&["get"], &[""], &["pods/log"]), res("get", "", "pods", "ns", "x"), false),
        (r(&["get"], &[""], &["pods/log"]), sub("get", "", "pods", "exec", "ns"), false),
        (r(&["get"], &[""], &["pods/log"]), sub("get", "", "nodes", "log", ""), false),
        (r(&["get"], &[""], &["pods"]), sub("get", "", "pods", "log", "ns"), false),
        // `*/scale` grants the scale subresource of every resource, and nothing else.
        (r(&["get"], &["*"], &["*/scale"]), sub("get", "apps", "deployments", "scale", "ns"), true),
        (
            r(&["get"], &["*"], &["*/scale"]),
            sub("get", "", "replicationcontrollers", "scale", "ns"),
            true,
        ),
        (r(&["get"], &["*"], &["*/scale"]), res("get", "apps", "deployments", "ns", "x"), false),
        (
            r(&["get"], &["*"], &["*/scale"]),
            sub("get", "apps", "deployments", "status", "ns"),
            false,
        ),
        // `pods/*` is not a wildcard in Kubernetes.
        (r(&["get"], &[""], &["pods/*"]), sub("get", "", "pods", "log", "ns"), false),
        // Resource names.
        (r(&["*"], &["*"], &["*"]).with_names(&["foo"]), res("get", "g", "r", "ns", "foo"), true),
        (r(&["*"], &["*"], &["*"]).with_names(&["foo"]), res("get", "g", "r", "ns", "bar"), false),
        (r(&["*"], &["*"], &["*"]).with_names(&["foo"]), res("list", "g", "r", "ns", ""), false),
        (
            r(&["*"], &["*"], &["*"]).with_names(&["foo", "bar"]),
            res("delete", "g", "r", "", "bar"),
            true,
        ),
        // Non-resource URLs: exact, `*`, and prefixes ending in `*`.
        (u(&["get"], &["/healthz"]), url("get", "/healthz"), true),
        (u(&["get"], &["/healthz"]), url("get", "/healthz/etcd"), false),
        (u(&["get"], &["/healthz"]), url("post", "/healthz"), false),
        (u(&["*"], &["*"]), url("delete", "/anything/at/all"), true),
        (u(&["get"], &["/foo/*"]), url("get", "/foo/"), true),
        (u(&["get"], &["/foo/*"]), url("get", "/foo/bar/baz"), true),
        (u(&["get"], &["/foo/*"]), url("get", "/foo"), false),
        (u(&["get"], &["/foo*"]), url("get", "/foobar"), true),
        // A URL rule does not grant resources, nor a resource rule URLs.
        (u(&["*"], &["*"]), res("get", "", "pods", "ns", ""), false),
        (r(&["*"], &["*"], &["*"]), url("get", "/healthz"), false),
    ];
    for (rule, attrs, want) in &cases {
        assert_eq!(rule_allows(rule, attrs), *want, "{} allows {attrs:?}", describe(rule));
    }
}

/// The objects of Kubernetes' `TestAuthorizer`-style cases: a namespaced role, a cluster role
/// bound both cluster-wide and in one namespace, and a URL role.
fn fixture() -> Vec<Value> {
    let read_pods = PolicyRule::resource(&["get", "list", "watch"], &[""], &["pods"]);
    vec![
        role("ns1", "pod-reader", std::slice::from_ref(&read_pods)),
        cluster_role(
            "secret-writer",
            &[PolicyRule::resource(&["create", "update"], &[""], &["secrets"])],
        ),
        cluster_role("node-reader", &[PolicyRule::resource(&["get"], &[""], &["nodes"])]),
        cluster_role(
            "urls",
            &[PolicyRule::non_resource(&["get"], &["/metrics", "/logs/*"]), read_pods.clone()],
        ),
        binding("ns1", "readers", "Role:pod-reader", &["User:alice", "Group:team"]),
        // A RoleBinding to a ClusterRole: only within ns2, and never for cluster-scoped
        // resources or URLs.
        binding("ns2", "writers", "ClusterRole:secret-writer", &["User:bob"]),
        binding("ns2", "node-readers", "ClusterRole:node-reader", &["User:bob"]),
        binding("ns2", "url-readers", "ClusterRole:urls", &["User:bob"]),
        cluster_binding("urls", "urls", &["User:carol"]),
        // Service accounts: explicit namespace, and (RoleBinding only) the binding's own.
        binding("ns3", "sa-local", "ClusterRole:secret-writer", &["ServiceAccount:/builder"]),
        binding("ns3", "sa-remote", "ClusterRole:node-reader", &["ServiceAccount:other/deployer"]),
        cluster_binding("sa-nowhere", "secret-writer", &["ServiceAccount:/ghost"]),
        cluster_binding("sa-cluster", "node-reader", &["ServiceAccount:kube-system/watcher"]),
        // Missing roles grant nothing.
        binding("ns1", "dangling", "Role:gone", &["User:dave"]),
        cluster_binding("dangling", "also-gone", &["User:dave"]),
    ]
}

#[test]
fn authorize_should_follow_kubernetes_bindings() {
    let idx = index(&fixture());
    let alice = UserInfo::new("alice", &[]);
    let team = UserInfo::new("someone", &["team"]);
    let bob = UserInfo::new("bob", &[]);
    let carol = UserInfo::new("carol", &[]);
    let sa = |ns: &str, name: &str| {
        UserInfo::new(format!("system:serviceaccount:{ns}:{name}"), &[SERVICE_ACCOUNTS])
    };
    let cases: Vec<(UserInfo, Attributes, bool)> = vec![
        (alice.clone(), res("get", "", "pods", "ns1", "p"), true),
        (alice.clone(), res("list", "", "pods", "ns1", ""), true),
        (alice.clone(), res("delete", "", "pods", "ns1", "p"), false),
        // A Role grants only in its namespace.
        (alice.clone(), res("get", "", "pods", "ns2", "p"), false),
        (alice.clone(), res("list", "", "pods", "", ""), false),
        (team.clone(), res("watch", "", "pods", "ns1", ""), true),
        (UserInfo::new("team", &[]), res("get", "", "pods", "ns1", "p"), false),
        // RoleBinding -> ClusterRole: the binding's namespace only.
        (bob.clone(), res("create", "", "secrets", "ns2", ""), true),
        (bob.clone(), res("create", "", "secrets", "ns1", ""), false),
        (bob.clone(), res("get", "", "pods", "ns2", "p"), true),
        // ... never cluster-scoped resources or URLs.
        (bob.clone(), res("get", "", "nodes", "", "n1"), false),
        (bob.clone(), url("get", "/metrics"), false),
        // ClusterRoleBinding: everywhere, URLs too.
        (carol.clone(), url("get", "/metrics"), true),
        (carol.clone(), url("get", "/logs/kubelet.log"), true),
        (carol.clone(), url("get", "/logs"), false),
        (carol.clone(), url("post", "/metrics"), false),
        (carol.clone(), res("list", "", "pods", "", ""), true),
        (carol.clone(), res("get", "", "pods", "any", "p"), true),
        // Service accounts.
        (sa("ns3", "builder"), res("create", "", "secrets", "ns3", ""), true),
        (sa("ns4", "builder"), res("create", "", "secrets", "ns3", ""), false),
        (sa("other", "deployer"), res("get", "", "nodes", "ns3", "n"), true),
        (sa("ns3", "deployer"), res("get", "", "nodes", "ns3", "n"), false),
        (sa("", "ghost"), res("create", "", "secrets", "x", ""), false),
        (sa("kube-system", "watcher"), res("get", "", "nodes", "", "n1"), true),
        (sa("kube-system", "watcher2"), res("get", "", "nodes", "", "n1"), false),
        // A user named like a service account is that service account.
        (
            UserInfo::new("system:serviceaccount:kube-system:watcher", &[]),
            res("get", "", "nodes", "", "n"),
            true,
        ),
        (UserInfo::new("dave", &[]), res("get", "", "pods", "ns1", "p"), false),
        (UserInfo::anonymous(), res("get", "", "pods", "ns1", "p"), false),
    ];
    for (user, attrs, want) in &cases {
        let got = idx.authorize(user, attrs);
        assert_eq!(got.is_allowed(), *want, "{} {attrs:?}: {got:?}", user.name);
        if !*want {
            assert!(matches!(got, Decision::NoOpinion(_)), "RBAC never denies: {got:?}");
        }
    }
}

#[test]
fn authorize_should_name_the_binding_role_and_subject() {
    let idx = index(&fixture());
    let reason =
        |user: &UserInfo, attrs: &Attributes| idx.authorize(user, attrs).reason().to_string();
    assert_eq!(
        reason(&UserInfo::new("carol", &[]), &url("get", "/metrics")),
        r#"RBAC: allowed by ClusterRoleBinding "urls" of ClusterRole "urls" to User "carol""#
    );
    assert_eq!(
        reason(&UserInfo::new("x", &["team"]), &res("get", "", "pods", "ns1", "p")),
        r#"RBAC: allowed by RoleBinding "readers/ns1" of Role "pod-reader" to Group "team""#
    );
    // Both subjects apply: the first one listed is named.
    assert_eq!(
        reason(&UserInfo::new("alice", &["team"]), &res("get", "", "pods", "ns1", "p")),
        r#"RBAC: allowed by RoleBinding "readers/ns1" of Role "pod-reader" to User "alice""#
    );
    assert_eq!(
        reason(
            &UserInfo::new("system:serviceaccount:ns3:builder", &[]),
            &res("create", "", "secrets", "ns3", "")
        ),
        r#"RBAC: allowed by RoleBinding "sa-local/ns3" of ClusterRole "secret-writer" to ServiceAccount "builder/ns3""#
    );
}

#[test]
fn authorize_should_report_bindings_to_missing_roles() {
    let idx = index(&fixture());
    let dave = UserInfo::new("dave", &[]);
    assert_eq!(
        idx.authorize(&dave, &res("get", "", "pods", "ns1", "p")),
        Decision::NoOpinion(
            r#"RBAC: [clusterrole.rbac.authorization.k8s.io "also-gone" not found, role.rbac.authorization.k8s.io "gone" not found]"#
                .to_string()
        )
    );
    // Out of ns1 only the ClusterRoleBinding applies.
    assert_eq!(
        idx.authorize(&dave, &res("get", "", "pods", "ns2", "p")).reason(),
        r#"RBAC: clusterrole.rbac.authorization.k8s.io "also-gone" not found"#
    );
    assert_eq!(
        idx.authorize(&UserInfo::new("eve", &[]), &url("get", "/")),
        Decision::NoOpinion(String::new())
    );
}

#[test]
fn rules_for_should_list_cluster_then_namespace_rules_and_errors() {
    let idx = index(&fixture());
    let (rules, errors) = idx.rules_for(&UserInfo::new("bob", &[]), "ns2");
    assert!(errors.is_empty());
    // ns2's bindings by name: node-readers, url-readers, writers.
    let want: Vec<PolicyRule> = [
        idx.role_rules("ClusterRole", "", "node-reader"),
        idx.role_rules("ClusterRole", "", "urls"),
        idx.role_rules("ClusterRole", "", "secret-writer"),
    ]
    .into_iter()
    .flat_map(|r| r.expect("role exists").to_vec())
    .collect();
    assert_eq!(rules, want);
    assert!(idx.rules_for(&UserInfo::new("bob", &[]), "").0.is_empty());

    let (rules, errors) = idx.rules_for(&UserInfo::new("dave", &[]), "ns1");
    assert!(rules.is_empty());
    assert_eq!(
        errors,
        [
            r#"clusterrole.rbac.authorization.k8s.io "also-gone" not found"#,
            r#"role.rbac.authorization.k8s.io "gone" not found"#
        ]
    );
    assert_eq!(
        join_errors(&errors),
        r#"[clusterrole.rbac.authorization.k8s.io "also-gone" not found, role.rbac.authorization.k8s.io "gone" not found]"#
    );
}

#[test]
fn build_should_refuse_a_cluster_role_binding_to_a_role_and_unknown_kinds() {
    let objects = vec![
        role("ns", "r", &[PolicyRule::resource(&["*"], &["*"], &["*"])]),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": API_GROUP, "kind": "Role", "name": "r"},
            "subjects": subjects(&["User:u"])}),
        json!({"kind": "RoleBinding", "metadata": {"name": "b2", "namespace": "ns"},
            "roleRef": {"apiGroup": API_GROUP, "kind": "Policy", "name": "r"},
            "subjects": subjects(&["User:u"])}),
    ];
    let idx = index(&objects);
    let got = idx.authorize(&UserInfo::new("u", &[]), &res("get", "", "pods", "ns", "p"));
    assert_eq!(
        got,
        Decision::NoOpinion(
            r#"RBAC: [role.rbac.authorization.k8s.io "r" not found, unsupported role reference kind: "Policy"]"#
                .to_string()
        )
    );
}

#[test]
fn build_should_ignore_malformed_rules_and_objects() {
    let objects = vec![
        json!({"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": [
            {"verbs": "get", "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": null},
        ]}),
        json!({"kind": "ClusterRole", "metadata": {}, "rules": []}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": null}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "c"},
            "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": subjects(&["Group:g", "Robot:x"])}),
    ];
    let idx = index(&objects);
    let user = UserInfo::new("u", &["g"]);
    assert!(idx.authorize(&user, &res("list", "", "pods", "", "")).is_allowed());
    assert!(!idx.authorize(&user, &res("get", "", "pods", "ns", "p")).is_allowed());
}

#[test]
fn covers_should_report_each_missing_permission() {
    let r = PolicyRule::resource;
    let u = PolicyRule::non_resource;
    // (owner, requested, missing)
    let cases: Vec<(Vec<PolicyRule>, Vec<PolicyRule>, Vec<PolicyRule>)> = vec![
        (vec![r(&["get"], &[""], &["pods"])], vec![r(&["get"], &[""], &["pods"])], vec![]),
        (
            vec![r(&["get"], &[""], &["pods"])],
            vec![r(&["get", "list"], &[""], &["pods"])],
            vec![r(&["list"], &[""], &["pods"])],
        ),
        // Owner rules combine: each broken-down permission needs one owner rule.
        (
            vec![r(&["get"], &[""], &["pods"]), r(&["list"], &[""], &["pods", "secrets"])],
            vec![r(&["get", "list"], &[""], &["pods"])],
            vec![],
        ),
        (
            vec![r(&["*"], &["*"], &["*"])],
            vec![r(&["escalate"], &["rbac.authorization.k8s.io"], &["roles"])],
            vec![],
        ),
        (
            vec![r(&["get"], &["apps"], &["*"])],
            vec![r(&["get"], &["apps", "batch"], &["jobs"])],
            vec![r(&["get"], &["batch"], &["jobs"])],
        ),
        // Subresources: `*/scale` covers every scale, not the resources.
        (
            vec![r(&["get"], &["*"], &["*/scale"])],
            vec![r(&["get"], &["apps"], &["deployments/scale"])],
            vec![],
        ),
        (
            vec![r(&["get"], &["*"], &["*/scale"])],
            vec![r(&["get"], &["apps"], &["deployments"])],
            vec![r(&["get"], &["apps"], &["deployments"])],
        ),
        // Resource names: an owner without names covers named requests; a named owner covers
        // only its names, and never the unnamed request.
        (
            vec![r(&["get"], &[""], &["configmaps"])],
            vec![r(&["get"], &[""], &["configmaps"]).with_names(&["a"])],
            vec![],
        ),
        (
            vec![r(&["get"], &[""], &["configmaps"]).with_names(&["a"])],
            vec![r(&["get"], &[""], &["configmaps"]).with_names(&["a", "b"])],
            vec![r(&["get"], &[""], &["configmaps"]).with_names(&["b"])],
        ),
        (
            vec![r(&["get"], &[""], &["configmaps"]).with_names(&["a"])],
            vec![r(&["get"], &[""], &["configmaps"])],
            vec![r(&["get"], &[""], &["configmaps"])],
        ),
        // Non-resource URLs, with prefixes.
        (vec![u(&["get"], &["/foo/*"])], vec![u(&["get"], &["/foo/bar", "/foo/"])], vec![]),
        (vec![u(&["get"], &["*"])], vec![u(&["get"], &["/anything"])], vec![]),
        (
            vec![u(&["get"], &["/foo"])],
            vec![u(&["get", "post"], &["/foo", "/foo/bar"])],
            vec![u(&["post"], &["/foo"]), u(&["get"], &["/foo/bar"]), u(&["post"], &["/foo/bar"])],
        ),
        // Resource rules never cover URLs.
        (
            vec![r(&["*"], &["*"], &["*"])],
            vec![u(&["get"], &["/healthz"])],
            vec![u(&["get"], &["/healthz"])],
        ),
    ];
    for (owner, requested, missing) in cases {
        let got = covers(&owner, &requested);
        if missing.is_empty() {
            assert_eq!(got, Ok(()), "{requested:?}");
        } else {
            assert_eq!(got, Err(missing), "{requested:?}");
        }
    }
}

#[test]
fn describe_should_print_rules_as_kubernetes_does() {
    assert_eq!(
        describe(&PolicyRule::resource(&["get"], &[""], &["pods"])),
        r#"{APIGroups:[""], Resources:["pods"], Verbs:["get"]}"#
    );
    assert_eq!(
        describe(
            &PolicyRule::resource(&["get", "list"], &["apps"], &["deployments"])
                .with_names(&["web"])
        ),
        r#"{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["get" "list"]}"#
    );
    assert_eq!(
        describe(&PolicyRule::non_resource(&["get"], &["/healthz"])),
        r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#
    );
    assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
}

#[test]
fn escalation_message_should_compact_and_sort_the_missing_rules() {
    let missing = covers(
        &[],
        &[
            PolicyRule::resource(&["get", "list"], &[""], &["pods"]),
            PolicyRule::resource(&["create"], &["apps"], &["deployments"]),
        ],
    )
    .expect_err("nothing is held");
    let user = UserInfo::new("alice", &["dev"]);
    assert_eq!(
        escalation_message(&user, &missing, &[]),
        "user \"alice\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}\n\
         {APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"create\"]}"
    );
    let msg = escalation_message(
        &user,
        &missing,
        &["role.rbac.authorization.k8s.io \"x\" not found".into()],
    );
    assert!(
        msg.ends_with("; resolution errors: [role.rbac.authorization.k8s.io \"x\" not found]"),
        "{msg}"
    );
}

fn labelled(name: &str, labels: Value, rules: &[PolicyRule]) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": name, "labels": labels}, "rules": rules})
}

#[test]
fn aggregate_should_union_selected_roles_by_name_without_duplicates() {
    let pods = PolicyRule::resource(&["get"], &[""], &["pods"]);
    let secrets = PolicyRule::resource(&["get"], &[""], &["secrets"]);
    let nodes = PolicyRule::resource(&["get"], &[""], &["nodes"]);
    let cms = PolicyRule::resource(&["get"], &[""], &["configmaps"]);
    let target = json!({"kind": "ClusterRole", "metadata": {"name": "agg", "labels": {"tier": "a"}},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"tier": "a"}},
            {"matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ]},
        ]},
        "rules": [PolicyRule::resource(&["*"], &["*"], &["*"])]});
    let roles = [
        labelled("b-tier", json!({"tier": "a"}), &[secrets.clone(), pods.clone()]),
        labelled("a-tier", json!({"tier": "a"}), std::slice::from_ref(&pods)),
        labelled("prod", json!({"env": "prod"}), &[nodes.clone(), pods.clone()]),
        labelled("prod-legacy", json!({"env": "prod", "legacy": "y"}), std::slice::from_ref(&cms)),
        labelled("dev", json!({"env": "dev"}), std::slice::from_ref(&cms)),
        labelled("unlabelled", Value::Null, std::slice::from_ref(&cms)),
        target.clone(),
    ];
    let refs: Vec<&Value> = roles.iter().collect();
    // First selector (a-tier, b-tier by name; itself left out), then the second.
    assert_eq!(aggregate(&target, &refs), Some(vec![pods.clone(), secrets.clone(), nodes.clone()]));
    assert_eq!(aggregate(&roles[0], &refs), None);
}

#[test]
fn aggregate_should_follow_label_selector_semantics() {
    let rule = PolicyRule::resource(&["get"], &[""], &["pods"]);
    let candidate = labelled("c", json!({"env": "prod", "team": "x"}), std::slice::from_ref(&rule));
    let picks = |selector: Value| {
        let target = json!({"kind": "ClusterRole", "metadata": {"name": "t"},
            "aggregationRule": {"clusterRoleSelectors": [selector]}});
        aggregate(&target, &[&candidate]).expect("aggregated") == vec![rule.clone()]
    };
    let expr = |op: &str, values: Value| json!({"matchExpressions": [{"key": "env", "operator": op, "values": values}]});
    assert!(picks(json!({})), "an empty selector selects everything");
    assert!(picks(json!({"matchLabels": {"env": "prod", "team": "x"}})));
    assert!(!picks(json!({"matchLabels": {"env": "prod", "team": "y"}})));
    assert!(picks(expr("In", json!(["dev", "prod"]))));
    assert!(!picks(expr("In", json!(["dev"]))));
    assert!(!picks(expr("NotIn", json!(["prod"]))));
    assert!(picks(expr("NotIn", json!(["dev"]))));
    assert!(picks(expr("Exists", Value::Null)));
    assert!(!picks(expr("DoesNotExist", Value::Null)));
    assert!(picks(json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]})));
    assert!(picks(
        json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
    ));
    // Selectors Kubernetes rejects select nothing.
    assert!(!picks(expr("In", json!([]))));
    assert!(!picks(expr("Near", json!(["prod"]))));
    assert!(!picks(json!({"matchLabels": {"env": 1}})));
    // No selectors at all: nothing.
    let empty = json!({"kind": "ClusterRole", "metadata": {"name": "t"}, "aggregationRule": {}});
    assert_eq!(aggregate(&empty, &[&candidate]), Some(vec![]));
}

#[test]
fn build_should_resolve_aggregation_chains() {
    let view = PolicyRule::resource(&["get"], &[""], &["pods"]);
    let edit = PolicyRule::resource(&["create"], &[""], &["pods"]);
    let agg = |name: &str, to: &str, labels: Value| {
        json!({"kind": "ClusterRole", "metadata": {"name": name, "labels": labels},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("to-{to}"): "true"}}]}})
    };
    let objects = vec![
        // Listed so that a single pass in this order would miss what admin gets through edit.
        agg("admin", "admin", json!({})),
        agg("edit", "edit", json!({"to-admin": "true"})),
        agg("view", "view", json!({"to-edit": "true"})),
        labelled("edit-rules", json!({"to-edit": "true"}), std::slice::from_ref(&edit)),
        labelled("view-rules", json!({"to-view": "true"}), std::slice::from_ref(&view)),
        // Two aggregated roles selecting each other terminate.
        agg("loop-a", "a", json!({"to-b": "true"})),
        agg("loop-b", "b", json!({"to-a": "true"})),
        binding("ns", "admins", "ClusterRole:admin", &["User:ann"]),
    ];
    let idx = index(&objects);
    assert_eq!(idx.role_rules("ClusterRole", "", "view"), Some(&[view.clone()][..]));
    assert_eq!(idx.role_rules("ClusterRole", "", "edit"), Some(&[edit.clone(), view.clone()][..]));
    assert_eq!(idx.role_rules("ClusterRole", "", "admin"), Some(&[edit.clone(), view.clone()][..]));
    assert_eq!(idx.role_rules("ClusterRole", "", "loop-a"), Some(&[][..]));
    let ann = UserInfo::new("ann", &[]);
    assert!(idx.authorize(&ann, &res("get", "", "pods", "ns", "p")).is_allowed());
    assert!(!idx.authorize(&ann, &res("delete", "", "pods", "ns", "p")).is_allowed());
}

#[test]
fn policy_rule_should_read_and_write_kubernetes_json() {
    let rule: PolicyRule = serde_json::from_value(json!({
        "verbs": ["get"], "apiGroups": null, "nonResourceURLs": ["/healthz"],
    }))
    .expect("parses");
    assert_eq!(rule, PolicyRule::non_resource(&["get"], &["/healthz"]));
    assert_eq!(
        serde_json::to_value(&rule).expect("serializes"),
        json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]})
    );
    let rule = PolicyRule::resource(&["get"], &[""], &["pods"]).with_names(&["p"]);
    assert_eq!(
        serde_json::to_value(&rule).expect("serializes"),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]})
    );
}

#[test]
fn authorize_should_check_every_group_of_the_user() {
    let objects = vec![
        cluster_role("r", &[PolicyRule::resource(&["get"], &[""], &["pods"])]),
        binding("ns", "b", "ClusterRole:r", &["Group:g3"]),
    ];
    let idx = index(&objects);
    let user = UserInfo::new("u", &["g1", "g2", "g3", AUTHENTICATED]);
    assert!(idx.authorize(&user, &res("get", "", "pods", "ns", "p")).is_allowed());
    assert!(
        !idx.authorize(&UserInfo::new("u", &["g1"]), &res("get", "", "pods", "ns", "p"))
            .is_allowed()
    );
}

#[test]
fn rbac_index_should_be_shareable_across_request_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<RbacIndex>();
    let idx = std::sync::Arc::new(index(&fixture()));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let idx = idx.clone();
            std::thread::spawn(move || {
                idx.authorize(&UserInfo::new("carol", &[]), &url("get", "/metrics")).is_allowed()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("thread"));
    }
}
