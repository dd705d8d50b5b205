//! Defaulting and validation of the built-in kinds beyond pods and namespaces, following
//! Kubernetes' own defaults (`pkg/apis/*/v1/defaults.go`) and the validation rules users meet
//! most: selectors that must match their template, immutable fields, key and port syntax.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::objects::{default_pod_spec, set_default, validate_pod_spec};

type Causes = Vec<(String, String)>;

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    if !o.get(key).is_some_and(Value::is_object) {
        o.insert(key.to_string(), json!({}));
    }
    o.get_mut(key).and_then(Value::as_object_mut)
}

/// Defaults of a pod template (`spec.template` of the workload kinds).
fn default_template(template: Option<&mut Value>) {
    let Some(t) = template.filter(|t| t.is_object()) else { return };
    if let Some(m) = obj_mut(t, "metadata") {
        set_default(m, "creationTimestamp", Value::Null);
    }
    if let Some(spec) = obj_mut(t, "spec") {
        default_pod_spec(spec);
    }
}

fn rolling(kind: &str) -> Value {
    match kind {
        "DaemonSet" => {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        }
        "StatefulSet" => json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        _ => {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        }
    }
}

/// Fill a workload's update strategy like Kubernetes: absent means RollingUpdate with the
/// kind's defaults; a RollingUpdate without parameters gets them.
fn default_strategy(spec: &mut Map<String, Value>, field: &str, kind: &str) {
    let defaults = rolling(kind);
    let s = spec.entry(field).or_insert_with(|| json!({}));
    let Some(s) = s.as_object_mut() else { return };
    set_default(s, "type", json!("RollingUpdate"));
    if s.get("type") == Some(&json!("RollingUpdate")) {
        let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
        if let (Some(ru), Some(d)) = (ru.as_object_mut(), defaults["rollingUpdate"].as_object()) {
            for (k, v) in d {
                set_default(ru, k, v.clone());
            }
        }
    }
}

/// Apply the defaults of `kind` (of `api_version`) to a new or updated object.
pub fn default(api_version: &str, kind: &str, obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    match (api_version, kind) {
        ("v1", "LimitRange") => skiff_admission::limitranger::default_limit_range(obj),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
        | ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicy") => {
            crate::admission::stamp_policy_status(obj);
        }
        ("apps/v1", "Deployment") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                default_strategy(spec, "strategy", kind);
                default_template(spec.get_mut("template"));
            }
        }
        ("apps/v1", "ReplicaSet") | ("v1", "ReplicationController") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "minReadySeconds", json!(0));
                if kind == "ReplicationController" {
                    let labels =
                        spec.get("template").and_then(|t| t.pointer("/metadata/labels")).cloned();
                    if let Some(labels) = labels {
                        set_default(spec, "selector", labels);
                    }
                }
                default_template(spec.get_mut("template"));
            }
            if kind == "ReplicationController" {
                let labels = obj.pointer("/spec/template/metadata/labels").cloned();
                if let (Some(labels), Some(m)) = (labels, obj_mut(obj, "metadata")) {
                    set_default(m, "labels", labels);
                }
            }
        }
        ("apps/v1", "StatefulSet") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                default_strategy(spec, "updateStrategy", kind);
                default_template(spec.get_mut("template"));
                if let Some(Value::Array(claims)) = spec.get_mut("volumeClaimTemplates") {
                    for c in claims.iter_mut() {
                        if let Some(o) = c.as_object_mut() {
                            set_default(o, "apiVersion", json!("v1"));
                            set_default(o, "kind", json!("PersistentVolumeClaim"));
                        }
                        default_pvc(c);
                    }
                }
            }
        }
        ("apps/v1", "DaemonSet") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "revisionHistoryLimit", json!(10));
                default_strategy(spec, "updateStrategy", kind);
                default_template(spec.get_mut("template"));
            }
        }
        ("batch/v1", "Job") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default_job_spec(spec);
                let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
                if !manual && !uid.is_empty() {
                    // The job controller's labels, as the api server sets them on create.
                    let labels = json!({
                        "batch.kubernetes.io/controller-uid": uid,
                        "batch.kubernetes.io/job-name": name,
                        "controller-uid": uid,
                        "job-name": name,
                    });
                    set_default(
                        spec,
                        "selector",
                        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                    );
                    if let Some(t) = spec.get_mut("template")
                        && let Some(m) = obj_mut(t, "metadata")
                    {
                        let l = m.entry("labels").or_insert_with(|| json!({}));
                        if let (Some(l), Some(d)) = (l.as_object_mut(), labels.as_object()) {
                            for (k, v) in d {
                                set_default(l, k, v.clone());
                            }
                        }
                    }
                }
                default_template(spec.get_mut("template"));
            }
        }
        ("batch/v1", "CronJob") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(jt) = spec.get_mut("jobTemplate")
                    && let Some(js) = obj_mut(jt, "spec")
                {
                    default_job_spec(js);
                    default_template(js.get_mut("template"));
                }
            }
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "minReplicas", json!(1));
                if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                    spec.insert(
                        "metrics".into(),
                        json!([{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                    );
                }
            }
        }
        ("v1", "Service") => default_service(obj),
        ("v1", "Secret") => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "type", json!("Opaque"));
                // stringData is write-only: merged into data (base64) and never stored.
                if let Some(Value::Object(sd)) = o.remove("stringData") {
                    let data = o.entry("data").or_insert_with(|| json!({}));
                    if let Some(data) = data.as_object_mut() {
                        for (k, v) in sd {
                            let text = v.as_str().unwrap_or("").to_string();
                            data.insert(
                                k,
                                json!(base64::engine::general_purpose::STANDARD.encode(text)),
                            );
                        }
                    }
                }
            }
        }
        ("v1", "Endpoints") => {
            if let Some(Value::Array(subsets)) = obj.get_mut("subsets") {
                for s in subsets.iter_mut() {
                    if let Some(Value::Array(ports)) = s.get_mut("ports") {
                        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                            set_default(p, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            if let Some(Value::Array(ports)) = obj.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                    set_default(p, "name", json!(""));
                }
            }
        }
        ("v1", "PersistentVolume") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = obj_mut(obj, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        ("v1", "PersistentVolumeClaim") => default_pvc(obj),
        ("storage.k8s.io/v1", "StorageClass") => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "reclaimPolicy", json!("Delete"));
                set_default(o, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                    let mut types = vec![json!("Ingress")];
                    if spec.get("egress").is_some_and(|e| !e.is_null()) {
                        types.push(json!("Egress"));
                    }
                    spec.insert("policyTypes".into(), Value::Array(types));
                }
                for rules in ["ingress", "egress"] {
                    if let Some(Value::Array(rs)) = spec.get_mut(rules) {
                        for r in rs.iter_mut() {
                            if let Some(Value::Array(ports)) = r.get_mut("ports") {
                                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                                    set_default(p, "protocol", json!("TCP"));
                                }
                            }
                        }
                    }
                }
            }
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                set_default(spec, "conversion", json!({"strategy": "None"}));
            }
        }
        ("v1", "PodTemplate") => default_template(obj.get_mut("template")),
        _ => {
            crate::ga_kinds::default(api_version, kind, obj);
        }
    }
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    let has_completions = spec.get("completions").is_some_and(|v| !v.is_null());
    let has_parallelism = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !has_completions && !has_parallelism {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    set_default(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
}

fn default_pvc(obj: &mut Value) {
    if let Some(spec) = obj_mut(obj, "spec") {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = obj_mut(obj, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_service(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return;
    }
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str).map(str::to_string) {
        set_default(spec, "clusterIPs", json!([ip]));
    }
    if spec.get("clusterIP").and_then(Value::as_str) != Some("None")
        || spec.get("ipFamilyPolicy").is_some()
    {
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if let Some(status) = obj_mut(obj, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

/// Validation of `kind` beyond the schema: the rules users meet most.
pub fn validate(api_version: &str, kind: &str, obj: &Value, causes: &mut Causes) {
    match (api_version, kind) {
        ("apps/v1", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload(obj, "spec", causes);
        }
        ("v1", "ReplicationController") => {
            if let Some(n) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && n < 0
            {
                causes.push((
                    "spec.replicas".into(),
                    format!("Invalid value: {n}: must be greater than or equal to 0"),
                ));
            }
            validate_template(obj.pointer("/spec/template"), "spec.template", causes);
        }
        ("batch/v1", "Job") => validate_job(obj.get("spec"), "spec", true, causes),
        ("batch/v1", "CronJob") => {
            match obj.pointer("/spec/schedule").and_then(Value::as_str) {
                None | Some("") => causes.push(("spec.schedule".into(), "Required value".into())),
                Some(s) => {
                    if let Err(e) = validate_cron(s) {
                        causes.push(("spec.schedule".into(), format!("Invalid value: {s:?}: {e}")));
                    }
                }
            }
            match obj.pointer("/spec/jobTemplate/spec") {
                Some(js) => validate_job(Some(js), "spec.jobTemplate.spec", false, causes),
                None => causes.push(("spec.jobTemplate".into(), "Required value".into())),
            }
        }
        ("v1", "Service") => validate_service(obj, causes),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            causes.extend(skiff_admission::webhook::validate_configuration(obj, true));
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            causes.extend(skiff_admission::webhook::validate_configuration(obj, false));
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            validate_admission_policy(obj, false, causes);
        }
        ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicy") => {
            validate_admission_policy(obj, true, causes);
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding")
        | ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicyBinding") => {
            if obj.pointer("/spec/policyName").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(("spec.policyName".into(), "Required value".into()));
            }
            if kind == "ValidatingAdmissionPolicyBinding"
                && obj
                    .pointer("/spec/validationActions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            {
                causes.push((
                    "spec.validationActions".into(),
                    "Required value: at least one validation action is required".into(),
                ));
            }
        }
        ("policy.skiff.dev/v1alpha1", "WasmAdmissionPolicy") => {
            validate_wasm_policy(obj, causes);
        }
        ("policy.skiff.dev/v1alpha1", "WasmAdmissionPolicyBinding") => {
            validate_wasm_policy_binding(obj, causes);
        }
        ("v1", "LimitRange") => {
            causes.extend(skiff_admission::limitranger::validate_limit_range(obj));
        }
        ("v1", "ResourceQuota") => causes.extend(skiff_admission::quota::validate_quota(obj)),
        ("v1", "ConfigMap") => {
            validate_keys(obj.get("data"), "data", causes);
            validate_keys(obj.get("binaryData"), "binaryData", causes);
            let size: usize = ["data", "binaryData"]
                .iter()
                .filter_map(|f| obj.get(*f).and_then(Value::as_object))
                .flat_map(|m| m.iter())
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum();
            if size > 1024 * 1024 {
                causes.push(("[]".into(), "Too long: must have at most 1048576 bytes".into()));
            }
        }
        ("v1", "Secret") => {
            validate_keys(obj.get("data"), "data", causes);
            if let Some(data) = obj.get("data").and_then(Value::as_object) {
                for (k, v) in data {
                    let ok =
                        v.as_str().is_some_and(|s| skiff_api::protobuf::decode_base64(s).is_ok());
                    if !ok {
                        causes.push((
                            format!("data[{k}]"),
                            "Invalid value: \"<secret contents redacted>\": illegal base64 data"
                                .into(),
                        ));
                    }
                }
            }
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let rules = obj.pointer("/spec/rules").and_then(Value::as_array);
            for (i, r) in rules.into_iter().flatten().enumerate() {
                let paths = r.pointer("/http/paths").and_then(Value::as_array);
                for (j, p) in paths.into_iter().flatten().enumerate() {
                    let path = format!("spec.rules[{i}].http.paths[{j}]");
                    match p.get("pathType").and_then(Value::as_str) {
                        Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                        None => causes.push((format!("{path}.pathType"), "Required value: pathType must be specified".into())),
                        Some(other) => causes.push((
                            format!("{path}.pathType"),
                            format!("Unsupported value: {other:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
                        )),
                    }
                    if p.get("backend").is_none() {
                        causes.push((format!("{path}.backend"), "Required value".into()));
                    }
                }
            }
        }
        ("policy/v1", "PodDisruptionBudget") => {
            let spec = obj.get("spec");
            let min = spec.and_then(|s| s.get("minAvailable")).filter(|v| !v.is_null());
            let max = spec.and_then(|s| s.get("maxUnavailable")).filter(|v| !v.is_null());
            if min.is_some() && max.is_some() {
                causes.push((
                    "spec".into(),
                    "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
                ));
            }
        }
        ("scheduling.k8s.io/v1", "PriorityClass")
            if obj.get("value").and_then(Value::as_i64).is_none() =>
        {
            causes.push(("value".into(), "Required value".into()));
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            match obj.get("roleRef") {
                None => causes.push(("roleRef".into(), "Required value".into())),
                Some(r) => {
                    for f in ["kind", "name"] {
                        if r.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                            causes.push((format!("roleRef.{f}"), "Required value".into()));
                        }
                    }
                }
            }
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => validate_crd(obj, causes),
        ("v1", "PodTemplate") => validate_template(obj.get("template"), "template", causes),
        _ => {
            crate::ga_kinds::validate(api_version, kind, obj, causes);
        }
    }
}

/// The CRD's own validation (skiff-apiextensions), as causes.
fn validate_crd(obj: &Value, causes: &mut Causes) {
    for e in skiff_apiextensions::crd::validate_crd(obj, None) {
        causes.push((e.field.clone(), e.body()));
    }
}

/// What only an update of a CRD can get wrong (stored versions dropped, scope changed).
fn validate_crd_update(new: &Value, old: &Value, causes: &mut Causes) {
    let on_create = skiff_apiextensions::crd::validate_crd(new, None);
    for e in skiff_apiextensions::crd::validate_crd(new, Some(old)) {
        if !on_create.contains(&e) {
            causes.push((e.field.clone(), e.body()));
        }
    }
}

fn validate_workload(obj: &Value, prefix: &str, causes: &mut Causes) {
    let spec = obj.pointer(&format!("/{}", prefix.replace('.', "/")));
    if let Some(n) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64)
        && n < 0
    {
        causes.push((
            format!("{prefix}.replicas"),
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        ));
    }
    let selector = spec.and_then(|s| s.get("selector")).filter(|s| !s.is_null());
    let template = spec.and_then(|s| s.get("template"));
    match selector {
        None => causes.push((format!("{prefix}.selector"), "Required value".into())),
        Some(sel) => {
            let empty = sel.get("matchLabels").and_then(Value::as_object).is_none_or(Map::is_empty)
                && sel.get("matchExpressions").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if empty {
                causes.push((
                    format!("{prefix}.selector"),
                    "Invalid value: empty selector is invalid for deployment".into(),
                ));
            } else {
                check_selects_template(sel, template, prefix, causes);
            }
        }
    }
    validate_template(template, &format!("{prefix}.template"), causes);
}

/// A workload's selector must select its own pod template.
fn check_selects_template(
    sel: &Value,
    template: Option<&Value>,
    prefix: &str,
    causes: &mut Causes,
) {
    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
    if !selector_matches(sel, labels) {
        causes.push((
            format!("{prefix}.template.metadata.labels"),
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                go_map(labels)
            ),
        ));
    }
}

fn validate_template(template: Option<&Value>, prefix: &str, causes: &mut Causes) {
    match template {
        None => causes.push((prefix.to_string(), "Required value".into())),
        Some(t) => match t.get("spec") {
            Some(s) => validate_pod_spec(s, &format!("{prefix}.spec"), causes),
            None => causes.push((format!("{prefix}.spec"), "Required value".into())),
        },
    }
}

fn validate_job(spec: Option<&Value>, prefix: &str, created: bool, causes: &mut Causes) {
    let Some(spec) = spec else {
        causes.push((prefix.to_string(), "Required value".into()));
        return;
    };
    for f in ["parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"] {
        if let Some(n) = spec.get(f).and_then(Value::as_i64)
            && (n < 0 || (f == "activeDeadlineSeconds" && n == 0))
        {
            causes.push((
                format!("{prefix}.{f}"),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
    }
    let template = spec.get("template");
    match template.and_then(|t| t.pointer("/spec/restartPolicy")).and_then(Value::as_str) {
        Some("OnFailure" | "Never") | None => {}
        Some(other) => causes.push((
            format!("{prefix}.template.spec.restartPolicy"),
            format!("Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\""),
        )),
    }
    if created && let Some(sel) = spec.get("selector") {
        check_selects_template(sel, template, prefix, causes);
    }
    validate_template(template, &format!("{prefix}.template"), causes);
}

fn validate_service(obj: &Value, causes: &mut Causes) {
    let spec = obj.get("spec");
    let ty = spec.and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        causes.push((
            "spec.type".into(),
            format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ));
    }
    if ty == "ExternalName" {
        if spec.and_then(|s| s.get("externalName")).and_then(Value::as_str).unwrap_or("").is_empty()
        {
            causes.push(("spec.externalName".into(), "Required value".into()));
        }
        return;
    }
    let headless = spec.and_then(|s| s.get("clusterIP")).and_then(Value::as_str) == Some("None");
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if ports.is_none_or(Vec::is_empty) && !headless {
        causes.push(("spec.ports".into(), "Required value".into()));
    }
    let ports = ports.map(Vec::as_slice).unwrap_or(&[]);
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => causes.push((
                format!("{path}.port"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            )),
            None => causes.push((format!("{path}.port"), "Required value".into())),
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            causes.push((format!("{path}.name"), "Required value".into()));
        } else if !name.is_empty() && names.contains(&name) {
            causes.push((format!("{path}.name"), format!("Duplicate value: {name:?}")));
        }
        names.push(name);
        if let Some(proto) = p.get("protocol").and_then(Value::as_str)
            && !matches!(proto, "TCP" | "UDP" | "SCTP")
        {
            causes.push((
                format!("{path}.protocol"),
                format!(
                    "Unsupported value: {proto:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""
                ),
            ));
        }
    }
    validate_service_selector(spec.and_then(|s| s.get("selector")), causes);
    // Kubernetes compares (protocol, port) pairs as internal `core.ServicePort` values and
    // prints the duplicate with Go's `%#v`.
    let protocol =
        |p: &Value| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut seen_node_ports: Vec<(String, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (protocol(p), p.get("port").and_then(Value::as_i64).unwrap_or(0));
        if seen.contains(&key) {
            causes.push((
                format!("spec.ports[{i}]"),
                format!(
                    "Duplicate value: core.ServicePort{{Name:\"\", Protocol:{:?}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    key.0, key.1
                ),
            ));
        }
        seen.push(key);
        let node_port = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            let key = (protocol(p), node_port);
            if seen_node_ports.contains(&key) {
                causes.push((
                    format!("spec.ports[{i}].nodePort"),
                    format!("Duplicate value: {node_port}"),
                ));
            }
            seen_node_ports.push(key);
        }
    }
}

/// Kubernetes' `ValidateLabels` on `spec.selector`: every key a qualified name, every value a
/// label value; each problem a cause at `spec.selector`.
fn validate_service_selector(selector: Option<&Value>, causes: &mut Causes) {
    let Some(map) = selector.and_then(Value::as_object) else { return };
    for (k, v) in map {
        if let Err(e) = skiff_api::validate_qualified_name(k) {
            causes.push(("spec.selector".into(), format!("Invalid value: {k:?}: {e}")));
        }
        let Some(v) = v.as_str() else {
            causes.push(("spec.selector".into(), format!("Invalid value: {v}: must be a string")));
            continue;
        };
        if v.len() > 63 {
            causes.push((
                "spec.selector".into(),
                format!("Invalid value: {v:?}: must be no more than 63 characters"),
            ));
        }
        let b = v.as_bytes();
        let pattern_ok = b.is_empty()
            || (b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric());
        if !pattern_ok {
            let e = skiff_api::NameError::NotLabelValue;
            causes.push(("spec.selector".into(), format!("Invalid value: {v:?}: {e}")));
        }
    }
}

/// Data keys of ConfigMaps and Secrets: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn validate_keys(map: Option<&Value>, field: &str, causes: &mut Causes) {
    let Some(map) = map.and_then(Value::as_object) else { return };
    for k in map.keys() {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && k != "."
            && k != "..";
        if !ok {
            causes.push((
                format!("{field}[{k}]"),
                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
            ));
        }
    }
}

/// Kubernetes' Go-style rendering of a label map in messages: `map[string]string{"a":"b"}`.
fn go_map(labels: Option<&Value>) -> String {
    let inner: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k:?}:{}", v))
        .collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// Whether a `LabelSelector` (matchLabels + matchExpressions) selects `labels`, with the one
/// matcher every component shares.
pub use skiff_helpers::labels::json_selector_matches as selector_matches;

/// The string form of a `LabelSelector`, as the scale subresource reports.
pub use skiff_helpers::labels::json_selector_string as selector_string;

/// Why a CronJob schedule is invalid (the text of an `Invalid` status cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TimeZonePrefix,
    #[error("unrecognized descriptor: @{0}")]
    UnknownDescriptor(String),
    #[error("expected exactly 5 fields, found {found}: {schedule}")]
    FieldCount { found: usize, schedule: String },
    #[error("invalid step {step:?} in {field:?}")]
    InvalidStep { step: String, field: String },
    #[error("value {value:?} out of range [{lo}-{hi}]")]
    OutOfRange { value: String, lo: u32, hi: u32 },
}

/// A standard 5-field cron schedule (or a `@every`/`@hourly`-style macro), optionally
/// prefixed by `TZ=`/`CRON_TZ=` (which Kubernetes rejects in favour of `spec.timeZone`).
pub fn validate_cron(schedule: &str) -> Result<(), CronError> {
    let s = schedule.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err(CronError::TimeZonePrefix);
    }
    if let Some(m) = s.strip_prefix('@') {
        return match m {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ if m.starts_with("every ") => Ok(()),
            _ => Err(CronError::UnknownDescriptor(m.to_string())),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount { found: fields.len(), schedule: s.to_string() });
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (lo, hi)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (part, None),
            };
            if let Some(st) = step
                && st.parse::<u32>().map_or(true, |n| n == 0)
            {
                return Err(CronError::InvalidStep {
                    step: st.to_string(),
                    field: field.to_string(),
                });
            }
            if range == "*" || range == "?" {
                continue;
            }
            let named = |x: &str| -> Option<u32> {
                const MONTHS: [&str; 12] = [
                    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                    "dec",
                ];
                const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
                let l = x.to_ascii_lowercase();
                x.parse::<u32>()
                    .ok()
                    .or_else(|| MONTHS.iter().position(|m| *m == l).map(|i| i as u32 + 1))
                    .or_else(|| DAYS.iter().position(|d| *d == l).map(|i| i as u32))
            };
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (named(a), named(b)),
                None => (named(range), named(range)),
            };
            match (a, b) {
                (Some(a), Some(b)) if a >= lo && b <= hi && a <= b => {}
                _ => {
                    return Err(CronError::OutOfRange { value: range.to_string(), lo, hi });
                }
            }
        }
    }
    Ok(())
}

/// Fields Kubernetes does not let an update change, per kind.
pub fn validate_update(
    api_version: &str,
    kind: &str,
    new: &Value,
    old: &Value,
    causes: &mut Causes,
) {
    let immutable = |ptr: &str, field: &str, causes: &mut Causes| {
        let (n, o) = (new.pointer(ptr), old.pointer(ptr));
        if n != o && o.is_some() {
            causes.push((
                field.to_string(),
                format!(
                    "Invalid value: {}: field is immutable",
                    n.map_or("null".to_string(), Value::to_string)
                ),
            ));
        }
    };
    match (api_version, kind) {
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            validate_crd_update(new, old, causes);
        }
        ("apps/v1", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            immutable("/spec/selector", "spec.selector", causes);
        }
        ("batch/v1", "Job") => {
            immutable("/spec/selector", "spec.selector", causes);
            immutable("/spec/completions", "spec.completions", causes);
            immutable("/spec/completionMode", "spec.completionMode", causes);
        }
        ("v1", "Service") => {
            let ip = old.pointer("/spec/clusterIP");
            if ip.is_some() && new.pointer("/spec/clusterIP") != ip {
                immutable("/spec/clusterIP", "spec.clusterIP", causes);
            }
        }
        ("v1", "ConfigMap" | "Secret") => {
            if old.get("immutable") == Some(&json!(true)) {
                for f in ["data", "binaryData", "type"] {
                    if new.get(f) != old.get(f) {
                        causes.push((
                            f.to_string(),
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
                if new.get("immutable") != old.get("immutable") {
                    causes.push((
                        "immutable".into(),
                        "Forbidden: field is immutable when `immutable` is set".into(),
                    ));
                }
            }
            if kind == "Secret" {
                immutable("/type", "type", causes);
            }
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            immutable("/roleRef", "roleRef", causes);
        }
        ("storage.k8s.io/v1", "StorageClass") => {
            immutable("/provisioner", "provisioner", causes);
            immutable("/parameters", "parameters", causes);
            immutable("/reclaimPolicy", "reclaimPolicy", causes);
            immutable("/volumeBindingMode", "volumeBindingMode", causes);
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            immutable("/value", "value", causes);
        }
        ("v1", "PersistentVolumeClaim") => {
            immutable("/spec/storageClassName", "spec.storageClassName", causes);
            immutable("/spec/accessModes", "spec.accessModes", causes);
            immutable("/spec/volumeName", "spec.volumeName", causes);
        }
        _ => {}
    }
}

/// A Validating- or MutatingAdmissionPolicy: something to check (or change), and every
/// CEL expression compiles (kube refuses one that does not, with the compiler's message).
fn validate_admission_policy(obj: &Value, mutating: bool, causes: &mut Causes) {
    let spec = &obj["spec"];
    let non_empty = |f: &str| spec[f].as_array().is_some_and(|a| !a.is_empty());
    if mutating {
        if !non_empty("mutations") {
            causes.push((
                "spec.mutations".into(),
                "Required value: mutations must contain at least one item".into(),
            ));
        }
    } else if !non_empty("validations") && !non_empty("auditAnnotations") {
        causes.push((
            "spec.validations".into(),
            "Required value: validations or auditAnnotations must contain at least one item".into(),
        ));
    }
    if let Some(p) = spec.get("failurePolicy").and_then(Value::as_str)
        && !matches!(p, "Fail" | "Ignore")
    {
        causes.push((
            "spec.failurePolicy".into(),
            format!("Unsupported value: {p:?}: supported values: \"Fail\", \"Ignore\""),
        ));
    }
    let compiled = if mutating {
        skiff_admission::policy::compile_mutating(obj)
    } else {
        skiff_admission::policy::compile_validating(obj)
    };
    for (field, message) in compiled.compile_errors() {
        causes.push((field, format!("Invalid value: {message}")));
    }
}

/// A WasmAdmissionPolicy: a module to run, a known failure policy, sane limits, and kinds it
/// reads named by apiVersion and kind.
fn validate_wasm_policy(obj: &Value, causes: &mut Causes) {
    let spec = &obj["spec"];
    if spec["module"].as_str().is_none_or(str::is_empty) {
        causes.push(("spec.module".into(), "Required value: the policy's image reference".into()));
    }
    // As for ValidatingAdmissionPolicy: a policy says what it is for, never "everything".
    if spec
        .pointer("/matchConstraints/resourceRules")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        causes.push((
            "spec.matchConstraints.resourceRules".into(),
            "Required value: a policy must name the resources it applies to".into(),
        ));
    }
    if let Some(p) = spec.get("failurePolicy").and_then(Value::as_str)
        && !matches!(p, "Fail" | "Ignore")
    {
        causes.push((
            "spec.failurePolicy".into(),
            format!("Unsupported value: {p:?}: supported values: \"Fail\", \"Ignore\""),
        ));
    }
    if let Some(t) = spec.get("timeoutMilliseconds").filter(|v| !v.is_null())
        && !t.as_u64().is_some_and(|t| (1..=30_000).contains(&t))
    {
        causes.push((
            "spec.timeoutMilliseconds".into(),
            format!("Invalid value: {t}: must be between 1 and 30000"),
        ));
    }
    if let Some(m) = spec.get("memoryLimitBytes").filter(|v| !v.is_null())
        && !m.as_u64().is_some_and(|m| (1 << 20..=256 << 20).contains(&m))
    {
        causes.push((
            "spec.memoryLimitBytes".into(),
            format!("Invalid value: {m}: must be between 1Mi (1048576) and 256Mi (268435456)"),
        ));
    }
    for (i, c) in spec["context"].as_array().into_iter().flatten().enumerate() {
        for field in ["apiVersion", "kind"] {
            if c[field].as_str().is_none_or(str::is_empty) {
                causes.push((format!("spec.context[{i}].{field}"), "Required value".into()));
            }
        }
    }
}

/// A WasmAdmissionPolicyBinding names its policy and only known actions.
fn validate_wasm_policy_binding(obj: &Value, causes: &mut Causes) {
    let spec = &obj["spec"];
    if spec["policyName"].as_str().is_none_or(str::is_empty) {
        causes.push(("spec.policyName".into(), "Required value".into()));
    }
    for (i, a) in spec["validationActions"].as_array().into_iter().flatten().enumerate() {
        if !matches!(a.as_str(), Some("Deny" | "Warn" | "Audit")) {
            causes.push((
                format!("spec.validationActions[{i}]"),
                format!("Unsupported value: {a}: supported values: \"Audit\", \"Deny\", \"Warn\""),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_should_match_kubernetes() {
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        default("apps/v1", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut causes = Vec::new();
        validate("apps/v1", "Deployment", &d, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        default("apps/v1", "Deployment", &mut d);
        let mut causes = Vec::new();
        validate("apps/v1", "Deployment", &d, &mut causes);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].0, "spec.template.metadata.labels");
        assert!(causes[0].1.contains("`selector` does not match template `labels`"));
    }

    #[test]
    fn service_defaults_should_fill_ports() {
        let mut s = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        default("v1", "Service", &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        let bad = json!({"spec": {"ports": [{"port": 70000}, {"port": 1}]}});
        let mut causes = Vec::new();
        validate("v1", "Service", &bad, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(fields, ["spec.ports[0].port", "spec.ports[0].name", "spec.ports[1].name"]);
    }

    #[test]
    fn service_validation_should_refuse_duplicate_ports_as_kubernetes_does() {
        let svc = json!({"spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [
            {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "b", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "a", "port": 80, "protocol": "UDP", "nodePort": 30080}]}});
        let mut causes = Vec::new();
        validate("v1", "Service", &svc, &mut causes);
        assert_eq!(
            causes,
            [
                ("spec.ports[2].name".to_string(), "Duplicate value: \"a\"".to_string()),
                (
                    "spec.ports[1]".to_string(),
                    "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}".to_string()
                ),
                ("spec.ports[1].nodePort".to_string(), "Duplicate value: 30080".to_string()),
            ]
        );
    }

    #[test]
    fn service_validation_should_refuse_invalid_selector_labels() {
        let long = "x".repeat(64);
        let svc = json!({"spec": {"selector": {"app": "bad value", "ok": "", "tier": long, "-bad": "v"},
            "ports": [{"port": 80}]}});
        let mut causes = Vec::new();
        validate("v1", "Service", &svc, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(fields, ["spec.selector"; 3], "{causes:?}");
        assert!(
            causes[0].1.starts_with("Invalid value: \"-bad\": name part must consist of"),
            "{causes:?}"
        );
        assert!(
            causes[1]
                .1
                .starts_with("Invalid value: \"bad value\": a valid label must be an empty string"),
            "{causes:?}"
        );
        assert_eq!(
            causes[2].1,
            format!("Invalid value: {long:?}: must be no more than 63 characters")
        );
    }

    #[test]
    fn secret_string_data_should_become_base64_data() {
        let mut s = json!({"stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}});
        default("v1", "Secret", &mut s);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"]["password"], "aHVudGVyMg==");
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn job_defaults_should_generate_selector_and_labels() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        default("batch/v1", "Job", &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
        let mut causes = Vec::new();
        validate("batch/v1", "Job", &j, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn cron_schedules_should_parse_like_kubernetes() {
        assert!(validate_cron("*/5 * * * *").is_ok());
        assert!(validate_cron("0 9-17 * jan-jun mon-fri").is_ok());
        assert!(validate_cron("@hourly").is_ok());
        assert!(validate_cron("61 * * * *").is_err());
        assert!(validate_cron("* * *").is_err());
        assert!(validate_cron("TZ=UTC * * * * *").is_err());
        let msg = |s: &str| validate_cron(s).unwrap_err().to_string();
        assert_eq!(msg("61 * * * *"), "value \"61\" out of range [0-59]");
        assert_eq!(msg("* * *"), "expected exactly 5 fields, found 3: * * *");
        assert_eq!(msg("*/0 * * * *"), "invalid step \"0\" in \"*/0\"");
    }

    #[test]
    fn selector_string_should_render_expressions() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]});
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
        assert!(selector_matches(&sel, Some(&json!({"app": "web", "tier": "a"}))));
        assert!(!selector_matches(&sel, Some(&json!({"app": "web"}))));
    }

    #[test]
    fn immutable_fields_should_be_refused() {
        let old = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"a": "2"}}}});
        let mut causes = Vec::new();
        validate_update("apps/v1", "Deployment", &new, &old, &mut causes);
        assert_eq!(causes[0].0, "spec.selector");
    }
}
