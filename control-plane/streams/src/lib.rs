//! Kubernetes' streaming subresources — `pods/exec`, `pods/attach` and `pods/portforward` —
//! as wire protocols and as the interface a node offers behind them.
//!
//! - [`spdy`]: SPDY/3.1 sessions (kubectl's fallback transport, the tunnel inside
//!   port-forward's WebSocket, and what container runtimes' streaming servers speak).
//! - [`remotecommand`]: exec/attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`)
//!   and over SPDY (`v4.channel.k8s.io`…), server side; and the SPDY client side a node uses
//!   to reach a runtime's streaming server.
//! - [`portforward`]: `portforward.k8s.io` over SPDY (plain, or tunnelled in WebSocket as
//!   `SPDY/3.1+portforward.k8s.io`), server and client.
//! - [`upgrade`]: what an HTTP request asks for and the `101 Switching Protocols` answer.
//!
//! A node implements [`PodStreams`]; the api server (for its embedded node) and an agent's
//! kubelet API serve the protocols on top of it.

pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod upgrade;
mod ws;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub type BoxRead = Box<dyn AsyncRead + Send + Sync + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// A byte stream both ways (a forwarded connection).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
pub type BoxDuplex = Box<dyn Duplex>;

/// A terminal size, as kubectl sends it on the resize stream (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// The standard streams of one exec or attach session, as the caller asked for them.
#[derive(Default)]
pub struct Stdio {
    /// What the client types; ends (EOF) when the client closes its stdin.
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    /// Absent with a TTY (the terminal merges it into stdout).
    pub stderr: Option<BoxWrite>,
    pub tty: bool,
    /// Terminal size changes (with a TTY).
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// Which container a session is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    /// The pod's uid, when the caller knows it (a recreated pod of the same name is refused).
    pub pod_uid: String,
    /// Empty for port-forward (a pod's network is shared by its containers).
    pub container: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No such pod or container on this node, or it does not run.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served as asked (e.g. stdin to a container without one).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

/// How a node runs streaming sessions for its pods. Each call is independent; dropping the
/// future (the client went away) ends the session and frees what it held.
#[async_trait]
pub trait PodStreams: Send + Sync + 'static {
    /// Run `command` in the container with `io`; the command's exit code.
    async fn exec(
        &self,
        target: Target,
        command: Vec<String>,
        io: Stdio,
    ) -> Result<i32, StreamError>;

    /// Join the running container's standard streams until it exits or the client leaves.
    async fn attach(&self, target: Target, io: Stdio) -> Result<(), StreamError>;

    /// A connection to `port` inside the pod's network.
    async fn port_forward(&self, target: Target, port: u16) -> Result<BoxDuplex, StreamError>;
}

/// `pods/exec` and `pods/attach` query options (`PodExecOptions`, `PodAttachOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// Parse a query string (`command` repeats; booleans as Kubernetes reads them).
    pub fn from_query(query: &str) -> Self {
        let mut o = StreamOptions::default();
        for (k, v) in query_pairs(query) {
            let on = v == "true" || v == "1";
            match k.as_str() {
                "container" => o.container = v,
                "command" => o.command.push(v),
                "input" | "stdin" => o.stdin = on,
                "output" | "stdout" => o.stdout = on,
                "error" | "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        // A terminal has one output stream.
        if o.tty {
            o.stderr = false;
        }
        o
    }
}

/// `ports` of a `pods/portforward` query (repeated or comma-separated).
pub fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in query_pairs(query) {
        if k == "ports" {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => return Err(format!("invalid port {p:?}: ports must be 1-65535")),
                }
            }
        }
    }
    Ok(ports)
}

/// Decoded `key=value` pairs of a query string.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
