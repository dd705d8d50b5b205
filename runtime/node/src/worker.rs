//! One pod worker per pod on this node, the kubelet's pod worker and `SyncPod`. Each pass
//! looks (`observe`: container exits, the sandbox, due probes), decides
//! (`actions::compute_pod_actions`, pure), acts (`act`: sandbox, volumes, start, kill, back-off)
//! and reports (`status`). Level-triggered: everything it keeps can be rebuilt from the pod's
//! last status and the runtime.

mod act;
pub mod actions;
mod observe;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use skiff_client_tools::events::EventType;
use skiff_runtime_core::{
    ContainerId, ContainerRuntime, ContainerState, ContainerStatus, ExitInfo, PortMapping,
    SandboxId, SandboxStatus, labels,
};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::network::PodNetwork;
use crate::state::NodeState;
use crate::volumes::{FieldValues, PreparedVolumes};
use actions::{ContainerPhase, ContainerRecord, Now, ObservedPod, SandboxState};

pub use act::RuntimeChoiceError;
pub use status::qos_class;

/// Default memory limit of a Wasm container without `resources.limits.memory`.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const IMAGE_RETRY: Duration = Duration::from_secs(2);
/// How long a worker waits before asking again for a runtime or an address it could not get.
const RUNTIME_RETRY: Duration = Duration::from_secs(5);

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
    /// Where pods' resolvers point (`dnsPolicy`).
    pub cluster_dns: crate::dns::ClusterDnsSettings,
    /// Node allocatable amounts (cores, bytes) for `resourceFieldRef` limits left unset.
    pub allocatable: BTreeMap<String, f64>,
    /// Evictions the eviction manager asks for, and the node's pressure (for admission).
    pub eviction: Arc<crate::eviction::EvictionShared>,
    pub leftovers: std::sync::Mutex<Leftovers>,
    /// RuntimeClass name → (handler, when read): pods of one class share one lookup.
    pub runtime_classes: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Held while a RuntimeClass is read, so the workers of a burst of pods wait for one read
    /// instead of each sending its own.
    pub runtime_class_read: tokio::sync::Mutex<()>,
    pub metrics: Arc<crate::stats::KubeletMetrics>,
    /// Events about this node's pods (`source.host` is the node).
    pub recorder: skiff_client_tools::Recorder,
    /// Image pulls: serialization and per-image back-off.
    pub images: Arc<crate::images::ImagePulls>,
    /// Every Service, for the containers' Service variables (watch-fed; ready once listed).
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
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

/// One container of the pod: what the decision reads, and what only acting and reporting
/// need.
struct Slot {
    rec: ContainerRecord,
    id: Option<ContainerId>,
    image_id: String,
    /// The previous run's end (`lastState`).
    last: Option<ExitInfo>,
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
        self.rec.runs.saturating_sub(1)
    }
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

/// The earlier of two optional times.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Init containers, then the others.
fn all_containers(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<Container> {
    let inits = spec.init_containers.iter().flatten();
    inits.chain(spec.containers.iter()).cloned().collect()
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

/// What one pass of the worker came to.
enum Synced {
    /// The pod left the node; the worker ends.
    Done,
    /// Look again at this time (or on the next pod or runtime event).
    Wait(Option<Instant>),
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
    /// The sandbox was found dead; it is replaced on the next pass.
    sandbox_dead: bool,
    /// Sandboxes created for this pod before the current one (CRI `attempt`).
    sandbox_attempt: u32,
    pod_ip: Option<String>,
    volumes: Option<PreparedVolumes>,
    volumes_at: Option<Instant>,
    volume_error: Option<String>,
    slots: Vec<Slot>,
    start_time: String,
    /// Hash of the status last written (the status itself is the API's to keep).
    last_status: Option<u64>,
    /// The API's answer to the last status write, with the resourceVersion of the pod the
    /// watch showed then; dropped once the watch shows a newer one.
    written: Option<(Option<String>, Arc<Pod>)>,
    /// Set once `activeDeadlineSeconds` passed: the pod is Failed with DeadlineExceeded.
    deadline_exceeded: bool,
    /// Set once the pod was evicted (or refused under node pressure): it is Failed with
    /// reason `Evicted`.
    evicted: Option<Box<crate::eviction::Eviction>>,
    /// The node's pressure was checked before the pod's first start (kubelet admission).
    admission_checked: bool,
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
        // Exactly one slot per container: a `Slot` is large and every pod keeps its slots.
        let count = spec.init_containers.as_ref().map_or(0, Vec::len) + spec.containers.len();
        let mut slots = Vec::with_capacity(count);
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
                    rec: ContainerRecord::new(&c.name, init),
                    id: None,
                    image_id: prior
                        .as_ref()
                        .and_then(|p| p.get("imageID"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    last,
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
                    slot.rec.runs = restart_count + 1;
                    slot.rec.phase = ContainerPhase::Terminated(exit);
                } else if let Some((_, cs)) = running_in_runtime {
                    // Still running in the runtime: adopt it.
                    slot.rec.runs = restart_count + 1;
                    slot.id = Some(cs.id.clone());
                    slot.image_id = cs.image_id.clone();
                    let started_at = match cs.state {
                        ContainerState::Running { started_at } => started_at,
                        _ => Utc::now(),
                    };
                    slot.rec.phase = ContainerPhase::Running { started_at };
                    ctx.state.set_run(&uid, &slot.rec.name, slot.restart_count(), true);
                } else if let Some(started) = parse_time(state.pointer("/running/startedAt")) {
                    // It ran in an earlier life of this node and is gone (in-process guests
                    // die with the node).
                    slot.rec.runs = restart_count + 1;
                    slot.rec.phase = ContainerPhase::Terminated(ExitInfo {
                        exit_code: 137,
                        reason: "Error".into(),
                        message: Some("the node restarted while the container was running".into()),
                        started_at: started,
                        finished_at: Utc::now(),
                    });
                } else if restart_count > 0 {
                    slot.rec.runs = restart_count;
                }
                slots.push(slot);
            }
        }
        let start_time = status
            .get("startTime")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| status::ts(&Utc::now()));
        let adopted_sandbox = sandboxes.iter().find(|(_, s)| s.ready).cloned();
        // A pod that ended on this node before stays ended (the status says how).
        let failed_for = |reason: &str| {
            status.get("phase").and_then(Value::as_str) == Some("Failed")
                && status.get("reason").and_then(Value::as_str) == Some(reason)
        };
        let evicted = failed_for(crate::eviction::REASON).then(|| {
            let disruption = status
                .get("conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|c| c["type"] == "DisruptionTarget"));
            Box::new(crate::eviction::Eviction {
                message: status.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                disruption_condition: disruption,
            })
        });
        // Anything that ran already passed admission.
        let admission_checked = status.get("phase").and_then(Value::as_str).unwrap_or("Pending")
            != "Pending"
            || slots.iter().any(|s| s.rec.runs > 0);
        let mut w = PodWorker {
            uid,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            handler: None,
            runtime: None,
            runtime_error: None,
            sandbox: None,
            sandbox_dead: false,
            sandbox_attempt: 0,
            pod_ip: None,
            volumes: None,
            volumes_at: None,
            volume_error: None,
            slots,
            start_time,
            last_status: None,
            written: None,
            deadline_exceeded: failed_for("DeadlineExceeded"),
            evicted,
            admission_checked,
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
                    s.rec.phase = ContainerPhase::creating();
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
    pub async fn run(mut self, mut pods: watch::Receiver<Option<Arc<Pod>>>, events: Arc<Notify>) {
        // A pass's futures (API calls, the runtime) are boxed while it runs: the task every
        // pod keeps for as long as it lives holds only this loop's state.
        loop {
            let pod = self.current_pod(pods.borrow_and_update().clone());
            let wake = match Box::pin(self.sync(pod.as_deref())).await {
                Synced::Done => return,
                Synced::Wait(wake) => wake,
            };
            if let Some(pod) = &pod {
                Box::pin(self.write_status(pod)).await;
            }
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                changed = pods.changed() => if changed.is_err() {
                    Box::pin(self.sync(None)).await;
                    return;
                },
                _ = events.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// The pod to work from: the watch's, or the API's answer to this worker's last status
    /// write while the watch has not brought that write back yet. Deciding and writing from
    /// the older copy would see a status the API no longer has (Ready still false) and write
    /// the same status again.
    fn current_pod(&mut self, watched: Option<Arc<Pod>>) -> Option<Arc<Pod>> {
        let Some(watched) = watched else {
            self.written = None;
            return None;
        };
        match self.written.take() {
            Some((base, answer)) if watched.metadata.resource_version == base => {
                self.written = Some((base, answer.clone()));
                Some(answer)
            }
            _ => Some(watched),
        }
    }

    /// One pass: observe, compute the actions, act. An init container that succeeds at once
    /// lets the next one start in the same pass.
    async fn sync(&mut self, pod: Option<&Pod>) -> Synced {
        if let Some(pod) = pod
            && pod.metadata.deletion_timestamp.is_none()
        {
            self.check_eviction(pod);
            self.observe(pod).await;
        }
        let mut wake = None;
        for _ in 0..=self.slots.len() {
            let actions = actions::compute_pod_actions(pod, &self.observed(), Now::now());
            tracing::trace!(pod = %self.name, ?actions, "pod actions");
            let acted = self.act(pod, &actions).await;
            if acted.done {
                return Synced::Done;
            }
            wake = earliest(wake, acted.wake);
            if !acted.init_completed {
                break;
            }
        }
        Synced::Wait(earliest(wake, self.probes_due()))
    }

    /// What the decision reads: the worker's view of the pod.
    fn observed(&self) -> ObservedPod {
        ObservedPod {
            sandbox: match (&self.sandbox, self.sandbox_dead) {
                (None, _) => SandboxState::Missing,
                (Some(_), true) => SandboxState::NotReady,
                (Some(_), false) => SandboxState::Ready,
            },
            containers: self.slots.iter().map(|s| s.rec.clone()).collect(),
            start_time: self.started_at(),
            deadline_exceeded: self.deadline_exceeded,
            evicted: self.evicted.is_some(),
        }
    }

    /// Take an eviction the eviction manager asked for; before the pod's first start, refuse
    /// it if the node is under pressure (the kubelet's eviction admission).
    fn check_eviction(&mut self, pod: &Pod) {
        if self.evicted.is_some() {
            return;
        }
        if let Some(e) = self.ctx.eviction.take(&self.uid) {
            self.evicted = Some(Box::new(e));
            // Nothing to stop first: give back its emptyDirs' disk now (else after the kill).
            if !self.slots.iter().any(|s| s.rec.phase.is_running()) {
                crate::volumes::release_empty_dirs(pod, &self.pod_dir());
            }
            return;
        }
        if !self.admission_checked {
            self.admission_checked = true;
            if let Err(message) = crate::eviction::admit(pod, &self.ctx.eviction.pressure()) {
                tracing::info!(pod = %self.name, %message, "pod refused under node pressure");
                self.event(pod, None, true, crate::eviction::REASON, message.clone());
                self.evicted = Some(Box::new(crate::eviction::Eviction {
                    message,
                    disruption_condition: false,
                }));
            }
        }
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
        let mut involved = skiff_client_tools::events::reference(pod);
        involved.field_path = container.map(|c| format!("spec.containers{{{c}}}"));
        let type_ = if warning { EventType::Warning } else { EventType::Normal };
        self.ctx.recorder.record(involved, type_, reason, message);
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
        let running = match (&slot.rec.phase, &slot.id, &self.runtime) {
            (ContainerPhase::Running { started_at }, Some(id), Some(rt)) => {
                Some(crate::stats::RunningContainer {
                    namespace: self.namespace.clone(),
                    pod: self.name.clone(),
                    pod_uid: self.uid.clone(),
                    container: slot.rec.name.clone(),
                    container_id: id.clone(),
                    runtime: rt.clone(),
                    started_at: *started_at,
                })
            }
            _ => None,
        };
        self.ctx.state.set_running(&self.uid, &slot.rec.name, running);
    }

    fn is_wasm(&self) -> bool {
        self.handler.as_deref() == Some(WASM_HANDLER)
    }
}

/// Wake the worker of a pod its runtime reported on. A wake-up carries nothing (the worker
/// looks at the runtime itself) and wake-ups that arrive while it is busy collapse into one.
pub type WorkerInboxes = Arc<std::sync::Mutex<HashMap<String, Arc<Notify>>>>;
