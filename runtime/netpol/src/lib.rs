//! NetworkPolicy (`networking.k8s.io/v1`) on one node: the policy engine a CNI plugin
//! brings in Kubernetes (kube-router's, Calico's Felix).
//!
//! [`NetworkPolicies`] follows NetworkPolicies, Pods and Namespaces through shared informers
//! and keeps one [`PolicyModel`] ([`model`]) in step with them. Two enforcers answer from
//! it: the nftables table for this node's OCI pods ([`nft`]), and the in-process checks the
//! Wasm runtime makes on a guest's every new connection ([`NetworkPolicies::allows_egress`]
//! at the source, [`NetworkPolicies::allows_ingress`] at the destination) — so the kernel and
//! the Wasm runtime decide alike.
//!
//! Changes are debounced (5 ms) and synced by one task; each sync rebuilds the model (pure,
//! milliseconds) and sends nftables only the chains of pods whose rules changed, in one
//! transaction.

pub mod model;
pub mod nft;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use skiff_client_tools::informers::{Change, Informer, SharedInformers};
use skiff_helpers::Labels;
pub use skiff_runtime_core::services::Protocol;

pub use model::{AddrSet, PodInfo, PolicyModel};
use nft::{Applied, NftEnforcer, NftError, RenderOptions};

/// How changes are gathered before a sync.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// Longest wait between retries of a failed sync.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Where policies are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// nftables for the node's pods, plus the in-process checks.
    Nftables,
    /// Only the in-process checks (for Wasm guests): nothing on the host is touched.
    InProcess,
}

#[derive(Debug, Clone)]
pub struct NetpolOptions {
    /// The nftables table (`inet` family); distinct per node when several share a host.
    pub table: String,
    pub node_name: String,
    pub enforcement: Enforcement,
    /// The range of this node's OCI pods (the CNI half of its pod CIDR): only pods in it get
    /// nftables chains. `None`: every pod of the node does (Wasm pods are then checked twice,
    /// in-process and by the kernel, with the same answer).
    pub oci_pod_cidr: Option<String>,
    /// This node's addresses: connections from them are the node's (kubelet probes) and
    /// always allowed in. Loopback addresses that are no pod's count too.
    pub node_addresses: Vec<IpAddr>,
}

impl NetpolOptions {
    pub fn new(node_name: &str) -> NetpolOptions {
        NetpolOptions {
            table: "skiff-netpol".into(),
            node_name: node_name.into(),
            enforcement: Enforcement::Nftables,
            oci_pod_cidr: None,
            node_addresses: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetpolError {
    /// A bad option: permanent.
    #[error("invalid OCI pod CIDR {value:?}: expected a CIDR such as 10.244.0.0/25")]
    InvalidCidr { value: String },
    /// Retryable when the [`NftError`] is; the next sync recreates the table.
    #[error("syncing the nftables rules: {0}")]
    Nftables(#[source] NftError),
}

/// Whether nftables enforcement is in force, for a Node condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetpolHealth {
    Ok,
    Unavailable(String),
}

#[derive(Clone)]
struct Metrics {
    sync_duration: Histogram,
    policies: Gauge,
    last_sync: Gauge<f64, AtomicU64>,
    sync_failures: Counter,
    denied: Family<[(&'static str, &'static str); 1], Counter>,
    denied_ingress: Counter,
    denied_egress: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let denied = Family::<[(&'static str, &'static str); 1], Counter>::default();
        // Created up front: both series exist from the start, and a check never allocates.
        let denied_ingress = denied.get_or_create(&[("direction", "ingress")]).clone();
        let denied_egress = denied.get_or_create(&[("direction", "egress")]).clone();
        Metrics {
            sync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            policies: Gauge::default(),
            last_sync: Gauge::default(),
            sync_failures: Counter::default(),
            denied,
            denied_ingress,
            denied_egress,
        }
    }
}

type Key = (String, String);

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone().unwrap_or_else(|| "default".into()), meta.name.clone()?))
}

/// What the informers told.
#[derive(Default)]
struct Inputs {
    policies: HashMap<Key, Arc<NetworkPolicy>>,
    pods: HashMap<Key, Arc<PodInfo>>,
    namespaces: HashMap<String, Labels>,
    dirty: bool,
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// Whether the model was rebuilt (something changed since the last sync).
    pub rebuilt: bool,
    /// The nft transaction sent (`None` in-process only, or when nothing changed).
    pub transaction: Option<Applied>,
    pub duration: Duration,
}

/// The node's NetworkPolicy engine. Thread-safe: informer handlers, the sync task and the
/// Wasm runtime's checks share it; the checks only read an `Arc` snapshot of the model.
pub struct NetworkPolicies {
    opts: NetpolOptions,
    inputs: Mutex<Inputs>,
    /// One sync at a time; `None` when in-process only.
    enforcer: Mutex<Option<NftEnforcer>>,
    model: RwLock<Arc<PolicyModel>>,
    /// `None` while nftables enforcement works (or is not asked for).
    health: Mutex<Option<String>>,
    synced: tokio::sync::watch::Sender<bool>,
    metrics: Metrics,
    wake: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these leaves data that is still consistent enough to go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NetworkPolicies {
    pub fn new(opts: NetpolOptions) -> Result<NetworkPolicies, NetpolError> {
        let enforced = match &opts.oci_pod_cidr {
            None => None,
            Some(c) => Some(
                AddrSet::parse_cidr(c)
                    .ok_or_else(|| NetpolError::InvalidCidr { value: c.clone() })?,
            ),
        };
        let (enforcer, health) = match opts.enforcement {
            Enforcement::InProcess => (None, None),
            Enforcement::Nftables => (
                Some(NftEnforcer::new(RenderOptions {
                    table: opts.table.clone(),
                    node_name: opts.node_name.clone(),
                    enforced,
                })),
                Some("waiting for the first sync".to_string()),
            ),
        };
        Ok(NetworkPolicies {
            opts,
            inputs: Mutex::new(Inputs { dirty: true, ..Default::default() }),
            enforcer: Mutex::new(enforcer),
            model: RwLock::new(Arc::new(PolicyModel::default())),
            health: Mutex::new(health),
            synced: tokio::sync::watch::Sender::new(false),
            metrics: Metrics::new(),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn options(&self) -> &NetpolOptions {
        &self.opts
    }

    /// Register the engine's metrics: `skiff_netpol_sync_duration_seconds`,
    /// `skiff_netpol_last_sync_timestamp_seconds`, `skiff_netpol_sync_failures_total`,
    /// `skiff_netpol_policies`, `skiff_netpol_denied_connections_total{direction}`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = self.metrics.clone();
        registry.register(
            "skiff_netpol_sync_duration_seconds",
            "Time to rebuild the policy model and apply it",
            m.sync_duration,
        );
        registry.register(
            "skiff_netpol_last_sync_timestamp_seconds",
            "When policies were last applied successfully",
            m.last_sync,
        );
        // Counters get their `_total` suffix when encoded.
        registry.register("skiff_netpol_sync_failures", "Failed syncs", m.sync_failures);
        registry.register("skiff_netpol_policies", "NetworkPolicies in the model", m.policies);
        registry.register(
            "skiff_netpol_denied_connections",
            "Connections of Wasm guests refused by NetworkPolicy, by direction",
            m.denied,
        );
    }

    /// Whether nftables enforcement is in force (always `Ok` in-process only).
    pub fn health(&self) -> NetpolHealth {
        match lock(&self.health).as_ref() {
            None => NetpolHealth::Ok,
            Some(reason) => NetpolHealth::Unavailable(reason.clone()),
        }
    }

    /// The model as of the last sync.
    pub fn model(&self) -> Arc<PolicyModel> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait until the model reflects the caches once (before, every check allows: the model
    /// is empty). For the node, before it starts pods.
    pub async fn wait_until_synced(&self) {
        let mut rx = self.synced.subscribe();
        // An error means the engine is gone; nothing more will come.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether NetworkPolicy lets the pod at `from` open a connection to `to` (an endpoint,
    /// after Service resolution): the egress half, checked at the source. Cheap; never
    /// blocks on a sync.
    pub fn allows_egress(&self, from: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        let allowed = self.model().allows_egress(from, to, protocol);
        if !allowed {
            self.metrics.denied_egress.inc();
            tracing::debug!(%from, %to, ?protocol, "egress denied by NetworkPolicy");
        }
        allowed
    }

    /// Whether NetworkPolicy lets `peer` open a connection to the pod at `to`: the ingress
    /// half, checked at the destination. Cheap; never blocks on a sync.
    pub fn allows_ingress(&self, peer: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        let allowed = self.model().allows_ingress(peer, to, protocol);
        if !allowed {
            self.metrics.denied_ingress.inc();
            tracing::debug!(%peer, %to, ?protocol, "ingress denied by NetworkPolicy");
        }
        allowed
    }

    // Changes (what the informers tell; callable directly by tests).

    pub fn update_policy(&self, np: &NetworkPolicy) {
        let Some(key) = key_of(&np.metadata) else { return };
        let mut inp = lock(&self.inputs);
        if inp.policies.get(&key).is_some_and(|old| old.spec == np.spec) {
            return;
        }
        inp.policies.insert(key, Arc::new(np.clone()));
        inp.dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    pub fn delete_policy(&self, np: &NetworkPolicy) {
        let Some(key) = key_of(&np.metadata) else { return };
        if lock(&self.inputs).policies.remove(&key).is_some() {
            self.mark_dirty();
        }
    }

    pub fn update_pod(&self, pod: &Pod) {
        let Some(key) = key_of(&pod.metadata) else { return };
        let info = PodInfo::from_pod(pod);
        let mut inp = lock(&self.inputs);
        // Most pod updates (status conditions, annotations) change nothing policies see.
        let changed = match info {
            Some(info) if inp.pods.get(&key).is_some_and(|old| **old == info) => false,
            Some(info) => {
                inp.pods.insert(key, Arc::new(info));
                true
            }
            None => inp.pods.remove(&key).is_some(),
        };
        if changed {
            inp.dirty = true;
            drop(inp);
            self.wake.notify_one();
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        let Some(key) = key_of(&pod.metadata) else { return };
        if lock(&self.inputs).pods.remove(&key).is_some() {
            self.mark_dirty();
        }
    }

    pub fn update_namespace(&self, ns: &Namespace) {
        let Some((name, labels)) = model::namespace_labels(ns) else { return };
        let mut inp = lock(&self.inputs);
        if inp.namespaces.get(&name) == Some(&labels) {
            return;
        }
        inp.namespaces.insert(name, labels);
        inp.dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    pub fn delete_namespace(&self, ns: &Namespace) {
        let Some(name) = ns.metadata.name.as_ref() else { return };
        if lock(&self.inputs).namespaces.remove(name).is_some() {
            self.mark_dirty();
        }
    }

    fn mark_dirty(&self) {
        lock(&self.inputs).dirty = true;
        self.wake.notify_one();
    }

    /// After a relist the cache is the truth (deletions during a watch gap are not told).
    fn resync_policies(&self, all: Vec<Arc<NetworkPolicy>>) {
        let mut inp = lock(&self.inputs);
        inp.policies = all.into_iter().filter_map(|np| Some((key_of(&np.metadata)?, np))).collect();
        inp.dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    fn resync_pods(&self, all: Vec<Arc<Pod>>) {
        let mut inp = lock(&self.inputs);
        inp.pods = all
            .iter()
            .filter_map(|p| Some((key_of(&p.metadata)?, Arc::new(PodInfo::from_pod(p)?))))
            .collect();
        inp.dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    fn resync_namespaces(&self, all: Vec<Arc<Namespace>>) {
        let mut inp = lock(&self.inputs);
        inp.namespaces = all.iter().filter_map(|ns| model::namespace_labels(ns)).collect();
        inp.dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    /// Bring the model and the nftables table in step with the changes told so far.
    /// Blocking (runs `nft`); one at a time.
    pub fn sync(&self) -> Result<SyncReport, NetpolError> {
        let mut enforcer = lock(&self.enforcer);
        let start = Instant::now();
        let inputs = {
            let mut inp = lock(&self.inputs);
            std::mem::take(&mut inp.dirty).then(|| {
                let policies: Vec<Arc<NetworkPolicy>> = inp.policies.values().cloned().collect();
                let pods: Vec<Arc<PodInfo>> = inp.pods.values().cloned().collect();
                (policies, pods, inp.namespaces.clone())
            })
        };
        let rebuilt = inputs.is_some();
        if let Some((policies, pods, namespaces)) = inputs {
            let model = PolicyModel::build(
                policies.iter().map(|p| p.as_ref()),
                &pods,
                &namespaces,
                self.opts.node_addresses.iter().copied(),
            );
            self.metrics.policies.set(i64::try_from(model.policy_count()).unwrap_or(i64::MAX));
            *self.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
        }
        let mut result = Ok(None);
        if let Some(nft) = enforcer.as_mut() {
            match nft.sync(&self.model()) {
                Ok(applied) => {
                    *lock(&self.health) = None;
                    result = Ok(Some(applied));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "nftables sync failed; the table is recreated on retry");
                    *lock(&self.health) = Some(e.to_string());
                    self.metrics.sync_failures.inc();
                    result = Err(NetpolError::Nftables(e));
                }
            }
        }
        let duration = start.elapsed();
        self.metrics.sync_duration.observe(duration.as_secs_f64());
        // The in-process checks follow the model even when nftables failed.
        self.synced.send_replace(true);
        let transaction = result?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.metrics.last_sync.set(now.as_secs_f64());
        Ok(SyncReport { rebuilt, transaction, duration })
    }

    /// Follow NetworkPolicies, Pods and Namespaces and keep the model and the table in step,
    /// until the task is dropped. The first sync runs as soon as the caches are filled.
    pub async fn run(self: Arc<Self>, client: kube::Client) {
        let informers = SharedInformers::new(client);
        let policies: Informer<NetworkPolicy> = informers.get();
        let pods: Informer<Pod> = informers.get();
        let namespaces: Informer<Namespace> = informers.get();
        let (p, store) = (self.clone(), policies.store());
        policies.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_policy(new),
            Change::Delete { gone, .. } => p.delete_policy(gone),
            Change::Resynced => p.resync_policies(store.state()),
        });
        let (p, store) = (self.clone(), pods.store());
        pods.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_pod(new),
            Change::Delete { gone, .. } => p.delete_pod(gone),
            Change::Resynced => p.resync_pods(store.state()),
        });
        let (p, store) = (self.clone(), namespaces.store());
        namespaces.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_namespace(new),
            Change::Delete { gone, .. } => p.delete_namespace(gone),
            Change::Resynced => p.resync_namespaces(store.state()),
        });
        // No partial model after a restart (a missing policy would open pods up): wait for
        // every cache.
        tokio::join!(
            policies.wait_until_ready(),
            pods.wait_until_ready(),
            namespaces.wait_until_ready()
        );
        let mut retry = Duration::from_secs(1);
        loop {
            let p = self.clone();
            match tokio::task::spawn_blocking(move || p.sync()).await {
                Ok(Ok(_)) => {
                    retry = Duration::from_secs(1);
                    self.wake.notified().await;
                    // Gather a burst of changes into one transaction.
                    tokio::time::sleep(DEBOUNCE).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, retry_in = ?retry, "netpol sync failed");
                    // A change arriving meanwhile is synced at the retry.
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
                Err(e) => {
                    tracing::error!(error = %e, "netpol sync panicked");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
