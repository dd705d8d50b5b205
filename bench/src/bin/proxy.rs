//! Benchmark of the node proxy's nftables syncs, in a network namespace of its own (created
//! first thing, so the host's rules are never touched): for 1,000 and 10,000 Services of 4
//! endpoints each, the full sync (compute, render, `nft -f` of the whole table) and then
//! single-slice endpoint changes from the change to the rule in force (the `nft` transaction
//! returned), as p50/p99.
//!
//! `skiff-bench-proxy [--services 1000,10000] [--endpoints 4] [--changes 200]` (as root).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_bench::{Goal, Latencies, ms};
use skiff_proxy::{Proxy, ProxyOptions};

#[derive(Parser)]
struct Args {
    /// Service counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    services: Vec<usize>,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Endpoint changes timed per Service count.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Write each full sync's transaction to DIR/full-N.nft (to replay with `nft -f`).
    #[arg(long)]
    dump_dir: Option<std::path::PathBuf>,
}

/// The i-th address of a /12 starting at `base`.
fn addr(base: [u8; 2], i: usize) -> String {
    format!("{}.{}.{}.{}", base[0], usize::from(base[1]) + (i >> 16), (i >> 8) & 255, i & 255)
}

fn service(i: usize) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(format!("ns-{}", i % 50)),
            name: Some(format!("svc-{i}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(addr([10, 96], i + 1)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The slice of Service `i`; `generation` shifts the endpoints' addresses.
fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(format!("ns-{}", i % 50)),
            name: Some(format!("svc-{i}-abcde")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                format!("svc-{i}"),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: (0..endpoints)
            .map(|e| Endpoint {
                // The first endpoint is the one that changes.
                addresses: vec![addr(
                    [10, 128],
                    (i * endpoints + e) * 4 + usize::from(e == 0) * (generation % 4),
                )],
                node_name: Some(format!("node-{}", e % 3)),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// Enter a new network namespace (this process is single-threaded here, so the whole
/// process moves) and bring its loopback up.
fn own_netns() -> anyhow::Result<()> {
    // SAFETY: unshare touches no memory; called before any other thread exists.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "cannot create a network namespace (root needed): {}",
            std::io::Error::last_os_error()
        );
    }
    let ok = Command::new("ip").args(["link", "set", "lo", "up"]).status()?.success();
    if !ok {
        bail!("cannot bring lo up");
    }
    Ok(())
}

struct Outcome {
    services: usize,
    full: Duration,
    full_bytes: usize,
    changes: Latencies,
    change_bytes: usize,
}

fn measure(args: &Args, services: usize) -> anyhow::Result<Outcome> {
    let mut opts = ProxyOptions::new("node-0");
    opts.table = "skiff-bench".into();
    // No routes: only the rules are measured.
    let proxy = Proxy::new(opts)?;
    for i in 0..services {
        proxy.update_service(&service(i));
        proxy.update_endpoint_slice(&slice(i, args.endpoints, 0));
    }
    let start = Instant::now();
    let report = proxy.sync().context("full sync")?;
    let full = start.elapsed();
    let text = report.transaction.map(|t| t.text).unwrap_or_default();
    let full_bytes = text.len();
    if let Some(dir) = &args.dump_dir {
        std::fs::write(dir.join(format!("full-{services}.nft")), &text)?;
    }
    let mut samples = Vec::with_capacity(args.changes);
    let mut change_bytes = 0;
    for c in 0..args.changes {
        // Spread over the Services, never the same one twice in a row.
        let i = (c * 7919) % services;
        let changed = slice(i, args.endpoints, c + 1);
        let start = Instant::now();
        proxy.update_endpoint_slice(&changed);
        let report = proxy.sync().context("endpoint change")?;
        samples.push(start.elapsed());
        change_bytes = change_bytes.max(report.transaction.map(|t| t.text.len()).unwrap_or(0));
    }
    let listing = Command::new("nft").args(["list", "table", "ip", "skiff-bench"]).output()?;
    let chains = String::from_utf8_lossy(&listing.stdout).matches("\tchain ").count();
    println!(
        "  {services} Services × {} endpoints: table of {chains} chains after {} changes",
        args.endpoints, args.changes
    );
    Ok(Outcome { services, full, full_bytes, changes: Latencies::new(samples), change_bytes })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    own_netns()?;
    let build = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!("Node proxy nftables syncs ({build}, own network namespace, nft through `nft -f -`)");
    let mut outcomes = Vec::new();
    for &n in &args.services {
        outcomes.push(measure(&args, n).with_context(|| format!("{n} Services"))?);
    }
    let full_goal = Goal::at_most(1000.0);
    let change_goal = Goal::at_most(50.0);
    println!();
    println!(
        "{:>9} {:>13} {:>10} {:>8} {:>11} {:>11} {:>11} {:>9}",
        "services",
        "full sync",
        "tx size",
        "changes",
        "change p50",
        "change p99",
        "change max",
        "delta tx"
    );
    for o in &outcomes {
        println!(
            "{:>9} {:>10.1} ms {:>7} KiB {:>8} {:>8.2} ms {:>8.2} ms {:>8.2} ms {:>5} B",
            o.services,
            ms(o.full),
            o.full_bytes / 1024,
            o.changes.len(),
            ms(o.changes.p50()),
            ms(o.changes.p99()),
            ms(o.changes.max()),
            o.change_bytes,
        );
    }
    println!();
    for o in &outcomes {
        let (f, c) = (ms(o.full), ms(o.changes.p99()));
        println!(
            "{:>9}: full sync {:.0} ms (target {} {:.0} ms: {}), endpoint change p99 {:.1} ms (target {} {:.0} ms: {})",
            o.services,
            f,
            full_goal.comparison(),
            full_goal.target,
            if o.services >= 10_000 { full_goal.verdict(f) } else { "n/a" },
            c,
            change_goal.comparison(),
            change_goal.target,
            change_goal.verdict(c),
        );
    }
    Ok(())
}
