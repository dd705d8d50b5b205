//! The node-local Wasm image store: content-addressed blobs plus a name index, filled by
//! `skiff images import` (bare `.wasm` files or OCI image-layout tarballs) and by pulls from
//! OCI registries ([`registry`]).
//!
//! Layout under `root` (`DATA_DIR/images`):
//!
//! ```text
//! blobs/sha256/<hex>   content-addressed blobs (wasm layers, OCI manifests)
//! index.json           { "images": { "<repo:tag>": { digest, mediaType, size, wasmDigest } } }
//! index.lock           taken (flock) by importers while they rewrite the index
//! tmp/                 staging for atomic writes
//! ```
//!
//! Every file is written to `tmp/` and renamed into place, so a server reading the store while
//! `skiff images import` runs never sees a torn blob or index. A pulled blob is renamed into
//! `blobs/` only once its digest and size are verified.

pub mod registry;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Layer media types that carry a Wasm binary.
pub const WASM_LAYER_MEDIA_TYPES: &[&str] =
    &["application/wasm", "application/vnd.wasm.content.layer.v1+wasm"];
/// Media type recorded for a bare module import.
pub const BARE_WASM_MEDIA_TYPE: &str = "application/wasm";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Refuse archives whose contents would not fit comfortably in memory.
const MAX_ARCHIVE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image store i/o error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: a bare wasm module needs a name (pass --name repo:tag)")]
    NameRequired { path: PathBuf },
    #[error(
        "{path}: no wasm manifest carries a usable name (io.containerd.image.name, or \
         org.opencontainers.image.ref.name with a repository); pass --name repo:tag"
    )]
    NoNames { path: PathBuf },
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    #[error("no image {0:?} in the store")]
    NotFound(String),
    #[error(
        "{path}: neither a wasm binary (\\0asm magic) nor an OCI image-layout tarball (optionally gzipped)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: invalid OCI image layout: {message}")]
    InvalidLayout { path: PathBuf, message: String },
    #[error(
        "{path}: no manifest in this OCI layout has a wasm layer (media type application/wasm or \
         application/vnd.wasm.content.layer.v1+wasm); layer media types found: [{found}]. \
         Skiff runs only Wasm images; import OCI container images into containerd instead"
    )]
    NoWasmLayer { path: PathBuf, found: String },
    #[error("{path}: the OCI layout holds {count} wasm images but --name names only one")]
    AmbiguousName { path: PathBuf, count: usize },
    #[error("{path}: blob {digest} does not match its digest")]
    DigestMismatch { path: PathBuf, digest: String },
    #[error("image index {path} is corrupt: {source}")]
    CorruptIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io { context: context.into(), source }
    }
}

/// One name written by [`ImageStore::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// Normalized `repo:tag`.
    pub name: String,
    /// Image id, `sha256:<hex>`: the OCI manifest digest, or the module digest for a bare import.
    pub digest: String,
}

/// What a name resolves to: the module to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Image id (`sha256:<hex>`), as reported in `containerStatuses[].imageID`.
    pub digest: String,
    /// Digest of the wasm binary itself; compiled artifacts are keyed by it.
    pub wasm_digest: String,
    pub wasm_path: PathBuf,
    /// Size of the wasm binary in bytes.
    pub size: u64,
}

/// One entry of [`ImageStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub name: String,
    pub entry: IndexEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// Image id (`sha256:<hex>`).
    pub digest: String,
    /// Media type of the object `digest` names (OCI manifest, or `application/wasm`).
    pub media_type: String,
    /// Size of the wasm binary in bytes.
    pub size: u64,
    /// Digest of the wasm binary (equal to `digest` for bare modules).
    pub wasm_digest: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    #[serde(default)]
    images: BTreeMap<String, IndexEntry>,
}

/// Identity of the index file last parsed, so readers re-parse only after a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

/// A node-local image store. Cheap to share (`&self` everywhere); safe to use while another
/// process imports into the same directory.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    cache: Mutex<Option<(FileStamp, Arc<IndexFile>)>>,
    /// Mirrors, credentials and TLS settings for pulls (`registries.yaml`).
    registries: std::sync::RwLock<Arc<skiff_runtime_core::registries::RegistryConfig>>,
    /// Blobs (hex digests) a pull is downloading into their resumable staging file.
    downloads: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl ImageStore {
    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in [root.join("blobs/sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir)
                .map_err(|e| ImageError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            cache: Mutex::new(None),
            registries: std::sync::RwLock::default(),
            downloads: Arc::default(),
        })
    }

    /// Pull through these mirrors, credentials and TLS settings from now on.
    pub fn set_registry_config(&self, config: skiff_runtime_core::registries::RegistryConfig) {
        *self.registries.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub(crate) fn registry_config(&self) -> Arc<skiff_runtime_core::registries::RegistryConfig> {
        self.registries.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the blob `digest` is in the store.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some_and(|p| p.is_file())
    }

    /// A staging file for a blob of unknown content; see [`BlobWriter`].
    pub(crate) async fn blob_writer(&self) -> Result<BlobWriter, ImageError> {
        let tmp = self.tmp_path("blob");
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ImageError::io(format!("creating {}", tmp.display()), e))?;
        Ok(BlobWriter {
            tmp: Some(tmp),
            file: Some(file),
            hasher: Sha256::new(),
            len: 0,
            blobs: self.root.join("blobs/sha256"),
            keep: false,
            _claim: None,
        })
    }

    /// A staging file for blob `digest` that picks up what an interrupted download of it left
    /// (its bytes are hashed again first). Only one download of a digest resumes at a time;
    /// a concurrent one gets a fresh file of its own.
    pub(crate) async fn resumable_blob_writer(
        &self,
        digest: &str,
    ) -> Result<BlobWriter, ImageError> {
        let hex = digest.trim_start_matches("sha256:").to_ascii_lowercase();
        let claimed = self.downloads.lock().unwrap_or_else(|p| p.into_inner()).insert(hex.clone());
        if !claimed {
            return self.blob_writer().await;
        }
        let claim = DownloadClaim { downloads: self.downloads.clone(), hex: hex.clone() };
        let tmp = self.root.join("tmp").join(format!("partial-{hex}"));
        let existing = tmp.clone();
        let read = tokio::task::spawn_blocking(move || -> io::Result<(Sha256, u64)> {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut f = match File::open(&existing) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((hasher, 0)),
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match f.read(&mut buf)? {
                    0 => return Ok((hasher, len)),
                    n => {
                        hasher.update(&buf[..n]);
                        len += n as u64;
                    }
                }
            }
        })
        .await
        .map_err(|e| ImageError::io("hashing a partial blob", io::Error::other(e)))?;
        let (hasher, len) =
            read.map_err(|e| ImageError::io(format!("reading {}", tmp.display()), e))?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmp)
            .await
            .map_err(|e| ImageError::io(format!("opening {}", tmp.display()), e))?;
        Ok(BlobWriter {
            tmp: Some(tmp),
            file: Some(file),
            hasher,
            len,
            blobs: self.root.join("blobs/sha256"),
            keep: false,
            _claim: Some(claim),
        })
    }

    /// Bytes free for unprivileged writers on the store's file system.
    pub fn available_bytes(&self) -> Option<u64> {
        self.fs_usage().map(|(_, available)| available)
    }

    /// `(capacity, available)` bytes of the store's file system.
    pub fn fs_usage(&self) -> Option<(u64, u64)> {
        skiff_runtime_core::ImageFsUsage::of(&self.root).map(|u| (u.capacity, u.available))
    }

    /// Point `name` (stored as written: `repo:tag` or `repo@sha256:…`) at `entry`.
    pub(crate) fn record(&self, name: String, entry: IndexEntry) -> Result<(), ImageError> {
        self.update_index(vec![(name, entry)])
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.root.join("tmp").join(format!(
            "{}-{}-{what}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Import a bare `.wasm` file (needs `name`) or an OCI image-layout tarball (names from its
    /// `org.opencontainers.image.ref.name` annotations unless `name` overrides them).
    /// Existing names are repointed; blobs already present are kept.
    pub fn import(
        &self,
        file: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let mut head = [0u8; 4];
        let mut f = File::open(file)
            .map_err(|e| ImageError::io(format!("opening {}", file.display()), e))?;
        let n = read_up_to(&mut f, &mut head)
            .map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
        drop(f);
        if n == 4 && &head == WASM_MAGIC {
            self.import_bare(file, name)
        } else {
            self.import_oci(file, name)
        }
    }

    fn import_bare(
        &self,
        file: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let name = name.ok_or_else(|| ImageError::NameRequired { path: file.to_path_buf() })?;
        let name = normalize_name(name)?;
        let bytes =
            fs::read(file).map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
        let digest = self.put_blob(&bytes)?;
        let entry = IndexEntry {
            digest: digest.clone(),
            media_type: BARE_WASM_MEDIA_TYPE.to_string(),
            size: bytes.len() as u64,
            wasm_digest: digest.clone(),
        };
        self.update_index(vec![(name.clone(), entry)])?;
        Ok(vec![ImportedImage { name, digest }])
    }

    fn import_oci(
        &self,
        file: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let layout = OciLayout::read(file)?;
        let images = layout.wasm_images()?;
        let override_name = name.map(normalize_name).transpose()?;
        if override_name.is_some() && images.len() > 1 {
            return Err(ImageError::AmbiguousName {
                path: file.to_path_buf(),
                count: images.len(),
            });
        }
        let mut updates = Vec::new();
        let mut imported = Vec::new();
        for image in &images {
            let names = match &override_name {
                Some(n) => vec![n.clone()],
                None => image.names.clone(),
            };
            if names.is_empty() {
                continue;
            }
            let wasm = layout.blob(&image.wasm_digest)?;
            if !wasm.starts_with(WASM_MAGIC) {
                return Err(layout.invalid(format!(
                    "wasm layer {} does not start with the \\0asm magic",
                    image.wasm_digest
                )));
            }
            self.put_blob(wasm)?;
            let manifest_digest = self.put_blob(layout.blob(&image.manifest_digest)?)?;
            for n in names {
                updates.push((
                    n.clone(),
                    IndexEntry {
                        digest: manifest_digest.clone(),
                        media_type: image.manifest_media_type.clone(),
                        size: wasm.len() as u64,
                        wasm_digest: image.wasm_digest.clone(),
                    },
                ));
                imported.push(ImportedImage { name: n, digest: manifest_digest.clone() });
            }
        }
        if imported.is_empty() {
            return Err(ImageError::NoNames { path: file.to_path_buf() });
        }
        self.update_index(updates)?;
        Ok(imported)
    }

    /// Resolve an image reference (`repo:tag`, `repo` = `repo:latest`, `docker.io/…`,
    /// `repo@sha256:…`, `sha256:…`). Re-reads the index if another process rewrote it.
    pub fn resolve(&self, reference: &str) -> Option<ResolvedImage> {
        let index = match self.index() {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read image index");
                return None;
            }
        };
        let entry = if let Some(digest) = digest_of_reference(reference) {
            // A pull by digest records `repo@digest` (the digest may be an image index's).
            let pinned =
                reference.rsplit_once('@').and_then(|(repo, _)| pinned_name(repo, &digest));
            match pinned.as_ref().and_then(|p| index.images.get(p)) {
                Some(e) => e,
                None => {
                    index.images.values().find(|e| e.digest == digest || e.wasm_digest == digest)?
                }
            }
        } else {
            index.images.get(&normalize_name(reference).ok()?)?
        };
        let wasm_path = self.blob_path(&entry.wasm_digest)?;
        if !wasm_path.is_file() {
            tracing::warn!(image = reference, blob = %wasm_path.display(), "image blob missing");
            return None;
        }
        Some(ResolvedImage {
            digest: entry.digest.clone(),
            wasm_digest: entry.wasm_digest.clone(),
            wasm_path,
            size: entry.size,
        })
    }

    /// All names in the store, sorted.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.index()?;
        Ok(index
            .images
            .iter()
            .map(|(name, entry)| ImageSummary { name: name.clone(), entry: entry.clone() })
            .collect())
    }

    /// Remove images: each of `references` is a name (`repo:tag`, `repo@sha256:…`) or an
    /// image id (`sha256:…`, every name of that image). Returns the names removed; blobs no
    /// name needs any more go at the next [`ImageStore::sweep`]. A container already running
    /// from a removed image keeps running.
    pub fn remove(&self, references: &[String]) -> Result<Vec<String>, ImageError> {
        let mut removed = Vec::new();
        self.rewrite_index(|index| {
            for reference in references {
                let before = removed.len();
                if let Some(digest) =
                    digest_of_reference(reference).filter(|_| !reference.contains('@'))
                {
                    index.images.retain(|name, e| {
                        let hit = e.digest == digest;
                        if hit {
                            removed.push(name.clone());
                        }
                        !hit
                    });
                } else {
                    let name = match reference.rsplit_once('@') {
                        Some((repo, d)) => pinned_name(repo, d).unwrap_or_default(),
                        None => normalize_name(reference).unwrap_or_default(),
                    };
                    if index.images.remove(&name).is_some() {
                        removed.push(name);
                    }
                }
                if removed.len() == before {
                    return Err(ImageError::NotFound(reference.clone()));
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Delete blobs no image in the index refers to (and staging files) that are older than
    /// `grace`, so a pull or import in progress, whose blobs are not named yet, keeps them.
    /// Returns the bytes freed.
    pub fn sweep(&self, grace: std::time::Duration) -> Result<u64, ImageError> {
        let index = self.index()?;
        let mut keep = std::collections::HashSet::new();
        for entry in index.images.values() {
            keep.insert(entry.digest.clone());
            keep.insert(entry.wasm_digest.clone());
            // The manifest's config and layers (a rootfs layer a module was taken out of).
            if let Some(path) = self.blob_path(&entry.digest)
                && let Ok(bytes) = fs::read(&path)
                && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                let digests = doc["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(std::iter::once(&doc["config"]))
                    .filter_map(|d| d["digest"].as_str());
                keep.extend(digests.map(str::to_string));
            }
        }
        let now = std::time::SystemTime::now();
        let old_enough = |m: &fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= grace)
        };
        let mut freed = 0;
        for (dir, is_blob) in
            [(self.root.join("blobs/sha256"), true), (self.root.join("tmp"), false)]
        {
            let entries = fs::read_dir(&dir)
                .map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_blob && keep.contains(&format!("sha256:{name}")) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_file() && old_enough(&meta) && fs::remove_file(entry.path()).is_ok() {
                    freed += meta.len();
                }
            }
        }
        Ok(freed)
    }

    /// Path of a blob given `sha256:<hex>`; `None` for a malformed digest.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.root.join("blobs/sha256").join(hex.to_ascii_lowercase()))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn index(&self) -> Result<Arc<IndexFile>, ImageError> {
        let path = self.index_path();
        let stamp = match fs::metadata(&path) {
            Ok(m) => FileStamp {
                ino: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                len: m.len(),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Arc::default()),
            Err(e) => return Err(ImageError::io(format!("stat {}", path.display()), e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, index)) = cache.as_ref()
            && *cached == stamp
        {
            return Ok(index.clone());
        }
        let index = Arc::new(read_index(&path)?);
        *cache = Some((stamp, index.clone()));
        Ok(index)
    }

    /// Read-modify-write the index under an exclusive file lock, then rename it into place.
    fn update_index(&self, updates: Vec<(String, IndexEntry)>) -> Result<(), ImageError> {
        self.rewrite_index(|index| {
            for (name, entry) in updates {
                index.images.insert(name, entry);
            }
            Ok(())
        })
    }

    fn rewrite_index(
        &self,
        change: impl FnOnce(&mut IndexFile) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let lock_path = self.root.join("index.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ImageError::io(format!("opening {}", lock_path.display()), e))?;
        lock.lock().map_err(|e| ImageError::io(format!("locking {}", lock_path.display()), e))?;
        let path = self.index_path();
        let mut index = match fs::metadata(&path) {
            Ok(_) => read_index(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => IndexFile::default(),
            Err(e) => return Err(ImageError::io(format!("stat {}", path.display()), e)),
        };
        change(&mut index)?;
        let mut bytes = serde_json::to_vec_pretty(&index).map_err(|e| {
            ImageError::io("encoding image index", io::Error::new(io::ErrorKind::InvalidData, e))
        })?;
        bytes.push(b'\n');
        self.write_atomic(&path, &bytes)?;
        // The lock is released when `lock` drops.
        Ok(())
    }

    /// Store `bytes` as a blob; returns its digest. A blob already present is left alone.
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let path = self.root.join("blobs/sha256").join(&hex);
        if !path.is_file() {
            self.write_atomic(&path, bytes)?;
        }
        Ok(format!("sha256:{hex}"))
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = self.tmp_path(dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, dest)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::io(format!("writing {}", dest.display()), e));
        }
        Ok(())
    }
}

/// A blob being streamed into the store: bytes go to a file under `tmp/` while they are
/// hashed; [`BlobWriter::commit`] renames it into `blobs/` only if the digest matches.
/// Dropped uncommitted, the staging file is removed.
pub(crate) struct BlobWriter {
    tmp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    len: u64,
    blobs: PathBuf,
    /// Leave the staging file for the next attempt to resume (an interrupted download).
    keep: bool,
    _claim: Option<DownloadClaim>,
}

/// Marks a digest's resumable staging file as in use until dropped.
struct DownloadClaim {
    downloads: Arc<Mutex<std::collections::HashSet<String>>>,
    hex: String,
}

impl Drop for DownloadClaim {
    fn drop(&mut self) {
        self.downloads.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.hex);
    }
}

impl BlobWriter {
    /// Whether the staging file resumes an earlier download (and can go on after a break).
    pub(crate) fn resumable(&self) -> bool {
        self._claim.is_some()
    }

    /// Keep what was written for a later attempt (only for a resumable writer).
    pub(crate) async fn keep_partial(&mut self) {
        use tokio::io::AsyncWriteExt as _;
        if let Some(file) = self.file.as_mut() {
            // A write still in flight must land before the next attempt hashes the file.
            self.keep = file.flush().await.is_ok() && self.resumable();
        }
    }

    /// Start over from zero bytes (the server sent the whole blob instead of the rest).
    pub(crate) async fn restart(&mut self) -> Result<(), ImageError> {
        let Some(tmp) = self.tmp.clone() else { return Ok(()) };
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ImageError::io(format!("creating {}", tmp.display()), e))?;
        self.file = Some(file);
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        use tokio::io::AsyncWriteExt as _;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        let (Some(file), Some(tmp)) = (self.file.as_mut(), self.tmp.as_ref()) else {
            return Err(ImageError::io("writing blob", io::Error::other("writer already closed")));
        };
        file.write_all(bytes)
            .await
            .map_err(|e| ImageError::io(format!("writing {}", tmp.display()), e))
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// `sha256:<hex>` of what was written.
    pub(crate) fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Move the blob into place if it is `expected` (`sha256:<hex>`); `Err(actual)` (and the
    /// staging file removed) if not.
    pub(crate) async fn commit(mut self, expected: &str) -> Result<Result<(), String>, ImageError> {
        let actual = self.digest();
        if !actual.eq_ignore_ascii_case(expected) {
            return Ok(Err(actual));
        }
        let Some(tmp) = self.tmp.clone() else { return Ok(Err(actual)) };
        let hex = actual.trim_start_matches("sha256:").to_string();
        if let Some(file) = self.file.take() {
            file.sync_all()
                .await
                .map_err(|e| ImageError::io(format!("syncing {}", tmp.display()), e))?;
        }
        let dest = self.blobs.join(hex);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| ImageError::io(format!("moving {} into the store", tmp.display()), e))?;
        self.tmp = None;
        Ok(Ok(()))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take()
            && !self.keep
        {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn read_index(path: &Path) -> Result<IndexFile, ImageError> {
    let bytes =
        fs::read(path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|source| ImageError::CorruptIndex { path: path.to_path_buf(), source })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `sha256:<hex>` if the reference pins a digest (`repo@sha256:…` or a bare `sha256:…`).
pub(crate) fn digest_of_reference(reference: &str) -> Option<String> {
    let digest = match reference.rsplit_once('@') {
        Some((_, d)) => d,
        None => reference,
    };
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// The index name of an image pulled by digest: `repo@sha256:…` (normalized repo, no tag).
pub(crate) fn pinned_name(repo: &str, digest: &str) -> Option<String> {
    let name = normalize_name(repo).ok()?;
    let last_colon = name.rfind(':')?;
    // normalize_name always ends in `:tag`, after the last `/`.
    Some(format!("{}@{digest}", &name[..last_colon]))
}

/// Normalize an image name to `repo:tag`: strip `docker.io/library/` or `docker.io/`, add
/// `:latest` when there is no tag. A port in the registry host (`host:5000/x`) is not a tag.
pub fn normalize_name(name: &str) -> Result<String, ImageError> {
    let trimmed = name.trim();
    if trimmed.is_empty()
        || trimmed.contains('@')
        || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        || trimmed.starts_with('/')
        || trimmed.ends_with('/')
        || trimmed.ends_with(':')
    {
        return Err(ImageError::InvalidName(name.to_string()));
    }
    let stripped = trimmed
        .strip_prefix("docker.io/library/")
        .or_else(|| trimmed.strip_prefix("docker.io/"))
        .unwrap_or(trimmed);
    let last_segment = stripped.rsplit('/').next().unwrap_or(stripped);
    if last_segment.is_empty() || last_segment.starts_with(':') {
        return Err(ImageError::InvalidName(name.to_string()));
    }
    if last_segment.contains(':') {
        Ok(stripped.to_string())
    } else {
        Ok(format!("{stripped}:latest"))
    }
}

/// An OCI image layout read from a (possibly gzipped) tarball, held in memory.
struct OciLayout {
    path: PathBuf,
    blobs: BTreeMap<String, Vec<u8>>,
    index: serde_json::Value,
}

/// A manifest of the layout with a wasm layer.
struct WasmImage {
    manifest_digest: String,
    manifest_media_type: String,
    wasm_digest: String,
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl OciLayout {
    fn read(path: &Path) -> Result<Self, ImageError> {
        let mut file = File::open(path)
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic)
            .map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
        let file = File::open(path)
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut archive = tar::Archive::new(reader.take(MAX_ARCHIVE_BYTES));
        let unknown = || ImageError::UnknownFormat { path: path.to_path_buf() };
        let entries = archive.entries().map_err(|_| unknown())?;
        let mut blobs = BTreeMap::new();
        let mut index_bytes = None;
        let mut saw_layout_file = false;
        for entry in entries {
            let mut entry = entry.map_err(|_| unknown())?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let entry_path = entry.path().map_err(|_| unknown())?.into_owned();
            let entry_path = entry_path.strip_prefix("./").unwrap_or(&entry_path).to_path_buf();
            let Some(p) = entry_path.to_str() else { continue };
            let mut read = || -> Result<Vec<u8>, ImageError> {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| ImageError::io(format!("reading {p} in {}", path.display()), e))?;
                Ok(buf)
            };
            if p == "index.json" {
                index_bytes = Some(read()?);
            } else if p == "oci-layout" {
                saw_layout_file = true;
            } else if let Some(hex) = p.strip_prefix("blobs/sha256/") {
                let bytes = read()?;
                let digest = format!("sha256:{hex}");
                if hex::encode(Sha256::digest(&bytes)) != hex {
                    return Err(ImageError::DigestMismatch { path: path.to_path_buf(), digest });
                }
                blobs.insert(digest, bytes);
            }
        }
        let Some(index_bytes) = index_bytes else {
            return Err(if saw_layout_file || !blobs.is_empty() {
                ImageError::InvalidLayout {
                    path: path.to_path_buf(),
                    message: "no index.json".to_string(),
                }
            } else {
                unknown()
            });
        };
        let index =
            serde_json::from_slice(&index_bytes).map_err(|e| ImageError::InvalidLayout {
                path: path.to_path_buf(),
                message: format!("index.json: {e}"),
            })?;
        Ok(OciLayout { path: path.to_path_buf(), blobs, index })
    }

    fn invalid(&self, message: String) -> ImageError {
        ImageError::InvalidLayout { path: self.path.clone(), message }
    }

    fn blob(&self, digest: &str) -> Result<&[u8], ImageError> {
        self.blobs
            .get(digest)
            .map(Vec::as_slice)
            .ok_or_else(|| self.invalid(format!("blob {digest} is referenced but missing")))
    }

    fn doc(&self, digest: &str) -> Result<ManifestDoc, ImageError> {
        serde_json::from_slice(self.blob(digest)?)
            .map_err(|e| self.invalid(format!("manifest {digest}: {e}")))
    }

    /// Every manifest with a wasm layer, with the names its index entry carries. Nested indexes
    /// (multi-platform) are followed one level; their entry's names apply to the first wasm
    /// manifest inside.
    fn wasm_images(&self) -> Result<Vec<WasmImage>, ImageError> {
        let top: ManifestDoc = serde_json::from_value(self.index.clone())
            .map_err(|e| self.invalid(format!("index.json: {e}")))?;
        let mut found_types = Vec::new();
        let mut images: Vec<WasmImage> = Vec::new();
        for desc in &top.manifests {
            let names = names_from_annotations(&desc.annotations);
            let candidates =
                if desc.media_type == OCI_INDEX || desc.media_type == DOCKER_MANIFEST_LIST {
                    self.doc(&desc.digest)?.manifests
                } else {
                    vec![Descriptor {
                        media_type: desc.media_type.clone(),
                        digest: desc.digest.clone(),
                        annotations: BTreeMap::new(),
                    }]
                };
            for manifest in candidates {
                let doc = self.doc(&manifest.digest)?;
                let wasm = doc
                    .layers
                    .iter()
                    .find(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()));
                match wasm {
                    Some(layer) => {
                        let media_type = doc
                            .media_type
                            .clone()
                            .filter(|m| !m.is_empty())
                            .or_else(|| Some(manifest.media_type.clone()).filter(|m| !m.is_empty()))
                            .unwrap_or_else(|| OCI_MANIFEST.to_string());
                        if let Some(existing) =
                            images.iter_mut().find(|i| i.manifest_digest == manifest.digest)
                        {
                            existing.names.extend(names.iter().cloned());
                        } else {
                            images.push(WasmImage {
                                manifest_digest: manifest.digest.clone(),
                                manifest_media_type: media_type,
                                wasm_digest: layer.digest.clone(),
                                names: names.clone(),
                            });
                        }
                        break;
                    }
                    None => found_types.extend(doc.layers.iter().map(|l| l.media_type.clone())),
                }
            }
        }
        if images.is_empty() {
            found_types.dedup();
            return Err(ImageError::NoWasmLayer {
                path: self.path.clone(),
                found: found_types.join(", "),
            });
        }
        for image in &mut images {
            image.names.sort();
            image.names.dedup();
        }
        Ok(images)
    }
}

/// Names an index entry gives its manifest. `io.containerd.image.name` holds a full
/// reference; `org.opencontainers.image.ref.name` may be a full reference or, per the
/// image-layout spec, just a tag — a bare tag names no repository, so it is ignored (the
/// user then passes `--name`).
fn names_from_annotations(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(n) = annotations.get(CONTAINERD_NAME).and_then(|n| normalize_name(n).ok()) {
        names.push(n);
    }
    if let Some(r) = annotations.get(REF_NAME)
        && (r.contains(':') || r.contains('/'))
        && let Ok(n) = normalize_name(r)
        && !names.contains(&n)
    {
        names.push(n);
    }
    names
}

#[cfg(test)]
mod tests;
