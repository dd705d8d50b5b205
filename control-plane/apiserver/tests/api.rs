//! The api server over a real RaftStore (RocksDB in a temp dir), driven through its router.

mod common;

use std::time::Duration;

use axum::body::Body;
use common::{Api, api};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use skiff_apiserver::InProcess;
use tower::ServiceExt;

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body)
            .expect("request");
        req.extensions_mut().insert(InProcess);
        let resp = self.server.router().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, uri, "application/json", body).await
    }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "hello:1"}]}})
}

#[tokio::test]
async fn crud_should_follow_kubernetes_semantics() {
    let a = api().await;
    let (code, created) = a.json("POST", "/api/v1/namespaces/default/pods", pod("web")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let rv: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > 0);
    assert_eq!(created["status"]["phase"], "Pending");

    let (code, dup) = a.json("POST", "/api/v1/namespaces/default/pods", pod("web")).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(dup["reason"], "AlreadyExists");
    assert_eq!(dup["kind"], "Status");

    let (code, missing) = a.json("GET", "/api/v1/namespaces/default/pods/nope", Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(missing["message"], "pods \"nope\" not found");

    let (code, _) = a.json("POST", "/api/v1/namespaces/ghost/pods", pod("x")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Stale resourceVersion → 409.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["metadata"]["labels"]["x"] = json!("y");
    let (code, body) = a.json("PUT", "/api/v1/namespaces/default/pods/web", stale).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");

    // Merge patch bumps the revision; an identical patch does not.
    let (code, patched) = a
        .call(
            "PATCH",
            "/api/v1/namespaces/default/pods/web",
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"tier": "front"}}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    let rv2 = patched["metadata"]["resourceVersion"].clone();
    assert_ne!(rv2, created["metadata"]["resourceVersion"]);
    let (_, again) = a
        .call(
            "PATCH",
            "/api/v1/namespaces/default/pods/web",
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"tier": "front"}}}),
        )
        .await;
    assert_eq!(again["metadata"]["resourceVersion"], rv2);

    // Invalid spec change → 422 with the field path.
    let (code, body) = a
        .call(
            "PATCH",
            "/api/v1/namespaces/default/pods/web",
            "application/strategic-merge-patch+json",
            json!({"spec": {"restartPolicy": "Never"}}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec");

    // Label and field selectors.
    a.json("POST", "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).await;
    let (_, list) =
        a.json("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb", Value::Null).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, list) =
        a.json("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dother", Value::Null).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (code, _) = a.json("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // limit + continue walk the whole list.
    let (_, page) = a.json("GET", "/api/v1/pods?limit=1", Value::Null).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, page2) =
        a.json("GET", &format!("/api/v1/pods?limit=1&continue={token}"), Value::Null).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_ne!(page["items"][0]["metadata"]["name"], page2["items"][0]["metadata"]["name"]);

    // An unscheduled pod is deleted at once.
    let (code, _) = a.json("DELETE", "/api/v1/namespaces/default/pods/web", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.json("GET", "/api/v1/namespaces/default/pods/web", Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn binding_then_delete_should_be_graceful_for_scheduled_pods() {
    let a = api().await;
    a.json("POST", "/api/v1/namespaces/default/pods", pod("p")).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, body) =
        a.json("POST", "/api/v1/namespaces/default/pods/p/binding", binding.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, _) = a.json("POST", "/api/v1/namespaces/default/pods/p/binding", binding).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (_, p) = a.json("GET", "/api/v1/namespaces/default/pods/p", Value::Null).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let (code, p) = a.json("DELETE", "/api/v1/namespaces/default/pods/p", Value::Null).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, _) = a
        .json("DELETE", "/api/v1/namespaces/default/pods/p", json!({"gracePeriodSeconds": 0}))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.json("GET", "/api/v1/namespaces/default/pods/p", Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn watch_should_stream_changes_from_a_revision() {
    let a = api().await;
    let (_, list) = a.json("GET", "/api/v1/namespaces/default/pods", Value::Null).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut req = Request::builder()
        .uri(format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}"))
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(InProcess);
    let resp = a.server.router().oneshot(req).await.expect("watch");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    a.json("POST", "/api/v1/namespaces/default/pods", pod("w")).await;
    a.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/w",
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"v": "2"}}}),
    )
    .await;
    a.json("DELETE", "/api/v1/namespaces/default/pods/w", Value::Null).await;
    let mut types = Vec::new();
    let mut buf = Vec::new();
    while types.len() < 3 {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("chunk");
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).expect("event json");
            types.push(ev["type"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn discovery_should_describe_served_resources() {
    let a = api().await;
    let (code, v) = a.json("GET", "/version", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["major"], "1");
    let (_, core) = a.json("GET", "/api/v1", Value::Null).await;
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods" && r["shortNames"][0] == "po")
    );
    let (_, groups) = a.json("GET", "/apis", Value::Null).await;
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "node.k8s.io"));
    let (_, rc) = a.json("GET", "/apis/node.k8s.io/v1/runtimeclasses/wasmtime", Value::Null).await;
    assert_eq!(rc["handler"], "wasmtime");
    let (_, ns) = a.json("GET", "/api/v1/namespaces", Value::Null).await;
    let names: Vec<&str> = ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"default") && names.contains(&"kube-system"), "{names:?}");
}

#[tokio::test]
async fn unauthenticated_requests_should_get_401() {
    let a = api().await;
    let req = Request::builder().uri("/api/v1/pods").body(Body::empty()).expect("request");
    let resp = a.server.router().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri("/api/v1/pods")
        .header("authorization", "Bearer secret-token")
        .body(Body::empty())
        .expect("request");
    let resp = a.server.router().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn paged_lists_should_be_one_snapshot_and_expire_with_compaction() {
    let a = api().await;
    for i in 0..5 {
        let (code, body) =
            a.json("POST", "/api/v1/namespaces/default/pods", pod(&format!("p{i}"))).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let (code, first) = a.json("GET", "/api/v1/namespaces/default/pods?limit=2", Value::Null).await;
    assert_eq!(code, StatusCode::OK, "{first}");
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first), ["p0", "p1"]);
    let token = first["metadata"]["continue"].as_str().expect("continue token").to_string();
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    // Changes after the first page do not show up in later pages.
    let (code, _) = a.json("DELETE", "/api/v1/namespaces/default/pods/p3", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.json("POST", "/api/v1/namespaces/default/pods", pod("p2a")).await;
    assert_eq!(code, StatusCode::CREATED);
    let mut rest = Vec::new();
    let mut next = Some(token.clone());
    while let Some(t) = next {
        let (code, page) = a
            .json(
                "GET",
                &format!("/api/v1/namespaces/default/pods?limit=2&continue={t}"),
                Value::Null,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], rv.as_str());
        rest.extend(names(&page));
        next = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(rest, ["p2", "p3", "p4"]);

    // Once the first page's revision is compacted, its continue token is 410 Gone.
    let store = &a.server.state().store;
    store.compact(store.current_revision()).await.expect("compact");
    let (code, gone) = a
        .json(
            "GET",
            &format!("/api/v1/namespaces/default/pods?limit=2&continue={token}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::GONE, "{gone}");
    assert_eq!(gone["reason"], "Expired");
    let (code, gone) = a
        .json(
            "GET",
            &format!(
                "/api/v1/namespaces/default/pods?resourceVersion={rv}&resourceVersionMatch=Exact"
            ),
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::GONE, "{gone}");

    // resourceVersion=0 reads what this server has; a future one times out with 504.
    let (code, any) =
        a.json("GET", "/api/v1/namespaces/default/pods?resourceVersion=0", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(names(&any), ["p0", "p1", "p2", "p2a", "p4"]);
    let future = store.current_revision() + 100;
    let (code, late) = a
        .json(
            "GET",
            &format!("/api/v1/namespaces/default/pods?resourceVersion={future}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::GATEWAY_TIMEOUT, "{late}");
    assert_eq!(late["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");
}
