//! Pods' own metrics, for the control plane's custom metrics API (`custom.metrics.k8s.io`):
//! the node scrapes every running pod that asks for it with the `prometheus.io/scrape`,
//! `prometheus.io/port` and `prometheus.io/path` annotations (prometheus-adapter's
//! convention), and adds what it knows itself: each Wasm wasi:http pod's
//! `http_requests_total`, counted as requests are dispatched (no adapter, no exporter).
//!
//! Served as `nodes/<n>/proxy/metrics/pods` (Skiff's own endpoint, JSON). A target costs the
//! node at most [`SCRAPE_TIMEOUT`] and [`MAX_BODY`] bytes per scrape; one that hangs, refuses
//! or answers garbage gets a `Warning` event on its pod (once per distinct error).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use skiff_client_tools::Recorder;
use skiff_client_tools::events::EventType;

/// How long one pod's scrape may take, connection included.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a pod's answer that is read.
pub const MAX_BODY: usize = 1024 * 1024;
/// The most samples kept from one pod.
pub const MAX_SAMPLES: usize = 2000;

pub const SCRAPE: &str = "prometheus.io/scrape";
pub const PORT: &str = "prometheus.io/port";
pub const PATH: &str = "prometheus.io/path";

/// The built-in request counter of wasi:http pods.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// The built-in gauge of requests a wasi:http pod is answering now.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";

/// Where to scrape a pod, from its annotations; `None` when it does not ask to be scraped
/// or cannot be (no IP yet, no port).
pub fn scrape_target(pod: &Pod) -> Option<(SocketAddr, String)> {
    let annotations = pod.metadata.annotations.as_ref()?;
    if annotations.get(SCRAPE).map(String::as_str) != Some("true") {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let port: u16 = match annotations.get(PORT) {
        Some(p) => p.parse().ok()?,
        // Prometheus' own default for an unannotated port: the first declared TCP port.
        None => pod.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports.as_ref()?.iter().find_map(|p| {
                (p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                    .then(|| u16::try_from(p.container_port).ok())?
            })
        })?,
    };
    let path = annotations.get(PATH).cloned().unwrap_or_else(|| "/metrics".to_string());
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    Some((SocketAddr::new(ip, port), path))
}

/// One metric of one pod: the sum of its series (labels are not kept: the custom metrics API
/// names a metric per object).
#[derive(Debug, Clone, PartialEq)]
pub struct PodMetric {
    pub name: String,
    /// A counter (`counter`), served as a rate, or anything else, served as is.
    pub counter: bool,
    pub value: f64,
}

/// Sum each family's samples of a scrape (histogram and summary parts are skipped: their
/// `_count` and `_sum` are kept as counters).
pub fn summarize(exposition: &skiff_helpers::promtext::Exposition) -> Vec<PodMetric> {
    let mut out: BTreeMap<&str, PodMetric> = BTreeMap::new();
    for s in &exposition.samples {
        if !s.value.is_finite() || s.name.ends_with("_bucket") || s.label("quantile").is_some() {
            continue;
        }
        let counter = match exposition.type_of(&s.name) {
            Some("counter") => true,
            Some("histogram" | "summary") => true,
            Some(_) => false,
            // Untyped: the name says (`_total` is a counter by convention).
            None => s.name.ends_with("_total"),
        };
        let m = out.entry(&s.name).or_insert_with(|| PodMetric {
            name: s.name.clone(),
            counter,
            value: 0.0,
        });
        m.value += s.value;
    }
    out.into_values().collect()
}

/// Scrapes pods for the node; remembers the last error per pod so each is reported once.
pub struct PodScraper {
    pods: Arc<dyn Fn() -> Vec<Arc<Pod>> + Send + Sync>,
    recorder: Option<Recorder>,
    errors: Mutex<HashMap<String, String>>,
}

impl PodScraper {
    pub fn new(
        pods: Arc<dyn Fn() -> Vec<Arc<Pod>> + Send + Sync>,
        recorder: Option<Recorder>,
    ) -> Self {
        PodScraper { pods, recorder, errors: Mutex::default() }
    }

    /// Scrape every pod that asks, concurrently; (namespace, name) → its metrics.
    pub async fn scrape(&self) -> HashMap<(String, String), Vec<PodMetric>> {
        let pods = (self.pods)();
        let targets: Vec<(Arc<Pod>, SocketAddr, String)> = pods
            .into_iter()
            .filter_map(|p| {
                let (addr, path) = scrape_target(&p)?;
                Some((p, addr, path))
            })
            .collect();
        let results = futures::future::join_all(
            targets.iter().map(|(_, addr, path)| scrape_one(*addr, path)),
        )
        .await;
        let mut out = HashMap::new();
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let live: std::collections::HashSet<String> =
            targets.iter().filter_map(|(p, _, _)| p.metadata.uid.clone()).collect();
        errors.retain(|uid, _| live.contains(uid));
        for ((pod, addr, path), result) in targets.iter().zip(results) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            match result {
                Ok(metrics) => {
                    errors.remove(&uid);
                    out.insert(key, metrics);
                }
                Err(e) => {
                    let message = format!("scraping metrics from http://{addr}{path}: {e}");
                    if errors.get(&uid) != Some(&message) {
                        tracing::debug!(pod = %key.1, error = %message, "pod metrics scrape failed");
                        if let Some(r) = &self.recorder {
                            r.record(
                                skiff_client_tools::events::reference(pod.as_ref()),
                                EventType::Warning,
                                "FailedMetricsScrape",
                                message.clone(),
                            );
                        }
                        errors.insert(uid, message);
                    }
                }
            }
        }
        out
    }
}

async fn scrape_one(addr: SocketAddr, path: &str) -> Result<Vec<PodMetric>, String> {
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, fetch(addr, path))
        .await
        .map_err(|_| format!("no answer within {}s", SCRAPE_TIMEOUT.as_secs()))??;
    let exposition = skiff_helpers::promtext::parse(&text, MAX_SAMPLES)
        .map_err(|e| format!("not the Prometheus text format: {e}"))?;
    Ok(summarize(&exposition))
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, "text/plain;version=0.0.4")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(resp) if resp.status().is_success() => {
            match Limited::new(resp.into_body(), MAX_BODY).collect().await {
                Ok(body) => String::from_utf8(body.to_bytes().to_vec())
                    .map_err(|_| "the answer is not UTF-8".to_string()),
                Err(e) => Err(format!("reading the answer: {e}")),
            }
        }
        Ok(resp) => Err(format!("HTTP {}", resp.status())),
        Err(e) => Err(e),
    };
    conn.abort();
    out
}

/// The `metrics/pods` answer: scraped metrics plus the built-in request figures (requests
/// so far, requests in flight), per pod.
pub fn to_json(
    time: chrono::DateTime<chrono::Utc>,
    scraped: HashMap<(String, String), Vec<PodMetric>>,
    requests: BTreeMap<(String, String), (u64, u64)>,
) -> Value {
    let mut pods: BTreeMap<(String, String), Vec<PodMetric>> = scraped.into_iter().collect();
    for (key, (total, in_flight)) in requests {
        let metrics = pods.entry(key).or_default();
        // A pod that exports its own metric of that name is taken at its word.
        for (name, counter, value) in
            [(HTTP_REQUESTS_TOTAL, true, total), (HTTP_REQUESTS_IN_FLIGHT, false, in_flight)]
        {
            if !metrics.iter().any(|m| m.name == name) {
                metrics.push(PodMetric { name: name.to_string(), counter, value: value as f64 });
            }
        }
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|((namespace, name), metrics)| {
            let metrics: Vec<Value> = metrics
                .into_iter()
                .map(|m| json!({"name": m.name, "counter": m.counter, "value": m.value}))
                .collect();
            json!({"namespace": namespace, "name": name, "metrics": metrics})
        })
        .collect();
    json!({"time": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)], ip: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
            "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip},
        }))
        .unwrap()
    }

    #[test]
    fn scrape_target_should_follow_the_annotations() {
        assert_eq!(scrape_target(&pod(&[], Some("10.1.0.2"))), None, "not asked");
        assert_eq!(
            scrape_target(&pod(&[(SCRAPE, "true")], Some("10.1.0.2"))),
            Some(("10.1.0.2:8080".parse().unwrap(), "/metrics".to_string())),
            "the first declared port and the default path"
        );
        assert_eq!(
            scrape_target(&pod(
                &[(SCRAPE, "true"), (PORT, "9100"), (PATH, "stats")],
                Some("10.1.0.2")
            )),
            Some(("10.1.0.2:9100".parse().unwrap(), "/stats".to_string()))
        );
        assert_eq!(scrape_target(&pod(&[(SCRAPE, "true")], None)), None, "no IP yet");
        assert_eq!(scrape_target(&pod(&[(SCRAPE, "true"), (PORT, "x")], Some("10.1.0.2"))), None);
    }

    #[test]
    fn summarize_should_sum_series_and_tell_counters() {
        let text = "# TYPE req_total counter\nreq_total{code=\"200\"} 5\nreq_total{code=\"500\"} 2\n# TYPE queue gauge\nqueue 7\nlegacy_total 3\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 4\nlat_sum 2.5\nlat_count 4\n";
        let e = skiff_helpers::promtext::parse(text, 100).unwrap();
        let m = summarize(&e);
        let get = |n: &str| m.iter().find(|x| x.name == n).cloned().unwrap();
        assert_eq!(
            get("req_total"),
            PodMetric { name: "req_total".into(), counter: true, value: 7.0 }
        );
        assert!(!get("queue").counter);
        assert!(get("legacy_total").counter, "untyped _total reads as a counter");
        assert_eq!(get("lat_count").value, 4.0);
        assert!(m.iter().all(|x| x.name != "lat_bucket"));
    }

    #[test]
    fn to_json_should_add_the_request_counter_unless_the_pod_has_its_own() {
        let mut scraped = HashMap::new();
        let own = PodMetric { name: HTTP_REQUESTS_TOTAL.into(), counter: true, value: 99.0 };
        scraped.insert(("default".to_string(), "own".to_string()), vec![own]);
        let requests = BTreeMap::from([
            (("default".to_string(), "own".to_string()), (5, 0)),
            (("default".to_string(), "wasm".to_string()), (12, 2)),
        ]);
        let v = to_json(chrono::Utc::now(), scraped, requests);
        assert_eq!(v["pods"][0]["name"], "own");
        assert_eq!(v["pods"][0]["metrics"][0]["value"], 99.0);
        assert_eq!(v["pods"][1]["name"], "wasm");
        assert_eq!(
            v["pods"][1]["metrics"][0],
            json!({"name": HTTP_REQUESTS_TOTAL, "counter": true, "value": 12.0})
        );
    }

    #[tokio::test]
    async fn scrape_should_bound_a_target_that_hangs_or_answers_garbage() {
        // A listener that accepts and never answers.
        let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hang_addr = hang.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = hang.accept().await {
                conns.push(s);
            }
        });
        let started = std::time::Instant::now();
        let err = scrape_one(hang_addr, "/metrics").await.unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(started.elapsed() < SCRAPE_TIMEOUT + Duration::from_secs(1));
        // One that answers something that is not the text format.
        let bad = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bad_addr = bad.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = bad.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n").await;
            }
        });
        let err = scrape_one(bad_addr, "/metrics").await.unwrap_err();
        assert!(err.contains("not the Prometheus text format"), "{err}");
    }
}
