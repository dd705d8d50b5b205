//! Benchmark of custom resources on one `skiff server --disable-agent`, each figure beside its
//! baseline in the same run:
//!
//! 1. objects: `--objects` (10,000) custom objects of about 1 KiB created by `--clients`
//!    concurrent clients, against as many ConfigMaps of the same size: creates/s, and the
//!    server's RSS added by each set;
//! 2. CEL: the same creates for a CRD whose schema carries 10 validation rules, against the
//!    same CRD without rules (creates/s);
//! 3. many CRDs: `--crds` (1,000) CRDs created at once: the time until every one is
//!    Established, discovery with the real kubectl afterwards (`kubectl api-resources`, median
//!    of 5, and a `kubectl get` of one of the kinds, which reads discovery too), and the RSS
//!    they added.
//!
//! `skiff-bench-crd --skiff target/release/skiff [--kubectl .tools/bin/kubectl]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_bench::requests::{JSON, call, create_namespace, settle};
use skiff_bench::{Latencies, Server, ms};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// kubectl, for the discovery figures (skipped when absent).
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// Objects per set (custom objects, ConfigMaps).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// CRDs created at once.
    #[arg(long, default_value_t = 1000)]
    crds: usize,
    /// Objects created with and without CEL rules.
    #[arg(long, default_value_t = 5000)]
    cel_objects: usize,
}

/// About 1 KiB of payload.
fn payload(i: usize) -> String {
    format!("{i:08}-").repeat(100)
}

fn widget_crd(plural: &str, group: &str, kind: &str, rules: usize) -> Value {
    let validations: Vec<Value> = (0..rules)
        .map(|i| match i % 5 {
            0 => json!({"rule": "self.replicas <= self.maxReplicas", "message": "replicas above maxReplicas"}),
            1 => json!({"rule": "self.payload.size() <= 4096"}),
            2 => json!({"rule": "self.color in ['blue', 'green', 'red']"}),
            3 => json!({"rule": "self.replicas >= 0"}),
            _ => json!({"rule": format!("!self.payload.startsWith('forbidden-{i}')")}),
        })
        .collect();
    let mut spec = json!({"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "color": {"type": "string", "maxLength": 16},
        "payload": {"type": "string", "maxLength": 4096},
    }});
    if rules > 0 {
        spec["x-kubernetes-validations"] = json!(validations);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}}]},
    })
}

async fn wait_established(
    client: &kube::Client,
    names: &[String],
    within: Duration,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        let (status, _, body) = call(
            client,
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            JSON,
            JSON,
            Vec::new(),
        )
        .await?;
        if status != StatusCode::OK {
            bail!("listing CRDs: {status}");
        }
        let list: Value = serde_json::from_slice(&body)?;
        let established = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| names.iter().any(|n| c["metadata"]["name"] == n.as_str()))
            .filter(|c| {
                c["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|x| x["type"] == "Established" && x["status"] == "True")
                })
            })
            .count();
        if established == names.len() {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > within {
            bail!("{established} of {} CRDs established after {within:?}", names.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates of `bodies` to `uri` by `clients` clients: creates/s and latencies.
async fn creates(
    client: &kube::Client,
    uri: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> anyhow::Result<(f64, Latencies)> {
    let n = bodies.len();
    let t0 = Instant::now();
    let lat = futures::stream::iter(bodies)
        .map(|body| async move {
            let t = Instant::now();
            let (status, _, text) = call(client, Method::POST, uri, JSON, JSON, body).await?;
            if status != StatusCode::CREATED {
                bail!("create answered {status}: {}", String::from_utf8_lossy(&text));
            }
            Ok::<_, anyhow::Error>(t.elapsed())
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<_>>()
        .await?;
    Ok((n as f64 / t0.elapsed().as_secs_f64(), lat.into_iter().collect()))
}

fn widgets(api_version: &str, kind: &str, n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            serde_json::to_vec(&json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": format!("{prefix}-{i}")},
                "spec": {"replicas": 1, "maxReplicas": 3, "color": "blue", "payload": payload(i)}}))
            .unwrap_or_default()
        })
        .collect()
}

fn config_maps(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}")},
                "data": {"replicas": "1", "maxReplicas": "3", "color": "blue", "payload": payload(i)}}))
            .unwrap_or_default()
        })
        .collect()
}

fn kubectl_ms(
    kubectl: &PathBuf,
    kubeconfig: &std::path::Path,
    home: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = std::process::Command::new(kubectl)
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(ms(t.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::builder(&args.skiff, &format!("skiff-bench-crd-{}", std::process::id()))
        .disable_agent()
        .log_to_file()
        .start()
        .await?;
    let admin = server.client().clone();
    let pid = server.pid();
    create_namespace(&admin, "bench").await?;

    // 1. Custom objects against ConfigMaps.
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    for (plural, rules) in [("widgets", 0), ("ruledwidgets", 10)] {
        let kind = if rules == 0 { "Widget" } else { "RuledWidget" };
        let body = serde_json::to_vec(&widget_crd(plural, "bench.skiff.test", kind, rules))?;
        let (status, _, text) = call(&admin, Method::POST, crds, JSON, JSON, body).await?;
        if status != StatusCode::CREATED {
            bail!("creating the CRD: {status} {}", String::from_utf8_lossy(&text));
        }
    }
    wait_established(
        &admin,
        &["widgets.bench.skiff.test".into(), "ruledwidgets.bench.skiff.test".into()],
        Duration::from_secs(30),
    )
    .await?;
    settle(&[pid]).await;
    let before = server.rss_kib();
    let (cm_rate, cm_lat) = creates(
        &admin,
        "/api/v1/namespaces/bench/configmaps",
        config_maps(args.objects),
        args.clients,
    )
    .await?;
    settle(&[pid]).await;
    let after_cms = server.rss_kib();
    let (cr_rate, cr_lat) = creates(
        &admin,
        "/apis/bench.skiff.test/v1/namespaces/bench/widgets",
        widgets("bench.skiff.test/v1", "Widget", args.objects, "w"),
        args.clients,
    )
    .await?;
    settle(&[pid]).await;
    let after_crs = server.rss_kib();
    let cm_rss = after_cms.saturating_sub(before) as f64 / 1024.0;
    let cr_rss = after_crs.saturating_sub(after_cms) as f64 / 1024.0;
    println!("objects ({} of ~1 KiB, {} clients):", args.objects, args.clients);
    println!(
        "  ConfigMaps      {cm_rate:>8.0} creates/s  p50 {:.1} ms  p99 {:.1} ms  RSS +{cm_rss:.1} MiB",
        ms(cm_lat.p50()),
        ms(cm_lat.p99())
    );
    println!(
        "  custom objects  {cr_rate:>8.0} creates/s  p50 {:.1} ms  p99 {:.1} ms  RSS +{cr_rss:.1} MiB",
        ms(cr_lat.p50()),
        ms(cr_lat.p99())
    );
    println!(
        "  ratio           {:.2}x creates/s (target >= 0.9x), {:.2}x RSS (target <= 1.2x)",
        cr_rate / cm_rate,
        cr_rss / cm_rss.max(0.1)
    );

    // 2. CEL rules: the same objects with and without 10 rules, alternating rounds.
    let mut plain = Vec::new();
    let mut ruled = Vec::new();
    for round in 0..2 {
        let n = args.cel_objects / 2;
        let (r, _) = creates(
            &admin,
            "/apis/bench.skiff.test/v1/namespaces/bench/widgets",
            widgets("bench.skiff.test/v1", "Widget", n, &format!("p{round}")),
            args.clients,
        )
        .await?;
        plain.push(r);
        let (r, _) = creates(
            &admin,
            "/apis/bench.skiff.test/v1/namespaces/bench/ruledwidgets",
            widgets("bench.skiff.test/v1", "RuledWidget", n, &format!("r{round}")),
            args.clients,
        )
        .await?;
        ruled.push(r);
    }
    let (p, r) = (plain.iter().sum::<f64>() / 2.0, ruled.iter().sum::<f64>() / 2.0);
    println!("CEL ({} objects each):", args.cel_objects);
    println!("  no rules  {p:>8.0} creates/s");
    println!("  10 rules  {r:>8.0} creates/s  ({:.2}x, target >= 0.8x)", r / p);

    // 3. Many CRDs at once.
    settle(&[pid]).await;
    let before = server.rss_kib();
    let names: Vec<String> =
        (0..args.crds).map(|i| format!("things{i}.g{i}.bench.skiff.test")).collect();
    let bodies: Vec<Vec<u8>> = (0..args.crds)
        .map(|i| {
            serde_json::to_vec(&widget_crd(
                &format!("things{i}"),
                &format!("g{i}.bench.skiff.test"),
                &format!("Thing{i}"),
                0,
            ))
            .unwrap_or_default()
        })
        .collect();
    let t0 = Instant::now();
    creates(&admin, crds, bodies, args.clients.min(16)).await.context("creating the CRDs")?;
    let created = t0.elapsed();
    wait_established(&admin, &names, Duration::from_secs(300)).await?;
    let established = t0.elapsed();
    settle(&[pid]).await;
    let added = server.rss_kib().saturating_sub(before) as f64 / 1024.0;
    println!("{} CRDs:", args.crds);
    println!("  created in {:.0} ms, all Established after {:.0} ms", ms(created), ms(established));
    println!("  RSS +{added:.1} MiB (target < 200 MB)");
    match &args.kubectl {
        Some(kubectl) => {
            let kubeconfig = server.dir().join("kubeconfig.yaml");
            let home = server.dir().join("kubectl-home");
            std::fs::create_dir_all(&home)?;
            let mut resources = Vec::new();
            let mut gets = Vec::new();
            for i in 0..5 {
                // A fresh discovery cache each time: kubectl reads all of discovery.
                let _ = std::fs::remove_dir_all(home.join(".kube/cache"));
                resources.push(kubectl_ms(
                    kubectl,
                    &kubeconfig,
                    &home,
                    &["api-resources", "-o", "name"],
                )?);
                let _ = std::fs::remove_dir_all(home.join(".kube/cache"));
                let kind = format!("things{}", (i * 97) % args.crds);
                gets.push(kubectl_ms(kubectl, &kubeconfig, &home, &["get", &kind, "-A"])?);
            }
            resources.sort_by(f64::total_cmp);
            gets.sort_by(f64::total_cmp);
            println!(
                "  kubectl api-resources (cold cache) median {:.0} ms; kubectl get <custom kind> median {:.0} ms (target < 100 ms)",
                resources[2], gets[2]
            );
            let t = Instant::now();
            let (status, _, body) = call(
                &admin,
                Method::GET,
                "/apis",
                JSON,
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                Vec::new(),
            )
            .await?;
            println!(
                "  aggregated /apis: {status}, {} KiB in {:.1} ms",
                body.len() / 1024,
                ms(t.elapsed())
            );
        }
        None => println!("  (no --kubectl: discovery latency not measured)"),
    }
    Ok(())
}
