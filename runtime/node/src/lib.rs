//! The node daemon (kubelet): registers the Node, renews its Lease, runs a worker per pod bound
//! here, and serves the pods' logs. It talks to the control plane only through the API.

pub mod logs;
pub mod quantity;
pub mod state;
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
use tokio::sync::{mpsc, watch};

use crate::state::NodeState;
use crate::worker::{PodWorker, WorkerContext, WorkerInboxes};

pub const KUBELET_VERSION: &str = concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"));
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);

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
}

pub struct Kubelet {
    config: NodeConfig,
    client: kube::Client,
    runtime: Arc<dyn ContainerRuntime>,
    state: Arc<NodeState>,
}

impl Kubelet {
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Arc<Self> {
        Arc::new(Kubelet { config, client, runtime, state: Arc::new(NodeState::default()) })
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
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory = memory_bytes();
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
        let resources = json!({"cpu": cpus.to_string(), "memory": format!("{}Ki", memory / 1024), "pods": c.max_pods.to_string(), "ephemeral-storage": "0"});
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": c.name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [{"type": "InternalIP", "address": c.ip}, {"type": "Hostname", "address": c.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": machine_id,
                    "systemUUID": machine_id,
                    "bootID": boot_id,
                    "kernelVersion": kernel,
                    "osImage": os_image,
                    "containerRuntimeVersion": format!("{}://skiff-{}", self.runtime.handler(), env!("CARGO_PKG_VERSION")),
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                },
                "runtimeHandlers": [{"name": self.runtime.handler(), "features": {"recursiveReadOnlyMounts": false, "userNamespaces": false}}],
            }
        })
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
        let mut tick = tokio::time::interval(LEASE_RENEW);
        loop {
            tick.tick().await;
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let spec = LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
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
            if let Err(e) = result {
                tracing::warn!(node = %name, error = %e, "lease renewal failed");
            }
        }
    }

    /// Run the node until the pod watch ends.
    pub async fn run(self: Arc<Self>) -> Result<(), NodeError> {
        self.register().await?;
        tokio::spawn(self.clone().renew_lease_forever());

        let ctx = Arc::new(WorkerContext {
            client: self.client.clone(),
            runtime: self.runtime.clone(),
            state: self.state.clone(),
            pods_dir: self.config.pods_dir.clone(),
            node_name: self.config.name.clone(),
            node_ip: self.config.ip.clone(),
        });
        let inboxes: WorkerInboxes = Arc::default();
        let mut runtime_events = self.runtime.subscribe();
        let routes = inboxes.clone();
        tokio::spawn(async move {
            loop {
                match runtime_events.recv().await {
                    Ok(ev) => {
                        let tx = routes.lock().ok().and_then(|m| m.get(&ev.pod_uid).cloned());
                        if let Some(tx) = tx {
                            let _ = tx.try_send(ev);
                        }
                    }
                    // Missed events: workers still refresh on their own timers and pod updates.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let all: Vec<_> = routes
                            .lock()
                            .map(|m| m.values().cloned().collect())
                            .unwrap_or_default();
                        for tx in all {
                            let _ = tx.try_send(skiff_runtime_core::ContainerEvent {
                                pod_uid: String::new(),
                                container_id: String::new(),
                            });
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
                        if let Some(tx) = workers.remove(&uid) {
                            let _ = tx.send(None);
                        }
                    }
                }
                Event::Apply(pod) => self.dispatch(&ctx, &inboxes, &mut workers, pod),
                Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(None);
                    }
                }
            }
        }
    }

    fn dispatch(
        &self,
        ctx: &Arc<WorkerContext>,
        inboxes: &WorkerInboxes,
        workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
        pod: Pod,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod = Arc::new(pod);
        if let Some(tx) = workers.get(&uid) {
            let _ = tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let (ev_tx, ev_rx) = mpsc::channel(16);
        if let Ok(mut m) = inboxes.lock() {
            m.insert(uid.clone(), ev_tx);
        }
        workers.insert(uid.clone(), tx);
        let worker = PodWorker::new(ctx.clone(), &pod);
        let inboxes = inboxes.clone();
        tokio::spawn(async move {
            worker.run(rx, ev_rx).await;
            if let Ok(mut m) = inboxes.lock() {
                m.remove(&uid);
            }
        });
    }
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
