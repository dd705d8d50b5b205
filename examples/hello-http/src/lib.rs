//! A wasi:http component for Skiff's examples and tests: Skiff serves it on the pod's IP at
//! each declared containerPort, one instance per request.
//!
//! - `GET /` answers "hello from Skiff" and the pod name (env `POD_NAME`).
//! - `GET /healthz` answers 200.
//! - `GET /ready` answers 200 when `/data/ready` exists, else 503 (a readiness gate a sidecar
//!   can open by writing that file into a shared emptyDir).
//! - `GET /file?path=P` answers the content of file P (404 when it cannot be read).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

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
            _ => respond(out, 404, b"not found\n"),
        }
    }
}
