//! A consistent view of the cluster for one scheduling cycle: every node with its pods
//! (`NodeInfo`s shared with the cache until they change) and the other objects plugins
//! read. The cache brings a snapshot up to date by replacing only the nodes that changed.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::types::{Labels, NodeInfo, PodInfo};

/// Objects other than nodes and pods that plugins read, by name (`namespace/name` for
/// namespaced kinds). Each map is replaced as a whole when it changes, so a snapshot
/// shares them cheaply.
#[derive(Clone, Default)]
pub struct Listers {
    /// Namespace name to its labels (namespaceSelector in pod affinity).
    pub namespaces: Arc<HashMap<String, Labels>>,
    pub persistent_volumes: Arc<HashMap<String, Arc<PersistentVolume>>>,
    /// `namespace/name`.
    pub persistent_volume_claims: Arc<HashMap<String, Arc<PersistentVolumeClaim>>>,
    pub storage_classes: Arc<HashMap<String, Arc<StorageClass>>>,
    pub runtime_classes: Arc<HashMap<String, Arc<RuntimeClass>>>,
    /// `namespace/name`.
    pub pdbs: Arc<HashMap<String, Arc<PodDisruptionBudget>>>,
}

#[derive(Clone, Default)]
pub struct Snapshot {
    /// Every node, in a stable order (the order nodes were first seen).
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Nodes with at least one pod that has (anti-)affinity terms, in no particular order.
    pub have_pods_with_affinity: Vec<Arc<NodeInfo>>,
    /// Nodes with at least one pod that has required anti-affinity terms, in no particular
    /// order.
    pub have_pods_with_required_anti_affinity: Vec<Arc<NodeInfo>>,
    /// Where each node is in the two lists above, so a changed node is updated in place
    /// instead of both lists being rebuilt from every node.
    affinity_pos: HashMap<String, usize>,
    anti_affinity_pos: HashMap<String, usize>,
    /// Image name to the number of nodes that have it (ImageLocality's spread).
    pub image_nodes: Arc<HashMap<String, usize>>,
    pub listers: Listers,
    /// The cache generation this snapshot reflects.
    pub generation: u64,
}

impl Snapshot {
    /// A snapshot of exactly these nodes (tests and the benchmark).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Self {
        let mut s = Snapshot::default();
        for n in nodes {
            s.upsert(Arc::new(n));
        }
        let mut images: HashMap<String, usize> = HashMap::new();
        for n in &s.nodes {
            for name in n.image_states.keys() {
                *images.entry(name.clone()).or_default() += 1;
            }
        }
        s.image_nodes = Arc::new(images);
        s
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The node's position in `nodes`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Labels of a namespace, if known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.listers.namespaces.get(namespace)
    }

    /// Every pod on every node (assigned and assumed).
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.nodes.iter().flat_map(|n| n.pods.iter())
    }

    /// Add or replace a node, keeping the derived lists up to date.
    pub(crate) fn upsert(&mut self, node: Arc<NodeInfo>) {
        self.update_derived(&node.name, Some(&node));
        match self.index.get(&node.name) {
            Some(&i) => self.nodes[i] = node,
            None => {
                self.index.insert(node.name.clone(), self.nodes.len());
                self.nodes.push(node);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.update_derived(name, None);
        let Some(i) = self.index.remove(name) else { return };
        self.nodes.remove(i);
        for (pos, n) in self.nodes.iter().enumerate().skip(i) {
            self.index.insert(n.name.clone(), pos);
        }
    }

    /// Put `node` (or, with `None`, the node called `name`) in or out of the derived lists.
    fn update_derived(&mut self, name: &str, node: Option<&Arc<NodeInfo>>) {
        let with_affinity = node.filter(|n| !n.pods_with_affinity.is_empty());
        set_member(&mut self.have_pods_with_affinity, &mut self.affinity_pos, name, with_affinity);
        let with_anti = node.filter(|n| !n.pods_with_required_anti_affinity.is_empty());
        set_member(
            &mut self.have_pods_with_required_anti_affinity,
            &mut self.anti_affinity_pos,
            name,
            with_anti,
        );
    }

    /// Recompute the lists derived from the nodes (after tests change `nodes` directly).
    #[cfg(test)]
    pub(crate) fn refresh_derived(&mut self) {
        self.have_pods_with_affinity.clear();
        self.affinity_pos.clear();
        self.have_pods_with_required_anti_affinity.clear();
        self.anti_affinity_pos.clear();
        for node in self.nodes.clone() {
            self.update_derived(&node.name, Some(&node));
        }
    }
}

/// Make `list` hold `node` (replacing the entry named `name`), or no entry named `name`
/// when `node` is `None`. `pos` maps names to their place in `list`.
fn set_member(
    list: &mut Vec<Arc<NodeInfo>>,
    pos: &mut HashMap<String, usize>,
    name: &str,
    node: Option<&Arc<NodeInfo>>,
) {
    match (pos.get(name).copied(), node) {
        (Some(i), Some(node)) => list[i] = node.clone(),
        (None, Some(node)) => {
            pos.insert(name.to_string(), list.len());
            list.push(node.clone());
        }
        (Some(i), None) => {
            pos.remove(name);
            list.swap_remove(i);
            if let Some(moved) = list.get(i) {
                pos.insert(moved.name.clone(), i);
            }
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::topology::testing::{is_in, node, pod};
    use crate::types::testing::node_info;
    use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity};

    /// A pod with one required anti-affinity term (so it also counts as having affinity).
    fn anti_pod(name: &str, node: &str) -> k8s_openapi::api::core::v1::Pod {
        let mut p = pod(name, &[("app", "a")], node);
        if let Some(spec) = p.spec.as_mut() {
            spec.affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(is_in("app", &["a"])),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        p
    }

    fn names(list: &[Arc<NodeInfo>]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|n| n.name.clone()).collect();
        v.sort();
        v
    }

    /// The lists as a full recompute over every node gives them.
    fn expected(s: &Snapshot) -> (Vec<String>, Vec<String>) {
        let mut full = s.clone();
        full.refresh_derived();
        (names(&full.have_pods_with_affinity), names(&full.have_pods_with_required_anti_affinity))
    }

    #[test]
    fn snapshot_should_keep_affinity_lists_up_to_date_through_upserts_and_removes() {
        let mut s = Snapshot::default();
        for i in 0..4 {
            s.upsert(Arc::new(node_info(node(&format!("n{i}"), &[]), vec![])));
        }
        assert!(s.have_pods_with_affinity.is_empty());

        // Pods with anti-affinity land on n1 and n3.
        s.upsert(Arc::new(node_info(node("n1", &[]), vec![anti_pod("a", "n1")])));
        s.upsert(Arc::new(node_info(node("n3", &[]), vec![anti_pod("b", "n3")])));
        assert_eq!(names(&s.have_pods_with_affinity), vec!["n1", "n3"]);
        assert_eq!(expected(&s), (vec!["n1".into(), "n3".into()], vec!["n1".into(), "n3".into()]));

        // n1 changes but keeps its pod: the list holds the new NodeInfo.
        let n1 =
            Arc::new(node_info(node("n1", &[]), vec![anti_pod("a", "n1"), pod("c", &[], "n1")]));
        s.upsert(n1.clone());
        let held = s.have_pods_with_affinity.iter().find(|n| n.name == "n1").cloned();
        assert!(held.is_some_and(|h| Arc::ptr_eq(&h, &n1)), "the list holds the latest n1");

        // n1 loses its pod; n3 is removed: both leave the lists.
        s.upsert(Arc::new(node_info(node("n1", &[]), vec![pod("c", &[], "n1")])));
        s.remove("n3");
        assert!(s.have_pods_with_affinity.is_empty());
        assert!(s.have_pods_with_required_anti_affinity.is_empty());

        // Several in and out, in any order, agree with a full recompute.
        for (i, with) in [(0, true), (2, true), (1, true), (0, false), (2, false), (2, true)] {
            let name = format!("n{i}");
            let pods = if with { vec![anti_pod(&format!("p{i}"), &name)] } else { vec![] };
            s.upsert(Arc::new(node_info(node(&name, &[]), pods)));
            let (affinity, anti) = expected(&s);
            assert_eq!(names(&s.have_pods_with_affinity), affinity);
            assert_eq!(names(&s.have_pods_with_required_anti_affinity), anti);
        }
        assert_eq!(names(&s.have_pods_with_affinity), vec!["n1", "n2"]);
    }

    #[test]
    fn snapshot_should_find_node_positions_after_a_remove() {
        let mut s = Snapshot::default();
        for i in 0..3 {
            s.upsert(Arc::new(node_info(node(&format!("n{i}"), &[]), vec![])));
        }
        s.remove("n0");
        assert_eq!(s.position("n1"), Some(0));
        assert_eq!(s.position("n2"), Some(1));
        assert_eq!(s.position("n0"), None);
    }
}
