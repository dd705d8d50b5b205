//! Pod volumes on the node: each volume of a pod is a directory under the pod's directory
//! (`<pods>/<ns>_<name>_<uid>/volumes/<volume>`), or a host path, that containers mount.
//! Both runtimes take the same [`Mount`]s: the CRI runtime bind-mounts them, the Wasm runtime
//! preopens them.
//!
//! configMap, secret, downwardAPI and projected volumes are written like the Kubernetes
//! kubelet's atomic writer: the files live in a timestamped directory that the `..data`
//! symlink points at, and each visible name is a symlink through `..data`, so a refresh
//! swaps all files at once and a reader never sees half an update.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use skiff_runtime_core::Mount;

use skiff_helpers::quantity::{milli_value, value};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced object is missing or unusable; the pod waits for it (like the kubelet's
    /// `FailedMount`).
    #[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
    SetUp { volume: String, message: String },
    #[error("volume {volume:?}: {context}: {source}")]
    Io {
        volume: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A persistentVolumeClaim that cannot be mounted here (yet).
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Claim {
        volume: String,
        #[source]
        source: ClaimError,
    },
    /// A projected service account token could not be had.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Token {
        volume: String,
        #[source]
        source: TokenError,
    },
    /// A downwardAPI item names a field or resource the node does not know.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Field {
        volume: String,
        #[source]
        source: FieldError,
    },
}

/// Why a persistentVolumeClaim volume cannot be mounted on this node.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim {claim:?} not found")]
    ClaimNotFound { claim: String },
    /// Waits for the binder.
    #[error("persistentvolumeclaim {claim:?} is not bound to a PersistentVolume")]
    Unbound { claim: String },
    #[error("persistentvolume {volume:?} (bound to claim {claim:?}) not found")]
    VolumeNotFound { volume: String, claim: String },
    #[error(
        "persistentvolume {volume:?} is neither a local nor a hostPath volume; this node mounts only those"
    )]
    UnsupportedSource { volume: String },
    #[error("path {path:?} of persistentvolume {volume:?} does not exist on this node")]
    MissingPath { path: PathBuf, volume: String },
}

/// Why a bound service account token could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("requesting a token for service account {account:?}: {source}")]
    Request {
        account: String,
        #[source]
        source: kube::Error,
    },
    #[error("the token request for service account {account:?} returned no token")]
    NoToken { account: String },
}

/// A downward API reference (`fieldRef`, `resourceFieldRef`) the node cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("unsupported fieldRef path {0:?}")]
    UnsupportedPath(String),
    #[error("unsupported resourceFieldRef {0:?}")]
    UnsupportedResource(String),
}

/// Why a container's `volumeMounts` cannot be set up: its `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("volumeMount {0:?} refers to a volume the pod does not have")]
    UnknownVolume(String),
    #[error("subPath {0:?} must be a relative path inside the volume")]
    NotRelative(String),
    #[error("creating subPath {sub_path:?}: {source}")]
    CreateSubPath {
        sub_path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving subPath {sub_path:?}: {source}")]
    ResolveSubPath {
        sub_path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving volume: {0}")]
    ResolveVolume(#[source] std::io::Error),
    #[error("subPath {0:?} leads outside its volume")]
    Escapes(String),
}

/// What a volume resolved to on the node.
#[derive(Debug, Clone)]
pub struct PreparedVolume {
    pub path: PathBuf,
    /// The volume itself is read-only (configMap, secret, downwardAPI, projected), whatever
    /// the mount says.
    pub read_only: bool,
}

/// The pod's volumes by name.
pub type PreparedVolumes = BTreeMap<String, PreparedVolume>;

/// The directory of one pod's volumes.
pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Set up (or refresh) every volume of `pod` under `pod_dir`. Idempotent: called again, it
/// rewrites configMap/secret/downwardAPI contents that changed and leaves the rest.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    fields: &FieldValues,
) -> Result<PreparedVolumes, VolumeError> {
    let mut out = PreparedVolumes::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    for v in spec.volumes.clone().unwrap_or_default() {
        let prepared = prepare_one(client, pod, &ns, &v, pod_dir, fields).await?;
        out.insert(v.name.clone(), prepared);
    }
    Ok(out)
}

fn io_err(volume: &str, context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let (volume, context) = (volume.to_string(), context.into());
    move |source| VolumeError::Io { volume, context, source }
}

fn setup_err(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::SetUp { volume: volume.to_string(), message: message.into() }
}

fn field_err(volume: &str) -> impl FnOnce(FieldError) -> VolumeError {
    let volume = volume.to_string();
    move |source| VolumeError::Field { volume, source }
}

async fn prepare_one(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    v: &Volume,
    pod_dir: &Path,
    fields: &FieldValues,
) -> Result<PreparedVolume, VolumeError> {
    let dir = volumes_dir(pod_dir).join(&v.name);
    let name = v.name.as_str();
    let own = |read_only| PreparedVolume { path: dir.clone(), read_only };
    if let Some(e) = &v.empty_dir {
        std::fs::create_dir_all(&dir).map_err(io_err(name, "creating emptyDir"))?;
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| value(&q.0))
                .map(|b| u64::try_from(b).unwrap_or(0));
            mount_tmpfs(&dir, size).map_err(io_err(name, "mounting tmpfs for medium: Memory"))?;
        }
        return Ok(own(false));
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        check_host_path(name, &path, h.type_.as_deref().unwrap_or(""))?;
        return Ok(PreparedVolume { path, read_only: false });
    }
    if let Some(c) = &v.config_map {
        let source = Source::ConfigMap(&c.name);
        let files = source_files(client, ns, name, source, c.items.as_deref(), c.optional).await?;
        write_atomic(name, &dir, &files, c.default_mode.unwrap_or(0o644))?;
        return Ok(own(true));
    }
    if let Some(s) = &v.secret {
        let source = Source::Secret(s.secret_name.as_deref().unwrap_or_default());
        let files = source_files(client, ns, name, source, s.items.as_deref(), s.optional).await?;
        write_atomic(name, &dir, &files, s.default_mode.unwrap_or(0o644))?;
        return Ok(own(true));
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(name, d.items.as_deref().unwrap_or(&[]), pod, fields)?;
        write_atomic(name, &dir, &files, d.default_mode.unwrap_or(0o644))?;
        return Ok(own(true));
    }
    if let Some(p) = &v.projected {
        let mut files = Vec::new();
        for source in p.sources.clone().unwrap_or_default() {
            if let Some(c) = source.config_map {
                let from = Source::ConfigMap(&c.name);
                files.extend(
                    source_files(client, ns, name, from, c.items.as_deref(), c.optional).await?,
                );
            }
            if let Some(s) = source.secret {
                let from = Source::Secret(&s.name);
                files.extend(
                    source_files(client, ns, name, from, s.items.as_deref(), s.optional).await?,
                );
            }
            if let Some(d) = source.downward_api {
                files.extend(downward_files(name, d.items.as_deref().unwrap_or(&[]), pod, fields)?);
            }
            if let Some(t) = source.service_account_token {
                let token = request_token(
                    client,
                    ns,
                    pod,
                    t.audience.as_deref(),
                    t.expiration_seconds.unwrap_or(3600),
                )
                .await
                .map_err(|source| VolumeError::Token { volume: name.to_string(), source })?;
                files.push(File { path: t.path.clone(), data: token.into_bytes(), mode: None });
            }
            if let Some(b) = source.cluster_trust_bundle {
                return Err(setup_err(
                    name,
                    format!(
                        "clusterTrustBundle sources ({:?}) are not supported by this node",
                        b.path
                    ),
                ));
            }
        }
        write_atomic(name, &dir, &files, p.default_mode.unwrap_or(0o644))?;
        return Ok(own(true));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let path = claim_path(client, ns, &c.claim_name)
            .await
            .map_err(|source| VolumeError::Claim { volume: name.to_string(), source })?;
        return Ok(PreparedVolume { path, read_only: c.read_only.unwrap_or(false) });
    }
    Err(setup_err(
        name,
        "this volume type is not supported by Skiff nodes (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim of local or hostPath PersistentVolumes)",
    ))
}

/// Where a configMap/secret volume or projection takes its files from.
#[derive(Clone, Copy)]
enum Source<'a> {
    ConfigMap(&'a str),
    Secret(&'a str),
}

/// The files of a ConfigMap or Secret source: all its keys, or `items`. A missing object is
/// an error unless the source is optional (then it contributes nothing).
async fn source_files(
    client: &kube::Client,
    ns: &str,
    volume: &str,
    source: Source<'_>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<File>, VolumeError> {
    let optional = optional.unwrap_or(false);
    let (kind, object, data) = match source {
        Source::ConfigMap(name) => {
            let data = get::<ConfigMap>(client, ns, name).await.map(|cm| {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, b)| (k, b.0)));
                data
            });
            ("configmap", name, data)
        }
        Source::Secret(name) => {
            let data = get::<Secret>(client, ns, name)
                .await
                .map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
            ("secret", name, data)
        }
    };
    match data {
        Some(data) => select(volume, &data, items, optional, kind, object),
        None if optional => Ok(Vec::new()),
        None => Err(setup_err(volume, format!("{kind} {object:?} not found"))),
    }
}

async fn get<K>(client: &kube::Client, ns: &str, name: &str) -> Option<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.ok().flatten()
}

/// The node directory a bound claim's PersistentVolume stands for.
async fn claim_path(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, ClaimError> {
    let claim = claim.to_string();
    let Some(pvc) = get::<PersistentVolumeClaim>(client, ns, &claim).await else {
        return Err(ClaimError::ClaimNotFound { claim });
    };
    let Some(volume) = pvc.spec.and_then(|s| s.volume_name).filter(|n| !n.is_empty()) else {
        return Err(ClaimError::Unbound { claim });
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = pvs.get_opt(&volume).await.ok().flatten() else {
        return Err(ClaimError::VolumeNotFound { volume, claim });
    };
    let spec = pv.spec.unwrap_or_default();
    let Some(path) = spec.local.map(|l| l.path).or_else(|| spec.host_path.map(|h| h.path)) else {
        return Err(ClaimError::UnsupportedSource { volume });
    };
    let path = PathBuf::from(path);
    if !path.is_dir() {
        return Err(ClaimError::MissingPath { path, volume });
    }
    Ok(path)
}

/// A bound service account token for the pod (TokenRequest bound to the pod object).
async fn request_token(
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    audience: Option<&str>,
    expiration: i64,
) -> Result<String, TokenError> {
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut spec = json!({
        "expirationSeconds": expiration.max(600),
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid},
    });
    if let Some(a) = audience {
        spec["audiences"] = json!([a]);
    }
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let answer: Value = api
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .map_err(|source| TokenError::Request { account: sa.clone(), source })?;
    answer
        .pointer("/status/token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(TokenError::NoToken { account: sa })
}

/// One file of an atomically written volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path inside the volume (may contain `/`).
    pub path: String,
    pub data: Vec<u8>,
    pub mode: Option<i32>,
}

/// The files of a configMap/secret source: all keys, or `items` (each key must exist unless
/// the source is optional).
fn select(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    kind: &str,
    object: &str,
) -> Result<Vec<File>, VolumeError> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data
            .iter()
            .map(|(k, v)| File { path: k.clone(), data: v.clone(), mode: None })
            .collect());
    };
    let mut out = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => out.push(File { path: item.path.clone(), data: v.clone(), mode: item.mode }),
            None if optional => {}
            None => {
                return Err(setup_err(
                    volume,
                    format!("{kind} {object:?} has no key {:?}", item.key),
                ));
            }
        }
    }
    Ok(out)
}

/// Values a downward API item or env var may refer to that only the node knows.
#[derive(Debug, Clone, Default)]
pub struct FieldValues {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
}

/// The value of a downward API `fieldRef` path, Kubernetes' way.
pub fn field_value(pod: &Pod, path: &str, f: &FieldValues) -> Result<String, FieldError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let format_map = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    };
    let key_of = |prefix: &str| {
        path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")).map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels),
        "metadata.annotations" => format_map(&meta.annotations),
        "spec.nodeName" => spec.node_name.clone().unwrap_or_else(|| f.node_name.clone()),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => f.host_ip.clone(),
        "status.podIP" | "status.podIPs" => f.pod_ip.clone(),
        _ => {
            if let Some(k) = key_of("metadata.labels['") {
                meta.labels.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
            } else if let Some(k) = key_of("metadata.annotations['") {
                meta.annotations.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
            } else {
                return Err(FieldError::UnsupportedPath(path.to_string()));
            }
        }
    })
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, …) of `container`,
/// divided by `divisor` and rounded up, as the kubelet does. A limit left unset is the
/// node's allocatable amount.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_allocatable: &BTreeMap<String, f64>,
) -> Result<String, FieldError> {
    let unsupported = || FieldError::UnsupportedResource(resource.to_string());
    let (kind, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let res = container.resources.clone().unwrap_or_default();
    let table = match kind {
        "limits" => res.limits,
        "requests" => res.requests,
        _ => return Err(unsupported()),
    };
    // Kubernetes divides CPU in millicores and everything else in base units, rounding up.
    let cpu = name == "cpu";
    let scale = if cpu { 1000.0 } else { 1.0 };
    let amount = |q: &str| if cpu { milli_value(q) } else { value(q) };
    #[allow(clippy::cast_precision_loss)]
    let amount_of = table
        .as_ref()
        .and_then(|t| t.get(name))
        .and_then(|q| amount(&q.0))
        .map(|v| v as f64)
        .or_else(|| {
            if kind == "limits" { node_allocatable.get(name).map(|a| a * scale) } else { None }
        })
        .unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let divisor = divisor.and_then(amount).filter(|d| *d > 0).map(|d| d as f64).unwrap_or(scale);
    Ok(format!("{}", (amount_of / divisor).ceil() as i64))
}

fn downward_files(
    volume: &str,
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    fields: &FieldValues,
) -> Result<Vec<File>, VolumeError> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, fields).map_err(field_err(volume))?
        } else if let Some(r) = &item.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let container_name = r.container_name.clone().unwrap_or_default();
            let c = spec.containers.iter().find(|c| c.name == container_name).ok_or_else(|| {
                setup_err(volume, format!("resourceFieldRef names no container {container_name:?}"))
            })?;
            resource_value(
                c,
                &r.resource,
                r.divisor.as_ref().map(|q| q.0.as_str()),
                &BTreeMap::new(),
            )
            .map_err(field_err(volume))?
        } else {
            continue;
        };
        out.push(File { path: item.path.clone(), data: value.into_bytes(), mode: item.mode });
    }
    Ok(out)
}

/// Write `files` into `dir` the atomic-writer way; a no-op when the content is unchanged.
pub fn write_atomic(
    volume: &str,
    dir: &Path,
    files: &[File],
    default_mode: i32,
) -> Result<(), VolumeError> {
    for f in files {
        let p = Path::new(&f.path);
        if f.path.is_empty()
            || p.is_absolute()
            || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
            || f.path.starts_with("..")
        {
            return Err(setup_err(volume, format!("invalid file path {:?}", f.path)));
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(volume, "creating volume directory"))?;
    let data_link = dir.join("..data");
    // Unchanged content: nothing to do.
    if let Ok(current) = std::fs::read_link(&data_link) {
        let cur = dir.join(&current);
        let same = files.iter().all(|f| {
            std::fs::read(cur.join(&f.path)).is_ok_and(|d| d == f.data)
                && mode_of(&cur.join(&f.path)) == (f.mode.unwrap_or(default_mode) as u32 & 0o777)
        }) && count_files(&cur) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"));
    let staging = dir.join(&stamp);
    std::fs::create_dir_all(&staging).map_err(io_err(volume, "creating staging directory"))?;
    for f in files {
        let target = staging.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(volume, "creating file directory"))?;
        }
        std::fs::write(&target, &f.data).map_err(io_err(volume, format!("writing {}", f.path)))?;
        let mode = f.mode.unwrap_or(default_mode) as u32 & 0o777;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(volume, format!("setting the mode of {}", f.path)))?;
    }
    // Swap `..data` in one rename.
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(io_err(volume, "linking ..data"))?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link).map_err(io_err(volume, "swapping ..data"))?;
    // Top-level names: symlinks through `..data`.
    let mut visible: Vec<String> =
        files.iter().map(|f| f.path.split('/').next().unwrap_or("").to_string()).collect();
    visible.sort();
    visible.dedup();
    for name in &visible {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
            .map_err(io_err(volume, format!("linking {name}")))?;
    }
    // Names no longer present, and the previous generation.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("..") || visible.contains(&n) {
                continue;
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += count_files(&e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

fn check_host_path(volume: &str, path: &Path, ty: &str) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path);
    let bad = |what: &str| {
        setup_err(volume, format!("hostPath type check failed: {} is not {what}", path.display()))
    };
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path)
                    .map_err(io_err(volume, "creating hostPath directory"))?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            }
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(volume, "creating hostPath parent"))?;
                }
                std::fs::write(path, b"").map_err(io_err(volume, "creating hostPath file"))?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
            }
            Ok(())
        }
        "Directory" => {
            meta.ok().filter(|m| m.is_dir()).map(|_| ()).ok_or_else(|| bad("a directory"))
        }
        "File" => meta.ok().filter(|m| m.is_file()).map(|_| ()).ok_or_else(|| bad("a file")),
        "Socket" | "CharDevice" | "BlockDevice" => {
            use std::os::unix::fs::FileTypeExt;
            let ok = meta.ok().is_some_and(|m| {
                let t = m.file_type();
                match ty {
                    "Socket" => t.is_socket(),
                    "CharDevice" => t.is_char_device(),
                    _ => t.is_block_device(),
                }
            });
            if ok { Ok(()) } else { Err(bad(&format!("a {ty}"))) }
        }
        other => Err(setup_err(volume, format!("unknown hostPath type {other:?}"))),
    }
}

/// Mount a tmpfs at `dir` (once), sized to `size` bytes when given.
fn mount_tmpfs(dir: &Path, size: Option<u64>) -> std::io::Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let options = match size {
        Some(s) => format!("mode=0777,size={s}"),
        None => "mode=0777".to_string(),
    };
    let options = std::ffi::CString::new(options)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let fstype = c"tmpfs";
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn is_mount_point(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
    let dir = dir.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(dir.as_ref()))
}

/// Unmount the tmpfs volumes of a pod being removed (before its directory is deleted).
pub fn unmount_all(pod_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(volumes_dir(pod_dir)) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if is_mount_point(&p)
            && let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        {
            // SAFETY: a valid NUL-terminated path.
            #[allow(unsafe_code)]
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Disk use of a directory tree as `du -s` counts it (allocated blocks of every entry, the
/// directory itself included), looking at no more than `budget` entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub bytes: u64,
    pub inodes: u64,
    /// The walk stopped at its budget: the figures are a lower bound.
    pub truncated: bool,
}

/// Measure `dir` (symlinks are not followed; a missing directory uses nothing).
pub fn disk_usage(dir: &Path, budget: u64) -> DiskUsage {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if usage.inodes >= budget {
            usage.truncated = true;
            break;
        }
        // Hard links count once, as du counts them.
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    usage
}

/// Whether a volume counts towards the pod's ephemeral storage on the node's disk (the
/// kubelet's local ephemeral volumes: disk-backed emptyDir, configMap, downwardAPI).
pub fn is_local_ephemeral(v: &Volume) -> bool {
    v.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref().unwrap_or("").is_empty())
        || v.config_map.is_some()
        || v.downward_api.is_some()
}

/// Free what a pod's emptyDir volumes hold on the node (an evicted pod gives back its disk):
/// memory-backed ones are unmounted, all are emptied and removed.
pub fn release_empty_dirs(pod: &Pod, pod_dir: &Path) {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten().filter(|v| v.empty_dir.is_some()) {
        let dir = volumes_dir(pod_dir).join(&v.name);
        if is_mount_point(&dir)
            && let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        {
            // SAFETY: a valid NUL-terminated path.
            #[allow(unsafe_code)]
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The mounts of `container`: its `volumeMounts` resolved against the prepared volumes
/// (`subPath` and `subPathExpr` pick a path inside a volume).
pub fn mounts(
    container: &Container,
    volumes: &PreparedVolumes,
    env: &[(String, String)],
) -> Result<Vec<Mount>, MountError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.clone().unwrap_or_default() {
        let v = volumes.get(&m.name).ok_or_else(|| MountError::UnknownVolume(m.name.clone()))?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => crate::env::expand(e, env),
            _ => String::new(),
        };
        let mut host_path = v.path.clone();
        if !sub.is_empty() {
            let p = Path::new(&sub);
            if p.is_absolute()
                || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(MountError::NotRelative(sub));
            }
            host_path = host_path.join(p);
            if std::fs::symlink_metadata(&host_path).is_err() {
                // Kubernetes creates a missing subPath as a directory.
                std::fs::create_dir_all(&host_path).map_err(|source| {
                    MountError::CreateSubPath { sub_path: sub.clone(), source }
                })?;
            }
            // A subPath must not lead out of its volume (through a symlink).
            let real = host_path
                .canonicalize()
                .map_err(|source| MountError::ResolveSubPath { sub_path: sub.clone(), source })?;
            let base = v.path.canonicalize().map_err(MountError::ResolveVolume)?;
            if !real.starts_with(&base) {
                return Err(MountError::Escapes(sub));
            }
            host_path = real;
        }
        out.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || v.read_only,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> File {
        File { path: path.into(), data: data.as_bytes().to_vec(), mode: None }
    }

    #[test]
    fn write_atomic_should_swap_contents_through_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("cfg");
        write_atomic("cfg", &v, &[file("a", "1"), file("sub/b", "2")], 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(v.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(v.join("sub/b")).unwrap(), "2");
        assert!(std::fs::symlink_metadata(v.join("a")).unwrap().file_type().is_symlink());
        let first = std::fs::read_link(v.join("..data")).unwrap();
        // Same content: nothing rewritten.
        write_atomic("cfg", &v, &[file("a", "1"), file("sub/b", "2")], 0o644).unwrap();
        assert_eq!(std::fs::read_link(v.join("..data")).unwrap(), first);
        // Changed content: new generation, removed key gone, old generation deleted.
        write_atomic("cfg", &v, &[file("a", "3")], 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(v.join("a")).unwrap(), "3");
        assert!(!v.join("sub").exists());
        assert!(!v.join(&first).exists());
        assert_eq!(mode_of(&v.join("a")), 0o600);
    }

    #[test]
    fn write_atomic_should_refuse_paths_leaving_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/x", "..data", ""] {
            let err = write_atomic("cfg", &dir.path().join("v"), &[file(bad, "x")], 0o644);
            assert!(err.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn select_should_honour_items_and_optional() {
        let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        let items = [KeyToPath { key: "k".into(), path: "dir/file".into(), mode: Some(0o400) }];
        let files = select("v", &data, Some(&items), false, "configmap", "c").unwrap();
        assert_eq!(
            files,
            vec![File { path: "dir/file".into(), data: b"v".to_vec(), mode: Some(0o400) }]
        );
        let missing = [KeyToPath { key: "nope".into(), path: "x".into(), mode: None }];
        let err = select("v", &data, Some(&missing), false, "configmap", "c").unwrap_err();
        assert!(err.to_string().contains("configmap \"c\" has no key \"nope\""), "{err}");
        assert!(select("v", &data, Some(&missing), true, "configmap", "c").unwrap().is_empty());
    }

    #[test]
    fn mounts_should_resolve_sub_paths_inside_the_volume_only() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("data");
        std::fs::create_dir_all(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("out")).unwrap();
        let volumes = PreparedVolumes::from([(
            "data".to_string(),
            PreparedVolume { path: vol.clone(), read_only: false },
        )]);
        let container: Container = serde_json::from_value(json!({
            "name": "c",
            "volumeMounts": [
                {"name": "data", "mountPath": "/data", "readOnly": true},
                {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD)/logs"},
            ]
        }))
        .unwrap();
        let env = vec![("POD".to_string(), "web-1".to_string())];
        let m = mounts(&container, &volumes, &env).unwrap();
        assert_eq!(m[0].host_path, vol);
        assert!(m[0].read_only);
        assert!(m[1].host_path.ends_with("web-1/logs") && m[1].host_path.is_dir());
        let escape: Container = serde_json::from_value(json!({
            "name": "c", "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "out"}]
        }))
        .unwrap();
        let err = mounts(&escape, &volumes, &[]).unwrap_err();
        assert!(matches!(&err, MountError::Escapes(sub) if sub == "out"), "{err}");
        assert_eq!(err.to_string(), "subPath \"out\" leads outside its volume");
    }

    #[test]
    fn resource_value_should_divide_and_round_up() {
        let c: Container = serde_json::from_value(json!({
            "name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}, "requests": {"cpu": "100m"}}
        }))
        .unwrap();
        let none = BTreeMap::new();
        assert_eq!(resource_value(&c, "limits.memory", Some("1Mi"), &none).unwrap(), "64");
        assert_eq!(resource_value(&c, "limits.cpu", None, &none).unwrap(), "1");
        assert_eq!(resource_value(&c, "requests.cpu", Some("1m"), &none).unwrap(), "100");
    }
}
