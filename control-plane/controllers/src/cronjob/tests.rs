use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn cronjob(schedule: &str, created: &str, f: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    let mut spec = CronJobSpec {
        schedule: schedule.into(),
        concurrency_policy: Some("Allow".into()),
        successful_jobs_history_limit: Some(3),
        failed_jobs_history_limit: Some(1),
        job_template: JobTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "tick".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(JobSpec::default()),
        },
        ..Default::default()
    };
    f(&mut spec);
    CronJob {
        metadata: ObjectMeta {
            name: Some("cj".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(to_time(t(created))),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A Job of the CronJob started at `start`; `finished`: `Complete` or `Failed` at `end`.
fn job(name: &str, start: &str, finished: Option<(&str, &str)>) -> Arc<Job> {
    Arc::new(Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(to_time(t(start))),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: Some(to_time(t(start))),
            completion_time: finished.filter(|(c, _)| *c == "Complete").map(|(_, e)| to_time(t(e))),
            conditions: finished.map(|(c, e)| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    last_transition_time: Some(to_time(t(e))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    })
}

fn reasons(p: &Plan) -> Vec<&str> {
    p.events.iter().map(|e| e.1.as_str()).collect()
}

#[test]
fn plan_should_create_the_job_for_the_latest_due_time_and_requeue_for_the_next() {
    let cj = cronjob("*/1 * * * *", "2024-01-01T10:00:30Z", |_| {});
    let p = plan(&cj, &[], t("2024-01-01T10:01:05Z"));
    let job = p.create.expect("a Job is due");
    let due = t("2024-01-01T10:01:00Z");
    assert_eq!(job.metadata.name.as_deref(), Some(format!("cj-{}", due.timestamp() / 60).as_str()));
    let ann = job.metadata.annotations.unwrap_or_default();
    assert_eq!(ann.get(SCHEDULED_TIMESTAMP).map(String::as_str), Some("2024-01-01T10:01:00Z"));
    assert_eq!(
        job.metadata.labels.unwrap_or_default().get("app").map(String::as_str),
        Some("tick")
    );
    let owner = job.metadata.owner_references.unwrap_or_default();
    assert_eq!((owner[0].kind.as_str(), owner[0].controller), ("CronJob", Some(true)));
    assert_eq!(p.status.last_schedule_time, Some(to_time(due)));
    assert_eq!(p.requeue, Some(Duration::from_millis(55_100)));
    // Before the first due time: nothing, wake at it.
    let early = plan(&cj, &[], t("2024-01-01T10:00:50Z"));
    assert!(early.create.is_none());
    assert_eq!(early.requeue, Some(Duration::from_millis(10_100)));
    // Its Job already exists (an earlier sync): not again.
    let name = format!("cj-{}", due.timestamp() / 60);
    let again = plan(&cj, &[job_arc(&name)], t("2024-01-01T10:01:05Z"));
    assert!(again.create.is_none());
    assert_eq!(again.status.last_schedule_time, Some(to_time(due)));
}

fn job_arc(name: &str) -> Arc<Job> {
    job(name, "2024-01-01T10:01:01Z", None)
}

#[test]
fn plan_should_follow_the_concurrency_policy() {
    let now = t("2024-01-01T10:02:01Z");
    let running = job("cj-old", "2024-01-01T10:01:00Z", None);
    let at = |policy: &str| {
        let mut cj = cronjob("*/1 * * * *", "2024-01-01T09:00:00Z", |s| {
            s.concurrency_policy = Some(policy.into())
        });
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(to_time(t("2024-01-01T10:01:00Z"))),
            ..Default::default()
        });
        plan(&cj, std::slice::from_ref(&running), now)
    };
    let allow = at("Allow");
    assert!(allow.create.is_some());
    assert!(allow.delete.is_empty());
    assert_eq!(allow.status.active.as_ref().map(Vec::len), Some(1), "the running Job stays active");
    let forbid = at("Forbid");
    assert!(forbid.create.is_none());
    assert_eq!(reasons(&forbid), ["JobAlreadyActive"]);
    assert_eq!(
        forbid.status.last_schedule_time,
        Some(to_time(t("2024-01-01T10:01:00Z"))),
        "still due once it ends"
    );
    let replace = at("Replace");
    assert!(replace.create.is_some());
    assert_eq!(replace.delete, [("cj-old".to_string(), true)]);
    assert_eq!(replace.status.active, None);
}

#[test]
fn plan_should_honour_the_starting_deadline() {
    let mut cj =
        cronjob("*/5 * * * *", "2024-01-01T09:00:00Z", |s| s.starting_deadline_seconds = Some(10));
    cj.status = Some(CronJobStatus {
        last_schedule_time: Some(to_time(t("2024-01-01T10:00:00Z"))),
        ..Default::default()
    });
    let late = plan(&cj, &[], t("2024-01-01T10:05:30Z"));
    assert!(late.create.is_none(), "10:05 is 30 s past, the deadline is 10 s");
    assert_eq!(late.requeue, Some(Duration::from_millis(270_100)));
    let in_time = plan(&cj, &[], t("2024-01-01T10:05:08Z"));
    assert!(in_time.create.is_some());
}

#[test]
fn plan_should_report_too_many_missed_times_and_run_the_latest() {
    let cj = cronjob("* * * * *", "2023-01-01T00:00:00Z", |_| {});
    let now = t("2024-01-01T12:34:56Z");
    let p = plan(&cj, &[], now);
    assert_eq!(reasons(&p), ["TooManyMissedTimes"]);
    assert_eq!(p.status.last_schedule_time, Some(to_time(t("2024-01-01T12:34:00Z"))));
    // With a starting deadline bounding the look-back there is no such warning.
    let bounded =
        cronjob("* * * * *", "2023-01-01T00:00:00Z", |s| s.starting_deadline_seconds = Some(120));
    let p = plan(&bounded, &[], now);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(p.create.is_some());
    // A rare schedule far back: the latest is found too.
    let monthly = cronjob("@monthly", "2015-01-01T00:00:00Z", |_| {});
    let (latest, many) = most_recent(
        &"@monthly".parse().expect("schedule"),
        Tz::UTC,
        t("2015-01-01T00:00:00Z"),
        now,
    );
    assert!(many);
    assert_eq!(latest, Some(t("2024-01-01T00:00:00Z")));
    assert!(plan(&monthly, &[], now).create.is_some());
}

#[test]
fn plan_should_keep_the_history_limits() {
    let cj = cronjob("0 0 1 1 *", "2024-01-01T00:30:00Z", |_| {});
    let mut jobs = Vec::new();
    for i in 0..5 {
        let start = format!("2024-01-01T01:0{i}:00Z");
        jobs.push(job(&format!("ok-{i}"), &start, Some(("Complete", &start))));
    }
    jobs.push(job("bad-0", "2024-01-01T02:00:00Z", Some(("Failed", "2024-01-01T02:01:00Z"))));
    jobs.push(job("bad-1", "2024-01-01T03:00:00Z", Some(("Failed", "2024-01-01T03:01:00Z"))));
    jobs.push(job("running", "2024-01-01T04:00:00Z", None));
    let p = plan(&cj, &jobs, t("2024-01-01T05:00:00Z"));
    let deleted: Vec<&str> = p.delete.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(deleted, ["ok-0", "ok-1", "bad-0"], "the oldest beyond 3 successful and 1 failed");
    assert!(p.delete.iter().all(|(_, replaced)| !replaced));
    assert_eq!(p.status.last_successful_time, Some(to_time(t("2024-01-01T01:04:00Z"))));
    let active: Vec<_> =
        p.status.active.iter().flatten().filter_map(|r| r.name.as_deref()).collect();
    assert_eq!(active, ["running"]);
}

#[test]
fn plan_should_refuse_an_unknown_time_zone_and_schedule_in_a_known_one() {
    let bad =
        cronjob("0 9 * * *", "2024-01-01T00:00:00Z", |s| s.time_zone = Some("Mars/Olympus".into()));
    let p = plan(&bad, &[], t("2024-01-02T12:00:00Z"));
    assert!(p.create.is_none() && p.requeue.is_none());
    assert_eq!(p.events[0].1, "UnknownTimeZone");
    assert!(p.events[0].2.contains("Mars/Olympus"));
    let tokyo =
        cronjob("0 9 * * *", "2024-01-01T00:00:00Z", |s| s.time_zone = Some("Asia/Tokyo".into()));
    let p = plan(&tokyo, &[], t("2024-01-02T00:30:00Z"));
    let job = p.create.expect("09:00 in Tokyo is 00:00 UTC");
    let ann = job.metadata.annotations.unwrap_or_default();
    assert_eq!(ann.get(SCHEDULED_TIMESTAMP).map(String::as_str), Some("2024-01-02T09:00:00+09:00"));
    assert_eq!(job.metadata.name, Some(job_name("cj", t("2024-01-02T00:00:00Z"))));
    let unparseable = cronjob("61 * * * *", "2024-01-01T00:00:00Z", |_| {});
    assert_eq!(
        reasons(&plan(&unparseable, &[], t("2024-01-02T00:30:00Z"))),
        ["UnparseableSchedule"]
    );
}

#[test]
fn plan_should_do_nothing_while_suspended() {
    let cj = cronjob("*/1 * * * *", "2024-01-01T10:00:00Z", |s| s.suspend = Some(true));
    let p = plan(&cj, &[], t("2024-01-01T10:05:00Z"));
    assert!(p.create.is_none() && p.requeue.is_none() && p.events.is_empty());
}
