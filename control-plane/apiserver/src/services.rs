//! Service address allocation: cluster IPs from the service CIDR and node ports from the
//! node-port range, each held by a claim key written in the same transaction as the Service,
//! so two Services can never hold the same address, and released when the Service goes.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{Value, json};
use skiff_store::TxnOp;

use crate::errors::ApiError;

/// Kubernetes' default service CIDR.
pub const SERVICE_CIDR: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The address of the `kubernetes` Service (the first of the range).
pub const API_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The cluster DNS's address (`kube-system/kube-dns`), Kubernetes' customary tenth.
pub const CLUSTER_DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn ip_key(ip: &str) -> String {
    format!("/registry/ranges/serviceips/{ip}")
}

fn port_key(port: i64) -> String {
    format!("/registry/ranges/servicenodeports/{port}")
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net)
}

fn random_ip() -> Ipv4Addr {
    let (net, bits) = SERVICE_CIDR;
    let size = 1u32 << (32 - bits);
    // Skip the network address, the `kubernetes` Service's, and the broadcast address.
    let offset = rand::rng().random_range(2..size - 1);
    Ipv4Addr::from(u32::from(net) + offset)
}

/// What a Service create must also write: the claims of its addresses. Fills in the cluster
/// IP and node ports a Service asks to be allocated. `attempt` > 0 picks new random ones.
pub fn claims(svc: &mut Value, attempt: usize) -> Result<Vec<TxnOp>, ApiError> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return Ok(Vec::new());
    }
    let claim = |key: String| TxnOp::Create { key, value: name.clone().into_bytes() };
    let mut ops = Vec::new();
    let spec = &mut svc["spec"];
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    match requested.as_str() {
        "None" => {}
        "" => {
            let ip =
                if attempt == 0 && name == "kubernetes" { API_SERVICE_IP } else { random_ip() };
            spec["clusterIP"] = json!(ip.to_string());
            spec["clusterIPs"] = json!([ip.to_string()]);
            ops.push(claim(ip_key(&ip.to_string())));
        }
        ip => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                invalid(&name, "spec.clusterIP", format!("Invalid value: {ip:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
            })?;
            if !in_cidr(parsed) {
                return Err(invalid(
                    &name,
                    "spec.clusterIPs[0]",
                    format!(
                        "Invalid value: {ip:?}: failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                    ),
                ));
            }
            spec["clusterIPs"] = json!([ip]);
            ops.push(claim(ip_key(ip)));
        }
    }
    let mut claimed_ports = std::collections::HashSet::new();
    if (ty == "NodePort" || ty == "LoadBalancer")
        && let Some(Value::Array(ports)) = spec.get_mut("ports")
    {
        for (i, p) in ports.iter_mut().enumerate() {
            let port = match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) if n > 0 => {
                    if !NODE_PORTS.contains(&(n as u16)) || n > 65535 {
                        return Err(invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!(
                                "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                    n
                }
                _ => {
                    let n = i64::from(rand::rng().random_range(NODE_PORTS));
                    p["nodePort"] = json!(n);
                    n
                }
            };
            // The same node port for TCP and UDP is one claim.
            if claimed_ports.insert(port) {
                ops.push(claim(port_key(port)));
            }
        }
    }
    Ok(ops)
}

/// The node ports `svc` holds (none unless it is a NodePort or LoadBalancer Service).
fn node_ports(svc: &Value) -> std::collections::BTreeSet<i64> {
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if ty != "NodePort" && ty != "LoadBalancer" {
        return Default::default();
    }
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0))
        .collect()
}

/// What a Service update must also write, as kube-apiserver does on a type change: node ports
/// a NodePort or LoadBalancer Service lacks are allocated (those it names are checked), the
/// claims of ports it gains are created and those of ports it gives up released; a Service
/// that is no longer NodePort or LoadBalancer loses its `nodePort`s.
pub fn update_claims(old: &Value, new: &mut Value) -> Result<Vec<TxnOp>, ApiError> {
    let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let ty = new.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let wants_ports = ty == "NodePort" || ty == "LoadBalancer";
    let had = node_ports(old);
    if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
        for (i, p) in ports.iter_mut().enumerate() {
            if !wants_ports {
                if let Some(o) = p.as_object_mut() {
                    o.remove("nodePort");
                }
                continue;
            }
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) if n > 0 => {
                    if !had.contains(&n) && (n > 65535 || !NODE_PORTS.contains(&(n as u16))) {
                        return Err(invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!(
                                "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                }
                _ => p["nodePort"] = json!(i64::from(rand::rng().random_range(NODE_PORTS))),
            }
        }
    }
    let has = node_ports(new);
    let mut ops: Vec<TxnOp> = has
        .difference(&had)
        .map(|n| TxnOp::Create { key: port_key(*n), value: name.clone().into_bytes() })
        .collect();
    ops.extend(had.difference(&has).map(|n| TxnOp::Delete { key: port_key(*n), expected: None }));
    Ok(ops)
}

/// The claim keys a Service holds, to delete with it.
pub fn release(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for ip in svc.pointer("/spec/clusterIPs").and_then(Value::as_array).into_iter().flatten() {
        if let Some(ip) = ip.as_str().filter(|ip| *ip != "None") {
            keys.push(ip_key(ip));
        }
    }
    for p in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            keys.push(port_key(n));
        }
    }
    keys
}

/// Whether a failed claim was for an address the user asked for (no point retrying).
pub fn requested_conflict(svc: &Value, key: &str) -> Option<ApiError> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if let Some(ip) = key.strip_prefix("/registry/ranges/serviceips/") {
        return Some(invalid(
            name,
            "spec.clusterIPs",
            format!(
                "Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"
            ),
        ));
    }
    key.strip_prefix("/registry/ranges/servicenodeports/").map(|port| {
        // The field path names the port that asked for it.
        let i = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .position(|p| p.get("nodePort").map(Value::to_string).as_deref() == Some(port))
            })
            .unwrap_or(0);
        invalid(
            name,
            &format!("spec.ports[{i}].nodePort"),
            format!("Invalid value: {port}: provided port is already allocated"),
        )
    })
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid("Service", name, vec![(field.to_string(), message)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_claims_should_follow_type_changes() {
        let old = json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let mut new = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let ops = update_claims(&old, &mut new).unwrap();
        let n = new["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&n));
        assert_eq!(ops, vec![TxnOp::Create { key: port_key(n), value: b"web".to_vec() }]);
        // Unchanged: nothing to claim.
        let mut same = new.clone();
        assert!(update_claims(&new, &mut same).unwrap().is_empty());
        // Back to ClusterIP: the port is released and dropped from the spec.
        let mut back = json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": n}]}});
        let ops = update_claims(&new, &mut back).unwrap();
        assert_eq!(ops, vec![TxnOp::Delete { key: port_key(n), expected: None }]);
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        // A port out of range is refused with its field path.
        let mut bad = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        assert_eq!(update_claims(&old, &mut bad).unwrap_err().code, 422);
    }

    #[test]
    fn claims_should_allocate_ip_and_node_ports() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let ops = claims(&mut svc, 0).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(in_cidr(ip) && ip != API_SERVICE_IP);
        let np = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&np));
        assert_eq!(ops.len(), 2);
        assert_eq!(release(&svc).len(), 2);
    }

    #[test]
    fn claims_should_refuse_addresses_outside_the_ranges() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "192.168.0.1", "ports": [{"port": 80}]}});
        assert_eq!(claims(&mut svc, 0).unwrap_err().code, 422);
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        assert!(claims(&mut headless, 0).unwrap().is_empty());
    }

    #[test]
    fn requested_conflict_should_name_the_port_that_asked() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30080}]}});
        let e = requested_conflict(&svc, &port_key(30080)).unwrap();
        assert_eq!(e.code, 422);
        let text = e.message.clone();
        assert!(text.contains("spec.ports[1].nodePort"), "{text}");
        assert!(
            text.contains("Invalid value: 30080: provided port is already allocated"),
            "{text}"
        );
    }

    #[test]
    fn claims_should_claim_a_node_port_shared_by_tcp_and_udp_once() {
        let mut svc = json!({"metadata": {"name": "dns"}, "spec": {"type": "NodePort", "ports": [
            {"name": "udp", "port": 53, "protocol": "UDP", "nodePort": 30053},
            {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]}});
        assert_eq!(claims(&mut svc, 0).unwrap().len(), 2, "one cluster IP, one node port");
    }
}
