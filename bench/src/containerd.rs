//! An isolated containerd for a benchmark (scripts/containerd.sh), stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A containerd started by scripts/containerd.sh; stopped and its dir removed on drop.
pub struct Containerd {
    script: PathBuf,
    dir: PathBuf,
}

impl Containerd {
    /// Its state directory (`certs.d/` under it is its registry `config_path`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start one with `script`; its CNI bridge and temp dir are named from `prefix` and this
/// process's id. The guard and the daemon's socket.
pub fn start_containerd(script: &Path, prefix: &str) -> anyhow::Result<(Containerd, PathBuf)> {
    let pid = std::process::id();
    // Short: the socket path under it must fit a unix socket address.
    let dir = std::env::temp_dir().join(format!("{prefix}-ctrd-{pid}"));
    let bridge = format!("{prefix}{}", pid % 1_000_000);
    let guard = Containerd { script: script.to_path_buf(), dir: dir.clone() };
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .arg(&dir)
        .arg(&bridge)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} start failed", script.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sock = text.lines().last().map(str::trim).filter(|l| !l.is_empty());
    let sock = PathBuf::from(sock.context("containerd.sh start printed no socket path")?);
    Ok((guard, sock))
}
