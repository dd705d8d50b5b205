//! Benchmark of the api server with its embedded store: pod creates (JSON and protobuf bodies,
//! 1 and 64 clients), lists of 10,000 pods, and a burst of writes fanned out to 1,000 watchers.
//! It starts `skiff server --disable-agent` on a fresh data dir and speaks HTTPS to it like any
//! client (kube::Client from the kubeconfig the server writes), then prints a table.
//!
//! `skiff-bench-api --skiff target/release/skiff`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode};
use skiff_bench::{Goal, Latencies, Server, ms};

use skiff_bench::requests::{
    Creates, JSON, PROTOBUF, call, create_namespace, create_pods_in, idle_cpu, post_json, settle,
};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// Pods created by the single client (per body encoding).
    #[arg(long, default_value_t = 1000)]
    serial_pods: usize,
    /// Pods created by the concurrent clients (per body encoding); the JSON namespace's pods
    /// are the ones listed.
    #[arg(long, default_value_t = 10_000)]
    concurrent_pods: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Lists per encoding (best and median are printed).
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// ConfigMaps created in the burst the watchers receive.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// Concurrent writers of the burst.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Pods created per round of the authorization comparison (0 skips it).
    #[arg(long, default_value_t = 3000)]
    authz_pods: usize,
    /// Run only the authorization comparison.
    #[arg(long)]
    only_authz: bool,
    /// Rounds of the authorization comparison (each creates `authz_pods` on both servers).
    #[arg(long, default_value_t = 5)]
    authz_rounds: usize,
    /// Roles, and as many RoleBindings, loaded on both servers before the comparison (spread
    /// over 100 namespaces), so RBAC decides against a policy of a real cluster's size.
    #[arg(long, default_value_t = 1000)]
    authz_policy: usize,
    /// `kubectl auth can-i` questions (SelfSubjectAccessReviews, one client) timed per server.
    #[arg(long, default_value_t = 2000)]
    authz_reviews: usize,
    /// Targets (printed next to the figures with the ratio).
    #[arg(long, default_value_t = 3000.0)]
    target_creates_per_s: f64,
    #[arg(long, default_value_t = 50.0)]
    target_p99_ms: f64,
    #[arg(long, default_value_t = 300.0)]
    target_list_ms: f64,
}

/// Create `n` pods in `ns` with `clients` requests in flight; every answer must be 201.
async fn create_pods(
    client: &kube::Client,
    ns: &str,
    n: usize,
    clients: usize,
    content_type: &'static str,
) -> anyhow::Result<Creates> {
    create_namespace(client, ns).await?;
    create_pods_in(client, ns, n, clients, content_type).await
}

struct Lists {
    best: Duration,
    median: Duration,
    bytes: usize,
    items_ok: bool,
    content_type: String,
}

async fn list_pods(
    client: &kube::Client,
    ns: &str,
    accept: &str,
    runs: usize,
    expected: usize,
) -> anyhow::Result<Lists> {
    let uri = format!("/api/v1/namespaces/{ns}/pods");
    let mut times = Vec::new();
    let (mut bytes, mut items_ok, mut content_type) = (0, false, String::new());
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let (status, ct, body) = call(client, Method::GET, &uri, JSON, accept, Vec::new()).await?;
        times.push(t.elapsed());
        if status != StatusCode::OK {
            bail!("list answered {status}: {}", String::from_utf8_lossy(&body));
        }
        bytes = body.len();
        content_type = ct;
        // Check the answer once per encoding, outside the timing.
        if !items_ok {
            let list: serde_json::Value = if content_type.starts_with(PROTOBUF) {
                skiff_api::protobuf::decode(&body).context("decoding the protobuf list")?
            } else {
                serde_json::from_slice(&body)?
            };
            let n = list["items"].as_array().map_or(0, Vec::len);
            if n != expected {
                bail!("list of {ns} has {n} pods, expected {expected}");
            }
            items_ok = true;
        }
    }
    times.sort();
    Ok(Lists { best: times[0], median: times[times.len() / 2], bytes, items_ok, content_type })
}

struct Fanout {
    establish: Duration,
    burst_writes: Duration,
    all_delivered: Duration,
    after_send: Latencies,
    after_ack: Latencies,
    before_ack: usize,
    write_latencies: Latencies,
}

/// `"name":"PREFIXdigits"` in a watch line: the digits.
fn numbered_name(line: &str, prefix: &str) -> Option<usize> {
    let pat = format!("\"name\":\"{prefix}");
    let start = line.find(&pat)? + pat.len();
    let digits = line[start..].bytes().take_while(u8::is_ascii_digit).count();
    line[start..start + digits].parse().ok()
}

async fn watch_fanout(
    client: &kube::Client,
    ns: &str,
    watchers: usize,
    burst: usize,
    writers: usize,
) -> anyhow::Result<Fanout> {
    create_namespace(client, ns).await?;
    let confirmed = Arc::new(AtomicUsize::new(0));
    let t_establish = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let client = client.clone();
        let confirmed = confirmed.clone();
        let uri = format!("/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1800");
        tasks.push(tokio::spawn(async move {
            let req = Request::builder().uri(uri).body(Vec::new())?;
            let mut stream = Box::pin(client.request_stream(req).await?);
            let mut received = Vec::with_capacity(burst);
            let mut seen = vec![false; burst];
            let mut is_confirmed = false;
            let mut line = String::new();
            while received.len() < burst {
                line.clear();
                if stream.read_line(&mut line).await? == 0 {
                    bail!("watch ended after {} of {burst} events", received.len());
                }
                let now = Instant::now();
                // Only creates happen in the namespace: the first line naming an object is
                // its ADDED event.
                if let Some(i) = numbered_name(&line, "burst-") {
                    if i < burst && !seen[i] {
                        seen[i] = true;
                        received.push((i, now));
                    }
                } else if !is_confirmed && numbered_name(&line, "ready-").is_some() {
                    is_confirmed = true;
                    confirmed.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok::<_, anyhow::Error>(received)
        }));
    }
    // Every watcher is confirmed once it has received a `ready-K` ConfigMap written after its
    // watch began; write one every second until all have.
    let cm = |name: String| {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "data": {"key": "value", "index": name}
        }))
    };
    let uri = format!("/api/v1/namespaces/{ns}/configmaps");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut k = 0;
    while confirmed.load(Ordering::SeqCst) < watchers {
        if Instant::now() > deadline {
            bail!(
                "only {} of {watchers} watchers confirmed after 120 s",
                confirmed.load(Ordering::SeqCst)
            );
        }
        if tasks.iter().any(|t| t.is_finished()) {
            bail!("a watcher ended before the burst");
        }
        let (status, _, text) =
            call(client, Method::POST, &uri, JSON, JSON, cm(format!("ready-{k}"))?).await?;
        if status != StatusCode::CREATED {
            bail!("sentinel create answered {status}: {}", String::from_utf8_lossy(&text));
        }
        k += 1;
        let wait = Instant::now() + Duration::from_secs(1);
        while Instant::now() < wait && confirmed.load(Ordering::SeqCst) < watchers {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let establish = t_establish.elapsed();

    let bodies = (0..burst).map(|i| cm(format!("burst-{i}"))).collect::<Result<Vec<_>, _>>()?;
    let t_burst = Instant::now();
    let mut writes = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let uri = uri.clone();
            async move {
                let sent = Instant::now();
                let (status, _, text) = call(client, Method::POST, &uri, JSON, JSON, body).await?;
                let acked = Instant::now();
                if status != StatusCode::CREATED {
                    bail!("burst create answered {status}: {}", String::from_utf8_lossy(&text));
                }
                Ok::<_, anyhow::Error>((i, sent, acked))
            }
        })
        .buffer_unordered(writers)
        .try_collect::<Vec<_>>()
        .await?;
    let burst_writes = t_burst.elapsed();
    writes.sort_by_key(|w| w.0);
    let write_latencies = writes.iter().map(|(_, s, a)| *a - *s).collect();

    let mut after_send = Vec::with_capacity(watchers * burst);
    let mut after_ack = Vec::with_capacity(watchers * burst);
    let (mut before_ack, mut last) = (0, t_burst);
    let all = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(tasks))
        .await
        .context("the watchers did not receive every event within 300 s")?;
    for received in all {
        for (i, at) in received?? {
            let (_, sent, acked) = writes[i];
            after_send.push(at - sent);
            if at < acked {
                before_ack += 1;
            }
            after_ack.push(at.saturating_duration_since(acked));
            last = last.max(at);
        }
    }
    Ok(Fanout {
        establish,
        burst_writes,
        all_delivered: last - t_burst,
        after_send: Latencies::new(after_send),
        after_ack: Latencies::new(after_ack),
        before_ack,
        write_latencies,
    })
}

fn ratio_line(label: &str, measured: f64, unit: &str, goal: Goal) {
    println!(
        "  {label:<44} {measured:>10.1} {unit:<6} target {} {:<8} ratio {:>5.2}  {}",
        goal.comparison(),
        goal.target,
        measured / goal.target,
        goal.verdict(measured)
    );
}

fn print_creates(label: &str, c: &Creates) {
    let per_s = c.latencies.len() as f64 / c.elapsed.as_secs_f64();
    println!(
        "  {label:<44} {:>6} pods {:>8.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms{}",
        c.latencies.len(),
        per_s,
        ms(c.latencies.p50()),
        ms(c.latencies.p99()),
        ms(c.latencies.max()),
        if c.other_content_type > 0 {
            format!("   ({} answers not in the asked content type)", c.other_content_type)
        } else {
            String::new()
        }
    );
}

fn print_list(label: &str, l: &Lists) {
    println!(
        "  {label:<44} best {:>7.1} ms   median {:>7.1} ms   {:>10} bytes ({:.1} MiB)   {}{}",
        ms(l.best),
        ms(l.median),
        l.bytes,
        l.bytes as f64 / (1024.0 * 1024.0),
        l.content_type,
        if l.items_ok { "" } else { "  (items not checked)" }
    );
}

/// A client of `server` that authenticates as service account `bench-authz/creator`, bound
/// to `edit` in the namespaces `ns` (not `system:masters`: every request is authorized).
async fn service_account_client(
    server: &Server,
    namespaces: &[String],
) -> anyhow::Result<kube::Client> {
    let admin = server.client();
    create_namespace(admin, "bench-authz").await?;
    let post = |uri: String, body: serde_json::Value| post_json(admin, uri, body);
    post(
        "/api/v1/namespaces/bench-authz/serviceaccounts".into(),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "creator"}}),
    )
    .await?;
    for ns in namespaces {
        create_namespace(admin, ns).await?;
        post(
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "creator-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "creator", "namespace": "bench-authz"}]}),
        )
        .await?;
    }
    let answer = post(
        "/api/v1/namespaces/bench-authz/serviceaccounts/creator/token".into(),
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}),
    )
    .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let token =
        answer["status"]["token"].as_str().context("no token in the TokenRequest answer")?;
    let admin_config = std::fs::read_to_string(server.dir().join("kubeconfig.yaml"))?;
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&admin_config)?;
    doc["users"][0]["user"] = serde_yaml_ng::from_str(&format!("token: {token:?}"))?;
    let path = server.dir().join("creator.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&doc)?)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Pod creates/s by a service account (64 clients, JSON) on a server authorizing with RBAC and
/// on one allowing everything, in alternating rounds of the same run.
async fn authz_comparison(args: &Args) -> anyhow::Result<()> {
    println!();
    println!(
        "Authorization on the hot path: {} pods per round, {} clients, JSON, created by a \
         service account bound to `edit` (RBAC decides every request), {} rounds alternating \
         between `--authorization-mode Node,RBAC` and `AlwaysAllow`",
        args.authz_pods, args.clients, args.authz_rounds
    );
    let namespaces: Vec<String> = (0..args.authz_rounds).map(|r| format!("authz-{r}")).collect();
    let mut servers = Vec::new();
    for mode in ["Node,RBAC", "AlwaysAllow"] {
        let server = Server::builder(
            &args.skiff,
            &format!("skiff-bench-api-authz-{}-{}", mode.replace(',', "-"), std::process::id()),
        )
        .disable_agent()
        .args(["--authorization-mode", mode])
        .start()
        .await?;
        let client = service_account_client(&server, &namespaces).await?;
        load_policy(server.client(), args.authz_policy).await.context("loading the policy")?;
        servers.push((mode, server, client));
    }
    let pids: Vec<u32> = servers.iter().map(|(_, server, _)| server.pid()).collect();
    let mut rates: [Vec<f64>; 2] = Default::default();
    for (round, ns) in namespaces.iter().enumerate() {
        // Each round starts with both servers quiet (the scheduler's status writes for the
        // last round's Pending pods done), and the server that goes first alternates.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (mode, _, client) = &servers[i];
            settle(&pids).await;
            let c = create_pods_in(client, ns, args.authz_pods, args.clients, JSON)
                .await
                .with_context(|| format!("creates with {mode}"))?;
            let rate = args.authz_pods as f64 / c.elapsed.as_secs_f64();
            println!(
                "  {ns} {mode:<12} {rate:>8.0} creates/s  p50 {:>6.1} ms  p99 {:>6.1} ms",
                ms(c.latencies.p50()),
                ms(c.latencies.p99())
            );
            rates[i].push(rate);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (rbac, open) = (median(&rates[0]), median(&rates[1]));
    println!(
        "  median round: RBAC {rbac:.0}/s, AlwaysAllow {open:.0}/s: RBAC on / off = {:.3} \
         (target >= 0.95)",
        rbac / open
    );
    println!();
    println!(
        "`kubectl auth can-i create pods` as the service account ({} SelfSubjectAccessReviews \
         per server, 1 client, HTTPS round trip, alternating between the servers request by \
         request; the AlwaysAllow server gives the cost of the round trip alone)",
        args.authz_reviews
    );
    settle(&pids).await;
    let reviews = access_reviews(&servers, &namespaces[0], args.authz_reviews).await?;
    for ((mode, _, _), l) in servers.iter().zip(&reviews) {
        println!(
            "  {mode:<12} p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs",
            l.p50().as_secs_f64() * 1e6,
            l.p99().as_secs_f64() * 1e6,
            l.max().as_secs_f64() * 1e6
        );
    }
    println!(
        "  RBAC's share: p50 {:+.0} µs, p99 {:+.0} µs (the authorizer alone: skiff-bench-authz)",
        (reviews[0].p50().as_secs_f64() - reviews[1].p50().as_secs_f64()) * 1e6,
        (reviews[0].p99().as_secs_f64() - reviews[1].p99().as_secs_f64()) * 1e6
    );
    Ok(())
}

/// `n` Roles and `n` RoleBindings over 100 namespaces `policy-*`, each Role with a few rules and
/// each binding naming a user, a group and a service account, as teams' charts ship them.
async fn load_policy(admin: &kube::Client, n: usize) -> anyhow::Result<()> {
    let spaces = n.clamp(1, 100);
    for ns in 0..spaces {
        create_namespace(admin, &format!("policy-{ns}")).await?;
    }
    let post = |uri: String, body: serde_json::Value| async move {
        post_json(admin, uri, body).await.map(drop)
    };
    futures::stream::iter(0..n)
        .map(|i| {
            let ns = format!("policy-{}", i % spaces);
            async move {
                post(
                    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
                    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": format!("role-{i}")},
                        "rules": [
                            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
                            {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "update", "patch"]},
                            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [format!("settings-{i}")], "verbs": ["update"]}
                        ]}),
                )
                .await?;
                post(
                    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
                    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": format!("binding-{i}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
                        "subjects": [
                            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{i}")},
                            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("team-{}", i % 50)},
                            {"kind": "ServiceAccount", "name": format!("robot-{i}"), "namespace": ns}
                        ]}),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Times `n` SelfSubjectAccessReviews (`kubectl auth can-i create pods -n NS`) on each of
/// `servers`, one request at a time, taking the servers in turn so that both see the same
/// conditions.
async fn access_reviews(
    servers: &[(&str, Server, kube::Client)],
    ns: &str,
    n: usize,
) -> anyhow::Result<Vec<Latencies>> {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": ns, "verb": "create", "resource": "pods"}}
    }))?;
    let uri = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let mut samples = vec![Vec::with_capacity(n); servers.len()];
    for i in 0..n + n / 10 {
        for (sample, (_, _, client)) in samples.iter_mut().zip(servers) {
            let start = Instant::now();
            let (status, _, text) =
                call(client, Method::POST, uri, JSON, JSON, body.clone()).await?;
            let took = start.elapsed();
            if !status.is_success() {
                bail!("POST {uri}: {status} {}", String::from_utf8_lossy(&text));
            }
            let answer: serde_json::Value = serde_json::from_slice(&text)?;
            if answer["status"]["allowed"] != true {
                bail!("the service account may create pods in {ns}, but the review says {answer}");
            }
            // The first tenth warms the connections and caches and is not counted.
            if i >= n / 10 {
                sample.push(took);
            }
        }
    }
    Ok(samples.into_iter().map(Latencies::new).collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.only_authz {
        return authz_comparison(&args).await;
    }
    let server = Server::builder(&args.skiff, &format!("skiff-bench-api-{}", std::process::id()))
        .disable_agent()
        .start()
        .await?;
    let (client, startup, pid) = (server.client().clone(), server.started_in(), server.pid());
    // Open the connections the concurrent clients will use, so the first measured requests do
    // not pay for TLS handshakes.
    futures::stream::iter(0..args.clients.max(args.writers))
        .map(|_| call(&client, Method::GET, "/api/v1/namespaces/default", JSON, JSON, Vec::new()))
        .buffer_unordered(args.clients.max(args.writers))
        .try_collect::<Vec<_>>()
        .await?;
    let rss_idle = server.rss_kib();
    let cpu_idle = idle_cpu(pid, Duration::from_secs(3)).await;

    println!(
        "skiff-bench-api: `skiff server --disable-agent` (embedded store, fsync on, no node), \
         HTTPS on loopback, client and server on the same machine ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  Pods stay Pending (no node daemon), but the scheduler still tries each one and writes \
         its PodScheduled=False (Unschedulable) status: status writes run alongside and after \
         the creates."
    );
    println!(
        "  server ready after start {:.0} ms; server CPU while no request is sent: {:.0}% of a core",
        ms(startup),
        cpu_idle * 100.0
    );
    println!();
    println!("Pod creates (latency = request sent until the 201 answer is read)");
    let json_1 =
        create_pods(&client, "bench-json-1", args.serial_pods, 1, JSON).await.context("json 1")?;
    print_creates("JSON, 1 client", &json_1);
    let json_n = create_pods(&client, "bench-json-n", args.concurrent_pods, args.clients, JSON)
        .await
        .context("json N")?;
    print_creates(&format!("JSON, {} clients", args.clients), &json_n);
    let pb_1 = create_pods(&client, "bench-pb-1", args.serial_pods, 1, PROTOBUF)
        .await
        .context("protobuf 1")?;
    print_creates("protobuf, 1 client", &pb_1);
    let pb_n = create_pods(&client, "bench-pb-n", args.concurrent_pods, args.clients, PROTOBUF)
        .await
        .context("protobuf N")?;
    print_creates(&format!("protobuf, {} clients", args.clients), &pb_n);
    let rss_pods = server.rss_kib();
    let cpu_after_pods = idle_cpu(pid, Duration::from_secs(5)).await;
    println!(
        "  server CPU in the 5 s after the creates, while no request is sent: {:.0}% of a core \
         (background work on the Pending pods)",
        cpu_after_pods * 100.0
    );

    println!();
    println!(
        "List of {} pods in one namespace ({} runs each; time until the whole body is read)",
        args.concurrent_pods, args.lists
    );
    let list_json = list_pods(&client, "bench-json-n", JSON, args.lists, args.concurrent_pods)
        .await
        .context("list json")?;
    print_list("JSON", &list_json);
    let list_pb = list_pods(&client, "bench-json-n", PROTOBUF, args.lists, args.concurrent_pods)
        .await
        .context("list protobuf")?;
    print_list("protobuf", &list_pb);

    println!();
    println!(
        "Watch fan-out: {} watchers (one watch request each, JSON) on one namespace's ConfigMaps, \
         burst of {} creates by {} writers",
        args.watchers, args.burst, args.writers
    );
    let fan = watch_fanout(&client, "bench-watch", args.watchers, args.burst, args.writers)
        .await
        .context("watch fan-out")?;
    println!(
        "  {:<44} {:>8.0} ms (watch requests sent until every watcher has seen a write)",
        "watchers established and confirmed",
        ms(fan.establish)
    );
    println!(
        "  {:<44} {:>8.0} ms   ({:.0} creates/s, p50 {:.1} ms, p99 {:.1} ms)",
        "burst written (all 201s)",
        ms(fan.burst_writes),
        args.burst as f64 / fan.burst_writes.as_secs_f64(),
        ms(fan.write_latencies.p50()),
        ms(fan.write_latencies.p99())
    );
    println!(
        "  {:<44} {:>8.0} ms   ({} deliveries, {:.0}/s)",
        "every watcher has every event",
        ms(fan.all_delivered),
        fan.after_send.len(),
        fan.after_send.len() as f64 / fan.all_delivered.as_secs_f64()
    );
    for (label, lat) in [
        ("delivery after the write was sent", &fan.after_send),
        ("delivery after the write was acknowledged", &fan.after_ack),
    ] {
        println!(
            "  {label:<44} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
            ms(lat.p50()),
            ms(lat.p99()),
            ms(lat.max())
        );
    }
    println!(
        "  ({} of {} deliveries arrived before their writer read the 201; counted as 0 ms \
         after the acknowledgement)",
        fan.before_ack,
        fan.after_ack.len()
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = server.rss_kib();
    let hwm = server.peak_rss_kib();
    println!();
    println!("Server memory");
    println!("  {:<44} {:>8.1} MiB", "VmRSS idle (before the pods)", rss_idle as f64 / 1024.0);
    println!(
        "  {:<44} {:>8.1} MiB",
        format!("VmRSS after {} pod creates", 2 * (args.serial_pods + args.concurrent_pods)),
        rss_pods as f64 / 1024.0
    );
    println!("  {:<44} {:>8.1} MiB", "VmRSS at the end", rss as f64 / 1024.0);
    println!("  {:<44} {:>8.1} MiB", "VmHWM (peak)", hwm as f64 / 1024.0);

    println!();
    println!("Targets");
    for (label, c) in [("JSON", &json_n), ("protobuf", &pb_n)] {
        ratio_line(
            &format!("creates/s, {label}, {} clients", args.clients),
            c.latencies.len() as f64 / c.elapsed.as_secs_f64(),
            "/s",
            Goal::at_least(args.target_creates_per_s),
        );
    }
    let (json_label, pb_label) =
        (format!("JSON, {} clients", args.clients), format!("protobuf, {} clients", args.clients));
    for (label, c) in [
        ("JSON, 1 client", &json_1),
        (json_label.as_str(), &json_n),
        ("protobuf, 1 client", &pb_1),
        (pb_label.as_str(), &pb_n),
    ] {
        ratio_line(
            &format!("p99 create latency, {label}"),
            ms(c.latencies.p99()),
            "ms",
            Goal::at_most(args.target_p99_ms),
        );
    }
    for (label, l) in [("JSON", &list_json), ("protobuf", &list_pb)] {
        ratio_line(
            &format!("list of {} pods, {label} (median)", args.concurrent_pods),
            ms(l.median),
            "ms",
            Goal::at_most(args.target_list_ms),
        );
    }
    drop(server);
    if args.authz_pods > 0 {
        authz_comparison(&args).await?;
    }
    Ok(())
}
