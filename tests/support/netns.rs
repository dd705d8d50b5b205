//! Network namespaces made by a test: a bridge of its own in the host namespace (without an
//! address: the host takes no part in the traffic) and one namespace per node, each joined to
//! the bridge by a veth pair and given an address of a private /24 picked per test. Every
//! packet of a test of the node network stays inside these namespaces. Removed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::{Agent, Containerd, Skiff, guest};

pub struct TestNet {
    pub bridge: String,
    /// The /24's first three octets, e.g. `172.31.37`.
    pub prefix: String,
    pub namespaces: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl TestNet {
    /// `nodes` namespaces on a fresh bridge. `None` (after saying why) where this machine
    /// cannot make namespaces: not root, or no `ip`; under `CI=true` that fails the test.
    pub fn new(nodes: usize) -> Option<TestNet> {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let root = unsafe { libc::geteuid() } == 0;
        let has_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
        if !root || !has_ip {
            let why = if root { "the ip command is missing (iproute2)" } else { "not root" };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "network namespace tests cannot run: {why}"
            );
            eprintln!("skipping: network namespace tests need root and iproute2 ({why})");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id().wrapping_mul(13).wrapping_add(n)) % 100_000;
        let prefix = format!("172.31.{}", 16 + (id % 200));
        let net = TestNet {
            bridge: format!("skb{id}"),
            prefix,
            namespaces: (0..nodes).map(|i| format!("skiff-{id}-{i}")).collect(),
        };
        net.setup(id).unwrap_or_else(|e| panic!("setting up test namespaces: {e}"));
        Some(net)
    }

    fn setup(&self, id: u32) -> Result<(), String> {
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let host_end = format!("skv{id}x{i}");
            ip(&["netns", "add", ns])?;
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
            ip(&["link", "set", &host_end, "master", &self.bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            let addr = format!("{}/24", self.node_ip(i));
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            // Nodes forward to the pods behind them (OCI pods sit behind a CNI bridge).
            let out = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{ns}"))
                .args(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("sysctl in {ns}: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        Ok(())
    }

    /// The address of node `i` (its namespace's `eth0`).
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Run `args` in node `i`'s namespace; stdout on success, else the error text.
    pub fn exec(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.ns(i)))
            .arg("--")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Processes still inside would keep it alive; the tests stop theirs first.
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A two-node cluster in test namespaces: `skiff server` (node `skiff-e2e`, with containerd
/// when asked) in the first, `skiff agent` (node `node-b`, Wasm only) in the second, each with
/// the image `hello-http:e2e`. Fields drop in order: processes first, then containerd, then
/// the namespaces.
pub struct TwoNodes {
    pub agent: Agent,
    pub server: Skiff,
    pub containerd: Option<Containerd>,
    /// The agent's containerd, when asked for ([`TwoNodes::start_with`]).
    pub agent_containerd: Option<Containerd>,
    pub net: TestNet,
    pub dir: tempfile::TempDir,
}

/// The agent's node name in [`TwoNodes`].
pub const AGENT_NODE: &str = "node-b";

impl TwoNodes {
    /// `None` where namespaces (or, with `oci`, containerd) are not available here.
    pub fn start(oci: bool) -> Option<TwoNodes> {
        TwoNodes::start_with(oci, false)
    }

    /// As [`TwoNodes::start`], with containerd on the server (`oci`) and on the agent
    /// (`agent_oci`) as asked.
    pub fn start_with(oci: bool, agent_oci: bool) -> Option<TwoNodes> {
        TwoNodes::start_with_args(oci, agent_oci, &[])
    }

    /// As [`TwoNodes::start_with`], with `server_extra` flags for `skiff server`.
    pub fn start_with_args(oci: bool, agent_oci: bool, server_extra: &[&str]) -> Option<TwoNodes> {
        let net = TestNet::new(2)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let containerd = if oci {
            Some(Containerd::start_in(Some(net.ns(0)), &dir.path().join("containerd"), "skcni0")?)
        } else {
            None
        };
        let agent_containerd = if agent_oci {
            Some(Containerd::start_in(Some(net.ns(1)), &dir.path().join("ctrd-b"), "skcni1")?)
        } else {
            None
        };
        let (ip0, ip1) = (net.node_ip(0), net.node_ip(1));
        let listen = format!("{ip0}:0");
        let endpoint = containerd.as_ref().map(|c| format!("unix://{}", c.socket));
        let mut args = vec!["--listen", &listen, "--node-ip", &ip0];
        if let Some(e) = &endpoint {
            args.extend(["--container-runtime-endpoint", e]);
        }
        args.extend(server_extra);
        let server = Skiff::start_in(Some(net.ns(0)), &dir.path().join("server"), &args);
        let kubelet = format!("{ip1}:0");
        let agent_endpoint = agent_containerd.as_ref().map(|c| format!("unix://{}", c.socket));
        let mut agent_args = vec![
            "--node-ip",
            &ip1,
            "--kubelet-listen",
            &kubelet,
            "--cluster-cidr",
            &server.cluster_cidr,
        ];
        if let Some(e) = &agent_endpoint {
            agent_args.extend(["--container-runtime-endpoint", e]);
        }
        let agent = server.start_agent_in(
            Some(net.ns(1)),
            &dir.path().join("agent"),
            AGENT_NODE,
            &agent_args,
        );
        server.import(&guest("hello-http.wasip2.wasm"), "hello-http:e2e");
        agent.import(&guest("hello-http.wasip2.wasm"), "hello-http:e2e");
        Some(TwoNodes { agent, server, containerd, agent_containerd, net, dir })
    }

    pub fn apply(&self, manifest: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest);
    }

    pub fn delete(&self, manifest: &str) {
        self.kubectl_stdin(&["delete", "--wait=false", "-f", "-"], manifest);
    }

    fn kubectl_stdin(&self, args: &[&str], manifest: &str) {
        let out = self.server.kubectl_stdin(args, manifest);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Run `f` on a thread inside network namespace `ns` (sockets it opens live there).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a valid namespace fd; it changes only this thread.
                #[allow(unsafe_code)]
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in namespace")
    })
}

/// One HTTP/1.1 GET on a new connection: (status, body), or what went wrong.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write {addr}: {e}"))?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).map_err(|e| format!("read {addr}: {e}"))?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line from {addr}: {buf:?}"))?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
