use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec, PodStatus,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

const NOW: i64 = 1_700_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(NOW + offset).expect("time")
}

fn now() -> Timestamp {
    at(0)
}

fn job(spec: JobSpec, status: Option<JobStatus>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("j".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec { restart_policy: Some("Never".into()), ..Default::default() }),
            },
            ..spec
        }),
        status,
    }
}

fn spec(completions: Option<i32>, parallelism: i32) -> JobSpec {
    JobSpec {
        completions,
        parallelism: Some(parallelism),
        backoff_limit: Some(6),
        ..Default::default()
    }
}

/// A pod of the Job: `phase`, tracked (finalizer) or not, terminated at `ended` (seconds from
/// NOW) with `exit` when finished.
fn pod(name: &str, phase: &str, tracked: bool, ended: i64, exit: i32) -> Arc<Pod> {
    let finished = matches!(phase, "Succeeded" | "Failed");
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            finalizers: tracked.then(|| vec![TRACKING_FINALIZER.to_string()]),
            creation_timestamp: Some(Time(at(ended - 5))),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: finished.then(|| ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: exit,
                        finished_at: Some(Time(at(ended))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn indexed(p: Arc<Pod>, index: i32) -> Arc<Pod> {
    let mut p = (*p).clone();
    p.metadata.annotations = Some([(COMPLETION_INDEX.to_string(), index.to_string())].into());
    Arc::new(p)
}

fn cond<'a>(st: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    st.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
}

fn uncounted(st: &JobStatus) -> (Vec<String>, Vec<String>) {
    let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
    (u.succeeded.unwrap_or_default(), u.failed.unwrap_or_default())
}

/// Run `plan` rounds the way the controller does: write the status, drop the finalizers it
/// names, plan again — until nothing changes.
fn settle(mut j: Job, mut pods: Vec<Arc<Pod>>) -> (Job, Vec<Arc<Pod>>, Events) {
    let mut events = Vec::new();
    for _ in 0..5 {
        let p = plan(&j, &pods, &HashSet::new(), now());
        events.extend(p.events.clone());
        let same = Some(&p.status) == j.status.as_ref() && p.unfinalize.is_empty();
        j.status = Some(p.status.clone());
        pods = pods
            .into_iter()
            .map(|pod| {
                if p.unfinalize.contains(uid(&pod)) {
                    let mut pod = (*pod).clone();
                    pod.metadata.finalizers = None;
                    Arc::new(pod)
                } else {
                    pod
                }
            })
            .collect();
        if same {
            break;
        }
    }
    (j, pods, events)
}

#[test]
fn plan_should_create_up_to_parallelism_and_remaining_completions() {
    // (completions, parallelism, succeeded already counted, active pods, pods to create)
    let cases: &[(Option<i32>, i32, i32, usize, usize)] = &[
        (Some(5), 2, 0, 0, 2),
        (Some(5), 2, 0, 1, 1),
        (Some(5), 2, 0, 2, 0),
        (Some(5), 2, 4, 0, 1),
        (Some(5), 10, 0, 0, 5),
        (None, 3, 0, 0, 3),
        (None, 3, 1, 1, 0),
        (Some(1), 1, 1, 0, 0),
    ];
    for &(completions, parallelism, succeeded, active, create) in cases {
        let st = JobStatus {
            succeeded: Some(succeeded),
            start_time: Some(Time(at(-1))),
            ..Default::default()
        };
        let j = job(spec(completions, parallelism), Some(st));
        let pods: Vec<_> =
            (0..active).map(|i| pod(&format!("a{i}"), "Running", true, 0, 0)).collect();
        let p = plan(&j, &pods, &HashSet::new(), now());
        assert_eq!(
            p.create.len(),
            create,
            "{completions:?}/{parallelism} with {succeeded} done, {active} active"
        );
        assert_eq!(p.status.active.unwrap_or(0) as usize, active);
    }
    let fresh = plan(&job(spec(Some(5), 2), None), &[], &HashSet::new(), now());
    assert_eq!(fresh.status.start_time, Some(Time(now())), "startTime set on the first sync");
}

#[test]
fn plan_should_delete_pods_beyond_parallelism_without_counting_them() {
    let j = job(
        spec(Some(10), 1),
        Some(JobStatus { start_time: Some(Time(at(-10))), ..Default::default() }),
    );
    let pods = vec![pod("old", "Running", true, -20, 0), pod("new", "Running", true, 0, 0)];
    let p = plan(&j, &pods, &HashSet::new(), now());
    assert_eq!(p.delete_uncounted, BTreeSet::from(["uid-new".to_string()]), "the newest goes");
    assert!(p.delete.is_empty() && p.create.is_empty());
}

#[test]
fn plan_should_count_a_finished_pod_once_through_uncounted_pods() {
    let j = job(spec(Some(2), 1), None);
    let pods = vec![pod("a", "Succeeded", true, -1, 0)];
    let first = plan(&j, &pods, &HashSet::new(), now());
    assert_eq!(uncounted(&first.status).0, ["uid-a"], "recorded before its finalizer goes");
    assert_eq!(first.status.succeeded, None);
    assert_eq!(first.unfinalize, BTreeSet::from(["uid-a".to_string()]));
    // The same pod seen again with its finalizer (stale cache) is not recorded twice.
    let j1 = job(spec(Some(2), 1), Some(first.status.clone()));
    let again = plan(&j1, &pods, &HashSet::new(), now());
    assert_eq!(uncounted(&again.status).0, ["uid-a"]);
    // Known unfinalized: it moves into the counter although the cache still shows it.
    let moved = plan(&j1, &pods, &HashSet::from(["uid-a".to_string()]), now());
    assert_eq!(moved.status.succeeded, Some(1));
    assert!(uncounted(&moved.status).0.is_empty());
    let (done, _, _) = settle(j, pods);
    let st = done.status.expect("status");
    assert_eq!((st.succeeded, st.failed), (Some(1), None));
}

#[test]
fn plan_should_complete_once_every_pod_is_counted() {
    let j = job(spec(Some(2), 2), None);
    let pods = vec![pod("a", "Succeeded", true, -2, 0), pod("b", "Succeeded", true, -1, 0)];
    let first = plan(&j, &pods, &HashSet::new(), now());
    let st = &first.status;
    assert!(cond(st, "SuccessCriteriaMet").is_some(), "criteria met at once");
    assert!(cond(st, "Complete").is_none(), "Complete waits for the finalizers");
    let (done, pods, events) = settle(j, pods);
    let st = done.status.expect("status");
    let c = cond(&st, "Complete").expect("Complete");
    assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(c.message.as_deref(), Some("Reached expected number of succeeded pods"));
    assert_eq!(st.succeeded, Some(2));
    assert_eq!(st.completion_time, Some(Time(now())));
    assert!(pods.iter().all(|p| !has_finalizer(p)));
    assert_eq!(events.iter().filter(|e| e.1 == "Completed").count(), 1, "{events:?}");
}

#[test]
fn plan_should_fail_the_job_past_its_backoff_limit() {
    let mut s = spec(Some(1), 1);
    s.backoff_limit = Some(1);
    let j = job(
        s,
        Some(JobStatus { failed: Some(1), start_time: Some(Time(at(-60))), ..Default::default() }),
    );
    let pods = vec![pod("a", "Failed", false, -40, 1), pod("b", "Failed", true, -1, 1)];
    let (done, _, events) = settle(j, pods);
    let st = done.status.expect("status");
    assert_eq!(st.failed, Some(2));
    for t in ["FailureTarget", "Failed"] {
        let c = cond(&st, t).unwrap_or_else(|| panic!("{t}"));
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(c.message.as_deref(), Some("Job has reached the specified backoff limit"));
    }
    assert!(st.completion_time.is_none());
    assert_eq!(
        events,
        [(
            true,
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )]
    );
}

#[test]
fn plan_should_fail_past_the_active_deadline_and_stop_its_pods() {
    let mut s = spec(Some(3), 2);
    s.active_deadline_seconds = Some(30);
    let running = vec![pod("a", "Running", true, 0, 0)];
    let early =
        job(s.clone(), Some(JobStatus { start_time: Some(Time(at(-10))), ..Default::default() }));
    let p = plan(&early, &running, &HashSet::new(), now());
    assert_eq!(p.requeue, Some(Duration::from_secs(20)), "woken at the deadline");
    let late = job(s, Some(JobStatus { start_time: Some(Time(at(-31))), ..Default::default() }));
    let p = plan(&late, &running, &HashSet::new(), now());
    let c = cond(&p.status, "FailureTarget").expect("FailureTarget");
    assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(c.message.as_deref(), Some("Job was active longer than specified deadline"));
    assert_eq!(p.delete, BTreeSet::from(["uid-a".to_string()]));
    assert!(p.create.is_empty());
    assert!(cond(&p.status, "Failed").is_none(), "Failed waits for the pod to go");
}

#[test]
fn backoff_should_double_from_ten_seconds_up_to_six_minutes() {
    let cases =
        [(0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 360), (40, 360)];
    for (failures, secs) in cases {
        assert_eq!(backoff_delay(failures), Duration::from_secs(secs), "{failures} failures");
    }
}

#[test]
fn plan_should_wait_out_the_backoff_before_replacing_a_failed_pod() {
    // (failed pods' end times, succeeded pod's end time, want created, want requeue secs)
    type Case<'a> = (&'a [i64], Option<i64>, usize, Option<u64>);
    let cases: &[Case] = &[
        (&[-3], None, 0, Some(7)),
        (&[-11], None, 1, None),
        (&[-30, -15], None, 0, Some(5)),
        (&[-30, -21], None, 1, None),
        // A success resets the count: one failure since.
        (&[-100, -90, -5], Some(-50), 0, Some(5)),
    ];
    for (failed, succeeded, create, requeue) in cases {
        let st = JobStatus {
            failed: Some(failed.len() as i32),
            succeeded: Some(succeeded.is_some() as i32),
            start_time: Some(Time(at(-200))),
            ..Default::default()
        };
        let j = job(spec(Some(5), 1), Some(st));
        let mut pods: Vec<_> = failed
            .iter()
            .enumerate()
            .map(|(i, t)| pod(&format!("f{i}"), "Failed", false, *t, 1))
            .collect();
        pods.extend(succeeded.map(|t| pod("ok", "Succeeded", false, t, 0)));
        let p = plan(&j, &pods, &HashSet::new(), now());
        assert_eq!(p.create.len(), *create, "{failed:?} / {succeeded:?}");
        assert_eq!(p.requeue, requeue.map(Duration::from_secs), "{failed:?} / {succeeded:?}");
    }
}

#[test]
fn failure_policy_should_match_rules_in_order() {
    let exit_rule =
        |action: &str, container: Option<&str>, op: &str, values: &[i32]| PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        };
    let rules = vec![
        exit_rule("FailJob", Some("main"), "In", &[42]),
        PodFailurePolicyRule {
            action: "Ignore".into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: Some("True".into()),
            }]),
        },
        exit_rule("Count", None, "NotIn", &[5, 6]),
        exit_rule("Ignore", None, "In", &[5]),
    ];
    let with_condition = |p: Arc<Pod>| {
        let mut p = (*p).clone();
        if let Some(s) = p.status.as_mut() {
            s.conditions = Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                ..Default::default()
            }]);
        }
        p
    };
    let cases: Vec<(Pod, FailureAction)> = vec![
        (
            (*pod("x", "Failed", true, 0, 42)).clone(),
            FailureAction::FailJob(
                "Container main for pod default/x failed with exit code 42 matching FailJob rule at index 0".into(),
            ),
        ),
        (with_condition(pod("x", "Failed", true, 0, 1)), FailureAction::Ignore),
        ((*pod("x", "Failed", true, 0, 1)).clone(), FailureAction::Count),
        ((*pod("x", "Failed", true, 0, 5)).clone(), FailureAction::Ignore),
        // No rule matches exit code 6: counted, as without a policy.
        ((*pod("x", "Failed", true, 0, 6)).clone(), FailureAction::Count),
    ];
    for (p, want) in cases {
        assert_eq!(match_failure_policy(&rules, &p), want, "{:?}", p.status);
    }
}

#[test]
fn plan_should_apply_the_pod_failure_policy() {
    let mut s = spec(Some(1), 1);
    s.backoff_limit = Some(0);
    s.pod_failure_policy = Some(PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![7],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![42],
                }),
                on_pod_conditions: None,
            },
        ],
    });
    // Ignored: not counted against backoffLimit 0, the finalizer still goes.
    let j = job(s.clone(), None);
    let (ignored, _, _) = settle(j, vec![pod("a", "Failed", true, -20, 7)]);
    let st = ignored.status.expect("status");
    assert_eq!(st.failed, None);
    assert!(cond(&st, "FailureTarget").is_none());
    // FailJob: the Job fails with reason PodFailurePolicy.
    let (failed, _, _) = settle(job(s, None), vec![pod("b", "Failed", true, -1, 42)]);
    let st = failed.status.expect("status");
    let c = cond(&st, "Failed").expect("Failed");
    assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
    assert!(
        c.message
            .as_deref()
            .unwrap_or("")
            .contains("exit code 42 matching FailJob rule at index 1"),
        "{c:?}"
    );
}

#[test]
fn plan_should_run_missing_indexes_of_an_indexed_job() {
    let mut s = spec(Some(4), 2);
    s.completion_mode = Some("Indexed".into());
    let j = job(s.clone(), None);
    let pods = vec![
        indexed(pod("a", "Succeeded", true, -1, 0), 0),
        indexed(pod("b", "Running", true, 0, 0), 2),
    ];
    let p = plan(&j, &pods, &HashSet::new(), now());
    assert_eq!(p.create, [Some(1)], "index 0 is done, 2 runs: one more, the lowest free");
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.succeeded, Some(1));
    // A duplicate of a running index goes.
    let dup = vec![
        indexed(pod("c", "Running", true, 0, 0), 2),
        indexed(pod("d", "Running", true, 1, 0), 2),
    ];
    let p = plan(&j, &dup, &HashSet::new(), now());
    assert_eq!(p.delete_uncounted.len(), 1);
    assert_eq!(p.create, [Some(0)]);
    // All indexes done: complete.
    let done: Vec<_> =
        (0..4).map(|i| indexed(pod(&format!("p{i}"), "Succeeded", true, -1, 0), i)).collect();
    let (j, _, _) = settle(job(s, None), done);
    let st = j.status.expect("status");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-3"));
    assert!(cond(&st, "Complete").is_some());
}

#[test]
fn new_pod_should_carry_the_index_and_the_tracking_finalizer() {
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let owner = controller_ref(&job(spec(Some(3), 1), None));
    let p = new_pod(&template, "default", owner, "work", Some(2), Some(1));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("work-2-"));
    assert_eq!(p.metadata.finalizers, Some(vec![TRACKING_FINALIZER.to_string()]));
    assert_eq!(
        p.metadata.annotations.as_ref().and_then(|a| a.get(COMPLETION_INDEX)).map(String::as_str),
        Some("2")
    );
    assert_eq!(
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INDEX_FAILURE_COUNT))
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        p.metadata.labels.as_ref().and_then(|a| a.get(COMPLETION_INDEX)).map(String::as_str),
        Some("2")
    );
    let pod_spec = p.spec.expect("spec");
    assert_eq!(pod_spec.hostname.as_deref(), Some("work-2"));
    let env = pod_spec.containers[0].env.clone().unwrap_or_default();
    let var = env.iter().find(|e| e.name == "JOB_COMPLETION_INDEX").expect("env");
    let path =
        var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
    assert_eq!(path, Some("metadata.annotations['batch.kubernetes.io/job-completion-index']"));
    let plain = new_pod(
        &template,
        "default",
        controller_ref(&job(spec(Some(3), 1), None)),
        "work",
        None,
        None,
    );
    assert_eq!(plain.metadata.generate_name.as_deref(), Some("work-"));
    assert!(plain.metadata.annotations.is_none());
}

#[test]
fn plan_should_suspend_and_resume() {
    let mut s = spec(Some(3), 2);
    s.suspend = Some(true);
    let pods = vec![pod("a", "Running", true, 0, 0)];
    let p = plan(&job(s.clone(), None), &pods, &HashSet::new(), now());
    let c = cond(&p.status, "Suspended").expect("Suspended");
    assert_eq!(c.reason.as_deref(), Some("JobSuspended"));
    assert_eq!(p.delete_uncounted, BTreeSet::from(["uid-a".to_string()]), "not counted as failed");
    assert!(p.create.is_empty() && p.status.start_time.is_none());
    s.suspend = Some(false);
    let resumed = plan(&job(s, Some(p.status)), &[], &HashSet::new(), now());
    let c = resumed
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Suspended")
        .expect("Suspended");
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("JobResumed")));
    assert_eq!(resumed.create.len(), 2);
    assert_eq!(resumed.status.start_time, Some(Time(now())));
}

#[test]
fn indexes_should_round_trip_in_kubernetes_notation() {
    let cases = [
        ("", vec![]),
        ("0", vec![0]),
        ("0-2", vec![0, 1, 2]),
        ("1,3-5,7", vec![1, 3, 4, 5, 7]),
        ("0-1", vec![0, 1]),
    ];
    for (text, set) in cases {
        let parsed = parse_indexes(text);
        assert_eq!(parsed.iter().copied().collect::<Vec<_>>(), set, "{text}");
        assert_eq!(format_indexes(&parsed), text);
    }
}

fn with_failures(p: Arc<Pod>, n: i32) -> Arc<Pod> {
    let mut p = (*p).clone();
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_FAILURE_COUNT.into(), n.to_string());
    Arc::new(p)
}

#[test]
fn plan_should_retry_and_fail_each_index_on_its_own_with_backoff_limit_per_index() {
    let mut s = spec(Some(3), 3);
    s.completion_mode = Some("Indexed".into());
    s.backoff_limit_per_index = Some(1);
    s.backoff_limit = Some(i32::MAX);
    let pods = vec![
        // Index 0 failed for the second time: past its limit of 1.
        with_failures(indexed(pod("a", "Failed", true, -30, 1), 0), 1),
        // Index 1 failed once, 3 s ago: retried after its 10 s back-off.
        with_failures(indexed(pod("b", "Failed", true, -3, 1), 1), 0),
        indexed(pod("c", "Succeeded", true, -1, 0), 2),
    ];
    let (j, settled, _) = settle(job(s.clone(), None), pods.clone());
    let st = j.status.clone().expect("status");
    assert_eq!(st.failed_indexes.as_deref(), Some("0"));
    assert_eq!(st.completed_indexes.as_deref(), Some("2"));
    assert_eq!(st.failed, Some(2));
    assert!(cond(&st, "FailureTarget").is_none(), "other indexes go on");
    let p = plan(&j, &settled, &HashSet::new(), now());
    assert!(p.create.is_empty(), "index 1 is backing off");
    assert_eq!(p.requeue, Some(Duration::from_secs(7)));
    // Once its back-off passed, index 1 runs again knowing it failed once.
    let mut later = settled.clone();
    later[1] = with_failures(indexed(pod("b", "Failed", false, -11, 1), 1), 0);
    let p = plan(&j, &later, &HashSet::new(), now());
    assert_eq!(p.create, [Some(1)]);
    assert_eq!(p.index_failures.get(&1), Some(&1));
    // Its second failure fails the index; with every index done or failed, the Job fails.
    later.push(with_failures(indexed(pod("d", "Failed", true, -1, 1), 1), 1));
    let (j, _, _) = settle(j, later);
    let st = j.status.expect("status");
    assert_eq!(st.failed_indexes.as_deref(), Some("0-1"));
    let c = cond(&st, "Failed").expect("Failed");
    assert_eq!(c.reason.as_deref(), Some("FailedIndexes"));
    assert_eq!(c.message.as_deref(), Some("Job has failed indexes"));
    // maxFailedIndexes 0: the first failed index fails the Job.
    s.max_failed_indexes = Some(0);
    let (j, _, _) = settle(job(s, None), pods);
    let st = j.status.expect("status");
    let c = cond(&st, "Failed").expect("Failed");
    assert_eq!(c.reason.as_deref(), Some("MaxFailedIndexesExceeded"));
}
