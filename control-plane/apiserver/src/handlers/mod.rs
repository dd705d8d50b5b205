//! Resource requests over the store: the routing of a parsed request to its verb, and what
//! the verbs share (store encoding, body parsing, query flags, field validation, retries).
//! Kubernetes' counterpart is `k8s.io/apiserver/pkg/endpoints/handlers`.
//!
//! `target` parses the URL, `view` serves other versions of a stored resource, and one module
//! per verb family does the work: `read` (get, list), `write` (create, update), `patch`
//! (patch, server-side apply), `delete` (delete, deletecollection) and `pods` (binding, log).
//! Watch is `crate::watch`; the other subresources are `crate::subresources`.

mod delete;
mod patch;
mod pods;
mod read;
mod target;
mod view;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_store::KeyValue;

pub use self::delete::delete;
pub use self::patch::patch;
pub use self::pods::{container_for, pod_log, set_condition};
pub(crate) use self::read::wanted_table;
pub use self::read::{get, list, selectors};
pub use self::target::{Target, parse_target};
pub(crate) use self::write::write;
pub use self::write::{create, create_service, update};
use crate::errors::ApiError;
use crate::{State, typed, watch};

/// Route one resource request by method and target.
pub async fn dispatch(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    match &target.view {
        Some(view) => view::dispatch_view(state, method, target, view, headers, body, q).await,
        None => dispatch_stored(state, method, target, headers, body, q).await,
    }
}

/// Route a request about the stored resource by method, name and subresource.
async fn dispatch_stored(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let sub = target.subresource.as_deref();
    if target.resource.group.is_empty() && target.resource.kind == "ComponentStatus" {
        return crate::reviews::component_statuses(state, method, target, headers, q).await;
    }
    if !target.resource.is_stored() && (method != Method::POST || target.name.is_some()) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    match (method.as_str(), target.name.is_some(), sub) {
        (_, true, Some("scale")) => {
            crate::subresources::scale(state, method, target, headers, body, q).await
        }
        ("POST", true, Some("token")) => crate::tokens::request(state, target, headers, body).await,
        ("POST", true, Some("eviction")) => {
            crate::subresources::evict(state, target, headers, body, q).await
        }
        ("DELETE", false, None) => delete::delete_collection(state, target, headers, body, q).await,
        ("GET", false, _) if query_bool(q, "watch") => {
            watch::watch(state, target, headers, q).await
        }
        ("GET", false, _) => list(state, target, headers, q).await,
        ("GET", true, Some("log")) => pod_log(state, target, q).await,
        ("GET", true, _) => read::get_response(state, target, headers, q).await,
        ("POST", _, _) => create(state, target, headers, body, q).await,
        ("PUT", true, Some("status" | "finalize" | "approval") | None) => {
            update(state, target, headers, body, q).await
        }
        ("PATCH", true, Some("status" | "approval") | None) => {
            patch(state, target, headers, body, q).await
        }
        ("DELETE", true, None) => delete(state, target, headers, body, q).await,
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

/// Decode a stored value and stamp its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    Ok(with_resource_version(obj, kv.mod_revision))
}

/// Encode an object for the store: resourceVersion is the store's, never persisted. Built-in
/// kinds are written in Go's field order, so stored bytes can be served as they are.
pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    skiff_api::gojson::to_vec_stored(obj)
}

/// Stamp the resourceVersion the store gave an object's write.
pub fn with_resource_version(mut obj: Value, revision: u64) -> Value {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    obj
}

pub(crate) fn without_resource_version(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    json_bytes_response(code, skiff_api::gojson::to_vec(body))
}

/// A built-in list's items as kube writes them: without TypeMeta.
pub(crate) fn strip_type_meta(items: &mut [Value]) {
    for item in items {
        if let Some(m) = item.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
    }
}

/// A JSON answer's body as kube-apiserver writes it: Go's field order, then a newline.
pub fn json_body_bytes(body: &Value) -> Vec<u8> {
    let mut out = skiff_api::gojson::to_vec(body);
    out.push(b'\n');
    out
}

/// An answer whose JSON body is already encoded (a newline is added, as Go's encoder does).
pub fn json_bytes_response(code: StatusCode, mut body: Vec<u8>) -> Response {
    if body.last() != Some(&b'\n') {
        body.push(b'\n');
    }
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Parse a request body as JSON or YAML by its content type.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(crate) fn query_bool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

pub(crate) fn is_dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

/// Response headers carrying field-validation warnings.
pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        // apimachinery's `NewWarningHeader`: a quoted-string with `"` and `\` escaped, which
        // clients unescape (kubectl prints `would violate PodSecurity "restricted:latest"`).
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        let text = format!("299 - \"{escaped}\"");
        if let Ok(v) = text.parse() {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Check the object against its typed schema per `fieldValidation` (Strict | Warn | Ignore).
fn field_validation(
    res: &ResourceInfo,
    obj: &Value,
    q: &HashMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let mode = q.get("fieldValidation").map(String::as_str).unwrap_or("Warn");
    // managedFields are not checked; copy the object only when it has some.
    let stripped;
    let obj = if obj.pointer("/metadata/managedFields").is_some() {
        let mut o = obj.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        stripped = o;
        &stripped
    } else {
        obj
    };
    let unknown = match crate::crds::CustomVersion::of(res) {
        Some(cv) => cv.unknown_fields(obj),
        None => typed::check(&res.api_version(), res.kind, obj)?,
    };
    if unknown.is_empty() || mode == "Ignore" {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.join(", "))));
    }
    Ok(msgs)
}

/// How often a read-modify-write starts over after losing a race to another writer.
pub(crate) const MAX_RETRIES: usize = 16;

/// The answer once `MAX_RETRIES` read-modify-writes of one object have all lost their race.
pub(crate) fn too_many_writers(resource: &str, name: &str) -> ApiError {
    ApiError::conflict(resource, name, "too many concurrent writers; try again")
}

/// The stored object at `key`, or 404 in Kubernetes' words.
pub(crate) async fn read_current(
    state: &State,
    resource: &str,
    key: &str,
    name: &str,
) -> Result<KeyValue, ApiError> {
    state
        .store
        .get(key)
        .await
        .map_err(|e| ApiError::from_store(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource, name))
}
