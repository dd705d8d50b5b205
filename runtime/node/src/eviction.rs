//! The kubelet's eviction manager (`pkg/kubelet/eviction`): every monitoring interval it reads
//! the eviction signals (`memory.available` from `/proc/meminfo`, `nodefs.*` from statvfs of the
//! data dir, `pid.available` from `pid_max` and the task count), sets the node's
//! MemoryPressure/DiskPressure/PIDPressure conditions (held for the pressure transition
//! period), enforces pods' local storage limits (emptyDir `sizeLimit`, container
//! `ephemeral-storage` limits) and, while a hard threshold is crossed, evicts one pod per
//! interval, ranked as the kubelet ranks them. An evicted pod's worker kills it and reports it
//! `Failed` with reason `Evicted` and the kubelet's message; the manager records the event.
//!
//! Cost: a pod's directories are walked only when it has a local storage limit, or while the
//! node is under disk pressure; container stats are read only under memory pressure.
//!
//! Deviation: `imagefs.*` thresholds are not evaluated separately, because the Wasm image
//! store lives in the data dir (the node's file system), where the `nodefs.*` thresholds
//! apply; the kubelet would apply both to the same numbers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, ObjectReference, Pod, Taint};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use skiff_client_tools::Recorder;
use skiff_client_tools::events::EventType;
use skiff_helpers::quantity::value;
use tokio::time::Instant;

use crate::Kubelet;
use crate::resources::{
    Pressure, Signal, Threshold, Thresholds, format_bytes, format_decimal, fs_stats, pid_stats,
};
use crate::volumes::{disk_usage, is_local_ephemeral, volumes_dir};
use crate::worker::{WorkerContext, WorkerInboxes};

/// The pod status reason of an eviction (and of a pod refused under pressure).
pub const REASON: &str = "Evicted";
/// Pods at or above this priority (`system-cluster-critical`) are never evicted.
const CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The grace an evicted pod's containers get (`immediateEvictionGracePeriodSeconds`).
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Entries one pod's walk may look at (a runaway tree makes the figure a lower bound).
const WALK_BUDGET: u64 = 100_000;

/// A pod the eviction manager (or admission under pressure) has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub message: String,
    /// Report the `DisruptionTarget` condition (`TerminationByKubelet`), as the kubelet does
    /// for evictions under node pressure.
    pub disruption_condition: bool,
}

/// One pressure condition as the node last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    pub status: bool,
    /// `lastTransitionTime`.
    pub since: String,
}

/// What the eviction manager shares with the pod workers and the node status.
pub struct EvictionShared {
    /// Evictions not yet taken by their pod's worker, by pod uid.
    requests: Mutex<HashMap<String, Eviction>>,
    /// The pressure conditions, in the order Memory, Disk, PID.
    conditions: Mutex<BTreeMap<Pressure, ConditionState>>,
}

impl Default for EvictionShared {
    fn default() -> Self {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let state = ConditionState { status: false, since: now };
        EvictionShared {
            requests: Mutex::default(),
            conditions: Mutex::new(
                [Pressure::Memory, Pressure::Disk, Pressure::Pid]
                    .into_iter()
                    .map(|p| (p, state.clone()))
                    .collect(),
            ),
        }
    }
}

impl EvictionShared {
    /// The eviction of pod `uid`, if one was asked for (taken once).
    pub fn take(&self, uid: &str) -> Option<Eviction> {
        self.requests.lock().ok()?.remove(uid)
    }

    fn request(&self, uid: &str, eviction: Eviction) {
        if let Ok(mut m) = self.requests.lock() {
            m.insert(uid.to_string(), eviction);
        }
    }

    /// Drop requests for pods no longer on the node (their workers ended before taking them).
    fn forget_gone(&self, live: &HashSet<String>) {
        if let Ok(mut m) = self.requests.lock() {
            m.retain(|uid, _| live.contains(uid));
        }
    }

    /// The pressure conditions true now.
    pub fn pressure(&self) -> Vec<Pressure> {
        self.conditions
            .lock()
            .map(|m| m.iter().filter(|(_, c)| c.status).map(|(p, _)| *p).collect())
            .unwrap_or_default()
    }

    /// The three pressure conditions as the Node shows them.
    pub fn condition_json(&self, heartbeat: &str) -> Vec<serde_json::Value> {
        let Ok(m) = self.conditions.lock() else { return Vec::new() };
        m.iter().map(|(p, c)| condition(*p, c, heartbeat)).collect()
    }

    /// Set the conditions to `pressure`; returns those that changed.
    fn set(&self, pressure: &[Pressure], now: &str) -> Vec<(Pressure, ConditionState)> {
        let Ok(mut m) = self.conditions.lock() else { return Vec::new() };
        let mut changed = Vec::new();
        for (p, c) in m.iter_mut() {
            let status = pressure.contains(p);
            if c.status != status {
                *c = ConditionState { status, since: now.to_string() };
                changed.push((*p, c.clone()));
            }
        }
        changed
    }
}

impl Pressure {
    pub fn condition_type(self) -> &'static str {
        match self {
            Pressure::Memory => "MemoryPressure",
            Pressure::Disk => "DiskPressure",
            Pressure::Pid => "PIDPressure",
        }
    }

    /// The kubelet's (reason, message) of the condition with `status`.
    pub fn reason_message(self, status: bool) -> (&'static str, &'static str) {
        match (self, status) {
            (Pressure::Memory, false) => {
                ("KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            }
            (Pressure::Memory, true) => {
                ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            }
            (Pressure::Disk, false) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (Pressure::Disk, true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            (Pressure::Pid, false) => {
                ("KubeletHasSufficientPID", "kubelet has sufficient PID available")
            }
            (Pressure::Pid, true) => {
                ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            }
        }
    }

    /// The node event the kubelet records when the condition turns to `status`.
    pub fn event_reason(self, status: bool) -> &'static str {
        match (self, status) {
            (Pressure::Memory, false) => "NodeHasSufficientMemory",
            (Pressure::Memory, true) => "NodeHasInsufficientMemory",
            (Pressure::Disk, false) => "NodeHasNoDiskPressure",
            (Pressure::Disk, true) => "NodeHasDiskPressure",
            (Pressure::Pid, false) => "NodeHasSufficientPID",
            (Pressure::Pid, true) => "NodeHasInsufficientPID",
        }
    }
}

fn condition(p: Pressure, c: &ConditionState, heartbeat: &str) -> serde_json::Value {
    let (reason, message) = p.reason_message(c.status);
    json!({"type": p.condition_type(), "status": if c.status { "True" } else { "False" },
        "reason": reason, "message": message,
        "lastHeartbeatTime": heartbeat, "lastTransitionTime": c.since})
}

/// A signal's reading: what is available out of what there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// Read the signals: memory from `/proc/meminfo` (available = capacity − working set, the
/// kubelet's `memory.available`), the file system of `node_dir`, the PID limit.
pub fn observe(node_dir: &Path) -> Observations {
    let mut out = Observations::new();
    let mut mem = crate::stats::NodeUsage::default();
    crate::stats::parse_meminfo(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        &mut mem,
    );
    if mem.memory_total_bytes > 0 {
        let capacity = i64::try_from(mem.memory_total_bytes).unwrap_or(i64::MAX);
        let ws = i64::try_from(mem.memory_working_set_bytes).unwrap_or(0);
        out.insert(
            Signal::MemoryAvailable,
            Observation { available: (capacity - ws).max(0), capacity },
        );
    }
    if let Ok(fs) = fs_stats(node_dir) {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        out.insert(
            Signal::NodeFsAvailable,
            Observation { available: i(fs.available), capacity: i(fs.capacity) },
        );
        if fs.inodes > 0 {
            out.insert(
                Signal::NodeFsInodesFree,
                Observation { available: i(fs.inodes_free), capacity: i(fs.inodes) },
            );
        }
    }
    if let Some((max, tasks)) = pid_stats() {
        out.insert(
            Signal::PidAvailable,
            Observation { available: (max - tasks).max(0), capacity: max },
        );
    }
    out
}

/// The thresholds crossed: available below the threshold's amount. Memory signals come
/// first, as the kubelet reclaims memory before anything else.
pub fn thresholds_met(thresholds: &Thresholds, observations: &Observations) -> Vec<Threshold> {
    let mut met: Vec<Threshold> = thresholds
        .0
        .iter()
        .filter(|t| {
            observations.get(&t.signal).is_some_and(|o| o.available < t.value.quantity(o.capacity))
        })
        .copied()
        .collect();
    met.sort_by_key(|t| t.signal.pressure() != Pressure::Memory);
    met
}

/// The pressure conditions to report: those whose signal crossed its threshold within the
/// last `period` (`last_met` keeps when each last did).
pub fn pressure_now(
    met: &[Threshold],
    last_met: &mut BTreeMap<Pressure, Instant>,
    now: Instant,
    period: Duration,
) -> Vec<Pressure> {
    for t in met {
        last_met.insert(t.signal.pressure(), now);
    }
    last_met.retain(|_, at| now.duration_since(*at) <= period);
    last_met.keys().copied().collect()
}

/// Whether a pod may start on a node with `pressure` (the kubelet's eviction admission): any
/// pod under memory pressure alone unless it is BestEffort and does not tolerate the
/// memory-pressure taint; none under disk or PID pressure; critical pods always.
pub fn admit(pod: &Pod, pressure: &[Pressure]) -> Result<(), String> {
    if pressure.is_empty() || priority(pod) >= CRITICAL_PRIORITY {
        return Ok(());
    }
    if pressure == [Pressure::Memory] {
        if crate::worker::qos_class(pod) != "BestEffort" {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/memory-pressure".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        if skiff_helpers::taints::tolerated_by(tolerations, &taint) {
            return Ok(());
        }
    }
    let names: Vec<&str> = pressure.iter().map(|p| p.condition_type()).collect();
    Err(format!("The node had condition: [{}]. ", names.join(" ")))
}

/// What one pod uses, as far as it was measured (`None`: not measured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Working set of its running containers.
    pub memory: Option<i64>,
    /// Local ephemeral storage: container logs (and writable layers) plus local volumes.
    pub disk: Option<i64>,
    pub inodes: Option<i64>,
    /// Per container: (name, working set, ephemeral storage).
    pub containers: Vec<ContainerUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    pub memory: Option<i64>,
    pub disk: Option<i64>,
}

/// A pod that may be evicted, with its usage.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pod: Arc<Pod>,
    pub usage: PodUsage,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn request_of(c: &Container, resource: &str) -> i64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| value(&q.0))
        .unwrap_or(0)
}

/// The pod's request of `resource`: its containers' sum, or a larger init container's.
pub fn pod_request(pod: &Pod, resource: &str) -> i64 {
    let Some(spec) = pod.spec.as_ref() else { return 0 };
    let sum: i64 = spec.containers.iter().map(|c| request_of(c, resource)).sum();
    let init = spec.init_containers.iter().flatten().map(|c| request_of(c, resource)).max();
    sum.max(init.unwrap_or(0))
}

fn usage_of(c: &Candidate, resource: &str) -> Option<i64> {
    match resource {
        "memory" => c.usage.memory,
        "ephemeral-storage" => c.usage.disk,
        "inodes" => c.usage.inodes,
        _ => Some(0),
    }
}

/// Order `pods` as the kubelet ranks them for eviction on `signal`: pods without stats
/// first, then pods using more than they request, then lower priority, then the largest use
/// above the request (memory and disk); for PIDs, by priority.
pub fn rank(pods: &mut [Candidate], signal: Signal) {
    let resource = signal.resource();
    let request = |c: &Candidate| match resource {
        "memory" | "ephemeral-storage" => pod_request(&c.pod, resource),
        _ => 0,
    };
    pods.sort_by(|a, b| {
        if resource == "pids" {
            return priority(&a.pod).cmp(&priority(&b.pod));
        }
        let (ua, ub) = (usage_of(a, resource), usage_of(b, resource));
        // Missing stats first.
        match (ua, ub) {
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            _ => {}
        }
        let (ua, ub) = (ua.unwrap_or(0), ub.unwrap_or(0));
        let (ra, rb) = (request(a), request(b));
        // Exceeding requests first (true sorts before false).
        (ub > rb)
            .cmp(&(ua > ra))
            .then_with(|| priority(&a.pod).cmp(&priority(&b.pod)))
            .then_with(|| (ub - rb).cmp(&(ua - ra)))
    });
}

fn quantity_string(resource: &str, amount: i64) -> String {
    match resource {
        "memory" | "ephemeral-storage" => format_bytes(amount),
        _ => format_decimal(amount),
    }
}

/// The kubelet's message for evicting `c` to reclaim `threshold`'s resource.
pub fn eviction_message(
    c: &Candidate,
    threshold: &Threshold,
    observed: Option<Observation>,
) -> String {
    let resource = threshold.signal.resource();
    let mut message = format!("The node was low on resource: {resource}. ");
    if let Some(o) = observed {
        message += &format!(
            "Threshold quantity: {}, available: {}. ",
            quantity_string(resource, threshold.value.quantity(o.capacity)),
            quantity_string(resource, o.available),
        );
    }
    let Some(spec) = c.pod.spec.as_ref() else { return message };
    for usage in &c.usage.containers {
        let Some(container) = spec.containers.iter().find(|k| k.name == usage.name) else {
            continue;
        };
        let used = match resource {
            "memory" => usage.memory,
            "ephemeral-storage" => usage.disk,
            _ => None,
        };
        let request = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource));
        let request_amount = request.and_then(|q| value(&q.0)).unwrap_or(0);
        if let Some(used) = used.filter(|u| *u > request_amount) {
            message += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                usage.name,
                format_bytes(used),
                request.map_or_else(|| "0".to_string(), |q| q.0.clone()),
            );
        }
    }
    message
}

/// A pod's local storage as measured on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalUsage {
    /// Bytes per volume (emptyDirs, configMap and downwardAPI volumes).
    pub volumes: BTreeMap<String, u64>,
    /// Bytes per container (its logs; OCI writable layers are not measured).
    pub containers: BTreeMap<String, u64>,
}

/// Whether the node must watch `pod`'s local storage: an emptyDir with a `sizeLimit`, or a
/// container with an `ephemeral-storage` limit.
pub fn has_local_storage_limits(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let volume_limit = spec.volumes.iter().flatten().any(|v| {
        v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()).and_then(|q| value(&q.0)) > Some(0)
    });
    volume_limit
        || spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| ephemeral_limit(c).is_some())
}

fn ephemeral_limit(c: &Container) -> Option<(i64, String)> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get("ephemeral-storage")?;
    value(&q.0).filter(|v| *v > 0).map(|v| (v, canonical(&q.0, v)))
}

/// A quantity as apimachinery prints it back: a binary-suffixed one in its largest exact
/// binary suffix (`0.5Gi` is `512Mi`); others as written.
fn canonical(q: &str, amount: i64) -> String {
    if q.trim_end().ends_with('i') { format_bytes(amount) } else { q.trim().to_string() }
}

/// Measure `pod`'s local storage under `pod_dir`.
pub fn measure_local(pod: &Pod, pod_dir: &Path) -> LocalUsage {
    let mut out = LocalUsage::default();
    let Some(spec) = pod.spec.as_ref() else { return out };
    for v in spec.volumes.iter().flatten() {
        if v.empty_dir.is_some() || is_local_ephemeral(v) {
            let u = disk_usage(&volumes_dir(pod_dir).join(&v.name), WALK_BUDGET);
            out.volumes.insert(v.name.clone(), u.bytes);
        }
    }
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let u = disk_usage(&pod_dir.join(&c.name), WALK_BUDGET);
        out.containers.insert(c.name.clone(), u.bytes);
    }
    out
}

/// Why `pod` must go for its local storage (the kubelet's `localStorageEviction`): an emptyDir
/// over its `sizeLimit`, the pod over its containers' total `ephemeral-storage` limit, or a
/// container over its own.
pub fn local_storage_violation(pod: &Pod, usage: &LocalUsage) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else {
            continue;
        };
        let Some(amount) = value(&limit.0).filter(|a| *a > 0) else { continue };
        if usage.volumes.get(&v.name).is_some_and(|u| i128::from(*u) > i128::from(amount)) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name,
                canonical(&limit.0, amount)
            ));
        }
    }
    // The pod's limit: its containers' sum, or a larger init container's.
    let limits: Vec<(i64, String)> = spec.containers.iter().filter_map(ephemeral_limit).collect();
    let init_max = spec.init_containers.iter().flatten().filter_map(ephemeral_limit).max();
    if !limits.is_empty() || init_max.is_some() {
        let sum: i64 = limits.iter().map(|(v, _)| v).sum();
        let (limit, text) = match (init_max, limits.as_slice()) {
            (Some((i, t)), _) if i > sum => (i, t),
            (_, [(v, t)]) => (*v, t.clone()),
            _ => (sum, format_bytes(sum)),
        };
        let pod_usage: u64 = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| is_local_ephemeral(v))
            .filter_map(|v| usage.volumes.get(&v.name))
            .chain(usage.containers.values())
            .sum();
        if i128::from(pod_usage) > i128::from(limit) {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {text}. "
            ));
        }
    }
    for c in &spec.containers {
        let Some((limit, text)) = ephemeral_limit(c) else { continue };
        if usage.containers.get(&c.name).is_some_and(|u| i128::from(*u) > i128::from(limit)) {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {:?}. ",
                c.name, text
            ));
        }
    }
    None
}

fn pod_dir(pods_dir: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    pods_dir.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    ))
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The nearest existing directory at or above `dir` (statvfs needs one).
fn existing(dir: &Path) -> PathBuf {
    dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/")).to_path_buf()
}

/// Run the eviction manager until the node stops.
pub(crate) async fn run(kubelet: Arc<Kubelet>, ctx: Arc<WorkerContext>, inboxes: WorkerInboxes) {
    let config = kubelet.config.resources.clone();
    let mut tick =
        tokio::time::interval(config.monitoring_interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_met = BTreeMap::new();
    // The last post of the conditions failed: post them all again.
    let mut unposted = false;
    // Pods asked to go, so a pod still stopping is not picked again.
    let mut evicted: HashSet<String> = HashSet::new();
    loop {
        tick.tick().await;
        let dir = existing(&ctx.pods_dir);
        let observations =
            tokio::task::spawn_blocking(move || observe(&dir)).await.unwrap_or_default();
        let met = thresholds_met(&config.eviction_hard, &observations);
        let pressure =
            pressure_now(&met, &mut last_met, Instant::now(), config.pressure_transition_period);
        unposted = !kubelet.report_pressure(&ctx.recorder, &pressure, unposted).await;

        let pods = kubelet.pods_snapshot();
        let live: HashSet<String> = pods.iter().map(|p| uid(p)).collect();
        evicted.retain(|u| live.contains(u));
        ctx.eviction.forget_gone(&live);
        let active: Vec<Arc<Pod>> = pods
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                    && !evicted.contains(&uid(p))
            })
            .collect();

        // Local storage limits first; evictions there end this round.
        let limited: Vec<Arc<Pod>> =
            active.iter().filter(|p| has_local_storage_limits(p)).cloned().collect();
        if !limited.is_empty() {
            let pods_dir = ctx.pods_dir.clone();
            let violations = tokio::task::spawn_blocking(move || {
                limited
                    .into_iter()
                    .filter_map(|p| {
                        let usage = measure_local(&p, &pod_dir(&pods_dir, &p));
                        local_storage_violation(&p, &usage).map(|m| (p, m))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if !violations.is_empty() {
                for (pod, message) in violations {
                    if priority(&pod) >= CRITICAL_PRIORITY {
                        continue;
                    }
                    evicted.insert(uid(&pod));
                    evict(&ctx, &inboxes, &pod, Eviction { message, disruption_condition: false });
                }
                continue;
            }
        }

        let Some(threshold) = met.first().copied() else { continue };
        let resource = threshold.signal.resource();
        tracing::info!(signal = %threshold.signal, resource, "eviction threshold met: attempting to reclaim");
        kubelet.node_event(
            &ctx.recorder,
            EventType::Warning,
            "EvictionThresholdMet",
            format!("Attempting to reclaim {resource}"),
        );
        let mut candidates = measure(&ctx, &active, threshold.signal).await;
        rank(&mut candidates, threshold.signal);
        let observed = observations.get(&threshold.signal).copied();
        if let Some(c) = candidates.iter().find(|c| priority(&c.pod) < CRITICAL_PRIORITY) {
            let message = eviction_message(c, &threshold, observed);
            evicted.insert(uid(&c.pod));
            evict(&ctx, &inboxes, &c.pod, Eviction { message, disruption_condition: true });
        } else {
            tracing::info!("eviction manager: no pod can be evicted");
        }
    }
}

/// What the active pods use of the signal's resource.
async fn measure(ctx: &WorkerContext, pods: &[Arc<Pod>], signal: Signal) -> Vec<Candidate> {
    match signal.resource() {
        "memory" => {
            let running = ctx.state.running_containers();
            let stats = futures::future::join_all(
                running.iter().map(|c| c.runtime.container_stats(&c.container_id)),
            )
            .await;
            let mut by_pod: HashMap<&str, Vec<ContainerUsage>> = HashMap::new();
            for (c, s) in running.iter().zip(stats) {
                let memory =
                    s.ok().map(|s| i64::try_from(s.memory_working_set_bytes).unwrap_or(i64::MAX));
                by_pod.entry(c.pod_uid.as_str()).or_default().push(ContainerUsage {
                    name: c.container.clone(),
                    memory,
                    disk: None,
                });
            }
            pods.iter()
                .map(|p| {
                    let containers = by_pod.remove(uid(p).as_str()).unwrap_or_default();
                    // A pod running nothing has no stats (and is ranked first, as the kubelet does).
                    let memory = if containers.is_empty() {
                        None
                    } else {
                        containers.iter().map(|c| c.memory).sum::<Option<i64>>()
                    };
                    Candidate {
                        pod: p.clone(),
                        usage: PodUsage { memory, containers, ..Default::default() },
                    }
                })
                .collect()
        }
        "ephemeral-storage" | "inodes" => {
            let pods_dir = ctx.pods_dir.clone();
            let pods = pods.to_vec();
            tokio::task::spawn_blocking(move || {
                pods.into_iter()
                    .map(|p| {
                        let dir = pod_dir(&pods_dir, &p);
                        let local = measure_local(&p, &dir);
                        let spec = p.spec.clone().unwrap_or_default();
                        let volumes: i64 = spec
                            .volumes
                            .iter()
                            .flatten()
                            .filter(|v| is_local_ephemeral(v))
                            .filter_map(|v| local.volumes.get(&v.name))
                            .map(|b| i64::try_from(*b).unwrap_or(i64::MAX))
                            .sum();
                        let containers: Vec<ContainerUsage> = local
                            .containers
                            .iter()
                            .map(|(name, b)| ContainerUsage {
                                name: name.clone(),
                                memory: None,
                                disk: Some(i64::try_from(*b).unwrap_or(i64::MAX)),
                            })
                            .collect();
                        let disk = volumes + containers.iter().filter_map(|c| c.disk).sum::<i64>();
                        let inodes =
                            i64::try_from(disk_usage(&dir, WALK_BUDGET).inodes).unwrap_or(0);
                        Candidate {
                            pod: p,
                            usage: PodUsage {
                                disk: Some(disk),
                                inodes: Some(inodes),
                                containers,
                                memory: None,
                            },
                        }
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
        }
        _ => {
            pods.iter().map(|p| Candidate { pod: p.clone(), usage: PodUsage::default() }).collect()
        }
    }
}

/// Record the `Evicted` event and hand the eviction to the pod's worker.
fn evict(ctx: &WorkerContext, inboxes: &WorkerInboxes, pod: &Pod, eviction: Eviction) {
    let uid = uid(pod);
    tracing::info!(pod = ?pod.metadata.name, namespace = ?pod.metadata.namespace, message = %eviction.message, "evicting pod");
    ctx.recorder.record(
        skiff_client_tools::events::reference(pod),
        EventType::Warning,
        REASON,
        eviction.message.clone(),
    );
    ctx.eviction.request(&uid, eviction);
    if let Some(wake) = inboxes.lock().ok().and_then(|m| m.get(&uid).cloned()) {
        wake.notify_one();
    }
}

impl Kubelet {
    /// Set the pressure conditions; post those that changed (all of them with `all`), with
    /// the kubelet's node events. Returns whether the post went through.
    async fn report_pressure(&self, recorder: &Recorder, pressure: &[Pressure], all: bool) -> bool {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let changed = self.eviction.set(pressure, &now);
        if changed.is_empty() && !all {
            return true;
        }
        let conditions: Vec<serde_json::Value> = if all {
            self.eviction.condition_json(&now)
        } else {
            changed.iter().map(|(p, c)| condition(*p, c, &now)).collect()
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": conditions}});
        let mut posted = true;
        if let Err(e) = nodes
            .patch_status(&self.config.name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::warn!(node = %self.config.name, error = %e, "posting pressure conditions failed; will retry");
            posted = false;
        }
        for (p, c) in changed {
            tracing::info!(node = %self.config.name, condition = p.condition_type(), status = c.status, "node pressure condition changed");
            let reason = p.event_reason(c.status);
            self.node_event(
                recorder,
                EventType::Normal,
                reason,
                format!("Node {} status is now: {reason}", self.config.name),
            );
        }
        posted
    }

    fn node_event(&self, recorder: &Recorder, type_: EventType, reason: &str, message: String) {
        let node = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.config.name.clone()),
            uid: Some(self.config.name.clone()),
            ..Default::default()
        };
        recorder.record(node, type_, reason, message);
    }
}

#[cfg(test)]
mod tests;
