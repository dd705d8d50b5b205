//! The in-tree plugins, one file each, named as in Kubernetes.
pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod helper;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod queue_sort;
pub mod runtime_class;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod topology;
pub mod volume_binding;
