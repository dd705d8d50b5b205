//! The HorizontalPodAutoscaler controller (autoscaling/v2), as kube-controller-manager runs
//! it (`pkg/controller/podautoscaler`): every sync period (`--horizontal-pod-autoscaler-sync-
//! period`, 15 s by default) each HPA reads its target's `scale` subresource, computes a
//! replica count for every metric it names ([`replicas`]: tolerance, missing and not-yet-ready
//! pods), takes the largest, stabilizes and rate-limits it with its `behavior` ([`behavior`]),
//! clamps it to min/max, writes the new scale and its status (current metrics, desired
//! replicas, the AbleToScale/ScalingActive/ScalingLimited conditions) and records kube's events.
//!
//! Metrics come through the API ([`metrics`]): `metrics.k8s.io`, `custom.metrics.k8s.io` and
//! `external.metrics.k8s.io`, all served by Skiff's api server. The recommendation history
//! and scale events live in memory, as kube's do (a new leader starts afresh).

pub mod behavior;
pub mod metrics;
pub mod replicas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec, MetricTarget};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use skiff_client_tools::events::EventType;
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::batch::api_code;
use crate::{Context, Error};

const WORKERS: usize = 2;

/// kube's defaults: `--horizontal-pod-autoscaler-cpu-initialization-period` and
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let hpas = ctx.informers.get::<HorizontalPodAutoscaler>();
    hpas.wait_until_ready().await;
    let history: Arc<Mutex<HashMap<String, behavior::History>>> = Arc::default();
    let (q, all, kept) = (queue.clone(), hpas.store(), history.clone());
    hpas.on_change(move |change| match change {
        // Only a new HPA or a spec change is looked at at once: the controller's own status
        // writes come back as changes too, and each HPA is looked at every period anyway.
        skiff_client_tools::informers::Change::Upsert { old, new } => {
            let generation = |h: &HorizontalPodAutoscaler| h.metadata.generation;
            if old.as_ref().is_none_or(|o| generation(o) != generation(new)) {
                q.add(&key_of(*new));
            }
        }
        skiff_client_tools::informers::Change::Delete { gone, .. } => q.add(&key_of(*gone)),
        skiff_client_tools::informers::Change::Resynced => {
            let keys: std::collections::HashSet<String> =
                all.state().iter().map(|h| key_of(h.as_ref())).collect();
            // A deletion missed in a watch gap leaves no history behind.
            kept.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| keys.contains(k));
            for k in &keys {
                q.add(k);
            }
        }
    });
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        hpas: hpas.store(),
        history,
        plurals: Mutex::default(),
    });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "horizontalpodautoscaler", move |k| {
        let c = controller.clone();
        async move { c.sync(&k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

struct Controller {
    ctx: Arc<Context>,
    hpas: Store<HorizontalPodAutoscaler>,
    /// Recommendations and scale events per HPA key.
    history: Arc<Mutex<HashMap<String, behavior::History>>>,
    /// (apiVersion, kind) → (plural, has a scale subresource), from discovery.
    plurals: Mutex<HashMap<(String, String), (String, bool)>>,
}

/// One metric's outcome: its replica count and status entry, or why it has none.
struct MetricOutcome {
    replicas: i32,
    status: Value,
    /// kube's description of the metric (`cpu resource utilization (percentage of request)`).
    name: String,
}

/// The target's replicas: asked for (`spec`) and existing (`status`).
#[derive(Clone, Copy)]
struct Counts {
    spec: i32,
    status: i32,
}

/// A failed metric: the condition reason and the message.
struct MetricFailure {
    reason: &'static str,
    message: String,
}

/// Conditions by type → (status, reason, message).
type Conditions = Vec<(&'static str, bool, String, String)>;

impl Controller {
    fn sync_period(&self) -> Duration {
        self.ctx.options.hpa_sync_period
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let Some(hpa) = self.hpas.get(&ObjectRef::new(name).within(ns)) else {
            self.lock_history().remove(key);
            return Ok(None);
        };
        if hpa.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let now = Utc::now();
        let spec = hpa.spec.clone().unwrap_or_default();
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}", target.kind, target.name);
        let mut conditions: Conditions = Vec::new();
        let previous_status = hpa.status.clone().unwrap_or_default();
        let mut status = json!({
            "currentReplicas": previous_status.current_replicas.unwrap_or(0),
            "desiredReplicas": previous_status.desired_replicas,
            "observedGeneration": hpa.metadata.generation,
        });
        if let Some(t) = &previous_status.last_scale_time {
            status["lastScaleTime"] = json!(t.0.to_string());
        }
        if let Some(m) = &previous_status.current_metrics {
            status["currentMetrics"] = serde_json::to_value(m).unwrap_or(Value::Null);
        }
        // The target's scale.
        let scale_path = match self
            .scale_path(ns, target.api_version.as_deref(), &target.kind, &target.name)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let message =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                self.event(&hpa, EventType::Warning, "FailedGetScale", &e);
                conditions.push(("AbleToScale", false, "FailedGetScale".into(), message));
                self.write_status(&hpa, status, conditions).await?;
                return Ok(Some(self.sync_period()));
            }
        };
        let scale = match skiff_client_tools::scale::get(&self.ctx.client, &scale_path).await {
            Ok(s) => s,
            Err(e) => {
                let message =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                self.event(&hpa, EventType::Warning, "FailedGetScale", &e.to_string());
                conditions.push(("AbleToScale", false, "FailedGetScale".into(), message));
                self.write_status(&hpa, status, conditions).await?;
                return Ok(Some(self.sync_period()));
            }
        };
        let current = scale.replicas;
        let status_replicas = scale.status_replicas;
        let selector = scale.selector.clone();
        status["currentReplicas"] = json!(status_replicas);
        conditions.push((
            "AbleToScale",
            true,
            "SucceededGetScale".into(),
            "the HPA controller was able to get the target's current scale".into(),
        ));

        let mut rescale_reason = String::new();
        let desired: i32;
        if behavior::scaling_disabled(current, min) {
            desired = 0;
            conditions.push((
                "ScalingActive",
                false,
                "ScalingDisabled".into(),
                "scaling is disabled since the replica count of the target is zero".into(),
            ));
            status["currentMetrics"] = Value::Null;
        } else if current > max {
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
        } else if current < min {
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
        } else {
            if selector.is_empty() {
                let message = format!("the HPA target's scale is missing a selector: {reference}");
                self.event(&hpa, EventType::Warning, "SelectorRequired", "selector is required");
                conditions.push(("ScalingActive", false, "InvalidSelector".into(), message));
                self.write_status(&hpa, status, conditions).await?;
                return Ok(Some(self.sync_period()));
            }
            let pods = self.pods(ns, &selector).await;
            let counts = Counts { spec: current, status: status_replicas };
            let (up, down) = behavior::default_behavior(spec.behavior.as_ref());
            let tolerance = behavior::tolerances(&up, &down);
            let timing = replicas::Timing {
                now,
                cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
                initial_readiness_delay: INITIAL_READINESS_DELAY,
                tolerance,
            };
            let metric_specs =
                spec.metrics.clone().filter(|m| !m.is_empty()).unwrap_or_else(default_metrics);
            let mut statuses = Vec::new();
            let mut best: Option<MetricOutcome> = None;
            let mut failures = Vec::new();
            for m in &metric_specs {
                match self.compute(ns, m, counts, &selector, &pods, &timing).await {
                    Ok(o) => {
                        statuses.push(o.status.clone());
                        if best.as_ref().is_none_or(|b| o.replicas > b.replicas) {
                            best = Some(o);
                        }
                    }
                    Err(f) => {
                        statuses.push(empty_status(m));
                        failures.push(f);
                    }
                }
            }
            // Each failing metric says why (kube: FailedGet<Kind>Metric).
            for f in &failures {
                self.event(&hpa, EventType::Warning, f.reason, &f.message);
            }
            status["currentMetrics"] = json!(statuses);
            // Kube's rule: no valid metric, or invalid ones while the valid ones would scale
            // down, and nothing is scaled (a missing metric never lets the others shrink it).
            let best = match best {
                Some(b) if failures.is_empty() || b.replicas >= current => b,
                _ => {
                    let first = failures.first();
                    let (reason, message) = first
                        .map_or(("FailedGetResourceMetric", String::new()), |f| {
                            (f.reason, f.message.clone())
                        });
                    self.event(
                        &hpa,
                        EventType::Warning,
                        "FailedComputeMetricsReplicas",
                        &format!(
                            "invalid metrics ({} invalid out of {}), first error is: {message}",
                            failures.len(),
                            metric_specs.len(),
                        ),
                    );
                    conditions.push((
                        "ScalingActive",
                        false,
                        reason.into(),
                        format!("the HPA was unable to compute the replica count: {message}"),
                    ));
                    self.write_status(&hpa, status, conditions).await?;
                    return Ok(Some(self.sync_period()));
                }
            };
            conditions.push((
                "ScalingActive",
                true,
                "ValidMetricFound".into(),
                format!(
                    "the HPA was able to successfully calculate a replica count from {}",
                    best.name
                ),
            ));
            let recommended = best.replicas;
            rescale_reason = if recommended > current {
                format!("{} above target", best.name)
            } else {
                "All metrics below target".into()
            };
            let decision = {
                let mut history = self.lock_history();
                let h = history.entry(key.to_string()).or_default();
                behavior::prune(h, now, &up, &down);
                behavior::normalize(
                    h,
                    now,
                    current,
                    recommended,
                    behavior::Limits { min, max },
                    &up,
                    &down,
                )
            };
            let able = &decision.able_to_scale;
            conditions.push(("AbleToScale", able.status, able.reason.into(), able.message.clone()));
            let limited = &decision.scaling_limited;
            conditions.push((
                "ScalingLimited",
                limited.status,
                limited.reason.into(),
                limited.message.clone(),
            ));
            desired = decision.replicas;
        }
        status["desiredReplicas"] = json!(desired);
        if desired != current {
            match skiff_client_tools::scale::set(
                &self.ctx.client,
                &scale_path,
                desired,
                Some(&scale.resource_version),
            )
            .await
            {
                Ok(()) => {
                    self.event(
                        &hpa,
                        EventType::Normal,
                        "SuccessfulRescale",
                        &format!("New size: {desired}; reason: {rescale_reason}"),
                    );
                    conditions.push((
                        "AbleToScale",
                        true,
                        "SucceededRescale".into(),
                        format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                    ));
                    status["lastScaleTime"] =
                        json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    let mut history = self.lock_history();
                    behavior::record_scale(
                        history.entry(key.to_string()).or_default(),
                        now,
                        current,
                        desired,
                    );
                }
                Err(e) => {
                    self.event(
                        &hpa,
                        EventType::Warning,
                        "FailedRescale",
                        &format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
                    );
                    conditions.push((
                        "AbleToScale",
                        false,
                        "FailedUpdateScale".into(),
                        format!("the HPA controller was unable to update the target scale: {e}"),
                    ));
                }
            }
        }
        self.write_status(&hpa, status, conditions).await?;
        Ok(Some(self.sync_period()))
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, HashMap<String, behavior::History>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, hpa: &HorizontalPodAutoscaler, type_: EventType, reason: &str, message: &str) {
        self.ctx.recorder.record(
            skiff_client_tools::events::reference(hpa),
            type_,
            reason,
            message.to_string(),
        );
    }

    /// The plural of `kind` in `api_version`, found by discovery (and remembered), and whether
    /// it has a `scale` subresource.
    async fn plural(&self, api_version: &str, kind: &str) -> Result<(String, bool), String> {
        let cache_key = (api_version.to_string(), kind.to_string());
        if let Some(p) = self.plurals.lock().ok().and_then(|p| p.get(&cache_key).cloned()) {
            return Ok(p);
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.ctx.client, &gvk)
            .await
            .map_err(|e| format!("no matches for kind \"{kind}\" in group \"{group}\": {e}"))?;
        let scalable = caps
            .subresources
            .iter()
            .any(|(r, _)| r.plural.ends_with("/scale") || r.plural == "scale");
        let found = (ar.plural, scalable);
        if let Ok(mut p) = self.plurals.lock() {
            p.insert(cache_key, found.clone());
        }
        Ok(found)
    }

    /// The path of the target's `scale` subresource.
    async fn scale_path(
        &self,
        ns: &str,
        api_version: Option<&str>,
        kind: &str,
        name: &str,
    ) -> Result<String, String> {
        let api_version = api_version.unwrap_or("v1");
        let (plural, scalable) = self.plural(api_version, kind).await?;
        if !scalable {
            return Err(format!("{kind} in {api_version} has no scale subresource"));
        }
        Ok(skiff_client_tools::scale::path(api_version, &plural, ns, name))
    }

    /// The pods the target's selector picks, as the replica calculator sees them.
    async fn pods(
        &self,
        ns: &str,
        selector: &str,
    ) -> Result<Vec<(Pod, replicas::PodInfo)>, String> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| format!("unable to get pods while calculating replica count: {e}"))?;
        Ok(list
            .items
            .into_iter()
            .map(|p| {
                let info = pod_info(&p);
                (p, info)
            })
            .collect())
    }

    async fn compute(
        &self,
        ns: &str,
        m: &MetricSpec,
        counts: Counts,
        selector: &str,
        pods: &Result<Vec<(Pod, replicas::PodInfo)>, String>,
        t: &replicas::Timing,
    ) -> Result<MetricOutcome, MetricFailure> {
        let client = &self.ctx.client;
        let current = counts.spec;
        let reason = match m.type_.as_str() {
            "ContainerResource" => "FailedGetContainerResourceMetric",
            "Pods" => "FailedGetPodsMetric",
            "Object" => "FailedGetObjectMetric",
            "External" => "FailedGetExternalMetric",
            _ => "FailedGetResourceMetric",
        };
        let pods = pods.as_ref().map_err(|e| MetricFailure { reason, message: e.clone() })?;
        let infos = |resource: Option<(&str, Option<&str>)>| -> Vec<replicas::PodInfo> {
            pods.iter()
                .map(|(p, info)| {
                    let mut info = info.clone();
                    info.request = resource.and_then(|(r, c)| pod_request(p, r, c));
                    info
                })
                .collect()
        };
        match m.type_.as_str() {
            "Resource" | "ContainerResource" => {
                let (resource, container, target, kind_name) = if m.type_ == "Resource" {
                    let r = m.resource.as_ref().ok_or_else(|| invalid("resource"))?;
                    (r.name.as_str(), None, &r.target, "resource")
                } else {
                    let r = m
                        .container_resource
                        .as_ref()
                        .ok_or_else(|| invalid("containerResource"))?;
                    (r.name.as_str(), Some(r.container.as_str()), &r.target, "containerResource")
                };
                let samples = metrics::resource(client, ns, selector, resource, container)
                    .await
                    .map_err(|e| MetricFailure { reason: "FailedGetResourceMetric", message: e })?;
                let cpu = resource == "cpu";
                let describe = |what: &str| {
                    let what = if what.is_empty() { String::new() } else { format!(" {what}") };
                    match container {
                        Some(c) => format!("{resource} container resource{what} for container {c}"),
                        None => format!("{resource} resource{what}"),
                    }
                };
                if let Some(u) = target.average_utilization {
                    let pod_infos = infos(Some((resource, container)));
                    let rec = replicas::resource_replicas(
                        current,
                        replicas::Target::Utilization(u),
                        &samples,
                        &pod_infos,
                        cpu,
                        t,
                    )
                    .map_err(|e| MetricFailure {
                        reason: "FailedGetResourceMetric",
                        message: format!("failed to get {resource} utilization: {e}"),
                    })?;
                    let mut status = json!({"type": m.type_, kind_name: {"name": resource, "current": {
                        "averageValue": milli_quantity(rec.raw_average),
                        "averageUtilization": rec.utilization,
                    }}});
                    if let Some(c) = container {
                        status[kind_name]["container"] = json!(c);
                    }
                    Ok(MetricOutcome {
                        replicas: rec.replicas,
                        status,
                        name: describe("utilization (percentage of request)"),
                    })
                } else {
                    let avg = target
                        .average_value
                        .as_ref()
                        .and_then(|q| quantity_milli(&q.0))
                        .ok_or_else(|| invalid(kind_name))?;
                    let rec = replicas::resource_replicas(
                        current,
                        replicas::Target::AverageValue(avg),
                        &samples,
                        &infos(None),
                        cpu,
                        t,
                    )
                    .map_err(|e| MetricFailure {
                        reason: "FailedGetResourceMetric",
                        message: format!("failed to get {resource} usage: {e}"),
                    })?;
                    let mut status = json!({"type": m.type_, kind_name: {"name": resource, "current": {"averageValue": milli_quantity(rec.raw_average)}}});
                    if let Some(c) = container {
                        status[kind_name]["container"] = json!(c);
                    }
                    Ok(MetricOutcome { replicas: rec.replicas, status, name: describe("") })
                }
            }
            "Pods" => {
                let p = m.pods.as_ref().ok_or_else(|| invalid("pods"))?;
                let metric = &p.metric.name;
                let avg = p
                    .target
                    .average_value
                    .as_ref()
                    .and_then(|q| quantity_milli(&q.0))
                    .ok_or_else(|| invalid("pods"))?;
                let metric_selector =
                    p.metric.selector.as_ref().map(selector_string).unwrap_or_default();
                let samples =
                    metrics::pods(client, ns, selector, metric, &metric_selector)
                        .await
                        .map_err(|e| MetricFailure { reason: "FailedGetPodsMetric", message: e })?;
                let rec = replicas::plain_replicas(current, avg, &samples, &infos(None), t)
                    .map_err(|e| MetricFailure {
                        reason: "FailedGetPodsMetric",
                        message: format!("failed to get pods metric value: {e}"),
                    })?;
                let status = json!({"type": "Pods", "pods": {"metric": {"name": metric}, "current": {"averageValue": milli_quantity(rec.raw_average)}}});
                Ok(MetricOutcome {
                    replicas: rec.replicas,
                    status,
                    name: format!("pods metric {metric}"),
                })
            }
            "Object" | "External" => {
                let (metric, metric_selector, target, value) = if m.type_ == "Object" {
                    let o = m.object.as_ref().ok_or_else(|| invalid("object"))?;
                    let described = &o.described_object;
                    let api_version = described.api_version.as_deref().unwrap_or("v1");
                    let (plural, _) = self
                        .plural(api_version, &described.kind)
                        .await
                        .map_err(|message| MetricFailure { reason, message })?;
                    let sel = o.metric.selector.as_ref().map(selector_string).unwrap_or_default();
                    let (value, _) =
                        metrics::object(client, ns, &plural, &described.name, &o.metric.name, &sel)
                            .await
                            .map_err(|message| MetricFailure { reason, message })?;
                    (&o.metric.name, sel, &o.target, value)
                } else {
                    let e = m.external.as_ref().ok_or_else(|| invalid("external"))?;
                    let sel = e.metric.selector.as_ref().map(selector_string).unwrap_or_default();
                    let (value, _) = metrics::external(client, ns, &e.metric.name, &sel)
                        .await
                        .map_err(|message| MetricFailure { reason, message })?;
                    (&e.metric.name, sel, &e.target, value)
                };
                if pods.is_empty() {
                    return Err(MetricFailure {
                        reason,
                        message: "no pods returned by selector while calculating replica count"
                            .into(),
                    });
                }
                let (target, current_key) = target_of(target).ok_or_else(|| invalid("object"))?;
                // kube: an average over the pods that exist (status), a value over the
                // ready pods and the replicas asked for (spec).
                let rec = match target {
                    replicas::Target::AverageValue(_) => {
                        replicas::object_replicas(counts.status, target, value, 0, t)
                    }
                    _ => replicas::object_replicas(
                        current,
                        target,
                        value,
                        replicas::ready_pod_count(&infos(None)),
                        t,
                    ),
                };
                let shown = if current_key == "averageValue" { rec.raw_average } else { value };
                let (status, name) = if m.type_ == "Object" {
                    let o = m.object.as_ref().ok_or_else(|| invalid("object"))?;
                    (
                        json!({"type": "Object", "object": {"metric": {"name": metric}, "describedObject": o.described_object,
                            "current": {current_key: milli_quantity(shown)}}}),
                        format!("{} metric {metric}", o.described_object.kind.to_lowercase()),
                    )
                } else {
                    (
                        json!({"type": "External", "external": {"metric": {"name": metric},
                            "current": {current_key: milli_quantity(shown)}}}),
                        format!("external metric {metric}({metric_selector})"),
                    )
                };
                Ok(MetricOutcome { replicas: rec.replicas, status, name })
            }
            other => Err(MetricFailure {
                reason: "InvalidMetricSourceType",
                message: format!("unknown metric source type \"{other}\""),
            }),
        }
    }

    /// Write the status when it changed; a condition keeps its lastTransitionTime while its
    /// status stays the same.
    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        mut status: Value,
        conditions: Conditions,
    ) -> Result<(), Error> {
        let old: Vec<Value> = hpa
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| c.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
            .unwrap_or_default();
        // Later entries of one type override earlier ones (a failure after a success).
        let mut by_type: Vec<(&str, bool, String, String)> = Vec::new();
        for c in conditions {
            match by_type.iter_mut().find(|e| e.0 == c.0) {
                Some(e) => *e = c,
                None => by_type.push(c),
            }
        }
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let conditions: Vec<Value> = by_type
            .into_iter()
            .map(|(ty, ok, reason, message)| {
                let s = if ok { "True" } else { "False" };
                let since = old
                    .iter()
                    .find(|o| o["type"] == ty && o["status"] == s)
                    .and_then(|o| o["lastTransitionTime"].as_str().map(str::to_string))
                    .unwrap_or_else(|| now.clone());
                json!({"type": ty, "status": s, "lastTransitionTime": since, "reason": reason, "message": message})
            })
            .collect();
        // Conditions this sync did not look at keep what they said (kube's setCondition).
        let mut conditions = conditions;
        for o in &old {
            if !conditions.iter().any(|c| c["type"] == o["type"]) {
                conditions.push(o.clone());
            }
        }
        status["conditions"] = json!(conditions);
        let before =
            hpa.status.as_ref().and_then(|s| serde_json::to_value(s).ok()).unwrap_or(Value::Null);
        if same_status(&before, &status) {
            return Ok(());
        }
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(
            self.ctx.client.clone(),
            hpa.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({"status": status});
        match api
            .patch_status(
                hpa.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether two statuses say the same (quantities compared as written).
/// (A null in the new status is a field to clear: the merge patch sends it as such.)
fn same_status(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
        v
    };
    strip(a) == strip(b)
}

/// kube's default when an HPA names no metric: 80 % CPU utilization.
fn default_metrics() -> Vec<MetricSpec> {
    serde_json::from_value(json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]))
        .unwrap_or_default()
}

fn empty_status(m: &MetricSpec) -> Value {
    json!({"type": m.type_})
}

fn invalid(what: &str) -> MetricFailure {
    MetricFailure {
        reason: "InvalidMetricSourceType",
        message: format!("the metric's {what} source is missing or has no valid target"),
    }
}

fn target_of(t: &MetricTarget) -> Option<(replicas::Target, &'static str)> {
    if let Some(v) = t.average_value.as_ref().and_then(|q| quantity_milli(&q.0)) {
        return Some((replicas::Target::AverageValue(v), "averageValue"));
    }
    let v = t.value.as_ref().and_then(|q| quantity_milli(&q.0))?;
    Some((replicas::Target::Value(v), "value"))
}

fn selector_string(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    serde_json::to_value(s)
        .map(|v| skiff_helpers::labels::json_selector_string(&v))
        .unwrap_or_default()
}

pub(crate) fn quantity_milli(q: &str) -> Option<i64> {
    i64::try_from(skiff_helpers::quantity::Quantity::parse(q)?.milli_value()).ok()
}

/// A milli-value as a canonical quantity (`250m`, `2`, `1536Ki` style as kube prints them).
fn milli_quantity(milli: i64) -> String {
    use skiff_helpers::quantity::{Format, Quantity};
    Quantity::new_milli(milli, Format::DecimalSI).canonical()
}

fn time_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// What the replica calculator needs of a pod (its request is filled per metric).
fn pod_info(p: &Pod) -> replicas::PodInfo {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    replicas::PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        deleting: p.metadata.deletion_timestamp.is_some(),
        // kube counts only an explicit False as not ready (Unknown is not evidence), and a
        // condition without a transition time as one from the start of time.
        ready: ready.is_some_and(|c| c.status != "False"),
        ready_transition: ready.map(|c| {
            c.last_transition_time.as_ref().and_then(time_of).unwrap_or(DateTime::UNIX_EPOCH)
        }),
        start_time: status.and_then(|s| s.start_time.as_ref()).and_then(time_of),
        request: None,
    }
}

/// The sum of the containers' requests of `resource` (milli-units), or `None` when a
/// container (the named one) sets none.
fn pod_request(p: &Pod, resource: &str, container: Option<&str>) -> Option<i64> {
    let spec = p.spec.as_ref()?;
    // Sidecars (restartable init containers) run beside the containers and are measured with
    // them, so their requests count too.
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut sum = 0;
    for c in spec.containers.iter().chain(sidecars) {
        if container.is_some_and(|want| c.name != want) {
            continue;
        }
        let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
        sum += quantity_milli(&q.0)?;
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_request_should_need_every_container_to_set_one() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}}))
        .unwrap();
        assert_eq!(pod_request(&pod, "cpu", None), Some(1100));
        assert_eq!(pod_request(&pod, "cpu", Some("a")), Some(100));
        assert_eq!(pod_request(&pod, "memory", None), None);
    }

    #[test]
    fn same_status_should_ignore_nulls() {
        assert!(same_status(&json!({"a": 1, "b": null}), &json!({"a": 1})));
        assert!(!same_status(&json!({"a": 1}), &json!({"a": 2})));
    }
}
