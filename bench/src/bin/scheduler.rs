//! Scheduler throughput, measured the way Kubernetes' scheduler_perf does it: simulated nodes
//! (Node objects with no kubelet behind them), a real api server and store, and the real
//! scheduler inside `skiff server`, binding through the API. Cases: 5,000 nodes with 10,000
//! pods — plain, with required pod anti-affinity, with topology spread, and with preemption
//! (every pod must evict a lower-priority one).
//!
//! Each case runs on a fresh `skiff server --disable-agent`. While the bench creates the
//! nodes and pods, it holds the scheduler's Lease (`kube-system/kube-scheduler`), so the
//! scheduler is idle; then it releases the Lease and the scheduler takes over a cluster with
//! every pod pending, as after a failover. Throughput is pods bound per second between the
//! first and the last binding seen on a watch.
//!
//! `skiff-bench-scheduler --skiff target/release/skiff [--only basic,anti-affinity,spread,preemption]`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use skiff_bench::Server;
use skiff_bench::procfs::cpu_time;

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods measured per case.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Comma-separated cases to run (basic, anti-affinity, spread, preemption).
    #[arg(long, default_value = "basic,anti-affinity,spread,preemption")]
    only: String,
    /// Concurrent create requests while setting up.
    #[arg(long, default_value_t = 64)]
    clients: usize,
}

/// Kubernetes' scheduler_perf thresholds (pods/s) for the matching 5,000-node cases.
fn kubernetes_threshold(case: &str) -> f64 {
    match case {
        "basic" => 680.0,
        "anti-affinity" => 590.0,
        "spread" => 710.0,
        "preemption" => 570.0,
        _ => f64::NAN,
    }
}

async fn start_server(skiff: &Path, case: &str) -> anyhow::Result<(Server, kube::Client)> {
    let dir_name = format!("skiff-bench-sched-{}-{case}", std::process::id());
    let server = Server::builder(skiff, &dir_name)
        .disable_agent()
        // Simulated nodes renew no Lease: keep the node lifecycle from marking them lost.
        .args(["--node-monitor-grace-period", "86400"])
        // Room for a /24 of pod addresses per node, for 5,000 nodes and more (32,768), in
        // loopback space: no route for a pod address leads off the machine.
        .args(["--cluster-cidr", "127.128.0.0/9", "--node-cidr-mask-size", "24"])
        .start()
        .await?;
    let client = server.client().clone();
    Ok((server, client))
}

async fn metrics(client: &kube::Client) -> anyhow::Result<String> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

async fn wait_until(
    what: &str,
    within: Duration,
    mut f: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out after {within:?} waiting for {what}")
}

/// Take the scheduler's Lease for the bench, and wait until the scheduler has stopped.
async fn hold_scheduler(client: &kube::Client) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    wait_until("the scheduler's Lease", Duration::from_secs(30), async || {
        leases.get_opt("kube-scheduler").await.ok().flatten().is_some()
    })
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let patch = json!({"spec": {
        "holderIdentity": "skiff-bench",
        "leaseDurationSeconds": 86400,
        "acquireTime": now.to_string(),
        "renewTime": now.to_string(),
    }});
    leases.patch("kube-scheduler", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    wait_until("the scheduler to stop", Duration::from_secs(60), async || {
        metrics(client)
            .await
            .is_ok_and(|m| m.contains("leader_election_master_status{name=\"kube-scheduler\"} 0"))
    })
    .await
}

async fn create_all<T, F, Fut>(items: Vec<T>, clients: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(clients)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

const ZONES: usize = 10;

fn node(i: usize, cpu: &str) -> anyhow::Result<(Node, serde_json::Value)> {
    let name = format!("node-{i}");
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
        }},
    }))?;
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "32Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status"}],
        "runtimeHandlers": [{"name": "wasmtime"}],
    }});
    Ok((node, status))
}

async fn create_nodes(
    client: &kube::Client,
    n: usize,
    cpu: &str,
    clients: usize,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    create_all((0..n).collect(), clients, |i| {
        let nodes = nodes.clone();
        let cpu = cpu.to_string();
        async move {
            let (node, status) = node(i, &cpu)?;
            let name = format!("node-{i}");
            // Concurrent creates can race for the same pod CIDR; the server asks to retry.
            let mut attempt = 0;
            loop {
                match nodes.create(&PostParams::default(), &node).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(e))
                        if e.code == 500 && e.message.contains("try again") && attempt < 20 =>
                    {
                        attempt += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
            Ok(())
        }
    })
    .await
}

fn pod_spec(cpu: &str) -> serde_json::Value {
    json!({
        "containers": [{"name": "main", "image": "registry.example/bench/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}],
        "terminationGracePeriodSeconds": 0,
    })
}

/// The measured pod `i` of a case.
fn case_pod(case: &str, i: usize) -> anyhow::Result<Pod> {
    let mut spec = pod_spec("100m");
    let mut labels = json!({"app": "bench"});
    match case {
        "anti-affinity" => {
            // Groups of ten pods, each group spread over ten distinct nodes.
            let group = format!("g{}", i / 10);
            labels["group"] = json!(group);
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"group": group}},
                "topologyKey": "kubernetes.io/hostname",
            }]}});
        }
        "spread" => {
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "bench"}},
            }]);
        }
        "preemption" => {
            spec = pod_spec("1");
            spec["priorityClassName"] = json!("bench-high");
        }
        _ => {}
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": labels},
        "spec": spec,
    }))?)
}

struct Outcome {
    case: String,
    pods: usize,
    first_to_last: Duration,
    release_to_all: Duration,
    server_cpu: Duration,
}

async fn run_case(args: &Args, case: &str) -> anyhow::Result<Outcome> {
    let (server, client) = start_server(&args.skiff, case).await?;
    hold_scheduler(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["bench", "bench-init"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
    }
    let preemption = case == "preemption";
    // Preemption: 4-CPU nodes full of 1-CPU low-priority pods; every measured pod needs one
    // of them evicted.
    create_nodes(&client, args.nodes, "4", args.clients).await?;
    let init_pods: Api<Pod> = Api::namespaced(client.clone(), "bench-init");
    if preemption {
        let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
            Api::all(client.clone());
        for (name, value) in [("bench-low", 1), ("bench-high", 1000)] {
            classes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))?,
                )
                .await?;
        }
    }
    let (init_count, init_cpu) = if preemption { (args.nodes * 4, "1") } else { (1000, "100m") };
    create_all((0..init_count).collect(), args.clients, |i| {
        let init_pods = init_pods.clone();
        let nodes = args.nodes;
        async move {
            let mut spec = pod_spec(init_cpu);
            spec["nodeName"] = json!(format!("node-{}", i % nodes));
            if preemption {
                spec["priorityClassName"] = json!("bench-low");
            }
            let pod: Pod = serde_json::from_value(
                json!({"metadata": {"name": format!("init-{i}")}, "spec": spec}),
            )?;
            init_pods.create(&PostParams::default(), &pod).await?;
            Ok(())
        }
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let created = Instant::now();
    create_all((0..args.pods).collect(), args.clients, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &case_pod(case, i)?).await?;
            Ok(())
        }
    })
    .await?;
    let create_time = created.elapsed();

    // Record when each measured pod is first seen bound.
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = bound.clone();
    let watch = tokio::spawn(watcher::watcher(pods.clone(), watcher::Config::default()).for_each(
        move |ev| {
            let seen = seen.clone();
            async move {
                if let Ok(Event::Apply(p) | Event::InitApply(p)) = ev
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty())
                {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        },
    ));
    // Preemption victims have no kubelet to finish them: act as one, removing a pod as soon
    // as it is being deleted.
    let kubelet =
        preemption.then(|| {
            let init_pods = init_pods.clone();
            tokio::spawn(
                watcher::watcher(init_pods.clone(), watcher::Config::default())
                    .for_each_concurrent(32, move |ev| {
                        let init_pods = init_pods.clone();
                        async move {
                            if let Ok(Event::Apply(p)) = ev
                                && p.metadata.deletion_timestamp.is_some()
                            {
                                let name = p.metadata.name.clone().unwrap_or_default();
                                let _ = init_pods
                                    .delete(
                                        &name,
                                        &DeleteParams {
                                            grace_period_seconds: Some(0),
                                            ..Default::default()
                                        },
                                    )
                                    .await;
                            }
                        }
                    }),
            )
        });

    let pid = server.pid();
    let cpu_before = cpu_time(pid);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let released = Instant::now();
    leases.delete("kube-scheduler", &DeleteParams::default()).await?;
    let total = args.pods;
    let within = Duration::from_secs(600);
    wait_until("every pod bound", within, async || {
        bound.lock().unwrap_or_else(|e| e.into_inner()).len() >= total
    })
    .await?;
    let release_to_all = released.elapsed();
    let server_cpu = cpu_time(pid).saturating_sub(cpu_before);
    watch.abort();
    if let Some(k) = kubelet {
        k.abort();
    }
    let times = bound.lock().unwrap_or_else(|e| e.into_inner());
    let first = times.values().min().copied().unwrap_or(released);
    let last = times.values().max().copied().unwrap_or(released);
    println!(
        "  {case}: {} nodes, {init_count} pods already bound, {total} pods created in {:.1} s",
        args.nodes,
        create_time.as_secs_f64()
    );
    Ok(Outcome {
        case: case.to_string(),
        pods: total,
        first_to_last: last.duration_since(first),
        release_to_all,
        server_cpu,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "Scheduler throughput: {} (release build), simulated nodes (no kubelets), bindings through the api server",
        args.skiff.display()
    );
    let mut outcomes = Vec::new();
    for case in args.only.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        outcomes.push(run_case(&args, case).await.with_context(|| format!("case {case}"))?);
    }
    println!();
    println!(
        "{:<15} {:>7} {:>12} {:>10} {:>16} {:>11} {:>12} {:>7}",
        "case",
        "pods",
        "first→last",
        "pods/s",
        "lease→all bound",
        "server CPU",
        "Kubernetes",
        "ratio"
    );
    for o in &outcomes {
        let secs = o.first_to_last.as_secs_f64().max(1e-3);
        let rate = o.pods as f64 / secs;
        let k8s = kubernetes_threshold(&o.case);
        println!(
            "{:<15} {:>7} {:>10.2} s {:>10.0} {:>14.2} s {:>9.1} s {:>8.0} /s {:>6.1}x",
            o.case,
            o.pods,
            secs,
            rate,
            o.release_to_all.as_secs_f64(),
            o.server_cpu.as_secs_f64(),
            k8s,
            rate / k8s
        );
    }
    println!(
        "Kubernetes: scheduler_perf's thresholds for its 5,000-node cases (SchedulingBasic, SchedulingPodAntiAffinity, TopologySpreading, PreemptionBasic); target ≥ 3x on every case."
    );
    Ok(())
}
