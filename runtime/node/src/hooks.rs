//! Container lifecycle hooks (`lifecycle.postStart`, `lifecycle.preStop`): exec, httpGet and
//! sleep handlers run the way the kubelet runs them, with its error wording.
//!
//! The pod worker runs postStart right after starting a container (the container does not
//! count as running until it returns; on error it kills the container and reports the
//! `PostStartHookError`), and preStop before stopping one, within the grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::time::Instant;

use crate::probes::{ProbeContext, ProbeError, exec_command, http_get};

/// Kubernetes puts no deadline on a postStart hook; this only keeps a stuck one from pinning
/// its container forever.
const POST_START_TIMEOUT: Duration = Duration::from_secs(3600);
/// After preStop, the container always gets at least this long to stop (the kubelet's
/// `minimumGracePeriodInSeconds`).
pub const MINIMUM_GRACE_PERIOD: Duration = Duration::from_secs(2);

/// Why one lifecycle handler failed. The messages are the kubelet's, word for word (they are
/// what the pod's hook events and waiting state show), hence their capitals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "Exec lifecycle hook ([{command}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}"
    )]
    Exec { command: String, container: String, pod: String, error: ProbeError, output: String },
    #[error(
        "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
    )]
    Http { path: String, container: String, pod: String, error: ProbeError },
    #[error(
        "Lifecycle hook for Container {container:?} in Pod {pod:?} did not complete within {seconds}s"
    )]
    TimedOut { container: String, pod: String, seconds: u64 },
    #[error("Lifecycle hook for Container {container:?} in Pod {pod:?} has no handler")]
    NoHandler { container: String, pod: String },
}

/// A failed hook, worded as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The container is killed; its waiting state shows `reason()` and `message()`.
    #[error("PostStartHookError: {0}")]
    PostStart(#[source] HandlerError),
    /// Reported as an event only; the container is stopped anyway.
    #[error("PreStopHookError: {0}")]
    PreStop(#[source] HandlerError),
}

impl HookError {
    /// `containerStatuses[].state.waiting.reason` after a failed postStart hook.
    pub fn reason(&self) -> &'static str {
        match self {
            HookError::PostStart(_) => "PostStartHookError",
            HookError::PreStop(_) => "PreStopHookError",
        }
    }

    /// Reason of the Warning event the kubelet records.
    pub fn event_reason(&self) -> &'static str {
        match self {
            HookError::PostStart(_) => "FailedPostStartHook",
            HookError::PreStop(_) => "FailedPreStopHook",
        }
    }

    /// The event's (and waiting state's) message.
    pub fn message(&self) -> String {
        match self {
            HookError::PostStart(e) | HookError::PreStop(e) => e.to_string(),
        }
    }
}

/// Run `container`'s postStart `handler`.
pub async fn run_post_start(
    handler: &LifecycleHandler,
    container: &Container,
    ctx: &ProbeContext,
) -> Result<(), HookError> {
    run_handler(handler, container, ctx, POST_START_TIMEOUT).await.map_err(HookError::PostStart)
}

/// What happened to a preStop hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreStopOutcome {
    /// How long the container may still take to stop (the grace period minus the hook's
    /// time, at least [`MINIMUM_GRACE_PERIOD`]): the timeout for `stop_container`.
    pub remaining_grace: Duration,
    /// The hook failed (record a `FailedPreStopHook` event); stopping goes on regardless.
    pub error: Option<HookError>,
    /// The hook was still running when the grace period ran out and was abandoned.
    pub timed_out: bool,
}

/// Run `container`'s preStop `handler`, for at most `grace_period`.
pub async fn run_pre_stop(
    handler: &LifecycleHandler,
    container: &Container,
    ctx: &ProbeContext,
    grace_period: Duration,
) -> PreStopOutcome {
    let started = Instant::now();
    let run = run_handler(handler, container, ctx, grace_period);
    let (error, timed_out) = match tokio::time::timeout(grace_period, run).await {
        Ok(Ok(())) => (None, false),
        Ok(Err(e)) => (Some(HookError::PreStop(e)), false),
        Err(_) => (None, true),
    };
    let remaining_grace = grace_period.saturating_sub(started.elapsed()).max(MINIMUM_GRACE_PERIOD);
    PreStopOutcome { remaining_grace, error, timed_out }
}

/// Run one lifecycle `handler` for at most `timeout`: `Err` has the kubelet's message (without
/// the `PostStartHookError:` prefix). For callers that word errors themselves.
pub async fn run_hook(
    handler: &LifecycleHandler,
    container: &Container,
    ctx: &ProbeContext,
    timeout: Duration,
) -> Result<(), HandlerError> {
    match tokio::time::timeout(timeout, run_handler(handler, container, ctx, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(HandlerError::TimedOut {
            container: container.name.clone(),
            pod: pod_label(ctx),
            seconds: timeout.as_secs(),
        }),
    }
}

/// `name_namespace(uid)`, the kubelet's way of naming a pod in messages.
fn pod_label(ctx: &ProbeContext) -> String {
    format!("{}_{}({})", ctx.pod_name, ctx.pod_namespace, ctx.pod_uid)
}

async fn run_handler(
    handler: &LifecycleHandler,
    container: &Container,
    ctx: &ProbeContext,
    timeout: Duration,
) -> Result<(), HandlerError> {
    let (name, pod) = (container.name.clone(), pod_label(ctx));
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default().join(" ");
        let cmd = exec.command.as_deref().unwrap_or_default();
        let (error, output) =
            match exec_command(ctx.runtime.as_ref(), &ctx.container_id, cmd, timeout).await {
                Ok((0, _)) => return Ok(()),
                Ok((code, output)) => (
                    ProbeError::ExitStatus {
                        command: command.clone(),
                        code,
                        output: output.clone(),
                    },
                    output,
                ),
                Err(e) => (e, String::new()),
            };
        return Err(HandlerError::Exec { command, container: name, pod, error, output });
    }
    if let Some(get) = &handler.http_get {
        // Like the kubelet, any answer counts: only failing to get one is an error.
        let answer = http_get(get, container, &ctx.pod_ip, timeout);
        return answer.await.map(|_| ()).map_err(|error| HandlerError::Http {
            path: get.path.clone().unwrap_or_default(),
            container: name,
            pod,
            error,
        });
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        // Deprecated and never run by the kubelet; accepted for compatibility.
        return Ok(());
    }
    Err(HandlerError::NoHandler { container: name, pod })
}

#[cfg(test)]
mod tests;
