//! The CronJob controller: creates a Job for each time the schedule names (in `timeZone`),
//! honouring `startingDeadlineSeconds`, `concurrencyPolicy`, `suspend` and the history
//! limits, and writes `active`, `lastScheduleTime` and `lastSuccessfulTime`. Each sync
//! computes what is due from `now` alone and requeues itself for the next schedule time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::pods::{controller_of, controller_ref};
use tokio::task::JoinSet;

use crate::batch::{api_code, finished_condition};
use crate::cron::Schedule;
use crate::{Context, Error};

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this is reported (Kubernetes' limit).
const MAX_MISSED: usize = 100;

/// CronJobs reconciled at once.
const WORKERS: usize = 2;

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    cronjobs.wait_until_ready().await;
    jobs.wait_until_ready().await;
    let (q, all) = (queue.clone(), cronjobs.store());
    cronjobs.on_change(move |change| match change.object() {
        Some(cj) => q.add(&key_of(cj)),
        // A relist: any CronJob may have changed.
        None => {
            for cj in all.state() {
                q.add(&key_of(cj.as_ref()));
            }
        }
    });
    let (q, all) = (queue.clone(), jobs.store());
    jobs.on_change(move |change| match change.object() {
        Some(job) => {
            if let Some(k) = cronjob_of(job) {
                q.add(&k);
            }
        }
        None => {
            for k in all.state().iter().filter_map(|j| cronjob_of(j)) {
                q.add(&k);
            }
        }
    });
    let c = Arc::new(CronJobController { ctx, cronjobs: cronjobs.store(), jobs: jobs.store() });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "cronjob", move |k| {
        let c = c.clone();
        async move { c.reconcile(&k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The key of the CronJob controlling `job`, if one does.
fn cronjob_of(job: &Job) -> Option<String> {
    let owner = controller_of(&job.metadata).filter(|r| r.kind == "CronJob")?;
    Some(format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or_default(), owner.name))
}

struct CronJobController {
    ctx: Arc<Context>,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
}

impl CronJobController {
    async fn reconcile(&self, k: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(k);
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| {
                j.metadata.namespace.as_deref() == Some(ns)
                    && controller_of(&j.metadata).is_some_and(|r| r.uid == uid)
            })
            .collect();
        let plan = plan(&cj, &jobs, Utc::now());
        for (warning, reason, message) in &plan.events {
            if *warning {
                self.ctx.recorder.warning(cj.as_ref(), reason, message.clone());
            } else {
                self.ctx.recorder.normal(cj.as_ref(), reason, message.clone());
            }
        }
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for (job, replaced) in &plan.delete {
            match jobs_api.delete(job, &background).await {
                Ok(_) => {
                    if *replaced {
                        self.ctx.recorder.normal(
                            cj.as_ref(),
                            "SuccessfulDelete",
                            format!("Deleted job {job}"),
                        );
                    }
                }
                Err(e) if api_code(&e) == Some(404) => {}
                Err(e) => {
                    self.ctx.recorder.warning(
                        cj.as_ref(),
                        "FailedDelete",
                        format!("Deleted job: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
        let mut status = plan.status.clone();
        if let Some(job) = &plan.create {
            let job_name = job.metadata.name.clone().unwrap_or_default();
            match jobs_api.create(&PostParams::default(), job).await {
                Ok(created) => {
                    self.ctx.recorder.normal(
                        cj.as_ref(),
                        "SuccessfulCreate",
                        format!("Created job {job_name}"),
                    );
                    let active = status.active.get_or_insert_with(Vec::new);
                    if !active.iter().any(|r| r.name.as_deref() == Some(job_name.as_str())) {
                        active.push(job_ref(&created));
                    }
                }
                // Created by an earlier sync whose status write was lost: it counts.
                Err(e) if api_code(&e) == Some(409) => {}
                Err(e) => {
                    self.ctx.recorder.warning(
                        cj.as_ref(),
                        "FailedCreate",
                        format!("Error creating job: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
        if Some(&status) != cj.status.as_ref() {
            let mut updated = (*cj).clone();
            updated.status = Some(status);
            let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), ns);
            match api.replace_status(name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some(409) => return Ok(Some(Duration::from_millis(200))),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(plan.requeue)
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

pub fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// What one sync decides.
#[derive(Debug, Default)]
pub struct Plan {
    pub status: CronJobStatus,
    /// The Job to create now, if one is due.
    pub create: Option<Job>,
    /// Jobs to delete: `(name, replaced)` — replaced by concurrencyPolicy Replace, or else
    /// beyond the history limits.
    pub delete: Vec<(String, bool)>,
    pub events: crate::job::Events,
    pub requeue: Requeue,
}

/// The times the schedule fired in `(earliest, now]`: the latest, and whether there were more
/// than [`MAX_MISSED`]. Bounded work however long the gap.
pub fn most_recent(
    sched: &Schedule,
    tz: Tz,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, bool) {
    let mut count = 0;
    let mut t = earliest;
    let mut last = None;
    while let Some(next) = sched.next_after(t, tz).filter(|n| *n <= now) {
        count += 1;
        last = Some(next);
        t = next;
        if count > MAX_MISSED {
            break;
        }
    }
    if count <= MAX_MISSED {
        return (last, false);
    }
    // Many missed: find the latest by looking back from `now` in growing windows.
    let mut window = chrono::Duration::hours(1);
    loop {
        let from = (now - window).max(t);
        if let Some(first) = sched.next_after(from, tz).filter(|n| *n <= now) {
            let mut latest = first;
            while let Some(n) = sched.next_after(latest, tz).filter(|n| *n <= now) {
                latest = n;
            }
            return (Some(latest), true);
        }
        if from == t {
            return (last, true);
        }
        window = window * 2;
    }
}

/// The name of the Job for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp().div_euclid(60))
}

/// The status, deletions and creation for `cj` at `now`, given the Jobs it controls; pure.
pub fn plan(cj: &CronJob, jobs: &[Arc<Job>], now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let spec = cj.spec.clone().unwrap_or_default();
    let cj_name = cj.metadata.name.clone().unwrap_or_default();
    let mut st = cj.status.clone().unwrap_or_default();

    // Active Jobs are the unfinished ones; the finished feed lastSuccessfulTime and history.
    let mut by_name: BTreeMap<String, &Arc<Job>> = BTreeMap::new();
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for j in jobs {
        let n = j.metadata.name.clone().unwrap_or_default();
        match finished_condition(j) {
            None => {
                if j.metadata.deletion_timestamp.is_none() {
                    by_name.insert(n.clone(), j);
                }
            }
            Some(c) if c.type_ == "Complete" => {
                let done = j
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.clone())
                    .or(c.last_transition_time.clone());
                if let Some(done) = done
                    && st.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0)
                {
                    st.last_successful_time = Some(done);
                }
                succeeded.push(j);
            }
            Some(_) => failed.push(j),
        }
    }
    let mut active: Vec<ObjectReference> = by_name.values().map(|j| job_ref(j)).collect();
    for (list, limit) in [
        (&mut succeeded, spec.successful_jobs_history_limit.unwrap_or(3)),
        (&mut failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let limit = limit.max(0) as usize;
        if list.len() > limit {
            list.sort_by_key(|j| {
                let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                (
                    start.or(j.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    j.metadata.name.clone(),
                )
            });
            let extra = list.len() - limit;
            plan.delete.extend(
                list.iter()
                    .take(extra)
                    .filter(|j| j.metadata.deletion_timestamp.is_none())
                    .map(|j| (j.metadata.name.clone().unwrap_or_default(), false)),
            );
        }
    }
    let mut events = Vec::new();
    let mut event = |warning: bool, reason: &str, message: String| {
        events.push((warning, reason.to_string(), message))
    };

    let schedule_next = (|| {
        if cj.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let tz: Tz = match spec.time_zone.as_deref() {
            None => Tz::UTC,
            Some(z) => match z.parse() {
                Ok(tz) => tz,
                Err(_) => {
                    event(
                        true,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {z:?}: unknown time zone {z}"),
                    );
                    return None;
                }
            },
        };
        let sched: Schedule = match spec.schedule.parse() {
            Ok(s) => s,
            Err(e) => {
                event(
                    true,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return None;
            }
        };
        let until_next = |now: DateTime<Utc>| {
            sched
                .next_after(now, tz)
                .map(|n| (n - now).to_std().unwrap_or_default() + Duration::from_millis(100))
        };
        if spec.suspend == Some(true) {
            return None;
        }
        let created =
            cj.metadata.creation_timestamp.as_ref().map(|t| to_chrono(t.0)).unwrap_or(now);
        let mut earliest =
            st.last_schedule_time.as_ref().map(|t| to_chrono(t.0)).unwrap_or(created);
        if let Some(sds) = spec.starting_deadline_seconds {
            earliest = earliest.max(now - chrono::Duration::seconds(sds));
        }
        let (due, too_many) = most_recent(&sched, tz, earliest, now);
        let Some(due) = due else { return until_next(now) };
        if too_many {
            event(
                true,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            );
        }
        if let Some(sds) = spec.starting_deadline_seconds
            && due + chrono::Duration::seconds(sds) < now
        {
            event(
                true,
                "MissSchedule",
                format!("Missed scheduled time to start a job: {}", due.to_rfc2822()),
            );
            return until_next(now);
        }
        let name = job_name(&cj_name, due);
        if jobs.iter().any(|j| j.metadata.name.as_deref() == Some(name.as_str())) {
            st.last_schedule_time = Some(to_time(due));
            return until_next(now);
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                event(
                    false,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                return until_next(now);
            }
            Some("Replace") => {
                plan.delete.extend(active.iter().filter_map(|r| r.name.clone()).map(|n| (n, true)));
                active.clear();
            }
            _ => {}
        }
        let template = spec.job_template.clone();
        let meta = template.metadata.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert(
            SCHEDULED_TIMESTAMP.into(),
            due.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        plan.create = Some(Job {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: cj.metadata.namespace.clone(),
                labels: meta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(cj)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        });
        st.last_schedule_time = Some(to_time(due));
        until_next(now)
    })();
    st.active = (!active.is_empty()).then_some(active);
    plan.status = st;
    plan.events = events;
    plan.requeue = schedule_next;
    plan
}

#[cfg(test)]
mod tests;
