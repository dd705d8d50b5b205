//! Authorization, as kube-apiserver's `--authorization-mode=Node,RBAC` decides: members of
//! `system:masters` may do everything; a node (`system:node:<name>` in `system:nodes`) is
//! judged by the Node authorizer; everyone else by RBAC over the Roles, ClusterRoles and
//! their bindings in the watch caches. `AlwaysAllow` (for comparisons) skips all of it.
//!
//! The RBAC index is rebuilt when any of the four caches changes, never per request; a
//! write to an RBAC object returns only once the cache has it, so a client that creates a
//! binding and then uses it is never refused by a stale index.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_auth::rbac::{PolicyRule, RbacIndex};
use skiff_auth::user::{self, UserInfo};
use skiff_auth::{Attributes, Decision};

use crate::State;
use crate::errors::ApiError;

/// Which authorizers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Node, then RBAC (kube-apiserver's usual `--authorization-mode=Node,RBAC`).
    #[default]
    NodeRbac,
    /// Everything authenticated is allowed (only for comparisons and debugging).
    AlwaysAllow,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        let mut modes: Vec<&str> = s.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        modes.sort_unstable();
        match modes.as_slice() {
            ["Node", "RBAC"] | ["RBAC"] => Ok(Mode::NodeRbac),
            ["AlwaysAllow"] => Ok(Mode::AlwaysAllow),
            _ => Err(format!(
                "unsupported authorization mode {s:?}: Skiff supports \"Node,RBAC\" (the default), \"RBAC\" and \"AlwaysAllow\""
            )),
        }
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_PLURALS: [&str; 4] = ["roles", "clusterroles", "rolebindings", "clusterrolebindings"];

/// The RBAC index and the cache generations it was built from.
#[derive(Default)]
pub struct Rbac {
    built: Mutex<Option<([u64; 4], Arc<RbacIndex>)>>,
    /// The watch caches of the four RBAC resources, looked up once.
    caches: std::sync::OnceLock<[Arc<crate::cache::Cache>; 4]>,
    /// The rules of the `system:node` ClusterRole, which the Node authorizer applies.
    node_rules: std::sync::OnceLock<Vec<PolicyRule>>,
}

fn caches(state: &State) -> Option<&[Arc<crate::cache::Cache>; 4]> {
    if let Some(c) = state.rbac.caches.get() {
        return Some(c);
    }
    let mut out = Vec::with_capacity(4);
    for plural in RBAC_PLURALS {
        out.push(state.caches.get(state.registry.by_plural(RBAC_GROUP, plural)?));
    }
    let out: [Arc<crate::cache::Cache>; 4] = out.try_into().ok()?;
    Some(state.rbac.caches.get_or_init(|| out))
}

/// Make sure the RBAC caches are built (at start-up, before the first decision).
pub async fn ready(state: &State) {
    let Some(caches) = caches(state) else { return };
    for cache in caches.iter() {
        if !cache.is_ready() {
            state.caches.reach(cache, 1).await;
        }
    }
}

/// After a write to an RBAC object: wait until its cache has it, so the next request sees it.
pub async fn settle_write(state: &State, plural: &str) {
    if !RBAC_PLURALS.contains(&plural) {
        return;
    }
    if let Some(res) = state.registry.by_plural(RBAC_GROUP, plural) {
        let cache = state.caches.get(res);
        state.caches.reach(&cache, state.store.current_revision()).await;
    }
}

fn index(state: &State) -> Arc<RbacIndex> {
    let rbac = &state.rbac;
    let caches = caches(state);
    let generations = caches.map(|c| c.each_ref().map(|c| c.generation())).unwrap_or_default();
    let mut built = rbac.built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((g, index)) = built.as_ref()
        && *g == generations
    {
        return index.clone();
    }
    let mut lists: [Vec<Value>; 4] = Default::default();
    if let Some(caches) = caches {
        for (i, cache) in caches.iter().enumerate() {
            let prefix = format!("/registry/{}/", RBAC_PLURALS[i]);
            if let Some((items, _)) = cache.snapshot(
                &prefix,
                &crate::selectors::LabelSelector::default(),
                &crate::selectors::FieldSelector::default(),
            ) {
                lists[i] = items.iter().map(|c| c.value()).collect();
            }
        }
    }
    let index = Arc::new(build_index(&lists));
    *built = Some((generations, index.clone()));
    index
}

fn build_index(lists: &[Vec<Value>; 4]) -> RbacIndex {
    fn refs(v: &[Value]) -> Vec<&Value> {
        v.iter().collect()
    }
    RbacIndex::build(&skiff_auth::rbac::RbacObjects {
        roles: refs(&lists[0]),
        cluster_roles: refs(&lists[1]),
        role_bindings: refs(&lists[2]),
        cluster_role_bindings: refs(&lists[3]),
    })
}

/// Decide whether `user` may do `attrs`.
pub fn authorize(state: &State, user: &UserInfo, attrs: &Attributes) -> Decision {
    if user.in_group(user::MASTERS) {
        return Decision::Allow(String::new());
    }
    if state.authorization_mode() == Mode::AlwaysAllow {
        return Decision::Allow(String::new());
    }
    if let Some(node) = user.node_name() {
        match node_authorize(state, node, attrs) {
            Decision::NoOpinion(_) => {}
            d => return d,
        }
    }
    index(state).authorize(user, attrs)
}

/// Whether `user` may do `attrs` (for the server's own checks: CSR approval, escalation).
pub fn allowed(state: &State, user: &UserInfo, attrs: &Attributes) -> bool {
    authorize(state, user, attrs).is_allowed()
}

/// The rules `user` has in `namespace` (SelfSubjectRulesReview), with evaluation errors.
pub fn rules_for(
    state: &State,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<PolicyRule>, Vec<String>) {
    if user.in_group(user::MASTERS) || state.authorization_mode() == Mode::AlwaysAllow {
        let all = PolicyRule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        };
        let urls = PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: vec!["*".into()],
            ..Default::default()
        };
        return (vec![all, urls], Vec::new());
    }
    index(state).rules_for(user, namespace)
}

/// The 403 kube-apiserver answers when `user` may not do `attrs`.
pub fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let suffix = if reason.is_empty() { String::new() } else { format!(": {reason}") };
    if !attrs.resource_request {
        return ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User {:?} cannot {} path {:?}{suffix}",
                user.name, attrs.verb, attrs.path
            ),
        );
    }
    let resource = attrs.resource_and_subresource();
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    let why = format!(
        "User {:?} cannot {} resource {:?} in API group {:?} {scope}{suffix}",
        user.name, attrs.verb, resource, attrs.api_group
    );
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {:?} is forbidden: {why}", attrs.name)
    };
    let mut e = ApiError::new(403, "Forbidden", message);
    e.details = Some(serde_json::json!({
        "name": attrs.name, "group": attrs.api_group, "kind": attrs.resource,
    }));
    e
}

/// The resources a node may read only when one of its pods refers to them.
const NODE_GRAPH_RESOURCES: &[&str] =
    &["secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes"];

/// The Node authorizer: a node may read the Secrets, ConfigMaps, claims and volumes its own
/// pods use and ask tokens for its pods' service accounts; for everything else it has the
/// rules of the `system:node` role. Writes are narrowed further by [`node_restriction`].
fn node_authorize(state: &State, node: &str, attrs: &Attributes) -> Decision {
    let deny = |why: String| Decision::Deny(why);
    if attrs.resource_request && attrs.api_group.is_empty() {
        let graph =
            NODE_GRAPH_RESOURCES.contains(&attrs.resource.as_str()) && attrs.subresource.is_empty();
        let token = attrs.resource == "serviceaccounts" && attrs.subresource == "token";
        let claim_status =
            attrs.resource == "persistentvolumeclaims" && attrs.subresource == "status";
        if graph || token || claim_status {
            let (verb_ok, doing) = if token {
                (attrs.verb == "create", "create tokens for")
            } else if claim_status {
                (matches!(attrs.verb.as_str(), "update" | "patch"), "update the status of")
            } else {
                (matches!(attrs.verb.as_str(), "get" | "list" | "watch"), "get")
            };
            if !verb_ok || attrs.name.is_empty() {
                return deny(format!(
                    "can only {doing} individual {} referenced by its pods",
                    attrs.resource
                ));
            }
            return if pods_refer_to(state, node, attrs) {
                Decision::Allow(format!(
                    "node {node:?} has a pod that uses {} {:?}",
                    attrs.resource, attrs.name
                ))
            } else {
                deny(format!("no relationship found between node '{node}' and this object"))
            };
        }
    }
    // Volume attachments are a node's only through the graph, and Skiff attaches none.
    if attrs.resource_request
        && attrs.api_group == "storage.k8s.io"
        && attrs.resource == "volumeattachments"
    {
        return deny(format!("no relationship found between node '{node}' and this object"));
    }
    let rules = node_rules(state);
    if rules.iter().any(|r| skiff_auth::rbac::rule_allows(r, attrs)) {
        Decision::Allow(String::new())
    } else {
        Decision::NoOpinion(String::new())
    }
}

/// What a node may do beyond its pods' objects: the `system:node` role, and, because a Skiff
/// node also runs the Service proxy, the cluster DNS and NetworkPolicy enforcement under its
/// own identity (where Kubernetes runs kube-proxy, CoreDNS and a CNI agent with identities
/// of their own), the rules of `system:node-proxier` and `system:kube-dns` and reading
/// NetworkPolicies and Namespaces.
fn node_rules(state: &State) -> &[PolicyRule] {
    state.rbac.node_rules.get_or_init(|| {
        let mut rules: Vec<PolicyRule> = skiff_auth::policy::bootstrap_objects()
            .into_iter()
            .filter(|o| {
                o["kind"] == "ClusterRole"
                    && matches!(
                        o["metadata"]["name"].as_str(),
                        Some("system:node" | "system:node-proxier" | "system:kube-dns")
                    )
            })
            .flat_map(|o| {
                serde_json::from_value::<Vec<PolicyRule>>(o["rules"].clone()).unwrap_or_default()
            })
            .collect();
        rules.push(PolicyRule::resource(
            &["get", "list", "watch"],
            &["networking.k8s.io"],
            &["networkpolicies"],
        ));
        rules.push(PolicyRule::resource(&["get", "list", "watch"], &[""], &["namespaces"]));
        rules
    })
}

fn pods_on_node(state: &State, node: &str) -> Vec<Value> {
    let Some(res) = state.registry.by_plural("", "pods") else { return Vec::new() };
    // The cache matches `spec.nodeName` on its stored attributes: only this node's pods are
    // decoded.
    let Ok(on_node) = crate::selectors::FieldSelector::parse(
        &format!("spec.nodeName={node}"),
        crate::selectors::supported_fields("Pod"),
    ) else {
        return Vec::new();
    };
    let Some((items, _)) = state.caches.get(res).snapshot(
        "/registry/pods/",
        &crate::selectors::LabelSelector::default(),
        &on_node,
    ) else {
        return Vec::new();
    };
    items.iter().map(|c| c.value()).collect()
}

/// Whether a pod bound to `node` uses the object `attrs` names.
fn pods_refer_to(state: &State, node: &str, attrs: &Attributes) -> bool {
    let name = attrs.name.as_str();
    let ns = attrs.namespace.as_str();
    let pods = pods_on_node(state, node);
    if attrs.resource == "persistentvolumes" {
        // A volume is the node's when a claim of one of its pods is bound to it.
        return pods.iter().any(|p| {
            let pns = p.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
            claims_of(p).any(|claim| {
                state
                    .cached(
                        "",
                        "persistentvolumeclaims",
                        &format!("/registry/persistentvolumeclaims/{pns}/{claim}"),
                    )
                    .is_some_and(|c| {
                        c.value().pointer("/spec/volumeName").and_then(Value::as_str) == Some(name)
                    })
            })
        });
    }
    pods.iter()
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        .any(|p| match attrs.resource.as_str() {
            "secrets" => references(p, "secret").any(|n| n == name),
            "configmaps" => references(p, "configmap").any(|n| n == name),
            "persistentvolumeclaims" => claims_of(p).any(|n| n == name),
            // Admission names every pod's account, except a mirror pod's, which has none.
            "serviceaccounts" => {
                p.pointer("/spec/serviceAccountName").and_then(Value::as_str) == Some(name)
            }
            _ => false,
        })
}

fn claims_of(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str))
}

/// The names of the Secrets (`kind` "secret") or ConfigMaps ("configmap") a pod refers to:
/// volumes, projected sources, env, envFrom, image pull secrets.
fn references<'a>(pod: &'a Value, kind: &'static str) -> impl Iterator<Item = &'a str> {
    let mut out: Vec<&str> = Vec::new();
    let spec = &pod["spec"];
    let (vol_key, vol_field, proj_key, env_ref, env_from) = if kind == "secret" {
        ("secret", "secretName", "secret", "secretKeyRef", "secretRef")
    } else {
        ("configMap", "name", "configMap", "configMapKeyRef", "configMapRef")
    };
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(n) = v[vol_key][vol_field].as_str() {
            out.push(n);
        }
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            if let Some(n) = s[proj_key]["name"].as_str() {
                out.push(n);
            }
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(n) = e["valueFrom"][env_ref]["name"].as_str() {
                    out.push(n);
                }
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(n) = e[env_from]["name"].as_str() {
                    out.push(n);
                }
            }
        }
    }
    if kind == "secret" {
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            if let Some(n) = s["name"].as_str() {
                out.push(n);
            }
        }
    }
    out.into_iter()
}

/// NodeRestriction admission: what a node may write, checked before the write with the
/// object as stored (`current`) and as sent (`incoming`). `Ok` for anyone but a node.
pub fn node_restriction(
    state: &State,
    user: &UserInfo,
    attrs: &Attributes,
    incoming: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else { return Ok(()) };
    let refuse = |qualified: &str, name: &str, why: String| {
        let what =
            if name.is_empty() { qualified.to_string() } else { format!("{qualified} {name:?}") };
        Err(ApiError::new(403, "Forbidden", format!("{what} is forbidden: {why}")))
    };
    if !attrs.resource_request || matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
        return Ok(());
    }
    // The name a write is about: the path's, or on create the body's.
    let name = if attrs.name.is_empty() {
        incoming.and_then(|o| o.pointer("/metadata/name")).and_then(Value::as_str).unwrap_or("")
    } else {
        &attrs.name
    };
    match (attrs.api_group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") => {
            if name != node {
                return refuse(
                    "nodes",
                    name,
                    format!("node {node:?} is not allowed to modify node {name:?}"),
                );
            }
            if let Some(obj) = incoming {
                let current = state
                    .cached("", "nodes", &format!("/registry/nodes/{node}"))
                    .map(|c| c.value());
                let forbidden = forbidden_node_labels(obj, current.as_ref());
                if !forbidden.is_empty() {
                    return refuse(
                        "nodes",
                        name,
                        format!("is not allowed to modify labels: {}", forbidden.join(", ")),
                    );
                }
            }
        }
        ("", "serviceaccounts") if attrs.subresource == "token" => {
            // A node asks for tokens only for its own pods (kube's NodeRestriction).
            let bound = incoming.and_then(|o| o.pointer("/spec/boundObjectRef"));
            let kind = bound.and_then(|b| b.get("kind")).and_then(Value::as_str).unwrap_or("");
            let pod_name = bound.and_then(|b| b.get("name")).and_then(Value::as_str).unwrap_or("");
            if kind != "Pod" || pod_name.is_empty() {
                return refuse(
                    "serviceaccounts",
                    name,
                    format!("node {node:?} can only create tokens bound to pods"),
                );
            }
            let key = format!("/registry/pods/{}/{pod_name}", attrs.namespace);
            let pod = state.cached("", "pods", &key).map(|c| c.value());
            let on_node = pod.as_ref().is_some_and(|p| {
                p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                    && p.pointer("/spec/serviceAccountName").and_then(Value::as_str) == Some(name)
            });
            let uid = bound.and_then(|b| b.get("uid")).and_then(Value::as_str).unwrap_or("");
            let uid_ok = uid.is_empty()
                || pod.as_ref().and_then(|p| p.pointer("/metadata/uid")).and_then(Value::as_str)
                    == Some(uid);
            if !on_node || !uid_ok {
                return refuse(
                    "serviceaccounts",
                    name,
                    format!(
                        "node {node:?} can only create tokens for pods of its own that use service account {name:?}"
                    ),
                );
            }
        }
        ("storage.k8s.io", "csinodes") if name != node => {
            return refuse(
                "csinodes.storage.k8s.io",
                name,
                format!("node {node:?} is not allowed to modify csinode {name:?}"),
            );
        }
        ("", "pods") => match attrs.subresource.as_str() {
            "status" | "" | "eviction" => {
                let key = format!("/registry/pods/{}/{}", attrs.namespace, attrs.name);
                let bound = state.cached("", "pods", &key).map(|c| c.value()).and_then(|p| {
                    p.pointer("/spec/nodeName").and_then(Value::as_str).map(str::to_string)
                });
                if attrs.verb == "create" && attrs.subresource.is_empty() {
                    let mirror = incoming
                        .and_then(|p| {
                            p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                        })
                        .is_some();
                    let own = incoming
                        .and_then(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
                        == Some(node);
                    if !(mirror && own) {
                        return refuse(
                            "pods",
                            &attrs.name,
                            format!(
                                "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                            ),
                        );
                    }
                    if let Some(why) = incoming.and_then(|p| mirror_pod_refusal(p, node)) {
                        return refuse(
                            "pods",
                            name,
                            format!("node {node:?} can not create pods that {why}"),
                        );
                    }
                } else if bound.as_deref() != Some(node) {
                    let what = if attrs.subresource == "status" {
                        "update pod status"
                    } else {
                        "delete or evict"
                    };
                    return refuse(
                        "pods",
                        &attrs.name,
                        format!(
                            "node {node:?} can only {what} for pods with spec.nodeName set to itself"
                        ),
                    );
                }
            }
            _ => {}
        },
        ("coordination.k8s.io", "leases")
            if attrs.namespace != "kube-node-lease" || name != node =>
        {
            return refuse(
                "leases.coordination.k8s.io",
                name,
                "can only access node lease with the same name as the requesting node".to_string(),
            );
        }
        _ => {}
    }
    Ok(())
}

/// NodeRestriction on a Node's update or patch, as it will be written (`new`) against what
/// is stored (`old`): a node may not change its labels in the restricted namespaces. `Ok`
/// for anyone but a node.
pub fn check_node_labels(new: &Value, old: &Value) -> Result<(), ApiError> {
    let Some(user) = crate::authn::current_user() else { return Ok(()) };
    if user.node_name().is_none() {
        return Ok(());
    }
    let forbidden = forbidden_node_labels(new, Some(old));
    if forbidden.is_empty() {
        return Ok(());
    }
    let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::new(
        403,
        "Forbidden",
        format!(
            "nodes {name:?} is forbidden: is not allowed to modify labels: {}",
            forbidden.join(", ")
        ),
    ))
}

/// Why a node may not create the mirror pod `pod`, as kube's NodeRestriction refuses them:
/// it would reach objects through the node authorizer's graph (Secrets, ConfigMaps, claims,
/// a service account) or claim an owner.
fn mirror_pod_refusal(pod: &Value, node: &str) -> Option<&'static str> {
    if references(pod, "secret").next().is_some() {
        return Some("use secrets");
    }
    if references(pod, "configmap").next().is_some() {
        return Some("use configmaps");
    }
    if claims_of(pod).next().is_some() {
        return Some("use persistentvolumeclaims");
    }
    let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array);
    if volumes.into_iter().flatten().any(|v| v.get("ephemeral").is_some_and(|e| !e.is_null())) {
        return Some("use ephemeral volumes");
    }
    let account = pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("");
    if !account.is_empty() {
        return Some("use service accounts");
    }
    let owners = pod.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    let foreign = owners.into_iter().flatten().any(|o| {
        o.get("kind").and_then(Value::as_str) != Some("Node")
            || o.get("name").and_then(Value::as_str) != Some(node)
    });
    if foreign {
        return Some("have owner references other than their node");
    }
    None
}

/// Labels a node may not set on itself (kube's NodeRestriction): those under
/// `node-restriction.kubernetes.io/`, and under `kubernetes.io/` or `k8s.io/` other than the
/// ones kubelets set (hostname, os, arch, instance type, topology, and the `kubelet.` and
/// `node.` namespaces). Only labels `incoming` adds, changes or removes relative to
/// `current` count. Sorted.
fn forbidden_node_labels(incoming: &Value, current: Option<&Value>) -> Vec<String> {
    const KUBELET_LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    ];
    let labels = |o: Option<&Value>| {
        o.and_then(|o| o.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (new, old) = (labels(Some(incoming)), labels(current));
    let mut modified: Vec<&String> =
        new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k).collect();
    modified.extend(old.keys().filter(|k| !new.contains_key(*k)));
    let mut out: Vec<String> = modified
        .into_iter()
        .filter(|key| {
            let Some((prefix, _)) = key.split_once('/') else { return false };
            let in_ns = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
            if in_ns("node-restriction.kubernetes.io") {
                return true;
            }
            let kube = in_ns("kubernetes.io") || in_ns("k8s.io");
            let kubelet_ns = in_ns("kubelet.kubernetes.io") || in_ns("node.kubernetes.io");
            kube && !kubelet_ns && !KUBELET_LABELS.contains(&key.as_str())
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every permission there is: what setting an `aggregationRule` requires.
fn full_authority() -> [PolicyRule; 2] {
    [PolicyRule::resource(&["*"], &["*"], &["*"]), PolicyRule::non_resource(&["*"], &["*"])]
}

/// The escalation and bind checks of RBAC writes: a user may create or change a Role or
/// ClusterRole only with rules it holds itself (or `escalate` on it), and a binding only to
/// a role whose rules it holds (or `bind` on it), as kube-apiserver's RBAC storage checks.
/// A ClusterRole's `aggregationRule` can gather any rule, so setting one needs every
/// permission (`*` on `*.*` and on every non-resource URL). `request_name` is the name in the
/// request's path (empty on create), which `escalate` is checked against as kube does. Writes
/// by the server's own components (no request user) and by `system:masters` pass.
pub fn check_escalation(
    state: &State,
    kind: &str,
    obj: &Value,
    request_name: &str,
) -> Result<(), ApiError> {
    let Some(user) = crate::authn::current_user() else { return Ok(()) };
    if user.in_group(user::MASTERS) || state.authorization_mode() == Mode::AlwaysAllow {
        return Ok(());
    }
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let (plural, rules, verb, checked_name) = match kind {
        "Role" | "ClusterRole" => {
            let rules: Vec<PolicyRule> =
                serde_json::from_value(obj.get("rules").cloned().unwrap_or(Value::Null))
                    .unwrap_or_default();
            let plural = if kind == "Role" { "roles" } else { "clusterroles" };
            let escalate = Attributes::resource("escalate", RBAC_GROUP, plural, ns, request_name);
            if allowed(state, &user, &escalate) {
                return Ok(());
            }
            if kind == "ClusterRole" && obj.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                let (held, _) = rules_for(state, &user, "");
                if skiff_auth::rbac::covers(&held, &full_authority()).is_err() {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "clusterroles.{RBAC_GROUP} {name:?} is forbidden: must have \
                             cluster-admin privileges to use the aggregationRule"
                        ),
                    ));
                }
            }
            (plural, rules, "escalate", None)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
            let role_name = obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
            let role_plural = if role_kind == "Role" { "roles" } else { "clusterroles" };
            let role_ns = if role_kind == "Role" { ns } else { "" };
            // The rules the index grants through the role: an aggregated ClusterRole's
            // gathered rules included, even before the aggregation controller stores them.
            let index = index(state);
            let Some(rules) = index.role_rules(role_kind, role_ns, role_name) else {
                // kube-apiserver refuses a binding to a role it cannot find unless the user
                // may bind it.
                let attrs = Attributes::resource("bind", RBAC_GROUP, role_plural, ns, role_name);
                if allowed(state, &user, &attrs) {
                    return Ok(());
                }
                let what =
                    if kind == "RoleBinding" { "rolebindings" } else { "clusterrolebindings" };
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!(
                        "{what}.{RBAC_GROUP} {name:?} is invalid: {role_plural}.{RBAC_GROUP} {role_name:?} not found"
                    ),
                ));
            };
            (role_plural, rules.to_vec(), "bind", Some(role_name.to_string()))
        }
        _ => return Ok(()),
    };
    if let Some(role_name) = checked_name
        && allowed(state, &user, &Attributes::resource(verb, RBAC_GROUP, plural, ns, &role_name))
    {
        return Ok(());
    }
    let (held, errors) = rules_for(state, &user, ns);
    if let Err(missing) = skiff_auth::rbac::covers(&held, &rules) {
        let qualified = match kind {
            "Role" => "roles",
            "ClusterRole" => "clusterroles",
            "RoleBinding" => "rolebindings",
            _ => "clusterrolebindings",
        };
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{qualified}.{RBAC_GROUP} {name:?} is forbidden: {}",
                skiff_auth::rbac::escalation_message(&user, &missing, &errors)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn node_labels_should_be_refused_as_node_restriction_does() {
        let node = |labels: Value| json!({"metadata": {"name": "n1", "labels": labels}});
        let kubelet = json!({"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": "z1", "node.kubernetes.io/exclude-from-external-load-balancers": "",
            "kubelet.kubernetes.io/x": "y", "example.com/team": "a"});
        assert!(forbidden_node_labels(&node(kubelet.clone()), None).is_empty());
        let bad = json!({"node-restriction.kubernetes.io/trusted": "true",
            "node-role.kubernetes.io/control-plane": "", "foo.k8s.io/x": "1"});
        assert_eq!(
            forbidden_node_labels(&node(bad.clone()), None),
            [
                "foo.k8s.io/x",
                "node-restriction.kubernetes.io/trusted",
                "node-role.kubernetes.io/control-plane"
            ]
        );
        // Unchanged labels an administrator set are the node's to keep, not to change or drop.
        let current = node(bad.clone());
        assert!(forbidden_node_labels(&node(bad), Some(&current)).is_empty());
        assert_eq!(
            forbidden_node_labels(
                &node(json!({"foo.k8s.io/x": "1", "node-role.kubernetes.io/control-plane": ""})),
                Some(&current)
            ),
            ["node-restriction.kubernetes.io/trusted"]
        );
    }

    #[test]
    fn mirror_pods_should_not_reach_objects_through_the_graph() {
        let pod = |spec: Value, meta: Value| {
            let mut m =
                json!({"name": "static", "annotations": {"kubernetes.io/config.mirror": "x"}});
            if let (Some(m), Some(extra)) = (m.as_object_mut(), meta.as_object()) {
                m.extend(extra.clone());
            }
            json!({"metadata": m, "spec": spec})
        };
        let c = |extra: Value| {
            let mut c = json!({"name": "c", "image": "i"});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            json!({"nodeName": "n1", "containers": [c]})
        };
        assert_eq!(mirror_pod_refusal(&pod(c(json!({})), json!({})), "n1"), None);
        let owned_by_node = json!({"ownerReferences": [{"kind": "Node", "name": "n1", "apiVersion": "v1", "uid": "u"}]});
        assert_eq!(mirror_pod_refusal(&pod(c(json!({})), owned_by_node), "n1"), None);
        let cases = [
            (c(json!({"envFrom": [{"secretRef": {"name": "s"}}]})), json!({}), "use secrets"),
            (
                c(
                    json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}),
                ),
                json!({}),
                "use configmaps",
            ),
            (
                json!({"nodeName": "n1", "containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "pvc"}}]}),
                json!({}),
                "use persistentvolumeclaims",
            ),
            (
                json!({"nodeName": "n1", "containers": [], "volumes": [{"name": "v", "ephemeral": {"volumeClaimTemplate": {}}}]}),
                json!({}),
                "use ephemeral volumes",
            ),
            (
                json!({"nodeName": "n1", "containers": [], "serviceAccountName": "default"}),
                json!({}),
                "use service accounts",
            ),
            (
                c(json!({})),
                json!({"ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "apiVersion": "apps/v1", "uid": "u"}]}),
                "have owner references other than their node",
            ),
        ];
        for (spec, meta, want) in cases {
            assert_eq!(mirror_pod_refusal(&pod(spec.clone(), meta), "n1"), Some(want), "{spec}");
        }
    }
}
