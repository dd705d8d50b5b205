//! The in-tree plugins, one file each, named as in Kubernetes.
pub mod default_binder;
pub mod default_preemption;
pub mod queue_sort;
pub mod volume_binding;
