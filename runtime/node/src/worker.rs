//! One pod worker per pod on this node: compares the pod's spec with what the runtime runs,
//! acts (start, restart with back-off, stop), and writes the pod's status. Level-triggered:
//! everything it keeps can be rebuilt from the pod's last status and the runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerId, ContainerRuntime, ContainerState, ExitInfo,
    RuntimeError, SandboxConfig, SandboxId,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::logs::log_path;
use crate::quantity::parse_quantity;
use crate::state::NodeState;

/// Default memory limit of a Wasm container without `resources.limits.memory`.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const IMAGE_RETRY: Duration = Duration::from_secs(2);

/// What every worker shares.
pub struct WorkerContext {
    pub client: kube::Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub state: Arc<NodeState>,
    pub pods_dir: PathBuf,
    pub node_name: String,
    pub node_ip: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: DateTime<Utc> },
    Terminated(ExitInfo),
}

struct Slot {
    name: String,
    init: bool,
    /// Runs started so far; `restart_count` is one less once the first run started.
    runs: u32,
    id: Option<ContainerId>,
    image_id: String,
    phase: Phase,
    last: Option<ExitInfo>,
    next_attempt: Option<Instant>,
    backoff: Duration,
}

impl Slot {
    fn restart_count(&self) -> u32 {
        self.runs.saturating_sub(1)
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn exit_json(e: &ExitInfo, container_id: Option<&str>) -> Value {
    let mut t = json!({"exitCode": e.exit_code, "reason": e.reason, "startedAt": ts(&e.started_at), "finishedAt": ts(&e.finished_at)});
    if let Some(m) = &e.message {
        t["message"] = json!(m);
    }
    if let Some(id) = container_id {
        t["containerID"] = json!(id);
    }
    t
}

fn parse_exit(v: &Value) -> Option<ExitInfo> {
    let t = v.get("terminated")?;
    let time = |k: &str| {
        t.get(k)
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(Utc::now)
    };
    Some(ExitInfo {
        exit_code: t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) as i32,
        reason: t.get("reason").and_then(Value::as_str).unwrap_or("Error").to_string(),
        message: t.get("message").and_then(Value::as_str).map(str::to_string),
        started_at: time("startedAt"),
        finished_at: time("finishedAt"),
    })
}

/// Whether a container that exited with `code` restarts under `policy`.
fn restarts(policy: &str, code: i32) -> bool {
    policy == "Always" || (policy == "OnFailure" && code != 0)
}

pub struct PodWorker {
    ctx: Arc<WorkerContext>,
    uid: String,
    namespace: String,
    name: String,
    sandbox: Option<SandboxId>,
    slots: Vec<Slot>,
    start_time: String,
    last_status: Option<Value>,
}

impl PodWorker {
    /// Rebuild a worker from the pod as the API has it (so a restarted node resumes correctly).
    pub fn new(ctx: Arc<WorkerContext>, pod: &Pod) -> Self {
        let status = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut slots = Vec::new();
        let lists = [
            (true, spec.init_containers.clone().unwrap_or_default(), "initContainerStatuses"),
            (false, spec.containers.clone(), "containerStatuses"),
        ];
        for (init, containers, key) in lists {
            for c in containers {
                let prior = status
                    .get(key)
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter().find(|s| s.get("name").and_then(Value::as_str) == Some(&c.name))
                    })
                    .cloned();
                let restart_count = prior
                    .as_ref()
                    .and_then(|p| p.get("restartCount"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                let last = prior.as_ref().and_then(|p| p.get("lastState")).and_then(parse_exit);
                let state =
                    prior.as_ref().and_then(|p| p.get("state")).cloned().unwrap_or(Value::Null);
                let mut slot = Slot {
                    name: c.name.clone(),
                    init,
                    runs: 0,
                    id: None,
                    image_id: prior
                        .as_ref()
                        .and_then(|p| p.get("imageID"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    phase: Phase::Waiting { reason: "ContainerCreating".into(), message: None },
                    last,
                    next_attempt: None,
                    backoff: Duration::ZERO,
                };
                if let Some(exit) = parse_exit(&state) {
                    slot.runs = restart_count + 1;
                    slot.phase = Phase::Terminated(exit);
                } else if let Some(started) =
                    state.pointer("/running/startedAt").and_then(Value::as_str)
                {
                    // It ran in an earlier life of this node; in-process guests died with it.
                    let started_at = DateTime::parse_from_rfc3339(started)
                        .map(|d| d.with_timezone(&Utc))
                        .unwrap_or_else(|_| Utc::now());
                    slot.runs = restart_count + 1;
                    slot.phase = Phase::Terminated(ExitInfo {
                        exit_code: 137,
                        reason: "Error".into(),
                        message: Some("the node restarted while the container was running".into()),
                        started_at,
                        finished_at: Utc::now(),
                    });
                } else if restart_count > 0 {
                    slot.runs = restart_count;
                }
                slots.push(slot);
            }
        }
        let start_time = status
            .get("startTime")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| ts(&Utc::now()));
        PodWorker {
            ctx,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            sandbox: None,
            slots,
            start_time,
            last_status: None,
        }
    }

    /// Drive the pod until it is deleted. `pods` carries the latest pod (`None` once it is gone
    /// from the API); `events` the runtime's events for this pod.
    pub async fn run(
        mut self,
        mut pods: watch::Receiver<Option<Arc<Pod>>>,
        mut events: mpsc::Receiver<ContainerEvent>,
    ) {
        loop {
            let pod = pods.borrow_and_update().clone();
            let Some(pod) = pod else {
                self.teardown(Duration::ZERO).await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
                self.teardown(Duration::from_secs(grace)).await;
                self.finish_deletion(&pod).await;
                return;
            }
            let wake = self.sync(&pod).await;
            self.write_status(&pod).await;
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                changed = pods.changed() => if changed.is_err() {
                    self.teardown(Duration::ZERO).await;
                    return;
                },
                Some(_) = events.recv() => {}
                _ = sleep => {}
            }
        }
    }

    fn pod_terminal(pod: &Pod) -> bool {
        matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
    }

    /// One pass of compute-then-act. Returns when to look again, if a timer is pending.
    async fn sync(&mut self, pod: &Pod) -> Option<Instant> {
        let spec = pod.spec.clone().unwrap_or_default();
        if Self::pod_terminal(pod) && self.slots.iter().all(|s| s.id.is_none()) {
            return None;
        }
        if self.sandbox.is_none() {
            let config = SandboxConfig {
                pod_uid: self.uid.clone(),
                pod_namespace: self.namespace.clone(),
                pod_name: self.name.clone(),
                log_directory: self
                    .ctx
                    .pods_dir
                    .join(format!("{}_{}_{}", self.namespace, self.name, self.uid)),
                ..Default::default()
            };
            match self.ctx.runtime.run_pod_sandbox(&config).await {
                Ok(id) => self.sandbox = Some(id),
                Err(e) => {
                    tracing::warn!(pod = %self.name, error = %e, "sandbox failed");
                    return Some(Instant::now() + IMAGE_RETRY);
                }
            }
        }
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
        let mut wake: Option<Instant> = None;
        let mut merge = |w: Option<Instant>| {
            if let Some(w) = w {
                wake = Some(wake.map_or(w, |x: Instant| x.min(w)));
            }
        };
        let inits = spec.init_containers.clone().unwrap_or_default();
        let mut init_done = true;
        for c in &inits {
            let Some(i) = self.slots.iter().position(|s| s.init && s.name == c.name) else {
                continue;
            };
            if matches!(&self.slots[i].phase, Phase::Terminated(e) if e.exit_code == 0) {
                continue;
            }
            init_done = false;
            merge(self.drive(i, c, pod, init_policy).await);
            if matches!(&self.slots[i].phase, Phase::Terminated(e) if e.exit_code == 0) {
                // Finished just now: go on to the next one in this same pass.
                init_done = true;
                continue;
            }
            break;
        }
        if init_done {
            for c in &spec.containers {
                let Some(i) = self.slots.iter().position(|s| !s.init && s.name == c.name) else {
                    continue;
                };
                merge(self.drive(i, c, pod, &policy).await);
            }
        }
        wake
    }

    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.slots[i].id.clone() else { return };
        if !matches!(self.slots[i].phase, Phase::Running { .. }) {
            return;
        }
        if let Ok(st) = self.ctx.runtime.container_status(&id).await
            && let ContainerState::Exited(info) = st.state
        {
            let slot = &mut self.slots[i];
            slot.phase = Phase::Terminated(info);
            self.ctx.state.set_run(&self.uid, &slot.name, slot.restart_count(), false);
            let _ = self.ctx.runtime.remove_container(&id).await;
            slot.id = None;
        }
    }

    async fn drive(&mut self, i: usize, c: &Container, pod: &Pod, policy: &str) -> Option<Instant> {
        self.refresh(i).await;
        let now = Instant::now();
        let slot = &mut self.slots[i];
        match &slot.phase {
            Phase::Running { .. } => None,
            Phase::Terminated(info) => {
                if !restarts(policy, info.exit_code) || Self::pod_terminal(pod) {
                    return None;
                }
                let ran_for = (info.finished_at - info.started_at).num_seconds();
                slot.backoff = if slot.runs <= 1 || ran_for > 600 {
                    Duration::ZERO
                } else if slot.backoff.is_zero() {
                    Duration::from_secs(10)
                } else {
                    (slot.backoff * 2).min(MAX_BACKOFF)
                };
                slot.last = Some(info.clone());
                if slot.backoff.is_zero() {
                    return self.start(i, c, pod).await;
                }
                slot.next_attempt = Some(now + slot.backoff);
                slot.phase = Phase::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        slot.backoff.as_secs(),
                        slot.name,
                        self.name,
                        self.namespace,
                        self.uid
                    )),
                };
                slot.next_attempt
            }
            Phase::Waiting { .. } => {
                if let Some(t) = slot.next_attempt.filter(|t| *t > now) {
                    return Some(t);
                }
                self.start(i, c, pod).await
            }
        }
    }

    fn waiting(
        &mut self,
        i: usize,
        reason: &str,
        message: String,
        retry: Duration,
    ) -> Option<Instant> {
        let slot = &mut self.slots[i];
        slot.phase = Phase::Waiting { reason: reason.into(), message: Some(message) };
        let at = Instant::now() + retry;
        slot.next_attempt = Some(at);
        Some(at)
    }

    async fn start(&mut self, i: usize, c: &Container, pod: &Pod) -> Option<Instant> {
        let image = c.image.clone().unwrap_or_default();
        let rt = self.ctx.runtime.clone();
        match rt.image_status(&image).await {
            Ok(Some(info)) => self.slots[i].image_id = info.id,
            Ok(None) => {
                let msg = format!(
                    "Container image \"{image}\" is not present on node {} and cannot be pulled: Skiff has no registry access; import it with `skiff images import` (handler {:?}; no OCI runtime is configured on this node)",
                    self.ctx.node_name,
                    rt.handler()
                );
                return self.waiting(i, "ErrImageNeverPull", msg, IMAGE_RETRY);
            }
            Err(e) => return self.waiting(i, "ImageInspectError", e.to_string(), IMAGE_RETRY),
        }
        let env = match self.env(c, pod) {
            Ok(env) => env,
            Err(msg) => return self.waiting(i, "CreateContainerConfigError", msg, IMAGE_RETRY),
        };
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let memory = limits
            .and_then(|l| l.get("memory"))
            .and_then(|q| parse_quantity(&q.0))
            .map(|v| v as u64)
            .unwrap_or(DEFAULT_MEMORY_LIMIT);
        let cpu = limits
            .and_then(|l| l.get("cpu"))
            .and_then(|q| parse_quantity(&q.0))
            .map(|v| (v * 1000.0).round() as u64);
        let mut argv: Vec<String> =
            c.command.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| vec![c.name.clone()]);
        argv.extend(c.args.clone().unwrap_or_default());
        let restart = self.slots[i].runs;
        let config = ContainerConfig {
            sandbox_id: self.sandbox.clone().unwrap_or_default(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            image: image.clone(),
            argv,
            env,
            memory_limit_bytes: memory,
            cpu_limit_millis: cpu,
            log_path: log_path(
                &self.ctx.pods_dir,
                &self.namespace,
                &self.name,
                &self.uid,
                &c.name,
                restart,
            ),
            ..Default::default()
        };
        let id = match rt.create_container(&config).await {
            Ok(id) => id,
            Err(RuntimeError::ImageNotPresent { image, hint }) => {
                return self.waiting(
                    i,
                    "ErrImageNeverPull",
                    format!("Container image \"{image}\" is not present: {hint}"),
                    IMAGE_RETRY,
                );
            }
            Err(e) => {
                let backoff =
                    (self.slots[i].backoff * 2).clamp(Duration::from_secs(10), MAX_BACKOFF);
                self.slots[i].backoff = backoff;
                return self.waiting(i, "CreateContainerError", e.to_string(), backoff);
            }
        };
        if let Err(e) = rt.start_container(&id).await {
            let _ = rt.remove_container(&id).await;
            return self.waiting(i, "RunContainerError", e.to_string(), Duration::from_secs(10));
        }
        let slot = &mut self.slots[i];
        slot.runs += 1;
        slot.id = Some(id);
        slot.next_attempt = None;
        slot.phase = Phase::Running { started_at: Utc::now() };
        self.ctx.state.set_run(&self.uid, &slot.name, slot.restart_count(), true);
        // It may have finished already (a short guest); pick that up in this same pass.
        self.refresh(i).await;
        None
    }

    fn env(&self, c: &Container, pod: &Pod) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for e in c.env.clone().unwrap_or_default() {
            if let Some(v) = e.value {
                out.push((e.name, v));
                continue;
            }
            let Some(from) = e.value_from else {
                out.push((e.name, String::new()));
                continue;
            };
            if let Some(f) = from.field_ref {
                let v = match f.field_path.as_str() {
                    "metadata.name" => self.name.clone(),
                    "metadata.namespace" => self.namespace.clone(),
                    "metadata.uid" => self.uid.clone(),
                    "spec.nodeName" => self.ctx.node_name.clone(),
                    "spec.serviceAccountName" => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    "status.hostIP" | "status.podIP" => self.ctx.node_ip.clone(),
                    p => {
                        if let Some(k) =
                            p.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']"))
                        {
                            pod.metadata
                                .labels
                                .as_ref()
                                .and_then(|l| l.get(k).cloned())
                                .unwrap_or_default()
                        } else if let Some(k) = p
                            .strip_prefix("metadata.annotations['")
                            .and_then(|r| r.strip_suffix("']"))
                        {
                            pod.metadata
                                .annotations
                                .as_ref()
                                .and_then(|l| l.get(k).cloned())
                                .unwrap_or_default()
                        } else {
                            return Err(format!("env {}: unsupported fieldRef {p:?}", e.name));
                        }
                    }
                };
                out.push((e.name, v));
            } else {
                return Err(format!(
                    "env {}: valueFrom configMapKeyRef/secretKeyRef/resourceFieldRef is not supported by this Skiff version yet",
                    e.name
                ));
            }
        }
        Ok(out)
    }

    fn container_status(&self, slot: &Slot, image: &str) -> Value {
        let id = slot.id.as_ref().map(|i| format!("wasm://{i}"));
        let state = match &slot.phase {
            Phase::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            Phase::Running { started_at } => json!({"running": {"startedAt": ts(started_at)}}),
            Phase::Terminated(e) => json!({"terminated": exit_json(e, id.as_deref())}),
        };
        let running = matches!(slot.phase, Phase::Running { .. });
        let mut s = json!({
            "name": slot.name,
            "image": image,
            "imageID": slot.image_id,
            "ready": if slot.init { matches!(&slot.phase, Phase::Terminated(e) if e.exit_code == 0) } else { running },
            "started": running,
            "restartCount": slot.restart_count(),
            "state": state,
            "lastState": slot.last.as_ref().map(|e| json!({"terminated": exit_json(e, None)})).unwrap_or(json!({})),
        });
        if let Some(id) = id {
            s["containerID"] = json!(id);
        }
        s
    }

    fn compute_status(&self, pod: &Pod) -> Value {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let image_of = |name: &str, init: bool| {
            let list = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            list.iter().find(|c| c.name == name).and_then(|c| c.image.clone()).unwrap_or_default()
        };
        let inits: Vec<&Slot> = self.slots.iter().filter(|s| s.init).collect();
        let mains: Vec<&Slot> = self.slots.iter().filter(|s| !s.init).collect();
        let init_ok =
            inits.iter().all(|s| matches!(&s.phase, Phase::Terminated(e) if e.exit_code == 0));
        let init_failed = inits.iter().any(|s| {
            matches!(&s.phase, Phase::Terminated(e) if e.exit_code != 0) && policy == "Never"
        });
        let done =
            |s: &&Slot| matches!(&s.phase, Phase::Terminated(e) if !restarts(&policy, e.exit_code));
        let phase = if init_failed {
            "Failed"
        } else if !init_ok {
            "Pending"
        } else if !mains.is_empty() && mains.iter().all(done) {
            if mains.iter().all(|s| matches!(&s.phase, Phase::Terminated(e) if e.exit_code == 0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if mains.iter().any(|s| matches!(s.phase, Phase::Running { .. }) || s.runs > 0) {
            "Running"
        } else {
            "Pending"
        };
        let all_ready =
            !mains.is_empty() && mains.iter().all(|s| matches!(s.phase, Phase::Running { .. }));
        let old = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let old_conditions: Vec<Value> =
            old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let now = ts(&Utc::now());
        let cond = |ty: &str, ok: bool, reason: Option<&str>| {
            let status = if ok { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(ty)
                        && c.get("status").and_then(Value::as_str) == Some(status)
                })
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or(json!(now));
            let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            c
        };
        let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
            Some("PodCompleted")
        } else if all_ready {
            None
        } else {
            Some("ContainersNotReady")
        };
        let conditions = vec![
            cond("PodReadyToStartContainers", self.sandbox.is_some(), None),
            cond(
                "Initialized",
                init_ok,
                if init_ok { None } else { Some("ContainersNotInitialized") },
            ),
            cond("Ready", all_ready, not_ready_reason),
            cond("ContainersReady", all_ready, not_ready_reason),
            cond("PodScheduled", true, None),
        ];
        let ip = &self.ctx.node_ip;
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": ip,
            "hostIPs": [{"ip": ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "containerStatuses": mains.iter().map(|s| self.container_status(s, &image_of(&s.name, false))).collect::<Vec<_>>(),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(
                inits
                    .iter()
                    .map(|s| self.container_status(s, &image_of(&s.name, true)))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(q) = old.get("qosClass") {
            status["qosClass"] = q.clone();
        }
        status
    }

    async fn write_status(&mut self, pod: &Pod) {
        let status = self.compute_status(pod);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({"status": status});
        match api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => self.last_status = Some(status),
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "status update failed; will retry")
            }
        }
    }

    /// Stop everything the pod runs, giving each container up to `grace`.
    async fn teardown(&mut self, grace: Duration) {
        let rt = self.ctx.runtime.clone();
        for slot in &mut self.slots {
            if let Some(id) = slot.id.take() {
                let _ = rt.stop_container(&id, grace).await;
                let _ = rt.remove_container(&id).await;
            }
        }
        if let Some(sb) = self.sandbox.take() {
            let _ = rt.stop_pod_sandbox(&sb).await;
        }
        self.ctx.state.forget_pod(&self.uid);
        let dir = self.ctx.pods_dir.join(format!("{}_{}_{}", self.namespace, self.name, self.uid));
        let _ = tokio::fs::remove_dir_all(dir).await;
    }

    /// Once the pod's containers are stopped, remove it from the API for good.
    async fn finish_deletion(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        for _ in 0..5 {
            match api.delete(&self.name, &dp).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, error = %e, "final delete failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// Route runtime events to the worker of their pod.
pub type WorkerInboxes = Arc<std::sync::Mutex<HashMap<String, mpsc::Sender<ContainerEvent>>>>;
