//! The node proxy (kube-proxy's role, its nftables mode) and the node's cluster routes.
//!
//! [`Proxy`] follows Services, EndpointSlices and Nodes through shared informers and keeps
//! three things in step with them: the nftables table that sends OCI pods' and the host's
//! connections to a Service's endpoints ([`nft`]), the routes to the Service and cluster
//! ranges and to other nodes' pods ([`routes`]), and the in-process choice for Wasm guests
//! ([`Proxy::route`], the `route` half of `ServiceDirectory`) — all from one [`ServiceMap`]
//! ([`model`]), so the kernel and the Wasm runtime choose endpoints by the same rules.
//!
//! Changes are debounced (5 ms) and synced by one task; each sync sends only what changed,
//! in one nft transaction.

pub mod activator;
pub mod model;
pub mod nft;
pub mod routes;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rand::Rng;
use skiff_client_tools::informers::{Change, Informer, SharedInformers};
pub use skiff_runtime_core::services::{Protocol, ServiceRoute};

pub use model::{Endpoint, Ipv4Cidr, ServiceKey, ServiceMap, ServicePort, ServicePortName};
use nft::{Applied, NftError, NftProxier, RenderOptions};
use routes::{ClusterRoutes, RouteError, RouteOptions};

/// How changes are gathered before a sync.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// Longest wait between retries of a failed sync.
const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// nftables rules (and the cluster routes) for OCI pods and the host, plus [`Proxy::route`].
    Nftables,
    /// Only [`Proxy::route`], for Wasm guests: nothing on the host is touched.
    None,
}

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The nftables table (`ip` family); distinct per node when several share a host.
    pub table: String,
    pub node_name: String,
    pub node_ip: Option<Ipv4Addr>,
    /// The Service range (`10.96.0.0/12`), routed `local` on `lo`.
    pub service_cidr: Option<String>,
    /// The pod range of the whole cluster, routed `unreachable` under the nodes' routes.
    pub cluster_cidr: Option<String>,
    pub mode: ProxyMode,
    /// ClusterIPs the node answers itself (the cluster DNS): no rule, and
    /// [`Proxy::route`] says `Direct`.
    pub locally_served: Vec<Ipv4Addr>,
}

impl ProxyOptions {
    pub fn new(node_name: &str) -> ProxyOptions {
        ProxyOptions {
            table: "skiff-proxy".into(),
            node_name: node_name.into(),
            node_ip: None,
            service_cidr: None,
            cluster_cidr: None,
            mode: ProxyMode::Nftables,
            locally_served: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A bad option: permanent.
    #[error("invalid {what} {value:?}: expected an IPv4 CIDR such as 10.96.0.0/12")]
    InvalidCidr { what: &'static str, value: String },
    #[error("syncing the nftables rules: {0}")]
    Nftables(#[source] NftError),
    #[error("syncing the cluster routes: {0}")]
    Routes(#[source] RouteError),
}

/// Whether the proxy's rules and routes are in force, for a Node condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHealth {
    Ok,
    NftablesUnavailable(String),
    RoutesUnavailable(String),
}

/// kube-proxy's sync metrics, under its names.
#[derive(Clone)]
struct Metrics {
    sync_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    endpoint_changes: Counter,
    service_changes: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            // kube-proxy's buckets: 1 ms doubling.
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            last_sync: Gauge::default(),
            endpoint_changes: Counter::default(),
            service_changes: Counter::default(),
        }
    }
}

/// What the informers told, per Service.
#[derive(Default)]
struct Inputs {
    services: HashMap<ServiceKey, Arc<Service>>,
    /// Slices by their Service, then by slice name.
    slices: HashMap<ServiceKey, HashMap<String, Arc<EndpointSlice>>>,
    dirty: HashSet<ServiceKey>,
    nodes: HashMap<String, Arc<Node>>,
    nodes_dirty: bool,
}

struct SyncState {
    nft: Option<NftProxier>,
    routes: Option<ClusterRoutes>,
}

#[derive(Default)]
struct HealthState {
    nft: Option<String>,
    routes: Option<String>,
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The nft transaction sent (`None` in mode `none` or when nothing changed).
    pub transaction: Option<Applied>,
    /// Services whose ports were recomputed.
    pub services_recomputed: usize,
    pub duration: Duration,
}

/// The node proxy. Thread-safe: informer handlers, the sync task and the Wasm runtime's
/// `route` calls share it.
pub struct Proxy {
    opts: ProxyOptions,
    excluded: HashSet<Ipv4Addr>,
    inputs: Mutex<Inputs>,
    /// One sync at a time.
    sync_state: Mutex<SyncState>,
    map: RwLock<Arc<ServiceMap>>,
    /// ClientIP affinity of in-process connections: (port, client) → (endpoint, last use).
    affinity: Mutex<HashMap<(ServicePortName, IpAddr), (SocketAddr, Instant)>>,
    health: Mutex<HealthState>,
    metrics: Metrics,
    wake: tokio::sync::Notify,
    /// Stands in for endpoint-less Services that scale from zero, once set.
    activator: std::sync::OnceLock<Arc<activator::Activator>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these leaves data that is still consistent enough to go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_cidr(what: &'static str, v: &Option<String>) -> Result<Option<Ipv4Cidr>, ProxyError> {
    match v {
        None => Ok(None),
        Some(s) => Ipv4Cidr::parse(s)
            .map(Some)
            .ok_or_else(|| ProxyError::InvalidCidr { what, value: s.clone() }),
    }
}

impl Proxy {
    pub fn new(opts: ProxyOptions) -> Result<Proxy, ProxyError> {
        let service_cidr = parse_cidr("service CIDR", &opts.service_cidr)?;
        let cluster_cidr = parse_cidr("cluster CIDR", &opts.cluster_cidr)?;
        let excluded: HashSet<Ipv4Addr> = opts.locally_served.iter().copied().collect();
        let state = match opts.mode {
            ProxyMode::None => SyncState { nft: None, routes: None },
            ProxyMode::Nftables => SyncState {
                nft: Some(NftProxier::new(RenderOptions {
                    table: opts.table.clone(),
                    node_name: opts.node_name.clone(),
                    cluster_cidr,
                    service_cidr,
                    excluded: excluded.clone(),
                })),
                routes: Some(ClusterRoutes::new(RouteOptions {
                    node_name: opts.node_name.clone(),
                    node_ip: opts.node_ip,
                    service_cidr,
                    cluster_cidr,
                })),
            },
        };
        Ok(Proxy {
            opts,
            excluded,
            inputs: Mutex::new(Inputs { nodes_dirty: true, ..Default::default() }),
            sync_state: Mutex::new(state),
            map: RwLock::new(Arc::new(ServiceMap::default())),
            affinity: Mutex::new(HashMap::new()),
            health: Mutex::new(HealthState::default()),
            metrics: Metrics::new(),
            wake: tokio::sync::Notify::new(),
            activator: std::sync::OnceLock::new(),
        })
    }

    /// Stand in for the Services that scale from zero with `activator` (see [`activator`]).
    pub fn set_activator(self: &Arc<Self>, activator: Arc<activator::Activator>) {
        activator.attach(Arc::downgrade(self));
        let _ = self.activator.set(activator);
    }

    pub fn options(&self) -> &ProxyOptions {
        &self.opts
    }

    /// Register kube-proxy's sync metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = self.metrics.clone();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration,
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync,
        );
        // Counters get their `_total` suffix when encoded.
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules EndpointSlice changes",
            m.endpoint_changes,
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes,
        );
    }

    pub fn health(&self) -> ProxyHealth {
        let h = lock(&self.health);
        if let Some(e) = &h.nft {
            ProxyHealth::NftablesUnavailable(e.clone())
        } else if let Some(e) = &h.routes {
            ProxyHealth::RoutesUnavailable(e.clone())
        } else {
            ProxyHealth::Ok
        }
    }

    /// The Services as of the last sync.
    pub fn service_map(&self) -> Arc<ServiceMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    // Changes (what the informers tell; callable directly by tests and benchmarks).

    pub fn update_service(&self, svc: &Service) {
        if let Some(key) = ServiceKey::of_service(svc) {
            self.metrics.service_changes.inc();
            let mut inp = lock(&self.inputs);
            inp.services.insert(key.clone(), Arc::new(svc.clone()));
            inp.dirty.insert(key);
        }
        self.wake.notify_one();
    }

    pub fn delete_service(&self, svc: &Service) {
        if let Some(key) = ServiceKey::of_service(svc) {
            self.metrics.service_changes.inc();
            let mut inp = lock(&self.inputs);
            inp.services.remove(&key);
            inp.dirty.insert(key);
        }
        self.wake.notify_one();
    }

    pub fn update_endpoint_slice(&self, slice: &EndpointSlice) {
        if let (Some(key), Some(name)) = (ServiceKey::of_slice(slice), &slice.metadata.name) {
            self.metrics.endpoint_changes.inc();
            let mut inp = lock(&self.inputs);
            inp.slices
                .entry(key.clone())
                .or_default()
                .insert(name.clone(), Arc::new(slice.clone()));
            inp.dirty.insert(key);
        }
        self.wake.notify_one();
    }

    pub fn delete_endpoint_slice(&self, slice: &EndpointSlice) {
        if let (Some(key), Some(name)) = (ServiceKey::of_slice(slice), &slice.metadata.name) {
            self.metrics.endpoint_changes.inc();
            let mut inp = lock(&self.inputs);
            if let Some(by_name) = inp.slices.get_mut(&key) {
                by_name.remove(name);
                if by_name.is_empty() {
                    inp.slices.remove(&key);
                }
            }
            inp.dirty.insert(key);
        }
        self.wake.notify_one();
    }

    pub fn update_node(&self, node: &Node) {
        if let Some(name) = &node.metadata.name {
            let mut inp = lock(&self.inputs);
            inp.nodes.insert(name.clone(), Arc::new(node.clone()));
            inp.nodes_dirty = true;
        }
        self.wake.notify_one();
    }

    pub fn delete_node(&self, node: &Node) {
        if let Some(name) = &node.metadata.name {
            let mut inp = lock(&self.inputs);
            inp.nodes.remove(name);
            inp.nodes_dirty = true;
        }
        self.wake.notify_one();
    }

    /// After a relist: the cache is the truth (deletions during a watch gap are not told).
    fn resync_services(&self, all: Vec<Arc<Service>>) {
        let mut inp = lock(&self.inputs);
        let old: Vec<ServiceKey> = inp.services.keys().cloned().collect();
        inp.dirty.extend(old);
        inp.services.clear();
        for s in all {
            if let Some(k) = ServiceKey::of_service(&s) {
                inp.services.insert(k.clone(), s);
                inp.dirty.insert(k);
            }
        }
        drop(inp);
        self.wake.notify_one();
    }

    fn resync_slices(&self, all: Vec<Arc<EndpointSlice>>) {
        let mut inp = lock(&self.inputs);
        let old: Vec<ServiceKey> = inp.slices.keys().cloned().collect();
        inp.dirty.extend(old);
        inp.slices.clear();
        for s in all {
            if let (Some(k), Some(name)) = (ServiceKey::of_slice(&s), s.metadata.name.clone()) {
                inp.slices.entry(k.clone()).or_default().insert(name, s);
                inp.dirty.insert(k);
            }
        }
        drop(inp);
        self.wake.notify_one();
    }

    fn resync_nodes(&self, all: Vec<Arc<Node>>) {
        let mut inp = lock(&self.inputs);
        inp.nodes = all.into_iter().filter_map(|n| Some((n.metadata.name.clone()?, n))).collect();
        inp.nodes_dirty = true;
        drop(inp);
        self.wake.notify_one();
    }

    /// Bring the map, the rules and the routes in step with the changes told so far.
    /// Blocking (runs `nft` and `ip`); one at a time.
    pub fn sync(&self) -> Result<SyncReport, ProxyError> {
        let mut state = lock(&self.sync_state);
        let start = Instant::now();
        let (changed, computed, nodes) = {
            let mut inp = lock(&self.inputs);
            let changed = std::mem::take(&mut inp.dirty);
            let computed: Vec<(ServiceKey, Vec<ServicePort>)> = changed
                .iter()
                .map(|k| {
                    let ports = match inp.services.get(k) {
                        Some(svc) => {
                            let slices: Vec<&EndpointSlice> = inp
                                .slices
                                .get(k)
                                .map(|m| m.values().map(|s| s.as_ref()).collect())
                                .unwrap_or_default();
                            let mut ports = model::service_ports(svc, &slices);
                            if let Some(a) = self.activator.get() {
                                a.stand_in(svc, &mut ports);
                            }
                            ports
                        }
                        None => {
                            if let Some(a) = self.activator.get() {
                                a.forget(k);
                            }
                            Vec::new()
                        }
                    };
                    (k.clone(), ports)
                })
                .collect();
            let nodes = std::mem::take(&mut inp.nodes_dirty)
                .then(|| inp.nodes.values().cloned().collect::<Vec<_>>());
            (changed, computed, nodes)
        };
        let services_recomputed = computed.len();
        let snapshot = {
            let mut w = self.map.write().unwrap_or_else(|e| e.into_inner());
            let m = Arc::make_mut(&mut w);
            for (k, ports) in computed {
                m.set(k, ports);
            }
            w.clone()
        };
        if let Some(a) = self.activator.get() {
            a.synced();
        }
        let mut result = Ok(None);
        if let Some(nft) = state.nft.as_mut() {
            match nft.sync(&snapshot, &changed) {
                Ok(applied) => {
                    lock(&self.health).nft = None;
                    result = Ok(Some(applied));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "nftables sync failed; the table is recreated on retry");
                    lock(&self.health).nft = Some(e.to_string());
                    result = Err(ProxyError::Nftables(e));
                }
            }
        }
        let mut route_result = Ok(());
        if let (Some(routes), Some(nodes)) = (state.routes.as_mut(), nodes) {
            let routes_opts = RouteOptions {
                node_name: self.opts.node_name.clone(),
                node_ip: self.opts.node_ip,
                ..Default::default()
            };
            let desired =
                routes::host_gateway_routes(nodes.iter().map(|n| n.as_ref()), &routes_opts);
            match routes.sync(&desired) {
                Ok(()) => lock(&self.health).routes = None,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster routes not installed");
                    lock(&self.health).routes = Some(e.to_string());
                    // Retry with the Nodes as they are then.
                    lock(&self.inputs).nodes_dirty = true;
                    route_result = Err(ProxyError::Routes(e));
                }
            }
        }
        let duration = start.elapsed();
        self.metrics.sync_duration.observe(duration.as_secs_f64());
        let transaction = result?;
        route_result?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.metrics.last_sync.set(now.as_secs_f64());
        Ok(SyncReport { transaction, services_recomputed, duration })
    }

    /// Follow Services, EndpointSlices and Nodes and keep everything in step, until the
    /// task is dropped. The first sync runs as soon as the caches are filled.
    pub async fn run(self: Arc<Self>, client: kube::Client) {
        let informers = SharedInformers::new(client);
        let services: Informer<Service> = informers.get();
        let slices: Informer<EndpointSlice> = informers.get();
        let nodes: Informer<Node> = informers.get();
        let (p, store) = (self.clone(), services.store());
        services.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_service(new),
            Change::Delete { gone, .. } => p.delete_service(gone),
            Change::Resynced => p.resync_services(store.state()),
        });
        let (p, store) = (self.clone(), slices.store());
        slices.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_endpoint_slice(new),
            Change::Delete { gone, .. } => p.delete_endpoint_slice(gone),
            Change::Resynced => p.resync_slices(store.state()),
        });
        let (p, store) = (self.clone(), nodes.store());
        nodes.on_change(move |c| match c {
            Change::Upsert { new, .. } => p.update_node(new),
            Change::Delete { gone, .. } => p.delete_node(gone),
            Change::Resynced => p.resync_nodes(store.state()),
        });
        // No partial table after a restart: wait for every cache.
        tokio::join!(
            services.wait_until_ready(),
            slices.wait_until_ready(),
            nodes.wait_until_ready()
        );
        let mut retry = Duration::from_secs(1);
        loop {
            let p = self.clone();
            let outcome = tokio::task::spawn_blocking(move || p.sync()).await;
            match outcome {
                Ok(Ok(_)) => {
                    retry = Duration::from_secs(1);
                    self.wake.notified().await;
                    // Gather a burst of changes into one transaction.
                    tokio::time::sleep(DEBOUNCE).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, retry_in = ?retry, "proxy sync failed");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
                Err(e) => {
                    tracing::error!(error = %e, "proxy sync panicked");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// Where a new connection of a Wasm guest goes: the same choice as the nftables rules
    /// (internal policy for ClusterIPs, external policy for NodePorts on this node's
    /// addresses), at random or by the client's affinity. Never blocks on a sync.
    pub fn route(&self, client: IpAddr, dest: SocketAddr, protocol: Protocol) -> ServiceRoute {
        let SocketAddr::V4(dest) = dest else {
            return ServiceRoute::Direct;
        };
        if self.excluded.contains(dest.ip()) {
            return ServiceRoute::Direct;
        }
        let map = self.service_map();
        let node = self.opts.node_name.as_str();
        let (sp, endpoints) = if let Some(sp) = map.lookup(*dest.ip(), dest.port(), protocol) {
            (sp, sp.internal_endpoints(node))
        } else if (dest.ip().is_loopback() || Some(*dest.ip()) == self.opts.node_ip)
            && let Some(sp) = map.lookup_node_port(dest.port(), protocol)
        {
            (sp, sp.external_endpoints(node))
        } else {
            return ServiceRoute::Direct;
        };
        if endpoints.is_empty() {
            return ServiceRoute::NoEndpoints;
        }
        let addr = |e: &Endpoint| SocketAddr::V4(SocketAddrV4::new(e.ip, e.port));
        let Some(timeout) = sp.affinity_timeout else {
            let i = rand::rng().random_range(0..endpoints.len());
            return ServiceRoute::Endpoint(addr(endpoints[i]));
        };
        let timeout = Duration::from_secs(u64::from(timeout));
        let now = Instant::now();
        let mut table = lock(&self.affinity);
        let key = (sp.name.clone(), client);
        if let Some((ep, used)) = table.get_mut(&key)
            && now.duration_since(*used) < timeout
            && endpoints.iter().any(|e| addr(e) == *ep)
        {
            *used = now;
            return ServiceRoute::Endpoint(*ep);
        }
        let chosen = addr(endpoints[rand::rng().random_range(0..endpoints.len())]);
        if table.len() >= 4096 {
            // Bounded: expired entries go when the table grows.
            table.retain(|_, (_, used)| now.duration_since(*used) < Duration::from_secs(86400));
        }
        table.insert(key, (chosen, now));
        ServiceRoute::Endpoint(chosen)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
