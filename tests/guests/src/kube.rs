//! `kube-get PATH`: what an in-cluster Kubernetes client does with its pod's service account
//! (client-go's `InClusterConfig`): read the token and the namespace from
//! `/var/run/secrets/kubernetes.io/serviceaccount`, then
//! `GET https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/PATH` with
//! `Authorization: Bearer <token>`, and print `status CODE` and the body. `{namespace}` in PATH
//! is the pod's namespace.
//!
//! On wasm32-wasip2 the request goes through `wasi:http/outgoing-handler` (the host verifies
//! the server); built natively (a static binary an OCI pod runs) it speaks TLS itself with
//! rustls, verifying the server with the mounted `ca.crt`. wasip1 has no way to do either.
//!
//! Exit codes: 0 when a response came (whatever its status), 1 when the request failed, 2
//! when the pod has no credentials or no api server address.

use std::process::ExitCode;

const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn run(path: &str) -> ExitCode {
    let read = |file: &str| std::fs::read_to_string(format!("{DIR}/{file}"));
    let token = match read("token") {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            println!("no service account token: {e}");
            return ExitCode::from(2);
        }
    };
    let namespace = read("namespace").map(|n| n.trim().to_string()).unwrap_or_default();
    let (Ok(host), Ok(port)) =
        (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT"))
    else {
        println!("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        println!("KUBERNETES_SERVICE_PORT is not a port: {port}");
        return ExitCode::from(2);
    };
    let path = format!("/{}", path.trim_start_matches('/').replace("{namespace}", &namespace));
    println!("GET https://{host}:{port}{path} as the pod's service account in {namespace}");
    match get(&host, port, &path, &token) {
        Ok((status, body)) => {
            println!("status {status}");
            println!("{}", String::from_utf8_lossy(&body));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("request failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `host:port` as a URL authority (IPv6 literals in brackets).
#[cfg_attr(all(target_family = "wasm", not(target_env = "p2")), allow(dead_code))]
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn get(host: &str, port: u16, path: &str, token: &str) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let headers = Fields::new();
    headers
        .set("authorization", &[format!("Bearer {token}").into_bytes()])
        .map_err(|e| format!("authorization header: {e:?}"))?;
    headers
        .set("accept", &[b"application/json".to_vec()])
        .map_err(|e| format!("accept header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Get).map_err(|()| "bad method")?;
    request.set_scheme(Some(&Scheme::Https)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(&authority(host, port))).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match future.get() {
            Some(result) => {
                break result
                    .map_err(|()| "response taken twice")?
                    .map_err(|e| format!("{e:?}"))?;
            }
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            // The body's end (or a broken stream: what came is what there is).
            Err(_) => break,
        }
    }
    Ok((status, data))
}

#[cfg(not(target_family = "wasm"))]
fn get(host: &str, port: u16, path: &str, token: &str) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let ca = std::fs::read(format!("{DIR}/ca.crt")).map_err(|e| format!("reading ca.crt: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| format!("ca.crt: {e}"))?;
        roots.add(cert).map_err(|e| format!("ca.crt: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let timeout = Duration::from_secs(30);
    let sock = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        authority(host, port)
    );
    tls.write_all(request.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A server that closes without TLS close_notify after the whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    parse_response(&raw)
}

#[cfg(all(target_family = "wasm", not(target_env = "p2")))]
fn get(_host: &str, _port: u16, _path: &str, _token: &str) -> Result<(u16, Vec<u8>), String> {
    Err("HTTPS needs wasi:http (build for wasm32-wasip2)".into())
}

/// Status and body of an HTTP/1.1 response read to its end (a chunked body is de-chunked).
#[cfg_attr(target_family = "wasm", allow(dead_code))]
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}
