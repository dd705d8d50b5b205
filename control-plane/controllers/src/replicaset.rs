//! The ReplicaSet and ReplicationController controller: keeps `replicas` active pods that match
//! the selector, adopting matching orphans and releasing pods that stopped matching; creates
//! in slow-start batches guarded by expectations (the pod cache lags behind our writes);
//! deletes the pods Kubernetes would delete first; writes status every time.
//!
//! Both kinds share one pod cache: a pod event wakes the owner named by its controller
//! reference, or, for an orphan, every owner in its namespace whose selector matches it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{StreamExt, future};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, applier};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::expectations::{EXPECTATION_TTL, Expectations};
use crate::pods::{
    controller_of, controller_ref, is_active, is_ready, is_terminating, labels_of, phase,
    pod_from_template, ready_since, selector_is_empty, selector_matches,
};
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
    s.available_replicas =
        pods.iter().filter(|p| crate::pods::is_available(p, min_ready_seconds, now)).count() as i32;
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

/// A change seen by [`informer`]: the cached object before (none when new) and the object now
/// (none when deleted).
pub(crate) enum Change<'a, K> {
    Upsert {
        old: Option<Arc<K>>,
        new: &'a K,
    },
    Delete {
        old: Option<Arc<K>>,
        gone: &'a K,
    },
    /// A (re)list finished: every cached object may have changed.
    Resynced,
}

/// Watch `api` into `writer`, telling `on_change` about each change once the cache holds it.
pub(crate) async fn informer<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    mut on_change: impl FnMut(Change<'_, K>),
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let reader = writer.as_reader();
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, "watch failed; retrying");
                continue;
            }
        };
        let old = match &ev {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                reader.get(&ObjectRef::from_obj(o))
            }
            _ => None,
        };
        writer.apply_watcher_event(&ev);
        match &ev {
            watcher::Event::Apply(new) => on_change(Change::Upsert { old, new }),
            watcher::Event::Delete(gone) => on_change(Change::Delete { old, gone }),
            watcher::Event::InitDone => on_change(Change::Resynced),
            _ => {}
        }
    }
    Ok(())
}

/// Run `reconcile` for the objects of `store` named on `queue`, one at a time per object.
pub(crate) async fn drive<K, C, F>(
    name: &'static str,
    store: Store<K>,
    queue: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    ctx: Arc<C>,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> F,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let error_policy = |_: Arc<K>, e: &Error, _: Arc<C>| {
        tracing::debug!(controller = name, error = %e, "reconcile failed; retrying");
        // A conflict means our cache was behind a write: look again soon.
        match e {
            Error::Kube(e) if is_conflict(e) => Action::requeue(Duration::from_millis(100)),
            _ => Action::requeue(Duration::from_secs(1)),
        }
    };
    let mut reconcile = reconcile;
    let queue = queue.map(Ok::<_, Infallible>);
    applier(
        move |o, c| Box::pin(reconcile(o, c)),
        error_policy,
        ctx,
        store,
        queue,
        Config::default(),
    )
    .for_each(|r| {
        if let Err(e) = r {
            tracing::trace!(controller = name, error = %e, "reconcile");
        }
        future::ready(())
    })
    .await;
}

/// One kind's side of the controller: its cache, its wake-up queue and its expectations.
struct Side<K: Resource<DynamicType = ()> + 'static> {
    kind: &'static str,
    owners: Store<K>,
    wake: UnboundedSender<ObjectRef<K>>,
    expectations: Expectations,
}

impl<K: ReplicaOwner> Side<K> {
    fn wake(&self, ns: &str, name: &str) {
        let _ = self.wake.unbounded_send(ObjectRef::new(name).within(ns));
    }

    fn wake_all(&self) {
        for o in self.owners.state() {
            let _ = self.wake.unbounded_send(ObjectRef::from_obj(&*o));
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
                        let _ = self.wake.unbounded_send(ObjectRef::from_obj(&*o));
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
}

struct Shared<K: Resource<DynamicType = ()> + 'static> {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    side: Arc<Side<K>>,
}

/// Watch ReplicaSets, ReplicationControllers and pods; reconcile each owner on its changes.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (rc_store, rc_writer) = reflector::store::<ReplicationController>();
    let (rs_tx, rs_rx) = unbounded();
    let (rc_tx, rc_rx) = unbounded();
    let rs = Arc::new(Side {
        kind: "ReplicaSet",
        owners: rs_store.clone(),
        wake: rs_tx,
        expectations: Expectations::default(),
    });
    let rc = Arc::new(Side {
        kind: "ReplicationController",
        owners: rc_store.clone(),
        wake: rc_tx,
        expectations: Expectations::default(),
    });

    let pod_events = {
        let (rs, rc) = (rs.clone(), rc.clone());
        informer(Api::<Pod>::all(client.clone()), pod_writer, move |change| match change {
            Change::Upsert { old, new } => {
                rs.observe(old.as_deref(), Some(new));
                rc.observe(old.as_deref(), Some(new));
                // A pod that changed controller wakes its former one too.
                if let Some(old) = old.as_deref()
                    && controller_of(&old.metadata) != controller_of(&new.metadata)
                {
                    rs.wake_for(old);
                    rc.wake_for(old);
                }
                rs.wake_for(new);
                rc.wake_for(new);
            }
            Change::Delete { old, gone } => {
                rs.observe(old.as_deref().or(Some(gone)), None);
                rc.observe(old.as_deref().or(Some(gone)), None);
                rs.wake_for(gone);
                rc.wake_for(gone);
            }
            Change::Resynced => {
                rs.wake_all();
                rc.wake_all();
            }
        })
    };
    let rs_events = owner_events(Api::<ReplicaSet>::all(client.clone()), rs_writer, rs.clone());
    let rc_events = owner_events(Api::all(client.clone()), rc_writer, rc.clone());
    let rs_shared = Arc::new(Shared { ctx: ctx.clone(), pods: pods.clone(), side: rs });
    let rc_shared = Arc::new(Shared { ctx, pods, side: rc });
    let rs_loop = drive("replicaset", rs_store, rs_rx, rs_shared, reconcile::<ReplicaSet>);
    let rc_loop = drive(
        "replicationcontroller",
        rc_store,
        rc_rx,
        rc_shared,
        reconcile::<ReplicationController>,
    );
    let (a, b, c, ..) = tokio::join!(pod_events, rs_events, rc_events, rs_loop, rc_loop);
    a.and(b).and(c)
}

async fn owner_events<K: ReplicaOwner>(
    api: Api<K>,
    writer: Writer<K>,
    side: Arc<Side<K>>,
) -> Result<(), Error> {
    informer(api, writer, |change| match change {
        Change::Upsert { new, .. } => {
            let _ = side.wake.unbounded_send(ObjectRef::from_obj(new));
        }
        Change::Delete { gone, .. } => side.expectations.forget(&key_of(gone)),
        Change::Resynced => side.wake_all(),
    })
    .await
}

fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

async fn reconcile<K: ReplicaOwner>(owner: Arc<K>, sh: Arc<Shared<K>>) -> Result<Action, Error> {
    let _ = sh.pods.wait_until_ready().await;
    let ns = owner.namespace().unwrap_or_default();
    let key = key_of(&*owner);
    let uid = owner.uid().unwrap_or_default();
    let needs_sync = sh.side.expectations.satisfied(&key);
    let selector = owner.pod_selector();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let pods_api: Api<Pod> = Api::namespaced(sh.ctx.client.clone(), &ns);

    // Claim: ours that still match, plus matching orphans (adopted); release ours that don't.
    let mut mine = Vec::new();
    let mut adopt = Vec::new();
    for pod in sh.pods.state() {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) || !is_active(&pod) {
            continue;
        }
        let matches = !selector_is_empty(&selector)
            && selector_matches(&selector, pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS));
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    mine.push(pod);
                } else if !deleting {
                    release(&pods_api, &pod, &uid).await;
                }
            }
            Some(_) => {}
            None if matches && !deleting => adopt.push(pod),
            None => {}
        }
    }
    let owner_ref = controller_ref(&*owner);
    let adopted = future::join_all(adopt.iter().map(|p| adopt_pod(&pods_api, p, &owner_ref))).await;
    mine.extend(adopt.into_iter().zip(adopted).filter(|(_, ok)| *ok).map(|(p, _)| p));

    let mut manage_error = None;
    if needs_sync
        && !deleting
        && let Err(e) = manage(&*owner, &mine, &sh, &pods_api, &key).await
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
        let api: Api<K> = Api::namespaced(sh.ctx.client.clone(), &ns);
        match api
            .patch_status(
                &owner.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status.to_patch()),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(e) = manage_error {
        return Err(Error::Invalid(e));
    }
    // Wake up when the next ready pod becomes available (minReadySeconds).
    let min_ready = owner.min_ready_seconds();
    if min_ready > 0 {
        let next = mine
            .iter()
            .filter(|p| is_ready(p) && !crate::pods::is_available(p, min_ready, now))
            .filter_map(|p| ready_since(p).flatten())
            .map(|since| since.as_second() + i64::from(min_ready) - now.as_second())
            .min();
        if let Some(secs) = next {
            return Ok(Action::requeue(Duration::from_secs(secs.clamp(0, 3600) as u64 + 1)));
        }
    }
    if !sh.side.expectations.satisfied(&key) {
        return Ok(Action::requeue(EXPECTATION_TTL));
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Create or delete pods so that `mine` becomes `replicas` (at most a burst per sync).
async fn manage<K: ReplicaOwner>(
    owner: &K,
    mine: &[Arc<Pod>],
    sh: &Shared<K>,
    pods_api: &Api<Pod>,
    key: &str,
) -> Result<(), String> {
    let desired = owner.desired_replicas().max(0) as usize;
    let recorder = &sh.ctx.recorder;
    let exp = &sh.side.expectations;
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
            let results = future::join_all((0..batch).map(|_| pods_api.create(&post, &pod))).await;
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
                        recorder.warning(owner, "FailedDelete", format!("Error deleting: {msg}"));
                        failure.get_or_insert(msg);
                    }
                }
            }
        }
        return failure.map_or(Ok(()), Err);
    }
    Ok(())
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
