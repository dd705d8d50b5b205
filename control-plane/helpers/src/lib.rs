//! Pure helpers over Kubernetes objects, shared by the scheduler, the controllers and the
//! node: label selectors, node selector requirements and terms, tolerations against taints,
//! resource quantities in exact integer arithmetic, and what workloads need to know about
//! pods and their owners. The role of apimachinery's `labels`, `k8s.io/component-helpers`
//! and the `k8s.io/api` helpers in Kubernetes.
//!
//! Nothing here does I/O: each function answers from the objects it is given, so one copy
//! serves every component and is tested once.

pub mod duration;
pub mod labels;
pub mod node_selector;
pub mod pods;
pub mod promtext;
pub mod quantity;
pub mod scaletozero;
pub mod taints;

/// Labels (or annotations) by key.
pub type Labels = std::collections::BTreeMap<String, String>;
