//! Reads: get and list (label and field selectors, paging with continue tokens, Kubernetes'
//! `resourceVersion` semantics, Table answers). Watch lives in `crate::watch`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, list_prefix};
use skiff_store::{Consistency, KeyValue, ListOptions, StoreError};

use super::{Target, decode, json_response};
use crate::errors::ApiError;
use crate::selectors::{FieldSelector, LabelSelector, supported_fields};
use crate::{State, objects, table};

/// `GET` of one object from the store.
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

/// `GET` of one object: the object, or a one-row Table when the client asks for one.
pub(super) async fn get_response(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let obj = get(state, target).await?;
    if let Some(include) = wanted_table(headers, q) {
        let rv = objects::resource_version_of(&obj).unwrap_or("").to_string();
        return Ok(json_response(
            StatusCode::OK,
            &table::to_table(
                target.view.as_ref().unwrap_or(&target.resource),
                &[obj],
                &rv,
                None,
                include,
            ),
        ));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// The `includeObject` policy of a Table answer, when the client accepts one.
pub(crate) fn wanted_table<'q>(
    headers: &HeaderMap,
    q: &'q HashMap<String, String>,
) -> Option<&'q str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    table::wants_table(accept)
        .then(|| q.get("includeObject").map(String::as_str).unwrap_or("Metadata"))
}

/// The label and field selectors of a list, watch or deletecollection.
pub fn selectors(
    res: &ResourceInfo,
    q: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
        supported_fields(crate::selectors::fields_key(res)),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

/// `GET` of a collection: one page of the objects matching the selectors, or a Table.
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
    let table = wanted_table(headers, q);
    if token.is_none()
        && target.view.is_none()
        && table.is_none()
        && let Some(resp) =
            list_from_cache(state, res, headers, q, &prefix, limit, &labels, &fields).await
    {
        return Ok(resp);
    }
    let store_err = |e: StoreError| ApiError::from_store(e, res.plural, "");
    let mut options = list_read_options(state, q, token.as_ref())?;
    let filtered = !labels.is_empty() || !fields.is_empty();
    // Selectors filter after the store pages, so a page may take several store reads; every
    // read after the first is pinned to the first one's revision. Items are kept as decoded
    // objects only for a Table (or a view's conversion); a list's JSON is the stored bytes.
    let mut objects = Vec::new();
    let mut raw: Vec<Bytes> = Vec::new();
    let mut next = None;
    let revision = loop {
        let have = objects.len() + raw.len();
        options.limit = limit.map_or(0, |l| (l - have).max(16));
        let page = state.store.list_with(&prefix, &options).await.map_err(|e| match (&token, e) {
            (Some(_), skiff_store::StoreError::Compacted { .. }) => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            (_, e) => store_err(e),
        })?;
        options.revision = Some(page.revision);
        let count = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            let obj = if table.is_some() || filtered { Some(decode(kv)?) } else { None };
            if obj
                .as_ref()
                .is_some_and(|o| !labels.matches(objects::labels_of(o)) || !fields.matches(o))
            {
                continue;
            }
            match obj {
                Some(obj) if table.is_some() => objects.push(obj),
                _ => raw.push(stamped(kv)?),
            }
            if limit.is_some_and(|l| objects.len() + raw.len() >= l) && (i + 1 < count || page.more)
            {
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
    if let Some(include) = table {
        return Ok(json_response(
            StatusCode::OK,
            &table::to_table(
                target.view.as_ref().unwrap_or(res),
                &objects,
                &rv,
                next.as_deref(),
                include,
            ),
        ));
    }
    Ok(json_list(res, &rv, next.as_deref(), Arc::new(raw)))
}

/// A stored object's JSON with its resourceVersion, without decoding it.
fn stamped(kv: &KeyValue) -> Result<Bytes, ApiError> {
    crate::objects::stamp_resource_version(&kv.value, kv.mod_revision)
        .map(Bytes::from)
        .ok_or_else(|| ApiError::internal(format!("corrupt object at {}: no metadata", kv.key)))
}

/// A list's JSON body, streamed chunk by chunk from its items' bytes.
fn json_list(
    res: &ResourceInfo,
    rv: &str,
    next: Option<&str>,
    items: Arc<impl AsRef<[Bytes]> + Send + Sync + 'static>,
) -> Response {
    // ListMeta in Go's order; a custom resource's list is a map to Go, written sorted.
    // A custom resource's list always has `continue`, empty or not (kube sets it on the
    // unstructured list's map).
    let meta = match (res.is_custom(), next) {
        (true, c) => format!(
            "{{\"continue\":{},\"resourceVersion\":{}}}",
            Value::from(c.unwrap_or("")),
            Value::from(rv)
        ),
        (false, Some(c)) => {
            format!("{{\"resourceVersion\":{},\"continue\":{}}}", Value::from(rv), Value::from(c))
        }
        (false, None) => format!("{{\"resourceVersion\":{}}}", Value::from(rv)),
    };
    let (kind, api_version) = (Value::from(res.list_kind), Value::from(res.api_version()));
    let (head, tail) = if res.is_custom() {
        (
            format!("{{\"apiVersion\":{api_version},\"items\":["),
            format!("],\"kind\":{kind},\"metadata\":{meta}}}\n"),
        )
    } else {
        (
            format!(
                "{{\"kind\":{kind},\"apiVersion\":{api_version},\"metadata\":{meta},\"items\":["
            ),
            "]}\n".to_string(),
        )
    };
    let tail = Bytes::from(tail);
    // A built-in list's items carry no TypeMeta (Go leaves the empty one out); stored objects
    // start with theirs, so it is cut off as they stream. A custom resource's keep theirs.
    let type_meta: Option<Bytes> = (!res.is_custom()).then(|| {
        Bytes::from(format!(
            "{{\"kind\":{kind_item},\"apiVersion\":{api_version},",
            kind_item = Value::from(res.kind)
        ))
    });
    let chunks = futures::stream::unfold((Some(head), 0usize), move |(head, mut i)| {
        let items = items.clone();
        let tail = tail.clone();
        let type_meta = type_meta.clone();
        async move {
            let items = items.as_ref().as_ref();
            let mut buf = match head {
                Some(h) => h.into_bytes(),
                None if i > items.len() => return None,
                None => Vec::with_capacity(LIST_CHUNK),
            };
            while i < items.len() && buf.len() < LIST_CHUNK {
                if i > 0 {
                    buf.push(b',');
                }
                match &type_meta {
                    Some(tm) if items[i].starts_with(tm) => {
                        buf.push(b'{');
                        buf.extend_from_slice(&items[i][tm.len()..]);
                    }
                    _ => buf.extend_from_slice(&items[i]),
                }
                i += 1;
            }
            if i == items.len() {
                buf.extend_from_slice(&tail);
                i += 1;
            }
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(buf)), (None, i)))
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// Items gathered into one chunk of a list body streamed from the cache.
const LIST_CHUNK: usize = 256 * 1024;

/// A list answered from the watch cache, when its `resourceVersion` semantics allow: `0`
/// (any), not older than N, or a consistent read once the cache has caught up with the
/// store's revision (its first page, when paged). The items' cached bytes are copied into the body (JSON,
/// streamed) or the list envelope (protobuf); nothing is decoded or encoded again. `None`
/// leaves the list to the store (paged reads, exact revisions, a cache not ready).
#[allow(clippy::too_many_arguments)]
async fn list_from_cache(
    state: &Arc<State>,
    res: &ResourceInfo,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    prefix: &str,
    limit: Option<usize>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<Response> {
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).unwrap_or("");
    let consistent = match (rv, rv_match) {
        ("", "") => true,
        // As kube-apiserver, a list at any revision ignores `limit` when served from cache.
        ("0", "" | "NotOlderThan") => false,
        (n, "" | "NotOlderThan") if limit.is_none() && n.parse::<u64>().is_ok() => false,
        _ => return None,
    };
    let cache = state.caches.get(res);
    if !cache.is_ready() {
        return None;
    }
    let need = if consistent {
        state.store.consistent_revision().await.ok()?
    } else {
        rv.parse::<u64>().unwrap_or(0)
    };
    if !state.caches.reach(&cache, need).await {
        return None;
    }
    let (mut items, revision) = cache.snapshot(prefix, labels, fields)?;
    // A consistent list's first page comes from the cache; the pages after it from the
    // store, at the same revision (the continue token carries it).
    let mut next = None;
    if let Some(l) = limit.filter(|l| consistent && items.len() > *l) {
        items.truncate(l);
        next = items.last().map(|c| encode_continue(&c.key, revision));
    }
    let rv = revision.to_string();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let api_version = res.api_version();
    if crate::codec::wants_protobuf(accept) && !crate::codec::wants_yaml(accept) {
        let envelopes: Option<Vec<&Bytes>> = items.iter().map(|c| c.protobuf()).collect();
        let body = envelopes.and_then(|envs| {
            skiff_api::protobuf::encode_list(
                &api_version,
                res.list_kind,
                &rv,
                next.as_deref(),
                envs.iter().map(|b| b.as_ref()),
            )
            .ok()
        });
        if let Some(body) = body {
            return Some(
                (StatusCode::OK, [(header::CONTENT_TYPE, skiff_api::protobuf::CONTENT_TYPE)], body)
                    .into_response(),
            );
        }
    }
    let items: Vec<Bytes> = items.iter().map(|c| c.json.clone()).collect();
    Some(json_list(res, &rv, next.as_deref(), Arc::new(items)))
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
