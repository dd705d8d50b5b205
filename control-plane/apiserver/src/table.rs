//! Server-side printing: `meta.k8s.io/v1` `Table` responses with the columns kubectl shows.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// `Accept` asks for a Table (`application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|a| a.contains("as=Table") && a.contains("g=meta.k8s.io"))
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{}d", h / 24) } else { format!("{}d{}h", h / 24, h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", h / (24 * 365), (h / 24) % 365)
    } else {
        format!("{}y", h / (24 * 365))
    }
}

pub fn age(ts: Option<&Value>) -> String {
    ts.and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((Utc::now() - t.with_timezone(&Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn col(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

use crate::printers::Printer;

fn printer(kind: &str) -> (Vec<Value>, Printer) {
    match kind {
        "Pod" => (
            vec![
                col("Name", "string", 0, "Name must be unique within a namespace."),
                col(
                    "Ready",
                    "string",
                    0,
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                col("Status", "string", 0, "The aggregate status of the containers in this pod."),
                col(
                    "Restarts",
                    "string",
                    0,
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                col(
                    "Age",
                    "string",
                    0,
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
                col("IP", "string", 1, "IP address allocated to the pod."),
                col("Node", "string", 1, "Name of the Node this pod runs on."),
                col(
                    "Nominated Node",
                    "string",
                    1,
                    "nominatedNodeName is set when this pod preempts other pods on the node.",
                ),
                col(
                    "Readiness Gates",
                    "string",
                    1,
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                ),
            ],
            pod_row,
        ),
        "Node" => (
            vec![
                col("Name", "string", 0, "Name of the node."),
                col("Status", "string", 0, "The status of the node."),
                col("Roles", "string", 0, "The roles of the node."),
                col("Age", "string", 0, "CreationTimestamp of the node."),
                col("Version", "string", 0, "Kubelet version reported by the node."),
                col("Internal-IP", "string", 1, "The node's internal IP."),
                col("External-IP", "string", 1, "The node's external IP."),
                col("OS-Image", "string", 1, "OS image reported by the node."),
                col("Kernel-Version", "string", 1, "Kernel version reported by the node."),
                col("Container-Runtime", "string", 1, "Container runtime reported by the node."),
            ],
            node_row,
        ),
        "Namespace" => (
            vec![
                col("Name", "string", 0, "Name of the namespace."),
                col("Status", "string", 0, "The status of the namespace."),
                col("Age", "string", 0, "CreationTimestamp of the namespace."),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/status/phase")),
                    json!(age(o.pointer("/metadata/creationTimestamp"))),
                ]
            },
        ),
        "Event" => (
            vec![
                col("Last Seen", "string", 0, "Time the event was last seen."),
                col("Type", "string", 0, "Type of the event."),
                col("Reason", "string", 0, "Reason of the event."),
                col("Object", "string", 0, "The object the event is about."),
                col("Message", "string", 0, "Message of the event."),
            ],
            |o| {
                let last = o
                    .pointer("/lastTimestamp")
                    .filter(|v| !v.is_null())
                    .or_else(|| o.pointer("/eventTime"))
                    .or_else(|| o.pointer("/metadata/creationTimestamp"));
                let object = format!(
                    "{}/{}",
                    s(o, "/involvedObject/kind").to_lowercase(),
                    s(o, "/involvedObject/name")
                );
                vec![
                    json!(age(last)),
                    json!(s(o, "/type")),
                    json!(s(o, "/reason")),
                    json!(object),
                    json!(s(o, "/message")),
                ]
            },
        ),
        "RuntimeClass" => (
            vec![
                col("Name", "string", 0, "Name of the runtime class."),
                col("Handler", "string", 0, "The CRI handler."),
                col("Age", "string", 0, "CreationTimestamp."),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/handler")),
                    json!(age(o.pointer("/metadata/creationTimestamp"))),
                ]
            },
        ),
        "Lease" => (
            vec![
                col("Name", "string", 0, "Name of the lease."),
                col("Holder", "string", 0, "The holder of the lease."),
                col("Age", "string", 0, "CreationTimestamp."),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/spec/holderIdentity")),
                    json!(age(o.pointer("/metadata/creationTimestamp"))),
                ]
            },
        ),
        other => crate::printers::printer(other).unwrap_or((
            vec![
                col("Name", "string", 0, "Name of the object."),
                col("Created At", "date", 0, "CreationTimestamp."),
            ],
            |o| vec![json!(s(o, "/metadata/name")), json!(s(o, "/metadata/creationTimestamp"))],
        )),
    }
}

/// kubectl's pod STATUS column.
pub fn pod_status_reason(pod: &Value) -> String {
    let mut reason = match s(pod, "/status/reason") {
        "" => s(pod, "/status/phase").to_string(),
        r => r.to_string(),
    };
    let mut initializing = false;
    let inits = pod.pointer("/status/initContainerStatuses").and_then(Value::as_array);
    let init_total =
        pod.pointer("/spec/initContainers").and_then(Value::as_array).map_or(0, Vec::len);
    for (i, c) in inits.into_iter().flatten().enumerate() {
        if c.pointer("/state/terminated/exitCode").and_then(Value::as_i64) == Some(0) {
            continue;
        }
        if let Some(t) = c.pointer("/state/terminated") {
            reason = match s(t, "/reason") {
                "" => format!(
                    "Init:ExitCode:{}",
                    t.pointer("/exitCode").and_then(Value::as_i64).unwrap_or(0)
                ),
                r => format!("Init:{r}"),
            };
        } else if let Some(w) = c
            .pointer("/state/waiting")
            .filter(|w| !s(w, "/reason").is_empty() && s(w, "/reason") != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, "/reason"));
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
        for c in statuses.into_iter().flatten().rev() {
            if let Some(w) = c.pointer("/state/waiting").filter(|w| !s(w, "/reason").is_empty()) {
                reason = s(w, "/reason").to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match s(t, "/reason") {
                    "" => match t.pointer("/signal").and_then(Value::as_i64).filter(|x| *x != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!(
                            "ExitCode:{}",
                            t.pointer("/exitCode").and_then(Value::as_i64).unwrap_or(0)
                        ),
                    },
                    r => r.to_string(),
                };
            } else if c.pointer("/ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_row(pod: &Value) -> Vec<Value> {
    let total = pod.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    let ready = statuses
        .into_iter()
        .flatten()
        .filter(|c| c.pointer("/ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/restartCount").and_then(Value::as_i64))
        .sum();
    let last_restart = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str))
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .max();
    let restarts = match (restarts, last_restart) {
        (n, Some(t)) if n > 0 => format!(
            "{n} ({} ago)",
            human_duration((Utc::now() - t.with_timezone(&Utc)).num_seconds())
        ),
        (n, _) => n.to_string(),
    };
    let or_none = |v: &str| if v.is_empty() { "<none>".to_string() } else { v.to_string() };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status_reason(pod)),
        json!(restarts),
        json!(age(pod.pointer("/metadata/creationTimestamp"))),
        json!(or_none(s(pod, "/status/podIP"))),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!("<none>"),
    ]
}

fn node_row(node: &Value) -> Vec<Value> {
    let conditions = node.pointer("/status/conditions").and_then(Value::as_array);
    let ready = conditions.into_iter().flatten().find(|c| s(c, "/type") == "Ready");
    let mut status = match ready.map(|c| s(c, "/status")) {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    roles.sort();
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
    let addr = |t: &str| {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(status),
        json!(roles),
        json!(age(node.pointer("/metadata/creationTimestamp"))),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(s(node, "/status/nodeInfo/osImage")),
        json!(s(node, "/status/nodeInfo/kernelVersion")),
        json!(s(node, "/status/nodeInfo/containerRuntimeVersion")),
    ]
}

/// Build a Table from objects of `res` (a custom resource's columns are its CRD's);
/// `include_object` is `None`, `Metadata` or `Object`.
pub fn to_table(
    res: &skiff_api::ResourceInfo,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
) -> Value {
    let custom = crate::crds::CustomVersion::of(res);
    let (columns, builtin_row) = match custom {
        Some(cv) => (crate::crds::table_columns(cv), None),
        None => {
            let (columns, row) = printer(res.kind);
            (columns, Some(row))
        }
    };
    let row = |o: &Value| -> Vec<Value> {
        match (custom, builtin_row) {
            (Some(cv), _) => crate::crds::table_cells(cv, o),
            (None, Some(row)) => row(o),
            (None, None) => Vec::new(),
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": row(o), "object": object})
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_should_match_kubernetes() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 24 * 3), "3d");
    }

    #[test]
    fn pod_status_reason_should_prefer_waiting_and_terminated_reasons() {
        let pod = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "ready": false, "state": {"waiting": {"reason": "ErrImageNeverPull"}}}]}});
        assert_eq!(pod_status_reason(&pod), "ErrImageNeverPull");
        let pod = json!({"status": {"phase": "Failed", "containerStatuses": [
            {"name": "c", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}});
        assert_eq!(pod_status_reason(&pod), "OOMKilled");
        let pod = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status_reason(&pod), "Terminating");
    }
}
