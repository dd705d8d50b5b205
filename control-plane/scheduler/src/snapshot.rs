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
    /// Nodes with at least one pod that has (anti-)affinity terms.
    pub have_pods_with_affinity: Vec<Arc<NodeInfo>>,
    /// Nodes with at least one pod that has required anti-affinity terms.
    pub have_pods_with_required_anti_affinity: Vec<Arc<NodeInfo>>,
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
        s.refresh_derived();
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

    pub(crate) fn upsert(&mut self, node: Arc<NodeInfo>) {
        match self.index.get(&node.name) {
            Some(&i) => self.nodes[i] = node,
            None => {
                self.index.insert(node.name.clone(), self.nodes.len());
                self.nodes.push(node);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        self.nodes.remove(i);
        for (pos, n) in self.nodes.iter().enumerate().skip(i) {
            self.index.insert(n.name.clone(), pos);
        }
    }

    /// Recompute the lists derived from the nodes.
    pub(crate) fn refresh_derived(&mut self) {
        self.have_pods_with_affinity =
            self.nodes.iter().filter(|n| !n.pods_with_affinity.is_empty()).cloned().collect();
        self.have_pods_with_required_anti_affinity = self
            .nodes
            .iter()
            .filter(|n| !n.pods_with_required_anti_affinity.is_empty())
            .cloned()
            .collect();
    }
}
