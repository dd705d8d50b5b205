//! Benchmark: Skiff's store against etcd, side by side in one run on the same machine and the
//! same disk, fsync on, 1 KiB values, and prints one table with the ratio Skiff/etcd per row.
//!
//! The comparison is architectural, as each system is deployed: Skiff's api server uses its
//! store (`RaftStore`) in-process through the `Store` trait, so Skiff's figures include no
//! RPC; kube-apiserver talks to separate `etcd` processes over gRPC on loopback, so etcd's
//! figures include HTTP/2 + protobuf both ways and a process boundary. Both persist every
//! acknowledged write with fsync. Targets run one after another, never at the same time.
//!
//! Rows: writes/s with 1 and with 64 concurrent clients (create, then compare-and-swap
//! updates of one key per client, as kube-apiserver's GuaranteedUpdate does), linearizable
//! reads/s with 64 clients, watch fan-out to 1,000 watchers of one prefix, and (with
//! `--footprint`) the disk footprint after 1 M writes before and after compaction.
//!
//! `skiff-bench-store` (a few minutes); `skiff-bench-store --footprint` adds the long row;
//! `--help` lists the knobs. Needs `etcd` (Debian's `etcd-server`) on PATH or `--etcd`.

mod cluster;
mod etcd;
mod grpc;
mod target;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use skiff_bench::ms;

use crate::etcd::EtcdTarget;
use crate::target::{SkiffTarget, Target};
use crate::workload::Window;

#[derive(Parser)]
#[command(about = "Skiff's store vs etcd: throughput, latency, watch fan-out, disk footprint")]
struct Args {
    /// Targets to run, in this order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "skiff-1,etcd-1,skiff-3,etcd-3"
    )]
    targets: Vec<Kind>,
    /// Rows to run (comma-separated); the disk footprint has its own flag, `--footprint`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "writes-1,writes-n,reads,watch"
    )]
    rows: Vec<Workload>,
    /// Directory for the stores' data (a fresh subdirectory is created and removed); both
    /// stores use the same disk.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// The etcd server binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Seconds of warm-up before each measured window (excluded from the figures).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured per throughput row.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Concurrent clients of the "many clients" rows.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Keys the readers spread over.
    #[arg(long, default_value_t = 1000)]
    read_keys: usize,
    /// Watchers of the fan-out row.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Writes the fan-out row's single writer makes.
    #[arg(long, default_value_t = 1000)]
    watch_writes: usize,
    /// Seconds the watchers may take to see every event after the last write.
    #[arg(long, default_value_t = 120.0)]
    watch_timeout: f64,
    /// HTTP/2 connections to etcd, shared round-robin by all clients and watchers.
    #[arg(long, default_value_t = 4)]
    etcd_connections: usize,
    /// Also measure the disk footprint after --footprint-writes writes + compaction, on fresh
    /// 1-member stores (long: minutes per target).
    #[arg(long)]
    footprint: bool,
    #[arg(long, default_value_t = 1_000_000)]
    footprint_writes: u64,
    /// Keys the footprint writes are spread over (history beyond these is what compaction
    /// removes).
    #[arg(long, default_value_t = 10_000)]
    footprint_keys: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Kind {
    #[value(name = "skiff-1")]
    Skiff1,
    #[value(name = "etcd-1")]
    Etcd1,
    #[value(name = "skiff-3")]
    Skiff3,
    #[value(name = "etcd-3")]
    Etcd3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Skiff1 => "skiff-1",
            Kind::Etcd1 => "etcd-1",
            Kind::Skiff3 => "skiff-3",
            Kind::Etcd3 => "etcd-3",
        }
    }

    fn members(self) -> usize {
        match self {
            Kind::Skiff1 | Kind::Etcd1 => 1,
            Kind::Skiff3 | Kind::Etcd3 => 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Writes by one client.
    #[value(name = "writes-1")]
    Writes1,
    /// Writes by `--clients` clients.
    #[value(name = "writes-n")]
    WritesN,
    Reads,
    Watch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Writes1,
    Writes1P50,
    Writes1P99,
    WritesN,
    WritesNP50,
    WritesNP99,
    Reads,
    ReadsP50,
    ReadsP99,
    WatchEvents,
    WatchP50,
    WatchP99,
    WatchDrain,
    DiskFull,
    DiskCompacted,
}

#[derive(Clone, Copy)]
enum Unit {
    PerSec,
    Millis,
    Mib,
}

enum Cell {
    Value(f64),
    Missing(String),
}

struct Results {
    cells: BTreeMap<(Row, Kind), Cell>,
    notes: Vec<String>,
    failed: bool,
}

impl Results {
    fn set(&mut self, row: Row, kind: Kind, value: f64) {
        self.cells.insert((row, kind), Cell::Value(value));
    }

    fn missing(&mut self, rows: &[Row], kind: Kind, why: &str) {
        for &row in rows {
            self.cells.insert((row, kind), Cell::Missing(why.to_owned()));
        }
    }

    fn failed(&mut self, rows: &[Row], kind: Kind, what: &str, e: &anyhow::Error) {
        eprintln!("  {}: {what} failed: {e:#}", kind.name());
        self.notes.push(format!("{} {what}: {e:#}", kind.name()));
        self.missing(rows, kind, "error");
        self.failed = true;
    }
}

const WRITES_1: [Row; 3] = [Row::Writes1, Row::Writes1P50, Row::Writes1P99];
const WRITES_N: [Row; 3] = [Row::WritesN, Row::WritesNP50, Row::WritesNP99];
const READS: [Row; 3] = [Row::Reads, Row::ReadsP50, Row::ReadsP99];
const WATCH: [Row; 4] = [Row::WatchEvents, Row::WatchP50, Row::WatchP99, Row::WatchDrain];
const DISK: [Row; 2] = [Row::DiskFull, Row::DiskCompacted];

/// Removes the run's data directory on every way out (error, panic, Ctrl-C).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(cluster::MEMBER_ENV) {
        return cluster::member_main(&spec).await;
    }
    let args = Args::parse();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping `run` on a signal runs its destructors: etcd processes die, data is removed.
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = terminate.recv() => bail!("terminated"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch(args.dir.join(format!("skiff-bench-store-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let etcd_version = etcd_version(&args.etcd)?;
    let load_at_start = load_average();
    let mut results = Results { cells: BTreeMap::new(), notes: Vec::new(), failed: false };
    let mut kinds = args.targets.clone();
    kinds.dedup();

    for &kind in &kinds {
        let dir = scratch.0.join(kind.name());
        eprintln!("{}: starting", kind.name());
        match kind {
            Kind::Skiff1 => match SkiffTarget::open(&dir).await {
                Ok(t) => bench_rows(&Arc::new(t), kind, &args, &mut results).await,
                Err(e) => results.failed(&[WRITES_1, WRITES_N, READS].concat(), kind, "start", &e),
            },
            Kind::Etcd1 | Kind::Etcd3 => {
                match EtcdTarget::start(&args.etcd, &dir, kind.members(), args.etcd_connections)
                    .await
                {
                    Ok(t) => bench_rows(&Arc::new(t), kind, &args, &mut results).await,
                    Err(e) => {
                        results.failed(&[WRITES_1, WRITES_N, READS].concat(), kind, "start", &e)
                    }
                }
            }
            Kind::Skiff3 => match cluster::start(&dir).await {
                Ok(t) => bench_rows(&Arc::new(t), kind, &args, &mut results).await,
                Err(e) => results.failed(&[WRITES_1, WRITES_N, READS].concat(), kind, "start", &e),
            },
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    if args.footprint {
        for &kind in &kinds {
            let dir = scratch.0.join(format!("{}-footprint", kind.name()));
            match kind {
                Kind::Skiff1 => match SkiffTarget::open(&dir).await {
                    Ok(t) => footprint(&Arc::new(t), kind, &args, &mut results).await,
                    Err(e) => results.failed(&DISK, kind, "start", &e),
                },
                Kind::Etcd1 => {
                    match EtcdTarget::start(&args.etcd, &dir, 1, args.etcd_connections).await {
                        Ok(t) => footprint(&Arc::new(t), kind, &args, &mut results).await,
                        Err(e) => results.failed(&DISK, kind, "start", &e),
                    }
                }
                Kind::Skiff3 => results.missing(&DISK, kind, "1-member only"),
                Kind::Etcd3 => results.missing(&DISK, kind, "1-member only"),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let load = format!("{load_at_start} at start, {} at end", load_average());
    print_report(&args, &etcd_version, &scratch.0, &kinds, &results, &load);
    if results.failed {
        bail!("some rows failed (see above)");
    }
    Ok(())
}

/// The throughput, read and watch rows against one running target, which is then stopped.
async fn bench_rows<T: Target>(target: &Arc<T>, kind: Kind, args: &Args, results: &mut Results) {
    let window = Window {
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.duration),
    };
    let name = kind.name();
    for (rows, clients, prefix) in
        [(WRITES_1, 1, "/bench/w1/"), (WRITES_N, args.clients, "/bench/wn/")]
    {
        eprintln!("{name}: writes, {clients} client(s)");
        match workload::writes(target, prefix, clients, args.value_size, window).await {
            Ok(m) => {
                results.set(rows[0], kind, m.per_sec);
                results.set(rows[1], kind, ms(m.p50));
                results.set(rows[2], kind, ms(m.p99));
            }
            Err(e) => results.failed(&rows, kind, "writes", &e),
        }
    }

    if args.rows.contains(&Workload::Reads) {
        eprintln!("{name}: linearizable reads, {} clients", args.clients);
        let reads = workload::reads(
            target,
            "/bench/r/",
            args.clients,
            args.read_keys,
            args.value_size,
            window,
        );
        match reads.await {
            Ok(m) => {
                results.set(Row::Reads, kind, m.per_sec);
                results.set(Row::ReadsP50, kind, ms(m.p50));
                results.set(Row::ReadsP99, kind, ms(m.p99));
            }
            Err(e) => results.failed(&READS, kind, "reads", &e),
        }
    }
    if args.rows.contains(&Workload::Watch) {
        watch_rows(target, kind, args, results).await;
    }
    target.shutdown().await;
}

async fn watch_rows<T: Target>(target: &Arc<T>, kind: Kind, args: &Args, results: &mut Results) {
    let name = kind.name();
    eprintln!("{name}: watch fan-out, {} watchers, {} writes", args.watchers, args.watch_writes);
    let fan_out = workload::watch_fan_out(
        target,
        "/bench/watch/",
        args.watchers,
        args.watch_writes,
        args.value_size,
        Duration::from_secs_f64(args.watch_timeout),
    );
    match fan_out.await {
        Ok(f) => {
            results.set(Row::WatchEvents, kind, f.events_per_sec);
            results.set(Row::WatchP50, kind, ms(f.p50));
            results.set(Row::WatchP99, kind, ms(f.p99));
            results.set(Row::WatchDrain, kind, ms(f.drain));
        }
        Err(e) => results.failed(&WATCH, kind, "watch fan-out", &e),
    }
}

/// Disk use after `--footprint-writes` writes, then after compacting to the latest revision.
async fn footprint<T: Target>(target: &Arc<T>, kind: Kind, args: &Args, results: &mut Results) {
    let name = kind.name();
    eprintln!(
        "{name}: {} writes over {} keys for the footprint",
        args.footprint_writes, args.footprint_keys
    );
    let outcome = async {
        let took = workload::fill(
            target,
            "/bench/disk/",
            args.footprint_writes,
            args.footprint_keys,
            args.clients,
            args.value_size,
            name,
        )
        .await?;
        let full = target.disk_usage()?;
        let full_detail = target.disk_detail()?;
        let revision = target.revision().await?;
        let compacted = target.compact(revision).await?;
        let after = target.disk_usage()?;
        let after_detail = target.disk_detail()?;
        anyhow::Ok((took, full, full_detail, compacted, after, after_detail))
    };
    match outcome.await {
        Ok((took, full, full_detail, compacted, after, after_detail)) => {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            results.set(Row::DiskFull, kind, mib(full));
            if compacted {
                results.set(Row::DiskCompacted, kind, mib(after));
            } else {
                results.missing(&[Row::DiskCompacted], kind, "no compact");
                results.notes.push(format!(
                    "{name}: the store has no compaction API in this build; footprint is uncompacted"
                ));
            }
            results.notes.push(format!("{name} on disk before compaction: {full_detail}"));
            if compacted {
                results.notes.push(format!("{name} on disk after compaction: {after_detail}"));
            }
            results.notes.push(format!(
                "{name}: {} writes took {:.0} s ({:.0} writes/s, {} clients)",
                args.footprint_writes,
                took.as_secs_f64(),
                args.footprint_writes as f64 / took.as_secs_f64(),
                args.clients
            ));
        }
        Err(e) => results.failed(&DISK, kind, "footprint", &e),
    }
    target.shutdown().await;
}

fn etcd_version(etcd: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(etcd)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version (install etcd-server)", etcd.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("(unknown version)")
        .trim()
        .to_owned())
}

/// The mounted filesystem holding `path`, as "device (type)".
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && path.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} ({})", f[0], f[2])))
        })
        .max()
        .map_or_else(|| "?".into(), |(_, fs)| fs)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into())
}

fn with_commas(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The 1-minute load average: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn print_report(
    args: &Args,
    etcd_version: &str,
    dir: &Path,
    kinds: &[Kind],
    results: &Results,
    load: &str,
) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "skiff-bench-store: Skiff's store vs etcd {etcd_version}, one run, one machine, one disk"
    );
    println!(
        "  machine: {cpus} CPUs ({}); data on {} under {}",
        cpu_model(),
        filesystem_of(dir),
        args.dir.display()
    );
    println!("  1-minute load average: {load} (anything else running skews both sides)");
    println!(
        "  Skiff: RaftStore in-process through the Store trait (as Skiff's api server uses it)"
    );
    println!(
        "  etcd:  separate etcd processes, gRPC over loopback HTTP/2, {} connection(s) to the leader (as kube-apiserver uses etcd)",
        args.etcd_connections
    );
    println!(
        "  fsync on for both; {}-byte incompressible values; writes = create, then CAS update (txn on mod_revision) of one key per client",
        args.value_size
    );
    println!(
        "  {} s warm-up excluded, {} s measured per row; watch: {} watchers of one prefix (with previous values), one writer making {} changes",
        args.warmup, args.duration, args.watchers, args.watch_writes
    );
    println!();

    let rows: Vec<(Row, String, Unit)> = vec![
        (Row::Writes1, "writes/s, 1 client".into(), Unit::PerSec),
        (Row::Writes1P50, "  p50 latency (ms)".into(), Unit::Millis),
        (Row::Writes1P99, "  p99 latency (ms)".into(), Unit::Millis),
        (Row::WritesN, format!("writes/s, {} clients", args.clients), Unit::PerSec),
        (Row::WritesNP50, "  p50 latency (ms)".into(), Unit::Millis),
        (Row::WritesNP99, "  p99 latency (ms)".into(), Unit::Millis),
        (Row::Reads, format!("linearizable reads/s, {} clients", args.clients), Unit::PerSec),
        (Row::ReadsP50, "  p50 latency (ms)".into(), Unit::Millis),
        (Row::ReadsP99, "  p99 latency (ms)".into(), Unit::Millis),
        (
            Row::WatchEvents,
            format!("watch events delivered/s ({} watchers)", args.watchers),
            Unit::PerSec,
        ),
        (Row::WatchP50, "  p50 write->delivery (ms)".into(), Unit::Millis),
        (Row::WatchP99, "  p99 write->delivery (ms)".into(), Unit::Millis),
        (Row::WatchDrain, "  last ack->all watchers saw it (ms)".into(), Unit::Millis),
        (
            Row::DiskFull,
            format!("disk after {} writes (MiB)", with_commas(args.footprint_writes as f64)),
            Unit::Mib,
        ),
        (Row::DiskCompacted, "  after compaction (+defrag) (MiB)".into(), Unit::Mib),
    ];
    let groups: Vec<(Kind, Kind)> = [(Kind::Skiff1, Kind::Etcd1), (Kind::Skiff3, Kind::Etcd3)]
        .into_iter()
        .filter(|(s, e)| kinds.contains(s) || kinds.contains(e))
        .collect();

    let label_width = 40;
    let cell_width = 14;
    let mut header = format!("{:<label_width$}", "");
    for (s, e) in &groups {
        header +=
            &format!("{:>cell_width$}{:>cell_width$}{:>11}", s.name(), e.name(), "skiff/etcd");
    }
    println!("{header}");
    for (row, label, unit) in rows {
        if !results.cells.keys().any(|(r, _)| *r == row) {
            continue; // not run
        }
        let mut line = format!("{label:<label_width$}");
        for &(s, e) in &groups {
            let show = |k: Kind| match results.cells.get(&(row, k)) {
                Some(Cell::Value(v)) => match unit {
                    Unit::PerSec => with_commas(*v),
                    Unit::Millis => format!("{v:.2}"),
                    Unit::Mib => format!("{v:.1}"),
                },
                Some(Cell::Missing(why)) => why.clone(),
                None => "-".into(),
            };
            let ratio = match (results.cells.get(&(row, s)), results.cells.get(&(row, e))) {
                (Some(Cell::Value(a)), Some(Cell::Value(b))) if *b > 0.0 => {
                    format!("{:.2}x", a / b)
                }
                _ => "-".into(),
            };
            line += &format!("{:>cell_width$}{:>cell_width$}{ratio:>11}", show(s), show(e));
        }
        println!("{line}");
    }
    println!();
    println!(
        "  skiff/etcd: rates (/s) higher is better for Skiff; latencies (ms) and sizes (MiB) lower is better."
    );
    if args.footprint {
        println!(
            "  footprint: fresh 1-member stores, {} writes by {} clients over {} keys, then compaction to the latest revision (etcd: compact + defrag); `du` of the data dirs",
            with_commas(args.footprint_writes as f64),
            args.clients,
            with_commas(args.footprint_keys as f64)
        );
    }
    for note in &results.notes {
        println!("  {note}");
    }
}
