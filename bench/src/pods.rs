//! Pods the benchmarks create.

use k8s_openapi::api::core::v1::Pod;

/// A one-container pod `name` of `image` on RuntimeClass `runtime`, running `command`, that
/// stops within a second when deleted.
pub fn pod(name: &str, runtime: &str, image: &str, command: &[&str]) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "runtimeClassName": runtime,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": command}],
        },
    }))?)
}
