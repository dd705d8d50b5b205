//! The deciding half of a pod worker, Kubernetes' `computePodActions`
//! (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`): from the pod as the API has it, what the
//! worker last saw of its sandbox and containers (states, run counts, back-off, probe verdicts)
//! and the time, say what to do and why. Pure — no runtime or API calls — so every case is a
//! row in a table test; the acting half (`super::act`) carries the answer out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use skiff_runtime_core::ExitInfo;
use tokio::time::Instant;

use crate::probes::ProbeKind;

/// The crash back-off after the second exit; it doubles with every exit after that.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// The crash back-off never grows past this (the kubelet's `MaxContainerBackOff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A run longer than this resets the back-off (the kubelet forgets a crash after twice the
/// maximum back-off).
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// `terminationGracePeriodSeconds` when the pod leaves it unset.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// One container's state as the worker keeps it (what `containerStatuses[].state` shows).
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerPhase {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: DateTime<Utc> },
    Terminated(ExitInfo),
}

impl ContainerPhase {
    /// Not started yet.
    pub fn creating() -> Self {
        ContainerPhase::Waiting { reason: "ContainerCreating".into(), message: None }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, ContainerPhase::Running { .. })
    }

    /// Ran to completion with exit code 0.
    pub fn succeeded(&self) -> bool {
        matches!(self, ContainerPhase::Terminated(e) if e.exit_code == 0)
    }
}

/// A liveness, startup or readiness probe that failed its `failureThreshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFailure {
    pub kind: ProbeKind,
    /// The probe's own `terminationGracePeriodSeconds`, which overrides the pod's.
    pub grace_seconds: Option<i64>,
}

/// What the worker knows about one container of the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub init: bool,
    /// Runs started so far (`restartCount` is one less once the first run started).
    pub runs: u32,
    pub phase: ContainerPhase,
    /// The back-off the last restart waited (zero: it did not wait).
    pub backoff: Duration,
    /// While waiting: not to be started before then (crash back-off, image or config retry).
    pub next_attempt: Option<Instant>,
    /// The image the current run was started from (`None` when not known, e.g. adopted).
    pub running_image: Option<String>,
    /// A probe verdict not acted on yet.
    pub probe_failure: Option<ProbeFailure>,
}

impl ContainerRecord {
    /// A container that has not run yet.
    pub fn new(name: &str, init: bool) -> Self {
        ContainerRecord {
            name: name.to_string(),
            init,
            runs: 0,
            phase: ContainerPhase::creating(),
            backoff: Duration::ZERO,
            next_attempt: None,
            running_image: None,
            probe_failure: None,
        }
    }
}

/// The pod's sandbox as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// None was created yet (or it was released).
    Missing,
    Ready,
    /// It died under the pod's containers (the runtime no longer has it, or says not ready).
    NotReady,
}

/// Everything besides the pod object that the decision depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    pub sandbox: SandboxState,
    /// Init containers, then the others, each in spec order.
    pub containers: Vec<ContainerRecord>,
    /// `status.startTime`.
    pub start_time: Option<DateTime<Utc>>,
    /// `activeDeadlineSeconds` ran out earlier: the pod is Failed for good.
    pub deadline_exceeded: bool,
    /// The pod was evicted (or refused under node pressure): it is Failed for good.
    pub evicted: bool,
}

/// The current time on both clocks: exits and deadlines are wall-clock, back-off waits are
/// monotonic.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub instant: Instant,
}

impl Now {
    pub fn now() -> Self {
        Now { wall: Utc::now(), instant: Instant::now() }
    }
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// Why containers are killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// The pod was deleted (`deletionTimestamp` set): stop with its grace period, then release.
    PodDeleted,
    /// The pod is gone from the API: stop at once and release.
    PodGone,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// The eviction manager evicted the pod.
    Evicted,
    /// The liveness probe failed.
    LivenessProbe,
    /// The startup probe failed.
    StartupProbe,
    /// The container's spec (its image) changed since it started.
    SpecChanged,
    /// The sandbox died; what still runs in it goes with it.
    SandboxDead,
}

/// Stop the whole pod; nothing else in [`PodActions`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPod {
    pub reason: KillReason,
    /// What each container gets (preStop hook included).
    pub grace: Duration,
    /// Also release the sandbox, the pod's address and its volumes: the pod leaves the node.
    pub teardown: bool,
}

/// Stop one running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillContainer {
    pub name: String,
    pub reason: KillReason,
    pub grace: Duration,
}

/// Why a container starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    /// It never ran (or its first start is retried).
    FirstRun,
    /// Its wait (crash back-off, a failed image pull or config) is over.
    WaitOver,
    /// It exited with this code and the restart policy brings it back.
    Exited { exit_code: i32 },
    /// It was killed because its spec changed; it restarts whatever the restart policy.
    SpecChanged,
    /// The sandbox was recreated: the pod starts over.
    SandboxRecreated,
}

/// Start (or restart) one container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartContainer {
    pub name: String,
    pub init: bool,
    pub reason: StartReason,
    /// The back-off to remember for the next exit.
    pub backoff: Duration,
}

/// Hold an exited container back before restarting it (`CrashLoopBackOff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackOff {
    pub name: String,
    pub init: bool,
    pub delay: Duration,
    pub until: Instant,
}

/// Why a sandbox is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxReason {
    /// The pod has none yet.
    Missing,
    /// The old one died: it is removed first, and the init containers run again.
    Dead,
}

/// What one pass of a pod worker does, and why. Killing comes first, then the sandbox, then
/// starting; back-offs only record a wait.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodActions {
    pub kill_pod: Option<KillPod>,
    /// The pod reached a final phase and nothing runs: nothing to do until it is deleted.
    pub finished: bool,
    pub create_sandbox: Option<SandboxReason>,
    pub kill: Vec<KillContainer>,
    /// In order: at most one init container, or the regular containers.
    pub start: Vec<StartContainer>,
    pub back_off: Vec<BackOff>,
    /// When to look again for a wait that ends (back-off, retry, `activeDeadlineSeconds`).
    pub wake: Option<Instant>,
    /// The pod's phase as things stand, before acting.
    pub phase: PodPhase,
}

impl PodActions {
    fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

/// Whether a container that exited with `code` restarts under `policy`.
pub fn restarts(policy: &str, code: i32) -> bool {
    policy == "Always" || (policy == "OnFailure" && code != 0)
}

/// `spec.restartPolicy`, defaulted.
pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// Init containers restart on failure unless the pod never restarts anything.
fn init_restart_policy(policy: &str) -> &'static str {
    if policy == "Never" { "Never" } else { "OnFailure" }
}

fn grace_of(spec: &PodSpec) -> Duration {
    spec.termination_grace_period_seconds
        .map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64))
}

/// The back-off before restarting a container that exited after `exit`, having waited
/// `previous` last time: none for the first restart or after a long run, then
/// [`INITIAL_BACKOFF`] doubling up to [`MAX_BACKOFF`].
pub fn next_backoff(runs: u32, previous: Duration, exit: &ExitInfo) -> Duration {
    let ran_for = (exit.finished_at - exit.started_at).num_seconds();
    if runs <= 1 || ran_for > BACKOFF_RESET.as_secs() as i64 {
        Duration::ZERO
    } else if previous.is_zero() {
        INITIAL_BACKOFF
    } else {
        (previous * 2).min(MAX_BACKOFF)
    }
}

/// The pod's phase from its containers, Kubernetes' rules: Failed past the deadline or when
/// an init container failed for good; Pending until the init containers succeeded; then
/// Succeeded or Failed once every container exited for good, Running once one has run.
pub fn pod_phase(
    spec: &PodSpec,
    containers: &[ContainerRecord],
    deadline_exceeded: bool,
) -> PodPhase {
    let policy = restart_policy(spec);
    let inits = || containers.iter().filter(|c| c.init);
    let mains: Vec<&ContainerRecord> = containers.iter().filter(|c| !c.init).collect();
    let init_ok = inits().all(|c| c.phase.succeeded());
    let init_failed = policy == "Never"
        && inits().any(|c| matches!(&c.phase, ContainerPhase::Terminated(e) if e.exit_code != 0));
    let done = |c: &&ContainerRecord| matches!(&c.phase, ContainerPhase::Terminated(e) if !restarts(policy, e.exit_code));
    if deadline_exceeded || init_failed {
        PodPhase::Failed
    } else if !init_ok {
        PodPhase::Pending
    } else if !mains.is_empty() && mains.iter().all(done) {
        if mains.iter().all(|c| c.phase.succeeded()) {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        }
    } else if mains.iter().any(|c| c.phase.is_running() || c.runs > 0) {
        PodPhase::Running
    } else {
        PodPhase::Pending
    }
}

/// Decide what to do with `pod` (`None`: it is gone from the API) given what was `observed`.
pub fn compute_pod_actions(pod: Option<&Pod>, observed: &ObservedPod, now: Now) -> PodActions {
    let Some(pod) = pod else {
        let kill = KillPod { reason: KillReason::PodGone, grace: Duration::ZERO, teardown: true };
        return PodActions { kill_pod: Some(kill), ..Default::default() };
    };
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let mut actions = PodActions {
        phase: pod_phase(
            spec,
            &observed.containers,
            observed.deadline_exceeded || observed.evicted,
        ),
        ..Default::default()
    };
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
        actions.kill_pod = Some(KillPod {
            reason: KillReason::PodDeleted,
            grace: Duration::from_secs(grace),
            teardown: true,
        });
        return actions;
    }
    let running = |c: &&ContainerRecord| c.phase.is_running();
    if observed.evicted {
        // Killed with the eviction's short grace; nothing starts again.
        if observed.containers.iter().any(|c| running(&c)) {
            actions.kill_pod = Some(KillPod {
                reason: KillReason::Evicted,
                grace: crate::eviction::EVICTION_GRACE.min(grace_of(spec)),
                teardown: false,
            });
        } else {
            actions.finished = true;
        }
        return actions;
    }
    let api_terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if (api_terminal || observed.deadline_exceeded)
        && !observed.containers.iter().any(|c| running(&c))
    {
        actions.finished = true;
        return actions;
    }
    if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, observed.start_time) {
        let end = start + chrono::Duration::seconds(deadline);
        if now.wall >= end {
            actions.kill_pod = Some(KillPod {
                reason: KillReason::DeadlineExceeded,
                grace: grace_of(spec),
                teardown: false,
            });
            return actions;
        }
        actions.wake_at(now.instant + (end - now.wall).to_std().unwrap_or(Duration::ZERO));
    }
    let policy = restart_policy(spec);
    match observed.sandbox {
        SandboxState::Ready => {}
        SandboxState::Missing => actions.create_sandbox = Some(SandboxReason::Missing),
        SandboxState::NotReady => {
            sandbox_died(spec, policy, observed, &mut actions);
            return actions;
        }
    }

    let record = |init: bool, name: &str| {
        observed.containers.iter().find(|c| c.init == init && c.name == name)
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let mut init_done = true;
    for c in inits {
        let Some(rec) = record(true, &c.name) else { continue };
        if rec.phase.succeeded() {
            continue;
        }
        init_done = false;
        decide(rec, init_restart_policy(policy), api_terminal, spec, now, &mut actions);
        break;
    }
    if init_done {
        for c in &spec.containers {
            let Some(rec) = record(false, &c.name) else { continue };
            let spec_image = c.image.as_deref().unwrap_or_default();
            let changed = rec.running_image.as_deref().is_some_and(|image| image != spec_image);
            // Like the kubelet, a changed spec restarts the container whatever the policy.
            if rec.phase.is_running() && changed {
                actions.kill.push(KillContainer {
                    name: rec.name.clone(),
                    reason: KillReason::SpecChanged,
                    grace: grace_of(spec),
                });
                actions.start.push(StartContainer {
                    name: rec.name.clone(),
                    init: false,
                    reason: StartReason::SpecChanged,
                    backoff: rec.backoff,
                });
                continue;
            }
            decide(rec, policy, api_terminal, spec, now, &mut actions);
        }
    }
    actions
}

/// One container's next step under `policy`.
fn decide(
    rec: &ContainerRecord,
    policy: &str,
    api_terminal: bool,
    spec: &PodSpec,
    now: Now,
    actions: &mut PodActions,
) {
    match &rec.phase {
        ContainerPhase::Running { .. } => {
            let Some(failure) = rec.probe_failure else { return };
            let reason = match failure.kind {
                ProbeKind::Liveness => KillReason::LivenessProbe,
                ProbeKind::Startup => KillReason::StartupProbe,
                // Readiness only takes the container out of its Services.
                ProbeKind::Readiness => return,
            };
            let grace = failure
                .grace_seconds
                .map_or_else(|| grace_of(spec), |s| Duration::from_secs(s.max(0) as u64));
            // Killed now; whether it comes back is decided once its exit is seen.
            actions.kill.push(KillContainer { name: rec.name.clone(), reason, grace });
        }
        ContainerPhase::Terminated(exit) => {
            if !restarts(policy, exit.exit_code) || api_terminal {
                return;
            }
            let backoff = next_backoff(rec.runs, rec.backoff, exit);
            if backoff.is_zero() {
                actions.start.push(StartContainer {
                    name: rec.name.clone(),
                    init: rec.init,
                    reason: StartReason::Exited { exit_code: exit.exit_code },
                    backoff,
                });
            } else {
                let until = now.instant + backoff;
                actions.back_off.push(BackOff {
                    name: rec.name.clone(),
                    init: rec.init,
                    delay: backoff,
                    until,
                });
                actions.wake_at(until);
            }
        }
        ContainerPhase::Waiting { .. } => {
            if let Some(at) = rec.next_attempt.filter(|at| *at > now.instant) {
                actions.wake_at(at);
                return;
            }
            let reason = if rec.runs == 0 && rec.next_attempt.is_none() {
                StartReason::FirstRun
            } else {
                StartReason::WaitOver
            };
            actions.start.push(StartContainer {
                name: rec.name.clone(),
                init: rec.init,
                reason,
                backoff: rec.backoff,
            });
        }
    }
}

/// The sandbox died: what still runs is killed, and the pod starts over in a new sandbox
/// (init containers first) — unless it never restarts anything and something already ran.
fn sandbox_died(spec: &PodSpec, policy: &str, observed: &ObservedPod, actions: &mut PodActions) {
    for c in observed.containers.iter().filter(|c| c.phase.is_running()) {
        actions.kill.push(KillContainer {
            name: c.name.clone(),
            reason: KillReason::SandboxDead,
            grace: grace_of(spec),
        });
    }
    if policy == "Never" && observed.containers.iter().any(|c| c.runs > 0) {
        return;
    }
    actions.create_sandbox = Some(SandboxReason::Dead);
    let start = |c: &ContainerRecord| StartContainer {
        name: c.name.clone(),
        init: c.init,
        reason: StartReason::SandboxRecreated,
        backoff: c.backoff,
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let first_init =
        inits.iter().find_map(|i| observed.containers.iter().find(|c| c.init && c.name == i.name));
    if let Some(first) = first_init {
        actions.start.push(start(first));
        return;
    }
    for c in &spec.containers {
        let Some(rec) = observed.containers.iter().find(|r| !r.init && r.name == c.name) else {
            continue;
        };
        if policy == "OnFailure" && rec.phase.succeeded() {
            continue;
        }
        actions.start.push(start(rec));
    }
}

#[cfg(test)]
mod tests;
