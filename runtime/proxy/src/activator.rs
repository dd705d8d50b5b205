//! Scale from zero: the node's stand-in for a Service whose Deployment rests at 0 replicas.
//!
//! A Service opts in with the annotation `scale-to-zero.skiff.dev/deployment: <name>` (a
//! Deployment in its namespace; see `skiff_helpers::scaletozero`). While such a Service port has no endpoint,
//! the proxy gives it one: a listener of this node's ([`Activator::stand_in`]), so that the
//! nftables rules (host and OCI pods) and the in-process route (Wasm guests) send new
//! connections here instead of refusing them. A connection that arrives is held: the
//! Deployment is scaled to 1 through its `scale` subresource, and as soon as the proxy sees a
//! ready endpoint the connection is spliced to it. Once endpoints exist the stand-in is closed;
//! connections go straight to the pods, as for any Service.
//!
//! The stand-in answers only what the Service's address would: a connection the node's
//! nftables rules sent there from the ClusterIP (its original destination says so), or one
//! from this node itself (a Wasm guest's in-process route, or the host). At most
//! [`MAX_HELD`] connections are held at once per node; more are refused.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rand::Rng;
use skiff_runtime_core::services::Protocol;

use crate::model::{Endpoint, ServiceKey, ServicePort, ServicePortName};
use crate::{Proxy, lock};

/// How long a held connection waits for a ready pod.
const HOLD_LIMIT: Duration = Duration::from_secs(60);
/// The longest a held connection waits for the proxy's next sync before looking again (syncs
/// wake it at once; this only bounds a missed wakeup).
const RECHECK: Duration = Duration::from_millis(100);
/// Connections held at once on one node.
pub const MAX_HELD: usize = 1024;
/// How long a pod that is Ready may still refuse (its listener not yet up).
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// The Deployment a Service wakes, when it opts in.
fn deployment_of(svc: &Service) -> Option<&str> {
    skiff_helpers::scaletozero::deployment(svc.metadata.annotations.as_ref())
}

#[derive(Clone)]
struct Metrics {
    held: Counter,
    wait: Histogram,
    wakes: Counter,
}

/// The listeners standing in for endpoint-less Service ports, and the connections they hold.
pub struct Activator {
    ip: Ipv4Addr,
    node: String,
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    proxy: Mutex<Weak<Proxy>>,
    /// Port → (listener address, its accept task).
    listeners: Mutex<HashMap<ServicePortName, (SocketAddrV4, tokio::task::AbortHandle)>>,
    /// Services whose Deployment is being scaled up now.
    waking: Mutex<HashSet<ServiceKey>>,
    /// One permit per held connection.
    held: Arc<tokio::sync::Semaphore>,
    /// Told after each proxy sync (the map may have new endpoints).
    synced: tokio::sync::Notify,
    metrics: Metrics,
}

impl Activator {
    /// Listen on `ip` (an address of this node that pods and the host reach), act through
    /// `client`, run on `runtime`.
    pub fn new(
        ip: Ipv4Addr,
        node: &str,
        client: kube::Client,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Activator> {
        Arc::new(Activator {
            ip,
            node: node.to_string(),
            client,
            runtime,
            proxy: Mutex::new(Weak::new()),
            listeners: Mutex::default(),
            waking: Mutex::default(),
            held: Arc::new(tokio::sync::Semaphore::new(MAX_HELD)),
            synced: tokio::sync::Notify::new(),
            metrics: Metrics {
                held: Counter::default(),
                // 1 ms doubling to ~65 s.
                wait: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
                wakes: Counter::default(),
            },
        })
    }

    pub(crate) fn attach(&self, proxy: Weak<Proxy>) {
        *lock(&self.proxy) = proxy;
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "skiff_activator_held_connections",
            "Connections held by the activator until a pod of a scaled-to-zero Service was ready",
            self.metrics.held.clone(),
        );
        registry.register(
            "skiff_activator_wait_seconds",
            "How long a held connection waited for a ready pod",
            self.metrics.wait.clone(),
        );
        registry.register(
            "skiff_activator_scale_ups",
            "Deployments scaled from zero by the activator",
            self.metrics.wakes.clone(),
        );
    }

    /// Give each TCP port of `svc` (when it opts in) without endpoints this node's stand-in
    /// endpoint; forget the stand-ins of a Service that no longer opts in. Called by the
    /// proxy's sync (blocking context).
    pub(crate) fn stand_in(self: &Arc<Self>, svc: &Service, ports: &mut [ServicePort]) {
        let Some(key) = ServiceKey::of_service(svc) else { return };
        if deployment_of(svc).is_none() {
            self.forget(&key);
            return;
        }
        let mut keep = HashSet::new();
        for port in ports.iter_mut() {
            if port.protocol() != Protocol::Tcp || !port.cluster_endpoints().is_empty() {
                continue;
            }
            keep.insert(port.name.clone());
            let Some(addr) = self.listener(&port.name, port.cluster_ip, port.port) else {
                continue;
            };
            port.endpoints.push(Endpoint {
                ip: *addr.ip(),
                port: addr.port(),
                ready: true,
                serving: true,
                terminating: false,
                node_name: Some(self.node.clone()),
            });
        }
        // Ports with endpoints (or gone) need no stand-in: connections go to the pods.
        lock(&self.listeners).retain(|name, (_, task)| {
            let stay = name.service != key || keep.contains(name);
            if !stay {
                task.abort();
            }
            stay
        });
    }

    /// The proxy synced: held connections look at the map again.
    pub(crate) fn synced(&self) {
        self.synced.notify_waiters();
    }

    /// Close the listeners of `key`'s ports.
    pub(crate) fn forget(&self, key: &ServiceKey) {
        lock(&self.listeners).retain(|name, (_, task)| {
            let keep = name.service != *key;
            if !keep {
                task.abort();
            }
            keep
        });
    }

    /// Whether `addr` is one of this node's stand-ins.
    fn is_stand_in(&self, ip: Ipv4Addr, port: u16) -> bool {
        ip == self.ip && lock(&self.listeners).values().any(|(a, _)| a.port() == port)
    }

    /// The stand-in listener of `name` (the Service port at `cluster_ip:port`), made on first
    /// use.
    fn listener(
        self: &Arc<Self>,
        name: &ServicePortName,
        cluster_ip: Ipv4Addr,
        port: u16,
    ) -> Option<SocketAddrV4> {
        let mut listeners = lock(&self.listeners);
        if let Some((addr, _)) = listeners.get(name) {
            return Some(*addr);
        }
        let std_listener = std::net::TcpListener::bind(SocketAddrV4::new(self.ip, 0))
            .inspect_err(
                |e| tracing::warn!(service = %name.service, error = %e, "activator cannot listen"),
            )
            .ok()?;
        let addr = match std_listener.local_addr().ok()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return None,
        };
        std_listener.set_nonblocking(true).ok()?;
        let _guard = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener).ok()?;
        let (me, name2) = (self.clone(), name.clone());
        let task = self.runtime.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if !accepts(&conn, SocketAddrV4::new(cluster_ip, port)) {
                    tracing::debug!(service = %name2.service, "activator refused a connection that did not come through the Service");
                    continue;
                }
                let Ok(permit) = me.held.clone().try_acquire_owned() else {
                    tracing::warn!(service = %name2.service, "activator holds {MAX_HELD} connections already; refused one");
                    continue;
                };
                let (me, name) = (me.clone(), name2.clone());
                tokio::spawn(async move {
                    me.hold(conn, name).await;
                    drop(permit);
                });
            }
        });
        listeners.insert(name.clone(), (addr, task.abort_handle()));
        tracing::debug!(service = %name.service, %addr, "activator standing in");
        Some(addr)
    }

    /// Hold `conn` until `name` has a ready endpoint (waking its Deployment), then splice.
    async fn hold(self: Arc<Self>, mut conn: tokio::net::TcpStream, name: ServicePortName) {
        self.metrics.held.inc();
        let started = Instant::now();
        let _ = conn.set_nodelay(true);
        self.wake(&name.service);
        let deadline = started + HOLD_LIMIT;
        let mut woken_again = started;
        let endpoint = loop {
            // Registered before looking, so a sync in between is not missed.
            let synced = self.synced.notified();
            if let Some(e) = self.ready_endpoint(&name) {
                break Some(e);
            }
            if Instant::now() >= deadline {
                break None;
            }
            // Someone may have scaled it back down meanwhile: ask again now and then.
            if woken_again.elapsed() > Duration::from_secs(5) {
                woken_again = Instant::now();
                self.wake(&name.service);
            }
            let _ = tokio::time::timeout(RECHECK, synced).await;
        };
        let Some(endpoint) = endpoint else {
            tracing::warn!(service = %name.service, "no pod became ready within {HOLD_LIMIT:?}; connection closed");
            return;
        };
        let connect_deadline = Instant::now() + CONNECT_RETRY;
        let mut upstream = loop {
            match tokio::net::TcpStream::connect(endpoint).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < connect_deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
                Err(e) => {
                    tracing::warn!(service = %name.service, %endpoint, error = %e, "cannot reach the woken pod");
                    return;
                }
            }
        };
        self.metrics.wait.observe(started.elapsed().as_secs_f64());
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    }

    /// A ready endpoint of `name` other than a stand-in, as the proxy's map has it.
    fn ready_endpoint(&self, name: &ServicePortName) -> Option<SocketAddr> {
        let proxy = lock(&self.proxy).upgrade()?;
        let map = proxy.service_map();
        let port = map.get(&name.service)?.iter().find(|p| p.name == *name)?;
        let eps: Vec<&Endpoint> = port
            .cluster_endpoints()
            .into_iter()
            .filter(|e| !self.is_stand_in(e.ip, e.port))
            .collect();
        if eps.is_empty() {
            return None;
        }
        let e = eps[rand::rng().random_range(0..eps.len())];
        Some(SocketAddr::V4(SocketAddrV4::new(e.ip, e.port)))
    }

    /// Scale `svc`'s Deployment to 1 if it rests at 0 (once at a time per Service).
    fn wake(self: &Arc<Self>, svc: &ServiceKey) {
        if !lock(&self.waking).insert(svc.clone()) {
            return;
        }
        let (me, svc) = (self.clone(), svc.clone());
        self.runtime.spawn(async move {
            if let Err(e) = me.scale_up(&svc).await {
                tracing::warn!(service = %svc, error = %e, "scaling from zero failed");
            }
            lock(&me.waking).remove(&svc);
        });
    }

    async fn scale_up(&self, svc: &ServiceKey) -> Result<(), String> {
        let deployment = {
            let proxy = lock(&self.proxy).upgrade().ok_or("the proxy is gone")?;
            let services = lock(&proxy.inputs);
            let s = services.services.get(svc).ok_or("the Service is gone")?;
            deployment_of(s).ok_or("the Service no longer names a Deployment")?.to_string()
        };
        let path =
            skiff_client_tools::scale::path("apps/v1", "deployments", &svc.namespace, &deployment);
        let scale =
            skiff_client_tools::scale::get(&self.client, &path).await.map_err(|e| e.to_string())?;
        if scale.replicas > 0 {
            return Ok(());
        }
        skiff_client_tools::scale::set(&self.client, &path, 1, Some(&scale.resource_version))
            .await
            .map_err(|e| e.to_string())?;
        self.metrics.wakes.inc();
        tracing::info!(service = %svc, %deployment, "scaled from zero to 1 for a held request");
        Ok(())
    }
}

/// Whether a connection to a stand-in may be held: it was sent there by the node's nftables
/// rules from the Service's address (its original destination), or it comes from this node
/// itself (a Wasm guest's in-process route, the host).
fn accepts(conn: &tokio::net::TcpStream, service: SocketAddrV4) -> bool {
    if original_destination(conn) == Some(service) {
        return true;
    }
    match conn.peer_addr() {
        // An address of this node's own can be bound; any other cannot.
        Ok(peer) => std::net::UdpSocket::bind(SocketAddr::new(peer.ip(), 0)).is_ok(),
        Err(_) => false,
    }
}

/// The destination a DNAT'ed connection was sent to (`SO_ORIGINAL_DST`), if any.
fn original_destination(conn: &tokio::net::TcpStream) -> Option<SocketAddrV4> {
    use std::os::fd::AsRawFd;
    const SO_ORIGINAL_DST: libc::c_int = 80;
    let mut addr = libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `addr`, a sockaddr_in it owns.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 || libc::c_int::from(addr.sin_family) != libc::AF_INET {
        return None;
    }
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}
