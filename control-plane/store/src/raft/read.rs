//! Range reads of the state machine, at the latest revision or a past one. A past revision
//! is the current state with the changes made since undone: history records carry the value
//! each change replaced, so the cost is that of the changes since, not of a full copy.

use std::collections::BTreeMap;

use rocksdb::DB;

use super::codec::{HistoryRecord, StoredValue, history_key, history_revision};
use super::state_machine::{read_compacted, read_revision_at};
use super::{CF_HISTORY, CF_KV};
use crate::{ListOptions, ListResult, StoreError};

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("listing: {e}"))
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or_else(|| storage(format!("column family {name} is missing")))
}

/// Keys under `prefix` after `options.start_after`, as of `options.revision` (default: the
/// applied revision), at most `options.limit` of them. One RocksDB snapshot backs the whole
/// read, so the state, the history and the compaction point agree.
pub(crate) fn list(db: &DB, prefix: &str, options: &ListOptions) -> Result<ListResult, StoreError> {
    let view = db.snapshot();
    let applied = read_revision_at(&view, db).map_err(storage)?;
    let revision = options.revision.unwrap_or(applied);
    if revision > applied {
        return Err(StoreError::FutureRevision { requested: revision, current: applied });
    }
    let oldest = read_compacted(&view, db).map_err(storage)?;
    if revision < applied && revision < oldest {
        return Err(StoreError::Compacted { requested: revision, oldest });
    }
    let after = options.start_after.as_deref().filter(|s| *s >= prefix);
    let in_range = |key: &str| key.starts_with(prefix) && after.is_none_or(|a| key > a);

    // Keys changed after `revision`: their value then (None: they did not exist).
    let mut undo: BTreeMap<String, Option<StoredValue>> = BTreeMap::new();
    if revision < applied {
        let mut it = view.raw_iterator_cf(cf(db, CF_HISTORY)?);
        it.seek(history_key(revision + 1, 0));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if history_revision(k).map_err(storage)? > applied {
                break;
            }
            let key = HistoryRecord::peek_key(v).map_err(storage)?;
            let key = std::str::from_utf8(key).map_err(storage)?;
            if in_range(key) && !undo.contains_key(key) {
                // The earliest change after `revision` replaced the value it had then.
                let record = HistoryRecord::decode(v).map_err(storage)?;
                undo.insert(record.key, record.prev);
            }
            it.next();
        }
        it.status().map_err(storage)?;
    }

    let limit = if options.limit == 0 { usize::MAX } else { options.limit };
    let mut items = Vec::new();
    let mut more = false;
    let mut push = |key: String, value: Option<StoredValue>| -> bool {
        let Some(value) = value else { return true };
        if items.len() == limit {
            more = true;
            return false;
        }
        items.push(value.into_kv(key));
        true
    };

    let mut it = view.raw_iterator_cf(cf(db, CF_KV)?);
    match after {
        Some(a) => {
            it.seek(a.as_bytes());
            if it.key() == Some(a.as_bytes()) {
                it.next();
            }
        }
        None => it.seek(prefix.as_bytes()),
    }
    let mut pending = undo.into_iter().peekable();
    'merge: loop {
        let current = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix.as_bytes()) => Some((k, v)),
            _ => None,
        };
        // Undo entries that sort before the next current key (keys deleted since).
        while let Some((key, _)) = pending.peek() {
            if current.is_some_and(|(k, _)| key.as_bytes() >= k) {
                break;
            }
            let Some((key, value)) = pending.next() else { break };
            if !push(key, value) {
                break 'merge;
            }
        }
        let Some((k, v)) = current else { break };
        let key = String::from_utf8(k.to_vec()).map_err(storage)?;
        let value = match pending.peek() {
            Some((undo_key, _)) if *undo_key == key => pending.next().and_then(|(_, v)| v),
            _ => Some(StoredValue::decode(v).map_err(storage)?),
        };
        if !push(key, value) {
            break;
        }
        it.next();
    }
    it.status().map_err(storage)?;
    Ok(ListResult { items, revision, more })
}
