//! Benchmark: start `skiff server`, create N sleeping Wasm pods through the HTTPS API, and print
//! the time until all are Running and the server's resident memory.
//!
//! `skiff-bench-pods --skiff target/release/skiff --guest test-guest.wasip1.wasm --pods 1000`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use skiff_bench::{NodeWait, Server};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// A guest that understands `sleep SECONDS` (tests/guests).
    #[arg(long)]
    guest: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::builder(&args.skiff, &format!("skiff-bench-{}", std::process::id()))
        .image(&args.guest, "bench-guest:1")
        .node("bench", NodeWait::Registered, Duration::from_secs(30))
        .start()
        .await?;
    let startup = server.started_in();
    let client = server.client().clone();
    let rss_idle = server.rss_kib();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let n = args.pods;
    let watch_pods = pods.clone();
    let running = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut stream = watcher::watcher(watch_pods, watcher::Config::default()).boxed();
        while let Some(ev) = stream.try_next().await? {
            if let Event::Apply(p) | Event::InitApply(p) = ev
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            {
                seen.insert(p.metadata.name.unwrap_or_default());
                if seen.len() >= n {
                    return Ok::<_, anyhow::Error>(Instant::now());
                }
            }
        }
        bail!("watch ended early")
    });
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("sleeper-{i}")},
                    "spec": {"runtimeClassName": "wasmtime", "containers": [{"name": "main", "image": "bench-guest:1", "args": ["sleep", "3600"]}]}
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let created = t0.elapsed();
    let all_running = tokio::time::timeout(Duration::from_secs(300), running)
        .await
        .context("pods not Running within 300 s")???;
    let to_running = all_running - t0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = server.rss_kib();
    let hwm = server.peak_rss_kib();
    println!(
        "skiff-bench-pods: {n} Wasm pods (guest sleeping), {} concurrent creates",
        args.concurrency
    );
    println!("  server ready after start         {:>8.0} ms", startup.as_secs_f64() * 1e3);
    println!("  create {n} pods (API)            {:>8.0} ms", created.as_secs_f64() * 1e3);
    println!(
        "  all {n} pods Running             {:>8.0} ms  (target < 10000 ms)",
        to_running.as_secs_f64() * 1e3
    );
    println!("  server RSS idle before pods      {:>8.1} MiB", rss_idle as f64 / 1024.0);
    println!(
        "  server RSS with {n} pods         {:>8.1} MiB  (target < 200 MiB)",
        rss as f64 / 1024.0
    );
    println!("  server peak RSS (VmHWM)          {:>8.1} MiB", hwm as f64 / 1024.0);
    drop(server);
    Ok(())
}
