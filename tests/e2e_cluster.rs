//! End-to-end: a 3-member control plane of real `skiff server` processes on loopback
//! (port 0 everywhere), joined with the token, under a leader SIGKILL, a restart from the
//! data dir, and a member wiped and re-joined that must catch up from a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// `serial()` holds a std mutex for a whole test on purpose: e2e tests run one at a time.
#![allow(clippy::await_holding_lock)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use support::{ready_lines, serial, skiff_bin};

const NAMESPACE: &str = "default";

/// One `skiff server --disable-agent` process.
struct Member {
    child: Option<Child>,
    name: String,
    dir: PathBuf,
    log: PathBuf,
    url: String,
    kubeconfig: PathBuf,
    peer_url: String,
}

impl Member {
    /// Start a member on free ports; `extra` adds flags (e.g. `--join`). Waits for READY.
    fn start(root: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Member {
        Self::try_start(root, name, extra, env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(
        root: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Member, String> {
        let dir = root.join(name);
        let log = root.join(format!("{name}.log"));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = Command::new(skiff_bin());
        command
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--disable-agent",
                "--node-ip",
                "127.0.0.1",
            ])
            .args(["--node-name", name, "--data-dir"])
            .arg(&dir)
            .args(extra)
            .env("SKIFF_LOG", "info,openraft=warn,kube=warn")
            .env_remove("SKIFF_TOKEN")
            // Errors stay readable in the log tails this test prints.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning skiff server");
        let rx = ready_lines(&mut child);
        let deadline = Instant::now() + Duration::from_secs(120);
        let ready = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{name} not ready in 120 s:\n{}", tail(&log, 30)));
                }
                Err(_) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        let status = child.wait().expect("reaping");
                        return Err(format!("{name} exited with {status}:\n{}", tail(&log, 30)));
                    }
                }
            }
        };
        let fields: Vec<&str> = ready.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "READY <url> <kubeconfig> <peer url>: {ready}");
        Ok(Member {
            child: Some(child),
            name: name.to_string(),
            dir,
            log,
            url: fields[0].to_string(),
            kubeconfig: PathBuf::from(fields[1]),
            peer_url: fields[2].to_string(),
        })
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping");
        }
    }

    async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- last lines of {} ----\n{}", self.name, tail(&self.log, 40));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn get_json(client: &kube::Client, path: &str) -> kube::Result<Value> {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client.request::<Value>(request).await
}

/// `/skiff/v1/members` as this member sees it.
async fn members(client: &kube::Client) -> kube::Result<Value> {
    get_json(client, "/skiff/v1/members").await
}

async fn metric(client: &kube::Client, name: &str) -> Option<u64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every member reports the same three voters and the same leader.
async fn assert_three_voters(clients: &[kube::Client]) -> u64 {
    let mut leader = None;
    for client in clients {
        let m = members(client).await.expect("members");
        let all = m["members"].as_array().expect("members list");
        assert_eq!(all.len(), 3, "{m}");
        assert!(all.iter().all(|x| x["voter"] == true), "not all voters: {m}");
        let l = m["leader"].as_u64().expect("a leader");
        assert!(leader.is_none() || leader == Some(l), "members disagree on the leader: {m}");
        leader = Some(l);
    }
    leader.expect("leader")
}

fn start_cluster(root: &Path, env: &[(&str, &str)]) -> (Vec<Member>, String) {
    let first = Member::start(root, "m1", &[], env);
    let token = std::fs::read_to_string(first.dir.join("token")).expect("DATA_DIR/token");
    assert_eq!(token.lines().count(), 1, "the token file is one line");
    let token = token.trim().to_string();
    let mut all = vec![first];
    for name in ["m2", "m3"] {
        let join = all[0].url.clone();
        all.push(Member::start(root, name, &["--join", &join, "--token", &token], env));
    }
    (all, token)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Change {
    name: String,
    revision: u64,
    holder: String,
}

impl Change {
    fn of(lease: &Lease) -> Change {
        Change {
            name: lease.metadata.name.clone().unwrap_or_default(),
            revision: lease
                .metadata
                .resource_version
                .as_deref()
                .and_then(|rv| rv.parse().ok())
                .expect("numeric resourceVersion"),
            holder: lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default(),
        }
    }
}

struct Ack {
    change: Change,
    started: Instant,
    finished: Instant,
}

/// Whether an error means "this member cannot serve now, try another one".
fn try_elsewhere(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code >= 500,
        _ => true,
    }
}

/// One writer: compare-and-swap updates of `name` until `target` writes were acknowledged in
/// total, moving to another member whenever one fails.
async fn writer(
    id: usize,
    name: String,
    apis: Arc<Vec<Api<Lease>>>,
    acked: Arc<AtomicUsize>,
    target: usize,
    acks: Arc<Mutex<Vec<Ack>>>,
    ambiguous: Arc<AtomicUsize>,
) {
    let mut member = id % apis.len();
    let mut seq = 0;
    let give_up = Instant::now() + Duration::from_secs(300);
    while acked.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < give_up, "writer {id} made no progress");
        let api = &apis[member];
        let current = match api.get(&name).await {
            Ok(lease) => lease,
            Err(e) if try_elsewhere(&e) => {
                member = (member + 1) % apis.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => panic!("writer {id}: get {name}: {e}"),
        };
        seq += 1;
        let holder = format!("w{id}-{seq}");
        let mut next = current.clone();
        next.spec.get_or_insert_with(LeaseSpec::default).holder_identity = Some(holder.clone());
        let started = Instant::now();
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(written) => {
                let change = Change::of(&written);
                assert_eq!(change.holder, holder, "the answer carries what was written");
                acks.lock().unwrap().push(Ack { change, started, finished: Instant::now() });
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) if try_elsewhere(&e) => {
                // Maybe applied, maybe not: it is not acknowledged, so it is not counted.
                ambiguous.fetch_add(1, Ordering::Relaxed);
                member = (member + 1) % apis.len();
            }
            Err(e) => panic!("writer {id}: replace {name}: {e}"),
        }
    }
}

/// Follow lease changes from `from` through `apis[first]`, resuming from the last revision
/// seen on the next member whenever the stream breaks, until `stop` is set and `until()`
/// has been reached. Returns every change seen, in order.
async fn watcher(
    apis: Arc<Vec<Api<Lease>>>,
    first: usize,
    from: u64,
    stop: Arc<AtomicBool>,
    until: Arc<Mutex<u64>>,
) -> (Vec<Change>, usize) {
    let mut seen = Vec::new();
    let mut last = from;
    let mut member = first;
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        if stop.load(Ordering::SeqCst) && last >= *until.lock().unwrap() {
            return (seen, reconnects);
        }
        assert!(Instant::now() < deadline, "watcher never caught up (at {last})");
        let params = WatchParams::default().timeout(120);
        let stream = match apis[member].watch(&params, &last.to_string()).await {
            Ok(s) => s,
            Err(e) => {
                assert!(try_elsewhere(&e), "watch from {last} refused: {e}");
                member = (member + 1) % apis.len();
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        futures::pin_mut!(stream);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
            let event = match next {
                // Quiet for a while: check whether we are done, then keep waiting.
                Err(_) if stop.load(Ordering::SeqCst) && last >= *until.lock().unwrap() => {
                    return (seen, reconnects);
                }
                Err(_) => continue,
                Ok(Some(Ok(event))) => event,
                Ok(Some(Err(_)) | None) => {
                    // The member went away (or ended the watch): resume elsewhere.
                    member = (member + 1) % apis.len();
                    reconnects += 1;
                    break;
                }
            };
            match event {
                WatchEvent::Added(lease) | WatchEvent::Modified(lease) => {
                    let change = Change::of(&lease);
                    assert!(
                        change.revision > last,
                        "watch went backwards: {change:?} after {last}"
                    );
                    last = change.revision;
                    seen.push(change);
                }
                WatchEvent::Deleted(lease) => {
                    panic!("unexpected delete of {:?}", lease.metadata.name)
                }
                WatchEvent::Bookmark(b) => {
                    last = last.max(b.metadata.resource_version.parse().unwrap_or(last));
                }
                WatchEvent::Error(status) => {
                    panic!("watch from {last} on member {member} failed: {status:?}")
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_keep_acknowledged_cas_writes_through_a_leader_sigkill() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let (mut cluster, _token) = start_cluster(root.path(), &[]);
    let mut clients = Vec::new();
    for m in &cluster {
        clients.push(m.client().await);
    }
    let leader = assert_three_voters(&clients).await;
    assert_eq!(leader, 1, "the member that formed the cluster leads it");
    let ids: Vec<u64> = {
        let mut ids = Vec::new();
        for c in &clients {
            ids.push(members(c).await.unwrap()["self"].as_u64().unwrap());
        }
        ids
    };
    assert_eq!(ids, [1, 2, 3]);

    // 24 leases, 48 writers: two writers race on each lease, so CAS conflicts are real.
    const LEASES: usize = 24;
    const WRITERS: usize = 48;
    const WRITES: usize = 1_000;
    let apis: Arc<Vec<Api<Lease>>> =
        Arc::new(clients.iter().map(|c| Api::namespaced(c.clone(), NAMESPACE)).collect());
    for i in 0..LEASES {
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("cas-{i}")),
                ..Default::default()
            },
            spec: Some(LeaseSpec { holder_identity: Some("init".into()), ..Default::default() }),
        };
        apis[0].create(&PostParams::default(), &lease).await.expect("create lease");
    }
    let start_rv: u64 = apis[1]
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();

    // The watcher starts on the leader, which is about to die.
    let stop = Arc::new(AtomicBool::new(false));
    let until = Arc::new(Mutex::new(u64::MAX));
    let watch = tokio::spawn(watcher(apis.clone(), 0, start_rv, stop.clone(), until.clone()));

    let acked = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let ambiguous = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                format!("cas-{}", w % LEASES),
                apis.clone(),
                acked.clone(),
                WRITES,
                acks.clone(),
                ambiguous.clone(),
            ))
        })
        .collect();

    // Partway through, SIGKILL the leader.
    wait_for("300 acknowledged writes", Duration::from_secs(120), || {
        let n = acked.load(Ordering::SeqCst);
        async move { n >= 300 }
    })
    .await;
    // Whoever leads now (member i has node id i + 1): normally still m1, where the watcher is.
    let old_leader =
        members(&clients[1]).await.expect("members")["leader"].as_u64().expect("leader");
    let old_term = metric(&clients[1], "skiff_store_term").await.expect("term");
    let victim = usize::try_from(old_leader - 1).unwrap();
    cluster[victim].kill9();
    let killed = Instant::now();
    let acked_at_kill = acked.load(Ordering::SeqCst);
    let witness = &clients[(victim + 1) % 3];
    let new_leader = loop {
        let leader = members(witness).await.ok().and_then(|m| m["leader"].as_u64());
        if leader.is_some_and(|l| l != old_leader) {
            break leader;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no new leader within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elected_after = killed.elapsed();
    let new_term = metric(witness, "skiff_store_term").await.expect("term");

    for w in writers {
        w.await.expect("writer");
    }
    let elapsed = began.elapsed();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert!(acks.len() >= WRITES, "{} acknowledged", acks.len());

    // Time to the first write served after the kill: a write sent after the leader died can
    // only have been committed by a new one.
    let first_after_kill = acks
        .iter()
        .filter(|a| a.started > killed)
        .map(|a| a.finished.duration_since(killed))
        .min()
        .expect("writes were acknowledged after the kill");
    eprintln!(
        "cluster: {} writes acknowledged in {elapsed:?} ({acked_at_kill} before the SIGKILL), \
         {} ambiguous; leader {old_leader} (term {old_term}) killed, new leader {new_leader:?} \
         (term {new_term}) visible {elected_after:?} after the kill; first write acknowledged \
         by a survivor {first_after_kill:?} after the kill",
        acks.len(),
        ambiguous.load(Ordering::Relaxed),
    );
    assert!(
        first_after_kill < Duration::from_secs(2),
        "no write was served within 2 s of the kill (first after {first_after_kill:?})"
    );

    // No revision handed out twice.
    let mut revisions = HashSet::new();
    for a in &acks {
        assert!(
            revisions.insert(a.change.revision),
            "revision {} acknowledged twice",
            a.change.revision
        );
    }

    // The watcher, which lost its member at the kill and resumed from its last revision on
    // another, sees every change once, in order, including every acknowledged write.
    // The last lease change is the newest revision among the leases (the store's revision
    // may be higher: elections and membership changes are log entries too).
    let listed = apis[1].list(&ListParams::default()).await.expect("list");
    let final_rv = listed.items.iter().map(|l| Change::of(l).revision).max().expect("leases");
    *until.lock().unwrap() = final_rv;
    stop.store(true, Ordering::SeqCst);
    let (seen, reconnects) = watch.await.expect("watcher");
    assert!(reconnects >= 1, "the watcher never had to reconnect");
    let seen_set: HashSet<&Change> = seen.iter().collect();
    assert_eq!(seen_set.len(), seen.len(), "the watcher saw a change twice");
    for a in &acks {
        assert!(seen_set.contains(&a.change), "acknowledged {:?} missing from the watch", a.change);
    }

    // Every acknowledged write is in the history: an independent watch from the start
    // revision on another member replays exactly what the first watcher saw.
    let replay_stop = Arc::new(AtomicBool::new(true));
    let replay_until = Arc::new(Mutex::new(final_rv));
    let (replayed, _) = watcher(apis.clone(), 2, start_rv, replay_stop, replay_until).await;
    assert_eq!(replayed, seen, "two watches of the same history differ");

    // The final state is the last change of each lease.
    let mut last_of: BTreeMap<String, Change> = BTreeMap::new();
    for c in &seen {
        last_of.insert(c.name.clone(), c.clone());
    }
    for lease in &listed.items {
        let now = Change::of(lease);
        if let Some(last) = last_of.get(&now.name) {
            assert_eq!(&now, last, "state disagrees with history");
        }
    }

    // The killed member restarts from its data dir (no --join) and catches up on everything
    // written while it was down. Its peer port is a new one (port 0): it tells the cluster.
    let restart = Instant::now();
    let back = Member::start(root.path(), &cluster[victim].name.clone(), &[], &[]);
    assert_ne!(back.peer_url, cluster[victim].peer_url);
    let back_client = back.client().await;
    let survivor = &clients[(victim + 1) % 3];
    let target = metric(survivor, "skiff_store_applied_index").await.expect("applied index");
    wait_for("the restarted member to apply what it missed", Duration::from_secs(60), || {
        let fut = metric(&back_client, "skiff_store_applied_index");
        async move { fut.await.is_some_and(|a| a >= target) }
    })
    .await;
    eprintln!(
        "cluster: the restarted member caught up {:?} after it was started",
        restart.elapsed()
    );
    let back_api: Api<Lease> = Api::namespaced(back_client.clone(), NAMESPACE);
    let listed_back =
        back_api.list(&ListParams::default()).await.expect("list on restarted member");
    let by_name: HashMap<_, _> =
        listed.items.iter().map(|l| (l.metadata.name.clone(), Change::of(l))).collect();
    for lease in &listed_back.items {
        assert_eq!(Some(&Change::of(lease)), by_name.get(&lease.metadata.name));
    }
    let recorded = members(survivor).await.expect("members");
    let recorded =
        recorded["members"].as_array().unwrap().iter().find(|m| m["id"] == old_leader).cloned();
    assert_eq!(recorded.map(|m| m["peerUrl"].clone()), Some(Value::from(back.peer_url.clone())));
    cluster[victim] = back;
    clients[victim] = back_client;
    assert_three_voters(&clients).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_should_catch_up_a_wiped_member_from_a_snapshot() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // Snapshot often and keep little log behind it, so a new member cannot be fed from the log.
    let env = [("SKIFF_SNAPSHOT_EVERY", "50"), ("SKIFF_LOGS_KEPT_AFTER_SNAPSHOT", "10")];
    let (mut cluster, token) = start_cluster(root.path(), &env);
    let mut clients = Vec::new();
    for m in &cluster {
        clients.push(m.client().await);
    }
    assert_three_voters(&clients).await;
    let api: Api<Lease> = Api::namespaced(clients[0].clone(), NAMESPACE);
    let lease = |i: usize| Lease {
        metadata: kube::api::ObjectMeta { name: Some(format!("snap-{i}")), ..Default::default() },
        spec: Some(LeaseSpec { holder_identity: Some(format!("h{i}")), ..Default::default() }),
    };
    futures::stream::iter(0..200)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &lease(i)).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("creates");

    // A wrong token is refused before anything changes.
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let refused = Member::try_start(
        root.path(),
        "intruder",
        &["--join", &cluster[0].url, "--token", &wrong],
        &env,
    );
    let message = refused.err().expect("a wrong token must not join");
    assert!(message.contains("wrong join token secret"), "{message}");
    assert_three_voters(&clients).await;

    // Remove member 3, kill it, wipe its data dir.
    let request = http::Request::delete("/skiff/v1/members/3").body(Vec::new()).unwrap();
    clients[0].request_text(request).await.expect("remove member 3");
    cluster[2].kill9();
    std::fs::remove_dir_all(&cluster[2].dir).expect("wiping m3");
    wait_for("two members left", Duration::from_secs(10), || {
        let fut = members(&clients[1]);
        async move { fut.await.ok().and_then(|m| m["members"].as_array().map(Vec::len)) == Some(2) }
    })
    .await;
    futures::stream::iter(200..300)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &lease(i)).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("creates with two members");
    let leader_snapshot = metric(&clients[0], "skiff_store_snapshot_index").await.unwrap_or(0);
    assert!(leader_snapshot > 0, "the leader never snapshotted");

    // It joins again, empty, under a new id, and must be sent a snapshot.
    let started = Instant::now();
    let rejoined =
        Member::start(root.path(), "m3", &["--join", &cluster[1].url, "--token", &token], &env);
    let joined_after = started.elapsed();
    let client = rejoined.client().await;
    let me = members(&client).await.expect("members");
    let id = me["self"].as_u64().unwrap();
    assert!(id > 3, "a wiped member gets a new id, got {id}");
    let received = metric(&client, "skiff_store_snapshots_received_total").await.unwrap_or(0);
    assert!(received >= 1, "the wiped member caught up without a snapshot");
    let rejoined_api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let early = rejoined_api.get("snap-3").await.expect("an early write on the re-joined member");
    assert_eq!(early.spec.and_then(|s| s.holder_identity).as_deref(), Some("h3"));
    assert_eq!(rejoined_api.list(&ListParams::default()).await.expect("list").items.len(), 300);
    eprintln!(
        "cluster: the wiped member re-joined as {id} and caught up (snapshot) in {joined_after:?}"
    );
    cluster[2] = rejoined;
    clients[2] = client;
    assert_three_voters(&clients).await;
}

/// The holder of the controller manager's Lease, read through `client`.
async fn controller_lease(client: &kube::Client) -> Option<(String, i32)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let spec = leases.get_opt("kube-controller-manager").await.ok()??.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

/// Only the member holding the `kube-system/kube-controller-manager` Lease runs the
/// controllers; when it dies another member takes the Lease over and starts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_manager_should_run_on_one_member_and_move_when_it_dies() {
    let _serial = serial();
    let root = tempfile::tempdir().expect("tempdir");
    let (mut cluster, _token) = start_cluster(root.path(), &[]);
    let mut clients = Vec::new();
    for m in &cluster {
        clients.push(m.client().await);
    }
    let holder_index = |cluster: &[Member], holder: &str| {
        cluster.iter().position(|m| holder.starts_with(&format!("{}_", m.name)))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(found) = controller_lease(&clients[0]).await {
            break found;
        }
        assert!(Instant::now() < deadline, "no controller manager lease holder within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (holder, transitions) = first;
    let leading =
        holder_index(&cluster, &holder).unwrap_or_else(|| panic!("unknown holder {holder}"));
    let leads = |m: &Member| {
        std::fs::read_to_string(&m.log).unwrap_or_default().contains("leading: controllers start")
    };
    for (i, m) in cluster.iter().enumerate() {
        assert_eq!(leads(m), i == leading, "{}: only the holder {holder} runs controllers", m.name);
    }

    // The `kubernetes` Service's endpoints list every live member (here all on 127.0.0.1, one
    // port each), and drop a member that stops renewing its apiserver Lease.
    let member_ports = |client: kube::Client| async move {
        let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, "default");
        let mut ports: Vec<i32> = eps
            .get("kubernetes")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.ports.iter().flatten().map(|p| p.port))
            .collect();
        ports.sort();
        ports
    };
    let port_of = |m: &Member| -> i32 {
        m.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("member port")
    };
    let mut all_ports: Vec<i32> = cluster.iter().map(port_of).collect();
    all_ports.sort();
    let c0 = clients[0].clone();
    let want = all_ports.clone();
    wait_for("the kubernetes endpoints to list all three members", Duration::from_secs(30), || {
        let (c, want) = (c0.clone(), want.clone());
        async move { member_ports(c).await == want }
    })
    .await;

    cluster[leading].kill9();
    let witness = clients[(leading + 1) % 3].clone();
    let gone = port_of(&cluster[leading]);
    let left: Vec<i32> = all_ports.iter().copied().filter(|p| *p != gone).collect();
    let w = witness.clone();
    wait_for(
        "the killed member to leave the kubernetes endpoints",
        Duration::from_secs(60),
        || {
            let (c, left) = (w.clone(), left.clone());
            async move { member_ports(c).await == left }
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = loop {
        if let Some(found) = controller_lease(&witness).await.filter(|(h, _)| *h != holder) {
            break found;
        }
        assert!(Instant::now() < deadline, "no other member took the lease within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (new_holder, new_transitions) = next;
    let now_leading = holder_index(&cluster, &new_holder)
        .unwrap_or_else(|| panic!("unknown holder {new_holder}"));
    assert_ne!(now_leading, leading);
    assert_eq!(new_transitions, transitions + 1, "leaseTransitions counts the handover");
    wait_for("the new holder to start its controllers", Duration::from_secs(10), || {
        let started = leads(&cluster[now_leading]);
        async move { started }
    })
    .await;
    let third = (0..3).find(|&i| i != leading && i != now_leading).expect("third member");
    assert!(!leads(&cluster[third]), "the member without the lease runs no controllers");
}
