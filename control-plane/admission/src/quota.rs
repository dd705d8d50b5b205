//! ResourceQuota, as kube-apiserver's `ResourceQuota` admission plugin and
//! kube-controller-manager's resource quota controller decide it: what an object uses
//! (`pkg/quota/v1/evaluator/core`: pods, services, persistent volume claims, object counts),
//! which quotas select it (scopes and scope selectors), the admission charge against
//! `status.used` with kube's refusals (`staging/.../admission/plugin/resourcequota/controller.go`
//! `CheckRequest`), the controller's recomputation of `status` (`pkg/controller/resourcequota`),
//! and ResourceQuota validation (`pkg/apis/core/validation`).
//!
//! Quantities are exact [`Quantity`] values, so sums print as kube prints them (`1536Mi`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};
use skiff_helpers::quantity::{Format, Quantity};

#[cfg(test)]
mod tests;

/// Quantities by resource name (`corev1.ResourceList`), in name order.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The resources the pod evaluator counts besides hugepages and extended resources.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// A quota on one of these makes every container of a pod name it explicitly ("it was a
/// mistake", says kube, kept for compatibility).
const POD_VALIDATION_SET: &[&str] =
    &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

const SERVICE_RESOURCES: &[&str] =
    &["count/services", "services", "services.nodeports", "services.loadbalancers"];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Object counts with a short name from before `count/<resource>` existed.
const LEGACY_COUNT_ALIASES: &[(&str, &str)] = &[
    ("configmaps", "configmaps"),
    ("resourcequotas", "resourcequotas"),
    ("replicationcontrollers", "replicationcontrollers"),
    ("secrets", "secrets"),
];

// ---------------------------------------------------------------------------------------
// Resource lists (`pkg/quota/v1/resources.go`)

/// A JSON `ResourceList`; entries that are not quantities are skipped (decoding refuses them
/// before admission in kube).
pub(crate) fn resource_list(value: Option<&Value>) -> ResourceList {
    let Some(map) = value.and_then(Value::as_object) else { return ResourceList::new() };
    map.iter().filter_map(|(name, q)| Some((name.clone(), quantity_of(q)?))).collect()
}

/// A quantity as JSON holds it: a string, or a bare number.
pub(crate) fn quantity_of(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// A `ResourceList` as JSON, each quantity in kube's printed form.
pub(crate) fn list_to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, q)| (k.clone(), Value::String(q.to_string()))).collect())
}

/// `quota.Add`.
fn add_lists(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut result = a.clone();
    add_into(&mut result, b);
    result
}

/// Adds `other` into `list` (`addResourceList`).
pub(crate) fn add_into(list: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        match list.get_mut(name) {
            Some(existing) => *existing += q,
            None => {
                list.insert(name.clone(), q.clone());
            }
        }
    }
}

/// Raises each entry of `list` to `other`'s where that is greater (`maxResourceList`).
pub(crate) fn max_into(list: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        if list.get(name).is_none_or(|existing| q > existing) {
            list.insert(name.clone(), q.clone());
        }
    }
}

/// `quota.Mask`: only the named entries.
fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names.into_iter().filter_map(|n| Some((n.clone(), list.get(n)?.clone()))).collect()
}

/// `quota.SubtractWithNonNegativeResult`.
fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let zero = Quantity::zero;
    let mut result = ResourceList::new();
    for (name, q) in a {
        let mut difference = q.clone();
        if let Some(other) = b.get(name) {
            difference -= other;
        }
        let value = if difference > Quantity::zero() { difference } else { zero() };
        result.insert(name.clone(), value);
    }
    for name in b.keys() {
        result.entry(name.clone()).or_insert_with(zero);
    }
    result
}

fn remove_zeros(list: ResourceList) -> ResourceList {
    list.into_iter().filter(|(_, q)| !q.is_zero()).collect()
}

/// `quota.Equals`: the same names with equal values.
fn equal_lists(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len() && a.iter().all(|(name, q)| b.get(name) == Some(q))
}

/// `prettyPrint`: `name=value` in name order, comma-separated.
fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(name, q)| format!("{name}={q}")).collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------
// Resource names (`pkg/apis/core/helper`)

/// Names in the `*kubernetes.io/` namespace; names without a `/` are implicitly there.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsExtendedResourceName`: outside `kubernetes.io`, not `requests.`-prefixed, and a
/// qualified name once prefixed with `requests.`.
pub(crate) fn is_extended_resource_name(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && qualified_name_errors(&format!("requests.{name}")).is_empty()
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `requests.<extended resource>`, the only form quota accepts for extended resources, or the
/// implicit one of a DRA device class.
fn is_extended_resource_for_quota(name: &str) -> bool {
    let implicit = name.starts_with("requests.deviceclass.resource.kubernetes.io/");
    (!is_native_resource(name) || implicit) && name.starts_with("requests.")
}

/// `schedutil.IsDRAExtendedResourceName`: an extended resource, or a device class's implicit one.
fn is_dra_extended_resource_name(name: &str) -> bool {
    is_extended_resource_name(name) || name.starts_with("deviceclass.resource.kubernetes.io/")
}

// ---------------------------------------------------------------------------------------
// Field validation texts (`k8s.io/apimachinery/pkg/util/validation`)

const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const DNS_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    // Go joins `'a', ` pieces with ` or `, leaving two spaces: `'a',  or 'b', `.
    let examples: String =
        examples.iter().map(|e| format!("'{e}', ")).collect::<Vec<_>>().join(" or ");
    format!("{message} (e.g. {examples}regex used for validation is '{regex}')")
}

fn is_dns_subdomain(value: &str) -> bool {
    value.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

fn is_label_key_name(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `validation.IsQualifiedName`: kube's messages, none when `value` is valid.
pub(crate) fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errors.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns_subdomain(prefix) {
                    let e = regex_error(DNS_SUBDOMAIN_ERR, DNS_SUBDOMAIN_FMT, &["example.com"]);
                    errors.push(format!("prefix part {e}"));
                }
            }
            *name
        }
        _ => {
            let e = regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
            errors.push(format!(
                "a valid label key {e} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')"
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_string());
    }
    if !is_label_key_name(name) {
        let e = regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
        errors.push(format!("name part {e}"));
    }
    errors
}

/// A string as Go's `json.Marshal` prints it (what kube shows as a field error's value).
pub(crate) fn json_str(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}

/// `field.Invalid`, as `(path, "Invalid value: <value>: <detail>")`.
pub(crate) fn invalid(path: impl Into<String>, value: &str, detail: &str) -> (String, String) {
    (path.into(), format!("Invalid value: {value}: {detail}"))
}

/// `field.Forbidden`.
pub(crate) fn forbidden(path: impl Into<String>, detail: &str) -> (String, String) {
    (path.into(), format!("Forbidden: {detail}"))
}

/// `field.Required`.
pub(crate) fn required(path: impl Into<String>, detail: &str) -> (String, String) {
    (path.into(), format!("Required value: {detail}"))
}

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_quota_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name) || is_quota_hugepages(name)
}

/// `validateResourceName`: a qualified name, and a standard one unless it has a `/`.
pub(crate) fn validate_resource_name(name: &str, path: &str) -> Vec<(String, String)> {
    let mut errors: Vec<_> =
        qualified_name_errors(name).iter().map(|m| invalid(path, &json_str(name), m)).collect();
    if errors.is_empty()
        && !name.contains('/')
        && !(STANDARD_RESOURCES.contains(&name) || is_quota_hugepages(name))
    {
        errors.push(invalid(
            path,
            &json_str(name),
            "must be a standard resource type or fully qualified",
        ));
    }
    errors
}

/// `validateContainerResourceName`.
pub(crate) fn validate_container_resource_name(name: &str, path: &str) -> Vec<(String, String)> {
    let mut errors = validate_resource_name(name, path);
    if !name.contains('/') {
        if !(matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepages(name)) {
            errors.push(invalid(
                path,
                &json_str(name),
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource_name(name) {
        errors.push(invalid(
            path,
            &json_str(name),
            "doesn't follow extended resource name standard",
        ));
    }
    errors
}

// ---------------------------------------------------------------------------------------
// Pods: requests and limits (`k8s.io/component-helpers/resource`)

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn container_list(container: &Value, field: &str) -> ResourceList {
    resource_list(container.pointer(&format!("/resources/{field}")))
}

fn is_restartable_init_container(container: &Value) -> bool {
    str_at(container, "/restartPolicy") == Some("Always")
}

/// Pod-level resources kube supports (`IsSupportedPodLevelResource`).
fn is_supported_pod_level_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory") || is_hugepages(name)
}

fn pod_level(pod: &Value, field: &str) -> ResourceList {
    let mut list = resource_list(pod.pointer(&format!("/spec/resources/{field}")));
    list.retain(|name, _| is_supported_pod_level_resource(name));
    list
}

/// `IsPodLevelResourcesSet`.
pub(crate) fn pod_level_resources_set(pod: &Value) -> bool {
    !pod_level(pod, "requests").is_empty() || !pod_level(pod, "limits").is_empty()
}

fn is_resize_infeasible(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions
        .into_iter()
        .flatten()
        .find(|c| str_at(c, "/type") == Some("PodResizePending"))
        .is_some_and(|c| str_at(c, "/reason") == Some("Infeasible"))
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"].iter().find_map(|field| {
        let statuses = pod.pointer(&format!("/status/{field}")).and_then(Value::as_array)?;
        statuses.iter().find(|s| str_at(s, "/name") == Some(name))
    })
}

/// What one container asks for, given its status and whether a resize is infeasible; `None`
/// contributes nothing.
type ContainerResources = fn(&Value, Option<&Value>, bool) -> Option<ResourceList>;

fn spec_requests(c: &Value, _: Option<&Value>, _: bool) -> Option<ResourceList> {
    Some(container_list(c, "requests"))
}

fn spec_limits(c: &Value, _: Option<&Value>, _: bool) -> Option<ResourceList> {
    Some(container_list(c, "limits"))
}

fn present<'a>(value: Option<&'a Value>, pointer: &str) -> Option<&'a Value> {
    value?.pointer(pointer).filter(|v| !v.is_null())
}

fn allocated_requests(c: &Value, cs: Option<&Value>, infeasible: bool) -> Option<ResourceList> {
    if let Some(allocated) = present(cs, "/allocatedResources") {
        return Some(resource_list(Some(allocated)));
    }
    (!infeasible).then(|| container_list(c, "requests"))
}

fn actuated_requests(c: &Value, cs: Option<&Value>, infeasible: bool) -> Option<ResourceList> {
    if let Some(actual) = present(cs, "/resources/requests") {
        return Some(resource_list(Some(actual)));
    }
    if let Some(allocated) = present(cs, "/allocatedResources") {
        return Some(resource_list(Some(allocated)));
    }
    (!infeasible).then(|| container_list(c, "requests"))
}

fn actuated_limits(c: &Value, cs: Option<&Value>, infeasible: bool) -> Option<ResourceList> {
    if let Some(actual) = present(cs, "/resources/limits") {
        return Some(resource_list(Some(actual)));
    }
    (!infeasible).then(|| container_list(c, "limits"))
}

/// Sums a pod's containers the way the sidecar KEP defines: regular and restartable init
/// containers add up; each other init container runs alone beside the restartable ones
/// started before it, and the pod needs the largest of those moments.
fn aggregate(pod: &Value, use_status: bool, get: ContainerResources) -> ResourceList {
    let infeasible = use_status && is_resize_infeasible(pod);
    let status_of = |c: &Value| {
        if use_status { str_at(c, "/name").and_then(|n| container_status(pod, n)) } else { None }
    };
    let mut result = ResourceList::new();
    for c in containers(pod, "containers") {
        if let Some(list) = get(c, status_of(c), infeasible) {
            add_into(&mut result, &list);
        }
    }
    let mut restartable = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in containers(pod, "initContainers") {
        let list = get(c, status_of(c), infeasible).unwrap_or_default();
        let moment = if is_restartable_init_container(c) {
            add_into(&mut result, &list);
            add_into(&mut restartable, &list);
            restartable.clone()
        } else {
            let mut alone = list;
            add_into(&mut alone, &restartable);
            alone
        };
        max_into(&mut init_peak, &moment);
    }
    max_into(&mut result, &init_peak);
    result
}

fn max_of(first: ResourceList, others: &[&ResourceList]) -> ResourceList {
    let mut result = first;
    for other in others {
        max_into(&mut result, other);
    }
    result
}

/// How to add up a pod (`PodResourcesOptions`).
#[derive(Clone, Copy)]
pub(crate) struct PodSums {
    /// Count what the kubelet allocated or actuated when more than the spec (in-place
    /// resize): quota does, LimitRanger does not.
    pub use_status: bool,
    /// Add `spec.overhead`: quota does, LimitRanger does not.
    pub overhead: bool,
}

/// `resourcehelper.PodRequests` with pod-level resources on (beta, default on).
pub(crate) fn pod_requests(pod: &Value, sums: PodSums) -> ResourceList {
    let spec = aggregate(pod, false, spec_requests);
    let mut requests = if sums.use_status {
        let allocated = aggregate(pod, true, allocated_requests);
        let actuated = aggregate(pod, true, actuated_requests);
        if is_resize_infeasible(pod) {
            max_of(actuated, &[&allocated])
        } else {
            max_of(spec, &[&actuated, &allocated])
        }
    } else {
        spec
    };
    for (name, q) in pod_level(pod, "requests") {
        requests.insert(name, q);
    }
    if sums.overhead {
        add_into(&mut requests, &resource_list(pod.pointer("/spec/overhead")));
    }
    requests
}

/// `resourcehelper.PodLimits`: overhead is added only to limits that are set and non-zero.
pub(crate) fn pod_limits(pod: &Value, sums: PodSums) -> ResourceList {
    let spec = aggregate(pod, false, spec_limits);
    let mut limits = if sums.use_status {
        let actuated = aggregate(pod, true, actuated_limits);
        if is_resize_infeasible(pod) { actuated } else { max_of(spec, &[&actuated]) }
    } else {
        spec
    };
    if pod_level_resources_set(pod) {
        for (name, q) in pod_level(pod, "limits") {
            limits.insert(name, q);
        }
    }
    if sums.overhead {
        for (name, q) in resource_list(pod.pointer("/spec/overhead")) {
            if let Some(limit) = limits.get_mut(&name).filter(|l| !l.is_zero()) {
                *limit += &q;
            }
        }
    }
    limits
}

/// `podComputeUsageHelper`: quota names for a set of requests and limits (one container's,
/// or a whole pod's).
fn pod_compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut usage = ResourceList::new();
    usage.insert("pods".to_string(), Quantity::new(1, Format::DecimalSI));
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(resource) {
            usage.insert(resource.to_string(), q.clone());
            usage.insert(format!("requests.{resource}"), q.clone());
        }
        if let Some(q) = limits.get(resource) {
            usage.insert(format!("limits.{resource}"), q.clone());
        }
    }
    for (name, q) in requests {
        if is_hugepages(name) {
            usage.insert(name.clone(), q.clone());
            usage.insert(format!("requests.{name}"), q.clone());
        }
        if is_dra_extended_resource_name(name) {
            usage.insert(format!("requests.{name}"), q.clone());
        }
    }
    usage
}

/// `IsTerminating`: the pod has an active deadline.
fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0)
}

/// `qos.GetPodQOS(pod) == BestEffort`: no positive cpu or memory request or limit anywhere
/// (pod-level resources, when set, decide alone).
fn is_best_effort(pod: &Value) -> bool {
    if let Some(class) = str_at(pod, "/status/qosClass").filter(|c| !c.is_empty()) {
        return class == "BestEffort";
    }
    let positive = |list: ResourceList| {
        list.iter()
            .any(|(name, q)| matches!(name.as_str(), "cpu" | "memory") && *q > Quantity::zero())
    };
    if pod_level_resources_set(pod) {
        return !positive(pod_level(pod, "requests")) && !positive(pod_level(pod, "limits"));
    }
    !containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .any(|c| positive(container_list(c, "requests")) || positive(container_list(c, "limits")))
}

fn uses_cross_namespace_pod_affinity(pod: &Value) -> bool {
    let cross = |term: &Value| {
        term.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
            || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(affinity) = pod.pointer(&format!("/spec/affinity/{kind}")) else { return false };
        let terms =
            |field: &str| affinity.get(field).and_then(Value::as_array).into_iter().flatten();
        terms("requiredDuringSchedulingIgnoredDuringExecution").any(cross)
            || terms("preferredDuringSchedulingIgnoredDuringExecution")
                .any(|w| w.get("podAffinityTerm").is_some_and(cross))
    })
}

fn timestamp_at(value: &Value, pointer: &str) -> Option<Timestamp> {
    str_at(value, pointer)?.parse().ok()
}

/// `QuotaV1Pod`: a pod is charged unless it has finished, or was being deleted and its grace
/// period has run out (a lost node must not hold quota).
fn pod_is_charged(pod: &Value, now: Timestamp) -> bool {
    if matches!(str_at(pod, "/status/phase"), Some("Failed" | "Succeeded")) {
        return false;
    }
    let deleted = timestamp_at(pod, "/metadata/deletionTimestamp");
    let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    if let (Some(deleted), Some(grace)) = (deleted, grace) {
        let deadline = deleted.as_second().saturating_add(grace);
        let past = now.as_second() > deadline
            || (now.as_second() == deadline
                && now.subsec_nanosecond() > deleted.subsec_nanosecond());
        if past {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// Scopes

/// One scope selector requirement (`ScopedResourceSelectorRequirement`); a plain entry of
/// `spec.scopes` is the same with operator `Exists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub scope_name: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl ScopeRequirement {
    fn from_json(value: &Value) -> Self {
        let text = |f: &str| value.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        let values = value.get("values").and_then(Value::as_array).into_iter().flatten();
        ScopeRequirement {
            scope_name: text("scopeName"),
            operator: text("operator"),
            values: values.filter_map(Value::as_str).map(str::to_string).collect(),
        }
    }

    /// The requirement as a label selector over `{<scope name>: <value>}`
    /// (`ScopedResourceSelectorRequirementsAsSelector`); `None` when it is not a valid one.
    fn selects(&self, value: Option<&str>) -> Option<bool> {
        let values = &self.values;
        match self.operator.as_str() {
            "In" if !values.is_empty() => {
                Some(value.is_some_and(|v| values.iter().any(|x| x == v)))
            }
            "NotIn" if !values.is_empty() => {
                Some(value.is_none_or(|v| !values.iter().any(|x| x == v)))
            }
            "Exists" if values.is_empty() => Some(value.is_some()),
            "DoesNotExist" if values.is_empty() => Some(value.is_none()),
            _ => None,
        }
    }
}

impl std::fmt::Display for ScopeRequirement {
    /// Go's `%v` of the struct (`{PriorityClass In [high low]}`), which kube prints in
    /// "insufficient quota to match these scopes".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{} {} [{}]}}", self.scope_name, self.operator, self.values.join(" "))
    }
}

/// `getScopeSelectorsFromQuota`: `spec.scopes` as `Exists`, then `spec.scopeSelector`.
fn scope_selectors(quota: &Value) -> Vec<ScopeRequirement> {
    let scopes = quota.pointer("/spec/scopes").and_then(Value::as_array).into_iter().flatten();
    let plain = scopes.filter_map(Value::as_str).map(|s| ScopeRequirement {
        scope_name: s.to_string(),
        operator: "Exists".to_string(),
        values: Vec::new(),
    });
    let expressions =
        quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array);
    plain.chain(expressions.into_iter().flatten().map(ScopeRequirement::from_json)).collect()
}

fn volume_attributes_class_names(pvc: &Value) -> BTreeSet<&str> {
    [
        "/spec/volumeAttributesClassName",
        "/status/currentVolumeAttributesClassName",
        "/status/modifyVolumeStatus/targetVolumeAttributesClassName",
    ]
    .iter()
    .filter_map(|p| str_at(pvc, p))
    .filter(|n| !n.is_empty())
    .collect()
}

// ---------------------------------------------------------------------------------------
// Evaluators

#[derive(Debug, Clone, PartialEq, Eq)]
enum Evaluator {
    Pods,
    Services,
    PersistentVolumeClaims,
    /// Any other resource: its `count/…` name, and a legacy alias for a few core ones.
    Count {
        group: String,
        plural: String,
        names: Vec<String>,
    },
}

fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

fn evaluator(group: &str, plural: &str) -> Evaluator {
    match (group, plural) {
        ("", "pods") => Evaluator::Pods,
        ("", "services") => Evaluator::Services,
        ("", "persistentvolumeclaims") => Evaluator::PersistentVolumeClaims,
        _ => {
            let mut names = vec![count_name(group, plural)];
            if group.is_empty()
                && let Some((_, alias)) = LEGACY_COUNT_ALIASES.iter().find(|(p, _)| *p == plural)
            {
                names.push((*alias).to_string());
            }
            Evaluator::Count { group: group.to_string(), plural: plural.to_string(), names }
        }
    }
}

impl Evaluator {
    fn group_resource(&self) -> (String, String) {
        match self {
            Evaluator::Pods => (String::new(), "pods".to_string()),
            Evaluator::Services => (String::new(), "services".to_string()),
            Evaluator::PersistentVolumeClaims => {
                (String::new(), "persistentvolumeclaims".to_string())
            }
            Evaluator::Count { group, plural, .. } => (group.clone(), plural.clone()),
        }
    }

    /// `MatchingResources`: which of `names` this evaluator counts.
    fn matching_resources(&self, names: &[String]) -> Vec<String> {
        let counts = |n: &str| match self {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&n)
                    || is_quota_hugepages(n)
                    || is_extended_resource_for_quota(n)
            }
            Evaluator::Services => SERVICE_RESOURCES.contains(&n),
            Evaluator::PersistentVolumeClaims => {
                matches!(
                    n,
                    "count/persistentvolumeclaims" | "persistentvolumeclaims" | "requests.storage"
                ) || ["persistentvolumeclaims", "requests.storage"]
                    .iter()
                    .any(|r| n.ends_with(&format!("{STORAGE_CLASS_SUFFIX}{r}")))
            }
            Evaluator::Count { names, .. } => names.iter().any(|x| x == n),
        };
        names.iter().filter(|n| counts(n.as_str())).cloned().collect()
    }

    /// Whether `object` satisfies one scope requirement; `None` for a requirement that is not
    /// a valid selector. Only pods (and claims, for `VolumeAttributesClass`) have scopes.
    fn matches_scope(&self, req: &ScopeRequirement, object: &Value) -> Option<bool> {
        match self {
            Evaluator::Pods => match req.scope_name.as_str() {
                "Terminating" => Some(is_terminating(object)),
                "NotTerminating" => Some(!is_terminating(object)),
                "BestEffort" => Some(is_best_effort(object)),
                "NotBestEffort" => Some(!is_best_effort(object)),
                "PriorityClass" => {
                    let class = str_at(object, "/spec/priorityClassName").filter(|c| !c.is_empty());
                    if req.operator == "Exists" {
                        Some(class.is_some())
                    } else {
                        req.selects(class)
                    }
                }
                "CrossNamespacePodAffinity" => Some(uses_cross_namespace_pod_affinity(object)),
                _ => Some(false),
            },
            Evaluator::PersistentVolumeClaims if req.scope_name == "VolumeAttributesClass" => {
                let names = volume_attributes_class_names(object);
                if req.operator == "Exists" {
                    return Some(!names.is_empty());
                }
                if names.is_empty() {
                    return req.selects(None);
                }
                let mut any = false;
                for name in names {
                    any |= req.selects(Some(name))?;
                }
                Some(any)
            }
            _ => Some(false),
        }
    }

    fn matches_scopes(&self, selectors: &[ScopeRequirement], object: &Value) -> bool {
        selectors.iter().all(|s| self.matches_scope(s, object) == Some(true))
    }

    /// `MatchingScopes`: the selectors `object` satisfies.
    fn matching_scopes(
        &self,
        object: &Value,
        selectors: &[ScopeRequirement],
    ) -> Vec<ScopeRequirement> {
        selectors.iter().filter(|s| self.matches_scope(s, object) == Some(true)).cloned().collect()
    }

    /// `Matches`: the quota's `status.hard` names something this evaluator counts, and its
    /// scopes select the object.
    fn matches(&self, quota: &Value, object: &Value) -> bool {
        let hard: Vec<String> = status_hard(quota).into_keys().collect();
        !self.matching_resources(&hard).is_empty()
            && self.matches_scopes(&scope_selectors(quota), object)
    }

    /// `Constraints`: pods must name every cpu/memory resource a quota tracks.
    fn constraints(&self, required: &[String], object: &Value) -> Result<(), String> {
        if *self != Evaluator::Pods || pod_level_resources_set(object) {
            return Ok(());
        }
        let required: Vec<&String> =
            required.iter().filter(|r| POD_VALIDATION_SET.contains(&r.as_str())).collect();
        let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for c in containers(object, "containers").chain(containers(object, "initContainers")) {
            let usage =
                pod_compute_usage(&container_list(c, "requests"), &container_list(c, "limits"));
            for r in &required {
                if !usage.contains_key(*r) {
                    missing
                        .entry(r.as_str())
                        .or_default()
                        .insert(str_at(c, "/name").unwrap_or_default());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| {
                format!("{r} for: {}", names.iter().copied().collect::<Vec<_>>().join(","))
            })
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }

    fn usage(&self, object: &Value, now: Timestamp) -> ResourceList {
        let one = || Quantity::new(1, Format::DecimalSI);
        match self {
            Evaluator::Pods => {
                // count/pods tracks every stored pod; "pods" and compute only live ones.
                let mut usage = ResourceList::from([("count/pods".to_string(), one())]);
                if pod_is_charged(object, now) {
                    let sums = PodSums { use_status: true, overhead: true };
                    let compute =
                        pod_compute_usage(&pod_requests(object, sums), &pod_limits(object, sums));
                    usage = add_lists(&usage, &compute);
                }
                usage
            }
            Evaluator::Services => service_usage(object),
            Evaluator::PersistentVolumeClaims => pvc_usage(object),
            Evaluator::Count { names, .. } => names.iter().map(|n| (n.clone(), one())).collect(),
        }
    }
}

fn service_usage(service: &Value) -> ResourceList {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    let count = |n: usize| Quantity::new(i64::try_from(n).unwrap_or(i64::MAX), Format::DecimalSI);
    let all_ports = count(ports.map_or(0, Vec::len));
    let mut usage = ResourceList::from([
        ("count/services".to_string(), count(1)),
        ("services".to_string(), count(1)),
        ("services.loadbalancers".to_string(), Quantity::zero()),
        ("services.nodeports".to_string(), Quantity::zero()),
    ]);
    match str_at(service, "/spec/type") {
        Some("NodePort") => {
            usage.insert("services.nodeports".to_string(), all_ports);
        }
        Some("LoadBalancer") => {
            // With node ports turned off only the ports that still ask for one count.
            let no_node_ports =
                service.pointer("/spec/allocateLoadBalancerNodePorts") == Some(&Value::Bool(false));
            let node_ports = if no_node_ports {
                let explicit = ports
                    .into_iter()
                    .flatten()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n != 0));
                count(explicit.count())
            } else {
                all_ports
            };
            usage.insert("services.nodeports".to_string(), node_ports);
            usage.insert("services.loadbalancers".to_string(), count(1));
        }
        _ => {}
    }
    usage
}

/// `GetPersistentVolumeClaimClass`: the beta annotation wins over `spec.storageClassName`.
fn pvc_storage_class(pvc: &Value) -> Option<&str> {
    str_at(pvc, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| str_at(pvc, "/spec/storageClassName"))
        .filter(|c| !c.is_empty())
}

fn pvc_usage(pvc: &Value) -> ResourceList {
    let one = || Quantity::new(1, Format::DecimalSI);
    let mut usage = ResourceList::from([
        ("persistentvolumeclaims".to_string(), one()),
        ("count/persistentvolumeclaims".to_string(), one()),
    ]);
    let class = pvc_storage_class(pvc);
    if let Some(class) = class {
        usage.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), one());
    }
    // Storage is charged in whole bytes, and for the larger of the request and what an
    // expansion already allocated.
    let requested = resource_list(pvc.pointer("/spec/resources/requests"))
        .remove("storage")
        .map(|r| r.round_up_to_units());
    let allocated = resource_list(pvc.pointer("/status/allocatedResources")).remove("storage");
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) if a > r => Some(a.round_up_to_units()),
        (requested, _) => requested,
    };
    if let Some(storage) = storage {
        if let Some(class) = class {
            usage.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage.clone());
        }
        usage.insert("requests.storage".to_string(), storage);
    }
    usage
}

fn status_hard(quota: &Value) -> ResourceList {
    resource_list(quota.pointer("/status/hard"))
}

fn quota_name(quota: &Value) -> &str {
    str_at(quota, "/metadata/name").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Public API

/// What `obj` (of resource `group`/`plural`) uses, by quota resource name, as the quota
/// evaluators count it now. See [`usage_at`].
pub fn usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    usage_at(group, plural, obj, Timestamp::now())
}

/// [`usage`] at `now`, which decides whether a pod being deleted is past its grace period.
///
/// Pods: `count/pods` always; unless finished or deleted past grace also `pods`, requests
/// (`cpu`, `memory`, `ephemeral-storage`, their `requests.` names, hugepages and
/// `requests.<extended>`) and `limits.` — summed with the sidecar rule for init containers,
/// pod-level resources overriding, `spec.overhead` added to requests and to set limits, and
/// in-place resize's allocated or actuated values when larger. Services: `services`,
/// `count/services`, `services.nodeports` (one per port) and `services.loadbalancers`.
/// Claims: `persistentvolumeclaims`, `requests.storage` and their storage-class forms. Any
/// other resource: `count/<plural>.<group>` (and the legacy `configmaps`, `secrets`,
/// `replicationcontrollers`, `resourcequotas`).
pub fn usage_at(group: &str, plural: &str, obj: &Value, now: Timestamp) -> ResourceList {
    evaluator(group, plural).usage(obj, now)
}

/// Whether the quota's `spec.scopes` and `spec.scopeSelector` select `obj`. A quota without
/// scopes selects everything; scopes only ever select pods (and claims, for
/// `VolumeAttributesClass`), so a scoped quota matches no other object, as in kube.
pub fn matches(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    evaluator(group, plural).matches_scopes(&scope_selectors(quota), obj)
}

/// Whether the quota admission plugin evaluates this request at all (`Evaluator.Handles`):
/// creates of the object itself; updates of services and claims; pod updates only when the
/// `Terminating` scope changes, and `pods/resize`; every claim `status` update. Events are
/// never charged. `old` is `None` for a create.
pub fn handles(
    group: &str,
    plural: &str,
    subresource: &str,
    obj: &Value,
    old: Option<&Value>,
) -> bool {
    if group.is_empty() && plural == "events" {
        return false;
    }
    let update = old.is_some();
    match evaluator(group, plural) {
        Evaluator::Pods => match subresource {
            "" => old.is_none_or(|old| is_terminating(old) != is_terminating(obj)),
            "resize" => update,
            _ => false,
        },
        Evaluator::Services => true,
        // kube's `RequiresQuotaReplenish` compares two freshly made pointers to the allocated
        // storage, which always differ: every status update of a claim is evaluated.
        Evaluator::PersistentVolumeClaims => {
            matches!((subresource, old), ("", _) | ("status", Some(_)))
        }
        Evaluator::Count { .. } => subresource.is_empty() && !update,
    }
}

/// A resource the admission configuration says may only be consumed under a covering quota
/// (`LimitedResource` of the `ResourceQuotaConfiguration`).
#[derive(Debug, Clone, Default)]
pub struct LimitedResource {
    pub api_group: String,
    pub resource: String,
    /// Usage names containing any of these need a quota that tracks them.
    pub match_contains: Vec<String>,
    /// Objects matching any of these scopes need a quota with that scope.
    pub match_scopes: Vec<ScopeRequirement>,
}

/// Why quota admission refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 403: `<plural> "<name>" is forbidden: <message>`.
    #[error("{0}")]
    Forbidden(String),
    /// An error kube returns without a status, which the api server answers with 500 and
    /// reason `Unknown`, the message as is.
    #[error("{0}")]
    Unknown(String),
}

/// Admission against one quota: the new `status.used` (JSON) when the request changes it,
/// `None` when the quota does not track what changed, or kube's refusal (the text after
/// `<plural> "<name>" is forbidden: `). See [`charge_all`].
pub fn charge(
    quota: &Value,
    group: &str,
    plural: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Option<Value>, String> {
    let results = charge_all(std::slice::from_ref(quota), &[], group, plural, obj, old)
        .map_err(|refusal| refusal.to_string())?;
    Ok(results.into_iter().next().flatten())
}

/// Admission against all the namespace's quotas at once, as kube's `CheckRequest`: one entry
/// per quota, the new `status.used` for those the request changes.
///
/// A quota counts when its `status.hard` (the controller's copy: a quota it has not synced
/// yet charges nothing) names a resource of this kind and its scopes select the object. For
/// each such quota, in order: a pod must name every cpu/memory resource tracked ("failed
/// quota"), every tracked resource must have a `status.used` ("status unknown"). Then the
/// charge is the object's usage — on update, the increase over `old` (when `old` has a
/// `resourceVersion` and matched the quota too) — and any quota it would take past
/// `status.hard` refuses it ("exceeded quota"). `limited` is the plugin's configuration of
/// resources that need a covering quota. Call it for the requests [`handles`] accepts.
pub fn charge_all(
    quotas: &[Value],
    limited: &[LimitedResource],
    group: &str,
    plural: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<Option<Value>>, Refusal> {
    let unchanged = vec![None; quotas.len()];
    if quotas.is_empty() && limited.is_empty() {
        return Ok(unchanged);
    }
    let ev = evaluator(group, plural);
    let now = Timestamp::now();
    let limited_scopes: Vec<ScopeRequirement> =
        limited.iter().flat_map(|l| ev.matching_scopes(obj, &l.match_scopes)).collect();
    let limited_here: Vec<&LimitedResource> =
        limited.iter().filter(|l| l.api_group == group && l.resource == plural).collect();
    let mut limited_names = BTreeSet::new();
    if !limited_here.is_empty() {
        for (name, q) in ev.usage(obj, now) {
            let contained = limited_here
                .iter()
                .any(|l| l.match_contains.iter().any(|m| name.contains(m.as_str())));
            if q > Quantity::zero() && contained {
                limited_names.insert(name);
            }
        }
    }

    let mut interesting = Vec::new();
    let mut restricted_all = BTreeSet::new();
    let mut restricted_scopes = Vec::new();
    for (index, quota) in quotas.iter().enumerate() {
        let selectors = scope_selectors(quota);
        restricted_scopes.extend(ev.matching_scopes(obj, &selectors));
        let hard = status_hard(quota);
        let restricted = ev.matching_resources(&hard.keys().cloned().collect::<Vec<_>>());
        if restricted.is_empty() || !ev.matches_scopes(&selectors, obj) {
            continue;
        }
        let name = quota_name(quota);
        ev.constraints(&restricted, obj)
            .map_err(|e| Refusal::Forbidden(format!("failed quota: {name}: {e}")))?;
        let used = resource_list(quota.pointer("/status/used"));
        if restricted.iter().any(|r| hard.contains_key(r) && !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(Refusal::Forbidden(format!(
                "status unknown for quota: {name}, resources: {}",
                names.join(",")
            )));
        }
        interesting.push(index);
        restricted_all.extend(restricted);
    }

    let input = ev.usage(obj, now);
    let negative: Vec<&str> =
        input.iter().filter(|(_, q)| q.is_negative()).map(|(n, _)| n.as_str()).collect();
    if !negative.is_empty() {
        return Err(Refusal::Forbidden(format!(
            "quota usage is negative for resource(s): {}",
            negative.join(",")
        )));
    }

    let mut deltas: BTreeMap<usize, ResourceList> =
        interesting.iter().map(|i| (*i, input.clone())).collect();
    let mut delta_without_quota = if old.is_none() { input.clone() } else { ResourceList::new() };
    if let Some(old) = old {
        let stored = str_at(old, "/metadata/resourceVersion").is_some_and(|rv| !rv.is_empty());
        if stored {
            let delta = subtract_non_negative(&input, &ev.usage(old, now));
            for index in &interesting {
                if ev.matches(&quotas[*index], old) {
                    deltas.insert(*index, delta.clone());
                }
            }
            delta_without_quota = delta;
        } else {
            // An update that creates: charge the whole object.
            delta_without_quota = input.clone();
        }
    }
    let deltas: BTreeMap<usize, ResourceList> = deltas
        .into_iter()
        .map(|(i, d)| (i, remove_zeros(d)))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    if interesting.is_empty() {
        if remove_zeros(delta_without_quota).is_empty() {
            return Ok(unchanged);
        }
    } else if deltas.is_empty() {
        return Ok(unchanged);
    }

    let uncovered: Vec<&String> = limited_names.difference(&restricted_all).collect();
    if !uncovered.is_empty() {
        let names: Vec<&str> = uncovered.iter().map(|n| n.as_str()).collect();
        return Err(Refusal::Forbidden(format!(
            "insufficient quota to consume: {}",
            names.join(",")
        )));
    }
    let uncovered_scopes: Vec<String> = limited_scopes
        .iter()
        .filter(|l| !restricted_scopes.iter().any(|r| r.scope_name == l.scope_name))
        .map(ToString::to_string)
        .collect();
    if !uncovered_scopes.is_empty() {
        return Err(Refusal::Unknown(format!(
            "insufficient quota to match these scopes: [{}]",
            uncovered_scopes.join(" ")
        )));
    }

    let mut results = unchanged;
    for index in interesting {
        let Some(delta) = deltas.get(&index) else { continue };
        let quota = &quotas[index];
        let hard = status_hard(quota);
        let used = resource_list(quota.pointer("/status/used"));
        let requested = mask(delta, hard.keys());
        let new_used = add_lists(&used, &requested);
        let checked = mask(&new_used, requested.keys());
        let exceeded: Vec<&String> = hard
            .iter()
            .filter(|(name, limit)| checked.get(*name).is_some_and(|q| q > *limit))
            .map(|(name, _)| name)
            .collect();
        if !exceeded.is_empty() {
            return Err(Refusal::Forbidden(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                quota_name(quota),
                pretty(&mask(&requested, exceeded.iter().copied())),
                pretty(&mask(&used, exceeded.iter().copied())),
                pretty(&mask(&hard, exceeded.iter().copied())),
            )));
        }
        if !equal_lists(&used, &new_used) {
            results[index] = Some(list_to_json(&new_used));
        }
    }
    Ok(results)
}

/// The quota controller's new `status`, counted now. See [`recompute_at`].
pub fn recompute<'a>(
    quota: &Value,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Value)>,
) -> Value {
    recompute_at(quota, objects, Timestamp::now())
}

/// The quota controller's `status` for `quota`: `hard` is `spec.hard`, `used` the sum over
/// `objects` (the namespace's objects of every resource in [`tracked_resources`], as
/// `(group, plural, object)`) that the quota's scopes select, zero for what nothing uses.
/// A `used` entry no evaluator can count is carried over from the old status, as kube does;
/// entries no longer in `spec.hard` are dropped.
pub fn recompute_at<'a>(
    quota: &Value,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Value)>,
    now: Timestamp,
) -> Value {
    let objects: Vec<(&str, &str, &Value)> = objects.into_iter().collect();
    let hard = resource_list(quota.pointer("/spec/hard"));
    let hard_names: Vec<String> = hard.keys().cloned().collect();
    let selectors = scope_selectors(quota);
    let mut observed = ResourceList::new();
    for (group, plural) in tracked_resources(quota) {
        let ev = evaluator(&group, &plural);
        let names = ev.matching_resources(&hard_names);
        let mut sum: ResourceList = names.iter().map(|n| (n.clone(), Quantity::zero())).collect();
        for (_, _, object) in objects.iter().filter(|(g, p, _)| *g == group && *p == plural) {
            if ev.matches_scopes(&selectors, object) {
                sum = add_lists(&sum, &ev.usage(object, now));
            }
        }
        observed = add_lists(&observed, &mask(&sum, &names));
    }
    let mut used = resource_list(quota.pointer("/status/used"));
    used.extend(observed);
    let used = mask(&used, &hard_names);
    let mut status = Map::new();
    status.insert("hard".to_string(), list_to_json(&hard));
    status.insert("used".to_string(), list_to_json(&used));
    Value::Object(status)
}

/// The `(group, plural)` resources whose objects `quota`'s `spec.hard` needs counted.
pub fn tracked_resources(quota: &Value) -> Vec<(String, String)> {
    let hard: Vec<String> = resource_list(quota.pointer("/spec/hard")).into_keys().collect();
    let mut tracked = BTreeSet::new();
    for name in &hard {
        let one = std::slice::from_ref(name);
        let special = [Evaluator::Pods, Evaluator::Services, Evaluator::PersistentVolumeClaims];
        if let Some(ev) = special.iter().find(|ev| !ev.matching_resources(one).is_empty()) {
            tracked.insert(ev.group_resource());
        } else if let Some((plural, _)) =
            LEGACY_COUNT_ALIASES.iter().find(|(_, a)| *a == name.as_str())
        {
            tracked.insert((String::new(), (*plural).to_string()));
        } else if let Some(resource) = name.strip_prefix("count/") {
            let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
            tracked.insert((group.to_string(), plural.to_string()));
        }
    }
    tracked.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Validation

const STANDARD_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// `IsResourceQuotaScopeValidForResource`.
fn scope_valid_for_resource(scope: &str, resource: &str) -> bool {
    let pod_count = resource == "pods";
    let pod_compute = POD_VALIDATION_SET.contains(&resource);
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => pod_count || pod_compute,
        "BestEffort" => pod_count,
        "VolumeAttributesClass" => {
            matches!(resource, "persistentvolumeclaims" | "requests.storage")
        }
        _ => true,
    }
}

fn scopes_json(quota: &Value) -> String {
    match quota.pointer("/spec/scopes") {
        Some(v @ Value::Array(_)) => v.to_string(),
        _ => "null".to_string(),
    }
}

/// Go's `json.Marshal` of a `ScopeSelector` (fields in declaration order).
fn scope_selector_json(selector: &[ScopeRequirement]) -> String {
    let reqs: Vec<String> = selector
        .iter()
        .map(|r| {
            let values = if r.values.is_empty() {
                String::new()
            } else {
                let v: Vec<String> = r.values.iter().map(|v| json_str(v)).collect();
                format!(",\"values\":[{}]", v.join(","))
            };
            format!(
                "{{\"scopeName\":{},\"operator\":{}{values}}}",
                json_str(&r.scope_name),
                json_str(&r.operator)
            )
        })
        .collect();
    format!("{{\"matchExpressions\":[{}]}}", reqs.join(","))
}

fn validate_quota_list(list: Option<&Value>, path: &str, errors: &mut Vec<(String, String)>) {
    for (name, q) in resource_list(list) {
        let at = format!("{path}[{name}]");
        // ValidateResourceQuotaResourceName
        errors.extend(validate_resource_name(&name, &at));
        if !name.contains('/') && !is_standard_quota_resource(&name) {
            errors.push(invalid(&at, &json_str(&name), "must be a standard resource for quota"));
        }
        // ValidateResourceQuantityValue
        if q.is_negative() {
            errors.push(invalid(
                &at,
                &json_str(&q.to_string()),
                "must be greater than or equal to 0",
            ));
        }
        let integer =
            INTEGER_RESOURCES.contains(&name.as_str()) || is_extended_resource_name(&name);
        if integer && q.milli_value() % 1000 != 0 {
            errors.push(invalid(&at, &json_str(&q.to_string()), "must be an integer"));
        }
    }
}

/// `ValidateResourceQuota`'s checks of spec and status (object metadata aside), as
/// `(field path, message)` with kube's texts: resource names known to quota, non-negative
/// quantities, whole numbers for counts and extended resources, scopes that exist, fit the
/// resources named and do not conflict, and well-formed scope selectors.
pub fn validate_quota(q: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    validate_quota_list(q.pointer("/spec/hard"), "spec.hard", &mut errors);
    let hard: BTreeSet<String> = resource_list(q.pointer("/spec/hard")).into_keys().collect();
    let misfits = |scope: &str| {
        hard.iter()
            .filter(|k| is_standard_quota_resource(k) && !scope_valid_for_resource(scope, k))
            .count()
    };
    let conflicting = |names: &BTreeSet<String>| {
        [("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")]
            .iter()
            .filter(|(a, b)| names.contains(*a) && names.contains(*b))
            .count()
    };

    let scopes: Vec<String> = q
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect();
    if !scopes.is_empty() {
        let value = scopes_json(q);
        for scope in &scopes {
            if !STANDARD_SCOPES.contains(&scope.as_str()) {
                errors.push(invalid("spec.scopes", &value, "unsupported scope"));
            }
            for _ in 0..misfits(scope) {
                errors.push(invalid(
                    "spec.scopes",
                    &value,
                    "unsupported scope applied to resource",
                ));
            }
        }
        let set: BTreeSet<String> = scopes.iter().cloned().collect();
        for _ in 0..conflicting(&set) {
            errors.push(invalid("spec.scopes", &value, "conflicting scopes"));
        }
    }

    if let Some(selector) = q.pointer("/spec/scopeSelector").filter(|s| !s.is_null()) {
        let path = "spec.scopeSelector.matchExpressions";
        let reqs: Vec<ScopeRequirement> = selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(ScopeRequirement::from_json)
            .collect();
        let selector_json = scope_selector_json(&reqs);
        let mut names = BTreeSet::new();
        for req in &reqs {
            if !STANDARD_SCOPES.contains(&req.scope_name.as_str()) {
                errors.push(invalid(
                    format!("{path}.scopeName"),
                    &json_str(&req.scope_name),
                    "unsupported scope",
                ));
            }
            for _ in 0..misfits(&req.scope_name) {
                errors.push(invalid(path, &selector_json, "unsupported scope applied to resource"));
            }
            let boolean = [
                "BestEffort",
                "NotBestEffort",
                "Terminating",
                "NotTerminating",
                "CrossNamespacePodAffinity",
            ];
            if boolean.contains(&req.scope_name.as_str()) && req.operator != "Exists" {
                errors.push(invalid(
                    format!("{path}.operator"),
                    &json_str(&req.operator),
                    "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, \
                     ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, \
                     ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                ));
            }
            match req.operator.as_str() {
                "In" | "NotIn" if req.values.is_empty() => errors.push(required(
                    format!("{path}.values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                )),
                "Exists" | "DoesNotExist" if !req.values.is_empty() => {
                    let values: Vec<String> = req.values.iter().map(|v| json_str(v)).collect();
                    errors.push(invalid(
                        format!("{path}.values"),
                        &format!("[{}]", values.join(",")),
                        "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                    ));
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errors.push(invalid(format!("{path}.operator"), &json_str(other), "not a valid selector operator")),
            }
            names.insert(req.scope_name.clone());
        }
        for _ in 0..conflicting(&names) {
            // kube reports the plain scopes' value here.
            errors.push(invalid(path, &scopes_json(q), "conflicting scopes"));
        }
    }

    validate_quota_list(q.pointer("/status/hard"), "status.hard", &mut errors);
    validate_quota_list(q.pointer("/status/used"), "status.used", &mut errors);
    errors
}

/// [`validate_quota`] of `new`, and `spec.scopes` may not change (`ValidateResourceQuotaUpdate`;
/// its status is not validated: an update keeps the stored status).
pub fn validate_quota_update(new: &Value, old: &Value) -> Vec<(String, String)> {
    let mut errors: Vec<_> =
        validate_quota(new).into_iter().filter(|(path, _)| !path.starts_with("status.")).collect();
    let scopes = |q: &Value| -> BTreeSet<String> {
        q.pointer("/spec/scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    if scopes(new) != scopes(old) {
        errors.push(invalid("spec.scopes", &scopes_json(new), "field is immutable"));
    }
    errors
}
