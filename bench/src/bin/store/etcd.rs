//! etcd as kube-apiserver uses it: real `etcd` processes on loopback, spoken to over gRPC.
//! [`EtcdCluster`] owns the processes (killed on drop, and by the kernel if the benchmark
//! dies); [`EtcdTarget`] is the [`Target`] on top.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::grpc::{self, BidiStream, Channel, request, response};
use crate::target::{Target, Watch, describe, disk_usage, for_each_file};

/// How long a fresh cluster may take to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    dir: PathBuf,
    client: SocketAddr,
    child: Option<Child>,
}

/// `size` etcd processes forming one cluster, with data under one directory.
pub struct EtcdCluster {
    members: Vec<Member>,
}

/// Ports that were free a moment ago (bound to port 0, then released for etcd to take).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl EtcdCluster {
    /// Start `size` members under `dir` and wait until every one answers and knows the
    /// leader. Must be called from the thread that stays alive for the whole run (the main
    /// thread): children get SIGKILL when the thread that spawned them exits.
    pub async fn start(etcd: &Path, dir: &Path, size: usize) -> anyhow::Result<EtcdCluster> {
        let ports = free_ports(2 * size)?;
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster =
            (0..size).map(|i| format!("m{i}={}", peer_url(i))).collect::<Vec<_>>().join(",");
        let token = format!("skiff-bench-{}-{}", std::process::id(), dir.display());
        let mut cluster = EtcdCluster { members: Vec::new() };
        for i in 0..size {
            let name = format!("m{i}");
            let member_dir = dir.join(&name);
            std::fs::create_dir_all(dir)?;
            let client = SocketAddr::from(([127, 0, 0, 1], ports[2 * i]));
            let client_url = format!("http://{client}");
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let mut cmd = Command::new(etcd);
            cmd.arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(&member_dir)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i)])
                .args(["--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                // 1 M writes of 1 KiB keep ~1.5 GiB of history until compaction; etcd's
                // default 2 GiB quota would raise its NOSPACE alarm before the end.
                .args(["--quota-backend-bytes", &(8u64 << 30).to_string()])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd.spawn().with_context(|| format!("starting {}", etcd.display()))?;
            cluster.members.push(Member { name, dir: member_dir, client, child: Some(child) });
        }
        cluster.wait_ready(dir).await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self, dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..self.members.len() {
            loop {
                let member = &mut self.members[i];
                if let Some(status) = member.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                    let log = std::fs::read_to_string(dir.join(format!("{}.log", member.name)))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(10).collect();
                    bail!("etcd {} exited ({status:?}): {}", member.name, tail.join("\n"));
                }
                let last_error = match status(member.client).await {
                    Ok(s) if s.leader != 0 => break,
                    Ok(_) => "no leader yet".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                if Instant::now() > deadline {
                    bail!("etcd {} not ready within {READY_TIMEOUT:?}: {last_error}", member.name);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn stop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Have the kernel SIGKILL the child if the benchmark dies without running destructors.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe
    // system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

async fn status(addr: SocketAddr) -> anyhow::Result<response::Status> {
    let channel = Channel::connect(addr).await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        channel.unary(grpc::STATUS, &request::empty()),
    )
    .await
    .context("status timed out")??;
    response::status(&reply)
}

/// etcd through its gRPC API. Every call goes to the leader (as a stacked kube-apiserver
/// next to the leader would; a follower would forward writes and ask the leader for reads),
/// spread round-robin over a few HTTP/2 connections.
pub struct EtcdTarget {
    cluster: Mutex<EtcdCluster>,
    dirs: Vec<PathBuf>,
    members: Vec<Channel>,
    leader: Vec<Channel>,
    next: AtomicUsize,
}

impl EtcdTarget {
    pub async fn start(
        etcd: &Path,
        dir: &Path,
        size: usize,
        connections: usize,
    ) -> anyhow::Result<EtcdTarget> {
        let cluster = EtcdCluster::start(etcd, dir, size).await?;
        let mut members = Vec::new();
        let mut leader = None;
        for member in &cluster.members {
            let channel = Channel::connect(member.client).await?;
            let s = response::status(&channel.unary(grpc::STATUS, &request::empty()).await?)?;
            if s.member_id == s.leader {
                leader = Some(member.client);
            }
            members.push(channel);
        }
        let leader = leader.context("no member says it is the leader")?;
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(Channel::connect(leader).await?);
        }
        Ok(EtcdTarget {
            dirs: cluster.members.iter().map(|m| m.dir.clone()).collect(),
            cluster: Mutex::new(cluster),
            members,
            leader: channels,
            next: AtomicUsize::new(0),
        })
    }

    fn channel(&self) -> &Channel {
        &self.leader[self.next.fetch_add(1, Ordering::Relaxed) % self.leader.len()]
    }

    async fn txn(&self, key: &str, value: &[u8], expected: u64) -> anyhow::Result<u64> {
        let txn = request::compare_and_put(key.as_bytes(), value, expected);
        let (succeeded, revision) =
            response::txn(&self.channel().unary(grpc::KV_TXN, &txn).await?)?;
        if !succeeded {
            bail!("{key}: not at revision {expected}");
        }
        Ok(revision)
    }
}

impl Target for EtcdTarget {
    type Watch = EtcdWatch;

    async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<u64> {
        self.txn(key, value, 0).await
    }

    async fn update(&self, key: &str, value: &[u8], expected: u64) -> anyhow::Result<u64> {
        self.txn(key, value, expected).await
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let reply = self.channel().unary(grpc::KV_RANGE, &request::get(key.as_bytes())).await?;
        response::first_mod_revision(&reply)
    }

    async fn watch(&self, prefix: &str, after: u64) -> anyhow::Result<EtcdWatch> {
        let create = request::watch_prefix(prefix.as_bytes(), after + 1);
        let mut stream = self.channel().bidi(grpc::WATCH, &create).await?;
        // Only count the watcher as ready once etcd has registered it.
        let first = stream.next().await?.context("watch stream ended before it was created")?;
        let mut revisions = Vec::new();
        let reply = response::watch(&first, &mut revisions)?;
        if !reply.created || reply.canceled {
            bail!("watch not created: {}", reply.cancel_reason);
        }
        Ok(EtcdWatch { stream, pending: revisions })
    }

    async fn revision(&self) -> anyhow::Result<u64> {
        let reply = self.channel().unary(grpc::KV_RANGE, &request::get(b"/")).await?;
        response::revision(&reply)
    }

    async fn compact(&self, revision: u64) -> anyhow::Result<bool> {
        self.channel().unary(grpc::KV_COMPACT, &request::compact(revision)).await?;
        // Defragmentation is per member and blocks that member; etcd operators run it on
        // one member at a time.
        for member in &self.members {
            member.unary(grpc::DEFRAGMENT, &request::empty()).await?;
        }
        Ok(true)
    }

    fn disk_usage(&self) -> anyhow::Result<u64> {
        self.dirs.iter().map(|d| disk_usage(d)).sum()
    }

    fn disk_detail(&self) -> anyhow::Result<String> {
        let mut parts = BTreeMap::new();
        for dir in &self.dirs {
            for_each_file(dir, |path, bytes| {
                let kind = if path.starts_with(dir.join("member/wal")) {
                    "wal"
                } else if path.ends_with("member/snap/db") {
                    "bbolt db"
                } else {
                    "snapshots"
                };
                *parts.entry(kind).or_insert(0) += bytes;
            })?;
        }
        Ok(describe(&parts))
    }

    async fn shutdown(&self) {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner()).stop();
    }
}

pub struct EtcdWatch {
    stream: BidiStream,
    pending: Vec<u64>,
}

impl Watch for EtcdWatch {
    async fn next_batch(&mut self, out: &mut Vec<u64>) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            out.append(&mut self.pending);
            return Ok(());
        }
        let msg = self.stream.next().await?.context("watch stream ended")?;
        let reply = response::watch(&msg, out)?;
        if reply.canceled {
            bail!(
                "watch canceled (compact revision {}): {}",
                reply.compact_revision,
                reply.cancel_reason
            );
        }
        Ok(())
    }
}
