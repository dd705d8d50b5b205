//! Benchmark of image pulls from a registry: a pod's time from create to Running when its
//! image must first come from a loopback registry (Debian's `docker-registry`), for a 20 MiB
//! Wasm module and the local busybox (through containerd), next to `skopeo copy` of the same
//! image to a local directory in the same run; then a second pod of the same image (cached).
//!
//! Each Wasm run uses a fresh server (an empty image store); each OCI run first removes the
//! image from containerd. The registry speaks plain HTTP on 127.0.0.1 (a `registries.yaml`
//! entry says so), so the figures are the pull path's, not TLS's.
//!
//! `skiff-bench-pull --skiff target/release/skiff --guests-dir GUESTS --with-containerd`

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use skiff_bench::containerd::start_containerd;
use skiff_bench::oci::{padded_module, wasm_layout};
use skiff_bench::pods::pod;
use skiff_bench::{Goal, NodeWait, Server, ms};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// Where scripts/build-guests.sh put the guests (test-guest.wasip1.wasm).
    #[arg(long, env = "SKIFF_GUESTS_DIR")]
    guests_dir: PathBuf,
    /// Size of the Wasm module pulled (MiB).
    #[arg(long, default_value_t = 20)]
    wasm_mib: usize,
    /// Cold pulls measured per image (each with an empty store).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also pull the local busybox through containerd (an isolated one this starts).
    #[arg(long)]
    with_containerd: bool,
    /// The script that runs containerd and builds the busybox image.
    #[arg(long, default_value = "scripts/containerd.sh")]
    containerd_script: PathBuf,
    /// Target: pull to Running over `skopeo copy` of the same image.
    #[arg(long, default_value_t = 1.2)]
    target_ratio: f64,
}

/// A `docker-registry` on 127.0.0.1 (plain HTTP, no auth); killed on drop.
struct Registry {
    child: Child,
    host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> anyhow::Result<Registry> {
    // docker-registry cannot listen on port 0: take a free port and hand it over.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let host = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
        dir.join("data").display()
    );
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.yml"), config)?;
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry (apt install docker-registry)")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&host).is_err() {
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            bail!("docker-registry did not listen on {host}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Registry { child, host })
}

fn skopeo(args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("skopeo").args(args).output().context("running skopeo")?;
    if !out.status.success() {
        bail!("skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(started.elapsed())
}

/// Create `p` and wait until its container runs; the time from create to Running.
async fn create_to_running(pods: &Api<Pod>, p: &Pod) -> anyhow::Result<Duration> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let started = Instant::now();
    pods.create(&PostParams::default(), p).await?;
    let deadline = started + Duration::from_secs(120);
    loop {
        let got = pods.get(&name).await?;
        let status =
            got.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first());
        if status.and_then(|c| c.state.as_ref()).is_some_and(|s| s.running.is_some()) {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "pod {name} did not run within 120 s: {:?}",
                status.and_then(|c| c.state.clone())
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `without_pull`: the same pod start with the image already on the node but nothing else warm
/// (Wasm: imported on a cold node, so the module still compiles; OCI: the cached start).
fn report(
    what: &str,
    skiff: &[Duration],
    peer: &[Duration],
    cached: &[Duration],
    without_pull: &[Duration],
    target: f64,
) {
    let (s, p, c) = (median(skiff.to_vec()), median(peer.to_vec()), median(cached.to_vec()));
    let w = median(without_pull.to_vec());
    let ratio = ms(s) / ms(p).max(0.001);
    let goal = Goal::at_most(target);
    println!("  {what}");
    println!("    pull + start, create -> Running (median of {})  {:>8.1} ms", skiff.len(), ms(s));
    println!("    peer: skopeo copy to a directory (median)        {:>8.1} ms", ms(p));
    println!("    second pod, image cached (median)                {:>8.1} ms", ms(c));
    println!(
        "    ratio {ratio:.2}x {} target {target:.1}x: {}",
        goal.comparison(),
        goal.verdict(ratio)
    );
    println!("    the same start without the pull (median)         {:>8.1} ms", ms(w));
    println!(
        "    the pull's own share (the difference)            {:>8.1} ms = {:.2}x skopeo",
        ms(s) - ms(w),
        (ms(s) - ms(w)) / ms(p).max(0.001)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("skiff-bench-pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = run(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run(args: &Args, work: &Path) -> anyhow::Result<()> {
    let registry = start_registry(&work.join("registry"))?;
    let host = registry.host.clone();
    let registries = work.join("registries.yaml");
    std::fs::write(
        &registries,
        format!("mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n"),
    )?;

    // The Wasm image: the test guest grown to --wasm-mib.
    let guest =
        std::fs::read(args.guests_dir.join("test-guest.wasip1.wasm")).context("test guest")?;
    let module = padded_module(&guest, args.wasm_mib << 20);
    let layout = wasm_layout(&module, &work.join("wasm-layout"), "1")?;
    let wasm_ref = format!("{host}/bench/wasm:1");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{wasm_ref}"),
    ])?;
    println!(
        "Image pulls from a loopback registry ({host}, plain HTTP); {} cold runs each",
        args.runs
    );
    println!();

    let peer = |image: &str, n: usize| -> anyhow::Result<Duration> {
        let dest = work.join(format!("skopeo-{n}"));
        let took = skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("dir:{}", dest.display()),
        ])?;
        let _ = std::fs::remove_dir_all(&dest);
        Ok(took)
    };

    // The same module imported instead of pulled: a cold node's compile and start alone.
    let module_file = work.join("module.wasm");
    std::fs::write(&module_file, &module)?;
    let mut imported = Vec::new();
    for run in 0..args.runs {
        let server = Server::builder(&args.skiff, &format!("import-wasm-{run}"))
            .node("bench", NodeWait::Ready, Duration::from_secs(60))
            .image(&module_file, "bench/local:1")
            .log_to_file()
            .start()
            .await?;
        let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
        let p = pod("cold", "wasmtime", "bench/local:1", &["guest", "sleep", "3600"])?;
        imported.push(create_to_running(&pods, &p).await?);
        drop(server);
    }
    let (mut skiff, mut skopeo_runs, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        skopeo_runs.push(peer(&wasm_ref, run)?);
        let server = Server::builder(&args.skiff, &format!("pull-wasm-{run}"))
            .node("bench", NodeWait::Ready, Duration::from_secs(60))
            .args(["--registry-config".to_string(), registries.display().to_string()])
            .log_to_file()
            .start()
            .await?;
        let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
        skiff.push(
            create_to_running(
                &pods,
                &pod("cold", "wasmtime", &wasm_ref, &["guest", "sleep", "3600"])?,
            )
            .await?,
        );
        cached.push(
            create_to_running(
                &pods,
                &pod("warm", "wasmtime", &wasm_ref, &["guest", "sleep", "3600"])?,
            )
            .await?,
        );
        drop(server);
    }
    report(
        &format!("Wasm module of {} MiB (runtimeClassName wasmtime)", args.wasm_mib),
        &skiff,
        &skopeo_runs,
        &cached,
        &imported,
        args.target_ratio,
    );

    if args.with_containerd {
        let images = work.join("oci-images");
        let out = Command::new("bash")
            .arg(&args.containerd_script)
            .arg("images")
            .arg(&images)
            .output()?;
        if !out.status.success() {
            bail!("containerd.sh images: {}", String::from_utf8_lossy(&out.stderr));
        }
        let busybox_ref = format!("{host}/bench/busybox:1");
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}", images.join("busybox.tar").display()),
            &format!("docker://{busybox_ref}"),
        ])?;
        let (containerd, sock) = start_containerd(&args.containerd_script, "sbp")?;
        let server = Server::builder(&args.skiff, "pull-oci")
            .node("bench", NodeWait::Ready, Duration::from_secs(60))
            .args([
                "--registry-config".to_string(),
                registries.display().to_string(),
                "--container-runtime-endpoint".into(),
                format!("unix://{}", sock.display()),
                "--containerd-registry-config-path".into(),
                containerd.dir().join("certs.d").display().to_string(),
                "--cluster-cidr".into(),
                "10.252.0.0/16".into(),
            ])
            .log_to_file()
            .start()
            .await?;
        let pods: Api<Pod> = Api::namespaced(server.client().clone(), "default");
        let (mut skiff, mut skopeo_runs, mut cached) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.runs {
            skopeo_runs.push(peer(&busybox_ref, 100 + run)?);
            // Cold: the image goes (the first run finds none, which ctr reports and is fine).
            Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .args(["-n", "k8s.io", "images", "rm", "--sync", &busybox_ref])
                .output()?;
            let (cold, warm) = (format!("cold-{run}"), format!("warm-{run}"));
            skiff.push(
                create_to_running(&pods, &pod(&cold, "runc", &busybox_ref, &["sleep", "3600"])?)
                    .await?,
            );
            cached.push(
                create_to_running(&pods, &pod(&warm, "runc", &busybox_ref, &["sleep", "3600"])?)
                    .await?,
            );
            for name in [&cold, &warm] {
                let _ = pods.delete(name, &Default::default()).await;
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline
                && !pods.list(&Default::default()).await?.items.is_empty()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        report(
            "busybox through containerd (runtimeClassName runc)",
            &skiff,
            &skopeo_runs,
            &cached,
            &cached,
            args.target_ratio,
        );
        drop(server);
        drop(containerd);
    }
    drop(registry);
    Ok(())
}
