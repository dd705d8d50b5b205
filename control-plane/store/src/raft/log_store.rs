//! The raft log and vote in RocksDB (column families `log` and `log_meta`).
//!
//! An append writes the entries into RocksDB and syncs the WAL before it acknowledges them.
//! Grouping cannot happen here: openraft 0.9's core waits for each append to be acknowledged
//! before it handles the next message, so there is never a second append to share the sync
//! with (a flusher thread that fsynced "once per queued callback" did exactly one fsync per
//! append, plus two thread hand-offs on the write path). Concurrent client writes are grouped
//! before raft instead, into one entry per batch (`batcher.rs`). The sync runs on the core's
//! own thread, with the runtime told that this worker blocks, so that no other thread has to
//! be woken (under CPU pressure each wake-up can cost more than the fsync).
//!
//! The entries are written unsynced and then the WAL is synced (`flush_wal(true)`), rather
//! than written with `sync`: the state machine's unsynced writes, which go on meanwhile, must
//! not be held up in a RocksDB write group waiting for this fsync. Votes, truncations and
//! purges are synced writes.

// openraft's `StorageError` is what the storage traits return; the helpers return it too
// rather than box it only to unbox it at the trait edge.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use super::codec::{self, index_key};
use super::{CF_LOG, CF_LOG_META, Entry, NodeId, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn cf_missing(name: &str) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(format!("column family {name} is missing"))).into()
}

/// Reads log entries; cheap to clone, handed to openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogReader {
    db: Arc<DB>,
}

impl LogReader {
    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError<NodeId>> {
        self.db.cf_handle(name).ok_or_else(|| cf_missing(name))
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let cf = self.cf(CF_LOG)?;
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek(index_key(start));
        let mut out = Vec::new();
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else { break };
            let index = codec::index_from_key(key).map_err(|e| StorageIOError::read_logs(&e))?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            out.push(
                codec::decode_entry(value)
                    .map_err(|e| StorageIOError::read_log_at_index(index, &e))?,
            );
            it.next();
        }
        it.status().map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(out)
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let cf = self.cf(CF_LOG_META)?;
        let Some(raw) = self.db.get_pinned_cf(cf, key).map_err(|e| StorageIOError::read(&e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&raw).map(Some).map_err(|e| StorageIOError::read(&e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        self.entries(start, end)
    }
}

/// The log store owned by the raft core.
pub(crate) struct LogStore {
    reader: LogReader,
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        LogStore { reader: LogReader { db } }
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        self.reader.db.write_opt(batch, &synced())
    }
}

/// Run `f`, which blocks on the disk, from async code: on a multi-threaded runtime the worker
/// hands its other tasks over first; elsewhere (openraft's test suite) it just blocks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.reader.meta(KEY_LAST_PURGED)?;
        let cf = self.reader.cf(CF_LOG)?;
        let mut it = self.reader.db.raw_iterator_cf(cf);
        it.seek_to_last();
        let last = match it.value() {
            Some(value) => {
                Some(codec::decode_entry(value).map_err(|e| StorageIOError::read_logs(&e))?.log_id)
            }
            None => None,
        };
        it.status().map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = match last {
            Some(id) => Some(id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let raw = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.reader.cf(CF_LOG_META)?, KEY_VOTE, raw);
        self.write_synced(batch).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.reader.meta(KEY_VOTE)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.reader.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let raw = codec::encode_entry(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.put_cf(cf, index_key(entry.log_id.index), raw);
        }
        let db = &self.reader.db;
        blocking(|| db.write(batch).and_then(|()| db.flush_wal(true)))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let cf = self.reader.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.write_synced(batch).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let raw = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.reader.cf(CF_LOG_META)?, KEY_LAST_PURGED, raw);
        batch.delete_range_cf(
            self.reader.cf(CF_LOG)?,
            index_key(0),
            index_key(log_id.index.saturating_add(1)),
        );
        // Synced, and the WAL is shared by all column families: this also makes every earlier
        // (unsynced) state-machine write durable before the log that could replay it is gone.
        self.write_synced(batch).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
