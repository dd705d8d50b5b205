//! Writes of whole objects: create (with the Service and Node address claims) and update,
//! and the store write every read-modify-write ends in.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use skiff_api::{ResourceInfo, object_key};
use skiff_store::{KeyValue, StoreError, TxnOp};

use super::pods::bind;
use super::{
    MAX_RETRIES, Target, decode, encode, field_validation, is_dry_run, json_bytes_response,
    json_response, parse_body, read_current, too_many_writers, with_resource_version,
    with_warnings, without_resource_version,
};
use crate::errors::ApiError;
use crate::objects::{self, name_of, resource_version_of};
use crate::{State, admission, apply};

/// `POST`: create an object (or answer a review, or bind a pod).
pub async fn create(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    if target.subresource.as_deref() == Some("binding") {
        return bind(state, target, headers, body).await;
    }
    if res.group.is_empty() && res.kind == "Binding" && target.name.is_none() {
        // `POST /api/v1/namespaces/NS/bindings`: the legacy form of `pods/NAME/binding`.
        let binding = parse_body(headers, body)?;
        let pod = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let pods = crate::crds::registry(state).by_plural("", "pods").cloned();
        let (Some(pods), false) = (pods, pod.is_empty()) else {
            return Err(ApiError::invalid(
                "Binding",
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        };
        let pod_target = Target {
            resource: pods,
            view: None,
            namespace: target.namespace.clone(),
            name: Some(pod.to_string()),
            subresource: Some("binding".into()),
        };
        return bind(state, &pod_target, headers, body).await;
    }
    if target.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "POST is not supported on a single {}",
            res.singular
        )));
    }
    let mut obj = parse_body(headers, body)?;
    objects::check_type(&mut obj, res)?;
    let warnings = field_validation(res, &obj, q)?;
    if !res.is_stored() {
        let answer = crate::reviews::answer(state, res, obj, target.namespace.as_deref()).await?;
        return Ok(with_warnings(json_response(StatusCode::CREATED, &answer), &warnings));
    }
    crate::crds::refuse_create_while_terminating(res)?;
    objects::prepare_create(&mut obj, res, target.namespace.as_deref())?;
    apply::record_update(res, None, None, &mut obj, q, headers)?;
    create_admitted(state, res, obj, is_dry_run(q), warnings).await
}

/// Admit a new, prepared object and store it, its quota charges in the same transaction;
/// after a lost race on a quota, only the charge is computed again.
pub(super) async fn create_admitted(
    state: &State,
    res: &ResourceInfo,
    mut obj: Value,
    dry_run: bool,
    warnings: Vec<String>,
) -> Result<Response, ApiError> {
    let name = name_of(&obj).to_string();
    let namespace =
        if res.namespaced { objects::namespace_of(&obj).unwrap_or("default") } else { "" }
            .to_string();
    let key = object_key(res, Some(namespace.as_str()).filter(|n| !n.is_empty()), &name);
    let mut req = admission::Request {
        operation: admission::Operation::Create,
        res,
        subresource: "",
        namespace: &namespace,
        name: &name,
        old: None,
        dry_run,
        attempt: 0,
    };
    let mut admitted = admission::admit(state, &req, &mut obj).await?;
    if admitted.mutated {
        // A webhook or policy may change the object, not where it is stored.
        if name_of(&obj) != name
            || (res.namespaced && objects::namespace_of(&obj) != Some(&namespace))
        {
            return Err(ApiError::bad_request(
                "admission changed the object's name or namespace, which a mutation may not do",
            ));
        }
        // A custom object is pruned and defaulted again, as kube decodes what a webhook gave.
        if let Some(cv) = crate::crds::CustomVersion::of(res) {
            cv.prune_and_default(&mut obj);
        }
        objects::validate(&obj, res)?;
    }
    admitted.warnings.splice(0..0, warnings);
    let mut ops = std::mem::take(&mut admitted.ops);
    loop {
        let retry = !ops.is_empty() && req.attempt + 1 < MAX_RETRIES;
        let attempt = if retry { obj.clone() } else { std::mem::take(&mut obj) };
        match store_new(state, res, &key, attempt, dry_run, ops).await {
            Err(e) if retry && admission::lost_quota_race(&e) => {
                req.attempt += 1;
                ops = admission::recharge(state, &req, &obj).await?;
            }
            Err(e) => return Err(e),
            Ok(created) => return Ok(admitted.decorate(created)),
        }
    }
}

/// A failed transaction's error: a lost race on a quota names the quota (and so is told
/// from a conflict on the object itself), anything else the object.
fn txn_error(e: StoreError, plural: &str, name: &str) -> ApiError {
    match &e {
        // Changed (or deleted) since admission read it: charge again.
        StoreError::Conflict { key, .. } | StoreError::NotFound(key)
            if key.starts_with("/registry/resourcequotas/") =>
        {
            let quota = key.rsplit('/').next().unwrap_or("").to_string();
            ApiError::conflict(
                "resourcequotas",
                &quota,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        }
        _ => ApiError::from_store(e, plural, name),
    }
}

/// Write a new, prepared object (a Service with its address claims) and answer `201` with
/// it; with `dry_run` only show what would be stored. `ops` commit with it.
pub(super) async fn store_new(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    obj: Value,
    dry_run: bool,
    ops: Vec<TxnOp>,
) -> Result<Response, ApiError> {
    if res.group == "rbac.authorization.k8s.io" {
        crate::authz::check_escalation(state, res.kind, &obj, "")?;
    }
    let mut obj = obj;
    if res.group.is_empty() && res.kind == "Secret" {
        crate::tokens::fill_legacy_token_secret(state, &mut obj).await?;
    }
    let created = if res.group.is_empty() && res.kind == "Service" {
        create_service_with(state, obj, key, dry_run, ops).await?
    } else if res.group.is_empty() && res.kind == "Node" {
        create_node(state, obj, key, dry_run).await?
    } else if dry_run {
        obj
    } else {
        // The answer is the stored bytes with the resourceVersion spliced in: the object is
        // serialized once.
        let stored = encode(&obj);
        let kv = if ops.is_empty() {
            state.store.create(key, stored.clone()).await
        } else {
            let mut all = vec![TxnOp::Create { key: key.to_string(), value: stored.clone() }];
            all.extend(ops);
            state.store.txn(all).await.and_then(|kvs| {
                kvs.into_iter().next().ok_or_else(|| StoreError::NotFound(key.to_string()))
            })
        }
        .map_err(|e| txn_error(e, res.plural, name_of(&obj)))?;
        match objects::stamp_resource_version(&stored, kv.mod_revision) {
            Some(json) => return Ok(json_bytes_response(StatusCode::CREATED, json)),
            None => with_resource_version(obj, kv.mod_revision),
        }
    };
    Ok(json_response(StatusCode::CREATED, &created))
}

/// Create a Service together with the claims of the addresses it is given; a random pick
/// that collides with another Service's is retried with a fresh one.
pub async fn create_service(
    state: &State,
    obj: Value,
    key: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    create_service_with(state, obj, key, dry_run, Vec::new()).await
}

/// [`create_service`] with more writes (quota charges) in its transaction.
async fn create_service_with(
    state: &State,
    obj: Value,
    key: &str,
    dry_run: bool,
    extra: Vec<TxnOp>,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    for attempt in 0..8 {
        let mut svc = obj.clone();
        let mut ops = crate::services::claims(&mut svc, attempt)?;
        if dry_run {
            return Ok(svc);
        }
        ops.insert(0, skiff_store::TxnOp::Create { key: key.to_string(), value: encode(&svc) });
        ops.extend(extra.iter().cloned());
        match state.store.txn(ops).await {
            Ok(kvs) => {
                let kv =
                    kvs.first().ok_or_else(|| ApiError::internal("empty transaction result"))?;
                return decode(kv);
            }
            Err(StoreError::AlreadyExists(k)) if k != key => {
                let requested = match k.rsplit('/').next() {
                    Some(v) if k.contains("/serviceips/") => {
                        obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(v)
                    }
                    Some(v) => obj
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|p| p.get("nodePort").map(Value::to_string).as_deref() == Some(v)),
                    None => false,
                };
                if requested && let Some(e) = crate::services::requested_conflict(&obj, &k) {
                    return Err(e);
                }
            }
            Err(e) => return Err(txn_error(e, "services", &name)),
        }
    }
    Err(ApiError::internal("could not allocate a free service address; try again"))
}

/// Create a Node together with the claim of its pod CIDR (the lowest free block, unless it
/// names one); a block another node took meanwhile is retried with the next one.
async fn create_node(
    state: &State,
    obj: Value,
    key: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    let cidrs = state.pod_cidrs();
    for attempt in 0..8 {
        let taken: std::collections::HashSet<String> = state
            .store
            .list(crate::podcidr::claim_prefix())
            .await
            .map_err(|e| ApiError::from_store(e, "nodes", &name))?
            .items
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let mut node = obj.clone();
        // The lowest free block first; after a collision with a node created at the same
        // moment, a random one, so that concurrent creates stop colliding.
        let from = if attempt == 0 { 0 } else { rand::random::<u32>() };
        let mut ops = crate::podcidr::assign(&cidrs, &mut node, &taken, from)?;
        if dry_run {
            return Ok(node);
        }
        ops.insert(0, skiff_store::TxnOp::Create { key: key.to_string(), value: encode(&node) });
        match state.store.txn(ops).await {
            Ok(kvs) => {
                let kv =
                    kvs.first().ok_or_else(|| ApiError::internal("empty transaction result"))?;
                return decode(kv);
            }
            Err(StoreError::AlreadyExists(k)) if k != key => {
                if obj
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty())
                {
                    return Err(ApiError::invalid(
                        "Node",
                        &name,
                        vec![(
                            "spec.podCIDR".to_string(),
                            "Invalid value: the pod CIDR is already allocated to another node"
                                .to_string(),
                        )],
                    ));
                }
            }
            Err(e) => return Err(ApiError::from_store(e, "nodes", &name)),
        }
    }
    Err(ApiError::internal("could not allocate a free pod CIDR; try again"))
}

/// Write `obj` as the new state of an object read at `prev`; deletes it instead when the
/// update finishes a deletion (deletionTimestamp set, no finalizers left, no grace pending).
pub(crate) async fn write(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    prev: &KeyValue,
    obj: &Value,
    ops: Vec<TxnOp>,
) -> Result<Value, ApiError> {
    let name = name_of(obj).to_string();
    let finishing = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        && obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        && (res.kind != "Namespace"
            || obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty))
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0)
            == 0;
    if finishing {
        let kv = state
            .store
            .delete(key, Some(prev.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, res.plural, &name))?;
        return Ok(with_resource_version(obj.clone(), kv.mod_revision));
    }
    // The stored object, parsed at most once, and only when needed.
    let parse_prev = || serde_json::from_slice::<Value>(&prev.value).ok();
    let mut stored = None;
    if res.group.is_empty() && res.kind == "Node" {
        stored = parse_prev();
        crate::authz::check_node_labels(obj, stored.as_ref().unwrap_or(&Value::Null))?;
    }
    if res.group == "rbac.authorization.k8s.io" {
        crate::authz::check_escalation(state, res.kind, obj, &name)?;
    }
    if res.kind == "Service" && res.group.is_empty() {
        return write_service(state, key, prev, obj, ops).await;
    }
    // Kubernetes does not write (or bump resourceVersion) when nothing changed, unless the
    // stored form is stale (sealed with an old encryption key): rewriting an unchanged
    // object is how keys are rotated (`kubectl get secrets -A -o json | kubectl replace -f -`).
    let value = encode(obj);
    if (value == prev.value
        || stored.or_else(parse_prev).is_some_and(|p| same_when_stored(&p, obj)))
        && !state.store.is_stale(key, prev.mod_revision)
    {
        return decode(prev);
    }
    let kv = if ops.is_empty() {
        state.store.update(key, value, Some(prev.mod_revision)).await
    } else {
        let mut all =
            vec![TxnOp::Update { key: key.to_string(), value, expected: Some(prev.mod_revision) }];
        all.extend(ops);
        state.store.txn(all).await.and_then(|kvs| {
            kvs.into_iter().next().ok_or_else(|| StoreError::NotFound(key.to_string()))
        })
    }
    .map_err(|e| txn_error(e, res.plural, &name))?;
    Ok(with_resource_version(obj.clone(), kv.mod_revision))
}

/// Whether `stored` (as read from the store) is `obj` but for `metadata.resourceVersion`.
fn same_when_stored(stored: &Value, obj: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (stored, obj) else { return stored == obj };
    fn meta(m: &serde_json::Map<String, Value>) -> Option<Vec<(&String, &Value)>> {
        let meta = m.get("metadata").and_then(Value::as_object)?;
        Some(meta.iter().filter(|(k, _)| *k != "resourceVersion").collect())
    }
    a.len() == b.len()
        && a.iter().all(|(k, v)| k == "metadata" || b.get(k) == Some(v))
        && meta(a) == meta(b)
}

/// An update of a Service with the node-port claims its type and ports now need, in one
/// transaction; a random port that another Service took meanwhile is drawn again.
async fn write_service(
    state: &State,
    key: &str,
    prev: &KeyValue,
    obj: &Value,
    extra: Vec<TxnOp>,
) -> Result<Value, ApiError> {
    let name = name_of(obj).to_string();
    let old: Value = serde_json::from_slice(&prev.value)
        .map_err(|e| ApiError::internal(format!("decoding the stored Service: {e}")))?;
    for _ in 0..8 {
        let mut new = without_resource_version(obj);
        let mut ops = crate::services::update_claims(&old, &mut new)?;
        if ops.is_empty() && old == new && !state.store.is_stale(key, prev.mod_revision) {
            return decode(prev);
        }
        let value = skiff_api::gojson::to_vec(&new);
        ops.insert(
            0,
            TxnOp::Update { key: key.to_string(), value, expected: Some(prev.mod_revision) },
        );
        ops.extend(extra.iter().cloned());
        match state.store.txn(ops).await {
            Ok(kvs) => {
                let kv =
                    kvs.first().ok_or_else(|| ApiError::internal("empty transaction result"))?;
                return decode(kv);
            }
            Err(StoreError::AlreadyExists(k)) => {
                if let Some(e) = crate::services::requested_conflict(obj, &k)
                    && obj
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|p| {
                            p.get("nodePort").map(Value::to_string).as_deref()
                                == k.rsplit('/').next()
                        })
                {
                    return Err(e);
                }
            }
            Err(e) => return Err(txn_error(e, "services", &name)),
        }
    }
    Err(ApiError::internal("could not allocate a free node port; try again"))
}

/// `PUT`: replace an object (or its status), retried on a conflict unless the body names a
/// resourceVersion.
pub async fn update(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let incoming = parse_body(headers, body)?;
    let warnings = field_validation(res, &incoming, q)?;
    let wanted_rv = resource_version_of(&incoming).map(str::to_string);
    for attempt in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        if let Some(rv) = &wanted_rv
            && *rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::from_store(
                StoreError::Conflict { key, expected: 0, current: prev.mod_revision },
                res.plural,
                &name,
            ));
        }
        let old = decode(&prev)?;
        let mut new = incoming.clone();
        objects::prepare_update(&mut new, &old, res, target.subresource.as_deref())?;
        apply::record_update(res, target.subresource.as_deref(), Some(&old), &mut new, q, headers)?;
        let mut admitted =
            admit_update(state, target, &old, &mut new, is_dry_run(q), attempt).await?;
        if is_dry_run(q) {
            return Ok(admitted.decorate(json_response(StatusCode::OK, &new)));
        }
        let ops = std::mem::take(&mut admitted.ops);
        match write(state, res, &key, &prev, &new, ops).await {
            Err(e)
                if e.code == 409
                    && e.reason == "Conflict"
                    && (wanted_rv.is_none() || admission::lost_quota_race(&e)) =>
            {
                continue;
            }
            Err(e) => return Err(e),
            Ok(obj) => {
                let resp = with_warnings(json_response(StatusCode::OK, &obj), &warnings);
                return Ok(admitted.decorate(resp));
            }
        }
    }
    Err(too_many_writers(res.plural, &name))
}

/// Admit an update of the object read as `old` to `new` (prepared): from the second
/// `attempt` on, what admission reads is read afresh. A change admission made is validated
/// as the update's own would be.
pub(super) async fn admit_update(
    state: &State,
    target: &Target,
    old: &Value,
    new: &mut Value,
    dry_run: bool,
    attempt: usize,
) -> Result<admission::Admitted, ApiError> {
    let res = &target.resource;
    let sub = target.subresource.as_deref();
    let req = admission::Request {
        operation: admission::Operation::Update,
        res,
        subresource: sub.unwrap_or(""),
        namespace: target.namespace.as_deref().unwrap_or(""),
        name: target.name.as_deref().unwrap_or(""),
        old: Some(old),
        dry_run,
        attempt,
    };
    let admitted = admission::admit(state, &req, new).await?;
    if admitted.mutated {
        objects::prepare_update(new, old, res, sub)?;
    }
    Ok(admitted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_should_be_the_same_when_stored_whatever_its_resource_version() {
        let stored = json!({"kind": "Pod", "metadata": {"name": "a", "labels": {"x": "1"}}});
        let mut obj = stored.clone();
        obj["metadata"]["resourceVersion"] = json!("7");
        assert!(same_when_stored(&stored, &obj));
        assert_eq!(super::super::encode(&obj), skiff_api::gojson::to_vec(&stored));
        obj["metadata"]["labels"]["x"] = json!("2");
        assert!(!same_when_stored(&stored, &obj));
        let mut more = stored.clone();
        more["spec"] = json!({});
        assert!(!same_when_stored(&stored, &more));
        assert!(!same_when_stored(&more, &stored));
    }
}
