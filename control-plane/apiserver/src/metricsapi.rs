//! The metrics APIs, served by the api server itself (metrics-server's and a metrics
//! adapter's role, with nothing to install): `metrics.k8s.io/v1beta1` (NodeMetrics and
//! PodMetrics, what `kubectl top` and the HPA's Resource metrics read),
//! `custom.metrics.k8s.io/v1beta2` (pods' own metrics: what they export for Prometheus, and
//! the request rate of every Wasm wasi:http pod) and `external.metrics.k8s.io/v1beta1` (the
//! same metrics, selected by the labels of the pods that report them).
//!
//! A [`MetricsPipeline`] reads every node's `metrics/resource` and `metrics/pods` each
//! resolution (15 s by default, down to 1 s: `--metrics-resolution`) and keeps the last two
//! readings per node in memory; rates come from those two. Served directly rather than as an
//! aggregated API: no extra hop, no APIService to break. Every api server of a cluster runs
//! its own pipeline, so any of them answers.

pub mod collect;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::State;
use crate::errors::ApiError;
use crate::selectors::{FieldSelector, LabelSelector};
use collect::{CustomValues, PodKey, PodUsage, RawCustom, RawResource, Usage};

pub const METRICS_GROUP: &str = "metrics.k8s.io";
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";

/// The smallest resolution (metrics-server's lower bound).
pub const MIN_RESOLUTION: Duration = Duration::from_secs(1);
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);
/// The most custom metric names listed in discovery (pods choose them).
pub const MAX_DISCOVERED_METRICS: usize = 200;

/// The (group, version) pairs served here.
pub const GROUP_VERSIONS: [(&str, &str); 3] =
    [(METRICS_GROUP, "v1beta1"), (CUSTOM_GROUP, "v1beta2"), (EXTERNAL_GROUP, "v1beta1")];

#[derive(Default)]
struct NodeData {
    raw: Option<RawResource>,
    node: Option<Usage>,
    pods: HashMap<PodKey, PodUsage>,
    raw_custom: Option<RawCustom>,
    custom: HashMap<PodKey, CustomValues>,
}

/// The collected metrics of every node, and the loop that collects them.
pub struct MetricsPipeline {
    resolution: RwLock<Duration>,
    nodes: RwLock<HashMap<String, NodeData>>,
    running: std::sync::atomic::AtomicBool,
    /// Time the last collection round took (for the pipeline's own metric).
    pub last_round: RwLock<Duration>,
}

impl Default for MetricsPipeline {
    fn default() -> Self {
        MetricsPipeline {
            resolution: RwLock::new(DEFAULT_RESOLUTION),
            nodes: RwLock::default(),
            running: std::sync::atomic::AtomicBool::new(false),
            last_round: RwLock::default(),
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl MetricsPipeline {
    pub fn resolution(&self) -> Duration {
        *read(&self.resolution)
    }

    /// Collect every `resolution` (at least [`MIN_RESOLUTION`]; zero collects nothing) from
    /// now on, in a task of its own that ends with the api server. Calling it again only
    /// changes the resolution.
    pub fn start(state: &Arc<State>, resolution: Duration) {
        if resolution.is_zero() {
            return;
        }
        *write(&state.metrics_pipeline.resolution) = resolution.max(MIN_RESOLUTION);
        if state.metrics_pipeline.running.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(state);
        tokio::spawn(run(weak));
    }

    fn record_resource(&self, node: &str, raw: RawResource) {
        let mut nodes = write(&self.nodes);
        let data = nodes.entry(node.to_string()).or_default();
        if let Some(prev) = &data.raw {
            let (usage, pods) = collect::usage(prev, &raw);
            data.node = usage;
            data.pods = pods;
        }
        data.raw = Some(raw);
    }

    fn record_custom(&self, node: &str, raw: RawCustom) {
        let mut nodes = write(&self.nodes);
        let data = nodes.entry(node.to_string()).or_default();
        if let Some(prev) = &data.raw_custom {
            data.custom = collect::custom_values(prev, &raw);
        }
        data.raw_custom = Some(raw);
    }

    /// A node that could not be read: what it said before is not served as current.
    fn forget_node(&self, node: &str) {
        write(&self.nodes).remove(node);
    }

    /// Forget nodes that are gone.
    fn retain_nodes(&self, live: &BTreeSet<String>) {
        write(&self.nodes).retain(|n, _| live.contains(n));
    }

    fn node_usage(&self, node: &str) -> Option<Usage> {
        read(&self.nodes).get(node)?.node.clone()
    }

    fn pod_usage(&self, key: &PodKey) -> Option<PodUsage> {
        read(&self.nodes).values().find_map(|d| d.pods.get(key).cloned())
    }

    fn custom(&self, key: &PodKey) -> Option<CustomValues> {
        read(&self.nodes).values().find_map(|d| d.custom.get(key).cloned())
    }

    /// The custom metric names pods report, as discovery lists them: names that are valid
    /// resource names only, at most [`MAX_DISCOVERED_METRICS`] (any reported name can still
    /// be read; discovery is only the index).
    fn custom_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for d in read(&self.nodes).values() {
            for c in d.custom.values() {
                for name in c.values.keys() {
                    if names.len() >= MAX_DISCOVERED_METRICS {
                        return names;
                    }
                    let valid = !name.is_empty()
                        && name.len() <= 253
                        && name.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b)
                        })
                        && !matches!(name.as_str(), "pods" | "services" | "namespaces");
                    if valid {
                        names.insert(name.clone());
                    }
                }
            }
        }
        names
    }
}

/// The collection loop: one round per resolution, every node at once, each bounded by the
/// resolution (at least 5 s) so one slow node delays nobody else's metrics.
async fn run(state: Weak<State>) {
    loop {
        let Some(s) = state.upgrade() else { return };
        let resolution = s.metrics_pipeline.resolution();
        let started = Instant::now();
        let nodes = node_names(&s);
        s.metrics_pipeline.retain_nodes(&nodes);
        let limit = resolution.max(Duration::from_secs(5));
        let rounds = nodes.iter().map(|n| {
            let s = s.clone();
            async move {
                if tokio::time::timeout(limit, collect_node(&s, n)).await.is_err() {
                    s.metrics_pipeline.forget_node(n);
                }
            }
        });
        futures::future::join_all(rounds).await;
        *write(&s.metrics_pipeline.last_round) = started.elapsed();
        drop(s);
        tokio::time::sleep_until(started + resolution).await;
    }
}

fn node_names(state: &Arc<State>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = read(&state.node_endpoints).keys().cloned().collect();
    if let Some(res) = state.registry.by_plural("", "nodes")
        && let Some((nodes, _)) = state.caches.get(res).snapshot(
            &skiff_api::list_prefix(res, None),
            &LabelSelector::default(),
            &FieldSelector::default(),
        )
    {
        names.extend(nodes.iter().filter_map(|n| n.key.rsplit('/').next().map(str::to_string)));
    }
    names
}

async fn collect_node(state: &Arc<State>, node: &str) {
    let endpoints = match crate::subresources::node_endpoints(state, node).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(node, error = %e.message, "metrics: node unreachable");
            state.metrics_pipeline.forget_node(node);
            return;
        }
    };
    let get = |path: &str| {
        endpoints.proxy(skiff_api::nodes::NodeProxyRequest {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
        })
    };
    let (resource, pods) = futures::join!(get("metrics/resource"), get("metrics/pods"));
    match resource.map(|r| collect::parse_resource(&String::from_utf8_lossy(&r.body))) {
        Ok(Ok(raw)) => state.metrics_pipeline.record_resource(node, raw),
        Ok(Err(e)) => {
            tracing::debug!(node, error = %e, "metrics: unreadable metrics/resource");
            state.metrics_pipeline.forget_node(node);
        }
        Err(e) => {
            tracing::debug!(node, error = %e, "metrics: metrics/resource failed");
            state.metrics_pipeline.forget_node(node);
        }
    }
    // A node without `metrics/pods` (an older one) has no custom metrics; that is all.
    if let Ok(r) = pods
        && r.status == 200
        && let Ok(raw) = collect::parse_custom(&r.body)
    {
        state.metrics_pipeline.record_custom(node, raw);
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// A Go `metav1.Duration` (`15s`, `1.004s`).
use skiff_helpers::duration::format as go_duration;

fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) { format!("{}Ki", bytes / 1024) } else { bytes.to_string() }
}

/// A custom metric's value as a quantity, in milli-units (the custom metrics API's habit).
fn value_quantity(v: f64) -> String {
    use skiff_helpers::quantity::{Format, Quantity};
    Quantity::new_milli((v * 1000.0).round() as i64, Format::DecimalSI).canonical()
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
}

/// The cached objects of `plural` (core group) in `ns` (all when `None`) that match the
/// selectors; 503 while the cache is not ready.
pub(crate) fn cached_list(
    state: &Arc<State>,
    plural: &str,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Result<Vec<Arc<crate::cache::Cached>>, ApiError> {
    let res = state
        .registry
        .by_plural("", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    let (items, _) = state
        .caches
        .get(res)
        .snapshot(&skiff_api::list_prefix(res, ns), labels, fields)
        .ok_or_else(|| {
            ApiError::new(503, "ServiceUnavailable", format!("the {plural} cache is not ready yet"))
        })?;
    Ok(items)
}

/// The objects of `plural` (core group) in `ns` (all when `None`) that match `labels`, as
/// (namespace, name, labels).
fn objects(
    state: &Arc<State>,
    plural: &str,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Result<Vec<(String, String, Value)>, ApiError> {
    let items = cached_list(state, plural, ns, labels, fields)?;
    Ok(items
        .iter()
        .map(|c| {
            let v = c.value();
            let m = &v["metadata"];
            (
                m["namespace"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
                v.pointer("/metadata/labels").cloned().unwrap_or(Value::Null),
            )
        })
        .collect())
}

fn selectors(q: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map_or("", String::as_str),
        &["metadata.name", "metadata.namespace"],
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

fn meta(ns: Option<&str>, name: &str, labels: &Value) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": rfc3339(Utc::now())});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    if labels.is_object() {
        m["labels"] = labels.clone();
    }
    m
}

fn node_item(name: &str, labels: &Value, u: &Usage) -> Value {
    json!({
        "metadata": meta(None, name, labels),
        "timestamp": rfc3339(u.timestamp),
        "window": go_duration(u.window),
        "usage": {"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)},
    })
}

fn pod_item(ns: &str, name: &str, labels: &Value, u: &PodUsage) -> Value {
    let containers: Vec<Value> = u
        .containers
        .iter()
        .map(|(c, cpu, mem)| json!({"name": c, "usage": {"cpu": cpu_quantity(*cpu), "memory": memory_quantity(*mem)}}))
        .collect();
    json!({
        "metadata": meta(Some(ns), name, labels),
        "timestamp": rfc3339(u.timestamp),
        "window": go_duration(u.window),
        "containers": containers,
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {}, "items": items})
}

/// Serve a GET under one of the metrics groups; `rest` is the path after the version.
pub fn serve(
    state: &Arc<State>,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let pipeline = &state.metrics_pipeline;
    let unknown =
        || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    match (group, version) {
        (METRICS_GROUP, "v1beta1") => {
            let av = "metrics.k8s.io/v1beta1";
            let (labels, fields) = selectors(q)?;
            match rest {
                ["nodes"] => {
                    let items = objects(state, "nodes", None, &labels, &fields)?
                        .into_iter()
                        .filter_map(|(_, n, l)| Some(node_item(&n, &l, &pipeline.node_usage(&n)?)))
                        .collect();
                    Ok(list("NodeMetricsList", av, items))
                }
                ["nodes", name] => {
                    let u = pipeline
                        .node_usage(name)
                        .ok_or_else(|| not_found("nodemetrics.metrics.k8s.io", name))?;
                    let labels = objects(
                        state,
                        "nodes",
                        None,
                        &LabelSelector::default(),
                        &FieldSelector::default(),
                    )?
                    .into_iter()
                    .find(|(_, n, _)| n == name)
                    .map(|(_, _, l)| l)
                    .unwrap_or(Value::Null);
                    let mut item = node_item(name, &labels, &u);
                    item["kind"] = json!("NodeMetrics");
                    item["apiVersion"] = json!(av);
                    Ok(item)
                }
                ["pods"] | ["namespaces", _, "pods"] => {
                    let ns = match rest {
                        ["namespaces", ns, _] => Some(*ns),
                        _ => None,
                    };
                    let items = objects(state, "pods", ns, &labels, &fields)?
                        .into_iter()
                        .filter_map(|(ns, n, l)| {
                            let u = pipeline.pod_usage(&(ns.clone(), n.clone()))?;
                            Some(pod_item(&ns, &n, &l, &u))
                        })
                        .collect();
                    Ok(list("PodMetricsList", av, items))
                }
                ["namespaces", ns, "pods", name] => {
                    let key = (ns.to_string(), name.to_string());
                    let u = pipeline
                        .pod_usage(&key)
                        .ok_or_else(|| not_found("podmetrics.metrics.k8s.io", name))?;
                    let labels = state
                        .registry
                        .by_plural("", "pods")
                        .and_then(|r| {
                            state.cached("", "pods", &skiff_api::object_key(r, Some(ns), name))
                        })
                        .and_then(|c| c.value().pointer("/metadata/labels").cloned())
                        .unwrap_or(Value::Null);
                    let mut item = pod_item(ns, name, &labels, &u);
                    item["kind"] = json!("PodMetrics");
                    item["apiVersion"] = json!(av);
                    Ok(item)
                }
                _ => Err(unknown()),
            }
        }
        (CUSTOM_GROUP, "v1beta2") => {
            let (labels, _) = selectors(q)?;
            let (ns, kind, name, metric) = match rest {
                ["namespaces", ns, kind, name, metric] => (*ns, *kind, *name, *metric),
                _ => return Err(unknown()),
            };
            let items = custom_metric(state, ns, kind, name, metric, &labels)?;
            if items.is_empty() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("the server could not find the metric {metric} for {kind} {name}"),
                ));
            }
            Ok(
                json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {}, "items": items}),
            )
        }
        (EXTERNAL_GROUP, "v1beta1") => {
            let (labels, _) = selectors(q)?;
            let (ns, metric) = match rest {
                ["namespaces", ns, metric] => (*ns, *metric),
                _ => return Err(unknown()),
            };
            let items: Vec<Value> =
                objects(state, "pods", Some(ns), &labels, &FieldSelector::default())?
                    .into_iter()
                    .filter_map(|(ns, name, l)| {
                        let c = pipeline.custom(&(ns, name.clone()))?;
                        let v = c.values.get(metric)?;
                        let mut metric_labels = l.as_object().cloned().unwrap_or_default();
                        metric_labels.insert("pod".into(), json!(name));
                        Some(json!({"metricName": metric, "metricLabels": metric_labels,
                        "timestamp": rfc3339(c.timestamp), "value": value_quantity(*v)}))
                    })
                    .collect();
            if items.is_empty() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!(
                        "the server could not find the external metric {metric} in namespace {ns}"
                    ),
                ));
            }
            Ok(
                json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
            )
        }
        _ => Err(unknown()),
    }
}

/// `namespaces/{ns}/{kind}/{name}/{metric}`: pods (`*` for every pod matching the selector)
/// give one item each; a Service gives one item, the sum over the pods it selects.
fn custom_metric(
    state: &Arc<State>,
    ns: &str,
    kind: &str,
    name: &str,
    metric: &str,
    labels: &LabelSelector,
) -> Result<Vec<Value>, ApiError> {
    let pipeline = &state.metrics_pipeline;
    let item = |kind: &str, api_version: &str, name: &str, c: &CustomValues, v: f64| {
        json!({
            "describedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": api_version},
            "metric": {"name": metric},
            "timestamp": rfc3339(c.timestamp),
            "windowSeconds": c.window.as_secs().max(1),
            "value": value_quantity(v),
        })
    };
    match kind {
        "pods" => {
            let fields = if name == "*" {
                FieldSelector::default()
            } else {
                FieldSelector::parse(&format!("metadata.name={name}"), &["metadata.name"])
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            };
            Ok(objects(state, "pods", Some(ns), labels, &fields)?
                .into_iter()
                .filter_map(|(ns, n, _)| {
                    let c = pipeline.custom(&(ns, n.clone()))?;
                    let v = *c.values.get(metric)?;
                    Some(item("Pod", "/v1", &n, &c, v))
                })
                .collect())
        }
        "services" => {
            let res = state
                .registry
                .by_plural("", "services")
                .ok_or_else(|| ApiError::internal("services are not served"))?;
            let svc = state
                .cached("", "services", &skiff_api::object_key(res, Some(ns), name))
                .ok_or_else(|| ApiError::not_found("services", name))?
                .value();
            let Some(selector) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
                return Ok(vec![]);
            };
            let terms: Vec<String> = selector
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let sel = LabelSelector::parse(&terms.join(","))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let mut sum = None::<(f64, CustomValues)>;
            for (ns, n, _) in objects(state, "pods", Some(ns), &sel, &FieldSelector::default())? {
                if let Some(c) = pipeline.custom(&(ns, n))
                    && let Some(v) = c.values.get(metric).copied()
                {
                    sum = Some(match sum {
                        Some((total, first)) => (total + v, first),
                        None => (v, c),
                    });
                }
            }
            Ok(sum.map(|(v, c)| item("Service", "/v1", name, &c, v)).into_iter().collect())
        }
        _ => Ok(vec![]),
    }
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    let (_, version) = GROUP_VERSIONS.iter().find(|(g, _)| *g == group)?;
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv.clone()], "preferredVersion": gv}),
    )
}

/// Entries of `/apis` (APIGroupList).
pub fn api_groups() -> Vec<Value> {
    GROUP_VERSIONS
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect()
}

/// (name, namespaced, kind, verbs) of each resource of `group`.
fn resources(
    state: &Arc<State>,
    group: &str,
) -> Vec<(String, bool, &'static str, Vec<&'static str>)> {
    match group {
        METRICS_GROUP => vec![
            ("nodes".into(), false, "NodeMetrics", vec!["get", "list"]),
            ("pods".into(), true, "PodMetrics", vec!["get", "list"]),
        ],
        CUSTOM_GROUP => state
            .metrics_pipeline
            .custom_names()
            .into_iter()
            .flat_map(|m| {
                [
                    (format!("pods/{m}"), true, "MetricValueList", vec!["get"]),
                    (format!("services/{m}"), true, "MetricValueList", vec!["get"]),
                ]
            })
            .collect(),
        EXTERNAL_GROUP => state
            .metrics_pipeline
            .custom_names()
            .into_iter()
            .map(|m| (m, true, "ExternalMetricValueList", vec!["get"]))
            .collect(),
        _ => vec![],
    }
}

/// `/apis/<group>/<version>` (APIResourceList).
pub fn api_resource_list(state: &Arc<State>, group: &str, version: &str) -> Option<Value> {
    GROUP_VERSIONS.iter().find(|gv| **gv == (group, version))?;
    let resources: Vec<Value> = resources(state, group)
        .into_iter()
        .map(|(name, namespaced, kind, verbs)| {
            json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
        })
        .collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}

/// Items of the aggregated discovery document (`/apis`, APIGroupDiscoveryList).
pub fn aggregated_items(state: &Arc<State>) -> Vec<Value> {
    GROUP_VERSIONS
        .iter()
        .map(|(group, version)| {
            let resources: Vec<Value> = resources(state, group)
                .into_iter()
                .map(|(name, namespaced, kind, verbs)| {
                    json!({
                        "resource": name,
                        "responseKind": {"group": group, "version": version, "kind": kind},
                        "scope": if namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": "",
                        "verbs": verbs,
                    })
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null},
                "versions": [{"version": version, "resources": resources, "freshness": "Current"}]})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_should_read_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(1_500_000), "1500000n");
        assert_eq!(memory_quantity(8192), "8Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(value_quantity(2.0), "2");
        assert_eq!(value_quantity(12.3456), "12346m");
    }
}
