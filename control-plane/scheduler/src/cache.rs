//! The scheduler's cache of nodes and the pods on them, fed by watches. A pod the scheduler
//! has chosen a node for is *assumed* onto it at once, so the next cycle sees its resources
//! taken without waiting for the binding's round trip; the watch later confirms it, or a
//! failed binding forgets it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::snapshot::{Listers, Snapshot};
use crate::types::{NodeInfo, PodInfo};

struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub struct Cache {
    /// Nodes by name. A node that is not (or no longer) known but has pods keeps an entry
    /// with `present = false`, so its pods are counted when it comes back.
    nodes: HashMap<String, (Arc<NodeInfo>, bool)>,
    pods: HashMap<String, PodState>,
    /// Nodes changed since the last snapshot update.
    dirty: HashSet<String>,
    images: HashMap<String, usize>,
    images_changed: bool,
    pub listers: Listers,
    generation: u64,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    fn touch(&mut self, node: &str) {
        self.dirty.insert(node.to_string());
        self.generation += 1;
    }

    fn count_images(&mut self, info: &NodeInfo, delta: isize) {
        for name in info.image_states.keys() {
            let e = self.images.entry(name.clone()).or_default();
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                self.images.remove(name);
            }
        }
        self.images_changed = true;
    }

    pub fn add_or_update_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self.nodes.remove(&name);
        let info = match old {
            Some((mut info, present)) => {
                if present {
                    let old = info.clone();
                    self.count_images(&old, -1);
                }
                let m = Arc::make_mut(&mut info);
                m.set_node(node);
                m.generation += 1;
                info
            }
            None => Arc::new(NodeInfo::new(node)),
        };
        self.count_images(&info, 1);
        self.nodes.insert(name.clone(), (info, true));
        self.touch(&name);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some((info, present)) = self.nodes.remove(name) {
            if present {
                self.count_images(&info, -1);
            }
            if !info.pods.is_empty() {
                // Pods still bound to it: keep counting them until they go.
                self.nodes.insert(name.to_string(), (info, false));
            }
        }
        self.touch(name);
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, (_, p))| *p).map(|(n, _)| n.clone()).collect()
    }

    pub fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.nodes.get(name).filter(|(_, p)| *p).map(|(n, _)| n.clone())
    }

    fn node_entry(&mut self, name: &str) -> &mut Arc<NodeInfo> {
        &mut self
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| (Arc::new(NodeInfo::new(Arc::new(ghost_node(name)))), false))
            .0
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        Arc::make_mut(self.node_entry(node)).add_pod(info.clone());
        self.pods.insert(info.uid.clone(), PodState { info, node: node.to_string(), assumed });
        self.touch(node);
    }

    fn unplace(&mut self, uid: &str) -> Option<PodState> {
        let state = self.pods.remove(uid)?;
        if let Some((info, present)) = self.nodes.get_mut(&state.node) {
            Arc::make_mut(info).remove_pod(uid);
            if !*present && info.pods.is_empty() {
                self.nodes.remove(&state.node);
            }
        }
        let node = state.node.clone();
        self.touch(&node);
        Some(state)
    }

    /// The scheduler chose `node` for the pod: count it there now.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.unplace(&pod.uid);
        self.place(pod, node, true);
    }

    /// Binding failed: take an assumed pod back off its node. A pod the watch has already
    /// confirmed stays.
    pub fn forget_pod(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.unplace(uid);
        }
    }

    /// The pod with this uid as the cache has it, and its node.
    pub fn pod(&self, uid: &str) -> Option<(Arc<PodInfo>, String)> {
        self.pods.get(uid).map(|p| (p.info.clone(), p.node.clone()))
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Is this pod (assumed or confirmed) on a node in the cache?
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// A pod the watch shows bound to a node (new, changed, or confirming an assumption).
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>) {
        if pod.node_name.is_empty() {
            return;
        }
        let node = pod.node_name.clone();
        self.unplace(&pod.uid);
        self.place(pod, &node, false);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.unplace(uid);
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Bring `snapshot` up to date: replace only the nodes changed since its last update.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        if snapshot.generation == self.generation && self.dirty.is_empty() {
            snapshot.listers = self.listers.clone();
            return;
        }
        // `upsert` and `remove` keep the snapshot's affinity lists up to date as they go.
        for name in self.dirty.drain() {
            match self.nodes.get(&name) {
                Some((info, true)) => snapshot.upsert(info.clone()),
                _ => snapshot.remove(&name),
            }
        }
        if self.images_changed {
            snapshot.image_nodes = Arc::new(self.images.clone());
            self.images_changed = false;
        }
        snapshot.listers = self.listers.clone();
        snapshot.generation = self.generation;
    }
}

fn ghost_node(name: &str) -> Node {
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::*;

    #[test]
    fn cache_should_count_assumed_pods_until_forgotten() {
        let mut cache = Cache::new();
        cache.add_or_update_node(Arc::new(node("n1", &[("cpu", "4")])));
        let p = Arc::new(pod_info(pod("p", &[("cpu", "1")])));
        cache.assume_pod(p.clone(), "n1");
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);
        assert!(cache.is_assumed("uid-p"));
        cache.forget_pod("uid-p");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn cache_should_keep_confirmed_pod_when_binding_result_arrives_late() {
        let mut cache = Cache::new();
        cache.add_or_update_node(Arc::new(node("n1", &[("cpu", "4")])));
        let p = pod_info(pod("p", &[("cpu", "1")]));
        cache.assume_pod(Arc::new(p.clone()), "n1");
        let mut bound = (*p.pod).clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        cache.add_or_update_pod(Arc::new(pod_info(bound)));
        cache.forget_pod("uid-p");
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn cache_should_count_pods_of_a_node_seen_later() {
        let mut cache = Cache::new();
        let mut p = pod("p", &[("cpu", "1")]);
        p.spec.as_mut().unwrap().node_name = Some("late".into());
        cache.add_or_update_pod(Arc::new(pod_info(p)));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert!(snap.get("late").is_none(), "a node not seen yet is not schedulable");
        cache.add_or_update_node(Arc::new(node("late", &[("cpu", "2")])));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("late").unwrap().requested.milli_cpu, 1000);
    }
}
