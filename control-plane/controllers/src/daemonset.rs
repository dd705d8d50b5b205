//! The DaemonSet controller: one pod on every node the pod template fits (node selector,
//! required node affinity, taints against the pod's tolerations plus the ones Kubernetes
//! adds to every daemon pod), removed from nodes that no longer fit; template history in
//! ControllerRevisions; `RollingUpdate` bounded by `maxUnavailable` or `maxSurge`, or
//! `OnDelete`.
//!
//! Each pod is created for its node: a required node affinity `metadata.name In [node]`,
//! as Kubernetes sets it, and `spec.nodeName` too, because Skiff's scheduler places pods by
//! node selector and runtime handler only and does not read node affinity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tokio::task::JoinSet;

use crate::history::{self, POD_REVISION_LABEL};
use crate::{Context, Error};
use skiff_client_tools::informers::{BY_OWNER_UID, Informer};
use skiff_client_tools::workqueue::{self, WorkQueue, key_of, split_key};
use skiff_helpers::labels::selector_matches;
use skiff_helpers::node_selector::{node_matches_term, node_selector_matches};
use skiff_helpers::pods::{
    controller_ref, is_available, is_controlled_by, is_ready, is_terminating, phase,
    pod_from_template,
};
use skiff_helpers::taints::tolerated_by;

/// The template generation a daemon pod was made from (deprecated in Kubernetes, still set).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Creations or deletions in flight at once for one object.
const BURST: usize = 64;
const WORKERS: usize = 2;
/// How long a create or delete may go unseen in the cache before it is no longer waited for.
const EXPECTATION_TTL: Duration = Duration::from_secs(60);

/// The tolerations Kubernetes adds to every daemon pod, so that it runs on nodes that are
/// not ready, unreachable, under pressure or cordoned.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// `tolerations` plus the daemon defaults, a default replacing a toleration of the same
/// key and effect.
pub fn with_default_tolerations(tolerations: &[Toleration], host_network: bool) -> Vec<Toleration> {
    let defaults = default_tolerations(host_network);
    let mut out: Vec<Toleration> = tolerations
        .iter()
        .filter(|t| !defaults.iter().any(|d| d.key == t.key && d.effect == t.effect))
        .cloned()
        .collect();
    out.extend(defaults);
    out
}

/// Does the node run the daemon pod, and may a pod already there keep running?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeFit {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod`: the node selector and required node affinity must
/// match; every NoSchedule/NoExecute taint must be tolerated to start a pod, and every
/// NoExecute taint to keep one running.
pub fn node_fit(node: &Node, template: &PodTemplateSpec) -> NodeFit {
    let spec = template.spec.clone().unwrap_or_default();
    let labels = node.labels();
    let selector_ok = node_selector_matches(spec.node_selector.as_ref(), labels);
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .is_none_or(|sel| sel.node_selector_terms.iter().any(|t| node_matches_term(t, node)));
    if !selector_ok || !affinity_ok {
        return NodeFit::default();
    }
    let tolerations = with_default_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        spec.host_network.unwrap_or(false),
    );
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|taint| !tolerated_by(&tolerations, taint))
    };
    NodeFit {
        should_run: !untolerated(&["NoSchedule", "NoExecute"]),
        should_continue_running: !untolerated(&["NoExecute"]),
    }
}

/// How updates roll out, resolved against the number of nodes that should run the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RollingUpdate { max_surge: i32, max_unavailable: i32 },
    OnDelete,
}

fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * i64::from(total);
            let r = if round_up { (x + 99) / 100 } else { x / 100 };
            i32::try_from(r).unwrap_or(i32::MAX)
        }
    }
}

impl Strategy {
    /// `maxSurge` rounds up, `maxUnavailable` down; both zero would stall, so then one pod
    /// may be unavailable (Kubernetes' `ResolveFenceposts`).
    pub fn of(ds: &DaemonSet, desired: i32) -> Self {
        let s = ds.spec.as_ref().and_then(|s| s.update_strategy.clone()).unwrap_or_default();
        if s.type_.as_deref() == Some("OnDelete") {
            return Strategy::OnDelete;
        }
        let ru = s.rolling_update.unwrap_or_default();
        let max_surge = scaled(ru.max_surge.as_ref(), desired, true, 0);
        let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, false, 1);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Strategy::RollingUpdate { max_surge, max_unavailable }
    }
}

/// One node and the daemon pods on it (terminating ones included).
#[derive(Debug, Clone)]
pub struct NodePods<'a> {
    pub node: String,
    pub fit: NodeFit,
    pub pods: Vec<&'a Pod>,
}

/// What one sync does: create a pod on these nodes, delete these pods (by name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
    pub requeue: Option<Duration>,
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(POD_REVISION_LABEL).is_some_and(|h| h == hash)
}

/// Oldest first, Running ones before others (Kubernetes' `podByCreationTimestampAndPhase`).
fn by_age<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut v = pods.to_vec();
    v.sort_by_key(|p| {
        (phase(p) != "Running", p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any())
    });
    v
}

/// The updated and the old pod on a node, among its live pods; `None` when there is more
/// than one of either (the node is being cleaned up).
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().filter(|p| !is_terminating(p)) {
        let slot = if is_updated(p, hash) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// Decide what to do, as Kubernetes' daemon controller does: `manage` (a pod where one
/// should run, none where none may, failed pods replaced, duplicates removed), then the
/// rolling update within `maxUnavailable` (old pods deleted, replaced by `manage` later) or
/// `maxSurge` (a new pod beside the old one, which goes once the new one is available).
pub fn plan(
    nodes: &[NodePods],
    hash: &str,
    strategy: Strategy,
    min_ready: i32,
    now: Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let surge = matches!(strategy, Strategy::RollingUpdate { max_surge, .. } if max_surge > 0);
    for n in nodes {
        let live: Vec<&Pod> = n.pods.iter().copied().filter(|p| !is_terminating(p)).collect();
        if !n.fit.should_continue_running {
            out.delete.extend(live.iter().map(|p| p.name_any()));
            continue;
        }
        if n.pods.is_empty() {
            if n.fit.should_run {
                out.create.push(n.node.clone());
            }
            continue;
        }
        let mut running = Vec::new();
        for p in live {
            if phase(p) == "Failed" {
                out.delete.push(p.name_any());
            } else {
                running.push(p);
            }
        }
        if running.len() > 1 {
            let ordered = by_age(&running);
            let keep: Vec<&Pod> = if surge {
                let new = ordered.iter().find(|p| is_updated(p, hash));
                let old = ordered.iter().find(|p| !is_updated(p, hash));
                new.into_iter().chain(old).copied().collect()
            } else {
                ordered.first().copied().into_iter().collect()
            };
            out.delete.extend(
                ordered
                    .iter()
                    .filter(|p| !keep.iter().any(|k| k.name_any() == p.name_any()))
                    .map(|p| p.name_any()),
            );
        }
    }
    let Strategy::RollingUpdate { max_surge, max_unavailable } = strategy else { return out };
    let available = |p: &Pod| is_available(p, min_ready, now);
    let with_pods = nodes.iter().filter(|n| n.fit.should_continue_running && !n.pods.is_empty());
    if max_surge == 0 {
        let mut unavailable = 0;
        let (mut replace, mut candidates) = (Vec::new(), Vec::new());
        for n in with_pods {
            match updated_and_old(&n.pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if available(old) {
                        candidates.push(old.name_any());
                    } else {
                        replace.push(old.name_any());
                    }
                }
            }
        }
        for name in candidates {
            if unavailable >= max_unavailable {
                break;
            }
            unavailable += 1;
            replace.push(name);
        }
        for name in replace {
            if !out.delete.contains(&name) {
                out.delete.push(name);
            }
        }
    } else {
        let mut in_surge = 0;
        let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
        for n in with_pods {
            match updated_and_old(&n.pods, hash) {
                None => in_surge += 1,
                Some((_, None)) => {}
                // No new pod where none may start (an untolerated NoSchedule taint).
                Some((None, Some(_))) if !n.fit.should_run => {}
                Some((None, Some(old))) => {
                    if available(old) {
                        candidates.push(n.node.clone());
                    } else {
                        allowed.push(n.node.clone());
                    }
                }
                Some((Some(new), Some(old))) => {
                    if available(new) {
                        if !out.delete.contains(&old.name_any()) {
                            out.delete.push(old.name_any());
                        }
                    } else {
                        in_surge += 1;
                    }
                }
            }
        }
        let room = usize::try_from((max_surge - in_surge).max(0)).unwrap_or(0);
        out.create.extend(allowed);
        out.create.extend(candidates.into_iter().take(room));
    }
    out
}

/// The status Kubernetes computes (and `kubectl rollout status daemonset` reads): per node
/// that should run the pod, its oldest pod counts for scheduled, ready, available, updated.
pub fn compute_status(
    ds: &DaemonSet,
    nodes: &[NodePods],
    hash: &str,
    collision_count: Option<i32>,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count,
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for n in nodes {
        let oldest = by_age(&n.pods).first().copied();
        if n.fit.should_run {
            st.desired_number_scheduled += 1;
            if let Some(pod) = oldest {
                st.current_number_scheduled += 1;
                if is_ready(pod) {
                    st.number_ready += 1;
                    if is_available(pod, min_ready, now) {
                        available += 1;
                    }
                }
                if is_updated(pod, hash) {
                    updated += 1;
                }
            }
        } else if oldest.is_some() {
            st.number_misscheduled += 1;
        }
    }
    // Zeros of these omitempty counters are absent, as kube stores them (so the status
    // compares equal to the one read back and is not rewritten each sync).
    let nz = |n: i32| (n != 0).then_some(n);
    st.number_available = nz(available);
    st.updated_number_scheduled = nz(updated);
    st.number_unavailable = nz(st.desired_number_scheduled - available);
    st
}

/// The pod for `node`, made from the DaemonSet's template (revision `hash`).
pub fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds.spec.clone().unwrap_or_default().template;
    let ns = ds.namespace().unwrap_or_default();
    let mut pod = pod_from_template(&template, &ns, controller_ref(ds));
    pod.metadata.generate_name = Some(format!("{}-", ds.name_any()));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_REVISION_LABEL.into(), hash.into());
    labels
        .insert(TEMPLATE_GENERATION_LABEL.into(), ds.metadata.generation.unwrap_or(0).to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.tolerations = Some(with_default_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        spec.host_network.unwrap_or(false),
    ));
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    spec.node_name = Some(node.into());
    pod
}

/// Pod names created or deleted by a DaemonSet that its cache has not shown yet.
#[derive(Default)]
struct Pending {
    created: HashMap<String, Instant>,
    deleted: HashMap<String, Instant>,
}

struct Controller {
    ctx: Arc<Context>,
    queue: WorkQueue,
    sets: Store<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    pending: Mutex<HashMap<String, Pending>>,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let informers = &ctx.informers;
    let sets = informers.get::<DaemonSet>();
    let pods = informers.get::<Pod>();
    let revisions = informers.get::<ControllerRevision>();
    let nodes = informers.get::<Node>();
    sets.wait_until_ready().await;
    pods.wait_until_ready().await;
    revisions.wait_until_ready().await;
    nodes.wait_until_ready().await;
    workqueue::enqueue_objects(&sets, &queue);
    workqueue::enqueue_controllers(&pods, &queue, "DaemonSet");
    workqueue::enqueue_controllers(&revisions, &queue, "DaemonSet");
    let (sets, revisions) = (sets.store(), revisions.store());
    // Any node change may change where daemon pods belong: every DaemonSet looks again.
    let (q, all_sets) = (queue.clone(), sets.clone());
    nodes.on_change(move |_| {
        for d in all_sets.state() {
            q.add(&key_of(d.as_ref()));
        }
    });
    let nodes = nodes.store();
    for d in sets.state() {
        queue.add(&key_of(d.as_ref()));
    }
    let c = Arc::new(Controller {
        ctx,
        queue,
        sets,
        pods,
        nodes,
        revisions,
        pending: Mutex::new(HashMap::new()),
    });
    let queue = c.queue.clone();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "daemonset", move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl Controller {
    /// True when every create and delete this controller made for `key` shows in `pods`
    /// (or has waited too long); resolved entries are dropped.
    fn settled(&self, key: &str, pods: &[Arc<Pod>]) -> bool {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(key) else { return true };
        let by_name: HashMap<String, &Pod> =
            pods.iter().map(|p| (p.name_any(), p.as_ref())).collect();
        p.created.retain(|name, at| !by_name.contains_key(name) && at.elapsed() < EXPECTATION_TTL);
        p.deleted.retain(|name, at| {
            by_name.get(name).is_some_and(|p| !is_terminating(p)) && at.elapsed() < EXPECTATION_TTL
        });
        let done = p.created.is_empty() && p.deleted.is_empty();
        if done {
            map.remove(key);
        }
        done
    }

    fn expect(&self, key: &str, created: Option<String>, deleted: Option<String>) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.entry(key.to_string()).or_default();
        if let Some(n) = created {
            p.created.insert(n, Instant::now());
        }
        if let Some(n) = deleted {
            p.deleted.insert(n, Instant::now());
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = ds.uid().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let client = self.ctx.client.clone();
        let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
        let now = Timestamp::now();

        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_OWNER_UID, &uid)
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns) && is_controlled_by(&p.metadata, &uid))
            .filter(|p| selector_matches(&spec.selector, p.labels()))
            // A deleted pod that has finished is as good as gone.
            .filter(|p| !(is_terminating(p) && matches!(phase(p), "Succeeded" | "Failed")))
            .collect();
        let mut revisions: Vec<ControllerRevision> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(ns) && is_controlled_by(&r.metadata, &uid))
            .map(|r| (*r).clone())
            .collect();
        let status = ds.status.clone().unwrap_or_default();
        let (current, collisions) =
            history::ensure(&rev_api, &*ds, &spec.template, &revisions, status.collision_count)
                .await?;
        revisions.retain(|r| r.name_any() != current.name_any());
        revisions.push(current.clone());
        let hash = history::hash_of(&current);

        let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for p in &pods {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            by_node.entry(node).or_default().push(p.as_ref());
        }
        let mut nodes: Vec<NodePods> = Vec::new();
        for node in self.nodes.state() {
            let name = node.name_any();
            let pods = by_node.remove(&name).unwrap_or_default();
            nodes.push(NodePods { node: name, fit: node_fit(&node, &spec.template), pods });
        }
        // Pods on nodes that are gone (or never placed): nothing may run there.
        for (node, pods) in by_node {
            nodes.push(NodePods { node, fit: NodeFit::default(), pods });
        }

        let desired = i32::try_from(nodes.iter().filter(|n| n.fit.should_run).count()).unwrap_or(0);
        let strategy = Strategy::of(&ds, desired);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let mut requeue = None;
        if self.settled(key, &pods) {
            let plan = plan(&nodes, &hash, strategy, min_ready, now);
            requeue = plan.requeue;
            let creates: Vec<_> =
                plan.create.iter().map(|node| self.create_pod(key, &ds, &hash, node)).collect();
            let deletes: Vec<_> = plan
                .delete
                .iter()
                .map(|pod| {
                    let uid = pods.iter().find(|p| &p.name_any() == pod).and_then(|p| p.uid());
                    self.delete_pod(key, &ds, pod, uid)
                })
                .collect();
            let (created, deleted) = futures::join!(
                stream::iter(creates).buffer_unordered(BURST).collect::<Vec<_>>(),
                stream::iter(deletes).buffer_unordered(BURST).collect::<Vec<_>>()
            );
            created.into_iter().chain(deleted).collect::<Result<Vec<()>, Error>>()?;
        }
        // Pods Ready but not yet available: look again when they will be.
        if min_ready > 0 {
            let waiting = pods.iter().any(|p| is_ready(p) && !is_available(p, min_ready, now));
            if waiting {
                requeue = Some(Duration::from_secs(1));
            }
        }

        let new_status = compute_status(&ds, &nodes, &hash, collisions, now);
        if ds.status.as_ref() != Some(&new_status) {
            let api: Api<DaemonSet> = Api::namespaced(client, ns);
            let patch = json!({"status": new_status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let live: HashSet<String> = revisions
            .iter()
            .filter(|r| {
                let h = history::hash_of(r);
                r.name_any() == current.name_any() || pods.iter().any(|p| is_updated(p, &h))
            })
            .map(|r| r.name_any())
            .collect();
        history::prune(&rev_api, &revisions, &live, spec.revision_history_limit.unwrap_or(10))
            .await?;
        Ok(requeue)
    }

    async fn create_pod(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        node: &str,
    ) -> Result<(), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api.create(&PostParams::default(), &new_pod(ds, hash, node)).await {
            Ok(pod) => {
                self.expect(key, Some(pod.name_any()), None);
                self.ctx.recorder.normal(
                    ds,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name_any()),
                );
                Ok(())
            }
            Err(e) => {
                self.ctx.recorder.warning(ds, "FailedCreate", format!("Error creating: {e}"));
                Err(e.into())
            }
        }
    }

    async fn delete_pod(
        &self,
        key: &str,
        ds: &DaemonSet,
        name: &str,
        uid: Option<String>,
    ) -> Result<(), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                self.expect(key, None, Some(name.to_string()));
                self.ctx.recorder.normal(ds, "SuccessfulDelete", format!("Deleted pod: {name}"));
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(ds, "FailedDelete", format!("Error deleting: {e}"));
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests;
