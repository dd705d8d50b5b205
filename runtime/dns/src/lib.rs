//! Cluster DNS, built into every node (CoreDNS with its `kubernetes` plugin, `pods insecure`,
//! and `forward`): Services' and pods' names under the cluster zone answered from a cache that
//! shared informers of Services and EndpointSlices feed, other names forwarded upstream.
//!
//! - [`records`]: the cache and the DNS semantics (what exists, NXDOMAIN vs NODATA).
//! - [`server`]: the UDP and TCP listeners.
//! - [`ClusterDns`]: both, plus the pod search path for in-process guests
//!   ([`ClusterDns::lookup_host`], the half of `ServiceDirectory` that is DNS's).
//!
//! ```ignore
//! let dns = ClusterDns::new(DnsOptions { listen: vec![addr], ..Default::default() })?;
//! dns.register_metrics(&mut registry);
//! tokio::spawn(dns.clone().run(client));
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_client_tools::informers::{Change, SharedInformers};
use tokio::task::JoinSet;

mod metrics;
pub mod records;
pub mod server;

pub use records::{Lookup, Records, RecordsError};
pub use server::ServerError;

use metrics::Metrics;
use server::{Handler, TcpHandler};

/// A pod's `ndots` (what the kubelet writes in its resolv.conf): names with fewer dots try the
/// search path first.
pub const NDOTS: usize = 5;

/// How long [`ClusterDns::run`] waits for the first list before serving anyway (CoreDNS's).
const SYNC_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Permanent for this address: taken, or not an address of this host.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// How the cluster DNS is set up.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The cluster domain (`cluster.local`).
    pub zone: String,
    /// Where to serve UDP and TCP (port 0: any free port, the same for both).
    pub listen: Vec<SocketAddr>,
    /// Where names outside the zone go, in order; none: NXDOMAIN at once.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of every answer, seconds (CoreDNS's `ttl`, default 5).
    pub ttl: u32,
    /// UDP sockets (and receive tasks) per listen address.
    pub udp_sockets: usize,
    /// How long one upstream gets to answer before the next is tried.
    pub forward_timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            zone: "cluster.local".into(),
            listen: Vec::new(),
            upstreams: Vec::new(),
            ttl: 5,
            udp_sockets: std::thread::available_parallelism().map_or(2, |n| n.get()),
            forward_timeout: Duration::from_secs(2),
        }
    }
}

/// The node's cluster DNS: the record cache, its listeners and the guests' name lookups.
pub struct ClusterDns {
    options: DnsOptions,
    records: Arc<Records>,
    metrics: Metrics,
    state: Mutex<Listeners>,
}

#[derive(Default)]
struct Listeners {
    bound: Option<Vec<SocketAddr>>,
    /// Aborted on drop: the UDP loops.
    udp: JoinSet<()>,
    /// Stopped on drop: the TCP servers.
    tcp: Vec<hickory_server::Server<TcpHandler>>,
}

impl ClusterDns {
    /// A cluster DNS with an empty cache, not yet listening.
    pub fn new(options: DnsOptions) -> Result<Arc<ClusterDns>, DnsError> {
        let records = Arc::new(Records::new(&options.zone, options.ttl)?);
        Ok(Arc::new(ClusterDns {
            options,
            records,
            metrics: Metrics::new(),
            state: Mutex::new(Listeners::default()),
        }))
    }

    /// Add the `coredns_*` metrics to `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// The cache, to feed Services and EndpointSlices directly (tests, benchmarks) or to query.
    pub fn records(&self) -> &Arc<Records> {
        &self.records
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bind every listen address (UDP and TCP) and start serving; returns the bound addresses.
    /// Idempotent: a second call returns the first's addresses. Must run inside tokio.
    pub fn listen(&self) -> Result<Vec<SocketAddr>, DnsError> {
        let mut state = self.lock();
        if let Some(bound) = &state.bound {
            return Ok(bound.clone());
        }
        let upstreams: Arc<[SocketAddr]> = self.options.upstreams.clone().into();
        let mut bound = Vec::new();
        let mut udp = JoinSet::new();
        let mut tcp = Vec::new();
        for addr in &self.options.listen {
            let (sockets, listener, at) = server::bind_both(*addr, self.options.udp_sockets)?;
            let handler = Arc::new(Handler {
                records: self.records.clone(),
                upstreams: upstreams.clone(),
                forward_timeout: self.options.forward_timeout,
                metrics: self.metrics.listener(&format!("dns://{at}"), &upstreams),
                forwards: Arc::new(tokio::sync::Semaphore::new(server::MAX_CONCURRENT_FORWARDS)),
            });
            for socket in sockets {
                udp.spawn(server::serve_udp(Arc::new(socket), handler.clone()));
            }
            tcp.push(server::serve_tcp(listener, handler));
            bound.push(at);
        }
        tracing::info!(addresses = ?bound, zone = %self.records.zone(), "cluster dns listening");
        state.udp = udp;
        state.tcp = tcp;
        state.bound = Some(bound.clone());
        Ok(bound)
    }

    /// The addresses served (UDP and TCP alike); empty until [`Self::listen`].
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.lock().bound.clone().unwrap_or_default()
    }

    /// Feed the cache from the cluster's Services and EndpointSlices and serve, until dropped
    /// or cancelled. Serves after the first list (or after 5 s without one, as CoreDNS).
    pub async fn run(self: Arc<Self>, client: kube::Client) -> Result<(), DnsError> {
        let informers = SharedInformers::new(client);
        let services = informers.get::<Service>();
        let slices = informers.get::<EndpointSlice>();
        let records = self.records.clone();
        let (svc_store, slice_store) = (services.store(), slices.store());
        let resync = move |records: &Records| {
            let svcs = svc_store.state();
            let slices = slice_store.state();
            records.replace_all(svcs.iter().map(|s| &**s), slices.iter().map(|s| &**s));
        };
        let resync2 = resync.clone();
        let r = records.clone();
        services.on_change(move |change| match change {
            Change::Upsert { new, .. } => r.upsert_service(new),
            Change::Delete { gone, .. } => {
                let m = &gone.metadata;
                r.remove_service(
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                );
            }
            // Deletions missed while the watch was down: rebuild from the caches.
            Change::Resynced => resync(&r),
        });
        let r = records.clone();
        slices.on_change(move |change| match change {
            Change::Upsert { new, .. } => r.upsert_endpoint_slice(new),
            Change::Delete { gone, .. } => {
                let m = &gone.metadata;
                r.remove_endpoint_slice(
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                );
            }
            Change::Resynced => resync2(&r),
        });
        let synced = async {
            services.wait_until_ready().await;
            slices.wait_until_ready().await;
        };
        if tokio::time::timeout(SYNC_WAIT, synced).await.is_err() {
            tracing::warn!("cluster dns: serving before services and endpoint slices are listed");
        }
        // Without a listener the cache still answers the in-process lookups of Wasm guests.
        if let Err(e) = self.listen() {
            tracing::error!(error = %e, "cluster dns: cannot listen; names are answered in-process only");
        }
        // The informers' watches live as long as `informers`.
        std::future::pending::<()>().await;
        drop(informers);
        Ok(())
    }

    /// The addresses `name` has for a pod in `namespace`, as a pod's resolver with the
    /// kubelet's resolv.conf finds them (search `NS.svc.ZONE svc.ZONE ZONE`, `ndots:5`).
    /// `None` when no cluster name matched and the name itself is not in the zone (look it up
    /// elsewhere); `Some(empty)` for a name in the zone that does not exist. An ExternalName
    /// Service pointing outside the zone has no address here: `None` unless its name was
    /// written in full. An address literal is its own answer.
    pub fn lookup_host(&self, name: &str, namespace: &str) -> Option<Vec<IpAddr>> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(vec![ip]);
        }
        let absolute = name.ends_with('.');
        let bare = name.trim_end_matches('.');
        if bare.is_empty() {
            return None;
        }
        let zone = self.records.zone().to_ascii();
        let zone = zone.trim_end_matches('.');
        let as_is = format!("{bare}.");
        let mut candidates = Vec::with_capacity(4);
        let dots = bare.matches('.').count();
        if absolute || dots >= NDOTS {
            candidates.push(as_is.clone());
        }
        if !absolute {
            candidates.push(format!("{bare}.{namespace}.svc.{zone}."));
            candidates.push(format!("{bare}.svc.{zone}."));
            candidates.push(format!("{bare}.{zone}."));
            if dots < NDOTS {
                candidates.push(as_is.clone());
            }
        }
        let mut as_is_ours = false;
        for candidate in &candidates {
            let Ok(n) = Name::from_ascii(candidate) else { continue };
            match self.records.addresses_of(&n) {
                Some(ips) if !ips.is_empty() => return Some(ips),
                Some(_) if *candidate == as_is => as_is_ours = true,
                _ => {}
            }
        }
        as_is_ours.then(Vec::new)
    }
}

#[cfg(test)]
mod test_objects;
#[cfg(test)]
mod tests;
