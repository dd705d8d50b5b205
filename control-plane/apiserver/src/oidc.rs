//! OIDC ID token authentication: kube-apiserver's `--oidc-*` token authenticator
//! (`k8s.io/apiserver/plugin/pkg/authenticator/token/oidc`). Verification itself is
//! [`skiff_auth::oidc`]; this module keeps its keys current.
//!
//! Keys come either from the issuer (`GET {issuer}/.well-known/openid-configuration`, then
//! its `jwks_uri`, over HTTPS trusting `--oidc-ca-file` or the system CAs), fetched in the
//! background at start and every hour and again when a token names a key not yet seen
//! (rate-limited), or from a JWKS file (`--oidc-jwks-file`, a Skiff extension for clusters
//! that cannot reach their issuer), re-read when it changes. An unreachable issuer never
//! stops the server: tokens are refused until keys arrive.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use skiff_auth::UserInfo;
use skiff_auth::oidc::{OidcConfigError, OidcVerifier};

pub use skiff_auth::oidc::{Jwks, OidcConfig};

/// How often the JWKS file's modification time is looked at, at most.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Keys are fetched from the issuer this often even when nothing asks for it, so revoked
/// keys stop verifying.
const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Least time between two fetches: bounds what tokens with made-up key ids can make the
/// server do to the issuer.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Retry delays after a failed background fetch: from the first to the last, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_LAST: Duration = Duration::from_secs(300);
/// Each request to the issuer, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets are a few KiB; more is not an issuer's answer.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The `--oidc-*` flags.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    pub config: OidcConfig,
    /// `--oidc-ca-file`: the CAs the issuer's certificate must chain to, instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// `--oidc-jwks-file`: take keys from this file instead of the issuer.
    pub jwks_file: Option<PathBuf>,
}

/// A configuration the server refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error(transparent)]
    Config(#[from] OidcConfigError),
    #[error("oidc CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("oidc TLS client configuration: {0}")]
    Tls(String),
}

/// Why keys could not be fetched (logged; never fatal).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: {reason}")]
    Document { url: String, reason: String },
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Verifies the ID tokens of one issuer with its current keys. Shared by every request;
/// `authenticate` is safe to call concurrently.
pub struct OidcAuthenticator {
    /// Swapped whole when the keys change.
    verifier: RwLock<Arc<OidcVerifier>>,
    /// Bumped on every swap, so a caller that waited for a fetch knows whether to retry.
    generation: AtomicU64,
    source: KeySource,
}

enum KeySource {
    File(FileKeys),
    /// Boxed: the HTTPS client is large, and there is one of these per server.
    Issuer(Box<IssuerKeys>),
}

struct FileKeys {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    checked_at: Option<Instant>,
    /// Modification time and length of the file last read.
    stamp: Option<(SystemTime, u64)>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct IssuerKeys {
    client: HttpsClient,
    /// Held across a fetch: concurrent callers wait for it rather than starting their own.
    fetches: tokio::sync::Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    /// When the last fetch started.
    attempted: Option<Instant>,
    /// When the last successful fetch started.
    succeeded: Option<Instant>,
}

impl OidcAuthenticator {
    /// An authenticator for `options`. With an issuer to fetch keys from, spawns the task
    /// that does (so it must run inside a tokio runtime); the task ends when the
    /// authenticator is dropped. Fails only on flags kube-apiserver would refuse or an
    /// unreadable CA file, never because the issuer or the key file is unavailable.
    pub fn start(options: OidcOptions) -> Result<Arc<OidcAuthenticator>, OidcSetupError> {
        let verifier = OidcVerifier::new(options.config, Jwks::default())?;
        let source = match &options.jwks_file {
            Some(path) => KeySource::File(FileKeys {
                path: path.clone(),
                state: Mutex::new(FileState::default()),
            }),
            None => KeySource::Issuer(Box::new(IssuerKeys {
                client: https_client(options.ca_file.as_deref())?,
                fetches: tokio::sync::Mutex::new(Fetches::default()),
            })),
        };
        let authenticator = Arc::new(OidcAuthenticator {
            verifier: RwLock::new(Arc::new(verifier)),
            generation: AtomicU64::new(0),
            source,
        });
        match &authenticator.source {
            KeySource::File(file) => authenticator.reload_file(file),
            KeySource::Issuer(_) => {
                tokio::spawn(refresh_loop(Arc::downgrade(&authenticator)));
            }
        }
        Ok(authenticator)
    }

    /// The user of `token`, if it is a valid ID token of the configured issuer and client.
    /// Any failure is `None` (the caller answers 401 without detail); the reason is logged
    /// at debug, the token never.
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if let KeySource::File(file) = &self.source {
            self.reload_file(file);
        }
        let now = unix_now();
        let generation = self.generation.load(Ordering::Acquire);
        let mut result = self.current().verify(token, now);
        if let Err(e) = &result
            && e.wants_key_refresh()
            && let KeySource::Issuer(issuer) = &self.source
        {
            tracing::debug!(reason = %e, "oidc: looking for new keys at the issuer");
            self.fetch_keys(issuer, MIN_REFETCH_INTERVAL).await;
            if self.generation.load(Ordering::Acquire) != generation {
                result = self.current().verify(token, now);
            }
        }
        match result {
            Ok(user) => Some(user),
            Err(e) => {
                tracing::debug!(reason = %e, "oidc: token refused");
                None
            }
        }
    }

    /// Number of keys tokens are verified with now.
    pub fn key_count(&self) -> usize {
        self.current().jwks().len()
    }

    fn current(&self) -> Arc<OidcVerifier> {
        self.verifier.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, jwks: Jwks) {
        if jwks.is_empty() {
            tracing::warn!("oidc: the issuer's key set holds no usable signing key");
        }
        let mut verifier = self.verifier.write().unwrap_or_else(|e| e.into_inner());
        *verifier = Arc::new(verifier.with_keys(jwks));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Re-read the key file if it changed since it was last read; looks at most every
    /// [`FILE_CHECK_INTERVAL`]. A file that cannot be read or parsed leaves the keys as they
    /// were.
    fn reload_file(&self, file: &FileKeys) {
        let mut state = file.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked_at.is_some_and(|t| t.elapsed() < FILE_CHECK_INTERVAL) {
            return;
        }
        let first = state.checked_at.replace(Instant::now()).is_none();
        let stamp = match std::fs::metadata(&file.path) {
            Ok(m) => m.modified().ok().map(|t| (t, m.len())),
            Err(e) => {
                // Said once when the file goes missing, not on every check.
                if state.stamp.take().is_some() || first {
                    tracing::warn!(path = %file.path.display(), error = %e, "oidc: reading the JWKS file; keeping the keys loaded before");
                }
                return;
            }
        };
        if stamp.is_some() && stamp == state.stamp {
            return;
        }
        state.stamp = stamp;
        match read_jwks_file(&file.path) {
            Ok(jwks) => {
                tracing::info!(path = %file.path.display(), keys = jwks.len(), "oidc: loaded keys");
                self.install(jwks);
            }
            Err(e) => tracing::warn!(error = %e, "oidc: keeping the keys loaded before"),
        }
    }

    /// Fetch the issuer's keys unless a fetch started less than `min_interval` ago (a
    /// caller arriving during a fetch waits for it). Returns whether a fetch succeeded.
    async fn fetch_keys(&self, issuer: &IssuerKeys, min_interval: Duration) -> bool {
        let mut fetches = issuer.fetches.lock().await;
        if fetches.attempted.is_some_and(|t| t.elapsed() < min_interval) {
            return false;
        }
        let started = Instant::now();
        fetches.attempted = Some(started);
        let issuer_url = self.current().config().issuer_url.clone();
        match fetch_jwks(&issuer.client, &issuer_url).await {
            Ok(jwks) => {
                tracing::info!(issuer = %issuer_url, keys = jwks.len(), "oidc: fetched keys");
                self.install(jwks);
                fetches.succeeded = Some(started);
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer_url, error = %e, "oidc: fetching keys");
                false
            }
        }
    }
}

/// Fetches at start, every [`REFRESH_INTERVAL`] after a success, and with a growing delay
/// after failures; ends when the authenticator is gone.
async fn refresh_loop(authenticator: std::sync::Weak<OidcAuthenticator>) {
    let mut retry = RETRY_FIRST;
    loop {
        let delay = {
            let Some(this) = authenticator.upgrade() else { return };
            let KeySource::Issuer(issuer) = &this.source else { return };
            // A fetch a token asked for may have brought fresh keys since this loop last ran.
            let fresh = issuer.fetches.lock().await.succeeded.map(|t| t.elapsed());
            if let Some(age) = fresh.filter(|age| *age < REFRESH_INTERVAL) {
                retry = RETRY_FIRST;
                REFRESH_INTERVAL - age
            } else if this.fetch_keys(issuer, Duration::ZERO).await {
                retry = RETRY_FIRST;
                REFRESH_INTERVAL
            } else {
                let delay = retry;
                retry = (retry * 2).min(RETRY_LAST);
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

fn read_jwks_file(path: &Path) -> Result<Jwks, FetchError> {
    let file_error = |reason: String| FetchError::File { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    Jwks::parse(&bytes).map_err(|e| file_error(e.to_string()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn https_client(ca_file: Option<&Path>) -> Result<HttpsClient, OidcSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error =
                |reason: String| OidcSetupError::CaFile { path: path.to_path_buf(), reason };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no PEM certificate in it".to_string()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "oidc: reading the system's CA certificates");
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OidcSetupError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// The issuer's discovery document, then the key set it points to.
async fn fetch_jwks(client: &HttpsClient, issuer_url: &str) -> Result<Jwks, FetchError> {
    let discovery_url =
        format!("{}/.well-known/openid-configuration", issuer_url.trim_end_matches('/'));
    let body = get(client, &discovery_url).await?;
    let doc_error = |reason: String| FetchError::Document { url: discovery_url.clone(), reason };
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| doc_error(format!("not JSON: {e}")))?;
    // OIDC Discovery: the document must name the issuer it was fetched for, or another
    // party could be serving it.
    let named = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or_default();
    if named != issuer_url {
        return Err(doc_error(format!("it names issuer {named:?}, not {issuer_url:?}")));
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| doc_error("it has no jwks_uri".to_string()))?;
    let body = get(client, jwks_uri).await?;
    Jwks::parse(&body)
        .map_err(|e| FetchError::Document { url: jwks_uri.to_string(), reason: e.to_string() })
}

async fn get(client: &HttpsClient, url: &str) -> Result<Bytes, FetchError> {
    let http_error = |reason: String| FetchError::Http { url: url.to_string(), reason };
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| http_error(e.to_string()))?;
    let call = async {
        let response =
            client.request(request).await.map_err(|e| http_error(skiff_store::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_error(format!("answered {status}")));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| http_error(format!("reading the body: {e}")))?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(FETCH_TIMEOUT, call)
        .await
        .map_err(|_| http_error(format!("no answer within {FETCH_TIMEOUT:?}")))?
}
