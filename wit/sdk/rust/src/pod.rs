//! Pod specs inside admission objects: where each built-in kind keeps its PodSpec (a Pod's
//! `spec`, a workload's pod template), and the containers in one.

use serde_json::Value;

use crate::GroupVersionKind;

/// The PodSpec inside `object` of kind `kind`: a Pod's `spec`, the pod template's `spec` of a
/// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController or PodTemplate,
/// and of a CronJob's job template. `None` for other kinds and when the object has none.
pub fn pod_spec<'a>(kind: &GroupVersionKind, object: &'a Value) -> Option<&'a Value> {
    let pointer = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => "/spec",
        ("", "PodTemplate") => "/template/spec",
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => "/spec/template/spec",
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    };
    object.pointer(pointer).filter(|spec| spec.is_object())
}

/// The container lists of a PodSpec, in the order Kubernetes reports them.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// Every container of a PodSpec with the list it is in (one of [`CONTAINER_LISTS`]).
pub fn containers(spec: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    CONTAINER_LISTS.into_iter().flat_map(move |list| {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(move |container| (list, container))
    })
}
