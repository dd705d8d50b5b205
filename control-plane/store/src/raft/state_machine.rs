//! The replicated state machine: the key space in RocksDB (column families `kv` and
//! `sm_meta`). Every `apply` call lands in one WriteBatch together with the last-applied log
//! id, the store revision and the membership, so the stored state always matches a log
//! position exactly. Writes are not synced: the log is, and after a crash openraft re-applies
//! what the state lost (the log store syncs before purging anything a snapshot covers).
//!
//! Revisions: a write that changes something (a single op, or a whole transaction) gets
//! revision `max(store revision + 1, log index)`, which becomes the store revision; a refused
//! write gets none. The writes of a [`Command::Batch`] entry thus get consecutive revisions
//! in batch order, and an entry holding one write gets its log index, as before batching.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use super::codec::{CodecError, HistoryRecord, Reader, StoredValue, history_key};
use super::snapshot;
use super::watch::WatchHub;
use super::{
    CF_HISTORY, CF_KV, CF_LOG, CF_SM_META, Command, CommandResponse, Entry, Node, NodeId,
    TypeConfig,
};
use crate::WatchEvent;

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
/// The revision up to which history has been dropped (u64 big-endian).
const KEY_COMPACTED: &[u8] = b"compacted";
/// The store revision: the last one a write got (u64 big-endian). Absent in a store written
/// before revisions were counted apart from log indexes; then it is the last applied index.
const KEY_REVISION: &[u8] = b"revision";

type Membership = StoredMembership<NodeId, Node>;

/// Errors inside the state machine; turned into openraft `StorageError`s at the trait edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateMachineError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("decoding stored data: {0}")]
    Codec(#[from] CodecError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    #[error("snapshot image is not a skiff snapshot or is truncated")]
    BadSnapshot,
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, StateMachineError> {
    db.cf_handle(name).ok_or(StateMachineError::MissingColumnFamily(name))
}

fn read_json<T: serde::de::DeserializeOwned>(
    raw: Option<impl AsRef<[u8]>>,
) -> Result<Option<T>, StateMachineError> {
    match raw {
        Some(raw) => Ok(Some(serde_json::from_slice(raw.as_ref())?)),
        None => Ok(None),
    }
}

/// Last applied log id and membership, as persisted.
pub(crate) fn read_applied_state(
    db: &DB,
) -> Result<(Option<LogId<NodeId>>, Membership), StateMachineError> {
    read_applied_state_at(&db.snapshot(), db)
}

/// Last applied log id and membership as of the RocksDB snapshot `view` of `db`.
pub(crate) fn read_applied_state_at(
    view: &rocksdb::Snapshot<'_>,
    db: &DB,
) -> Result<(Option<LogId<NodeId>>, Membership), StateMachineError> {
    let meta = cf(db, CF_SM_META)?;
    let applied = read_json(view.get_pinned_cf(meta, KEY_LAST_APPLIED)?)?;
    let membership = read_json(view.get_pinned_cf(meta, KEY_MEMBERSHIP)?)?.unwrap_or_default();
    Ok((applied, membership))
}

/// The store revision as of the RocksDB snapshot `view` of `db`.
pub(crate) fn read_revision_at(
    view: &rocksdb::Snapshot<'_>,
    db: &DB,
) -> Result<u64, StateMachineError> {
    match view.get_pinned_cf(cf(db, CF_SM_META)?, KEY_REVISION)? {
        Some(raw) => Ok(Reader::new(&raw).u64()?),
        None => Ok(read_applied_state_at(view, db)?.0.map_or(0, |id| id.index)),
    }
}

/// The compaction point as of the RocksDB snapshot `view`: history holds every change after it.
pub(crate) fn read_compacted(
    view: &rocksdb::Snapshot<'_>,
    db: &DB,
) -> Result<u64, StateMachineError> {
    let raw = view.get_pinned_cf(cf(db, CF_SM_META)?, KEY_COMPACTED)?;
    Ok(match raw {
        Some(raw) => Reader::new(&raw).u64()?,
        None => 0,
    })
}

/// Drop history up to and including `revision` (never past `applied`), in one write with the
/// new compaction point, then let RocksDB reclaim the space. Returns the compaction point.
pub(crate) fn compact_history(db: &DB, revision: u64) -> Result<u64, StateMachineError> {
    let history_cf = cf(db, CF_HISTORY)?;
    let view = db.snapshot();
    let current = read_compacted(&view, db)?;
    let applied = read_revision_at(&view, db)?;
    drop(view);
    let target = revision.min(applied);
    if target <= current {
        return Ok(current);
    }
    let end = history_key(target.saturating_add(1), 0);
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(history_cf, history_key(0, 0), end);
    batch.put_cf(cf(db, CF_SM_META)?, KEY_COMPACTED, target.to_be_bytes());
    db.write(batch)?;
    db.compact_range_cf(history_cf, None::<&[u8]>, Some(end.as_slice()));
    // The raft log behind the compaction point is purged (or soon will be) behind snapshots;
    // its deletions free space only once RocksDB compacts that range too. (A revision is at
    // least its entry's log index, so this range may reach past the purged part; compacting
    // it deletes nothing.)
    db.compact_range_cf(
        cf(db, CF_LOG)?,
        None::<&[u8]>,
        Some(super::codec::index_key(target).as_slice()),
    );
    Ok(target)
}

/// The writes of one `apply` call: the key space, its history and the watch events, built up
/// entry by entry; later entries see the keys earlier ones wrote through `overlay`.
struct ApplyBatch<'a> {
    db: &'a DB,
    kv_cf: &'a rocksdb::ColumnFamily,
    history_cf: &'a rocksdb::ColumnFamily,
    batch: WriteBatch,
    overlay: HashMap<String, Option<StoredValue>>,
    events: Vec<WatchEvent>,
    /// The store revision: the last one a write got.
    revision: u64,
}

impl ApplyBatch<'_> {
    fn current(&self, key: &str) -> Result<Option<StoredValue>, StateMachineError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        match self.db.get_pinned_cf(self.kv_cf, key.as_bytes())? {
            Some(raw) => Ok(Some(StoredValue::decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Run the command of the entry at log index `index`: one write, or a batch of them.
    fn apply(&mut self, cmd: Command, index: u64) -> Result<CommandResponse, StateMachineError> {
        let Command::Batch(cmds) = cmd else { return self.apply_write(cmd, index) };
        let mut responses = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            responses.push(match cmd {
                Command::Batch(_) => CommandResponse::NotFound("nested batch".into()),
                cmd => self.apply_write(cmd, index)?,
            });
        }
        Ok(CommandResponse::Batch(responses))
    }

    /// Run one write (a single op or a transaction) of the entry at log index `index`. If it
    /// changes anything it takes the next revision.
    fn apply_write(
        &mut self,
        cmd: Command,
        index: u64,
    ) -> Result<CommandResponse, StateMachineError> {
        let revision = self.revision.saturating_add(1).max(index);
        let ops = match cmd {
            Command::Txn(ops) => ops,
            single => {
                let key = single.key().unwrap_or_default().to_owned();
                let current = self.current(&key)?;
                let (response, next, event) = execute(single, current, revision);
                if let Some(event) = event {
                    self.commit(0, key, next, event, revision);
                    self.revision = revision;
                }
                return Ok(response);
            }
        };
        // A transaction: evaluate every op against the state its earlier ops leave, and
        // commit only if all succeed.
        let mut staged: Vec<(String, Option<StoredValue>, WatchEvent)> = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let Some(key) = op.key().map(str::to_owned) else {
                return Ok(CommandResponse::NotFound("nested transaction".into()));
            };
            let current = match staged.iter().rev().find(|(k, _, _)| *k == key) {
                Some((_, next, _)) => next.clone(),
                None => self.current(&key)?,
            };
            let (response, next, event) = execute(op, current, revision);
            let (Some(event), CommandResponse::Kv(kv)) = (event, &response) else {
                return Ok(response);
            };
            results.push(kv.clone());
            staged.push((key, next, event));
        }
        if !staged.is_empty() {
            self.revision = revision;
        }
        for (seq, (key, next, event)) in staged.into_iter().enumerate() {
            self.commit(u32::try_from(seq).unwrap_or(u32::MAX), key, next, event, revision);
        }
        Ok(CommandResponse::Txn(results))
    }

    fn commit(
        &mut self,
        seq: u32,
        key: String,
        next: Option<StoredValue>,
        event: WatchEvent,
        revision: u64,
    ) {
        match &next {
            Some(v) => self.batch.put_cf(self.kv_cf, key.as_bytes(), v.encode()),
            None => self.batch.delete_cf(self.kv_cf, key.as_bytes()),
        }
        self.batch.put_cf(
            self.history_cf,
            history_key(revision, seq),
            HistoryRecord::encode_event(&event),
        );
        self.overlay.insert(key, next);
        self.events.push(event);
    }
}

#[derive(Clone)]
pub(crate) struct StateMachineStore {
    db: Arc<DB>,
    hub: Arc<WatchHub>,
    /// Checkpoints and images of snapshots.
    snapshots: PathBuf,
}

impl StateMachineStore {
    /// Opens the state persisted in `db` and primes `hub` with its revision.
    pub(crate) fn new(
        db: Arc<DB>,
        hub: Arc<WatchHub>,
        snapshots: PathBuf,
    ) -> Result<Self, StateMachineError> {
        let view = db.snapshot();
        let (revision, compacted) = (read_revision_at(&view, &db)?, read_compacted(&view, &db)?);
        drop(view);
        hub.reset(revision, compacted);
        Ok(StateMachineStore { db, hub, snapshots })
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Vec<CommandResponse>, StateMachineError> {
        let mut batch = ApplyBatch {
            db: &self.db,
            kv_cf: cf(&self.db, CF_KV)?,
            history_cf: cf(&self.db, CF_HISTORY)?,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            events: Vec::new(),
            // The hub holds the persisted revision: primed at open and install, and
            // advanced after each applied batch is written (batches apply one at a time).
            revision: self.hub.current_revision(),
        };
        let meta_cf = cf(&self.db, CF_SM_META)?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut last = None;
        let mut membership = None;

        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => responses.push(CommandResponse::Noop),
                EntryPayload::Membership(m) => {
                    membership = Some(Membership::new(Some(entry.log_id), m));
                    responses.push(CommandResponse::Noop);
                }
                EntryPayload::Normal(cmd) => responses.push(batch.apply(cmd, index)?),
            }
            last = Some(entry.log_id);
        }

        let Some(last) = last else { return Ok(responses) };
        let ApplyBatch { batch: mut write, events, revision, .. } = batch;
        write.put_cf(meta_cf, KEY_LAST_APPLIED, serde_json::to_vec(&last)?);
        write.put_cf(meta_cf, KEY_REVISION, revision.to_be_bytes());
        if let Some(m) = membership {
            write.put_cf(meta_cf, KEY_MEMBERSHIP, serde_json::to_vec(&m)?);
        }
        self.db.write_opt(write, &WriteOptions::default())?;
        self.hub.publish(revision, events);
        Ok(responses)
    }

    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        file: std::fs::File,
    ) -> Result<(), StateMachineError> {
        let installed = snapshot::install(&self.db, meta, file, |batch, meta_cf, revision| {
            // The meta openraft hands us is authoritative for what the snapshot covers.
            batch.put_cf(meta_cf, KEY_LAST_APPLIED, serde_json::to_vec(&meta.last_log_id)?);
            batch.put_cf(meta_cf, KEY_MEMBERSHIP, serde_json::to_vec(&meta.last_membership)?);
            batch.put_cf(meta_cf, KEY_SNAPSHOT_META, serde_json::to_vec(meta)?);
            batch.put_cf(meta_cf, KEY_REVISION, revision.to_be_bytes());
            // History starts over at the snapshot.
            batch.put_cf(meta_cf, KEY_COMPACTED, revision.to_be_bytes());
            Ok(())
        })?;
        // The installed state is this member's current snapshot from now on.
        snapshot::checkpoint(&self.db, &self.snapshots, Some(meta))?;
        snapshot::remove_others(&self.snapshots, &meta.snapshot_id);
        self.hub.reset(installed, installed);
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StateMachineError> {
        let meta_cf = cf(&self.db, CF_SM_META)?;
        let Some(meta) = read_json::<SnapshotMeta<NodeId, Node>>(
            self.db.get_pinned_cf(meta_cf, KEY_SNAPSHOT_META)?,
        )?
        else {
            return Ok(None);
        };
        let path = snapshot::image_file(&self.snapshots, &meta)?;
        let file = std::fs::File::open(path)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) }))
    }
}

/// Run one command against the key's current value, as a write at `revision`. Deterministic: it
/// depends only on its inputs, so every replica computes the same outcome. Returns the
/// response, the key's new value, and the event if anything changed.
fn execute(
    cmd: Command,
    current: Option<StoredValue>,
    revision: u64,
) -> (CommandResponse, Option<StoredValue>, Option<WatchEvent>) {
    let unchanged = |response| (response, None, None);
    match cmd {
        Command::Create { key, value } => {
            if current.is_some() {
                return unchanged(CommandResponse::AlreadyExists(key));
            }
            let stored = StoredValue { create_revision: revision, mod_revision: revision, value };
            let kv = stored.clone().into_kv(key);
            (
                CommandResponse::Kv(kv.clone().into()),
                Some(stored),
                Some(WatchEvent::Put { kv, prev: None }),
            )
        }
        Command::Update { key, value, expected } => {
            let Some(old) = current else { return unchanged(CommandResponse::NotFound(key)) };
            if let Some(expected) = expected.filter(|e| *e != old.mod_revision) {
                return unchanged(CommandResponse::Conflict {
                    key,
                    expected,
                    current: old.mod_revision,
                });
            }
            let stored =
                StoredValue { create_revision: old.create_revision, mod_revision: revision, value };
            let kv = stored.clone().into_kv(key.clone());
            let prev = old.into_kv(key);
            (
                CommandResponse::Kv(kv.clone().into()),
                Some(stored),
                Some(WatchEvent::Put { kv, prev: Some(prev) }),
            )
        }
        Command::Txn(_) | Command::Batch(_) => {
            unchanged(CommandResponse::NotFound("nested transaction".into()))
        }
        Command::Delete { key, expected } => {
            let Some(old) = current else { return unchanged(CommandResponse::NotFound(key)) };
            if let Some(expected) = expected.filter(|e| *e != old.mod_revision) {
                return unchanged(CommandResponse::Conflict {
                    key,
                    expected,
                    current: old.mod_revision,
                });
            }
            let prev = old.into_kv(key.clone());
            let mut deleted = prev.clone();
            deleted.mod_revision = revision;
            let event = WatchEvent::Delete { key, revision, prev };
            (CommandResponse::Kv(deleted.into()), None, Some(event))
        }
    }
}

/// Builds snapshots as RocksDB checkpoints, so it can run while the state machine applies.
pub(crate) struct SnapshotBuilder {
    db: Arc<DB>,
    dir: PathBuf,
}

fn build_snapshot(db: &DB, dir: &Path) -> Result<SnapshotMeta<NodeId, Node>, StateMachineError> {
    let meta = snapshot::checkpoint(db, dir, None)?;
    db.put_cf(cf(db, CF_SM_META)?, KEY_SNAPSHOT_META, serde_json::to_vec(&meta)?)?;
    snapshot::remove_others(dir, &meta.snapshot_id);
    Ok(meta)
}

fn to_storage(e: StateMachineError, read: bool) -> StorageError<NodeId> {
    let any = AnyError::new(&e);
    let io = if read {
        StorageIOError::read_state_machine(any)
    } else {
        StorageIOError::write_state_machine(any)
    };
    io.into()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (db, dir) = (Arc::clone(&self.db), self.dir.clone());
        let built = tokio::task::spawn_blocking(move || {
            let meta = build_snapshot(&db, &dir)?;
            // openraft keeps only the meta of a snapshot it asked to build; the data goes out
            // through `get_current_snapshot`, so an empty, already unlinked file will do here.
            let placeholder = snapshot::incoming_file(&dir)?;
            Ok::<_, StateMachineError>((meta, placeholder))
        })
        .await;
        match built {
            Ok(Ok((meta, file))) => {
                Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) })
            }
            Ok(Err(e)) => Err(StorageIOError::write_snapshot(None, &e).into()),
            Err(e) => Err(StorageIOError::write_snapshot(None, &StateMachineError::from(e)).into()),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        read_applied_state(&self.db).map_err(|e| to_storage(e, true))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries.into_iter().collect()).map_err(|e| to_storage(e, false))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { db: Arc::clone(&self.db), dir: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let file = snapshot::incoming_file(&self.snapshots).map_err(|e| to_storage(e, false))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let write_err =
            |e: &StateMachineError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let mut file = snapshot.into_std().await;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
            .map_err(|e| write_err(&StateMachineError::from(e)))?;
        // Installing reads and writes the whole state: keep it off the async workers.
        let this = self.clone();
        let owned_meta = meta.clone();
        let result = tokio::task::spawn_blocking(move || this.install(&owned_meta, file)).await;
        match result {
            Ok(done) => done.map_err(|e| write_err(&e).into()),
            Err(e) => Err(write_err(&StateMachineError::from(e)).into()),
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot().map_err(|e| to_storage(e, true))
    }
}
