//! Server-side apply and the field ownership every write records in `metadata.managedFields`.
//!
//! An apply merges the applied configuration into the live object by the schema's list
//! semantics, refuses to change fields another manager owns unless forced, and removes the
//! fields its manager applied before and no longer applies (when nobody else owns them). An
//! update (create, PUT, the other patches) gives its manager the fields it changed and takes
//! them from everybody else.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};
use skiff_api::ResourceInfo;

use crate::errors::ApiError;
use crate::managed::{
    self, Comparison, FieldPath, FieldSet, Fields, ListType, ManagedEntry, Operation,
    RequestedManagedFields, item_element, list_type, set_of,
};
use crate::objects::now_rfc3339;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager of fields that kubectl's server-side apply uses by default; only its applies
/// take over fields from kubectl's client-side apply.
const KUBECTL_MANAGER: &str = "kubectl";

/// Which part of an object a request writes: the fields outside it are never owned by it.
struct Scope<'a> {
    res: &'a ResourceInfo,
    subresource: Option<&'a str>,
}

impl Scope<'_> {
    /// Whether this request can own fields under the top-level key `key`: the status
    /// subresource owns status only, and the main resource owns everything but a status
    /// served as a subresource.
    fn owns(&self, key: &str) -> bool {
        if self.subresource == Some("status") {
            key == "status"
        } else {
            key != "status" || !self.res.subresources.contains(&"status")
        }
    }

    /// The fields of `obj` this request can own.
    fn fields(&self, obj: &Value) -> Fields {
        managed::fields_of_where(self.res.kind, obj, |k| self.owns(k))
    }

    fn entry(&self, manager: &str, operation: Operation) -> ManagedEntry {
        ManagedEntry {
            manager: manager.to_string(),
            operation,
            api_version: self.res.api_version(),
            time: None,
            subresource: self.subresource.map(str::to_string),
            fields: FieldSet::new(),
        }
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn field_manager_error(options_kind: &str, field_message: String) -> ApiError {
    let field = "fieldManager";
    let reason = if field_message.starts_with("Required") {
        "FieldValueRequired"
    } else {
        "FieldValueInvalid"
    };
    ApiError {
        details: Some(json!({"group": "meta.k8s.io", "kind": options_kind,
            "causes": [{"reason": reason, "message": field_message, "field": field}]})),
        ..ApiError::new(
            422,
            "Invalid",
            format!("{options_kind}.meta.k8s.io \"\" is invalid: {field}: {field_message}"),
        )
    }
}

/// The manager a write records: the `fieldManager` query parameter, or else the product
/// token of the User-Agent (`kubectl/v1.35.0 (linux/amd64) ...` -> `kubectl`), as Kubernetes
/// does. An apply must name its manager.
fn field_manager(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    options_kind: &str,
    apply: bool,
) -> Result<String, ApiError> {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) if m.len() > 128 => Err(field_manager_error(
            options_kind,
            "Too long: may not be more than 128 bytes".into(),
        )),
        Some(m) if m.chars().any(|c| c.is_control()) => Err(field_manager_error(
            options_kind,
            format!("Invalid value: {m:?}: must only contain printable characters"),
        )),
        Some(m) => Ok(m.clone()),
        None if apply => Err(field_manager_error(
            options_kind,
            "Required value: is required for apply patch".into(),
        )),
        None => {
            let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let product = agent.split('/').next().unwrap_or("");
            Ok(product.chars().take(128).collect())
        }
    }
}

/// Record the ownership of an update (create, PUT, JSON/merge/strategic patch) of `old`
/// (None on create) into `new.metadata.managedFields`: the request's manager gets the fields
/// it changed, which the other managers lose. A request may set managedFields itself, or
/// reset them with `[{}]`; a status update keeps the live entries.
pub fn record_update(
    res: &ResourceInfo,
    subresource: Option<&str>,
    old: Option<&Value>,
    new: &mut Value,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let options_kind = if old.is_some() { "UpdateOptions" } else { "CreateOptions" };
    let manager = field_manager(q, headers, options_kind, false)?;
    let scope = Scope { res, subresource };
    // What the body says about managedFields only counts for the main resource.
    let requested = match subresource {
        None => managed::requested(new),
        Some(_) => RequestedManagedFields::Keep,
    };
    if old.is_none()
        && subresource.is_none()
        && !matches!(requested, RequestedManagedFields::Set(_))
    {
        // A create: the manager owns every field it set, and nobody else owns anything.
        let fields = managed::fields_v1_of(res.kind, new, |k| scope.owns(k));
        let entry = (!fields.is_empty()).then(|| {
            let mut me = scope.entry(&manager, Operation::Update);
            me.time = Some(now_rfc3339());
            Value::Array(vec![me.to_json_with(Value::Object(fields))])
        });
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            match entry {
                Some(entry) => meta.insert("managedFields".into(), entry),
                None => meta.remove("managedFields"),
            };
        }
        return Ok(());
    }
    // The live object's entries, each with its encoded form, reused unless this write
    // changes the entry.
    let live = || -> Option<(Vec<ManagedEntry>, Vec<Option<&Value>>)> {
        let old = old?;
        let entries = managed::decode(old).ok()?;
        let items = old.pointer("/metadata/managedFields").and_then(Value::as_array)?;
        Some((entries, items.iter().map(Some).collect()))
    };
    let (mut entries, mut encoded) = match (subresource, requested) {
        (None, RequestedManagedFields::Reset) => (Vec::new(), Vec::new()),
        (None, RequestedManagedFields::Set(entries)) => (entries, Vec::new()),
        _ => live().unwrap_or_default(),
    };
    encoded.resize(entries.len(), None);
    let old_fields = old.map(|o| scope.fields(o)).unwrap_or_default();
    let cmp = Comparison::new(&old_fields, &scope.fields(new));
    let changed = cmp.changed();
    for (e, encoded) in entries.iter_mut().zip(encoded.iter_mut()) {
        let touched = !e.fields.is_disjoint(&changed) || !e.fields.is_disjoint(&cmp.removed);
        if touched && !e.is(&manager, Operation::Update, subresource) {
            e.fields = e.fields.difference(&changed).difference(&cmp.removed);
            *encoded = None;
        }
    }
    let pos = entries
        .iter()
        .position(|e| e.is(&manager, Operation::Update, subresource))
        .unwrap_or_else(|| {
            entries.push(scope.entry(&manager, Operation::Update));
            entries.len() - 1
        });
    encoded.resize(entries.len(), None);
    encoded[pos] = None;
    let me = &mut entries[pos];
    me.fields = me.fields.difference(&cmp.removed).union(&changed);
    me.api_version = res.api_version();
    if !changed.is_empty() {
        me.time = Some(now_rfc3339());
    }
    managed::encode_reusing(new, &entries, &encoded);
    Ok(())
}

/// A parsed server-side apply request.
#[derive(Debug)]
pub struct ApplyRequest {
    pub config: Value,
    pub manager: String,
    pub force: bool,
}

impl ApplyRequest {
    /// Parse and check an apply body (YAML or JSON) sent to the object `name` in `namespace`.
    pub fn parse(
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        headers: &HeaderMap,
        body: &[u8],
        q: &HashMap<String, String>,
    ) -> Result<ApplyRequest, ApiError> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.trim_start().starts_with("application/apply-patch+yaml") {
            return Err(ApiError::unsupported_media_type(ct));
        }
        let manager = field_manager(q, headers, "PatchOptions", true)?;
        let force = q.get("force").is_some_and(|f| f == "true" || f == "1");
        let mut config: Value = serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request("the applied configuration must be an object"));
        }
        for (field, want) in [("apiVersion", res.api_version()), ("kind", res.kind.to_string())] {
            match config.get(field).and_then(Value::as_str) {
                Some(v) if v == want => {}
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} of the applied configuration ({v}) does not match the {field} of the request ({want})"
                    )));
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be set in the applied configuration"
                    )));
                }
            }
        }
        if !config.get("metadata").is_some_and(Value::is_object) {
            config["metadata"] = json!({});
        }
        match config.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if n == name => {}
            None | Some("") => config["metadata"]["name"] = json!(name),
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if let Some(ns) = namespace {
            match config.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(n) if n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => config["metadata"]["namespace"] = json!(ns),
            }
        }
        match config.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => return Err(ApiError::bad_request("metadata.managedFields must be nil")),
        }
        if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        Ok(ApplyRequest { config, manager, force })
    }

    /// The object after applying this configuration to `live` (None: the object does not
    /// exist yet), with its managedFields; a 409 with one cause per conflicting field when the
    /// apply would change fields other managers own and is not forced.
    pub fn apply_to(
        &self,
        res: &ResourceInfo,
        subresource: Option<&str>,
        live: Option<&Value>,
    ) -> Result<Value, ApiError> {
        if let (Some(live), Some(rv)) =
            (live, self.config.pointer("/metadata/resourceVersion").and_then(Value::as_str))
            && live.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv)
        {
            return Err(ApiError::conflict(
                res.plural,
                crate::objects::name_of(live),
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let scope = Scope { res, subresource };
        let mut entries = live.and_then(|l| managed::decode(l).ok()).unwrap_or_default();
        let live_obj = live.map(without_managed_fields).unwrap_or_else(|| json!({}));
        let merged = merge(res.kind, &live_obj, &self.config, &mut Vec::new());
        let live_fields = scope.fields(&live_obj);
        let cmp = Comparison::new(&live_fields, &scope.fields(&merged));
        let changed = cmp.changed();
        let is_me = |e: &ManagedEntry| e.is(&self.manager, Operation::Apply, subresource);

        let mut conflicts: Vec<(String, FieldPath)> = entries
            .iter()
            .filter(|e| !is_me(e))
            .flat_map(|e| {
                e.fields
                    .intersection(&changed)
                    .iter()
                    .map(|p| (e.describe(), p.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !self.force && !conflicts.is_empty() {
            if self.manager == KUBECTL_MANAGER
                && let Some(allowed) = allowed_by_last_applied(&scope, &live_obj, &live_fields)
            {
                conflicts.retain(|(_, p)| !allowed.contains(p));
            }
            if !conflicts.is_empty() {
                return Err(conflict_error(conflicts));
            }
        }

        for e in entries.iter_mut().filter(|e| !is_me(e)) {
            e.fields = e.fields.difference(&changed).difference(&cmp.removed);
        }
        let applied = set_of(&scope.fields(&self.config));
        let pos = entries.iter().position(is_me).unwrap_or_else(|| {
            entries.push(scope.entry(&self.manager, Operation::Apply));
            entries.len() - 1
        });
        let last_applied = std::mem::replace(&mut entries[pos].fields, applied.clone());

        // Fields this manager applied before and no longer applies go, unless someone owns
        // them or something below them.
        let owned = entries.iter().fold(FieldSet::new(), |acc, e| acc.union(&e.fields));
        let mut result = merged;
        for path in last_applied.difference(&applied).iter() {
            if !owned.contains(path) && !owned.has_descendant(path) {
                remove_path(res.kind, &mut result, path, &mut Vec::new());
            }
        }
        let pruned = Comparison::new(&live_fields, &scope.fields(&result));
        for e in entries.iter_mut().filter(|e| !is_me(e)) {
            e.fields = e.fields.difference(&pruned.removed);
        }

        let me = &mut entries[pos];
        me.api_version = res.api_version();
        if result != live_obj || me.time.is_none() {
            me.time = Some(now_rfc3339());
        }
        if self.manager == KUBECTL_MANAGER {
            sync_last_applied(&mut result, &self.config);
        }
        managed::encode_into(&mut result, &entries);
        Ok(result)
    }
}

/// Fields kubectl's client-side apply set to the values they still have: kubectl's first
/// server-side apply of an object may take them over without `--force-conflicts`.
fn allowed_by_last_applied(scope: &Scope, live: &Value, live_fields: &Fields) -> Option<FieldSet> {
    let text = live.get("metadata")?.get("annotations")?.get(LAST_APPLIED)?.as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    Some(
        scope
            .fields(&last)
            .into_iter()
            .filter(|(p, v)| live_fields.get(p).is_some_and(|lv| lv == v || v.is_none()))
            .map(|(p, _)| p)
            .collect(),
    )
}

/// Keep kubectl's client-side apply annotation, where the object has one, in step with what
/// kubectl applied server-side.
fn sync_last_applied(obj: &mut Value, config: &Value) {
    let has = obj.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)).is_some();
    if !has {
        return;
    }
    let mut last = config.clone();
    if let Some(a) = last.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(LAST_APPLIED);
        if a.is_empty()
            && let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("annotations");
        }
    }
    let text = serde_json::to_string(&last).unwrap_or_default() + "\n";
    if let Some(a) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.insert(LAST_APPLIED.into(), json!(text));
    }
}

/// Kubernetes' 409 for an apply that conflicts with other managers.
fn conflict_error(mut conflicts: Vec<(String, FieldPath)>) -> ApiError {
    conflicts.sort();
    conflicts.dedup();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {m}"),
                "field": managed::path_string(p)})
        })
        .collect();
    let message = if let [(m, p)] = conflicts.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {m}: {}", managed::path_string(p))
    } else {
        let mut lines = Vec::new();
        let mut last: Option<&str> = None;
        for (m, p) in &conflicts {
            if last != Some(m.as_str()) {
                lines.push(format!("conflicts with {m}:"));
                last = Some(m);
            }
            lines.push(format!("- {}", managed::path_string(p)));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    ApiError { details: Some(json!({"causes": causes})), ..ApiError::new(409, "Conflict", message) }
}

/// Merge an applied configuration into `live`: objects field by field, lists by their list
/// type (associative lists by key, sets as a union, atomic lists replaced); a null removes
/// the field.
pub fn merge(kind: &str, live: &Value, config: &Value, names: &mut Vec<String>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !managed::is_atomic_map(kind, names) => {
            let mut out = l.clone();
            for (key, cv) in c {
                names.push(key.clone());
                let merged = match out.get(key) {
                    Some(lv) => merge(kind, lv, cv, names),
                    None => cv.clone(),
                };
                names.pop();
                if merged.is_null() {
                    out.remove(key);
                } else {
                    out.insert(key.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => merge_list(kind, l, c, names),
        (_, c) => c.clone(),
    }
}

fn merge_list(kind: &str, live: &[Value], config: &[Value], names: &mut Vec<String>) -> Value {
    let lt = list_type(kind, names);
    let elements: Option<Vec<String>> = config.iter().map(|i| item_element(lt, i)).collect();
    let (ListType::Set | ListType::Map(_), Some(elements)) = (lt, elements) else {
        return Value::Array(config.to_vec());
    };
    let mut out = live.to_vec();
    for (item, elem) in config.iter().zip(elements) {
        match out.iter().position(|l| item_element(lt, l).as_ref() == Some(&elem)) {
            Some(i) if lt != ListType::Set => out[i] = merge(kind, &out[i], item, names),
            Some(_) => {}
            None => out.push(item.clone()),
        }
    }
    Value::Array(out)
}

/// Remove the field or list item at `path` from `obj`; maps left empty by the removal go too.
fn remove_path(kind: &str, obj: &mut Value, path: &[String], names: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else { return };
    if let Some(field) = first.strip_prefix("f:") {
        let Some(map) = obj.as_object_mut() else { return };
        if rest.is_empty() {
            map.remove(field);
            return;
        }
        let Some(child) = map.get_mut(field) else { return };
        names.push(field.to_string());
        remove_path(kind, child, rest, names);
        names.pop();
        if child.as_object().is_some_and(Map::is_empty) && !names.is_empty() {
            map.remove(field);
        }
        return;
    }
    let lt = list_type(kind, names);
    let Some(items) = obj.as_array_mut() else { return };
    let Some(i) = items.iter().position(|item| item_element(lt, item).as_ref() == Some(first))
    else {
        return;
    };
    if rest.is_empty() {
        items.remove(i);
    } else {
        remove_path(kind, &mut items[i], rest, names);
    }
}

#[cfg(test)]
mod tests;
