//! The looking half of a pod worker, before it decides: what the runtime says about the
//! running containers (and, when one ended, the sandbox), and what the probes that are due
//! say. It records; deciding is `super::actions`' job.

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_runtime_core::{ContainerState, RuntimeError};
use tokio::time::Instant;

use super::PodWorker;
use super::actions::{ContainerPhase, ProbeFailure};
use crate::logs::log_path;

/// `FallbackToLogsOnError` takes at most this many of the log's last lines, and bytes.
const LOG_TAIL_LINES: usize = 80;
const LOG_TAIL_BYTES: usize = 2048;

/// The last lines of a log file (for `FallbackToLogsOnError`).
fn log_tail(path: &std::path::Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    let mut lines: Vec<String> = Vec::new();
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(rec) = skiff_runtime_core::cri_log::parse_line(raw) {
            lines.push(String::from_utf8_lossy(rec.content).into_owned());
        }
    }
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut text = lines[start..].join("\n");
    if text.len() > LOG_TAIL_BYTES {
        let mut cut = text.len() - LOG_TAIL_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_string();
    }
    (!text.is_empty()).then_some(text)
}

impl PodWorker {
    /// Bring the worker's view of `pod` up to date: exits, the sandbox, probe verdicts.
    pub(super) async fn observe(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut exited = false;
        for i in 0..self.slots.len() {
            exited |= self.refresh(i).await;
        }
        for (i, c) in self.slot_containers(&spec) {
            self.fall_back_to_logs(i, &c);
        }
        // A container that ended may have gone down with its sandbox.
        if exited && let (Some(sandbox), Some(rt)) = (&self.sandbox, &self.runtime) {
            self.sandbox_dead = match rt.sandbox_status(sandbox).await {
                Ok(s) => !s.ready,
                Err(RuntimeError::NotFound(_)) => true,
                Err(_) => false,
            };
            if self.sandbox_dead {
                tracing::info!(pod = %self.name, sandbox = %sandbox, "pod sandbox died");
            }
        }
        for (i, c) in self.slot_containers(&spec) {
            if !self.slots[i].rec.init {
                self.probe(i, &c, pod).await;
            }
        }
    }

    /// Each slot with its container's spec.
    fn slot_containers(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Vec<(usize, Container)> {
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let list = if s.rec.init { inits } else { spec.containers.as_slice() };
                list.iter().find(|c| c.name == s.rec.name).map(|c| (i, c.clone()))
            })
            .collect()
    }

    /// Pick up the end of slot `i`'s run, if it ended: its exit (with the kubelet's kill
    /// reason or the termination message) becomes the slot's state and the container is
    /// removed. Returns whether it ended.
    pub(super) async fn refresh(&mut self, i: usize) -> bool {
        let Some(id) = self.slots[i].id.clone() else { return false };
        if !self.slots[i].rec.phase.is_running() {
            return false;
        }
        let Some(rt) = self.runtime.clone() else { return false };
        let Ok(st) = rt.container_status(&id).await else { return false };
        let ContainerState::Exited(mut info) = st.state else { return false };
        let slot = &mut self.slots[i];
        if let Some(reason) = slot.kill_reason.take() {
            info.message.get_or_insert(reason);
        }
        if info.message.is_none()
            && let Some(f) = &slot.termination_file
            && let Ok(text) = std::fs::read_to_string(f)
            && !text.is_empty()
        {
            info.message = Some(text.chars().take(4096).collect());
        }
        slot.rec.phase = ContainerPhase::Terminated(info);
        slot.rec.running_image = None;
        slot.rec.probe_failure = None;
        slot.ready = false;
        slot.started = false;
        slot.probes = None;
        self.ctx.state.set_run(&self.uid, &slot.rec.name, slot.restart_count(), false);
        let _ = rt.remove_container(&id).await;
        slot.id = None;
        self.publish_running(i);
        true
    }

    /// `FallbackToLogsOnError`: a failed run without a message gets its log's tail.
    fn fall_back_to_logs(&mut self, i: usize, c: &Container) {
        let needs_tail = matches!(
            &self.slots[i].rec.phase,
            ContainerPhase::Terminated(info) if info.message.is_none() && info.exit_code != 0
        ) && c.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError");
        if !needs_tail {
            return;
        }
        let path = log_path(
            &self.ctx.pods_dir,
            &self.namespace,
            &self.name,
            &self.uid,
            &c.name,
            self.slots[i].restart_count(),
        );
        if let (Some(tail), ContainerPhase::Terminated(info)) =
            (log_tail(&path), &mut self.slots[i].rec.phase)
        {
            info.message = Some(tail);
        }
    }

    /// Run the container's due probes: readiness and startup change its status, and a failed
    /// liveness (or startup) probe is recorded for the decision to restart it.
    async fn probe(&mut self, i: usize, c: &Container, pod: &Pod) {
        let Some(id) = self.slots[i].id.clone() else { return };
        let ContainerPhase::Running { started_at } = self.slots[i].rec.phase.clone() else {
            return;
        };
        let Some(rt) = self.runtime.clone() else { return };
        let target = self.target(rt, id, c.clone());
        let slot = &mut self.slots[i];
        let probes =
            slot.probes.get_or_insert_with(|| crate::probing::ContainerProbes::new(c, started_at));
        let outcome = probes.run_due(&target).await;
        slot.ready = probes.ready();
        slot.started = probes.started();
        if let Some(kind) = outcome.restart {
            slot.rec.probe_failure = Some(ProbeFailure { kind, grace_seconds: outcome.grace });
        }
        for (kind, message) in outcome.failures {
            self.event(
                pod,
                Some(&c.name),
                true,
                "Unhealthy",
                format!("{kind} probe failed: {message}"),
            );
        }
    }

    /// When the next probe of a running container is due.
    pub(super) fn probes_due(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.probes.as_ref()?.next_due()).min()
    }
}
