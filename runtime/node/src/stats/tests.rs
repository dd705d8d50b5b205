use skiff_runtime_core::ContainerStats;

use super::*;
use crate::testing::FakeRuntime;

const PROC_STAT: &str =
    "cpu  100 20 30 5000 40 5 6 7 0 0\ncpu0 50 10 15 2500 20 2 3 3 0 0\nbtime 1700000000\n";
const MEMINFO: &str = "MemTotal:        1000 kB\nMemFree:          200 kB\nMemAvailable:     500 kB\nInactive(file):   100 kB\n";

#[test]
fn proc_parsers_should_compute_busy_cpu_and_working_set() {
    // user+nice+system+irq+softirq+steal = 168 ticks of 10ms.
    assert_eq!(parse_proc_stat(PROC_STAT), (1_680_000_000, 1_700_000_000));
    let mut usage = NodeUsage::default();
    parse_meminfo(MEMINFO, &mut usage);
    assert_eq!(usage.memory_total_bytes, 1_024_000);
    assert_eq!(usage.memory_available_bytes, 512_000);
    assert_eq!(usage.memory_usage_bytes, 819_200);
    assert_eq!(usage.memory_working_set_bytes, 716_800);
}

fn running(rt: &Arc<FakeRuntime>, pod: &str, container: &str) -> RunningContainer {
    RunningContainer {
        namespace: "default".into(),
        pod: pod.into(),
        pod_uid: format!("{pod}-uid"),
        container: container.into(),
        container_id: format!("{pod}/{container}"),
        runtime: rt.clone(),
        started_at: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
    }
}

/// A node with pod `web` (containers `app`, `sidecar`) and pod `db` (`pg`, whose stats fail).
fn node() -> (Arc<NodeStats>, Arc<KubeletMetrics>) {
    let rt = FakeRuntime::new();
    let stats = |cpu, mem| ContainerStats {
        cpu_usage_nanos: cpu,
        memory_working_set_bytes: mem,
        http_requests: None,
        http_in_flight: None,
    };
    rt.stats.lock().unwrap().extend([
        ("web/app".to_string(), stats(1_500_000_000, 4096)),
        ("web/sidecar".to_string(), stats(500_000_000, 1024)),
    ]);
    let containers =
        vec![running(&rt, "web", "app"), running(&rt, "web", "sidecar"), running(&rt, "db", "pg")];
    let metrics = Arc::new(KubeletMetrics::new("n1"));
    (NodeStats::new("n1", Arc::new(move || containers.clone()), metrics.clone()), metrics)
}

#[tokio::test]
async fn summary_should_list_pods_with_container_usage() {
    let (stats, _) = node();
    let dir = tempfile::tempdir().unwrap();
    stats.set_fs_dir(dir.path().join("pods"));
    let sample = stats.sample().await;
    let summary = stats.summary(&sample);
    assert_eq!(summary["node"]["nodeName"], "n1");
    // The data dir's file system (the pods dir need not exist yet).
    let fs = &summary["node"]["fs"];
    assert!(fs["capacityBytes"].as_u64().unwrap() >= fs["availableBytes"].as_u64().unwrap());
    assert!(fs["inodes"].as_u64().unwrap() > 0, "{fs}");
    assert_eq!(summary["node"]["runtime"]["imageFs"], *fs);
    assert!(summary["node"]["rlimit"]["maxpid"].as_i64().unwrap() > 0);
    assert!(summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    let pods = summary["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 1, "a pod whose stats fail is left out: {summary}");
    let web = &pods[0];
    assert_eq!(web["podRef"], json!({"name": "web", "namespace": "default", "uid": "web-uid"}));
    assert_eq!(web["cpu"]["usageCoreNanoSeconds"], 2_000_000_000u64);
    assert_eq!(web["memory"]["workingSetBytes"], 5120);
    assert_eq!(web["startTime"], "2023-11-14T22:15:00Z");
    let app = &web["containers"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["cpu"]["usageCoreNanoSeconds"], 1_500_000_000u64);
    assert_eq!(app["memory"]["workingSetBytes"], 4096);
    assert!(app["cpu"].get("usageNanoCores").is_none(), "no rate from a single reading");

    let again = stats.summary(&stats.sample().await);
    assert_eq!(again["pods"][0]["containers"][0]["cpu"]["usageNanoCores"], 0, "idle since");
}

#[tokio::test]
async fn resource_metrics_should_be_in_the_kubelet_format_with_timestamps() {
    let (stats, _) = node();
    let sample = stats.sample().await;
    let ts = sample.time.timestamp_millis();
    let text = NodeStats::resource_metrics(&sample);
    for line in [
        "# TYPE container_cpu_usage_seconds_total counter".to_string(),
        format!(
            "container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web\"}} 1.5 {ts}"
        ),
        format!(
            "container_memory_working_set_bytes{{container=\"sidecar\",namespace=\"default\",pod=\"web\"}} 1024 {ts}"
        ),
        format!("pod_cpu_usage_seconds_total{{namespace=\"default\",pod=\"web\"}} 2 {ts}"),
        format!("pod_memory_working_set_bytes{{namespace=\"default\",pod=\"web\"}} 5120 {ts}"),
        "resource_scrape_error 1".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("node_cpu_usage_seconds_total ")));
    assert!(text.lines().any(|l| l.starts_with("node_memory_working_set_bytes ")));
    assert!(!text.contains("pod=\"db\""), "failed containers are not reported");
}

#[tokio::test]
async fn endpoints_should_serve_healthz_metrics_and_reject_unknown_paths() {
    let (stats, metrics) = node();
    metrics.set_running_pods(2);
    metrics.set_running_containers("running", 3);
    metrics.observe_pod_start(Duration::from_millis(700));
    let get = |path: &str| NodeProxyRequest {
        method: "GET".into(),
        path: path.into(),
        query: String::new(),
    };
    let healthz = stats.proxy(get("healthz")).await.unwrap();
    assert_eq!((healthz.status, &healthz.body[..]), (200, &b"ok"[..]));
    let m = stats.proxy(get("metrics")).await.unwrap();
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for line in [
        "kubelet_node_name{node=\"n1\"} 1",
        "kubelet_running_pods 2",
        "kubelet_running_containers{container_state=\"running\"} 3",
        "kubelet_pod_start_duration_seconds_bucket{le=\"1.0\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let summary = stats.proxy(get("stats/summary")).await.unwrap();
    assert_eq!(summary.content_type, "application/json");
    let v: Value = serde_json::from_slice(&summary.body).unwrap();
    assert_eq!(v["pods"][0]["podRef"]["name"], "web");
    assert!(matches!(stats.proxy(get("configz")).await, Err(NodeProxyError::NotFound(_))));
    let post = NodeProxyRequest { method: "POST".into(), ..get("healthz") };
    assert!(matches!(stats.proxy(post).await, Err(NodeProxyError::MethodNotAllowed(_))));
}
