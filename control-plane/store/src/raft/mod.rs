//! `RaftStore`: the [`Store`] on openraft with RocksDB holding both the raft log and the state
//! machine, in one database with separate column families. One member, or several talking
//! raft to each other over HTTPS with mutual TLS (`peer.rs`, `network.rs`, `cluster.rs`).
//!
//! A write is a raft entry ([`Command`]); its preconditions are checked by the state machine
//! when the entry is applied, so the outcome is the same on every replica. Reads get a read
//! index from the leader (which confirms its leadership first), wait until this member has
//! applied that far, and read RocksDB directly.
//!
//! Concurrent writes are group-committed (`batcher.rs`): the leader packs the writes that
//! queue up while earlier ones commit into one entry ([`Command::Batch`]), so they share one
//! append and one fsync. Hence a revision is not a log index but a counter of the state
//! machine, persisted with it: every write that changes something gets the next revision,
//! `max(previous + 1, log index)`. Unbatched writes thus keep revision == log index (and a
//! store written before batching existed reads on unchanged), revisions stay unique and
//! increasing in log order, and every replica assigns the same ones, because the counter is
//! a function of the log (snapshots carry it). The store's revision is the last one assigned;
//! a failed write assigns none, as in etcd.

mod batcher;
mod cluster;
mod codec;
mod log_store;
mod network;
mod peer;
mod read;
mod snapshot;
mod state_machine;
mod watch;

pub use self::cluster::{Member, MembershipError, StoreMetrics};
pub use self::network::error_chain;
pub use self::peer::PeerTls;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::error::{Fatal, RaftError};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use rocksdb::{ColumnFamilyDescriptor, DB, Options};
use serde::{Deserialize, Serialize};

use self::cluster::Cluster;
use self::codec::StoredValue;
use self::log_store::LogStore;
use self::network::{NetworkFactory, PeerHttp};
use self::state_machine::StateMachineStore;
use self::watch::WatchHub;
use crate::{
    Consistency, KeyValue, ListOptions, ListResult, Store, StoreError, TxnOp, WatchStream,
};

pub(crate) type NodeId = u64;
pub(crate) type Node = BasicNode;
pub(crate) type Entry = openraft::Entry<TypeConfig>;

openraft::declare_raft_types!(
    /// Raft types of the Skiff store.
    pub(crate) TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = tokio::fs::File,
);

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_LOG_META: &str = "log_meta";
pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_SM_META: &str = "sm_meta";
/// Every applied change, keyed by revision: what watches replay and past-revision lists undo.
pub(crate) const CF_HISTORY: &str = "history";

/// A raft entry's payload: one conditional write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<u64>,
    },
    Delete {
        key: String,
        expected: Option<u64>,
    },
    /// All of these (none of them `Txn` or `Batch`) or nothing, at one revision.
    Txn(Vec<Command>),
    /// Independent writes (single ops or `Txn`s, no `Batch`) that share one raft entry: each
    /// is applied, or refused, on its own, in order, at its own revision.
    Batch(Vec<Command>),
}

impl Command {
    /// The key a single op writes (`None` for a transaction).
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            Command::Create { key, .. }
            | Command::Update { key, .. }
            | Command::Delete { key, .. } => Some(key),
            Command::Txn(_) | Command::Batch(_) => None,
        }
    }
}

/// What applying an entry produced; travels back through `client_write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CommandResponse {
    /// A blank or membership entry.
    Noop,
    /// The written key (for a delete: the last value, `mod_revision` = the delete's index).
    Kv(WireKv),
    /// Every op of a transaction succeeded: their results in order.
    Txn(Vec<WireKv>),
    AlreadyExists(String),
    NotFound(String),
    Conflict {
        key: String,
        expected: u64,
        current: u64,
    },
    /// The answers of a [`Command::Batch`], one per write, in order.
    Batch(Vec<CommandResponse>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireKv {
    key: String,
    value: Vec<u8>,
    create_revision: u64,
    mod_revision: u64,
}

impl From<KeyValue> for WireKv {
    fn from(kv: KeyValue) -> Self {
        WireKv {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }
}

impl From<WireKv> for KeyValue {
    fn from(kv: WireKv) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }
}

/// Tunables of [`RaftStore`]; `Default` is what `skiff server` uses.
#[derive(Debug, Clone)]
pub struct RaftStoreOptions {
    /// Change history is kept at least this long (for watches and lists at past revisions)…
    pub history_window: Duration,
    /// …but never more than this many revisions behind the current one.
    pub history_max_revisions: u64,
    /// How often the background compactor looks at the history.
    pub compaction_interval: Duration,
    /// An idle watch reports its position (`WatchEvent::Progress`) this often.
    pub watch_progress_interval: Duration,
    /// Applied batches a watcher may fall behind live before it catches up from history.
    pub watch_channel_capacity: usize,
    /// Build a snapshot (and purge the log behind it) every this many log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot (for followers that are slightly behind).
    pub logs_kept_after_snapshot: u64,
    /// How long `open` waits for this node to become leader and catch up.
    pub ready_timeout: Duration,
    /// This member's raft node id; 1 for the member that forms a cluster. A directory keeps
    /// the id it was first opened with and refuses another.
    pub node_id: u64,
    /// How to reach and be reached by other members; `None` for a member that never has
    /// peers (its writes and reads need no transport).
    pub peer: Option<PeerOptions>,
    /// A fresh directory forms a new single-voter cluster (`true`) or waits for a leader to
    /// add this member (`false`, for `--join`). Ignored once the directory holds raft state.
    pub initialize: bool,
    /// The leader heartbeats this often; it is also the deadline of one append RPC.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for `election_timeout_max` (its lease on the leader)
    /// plus a random time in `election_timeout_min..election_timeout_max` stands for election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

/// The peer transport of one member.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Where other members reach this one (`https://host:port`); recorded in the cluster
    /// configuration, so it must name the port `listener` is bound to.
    pub advertise_url: String,
    /// The bound listener to serve raft on. The caller binds it, so port 0 works and
    /// `advertise_url` can name the real port.
    pub listener: Arc<std::net::TcpListener>,
    pub tls: PeerTls,
}

impl Default for RaftStoreOptions {
    fn default() -> Self {
        RaftStoreOptions {
            history_window: Duration::from_secs(5 * 60),
            history_max_revisions: 100_000,
            compaction_interval: Duration::from_secs(30),
            watch_progress_interval: Duration::from_secs(10),
            watch_channel_capacity: 8_192,
            snapshot_every: 100_000,
            logs_kept_after_snapshot: 1_000,
            ready_timeout: Duration::from_secs(30),
            node_id: 1,
            peer: None,
            initialize: true,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(250),
            election_timeout_max: Duration::from_millis(350),
        }
    }
}

/// The raft + RocksDB [`Store`]. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct RaftStore {
    pub(crate) raft: Raft<TypeConfig>,
    db: Arc<DB>,
    hub: Arc<WatchHub>,
    cluster: Arc<Cluster>,
    /// Serves the peer listener; stops when the store is dropped.
    _peer_server: Option<AbortOnDrop>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn storage(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("{context}: {e}"))
}

fn fatal_to_store(e: Fatal<NodeId>) -> StoreError {
    match e {
        Fatal::StorageError(e) => storage("raft storage failed", e),
        Fatal::Panicked => StoreError::Unavailable("raft core panicked".into()),
        Fatal::Stopped => StoreError::Unavailable("raft is stopped".into()),
    }
}

fn raft_to_store<E: std::fmt::Display>(e: RaftError<NodeId, E>) -> StoreError {
    match e {
        RaftError::APIError(e) => StoreError::Unavailable(e.to_string()),
        RaftError::Fatal(f) => fatal_to_store(f),
    }
}

/// Bytes of memtables all column families may hold together before RocksDB flushes some.
const MEMTABLE_BUDGET: usize = 48 << 20;

fn open_db(path: &Path, deadline: Instant) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // A column family written rarely (the vote) would otherwise keep every WAL file alive
    // until its next flush; past this size RocksDB flushes it so old WAL files can go.
    opts.set_max_total_wal_size(64 << 20);
    // Memtables are the store's largest use of memory: RocksDB's defaults (64 MiB per column
    // family, two of them each) would let the log, the state and the history hold hundreds of
    // MiB that the api server's watch cache already holds. Cap them together.
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
    let cfs = || {
        [CF_LOG, CF_LOG_META, CF_KV, CF_SM_META, CF_HISTORY].map(|name| {
            let mut cf = Options::default();
            cf.set_write_buffer_size(MEMTABLE_BUDGET / 4);
            ColumnFamilyDescriptor::new(name, cf)
        })
    };
    loop {
        match DB::open_cf_descriptors(&opts, path, cfs()) {
            Ok(db) => return Ok(db),
            // A previous RaftStore in this process may still be closing (its raft tasks hold
            // the DB for a moment after shutdown); RocksDB's LOCK file says so.
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(storage(&format!("opening rocksdb at {}", path.display()), e)),
        }
    }
}

/// How long a read at a revision this member has not applied yet waits for it.
const FUTURE_REVISION_WAIT: Duration = Duration::from_secs(3);

async fn compact_blocking(
    db: Arc<DB>,
    hub: Arc<WatchHub>,
    revision: u64,
) -> Result<u64, StoreError> {
    let done = tokio::task::spawn_blocking(move || {
        let reached = state_machine::compact_history(&db, revision)
            .map_err(|e| storage("compacting history", e))?;
        hub.set_compacted(reached);
        Ok(reached)
    })
    .await;
    done.map_err(|e| storage("compaction task", e))?
}

/// A fresh snapshot once history is compacted: the previous checkpoint still links the SST
/// files holding the dropped history (and log), and the log can be purged behind the new one.
async fn snapshot_after_compaction(raft: &Raft<TypeConfig>) {
    if let Err(e) = raft.trigger().snapshot().await {
        tracing::debug!(error = %e, "no snapshot after compaction (raft is stopping)");
    }
}

/// Compact history in the background: keep `history_window` of it, and at most
/// `history_max_revisions`. Ends when the store shuts down.
fn spawn_compactor(
    db: &Arc<DB>,
    hub: &Arc<WatchHub>,
    raft: &Raft<TypeConfig>,
    options: &RaftStoreOptions,
) {
    let raft = raft.clone();
    let (db, hub) = (Arc::downgrade(db), Arc::downgrade(hub));
    let (window, max_revisions, every) =
        (options.history_window, options.history_max_revisions, options.compaction_interval);
    tokio::spawn(async move {
        // (when, revision) samples: the revision that was current `window` ago is the newest
        // one whose history may go.
        let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(db), Some(hub)) = (db.upgrade(), hub.upgrade()) else { return };
            if hub.is_shut_down() {
                return;
            }
            let now = Instant::now();
            let current = hub.current_revision();
            samples.push_back((now, current));
            let mut target = current.saturating_sub(max_revisions);
            while let Some(&(at, revision)) = samples.front() {
                if now.duration_since(at) < window {
                    break;
                }
                target = target.max(revision);
                samples.pop_front();
            }
            if target <= hub.compacted_revision() {
                continue;
            }
            match compact_blocking(db, hub, target).await {
                Ok(_) => snapshot_after_compaction(&raft).await,
                Err(e) => tracing::warn!(error = %e, "history compaction failed"),
            }
        }
    });
}

impl RaftStore {
    /// Open (or create) the store under `dir` with default options. See [`Self::open_with`].
    pub async fn open(dir: &Path) -> Result<RaftStore, StoreError> {
        Self::open_with(dir, RaftStoreOptions::default()).await
    }

    /// Open (or create) the store under `dir` and start raft as `options.node_id`, serving
    /// peers if `options.peer` says how. A fresh directory forms a single-voter cluster
    /// (`options.initialize`) or waits to be added by the leader. Returns once this member is
    /// a voter, knows the leader and has applied everything committed, so reads right after
    /// see all earlier writes.
    pub async fn open_with(dir: &Path, options: RaftStoreOptions) -> Result<RaftStore, StoreError> {
        let deadline = Instant::now() + options.ready_timeout;
        std::fs::create_dir_all(dir)
            .map_err(|e| storage(&format!("creating {}", dir.display()), e))?;
        let db = Arc::new(open_db(dir, deadline)?);
        cluster::check_node_id(&db, options.node_id)?;
        let hub =
            WatchHub::new(&db, options.watch_channel_capacity, options.watch_progress_interval);
        let state_machine =
            StateMachineStore::new(Arc::clone(&db), Arc::clone(&hub), snapshot::snapshot_dir(dir))
                .map_err(|e| storage("reading state machine", e))?;
        let log_store = LogStore::new(Arc::clone(&db));

        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: millis(options.heartbeat_interval),
            election_timeout_min: millis(options.election_timeout_min),
            election_timeout_max: millis(options.election_timeout_max),
            // Per snapshot chunk; the last one includes installing the whole snapshot.
            install_snapshot_timeout: 30_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            max_in_snapshot_log_to_keep: options.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| storage("raft config", e))?;

        let http = PeerHttp::new(options.peer.as_ref().map(|p| &p.tls))
            .map_err(|e| storage("peer tls", e))?;
        let network = NetworkFactory { http: http.clone(), id: options.node_id };
        let raft = Raft::new(options.node_id, Arc::new(config), network, log_store, state_machine)
            .await
            .map_err(fatal_to_store)?;
        let cluster = Arc::new(Cluster::new(raft.clone(), options.node_id, http));
        // Peers must reach this member before it can be elected, added or caught up.
        let peer_server = match &options.peer {
            Some(peer) => Some(Self::serve_peers(peer, &cluster)?),
            None => None,
        };
        let store = RaftStore { raft, db, hub, cluster, _peer_server: peer_server };
        store.become_ready(&options, deadline).await?;
        spawn_compactor(&store.db, &store.hub, &store.raft, &options);
        Ok(store)
    }

    fn serve_peers(peer: &PeerOptions, cluster: &Arc<Cluster>) -> Result<AbortOnDrop, StoreError> {
        let tls = peer.tls.server_config().map_err(|e| storage("peer tls", e))?;
        let listener = peer
            .listener
            .try_clone()
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            })
            .map_err(|e| storage("peer listener", e))?;
        let router = peer::router(Arc::clone(cluster));
        Ok(AbortOnDrop(tokio::spawn(peer::serve(listener, tls, router))))
    }

    async fn become_ready(
        &self,
        options: &RaftStoreOptions,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let peer_url = options.peer.as_ref().map_or("", |p| p.advertise_url.as_str());
        self.cluster.become_ready(options.initialize, peer_url, deadline).await.map_err(|e| match e
        {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("raft did not become ready: {why}"))
            }
            other => other,
        })
    }

    /// Stop raft and close every watch; waits (briefly) until RocksDB is released so the same
    /// directory can be reopened in this process once `self` is dropped. Idempotent.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft core ended with an error");
        }
        self.hub.close();
        // Raft's background tasks (the snapshot builder) drop their DB handles as
        // they wind down; ours is the one left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.db) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Run `cmd` on the leader (this member, or forwarded to it).
    async fn write(&self, cmd: Command) -> Result<Written, StoreError> {
        match self.cluster.write(cmd).await? {
            CommandResponse::Kv(kv) => Ok(Written::One(kv.into())),
            CommandResponse::Txn(kvs) => {
                Ok(Written::Many(kvs.into_iter().map(Into::into).collect()))
            }
            CommandResponse::AlreadyExists(key) => Err(StoreError::AlreadyExists(key)),
            CommandResponse::NotFound(key) => Err(StoreError::NotFound(key)),
            CommandResponse::Conflict { key, expected, current } => {
                Err(StoreError::Conflict { key, expected, current })
            }
            CommandResponse::Noop | CommandResponse::Batch(_) => {
                Err(StoreError::Storage("write produced no result".into()))
            }
        }
    }

    async fn linearize(&self) -> Result<(), StoreError> {
        self.cluster.linearize().await
    }

    async fn read_barrier(&self, consistency: Consistency) -> Result<(), StoreError> {
        match consistency {
            Consistency::Linearizable => self.linearize().await,
            Consistency::Serializable => Ok(()),
        }
    }

    /// Wait (up to a few seconds) until this member has applied `revision`.
    async fn wait_applied(&self, revision: u64) -> Result<(), StoreError> {
        if self.hub.current_revision() >= revision {
            return Ok(());
        }
        // The state machine moves the revision on before raft reports the apply in its
        // metrics, so every revision change is followed by a metrics change that wakes this.
        let hub = Arc::clone(&self.hub);
        let waited = self
            .raft
            .wait(Some(FUTURE_REVISION_WAIT))
            .metrics(move |_| hub.current_revision() >= revision, "revision applied")
            .await;
        match waited {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.hub.current_revision(),
            }),
        }
    }

    /// Drop history up to `revision` on this member (each member compacts its own history).
    /// Also waits (briefly) for the snapshot and log purge that follow, then lets RocksDB
    /// reclaim the purged log, so the space is free when this returns.
    async fn compact_to(&self, revision: u64) -> Result<u64, StoreError> {
        let purged_before = self.raft.metrics().borrow().purged;
        let reached =
            compact_blocking(Arc::clone(&self.db), Arc::clone(&self.hub), revision).await?;
        // Revisions are not log indexes: the snapshot to wait for is one of what is applied
        // now, which includes the compaction.
        let applied = self.raft.metrics().borrow().last_applied.map_or(0, |id| id.index);
        snapshot_after_compaction(&self.raft).await;
        let snapshot = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot")
            .await;
        if snapshot.is_ok() {
            // The purge follows the snapshot; a short log (under the entries kept behind a
            // snapshot) has nothing to purge, so do not wait long for it.
            let _ = self
                .raft
                .wait(Some(Duration::from_secs(1)))
                .metrics(|m| m.purged != purged_before, "log purge")
                .await;
            let db = Arc::clone(&self.db);
            let done = tokio::task::spawn_blocking(move || {
                if let Some(log_cf) = db.cf_handle(CF_LOG) {
                    db.compact_range_cf(log_cf, None::<&[u8]>, None::<&[u8]>);
                }
            })
            .await;
            done.map_err(|e| storage("log compaction task", e))?;
        }
        Ok(reached)
    }

    fn kv_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(CF_KV)
            .ok_or_else(|| StoreError::Storage("column family kv is missing".into()))
    }
}

fn txn_command(op: TxnOp) -> Command {
    match op {
        TxnOp::Create { key, value } => Command::Create { key, value },
        TxnOp::Update { key, value, expected } => Command::Update { key, value, expected },
        TxnOp::Delete { key, expected } => Command::Delete { key, expected },
    }
}

#[async_trait]
impl Store for RaftStore {
    async fn get_with(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, StoreError> {
        self.read_barrier(consistency).await?;
        let raw = self
            .db
            .get_pinned_cf(self.kv_cf()?, key.as_bytes())
            .map_err(|e| storage("reading key", e))?;
        match raw {
            Some(raw) => {
                let stored = StoredValue::decode(&raw)
                    .map_err(|e| storage(&format!("decoding {key}"), e))?;
                Ok(Some(stored.into_kv(key.to_owned())))
            }
            None => Ok(None),
        }
    }

    async fn list_with(
        &self,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<ListResult, StoreError> {
        self.read_barrier(options.consistency).await?;
        if let Some(revision) = options.revision {
            self.wait_applied(revision).await?;
        }
        let (db, prefix, options) = (Arc::clone(&self.db), prefix.to_owned(), options.clone());
        // A large list (or one far in the past) is real work: keep it off the async workers.
        tokio::task::spawn_blocking(move || read::list(&db, &prefix, &options))
            .await
            .map_err(|e| storage("list task", e))?
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.write(Command::Create { key: key.to_owned(), value }).await.and_then(single)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        self.write(Command::Update { key: key.to_owned(), value, expected: expected_revision })
            .await
            .and_then(single)
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        self.write(Command::Delete { key: key.to_owned(), expected: expected_revision })
            .await
            .and_then(single)
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<KeyValue>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(Command::Txn(ops.into_iter().map(txn_command).collect())).await? {
            Written::Many(kvs) => Ok(kvs),
            Written::One(kv) => Ok(vec![kv]),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError> {
        self.hub.watch(prefix, after_revision)
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.compact_to(revision).await.map(|_| ())
    }

    fn compacted_revision(&self) -> u64 {
        self.hub.compacted_revision()
    }

    fn current_revision(&self) -> u64 {
        self.hub.current_revision()
    }

    fn request_watch_progress(&self) {
        self.hub.request_progress();
    }

    async fn consistent_revision(&self) -> Result<u64, StoreError> {
        self.read_barrier(Consistency::Linearizable).await?;
        Ok(self.hub.current_revision())
    }
}

/// What a write produced: one key, or a transaction's keys.
enum Written {
    One(KeyValue),
    Many(Vec<KeyValue>),
}

fn single(written: Written) -> Result<KeyValue, StoreError> {
    match written {
        Written::One(kv) => Ok(kv),
        Written::Many(_) => Err(StoreError::Storage("a single write produced many results".into())),
    }
}

#[cfg(test)]
pub(crate) use self::snapshot::count_image_items;

#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};

    pub(crate) use super::codec::{HistoryRecord, StoredValue, decode_entry, encode_entry};
    use super::{BasicNode, Command, Entry};

    pub(crate) fn sample_entries() -> Vec<Entry> {
        let id = |i| LogId::new(CommittedLeaderId::new(3, 1), i);
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::new("127.0.0.1:6443"))]),
        );
        vec![
            Entry { log_id: id(1), payload: EntryPayload::Blank },
            Entry { log_id: id(2), payload: EntryPayload::Membership(membership) },
            Entry {
                log_id: id(3),
                payload: EntryPayload::Normal(Command::Create {
                    key: "/a".into(),
                    value: vec![0, 255, 7],
                }),
            },
            Entry {
                log_id: id(4),
                payload: EntryPayload::Normal(Command::Update {
                    key: "/a".into(),
                    value: vec![],
                    expected: Some(3),
                }),
            },
            Entry {
                log_id: id(5),
                payload: EntryPayload::Normal(Command::Delete { key: "/a".into(), expected: None }),
            },
            Entry {
                log_id: id(6),
                payload: EntryPayload::Normal(Command::Txn(vec![
                    Command::Create { key: "/b".into(), value: vec![1] },
                    Command::Delete { key: "/c".into(), expected: Some(2) },
                ])),
            },
            Entry {
                log_id: id(7),
                payload: EntryPayload::Normal(Command::Batch(vec![
                    Command::Update { key: "/b".into(), value: vec![2], expected: None },
                    Command::Txn(vec![Command::Create { key: "/d".into(), value: vec![] }]),
                    Command::Delete { key: "/b".into(), expected: Some(7) },
                ])),
            },
        ]
    }
}

/// openraft's own conformance suite for the log store and state machine.
#[cfg(test)]
mod openraft_suite {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachineStore;
    use super::watch::WatchHub;
    use super::{NodeId, TypeConfig, open_db};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let io = |e: &dyn std::fmt::Display| {
                StorageError::from(openraft::StorageIOError::write(openraft::AnyError::error(e)))
            };
            let dir = tempfile::tempdir().map_err(|e| io(&e))?;
            let deadline = Instant::now() + Duration::from_secs(5);
            let db = Arc::new(open_db(dir.path(), deadline).map_err(|e| io(&e))?);
            let hub = WatchHub::new(&db, 100, Duration::from_secs(1));
            let sm = StateMachineStore::new(Arc::clone(&db), hub, dir.path().join("snapshots"))
                .map_err(|e| io(&e))?;
            let log = LogStore::new(db);
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn log_store_and_state_machine_should_pass_the_openraft_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
