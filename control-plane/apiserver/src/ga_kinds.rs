//! Defaults and validation of the kinds served as stored objects to complete Kubernetes 1.35's
//! GA API: PodTemplate, the CSI kinds and VolumeAttributesClass, IPAddress and ServiceCIDR,
//! resource.k8s.io (DRA) and flowcontrol (API Priority and Fairness). The rules and messages
//! are kube's, for the mistakes people make most.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::objects::set_default;

type Causes = Vec<(String, String)>;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn required(obj: &Value, ptr: &str, field: &str, causes: &mut Causes) {
    let missing = match obj.pointer(ptr) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    };
    if missing {
        causes.push((field.to_string(), "Required value".into()));
    }
}

fn unsupported(field: String, value: &str, allowed: &[&str], causes: &mut Causes) {
    let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    causes.push((
        field,
        format!("Unsupported value: {value:?}: supported values: {}", list.join(", ")),
    ));
}

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("spec").and_then(Value::as_object_mut)
}

/// Apply kube's defaults; `false` when `kind` is not one of these.
pub fn default(api_version: &str, kind: &str, obj: &mut Value) -> bool {
    match (api_version, kind) {
        ("storage.k8s.io/v1", "CSIDriver") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "attachRequired", json!(true));
                set_default(spec, "podInfoOnMount", json!(false));
                set_default(spec, "storageCapacity", json!(false));
                set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
                set_default(spec, "requiresRepublish", json!(false));
                set_default(spec, "seLinuxMount", json!(false));
                if spec
                    .get("volumeLifecycleModes")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
                }
            }
        }
        ("resource.k8s.io/v1", "ResourceClaim") => default_claim_spec(obj.get_mut("spec")),
        ("resource.k8s.io/v1", "ResourceClaimTemplate") => {
            default_claim_spec(obj.pointer_mut("/spec/spec"))
        }
        ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "matchingPrecedence", json!(1000));
            }
        }
        ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration") => {
            if let Some(limited) = obj.pointer_mut("/spec/limited").and_then(Value::as_object_mut) {
                set_default(limited, "nominalConcurrencyShares", json!(30));
                set_default(limited, "lendablePercent", json!(0));
                if let Some(lr) = limited.get_mut("limitResponse").and_then(Value::as_object_mut)
                    && lr.get("type").and_then(Value::as_str) == Some("Queue")
                {
                    let q = lr.entry("queuing").or_insert_with(|| json!({}));
                    if let Some(q) = q.as_object_mut() {
                        set_default(q, "queues", json!(64));
                        set_default(q, "handSize", json!(8));
                        set_default(q, "queueLengthLimit", json!(50));
                    }
                }
            }
            if let Some(exempt) = obj.pointer_mut("/spec/exempt").and_then(Value::as_object_mut) {
                set_default(exempt, "nominalConcurrencyShares", json!(0));
                set_default(exempt, "lendablePercent", json!(0));
            }
        }
        _ => return false,
    }
    true
}

/// DRA requests (`exactly` and each of `firstAvailable`): `allocationMode: ExactCount` and
/// `count: 1` unless given.
fn default_claim_spec(spec: Option<&mut Value>) {
    let Some(requests) = spec.and_then(|s| s.pointer_mut("/devices/requests")) else { return };
    let exact = |e: &mut Value| {
        if let Some(e) = e.as_object_mut() {
            set_default(e, "allocationMode", json!("ExactCount"));
            if e.get("allocationMode").and_then(Value::as_str) == Some("ExactCount") {
                set_default(e, "count", json!(1));
            }
        }
    };
    for r in requests.as_array_mut().into_iter().flatten() {
        if let Some(e) = r.get_mut("exactly") {
            exact(e);
        }
        for sub in r.get_mut("firstAvailable").and_then(Value::as_array_mut).into_iter().flatten() {
            exact(sub);
        }
    }
}

/// Validate; `false` when `kind` is not one of these.
pub fn validate(api_version: &str, kind: &str, obj: &Value, causes: &mut Causes) -> bool {
    match (api_version, kind) {
        ("storage.k8s.io/v1", "CSIDriver") => {
            let policy = text(obj, "/spec/fsGroupPolicy");
            if !policy.is_empty() && !["File", "None", "ReadWriteOnceWithFSType"].contains(&policy)
            {
                unsupported(
                    "spec.fsGroupPolicy".into(),
                    policy,
                    &["File", "None", "ReadWriteOnceWithFSType"],
                    causes,
                );
            }
            for m in obj
                .pointer("/spec/volumeLifecycleModes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let m = m.as_str().unwrap_or("");
                if !["Persistent", "Ephemeral"].contains(&m) {
                    unsupported(
                        "spec.volumeLifecycleModes".into(),
                        m,
                        &["Persistent", "Ephemeral"],
                        causes,
                    );
                }
            }
        }
        ("storage.k8s.io/v1", "CSINode") => {
            for (i, d) in obj
                .pointer("/spec/drivers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                required(d, "/name", &format!("spec.drivers[{i}].name"), causes);
                required(d, "/nodeID", &format!("spec.drivers[{i}].nodeID"), causes);
            }
        }
        ("storage.k8s.io/v1", "VolumeAttachment") => {
            required(obj, "/spec/attacher", "spec.attacher", causes);
            let pv = obj.pointer("/spec/source/persistentVolumeName").is_some();
            let inline = obj.pointer("/spec/source/inlineVolumeSpec").is_some();
            match (pv, inline) {
                (false, false) => causes.push(("spec.source".into(), "Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName".into())),
                (true, true) => causes.push(("spec.source".into(), "Forbidden: must specify exactly one of inlineVolumeSpec and persistentVolumeName".into())),
                _ => {}
            }
            if text(obj, "/spec/nodeName").is_empty() {
                causes.push((
                    "spec.nodeName".into(),
                    format!("Invalid value: \"\": {SUBDOMAIN_MSG}"),
                ));
            }
        }
        ("storage.k8s.io/v1", "VolumeAttributesClass") => {
            required(obj, "/driverName", "driverName", causes);
            if obj.get("parameters").and_then(Value::as_object).is_none_or(Map::is_empty) {
                causes.push((
                    "parameters".into(),
                    "Required value: must contain at least one key/value pair".into(),
                ));
            }
        }
        ("networking.k8s.io/v1", "IPAddress") => {
            let name = text(obj, "/metadata/name");
            match name.parse::<IpAddr>() {
                Ok(ip) if ip.to_string() != name => causes.push(("metadata.name".into(),
                    format!("Invalid value: {name:?}: must be in canonical form ({:?})", ip.to_string()))),
                Ok(_) => {}
                Err(_) => causes.push(("metadata.name".into(),
                    format!("Invalid value: {name:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))),
            }
            match obj.pointer("/spec/parentRef") {
                None | Some(Value::Null) => {
                    causes.push(("spec.parentRef".into(), "Required value".into()))
                }
                Some(p) => {
                    required(p, "/resource", "spec.parentRef.resource", causes);
                    required(p, "/name", "spec.parentRef.name", causes);
                }
            }
        }
        ("networking.k8s.io/v1", "ServiceCIDR") => {
            let cidrs = obj.pointer("/spec/cidrs").and_then(Value::as_array);
            match cidrs {
                None => causes.push((
                    "spec.cidrs".into(),
                    "Required value: at least one CIDR required".into(),
                )),
                Some(c) if c.is_empty() => causes.push((
                    "spec.cidrs".into(),
                    "Required value: at least one CIDR required".into(),
                )),
                Some(c) => {
                    for (i, cidr) in c.iter().enumerate() {
                        let s = cidr.as_str().unwrap_or("");
                        if let Some(why) = cidr_problem(s) {
                            causes.push((
                                format!("spec.cidrs[{i}]"),
                                format!("Invalid value: {s:?}: {why}"),
                            ));
                        }
                    }
                }
            }
        }
        ("resource.k8s.io/v1", "ResourceClaim") => {
            validate_claim_spec(obj.get("spec"), "spec", causes)
        }
        ("resource.k8s.io/v1", "ResourceClaimTemplate") => {
            validate_claim_spec(obj.pointer("/spec/spec"), "spec.spec", causes)
        }
        ("resource.k8s.io/v1", "ResourceSlice") => {
            required(obj, "/spec/driver", "spec.driver", causes);
            required(obj, "/spec/pool/name", "spec.pool.name", causes);
            let set: Vec<&str> = ["nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection"]
                .into_iter()
                .filter(|k| obj.pointer(&format!("/spec/{k}")).is_some_and(|v| !v.is_null()))
                .collect();
            match set.len() {
                0 => causes.push(("spec".into(), "Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required".into())),
                1 => {}
                _ => {
                    let names: Vec<String> = set.iter().map(|k| format!("`{k}`")).collect();
                    causes.push(("spec".into(), format!("Invalid value: \"{{{}}}\": exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required, but multiple fields are set", names.join(", "))));
                }
            }
        }
        ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema") => {
            required(
                obj,
                "/spec/priorityLevelConfiguration/name",
                "spec.priorityLevelConfiguration.name",
                causes,
            );
            if let Some(p) = obj.pointer("/spec/matchingPrecedence").and_then(Value::as_i64)
                && !(1..=10000).contains(&p)
            {
                causes.push((
                    "spec.matchingPrecedence".into(),
                    format!("Invalid value: {p}: must be between 1 and 10000, inclusive"),
                ));
            }
        }
        ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration") => {
            let ty = text(obj, "/spec/type");
            match ty {
                "Exempt" | "Limited" => {}
                "" => causes.push((
                    "spec.type".into(),
                    "Required value: must be one of 'Exempt' or 'Limited'".into(),
                )),
                other => unsupported("spec.type".into(), other, &["Exempt", "Limited"], causes),
            }
            if ty == "Limited" && obj.pointer("/spec/limited").is_none() {
                causes.push((
                    "spec.limited".into(),
                    "Required value: must not be empty when type is Limited".into(),
                ));
            }
        }
        _ => return false,
    }
    true
}

/// Why `s` is not a CIDR in kube's strict reading, if it is not.
fn cidr_problem(s: &str) -> Option<&'static str> {
    let Some((ip, len)) = s.split_once('/') else {
        return Some("must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
    };
    let (Ok(addr), Ok(len)) = (ip.parse::<IpAddr>(), len.parse::<u8>()) else {
        return Some("must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
    };
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    if u32::from(len) > bits {
        return Some("must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
    }
    let host_bits_set = match addr {
        IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
        IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
    };
    if host_bits_set {
        return Some("must not have bits set beyond the prefix length");
    }
    if addr.to_string() != ip {
        return Some("must be in canonical form");
    }
    None
}

fn validate_claim_spec(spec: Option<&Value>, path: &str, causes: &mut Causes) {
    let Some(requests) =
        spec.and_then(|s| s.pointer("/devices/requests")).and_then(Value::as_array)
    else {
        return;
    };
    for (i, r) in requests.iter().enumerate() {
        let at = format!("{path}.devices.requests[{i}]");
        required(r, "/name", &format!("{at}.name"), causes);
        match (r.get("exactly").is_some(), r.get("firstAvailable").is_some()) {
            (false, false) => causes.push((at.clone(), "Required value: exactly one of `exactly` or `firstAvailable` is required".into())),
            (true, true) => causes.push((at.clone(), "Invalid value: null: exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set".into())),
            _ => {}
        }
        if let Some(e) = r.get("exactly") {
            required(e, "/deviceClassName", &format!("{at}.exactly.deviceClassName"), causes);
            let mode = text(e, "/allocationMode");
            if !mode.is_empty() && mode != "All" && mode != "ExactCount" {
                unsupported(
                    format!("{at}.exactly.allocationMode"),
                    mode,
                    &["All", "ExactCount"],
                    causes,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_drivers_should_get_kube_defaults() {
        let mut d = json!({"spec": {}});
        assert!(default("storage.k8s.io/v1", "CSIDriver", &mut d));
        assert_eq!(d["spec"]["attachRequired"], true);
        assert_eq!(d["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
        assert_eq!(d["spec"]["fsGroupPolicy"], "ReadWriteOnceWithFSType");
    }

    #[test]
    fn ip_addresses_and_cidrs_should_be_canonical() {
        let mut causes = Vec::new();
        let ip = json!({"metadata": {"name": "2001:DB8::1"}, "spec": {"parentRef": {"resource": "services", "name": "a"}}});
        validate("networking.k8s.io/v1", "IPAddress", &ip, &mut causes);
        assert_eq!(
            causes,
            vec![(
                "metadata.name".to_string(),
                "Invalid value: \"2001:DB8::1\": must be in canonical form (\"2001:db8::1\")"
                    .to_string()
            )]
        );
        assert_eq!(
            cidr_problem("10.0.0.1/24"),
            Some("must not have bits set beyond the prefix length")
        );
        assert_eq!(cidr_problem("10.96.0.0/12"), None);
        assert!(cidr_problem("nope").is_some());
    }

    #[test]
    fn claims_should_default_exact_count_and_need_a_device_class() {
        let mut c = json!({"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {}}]}}});
        default("resource.k8s.io/v1", "ResourceClaim", &mut c);
        assert_eq!(
            c["spec"]["devices"]["requests"][0]["exactly"],
            json!({"allocationMode": "ExactCount", "count": 1})
        );
        let mut causes = Vec::new();
        validate("resource.k8s.io/v1", "ResourceClaim", &c, &mut causes);
        assert_eq!(
            causes,
            vec![(
                "spec.devices.requests[0].exactly.deviceClassName".to_string(),
                "Required value".to_string()
            )]
        );
    }
}
