//! Pulling Wasm images from OCI registries (the distribution spec's pull API) into the
//! [`ImageStore`]: tags resolved to digests, image indexes narrowed to the `wasi/wasm`
//! platform, every blob streamed to a staging file while its sha256 is checked and moved
//! into the store only when it matches; blobs already in the store are not fetched again, and
//! a download cut off mid-way resumes (HTTP range request) at the next attempt.
//!
//! A small client on hyper and rustls rather than a full OCI crate: Skiff needs per-endpoint
//! TLS (extra CAs, client certificates), mirrors and plain-HTTP endpoints from the node's
//! `registries.yaml`, and blobs that never sit in memory whole.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde::Deserialize;
use skiff_runtime_core::PullAuth;
use skiff_runtime_core::registries::{Endpoint, HostAuth};

use super::{
    DOCKER_MANIFEST_LIST, ImageError, ImageStore, IndexEntry, OCI_INDEX, OCI_MANIFEST,
    WASM_LAYER_MEDIA_TYPES, WASM_MAGIC, normalize_name, pinned_name,
};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Layer media types of a container image's rootfs (a Wasm image packed as one, as runwasi
/// and spin publish them, carries its module as a file in a single such layer).
const TAR_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];
/// Manifests and indexes are small documents; refuse anything bigger.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Bytes of an error response kept for the message.
const MAX_ERROR_BODY: usize = 4096;
/// How long to wait for a response's headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a blob download may stall before it is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// Why a pull failed. Every message names the registry (`host[:port]`) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    #[error("registry {registry}: {message}")]
    Config { registry: String, message: String },
    /// The registry could not be reached (retryable).
    #[error("registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    /// 401/403: missing or wrong credentials, or no access to the repository.
    #[error("registry {registry}: {what}: {status}{detail}")]
    Unauthorized { registry: String, what: String, status: StatusCode, detail: String },
    #[error("registry {registry}: {what}: not found (404){detail}")]
    NotFound { registry: String, what: String, detail: String },
    #[error("registry {registry}: {what}: unexpected status {status}{detail}")]
    Status { registry: String, what: String, status: StatusCode, detail: String },
    #[error("registry {registry}: {what} does not match its digest {expected} (got {actual})")]
    DigestMismatch { registry: String, what: String, expected: String, actual: String },
    #[error(
        "registry {registry}: blob {digest} is {got} bytes, the manifest says {expected} (truncated or wrong)"
    )]
    SizeMismatch { registry: String, digest: String, expected: u64, got: u64 },
    #[error("registry {registry}: {message}")]
    Unsupported { registry: String, message: String },
    #[error(
        "registry {registry}: blob {digest} needs {needed} bytes, the image store has {available} free"
    )]
    NoSpace { registry: String, digest: String, needed: u64, available: u64 },
    #[error(transparent)]
    Store(#[from] ImageError),
}

impl PullError {
    /// Whether the same pull may succeed later without a change on the node or in the pod.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PullError::Unreachable { .. } | PullError::Status { .. })
    }
}

/// What a pull stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The index name written (`repo:tag` or `repo@sha256:…`).
    pub name: String,
    /// Image id: the digest of the platform manifest.
    pub digest: String,
    /// Digest and size of the wasm module.
    pub wasm_digest: String,
    pub size: u64,
}

/// An image reference split the way registries see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path (`library/busybox` on Docker Hub).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(image: &str) -> Result<Reference, PullError> {
        let invalid = || PullError::InvalidReference(image.to_string());
        let image = image.trim();
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (rest, digest) = match image.split_once('@') {
            Some((rest, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or_else(invalid)?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid());
                }
                (rest, Some(d.to_ascii_lowercase()))
            }
            None => (image, None),
        };
        let (first, remainder) = match rest.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), remainder)
            }
            _ => (None, rest),
        };
        let registry = match first {
            Some("index.docker.io" | "registry-1.docker.io") | None => "docker.io".to_string(),
            Some(host) => host.to_string(),
        };
        let last = remainder.rsplit('/').next().unwrap_or_default();
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => {
                let repo = &remainder[..remainder.len() - tag.len() - 1];
                (repo.to_string(), Some(tag.to_string()))
            }
            None => (remainder.to_string(), None),
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repo || tag.as_ref().is_some_and(|t| t.is_empty() || t.len() > 128) {
            return Err(invalid());
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = if digest.is_none() { Some(tag.unwrap_or_else(|| "latest".into())) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// What the manifest request names: the digest if pinned, else the tag.
    fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A fetched manifest or index.
struct Fetched {
    bytes: Bytes,
    media_type: String,
    digest: String,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

impl ImageStore {
    /// Pull `image` from its registry (or the mirrors `registries.yaml` names) with `auth`,
    /// and point its name at it. Nothing is stored unless the whole image was verified.
    pub async fn pull(&self, image: &str, auth: &PullAuth) -> Result<PulledImage, PullError> {
        let reference = Reference::parse(image)?;
        let name = match &reference.digest {
            Some(d) => {
                let repo = image.rsplit_once('@').map_or(image, |(r, _)| r);
                pinned_name(repo, d).ok_or_else(|| PullError::InvalidReference(image.into()))?
            }
            None => normalize_name(image).map_err(|_| PullError::InvalidReference(image.into()))?,
        };
        let config = self.registry_config();
        let endpoints = config.endpoints(&reference.registry);
        let mut last = None;
        for endpoint in &endpoints {
            let mut session = Session::new(endpoint, auth, &reference)?;
            match session.pull_into(self, &reference).await {
                Ok((digest, entry)) => {
                    self.record(name.clone(), entry.clone())?;
                    return Ok(PulledImage {
                        name,
                        digest,
                        wasm_digest: entry.wasm_digest,
                        size: entry.size,
                    });
                }
                Err(e) if endpoint.mirror => {
                    tracing::info!(image, mirror = %endpoint.base, error = %e, "mirror failed; trying the next endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| PullError::Config {
            registry: reference.registry.clone(),
            message: "no endpoint configured".into(),
        }))
    }
}

/// Talking to one endpoint for one repository.
struct Session<'a> {
    endpoint: &'a Endpoint,
    client: HttpClient,
    /// `host[:port]` as shown in messages.
    registry: String,
    repository: String,
    credentials: Credentials,
    /// `Authorization` value once the registry asked for one.
    authorization: Option<HeaderValue>,
}

#[derive(Clone, Default)]
struct Credentials {
    basic: Option<(String, String)>,
    identity_token: Option<String>,
    registry_token: Option<String>,
}

/// User and password from a username/password pair, or else from a base64 `user:password`.
fn basic_of(
    username: &Option<String>,
    password: &Option<String>,
    auth: &Option<String>,
) -> Option<(String, String)> {
    match (username, password, auth) {
        (Some(u), p, _) if !u.is_empty() => Some((u.clone(), p.clone().unwrap_or_default())),
        (_, _, Some(a)) => decode_auth(a),
        _ => None,
    }
}

impl Credentials {
    fn from_pod(auth: &PullAuth) -> Credentials {
        Credentials {
            basic: basic_of(&auth.username, &auth.password, &auth.auth),
            identity_token: auth.identity_token.clone().filter(|t| !t.is_empty()),
            registry_token: auth.registry_token.clone().filter(|t| !t.is_empty()),
        }
    }

    fn from_config(auth: &HostAuth) -> Credentials {
        Credentials {
            basic: basic_of(&auth.username, &auth.password, &auth.auth),
            identity_token: auth.identity_token.clone().filter(|t| !t.is_empty()),
            registry_token: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.basic.is_none() && self.identity_token.is_none() && self.registry_token.is_none()
    }
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn basic_header(user: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl<'a> Session<'a> {
    fn new(
        endpoint: &'a Endpoint,
        auth: &PullAuth,
        reference: &Reference,
    ) -> Result<Session<'a>, PullError> {
        let registry = endpoint.host.clone();
        let tls = tls::client_config(endpoint)
            .map_err(|message| PullError::Config { registry: registry.clone(), message })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        // Credentials from the pod win; the node's config covers pods that give none.
        let mut credentials = Credentials::from_pod(auth);
        if credentials.is_empty()
            && let Some(a) = &endpoint.config.auth
        {
            credentials = Credentials::from_config(a);
        }
        let authorization = credentials.registry_token.as_ref().and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Ok(Session {
            endpoint,
            client,
            registry,
            repository: reference.repository.clone(),
            credentials,
            authorization,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.endpoint.base, self.repository)
    }

    /// Resolve, fetch and store one image; returns its id and index entry (not yet recorded).
    async fn pull_into(
        &mut self,
        store: &ImageStore,
        reference: &Reference,
    ) -> Result<(String, IndexEntry), PullError> {
        let top =
            self.manifest(reference.manifest_reference(), reference.digest.as_deref()).await?;
        let mut chain = vec![];
        let manifest = if top.media_type == OCI_INDEX || top.media_type == DOCKER_MANIFEST_LIST {
            let doc = self.parse(&top)?;
            let chosen = choose_platform(&doc.manifests).ok_or_else(|| {
                let platforms: Vec<String> = doc
                    .manifests
                    .iter()
                    .map(|m| {
                        m.platform
                            .as_ref()
                            .map_or("(none)".to_string(), |p| format!("{}/{}", p.os, p.architecture))
                    })
                    .collect();
                PullError::Unsupported {
                    registry: self.registry.clone(),
                    message: format!(
                        "the image index has no wasi/wasm manifest (platforms: {}); Skiff's Wasm runtime runs only Wasm images",
                        platforms.join(", ")
                    ),
                }
            })?;
            let digest = chosen.digest.clone();
            chain.push(top);
            self.manifest(&digest, Some(&digest)).await?
        } else {
            top
        };
        if manifest.media_type != OCI_MANIFEST && manifest.media_type != DOCKER_MANIFEST {
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!(
                    "manifest {} has unsupported media type {:?}",
                    manifest.digest, manifest.media_type
                ),
            });
        }
        let doc = self.parse(&manifest)?;
        let (wasm_digest, size) = if let Some(layer) =
            doc.layers.iter().find(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        {
            self.blob(store, layer).await?;
            check_magic(store, &layer.digest, &self.registry)?;
            (layer.digest.clone(), layer.size)
        } else if let [layer] = doc.layers.as_slice()
            && TAR_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str())
        {
            self.blob(store, layer).await?;
            let entrypoint = match &doc.config {
                Some(c) => self.config_entrypoint(store, c).await?,
                None => None,
            };
            self.extract_wasm(store, layer, entrypoint).await?
        } else {
            let found: Vec<&str> = doc.layers.iter().map(|l| l.media_type.as_str()).collect();
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!(
                    "manifest {} has no wasm layer (application/wasm or application/vnd.wasm.content.layer.v1+wasm) nor a single-layer rootfs holding a .wasm file; layer media types: [{}]. Skiff's Wasm runtime runs only Wasm images; run OCI container images with runtimeClassName runc",
                    manifest.digest,
                    found.join(", ")
                ),
            });
        };
        // Manifests last: a store that has them has everything they name.
        for m in chain.iter().chain(std::iter::once(&manifest)) {
            store.put_blob(&m.bytes)?;
        }
        let entry = IndexEntry {
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            size,
            wasm_digest,
        };
        Ok((manifest.digest, entry))
    }

    fn parse(&self, fetched: &Fetched) -> Result<ManifestDoc, PullError> {
        serde_json::from_slice(&fetched.bytes).map_err(|e| PullError::Unsupported {
            registry: self.registry.clone(),
            message: format!("manifest {} is not valid JSON: {e}", fetched.digest),
        })
    }

    /// Fetch a manifest or index by tag or digest; checks it against `expected` if given.
    async fn manifest(
        &mut self,
        reference: &str,
        expected: Option<&str>,
    ) -> Result<Fetched, PullError> {
        let what = format!("manifest {}:{reference}", self.repository);
        let url = self.url(&format!("manifests/{reference}"));
        let response = self.get(&url, Some(MANIFEST_ACCEPT), &what).await?;
        let header_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| self.unreachable(format!("{what}: no data for {IDLE_TIMEOUT:?}")))?
        {
            let frame = frame.map_err(|e| self.unreachable(format!("{what}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > MAX_MANIFEST_BYTES {
                    return Err(PullError::Unsupported {
                        registry: self.registry.clone(),
                        message: format!("{what} is larger than {MAX_MANIFEST_BYTES} bytes"),
                    });
                }
            }
        }
        let digest =
            format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
        if let Some(expected) = expected
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(PullError::DigestMismatch {
                registry: self.registry.clone(),
                what,
                expected: expected.to_string(),
                actual: digest,
            });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Typed {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let typed: Option<Typed> = serde_json::from_slice(&bytes).ok();
        let media_type = typed
            .as_ref()
            .and_then(|t| t.media_type.clone())
            .filter(|m| !m.is_empty())
            .or(header_type.filter(|h| h != "application/json" && !h.is_empty()))
            .unwrap_or_else(|| {
                if typed.as_ref().is_some_and(|t| t.manifests.is_some()) {
                    OCI_INDEX.to_string()
                } else {
                    OCI_MANIFEST.to_string()
                }
            });
        Ok(Fetched { bytes: Bytes::from(bytes), media_type, digest })
    }

    /// Stream blob `desc` into the store unless it is there already.
    async fn blob(&mut self, store: &ImageStore, desc: &Descriptor) -> Result<(), PullError> {
        if store.blob_path(&desc.digest).is_none() {
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!("blob digest {:?} is not a sha256 digest", desc.digest),
            });
        }
        if store.has_blob(&desc.digest) {
            return Ok(());
        }
        if let Some(available) = store.available_bytes()
            && desc.size > available
        {
            return Err(PullError::NoSpace {
                registry: self.registry.clone(),
                digest: desc.digest.clone(),
                needed: desc.size,
                available,
            });
        }
        let what = format!("blob {}", desc.digest);
        let url = self.url(&format!("blobs/{}", desc.digest));
        // What an interrupted attempt left is kept and continued with a range request.
        let mut writer = store.resumable_blob_writer(&desc.digest).await?;
        if writer.len() >= desc.size {
            writer.restart().await?;
        }
        let offset = writer.len();
        let response = self.get_range(&url, None, &what, (offset > 0).then_some(offset)).await?;
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|r| r.starts_with(&format!("bytes {offset}-")));
        if offset > 0 && !resumed {
            // The registry sent the whole blob (or a range we did not ask for).
            writer.restart().await?;
            if response.status() != StatusCode::OK {
                return Err(self.status(&what, response.status(), ": unexpected range".into()));
            }
        } else if offset > 0 {
            tracing::info!(blob = %desc.digest, offset, "resuming an interrupted download");
        }
        let mut body = response.into_body();
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Err(_) => {
                    writer.keep_partial().await;
                    return Err(self.unreachable(format!(
                        "{what}: no data for {IDLE_TIMEOUT:?} after {} of {} bytes",
                        writer.len(),
                        desc.size
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    // A broken connection: the next attempt resumes where this one stopped.
                    writer.keep_partial().await;
                    return Err(self.unreachable(format!(
                        "{what}: download interrupted after {} of {} bytes: {}",
                        writer.len(),
                        desc.size,
                        error_chain(&e)
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if writer.len() + data.len() as u64 > desc.size {
                    return Err(PullError::SizeMismatch {
                        registry: self.registry.clone(),
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        got: writer.len() + data.len() as u64,
                    });
                }
                writer.write(&data).await?;
            }
        }
        if writer.len() != desc.size {
            return Err(PullError::SizeMismatch {
                registry: self.registry.clone(),
                digest: desc.digest.clone(),
                expected: desc.size,
                got: writer.len(),
            });
        }
        if let Err(actual) = writer.commit(&desc.digest).await? {
            return Err(PullError::DigestMismatch {
                registry: self.registry.clone(),
                what,
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The image config's entrypoint program (`config.Entrypoint[0]`), if any.
    async fn config_entrypoint(
        &mut self,
        store: &ImageStore,
        config: &Descriptor,
    ) -> Result<Option<String>, PullError> {
        if config.size > MAX_MANIFEST_BYTES as u64 {
            return Ok(None);
        }
        self.blob(store, config).await?;
        let Some(path) = store.blob_path(&config.digest) else { return Ok(None) };
        let bytes = std::fs::read(&path)
            .map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(value.pointer("/config/Entrypoint/0").and_then(|v| v.as_str()).map(str::to_string))
    }

    /// Take the module out of a single-layer rootfs: the entrypoint if it is a `.wasm` file,
    /// else the only `.wasm` file in the layer. Returns its digest and size.
    async fn extract_wasm(
        &self,
        store: &ImageStore,
        layer: &Descriptor,
        entrypoint: Option<String>,
    ) -> Result<(String, u64), PullError> {
        let Some(path) = store.blob_path(&layer.digest) else {
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!("bad layer digest {}", layer.digest),
            });
        };
        let registry = self.registry.clone();
        let tmp = store.tmp_path("extract");
        let gz = layer.media_type.ends_with("gzip");
        let result = tokio::task::spawn_blocking({
            let tmp = tmp.clone();
            move || extract_wasm_file(&path, gz, entrypoint.as_deref(), &tmp)
        })
        .await
        .map_err(|e| {
            PullError::Store(ImageError::io("extracting wasm", std::io::Error::other(e)))
        })?;
        let outcome = match result {
            Ok(Some(size)) => {
                let bytes =
                    std::fs::read(&tmp).map_err(|e| ImageError::io("reading extracted wasm", e));
                match bytes {
                    Ok(bytes) => store.put_blob(&bytes).map(|d| Ok((d, size))),
                    Err(e) => Err(e),
                }
            }
            Ok(None) => Ok(Err(PullError::Unsupported {
                registry,
                message: format!(
                    "layer {} holds no single .wasm module (nor a .wasm entrypoint); Skiff's Wasm runtime runs only Wasm images",
                    layer.digest
                ),
            })),
            Err(e) => Err(ImageError::io(format!("reading layer {}", layer.digest), e)),
        };
        let _ = std::fs::remove_file(&tmp);
        outcome?
    }

    fn unreachable(&self, message: String) -> PullError {
        PullError::Unreachable { registry: self.registry.clone(), message }
    }

    /// GET `url`, authenticating when the registry asks, following redirects. Returns a 200.
    async fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, PullError> {
        self.get_range(url, accept, what, None).await
    }

    /// [`Self::get`] from byte `from` on (a 206, or a 200 when the server ignores ranges).
    async fn get_range(
        &mut self,
        url: &str,
        accept: Option<&str>,
        what: &str,
        from: Option<u64>,
    ) -> Result<http::Response<hyper::body::Incoming>, PullError> {
        let mut authenticated = self.authorization.is_some();
        let mut url = url.to_string();
        let origin = authority_of(&url);
        let mut redirects = 0;
        loop {
            // Credentials go only to the endpoint itself, never to a redirect's host.
            let authorization =
                if authority_of(&url) == origin { self.authorization.clone() } else { None };
            let response = self.send(Method::GET, &url, accept, authorization, None, from).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated && authority_of(&url) == origin
            {
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let detail = error_detail(response).await;
                let Some(challenge) = challenge else {
                    return Err(self.unauthorized(what, status, detail));
                };
                self.authorization = Some(self.authorize(&challenge, what).await?);
                authenticated = true;
                continue;
            }
            if status.is_redirection() {
                let Some(location) =
                    response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok())
                else {
                    return Err(self.status(what, status, String::new()));
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(self.status(what, status, ": too many redirects".into()));
                }
                url = resolve_location(&url, location);
                continue;
            }
            if status == StatusCode::OK || (from.is_some() && status == StatusCode::PARTIAL_CONTENT)
            {
                return Ok(response);
            }
            let detail = error_detail(response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    self.unauthorized(what, status, detail)
                }
                StatusCode::NOT_FOUND => PullError::NotFound {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    detail,
                },
                _ => self.status(what, status, detail),
            });
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<HeaderValue>,
        form: Option<String>,
        range_from: Option<u64>,
    ) -> Result<http::Response<hyper::body::Incoming>, PullError> {
        let mut builder =
            Request::builder().method(method).uri(url).header(header::USER_AGENT, "skiff");
        if let Some(from) = range_from {
            builder = builder.header(header::RANGE, format!("bytes={from}-"));
        }
        if let Some(a) = accept {
            builder = builder.header(header::ACCEPT, a);
        }
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let body = match form {
            Some(f) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| PullError::Config {
            registry: self.registry.clone(),
            message: format!("bad request URL {url}: {e}"),
        })?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
            Err(_) => {
                Err(self.unreachable(format!("no response from {url} within {REQUEST_TIMEOUT:?}")))
            }
            Ok(Err(e)) => Err(self.unreachable(format!("{url}: {}", error_chain(&e)))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Answer a `WWW-Authenticate` challenge: `Basic` with the credentials, or `Bearer` with a
    /// token from the registry's token service (anonymous when there are no credentials).
    async fn authorize(&self, challenge: &str, what: &str) -> Result<HeaderValue, PullError> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return match &self.credentials.basic {
                Some((u, p)) => basic_header(u, p).ok_or_else(|| PullError::Config {
                    registry: self.registry.clone(),
                    message: "credentials are not valid header text".into(),
                }),
                None => Err(self.unauthorized(
                    what,
                    StatusCode::UNAUTHORIZED,
                    ": the registry wants a username and password and none were given (imagePullSecrets)".into(),
                )),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!("unsupported authentication scheme {scheme:?}"),
            });
        }
        let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()) else {
            return Err(PullError::Unsupported {
                registry: self.registry.clone(),
                message: "bearer challenge without a realm".into(),
            });
        };
        let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
        let scope = params
            .iter()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let enc = |s: &str| urlencoding::encode(s).into_owned();
        let response = if let Some(token) = &self.credentials.identity_token {
            let mut form = format!(
                "grant_type=refresh_token&client_id=skiff&refresh_token={}&scope={}",
                enc(token),
                enc(&scope)
            );
            if let Some(s) = &service {
                form.push_str(&format!("&service={}", enc(s)));
            }
            self.send(Method::POST, &realm, None, None, Some(form), None).await?
        } else {
            let mut url = format!(
                "{realm}{}scope={}",
                if realm.contains('?') { '&' } else { '?' },
                enc(&scope)
            );
            if let Some(s) = &service {
                url.push_str(&format!("&service={}", enc(s)));
            }
            let basic = self.credentials.basic.as_ref().and_then(|(u, p)| basic_header(u, p));
            self.send(Method::GET, &url, None, basic, None, None).await?
        };
        let status = response.status();
        if status != StatusCode::OK {
            let detail = error_detail(response).await;
            let what = format!("{what}: token service {realm}");
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    self.unauthorized(&what, status, detail)
                }
                _ => self.status(&what, status, detail),
            });
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(format!("token service {realm}: {e}")))?
            .to_bytes();
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&body).map_err(|e| PullError::Unsupported {
            registry: self.registry.clone(),
            message: format!("token service {realm} answered no token: {e}"),
        })?;
        let token = token.token.or(token.access_token).unwrap_or_default();
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            PullError::Unsupported {
                registry: self.registry.clone(),
                message: format!("token service {realm} answered a token that is not header text"),
            }
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn unauthorized(&self, what: &str, status: StatusCode, detail: String) -> PullError {
        let detail = if self.credentials.is_empty() && !detail.contains("none were given") {
            format!("{detail} (no credentials were given: add an imagePullSecret)")
        } else {
            detail
        };
        PullError::Unauthorized {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            detail,
        }
    }

    fn status(&self, what: &str, status: StatusCode, detail: String) -> PullError {
        PullError::Status {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            detail,
        }
    }
}

/// The manifest to run from an index: `wasi/wasm` first, then the `wasip1`/`wasip2` variants.
fn choose_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let rank = |d: &Descriptor| {
        let p = d.platform.as_ref()?;
        match (p.os.as_str(), p.architecture.as_str()) {
            ("wasi", "wasm") => Some(0),
            ("wasip1" | "wasip2", "wasm" | "wasm32") | ("wasi", "wasm32") => Some(1),
            (_, "wasm" | "wasm32") => Some(2),
            _ => None,
        }
    };
    manifests
        .iter()
        .filter(|d| {
            d.media_type.is_empty()
                || d.media_type == OCI_MANIFEST
                || d.media_type == DOCKER_MANIFEST
        })
        .filter_map(|d| rank(d).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
}

fn check_magic(store: &ImageStore, digest: &str, registry: &str) -> Result<(), PullError> {
    let Some(path) = store.blob_path(digest) else { return Ok(()) };
    let mut head = [0u8; 4];
    let ok = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == WASM_MAGIC;
    if ok {
        Ok(())
    } else {
        Err(PullError::Unsupported {
            registry: registry.to_string(),
            message: format!("wasm layer {digest} does not start with the \\0asm magic"),
        })
    }
}

/// Copy the module out of a rootfs tar into `out`; `Ok(None)` when there is no single one.
fn extract_wasm_file(
    layer: &std::path::Path,
    gz: bool,
    entrypoint: Option<&str>,
    out: &std::path::Path,
) -> std::io::Result<Option<u64>> {
    let open = || -> std::io::Result<tar::Archive<Box<dyn std::io::Read>>> {
        let file = std::fs::File::open(layer)?;
        let reader: Box<dyn std::io::Read> =
            if gz { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
        Ok(tar::Archive::new(reader))
    };
    let wanted =
        entrypoint.map(|e| e.trim_start_matches('/').to_string()).filter(|e| e.ends_with(".wasm"));
    let mut candidates = Vec::new();
    for entry in open()?.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        if path.ends_with(".wasm") {
            candidates.push(path);
        }
    }
    let target = match wanted {
        Some(w) if candidates.contains(&w) => w,
        _ if candidates.len() == 1 => candidates.remove(0),
        _ => return Ok(None),
    };
    for entry in open()?.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        if path == target && entry.header().entry_type().is_file() {
            let mut f = std::fs::File::create(out)?;
            let n = std::io::copy(&mut entry, &mut f)?;
            f.sync_all()?;
            let mut head = [0u8; 4];
            std::io::Read::read_exact(&mut std::fs::File::open(out)?, &mut head)?;
            return Ok((&head == WASM_MAGIC).then_some(n));
        }
    }
    Ok(None)
}

fn authority_of(url: &str) -> String {
    url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_string()
}

fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if location.starts_with('/') {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{}{location}", authority_of(base))
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

/// `(scheme, [(key, value)])` of a `WWW-Authenticate` header.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.push((key, value.trim().to_string()));
    }
    (scheme.to_string(), params)
}

/// `": CODE: message"` from a distribution error body, else the start of the body.
async fn error_detail(response: http::Response<hyper::body::Incoming>) -> String {
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(d) = frame.into_data() {
                    bytes.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY);
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&bytes)
        && !e.errors.is_empty()
    {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| {
                if i.message.is_empty() {
                    i.code.clone()
                } else {
                    format!("{}: {}", i.code, i.message)
                }
            })
            .collect();
        return format!(": {}", parts.join("; "));
    }
    let text = String::from_utf8_lossy(&bytes).trim().chars().take(200).collect::<String>();
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

pub(crate) mod tls;

#[cfg(test)]
mod tests;
