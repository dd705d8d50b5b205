//! The system of record: a revisioned key-value store with watch, and its implementation on
//! openraft + RocksDB (`RaftStore`). Keys look like etcd's (`/registry/pods/default/web`);
//! every write goes through the raft log (concurrent writes share an entry) and gets the next
//! revision, which is never below its entry's log index (see `raft/mod.rs`).

use std::pin::Pin;

mod raft;
#[cfg(test)]
mod tests;

pub use raft::{
    Member, MembershipError, PeerOptions, PeerTls, RaftStore, RaftStoreOptions, StoreMetrics,
    error_chain,
};

use async_trait::async_trait;
use futures::Stream;

/// One stored key with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: u64,
    /// Revision of the last write to the key.
    pub mod_revision: u64,
}

/// A consistent snapshot of the keys under a prefix (or one page of it).
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the snapshot was taken at (>= every item's `mod_revision`).
    pub revision: u64,
    /// A `limit` cut the list short: more keys follow the last item at this revision.
    pub more: bool,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began, on any member (read index).
    #[default]
    Linearizable,
    /// This member's applied state as it is: cheaper, possibly a little stale on a follower.
    Serializable,
}

/// What [`Store::list_with`] reads.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys sorting strictly after this one (where the previous page ended).
    pub start_after: Option<String>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// Read the state as of this revision (still in history) instead of the latest.
    pub revision: Option<u64>,
    pub consistency: Consistency,
}

/// One write of a transaction ([`Store::txn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    /// Replace; with `expected`, only if the key is at that revision.
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<u64>,
    },
    /// Delete; with `expected`, only if the key is at that revision.
    Delete {
        key: String,
        expected: Option<u64>,
    },
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A create (`prev` is `None`) or an update.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// A delete at `revision`; `prev` is the last value before it.
    Delete { key: String, revision: u64, prev: KeyValue },
    /// No event of this watch is pending up to `revision`: a watcher that resumes from it
    /// misses nothing (a Kubernetes BOOKMARK).
    Progress { revision: u64 },
}

impl WatchEvent {
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }

    /// The changed key (`None` for progress notifications).
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put { kv, .. } => Some(&kv.key),
            WatchEvent::Delete { key, .. } => Some(key),
            WatchEvent::Progress { .. } => None,
        }
    }
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap precondition failed: the key is at another revision.
    #[error("key {key:?} is at revision {current}, not the expected {expected}")]
    Conflict { key: String, expected: u64, current: u64 },
    /// The requested revision is older than the history the store still keeps.
    #[error("revision {requested} has been compacted (oldest available is {oldest})")]
    Compacted { requested: u64, oldest: u64 },
    /// The requested revision is newer than this member has applied, even after waiting.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: u64, current: u64 },
    /// A watcher fell too far behind; it must re-list and watch again.
    #[error("watcher fell behind and was dropped")]
    WatchLagged,
    /// No leader right now, or this member is not it; the call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl StoreError {
    /// Whether the same call may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The store contract the api server relies on. Implementations are thread-safe and every
/// method is cancel-safe in the sense that a dropped call either applied fully or not at all.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Linearizable read of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.get_with(key, Consistency::Linearizable).await
    }

    /// Read of one key with the given consistency.
    async fn get_with(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, StoreError>;

    /// Linearizable, consistent read of every key starting with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError> {
        self.list_with(prefix, &ListOptions::default()).await
    }

    /// Consistent read of the keys starting with `prefix`, sorted by key, as of one revision
    /// (the latest, or `options.revision`), paged by `start_after` + `limit`. Pages read at
    /// the same revision form one snapshot. `Compacted` if that revision's history is gone,
    /// `FutureRevision` if it is not reached within a few seconds.
    async fn list_with(
        &self,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<ListResult, StoreError>;

    /// Create `key`; fails with `AlreadyExists` if present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replace an existing `key`. With `expected_revision`, fails with `Conflict` unless the
    /// key's `mod_revision` equals it. `NotFound` if absent.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError>;

    /// Delete `key` (with the same precondition as `update`); returns the deleted value with
    /// `mod_revision` set to the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError>;

    /// Apply every op or none, all at one revision. On failure nothing is written and the
    /// error is that of the first op whose precondition failed. Returns each op's result, as
    /// `create`/`update`/`delete` would.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<KeyValue>, StoreError>;

    /// Every change under `prefix` with revision > `after_revision`, in revision order, each
    /// exactly once, interleaved with `Progress` notifications while idle. `Compacted` if
    /// that history is gone. A stream ends with an error item (e.g. `Compacted` if history
    /// it still needed was compacted meanwhile, `Unavailable` at shutdown).
    async fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError>;

    /// Drop the change history up to and including `revision` (watches and lists at older
    /// revisions get `Compacted`). The current state is untouched. Idempotent.
    async fn compact(&self, revision: u64) -> Result<(), StoreError>;

    /// The oldest revision still readable: history covers every change after it.
    fn compacted_revision(&self) -> u64;

    /// The latest applied revision.
    fn current_revision(&self) -> u64;

    /// The revision a linearizable read would see now: a read-index round trip, no data.
    async fn consistent_revision(&self) -> Result<u64, StoreError>;

    /// Ask every open watch to send a `Progress` notification now if it has nothing pending,
    /// instead of at its next interval (etcd's `RequestWatchProgress`): a cache fed by a
    /// watch learns at once that it has reached the store's revision. Best effort.
    fn request_watch_progress(&self) {}

    /// Whether the value `key` held at `mod_revision`, as this store last handed it out, is
    /// stored in a form due to be rewritten (sealed by an encryption provider or key that is
    /// no longer the first): an update that changes nothing must still write it, which is how
    /// keys are rotated (kube-apiserver's "stale" reads). Cheap and never blocks. Stores that
    /// keep values as given never say so.
    fn is_stale(&self, _key: &str, _mod_revision: u64) -> bool {
        false
    }
}
