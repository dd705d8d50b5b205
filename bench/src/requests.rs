//! Requests the api benchmarks share: raw calls over the kubeconfig's client, namespaces,
//! the benchmark pod, timed concurrent pod creates, and waiting for servers to go quiet.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode, header};

use crate::{Latencies, procfs};

pub const JSON: &str = "application/json";
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The share of one CPU the process uses over `window` while the benchmark sends nothing.
pub async fn idle_cpu(pid: u32, window: Duration) -> f64 {
    let before = procfs::cpu_time(pid);
    tokio::time::sleep(window).await;
    procfs::cpu_time(pid).saturating_sub(before).as_secs_f64() / window.as_secs_f64()
}

/// One raw request; answers the status, the content type and the whole body.
pub async fn call(
    client: &kube::Client,
    method: Method,
    uri: &str,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, String, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, accept)
        .body(kube::client::Body::from(body))?;
    let res = client.send(req).await?;
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.into_body().collect_bytes().await?;
    Ok((status, ct, body))
}

pub async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    let (status, _, text) =
        call(client, Method::POST, "/api/v1/namespaces", JSON, JSON, body).await?;
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!("creating namespace {name}: {status} {}", String::from_utf8_lossy(&text));
    }
    Ok(())
}

pub fn pod(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("bench-{i}"), "labels": {"app": "bench", "shard": format!("s{}", i % 16)}},
        "spec": {
            "containers": [{
                "name": "main",
                "image": "registry.example/bench/app:1.0",
                "args": ["serve", "--port", "8080"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
            }]
        }
    })
}

/// Timed creates.
pub struct Creates {
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Answers whose content type was not the one asked for.
    pub other_content_type: usize,
}

/// `n` pods created in the existing namespace `ns` by `clients` concurrent clients.
pub async fn create_pods_in(
    client: &kube::Client,
    ns: &str,
    n: usize,
    clients: usize,
    content_type: &'static str,
) -> anyhow::Result<Creates> {
    // Encode every body first: the client's encoding is not what is measured.
    let bodies = (0..n)
        .map(|i| -> anyhow::Result<Vec<u8>> {
            let pod = pod(i);
            if content_type == PROTOBUF {
                Ok(skiff_api::protobuf::encode(&pod)?)
            } else {
                Ok(serde_json::to_vec(&pod)?)
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let uri = format!("/api/v1/namespaces/{ns}/pods");
    let t0 = Instant::now();
    let results = futures::stream::iter(bodies)
        .map(|body| {
            let uri = uri.clone();
            async move {
                let t = Instant::now();
                let (status, ct, text) =
                    call(client, Method::POST, &uri, content_type, content_type, body).await?;
                let took = t.elapsed();
                if status != StatusCode::CREATED {
                    bail!("create answered {status}: {}", String::from_utf8_lossy(&text));
                }
                Ok::<_, anyhow::Error>((took, !ct.starts_with(content_type)))
            }
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<_>>()
        .await?;
    let elapsed = t0.elapsed();
    let other_content_type = results.iter().filter(|(_, other)| *other).count();
    let latencies = results.into_iter().map(|(d, _)| d).collect();
    Ok(Creates { elapsed, latencies, other_content_type })
}

/// Wait (30 s at most) until every process of `pids` uses under 5 % of a core.
pub async fn settle(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let busy = futures::future::join_all(
            pids.iter().map(|&pid| idle_cpu(pid, Duration::from_millis(500))),
        )
        .await;
        if busy.iter().all(|&cpu| cpu < 0.05) {
            return;
        }
    }
}

/// POST `body` to `uri` as `admin`; an object that already exists (409) is fine. Answers the
/// body of the reply.
pub async fn post_json(
    admin: &kube::Client,
    uri: String,
    body: serde_json::Value,
) -> anyhow::Result<Bytes> {
    let (status, _, text) =
        call(admin, Method::POST, &uri, JSON, JSON, serde_json::to_vec(&body)?).await?;
    if !status.is_success() && status != StatusCode::CONFLICT {
        bail!("POST {uri}: {status} {}", String::from_utf8_lossy(&text));
    }
    Ok(text)
}
