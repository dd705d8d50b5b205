#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The state machine applying entries directly (no raft): batched writes, their revisions,
//! and that revisions survive a restart and travel in snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId};

use super::super::watch::WatchHub;
use super::super::{Command, CommandResponse, Entry, WireKv, open_db, snapshot};
use super::StateMachineStore;
use crate::{ListOptions, WatchEvent};

struct Fixture {
    dir: tempfile::TempDir,
    db: Arc<rocksdb::DB>,
    hub: Arc<WatchHub>,
    sm: StateMachineStore,
}

fn open(dir: tempfile::TempDir) -> Fixture {
    let db = Arc::new(open_db(dir.path(), Instant::now() + Duration::from_secs(5)).unwrap());
    let hub = WatchHub::new(&db, 100, Duration::from_secs(60));
    let sm = StateMachineStore::new(
        Arc::clone(&db),
        Arc::clone(&hub),
        snapshot::snapshot_dir(dir.path()),
    )
    .unwrap();
    Fixture { dir, db, hub, sm }
}

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn create(key: &str) -> Command {
    Command::Create { key: key.into(), value: key.as_bytes().to_vec() }
}

fn written(resp: &CommandResponse) -> (String, u64, u64) {
    match resp {
        CommandResponse::Kv(WireKv { key, create_revision, mod_revision, .. }) => {
            (key.clone(), *create_revision, *mod_revision)
        }
        other => panic!("expected a written key, got {other:?}"),
    }
}

#[tokio::test]
async fn state_machine_should_apply_each_write_of_a_batch_on_its_own_at_its_own_revision() {
    let mut f = open(tempfile::tempdir().unwrap());
    let mut watch = f.hub.watch("/", 0).unwrap();
    let batch = Command::Batch(vec![
        create("/a"),
        // Refused: the key exists (its earlier write in this batch counts).
        create("/a"),
        // Refused as a whole: /missing does not exist, so /b is not created either.
        Command::Txn(vec![
            create("/b"),
            Command::Update { key: "/missing".into(), value: vec![], expected: None },
        ]),
        Command::Update { key: "/a".into(), value: b"2".to_vec(), expected: Some(10) },
        Command::Txn(vec![create("/c"), create("/d")]),
        Command::Delete { key: "/zzz".into(), expected: None },
    ]);
    let responses = f.sm.apply(vec![entry(10, batch)]).await.unwrap();
    let CommandResponse::Batch(answers) = &responses[0] else {
        panic!("expected batch answers, got {responses:?}")
    };
    assert_eq!(answers.len(), 6);
    assert_eq!(written(&answers[0]), ("/a".into(), 10, 10));
    assert_eq!(answers[1], CommandResponse::AlreadyExists("/a".into()));
    assert_eq!(answers[2], CommandResponse::NotFound("/missing".into()));
    assert_eq!(written(&answers[3]), ("/a".into(), 10, 11));
    let CommandResponse::Txn(txn) = &answers[4] else { panic!("txn answer: {:?}", answers[4]) };
    assert_eq!(
        txn.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect::<Vec<_>>(),
        [("/c", 12), ("/d", 12)]
    );
    assert_eq!(answers[5], CommandResponse::NotFound("/zzz".into()));
    assert_eq!(f.hub.current_revision(), 12);

    // The next entry continues after the batch; a later log index jumps ahead to it.
    let next = f.sm.apply(vec![entry(11, create("/e")), entry(20, create("/f"))]).await.unwrap();
    assert_eq!(written(&next[0]).2, 13);
    assert_eq!(written(&next[1]).2, 20);
    assert_eq!(f.hub.current_revision(), 20);

    // Watchers see each change once, in revision order.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let ev = futures::StreamExt::next(&mut watch).await.unwrap().unwrap();
        if !matches!(ev, WatchEvent::Progress { .. }) {
            seen.push((ev.key().unwrap().to_owned(), ev.revision()));
        }
    }
    let expected = [("/a", 10), ("/a", 11), ("/c", 12), ("/d", 12), ("/e", 13), ("/f", 20)];
    assert_eq!(seen, expected.map(|(k, r)| (k.to_owned(), r)));

    // Lists at each revision see the batch's writes one at a time.
    let at = |revision| ListOptions { revision: Some(revision), ..ListOptions::default() };
    let keys = |revision| {
        super::super::read::list(&f.db, "/", &at(revision))
            .unwrap()
            .items
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(10), [("/a".to_owned(), 10)]);
    assert_eq!(keys(11), [("/a".to_owned(), 11)]);
    assert_eq!(keys(12).len(), 3);
    assert!(!keys(12).iter().any(|(k, _)| k == "/b"));
}

#[tokio::test]
async fn state_machine_should_keep_its_revision_across_restart_and_in_snapshots() {
    let mut f = open(tempfile::tempdir().unwrap());
    let batch = Command::Batch(vec![create("/a"), create("/b"), create("/c")]);
    f.sm.apply(vec![entry(5, batch)]).await.unwrap();
    assert_eq!(f.hub.current_revision(), 7);

    let mut builder = f.sm.get_snapshot_builder().await;
    let built = builder.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id.map(|id| id.index), Some(5));
    let current = f.sm.get_current_snapshot().await.unwrap().expect("a current snapshot");

    // Another replica installs it and assigns the same revisions from there on.
    let mut other = open(tempfile::tempdir().unwrap());
    other.sm.install_snapshot(&current.meta, current.snapshot).await.unwrap();
    assert_eq!(other.hub.current_revision(), 7);
    assert_eq!(other.hub.compacted_revision(), 7);
    let here = f.sm.apply(vec![entry(6, create("/d"))]).await.unwrap();
    let there = other.sm.apply(vec![entry(6, create("/d"))]).await.unwrap();
    assert_eq!(here, there);
    assert_eq!(written(&here[0]).2, 8);

    // A restart reads the revision back rather than the log index.
    drop(builder);
    drop(f.sm);
    drop(f.hub);
    let dir = f.dir;
    drop(f.db);
    let reopened = open(dir);
    assert_eq!(reopened.hub.current_revision(), 8);
}
