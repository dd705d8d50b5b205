//! What kube-apiserver's admission plugins decide, as pure functions over JSON objects: the
//! api server reads the objects they need (namespaces, LimitRanges, ResourceQuotas, webhook
//! configurations) from its watch caches and passes them in, so each rule is tested here
//! alone. Counterparts: `plugin/pkg/admission/*` and `k8s.io/pod-security-admission`.

pub mod cel;
pub mod limitranger;
pub mod podsecurity;
pub mod policy;
pub mod quota;
pub mod review;
pub mod webhook;
