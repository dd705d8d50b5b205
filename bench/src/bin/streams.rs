//! Benchmark of `kubectl exec`: the round trip of `kubectl exec POD -- CMD` (a new kubectl
//! process each time, as a user or a script runs it) for a Wasm pod and an OCI pod, next to
//! - the floor of any kubectl command: `kubectl get --raw /version` (process start, config,
//!   TLS, one request), and
//! - the peer for the OCI pod: the same exec straight to containerd with `ctr tasks exec`
//!   (no Kubernetes in the path).
//!
//! Runs are sequential and bounded (`--count` each). Everything stays on loopback.
//!
//! `skiff-bench-streams --skiff target/release/skiff --guests-dir GUESTS --kubectl .tools/bin/kubectl --with-containerd`

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use skiff_bench::containerd::start_containerd;
use skiff_bench::pods::pod;
use skiff_bench::{Goal, Latencies, NodeWait, Server, ms};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// Where scripts/build-guests.sh put the guests (test-guest.wasip1.wasm).
    #[arg(long, env = "SKIFF_GUESTS_DIR")]
    guests_dir: PathBuf,
    /// The kubectl to drive.
    #[arg(long)]
    kubectl: PathBuf,
    /// Round trips per measurement.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Start an isolated containerd (scripts/containerd.sh) for the OCI pod.
    #[arg(long)]
    with_containerd: bool,
    /// The script that runs containerd.
    #[arg(long, default_value = "scripts/containerd.sh")]
    containerd_script: PathBuf,
    /// Target: p99 of `kubectl exec` into a Wasm pod, end to end (ms).
    #[arg(long, default_value_t = 50.0)]
    target_wasm_p99_ms: f64,
}

/// Run `cmd` `count` times; the wall time of each run (every run must succeed).
fn time_runs(
    what: &str,
    count: usize,
    mut cmd: impl FnMut() -> Command,
) -> anyhow::Result<Latencies> {
    let mut sample = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let out = cmd().stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!(
                "{what} (run {i}) failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        sample.push(took);
    }
    Ok(Latencies::new(sample))
}

fn row(name: &str, l: &Latencies) {
    println!(
        "  {name:<44} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   (n={})",
        ms(l.p50()),
        ms(l.p99()),
        ms(l.max()),
        l.len()
    );
}

async fn wait_running(pods: &Api<Pod>, name: &str) -> anyhow::Result<Pod> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(p) = pods.get(name).await {
            let running = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some());
            if running {
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("pod {name} did not run within 120 s")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let guest = args.guests_dir.join("test-guest.wasip1.wasm");
    let containerd = if args.with_containerd {
        println!("Starting containerd ({} start) ...", args.containerd_script.display());
        Some(start_containerd(&args.containerd_script, "sbs")?)
    } else {
        None
    };
    let mut extra: Vec<String> = vec!["--cluster-cidr".into(), "10.251.0.0/16".into()];
    if let Some((_, sock)) = &containerd {
        extra.extend(["--container-runtime-endpoint".into(), format!("unix://{}", sock.display())]);
    }
    let server = Server::builder(&args.skiff, "streams")
        .node("bench", NodeWait::Ready, Duration::from_secs(60))
        .image(&guest, "test-guest:bench")
        .args(extra)
        .log_to_file()
        .start()
        .await?;
    let kubeconfig = server.dir().join("kubeconfig.yaml");
    let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("wasm", "wasmtime", "test-guest:bench", &["guest", "sleep", "3600"])?,
    )
    .await?;
    wait_running(&pods, "wasm").await?;
    let kubectl = |extra: &[&str]| {
        let mut c = Command::new(&args.kubectl);
        c.arg("--kubeconfig").arg(&kubeconfig).args(extra);
        c
    };
    println!();
    println!(
        "kubectl exec round trip, a new kubectl process per run ({} runs each, sequential)",
        args.count
    );
    // Warm up: the first run pays for kubectl's discovery cache and the module's first instance.
    for _ in 0..3 {
        let _ = kubectl(&["exec", "wasm", "--", "guest", "exit", "0"]).output();
    }
    let floor = time_runs("kubectl get --raw /version", args.count, || {
        kubectl(&["get", "--raw", "/version"])
    })?;
    row("floor: kubectl get --raw /version", &floor);
    let wasm = time_runs("kubectl exec wasm", args.count, || {
        kubectl(&["exec", "wasm", "--", "guest", "exit", "0"])
    })?;
    row("kubectl exec wasm -- guest exit 0", &wasm);
    if let Some((_, sock)) = &containerd {
        pods.create(
            &PostParams::default(),
            &pod("oci", "runc", "skiff.local/busybox:1.36", &["sleep", "3600"])?,
        )
        .await?;
        let p = wait_running(&pods, "oci").await?;
        let id = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.container_id)
            .unwrap_or_default()
            .trim_start_matches("containerd://")
            .to_string();
        for _ in 0..3 {
            let _ = kubectl(&["exec", "oci", "--", "true"]).output();
        }
        let oci =
            time_runs("kubectl exec oci", args.count, || kubectl(&["exec", "oci", "--", "true"]))?;
        row("kubectl exec oci -- true", &oci);
        let mut n = 0;
        let ctr = time_runs("ctr tasks exec", args.count, || {
            n += 1;
            let mut c = Command::new("ctr");
            c.arg("--address").arg(sock).args([
                "-n",
                "k8s.io",
                "tasks",
                "exec",
                "--exec-id",
                &format!("bench-{n}"),
                &id,
                "true",
            ]);
            c
        })?;
        row("peer: ctr tasks exec (containerd, no Kubernetes)", &ctr);
        let _ = pods.delete("oci", &Default::default()).await;
        // The container lives in containerd: give the node a moment to stop it before both go.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && pods.get_opt("oci").await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!();
    let p99 = ms(wasm.p99());
    let goal = Goal::at_most(args.target_wasm_p99_ms);
    println!(
        "  Wasm exec p99 {p99:.1} ms {} target {:.0} ms: {}",
        goal.comparison(),
        args.target_wasm_p99_ms,
        goal.verdict(p99)
    );
    println!(
        "  Skiff's share (exec p50 - floor p50): Wasm {:.1} ms",
        ms(wasm.p50()) - ms(floor.p50())
    );
    drop(server);
    drop(containerd);
    Ok(())
}
