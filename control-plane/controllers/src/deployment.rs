//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! Kubernetes does. The ReplicaSet whose template equals the Deployment's is the new one
//! (named `<deployment>-<pod-template-hash>`); the others are old and are scaled down as the
//! new one becomes available (RollingUpdate: `maxSurge`/`maxUnavailable`), or all at once
//! first (Recreate). Revisions live in the ReplicaSets' `deployment.kubernetes.io/revision`
//! annotation, which is what `kubectl rollout history|undo` read; status and the `Progressing`
//! and `Available` conditions are what `kubectl rollout status` and `helm --wait` read.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use serde_json::{Value, json};

use crate::pods::{
    controller_of, controller_ref, labels_of, phase, selector_is_empty, selector_matches,
};
use crate::replicaset::{Change, api_message, drive, informer, is_not_found};
use crate::{Context, Error};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

// Kubernetes' condition reasons.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";

// ---------------------------------------------------------------------------------------------
// Pure decisions

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status<T>(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> T,
) -> Option<T> {
    rs.status.as_ref().map(f)
}

fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.replicas).unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.ready_replicas.unwrap_or(0)).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.available_replicas.unwrap_or(0)).unwrap_or(0)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int-or-percent against `total` (Kubernetes' `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.trim().parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let num = pct * i64::from(total);
            let v = if round_up { (num + 99).div_euclid(100) } else { num.div_euclid(100) };
            v as i32
        }
    }
}

/// `(maxSurge, maxUnavailable)` as counts for `desired` replicas: surge rounds up,
/// unavailable down, and both zero becomes unavailable 1 (Kubernetes' `ResolveFenceposts`).
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(surge.unwrap_or(&quarter), desired, true);
    let unavailable = scaled_value(unavailable.unwrap_or(&quarter), desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru =
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas_of(d),
    )
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = replicas_of(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas)
}

/// Kubernetes' `rand.SafeEncodeString`: digits mapped onto consonants and digits that cannot
/// spell words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The `pod-template-hash` of a template: FNV-32a of the template (without its own hash
/// label) and the collision count, safe-encoded, as Kubernetes' `ComputeHash`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
    }
    let bytes = serde_json::to_vec(&normalized(&t)).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// A template as JSON without nulls and empty maps/lists, so that a field left out and one
/// set empty compare equal.
fn normalized(t: &PodTemplateSpec) -> Value {
    fn strip(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let m: serde_json::Map<String, Value> =
                    m.into_iter().filter_map(|(k, v)| strip(v).map(|v| (k, v))).collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => {
                let a: Vec<Value> = a.into_iter().map(|v| strip(v).unwrap_or(json!({}))).collect();
                (!a.is_empty()).then_some(Value::Array(a))
            }
            v => Some(v),
        }
    }
    strip(serde_json::to_value(t).unwrap_or(Value::Null)).unwrap_or(Value::Null)
}

/// Templates equal once the `pod-template-hash` label is ignored (Kubernetes' `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(POD_TEMPLATE_HASH);
        }
        normalized(&t)
    };
    strip(a) == strip(b)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, ties by name (Kubernetes' `ReplicaSetsByCreationTimestamp`).
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a).cmp(&created(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The oldest ReplicaSet whose template is the Deployment's.
pub fn find_new_rs<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = d.spec.as_ref().map(|s| &s.template)?;
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// The revision a new (or re-used) ReplicaSet gets: one past the old ones' highest.
pub fn next_revision(old: &[&ReplicaSet]) -> i64 {
    old.iter().map(|rs| revision(rs)).max().unwrap_or(0) + 1
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: the Deployment's own annotations, the new
/// revision (keeping former ones in `revision-history` when a rollback re-uses the set) and,
/// for a set about to be created, the replica annotations. True when something changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = ann.get(REVISION).cloned();
    let old_n: i64 = old.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    if old_n < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = ann.get(REVISION_HISTORY).filter(|h| !h.is_empty());
            let history = match history {
                Some(h) => format!("{h},{old}"),
                None => old,
            };
            ann.insert(REVISION_HISTORY.into(), history);
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas_of(d), replicas_of(d) + max_surge(d));
    }
    changed
}

fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// How many replicas the new ReplicaSet should have now (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    let desired = replicas_of(d);
    if !is_rolling(d) {
        return desired;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - current).min(desired - new_rs_replicas);
    new_rs_replicas + up
}

/// How many old replicas may go now without breaking `maxUnavailable` (the bound of
/// Kubernetes' `reconcileOldReplicaSets`).
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let all_pods: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let min_available = replicas_of(d) - max_unavailable(d);
    let new_unavailable = new_rs.map_or(0, |rs| rs_replicas(rs) - rs_available(rs));
    all_pods - min_available - new_unavailable
}

/// Kubernetes' `calculateStatus`, with the `Available` condition.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let prev = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_actual(rs)).sum()),
        updated_replicas: Some(new_rs.map_or(0, rs_actual)),
        ready_replicas: Some(all.iter().map(|rs| rs_ready(rs)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: prev.collision_count,
        conditions: prev.conditions.clone(),
        terminating_replicas: None,
    };
    let cond = if available >= replicas_of(d) - max_unavailable(d) {
        condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// Kubernetes' `SetDeploymentCondition`: same status and reason is no change; same status
/// keeps the transition time.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_default().push(c);
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
}

fn generation_observed(d: &Deployment, s: &DeploymentStatus) -> bool {
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Every replica updated and available, and the newest generation observed.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas_of(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && generation_observed(d, s)
}

fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(c) = get_condition(s, PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

/// The Progressing condition of a rollout (Kubernetes' `syncRolloutStatus`), applied to `status`.
pub fn rollout_progress(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    status: &mut DeploymentStatus,
    now: Timestamp,
) {
    if progress_deadline(d).is_none() {
        remove_condition(status, PROGRESSING);
        return;
    }
    let prev = d.status.clone().unwrap_or_default();
    let current = get_condition(&prev, PROGRESSING).cloned();
    let complete_already = status.replicas == status.updated_replicas
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if complete_already {
        return;
    }
    let rs_name = new_rs.map(|rs| rs.name_any());
    if deployment_complete(d, status) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
            None => format!("Deployment \"{}\" has successfully progressed.", d.name_any()),
        };
        set_condition(status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now));
    } else if deployment_progressing(d, status) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
            None => format!("Deployment \"{}\" is progressing.", d.name_any()),
        };
        let mut c = condition(PROGRESSING, "True", RS_UPDATED, &msg, now);
        if let Some(cur) = &current {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(status, PROGRESSING);
        }
        set_condition(status, c);
    } else if timed_out(d, status, now) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
            None => format!("Deployment \"{}\" has timed out progressing.", d.name_any()),
        };
        set_condition(status, condition(PROGRESSING, "False", TIMED_OUT, &msg, now));
    }
}

/// Proportional scaling (Kubernetes' `scale` for a rollout in progress): the new size of each
/// active set, given as `(replicas, max-replicas annotation, created)`, so that the total is
/// `desired + maxSurge`, spread in proportion to their sizes; leftovers go to the largest.
pub fn proportional_sizes(
    desired: i32,
    surge: i32,
    status_replicas: i32,
    sets: &[(i32, Option<i32>, Option<Timestamp>)],
) -> Vec<i32> {
    let total: i32 = sets.iter().map(|s| s.0).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    // Largest first; ties: newer first when adding, older first when removing.
    order.sort_by(|&a, &b| {
        sets[b].0.cmp(&sets[a].0).then_with(|| {
            if to_add > 0 { sets[b].2.cmp(&sets[a].2) } else { sets[a].2.cmp(&sets[b].2) }
        })
    });
    let mut sizes: Vec<i32> = sets.iter().map(|s| s.0).collect();
    if to_add == 0 {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let (replicas, annotated, _) = sets[i];
        let proportion = if replicas == 0 || to_add == added {
            0
        } else {
            let fraction = if desired == 0 {
                -replicas
            } else {
                let annotated = annotated.unwrap_or(status_replicas).max(1);
                let want = f64::from(replicas) * f64::from(desired + surge) / f64::from(annotated);
                want.round() as i32 - replicas
            };
            let allowed = to_add - added;
            if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
        };
        sizes[i] += proportion;
        added += proportion;
    }
    if let Some(&first) = order.first() {
        sizes[first] = (sizes[first] + to_add - added).max(0);
    }
    sizes
}

// ---------------------------------------------------------------------------------------------
// The controller

struct Shared {
    ctx: Arc<Context>,
    sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
}

/// Watch Deployments and ReplicaSets; reconcile a Deployment when it or one of its sets changes.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (deployments, d_writer) = reflector::store::<Deployment>();
    let (sets, rs_writer) = reflector::store::<ReplicaSet>();
    let (tx, rx) = unbounded::<ObjectRef<Deployment>>();
    let wake_owner = {
        let (tx, deployments) = (tx.clone(), deployments.clone());
        move |rs: &ReplicaSet| wake_for_rs(&tx, &deployments, rs)
    };
    let d_events = {
        let (tx, deployments) = (tx.clone(), deployments.clone());
        informer(Api::<Deployment>::all(client.clone()), d_writer, move |change| match change {
            Change::Upsert { new, .. } => {
                let _ = tx.unbounded_send(ObjectRef::from_obj(new));
            }
            Change::Resynced => {
                for d in deployments.state() {
                    let _ = tx.unbounded_send(ObjectRef::from_obj(&*d));
                }
            }
            Change::Delete { .. } => {}
        })
    };
    let rs_events =
        informer(Api::<ReplicaSet>::all(client.clone()), rs_writer, move |change| match change {
            Change::Upsert { old, new } => {
                if let Some(old) = old.as_deref()
                    && controller_of(&old.metadata) != controller_of(&new.metadata)
                {
                    wake_owner(old);
                }
                wake_owner(new);
            }
            Change::Delete { gone, .. } => wake_owner(gone),
            Change::Resynced => {}
        });
    let shared = Arc::new(Shared { ctx, sets, deployments: deployments.clone() });
    let control = drive("deployment", deployments, rx, shared, reconcile);
    let (a, b, ()) = tokio::join!(d_events, rs_events, control);
    a.and(b)
}

fn wake_for_rs(
    tx: &UnboundedSender<ObjectRef<Deployment>>,
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) {
    let ns = rs.namespace().unwrap_or_default();
    match controller_of(&rs.metadata) {
        Some(r) if r.kind == "Deployment" => {
            let _ = tx.unbounded_send(ObjectRef::new(&r.name).within(&ns));
        }
        Some(_) => {}
        None => {
            let labels = labels_of(&rs.metadata);
            for d in deployments.state() {
                let sel = d.spec.as_ref().map(|s| &s.selector);
                if d.namespace().as_deref() == Some(ns.as_str())
                    && sel.is_some_and(|s| !selector_is_empty(s) && selector_matches(s, &labels))
                {
                    let _ = tx.unbounded_send(ObjectRef::from_obj(&*d));
                }
            }
        }
    }
}

/// One sync of one Deployment, with the ReplicaSets as this sync changes them.
struct Sync<'a> {
    sh: &'a Shared,
    d: Deployment,
    sets: Vec<ReplicaSet>,
    rs_api: Api<ReplicaSet>,
    now: Timestamp,
}

fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

async fn reconcile(d: Arc<Deployment>, sh: Arc<Shared>) -> Result<Action, Error> {
    let _ = sh.sets.wait_until_ready().await;
    let _ = sh.deployments.wait_until_ready().await;
    let ns = d.namespace().unwrap_or_default();
    let client = sh.ctx.client.clone();
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    if selector_is_empty(&selector) {
        sh.ctx.recorder.warning(
            &*d,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        if !generation_observed(&d, &d.status.clone().unwrap_or_default()) {
            let api: Api<Deployment> = Api::namespaced(client, &ns);
            let patch = json!({"status": {"observedGeneration": d.metadata.generation}});
            api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        return Ok(Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(client, &ns);
    let sets = claim_sets(&sh, &d, &selector, &rs_api).await;
    let mut s = Sync { sh: &sh, d: (*d).clone(), sets, rs_api, now: now_seconds() };
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
    sh: &Shared,
    d: &Deployment,
    selector: &LabelSelector,
    api: &Api<ReplicaSet>,
) -> Vec<ReplicaSet> {
    let uid = d.uid().unwrap_or_default();
    let ns = d.namespace();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut out = Vec::new();
    for rs in sh.sets.state() {
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
                if let Ok(rs) =
                    api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await
                {
                    out.push(rs);
                }
            }
            _ => {}
        }
    }
    out
}

impl Sync<'_> {
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

    fn status_now(&self) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        calculate_status(&self.d, &all, self.new_rs(), self.now)
    }

    fn sync_status_only(&self) -> DeploymentStatus {
        self.status_now()
    }

    fn set_status_condition(&mut self, c: DeploymentCondition) {
        set_condition(self.d.status.get_or_insert_default(), c);
    }

    /// Kubernetes' `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if progress_deadline(&self.d).is_none() {
            return;
        }
        let status = self.d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return;
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && !paused_cond {
            self.set_status_condition(condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused",
                self.now,
            ));
        } else if !paused && paused_cond {
            self.set_status_condition(condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed",
                self.now,
            ));
        }
    }

    /// A set with pods whose desired-replicas annotation is not the Deployment's replicas.
    fn is_scaling_event(&self) -> bool {
        let r = self.replicas();
        self.sets
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| int_annotation(rs, DESIRED_REPLICAS).is_some_and(|v| v != r))
    }

    /// Find the new set and bring its annotations and the Deployment's revision up to date;
    /// create it when `create` and there is none (Kubernetes' `getNewReplicaSet`).
    async fn sync_revision(&mut self, create: bool) -> Result<(), Error> {
        let old: Vec<&ReplicaSet> = self.old_indexes().into_iter().map(|i| &self.sets[i]).collect();
        let new_revision = next_revision(&old);
        if let Some(i) = self.new_index() {
            let mut rs = self.sets[i].clone();
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let annotations_changed = set_new_rs_annotations(&self.d, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_default();
            if annotations_changed || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0)
            {
                spec.min_ready_seconds = min_ready;
                self.sets[i] =
                    self.rs_api.replace(&rs.name_any(), &PostParams::default(), &rs).await?;
                return Ok(());
            }
            let rev = annotation(&rs.metadata, REVISION).unwrap_or_default().to_string();
            self.set_deployment_revision(&rev).await?;
            if progress_deadline(&self.d).is_some()
                && get_condition(&self.d.status.clone().unwrap_or_default(), PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", rs.name_any());
                self.set_status_condition(condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_RS,
                    &msg,
                    self.now,
                ));
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let Some(spec) = self.d.spec.clone() else { return Ok(()) };
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let replicas = new_rs_new_replicas(&self.d, &all, 0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.d.name_any())),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(rs) => {
                if replicas > 0 {
                    self.sh.ctx.recorder.normal(
                        &self.d,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {} from 0 to {replicas}", rs.name_any()),
                    );
                }
                let msg = format!("Created new replica set \"{}\"", rs.name_any());
                if progress_deadline(&self.d).is_some() {
                    self.set_status_condition(condition(
                        PROGRESSING,
                        "True",
                        NEW_RS_CREATED,
                        &msg,
                        self.now,
                    ));
                }
                rs
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours already (a cache behind our own create), or another template's hash.
                let existing = self.rs_api.get(&rs.name_any()).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    existing
                } else {
                    let count = collision.unwrap_or(0).wrapping_add(1);
                    let api: Api<Deployment> = Api::namespaced(
                        self.sh.ctx.client.clone(),
                        &self.d.namespace().unwrap_or_default(),
                    );
                    let patch = json!({"status": {"collisionCount": count}});
                    api.patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await?;
                    return Err(Error::Invalid(format!(
                        "hash collision for replica set {}",
                        rs.name_any()
                    )));
                }
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set \"{}\": {}",
                    rs.name_any(),
                    api_message(&e)
                );
                if progress_deadline(&self.d).is_some() {
                    self.set_status_condition(condition(
                        PROGRESSING,
                        "False",
                        RS_CREATE_ERROR,
                        &msg,
                        self.now,
                    ));
                    let status = self.d.status.clone().unwrap_or_default();
                    self.patch_status(&status).await?;
                }
                self.sh.ctx.recorder.warning(&self.d, "FailedCreate", &msg);
                return Err(e.into());
            }
        };
        let rev = annotation(&created.metadata, REVISION).unwrap_or_default().to_string();
        self.sets.push(created);
        self.set_deployment_revision(&rev).await
    }

    async fn set_deployment_revision(&mut self, rev: &str) -> Result<(), Error> {
        if rev.is_empty() || annotation(&self.d.metadata, REVISION) == Some(rev) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.sh.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let d =
            api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.d.metadata.annotations = d.metadata.annotations;
        Ok(())
    }

    /// Scale set `i` to `n`, refreshing its replica annotations (Kubernetes' `scaleReplicaSet`).
    async fn scale(&mut self, i: usize, n: i32) -> Result<bool, Error> {
        let mut rs = self.sets[i].clone();
        let from = rs_replicas(&rs);
        let max = self.replicas() + max_surge(&self.d);
        let annotations_changed = set_replicas_annotations(&mut rs, self.replicas(), max);
        if from == n && !annotations_changed {
            return Ok(false);
        }
        rs.spec.get_or_insert_default().replicas = Some(n);
        let patch = json!({
            "metadata": {"annotations": rs.metadata.annotations, "resourceVersion": rs.resource_version()},
            "spec": {"replicas": n},
        });
        self.sets[i] = self
            .rs_api
            .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if from != n {
            let op = if from < n { "up" } else { "down" };
            self.sh.ctx.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {} from {from} to {n}", rs.name_any()),
            );
        }
        Ok(from != n)
    }

    /// Kubernetes' `sync`: a paused Deployment or a scaling event only scales, no rollout.
    async fn sync_scale(&mut self, paused: bool) -> Result<DeploymentStatus, Error> {
        self.sync_revision(false).await?;
        self.scale_sets().await?;
        if paused {
            self.cleanup().await;
        }
        Ok(self.status_now())
    }

    async fn scale_sets(&mut self) -> Result<(), Error> {
        let desired = self.replicas();
        let new = self.new_index();
        let old = self.old_indexes();
        // One active set (or none): it takes the whole count (the newest when none is active).
        let mut newest_first: Vec<usize> = old.iter().rev().copied().collect();
        let active: Vec<usize> = new
            .into_iter()
            .chain(newest_first.iter().copied())
            .filter(|&i| rs_replicas(&self.sets[i]) > 0)
            .collect();
        let target = match active.len() {
            0 => new.or_else(|| newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, desired).await?;
            return Ok(());
        }
        // The new set is saturated: the old ones go.
        if let Some(i) = new {
            let rs = &self.sets[i];
            if int_annotation(rs, DESIRED_REPLICAS) == Some(desired)
                && rs_replicas(rs) == desired
                && rs_available(rs) == desired
            {
                for i in old {
                    if rs_replicas(&self.sets[i]) > 0 {
                        self.scale(i, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        newest_first.retain(|&i| rs_replicas(&self.sets[i]) > 0);
        let active: Vec<usize> = new
            .filter(|&i| rs_replicas(&self.sets[i]) > 0)
            .into_iter()
            .chain(newest_first)
            .collect();
        let shape: Vec<_> = active
            .iter()
            .map(|&i| {
                let rs = &self.sets[i];
                (rs_replicas(rs), int_annotation(rs, MAX_REPLICAS), created(rs))
            })
            .collect();
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = proportional_sizes(desired, max_surge(&self.d), status_replicas, &shape);
        for (i, n) in active.into_iter().zip(sizes) {
            self.scale(i, n).await?;
        }
        Ok(())
    }

    /// Kubernetes' `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<DeploymentStatus, Error> {
        self.sync_revision(true).await?;
        if self.reconcile_new_rs().await? || self.reconcile_old_sets().await? {
            return Ok(self.rollout_status());
        }
        let status = self.status_now();
        if deployment_complete(&self.d, &status) {
            self.cleanup().await;
        }
        Ok(self.rollout_status())
    }

    async fn reconcile_new_rs(&mut self) -> Result<bool, Error> {
        let Some(i) = self.new_index() else { return Ok(false) };
        let desired = self.replicas();
        let current = rs_replicas(&self.sets[i]);
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return self.scale(i, desired).await;
        }
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let n = new_rs_new_replicas(&self.d, &all, current);
        self.scale(i, n).await
    }

    async fn reconcile_old_sets(&mut self) -> Result<bool, Error> {
        let old: Vec<usize> =
            self.old_indexes().into_iter().filter(|&i| rs_replicas(&self.sets[i]) > 0).collect();
        if old.is_empty() {
            return Ok(false);
        }
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let max_down = max_scaled_down(&self.d, &all, self.new_rs());
        if max_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas go first: they cost no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_down {
                break;
            }
            let rs = &self.sets[i];
            let (r, avail) = (rs_replicas(rs), rs_available(rs));
            if r == 0 || r == avail {
                continue;
            }
            let down = (max_down - cleaned).min(r - avail);
            self.scale(i, r - down).await?;
            cleaned += down;
        }
        // Then available ones, as far as minAvailable allows.
        let min_available = self.replicas() - max_unavailable(&self.d);
        let available: i32 = self.sets.iter().map(rs_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let r = rs_replicas(&self.sets[i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                self.scale(i, r - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Kubernetes' `rolloutRecreate`: every old pod gone before the new set scales up.
    async fn rollout_recreate(&mut self) -> Result<DeploymentStatus, Error> {
        self.sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old_indexes() {
            if rs_replicas(&self.sets[i]) > 0 {
                scaled_down |= self.scale(i, 0).await?;
            }
        }
        if scaled_down || self.old_pods_running().await? {
            return Ok(self.rollout_status());
        }
        if self.new_index().is_none() {
            self.sync_revision(true).await?;
        }
        if let Some(i) = self.new_index() {
            let desired = self.replicas();
            self.scale(i, desired).await?;
        }
        if deployment_complete(&self.d, &self.status_now()) {
            self.cleanup().await;
        }
        Ok(self.rollout_status())
    }

    async fn old_pods_running(&self) -> Result<bool, Error> {
        let old: Vec<&ReplicaSet> = self.old_indexes().into_iter().map(|i| &self.sets[i]).collect();
        if old.iter().any(|rs| rs_actual(rs) > 0) {
            return Ok(true);
        }
        if old.is_empty() {
            return Ok(false);
        }
        let uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
        let api: Api<Pod> =
            Api::namespaced(self.sh.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let labels =
            self.d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods = api.list(&ListParams::default().labels(&selector.join(","))).await?;
        Ok(pods.items.iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(phase(p), "Succeeded" | "Failed")
        }))
    }

    /// Delete the oldest zero-replica sets beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut old: Vec<&ReplicaSet> = self
            .old_indexes()
            .into_iter()
            .map(|i| &self.sets[i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = old.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return;
        }
        old.sort_by(|a, b| revision(a).cmp(&revision(b)).then_with(|| by_creation(a, b)));
        let doomed: Vec<String> = old
            .into_iter()
            .take(diff as usize)
            .filter(|rs| {
                rs_actual(rs) == 0
                    && rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0)
            })
            .map(|rs| rs.name_any())
            .collect();
        for name in doomed {
            if let Err(e) = self.rs_api.delete(&name, &DeleteParams::default()).await
                && !is_not_found(&e)
            {
                tracing::debug!(rs = %name, error = %e, "old replica set not deleted");
            }
            self.sets.retain(|rs| rs.metadata.name.as_deref() != Some(&name));
        }
    }

    /// The status with the Progressing condition of a rollout and the ReplicaFailure of the sets.
    fn rollout_status(&self) -> DeploymentStatus {
        let mut status = self.status_now();
        rollout_progress(&self.d, self.new_rs(), &mut status, self.now);
        let failure = self.new_rs().into_iter().chain(self.sets.iter()).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                .cloned()
        });
        match failure {
            Some(c) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        status
    }

    async fn write_status(
        &mut self,
        original: &DeploymentStatus,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        if normalize_status(original) == normalize_status(&status) {
            return Ok(());
        }
        self.patch_status(&status).await?;
        self.d.status = Some(status);
        Ok(())
    }

    async fn patch_status(&self, s: &DeploymentStatus) -> Result<(), Error> {
        let nz = |v: Option<i32>| match v {
            Some(n) if n != 0 => json!(n),
            _ => Value::Null,
        };
        let patch = json!({"status": {
            "observedGeneration": s.observed_generation,
            "replicas": nz(s.replicas),
            "updatedReplicas": nz(s.updated_replicas),
            "readyReplicas": nz(s.ready_replicas),
            "availableReplicas": nz(s.available_replicas),
            "unavailableReplicas": nz(s.unavailable_replicas),
            "collisionCount": s.collision_count,
            "conditions": s.conditions,
        }});
        let api: Api<Deployment> =
            Api::namespaced(self.sh.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        match api
            .patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// When to look again: when the progress deadline would pass, or after a while.
    fn requeue(&self) -> Action {
        let status = self.d.status.clone().unwrap_or_default();
        if let (Some(deadline), Some(c)) =
            (progress_deadline(&self.d), get_condition(&status, PROGRESSING))
            && !deployment_complete(&self.d, &status)
            && c.reason.as_deref() != Some(TIMED_OUT)
            && c.status == "True"
            && let Some(t) = &c.last_update_time
        {
            let left = t.0.as_second() + i64::from(deadline) - self.now.as_second();
            return Action::requeue(Duration::from_secs(left.clamp(0, 600) as u64 + 1));
        }
        Action::requeue(Duration::from_secs(600))
    }
}

fn normalize_status(s: &DeploymentStatus) -> DeploymentStatus {
    let z = |v: Option<i32>| v.filter(|n| *n != 0);
    DeploymentStatus {
        observed_generation: s.observed_generation,
        replicas: z(s.replicas),
        updated_replicas: z(s.updated_replicas),
        ready_replicas: z(s.ready_replicas),
        available_replicas: z(s.available_replicas),
        unavailable_replicas: z(s.unavailable_replicas),
        terminating_replicas: None,
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
    }
}

#[cfg(test)]
mod tests;
