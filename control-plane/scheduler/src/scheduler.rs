//! The scheduling loop: one pod at a time, a scheduling cycle on a snapshot (pre-filter,
//! filter, post-filter, pre-score, score, select, assume, reserve, permit) on this thread,
//! then a binding cycle (pre-bind, bind) on the runtime, so the next pod is scheduled
//! while the last one is still being bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Diagnosis, Framework, NodeScore, Status};
use crate::metrics::Metrics;
use crate::plugins::default_binder::GONE_OR_BOUND;
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo};
use skiff_client_tools::Recorder;

/// What the loop and the binding tasks share.
pub struct Shared {
    pub cache: Mutex<Cache>,
    pub queue: Arc<SchedulingQueue>,
    pub profiles: HashMap<String, Arc<Framework>>,
    pub metrics: Metrics,
    pub client: Option<kube::Client>,
    pub events: Option<Recorder>,
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    pub fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a pod was not placed.
#[derive(Debug)]
pub enum ScheduleError {
    /// No node fits; the diagnosis says why for each.
    Fit(Box<Diagnosis>),
    /// Something failed that is not about the pod's fit.
    Error(String),
}

/// Kubernetes' `numFeasibleNodesToFind`: past 100 nodes, stop after finding a share of
/// them feasible (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
pub fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    if all < 100 || percentage >= 100 {
        return all;
    }
    let pct = if percentage == 0 {
        50i64.saturating_sub(i64::try_from(all / 125).unwrap_or(i64::MAX)).max(5)
    } else {
        i64::from(percentage)
    };
    let n = usize::try_from(i64::try_from(all).unwrap_or(i64::MAX).saturating_mul(pct) / 100)
        .unwrap_or(all);
    n.max(100).min(all)
}

/// The pods nominated to each node (preemptors waiting for their victims to leave), by
/// the node's position in the cycle's snapshot, so the filter loop asks per node without
/// hashing its name. Built once per cycle from the queue's nominator.
struct Nominated {
    /// Sorted by position; only nodes with nominated pods.
    by_pos: Vec<(usize, Vec<Arc<PodInfo>>)>,
}

impl Nominated {
    fn new(queue: &SchedulingQueue, snapshot: &Snapshot) -> Self {
        let mut by_pos: Vec<(usize, Vec<Arc<PodInfo>>)> = Vec::new();
        if queue.has_nominated() {
            queue.for_each_nominated(|node, pods| {
                if let Some(pos) = snapshot.position(node) {
                    by_pos.push((pos, pods.to_vec()));
                }
            });
            by_pos.sort_unstable_by_key(|(pos, _)| *pos);
        }
        Nominated { by_pos }
    }

    fn at(&self, pos: usize) -> &[Arc<PodInfo>] {
        if self.by_pos.is_empty() {
            return &[];
        }
        match self.by_pos.binary_search_by_key(&pos, |(p, _)| *p) {
            Ok(i) => &self.by_pos[i].1,
            Err(_) => &[],
        }
    }
}

pub struct Scheduler {
    pub shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    next_start: usize,
    rng: u64,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Self {
        Scheduler {
            shared,
            snapshot: Arc::new(Snapshot::default()),
            next_start: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: tie-breaking only.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Schedule pods until the queue closes. Runs on a thread of its own.
    pub fn run(mut self) {
        while let Some(pod) = self.shared.queue.pop() {
            self.schedule_one(pod);
        }
    }

    /// Bring the snapshot up to date with the cache.
    pub fn refresh_snapshot(&mut self) {
        let snapshot = Arc::make_mut(&mut self.snapshot);
        self.shared.cache().update_snapshot(snapshot);
    }

    pub fn schedule_one(&mut self, qp: QueuedPod) {
        let start = Instant::now();
        let info = qp.info.clone();
        let Some(fwk) = self.shared.profiles.get(&info.scheduler_name).cloned() else {
            self.shared.queue.done(&info.uid);
            return;
        };
        if info.terminating || self.shared.cache().contains_pod(&info.uid) {
            self.shared.queue.done(&info.uid);
            return;
        }
        self.refresh_snapshot();
        let mut state = CycleState::default();
        match self.schedule_pod(&fwk, &mut state, &info) {
            Ok(host) => self.assume_and_bind(fwk, state, qp, host, start),
            Err(ScheduleError::Fit(mut diagnosis)) => {
                let mut nominated = None;
                let mut clear_nomination = false;
                if !fwk.post_filter.is_empty() {
                    self.shared.metrics.preemption_attempts.inc();
                    let snapshot = self.snapshot.clone();
                    for p in &fwk.post_filter {
                        let (result, status) = self.shared.runtime.block_on(p.post_filter(
                            &state,
                            &info,
                            &snapshot,
                            &fwk,
                            &diagnosis.node_statuses,
                        ));
                        if status.is_success() {
                            nominated = result.and_then(|r| r.nominated_node);
                            break;
                        }
                        // Preemption cannot help: any earlier nomination is void.
                        clear_nomination |= result.is_some_and(|r| r.nominated_node.is_none());
                        if !status.reasons.is_empty() {
                            diagnosis.post_filter_msg = status.message();
                        }
                    }
                }
                if let Some(node) = &nominated {
                    self.shared.queue.add_nominated(info.clone(), node);
                } else if clear_nomination {
                    self.shared.queue.remove_nominated(&info.uid);
                }
                let plugins = diagnosis.unschedulable_plugins.clone();
                self.fail(
                    &fwk,
                    &qp,
                    "Unschedulable",
                    diagnosis.message(),
                    plugins,
                    false,
                    nominated,
                    start,
                );
            }
            Err(ScheduleError::Error(msg)) => {
                self.fail(&fwk, &qp, "SchedulerError", msg, HashSet::new(), true, None, start);
            }
        }
    }

    /// The scheduling algorithm proper: the best node for the pod, or why there is none.
    pub fn schedule_pod(
        &mut self,
        fwk: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<String, ScheduleError> {
        let snapshot = self.snapshot.clone();
        let all = snapshot.len();
        let mut diagnosis = Diagnosis { num_all_nodes: all, ..Default::default() };
        if all == 0 {
            diagnosis.pre_filter_msg = "no nodes available to schedule pods".into();
            return Err(ScheduleError::Fit(Box::new(diagnosis)));
        }
        let (pre, status) = fwk.run_pre_filter(state, pod, &snapshot);
        match status.code {
            Code::Success => {}
            Code::Error => return Err(ScheduleError::Error(status.message())),
            _ => {
                diagnosis.pre_filter_msg = status.message();
                diagnosis.unschedulable_plugins.insert(status.plugin);
                for (i, n) in snapshot.nodes.iter().enumerate() {
                    diagnosis.node_statuses.push(i, n, status.clone());
                }
                return Err(ScheduleError::Fit(Box::new(diagnosis)));
            }
        }
        let nominated = Nominated::new(&self.shared.queue, &snapshot);

        // A pod that preempted for a node tries that node first.
        let nominated_node = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty());
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
        if let Some(pos) = nominated_node.as_deref().and_then(|n| snapshot.position(n)) {
            let node = &snapshot.nodes[pos];
            let s = self.filter_with_nominated(fwk, state, pod, pos, node, &nominated, &snapshot);
            if s.is_success() {
                feasible.push(node.clone());
            }
        }

        if feasible.is_empty() {
            // Positions in the snapshot, in its order.
            let candidates: Vec<usize> = match pre.as_ref().and_then(|r| r.node_names.as_ref()) {
                Some(names) => {
                    let mut c: Vec<usize> =
                        names.iter().filter_map(|n| snapshot.position(n)).collect();
                    c.sort_unstable();
                    c
                }
                None => (0..snapshot.nodes.len()).collect(),
            };
            let n = candidates.len();
            let wanted = num_feasible_nodes_to_find(fwk.percentage_of_nodes_to_score, n);
            let start = if n == 0 { 0 } else { self.next_start % n };
            let mut processed = 0;
            for i in 0..n {
                let pos = candidates[(start + i) % n];
                let node = &snapshot.nodes[pos];
                processed += 1;
                let s =
                    self.filter_with_nominated(fwk, state, pod, pos, node, &nominated, &snapshot);
                match s.code {
                    Code::Success => {
                        feasible.push(node.clone());
                        if feasible.len() >= wanted {
                            break;
                        }
                    }
                    Code::Error => return Err(ScheduleError::Error(s.message())),
                    _ => {
                        diagnosis.unschedulable_plugins.insert(s.plugin);
                        diagnosis.node_statuses.push(pos, node, s);
                    }
                }
            }
            if n > 0 {
                self.next_start = (start + processed) % n;
            }
            if let Some(names) = pre.as_ref().and_then(|r| r.node_names.as_ref()) {
                // Nodes the pre-filter ruled out count as rejected by it.
                for (pos, node) in snapshot.nodes.iter().enumerate() {
                    if !names.contains(&node.name) {
                        diagnosis.node_statuses.push(
                            pos,
                            node,
                            Status::unresolvable("node is filtered out by the prefilter result"),
                        );
                    }
                }
            }
        }
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(Box::new(diagnosis)));
        }
        if feasible.len() == 1 {
            return Ok(feasible[0].name.clone());
        }
        let status = fwk.run_pre_score(state, pod, &feasible, &snapshot);
        if !status.is_success() {
            return Err(ScheduleError::Error(status.message()));
        }
        let scores =
            fwk.run_score(state, pod, &feasible).map_err(|s| ScheduleError::Error(s.message()))?;
        Ok(self.select_host(&scores))
    }

    /// The highest total; ties broken uniformly at random (reservoir sampling).
    fn select_host(&mut self, scores: &[NodeScore]) -> String {
        let mut best = 0usize;
        let mut ties = 1u64;
        for (i, s) in scores.iter().enumerate().skip(1) {
            if s.score > scores[best].score {
                best = i;
                ties = 1;
            } else if s.score == scores[best].score {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        scores[best].name.clone()
    }

    /// Run the filters with the pods nominated to this node (of at least the pod's
    /// priority) counted as if they ran there, then without them, as Kubernetes does: a
    /// node passes only if it passes both.
    #[allow(clippy::too_many_arguments)]
    fn filter_with_nominated(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        pos: usize,
        node: &Arc<NodeInfo>,
        nominated: &Nominated,
        snapshot: &Snapshot,
    ) -> Status {
        let others: Vec<&Arc<PodInfo>> = nominated
            .at(pos)
            .iter()
            .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
            .collect();
        if !others.is_empty() {
            let mut with = (**node).clone();
            let mut with_state = state.clone();
            for p in others {
                with.add_pod(p.clone());
                let s = fwk.run_add_pod(&mut with_state, pod, p, &with, snapshot);
                if !s.is_success() {
                    return s;
                }
            }
            let s = fwk.run_filter(&with_state, pod, &with);
            if !s.is_success() {
                return s;
            }
        }
        fwk.run_filter(state, pod, node)
    }

    fn assume_and_bind(
        &mut self,
        fwk: Arc<Framework>,
        mut state: CycleState,
        qp: QueuedPod,
        host: String,
        start: Instant,
    ) {
        let info = qp.info.clone();
        let mut assumed = (*info).clone();
        assumed.node_name = host.clone();
        let assumed = Arc::new(assumed);
        self.shared.cache().assume_pod(assumed.clone(), &host);

        let status = fwk.run_reserve(&mut state, &info, &host);
        if !status.is_success() {
            fwk.run_unreserve(&mut state, &info, &host);
            self.shared.cache().forget_pod(&info.uid);
            let error = status.code == Code::Error;
            let plugins = HashSet::from([status.plugin]);
            self.fail(
                &fwk,
                &qp,
                if error { "SchedulerError" } else { "Unschedulable" },
                status.message(),
                plugins,
                error,
                None,
                start,
            );
            return;
        }
        let (permit, wait) = fwk.run_permit(&mut state, &info, &host);
        if !permit.is_success() && permit.code != Code::Wait {
            fwk.run_unreserve(&mut state, &info, &host);
            self.shared.cache().forget_pod(&info.uid);
            let plugins = HashSet::from([permit.plugin]);
            self.fail(&fwk, &qp, "Unschedulable", permit.message(), plugins, false, None, start);
            return;
        }
        self.shared.queue.remove_nominated(&info.uid);
        let shared = self.shared.clone();
        self.shared.runtime.spawn(async move {
            let mut status = Status::success();
            if permit.code == Code::Wait {
                // No permit plugin here can release a pod early: a wait runs out.
                tokio::time::sleep(wait).await;
                status = Status::unschedulable("rejected due to timeout after waiting at permit");
            }
            if status.is_success() {
                status = fwk.run_pre_bind(&state, &assumed, &host).await;
            }
            if status.is_success() {
                status = fwk.run_bind(&state, &assumed, &host).await;
            }
            if status.is_success() {
                shared.metrics.attempt(
                    "scheduled",
                    &fwk.profile_name,
                    start.elapsed().as_secs_f64(),
                );
                shared.queue.done(&info.uid);
                if let Some(events) = &shared.events {
                    events.normal(
                        &*info.pod,
                        "Scheduled",
                        format!("Successfully assigned {} to {host}", info.key()),
                    );
                }
                return;
            }
            fwk.run_unreserve(&mut state, &info, &host);
            shared.cache().forget_pod(&info.uid);
            if status.reasons.iter().any(|r| r == GONE_OR_BOUND) {
                shared.queue.delete(&info.uid);
                return;
            }
            let error = status.code == Code::Error;
            let msg = if error {
                format!("Binding rejected: {}", status.message())
            } else {
                status.message()
            };
            record_failure(
                &shared,
                &fwk,
                &qp,
                if error { "SchedulerError" } else { "Unschedulable" },
                msg,
                HashSet::from([status.plugin]),
                error,
                None,
                start,
            );
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        fwk: &Framework,
        qp: &QueuedPod,
        reason: &str,
        message: String,
        plugins: HashSet<&'static str>,
        error: bool,
        nominated: Option<String>,
        start: Instant,
    ) {
        record_failure(&self.shared, fwk, qp, reason, message, plugins, error, nominated, start);
    }

    /// The snapshot the last cycle used (tests and the benchmark).
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}

/// Requeue a pod that was not placed, and tell the user why: a `FailedScheduling` event and
/// the `PodScheduled=False` condition (written only when it changes).
#[allow(clippy::too_many_arguments)]
fn record_failure(
    shared: &Arc<Shared>,
    fwk: &Framework,
    qp: &QueuedPod,
    reason: &str,
    message: String,
    plugins: HashSet<&'static str>,
    error: bool,
    nominated: Option<String>,
    start: Instant,
) {
    let result = if error { "error" } else { "unschedulable" };
    shared.metrics.attempt(result, &fwk.profile_name, start.elapsed().as_secs_f64());
    shared.queue.add_unschedulable(qp, plugins, error);
    let info = &qp.info;
    tracing::debug!(pod = %info.key(), %message, "pod not scheduled");
    if let Some(events) = &shared.events {
        events.warning(&*info.pod, "FailedScheduling", message.clone());
    }
    let Some(client) = shared.client.clone() else { return };
    let status = info.pod.status.as_ref();
    let unchanged = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message.as_str())
    }) && nominated.is_none();
    if unchanged {
        return;
    }
    let mut patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}]}});
    if let Some(node) = nominated {
        patch["status"]["nominatedNodeName"] = serde_json::Value::String(node);
    }
    let (ns, name) = (info.namespace.clone(), info.name.clone());
    shared.runtime.spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, &ns);
        if let Err(e) =
            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "could not record PodScheduled=False");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominated_should_find_pods_by_snapshot_position() {
        use crate::types::testing::{node, node_info, pod, pod_info};
        let snap = Snapshot::from_nodes(
            ["a", "b", "c"].iter().map(|n| node_info(node(n, &[]), vec![])).collect(),
        );
        let queue = SchedulingQueue::without_profiles();
        assert!(Nominated::new(&queue, &snap).at(1).is_empty());
        queue.add_nominated(Arc::new(pod_info(pod("p1", &[]))), "c");
        queue.add_nominated(Arc::new(pod_info(pod("p2", &[]))), "a");
        queue.add_nominated(Arc::new(pod_info(pod("p3", &[]))), "c");
        queue.add_nominated(Arc::new(pod_info(pod("p4", &[]))), "gone");
        let nominated = Nominated::new(&queue, &snap);
        let uids = |pos| nominated.at(pos).iter().map(|p| p.uid.clone()).collect::<Vec<_>>();
        assert_eq!(uids(0), vec!["uid-p2"]);
        assert!(uids(1).is_empty());
        assert_eq!(uids(2), vec!["uid-p1", "uid-p3"]);
    }

    #[test]
    fn num_feasible_nodes_should_follow_kubernetes_adaptive_percentage() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 100_000), 5000);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(100, 1000), 1000);
        assert_eq!(num_feasible_nodes_to_find(1, 1000), 100);
    }
}
