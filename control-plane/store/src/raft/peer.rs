//! The peer listener: raft RPCs and requests forwarded to the leader, as postcard bodies
//! over HTTPS with mutual TLS. Both ends present a certificate signed by the cluster CA and
//! verify the other's against it, so only members can talk raft.
//!
//! Routes (all `POST`, body and answer are postcard):
//! `/raft/v1/append`, `/raft/v1/vote`, `/raft/v1/snapshot` carry openraft's own messages and
//! answer `Result<response, RaftError>`; `/raft/v1/forward` carries a [`ForwardRequest`] and
//! answers `Result<ForwardReply, ForwardError>`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use super::cluster::Cluster;
use super::{Command, CommandResponse, NodeId, TypeConfig};

pub(crate) const PATH_APPEND: &str = "/raft/v1/append";
pub(crate) const PATH_VOTE: &str = "/raft/v1/vote";
pub(crate) const PATH_SNAPSHOT: &str = "/raft/v1/snapshot";
pub(crate) const PATH_FORWARD: &str = "/raft/v1/forward";

/// TLS material of one member, as PEM: the cluster CA and this member's peer certificate
/// (signed by that CA, valid for both server and client authentication) with its key.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("reading {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no {0} in the PEM text")]
    Missing(&'static str),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

type Certs = Vec<rustls::pki_types::CertificateDer<'static>>;

fn certs(pem: &str, what: &'static str) -> Result<Certs, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::Missing(what));
    }
    Ok(certs)
}

impl PeerTls {
    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&self.ca_cert_pem, "CA certificate")? {
            roots.add(ca)?;
        }
        Ok(Arc::new(roots))
    }

    fn identity(&self) -> Result<(Certs, rustls::pki_types::PrivateKeyDer<'static>), TlsError> {
        let chain = certs(&self.cert_pem, "peer certificate")?;
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|source| TlsError::Pem { what: "peer key", source })?
            .ok_or(TlsError::Missing("private key"))?;
        Ok((chain, key))
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Server side: HTTP/2, and a client certificate signed by the CA is required.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            Self::provider(),
        )
        .build()?;
        let (chain, key) = self.identity()?;
        let mut config = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Client side: trusts only the CA and presents this member's certificate.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let (chain, key) = self.identity()?;
        let config = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)?;
        Ok(config)
    }
}

/// A request a member sends to the leader instead of serving it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    /// Run a write through raft.
    Write(Command),
    /// Confirm leadership and answer the index a linearizable read must wait for.
    ReadIndex,
    /// Add a learner at this peer URL (or find the one already there); answers its id.
    AddLearner { peer_url: String },
    /// Wait until the learner is caught up, then make it a voter.
    Promote { id: NodeId },
    /// Take the member out of the cluster.
    Remove { id: NodeId },
    /// The member now listens at another peer URL.
    SetPeerUrl { id: NodeId, peer_url: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    Written(CommandResponse),
    ReadIndex(u64),
    Member(NodeId),
    Done,
}

/// Why the leader did not serve a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The receiver is not the leader (any more): nothing was done; ask the leader it names.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// Nothing was done, and trying again later may work (e.g. no quorum right now).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request cannot succeed as asked.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The leader failed while serving it.
    #[error("leader failed: {0}")]
    Failed(String),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

fn reply<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding reply: {e}")).into_response()
        }
    }
}

fn bad_request(e: postcard::Error) -> Response {
    (StatusCode::BAD_REQUEST, format!("decoding request: {e}")).into_response()
}

async fn append(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let rpc: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(rpc) => rpc,
        Err(e) => return bad_request(e),
    };
    reply(&cluster.raft.append_entries(rpc).await)
}

async fn vote(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let rpc: VoteRequest<NodeId> = match decode(&body) {
        Ok(rpc) => rpc,
        Err(e) => return bad_request(e),
    };
    reply(&cluster.raft.vote(rpc).await)
}

async fn snapshot(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let rpc: InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(rpc) => rpc,
        Err(e) => return bad_request(e),
    };
    let last_chunk = rpc.done;
    let meta = rpc.meta.clone();
    let result = cluster.raft.install_snapshot(rpc).await;
    if last_chunk && result.is_ok() {
        cluster.stats.snapshots_received.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            last_log_id = ?meta.last_log_id,
            "received a snapshot from the leader"
        );
    }
    reply(&result)
}

async fn forward(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let request: ForwardRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    reply(&cluster.serve_forwarded(request).await)
}

pub(crate) fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_FORWARD, post(forward))
        // Only members get past the TLS handshake, and a batch of entries or a snapshot
        // chunk may be large: no body limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(cluster)
}

/// Serve `router` on `listener` to clients whose certificate `tls` accepts, until this future
/// is dropped (which also ends every connection it accepted).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "peer listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        connections.spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "peer listener: tls handshake refused");
                    return;
                }
            };
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move { router.oneshot(req.map(Body::new)).await }
                });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await
            {
                tracing::debug!(%remote, error = %e, "peer connection ended with an error");
            }
        });
    }
}
