//! Serving `wasi:http/incoming-handler` components: the container listens on its pod IP at
//! each declared TCP port and answers every request with a fresh instance (its own `Store`,
//! memory limit and epoch deadline), built from the `ProxyPre` compiled once per image — so a
//! Wasm HTTP pod costs a listening socket while idle. A trap in one request answers 500 and
//! leaves the server serving.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use skiff_runtime_core::ContainerConfig;
use skiff_runtime_core::cri_log::LogStream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::engine::MemoryLimiter;
use crate::log::CriLog;

/// Store data of one request's instance.
pub(crate) struct HttpHost {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) limiter: MemoryLimiter,
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
    }
}

/// Why a server could not start.
pub(crate) type ServeError = String;

/// Serve `pre` on the container's ports until the future is dropped (the container is
/// stopped). Returns only when no listener could be set up.
pub(crate) async fn serve(
    engine: Engine,
    pre: ProxyPre<HttpHost>,
    config: ContainerConfig,
    log: CriLog,
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
    let shared = Arc::new(Shared { engine, pre, config, log });
    let mut accepts = JoinSet::new();
    for listener in listeners {
        let shared = shared.clone();
        accepts.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
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
        });
    }
    // Runs until dropped; dropping the sets aborts every listener and connection.
    loop {
        if accepts.join_next().await.is_none() {
            return "listeners closed".to_string();
        }
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
    config: ContainerConfig,
    log: CriLog,
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
        let mut builder = crate::runtime::wasi_context(&self.config)?;
        builder
            .stdout(self.log.stream(LogStream::Stdout))
            .stderr(self.log.stream(LogStream::Stderr));
        let host = HttpHost {
            ctx: builder.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            limiter: MemoryLimiter::new(self.config.memory_limit_bytes),
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
        // The guest may go on streaming the body after it answered: it runs in a task of its own.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
        });
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
