//! The kubelet's HTTP endpoints as the api server proxies them (`nodes/proxy`): `healthz`,
//! `stats/summary` (the Summary API), `metrics/resource` (what metrics-server and Skiff's own
//! metrics pipeline read), `metrics/cadvisor` (cAdvisor's container metrics, for Prometheus),
//! `metrics` (the kubelet's own metrics, [`KubeletMetrics`]) and Skiff's `metrics/pods`
//! (pods' own metrics, [`crate::podmetrics`]).
//!
//! Usage figures come from the runtime of each running container, listed by the pod workers
//! through [`RunningContainers`]; node figures come from `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use skiff_api::nodes::{NodeEndpoints, NodeProxyError, NodeProxyRequest, NodeProxyResponse};
use skiff_runtime_core::{ContainerId, ContainerRuntime, ContainerStats, RuntimeError};
use tokio::time::Instant;

use crate::probes::ProbeKind;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One running container, as the pod workers know it.
#[derive(Clone)]
pub struct RunningContainer {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub container_id: ContainerId,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub started_at: DateTime<Utc>,
}

/// The running containers of the node's pods (the pod workers provide it). Called on every
/// scrape, from any thread; should be a cheap snapshot.
pub trait RunningContainers: Send + Sync + 'static {
    fn running_containers(&self) -> Vec<RunningContainer>;
}

impl<F> RunningContainers for F
where
    F: Fn() -> Vec<RunningContainer> + Send + Sync + 'static,
{
    fn running_containers(&self) -> Vec<RunningContainer> {
        self()
    }
}

/// The kubelet's own metrics (`/metrics`), named as the kubelet names them. The pod workers
/// update them; all methods are cheap and thread-safe.
pub struct KubeletMetrics {
    registry: Registry,
    /// Metrics of the parts running beside the kubelet (proxy, cluster DNS), served with its.
    others: std::sync::Mutex<Registry>,
    running_pods: Gauge,
    running_containers: Family<ContainerStateLabels, Gauge>,
    pod_start_duration: Histogram,
    probes: Family<ProbeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerStateLabels {
    container_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe_type: String,
    result: String,
    container: String,
    pod: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

impl KubeletMetrics {
    pub fn new(node_name: &str) -> Self {
        let mut registry = Registry::default();
        let node = Family::<NodeLabels, Gauge>::default();
        node.get_or_create(&NodeLabels { node: node_name.to_string() }).set(1);
        registry.register("kubelet_node_name", "The node's name. The count is always 1.", node);
        let running_pods = Gauge::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        let running_containers = Family::<ContainerStateLabels, Gauge>::default();
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        // The kubelet's buckets for this histogram.
        let pod_start_duration = Histogram::new([
            0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0,
            240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
        ]);
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start_duration.clone(),
        );
        let probes = Family::<ProbeLabels, Counter>::default();
        // Encoded with the `_total` suffix: `prober_probe_total`.
        registry.register(
            "prober_probe",
            "Cumulative number of a liveness, readiness or startup probe for a container by result.",
            probes.clone(),
        );
        KubeletMetrics {
            registry,
            others: std::sync::Mutex::default(),
            running_pods,
            running_containers,
            pod_start_duration,
            probes,
        }
    }

    /// `kubelet_running_pods`.
    pub fn set_running_pods(&self, pods: i64) {
        self.running_pods.set(pods);
    }

    /// `kubelet_running_containers{container_state}`; states are `running`, `exited`,
    /// `created` and `unknown`.
    pub fn set_running_containers(&self, container_state: &str, containers: i64) {
        let labels = ContainerStateLabels { container_state: container_state.to_string() };
        self.running_containers.get_or_create(&labels).set(containers);
    }

    /// `kubelet_pod_start_duration_seconds`: from the worker first seeing the pod to all its
    /// containers running.
    pub fn observe_pod_start(&self, duration: Duration) {
        self.pod_start_duration.observe(duration.as_secs_f64());
    }

    /// `prober_probe_total`: one probe attempt.
    pub fn record_probe(
        &self,
        kind: ProbeKind,
        success: bool,
        container: &str,
        namespace: &str,
        pod: &str,
    ) {
        let labels = ProbeLabels {
            probe_type: kind.as_str().to_string(),
            result: if success { "successful" } else { "failed" }.to_string(),
            container: container.to_string(),
            pod: pod.to_string(),
            namespace: namespace.to_string(),
        };
        self.probes.get_or_create(&labels).inc();
    }

    /// Register the metrics of another part of the node daemon, served on the same endpoint.
    pub fn add(&self, register: impl FnOnce(&mut Registry)) {
        if let Ok(mut others) = self.others.lock() {
            register(&mut others);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode, encode_eof, encode_registry};
        let mut out = String::new();
        let encoded =
            encode_registry(&mut out, &self.registry).and_then(|()| match self.others.lock() {
                Ok(others) => encode_registry(&mut out, &others),
                Err(_) => Ok(()),
            });
        if encoded.and_then(|()| encode_eof(&mut out)).is_err() {
            out.clear();
            let _ = encode(&mut out, &self.registry);
        }
        out
    }
}

/// Node-wide usage read from `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// CPU time the node spent busy (all cores), in nanoseconds.
    pub cpu_usage_nanos: u64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// Total minus free.
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file pages, as the kubelet computes it for the root cgroup.
    pub memory_working_set_bytes: u64,
    /// Boot time, seconds since the epoch.
    pub boot_time: i64,
}

/// Busy CPU time from `/proc/stat` (`user nice system idle iowait irq softirq steal …`, in
/// USER_HZ = 100 ticks per second), and the boot time.
pub fn parse_proc_stat(text: &str) -> (u64, i64) {
    let mut busy = 0;
    let mut boot = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
            }
            Some("btime") => boot = fields.next().and_then(|b| b.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    (busy.saturating_mul(10_000_000), boot)
}

/// Memory figures from `/proc/meminfo` (values in kB).
pub fn parse_meminfo(text: &str, usage: &mut NodeUsage) {
    let fields: HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim(), v.split_whitespace().next()?.parse::<u64>().ok()? * 1024))
        })
        .collect();
    let get = |k: &str| fields.get(k).copied().unwrap_or(0);
    usage.memory_total_bytes = get("MemTotal");
    usage.memory_available_bytes = get("MemAvailable");
    usage.memory_usage_bytes = get("MemTotal").saturating_sub(get("MemFree"));
    usage.memory_working_set_bytes = usage.memory_usage_bytes.saturating_sub(get("Inactive(file)"));
}

fn node_usage() -> NodeUsage {
    let mut usage = NodeUsage::default();
    let (cpu, boot) = parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
    usage.cpu_usage_nanos = cpu;
    usage.boot_time = boot;
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default(), &mut usage);
    usage
}

/// (namespace, name, uid) of a pod.
type PodKey = (String, String, String);

/// One scrape: the node's usage and each running container's.
pub struct Sample {
    pub time: DateTime<Utc>,
    pub node: NodeUsage,
    /// The file system of the node's data dir (`node.fs`, also the image store's).
    pub fs: Option<crate::resources::FsStats>,
    /// (PID limit, tasks now).
    pub pids: Option<(i64, i64)>,
    pub containers: Vec<(RunningContainer, Result<ContainerStats, RuntimeError>)>,
}

/// The kubelet's endpoints for one node: implements [`NodeEndpoints`] for the api server.
pub struct NodeStats {
    node_name: String,
    containers: Arc<dyn RunningContainers>,
    metrics: Arc<KubeletMetrics>,
    /// Last CPU reading per container id (and `""` for the node), for `usageNanoCores`.
    cpu_readings: Mutex<HashMap<String, (u64, Instant)>>,
    /// A directory on the node's file system (`node.fs` in the Summary API).
    fs_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Scrapes the pods that ask for it (`metrics/pods`), once set.
    scraper: std::sync::OnceLock<crate::podmetrics::PodScraper>,
}

impl NodeStats {
    pub fn new(
        node_name: &str,
        containers: Arc<dyn RunningContainers>,
        metrics: Arc<KubeletMetrics>,
    ) -> Arc<Self> {
        Arc::new(NodeStats {
            node_name: node_name.to_string(),
            containers,
            metrics,
            cpu_readings: Mutex::default(),
            fs_dir: std::sync::OnceLock::new(),
            scraper: std::sync::OnceLock::new(),
        })
    }

    /// Scrape pods' own metrics with `scraper` for `metrics/pods`.
    pub fn set_pod_scraper(&self, scraper: crate::podmetrics::PodScraper) {
        let _ = self.scraper.set(scraper);
    }

    /// `metrics/pods`: each pod's own metrics (scraped, and the Wasm request counters).
    pub async fn pod_metrics(&self) -> Value {
        let running = self.containers.running_containers();
        let stats = futures::future::join_all(
            running.iter().map(|c| c.runtime.container_stats(&c.container_id)),
        );
        let scraped = async {
            match self.scraper.get() {
                Some(s) => s.scrape().await,
                None => HashMap::new(),
            }
        };
        let (stats, scraped) = futures::join!(stats, scraped);
        let mut requests: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for (c, s) in running.iter().zip(stats) {
            if let Ok(ContainerStats { http_requests: Some(n), http_in_flight, .. }) = s {
                let r = requests.entry((c.namespace.clone(), c.pod.clone())).or_default();
                r.0 += n;
                r.1 += http_in_flight.unwrap_or(0);
            }
        }
        crate::podmetrics::to_json(Utc::now(), scraped, requests)
    }

    /// Report the file system holding `dir` as the node's (`node.fs`, `node.runtime.imageFs`).
    pub fn set_fs_dir(&self, dir: std::path::PathBuf) {
        let _ = self.fs_dir.set(dir);
    }

    /// Read the node's and every running container's usage now.
    pub async fn sample(&self) -> Sample {
        let running = self.containers.running_containers();
        let stats = futures::future::join_all(
            running.iter().map(|c| c.runtime.container_stats(&c.container_id)),
        )
        .await;
        let fs = self.fs_dir.get().and_then(|d| {
            let d = d.ancestors().find(|p| p.exists())?;
            crate::resources::fs_stats(d).ok()
        });
        Sample {
            time: Utc::now(),
            node: node_usage(),
            fs,
            pids: crate::resources::pid_stats(),
            containers: running.into_iter().zip(stats).collect(),
        }
    }

    /// CPU rate since the previous reading of `key`, in nanocores; `None` on the first.
    fn usage_nano_cores(&self, key: &str, cpu_nanos: u64) -> Option<u64> {
        let now = Instant::now();
        let mut readings = self.cpu_readings.lock().ok()?;
        let previous = readings.insert(key.to_string(), (cpu_nanos, now));
        let (before, at) = previous?;
        let elapsed = now.duration_since(at).as_nanos();
        if elapsed == 0 || cpu_nanos < before {
            return None;
        }
        Some((u128::from(cpu_nanos - before) * 1_000_000_000 / elapsed) as u64)
    }

    /// The Summary API (`stats/summary`) from one sample.
    pub fn summary(&self, sample: &Sample) -> Value {
        let time = rfc3339(sample.time);
        let cpu = |key: &str, nanos: u64| {
            let mut v = json!({"time": time, "usageCoreNanoSeconds": nanos});
            if let Some(rate) = self.usage_nano_cores(key, nanos) {
                v["usageNanoCores"] = json!(rate);
            }
            v
        };
        let live: std::collections::HashSet<&str> =
            sample.containers.iter().map(|(c, _)| c.container_id.as_str()).collect();
        if let Ok(mut r) = self.cpu_readings.lock() {
            r.retain(|k, _| k.is_empty() || live.contains(k.as_str()));
        }
        // Pods by uid, in (namespace, name) order.
        let mut pods: BTreeMap<PodKey, Vec<(&RunningContainer, &ContainerStats)>> = BTreeMap::new();
        for (c, stats) in &sample.containers {
            if let Ok(stats) = stats {
                pods.entry((c.namespace.clone(), c.pod.clone(), c.pod_uid.clone()))
                    .or_default()
                    .push((c, stats));
            }
        }
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|((namespace, name, uid), containers)| {
                let cpu_total: u64 = containers.iter().map(|(_, s)| s.cpu_usage_nanos).sum();
                let mem_total: u64 =
                    containers.iter().map(|(_, s)| s.memory_working_set_bytes).sum();
                let start = containers.iter().map(|(c, _)| c.started_at).min().unwrap_or(sample.time);
                let containers: Vec<Value> = containers
                    .iter()
                    .map(|(c, s)| {
                        json!({
                            "name": c.container,
                            "startTime": rfc3339(c.started_at),
                            "cpu": cpu(&c.container_id, s.cpu_usage_nanos),
                            "memory": {"time": time, "workingSetBytes": s.memory_working_set_bytes, "usageBytes": s.memory_working_set_bytes},
                        })
                    })
                    .collect();
                let mut pod_cpu = json!({"time": time, "usageCoreNanoSeconds": cpu_total});
                let rates: Option<u64> = containers
                    .iter()
                    .map(|c| c.pointer("/cpu/usageNanoCores").and_then(Value::as_u64))
                    .sum();
                if let Some(rate) = rates {
                    pod_cpu["usageNanoCores"] = json!(rate);
                }
                json!({
                    "podRef": {"name": name, "namespace": namespace, "uid": uid},
                    "startTime": rfc3339(start),
                    "containers": containers,
                    "cpu": pod_cpu,
                    "memory": {"time": time, "workingSetBytes": mem_total, "usageBytes": mem_total},
                })
            })
            .collect();
        let n = &sample.node;
        let boot = DateTime::from_timestamp(n.boot_time, 0).unwrap_or(sample.time);
        let mut node = json!({
                "nodeName": self.node_name,
                "startTime": rfc3339(boot),
                "cpu": cpu("", n.cpu_usage_nanos),
                "memory": {
                    "time": time,
                    "availableBytes": n.memory_available_bytes,
                    "usageBytes": n.memory_usage_bytes,
                    "workingSetBytes": n.memory_working_set_bytes,
                },
                "systemContainers": [],
        });
        if let Some(fs) = sample.fs {
            let fs = json!({
                "time": time,
                "availableBytes": fs.available,
                "capacityBytes": fs.capacity,
                "usedBytes": fs.capacity.saturating_sub(fs.available),
                "inodesFree": fs.inodes_free,
                "inodes": fs.inodes,
                "inodesUsed": fs.inodes.saturating_sub(fs.inodes_free),
            });
            node["runtime"] = json!({"imageFs": fs.clone()});
            node["fs"] = fs;
        }
        if let Some((max, tasks)) = sample.pids {
            node["rlimit"] = json!({"time": time, "maxpid": max, "curproc": tasks});
        }
        json!({"node": node, "pods": pods})
    }

    /// `metrics/resource` from one sample, in the kubelet's text format.
    ///
    /// Written by hand rather than through prometheus-client: the kubelet stamps each sample
    /// with the time it was read, and metrics-server computes rates from those stamps.
    pub fn resource_metrics(sample: &Sample) -> String {
        let ts = sample.time.timestamp_millis();
        let n = &sample.node;
        let ok: Vec<(&RunningContainer, &ContainerStats)> =
            sample.containers.iter().filter_map(|(c, s)| Some((c, s.as_ref().ok()?))).collect();
        let mut pods: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for (c, s) in &ok {
            let p = pods.entry((&c.namespace, &c.pod)).or_default();
            p.0 += s.cpu_usage_nanos;
            p.1 += s.memory_working_set_bytes;
        }
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value} {ts}");
            }
        };
        let container_labels = |c: &RunningContainer| {
            labels(&[("container", &c.container), ("namespace", &c.namespace), ("pod", &c.pod)])
        };
        family(
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the container in core-seconds",
            ok.iter().map(|(c, s)| (container_labels(c), seconds(s.cpu_usage_nanos))).collect(),
        );
        family(
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set of the container in bytes",
            ok.iter()
                .map(|(c, s)| (container_labels(c), s.memory_working_set_bytes.to_string()))
                .collect(),
        );
        family(
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds",
            ok.iter()
                .map(|(c, _)| (container_labels(c), c.started_at.timestamp().to_string()))
                .collect(),
        );
        family(
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
            vec![(String::new(), seconds(n.cpu_usage_nanos))],
        );
        family(
            "node_memory_working_set_bytes",
            "gauge",
            "Current working set of the node in bytes",
            vec![(String::new(), n.memory_working_set_bytes.to_string())],
        );
        let pod_labels = |ns: &str, pod: &str| labels(&[("namespace", ns), ("pod", pod)]);
        family(
            "pod_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the pod in core-seconds",
            pods.iter().map(|((ns, pod), (cpu, _))| (pod_labels(ns, pod), seconds(*cpu))).collect(),
        );
        family(
            "pod_memory_working_set_bytes",
            "gauge",
            "Current working set of the pod in bytes",
            pods.iter()
                .map(|((ns, pod), (_, mem))| (pod_labels(ns, pod), mem.to_string()))
                .collect(),
        );
        let failed = ok.len() < sample.containers.len();
        let _ = writeln!(
            out,
            "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error {}",
            u8::from(failed)
        );
        out
    }
}

/// `metrics/cadvisor` from one sample: cAdvisor's container metrics with its label names
/// (`container`, `namespace`, `pod`, `id`; `id="/"` is the machine), as the kubelet serves
/// them, for both runtimes; Wasm wasi:http containers add `skiff_container_http_requests_total`.
pub fn cadvisor_metrics(sample: &Sample, cpus: usize) -> String {
    let ts = sample.time.timestamp_millis();
    let n = &sample.node;
    let ok: Vec<(&RunningContainer, &ContainerStats)> =
        sample.containers.iter().filter_map(|(c, s)| Some((c, s.as_ref().ok()?))).collect();
    let mut out = String::new();
    let root = labels(&[("container", ""), ("id", "/"), ("namespace", ""), ("pod", "")]);
    let of = |c: &RunningContainer| {
        labels(&[
            ("container", &c.container),
            ("id", &c.container_id),
            ("namespace", &c.namespace),
            ("pod", &c.pod),
        ])
    };
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value} {ts}");
        }
    };
    let mut cpu = vec![(root.clone(), seconds(n.cpu_usage_nanos))];
    cpu.extend(ok.iter().map(|(c, s)| (of(c), seconds(s.cpu_usage_nanos))));
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        cpu,
    );
    let mut ws = vec![(root.clone(), n.memory_working_set_bytes.to_string())];
    ws.extend(ok.iter().map(|(c, s)| (of(c), s.memory_working_set_bytes.to_string())));
    family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.", ws);
    let mut usage = vec![(root.clone(), n.memory_usage_bytes.to_string())];
    usage.extend(ok.iter().map(|(c, s)| (of(c), s.memory_working_set_bytes.to_string())));
    family(
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        usage,
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
        ok.iter().map(|(c, _)| (of(c), c.started_at.timestamp().to_string())).collect(),
    );
    family(
        "skiff_container_http_requests_total",
        "counter",
        "Requests dispatched to a Wasm wasi:http container.",
        ok.iter().filter_map(|(c, s)| Some((of(c), s.http_requests?.to_string()))).collect(),
    );
    family(
        "machine_cpu_cores",
        "gauge",
        "Number of logical CPU cores.",
        vec![(String::new(), cpus.to_string())],
    );
    family(
        "machine_memory_bytes",
        "gauge",
        "Amount of memory installed on the machine.",
        vec![(String::new(), n.memory_total_bytes.to_string())],
    );
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn seconds(nanos: u64) -> String {
    format!("{}", nanos as f64 / 1e9)
}

/// `{k="v",…}` with Prometheus escaping.
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[async_trait]
impl NodeEndpoints for NodeStats {
    async fn proxy(&self, req: NodeProxyRequest) -> Result<NodeProxyResponse, NodeProxyError> {
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Err(NodeProxyError::MethodNotAllowed(format!(
                "{} is not allowed on /{}",
                req.method, req.path
            )));
        }
        match req.path.trim_matches('/') {
            "healthz" => Ok(NodeProxyResponse::ok("text/plain; charset=utf-8", "ok")),
            "metrics" => Ok(NodeProxyResponse::ok(PROMETHEUS_TEXT, self.metrics.encode())),
            "metrics/resource" => {
                let sample = self.sample().await;
                Ok(NodeProxyResponse::ok(PROMETHEUS_TEXT, Self::resource_metrics(&sample)))
            }
            "metrics/cadvisor" => {
                let sample = self.sample().await;
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                Ok(NodeProxyResponse::ok(PROMETHEUS_TEXT, cadvisor_metrics(&sample, cpus)))
            }
            "metrics/pods" => {
                let body = serde_json::to_vec(&self.pod_metrics().await)
                    .map_err(|e| NodeProxyError::Internal(e.to_string()))?;
                Ok(NodeProxyResponse::ok("application/json", body))
            }
            "stats/summary" => {
                let sample = self.sample().await;
                let body = serde_json::to_vec_pretty(&self.summary(&sample))
                    .map_err(|e| NodeProxyError::Internal(e.to_string()))?;
                Ok(NodeProxyResponse::ok("application/json", body))
            }
            _ => Err(NodeProxyError::NotFound("404 page not found".into())),
        }
    }
}

#[cfg(test)]
mod tests;
