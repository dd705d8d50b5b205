//! `nodes/{name}/proxy/{path}` routed through the api server's router to a node's registered
//! `NodeEndpoints`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use skiff_api::nodes::{NodeEndpoints, NodeProxyError, NodeProxyRequest, NodeProxyResponse};
use skiff_apiserver::{ApiServer, InProcess};
use skiff_store::RaftStore;
use tower::ServiceExt;

/// A node answering `stats/summary` with a fixed summary and remembering what it was asked.
#[derive(Default)]
struct FakeNode {
    asked: Mutex<Vec<NodeProxyRequest>>,
}

#[async_trait::async_trait]
impl NodeEndpoints for FakeNode {
    async fn proxy(&self, req: NodeProxyRequest) -> Result<NodeProxyResponse, NodeProxyError> {
        self.asked.lock().expect("lock").push(req.clone());
        match req.path.as_str() {
            "stats/summary" => Ok(NodeProxyResponse::ok(
                "application/json",
                json!({"node": {"nodeName": "n1"}, "pods": []}).to_string(),
            )),
            "healthz" => Ok(NodeProxyResponse::ok("text/plain", "ok")),
            _ => Err(NodeProxyError::NotFound("404 page not found".into())),
        }
    }
}

async fn call(
    server: &ApiServer,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Vec<u8>) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    req.extensions_mut().insert(InProcess);
    let resp = server.router().oneshot(req).await.expect("response");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, ct, bytes.to_vec())
}

#[tokio::test]
async fn node_proxy_should_reach_the_registered_node_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RaftStore::open(&dir.path().join("store")).await.unwrap());
    let server = ApiServer::new(store, "secret-token".into(), "127.0.0.1:1".into());
    server.bootstrap().await.unwrap();
    let node = Arc::new(FakeNode::default());
    server.register_node_endpoints("n1", node.clone());

    let (code, ct, body) =
        call(&server, "GET", "/api/v1/nodes/n1/proxy/stats/summary?only_cpu_and_memory=true", None)
            .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ct, "application/json");
    let summary: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(summary["node"]["nodeName"], "n1");
    let asked = node.asked.lock().unwrap()[0].clone();
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str(), asked.query.as_str()),
        ("GET", "stats/summary", "only_cpu_and_memory=true")
    );

    let (code, _, body) = call(&server, "GET", "/api/v1/nodes/n1/proxy/healthz", None).await;
    assert_eq!((code, body.as_slice()), (StatusCode::OK, &b"ok"[..]));

    let (code, _, body) = call(&server, "GET", "/api/v1/nodes/n1/proxy/nope", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );

    // An unknown node is NotFound; a known one with no endpoints is unavailable.
    let (code, _, _) = call(&server, "GET", "/api/v1/nodes/n2/proxy/healthz", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let n2 = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}});
    let (code, _, _) = call(&server, "POST", "/api/v1/nodes", Some(n2)).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _, _) = call(&server, "GET", "/api/v1/nodes/n2/proxy/healthz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);

    // Discovery lists the subresource.
    let (_, _, body) = call(&server, "GET", "/api/v1", None).await;
    let list: Value = serde_json::from_slice(&body).unwrap();
    let proxy = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "nodes/proxy")
        .expect("nodes/proxy in discovery");
    assert_eq!(proxy["kind"], "NodeProxyOptions");
}
