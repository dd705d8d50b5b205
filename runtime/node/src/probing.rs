//! How a pod worker probes its containers and runs their lifecycle hooks: the worker-facing
//! shape over [`crate::probes`] and [`crate::hooks`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use skiff_runtime_core::{ContainerId, ContainerRuntime};
use tokio::time::Instant;

use crate::probes::{ProbeContext, ProbeEvent, ProbeKind, ProbeSet};

/// What a probe or hook acts on.
pub struct ProbeTarget {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub container_id: ContainerId,
    pub pod_ip: String,
    pub container: Container,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub metrics: Option<Arc<crate::stats::KubeletMetrics>>,
}

impl ProbeTarget {
    fn context(&self) -> ProbeContext {
        ProbeContext {
            runtime: self.runtime.clone(),
            container_id: self.container_id.clone(),
            pod_ip: self.pod_ip.clone(),
            pod_namespace: self.pod_namespace.clone(),
            pod_name: self.pod_name.clone(),
            pod_uid: self.pod_uid.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// What one round of probing found.
#[derive(Default)]
pub struct ProbeOutcome {
    /// (probe kind, message) of each failed probe.
    pub failures: Vec<(String, String)>,
    /// Restart the container: the liveness or startup probe failed.
    pub restart: Option<ProbeKind>,
    /// The probe's own terminationGracePeriodSeconds.
    pub grace: Option<i64>,
}

/// The probes of one running container.
pub struct ContainerProbes {
    set: ProbeSet,
}

impl ContainerProbes {
    pub fn new(c: &Container, started_at: DateTime<Utc>) -> Self {
        let age = (Utc::now() - started_at).to_std().unwrap_or_default();
        let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        ContainerProbes { set: ProbeSet::new(c, started) }
    }

    pub async fn run_due(&mut self, t: &ProbeTarget) -> ProbeOutcome {
        let mut outcome = ProbeOutcome::default();
        for event in self.set.run_due(&t.context()).await {
            match event {
                ProbeEvent::Unhealthy { kind, message } => {
                    let prefix = format!("{} probe failed: ", kind.as_str());
                    let message = message.strip_prefix(&prefix).unwrap_or(&message).to_string();
                    outcome.failures.push((kind.as_str().to_string(), message));
                }
                ProbeEvent::Restart { kind, grace_period_seconds, .. } => {
                    outcome.restart = Some(kind);
                    outcome.grace = grace_period_seconds;
                }
                ProbeEvent::StartedChanged { .. } | ProbeEvent::ReadyChanged { .. } => {}
            }
        }
        outcome
    }

    pub fn ready(&self) -> bool {
        self.set.ready()
    }

    pub fn started(&self) -> bool {
        self.set.started()
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.set.next_due()
    }
}

/// Run a postStart or preStop handler for at most `timeout`; the error's message is the
/// kubelet's.
pub async fn run_hook(
    hook: &LifecycleHandler,
    t: &ProbeTarget,
    timeout: Duration,
) -> Result<(), crate::hooks::HandlerError> {
    crate::hooks::run_hook(hook, &t.container, &t.context(), timeout).await
}
