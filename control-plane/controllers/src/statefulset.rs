//! The StatefulSet controller: pods with stable names `<set>-<ordinal>` and stable storage
//! (a PersistentVolumeClaim per volumeClaimTemplate and ordinal), started in order and
//! removed in reverse order under `OrderedReady`, all at once under `Parallel`; template
//! history in ControllerRevisions; `RollingUpdate` (highest ordinal first, one at a time,
//! down to `partition`) or `OnDelete`; claim retention through ownerReferences.
//!
//! A sync first decides ([`plan`], pure) and then acts, like Kubernetes' `StatefulSetControl`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tokio::task::JoinSet;

use crate::history::{self, POD_REVISION_LABEL};
use crate::{Context, Error};
use skiff_client_tools::informers::{BY_OWNER_UID, Informer};
use skiff_client_tools::workqueue::{self, WorkQueue, split_key};
use skiff_helpers::labels::selector_matches;
use skiff_helpers::pods::{
    controller_ref, is_available, is_controlled_by, is_ready, is_terminating, phase,
    pod_from_template,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Creations or deletions in flight at once for one object.
const BURST: usize = 64;
const WORKERS: usize = 4;

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The ordinal of a pod of `set` (its name is `<set>-<digits>`).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How updates roll out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Replace pods from the highest ordinal down to `partition` (relative to the start).
    RollingUpdate { partition: i32 },
    /// Pods change only when someone deletes them.
    OnDelete,
}

/// What [`plan`] needs to know of a StatefulSet.
#[derive(Debug, Clone)]
pub struct SetView {
    pub name: String,
    pub start: i32,
    pub replicas: i32,
    /// `OrderedReady` (true) or `Parallel`.
    pub ordered: bool,
    pub min_ready_seconds: i32,
    pub strategy: Strategy,
    pub update_revision: String,
}

impl SetView {
    pub fn of(set: &StatefulSet, update_revision: &str) -> Self {
        let spec = set.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        let strategy = if strategy.type_.as_deref() == Some("OnDelete") {
            Strategy::OnDelete
        } else {
            let partition = strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0).max(0);
            Strategy::RollingUpdate { partition }
        };
        Self {
            name: set.name_any(),
            start: spec.ordinals.and_then(|o| o.start).unwrap_or(0).max(0),
            replicas: spec.replicas.unwrap_or(1).max(0),
            ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            strategy,
            update_revision: update_revision.to_string(),
        }
    }

    /// Is a pod at `ordinal` made from the current revision rather than the update one?
    pub fn uses_current_revision(&self, ordinal: i32) -> bool {
        match self.strategy {
            Strategy::RollingUpdate { partition } => ordinal < self.start + partition,
            Strategy::OnDelete => false,
        }
    }
}

/// What one sync does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ordinals whose pod (and claims) to create.
    pub create: Vec<i32>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Look again after this long (a pod waiting out `minReadySeconds`).
    pub requeue: Option<Duration>,
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

fn healthy(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    running_and_ready(pod) && !is_terminating(pod) && is_available(pod, min_ready_seconds, now)
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels().get(POD_REVISION_LABEL).map(String::as_str).unwrap_or("")
}

/// Time left until a Ready pod has been Ready for `min_ready_seconds`.
fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Duration {
    let since = skiff_helpers::pods::ready_since(pod).flatten().map(|t| t.as_second()).unwrap_or(0);
    let left = i64::from(min_ready_seconds) - (now.as_second() - since);
    Duration::from_secs(u64::try_from(left.max(1)).unwrap_or(1))
}

/// Decide what to do with the set's `pods` (those it controls, any ordinal), as
/// Kubernetes' StatefulSet control loop does: fill missing ordinals in `[start,
/// start+replicas)` and replace failed pods; delete pods beyond the range from the highest
/// ordinal; then roll out the update revision. `OrderedReady` takes one step at a time and
/// waits for each pod to be Running, Ready (and available) before the next.
pub fn plan(set: &SetView, pods: &[&Pod], now: Timestamp) -> Plan {
    let mut out = Plan::default();
    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(set.replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal_of(&set.name, &pod.name_any()) else { continue };
        let idx = ord - set.start;
        if (0..set.replicas).contains(&idx) {
            slots[usize::try_from(idx).unwrap_or(0)] = Some(*pod);
        } else {
            condemned.push((ord, *pod));
        }
    }
    condemned.sort_by_key(|(ord, _)| *ord);

    for (idx, slot) in slots.iter().enumerate() {
        let ord = set.start + i32::try_from(idx).unwrap_or(0);
        match slot {
            None => {
                out.create.push(ord);
                if set.ordered {
                    return out;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") && !is_terminating(pod) => {
                out.delete.push(pod.name_any());
                if set.ordered {
                    return out;
                }
            }
            Some(pod) if set.ordered && (is_terminating(pod) || !running_and_ready(pod)) => {
                return out;
            }
            Some(pod) if set.ordered && !is_available(pod, set.min_ready_seconds, now) => {
                out.requeue = Some(until_available(pod, set.min_ready_seconds, now));
                return out;
            }
            Some(_) => {}
        }
    }

    let first_unhealthy = condemned
        .iter()
        .find(|(_, p)| !healthy(p, set.min_ready_seconds, now))
        .map(|(ord, _)| *ord);
    for (ord, pod) in condemned.iter().rev() {
        if is_terminating(pod) {
            if set.ordered {
                return out;
            }
            continue;
        }
        if set.ordered && !running_and_ready(pod) && Some(*ord) != first_unhealthy {
            return out;
        }
        out.delete.push(pod.name_any());
        if set.ordered {
            return out;
        }
    }
    // Parallel: the rolling update waits for this round of creations and deletions.
    if !out.create.is_empty() || !out.delete.is_empty() {
        return out;
    }

    let Strategy::RollingUpdate { partition } = set.strategy else { return out };
    for idx in (partition.max(0)..set.replicas).rev() {
        let Some(pod) = slots[usize::try_from(idx).unwrap_or(0)] else { return out };
        if revision_of(pod) != set.update_revision && !is_terminating(pod) {
            out.delete.push(pod.name_any());
            return out;
        }
        if !healthy(pod, set.min_ready_seconds, now) {
            if running_and_ready(pod) && !is_terminating(pod) {
                out.requeue = Some(until_available(pod, set.min_ready_seconds, now));
            }
            return out;
        }
    }
    out
}

/// The pod for `ordinal`, made from `template` (of revision `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let pod_name = pod_name(&name, ordinal);
    let mut pod = pod_from_template(template, &ns, controller_ref(set));
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(POD_REVISION_LABEL.into(), revision.to_string());
    let spec = set.spec.clone().unwrap_or_default();
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    pod_spec.hostname = Some(pod_name);
    if let Some(svc) = spec.service_name.filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(svc);
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let claim_tpl = claim.name_any();
        volumes.retain(|v| v.name != claim_tpl);
        volumes.push(Volume {
            name: claim_tpl.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&claim_tpl, &name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    pod
}

/// The claims a pod at `ordinal` needs, from the volumeClaimTemplates (labelled with the
/// set's selector, as Kubernetes does).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.name_any();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|tpl| {
            let mut claim = tpl.clone();
            claim.metadata = Default::default();
            claim.metadata.name = Some(claim_name(&tpl.name_any(), &name, ordinal));
            claim.metadata.namespace = set.namespace();
            let mut labels = tpl.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            claim.metadata.labels = Some(labels);
            claim.metadata.annotations = tpl.metadata.annotations.clone();
            claim.status = None;
            claim
        })
        .collect()
}

/// The ownerReferences a claim of `pod` should carry under the set's retention policy:
/// the set when `whenDeleted: Delete`; the pod instead when `whenScaled: Delete` and the
/// pod is beyond the replica range (`condemned`), so the claim goes with it. References to
/// anything else are kept. `None` when nothing changes.
pub fn claim_owner_refs(
    current: &[OwnerReference],
    set: &StatefulSet,
    pod: &Pod,
    condemned: bool,
) -> Option<Vec<OwnerReference>> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    let deleted = policy.when_deleted.as_deref() == Some("Delete");
    let scaled = policy.when_scaled.as_deref() == Some("Delete");
    let set_uid = set.uid().unwrap_or_default();
    let pod_name = pod.name_any();
    let mut want: Vec<OwnerReference> = current
        .iter()
        .filter(|r| r.uid != set_uid && !(r.kind == "Pod" && r.name == pod_name))
        .cloned()
        .collect();
    if scaled && condemned {
        want.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name,
            uid: pod.uid().unwrap_or_default(),
            ..Default::default()
        });
    } else if deleted {
        let mut r = controller_ref(set);
        r.controller = None;
        r.block_owner_deletion = None;
        want.push(r);
    }
    let key = |r: &OwnerReference| r.uid.clone();
    let mut a: Vec<String> = current.iter().map(key).collect();
    let mut b: Vec<String> = want.iter().map(key).collect();
    a.sort();
    b.sort();
    (a != b).then_some(want)
}

/// The set's status from its pods, as Kubernetes computes it (and `kubectl rollout status`
/// reads it): the rollout completes once every pod is updated and Ready.
pub fn compute_status(
    set: &StatefulSet,
    pods: &[&Pod],
    current_revision: &str,
    update_revision: &str,
    collision_count: Option<i32>,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            let rev = revision_of(pod);
            if rev == current_revision {
                current += 1;
            }
            if rev == update_revision {
                updated += 1;
            }
        }
    }
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        // Zeros of the omitempty counters are absent, as kube stores them.
        ready_replicas: (ready != 0).then_some(ready),
        available_replicas: Some(available),
        current_replicas: (current != 0).then_some(current),
        updated_replicas: (updated != 0).then_some(updated),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        collision_count: Some(collision_count.unwrap_or(0)),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    if rolling && updated == replicas && ready == replicas {
        status.current_replicas = (updated != 0).then_some(updated);
        status.current_revision = Some(update_revision.to_string());
    }
    status
}

struct Controller {
    ctx: Arc<Context>,
    queue: WorkQueue,
    sets: Store<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let informers = &ctx.informers;
    let sets = informers.get::<StatefulSet>();
    let pods = informers.get::<Pod>();
    let revisions = informers.get::<ControllerRevision>();
    let claims = informers.get::<PersistentVolumeClaim>();
    sets.wait_until_ready().await;
    pods.wait_until_ready().await;
    revisions.wait_until_ready().await;
    claims.wait_until_ready().await;
    workqueue::enqueue_objects(&sets, &queue);
    workqueue::enqueue_controllers(&pods, &queue, "StatefulSet");
    workqueue::enqueue_controllers(&revisions, &queue, "StatefulSet");
    let (sets, revisions, claims) = (sets.store(), revisions.store(), claims.store());
    let c = Arc::new(Controller { ctx, queue, sets, pods, revisions, claims });
    let queue = c.queue.clone();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "statefulset", move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = set.uid().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let client = self.ctx.client.clone();
        let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
        let now = Timestamp::now();

        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_OWNER_UID, &uid)
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns) && is_controlled_by(&p.metadata, &uid))
            .filter(|p| selector_matches(&spec.selector, p.labels()))
            .collect();
        let mut revisions: Vec<ControllerRevision> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(ns) && is_controlled_by(&r.metadata, &uid))
            .map(|r| (*r).clone())
            .collect();

        let status = set.status.clone().unwrap_or_default();
        let (update, collisions) =
            history::ensure(&rev_api, &*set, &spec.template, &revisions, status.collision_count)
                .await?;
        revisions.retain(|r| r.name_any() != update.name_any());
        revisions.push(update.clone());
        let current = status
            .current_revision
            .as_deref()
            .and_then(|n| revisions.iter().find(|r| r.name_any() == n))
            .cloned()
            .unwrap_or_else(|| update.clone());
        let current_template = history::template_of(&current).unwrap_or(spec.template.clone());

        let view = SetView::of(&set, &update.name_any());
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        self.retain_claims(&set, &view, &pod_refs).await?;
        let plan = plan(&view, &pod_refs, now);

        let creates: Vec<_> = plan
            .create
            .iter()
            .map(|&ord| {
                let (template, rev) = if view.uses_current_revision(ord) {
                    (&current_template, current.name_any())
                } else {
                    (&spec.template, update.name_any())
                };
                let pod = new_pod(&set, template, &rev, ord);
                self.create_pod(&set, pod, ord)
            })
            .collect::<Vec<_>>();
        let deletes: Vec<_> = plan
            .delete
            .iter()
            .map(|name| {
                let uid = pods.iter().find(|p| &p.name_any() == name).and_then(|p| p.uid());
                self.delete_pod(&set, name, uid)
            })
            .collect::<Vec<_>>();
        let (created, deleted) = futures::join!(
            stream::iter(creates).buffer_unordered(BURST).collect::<Vec<_>>(),
            stream::iter(deletes).buffer_unordered(BURST).collect::<Vec<_>>()
        );
        created.into_iter().chain(deleted).collect::<Result<Vec<()>, Error>>()?;

        let new_status = compute_status(
            &set,
            &pod_refs,
            &current.name_any(),
            &update.name_any(),
            collisions,
            now,
        );
        if set.status.as_ref() != Some(&new_status) {
            let api: Api<StatefulSet> = Api::namespaced(client, ns);
            let patch = json!({"status": new_status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(e) if is_gone(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }

        let mut live: HashSet<String> = pods.iter().map(|p| revision_of(p).to_string()).collect();
        live.insert(current.name_any());
        live.insert(update.name_any());
        history::prune(&rev_api, &revisions, &live, spec.revision_history_limit.unwrap_or(10))
            .await?;
        Ok(plan.requeue)
    }

    /// Claims first (an existing one is used as it is), then the pod.
    async fn create_pod(&self, set: &StatefulSet, pod: Pod, ordinal: i32) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let pod_name = pod.name_any();
        let set_name = set.name_any();
        let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for mut claim in claims_for(set, ordinal) {
            let cname = claim.name_any();
            if let Some(existing) = self.claims.get(&ObjectRef::new(&cname).within(&ns)) {
                if existing.metadata.deletion_timestamp.is_some() {
                    return Err(Error::Invalid(format!(
                        "pod {pod_name} waits for claim {cname}, which is being deleted"
                    )));
                }
                continue;
            }
            let placeholder = Pod::default();
            claim.metadata.owner_references =
                claim_owner_refs(&[], set, &placeholder, false).filter(|r| !r.is_empty());
            match claims_api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod_name} in StatefulSet {set_name} success"
                    ),
                ),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    self.ctx.recorder.warning(
                        set,
                        "FailedCreate",
                        format!("create Claim {cname} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            // Our cache lags: the pod is there already.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(
                    set,
                    "FailedCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                );
                Err(e.into())
            }
        }
    }

    async fn delete_pod(
        &self,
        set: &StatefulSet,
        name: &str,
        uid: Option<String>,
    ) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        // The uid precondition keeps a lagging cache from deleting a pod's successor.
        let dp = DeleteParams {
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        let set_name = set.name_any();
        match api.delete(name, &dp).await {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(
                    set,
                    "FailedDelete",
                    format!("delete Pod {name} in StatefulSet {set_name} failed error: {e}"),
                );
                Err(e.into())
            }
        }
    }

    /// Keep every existing claim's ownerReferences in line with the retention policy (before
    /// a condemned pod is deleted, its claims name it as owner).
    async fn retain_claims(
        &self,
        set: &StatefulSet,
        view: &SetView,
        pods: &[&Pod],
    ) -> Result<(), Error> {
        let templates = set.spec.as_ref().and_then(|s| s.volume_claim_templates.clone());
        let Some(templates) = templates.filter(|t| !t.is_empty()) else { return Ok(()) };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for pod in pods {
            let Some(ord) = ordinal_of(&view.name, &pod.name_any()) else { continue };
            let condemned = !(view.start..view.start + view.replicas).contains(&ord);
            for tpl in &templates {
                let cname = claim_name(&tpl.name_any(), &view.name, ord);
                let Some(claim) = self.claims.get(&ObjectRef::new(&cname).within(&ns)) else {
                    continue;
                };
                if claim.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(refs) = claim_owner_refs(claim.owner_references(), set, pod, condemned)
                else {
                    continue;
                };
                let patch = json!({"metadata": {
                    "ownerReferences": refs,
                    "resourceVersion": claim.resource_version(),
                }});
                // A conflict fails the sync, which retries with a fresh cache: a condemned
                // pod is not deleted before its claims name it.
                match api.patch(&cname, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
