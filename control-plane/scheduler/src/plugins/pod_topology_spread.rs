//! PodTopologySpread: `spec.topologySpreadConstraints`, as Kubernetes' `podtopologyspread`
//! plugin.
//!
//! A constraint counts the pods in the incoming pod's namespace that match its selector
//! (with `matchLabelKeys` merged in; terminating pods do not count), per domain of its
//! topology key, over the nodes that have all the constraints' topology keys and pass its
//! `nodeAffinityPolicy` (Honor by default: the pod's nodeSelector and required node
//! affinity) and `nodeTaintsPolicy` (Ignore by default; Honor skips nodes with untolerated
//! NoSchedule/NoExecute taints).
//!
//! `DoNotSchedule` constraints filter: placing the pod must keep
//! `pods in the node's domain + 1 (if the pod matches) - global minimum <= maxSkew`, the
//! minimum being 0 while fewer than `minDomains` domains exist. A node without the topology key is rejected as
//! unresolvable. `ScheduleAnyway` constraints score: fewer matching pods in a node's
//! domains score higher, each constraint weighted by the log of its number of domains.
//!
//! Only the pod's own constraints count: Skiff has no cluster-level default constraints
//! (kube-scheduler's `defaultConstraints` and its system defaults, which spread by the
//! pod's Services and owners), so a pod without `topologySpreadConstraints` is skipped.
//!
//! Counts are kept between cycles per set of constraints and recomputed only for the nodes
//! that changed (see [`super::topology`]).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::topology::{NodeMemo, NodeStamps, ShapeCache, label_interner};
use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, Resource, ScorePlugin, Status,
};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo, node_selector_term_matches, selector_matches, tolerated_by};

pub const NAME: &str = "PodTopologySpread";

/// CycleState keys, as Kubernetes names them.
const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

pub const ERR_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// `kubernetes.io/hostname`: one domain per node, so its counts are taken per node in score.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// Sets of constraints whose counts are kept between cycles.
const SHAPES: usize = 16;

#[derive(Default)]
pub struct PodTopologySpread {
    memos: Mutex<Memos>,
}

impl PodTopologySpread {
    pub fn new() -> Self {
        Self::default()
    }

    /// The memos, reset if a panic left them half updated.
    fn memos(&self) -> MutexGuard<'_, Memos> {
        match self.memos.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                *guard = Memos::default();
                self.memos.clear_poison();
                guard
            }
        }
    }
}

/// A constraint with its selector resolved.
#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None` (no selector written) matches no pod.
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    fn matches(&self, pod: &PodInfo) -> bool {
        self.selector.as_ref().is_some_and(|s| selector_matches(s, &pod.labels))
    }

    /// Is `p` counted for a pod in namespace `ns`? As in Kubernetes, a selector without
    /// requirements counts nothing (though it matches every pod), and terminating pods are
    /// left out.
    fn counts(&self, p: &PodInfo, ns: &str) -> bool {
        let Some(s) = &self.selector else { return false };
        let empty = s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        !empty && !p.terminating && p.namespace == ns && selector_matches(s, &p.labels)
    }

    fn count_on(&self, node: &NodeInfo, ns: &str) -> i64 {
        node.pods.iter().filter(|p| self.counts(p, ns)).count() as i64
    }
}

/// The pod's constraints with this `whenUnsatisfiable`.
fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let spec = pod.pod.spec.as_ref();
    let all: &[TopologySpreadConstraint] =
        spec.and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
    all.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            // matchLabelKeys: the pod's own values of those labels join the selector.
            let selector = c.label_selector.clone().map(|mut s| {
                let mut exprs = s.match_expressions.take().unwrap_or_default();
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels.get(key) {
                        exprs.push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        });
                    }
                }
                s.match_expressions = (!exprs.is_empty()).then_some(exprs);
                s
            });
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// The pod's nodeSelector and required node affinity (Kubernetes' `RequiredNodeAffinity`).
fn node_affinity_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(spec) = pod.pod.spec.as_ref() else { return true };
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(r) => r
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, &node.name, &node.labels)),
        None => true,
    }
}

/// No NoSchedule/NoExecute taint on the node that the pod does not tolerate.
fn taints_tolerated(pod: &PodInfo, node: &NodeInfo) -> bool {
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerated_by(&pod.tolerations, t))
}

/// Which constraints count `node` (Kubernetes' `matchNodeInclusionPolicies`), assuming it
/// has all their topology keys. The node-level checks run at most once.
struct Inclusion<'a> {
    pod: &'a PodInfo,
    node: &'a NodeInfo,
    affinity: Option<bool>,
    taints: Option<bool>,
}

impl<'a> Inclusion<'a> {
    fn new(pod: &'a PodInfo, node: &'a NodeInfo) -> Self {
        Inclusion { pod, node, affinity: None, taints: None }
    }

    fn includes(&mut self, c: &Constraint) -> bool {
        let (pod, node) = (self.pod, self.node);
        (!c.honor_node_affinity
            || *self.affinity.get_or_insert_with(|| node_affinity_matches(pod, node)))
            && (!c.honor_node_taints
                || *self.taints.get_or_insert_with(|| taints_tolerated(pod, node)))
    }
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| node.labels.contains_key(&c.topology_key))
}

fn state_missing(key: &str) -> Status {
    Status::error(format!("error reading {key:?} from cycleState: not found"))
}

// ---------------------------------------------------------------------------------------
// Counts kept between cycles

struct Memos {
    stamps: NodeStamps,
    shapes: ShapeCache<SpreadMemo>,
}

impl Default for Memos {
    fn default() -> Self {
        Memos { stamps: NodeStamps::default(), shapes: ShapeCache::new(SHAPES) }
    }
}

/// One node's share for one constraint: its domain and its matching pods.
#[derive(Debug, Clone, Copy)]
struct DomainDelta {
    constraint: u16,
    value: u32,
    pods: i64,
}

/// Per domain (value id) of one constraint's key.
#[derive(Clone, Debug, Default)]
struct Domains {
    /// Matching pods on the nodes counted.
    pods: Vec<i64>,
    /// Nodes counted: the domain exists while this is above 0.
    nodes: Vec<i64>,
}

impl Domains {
    fn add(&mut self, value: u32, pods: i64, nodes: i64) {
        let v = value as usize;
        if self.pods.len() <= v {
            self.pods.resize(v + 1, 0);
            self.nodes.resize(v + 1, 0);
        }
        self.pods[v] += pods;
        self.nodes[v] += nodes;
    }
}

struct SpreadMemo {
    memo: NodeMemo<Vec<DomainDelta>>,
    domains: Vec<Domains>,
}

/// What a node contributes depends on: the constraints' keys, selectors and policies, the
/// pod's namespace, and (when a policy is Honor) its node affinity and tolerations.
fn shape(tag: &str, pod: &PodInfo, constraints: &[Constraint]) -> String {
    let mut s = format!("{tag}\n{}", pod.namespace);
    for c in constraints {
        let _ = write!(
            s,
            "\n{}\n{:?}\n{}{}",
            c.topology_key, c.selector, c.honor_node_affinity, c.honor_node_taints
        );
    }
    let spec = pod.pod.spec.as_ref();
    if constraints.iter().any(|c| c.honor_node_affinity) {
        let affinity =
            spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
        let _ = write!(
            s,
            "\n{:?}\n{:?}",
            spec.and_then(|s| s.node_selector.as_ref()),
            affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        );
    }
    if constraints.iter().any(|c| c.honor_node_taints) {
        let _ = write!(s, "\n{:?}", pod.tolerations);
    }
    s
}

impl Memos {
    /// Per constraint, its key's id and its domains over every node, by value id (ids of
    /// [`super::topology::LABEL_IDS`]). `with_empty` also counts domains without matching
    /// pods (the filter's minimum needs them); `skip_hostname` leaves hostname constraints
    /// out (score counts those per node).
    fn domains(
        &mut self,
        tag: &str,
        pod: &PodInfo,
        constraints: &[Constraint],
        snapshot: &Snapshot,
        with_empty: bool,
        skip_hostname: bool,
    ) -> Vec<(u32, Domains)> {
        let key_ids: Vec<u32> = {
            let mut interner = label_interner();
            constraints.iter().map(|c| interner.key_id(&c.topology_key)).collect()
        };
        self.stamps.refresh(&snapshot.nodes);
        let Memos { stamps, shapes } = self;
        let memo = shapes.get_or_insert_with(shape(tag, pod, constraints), || SpreadMemo {
            memo: NodeMemo::default(),
            domains: vec![Domains::default(); constraints.len()],
        });
        // A node's labels were given ids when its object was read, so this reads only them.
        let compute = |node: &NodeInfo| {
            let mut out = Vec::new();
            if !has_all_keys(node, constraints) {
                return out;
            }
            let mut inclusion = Inclusion::new(pod, node);
            for (i, c) in constraints.iter().enumerate() {
                if skip_hostname && c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                if !inclusion.includes(c) {
                    continue;
                }
                let pods = c.count_on(node, &pod.namespace);
                if pods == 0 && !with_empty {
                    continue;
                }
                let Some(value) = node.label_id(key_ids[i]) else { continue };
                out.push(DomainDelta { constraint: i as u16, value, pods });
            }
            out
        };
        memo.memo.refresh(
            stamps.stamps(),
            &snapshot.nodes,
            &mut memo.domains,
            |_, node| compute(node),
            |domains, deltas, sign| {
                for d in deltas {
                    domains[d.constraint as usize].add(d.value, d.pods * sign, sign);
                }
            },
        );
        key_ids.into_iter().zip(memo.domains.iter().cloned()).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Filter

/// A DoNotSchedule constraint with its counts.
#[derive(Clone, Debug)]
struct FilterConstraint {
    constraint: Constraint,
    /// The id of the constraint's topology key; the domains are by value id.
    key: u32,
    domains: Domains,
    /// The global minimum of matching pods over domains, 0 while fewer than `minDomains`.
    min: i64,
    /// 1 if the incoming pod matches the selector itself.
    self_match: i64,
}

impl FilterConstraint {
    fn count(&self, value: u32) -> i64 {
        self.domains.pods.get(value as usize).copied().unwrap_or(0)
    }

    fn update_min(&mut self) {
        let (mut domains, mut min) = (0i64, i64::MAX);
        for (pods, nodes) in self.domains.pods.iter().zip(&self.domains.nodes) {
            if *nodes > 0 {
                domains += 1;
                min = min.min(*pods);
            }
        }
        // minDomains is at least 1, so no domain at all also means 0.
        self.min = if domains < self.constraint.min_domains { 0 } else { min };
    }
}

#[derive(Clone, Debug, Default)]
struct PreFilterState {
    constraints: Vec<FilterConstraint>,
}

impl PreFilterState {
    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace {
            return;
        }
        if !self.constraints.iter().all(|c| node.label_id(c.key).is_some()) {
            return;
        }
        let mut inclusion = Inclusion::new(pod, node);
        for fc in &mut self.constraints {
            let c = &fc.constraint;
            if !c.matches(other) || !inclusion.includes(c) {
                continue;
            }
            let Some(id) = node.label_id(fc.key) else { continue };
            let exists = fc.domains.nodes.get(id as usize).is_some_and(|n| *n > 0);
            // A node counted here is a domain, as Kubernetes' map entry would be.
            fc.domains.add(id, delta, if exists { 0 } else { 1 });
            fc.update_min();
        }
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(Resource::Pod, Action::Add),
            ClusterEvent::new(Resource::Pod, Action::Update),
            ClusterEvent::new(Resource::Pod, Action::Delete),
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
            ClusterEvent::new(Resource::Node, Action::Delete),
        ]
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = constraints(pod, DO_NOT_SCHEDULE);
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let domains = self.memos().domains("filter", pod, &constraints, snapshot, true, false);
        let constraints = constraints
            .into_iter()
            .zip(domains)
            .map(|(constraint, (key, domains))| {
                let self_match = i64::from(constraint.matches(pod));
                let mut fc = FilterConstraint { constraint, key, domains, min: 0, self_match };
                fc.update_min();
                fc
            })
            .collect();
        state.write(PRE_FILTER_KEY, PreFilterState { constraints });
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        s.update_with_pod(pod, added, node, 1);
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        s.update_with_pod(pod, removed, node, -1);
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        for fc in &s.constraints {
            let Some(value) = node.label_id(fc.key) else {
                return Status::unresolvable(ERR_NODE_LABEL_NOT_MATCH);
            };
            // Placing the pod here must keep this domain within maxSkew of the minimum.
            let skew = fc.count(value) + fc.self_match - fc.min;
            if skew > fc.constraint.max_skew {
                return Status::unschedulable(ERR_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

// ---------------------------------------------------------------------------------------
// Score

/// A ScheduleAnyway constraint with its weight and counts.
#[derive(Clone, Debug)]
struct ScoreConstraint {
    constraint: Constraint,
    /// ln(number of domains among the scored nodes + 2): small topologies are not drowned
    /// by large ones.
    weight: f64,
    /// The key's id and the matching pods per domain (by value id); `None` for hostname,
    /// counted per node in score.
    counts: Option<(u32, Vec<i64>)>,
}

#[derive(Clone, Debug, Default)]
struct PreScoreState {
    constraints: Vec<ScoreConstraint>,
    /// Scored nodes lacking a topology key: they get 0.
    ignored: HashSet<String>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let constraints = constraints(pod, SCHEDULE_ANYWAY);
        if constraints.is_empty() || snapshot.is_empty() {
            return Status::skip();
        }
        let mut ignored = HashSet::new();
        let mut values: Vec<HashSet<&str>> = vec![HashSet::new(); constraints.len()];
        for node in nodes {
            if !has_all_keys(node, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (c, seen) in constraints.iter().zip(values.iter_mut()) {
                if c.topology_key != LABEL_HOSTNAME
                    && let Some(v) = node.labels.get(&c.topology_key)
                {
                    seen.insert(v.as_str());
                }
            }
        }
        let scored = nodes.len() - ignored.len();
        let sizes: Vec<usize> = constraints
            .iter()
            .zip(&values)
            .map(|(c, seen)| if c.topology_key == LABEL_HOSTNAME { scored } else { seen.len() })
            .collect();
        drop(values);

        let domains = if constraints.iter().any(|c| c.topology_key != LABEL_HOSTNAME) {
            self.memos().domains("score", pod, &constraints, snapshot, false, true)
        } else {
            Vec::new()
        };
        let mut domains = domains.into_iter();
        let constraints = constraints
            .into_iter()
            .zip(sizes)
            .map(|(constraint, size)| {
                let weight = ((size + 2) as f64).ln();
                let counts = domains.next().filter(|_| constraint.topology_key != LABEL_HOSTNAME);
                ScoreConstraint { constraint, weight, counts: counts.map(|(key, d)| (key, d.pods)) }
            })
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { constraints, ignored });
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    /// The node's matching pods per constraint, weighted; lower is better (normalize flips).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return (0, state_missing(PRE_SCORE_KEY));
        };
        if s.ignored.contains(&node.name) {
            return (0, Status::success());
        }
        let mut score = 0f64;
        for sc in &s.constraints {
            let c = &sc.constraint;
            let count = match &sc.counts {
                None if node.labels.contains_key(&c.topology_key) => {
                    c.count_on(node, &pod.namespace)
                }
                None => continue,
                Some((key, pods)) => match node.label_id(*key) {
                    Some(id) => pods.get(id as usize).copied().unwrap_or(0),
                    None => continue,
                },
            };
            // maxSkew - 1 waters down differences the constraint tolerates anyway.
            score += count as f64 * sc.weight + (c.max_skew - 1) as f64;
        }
        (score.round() as i64, Status::success())
    }

    /// Fewest matching pods gets 100: `100 * (max + min - score) / max`; nodes lacking a
    /// topology key get 0.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return state_missing(PRE_SCORE_KEY);
        };
        let counted = |n: &NodeScore| !s.ignored.contains(&n.name);
        let min = scores.iter().filter(|n| counted(n)).map(|n| n.score).min().unwrap_or(i64::MAX);
        let max = scores.iter().filter(|n| counted(n)).map(|n| n.score).max().unwrap_or(0).max(0);
        for n in scores.iter_mut() {
            n.score = if !counted(n) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
