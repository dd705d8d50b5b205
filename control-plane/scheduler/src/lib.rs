//! A minimal scheduler: binds each pending pod to a Ready, schedulable node that has the pod's
//! runtime handler, through the API like every other component. The plugin framework
//! (filters, scores, preemption) replaces the placement function in a later version; the
//! queue and binding path stay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::Semaphore;

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod snapshot;
pub mod types;

pub const SCHEDULER_NAME: &str = "default-scheduler";
pub const DEFAULT_SCHEDULER_NAME: &str = SCHEDULER_NAME;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("watch failed: {0}")]
    Watch(#[from] watcher::Error),
}

/// Why a pod fits on no node, in Kubernetes' message format.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unschedulable {
    pub total: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl Unschedulable {
    pub fn message(&self) -> String {
        let parts: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!("0/{} nodes are available: {}.", self.total, parts.join(", "))
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn node_handlers(node: &Node) -> Vec<String> {
    node.status
        .as_ref()
        .and_then(|s| s.runtime_handlers.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|h| h.name.clone())
        .collect()
}

/// Pick a node for `pod` among `nodes`. `handler` is the pod's RuntimeClass handler, if any.
/// Among feasible nodes the one with the fewest pods assigned so far wins (spreading).
pub fn place<'a>(
    pod: &Pod,
    handler: Option<&str>,
    nodes: &'a [Arc<Node>],
    load: &BTreeMap<String, usize>,
) -> Result<&'a Node, Unschedulable> {
    let mut why = Unschedulable { total: nodes.len(), ..Default::default() };
    let wanted_node = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let mut best: Option<&Node> = None;
    for node in nodes {
        let reason = if !node_ready(node) {
            Some("node(s) were not ready".to_string())
        } else if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
            Some("node(s) were unschedulable".to_string())
        } else if handler.is_some_and(|h| !node_handlers(node).iter().any(|n| n == h)) {
            Some(format!("node(s) didn't have the runtime handler \"{}\"", handler.unwrap_or("")))
        } else if wanted_node.is_some_and(|sel| {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        }) {
            Some("node(s) didn't match Pod's node affinity/selector".to_string())
        } else {
            None
        };
        match reason {
            Some(r) => *why.reasons.entry(r).or_default() += 1,
            None => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let better = best.is_none_or(|b| {
                    load.get(&name).copied().unwrap_or(0)
                        < load.get(b.metadata.name.as_deref().unwrap_or("")).copied().unwrap_or(0)
                });
                if better {
                    best = Some(node);
                }
            }
        }
    }
    best.ok_or(why)
}

/// Run the scheduler until the watch stream ends (it retries internally on errors).
pub async fn run(client: kube::Client) -> Result<(), SchedulerError> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    let (node_store, node_writer) = reflector::store::<Node>();
    let node_stream =
        reflector::reflector(node_writer, watcher::watcher(nodes_api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|_| async {});
    tokio::spawn(node_stream);
    let rc_api: Api<RuntimeClass> = Api::all(client.clone());
    let (rc_store, rc_writer) = reflector::store::<RuntimeClass>();
    tokio::spawn(
        reflector::reflector(rc_writer, watcher::watcher(rc_api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|_| async {}),
    );
    let _ = node_store.wait_until_ready().await;
    let _ = rc_store.wait_until_ready().await;

    let pods_api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut pending = watcher::watcher(pods_api, config).default_backoff().boxed();
    let inflight = Arc::new(Semaphore::new(64));
    let load = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<Pod>();
    loop {
        let pod = tokio::select! {
            ev = pending.try_next() => match ev {
                Ok(Some(Event::Apply(p) | Event::InitApply(p))) => p,
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    continue;
                }
            },
            Some(p) = retry_rx.recv() => p,
        };
        let spec = pod.spec.as_ref();
        let ours = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME)
            == SCHEDULER_NAME;
        let bound = spec.and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        if !ours || bound || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let permit = match inflight.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let (client, node_store, rc_store, load, retry_tx) =
            (client.clone(), node_store.clone(), rc_store.clone(), load.clone(), retry_tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(pod) = schedule_one(&client, &node_store, &rc_store, &load, pod).await {
                // Unschedulable for now: look again later, when nodes may have changed.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = retry_tx.send(pod);
            }
        });
    }
}

async fn schedule_one(
    client: &kube::Client,
    nodes: &Store<Node>,
    runtime_classes: &Store<RuntimeClass>,
    load: &std::sync::Mutex<BTreeMap<String, usize>>,
    pod: Pod,
) -> Result<(), Pod> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let rc_name = pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone());
    let handler = match &rc_name {
        None => None,
        Some(rc) => {
            match runtime_classes.state().iter().find(|r| r.metadata.name.as_deref() == Some(rc)) {
                Some(r) => Some(r.handler.clone()),
                None => {
                    let msg = format!("pod uses RuntimeClass \"{rc}\", which does not exist");
                    mark_unschedulable(&api, &name, &msg).await;
                    return Err(pod);
                }
            }
        }
    };
    let all = nodes.state();
    let snapshot = load.lock().map(|l| l.clone()).unwrap_or_default();
    let chosen = match place(&pod, handler.as_deref(), &all, &snapshot) {
        Ok(n) => n.metadata.name.clone().unwrap_or_default(),
        Err(why) => {
            mark_unschedulable(&api, &name, &why.message()).await;
            return Err(pod);
        }
    };
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(chosen.clone()),
            ..Default::default()
        },
    };
    let body = match serde_json::to_vec(&binding) {
        Ok(b) => b,
        Err(_) => return Err(pod),
    };
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(body);
    let Ok(req) = req else { return Err(pod) };
    match client.request_text(req).await {
        Ok(_) => {
            if let Ok(mut l) = load.lock() {
                *l.entry(chosen.clone()).or_default() += 1;
            }
            tracing::debug!(pod = %format!("{ns}/{name}"), node = %chosen, "bound");
            Ok(())
        }
        // Already bound or gone: nothing left to do.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed");
            Err(pod)
        }
    }
}

async fn mark_unschedulable(api: &Api<Pod>, name: &str, message: &str) {
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastProbeTime": null, "lastTransitionTime": chrono_now()}]}});
    if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await
    {
        tracing::debug!(pod = name, error = %e, "could not record unschedulable condition");
    }
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeRuntimeHandler, NodeStatus};

    fn node(name: &str, ready: bool, handlers: &[&str]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                runtime_handlers: Some(
                    handlers
                        .iter()
                        .map(|h| NodeRuntimeHandler { name: Some(h.to_string()), features: None })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn place_should_require_ready_node_with_handler() {
        let nodes = vec![node("a", false, &["wasmtime"]), node("b", true, &["wasmtime"])];
        let pod = Pod::default();
        let load = BTreeMap::new();
        assert_eq!(
            place(&pod, Some("wasmtime"), &nodes, &load).unwrap().metadata.name.as_deref(),
            Some("b")
        );
        let err = place(&pod, Some("runc"), &nodes, &load).unwrap_err();
        assert_eq!(
            err.message(),
            "0/2 nodes are available: 1 node(s) didn't have the runtime handler \"runc\", 1 node(s) were not ready."
        );
    }

    #[test]
    fn place_should_spread_by_load() {
        let nodes = vec![node("a", true, &["wasmtime"]), node("b", true, &["wasmtime"])];
        let load = BTreeMap::from([("a".to_string(), 3usize)]);
        assert_eq!(
            place(&Pod::default(), None, &nodes, &load).unwrap().metadata.name.as_deref(),
            Some("b")
        );
    }
}
