//! What the workloads drive: a [`Target`] is one store deployment (Skiff's or etcd's, 1 or 3
//! members) seen the way its api server sees it. A 3-member Skiff store is one more `impl`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use skiff_store::{RaftStore, RaftStoreOptions, Store, WatchEvent, WatchStream};

/// Operations with the semantics kube-apiserver needs from its store. All are cancel-safe
/// and callable from many tasks at once.
pub trait Target: Send + Sync + 'static {
    type Watch: Watch;

    /// Create `key` if absent; the new revision.
    fn create(&self, key: &str, value: &[u8]) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Replace `key` if it is still at revision `expected` (compare-and-swap); the new revision.
    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: u64,
    ) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Linearizable read of `key`: its `mod_revision`, if present.
    fn get(&self, key: &str) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;

    /// Every change under `prefix` with a revision above `after`.
    fn watch(
        &self,
        prefix: &str,
        after: u64,
    ) -> impl Future<Output = anyhow::Result<Self::Watch>> + Send;

    /// The latest revision.
    fn revision(&self) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Drop history up to `revision` and give the space back as the store's operator would
    /// (etcd: compact + defrag). `Ok(false)` if this store cannot compact.
    fn compact(&self, revision: u64) -> impl Future<Output = anyhow::Result<bool>> + Send;

    /// Bytes allocated on disk by every member's data directory.
    fn disk_usage(&self) -> anyhow::Result<u64>;

    /// Where those bytes are, for the report (e.g. "wal 64.0 MiB, db 10.1 MiB").
    fn disk_detail(&self) -> anyhow::Result<String>;

    /// Stop every member (idempotent).
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

/// One watcher's stream of deliveries.
pub trait Watch: Send + 'static {
    /// Wait for the next delivery and append the revisions of its events to `out` (a
    /// delivery may carry none, e.g. a progress notification).
    fn next_batch(&mut self, out: &mut Vec<u64>)
    -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Skiff's store in-process, through the [`Store`] trait, as the Skiff api server uses it.
pub struct SkiffTarget {
    store: Arc<RaftStore>,
    dir: PathBuf,
    /// Processes of the other members (3-member target); killed when the target drops.
    _members: Vec<tokio::process::Child>,
}

impl SkiffTarget {
    pub async fn open(dir: &Path) -> anyhow::Result<SkiffTarget> {
        let store = RaftStore::open_with(dir, RaftStoreOptions::default())
            .await
            .with_context(|| format!("opening the Skiff store in {}", dir.display()))?;
        Ok(SkiffTarget { store: Arc::new(store), dir: dir.to_owned(), _members: Vec::new() })
    }

    /// A target driving `store` (the leader of a cluster under `dir`) whose other members
    /// run as `members`.
    pub fn with_members(
        store: Arc<RaftStore>,
        dir: &Path,
        members: Vec<tokio::process::Child>,
    ) -> SkiffTarget {
        SkiffTarget { store, dir: dir.to_owned(), _members: members }
    }
}

impl Target for SkiffTarget {
    type Watch = SkiffWatch;

    async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<u64> {
        Ok(self.store.create(key, value.to_vec()).await?.mod_revision)
    }

    async fn update(&self, key: &str, value: &[u8], expected: u64) -> anyhow::Result<u64> {
        Ok(self.store.update(key, value.to_vec(), Some(expected)).await?.mod_revision)
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.store.get(key).await?.map(|kv| kv.mod_revision))
    }

    async fn watch(&self, prefix: &str, after: u64) -> anyhow::Result<SkiffWatch> {
        Ok(SkiffWatch(self.store.watch(prefix, after).await?))
    }

    async fn revision(&self) -> anyhow::Result<u64> {
        Ok(self.store.current_revision())
    }

    async fn compact(&self, revision: u64) -> anyhow::Result<bool> {
        self.store.compact(revision).await?;
        Ok(true)
    }

    fn disk_usage(&self) -> anyhow::Result<u64> {
        disk_usage(&self.dir)
    }

    fn disk_detail(&self) -> anyhow::Result<String> {
        let mut parts = BTreeMap::new();
        for_each_file(&self.dir, |path, bytes| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kind = if name.ends_with(".sst") {
                "sst"
            } else if name.ends_with(".log") {
                "rocksdb wal"
            } else {
                "other"
            };
            *parts.entry(kind).or_insert(0) += bytes;
        })?;
        Ok(describe(&parts))
    }

    async fn shutdown(&self) {
        self.store.shutdown().await;
    }
}

pub struct SkiffWatch(WatchStream);

impl Watch for SkiffWatch {
    async fn next_batch(&mut self, out: &mut Vec<u64>) -> anyhow::Result<()> {
        match self.0.next().await {
            Some(Ok(event)) => {
                // The benchmark only writes puts; other events (if any) carry no data.
                if let WatchEvent::Put { kv, .. } = event {
                    out.push(kv.mod_revision);
                }
                Ok(())
            }
            Some(Err(e)) => Err(e.into()),
            None => bail!("watch ended"),
        }
    }
}

/// Like `du -s`: allocated blocks, so preallocated files (etcd's WAL) count in full.
pub fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for_each_file(dir, |_, bytes| total += bytes)?;
    Ok(total)
}

/// Calls `f` with every file under `dir` and the bytes allocated to it, counting a file with
/// several hard links (RocksDB checkpoints link SST files) once, as `du` does.
pub fn for_each_file(dir: &Path, mut f: impl FnMut(&Path, u64)) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                f(&entry.path(), meta.blocks() * 512);
            }
        }
    }
    Ok(())
}

/// "a 1.0 MiB, b 2.0 MiB" from bytes per part.
pub fn describe(parts: &BTreeMap<&str, u64>) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1} MiB", *bytes as f64 / (1024.0 * 1024.0)))
        .collect();
    parts.join(", ")
}
