//! What the scheduler knows about pods and nodes, computed once when an object arrives so a
//! scheduling cycle only does arithmetic: resource requests, host ports, affinity terms,
//! tolerations and taints (`PodInfo`), and a node with the pods on it (`NodeInfo`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

pub type Labels = BTreeMap<String, String>;

// Label selectors, node selector terms, tolerations and quantities: one copy, shared with the
// controllers and the node.
pub use skiff_helpers::labels::selector_matches;
pub use skiff_helpers::node_selector::term_matches as node_selector_term_matches;
pub use skiff_helpers::quantity::{milli_value, value};
pub use skiff_helpers::taints::{tolerated_by, tolerates};

/// Kubernetes' default requests used for scoring a container that requests nothing
/// (`DefaultMilliCPURequest`, `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// An amount of every resource: CPU in millicores, the rest in base units (bytes, counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources (`example.com/gpu`), hugepages and anything else by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// From a requests/limits/allocatable map.
    pub fn from_map(map: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resource::default();
        for (name, q) in map.into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            CPU => self.milli_cpu = milli_value(&q.0).unwrap_or(0),
            MEMORY => self.memory = value(&q.0).unwrap_or(0),
            EPHEMERAL_STORAGE => self.ephemeral_storage = value(&q.0).unwrap_or(0),
            PODS => self.allowed_pod_number = value(&q.0).unwrap_or(0),
            other if is_scalar_resource(other) => {
                self.scalar.insert(other.to_string(), value(&q.0).unwrap_or(0));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Element-wise maximum (an init container's request against the running total).
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of one resource by its Kubernetes name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Extended resources and other domain-qualified names (`example.com/gpu`,
/// `kubernetes.io/batch-slots`), hugepages and attachable volumes are counted by the
/// scheduler (Kubernetes' `IsScalarResourceName`); unknown plain names are not.
pub fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || name.contains('/')
        || name.starts_with("requests.")
}

/// A host port a pod claims: (host IP, protocol, port). An empty or `0.0.0.0` IP is every
/// address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Kubernetes' `HostPortInfo.CheckConflict`: the same protocol and port on the same IP,
    /// or either side on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// A pod (anti-)affinity term with its namespaces resolved: the pod's own namespace when
/// the term names none and has no namespace selector.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    /// `None`: only `namespaces` count; `Some(empty selector)`: every namespace.
    pub namespace_selector: Option<LabelSelector>,
    /// `None` (no label selector written) matches no pod; an empty selector matches all.
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    pub fn new(term: &PodAffinityTerm, pod_namespace: &str, pod_labels: &Labels) -> Self {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let namespace_selector = term.namespace_selector.clone();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(pod_namespace.to_string());
        }
        // matchLabelKeys / mismatchLabelKeys become In / NotIn on the pod's own values.
        let selector = term.label_selector.clone().map(|mut selector| {
            let mut exprs = selector.match_expressions.take().unwrap_or_default();
            for (keys, op) in [(&term.match_label_keys, "In"), (&term.mismatch_label_keys, "NotIn")]
            {
                for key in keys.iter().flatten() {
                    if let Some(v) = pod_labels.get(key) {
                        exprs.push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: op.into(),
                            values: Some(vec![v.clone()]),
                        });
                    }
                }
            }
            selector.match_expressions = (!exprs.is_empty()).then_some(exprs);
            selector
        });
        AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Does `pod` (in a namespace with `ns_labels`) match this term? A term without a label
    /// selector matches no pod, as in Kubernetes.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|sel| selector_matches(sel, ns_labels.unwrap_or(&Labels::new())));
        ns_ok && self.selector.as_ref().is_some_and(|sel| selector_matches(sel, &pod.labels))
    }
}

#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub weight: i32,
    pub term: AffinityTerm,
}

/// A pod as the scheduler sees it. Built once per pod version (`PodInfo::new`).
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// `spec.nodeName`, empty when unassigned.
    pub node_name: String,
    pub scheduler_name: String,
    pub priority: i32,
    /// Effective requests: max(sum of containers, each init container) + sidecars + overhead.
    pub requests: Resource,
    /// The same with Kubernetes' defaults (100m CPU, 200 MiB) for containers that request
    /// nothing, used only for scoring.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    pub tolerations: Vec<Toleration>,
    /// Every container image, for ImageLocality.
    pub images: Vec<String>,
    /// Claims the pod mounts (`persistentVolumeClaim.claimName`, and generic ephemeral
    /// volumes as `<pod>-<volume>`).
    pub claims: Vec<String>,
    pub terminating: bool,
}

fn container_requests(c: &Container) -> Resource {
    Resource::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()).or_else(|| {
        // Requests default to limits when only limits are set.
        c.resources.as_ref().and_then(|r| r.limits.as_ref())
    }))
}

fn container_non_zero(c: &Container) -> (i64, i64) {
    let r = container_requests(c);
    let cpu = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref().or(r.limits.as_ref()))
        .is_some_and(|m| m.contains_key(CPU));
    let mem = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref().or(r.limits.as_ref()))
        .is_some_and(|m| m.contains_key(MEMORY));
    (
        if cpu { r.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST },
        if mem { r.memory } else { DEFAULT_MEMORY_REQUEST },
    )
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();

        // Kubernetes' PodRequests: regular containers summed; restartable init containers
        // (sidecars) added to both the running sum and each later init container's peak;
        // the result is the max of the running sum and every init container's peak.
        let mut requests = Resource::default();
        let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
        for c in &spec.containers {
            requests.add(&container_requests(c));
            let (a, b) = container_non_zero(c);
            nz_cpu += a;
            nz_mem += b;
        }
        let mut sidecars = Resource::default();
        let mut init_peak = Resource::default();
        let (mut init_nz_cpu, mut init_nz_mem) = (0i64, 0i64);
        for c in spec.init_containers.iter().flatten() {
            let r = container_requests(c);
            let (a, b) = container_non_zero(c);
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&r);
                requests.add(&r);
                nz_cpu += a;
                nz_mem += b;
                let mut peak = sidecars.clone();
                peak.set_max(&init_peak);
                init_peak = peak;
            } else {
                let mut peak = sidecars.clone();
                peak.add(&r);
                init_peak.set_max(&peak);
                init_nz_cpu = init_nz_cpu.max(a);
                init_nz_mem = init_nz_mem.max(b);
            }
        }
        requests.set_max(&init_peak);
        nz_cpu = nz_cpu.max(init_nz_cpu);
        nz_mem = nz_mem.max(init_nz_mem);
        if let Some(overhead) = spec.overhead.as_ref() {
            let o = Resource::from_map(Some(overhead));
            requests.add(&o);
            nz_cpu += o.milli_cpu;
            nz_mem += o.memory;
        }

        let mut host_ports = Vec::new();
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    host_ports.push(HostPort {
                        ip: p.host_ip.clone().unwrap_or_default(),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }

        let terms = |list: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            list.into_iter().flatten().map(|t| AffinityTerm::new(t, &namespace, &labels)).collect()
        };
        let affinity = spec.affinity.as_ref();
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity =
            terms(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()));
        let required_anti_affinity =
            terms(paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()));
        let weighted = |list: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            list.into_iter()
                .flatten()
                .map(|w| WeightedAffinityTerm {
                    weight: w.weight,
                    term: AffinityTerm::new(&w.pod_affinity_term, &namespace, &labels),
                })
                .collect::<Vec<_>>()
        };
        let preferred_affinity = weighted(
            pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
        );
        let preferred_anti_affinity = weighted(
            paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
        );

        let images = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.image.clone())
            .collect();
        let pod_name = meta.name.clone().unwrap_or_default();
        let claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                if let Some(c) = &v.persistent_volume_claim {
                    Some(c.claim_name.clone())
                } else {
                    v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
                }
            })
            .collect();

        PodInfo {
            namespace,
            name: pod_name,
            uid: meta.uid.clone().unwrap_or_default(),
            labels,
            node_name: spec.node_name.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_string()),
            priority: spec.priority.unwrap_or(0),
            requests,
            non_zero_milli_cpu: nz_cpu,
            non_zero_memory: nz_mem,
            host_ports,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            images,
            claims,
            terminating: meta.deletion_timestamp.is_some(),
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    pub fn preemption_policy_never(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never")
    }
}

/// Images a node holds, and on how many nodes each one is (for ImageLocality's spread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageState {
    pub size: i64,
    pub num_nodes: usize,
}

/// A node's labels as `(key id, value id)` pairs, sorted by key id.
pub type LabelIds = smallvec::SmallVec<[(u32, u32); 6]>;

/// A node with everything scheduled onto it (including assumed pods).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    // What comes from the Node object is shared, so cloning a NodeInfo (the snapshot on
    // every change, preemption's dry run on every candidate) copies only the pods.
    pub labels: Arc<Labels>,
    pub taints: Arc<[Taint]>,
    pub unschedulable: bool,
    /// The labels as ids of [`crate::plugins::topology::LABEL_IDS`], sorted by key: the
    /// per-node filters look a topology key up here without reading the label strings.
    pub label_ids: LabelIds,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Image name (every name the node reports for it) to its size and spread.
    pub image_states: Arc<HashMap<String, ImageState>>,
    /// RuntimeClass handlers the node advertises (`status.runtimeHandlers`).
    pub runtime_handlers: Arc<[String]>,
    /// Bumped on every change, so snapshots copy only what changed.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = NodeInfo {
            node: node.clone(),
            name: String::new(),
            labels: Arc::default(),
            taints: Arc::from([]),
            unschedulable: false,
            label_ids: LabelIds::new(),
            allocatable: Resource::default(),
            requested: Resource::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            used_ports: Vec::new(),
            image_states: Arc::default(),
            runtime_handlers: Arc::from([]),
            generation: 0,
        };
        info.set_node(node);
        info
    }

    /// Replace the node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = Arc::new(node.metadata.labels.clone().unwrap_or_default());
        self.label_ids = crate::plugins::topology::label_ids_of(&self.labels);
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default().into();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        self.allocatable =
            Resource::from_map(status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())));
        self.runtime_handlers = status
            .and_then(|s| s.runtime_handlers.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|h| h.name.clone())
            .collect();
        let mut images = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                images.insert(
                    name.clone(),
                    ImageState { size: image.size_bytes.unwrap_or(0), num_nodes: 1 },
                );
            }
        }
        self.image_states = Arc::new(images);
        self.node = node;
    }

    /// The id of the node's value for label key `key` (an id of
    /// [`crate::plugins::topology::LABEL_IDS`]).
    pub fn label_id(&self, key: u32) -> Option<u32> {
        self.label_ids.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity.push(pod.clone());
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Remove the pod with this uid; false if it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.pods_with_required_anti_affinity.retain(|p| p.uid != uid);
        self.generation += 1;
        true
    }

    pub fn ready(&self) -> bool {
        self.node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

#[cfg(test)]
pub mod testing {
    //! Builders for plugin tests.
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
    }

    /// A Ready node with this allocatable (e.g. `[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]`).
    pub fn node(name: &str, allocatable: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(quantities(allocatable)),
                conditions: Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// A pod in namespace `default` with one container requesting these amounts.
    pub fn pod(name: &str, requests: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: (!requests.is_empty()).then(|| ResourceRequirements {
                        requests: Some(quantities(requests)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn pod_info(pod: Pod) -> PodInfo {
        PodInfo::new(Arc::new(pod))
    }

    /// A NodeInfo with these pods on it.
    pub fn node_info(node: Node, pods: Vec<Pod>) -> NodeInfo {
        let mut info = NodeInfo::new(Arc::new(node));
        for p in pods {
            info.add_pod(Arc::new(PodInfo::new(Arc::new(p))));
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn pod_info_should_take_max_of_containers_and_init_containers_plus_overhead() {
        let mut p = pod("p", &[("cpu", "100m"), ("memory", "1Gi")]);
        let spec = p.spec.as_mut().unwrap();
        spec.containers.push(spec.containers[0].clone());
        let mut init = spec.containers[0].clone();
        init.resources.as_mut().unwrap().requests = Some(quantities(&[("cpu", "500m")]));
        spec.init_containers = Some(vec![init]);
        spec.overhead = Some(quantities(&[("cpu", "10m"), ("memory", "1Mi")]));
        let info = pod_info(p);
        assert_eq!(info.requests.milli_cpu, 510);
        assert_eq!(info.requests.memory, 2 * 1024 * 1024 * 1024 + 1024 * 1024);
    }

    #[test]
    fn pod_info_should_use_defaults_for_non_zero_requests() {
        let info = pod_info(pod("p", &[]));
        assert_eq!(info.requests.milli_cpu, 0);
        assert_eq!(info.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(info.non_zero_memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn node_info_should_track_requests_and_ports_through_add_and_remove() {
        let mut p = pod("p", &[("cpu", "1")]);
        p.spec.as_mut().unwrap().containers[0].ports =
            Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            }]);
        let mut info = node_info(node("n", &[("cpu", "4")]), vec![p]);
        assert_eq!(info.requested.milli_cpu, 1000);
        assert_eq!(info.used_ports.len(), 1);
        assert!(info.remove_pod("uid-p"));
        assert_eq!(info.requested.milli_cpu, 0);
        assert!(info.used_ports.is_empty());
    }
}
