//! Prometheus service discovery over HTTP (`http_sd_configs`): `GET
//! /prometheus/discovery/{node,endpoints,pod}` answers the targets Prometheus' Kubernetes
//! discovery would find for that role, with the same `__meta_kubernetes_*` labels, so one set
//! of relabelling rules serves both. For Prometheus builds without `kubernetes_sd_configs`
//! (Debian's, for one), and for a Prometheus that should not watch the API itself. Read from
//! the watch caches; authorized as the non-resource URL (RBAC `nonResourceURLs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::State;
use crate::errors::ApiError;
use crate::selectors::{FieldSelector, LabelSelector};

/// Prometheus' label name sanitizing: anything outside `[a-zA-Z0-9_]` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// `prefix_<key>` (and `prefixpresent_<key>` = "true") for each of a map's entries.
fn map_labels(out: &mut Map<String, Value>, prefix: &str, present: &str, m: Option<&Value>) {
    for (k, v) in m.and_then(Value::as_object).into_iter().flatten() {
        let k = sanitize(k);
        out.insert(format!("{prefix}{k}"), json!(v.as_str().unwrap_or_default()));
        out.insert(format!("{present}{k}"), json!("true"));
    }
}

fn str_of<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn all(state: &Arc<State>, plural: &str) -> Result<Vec<Value>, ApiError> {
    let items = crate::metricsapi::cached_list(
        state,
        plural,
        None,
        &LabelSelector::default(),
        &FieldSelector::default(),
    )?;
    Ok(items.iter().map(|c| c.value()).collect())
}

fn group(targets: Vec<String>, labels: Map<String, Value>) -> Value {
    json!({"targets": targets, "labels": labels})
}

/// The `role`'s target groups. Besides the path itself, the caller must be allowed to list
/// what the role reads in every namespace (as Prometheus' own Kubernetes discovery must):
/// the answer carries those objects' labels and annotations.
pub fn discover(state: &Arc<State>, role: &str) -> Result<Value, ApiError> {
    let needs: &[&str] = match role {
        "node" => &["nodes"],
        "pod" => &["pods"],
        "endpoints" => &["endpoints", "services"],
        _ => &[],
    };
    if let Some(user) = crate::authn::current_user() {
        for resource in needs {
            let attrs = skiff_auth::Attributes::resource("list", "", resource, "", "");
            if !crate::authz::allowed(state, &user, &attrs) {
                return Err(crate::authz::forbidden(&user, &attrs, ""));
            }
        }
    }
    match role {
        "node" => Ok(Value::Array(all(state, "nodes")?.iter().filter_map(node).collect())),
        "pod" => Ok(Value::Array(all(state, "pods")?.iter().flat_map(pod).collect())),
        "endpoints" => {
            let services: BTreeMap<(String, String), Value> = all(state, "services")?
                .into_iter()
                .map(|s| {
                    (
                        (
                            str_of(&s, "/metadata/namespace").into(),
                            str_of(&s, "/metadata/name").into(),
                        ),
                        s,
                    )
                })
                .collect();
            Ok(Value::Array(
                all(state, "endpoints")?.iter().flat_map(|e| endpoints(e, &services)).collect(),
            ))
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            format!("no discovery role {role:?}: node, endpoints and pod are served"),
        )),
    }
}

/// A node: its kubelet's address, as the `node` role finds it (the first InternalIP, else the
/// first address; the kubelet's port, else 10250). A node with no address is left out.
fn node(n: &Value) -> Option<Value> {
    let name = str_of(n, "/metadata/name");
    let addresses = n.pointer("/status/addresses").and_then(Value::as_array)?;
    let ip = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .map(|a| str_of(a, "/address").to_string())
        .filter(|ip| !ip.is_empty())?;
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    let mut labels = Map::new();
    labels.insert("__meta_kubernetes_node_name".into(), json!(name));
    map_labels(
        &mut labels,
        "__meta_kubernetes_node_label_",
        "__meta_kubernetes_node_labelpresent_",
        n.pointer("/metadata/labels"),
    );
    map_labels(
        &mut labels,
        "__meta_kubernetes_node_annotation_",
        "__meta_kubernetes_node_annotationpresent_",
        n.pointer("/metadata/annotations"),
    );
    for a in n.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten() {
        labels.insert(
            format!("__meta_kubernetes_node_address_{}", sanitize(str_of(a, "/type"))),
            json!(str_of(a, "/address")),
        );
    }
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    Some(group(vec![format!("{host}:{port}")], labels))
}

/// A pod: one target per declared container port (or the bare pod IP when none), as the
/// `pod` role finds them. Pods without an IP yet are left out.
fn pod(p: &Value) -> Vec<Value> {
    let ip = str_of(p, "/status/podIP");
    if ip.is_empty() {
        return vec![];
    }
    let mut base = Map::new();
    let mut put = |k: &str, v: &str| {
        base.insert(format!("__meta_kubernetes_{k}"), json!(v));
    };
    put("namespace", str_of(p, "/metadata/namespace"));
    put("pod_name", str_of(p, "/metadata/name"));
    put("pod_ip", ip);
    put("pod_node_name", str_of(p, "/spec/nodeName"));
    put("pod_host_ip", str_of(p, "/status/hostIP"));
    put("pod_uid", str_of(p, "/metadata/uid"));
    put("pod_phase", str_of(p, "/status/phase"));
    let ready = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map_or("unknown", |c| if c["status"] == "True" { "true" } else { "false" });
    put("pod_ready", ready);
    if let Some(owner) = p.pointer("/metadata/ownerReferences/0") {
        put("pod_controller_kind", str_of(owner, "/kind"));
        put("pod_controller_name", str_of(owner, "/name"));
    }
    map_labels(
        &mut base,
        "__meta_kubernetes_pod_label_",
        "__meta_kubernetes_pod_labelpresent_",
        p.pointer("/metadata/labels"),
    );
    map_labels(
        &mut base,
        "__meta_kubernetes_pod_annotation_",
        "__meta_kubernetes_pod_annotationpresent_",
        p.pointer("/metadata/annotations"),
    );
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    let mut out = Vec::new();
    for c in p.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        let name = str_of(c, "/name");
        for port in c["ports"].as_array().into_iter().flatten() {
            let Some(number) = port["containerPort"].as_u64() else { continue };
            let mut labels = base.clone();
            labels.insert("__meta_kubernetes_pod_container_name".into(), json!(name));
            labels.insert(
                "__meta_kubernetes_pod_container_port_name".into(),
                json!(str_of(port, "/name")),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_number".into(),
                json!(number.to_string()),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_protocol".into(),
                json!(port["protocol"].as_str().unwrap_or("TCP")),
            );
            out.push(group(vec![format!("{host}:{number}")], labels));
        }
    }
    if out.is_empty() {
        out.push(group(vec![host], base));
    }
    out
}

/// An Endpoints object: one target per address and port, with its Service's labels.
fn endpoints(e: &Value, services: &BTreeMap<(String, String), Value>) -> Vec<Value> {
    let ns = str_of(e, "/metadata/namespace");
    let name = str_of(e, "/metadata/name");
    let mut base = Map::new();
    base.insert("__meta_kubernetes_namespace".into(), json!(ns));
    base.insert("__meta_kubernetes_endpoints_name".into(), json!(name));
    map_labels(
        &mut base,
        "__meta_kubernetes_endpoints_label_",
        "__meta_kubernetes_endpoints_labelpresent_",
        e.pointer("/metadata/labels"),
    );
    if let Some(svc) = services.get(&(ns.to_string(), name.to_string())) {
        base.insert("__meta_kubernetes_service_name".into(), json!(name));
        map_labels(
            &mut base,
            "__meta_kubernetes_service_label_",
            "__meta_kubernetes_service_labelpresent_",
            svc.pointer("/metadata/labels"),
        );
        map_labels(
            &mut base,
            "__meta_kubernetes_service_annotation_",
            "__meta_kubernetes_service_annotationpresent_",
            svc.pointer("/metadata/annotations"),
        );
    }
    let mut out = Vec::new();
    for subset in e["subsets"].as_array().into_iter().flatten() {
        let addresses = [("addresses", "true"), ("notReadyAddresses", "false")];
        for (field, ready) in addresses {
            for a in subset[field].as_array().into_iter().flatten() {
                let ip = str_of(a, "/ip");
                let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                for p in subset["ports"].as_array().into_iter().flatten() {
                    let Some(port) = p["port"].as_u64() else { continue };
                    let mut labels = base.clone();
                    labels.insert("__meta_kubernetes_endpoint_ready".into(), json!(ready));
                    labels.insert(
                        "__meta_kubernetes_endpoint_port_name".into(),
                        json!(str_of(p, "/name")),
                    );
                    labels.insert(
                        "__meta_kubernetes_endpoint_port_protocol".into(),
                        json!(p["protocol"].as_str().unwrap_or("TCP")),
                    );
                    if let Some(node) = a["nodeName"].as_str() {
                        labels.insert("__meta_kubernetes_endpoint_node_name".into(), json!(node));
                    }
                    if let Some(t) = a.get("targetRef") {
                        labels.insert(
                            "__meta_kubernetes_endpoint_address_target_kind".into(),
                            json!(str_of(t, "/kind")),
                        );
                        labels.insert(
                            "__meta_kubernetes_endpoint_address_target_name".into(),
                            json!(str_of(t, "/name")),
                        );
                    }
                    out.push(group(vec![format!("{host}:{port}")], labels));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_should_give_a_target_per_port_with_kubernetes_sd_labels() {
        let p = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u",
                "labels": {"app.kubernetes.io/name": "web"}, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "http", "ports": [{"containerPort": 8080, "name": "http"}]}]},
            "status": {"podIP": "10.1.0.5", "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let groups = pod(&p);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0]["targets"], json!(["10.1.0.5:8080"]));
        let l = &groups[0]["labels"];
        assert_eq!(l["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true");
        assert_eq!(l["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "web");
        assert_eq!(l["__meta_kubernetes_pod_container_port_number"], "8080");
        assert_eq!(l["__meta_kubernetes_pod_ready"], "true");
        assert_eq!(l["__meta_kubernetes_pod_phase"], "Running");
        assert!(pod(&json!({"metadata": {"name": "x"}, "status": {}})).is_empty(), "no IP yet");
    }

    #[test]
    fn endpoints_and_nodes_should_carry_service_and_node_labels() {
        let svc = json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver"}}});
        let services = BTreeMap::from([(("default".to_string(), "kubernetes".to_string()), svc)]);
        let e = json!({"metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}]});
        let groups = endpoints(&e, &services);
        assert_eq!(groups[0]["targets"], json!(["10.0.0.1:6443"]));
        assert_eq!(groups[0]["labels"]["__meta_kubernetes_service_name"], "kubernetes");
        assert_eq!(groups[0]["labels"]["__meta_kubernetes_endpoint_port_name"], "https");
        assert_eq!(groups[0]["labels"]["__meta_kubernetes_service_label_component"], "apiserver");
        let n = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        let g = node(&n).unwrap();
        assert_eq!(g["targets"], json!(["10.0.0.2:10250"]));
        assert_eq!(g["labels"]["__meta_kubernetes_node_label_kubernetes_io_hostname"], "n1");
        assert_eq!(g["labels"]["__meta_kubernetes_node_address_InternalIP"], "10.0.0.2");
    }
}
