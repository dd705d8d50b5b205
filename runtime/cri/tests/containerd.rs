//! `CriRuntime` against a real containerd: each test starts its own instance with
//! `scripts/containerd.sh start` in a temporary directory, on a bridge and pod CIDR of its own.
//! Without containerd the tests are skipped with a note (and fail when `CI=true`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skiff_runtime_core::cri_log;
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerRuntime, ContainerState, Mount, RuntimeError,
    SandboxConfig, labels,
};
use skiff_runtime_cri::CriRuntime;

const BUSYBOX: &str = "skiff.local/busybox:1.36";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containerd.sh")
}

/// A /24 in 10.213.0.0/16 that no route on this machine uses yet, starting the search at `seed`.
fn free_cidr(seed: u32) -> anyhow::Result<String> {
    let routes = Command::new("ip").args(["-4", "route"]).output().context("running ip route")?;
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    (0..200)
        .map(|i| format!("10.213.{}.0/24", 20 + (seed + i) % 200))
        .find(|cidr| !routes.contains(cidr.as_str()))
        .context("no free pod CIDR in 10.213.0.0/16")
}

/// A containerd instance owned by one test; stopped when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    socket: String,
    cidr: String,
}

impl Containerd {
    /// Start one, or `None` (after a note) when containerd is not installed here.
    fn start(test_index: u32) -> anyhow::Result<Option<Containerd>> {
        let installed =
            Command::new("containerd").arg("--version").output().is_ok_and(|o| o.status.success());
        if !installed {
            if std::env::var("CI").as_deref() == Ok("true") {
                bail!("containerd is not installed (scripts/containerd.sh install)");
            }
            eprintln!(
                "note: containerd is not installed; skipping (scripts/containerd.sh install)"
            );
            return Ok(None);
        }
        // Bridge and subnet unique per test and process; a bridge name has at most 15 bytes.
        let pid = std::process::id();
        let bridge = format!("skc{}t{test_index}", pid % 1_000_000);
        let cidr = free_cidr(pid.wrapping_mul(7).wrapping_add(test_index * 31))?;
        let dir = tempfile::Builder::new().prefix("skiff-cri-").tempdir()?;
        let images = std::env::temp_dir().join("skiff-oci-images");
        let out = Command::new("bash")
            .arg(script())
            .args(["start"])
            .arg(dir.path())
            .arg(&bridge)
            .env("SKIFF_OCI_IMAGES_DIR", &images)
            .output()
            .context("running scripts/containerd.sh start")?;
        if !out.status.success() {
            bail!("containerd.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let socket = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Some(Containerd { dir, socket, cidr }))
    }

    async fn runtime(&self) -> anyhow::Result<CriRuntime> {
        let runtime = CriRuntime::connect(&format!("unix://{}", self.socket)).await?;
        runtime.update_pod_cidr(&self.cidr).await?;
        Ok(runtime)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the instance (idempotent; dropping stops it too).
    fn stop(&self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path()).status();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sandbox_config(home: &Path, name: &str) -> SandboxConfig {
    let uid = format!("uid-{name}-{}", std::process::id());
    SandboxConfig {
        pod_uid: uid.clone(),
        pod_namespace: "default".into(),
        pod_name: name.into(),
        log_directory: home.join(format!("pods/default_{name}_{uid}")),
        hostname: name.into(),
        labels: BTreeMap::from([
            (labels::POD_UID.to_string(), uid.clone()),
            (labels::POD_NAME.to_string(), name.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
        ]),
        ..Default::default()
    }
}

fn container_config(
    sandbox: &SandboxConfig,
    id: &str,
    name: &str,
    script: &str,
) -> ContainerConfig {
    ContainerConfig {
        sandbox_id: id.to_string(),
        pod_uid: sandbox.pod_uid.clone(),
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        labels: BTreeMap::from([
            (labels::POD_UID.to_string(), sandbox.pod_uid.clone()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
        ]),
        log_path: sandbox.log_directory.join(name).join("0.log"),
        ..Default::default()
    }
}

async fn wait_exited(rt: &CriRuntime, id: &String) -> anyhow::Result<skiff_runtime_core::ExitInfo> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let ContainerState::Exited(info) = rt.container_status(id).await?.state {
            return Ok(info);
        }
        if Instant::now() > deadline {
            bail!("container {id} did not exit");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stdout/stderr content of a CRI log file, one entry per full line.
fn log_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .split(|&b| b == b'\n')
        .filter_map(cri_log::parse_line)
        .map(|r| String::from_utf8_lossy(r.content).into_owned())
        .collect()
}

async fn run_to_exit(
    rt: &CriRuntime,
    config: &ContainerConfig,
) -> anyhow::Result<skiff_runtime_core::ExitInfo> {
    let id = rt.create_container(config).await?;
    rt.start_container(&id).await?;
    wait_exited(rt, &id).await
}

#[tokio::test]
async fn pod_should_get_an_ip_and_run_containers_with_env_workdir_mounts_and_logs()
-> anyhow::Result<()> {
    let Some(cd) = Containerd::start(1)? else { return Ok(()) };
    let rt = cd.runtime().await?;
    let sandbox = sandbox_config(cd.path(), "web");
    let sid = rt.run_pod_sandbox(&sandbox).await?;
    assert_eq!(rt.run_pod_sandbox(&sandbox).await?, sid, "run_pod_sandbox is idempotent");
    let status = rt.sandbox_status(&sid).await?;
    assert!(status.ready);
    let ip = status.ip.context("sandbox has no IP")?;
    assert!(ip.starts_with(&cd.cidr[..cd.cidr.rfind('.').unwrap()]), "{ip} not in {}", cd.cidr);

    let data = cd.path().join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("in.txt"), "from the host")?;
    let ro = cd.path().join("ro");
    std::fs::create_dir_all(&ro)?;
    let mut config = container_config(
        &sandbox,
        &sid,
        "app",
        "echo hello; echo oops >&2; echo \"greeting=$GREETING\"; pwd; cat /data/in.txt; echo; \
         echo written > /data/out.txt; if touch /ro/x 2>/dev/null; then echo ro-writable; else echo ro-denied; fi",
    );
    config.env = vec![("GREETING".into(), "hi there".into())];
    config.working_dir = Some("/tmp".into());
    config.mounts = vec![
        Mount { host_path: data.clone(), container_path: "/data".into(), read_only: false },
        Mount { host_path: ro.clone(), container_path: "/ro".into(), read_only: true },
    ];
    let exit = run_to_exit(&rt, &config).await?;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
    let lines = log_lines(&config.log_path);
    for want in ["hello", "oops", "greeting=hi there", "/tmp", "from the host", "ro-denied"] {
        assert!(lines.iter().any(|l| l == want), "{want:?} not in log {lines:?}");
    }
    assert_eq!(std::fs::read_to_string(data.join("out.txt"))?, "written\n");
    assert!(!ro.join("x").exists());

    // The pod's address serves from the host: busybox httpd on the pod network.
    let mut server = container_config(
        &sandbox,
        &sid,
        "server",
        "echo pong > /tmp/ping; exec httpd -f -p 8080 -h /tmp",
    );
    server.log_path = sandbox.log_directory.join("server/0.log");
    let server_id = rt.create_container(&server).await?;
    rt.start_container(&server_id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&format!("{ip}:8080"), "/ping").await {
            Ok(body) => break body,
            Err(e) if Instant::now() > deadline => return Err(e.context("pod never answered")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(body.ends_with("pong\n"), "{body:?}");

    // Listings show what the kubelet adopts by.
    let listed = rt.list_containers().await?;
    let app = listed.iter().find(|c| c.name == "app").context("app not listed")?;
    assert_eq!(app.labels.get(labels::POD_UID), Some(&sandbox.pod_uid));
    assert_eq!(app.sandbox_id, sid);
    assert!(matches!(app.state, ContainerState::Exited(_)));
    let sandboxes = rt.list_sandboxes().await?;
    let listed = sandboxes.iter().find(|s| s.id == sid).context("sandbox not listed")?;
    assert_eq!(listed.ip.as_deref(), Some(ip.as_str()));
    assert_eq!(listed.labels.get(labels::POD_NAME).map(String::as_str), Some("web"));
    assert!(rt.list_images().await?.iter().any(|i| i.names.iter().any(|n| n.contains("busybox"))));

    rt.stop_container(&server_id, Duration::from_secs(2)).await?;
    rt.stop_pod_sandbox(&sid).await?;
    rt.stop_pod_sandbox(&sid).await?;
    rt.remove_pod_sandbox(&sid).await?;
    rt.remove_pod_sandbox(&sid).await?;
    Ok(())
}

/// A minimal HTTP/1.0 GET over TCP: the response, headers included.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await??;
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response)).await??;
    Ok(response)
}

#[tokio::test]
async fn exits_should_report_code_reason_termination_message_and_events() -> anyhow::Result<()> {
    let Some(cd) = Containerd::start(2)? else { return Ok(()) };
    let rt = cd.runtime().await?;
    let sandbox = sandbox_config(cd.path(), "jobs");
    let sid = rt.run_pod_sandbox(&sandbox).await?;
    let mut events = rt.subscribe();

    let mut failing = container_config(
        &sandbox,
        &sid,
        "failing",
        "echo 'disk full' > /dev/termination-log; exit 3",
    );
    failing.termination_message_path = Some("/dev/termination-log".into());
    failing.termination_message_host_path = Some(cd.path().join("term/failing"));
    let exit = run_to_exit(&rt, &failing).await?;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (3, "Error"));
    assert_eq!(exit.message.as_deref(), Some("disk full\n"));
    assert!(exit.finished_at >= exit.started_at);

    let mut quiet = container_config(&sandbox, &sid, "quiet", "exit 0");
    quiet.termination_message_path = Some("/dev/termination-log".into());
    quiet.termination_message_host_path = Some(cd.path().join("term/quiet"));
    let exit = run_to_exit(&rt, &quiet).await?;
    assert_eq!((exit.exit_code, exit.reason.as_str(), exit.message), (0, "Completed", None));

    // A command the image lacks: the start fails and the container ends as StartError.
    let mut missing = container_config(&sandbox, &sid, "missing", "");
    missing.command = vec!["/no/such/binary".into()];
    missing.args = Vec::new();
    let id = rt.create_container(&missing).await?;
    match rt.start_container(&id).await {
        Err(RuntimeError::Other(message)) => assert!(message.contains("no such file"), "{message}"),
        other => bail!("expected a start error, got {other:?}"),
    }
    let ContainerState::Exited(exit) = rt.container_status(&id).await?.state else {
        bail!("a container that failed to start is not exited");
    };
    assert_eq!((exit.exit_code, exit.reason.as_str()), (128, "StartError"));

    // The poller reports the exit of a container it saw running.
    let sleeper = container_config(&sandbox, &sid, "sleeper", "sleep 1");
    let id = rt.create_container(&sleeper).await?;
    rt.start_container(&id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event: ContainerEvent = tokio::time::timeout(remaining, events.recv()).await??;
        if event.container_id == id
            && matches!(rt.container_status(&id).await?.state, ContainerState::Exited(_))
        {
            assert_eq!(event.pod_uid, sandbox.pod_uid);
            break;
        }
    }
    rt.stop_pod_sandbox(&sid).await?;
    rt.remove_pod_sandbox(&sid).await?;
    Ok(())
}

#[tokio::test]
async fn exec_stop_stats_and_absent_images_should_behave() -> anyhow::Result<()> {
    let Some(cd) = Containerd::start(3)? else { return Ok(()) };
    let rt = cd.runtime().await?;
    let sandbox = sandbox_config(cd.path(), "svc");
    let sid = rt.run_pod_sandbox(&sandbox).await?;

    // Ignores SIGTERM: stop must wait out the grace period, then kill.
    let stubborn = container_config(
        &sandbox,
        &sid,
        "stubborn",
        "trap '' TERM; i=0; while true; do i=$((i+1)); done",
    );
    let id = rt.create_container(&stubborn).await?;
    rt.start_container(&id).await?;
    assert!(matches!(rt.container_status(&id).await?.state, ContainerState::Running { .. }));

    let r = rt
        .exec_sync(
            &id,
            &["sh".into(), "-c".into(), "echo out; echo err >&2; exit 4".into()],
            Duration::from_secs(5),
        )
        .await?;
    assert_eq!(
        (r.exit_code, r.stdout.as_slice(), r.stderr.as_slice()),
        (4, &b"out\n"[..], &b"err\n"[..])
    );

    // The busy loop burns CPU; stats come from the container's cgroup.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = rt.container_stats(&id).await?;
        if stats.cpu_usage_nanos > 0 && stats.memory_working_set_bytes > 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("stats stayed empty: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    rt.stop_container(&id, Duration::from_secs(1)).await?;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "stopped after {took:?}, before the grace period");
    let ContainerState::Exited(exit) = rt.container_status(&id).await?.state else {
        bail!("not exited after stop");
    };
    assert_eq!(exit.exit_code, 137);
    rt.stop_container(&id, Duration::from_secs(1)).await?;
    rt.remove_container(&id).await?;
    rt.remove_container(&id).await?;
    assert!(matches!(rt.container_status(&id).await, Err(RuntimeError::NotFound(_))));

    // A container that handles SIGTERM ends well before its grace period. (As PID 1 of its
    // namespace a process without a handler would ignore SIGTERM, as in Kubernetes.)
    let polite = container_config(
        &sandbox,
        &sid,
        "polite",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    let id = rt.create_container(&polite).await?;
    rt.start_container(&id).await?;
    let started = Instant::now();
    rt.stop_container(&id, Duration::from_secs(20)).await?;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let ContainerState::Exited(exit) = rt.container_status(&id).await?.state else {
        bail!("not exited after stop");
    };
    assert_eq!(exit.exit_code, 0);

    assert!(rt.image_status("skiff.local/absent:1").await?.is_none());
    assert!(rt.image_status(BUSYBOX).await?.is_some());
    let mut absent = container_config(&sandbox, &sid, "absent", "true");
    absent.image = "skiff.local/absent:1".into();
    match rt.create_container(&absent).await {
        Err(RuntimeError::ImageNotPresent { hint, .. }) => {
            assert!(hint.contains("skiff images import"))
        }
        other => bail!("expected ImageNotPresent, got {other:?}"),
    }
    assert!(matches!(
        rt.pull_image("skiff.local/absent:1", &Default::default()).await,
        Err(RuntimeError::PullFailed { .. })
    ));

    // `skiff images import` of an OCI image: into containerd, under the given name, runnable.
    let tarball = std::env::temp_dir().join("skiff-oci-images/busybox.tar");
    let endpoint = format!("unix://{}", cd.socket);
    let names = skiff_runtime_cri::import::import_oci_image(
        Some(&endpoint),
        &tarball,
        Some("skiff.local/renamed:2"),
    )?;
    assert_eq!(names, ["skiff.local/renamed:2"]);
    let mut renamed = container_config(&sandbox, &sid, "renamed", "echo renamed; sleep 600");
    renamed.image = "skiff.local/renamed:2".into();
    let id = rt.create_container(&renamed).await?;
    rt.start_container(&id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while log_lines(&renamed.log_path) != ["renamed"] {
        assert!(Instant::now() < deadline, "log: {:?}", log_lines(&renamed.log_path));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stopping the instance with the pod still running leaves nothing of it behind.
    drop(rt);
    let bridge = std::fs::read_to_string(cd.path().join("bridge"))?.trim().to_string();
    assert!(Command::new("ip").args(["link", "show", &bridge]).output()?.status.success());
    cd.stop();
    let dir = cd.path().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    assert!(!mounts.contains(&dir), "mounts left under {dir}");
    let shims = Command::new("pgrep").args(["-f", &format!("-address {}", cd.socket)]).output()?;
    assert!(shims.stdout.is_empty(), "shims left: {}", String::from_utf8_lossy(&shims.stdout));
    let link = Command::new("ip").args(["link", "show", &bridge]).output()?;
    assert!(!link.status.success(), "bridge {bridge} not removed");
    Ok(())
}

/// Sandbox + create + start latency over a series of pods (printed; not a timed assertion).
#[tokio::test]
async fn pod_startup_latency_should_be_measured() -> anyhow::Result<()> {
    let Some(cd) = Containerd::start(4)? else { return Ok(()) };
    let rt = cd.runtime().await?;
    let pods: usize =
        std::env::var("SKIFF_CRI_LATENCY_PODS").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    let mut samples = Vec::with_capacity(pods);
    let mut sandboxes = Vec::new();
    for i in 0..pods {
        let sandbox = sandbox_config(cd.path(), &format!("lat{i}"));
        let started = Instant::now();
        let sid = rt.run_pod_sandbox(&sandbox).await?;
        let id = rt
            .create_container(&container_config(&sandbox, &sid, "main", "exec sleep 600"))
            .await?;
        rt.start_container(&id).await?;
        samples.push(started.elapsed());
        sandboxes.push(sid);
    }
    for sid in &sandboxes {
        rt.stop_pod_sandbox(sid).await?;
        rt.remove_pod_sandbox(sid).await?;
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    println!(
        "cri pod startup (sandbox+create+start) over {pods} pods: p50 {p50:?}, p90 {p90:?}, max {:?}",
        samples.last().unwrap()
    );
    assert!(rt.list_sandboxes().await?.is_empty());
    Ok(())
}
