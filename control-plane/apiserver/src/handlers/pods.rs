//! Pod subresources served from the store and the nodes: `binding` (the scheduler's
//! assignment of a pod to a node) and `log` (streamed from the pod's node).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::logs::PodLogSource;
use skiff_store::StoreError;

use super::{
    MAX_RETRIES, Target, decode, encode, get, json_response, parse_body, query_bool, read_current,
    too_many_writers,
};
use crate::State;
use crate::errors::ApiError;
use crate::objects::{name_of, now_rfc3339};

/// `POST pods/{name}/binding`: assign a pending pod to a node, once.
pub(super) async fn bind(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let binding = parse_body(headers, body)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            &name,
            vec![("target.name".into(), "Required value".into())],
        ));
    }
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, "pods", &key, &name).await?;
        let mut pod = decode(&prev)?;
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
            && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::conflict(
                "pods",
                &name,
                "the pod's UID does not match the binding",
            ));
        }
        if let Some(current) =
            pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods",
                &name,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::conflict(
                "pods",
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        set_condition(&mut pod, "PodScheduled", "True", None, None);
        match state.store.update(&key, encode(&pod), Some(prev.mod_revision)).await {
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, "pods", &name)),
            Ok(_) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ));
            }
        }
    }
    Err(too_many_writers("pods", &name))
}

/// Set (or replace) a pod condition, keeping lastTransitionTime when the status is unchanged.
pub fn set_condition(
    pod: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conds =
        pod["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else { return };
    let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds.iter_mut().find(|x| x.get("type").and_then(Value::as_str) == Some(ty)) {
        Some(existing) => {
            if existing.get("status").and_then(Value::as_str) == Some(status) {
                c["lastTransitionTime"] =
                    existing.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
            *existing = c;
        }
        None => conds.push(c),
    }
}

/// `GET pods/{name}/log`.
pub async fn pod_log(
    state: &Arc<State>,
    target: &Target,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = get(state, target).await?;
    let name = name_of(&pod).to_string();
    let container = container_for(&pod, q.get("container").filter(|c| !c.is_empty()))?;
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    let statuses = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/status/{l}")).and_then(Value::as_array))
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(&container))
        .cloned();
    let previous = query_bool(q, "previous");
    let waiting = statuses.as_ref().and_then(|s| s.pointer("/state/waiting"));
    let ran_before =
        statuses.as_ref().is_some_and(|s| s.pointer("/lastState/terminated").is_some());
    if node.is_empty() || statuses.is_none() || (waiting.is_some() && !ran_before && !previous) {
        let reason = waiting
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let source = state
        .log_sources
        .read()
        .map_err(|_| ApiError::internal("log source registry poisoned"))?
        .get(&node)
        .cloned();
    let source: Arc<dyn PodLogSource> = match source {
        Some(source) => source,
        None => match state.remote_kubelet(&node).await? {
            Some(remote) => remote,
            None => {
                return Err(ApiError::internal(format!(
                    "node {node:?} serves no kubelet API and has no log endpoint registered with this api server"
                )));
            }
        },
    };
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let request = skiff_api::logs::LogRequest {
        namespace: target.namespace.clone().unwrap_or_default(),
        pod: name.clone(),
        pod_uid: pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string(),
        container,
        follow: query_bool(q, "follow"),
        previous,
        timestamps: query_bool(q, "timestamps"),
        tail_lines: num("tailLines"),
        since_seconds: num("sinceSeconds"),
        since_time: q.get("sinceTime").cloned(),
        limit_bytes: num("limitBytes"),
    };
    let stream = source.logs(request).await.map_err(|e| match e {
        skiff_api::logs::LogError::NotFound(m) => ApiError::new(404, "NotFound", m),
        skiff_api::logs::LogError::BadRequest(m) => ApiError::bad_request(m),
        skiff_api::logs::LogError::Internal(m) => ApiError::internal(m),
    })?;
    let body = Body::from_stream(futures::StreamExt::map(stream, |r| r));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// The container a `log`, `exec` or `attach` request is for: the one it names, else the
/// pod's `kubectl.kubernetes.io/default-container`, else its only container.
pub fn container_for(pod: &Value, requested: Option<&String>) -> Result<String, ApiError> {
    let name = name_of(pod).to_string();
    let containers: Vec<String> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let main: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    Ok(match requested {
        Some(c) if containers.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None => match pod
            .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
            .and_then(Value::as_str)
        {
            Some(d) if containers.iter().any(|c| c == d) => d.to_string(),
            _ if main.len() == 1 => main[0].to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                )));
            }
        },
    })
}
