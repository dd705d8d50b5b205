//! What kube-apiserver's admission plugins decide, as pure functions over JSON objects: the
//! api server reads the objects they need (namespaces, LimitRanges, ResourceQuotas, webhook
//! configurations) from its watch caches and passes them in, so each rule is tested here
//! alone. Counterparts: `plugin/pkg/admission/*` and `k8s.io/pod-security-admission`.

/// The finalizers StorageObjectInUseProtection puts on claims and volumes, which the
/// `pvc-protection` and `pv-protection` controllers take off.
pub mod finalizers {
    pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
    pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
}

pub mod cel;
pub mod limitranger;
pub mod podsecurity;
pub mod policy;
pub mod quota;
pub mod review;
pub mod webhook;
