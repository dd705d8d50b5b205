//! Table tests of `compute_pod_actions`: each row is a pod and what the worker saw, and the
//! actions it must lead to.

use chrono::TimeZone;
use serde_json::{Value, json};

use super::*;

/// One fixed "now" for every row, so exits, deadlines and waits compare exactly.
fn now() -> Now {
    static INSTANT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let wall = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).single().expect("valid time");
    Now { wall, instant: *INSTANT.get_or_init(Instant::now) }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A pod with `inits` then `mains` (every image `img:1`) under `policy`, plus `extra` spec
/// fields.
fn pod(policy: &str, inits: &[&str], mains: &[&str], extra: Value) -> Pod {
    let containers = |names: &[&str]| -> Vec<Value> {
        names.iter().map(|n| json!({"name": n, "image": "img:1"})).collect()
    };
    let mut spec = json!({
        "restartPolicy": policy,
        "containers": containers(mains),
    });
    if !inits.is_empty() {
        spec["initContainers"] = json!(containers(inits));
    }
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": spec,
    }))
    .expect("valid pod")
}

fn deleting(mut pod: Pod, grace: Option<i64>) -> Pod {
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    pod.metadata.deletion_grace_period_seconds = grace;
    pod
}

fn with_api_phase(mut pod: Pod, phase: &str) -> Pod {
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some(phase.into()),
        ..Default::default()
    });
    pod
}

/// A container record, built up by the methods below.
fn waiting(name: &str) -> ContainerRecord {
    ContainerRecord::new(name, false)
}

fn init(rec: ContainerRecord) -> ContainerRecord {
    ContainerRecord { init: true, ..rec }
}

fn running(name: &str) -> ContainerRecord {
    ContainerRecord {
        runs: 1,
        phase: ContainerPhase::Running { started_at: now().wall - chrono::Duration::seconds(60) },
        running_image: Some("img:1".into()),
        ..waiting(name)
    }
}

/// Exited with `code` after a 25-second run.
fn exited(name: &str, code: i32) -> ContainerRecord {
    let wall = now().wall;
    ContainerRecord {
        runs: 1,
        phase: ContainerPhase::Terminated(ExitInfo {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: wall - chrono::Duration::seconds(30),
            finished_at: wall - chrono::Duration::seconds(5),
        }),
        ..waiting(name)
    }
}

trait RecordExt {
    fn runs(self, runs: u32) -> Self;
    fn backoff(self, backoff: Duration) -> Self;
    fn ran_for(self, run: chrono::Duration) -> Self;
    fn retry_at(self, at: Instant) -> Self;
    fn probe_failed(self, kind: ProbeKind, grace_seconds: Option<i64>) -> Self;
    fn image(self, image: &str) -> Self;
}

impl RecordExt for ContainerRecord {
    fn runs(self, runs: u32) -> Self {
        ContainerRecord { runs, ..self }
    }
    fn backoff(self, backoff: Duration) -> Self {
        ContainerRecord { backoff, ..self }
    }
    fn ran_for(mut self, run: chrono::Duration) -> Self {
        if let ContainerPhase::Terminated(e) = &mut self.phase {
            e.started_at = e.finished_at - run;
        }
        self
    }
    fn retry_at(self, at: Instant) -> Self {
        ContainerRecord {
            phase: ContainerPhase::Waiting { reason: "CrashLoopBackOff".into(), message: None },
            next_attempt: Some(at),
            ..self
        }
    }
    fn probe_failed(self, kind: ProbeKind, grace_seconds: Option<i64>) -> Self {
        ContainerRecord { probe_failure: Some(ProbeFailure { kind, grace_seconds }), ..self }
    }
    fn image(self, image: &str) -> Self {
        ContainerRecord { running_image: Some(image.into()), ..self }
    }
}

fn seen(containers: Vec<ContainerRecord>) -> ObservedPod {
    ObservedPod {
        sandbox: SandboxState::Ready,
        containers,
        start_time: Some(now().wall - chrono::Duration::seconds(120)),
        deadline_exceeded: false,
        evicted: false,
    }
}

fn in_sandbox(sandbox: SandboxState, observed: ObservedPod) -> ObservedPod {
    ObservedPod { sandbox, ..observed }
}

fn start(name: &str, reason: StartReason) -> StartContainer {
    StartContainer { name: name.into(), init: false, reason, backoff: Duration::ZERO }
}

fn start_init(name: &str, reason: StartReason) -> StartContainer {
    StartContainer { init: true, ..start(name, reason) }
}

fn kill(name: &str, reason: KillReason, grace: u64) -> KillContainer {
    KillContainer { name: name.into(), reason, grace: secs(grace) }
}

fn back_off(name: &str, init: bool, delay: Duration) -> BackOff {
    BackOff { name: name.into(), init, delay, until: now().instant + delay }
}

fn phase(phase: PodPhase) -> PodActions {
    PodActions { phase, ..Default::default() }
}

struct Case {
    name: &'static str,
    pod: Option<Pod>,
    observed: ObservedPod,
    want: PodActions,
}

fn check(cases: Vec<Case>) {
    let now = now();
    for case in cases {
        let got = compute_pod_actions(case.pod.as_ref(), &case.observed, now);
        assert_eq!(got, case.want, "case: {}", case.name);
    }
}

#[test]
fn compute_pod_actions_should_run_init_containers_in_order() {
    use StartReason::*;
    check(vec![
        Case {
            name: "a new pod gets its sandbox, then its first init container",
            pod: Some(pod("Always", &["i1", "i2"], &["app"], json!({}))),
            observed: in_sandbox(
                SandboxState::Missing,
                seen(vec![init(waiting("i1")), init(waiting("i2")), waiting("app")]),
            ),
            want: PodActions {
                create_sandbox: Some(SandboxReason::Missing),
                start: vec![start_init("i1", FirstRun)],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "the second init container starts once the first succeeded",
            pod: Some(pod("Always", &["i1", "i2"], &["app"], json!({}))),
            observed: seen(vec![init(exited("i1", 0)), init(waiting("i2")), waiting("app")]),
            want: PodActions {
                start: vec![start_init("i2", FirstRun)],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "nothing else starts while an init container runs",
            pod: Some(pod("Always", &["i1", "i2"], &["app"], json!({}))),
            observed: seen(vec![init(running("i1")), init(waiting("i2")), waiting("app")]),
            want: phase(PodPhase::Pending),
        },
        Case {
            name: "every regular container starts once all init containers succeeded",
            pod: Some(pod("Always", &["i1"], &["app", "side"], json!({}))),
            observed: seen(vec![init(exited("i1", 0)), waiting("app"), waiting("side")]),
            want: PodActions {
                start: vec![start("app", FirstRun), start("side", FirstRun)],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "an init container that failed under Never fails the pod",
            pod: Some(pod("Never", &["i1", "i2"], &["app"], json!({}))),
            observed: seen(vec![init(exited("i1", 1)), init(waiting("i2")), waiting("app")]),
            want: phase(PodPhase::Failed),
        },
        Case {
            name: "an init container that succeeded under Never lets the next one start",
            pod: Some(pod("Never", &["i1", "i2"], &["app"], json!({}))),
            observed: seen(vec![init(exited("i1", 0)), init(waiting("i2")), waiting("app")]),
            want: PodActions {
                start: vec![start_init("i2", FirstRun)],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "an init container that failed under OnFailure restarts at once the first time",
            pod: Some(pod("OnFailure", &["i1"], &["app"], json!({}))),
            observed: seen(vec![init(exited("i1", 1)), waiting("app")]),
            want: PodActions {
                start: vec![start_init("i1", Exited { exit_code: 1 })],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "an init container that failed again under Always backs off",
            pod: Some(pod("Always", &["i1"], &["app"], json!({}))),
            observed: seen(vec![init(exited("i1", 2).runs(2)), waiting("app")]),
            want: PodActions {
                back_off: vec![back_off("i1", true, secs(10))],
                wake: Some(now().instant + secs(10)),
                ..phase(PodPhase::Pending)
            },
        },
    ]);
}

#[test]
fn compute_pod_actions_should_follow_the_restart_policy() {
    use StartReason::*;
    let one = |policy: &str, rec: ContainerRecord, want: PodActions, name| Case {
        name,
        pod: Some(pod(policy, &[], &["app"], json!({}))),
        observed: seen(vec![rec]),
        want,
    };
    check(vec![
        one(
            "Always",
            exited("app", 0),
            PodActions {
                start: vec![start("app", Exited { exit_code: 0 })],
                ..phase(PodPhase::Running)
            },
            "Always restarts a container that exited 0",
        ),
        one(
            "Always",
            exited("app", 1),
            PodActions {
                start: vec![start("app", Exited { exit_code: 1 })],
                ..phase(PodPhase::Running)
            },
            "Always restarts a container that failed",
        ),
        one(
            "OnFailure",
            exited("app", 0),
            phase(PodPhase::Succeeded),
            "OnFailure leaves a container that exited 0, and the pod succeeded",
        ),
        one(
            "OnFailure",
            exited("app", 137),
            PodActions {
                start: vec![start("app", Exited { exit_code: 137 })],
                ..phase(PodPhase::Running)
            },
            "OnFailure restarts a container that failed",
        ),
        one(
            "Never",
            exited("app", 0),
            phase(PodPhase::Succeeded),
            "Never leaves a container that exited 0, and the pod succeeded",
        ),
        one(
            "Never",
            exited("app", 1),
            phase(PodPhase::Failed),
            "Never leaves a container that failed, and the pod failed",
        ),
        one(
            "Always",
            running("app"),
            phase(PodPhase::Running),
            "a running container is left alone",
        ),
        Case {
            name: "under Never the pod runs until its last container exits",
            pod: Some(pod("Never", &[], &["a", "b"], json!({}))),
            observed: seen(vec![exited("a", 0), running("b")]),
            want: phase(PodPhase::Running),
        },
        Case {
            name: "a pod the API shows as finished, with nothing running, is left alone",
            pod: Some(with_api_phase(pod("Always", &[], &["app"], json!({})), "Failed")),
            observed: seen(vec![exited("app", 1)]),
            want: PodActions { finished: true, ..phase(PodPhase::Running) },
        },
    ]);
}

#[test]
fn compute_pod_actions_should_back_off_crash_loops_up_to_the_cap() {
    use StartReason::*;
    let now = now();
    let app = |rec: ContainerRecord| seen(vec![rec]);
    let always = || Some(pod("Always", &[], &["app"], json!({})));
    let backing_off = |delay: Duration| PodActions {
        back_off: vec![back_off("app", false, delay)],
        wake: Some(now.instant + delay),
        ..phase(PodPhase::Running)
    };
    let rows = vec![
        Case {
            name: "the first restart does not wait",
            pod: always(),
            observed: app(exited("app", 1).runs(1)),
            want: PodActions {
                start: vec![start("app", Exited { exit_code: 1 })],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "the second restart waits 10s",
            pod: always(),
            observed: app(exited("app", 1).runs(2)),
            want: backing_off(secs(10)),
        },
        Case {
            name: "each further restart waits twice as long",
            pod: always(),
            observed: app(exited("app", 1).runs(3).backoff(secs(10))),
            want: backing_off(secs(20)),
        },
        Case {
            name: "the wait stops growing at 5 minutes",
            pod: always(),
            observed: app(exited("app", 1).runs(6).backoff(secs(160))),
            want: backing_off(secs(300)),
        },
        Case {
            name: "the wait stays at 5 minutes",
            pod: always(),
            observed: app(exited("app", 1).runs(9).backoff(secs(300))),
            want: backing_off(secs(300)),
        },
        Case {
            name: "a run longer than 10 minutes resets the back-off",
            pod: always(),
            observed: app(exited("app", 1)
                .runs(9)
                .backoff(secs(300))
                .ran_for(chrono::Duration::minutes(11))),
            want: PodActions {
                start: vec![start("app", Exited { exit_code: 1 })],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "a container in back-off waits until its time",
            pod: always(),
            observed: app(exited("app", 1)
                .runs(3)
                .backoff(secs(20))
                .retry_at(now.instant + secs(7))),
            want: PodActions { wake: Some(now.instant + secs(7)), ..phase(PodPhase::Running) },
        },
        Case {
            name: "a container whose back-off is over starts, keeping its back-off",
            pod: always(),
            observed: app(exited("app", 1).runs(3).backoff(secs(20)).retry_at(now.instant)),
            want: PodActions {
                start: vec![StartContainer { backoff: secs(20), ..start("app", WaitOver) }],
                ..phase(PodPhase::Running)
            },
        },
    ];
    check(rows);
}

#[test]
fn compute_pod_actions_should_restart_on_liveness_and_startup_failures_only() {
    let app = |rec: ContainerRecord| seen(vec![rec]);
    check(vec![
        Case {
            name: "a failed liveness probe kills the container with the pod's grace period",
            pod: Some(pod("Always", &[], &["app"], json!({}))),
            observed: app(running("app").probe_failed(ProbeKind::Liveness, None)),
            want: PodActions {
                kill: vec![kill("app", KillReason::LivenessProbe, 30)],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "the probe's own terminationGracePeriodSeconds wins over the pod's",
            pod: Some(pod("Always", &[], &["app"], json!({"terminationGracePeriodSeconds": 60}))),
            observed: app(running("app").probe_failed(ProbeKind::Liveness, Some(5))),
            want: PodActions {
                kill: vec![kill("app", KillReason::LivenessProbe, 5)],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "a failed startup probe kills the container too",
            pod: Some(pod(
                "OnFailure",
                &[],
                &["app"],
                json!({"terminationGracePeriodSeconds": 10}),
            )),
            observed: app(running("app").probe_failed(ProbeKind::Startup, None)),
            want: PodActions {
                kill: vec![kill("app", KillReason::StartupProbe, 10)],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "a failed readiness probe does not restart anything",
            pod: Some(pod("Always", &[], &["app"], json!({}))),
            observed: app(running("app").probe_failed(ProbeKind::Readiness, None)),
            want: phase(PodPhase::Running),
        },
        Case {
            name: "a changed image restarts the container even under Never",
            pod: Some(pod("Never", &[], &["app"], json!({}))),
            observed: app(running("app").image("img:0")),
            want: PodActions {
                kill: vec![kill("app", KillReason::SpecChanged, 30)],
                start: vec![start("app", StartReason::SpecChanged)],
                ..phase(PodPhase::Running)
            },
        },
    ]);
}

#[test]
fn compute_pod_actions_should_stop_pods_being_deleted_or_past_their_deadline() {
    let killing = |reason, grace, teardown, phase_now| PodActions {
        kill_pod: Some(KillPod { reason, grace: secs(grace), teardown }),
        ..phase(phase_now)
    };
    check(vec![
        Case {
            name: "a deleted pod is killed with its deletion grace period and released",
            pod: Some(deleting(pod("Always", &[], &["app"], json!({})), Some(20))),
            observed: seen(vec![running("app")]),
            want: killing(KillReason::PodDeleted, 20, true, PodPhase::Running),
        },
        Case {
            name: "a deleted pod without a grace period is killed at once",
            pod: Some(deleting(pod("Always", &["i1"], &["app"], json!({})), None)),
            observed: seen(vec![init(running("i1")), waiting("app")]),
            want: killing(KillReason::PodDeleted, 0, true, PodPhase::Pending),
        },
        Case {
            name: "deletion wins over a passed deadline and a finished phase",
            pod: Some(deleting(
                with_api_phase(
                    pod("Never", &[], &["app"], json!({"activeDeadlineSeconds": 1})),
                    "Succeeded",
                ),
                Some(3),
            )),
            observed: seen(vec![exited("app", 0)]),
            want: killing(KillReason::PodDeleted, 3, true, PodPhase::Succeeded),
        },
        Case {
            name: "a pod gone from the API is released at once",
            pod: None,
            observed: seen(vec![running("app")]),
            want: killing(KillReason::PodGone, 0, true, PodPhase::Pending),
        },
        Case {
            name: "a pod past activeDeadlineSeconds is killed with its grace period",
            pod: Some(pod(
                "Always",
                &[],
                &["app"],
                json!({"activeDeadlineSeconds": 60, "terminationGracePeriodSeconds": 7}),
            )),
            observed: seen(vec![running("app")]),
            want: killing(KillReason::DeadlineExceeded, 7, false, PodPhase::Running),
        },
        Case {
            name: "a pod before its deadline runs on and wakes up at it",
            pod: Some(pod("Always", &[], &["app"], json!({"activeDeadlineSeconds": 300}))),
            observed: seen(vec![waiting("app")]),
            want: PodActions {
                start: vec![start("app", StartReason::FirstRun)],
                wake: Some(now().instant + secs(180)),
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "a pod that ran out its deadline and stopped is finished and Failed",
            pod: Some(pod("Always", &[], &["app"], json!({"activeDeadlineSeconds": 60}))),
            observed: ObservedPod { deadline_exceeded: true, ..seen(vec![exited("app", 137)]) },
            want: PodActions { finished: true, ..phase(PodPhase::Failed) },
        },
        Case {
            name: "an evicted pod is killed with the eviction's one-second grace, kept on the node",
            pod: Some(pod("Always", &[], &["app"], json!({"terminationGracePeriodSeconds": 30}))),
            observed: ObservedPod { evicted: true, ..seen(vec![running("app")]) },
            want: killing(KillReason::Evicted, 1, false, PodPhase::Failed),
        },
        Case {
            name: "an evicted pod whose containers stopped is finished and Failed, never restarted",
            pod: Some(pod("Always", &[], &["app"], json!({}))),
            observed: ObservedPod { evicted: true, ..seen(vec![exited("app", 137)]) },
            want: PodActions { finished: true, ..phase(PodPhase::Failed) },
        },
        Case {
            name: "a pod refused before it started never gets a sandbox",
            pod: Some(pod("Always", &[], &["app"], json!({}))),
            observed: in_sandbox(
                SandboxState::Missing,
                ObservedPod { evicted: true, ..seen(vec![waiting("app")]) },
            ),
            want: PodActions { finished: true, ..phase(PodPhase::Failed) },
        },
    ]);
}

#[test]
fn compute_pod_actions_should_recreate_a_missing_or_dead_sandbox() {
    use StartReason::*;
    check(vec![
        Case {
            name: "a pod without a sandbox gets one and starts its containers",
            pod: Some(pod("Always", &[], &["app", "side"], json!({}))),
            observed: in_sandbox(
                SandboxState::Missing,
                seen(vec![waiting("app"), waiting("side")]),
            ),
            want: PodActions {
                create_sandbox: Some(SandboxReason::Missing),
                start: vec![start("app", FirstRun), start("side", FirstRun)],
                ..phase(PodPhase::Pending)
            },
        },
        Case {
            name: "a dead sandbox is replaced: what runs is killed, init containers run again",
            pod: Some(pod("Always", &["i1"], &["app"], json!({}))),
            observed: in_sandbox(
                SandboxState::NotReady,
                seen(vec![init(exited("i1", 0)), running("app")]),
            ),
            want: PodActions {
                kill: vec![kill("app", KillReason::SandboxDead, 30)],
                create_sandbox: Some(SandboxReason::Dead),
                start: vec![start_init("i1", SandboxRecreated)],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "under OnFailure a new sandbox does not rerun containers that succeeded",
            pod: Some(pod("OnFailure", &[], &["done", "app"], json!({}))),
            observed: in_sandbox(
                SandboxState::NotReady,
                seen(vec![exited("done", 0), running("app")]),
            ),
            want: PodActions {
                kill: vec![kill("app", KillReason::SandboxDead, 30)],
                create_sandbox: Some(SandboxReason::Dead),
                start: vec![start("app", SandboxRecreated)],
                ..phase(PodPhase::Running)
            },
        },
        Case {
            name: "under Never a dead sandbox is not replaced once containers ran",
            pod: Some(pod("Never", &[], &["app"], json!({}))),
            observed: in_sandbox(SandboxState::NotReady, seen(vec![running("app")])),
            want: PodActions {
                kill: vec![kill("app", KillReason::SandboxDead, 30)],
                ..phase(PodPhase::Running)
            },
        },
    ]);
}
