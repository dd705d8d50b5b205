//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! Kubernetes does. The ReplicaSet whose template equals the Deployment's is the new one
//! (named `<deployment>-<pod-template-hash>`); the others are old and are scaled down as the
//! new one becomes available (RollingUpdate: `maxSurge`/`maxUnavailable`), or all at once
//! first (Recreate). Revisions live in the ReplicaSets' `deployment.kubernetes.io/revision`
//! annotation, which is what `kubectl rollout history|undo` read; status and the `Progressing`
//! and `Available` conditions are what `kubectl rollout status` and `helm --wait` read.
//!
//! This module runs the controller on the shared informers (a Deployment's key is queued when
//! it, one of its ReplicaSets or, for a Recreate rollout, one of its pods changes) and claims a
//! Deployment's sets; `DeploymentSync` is one sync of one Deployment. The rest is split as
//! Kubernetes splits it: `util` (revisions, hash, annotations, conditions), `sync` (new set,
//! scaling, status, cleanup), `rolling` and `recreate` (the strategies), `progress` (the
//! `Progressing` condition and when to look again).

mod progress;
mod recreate;
mod rolling;
mod sync;
mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use skiff_client_tools::informers::{Change, Informer};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::labels::{labels_of, selector_is_empty, selector_matches};
use skiff_helpers::pods::{controller_of, controller_ref};
use tokio::task::JoinSet;

use progress::generation_observed;
pub use progress::{deployment_complete, rollout_progress};
pub use rolling::{max_scaled_down, new_rs_new_replicas};
pub use sync::{calculate_status, proportional_sizes};
pub use util::{
    AVAILABLE, DESIRED_REPLICAS, FOUND_NEW_RS, MAX_REPLICAS, MIN_AVAILABLE, MIN_UNAVAILABLE,
    NEW_RS_AVAILABLE, NEW_RS_CREATED, PAUSED, POD_TEMPLATE_HASH, PROGRESSING, REPLICA_FAILURE,
    RESUMED, REVISION, REVISION_HISTORY, RS_CREATE_ERROR, RS_UPDATED, TIMED_OUT, condition,
    equal_ignore_hash, find_new_rs, get_condition, max_surge, max_unavailable, next_revision,
    resolve_fenceposts, revision, scaled_value, set_condition, set_new_rs_annotations,
    template_hash,
};
use util::{by_creation, is_rolling, replicas_of};

use crate::replicaset::retry_conflict_soon;
use crate::{Context, Error};

/// Syncs of different Deployments run at once; one sync mostly waits on a few API writes.
const WORKERS: usize = 4;

/// What the informers' handlers need: the caches and the queue. No client in here: the
/// handlers live as long as the shared informers do.
struct Wakeups {
    queue: WorkQueue,
    deployments: Store<Deployment>,
    sets: Store<ReplicaSet>,
}

impl Wakeups {
    fn wake_all(&self) {
        for d in self.deployments.state() {
            self.queue.add(&key_of(&*d));
        }
    }

    /// The Deployments a set change concerns: its controller if a Deployment, or for an
    /// orphan every Deployment in its namespace whose selector matches it.
    fn wake_for_rs(&self, rs: &ReplicaSet) {
        let ns = rs.namespace().unwrap_or_default();
        match controller_of(&rs.metadata) {
            Some(r) if r.kind == "Deployment" => self.queue.add(&format!("{ns}/{}", r.name)),
            Some(_) => {}
            None => {
                let labels = labels_of(&rs.metadata);
                for d in self.deployments.state() {
                    let sel = d.spec.as_ref().map(|s| &s.selector);
                    if d.namespace().as_deref() == Some(ns.as_str())
                        && sel
                            .is_some_and(|s| !selector_is_empty(s) && selector_matches(s, &labels))
                    {
                        self.queue.add(&key_of(&*d));
                    }
                }
            }
        }
    }

    /// Kubernetes' `deletePod`: a Recreate rollout waits for the old sets' pods to be gone,
    /// and when the last one goes nothing else changes (its set already counts it out).
    fn wake_for_deleted_pod(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let Some(rs_ref) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let Some(rs) = self.sets.get(&ObjectRef::new(&rs_ref.name).within(&ns)) else { return };
        if rs.uid().as_deref() != Some(rs_ref.uid.as_str()) {
            return;
        }
        let Some(d_ref) = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment") else {
            return;
        };
        let Some(d) = self.deployments.get(&ObjectRef::new(&d_ref.name).within(&ns)) else {
            return;
        };
        if d.uid().as_deref() == Some(d_ref.uid.as_str()) && !is_rolling(&d) {
            self.queue.add(&key_of(&*d));
        }
    }

    fn watch(
        self: &Arc<Self>,
        deployments: &Informer<Deployment>,
        sets: &Informer<ReplicaSet>,
        pods: &Informer<Pod>,
    ) {
        let w = self.clone();
        deployments.on_change(move |change| match change {
            Change::Upsert { new, .. } => w.queue.add(&key_of(*new)),
            Change::Resynced => w.wake_all(),
            Change::Delete { .. } => {}
        });
        let w = self.clone();
        sets.on_change(move |change| match change {
            Change::Upsert { old, new } => {
                if let Some(old) = old.as_deref()
                    && controller_of(&old.metadata) != controller_of(&new.metadata)
                {
                    w.wake_for_rs(old);
                }
                w.wake_for_rs(new);
            }
            Change::Delete { gone, .. } => w.wake_for_rs(gone),
            Change::Resynced => {}
        });
        let w = self.clone();
        pods.on_change(move |change| {
            if let Change::Delete { gone, .. } = change {
                w.wake_for_deleted_pod(gone);
            }
        });
    }
}

/// The controller's caches, the shared pod informer and the client.
struct Controller {
    ctx: Arc<Context>,
    deployments: Store<Deployment>,
    sets: Store<ReplicaSet>,
    pods: Informer<Pod>,
}

/// Run the Deployment controller on the shared Deployment, ReplicaSet and pod informers.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let deployments = ctx.informers.get::<Deployment>();
    let sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    deployments.wait_until_ready().await;
    sets.wait_until_ready().await;
    pods.wait_until_ready().await;
    let wakeups = Arc::new(Wakeups {
        queue: WorkQueue::new(),
        deployments: deployments.store(),
        sets: sets.store(),
    });
    wakeups.watch(&deployments, &sets, &pods);
    let c = Arc::new(Controller {
        ctx,
        deployments: deployments.store(),
        sets: sets.store(),
        pods: pods.clone(),
    });
    let mut tasks = JoinSet::new();
    workqueue::spawn_workers(&mut tasks, &wakeups.queue, WORKERS, "deployment", move |key| {
        let c = c.clone();
        async move { retry_conflict_soon("deployment", &key, c.sync(&key).await) }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One sync of one Deployment, with the ReplicaSets as this sync changes them.
struct DeploymentSync<'a> {
    ctl: &'a Controller,
    d: Deployment,
    sets: Vec<ReplicaSet>,
    rs_api: Api<ReplicaSet>,
    now: Timestamp,
}

fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let client = self.ctx.client.clone();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selector_is_empty(&selector) {
            self.ctx.recorder.warning(
                &*d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            if !generation_observed(&d, &d.status.clone().unwrap_or_default()) {
                let api: Api<Deployment> = Api::namespaced(client, ns);
                let patch = json!({"status": {"observedGeneration": d.metadata.generation}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            return Ok(None);
        }
        let rs_api: Api<ReplicaSet> = Api::namespaced(client, ns);
        let sets = self.claim_sets(&d, &selector, &rs_api).await;
        let mut s = DeploymentSync { ctl: self, d: (*d).clone(), sets, rs_api, now: now_seconds() };
        let original = d.status.clone().unwrap_or_default();

        let status = if d.metadata.deletion_timestamp.is_some() {
            s.sync_status_only()
        } else {
            s.check_paused_conditions();
            let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
            if paused || s.is_scaling_event() {
                s.sync_scale(paused).await?
            } else if is_rolling(&d) {
                s.rollout_rolling().await?
            } else {
                s.rollout_recreate().await?
            }
        };
        s.write_status(&original, status).await?;
        Ok(s.requeue())
    }

    /// Ours that still match; matching orphans, adopted; ours that stopped matching, released.
    async fn claim_sets(
        &self,
        d: &Deployment,
        selector: &LabelSelector,
        api: &Api<ReplicaSet>,
    ) -> Vec<ReplicaSet> {
        let uid = d.uid().unwrap_or_default();
        let ns = d.namespace();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut out = Vec::new();
        for rs in self.sets.state() {
            if rs.namespace() != ns {
                continue;
            }
            let matches = selector_matches(selector, &labels_of(&rs.metadata));
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        out.push((*rs).clone());
                    } else if !deleting {
                        let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                        refs.retain(|r| r.uid != uid);
                        let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
                        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.resource_version()}});
                        let _ = api
                            .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                            .await;
                    }
                }
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(controller_ref(d));
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.resource_version()}});
                    if let Ok(rs) = api
                        .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        out.push(rs);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

impl DeploymentSync<'_> {
    fn replicas(&self) -> i32 {
        replicas_of(&self.d)
    }

    fn new_index(&self) -> Option<usize> {
        let rs = find_new_rs(&self.d, &self.sets)?;
        self.sets.iter().position(|s| s.uid() == rs.uid())
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new_index().map(|i| &self.sets[i])
    }

    /// Indexes of the old sets, oldest first.
    fn old_indexes(&self) -> Vec<usize> {
        let new = self.new_index();
        let mut old: Vec<usize> = (0..self.sets.len()).filter(|i| Some(*i) != new).collect();
        old.sort_by(|&a, &b| by_creation(&self.sets[a], &self.sets[b]));
        old
    }
}

#[cfg(test)]
mod tests;
