//! The pod garbage collector, as Kubernetes' podgc: pods bound to a node that no longer
//! exists are marked Failed (condition `DisruptionTarget`, reason `DeletionByPodGC`) and
//! force-deleted, terminating pods never scheduled are force-deleted, and past
//! `--terminated-pod-gc-threshold` finished pods the oldest are deleted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;

use crate::{Context, Error};
use skiff_helpers::pods::phase;

/// How often the pods are looked over (Kubernetes' gcCheckPeriod).
const PERIOD: Duration = Duration::from_secs(20);

/// What to do with the pods, decided from the caches alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Bound to nodes the cache does not hold: confirm the node is gone, then fail and delete.
    pub orphaned: Vec<(String, String, String)>,
    /// Terminating and never scheduled: delete now.
    pub unscheduled_terminating: Vec<(String, String)>,
    /// The oldest finished pods past the threshold.
    pub terminated: Vec<(String, String)>,
}

fn key(p: &Pod) -> (String, String) {
    (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default())
}

pub(crate) fn plan(pods: &[Arc<Pod>], nodes: &HashSet<String>, threshold: usize) -> Plan {
    let mut plan = Plan::default();
    for p in pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if node.is_empty() {
            if p.metadata.deletion_timestamp.is_some() {
                plan.unscheduled_terminating.push(key(p));
            }
        } else if !nodes.contains(&node) {
            let (ns, name) = key(p);
            plan.orphaned.push((ns, name, node));
        }
    }
    if threshold > 0 {
        let mut done: Vec<&Arc<Pod>> =
            pods.iter().filter(|p| matches!(phase(p), "Succeeded" | "Failed")).collect();
        if done.len() > threshold {
            done.sort_by(|a, b| {
                let at = |p: &Pod| p.metadata.creation_timestamp.clone().map(|t| t.0);
                at(a).cmp(&at(b)).then_with(|| key(a).cmp(&key(b)))
            });
            let excess = done.len() - threshold;
            plan.terminated = done.into_iter().take(excess).map(|p| key(p)).collect();
        }
    }
    plan
}

struct PodGc {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
}

impl PodGc {
    async fn force_delete(&self, ns: &str, name: &str, uid: Option<String>) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Mark a pod of a vanished node Failed with the `DisruptionTarget` condition, then
    /// delete it.
    async fn collect_orphan(&self, ns: &str, name: &str, node: &str) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let Some(pod) = api.get_opt(name).await? else { return Ok(()) };
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            return Ok(());
        }
        if !matches!(phase(&pod), "Succeeded" | "Failed") {
            let mut conditions =
                pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some("PodGC: node no longer exists".into()),
                last_transition_time: Some(Time(Timestamp::now())),
                ..PodCondition::default()
            });
            let patch =
                serde_json::json!({"status": {"phase": "Failed", "conditions": conditions}});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(pod = %name, namespace = %ns, %node, "deleting the pod of a node that no longer exists");
        self.force_delete(ns, name, pod.metadata.uid.clone()).await
    }

    async fn pass(&self) -> Result<(), Error> {
        let nodes: HashSet<String> =
            self.nodes.state().iter().filter_map(|n| n.metadata.name.clone()).collect();
        let pods = self.pods.state();
        let threshold = self.ctx.options.terminated_pod_gc_threshold;
        let plan = plan(&pods, &nodes, threshold);
        for (ns, name) in &plan.terminated {
            self.force_delete(ns, name, None).await?;
        }
        // A node only missing from the cache may be new: ask the API before acting.
        let node_api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut gone: HashSet<String> = HashSet::new();
        let mut present: HashSet<String> = HashSet::new();
        for (ns, name, node) in &plan.orphaned {
            if present.contains(node) {
                continue;
            }
            if !gone.contains(node) {
                if node_api.get_opt(node).await?.is_some() {
                    present.insert(node.clone());
                    continue;
                }
                gone.insert(node.clone());
            }
            self.collect_orphan(ns, name, node).await?;
        }
        for (ns, name) in &plan.unscheduled_terminating {
            self.force_delete(ns, name, None).await?;
        }
        Ok(())
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    pods.wait_until_ready().await;
    nodes.wait_until_ready().await;
    let gc = PodGc { ctx, pods: pods.store(), nodes: nodes.store() };
    loop {
        if let Err(e) = gc.pass().await {
            tracing::debug!(error = %e, "pod garbage collection pass failed");
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, node: &str, phase: &str, created: i64, deleting: bool) -> Arc<Pod> {
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH));
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(at(created)),
                deletion_timestamp: deleting.then(|| at(created + 1)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        })
    }

    #[test]
    fn plan_should_pick_orphans_unscheduled_terminating_and_oldest_finished() {
        let pods = vec![
            pod("a", "n1", "Running", 1, false),
            pod("b", "gone", "Running", 2, false),
            pod("c", "", "Pending", 3, true),
            pod("d", "", "Pending", 4, false),
            pod("old", "n1", "Succeeded", 5, false),
            pod("older", "n1", "Failed", 4, false),
            pod("new", "n1", "Succeeded", 9, false),
        ];
        let nodes = HashSet::from(["n1".to_string()]);
        let p = plan(&pods, &nodes, 1);
        let k = |n: &str| ("default".to_string(), n.to_string());
        assert_eq!(p.orphaned, vec![("default".into(), "b".into(), "gone".into())]);
        assert_eq!(p.unscheduled_terminating, vec![k("c")]);
        assert_eq!(p.terminated, vec![k("older"), k("old")]);
        assert!(plan(&pods, &nodes, 0).terminated.is_empty(), "0 turns the threshold off");
        assert!(plan(&pods, &nodes, 3).terminated.is_empty());
    }
}
