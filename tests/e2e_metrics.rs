//! End-to-end: resource metrics, the HPA and Prometheus. Two nodes in network namespaces this
//! test makes (`skiff server` with containerd, `skiff agent`), metrics collected every second
//! and HPAs synced every second:
//!
//! - the real `kubectl top nodes|pods --containers` sees a busy Wasm pod's CPU within 20 % of
//!   what the server process used for it (the kernel's count, beyond its idle rate), an idle
//!   Wasm pod and an OCI pod;
//! - an HPA scales a Wasm wasi:http Deployment 1 → 3 on CPU and back after its (shortened)
//!   stabilization window, with kube's conditions, events and `kubectl get hpa` TARGETS;
//! - another scales one on requests per second (the custom metric every wasi:http pod has);
//! - HPAs whose target or metric is missing say why and leave replicas alone;
//! - a pod metrics endpoint that refuses costs an event, not the node;
//! - a Deployment behind a Service annotated for scale to zero rests at 0 replicas, the first
//!   request through the Service's ClusterIP is held, answered once a pod is up, and the
//!   Deployment returns to 0 after its idle time;
//! - the real Prometheus (Debian's, which has no Kubernetes discovery: the chart's HTTP
//!   discovery through Skiff's api server), configured by `charts/skiff-monitoring` (rendered
//!   by the real helm), scrapes the api server, both kubelets and their cAdvisor metrics and an
//!   annotated pod, every target up, and answers PromQL for request rate, pod CPU and
//!   scheduling attempts.
//!
//! Every load loop is bounded in time and sends only to pod addresses inside the namespaces.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::netns::{AGENT_NODE, TwoNodes, http_get, in_ns};
use support::{Checks, in_netns, tool};

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: busy
  labels: {app: busy, tier: load}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8080", prometheus.io/path: /metrics}
spec:
  runtimeClassName: wasmtime
  nodeName: skiff-e2e
  containers:
    - name: http
      image: hello-http:e2e
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: idle
  labels: {app: idle, tier: load}
spec:
  runtimeClassName: wasmtime
  nodeName: node-b
  containers:
    - name: http
      image: hello-http:e2e
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: oci
  labels: {app: oci}
spec:
  runtimeClassName: runc
  nodeName: skiff-e2e
  terminationGracePeriodSeconds: 1
  containers:
    - name: box
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", "while true; do sleep 1; done"]
"#;

fn deployment(name: &str, replicas: u32, cpu_request: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: wasmtime
      terminationGracePeriodSeconds: 1
      containers:
        - name: http
          image: hello-http:e2e
          ports: [{{containerPort: 8080}}]
          resources: {{requests: {{cpu: {cpu_request}}}}}
"#
    )
}

/// A thread in network namespace `ns` that calls `f` until `stop` is set or `limit` passes.
fn spawn_in_ns(
    ns: &str,
    stop: Arc<AtomicBool>,
    limit: Duration,
    mut f: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        skiff_bench::netns::enter(&ns).expect("entering the test namespace");
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            f();
        }
    })
}

/// Load that stops when dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `threads` clients in `ns`, each sending `GET path` to `addr` then pausing `pause`, for
/// at most `limit`; `burned` counts the milliseconds a `/burn` load asked for.
fn load(
    ns: &str,
    addr: &str,
    path: &str,
    threads: usize,
    pause: Duration,
    limit: Duration,
    burned: Option<(Arc<AtomicU64>, u64)>,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..threads)
        .map(|_| {
            let (addr, path, burned) = (addr.to_string(), path.to_string(), burned.clone());
            spawn_in_ns(ns, stop.clone(), limit, move || {
                if let Ok((200, _)) = http_get(&addr, &path, Duration::from_secs(5))
                    && let Some((counter, ms)) = &burned
                {
                    counter.fetch_add(*ms, Ordering::Relaxed);
                }
                std::thread::sleep(pause);
            })
        })
        .collect();
    Load { stop, threads }
}

fn kubectl_out(c: &TwoNodes, args: &[&str]) -> (bool, String) {
    let out = c.server.kubectl(args);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn pod_ip(c: &TwoNodes, pod: &str) -> String {
    let p = c.server.wait_pod(pod, Duration::from_secs(60), "Ready with an IP", |p| {
        p["status"]["podIP"].is_string()
            && p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    p["status"]["podIP"].as_str().unwrap_or_default().to_string()
}

/// The first Ready pod of `app=<app>`: (name, IP).
fn first_pod(c: &TwoNodes, app: &str) -> (String, String) {
    let mut found = None;
    c.server.wait_for(&format!("a ready pod of {app}"), Duration::from_secs(60), || {
        let list = c.server.json(&["get", "pods", "-l", &format!("app={app}")]);
        found = list["items"].as_array().into_iter().flatten().find_map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let ip = p["status"]["podIP"].as_str()?;
            ready
                .then(|| (p["metadata"]["name"].as_str().unwrap_or("").to_string(), ip.to_string()))
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

fn replicas(c: &TwoNodes, deploy: &str) -> (i64, i64) {
    let d = c.server.json(&["get", "deployment", deploy]);
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["status"]["readyReplicas"].as_i64().unwrap_or(0),
    )
}

fn condition(hpa: &Value, ty: &str) -> (String, String, String) {
    hpa["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("status"), s("reason"), s("message"))
        })
        .unwrap_or_default()
}

fn events(c: &TwoNodes, name: &str, reason: &str) -> Vec<String> {
    let list = c.server.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason={reason}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// millicores from `kubectl top`'s CPU column (`250m`, `1`).
fn millicores(text: &str) -> Option<f64> {
    match text.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => text.parse::<f64>().ok().map(|c| c * 1000.0),
    }
}

fn check_top(c: &TwoNodes) {
    let ns = c.net.ns(0).to_string();
    let busy = pod_ip(c, "busy");
    pod_ip(c, "idle");
    c.server
        .wait_pod("oci", Duration::from_secs(60), "Running", |p| p["status"]["phase"] == "Running");
    // What the server process uses without the load, as the kernel counts it.
    let pid = c.server.pid();
    let (cpu0, t0) = (support::cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let base =
        support::cpu_time(pid).saturating_sub(cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    // ~45 % of a core: 45 ms of work, then a 55 ms pause, one client.
    let burned = Arc::new(AtomicU64::new(0));
    let _load = load(
        &ns,
        &format!("{busy}:8080"),
        "/burn?ms=45",
        1,
        Duration::from_millis(55),
        Duration::from_secs(40),
        Some((burned.clone(), 45)),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (start_ms, started, cpu1) =
        (burned.load(Ordering::Relaxed), Instant::now(), support::cpu_time(pid));
    let mut readings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    while readings.len() < 6 && Instant::now() < deadline {
        let (ok, out) = kubectl_out(c, &["top", "pod", "busy", "--containers", "--no-headers"]);
        if ok && let Some(cpu) = out.split_whitespace().nth(2).and_then(millicores) {
            readings.push(cpu);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The pod's measured use: what the server process used beyond its idle rate (the guest's
    // work plus a sliver of request handling), as the kernel counts it.
    let measured =
        (support::cpu_time(pid).saturating_sub(cpu1).as_secs_f64() / elapsed - base) * 1000.0;
    let asked = (burned.load(Ordering::Relaxed) - start_ms) as f64 / elapsed;
    assert!(readings.len() >= 4, "kubectl top pod busy gave too few readings: {readings:?}");
    readings.sort_by(f64::total_cmp);
    let median = readings[readings.len() / 2];
    eprintln!(
        "top: busy pod {median:.0}m (readings {readings:?}); server CPU beyond idle {measured:.0}m; the load asked for {asked:.0}m"
    );
    assert!(
        (median - measured).abs() <= measured * 0.2,
        "kubectl top says {median:.0}m, the server used {measured:.0}m beyond idle (readings {readings:?})"
    );
    // Every pod and both nodes are there; the idle pod uses next to nothing.
    let out = c.server.ok(&["top", "pod", "--containers", "--no-headers"]);
    for want in ["busy", "idle", "oci"] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "{want} missing from kubectl top:\n{out}"
        );
    }
    let idle: f64 = out
        .lines()
        .find(|l| l.starts_with("idle"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(millicores)
        .unwrap_or(f64::MAX);
    assert!(idle < 20.0, "the idle pod uses {idle}m:\n{out}");
    let sorted = c.server.ok(&["top", "pod", "-l", "tier=load", "--sort-by=cpu", "--no-headers"]);
    assert!(sorted.lines().next().is_some_and(|l| l.starts_with("busy")), "{sorted}");
    assert_eq!(sorted.lines().count(), 2, "-l tier=load picks busy and idle:\n{sorted}");
    let nodes = c.server.ok(&["top", "nodes", "--no-headers"]);
    for node in ["skiff-e2e", AGENT_NODE] {
        assert!(nodes.lines().any(|l| l.starts_with(node)), "{node} missing:\n{nodes}");
    }
}

/// The scaling history the test saw: replicas over time.
fn wait_replicas(c: &TwoNodes, deploy: &str, want: i64, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut last = (0, 0);
    while started.elapsed() < timeout {
        last = replicas(c, deploy);
        if last == (want, want) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let hpa = c.server.kubectl(&["describe", "hpa"]);
    panic!(
        "{deploy} did not reach {want} ready replicas in {timeout:?} (spec, ready = {last:?}):\n{}",
        String::from_utf8_lossy(&hpa.stdout)
    );
}

const FAST_DOWN: &str = r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":3,"policies":[{"type":"Percent","value":100,"periodSeconds":1}]}}}}"#;

fn check_hpa_cpu(c: &TwoNodes) {
    let ns = c.net.ns(0).to_string();
    c.apply(&deployment("web", 1, "100m"));
    let (_, ip) = first_pod(c, "web");
    c.server.ok(&["autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=3"]);
    c.server.ok(&["patch", "hpa", "web", "--type=merge", "-p", FAST_DOWN]);
    // Wait until the HPA sees the idle pod's metrics (ScalingActive), still 1 replica.
    c.server.wait_for("the HPA to see CPU metrics", Duration::from_secs(30), || {
        condition(&c.server.json(&["get", "hpa", "web"]), "ScalingActive").0 == "True"
    });
    assert_eq!(replicas(c, "web").0, 1, "an idle Deployment stays at its minimum");
    let load = load(
        &ns,
        &format!("{ip}:8080"),
        "/burn?ms=50",
        1,
        Duration::from_millis(30),
        Duration::from_secs(60),
        None,
    );
    let reaction = wait_replicas(c, "web", 3, Duration::from_secs(40));
    eprintln!("hpa: CPU load to 3 ready replicas in {reaction:?}");
    let hpa = c.server.json(&["get", "hpa", "web"]);
    let (status, reason, _) = condition(&hpa, "ScalingActive");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ValidMetricFound"), "{hpa}");
    assert_eq!(condition(&hpa, "AbleToScale").0, "True", "{hpa}");
    let table = c.server.ok(&["get", "hpa", "web", "--no-headers"]);
    assert!(table.contains("Deployment/web") && table.contains("%/50%"), "{table}");
    assert!(table.contains("cpu: "), "TARGETS names the resource: {table}");
    let rescales = events(c, "web", "SuccessfulRescale");
    assert!(
        rescales.iter().any(|m| m
            == "New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{rescales:?}"
    );
    drop(load);
    let down = wait_replicas(c, "web", 1, Duration::from_secs(40));
    eprintln!("hpa: back to 1 replica {down:?} after the load stopped");
    let rescales = events(c, "web", "SuccessfulRescale");
    assert!(
        rescales.iter().any(|m| m == "New size: 1; reason: All metrics below target"),
        "{rescales:?}"
    );
}

fn check_hpa_requests(c: &TwoNodes) {
    let ns = c.net.ns(0).to_string();
    c.apply(&deployment("api", 1, "50m"));
    let (pod, ip) = first_pod(c, "api");
    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: api}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Pods
      pods:
        metric: {name: http_requests}
        target: {type: AverageValue, averageValue: "5"}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 3
      policies: [{type: Percent, value: 100, periodSeconds: 1}]
"#;
    c.apply(hpa);
    // ~40 requests per second to one pod: 8× the target per pod.
    let load = load(
        &ns,
        &format!("{ip}:8080"),
        "/",
        2,
        Duration::from_millis(50),
        Duration::from_secs(60),
        None,
    );
    let path =
        format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/{pod}/http_requests");
    c.server.wait_for(
        "the pod's request rate in the custom metrics API",
        Duration::from_secs(20),
        || {
            let (ok, out) = kubectl_out(c, &["get", "--raw", &path]);
            ok && serde_json::from_str::<Value>(&out)
                .is_ok_and(|v| v["items"][0]["value"].as_str().is_some_and(|q| q != "0"))
        },
    );
    let reaction = wait_replicas(c, "api", 3, Duration::from_secs(40));
    eprintln!("hpa: request load to 3 ready replicas in {reaction:?}");
    // The same rate as an external metric (selected by pod labels) and summed over a Service.
    let (ok, out) = kubectl_out(
        c,
        &[
            "get",
            "--raw",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests?labelSelector=app%3Dapi",
        ],
    );
    let external: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert!(
        ok && external["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty() && i.iter().all(|m| m["metricLabels"]["app"] == "api")),
        "external metric: {out}"
    );
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports: [{port: 80, targetPort: 8080}]\n");
    c.server.wait_for("the Service's summed request rate", Duration::from_secs(10), || {
        let (ok, out) = kubectl_out(
            c,
            &[
                "get",
                "--raw",
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/api/http_requests",
            ],
        );
        ok && out.contains("\"kind\":\"Service\"")
    });
    let hpa = c.server.json(&["get", "hpa", "api"]);
    assert_eq!(condition(&hpa, "ScalingActive").1, "ValidMetricFound", "{hpa}");
    let (limited, why, _) = condition(&hpa, "ScalingLimited");
    assert_eq!((limited.as_str(), why.as_str()), ("True", "TooManyReplicas"), "{hpa}");
    let rescales = events(c, "api", "SuccessfulRescale");
    assert!(
        rescales.iter().any(|m| m == "New size: 3; reason: pods metric http_requests above target"),
        "{rescales:?}"
    );
    drop(load);
    wait_replicas(c, "api", 1, Duration::from_secs(40));
}

fn check_hpa_faults(c: &TwoNodes) {
    c.apply(&deployment("steady", 2, "50m"));
    wait_replicas(c, "steady", 2, Duration::from_secs(60));
    let hpas = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: ghost}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: no-such-deployment}
  maxReplicas: 3
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: steady}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: steady}
  minReplicas: 1
  maxReplicas: 5
  metrics:
    - type: Pods
      pods:
        metric: {name: no_such_metric}
        target: {type: AverageValue, averageValue: "1"}
"#;
    c.apply(hpas);
    c.server.wait_for("the missing target's condition", Duration::from_secs(20), || {
        condition(&c.server.json(&["get", "hpa", "ghost"]), "AbleToScale").1 == "FailedGetScale"
    });
    assert!(!events(c, "ghost", "FailedGetScale").is_empty());
    c.server.wait_for("the missing metric's condition", Duration::from_secs(20), || {
        let hpa = c.server.json(&["get", "hpa", "steady"]);
        let (status, reason, message) = condition(&hpa, "ScalingActive");
        status == "False" && reason == "FailedGetPodsMetric" && message.contains("no_such_metric")
    });
    assert!(!events(c, "steady", "FailedComputeMetricsReplicas").is_empty());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(c, "steady").0, 2, "replicas stay as they are without metrics");
    // A pod whose metrics endpoint refuses: an event on the pod, the node carries on (and its
    // other pods' metrics keep coming).
    let broken = r#"
apiVersion: v1
kind: Pod
metadata:
  name: nometrics
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "9999"}
spec:
  runtimeClassName: wasmtime
  nodeName: skiff-e2e
  terminationGracePeriodSeconds: 0
  containers:
    - name: http
      image: hello-http:e2e
      ports: [{containerPort: 8080}]
"#;
    c.apply(broken);
    c.server.wait_for("the failed scrape's event", Duration::from_secs(30), || {
        events(c, "nometrics", "FailedMetricsScrape").iter().any(|m| m.contains(":9999"))
    });
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/busy/hello_up";
    let (ok, out) = kubectl_out(c, &["get", "--raw", path]);
    assert!(ok && out.contains("\"value\":\"1\""), "the busy pod's scraped gauge: {out}");
    c.server.ok(&["delete", "pod", "nometrics", "--wait=true"]);
}

fn check_scale_to_zero(c: &TwoNodes) {
    let manifest = format!(
        "{}---\n{}",
        deployment("sleepy", 1, "10m"),
        r#"
apiVersion: v1
kind: Service
metadata:
  name: sleepy
  annotations:
    scale-to-zero.skiff.dev/deployment: sleepy
    scale-to-zero.skiff.dev/idle-timeout: 4s
spec:
  selector: {app: sleepy}
  ports: [{port: 80, targetPort: 8080}]
"#
    );
    c.apply(&manifest);
    // Idle from the start: it goes to 0 after its idle time.
    c.server.wait_for("sleepy to rest at 0 replicas", Duration::from_secs(40), || {
        replicas(c, "sleepy") == (0, 0)
    });
    let rested = events(c, "sleepy", "ScaledToZero");
    assert!(rested.iter().any(|m| m.contains("answered no request for 4s")), "{rested:?}");
    // No pod left, then a request through the ClusterIP.
    c.server.wait_for("sleepy's pods to go", Duration::from_secs(30), || {
        c.server.json(&["get", "pods", "-l", "app=sleepy"])["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    let ip = c.server.ok(&["get", "service", "sleepy", "-o", "jsonpath={.spec.clusterIP}"]);
    let started = Instant::now();
    let answer =
        in_ns(c.net.ns(0), || http_get(&format!("{}:80", ip.trim()), "/", Duration::from_secs(30)));
    let waited = started.elapsed();
    let (code, body) = answer.unwrap_or_else(|e| panic!("the held request failed: {e}"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from Skiff"), "{body}");
    eprintln!("scale to zero: first response after {waited:?} from 0 replicas");
    assert!(replicas(c, "sleepy").0 >= 1, "the request woke the Deployment");
    let metrics = c.server.ok(&["get", "--raw", "/api/v1/nodes/skiff-e2e/proxy/metrics"]);
    let held = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skiff_activator_held_connections_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(held >= 1.0, "the node's activator held the request: {held}");
    // Then idle again: back to 0.
    c.server.wait_for("sleepy to return to 0", Duration::from_secs(40), || {
        replicas(c, "sleepy").0 == 0
    });
}

/// The real Prometheus in the server's namespace, stopped on drop.
struct Prometheus {
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` from Prometheus' API in the server's namespace. HTTP/1.0, so that the answer is
/// never chunked.
fn prom_get(c: &TwoNodes, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let text = in_ns(c.net.ns(0), || -> Option<String> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9090").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf)
    })?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| serde_json::from_str(body).ok())?
}

fn query(c: &TwoNodes, promql: &str) -> Vec<Value> {
    let mut q = String::new();
    for b in promql.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => q.push(b as char),
            _ => q.push_str(&format!("%{b:02X}")),
        }
    }
    prom_get(c, &format!("/api/v1/query?query={q}"))
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

fn check_prometheus(c: &TwoNodes) {
    let prometheus = Command::new("prometheus").arg("--version").output();
    if prometheus.is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "prometheus is not installed");
        eprintln!("skipping Prometheus: not installed");
        return;
    }
    let dir = c.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let chart = support::repo_root().join("charts/skiff-monitoring");
    let helm = |args: &[&str]| {
        let out = in_netns(Some(c.net.ns(0)), &tool("helm"))
            .env("HOME", c.server.tool_home())
            .arg("--kubeconfig")
            .arg(&c.server.kubeconfig)
            .args(args)
            .output()
            .expect("running helm");
        assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    helm(&["install", "mon", chart.to_str().unwrap_or_default(), "--namespace", "default"]);
    let token = c.server.ok(&["create", "token", "mon-prometheus", "--duration=1h"]);
    std::fs::write(dir.join("token"), token.trim()).expect("token file");
    let kubeconfig: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&c.server.kubeconfig).expect("kubeconfig"),
    )
    .expect("kubeconfig yaml");
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("CA data");
    std::fs::write(dir.join("ca.crt"), ca).expect("CA file");
    let rendered = helm(&[
        "template",
        "mon",
        chart.to_str().unwrap_or_default(),
        "--show-only",
        "templates/prometheus-config.yaml",
        "--set",
        &format!("apiServer={}", c.server.url),
        "--set",
        &format!("caFile={}", dir.join("ca.crt").display()),
        "--set",
        &format!("tokenFile={}", dir.join("token").display()),
        "--set",
        "scrapeInterval=1s",
        // Debian's Prometheus is built without Kubernetes discovery: Skiff's HTTP discovery
        // answers the same targets and labels.
        "--set",
        "discovery=http",
        "--set",
        "discoveryRefreshInterval=2s",
    ]);
    let cm: Value = serde_yaml_ng::from_str(&rendered).expect("rendered ConfigMap");
    let config = cm["data"]["prometheus.yml"].as_str().expect("prometheus.yml in the ConfigMap");
    std::fs::write(dir.join("prometheus.yml"), config).expect("config file");
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Port 9090 of the test's own namespace: nothing else listens there.
    let child = in_netns(Some(c.net.ns(0)), std::path::Path::new("prometheus"))
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).expect("log file")))
        .spawn()
        .expect("starting prometheus");
    let _prometheus = Prometheus { child };
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_up = false;
    while Instant::now() < deadline {
        if let Some(t) = prom_get(c, "/api/v1/targets") {
            let targets: Vec<&Value> =
                t["data"]["activeTargets"].as_array().into_iter().flatten().collect();
            let jobs: std::collections::BTreeSet<&str> =
                targets.iter().filter_map(|t| t["labels"]["job"].as_str()).collect();
            let want = [
                "kubernetes-apiservers",
                "kubernetes-cadvisor",
                "kubernetes-nodes",
                "kubernetes-pods",
            ];
            let nodes = targets.iter().filter(|t| t["labels"]["job"] == "kubernetes-nodes").count();
            if want.iter().all(|j| jobs.contains(j))
                && nodes == 2
                && targets.iter().all(|t| t["health"] == "up")
            {
                all_up = true;
                break;
            }
            last = t;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !all_up {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        let token = std::fs::read_to_string(dir.join("token")).unwrap_or_default();
        let sd = in_netns(Some(c.net.ns(0)), std::path::Path::new("curl"))
            .args(["-s", "-m", "5", "--cacert"])
            .arg(dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .arg(format!("{}/prometheus/discovery/node", c.server.url))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).chars().take(600).collect::<String>());
        eprintln!("prometheus log (last lines):\n{tail}\nthe node discovery answers: {sd:?}");
        panic!("not every target is up (the Prometheus log is above): {last}");
    }
    let up = query(c, "up");
    assert!(up.len() >= 6 && up.iter().all(|r| r["value"][1] == "1"), "up: {up:?}");
    // PromQL over what was scraped: the rate of API requests, pod CPU, scheduling attempts.
    let mut results = Vec::new();
    c.server.wait_for("PromQL answers", Duration::from_secs(30), || {
        results = [
            "sum(rate(apiserver_request_total[10s])) > 0",
            r#"sum by (pod) (rate(container_cpu_usage_seconds_total{pod="busy"}[10s]))"#,
            "sum(scheduler_schedule_attempts_total) > 0",
            r#"hello_up{pod="busy"}"#,
        ]
        .iter()
        .map(|q| (q.to_string(), query(c, q).len()))
        .collect();
        results.iter().all(|(_, n)| *n > 0)
    });
    eprintln!("prometheus: {results:?}");
}

#[test]
fn metrics_should_feed_top_the_hpa_and_prometheus() {
    let _serial = support::serial();
    let Some(c) = TwoNodes::start_with_args(
        true,
        false,
        &["--metrics-resolution", "1s", "--horizontal-pod-autoscaler-sync-period", "1s"],
    ) else {
        return;
    };
    c.apply(WORKLOADS);
    let mut checks = Checks::default();
    checks.check("kubectl top", || check_top(&c));
    checks.check("HPA on CPU", || check_hpa_cpu(&c));
    checks.check("HPA on requests per second", || check_hpa_requests(&c));
    checks.check("HPA faults", || check_hpa_faults(&c));
    checks.check("scale to zero", || check_scale_to_zero(&c));
    checks.check("Prometheus", || check_prometheus(&c));
    checks.finish("metrics");
}
