//! Deletes: `DeleteOptions` (grace period, preconditions, propagation policy), graceful
//! deletion and finalizers, and `deletecollection`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, list_prefix};
use skiff_store::StoreError;

use super::{
    MAX_RETRIES, Target, decode, encode, is_dry_run, json_response, parse_body, read_current,
    selectors, too_many_writers,
};
use crate::State;
use crate::errors::ApiError;
use crate::objects::{self, name_of};

/// `DeleteOptions` from the body and/or the query.
struct DeleteOptions {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    /// `Orphan`, `Background` or `Foreground`, when asked for.
    propagation: Option<String>,
}

fn delete_options(
    body: &[u8],
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(headers, body)?
    };
    let grace = b
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let dry_run = is_dry_run(q)
        || b.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    let orphan = b
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    let propagation = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned())
        .or_else(|| orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "",
                vec![(
                    "propagationPolicy".into(),
                    format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                )],
            ));
        }
        if orphan.is_some()
            && (b.get("propagationPolicy").is_some() || q.contains_key("propagationPolicy"))
        {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "",
                vec![(
                    "propagationPolicy".into(),
                    "Invalid value: orphanDependents and propagationPolicy cannot both be set"
                        .into(),
                )],
            ));
        }
    }
    Ok(DeleteOptions {
        propagation,
        grace,
        uid: b.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        resource_version: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

/// `DELETE` of one object: checks the preconditions, sets the garbage collector's finalizer,
/// and either marks the object for graceful deletion or removes it.
pub async fn delete(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let opts = delete_options(body, headers, q)?;
    for _ in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        let mut obj = decode(&prev)?;
        if let Some(uid) = &opts.uid
            && obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    prev.mod_revision
                ),
            ));
        }
        // Admission sees the object as stored; nothing it does changes what is deleted.
        let namespace = target.namespace.as_deref().unwrap_or("");
        let req = crate::admission::Request {
            operation: crate::admission::Operation::Delete,
            res,
            subresource: "",
            namespace,
            name: &name,
            old: None,
            dry_run: opts.dry_run,
            attempt: 0,
        };
        crate::admission::admit(state, &req, &mut obj.clone()).await?;
        let grace = graceful_period(res, &obj, opts.grace);
        // The garbage collector's finalizers follow the propagation policy (or the kind's
        // default); the controller manager's garbage collector acts on them.
        if !(res.group.is_empty() && res.kind == "Namespace") {
            let m = obj
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::internal("object without metadata"))?;
            let current: Vec<Value> =
                m.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            let names: Vec<&str> = current.iter().filter_map(Value::as_str).collect();
            let gc_finalizer = crate::gc::finalizer_for(res, opts.propagation.as_deref(), &names);
            let mut finalizers: Vec<Value> = current
                .iter()
                .filter(|f| *f != crate::gc::ORPHAN && *f != crate::gc::FOREGROUND)
                .cloned()
                .collect();
            finalizers.extend(gc_finalizer.map(|f| json!(f)));
            // A CRD goes only once its objects are gone (kube's CRD storage adds this).
            if res.group == "apiextensions.k8s.io"
                && res.kind == "CustomResourceDefinition"
                && !finalizers.iter().any(|f| f == crate::crds::CLEANUP_FINALIZER)
            {
                finalizers.push(json!(crate::crds::CLEANUP_FINALIZER));
            }
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
            || ((res.group.is_empty() && res.kind == "Namespace")
                && obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty()));
        if grace > 0 || has_finalizers {
            let already = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            let current_grace =
                obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if already && current_grace.is_none_or(|g| g <= grace) {
                return Ok(json_response(StatusCode::ACCEPTED, &obj));
            }
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            let m = obj
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::internal("object without metadata"))?;
            if !already || current_grace.is_some_and(|g| g > grace) {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
            }
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if res.group.is_empty() && res.kind == "Namespace" {
                obj["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok(json_response(StatusCode::ACCEPTED, &obj));
            }
            match state.store.update(&key, encode(&obj), Some(prev.mod_revision)).await {
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, res.plural, &name)),
                Ok(kv) => {
                    let obj = decode(&kv)?;
                    if grace == 0 && !has_finalizers {
                        continue;
                    }
                    let code = if grace == 0 { StatusCode::OK } else { StatusCode::ACCEPTED };
                    return Ok(json_response(code, &obj));
                }
            }
        }
        if opts.dry_run {
            return Ok(json_response(StatusCode::OK, &obj));
        }
        match state.store.delete(&key, Some(prev.mod_revision)).await {
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, res.plural, &name)),
            Ok(kv) => {
                if res.group.is_empty() && res.kind == "Service" {
                    for claim in crate::services::release(&obj) {
                        let _ = state.store.delete(&claim, None).await;
                    }
                }
                if res.group.is_empty()
                    && res.kind == "Node"
                    && let Some(claim) = crate::podcidr::release(&obj)
                {
                    let _ = state.store.delete(&claim, None).await;
                }
                let obj = super::with_resource_version(obj, kv.mod_revision);
                return Ok(json_response(StatusCode::OK, &obj));
            }
        }
    }
    Err(too_many_writers(res.plural, &name))
}

/// `DELETE` on a collection: every object matching the selectors, one by one, with the same
/// options; answers the list of what was deleted (or is now being deleted).
pub(super) async fn delete_collection(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let (labels, fields) = selectors(res, q)?;
    let page = state
        .store
        .list(&list_prefix(res, target.namespace.as_deref()))
        .await
        .map_err(|e| ApiError::from_store(e, res.plural, ""))?;
    let mut deleted = Vec::new();
    for kv in &page.items {
        let obj = decode(kv)?;
        if !labels.matches(objects::labels_of(&obj)) || !fields.matches(&obj) {
            continue;
        }
        let one = Target {
            name: Some(name_of(&obj).to_string()),
            namespace: objects::namespace_of(&obj).map(str::to_string),
            ..target.clone()
        };
        match delete(state, &one, headers, body, q).await {
            Ok(_) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state.store.current_revision().to_string();
    if !res.is_custom() {
        super::strip_type_meta(&mut deleted);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted}),
    ))
}

/// Grace period for deleting `obj`: only scheduled, non-terminal pods are deleted gracefully.
fn graceful_period(res: &ResourceInfo, obj: &Value, requested: Option<i64>) -> i64 {
    if res.kind != "Pod" {
        return 0;
    }
    let scheduled =
        obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || terminal {
        return 0;
    }
    requested
        .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30)
        .max(0)
}
