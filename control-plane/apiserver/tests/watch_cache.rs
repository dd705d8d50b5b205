//! Watches and lists served from the watch cache, over a real RaftStore (RocksDB in a temp
//! dir), driven through the api server's router: selector transitions, resumes, initial
//! events with their bookmark, consistent lists, protobuf lists and watch frames, and the
//! 410 that ends a watcher which stopped reading.

mod common;

use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream};
use common::{Api, api};
use futures::StreamExt;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use skiff_api::protobuf;
use skiff_apiserver::InProcess;
use tower::ServiceExt;

impl Api {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        accept: &str,
        body: Value,
    ) -> http::Response<Body> {
        let (ct, body) = match &body {
            Value::Null => ("application/json", Body::empty()),
            b if method == "PATCH" => ("application/merge-patch+json", Body::from(b.to_string())),
            b => ("application/json", Body::from(b.to_string())),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, ct)
            .header(header::ACCEPT, accept)
            .body(body)
            .expect("request");
        req.extensions_mut().insert(InProcess);
        self.server.router().oneshot(req).await.expect("response")
    }

    /// A watch as a client outside the server makes it (with the admin token).
    async fn external_watch(&self, query: &str) -> Lines {
        let req = Request::get(format!("/api/v1/namespaces/w/configmaps?watch=true&{query}"))
            .header(header::AUTHORIZATION, "Bearer secret-token")
            .body(Body::empty())
            .expect("request");
        let resp = self.server.router().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        Lines { body: resp.into_body().into_data_stream(), buf: Vec::new() }
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let resp = self.send(method, uri, "application/json", body).await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 26).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, v) = self.json(method, uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {v}");
        v
    }

    async fn watch(&self, query: &str) -> Lines {
        let resp = self
            .send(
                "GET",
                &format!("/api/v1/namespaces/w/configmaps?watch=true&{query}"),
                "application/json",
                Value::Null,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        Lines { body: resp.into_body().into_data_stream(), buf: Vec::new() }
    }
}

fn cm(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "w", "labels": {"app": app}},
           "data": {"k": "v"}})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).expect("rv")
}

/// The JSON lines of a watch body.
struct Lines {
    body: BodyDataStream,
    buf: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` at the end of the stream; panics after 10 s.
    async fn next(&mut self) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await.expect("an event within 10 s")
            {
                Some(chunk) => self.buf.extend_from_slice(&chunk.expect("chunk")),
                None => return None,
            }
        }
    }

    async fn event(&mut self) -> (String, String, u64) {
        let ev = self.next().await.expect("an event");
        let obj = &ev["object"];
        (
            ev["type"].as_str().expect("type").to_string(),
            obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
            rv(obj),
        )
    }

    /// Read `total` events: each ADDED, each a new name, in increasing resourceVersion.
    async fn expect_added_in_order(&mut self, total: usize, who: &str) {
        let (mut last, mut names) = (0, std::collections::BTreeSet::new());
        for i in 0..total {
            let (ty, name, rv) = self.event().await;
            assert_eq!(ty, "ADDED", "{who} event {i}");
            assert!(rv > last, "{who} event {i} at {rv} after {last}: out of order");
            assert!(names.insert(name), "{who} event {i} repeated");
            last = rv;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_should_follow_selectors_resume_and_send_initial_events() {
    let a = api().await;
    a.ok("POST", "/api/v1/namespaces", json!({"metadata": {"name": "w"}})).await;
    let first = a.ok("POST", "/api/v1/namespaces/w/configmaps", cm("a", "x")).await;
    a.ok("POST", "/api/v1/namespaces/w/configmaps", cm("b", "y")).await;

    let mut x = a
        .watch("labelSelector=app%3Dx&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        .await;
    assert_eq!(x.event().await.0, "ADDED");
    let bookmark = x.next().await.expect("bookmark");
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");

    let mut all = a.watch(&format!("resourceVersion={}", rv(&first))).await;
    let to_x = a
        .ok(
            "PATCH",
            "/api/v1/namespaces/w/configmaps/b",
            json!({"metadata": {"labels": {"app": "x"}}}),
        )
        .await;
    let to_z = a
        .ok(
            "PATCH",
            "/api/v1/namespaces/w/configmaps/a",
            json!({"metadata": {"labels": {"app": "z"}}}),
        )
        .await;
    let (status, _) = a.json("DELETE", "/api/v1/namespaces/w/configmaps/b", Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    // The selector's watcher sees b join, a leave and b go, each at its write's revision.
    assert_eq!(x.event().await, ("ADDED".into(), "b".into(), rv(&to_x)));
    assert_eq!(x.event().await, ("DELETED".into(), "a".into(), rv(&to_z)));
    let (ty, name, deleted_at) = x.event().await;
    assert_eq!((ty.as_str(), name.as_str()), ("DELETED", "b"));
    assert!(deleted_at > rv(&to_z));
    // The resumed watcher replays everything after its revision, in order.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (ty, name, _) = all.event().await;
        seen.push(format!("{ty} {name}"));
    }
    assert_eq!(seen, ["ADDED b", "MODIFIED b", "MODIFIED a", "DELETED b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_the_cache_should_be_consistent_and_equal_in_json_and_protobuf() {
    let a = api().await;
    a.ok("POST", "/api/v1/namespaces", json!({"metadata": {"name": "w"}})).await;
    // Each list right after a write includes it: a consistent read, not a stale cache.
    for i in 0..30 {
        let created =
            a.ok("POST", "/api/v1/namespaces/w/configmaps", cm(&format!("c{i:02}"), "x")).await;
        let list = a.ok("GET", "/api/v1/namespaces/w/configmaps", Value::Null).await;
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), i + 1, "list after create {i}");
        assert_eq!(items.last().expect("last")["metadata"], created["metadata"]);
        assert!(rv(&list) >= rv(&created));
    }
    let list = a.ok("GET", "/api/v1/namespaces/w/configmaps?resourceVersion=0", Value::Null).await;
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("ConfigMapList"), Some("v1"))
    );
    assert_eq!(list["items"].as_array().map(Vec::len), Some(30));
    let newer = format!(
        "/api/v1/namespaces/w/configmaps?resourceVersion={}&resourceVersionMatch=NotOlderThan",
        rv(&list)
    );
    assert_eq!(a.ok("GET", &newer, Value::Null).await["items"], list["items"]);
    let selected = a.ok("GET", "/api/v1/namespaces/w/configmaps?labelSelector=app%3Dx&fieldSelector=metadata.name%3Dc07", Value::Null).await;
    assert_eq!(selected["items"].as_array().map(Vec::len), Some(1));

    // Paged: the first page from the cache, the rest from the store at the same revision.
    let (mut paged, mut uri) = (Vec::new(), "/api/v1/namespaces/w/configmaps?limit=7".to_string());
    loop {
        let page = a.ok("GET", &uri, Value::Null).await;
        assert_eq!(rv(&page), rv(&list), "every page is at the first page's revision");
        paged.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["metadata"]["continue"].as_str() {
            Some(c) => uri = format!("/api/v1/namespaces/w/configmaps?limit=7&continue={c}"),
            None => break,
        }
    }
    assert_eq!(Value::from(paged), list["items"]);

    let resp =
        a.send("GET", "/api/v1/namespaces/w/configmaps", protobuf::CONTENT_TYPE, Value::Null).await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], protobuf::CONTENT_TYPE);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 26).await.expect("body");
    let decoded = protobuf::decode(&bytes).expect("a protobuf list");
    assert_eq!(decoded["kind"], "ConfigMapList");
    let names = |l: &Value| -> Vec<(String, String)> {
        l["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    i["metadata"]["name"].as_str().unwrap_or("").into(),
                    i["metadata"]["resourceVersion"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    };
    assert_eq!(names(&decoded), names(&list));
    assert_eq!(decoded["items"][3]["data"], list["items"][3]["data"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_watch_should_send_framed_events() {
    let a = api().await;
    a.ok("POST", "/api/v1/namespaces", json!({"metadata": {"name": "w"}})).await;
    let resp = a
        .send(
            "GET",
            "/api/v1/namespaces/w/configmaps?watch=true&resourceVersion=0",
            "application/vnd.kubernetes.protobuf, application/json",
            Value::Null,
        )
        .await;
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let mut body = resp.into_body().into_data_stream();
    a.ok("POST", "/api/v1/namespaces/w/configmaps", cm("p", "x")).await;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        if let Some((ev, _)) = protobuf::decode_watch_frame(&buf).expect("a frame") {
            break ev;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, body.next()).await.expect("a frame in 10 s");
        buf.extend_from_slice(&chunk.expect("open").expect("chunk"));
    };
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "p");
    assert_eq!(event["object"]["data"]["k"], "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_should_end_with_410_while_others_see_every_event() {
    let a = api().await;
    a.ok("POST", "/api/v1/namespaces", json!({"metadata": {"name": "w"}})).await;
    let mut fast = a.watch("resourceVersion=0").await;
    let mut slow = a.external_watch("resourceVersion=0").await;
    // The server's own components are never dropped: one of theirs that falls behind
    // follows the store's history instead.
    let mut own = a.watch("resourceVersion=0").await;
    // The same with a selector (the store's events are then decoded to be matched).
    let mut own_selective = a.watch("resourceVersion=0&labelSelector=%21missing").await;
    // Enough writes to fill the slow watcher's few buffered chunks and then the cache's
    // window of 4,096 events behind it.
    let total = 6000;
    let reader = tokio::spawn(async move { fast.expect_added_in_order(total, "fast").await });
    let padding = "x".repeat(200);
    futures::stream::iter(0..total)
        .for_each_concurrent(16, |i| {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{i}"), "namespace": "w"}, "data": {"pad": padding}});
            let a = &a;
            async move {
                a.ok("POST", "/api/v1/namespaces/w/configmaps", body).await;
            }
        })
        .await;
    reader.await.expect("the fast watcher saw every event in order");
    // The slow watcher holds only a bounded prefix, then the 410 that tells it to list again.
    let mut events = 0;
    let end = loop {
        let ev = slow.next().await.expect("the stream ends with an error event");
        if ev["type"] != "ADDED" {
            break ev;
        }
        events += 1;
    };
    assert!(events < total, "a slow watcher kept all {events} events");
    assert_eq!(end["type"], "ERROR");
    assert_eq!(end["object"]["code"], 410);
    assert!(slow.next().await.is_none(), "the stream ends after the error");
    for own in [&mut own, &mut own_selective] {
        own.expect_added_in_order(total, "in-process").await;
    }
}
