//! InterPodAffinity: `podAffinity` / `podAntiAffinity`, required (filter) and preferred
//! (score), as Kubernetes' `interpodaffinity` plugin.
//!
//! The filter rejects a node when
//! - an existing pod's required anti-affinity term matches the incoming pod and the node is
//!   in that pod's topology domain ("node(s) didn't satisfy existing pods anti-affinity
//!   rules", Unschedulable: evicting that pod would help);
//! - a pod matching one of the incoming pod's required anti-affinity terms runs in the
//!   node's domain of that term ("node(s) didn't match pod anti-affinity rules",
//!   Unschedulable);
//! - the node lacks a topology key of the incoming pod's required affinity terms, or no pod
//!   matching all those terms runs in its domains ("node(s) didn't match pod affinity
//!   rules", UnschedulableAndUnresolvable) — unless no pod anywhere matches them and the
//!   pod matches them itself: the first pod of a set with affinity to itself.
//!
//! The score adds, per topology domain, the weights of the incoming pod's preferred terms
//! that existing pods there match (anti-affinity subtracts), and symmetrically the weights
//! of existing pods' preferred terms that the incoming pod matches, plus
//! `hardPodAffinityWeight` for each existing pod whose required affinity it matches; then
//! scales the node totals to 0..=100.
//!
//! All of this is counts per topology pair `(key, value)`. Terms of existing pods are kept
//! in one index over the whole cluster, grouped by identical term (a Deployment's pods share
//! theirs), and the incoming pod's terms are counted per set of terms; both recompute only
//! the nodes that changed since the last cycle (see [`super::topology`]). Namespace
//! selectors resolve through the snapshot's namespace labels.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::topology::{
    IdCounts, Interner, NodeMemo, NodeStamps, PairCounts, ShapeCache, label_interner,
};
use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, Resource, ScorePlugin, Status,
};
use crate::snapshot::Snapshot;
use crate::types::{AffinityTerm, Labels, NodeInfo, PodInfo};

pub const NAME: &str = "InterPodAffinity";

/// CycleState keys, as Kubernetes names them.
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// Kubernetes' default `hardPodAffinityWeight`.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i32 = 1;
const MAX_HARD_POD_AFFINITY_WEIGHT: i32 = 100;

/// Sets of incoming-pod terms whose counts are kept between cycles.
const SHAPES: usize = 16;

/// Kubernetes' `InterPodAffinityArgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterPodAffinityArgs {
    /// Score for each existing pod whose required affinity the incoming pod matches
    /// (0..=100; 0 turns it off).
    pub hard_pod_affinity_weight: i32,
    /// Do not score existing pods' preferred terms unless the incoming pod has preferred
    /// terms itself (faster on large clusters).
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterPodAffinityError {
    #[error("hardPodAffinityWeight: Invalid value: {0}: not in valid range [0-100]")]
    HardPodAffinityWeight(i32),
}

#[derive(Default)]
pub struct InterPodAffinity {
    args: InterPodAffinityArgs,
    memos: Mutex<Memos>,
}

impl InterPodAffinity {
    pub fn new(args: InterPodAffinityArgs) -> Result<Self, InterPodAffinityError> {
        if !(0..=MAX_HARD_POD_AFFINITY_WEIGHT).contains(&args.hard_pod_affinity_weight) {
            return Err(InterPodAffinityError::HardPodAffinityWeight(
                args.hard_pod_affinity_weight,
            ));
        }
        Ok(InterPodAffinity { args, memos: Mutex::default() })
    }

    pub fn args(&self) -> &InterPodAffinityArgs {
        &self.args
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

/// Labels of `pod`'s namespace when `term` needs them (it has a namespace selector).
fn ns_labels<'a>(term: &AffinityTerm, pod: &PodInfo, snapshot: &'a Snapshot) -> Option<&'a Labels> {
    term.namespace_selector.as_ref().and_then(|_| snapshot.namespace_labels(&pod.namespace))
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, snapshot: &Snapshot) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns_labels(t, pod, snapshot)))
}

fn state_missing(key: &str) -> Status {
    Status::error(format!("error reading {key:?} from cycleState: not found"))
}

// ---------------------------------------------------------------------------------------
// Counts kept between cycles

/// Label keys and values are ids of [`super::topology::LABEL_IDS`], as on every `NodeInfo`.
struct Memos {
    stamps: NodeStamps,
    existing: ExistingTerms,
    /// Per set of incoming required terms: pods matching them, by topology pair.
    required: ShapeCache<TermsMemo>,
    /// Per set of incoming preferred terms: their weights, by topology pair.
    preferred: ShapeCache<TermsMemo>,
}

impl Default for Memos {
    fn default() -> Self {
        Memos {
            stamps: NodeStamps::default(),
            existing: ExistingTerms::default(),
            required: ShapeCache::new(SHAPES),
            preferred: ShapeCache::new(SHAPES),
        }
    }
}

/// Which list of an existing pod a term comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    RequiredAnti,
    RequiredAffinity,
    PreferredAffinity,
    PreferredAnti,
}

/// A distinct term of existing pods (identical terms of many pods share one), with how
/// much it counts per topology pair: pods for required terms, the sum of weights for
/// preferred ones.
struct ExistingTerm {
    kind: Kind,
    term: AffinityTerm,
    counts: IdCounts,
    /// Node contributions that name this term; at 0 the slot is reused.
    refs: usize,
}

/// One existing pod's term on one node.
#[derive(Debug, Clone, Copy)]
struct TermDelta {
    term: u32,
    key: u32,
    value: u32,
    n: i64,
}

#[derive(Default)]
struct ExistingTerms {
    memo: NodeMemo<Vec<TermDelta>>,
    table: TermTable,
}

#[derive(Default)]
struct TermTable {
    terms: Vec<Option<ExistingTerm>>,
    free: Vec<u32>,
    by_hash: HashMap<u64, Vec<u32>>,
}

fn hash_selector(h: &mut DefaultHasher, selector: Option<&LabelSelector>) {
    selector.is_some().hash(h);
    let Some(s) = selector else { return };
    for (k, v) in s.match_labels.iter().flatten() {
        k.hash(h);
        v.hash(h);
    }
    0xffu8.hash(h);
    for r in s.match_expressions.iter().flatten() {
        r.key.hash(h);
        r.operator.hash(h);
        r.values.hash(h);
    }
}

/// Identity of a term for grouping: what decides whether it matches a pod (the topology key
/// is not part of it; counts are per key anyway).
fn term_hash(kind: Kind, t: &AffinityTerm) -> u64 {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    t.namespaces.hash(&mut h);
    hash_selector(&mut h, t.namespace_selector.as_ref());
    hash_selector(&mut h, t.selector.as_ref());
    h.finish()
}

fn same_term(a: &AffinityTerm, b: &AffinityTerm) -> bool {
    a.namespaces == b.namespaces
        && a.namespace_selector == b.namespace_selector
        && a.selector == b.selector
}

impl TermTable {
    fn id(&mut self, kind: Kind, term: &AffinityTerm) -> u32 {
        let hash = term_hash(kind, term);
        let ids = self.by_hash.entry(hash).or_default();
        for &id in ids.iter() {
            if let Some(e) = &self.terms[id as usize]
                && e.kind == kind
                && same_term(&e.term, term)
            {
                return id;
            }
        }
        let entry = ExistingTerm { kind, term: term.clone(), counts: IdCounts::default(), refs: 0 };
        let id = match self.free.pop() {
            Some(id) => {
                self.terms[id as usize] = Some(entry);
                id
            }
            None => {
                self.terms.push(Some(entry));
                (self.terms.len() - 1) as u32
            }
        };
        ids.push(id);
        id
    }

    fn fold(&mut self, deltas: &[TermDelta], sign: i64) {
        for d in deltas {
            let Some(e) = self.terms[d.term as usize].as_mut() else { continue };
            e.counts.add(d.key, d.value, d.n * sign);
            if sign > 0 {
                e.refs += 1;
            } else {
                e.refs = e.refs.saturating_sub(1);
            }
            if e.refs == 0 {
                let hash = term_hash(e.kind, &e.term);
                self.terms[d.term as usize] = None;
                self.free.push(d.term);
                if let Some(ids) = self.by_hash.get_mut(&hash) {
                    ids.retain(|id| *id != d.term);
                    if ids.is_empty() {
                        self.by_hash.remove(&hash);
                    }
                }
            }
        }
    }

    /// Add `factor(kind)` times the counts of every term the incoming pod matches.
    fn add_matching(
        &self,
        interner: &Interner,
        pod: &PodInfo,
        pod_ns_labels: Option<&Labels>,
        factor: impl Fn(Kind) -> i64,
        out: &mut PairCounts,
    ) {
        for e in self.terms.iter().flatten() {
            let f = factor(e.kind);
            if f != 0 && !e.counts.is_zero() && e.term.matches(pod, pod_ns_labels) {
                e.counts.add_into(interner, f, out);
            }
        }
    }
}

/// The terms of the pods on `node` that have any, where the node has their topology key.
fn existing_terms_of(
    table: &mut TermTable,
    interner: &mut Interner,
    node: &NodeInfo,
) -> Vec<TermDelta> {
    let mut out = Vec::new();
    for p in &node.pods_with_affinity {
        let all = (p.required_anti_affinity.iter().map(|t| (Kind::RequiredAnti, t, 1)))
            .chain(p.required_affinity.iter().map(|t| (Kind::RequiredAffinity, t, 1)))
            .chain(
                p.preferred_affinity
                    .iter()
                    .map(|w| (Kind::PreferredAffinity, &w.term, i64::from(w.weight))),
            )
            .chain(
                p.preferred_anti_affinity
                    .iter()
                    .map(|w| (Kind::PreferredAnti, &w.term, i64::from(w.weight))),
            );
        for (kind, term, n) in all {
            let Some(value) = node.labels.get(&term.topology_key) else { continue };
            let key = interner.key_id(&term.topology_key);
            let value = interner.value_id(key, value);
            out.push(TermDelta { term: table.id(kind, term), key, value, n });
        }
    }
    out
}

/// A node's share of the counts for one set of incoming-pod terms: `slot` 0 is affinity
/// (or the signed preferred score), 1 anti-affinity.
#[derive(Debug, Clone, Copy)]
struct PairDelta {
    slot: u8,
    key: u32,
    value: u32,
    n: i64,
}

struct TermsMemo {
    memo: NodeMemo<Vec<PairDelta>>,
    counts: [IdCounts; 2],
    /// The namespace labels the counts were made with, when a term has a namespace selector.
    namespaces: Option<Arc<HashMap<String, Labels>>>,
}

impl TermsMemo {
    fn new(namespaces: Option<Arc<HashMap<String, Labels>>>) -> Self {
        TermsMemo { memo: NodeMemo::default(), counts: Default::default(), namespaces }
    }

    fn fold(counts: &mut [IdCounts; 2], deltas: &[PairDelta], sign: i64) {
        for d in deltas {
            counts[d.slot as usize].add(d.key, d.value, d.n * sign);
        }
    }
}

/// The memo for `shape` in `cache`, started over when namespace labels it depends on changed.
fn terms_memo<'a>(
    cache: &'a mut ShapeCache<TermsMemo>,
    shape: String,
    uses_namespaces: bool,
    snapshot: &Snapshot,
) -> &'a mut TermsMemo {
    let namespaces = uses_namespaces.then(|| snapshot.listers.namespaces.clone());
    let memo = cache.get_or_insert_with(shape, || TermsMemo::new(namespaces.clone()));
    let stale = match (&memo.namespaces, &namespaces) {
        (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
        _ => false,
    };
    if stale {
        *memo = TermsMemo::new(namespaces);
    }
    memo
}

/// Pods on `node` matching the incoming pod's required terms: all affinity terms at once
/// (slot 0), each anti-affinity term (slot 1).
fn required_counts_of(
    interner: &mut Interner,
    pod: &PodInfo,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Vec<PairDelta> {
    let mut out = Vec::new();
    if node.pods.is_empty() {
        return out;
    }
    let mut push = |interner: &mut Interner, slot: u8, term: &AffinityTerm, n: usize| {
        if n == 0 {
            return;
        }
        let Some(value) = node.labels.get(&term.topology_key) else { return };
        let key = interner.key_id(&term.topology_key);
        let value = interner.value_id(key, value);
        out.push(PairDelta { slot, key, value, n: n as i64 });
    };
    if !pod.required_affinity.is_empty() {
        let n =
            node.pods.iter().filter(|p| matches_all(&pod.required_affinity, p, snapshot)).count();
        for t in &pod.required_affinity {
            push(interner, 0, t, n);
        }
    }
    for t in &pod.required_anti_affinity {
        let n = node.pods.iter().filter(|p| t.matches(p, ns_labels(t, p, snapshot))).count();
        push(interner, 1, t, n);
    }
    out
}

/// The weights of the incoming pod's preferred terms that pods on `node` match (slot 0,
/// anti-affinity negative).
fn preferred_counts_of(
    interner: &mut Interner,
    pod: &PodInfo,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Vec<PairDelta> {
    let mut out = Vec::new();
    if node.pods.is_empty() {
        return out;
    }
    let terms = pod
        .preferred_affinity
        .iter()
        .map(|w| (w, 1))
        .chain(pod.preferred_anti_affinity.iter().map(|w| (w, -1)));
    for (w, sign) in terms {
        let t = &w.term;
        let Some(value) = node.labels.get(&t.topology_key) else { continue };
        let n = node.pods.iter().filter(|p| t.matches(p, ns_labels(t, p, snapshot))).count() as i64;
        if n == 0 {
            continue;
        }
        let key = interner.key_id(&t.topology_key);
        let value = interner.value_id(key, value);
        out.push(PairDelta { slot: 0, key, value, n: n * i64::from(w.weight) * sign });
    }
    out
}

impl Memos {
    fn refresh_existing(&mut self, snapshot: &Snapshot) {
        let Memos { stamps, existing, .. } = self;
        let mut interner = label_interner();
        let mut ctx = (&mut existing.table, &mut *interner);
        existing.memo.refresh(
            stamps.stamps(),
            &snapshot.nodes,
            &mut ctx,
            |(table, interner), node| existing_terms_of(table, interner, node),
            |(table, _), deltas, sign| table.fold(deltas, sign),
        );
    }

    /// Counts for the incoming pod's required terms: (affinity, anti-affinity).
    fn required_counts(&mut self, pod: &PodInfo, snapshot: &Snapshot) -> (PairCounts, PairCounts) {
        let shape = format!("{:?}\n{:?}", pod.required_affinity, pod.required_anti_affinity);
        let uses_ns = pod
            .required_affinity
            .iter()
            .chain(&pod.required_anti_affinity)
            .any(|t| t.namespace_selector.is_some());
        let Memos { stamps, required, .. } = self;
        let mut interner = label_interner();
        let memo = terms_memo(required, shape, uses_ns, snapshot);
        memo.memo.refresh(
            stamps.stamps(),
            &snapshot.nodes,
            &mut (&mut memo.counts, &mut *interner),
            |(_, interner), node| required_counts_of(interner, pod, node, snapshot),
            |(counts, _), deltas, sign| TermsMemo::fold(counts, deltas, sign),
        );
        let (mut affinity, mut anti) = (PairCounts::default(), PairCounts::default());
        memo.counts[0].add_into(&interner, 1, &mut affinity);
        memo.counts[1].add_into(&interner, 1, &mut anti);
        (affinity, anti)
    }

    /// Scores for the incoming pod's preferred terms.
    fn preferred_counts(&mut self, pod: &PodInfo, snapshot: &Snapshot, out: &mut PairCounts) {
        let shape = format!("{:?}\n{:?}", pod.preferred_affinity, pod.preferred_anti_affinity);
        let uses_ns = pod
            .preferred_affinity
            .iter()
            .chain(&pod.preferred_anti_affinity)
            .any(|w| w.term.namespace_selector.is_some());
        let Memos { stamps, preferred, .. } = self;
        let mut interner = label_interner();
        let memo = terms_memo(preferred, shape, uses_ns, snapshot);
        memo.memo.refresh(
            stamps.stamps(),
            &snapshot.nodes,
            &mut (&mut memo.counts, &mut *interner),
            |(_, interner), node| preferred_counts_of(interner, pod, node, snapshot),
            |(counts, _), deltas, sign| TermsMemo::fold(counts, deltas, sign),
        );
        memo.counts[0].add_into(&interner, 1, out);
    }
}

// ---------------------------------------------------------------------------------------
// Filter

/// Counts per topology pair computed in pre-filter.
#[derive(Clone, Debug, Default)]
struct PreFilterState {
    /// Existing pods whose required anti-affinity terms match the incoming pod.
    existing_anti: PairCounts,
    /// Existing pods matching all the incoming pod's required affinity terms.
    affinity: PairCounts,
    /// Existing pods matching each of the incoming pod's required anti-affinity terms.
    anti: PairCounts,
    /// The incoming pod's namespace labels (existing pods' namespace selectors match them).
    namespace_labels: Option<Labels>,
    /// The incoming pod matches all its own required affinity terms.
    self_match: bool,
}

impl PreFilterState {
    fn update_with_pod(
        &mut self,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
        n: i64,
    ) {
        for t in &other.required_anti_affinity {
            if let Some(v) = node.labels.get(&t.topology_key)
                && t.matches(pod, self.namespace_labels.as_ref())
            {
                self.existing_anti.add(&t.topology_key, v, n);
            }
        }
        if matches_all(&pod.required_affinity, other, snapshot) {
            for t in &pod.required_affinity {
                if let Some(v) = node.labels.get(&t.topology_key) {
                    self.affinity.add(&t.topology_key, v, n);
                }
            }
        }
        for t in &pod.required_anti_affinity {
            if let Some(v) = node.labels.get(&t.topology_key)
                && t.matches(other, ns_labels(t, other, snapshot))
            {
                self.anti.add(&t.topology_key, v, n);
            }
        }
    }

    fn satisfies_existing_anti_affinity(&self, node: &NodeInfo) -> bool {
        !self.existing_anti.any_for_node(node, |n| n > 0)
    }

    fn satisfies_anti_affinity(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        if self.anti.is_empty() {
            return true;
        }
        !pod.required_anti_affinity
            .iter()
            .any(|t| self.anti.for_node(&t.topology_key, node).is_some_and(|n| n > 0))
    }

    fn satisfies_affinity(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &pod.required_affinity {
            // Every topology key must be on the node, even for the first pod of a set.
            let Some(n) = self.affinity.for_node(&t.topology_key, node) else { return false };
            if n <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a set with affinity to itself: nothing anywhere matches the
        // terms, but the pod does, so it may start the set (else it would pend forever).
        pods_exist || (self.affinity.is_empty() && self.self_match)
    }
}

impl Plugin for InterPodAffinity {
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
        ]
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let has_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let anti_pods_exist = !snapshot.have_pods_with_required_anti_affinity.is_empty();
        if !has_terms && !anti_pods_exist {
            return (None, Status::skip());
        }
        let namespace_labels = snapshot.namespace_labels(&pod.namespace).cloned();
        let mut memos = self.memos();
        memos.stamps.refresh(&snapshot.nodes);

        let mut existing_anti = PairCounts::default();
        if anti_pods_exist {
            memos.refresh_existing(snapshot);
            let interner = label_interner();
            memos.existing.table.add_matching(
                &interner,
                pod,
                namespace_labels.as_ref(),
                |kind| i64::from(kind == Kind::RequiredAnti),
                &mut existing_anti,
            );
        }
        if !has_terms && existing_anti.is_empty() {
            return (None, Status::skip());
        }
        let (affinity, anti) =
            if has_terms { memos.required_counts(pod, snapshot) } else { Default::default() };
        drop(memos);

        let self_match = matches_all(&pod.required_affinity, pod, snapshot);
        state.write(
            PRE_FILTER_KEY,
            PreFilterState { existing_anti, affinity, anti, namespace_labels, self_match },
        );
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        s.update_with_pod(pod, added, node, snapshot, 1);
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        s.update_with_pod(pod, removed, node, snapshot, -1);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return state_missing(PRE_FILTER_KEY);
        };
        if !s.satisfies_affinity(pod, node) {
            return Status::unresolvable(ERR_AFFINITY);
        }
        if !s.satisfies_anti_affinity(pod, node) {
            return Status::unschedulable(ERR_ANTI_AFFINITY);
        }
        if !s.satisfies_existing_anti_affinity(node) {
            return Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

// ---------------------------------------------------------------------------------------
// Score

/// Score per topology pair computed in pre-score.
#[derive(Clone, Debug, Default)]
struct PreScoreState {
    topology_score: PairCounts,
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let has_constraints =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if self.args.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return Status::skip();
        }
        // Without preferred terms of its own, only pods with (anti-)affinity can score.
        if !has_constraints && snapshot.have_pods_with_affinity.is_empty() {
            return Status::skip();
        }
        let namespace_labels = snapshot.namespace_labels(&pod.namespace);
        let hard = i64::from(self.args.hard_pod_affinity_weight);
        let mut topology_score = PairCounts::default();
        let mut memos = self.memos();
        memos.stamps.refresh(&snapshot.nodes);
        if !snapshot.have_pods_with_affinity.is_empty() {
            memos.refresh_existing(snapshot);
            let interner = label_interner();
            memos.existing.table.add_matching(
                &interner,
                pod,
                namespace_labels,
                |kind| match kind {
                    Kind::RequiredAnti => 0,
                    Kind::RequiredAffinity => hard,
                    Kind::PreferredAffinity => 1,
                    Kind::PreferredAnti => -1,
                },
                &mut topology_score,
            );
        }
        if has_constraints {
            memos.preferred_counts(pod, snapshot, &mut topology_score);
        }
        drop(memos);
        // No pair scored anywhere: every node would get the same score.
        if topology_score.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState { topology_score });
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return (0, state_missing(PRE_SCORE_KEY));
        };
        (s.topology_score.sum_for_node(node), Status::success())
    }

    /// Scale to 0..=100: the lowest total (most anti-affinity) gets 0, the highest 100.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return state_missing(PRE_SCORE_KEY);
        };
        if s.topology_score.is_empty() {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
