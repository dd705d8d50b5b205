//! A wasi:http component for Skiff's examples and tests: Skiff serves it on the pod's IP at
//! each declared containerPort, one instance per request.
//!
//! - `GET /` answers "hello from Skiff" and the pod name (env `POD_NAME`).
//! - `GET /healthz` answers 200.
//! - `GET /ready` answers 200 when `/data/ready` exists, else 503 (a readiness gate a sidecar
//!   can open by writing that file into a shared emptyDir).
//! - `GET /file?path=P` answers the content of file P (404 when it cannot be read).
//! - `GET /fetch?url=http://HOST[:PORT]/PATH` makes an outgoing `wasi:http` request and
//!   answers its status and body (502 with the error when it fails): how a Wasm guest calls
//!   another Service by its name. `&timeout_ms=N` (after the URL) bounds its connect and its
//!   wait for the first response byte (the host's default is 600 s): a probe of a peer whose
//!   packets are dropped (NetworkPolicy) then fails fast.
//! - `GET /burn?ms=N` keeps the CPU busy for N ms (at most 1000) before answering: load for
//!   autoscaling on CPU.
//! - `GET /metrics` answers a few gauges in the Prometheus text format (for
//!   `prometheus.io/scrape`).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, RequestOptions,
    ResponseOutparam, Scheme,
};

struct HelloHttp;

wasi::http::proxy::export!(HelloHttp);

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

impl Guest for HelloHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        match path {
            "/" => {
                let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
                respond(out, 200, format!("hello from Skiff, pod {pod}\n").as_bytes());
            }
            "/healthz" => respond(out, 200, b"ok\n"),
            "/burn" => {
                let ms: u64 = query.strip_prefix("ms=").and_then(|m| m.parse().ok()).unwrap_or(10);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms.min(1000));
                let mut x: u64 = 1;
                while std::time::Instant::now() < until {
                    for i in 0..10_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                    }
                }
                respond(out, 200, format!("burned {ms} ms ({})\n", x % 10).as_bytes());
            }
            "/metrics" => {
                let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
                let body = format!(
                    "# HELP hello_up Whether the example answers.\n# TYPE hello_up gauge\nhello_up 1\n# HELP hello_info The pod answering.\n# TYPE hello_info gauge\nhello_info{{pod=\"{pod}\"}} 1\n"
                );
                respond(out, 200, body.as_bytes());
            }
            "/ready" => {
                if std::fs::metadata("/data/ready").is_ok() {
                    respond(out, 200, b"ready\n");
                } else {
                    respond(out, 503, b"not ready: /data/ready does not exist\n");
                }
            }
            "/file" => {
                let file = query.strip_prefix("path=").unwrap_or("");
                match std::fs::read(file) {
                    Ok(data) => respond(out, 200, &data),
                    Err(e) => respond(out, 404, format!("{file}: {e}\n").as_bytes()),
                }
            }
            "/fetch" => {
                let query = query.strip_prefix("url=").unwrap_or("");
                let (url, timeout_ms) = match query.split_once("&timeout_ms=") {
                    Some((url, ms)) => (url, ms.parse::<u64>().ok()),
                    None => (query, None),
                };
                match fetch(url, timeout_ms) {
                    Ok((status, body)) => respond(out, status, &body),
                    Err(e) => respond(out, 502, format!("fetching {url}: {e}\n").as_bytes()),
                }
            }
            _ => respond(out, 404, b"not found\n"),
        }
    }
}

/// GET `url` (plain HTTP) through the host's `wasi:http/outgoing-handler`, its connect and
/// first byte each bounded by `timeout_ms` when given.
fn fetch(url: &str, timeout_ms: Option<u64>) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are fetched")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let options = timeout_ms.map(|ms| {
        let options = RequestOptions::new();
        let ns = ms.saturating_mul(1_000_000);
        // An error says the host does not support the timeout: the default applies.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        options
    });
    let future = outgoing_handler::handle(request, options).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match future.get() {
            Some(result) => break result.map_err(|()| "response taken twice")?.map_err(|e| format!("{e:?}"))?,
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut data = Vec::new();
    // A bounded read: the example answers small bodies only.
    while data.len() < 1 << 20 {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    Ok((status, data))
}
