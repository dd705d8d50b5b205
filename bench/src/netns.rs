//! Network namespaces a benchmark makes for itself (root only): a "node" namespace for
//! `skiff server` and a "client" namespace joined to it by a veth pair (a /30 of 10.77.0.0/16,
//! the client's default route via the node), as an OCI pod is joined to its node. Nothing is
//! added to the host's namespace; both are deleted on drop.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out =
        Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn netns_path(ns: &str) -> String {
    format!("/var/run/netns/{ns}")
}

/// `nsenter --net=NS -- program` (only the network namespace changes: `ip netns exec` would
/// also remount /sys).
pub fn in_netns(ns: &str, program: &Path) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns_path(ns))).arg("--").arg(program);
    c
}

/// The node's and the client's namespaces and the veth pair between them; deleted on drop.
pub struct Net {
    pub node: String,
    pub client: String,
    pub node_ip: String,
    pub client_ip: String,
}

impl Net {
    /// Namespaces `skiff-bench-<what>-<pid>-node` and `-client`, on 10.77.`subnet`.0/30.
    pub fn new(what: &str, subnet: u8) -> anyhow::Result<Net> {
        let id = std::process::id();
        let net = Net {
            node: format!("skiff-bench-{what}-{id}-node"),
            client: format!("skiff-bench-{what}-{id}-client"),
            node_ip: format!("10.77.{subnet}.1"),
            client_ip: format!("10.77.{subnet}.2"),
        };
        // From here on, drop removes whatever part was made.
        run("ip", &["netns", "add", &net.node])?;
        run("ip", &["netns", "add", &net.client])?;
        let (n, c) = (net.node.as_str(), net.client.as_str());
        run(
            "ip",
            &[
                "-n",
                n,
                "link",
                "add",
                "to-client",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                c,
            ],
        )?;
        run("ip", &["-n", n, "addr", "add", &format!("{}/30", net.node_ip), "dev", "to-client"])?;
        run("ip", &["-n", c, "addr", "add", &format!("{}/30", net.client_ip), "dev", "eth0"])?;
        for (ns, dev) in [(n, "to-client"), (n, "lo"), (c, "eth0"), (c, "lo")] {
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        // The client's default route is the node (as a CNI bridge's gateway is an OCI pod's),
        // and the node routes the client's address back to it (a host route, like a CNI's).
        run("ip", &["-n", c, "route", "add", "default", "via", &net.node_ip])?;
        run(
            "ip",
            &["-n", n, "route", "replace", &format!("{}/32", net.client_ip), "dev", "to-client"],
        )?;
        let sysctl =
            in_netns(n, Path::new("sysctl")).args(["-qw", "net.ipv4.ip_forward=1"]).output()?;
        if !sysctl.status.success() {
            bail!("sysctl ip_forward in {n}: {}", String::from_utf8_lossy(&sysctl.stderr));
        }
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The veth pair goes with the namespaces.
        for ns in [&self.client, &self.node] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// Run `f` on a new thread inside network namespace `ns` (the sockets it opens live there, and
/// so do the threads it starts).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns)?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {ns} panicked"))?
    })
}

/// Move the calling thread into network namespace `ns`.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(netns_path(ns)).with_context(|| format!("opening netns {ns}"))?;
    // SAFETY: setns on a valid namespace fd; it changes only the calling thread.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
