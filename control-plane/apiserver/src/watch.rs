//! Watch: a stream of `{"type": …, "object": …}` lines (or protobuf frames, when the client
//! prefers them), with selector transitions (an object leaving a selector is DELETED for that
//! watcher), bookmarks, streaming lists (`sendInitialEvents`) and 410 Gone for compacted
//! revisions. Watches are served from the resource's watch cache (`crate::cache`), sharing
//! each event's encoded bytes; what the cache cannot serve (a resume older than its window)
//! is served from the store's revision stream.

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

use skiff_api::{ResourceInfo, protobuf};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::cache::{Cached, CachedEvent, Message, Start, Subscription};
use crate::errors::ApiError;
use crate::handlers::{Target, decode, selectors};
use crate::objects::labels_of;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::{State, table};

/// One watch event as kube writes it: `{"type":…,"object":…}` and a newline.
pub(crate) fn line(ty: &str, object: &Value) -> Bytes {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(b"{\"type\":");
    skiff_api::gojson::write(&Value::from(ty), &mut v);
    v.extend_from_slice(b",\"object\":");
    skiff_api::gojson::write(object, &mut v);
    v.extend_from_slice(b"}\n");
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
    // Whether the watch starts with the current state as ADDED events.
    let initial_events =
        send_initial == Some("true") || (send_initial.is_none() && (rv.is_empty() || rv == "0"));
    if let Some(resp) = watch_from_cache(
        state,
        target,
        &CachedWatch {
            prefix: &prefix,
            exact,
            rv,
            send_initial,
            initial_events,
            bookmarks,
            labels: &labels,
            fields: &fields,
            accept,
            as_table,
            include: &include,
            timeout,
            in_process: headers.contains_key(crate::IN_PROCESS_HEADER),
        },
    )
    .await?
    {
        return Ok(resp);
    }
    let mut initial: Vec<Value> = Vec::new();
    let start = if initial_events {
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
        let shown = target.view.clone().unwrap_or_else(|| res.clone());
        let include = include.clone();
        let view = target.view.clone();
        move |obj: &Value| -> Value {
            if as_table {
                let rv =
                    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
                table::to_table(&shown, std::slice::from_ref(obj), rv, None, &include)
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
            let obj = decode(prev).ok()?;
            if !matches(&obj) {
                return None;
            }
            Some(("DELETED", crate::handlers::with_resource_version(obj, *revision)))
        }
        WatchEvent::Progress { .. } => None,
    }
}

/// What a watcher asked for, as the cache serves it.
struct CachedWatch<'a> {
    prefix: &'a str,
    /// Only the key `prefix` itself (a `metadata.name=` watch).
    exact: bool,
    rv: &'a str,
    send_initial: Option<&'a str>,
    /// The watch starts with the current state as ADDED events.
    initial_events: bool,
    bookmarks: bool,
    labels: &'a LabelSelector,
    fields: &'a FieldSelector,
    accept: &'a str,
    as_table: bool,
    include: &'a str,
    timeout: u64,
    /// A watch of the server's own components (in-process).
    in_process: bool,
}

/// Bytes a watcher gathers before it writes them out as one chunk.
const CHUNK: usize = 64 * 1024;

/// Least time between two writes of one watcher. An event after a quiet spell is written at
/// once; in a burst, each watcher writes what gathered every few milliseconds, so a thousand
/// watchers make a few hundred writes per second each at most instead of one per event, and
/// the CPU goes to the writes being watched.
const WRITE_GAP: Duration = Duration::from_millis(10);

/// Serve a watch from the resource's watch cache; `None` when the cache cannot (not built
/// yet, a revision it does not reach in time, a resume older than its window).
async fn watch_from_cache(
    state: &Arc<State>,
    target: &Target,
    w: &CachedWatch<'_>,
) -> Result<Option<Response>, ApiError> {
    let res = &target.resource;
    let cache = state.caches.get(res);
    let initial = w.initial_events;
    let (start, need) = match w.rv {
        "" if initial || w.send_initial.is_some() => {
            let Ok(rev) = state.store.consistent_revision().await else { return Ok(None) };
            (if initial { Start::Snapshot } else { Start::After(rev) }, rev)
        }
        "" | "0" => (if initial { Start::Snapshot } else { Start::Now }, 0),
        rv => {
            let n = rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            (if initial { Start::Snapshot } else { Start::After(n) }, n)
        }
    };
    if !state.caches.reach(&cache, need).await {
        return Ok(None);
    }
    let Some(sub) = cache.subscribe(w.prefix, start, w.labels, w.fields) else {
        return Ok(None);
    };
    let view = target.view.clone().unwrap_or_else(|| res.clone());
    let as_table = w.as_table;
    // A custom version converted by a webhook: the stored events are converted in batches
    // on their way out (see `crds::conversion::convert_watch`).
    let webhook =
        target.view.is_some() && !as_table && crate::crds::conversion::needs_webhook(&view);
    let api_version = view.api_version();
    let proto = !as_table
        && !webhook
        && crate::codec::wants_protobuf(w.accept)
        && protobuf::supports(&api_version, view.kind);
    let view_for_conversion = view.clone();
    let out = Out {
        proto,
        api_version,
        form: if as_table {
            Form::Table(w.include.to_string())
        } else if target.view.is_some() && !webhook {
            Form::View
        } else {
            Form::Stored
        },
        view,
    };
    let watcher = Watcher {
        out,
        prefix: w.prefix.to_string(),
        exact: w.exact,
        labels: w.labels.clone(),
        fields: w.fields.clone(),
        bookmarks: w.bookmarks,
        end_bookmark: w.send_initial == Some("true") && w.bookmarks,
        replay_from: w.in_process.then(|| state.store.clone()),
    };
    let content_type =
        if proto { "application/vnd.kubernetes.protobuf;stream=watch" } else { "application/json" };
    let gauge = state.metrics.inflight_watches.clone();
    gauge.inc();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let timeout = Duration::from_secs(w.timeout);
    tokio::spawn(async move {
        let _guard = GaugeGuard(gauge);
        let _ = tokio::time::timeout(timeout, watcher.run(sub, &tx)).await;
    });
    let rx = if webhook {
        crate::crds::conversion::convert_watch(state.clone(), view_for_conversion, rx)
    } else {
        rx
    };
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    Ok(Some(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache, private")],
            Body::from_stream(stream),
        )
            .into_response(),
    ))
}

/// How a watcher's objects are written.
enum Form {
    /// The stored version: the cached bytes as they are.
    Stored,
    /// Another version of the resource: converted per event.
    View,
    /// A Table row per event (`kubectl get -w`), with this `includeObject`.
    Table(String),
}

struct Out {
    proto: bool,
    form: Form,
    /// The resource as the watcher asked for it (its version).
    view: ResourceInfo,
    /// `view`'s apiVersion, worked out once.
    api_version: String,
}

impl Out {
    fn event(&self, ty: &str, c: &Cached, buf: &mut Vec<u8>) {
        match (&self.form, self.proto) {
            (Form::Stored, false) => {
                buf.extend_from_slice(b"{\"type\":\"");
                buf.extend_from_slice(ty.as_bytes());
                buf.extend_from_slice(b"\",\"object\":");
                buf.extend_from_slice(&c.json);
                buf.extend_from_slice(b"}\n");
            }
            (Form::Stored, true) => match c.protobuf() {
                Some(env) => {
                    buf.extend_from_slice(&protobuf::encode_watch_frame(ty, &self.api_version, env))
                }
                None => tracing::warn!(key = %c.key, "watch: an object has no protobuf form"),
            },
            (Form::View, _) => {
                self.value(ty, &crate::convert::from_storage(c.value(), &self.view), buf);
            }
            (Form::Table(include), _) => {
                let rv = c.revision.to_string();
                let row = table::to_table(&self.view, &[c.value()], &rv, None, include);
                self.value(ty, &row, buf);
            }
        }
    }

    fn value(&self, ty: &str, obj: &Value, buf: &mut Vec<u8>) {
        if self.proto {
            match protobuf::encode_watch_event(ty, obj) {
                Ok(frame) => buf.extend_from_slice(&frame),
                Err(e) => tracing::warn!(error = %e, "watch: an event has no protobuf form"),
            }
        } else {
            buf.extend_from_slice(&line(ty, obj));
        }
    }

    fn bookmark(&self, rv: u64, end: bool, buf: &mut Vec<u8>) {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.view.kind, "apiVersion": self.api_version, "metadata": meta});
        self.value("BOOKMARK", &obj, buf);
    }
}

struct Watcher {
    out: Out,
    prefix: String,
    exact: bool,
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    end_bookmark: bool,
    /// For the server's own components: a watcher that falls behind the cache's window
    /// follows the store's history from where it was instead of being ended with 410 (a
    /// controller's re-list of every pod costs far more than the replay).
    replay_from: Option<Arc<dyn skiff_store::Store>>,
}

impl Watcher {
    fn wants(&self, c: &Cached) -> bool {
        if self.exact { c.key == self.prefix } else { c.key.starts_with(&self.prefix) }
    }

    /// Add one message's output to `buf`.
    fn message(&self, msg: &Message, buf: &mut Vec<u8>) {
        match msg {
            Message::Event(ev) => self.event(ev, buf),
            Message::Progress(rev) if self.bookmarks => self.out.bookmark(*rev, false, buf),
            Message::Progress(_) => {}
        }
    }

    fn event(&self, ev: &CachedEvent, buf: &mut Vec<u8>) {
        if self.wants(&ev.object)
            && let Some(ty) = ev.for_watcher(&self.labels, &self.fields)
        {
            self.out.event(ty, &ev.object, buf);
        }
    }

    /// Write the start, then follow the channel until the client goes away. A watcher that
    /// falls behind the channel's window is ended with 410 Expired: it lists again.
    async fn run(self, sub: Subscription, tx: &tokio::sync::mpsc::Sender<Bytes>) {
        let send = |buf: &mut Vec<u8>| {
            // Buffers grow to what they hold: a thousand idle watchers must not each keep a
            // CHUNK-sized allocation (nor pass one on for a few hundred bytes).
            let chunk = Bytes::from(std::mem::take(buf));
            async move { tx.send(chunk).await.is_ok() }
        };
        let mut buf = Vec::new();
        for c in sub.initial.iter().filter(|c| self.wants(c)) {
            self.out.event("ADDED", c, &mut buf);
            if buf.len() >= CHUNK && !send(&mut buf).await {
                return;
            }
        }
        for ev in &sub.replay {
            self.event(ev, &mut buf);
            if buf.len() >= CHUNK && !send(&mut buf).await {
                return;
            }
        }
        if self.end_bookmark {
            self.out.bookmark(sub.revision, true, &mut buf);
        }
        if !buf.is_empty() && !send(&mut buf).await {
            return;
        }
        let mut rx = sub.rx;
        // Every event up to this revision has been handled.
        let mut reached = sub.revision;
        let now = tokio::time::Instant::now();
        let mut last_write = now.checked_sub(WRITE_GAP).unwrap_or(now);
        loop {
            let first = tokio::select! {
                _ = tx.closed() => return,
                m = rx.recv() => m,
            };
            // A burst: let the events of the next few milliseconds join this write.
            let due = last_write + WRITE_GAP;
            if tokio::time::Instant::now() < due {
                tokio::time::sleep_until(due).await;
            }
            let mut next = first.map_err(|e| matches!(e, RecvError::Closed));
            // Gather what else is pending into the same write.
            loop {
                match next {
                    Ok(msg) => {
                        reached = reached.max(match &msg {
                            Message::Event(ev) => ev.revision,
                            Message::Progress(rev) => *rev,
                        });
                        self.message(&msg, &mut buf);
                    }
                    Err(_) if self.replay_from.is_some() => {
                        if !buf.is_empty() && !send(&mut buf).await {
                            return;
                        }
                        return self.follow_store(reached, tx).await;
                    }
                    Err(closed) => {
                        let why = if closed {
                            "the watch cache was rebuilt; list again and watch from the new resourceVersion"
                        } else {
                            "the watcher fell too far behind; list again and watch from the new resourceVersion"
                        };
                        self.out.value("ERROR", &ApiError::gone(why).to_status(), &mut buf);
                        let _ = send(&mut buf).await;
                        return;
                    }
                }
                if buf.len() >= CHUNK {
                    break;
                }
                next = match rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(_)) => Err(false),
                    Err(TryRecvError::Closed) => Err(true),
                };
            }
            if !buf.is_empty() {
                if !send(&mut buf).await {
                    return;
                }
                last_write = tokio::time::Instant::now();
            }
        }
    }

    /// Go on from the store's history after `after` (see [`Watcher::replay_from`]).
    async fn follow_store(self, after: u64, tx: &tokio::sync::mpsc::Sender<Bytes>) {
        let Some(store) = self.replay_from.clone() else { return };
        let selective = !self.labels.is_empty() || !self.fields.is_empty();
        let mut buf = Vec::new();
        let failed = match store.watch(&self.prefix, after).await {
            Err(e) => e,
            Ok(mut events) => {
                tracing::debug!(prefix = %self.prefix, after, "watch: fell behind the cache; following the store");
                match self.forward_store(&mut events, selective, tx).await {
                    Some(e) => e,
                    None => return,
                }
            }
        };
        let status = ApiError::from_store(failed, self.out.view.plural, "").to_status();
        self.out.value("ERROR", &status, &mut buf);
        let _ = tx.send(Bytes::from(buf)).await;
    }

    /// Send the store's events on until the client goes away (`None`) or the store's watch
    /// fails (its error).
    async fn forward_store(
        &self,
        events: &mut skiff_store::WatchStream,
        selective: bool,
        tx: &tokio::sync::mpsc::Sender<Bytes>,
    ) -> Option<StoreError> {
        let kind = crate::selectors::fields_key(&self.out.view);
        let mut buf = Vec::new();
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return None,
                ev = events.next() => ev,
            };
            match next {
                None => return None,
                Some(Err(e)) => return Some(e),
                Some(Ok(WatchEvent::Progress { revision })) if self.bookmarks => {
                    self.out.bookmark(revision, false, &mut buf)
                }
                Some(Ok(ev)) => {
                    if let Some(ev) = Cached::event_from_store(kind, ev, selective) {
                        self.event(&ev, &mut buf);
                    }
                }
            }
            if !buf.is_empty() && tx.send(Bytes::from(std::mem::take(&mut buf))).await.is_err() {
                return None;
            }
        }
    }
}
