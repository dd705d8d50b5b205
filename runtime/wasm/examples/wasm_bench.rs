//! Prints the runtime's figures: compile time of a guest, create+start latency once its
//! digest is cached, and process RSS per idle (sleeping) instance.
//!
//! ```text
//! scripts/build-guests.sh
//! cargo run -p skiff-runtime-wasm --example wasm_bench -- [--on-demand] [N] [guest.wasm]
//! ```
//! The guest must understand `sleep SECONDS` (default: the wasip1 test guest). With `N = 0`
//! only the compile time of the guest is measured (any guest works).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use skiff_runtime_core::{ContainerConfig, ContainerRuntime, ContainerState};
use skiff_runtime_wasm::{EngineOptions, WasmRuntime, WasmRuntimeOptions};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// RSS split: anonymous (heap, stacks, written wasm pages) vs file/shmem mappings (the
/// copy-on-write module images, counted once per instance mapping them).
fn rss_breakdown() -> String {
    format!(
        "anon {} KiB, file {} KiB, shmem {} KiB",
        status_kib("RssAnon:"),
        status_kib("RssFile:"),
        status_kib("RssShmem:")
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pooling = !args.iter().any(|a| a == "--on-demand");
    args.retain(|a| a != "--on-demand");
    let n: u32 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let guest = match args.get(1) {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let dir = std::env::var("SKIFF_GUESTS_DIR").unwrap_or(format!("{target}/guests/out"));
            PathBuf::from(dir).join("test-guest.wasip1.wasm")
        }
    };
    let dir = tempfile::tempdir()?;
    let rss0 = rss_kib();
    let t = Instant::now();
    let options =
        WasmRuntimeOptions { engine: EngineOptions { pooling, max_instances: n.max(16) + 16 } };
    let rt = WasmRuntime::with_options(dir.path(), options)?;
    println!("allocator: {}", if pooling { "pooling" } else { "on-demand" });
    println!("runtime startup: {:?}, RSS {} KiB -> {} KiB", t.elapsed(), rss0, rss_kib());
    rt.images().import(&guest, Some("guest:latest"))?;

    let config = |i: u32| ContainerConfig {
        sandbox_id: format!("pod-{i}"),
        pod_uid: format!("pod-{i}"),
        name: format!("c{i}"),
        image: "guest:latest".into(),
        argv: vec!["guest".into(), "sleep".into(), "3600".into()],
        env: vec![],
        memory_limit_bytes: 64 << 20,
        cpu_limit_millis: None,
        log_path: dir.path().join(format!("logs/{i}.log")),
        ..Default::default()
    };

    let t = Instant::now();
    let first = rt.create_container(&config(0)).await?;
    println!("first create (compile {}): {:?}", guest.display(), t.elapsed());
    rt.remove_container(&first).await?;
    if n == 0 {
        return Ok(());
    }

    // Settle, then measure the baseline with the compiled program loaded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = rss_kib();
    let (mut create, mut start) = (Duration::ZERO, Duration::ZERO);
    let mut ids = Vec::new();
    for i in 1..=n {
        let c = config(i);
        let t = Instant::now();
        let id = rt.create_container(&c).await?;
        create += t.elapsed();
        let t = Instant::now();
        rt.start_container(&id).await?;
        start += t.elapsed();
        ids.push(id);
    }
    println!("cached create: {:?}/container, start: {:?}/container (n={n})", create / n, start / n);
    // Wait until every guest has printed "sleeping" (i.e. really runs and sleeps).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sleeping = (1..=n)
            .filter(|i| {
                std::fs::read_to_string(dir.path().join(format!("logs/{i}.log")))
                    .is_ok_and(|s| s.contains("sleeping"))
            })
            .count();
        if sleeping == n as usize || Instant::now() > deadline {
            println!("{sleeping}/{n} guests sleeping");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = rss_kib();
    println!(
        "RSS with {n} sleeping guests: {} KiB total, {} KiB over baseline {} KiB = {:.1} KiB/instance",
        busy,
        busy - base,
        base,
        (busy - base) as f64 / n as f64
    );
    println!("  ({})", rss_breakdown());
    let t = Instant::now();
    for id in &ids {
        rt.stop_container(id, Duration::ZERO).await?;
        rt.remove_container(id).await?;
    }
    for id in &ids {
        if let Ok(s) = rt.container_status(id).await {
            assert!(matches!(s.state, ContainerState::Exited(_)));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "stopped all in {:?}; RSS after stop: {} KiB ({})",
        t.elapsed(),
        rss_kib(),
        rss_breakdown()
    );
    Ok(())
}
