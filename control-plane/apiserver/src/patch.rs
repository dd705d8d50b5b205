//! The three classic patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes' strategic merge patch, which merges lists of objects by a merge key. The fourth,
//! server-side apply, is recognised here but carried out by `apply` with `managed` field
//! ownership.

use serde_json::{Map, Value};

use skiff_api::schema::{self, ListType};

use crate::errors::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply (`application/apply-patch+yaml`; CBOR is not served).
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Apply `patch` (raw request body) of `patch_type` to `target`. An apply patch is not a
/// patch of the object alone (it needs the managed fields): objects and their `status` take
/// it through `apply::ApplyRequest`, and the subresources that call this refuse it.
pub fn apply_patch(target: &mut Value, patch_type: PatchType, body: &[u8]) -> Result<(), ApiError> {
    match patch_type {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(target, &patch).map_err(|e| {
                ApiError::new(422, "Invalid", format!("the JSON patch could not be applied: {e}"))
            })
        }
        PatchType::Merge => {
            let patch: Value = parse_json(body)?;
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchType::StrategicMerge => {
            let patch: Value = parse_json(body)?;
            let kind = target.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            strategic_merge(target, &patch, &kind, &mut Vec::new())
        }
        PatchType::Apply => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "server-side apply is not supported on this subresource; use a JSON, merge or strategic merge patch",
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))
}

/// The strategic merge key of a list field of `kind`, given the path of field names to it.
fn merge_key(kind: &str, path: &[String]) -> Option<&'static str> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    schema::patch_merge_key(kind, &path)
}

/// Lists of primitives whose patch strategy is `merge` (union) rather than replace.
fn is_merged_primitive_list(kind: &str, path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    schema::list_type(kind, &path) == ListType::Set
        && schema::patch_strategy(kind, &path).is_some_and(|s| s.contains("merge"))
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Strategic merge of `patch` into `target`, an object of `kind` (list semantics come from
/// `skiff_api::schema`). `path` holds field names (no indices).
pub fn strategic_merge(
    target: &mut Value,
    patch: &Value,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Value::Object(patch_map) = patch else {
        *target = strip_directives(patch);
        return Ok(());
    };
    match directive(patch) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive $patch: {other:?}"
            )));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        path.push(key.clone());
        let result = merge_field(target, key, value, kind, path);
        path.pop();
        result?;
    }
    let Some(target_map) = target.as_object_mut() else { return Ok(()) };
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(items)), Value::Array(remove)) =
                (target_map.get_mut(field), value)
        {
            items.retain(|i| !remove.contains(i));
        }
    }
    for (key, value) in patch_map {
        let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), value)
        else {
            continue;
        };
        path.push(field.to_string());
        let mk = merge_key(kind, path);
        path.pop();
        if let Some(Value::Array(items)) = target_map.get_mut(field) {
            let order: Vec<Value> = order.iter().map(|o| key_of(o, mk)).collect();
            let original: Vec<Value> = items.iter().map(|i| key_of(i, mk)).collect();
            *items = normalize_order(std::mem::take(items), &original, &order, mk);
        }
    }
    if let Some(Value::Array(keep)) = patch_map.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target_map.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_field(
    target: &mut Value,
    key: &str,
    value: &Value,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Some(target_map) = target.as_object_mut() else { return Ok(()) };
    match value {
        Value::Null => {
            target_map.remove(key);
        }
        Value::Object(_) if directive(value) == Some("delete") => {
            target_map.remove(key);
        }
        Value::Object(_) => {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            if schema::map_patch_strategy(kind, &names) == Some("replace") {
                target_map.insert(key.to_string(), strip_directives(value));
                return Ok(());
            }
            let slot = target_map.entry(key.to_string()).or_insert(Value::Null);
            strategic_merge(slot, value, kind, path)?;
        }
        Value::Array(items) => {
            if let Some(mk) = merge_key(kind, path) {
                let existing = match target_map.remove(key) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                target_map.insert(
                    key.to_string(),
                    Value::Array(merge_list(existing, items, mk, kind, path)?),
                );
            } else if is_merged_primitive_list(kind, path) {
                let mut existing = match target_map.remove(key) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                for i in items {
                    if !existing.contains(i) {
                        existing.push(i.clone());
                    }
                }
                target_map.insert(key.to_string(), Value::Array(existing));
            } else {
                target_map.insert(key.to_string(), strip_directives(value));
            }
        }
        other => {
            target_map.insert(key.to_string(), other.clone());
        }
    }
    Ok(())
}

fn merge_list(
    mut existing: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    if patch.iter().any(|p| directive(p) == Some("replace")) {
        return Ok(patch.iter().filter(|p| directive(p).is_none()).map(strip_directives).collect());
    }
    let original: Vec<Value> = existing.iter().map(|e| key_of(e, Some(merge_key))).collect();
    for item in patch {
        let Some(key_value) = item.get(merge_key) else {
            return Err(ApiError::bad_request(format!(
                "strategic merge patch: list item in {} has no merge key {merge_key:?}",
                path.join(".")
            )));
        };
        let pos = existing.iter().position(|e| e.get(merge_key) == Some(key_value));
        match (directive(item), pos) {
            (Some("delete"), Some(p)) => {
                existing.remove(p);
            }
            (Some("delete"), None) => {}
            (_, Some(p)) => strategic_merge(&mut existing[p], item, kind, path)?,
            (_, None) => existing.push(strip_directives(item)),
        }
    }
    let order: Vec<Value> = patch
        .iter()
        .filter(|p| directive(p).is_none())
        .map(|p| key_of(p, Some(merge_key)))
        .collect();
    Ok(normalize_order(existing, &original, &order, Some(merge_key)))
}

/// The identity of a list item: its merge key's value, or the item itself for primitives.
fn key_of(item: &Value, merge_key: Option<&str>) -> Value {
    match merge_key {
        Some(k) => item.get(k).cloned().unwrap_or(Value::Null),
        None => item.clone(),
    }
}

/// Order a merged list as Kubernetes' strategic merge does: the items the patch names come in
/// the patch's order (`order`, from `$setElementOrder` when given), the others keep the
/// server's order, and the two are interleaved by their positions in the original list, an
/// item new to the list going before a server item it cannot be compared with.
fn normalize_order(
    merged: Vec<Value>,
    original: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let pos = |list: &[Value], item: &Value| {
        let k = key_of(item, merge_key);
        list.iter().position(|x| *x == k)
    };
    let (mut named, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|i| pos(order, i).is_some());
    named.sort_by_key(|i| pos(order, i));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let (mut l, mut r) = (server_only.into_iter().peekable(), named.into_iter().peekable());
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        let server_first = match (pos(original, a), pos(original, b)) {
            (Some(x), Some(y)) => x < y,
            _ => false,
        };
        out.extend(if server_first { l.next() } else { r.next() });
    }
    out.extend(l);
    out.extend(r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_should_order_like_kubernetes() {
        let mut pod = json!({"kind": "Pod", "spec": {"containers": [{"name": "c", "env": [{"name": "MODE", "value": "1"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "env": [{"name": "EXTRA", "value": "yes"}]}]}});
        apply_patch(&mut pod, PatchType::StrategicMerge, patch.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["EXTRA", "MODE"]);
        let patch = json!({"spec": {"containers": [{"name": "c", "$setElementOrder/env": [{"name": "MODE"}, {"name": "EXTRA"}]}]}});
        apply_patch(&mut pod, PatchType::StrategicMerge, patch.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["MODE", "EXTRA"]);
    }

    #[test]
    fn strategic_merge_should_merge_containers_by_name() {
        let mut pod = json!({"kind": "Pod", "spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "K", "value": "1"}]},
            {"name": "b", "image": "y:1"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "J", "value": "2"}]},
            {"name": "b", "$patch": "delete"}]}});
        apply_patch(&mut pod, PatchType::StrategicMerge, patch.to_string().as_bytes()).unwrap();
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(pod["spec"]["containers"][0]["image"], "x:2");
        assert_eq!(pod["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn strategic_merge_should_replace_plain_lists_and_delete_nulls() {
        let mut obj =
            json!({"spec": {"args": ["a", "b"]}, "metadata": {"labels": {"x": "1", "y": "2"}}});
        let patch = json!({"spec": {"args": ["c"]}, "metadata": {"labels": {"x": null}}});
        apply_patch(&mut obj, PatchType::StrategicMerge, patch.to_string().as_bytes()).unwrap();
        assert_eq!(obj["spec"]["args"], json!(["c"]));
        assert_eq!(obj["metadata"]["labels"], json!({"y": "2"}));
    }

    #[test]
    fn json_patch_should_report_failed_test_op() {
        let mut obj = json!({"a": 1});
        let err =
            apply_patch(&mut obj, PatchType::Json, br#"[{"op":"test","path":"/a","value":2}]"#)
                .unwrap_err();
        assert_eq!(err.code, 422);
        apply_patch(&mut obj, PatchType::Json, br#"[{"op":"replace","path":"/a","value":3}]"#)
            .unwrap();
        assert_eq!(obj["a"], 3);
    }
}
