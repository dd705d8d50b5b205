//! Table columns and rows of the workload, service, config, storage, policy and RBAC kinds,
//! matching what `kubectl get` prints against Kubernetes (its internal printers).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::kinds::selector_string;
use crate::table::{age, human_duration, s};

pub type Printer = fn(&Value) -> Vec<Value>;

/// Column definitions: (name, type, priority); priority 1 columns show with `-o wide`.
fn cols(defs: &[(&str, &str, i32)]) -> Vec<Value> {
    defs.iter()
        .map(|(name, ty, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}

fn name(o: &Value) -> Value {
    json!(s(o, "/metadata/name"))
}

fn created(o: &Value) -> Value {
    json!(age(o.pointer("/metadata/creationTimestamp")))
}

fn int(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn len(o: &Value, ptr: &str) -> usize {
    match o.pointer(ptr) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(m)) => m.len(),
        _ => 0,
    }
}

/// `ptr` (an array of objects) with each one's `field`, joined with `,`.
fn joined(o: &Value, ptr: &str, field: &str) -> String {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|c| s(c, field)).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

/// CONTAINERS and IMAGES of a pod template at `ptr` (e.g. `/spec/template/spec`).
fn containers_images(o: &Value, ptr: &str) -> (Value, Value) {
    let cs = o.pointer(&format!("{ptr}/containers")).and_then(Value::as_array);
    let field = |f: &str| -> String {
        cs.into_iter()
            .flatten()
            .map(|c| c.get(f).and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    (json!(field("name")), json!(field("image")))
}

fn selector(o: &Value, ptr: &str) -> Value {
    json!(or_none(o.pointer(ptr).map(selector_string).unwrap_or_default()))
}

/// A `map[string]string` selector (Services, RCs, nodeSelector) as `a=b,c=d`.
fn map_selector(o: &Value, ptr: &str) -> String {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

fn access_modes(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The first three endpoints and a "+ N more..." tail, like kubectl.
fn first_three(items: Vec<String>) -> String {
    if items.is_empty() {
        return "<none>".into();
    }
    let more = items.len().saturating_sub(3);
    let mut out = items.into_iter().take(3).collect::<Vec<_>>().join(",");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

fn ts(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn job_status(o: &Value) -> &'static str {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array);
    let is = |ty: &str| {
        conds.into_iter().flatten().any(|c| {
            c.get("type").and_then(Value::as_str) == Some(ty)
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    };
    if is("Complete") {
        "Complete"
    } else if is("Failed") {
        "Failed"
    } else if is("FailureTarget") {
        "FailureTarget"
    } else if is("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if is("Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

/// The printer of `kind`, if it has one here.
pub fn printer(kind: &str) -> Option<(Vec<Value>, Printer)> {
    let wide3 = [("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)];
    Some(match kind {
        "Deployment" => (
            cols(&[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
                wide3[2],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    )),
                    json!(int(o, "/status/updatedReplicas")),
                    json!(int(o, "/status/availableReplicas")),
                    created(o),
                    c,
                    i,
                    selector(o, "/spec/selector"),
                ]
            },
        ),
        "ReplicaSet" | "ReplicationController" => (
            cols(&[
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
                wide3[2],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/template/spec");
                let sel = if o.get("kind").and_then(Value::as_str) == Some("ReplicationController")
                {
                    json!(or_none(map_selector(o, "/spec/selector")))
                } else {
                    selector(o, "/spec/selector")
                };
                vec![
                    name(o),
                    json!(int(o, "/spec/replicas")),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    created(o),
                    c,
                    i,
                    sel,
                ]
            },
        ),
        "StatefulSet" => (
            cols(&[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    )),
                    created(o),
                    c,
                    i,
                ]
            },
        ),
        "DaemonSet" => (
            cols(&[
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                ("Node Selector", "string", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
                wide3[2],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/template/spec");
                vec![
                    name(o),
                    json!(int(o, "/status/desiredNumberScheduled")),
                    json!(int(o, "/status/currentNumberScheduled")),
                    json!(int(o, "/status/numberReady")),
                    json!(int(o, "/status/updatedNumberScheduled")),
                    json!(int(o, "/status/numberAvailable")),
                    json!(or_none(map_selector(o, "/spec/template/spec/nodeSelector"))),
                    created(o),
                    c,
                    i,
                    selector(o, "/spec/selector"),
                ]
            },
        ),
        "ControllerRevision" => (
            cols(&[
                ("Name", "string", 0),
                ("Controller", "string", 0),
                ("Revision", "integer", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let owner = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .and_then(|refs| {
                        refs.iter().find(|r| r.get("controller") == Some(&json!(true)))
                    })
                    .map(|r| {
                        let group =
                            s(r, "/apiVersion").split_once('/').map(|(g, _)| g).unwrap_or("");
                        let kind = s(r, "/kind").to_lowercase();
                        let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
                        format!("{kind}/{}", s(r, "/name"))
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![name(o), json!(owner), json!(int(o, "/revision")), created(o)]
            },
        ),
        "Job" => (
            cols(&[
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Completions", "string", 0),
                ("Duration", "string", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
                wide3[2],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/template/spec");
                let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                    Some(n) => format!("{}/{n}", int(o, "/status/succeeded")),
                    None => {
                        let p = int(o, "/spec/parallelism");
                        format!("{}/1 of {p}", int(o, "/status/succeeded"))
                    }
                };
                let start = ts(o.pointer("/status/startTime"));
                let end = ts(o.pointer("/status/completionTime")).unwrap_or_else(Utc::now);
                let duration =
                    start.map(|st| human_duration((end - st).num_seconds())).unwrap_or_default();
                vec![
                    name(o),
                    json!(job_status(o)),
                    json!(completions),
                    json!(duration),
                    created(o),
                    c,
                    i,
                    selector(o, "/spec/selector"),
                ]
            },
        ),
        "CronJob" => (
            cols(&[
                ("Name", "string", 0),
                ("Schedule", "string", 0),
                ("Timezone", "string", 0),
                ("Suspend", "boolean", 0),
                ("Active", "integer", 0),
                ("Last Schedule", "string", 0),
                ("Age", "string", 0),
                wide3[0],
                wide3[1],
                wide3[2],
            ]),
            |o| {
                let (c, i) = containers_images(o, "/spec/jobTemplate/spec/template/spec");
                let last = match o.pointer("/status/lastScheduleTime") {
                    Some(t) if !t.is_null() => age(Some(t)),
                    _ => "<none>".into(),
                };
                let suspend = o.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    name(o),
                    json!(s(o, "/spec/schedule")),
                    json!(or_none(s(o, "/spec/timeZone").to_string())),
                    json!(if suspend { "True" } else { "False" }),
                    json!(len(o, "/status/active")),
                    json!(last),
                    created(o),
                    c,
                    i,
                    selector(o, "/spec/jobTemplate/spec/selector"),
                ]
            },
        ),
        "Service" => (
            cols(&[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                ("Age", "string", 0),
                ("Selector", "string", 1),
            ]),
            |o| {
                let ty = s(o, "/spec/type");
                let external = match ty {
                    "ExternalName" => s(o, "/spec/externalName").to_string(),
                    "LoadBalancer" => {
                        let ips: Vec<&str> = o
                            .pointer("/status/loadBalancer/ingress")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(|i| {
                                i.get("ip")
                                    .or_else(|| i.get("hostname"))
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                            })
                            .collect();
                        if ips.is_empty() { "<pending>".into() } else { ips.join(",") }
                    }
                    _ => {
                        let ext: Vec<&str> = o
                            .pointer("/spec/externalIPs")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        or_none(ext.join(","))
                    }
                };
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        match p.get("nodePort").and_then(Value::as_i64) {
                            Some(np) => format!("{port}:{np}/{proto}"),
                            None => format!("{port}/{proto}"),
                        }
                    })
                    .collect();
                vec![
                    name(o),
                    json!(ty),
                    json!(or_none(s(o, "/spec/clusterIP").to_string())),
                    json!(external),
                    json!(or_none(ports.join(","))),
                    created(o),
                    json!(or_none(map_selector(o, "/spec/selector"))),
                ]
            },
        ),
        "Endpoints" => (
            cols(&[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)]),
            |o| {
                let mut eps = Vec::new();
                for subset in o.pointer("/subsets").and_then(Value::as_array).into_iter().flatten()
                {
                    let ports: Vec<i64> = subset
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.get("port").and_then(Value::as_i64))
                        .collect();
                    for a in subset.get("addresses").and_then(Value::as_array).into_iter().flatten()
                    {
                        let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                        if ports.is_empty() {
                            eps.push(ip.to_string());
                        }
                        for p in &ports {
                            eps.push(format!("{ip}:{p}"));
                        }
                    }
                }
                vec![name(o), json!(first_three(eps)), created(o)]
            },
        ),
        "EndpointSlice" => (
            cols(&[
                ("Name", "string", 0),
                ("AddressType", "string", 0),
                ("Ports", "string", 0),
                ("Endpoints", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let ports: Vec<String> = o
                    .pointer("/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("port").and_then(Value::as_i64))
                    .map(|p| p.to_string())
                    .collect();
                let addrs: Vec<String> = o
                    .pointer("/endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|e| {
                        e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default()
                    })
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                let ports = if ports.is_empty() { "<unset>".into() } else { ports.join(",") };
                vec![
                    name(o),
                    json!(s(o, "/addressType")),
                    json!(ports),
                    json!(first_three(addrs)),
                    created(o),
                ]
            },
        ),
        "ConfigMap" => {
            (cols(&[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)]), |o| {
                vec![name(o), json!(len(o, "/data") + len(o, "/binaryData")), created(o)]
            })
        }
        "Secret" => (
            cols(&[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Data", "integer", 0),
                ("Age", "string", 0),
            ]),
            |o| vec![name(o), json!(s(o, "/type")), json!(len(o, "/data")), created(o)],
        ),
        "ServiceAccount" => {
            (cols(&[("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)]), |o| {
                vec![name(o), json!(len(o, "/secrets")), created(o)]
            })
        }
        "PersistentVolume" => (
            cols(&[
                ("Name", "string", 0),
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("Reclaim Policy", "string", 0),
                ("Status", "string", 0),
                ("Claim", "string", 0),
                ("StorageClass", "string", 0),
                ("VolumeAttributesClass", "string", 0),
                ("Reason", "string", 0),
                ("Age", "string", 0),
                ("VolumeMode", "string", 1),
            ]),
            |o| {
                let claim = match s(o, "/spec/claimRef/name") {
                    "" => String::new(),
                    n => format!("{}/{n}", s(o, "/spec/claimRef/namespace")),
                };
                vec![
                    name(o),
                    json!(s(o, "/spec/capacity/storage")),
                    json!(access_modes(o.pointer("/spec/accessModes"))),
                    json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                    json!(s(o, "/status/phase")),
                    json!(claim),
                    json!(s(o, "/spec/storageClassName")),
                    json!(match s(o, "/spec/volumeAttributesClassName") {
                        "" => "<unset>",
                        v => v,
                    }),
                    json!(s(o, "/status/reason")),
                    created(o),
                    json!(s(o, "/spec/volumeMode")),
                ]
            },
        ),
        "PersistentVolumeClaim" => (
            cols(&[
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Volume", "string", 0),
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("StorageClass", "string", 0),
                ("VolumeAttributesClass", "string", 0),
                ("Age", "string", 0),
                ("VolumeMode", "string", 1),
            ]),
            |o| {
                vec![
                    name(o),
                    json!(s(o, "/status/phase")),
                    json!(s(o, "/spec/volumeName")),
                    json!(s(o, "/status/capacity/storage")),
                    json!(access_modes(o.pointer("/status/accessModes"))),
                    json!(s(o, "/spec/storageClassName")),
                    json!(match s(o, "/spec/volumeAttributesClassName") {
                        "" => "<unset>",
                        v => v,
                    }),
                    created(o),
                    json!(s(o, "/spec/volumeMode")),
                ]
            },
        ),
        "ResourceQuota" => (
            cols(&[
                ("Name", "string", 0),
                ("Age", "string", 0),
                ("Request", "string", 0),
                ("Limit", "string", 0),
            ]),
            |o| {
                let (mut req, mut lim) = (Vec::new(), Vec::new());
                let hard = o.pointer("/spec/hard").and_then(Value::as_object);
                for (k, v) in hard.into_iter().flatten() {
                    let used = o
                        .pointer(&format!("/status/used/{}", k.replace('/', "~1")))
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    let entry = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
                    if k.starts_with("limits.") { lim.push(entry) } else { req.push(entry) }
                }
                vec![name(o), created(o), json!(req.join(", ")), json!(lim.join(", "))]
            },
        ),
        "APIService" => (
            cols(&[
                ("Name", "string", 0),
                ("Service", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let service = match o.pointer("/spec/service").filter(|v| v.is_object()) {
                    Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
                    None => "Local".to_string(),
                };
                let available = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|c| s(c, "/type") == "Available")
                    .map(|c| match s(c, "/status") {
                        "True" => "True".to_string(),
                        st => format!("{st} ({})", s(c, "/reason")),
                    })
                    .unwrap_or_else(|| "Unknown".to_string());
                vec![name(o), json!(service), json!(available), created(o)]
            },
        ),
        "PodTemplate" => (
            cols(&[
                ("Name", "string", 0),
                ("Containers", "string", 0),
                ("Images", "string", 0),
                ("Pod Labels", "string", 0),
            ]),
            |o| {
                let names = joined(o, "/template/spec/containers", "/name");
                let images = joined(o, "/template/spec/containers", "/image");
                let labels = o
                    .pointer("/template/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "<none>".into());
                vec![name(o), json!(names), json!(images), json!(labels)]
            },
        ),
        "ComponentStatus" => (
            cols(&[
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Message", "string", 0),
                ("Error", "string", 0),
            ]),
            |o| {
                let healthy = o
                    .pointer("/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| s(c, "/type") == "Healthy"));
                let (status, message, error) = match healthy {
                    None => ("Unknown", "", ""),
                    Some(c) => (
                        if s(c, "/status") == "True" { "Healthy" } else { "Unhealthy" },
                        s(c, "/message"),
                        s(c, "/error"),
                    ),
                };
                vec![name(o), json!(status), json!(message), json!(error)]
            },
        ),
        "CSIDriver" => (
            cols(&[
                ("Name", "string", 0),
                ("AttachRequired", "boolean", 0),
                ("PodInfoOnMount", "boolean", 0),
                ("StorageCapacity", "boolean", 0),
                ("TokenRequests", "string", 0),
                ("RequiresRepublish", "boolean", 0),
                ("Modes", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let flag =
                    |p: &str, d: bool| json!(o.pointer(p).and_then(Value::as_bool).unwrap_or(d));
                let tokens = match o.pointer("/spec/tokenRequests").and_then(Value::as_array) {
                    None => "<unset>".to_string(),
                    Some(t) => t.iter().map(|r| s(r, "/audience")).collect::<Vec<_>>().join(","),
                };
                let modes = or_none(
                    o.pointer("/spec/volumeLifecycleModes")
                        .and_then(Value::as_array)
                        .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                );
                vec![
                    name(o),
                    flag("/spec/attachRequired", true),
                    flag("/spec/podInfoOnMount", false),
                    flag("/spec/storageCapacity", false),
                    json!(tokens),
                    flag("/spec/requiresRepublish", false),
                    json!(modes),
                    created(o),
                ]
            },
        ),
        "CSINode" => {
            (cols(&[("Name", "string", 0), ("Drivers", "integer", 0), ("Age", "string", 0)]), |o| {
                vec![name(o), json!(len(o, "/spec/drivers")), created(o)]
            })
        }
        "VolumeAttachment" => (
            cols(&[
                ("Name", "string", 0),
                ("Attacher", "string", 0),
                ("PV", "string", 0),
                ("Node", "string", 0),
                ("Attached", "boolean", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                vec![
                    name(o),
                    json!(s(o, "/spec/attacher")),
                    json!(s(o, "/spec/source/persistentVolumeName")),
                    json!(s(o, "/spec/nodeName")),
                    json!(o.pointer("/status/attached").and_then(Value::as_bool).unwrap_or(false)),
                    created(o),
                ]
            },
        ),
        "VolumeAttributesClass" => (
            cols(&[("Name", "string", 0), ("DriverName", "string", 0), ("Age", "string", 0)]),
            |o| vec![name(o), json!(s(o, "/driverName")), created(o)],
        ),
        "IPAddress" => (cols(&[("Name", "string", 0), ("ParentRef", "string", 0)]), |o| {
            let parent = match o.pointer("/spec/parentRef") {
                None | Some(Value::Null) => "<none>".to_string(),
                Some(p) => {
                    let (group, resource) = (s(p, "/group"), s(p, "/resource"));
                    let mut out = if group.is_empty() {
                        resource.to_lowercase()
                    } else {
                        format!("{resource}.{group}").to_lowercase()
                    };
                    if !s(p, "/namespace").is_empty() {
                        out = format!("{out}/{}", s(p, "/namespace"));
                    }
                    format!("{out}/{}", s(p, "/name"))
                }
            };
            // kube adds an Age cell without its column; kubectl prints the columns it has.
            vec![name(o), json!(parent), created(o)]
        }),
        "ServiceCIDR" => {
            (cols(&[("Name", "string", 0), ("CIDRs", "string", 0), ("Age", "string", 0)]), |o| {
                let cidrs = o
                    .pointer("/spec/cidrs")
                    .and_then(Value::as_array)
                    .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                vec![name(o), json!(cidrs), created(o)]
            })
        }
        "DeviceClass" | "ResourceClaimTemplate" => {
            (cols(&[("Name", "string", 0), ("Age", "string", 0)]), |o| vec![name(o), created(o)])
        }
        "ResourceClaim" => {
            (cols(&[("Name", "string", 0), ("State", "string", 0), ("Age", "string", 0)]), |o| {
                let mut state = Vec::new();
                let deleting =
                    o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
                let allocated = o.pointer("/status/allocation").is_some_and(|v| !v.is_null());
                if deleting {
                    state.push("deleted");
                }
                if !allocated && !deleting {
                    state.push("pending");
                }
                if allocated {
                    state.push("allocated");
                    if len(o, "/status/reservedFor") > 0 {
                        state.push("reserved");
                    }
                }
                vec![name(o), json!(state.join(",")), created(o)]
            })
        }
        "ResourceSlice" => (
            cols(&[
                ("Name", "string", 0),
                ("Node", "string", 0),
                ("Driver", "string", 0),
                ("Pool", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                vec![
                    name(o),
                    json!(s(o, "/spec/nodeName")),
                    json!(s(o, "/spec/driver")),
                    json!(s(o, "/spec/pool/name")),
                    created(o),
                ]
            },
        ),
        "FlowSchema" => (
            cols(&[
                ("Name", "string", 0),
                ("PriorityLevel", "string", 0),
                ("MatchingPrecedence", "string", 0),
                ("DistinguisherMethod", "string", 0),
                ("Age", "string", 0),
                ("MissingPL", "string", 0),
            ]),
            |o| {
                let method =
                    match o.pointer("/spec/distinguisherMethod/type").and_then(Value::as_str) {
                        Some(t) => t.to_string(),
                        None => "<none>".to_string(),
                    };
                let missing = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| s(c, "/type") == "Dangling"))
                    .map_or("?".to_string(), |c| s(c, "/status").to_string());
                vec![
                    name(o),
                    json!(s(o, "/spec/priorityLevelConfiguration/name")),
                    json!(int(o, "/spec/matchingPrecedence").to_string()),
                    json!(method),
                    created(o),
                    json!(missing),
                ]
            },
        ),
        "PriorityLevelConfiguration" => (
            cols(&[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("NominalConcurrencyShares", "string", 0),
                ("Queues", "string", 0),
                ("HandSize", "string", 0),
                ("QueueLengthLimit", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let none = || json!("<none>");
                let limited = o.pointer("/spec/limited");
                let shares = limited
                    .and_then(|l| l.pointer("/nominalConcurrencyShares"))
                    .and_then(Value::as_i64)
                    .map_or_else(none, |n| json!(n.to_string()));
                let queuing = limited.and_then(|l| l.pointer("/limitResponse/queuing"));
                let q = |k: &str| {
                    queuing
                        .and_then(|q| q.get(k))
                        .and_then(Value::as_i64)
                        .map_or_else(none, |n| json!(n.to_string()))
                };
                vec![
                    name(o),
                    json!(s(o, "/spec/type")),
                    shares,
                    q("queues"),
                    q("handSize"),
                    q("queueLengthLimit"),
                    created(o),
                ]
            },
        ),
        "CSIStorageCapacity" => (cols(&[("Name", "string", 0), ("Created At", "date", 0)]), |o| {
            vec![name(o), json!(s(o, "/metadata/creationTimestamp"))]
        }),
        "LimitRange" | "Role" | "ClusterRole" | "CustomResourceDefinition" => {
            (cols(&[("Name", "string", 0), ("Created At", "date", 0)]), |o| {
                vec![name(o), json!(s(o, "/metadata/creationTimestamp"))]
            })
        }
        "RoleBinding" | "ClusterRoleBinding" => (
            cols(&[
                ("Name", "string", 0),
                ("Role", "string", 0),
                ("Age", "string", 0),
                ("Users", "string", 1),
                ("Groups", "string", 1),
                ("ServiceAccounts", "string", 1),
            ]),
            |o| {
                let subjects = o.pointer("/subjects").and_then(Value::as_array);
                let of = |kind: &str| -> String {
                    subjects
                        .into_iter()
                        .flatten()
                        .filter(|sub| s(sub, "/kind") == kind)
                        .map(|sub| match kind {
                            "ServiceAccount" => {
                                format!("{}/{}", s(sub, "/namespace"), s(sub, "/name"))
                            }
                            _ => s(sub, "/name").to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    name(o),
                    json!(format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"))),
                    created(o),
                    json!(of("User")),
                    json!(of("Group")),
                    json!(of("ServiceAccount")),
                ]
            },
        ),
        "HorizontalPodAutoscaler" => (
            cols(&[
                ("Name", "string", 0),
                ("Reference", "string", 0),
                ("Targets", "string", 0),
                ("MinPods", "string", 0),
                ("MaxPods", "integer", 0),
                ("Replicas", "integer", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let targets = hpa_targets(o);
                let min = o.pointer("/spec/minReplicas").and_then(Value::as_i64).unwrap_or(1);
                vec![
                    name(o),
                    json!(format!(
                        "{}/{}",
                        s(o, "/spec/scaleTargetRef/kind"),
                        s(o, "/spec/scaleTargetRef/name")
                    )),
                    json!(targets),
                    json!(min.to_string()),
                    json!(int(o, "/spec/maxReplicas")),
                    json!(int(o, "/status/currentReplicas")),
                    created(o),
                ]
            },
        ),
        "NetworkPolicy" => (
            cols(&[("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]),
            |o| vec![name(o), selector(o, "/spec/podSelector"), created(o)],
        ),
        "Ingress" => (
            cols(&[
                ("Name", "string", 0),
                ("Class", "string", 0),
                ("Hosts", "string", 0),
                ("Address", "string", 0),
                ("Ports", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let hosts: Vec<&str> = o
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| r.get("host").and_then(Value::as_str).unwrap_or("*"))
                    .collect();
                let addrs: Vec<&str> = o
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        i.get("ip")
                            .or_else(|| i.get("hostname"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    })
                    .collect();
                let ports = if len(o, "/spec/tls") > 0 { "80, 443" } else { "80" };
                vec![
                    name(o),
                    json!(or_none(s(o, "/spec/ingressClassName").to_string())),
                    json!(if hosts.is_empty() { "*".to_string() } else { hosts.join(",") }),
                    json!(addrs.join(",")),
                    json!(ports),
                    created(o),
                ]
            },
        ),
        "IngressClass" => (
            cols(&[
                ("Name", "string", 0),
                ("Controller", "string", 0),
                ("Parameters", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let params = match s(o, "/spec/parameters/name") {
                    "" => "<none>".to_string(),
                    n => format!("{}/{n}", s(o, "/spec/parameters/kind")),
                };
                vec![name(o), json!(s(o, "/spec/controller")), json!(params), created(o)]
            },
        ),
        "StorageClass" => (
            cols(&[
                ("Name", "string", 0),
                ("Provisioner", "string", 0),
                ("ReclaimPolicy", "string", 0),
                ("VolumeBindingMode", "string", 0),
                ("AllowVolumeExpansion", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let default =
                    s(o, "/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                        == "true";
                let n = s(o, "/metadata/name");
                let expand =
                    o.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    json!(if default { format!("{n} (default)") } else { n.to_string() }),
                    json!(s(o, "/provisioner")),
                    json!(s(o, "/reclaimPolicy")),
                    json!(s(o, "/volumeBindingMode")),
                    json!(expand.to_string()),
                    created(o),
                ]
            },
        ),
        "PodDisruptionBudget" => (
            cols(&[
                ("Name", "string", 0),
                ("Min Available", "string", 0),
                ("Max Unavailable", "string", 0),
                ("Allowed Disruptions", "integer", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let show = |ptr: &str| match o.pointer(ptr) {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::String(s)) => s.clone(),
                    _ => "N/A".into(),
                };
                vec![
                    name(o),
                    json!(show("/spec/minAvailable")),
                    json!(show("/spec/maxUnavailable")),
                    json!(int(o, "/status/disruptionsAllowed")),
                    created(o),
                ]
            },
        ),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => (
            cols(&[("Name", "string", 0), ("Webhooks", "integer", 0), ("Age", "string", 0)]),
            |o| {
                let n = o.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len);
                vec![name(o), json!(n), created(o)]
            },
        ),
        "ValidatingAdmissionPolicy" => (
            cols(&[
                ("Name", "string", 0),
                ("Validations", "integer", 0),
                ("ParamKind", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let n =
                    o.pointer("/spec/validations").and_then(Value::as_array).map_or(0, Vec::len);
                let kind = match o.pointer("/spec/paramKind") {
                    Some(p) if !p.is_null() => {
                        format!("{}/{}", s(p, "/apiVersion"), s(p, "/kind"))
                    }
                    _ => "<unset>".into(),
                };
                vec![name(o), json!(n), json!(kind), created(o)]
            },
        ),
        "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding" => (
            cols(&[
                ("Name", "string", 0),
                ("PolicyName", "string", 0),
                ("ParamRef", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let param = match o.pointer("/spec/paramRef") {
                    Some(p) if !p.is_null() => {
                        let ns = s(p, "/namespace");
                        let n = s(p, "/name");
                        if ns.is_empty() { format!("*/{n}") } else { format!("{ns}/{n}") }
                    }
                    _ => "<unset>".into(),
                };
                vec![name(o), json!(s(o, "/spec/policyName")), json!(param), created(o)]
            },
        ),
        "MutatingAdmissionPolicy" => (
            cols(&[("Name", "string", 0), ("Mutations", "integer", 0), ("Age", "string", 0)]),
            |o| {
                let n = o.pointer("/spec/mutations").and_then(Value::as_array).map_or(0, Vec::len);
                vec![name(o), json!(n), created(o)]
            },
        ),
        "WasmAdmissionPolicy" => (
            cols(&[
                ("Name", "string", 0),
                ("Module", "string", 0),
                ("Mutating", "boolean", 0),
                ("Failure-Policy", "string", 0),
                ("Age", "string", 0),
            ]),
            |o| {
                let policy =
                    o.pointer("/spec/failurePolicy").and_then(Value::as_str).unwrap_or("Fail");
                vec![
                    name(o),
                    json!(s(o, "/spec/module")),
                    json!(o.pointer("/spec/mutating").and_then(Value::as_bool).unwrap_or(false)),
                    json!(policy),
                    created(o),
                ]
            },
        ),
        "WasmAdmissionPolicyBinding" => {
            (cols(&[("Name", "string", 0), ("Policy", "string", 0), ("Age", "string", 0)]), |o| {
                vec![name(o), json!(s(o, "/spec/policyName")), created(o)]
            })
        }
        "PriorityClass" => (
            cols(&[
                ("Name", "string", 0),
                ("Value", "integer", 0),
                ("Global-Default", "boolean", 0),
                ("Age", "string", 0),
                ("PreemptionPolicy", "string", 0),
            ]),
            |o| {
                let global = o.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    name(o),
                    json!(int(o, "/value")),
                    json!(global),
                    created(o),
                    json!(s(o, "/preemptionPolicy")),
                ]
            },
        ),
        "CertificateSigningRequest" => (
            cols(&[
                ("Name", "string", 0),
                ("Age", "string", 0),
                ("SignerName", "string", 0),
                ("Requestor", "string", 0),
                ("RequestedDuration", "string", 0),
                ("Condition", "string", 0),
            ]),
            |o| {
                let duration = o
                    .pointer("/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    .map_or_else(|| "<none>".to_string(), human_duration);
                vec![
                    name(o),
                    created(o),
                    json!(s(o, "/spec/signerName")),
                    json!(s(o, "/spec/username")),
                    json!(duration),
                    json!(crate::certificates::condition_summary(o)),
                ]
            },
        ),
        _ => return None,
    })
}

/// The TARGETS column of `kubectl get hpa`: each metric's current value over its target, as
/// kube's printer writes them (`cpu: 45%/50%`, `10/20`, `<unknown>/100 (avg)`), at most two
/// then `+ N more...`.
fn hpa_targets(o: &Value) -> String {
    let specs: Vec<&Value> =
        o.pointer("/spec/metrics").and_then(Value::as_array).into_iter().flatten().collect();
    if specs.is_empty() {
        return "<none>".into();
    }
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let unknown = || "<unknown>".to_string();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let status =
                |path: &str| text(o.pointer(&format!("/status/currentMetrics/{i}/{path}")));
            let spec = |path: &str| text(m.pointer(&format!("/{path}")));
            let value_pair = |src: &str| match spec(&format!("{src}/target/averageValue")) {
                Some(target) => format!(
                    "{}/{target} (avg)",
                    status(&format!("{src}/current/averageValue")).unwrap_or_else(unknown)
                ),
                None => format!(
                    "{}/{}",
                    status(&format!("{src}/current/value")).unwrap_or_else(unknown),
                    spec(&format!("{src}/target/value")).unwrap_or_default()
                ),
            };
            let resource = |src: &str| {
                let name = spec(&format!("{src}/name")).unwrap_or_default();
                match spec(&format!("{src}/target/averageValue")) {
                    Some(target) => format!(
                        "{name}: {}/{target}",
                        status(&format!("{src}/current/averageValue")).unwrap_or_else(unknown)
                    ),
                    None => {
                        let current = status(&format!("{src}/current/averageUtilization"))
                            .map_or_else(unknown, |n| format!("{n}%"));
                        let target = spec(&format!("{src}/target/averageUtilization"))
                            .map_or_else(|| "<auto>".to_string(), |n| format!("{n}%"));
                        format!("{name}: {current}/{target}")
                    }
                }
            };
            match m.pointer("/type").and_then(Value::as_str).unwrap_or_default() {
                "External" => value_pair("external"),
                "Object" => value_pair("object"),
                "Pods" => format!(
                    "{}/{}",
                    status("pods/current/averageValue").unwrap_or_else(unknown),
                    spec("pods/target/averageValue").unwrap_or_default()
                ),
                "Resource" => resource("resource"),
                "ContainerResource" => resource("containerResource"),
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_row_should_show_ready_and_wide_columns() {
        let (columns, row) = printer("Deployment").unwrap();
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let cells = row(&d);
        assert_eq!(columns.len(), cells.len());
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[5], "a,b");
        assert_eq!(cells[6], "x:1,y:2");
        assert_eq!(cells[7], "app=web");
    }

    #[test]
    fn hpa_targets_should_read_as_kubectl_shows_them() {
        let hpa = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Pods", "pods": {"metric": {"name": "http_requests"}, "target": {"type": "AverageValue", "averageValue": "5"}}},
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}}]},
            "status": {"currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 120, "averageValue": "120m"}}},
                {"type": "Pods", "pods": {"metric": {"name": "http_requests"}, "current": {"averageValue": "12"}}}]}});
        assert_eq!(hpa_targets(&hpa), "cpu: 120%/50%, 12/5 + 1 more...");
        let fresh = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Object", "object": {"metric": {"name": "rps"}, "target": {"type": "Value", "value": "10"}}}]}});
        assert_eq!(hpa_targets(&fresh), "memory: <unknown>/100Mi, <unknown>/10");
        assert_eq!(hpa_targets(&json!({"spec": {}})), "<none>");
    }

    #[test]
    fn service_row_should_format_ports() {
        let (_, row) = printer("Service").unwrap();
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"}}});
        let cells = row(&svc);
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30080/TCP,53/UDP");
        assert_eq!(cells[6], "app=web");
    }

    #[test]
    fn job_row_should_report_status_and_completions() {
        let (_, row) = printer("Job").unwrap();
        let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 5},
            "status": {"succeeded": 5, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let cells = row(&job);
        assert_eq!(cells[1], "Complete");
        assert_eq!(cells[2], "5/5");
        assert_eq!(cells[3], "90s");
    }
}
