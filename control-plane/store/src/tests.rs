#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A conformance suite for any [`Store`] (each `check_*` takes `&dyn Store`), run against
//! [`RaftStore`] in a temporary directory, plus raft-specific tests (restart, snapshots).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    Consistency, KeyValue, ListOptions, RaftStore, RaftStoreOptions, Store, StoreError, TxnOp,
    WatchEvent, WatchStream,
};

const DEADLINE: Duration = Duration::from_secs(20);

async fn open(dir: &Path) -> RaftStore {
    RaftStore::open(dir).await.expect("open store")
}

async fn open_with(dir: &Path, options: RaftStoreOptions) -> RaftStore {
    RaftStore::open_with(dir, options).await.expect("open store")
}

/// Next item of a watch, failing the test if none arrives before the deadline.
async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("watch event before deadline")
        .expect("watch stream ended")
}

// ---- the suite -------------------------------------------------------------------------

async fn check_create_get(store: &dyn Store) {
    assert_eq!(store.get("/t/a").await.expect("get"), None);
    let kv = store.create("/t/a", b"one".to_vec()).await.expect("create");
    assert_eq!(kv.key, "/t/a");
    assert_eq!(kv.value, b"one");
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert!(kv.mod_revision > 0);
    assert_eq!(store.get("/t/a").await.expect("get"), Some(kv.clone()));
    match store.create("/t/a", b"two".to_vec()).await {
        Err(StoreError::AlreadyExists(key)) => assert_eq!(key, "/t/a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("/t/a").await.expect("get"), Some(kv));
}

async fn check_update(store: &dyn Store) {
    let created = store.create("/u/a", b"v1".to_vec()).await.expect("create");
    let updated =
        store.update("/u/a", b"v2".to_vec(), Some(created.mod_revision)).await.expect("cas update");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.value, b"v2");

    match store.update("/u/a", b"v3".to_vec(), Some(created.mod_revision)).await {
        Err(StoreError::Conflict { key, expected, current }) => {
            assert_eq!(
                (key.as_str(), expected, current),
                ("/u/a", created.mod_revision, updated.mod_revision)
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let unconditional = store.update("/u/a", b"v4".to_vec(), None).await.expect("update");
    assert!(unconditional.mod_revision > updated.mod_revision);
    assert_eq!(store.get("/u/a").await.expect("get"), Some(unconditional));

    assert!(matches!(
        store.update("/u/missing", b"x".to_vec(), None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update("/u/missing", b"x".to_vec(), Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn check_delete(store: &dyn Store) {
    let created = store.create("/d/a", b"v".to_vec()).await.expect("create");
    match store.delete("/d/a", Some(created.mod_revision + 1000)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, created.mod_revision),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = store.delete("/d/a", Some(created.mod_revision)).await.expect("delete");
    assert_eq!(deleted.value, b"v");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(deleted.mod_revision > created.mod_revision);
    assert_eq!(store.get("/d/a").await.expect("get"), None);
    assert!(matches!(store.delete("/d/a", None).await, Err(StoreError::NotFound(_))));
    // The key can be created again, with a fresh create revision.
    let again = store.create("/d/a", b"w".to_vec()).await.expect("recreate");
    assert!(again.create_revision > deleted.mod_revision);
}

async fn check_list(store: &dyn Store) {
    let mut written = Vec::new();
    for name in ["b", "a", "c"] {
        written.push(
            store.create(&format!("/l/x/{name}"), name.as_bytes().to_vec()).await.expect("create"),
        );
    }
    store.create("/l/y/a", b"other".to_vec()).await.expect("create");
    store.create("/l/xz", b"sibling".to_vec()).await.expect("create");

    let list = store.list("/l/x/").await.expect("list");
    let keys: Vec<&str> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/l/x/a", "/l/x/b", "/l/x/c"]);
    assert!(list.items.iter().all(|kv| kv.mod_revision <= list.revision));
    assert!(list.revision >= written.iter().map(|kv| kv.mod_revision).max().unwrap_or(0));
    assert_eq!(list.revision, store.current_revision());
    assert!(store.list("/l/none/").await.expect("list").items.is_empty());
}

async fn check_revisions_increase(store: &dyn Store) {
    let mut last = store.current_revision();
    for i in 0..20 {
        let kv = store.create(&format!("/r/{i}"), vec![i]).await.expect("create");
        assert!(kv.mod_revision > last, "revision {} after {last}", kv.mod_revision);
        last = kv.mod_revision;
        assert!(store.current_revision() >= last);
    }
}

async fn check_concurrent_cas(store: Arc<dyn Store>) {
    const TASKS: u64 = 32;
    store.create("/cas/counter", b"0".to_vec()).await.expect("create");
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                loop {
                    let kv = store.get("/cas/counter").await.expect("get").expect("counter exists");
                    let n: u64 =
                        String::from_utf8(kv.value).expect("utf8").parse().expect("number");
                    match store
                        .update(
                            "/cas/counter",
                            (n + 1).to_string().into_bytes(),
                            Some(kv.mod_revision),
                        )
                        .await
                    {
                        Ok(_) => return,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("update failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(DEADLINE, task).await.expect("task before deadline").expect("task");
    }
    let kv = store.get("/cas/counter").await.expect("get").expect("counter exists");
    assert_eq!(kv.value, TASKS.to_string().into_bytes());
}

/// Writers run while a watch starts from a past revision; the watch must see every write
/// after that revision exactly once, in order.
async fn check_watch_replay_then_live(store: Arc<dyn Store>) {
    let mut early = Vec::new();
    for i in 0..10 {
        early.push(store.create(&format!("/w/k{i}"), vec![i]).await.expect("create"));
    }
    store.create("/other/k", b"not watched".to_vec()).await.expect("create");
    let after = early[4].mod_revision;

    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..25u8 {
                    let key = format!("/w/writer{w}/{i}");
                    revisions.push(store.create(&key, vec![i]).await.expect("create").mod_revision);
                    revisions.push(
                        store.update(&key, vec![i, 1], None).await.expect("update").mod_revision,
                    );
                    if i % 5 == 0 {
                        revisions
                            .push(store.delete(&key, None).await.expect("delete").mod_revision);
                    }
                }
                revisions
            })
        })
        .collect();
    // Start watching while the writers are busy.
    let mut stream = store.watch("/w/", after).await.expect("watch");

    let mut expected: BTreeSet<u64> = early[5..].iter().map(|kv| kv.mod_revision).collect();
    for writer in writers {
        expected.extend(
            tokio::time::timeout(DEADLINE, writer)
                .await
                .expect("writer before deadline")
                .expect("writer"),
        );
    }

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let ev = next_event(&mut stream).await.expect("event");
        if let WatchEvent::Delete { prev, revision, .. } = &ev {
            assert!(prev.mod_revision < *revision);
        }
        seen.push(ev.revision());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "events out of order or duplicated: {seen:?}");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), expected);

    // Nothing more is pending; the next write arrives live.
    let live = store.create("/w/live", b"x".to_vec()).await.expect("create");
    assert_eq!(next_event(&mut stream).await.expect("event").revision(), live.mod_revision);
}

async fn check_watch_event_contents(store: &dyn Store) {
    let start = store.current_revision();
    let mut stream = store.watch("/e/", start).await.expect("watch");
    let created = store.create("/e/a", b"1".to_vec()).await.expect("create");
    let updated = store.update("/e/a", b"2".to_vec(), None).await.expect("update");
    let deleted = store.delete("/e/a", None).await.expect("delete");

    assert_eq!(
        next_event(&mut stream).await.expect("event"),
        WatchEvent::Put { kv: created.clone(), prev: None }
    );
    assert_eq!(
        next_event(&mut stream).await.expect("event"),
        WatchEvent::Put { kv: updated.clone(), prev: Some(created) }
    );
    assert_eq!(
        next_event(&mut stream).await.expect("event"),
        WatchEvent::Delete { key: "/e/a".into(), revision: deleted.mod_revision, prev: updated }
    );
}

/// A transaction applies all its ops at one revision, or none of them.
async fn check_txn(store: &dyn Store) {
    let b = store.create("/x/b", b"b1".to_vec()).await.expect("create");
    store.create("/x/c", b"c1".to_vec()).await.expect("create");
    let start = store.current_revision();
    let mut stream = store.watch("/x/", start).await.expect("watch");

    let done = store
        .txn(vec![
            TxnOp::Create { key: "/x/a".into(), value: b"a1".to_vec() },
            TxnOp::Update {
                key: "/x/b".into(),
                value: b"b2".to_vec(),
                expected: Some(b.mod_revision),
            },
            TxnOp::Delete { key: "/x/c".into(), expected: None },
        ])
        .await
        .expect("txn");
    assert_eq!(done.len(), 3);
    let revision = done[0].mod_revision;
    assert!(done.iter().all(|kv| kv.mod_revision == revision), "{done:?}");
    assert_eq!(done[1].value, b"b2");
    assert_eq!(store.get("/x/c").await.expect("get"), None);

    // The second op's precondition fails: the first op must not happen either.
    match store
        .txn(vec![
            TxnOp::Create { key: "/x/d".into(), value: vec![] },
            TxnOp::Update { key: "/x/b".into(), value: vec![], expected: Some(b.mod_revision) },
        ])
        .await
    {
        Err(StoreError::Conflict { key, current, .. }) => {
            assert_eq!((key.as_str(), current), ("/x/b", revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/x/d").await.expect("get"), None);
    assert_eq!(store.get("/x/b").await.expect("get").map(|kv| kv.mod_revision), Some(revision));

    // Ops of a txn see the earlier ops' writes.
    let chained = store
        .txn(vec![
            TxnOp::Create { key: "/x/e".into(), value: b"1".to_vec() },
            TxnOp::Update { key: "/x/e".into(), value: b"2".to_vec(), expected: None },
        ])
        .await
        .expect("chained txn");
    assert_eq!(chained[1].create_revision, chained[0].mod_revision);

    let mut seen = Vec::new();
    for _ in 0..5 {
        let ev = next_event(&mut stream).await.expect("event");
        seen.push((ev.key().unwrap_or_default().to_owned(), ev.revision()));
    }
    let second = chained[0].mod_revision;
    assert_eq!(
        seen,
        [
            ("/x/a".to_owned(), revision),
            ("/x/b".to_owned(), revision),
            ("/x/c".to_owned(), revision),
            ("/x/e".to_owned(), second),
            ("/x/e".to_owned(), second),
        ]
    );
}

fn snapshot_of(list: &crate::ListResult) -> Vec<(String, Vec<u8>, u64)> {
    list.items.iter().map(|kv| (kv.key.clone(), kv.value.clone(), kv.mod_revision)).collect()
}

/// Paged lists pinned to the first page's revision form one snapshot, whatever changes
/// between pages; `more` says whether a page was cut short.
async fn check_list_pages_are_one_snapshot(store: &dyn Store) {
    for i in 0..25u8 {
        store.create(&format!("/p/{i:02}"), vec![i]).await.expect("create");
    }
    let whole = store.list("/p/").await.expect("list");
    let mut options = ListOptions { limit: 10, ..ListOptions::default() };
    let mut pages = Vec::new();
    loop {
        let page = store.list_with("/p/", &options).await.expect("page");
        assert!(page.items.len() <= 10);
        pages.extend(page.items.iter().cloned());
        // Churn between pages: none of it may show up in later pages.
        let n = pages.len();
        if n + 3 < 25 {
            store.delete(&format!("/p/{:02}", n + 1), None).await.expect("delete");
            store
                .update(&format!("/p/{:02}", n + 3), b"changed".to_vec(), None)
                .await
                .expect("update");
            store.create(&format!("/p/{n:02}x"), vec![]).await.expect("create");
        }
        options.revision = Some(page.revision);
        options.start_after = page.items.last().map(|kv| kv.key.clone());
        assert_eq!(page.revision, whole.revision);
        if !page.more {
            break;
        }
    }
    let paged = crate::ListResult { items: pages, revision: whole.revision, more: false };
    assert_eq!(snapshot_of(&paged), snapshot_of(&whole));
    assert_eq!(paged.items.len(), 25);
}

/// A list at a past revision shows exactly what a list showed then.
async fn check_list_at_past_revisions(store: &dyn Store) {
    let mut seen = Vec::new();
    let step = |list: crate::ListResult| (list.revision, snapshot_of(&list));
    store.create("/h/a", b"1".to_vec()).await.expect("create");
    seen.push(step(store.list("/h/").await.expect("list")));
    store.create("/h/b", b"1".to_vec()).await.expect("create");
    store.create("/h/c", b"1".to_vec()).await.expect("create");
    seen.push(step(store.list("/h/").await.expect("list")));
    store.update("/h/a", b"2".to_vec(), None).await.expect("update");
    store.delete("/h/b", None).await.expect("delete");
    store.create("/hz", b"outside".to_vec()).await.expect("create");
    seen.push(step(store.list("/h/").await.expect("list")));
    store.delete("/h/a", None).await.expect("delete");
    store.delete("/h/c", None).await.expect("delete");
    store.create("/h/0", b"new".to_vec()).await.expect("create");
    seen.push(step(store.list("/h/").await.expect("list")));

    for (revision, expected) in &seen {
        let options = ListOptions { revision: Some(*revision), ..ListOptions::default() };
        let then = store.list_with("/h/", &options).await.expect("list at revision");
        assert_eq!(then.revision, *revision);
        assert_eq!(&snapshot_of(&then), expected, "at revision {revision}");
        // And paged one item at a time.
        let mut options = ListOptions { limit: 1, ..options };
        let mut items = Vec::new();
        loop {
            let page = store.list_with("/h/", &options).await.expect("page at revision");
            items.extend(page.items.iter().cloned());
            options.start_after = page.items.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        let paged = crate::ListResult { items, revision: *revision, more: false };
        assert_eq!(&snapshot_of(&paged), expected, "paged at revision {revision}");
    }
    let future =
        ListOptions { revision: Some(store.current_revision() + 1000), ..Default::default() };
    assert!(matches!(
        store.list_with("/h/", &future).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

/// Compaction drops history: watches and lists before it fail with `Compacted`, later ones
/// work, and the current state is untouched.
async fn check_compaction(store: &dyn Store) {
    let first = store.create("/k/a", b"1".to_vec()).await.expect("create");
    let second = store.update("/k/a", b"2".to_vec(), None).await.expect("update");
    let third = store.create("/k/b", b"1".to_vec()).await.expect("create");
    store.compact(second.mod_revision).await.expect("compact");
    assert_eq!(store.compacted_revision(), second.mod_revision);
    store.compact(first.mod_revision).await.expect("compacting less is a no-op");
    assert_eq!(store.compacted_revision(), second.mod_revision);

    match store.watch("/k/", first.mod_revision).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (first.mod_revision, second.mod_revision));
        }
        Ok(_) => panic!("expected Compacted, got a stream"),
        Err(e) => panic!("expected Compacted, got {e}"),
    }
    let old = ListOptions { revision: Some(first.mod_revision), ..ListOptions::default() };
    assert!(matches!(store.list_with("/k/", &old).await, Err(StoreError::Compacted { .. })));

    let mut stream = store.watch("/k/", second.mod_revision).await.expect("watch at compaction");
    assert_eq!(
        next_event(&mut stream).await.expect("event"),
        WatchEvent::Put { kv: third, prev: None }
    );
    let at = ListOptions { revision: Some(second.mod_revision), ..ListOptions::default() };
    let listed = store.list_with("/k/", &at).await.expect("list at compaction point");
    assert_eq!(listed.items, vec![second.clone()]);
    assert_eq!(store.list("/k/").await.expect("list").items.len(), 2);
}

async fn check_serializable_reads(store: &dyn Store) {
    let kv = store.create("/s/a", b"1".to_vec()).await.expect("create");
    assert_eq!(
        store.get_with("/s/a", Consistency::Serializable).await.expect("get"),
        Some(kv.clone())
    );
    let options = ListOptions { consistency: Consistency::Serializable, ..ListOptions::default() };
    assert_eq!(store.list_with("/s/", &options).await.expect("list").items, vec![kv]);
}

// ---- the suite against RaftStore --------------------------------------------------------

macro_rules! raft_store_case {
    ($name:ident, $check:ident, arc) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(open(dir.path()).await);
            $check(Arc::clone(&store) as Arc<dyn Store>).await;
            store.shutdown().await;
        }
    };
    ($name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(dir.path()).await;
            $check(&store).await;
            store.shutdown().await;
        }
    };
}

raft_store_case!(raft_store_should_create_and_reject_duplicates, check_create_get);
raft_store_case!(raft_store_should_update_with_expected_revision, check_update);
raft_store_case!(raft_store_should_delete_with_expected_revision, check_delete);
raft_store_case!(raft_store_should_list_prefix_at_a_revision, check_list);
raft_store_case!(raft_store_should_assign_increasing_revisions, check_revisions_increase);
raft_store_case!(raft_store_should_serialize_concurrent_cas, check_concurrent_cas, arc);
raft_store_case!(
    raft_store_should_replay_then_stream_watch_exactly_once,
    check_watch_replay_then_live,
    arc
);
raft_store_case!(raft_store_should_report_prev_values_in_watch_events, check_watch_event_contents);
raft_store_case!(raft_store_should_apply_transactions_atomically, check_txn);
raft_store_case!(raft_store_should_page_lists_as_one_snapshot, check_list_pages_are_one_snapshot);
raft_store_case!(raft_store_should_list_at_past_revisions, check_list_at_past_revisions);
raft_store_case!(raft_store_should_compact_history, check_compaction);
raft_store_case!(raft_store_should_serve_serializable_reads, check_serializable_reads);

// ---- raft-specific --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_compact_history_beyond_the_revision_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RaftStoreOptions {
        history_max_revisions: 10,
        compaction_interval: Duration::from_millis(50),
        ..RaftStoreOptions::default()
    };
    let store = open_with(dir.path(), options).await;
    let first = store.create("/c/0", vec![]).await.expect("create");
    for i in 1..30 {
        store.create(&format!("/c/{i}"), vec![]).await.expect("create");
    }
    let current = store.current_revision();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.compacted_revision() < current - 10 {
        assert!(tokio::time::Instant::now() < deadline, "compactor did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        store.watch("/c/", first.mod_revision).await,
        Err(StoreError::Compacted { .. })
    ));
    // The last revisions are still in history.
    let recent = current - 5;
    let mut stream = store.watch("/c/", recent).await.expect("recent watch");
    assert_eq!(next_event(&mut stream).await.expect("event").revision(), recent + 1);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_catch_up_a_lagging_watch_from_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RaftStoreOptions { watch_channel_capacity: 2, ..RaftStoreOptions::default() };
    let store = open_with(dir.path(), options).await;
    let mut stream = store.watch("/lag/", store.current_revision()).await.expect("watch");
    // Sequential writes are separate applied batches; the channel holds two.
    let mut written = Vec::new();
    for i in 0..50 {
        written
            .push(store.create(&format!("/lag/{i}"), vec![]).await.expect("create").mod_revision);
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        seen.push(next_event(&mut stream).await.expect("event").revision());
    }
    assert_eq!(seen, written);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_send_progress_while_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RaftStoreOptions {
        watch_progress_interval: Duration::from_millis(100),
        ..RaftStoreOptions::default()
    };
    let store = open_with(dir.path(), options).await;
    let start = store.current_revision();
    let mut stream = store.watch("/quiet/", start).await.expect("watch");
    // Changes elsewhere move the revision on; the watcher hears where it stands.
    let other = store.create("/loud/a", vec![]).await.expect("create");
    loop {
        match next_event(&mut stream).await.expect("item") {
            WatchEvent::Progress { revision } if revision >= other.mod_revision => break,
            WatchEvent::Progress { revision } => assert!(revision > start),
            ev => panic!("unexpected event {ev:?}"),
        }
    }
    let mine = store.create("/quiet/a", vec![]).await.expect("create");
    loop {
        match next_event(&mut stream).await.expect("item") {
            WatchEvent::Progress { revision } => assert!(revision < mine.mod_revision),
            ev => {
                assert_eq!(ev.revision(), mine.mod_revision);
                break;
            }
        }
    }
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_send_progress_at_once_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An interval no test waits for: only a request can bring the notification.
    let options = RaftStoreOptions {
        watch_progress_interval: Duration::from_secs(3600),
        ..RaftStoreOptions::default()
    };
    let store = Arc::new(open_with(dir.path(), options).await);
    let mut stream = store.watch("/quiet/", store.current_revision()).await.expect("watch");
    let other = store.create("/loud/a", vec![]).await.expect("create");
    let asker = {
        let store = store.clone();
        tokio::spawn(async move {
            // A request that finds the watcher busy is lost: ask until it is heard.
            loop {
                store.request_watch_progress();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let ev = tokio::time::timeout(Duration::from_secs(5), next_event(&mut stream))
        .await
        .expect("progress within 5 s, not at the hour's interval")
        .expect("item");
    asker.abort();
    assert_eq!(ev, WatchEvent::Progress { revision: other.mod_revision });
    drop(stream);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_serve_watches_from_before_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let start = store.current_revision();
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(store.create(&format!("/rw/{i}"), vec![i]).await.expect("create"));
    }
    store.shutdown().await;
    drop(store);
    let store = open(dir.path()).await;
    let mut stream = store.watch("/rw/", start).await.expect("watch from before the restart");
    for kv in written {
        assert_eq!(
            next_event(&mut stream).await.expect("event"),
            WatchEvent::Put { kv, prev: None }
        );
    }
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_keep_data_and_revisions_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let mut written: Vec<KeyValue> = Vec::new();
    for i in 0..50 {
        written.push(store.create(&format!("/p/{i:02}"), vec![i]).await.expect("create"));
    }
    let updated = store.update("/p/00", b"new".to_vec(), None).await.expect("update");
    written[0] = updated;
    store.delete("/p/49", None).await.expect("delete");
    written.pop();
    let before = store.current_revision();
    store.shutdown().await;
    drop(store);

    let store = open(dir.path()).await;
    assert!(store.current_revision() >= before);
    let list = store.list("/p/").await.expect("list");
    assert_eq!(list.items, written);

    // Watching from "now" works on the fresh (empty) history, and sees new writes.
    let mut stream =
        store.watch("/p/", store.current_revision()).await.expect("watch after restart");
    let next = store.create("/p/new", b"x".to_vec()).await.expect("create after restart");
    assert!(next.mod_revision > before);
    assert_eq!(next_event(&mut stream).await.expect("event").revision(), next.mod_revision);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_snapshot_and_purge_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RaftStoreOptions {
        snapshot_every: 100,
        logs_kept_after_snapshot: 10,
        ..RaftStoreOptions::default()
    };
    let store = open_with(dir.path(), options.clone()).await;
    for i in 0..300u32 {
        store.create(&format!("/s/{i:03}"), i.to_be_bytes().to_vec()).await.expect("create");
    }
    let metrics = store
        .raft
        .wait(Some(DEADLINE))
        .metrics(|m| m.snapshot.is_some() && m.purged.is_some(), "snapshot and purge")
        .await
        .expect("snapshot built and log purged");
    let snapshot_index = metrics.snapshot.map_or(0, |id| id.index);
    assert!(snapshot_index >= 100);

    // The current snapshot may already be a later one than the metrics above reported.
    let snapshot = store.raft.get_snapshot().await.expect("get snapshot").expect("a snapshot");
    let snapshot_index = snapshot.meta.last_log_id.map_or(0, |id| id.index);
    let file = snapshot.snapshot.into_std().await;
    let items = crate::raft::count_image_items(file).expect("image decodes");
    // One write per entry (each create waited for): revisions are the entries' log indexes.
    let then = ListOptions { revision: Some(snapshot_index), ..ListOptions::default() };
    let expected = store.list_with("/s/", &then).await.expect("list at the snapshot").items.len();
    assert_eq!(items, expected, "every key up to the snapshot, none after");
    store.shutdown().await;
    drop(store);

    let store = open_with(dir.path(), options).await;
    let list = store.list("/s/").await.expect("list");
    assert_eq!(list.items.len(), 300);
    store.create("/s/after", vec![]).await.expect("create after restart");
    store.shutdown().await;
}

/// Not a timed test: prints how long 1,000 concurrent creates take (the api server's
/// "1,000 pods at once" burst), and checks they all land with distinct revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_absorb_a_burst_of_concurrent_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()).await);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(
                async move { store.create(&format!("/burst/{i:04}"), vec![0; 1024]).await },
            )
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for task in tasks {
        let kv = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("before deadline")
            .expect("task")
            .expect("create");
        revisions.insert(kv.mod_revision);
    }
    eprintln!("1000 concurrent creates took {:?}", started.elapsed());
    assert_eq!(revisions.len(), 1000);
    assert_eq!(store.list("/burst/").await.expect("list").items.len(), 1000);
    store.shutdown().await;
}

/// Issue 17 (group commit): concurrent writers share raft entries (so they share fsyncs),
/// yet each write keeps a revision of its own, revisions follow the order writes were
/// applied in, and a watcher sees every write once, in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_group_concurrent_writes_with_their_own_revisions() {
    const WRITERS: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()).await);
    let start = store.current_revision();
    let mut stream = store.watch("/group/", start).await.expect("watch");
    let first_index = store.raft.metrics().borrow().last_log_index.unwrap_or(0);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let key = format!("/group/{i:03}");
                let created = store.create(&key, vec![1]).await?;
                // One refused write per writer, in the same stream of batches.
                let refused = store.create(&key, vec![2]).await;
                assert!(matches!(refused, Err(StoreError::AlreadyExists(_))), "{refused:?}");
                let updated = store.update(&key, vec![3], Some(created.mod_revision)).await?;
                Ok::<_, StoreError>((created, updated))
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        let (created, updated) = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("before deadline")
            .expect("task")
            .expect("writes");
        assert!(updated.mod_revision > created.mod_revision);
        assert_eq!(updated.create_revision, created.create_revision);
        written.push(created);
        written.push(updated);
    }
    let revisions: BTreeSet<u64> = written.iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(revisions.len(), 2 * WRITERS, "every write has a revision of its own");
    assert!(revisions.first().is_some_and(|r| *r > start));
    assert_eq!(revisions.last().copied(), Some(store.current_revision()));
    let entries = store.raft.metrics().borrow().last_log_index.unwrap_or(0) - first_index;
    assert!(2 * entries <= 3 * WRITERS as u64, "{entries} raft entries for {} writes", 3 * WRITERS);

    let mut seen = Vec::new();
    while seen.len() < written.len() {
        match next_event(&mut stream).await.expect("event") {
            WatchEvent::Progress { .. } => {}
            ev => seen.push((ev.key().expect("key").to_owned(), ev.revision())),
        }
    }
    let mut expected: Vec<(String, u64)> =
        written.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect();
    expected.sort_by_key(|(_, revision)| *revision);
    assert_eq!(seen, expected, "each write once, in revision order");
    store.shutdown().await;
}

#[test]
fn codec_should_round_trip_log_entries_and_reject_garbage() {
    use crate::raft::test_support::{decode_entry, encode_entry, sample_entries};
    for entry in sample_entries() {
        let raw = encode_entry(&entry).expect("encode");
        let back = decode_entry(&raw).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        assert!(decode_entry(&raw[..raw.len() - 1]).is_err());
    }
    assert!(decode_entry(b"short").is_err());
}

#[test]
fn codec_should_round_trip_history_records() {
    use crate::raft::test_support::{HistoryRecord, StoredValue};
    let v = |c, m, value: &[u8]| StoredValue {
        create_revision: c,
        mod_revision: m,
        value: value.to_vec(),
    };
    let records = [
        HistoryRecord { key: "/a".into(), next: Some(v(3, 3, b"x")), prev: None },
        HistoryRecord { key: "/a".into(), next: Some(v(3, 4, b"")), prev: Some(v(3, 3, b"x")) },
        HistoryRecord { key: "/a".into(), next: None, prev: Some(v(3, 4, b"y")) },
    ];
    for record in records {
        let raw = record.encode();
        assert_eq!(HistoryRecord::decode(&raw).expect("decode"), record);
        assert_eq!(HistoryRecord::peek_key(&raw).expect("key"), b"/a");
        // The event encoding is the same bytes.
        let event = record.clone().into_event(4);
        assert_eq!(HistoryRecord::encode_event(&event), raw);
        assert!(HistoryRecord::decode(&raw[..raw.len() - 1]).is_err());
    }
}

const CRASH_DIR_ENV: &str = "SKIFF_STORE_CRASH_CHILD_DIR";

/// The child half of the SIGKILL test: with the env var set, writes keys forever, printing
/// each acknowledged write. Without it (a normal test run) it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_should_write_until_killed() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else { return };
    let store = open(Path::new(&dir)).await;
    for i in 0u64.. {
        let kv = store
            .create(&format!("/crash/{i:06}"), i.to_be_bytes().to_vec())
            .await
            .expect("create");
        println!("acked {} {}", kv.key, kv.mod_revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_should_keep_acknowledged_writes_after_sigkill() {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "tests::crash_child_should_write_until_killed",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked = Vec::new();
    while acked.len() < 200 {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("child output before deadline")
            .expect("read child output")
            .expect("child exited early");
        // libtest may print "test <name> ... " before the first line of output.
        if let Some(rest) = line.find("acked ").map(|at| &line[at + "acked ".len()..]) {
            let (key, revision) = rest.split_once(' ').expect("acked line");
            acked.push((key.to_owned(), revision.parse::<u64>().expect("revision")));
        }
    }
    child.start_kill().expect("SIGKILL child");
    child.wait().await.expect("reap child");

    let store = open(dir.path()).await;
    for (key, revision) in &acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{key} lost after SIGKILL"));
        assert_eq!(kv.mod_revision, *revision);
    }
    // History survived too: a watch from the start replays every acknowledged write once.
    let mut stream = store.watch("/crash/", 0).await.expect("watch from the start");
    for (key, revision) in &acked {
        let ev = next_event(&mut stream).await.expect("history event");
        assert_eq!((ev.key(), ev.revision()), (Some(key.as_str()), *revision));
    }
    let next = store.create("/crash/after", vec![]).await.expect("create after crash");
    assert!(next.mod_revision > acked.last().map_or(0, |(_, r)| *r));
    store.shutdown().await;
}
