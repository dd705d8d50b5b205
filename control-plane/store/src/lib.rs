//! The system of record: a revisioned key-value store with watch, and its implementation on
//! openraft + RocksDB (`RaftStore`). Keys look like etcd's (`/registry/pods/default/web`);
//! every write is a raft entry and its revision is the raft log index of that entry.

use std::pin::Pin;

mod raft;
#[cfg(test)]
mod tests;

pub use raft::{
    Member, MembershipError, PeerOptions, PeerTls, RaftStore, RaftStoreOptions, StoreMetrics,
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

/// A consistent snapshot of every key under a prefix.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the snapshot was taken at (>= every item's `mod_revision`).
    pub revision: u64,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A create (`prev` is `None`) or an update.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// A delete at `revision`; `prev` is the last value before it.
    Delete { key: String, revision: u64, prev: KeyValue },
}

impl WatchEvent {
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
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
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Linearizable, consistent read of every key starting with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError>;

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

    /// Every change under `prefix` with revision > `after_revision`, in revision order, each
    /// exactly once. `Compacted` if that history is gone.
    async fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError>;

    /// The latest applied revision.
    fn current_revision(&self) -> u64;
}
