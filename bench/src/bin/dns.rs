//! Benchmark of the cluster DNS (`skiff-dns`): the server in this process on 127.0.0.1:0, fed
//! N Services directly (no API server), driven over loopback UDP.
//!
//! Sections (both by default; `--only dnsperf,udp` picks some):
//! - `dnsperf`: Debian's `dnsperf` for `--seconds` (at most 15), `--dnsperf-clients` sockets:
//!   queries/s and its average latency and deviation.
//! - `udp`: our own load generator (std threads, each keeping `--window` queries in flight),
//!   bounded by `--queries` and `--seconds`: queries/s and each query's round trip, p50/p99/max.
//!   By Little's law its latency is (queries in flight) / (queries/s): keep the window small to
//!   read the server's latency, not the queue's.
//!
//! The query mix: 80 % A of ClusterIP Services, 10 % A of headless Services, 5 % SRV of a named
//! port, 5 % NXDOMAIN. CoreDNS's published in-cluster figure is ~33.7k queries/s.
//!
//! `skiff-bench-dns --services 1000 --seconds 10`

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_bench::{Goal, Latencies, ms};
use skiff_dns::{ClusterDns, DnsOptions};

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Section {
    Dnsperf,
    Udp,
}

#[derive(Parser)]
struct Args {
    /// Sections to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Section::Dnsperf, Section::Udp])]
    only: Vec<Section>,
    /// Services in the cache (one in ten headless with 3 endpoints), over 10 namespaces.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Length of each section, seconds (at most 15).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tokio worker threads of the server.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// UDP sockets (SO_REUSEPORT) the server receives on.
    #[arg(long, default_value_t = 2)]
    udp_sockets: usize,
    #[arg(long, default_value = "dnsperf")]
    dnsperf: PathBuf,
    /// dnsperf's `-c`: client sockets.
    #[arg(long, default_value_t = 8)]
    dnsperf_clients: usize,
    /// dnsperf's `-Q`: a ceiling on queries/s (none by default).
    #[arg(long)]
    max_qps: Option<u64>,
    /// Load generator threads (`udp`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Queries each generator thread keeps in flight (`udp`).
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Most queries the generator sends in all (`udp`).
    #[arg(long, default_value_t = 1_000_000)]
    queries: usize,
}

const TARGET_QPS: f64 = 40_000.0;
const TARGET_P99_MS: f64 = 1.0;
const NAMESPACES: usize = 10;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

fn headless(i: usize) -> bool {
    i % 10 == 9
}

/// Service `i` and, when headless, its slice.
fn objects(i: usize) -> (Service, Option<EndpointSlice>) {
    let (ns, name) = (format!("ns-{}", i % NAMESPACES), format!("svc-{i}"));
    let ip =
        if headless(i) { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250 + 1) };
    let svc = Service {
        metadata: meta(&ns, &name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let slice = headless(i).then(|| {
        let mut metadata = meta(&ns, &format!("{name}-1"));
        metadata.labels =
            Some([("kubernetes.io/service-name".to_string(), name.clone())].into_iter().collect());
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: (0..3)
                .map(|e| Endpoint {
                    addresses: vec![format!("10.{}.{}.{}", 244 + e, i / 250, i % 250 + 1)],
                    hostname: Some(format!("{name}-{e}")),
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
    });
    (svc, slice)
}

/// The query mix as (name, type), deterministic.
fn mix(services: usize, count: usize) -> Vec<(String, RecordType)> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pick = (x % 100) as usize;
            let mut i = ((x >> 8) as usize) % services;
            let ns = |i: usize| format!("ns-{}", i % NAMESPACES);
            match pick {
                0..80 => {
                    if headless(i) {
                        i = i.saturating_sub(1);
                    }
                    (format!("svc-{i}.{}.svc.cluster.local.", ns(i)), RecordType::A)
                }
                80..90 => {
                    let i = (i / 10) * 10 + 9;
                    let i = if i >= services { 9 } else { i };
                    (format!("svc-{i}.{}.svc.cluster.local.", ns(i)), RecordType::A)
                }
                90..95 => {
                    (format!("_http._tcp.svc-{i}.{}.svc.cluster.local.", ns(i)), RecordType::SRV)
                }
                _ => (format!("nope-{i}.{}.svc.cluster.local.", ns(i)), RecordType::A),
            }
        })
        .collect()
}

fn packet(name: &str, qtype: RecordType) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name)?, qtype));
    Ok(m.to_vec()?)
}

struct DnsperfFigures {
    qps: f64,
    avg_ms: f64,
    stddev_ms: f64,
    lost: String,
}

fn field<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.trim().strip_prefix(label)).map(str::trim)
}

async fn run_dnsperf(
    args: &Args,
    addr: SocketAddr,
    seconds: u64,
) -> anyhow::Result<Option<DnsperfFigures>> {
    let file = std::env::temp_dir().join(format!("skiff-bench-dns-{}.txt", std::process::id()));
    let lines: String = mix(args.services, 100_000)
        .iter()
        .map(|(n, t)| format!("{} {t}\n", n.trim_end_matches('.')))
        .collect();
    std::fs::write(&file, lines).context("writing the dnsperf data file")?;
    let mut cmd = tokio::process::Command::new(&args.dnsperf);
    cmd.arg("-s")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-d")
        .arg(&file)
        .arg("-l")
        .arg(seconds.to_string())
        .arg("-c")
        .arg(args.dnsperf_clients.to_string())
        .kill_on_drop(true);
    if let Some(q) = args.max_qps {
        cmd.arg("-Q").arg(q.to_string());
    }
    // dnsperf stops itself after -l seconds; the timeout only guards against a hang.
    let out = tokio::time::timeout(Duration::from_secs(seconds + 10), cmd.output()).await;
    let out = match out {
        Err(_) => {
            let _ = std::fs::remove_file(&file);
            bail!("dnsperf overran its time");
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_file(&file);
            return Ok(None);
        }
        Ok(out) => out.context("running dnsperf")?,
    };
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |label: &str| -> anyhow::Result<f64> {
        let v = field(&text, label)
            .with_context(|| format!("no {label:?} in dnsperf output:\n{text}"))?;
        let first = v.split_whitespace().next().unwrap_or_default();
        first.parse::<f64>().with_context(|| format!("{label} {v:?}"))
    };
    Ok(Some(DnsperfFigures {
        qps: number("Queries per second:")?,
        avg_ms: number("Average Latency (s):")? * 1e3,
        stddev_ms: number("Latency StdDev (s):")? * 1e3,
        lost: field(&text, "Queries lost:").unwrap_or("?").to_string(),
    }))
}

struct GeneratorFigures {
    answered: usize,
    lost: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Latencies,
}

/// One generator thread: `window` queries in flight on one socket, ids matched to send times.
fn generate(
    addr: SocketAddr,
    packets: Arc<Vec<Vec<u8>>>,
    window: usize,
    budget: usize,
    deadline: Instant,
    offset: usize,
) -> anyhow::Result<(Vec<Duration>, usize, usize)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sent_at: Vec<Option<Instant>> = vec![None; 1 << 16];
    let mut latencies = Vec::with_capacity(budget.min(2_000_000));
    let (mut next, mut sent, mut outstanding, mut lost, mut errors) =
        (0u16, 0usize, 0usize, 0usize, 0usize);
    let mut buf = [0u8; 4096];
    let send = |sent_at: &mut Vec<Option<Instant>>,
                next: &mut u16,
                sent: &mut usize|
     -> anyhow::Result<()> {
        let mut p = packets[(offset + *sent) % packets.len()].clone();
        p[..2].copy_from_slice(&next.to_be_bytes());
        sent_at[usize::from(*next)] = Some(Instant::now());
        socket.send(&p)?;
        *next = next.wrapping_add(1);
        *sent += 1;
        Ok(())
    };
    while outstanding < window && sent < budget {
        send(&mut sent_at, &mut next, &mut sent)?;
        outstanding += 1;
    }
    while outstanding > 0 {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 12 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                let Some(t) = sent_at[id].take() else { continue };
                latencies.push(t.elapsed());
                // RCODE other than NOERROR (0) and NXDOMAIN (3), or TC: an error.
                let rcode = buf[3] & 0x0f;
                if !(rcode == 0 || rcode == 3) || buf[2] & 0x02 != 0 {
                    errors += 1;
                }
                outstanding -= 1;
            }
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Nothing for 200 ms: what is in flight is lost.
                lost += outstanding;
                outstanding = 0;
                sent_at.iter_mut().for_each(|s| *s = None);
            }
            Err(e) => return Err(e.into()),
        }
        while outstanding < window && sent < budget && Instant::now() < deadline {
            send(&mut sent_at, &mut next, &mut sent)?;
            outstanding += 1;
        }
    }
    Ok((latencies, lost, errors))
}

fn run_generator(args: &Args, addr: SocketAddr, seconds: u64) -> anyhow::Result<GeneratorFigures> {
    let packets: Vec<Vec<u8>> = mix(args.services, 50_000)
        .iter()
        .map(|(n, t)| packet(n, *t))
        .collect::<anyhow::Result<_>>()?;
    let packets = Arc::new(packets);
    let threads = args.threads.max(1);
    let budget = args.queries / threads;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let packets = packets.clone();
            let window = args.window.max(1);
            std::thread::spawn(move || generate(addr, packets, window, budget, deadline, t * 7919))
        })
        .collect();
    let mut all = Vec::new();
    let (mut lost, mut errors) = (0, 0);
    for h in handles {
        let (l, lo, e) = h.join().map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
        all.extend(l);
        lost += lo;
        errors += e;
    }
    let elapsed = start.elapsed();
    Ok(GeneratorFigures {
        answered: all.len(),
        lost,
        errors,
        elapsed,
        latencies: Latencies::new(all),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seconds > 15 || args.seconds == 0 {
        bail!("--seconds must be 1..=15");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.max(1))
        .thread_name("skiff-dns")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dns = ClusterDns::new(DnsOptions {
            listen: vec!["127.0.0.1:0".parse()?],
            udp_sockets: args.udp_sockets,
            ..Default::default()
        })?;
        let t0 = Instant::now();
        for i in 0..args.services {
            let (svc, slice) = objects(i);
            dns.records().upsert_service(&svc);
            if let Some(s) = slice {
                dns.records().upsert_endpoint_slice(&s);
            }
        }
        let fed = t0.elapsed();
        let addr = dns.listen()?[0];
        let build = if cfg!(debug_assertions) { "DEBUG build" } else { "release build" };
        println!(
            "skiff-bench-dns ({build}): {} Services ({} headless) fed in {:.1} ms, serving on {addr} with {} threads, {} UDP sockets",
            args.services,
            (0..args.services).filter(|i| headless(*i)).count(),
            ms(fed),
            args.server_threads,
            args.udp_sockets,
        );
        let qps_goal = Goal::at_least(TARGET_QPS);
        let p99_goal = Goal::at_most(TARGET_P99_MS);
        if args.only.contains(&Section::Dnsperf) {
            match run_dnsperf(&args, addr, args.seconds).await? {
                None => println!("  dnsperf: {} not found, section skipped", args.dnsperf.display()),
                Some(f) => {
                    // Under -Q the rate is the ceiling asked for, not what the server can do.
                    let verdict = match args.max_qps {
                        Some(q) => format!("capped by -Q {q}: no verdict"),
                        None => qps_goal.verdict(f.qps).to_string(),
                    };
                    println!(
                        "  dnsperf -c {} {}s: {:>9.0} queries/s  (target {} {TARGET_QPS}: {verdict})",
                        args.dnsperf_clients,
                        args.seconds,
                        f.qps,
                        qps_goal.comparison(),
                    );
                    println!("           latency avg {:.3} ms, stddev {:.3} ms; lost {}", f.avg_ms, f.stddev_ms, f.lost);
                }
            }
        }
        if args.only.contains(&Section::Udp) {
            let seconds = args.seconds;
            let f = tokio::task::block_in_place(|| run_generator(&args, addr, seconds))?;
            let qps = f.answered as f64 / f.elapsed.as_secs_f64();
            let p99 = ms(f.latencies.p99());
            println!(
                "  udp generator {} thread(s) x {} in flight: {:>9.0} queries/s  (target {} {TARGET_QPS}: {})",
                args.threads,
                args.window,
                qps,
                qps_goal.comparison(),
                qps_goal.verdict(qps)
            );
            println!(
                "           round trip p50 {:.3} ms, p99 {:.3} ms (target {} {TARGET_P99_MS} ms: {}), max {:.3} ms; {} answered, {} lost, {} errors",
                ms(f.latencies.p50()),
                p99,
                p99_goal.comparison(),
                p99_goal.verdict(p99),
                ms(f.latencies.max()),
                f.answered,
                f.lost,
                f.errors
            );
        }
        drop(dns);
        Ok(())
    })
}
