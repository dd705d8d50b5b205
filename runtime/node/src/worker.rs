//! One pod worker per pod on this node: compares the pod's spec with what the runtime runs,
//! acts (start, restart with back-off, stop), and writes the pod's status. Level-triggered:
//! everything it keeps can be rebuilt from the pod's last status and the runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerId, ContainerRuntime, ContainerState,
    ContainerStatus, ExitInfo, PortMapping, RuntimeError, SandboxConfig, SandboxId, SandboxStatus,
    labels,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::logs::log_path;
use crate::network::PodNetwork;
use crate::quantity::parse_quantity;
use crate::state::NodeState;
use crate::volumes::{FieldValues, PreparedVolumes};

/// Default memory limit of a Wasm container without `resources.limits.memory`.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const IMAGE_RETRY: Duration = Duration::from_secs(2);

/// How long a RuntimeClass lookup is reused.
const RUNTIME_CLASS_TTL: Duration = Duration::from_secs(30);
/// How often configMap/secret/downwardAPI volume contents are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);

/// The node's runtimes by RuntimeClass handler.
#[derive(Clone, Default)]
pub struct Runtimes {
    pub by_handler: BTreeMap<String, Arc<dyn ContainerRuntime>>,
}

/// Handler of the Wasm runtime and of the OCI (CRI) runtime.
pub const WASM_HANDLER: &str = "wasmtime";
pub const OCI_HANDLER: &str = "runc";

impl Runtimes {
    pub fn get(&self, handler: &str) -> Option<Arc<dyn ContainerRuntime>> {
        self.by_handler.get(handler).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = (&String, &Arc<dyn ContainerRuntime>)> {
        self.by_handler.iter()
    }
}

/// Sandboxes and containers, each with the handler of the runtime that has it.
pub type HandlerSandboxes = Vec<(String, SandboxStatus)>;
pub type HandlerContainers = Vec<(String, ContainerStatus)>;

/// What a restarted node found still running in its runtimes (adopted by pod uid).
#[derive(Default)]
pub struct Leftovers {
    pub sandboxes: Vec<(String, SandboxStatus)>,
    pub containers: Vec<(String, ContainerStatus)>,
}

/// What every worker shares.
pub struct WorkerContext {
    pub client: kube::Client,
    pub runtimes: Runtimes,
    pub state: Arc<NodeState>,
    pub pods_dir: PathBuf,
    pub node_name: String,
    pub node_ip: String,
    /// The node's pod addresses, once its pod CIDR is known.
    pub network: Arc<PodNetwork>,
    /// Node allocatable amounts (cores, bytes) for `resourceFieldRef` limits left unset.
    pub allocatable: BTreeMap<String, f64>,
    pub leftovers: std::sync::Mutex<Leftovers>,
    /// RuntimeClass name → (handler, when read): pods of one class share one lookup.
    pub runtime_classes: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    pub metrics: Arc<crate::stats::KubeletMetrics>,
}

impl WorkerContext {
    fn take_leftovers(&self, uid: &str) -> (HandlerSandboxes, HandlerContainers) {
        let Ok(mut l) = self.leftovers.lock() else { return (Vec::new(), Vec::new()) };
        let of_pod = |labels: &BTreeMap<String, String>| {
            labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
        };
        let (sb, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut l.sandboxes).into_iter().partition(|(_, s)| of_pod(&s.labels));
        l.sandboxes = rest;
        let (cs, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut l.containers).into_iter().partition(|(_, c)| of_pod(&c.labels));
        l.containers = rest;
        (sb, cs)
    }
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
    /// Readiness as the probes see it (true while running when there is no readiness probe).
    ready: bool,
    /// The startup probe passed (true while running when there is none).
    started: bool,
    probes: Option<crate::probing::ContainerProbes>,
    /// Host file behind the container's terminationMessagePath, for the current run.
    termination_file: Option<PathBuf>,
    /// Why the kubelet killed the current run (a failed liveness probe), for its exit message.
    kill_reason: Option<String>,
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

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn parse_exit(v: &Value) -> Option<ExitInfo> {
    let t = v.get("terminated")?;
    Some(ExitInfo {
        exit_code: t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) as i32,
        reason: t.get("reason").and_then(Value::as_str).unwrap_or("Error").to_string(),
        message: t.get("message").and_then(Value::as_str).map(str::to_string),
        started_at: parse_time(t.get("startedAt")).unwrap_or_else(Utc::now),
        finished_at: parse_time(t.get("finishedAt")).unwrap_or_else(Utc::now),
    })
}

/// Whether a container that exited with `code` restarts under `policy`.
fn restarts(policy: &str, code: i32) -> bool {
    policy == "Always" || (policy == "OnFailure" && code != 0)
}

/// Init containers, then the others.
fn all_containers(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<Container> {
    let inits = spec.init_containers.iter().flatten();
    inits.chain(spec.containers.iter()).cloned().collect()
}

/// The pod's QoS class, Kubernetes' rules: Guaranteed when every container has CPU and memory
/// limits equal to its requests, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let all = all_containers(&spec);
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.get(res).and_then(|q| parse_quantity(&q.0));
            let request = requests.get(res).and_then(|q| parse_quantity(&q.0)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The ports the pod's containers declare.
fn port_mappings(containers: &[Container]) -> Vec<PortMapping> {
    containers
        .iter()
        .flat_map(|c| {
            c.ports.clone().unwrap_or_default().into_iter().filter_map(move |p| {
                Some(PortMapping {
                    container: c.name.clone(),
                    name: p.name.clone(),
                    container_port: u16::try_from(p.container_port).ok()?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_port: p.host_port.and_then(|h| u16::try_from(h).ok()),
                })
            })
        })
        .collect()
}

/// The last lines of a log file (for `FallbackToLogsOnError`): at most 80 lines, 2 KiB.
fn log_tail(path: &std::path::Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    let mut lines: Vec<String> = Vec::new();
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(rec) = skiff_runtime_core::cri_log::parse_line(raw) {
            lines.push(String::from_utf8_lossy(rec.content).into_owned());
        }
    }
    let start = lines.len().saturating_sub(80);
    let mut text = lines[start..].join("\n");
    if text.len() > 2048 {
        let mut cut = text.len() - 2048;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_string();
    }
    (!text.is_empty()).then_some(text)
}

pub struct PodWorker {
    ctx: Arc<WorkerContext>,
    uid: String,
    namespace: String,
    name: String,
    /// The runtime chosen for this pod (by RuntimeClass), once known.
    handler: Option<String>,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    /// Why no runtime can run this pod here (unknown RuntimeClass, none configured).
    runtime_error: Option<String>,
    sandbox: Option<SandboxId>,
    pod_ip: Option<String>,
    volumes: Option<PreparedVolumes>,
    volumes_at: Option<Instant>,
    volume_error: Option<String>,
    slots: Vec<Slot>,
    start_time: String,
    last_status: Option<Value>,
    /// Set once `activeDeadlineSeconds` passed: the pod is Failed with DeadlineExceeded.
    deadline_exceeded: bool,
    /// Containers found running in the runtime after a node restart, to adopt.
    adoptable: Vec<(String, ContainerStatus)>,
    /// The pod's start (all containers running) went into the start-duration metric.
    start_observed: bool,
}

impl PodWorker {
    /// Rebuild a worker from the pod as the API has it and what the runtimes still run (so a
    /// restarted node resumes correctly: OCI containers are adopted, Wasm guests, which died
    /// with the node, are restarted).
    pub fn new(ctx: Arc<WorkerContext>, pod: &Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let status = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let spec = pod.spec.clone().unwrap_or_default();
        let (sandboxes, adoptable) = ctx.take_leftovers(&uid);
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
                    ready: false,
                    started: false,
                    probes: None,
                    termination_file: None,
                    kill_reason: None,
                };
                let running_in_runtime = adoptable.iter().find(|(_, cs)| {
                    cs.labels.get(labels::CONTAINER_NAME) == Some(&c.name)
                        && matches!(cs.state, ContainerState::Running { .. })
                        && cs.annotations.get(labels::CONTAINER_RESTART).map(String::as_str)
                            == Some(restart_count.to_string().as_str())
                });
                if let Some(exit) = parse_exit(&state) {
                    slot.runs = restart_count + 1;
                    slot.phase = Phase::Terminated(exit);
                } else if let Some((_, cs)) = running_in_runtime {
                    // Still running in the runtime: adopt it.
                    slot.runs = restart_count + 1;
                    slot.id = Some(cs.id.clone());
                    slot.image_id = cs.image_id.clone();
                    let started_at = match cs.state {
                        ContainerState::Running { started_at } => started_at,
                        _ => Utc::now(),
                    };
                    slot.phase = Phase::Running { started_at };
                    ctx.state.set_run(&uid, &slot.name, slot.restart_count(), true);
                } else if let Some(started) = parse_time(state.pointer("/running/startedAt")) {
                    // It ran in an earlier life of this node and is gone (in-process guests
                    // die with the node).
                    slot.runs = restart_count + 1;
                    slot.phase = Phase::Terminated(ExitInfo {
                        exit_code: 137,
                        reason: "Error".into(),
                        message: Some("the node restarted while the container was running".into()),
                        started_at: started,
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
        let adopted_sandbox = sandboxes.iter().find(|(_, s)| s.ready).cloned();
        let mut w = PodWorker {
            uid,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            handler: None,
            runtime: None,
            runtime_error: None,
            sandbox: None,
            pod_ip: None,
            volumes: None,
            volumes_at: None,
            volume_error: None,
            slots,
            start_time,
            last_status: None,
            deadline_exceeded: false,
            start_observed: false,
            adoptable,
            ctx,
        };
        if let Some((handler, sb)) = adopted_sandbox {
            w.runtime = w.ctx.runtimes.get(&handler);
            if w.runtime.is_some() {
                w.handler = Some(handler);
                w.sandbox = Some(sb.id.clone());
                w.pod_ip = sb.ip.clone();
            }
        } else if let Some((handler, _)) = w.adoptable.first() {
            // Containers without a live sandbox: stop them; the pod starts afresh.
            let runtime = w.ctx.runtimes.get(handler);
            let ids: Vec<String> = w.adoptable.iter().map(|(_, c)| c.id.clone()).collect();
            for s in &mut w.slots {
                if s.id.as_ref().is_some_and(|id| ids.contains(id)) {
                    s.id = None;
                    s.phase = Phase::Waiting { reason: "ContainerCreating".into(), message: None };
                }
            }
            if let Some(rt) = runtime {
                tokio::spawn(async move {
                    for id in ids {
                        let _ = rt.remove_container(&id).await;
                    }
                });
            }
        }
        for i in 0..w.slots.len() {
            w.publish_running(i);
        }
        w
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
                self.teardown(None, Duration::ZERO).await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
                self.teardown(Some(&pod), Duration::from_secs(grace)).await;
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
                    self.teardown(None, Duration::ZERO).await;
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

    fn pod_dir(&self) -> PathBuf {
        self.ctx.pods_dir.join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }

    fn fields(&self) -> FieldValues {
        FieldValues {
            node_name: self.ctx.node_name.clone(),
            host_ip: self.ctx.node_ip.clone(),
            pod_ip: self.pod_ip.clone().unwrap_or_default(),
        }
    }

    /// `status.startTime`, parsed.
    fn started_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.start_time).ok().map(|d| d.with_timezone(&Utc))
    }

    /// Record an event about this pod (and `container`).
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        crate::events::record(
            &self.ctx.client,
            &self.ctx.node_name,
            pod,
            container,
            warning,
            reason,
            message,
        );
    }

    fn target(
        &self,
        runtime: Arc<dyn ContainerRuntime>,
        container_id: ContainerId,
        container: Container,
    ) -> crate::probing::ProbeTarget {
        crate::probing::ProbeTarget {
            runtime,
            container_id,
            pod_ip: self.pod_ip.clone().unwrap_or_else(|| self.ctx.node_ip.clone()),
            container,
            pod_namespace: self.namespace.clone(),
            pod_name: self.name.clone(),
            pod_uid: self.uid.clone(),
            metrics: Some(self.ctx.metrics.clone()),
        }
    }

    /// Publish slot `i`'s running container (or its end) for the node's stats.
    fn publish_running(&self, i: usize) {
        let slot = &self.slots[i];
        let running = match (&slot.phase, &slot.id, &self.runtime) {
            (Phase::Running { started_at }, Some(id), Some(rt)) => {
                Some(crate::stats::RunningContainer {
                    namespace: self.namespace.clone(),
                    pod: self.name.clone(),
                    pod_uid: self.uid.clone(),
                    container: slot.name.clone(),
                    container_id: id.clone(),
                    runtime: rt.clone(),
                    started_at: *started_at,
                })
            }
            _ => None,
        };
        self.ctx.state.set_running(&self.uid, &slot.name, running);
    }

    /// Pick the runtime for this pod: its RuntimeClass's handler, else the Wasm runtime when
    /// it holds the pod's first image (or when there is no OCI runtime), else the OCI runtime.
    async fn choose_runtime(&mut self, pod: &Pod) -> Result<Arc<dyn ContainerRuntime>, String> {
        if let Some(rt) = &self.runtime {
            return Ok(rt.clone());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let handler = match spec.runtime_class_name.as_deref().filter(|c| !c.is_empty()) {
            Some(class) => {
                let cached = self.ctx.runtime_classes.lock().ok().and_then(|m| {
                    m.get(class)
                        .filter(|(_, at)| at.elapsed() < RUNTIME_CLASS_TTL)
                        .map(|(h, _)| h.clone())
                });
                match cached {
                    Some(handler) => handler,
                    None => {
                        let api: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
                        let handler = match api.get_opt(class).await {
                            Ok(Some(rc)) => rc.handler,
                            Ok(None) => return Err(format!("RuntimeClass \"{class}\" not found")),
                            Err(e) => {
                                return Err(format!("reading RuntimeClass \"{class}\": {e}"));
                            }
                        };
                        if let Ok(mut m) = self.ctx.runtime_classes.lock() {
                            m.insert(
                                class.to_string(),
                                (handler.clone(), std::time::Instant::now()),
                            );
                        }
                        handler
                    }
                }
            }
            None => {
                let image = spec
                    .init_containers
                    .as_ref()
                    .and_then(|c| c.first())
                    .or(spec.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let wasm = self.ctx.runtimes.get(WASM_HANDLER);
                let has_wasm_image = match &wasm {
                    Some(rt) => matches!(rt.image_status(&image).await, Ok(Some(_))),
                    None => false,
                };
                if has_wasm_image || self.ctx.runtimes.get(OCI_HANDLER).is_none() {
                    WASM_HANDLER.to_string()
                } else {
                    OCI_HANDLER.to_string()
                }
            }
        };
        let Some(rt) = self.ctx.runtimes.get(&handler) else {
            let have: Vec<&str> = self.ctx.runtimes.all().map(|(h, _)| h.as_str()).collect();
            let hint = if handler == OCI_HANDLER {
                " — no OCI runtime is configured on this node; start it with --container-runtime-endpoint unix:///PATH/containerd.sock"
            } else {
                ""
            };
            return Err(format!(
                "node {} has no runtime handler \"{handler}\" (it has: {}){hint}",
                self.ctx.node_name,
                have.join(", ")
            ));
        };
        self.handler = Some(handler);
        self.runtime = Some(rt.clone());
        Ok(rt)
    }

    fn is_wasm(&self) -> bool {
        self.handler.as_deref() == Some(WASM_HANDLER)
    }

    /// One pass of compute-then-act. Returns when to look again, if a timer is pending.
    async fn sync(&mut self, pod: &Pod) -> Option<Instant> {
        let spec = pod.spec.clone().unwrap_or_default();
        if (Self::pod_terminal(pod) || self.deadline_exceeded)
            && self.slots.iter().all(|s| s.id.is_none())
        {
            return None;
        }
        if let Some(deadline) = spec.active_deadline_seconds
            && let Some(start) = self.started_at()
        {
            let end = start + chrono::Duration::seconds(deadline);
            if Utc::now() >= end {
                self.deadline_exceeded = true;
                self.event(
                    pod,
                    None,
                    true,
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline".into(),
                );
                self.kill_all(pod).await;
                return None;
            }
        }
        let rt = match self.choose_runtime(pod).await {
            Ok(rt) => {
                self.runtime_error = None;
                rt
            }
            Err(message) => {
                if self.runtime_error.as_ref() != Some(&message) {
                    self.event(pod, None, true, "FailedCreatePodSandBox", message.clone());
                }
                self.runtime_error = Some(message);
                return Some(Instant::now() + Duration::from_secs(5));
            }
        };
        if self.sandbox.is_none() {
            let host_network = spec.host_network.unwrap_or(false);
            let wasm = self.is_wasm();
            let previous_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            let pod_ip = if host_network {
                Some(self.ctx.node_ip.clone())
            } else if wasm {
                match self.ctx.network.assign(&self.uid, previous_ip.as_deref()) {
                    Ok(ip) => Some(ip.to_string()),
                    Err(e) => {
                        self.runtime_error = Some(e);
                        return Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            } else {
                None
            };
            let mut labels_map = pod.metadata.labels.clone().unwrap_or_default();
            labels_map.insert(labels::POD_UID.into(), self.uid.clone());
            labels_map.insert(labels::POD_NAME.into(), self.name.clone());
            labels_map.insert(labels::POD_NAMESPACE.into(), self.namespace.clone());
            let config = SandboxConfig {
                pod_uid: self.uid.clone(),
                pod_namespace: self.namespace.clone(),
                pod_name: self.name.clone(),
                log_directory: self.pod_dir(),
                attempt: 0,
                hostname: spec.hostname.clone().unwrap_or_else(|| self.name.clone()),
                labels: labels_map,
                annotations: pod.metadata.annotations.clone().unwrap_or_default(),
                host_network,
                pod_ip: pod_ip.clone(),
                ports: port_mappings(&spec.containers),
                cgroup_parent: None,
            };
            match rt.run_pod_sandbox(&config).await {
                Ok(id) => {
                    self.pod_ip = match pod_ip {
                        Some(ip) => Some(ip),
                        None => rt.sandbox_status(&id).await.ok().and_then(|s| s.ip),
                    };
                    self.sandbox = Some(id);
                    self.runtime_error = None;
                }
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: {e}");
                    if self.runtime_error.as_ref() != Some(&message) {
                        self.event(pod, None, true, "FailedCreatePodSandBox", message.clone());
                    }
                    tracing::warn!(pod = %self.name, error = %e, "sandbox failed");
                    self.runtime_error = Some(message);
                    return Some(Instant::now() + IMAGE_RETRY);
                }
            }
        }
        // Volumes: set up once, contents refreshed now and then.
        let refresh_due = self.volumes_at.is_none_or(|t| t.elapsed() >= VOLUME_REFRESH);
        if self.volumes.is_none() || refresh_due {
            match crate::volumes::prepare(&self.ctx.client, pod, &self.pod_dir(), &self.fields())
                .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Some(Instant::now());
                    self.volume_error = None;
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.volume_error.as_ref() != Some(&message) {
                        self.event(pod, None, true, "FailedMount", message.clone());
                    }
                    self.volume_error = Some(message);
                    if self.volumes.is_none() {
                        return Some(Instant::now() + IMAGE_RETRY);
                    }
                }
            }
        }
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
        let mut wake: Option<Instant> = self.volumes_at.map(|t| t + VOLUME_REFRESH);
        let mut merge = |w: Option<Instant>| {
            if let Some(w) = w {
                wake = Some(wake.map_or(w, |x: Instant| x.min(w)));
            }
        };
        if let Some(deadline) = spec.active_deadline_seconds
            && let Some(start) = self.started_at()
        {
            let left = (start + chrono::Duration::seconds(deadline) - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            merge(Some(Instant::now() + left));
        }
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
                merge(self.probe(i, c, pod).await);
            }
        }
        wake
    }

    /// Run the container's due probes and act on them: readiness and startup change its
    /// status, a failed liveness (or startup) probe restarts it.
    async fn probe(&mut self, i: usize, c: &Container, pod: &Pod) -> Option<Instant> {
        let id = self.slots[i].id.clone()?;
        let Phase::Running { started_at } = self.slots[i].phase.clone() else { return None };
        let rt = self.runtime.clone()?;
        let target = self.target(rt, id, c.clone());
        let slot = &mut self.slots[i];
        let probes =
            slot.probes.get_or_insert_with(|| crate::probing::ContainerProbes::new(c, started_at));
        let outcome = probes.run_due(&target).await;
        slot.ready = probes.ready();
        slot.started = probes.started();
        let next = probes.next_due();
        for (kind, message) in outcome.failures {
            self.event(
                pod,
                Some(&c.name),
                true,
                "Unhealthy",
                format!("{kind} probe failed: {message}"),
            );
        }
        if let Some(reason) = outcome.restart {
            let message = format!("Container {} {reason}, will be restarted", c.name);
            self.event(pod, Some(&c.name), false, "Killing", message.clone());
            self.slots[i].kill_reason = Some(message);
            let grace = outcome
                .grace
                .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30)
                .max(0) as u64;
            self.stop_one(i, c, pod, Duration::from_secs(grace)).await;
            self.refresh(i).await;
            // Restart (with back-off) on the next pass.
            return Some(Instant::now());
        }
        next
    }

    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.slots[i].id.clone() else { return };
        if !matches!(self.slots[i].phase, Phase::Running { .. }) {
            return;
        }
        let Some(rt) = self.runtime.clone() else { return };
        if let Ok(st) = rt.container_status(&id).await
            && let ContainerState::Exited(mut info) = st.state
        {
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
            slot.phase = Phase::Terminated(info);
            slot.ready = false;
            slot.started = false;
            slot.probes = None;
            self.ctx.state.set_run(&self.uid, &slot.name, slot.restart_count(), false);
            let _ = rt.remove_container(&id).await;
            slot.id = None;
            self.publish_running(i);
        }
    }

    async fn drive(&mut self, i: usize, c: &Container, pod: &Pod, policy: &str) -> Option<Instant> {
        self.refresh(i).await;
        let now = Instant::now();
        // FallbackToLogsOnError: a failed run without a message gets its log's tail.
        if let Phase::Terminated(info) = &self.slots[i].phase
            && info.message.is_none()
            && info.exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let path = log_path(
                &self.ctx.pods_dir,
                &self.namespace,
                &self.name,
                &self.uid,
                &c.name,
                self.slots[i].restart_count(),
            );
            if let (Some(tail), Phase::Terminated(info)) =
                (log_tail(&path), &mut self.slots[i].phase)
            {
                info.message = Some(tail);
            }
        }
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

    /// Make sure the image is on the node, following `imagePullPolicy`. Skiff nodes have no
    /// registry access, so a pull that fails falls back to the node's copy when it has one.
    async fn ensure_image(
        &mut self,
        i: usize,
        c: &Container,
        pod: &Pod,
        rt: &Arc<dyn ContainerRuntime>,
    ) -> Result<String, Option<Instant>> {
        let image = c.image.clone().unwrap_or_default();
        let latest = !image.contains('@')
            && image
                .rsplit('/')
                .next()
                .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| if latest { "Always".into() } else { "IfNotPresent".into() });
        let local = match rt.image_status(&image).await {
            Ok(local) => local,
            Err(e) => {
                return Err(self.waiting(i, "ImageInspectError", e.to_string(), IMAGE_RETRY));
            }
        };
        if policy == "Never" || (policy == "IfNotPresent" && local.is_some()) {
            return match local {
                Some(info) => Ok(info.id),
                None => {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never: import it into node {} with `skiff images import` (runtime handler \"{}\")",
                        self.ctx.node_name,
                        rt.handler()
                    );
                    Err(self.waiting(i, "ErrImageNeverPull", msg, IMAGE_RETRY))
                }
            };
        }
        match rt.pull_image(&image).await {
            Ok(info) => Ok(info.id),
            Err(e) => match local {
                Some(info) => Ok(info.id),
                None => {
                    let message = format!(
                        "Failed to pull image \"{image}\": {e}; import it into node {} with `skiff images import`",
                        self.ctx.node_name
                    );
                    self.event(pod, Some(&c.name), true, "Failed", message.clone());
                    // Kubernetes shows ErrImagePull, then ImagePullBackOff while it waits.
                    // Skiff's pulls fail at once (no registry), so looking again is cheap:
                    // an image imported meanwhile is picked up within seconds.
                    let before = matches!(&self.slots[i].phase, Phase::Waiting { reason, .. } if reason == "ErrImagePull" || reason == "ImagePullBackOff");
                    let reason = if before { "ImagePullBackOff" } else { "ErrImagePull" };
                    let message = if before {
                        format!("Back-off pulling image \"{image}\": {message}")
                    } else {
                        message
                    };
                    Err(self.waiting(i, reason, message, IMAGE_RETRY))
                }
            },
        }
    }

    async fn start(&mut self, i: usize, c: &Container, pod: &Pod) -> Option<Instant> {
        let Some(rt) = self.runtime.clone() else { return Some(Instant::now() + IMAGE_RETRY) };
        let image = c.image.clone().unwrap_or_default();
        match self.ensure_image(i, c, pod, &rt).await {
            Ok(id) => self.slots[i].image_id = id,
            Err(wake) => return wake,
        }
        let fields = self.fields();
        let env =
            match crate::env::resolve(&self.ctx.client, pod, c, &fields, &self.ctx.allocatable)
                .await
            {
                Ok(env) => env,
                Err(msg) => return self.waiting(i, "CreateContainerConfigError", msg, IMAGE_RETRY),
            };
        let volumes = self.volumes.clone().unwrap_or_default();
        let mounts = match crate::volumes::mounts(c, &volumes, &env) {
            Ok(m) => m,
            Err(msg) => return self.waiting(i, "CreateContainerConfigError", msg, IMAGE_RETRY),
        };
        let wasm = self.is_wasm();
        let resources = c.resources.clone().unwrap_or_default();
        let limits = resources.limits.clone().unwrap_or_default();
        let requests = resources.requests.clone().unwrap_or_default();
        let memory = limits
            .get("memory")
            .and_then(|q| parse_quantity(&q.0))
            .map(|v| v as u64)
            .unwrap_or(if wasm { DEFAULT_MEMORY_LIMIT } else { 0 });
        let millis = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
            q.and_then(|q| parse_quantity(&q.0)).map(|v| (v * 1000.0).round() as u64)
        };
        let cpu = millis(limits.get("cpu"));
        let cpu_request = millis(requests.get("cpu")).or(cpu);
        let command: Vec<String> = c
            .command
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| crate::env::expand(s, &env))
            .collect();
        let args: Vec<String> = c
            .args
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| crate::env::expand(s, &env))
            .collect();
        let mut argv: Vec<String> =
            if command.is_empty() { vec![c.name.clone()] } else { command.clone() };
        argv.extend(args.iter().cloned());
        let restart = self.slots[i].runs;
        let termination_path = c
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/dev/termination-log".into());
        let termination_file = self
            .pod_dir()
            .join("containers")
            .join(&c.name)
            .join(format!("{restart}.termination-log"));
        if let Some(parent) = termination_file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&termination_file, b"");
        let mut container_labels = BTreeMap::from([
            (labels::POD_UID.to_string(), self.uid.clone()),
            (labels::POD_NAME.to_string(), self.name.clone()),
            (labels::POD_NAMESPACE.to_string(), self.namespace.clone()),
            (labels::CONTAINER_NAME.to_string(), c.name.clone()),
        ]);
        if self.slots[i].init {
            container_labels.insert("io.skiff.container.init".into(), "true".into());
        }
        let config = ContainerConfig {
            sandbox_id: self.sandbox.clone().unwrap_or_default(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            image: image.clone(),
            argv,
            command,
            args,
            env,
            memory_limit_bytes: memory,
            cpu_limit_millis: cpu,
            cpu_request_millis: cpu_request,
            attempt: restart,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            mounts,
            ports: port_mappings(std::slice::from_ref(c)),
            pod_ip: self.pod_ip.clone(),
            labels: container_labels,
            annotations: BTreeMap::from([(
                labels::CONTAINER_RESTART.to_string(),
                restart.to_string(),
            )]),
            termination_message_path: Some(termination_path),
            termination_message_host_path: Some(termination_file.clone()),
            log_path: log_path(
                &self.ctx.pods_dir,
                &self.namespace,
                &self.name,
                &self.uid,
                &c.name,
                restart,
            ),
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
                self.event(pod, Some(&c.name), true, "Failed", format!("Error: {e}"));
                return self.waiting(i, "CreateContainerError", e.to_string(), backoff);
            }
        };
        if let Err(e) = rt.start_container(&id).await {
            let _ = rt.remove_container(&id).await;
            return self.waiting(i, "RunContainerError", e.to_string(), Duration::from_secs(10));
        }
        let slot = &mut self.slots[i];
        slot.runs += 1;
        slot.id = Some(id.clone());
        slot.next_attempt = None;
        slot.termination_file = Some(termination_file);
        slot.phase = Phase::Running { started_at: Utc::now() };
        slot.ready = false;
        slot.started = false;
        slot.probes = None;
        self.ctx.state.set_run(&self.uid, &slot.name, slot.restart_count(), true);
        self.publish_running(i);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let target = self.target(rt.clone(), id, c.clone());
            if let Err(message) =
                crate::probing::run_hook(&hook, &target, Duration::from_secs(30)).await
            {
                self.event(pod, Some(&c.name), true, "FailedPostStartHook", message.clone());
                self.slots[i].kill_reason = Some(format!("PostStartHookError: {message}"));
                self.stop_one(i, c, pod, Duration::from_secs(0)).await;
            }
        }
        // It may have finished already (a short guest); pick that up in this same pass.
        self.refresh(i).await;
        None
    }

    fn container_status(&self, slot: &Slot, image: &str) -> Value {
        let scheme = if self.is_wasm() { "wasm" } else { "containerd" };
        let id = slot.id.as_ref().map(|i| format!("{scheme}://{i}"));
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
            "ready": if slot.init { matches!(&slot.phase, Phase::Terminated(e) if e.exit_code == 0) } else { running && slot.ready },
            "started": running && slot.started,
            "restartCount": slot.restart_count(),
            "state": state,
            "lastState": slot.last.as_ref().map(|e| json!({"terminated": exit_json(e, None)})).unwrap_or(json!({})),
        });
        if slot.init {
            s.as_object_mut().map(|o| o.remove("started"));
        }
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
        let phase = if self.deadline_exceeded || init_failed {
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
        let all_ready = !self.deadline_exceeded
            && !mains.is_empty()
            && mains.iter().all(|s| matches!(s.phase, Phase::Running { .. }) && s.ready);
        let old = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let old_conditions: Vec<Value> =
            old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let now = ts(&Utc::now());
        let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
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
            if let Some(m) = message {
                c["message"] = json!(m);
            }
            c
        };
        let not_ready: Vec<&str> = mains
            .iter()
            .filter(|s| !(matches!(s.phase, Phase::Running { .. }) && s.ready))
            .map(|s| s.name.as_str())
            .collect();
        let (not_ready_reason, not_ready_message) = if phase == "Succeeded" || phase == "Failed" {
            (Some("PodCompleted"), None)
        } else if all_ready {
            (None, None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{}]", not_ready.join(" "))),
            )
        };
        let uninitialized: Vec<&str> = inits
            .iter()
            .filter(|s| !matches!(&s.phase, Phase::Terminated(e) if e.exit_code == 0))
            .map(|s| s.name.as_str())
            .collect();
        let sandbox_message = self.runtime_error.clone();
        let conditions = vec![
            cond(
                "PodReadyToStartContainers",
                self.sandbox.is_some(),
                None,
                if self.sandbox.is_none() { sandbox_message.clone() } else { None },
            ),
            cond(
                "Initialized",
                init_ok,
                if init_ok { None } else { Some("ContainersNotInitialized") },
                (!init_ok).then(|| {
                    format!("containers with incomplete status: [{}]", uninitialized.join(" "))
                }),
            ),
            cond("Ready", all_ready, not_ready_reason, not_ready_message.clone()),
            cond("ContainersReady", all_ready, not_ready_reason, not_ready_message),
            cond("PodScheduled", true, None, None),
        ];
        let host_ip = &self.ctx.node_ip;
        let mut container_statuses: Vec<Value> =
            mains.iter().map(|s| self.container_status(s, &image_of(&s.name, false))).collect();
        // A pod that cannot get a sandbox or its volumes says why on each waiting container.
        let blocker = self.runtime_error.clone().or(self.volume_error.clone());
        let fill = |list: &mut Vec<Value>| {
            if let Some(msg) = &blocker {
                for cs in list.iter_mut() {
                    if let Some(w) = cs.pointer_mut("/state/waiting")
                        && w.get("reason").and_then(Value::as_str) == Some("ContainerCreating")
                    {
                        w["message"] = json!(msg);
                    }
                }
            }
        };
        fill(&mut container_statuses);
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "qosClass": qos_class(pod),
            "containerStatuses": container_statuses,
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if self.deadline_exceeded {
            status["reason"] = json!("DeadlineExceeded");
            status["message"] =
                json!("Pod was active on the node longer than the specified deadline");
        }
        if !inits.is_empty() {
            let mut list: Vec<Value> =
                inits.iter().map(|s| self.container_status(s, &image_of(&s.name, true))).collect();
            fill(&mut list);
            status["initContainerStatuses"] = json!(list);
        }
        status
    }

    async fn write_status(&mut self, pod: &Pod) {
        let status = self.compute_status(pod);
        if !self.start_observed
            && self
                .slots
                .iter()
                .filter(|s| !s.init)
                .all(|s| matches!(s.phase, Phase::Running { .. }))
            && let Some(start) = self.started_at()
        {
            self.start_observed = true;
            let took = (Utc::now() - start).to_std().unwrap_or_default();
            self.ctx.metrics.observe_pod_start(took);
        }
        // Someone else may have changed the pod's readiness (the node lifecycle controller marks
        // pods of an unreachable node not ready): what the API shows must match ours too.
        let ready_in_api = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let ready_here = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str());
        if self.last_status.as_ref() == Some(&status) && ready_in_api == ready_here {
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

    /// Stop one running container: its preStop hook first, then the runtime's stop with
    /// what is left of `grace`.
    async fn stop_one(&mut self, i: usize, c: &Container, _pod: &Pod, grace: Duration) {
        let Some(id) = self.slots[i].id.clone() else { return };
        let Some(rt) = self.runtime.clone() else { return };
        let started = Instant::now();
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone())
            && matches!(self.slots[i].phase, Phase::Running { .. })
        {
            let target = self.target(rt.clone(), id.clone(), c.clone());
            if let Err(message) = crate::probing::run_hook(&hook, &target, grace).await {
                tracing::info!(pod = %self.name, container = %c.name, %message, "preStop hook failed");
            }
        }
        let left = grace.saturating_sub(started.elapsed());
        let _ = rt.stop_container(&id, left).await;
    }

    /// Kill every running container (activeDeadlineSeconds).
    async fn kill_all(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let grace =
            Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
        let all = all_containers(&spec);
        for i in 0..self.slots.len() {
            if self.slots[i].id.is_none() {
                continue;
            }
            if let Some(c) = all.iter().find(|c| c.name == self.slots[i].name).cloned() {
                self.stop_one(i, &c, pod, grace).await;
                self.refresh(i).await;
            }
        }
    }

    /// Stop everything the pod runs, giving each container up to `grace` (preStop hooks
    /// included), then release the sandbox, the address and the volumes.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: Duration) {
        if let Some(rt) = self.runtime.clone() {
            if let Some(pod) = pod {
                let spec = pod.spec.clone().unwrap_or_default();
                let all = all_containers(&spec);
                // Containers stop in parallel, each with the whole grace period.
                let mut stops = Vec::new();
                for slot in &self.slots {
                    let (Some(id), Some(c)) =
                        (slot.id.clone(), all.iter().find(|c| c.name == slot.name).cloned())
                    else {
                        continue;
                    };
                    let rt = rt.clone();
                    let target = self.target(rt.clone(), id.clone(), c.clone());
                    stops.push(async move {
                        let started = Instant::now();
                        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
                            let _ = crate::probing::run_hook(&hook, &target, grace).await;
                        }
                        let _ =
                            rt.stop_container(&id, grace.saturating_sub(started.elapsed())).await;
                    });
                }
                futures::future::join_all(stops).await;
            }
            for slot in &mut self.slots {
                if let Some(id) = slot.id.take() {
                    let _ = rt.stop_container(&id, Duration::ZERO).await;
                    let _ = rt.remove_container(&id).await;
                }
            }
            if let Some(sb) = self.sandbox.take() {
                let _ = rt.stop_pod_sandbox(&sb).await;
                let _ = rt.remove_pod_sandbox(&sb).await;
            }
        }
        self.ctx.network.release(&self.uid);
        self.ctx.state.forget_pod(&self.uid);
        let dir = self.pod_dir();
        crate::volumes::unmount_all(&dir);
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
