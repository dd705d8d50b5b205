//! The replicated state machine: the key space in RocksDB (column families `kv` and
//! `sm_meta`). Every `apply` call lands in one WriteBatch together with the last-applied log
//! id and membership, so the stored state always matches a log position exactly. Writes are
//! not synced: the log is, and after a crash openraft re-applies what the state lost (the log
//! store syncs before purging anything a snapshot covers).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use super::codec::{CodecError, HistoryRecord, Reader, StoredValue, history_key, put_bytes};
use super::watch::WatchHub;
use super::{
    CF_HISTORY, CF_KV, CF_SM_META, Command, CommandResponse, Entry, Node, NodeId, TypeConfig,
};
use crate::WatchEvent;

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";
/// The revision up to which history has been dropped (u64 big-endian).
const KEY_COMPACTED: &[u8] = b"compacted";

const SNAPSHOT_MAGIC: &[u8] = b"SKIFFSN1";

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
    #[error("snapshot image does not start with the skiff magic")]
    BadSnapshot,
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
    let applied = read_applied_state_at(&view, db)?.0.map_or(0, |id| id.index);
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

    /// Run one command (a single op or a transaction) at log index `index`.
    fn apply(&mut self, cmd: Command, index: u64) -> Result<CommandResponse, StateMachineError> {
        let ops = match cmd {
            Command::Txn(ops) => ops,
            single => {
                let key = single.key().unwrap_or_default().to_owned();
                let current = self.current(&key)?;
                let (response, next, event) = execute(single, current, index);
                if let Some(event) = event {
                    self.commit(0, key, next, event, index);
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
            let (response, next, event) = execute(op, current, index);
            let (Some(event), CommandResponse::Kv(kv)) = (event, &response) else {
                return Ok(response);
            };
            results.push(kv.clone());
            staged.push((key, next, event));
        }
        for (seq, (key, next, event)) in staged.into_iter().enumerate() {
            self.commit(u32::try_from(seq).unwrap_or(u32::MAX), key, next, event, index);
        }
        Ok(CommandResponse::Txn(results))
    }

    fn commit(
        &mut self,
        seq: u32,
        key: String,
        next: Option<StoredValue>,
        event: WatchEvent,
        index: u64,
    ) {
        match &next {
            Some(v) => self.batch.put_cf(self.kv_cf, key.as_bytes(), v.encode()),
            None => self.batch.delete_cf(self.kv_cf, key.as_bytes()),
        }
        self.batch.put_cf(
            self.history_cf,
            history_key(index, seq),
            HistoryRecord::encode_event(&event),
        );
        self.overlay.insert(key, next);
        self.events.push(event);
    }
}

pub(crate) struct StateMachineStore {
    db: Arc<DB>,
    hub: Arc<WatchHub>,
}

impl StateMachineStore {
    /// Opens the state persisted in `db` and primes `hub` with its revision.
    pub(crate) fn new(db: Arc<DB>, hub: Arc<WatchHub>) -> Result<Self, StateMachineError> {
        let (applied, _) = read_applied_state(&db)?;
        let compacted = read_compacted(&db.snapshot(), &db)?;
        hub.reset(applied.map_or(0, |id| id.index), compacted);
        Ok(StateMachineStore { db, hub })
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
        let ApplyBatch { batch: mut write, events, .. } = batch;
        write.put_cf(meta_cf, KEY_LAST_APPLIED, serde_json::to_vec(&last)?);
        if let Some(m) = membership {
            write.put_cf(meta_cf, KEY_MEMBERSHIP, serde_json::to_vec(&m)?);
        }
        self.db.write_opt(write, &WriteOptions::default())?;
        self.hub.publish(last.index, events);
        Ok(responses)
    }

    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: &[u8],
    ) -> Result<(), StateMachineError> {
        let image = SnapshotImage::decode(data)?;
        if image.applied != meta.last_log_id {
            tracing::warn!(image = ?image.applied, meta = ?meta.last_log_id, "snapshot image and meta disagree; trusting meta");
        }
        let kv_cf = cf(&self.db, CF_KV)?;
        let meta_cf = cf(&self.db, CF_SM_META)?;
        let mut batch = WriteBatch::default();
        // Keys are UTF-8, which never contains 0xFF, so this range is the whole key space.
        batch.delete_range_cf(kv_cf, b"".as_slice(), [0xFFu8].as_slice());
        for (key, value) in &image.items {
            batch.put_cf(kv_cf, key, value);
        }
        // Nothing before the snapshot is known here: its index is the oldest readable revision.
        let installed = meta.last_log_id.map_or(0, |id| id.index);
        batch.delete_range_cf(
            cf(&self.db, CF_HISTORY)?,
            history_key(0, 0),
            history_key(u64::MAX, u32::MAX),
        );
        batch.put_cf(meta_cf, KEY_COMPACTED, installed.to_be_bytes());
        // The meta openraft hands us is authoritative for what the snapshot covers.
        batch.put_cf(meta_cf, KEY_LAST_APPLIED, serde_json::to_vec(&meta.last_log_id)?);
        batch.put_cf(meta_cf, KEY_MEMBERSHIP, serde_json::to_vec(&meta.last_membership)?);
        batch.put_cf(meta_cf, KEY_SNAPSHOT_META, serde_json::to_vec(meta)?);
        batch.put_cf(meta_cf, KEY_SNAPSHOT_DATA, data);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
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
        let Some(data) = self.db.get_cf(meta_cf, KEY_SNAPSHOT_DATA)? else { return Ok(None) };
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Run one command against the key's current value at log index `index`. Deterministic: it
/// depends only on its inputs, so every replica computes the same outcome. Returns the
/// response, the key's new value, and the event if anything changed.
fn execute(
    cmd: Command,
    current: Option<StoredValue>,
    index: u64,
) -> (CommandResponse, Option<StoredValue>, Option<WatchEvent>) {
    let unchanged = |response| (response, None, None);
    match cmd {
        Command::Create { key, value } => {
            if current.is_some() {
                return unchanged(CommandResponse::AlreadyExists(key));
            }
            let stored = StoredValue { create_revision: index, mod_revision: index, value };
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
                StoredValue { create_revision: old.create_revision, mod_revision: index, value };
            let kv = stored.clone().into_kv(key.clone());
            let prev = old.into_kv(key);
            (
                CommandResponse::Kv(kv.clone().into()),
                Some(stored),
                Some(WatchEvent::Put { kv, prev: Some(prev) }),
            )
        }
        Command::Txn(_) => unchanged(CommandResponse::NotFound("nested transaction".into())),
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
            deleted.mod_revision = index;
            let event = WatchEvent::Delete { key, revision: index, prev };
            (CommandResponse::Kv(deleted.into()), None, Some(event))
        }
    }
}

/// A full copy of the state machine: `magic ‖ applied(json) ‖ membership(json) ‖ (key, value)*`,
/// where each value is a `StoredValue` encoding and every field is length-prefixed.
struct SnapshotImage {
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    items: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SnapshotImage {
    fn encode(&self) -> Result<Vec<u8>, StateMachineError> {
        let mut out = Vec::with_capacity(
            64 + self.items.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>(),
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        put_bytes(&mut out, &serde_json::to_vec(&self.applied)?);
        put_bytes(&mut out, &serde_json::to_vec(&self.membership)?);
        for (key, value) in &self.items {
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
        }
        Ok(out)
    }

    fn decode(data: &[u8]) -> Result<Self, StateMachineError> {
        let body = data.strip_prefix(SNAPSHOT_MAGIC).ok_or(StateMachineError::BadSnapshot)?;
        let mut r = Reader::new(body);
        let applied = serde_json::from_slice(r.bytes()?)?;
        let membership = serde_json::from_slice(r.bytes()?)?;
        let mut items = Vec::new();
        while !r.is_empty() {
            let key = r.bytes()?.to_vec();
            let value = r.bytes()?;
            StoredValue::decode(value)?; // reject garbage before it replaces the state
            items.push((key, value.to_vec()));
        }
        Ok(SnapshotImage { applied, membership, items })
    }
}

/// Builds snapshots from a RocksDB snapshot, so it can run while the state machine applies.
pub(crate) struct SnapshotBuilder {
    db: Arc<DB>,
}

fn build_snapshot(db: &DB) -> Result<Snapshot<TypeConfig>, StateMachineError> {
    let kv_cf = cf(db, CF_KV)?;
    let meta_cf = cf(db, CF_SM_META)?;
    let view = db.snapshot();
    let (applied, membership) = read_applied_state_at(&view, db)?;
    let mut items = Vec::new();
    let mut it = view.raw_iterator_cf(kv_cf);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        items.push((k.to_vec(), v.to_vec()));
        it.next();
    }
    it.status()?;
    drop(it);
    drop(view);

    let image = SnapshotImage { applied, membership: membership.clone(), items };
    let data = image.encode()?;
    let snapshot_id = match applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, unique_suffix()),
        None => format!("empty-{}", unique_suffix()),
    };
    let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };

    let mut batch = WriteBatch::default();
    batch.put_cf(meta_cf, KEY_SNAPSHOT_META, serde_json::to_vec(&meta)?);
    batch.put_cf(meta_cf, KEY_SNAPSHOT_DATA, &data);
    db.write(batch)?;
    Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
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
        let db = Arc::clone(&self.db);
        let built = tokio::task::spawn_blocking(move || build_snapshot(&db)).await;
        match built {
            Ok(Ok(snapshot)) => Ok(snapshot),
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
        SnapshotBuilder { db: Arc::clone(&self.db) }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        self.install(meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot().map_err(|e| to_storage(e, true))
    }
}

#[cfg(test)]
pub(crate) fn decode_snapshot_for_test(data: &[u8]) -> Result<usize, String> {
    SnapshotImage::decode(data).map(|i| i.items.len()).map_err(|e| e.to_string())
}
