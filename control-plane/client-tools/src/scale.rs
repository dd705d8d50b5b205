//! The `scale` subresource of any kind (`autoscaling/v1` Scale), read and written through the
//! API: what the HPA controller, scale to zero and the activator share. Writes carry the
//! resourceVersion they were decided on, so a scale someone else changed meanwhile is a
//! conflict, not overwritten.

use serde_json::{Value, json};

/// A target's scale, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scale {
    /// `spec.replicas`: what is asked for.
    pub replicas: i32,
    /// `status.replicas`: what exists.
    pub status_replicas: i32,
    /// `status.selector`, in its string form.
    pub selector: String,
    pub resource_version: String,
    pub uid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The scale changed since it was read (HTTP 409): decide again.
    #[error("the scale changed meanwhile: {0}")]
    Conflict(String),
    #[error("{0}")]
    Api(String),
}

/// The path of a scale subresource: `apiVersion` `v1` or `group/version`, the resource's plural.
pub fn path(api_version: &str, plural: &str, namespace: &str, name: &str) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    format!("{base}/namespaces/{namespace}/{plural}/{name}/scale")
}

fn message(e: kube::Error) -> ScaleError {
    match e {
        kube::Error::Api(s) if s.code == 409 => ScaleError::Conflict(s.message),
        kube::Error::Api(s) => ScaleError::Api(s.message),
        e => ScaleError::Api(e.to_string()),
    }
}

pub async fn get(client: &kube::Client, path: &str) -> Result<Scale, ScaleError> {
    let req =
        http::Request::get(path).body(Vec::new()).map_err(|e| ScaleError::Api(e.to_string()))?;
    let v: Value = client.request(req).await.map_err(message)?;
    let int = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0) as i32;
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Scale {
        replicas: int("/spec/replicas"),
        status_replicas: int("/status/replicas"),
        selector: text("/status/selector"),
        resource_version: text("/metadata/resourceVersion"),
        uid: text("/metadata/uid"),
    })
}

/// Set `spec.replicas`, only if the scale is still at `resource_version` (when given).
pub async fn set(
    client: &kube::Client,
    path: &str,
    replicas: i32,
    resource_version: Option<&str>,
) -> Result<(), ScaleError> {
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let body = serde_json::to_vec(&patch).unwrap_or_default();
    let req = http::Request::patch(path)
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(body)
        .map_err(|e| ScaleError::Api(e.to_string()))?;
    client.request::<Value>(req).await.map(|_| ()).map_err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_should_name_core_and_grouped_kinds() {
        assert_eq!(
            path("apps/v1", "deployments", "ns", "web"),
            "/apis/apps/v1/namespaces/ns/deployments/web/scale"
        );
        assert_eq!(
            path("v1", "replicationcontrollers", "ns", "rc"),
            "/api/v1/namespaces/ns/replicationcontrollers/rc/scale"
        );
    }
}
