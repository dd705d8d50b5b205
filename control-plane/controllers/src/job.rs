//! The Job controller: runs a Job's pods to completion — `completions` and `parallelism`,
//! NonIndexed and Indexed completion modes, `backoffLimit` with exponential back-off between
//! failed pods, `activeDeadlineSeconds`, `podFailurePolicy`, `suspend` — and writes its
//! status and conditions as Kubernetes does.
//!
//! Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer: a finished pod is
//! first recorded in `status.uncountedTerminatedPods`, then its finalizer is removed, then
//! (next sync) it moves into the `succeeded`/`failed` counters. So a finished pod is counted
//! exactly once even if it is deleted right away, and a restart loses nothing.
//!
//! Jobs and pods come from the shared informers: a Job's pods are found by its uid in the
//! pod cache's owner index, and pods still tracked for a Job that is gone (or for an older
//! Job of the same name) by a Job-name index this controller adds, so they are let go.
//!
//! One deviation: a pod being deleted counts as failed as soon as its deletion starts, even
//! with a `podFailurePolicy` (Kubernetes then waits for a terminal phase, which Skiff's node
//! does not write on deletion).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::informers::{BY_OWNER_UID, Change, Informer};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::pods::{controller_of, controller_ref, is_ready, phase, pod_from_template};
use tokio::task::JoinSet;

use crate::batch::api_code;
use crate::{Context, Error};

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The label every pod of a Job carries, with the Job's uid.
pub const JOB_POD_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Back-off between failed pods' replacements: 10 s, doubled per consecutive failure,
/// at most 6 minutes (Kubernetes' DefaultJobPodFailureBackOff / MaxJobPodFailureBackOff).
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// Pods created by one sync at most (Kubernetes' burst).
const MAX_BATCH: usize = 500;
/// How long a create or delete may take to show in the cache before it is trusted anyway.
const PENDING_TTL: Duration = Duration::from_secs(60);

const REASON_COMPLETIONS: &str = "CompletionsReached";
const MSG_COMPLETIONS: &str = "Reached expected number of succeeded pods";
const REASON_BACKOFF: &str = "BackoffLimitExceeded";
const MSG_BACKOFF: &str = "Job has reached the specified backoff limit";
const REASON_DEADLINE: &str = "DeadlineExceeded";
const MSG_DEADLINE: &str = "Job was active longer than specified deadline";
const REASON_POLICY: &str = "PodFailurePolicy";
const REASON_FAILED_INDEXES: &str = "FailedIndexes";
const MSG_FAILED_INDEXES: &str = "Job has failed indexes";
const REASON_MAX_FAILED_INDEXES: &str = "MaxFailedIndexesExceeded";
const MSG_MAX_FAILED_INDEXES: &str =
    "Job has exceeded the specified maximal number of failed indexes";

/// Jobs reconciled at once.
const WORKERS: usize = 4;
/// An index of the shared pod informer: pods still holding [`TRACKING_FINALIZER`], by the
/// `namespace/name` of the Job controlling them. It finds the pods of a Job that is gone, or
/// of an older Job of the same name, which must be let go and which no live Job's uid finds.
const BY_TRACKING_JOB: &str = "job-tracking";

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    pods.add_index(BY_TRACKING_JOB, |p: &Pod| {
        if has_finalizer(p) { job_of(p).into_iter().collect() } else { Vec::new() }
    });
    jobs.wait_until_ready().await;
    pods.wait_until_ready().await;
    let (q, all) = (queue.clone(), jobs.store());
    jobs.on_change(move |change| match change.object() {
        Some(job) => q.add(&key_of(job)),
        // A relist: any Job may have changed.
        None => {
            for job in all.state() {
                q.add(&key_of(job.as_ref()));
            }
        }
    });
    let (q, all) = (queue.clone(), pods.store());
    pods.on_change(move |change| match change {
        Change::Upsert { old, new } => {
            // A pod that changed hands: its former Job looks again too.
            let before = old.as_deref().and_then(job_of);
            for k in before.into_iter().chain(job_of(new)) {
                q.add(&k);
            }
        }
        Change::Delete { gone, .. } => {
            if let Some(k) = job_of(gone) {
                q.add(&k);
            }
        }
        Change::Resynced => {
            for k in all.state().iter().filter_map(|p| job_of(p)) {
                q.add(&k);
            }
        }
    });
    let c = Arc::new(JobController { ctx, jobs: jobs.store(), pods, pending: Mutex::default() });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "job", move |k| {
        let c = c.clone();
        async move { c.reconcile(&k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn job_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The key of the Job controlling `pod`, if a Job does.
fn job_of(pod: &Pod) -> Option<String> {
    let owner = controller_of(&pod.metadata).filter(|r| r.kind == "Job")?;
    Some(job_key(pod.metadata.namespace.as_deref().unwrap_or_default(), &owner.name))
}

/// What this controller did that its cache may not show yet, per Job key.
#[derive(Default)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    /// UIDs of pods whose tracking finalizer was removed.
    unfinalized: HashSet<String>,
    since: Option<std::time::Instant>,
}

struct JobController {
    ctx: Arc<Context>,
    jobs: Store<Job>,
    pods: Informer<Pod>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

impl JobController {
    async fn reconcile(&self, k: &str) -> Result<Requeue, Error> {
        let (ns, job_name) = split_key(k);
        let job = self.jobs.get(&ObjectRef::new(job_name).within(ns));
        let job_uid = job.as_ref().and_then(|j| j.metadata.uid.clone());
        let controlled_by = |p: &Pod, uid: &str| {
            p.metadata.namespace.as_deref() == Some(ns)
                && controller_of(&p.metadata)
                    .is_some_and(|r| r.kind == "Job" && r.name == job_name && r.uid == uid)
        };
        let own: Vec<Arc<Pod>> = match job_uid.as_deref() {
            Some(uid) => self
                .pods
                .by_index(BY_OWNER_UID, uid)
                .into_iter()
                .filter(|p| controlled_by(p, uid))
                .collect(),
            None => Vec::new(),
        };
        let orphans: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_TRACKING_JOB, k)
            .into_iter()
            .filter(|p| has_finalizer(p))
            .filter(|p| {
                controller_of(&p.metadata).is_some_and(|r| Some(&r.uid) != job_uid.as_ref())
            })
            .collect();
        // Pods of a Job that is gone (or of an older Job of the same name) are let go.
        self.remove_finalizers(ns, &orphans).await?;
        let Some(job) = job else {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(k);
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            let held: Vec<_> = own.into_iter().filter(|p| has_finalizer(p)).collect();
            self.remove_finalizers(ns, &held).await?;
            return Ok(None);
        }
        let (trusted, unfinalized) = self.observe(k, &own);
        let now = Timestamp::now();
        let plan = plan(&job, &own, &unfinalized, now);
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        if Some(&plan.status) != job.status.as_ref() {
            let mut updated = (*job).clone();
            updated.status = Some(plan.status.clone());
            match api.replace_status(job_name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                // A stale cache: the watch brings the newer Job and this sync runs again.
                Err(e) if api_code(&e) == Some(409) => return Ok(Some(Duration::from_millis(200))),
                Err(e) => return Err(e.into()),
            }
        }
        for (warning, reason, message) in &plan.events {
            if *warning {
                self.ctx.recorder.warning(job.as_ref(), reason, message.clone());
            } else {
                self.ctx.recorder.normal(job.as_ref(), reason, message.clone());
            }
        }
        // Finished pods now recorded as uncounted lose their finalizer.
        let done: Vec<_> =
            own.iter().filter(|p| plan.unfinalize.contains(uid(p))).cloned().collect();
        self.remove_finalizers(ns, &done).await?;
        if trusted {
            self.apply(&job, &own, &plan).await;
        }
        let mut requeue = plan.requeue;
        if !trusted || !plan.unfinalize.is_empty() {
            requeue =
                Some(requeue.map_or(Duration::from_secs(1), |r| r.min(Duration::from_secs(1))));
        }
        Ok(requeue)
    }

    /// Forget what the cache now shows; say whether creations and deletions are all visible,
    /// and which pods' finalizers were removed though the cache may still show them.
    fn observe(&self, k: &str, own: &[Arc<Pod>]) -> (bool, HashSet<String>) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(k) else { return (true, HashSet::new()) };
        let by_name: HashMap<&str, &Arc<Pod>> = own.iter().map(|p| (name(p), p)).collect();
        let by_uid: HashMap<&str, &Arc<Pod>> = own.iter().map(|p| (uid(p), p)).collect();
        p.created.retain(|n| !by_name.contains_key(n.as_str()));
        p.deleted.retain(|u| {
            by_uid.get(u.as_str()).is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
        p.unfinalized.retain(|u| by_uid.get(u.as_str()).is_some_and(|p| has_finalizer(p)));
        let expired = p.since.is_some_and(|s| s.elapsed() > PENDING_TTL);
        if expired {
            p.created.clear();
            p.deleted.clear();
        }
        let trusted = p.created.is_empty() && p.deleted.is_empty();
        (trusted, p.unfinalized.clone())
    }

    fn pending(&self, k: &str, f: impl FnOnce(&mut Pending)) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.entry(k.to_string()).or_default();
        p.since = Some(std::time::Instant::now());
        f(p);
    }

    async fn remove_finalizers(&self, ns: &str, pods: &[Arc<Pod>]) -> Result<(), Error> {
        if pods.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let patch = serde_json::json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}
        });
        let results = join_all(pods.iter().map(|p| {
            let api = api.clone();
            let patch = patch.clone();
            async move {
                let r = api.patch(name(p), &PatchParams::default(), &Patch::Strategic(patch)).await;
                (p, r)
            }
        }))
        .await;
        let mut first_error = None;
        for (p, r) in results {
            match r {
                Err(e) if api_code(&e) != Some(404) => {
                    first_error.get_or_insert(e);
                }
                _ => {
                    if let Some(owner) = controller_of(&p.metadata) {
                        let k = job_key(ns, &owner.name);
                        self.pending(&k, |pend| {
                            pend.unfinalized.insert(uid(p).to_string());
                        });
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Create and delete pods as planned.
    async fn apply(&self, job: &Arc<Job>, own: &[Arc<Pod>], plan: &Plan) {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let k = key_of(job.as_ref());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        // Pods deleted for suspension or lower parallelism are not failures: their finalizer
        // goes first so they are never counted.
        let uncount: Vec<_> = own
            .iter()
            .filter(|p| plan.delete_uncounted.contains(uid(p)) && has_finalizer(p))
            .cloned()
            .collect();
        if let Err(e) = self.remove_finalizers(&ns, &uncount).await {
            tracing::warn!(job = %k, error = %e, "removing tracking finalizers");
            return;
        }
        let to_delete: Vec<_> = own
            .iter()
            .filter(|p| plan.delete.contains(uid(p)) || plan.delete_uncounted.contains(uid(p)))
            .cloned()
            .collect();
        self.pending(&k, |p| p.deleted.extend(to_delete.iter().map(|d| uid(d).to_string())));
        let deleted = join_all(to_delete.iter().map(|p| {
            let api = api.clone();
            async move { (p, api.delete(name(p), &DeleteParams::default()).await) }
        }))
        .await;
        for (p, r) in deleted {
            match r {
                Ok(_) => self.ctx.recorder.normal(
                    job.as_ref(),
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name(p)),
                ),
                Err(e) => {
                    self.pending(&k, |pend| {
                        pend.deleted.remove(uid(p));
                    });
                    if api_code(&e) != Some(404) {
                        self.ctx.recorder.warning(
                            job.as_ref(),
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                    }
                }
            }
        }
        if plan.create.is_empty() {
            return;
        }
        let Some(template) = job.spec.as_ref().map(|s| &s.template) else { return };
        let owner = controller_ref(job.as_ref());
        let per_index = job.spec.as_ref().is_some_and(|s| {
            s.backoff_limit_per_index.is_some() && s.completion_mode.as_deref() == Some("Indexed")
        });
        let job_name = job.metadata.name.clone().unwrap_or_default();
        // Slow start, as Kubernetes: batches of 1, 2, 4, … stop at the first failure.
        let mut rest: &[Option<i32>] = &plan.create;
        let mut size = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(size.min(rest.len()));
            rest = later;
            size *= 2;
            let made = join_all(now.iter().map(|index| {
                let failures = index
                    .and_then(|i| plan.index_failures.get(&i).copied().or(per_index.then_some(0)));
                let pod = new_pod(template, &ns, owner.clone(), &job_name, *index, failures);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            let mut failed = false;
            for r in made {
                match r {
                    Ok(p) => {
                        let n = name(&p).to_string();
                        self.pending(&k, |pend| {
                            pend.created.insert(n.clone());
                        });
                        self.ctx.recorder.normal(
                            job.as_ref(),
                            "SuccessfulCreate",
                            format!("Created pod: {n}"),
                        );
                    }
                    Err(e) => {
                        failed = true;
                        self.ctx.recorder.warning(
                            job.as_ref(),
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                    }
                }
            }
            if failed {
                break;
            }
        }
    }
}

/// A pod of `job_name` from its template: the tracking finalizer, and for an Indexed Job the
/// completion index as annotation, label, `JOB_COMPLETION_INDEX` and hostname.
fn new_pod(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ns: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    job_name: &str,
    index: Option<i32>,
    failures: Option<u32>,
) -> Pod {
    let uid = owner.uid.clone();
    let mut pod = pod_from_template(template, ns, owner);
    // The api server puts this label in a generated selector's template; with a manual
    // selector it is added here, so every pod of a Job carries its Job's uid.
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .entry(JOB_POD_LABEL.into())
        .or_insert(uid);
    pod.metadata.finalizers.get_or_insert_with(Vec::new).push(TRACKING_FINALIZER.to_string());
    let mut prefix = match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    };
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    pod.metadata.generate_name = Some(prefix);
    if let Some(i) = index {
        let value = i.to_string();
        let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(COMPLETION_INDEX.into(), value.clone());
        if let Some(n) = failures {
            annotations.insert(INDEX_FAILURE_COUNT.into(), n.to_string());
        }
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), value);
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{job_name}-{i}"));
            }
            let env = EnvVar {
                name: INDEX_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            let containers =
                spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == INDEX_ENV) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

/// What one sync decides: the status to write and what to do with pods.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub status: JobStatus,
    /// Pods to create: `None` for a NonIndexed Job, else the completion index.
    pub create: Vec<Option<i32>>,
    /// With backoffLimitPerIndex: how often each index to create has failed so far.
    pub index_failures: std::collections::BTreeMap<i32, u32>,
    /// UIDs of pods to delete, counted as failed (the Job is failing or past its deadline).
    pub delete: BTreeSet<String>,
    /// UIDs of pods to delete without counting them (suspension, lower parallelism).
    pub delete_uncounted: BTreeSet<String>,
    /// UIDs of finished pods whose tracking finalizer is to go once the status is written.
    pub unfinalize: BTreeSet<String>,
    pub events: Events,
    pub requeue: Requeue,
}

/// Events to record: `(warning, reason, message)`.
pub type Events = Vec<(bool, String, String)>;

/// How a failed pod counts under the Job's `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureAction {
    FailJob(String),
    FailIndex,
    Ignore,
    Count,
}

/// The first rule of `rules` a failed pod matches, as Kubernetes evaluates them: exit codes of
/// containers that terminated non-zero (optionally one container), or pod conditions.
pub fn match_failure_policy(rules: &[PodFailurePolicyRule], pod: &Pod) -> FailureAction {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    for (i, rule) in rules.iter().enumerate() {
        let matched: Option<String> = if let Some(on) = &rule.on_exit_codes {
            let statuses = status.into_iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            statuses
                .filter(|cs| on.container_name.as_ref().is_none_or(|n| *n == cs.name))
                .find_map(|cs| {
                    let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = on.values.contains(&code);
                    let hit = code != 0 && if on.operator == "In" { listed } else { !listed };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {ns}/{} failed with exit code {code} matching {} rule at index {i}",
                            cs.name,
                            name(pod),
                            rule.action
                        )
                    })
                })
        } else {
            rule.on_pod_conditions.iter().flatten().find_map(|want| {
                let conds = status.and_then(|s| s.conditions.as_ref());
                let has = conds.into_iter().flatten().any(|c| {
                    c.type_ == want.type_ && c.status == want.status.as_deref().unwrap_or("True")
                });
                has.then(|| {
                    format!(
                        "Pod {ns}/{} has condition {} matching {} rule at index {i}",
                        name(pod),
                        want.type_,
                        rule.action
                    )
                })
            })
        };
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob(message),
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// The delay before a failed pod is replaced after `failures` consecutive failures.
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    BACKOFF_BASE.checked_mul(factor).map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

/// What is left of `delay` counted from `since`, if anything.
fn remaining(delay: Duration, since: Timestamp, now: Timestamp) -> Option<Duration> {
    let left = delay.as_millis() as i64 - (now.as_millisecond() - since.as_millisecond());
    (left > 0).then(|| Duration::from_millis(left as u64))
}

/// How often the pod's index failed before it (`job-index-failure-count`).
fn index_failures(pod: &Pod) -> i32 {
    let a = pod.metadata.annotations.as_ref();
    a.and_then(|a| a.get(INDEX_FAILURE_COUNT)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// When a finished pod finished: its containers' last termination, else its deletion.
fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let ended = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    ended.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

fn index_of(pod: &Pod) -> Option<i32> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.as_ref().and_then(|m| m.get(COMPLETION_INDEX)).and_then(|v| v.parse::<i32>().ok())
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels)).filter(|i| *i >= 0)
}

/// `1,3-5,7` → the set of indexes.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// The set of indexes written as Kubernetes does: ascending, runs of 3+ as `a-b`... and of
/// two as `a,b` (Kubernetes writes any run of two or more as a range).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if end == start { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// The status and pod actions for `job` given its pods (`pods`: those it controls), pure.
/// `unfinalized`: pods whose finalizer is known removed though `pods` may still show it.
pub fn plan(job: &Job, pods: &[Arc<Pod>], unfinalized: &HashSet<String>, now: Timestamp) -> Plan {
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    let old = job.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let mut plan = Plan::default();
    let mut events = Vec::new();
    let mut event = |warning: bool, reason: &str, message: &str| {
        events.push((warning, reason.to_string(), message.to_string()));
    };
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let restart_on_failure =
        spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let mut conds = st.conditions.take().unwrap_or_default();
    let finished = conds
        .iter()
        .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True");

    // Count what finished.
    let mut uncounted = st.uncounted_terminated_pods.take().unwrap_or_default();
    let mut unc_ok: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut unc_failed: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let mut completed: BTreeSet<i32> = parse_indexes(st.completed_indexes.as_deref().unwrap_or(""));
    // backoffLimitPerIndex: each index retries on its own and fails on its own.
    let per_index = indexed.then_some(spec.backoff_limit_per_index).flatten();
    let mut failed_indexes: BTreeSet<i32> =
        parse_indexes(st.failed_indexes.as_deref().unwrap_or(""));
    let by_uid: HashMap<&str, &Arc<Pod>> = pods.iter().map(|p| (uid(p), p)).collect();
    let tracked =
        |u: &str| by_uid.get(u).is_some_and(|p| has_finalizer(p) && !unfinalized.contains(u));
    // Uncounted pods whose finalizer is gone move into the counters.
    let before = unc_ok.len();
    unc_ok.retain(|u| tracked(u));
    if !indexed {
        st.succeeded = Some(st.succeeded.unwrap_or(0) + (before - unc_ok.len()) as i32);
    }
    let before = unc_failed.len();
    unc_failed.retain(|u| tracked(u));
    st.failed = Some(st.failed.unwrap_or(0) + (before - unc_failed.len()) as i32);

    let mut failure: Option<(String, String)> = None;
    let is_failed = |p: &Pod| {
        phase(p) == "Failed" || (p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded")
    };
    let rules = spec.pod_failure_policy.as_ref().map(|p| p.rules.as_slice()).unwrap_or_default();
    for p in pods {
        let u = uid(p);
        if !has_finalizer(p)
            || unfinalized.contains(u)
            || unc_ok.iter().any(|x| x == u)
            || unc_failed.iter().any(|x| x == u)
        {
            continue;
        }
        if phase(p) == "Succeeded" {
            unc_ok.push(u.to_string());
            if indexed && let Some(i) = index_of(p).filter(|i| *i < completions.unwrap_or(0)) {
                completed.insert(i);
            }
        } else if is_failed(p) {
            let action = if phase(p) == "Failed" {
                match_failure_policy(rules, p)
            } else {
                FailureAction::Count
            };
            plan.unfinalize.insert(u.to_string());
            match action.clone() {
                FailureAction::Ignore => {}
                FailureAction::FailJob(msg) => {
                    failure.get_or_insert((REASON_POLICY.into(), msg));
                    unc_failed.push(u.to_string());
                }
                FailureAction::Count | FailureAction::FailIndex => {
                    unc_failed.push(u.to_string());
                    if let (Some(limit), Some(i)) = (per_index, index_of(p))
                        && (action == FailureAction::FailIndex || index_failures(p) + 1 > limit)
                    {
                        failed_indexes.insert(i);
                    }
                }
            }
        }
    }
    // Every uncounted pod still holding its finalizer loses it once the status is written.
    plan.unfinalize.extend(unc_ok.iter().chain(&unc_failed).cloned());
    // Indexed Jobs' completed indexes include pods whose finalizer is already gone.
    if indexed {
        for p in pods.iter().filter(|p| phase(p) == "Succeeded") {
            if let Some(i) = index_of(p).filter(|i| *i < completions.unwrap_or(0)) {
                completed.insert(i);
            }
        }
        st.succeeded = Some(completed.len() as i32);
        st.completed_indexes = Some(format_indexes(&completed));
        if per_index.is_some() {
            st.failed_indexes = Some(format_indexes(&failed_indexes));
        }
    }
    let succeeded = if indexed {
        completed.len() as i32
    } else {
        st.succeeded.unwrap_or(0) + unc_ok.len() as i32
    };
    let failed = st.failed.unwrap_or(0) + unc_failed.len() as i32;

    let active: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count() as i32;

    // Suspension.
    let suspended = spec.suspend == Some(true);
    let was_suspended = conds.iter().any(|c| c.type_ == "Suspended" && c.status == "True");
    let interim = conds
        .iter()
        .find(|c| {
            matches!(c.type_.as_str(), "FailureTarget" | "SuccessCriteriaMet") && c.status == "True"
        })
        .map(|c| {
            (
                c.type_.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
    if !finished && interim.is_none() {
        if suspended && !was_suspended {
            set_condition(&mut conds, "Suspended", "True", "JobSuspended", "Job suspended", now);
            event(false, "Suspended", "Job suspended");
        } else if !suspended && was_suspended {
            set_condition(&mut conds, "Suspended", "False", "JobResumed", "Job resumed", now);
            event(false, "Resumed", "Job resumed");
            st.start_time = Some(Time(now));
        }
    }
    if !suspended && st.start_time.is_none() && !finished {
        st.start_time = Some(Time(now));
    }

    // Has the Job met its end?
    let mut interim = interim;
    if !finished && interim.is_none() {
        let restarts: i32 = if restart_on_failure {
            active
                .iter()
                .flat_map(|p| {
                    p.status.iter().flat_map(|s| {
                        s.container_statuses
                            .iter()
                            .flatten()
                            .chain(s.init_container_statuses.iter().flatten())
                    })
                })
                .map(|cs| cs.restart_count)
                .sum()
        } else {
            0
        };
        let deadline = spec
            .active_deadline_seconds
            .zip(st.start_time.as_ref())
            .filter(|_| !suspended)
            .map(|(secs, start)| start.0.as_second() + secs);
        let done = match (indexed, completions) {
            (true, Some(c)) => (completed.len() + failed_indexes.len()) as i32 >= c,
            (false, Some(c)) => succeeded >= c,
            (_, None) => succeeded > 0 && active.is_empty(),
        };
        let max_failed = spec.max_failed_indexes.filter(|_| per_index.is_some());
        let failure = failure.or_else(|| {
            if max_failed.is_some_and(|m| failed_indexes.len() as i32 > m) {
                Some((REASON_MAX_FAILED_INDEXES.into(), MSG_MAX_FAILED_INDEXES.into()))
            } else if done && !failed_indexes.is_empty() {
                Some((REASON_FAILED_INDEXES.into(), MSG_FAILED_INDEXES.into()))
            } else if failed.saturating_add(restarts) > backoff_limit {
                Some((REASON_BACKOFF.into(), MSG_BACKOFF.into()))
            } else if deadline.is_some_and(|d| now.as_second() >= d) {
                Some((REASON_DEADLINE.into(), MSG_DEADLINE.into()))
            } else {
                None
            }
        });
        if let Some((reason, message)) = failure {
            set_condition(&mut conds, "FailureTarget", "True", &reason, &message, now);
            event(true, &reason, &message);
            interim = Some(("FailureTarget".into(), reason, message));
        } else if done {
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                REASON_COMPLETIONS,
                MSG_COMPLETIONS,
                now,
            );
            interim = Some((
                "SuccessCriteriaMet".into(),
                REASON_COMPLETIONS.into(),
                MSG_COMPLETIONS.into(),
            ));
        } else if let Some(d) = deadline {
            plan.requeue = Some(Duration::from_secs((d - now.as_second()).max(1) as u64));
        }
    }

    if finished || interim.is_some() {
        // Nothing more runs; the terminal condition comes once every pod is gone and counted.
        plan.delete.extend(active.iter().map(|p| uid(p).to_string()));
        if let Some((type_, reason, message)) = interim.filter(|_| !finished)
            && active.is_empty()
            && terminating == 0
            && unc_ok.is_empty()
            && unc_failed.is_empty()
        {
            if type_ == "FailureTarget" {
                set_condition(&mut conds, "Failed", "True", &reason, &message, now);
            } else {
                set_condition(&mut conds, "Complete", "True", &reason, &message, now);
                st.completion_time = Some(Time(now));
                event(false, "Completed", "Job completed");
            }
        }
    } else if suspended {
        plan.delete_uncounted.extend(active.iter().map(|p| uid(p).to_string()));
    } else if indexed {
        let c = completions.unwrap_or(0);
        let mut seen = HashSet::new();
        let mut running = 0;
        for p in &active {
            match index_of(p) {
                Some(i) if i < c && !completed.contains(&i) && seen.insert(i) => running += 1,
                _ => {
                    plan.delete_uncounted.insert(uid(p).to_string());
                }
            }
        }
        let want = (parallelism - running).max(0) as usize;
        let mut free: Vec<i32> = (0..c)
            .filter(|i| !seen.contains(i) && !completed.contains(i) && !failed_indexes.contains(i))
            .collect();
        if per_index.is_some() {
            // Each index waits out its own back-off.
            let mut history: HashMap<i32, (u32, Timestamp)> = HashMap::new();
            for p in pods.iter().filter(|p| phase(p) == "Failed") {
                if let (Some(i), Some(t)) = (index_of(p), finish_time(p)) {
                    let e = history.entry(i).or_insert((0, t));
                    e.0 = e.0.max(index_failures(p) as u32 + 1);
                    e.1 = e.1.max(t);
                }
            }
            free.retain(|i| {
                let Some(&(n, last)) = history.get(i) else { return true };
                plan.index_failures.insert(*i, n);
                let left = remaining(backoff_delay(n), last, now);
                if let Some(left) = left {
                    plan.requeue = Some(plan.requeue.map_or(left, |q| q.min(left)));
                }
                left.is_none()
            });
        }
        plan.create = free.into_iter().take(want.min(MAX_BATCH)).map(Some).collect();
    } else {
        let want = match completions {
            None if succeeded > 0 => 0,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        };
        let n = active.len() as i32;
        if n > want {
            // Fewer pods wanted: the least advanced go (not ready, then the newest).
            let mut extra: Vec<&&Arc<Pod>> = active.iter().collect();
            extra.sort_by_key(|p| {
                (
                    is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                )
            });
            plan.delete_uncounted
                .extend(extra.iter().take((n - want) as usize).map(|p| uid(p).to_string()));
        } else if n < want {
            plan.create = vec![None; ((want - n) as usize).min(MAX_BATCH)];
        }
    }

    // Back-off between failures: pods are replaced only once it has passed.
    if !plan.create.is_empty() && !restart_on_failure && per_index.is_none() {
        let last_success =
            pods.iter().filter(|p| phase(p) == "Succeeded").filter_map(|p| finish_time(p)).max();
        let failures: Vec<Timestamp> = pods
            .iter()
            .filter(|p| phase(p) == "Failed")
            .filter_map(|p| finish_time(p))
            .filter(|t| last_success.is_none_or(|s| *t > s))
            .collect();
        if let Some(r) = failures
            .iter()
            .max()
            .and_then(|last| remaining(backoff_delay(failures.len() as u32), *last, now))
        {
            plan.create.clear();
            plan.requeue = Some(plan.requeue.map_or(r, |q| q.min(r)));
        }
    }

    st.active = Some(active.len() as i32);
    st.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
    st.terminating = Some(terminating);
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!unc_ok.is_empty()).then_some(unc_ok),
        failed: (!unc_failed.is_empty()).then_some(unc_failed),
    });
    st.conditions = (!conds.is_empty()).then_some(conds);
    // Zero counters are left out, as Kubernetes' omitempty fields are.
    for n in [&mut st.succeeded, &mut st.failed, &mut st.active] {
        if *n == Some(0) {
            *n = None;
        }
    }
    plan.events = events;
    plan.status = st;
    plan
}

#[cfg(test)]
mod tests;
