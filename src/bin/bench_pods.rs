//! Benchmark: start `skiff server`, create N sleeping Wasm pods through the HTTPS API, and print
//! the time until all are Running and the server's resident memory.
//!
//! `skiff-bench-pods --skiff target/release/skiff --guest test-guest.wasip1.wasm --pods 1000`

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};

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

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field).map(|v| v.trim().trim_end_matches("kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let import = Command::new(&args.skiff)
        .args(["images", "import", "--name", "bench-guest:1", "--data-dir"])
        .arg(&dir)
        .arg(&args.guest)
        .status()?;
    if !import.success() {
        bail!("image import failed");
    }
    let t_start = Instant::now();
    let mut child = Command::new(&args.skiff)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "bench",
            "--node-ip",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(&dir)
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting skiff server")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("READY ") => break l,
            Some(_) => continue,
            None => bail!("server exited before it was ready"),
        }
    };
    let startup = t_start.elapsed();
    let kubeconfig = PathBuf::from(ready.split_whitespace().nth(2).context("kubeconfig path")?);
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.get_opt("bench").await?.is_none() {
        if Instant::now() > deadline {
            bail!("node did not register");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = rss_kib(pid, "VmRSS:");

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
    let rss = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
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
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
