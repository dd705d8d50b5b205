//! Serving `wasi:http/incoming-handler` components: the container listens on its pod IP at
//! each declared TCP port and answers every request with a fresh instance (its own `Store`,
//! memory limit and epoch deadline), built from the `ProxyPre` compiled once per image — so a
//! Wasm HTTP pod costs a listening socket while idle. A trap in one request answers 500 and
//! leaves the server serving.
//!
//! A guest's outgoing requests (from a wasi:http server or a wasi:cli command alike) meet the
//! cluster in-process: a Service name is resolved by the node's cluster DNS data and a Service
//! address by the node proxy's endpoint choice, and the request goes straight to the chosen
//! endpoint — no kernel NAT hop, no DNS packet. HTTPS is verified against the node's CA bundle
//! and the cluster CA ([`guest_tls`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use skiff_runtime_core::cri_log::LogStream;
use skiff_runtime_core::services::{Protocol, ServiceDirectory, ServiceRoute};
use skiff_runtime_core::{ContainerConfig, labels};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::engine::{InFlight, MemoryLimiter, Metered, Usage};
use crate::log::CriLog;

/// Store data of one request's instance.
pub(crate) struct HttpHost {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) hooks: ServiceHooks,
    pub(crate) names: crate::lookup::Names,
}

impl crate::lookup::GuestNames for HttpHost {
    fn names(&self) -> &crate::lookup::Names {
        &self.names
    }
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// How long a listener waits after a failed `accept` (e.g. the process is out of descriptors).
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a server could not start.
pub(crate) type ServeError = String;

/// Serve `pre` on the container's ports until the future is dropped (the container is
/// stopped). Returns only when no listener could be set up.
pub(crate) async fn serve(
    engine: Engine,
    pre: ProxyPre<HttpHost>,
    config: Arc<ContainerConfig>,
    log: CriLog,
    usage: Arc<Usage>,
    services: Arc<dyn ServiceDirectory>,
    tls: Arc<rustls::ClientConfig>,
) -> ServeError {
    let ports: Vec<u16> = config
        .ports
        .iter()
        .filter(|p| p.protocol.eq_ignore_ascii_case("TCP"))
        .map(|p| p.container_port)
        .collect();
    if ports.is_empty() {
        return "this container is a wasi:http component: declare the port to serve it on (ports: [{containerPort: 8080}])".to_string();
    }
    let ip: IpAddr = config
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut listeners = Vec::new();
    for port in ports {
        let addr = SocketAddr::new(ip, port);
        match bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => return format!("cannot listen on {addr}: {e}"),
        }
    }
    let hooks = ServiceHooks::for_container(&config, services, tls);
    let shared = Arc::new(Shared { engine, pre, config, log, hooks, usage });
    // One port (the usual case) is served in this future itself: an idle pod costs one task.
    if listeners.len() == 1
        && let Some(listener) = listeners.pop()
    {
        return accept_loop(listener, shared).await;
    }
    let mut accepts = JoinSet::new();
    for listener in listeners {
        accepts.spawn(accept_loop(listener, shared.clone()));
    }
    // Runs until dropped; dropping the set aborts every listener and connection.
    loop {
        if accepts.join_next().await.is_none() {
            return "listeners closed".to_string();
        }
    }
}

/// Accept connections on `listener` and serve each in a task of its own, until dropped
/// (which aborts the connections too).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) -> ServeError {
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors (or memory): retrying at once would spin; the
            // connection waits in the backlog meanwhile.
            Err(_) => {
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // NetworkPolicy's ingress half for this pod: a refused peer's connection is closed
        // before a byte is read.
        if let Ok(local) = stream.local_addr()
            && !shared.hooks.services.allows_ingress(peer.ip(), local, Protocol::Tcp)
        {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(shared.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

struct Shared {
    engine: Engine,
    pre: ProxyPre<HttpHost>,
    config: Arc<ContainerConfig>,
    log: CriLog,
    hooks: ServiceHooks,
    /// The container's usage: every request's instance counts in it (CPU, memory, requests).
    usage: Arc<Usage>,
}

type Response = hyper::Response<HyperOutgoingBody>;

fn plain(status: u16, text: String) -> Response {
    let body = Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed_unsync();
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

impl Shared {
    async fn handle(self: Arc<Self>, req: hyper::Request<hyper::body::Incoming>) -> Response {
        match self.clone().call(req).await {
            Ok(r) => r,
            Err(message) => {
                let mut err = self.log.stream(LogStream::Stderr);
                let _ = err.write_all(format!("request failed: {message}\n").as_bytes()).await;
                plain(500, "internal error: the guest failed to answer\n".into())
            }
        }
    }

    async fn call(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response, String> {
        // Counted from here until the guest is done (an early error ends it at once).
        let in_flight = InFlight::new(self.usage.clone());
        let mut builder = crate::runtime::wasi_context(&self.config, &self.hooks.services)?;
        builder
            .stdout(self.log.stream(LogStream::Stdout))
            .stderr(self.log.stream(LogStream::Stderr));
        let host = HttpHost {
            ctx: builder.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            limiter: MemoryLimiter::new(self.config.memory_limit_bytes)
                .with_usage(self.usage.clone()),
            hooks: self.hooks.clone(),
            names: crate::lookup::Names {
                services: self.hooks.services.clone(),
                namespace: self.hooks.namespace.clone(),
            },
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| format!("{e:#}"))?;
        let out =
            store.data_mut().http().new_response_outparam(tx).map_err(|e| format!("{e:#}"))?;
        let pre = self.pre.clone();
        // The guest may go on streaming the body after it answered: it runs in a task of its
        // own, whose polls count as the container's CPU time (the pod's CPU limit is not
        // applied per request).
        let guest = async move {
            let _in_flight = in_flight;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
        };
        let task = tokio::spawn(Metered::new(guest, self.usage.clone(), None));
        match rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(format!("the guest answered with an error: {code:?}")),
            Err(_) => match task.await {
                Ok(Ok(())) => Err("the guest returned without answering".into()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(format!("request task failed: {e}")),
            },
        }
    }
}

/// Outgoing requests of one Wasm pod, resolved against the cluster's Services in-process.
#[derive(Clone)]
pub(crate) struct ServiceHooks {
    services: Arc<dyn ServiceDirectory>,
    /// The pod's namespace: short Service names resolve in it, as a pod's search path says.
    namespace: Arc<str>,
    /// The pod's address (the client address for session affinity).
    client: IpAddr,
    /// How HTTPS servers are verified ([`guest_tls`]).
    tls: Arc<rustls::ClientConfig>,
}

/// The TLS client configuration of guests' HTTPS requests: the node's CA bundle and, when
/// given, the cluster CA.
///
/// Why the cluster CA: every pod gets it as `ca.crt` beside its service account token (the
/// `kube-root-ca.crt` ConfigMap the ServiceAccount admission projects), and an OCI pod's
/// in-cluster client verifies the api server with that file. `wasi:http` has no way for a
/// guest to hand the host a CA, so the host trusts the same CA on every guest's behalf: a
/// guest can verify exactly the servers an OCI pod reading its mounted `ca.crt` can (the api
/// server by its Service address or name), and nothing else is loosened.
pub(crate) fn guest_tls(
    cluster_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, GuestTlsError> {
    use crate::images::registry::tls;
    let mut roots = tls::native_roots().clone();
    if let Some(pem) = cluster_ca_pem {
        for cert in tls::parse_pem_certs(pem.as_bytes()).map_err(GuestTlsError::Ca)? {
            roots.add(cert).map_err(|e| GuestTlsError::Ca(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| GuestTlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why guests' TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuestTlsError {
    #[error("the cluster CA cannot be trusted: {0}")]
    Ca(String),
    #[error("building the TLS client configuration: {0}")]
    Config(String),
}

/// Where an outgoing request to `host:port` goes, in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Not the cluster's: connect as the guest asked.
    AsAsked,
    /// A Service's endpoint.
    Endpoint(SocketAddr),
    /// The name is the cluster's but does not exist.
    NoSuchName,
    /// A Service with no ready endpoint.
    Refused,
}

impl ServiceHooks {
    /// The hooks of a container: its pod's namespace and address, the node's Services.
    pub(crate) fn for_container(
        config: &ContainerConfig,
        services: Arc<dyn ServiceDirectory>,
        tls: Arc<rustls::ClientConfig>,
    ) -> ServiceHooks {
        let namespace = config.labels.get(labels::POD_NAMESPACE).cloned().unwrap_or_default();
        let client = config
            .pod_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        ServiceHooks { services, namespace: namespace.into(), client, tls }
    }

    pub(crate) fn target(&self, host: &str, port: u16) -> Target {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => match self.services.lookup_host(host, &self.namespace) {
                None => return Target::AsAsked,
                Some(ips) => match ips.first() {
                    Some(ip) => *ip,
                    None => return Target::NoSuchName,
                },
            },
        };
        match self.services.route(self.client, SocketAddr::new(ip, port), Protocol::Tcp) {
            ServiceRoute::Endpoint(ep) => Target::Endpoint(ep),
            ServiceRoute::NoEndpoints => Target::Refused,
            // A name the cluster DNS answered with a pod or endpoint address.
            ServiceRoute::Direct if ip.to_string() != host => {
                Target::Endpoint(SocketAddr::new(ip, port))
            }
            ServiceRoute::Direct => Target::AsAsked,
        }
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                hyper::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for ServiceHooks {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let hooks = self.clone();
        Box::new(async move { hooks.send(request, options).await })
    }
}

/// The response and the future driving its connection, as `send_request` returns them.
type Sent = (
    hyper::Response<WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
);

impl ServiceHooks {
    /// The source address of the pod's connections: its own address, so peers (and their
    /// NetworkPolicies) see the pod, not the node. Loopback-addressed pods (a node that may not
    /// route) connect from the node's address.
    fn source(&self) -> Option<IpAddr> {
        (!self.client.is_loopback() && !self.client.is_unspecified()).then_some(self.client)
    }

    async fn send(
        self,
        mut request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> wasmtime_wasi_http::Result<Sent> {
        use wasmtime_wasi_http::Error;
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS);
        let Some(authority) = uri.authority().cloned() else {
            return Err(Error::HttpRequestUriInvalid);
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let dest = match self.target(authority.host(), port) {
            Target::NoSuchName => {
                return Err(Error::DnsError { rcode: Some("NXDOMAIN".into()), info_code: None });
            }
            Target::Refused => return Err(Error::ConnectionRefused),
            Target::Endpoint(ep) => ep,
            Target::AsAsked => {
                let host = authority.host().trim_start_matches('[').trim_end_matches(']');
                match tokio::net::lookup_host((host, port)).await.ok().and_then(|mut a| a.next()) {
                    Some(addr) => addr,
                    None => {
                        return Err(Error::DnsError {
                            rcode: Some("NXDOMAIN".into()),
                            info_code: None,
                        });
                    }
                }
            }
        };
        // Both halves of NetworkPolicy, per request: a pooled connection to the endpoint was
        // accepted under the policy of its time, and the guest asked for a new request.
        if !self.services.allows_egress(self.client, dest, Protocol::Tcp)
            || !self.services.allows_ingress(self.client, dest, Protocol::Tcp)
        {
            return Err(Error::DestinationIpProhibited);
        }
        // Origin form on the wire; the Host header keeps the name the guest asked for.
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
        if https {
            // The connection goes to the endpoint chosen here; the certificate is checked
            // against the name (or address) the guest asked for.
            let host = authority.host().trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let options = options.unwrap_or_default();
            return send_tls(request, dest, self.source(), name, self.tls.clone(), options).await;
        }
        send_plain(request, dest, self.source(), options.unwrap_or_default()).await
    }
}

type Sender = hyper::client::conn::http1::SendRequest<WasiBody>;
type PoolKey = (Option<IpAddr>, SocketAddr);

/// Idle HTTP/1.1 connections of guests, by (source, endpoint): a guest that calls a Service
/// in a loop reuses them instead of leaving a socket in TIME-WAIT per request (which, with
/// the source address bound, exhausts the pod address's ports within seconds).
static POOL: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<PoolKey, Vec<Sender>>>,
> = std::sync::LazyLock::new(Default::default);
/// Connections kept per (source, endpoint), and keys kept before closed ones are swept.
const POOL_PER_KEY: usize = 64;
const POOL_KEYS: usize = 4096;

/// A pooled connection ready for a request, if there is one.
fn pooled(key: &PoolKey) -> Option<Sender> {
    let mut pool = POOL.lock().ok()?;
    let senders = pool.get_mut(key)?;
    senders.retain(|s| !s.is_closed());
    let ready = senders.iter().position(|s| s.is_ready())?;
    Some(senders.swap_remove(ready))
}

/// Keep `sender` for later requests (it becomes ready once this response is read).
fn pool(key: PoolKey, sender: Sender) {
    let Ok(mut pool) = POOL.lock() else { return };
    if pool.len() >= POOL_KEYS && !pool.contains_key(&key) {
        pool.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        if pool.len() >= POOL_KEYS {
            return;
        }
    }
    let senders = pool.entry(key).or_default();
    if senders.len() < POOL_PER_KEY {
        senders.push(sender);
    }
}

/// A new connection to `dest` from `source` (any address when `None`).
async fn connect(
    dest: SocketAddr,
    source: Option<IpAddr>,
    timeout: std::time::Duration,
) -> wasmtime_wasi_http::Result<Sender> {
    handshake(connect_tcp(dest, source, timeout).await?).await
}

/// HTTP/1.1 over `stream`; the connection is driven by a task of its own for as long as it
/// lives (pooled or not).
async fn handshake<S>(stream: S) -> wasmtime_wasi_http::Result<Sender>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(wasmtime_wasi_http::Error::from)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A TCP connection to `dest` from `source` (any address when `None`).
async fn connect_tcp(
    dest: SocketAddr,
    source: Option<IpAddr>,
    timeout: std::time::Duration,
) -> wasmtime_wasi_http::Result<tokio::net::TcpStream> {
    use wasmtime_wasi_http::Error;
    let socket = match dest {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(Error::Connect)?;
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == dest.is_ipv4()) {
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0)).map_err(Error::Connect)?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(dest))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Let the kernel pick the source port at `connect` (by the whole address tuple) rather than
/// at `bind`, so many connections from one pod address do not run out of ports.
fn bind_address_no_port(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function borrows, with a pointer to a live c_int
    // and its size; failure only leaves the option unset.
    #[allow(unsafe_code)]
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// HTTP/1.1 over TLS to `dest` from `source`, verifying the server as `name`, on a new
/// connection (closed with the response: guests' HTTPS calls are not pooled).
async fn send_tls(
    request: hyper::Request<WasiBody>,
    dest: SocketAddr,
    source: Option<IpAddr>,
    name: rustls::pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    options: RequestOptions,
) -> wasmtime_wasi_http::Result<Sent> {
    use wasmtime_wasi_http::Error;
    let connect_limit = limit(options.connect_timeout);
    let stream = connect_tcp(dest, source, connect_limit).await?;
    let stream = tokio::time::timeout(
        connect_limit,
        tokio_rustls::TlsConnector::from(tls).connect(name, stream),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::Tls)?;
    let mut sender = handshake(stream).await?;
    answer(sender.send_request(request), &options).await
}

/// Plain HTTP/1.1 to `dest` from `source`, on a pooled connection when one is ready.
async fn send_plain(
    request: hyper::Request<WasiBody>,
    dest: SocketAddr,
    source: Option<IpAddr>,
    options: RequestOptions,
) -> wasmtime_wasi_http::Result<Sent> {
    let key = (source, dest);
    let mut sender = match pooled(&key) {
        Some(s) => s,
        None => connect(dest, source, limit(options.connect_timeout)).await?,
    };
    let sending = sender.send_request(request);
    pool(key, sender);
    answer(sending, &options).await
}

/// A guest's timeout, or ten minutes when it set none.
fn limit(t: Option<std::time::Duration>) -> std::time::Duration {
    t.unwrap_or(std::time::Duration::from_secs(600))
}

/// The response to a request being sent, within the guest's first-byte timeout, in the form
/// `wasi:http` hands back.
async fn answer(
    sending: impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
    options: &RequestOptions,
) -> wasmtime_wasi_http::Result<Sent> {
    use wasmtime_wasi_http::Error;
    let response = tokio::time::timeout(limit(options.first_byte_timeout), sending)
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let io = async { Ok(()) };
    Ok((
        response.map(|b| b.map_err(Error::from).boxed_unsync()),
        Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
    ))
}

#[cfg(test)]
mod service_tests {
    use super::*;

    /// One Service `web` in `default` at 10.96.0.20:80 with one endpoint, one `empty` with
    /// none; names outside `cluster.local` are not the directory's.
    struct Directory;

    impl ServiceDirectory for Directory {
        fn lookup_host(&self, name: &str, namespace: &str) -> Option<Vec<IpAddr>> {
            match (name, namespace) {
                ("web", "default") | ("web.default.svc.cluster.local", _) => {
                    Some(vec![IpAddr::from([10, 96, 0, 20])])
                }
                ("empty", "default") => Some(vec![IpAddr::from([10, 96, 0, 21])]),
                ("db-0.db", "default") => Some(vec![IpAddr::from([10, 128, 0, 7])]),
                (n, _) if n.ends_with(".cluster.local") || !n.contains('.') => Some(vec![]),
                _ => None,
            }
        }

        fn route(&self, _client: IpAddr, dest: SocketAddr, _p: Protocol) -> ServiceRoute {
            match dest.to_string().as_str() {
                "10.96.0.20:80" => ServiceRoute::Endpoint("10.128.0.5:8080".parse().unwrap()),
                "10.96.0.21:80" => ServiceRoute::NoEndpoints,
                _ => ServiceRoute::Direct,
            }
        }
    }

    fn hooks() -> ServiceHooks {
        ServiceHooks {
            services: Arc::new(Directory),
            namespace: "default".into(),
            client: IpAddr::from([10, 128, 0, 200]),
            tls: guest_tls(None).expect("tls"),
        }
    }

    #[test]
    fn guest_tls_should_refuse_a_cluster_ca_that_is_no_certificate() {
        assert!(guest_tls(None).is_ok());
        assert!(matches!(guest_tls(Some("not a certificate")), Err(GuestTlsError::Ca(_))));
    }

    #[test]
    fn target_should_resolve_services_in_process() {
        let h = hooks();
        let ep = Target::Endpoint("10.128.0.5:8080".parse().unwrap());
        let cases = [
            ("web", 80, ep.clone()),
            ("web.default.svc.cluster.local", 80, ep.clone()),
            ("10.96.0.20", 80, ep),
            ("empty", 80, Target::Refused),
            ("nosuch", 80, Target::NoSuchName),
            ("nosuch.default.svc.cluster.local", 80, Target::NoSuchName),
            // A headless Service's pod name: straight to the pod.
            ("db-0.db", 5432, Target::Endpoint("10.128.0.7:5432".parse().unwrap())),
            ("example.org", 80, Target::AsAsked),
            ("10.128.0.9", 80, Target::AsAsked),
            ("127.0.0.1", 8080, Target::AsAsked),
        ];
        for (host, port, want) in cases {
            assert_eq!(h.target(host, port), want, "{host}:{port}");
        }
    }
}
