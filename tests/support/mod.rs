//! Shared harness of the end-to-end tests: a real `skiff server` process in a temp dir, the
//! real kubectl, and the real guest modules.

#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_script(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts").join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(out.status.success(), "scripts/{script} failed");
    let dir = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").trim().to_string();
    PathBuf::from(dir)
}

/// Directory with the real kubectl (fetched by scripts/fetch-tools.sh unless SKIFF_TOOLS_DIR is set).
pub fn tools_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("SKIFF_TOOLS_DIR") {
        Some(d) => PathBuf::from(d),
        None => run_script("fetch-tools.sh"),
    })
}

/// Directory with the built guests (scripts/build-guests.sh unless SKIFF_GUESTS_DIR is set).
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("SKIFF_GUESTS_DIR") {
        Some(d) if Path::new(&d).join("test-guest.wasip2.wasm").exists() => PathBuf::from(d),
        _ => run_script("build-guests.sh"),
    })
}

pub fn guest(name: &str) -> PathBuf {
    let p = guests_dir().join(name);
    assert!(p.exists(), "guest {} missing", p.display());
    p
}

/// End-to-end tests share two cores; running them one at a time keeps their timings honest.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Skiff {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub kubeconfig: PathBuf,
    /// The network namespace the server runs in (and kubectl with it), if not the host's.
    pub netns: Option<String>,
    /// The server's pod address space (`--cluster-cidr`).
    pub cluster_cidr: String,
}

/// With `--token`, kubectl should authenticate by that token alone: the admin kubeconfig's
/// current user also holds a client certificate, which kube (and Skiff) would accept first, so
/// such calls use the kubeconfig's token context (`skiff-token`) unless they name a context.
fn token_context(args: &[&str]) -> Vec<&'static str> {
    let token = args.iter().any(|a| *a == "--token" || a.starts_with("--token="));
    let context = args.iter().any(|a| *a == "--context" || a.starts_with("--context="));
    if token && !context { vec!["--context", "skiff-token"] } else { Vec::new() }
}

/// `program` to run in network namespace `netns`, or as it is. Only the network namespace
/// changes (`nsenter --net`): `ip netns exec` would also remount `/sys`, hiding the cgroup
/// file system that runc needs.
pub fn in_netns(netns: Option<&str>, program: &Path) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{ns}")).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The fields after `READY ` of each READY line the server prints on stdout (which this
/// takes over), as they come.
pub fn ready_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("READY ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    rx
}

/// The `skiff` binary under test: this build's, or SKIFF_BIN when set (to run the end-to-end
/// suites against another build).
pub fn skiff_bin() -> PathBuf {
    std::env::var_os("SKIFF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff")))
}

/// The hard eviction thresholds of the nodes tests start (unless a test gives its own
/// `--eviction-hard`): memory only, so a test's pods do not depend on how full the machine's
/// disk is (the kubelet's default refuses every pod once less than 10% is free).
pub const TEST_EVICTION_HARD: &str = "memory.available<100Mi";
/// Image garbage collection off in the nodes tests start (unless a test turns it on with its
/// own `--image-gc-high-threshold`), for the same reason: a full disk would make it remove
/// images a test imported and uses later.
pub const TEST_IMAGE_GC_HIGH_THRESHOLD: &str = "100";

impl Skiff {
    /// Start `skiff server` on a free port with `dir` as its data dir; wait until it is ready.
    pub fn start(dir: &Path) -> Skiff {
        Skiff::start_with(dir, &[])
    }

    /// `start` with extra `skiff server` flags. Each server gets a pod address space of its
    /// own (a /16 of 10.128.0.0/9), so servers of concurrent tests never hand out the same
    /// pod address. Servers in the host's network namespace leave its nftables alone
    /// (`--proxy-mode none`: Services are resolved in-process only) and serve cluster DNS on
    /// a loopback port; tests of the node network run servers in namespaces of their own
    /// ([`Skiff::start_in`]).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Skiff {
        Skiff::start_logged(None, dir, &Skiff::host_args(extra), None)
    }

    /// `start_with`, the server's log going to `log` at `filter` (`SKIFF_LOG`) instead of the
    /// test's stderr, for tests that read what the server logs.
    pub fn start_logging(dir: &Path, extra: &[&str], log: &Path, filter: &str) -> Skiff {
        let file = std::fs::File::create(log).expect("creating the server log file");
        Skiff::start_logged(None, dir, &Skiff::host_args(extra), Some((file, filter)))
    }

    /// `extra` after the flags of a server in the host's network namespace.
    fn host_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--listen", "127.0.0.1:0", "--node-ip", "127.0.0.1"];
        if !extra.contains(&"--proxy-mode") {
            args.extend(["--proxy-mode", "none"]);
        }
        if !extra.contains(&"--dns-listen") {
            args.extend(["--dns-listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        args
    }

    /// Start `skiff server` inside network namespace `netns` (when given: every command this
    /// harness runs for it, kubectl included, runs there too) with exactly `args` after the
    /// node name, cluster CIDR and data dir.
    pub fn start_in(netns: Option<&str>, dir: &Path, args: &[&str]) -> Skiff {
        Skiff::start_logged(netns, dir, args, None)
    }

    /// `start_in`, logging to `log`'s file at its filter when given, else to the test's stderr.
    fn start_logged(
        netns: Option<&str>,
        dir: &Path,
        args: &[&str],
        log: Option<(std::fs::File, &str)>,
    ) -> Skiff {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let block = (std::process::id().wrapping_mul(7).wrapping_add(n)) % 128;
        let cidr = format!("10.{}.0.0/16", 128 + block);
        let (stderr, filter) = match log {
            Some((file, filter)) => (Stdio::from(file), filter),
            None => (Stdio::inherit(), "info,openraft=warn,kube=warn"),
        };
        let mut child = in_netns(netns, &skiff_bin())
            .args(["server", "--node-name", "skiff-e2e", "--cluster-cidr", &cidr, "--data-dir"])
            .arg(dir)
            .args(args)
            .env("SKIFF_LOG", filter)
            .env("SKIFF_EVICTION_HARD", TEST_EVICTION_HARD)
            .env("SKIFF_IMAGE_GC_HIGH_THRESHOLD", TEST_IMAGE_GC_HIGH_THRESHOLD)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning skiff server");
        let rx = ready_lines(&mut child);
        let ready = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("skiff server did not become ready in 60 s");
        let mut parts = ready.split_whitespace();
        let url = parts.next().unwrap_or_default().to_string();
        let kubeconfig = PathBuf::from(parts.next().unwrap_or_default());
        let s = Skiff {
            child: Some(child),
            dir: dir.to_path_buf(),
            url,
            kubeconfig,
            netns: netns.map(str::to_string),
            cluster_cidr: cidr,
        };
        // The node registers asynchronously; wait for it to be Ready.
        s.wait_for("node Ready", Duration::from_secs(30), || s.node_ready("skiff-e2e") == "True");
        s
    }

    /// The status of node `node`'s Ready condition (`True`, `False`, `Unknown`; empty when
    /// the node or the condition is missing).
    pub fn node_ready(&self, node: &str) -> String {
        let out = self.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if !out.status.success() {
            return String::new();
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// A home of its own for the tools run against this server: kubectl and helm keep their
    /// discovery and OpenAPI caches under `~/.kube/cache` keyed by host and port, and a port
    /// reused by a later server would otherwise be answered from the earlier server's cache.
    pub fn tool_home(&self) -> PathBuf {
        let home = self.dir.join("tool-home");
        let _ = std::fs::create_dir_all(&home);
        home
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        in_netns(self.netns.as_deref(), &tools_dir().join("kubectl"))
            .env("HOME", self.tool_home())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(token_context(args))
            .args(args)
            .output()
            .expect("running kubectl")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = in_netns(self.netns.as_deref(), &tools_dir().join("kubectl"))
            .env("HOME", self.tool_home())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(token_context(args))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl json")
    }

    pub fn import(&self, file: &Path, name: &str) {
        let out = Command::new(skiff_bin())
            .args(["images", "import", "--data-dir"])
            .arg(&self.dir)
            .arg(file)
            .args(["--name", name])
            .output()
            .expect("skiff images import");
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// Poll a pod until `pred` holds on its JSON; returns that JSON.
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let out = self.kubectl(&["get", "pod", name, "-o", "json"]);
            if out.status.success() {
                last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                if pred(&last) {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for pod {name} to be {what}; last seen: {}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default()
        );
    }

    pub fn signal(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill on our own child's pid.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("skiff server did not exit within 30 s of signal {sig}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A `skiff agent` process: a second node joined to a server.
pub struct Agent {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub name: String,
}

impl Skiff {
    /// Start `skiff agent` as node `name` with `dir` as its data dir, joined to this server
    /// with the server's join token; wait until its Node is Ready.
    pub fn start_agent(&self, dir: &Path, name: &str, extra: &[&str]) -> Agent {
        let mut args = vec!["--node-ip", "127.0.0.1", "--proxy-mode", "none"];
        args.extend(["--dns-listen", "127.0.0.1:0"]);
        args.extend(extra);
        self.start_agent_in(None, dir, name, &args)
    }

    /// Start `skiff agent` as node `name` in network namespace `netns` (if given) with
    /// exactly `args` after its name and data dir; wait until its Node is Ready.
    pub fn start_agent_in(
        &self,
        netns: Option<&str>,
        dir: &Path,
        name: &str,
        args: &[&str],
    ) -> Agent {
        let token = std::fs::read_to_string(self.dir.join("token")).expect("join token");
        let mut child = in_netns(netns, &skiff_bin())
            .args(["agent", "--server", &self.url, "--token", token.trim()])
            .args(["--node-name", name, "--data-dir"])
            .arg(dir)
            .args(args)
            .env("SKIFF_LOG", "info,kube=warn")
            .env("SKIFF_EVICTION_HARD", TEST_EVICTION_HARD)
            .env("SKIFF_IMAGE_GC_HIGH_THRESHOLD", TEST_IMAGE_GC_HIGH_THRESHOLD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning skiff agent");
        let rx = ready_lines(&mut child);
        rx.recv_timeout(Duration::from_secs(60)).expect("skiff agent did not start in 60 s");
        let agent = Agent { child: Some(child), dir: dir.to_path_buf(), name: name.to_string() };
        self.wait_for(&format!("node {name} Ready"), Duration::from_secs(30), || {
            let out = self.kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True"
        });
        agent
    }
}

impl Agent {
    /// Import an image into this node's own store.
    pub fn import(&self, file: &Path, name: &str) {
        let out = Command::new(skiff_bin())
            .args(["images", "import", "--data-dir"])
            .arg(&self.dir)
            .arg(file)
            .args(["--name", name])
            .output()
            .expect("skiff images import");
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// SIGKILL the agent: the node and its pods vanish without a word to the control plane.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// CPU time (user + system) the process has used so far (the benchmarks' `/proc` reader).
pub fn cpu_time(pid: u32) -> Duration {
    skiff_bench::procfs::cpu_time(pid)
}

/// A client binary of the tools dir by its versioned name (`kubectl-1.34`, `helm-3.19`, ...).
pub fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join(name);
    assert!(p.exists(), "{} missing: run scripts/fetch-tools.sh", p.display());
    p
}

/// The Python of the venv with the official `kubernetes` client (scripts/fetch-tools.sh puts it
/// next to the tools dir).
pub fn python() -> PathBuf {
    let p = tools_dir().parent().unwrap_or(Path::new("/")).join("python/bin/python");
    assert!(p.exists(), "{} missing: run scripts/fetch-tools.sh", p.display());
    p
}

/// The manifests of tests/manifests, one object per file, in file-name order (namespace first).
pub fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = repo_root().join("tests/manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/manifests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("manifest");
            let v: Value =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// Checks that go on after one fails, so that a run reports every broken behaviour at once;
/// `finish` fails the test with the list.
#[derive(Default)]
pub struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    pub fn check(&mut self, name: &str, f: impl FnOnce()) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => self.passed += 1,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let mut short: String = msg.chars().take(1500).collect();
                if short.len() < msg.len() {
                    short.push_str(" ...");
                }
                self.failed.push(format!("{name}: {short}"));
            }
        }
    }

    pub fn finish(self, what: &str) {
        eprintln!("{what}: {} checks passed, {} failed", self.passed, self.failed.len());
        assert!(
            self.failed.is_empty(),
            "{what}: {} of {} checks failed:\n- {}",
            self.failed.len(),
            self.failed.len() + self.passed,
            self.failed.join("\n- ")
        );
    }
}

/// Where `want` is not contained in `got` (objects: every key of `want`, recursively; arrays:
/// element by element, `got` may be longer; scalars: equal). Empty when contained.
pub fn not_contained(want: &Value, got: &Value, path: &str) -> Vec<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .flat_map(|(k, v)| match g.get(k) {
                Some(gv) => not_contained(v, gv, &format!("{path}.{k}")),
                None => vec![format!("{path}.{k} missing")],
            })
            .collect(),
        (Value::Array(w), Value::Array(g)) if g.len() >= w.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .flat_map(|(i, (wv, gv))| not_contained(wv, gv, &format!("{path}[{i}]")))
            .collect(),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => vec![],
        _ if want == got => vec![],
        _ => vec![format!("{path}: want {want}, got {got}")],
    }
}

/// Poll pod `name` in `ns` with `run` (a kubectl of some version) until `pred` holds.
pub fn wait_pod_with(
    run: impl Fn(&[&str]) -> Output,
    name: &str,
    ns: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let out = run(&["get", "pod", name, "-n", ns, "-o", "json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if pred(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for pod {ns}/{name}; last status: {}", last["status"]);
}

/// An isolated containerd for a test (scripts/containerd.sh), stopped on drop.
pub struct Containerd {
    dir: PathBuf,
    pub socket: String,
}

impl Containerd {
    /// Start one with its state under `dir` and pods on CNI bridge `bridge`. `None` (after
    /// saying why) where containerd is not installed; under `CI=true` that fails the test.
    pub fn start(dir: &Path, bridge: &str) -> Option<Containerd> {
        Containerd::start_in(None, dir, bridge)
    }

    /// `start` inside network namespace `netns`: the daemon, its CNI bridge and its pods'
    /// network live there.
    pub fn start_in(netns: Option<&str>, dir: &Path, bridge: &str) -> Option<Containerd> {
        if Command::new("containerd").arg("--version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "containerd is not installed (scripts/containerd.sh install)"
            );
            eprintln!(
                "containerd is not installed; skipping the OCI part (scripts/containerd.sh install)"
            );
            return None;
        }
        let script = repo_root().join("scripts/containerd.sh");
        let out = in_netns(netns, Path::new("bash"))
            .arg(&script)
            .arg("start")
            .arg(dir)
            .arg(bridge)
            .output()
            .expect("running scripts/containerd.sh");
        assert!(
            out.status.success(),
            "containerd.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        Some(Containerd { dir: dir.to_path_buf(), socket })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/containerd.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// `(ca_pem, server_cert_pem, server_key_pem)`: a CA named `ca_name` and a certificate for
/// 127.0.0.1 it signed, for the HTTPS servers tests run on loopback.
pub fn loopback_pki(ca_name: &str) -> (String, String, String) {
    loopback_pki_for(ca_name, &[])
}

/// [`loopback_pki`] with a certificate that also names `dns_names`.
pub fn loopback_pki_for(ca_name: &str, dns_names: &[&str]) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    leaf.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    for name in dns_names {
        leaf.subject_alt_names.push(SanType::DnsName((*name).try_into().expect("dns name")));
    }
    let cert = leaf.signed_by(&key, &issuer).expect("leaf cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A test program (Python) that prints the port it listens on as its first line, then serves
/// until killed; killed on drop.
pub struct PyServer {
    child: Child,
    pub port: u16,
}

impl PyServer {
    /// Run `script` with `args` and wait for its port.
    pub fn start(script: &Path, args: &[&Path]) -> PyServer {
        use std::io::BufRead as _;
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("the port of {}: {e}", script.display()));
        let port = line.trim().parse().unwrap_or_else(|_| panic!("a port number, not {line:?}"));
        PyServer { child, port }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.stop();
    }
}
