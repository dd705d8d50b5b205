//! DefaultPreemption: the post-filter that, when a pod fits on no node, looks for a node
//! where evicting lower-priority pods would make room, evicts them and nominates the node.
//!
//! Kubernetes' `defaultpreemption` plugin with its `preemption.Evaluator`: eligibility
//! (`preemptionPolicy`, victims of an earlier preemption still terminating), a dry run on
//! nodes the filters called `Unschedulable` (remove every lower-priority pod, check the
//! filters, then reprieve pods from the most important down, PDB-protected ones first),
//! `pickOneNodeForPreemption`, and the API calls: a `DisruptionTarget` condition and a
//! graceful delete per victim, a `Preempted` event, lower-priority nominations on the node
//! cleared and the preemptor's `status.nominatedNodeName` set.
//!
//! The API calls sit behind [`PreemptionApi`] so the algorithm is tested without a server;
//! [`KubePreemptionApi`] is the implementation the scheduler uses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use skiff_client_tools::Recorder;

use crate::framework::{
    Code, CycleState, Framework, NodeStatuses, Plugin, PostFilterPlugin, PostFilterResult, Status,
};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo, selector_matches};

pub const NAME: &str = "DefaultPreemption";

/// The pod condition a preempted pod gets before it is deleted (`v1.DisruptionTarget`).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// The condition's reason when the scheduler preempts (`v1.PodReasonPreemptionByScheduler`).
pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// Kubernetes' `DefaultPreemptionArgs`: at least `percentage`% of the potential nodes, and
/// at least `absolute` nodes, are dry-run before the search may stop (when one candidate
/// violates no PDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultPreemptionArgs {
    pub min_candidate_nodes_percentage: u32,
    pub min_candidate_nodes_absolute: u32,
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        DefaultPreemptionArgs {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreemptionError {
    /// The pod is gone; for a victim that is as good as preempted.
    #[error("pod {0} not found")]
    NotFound(String),
    /// Any other API failure; the preemptor is retried with back-off.
    #[error("{action} pod {pod}: {source}")]
    Api {
        action: &'static str,
        pod: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl PreemptionError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, PreemptionError::NotFound(_))
    }
}

/// What preemption needs from the cluster. Every call is idempotent and may run
/// concurrently with the others (victims are preempted in parallel).
pub trait PreemptionApi: Send + Sync {
    /// Add (or update, by `type`) a condition in the pod's status: a strategic-merge patch
    /// of `pods/status`. `NotFound` when the pod no longer exists.
    fn patch_condition<'a>(
        &'a self,
        pod: &'a Pod,
        condition: &'a PodCondition,
    ) -> BoxFuture<'a, Result<(), PreemptionError>>;

    /// Delete the pod gracefully (its own grace period). `NotFound` when already gone.
    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), PreemptionError>>;

    /// Set (`Some`) or clear (`None`) the pod's `status.nominatedNodeName`.
    fn set_nominated_node<'a>(
        &'a self,
        pod: &'a Pod,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), PreemptionError>>;

    /// Record a `Normal` `Preempted` event on the victim. Best effort: never fails.
    fn record_preempted(&self, victim: &Pod, message: &str);

    /// Pending pods the scheduler has nominated to `node`. They are not in the snapshot
    /// (not bound), so only the scheduler's nominator knows them.
    fn nominated_pods(&self, node: &str) -> Vec<Arc<PodInfo>>;
}

/// The scheduler's nominator, as [`KubePreemptionApi`] asks it: pods nominated to a node.
pub type NominatedPodsFn = Arc<dyn Fn(&str) -> Vec<Arc<PodInfo>> + Send + Sync>;

/// [`PreemptionApi`] over the API server.
pub struct KubePreemptionApi {
    client: kube::Client,
    recorder: Recorder,
    nominated: NominatedPodsFn,
}

impl KubePreemptionApi {
    /// `recorder` should be created with component `default-scheduler`; `nominated` returns
    /// the pending pods the scheduling queue has nominated to a node.
    pub fn new(client: kube::Client, recorder: Recorder, nominated: NominatedPodsFn) -> Self {
        KubePreemptionApi { client, recorder, nominated }
    }

    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"))
    }
}

fn api_error(action: &'static str, pod: &Pod, e: kube::Error) -> PreemptionError {
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    match e {
        kube::Error::Api(s) if s.code == 404 => PreemptionError::NotFound(key),
        e => PreemptionError::Api { action, pod: key, source: Box::new(e) },
    }
}

impl KubePreemptionApi {
    async fn patch_status(
        &self,
        action: &'static str,
        pod: &Pod,
        body: serde_json::Value,
    ) -> Result<(), PreemptionError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.pods(pod)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&body))
            .await
            .map(|_| ())
            .map_err(|e| api_error(action, pod, e))
    }
}

impl PreemptionApi for KubePreemptionApi {
    fn patch_condition<'a>(
        &'a self,
        pod: &'a Pod,
        condition: &'a PodCondition,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            let body = serde_json::json!({ "status": { "conditions": [condition] } });
            self.patch_status("add DisruptionTarget condition to", pod, body).await
        })
    }

    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            self.pods(pod)
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(|e| api_error("delete", pod, e))
        })
    }

    fn set_nominated_node<'a>(
        &'a self,
        pod: &'a Pod,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            // A null in a strategic-merge patch removes the field.
            let body = serde_json::json!({ "status": { "nominatedNodeName": node } });
            self.patch_status("set nominatedNodeName of", pod, body).await
        })
    }

    fn record_preempted(&self, victim: &Pod, message: &str) {
        self.recorder.normal(victim, "Preempted", message);
    }

    fn nominated_pods(&self, node: &str) -> Vec<Arc<PodInfo>> {
        (self.nominated)(node)
    }
}

/// A node where the preemptor fits once `victims` are gone.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    pub num_pdb_violations: usize,
}

/// The PostFilter plugin. Holds the API it preempts through.
pub struct DefaultPreemption {
    api: Arc<dyn PreemptionApi>,
    args: DefaultPreemptionArgs,
    /// Where the dry run starts among the potential nodes; random unless a test fixes it.
    fixed_offset: Option<usize>,
    /// Evict in the background instead of within the scheduling cycle.
    asynchronous: bool,
}

impl DefaultPreemption {
    /// With Kubernetes' default arguments (10%, 100 nodes).
    pub fn new(api: Arc<dyn PreemptionApi>) -> Self {
        Self::with_args(api, DefaultPreemptionArgs::default())
    }

    pub fn with_args(api: Arc<dyn PreemptionApi>, args: DefaultPreemptionArgs) -> Self {
        DefaultPreemption { api, args, fixed_offset: None, asynchronous: false }
    }

    /// Evict victims in the background (on the current tokio runtime), as kube-scheduler's
    /// async preemption does, so one preemption does not hold up the next pods.
    pub fn asynchronous(mut self) -> Self {
        self.asynchronous = true;
        self
    }

    /// How many candidates the dry run looks for before it may stop; never more than
    /// `num_nodes`.
    pub fn num_candidates(&self, num_nodes: usize) -> usize {
        let pct = num_nodes * self.args.min_candidate_nodes_percentage as usize / 100;
        pct.max(self.args.min_candidate_nodes_absolute as usize).min(num_nodes)
    }

    fn offset(&self, num_nodes: usize) -> usize {
        match self.fixed_offset {
            Some(o) => o % num_nodes.max(1),
            None => random_below(num_nodes),
        }
    }

    /// Kubernetes' `PodEligibleToPreemptOthers`: the message when the pod may not preempt.
    fn eligible(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        filtered: &NodeStatuses,
    ) -> Result<(), &'static str> {
        if pod.preemption_policy_never() {
            return Err("not eligible due to preemptionPolicy=Never.");
        }
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .unwrap_or_default();
        if nominated.is_empty() {
            return Ok(());
        }
        // A nominated node the filters now rule out for good (or did not evaluate, which
        // Kubernetes also counts as unresolvable) is worth preempting elsewhere.
        if filtered.get(nominated).is_none_or(|s| s.code == Code::UnschedulableAndUnresolvable) {
            return Ok(());
        }
        if let Some(node) = snapshot.get(nominated)
            && node
                .pods
                .iter()
                .any(|p| p.priority < pod.priority && terminating_by_preemption(&p.pod))
        {
            // The victims of an earlier preemption are still going: wait for them.
            return Err("not eligible due to a terminating pod on the nominated node.");
        }
        Ok(())
    }

    /// Dry-run preemption on the nodes where removing pods may help. Returns the candidates
    /// (PDB-respecting ones first) and why each node that was tried is not one.
    fn find_candidates(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        framework: &Framework,
        filtered: &NodeStatuses,
    ) -> Result<(Vec<Candidate>, HashMap<String, Status>), Status> {
        if snapshot.is_empty() {
            return Err(Status::error("no nodes available"));
        }
        // In the snapshot's order, so the dry run is reproducible given its offset.
        let potential: Vec<&Arc<NodeInfo>> = filtered
            .positions_where(snapshot, |s| s.code == Code::Unschedulable)
            .into_iter()
            .map(|pos| &snapshot.nodes[pos])
            .collect();
        let mut statuses = HashMap::new();
        if potential.is_empty() {
            tracing::trace!(pod = %pod.key(), "preemption will not help schedule the pod on any node");
            return Ok((Vec::new(), statuses));
        }
        let pdbs = pdb_infos(snapshot);
        let offset = self.offset(potential.len());
        let wanted = self.num_candidates(potential.len());
        let now = now_nanos();

        let (mut non_violating, mut violating) = (Vec::new(), Vec::new());
        let mut errors = Vec::new();
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            let mut node_copy = NodeInfo::clone(node);
            let mut state_copy = state.clone();
            match select_victims_on_node(
                &mut state_copy,
                pod,
                &mut node_copy,
                snapshot,
                framework,
                &pdbs,
                now,
            ) {
                Ok((victims, _)) if victims.is_empty() => {
                    let msg = format!("expected at least one victim pod on node {:?}", node.name);
                    errors.push(msg.clone());
                    statuses.insert(node.name.clone(), Status::error(msg));
                }
                Ok((victims, num_pdb_violations)) => {
                    let c = Candidate { node: node.name.clone(), victims, num_pdb_violations };
                    let list =
                        if num_pdb_violations == 0 { &mut non_violating } else { &mut violating };
                    if list.len() < wanted {
                        list.push(c);
                    }
                    if !non_violating.is_empty() && non_violating.len() + violating.len() >= wanted
                    {
                        break;
                    }
                }
                Err(status) => {
                    if status.code == Code::Error {
                        errors.push(status.message());
                    }
                    statuses.insert(node.name.clone(), status);
                }
            }
        }
        non_violating.extend(violating);
        if non_violating.is_empty() && !errors.is_empty() {
            return Err(Status::error(errors.join(", ")));
        }
        Ok((non_violating, statuses))
    }

    /// Evict the candidate's victims, clear lower-priority nominations to its node and
    /// nominate the preemptor there (Kubernetes' `prepareCandidate`, synchronous).
    async fn prepare_candidate(
        api: &dyn PreemptionApi,
        c: &Candidate,
        preemptor: &PodInfo,
    ) -> Result<(), PreemptionError> {
        let condition_message = format!(
            "{}: preempting to accommodate a higher priority pod",
            preemptor.scheduler_name
        );
        let event_message = format!("Preempted by pod {} on node {}", preemptor.uid, c.node);
        // A victim already being deleted needs no second call.
        let evictions = c
            .victims
            .iter()
            .filter(|v| !v.terminating)
            .map(|v| Self::preempt_pod(api, v, &condition_message, &event_message, &c.node));
        futures::future::try_join_all(evictions).await?;

        // Lower-priority pods nominated here may no longer fit; clearing their nomination
        // sends them back to the queue to find another node sooner.
        for p in api.nominated_pods(&c.node) {
            if p.priority >= preemptor.priority || nominated_node(&p.pod).is_empty() {
                continue;
            }
            if let Err(e) = api.set_nominated_node(&p.pod, None).await {
                tracing::warn!(pod = %p.key(), error = %e, "cannot clear nominatedNodeName");
            }
        }

        if nominated_node(&preemptor.pod) != c.node {
            // Not fatal: the pod is retried either way; the nomination only reserves room.
            if let Err(e) = api.set_nominated_node(&preemptor.pod, Some(&c.node)).await {
                tracing::warn!(pod = %preemptor.key(), error = %e, "cannot set nominatedNodeName");
            }
        }
        Ok(())
    }

    /// Mark the victim as a disruption target, delete it, and record the event. A victim
    /// already gone counts as preempted (and gets no event, as in Kubernetes).
    async fn preempt_pod(
        api: &dyn PreemptionApi,
        victim: &PodInfo,
        condition_message: &str,
        event_message: &str,
        node: &str,
    ) -> Result<(), PreemptionError> {
        if let Some(condition) = disruption_condition(&victim.pod, condition_message) {
            match api.patch_condition(&victim.pod, &condition).await {
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        match api.delete_pod(&victim.pod).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        tracing::debug!(victim = %victim.key(), node, "preempted");
        api.record_preempted(&victim.pod, event_message);
        Ok(())
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }

    /// None: this plugin rejects no pod itself (its answer follows the filters that did),
    /// as in Kubernetes without asynchronous preemption.
    fn events(&self) -> Vec<crate::framework::ClusterEvent> {
        Vec::new()
    }
}

impl PostFilterPlugin for DefaultPreemption {
    /// `(Some(node), Success)`: victims are being evicted and the pod nominated to `node`.
    /// `(Some(no node), Unschedulable)`: preemption cannot help; clear any nomination.
    /// `(None, Unschedulable | Error)`: not eligible now or a transient failure; keep the
    /// nomination as it is.
    fn post_filter<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a Arc<PodInfo>,
        snapshot: &'a Arc<Snapshot>,
        framework: &'a Framework,
        filtered: &'a NodeStatuses,
    ) -> BoxFuture<'a, (Option<PostFilterResult>, Status)> {
        Box::pin(async move {
            let prefixed = |code: Code, msg: &str| {
                Status::new(code, format!("preemption: {msg}")).with_plugin(NAME)
            };
            if let Err(msg) = self.eligible(pod, snapshot, filtered) {
                tracing::trace!(pod = %pod.key(), reason = msg, "pod is not eligible for preemption");
                return (None, prefixed(Code::Unschedulable, msg));
            }
            let (candidates, statuses) =
                match self.find_candidates(state, pod, snapshot, framework, filtered) {
                    Ok(found) => found,
                    Err(status) => return (None, prefixed(status.code, &status.message())),
                };
            let Some(best) = pick_one_node(&candidates, now_nanos()).map(|i| &candidates[i]) else {
                let msg = fit_error_message(snapshot.len(), &statuses);
                return (Some(PostFilterResult::default()), prefixed(Code::Unschedulable, &msg));
            };
            if self.asynchronous {
                // Kubernetes' async preemption: the evictions go on in the background while
                // the scheduler moves on; the pod waits, nominated, for its victims to leave.
                let (api, best, preemptor) = (self.api.clone(), best.clone(), pod.clone());
                tokio::spawn(async move {
                    if let Err(e) = Self::prepare_candidate(api.as_ref(), &best, &preemptor).await {
                        tracing::warn!(pod = %preemptor.key(), error = %e, "preemption failed");
                    }
                });
            } else if let Err(e) = Self::prepare_candidate(self.api.as_ref(), best, pod).await {
                return (None, prefixed(Code::Error, &e.to_string()));
            }
            (
                Some(PostFilterResult { nominated_node: Some(best.node.clone()) }),
                Status::success().with_plugin(NAME),
            )
        })
    }
}

/// Kubernetes' `SelectVictimsOnNode`: the fewest lower-priority pods whose removal lets the
/// preemptor pass the filters on `node`, most important first, and how many of them a PDB
/// protects. `state` and `node` are the caller's copies and end up simulating the eviction.
fn select_victims_on_node(
    state: &mut CycleState,
    pod: &PodInfo,
    node: &mut NodeInfo,
    snapshot: &Snapshot,
    framework: &Framework,
    pdbs: &[PdbInfo<'_>],
    now: i128,
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let mut potential: Vec<Arc<PodInfo>> =
        node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    for victim in &potential {
        remove(state, pod, victim, node, snapshot, framework)?;
    }
    // Affinity of the preemptor to a victim is not considered (as in Kubernetes): a pod
    // that only fits next to lower-priority pods is a configuration to avoid.
    let status = framework.run_filter(state, pod, node);
    if !status.is_success() {
        return Err(status);
    }

    potential.sort_by_key(|p| importance_key(p, now));
    let (violating, non_violating) = filter_pods_with_pdb_violation(&potential, pdbs);
    let mut victims = Vec::new();
    let mut num_violating = 0;
    let mut reprieve = |p: &Arc<PodInfo>, state: &mut CycleState, node: &mut NodeInfo| {
        node.add_pod(p.clone());
        let s = framework.run_add_pod(state, pod, p, node, snapshot);
        if !s.is_success() {
            return Err(s);
        }
        let fits = framework.run_filter(state, pod, node).is_success();
        if !fits {
            remove(state, pod, p, node, snapshot, framework)?;
            victims.push(p.clone());
        }
        Ok(fits)
    };
    for p in &violating {
        if !reprieve(p, state, node)? {
            num_violating += 1;
        }
    }
    for p in &non_violating {
        reprieve(p, state, node)?;
    }
    if !violating.is_empty() && !non_violating.is_empty() {
        victims.sort_by_key(|p| importance_key(p, now));
    }
    Ok((victims, num_violating))
}

fn remove(
    state: &mut CycleState,
    pod: &PodInfo,
    victim: &PodInfo,
    node: &mut NodeInfo,
    snapshot: &Snapshot,
    framework: &Framework,
) -> Result<(), Status> {
    node.remove_pod(&victim.uid);
    let s = framework.run_remove_pod(state, pod, victim, node, snapshot);
    if s.is_success() { Ok(()) } else { Err(s) }
}

/// Sorts pods most important first (Kubernetes' `MoreImportantPod`): higher priority,
/// then the one running longer.
fn importance_key(p: &PodInfo, now: i128) -> (Reverse<i32>, i128) {
    (Reverse(p.priority), start_nanos(&p.pod, now))
}

/// The pod's start time; one that has not started counts as starting now.
fn start_nanos(pod: &Pod, now: i128) -> i128 {
    pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or(now, |t| t.0.as_nanosecond())
}

fn now_nanos() -> i128 {
    k8s_openapi::jiff::Timestamp::now().as_nanosecond()
}

fn nominated_node(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).unwrap_or_default()
}

/// Terminating because the scheduler preempted it (not for any other reason).
fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_TARGET))
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER)
            })
}

/// The `DisruptionTarget` condition to add to a victim, or `None` when it already has this
/// very condition (Kubernetes' `UpdatePodCondition` reporting no change).
fn disruption_condition(victim: &Pod, message: &str) -> Option<PodCondition> {
    let old = victim
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_TARGET));
    if old.is_some_and(|c| {
        c.status == "True"
            && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER)
            && c.message.as_deref() == Some(message)
    }) {
        return None;
    }
    let last_transition_time = match old {
        Some(c) if c.status == "True" => c.last_transition_time.clone(),
        _ => Some(Time(k8s_openapi::jiff::Timestamp::now())),
    };
    Some(PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(PREEMPTION_BY_SCHEDULER.into()),
        message: Some(message.into()),
        observed_generation: victim.metadata.generation,
        last_transition_time,
        last_probe_time: None,
    })
}

/// A PodDisruptionBudget as preemption reads it.
struct PdbInfo<'a> {
    namespace: &'a str,
    selector: &'a LabelSelector,
    /// Pods the disruption controller already counts as disrupted.
    disrupted: Option<&'a BTreeMap<String, Time>>,
    allowed: i32,
}

fn pdb_infos(snapshot: &Snapshot) -> Vec<PdbInfo<'_>> {
    snapshot
        .listers
        .pdbs
        .values()
        .filter_map(|pdb| {
            let selector = pdb.spec.as_ref()?.selector.as_ref()?;
            // A nil or empty selector matches no pod (policy/v1).
            let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            if empty {
                return None;
            }
            let status = pdb.status.as_ref();
            Some(PdbInfo {
                namespace: pdb.metadata.namespace.as_deref().unwrap_or_default(),
                selector,
                disrupted: status.and_then(|s| s.disrupted_pods.as_ref()),
                allowed: status.map_or(0, |s| s.disruptions_allowed),
            })
        })
        .collect()
}

/// Splits `pods` (order kept) into those whose eviction would exceed a PDB's allowed
/// disruptions, counting the earlier pods against the budget, and the rest.
fn filter_pods_with_pdb_violation(
    pods: &[Arc<PodInfo>],
    pdbs: &[PdbInfo<'_>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.allowed).collect();
    let (mut violating, mut non_violating) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violated = false;
        if !p.labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.namespace != p.namespace || !selector_matches(pdb.selector, &p.labels) {
                    continue;
                }
                // Already counted by the api server's eviction: not a new disruption.
                if pdb.disrupted.is_some_and(|d| d.contains_key(&p.name)) {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated { violating.push(p.clone()) } else { non_violating.push(p.clone()) }
    }
    (violating, non_violating)
}

/// Kubernetes' `pickOneNodeForPreemption` (victims most important first): fewest PDB
/// violations, then the lowest highest-priority victim, the smallest sum of priorities,
/// the fewest victims, the latest start among the highest-priority victims, then the first.
pub fn pick_one_node(candidates: &[Candidate], now: i128) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    // Higher is better for every score.
    let scores: [&dyn Fn(&Candidate) -> i128; 5] = [
        &|c| -(c.num_pdb_violations as i128),
        &|c| -(c.victims.first().map_or(0, |v| v.priority) as i128),
        // Shifted so negative priorities do not make more victims look cheaper.
        &|c| -c.victims.iter().map(|v| v.priority as i128 + i32::MAX as i128 + 1).sum::<i128>(),
        &|c| -(c.victims.len() as i128),
        &|c| earliest_start_of_highest_priority(c, now),
    ];
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    for score in scores {
        let best = remaining.iter().map(|&i| score(&candidates[i])).max().unwrap_or(i128::MIN);
        remaining.retain(|&i| score(&candidates[i]) == best);
        if remaining.len() == 1 {
            break;
        }
    }
    remaining.first().copied()
}

fn earliest_start_of_highest_priority(c: &Candidate, now: i128) -> i128 {
    let Some(top) = c.victims.iter().map(|v| v.priority).max() else { return i128::MIN };
    c.victims
        .iter()
        .filter(|v| v.priority == top)
        .map(|v| start_nanos(&v.pod, now))
        .min()
        .unwrap_or(i128::MIN)
}

/// Kubernetes' `FitError` text for the dry run: "0/N nodes are available: 1 No preemption
/// victims found for incoming pod, 2 Preemption is not helpful for scheduling." Nodes the
/// dry run did not try count as "not helpful".
pub fn fit_error_message(num_all_nodes: usize, statuses: &HashMap<String, Status>) -> String {
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for status in statuses.values() {
        for r in &status.reasons {
            *histogram.entry(r.as_ref()).or_default() += 1;
        }
    }
    let absent = num_all_nodes.saturating_sub(statuses.len());
    if absent > 0 {
        *histogram.entry(NOT_HELPFUL).or_default() += absent;
    }
    let mut reasons: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    format!("0/{num_all_nodes} nodes are available: {}.", reasons.join(", "))
}

/// A number in `0..n` that differs from call to call (0 when `n` is 0): the dry run's
/// start, so concurrent schedulers do not all preempt on the same nodes first.
fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    if n == 0 {
        return 0;
    }
    // Each RandomState is freshly keyed; no need for a random-number crate here.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_nanos() as u128);
    (h.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests;
