//! LimitRange, as kube-apiserver's `LimitRanger` admission plugin applies it
//! (`plugin/pkg/admission/limitranger/admission.go`): default requests and limits for a new
//! pod's containers with the `kubernetes.io/limit-ranger` annotation, the min / max /
//! maxLimitRequestRatio bounds for containers, pods and claims with kube's messages, and the
//! LimitRange object's own defaulting (`SetDefaults_LimitRangeItem`) and validation
//! (`ValidateLimitRange`).
//!
//! Comparisons use milli-units rounded up, as kube's `requestLimitEnforcedValues` does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use skiff_helpers::quantity::{Format, Quantity};

use crate::quota::{
    self, PodSums, ResourceList, forbidden, invalid, json_str, qualified_name_errors, required,
    resource_list,
};

#[cfg(test)]
mod tests;

/// The annotation that says which defaults LimitRanger filled in.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// `resource.MaxMilliValue`: above it kube compares whole units instead of milli-units.
const MAX_MILLI_VALUE: i128 = (i64::MAX / 1000) as i128;

fn items(limit_range: &Value) -> impl Iterator<Item = &Value> {
    limit_range.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The object at `key` of `map`, made if absent (or not an object).
fn object_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// A quantity as kube writes a copy of it out (`1.5` becomes `1500m`); anything else as is.
fn as_written(value: &Value) -> Value {
    quota::quantity_of(value).map_or_else(|| value.clone(), |q| Value::String(q.to_string()))
}

/// `SetDefaults_LimitRangeItem`, which kube applies to every LimitRange it stores: for a
/// `Container` item, `default` falls back to `max`, and `defaultRequest` to `default`, then
/// to `min`.
pub fn default_limit_range(limit_range: &mut Value) {
    let Some(limits) = limit_range.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else {
        return;
    };
    for item in limits.iter_mut().filter(|i| item_type(i) == "Container") {
        let field = |item: &Value, f: &str| {
            item.get(f).and_then(Value::as_object).cloned().unwrap_or_default()
        };
        let (max, min) = (field(item, "max"), field(item, "min"));
        let mut default = field(item, "default");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| as_written(v));
        }
        let mut default_request = field(item, "defaultRequest");
        for (k, v) in default.iter().chain(&min) {
            default_request.entry(k.clone()).or_insert_with(|| as_written(v));
        }
        if let Some(map) = item.as_object_mut() {
            // Empty maps are what kube makes here too, and it does not print them.
            for (field, values) in [("default", default), ("defaultRequest", default_request)] {
                if !values.is_empty() {
                    map.insert(field.to_string(), Value::Object(values));
                }
            }
        }
    }
}

/// Fills a new pod's container and init-container requests and limits that are not set from
/// each LimitRange's `Container` item (`defaultRequest`, `default`), the first LimitRange to
/// set a value winning, and records what was set in the `kubernetes.io/limit-ranger`
/// annotation (the last LimitRange that set anything writes it, as in kube). No validation.
pub fn default_pod(limit_ranges: &[Value], pod: &mut Value) {
    for limit_range in limit_ranges {
        let mut default_requests = Map::new();
        let mut default_limits = Map::new();
        for item in items(limit_range).filter(|i| item_type(i) == "Container") {
            for (field, defaults) in
                [("defaultRequest", &mut default_requests), ("default", &mut default_limits)]
            {
                if let Some(values) = item.get(field).and_then(Value::as_object) {
                    defaults.extend(values.iter().map(|(k, v)| (k.clone(), as_written(v))));
                }
            }
        }
        let mut notes = Vec::new();
        for (field, kind) in [("containers", "container"), ("initContainers", "init container")] {
            let list = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut);
            for container in list.into_iter().flatten() {
                let name =
                    container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let set_limits = fill(container, "limits", &default_limits);
                let set_requests = fill(container, "requests", &default_requests);
                if !set_requests.is_empty() {
                    notes.push(format!("{} request for {kind} {name}", set_requests.join(", ")));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {kind} {name}", set_limits.join(", ")));
                }
            }
        }
        if !notes.is_empty()
            && let Some(annotations) = pod
                .as_object_mut()
                .and_then(|pod| object_in(pod, "metadata"))
                .and_then(|metadata| object_in(metadata, "annotations"))
        {
            let text = format!("LimitRanger plugin set: {}", notes.join("; "));
            annotations.insert(ANNOTATION.to_string(), Value::String(text));
        }
    }
}

/// Sets the `defaults` missing from the container's `resources[field]`; the names set, sorted.
fn fill(container: &mut Value, field: &str, defaults: &Map<String, Value>) -> Vec<String> {
    let present = container.pointer(&format!("/resources/{field}")).and_then(Value::as_object);
    let missing: Vec<(String, Value)> = defaults
        .iter()
        .filter(|(k, _)| present.is_none_or(|p| !p.contains_key(*k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let Some(container) = container.as_object_mut().filter(|_| !missing.is_empty()) else {
        return Vec::new();
    };
    let Some(list) = object_in(container, "resources").and_then(|r| object_in(r, field)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = missing.iter().map(|(k, _)| k.clone()).collect();
    list.extend(missing);
    names.sort();
    names
}

/// `requestLimitEnforcedValues`: milli-units when all three fit, else whole units.
fn comparable(
    request: Option<&Quantity>,
    limit: Option<&Quantity>,
    enforced: &Quantity,
) -> (i128, i128, i128) {
    let value = |q: Option<&Quantity>| q.map_or(0, Quantity::value);
    let milli = |q: Option<&Quantity>| q.map_or(0, Quantity::milli_value);
    let e = Some(enforced);
    if [value(request), value(limit), value(e)].iter().all(|v| *v <= MAX_MILLI_VALUE) {
        (milli(request), milli(limit), milli(e))
    } else {
        (value(request), value(limit), value(e))
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (observed_req, observed_lim, bound) = comparable(req, lim, enforced);
    let Some(req) = req else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if observed_req < bound {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match lim {
        Some(lim) if observed_lim < bound => {
            Some(format!("minimum {name} usage per {kind} is {enforced}, but limit is {lim}"))
        }
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (observed_req, observed_lim, bound) = comparable(req, lim, enforced);
    let Some(lim) = lim else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if observed_lim > bound {
        return Some(format!("maximum {name} usage per {kind} is {enforced}, but limit is {lim}"));
    }
    match req {
        Some(req) if observed_req > bound => {
            Some(format!("maximum {name} usage per {kind} is {enforced}, but request is {req}"))
        }
        _ => None,
    }
}

/// `maxRequestConstraint`: claims have no limits, so their max bounds the request.
fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
) -> Option<String> {
    let req = requests.get(name);
    let (observed_req, _, bound) = comparable(req, None, enforced);
    let Some(req) = req else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (observed_req > bound)
        .then(|| format!("maximum {name} usage per {kind} is {enforced}, but request is {req}"))
}

#[allow(clippy::cast_precision_loss)] // kube compares the ratio as float64 too
fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (observed_req, observed_lim, _) = comparable(req, lim, enforced);
    let prefix = format!("{name} max limit to request ratio per {kind} is {enforced}");
    if req.is_none() || observed_req == 0 {
        return Some(format!("{prefix}, but no request is specified or request is 0"));
    }
    if lim.is_none() || observed_lim == 0 {
        return Some(format!("{prefix}, but no limit is specified or limit is 0"));
    }
    let ratio = observed_lim as f64 / observed_req as f64;
    let (observed, allowed) = if enforced.value() <= MAX_MILLI_VALUE {
        (ratio * 1000.0, enforced.milli_value() as f64)
    } else {
        (ratio, enforced.value() as f64)
    };
    (observed > allowed).then(|| format!("{prefix}, but provided ratio is {ratio:.6}"))
}

/// min, max and maxLimitRequestRatio of one `Container` or `Pod` item against one set of
/// requests and limits, in that order and by resource name.
fn check_bounds(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    for (name, q) in resource_list(item.get("min")) {
        errors.extend(min_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in resource_list(item.get("max")) {
        errors.extend(max_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in resource_list(item.get("maxLimitRequestRatio")) {
        errors.extend(ratio_constraint(kind, &name, &q, requests, limits));
    }
}

fn check_pod(limit_range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items(limit_range) {
        match item_type(item) {
            "Container" => {
                for field in ["containers", "initContainers"] {
                    let list = pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array);
                    for container in list.into_iter().flatten() {
                        let requests = resource_list(container.pointer("/resources/requests"));
                        let limits = resource_list(container.pointer("/resources/limits"));
                        check_bounds(item, "Container", &requests, &limits, &mut errors);
                    }
                }
            }
            "Pod" => {
                // The spec alone, without overhead: LimitRanger's simplified podRequests.
                let sums = PodSums { use_status: false, overhead: false };
                let requests = quota::pod_requests(pod, sums);
                let limits = quota::pod_limits(pod, sums);
                check_bounds(item, "Pod", &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

fn check_claim(limit_range: &Value, pvc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let requests = resource_list(pvc.pointer("/spec/resources/requests"));
    for item in items(limit_range).filter(|i| item_type(i) == "PersistentVolumeClaim") {
        for (name, q) in resource_list(item.get("min")) {
            errors.extend(min_constraint(
                "PersistentVolumeClaim",
                &name,
                &q,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (name, q) in resource_list(item.get("max")) {
            errors.extend(max_request_constraint("PersistentVolumeClaim", &name, &q, &requests));
        }
    }
    errors
}

/// Checks a pod (`kind` `Pod`: each container and init container against `Container` items,
/// the pod's summed requests and limits against `Pod` items) or a claim
/// (`PersistentVolumeClaim`: `requests.storage` against min and max). The LimitRanges are
/// tried in order and the first that refuses gives the errors, one message per failure
/// (wrap them with [`forbidden_message`]). Other kinds pass. kube runs this on pod creates
/// (and `pods/resize`) and on claim creates and updates.
pub fn validate(limit_ranges: &[Value], kind: &str, obj: &Value) -> Result<(), Vec<String>> {
    for limit_range in limit_ranges {
        let errors = match kind {
            "Pod" | "pods" => check_pod(limit_range, obj),
            "PersistentVolumeClaim" | "persistentvolumeclaims" => check_claim(limit_range, obj),
            _ => return Ok(()),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
    }
    Ok(())
}

/// The text after `<plural> "<name>" is forbidden: ` for LimitRanger's errors, as kube's
/// error aggregate prints them: one message alone, several (repeats dropped) as `[m1, m2]`.
pub fn forbidden_message(errors: &[String]) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<&str> =
        errors.iter().filter(|e| seen.insert(e.as_str())).map(String::as_str).collect();
    match unique.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Resource names a `Container` or `Pod` item may bound are container resources; the others
/// any resource name (`validateLimitRangeResourceName`).
fn validate_item_resource(item_kind: &str, name: &str, path: &str) -> Vec<(String, String)> {
    if matches!(item_kind, "Pod" | "Container") {
        quota::validate_container_resource_name(name, path)
    } else {
        quota::validate_resource_name(name, path)
    }
}

/// Not overcommittable: extended resources and hugepages (`IsOvercommitAllowed` is false).
fn overcommit_allowed(name: &str) -> bool {
    (!name.contains('/') || name.contains("kubernetes.io/")) && !name.starts_with("hugepages-")
}

/// `ValidateLimitRange` (object metadata aside), as `(field path, message)` with kube's
/// texts: known item types, at most one item per type, valid resource names, no defaults on
/// `Pod` items, min or max storage on `PersistentVolumeClaim` items, and for each resource
/// min ≤ defaultRequest ≤ default ≤ max, a ratio of at least 1 and at most max/min, and
/// `default == defaultRequest` where overcommit is not allowed. Run it after
/// [`default_limit_range`], as kube validates the defaulted object.
#[allow(clippy::cast_precision_loss)] // kube compares the ratio bound as float64 too
pub fn validate_limit_range(lr: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut types = BTreeSet::new();
    for (i, item) in items(lr).enumerate() {
        let at = |field: &str| format!("spec.limits[{i}].{field}");
        let kind = item_type(item);
        let type_errors = qualified_name_errors(kind);
        for e in &type_errors {
            errors.push(invalid(at("type"), &json_str(kind), e));
        }
        if type_errors.is_empty()
            && !kind.contains('/')
            && !matches!(kind, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            errors.push(invalid(
                at("type"),
                &json_str(kind),
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(kind) {
            errors.push((at("type"), format!("Duplicate value: {}", json_str(kind))));
        }

        let mut lists: BTreeMap<&str, ResourceList> = BTreeMap::new();
        let mut check_names = |field: &'static str, errors: &mut Vec<(String, String)>| {
            let list = resource_list(item.get(field));
            for name in list.keys() {
                errors.extend(validate_item_resource(
                    kind,
                    name,
                    &format!("spec.limits[{i}].{field}[{name}]"),
                ));
            }
            lists.insert(field, list);
        };
        check_names("max", &mut errors);
        check_names("min", &mut errors);
        if kind == "Pod" {
            for field in ["default", "defaultRequest"] {
                if !resource_list(item.get(field)).is_empty() {
                    errors.push(forbidden(at(field), "may not be specified when `type` is 'Pod'"));
                }
            }
        } else {
            check_names("default", &mut errors);
            check_names("defaultRequest", &mut errors);
        }
        if kind == "PersistentVolumeClaim" {
            let bounded = |f: &str| resource_list(item.get(f)).contains_key("storage");
            if !bounded("min") && !bounded("max") {
                errors.push(required(
                    at("limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
        }
        check_names("maxLimitRequestRatio", &mut errors);

        let get = |field: &str, name: &str| lists.get(field).and_then(|l| l.get(name));
        let names: BTreeSet<&String> = lists.values().flat_map(|l| l.keys()).collect();
        for name in names {
            let min = get("min", name);
            let max = get("max", name);
            let default = get("default", name);
            let default_request = get("defaultRequest", name);
            let ratio = get("maxLimitRequestRatio", name);
            let path = |field: &str| format!("spec.limits[{i}].{field}[{name}]");
            let value = |q: &Quantity| json_str(&q.to_string());
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                errors.push(invalid(
                    path("min"),
                    &value(min),
                    &format!("min value {min} is greater than max value {max}"),
                ));
            }
            if let (Some(dr), Some(min)) = (default_request, min)
                && min > dr
            {
                errors.push(invalid(
                    path("defaultRequest"),
                    &value(dr),
                    &format!("min value {min} is greater than default request value {dr}"),
                ));
            }
            if let (Some(dr), Some(max)) = (default_request, max)
                && dr > max
            {
                errors.push(invalid(
                    path("defaultRequest"),
                    &value(dr),
                    &format!("default request value {dr} is greater than max value {max}"),
                ));
            }
            if let (Some(dr), Some(d)) = (default_request, default)
                && dr > d
            {
                errors.push(invalid(
                    path("defaultRequest"),
                    &value(dr),
                    &format!("default request value {dr} is greater than default limit value {d}"),
                ));
            }
            // kube reports the min (and, below, the max) as the bad value of `default`.
            if let (Some(d), Some(min)) = (default, min)
                && min > d
            {
                errors.push(invalid(
                    path("default"),
                    &value(min),
                    &format!("min value {min} is greater than default value {d}"),
                ));
            }
            if let (Some(d), Some(max)) = (default, max)
                && d > max
            {
                errors.push(invalid(
                    path("default"),
                    &value(max),
                    &format!("default value {d} is greater than max value {max}"),
                ));
            }
            if let Some(ratio) = ratio {
                if *ratio < Quantity::new(1, Format::DecimalSI) {
                    errors.push(invalid(
                        path("maxLimitRequestRatio"),
                        &value(ratio),
                        &format!("ratio {ratio} is less than 1"),
                    ));
                }
                if let (Some(min), Some(max)) = (min, max) {
                    let small = [ratio, min, max].iter().all(|q| q.value() < MAX_MILLI_VALUE);
                    let (ratio_value, low, high) = if small {
                        (ratio.milli_value() as f64 / 1000.0, min.milli_value(), max.milli_value())
                    } else {
                        (ratio.value() as f64, min.value(), max.value())
                    };
                    let bound = high as f64 / low as f64;
                    if ratio_value > bound {
                        errors.push(invalid(
                            path("maxLimitRequestRatio"),
                            &value(ratio),
                            &format!("ratio {ratio} is greater than max/min = {bound:.6}"),
                        ));
                    }
                }
            }
            if let (Some(d), Some(dr)) = (default, default_request)
                && !overcommit_allowed(name)
                && d != dr
            {
                errors.push(invalid(
                    path("defaultRequest"),
                    &value(dr),
                    &format!("default value {d} must equal to defaultRequest value {dr} in {name}"),
                ));
            }
        }
    }
    errors
}
