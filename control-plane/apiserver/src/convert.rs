//! Conversion between a resource's served version and the version it is stored as, for the
//! resources that are views of another: `events.k8s.io/v1` Events (stored as core `v1`
//! Events) and `autoscaling/v1` HorizontalPodAutoscalers (stored as `autoscaling/v2`).
//! What the older shape cannot hold travels in annotations, as Kubernetes does, so a
//! read-modify-write through either version loses nothing.

use serde_json::{Map, Value, json};
use skiff_api::ResourceInfo;

const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// Core/v1 Event field names and their events.k8s.io/v1 counterparts.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(o: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = o.remove(from) {
        o.insert(to.to_string(), v);
    }
}

/// `objects` as stored, as the view `view` serves them: a custom resource's may need its
/// conversion webhook (one review for all of them).
pub async fn from_storage_via(
    state: &crate::State,
    objects: Vec<Value>,
    view: &ResourceInfo,
) -> Result<Vec<Value>, crate::errors::ApiError> {
    match crate::crds::CustomVersion::of(view) {
        Some(cv) => crate::crds::conversion::convert(state, cv, objects, &view.api_version()).await,
        None => Ok(objects.into_iter().map(|o| from_storage(o, view)).collect()),
    }
}

/// The view's object `obj` in its storage shape, through a custom resource's conversion.
pub async fn to_storage_via(
    state: &crate::State,
    obj: Value,
    view: &ResourceInfo,
    storage_api_version: &str,
) -> Result<Value, crate::errors::ApiError> {
    match crate::crds::CustomVersion::of(view) {
        Some(cv) => {
            let mut out =
                crate::crds::conversion::convert(state, cv, vec![obj], storage_api_version).await?;
            Ok(out.pop().unwrap_or(Value::Null))
        }
        None => Ok(to_storage(obj, view, storage_api_version)),
    }
}

/// The stored object `obj` as the view `view` serves it.
pub fn from_storage(mut obj: Value, view: &ResourceInfo) -> Value {
    let Some(o) = obj.as_object_mut() else { return obj };
    if view.is_custom() {
        // Strategy None: only the apiVersion changes.
        o.insert("apiVersion".into(), json!(view.api_version()));
        return obj;
    }
    match (view.group, view.kind) {
        ("events.k8s.io", "Event") => {
            for (core, events) in EVENT_RENAMES {
                rename(o, core, events);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa_v2_to_v1(o),
        _ => return obj,
    }
    o.insert("apiVersion".into(), json!(view.api_version()));
    obj
}

/// The view's object `obj` in its storage shape (`storage_api_version`).
pub fn to_storage(mut obj: Value, view: &ResourceInfo, storage_api_version: &str) -> Value {
    let Some(o) = obj.as_object_mut() else { return obj };
    if view.is_custom() {
        o.insert("apiVersion".into(), json!(storage_api_version));
        return obj;
    }
    match (view.group, view.kind) {
        ("events.k8s.io", "Event") => {
            for (core, events) in EVENT_RENAMES {
                rename(o, events, core);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa_v1_to_v2(o),
        _ => return obj,
    }
    o.insert("apiVersion".into(), json!(storage_api_version));
    obj
}

fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization")
}

fn annotations(o: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let Value::Object(meta) = meta else { unreachable!("metadata was just made an object") };
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    match ann {
        Value::Object(a) => a,
        _ => unreachable!("annotations was just made an object"),
    }
}

fn drop_empty_annotations(o: &mut Map<String, Value>) {
    if let Some(Value::Object(meta)) = o.get_mut("metadata")
        && meta.get("annotations").and_then(Value::as_object).is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
}

fn hpa_v2_to_v1(o: &mut Map<String, Value>) {
    let mut stash: Vec<(&str, Value)> = Vec::new();
    if let Some(Value::Object(spec)) = o.get_mut("spec") {
        let metrics = match spec.remove("metrics") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        let (cpu, others): (Vec<Value>, Vec<Value>) =
            metrics.into_iter().partition(is_cpu_utilization);
        if let Some(t) = cpu.first().and_then(|m| m.pointer("/resource/target/averageUtilization"))
        {
            spec.insert("targetCPUUtilizationPercentage".into(), t.clone());
        }
        if !others.is_empty() {
            stash.push((HPA_METRICS, Value::Array(others)));
        }
        if let Some(b) = spec.remove("behavior").filter(|b| !b.is_null()) {
            stash.push((HPA_BEHAVIOR, b));
        }
    }
    if let Some(Value::Object(status)) = o.get_mut("status") {
        let current = match status.remove("currentMetrics") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        let (cpu, others): (Vec<Value>, Vec<Value>) = current.into_iter().partition(|m| {
            m.get("type").and_then(Value::as_str) == Some("Resource")
                && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        });
        if let Some(u) = cpu.first().and_then(|m| m.pointer("/resource/current/averageUtilization"))
        {
            status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        if !others.is_empty() {
            stash.push((HPA_CURRENT_METRICS, Value::Array(others)));
        }
        if let Some(c) = status.remove("conditions").filter(|c| !c.is_null()) {
            stash.push((HPA_CONDITIONS, c));
        }
    }
    if !stash.is_empty() {
        let ann = annotations(o);
        for (k, v) in stash {
            ann.insert(k.into(), json!(v.to_string()));
        }
    }
}

fn hpa_v1_to_v2(o: &mut Map<String, Value>) {
    let mut taken: Map<String, Value> = Map::new();
    for k in [HPA_METRICS, HPA_CURRENT_METRICS, HPA_BEHAVIOR, HPA_CONDITIONS] {
        if let Some(v) = annotations(o).remove(k)
            && let Some(parsed) = v.as_str().and_then(|s| serde_json::from_str(s).ok())
        {
            taken.insert(k.into(), parsed);
        }
    }
    drop_empty_annotations(o);
    if let Some(Value::Object(spec)) = o.get_mut("spec") {
        let mut metrics = Vec::new();
        if let Some(t) = spec.remove("targetCPUUtilizationPercentage").filter(|t| !t.is_null()) {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": t}}}));
        }
        if let Some(Value::Array(others)) = taken.remove(HPA_METRICS) {
            metrics.extend(others);
        }
        if !metrics.is_empty() {
            spec.insert("metrics".into(), Value::Array(metrics));
        }
        if let Some(b) = taken.remove(HPA_BEHAVIOR) {
            spec.insert("behavior".into(), b);
        }
    }
    if let Some(Value::Object(status)) = o.get_mut("status") {
        let mut current = Vec::new();
        if let Some(u) = status.remove("currentCPUUtilizationPercentage").filter(|u| !u.is_null()) {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": u}}}));
        }
        if let Some(Value::Array(others)) = taken.remove(HPA_CURRENT_METRICS) {
            current.extend(others);
        }
        if !current.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = taken.remove(HPA_CONDITIONS) {
            status.insert("conditions".into(), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::Registry;

    #[test]
    fn events_should_round_trip_between_versions() {
        let reg = Registry::builtin();
        let view = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hello", "reason": "Started",
            "source": {"component": "kubelet"}, "count": 2, "type": "Normal"});
        let ev = from_storage(core.clone(), view);
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["note"], "hello");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["deprecatedCount"], 2);
        assert_eq!(to_storage(ev, view, "v1"), core);
    }

    #[test]
    fn hpa_v1_should_keep_v2_only_fields_in_annotations() {
        let reg = Registry::builtin();
        let view = reg.lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]}});
        let v1 = from_storage(v2.clone(), view);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(v1["spec"].get("metrics").is_none());
        assert!(v1["metadata"]["annotations"][HPA_METRICS].as_str().unwrap().contains("memory"));
        assert_eq!(to_storage(v1, view, "autoscaling/v2"), v2);
    }
}
