//! The workloads, generic over [`Target`]: closed-loop writers and readers with a warm-up, a
//! watch fan-out, and a long write run for the disk footprint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::future::try_join_all;
use skiff_bench::Latencies;

use crate::target::{Target, Watch};

/// Throughput and latency of the operations completed inside the measured window.
pub struct Measured {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Measured {
    fn new(latencies: Vec<Duration>, window: Duration) -> anyhow::Result<Measured> {
        if latencies.is_empty() {
            bail!("no operation completed inside the measured window");
        }
        let latencies = Latencies::new(latencies);
        Ok(Measured {
            per_sec: latencies.len() as f64 / window.as_secs_f64(),
            p50: latencies.p50(),
            p99: latencies.p99(),
        })
    }
}

/// Incompressible 1 KiB-ish values, fresh for every write, so neither store's compression
/// (RocksDB compresses blocks; etcd's bbolt does not) gets an easy win.
pub struct Values {
    state: u64,
    size: usize,
}

impl Values {
    pub fn new(seed: u64, size: usize) -> Values {
        Values { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, size }
    }

    pub fn next(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size + 8);
        while out.len() < self.size {
            // xorshift64*
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            out.extend_from_slice(&self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(self.size);
        out
    }
}

/// When the measured window of a closed-loop run starts and ends.
#[derive(Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// `clients` writers, each on its own key under `prefix`: create it, then compare-and-swap
/// it in a loop (kube-apiserver's create and GuaranteedUpdate). Only writes that start and
/// end inside the window after the warm-up count.
pub async fn writes<T: Target>(
    target: &Arc<T>,
    prefix: &str,
    clients: usize,
    value_size: usize,
    window: Window,
) -> anyhow::Result<Measured> {
    let start = Instant::now() + window.warmup;
    let end = start + window.measure;
    let tasks = (0..clients).map(|c| {
        let target = Arc::clone(target);
        let key = format!("{prefix}{c:05}");
        tokio::spawn(async move {
            let mut values = Values::new(c as u64 + 1, value_size);
            let mut revision = target.create(&key, &values.next()).await?;
            let mut latencies = Vec::new();
            loop {
                let value = values.next();
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                revision = target.update(&key, &value, revision).await?;
                let t1 = Instant::now();
                if t0 >= start && t1 <= end {
                    latencies.push(t1 - t0);
                }
            }
            anyhow::Ok(latencies)
        })
    });
    let latencies = joined(tasks).await?;
    Measured::new(latencies.concat(), window.measure)
}

/// `clients` readers doing linearizable gets of `keys` keys under `prefix` (written first).
pub async fn reads<T: Target>(
    target: &Arc<T>,
    prefix: &str,
    clients: usize,
    keys: usize,
    value_size: usize,
    window: Window,
) -> anyhow::Result<Measured> {
    let keys = keys.max(1);
    let fill = (0..clients.min(keys)).map(|c| {
        let target = Arc::clone(target);
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            let mut values = Values::new(c as u64 + 1, value_size);
            for k in (c..keys).step_by(clients) {
                target.create(&format!("{prefix}{k:06}"), &values.next()).await?;
            }
            anyhow::Ok(())
        })
    });
    joined(fill).await?;

    let start = Instant::now() + window.warmup;
    let end = start + window.measure;
    let tasks = (0..clients).map(|c| {
        let target = Arc::clone(target);
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut k = c % keys;
            loop {
                let key = format!("{prefix}{k:06}");
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                target.get(&key).await?.with_context(|| format!("{key} is missing"))?;
                let t1 = Instant::now();
                if t0 >= start && t1 <= end {
                    latencies.push(t1 - t0);
                }
                k = (k + clients) % keys;
            }
            anyhow::Ok(latencies)
        })
    });
    let latencies = joined(tasks).await?;
    Measured::new(latencies.concat(), window.measure)
}

pub struct FanOut {
    /// Events delivered across all watchers, per second from the first write until the last
    /// watcher saw the last event.
    pub events_per_sec: f64,
    /// From sending a write to a watcher receiving its event, over all (watcher, event).
    pub p50: Duration,
    pub p99: Duration,
    /// From the last write's acknowledgement until every watcher has seen it.
    pub drain: Duration,
}

/// `watchers` watchers on one prefix; one writer makes `writes` changes (CAS updates over 100
/// keys) as fast as it can; every watcher must see every change.
pub async fn watch_fan_out<T: Target>(
    target: &Arc<T>,
    prefix: &str,
    watchers: usize,
    writes: usize,
    value_size: usize,
    timeout: Duration,
) -> anyhow::Result<FanOut> {
    let after = target.revision().await?;
    let streams = try_join_all((0..watchers).map(|_| target.watch(prefix, after))).await?;
    let epoch = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut watch| {
            tokio::spawn(async move {
                // (revision, nanoseconds since `epoch`) of every delivered event.
                let mut seen = Vec::with_capacity(writes);
                let mut revisions = Vec::new();
                while seen.len() < writes {
                    watch.next_batch(&mut revisions).await?;
                    let at = epoch.elapsed().as_nanos() as u64;
                    seen.extend(revisions.drain(..).filter(|&r| r > after).map(|r| (r, at)));
                }
                anyhow::Ok(seen)
            })
        })
        .collect();
    let _abort = AbortOnDrop(tasks.iter().map(|t| t.abort_handle()).collect());

    // Revision -> when its write was sent, in nanoseconds since `epoch`.
    let mut sent = Vec::with_capacity(writes);
    let mut values = Values::new(7, value_size);
    let mut revisions = [0u64; 100];
    let first_write = epoch.elapsed().as_nanos() as u64;
    for i in 0..writes {
        let key = format!("{prefix}{:03}", i % 100);
        let value = values.next();
        let at = epoch.elapsed().as_nanos() as u64;
        let slot = &mut revisions[i % 100];
        *slot = if *slot == 0 {
            target.create(&key, &value).await?
        } else {
            target.update(&key, &value, *slot).await?
        };
        sent.push((*slot, at));
    }
    let last_ack = epoch.elapsed().as_nanos() as u64;
    let seen =
        tokio::time::timeout(timeout, joined(tasks.into_iter())).await.with_context(|| {
            format!("watchers did not see all {writes} events within {timeout:?}")
        })??;

    sent.sort_unstable();
    let sent_at =
        |revision: u64| sent.binary_search_by_key(&revision, |&(r, _)| r).map(|i| sent[i].1).ok();
    let mut latencies = Vec::with_capacity(watchers * writes);
    let mut last_delivery = 0;
    for (revision, at) in seen.iter().flatten() {
        let sent = sent_at(*revision).with_context(|| format!("unexpected revision {revision}"))?;
        latencies.push(Duration::from_nanos(at.saturating_sub(sent)));
        last_delivery = last_delivery.max(*at);
    }
    let latencies = Latencies::new(latencies);
    let elapsed = Duration::from_nanos(last_delivery.saturating_sub(first_write));
    Ok(FanOut {
        events_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: latencies.p50(),
        p99: latencies.p99(),
        drain: Duration::from_nanos(last_delivery.saturating_sub(last_ack)),
    })
}

/// `writes` writes by `clients` writers over `keys` keys under `prefix` (creates, then CAS
/// updates), reporting progress on stderr.
pub async fn fill<T: Target>(
    target: &Arc<T>,
    prefix: &str,
    writes: u64,
    keys: usize,
    clients: usize,
    value_size: usize,
    label: &str,
) -> anyhow::Result<Duration> {
    let keys = keys.max(1);
    let clients = clients.clamp(1, keys);
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let tasks = (0..clients).map(|c| {
        let target = Arc::clone(target);
        let prefix = prefix.to_owned();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut values = Values::new(c as u64 + 1, value_size);
            let mine: Vec<String> =
                (c..keys).step_by(clients).map(|k| format!("{prefix}{k:07}")).collect();
            let mut revisions = vec![0u64; mine.len()];
            let mut i = 0;
            while done.fetch_add(1, Ordering::Relaxed) < writes {
                let slot = i % mine.len();
                let value = values.next();
                revisions[slot] = if revisions[slot] == 0 {
                    target.create(&mine[slot], &value).await?
                } else {
                    target.update(&mine[slot], &value, revisions[slot]).await?
                };
                i += 1;
            }
            anyhow::Ok(())
        })
    });
    let progress = {
        let done = Arc::clone(&done);
        let label = label.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = done.load(Ordering::Relaxed).min(writes);
                let rate = n as f64 / t0.elapsed().as_secs_f64();
                eprintln!("  {label}: {n}/{writes} writes ({rate:.0}/s)");
            }
        })
    };
    let result = joined(tasks).await;
    progress.abort();
    result?;
    Ok(t0.elapsed())
}

/// Aborts tasks left running when a workload fails or times out.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// Wait for every task; the first error (or panic) wins.
async fn joined<R>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<anyhow::Result<R>>>,
) -> anyhow::Result<Vec<R>> {
    let results = try_join_all(tasks).await.context("a benchmark task panicked")?;
    results.into_iter().collect()
}
