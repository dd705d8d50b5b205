#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Members of one cluster in one process, talking over real HTTPS with mutual TLS on
//! loopback: membership, forwarding, reads on followers, failover, restart, and the wire
//! format of the peer transport.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};

use super::super::test_support::sample_entries;
use super::super::{
    Command, CommandResponse, PeerOptions, PeerTls, RaftStore, RaftStoreOptions, TypeConfig,
};
use crate::raft::peer::{self, ForwardError, ForwardReply, ForwardRequest};
use crate::{Store, StoreError, WatchEvent};

/// A CA and a peer identity per member (all for 127.0.0.1), as `skiff server` makes them.
struct TestPki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let ca_pem = ca.pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
        TestPki { ca_pem, issuer }
    }

    fn member(&self) -> PeerTls {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        PeerTls {
            ca_cert_pem: self.ca_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

struct Member {
    /// `None` while the member is down: its port refuses connections, as a killed process's.
    listener: Option<Arc<std::net::TcpListener>>,
    addr: std::net::SocketAddr,
    tls: PeerTls,
    url: String,
}

/// Bind with SO_REUSEADDR (as `skiff server` does), so a restarted member gets its port back.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<Arc<std::net::TcpListener>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(Arc::new(socket.listen(128)?.into_std()?))
}

impl Member {
    fn new(pki: &TestPki) -> Member {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        Member { listener: Some(listener), addr, tls: pki.member(), url: format!("https://{addr}") }
    }

    fn close(&mut self) {
        self.listener = None;
    }

    /// Bind the member's port again (once the stopped server has let go of it).
    async fn reopen(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match bind(self.addr) {
                Ok(listener) => {
                    self.listener = Some(listener);
                    return;
                }
                Err(e) => assert!(Instant::now() < deadline, "rebinding {}: {e}", self.addr),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn options(&self, node_id: u64, initialize: bool) -> RaftStoreOptions {
        RaftStoreOptions {
            node_id,
            initialize,
            peer: Some(PeerOptions {
                advertise_url: self.url.clone(),
                listener: Arc::clone(self.listener.as_ref().expect("member listening")),
                tls: self.tls.clone(),
            }),
            ready_timeout: Duration::from_secs(30),
            ..RaftStoreOptions::default()
        }
    }

    async fn open(&self, dir: &Path, node_id: u64, initialize: bool) -> RaftStore {
        RaftStore::open_with(dir, self.options(node_id, initialize)).await.expect("open member")
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three voters: node 1 forms the cluster, the others are added through it.
async fn three_members(
    pki: &TestPki,
    dirs: &[tempfile::TempDir; 3],
) -> (Vec<Member>, Vec<RaftStore>) {
    let members: Vec<Member> = (0..3).map(|_| Member::new(pki)).collect();
    let first = members[0].open(dirs[0].path(), 1, true).await;
    let mut stores = vec![first];
    for i in 1..3 {
        let id = stores[0].add_learner(&members[i].url).await.expect("add learner");
        stores.push(members[i].open(dirs[i].path(), id, false).await);
    }
    (members, stores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_add_voters_and_forward_writes_and_reads() {
    let pki = TestPki::new();
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let (members, stores) = three_members(&pki, &dirs).await;

    let ids: Vec<u64> = stores.iter().map(RaftStore::node_id).collect();
    assert_eq!(ids, [1, 2, 3]);
    // A learner's promotion reaches each member when it applies the membership entry.
    wait_until("every member to see three voters under leader 1", || {
        stores.iter().all(|s| {
            let all = s.members();
            all.len() == 3 && all.iter().all(|m| m.voter) && s.leader().map(|m| m.id) == Some(1)
        })
    })
    .await;
    for store in &stores {
        let all = store.members();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.iter().all(|m| m.voter), "{all:?}");
        assert_eq!(store.leader().map(|m| m.id), Some(1));
    }
    assert_eq!(
        stores[2].members().iter().find(|m| m.id == 3).map(|m| m.peer_url.clone()),
        Some(members[2].url.clone())
    );
    // Joining again under the same URL is answered with the same id, not a new member.
    assert!(matches!(
        stores[1].add_learner(&members[2].url).await,
        Err(crate::MembershipError::Rejected(_))
    ));

    // A write on a follower is forwarded; its revision is the leader's log index.
    let created = stores[1].create("/c/a", b"one".to_vec()).await.expect("create via follower");
    // A linearizable read on the other follower sees it at once.
    assert_eq!(stores[2].get("/c/a").await.expect("get").map(|kv| kv.value), Some(b"one".to_vec()));
    // Preconditions are checked by the leader's state machine, outcomes travel back.
    match stores[2].update("/c/a", b"two".to_vec(), Some(created.mod_revision + 1000)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, created.mod_revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        stores[1].create("/c/a", b"again".to_vec()).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let updated = stores[2]
        .update("/c/a", b"two".to_vec(), Some(created.mod_revision))
        .await
        .expect("cas via follower");
    assert!(updated.mod_revision > created.mod_revision);
    let listed = stores[1].list("/c/").await.expect("list on follower");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].value, b"two");

    // Every member applies every write, so each one's watch sees it.
    for store in &stores {
        let mut watch = store.watch("/c/", 0).await.expect("watch");
        let mut revisions = Vec::new();
        while revisions.len() < 2 {
            let event =
                tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut watch))
                    .await
                    .expect("event")
                    .expect("stream open")
                    .expect("event ok");
            // Skip progress notifications (where the store sends them).
            #[allow(unreachable_patterns)]
            match event {
                WatchEvent::Put { .. } | WatchEvent::Delete { .. } => {
                    revisions.push(event.revision());
                }
                _ => {}
            }
        }
        assert_eq!(revisions, [created.mod_revision, updated.mod_revision]);
    }

    for store in &stores {
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_elect_a_new_leader_and_catch_up_a_restarted_member() {
    let pki = TestPki::new();
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let (mut members, mut stores) = three_members(&pki, &dirs).await;
    stores[0].create("/f/before", b"x".to_vec()).await.expect("write");

    // Stop the leader; the other two elect one of themselves and keep serving writes.
    let old_leader = stores.remove(0);
    old_leader.shutdown().await;
    let stopped = Instant::now();
    drop(old_leader);
    members[0].close();
    // A write that was in flight when the leader went away fails as `Unavailable` (it may or
    // may not have been applied); callers retry, as the api server's clients do.
    let written = loop {
        match stores[0].create("/f/during", b"y".to_vec()).await {
            Ok(kv) => break kv,
            Err(StoreError::AlreadyExists(_)) => {
                break stores[0].get("/f/during").await.expect("get").expect("present");
            }
            Err(e) if e.is_retryable() && stopped.elapsed() < Duration::from_secs(20) => {}
            Err(e) => panic!("write after failover: {e}"),
        }
    };
    eprintln!("first write after the leader stopped took {:?}", stopped.elapsed());
    let leader = stores[1].leader().map(|m| m.id);
    assert!(matches!(leader, Some(2 | 3)), "leader {leader:?}");
    for i in 0..20 {
        stores[1].create(&format!("/f/while-down/{i}"), vec![i]).await.expect("write");
    }

    // Node 1 comes back from its directory (same id, same address) and catches up.
    members[0].reopen().await;
    let back = members[0].open(dirs[0].path(), 1, true).await;
    let current = stores[0].current_revision();
    wait_until("restarted member applied the writes it missed", || {
        back.current_revision() >= current
    })
    .await;
    let got = back.get("/f/during").await.expect("read on restarted member");
    assert_eq!(got.map(|kv| kv.mod_revision), Some(written.mod_revision));
    assert!(back.members().iter().all(|m| m.voter));
    assert_eq!(back.members().len(), 3);

    // A member can be removed, and the rest carry on; the last voter cannot be removed.
    let three = stores.pop().expect("member 3");
    back.remove_member(3).await.expect("remove member 3");
    three.shutdown().await;
    wait_until("member 3 gone", || back.members().len() == 2).await;
    back.create("/f/after-removal", vec![]).await.expect("write with two voters");
    assert!(matches!(back.remove_member(99).await, Ok(())));

    for store in [&back, &stores[0]] {
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_refuse_a_directory_under_another_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = RaftStore::open(dir.path()).await.expect("open");
    store.shutdown().await;
    drop(store);
    let options = RaftStoreOptions { node_id: 7, ..RaftStoreOptions::default() };
    match RaftStore::open_with(dir.path(), options).await {
        Err(StoreError::Storage(m)) => assert!(m.contains("node 1"), "{m}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened node 1's directory as node 7"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_listener_should_refuse_clients_without_a_cluster_certificate() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new(&pki);
    let store = member.open(dir.path(), 1, true).await;

    // A client with a certificate from another CA gets no TLS session, so no RPC.
    let other = TestPki::new();
    let mut stranger = other.member();
    stranger.ca_cert_pem = pki.ca_pem.clone(); // trusts the server, but is not trusted by it
    let http = super::super::network::PeerHttp::new(Some(&stranger)).unwrap();
    let body = peer::encode(&ForwardRequest::ReadIndex).unwrap();
    let refused =
        http.post(&member.url, peer::PATH_FORWARD, body.clone(), Duration::from_secs(5)).await;
    assert!(refused.is_err(), "a stranger got an answer");

    // A member of the cluster gets one.
    let http = super::super::network::PeerHttp::new(Some(&pki.member())).unwrap();
    let answer = http.post(&member.url, peer::PATH_FORWARD, body, Duration::from_secs(5)).await;
    let reply: Result<ForwardReply, ForwardError> =
        peer::decode(&answer.expect("member answered")).unwrap();
    assert!(matches!(reply, Ok(ForwardReply::ReadIndex(i)) if i > 0), "{reply:?}");
    store.shutdown().await;
}

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = peer::encode(value).expect("encode");
    peer::decode(&bytes).expect("decode")
}

#[test]
fn peer_messages_should_round_trip_through_postcard() {
    let vote = Vote::new_committed(3, 1);
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote,
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 7)),
        leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 1), 6)),
        entries: sample_entries(),
    };
    let decoded = round_trip(&append);
    assert_eq!(decoded.entries, append.entries);
    assert_eq!(
        (decoded.vote, decoded.prev_log_id, decoded.leader_commit),
        (append.vote, append.prev_log_id, append.leader_commit)
    );

    let vote_req =
        VoteRequest::new(Vote::new(4, 2), Some(LogId::new(CommittedLeaderId::new(3, 1), 9)));
    assert_eq!(round_trip(&vote_req), vote_req);

    let membership = sample_entries()
        .into_iter()
        .find_map(|e| match e.payload {
            openraft::EntryPayload::Membership(m) => Some(m),
            _ => None,
        })
        .expect("membership entry");
    let snapshot: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 9)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(3, 1), 2)),
                membership,
            ),
            snapshot_id: "3-9-1".into(),
        },
        offset: 0,
        data: vec![0, 1, 2, 255],
        done: true,
    };
    let decoded = round_trip(&snapshot);
    assert_eq!(
        (decoded.meta, decoded.data, decoded.done),
        (snapshot.meta, snapshot.data, snapshot.done)
    );

    // Answers, including remote raft errors.
    let ok: Result<AppendEntriesResponse<u64>, RaftError<u64>> = Ok(AppendEntriesResponse::Success);
    assert_eq!(round_trip(&ok), ok);
    let higher: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
        Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 3)));
    assert_eq!(round_trip(&higher), higher);
    let stopped: Result<VoteResponse<u64>, RaftError<u64>> =
        Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
    assert!(matches!(round_trip(&stopped), Err(RaftError::Fatal(openraft::error::Fatal::Stopped))));
    let mismatch = RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
        expect: openraft::SnapshotSegmentId { id: "a".into(), offset: 0 },
        got: openraft::SnapshotSegmentId { id: "b".into(), offset: 5 },
    }));
    let answer: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
        Err(mismatch.clone());
    match round_trip(&answer) {
        Err(e) => assert_eq!(e.to_string(), mismatch.to_string()),
        Ok(_) => panic!("the error was lost on the wire"),
    }

    // Forwarded requests and their answers; values are raw bytes.
    for request in [
        ForwardRequest::Write(Command::Update {
            key: "/k".into(),
            value: vec![0, 159, 255],
            expected: Some(4),
        }),
        ForwardRequest::ReadIndex,
        ForwardRequest::AddLearner { peer_url: "https://127.0.0.1:6444".into() },
        ForwardRequest::Promote { id: 4 },
        ForwardRequest::Remove { id: 2 },
        ForwardRequest::SetPeerUrl { id: 2, peer_url: "https://10.0.0.2:6444".into() },
    ] {
        assert_eq!(round_trip(&request), request);
    }
    let write = ForwardRequest::Write(Command::Create { key: "/k".into(), value: vec![7; 1024] });
    let size = peer::encode(&write).unwrap().len();
    assert!(size < 1024 + 16, "a 1 KiB write costs {size} bytes on the wire");
    for reply in [
        Ok(ForwardReply::Written(CommandResponse::Conflict {
            key: "/k".into(),
            expected: 1,
            current: 2,
        })),
        Ok(ForwardReply::ReadIndex(42)),
        Ok(ForwardReply::Member(3)),
        Ok(ForwardReply::Done),
        Err(ForwardError::NotLeader { leader: Some((2, "https://127.0.0.1:1".into())) }),
        Err(ForwardError::NotLeader { leader: None }),
        Err(ForwardError::Unavailable("no quorum".into())),
        Err(ForwardError::Rejected("last voter".into())),
        Err(ForwardError::Failed("disk".into())),
    ] {
        let reply: Result<ForwardReply, ForwardError> = reply;
        assert_eq!(round_trip(&reply), reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_carry_on_when_the_leader_is_removed() {
    let pki = TestPki::new();
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let (_members, stores) = three_members(&pki, &dirs).await;
    assert_eq!(stores[1].leader().map(|m| m.id), Some(1));
    stores[1].remove_member(1).await.expect("remove the leader");
    wait_until("a new leader among the other two", || {
        matches!(stores[1].leader().map(|m| m.id), Some(2 | 3))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match stores[2].create("/r/after", vec![1]).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {}
            Err(e) => panic!("write after removing the leader: {e}"),
        }
    }
    let left: Vec<u64> = stores[1].members().iter().map(|m| m.id).collect();
    assert_eq!(left, [2, 3]);
    for store in &stores {
        store.shutdown().await;
    }
}
