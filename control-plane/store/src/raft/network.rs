//! The client side of the peer transport: raft RPCs (openraft's `RaftNetwork`) and forwarded
//! requests, as postcard bodies POSTed over HTTPS with mutual TLS (see `peer.rs` for the
//! server). One HTTP/2 client is shared by all peers, so every peer gets one long-lived,
//! multiplexed connection.
//!
//! Transport failures become `Unreachable` (openraft backs off, then retries), an RPC that
//! outlives its `RPCOption` deadline becomes `Timeout`, and an error the remote raft returned
//! becomes `RemoteError`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::peer::{self, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE, PeerTls, TlsError};
use super::{Node, NodeId, TypeConfig};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The request certainly did not reach the peer (no transport, bad address, no
    /// connection): it is safe to send it again, anywhere.
    #[error("peer {url} not reached: {reason}")]
    NotSent { url: String, reason: String },
    /// The request was sent but no answer came back: the peer may or may not have acted on it.
    #[error("no answer from peer {url}: {reason}")]
    NoAnswer { url: String, reason: String },
    #[error("peer {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The peer answered, but not with a success.
    #[error("peer {url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

impl CallError {
    /// Whether the peer certainly did nothing with the request.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, CallError::NotSent { .. })
    }
}

/// An HTTPS client for the peer transport; `None` inside when this member has no TLS material
/// (a single member that never talks to peers).
#[derive(Clone)]
pub(crate) struct PeerHttp {
    client: Option<HttpClient>,
}

impl PeerHttp {
    pub(crate) fn new(tls: Option<&PeerTls>) -> Result<Self, TlsError> {
        let Some(tls) = tls else { return Ok(PeerHttp { client: None }) };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // A dead member should cost a vote or a heartbeat little time.
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(Some(Duration::from_secs(5)))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .build(connector);
        Ok(PeerHttp { client: Some(client) })
    }

    /// POST `body` to `base_url` + `path` and return the answer of a 200 response.
    pub(crate) async fn post(
        &self,
        base_url: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let not_sent = |reason: String| CallError::NotSent { url: base_url.to_string(), reason };
        let Some(client) = &self.client else {
            return Err(not_sent("this member has no peer transport configured".into()));
        };
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/x-postcard")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| not_sent(format!("bad peer address: {e}")))?;
        let call = async {
            let response = client.request(request).await.map_err(|e| {
                let reason = error_chain(&e);
                if e.is_connect() {
                    not_sent(reason)
                } else {
                    CallError::NoAnswer { url: base_url.to_string(), reason }
                }
            })?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| CallError::NoAnswer {
                url: base_url.to_string(),
                reason: error_chain(&e),
            })?;
            let bytes = bytes.to_bytes();
            if status != http::StatusCode::OK {
                return Err(CallError::Status {
                    url: base_url.to_string(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            Ok(bytes)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout { url: base_url.to_string(), after: timeout }),
        }
    }
}

/// `e` and its sources, joined with ": " (what a person needs to act on a transport error).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Hands out a [`PeerClient`] per target.
pub(crate) struct NetworkFactory {
    pub(crate) http: PeerHttp,
    pub(crate) id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient { http: self.http.clone(), source: self.id, target, node: node.clone() }
    }
}

/// Raft RPCs to one peer.
pub(crate) struct PeerClient {
    http: PeerHttp,
    source: NodeId,
    target: NodeId,
    node: Node,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = peer::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let answer = match self.http.post(&self.node.addr, path, body, ttl).await {
            Ok(answer) => answer,
            Err(CallError::Timeout { .. }) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.source,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            // Anything else, including an HTTP error status, means "this peer is not usable
            // right now": back off rather than retry in a tight loop.
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = peer::decode(&answer).map_err(|e| {
            RPCError::Network(NetworkError::new(&Message(format!(
                "decoding the answer of node {}: {e}",
                self.target
            ))))
        })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(PATH_APPEND, RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(PATH_SNAPSHOT, RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(PATH_VOTE, RPCTypes::Vote, &rpc, &option).await
    }

    /// Retry an unreachable peer soon at first (a restarting member is back within a second),
    /// then every half second.
    fn backoff(&self) -> Backoff {
        Backoff::new((0u32..).map(|i| Duration::from_millis((50u64 << i.min(4)).min(500))))
    }
}
