//! The two mutations of a MutatingAdmissionPolicy (`policy/mutating/patch`): a JSON Patch
//! built in CEL, and an `Object{...}` apply configuration merged as server-side apply merges.
//!
//! The merge covers what SSA does for built-in types in the common cases, without their
//! OpenAPI schemas: maps merge recursively; `null` removes a field; lists whose elements are
//! keyed (containers, env, volumes, ports, conditions, … by their known merge keys) merge by
//! key; `metadata.finalizers` merges as a set; other lists replace. What it does not do:
//! refuse to mutate atomic fields (kube's "may not mutate atomic arrays, maps or structs"),
//! and CRD schema list types (`x-kubernetes-list-map-keys`).

use serde_json::{Map, Value};

use crate::cel::TYPE_TAG;

/// kube's `CheckTypeNamesMatchFieldPathNames`: each `Object.a.b{}` literal must sit at field
/// path `a.b`; then the tags are removed.
fn check_and_strip(v: &mut Value, expected: &str) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            if let Some(tag) = map.remove(TYPE_TAG) {
                let tag = tag.as_str().unwrap_or_default();
                if tag != expected {
                    return Err(format!(
                        "type mismatch: unexpected type name {tag:?}, expected {expected:?}, which matches field name path from root Object type"
                    ));
                }
            }
            for (k, child) in map.iter_mut() {
                check_and_strip(child, &format!("{expected}.{k}"))?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|i| check_and_strip(i, expected)),
        _ => Ok(()),
    }
}

/// Removes type tags of `Object` literals used as JSON Patch values, checking them against
/// the patch path.
fn strip_value(v: &mut Value, path: &str) -> Result<(), String> {
    let root = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()) && *s != "-")
        .fold("Object".to_string(), |acc, s| {
            format!("{acc}.{}", s.replace("~1", "/").replace("~0", "~"))
        });
    check_and_strip(v, &root)
}

/// Applies a `JSONPatch` expression's result. A failed `test` leaves the object unchanged
/// and is no error.
pub(crate) fn apply_json_patch(object: &mut Value, result: &Value) -> Result<(), String> {
    let Value::Array(ops) = result else {
        return Err("type mismatch: JSONPatchType.expression should evaluate to array".into());
    };
    let mut ops = ops.clone();
    for op in &mut ops {
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(value) = op.as_object_mut().and_then(|o| o.get_mut("value")) {
            strip_value(value, &path)?;
        }
        if let Some(o) = op.as_object_mut() {
            o.remove(TYPE_TAG);
            // An absent value is a missing field, not null.
            if o.get("value").is_some_and(Value::is_null)
                && o.get("op").and_then(Value::as_str) == Some("remove")
            {
                o.remove("value");
            }
        }
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.clone())).map_err(|e| {
            format!(
                "type mismatch: JSONPatchType.expression should evaluate to array of JSONPatch: {e}"
            )
        })?;
    match json_patch::patch(object, &patch) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => Ok(()),
        Err(e) => {
            let op = ops
                .get(e.operation)
                .and_then(|o| o.get("op"))
                .and_then(Value::as_str)
                .unwrap_or("patch");
            Err(format!(
                "JSONPath: {op} operation does not apply: doc is missing path: {:?}: missing value",
                e.path.to_string()
            ))
        }
    }
}

/// Applies an `ApplyConfiguration` expression's result.
pub(crate) fn apply_configuration(object: &mut Value, result: &Value) -> Result<(), String> {
    let mut patch = result.clone();
    let Value::Object(map) = &mut patch else {
        return Err(format!(
            "unsupported return type from ApplyConfiguration expression: {}",
            type_name(result)
        ));
    };
    match map.remove(TYPE_TAG).as_ref().and_then(Value::as_str) {
        Some("Object") => {}
        _ => {
            return Err(format!(
                "unsupported return type from ApplyConfiguration expression: {}",
                type_name(result)
            ));
        }
    }
    check_and_strip(&mut patch, "Object")?;
    merge(object, &patch, &[]);
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "map",
        Value::Array(_) => "list",
        Value::String(_) => "string",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Null => "null_type",
    }
}

/// The merge keys of built-in keyed lists, by field name (and, where the name is ambiguous,
/// its parent), as the types' `patchMergeKey`/`listMapKeys` declare them.
fn merge_keys(path: &[String]) -> Option<&'static [&'static str]> {
    let field = path.last()?.as_str();
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        // Service ports are keyed by port, a container's by containerPort.
        "ports" if parent == Some("spec") => &["port", "protocol"],
        "ports" => &["containerPort", "protocol"],
        _ => return None,
    })
}

/// Lists that merge as sets of scalars.
fn is_set(path: &[String]) -> bool {
    matches!(path, [m, f] if m == "metadata" && f == "finalizers")
}

fn key_of<'v>(item: &'v Value, keys: &[&str]) -> Option<Vec<Option<&'v Value>>> {
    let map = item.as_object()?;
    let key: Vec<Option<&Value>> = keys
        .iter()
        .map(|k| match (map.get(*k), *k) {
            // SSA defaults a port's protocol to TCP for keying.
            (None, "protocol") => None,
            (v, _) => v,
        })
        .collect();
    key.first().copied().flatten()?;
    Some(key)
}

fn same_key(a: &[Option<&Value>], b: &[Option<&Value>], keys: &[&str]) -> bool {
    a.iter().zip(b).zip(keys).all(|((x, y), k)| {
        let tcp = Value::String("TCP".into());
        let default = if *k == "protocol" { Some(&tcp) } else { None };
        x.or(default) == y.or(default)
    })
}

/// Server-side-apply-like merge of `patch` into `live` at `path`.
fn merge(live: &mut Value, patch: &Value, path: &[String]) {
    match (live, patch) {
        (Value::Object(live_map), Value::Object(patch_map)) => {
            merge_maps(live_map, patch_map, path)
        }
        (live @ Value::Array(_), Value::Array(patch_items)) => {
            let Value::Array(live_items) = live else { return };
            if is_set(path) {
                for item in patch_items {
                    if !live_items.contains(item) {
                        live_items.push(item.clone());
                    }
                }
                return;
            }
            let Some(keys) = merge_keys(path) else {
                *live = Value::Array(patch_items.clone());
                return;
            };
            for item in patch_items {
                let Some(key) = key_of(item, keys) else {
                    live_items.push(item.clone());
                    continue;
                };
                let existing = live_items
                    .iter_mut()
                    .find(|l| key_of(l, keys).is_some_and(|lk| same_key(&lk, &key, keys)));
                match existing {
                    Some(l) => merge(l, item, path),
                    None => live_items.push(item.clone()),
                }
            }
        }
        (live, patch) => *live = patch.clone(),
    }
}

fn merge_maps(live: &mut Map<String, Value>, patch: &Map<String, Value>, path: &[String]) {
    for (k, v) in patch {
        if v.is_null() {
            live.remove(k);
            continue;
        }
        let mut child_path = path.to_vec();
        child_path.push(k.clone());
        match live.get_mut(k) {
            Some(existing) => merge(existing, v, &child_path),
            None => {
                live.insert(k.clone(), v.clone());
            }
        }
    }
}
