//! Which streaming transport and protocol a request asks for, the `101 Switching Protocols`
//! answer, serving the upgraded connection, and dialing a runtime's streaming server.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{PodStreams, StreamError, StreamOptions, Target, portforward, remotecommand};

/// exec/attach sub-protocols over WebSocket, in the server's order of preference.
pub const WS_REMOTECOMMAND: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// exec/attach sub-protocols over SPDY.
pub const SPDY_REMOTECOMMAND: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];
pub const PORTFORWARD: &str = "portforward.k8s.io";
/// Port-forward over WebSocket: SPDY tunnelled in binary messages (kubectl ≥ 1.31).
pub const WS_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    WebSocket { key: String },
    Spdy,
}

/// What a streaming request negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub transport: Transport,
    pub protocol: String,
}

/// What a session does.
#[derive(Debug, Clone)]
pub enum Session {
    Exec(StreamOptions),
    Attach(StreamOptions),
    PortForward,
}

impl Session {
    fn is_port_forward(&self) -> bool {
        matches!(self, Session::PortForward)
    }
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = String> + 'a {
    let name = name.to_string();
    headers
        .get_all(name.as_str())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
}

/// Pick the transport and protocol for `session` from the request's headers; the error is
/// the message of kube-apiserver's refusal.
pub fn negotiate(headers: &HeaderMap, session: &Session) -> Result<Negotiated, String> {
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let pf = session.is_port_forward();
    let (transport, offered_in, supported): (_, _, &[&str]) =
        if upgrade.eq_ignore_ascii_case("websocket") {
            let key = headers
                .get(header::SEC_WEBSOCKET_KEY)
                .and_then(|v| v.to_str().ok())
                .ok_or("missing Sec-WebSocket-Key")?
                .to_string();
            let supported = if pf { &[WS_PORTFORWARD][..] } else { WS_REMOTECOMMAND };
            (Transport::WebSocket { key }, "sec-websocket-protocol", supported)
        } else if upgrade.to_ascii_lowercase().starts_with("spdy/3.1") {
            let supported = if pf { &[PORTFORWARD][..] } else { SPDY_REMOTECOMMAND };
            (Transport::Spdy, "x-stream-protocol-version", supported)
        } else {
            return Err("unable to upgrade connection: use a client that upgrades the \
                        connection (WebSocket or SPDY/3.1)"
                .into());
        };
    let offered: Vec<String> = values(headers, offered_in).collect();
    let protocol = offered.iter().find(|p| supported.contains(&p.as_str())).cloned().ok_or_else(
        || {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            )
        },
    )?;
    Ok(Negotiated { transport, protocol })
}

/// The `101 Switching Protocols` answer for `n`.
pub fn switching(n: &Negotiated) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match &n.transport {
        Transport::WebSocket { key } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            if let Ok(v) = HeaderValue::from_str(&n.protocol) {
                h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
        Transport::Spdy => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            if let Ok(v) = HeaderValue::from_str(&n.protocol) {
                h.insert("x-stream-protocol-version", v);
            }
        }
    }
    r
}

/// Serve `session` for `target` on a connection upgraded as `n`. Returns when the session
/// ends (the command exited, the client left, or the connection broke).
pub async fn serve<T>(
    io: T,
    n: Negotiated,
    session: Session,
    target: Target,
    streams: Arc<dyn PodStreams>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match (session, &n.transport) {
        (Session::PortForward, Transport::WebSocket { .. }) => {
            let ws = crate::ws::server(io).await;
            portforward::serve(crate::ws::byte_stream(ws), target, streams).await;
        }
        (Session::PortForward, Transport::Spdy) => portforward::serve(io, target, streams).await,
        (session @ (Session::Exec(_) | Session::Attach(_)), transport) => {
            let exec = matches!(session, Session::Exec(_));
            let (Session::Exec(o) | Session::Attach(o)) = session else { return };
            let command = o.command.clone();
            let for_run = command.clone();
            let run: remotecommand::Run = Box::new(move |stdio| {
                Box::pin(async move {
                    if exec {
                        streams.exec(target, for_run, stdio).await.map(Some)
                    } else {
                        streams.attach(target, stdio).await.map(|()| None)
                    }
                })
            });
            let protocol = remotecommand::Protocol::from_name(&n.protocol);
            match transport {
                Transport::WebSocket { .. } => {
                    let ws = crate::ws::server(io).await;
                    remotecommand::serve_ws(ws, protocol, o, command, run).await;
                }
                Transport::Spdy => remotecommand::serve_spdy(io, protocol, o, command, run).await,
            }
        }
    }
}

/// Switch a connection to a runtime's streaming server (`url` from CRI Exec/Attach/
/// PortForward) to SPDY/3.1 with one of `protocols`; the upgraded connection.
pub async fn dial_spdy(
    url: &str,
    protocols: &[&str],
) -> Result<(TokioIo<hyper::upgrade::Upgraded>, String), StreamError> {
    let uri: http::Uri =
        url.parse().map_err(|e| StreamError::Internal(format!("streaming url {url:?}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(StreamError::Internal(format!(
            "streaming url {url:?}: only plain http on the node is supported"
        )));
    }
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let ip_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((ip_host.as_str(), port));
    let tcp = match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(StreamError::Internal(format!(
                "connecting to the runtime's streaming server {url}: {e}"
            )));
        }
        Err(_) => {
            return Err(StreamError::Internal(format!(
                "the runtime's streaming server {url} did not answer within 10s"
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| StreamError::Internal(format!("streaming server {url}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        req = req.header("X-Stream-Protocol-Version", *p);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| StreamError::Internal(e.to_string()))?;
    let mut response = sender
        .send_request(req)
        .await
        .map_err(|e| StreamError::Internal(format!("streaming server {url}: {e}")))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        use http_body_util::BodyExt;
        let status = response.status();
        let body = response.body_mut().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(StreamError::Internal(format!(
            "the runtime's streaming server answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let protocol = response
        .headers()
        .get("x-stream-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| StreamError::Internal(format!("streaming server {url}: {e}")))?;
    Ok((TokioIo::new(upgraded), protocol))
}

/// Answer a streaming request on this process: negotiate, and once the connection has
/// switched protocols, serve `session` on it in the background. The `101` answer to send,
/// or why the request cannot be upgraded (for a `400`/`403`).
pub fn accept(
    parts: http::request::Parts,
    session: Session,
    target: Target,
    streams: Arc<dyn PodStreams>,
) -> Result<Response<()>, String> {
    let n = negotiate(&parts.headers, &session)?;
    let answer = switching(&n);
    let on_upgrade = hyper::upgrade::on(Request::from_parts(parts, ()));
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), n, session, target, streams).await,
            Err(e) => tracing::debug!(error = %e, "streaming connection did not switch protocols"),
        }
    });
    Ok(answer)
}
