//! A member of a multi-member store: which member leads, forwarding to it, and membership.
//!
//! Only the leader runs writes and confirms reads. A follower forwards a write to the leader
//! over the peer transport and returns its outcome; for a read it asks the leader for a read
//! index (the leader confirms its leadership with a quorum first), waits until it has applied
//! that far itself, and then reads locally. While there is no leader (an election) or the
//! leader cannot be reached, requests are retried for a few seconds, and only requests that
//! certainly did nothing are retried: a forwarded write that got no answer may have been
//! applied, so it fails with `Unavailable` instead.
//!
//! Membership changes (add a learner, promote it, remove a member, move a member's address)
//! are forwarded to the leader the same way and serialized there. A new member's id is
//! reserved through the log itself (`/skiff/cluster/member-ids/<id>` is created with a
//! create-if-absent write), so ids are never handed out twice, even across leaders, and a
//! removed member's id is not reused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers, Membership, Raft, ServerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::batcher::WriteBatcher;
use super::network::{CallError, PeerHttp};
use super::peer::{self, ForwardError, ForwardReply, ForwardRequest, PATH_FORWARD};
use super::{Command, CommandResponse, Node, NodeId, RaftStore, TypeConfig, fatal_to_store};
use crate::StoreError;

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

/// How long a request keeps trying while there is no leader or it cannot be reached.
const RETRY_WINDOW: Duration = Duration::from_secs(5);
/// Pause between attempts while looking for the leader.
const RETRY_PAUSE: Duration = Duration::from_millis(40);
/// How long a forwarded request may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a learner may take to catch up before its promotion gives up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Where member ids are reserved.
const MEMBER_ID_PREFIX: &str = "/skiff/cluster/member-ids/";

/// One member, as the cluster's configuration records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Where the member serves raft (`https://host:port`).
    pub peer_url: String,
    /// A voter (counts for quorum) or a learner (only replicated to).
    pub voter: bool,
}

/// Why a membership change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The change cannot be made as asked (e.g. removing the last voter).
    #[error("membership change rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counters of the peer transport.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Snapshots a leader sent this member and it installed.
    pub(crate) snapshots_received: AtomicU64,
    /// Requests this member forwarded to the leader.
    pub(crate) forwarded: AtomicU64,
}

/// This member's view of the cluster; shared by [`RaftStore`] and the peer listener.
pub(crate) struct Cluster {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) id: NodeId,
    http: PeerHttp,
    pub(crate) stats: Stats,
    /// Serializes the membership changes this member makes while it leads.
    membership_lock: tokio::sync::Mutex<()>,
    /// Writes this member runs as leader (its own and forwarded ones), group-committed.
    batcher: WriteBatcher,
}

enum Route {
    Here,
    Peer(NodeId, String),
    NoLeader,
}

impl ForwardRequest {
    /// Whether running it twice is harmless (so it may be retried after a lost answer).
    fn idempotent(&self) -> bool {
        !matches!(self, ForwardRequest::Write(_))
    }

    fn timeout(&self) -> Duration {
        match self {
            ForwardRequest::Promote { .. } => CATCH_UP_TIMEOUT + FORWARD_TIMEOUT,
            _ => FORWARD_TIMEOUT,
        }
    }
}

fn not_leader(f: ForwardToLeader<NodeId, Node>) -> ForwardError {
    ForwardError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
}

pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ForwardError::Unavailable(e.to_string())
        }
        RaftError::Fatal(f) => ForwardError::Failed(f.to_string()),
    }
}

impl Cluster {
    pub(crate) fn new(raft: Raft<TypeConfig>, id: NodeId, http: PeerHttp) -> Self {
        Cluster {
            batcher: WriteBatcher::new(raft.clone()),
            raft,
            id,
            http,
            stats: Stats::default(),
            membership_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn membership(&self) -> Membership<NodeId, Node> {
        self.raft.metrics().borrow().membership_config.membership().clone()
    }

    fn route(&self, hint: Option<(NodeId, String)>) -> Route {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = match (m.current_leader, hint) {
            // The member that turned us away knows a newer leader than our metrics do.
            (_, Some((id, url))) if id != self.id => return Route::Peer(id, url),
            (Some(id), _) => id,
            (None, _) => return Route::NoLeader,
        };
        if leader == self.id {
            return Route::Here;
        }
        match m.membership_config.membership().get_node(&leader) {
            Some(node) if !node.addr.is_empty() => Route::Peer(leader, node.addr.clone()),
            _ => Route::NoLeader,
        }
    }

    /// Run `request` on the leader: here if this member leads, else over the peer transport.
    pub(crate) async fn on_leader(
        &self,
        request: ForwardRequest,
    ) -> Result<ForwardReply, MembershipError> {
        let deadline = Instant::now() + RETRY_WINDOW;
        let mut hint = None;
        loop {
            let outcome = match self.route(hint.take()) {
                Route::Here => self.serve_forwarded(request.clone()).await,
                Route::Peer(leader, url) => {
                    self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    match self.send(&url, &request).await {
                        Ok(outcome) => outcome,
                        Err(e) if e.not_sent() || request.idempotent() => {
                            Err(ForwardError::Unavailable(format!("leader {leader}: {e}")))
                        }
                        Err(e) => {
                            return Err(StoreError::Unavailable(format!(
                                "the leader may or may not have applied the write: {e}"
                            ))
                            .into());
                        }
                    }
                }
                Route::NoLeader => Err(ForwardError::Unavailable("no leader".into())),
            };
            let why = match outcome {
                Ok(reply) => return Ok(reply),
                Err(ForwardError::NotLeader { leader }) => {
                    hint = leader;
                    "leadership moved".to_string()
                }
                Err(ForwardError::Unavailable(why)) => why,
                Err(ForwardError::Rejected(why)) => return Err(MembershipError::Rejected(why)),
                Err(ForwardError::Failed(why)) => return Err(StoreError::Storage(why).into()),
            };
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(why).into());
            }
            if hint.is_none() {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    async fn send(
        &self,
        url: &str,
        request: &ForwardRequest,
    ) -> Result<Result<ForwardReply, ForwardError>, CallError> {
        let body = peer::encode(request).map_err(|e| CallError::NotSent {
            url: url.to_string(),
            reason: format!("encoding: {e}"),
        })?;
        let answer = self.http.post(url, PATH_FORWARD, body, request.timeout()).await?;
        peer::decode(&answer).map_err(|e| CallError::NoAnswer {
            url: url.to_string(),
            reason: format!("decoding the answer: {e}"),
        })
    }

    /// Serve a request forwarded to this member (or raised here while it leads).
    pub(crate) async fn serve_forwarded(
        &self,
        request: ForwardRequest,
    ) -> Result<ForwardReply, ForwardError> {
        match request {
            ForwardRequest::Write(cmd) => self.batcher.write(cmd).await.map(ForwardReply::Written),
            ForwardRequest::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(ForwardReply::ReadIndex(read.map_or(0, |id| id.index))),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(not_leader(f))
                }
                Err(RaftError::APIError(e @ CheckIsLeaderError::QuorumNotEnough(_))) => {
                    Err(ForwardError::Unavailable(e.to_string()))
                }
                Err(RaftError::Fatal(f)) => Err(ForwardError::Unavailable(f.to_string())),
            },
            ForwardRequest::AddLearner { peer_url } => {
                self.add_learner_here(peer_url).await.map(ForwardReply::Member)
            }
            ForwardRequest::Promote { id } => self.promote_here(id).await,
            ForwardRequest::Remove { id } => self.remove_here(id).await,
            ForwardRequest::SetPeerUrl { id, peer_url } => {
                self.set_peer_url_here(id, peer_url).await
            }
        }
    }

    fn ensure_leading(&self) -> Result<(), ForwardError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.current_leader == Some(self.id) && m.state == ServerState::Leader {
            return Ok(());
        }
        let leader = m.current_leader.and_then(|id| {
            m.membership_config.membership().get_node(&id).map(|n| (id, n.addr.clone()))
        });
        Err(ForwardError::NotLeader { leader })
    }

    async fn add_learner_here(&self, peer_url: String) -> Result<NodeId, ForwardError> {
        self.ensure_leading()?;
        let _serial = self.membership_lock.lock().await;
        let membership = self.membership();
        if let Some((&id, _)) = membership.nodes().find(|(_, n)| n.addr == peer_url) {
            if membership.voter_ids().any(|v| v == id) {
                return Err(ForwardError::Rejected(format!(
                    "voter {id} already has peer URL {peer_url}; remove it before it joins again"
                )));
            }
            // The same joiner asking again (its first answer was lost): same id.
            return Ok(id);
        }
        let id = self.reserve_member_id(&membership, &peer_url).await?;
        self.raft.add_learner(id, BasicNode::new(&peer_url), false).await.map_err(write_error)?;
        tracing::info!(id, %peer_url, "added a learner");
        Ok(id)
    }

    async fn reserve_member_id(
        &self,
        membership: &Membership<NodeId, Node>,
        peer_url: &str,
    ) -> Result<NodeId, ForwardError> {
        let mut id = membership.nodes().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        // Each attempt is one create-if-absent write; ids reserved earlier are skipped.
        for _ in 0..10_000 {
            let cmd = Command::Create {
                key: format!("{MEMBER_ID_PREFIX}{id:020}"),
                value: peer_url.as_bytes().to_vec(),
            };
            match self.raft.client_write(cmd).await.map_err(write_error)?.data {
                CommandResponse::Kv(_) => return Ok(id),
                CommandResponse::AlreadyExists(_) => id += 1,
                other => {
                    return Err(ForwardError::Failed(format!(
                        "reserving member id {id}: unexpected {other:?}"
                    )));
                }
            }
        }
        Err(ForwardError::Failed("no free member id".into()))
    }

    async fn promote_here(&self, id: NodeId) -> Result<ForwardReply, ForwardError> {
        self.ensure_leading()?;
        let _serial = self.membership_lock.lock().await;
        let membership = self.membership();
        if membership.voter_ids().any(|v| v == id) {
            return Ok(ForwardReply::Done);
        }
        if membership.get_node(&id).is_none() {
            return Err(ForwardError::Rejected(format!("node {id} is not a member")));
        }
        // Caught up: the learner holds everything this leader had when asked.
        let target = self.raft.metrics().borrow().last_log_index;
        let me = self.id;
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                |m| {
                    m.current_leader != Some(me)
                        || m.replication.as_ref().is_some_and(|r| {
                            r.get(&id).is_some_and(|matched| matched.map(|l| l.index) >= target)
                        })
                },
                "learner caught up",
            )
            .await;
        if caught_up.is_err() {
            return Err(ForwardError::Unavailable(format!(
                "learner {id} did not catch up within {CATCH_UP_TIMEOUT:?}"
            )));
        }
        self.ensure_leading()?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map_err(write_error)?;
        tracing::info!(id, "promoted a learner to voter");
        Ok(ForwardReply::Done)
    }

    async fn remove_here(&self, id: NodeId) -> Result<ForwardReply, ForwardError> {
        self.ensure_leading()?;
        let _serial = self.membership_lock.lock().await;
        let membership = self.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ForwardError::Rejected(format!(
                    "node {id} is the last voter; it cannot be removed"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(ForwardReply::Done);
        };
        // `retain = false`: a removed voter does not stay on as a learner.
        self.raft.change_membership(change, false).await.map_err(write_error)?;
        tracing::info!(id, "removed a member");
        Ok(ForwardReply::Done)
    }

    async fn set_peer_url_here(
        &self,
        id: NodeId,
        peer_url: String,
    ) -> Result<ForwardReply, ForwardError> {
        self.ensure_leading()?;
        let _serial = self.membership_lock.lock().await;
        match self.membership().get_node(&id) {
            None => return Err(ForwardError::Rejected(format!("node {id} is not a member"))),
            Some(node) if node.addr == peer_url => return Ok(ForwardReply::Done),
            Some(_) => {}
        }
        let nodes = BTreeMap::from([(id, BasicNode::new(&peer_url))]);
        self.raft
            .change_membership(ChangeMembers::SetNodes(nodes), true)
            .await
            .map_err(write_error)?;
        tracing::info!(id, %peer_url, "member moved to a new peer URL");
        Ok(ForwardReply::Done)
    }

    /// Run `cmd` on the leader and return what applying it produced.
    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        match self.on_leader(ForwardRequest::Write(cmd)).await {
            Ok(ForwardReply::Written(resp)) => Ok(resp),
            Ok(other) => Err(StoreError::Storage(format!("write answered with {other:?}"))),
            Err(MembershipError::Store(e)) => Err(e),
            Err(MembershipError::Rejected(why)) => Err(StoreError::Storage(why)),
        }
    }

    /// Return once this member has applied every write acknowledged before the call.
    pub(crate) async fn linearize(&self) -> Result<(), StoreError> {
        let index = match self.on_leader(ForwardRequest::ReadIndex).await {
            Ok(ForwardReply::ReadIndex(index)) => index,
            Ok(other) => {
                return Err(StoreError::Storage(format!("read index answered with {other:?}")));
            }
            Err(MembershipError::Store(e)) => return Err(e),
            Err(MembershipError::Rejected(why)) => return Err(StoreError::Storage(why)),
        };
        self.wait_applied(index, RETRY_WINDOW).await
    }

    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), StoreError> {
        let applied = self.raft.metrics().borrow().last_applied.map_or(0, |id| id.index);
        if applied >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("waiting to apply index {index}: {e}")))
    }

    fn is_voter(&self) -> bool {
        self.membership().voter_ids().any(|v| v == self.id)
    }

    async fn wait_metrics(
        &self,
        deadline: Instant,
        what: &str,
        f: impl Fn(&openraft::RaftMetrics<NodeId, Node>) -> bool + Send,
    ) -> Result<(), StoreError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(timeout))
            .metrics(f, what)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("{what}: {e}")))
    }

    /// Bring this member into service: form a new cluster (`initialize`, fresh directory), or
    /// wait to be added by the leader, or rejoin the cluster this directory belongs to. Returns
    /// once this member has a leader and has applied everything committed, is recorded at
    /// `peer_url`, and is a voter.
    pub(crate) async fn become_ready(
        &self,
        initialize: bool,
        peer_url: &str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let me = self.id;
        if !self.raft.is_initialized().await.map_err(fatal_to_store)? {
            if initialize {
                let members = BTreeMap::from([(me, BasicNode::new(peer_url))]);
                self.raft.initialize(members).await.map_err(super::raft_to_store)?;
            } else {
                tracing::info!(id = me, "waiting for the leader to add this member");
                self.wait_metrics(deadline, "added by the leader", |m| {
                    m.membership_config.membership().get_node(&me).is_some()
                        && m.current_leader.is_some()
                })
                .await?;
            }
        }
        let voters: Vec<NodeId> = self.membership().voter_ids().collect();
        if voters == [me] {
            if self.raft.metrics().borrow().state != ServerState::Leader {
                // A sole voter that was not leader when it stopped (e.g. killed mid-election)
                // would otherwise wait out an election timeout.
                self.raft.trigger().elect().await.map_err(fatal_to_store)?;
            }
            self.wait_metrics(deadline, "leader and caught up", |m| {
                m.state == ServerState::Leader
                    && m.current_leader == Some(me)
                    && m.last_applied.map(|id| id.index) >= m.last_log_index
            })
            .await?;
        } else {
            let recorded = self.membership().get_node(&me).map(|n| n.addr.clone());
            if !peer_url.is_empty() && recorded.as_deref().is_some_and(|addr| addr != peer_url) {
                // The leader would go on calling the old address and never find us.
                tracing::info!(id = me, old = ?recorded, new = %peer_url, "announcing this member's new peer URL");
                self.announce_peer_url(peer_url, deadline).await?;
            }
            self.wait_metrics(deadline, "a leader is known", |m| m.current_leader.is_some())
                .await?;
        }
        self.linearize_until(deadline).await?;

        let recorded = self.membership().get_node(&me).map(|n| n.addr.clone());
        if !peer_url.is_empty() && recorded.as_deref().is_some_and(|addr| addr != peer_url) {
            tracing::info!(id = me, old = ?recorded, new = %peer_url, "recording this member's new peer URL");
            self.on_leader(ForwardRequest::SetPeerUrl { id: me, peer_url: peer_url.to_string() })
                .await
                .map_err(into_store)?;
        }
        if !self.is_voter() {
            tracing::info!(id = me, "catching up as a learner before becoming a voter");
            self.on_leader(ForwardRequest::Promote { id: me }).await.map_err(into_store)?;
            self.wait_metrics(deadline, "recorded as a voter", |m| {
                m.membership_config.membership().voter_ids().any(|v| v == me)
            })
            .await?;
        }
        Ok(())
    }

    /// Have the leader record `peer_url` as this member's address, without knowing who leads:
    /// ask every other member, and follow the one that names the leader.
    async fn announce_peer_url(&self, peer_url: &str, deadline: Instant) -> Result<(), StoreError> {
        let request = ForwardRequest::SetPeerUrl { id: self.id, peer_url: peer_url.to_string() };
        loop {
            let others: Vec<String> = self
                .membership()
                .nodes()
                .filter(|(id, node)| **id != self.id && !node.addr.is_empty())
                .map(|(_, node)| node.addr.clone())
                .collect();
            for url in others {
                let mut target = url;
                // At most one redirect: from any member to the leader it names.
                for _ in 0..2 {
                    match self.send(&target, &request).await {
                        Ok(Ok(_)) => return Ok(()),
                        Ok(Err(ForwardError::NotLeader { leader: Some((_, leader)) })) => {
                            target = leader;
                        }
                        Ok(Err(ForwardError::Rejected(why))) => {
                            return Err(StoreError::Storage(format!(
                                "recording the peer URL: {why}"
                            )));
                        }
                        _ => break,
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "no member could record this member's new peer URL".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `linearize`, retried until `deadline` (a member starting up may see elections).
    async fn linearize_until(&self, deadline: Instant) -> Result<(), StoreError> {
        loop {
            match self.linearize().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "not ready yet");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn members(&self) -> Vec<Member> {
        let membership = self.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                peer_url: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }
}

const KEY_NODE_ID: &[u8] = b"node_id";

/// Record `id` as the node id of the directory behind `db`, or check it is the one recorded:
/// one directory running under two ids would vote twice. A directory from before ids were
/// recorded was node 1.
pub(crate) fn check_node_id(db: &rocksdb::DB, id: NodeId) -> Result<(), StoreError> {
    let cf = db
        .cf_handle(super::CF_LOG_META)
        .ok_or_else(|| StoreError::Storage("column family log_meta is missing".into()))?;
    let storage = |e: rocksdb::Error| StoreError::Storage(format!("node id: {e}"));
    let recorded = match db.get_cf(cf, KEY_NODE_ID).map_err(storage)? {
        Some(raw) => Some(
            <[u8; 8]>::try_from(raw.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Storage("stored node id is not 8 bytes".into()))?,
        ),
        // Raft state without a recorded id: written by a single-voter build, as node 1.
        None if db.get_cf(cf, b"vote").map_err(storage)?.is_some() => Some(1),
        None => None,
    };
    match recorded {
        Some(recorded) if recorded != id => Err(StoreError::Storage(format!(
            "this store belongs to raft node {recorded}, not {id}"
        ))),
        Some(_) if db.get_cf(cf, KEY_NODE_ID).map_err(storage)?.is_some() => Ok(()),
        _ => {
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(cf, KEY_NODE_ID, id.to_be_bytes());
            db.write_opt(batch, &sync).map_err(storage)
        }
    }
}

fn into_store(e: MembershipError) -> StoreError {
    match e {
        MembershipError::Store(e) => e,
        MembershipError::Rejected(why) => StoreError::Storage(why),
    }
}

/// The store's raft state as Prometheus metrics (`skiff_store_*`), read at each scrape.
pub struct StoreMetrics {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").field("node_id", &self.cluster.id).finish()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for StoreMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (leader, term, applied, last_log, snapshot, voters, learners) = {
            let metrics = self.cluster.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                m.state == ServerState::Leader,
                m.current_term,
                m.last_applied.map_or(0, |id| id.index),
                m.last_log_index.unwrap_or(0),
                m.snapshot.map_or(0, |id| id.index),
                membership.voter_ids().count(),
                membership.learner_ids().count(),
            )
        };
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let e = &mut encoder;
        gauge(
            e,
            "skiff_store_is_leader",
            "Whether this member leads the store's raft group",
            i64::from(leader),
        )?;
        gauge(e, "skiff_store_node_id", "This member's raft node id", as_i64(self.cluster.id))?;
        gauge(e, "skiff_store_term", "Current raft term", as_i64(term))?;
        gauge(
            e,
            "skiff_store_applied_index",
            "Last raft log index applied to the state machine",
            as_i64(applied),
        )?;
        gauge(
            e,
            "skiff_store_last_log_index",
            "Last raft log index in this member's log",
            as_i64(last_log),
        )?;
        gauge(
            e,
            "skiff_store_snapshot_index",
            "Last raft log index covered by this member's snapshot",
            as_i64(snapshot),
        )?;
        gauge(e, "skiff_store_voters", "Voters in the cluster configuration", voters as i64)?;
        gauge(e, "skiff_store_learners", "Learners in the cluster configuration", learners as i64)?;
        counter(
            e,
            "skiff_store_snapshots_received",
            "Snapshots a leader sent this member and it installed",
            self.cluster.stats.snapshots_received.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "skiff_store_forwarded_requests",
            "Requests this member forwarded to the leader",
            self.cluster.stats.forwarded.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

impl RaftStore {
    /// This member's raft node id.
    pub fn node_id(&self) -> u64 {
        self.cluster.id
    }

    /// Every member in the current configuration (voters and learners), by id.
    pub fn members(&self) -> Vec<Member> {
        self.cluster.members()
    }

    /// The leader as this member currently knows it.
    pub fn leader(&self) -> Option<Member> {
        let leader = self.cluster.raft.metrics().borrow().current_leader?;
        self.members().into_iter().find(|m| m.id == leader)
    }

    /// Reserve an id for a member at `peer_url` and add it as a learner, without waiting for
    /// it. Asking again for the same URL (a join retried) answers the same id. Forwarded to
    /// the leader when called on a follower.
    ///
    /// This is the first half of adding a member; the member, started under the returned id
    /// with `initialize: false`, asks for the second half ([`RaftStore::promote_member`])
    /// itself once it has caught up. (There is no one-call `add_member`: the new member must
    /// know its id before it can start, so the call cannot wait for it.)
    pub async fn add_learner(&self, peer_url: &str) -> Result<u64, MembershipError> {
        match self
            .cluster
            .on_leader(ForwardRequest::AddLearner { peer_url: peer_url.into() })
            .await?
        {
            ForwardReply::Member(id) => Ok(id),
            other => Err(StoreError::Storage(format!("add learner answered {other:?}")).into()),
        }
    }

    /// Wait until learner `id` has caught up with the leader, then make it a voter. Idempotent.
    pub async fn promote_member(&self, id: u64) -> Result<(), MembershipError> {
        self.cluster.on_leader(ForwardRequest::Promote { id }).await.map(|_| ())
    }

    /// Take member `id` out of the cluster (a voter is not kept as a learner). Removing a
    /// member that is not there does nothing; removing the last voter is rejected.
    pub async fn remove_member(&self, id: u64) -> Result<(), MembershipError> {
        self.cluster.on_leader(ForwardRequest::Remove { id }).await.map(|_| ())
    }

    /// A Prometheus collector of the store's raft state, to register with a registry.
    pub fn metrics_collector(&self) -> StoreMetrics {
        StoreMetrics { cluster: Arc::clone(&self.cluster) }
    }
}
