//! Counting pods per topology domain (a `(key, value)` pair of node labels) cheaply, for the
//! plugins that do it every cycle (InterPodAffinity, PodTopologySpread).
//!
//! Between two scheduling cycles usually one node changes: the one the last pod was assumed
//! onto. So instead of walking every pod of every node per pod, a plugin keeps each node's
//! contribution to its counts in a [`NodeMemo`] and recomputes only the nodes whose
//! `NodeInfo` changed, which [`NodeStamps`] tells from the snapshot's pointers alone.
//! Label values get dense ids ([`ValueIds`]), so the counts a cycle hands to its filter are
//! a `Vec` to copy, not a map of strings. The ids are process-wide ([`LABEL_IDS`]) and every
//! `NodeInfo` carries its labels' ids, so a filter finds a node's domain by comparing
//! integers instead of reading label strings (a cache miss per string on a large cluster).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use crate::types::{LabelIds, Labels, NodeInfo};

/// A fast, unkeyed hash (the multiply-rotate step of rustc's FxHasher) for the maps a
/// filter reads once per node: topology values, which come from node labels, a few tens
/// of bytes each. SipHash's DoS resistance is not needed for keys only node objects
/// (cluster admins) choose, and it cost a third of a filter's time.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Dense ids for the values of one topology key. Append-only; clones share the maps, so
/// the cycle states that hold one stay valid while the plugin keeps adding values.
#[derive(Clone, Debug, Default)]
pub struct ValueIds {
    base: Arc<FxHashMap<String, u32>>,
    /// Values added since `base` was last rebuilt. Kept small so that adding a value while
    /// a cycle state shares the maps copies only this one.
    recent: Arc<FxHashMap<String, u32>>,
    len: u32,
}

/// How many values `recent` takes before they move into a new `base`.
const RECENT_MAX: usize = 32;

impl ValueIds {
    pub fn get(&self, value: &str) -> Option<u32> {
        self.base.get(value).or_else(|| self.recent.get(value)).copied()
    }

    /// The id of `value`, adding it if new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(id) = self.get(value) {
            return id;
        }
        let id = self.len;
        self.len += 1;
        Arc::make_mut(&mut self.recent).insert(value.to_string(), id);
        if self.recent.len() >= RECENT_MAX {
            let mut base = (*self.base).clone();
            base.extend(self.recent.iter().map(|(k, v)| (k.clone(), *v)));
            self.base = Arc::new(base);
            self.recent = Arc::default();
        }
        id
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Ids for topology keys and, per key, for its values.
#[derive(Debug, Default)]
pub struct Interner {
    keys: Vec<(String, ValueIds)>,
    index: FxHashMap<String, u32>,
}

impl Interner {
    pub fn key_id(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.index.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push((key.to_string(), ValueIds::default()));
        self.index.insert(key.to_string(), id);
        id
    }

    pub fn value_id(&mut self, key: u32, value: &str) -> u32 {
        self.keys[key as usize].1.intern(value)
    }

    pub fn key(&self, key: u32) -> &str {
        &self.keys[key as usize].0
    }

    pub fn values(&self, key: u32) -> &ValueIds {
        &self.keys[key as usize].1
    }
}

/// The ids of every node's labels, shared by the whole process: a node interns its labels
/// once when its object changes, and the plugins that count by topology use the same ids, so
/// a filter finds a node's domain by comparing integers. Values are never forgotten: the
/// table grows with the distinct labels of the nodes seen (a few per node).
pub static LABEL_IDS: LazyLock<Mutex<Interner>> = LazyLock::new(Mutex::default);

/// [`LABEL_IDS`], locked.
pub fn label_interner() -> MutexGuard<'static, Interner> {
    LABEL_IDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `labels` as ids of [`LABEL_IDS`], sorted by key id.
pub fn label_ids_of(labels: &Labels) -> LabelIds {
    let mut interner = label_interner();
    let mut ids: LabelIds = labels
        .iter()
        .map(|(k, v)| {
            let key = interner.key_id(k);
            (key, interner.value_id(key, v))
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Which `NodeInfo` sits at each position of the snapshot's node list, as a stamp that
/// changes whenever that `NodeInfo` does.
///
/// A `NodeInfo` is never changed in place once a snapshot shares it (the cache copies on
/// write), so the same pointer means the same contents, as long as the allocation cannot be
/// freed and reused: the `Weak` held per position sees to that.
#[derive(Default)]
pub struct NodeStamps {
    ptrs: Vec<usize>,
    held: Vec<Weak<NodeInfo>>,
    stamps: Vec<u64>,
    /// 0 is never a stamp, so a fresh memo slot always differs.
    last: u64,
}

impl NodeStamps {
    /// Bring the stamps up to date with `nodes`. O(nodes), comparing pointers only.
    pub fn refresh(&mut self, nodes: &[Arc<NodeInfo>]) {
        self.ptrs.truncate(nodes.len());
        self.held.truncate(nodes.len());
        self.stamps.truncate(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            let ptr = Arc::as_ptr(node) as usize;
            if i < self.ptrs.len() {
                if self.ptrs[i] == ptr {
                    continue;
                }
                self.last += 1;
                self.ptrs[i] = ptr;
                self.held[i] = Arc::downgrade(node);
                self.stamps[i] = self.last;
            } else {
                self.last += 1;
                self.ptrs.push(ptr);
                self.held.push(Arc::downgrade(node));
                self.stamps.push(self.last);
            }
        }
    }

    pub fn stamps(&self) -> &[u64] {
        &self.stamps
    }
}

/// One value per node position (a node's contribution to some counts), recomputed only
/// where the node's stamp changed since the last refresh.
pub struct NodeMemo<T> {
    stamps: Vec<u64>,
    values: Vec<T>,
}

impl<T> Default for NodeMemo<T> {
    fn default() -> Self {
        NodeMemo { stamps: Vec::new(), values: Vec::new() }
    }
}

impl<T: Default> NodeMemo<T> {
    /// Recompute the contributions of changed nodes. `fold(ctx, value, -1)` retracts an old
    /// contribution from the caller's totals, `fold(ctx, value, 1)` adds a new one, so the
    /// totals always equal the sum over current nodes. `stamps` must come from a
    /// `NodeStamps` refreshed with the same `nodes`. `ctx` is what both closures mutate.
    pub fn refresh<C: ?Sized>(
        &mut self,
        stamps: &[u64],
        nodes: &[Arc<NodeInfo>],
        ctx: &mut C,
        mut compute: impl FnMut(&mut C, &NodeInfo) -> T,
        mut fold: impl FnMut(&mut C, &T, i64),
    ) {
        while self.values.len() > nodes.len() {
            if let Some(old) = self.values.pop() {
                fold(ctx, &old, -1);
            }
            self.stamps.pop();
        }
        for (i, node) in nodes.iter().enumerate() {
            if i < self.stamps.len() {
                if self.stamps[i] == stamps[i] {
                    continue;
                }
                let old = std::mem::take(&mut self.values[i]);
                fold(ctx, &old, -1);
            } else {
                self.stamps.push(0);
                self.values.push(T::default());
            }
            let new = compute(ctx, node);
            fold(ctx, &new, 1);
            self.values[i] = new;
            self.stamps[i] = stamps[i];
        }
    }
}

/// Memos for the pod "shapes" a plugin has seen (a string naming everything a node's
/// contribution depends on), keeping the most recently used ones.
pub struct ShapeCache<V> {
    entries: HashMap<String, (V, u64)>,
    tick: u64,
    capacity: usize,
}

impl<V> ShapeCache<V> {
    pub fn new(capacity: usize) -> Self {
        ShapeCache { entries: HashMap::new(), tick: 0, capacity: capacity.max(1) }
    }

    pub fn get_or_insert_with(&mut self, key: String, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let entry = self.entries.entry(key).or_insert_with(|| (make(), tick));
        entry.1 = tick;
        &mut entry.0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Sums per topology pair by interned ids: `keys[key][value]`.
#[derive(Clone, Debug, Default)]
pub struct IdCounts {
    keys: Vec<Vec<i64>>,
    /// Non-zero entries, to tell "all zero" without a scan.
    nonzero: usize,
}

impl IdCounts {
    pub fn add(&mut self, key: u32, value: u32, n: i64) {
        if n == 0 {
            return;
        }
        let (key, value) = (key as usize, value as usize);
        if self.keys.len() <= key {
            self.keys.resize_with(key + 1, Vec::new);
        }
        let values = &mut self.keys[key];
        if values.len() <= value {
            values.resize(value + 1, 0);
        }
        let before = values[value];
        values[value] += n;
        match (before == 0, values[value] == 0) {
            (true, false) => self.nonzero += 1,
            (false, true) => self.nonzero -= 1,
            _ => {}
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nonzero == 0
    }

    /// Add `factor` times these counts into `out`, naming keys and values through `interner`.
    pub fn add_into(&self, interner: &Interner, factor: i64, out: &mut PairCounts) {
        for (key, values) in self.keys.iter().enumerate() {
            if values.iter().all(|v| *v == 0) {
                continue;
            }
            let key = key as u32;
            out.entry(interner.key(key), key).add_all(values, factor);
        }
    }
}

/// Counts per domain of one topology key, by value id of [`LABEL_IDS`].
#[derive(Clone, Debug, Default)]
pub struct DomainCounts {
    pub key: String,
    /// The key's id in [`LABEL_IDS`].
    pub key_id: u32,
    counts: Vec<i64>,
    nonzero: usize,
}

impl DomainCounts {
    pub fn new(key: &str, key_id: u32) -> Self {
        DomainCounts { key: key.to_string(), key_id, counts: Vec::new(), nonzero: 0 }
    }

    /// The count for the node's value of this key; `None` when the node lacks the label.
    pub fn for_node(&self, node: &NodeInfo) -> Option<i64> {
        node.label_id(self.key_id).map(|v| self.counts.get(v as usize).copied().unwrap_or(0))
    }

    fn add_id(&mut self, id: usize, n: i64) {
        if self.counts.len() <= id {
            self.counts.resize(id + 1, 0);
        }
        let before = self.counts[id];
        self.counts[id] += n;
        match (before == 0, self.counts[id] == 0) {
            (true, false) => self.nonzero += 1,
            (false, true) => self.nonzero -= 1,
            _ => {}
        }
    }

    fn add_all(&mut self, values: &[i64], factor: i64) {
        if self.counts.len() < values.len() {
            self.counts.resize(values.len(), 0);
        }
        for (c, v) in self.counts.iter_mut().zip(values) {
            *c += v * factor;
        }
        self.nonzero = self.counts.iter().filter(|c| **c != 0).count();
    }

    pub fn is_zero(&self) -> bool {
        self.nonzero == 0
    }
}

/// Counts per topology pair, grouped by key (there are few keys).
#[derive(Clone, Debug, Default)]
pub struct PairCounts {
    pub keys: Vec<DomainCounts>,
}

impl PairCounts {
    pub fn key(&self, key: &str) -> Option<&DomainCounts> {
        self.keys.iter().find(|d| d.key == key)
    }

    fn entry(&mut self, key: &str, key_id: u32) -> &mut DomainCounts {
        match self.keys.iter().position(|d| d.key_id == key_id) {
            Some(i) => &mut self.keys[i],
            None => {
                self.keys.push(DomainCounts::new(key, key_id));
                self.keys.last_mut().expect("just pushed")
            }
        }
    }

    pub fn add(&mut self, key: &str, value: &str, n: i64) {
        let (key_id, value) = {
            let mut interner = label_interner();
            let key_id = interner.key_id(key);
            (key_id, interner.value_id(key_id, value))
        };
        self.entry(key, key_id).add_id(value as usize, n);
    }

    /// The count for the node's value of `key`; `None` when the node lacks the label.
    pub fn for_node(&self, key: &str, node: &NodeInfo) -> Option<i64> {
        match self.key(key) {
            Some(d) => d.for_node(node),
            None => node.labels.contains_key(key).then_some(0),
        }
    }

    /// Are all counts zero (Kubernetes' empty map)?
    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(DomainCounts::is_zero)
    }

    /// Does any key have a non-zero count for the node's value of it?
    pub fn any_for_node(&self, node: &NodeInfo, mut pred: impl FnMut(i64) -> bool) -> bool {
        self.keys.iter().any(|d| !d.is_zero() && d.for_node(node).is_some_and(&mut pred))
    }

    /// The sum over keys of each key's count for the node's value of it.
    pub fn sum_for_node(&self, node: &NodeInfo) -> i64 {
        self.keys.iter().filter(|d| !d.is_zero()).filter_map(|d| d.for_node(node)).sum()
    }
}

#[cfg(test)]
impl ValueIds {
    /// Every value with its id.
    pub fn entries(&self) -> Vec<(String, u32)> {
        self.base.iter().chain(self.recent.iter()).map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
impl DomainCounts {
    /// Non-zero counts by value.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, i64> {
        label_interner()
            .values(self.key_id)
            .entries()
            .into_iter()
            .filter_map(|(v, id)| {
                self.counts.get(id as usize).filter(|c| **c != 0).map(|c| (v, *c))
            })
            .collect()
    }
}

#[cfg(test)]
impl PairCounts {
    /// Non-zero counts by `(key, value)`.
    pub fn to_map(&self) -> std::collections::BTreeMap<(String, String), i64> {
        self.keys
            .iter()
            .flat_map(|d| d.to_map().into_iter().map(|(v, c)| ((d.key.clone(), v), c)))
            .collect()
    }
}

/// Builders for the tests of the plugins that count by topology.
#[cfg(test)]
pub mod testing {
    use std::collections::HashMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    use crate::snapshot::Snapshot;
    use crate::types::testing::{node as base_node, pod as base_pod};
    use crate::types::{Labels, NodeInfo, PodInfo};

    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A Ready node with these labels.
    pub fn node(name: &str, pairs: &[(&str, &str)]) -> Node {
        let mut n = base_node(name, &[("cpu", "4"), ("pods", "110")]);
        n.metadata.labels = Some(labels(pairs));
        n
    }

    /// A pod in `default` with these labels, bound to `node` ("" for none).
    pub fn pod(name: &str, pairs: &[(&str, &str)], node: &str) -> Pod {
        let mut p = base_pod(name, &[]);
        p.metadata.labels = Some(labels(pairs));
        if !node.is_empty()
            && let Some(spec) = p.spec.as_mut()
        {
            spec.node_name = Some(node.to_string());
        }
        p
    }

    pub fn in_namespace(mut p: Pod, ns: &str) -> Pod {
        p.metadata.namespace = Some(ns.to_string());
        p
    }

    pub fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        p
    }

    pub fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    pub fn selector(exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector { match_expressions: Some(exprs), match_labels: None }
    }

    pub fn exists(key: &str) -> LabelSelector {
        selector(vec![expr(key, "Exists", &[])])
    }

    pub fn is_in(key: &str, values: &[&str]) -> LabelSelector {
        selector(vec![expr(key, "In", values)])
    }

    pub fn not_in(key: &str, values: &[&str]) -> LabelSelector {
        selector(vec![expr(key, "NotIn", values)])
    }

    /// Namespaces of Kubernetes' interpodaffinity tests, with their labels.
    pub fn namespaces() -> HashMap<String, Labels> {
        [
            ("subteam1.team1", "team1"),
            ("subteam2.team1", "team1"),
            ("subteam1.team2", "team2"),
            ("subteam2.team2", "team2"),
        ]
        .into_iter()
        .map(|(ns, team)| (ns.to_string(), labels(&[("team", team)])))
        .chain(
            ["default", "ns", "NS1", "NS2"].into_iter().map(|ns| (ns.to_string(), Labels::new())),
        )
        .collect()
    }

    /// A snapshot of these nodes with the pods bound to them (pods of other nodes are
    /// dropped, as they would be for nodes the scheduler does not know).
    pub fn snapshot(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut infos: Vec<NodeInfo> =
            nodes.into_iter().map(|n| NodeInfo::new(Arc::new(n))).collect();
        for p in pods {
            let info = PodInfo::new(Arc::new(p));
            if let Some(n) = infos.iter_mut().find(|n| n.name == info.node_name) {
                n.add_pod(Arc::new(info));
            }
        }
        let mut s = Snapshot::from_nodes(infos);
        s.listers.namespaces = Arc::new(namespaces());
        s
    }

    /// `snapshot` with `pod` added to its node, the way the cache replaces a changed node.
    pub fn with_pod(s: &Snapshot, p: Pod) -> Snapshot {
        let info = Arc::new(PodInfo::new(Arc::new(p)));
        let mut out = s.clone();
        for n in out.nodes.iter_mut().filter(|n| n.name == info.node_name) {
            Arc::make_mut(n).add_pod(info.clone());
        }
        out.refresh_derived();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{node, node_info};

    fn labelled(name: &str, labels: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Node {
        let mut n = node(name, &[("cpu", "1")]);
        n.metadata.labels =
            Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        n
    }

    #[test]
    fn node_label_ids_should_be_shared_across_nodes_and_follow_relabels() {
        let zone = "label-ids-test/zone";
        let a = node_info(labelled("a", &[(zone, "z1"), ("label-ids-test/rack", "r1")]), vec![]);
        let b = node_info(labelled("b", &[(zone, "z1")]), vec![]);
        let mut c = node_info(labelled("c", &[(zone, "z2")]), vec![]);
        let key = label_interner().key_id(zone);
        let (z1, z2) = (a.label_id(key).expect("a"), c.label_id(key).expect("c"));
        assert_eq!(b.label_id(key), Some(z1), "same value, same id");
        assert_ne!(z1, z2);
        assert!(a.label_ids.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", a.label_ids);
        assert_eq!(b.label_id(label_interner().key_id("label-ids-test/rack")), None);
        // A relabelled node moves to the other domain, and PairCounts follow the ids.
        c.set_node(Arc::new(labelled("c", &[(zone, "z1")])));
        assert_eq!(c.label_id(key), Some(z1));
        let mut counts = PairCounts::default();
        counts.add(zone, "z1", 2);
        assert_eq!(counts.for_node(zone, &c), Some(2));
        assert_eq!(
            counts.for_node(zone, &node_info(labelled("d", &[(zone, "z3")]), vec![])),
            Some(0)
        );
        assert_eq!(counts.for_node(zone, &node_info(labelled("e", &[]), vec![])), None);
        assert!(counts.any_for_node(&b, |n| n == 2));
        assert_eq!(counts.sum_for_node(&a), 2);
    }

    #[test]
    fn value_ids_should_keep_ids_across_rebuilds_and_clones() {
        let mut ids = ValueIds::default();
        let first: Vec<u32> = (0..100).map(|i| ids.intern(&format!("v{i}"))).collect();
        let shared = ids.clone();
        let more: Vec<u32> = (100..150).map(|i| ids.intern(&format!("v{i}"))).collect();
        assert_eq!(first, (0..100).collect::<Vec<u32>>());
        assert_eq!(more, (100..150).collect::<Vec<u32>>());
        assert_eq!(ids.get("v42"), Some(42));
        assert_eq!(ids.get("v120"), Some(120));
        assert_eq!(shared.get("v99"), Some(99));
        assert_eq!(shared.get("v120"), None, "a clone does not see later values");
        assert_eq!(ids.len(), 150);
    }

    #[test]
    fn node_memo_should_recompute_only_changed_nodes() {
        let nodes: Vec<Arc<NodeInfo>> =
            (0..4).map(|i| Arc::new(node_info(node(&format!("n{i}"), &[]), vec![]))).collect();
        let mut stamps = NodeStamps::default();
        let mut memo = NodeMemo::<i64>::default();
        let mut total = 0;
        let mut computed = Vec::new();
        let mut run = |nodes: &[Arc<NodeInfo>], computed: &mut Vec<String>, total: &mut i64| {
            stamps.refresh(nodes);
            memo.refresh(
                stamps.stamps(),
                nodes,
                total,
                |_, n| {
                    computed.push(n.name.clone());
                    n.name[1..].parse::<i64>().unwrap_or(0) + 1
                },
                |total, v, sign| *total += v * sign,
            );
        };
        run(&nodes, &mut computed, &mut total);
        assert_eq!(total, 1 + 2 + 3 + 4);
        assert_eq!(computed.len(), 4);

        computed.clear();
        let mut changed = nodes.clone();
        changed[2] = Arc::new((*nodes[2]).clone());
        run(&changed, &mut computed, &mut total);
        assert_eq!(computed, vec!["n2".to_string()]);
        assert_eq!(total, 10);

        computed.clear();
        changed.remove(0);
        run(&changed, &mut computed, &mut total);
        assert_eq!(total, 2 + 3 + 4, "a removed node's contribution is retracted");
    }

    #[test]
    fn shape_cache_should_evict_least_recently_used() {
        let mut cache = ShapeCache::new(2);
        *cache.get_or_insert_with("a".into(), || 1) += 0;
        cache.get_or_insert_with("b".into(), || 2);
        cache.get_or_insert_with("a".into(), || 0);
        cache.get_or_insert_with("c".into(), || 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(*cache.get_or_insert_with("a".into(), || 9), 1, "a was used last");
        assert_eq!(*cache.get_or_insert_with("b".into(), || 9), 9, "b was evicted");
    }
}
