//! The raft log and vote in RocksDB (column families `log` and `log_meta`).
//!
//! Appends are group-committed: `append` writes the entries into RocksDB without syncing, so
//! they are readable at once, and hands the completion callback to a flusher thread that
//! fsyncs the WAL (`flush_wal(true)`) once for every callback queued meanwhile, then acks
//! them. openraft 0.9 submits one append per client write, so this is what turns a thousand
//! concurrent writes into a handful of fsyncs. Votes, truncations and purges are synced
//! writes and return only once on disk.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc;

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
    /// `None` only while dropping.
    flush_tx: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogStore {
    /// Close the channel and wait for the flusher, so its handle on RocksDB is released here
    /// and not on a detached thread racing process exit (RocksDB aborts if it is closed after
    /// its static state is torn down).
    fn drop(&mut self) {
        self.flush_tx.take();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Result<Self, std::io::Error> {
        let (flush_tx, flush_rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let flush_db = Arc::clone(&db);
        // Exits when the store (the only sender) is dropped, i.e. when the raft core stops.
        let flusher = std::thread::Builder::new()
            .name("skiff-raft-log-flush".into())
            .spawn(move || flush_loop(&flush_db, &flush_rx))?;
        Ok(LogStore { reader: LogReader { db }, flush_tx: Some(flush_tx), flusher: Some(flusher) })
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        self.reader.db.write_opt(batch, &synced())
    }
}

fn flush_loop(db: &DB, rx: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        pending.extend(rx.try_iter());
        let result = db.flush_wal(true);
        for callback in pending {
            callback.log_io_completed(
                result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
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
        // Unsynced: readable now, durable once the flusher has synced the WAL.
        self.reader.db.write(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        let sent = match &self.flush_tx {
            Some(tx) => tx.send(callback),
            None => Err(mpsc::SendError(callback)),
        };
        if let Err(mpsc::SendError(callback)) = sent {
            callback.log_io_completed(Err(std::io::Error::other("raft log flusher has stopped")));
        }
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
