//! The `pvc-protection` and `pv-protection` controllers: the finalizers that
//! StorageObjectInUseProtection admission puts on every claim and volume are taken off once
//! the object is being deleted and nothing uses it any more (no pod that has not finished
//! mounts the claim; the volume is not bound).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::de::DeserializeOwned;
use skiff_client_tools::informers::Change;
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::batch::api_code;
use crate::{Context, Error};

use skiff_admission::finalizers::{PV_PROTECTION, PVC_PROTECTION};

fn deleting_with<K: Resource>(obj: &K, finalizer: &str) -> bool {
    let meta = obj.meta();
    meta.deletion_timestamp.is_some()
        && meta.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Whether a pod that has not finished mounts claim `claim`.
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    if matches!(skiff_helpers::pods::phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|vs| {
        vs.iter().any(|v| {
            v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim)
                || v.ephemeral.is_some()
                    && pod
                        .metadata
                        .name
                        .as_ref()
                        .is_some_and(|p| format!("{p}-{}", v.name) == claim)
        })
    })
}

/// Take `finalizer` off the object (a JSON patch that tests the list first, so a change
/// made meanwhile fails it and the sync runs again).
async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<Requeue, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let current = obj.meta().finalizers.clone().unwrap_or_default();
    let kept: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Invalid(e.to_string()))?;
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(None),
        Err(e) if api_code(&e) == Some(404) => Ok(None),
        Err(e) if matches!(api_code(&e), Some(409 | 422)) => Ok(Some(std::time::Duration::ZERO)),
        Err(e) => Err(e.into()),
    }
}

pub async fn run_pvc(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let pods = ctx.informers.get::<Pod>();
    claims.wait_until_ready().await;
    pods.wait_until_ready().await;
    let q = queue.clone();
    claims.on_change(move |change| {
        if let Some(c) = change.object()
            && deleting_with(c, PVC_PROTECTION)
        {
            q.add(&key_of(c));
        }
    });
    // A pod that goes or finishes may free the claims of its namespace being deleted.
    let (q, all) = (queue.clone(), claims.store());
    pods.on_change(move |change| {
        let ns = match change {
            Change::Delete { gone, .. } => gone.metadata.namespace.clone(),
            Change::Upsert { new, .. } => new.metadata.namespace.clone(),
            Change::Resynced => None,
        };
        let Some(ns) = ns else { return };
        for c in all.state() {
            if c.metadata.namespace.as_deref() == Some(ns.as_str())
                && deleting_with(c.as_ref(), PVC_PROTECTION)
            {
                q.add(&key_of(c.as_ref()));
            }
        }
    });
    for c in claims.store().state() {
        if deleting_with(c.as_ref(), PVC_PROTECTION) {
            queue.add(&key_of(c.as_ref()));
        }
    }
    let (claims, pods) = (claims.store(), pods.store());
    workqueue::spawn_workers(&mut tasks, &queue, 1, "pvc-protection", move |k| {
        let (ctx, claims, pods) = (ctx.clone(), claims.clone(), pods.clone());
        async move { sync_pvc(&ctx, &claims, &pods, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn sync_pvc(
    ctx: &Context,
    claims: &Store<PersistentVolumeClaim>,
    pods: &Store<Pod>,
    k: &str,
) -> Result<Requeue, Error> {
    let (ns, name) = split_key(k);
    let Some(claim) = claims.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
    if !deleting_with(claim.as_ref(), PVC_PROTECTION) {
        return Ok(None);
    }
    let in_use = pods
        .state()
        .iter()
        .any(|p| p.metadata.namespace.as_deref() == Some(ns) && pod_uses_claim(p, name));
    if in_use {
        return Ok(None);
    }
    // The cache may be behind: ask the API before letting the claim go.
    let live: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    if live.list(&Default::default()).await?.items.iter().any(|p| pod_uses_claim(p, name)) {
        return Ok(None);
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    remove_finalizer(&api, claim.as_ref(), PVC_PROTECTION).await
}

pub async fn run_pv(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let volumes = ctx.informers.get::<PersistentVolume>();
    volumes.wait_until_ready().await;
    let q = queue.clone();
    volumes.on_change(move |change| {
        if let Some(v) = change.object()
            && deleting_with(v, PV_PROTECTION)
        {
            q.add(&key_of(v));
        }
    });
    for v in volumes.store().state() {
        if deleting_with(v.as_ref(), PV_PROTECTION) {
            queue.add(&key_of(v.as_ref()));
        }
    }
    let volumes = volumes.store();
    workqueue::spawn_workers(&mut tasks, &queue, 1, "pv-protection", move |k| {
        let (ctx, volumes) = (ctx.clone(), volumes.clone());
        async move {
            let Some(v) = volumes.get(&ObjectRef::new(split_key(&k).1)) else { return Ok(None) };
            let bound = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            if !deleting_with(v.as_ref(), PV_PROTECTION) || bound {
                return Ok(None);
            }
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            remove_finalizer(&api, v.as_ref(), PV_PROTECTION).await
        }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
    };

    use super::*;

    fn pod(claim: &str, phase: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.into(),
                        read_only: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_uses_claim_should_ignore_finished_pods_and_other_claims() {
        assert!(pod_uses_claim(&pod("data", "Running"), "data"));
        assert!(pod_uses_claim(&pod("data", "Pending"), "data"));
        assert!(!pod_uses_claim(&pod("data", "Succeeded"), "data"));
        assert!(!pod_uses_claim(&pod("other", "Running"), "data"));
    }
}
