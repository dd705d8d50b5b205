//! Scale: a real `skiff server` with 1,000 watchers over HTTPS and a few watchers that never
//! read. The fast watchers must each see every event, in order; the stuck ones must not make
//! the server hold what they do not read (its memory stays bounded), and end with 410.

// The serial guard is held for the whole test on purpose: end-to-end tests run one at a time.
#![allow(clippy::await_holding_lock)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use http::Request;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use support::{Skiff, serial};

async fn client(s: &Skiff) -> Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

async fn create(client: &Client, ns: &str, name: &str, data: &str) {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"v": data}});
    let req = Request::post(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    client.request_text(req).await.unwrap_or_else(|e| panic!("create {ns}/{name}: {e}"));
}

/// The server's resident memory; it is alive, so it has some.
fn rss_kib(pid: u32) -> u64 {
    let rss = skiff_bench::procfs::rss_kib(pid);
    assert!(rss > 0, "no VmRSS for pid {pid}");
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_see_every_event_while_stuck_watchers_are_bounded_and_dropped() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    // A window of 1,024 events: the stuck watchers fall out of it within this test.
    let s = Skiff::start_with(dir.path(), &["--default-watch-cache-size", "1024"]);
    let c = client(&s).await;
    for ns in ["fast", "stuck"] {
        let req = Request::post("/api/v1/namespaces")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&json!({"metadata": {"name": ns}})).expect("json"))
            .expect("request");
        c.request_text(req).await.expect("namespace");
    }

    let inflight = || async {
        let metrics = c
            .request_text(Request::get("/metrics").body(Vec::new()).expect("request"))
            .await
            .expect("metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("apiserver_longrunning_requests "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("apiserver_longrunning_requests") as usize
    };
    // The server's own components (controllers, scheduler, node) watch too.
    let baseline = inflight().await;
    const WATCHERS: usize = 1000;
    const FAST_EVENTS: usize = 50;
    let watch = |ns: &str| {
        Request::get(format!("/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion=0"))
            .body(Vec::new())
            .expect("request")
    };
    let mut fast = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        let c = c.clone();
        let req = watch("fast");
        fast.push(tokio::spawn(async move {
            let mut lines = Box::pin(c.request_stream(req).await.expect("watch")).lines();
            let (mut names, mut last) = (Vec::new(), 0u64);
            while names.len() < FAST_EVENTS {
                let line = tokio::time::timeout(Duration::from_secs(300), lines.next())
                    .await
                    .expect("an event within 300 s")
                    .expect("the watch stays open")
                    .expect("a line");
                let ev: Value = serde_json::from_str(&line).expect("JSON line");
                assert_eq!(ev["type"], "ADDED", "{line}");
                let rv: u64 = ev["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .expect("rv");
                assert!(rv > last, "out of order: {rv} after {last}");
                last = rv;
                // Every namespace also gets the cluster CA's ConfigMap, whenever it lands.
                let name = ev["object"]["metadata"]["name"].as_str().expect("name");
                if name != "kube-root-ca.crt" {
                    names.push(name.to_string());
                }
            }
            names
        }));
    }
    // Watchers that never read what they are sent.
    let mut stuck = Vec::new();
    for _ in 0..8 {
        stuck.push(Box::pin(c.request_stream(watch("stuck")).await.expect("stuck watch")));
    }
    // Every watch is registered once the inflight gauge counts them all.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open = inflight().await;
        if open >= baseline + WATCHERS + stuck.len() {
            break;
        }
        assert!(Instant::now() < deadline, "only {open} watches open after 300 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_before = rss_kib(s.pid());

    // 3,000 objects of 16 KiB for the stuck watchers (48 MiB: each would hold all of it if
    // the server buffered for them), with the fast watchers' events among them.
    let big = Arc::new("x".repeat(16 * 1024));
    let c2 = c.clone();
    futures::stream::iter(0..3000usize)
        .for_each_concurrent(16, |i| {
            let (c, big) = (c2.clone(), big.clone());
            async move {
                create(&c, "stuck", &format!("big-{i}"), &big).await;
                if i % 60 == 0 {
                    create(&c, "fast", &format!("f-{}", i / 60), "small").await;
                }
            }
        })
        .await;
    let rss_after = rss_kib(s.pid());

    let want: BTreeSet<String> = (0..FAST_EVENTS).map(|i| format!("f-{i}")).collect();
    for (i, w) in fast.into_iter().enumerate() {
        let names = w.await.expect("fast watcher");
        assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), want, "watcher {i}");
    }
    let grown_mib = (rss_after.saturating_sub(rss_before)) / 1024;
    eprintln!("server VmRSS {} MiB -> {} MiB", rss_before / 1024, rss_after / 1024);
    // The objects themselves (48 MiB in the store and the cache) and the cache's window are
    // expected (with RocksDB's memtables and history, 230-310 MiB in runs); 8 stuck watchers
    // holding everything would add 8 × 48 MiB more.
    assert!(grown_mib < 450, "server memory grew by {grown_mib} MiB with stuck watchers");

    // Once read, a stuck watcher's stream ends with 410: it has to list again.
    let mut lines = stuck.swap_remove(0).lines();
    let mut added = 0;
    let end = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next())
            .await
            .expect("the stuck watch answers within 60 s")
            .expect("the stream ends with an error event, not silently")
            .expect("a line");
        let ev: Value = serde_json::from_str(&line).expect("JSON line");
        if ev["type"] != "ADDED" {
            break ev;
        }
        added += 1;
    };
    eprintln!("the stuck watcher got {added} events before its 410");
    assert!(added < 3000, "the stuck watcher was kept all {added} events");
    assert_eq!(end["type"], "ERROR", "{end}");
    assert_eq!(end["object"]["code"], 410, "{end}");
}
