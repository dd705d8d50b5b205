//! Watch: a stream of `{"type": …, "object": …}` lines from the store's revision stream, with
//! selector transitions (an object leaving a selector is DELETED for that watcher), bookmarks,
//! streaming lists (`sendInitialEvents`) and 410 Gone for compacted revisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_api::{list_prefix, object_key};
use skiff_store::{StoreError, WatchEvent};

use crate::errors::ApiError;
use crate::handlers::{Target, decode, selectors};
use crate::objects::labels_of;
use crate::{State, table};

fn line(ty: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub async fn watch(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = target.resource.clone();
    let (labels, fields) = selectors(&res, q)?;
    // A watch on one name only needs that key's events.
    let prefix = match (fields.exact_name(), res.namespaced, &target.namespace) {
        (Some(name), true, Some(ns)) => object_key(&res, Some(ns), name),
        (Some(name), false, _) => object_key(&res, None, name),
        _ => list_prefix(&res, target.namespace.as_deref()),
    };
    let exact = fields.exact_name().is_some() && (target.namespace.is_some() || !res.namespaced);
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let send_initial = q.get("sendInitialEvents").map(String::as_str);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let as_table = table::wants_table(accept);
    let include = q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
    let timeout =
        q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800).min(3600);

    if send_initial == Some("true")
        && q.get("resourceVersionMatch").is_some_and(|m| m != "NotOlderThan")
    {
        return Err(ApiError::invalid("ListOptions", "", vec![("resourceVersionMatch".into(), "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into())]));
    }
    let mut initial: Vec<Value> = Vec::new();
    let start = if send_initial == Some("true")
        || (send_initial.is_none() && (rv.is_empty() || rv == "0"))
    {
        let listed =
            state.store.list(&prefix).await.map_err(|e| ApiError::from_store(e, res.plural, ""))?;
        for kv in &listed.items {
            if exact && kv.key != prefix {
                continue;
            }
            let obj = decode(kv)?;
            if labels.matches(labels_of(&obj)) && fields.matches(&obj) {
                initial.push(obj);
            }
        }
        listed.revision
    } else if rv.is_empty() || rv == "0" {
        state.store.current_revision()
    } else {
        rv.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?
    };

    let render = {
        let kind = res.kind;
        let include = include.clone();
        let view = target.view.clone();
        move |obj: &Value| -> Value {
            if as_table {
                let rv =
                    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
                table::to_table(kind, std::slice::from_ref(obj), rv, None, &include)
            } else if let Some(view) = &view {
                crate::convert::from_storage(obj.clone(), view)
            } else {
                obj.clone()
            }
        }
    };
    let mut head: Vec<Bytes> = initial.iter().map(|o| line("ADDED", &render(o))).collect();
    let bookmark = |rv: u64, end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": res.kind, "apiVersion": target.view.as_ref().unwrap_or(&res).api_version(), "metadata": meta}),
        )
    };
    if send_initial == Some("true") && bookmarks {
        head.push(bookmark(start, true));
    }

    let events = match state.store.watch(&prefix, start).await {
        Ok(s) => s,
        Err(e @ StoreError::Compacted { .. }) => {
            let status = ApiError::from_store(e, res.plural, "").to_status();
            let body = line("ERROR", &status);
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body)
                .into_response());
        }
        Err(e) => return Err(ApiError::from_store(e, res.plural, "")),
    };

    let metrics_gauge = state.metrics.inflight_watches.clone();
    metrics_gauge.inc();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let api_version = target.view.as_ref().unwrap_or(&res).api_version();
    tokio::spawn(async move {
        let _guard = GaugeGuard(metrics_gauge);
        for b in head {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let mut events = events;
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            let out = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                ev = events.next() => match ev {
                    None => return,
                    Some(Err(e)) => {
                        let _ = tx.send(line("ERROR", &ApiError::from_store(e, res.plural, "").to_status())).await;
                        return;
                    }
                    // The store vouches that nothing up to `revision` is pending: a bookmark.
                    Some(Ok(WatchEvent::Progress { revision })) => bookmarks.then(|| {
                        line("BOOKMARK", &json!({"kind": res.kind, "apiVersion": api_version, "metadata": {"resourceVersion": revision.to_string()}}))
                    }),
                    Some(Ok(ev)) => {
                        if exact && ev.key() != Some(prefix.as_str()) {
                            continue;
                        }
                        translate(&ev, &labels, &fields).map(|(ty, obj)| line(ty, &render(&obj)))
                    }
                }
            };
            if let Some(b) = out
                && tx.send(b).await.is_err()
            {
                return;
            }
        }
    });
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache, private")],
        Body::from_stream(stream),
    )
        .into_response())
}

struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Turn a store event into a watch event for a watcher with these selectors, or none.
fn translate(
    ev: &WatchEvent,
    labels: &crate::selectors::LabelSelector,
    fields: &crate::selectors::FieldSelector,
) -> Option<(&'static str, Value)> {
    let matches = |o: &Value| labels.matches(labels_of(o)) && fields.matches(o);
    match ev {
        WatchEvent::Put { kv, prev } => {
            let obj = decode(kv).ok()?;
            // Without selectors every object matches: no need to decode the previous one.
            let was = if labels.is_empty() && fields.is_empty() {
                prev.is_some()
            } else {
                prev.as_ref().and_then(|p| decode(p).ok()).is_some_and(|p| matches(&p))
            };
            let is = matches(&obj);
            match (was, is) {
                (false, true) => Some(("ADDED", obj)),
                (true, true) => Some(("MODIFIED", obj)),
                (true, false) => Some(("DELETED", obj)),
                (false, false) => None,
            }
        }
        WatchEvent::Delete { revision, prev, .. } => {
            let mut obj = decode(prev).ok()?;
            if !matches(&obj) {
                return None;
            }
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("resourceVersion".into(), json!(revision.to_string()));
            }
            Some(("DELETED", obj))
        }
        WatchEvent::Progress { .. } => None,
    }
}
