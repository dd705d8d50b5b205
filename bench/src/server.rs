//! `skiff server` as the benchmarks run it: a child process listening on port 0 of loopback,
//! with a fresh data dir under the temp dir and `SKIFF_LOG=warn`, spoken to over HTTPS with a
//! kube client built from the kubeconfig it writes. Killed, and its data dir removed, on drop.
//!
//! ```no_run
//! # async fn f(skiff: &std::path::Path) -> anyhow::Result<()> {
//! use skiff_bench::Server;
//! let server = Server::builder(skiff, "skiff-bench-example").disable_agent().start().await?;
//! println!("{:?}", server.client().apiserver_version().await?);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::process::{KillOnDrop, NoLine, first_line};

/// How long a fresh server may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`ServerBuilder::node`] waits for before [`ServerBuilder::start`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeWait {
    /// The Node object exists.
    Registered,
    /// The Node's Ready condition is True.
    Ready,
}

/// How to start a [`Server`]: `skiff server --listen 127.0.0.1:0 --data-dir DIR` plus the
/// flags added here.
pub struct ServerBuilder {
    skiff: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    images: Vec<(PathBuf, String)>,
    log_to_file: bool,
    node: Option<(String, NodeWait, Duration)>,
    /// (network namespace, address to listen on), when not the host's loopback.
    netns: Option<(String, String)>,
}

impl ServerBuilder {
    /// A control plane only (`--disable-agent`).
    pub fn disable_agent(mut self) -> Self {
        self.args.push("--disable-agent".into());
        self
    }

    /// Run the embedded node as `name` on 127.0.0.1, and wait up to `within` for `wait`.
    /// The node leaves the host's network alone (Services in-process only, cluster DNS on a
    /// loopback port): benchmarks run in the host's namespace.
    pub fn node(mut self, name: &str, wait: NodeWait, within: Duration) -> Self {
        self.args.extend([
            "--node-name".into(),
            name.into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--proxy-mode".into(),
            "none".into(),
            "--dns-listen".into(),
            "127.0.0.1:0".into(),
        ]);
        self.node = Some((name.into(), wait, within));
        self
    }

    /// Run the server in network namespace `ns` (under /var/run/netns, made by the caller),
    /// listening on `ip`. Only the network namespace changes (`nsenter --net`: `ip netns
    /// exec` would remount /sys and hide the cgroups runc needs). The kube client is made on
    /// the calling thread, so call `start` from a thread inside that namespace.
    pub fn in_netns(mut self, ns: &str, ip: &str) -> Self {
        self.netns = Some((ns.into(), ip.into()));
        self
    }

    /// More `skiff server` flags.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Import `file` as image `name` into the data dir before the server starts.
    pub fn image(mut self, file: &Path, name: &str) -> Self {
        self.images.push((file.to_path_buf(), name.into()));
        self
    }

    /// Send the server's stderr to `server.log` in its data dir (shown when it fails to start,
    /// and by [`Server::log_tail`]) instead of this process's stderr.
    pub fn log_to_file(mut self) -> Self {
        self.log_to_file = true;
        self
    }

    /// Start the server and wait until it is ready (and its node, if asked for).
    pub async fn start(self) -> anyhow::Result<Server> {
        let dir = self.dir;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, the guard removes the dir on every way out.
        let mut scratch = DataDir(Some(dir.clone()));
        for (file, image) in &self.images {
            let out = Command::new(&self.skiff)
                .args(["images", "import", "--name", image, "--data-dir"])
                .arg(&dir)
                .arg(file)
                .output()
                .context("running skiff images import")?;
            if !out.status.success() {
                bail!(
                    "importing {}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        let stderr = if self.log_to_file {
            Stdio::from(std::fs::File::create(dir.join("server.log"))?)
        } else {
            Stdio::inherit()
        };
        let t0 = Instant::now();
        let (mut command, listen) = match &self.netns {
            Some((ns, ip)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}")).arg("--").arg(&self.skiff);
                (c, format!("{ip}:0"))
            }
            None => (Command::new(&self.skiff), "127.0.0.1:0".to_string()),
        };
        let mut child = command
            .args(["server", "--listen", &listen, "--data-dir"])
            .arg(&dir)
            .args(&self.args)
            .env("SKIFF_LOG", "warn")
            // Disk thresholds off: the figures must not depend on how full the disk is.
            .env("SKIFF_EVICTION_HARD", "memory.available<100Mi")
            .env("SKIFF_IMAGE_GC_HIGH_THRESHOLD", "100")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting skiff server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut child = KillOnDrop::new(child);
        // READY <url> <kubeconfig> <peer url>
        let ready = first_line(stdout, READY_TIMEOUT, |l| {
            l.strip_prefix("READY ")?.split_whitespace().nth(1).map(PathBuf::from)
        })
        .await;
        let kubeconfig = match ready {
            Ok(path) => path,
            Err(why) => {
                child.kill();
                let what = match why {
                    NoLine::Ended(_) => "exited before it was ready".to_string(),
                    NoLine::TimedOut => format!("did not print READY within {READY_TIMEOUT:?}"),
                };
                bail!("skiff server {what}{}", log_of(&dir, self.log_to_file, usize::MAX));
            }
        };
        let started_in = t0.elapsed();
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        // The node routes its Wasm pods' half of its block of the cluster CIDR as `local` on
        // loopback, and leaves the route behind when it is killed.
        let pod_routes = self
            .node
            .as_ref()
            .and(self.args.iter().position(|a| a == "--cluster-cidr"))
            .and_then(|i| self.args.get(i + 1))
            .cloned();
        // The server's own drop removes the dir from now on.
        scratch.0 = None;
        let server =
            Server { child, dir, client, started_in, log_to_file: self.log_to_file, pod_routes };
        if let Some((name, wait, within)) = &self.node {
            server.wait_for_node(name, *wait, *within).await?;
        }
        Ok(server)
    }
}

/// A running `skiff server`; killed, its data dir removed, on drop.
pub struct Server {
    child: KillOnDrop,
    dir: PathBuf,
    client: kube::Client,
    started_in: Duration,
    log_to_file: bool,
    /// The cluster CIDR whose `local` routes on loopback the embedded node left behind.
    pod_routes: Option<String>,
}

impl Server {
    /// Start building a server whose data dir is `dir_name` under the temp dir (removed first
    /// if a previous run left it).
    pub fn builder(skiff: &Path, dir_name: &str) -> ServerBuilder {
        ServerBuilder {
            skiff: skiff.to_path_buf(),
            dir: std::env::temp_dir().join(dir_name),
            args: Vec::new(),
            images: Vec::new(),
            log_to_file: false,
            node: None,
            netns: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of its api server, as its admin (the kubeconfig it wrote).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// From spawning the process until it printed READY.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        crate::procfs::rss_kib(self.pid())
    }

    /// The server's peak resident memory, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        crate::procfs::peak_rss_kib(self.pid())
    }

    /// The last 20 lines of its log (with [`ServerBuilder::log_to_file`]; else empty).
    pub fn log_tail(&self) -> String {
        if !self.log_to_file {
            return String::new();
        }
        last_lines(&self.dir.join("server.log"), 20)
    }

    async fn wait_for_node(
        &self,
        name: &str,
        wait: NodeWait,
        within: Duration,
    ) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let deadline = Instant::now() + within;
        loop {
            let node = nodes.get_opt(name).await?;
            let done = match wait {
                NodeWait::Registered => node.is_some(),
                NodeWait::Ready => node
                    .as_ref()
                    .and_then(|n| n.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            };
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                let what = match wait {
                    NodeWait::Registered => "register",
                    NodeWait::Ready => "become Ready",
                };
                bail!(
                    "node {name} did not {what} within {} s{}",
                    within.as_secs(),
                    log_of(&self.dir, self.log_to_file, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(cidr) = &self.pod_routes {
            remove_local_routes_within(cidr);
        }
    }
}

/// Removes a data dir unless it was handed over to a [`Server`].
struct DataDir(Option<PathBuf>);

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// "; server log:\n..." with the last `lines` lines of the log, or nothing without a log file.
fn log_of(dir: &Path, log_to_file: bool, lines: usize) -> String {
    if !log_to_file {
        return String::new();
    }
    format!("; server log:\n{}", last_lines(&dir.join("server.log"), lines))
}

fn last_lines(file: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `a.b.c.d/n` as (network, prefix length).
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    Some((u32::from(ip), bits))
}

/// Whether the range `dst` (`a.b.c.d/n`) lies inside `cidr`.
fn route_inside(dst: &str, cidr: &str) -> bool {
    let (Some((net, bits)), Some((ip, len))) = (parse_cidr(cidr), parse_cidr(dst)) else {
        return false;
    };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    len >= bits && ip & mask == net & mask
}

/// Delete the `local` routes on loopback whose range lies inside `cidr`.
fn remove_local_routes_within(cidr: &str) {
    let Ok(out) = Command::new("ip").args(["-4", "route", "show", "table", "local"]).output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some("local"), Some(dst)) = (words.next(), words.next()) else { continue };
        if route_inside(dst, cidr) && line.contains("dev lo") {
            let _ = Command::new("ip")
                .args(["route", "del", "local", dst, "dev", "lo", "table", "local"])
                .status();
        }
    }
}

/// Raise this process's open-file limit to at least `want`; the servers it starts inherit it.
/// Each idle wasi:http pod holds fds in the server (its listener, its log): about 3.
pub fn raise_nofile_limit(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let mut new = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
            // Not allowed to raise the hard limit: go as far as it allows.
            new = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
                bail!("setrlimit: {}", std::io::Error::last_os_error());
            }
        }
        Ok(new.rlim_cur)
    }
}

/// The flags that give a Wasm-only server `pods` pods, with Wasm pod addresses in
/// 127.0.0.0/8: the node's block is the smallest whose upper (Wasm) half holds them all.
pub fn wasm_server_flags(pods: usize) -> Vec<String> {
    let need = (pods + 2) as u64;
    let half_bits = 64 - (need - 1).leading_zeros(); // 2^half_bits >= need
    let node_prefix = (31 - half_bits).clamp(10, 24);
    vec![
        "--max-pods".into(),
        (pods + 8).to_string(),
        "--cluster-cidr".into(),
        "127.192.0.0/10".into(),
        "--node-cidr-mask-size".into(),
        node_prefix.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_inside_should_hold_only_ranges_inside_the_cidr() {
        assert!(route_inside("127.192.4.0/23", "127.192.0.0/10"));
        assert!(route_inside("127.192.4.1/32", "127.192.0.0/10"));
        assert!(!route_inside("127.192.4.1", "127.192.0.0/10"));
        assert!(!route_inside("127.0.0.0/8", "127.192.0.0/10"));
        assert!(!route_inside("10.250.0.0/16", "127.192.0.0/10"));
        assert!(!route_inside("not-an-address", "127.192.0.0/10"));
        assert!(!route_inside("127.192.4.0/23", "127.192.0.0/33"));
    }
}
