//! Joining a control-plane member to a cluster, and listing or removing members.
//!
//! The first server writes a join token to `DATA_DIR/token`:
//! `skiff1.<sha256 of the CA certificate (DER), hex>.<secret>`. A joiner fetches the CA from
//! any member without trusting it (`GET /cacerts`), checks it against the hash in the token,
//! and from then on talks TLS verified against that CA: it sends the secret and its peer URL
//! to `POST /skiff/v1/join` and gets back its member id and what every member holds (the CA
//! with its key, so it can issue its own certificates, and the admin token). The member
//! that answers adds the joiner as a raft learner (through the leader); the joiner promotes
//! itself to voter once it has caught up (see `skiff_store::RaftStore::open_with`).
//!
//! These routes sit beside the Kubernetes API on its listener but outside its bearer-token
//! authentication: `/cacerts` is public, the join call authenticates with the token's secret,
//! and the member routes check the admin token themselves.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff_store::{MembershipError, RaftStore, StoreError, error_chain};

use crate::pki::{PkiError, write_private};

const TOKEN_PREFIX: &str = "skiff1.";
pub const PATH_CACERTS: &str = "/cacerts";
pub const PATH_JOIN: &str = "/skiff/v1/join";
pub const PATH_MEMBERS: &str = "/skiff/v1/members";
pub const PATH_AGENTS: &str = "/skiff/v1/agents";

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("malformed join token: {0}")]
    MalformedToken(&'static str),
    #[error(
        "the cluster CA at {url} does not match the join token (token wants sha256 {expected}, the server presents {actual}); wrong token or wrong server"
    )]
    CaMismatch { url: String, expected: String, actual: String },
    #[error("no certificate in the CA PEM text")]
    NoCertificate,
    #[error("the join was refused: {0}")]
    Refused(String),
    #[error("talking to {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("join token file: {0}")]
    Pki(#[from] PkiError),
    #[error(
        "the server at {url} could not prove it knows the bootstrap token (the token is unknown, expired or deleted, or this is not the cluster's server); not trusting its CA"
    )]
    CaUnproven { url: String },
}

/// A parsed join token. `Display` gives the one-line form.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the cluster CA certificate (DER).
    pub ca_hash: String,
    secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("ca_hash", &self.ca_hash).finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}.{}", self.ca_hash, self.secret)
    }
}

/// Hex SHA-256 of the first certificate in `ca_pem`, over its DER encoding (so reformatting
/// the PEM does not change it).
pub fn ca_hash(ca_pem: &str) -> Result<String, JoinError> {
    let der = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .next()
        .ok_or(JoinError::NoCertificate)?
        .map_err(|_| JoinError::NoCertificate)?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl JoinToken {
    /// A new token for the cluster whose CA is `ca_pem`, with a fresh 256-bit secret.
    pub fn generate(ca_pem: &str) -> Result<JoinToken, JoinError> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        Ok(JoinToken { ca_hash: ca_hash(ca_pem)?, secret })
    }

    pub fn parse(text: &str) -> Result<JoinToken, JoinError> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(JoinError::MalformedToken("it does not start with skiff1."))?;
        let (hash, secret) =
            rest.split_once('.').ok_or(JoinError::MalformedToken("it has no secret"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinError::MalformedToken("the CA hash is not 64 hex digits"));
        }
        if secret.len() < 16
            || !secret.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(JoinError::MalformedToken("the secret is too short or has odd characters"));
        }
        Ok(JoinToken { ca_hash: hash.to_ascii_lowercase(), secret: secret.to_string() })
    }

    /// Whether `ca_pem` is the CA this token was made for.
    pub fn verify_ca(&self, url: &str, ca_pem: &str) -> Result<(), JoinError> {
        let actual = ca_hash(ca_pem)?;
        if !constant_time_eq(actual.as_bytes(), self.ca_hash.as_bytes()) {
            return Err(JoinError::CaMismatch {
                url: url.to_string(),
                expected: self.ca_hash.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Constant-time comparison with a presented secret.
    pub fn secret_matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.secret.as_bytes())
    }

    /// Read the token at `path`, or make one for the CA `ca_pem` and write it there.
    pub fn load_or_create(path: &std::path::Path, ca_pem: &str) -> Result<JoinToken, JoinError> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let token = JoinToken::parse(&text)?;
            token.verify_ca(&path.display().to_string(), ca_pem)?;
            return Ok(token);
        }
        let token = JoinToken::generate(ca_pem)?;
        Self::write(&token, path)?;
        Ok(token)
    }

    /// Write the token to `path` (owner-only), one line.
    pub fn write(&self, path: &std::path::Path) -> Result<(), JoinError> {
        write_private(path, format!("{self}\n").as_bytes())?;
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub secret: String,
    /// Where the joiner serves raft (`https://host:port`).
    pub peer_url: String,
}

/// What a joiner gets: its member id and the cluster's shared credentials.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinBundle {
    pub node_id: u64,
    pub ca_cert: String,
    pub ca_key: String,
    pub admin_token: String,
    /// The cluster's EncryptionConfiguration (YAML): every member must open every member's
    /// sealed values. Absent from members that keep none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_config: Option<String>,
}

impl std::fmt::Debug for JoinBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinBundle").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// What a node agent sends: a credential (the join token's secret or a bootstrap token), the
/// node it will run and, with the join token, a request for its client certificate.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentRequest {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    bootstrap_token: String,
    node_name: String,
    /// The address the node's kubelet API serves on (its InternalIP).
    #[serde(default)]
    node_ip: String,
    /// A PEM certificate request for `system:node:<name>` (join token only: a node joining
    /// with a bootstrap token asks through the certificates API).
    #[serde(default)]
    client_request: String,
}

/// What a node agent gets: the cluster CA, its kubelet serving certificate and, when it
/// joined with the join token, its client certificate. Never a cluster-wide credential.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentBundle {
    pub ca_cert: String,
    /// The node's client certificate (`system:node:<name>`), for its own key.
    #[serde(default)]
    pub client_cert: String,
    /// The certificate and key the node's kubelet API serves with, issued by the cluster CA
    /// for the node's name and address.
    pub kubelet_cert: String,
    pub kubelet_key: String,
}

impl std::fmt::Debug for AgentBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBundle").finish_non_exhaustive()
    }
}

/// The join and member routes of one control-plane member.
pub struct JoinService {
    pub token: JoinToken,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub admin_token: String,
    pub store: Arc<RaftStore>,
    /// The EncryptionConfiguration this member uses, handed to joiners.
    pub encryption_config: Option<String>,
    /// The api server's state: bootstrap tokens are read from it.
    pub api: Arc<crate::State>,
    /// Signs node client certificates for agents joining with the join token.
    pub signer: Arc<crate::certificates::Signer>,
}

fn status(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"message": message.to_string()}).to_string(),
    )
        .into_response()
}

fn membership_error(e: MembershipError) -> Response {
    match e {
        MembershipError::Rejected(why) => status(StatusCode::CONFLICT, why),
        MembershipError::Store(e @ StoreError::Unavailable(_)) => {
            status(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        MembershipError::Store(e) => status(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

impl JoinService {
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(PATH_CACERTS, get(cacerts))
            .route(PATH_JOIN, post(join))
            .route(PATH_AGENTS, post(agent))
            .route(PATH_MEMBERS, get(members))
            .route(&format!("{PATH_MEMBERS}/{{id}}"), delete(remove_member))
            .with_state(self)
    }

    /// The admin token, or a client certificate of the cluster CA in `system:masters` (the
    /// admin kubeconfig's certificate user).
    fn is_admin(&self, headers: &HeaderMap, peer: Option<&crate::authn::PeerCertificates>) -> bool {
        let by_token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), self.admin_token.as_bytes()));
        by_token
            || peer
                .and_then(crate::authn::user_of_certificate)
                .is_some_and(|u| u.groups.iter().any(|g| g == skiff_auth::user::MASTERS))
    }
}

/// The cluster CA, public. Asked with `?token-id=<id>` of a bootstrap token allowed for
/// signing, the answer also carries the CA's HMAC under that token's secret, which proves to a
/// joining node that this server knows its token (kube's signed `cluster-info`).
async fn cacerts(
    State(svc): State<Arc<JoinService>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        svc.ca_cert_pem.clone(),
    )
        .into_response();
    if let Some(id) = q.get("token-id")
        && let Some(sig) = crate::bootstrap_tokens::sign_ca(&svc.api, id, &svc.ca_cert_pem).await
        && let Ok(v) = sig.parse::<http::HeaderValue>()
    {
        response.headers_mut().insert(crate::bootstrap_tokens::CA_SIGNATURE_HEADER, v);
    }
    response
}

async fn join(State(svc): State<Arc<JoinService>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<JoinRequest>(&body) else {
        return status(StatusCode::BAD_REQUEST, "expected {\"secret\": …, \"peerUrl\": …}");
    };
    if !svc.token.secret_matches(&request.secret) {
        tracing::warn!(peer_url = %request.peer_url, "join refused: wrong secret");
        return status(StatusCode::FORBIDDEN, "wrong join token secret");
    }
    if !request.peer_url.starts_with("https://") {
        return status(StatusCode::BAD_REQUEST, "peerUrl must be an https:// URL");
    }
    match svc.store.add_learner(&request.peer_url).await {
        Ok(node_id) => {
            tracing::info!(node_id, peer_url = %request.peer_url, "a member is joining");
            let bundle = JoinBundle {
                node_id,
                ca_cert: svc.ca_cert_pem.clone(),
                ca_key: svc.ca_key_pem.clone(),
                admin_token: svc.admin_token.clone(),
                encryption_config: svc.encryption_config.clone(),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&bundle).unwrap_or_default(),
            )
                .into_response()
        }
        Err(e) => membership_error(e),
    }
}

/// A node agent presents the join token's secret or a bootstrap token and gets its kubelet
/// serving certificate; with the join token also its client certificate (signed here: the
/// join token is trusted as much as the cluster itself). A bootstrap token gets no client
/// certificate: the node asks for one through the certificates API.
async fn agent(State(svc): State<Arc<JoinService>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<AgentRequest>(&body) else {
        return status(StatusCode::BAD_REQUEST, "expected {\"secret\": …, \"nodeName\": …}");
    };
    let with_join_token = if !request.bootstrap_token.is_empty() {
        if crate::bootstrap_tokens::authenticate(&svc.api, &request.bootstrap_token).await.is_none()
        {
            tracing::warn!(node = %request.node_name, "agent refused: invalid bootstrap token");
            return status(
                StatusCode::FORBIDDEN,
                "the bootstrap token is not valid (unknown, expired or deleted)",
            );
        }
        false
    } else if svc.token.secret_matches(&request.secret) {
        true
    } else {
        tracing::warn!(node = %request.node_name, "agent refused: wrong secret");
        return status(StatusCode::FORBIDDEN, "wrong join token secret");
    };
    if request.node_name.is_empty()
        || !request
            .node_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    {
        return status(StatusCode::BAD_REQUEST, "nodeName must be a lowercase DNS name");
    }
    let mut client_cert = String::new();
    if with_join_token && !request.client_request.is_empty() {
        let want = format!("system:node:{}", request.node_name);
        match crate::certificates::parse_request(&request.client_request) {
            Ok(r) if r.common_name == want => {}
            Ok(r) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the client certificate request is for {:?}, not {want:?}",
                        r.common_name
                    ),
                );
            }
            Err(e) => return status(StatusCode::BAD_REQUEST, e),
        }
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        match svc.signer.sign(
            crate::certificates::SIGNER_KUBELET_CLIENT,
            &request.client_request,
            &usages,
            None,
        ) {
            Ok(pem) => client_cert = pem,
            Err(e) => return status(StatusCode::BAD_REQUEST, e),
        }
    }
    let mut hosts = vec![request.node_name.clone()];
    if !request.node_ip.is_empty() {
        hosts.push(request.node_ip.clone());
    }
    let (kubelet_cert, kubelet_key) = match crate::pki::issue_serving_cert(
        &svc.ca_cert_pem,
        &svc.ca_key_pem,
        &format!("system:node:{}", request.node_name),
        &hosts,
    ) {
        Ok(pair) => pair,
        Err(e) => {
            return status(StatusCode::BAD_REQUEST, format!("node certificate for {hosts:?}: {e}"));
        }
    };
    tracing::info!(node = %request.node_name, "an agent joined");
    let bundle =
        AgentBundle { ca_cert: svc.ca_cert_pem.clone(), client_cert, kubelet_cert, kubelet_key };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&bundle).unwrap_or_default(),
    )
        .into_response()
}

async fn members(
    State(svc): State<Arc<JoinService>>,
    peer: Option<axum::Extension<crate::authn::PeerCertificates>>,
    headers: HeaderMap,
) -> Response {
    if !svc.is_admin(&headers, peer.as_deref()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let leader = svc.store.leader().map(|m| m.id);
    let members: Vec<_> = svc
        .store
        .members()
        .into_iter()
        .map(|m| json!({"id": m.id, "peerUrl": m.peer_url, "voter": m.voter}))
        .collect();
    let body = json!({"self": svc.store.node_id(), "leader": leader, "members": members});
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn remove_member(
    State(svc): State<Arc<JoinService>>,
    peer: Option<axum::Extension<crate::authn::PeerCertificates>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if !svc.is_admin(&headers, peer.as_deref()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match svc.store.remove_member(id).await {
        Ok(()) => status(StatusCode::OK, format!("member {id} removed")),
        Err(e) => membership_error(e),
    }
}

/// Accepts any server certificate (signatures still checked, so the handshake is a real
/// one): for fetching the CA, whose hash is checked after, and for an APIService's
/// `insecureSkipTLSVerify`.
#[derive(Debug)]
pub(crate) struct AcceptAnyServer(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTPS request with `tls`; returns the status and body.
async fn https(
    tls: rustls::ClientConfig,
    request: http::Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), JoinError> {
    let url = request.uri().to_string();
    let http_err = |reason: String| JoinError::Http { url: url.clone(), reason };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let call = async {
        let response = client.request(request).await.map_err(|e| http_err(error_chain(&e)))?;
        let code = response.status();
        let body = response.into_body().collect().await.map_err(|e| http_err(e.to_string()))?;
        Ok((code, body.to_bytes()))
    };
    tokio::time::timeout(JOIN_TIMEOUT, call)
        .await
        .map_err(|_| http_err(format!("no answer within {JOIN_TIMEOUT:?}")))?
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(url: &str, e: impl std::fmt::Display) -> JoinError {
    JoinError::Http { url: url.to_string(), reason: format!("tls: {e}") }
}

/// A TLS client that accepts any server certificate: only for fetching the CA, which is
/// checked after.
fn unverified_tls(url: &str) -> Result<rustls::ClientConfig, JoinError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(url, e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
        .with_no_client_auth())
}

/// Fetch the CA of the member at `api_url` (e.g. `https://10.0.0.1:6443`) and check it
/// against `token`. Nothing is trusted before the check.
pub async fn fetch_cluster_ca(api_url: &str, token: &JoinToken) -> Result<String, JoinError> {
    let url = format!("{}{PATH_CACERTS}", api_url.trim_end_matches('/'));
    let tls = unverified_tls(&url)?;
    let request = http::Request::get(&url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| JoinError::Http { url: url.clone(), reason: e.to_string() })?;
    let (code, body) = https(tls, request).await?;
    if code != StatusCode::OK {
        return Err(JoinError::Http { url, reason: format!("answered {code}") });
    }
    let ca = String::from_utf8_lossy(&body).into_owned();
    token.verify_ca(api_url, &ca)?;
    Ok(ca)
}

/// Ask the member at `api_url` to add this one (reachable for raft at `peer_url`) to its
/// cluster. Verifies the member's CA against `token` first; changes nothing anywhere if the
/// token is wrong.
pub async fn request_join(
    api_url: &str,
    token: &JoinToken,
    peer_url: &str,
) -> Result<JoinBundle, JoinError> {
    let body = JoinRequest { secret: token.secret.clone(), peer_url: peer_url.to_string() };
    post_verified(api_url, token, PATH_JOIN, &body).await
}

/// Ask the member at `api_url` for the credentials of a node agent running `node_name`,
/// with a client certificate for `client_request` (PEM). Verifies the member's CA against
/// `token` first.
pub async fn request_agent_credentials(
    api_url: &str,
    token: &JoinToken,
    node_name: &str,
    node_ip: &str,
    client_request: &str,
) -> Result<AgentBundle, JoinError> {
    let body = AgentRequest {
        secret: token.secret.clone(),
        bootstrap_token: String::new(),
        node_name: node_name.to_string(),
        node_ip: node_ip.to_string(),
        client_request: client_request.to_string(),
    };
    post_verified(api_url, token, PATH_AGENTS, &body).await
}

/// Fetch the CA of the member at `api_url` for a node joining with bootstrap token `token`,
/// trusting it only if the member proves it knows the token's secret (the CA's HMAC under
/// it), or, given `ca_cert_hash` (`sha256:<hex>`, as kubeadm's `--discovery-token-ca-cert-hash`),
/// only if the CA has that hash.
pub async fn fetch_cluster_ca_with_bootstrap_token(
    api_url: &str,
    token: &crate::bootstrap_tokens::BootstrapToken,
    ca_cert_hash: Option<&str>,
) -> Result<String, JoinError> {
    let url = format!("{}{PATH_CACERTS}?token-id={}", api_url.trim_end_matches('/'), token.id);
    let tls = unverified_tls(&url)?;
    let http_err = |reason: String| JoinError::Http { url: url.clone(), reason };
    let request = http::Request::get(&url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| http_err(e.to_string()))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build(),
    );
    let response = tokio::time::timeout(JOIN_TIMEOUT, client.request(request))
        .await
        .map_err(|_| http_err(format!("no answer within {JOIN_TIMEOUT:?}")))?
        .map_err(|e| http_err(error_chain(&e)))?;
    if response.status() != StatusCode::OK {
        return Err(http_err(format!("answered {}", response.status())));
    }
    let signature = response
        .headers()
        .get(crate::bootstrap_tokens::CA_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await.map_err(|e| http_err(e.to_string()))?;
    let ca = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    match ca_cert_hash {
        Some(hash) => {
            let hash = hash.trim();
            let expected = hash.strip_prefix("sha256:").unwrap_or(hash).to_ascii_lowercase();
            let actual = ca_hash(&ca)?;
            if !constant_time_eq(actual.as_bytes(), expected.as_bytes()) {
                return Err(JoinError::CaMismatch { url: api_url.to_string(), expected, actual });
            }
        }
        None => {
            let want = token.ca_signature(&ca);
            if !signature.is_some_and(|s| constant_time_eq(s.as_bytes(), want.as_bytes())) {
                return Err(JoinError::CaUnproven { url: api_url.to_string() });
            }
        }
    }
    Ok(ca)
}

/// Ask the member at `api_url` (whose CA `ca` was verified) for the kubelet serving
/// certificate of node `node_name` joining with bootstrap token `token`.
pub async fn request_agent_credentials_with_bootstrap_token(
    api_url: &str,
    ca: &str,
    token: &crate::bootstrap_tokens::BootstrapToken,
    node_name: &str,
    node_ip: &str,
) -> Result<AgentBundle, JoinError> {
    let body = AgentRequest {
        secret: String::new(),
        bootstrap_token: token.to_string(),
        node_name: node_name.to_string(),
        node_ip: node_ip.to_string(),
        client_request: String::new(),
    };
    post_with_ca(api_url, ca, PATH_AGENTS, &body).await
}

/// POST `body` to `path` of the member at `api_url` over TLS verified against the CA that
/// `token` names, and decode the answer.
async fn post_verified<B: Serialize, R: serde::de::DeserializeOwned>(
    api_url: &str,
    token: &JoinToken,
    path: &str,
    body: &B,
) -> Result<R, JoinError> {
    let ca = fetch_cluster_ca(api_url, token).await?;
    post_with_ca(api_url, &ca, path, body).await
}

/// POST `body` to `path` of the member at `api_url` over TLS verified against `ca`, and
/// decode the answer.
async fn post_with_ca<B: Serialize, R: serde::de::DeserializeOwned>(
    api_url: &str,
    ca: &str,
    path: &str,
    body: &B,
) -> Result<R, JoinError> {
    let url = format!("{}{path}", api_url.trim_end_matches('/'));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
        let cert = cert.map_err(|_| JoinError::NoCertificate)?;
        roots.add(cert).map_err(|e| tls_error(&url, e))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&url, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let body = serde_json::to_vec(body).unwrap_or_default();
    let request = http::Request::post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| JoinError::Http { url: url.clone(), reason: e.to_string() })?;
    let (code, body) = https(tls, request).await?;
    if code != StatusCode::OK {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(JoinError::Refused(format!("{code}: {message}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| JoinError::Http { url, reason: format!("decoding the answer: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> String {
        let dir = tempfile::tempdir().unwrap();
        crate::pki::Pki::load_or_create(dir.path(), &[]).unwrap().ca_cert_pem
    }

    #[test]
    fn join_token_should_round_trip_through_its_text_form() {
        let ca = ca();
        let token = JoinToken::generate(&ca).unwrap();
        let text = token.to_string();
        assert!(text.starts_with("skiff1."), "{text}");
        let parsed = JoinToken::parse(&format!("{text}\n")).unwrap();
        assert_eq!(parsed, token);
        parsed.verify_ca("test", &ca).unwrap();
        // 256 random bits: two tokens never share a secret.
        assert_ne!(JoinToken::generate(&ca).unwrap().secret, token.secret);
    }

    #[test]
    fn join_token_should_reject_another_clusters_ca() {
        let token = JoinToken::generate(&ca()).unwrap();
        let err = token.verify_ca("https://x", &ca()).unwrap_err();
        assert!(matches!(err, JoinError::CaMismatch { .. }), "{err}");
    }

    #[test]
    fn join_token_should_reject_a_wrong_secret() {
        let token = JoinToken::generate(&ca()).unwrap();
        assert!(token.secret_matches(&token.secret.clone()));
        let mut shorter = token.secret.clone();
        shorter.pop();
        assert!(!token.secret_matches(&shorter));
        let first = if token.secret.starts_with('A') { "B" } else { "A" };
        let flipped = format!("{first}{}", &token.secret[1..]);
        assert!(!token.secret_matches(&flipped));
        assert!(!token.secret_matches(""));
        // The secret never appears in debug output.
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn join_token_should_reject_malformed_text() {
        let good = JoinToken::generate(&ca()).unwrap().to_string();
        for bad in [
            "",
            "skiff1.",
            "skiff2.abc.def",
            &good.replacen("skiff1.", "", 1),
            &format!("skiff1.{}.short", "a".repeat(64)),
            &format!("skiff1.{}.{}", "g".repeat(64), "s".repeat(43)),
            &format!("skiff1.{}", "a".repeat(64)),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn load_or_create_should_keep_the_token_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let path = dir.path().join("token");
        let a = JoinToken::load_or_create(&path, &ca).unwrap();
        let b = JoinToken::load_or_create(&path, &ca).unwrap();
        assert_eq!(a, b);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        // A token file of another CA is refused rather than silently replaced.
        assert!(JoinToken::load_or_create(&path, &super::tests::ca()).is_err());
    }
}
