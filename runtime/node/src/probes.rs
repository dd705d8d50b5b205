//! Container probes the way the kubelet runs them: one attempt of a `Probe` (exec, httpGet,
//! tcpSocket, grpc) with its timeout, and per container a [`ProbeSet`] that applies
//! initialDelaySeconds, periodSeconds, the success/failure thresholds and the startup probe's
//! gating of liveness and readiness.
//!
//! The pod worker drives a `ProbeSet` per running container: it sleeps until
//! [`ProbeSet::next_due`], calls [`ProbeSet::run_due`] and acts on the [`ProbeEvent`]s (status
//! updates, `Unhealthy` events, restarts). A restarted container gets a fresh `ProbeSet`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime_core::{ContainerId, ContainerRuntime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::stats::KubeletMetrics;

#[cfg(test)]
mod tests;

/// `User-Agent` of the kubelet's HTTP probes (`kube-probe/<major>.<minor>`).
const PROBE_USER_AGENT: &str = "kube-probe/1.35";
/// The kubelet reads at most this much of an HTTP probe's answer.
const MAX_BODY: usize = 10 * 1024;

/// Why a probe or hook request got no answer. The messages are the kubelet's (and Go's
/// `net/http`) wording, which the pod's `Unhealthy` and hook events show, capitals included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The runtime could not run the command (its message).
    #[error("{0}")]
    Exec(String),
    #[error("command {command:?} timed out")]
    ExecTimeout { command: String },
    /// The command ran and failed (hooks only: a probe reports the output instead).
    #[error("command '{command}' exited with {code}: {output}")]
    ExitStatus { command: String, code: i32, output: String },
    #[error("couldn't find port: {name} in {container}")]
    NoSuchPort { name: String, container: String },
    #[error("invalid port number: {0}")]
    InvalidPort(i32),
    #[error("dial tcp {addr}: {reason}")]
    Dial { addr: String, reason: String },
    #[error("dial tcp {addr}: i/o timeout")]
    DialTimeout { addr: String },
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    #[error("unsupported protocol scheme {0:?}")]
    UnsupportedScheme(String),
    #[error("invalid server name {host:?}: {reason}")]
    ServerName { host: String, reason: String },
    #[error("tls: {0}")]
    Tls(String),
    /// Building the TLS client failed (rustls' message).
    #[error("{0}")]
    TlsSetup(String),
    /// The HTTP exchange failed (hyper's or http's message).
    #[error("{0}")]
    Http(String),
    #[error("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")]
    ClientTimeout,
    /// An HTTP GET that failed, Go's way: `Get "<url>": <why>`.
    #[error("Get {url:?}: {source}")]
    Get {
        url: String,
        #[source]
        source: Box<ProbeError>,
    },
}

/// Why a gRPC health check got no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// The HTTP/2 connection or stream failed (h2's or the socket's message).
    #[error("{0}")]
    Transport(String),
    #[error("rpc error: code = {code} desc = {message}")]
    Status { code: &'static str, message: String },
    #[error("rpc error: code = Internal desc = empty response")]
    EmptyResponse,
    #[error(transparent)]
    Decode(#[from] grpc_health::DecodeError),
}

/// The outcome of one probe attempt, with the kubelet's wording in `message` (the command's
/// output for exec, the reason for a failure otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub success: bool,
    pub message: String,
}

impl ProbeResult {
    fn success(message: impl Into<String>) -> Self {
        ProbeResult { success: true, message: message.into() }
    }
    fn failure(message: impl Into<String>) -> Self {
        ProbeResult { success: false, message: message.into() }
    }
}

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// `Liveness`, as in the kubelet's messages and the `probe_type` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// What a probe or a lifecycle hook needs to reach its container. Cheap to build.
#[derive(Clone)]
pub struct ProbeContext {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub container_id: ContainerId,
    /// Default host of httpGet/tcpSocket/grpc handlers.
    pub pod_ip: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// Counts every attempt in `prober_probe_total`, when set.
    pub metrics: Option<Arc<KubeletMetrics>>,
}

/// Run one attempt of `probe` against `container`, bounded by its `timeoutSeconds`.
pub async fn run_probe(probe: &Probe, container: &Container, ctx: &ProbeContext) -> ProbeResult {
    let timeout = Duration::from_secs(probe.timeout_seconds.filter(|t| *t > 0).unwrap_or(1) as u64);
    if let Some(exec) = &probe.exec {
        return exec_probe(exec, ctx, timeout).await;
    }
    if let Some(get) = &probe.http_get {
        return match http_get(get, container, &ctx.pod_ip, timeout).await {
            Ok(r) if (200..400).contains(&r.status) => ProbeResult::success(r.body),
            Ok(r) => {
                ProbeResult::failure(format!("HTTP probe failed with statuscode: {}", r.status))
            }
            Err(e) => ProbeResult::failure(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(&ctx.pod_ip);
        let port = match resolve_port(&tcp.port, container) {
            Ok(p) => p,
            Err(e) => return ProbeResult::failure(e.to_string()),
        };
        return match tcp_connect(host, port, timeout).await {
            Ok(_) => ProbeResult::success(""),
            Err(e) => ProbeResult::failure(e.to_string()),
        };
    }
    if let Some(grpc) = &probe.grpc {
        let port = match u16::try_from(grpc.port) {
            Ok(p) if p > 0 => p,
            _ => return ProbeResult::failure(ProbeError::InvalidPort(grpc.port).to_string()),
        };
        return grpc_probe(&ctx.pod_ip, port, grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    ProbeResult::failure("missing probe handler")
}

async fn exec_probe(exec: &ExecAction, ctx: &ProbeContext, timeout: Duration) -> ProbeResult {
    let cmd = exec.command.clone().unwrap_or_default();
    match exec_command(ctx.runtime.as_ref(), &ctx.container_id, &cmd, timeout).await {
        Ok((0, output)) => ProbeResult::success(output),
        Ok((_, output)) => ProbeResult::failure(output),
        Err(e) => ProbeResult::failure(e.to_string()),
    }
}

/// Run `cmd` in the container: `(exit code, stdout followed by stderr)`, or why it could not run.
pub(crate) async fn exec_command(
    runtime: &dyn ContainerRuntime,
    id: &ContainerId,
    cmd: &[String],
    timeout: Duration,
) -> Result<(i32, String), ProbeError> {
    match tokio::time::timeout(timeout, runtime.exec_sync(id, cmd, timeout)).await {
        Ok(Ok(r)) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            Ok((r.exit_code, String::from_utf8_lossy(&out).into_owned()))
        }
        Ok(Err(e)) => Err(ProbeError::Exec(e.to_string())),
        Err(_) => Err(ProbeError::ExecTimeout { command: cmd.join(" ") }),
    }
}

/// A port given by number or by the name of one of the container's ports.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| ProbeError::NoSuchPort {
                    name: s.clone(),
                    container: container.name.clone(),
                })?,
        },
    };
    match u16::try_from(number) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ProbeError::InvalidPort(number)),
    }
}

/// `host:port`, bracketing IPv6 literals.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ProbeError::Dial { reason: dial_error(&e), addr }),
        Err(_) => Err(ProbeError::DialTimeout { addr }),
    }
}

/// Go's wording for the usual connect errors.
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => format!("connect: {e}"),
    }
}

/// An HTTP answer: status and the first [`MAX_BODY`] bytes of the body.
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// One GET as the kubelet's probes and hooks send it (no redirects followed; a 3xx counts as
/// an answer). HTTPS does not verify the server's certificate, as the kubelet does not.
pub(crate) async fn http_get(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
    timeout: Duration,
) -> Result<HttpAnswer, ProbeError> {
    let port = resolve_port(&action.port, container)?;
    let host = action.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let path = action.path.as_deref().unwrap_or("");
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let authority = join_host_port(host, port);
    let url = format!("{scheme}://{authority}{path}");
    let go_error = |e: ProbeError| ProbeError::Get { url: url.clone(), source: Box::new(e) };
    let mut req = http::Request::get(&path)
        .header(http::header::HOST, &authority)
        .header(http::header::USER_AGENT, PROBE_USER_AGENT)
        .header(http::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| go_error(ProbeError::Http(e.to_string())))?;
    for h in action.http_headers.iter().flatten() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_str(&h.value),
        ) else {
            return Err(go_error(ProbeError::InvalidHeader(h.name.clone())));
        };
        // Headers named in the probe replace the defaults (Host, User-Agent, Accept).
        if !req.headers().contains_key(&name) || is_default_header(&name) {
            req.headers_mut().remove(&name);
        }
        req.headers_mut().append(name, value);
    }
    let exchange = async {
        let tcp = tcp_connect(host, port, timeout).await?;
        match scheme.as_str() {
            "http" => send(TokioIo::new(tcp), req).await,
            "https" => {
                let tls = tls_connect(host, tcp).await?;
                send(TokioIo::new(tls), req).await
            }
            other => Err(ProbeError::UnsupportedScheme(other.to_string())),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r.map_err(go_error),
        Err(_) => Err(go_error(ProbeError::ClientTimeout)),
    }
}

fn is_default_header(name: &http::HeaderName) -> bool {
    name == http::header::HOST || name == http::header::USER_AGENT || name == http::header::ACCEPT
}

async fn send<T>(io: TokioIo<T>, req: http::Request<Empty<Bytes>>) -> Result<HttpAnswer, ProbeError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let http_error = |e: hyper::Error| ProbeError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(http_error)?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(http_error)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while buf.len() < MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        let take = data.remaining().min(MAX_BODY - buf.len());
                        buf.extend_from_slice(&data.copy_to_bytes(take));
                    }
                }
                Some(Err(e)) => return Err(http_error(e)),
                None => break,
            }
        }
        Ok(HttpAnswer { status, body: String::from_utf8_lossy(&buf).into_owned() })
    }
    .await;
    conn.abort();
    result
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::TlsSetup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls::AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ProbeError::ServerName { host: host.to_string(), reason: e.to_string() })?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Tls(e.to_string()))
}

mod tls {
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    /// Probes do not verify certificates (the kubelet sets `InsecureSkipVerify`), but the
    /// handshake signature is still checked.
    #[derive(Debug)]
    pub(super) struct AcceptAnyCertificate(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// `grpc.health.v1.Health/Check` over plaintext HTTP/2, as the kubelet's grpc probe does.
async fn grpc_probe(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeResult {
    let addr = join_host_port(host, port);
    let secs = timeout.as_secs();
    let deadline = Instant::now() + timeout;
    let connected = tokio::time::timeout_at(deadline, async {
        let tcp =
            TcpStream::connect(&addr).await.map_err(|e| GrpcError::Transport(e.to_string()))?;
        h2::client::handshake(tcp).await.map_err(|e| GrpcError::Transport(e.to_string()))
    })
    .await;
    let (client, conn) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return ProbeResult::failure(format!("error: failed to connect service {addr:?}: {e}"));
        }
        Err(_) => {
            return ProbeResult::failure(format!(
                "timeout: failed to connect service {addr:?} within {secs}s"
            ));
        }
    };
    let conn = tokio::spawn(conn);
    let answer = tokio::time::timeout_at(deadline, grpc_health_check(client, &addr, service)).await;
    conn.abort();
    match answer {
        Err(_) => {
            ProbeResult::failure(format!("timeout: health rpc did not complete within {secs}s"))
        }
        Ok(Err(e)) => ProbeResult::failure(format!("error: health rpc probe failed: {e}")),
        Ok(Ok(1)) => ProbeResult::success("service healthy"),
        Ok(Ok(status)) => ProbeResult::failure(format!(
            "service unhealthy (responded with {:?})",
            grpc_health::status_name(status)
        )),
    }
}

async fn grpc_health_check(
    client: h2::client::SendRequest<Bytes>,
    authority: &str,
    service: &str,
) -> Result<u64, GrpcError> {
    let transport = |e: h2::Error| GrpcError::Transport(e.to_string());
    let mut client = client.ready().await.map_err(transport)?;
    let req = http::Request::post(format!("http://{authority}{}", grpc_health::CHECK_PATH))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, PROBE_USER_AGENT)
        .body(())
        .map_err(|e| GrpcError::Transport(e.to_string()))?;
    let (resp, mut stream) = client.send_request(req, false).map_err(transport)?;
    stream
        .send_data(grpc_health::frame(&grpc_health::encode_request(service)), true)
        .map_err(transport)?;
    let resp = resp.await.map_err(transport)?;
    let trailers_only = grpc_health::status_of(resp.headers());
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(transport)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(transport)?;
    let status = trailers.as_ref().and_then(grpc_health::status_of).or(trailers_only);
    match status {
        Some((code, message)) if code != 0 => {
            return Err(GrpcError::Status { code: grpc_health::code_name(code), message });
        }
        _ if buf.is_empty() => return Err(GrpcError::EmptyResponse),
        _ => {}
    }
    Ok(grpc_health::decode_response(&buf)?)
}

/// The two tiny messages of `grpc.health.v1` and gRPC's framing, encoded by hand.
pub(crate) mod grpc_health {
    pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

    /// A health check answer that is not a well-formed `HealthCheckResponse`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum DecodeError {
        #[error("short grpc frame")]
        ShortFrame,
        #[error("compressed grpc frames are not supported")]
        Compressed,
        #[error("truncated grpc frame")]
        TruncatedFrame,
        #[error("truncated field")]
        TruncatedField,
        #[error("truncated varint")]
        TruncatedVarint,
        #[error("varint too long")]
        VarintTooLong,
        #[error("malformed health response")]
        Malformed,
    }

    /// `HealthCheckRequest { string service = 1; }`
    pub fn encode_request(service: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !service.is_empty() {
            out.push(0x0a);
            put_varint(&mut out, service.len() as u64);
            out.extend_from_slice(service.as_bytes());
        }
        out
    }

    /// `HealthCheckResponse { ServingStatus status = 1; }` → the status number.
    pub fn decode_response(frame: &[u8]) -> Result<u64, DecodeError> {
        let msg = unframe(frame)?;
        let mut status = 0;
        let mut i = 0;
        while i < msg.len() {
            let key = varint(msg, &mut i)?;
            match (key >> 3, key & 7) {
                (1, 0) => status = varint(msg, &mut i)?,
                (_, 0) => {
                    varint(msg, &mut i)?;
                }
                (_, 2) => {
                    let len = varint(msg, &mut i)? as usize;
                    i = i
                        .checked_add(len)
                        .filter(|e| *e <= msg.len())
                        .ok_or(DecodeError::TruncatedField)?;
                }
                (_, 1) => i += 8,
                (_, 5) => i += 4,
                _ => return Err(DecodeError::Malformed),
            }
        }
        Ok(status)
    }

    /// A gRPC length-prefixed message (uncompressed).
    pub fn frame(msg: &[u8]) -> bytes::Bytes {
        let mut out = Vec::with_capacity(msg.len() + 5);
        out.push(0);
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out.into()
    }

    /// The message inside the first gRPC frame of `data`.
    pub fn unframe(data: &[u8]) -> Result<&[u8], DecodeError> {
        if data.len() < 5 {
            return Err(DecodeError::ShortFrame);
        }
        if data[0] != 0 {
            return Err(DecodeError::Compressed);
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        data.get(5..5 + len).ok_or(DecodeError::TruncatedFrame)
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn varint(data: &[u8], i: &mut usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *data.get(*i).ok_or(DecodeError::TruncatedVarint)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintTooLong)
    }

    /// `grpc-status` and `grpc-message` of a header or trailer block.
    pub fn status_of(headers: &http::HeaderMap) -> Option<(u32, String)> {
        let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message =
            headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Some((code, message))
    }

    pub fn status_name(status: u64) -> &'static str {
        match status {
            0 => "UNKNOWN",
            1 => "SERVING",
            2 => "NOT_SERVING",
            3 => "SERVICE_UNKNOWN",
            _ => "UNKNOWN",
        }
    }

    pub fn code_name(code: u32) -> &'static str {
        const NAMES: [&str; 17] = [
            "OK",
            "Canceled",
            "Unknown",
            "InvalidArgument",
            "DeadlineExceeded",
            "NotFound",
            "AlreadyExists",
            "PermissionDenied",
            "ResourceExhausted",
            "FailedPrecondition",
            "Aborted",
            "OutOfRange",
            "Unimplemented",
            "Internal",
            "Unavailable",
            "DataLoss",
            "Unauthenticated",
        ];
        NAMES.get(code as usize).copied().unwrap_or("Unknown")
    }
}

/// What changed after a probe round, for the pod worker to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// `containerStatuses[].started` changed (the startup probe succeeded).
    StartedChanged { started: bool },
    /// `containerStatuses[].ready` changed.
    ReadyChanged { ready: bool },
    /// A probe attempt failed: the kubelet's `Unhealthy` warning event, e.g.
    /// `Readiness probe failed: HTTP probe failed with statuscode: 503`.
    Unhealthy { kind: ProbeKind, message: String },
    /// The liveness or startup probe failed `failureThreshold` times: kill the container (the
    /// kubelet's `Killing` event carries `message`) and restart it per the pod's restartPolicy.
    /// `grace_period_seconds` is the probe's `terminationGracePeriodSeconds`, overriding the
    /// pod's when set.
    Restart { kind: ProbeKind, message: String, grace_period_seconds: Option<i64> },
}

/// One probe of one container: its schedule and threshold counting.
#[derive(Debug)]
struct Prober {
    kind: ProbeKind,
    probe: Probe,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// When the next attempt is due, if the probe runs now (not gated, not on hold).
    next: Instant,
    /// Result of the last attempt and how many in a row gave it.
    last: Option<bool>,
    run: u32,
    /// The published result (passed its threshold); `None` until one has.
    result: Option<bool>,
    /// After a liveness/startup failure, nothing runs until the container is restarted.
    on_hold: bool,
}

impl Prober {
    fn new(kind: ProbeKind, probe: &Probe, started_at: Instant) -> Self {
        let positive =
            |v: Option<i32>, default: u32| v.filter(|v| *v > 0).map_or(default, |v| v as u32);
        let initial_delay =
            Duration::from_secs(probe.initial_delay_seconds.filter(|v| *v > 0).unwrap_or(0) as u64);
        Prober {
            kind,
            probe: probe.clone(),
            period: Duration::from_secs(u64::from(positive(probe.period_seconds, 10))),
            // Validation forces 1 for liveness and startup probes.
            success_threshold: if kind == ProbeKind::Readiness {
                positive(probe.success_threshold, 1)
            } else {
                1
            },
            failure_threshold: positive(probe.failure_threshold, 3),
            next: started_at + initial_delay,
            last: None,
            run: 0,
            result: None,
            on_hold: false,
        }
    }

    /// Count one attempt; `Some(result)` when the published result is (re)set.
    fn record(&mut self, success: bool) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success { self.success_threshold } else { self.failure_threshold };
        if self.run < threshold {
            return None;
        }
        self.result = Some(success);
        if !success && self.kind != ProbeKind::Readiness {
            self.on_hold = true;
            self.run = 0;
        }
        Some(success)
    }
}

/// The probes of one running container and what they concluded: `started` and `ready`.
#[derive(Debug)]
pub struct ProbeSet {
    container: Container,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
    startup: Option<Prober>,
    started: bool,
    ready: bool,
}

impl ProbeSet {
    /// Probes for `container` (its spec), running since `started_at` (for a container adopted
    /// after a kubelet restart, `Instant::now()` minus its age).
    ///
    /// Without a startup probe the container counts as started; without a readiness probe it
    /// is ready once started. A readiness probe starts not ready, a liveness probe healthy.
    pub fn new(container: &Container, started_at: Instant) -> Self {
        let mk = |kind, p: &Option<Probe>| p.as_ref().map(|p| Prober::new(kind, p, started_at));
        let startup = mk(ProbeKind::Startup, &container.startup_probe);
        let readiness = mk(ProbeKind::Readiness, &container.readiness_probe);
        let started = startup.is_none();
        ProbeSet {
            container: container.clone(),
            liveness: mk(ProbeKind::Liveness, &container.liveness_probe),
            ready: started && readiness.is_none(),
            readiness,
            startup,
            started,
        }
    }

    /// `containerStatuses[].started`.
    pub fn started(&self) -> bool {
        self.started
    }

    /// `containerStatuses[].ready`.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The container's name.
    pub fn container_name(&self) -> &str {
        &self.container.name
    }

    fn probers(&self) -> impl Iterator<Item = &Prober> {
        [&self.startup, &self.liveness, &self.readiness].into_iter().flatten()
    }

    fn is_active(&self, p: &Prober) -> bool {
        !p.on_hold && (self.started != (p.kind == ProbeKind::Startup))
    }

    /// When [`run_due`](Self::run_due) next has work; `None` when no probe will run again
    /// (no probes, or the container is to be restarted).
    pub fn next_due(&self) -> Option<Instant> {
        self.probers().filter(|p| self.is_active(p)).map(|p| p.next).min()
    }

    /// Run every probe that is due now (concurrently) and return what changed. Cancel-safe in
    /// the sense that dropping the future loses only this round's attempts.
    pub async fn run_due(&mut self, ctx: &ProbeContext) -> Vec<ProbeEvent> {
        let now = Instant::now();
        let due: Vec<(ProbeKind, Probe)> = self
            .probers()
            .filter(|p| self.is_active(p) && p.next <= now)
            .map(|p| (p.kind, p.probe.clone()))
            .collect();
        let container = &self.container;
        let results =
            futures::future::join_all(due.iter().map(|(kind, probe)| async move {
                (*kind, run_probe(probe, container, ctx).await)
            }))
            .await;
        let mut events = Vec::new();
        for (kind, result) in results {
            if let Some(m) = &ctx.metrics {
                m.record_probe(
                    kind,
                    result.success,
                    &self.container.name,
                    &ctx.pod_namespace,
                    &ctx.pod_name,
                );
            }
            self.apply(kind, result, Instant::now(), &mut events);
        }
        events
    }

    fn prober_mut(&mut self, kind: ProbeKind) -> Option<&mut Prober> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Startup => self.startup.as_mut(),
        }
    }

    fn apply(
        &mut self,
        kind: ProbeKind,
        result: ProbeResult,
        now: Instant,
        events: &mut Vec<ProbeEvent>,
    ) {
        let name = self.container.name.clone();
        let Some(p) = self.prober_mut(kind) else { return };
        p.next = now + p.period;
        if !result.success {
            events.push(ProbeEvent::Unhealthy {
                kind,
                message: format!("{} probe failed: {}", kind.as_str(), result.message),
            });
        }
        let grace = p.probe.termination_grace_period_seconds;
        let Some(published) = p.record(result.success) else { return };
        match (kind, published) {
            (ProbeKind::Readiness, ready) => self.set_ready(ready, events),
            (ProbeKind::Startup, true) => {
                self.started = true;
                events.push(ProbeEvent::StartedChanged { started: true });
                // Liveness and readiness start now (after their initial delays).
                for p in [&mut self.liveness, &mut self.readiness].into_iter().flatten() {
                    p.next = p.next.max(now);
                }
                if self.readiness.is_none() {
                    self.set_ready(true, events);
                }
            }
            (ProbeKind::Liveness, true) => {}
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.set_ready(false, events);
                events.push(ProbeEvent::Restart {
                    kind,
                    message: format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.as_str().to_lowercase()
                    ),
                    grace_period_seconds: grace,
                });
            }
        }
    }

    fn set_ready(&mut self, ready: bool, events: &mut Vec<ProbeEvent>) {
        let ready = ready && self.started;
        if ready != self.ready {
            self.ready = ready;
            events.push(ProbeEvent::ReadyChanged { ready });
        }
    }
}
