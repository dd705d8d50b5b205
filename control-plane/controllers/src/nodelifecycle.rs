//! Node lifecycle: a node whose kubelet stops renewing its Lease is marked `Unknown` after
//! the grace period and tainted `node.kubernetes.io/unreachable` (a `Ready=False` node gets
//! `node.kubernetes.io/not-ready`), with both `NoSchedule` and `NoExecute` effects, as
//! Kubernetes' node lifecycle controller does. The taints go away when the node is Ready again.
//! A node reporting MemoryPressure, DiskPressure or PIDPressure (or NetworkUnavailable) gets
//! the matching `NoSchedule` taint while the condition is `True` (`TaintNodesByCondition`).
//!
//! The `NoExecute` taint manager then evicts the node's pods: at once for a pod that does not
//! tolerate a taint, or when its `tolerationSeconds` run out (the api server gives every pod
//! 300 s for these two taints unless it says otherwise). Evicted pods get the
//! `DisruptionTarget` condition and are deleted; their controllers replace them elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector;
use serde_json::json;

use skiff_client_tools::informers::BY_NODE;
use skiff_helpers::taints::tolerates;

use crate::{Context, Error};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The `NoSchedule` taint of each node condition that is bad when `True`.
pub const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];

/// What was last seen of a node's heartbeats, and when (by this process's clock).
struct Health {
    heartbeat: (Option<String>, Option<String>),
    probed: Instant,
    marked_pods: bool,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (nodes, leases) = (ctx.informers.get::<Node>(), ctx.informers.get::<Lease>());
    nodes.wait_until_ready().await;
    leases.wait_until_ready().await;
    let (nodes, leases) = (nodes.store(), leases.store());
    let grace = ctx.options.node_monitor_grace_period;
    let period = (grace / 8).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut health: HashMap<String, Health> = HashMap::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        let mut seen = HashSet::new();
        for node in nodes.state() {
            let name = node.metadata.name.clone().unwrap_or_default();
            seen.insert(name.clone());
            let lease = leases.get(&reflector::ObjectRef::new(&name).within("kube-node-lease"));
            let beat = heartbeat(&node, lease.as_deref());
            let h = health.entry(name.clone()).or_insert_with(|| Health {
                heartbeat: beat.clone(),
                probed: Instant::now(),
                marked_pods: false,
            });
            if h.heartbeat != beat {
                h.heartbeat = beat;
                h.probed = Instant::now();
            }
            if h.probed.elapsed() > grace && ready_status(&node) != Some("Unknown") {
                if let Err(e) = mark_unknown(&ctx, &node, now).await {
                    tracing::warn!(node = %name, error = %e, "marking the node Unknown failed");
                }
                continue;
            }
            let ready = ready_status(&node);
            if let Err(e) = sync_taints(&ctx, &node, ready, now).await {
                tracing::warn!(node = %name, error = %e, "updating the node's taints failed");
            }
            if ready == Some("True") {
                h.marked_pods = false;
            } else if ready.is_some() && !h.marked_pods {
                h.marked_pods = true;
                mark_pods_not_ready(&ctx, &name, now).await;
            }
            evict(&ctx, &node, now).await;
        }
        health.retain(|n, _| seen.contains(n));
    }
}

/// The node's heartbeats: its Lease's renewTime and its Ready condition's heartbeat.
fn heartbeat(node: &Node, lease: Option<&Lease>) -> (Option<String>, Option<String>) {
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string());
    let beat =
        ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_string());
    (renew, beat)
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

fn ready_status(node: &Node) -> Option<&str> {
    ready_condition(node).map(|c| c.status.as_str())
}

/// Every condition of the node becomes `Unknown`: the kubelet stopped reporting.
async fn mark_unknown(ctx: &Context, node: &Node, now: Timestamp) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| NodeCondition {
            last_transition_time: if c.status == "Unknown" {
                c.last_transition_time.clone()
            } else {
                Some(Time(now))
            },
            status: "Unknown".into(),
            reason: Some("NodeStatusUnknown".into()),
            message: Some("Kubelet stopped posting node status.".into()),
            ..c
        })
        .collect();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"conditions": conditions}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::warn!(node = %name, "node stopped posting status: marked Unknown");
    ctx.recorder.normal(node, "NodeNotReady", format!("Node {name} status is now: NodeNotReady"));
    Ok(())
}

/// The taints a node should carry for its Ready status, keeping the others it has.
pub fn desired_taints(current: &[Taint], ready: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let wanted = match ready {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE;
            !ours
                || (Some(t.key.as_str()) == wanted
                    && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
        })
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
    }
    out
}

/// `taints` with the `NoSchedule` taint of every condition in [`CONDITION_TAINTS`] that is
/// `True` among `conditions`, and without those of the others.
pub fn with_condition_taints(taints: Vec<Taint>, conditions: &[NodeCondition]) -> Vec<Taint> {
    let wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(ty, _)| conditions.iter().any(|c| c.type_ == *ty && c.status == "True"))
        .map(|(_, key)| *key)
        .collect();
    let mut out: Vec<Taint> = taints
        .into_iter()
        .filter(|t| {
            !CONDITION_TAINTS.iter().any(|(_, key)| *key == t.key)
                || (wanted.contains(&t.key.as_str()) && t.effect == "NoSchedule")
        })
        .collect();
    for key in wanted {
        if !out.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
            out.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                time_added: None,
                value: None,
            });
        }
    }
    out
}

async fn sync_taints(
    ctx: &Context,
    node: &Node,
    ready: Option<&str>,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let desired = with_condition_taints(desired_taints(&current, ready, now), conditions);
    if desired == current {
        return Ok(());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"taints": desired}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(node = %name, ?ready, "node taints updated");
    Ok(())
}

/// The pods bound to `node`, from the shared pod cache's node index.
fn pods_on(ctx: &Context, node: &str) -> Vec<Arc<Pod>> {
    ctx.informers.get::<Pod>().by_index(BY_NODE, node)
}

/// Pods on a node that is not ready are not ready either (Kubernetes' `MarkPodsNotReady`), so
/// Services and controllers stop counting them at once.
async fn mark_pods_not_ready(ctx: &Context, node: &str, now: Timestamp) {
    for pod in
        pods_on(ctx, node).iter().filter(|p| on_node(p, node) && skiff_helpers::pods::is_ready(p))
    {
        let api: Api<Pod> = Api::namespaced(
            ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let mut conditions =
            pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        for c in
            conditions.iter_mut().filter(|c| c.type_ == "Ready" || c.type_ == "ContainersReady")
        {
            c.status = "False".into();
            c.last_transition_time = Some(Time(now));
        }
        let patch = json!({"status": {"conditions": conditions}});
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) =
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
        {
            tracing::debug!(pod = %name, error = %e, "marking the pod not ready failed");
        }
    }
}

fn on_node(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

/// When a pod on a node with `taints` must go: `None` when it tolerates them forever,
/// `Some(now)`-or-earlier when it does not tolerate one of them, else the earliest time its
/// `tolerationSeconds` run out (counted from each taint's `timeAdded`).
pub fn eviction_time(
    tolerations: &[Toleration],
    taints: &[Taint],
    now: Timestamp,
) -> Option<Timestamp> {
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        let seconds = matching
            .iter()
            .map(|t| t.toleration_seconds)
            .try_fold(i64::MAX, |min, s| Some(min.min(s?)));
        if let Some(seconds) = seconds {
            let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            let deadline = added
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds.max(0)))
                .unwrap_or(added);
            at = Some(at.map_or(deadline, |a| a.min(deadline)));
        }
    }
    at
}

async fn evict(ctx: &Context, node: &Node, now: Timestamp) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if !taints.iter().any(|t| t.effect == "NoExecute") {
        return;
    }
    let pods = pods_on(ctx, &name);
    for pod in pods.iter().filter(|p| on_node(p, &name) && !skiff_helpers::pods::is_terminating(p))
    {
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        match eviction_time(&tolerations, &taints, now) {
            Some(at) if at <= now => {}
            _ => continue,
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(now),
        }]}});
        let _ = api
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Strategic(&condition))
            .await;
        match api.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %pod_name, node = %name, "evicted by NoExecute taint");
                ctx.recorder.normal(
                    &**pod,
                    "TaintManagerEviction",
                    format!("Marking for deletion Pod {ns}/{pod_name}"),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(pod = %pod_name, error = %e, "taint eviction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
        Taint { key: key.into(), effect: effect.into(), time_added: added.map(Time), value: None }
    }

    fn toleration(key: &str, op: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn taints_should_follow_the_ready_condition() {
        let now = Timestamp::now();
        let other = taint("dedicated", "NoSchedule", None);
        let t = desired_taints(std::slice::from_ref(&other), Some("Unknown"), now);
        let keys: Vec<(&str, &str)> =
            t.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute")
            ]
        );
        assert!(t[2].time_added.is_some() && t[1].time_added.is_none());
        // Unknown → False swaps unreachable for not-ready; True removes both.
        let f = desired_taints(&t, Some("False"), now);
        assert!(f.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert_eq!(f.iter().filter(|t| t.key == TAINT_NOT_READY).count(), 2);
        assert_eq!(desired_taints(&f, Some("True"), now), std::slice::from_ref(&other));
        // Stable: an existing taint keeps its timeAdded.
        let later = now.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(60)).unwrap();
        assert_eq!(desired_taints(&t, Some("Unknown"), later), t);
    }

    #[test]
    fn pressure_conditions_should_taint_the_node_no_schedule() {
        let cond = |ty: &str, status: &str| NodeCondition {
            type_: ty.into(),
            status: status.into(),
            ..Default::default()
        };
        let other = taint("dedicated", "NoSchedule", None);
        let conditions =
            [cond("Ready", "True"), cond("DiskPressure", "True"), cond("MemoryPressure", "False")];
        let t = with_condition_taints(vec![other.clone()], &conditions);
        let keys: Vec<(&str, &str)> =
            t.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
        assert_eq!(
            keys,
            [("dedicated", "NoSchedule"), ("node.kubernetes.io/disk-pressure", "NoSchedule")]
        );
        // Stable, and gone once the condition is False (or Unknown).
        assert_eq!(with_condition_taints(t.clone(), &conditions), t);
        let cleared = [cond("DiskPressure", "Unknown"), cond("PIDPressure", "True")];
        let t = with_condition_taints(t, &cleared);
        let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", "node.kubernetes.io/pid-pressure"]);
    }

    #[test]
    fn eviction_should_wait_for_the_shortest_matching_toleration() {
        let now = Timestamp::now();
        let added = now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(10)).unwrap();
        let taints =
            [taint(TAINT_UNREACHABLE, "NoExecute", Some(added)), taint("x", "NoSchedule", None)];
        // No toleration: now.
        assert_eq!(eviction_time(&[], &taints, now), Some(now));
        // Tolerated forever.
        let forever = toleration(TAINT_UNREACHABLE, "Exists", "NoExecute", None);
        assert_eq!(eviction_time(std::slice::from_ref(&forever), &taints, now), None);
        // An empty key with Exists tolerates everything.
        assert_eq!(eviction_time(&[toleration("", "Exists", "", None)], &taints, now), None);
        // 300 s from the taint's timeAdded; the shorter of two matching wins.
        let t300 = toleration(TAINT_UNREACHABLE, "Exists", "NoExecute", Some(300));
        let t5 = toleration(TAINT_UNREACHABLE, "Exists", "", Some(5));
        let at = eviction_time(&[t300.clone(), t5], &taints, now).unwrap();
        assert_eq!(at.as_second(), added.as_second() + 5);
        assert!(at <= now, "5 s after a taint added 10 s ago is past");
        let at = eviction_time(&[t300], &taints, now).unwrap();
        assert_eq!(at.as_second(), added.as_second() + 300);
        // A toleration of another effect or key does not count.
        let wrong = toleration(TAINT_UNREACHABLE, "Exists", "NoSchedule", None);
        assert_eq!(eviction_time(&[wrong], &taints, now), Some(now));
        let other = toleration(TAINT_NOT_READY, "Exists", "NoExecute", None);
        assert_eq!(eviction_time(&[other], &taints, now), Some(now));
    }
}
