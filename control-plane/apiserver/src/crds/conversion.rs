//! Moving custom objects between the versions of their CRD: strategy `None` only rewrites
//! `apiVersion`; strategy `Webhook` sends the objects in one `ConversionReview` to the CRD's
//! webhook and checks what comes back as kube-apiserver does (same count, the desired
//! apiVersion, the same kind, and nothing of `metadata` changed but labels and annotations).
//! A webhook that is down fails the requests that need it (500, in kube's words) and no others.

use serde_json::{Value, json};

use super::{Conversion, CustomVersion};
use crate::State;
use crate::errors::ApiError;

/// How long a conversion webhook may take (kube's default for conversion webhooks).
const TIMEOUT_SECONDS: u64 = 30;

/// `objects` of the custom resource `cv` belongs to, in `desired` (an apiVersion) — those
/// already there are left alone.
pub async fn convert(
    state: &State,
    cv: &CustomVersion,
    objects: Vec<Value>,
    desired: &str,
) -> Result<Vec<Value>, ApiError> {
    let (client_config, review_versions) = match &cv.conversion {
        Conversion::None => {
            return Ok(objects
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.insert("apiVersion".into(), json!(desired));
                    }
                    o
                })
                .collect());
        }
        Conversion::Webhook { client_config, review_versions } => (client_config, review_versions),
    };
    let pending: Vec<usize> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.get("apiVersion").and_then(Value::as_str) != Some(desired))
        .map(|(i, _)| i)
        .collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    let from =
        objects[pending[0]].get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let failed = |why: String| {
        ApiError::internal(format!("conversion webhook for {from}, Kind={} failed: {why}", cv.kind))
    };
    let review_version = review_versions
        .iter()
        .find(|v| *v == "v1" || *v == "v1beta1")
        .map(String::as_str)
        .unwrap_or("v1");
    let uid = uuid::Uuid::new_v4().to_string();
    let sent: Vec<&Value> = pending.iter().map(|i| &objects[*i]).collect();
    let review = json!({
        "kind": "ConversionReview",
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": sent},
    });
    let body = serde_json::to_vec(&review).unwrap_or_default();
    let answer = crate::admission::post_to_webhook(state, client_config, TIMEOUT_SECONDS, body)
        .await
        .map_err(|e| failed(e.trim_start_matches("failed to call webhook: ").to_string()))?;
    let answer: Value = serde_json::from_slice(&answer)
        .map_err(|e| failed(format!("the response is not a ConversionReview: {e}")))?;
    let response = answer.get("response").ok_or_else(|| failed("no response provided".into()))?;
    if response.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
        return Err(failed(format!(
            "expected response.uid={uid:?}, got {:?}",
            response.get("uid").and_then(Value::as_str).unwrap_or("")
        )));
    }
    if response.pointer("/result/status").and_then(Value::as_str) != Some("Success") {
        let message = response.pointer("/result/message").and_then(Value::as_str).unwrap_or("");
        return Err(failed(format!("conversion request failed: {message}")));
    }
    let converted = response
        .get("convertedObjects")
        .and_then(Value::as_array)
        .ok_or_else(|| failed("no convertedObjects in the response".into()))?;
    if converted.len() != pending.len() {
        return Err(failed(format!(
            "expected {} converted objects, got {}",
            pending.len(),
            converted.len()
        )));
    }
    let mut out = objects;
    for (i, got) in pending.into_iter().zip(converted) {
        let original = &out[i];
        let kind = original.get("kind").cloned().unwrap_or(Value::Null);
        if got.get("apiVersion").and_then(Value::as_str) != Some(desired) {
            return Err(failed(format!(
                "invalid converted object: expected apiVersion {desired:?}, got {}",
                got.get("apiVersion").unwrap_or(&Value::Null)
            )));
        }
        if got.get("kind") != Some(&kind) {
            return Err(failed(format!(
                "invalid converted object: expected kind {kind}, got {}",
                got.get("kind").unwrap_or(&Value::Null)
            )));
        }
        out[i] = restore_metadata(original, got.clone());
    }
    Ok(out)
}

/// Whether reading `view` needs its CRD's conversion webhook.
pub fn needs_webhook(view: &skiff_api::ResourceInfo) -> bool {
    CustomVersion::of(view).is_some_and(|cv| matches!(cv.conversion, Conversion::Webhook { .. }))
}

/// A watch stream of stored objects (JSON event lines, written in chunks) converted to
/// `view`'s version through its webhook: the objects of each chunk in one review. A failed
/// conversion ends the stream with an ERROR event carrying the failure.
pub fn convert_watch(
    state: std::sync::Arc<State>,
    view: skiff_api::ResourceInfo,
    mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    let (tx, out) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    tokio::spawn(async move {
        let Some(cv) = CustomVersion::of(&view) else { return };
        let desired = view.api_version();
        while let Some(chunk) = rx.recv().await {
            let mut events: Vec<Value> = chunk
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect();
            let objects: Vec<Value> = events
                .iter_mut()
                .filter(|e| matches!(e["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED")))
                .map(|e| e["object"].take())
                .collect();
            let mut buf = Vec::new();
            let mut failed: Option<ApiError> = None;
            match convert(&state, cv, objects, &desired).await {
                Ok(converted) => {
                    let mut converted = converted.into_iter();
                    for e in events.iter_mut() {
                        if matches!(e["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED")) {
                            e["object"] = converted.next().unwrap_or(Value::Null);
                        } else if e["type"] == "BOOKMARK" {
                            e["object"]["apiVersion"] = json!(desired);
                        }
                    }
                }
                Err(e) => failed = Some(e),
            }
            match failed {
                None => {
                    for e in &events {
                        buf.extend_from_slice(&crate::watch::line(
                            e["type"].as_str().unwrap_or(""),
                            &e["object"],
                        ));
                    }
                }
                Some(ref e) => buf.extend_from_slice(&crate::watch::line("ERROR", &e.to_status())),
            }
            if tx.send(bytes::Bytes::from(buf)).await.is_err() || failed.is_some() {
                return;
            }
        }
    });
    out
}

/// The webhook may change labels and annotations only: everything else of `metadata` is
/// the original's.
fn restore_metadata(original: &Value, mut converted: Value) -> Value {
    let mut meta = original.get("metadata").cloned().unwrap_or(json!({}));
    if let (Some(m), Some(got)) = (meta.as_object_mut(), converted.get("metadata")) {
        for key in ["labels", "annotations"] {
            match got.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
    }
    if let Some(o) = converted.as_object_mut() {
        o.insert("metadata".into(), meta);
    }
    converted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_labels_and_annotations_survive_from_the_webhook() {
        let original = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}}});
        let converted = json!({"apiVersion": "v2", "metadata": {"name": "b", "uid": "z",
            "labels": {"x": "2"}, "annotations": {"y": "1"}}, "spec": {}});
        let out = restore_metadata(&original, converted);
        assert_eq!(
            out["metadata"],
            json!({"name": "a", "uid": "u", "labels": {"x": "2"}, "annotations": {"y": "1"}})
        );
        assert_eq!(out["spec"], json!({}));
    }
}
