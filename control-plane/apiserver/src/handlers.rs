//! Resource requests: URL parsing, CRUD, list, patch, delete and subresources over the store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use skiff_api::logs::PodLogSource;
use skiff_api::{ResourceInfo, list_prefix, object_key};
use skiff_store::{Consistency, KeyValue, ListOptions, StoreError};

use crate::errors::ApiError;
use crate::objects::{self, name_of, now_rfc3339, resource_version_of};
use crate::patch::{PatchType, apply_patch};
use crate::selectors::{FieldSelector, LabelSelector, supported_fields};
use crate::{State, apply, convert, table, typed, watch};

/// A parsed resource URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource as stored (for a view such as events.k8s.io/v1 Events, the storage one).
    pub resource: ResourceInfo,
    /// The resource the URL named, when it is a view of `resource` in another version.
    pub view: Option<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn key(&self) -> Option<String> {
        self.name.as_deref().map(|n| object_key(&self.resource, self.namespace.as_deref(), n))
    }
}

/// Parse the segments after `/api/v1` or `/apis/{group}/{version}`.
pub fn parse_target(
    state: &State,
    group: &str,
    version: &str,
    segs: &[&str],
) -> Result<Target, ApiError> {
    let lookup = |plural: &str| {
        state.registry.lookup(group, version, plural).cloned().ok_or_else(|| {
            ApiError::new(404, "NotFound", "the server could not find the requested resource")
        })
    };
    // A view is served from its storage resource and converted on the way in and out.
    let with_storage = |r: ResourceInfo| -> (ResourceInfo, Option<ResourceInfo>) {
        match r.storage.and_then(|(g, v)| state.registry.lookup(g, v, r.plural)) {
            Some(storage) => (storage.clone(), Some(r)),
            None => (r, None),
        }
    };
    let t =
        |resource: ResourceInfo, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
            let (resource, view) = with_storage(resource);
            Target {
                resource,
                view,
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
                subresource: sub.map(str::to_string),
            }
        };
    let namespaced_plural =
        |p: &str| state.registry.lookup(group, version, p).is_some_and(|r| r.namespaced);
    let target = match segs {
        [res] => t(lookup(res)?, None, None, None),
        ["namespaces", ns, res] if namespaced_plural(res) => t(lookup(res)?, Some(ns), None, None),
        ["namespaces", ns, res, name] => t(lookup(res)?, Some(ns), Some(name), None),
        ["namespaces", ns, res, name, sub] => t(lookup(res)?, Some(ns), Some(name), Some(sub)),
        [res, name] => t(lookup(res)?, None, Some(name), None),
        [res, name, sub] => t(lookup(res)?, None, Some(name), Some(sub)),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    if target.name.is_some() && target.resource.namespaced && target.namespace.is_none() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if let Some(sub) = &target.subresource
        && !target.resource.subresources.contains(&sub.as_str())
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if let Some(name) = &target.name
        && (name.is_empty() || name.contains('/'))
    {
        return Err(ApiError::bad_request("resource name may not be empty or contain '/'"));
    }
    Ok(target)
}

/// Decode a stored value and stamp its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(obj)
}

/// Encode an object for the store: resourceVersion is the store's, never persisted.
fn encode(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&without_resource_version(obj)).unwrap_or_default()
}

pub(crate) fn without_resource_version(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
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

fn query_bool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

pub(crate) fn is_dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

/// Response headers carrying field-validation warnings.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "'"));
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
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let unknown = typed::check(&res.api_version(), res.kind, &obj)?;
    if unknown.is_empty() || mode == "Ignore" {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.join(", "))));
    }
    Ok(msgs)
}

async fn ensure_namespace(state: &State, ns: &str) -> Result<(), ApiError> {
    let key = format!("/registry/namespaces/{ns}");
    match state.store.get(&key).await.map_err(|e| ApiError::from_store(e, "namespaces", ns))? {
        None => Err(ApiError::not_found("namespaces", ns)),
        Some(kv) => {
            let obj = decode(&kv)?;
            if obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ));
            }
            Ok(())
        }
    }
}

pub async fn create(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    if target.subresource.as_deref() == Some("binding") {
        return bind(state, target, headers, body).await;
    }
    if target.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "POST is not supported on a single {}",
            res.singular
        )));
    }
    let mut obj = parse_body(headers, body)?;
    objects::check_type(&mut obj, res)?;
    let warnings = field_validation(res, &obj, q)?;
    if !res.is_stored() {
        let answer = crate::reviews::answer(res, obj)?;
        return Ok(with_warnings(json_response(StatusCode::CREATED, &answer), &warnings));
    }
    objects::prepare_create(&mut obj, res, target.namespace.as_deref())?;
    if res.group.is_empty() && res.kind == "Pod" {
        crate::admission::admit_pod(state, &mut obj).await?;
    }
    let name = name_of(&obj).to_string();
    if res.namespaced {
        ensure_namespace(state, objects::namespace_of(&obj).unwrap_or("default")).await?;
    }
    let key = object_key(res, objects::namespace_of(&obj), &name);
    apply::record_update(res, None, None, &mut obj, q, headers)?;
    let created = store_new(state, res, &key, obj, is_dry_run(q)).await?;
    Ok(with_warnings(json_response(StatusCode::CREATED, &created), &warnings))
}

/// Write a new, prepared object (a Service with its address claims); with `dry_run` only
/// show what would be stored.
async fn store_new(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if res.group.is_empty() && res.kind == "Service" {
        return create_service(state, obj, key, dry_run).await;
    }
    if res.group.is_empty() && res.kind == "Node" {
        return create_node(state, obj, key, dry_run).await;
    }
    if dry_run {
        return Ok(obj);
    }
    let kv = state
        .store
        .create(key, encode(&obj))
        .await
        .map_err(|e| ApiError::from_store(e, res.plural, name_of(&obj)))?;
    decode(&kv)
}

/// Create a Service together with the claims of the addresses it is given; a random pick
/// that collides with another Service's is retried with a fresh one.
pub async fn create_service(
    state: &State,
    obj: Value,
    key: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    for attempt in 0..8 {
        let mut svc = obj.clone();
        let mut ops = crate::services::claims(&mut svc, attempt)?;
        if dry_run {
            return Ok(svc);
        }
        ops.insert(0, skiff_store::TxnOp::Create { key: key.to_string(), value: encode(&svc) });
        match state.store.txn(ops).await {
            Ok(kvs) => {
                let kv =
                    kvs.first().ok_or_else(|| ApiError::internal("empty transaction result"))?;
                return decode(kv);
            }
            Err(StoreError::AlreadyExists(k)) if k != key => {
                let requested = match k.rsplit('/').next() {
                    Some(v) if k.contains("/serviceips/") => {
                        obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(v)
                    }
                    Some(v) => obj
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|p| p.get("nodePort").map(Value::to_string).as_deref() == Some(v)),
                    None => false,
                };
                if requested && let Some(e) = crate::services::requested_conflict(&obj, &k) {
                    return Err(e);
                }
            }
            Err(e) => return Err(ApiError::from_store(e, "services", &name)),
        }
    }
    Err(ApiError::internal("could not allocate a free service address; try again"))
}

/// Create a Node together with the claim of its pod CIDR (the lowest free block, unless it
/// names one); a block another node took meanwhile is retried with the next one.
async fn create_node(
    state: &State,
    obj: Value,
    key: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    let cidrs = state.pod_cidrs();
    for _ in 0..8 {
        let taken: Vec<String> = state
            .store
            .list(crate::podcidr::claim_prefix())
            .await
            .map_err(|e| ApiError::from_store(e, "nodes", &name))?
            .items
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let mut node = obj.clone();
        let mut ops = crate::podcidr::assign(&cidrs, &mut node, &taken)?;
        if dry_run {
            return Ok(node);
        }
        ops.insert(0, skiff_store::TxnOp::Create { key: key.to_string(), value: encode(&node) });
        match state.store.txn(ops).await {
            Ok(kvs) => {
                let kv =
                    kvs.first().ok_or_else(|| ApiError::internal("empty transaction result"))?;
                return decode(kv);
            }
            Err(StoreError::AlreadyExists(k)) if k != key => {
                if obj
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty())
                {
                    return Err(ApiError::invalid(
                        "Node",
                        &name,
                        vec![(
                            "spec.podCIDR".to_string(),
                            "Invalid value: the pod CIDR is already allocated to another node"
                                .to_string(),
                        )],
                    ));
                }
            }
            Err(e) => return Err(ApiError::from_store(e, "nodes", &name)),
        }
    }
    Err(ApiError::internal("could not allocate a free pod CIDR; try again"))
}

pub async fn get(state: &Arc<State>, target: &Target) -> Result<Value, ApiError> {
    let res = &target.resource;
    let name = target.name.as_deref().unwrap_or("");
    let key = target.key().unwrap_or_default();
    let kv = state.store.get(&key).await.map_err(|e| ApiError::from_store(e, res.plural, name))?;
    match kv {
        Some(kv) => decode(&kv),
        None => Err(ApiError::not_found(res.plural, name)),
    }
}

pub fn selectors(
    res: &ResourceInfo,
    q: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
        supported_fields(res.kind),
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

pub async fn list(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let (labels, fields) = selectors(res, q)?;
    let prefix = list_prefix(res, target.namespace.as_deref());
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let token = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let store_err = |e: StoreError| ApiError::from_store(e, res.plural, "");
    let mut options = list_read_options(state, q, token.as_ref())?;
    // Selectors filter after the store pages, so a page may take several store reads; every
    // read after the first is pinned to the first one's revision.
    let mut items = Vec::new();
    let mut next = None;
    let revision = loop {
        options.limit = limit.map_or(0, |l| (l - items.len()).max(16));
        let page = state.store.list_with(&prefix, &options).await.map_err(|e| match (&token, e) {
            (Some(_), skiff_store::StoreError::Compacted { .. }) => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            (_, e) => store_err(e),
        })?;
        options.revision = Some(page.revision);
        let count = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            let obj = decode(kv)?;
            if !labels.matches(objects::labels_of(&obj)) || !fields.matches(&obj) {
                continue;
            }
            items.push(obj);
            if limit.is_some_and(|l| items.len() >= l) && (i + 1 < count || page.more) {
                next = Some(encode_continue(&kv.key, page.revision));
                break;
            }
        }
        if next.is_some() || !page.more {
            break page.revision;
        }
        options.start_after = page.items.last().map(|kv| kv.key.clone());
    };
    let rv = revision.to_string();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if table::wants_table(accept) {
        let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
        return Ok(json_response(
            StatusCode::OK,
            &table::to_table(res.kind, &items, &rv, next.as_deref(), include),
        ));
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = next {
        meta["continue"] = json!(c);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": meta, "items": items}),
    ))
}

/// Where a list resumes: after `start`, at `revision`.
struct ContinueToken {
    start: String,
    revision: u64,
}

fn encode_continue(key: &str, revision: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": 2, "start": key, "rv": revision}).to_string())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            Some(ContinueToken {
                start: v.get("start")?.as_str()?.to_string(),
                revision: v.get("rv")?.as_u64()?,
            })
        })
        .ok_or_else(|| ApiError::bad_request("invalid continue token: start a new list without it"))
}

/// The store read a list asks for, following Kubernetes' `resourceVersion` semantics: unset
/// is a linearizable read of the latest state; `0` is whatever this server has; `N` is
/// "not older than N" (or exactly N with `resourceVersionMatch=Exact`); a continue token
/// pins the revision of the list's first page.
fn list_read_options(
    state: &State,
    q: &HashMap<String, String>,
    token: Option<&ContinueToken>,
) -> Result<ListOptions, ApiError> {
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).unwrap_or("");
    if let Some(token) = token {
        if !rv.is_empty() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        return Ok(ListOptions {
            start_after: Some(token.start.clone()),
            revision: Some(token.revision),
            consistency: Consistency::Serializable,
            ..ListOptions::default()
        });
    }
    let mut options = ListOptions::default();
    match (rv, rv_match) {
        ("", "") => {}
        ("", m) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch {m} is forbidden unless resourceVersion is provided"
            )));
        }
        (rv, m) => {
            let n = rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            options.consistency = Consistency::Serializable;
            match m {
                "Exact" if n == 0 => {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch Exact is forbidden for resourceVersion 0",
                    ));
                }
                "Exact" => options.revision = Some(n),
                "" | "NotOlderThan" => {
                    // Wait for N if this member has not reached it yet (reads at N then).
                    if n > state.store.current_revision() {
                        options.revision = Some(n);
                    }
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unsupported resourceVersionMatch: {other}"
                    )));
                }
            }
        }
    }
    Ok(options)
}

/// Write `obj` as the new state of an object read at `prev`; deletes it instead when the
/// update finishes a deletion (deletionTimestamp set, no finalizers left, no grace pending).
pub(crate) async fn write(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    prev: &KeyValue,
    obj: &Value,
) -> Result<Value, ApiError> {
    let name = name_of(obj).to_string();
    let finishing = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        && obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        && (res.kind != "Namespace"
            || obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty))
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0)
            == 0;
    if finishing {
        let kv = state
            .store
            .delete(key, Some(prev.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, res.plural, &name))?;
        let mut gone = obj.clone();
        if let Some(m) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        }
        return Ok(gone);
    }
    // Kubernetes does not write (or bump resourceVersion) when nothing changed.
    let stored = without_resource_version(obj);
    if serde_json::from_slice::<Value>(&prev.value).ok().as_ref() == Some(&stored) {
        return decode(prev);
    }
    let kv = state
        .store
        .update(key, serde_json::to_vec(&stored).unwrap_or_default(), Some(prev.mod_revision))
        .await
        .map_err(|e| ApiError::from_store(e, res.plural, &name))?;
    decode(&kv)
}

const MAX_RETRIES: usize = 16;

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

pub async fn update(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let incoming = parse_body(headers, body)?;
    let warnings = field_validation(res, &incoming, q)?;
    let wanted_rv = resource_version_of(&incoming).map(str::to_string);
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        if let Some(rv) = &wanted_rv
            && *rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::from_store(
                StoreError::Conflict { key, expected: 0, current: prev.mod_revision },
                res.plural,
                &name,
            ));
        }
        let old = decode(&prev)?;
        let mut new = incoming.clone();
        objects::prepare_update(&mut new, &old, res, target.subresource.as_deref())?;
        apply::record_update(res, target.subresource.as_deref(), Some(&old), &mut new, q, headers)?;
        if is_dry_run(q) {
            return Ok(json_response(StatusCode::OK, &new));
        }
        match write(state, res, &key, &prev, &new).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && wanted_rv.is_none() => continue,
            Err(e) => return Err(e),
            Ok(obj) => return Ok(with_warnings(json_response(StatusCode::OK, &obj), &warnings)),
        }
    }
    Err(ApiError::conflict(res.plural, &name, "too many concurrent writers; try again"))
}

pub async fn patch(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let patch_type =
        PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    if patch_type == PatchType::Apply {
        return server_side_apply(state, target, headers, body, q).await;
    }
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        let old = decode(&prev)?;
        // A view is patched in its own shape.
        let mut new = match &target.view {
            Some(view) => convert::from_storage(old.clone(), view),
            None => old.clone(),
        };
        apply_patch(&mut new, patch_type, body)?;
        if let Some(view) = &target.view {
            new = convert::to_storage(new, view, &res.api_version());
        }
        // A patch that names a resourceVersion is a precondition.
        if let Some(rv) = resource_version_of(&new)
            && rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let warnings = field_validation(res, &new, q)?;
        objects::prepare_update(&mut new, &old, res, target.subresource.as_deref())?;
        apply::record_update(res, target.subresource.as_deref(), Some(&old), &mut new, q, headers)?;
        if let Some(resp) = finish_update(state, res, &key, &prev, &new, q, &warnings).await? {
            return Ok(resp);
        }
    }
    Err(ApiError::conflict(res.plural, &name, "too many concurrent writers; try again"))
}

/// The end of a read-modify-write: answer `new` on a dry run, else write it over `prev`.
/// `None` means another writer came first and the caller should start over.
async fn finish_update(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    prev: &KeyValue,
    new: &Value,
    q: &HashMap<String, String>,
    warnings: &[String],
) -> Result<Option<Response>, ApiError> {
    if is_dry_run(q) {
        return Ok(Some(json_response(StatusCode::OK, new)));
    }
    match write(state, res, key, prev, new).await {
        Err(e) if e.code == 409 && e.reason == "Conflict" => Ok(None),
        Err(e) => Err(e),
        Ok(obj) => Ok(Some(with_warnings(json_response(StatusCode::OK, &obj), warnings))),
    }
}

/// Server-side apply (`application/apply-patch+yaml`); applying to a missing object creates it.
async fn server_side_apply(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let sub = target.subresource.as_deref();
    let request =
        apply::ApplyRequest::parse(res, target.namespace.as_deref(), &name, headers, body, q)?;
    for _ in 0..MAX_RETRIES {
        let prev =
            state.store.get(&key).await.map_err(|e| ApiError::from_store(e, res.plural, &name))?;
        let Some(prev) = prev else {
            if sub.is_some() {
                return Err(ApiError::not_found(res.plural, &name));
            }
            let mut obj = request.apply_to(res, None, None)?;
            let warnings = field_validation(res, &obj, q)?;
            objects::prepare_create(&mut obj, res, target.namespace.as_deref())?;
            if res.group.is_empty() && res.kind == "Pod" {
                crate::admission::admit_pod(state, &mut obj).await?;
            }
            if res.namespaced {
                ensure_namespace(state, objects::namespace_of(&obj).unwrap_or("default")).await?;
            }
            if is_dry_run(q) {
                return Ok(with_warnings(json_response(StatusCode::CREATED, &obj), &warnings));
            }
            match store_new(state, res, &key, obj, false).await {
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
                Ok(created) => {
                    return Ok(with_warnings(
                        json_response(StatusCode::CREATED, &created),
                        &warnings,
                    ));
                }
            }
        };
        let old = decode(&prev)?;
        let mut new = request.apply_to(res, sub, Some(&old))?;
        let warnings = field_validation(res, &new, q)?;
        objects::prepare_update(&mut new, &old, res, sub)?;
        if let Some(resp) = finish_update(state, res, &key, &prev, &new, q, &warnings).await? {
            return Ok(resp);
        }
    }
    Err(ApiError::conflict(res.plural, &name, "too many concurrent writers; try again"))
}

/// `DeleteOptions` from the body and/or the query.
struct DeleteOptions {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    /// `Orphan`, `Background` or `Foreground`, when asked for.
    propagation: Option<String>,
}

fn delete_options(
    body: &[u8],
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(headers, body)?
    };
    let grace = b
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let dry_run = is_dry_run(q)
        || b.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    let orphan = b
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    let propagation = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned())
        .or_else(|| orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "",
                vec![(
                    "propagationPolicy".into(),
                    format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                )],
            ));
        }
        if orphan.is_some()
            && (b.get("propagationPolicy").is_some() || q.contains_key("propagationPolicy"))
        {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "",
                vec![(
                    "propagationPolicy".into(),
                    "Invalid value: orphanDependents and propagationPolicy cannot both be set"
                        .into(),
                )],
            ));
        }
    }
    Ok(DeleteOptions {
        propagation,
        grace,
        uid: b.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        resource_version: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

pub async fn delete(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let opts = delete_options(body, headers, q)?;
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        let mut obj = decode(&prev)?;
        if let Some(uid) = &opts.uid
            && obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    prev.mod_revision
                ),
            ));
        }
        let grace = graceful_period(res, &obj, opts.grace);
        // The garbage collector's finalizers follow the propagation policy (or the kind's
        // default); the controller manager's garbage collector acts on them.
        if res.kind != "Namespace" {
            let m = obj
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::internal("object without metadata"))?;
            let current: Vec<Value> =
                m.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            let names: Vec<&str> = current.iter().filter_map(Value::as_str).collect();
            let gc_finalizer = crate::gc::finalizer_for(res, opts.propagation.as_deref(), &names);
            let mut finalizers: Vec<Value> = current
                .iter()
                .filter(|f| *f != crate::gc::ORPHAN && *f != crate::gc::FOREGROUND)
                .cloned()
                .collect();
            finalizers.extend(gc_finalizer.map(|f| json!(f)));
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
            || (res.kind == "Namespace"
                && obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty()));
        if grace > 0 || has_finalizers {
            let already = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            let current_grace =
                obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if already && current_grace.is_none_or(|g| g <= grace) {
                return Ok(json_response(StatusCode::ACCEPTED, &obj));
            }
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            let m = obj
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::internal("object without metadata"))?;
            if !already || current_grace.is_some_and(|g| g > grace) {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
            }
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if res.kind == "Namespace" {
                obj["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok(json_response(StatusCode::ACCEPTED, &obj));
            }
            match state.store.update(&key, encode(&obj), Some(prev.mod_revision)).await {
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, res.plural, &name)),
                Ok(kv) => {
                    let obj = decode(&kv)?;
                    if grace == 0 && !has_finalizers {
                        continue;
                    }
                    let code = if grace == 0 { StatusCode::OK } else { StatusCode::ACCEPTED };
                    return Ok(json_response(code, &obj));
                }
            }
        }
        if opts.dry_run {
            return Ok(json_response(StatusCode::OK, &obj));
        }
        match state.store.delete(&key, Some(prev.mod_revision)).await {
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, res.plural, &name)),
            Ok(kv) => {
                if res.group.is_empty() && res.kind == "Service" {
                    for claim in crate::services::release(&obj) {
                        let _ = state.store.delete(&claim, None).await;
                    }
                }
                if res.group.is_empty()
                    && res.kind == "Node"
                    && let Some(claim) = crate::podcidr::release(&obj)
                {
                    let _ = state.store.delete(&claim, None).await;
                }
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                }
                return Ok(json_response(StatusCode::OK, &obj));
            }
        }
    }
    Err(ApiError::conflict(res.plural, &name, "too many concurrent writers; try again"))
}

/// `DELETE` on a collection: every object matching the selectors, one by one, with the same
/// options; answers the list of what was deleted (or is now being deleted).
async fn delete_collection(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let (labels, fields) = selectors(res, q)?;
    let page = state
        .store
        .list(&list_prefix(res, target.namespace.as_deref()))
        .await
        .map_err(|e| ApiError::from_store(e, res.plural, ""))?;
    let mut deleted = Vec::new();
    for kv in &page.items {
        let obj = decode(kv)?;
        if !labels.matches(objects::labels_of(&obj)) || !fields.matches(&obj) {
            continue;
        }
        let one = Target {
            name: Some(name_of(&obj).to_string()),
            namespace: objects::namespace_of(&obj).map(str::to_string),
            ..target.clone()
        };
        match delete(state, &one, headers, body, q).await {
            Ok(_) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state.store.current_revision().to_string();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted}),
    ))
}

/// Grace period for deleting `obj`: only scheduled, non-terminal pods are deleted gracefully.
fn graceful_period(res: &ResourceInfo, obj: &Value, requested: Option<i64>) -> i64 {
    if res.kind != "Pod" {
        return 0;
    }
    let scheduled =
        obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || terminal {
        return 0;
    }
    requested
        .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30)
        .max(0)
}

/// `POST pods/{name}/binding`: assign a pending pod to a node, once.
async fn bind(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let binding = parse_body(headers, body)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            &name,
            vec![("target.name".into(), "Required value".into())],
        ));
    }
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, "pods", &key, &name).await?;
        let mut pod = decode(&prev)?;
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
            && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::conflict(
                "pods",
                &name,
                "the pod's UID does not match the binding",
            ));
        }
        if let Some(current) =
            pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods",
                &name,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::conflict(
                "pods",
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        set_condition(&mut pod, "PodScheduled", "True", None, None);
        match state.store.update(&key, encode(&pod), Some(prev.mod_revision)).await {
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, "pods", &name)),
            Ok(_) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ));
            }
        }
    }
    Err(ApiError::conflict("pods", &name, "too many concurrent writers; try again"))
}

/// Set (or replace) a pod condition, keeping lastTransitionTime when the status is unchanged.
pub fn set_condition(
    pod: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conds =
        pod["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else { return };
    let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds.iter_mut().find(|x| x.get("type").and_then(Value::as_str) == Some(ty)) {
        Some(existing) => {
            if existing.get("status").and_then(Value::as_str) == Some(status) {
                c["lastTransitionTime"] =
                    existing.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
            *existing = c;
        }
        None => conds.push(c),
    }
}

/// `GET pods/{name}/log`.
pub async fn pod_log(
    state: &Arc<State>,
    target: &Target,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = get(state, target).await?;
    let name = name_of(&pod).to_string();
    let containers: Vec<String> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let main: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None => match pod
            .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
            .and_then(Value::as_str)
        {
            Some(d) if containers.iter().any(|c| c == d) => d.to_string(),
            _ if main.len() == 1 => main[0].to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                )));
            }
        },
    };
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    let statuses = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/status/{l}")).and_then(Value::as_array))
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(&container))
        .cloned();
    let previous = query_bool(q, "previous");
    let waiting = statuses.as_ref().and_then(|s| s.pointer("/state/waiting"));
    let ran_before =
        statuses.as_ref().is_some_and(|s| s.pointer("/lastState/terminated").is_some());
    if node.is_empty() || statuses.is_none() || (waiting.is_some() && !ran_before && !previous) {
        let reason = waiting
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let source = state
        .log_sources
        .read()
        .map_err(|_| ApiError::internal("log source registry poisoned"))?
        .get(&node)
        .cloned();
    let source: Arc<dyn PodLogSource> = match source {
        Some(source) => source,
        None => match state.remote_kubelet(&node).await? {
            Some(remote) => remote,
            None => {
                return Err(ApiError::internal(format!(
                    "node {node:?} serves no kubelet API and has no log endpoint registered with this api server"
                )));
            }
        },
    };
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let request = skiff_api::logs::LogRequest {
        namespace: target.namespace.clone().unwrap_or_default(),
        pod: name.clone(),
        pod_uid: pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string(),
        container,
        follow: query_bool(q, "follow"),
        previous,
        timestamps: query_bool(q, "timestamps"),
        tail_lines: num("tailLines"),
        since_seconds: num("sinceSeconds"),
        since_time: q.get("sinceTime").cloned(),
        limit_bytes: num("limitBytes"),
    };
    let stream = source.logs(request).await.map_err(|e| match e {
        skiff_api::logs::LogError::NotFound(m) => ApiError::new(404, "NotFound", m),
        skiff_api::logs::LogError::BadRequest(m) => ApiError::bad_request(m),
        skiff_api::logs::LogError::Internal(m) => ApiError::internal(m),
    })?;
    let body = Body::from_stream(futures::StreamExt::map(stream, |r| r));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

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
        Some(view) => dispatch_view(state, method, target, view, headers, body, q).await,
        None => dispatch_stored(state, method, target, headers, body, q).await,
    }
}

/// A request to a view (another version of a stored resource): the body is converted to the
/// storage shape, the request served as for the stored resource, and the answer converted back.
async fn dispatch_view(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    view: &ResourceInfo,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let mut warnings = Vec::new();
    let converted;
    let mut json_headers = headers.clone();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let apply =
        method == Method::PATCH && PatchType::from_content_type(ct) == Some(PatchType::Apply);
    let body = if apply {
        // An applied configuration is a (partial) object in the view's shape.
        let mut obj: Value = serde_yaml_ng::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}"))
        })?;
        objects::check_type(&mut obj, view)?;
        let stored = convert::to_storage(obj, view, &target.resource.api_version());
        converted = serde_json::to_vec(&stored).unwrap_or_default();
        &converted[..]
    } else if matches!(method.as_str(), "POST" | "PUT") && target.subresource.is_none() {
        let mut obj = parse_body(headers, body)?;
        objects::check_type(&mut obj, view)?;
        warnings = field_validation(view, &obj, q)?;
        let stored = convert::to_storage(obj, view, &target.resource.api_version());
        converted = serde_json::to_vec(&stored).unwrap_or_default();
        json_headers
            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        &converted[..]
    } else {
        body
    };
    let resp = dispatch_stored(state, method, target, &json_headers, body, q).await?;
    if query_bool(q, "watch") {
        return Ok(resp);
    }
    Ok(with_warnings(convert_response(resp, view).await?, &warnings))
}

/// Convert a buffered JSON answer about stored objects into the view's version.
async fn convert_response(resp: Response, view: &ResourceInfo) -> Result<Response, ApiError> {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading a response to convert: {e}")))?;
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if kind == view.kind {
        v = convert::from_storage(v, view);
    } else if kind == view.list_kind {
        v["apiVersion"] = json!(view.api_version());
        if let Some(Value::Array(items)) = v.get_mut("items") {
            for item in items.iter_mut() {
                *item = convert::from_storage(std::mem::take(item), view);
            }
        }
    }
    Ok(Response::from_parts(parts, Body::from(serde_json::to_vec(&v).unwrap_or_default())))
}

async fn dispatch_stored(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let sub = target.subresource.as_deref();
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
        ("DELETE", false, None) => delete_collection(state, target, headers, body, q).await,
        ("GET", false, _) if query_bool(q, "watch") => {
            watch::watch(state, target, headers, q).await
        }
        ("GET", false, _) => list(state, target, headers, q).await,
        ("GET", true, Some("log")) => pod_log(state, target, q).await,
        ("GET", true, _) => {
            let obj = get(state, target).await?;
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            if table::wants_table(accept) {
                let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                let rv = resource_version_of(&obj).unwrap_or("").to_string();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(target.resource.kind, &[obj], &rv, None, include),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        ("POST", _, _) => create(state, target, headers, body, q).await,
        ("PUT", true, Some("status" | "finalize") | None) => {
            update(state, target, headers, body, q).await
        }
        ("PATCH", true, Some("status") | None) => patch(state, target, headers, body, q).await,
        ("DELETE", true, None) => delete(state, target, headers, body, q).await,
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}
