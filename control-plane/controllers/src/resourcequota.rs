//! The ResourceQuota controller (kube-controller-manager's `resourcequota`): each quota's
//! `status.hard` follows its `spec.hard` and `status.used` is recomputed from what exists in
//! its namespace, so that deleted objects and finished pods give their share back.
//!
//! Admission charges a quota in the same store transaction as the object it admits; this
//! controller must not undo such a charge with a count taken from a cache that has not seen
//! the object yet. So a sync reads the quota first and then lists the namespace's objects
//! live: every charge the quota's revision includes is in that list, and the status is
//! written conditional on that revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::Value;
use skiff_client_tools::informers::Change;
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::batch::api_code;
use crate::{Context, Error};

/// Quotas recomputed at once.
const WORKERS: usize = 2;
/// How often every quota is recomputed even when nothing it watches changed (objects the
/// controller has no informer for, like ConfigMaps, are given back on this beat).
/// kube-controller-manager's `--resource-quota-sync-period` is 5 minutes.
const RESYNC: Duration = Duration::from_secs(60);

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let quotas = ctx.informers.get::<ResourceQuota>();
    let pods = ctx.informers.get::<Pod>();
    let services = ctx.informers.get::<Service>();
    quotas.wait_until_ready().await;
    let q = queue.clone();
    // Admission charges a quota on every create it covers: those status writes need no
    // recount. A new quota, a changed `spec`, or a `status.hard` out of line with it do.
    quotas.on_change(move |change| {
        if let Change::Upsert { old, new } = change {
            let spec_changed = old.as_ref().is_none_or(|o| o.spec != new.spec);
            let hard = new.spec.as_ref().and_then(|s| s.hard.as_ref());
            let synced = new.status.as_ref().and_then(|s| s.hard.as_ref()) == hard;
            if spec_changed || !synced {
                q.add(&key_of(*new));
            }
        }
    });
    // A pod or Service that goes (or a pod that finishes) frees its share: recompute the
    // quotas of its namespace.
    let all = quotas.store();
    let requeue_namespace = move |q: &WorkQueue, ns: &str| {
        for quota in all.state() {
            if quota.metadata.namespace.as_deref() == Some(ns) {
                q.add(&key_of(quota.as_ref()));
            }
        }
    };
    let (q, requeue) = (queue.clone(), requeue_namespace.clone());
    pods.on_change(move |change| {
        let ns = match change {
            Change::Delete { gone, .. } => gone.metadata.namespace.clone(),
            Change::Upsert { old: Some(old), new } if finished(new) && !finished(old) => {
                new.metadata.namespace.clone()
            }
            _ => None,
        };
        if let Some(ns) = ns {
            requeue(&q, &ns);
        }
    });
    let (q, requeue) = (queue.clone(), requeue_namespace);
    services.on_change(move |change| {
        if let Change::Delete { gone, .. } = change
            && let Some(ns) = &gone.metadata.namespace
        {
            requeue(&q, ns);
        }
    });
    for quota in quotas.store().state() {
        queue.add(&key_of(quota.as_ref()));
    }
    let caches = Arc::new(Caches { resources: Mutex::default() });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "resourcequota", move |k| {
        let (ctx, caches) = (ctx.clone(), caches.clone());
        async move { reconcile(&ctx, &caches, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn finished(pod: &Pod) -> bool {
    matches!(skiff_helpers::pods::phase(pod), "Succeeded" | "Failed")
}

struct Caches {
    /// The served version of each (group, plural) counted so far.
    resources: Mutex<HashMap<(String, String), Option<ApiResource>>>,
}

async fn reconcile(ctx: &Context, caches: &Caches, k: &str) -> Result<Requeue, Error> {
    let (ns, name) = split_key(k);
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), ns);
    // Live, not cached: see the module's header.
    let quota = match api.get(name).await {
        Ok(q) => q,
        Err(e) if api_code(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let quota_json = serde_json::to_value(&quota).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut objects: Vec<(String, String, Value)> = Vec::new();
    for (group, plural) in skiff_admission::quota::tracked_resources(&quota_json) {
        let Some(ar) = resource(ctx, caches, &group, &plural).await? else { continue };
        let list: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        let items = list.list(&ListParams::default()).await?.items;
        for item in items {
            let mut v = serde_json::to_value(&item).map_err(|e| Error::Invalid(e.to_string()))?;
            // A DynamicObject's list items come without kind; the evaluators do not need it,
            // but keep the object whole.
            if v.get("kind").is_none_or(Value::is_null) {
                v["kind"] = Value::String(ar.kind.clone());
            }
            objects.push((group.clone(), plural.clone(), v));
        }
    }
    let status = skiff_admission::quota::recompute(
        &quota_json,
        objects.iter().map(|(g, p, o)| (g.as_str(), p.as_str(), o)),
    );
    if quota_json.get("status") == Some(&status) {
        return Ok(Some(RESYNC));
    }
    let mut updated = quota_json;
    updated["status"] = status;
    let updated: ResourceQuota =
        serde_json::from_value(updated).map_err(|e| Error::Invalid(e.to_string()))?;
    match api.replace_status(name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(Some(RESYNC)),
        // Charged or changed meanwhile: count again.
        Err(e) if api_code(&e) == Some(409) => Ok(Some(Duration::ZERO)),
        Err(e) if api_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The served version of `group`/`plural`, found once by discovery; `None` when the cluster
/// does not serve it (a quota may name anything).
async fn resource(
    ctx: &Context,
    caches: &Caches,
    group: &str,
    plural: &str,
) -> Result<Option<ApiResource>, Error> {
    let key = (group.to_string(), plural.to_string());
    if let Some(found) = caches.resources.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(found.clone());
    }
    let found = match kube::discovery::group(&ctx.client, group).await {
        Ok(g) => g
            .recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.plural == plural)
            .map(|(ar, _)| ar),
        Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 404) => None,
        Err(kube::Error::Discovery(_)) => None,
        Err(e) => return Err(e.into()),
    };
    caches.resources.lock().unwrap_or_else(|p| p.into_inner()).insert(key, found.clone());
    Ok(found)
}
