//! What the metrics pipeline keeps: readings of kubelets' `metrics/resource` and of nodes'
//! `metrics/pods`, and the rates computed from two consecutive readings (as metrics-server
//! computes them: the CPU counter's increase over the time between the two samples). Pure:
//! the collection loop feeds it text and JSON.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// (namespace, pod).
pub type PodKey = (String, String);

/// One container's cumulative reading.
#[derive(Debug, Clone, PartialEq)]
struct RawContainer {
    cpu_seconds: f64,
    memory: u64,
    ts_ms: i64,
    start: Option<i64>,
}

/// One `metrics/resource` reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawResource {
    node: Option<(f64, u64, i64)>,
    containers: HashMap<(String, String, String), RawContainer>,
}

/// Parse a kubelet's `metrics/resource` answer.
pub fn parse_resource(text: &str) -> Result<RawResource, String> {
    // Three series per container, a few per node: this bounds what one node costs.
    let e = skiff_helpers::promtext::parse(text, 1_000_000).map_err(|e| e.to_string())?;
    let mut raw = RawResource::default();
    let mut node = (None, None, 0);
    for s in &e.samples {
        let ts = s.timestamp_ms.unwrap_or(0);
        match s.name.as_str() {
            "node_cpu_usage_seconds_total" => node = (Some(s.value), node.1, ts),
            "node_memory_working_set_bytes" => node.1 = Some(s.value as u64),
            "container_cpu_usage_seconds_total"
            | "container_memory_working_set_bytes"
            | "container_start_time_seconds" => {
                let (Some(ns), Some(pod), Some(c)) =
                    (s.label("namespace"), s.label("pod"), s.label("container"))
                else {
                    continue;
                };
                let entry = raw
                    .containers
                    .entry((ns.to_string(), pod.to_string(), c.to_string()))
                    .or_insert(RawContainer {
                        cpu_seconds: 0.0,
                        memory: 0,
                        ts_ms: ts,
                        start: None,
                    });
                match s.name.as_str() {
                    "container_cpu_usage_seconds_total" => {
                        entry.cpu_seconds = s.value;
                        entry.ts_ms = ts;
                    }
                    "container_memory_working_set_bytes" => entry.memory = s.value as u64,
                    _ => entry.start = Some(s.value as i64),
                }
            }
            _ => {}
        }
    }
    if let (Some(cpu), Some(mem)) = (node.0, node.1) {
        raw.node = Some((cpu, mem, node.2));
    }
    Ok(raw)
}

/// Usage at one time, over the window it was measured in.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// A pod's containers' usage.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
    /// (container, nanocores, bytes), by container name.
    pub containers: Vec<(String, u64, u64)>,
}

fn time_of(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

/// The rate of a counter between two readings, per second; `None` when it cannot be told
/// (no time passed, the counter went back: a restart).
fn rate(before: f64, at_before: i64, after: f64, at_after: i64) -> Option<f64> {
    if at_after <= at_before || after < before {
        return None;
    }
    Some((after - before) / ((at_after - at_before) as f64 / 1000.0))
}

/// The node's and its pods' usage from two consecutive readings. A container seen only in
/// `cur`, restarted in between, or without a usable rate is left out; a pod is reported only
/// with all of its containers (metrics-server's rule: a partial pod would under-report).
pub fn usage(prev: &RawResource, cur: &RawResource) -> (Option<Usage>, HashMap<PodKey, PodUsage>) {
    let node = match (prev.node, cur.node) {
        (Some((c0, _, t0)), Some((c1, m1, t1))) => rate(c0, t0, c1, t1).map(|r| Usage {
            timestamp: time_of(t1),
            window: Duration::from_millis((t1 - t0) as u64),
            cpu_nanocores: (r * 1e9) as u64,
            memory_bytes: m1,
        }),
        _ => None,
    };
    let mut pods: HashMap<PodKey, (PodUsage, bool)> = HashMap::new();
    for ((ns, pod, container), c1) in &cur.containers {
        let rated = prev
            .containers
            .get(&(ns.clone(), pod.clone(), container.clone()))
            .filter(|c0| c0.start == c1.start)
            .and_then(|c0| {
                rate(c0.cpu_seconds, c0.ts_ms, c1.cpu_seconds, c1.ts_ms).map(|r| (r, c0))
            });
        let entry = pods.entry((ns.clone(), pod.clone())).or_insert_with(|| {
            (
                PodUsage {
                    timestamp: time_of(c1.ts_ms),
                    window: Duration::ZERO,
                    containers: vec![],
                },
                true,
            )
        });
        match rated {
            Some((r, c0)) => {
                entry.0.window =
                    entry.0.window.max(Duration::from_millis((c1.ts_ms - c0.ts_ms) as u64));
                entry.0.containers.push((container.clone(), (r * 1e9) as u64, c1.memory));
            }
            None => entry.1 = false,
        }
    }
    let pods = pods
        .into_iter()
        .filter(|(_, (_, complete))| *complete)
        .map(|(k, (mut p, _))| {
            p.containers.sort();
            (k, p)
        })
        .collect();
    (node, pods)
}

/// One `metrics/pods` reading: (name, counter, value) per pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCustom {
    time_ms: i64,
    pods: HashMap<PodKey, Vec<(String, bool, f64)>>,
}

pub fn parse_custom(body: &[u8]) -> Result<RawCustom, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let time_ms = v["time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(|| Utc::now().timestamp_millis(), |t| t.timestamp_millis());
    let mut pods = HashMap::new();
    for p in v["pods"].as_array().into_iter().flatten() {
        let key = (
            p["namespace"].as_str().unwrap_or_default().to_string(),
            p["name"].as_str().unwrap_or_default().to_string(),
        );
        let metrics = p["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?.to_string(),
                    m["counter"].as_bool()?,
                    m["value"].as_f64()?,
                ))
            })
            .collect();
        pods.insert(key, metrics);
    }
    Ok(RawCustom { time_ms, pods })
}

/// A pod's custom metrics: gauges as they are, counters as per-second rates under the name
/// without `_total` and with `_per_second` (prometheus-adapter's naming).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomValues {
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
    pub values: HashMap<String, f64>,
}

/// The names a counter is served under.
pub fn counter_names(name: &str) -> [String; 2] {
    let base = name.strip_suffix("_total").unwrap_or(name);
    [base.to_string(), format!("{base}_per_second")]
}

pub fn custom_values(prev: &RawCustom, cur: &RawCustom) -> HashMap<PodKey, CustomValues> {
    let window = Duration::from_millis((cur.time_ms - prev.time_ms).max(0) as u64);
    let mut out = HashMap::new();
    for (key, metrics) in &cur.pods {
        let before = prev.pods.get(key);
        let mut values = HashMap::new();
        for (name, counter, value) in metrics {
            if !*counter {
                values.insert(name.clone(), *value);
                continue;
            }
            let Some(old) = before.and_then(|b| b.iter().find(|(n, _, _)| n == name)) else {
                continue;
            };
            if let Some(r) = rate(old.2, prev.time_ms, *value, cur.time_ms) {
                for n in counter_names(name) {
                    values.insert(n, r);
                }
            }
        }
        out.insert(key.clone(), CustomValues { timestamp: time_of(cur.time_ms), window, values });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(ts: i64, node_cpu: f64, web_cpu: f64, start: i64) -> String {
        format!(
            "node_cpu_usage_seconds_total {node_cpu} {ts}\nnode_memory_working_set_bytes 1000 {ts}\n\
             container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web\"}} {web_cpu} {ts}\n\
             container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web\"}} 4096 {ts}\n\
             container_start_time_seconds{{container=\"app\",namespace=\"default\",pod=\"web\"}} {start} {ts}\n\
             container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"new\"}} 1 {ts}\n"
        )
    }

    #[test]
    fn usage_should_be_the_counters_increase_over_the_samples_interval() {
        let a = parse_resource(&resource(1_000_000, 10.0, 1.0, 5)).unwrap();
        let b = parse_resource(&resource(1_002_000, 11.0, 1.5, 5)).unwrap();
        let (node, pods) = usage(&a, &b);
        let node = node.unwrap();
        assert_eq!(node.cpu_nanocores, 500_000_000);
        assert_eq!(node.window, Duration::from_secs(2));
        assert_eq!(node.memory_bytes, 1000);
        let web = &pods[&("default".to_string(), "web".to_string())];
        assert_eq!(web.containers, vec![("app".to_string(), 250_000_000, 4096)]);
        assert_eq!(web.window, Duration::from_secs(2));
        // `new` has a reading in both, but no start time change either: its rate is 0.
        assert_eq!(pods[&("default".to_string(), "new".to_string())].containers[0].1, 0);
    }

    #[test]
    fn usage_should_leave_out_restarted_containers_and_first_readings() {
        let a = parse_resource(&resource(1_000_000, 10.0, 5.0, 5)).unwrap();
        let b = parse_resource(&resource(1_001_000, 11.0, 0.2, 9)).unwrap();
        let (_, pods) = usage(&a, &b);
        assert!(!pods.contains_key(&("default".to_string(), "web".to_string())), "restarted");
        let (node, pods) = usage(&RawResource::default(), &b);
        assert!(node.is_none() && pods.is_empty(), "nothing to compare with");
    }

    #[test]
    fn custom_values_should_rate_counters_and_pass_gauges() {
        let body = |t: &str, n: f64| {
            serde_json::to_vec(
                &serde_json::json!({"time": t, "pods": [{"namespace": "default", "name": "web",
                "metrics": [{"name": "http_requests_total", "counter": true, "value": n},
                            {"name": "queue_depth", "counter": false, "value": 3.0}]}]}),
            )
            .unwrap()
        };
        let a = parse_custom(&body("2026-01-01T00:00:00.000Z", 100.0)).unwrap();
        let b = parse_custom(&body("2026-01-01T00:00:02.000Z", 140.0)).unwrap();
        let v = &custom_values(&a, &b)[&("default".to_string(), "web".to_string())];
        assert_eq!(v.values["http_requests"], 20.0);
        assert_eq!(v.values["http_requests_per_second"], 20.0);
        assert_eq!(v.values["queue_depth"], 3.0);
        assert_eq!(v.window, Duration::from_secs(2));
        // A counter that went back (a restart) has no rate this time.
        let c = parse_custom(&body("2026-01-01T00:00:04.000Z", 1.0)).unwrap();
        assert!(
            !custom_values(&b, &c)[&("default".to_string(), "web".to_string())]
                .values
                .contains_key("http_requests")
        );
    }
}
