//! Secrets (and whatever else the configuration names) encrypted at rest: a [`Store`] that
//! wraps another, sealing values on their way in and opening them on their way out, as
//! kube-apiserver's storage does with the transformers its `--encryption-provider-config`
//! sets up (`apiserver/pkg/storage/value`, applied in `storage/etcd3/store.go`).
//!
//! Keys stay as they are (as in etcd); only values change. Because the api server writes
//! through this wrapper and the raft store below it only sees sealed values, the raft log,
//! its snapshots and RocksDB hold ciphertext for every encrypted resource. Which resource a
//! key belongs to comes from its shape, `/registry/<plural>/…`, and the served resources.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use skiff_api::Registry;
pub use skiff_auth::encryption::EncryptionConfig;
use skiff_auth::encryption::{ConfigError, Transformer, is_encrypted};
use skiff_store::{
    Consistency, KeyValue, ListOptions, ListResult, Store, StoreError, TxnOp, WatchEvent,
    WatchStream,
};

use crate::pki::{PkiError, write_private};

/// The file under `DATA_DIR/pki` that holds a server's EncryptionConfiguration when no flag
/// names one.
pub const CONFIG_FILE: &str = "encryption-config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the encryption configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("writing the encryption configuration: {0}")]
    Write(#[from] PkiError),
}

/// A server's encryption configuration: the file `flag` names, else `pki_dir/`[`CONFIG_FILE`],
/// written (owner-only) when absent. A new cluster gets a fresh AES-GCM key for Secrets
/// ([`EncryptionConfig::generate_default`]); a data dir that already holds a store but no
/// file keeps storing Secrets as plain text ([`EncryptionConfig::plain_text`]), since other
/// members could not open values sealed with a key made here alone. Returns the text (what
/// joining members are given) and the parsed configuration.
pub fn load_or_generate(
    pki_dir: &Path,
    flag: Option<&Path>,
    new_cluster: bool,
) -> Result<(String, EncryptionConfig), SetupError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|source| SetupError::Read { path: path.to_path_buf(), source })
    };
    let (path, text) = match flag {
        Some(path) => (path.to_path_buf(), read(path)?),
        None => {
            let path = pki_dir.join(CONFIG_FILE);
            if path.exists() {
                let text = read(&path)?;
                (path, text)
            } else {
                let text = if new_cluster {
                    EncryptionConfig::generate_default()
                } else {
                    tracing::warn!(
                        path = %path.display(),
                        "this data dir predates encryption at rest: Secrets stay plain text until an encryption configuration is given"
                    );
                    EncryptionConfig::plain_text()
                };
                std::fs::create_dir_all(pki_dir)
                    .map_err(|source| SetupError::Read { path: pki_dir.to_path_buf(), source })?;
                write_private(&path, text.as_bytes())?;
                (path, text)
            }
        }
    };
    let config =
        EncryptionConfig::parse(&text).map_err(|source| SetupError::Config { path, source })?;
    Ok((text, config))
}

/// A [`Store`] that encrypts the values of the resources an `EncryptionConfiguration` names.
pub struct EncryptingStore {
    inner: Arc<dyn Store>,
    /// Shared with the watch streams, which outlive the call that opened them.
    values: Arc<Values>,
}

/// What seals and opens values, and what it learnt about stale ones.
struct Values {
    /// The transformer of each resource the configuration names, by the plural its keys
    /// start with.
    transformers: HashMap<&'static str, Arc<Transformer>>,
    /// Keys last read (at that revision) in a form written by a provider or key other than
    /// the first: an update that changes nothing must still rewrite them (see
    /// [`Store::is_stale`]). Holds only keys that are stale now, so it stays small.
    stale: Mutex<HashMap<String, u64>>,
    /// Whether `stale` may hold anything: spares the lock on every fresh read.
    any_stale: AtomicBool,
}

impl EncryptingStore {
    /// Wrap `inner`, encrypting what `config` says for the resources Skiff serves.
    pub fn new(inner: Arc<dyn Store>, config: &EncryptionConfig) -> EncryptingStore {
        EncryptingStore::with_registry(inner, config, &Registry::builtin())
    }

    pub fn with_registry(
        inner: Arc<dyn Store>,
        config: &EncryptionConfig,
        registry: &Registry,
    ) -> EncryptingStore {
        let mut transformers = HashMap::new();
        // Keys name no group, so each plural is stored once: by the resource that is its
        // own storage (core `events`, not `events.k8s.io`'s view of it).
        for r in registry.all().iter().filter(|r| r.storage.is_none() && r.is_stored()) {
            if transformers.contains_key(r.plural) {
                continue;
            }
            if let Some(t) = config.transformer_for(r.group, r.plural) {
                transformers.insert(r.plural, t);
            }
        }
        let values = Values {
            transformers,
            stale: Mutex::new(HashMap::new()),
            any_stale: AtomicBool::new(false),
        };
        EncryptingStore { inner, values: Arc::new(values) }
    }

    /// The plurals whose values are sealed on write (not those only read through identity).
    pub fn encrypted_resources(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .values
            .transformers
            .iter()
            .filter(|(_, t)| !t.writes_plain_text())
            .map(|(p, _)| *p)
            .collect();
        v.sort_unstable();
        v
    }
}

impl Values {
    fn transformer(&self, key: &str) -> Option<&Transformer> {
        let plural = key.strip_prefix("/registry/")?.split('/').next()?;
        self.transformers.get(plural).map(|t| &**t)
    }

    /// What to store for `value` under `key`.
    fn seal(&self, key: &str, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(t) = self.transformer(key) else { return Ok(None) };
        match t.encrypt(value, key.as_bytes()) {
            Ok(std::borrow::Cow::Borrowed(_)) => Ok(None),
            Ok(std::borrow::Cow::Owned(sealed)) => Ok(Some(sealed)),
            Err(e) => Err(StoreError::Storage(format!("cannot encrypt the value of {key}: {e}"))),
        }
    }

    /// `kv` with its value opened.
    fn open(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        let Some(t) = self.transformer(&kv.key) else {
            // A resource the configuration does not name is plain text; an encrypted value
            // of it means the configuration lost its provider (upstream's identity check).
            if is_encrypted(&kv.value) {
                return Err(StoreError::Storage(format!(
                    "cannot decrypt the value of {}: it is encrypted, but the encryption configuration has no provider for this resource",
                    kv.key
                )));
            }
            return Ok(kv);
        };
        let (plain, stale) = match t.decrypt(&kv.value, kv.key.as_bytes()) {
            Ok(d) => (
                match d.value {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(v) => Some(v),
                },
                d.stale,
            ),
            Err(e) => {
                return Err(StoreError::Storage(format!(
                    "cannot decrypt the value of {}: {e}",
                    kv.key
                )));
            }
        };
        self.note(&kv.key, kv.mod_revision, stale);
        if let Some(plain) = plain {
            kv.value = plain;
        }
        Ok(kv)
    }

    /// Remember whether `key` at `revision` was read stale.
    fn note(&self, key: &str, revision: u64, stale: bool) {
        if !stale && !self.any_stale.load(Ordering::Relaxed) {
            return;
        }
        let mut map = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        if stale {
            let at = map.entry(key.to_string()).or_insert(revision);
            *at = (*at).max(revision);
            self.any_stale.store(true, Ordering::Relaxed);
        } else if map.get(key).is_some_and(|&at| at <= revision) {
            map.remove(key);
        }
    }

    /// `key` was written (or deleted): whatever was stale about it is gone.
    fn written(&self, key: &str) {
        if self.any_stale.load(Ordering::Relaxed) {
            self.stale.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
    }

    fn open_event(&self, event: WatchEvent) -> Result<WatchEvent, StoreError> {
        Ok(match event {
            WatchEvent::Put { kv, prev } => WatchEvent::Put {
                kv: self.open(kv)?,
                prev: prev.map(|p| self.open(p)).transpose()?,
            },
            WatchEvent::Delete { key, revision, prev } => {
                WatchEvent::Delete { key, revision, prev: self.open(prev)? }
            }
            p @ WatchEvent::Progress { .. } => p,
        })
    }

    fn is_stale(&self, key: &str, mod_revision: u64) -> bool {
        self.any_stale.load(Ordering::Relaxed)
            && self.stale.lock().unwrap_or_else(|p| p.into_inner()).get(key) == Some(&mod_revision)
    }
}

#[async_trait]
impl Store for EncryptingStore {
    async fn get_with(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get_with(key, consistency).await?.map(|kv| self.values.open(kv)).transpose()
    }

    async fn list_with(
        &self,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<ListResult, StoreError> {
        let mut listed = self.inner.list_with(prefix, options).await?;
        // As kube-apiserver: one value that cannot be read fails the whole list.
        listed.items =
            listed.items.into_iter().map(|kv| self.values.open(kv)).collect::<Result<_, _>>()?;
        Ok(listed)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let Some(sealed) = self.values.seal(key, &value)? else {
            return self.inner.create(key, value).await;
        };
        let mut kv = self.inner.create(key, sealed).await?;
        self.values.written(key);
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        let Some(sealed) = self.values.seal(key, &value)? else {
            // Stored as is (identity first): a stale mark of the key is void all the same.
            let kv = self.inner.update(key, value, expected_revision).await?;
            self.values.written(key);
            return Ok(kv);
        };
        let mut kv = self.inner.update(key, sealed, expected_revision).await?;
        self.values.written(key);
        kv.value = value;
        Ok(kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        let kv = self.inner.delete(key, expected_revision).await?;
        self.values.written(key);
        // The key is gone either way; a value that cannot be opened is still reported.
        self.values.open(kv)
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<KeyValue>, StoreError> {
        // The plain values, to answer with (the store returns what it stored).
        let mut plain: Vec<Option<Vec<u8>>> = Vec::with_capacity(ops.len());
        let mut sealed_ops = Vec::with_capacity(ops.len());
        for op in ops {
            let op = match op {
                TxnOp::Create { key, value } => match self.values.seal(&key, &value)? {
                    Some(sealed) => {
                        plain.push(Some(value));
                        TxnOp::Create { key, value: sealed }
                    }
                    None => {
                        plain.push(None);
                        TxnOp::Create { key, value }
                    }
                },
                TxnOp::Update { key, value, expected } => match self.values.seal(&key, &value)? {
                    Some(sealed) => {
                        plain.push(Some(value));
                        TxnOp::Update { key, value: sealed, expected }
                    }
                    None => {
                        plain.push(None);
                        TxnOp::Update { key, value, expected }
                    }
                },
                d @ TxnOp::Delete { .. } => {
                    plain.push(None);
                    d
                }
            };
            sealed_ops.push(op);
        }
        let deletes: Vec<bool> =
            sealed_ops.iter().map(|op| matches!(op, TxnOp::Delete { .. })).collect();
        let results = self.inner.txn(sealed_ops).await?;
        results
            .into_iter()
            .zip(plain)
            .zip(deletes)
            .map(|((mut kv, plain), delete)| {
                self.values.written(&kv.key);
                if delete {
                    return self.values.open(kv);
                }
                if let Some(plain) = plain {
                    kv.value = plain;
                }
                Ok(kv)
            })
            .collect()
    }

    async fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError> {
        let events = self.inner.watch(prefix, after_revision).await?;
        let values = self.values.clone();
        Ok(Box::pin(events.map(move |event| event.and_then(|e| values.open_event(e)))))
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    fn compacted_revision(&self) -> u64 {
        self.inner.compacted_revision()
    }

    fn current_revision(&self) -> u64 {
        self.inner.current_revision()
    }

    async fn consistent_revision(&self) -> Result<u64, StoreError> {
        self.inner.consistent_revision().await
    }

    fn request_watch_progress(&self) {
        self.inner.request_watch_progress()
    }

    /// Whether `key` at `mod_revision` was last read in a form of a provider or key other
    /// than the first: a rewrite would seal it with the first, as key rotation needs.
    fn is_stale(&self, key: &str, mod_revision: u64) -> bool {
        self.values.is_stale(key, mod_revision)
    }
}

#[cfg(test)]
mod tests;
