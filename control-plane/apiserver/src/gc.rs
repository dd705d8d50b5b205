//! Cascading deletion by `ownerReferences`, done by the api server at delete time: the
//! `orphan` and `foregroundDeletion` finalizers are processed and dependents of a deleted
//! owner are removed in the background, as Kubernetes' garbage collector does. The
//! controller manager's garbage collector (with its graph of every object) takes this over;
//! until then, cascading deletion works for every delete that goes through this api server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, list_prefix, object_key};
use skiff_store::KeyValue;

use crate::State;
use crate::errors::ApiError;
use crate::handlers::{self, Target, decode};

/// The finalizers the garbage collector owns.
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// How long a foreground deletion waits for its dependents before giving up (the owner then
/// keeps its finalizer, as it would with a stuck dependent on Kubernetes).
const FOREGROUND_DEADLINE: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(200);

/// One object that names an owner in its `ownerReferences`.
struct Dependent {
    resource: ResourceInfo,
    kv: KeyValue,
    obj: Value,
}

fn owner_uids(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .collect()
}

/// Objects owned by `uid`: in `namespace` for a namespaced owner, anywhere for a cluster one.
async fn dependents(
    state: &State,
    uid: &str,
    namespace: Option<&str>,
) -> Result<Vec<Dependent>, ApiError> {
    let mut out = Vec::new();
    for r in state.registry.all().iter().filter(|r| r.storage.is_none() && r.is_stored()) {
        if namespace.is_some() && !r.namespaced {
            continue;
        }
        let page = state
            .store
            .list(&list_prefix(r, namespace))
            .await
            .map_err(|e| ApiError::from_store(e, r.plural, ""))?;
        for kv in page.items {
            // Cheap test before decoding: most objects have no owner at all.
            if !kv.value.windows(uid.len()).any(|w| w == uid.as_bytes()) {
                continue;
            }
            let obj = decode(&kv)?;
            if owner_uids(&obj).contains(&uid) {
                out.push(Dependent { resource: r.clone(), kv, obj });
            }
        }
    }
    Ok(out)
}

fn target_of(d: &Dependent) -> Target {
    Target {
        resource: d.resource.clone(),
        view: None,
        namespace: d.obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string),
        name: d.obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string),
        subresource: None,
    }
}

type BoxedDelete<'a> = Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

/// Delete one dependent with background propagation (its own dependents follow it).
fn delete_dependent<'a>(state: &'a Arc<State>, d: &'a Dependent) -> BoxedDelete<'a> {
    Box::pin(async move {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body =
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let q = Default::default();
        match handlers::delete(state, &target_of(d), &headers, &body, &q).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    })
}

/// Finish an owner's deletion once its GC finalizer's work is done: orphan its dependents,
/// or wait for them to be gone (deleting them first), then drop the finalizer.
pub fn spawn_finish(state: Arc<State>, res: ResourceInfo, key: String, uid: String) {
    tokio::spawn(async move {
        if let Err(e) = finish(&state, &res, &key, &uid).await {
            tracing::warn!(%key, error = %e.message, "cascading deletion did not finish");
        }
    });
}

async fn finish(
    state: &Arc<State>,
    res: &ResourceInfo,
    key: &str,
    uid: &str,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let mut deleting_requested = false;
    loop {
        let Some(prev) =
            state.store.get(key).await.map_err(|e| ApiError::from_store(e, res.plural, ""))?
        else {
            return Ok(());
        };
        let owner = decode(&prev)?;
        if owner.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
            return Ok(());
        }
        let finalizers: Vec<String> = owner
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        let namespace = owner.pointer("/metadata/namespace").and_then(Value::as_str);
        let done = if finalizers.iter().any(|f| f == ORPHAN) {
            for d in dependents(state, uid, namespace).await? {
                let mut obj = d.obj.clone();
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
                    && let Some(Value::Array(refs)) = meta.get_mut("ownerReferences")
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                    if refs.is_empty() {
                        meta.remove("ownerReferences");
                    }
                }
                let dep_key = d.kv.key.clone();
                // A conflict means it changed under us: the next round sees it again.
                let _ = handlers::write(state, &d.resource, &dep_key, &d.kv, &obj).await;
            }
            dependents(state, uid, namespace).await?.is_empty()
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            let deps = dependents(state, uid, namespace).await?;
            if !deleting_requested {
                for d in &deps {
                    delete_dependent(state, d).await?;
                }
                deleting_requested = true;
            }
            deps.is_empty()
        } else {
            return Ok(());
        };
        if done {
            let mut obj = owner.clone();
            if let Some(Value::Array(f)) = obj.pointer_mut("/metadata/finalizers") {
                f.retain(|f| f != ORPHAN && f != FOREGROUND);
            }
            match handlers::write(state, res, key, &prev, &obj).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        if started.elapsed() > FOREGROUND_DEADLINE {
            return Err(ApiError::internal("dependents were not deleted in time"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether objects of `res` are worth a search for dependents when deleted. The kinds that
/// are leaves of every ownership chain Kubernetes builds (and are deleted in bulk) are not:
/// scanning for their dependents would cost a list of every kind per delete.
pub fn may_own(res: &ResourceInfo) -> bool {
    !matches!(
        res.kind,
        "Pod" | "Event" | "Lease" | "Endpoints" | "EndpointSlice" | "ControllerRevision"
    )
}

/// Empty a terminating namespace and then let it go, as Kubernetes' namespace controller
/// does: delete every object in it (pods gracefully), wait until nothing is left, then drop
/// the `kubernetes` finalizer from its spec, which deletes it.
pub fn spawn_namespace_cleanup(state: Arc<State>, name: String, uid: String) {
    tokio::spawn(async move {
        if let Err(e) = clean_namespace(&state, &name, &uid).await {
            tracing::warn!(namespace = %name, error = %e.message, "namespace cleanup did not finish");
        }
    });
}

async fn clean_namespace(state: &Arc<State>, ns: &str, uid: &str) -> Result<(), ApiError> {
    let key = format!("/registry/namespaces/{ns}");
    let Some(namespaces) = state.registry.lookup("", "v1", "namespaces").cloned() else {
        return Ok(());
    };
    let started = Instant::now();
    let mut asked = std::collections::HashSet::new();
    loop {
        let mut left = 0usize;
        for r in state
            .registry
            .all()
            .iter()
            .filter(|r| r.namespaced && r.storage.is_none() && r.is_stored())
        {
            let page = state
                .store
                .list(&list_prefix(r, Some(ns)))
                .await
                .map_err(|e| ApiError::from_store(e, r.plural, ""))?;
            for kv in page.items {
                left += 1;
                if asked.insert(kv.key.clone()) {
                    let obj = decode(&kv)?;
                    let d = Dependent { resource: r.clone(), kv, obj };
                    delete_dependent(state, &d).await?;
                }
            }
        }
        let Some(prev) =
            state.store.get(&key).await.map_err(|e| ApiError::from_store(e, "namespaces", ns))?
        else {
            return Ok(());
        };
        let obj = decode(&prev)?;
        if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
            return Ok(());
        }
        if left == 0 {
            let mut done = obj.clone();
            if let Some(Value::Array(f)) = done.pointer_mut("/spec/finalizers") {
                f.retain(|f| f != "kubernetes");
            }
            match handlers::write(state, &namespaces, &key, &prev, &done).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        if started.elapsed() > FOREGROUND_DEADLINE {
            return Err(ApiError::internal(format!("{left} objects were still in the namespace")));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After an owner is gone: delete its dependents that have no other owner left.
pub fn spawn_collect(state: Arc<State>, uid: String, namespace: Option<String>) {
    tokio::spawn(async move {
        if let Err(e) = collect(&state, &uid, namespace.as_deref()).await {
            tracing::warn!(owner = %uid, error = %e.message, "deleting dependents failed");
        }
    });
}

async fn collect(state: &Arc<State>, uid: &str, namespace: Option<&str>) -> Result<(), ApiError> {
    for d in dependents(state, uid, namespace).await? {
        let refs = d.obj.pointer("/metadata/ownerReferences").and_then(Value::as_array);
        let mut others_alive = false;
        for r in refs.into_iter().flatten() {
            let other = r.get("uid").and_then(Value::as_str).unwrap_or("");
            if other == uid {
                continue;
            }
            if owner_exists(state, r, namespace).await? {
                others_alive = true;
                break;
            }
        }
        if !others_alive {
            delete_dependent(state, &d).await?;
        }
    }
    Ok(())
}

/// Whether the owner an `ownerReference` names still exists (with that uid).
async fn owner_exists(state: &State, r: &Value, namespace: Option<&str>) -> Result<bool, ApiError> {
    let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = r.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(res) = state.registry.by_kind(group, kind) else {
        // An owner of a kind this server does not serve is not ours to judge.
        return Ok(true);
    };
    let key = object_key(res, namespace.filter(|_| res.namespaced), name);
    let kv = state.store.get(&key).await.map_err(|e| ApiError::from_store(e, res.plural, name))?;
    Ok(kv.is_some_and(|kv| {
        decode(&kv).ok().and_then(|o| o.pointer("/metadata/uid").cloned()) == r.get("uid").cloned()
    }))
}
