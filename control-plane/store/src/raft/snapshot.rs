//! Raft snapshots of the state machine, kept as RocksDB checkpoints under `DIR/snapshots`.
//!
//! Building a snapshot is cheap: a checkpoint hard-links the SST files of the moment, so the
//! state is never copied to build one, and the log can be purged behind it. Only when a
//! follower needs the snapshot is the checkpoint's key space streamed into an image file
//! (`magic ‖ applied ‖ membership ‖ revision ‖ (key, value)*`, every field length-prefixed;
//! images of the previous format, `SKIFFSN2`, have no revision: it was the applied index), which
//! openraft sends in chunks; a follower installs an image by reading it back as a stream.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use openraft::{LogId, SnapshotMeta};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};

use super::codec::{StoredValue, history_key, put_bytes};
use super::state_machine::{StateMachineError, read_applied_state, read_revision_at};
use super::{CF_HISTORY, CF_KV, CF_LOG, CF_LOG_META, CF_SM_META, Node, NodeId};

type Membership = openraft::StoredMembership<NodeId, Node>;

const SNAPSHOT_MAGIC: &[u8] = b"SKIFFSN3";
/// Images without the store revision (it was the applied log index then).
const SNAPSHOT_MAGIC_V2: &[u8] = b"SKIFFSN2";
const CHECKPOINT_PREFIX: &str = "checkpoint-";
const IMAGE_PREFIX: &str = "image-";

/// Where the snapshots of the store in `db_dir` live.
pub(crate) fn snapshot_dir(db_dir: &Path) -> PathBuf {
    db_dir.join("snapshots")
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn open_read_only(path: &Path) -> Result<DB, StateMachineError> {
    let cfs = [CF_LOG, CF_LOG_META, CF_KV, CF_SM_META, CF_HISTORY];
    Ok(DB::open_cf_for_read_only(&Options::default(), path, cfs, false)?)
}

/// Take a checkpoint of `db` into `dir` and return what it covers. When `meta` is given
/// (after installing a snapshot) the checkpoint is recorded under that meta.
pub(crate) fn checkpoint(
    db: &DB,
    dir: &Path,
    meta: Option<&SnapshotMeta<NodeId, Node>>,
) -> Result<SnapshotMeta<NodeId, Node>, StateMachineError> {
    fs::create_dir_all(dir)?;
    let building = dir.join(format!("building-{}", unique_suffix()));
    rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(&building)?;
    let meta = match meta {
        Some(meta) => meta.clone(),
        None => {
            // The checkpoint, not the live DB, says which log position it holds.
            let (applied, membership) = read_applied_state(&open_read_only(&building)?)?;
            let snapshot_id = match applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, unique_suffix()),
                None => format!("empty-{}", unique_suffix()),
            };
            SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id }
        }
    };
    let final_path = dir.join(format!("{CHECKPOINT_PREFIX}{}", meta.snapshot_id));
    if final_path.exists() {
        fs::remove_dir_all(&final_path)?;
    }
    fs::rename(&building, &final_path)?;
    Ok(meta)
}

/// Remove every checkpoint and image in `dir` except those of snapshot `keep`.
pub(crate) fn remove_others(dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_prefix(CHECKPOINT_PREFIX)
            .or_else(|| name.strip_prefix(IMAGE_PREFIX))
            .or_else(|| name.strip_prefix("incoming-").map(|_| ""))
            .or_else(|| name.strip_prefix("building-").map(|_| ""));
        if id.is_some_and(|id| id != keep) {
            let path = entry.path();
            let removed =
                if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "removing an old snapshot");
            }
        }
    }
}

/// The image file of snapshot `meta`, written from its checkpoint if not there yet.
pub(crate) fn image_file(
    dir: &Path,
    meta: &SnapshotMeta<NodeId, Node>,
) -> Result<PathBuf, StateMachineError> {
    let path = dir.join(format!("{IMAGE_PREFIX}{}", meta.snapshot_id));
    if path.exists() {
        return Ok(path);
    }
    let checkpoint = open_read_only(&dir.join(format!("{CHECKPOINT_PREFIX}{}", meta.snapshot_id)))?;
    let kv_cf = checkpoint.cf_handle(CF_KV).ok_or(StateMachineError::MissingColumnFamily(CF_KV))?;
    let revision = read_revision_at(&checkpoint.snapshot(), &checkpoint)?;
    let partial = dir.join(format!("building-{}", unique_suffix()));
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(&partial)?);
    out.write_all(SNAPSHOT_MAGIC)?;
    let mut field = Vec::new();
    let mut write_field = |out: &mut BufWriter<fs::File>, bytes: &[u8]| -> std::io::Result<()> {
        field.clear();
        put_bytes(&mut field, bytes);
        out.write_all(&field)
    };
    write_field(&mut out, &serde_json::to_vec(&meta.last_log_id)?)?;
    write_field(&mut out, &serde_json::to_vec(&meta.last_membership)?)?;
    write_field(&mut out, &revision.to_be_bytes())?;
    let mut it = checkpoint.raw_iterator_cf(kv_cf);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        write_field(&mut out, k)?;
        write_field(&mut out, v)?;
        it.next();
    }
    it.status()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&partial, &path)?;
    Ok(path)
}

/// An anonymous file (already unlinked) to receive a snapshot image into.
pub(crate) fn incoming_file(dir: &Path) -> Result<fs::File, StateMachineError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("incoming-{}", unique_suffix()));
    let file = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    fs::remove_file(&path)?;
    Ok(file)
}

fn read_field(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, StateMachineError> {
    let mut len = [0u8; 8];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let len =
        usize::try_from(u64::from_be_bytes(len)).map_err(|_| StateMachineError::BadSnapshot)?;
    buf.resize(len, 0);
    r.read_exact(buf).map_err(|_| StateMachineError::BadSnapshot)?;
    Ok(true)
}

/// Replace the state machine in `db` with the image in `file`, in one write batch together
/// with what `write_applied` adds (given the image's store revision); history before it is
/// gone. Returns the image's store revision.
pub(crate) fn install(
    db: &DB,
    meta: &SnapshotMeta<NodeId, Node>,
    file: fs::File,
    write_applied: impl FnOnce(
        &mut WriteBatch,
        &rocksdb::ColumnFamily,
        u64,
    ) -> Result<(), StateMachineError>,
) -> Result<u64, StateMachineError> {
    let cf = |name| db.cf_handle(name).ok_or(StateMachineError::MissingColumnFamily(name));
    let (kv_cf, meta_cf, history_cf) = (cf(CF_KV)?, cf(CF_SM_META)?, cf(CF_HISTORY)?);
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; SNAPSHOT_MAGIC.len()];
    r.read_exact(&mut magic).map_err(|_| StateMachineError::BadSnapshot)?;
    let with_revision = match &magic[..] {
        SNAPSHOT_MAGIC => true,
        SNAPSHOT_MAGIC_V2 => false,
        _ => return Err(StateMachineError::BadSnapshot),
    };
    let mut buf = Vec::new();
    if !read_field(&mut r, &mut buf)? {
        return Err(StateMachineError::BadSnapshot);
    }
    let image_applied: Option<LogId<NodeId>> = serde_json::from_slice(&buf)?;
    if !read_field(&mut r, &mut buf)? {
        return Err(StateMachineError::BadSnapshot);
    }
    let _image_membership: Membership = serde_json::from_slice(&buf)?;
    let installed = meta.last_log_id.map_or(0, |id| id.index);
    let revision = if with_revision {
        if !read_field(&mut r, &mut buf)? {
            return Err(StateMachineError::BadSnapshot);
        }
        <[u8; 8]>::try_from(buf.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| StateMachineError::BadSnapshot)?
    } else {
        installed
    };
    if image_applied != meta.last_log_id {
        tracing::warn!(image = ?image_applied, meta = ?meta.last_log_id, "snapshot image and meta disagree; trusting meta");
    }

    let mut batch = WriteBatch::default();
    // Keys are UTF-8, which never contains 0xFF, so this range is the whole key space.
    batch.delete_range_cf(kv_cf, b"".as_slice(), [0xFFu8].as_slice());
    batch.delete_range_cf(history_cf, history_key(0, 0), history_key(u64::MAX, u32::MAX));
    let mut key = Vec::new();
    while read_field(&mut r, &mut key)? {
        if !read_field(&mut r, &mut buf)? {
            return Err(StateMachineError::BadSnapshot);
        }
        StoredValue::decode(&buf)?; // reject garbage before it replaces the state
        batch.put_cf(kv_cf, &key, &buf);
    }
    write_applied(&mut batch, meta_cf, revision)?;
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    Ok(revision)
}

/// Number of keys in a snapshot image (tests).
#[cfg(test)]
pub(crate) fn count_image_items(file: fs::File) -> Result<usize, StateMachineError> {
    let mut r = BufReader::new(file);
    let mut magic = [0u8; SNAPSHOT_MAGIC.len()];
    r.read_exact(&mut magic)?;
    let header_fields = match &magic[..] {
        SNAPSHOT_MAGIC => 3,
        SNAPSHOT_MAGIC_V2 => 2,
        _ => return Err(StateMachineError::BadSnapshot),
    };
    let mut buf = Vec::new();
    let mut fields = 0usize;
    while read_field(&mut r, &mut buf)? {
        fields += 1;
    }
    Ok(fields.saturating_sub(header_fields) / 2)
}
