//! The node daemon (kubelet): registers the Node, renews its Lease, runs a worker per pod bound
//! here, and serves the pods' logs. It talks to the control plane only through the API.

pub mod credentials;
pub mod dns;
pub mod env;
pub mod eviction;
pub mod hooks;
pub mod images;
pub mod logs;
pub mod network;
pub mod podmetrics;
pub mod probes;
pub mod probing;
pub mod resources;
pub mod state;
pub mod stats;
pub mod streams;
#[cfg(test)]
mod testing;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use skiff_runtime_core::ContainerRuntime;
use tokio::sync::{Notify, watch};

use crate::network::PodNetwork;
use crate::state::NodeState;
use crate::worker::{Leftovers, PodWorker, Runtimes, WorkerContext, WorkerInboxes};

pub const KUBELET_VERSION: &str = concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"));
/// Kubernetes' default node Lease duration; the kubelet renews every quarter of it.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(40);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// How this node presents itself.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// The node's address (InternalIP; also pods' IP until pod networking lands).
    pub ip: String,
    /// Root of per-pod log directories.
    pub pods_dir: PathBuf,
    /// `status.capacity.pods`.
    pub max_pods: u32,
    /// Extra labels, e.g. `node-role.kubernetes.io/control-plane`.
    pub labels: BTreeMap<String, String>,
    /// The node Lease's duration (`nodeLeaseDurationSeconds`); renewed every quarter of it.
    pub lease_duration: Duration,
    /// Port of this node's kubelet API (`daemonEndpoints.kubeletEndpoint.Port`); 0 when it
    /// serves none (an embedded node is reached in-process).
    pub kubelet_port: u16,
    /// The cluster DNS pods are pointed at (`dnsPolicy: ClusterFirst`).
    pub cluster_dns: dns::ClusterDnsSettings,
    /// Reserved resources and eviction thresholds (`--kube-reserved`, `--eviction-hard`, …).
    pub resources: resources::ResourceConfig,
    /// Pull one image at a time (`--serialize-image-pulls`, the kubelet's default).
    pub serialize_image_pulls: bool,
    /// When unused images are removed (`--image-gc-high-threshold`, …).
    pub image_gc: images::GcPolicy,
}

pub struct Kubelet {
    config: NodeConfig,
    client: kube::Client,
    runtimes: Runtimes,
    state: Arc<NodeState>,
    metrics: Arc<stats::KubeletMetrics>,
    /// Conditions other parts of the node daemon report (the proxy's), by type.
    extra_conditions: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
    /// The status of each of those last posted.
    posted_conditions: std::sync::Mutex<BTreeMap<String, String>>,
    /// Pressure conditions and pending evictions, shared with the pod workers.
    eviction: Arc<eviction::EvictionShared>,
    /// The pods bound here as the watch last showed them, by uid (for the eviction manager).
    pods: Arc<std::sync::Mutex<HashMap<String, Arc<Pod>>>>,
}

impl Kubelet {
    /// A node running pods on `runtimes` (at least one; each serves its RuntimeClass handler).
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        runtimes: Vec<Arc<dyn ContainerRuntime>>,
    ) -> Arc<Self> {
        let runtimes = Runtimes {
            by_handler: runtimes.into_iter().map(|r| (r.handler().to_string(), r)).collect(),
        };
        let metrics = Arc::new(stats::KubeletMetrics::new(&config.name));
        Arc::new(Kubelet {
            config,
            client,
            runtimes,
            state: Arc::new(NodeState::default()),
            metrics,
            extra_conditions: std::sync::Mutex::default(),
            posted_conditions: std::sync::Mutex::default(),
            eviction: Arc::default(),
            pods: Arc::default(),
        })
    }

    /// The node's capacity and allocatable (capacity − kube-reserved − system-reserved − the
    /// hard eviction thresholds), read from the machine now.
    pub fn resources(&self) -> (resources::NodeAmounts, resources::NodeAmounts) {
        let c = &self.config;
        let dir = c.pods_dir.ancestors().find(|p| p.exists()).unwrap_or(std::path::Path::new("/"));
        let capacity = resources::node_capacity(dir, c.max_pods);
        let r = &c.resources;
        let allocatable = resources::allocatable(
            capacity,
            &r.kube_reserved,
            &r.system_reserved,
            &r.eviction_hard,
        );
        (capacity, allocatable)
    }

    /// The pods bound here, as last seen.
    fn pods_snapshot(&self) -> Vec<Arc<Pod>> {
        self.pods.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    fn forget_pod(&self, uid: &str) {
        if let Ok(mut m) = self.pods.lock() {
            m.remove(uid);
        }
    }

    /// The node's `healthz`, `stats/summary`, `metrics/resource` and `metrics` endpoints, which
    /// the api server serves as `nodes/<name>/proxy/...`.
    pub fn endpoints(&self) -> Arc<stats::NodeStats> {
        let state = self.state.clone();
        let metrics = self.metrics.clone();
        let running = move || {
            let list = state.running_containers();
            let pods: std::collections::HashSet<&str> =
                list.iter().map(|c| c.pod_uid.as_str()).collect();
            metrics.set_running_pods(pods.len() as i64);
            metrics.set_running_containers("running", list.len() as i64);
            list
        };
        let stats =
            stats::NodeStats::new(&self.config.name, Arc::new(running), self.metrics.clone());
        stats.set_fs_dir(self.config.pods_dir.clone());
        let pods = self.pods.clone();
        let snapshot = move || -> Vec<Arc<Pod>> {
            pods.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
        };
        let recorder = skiff_client_tools::Recorder::on_host(
            self.client.clone(),
            "kubelet",
            &self.config.name,
        );
        stats.set_pod_scraper(podmetrics::PodScraper::new(Arc::new(snapshot), Some(recorder)));
        stats
    }

    /// Serve the metrics `register` adds (the proxy's, the cluster DNS's) on the node's
    /// `/metrics` with the kubelet's own.
    pub fn add_metrics(&self, register: impl FnOnce(&mut prometheus_client::registry::Registry)) {
        self.metrics.add(register);
    }

    /// The exec/attach/port-forward sessions the api server opens for pods on this node.
    pub fn pod_streams(&self) -> Arc<streams::NodeStreams> {
        Arc::new(streams::NodeStreams { state: self.state.clone() })
    }

    /// The `pods/log` reader the api server calls for pods on this node.
    pub fn log_source(&self) -> Arc<logs::NodeLogs> {
        Arc::new(logs::NodeLogs {
            pods_dir: self.config.pods_dir.clone(),
            state: self.state.clone(),
        })
    }

    fn node_object(&self) -> serde_json::Value {
        let c = &self.config;
        let mut labels: BTreeMap<String, String> = BTreeMap::from([
            ("kubernetes.io/hostname".into(), c.name.clone()),
            ("kubernetes.io/os".into(), "linux".into()),
            (
                "kubernetes.io/arch".into(),
                std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            ),
            ("beta.kubernetes.io/os".into(), "linux".into()),
        ]);
        labels.extend(c.labels.clone());
        let (capacity, allocatable) = self.resources();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let cond = |ty: &str, status: &str, reason: &str, msg: &str| json!({"type": ty, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "Linux".into());
        let machine_id =
            std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().to_string();
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut conditions = self.eviction.condition_json(&now);
        conditions.push(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"));
        if let Ok(extra) = self.extra_conditions.lock() {
            conditions.extend(extra.values().cloned());
        }
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": c.name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": capacity.to_json(),
                "allocatable": allocatable.to_json(),
                "conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": c.ip}, {"type": "Hostname", "address": c.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": c.kubelet_port}},
                "nodeInfo": {
                    "machineID": machine_id,
                    "systemUUID": machine_id,
                    "bootID": boot_id,
                    "kernelVersion": kernel,
                    "osImage": os_image,
                    "containerRuntimeVersion": format!("{}://skiff-{}", self.runtimes.all().map(|(h, _)| h.as_str()).collect::<Vec<_>>().join("+"), env!("CARGO_PKG_VERSION")),
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                },
                "runtimeHandlers": self.runtimes.all().map(|(h, _)| json!({"name": h, "features": {"recursiveReadOnlyMounts": false, "userNamespaces": false}})).collect::<Vec<_>>(),
            }
        })
    }

    /// Report a condition of another part of the node daemon (e.g. `ServiceProxyReady`) on the
    /// Node, with an event when it turns false. Kept and re-posted with the node's status;
    /// posted again only when its status changes (or the last post failed).
    pub async fn set_condition(&self, ty: &str, ok: bool, reason: &str, message: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let status = if ok { "True" } else { "False" };
        let condition = json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now});
        let changed = match self.extra_conditions.lock() {
            Ok(mut m) => {
                m.insert(ty.to_string(), condition.clone());
                let posted = self.posted_conditions.lock().ok().and_then(|p| p.get(ty).cloned());
                posted.as_deref() != Some(status)
            }
            Err(_) => return,
        };
        if !changed {
            return;
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": [condition]}});
        if let Err(e) = nodes
            .patch_status(&self.config.name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            // Not posted (e.g. the Node is not registered yet): the next report tries again.
            tracing::debug!(node = %self.config.name, condition = ty, error = %e, "posting a node condition failed");
            return;
        }
        if let Ok(mut p) = self.posted_conditions.lock() {
            p.insert(ty.to_string(), status.to_string());
        }
        if !ok {
            let recorder = skiff_client_tools::Recorder::on_host(
                self.client.clone(),
                "kubelet",
                &self.config.name,
            );
            let node = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.config.name.clone()),
                // The kubelet's node events name the node as its uid, as Kubernetes' do.
                uid: Some(self.config.name.clone()),
                ..Default::default()
            };
            recorder.record(
                node,
                skiff_client_tools::events::EventType::Warning,
                reason,
                message.to_string(),
            );
        }
    }

    /// Create the Node, or refresh its labels and status if it exists.
    async fn register(&self) -> Result<(), NodeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let desired = self.node_object();
        let err = |source| NodeError::Register { node: self.config.name.clone(), source };
        let node: Node =
            serde_json::from_value(desired.clone()).map_err(|e| err(kube::Error::SerdeError(e)))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let meta = json!({"metadata": {"labels": desired["metadata"]["labels"]}});
                nodes
                    .patch(&self.config.name, &PatchParams::default(), &Patch::Merge(&meta))
                    .await
                    .map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
        let status = json!({"status": desired["status"]});
        nodes
            .patch_status(&self.config.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn renew_lease_forever(self: Arc<Self>) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let name = self.config.name.clone();
        let duration = self.config.lease_duration.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(duration / 4);
        loop {
            tick.tick().await;
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let spec = LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(40)),
                renew_time: Some(now),
                ..Default::default()
            };
            let result = match leases.get_opt(&name).await {
                Ok(Some(mut lease)) => {
                    lease.spec = Some(spec);
                    leases.replace(&name, &PostParams::default(), &lease).await.map(|_| ())
                }
                Ok(None) => {
                    let lease = Lease {
                        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                        spec: Some(spec),
                    };
                    leases.create(&PostParams::default(), &lease).await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) => tracing::warn!(node = %name, error = %e, "lease renewal failed"),
                Ok(()) => self.repost_ready_if_lost().await,
            }
        }
    }

    /// The node lifecycle controller marks a node whose Lease went unrenewed `Unknown`; once
    /// this kubelet reaches the control plane again it says it is Ready again.
    async fn repost_ready_if_lost(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Ok(node) = nodes.get(&self.config.name).await else { return };
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            tracing::info!(node = %self.config.name, "node was marked not ready: posting Ready");
            let desired = self.node_object();
            let status = json!({"status": {"conditions": desired["status"]["conditions"]}});
            if let Err(e) = nodes
                .patch_status(&self.config.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::warn!(node = %self.config.name, error = %e, "posting Ready failed");
            }
        }
    }

    /// The node's pod CIDR as the control plane assigned it (waits a little for it).
    pub async fn pod_cidr(&self) -> Option<String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for _ in 0..50 {
            if let Ok(node) = nodes.get(&self.config.name).await
                && let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty())
            {
                return Some(cidr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// What the runtimes still hold from an earlier life of this node.
    async fn leftovers(&self) -> Leftovers {
        let mut l = Leftovers::default();
        for (handler, rt) in self.runtimes.all() {
            for sb in rt.list_sandboxes().await.unwrap_or_default() {
                l.sandboxes.push((handler.clone(), sb));
            }
            for c in rt.list_containers().await.unwrap_or_default() {
                l.containers.push((handler.clone(), c));
            }
        }
        l
    }

    /// Refresh `status.images` now and then.
    async fn report_images_forever(self: Arc<Self>) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut last = serde_json::Value::Null;
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let mut images = Vec::new();
            for (_, rt) in self.runtimes.all() {
                for img in rt.list_images().await.unwrap_or_default() {
                    if img.names.is_empty() {
                        continue;
                    }
                    images.push(json!({"names": img.names, "sizeBytes": img.size_bytes}));
                }
            }
            let images = serde_json::Value::Array(images);
            if images == last {
                continue;
            }
            let patch = json!({"status": {"images": images}});
            if nodes
                .patch_status(&self.config.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                last = images;
            }
        }
    }

    /// A cache of every Service, fed by a watch for as long as the process runs (the
    /// kubelet's service informer, for containers' Service variables).
    fn watch_services(
        &self,
    ) -> kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service> {
        use futures::StreamExt;
        let (store, writer) = kube::runtime::reflector::store();
        let api: Api<k8s_openapi::api::core::v1::Service> = Api::all(self.client.clone());
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        tokio::spawn(kube::runtime::reflector(writer, stream).for_each(|_| async {}));
        store
    }

    /// Run the node until the pod watch ends.
    pub async fn run(self: Arc<Self>) -> Result<(), NodeError> {
        self.register().await?;
        tokio::spawn(self.clone().renew_lease_forever());
        tokio::spawn(self.clone().report_images_forever());
        tokio::spawn(images::run_gc(
            self.runtimes.all().map(|(_, rt)| rt.clone()).collect(),
            self.config.image_gc,
        ));

        let pod_cidr = self.pod_cidr().await;
        let network = Arc::new(PodNetwork::setup(pod_cidr.as_deref()));
        if let Some(cidr) = &network.cri_cidr {
            for (handler, rt) in self.runtimes.all() {
                if let Err(e) = rt.update_pod_cidr(cidr).await {
                    tracing::warn!(%handler, error = %e, "telling the runtime its pod CIDR failed");
                }
            }
        }
        tracing::info!(node = %self.config.name, pod_cidr = ?pod_cidr, wasm_pods = %network.wasm_range(), "pod network ready");
        let leftovers = self.leftovers().await;
        let (_, alloc) = self.resources();
        #[allow(clippy::cast_precision_loss)]
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), alloc.cpu_milli as f64 / 1000.0),
            ("memory".to_string(), alloc.memory as f64),
            ("ephemeral-storage".to_string(), alloc.ephemeral_storage as f64),
        ]);
        let ctx = Arc::new(WorkerContext {
            client: self.client.clone(),
            runtimes: self.runtimes.clone(),
            state: self.state.clone(),
            pods_dir: self.config.pods_dir.clone(),
            node_name: self.config.name.clone(),
            node_ip: self.config.ip.clone(),
            network,
            cluster_dns: self.config.cluster_dns.clone(),
            allocatable,
            eviction: self.eviction.clone(),
            leftovers: std::sync::Mutex::new(leftovers),
            runtime_classes: std::sync::Mutex::default(),
            runtime_class_read: tokio::sync::Mutex::default(),
            metrics: self.metrics.clone(),
            recorder: skiff_client_tools::Recorder::on_host(
                self.client.clone(),
                "kubelet",
                &self.config.name,
            ),
            images: images::ImagePulls::new(self.config.serialize_image_pulls),
            services: self.watch_services(),
        });
        let inboxes: WorkerInboxes = Arc::default();
        tokio::spawn(eviction::run(self.clone(), ctx.clone(), inboxes.clone()));
        let (merged_tx, mut runtime_events) =
            tokio::sync::broadcast::channel::<skiff_runtime_core::ContainerEvent>(4096);
        for (_, rt) in self.runtimes.all() {
            let mut rx = rt.subscribe();
            let tx = merged_tx.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            let _ = tx.send(ev);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.send(skiff_runtime_core::ContainerEvent {
                                pod_uid: String::new(),
                                container_id: String::new(),
                            });
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        drop(merged_tx);
        let routes = inboxes.clone();
        tokio::spawn(async move {
            loop {
                match runtime_events.recv().await {
                    Ok(ev) => {
                        let tx = routes.lock().ok().and_then(|m| m.get(&ev.pod_uid).cloned());
                        if let Some(tx) = tx {
                            tx.notify_one();
                        }
                    }
                    // Missed events: workers still refresh on their own timers and pod updates.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let all: Vec<_> = routes
                            .lock()
                            .map(|m| m.values().cloned().collect())
                            .unwrap_or_default();
                        for tx in all {
                            tx.notify_one();
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });

        let pods: Api<Pod> = Api::all(self.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.config.name));
        let mut stream = Box::pin(watcher::watcher(pods, config).default_backoff());
        let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
        let mut seen_in_init: Vec<String> = Vec::new();
        loop {
            let ev = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    continue;
                }
            };
            match ev {
                Event::Init => seen_in_init.clear(),
                Event::InitApply(pod) => {
                    seen_in_init.push(pod.metadata.uid.clone().unwrap_or_default());
                    self.dispatch(&ctx, &inboxes, &mut workers, pod);
                }
                Event::InitDone => {
                    // Pods that vanished while the watch was down.
                    let gone: Vec<String> =
                        workers.keys().filter(|u| !seen_in_init.contains(u)).cloned().collect();
                    for uid in gone {
                        self.forget_pod(&uid);
                        if let Some(tx) = workers.remove(&uid) {
                            let _ = tx.send(None);
                        }
                    }
                    self.remove_orphans(&ctx).await;
                }
                Event::Apply(pod) => self.dispatch(&ctx, &inboxes, &mut workers, pod),
                Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.forget_pod(&uid);
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(None);
                    }
                }
            }
        }
    }

    /// Stop and remove what the runtimes run for pods this node no longer has.
    async fn remove_orphans(&self, ctx: &Arc<WorkerContext>) {
        let left = match ctx.leftovers.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => return,
        };
        for (handler, c) in left.containers {
            if let Some(rt) = self.runtimes.get(&handler) {
                tracing::info!(container = %c.id, %handler, "removing a container of a pod that is gone");
                let _ = rt.stop_container(&c.id, Duration::from_secs(2)).await;
                let _ = rt.remove_container(&c.id).await;
            }
        }
        for (handler, sb) in left.sandboxes {
            if let Some(rt) = self.runtimes.get(&handler) {
                let _ = rt.stop_pod_sandbox(&sb.id).await;
                let _ = rt.remove_pod_sandbox(&sb.id).await;
            }
        }
    }

    fn dispatch(
        &self,
        ctx: &Arc<WorkerContext>,
        inboxes: &WorkerInboxes,
        workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
        mut pod: Pod,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // Kept by the pod's worker until the next update: without the field-manager records
        // (often the largest part of a pod), which the kubelet never reads.
        pod.metadata.managed_fields = None;
        let pod = Arc::new(pod);
        if let Ok(mut m) = self.pods.lock() {
            m.insert(uid.clone(), pod.clone());
        }
        if let Some(tx) = workers.get(&uid) {
            let _ = tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let wake = Arc::new(Notify::new());
        if let Ok(mut m) = inboxes.lock() {
            m.insert(uid.clone(), wake.clone());
        }
        workers.insert(uid.clone(), tx);
        let worker = PodWorker::new(ctx.clone(), &pod);
        let inboxes = inboxes.clone();
        tokio::spawn(async move {
            worker.run(rx, wake).await;
            if let Ok(mut m) = inboxes.lock() {
                m.remove(&uid);
            }
        });
    }
}
