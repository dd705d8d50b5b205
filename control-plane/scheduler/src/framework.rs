//! The scheduling framework: Kubernetes' extension points as one trait each, the `Status`
//! a plugin answers with (which tells an error from "does not fit"), the per-cycle state
//! plugins share, and `Framework`, one profile's plugins in order with the code that runs
//! each extension point.
//!
//! A scheduling cycle is synchronous CPU work over a `Snapshot` (pre-filter, filter,
//! post-filter, pre-score, score, normalize, reserve, permit); the binding cycle that
//! follows (pre-bind, bind) talks to the API and is async.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo};

/// The highest score a plugin gives a node after normalization (Kubernetes' `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// Something went wrong (not a property of the node): the pod is retried with back-off.
    Error,
    /// The pod does not fit here now; preemption may help.
    Unschedulable,
    /// The pod does not fit here and preempting pods would not change that.
    UnschedulableAndUnresolvable,
    /// A permit plugin holds the pod.
    Wait,
    /// The plugin has nothing to do for this pod (its later extension points are skipped).
    Skip,
}

/// A message users see in a [`Status`]: most are constants, so a rejected node costs no
/// allocation.
pub type Reason = std::borrow::Cow<'static, str>;

/// A plugin's answer. `reasons` are the messages users see ("Insufficient cpu").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: smallvec::SmallVec<[Reason; 1]>,
    /// The plugin that answered (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Self {
        Status { code: Code::Success, reasons: smallvec::SmallVec::new(), plugin: "" }
    }
    pub fn new(code: Code, reason: impl Into<Reason>) -> Self {
        Status { code, reasons: smallvec::smallvec![reason.into()], plugin: "" }
    }
    pub fn unschedulable(reason: impl Into<Reason>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }
    pub fn unresolvable(reason: impl Into<Reason>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }
    pub fn error(reason: impl Into<Reason>) -> Self {
        Self::new(Code::Error, reason)
    }
    pub fn skip() -> Self {
        Status { code: Code::Skip, reasons: smallvec::SmallVec::new(), plugin: "" }
    }
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }
    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Data a plugin keeps for the rest of one pod's cycle (computed in pre-filter, read in
/// filter). Cloned when preemption simulates removing pods from a node.
pub trait StateData: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_box(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Plugin names in a small set: a handful of entries, compared by address first (names are
/// `'static` constants), so the per-node lookups of a cycle cost no hashing.
#[derive(Clone, Default, Debug)]
pub struct NameSet(Vec<&'static str>);

fn same_name(a: &'static str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

impl NameSet {
    pub fn insert(&mut self, name: &'static str) {
        if !self.contains(name) {
            self.0.push(name);
        }
    }
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| same_name(n, name))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Per-cycle state, keyed by plugin name. A few entries, searched linearly by address: a
/// filter reads its plugin's state once per node, thousands of times per cycle.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn StateData>)>,
    /// Plugins whose pre-filter said Skip: their filter is not run.
    pub skip_filter: NameSet,
    /// Plugins whose pre-score said Skip: their score is not run.
    pub skip_score: NameSet,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self.data.iter().map(|(k, v)| (*k, (**v).clone_box())).collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
        }
    }
}

impl CycleState {
    pub fn write<T: StateData + Clone>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| same_name(k, key)) {
            Some(slot) => slot.1 = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }
    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        self.data
            .iter()
            .find(|(k, _)| same_name(k, key))
            .and_then(|(_, v)| (**v).as_any().downcast_ref::<T>())
    }
    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data
            .iter_mut()
            .find(|(k, _)| same_name(k, key))
            .and_then(|(_, v)| (**v).as_any_mut().downcast_mut::<T>())
    }
}

/// What a pre-filter may narrow the search to (NodeName, NodeAffinity on `metadata.name`).
/// `None` means every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    pub node_names: Option<HashSet<String>>,
}

/// Kinds of objects whose changes can make an unschedulable pod schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Pod,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    Namespace,
    RuntimeClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Add,
    Update,
    Delete,
}

/// A change in the cluster that may make pods schedulable (Kubernetes' `ClusterEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    pub resource: Resource,
    pub action: Action,
}

impl ClusterEvent {
    pub const fn new(resource: Resource, action: Action) -> Self {
        ClusterEvent { resource, action }
    }
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Events after which a pod this plugin rejected is worth trying again
    /// (`EnqueueExtensions`). Empty: any event.
    fn events(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
}

pub trait QueueSortPlugin: Plugin {
    /// Should `a` be tried before `b`?
    fn less(&self, a: &PodInfo, a_added: u64, b: &PodInfo, b_added: u64) -> bool;
}

pub trait PreEnqueuePlugin: Plugin {
    /// May the pod enter the active queue at all (`schedulingGates`)?
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

pub trait PreFilterPlugin: Plugin {
    /// Compute what the filter needs, once per pod. `Skip` skips this plugin's filter.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);

    /// Update this plugin's state as if `added` ran on `node` (preemption and nominated
    /// pods). Plugins whose state does not depend on other pods keep the default.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        Status::success()
    }

    /// Update this plugin's state as if `removed` no longer ran on `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        Status::success()
    }
}

pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Where preemption put a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostFilterResult {
    pub nominated_node: Option<String>,
}

/// Runs when no node fits (preemption). It gets the framework to re-run filters.
pub trait PostFilterPlugin: Plugin {
    fn post_filter<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a Arc<PodInfo>,
        snapshot: &'a Arc<Snapshot>,
        framework: &'a Framework,
        filtered: &'a NodeStatuses,
    ) -> BoxFuture<'a, (Option<PostFilterResult>, Status)>;
}

pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// A node and its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub name: String,
    pub score: i64,
}

pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status);
    /// Scale scores into 0..=MAX_NODE_SCORE when `score` does not already.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

pub trait ReservePlugin: Plugin {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Undo `reserve` (binding failed or a later plugin rejected the pod). Idempotent.
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

pub trait PermitPlugin: Plugin {
    /// Success, a rejection, or `Wait` with how long to wait at most.
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> (Status, Duration);
}

pub trait PreBindPlugin: Plugin {
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

pub trait BindPlugin: Plugin {
    /// `Skip` passes the pod to the next bind plugin.
    fn bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Why each rejected node was rejected (Kubernetes' `NodeToStatusMap`).
///
/// A cycle records a status for every node it rejects, thousands per cycle when few nodes
/// fit, and most cycles never read them (a node was found). So entries are appended with
/// the node itself (a reference count, no copy of its name) and its position in the
/// cycle's snapshot, and nothing is hashed: readers that go through every node
/// (preemption) use the positions; `get` by name scans.
#[derive(Debug, Default, Clone)]
pub struct NodeStatuses {
    /// One entry per node.
    entries: Vec<(NodeRef, Status)>,
}

/// A rejected node: the node at a position of the cycle's snapshot, or just a name.
#[derive(Debug, Clone)]
enum NodeRef {
    At(usize, Arc<NodeInfo>),
    Named(String),
}

impl NodeRef {
    fn name(&self) -> &str {
        match self {
            NodeRef::At(_, node) => &node.name,
            NodeRef::Named(name) => name,
        }
    }
}

impl NodeStatuses {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record the status of `node`, at `position` of the cycle's snapshot. The caller
    /// records each node at most once (the scheduling loop visits each node once).
    pub fn push(&mut self, position: usize, node: &Arc<NodeInfo>, status: Status) {
        self.entries.push((NodeRef::At(position, node.clone()), status));
    }

    /// Set a node's status by name, replacing an earlier one (O(entries): for tests and
    /// one-off callers, not per node of a cycle).
    pub fn insert(&mut self, name: String, status: Status) {
        match self.entries.iter_mut().find(|(n, _)| n.name() == name) {
            Some(e) => e.1 = status,
            None => self.entries.push((NodeRef::Named(name), status)),
        }
    }

    /// The status of a node by name (O(entries)).
    pub fn get(&self, name: &str) -> Option<&Status> {
        self.entries.iter().find(|(n, _)| n.name() == name).map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Status)> {
        self.entries.iter().map(|(n, s)| (n.name(), s))
    }

    pub fn values(&self) -> impl Iterator<Item = &Status> {
        self.entries.iter().map(|(_, s)| s)
    }

    /// Positions in `snapshot.nodes` of the nodes whose status satisfies `pred`, in the
    /// snapshot's order. Entries recorded for another snapshot, or by name only, are found
    /// by name.
    pub fn positions_where(
        &self,
        snapshot: &Snapshot,
        mut pred: impl FnMut(&Status) -> bool,
    ) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, s)| pred(s))
            .filter_map(|(n, _)| match n {
                NodeRef::At(pos, node)
                    if snapshot.nodes.get(*pos).is_some_and(|s| Arc::ptr_eq(s, node)) =>
                {
                    Some(*pos)
                }
                other => snapshot.position(other.name()),
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl<S: Into<String>> FromIterator<(S, Status)> for NodeStatuses {
    fn from_iter<I: IntoIterator<Item = (S, Status)>>(iter: I) -> Self {
        let mut out = NodeStatuses::new();
        for (name, status) in iter {
            out.insert(name.into(), status);
        }
        out
    }
}

/// Why each node was rejected, and the message Kubernetes prints for it.
#[derive(Debug, Default, Clone)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    pub node_statuses: NodeStatuses,
    /// Set when a pre-filter rejected the pod for every node at once.
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
    /// Plugins that rejected the pod, for requeueing on the events they care about.
    pub unschedulable_plugins: HashSet<&'static str>,
}

impl Diagnosis {
    /// Kubernetes' `FitError.Error()`: "0/3 nodes are available: 1 Insufficient cpu,
    /// 2 node(s) didn't match Pod's node affinity/selector. preemption: …".
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if !self.pre_filter_msg.is_empty() {
            msg.push_str(&format!(" {}.", self.pre_filter_msg));
        } else {
            let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
            for status in self.node_statuses.values() {
                for r in &status.reasons {
                    *histogram.entry(r.as_ref()).or_default() += 1;
                }
            }
            let mut reasons: Vec<String> =
                histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
            reasons.sort();
            msg.push_str(&format!(" {}.", reasons.join(", ")));
        }
        if !self.post_filter_msg.is_empty() {
            msg.push_str(&format!(" {}.", self.post_filter_msg));
        }
        msg
    }
}

/// A score plugin with its weight in the profile.
pub struct WeightedScore {
    pub plugin: Arc<dyn ScorePlugin>,
    pub weight: i64,
}

/// One scheduler profile: its name (`spec.schedulerName`) and plugins per extension point,
/// in the order they run.
pub struct Framework {
    pub profile_name: String,
    pub queue_sort: Arc<dyn QueueSortPlugin>,
    pub pre_enqueue: Vec<Arc<dyn PreEnqueuePlugin>>,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<WeightedScore>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    pub permit: Vec<Arc<dyn PermitPlugin>>,
    pub pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    pub bind: Vec<Arc<dyn BindPlugin>>,
    /// Events each plugin wants to be requeued on, by plugin name.
    pub events: HashMap<&'static str, Vec<ClusterEvent>>,
    /// Percentage of nodes to find feasible before scoring (0: Kubernetes' adaptive default).
    pub percentage_of_nodes_to_score: u32,
}

impl Framework {
    /// A profile with no plugins but PrioritySort; add plugins to its lists.
    pub fn empty(profile_name: &str) -> Self {
        Framework {
            profile_name: profile_name.to_string(),
            queue_sort: Arc::new(crate::plugins::queue_sort::PrioritySort),
            pre_enqueue: Vec::new(),
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            pre_bind: Vec::new(),
            bind: Vec::new(),
            events: HashMap::new(),
            percentage_of_nodes_to_score: 0,
        }
    }

    /// Run every pre-filter. Returns the merged node restriction, or the first rejection.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let mut result: Option<PreFilterResult> = None;
        for p in &self.pre_filter {
            let (r, status) = p.pre_filter(state, pod, snapshot);
            if status.is_skip() {
                state.skip_filter.insert(p.name());
                continue;
            }
            if !status.is_success() {
                return (None, status.with_plugin(p.name()));
            }
            if let Some(names) = r.and_then(|r| r.node_names) {
                let merged = match result.take().and_then(|r| r.node_names) {
                    None => names,
                    Some(prev) => prev.intersection(&names).cloned().collect(),
                };
                if merged.is_empty() {
                    return (
                        None,
                        Status::unresolvable(
                            "node(s) didn't satisfy plugin(s) [".to_string()
                                + p.name()
                                + "] simultaneously",
                        )
                        .with_plugin(p.name()),
                    );
                }
                result = Some(PreFilterResult { node_names: Some(merged) });
            }
        }
        (result, Status::success())
    }

    /// Run the filters on one node; the first rejection wins.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for p in &self.filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let status = p.filter(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Tell every pre-filter's state that `added` joins `node`.
    pub fn run_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.add_pod(state, pod, added, node, snapshot);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Tell every pre-filter's state that `removed` leaves `node`.
    pub fn run_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.remove_pod(state, pod, removed, node, snapshot);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_score {
            let status = p.pre_score(state, pod, nodes, snapshot);
            if status.is_skip() {
                state.skip_score.insert(p.name());
                continue;
            }
            if !status.is_success() {
                return status.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Score every node with every score plugin, normalize, weigh, and sum.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<NodeScore>, Status> {
        // One list of names, reused by every plugin; the totals are summed beside it.
        let mut totals: Vec<i64> = vec![0; nodes.len()];
        let mut scores: Vec<NodeScore> =
            nodes.iter().map(|n| NodeScore { name: n.name.clone(), score: 0 }).collect();
        for w in &self.score {
            let p = &w.plugin;
            if state.skip_score.contains(p.name()) {
                continue;
            }
            for (i, node) in nodes.iter().enumerate() {
                let (s, status) = p.score(state, pod, node);
                if !status.is_success() {
                    return Err(status.with_plugin(p.name()));
                }
                scores[i].score = s;
            }
            let status = p.normalize(state, pod, &mut scores);
            if !status.is_success() {
                return Err(status.with_plugin(p.name()));
            }
            for (total, s) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(Status::error(format!(
                        "plugin {} returns an invalid score {}, it should in the range of [0, {}] after normalizing",
                        p.name(),
                        s.score,
                        MAX_NODE_SCORE
                    )));
                }
                *total += s.score * w.weight;
            }
        }
        for (s, total) in scores.iter_mut().zip(totals) {
            s.score = total;
        }
        Ok(scores)
    }

    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.reserve {
            let status = p.reserve(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Unreserve in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(state, pod, node);
        }
    }

    /// The overall permit answer and, for `Wait`, the longest wait any plugin asked for.
    pub fn run_permit(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> (Status, Duration) {
        let mut wait = None::<Duration>;
        for p in &self.permit {
            let (status, timeout) = p.permit(state, pod, node);
            match status.code {
                Code::Success | Code::Skip => {}
                Code::Wait => wait = Some(wait.unwrap_or_default().max(timeout)),
                _ => return (status.with_plugin(p.name()), Duration::ZERO),
            }
        }
        match wait {
            Some(d) => {
                (Status { code: Code::Wait, reasons: smallvec::SmallVec::new(), plugin: "" }, d)
            }
            None => (Status::success(), Duration::ZERO),
        }
    }

    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.pre_bind {
            let status = p.pre_bind(state, pod, node).await;
            if !status.is_success() && !status.is_skip() {
                return status.with_plugin(p.name());
            }
        }
        Status::success()
    }

    pub async fn run_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let status = p.bind(state, pod, node).await;
            if status.is_skip() {
                continue;
            }
            return status.with_plugin(p.name());
        }
        Status::error("no bind plugin bound the pod")
    }

    /// Does an event interest one of the plugins that rejected a pod?
    pub fn event_interests(&self, event: ClusterEvent, plugins: &HashSet<&'static str>) -> bool {
        if plugins.is_empty() {
            return true;
        }
        plugins.iter().any(|p| match self.events.get(p) {
            None => true,
            Some(evs) => evs.is_empty() || evs.contains(&event),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{node, node_info};

    fn snapshot_of(names: &[&str]) -> Snapshot {
        Snapshot::from_nodes(names.iter().map(|n| node_info(node(n, &[]), vec![])).collect())
    }

    #[test]
    fn node_statuses_should_answer_by_name_and_list_positions_in_snapshot_order() {
        let snap = snapshot_of(&["a", "b", "c", "d"]);
        let mut statuses = NodeStatuses::new();
        // Recorded in scan order, starting part-way through the snapshot.
        statuses.push(2, &snap.nodes[2], Status::unschedulable("Insufficient cpu"));
        statuses.push(3, &snap.nodes[3], Status::unresolvable("node(s) were unschedulable"));
        statuses.push(0, &snap.nodes[0], Status::unschedulable("Insufficient cpu"));
        assert_eq!(statuses.len(), 3);
        assert_eq!(statuses.get("d").map(|s| s.code), Some(Code::UnschedulableAndUnresolvable));
        assert!(statuses.get("b").is_none());
        assert_eq!(
            statuses.positions_where(&snap, |s| s.code == Code::Unschedulable),
            vec![0, 2],
            "snapshot order, not scan order"
        );
        let mut names: Vec<&str> = statuses.iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, vec!["a", "c", "d"]);
    }

    #[test]
    fn node_statuses_should_find_nodes_by_name_when_positions_are_stale_or_missing() {
        let old = snapshot_of(&["a", "b", "c"]);
        let mut statuses: NodeStatuses =
            [("c", Status::unschedulable("Insufficient cpu"))].into_iter().collect();
        statuses.push(0, &old.nodes[0], Status::unschedulable("Insufficient cpu"));
        // "a" left and the others moved up: positions from `old` no longer hold.
        let new = snapshot_of(&["b", "c"]);
        assert_eq!(statuses.positions_where(&new, |_| true), vec![1]);
        assert_eq!(statuses.positions_where(&old, |_| true), vec![0, 2]);
        // `insert` replaces.
        statuses.insert("c".into(), Status::unresolvable("gone"));
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses.get("c").map(|s| s.code), Some(Code::UnschedulableAndUnresolvable));
    }

    #[test]
    fn diagnosis_should_print_kubernetes_fit_error() {
        let mut d = Diagnosis { num_all_nodes: 3, ..Default::default() };
        d.node_statuses.insert("a".into(), Status::unschedulable("Insufficient cpu"));
        d.node_statuses.insert(
            "b".into(),
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
        );
        d.node_statuses.insert(
            "c".into(),
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
        );
        d.post_filter_msg =
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
                .into();
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }
}
