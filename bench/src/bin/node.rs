//! Benchmark of the node: how fast pods start, how many idle Wasm HTTP pods fit, and how fast a
//! Wasm HTTP pod serves, each next to a peer measured in the same run.
//!
//! Sections (all by default; `--only start,density,http,oci` picks some):
//! - `start`: Wasm pod start, API create → Running, per pod (one watch started before the
//!   creates), for 1 client and for N concurrent clients, each client creating its next pod once
//!   its last one runs. Printed next to the Kubernetes pod startup SLO and runwasi's published
//!   figure (neither can run here).
//! - `oci`: the same for busybox pods through containerd (`--with-containerd` starts one with
//!   scripts/containerd.sh, `--containerd-socket` uses a running one).
//! - `density`: N idle wasi:http pods, server RSS per pod, and a sample of them answering HTTP.
//! - `http`: requests/s of one wasi:http pod against `wasmtime serve` of the same component,
//!   both driven by `wrk` with the same arguments.
//! - `scale` (only when asked for): one Deployment of idle Wasm pods scaled 0 → N; time until
//!   its pods exist and until all are Ready, and the CPU time of the controller manager's
//!   threads (`skiff-ctrl`: the controllers and their client side; the api server serves their
//!   requests on its own threads) next to the whole server's.
//!
//! Every section starts its own `skiff server` (port 0, data dir under the temp dir) and removes
//! it afterwards. Wasm pods get addresses in 127.0.0.0/8 (the server is given a loopback pod
//! CIDR), so all traffic stays on loopback.
//!
//! `skiff-bench-node --skiff target/release/skiff --guests-dir GUESTS --wasmtime bin/wasmtime`

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use skiff_bench::containerd::start_containerd;
use skiff_bench::process::{KillOnDrop, NoLine, first_line};
use skiff_bench::server::{raise_nofile_limit, wasm_server_flags};
use skiff_bench::{Goal, Latencies, NodeWait, Server, ms, procfs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Section {
    Start,
    Oci,
    Density,
    Http,
    Scale,
}

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// Where scripts/build-guests.sh put the guests (test-guest.*.wasm, hello-http.wasip2.wasm).
    #[arg(long, env = "SKIFF_GUESTS_DIR")]
    guests_dir: PathBuf,
    /// Sections to run (comma-separated). Default: start, density, http, and oci when a
    /// containerd is given.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,

    /// Wasm pods started per client count (`start`).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Client counts of the start measurements; each client creates its next pod once its
    /// previous one is Running.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16])]
    clients: Vec<usize>,
    /// The guest of the `start` pods (in --guests-dir); it runs `sleep 3600`.
    #[arg(long, default_value = "test-guest.wasip1.wasm")]
    start_guest: String,
    /// Longest a single pod may take to be Running before the run fails.
    #[arg(long, default_value_t = 120)]
    pod_timeout_secs: u64,

    /// Start an isolated containerd (scripts/containerd.sh start DIR BRIDGE) for the `oci` section.
    #[arg(long)]
    with_containerd: bool,
    /// Use the containerd listening on this socket for the `oci` section.
    #[arg(long, value_name = "SOCK", conflicts_with = "with_containerd")]
    containerd_socket: Option<PathBuf>,
    /// The script that runs containerd.
    #[arg(long, default_value = "scripts/containerd.sh")]
    containerd_script: PathBuf,
    /// OCI (busybox) pods started per client count (`oci`).
    #[arg(long, default_value_t = 50)]
    oci_pods: usize,
    /// Pod address space of the `oci` server: OCI pods get addresses on containerd's bridge
    /// from its lower half. No traffic is sent to them.
    #[arg(long, default_value = "10.250.0.0/16")]
    oci_cluster_cidr: String,

    /// Idle wasi:http pods of the `density` section.
    #[arg(long, default_value_t = 10_000)]
    density_pods: usize,
    /// Concurrent create requests of the `density` section.
    #[arg(long, default_value_t = 32)]
    density_clients: usize,
    /// Density pods asked for `GET /` afterwards (spread over all of them).
    #[arg(long, default_value_t = 100)]
    http_sample: usize,
    /// Longest the `density` pods may take to be all Running.
    #[arg(long, default_value_t = 1800)]
    density_timeout_secs: u64,

    /// The wasi:http component of `density` and `http` (in --guests-dir).
    #[arg(long, default_value = "hello-http.wasip2.wasm")]
    http_guest: String,
    /// The peer: `wasmtime` CLI (scripts/fetch-wasmtime.sh installs it).
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// Flags of `wasmtime serve` besides --addr and the component: `-Scli` links the
    /// wasi:cli interfaces a component built by Rust's std imports.
    #[arg(long, default_value = "-Scli", allow_hyphen_values = true)]
    wasmtime_serve_args: String,
    /// The load generator.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// wrk's arguments besides the URL (the same for both servers).
    #[arg(long, default_value = "-t2 -c32 -d10s", allow_hyphen_values = true)]
    wrk_args: String,
    /// wrk runs per server, alternating between them; the best of each is compared.
    #[arg(long, default_value_t = 2)]
    http_rounds: usize,

    /// Replicas the `scale` section scales its Deployment to.
    #[arg(long, default_value_t = 5000)]
    scale_pods: usize,
    /// Longest the `scale` section may take to have every replica Ready.
    #[arg(long, default_value_t = 600)]
    scale_timeout_secs: u64,
    #[arg(long, default_value_t = 15.0)]
    target_scale_secs: f64,

    /// Targets printed next to the figures.
    #[arg(long, default_value_t = 50.0)]
    target_start_p99_ms: f64,
    #[arg(long, default_value_t = 256.0)]
    target_kib_per_pod: f64,
    #[arg(long, default_value_t = 0.8)]
    target_http_ratio: f64,
}

/// Reference lines for pod start: published figures of systems that cannot run here.
const K8S_STARTUP_SLO_MS: f64 = 5000.0;
const RUNWASI_SPIN_START_MS: f64 = 1000.0;

/// Label every benchmark pod carries (its value names the run), for the watch.
const RUN_LABEL: &str = "skiff-bench-node/run";

// ---------------------------------------------------------------------------------------------
// Processes

/// Start `skiff server` on a fresh data dir with `images` (file, name) imported, and wait
/// until its node is Ready.
async fn start_server(
    skiff: &Path,
    name: &str,
    images: &[(PathBuf, &str)],
    extra: &[String],
) -> anyhow::Result<Server> {
    let dir_name = format!("skiff-bench-node-{}-{name}", std::process::id());
    let mut builder = Server::builder(skiff, &dir_name)
        .node("bench", NodeWait::Ready, Duration::from_secs(60))
        .args(extra.iter().cloned())
        .log_to_file();
    for (file, image) in images {
        builder = builder.image(file, image);
    }
    builder.start().await
}

// ---------------------------------------------------------------------------------------------
// Pod start latency

type Outcome = Result<Duration, String>;

/// When each benchmark pod's create request was sent, and who waits for it to run. One watch
/// (started before the first create) settles them: latency = first event showing the pod
/// Running minus the instant just before its create request.
#[derive(Default)]
struct StartTracker {
    pending: Mutex<HashMap<String, (Instant, oneshot::Sender<Outcome>)>>,
}

impl StartTracker {
    /// Note that `name`'s create is about to be sent; the receiver gets its start latency.
    fn expect(&self, name: &str) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(name.to_string(), (Instant::now(), tx));
        }
        rx
    }

    fn forget(&self, name: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(name);
        }
    }

    fn observe(&self, pod: &Pod, now: Instant) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let outcome = match phase {
            "Running" => None,
            "Failed" | "Succeeded" => Some(format!(
                "pod ended {phase} before it was seen Running: {}",
                pod.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
            )),
            _ => return,
        };
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let Some((sent, tx)) = self.pending.lock().ok().and_then(|mut p| p.remove(name)) else {
            return;
        };
        let _ = tx.send(match outcome {
            None => Ok(now - sent),
            Some(e) => Err(e),
        });
    }
}

/// Watch the pods labelled `run` and settle them in `tracker`; returns once the watch is
/// established, the watch task running until aborted.
async fn watch_starts(
    pods: Api<Pod>,
    run: &str,
    tracker: Arc<StartTracker>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut stream = watcher::watcher(pods, config).boxed();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) => tracker.observe(&p, now),
                Ok(Event::InitDone) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("  (watch error, the watcher retries: {e})"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the pod watch was not established within 30 s")?
        .context("the pod watch ended")?;
    Ok(task)
}

/// Why a pod is not Running, from its status, for error messages.
async fn pod_diagnosis(pods: &Api<Pod>, name: &str) -> String {
    let Ok(pod) = pods.get(name).await else { return "pod not found".into() };
    let status = pod.status.unwrap_or_default();
    let mut why = format!("phase {}", status.phase.unwrap_or_default());
    for c in status.container_statuses.unwrap_or_default() {
        if let Some(w) = c.state.and_then(|s| s.waiting) {
            why += &format!(
                "; {}: {} {}",
                c.name,
                w.reason.unwrap_or_default(),
                w.message.unwrap_or_default()
            );
        }
    }
    why
}

struct Starts {
    latencies: Latencies,
    elapsed: Duration,
}

/// Start `n` pods made by `make(name)`, `clients` at a time: each client creates a pod and
/// waits until it is Running before creating its next.
async fn measure_starts(
    client: &kube::Client,
    run: &str,
    n: usize,
    clients: usize,
    timeout: Duration,
    make: &(dyn Fn(&str) -> anyhow::Result<Pod> + Sync),
) -> anyhow::Result<Starts> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let tracker = Arc::new(StartTracker::default());
    let watch = watch_starts(pods.clone(), run, tracker.clone()).await?;
    let t0 = Instant::now();
    let result = futures::stream::iter(0..n)
        .map(|i| {
            let (pods, tracker) = (&pods, &tracker);
            async move {
                let name = format!("{run}-{i:05}");
                let mut pod = make(&name)?;
                pod.metadata.labels.get_or_insert_default().insert(RUN_LABEL.into(), run.into());
                let rx = tracker.expect(&name);
                if let Err(e) = pods.create(&PostParams::default(), &pod).await {
                    tracker.forget(&name);
                    return Err(anyhow::Error::from(e).context(format!("creating {name}")));
                }
                match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(Ok(latency))) => Ok(latency),
                    Ok(Ok(Err(why))) => bail!("{name}: {why}"),
                    Ok(Err(_)) => bail!("{name}: the watch ended"),
                    Err(_) => bail!(
                        "{name} not Running within {} s: {}",
                        timeout.as_secs(),
                        pod_diagnosis(pods, &name).await
                    ),
                }
            }
        })
        .buffer_unordered(clients.max(1))
        .try_collect::<Vec<_>>()
        .await;
    let elapsed = t0.elapsed();
    watch.abort();
    Ok(Starts { latencies: Latencies::new(result?), elapsed })
}

/// Create `n` pods with `clients` create requests in flight (not waiting for them to run), then
/// wait until all are Running. Latencies are each pod's create → Running under that burst.
async fn burst_starts(
    client: &kube::Client,
    run: &str,
    n: usize,
    clients: usize,
    timeout: Duration,
    make: &(dyn Fn(&str) -> anyhow::Result<Pod> + Sync),
) -> anyhow::Result<(Starts, Duration)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let tracker = Arc::new(StartTracker::default());
    let watch = watch_starts(pods.clone(), run, tracker.clone()).await?;
    let t0 = Instant::now();
    let receivers = futures::stream::iter(0..n)
        .map(|i| {
            let (pods, tracker) = (&pods, &tracker);
            async move {
                let name = format!("{run}-{i:05}");
                let mut pod = make(&name)?;
                pod.metadata.labels.get_or_insert_default().insert(RUN_LABEL.into(), run.into());
                let rx = tracker.expect(&name);
                if let Err(e) = pods.create(&PostParams::default(), &pod).await {
                    tracker.forget(&name);
                    return Err(anyhow::Error::from(e).context(format!("creating {name}")));
                }
                Ok((name, rx))
            }
        })
        .buffer_unordered(clients.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let created = t0.elapsed();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut latencies = Vec::with_capacity(n);
    for (name, rx) in receivers {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(latency))) => latencies.push(latency),
            Ok(Ok(Err(why))) => bail!("{name}: {why}"),
            Ok(Err(_)) => bail!("{name}: the watch ended"),
            Err(_) => {
                let running = latencies.len();
                bail!(
                    "only {running} of {n} pods Running after {} s; {name}: {}",
                    timeout.as_secs(),
                    pod_diagnosis(&pods, &name).await
                )
            }
        }
    }
    let elapsed = t0.elapsed();
    watch.abort();
    Ok((Starts { latencies: Latencies::new(latencies), elapsed }, created))
}

fn print_starts(label: &str, s: &Starts) {
    println!(
        "  {label:<34} {:>6} pods {:>7.1} pods/s   p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        s.latencies.len(),
        s.latencies.len() as f64 / s.elapsed.as_secs_f64(),
        ms(s.latencies.p50()),
        ms(s.latencies.p99()),
        ms(s.latencies.max()),
    );
}

fn target_line(label: &str, measured: f64, unit: &str, goal: Goal) {
    println!(
        "  {label:<44} {measured:>10.2} {unit:<5} target {} {:<7} {}",
        goal.comparison(),
        goal.target,
        goal.verdict(measured)
    );
}

fn print_start_references() {
    println!(
        "  reference: Kubernetes pod startup SLO      p99 <= {K8S_STARTUP_SLO_MS:.0} ms \
         (stateless pods, image pull excluded; published, not run here)"
    );
    println!(
        "  reference: runwasi containerd-shim-spin    ~{RUNWASI_SPIN_START_MS:.0} ms to Running \
         (published figure; it needs a containerd with the shim installed, which cannot run here)"
    );
}

fn pod_from_json(v: serde_json::Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(v)?)
}

// ---------------------------------------------------------------------------------------------
// Sections

async fn section_start(args: &Args) -> anyhow::Result<()> {
    let guest = args.guests_dir.join(&args.start_guest);
    let total = args.pods * args.clients.len();
    let server = start_server(
        &args.skiff,
        "start",
        &[(guest.clone(), "bench-guest:1")],
        &wasm_server_flags(total),
    )
    .await?;
    let rss_idle = server.rss_kib();
    println!();
    println!(
        "Wasm pod start: API create -> first watch event showing the pod Running ({}, \
         `sleep 3600`, runtimeClassName wasmtime); each client creates its next pod once its \
         previous one is Running",
        args.start_guest
    );
    println!("  server ready after start {:.0} ms", ms(server.started_in()));
    let make = |name: &str| {
        pod_from_json(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "runtimeClassName": "wasmtime",
                "containers": [{
                    "name": "main", "image": "bench-guest:1", "imagePullPolicy": "IfNotPresent",
                    "args": ["sleep", "3600"]
                }]
            }
        }))
    };
    let timeout = Duration::from_secs(args.pod_timeout_secs);
    let first = measure_starts(server.client(), "wasm-first", 1, 1, timeout, &make)
        .await
        .with_context(|| format!("first pod; server log:\n{}", server.log_tail()))?;
    print_starts("first pod (compiles the module)", &first);
    let mut results = Vec::new();
    for &c in &args.clients {
        let run = format!("wasm-c{c}");
        let s = measure_starts(server.client(), &run, args.pods, c, timeout, &make)
            .await
            .with_context(|| format!("{c} clients; server log:\n{}", server.log_tail()))?;
        print_starts(&format!("{c} client(s)"), &s);
        results.push((c, s));
    }
    print_start_references();
    println!(
        "  server RSS {:.1} MiB idle, {:.1} MiB with {total} sleeping pods",
        rss_idle as f64 / 1024.0,
        server.rss_kib() as f64 / 1024.0
    );
    for (c, s) in &results {
        target_line(
            &format!("Wasm start p99, {c} client(s)"),
            ms(s.latencies.p99()),
            "ms",
            Goal::at_most(args.target_start_p99_ms),
        );
    }
    drop(server);
    Ok(())
}

async fn section_oci(args: &Args) -> anyhow::Result<()> {
    let (_containerd, sock) = match (&args.containerd_socket, args.with_containerd) {
        (Some(sock), _) => (None, sock.clone()),
        (None, true) => {
            println!();
            println!("Starting containerd ({} start) ...", args.containerd_script.display());
            let (guard, sock) = start_containerd(&args.containerd_script, "sbn")?;
            (Some(guard), sock)
        }
        (None, false) => bail!("the oci section needs --with-containerd or --containerd-socket"),
    };
    let total = args.oci_pods * args.clients.len();
    let extra: Vec<String> = vec![
        "--container-runtime-endpoint".into(),
        format!("unix://{}", sock.display()),
        "--max-pods".into(),
        (total + 8).to_string(),
        "--cluster-cidr".into(),
        args.oci_cluster_cidr.clone(),
        "--node-cidr-mask-size".into(),
        "22".into(),
    ];
    let server = start_server(&args.skiff, "oci", &[], &extra).await?;
    println!();
    println!(
        "OCI pod start through containerd ({}): API create -> Running (skiff.local/busybox:1.36, \
         `sleep 3600`, runtimeClassName runc)",
        sock.display()
    );
    let make = |name: &str| {
        pod_from_json(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "runtimeClassName": "runc",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main", "image": "skiff.local/busybox:1.36",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"]
                }]
            }
        }))
    };
    let timeout = Duration::from_secs(args.pod_timeout_secs);
    let mut results = Vec::new();
    let mut failure = None;
    match measure_starts(server.client(), "oci-first", 1, 1, timeout, &make).await {
        Ok(s) => print_starts("first pod (unpacks the image)", &s),
        Err(e) => {
            failure = Some(e.context(format!("first pod; server log:\n{}", server.log_tail())))
        }
    }
    for &c in args.clients.iter().filter(|_| failure.is_none()) {
        let run = format!("oci-c{c}");
        match measure_starts(server.client(), &run, args.oci_pods, c, timeout, &make).await {
            Ok(s) => {
                print_starts(&format!("{c} client(s)"), &s);
                results.push((c, s));
            }
            Err(e) => {
                failure =
                    Some(e.context(format!("{c} clients; server log:\n{}", server.log_tail())));
                break;
            }
        }
    }
    // The containers live in containerd, not in the server: delete the pods through the API so
    // that the node stops them before the server goes away.
    delete_all_pods(server.client(), Duration::from_secs(120)).await;
    if let Some(e) = failure {
        return Err(e);
    }
    print_start_references();
    for (c, s) in &results {
        target_line(
            &format!("OCI start p99, {c} client(s)"),
            ms(s.latencies.p99()),
            "ms",
            Goal::at_most(K8S_STARTUP_SLO_MS),
        );
    }
    drop(server);
    Ok(())
}

/// Delete the benchmark's pods and wait (bounded) until they are gone.
async fn delete_all_pods(client: &kube::Client, within: Duration) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(RUN_LABEL);
    if let Err(e) = pods.delete_collection(&DeleteParams::default(), &lp).await {
        eprintln!("  (deleting the pods failed: {e})");
        return;
    }
    let deadline = Instant::now() + within;
    loop {
        match pods.list(&lp).await {
            Ok(list) if list.items.is_empty() => return,
            Ok(list) if Instant::now() > deadline => {
                eprintln!(
                    "  ({} pods still present {} s after their deletion)",
                    list.items.len(),
                    within.as_secs()
                );
                return;
            }
            Err(e) => {
                eprintln!("  (listing the pods failed: {e})");
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn http_pod(name: &str) -> anyhow::Result<Pod> {
    pod_from_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "runtimeClassName": "wasmtime",
            "containers": [{
                "name": "http", "image": "hello-http:bench", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
            }]
        }
    }))
}

/// `GET path` over HTTP/1.1 on a fresh connection: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("no answer within 5 s")??;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:.80}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// The pod's address on port 8080, refusing any address outside loopback: the benchmark only
/// sends traffic on this machine's loopback.
fn loopback_addr(pod: &Pod) -> anyhow::Result<SocketAddr> {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).unwrap_or("");
    let ip: IpAddr = ip.parse().with_context(|| format!("pod IP {ip:?}"))?;
    if !ip.is_loopback() {
        bail!("pod IP {ip} is not a loopback address; not sending traffic to it");
    }
    Ok(SocketAddr::new(ip, 8080))
}

async fn section_density(args: &Args) -> anyhow::Result<()> {
    let n = args.density_pods;
    let component = args.guests_dir.join(&args.http_guest);
    let nofile = raise_nofile_limit((n as u64) * 4 + 4096)?;
    let server = start_server(
        &args.skiff,
        "density",
        &[(component, "hello-http:bench")],
        &wasm_server_flags(n),
    )
    .await?;
    // Let the fresh server settle (startup allocations, first lease and status writes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = server.rss_kib();
    let fds_idle = procfs::open_fds(server.pid());
    println!();
    println!(
        "Density: {n} idle wasi:http pods ({}, containerPort 8080 on each pod's own IP), \
         {} create requests in flight; open-file limit {nofile}",
        args.http_guest, args.density_clients
    );
    let requests0 = RequestCounts::read(server.client()).await;
    let (starts, created) = burst_starts(
        server.client(),
        "density",
        n,
        args.density_clients,
        Duration::from_secs(args.density_timeout_secs),
        &http_pod,
    )
    .await
    .with_context(|| format!("server log:\n{}", server.log_tail()))?;
    println!(
        "  {n} creates answered in {:.1} s; all Running after {:.1} s ({:.0} pods/s)",
        created.as_secs_f64(),
        starts.elapsed.as_secs_f64(),
        n as f64 / starts.elapsed.as_secs_f64()
    );
    print_starts("create -> Running under the burst", &starts);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = server.rss_kib();
    let hwm = server.peak_rss_kib();
    let fds = procfs::open_fds(server.pid());
    let per_pod = (rss.saturating_sub(rss_idle)) as f64 / n.max(1) as f64;
    println!("  server RSS idle (no pods)          {:>9.1} MiB", rss_idle as f64 / 1024.0);
    println!("  server RSS with {n:>6} pods         {:>9.1} MiB", rss as f64 / 1024.0);
    println!("  server peak RSS (VmHWM)            {:>9.1} MiB", hwm as f64 / 1024.0);
    println!("  RSS per pod ((with - idle) / N)    {per_pod:>9.1} KiB");
    println!(
        "  server open fds                    {fds_idle} idle, {fds} with the pods ({:.2} per pod)",
        fds.saturating_sub(fds_idle) as f64 / n.max(1) as f64
    );
    RequestCounts::read(server.client()).await.since(&requests0).print_per_pod(n);

    // Ask a sample spread over all pods.
    let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
    let list = pods.list(&ListParams::default().labels(&format!("{RUN_LABEL}=density"))).await?;
    let mut items = list.items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let sample = args.http_sample.min(items.len());
    let step = items.len().checked_div(sample).unwrap_or(1).max(1);
    let picked: Vec<&Pod> = items.iter().step_by(step).take(sample).collect();
    let answers = futures::stream::iter(picked)
        .map(|pod| async move {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let addr = loopback_addr(pod)?;
            // Running is reported once the listener is up; allow a moment anyway.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match http_get(addr, "/").await {
                    Ok((200, body)) => return anyhow::Ok((name, addr, true, body)),
                    Ok((code, body)) if Instant::now() > deadline => {
                        return Ok((name, addr, false, format!("{code} {body:.80}")));
                    }
                    Err(e) if Instant::now() > deadline => {
                        return Ok((name, addr, false, e.to_string()));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let ok = answers.iter().filter(|a| a.2).count();
    let names_itself = answers.iter().filter(|a| a.2 && a.3.contains(&a.0)).count();
    println!(
        "  HTTP GET / on podIP:8080, sample of {}: {ok} answered 200 ({names_itself} naming their \
         own pod)",
        answers.len()
    );
    for (name, addr, _, why) in answers.iter().filter(|a| !a.2).take(5) {
        println!("    {name} at {addr}: {why}");
    }
    target_line(
        "RSS per idle wasi:http pod",
        per_pod,
        "KiB",
        Goal::at_most(args.target_kib_per_pod),
    );
    if ok < answers.len() {
        bail!("{} of {} sampled pods did not answer HTTP 200", answers.len() - ok, answers.len());
    }
    drop(server);
    Ok(())
}

/// What one wrk run reported.
struct WrkRun {
    requests_per_s: f64,
    latency_avg: String,
    latency_p99: String,
    non_2xx: u64,
    socket_errors: String,
}

async fn run_wrk(args: &Args, url: &str) -> anyhow::Result<WrkRun> {
    let out = tokio::process::Command::new(&args.wrk)
        .args(args.wrk_args.split_whitespace())
        .arg("--latency")
        .arg(url)
        .output()
        .await
        .with_context(|| {
            format!("running {} (Debian package `wrk`: apt-get install wrk)", args.wrk.display())
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let requests_per_s = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    Ok(WrkRun {
        requests_per_s,
        latency_avg: field("Latency").unwrap_or_default(),
        latency_p99: field("99%").unwrap_or_default(),
        non_2xx: field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0),
        socket_errors: text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("Socket errors:"))
            .unwrap_or("")
            .to_string(),
    })
}

/// Start `wasmtime serve` of `component` on a free loopback port; answers its address.
async fn start_wasmtime_serve(
    args: &Args,
    component: &Path,
) -> anyhow::Result<(KillOnDrop, SocketAddr)> {
    let mut child = Command::new(&args.wasmtime)
        .arg("serve")
        .args(args.wasmtime_serve_args.split_whitespace())
        .args(["--addr", "127.0.0.1:0", "--env", "POD_NAME=web-00000"])
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} serve (scripts/fetch-wasmtime.sh installs it)",
                args.wasmtime.display()
            )
        })?;
    let stderr = child.stderr.take().context("wasmtime stderr")?;
    let peer = KillOnDrop::new(child);
    let found = first_line(stderr, Duration::from_secs(60), |line| {
        let rest = line.strip_prefix("Serving HTTP on http://")?;
        Some(rest.trim_end_matches('/').parse::<SocketAddr>().ok())
    });
    match found.await {
        Ok(Some(addr)) => Ok((peer, addr)),
        Err(NoLine::Ended(output)) => bail!("wasmtime serve exited:\n{}", output.join("\n")),
        _ => bail!("wasmtime serve did not say where it serves within 60 s"),
    }
}

/// Poll `GET /` until it answers 200 (bounded).
async fn wait_http_ok(addr: SocketAddr, within: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(addr, "/").await;
        match answer {
            Ok((200, body)) => return Ok(body),
            _ if Instant::now() > deadline => {
                bail!("{addr} did not answer 200 within {} s: {answer:?}", within.as_secs())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn section_http(args: &Args) -> anyhow::Result<()> {
    let component = args.guests_dir.join(&args.http_guest);
    let server = start_server(
        &args.skiff,
        "http",
        &[(component.clone(), "hello-http:bench")],
        &wasm_server_flags(1),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
    measure_starts(
        server.client(),
        "web",
        1,
        1,
        Duration::from_secs(args.pod_timeout_secs),
        &http_pod,
    )
    .await?;
    let pod = pods.get("web-00000").await?;
    let skiff_addr = loopback_addr(&pod)?;
    let skiff_body = wait_http_ok(skiff_addr, Duration::from_secs(10)).await?;
    let (_peer, peer_addr) = start_wasmtime_serve(args, &component).await?;
    let peer_body = wait_http_ok(peer_addr, Duration::from_secs(10)).await?;
    let version = Command::new(&args.wasmtime)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!();
    println!(
        "HTTP throughput: one wasi:http pod ({}) vs `{} serve {} {}` ({version}), \
         `wrk {} --latency`, {} round(s) alternating",
        args.http_guest,
        args.wasmtime.display(),
        args.wasmtime_serve_args,
        args.http_guest,
        args.wrk_args,
        args.http_rounds
    );
    println!(
        "  both answer GET / with 200 ({} and {} body bytes); each request gets a fresh instance \
         in both",
        skiff_body.len(),
        peer_body.len()
    );
    let targets = [
        ("skiff pod", format!("http://{skiff_addr}/")),
        ("wasmtime serve", format!("http://{peer_addr}/")),
    ];
    let mut best = [0.0f64; 2];
    let mut failed = [0u64; 2];
    for round in 1..=args.http_rounds.max(1) {
        for (i, (label, url)) in targets.iter().enumerate() {
            let r = run_wrk(args, url).await.with_context(|| format!("wrk against {label}"))?;
            println!(
                "  round {round} {label:<16} {:>10.0} req/s   latency avg {:>8}  p99 {:>8}{}{}",
                r.requests_per_s,
                r.latency_avg,
                r.latency_p99,
                if r.non_2xx > 0 { format!("   {} non-2xx", r.non_2xx) } else { String::new() },
                if r.socket_errors.is_empty() {
                    String::new()
                } else {
                    format!("   {}", r.socket_errors)
                }
            );
            best[i] = best[i].max(r.requests_per_s);
            failed[i] += r.non_2xx;
        }
    }
    println!(
        "  best: skiff pod {:.0} req/s, wasmtime serve {:.0} req/s (server RSS after: {:.1} MiB)",
        best[0],
        best[1],
        server.rss_kib() as f64 / 1024.0
    );
    for (i, (label, _)) in targets.iter().enumerate() {
        if failed[i] > 0 {
            println!(
                "  WARNING: {label} answered {} requests with a non-2xx status (counted in its \
                 req/s by wrk); the pod's container log says why",
                failed[i]
            );
        }
    }
    target_line(
        "HTTP req/s, skiff pod / wasmtime serve",
        best[0] / best[1].max(f64::MIN_POSITIVE),
        "x",
        Goal::at_least(args.target_http_ratio),
    );
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Api server requests

/// `apiserver_request_total` by (verb, resource, subresource), summed over codes and groups.
#[derive(Default, Clone)]
struct RequestCounts(std::collections::BTreeMap<(String, String, String), u64>);

impl RequestCounts {
    /// Read the server's `/metrics` (empty when it cannot be read: the bench goes on).
    async fn read(client: &kube::Client) -> RequestCounts {
        let req = match http::Request::get("/metrics").body(Vec::new()) {
            Ok(r) => r,
            Err(_) => return RequestCounts::default(),
        };
        let text = client.request_text(req).await.unwrap_or_default();
        RequestCounts::parse(&text)
    }

    fn parse(text: &str) -> RequestCounts {
        let mut out = RequestCounts::default();
        for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let label = |name: &str| {
                let key = format!("{name}=\"");
                labels
                    .split_once(&key)
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_default()
            };
            let key = (label("verb"), label("resource"), label("subresource"));
            *out.0.entry(key).or_default() += value as u64;
        }
        out
    }

    /// What `self` counted beyond `before`.
    fn since(&self, before: &RequestCounts) -> RequestCounts {
        let mut out = RequestCounts::default();
        for (k, v) in &self.0 {
            let d = v.saturating_sub(before.0.get(k).copied().unwrap_or(0));
            if d > 0 {
                out.0.insert(k.clone(), d);
            }
        }
        out
    }

    fn count(&self, pred: impl Fn(&str, &str, &str) -> bool) -> u64 {
        self.0.iter().filter(|((v, r, s), _)| pred(v, r, s)).map(|(_, n)| n).sum()
    }

    /// Print writes per pod (status writes apart) and the busiest request kinds, per pod.
    fn print_per_pod(&self, pods: usize) {
        let per = |n: u64| n as f64 / pods.max(1) as f64;
        let write = |v: &str| matches!(v, "POST" | "PUT" | "PATCH" | "DELETE");
        let status = self.count(|v, r, s| r == "pods" && s == "status" && write(v));
        let pod_writes = self.count(|v, r, _| r == "pods" && write(v));
        let all_writes = self.count(|v, _, _| write(v));
        println!(
            "  api writes per pod                 {:>6.2} pod status, {:>6.2} to pods (create, \
             binding, status), {:>6.2} in all",
            per(status),
            per(pod_writes),
            per(all_writes)
        );
        let mut rows: Vec<_> = self.0.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = rows
            .iter()
            .take(8)
            .map(|((v, r, s), n)| {
                let what = if s.is_empty() { r.clone() } else { format!("{r}/{s}") };
                format!("{v} {what} {:.2}", per(**n))
            })
            .collect();
        println!("  api requests per pod (busiest)     {}", top.join(", "));
    }
}

// ---------------------------------------------------------------------------------------------

async fn section_scale(args: &Args) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let n = args.scale_pods;
    let limit = raise_nofile_limit(n as u64 * 4 + 4096)?;
    let guest = args.guests_dir.join(&args.start_guest);
    let server =
        start_server(&args.skiff, "scale", &[(guest, "bench-guest:1")], &wasm_server_flags(n))
            .await?;
    let deployments: Api<Deployment> = Api::namespaced(server.client().clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scale"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "scale"}},
            "template": {
                "metadata": {"labels": {"app": "scale"}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{
                        "name": "main", "image": "bench-guest:1",
                        "imagePullPolicy": "IfNotPresent", "args": ["sleep", "3600"]
                    }]
                }
            }
        }
    }))?;
    deployments.create(&PostParams::default(), &d).await?;
    println!();
    println!(
        "Scale one Deployment 0 -> {n} idle Wasm pods ({}, `sleep 3600`) on one node (open-file limit {limit})",
        args.start_guest
    );
    let pid = server.pid();
    let (ctrl0, all0) =
        (procfs::threads_cpu_time(pid, "skiff-ctrl"), procfs::threads_cpu_time(pid, ""));
    let (rss0, fds0) = (server.rss_kib(), procfs::open_fds(pid));
    let requests0 = RequestCounts::read(server.client()).await;
    let t0 = Instant::now();
    let scale = serde_json::json!({"spec": {"replicas": n}});
    deployments.patch_scale("scale", &PatchParams::default(), &Patch::Merge(&scale)).await?;
    let timeout = Duration::from_secs(args.scale_timeout_secs);
    let mut created = None;
    let ready = loop {
        let d = deployments.get_status("scale").await?;
        let st = d.status.unwrap_or_default();
        let want = i32::try_from(n).unwrap_or(i32::MAX);
        if created.is_none() && st.replicas.unwrap_or(0) >= want {
            created = Some(t0.elapsed());
        }
        if st.ready_replicas.unwrap_or(0) >= want {
            break t0.elapsed();
        }
        if t0.elapsed() > timeout {
            let last = format!(
                "replicas {} ready {}",
                st.replicas.unwrap_or(0),
                st.ready_replicas.unwrap_or(0)
            );
            bail!("not all Ready within {timeout:?}: {last}; server log:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ctrl = procfs::threads_cpu_time(pid, "skiff-ctrl").saturating_sub(ctrl0);
    let all = procfs::threads_cpu_time(pid, "").saturating_sub(all0);
    if let Some(c) = created {
        println!("  all {n} pods created (status.replicas)   {:>8.2} s", c.as_secs_f64());
    }
    target_line(
        "all Ready (status.readyReplicas)",
        ready.as_secs_f64(),
        "s",
        Goal::at_most(args.target_scale_secs),
    );
    println!("  controller-manager CPU time          {:>8.2} s", ctrl.as_secs_f64());
    println!("  whole server CPU time                {:>8.2} s", all.as_secs_f64());
    let (rss, fds) = (server.rss_kib(), procfs::open_fds(pid));
    println!(
        "  server RSS before / after            {:>8} / {} MiB (peak {} MiB; {:.1} KiB per pod)",
        rss0 / 1024,
        rss / 1024,
        server.peak_rss_kib() / 1024,
        rss.saturating_sub(rss0) as f64 / n.max(1) as f64
    );
    println!(
        "  server open fds before / after       {fds0} / {fds} ({:.2} per pod)",
        fds.saturating_sub(fds0) as f64 / n.max(1) as f64
    );
    RequestCounts::read(server.client()).await.since(&requests0).print_per_pod(n);
    Ok(())
}

fn sections(args: &Args) -> Vec<Section> {
    if !args.only.is_empty() {
        let mut s = args.only.clone();
        s.dedup();
        return s;
    }
    let mut s = vec![Section::Start];
    if args.with_containerd || args.containerd_socket.is_some() {
        s.push(Section::Oci);
    }
    s.extend([Section::Density, Section::Http]);
    s
}

/// Fail before anything runs when a section's inputs are missing.
fn check_inputs(args: &Args, sections: &[Section]) -> anyhow::Result<()> {
    let need = |file: &str| -> anyhow::Result<()> {
        let path = args.guests_dir.join(file);
        if !path.is_file() {
            bail!("{} is missing: build the guests with scripts/build-guests.sh", path.display());
        }
        Ok(())
    };
    for s in sections {
        match s {
            Section::Start | Section::Scale => need(&args.start_guest)?,
            Section::Density | Section::Http => need(&args.http_guest)?,
            Section::Oci => {
                if !args.with_containerd && args.containerd_socket.is_none() {
                    bail!("--only oci needs --with-containerd or --containerd-socket SOCK");
                }
            }
        }
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let sections = sections(args);
    check_inputs(args, &sections)?;
    println!(
        "skiff-bench-node: {} ({} CPUs), sections {:?}",
        args.skiff.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sections
    );
    for s in sections {
        match s {
            Section::Start => section_start(args).await.context("start section")?,
            Section::Oci => section_oci(args).await.context("oci section")?,
            Section::Density => section_density(args).await.context("density section")?,
            Section::Http => section_http(args).await.context("http section")?,
            Section::Scale => section_scale(args).await.context("scale section")?,
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On Ctrl-C the run's future is dropped, so its guards stop servers and containerd.
    tokio::select! {
        r = run(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}
