//! Per-kind semantics of generic (JSON) objects: metadata on create and update, defaulting,
//! validation, and what an update of the main resource vs the status subresource may change.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};
use skiff_api::{
    ResourceInfo, validate_dns_label, validate_dns_subdomain, validate_dns1035_label,
    validate_label_value, validate_path_segment, validate_qualified_name,
};

use crate::errors::ApiError;

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Kubernetes' `generateName` suffix alphabet (no vowels, no confusable digits).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn name_of(obj: &Value) -> &str {
    meta(obj).and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("")
}

pub fn namespace_of(obj: &Value) -> Option<&str> {
    meta(obj).and_then(|m| m.get("namespace")).and_then(Value::as_str)
}

pub fn resource_version_of(obj: &Value) -> Option<&str> {
    meta(obj)
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Check `apiVersion`/`kind` of a request body against the resource of the URL.
pub fn check_type(obj: &mut Value, res: &ResourceInfo) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    }
    let api_version = res.api_version();
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({k}) does not match the resource of the request ({}, kind {})",
                res.plural, res.kind
            )));
        }
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    // As kube holds it once decoded into its Go struct: zeros Go's JSON omits are gone, and
    // `[]byte` fields are read as Go reads base64 (line breaks allowed).
    if !res.is_custom() {
        skiff_api::protobuf::normalize(obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {message}",
                kind = res.kind,
                version = res.version,
                message = e.message
            ))
        })?;
    }
    Ok(())
}

/// Fill in server-owned metadata of a new object and run defaulting + validation.
pub fn prepare_create(
    obj: &mut Value,
    res: &ResourceInfo,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    check_type(obj, res)?;
    if let Some(cv) = crate::crds::CustomVersion::of(res) {
        cv.prune_and_default(obj);
    }
    let m = meta_mut(obj);
    if res.namespaced {
        let ns = namespace.unwrap_or("default");
        match m.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                m.insert("namespace".into(), json!(ns));
            }
            Some(body_ns) if body_ns == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        m.remove("namespace");
    }
    let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        match m.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let generated = format!("{prefix}{}", random_suffix());
                m.insert("name".into(), json!(generated));
            }
            _ => {
                return Err(ApiError::invalid(
                    res.kind,
                    "",
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        }
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if res.has_spec || is_core(res, "Pod") {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if res.kind == "CertificateSigningRequest" && res.group == "certificates.k8s.io" {
        crate::certificates::admit_create(obj)?;
    }
    default_object(obj, res);
    validate(obj, res)
}

/// Merge an incoming update with the stored object: server-owned metadata is kept, and only
/// the part the endpoint owns (spec+metadata, or status for `/status`) is taken from `new`.
pub fn prepare_update(
    new: &mut Value,
    old: &Value,
    res: &ResourceInfo,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    check_type(new, res)?;
    if name_of(new) != name_of(old) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            name_of(new),
            name_of(old)
        )));
    }
    if res.kind == "CertificateSigningRequest" && res.group == "certificates.k8s.io" {
        // What each CSR endpoint (object, status, approval) may change.
        crate::certificates::prepare_update(new, old, subresource)?;
        if subresource.is_some() {
            return validate(new, res);
        }
    }
    if subresource == Some("finalize") {
        // Only the namespace's spec.finalizers change through `finalize`.
        let finalizers = new.pointer("/spec/finalizers").cloned();
        *new = old.clone();
        match finalizers {
            Some(f) => new["spec"]["finalizers"] = f,
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
        return validate(new, res);
    }
    if let Some(cv) = crate::crds::CustomVersion::of(res) {
        cv.prune_and_default(new);
    }
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return validate_update(new, old, res);
    }
    if res.subresources.contains(&"status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_meta = meta(old).cloned().unwrap_or_default();
    let m = meta_mut(new);
    for key in [
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(key) {
            Some(v) => m.insert(key.into(), v.clone()),
            None => m.remove(key),
        };
    }
    if is_core(res, "Pod") {
        validate_pod_update(new, old)?;
    }
    let mut causes = Vec::new();
    if !res.is_custom() {
        crate::kinds::validate_update(&res.api_version(), res.kind, new, old, &mut causes);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(res.kind, name_of(new), causes));
    }
    default_object(new, res);
    let spec_changed = if res.is_custom() {
        crate::crds::spec_changed(res, new, old)
    } else {
        (res.has_spec || res.kind == "Pod") && new.get("spec") != old.get("spec")
    };
    if spec_changed {
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        meta_mut(new).insert("generation".into(), json!(generation));
    }
    validate_update(new, old, res)
}

/// Whether `res` is the built-in core `kind` (a custom resource may reuse a built-in kind's
/// name in its own group).
fn is_core(res: &ResourceInfo, kind: &str) -> bool {
    res.group.is_empty() && res.kind == kind
}

/// [`validate`] of an update: a custom resource's transition rules see the old object.
fn validate_update(new: &Value, old: &Value, res: &ResourceInfo) -> Result<(), ApiError> {
    if res.is_custom() {
        validate_meta(new, res)?;
        return crate::crds::validate(res, new, Some(old));
    }
    validate(new, res)
}

/// Kubernetes lets a pod's spec change only in a few fields once created.
fn validate_pod_update(new: &Value, old: &Value) -> Result<(), ApiError> {
    let strip = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = spec.get_mut(list) {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("image");
                    }
                }
            }
        }
        if let Some(o) = spec.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("tolerations");
            o.remove("terminationGracePeriodSeconds");
            o.remove("schedulingGates");
        }
        spec
    };
    // Scheduling gates may only be removed (kube-apiserver's rule).
    let gates = |v: &Value| -> Vec<String> {
        v.pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect()
    };
    let old_gates = gates(old);
    if let Some(added) = gates(new).into_iter().find(|g| !old_gates.contains(g)) {
        return Err(ApiError::invalid(
            "Pod",
            name_of(new),
            vec![(
                "spec.schedulingGates".into(),
                format!(
                    "Forbidden: only deletion is allowed, but found new scheduling gate '{added}'"
                ),
            )],
        ));
    }
    // A pod's nodeName may only be set once, through the binding subresource.
    let old_node = old.pointer("/spec/nodeName");
    let new_node = new.pointer("/spec/nodeName");
    if old_node != new_node && !(old_node.is_none() && new_node.is_none()) {
        return Err(ApiError::invalid(
            "Pod",
            name_of(new),
            vec![("spec.nodeName".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`".into())],
        ));
    }
    let mut new_spec = strip(new);
    let mut old_spec = strip(old);
    for s in [&mut new_spec, &mut old_spec] {
        if let Some(o) = s.as_object_mut() {
            o.remove("nodeName");
        }
    }
    let mut defaulted = json!({"spec": new_spec});
    default_pod(&mut defaulted);
    let mut old_defaulted = json!({"spec": old_spec});
    default_pod(&mut old_defaulted);
    if defaulted["spec"] != old_defaulted["spec"] {
        return Err(ApiError::invalid(
            "Pod",
            name_of(new),
            vec![("spec".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`".into())],
        ));
    }
    Ok(())
}

pub fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), value);
    }
}

/// Seconds a new pod tolerates its node being `not-ready` or `unreachable` before the taint
/// manager evicts it, unless it says otherwise (kube-apiserver's DefaultTolerationSeconds
/// admission, `--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`).
pub static DEFAULT_NOT_READY_TOLERATION_SECONDS: AtomicI64 = AtomicI64::new(300);
pub static DEFAULT_UNREACHABLE_TOLERATION_SECONDS: AtomicI64 = AtomicI64::new(300);

/// Add the default `NoExecute` tolerations for the not-ready and unreachable taints to a new
/// pod that has none for them.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let wanted = [
        ("node.kubernetes.io/not-ready", &DEFAULT_NOT_READY_TOLERATION_SECONDS),
        ("node.kubernetes.io/unreachable", &DEFAULT_UNREACHABLE_TOLERATION_SECONDS),
    ];
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else { return };
    for (key, seconds) in wanted {
        let tolerated = list.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (k == key || (k.is_empty() && t["operator"] == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds.load(Ordering::Relaxed),
            }));
        }
    }
}

fn default_object(obj: &mut Value, res: &ResourceInfo) {
    if res.is_custom() {
        return;
    }
    match res.kind {
        "Pod" => {
            default_pod(obj);
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                default_tolerations(spec);
            }
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "enableServiceLinks", json!(true));
                set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                set_default(spec, "priority", json!(0));
            }
        }
        "Namespace" => {
            // Every namespace carries its name as a label (kube ≥ 1.21), so that selectors
            // can pick namespaces by name; it is set again on every write.
            let name = name_of(obj).to_string();
            if !name.is_empty()
                && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
            {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
            if let Some(o) = obj.as_object_mut() {
                let spec = o.entry("spec").or_insert_with(|| json!({}));
                if let Some(spec) = spec.as_object_mut() {
                    set_default(spec, "finalizers", json!(["kubernetes"]));
                }
                let status = o.entry("status").or_insert_with(|| json!({}));
                if let Some(status) = status.as_object_mut() {
                    set_default(status, "phase", json!("Active"));
                }
            }
        }
        _ => crate::kinds::default(&res.api_version(), res.kind, obj),
    }
}

/// Whether an image reference means "latest" (no tag and no digest, or `:latest`).
fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

pub fn default_pod(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        default_pod_spec(spec);
    }
    let qos = qos_class(o.get("spec"));
    let status = o.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        set_default(status, "phase", json!("Pending"));
        set_default(status, "qosClass", json!(qos));
    }
}

/// Defaults of a pod spec, also applied to the pod templates of workload kinds.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                let policy = match c.get("image").and_then(Value::as_str) {
                    Some(i) if !is_latest(i) => "IfNotPresent",
                    _ => "Always",
                };
                set_default(c, "imagePullPolicy", json!(policy));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// The pod's QoS class as Kubernetes computes it from requests and limits.
fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.and_then(|s| s.get(*l)).and_then(Value::as_array))
        .flatten()
        .collect();
    let (mut any, mut guaranteed) = (false, true);
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        for r in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(r));
            let lim = limits.and_then(|m| m.get(r));
            any |= req.is_some() || lim.is_some();
            // Requests default to limits, so a limit alone is still Guaranteed.
            if lim.is_none() || (req.is_some() && req != lim) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(crate) fn validate(obj: &Value, res: &ResourceInfo) -> Result<(), ApiError> {
    if res.is_custom() {
        validate_meta(obj, res)?;
        return crate::crds::validate(res, obj, None);
    }
    let name = name_of(obj).to_string();
    let mut causes = meta_causes(obj, res);
    match res.kind {
        "Pod" => validate_pod(obj, &mut causes),
        "RuntimeClass" => match obj.get("handler").and_then(Value::as_str) {
            Some(h) if validate_dns_label(h).is_ok() => {}
            Some(h) => causes
                .push(("handler".into(), format!("Invalid value: {h:?}: must be a DNS label"))),
            None => causes.push(("handler".into(), "Required value".into())),
        },
        _ => crate::kinds::validate(&res.api_version(), res.kind, obj, &mut causes),
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(res.kind, &name, causes)) }
}

/// What every object's metadata must satisfy: its name (by kind) and its labels and
/// annotations.
fn meta_causes(obj: &Value, res: &ResourceInfo) -> Vec<(String, String)> {
    let name = name_of(obj);
    let mut causes: Vec<(String, String)> = Vec::new();
    let kind = if res.is_custom() { "" } else { res.kind };
    let name_check = match kind {
        "Namespace" => validate_dns_label(name),
        "Service" => validate_dns1035_label(name),
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            validate_path_segment(name)
        }
        _ => validate_dns_subdomain(name),
    };
    if let Err(e) = name_check {
        causes.push(("metadata.name".into(), format!("Invalid value: {name:?}: {e}")));
    }
    for field in ["labels", "annotations"] {
        let Some(map) = obj.pointer(&format!("/metadata/{field}")).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(map) = map.as_object().filter(|m| m.values().all(Value::is_string)) else {
            causes.push((
                format!("metadata.{field}"),
                format!("Invalid value: {field} must be a map of strings"),
            ));
            continue;
        };
        for (k, v) in map {
            if let Err(e) = validate_qualified_name(k) {
                causes.push((format!("metadata.{field}"), format!("Invalid value: {k:?}: {e}")));
            }
            if field == "labels"
                && let Err(e) = validate_label_value(v.as_str().unwrap_or(""))
            {
                causes.push(("metadata.labels".to_string(), format!("Invalid value: {v}: {e}")));
            }
        }
    }
    causes
}

/// [`meta_causes`] as an error.
fn validate_meta(obj: &Value, res: &ResourceInfo) -> Result<(), ApiError> {
    let causes = meta_causes(obj, res);
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(res.kind, name_of(obj), causes)) }
}

fn validate_pod(obj: &Value, causes: &mut Vec<(String, String)>) {
    match obj.get("spec") {
        Some(spec) => validate_pod_spec(spec, "spec", causes),
        None => causes.push(("spec".into(), "Required value".into())),
    }
}

/// Validate a pod spec found at `prefix` (`spec`, or `spec.template.spec` in a workload).
pub fn validate_pod_spec(spec: &Value, prefix: &str, causes: &mut Vec<(String, String)>) {
    let Some(spec) = spec.as_object() else {
        causes.push((prefix.to_string(), "Required value".into()));
        return;
    };
    match spec.get("restartPolicy").and_then(Value::as_str) {
        Some("Always" | "OnFailure" | "Never") => {}
        other => causes.push((
            format!("{prefix}.restartPolicy"),
            format!(
                "Unsupported value: {:?}: supported values: \"Always\", \"OnFailure\", \"Never\"",
                other.unwrap_or("")
            ),
        )),
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        let items = match spec.get(list) {
            None if list == "initContainers" => continue,
            None => {
                causes.push((format!("{prefix}.{list}"), "Required value".into()));
                continue;
            }
            Some(Value::Array(a)) => a,
            Some(_) => {
                causes.push((format!("{prefix}.{list}"), "Invalid value: must be a list".into()));
                continue;
            }
        };
        if list == "containers" && items.is_empty() {
            causes.push((format!("{prefix}.containers"), "Required value".into()));
        }
        for (i, c) in items.iter().enumerate() {
            let path = format!("{prefix}.{list}[{i}]");
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
            if cname.is_empty() {
                causes.push((format!("{path}.name"), "Required value".into()));
            } else if let Err(e) = validate_dns_label(cname) {
                causes.push((format!("{path}.name"), format!("Invalid value: {cname:?}: {e}")));
            } else if names.contains(&cname) {
                causes.push((format!("{path}.name"), format!("Duplicate value: {cname:?}")));
            } else {
                names.push(cname);
            }
            if c.get("image").and_then(Value::as_str).unwrap_or("").trim().is_empty() {
                causes.push((format!("{path}.image"), "Required value".into()));
            }
            for field in ["command", "args"] {
                if let Some(v) = c.get(field)
                    && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                {
                    causes.push((
                        format!("{path}.{field}"),
                        "Invalid value: must be a list of strings".into(),
                    ));
                }
            }
        }
    }
    if spec.get("runtimeClassName").and_then(Value::as_str) == Some("wasmtime") {
        validate_wasm_pod(spec, prefix, causes);
    }
}

/// What a pod on the `wasmtime` RuntimeClass cannot ask for: its containers are WebAssembly
/// guests in the node's process, so there are no Linux processes, namespaces or privileges
/// to share or grant. (A pod runs all its containers on one runtime; OCI containers need the
/// `runc` RuntimeClass.)
fn validate_wasm_pod(spec: &Map<String, Value>, prefix: &str, causes: &mut Vec<(String, String)>) {
    let why = "WebAssembly pods (runtimeClassName: wasmtime) run guests inside the node, with no Linux processes to share; use runtimeClassName: runc for OCI containers";
    for field in ["hostPID", "hostIPC", "shareProcessNamespace"] {
        if spec.get(field).and_then(Value::as_bool) == Some(true) {
            causes.push((format!("{prefix}.{field}"), format!("Forbidden: {why}")));
        }
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let path = format!("{prefix}.{list}[{i}]");
            let sc = c.get("securityContext");
            for flag in ["privileged", "allowPrivilegeEscalation"] {
                if sc.and_then(|s| s.get(flag)).and_then(Value::as_bool) == Some(true) {
                    causes.push((
                        format!("{path}.securityContext.{flag}"),
                        format!("Forbidden: {why}"),
                    ));
                }
            }
            if sc
                .and_then(|s| s.pointer("/capabilities/add"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                causes.push((
                    format!("{path}.securityContext.capabilities.add"),
                    format!("Forbidden: {why}"),
                ));
            }
            if c.get("stdin").and_then(Value::as_bool) == Some(true)
                || c.get("tty").and_then(Value::as_bool) == Some(true)
            {
                causes.push((
                    format!("{path}.stdin"),
                    "Forbidden: WebAssembly guests have no terminal or standard input to attach to"
                        .into(),
                ));
            }
        }
    }
}

/// Labels of an object, for selectors.
/// A stored object's JSON (as the store keeps it: no `metadata.resourceVersion`) with
/// `"resourceVersion":"REV"` put in its top-level `metadata` where kube writes it, found by
/// scanning the bytes: nothing is decoded. A built-in kind, stored in Go's field order (it
/// starts with `"kind"`), gets it after `uid` (ObjectMeta's order); any other object (a custom
/// resource, written with sorted keys as Go writes a map) gets it in sorted place. `None` when
/// the top level has no `metadata` object.
pub fn stamp_resource_version(json: &[u8], revision: u64) -> Option<Vec<u8>> {
    let open = top_level_metadata(json)?;
    let go_order = json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && json.iter().skip_while(|b| b.is_ascii_whitespace()).skip(1).take(6).eq(b"\"kind\"");
    let (at, after_key) = metadata_slot(json, open, go_order)?;
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let mut out = Vec::with_capacity(json.len() + field.len() + 2);
    out.extend_from_slice(&json[..at]);
    if after_key {
        out.push(b',');
    }
    out.extend_from_slice(field.as_bytes());
    let closes = json[at..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    if !after_key && !closes {
        out.push(b',');
    }
    out.extend_from_slice(&json[at..]);
    Some(out)
}

/// ObjectMeta's fields before `resourceVersion`, in Go's order.
const BEFORE_RESOURCE_VERSION: &[&[u8]] =
    &[b"name", b"generateName", b"namespace", b"selfLink", b"uid"];

/// Where `resourceVersion` goes in the metadata object opening at `open`: the offset of the
/// first key that follows it (Go's order or sorted), or of the closing `}`; and whether a key
/// precedes that spot (a comma goes before the field).
fn metadata_slot(json: &[u8], open: usize, go_order: bool) -> Option<(usize, bool)> {
    let mut i = open;
    let mut seen = false;
    loop {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match json.get(i)? {
            b'}' => return Some((i, seen)),
            b'"' => {}
            _ => return None,
        }
        let key_start = i;
        let key_end = string_end(json, i)?;
        let key = &json[key_start + 1..key_end - 1];
        let before = if go_order {
            BEFORE_RESOURCE_VERSION.contains(&key)
        } else {
            key < &b"resourceVersion"[..]
        };
        if !before {
            return Some((key_start, false));
        }
        seen = true;
        i = value_end(json, key_end)?;
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match json.get(i)? {
            b',' => i += 1,
            b'}' => return Some((i, true)),
            _ => return None,
        }
    }
}

/// The offset after the string opening at `i`.
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    let mut escaped = false;
    for (n, &b) in json.get(i + 1..)?.iter().enumerate() {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return Some(i + 2 + n),
            _ => {}
        }
    }
    None
}

/// The offset after the value that follows the `:` after a key ending at `i`.
fn value_end(json: &[u8], mut i: usize) -> Option<usize> {
    while json.get(i).is_some_and(|b| b.is_ascii_whitespace() || *b == b':') {
        i += 1;
    }
    let mut depth = 0usize;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i = string_end(json, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    (depth == 0).then_some(i)
}

/// The offset just after the `{` that opens the top-level `"metadata"` value.
fn top_level_metadata(json: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"metadata\"";
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    // Whether the next string at the top level is a key (it follows `{` or `,`).
    let mut key_next = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' if depth == 1 && key_next && json[i..].starts_with(KEY) => {
                let mut j = i + KEY.len();
                while json.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                if json.get(j) != Some(&b':') {
                    return None;
                }
                j += 1;
                while json.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                return (json.get(j) == Some(&b'{')).then_some(j + 1);
            }
            b'"' => {
                in_string = true;
                key_next = false;
            }
            b'{' => {
                depth += 1;
                key_next = depth == 1;
            }
            b'[' => {
                depth += 1;
                key_next = false;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                key_next = false;
            }
            b',' => key_next = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
}

pub fn labels_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/labels")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::Registry;

    #[test]
    fn a_resource_version_should_be_stamped_where_kube_writes_it() {
        let stamp = |s: &str| {
            String::from_utf8(stamp_resource_version(s.as_bytes(), 9).expect("stamped"))
                .expect("utf8")
        };
        assert_eq!(
            stamp(
                r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"n","uid":"u","creationTimestamp":"t","labels":{"x":"y"}},"spec":{}}"#
            ),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"n","uid":"u","resourceVersion":"9","creationTimestamp":"t","labels":{"x":"y"}},"spec":{}}"#
        );
        assert_eq!(
            stamp(r#"{"kind":"Pod","metadata":{"labels":{"uid":"1"}}}"#),
            r#"{"kind":"Pod","metadata":{"resourceVersion":"9","labels":{"uid":"1"}}}"#
        );
        assert_eq!(
            stamp(r#"{"kind":"Pod","metadata":{"name":"a,}","uid":"u"}}"#),
            r#"{"kind":"Pod","metadata":{"name":"a,}","uid":"u","resourceVersion":"9"}}"#
        );
        assert_eq!(
            stamp(r#"{"kind":"Pod","metadata":{}}"#),
            r#"{"kind":"Pod","metadata":{"resourceVersion":"9"}}"#
        );
        // A custom resource: sorted, as Go writes a map.
        assert_eq!(
            stamp(
                r#"{"apiVersion":"x/v1","kind":"W","metadata":{"generation":1,"name":"w","namespace":"n","uid":"u"}}"#
            ),
            r#"{"apiVersion":"x/v1","kind":"W","metadata":{"generation":1,"name":"w","namespace":"n","resourceVersion":"9","uid":"u"}}"#
        );
        assert_eq!(
            stamp(
                r#"{"apiVersion":"x/v1","metadata":{"annotations":{"a":[1,{"b":"}"}]},"name":"w"}}"#
            ),
            r#"{"apiVersion":"x/v1","metadata":{"annotations":{"a":[1,{"b":"}"}]},"name":"w","resourceVersion":"9"}}"#
        );
    }

    #[test]
    fn a_resource_version_should_be_stamped_into_the_top_level_metadata_only() {
        let stamp = |v: Value| {
            let bytes = serde_json::to_vec(&v).expect("json");
            let out = stamp_resource_version(&bytes, 42)
                .map(|b| serde_json::from_slice::<Value>(&b).expect("still JSON"));
            let mut want = v;
            if let Some(m) = want.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("resourceVersion".into(), json!("42"));
            }
            (out, want)
        };
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}),
            json!({"a": {"metadata": {"x": 1}}, "b": ["\"metadata\":{", {"metadata": {}}],
                   "metadata": {}, "z": "metadata"}),
            json!({"data": {"k": "say \\\"metadata\\\":{"}, "metadata": {"labels": {"metadata": "x"}}}),
        ] {
            let (out, want) = stamp(obj);
            assert_eq!(out, Some(want));
        }
        assert_eq!(stamp_resource_version(br#"{"spec":{"metadata":{}}}"#, 1), None);
        assert_eq!(stamp_resource_version(br#"{"metadata":"x"}"#, 1), None);
        assert_eq!(stamp_resource_version(b"not json", 1), None);
        let spaced = br#"{ "kind" : "A" , "metadata" : { } }"#;
        let out = stamp_resource_version(spaced, 7).expect("stamped");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn wasm_pods_should_refuse_what_guests_cannot_have() {
        let spec = json!({"runtimeClassName": "wasmtime", "restartPolicy": "Always", "hostPID": true,
            "containers": [{"name": "a", "image": "x", "securityContext": {"privileged": true}}]});
        let mut causes = Vec::new();
        validate_pod_spec(&spec, "spec", &mut causes);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.hostPID", "spec.containers[0].securityContext.privileged"]);
        assert!(causes[0].1.contains("runtimeClassName: runc"), "{}", causes[0].1);
        // The same pod on runc is fine.
        let mut oci = spec.clone();
        oci["runtimeClassName"] = json!("runc");
        let mut causes = Vec::new();
        validate_pod_spec(&oci, "spec", &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn new_pods_should_tolerate_unready_nodes_for_the_default_time() {
        let reg = Registry::builtin();
        let res = reg.by_plural("", "pods").unwrap().clone();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 2}]}});
        prepare_create(&mut pod, &res, Some("default")).unwrap();
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0]["tolerationSeconds"], 2, "the pod's own toleration is kept");
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["effect"], "NoExecute");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        // A toleration of every taint needs nothing added.
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"operator": "Exists"}]}});
        prepare_create(&mut pod, &res, Some("default")).unwrap();
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn prepare_create_should_default_pod_and_generate_name() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let mut pod = json!({"metadata": {"generateName": "web-"},
            "spec": {"containers": [{"name": "c", "image": "hello:1",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        prepare_create(&mut pod, pods, Some("default")).unwrap();
        assert!(name_of(&pod).starts_with("web-") && name_of(&pod).len() == 9);
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["metadata"]["generation"], 1);
    }

    #[test]
    fn prepare_create_should_report_field_paths() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let mut pod =
            json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}});
        let err = prepare_create(&mut pod, pods, Some("default")).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("metadata.name"), "{}", err.message);
        assert!(err.message.contains("spec.containers[0].image"), "{}", err.message);
    }

    #[test]
    fn prepare_update_should_refuse_pod_spec_changes_but_allow_image() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let mut old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}});
        prepare_create(&mut old, pods, Some("default")).unwrap();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("a:2");
        prepare_update(&mut new, &old, pods, None).unwrap();
        assert_eq!(new["metadata"]["generation"], 2);
        let mut bad = old.clone();
        bad["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(prepare_update(&mut bad, &old, pods, None).unwrap_err().code, 422);
    }
}
