//! The TTL-after-finished controller: a Job with `ttlSecondsAfterFinished` is deleted (with
//! background propagation, so its pods go too) that many seconds after it finished.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::batch::{api_code, finished_at};
use crate::{Context, Error};

/// Jobs looked at once.
const WORKERS: usize = 2;

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let jobs = ctx.informers.get::<Job>();
    jobs.wait_until_ready().await;
    let has_ttl = |j: &Job| j.spec.as_ref().is_some_and(|s| s.ttl_seconds_after_finished.is_some());
    let (q, all) = (queue.clone(), jobs.store());
    jobs.on_change(move |change| match change.object() {
        Some(job) => {
            if has_ttl(job) {
                q.add(&key_of(job));
            }
        }
        // A relist: any Job may have changed.
        None => {
            for job in all.state().iter().filter(|j| has_ttl(j)) {
                q.add(&key_of(job.as_ref()));
            }
        }
    });
    let jobs = jobs.store();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "ttl-after-finished", move |k| {
        let (ctx, jobs) = (ctx.clone(), jobs.clone());
        async move { reconcile(&ctx, &jobs, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// How long until `job` is to be deleted (zero: now); `None` when it never is (no TTL, not
/// finished, or already being deleted).
pub fn expires_in(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_at(job)?;
    let due_ms = finished.as_millisecond() + i64::from(ttl.max(0)) * 1000;
    Some(Duration::from_millis((due_ms - now.as_millisecond()).max(0) as u64))
}

async fn reconcile(ctx: &Context, jobs: &Store<Job>, k: &str) -> Result<Requeue, Error> {
    let (ns, name) = split_key(k);
    let Some(cached) = jobs.get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    match expires_in(&cached, Timestamp::now()) {
        None => return Ok(None),
        Some(left) if !left.is_zero() => return Ok(Some(left)),
        Some(_) => {}
    }
    // The cache may be behind (a TTL just changed): decide on the Job as it is now.
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let job = match api.get(name).await {
        Ok(j) => j,
        Err(e) if api_code(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match expires_in(&job, Timestamp::now()) {
        None => return Ok(None),
        Some(left) if !left.is_zero() => return Ok(Some(left)),
        Some(_) => {}
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(job = %k, "deleted: ttlSecondsAfterFinished passed");
            Ok(None)
        }
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn job(ttl: Option<i32>, finished: Option<(&str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec { ttl_seconds_after_finished: ttl, ..Default::default() }),
            status: finished.map(|(type_, at)| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(at).expect("time"))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn expires_in_should_count_from_the_finish() {
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(
            expires_in(&job(Some(10), Some(("Complete", 995))), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(expires_in(&job(Some(10), Some(("Failed", 980))), now), Some(Duration::ZERO));
        assert_eq!(expires_in(&job(Some(0), Some(("Complete", 1_000))), now), Some(Duration::ZERO));
        assert_eq!(expires_in(&job(None, Some(("Complete", 900))), now), None, "no TTL");
        assert_eq!(expires_in(&job(Some(10), None), now), None, "not finished");
        assert_eq!(
            expires_in(&job(Some(10), Some(("SuccessCriteriaMet", 900))), now),
            None,
            "not yet terminal"
        );
        let mut deleting = job(Some(10), Some(("Complete", 900)));
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(expires_in(&deleting, now), None, "already being deleted");
    }
}
