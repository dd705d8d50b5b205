//! Benchmark of autoscaling: the first response from zero replicas, the HPA's reaction time,
//! and what collecting 1 s metrics costs.
//!
//! - `cold`: a wasi:http Deployment behind a Service annotated for scale to zero rests at 0
//!   replicas; a client in a namespace of its own (an OCI pod's path: the node's nftables send
//!   the ClusterIP to the activator) sends `GET /` and times the answer. `--cold-starts` times
//!   (default 100), the benchmark scaling the Deployment back to 0 between them. Target: p99
//!   < 50 ms (KEDA's HTTP add-on: ~1.5–3.4 s reported).
//! - `hpa`: an HPA (CPU 50 % of a 100m request, 1–3 replicas, metrics every 1 s, HPA sync every
//!   1 s) on a wasi:http Deployment; a client loads the first pod with `/burn`; the time from
//!   the load's start to 3 Ready replicas, `--hpa-rounds` times. Target: < 3 s (Kubernetes'
//!   default path: 15 s sync + 15 s metrics resolution).
//! - `pipeline`: `--pipeline-pods` idle wasi:http pods on one node; the server's CPU over 30 s
//!   and RSS with the metrics pipeline off (`--metrics-resolution 0s`) and at 1 s, in the same
//!   run. Target: < 5 % of a core and < 50 MB for 5,000 pods.
//!
//! `cold` and `hpa` run in two network namespaces the benchmark makes (root only); nothing is
//! added to the host's namespace and every packet stays inside them. `pipeline` runs on the
//! host's loopback. Everything is removed on every way out.
//!
//! `skiff-bench-autoscale --skiff target/release/skiff --guests-dir GUESTS [--only cold,hpa,pipeline]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_bench::netns::{Net, enter, in_ns};
use skiff_bench::server::{Server, raise_nofile_limit, wasm_server_flags};
use skiff_bench::{Goal, Latencies, NodeWait, ms, procfs};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    skiff: PathBuf,
    #[arg(long, env = "SKIFF_GUESTS_DIR")]
    guests_dir: PathBuf,
    /// Sections to run (comma-separated): cold, hpa, pipeline.
    #[arg(long, default_value = "cold,hpa,pipeline")]
    only: String,
    #[arg(long, default_value_t = 100)]
    cold_starts: usize,
    #[arg(long, default_value_t = 3)]
    hpa_rounds: usize,
    #[arg(long, default_value_t = 5000)]
    pipeline_pods: usize,
    /// The third octet of the /30 between node and client (10.77.N.0/30).
    #[arg(long, default_value_t = 3)]
    subnet: u8,
}

const IMAGE: &str = "hello-http:bench";
const COLD_TARGET_MS: f64 = 50.0;
const HPA_TARGET_S: f64 = 3.0;

/// One HTTP/1.1 GET on a new connection: the status code, from the calling thread's namespace.
fn http_get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    let sa: SocketAddr = addr.parse()?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("not an HTTP answer")
}

/// A Deployment of hello-http pods, each requesting `cpu` (none when empty).
fn deployment(name: &str, replicas: i32, cpu: &str) -> anyhow::Result<Deployment> {
    let requests =
        if cpu.is_empty() { serde_json::json!({}) } else { serde_json::json!({"cpu": cpu}) };
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "http", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": requests},
                    }],
                },
            },
        },
    }))?)
}

async fn apply(client: &kube::Client, obj: serde_json::Value) -> anyhow::Result<()> {
    let req = http::Request::post(match obj["kind"].as_str() {
        Some("Service") => "/api/v1/namespaces/default/services",
        Some("HorizontalPodAutoscaler") => {
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
        }
        _ => bail!("unexpected kind"),
    })
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&obj)?)?;
    client.request::<serde_json::Value>(req).await?;
    Ok(())
}

/// (spec replicas, ready replicas, pods that exist).
async fn state(client: &kube::Client, name: &str) -> anyhow::Result<(i32, i32, usize)> {
    let d = Api::<Deployment>::namespaced(client.clone(), "default").get(name).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await?;
    Ok((
        d.spec.and_then(|s| s.replicas).unwrap_or(0),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        pods.items.len(),
    ))
}

async fn wait_state(
    client: &kube::Client,
    name: &str,
    want: impl Fn((i32, i32, usize)) -> bool,
    within: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let s = state(client, name).await?;
        if want(s) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!(
                "{name} did not reach the wanted state in {within:?} (spec, ready, pods = {s:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scale(client: &kube::Client, name: &str, replicas: i32) -> anyhow::Result<()> {
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

async fn start_in_netns(args: &Args, net: &Net) -> anyhow::Result<Server> {
    let guest = args.guests_dir.join("hello-http.wasip2.wasm");
    if !guest.exists() {
        bail!("{} missing (scripts/build-guests.sh builds it)", guest.display());
    }
    Server::builder(&args.skiff, &format!("{}-server", net.node))
        .in_netns(&net.node, &net.node_ip)
        .args([
            "--node-name",
            "skiff-bench",
            "--node-ip",
            &net.node_ip,
            "--metrics-resolution",
            "1s",
            "--horizontal-pod-autoscaler-sync-period",
            "1s",
        ])
        .image(&guest, IMAGE)
        .log_to_file()
        .start()
        .await
}

async fn section_cold(args: &Args, server: &Server, net: &Net) -> anyhow::Result<()> {
    let client = server.client();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment("sleepy", 0, "10m")?)
        .await?;
    // The benchmark scales it down itself: the idle timeout stays out of the way.
    apply(
        client,
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sleepy", "annotations": {
            "scale-to-zero.skiff.dev/deployment": "sleepy",
            "scale-to-zero.skiff.dev/idle-timeout": "1h"}},
        "spec": {"selector": {"app": "sleepy"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await?;
    let svc: serde_json::Value = client
        .request(http::Request::get("/api/v1/namespaces/default/services/sleepy").body(Vec::new())?)
        .await?;
    let ip = svc["spec"]["clusterIP"].as_str().context("no ClusterIP")?.to_string();
    let addr = format!("{ip}:80");
    let mut times = Vec::new();
    let mut failures = 0;
    for i in 0..args.cold_starts {
        wait_state(
            client,
            "sleepy",
            |(spec, _, pods)| spec == 0 && pods == 0,
            Duration::from_secs(60),
        )
        .await?;
        // Let the proxy see the last endpoint go (its stand-in is then in place).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a = addr.clone();
        let answer = tokio::task::spawn_blocking({
            let ns = net.client.clone();
            move || {
                in_ns(&ns, || {
                    let t = Instant::now();
                    let code = http_get(&a, "/", Duration::from_secs(30))?;
                    Ok((code, t.elapsed()))
                })
            }
        })
        .await?;
        match answer {
            Ok((200, took)) => times.push(took),
            other => {
                failures += 1;
                eprintln!("  cold start {i}: {other:?}");
            }
        }
        scale(client, "sleepy", 0).await?;
    }
    let l = Latencies::new(times);
    println!();
    println!(
        "First response from zero replicas (client namespace -> ClusterIP, nftables -> activator)"
    );
    println!(
        "  {} cold starts, {failures} failed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        ms(l.p50()),
        ms(l.p99()),
        ms(l.max())
    );
    let goal = Goal::at_most(COLD_TARGET_MS);
    println!(
        "  target p99 {} {COLD_TARGET_MS} ms: {}",
        goal.comparison(),
        goal.verdict(ms(l.p99()))
    );
    Ok(())
}

async fn section_hpa(args: &Args, server: &Server, net: &Net) -> anyhow::Result<()> {
    let client = server.client();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment("web", 1, "100m")?)
        .await?;
    apply(client, serde_json::json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}}}}))
    .await?;
    let mut reactions = Vec::new();
    for round in 0..args.hpa_rounds {
        wait_state(
            client,
            "web",
            |(spec, ready, pods)| spec == 1 && ready == 1 && pods == 1,
            Duration::from_secs(120),
        )
        .await?;
        // Settle: the HPA has seen the idle pod's metrics.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pods = Api::<Pod>::namespaced(client.clone(), "default")
            .list(&ListParams::default().labels("app=web"))
            .await?;
        let ip = pods
            .items
            .first()
            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
            .context("no pod IP")?;
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (stop, ns, addr) = (stop.clone(), net.client.clone(), format!("{ip}:8080"));
            std::thread::spawn(move || -> anyhow::Result<()> {
                enter(&ns)?;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let _ = http_get(&addr, "/burn?ms=50", Duration::from_secs(5));
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })
        };
        let reaction = wait_state(
            client,
            "web",
            |(spec, ready, _)| spec == 3 && ready == 3,
            Duration::from_secs(60),
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let _ = load.join();
        let reaction = reaction?;
        println!(
            "  round {round}: load start -> 3 Ready replicas in {:.2} s",
            reaction.as_secs_f64()
        );
        reactions.push(reaction);
    }
    let l = Latencies::new(reactions);
    println!();
    println!("HPA reaction (CPU 50% of 100m, 1 -> 3 replicas, metrics and sync every 1 s)");
    println!(
        "  {} rounds: median {:.2} s, max {:.2} s",
        l.len(),
        l.p50().as_secs_f64(),
        l.max().as_secs_f64()
    );
    let goal = Goal::at_most(HPA_TARGET_S);
    println!(
        "  target {} {HPA_TARGET_S} s: {}",
        goal.comparison(),
        goal.verdict(l.max().as_secs_f64())
    );
    Ok(())
}

fn netns_sections(args: &Args, cold: bool, hpa: bool) -> anyhow::Result<()> {
    let net = Net::new("autoscale", args.subnet)?;
    let node = net.node.clone();
    in_ns(&node, || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async {
            let server = start_in_netns(args, &net).await?;
            let mut result = Ok(());
            if cold {
                result = section_cold(args, &server, &net).await;
            }
            if hpa && result.is_ok() {
                result = section_hpa(args, &server, &net).await;
            }
            if result.is_err() {
                eprintln!("skiff server log (last lines):\n{}", server.log_tail());
            }
            result
        })
    })
}

/// Server CPU (share of one core) over `window` and RSS, with `pods` idle pods running.
async fn pipeline_run(args: &Args, resolution: &str) -> anyhow::Result<(f64, u64)> {
    let n = args.pipeline_pods;
    let mut flags = wasm_server_flags(n);
    flags.extend(["--metrics-resolution".to_string(), resolution.to_string()]);
    let guest = args.guests_dir.join("hello-http.wasip2.wasm");
    let server = Server::builder(
        &args.skiff,
        &format!("skiff-bench-autoscale-{}-{resolution}", std::process::id()),
    )
    .node("bench", NodeWait::Ready, Duration::from_secs(60))
    .args(flags)
    .image(&guest, IMAGE)
    .log_to_file()
    .start()
    .await?;
    let client = server.client();
    // No CPU request: 5,000 pods must fit on one 2-core node.
    let mut d = deployment("idle", n as i32, "")?;
    if let Some(spec) = d.spec.as_mut() {
        // Only the pods' own start matters here: no rolling update, no surge.
        if let Some(s) = spec.template.spec.as_mut() {
            s.termination_grace_period_seconds = Some(0);
        }
    }
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &d)
        .await?;
    let n32 = n as i32;
    wait_state(client, "idle", |(_, ready, _)| ready == n32, Duration::from_secs(600))
        .await
        .with_context(|| format!("server log:\n{}", server.log_tail()))?;
    // Settle, then measure a 30 s window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window = Duration::from_secs(30);
    let cpu0 = procfs::cpu_time(server.pid());
    tokio::time::sleep(window).await;
    let cpu = procfs::cpu_time(server.pid()).saturating_sub(cpu0);
    let rss = server.rss_kib();
    if resolution != "0s" {
        // The pipeline really served every pod.
        let list: serde_json::Value = client
            .request(
                http::Request::get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
                    .body(Vec::new())?,
            )
            .await?;
        let items = list["items"].as_array().map_or(0, Vec::len);
        println!("  metrics.k8s.io lists {items} of {n} pods");
    }
    Ok((cpu.as_secs_f64() / window.as_secs_f64(), rss))
}

async fn section_pipeline(args: &Args) -> anyhow::Result<()> {
    raise_nofile_limit((args.pipeline_pods as u64) * 4 + 4096)?;
    println!();
    println!(
        "Metrics pipeline cost: {} idle wasi:http pods, server CPU over 30 s and RSS",
        args.pipeline_pods
    );
    let (cpu_off, rss_off) = pipeline_run(args, "0s").await?;
    println!(
        "  pipeline off:  CPU {:.1}% of a core, RSS {:.1} MiB",
        cpu_off * 100.0,
        rss_off as f64 / 1024.0
    );
    let (cpu_on, rss_on) = pipeline_run(args, "1s").await?;
    println!(
        "  pipeline 1 s:  CPU {:.1}% of a core, RSS {:.1} MiB",
        cpu_on * 100.0,
        rss_on as f64 / 1024.0
    );
    let (cpu, rss) = ((cpu_on - cpu_off) * 100.0, (rss_on as f64 - rss_off as f64) / 1024.0);
    println!(
        "  cost: {cpu:.1}% of a core ({}), {rss:.1} MiB ({})",
        Goal::at_most(5.0).verdict(cpu),
        Goal::at_most(50.0 / 1.048_576).verdict(rss)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let (cold, hpa, pipeline) =
        (only.contains(&"cold"), only.contains(&"hpa"), only.contains(&"pipeline"));
    if cold || hpa {
        netns_sections(&args, cold, hpa)?;
    }
    if pipeline {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(section_pipeline(&args))?;
    }
    Ok(())
}
