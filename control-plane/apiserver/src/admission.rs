//! Admission for new pods that needs other objects, as kube-apiserver's plugins do it:
//! `Priority` (resolve `priorityClassName`, or the global default class, into `priority`
//! and `preemptionPolicy`) and `RuntimeClass` (copy the class's pod overhead and merge its
//! scheduling constraints into the pod).

use serde_json::{Map, Value, json};
use skiff_store::{Consistency, ListOptions};

use crate::State;
use crate::errors::ApiError;

/// The two classes every cluster has (kube-apiserver creates them at start-up).
pub const SYSTEM_CLUSTER_CRITICAL: (&str, i64) = ("system-cluster-critical", 2_000_000_000);
pub const SYSTEM_NODE_CRITICAL: (&str, i64) = ("system-node-critical", 2_000_001_000);

fn forbidden(pod: &str, why: String) -> ApiError {
    ApiError::new(403, "Forbidden", format!("pods \"{pod}\" is forbidden: {why}"))
}

/// The cluster-scoped objects of `plural` (group `group`) from the watch cache, as
/// kube-apiserver's admission plugins read them from informers; `None` while the cache is
/// not built.
fn cached_list(state: &State, group: &str, plural: &str) -> Option<Vec<Value>> {
    let res = state.registry.by_plural(group, plural)?;
    let prefix = format!("/registry/{plural}/");
    let (items, _) = state.caches.get(res).snapshot(
        &prefix,
        &crate::selectors::LabelSelector::default(),
        &crate::selectors::FieldSelector::default(),
    )?;
    Some(items.iter().map(|c| c.value()).collect())
}

/// The cluster-scoped object `name` of `plural` (group `group`): from the watch cache, or
/// from the store when the cache does not have it (yet).
async fn read(
    state: &State,
    group: &str,
    plural: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let key = format!("/registry/{plural}/{name}");
    if let Some(cached) = state.cached(group, plural, &key) {
        return Ok(Some(cached.value()));
    }
    let kv = state
        .store
        .get_with(&key, Consistency::Serializable)
        .await
        .map_err(|e| ApiError::internal(format!("admission read of {key}: {e}")))?;
    Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

/// Run the pod admission plugins on a prepared (defaulted) new pod.
pub async fn admit_pod(state: &State, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    admit_priority(state, &name, spec).await?;
    admit_runtime_class(state, &name, spec).await?;
    let gated =
        spec.get("schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty());
    if gated {
        // What kube-apiserver writes on a gated pod, so `kubectl get` shows SchedulingGated.
        pod["status"]["conditions"] = json!([{
            "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastProbeTime": null,
            "lastTransitionTime": crate::objects::now_rfc3339(),
        }]);
    }
    Ok(())
}

async fn admit_priority(
    state: &State,
    pod: &str,
    spec: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let class_name = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("");
    let class = if class_name.is_empty() {
        let classes = match cached_list(state, "scheduling.k8s.io", "priorityclasses") {
            Some(classes) => classes,
            None => state
                .store
                .list_with(
                    "/registry/priorityclasses/",
                    &ListOptions { consistency: Consistency::Serializable, ..Default::default() },
                )
                .await
                .map_err(|e| {
                    ApiError::internal(format!("admission list of priority classes: {e}"))
                })?
                .items
                .iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .collect(),
        };
        classes
            .into_iter()
            .filter(|c| c["globalDefault"] == json!(true))
            .max_by_key(|c| c["value"].as_i64().unwrap_or(0))
    } else {
        match read(state, "scheduling.k8s.io", "priorityclasses", class_name).await? {
            Some(c) => Some(c),
            None => {
                return Err(forbidden(
                    pod,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
        }
    };
    let (value, policy, resolved_name) = match &class {
        Some(c) => (
            c["value"].as_i64().unwrap_or(0),
            c["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority").to_string(),
            c["metadata"]["name"].as_str().unwrap_or("").to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string(), String::new()),
    };
    // Defaulting fills `priority: 0`; any other value the user wrote must agree.
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != 0
        && given != value
    {
        return Err(forbidden(
            pod,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    spec.insert("priority".into(), json!(value));
    if !resolved_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(resolved_name));
    }
    let given_policy = spec.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("");
    if class.is_some() || given_policy.is_empty() {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

async fn admit_runtime_class(
    state: &State,
    pod: &str,
    spec: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(rc_name) = spec.get("runtimeClassName").and_then(Value::as_str).map(str::to_string)
    else {
        return Ok(());
    };
    if rc_name.is_empty() {
        return Ok(());
    }
    let Some(rc) = read(state, "node.k8s.io", "runtimeclasses", &rc_name).await? else {
        return Err(forbidden(pod, format!("pod rejected: RuntimeClass \"{rc_name}\" not found")));
    };
    if let Some(fixed) = rc["overhead"]["podFixed"].as_object() {
        match spec.get("overhead") {
            Some(given) if !given.is_null() && given.as_object() != Some(fixed) => {
                return Err(forbidden(
                    pod,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            _ => {
                spec.insert("overhead".into(), Value::Object(fixed.clone()));
            }
        }
    }
    let scheduling = &rc["scheduling"];
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let target = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        if target.is_null() {
            *target = json!({});
        }
        if let Some(target) = target.as_object_mut() {
            for (k, v) in selector {
                match target.get(k) {
                    Some(existing) if existing != v => {
                        return Err(forbidden(
                            pod,
                            "pod rejected: conflict in nodeSelector".into(),
                        ));
                    }
                    _ => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        let list = spec.entry("tolerations").or_insert_with(|| json!([]));
        if list.is_null() {
            *list = json!([]);
        }
        if let Some(list) = list.as_array_mut() {
            for t in tolerations {
                if !list.contains(t) {
                    list.push(t.clone());
                }
            }
        }
    }
    Ok(())
}
