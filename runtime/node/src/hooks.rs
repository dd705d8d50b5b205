//! Container lifecycle hooks (`lifecycle.postStart`, `lifecycle.preStop`): exec, httpGet and
//! sleep handlers run the way the kubelet runs them, with its error wording.
//!
//! The pod worker runs postStart right after starting a container (the container does not
//! count as running until it returns; on error it kills the container and reports the
//! `PostStartHookError`), and preStop before stopping one, within the grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::time::Instant;

use crate::probes::{ProbeContext, exec_command, http_get};

/// Kubernetes puts no deadline on a postStart hook; this only keeps a stuck one from pinning
/// its container forever.
const POST_START_TIMEOUT: Duration = Duration::from_secs(3600);
/// After preStop, the container always gets at least this long to stop (the kubelet's
/// `minimumGracePeriodInSeconds`).
pub const MINIMUM_GRACE_PERIOD: Duration = Duration::from_secs(2);

/// A failed hook, worded as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The container is killed; its waiting state shows `reason()` and `message`.
    #[error("PostStartHookError: {message}")]
    PostStart { message: String },
    /// Reported as an event only; the container is stopped anyway.
    #[error("PreStopHookError: {message}")]
    PreStop { message: String },
}

impl HookError {
    /// `containerStatuses[].state.waiting.reason` after a failed postStart hook.
    pub fn reason(&self) -> &'static str {
        match self {
            HookError::PostStart { .. } => "PostStartHookError",
            HookError::PreStop { .. } => "PreStopHookError",
        }
    }

    /// Reason of the Warning event the kubelet records.
    pub fn event_reason(&self) -> &'static str {
        match self {
            HookError::PostStart { .. } => "FailedPostStartHook",
            HookError::PreStop { .. } => "FailedPreStopHook",
        }
    }

    /// The event's (and waiting state's) message.
    pub fn message(&self) -> &str {
        match self {
            HookError::PostStart { message } | HookError::PreStop { message } => message,
        }
    }
}

/// Run `container`'s postStart `handler`.
pub async fn run_post_start(
    handler: &LifecycleHandler,
    container: &Container,
    ctx: &ProbeContext,
) -> Result<(), HookError> {
    run_handler(handler, container, ctx, POST_START_TIMEOUT)
        .await
        .map_err(|message| HookError::PostStart { message })
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
        Ok(Err(message)) => (Some(HookError::PreStop { message }), false),
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
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_handler(handler, container, ctx, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Lifecycle hook for Container {:?} in Pod {:?} did not complete within {}s",
            container.name,
            pod_label(ctx),
            timeout.as_secs()
        )),
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
) -> Result<(), String> {
    let (name, pod) = (&container.name, pod_label(ctx));
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let failed = |error: String, output: &str| {
            format!(
                "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod:?} failed - error: {error}, message: {output:?}",
                cmd.join(" ")
            )
        };
        return match exec_command(ctx.runtime.as_ref(), &ctx.container_id, &cmd, timeout).await {
            Ok((0, _)) => Ok(()),
            Ok((code, output)) => Err(failed(
                format!("command '{}' exited with {code}: {output}", cmd.join(" ")),
                &output,
            )),
            Err(e) => Err(failed(e, "")),
        };
    }
    if let Some(get) = &handler.http_get {
        // Like the kubelet, any answer counts: only failing to get one is an error.
        return http_get(get, container, &ctx.pod_ip, timeout).await.map(|_| ()).map_err(|e| {
            format!(
                "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod:?} failed - error: {e}",
                get.path.as_deref().unwrap_or("")
            )
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
    Err(format!("Lifecycle hook for Container {name:?} in Pod {pod:?} has no handler"))
}

#[cfg(test)]
mod tests;
