//! kube's HTTP transport on wasm32-wasip2: each request goes to the api server through
//! `wasi:http/outgoing-handler`, and the host makes the HTTPS connection (verifying the server
//! with the cluster CA, as an OCI pod does with its mounted `ca.crt`). A `tower::Service`, so
//! `kube::Client::new` takes it as it takes hyper's stack; responses stream (watches work).
//!
//! Credentials are in-cluster: the service account token is read afresh for every request
//! (projected tokens rotate), and sent as `Authorization: Bearer`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

use super::reactor::Readiness;

/// How long the host may take to connect to the api server.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the api server may take to start answering. kube's own stack waits as long: a
/// watch answers its headers at once and its events later, within its `timeoutSeconds` (290).
const FIRST_BYTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(295);
/// The most read from a body stream at a time.
const READ_CHUNK: u64 = 64 * 1024;

/// Headers `wasi:http` hosts refuse from guests (wasmtime's defaults): the host frames the
/// request itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("reading the service account token {path}: {source}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the request body: {0}")]
    RequestBody(String),
    #[error("building the request: {0}")]
    Request(String),
    #[error("sending the request: {0}")]
    Send(String),
    #[error("reading the response: {0}")]
    Response(String),
}

fn http_error(what: &str, e: ErrorCode) -> TransportError {
    TransportError::Send(format!("{what}: {e:?}"))
}

/// Requests to the api server at `authority` (`host:port`) as the pod's service account.
#[derive(Clone)]
pub struct WasiHttp {
    inner: Arc<Inner>,
}

struct Inner {
    authority: String,
    token_file: PathBuf,
}

impl WasiHttp {
    pub fn new(authority: String, token_file: PathBuf) -> WasiHttp {
        WasiHttp { inner: Arc::new(Inner { authority, token_file }) }
    }
}

impl tower_service::Service<Request<kube::client::Body>> for WasiHttp {
    type Response = Response<ResponseBody>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Every call is a request of its own: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { send(&inner, request).await })
    }
}

fn method(m: &Method) -> WasiMethod {
    match *m {
        Method::GET => WasiMethod::Get,
        Method::HEAD => WasiMethod::Head,
        Method::POST => WasiMethod::Post,
        Method::PUT => WasiMethod::Put,
        Method::DELETE => WasiMethod::Delete,
        Method::PATCH => WasiMethod::Patch,
        Method::OPTIONS => WasiMethod::Options,
        Method::CONNECT => WasiMethod::Connect,
        Method::TRACE => WasiMethod::Trace,
        ref other => WasiMethod::Other(other.to_string()),
    }
}

async fn send(
    inner: &Inner,
    request: Request<kube::client::Body>,
) -> Result<Response<ResponseBody>, TransportError> {
    let (parts, body) = request.into_parts();
    let body =
        body.collect().await.map_err(|e| TransportError::RequestBody(e.to_string()))?.to_bytes();
    let token = std::fs::read_to_string(&inner.token_file).map_err(|source| {
        TransportError::Token { path: inner.token_file.display().to_string(), source }
    })?;

    let headers = Fields::new();
    for (name, value) in &parts.headers {
        if HOP_BY_HOP.contains(&name.as_str()) || name == http::header::AUTHORIZATION {
            continue;
        }
        headers
            .append(name.as_str(), value.as_bytes())
            .map_err(|e| TransportError::Request(format!("header {name}: {e:?}")))?;
    }
    headers
        .set("authorization", &[format!("Bearer {}", token.trim()).into_bytes()])
        .map_err(|e| TransportError::Request(format!("authorization header: {e:?}")))?;
    if !body.is_empty() {
        headers
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| TransportError::Request(format!("content-length header: {e:?}")))?;
    }

    let outgoing = OutgoingRequest::new(headers);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    outgoing.set_method(&method(&parts.method)).map_err(|()| bad("method"))?;
    outgoing.set_scheme(Some(&Scheme::Https)).map_err(|()| bad("scheme"))?;
    outgoing.set_authority(Some(&inner.authority)).map_err(|()| bad("authority"))?;
    outgoing.set_path_with_query(Some(path)).map_err(|()| bad("path"))?;
    let outgoing_body =
        if body.is_empty() { None } else { Some(outgoing.body().map_err(|()| bad("body"))?) };
    let options = RequestOptions::new();
    // An error only says the host does not support the timeout: its default applies.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT.as_nanos() as u64));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT.as_nanos() as u64));

    // The body is written after `handle`: the host only drains it once the request is sent.
    let future = outgoing_handler::handle(outgoing, Some(options))
        .map_err(|e| http_error("outgoing-handler", e))?;
    if let Some(outgoing_body) = outgoing_body {
        let stream = outgoing_body.write().map_err(|()| bad("body stream"))?;
        write_all(&stream, &body).await?;
        drop(stream);
        OutgoingBody::finish(outgoing_body, None)
            .map_err(|e| http_error("finishing the body", e))?;
    }

    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(e))) => return Err(http_error(&format!("{} {path}", parts.method), e)),
            Some(Err(())) => return Err(TransportError::Response("taken twice".into())),
            None => Readiness::new(future.subscribe()).await,
        }
    };
    drop(future);

    let mut builder = Response::builder().status(response.status());
    let response_headers = response.headers();
    for (name, value) in response_headers.entries() {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value))
        {
            builder = builder.header(name, value);
        }
    }
    drop(response_headers);
    let incoming = response.consume().map_err(|()| TransportError::Response("no body".into()))?;
    drop(response);
    let stream =
        incoming.stream().map_err(|()| TransportError::Response("no body stream".into()))?;
    builder
        .body(ResponseBody { wait: None, stream: Some(stream), body: Some(incoming) })
        .map_err(|e| TransportError::Response(e.to_string()))
}

fn bad(what: &str) -> TransportError {
    TransportError::Request(format!("the host refused the request's {what}"))
}

/// Write `data` to `stream` as the host accepts it, then flush.
async fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), TransportError> {
    let failed =
        |e: StreamError| TransportError::Send(format!("writing the body: {}", stream_error(e)));
    while !data.is_empty() {
        let room = stream.check_write().map_err(failed)?;
        if room == 0 {
            Readiness::new(stream.subscribe()).await;
            continue;
        }
        let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&data[..n]).map_err(failed)?;
        data = &data[n..];
    }
    stream.flush().map_err(failed)?;
    // Flushed once the stream has room for writes again.
    loop {
        match stream.check_write() {
            Ok(0) => Readiness::new(stream.subscribe()).await,
            Ok(_) => return Ok(()),
            Err(e) => return Err(failed(e)),
        }
    }
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// A response body read from the host as it arrives (a watch's events one by one).
pub struct ResponseBody {
    // Dropped in this order (see `Drop`): a pollable before its stream, a stream before its body.
    wait: Option<Readiness>,
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
}

impl ResponseBody {
    fn close(&mut self) {
        self.wait = None;
        self.stream = None;
        self.body = None;
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.close();
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        loop {
            if let Some(wait) = self.wait.as_mut() {
                if Pin::new(wait).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let Some(stream) = self.stream.as_ref() else { return Poll::Ready(None) };
            match stream.read(READ_CHUNK) {
                Ok(chunk) if chunk.is_empty() => {
                    let pollable = stream.subscribe();
                    self.wait = Some(Readiness::new(pollable));
                }
                Ok(chunk) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk))))),
                Err(StreamError::Closed) => {
                    self.close();
                    return Poll::Ready(None);
                }
                Err(e) => {
                    self.close();
                    return Poll::Ready(Some(Err(TransportError::Response(stream_error(e)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}
