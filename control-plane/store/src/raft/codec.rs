//! Compact binary encodings for what the raft store keeps in RocksDB: log entries, stored
//! key values and snapshot images. Hand-written rather than serde so values stay raw bytes
//! (JSON would turn every byte into up to four) and decoding never panics on a bad disk.

use openraft::{EntryPayload, LogId, Membership};

use super::{Command, Entry};

/// Why bytes read back from disk (or a snapshot) could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("truncated record: wanted {wanted} more bytes at offset {offset}")]
    Truncated { offset: usize, wanted: usize },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("key is not utf-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
    #[error("bad json in record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} trailing bytes after record")]
    Trailing(usize),
}

/// Log index → RocksDB key. Big-endian so the byte order is the numeric order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn index_from_key(key: &[u8]) -> Result<u64, CodecError> {
    Reader::new(key).u64()
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, offset: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let rest = &self.buf[self.offset..];
        if rest.len() < n {
            return Err(CodecError::Truncated { offset: self.offset, wanted: n - rest.len() });
        }
        self.offset += n;
        Ok(&rest[..n])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u64()?;
        let len = usize::try_from(len)
            .map_err(|_| CodecError::Truncated { offset: self.offset, wanted: usize::MAX })?;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        Ok(String::from_utf8(self.bytes()?.to_vec())?)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.offset..];
        self.offset = self.buf.len();
        rest
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.offset == self.buf.len()
    }

    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        match self.buf.len() - self.offset {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

const ENTRY_BLANK: u8 = 0;
const ENTRY_NORMAL: u8 = 1;
const ENTRY_MEMBERSHIP: u8 = 2;

const CMD_CREATE: u8 = 0;
const CMD_UPDATE: u8 = 1;
const CMD_DELETE: u8 = 2;
const CMD_TXN: u8 = 3;
const CMD_BATCH: u8 = 4;

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    put_u64(&mut out, entry.log_id.leader_id.term);
    put_u64(&mut out, entry.log_id.leader_id.node_id);
    put_u64(&mut out, entry.log_id.index);
    match &entry.payload {
        EntryPayload::Blank => out.push(ENTRY_BLANK),
        EntryPayload::Normal(cmd) => {
            out.push(ENTRY_NORMAL);
            encode_command(&mut out, cmd);
        }
        EntryPayload::Membership(m) => {
            out.push(ENTRY_MEMBERSHIP);
            out.extend_from_slice(&serde_json::to_vec(m)?);
        }
    }
    Ok(out)
}

pub(crate) fn decode_entry(buf: &[u8]) -> Result<Entry, CodecError> {
    let mut r = Reader::new(buf);
    let term = r.u64()?;
    let node_id = r.u64()?;
    let index = r.u64()?;
    let log_id = LogId::new(openraft::CommittedLeaderId::new(term, node_id), index);
    let payload = match r.u8()? {
        ENTRY_BLANK => EntryPayload::Blank,
        ENTRY_NORMAL => EntryPayload::Normal(decode_command(&mut r)?),
        ENTRY_MEMBERSHIP => {
            let m: Membership<u64, openraft::BasicNode> = serde_json::from_slice(r.rest())?;
            EntryPayload::Membership(m)
        }
        tag => return Err(CodecError::UnknownTag { what: "log entry", tag }),
    };
    r.finish()?;
    Ok(Entry { log_id, payload })
}

fn encode_command(out: &mut Vec<u8>, cmd: &Command) {
    let put_expected = |out: &mut Vec<u8>, expected: &Option<u64>| match expected {
        None => out.push(0),
        Some(rev) => {
            out.push(1);
            put_u64(out, *rev);
        }
    };
    match cmd {
        Command::Create { key, value } => {
            out.push(CMD_CREATE);
            put_bytes(out, key.as_bytes());
            put_bytes(out, value);
        }
        Command::Update { key, value, expected } => {
            out.push(CMD_UPDATE);
            put_bytes(out, key.as_bytes());
            put_bytes(out, value);
            put_expected(out, expected);
        }
        Command::Delete { key, expected } => {
            out.push(CMD_DELETE);
            put_bytes(out, key.as_bytes());
            put_expected(out, expected);
        }
        Command::Txn(ops) => {
            out.push(CMD_TXN);
            put_u64(out, ops.len() as u64);
            for op in ops {
                encode_command(out, op);
            }
        }
        Command::Batch(cmds) => {
            out.push(CMD_BATCH);
            put_u64(out, cmds.len() as u64);
            for cmd in cmds {
                encode_command(out, cmd);
            }
        }
    }
}

fn decode_command(r: &mut Reader<'_>) -> Result<Command, CodecError> {
    fn expected(r: &mut Reader<'_>) -> Result<Option<u64>, CodecError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(r.u64()?)),
            tag => Err(CodecError::UnknownTag { what: "expected revision", tag }),
        }
    }
    Ok(match r.u8()? {
        CMD_CREATE => Command::Create { key: r.string()?, value: r.bytes()?.to_vec() },
        CMD_UPDATE => {
            let key = r.string()?;
            let value = r.bytes()?.to_vec();
            Command::Update { key, value, expected: expected(r)? }
        }
        CMD_DELETE => {
            let key = r.string()?;
            Command::Delete { key, expected: expected(r)? }
        }
        CMD_TXN => {
            let n = r.u64()?;
            let mut ops = Vec::new();
            for _ in 0..n {
                match decode_command(r)? {
                    Command::Txn(_) | Command::Batch(_) => {
                        return Err(CodecError::UnknownTag { what: "nested txn", tag: CMD_TXN });
                    }
                    op => ops.push(op),
                }
            }
            Command::Txn(ops)
        }
        CMD_BATCH => {
            let n = r.u64()?;
            let mut cmds = Vec::new();
            for _ in 0..n {
                match decode_command(r)? {
                    Command::Batch(_) => {
                        return Err(CodecError::UnknownTag {
                            what: "nested batch",
                            tag: CMD_BATCH,
                        });
                    }
                    cmd => cmds.push(cmd),
                }
            }
            Command::Batch(cmds)
        }
        tag => return Err(CodecError::UnknownTag { what: "command", tag }),
    })
}

/// What the state machine keeps per key: both revisions and the raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredValue {
    pub(crate) create_revision: u64,
    pub(crate) mod_revision: u64,
    pub(crate) value: Vec<u8>,
}

impl StoredValue {
    /// `create_revision ‖ mod_revision ‖ value`, revisions big-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.value.len());
        put_u64(&mut out, self.create_revision);
        put_u64(&mut out, self.mod_revision);
        out.extend_from_slice(&self.value);
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(buf);
        let create_revision = r.u64()?;
        let mod_revision = r.u64()?;
        Ok(StoredValue { create_revision, mod_revision, value: r.rest().to_vec() })
    }

    pub(crate) fn into_kv(self, key: String) -> crate::KeyValue {
        crate::KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// History key: `revision ‖ seq` (both big-endian, so history sorts by revision, then by the
/// op's position within a transaction).
pub(crate) fn history_key(revision: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

const HISTORY_PUT: u8 = 0;
const HISTORY_DELETE: u8 = 1;

/// One change as kept in the history column family: `tag ‖ key ‖ new? ‖ prev?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRecord {
    pub(crate) key: String,
    /// The new value (`None` for a delete).
    pub(crate) next: Option<StoredValue>,
    /// The value before the change (`None` for a create).
    pub(crate) prev: Option<StoredValue>,
}

impl HistoryRecord {
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let size = |v: &Option<StoredValue>| v.as_ref().map_or(0, |v| v.value.len() + 24);
        let mut out = Vec::with_capacity(self.key.len() + 18 + size(&self.next) + size(&self.prev));
        out.push(if self.next.is_some() { HISTORY_PUT } else { HISTORY_DELETE });
        put_bytes(&mut out, self.key.as_bytes());
        if let Some(next) = &self.next {
            put_bytes(&mut out, &next.encode());
        }
        if let Some(prev) = &self.prev {
            put_bytes(&mut out, &prev.encode());
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(buf);
        let tag = r.u8()?;
        let key = r.string()?;
        let next = match tag {
            HISTORY_PUT => Some(StoredValue::decode(r.bytes()?)?),
            HISTORY_DELETE => None,
            tag => return Err(CodecError::UnknownTag { what: "history record", tag }),
        };
        let prev = if r.is_empty() { None } else { Some(StoredValue::decode(r.bytes()?)?) };
        r.finish()?;
        Ok(HistoryRecord { key, next, prev })
    }

    /// Encode the change `event` describes (a `Put` or `Delete`) without cloning its values.
    pub(crate) fn encode_event(event: &crate::WatchEvent) -> Vec<u8> {
        fn put_stored(out: &mut Vec<u8>, kv: &crate::KeyValue) {
            put_u64(out, 16 + kv.value.len() as u64);
            put_u64(out, kv.create_revision);
            put_u64(out, kv.mod_revision);
            out.extend_from_slice(&kv.value);
        }
        let mut out = Vec::new();
        match event {
            crate::WatchEvent::Put { kv, prev } => {
                out.reserve(kv.key.len() + kv.value.len() + 64);
                out.push(HISTORY_PUT);
                put_bytes(&mut out, kv.key.as_bytes());
                put_stored(&mut out, kv);
                if let Some(prev) = prev {
                    put_stored(&mut out, prev);
                }
            }
            crate::WatchEvent::Delete { key, prev, .. } => {
                out.push(HISTORY_DELETE);
                put_bytes(&mut out, key.as_bytes());
                put_stored(&mut out, prev);
            }
            crate::WatchEvent::Progress { .. } => {}
        }
        out
    }

    /// The key alone, without decoding the values (for prefix filtering).
    pub(crate) fn peek_key(buf: &[u8]) -> Result<&[u8], CodecError> {
        let mut r = Reader::new(buf);
        r.u8()?;
        r.bytes()
    }

    /// The watch event this change is, at `revision`.
    pub(crate) fn into_event(self, revision: u64) -> crate::WatchEvent {
        let prev = self.prev.map(|p| p.into_kv(self.key.clone()));
        match (self.next, prev) {
            (Some(next), prev) => crate::WatchEvent::Put { kv: next.into_kv(self.key), prev },
            (None, Some(prev)) => crate::WatchEvent::Delete { key: self.key, revision, prev },
            // Not produced by the state machine; keep decoding total.
            (None, None) => crate::WatchEvent::Progress { revision },
        }
    }
}

/// The revision part of a history key.
pub(crate) fn history_revision(key: &[u8]) -> Result<u64, CodecError> {
    Reader::new(key).u64()
}
