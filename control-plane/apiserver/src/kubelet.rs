//! The kubelet API of a node that runs apart from the api server (`skiff agent`), and the api
//! server's client of it.
//!
//! An agent serves `GET /containerLogs/{namespace}/{pod}/{container}` (the `pods/log` options
//! as query parameters) and every `nodes/proxy` path (`healthz`, `stats/summary`, `metrics`,
//! `metrics/resource`) over HTTPS on its `daemonEndpoints.kubeletEndpoint.Port`, with a
//! certificate the cluster CA issued it when it joined. Like the kubelet's webhook mode it
//! authenticates every caller (a client certificate of the cluster CA, or a bearer token the
//! api server vouches for) and asks the api server whether that caller may use the path
//! (`nodes/proxy`, `nodes/log`, `nodes/stats`, `nodes/metrics`). The api server reaches such
//! a node at its `InternalIP`, with a client certificate of its own, whenever the node has
//! no in-process endpoints registered (an embedded node has).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use skiff_api::logs::{LogError, LogRequest, PodLogSource};
use skiff_api::nodes::{NodeEndpoints, NodeProxyError, NodeProxyRequest, NodeProxyResponse};
use skiff_streams::upgrade::Session;
use skiff_streams::{PodStreams, StreamOptions, Target};
use tower::ServiceExt;

/// How long the api server waits for a remote kubelet to answer (not for a followed log).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the api server's client of a remote kubelet failed. `Unreachable` and `Timeout` are
/// transient (the node may come back); the others are setup errors a retry does not cure.
#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("cluster CA: {0}")]
    CaPem(std::io::Error),
    #[error("cluster CA: {0}")]
    CaCert(rustls::Error),
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("{0}")]
    Request(http::Error),
    #[error("node {node:?} is not reachable at {base}: {cause}")]
    Unreachable { node: String, base: String, cause: String },
    #[error("node {node:?} did not answer within {timeout:?}")]
    Timeout { node: String, timeout: Duration },
}

struct Served {
    logs: Arc<dyn PodLogSource>,
    endpoints: Arc<dyn NodeEndpoints>,
    streams: Arc<dyn PodStreams>,
}

/// Who may call a kubelet API and what they may do (the kubelet's webhook authenticator and
/// authorizer). Implementations are shared by every request: thread-safe.
#[async_trait]
pub trait KubeletAuth: Send + Sync {
    /// The user a bearer token is, or `None` (401).
    async fn authenticate_token(&self, token: &str) -> Option<skiff_auth::UserInfo>;
    /// Whether `user` may do `attrs` (a `nodes/<sub>` resource request).
    async fn authorize(&self, user: &skiff_auth::UserInfo, attrs: &skiff_auth::Attributes) -> bool;
}

/// The resource attributes of a kubelet API request, as the kubelet's authorizer builds them:
/// the verb from the method, `nodes/stats`, `nodes/metrics`, `nodes/log` by path, and
/// `nodes/proxy` for every other path (logs, exec, attach, port-forward, health).
pub fn request_attributes(node: &str, method: &str, path: &str) -> skiff_auth::Attributes {
    let verb = match method {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let sub = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    skiff_auth::Attributes::resource(verb, "", "nodes", "", node).with_subresource(sub)
}

/// Authenticate and authorize every request before it is served.
async fn check_caller(
    AxumState((node, auth)): AxumState<(Arc<str>, Arc<dyn KubeletAuth>)>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request.extensions().get::<crate::authn::PeerCertificates>().cloned();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let user = match (peer.as_ref().and_then(crate::authn::user_of_certificate), bearer) {
        (Some(user), _) => user,
        (None, Some(token)) if !token.is_empty() => match auth.authenticate_token(&token).await {
            Some(user) => user,
            None => return plain(StatusCode::UNAUTHORIZED, "Unauthorized"),
        },
        _ => return plain(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    let attrs = request_attributes(&node, request.method().as_str(), request.uri().path());
    if !auth.authorize(&user, &attrs).await {
        let message = format!(
            "Forbidden (user={}, verb={}, resource={}, subresource={})",
            user.name, attrs.verb, attrs.resource, attrs.subresource
        );
        return plain(StatusCode::FORBIDDEN, message);
    }
    next.run(request).await
}

fn plain(code: StatusCode, message: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

/// The kubelet API of node `node`: its log reader, endpoints and streams, for the callers
/// `auth` authenticates and authorizes (serve it with a TLS config that asks for client
/// certificates of the cluster CA).
pub fn router(
    node: &str,
    logs: Arc<dyn PodLogSource>,
    endpoints: Arc<dyn NodeEndpoints>,
    streams: Arc<dyn PodStreams>,
    auth: Arc<dyn KubeletAuth>,
) -> Router {
    let node: Arc<str> = Arc::from(node);
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/portforward/{namespace}/{pod}", any(port_forward))
        .route("/{*path}", any(proxied))
        .layer(axum::middleware::from_fn_with_state((node, auth), check_caller))
        .with_state(Arc::new(Served { logs, endpoints, streams }))
}

/// Serve a streaming session the api server proxied here (it checked the pod already).
fn stream(served: &Served, req: Request, session: Session, target: Target) -> Response {
    let (parts, _) = req.into_parts();
    match skiff_streams::upgrade::accept(parts, session, target, served.streams.clone()) {
        Ok(answer) => answer.map(|()| Body::empty()),
        Err(message) => plain(StatusCode::BAD_REQUEST, message),
    }
}

fn stream_target(namespace: String, pod: String, container: String, req: &Request) -> Target {
    let query = req.uri().query().unwrap_or("");
    let pod_uid = skiff_streams::query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "podUID")
        .map(|(_, v)| v)
        .unwrap_or_default();
    Target { namespace, pod, pod_uid, container }
}

async fn exec(
    served: AxumState<Arc<Served>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(served, namespace, pod, container, req, Session::Exec)
}

async fn attach(
    served: AxumState<Arc<Served>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(served, namespace, pod, container, req, Session::Attach)
}

fn remote_command(
    AxumState(served): AxumState<Arc<Served>>,
    namespace: String,
    pod: String,
    container: String,
    req: Request,
    session: fn(StreamOptions) -> Session,
) -> Response {
    let mut o = StreamOptions::from_query(req.uri().query().unwrap_or(""));
    o.container = container.clone();
    let target = stream_target(namespace, pod, container, &req);
    stream(&served, req, session(o), target)
}

async fn port_forward(
    AxumState(served): AxumState<Arc<Served>>,
    Path((namespace, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let target = stream_target(namespace, pod, String::new(), &req);
    stream(&served, req, Session::PortForward, target)
}

fn log_request(
    namespace: String,
    pod: String,
    container: String,
    q: &HashMap<String, String>,
) -> LogRequest {
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    LogRequest {
        namespace,
        pod,
        pod_uid: q.get("podUID").cloned().unwrap_or_default(),
        container,
        follow: flag("follow"),
        previous: flag("previous"),
        timestamps: flag("timestamps"),
        tail_lines: num("tailLines"),
        since_seconds: num("sinceSeconds"),
        since_time: q.get("sinceTime").cloned(),
        limit_bytes: num("limitBytes"),
    }
}

async fn container_logs(
    AxumState(served): AxumState<Arc<Served>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match served.logs.logs(log_request(namespace, pod, container, &q)).await {
        Ok(stream) => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(LogError::NotFound(m)) => plain(StatusCode::NOT_FOUND, m),
        Err(LogError::BadRequest(m)) => plain(StatusCode::BAD_REQUEST, m),
        Err(LogError::Internal(m)) => plain(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

async fn proxied(
    AxumState(served): AxumState<Arc<Served>>,
    Path(path): Path<String>,
    request: Request,
) -> Response {
    let proxy = NodeProxyRequest {
        method: request.method().to_string(),
        path,
        query: request.uri().query().unwrap_or("").to_string(),
    };
    match served.endpoints.proxy(proxy).await {
        Ok(r) => Response::builder()
            .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY))
            .header(header::CONTENT_TYPE, r.content_type)
            .body(Body::from(r.body))
            .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(NodeProxyError::NotFound(m)) => plain(StatusCode::NOT_FOUND, m),
        Err(NodeProxyError::MethodNotAllowed(m)) => plain(StatusCode::METHOD_NOT_ALLOWED, m),
        Err(NodeProxyError::Internal(m)) => plain(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

/// Serve `router` over TLS on `listener` (HTTP/2 and HTTP/1.1) until the process ends.
pub async fn serve_tls(
    router: Router,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
            };
            // The client certificate (verified by the TLS config's client verifier, if it
            // has one) goes with every request of the connection, for authentication.
            let peer_certs = stream.get_ref().1.peer_certificates().map(|chain| {
                crate::authn::PeerCertificates(Arc::new(
                    chain.iter().map(|c| c.clone().into_owned()).collect(),
                ))
            });
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let mut req = req.map(Body::new);
                    if let Some(certs) = &peer_certs {
                        req.extensions_mut().insert(certs.clone());
                    }
                    req.extensions_mut().insert(crate::authn::RemoteAddr(peer));
                    async move { router.oneshot(req).await }
                });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// The client certificate chain and key the api server presents to kubelets
/// (`kube-apiserver-kubelet-client` in `system:masters`, kube-apiserver's
/// `--kubelet-client-certificate`), parsed once.
pub struct ClientIdentity {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// The identity of a certificate and its key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, KubeletClientError> {
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(KubeletClientError::CaPem)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(KubeletClientError::CaPem)?
            .ok_or(KubeletClientError::Tls(rustls::Error::NoCertificatesPresented))?;
        Ok(ClientIdentity { chain, key })
    }
}

/// How the api server authenticates to a kubelet.
pub enum ClientAuth<'a> {
    Certificate(&'a ClientIdentity),
    /// A bearer token (nodes that predate client certificates).
    Token(&'a str),
}

/// The api server's client of one remote node's kubelet API.
pub struct RemoteKubelet {
    node: String,
    base: String,
    token: String,
    client: HttpsClient,
}

impl RemoteKubelet {
    /// A client for the kubelet at `host:port`, trusting only `ca_pem`, that authenticates
    /// with `auth`.
    pub fn new(
        node: &str,
        host: &str,
        port: u16,
        ca_pem: &str,
        auth: ClientAuth<'_>,
    ) -> Result<Self, KubeletClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            let cert = cert.map_err(KubeletClientError::CaPem)?;
            roots.add(cert).map_err(KubeletClientError::CaCert)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(KubeletClientError::Tls)?
            .with_root_certificates(roots);
        let (tls, token) = match auth {
            ClientAuth::Certificate(ClientIdentity { chain, key }) => {
                let tls = builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(KubeletClientError::Tls)?;
                (tls, String::new())
            }
            ClientAuth::Token(token) => (builder.with_no_client_auth(), token.to_string()),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        Ok(Self { node: node.to_string(), base: format!("https://{host}:{port}"), token, client })
    }

    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, KubeletClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut request = http::Request::builder().method(method).uri(&url);
        if !self.token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(KubeletClientError::Request)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(KubeletClientError::Unreachable {
                node: self.node.clone(),
                base: self.base.clone(),
                cause: skiff_store::error_chain(&e),
            }),
            Err(_) => Err(KubeletClientError::Timeout {
                node: self.node.clone(),
                timeout: ANSWER_TIMEOUT,
            }),
        }
    }
}

impl RemoteKubelet {
    /// Proxy a streaming request to the kubelet at `path_and_query`: the kubelet's answer
    /// goes back to the client, and once both sides switched protocols the bytes are spliced.
    pub async fn proxy_upgrade(
        &self,
        parts: http::request::Parts,
        path_and_query: &str,
    ) -> Result<Response, KubeletClientError> {
        let mut request = http::Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path_and_query}", self.base));
        if !self.token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderName::from_static("x-stream-protocol-version"),
        ] {
            for v in parts.headers.get_all(&name) {
                request = request.header(&name, v);
            }
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(KubeletClientError::Request)?;
        let mut answer =
            match tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return Err(KubeletClientError::Unreachable {
                        node: self.node.clone(),
                        base: self.base.clone(),
                        cause: skiff_store::error_chain(&e),
                    });
                }
                Err(_) => {
                    return Err(KubeletClientError::Timeout {
                        node: self.node.clone(),
                        timeout: ANSWER_TIMEOUT,
                    });
                }
            };
        let mut response = Response::builder().status(answer.status());
        for (k, v) in answer.headers() {
            response = response.header(k, v);
        }
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return response.body(Body::from(body)).map_err(KubeletClientError::Request);
        }
        let node_side = hyper::upgrade::on(&mut answer);
        let client_side = hyper::upgrade::on(http::Request::from_parts(parts, ()));
        let node = self.node.clone();
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = (client_side.await, node_side.await) else {
                tracing::debug!(%node, "streaming connection did not switch protocols");
                return;
            };
            let mut a = hyper_util::rt::TokioIo::new(a);
            let mut b = hyper_util::rt::TokioIo::new(b);
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
        response.body(Body::empty()).map_err(KubeletClientError::Request)
    }
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

#[async_trait]
impl PodLogSource for RemoteKubelet {
    async fn logs(
        &self,
        r: LogRequest,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, LogError> {
        let mut q = vec![format!("podUID={}", enc(&r.pod_uid))];
        for (k, on) in
            [("follow", r.follow), ("previous", r.previous), ("timestamps", r.timestamps)]
        {
            if on {
                q.push(format!("{k}=true"));
            }
        }
        for (k, v) in [
            ("tailLines", r.tail_lines),
            ("sinceSeconds", r.since_seconds),
            ("limitBytes", r.limit_bytes),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={v}"));
            }
        }
        if let Some(t) = &r.since_time {
            q.push(format!("sinceTime={}", enc(t)));
        }
        let path = format!(
            "/containerLogs/{}/{}/{}?{}",
            enc(&r.namespace),
            enc(&r.pod),
            enc(&r.container),
            q.join("&")
        );
        let response =
            self.send("GET", &path).await.map_err(|e| LogError::Internal(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body =
                response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let message = String::from_utf8_lossy(&body).into_owned();
            return Err(match status {
                StatusCode::NOT_FOUND => LogError::NotFound(message),
                StatusCode::BAD_REQUEST => LogError::BadRequest(message),
                _ => {
                    LogError::Internal(format!("node {:?} answered {status}: {message}", self.node))
                }
            });
        }
        let stream =
            http_body_util::BodyStream::new(response.into_body()).filter_map(|frame| async move {
                match frame {
                    Ok(f) => f.into_data().ok().map(Ok),
                    Err(e) => Some(Err(std::io::Error::other(e))),
                }
            });
        Ok(stream.boxed())
    }
}

#[async_trait]
impl NodeEndpoints for RemoteKubelet {
    async fn proxy(&self, r: NodeProxyRequest) -> Result<NodeProxyResponse, NodeProxyError> {
        let mut path = format!("/{}", r.path.trim_start_matches('/'));
        if !r.query.is_empty() {
            path = format!("{path}?{}", r.query);
        }
        let response = self
            .send(&r.method, &path)
            .await
            .map_err(|e| NodeProxyError::Internal(e.to_string()))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| NodeProxyError::Internal(format!("reading node {:?}: {e}", self.node)))?
            .to_bytes();
        Ok(NodeProxyResponse { status, content_type, body })
    }
}

/// Where a Node object says its kubelet API is: its InternalIP and kubelet port, when it has
/// one (port 0 or absent: the node serves no remote API).
pub fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")?.as_u64()?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let ip = node
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?
        .get("address")?
        .as_str()?
        .to_string();
    Some((ip, port))
}
