//! The ReplicaSet and ReplicationController controller (Kubernetes'
//! `pkg/controller/replicaset`): keeps `replicas` active pods that match the selector,
//! adopting matching orphans and releasing pods that stopped matching; creates in slow-start
//! batches guarded by expectations (the pod cache lags behind our writes); deletes the pods
//! Kubernetes would delete first; writes status every time.
//!
//! Both kinds read the shared pod informer: a pod change wakes (queues the key of) the owner
//! named by its controller reference, or, for an orphan, every owner in its namespace whose
//! selector matches it; a sync reads the owner's pods from the owner-uid index.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_client_tools::informers::{BY_OWNER_UID, Change, Informer, ORPHANS_BY_NAMESPACE};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::labels::{labels_of, selector_is_empty, selector_matches};
use skiff_helpers::pods::{
    controller_of, controller_ref, is_active, is_ready, is_terminating, phase, pod_from_template,
    ready_since,
};
use tokio::task::JoinSet;

use crate::expectations::{EXPECTATION_TTL, Expectations};
use crate::{Context, Error};

/// Kubernetes' `burstReplicas`: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;
/// The first slow-start batch; each next batch doubles.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    fn desired_replicas(&self) -> i32;
    fn pod_selector(&self) -> LabelSelector;
    fn pod_template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    /// The status as written now (both kinds' statuses have the same JSON shape).
    fn current_status(&self) -> ReplicaStatus;
}

impl ReplicaOwner for ReplicaSet {
    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn pod_selector(&self) -> LabelSelector {
        self.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default()
    }
    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        ReplicaStatus::from_json(self.status.as_ref())
    }
}

impl ReplicaOwner for ReplicationController {
    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn pod_selector(&self) -> LabelSelector {
        let spec = self.spec.as_ref();
        // An RC without a selector selects its template's labels (the API server defaults it).
        let labels = spec
            .and_then(|s| s.selector.clone())
            .or_else(|| spec?.template.as_ref()?.metadata.as_ref()?.labels.clone());
        LabelSelector { match_labels: labels, match_expressions: None }
    }
    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        ReplicaStatus::from_json(self.status.as_ref())
    }
}

/// The status of a ReplicaSet or ReplicationController (same fields, same JSON).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaSetCondition>,
}

impl ReplicaStatus {
    fn from_json<S: Serialize>(status: Option<&S>) -> Self {
        status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// The status as a merge patch; zero counts are left out as Kubernetes leaves them out.
    fn to_patch(&self) -> Value {
        let nz = |n: i32| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": nz(self.fully_labeled_replicas),
            "readyReplicas": nz(self.ready_replicas),
            "availableReplicas": nz(self.available_replicas),
            "observedGeneration": self.observed_generation,
            "conditions": if self.conditions.is_empty() { Value::Null } else { json!(self.conditions) },
        }})
    }
}

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What the owner asks for, as far as its status goes.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub template_labels: BTreeMap<String, String>,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub generation: i64,
}

/// Kubernetes' `calculateStatus`: counts over the owner's active pods, and the ReplicaFailure
/// condition set on a failed create/delete and cleared after a clean sync.
pub fn compute_status(
    prev: &ReplicaStatus,
    wanted: &Wanted,
    pods: &[Arc<Pod>],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaStatus {
    let (template_labels, min_ready_seconds) = (&wanted.template_labels, wanted.min_ready_seconds);
    let mut s = prev.clone();
    s.replicas = pods.len() as i32;
    s.fully_labeled_replicas = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count() as i32;
    s.ready_replicas = pods.iter().filter(|p| is_ready(p)).count() as i32;
    s.available_replicas = pods
        .iter()
        .filter(|p| skiff_helpers::pods::is_available(p, min_ready_seconds, now))
        .count() as i32;
    s.observed_generation = wanted.generation;
    let has_failure = s.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(msg) if !has_failure => {
            let reason = match (pods.len() as i32).cmp(&wanted.replicas) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            s.conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(msg.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => s.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    s
}

/// Sizes of the slow-start batches for `count` creations: 1, 2, 4, … (the last one what is left).
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut remaining, mut size) = (count, initial.max(1).min(count));
    while size > 0 {
        out.push(size);
        remaining -= size;
        size = (2 * size).min(remaining);
    }
    out
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Kubernetes' `ActivePodsWithRanks` order: `Less` means `a` goes (is deleted) before `b`.
/// Unassigned before assigned; Pending < Unknown < Running; not ready before ready; lower
/// deletion cost first; more pods on the same node (`rank`) first; ready for less time first;
/// more restarts first; newer first.
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let assigned = |p: &Pod| !node_of(p).is_empty();
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (ready_since(a).flatten(), ready_since(b).flatten()) {
            // Ready more recently goes first.
            (Some(ta), Some(tb)) if is_ready(a) && is_ready(b) => tb.cmp(&ta),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created(a), created(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(ta), Some(tb)) => tb.cmp(&ta),
            }
        })
}

/// The `count` pods to delete first among `pods` (Kubernetes' `getPodsToDelete`); a pod's
/// rank is how many of `pods` share its node.
pub fn pods_to_delete(pods: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        *per_node.entry(node_of(p)).or_default() += 1;
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> =
        pods.iter().map(|p| (per_node.get(node_of(p)).copied().unwrap_or(0), p)).collect();
    ranked.sort_by(|(ra, a), (rb, b)| deletion_order(a, *ra, b, *rb));
    ranked.into_iter().take(count).map(|(_, p)| p.clone()).collect()
}

/// The message of an API error as Kubernetes prints it (without kube's wrapping).
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// How soon a sync that failed on a conflict looks again: our cache was behind a write, and
/// the watch brings the newer object within moments (no backoff, as before the work queue).
pub(crate) const CONFLICT_RETRY: Duration = Duration::from_millis(100);

/// Turn a conflict into a quick look again instead of a backed-off retry.
pub(crate) fn retry_conflict_soon(
    what: &'static str,
    key: &str,
    result: Result<Requeue, Error>,
) -> Result<Requeue, Error> {
    match result {
        Err(Error::Kube(e)) if is_conflict(&e) => {
            tracing::debug!(controller = what, key, error = %e, "conflict; looking again soon");
            Ok(Some(CONFLICT_RETRY))
        }
        other => other,
    }
}

/// Syncs of different ReplicaSets run at once (creating pods is mostly waiting on the API).
const RS_WORKERS: usize = 8;
/// ReplicationControllers are the legacy kind: fewer at once is plenty.
const RC_WORKERS: usize = 4;
/// Without a change, an owner is looked at again after this long anyway.
const RESYNC: Duration = Duration::from_secs(600);

/// One kind's side of the controller, all its informer handlers need: its cache, its work
/// queue and its expectations. No client in here: the handlers live as long as the shared
/// informers do.
struct Side<K: Resource<DynamicType = ()> + 'static> {
    kind: &'static str,
    owners: Store<K>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl<K: ReplicaOwner> Side<K> {
    fn wake(&self, ns: &str, name: &str) {
        self.queue.add(&format!("{ns}/{name}"));
    }

    fn wake_all(&self) {
        for o in self.owners.state() {
            self.queue.add(&key_of(&*o));
        }
    }

    /// The owners a pod event concerns: its controller if of this kind, or for an orphan
    /// every owner in its namespace whose selector matches it.
    fn wake_for(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        match controller_of(&pod.metadata) {
            Some(r) if r.kind == self.kind => self.wake(ns, &r.name),
            Some(_) => {}
            None if !is_terminating(pod) => {
                let labels = labels_of(&pod.metadata);
                for o in self.owners.state() {
                    let sel = o.pod_selector();
                    if o.namespace().as_deref() == Some(ns)
                        && !selector_is_empty(&sel)
                        && selector_matches(&sel, &labels)
                    {
                        self.queue.add(&key_of(&*o));
                    }
                }
            }
            None => {}
        }
    }

    /// Lower the expectations of a pod's controller for what this change shows.
    fn observe(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let Some(pod) = new.or(old) else { return };
        let Some(owner) = controller_of(&pod.metadata).filter(|r| r.kind == self.kind) else {
            return;
        };
        let key =
            format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), owner.name);
        let was_deleting = old.is_some_and(is_terminating);
        match (old, new) {
            (None, Some(p)) if !is_terminating(p) => self.expectations.creation_observed(&key),
            (_, Some(p)) if is_terminating(p) && !was_deleting => {
                self.expectations.deletion_observed(&key)
            }
            (_, None) if !was_deleting => self.expectations.deletion_observed(&key),
            _ => {}
        }
    }

    /// Tell `owners`' changes and the pods' changes to this side.
    fn watch(self: &Arc<Self>, owners: &Informer<K>, pods: &Informer<Pod>) {
        let side = self.clone();
        owners.on_change(move |change| match change {
            Change::Upsert { new, .. } => side.queue.add(&key_of(*new)),
            Change::Delete { gone, .. } => side.expectations.forget(&key_of(*gone)),
            Change::Resynced => side.wake_all(),
        });
        // Runs on the pod watch's task with the pod informer locked: it must not read the pod
        // informer's indexes.
        let side = self.clone();
        pods.on_change(move |change| match change {
            Change::Upsert { old, new } => {
                side.observe(old.as_deref(), Some(*new));
                // A pod that changed controller wakes its former one too.
                if let Some(old) = old.as_deref()
                    && controller_of(&old.metadata) != controller_of(&new.metadata)
                {
                    side.wake_for(old);
                }
                side.wake_for(new);
            }
            Change::Delete { old, gone } => {
                side.observe(old.as_deref().or(Some(*gone)), None);
                side.wake_for(gone);
            }
            Change::Resynced => side.wake_all(),
        });
    }
}

/// One kind's controller: its side, the shared pod informer and the client.
struct Controller<K: Resource<DynamicType = ()> + 'static> {
    ctx: Arc<Context>,
    pods: Informer<Pod>,
    side: Arc<Side<K>>,
}

/// Run the ReplicaSet and the ReplicationController controllers on the shared informers.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let pods = ctx.informers.get::<Pod>();
    let sets = ctx.informers.get::<ReplicaSet>();
    let rcs = ctx.informers.get::<ReplicationController>();
    pods.wait_until_ready().await;
    sets.wait_until_ready().await;
    rcs.wait_until_ready().await;
    let mut tasks = JoinSet::new();
    Controller::start(&ctx, "ReplicaSet", &sets, &pods, &mut tasks, "replicaset", RS_WORKERS);
    Controller::start(
        &ctx,
        "ReplicationController",
        &rcs,
        &pods,
        &mut tasks,
        "replicationcontroller",
        RC_WORKERS,
    );
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl<K: ReplicaOwner> Controller<K> {
    /// Register the handlers that fill the kind's queue and start the workers that drain it.
    fn start(
        ctx: &Arc<Context>,
        kind: &'static str,
        owners: &Informer<K>,
        pods: &Informer<Pod>,
        tasks: &mut JoinSet<()>,
        what: &'static str,
        workers: usize,
    ) {
        let side = Arc::new(Side {
            kind,
            owners: owners.store(),
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
        });
        side.watch(owners, pods);
        let queue = side.queue.clone();
        let c = Arc::new(Self { ctx: ctx.clone(), pods: pods.clone(), side });
        workqueue::spawn_workers(tasks, &queue, workers, what, move |key| {
            let c = c.clone();
            async move { retry_conflict_soon(what, &key, c.sync(&key).await) }
        });
    }

    /// The owner's active pods: ours that still match; matching orphans, adopted; ours that
    /// stopped matching are released.
    async fn claim_pods(&self, owner: &K, pods_api: &Api<Pod>) -> Vec<Arc<Pod>> {
        let ns = owner.namespace().unwrap_or_default();
        let uid = owner.uid().unwrap_or_default();
        let selector = owner.pod_selector();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let matches = |pod: &Pod| {
            !selector_is_empty(&selector)
                && selector_matches(&selector, pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
        };
        let in_scope =
            |pod: &Pod| pod.metadata.namespace.as_deref() == Some(ns.as_str()) && is_active(pod);
        let mut mine = Vec::new();
        for pod in self.pods.by_index(BY_OWNER_UID, &uid) {
            if !in_scope(&pod) || controller_of(&pod.metadata).is_none_or(|r| r.uid != uid) {
                continue;
            }
            if matches(&pod) {
                mine.push(pod);
            } else if !deleting {
                release(pods_api, &pod, &uid).await;
            }
        }
        if deleting {
            return mine;
        }
        let adopt: Vec<Arc<Pod>> = self
            .pods
            .by_index(ORPHANS_BY_NAMESPACE, &ns)
            .into_iter()
            .filter(|p| in_scope(p) && controller_of(&p.metadata).is_none() && matches(p))
            .collect();
        if adopt.is_empty() {
            return mine;
        }
        let owner_ref = controller_ref(owner);
        let adopted =
            future::join_all(adopt.iter().map(|p| adopt_pod(pods_api, p, &owner_ref))).await;
        mine.extend(adopt.into_iter().zip(adopted).filter(|(_, ok)| *ok).map(|(p, _)| p));
        mine
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let Some(owner) = self.side.owners.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let needs_sync = self.side.expectations.satisfied(key);
        let deleting = owner.meta().deletion_timestamp.is_some();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let mine = self.claim_pods(&owner, &pods_api).await;

        let mut manage_error = None;
        if needs_sync
            && !deleting
            && let Err(e) = self.manage(&*owner, &mine, &pods_api, key).await
        {
            manage_error = Some(e);
        }

        let now = Timestamp::now();
        let wanted = Wanted {
            template_labels: owner
                .pod_template()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            replicas: owner.desired_replicas(),
            min_ready_seconds: owner.min_ready_seconds(),
            generation: owner.meta().generation.unwrap_or(0),
        };
        let prev = owner.current_status();
        let status = compute_status(&prev, &wanted, &mine, manage_error.as_deref(), now);
        if status != prev {
            let api: Api<K> = Api::namespaced(self.ctx.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(status.to_patch()))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(e) = manage_error {
            return Err(Error::Invalid(e));
        }
        // Look again when the next ready pod becomes available (minReadySeconds).
        let min_ready = owner.min_ready_seconds();
        if min_ready > 0 {
            let next = mine
                .iter()
                .filter(|p| is_ready(p) && !skiff_helpers::pods::is_available(p, min_ready, now))
                .filter_map(|p| ready_since(p).flatten())
                .map(|since| since.as_second() + i64::from(min_ready) - now.as_second())
                .min();
            if let Some(secs) = next {
                return Ok(Some(Duration::from_secs(secs.clamp(0, 3600) as u64 + 1)));
            }
        }
        if !self.side.expectations.satisfied(key) {
            return Ok(Some(EXPECTATION_TTL));
        }
        Ok(Some(RESYNC))
    }

    /// Create or delete pods so that `mine` becomes `replicas` (at most a burst per sync).
    async fn manage(
        &self,
        owner: &K,
        mine: &[Arc<Pod>],
        pods_api: &Api<Pod>,
        key: &str,
    ) -> Result<(), String> {
        let desired = owner.desired_replicas().max(0) as usize;
        let recorder = &self.ctx.recorder;
        let exp = &self.side.expectations;
        if mine.len() < desired {
            let Some(template) = owner.pod_template() else { return Ok(()) };
            let count = (desired - mine.len()).min(BURST_REPLICAS);
            exp.expect(key, count as i64, 0);
            let mut pod = pod_from_template(
                template,
                &owner.namespace().unwrap_or_default(),
                controller_ref(owner),
            );
            pod.metadata.generate_name = Some(format!("{}-", owner.name_any()));
            let post = PostParams::default();
            let mut created = 0;
            let mut failure = None;
            for batch in slow_start_batches(count, SLOW_START_INITIAL_BATCH) {
                let results =
                    future::join_all((0..batch).map(|_| pods_api.create(&post, &pod))).await;
                for r in results {
                    match r {
                        Ok(p) => {
                            created += 1;
                            recorder.normal(
                                owner,
                                "SuccessfulCreate",
                                format!("Created pod: {}", p.name_any()),
                            );
                        }
                        Err(e) => {
                            let msg = api_message(&e);
                            // A terminating namespace refuses new pods; nothing to report.
                            if !msg.contains("because it is being terminated") {
                                recorder.warning(
                                    owner,
                                    "FailedCreate",
                                    format!("Error creating: {msg}"),
                                );
                                failure.get_or_insert(msg);
                            }
                        }
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            // Creations that failed or were never tried will never be seen.
            for _ in created..count {
                exp.creation_observed(key);
            }
            return failure.map_or(Ok(()), Err);
        }
        if mine.len() > desired {
            let count = (mine.len() - desired).min(BURST_REPLICAS);
            let victims = pods_to_delete(mine, count);
            exp.expect(key, 0, victims.len() as i64);
            let params = DeleteParams::default();
            let results = future::join_all(victims.iter().map(|p| {
                let name = p.name_any();
                let params = &params;
                async move { pods_api.delete(&name, params).await }
            }))
            .await;
            let mut failure = None;
            for (pod, r) in victims.iter().zip(results) {
                match r {
                    Ok(_) => recorder.normal(
                        owner,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", pod.name_any()),
                    ),
                    Err(e) => {
                        exp.deletion_observed(key);
                        if !is_not_found(&e) {
                            let msg = api_message(&e);
                            recorder.warning(
                                owner,
                                "FailedDelete",
                                format!("Error deleting: {msg}"),
                            );
                            failure.get_or_insert(msg);
                        }
                    }
                }
            }
            return failure.map_or(Ok(()), Err);
        }
        Ok(())
    }
}

/// Put `owner` as controller onto an orphan pod; false when the pod is gone or taken.
async fn adopt_pod(api: &Api<Pod>, pod: &Pod, owner: &OwnerReference) -> bool {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner.clone());
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(pod = %pod.name_any(), error = %e, "adoption failed");
            false
        }
    }
}

/// Remove our owner reference from a pod that no longer matches our selector.
async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != uid);
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }});
    if let Err(e) = api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "release failed");
    }
}

#[cfg(test)]
mod tests;
