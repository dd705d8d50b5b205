#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runtime tests with real wasmtime: inline WAT guests always, the Rust guests from
//! `tests/guests` and `examples/hello-wasm` when `scripts/build-guests.sh` has built them
//! (skipped without them, except under `CI=true`, where that fails).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime_core::cri_log::{self, LogStream};
use skiff_runtime_core::{
    ContainerConfig, ContainerRuntime, ContainerState, ExitInfo, RuntimeError, SandboxConfig,
};

use crate::{EngineOptions, WasmRuntime, WasmRuntimeOptions};

const MIB: u64 = 1 << 20;

const HELLO_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from wat\nsecond line\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 27))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

const EXIT_3_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))
"#;

const EXIT_0_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 0))))
"#;

const TRAP_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func $deep (unreachable))
  (func (export "_start") (call $deep)))
"#;

/// Grows memory a page at a time until refused, then traps — like an allocator aborting.
const MEMORY_BOMB_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (unreachable)))
"#;

const SPIN_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))
"#;

/// Sleeps 60 s in `poll_oneoff` on the monotonic clock.
const SLEEP_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 128) (i64.const 0))
    (i32.store8 (i32.const 136) (i32.const 0))
    (i32.store (i32.const 144) (i32.const 1))
    (i64.store (i32.const 152) (i64.const 60000000000))
    (i64.store (i32.const 160) (i64.const 0))
    (i32.store16 (i32.const 168) (i32.const 0))
    (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 512)))))
"#;

const MISSING_IMPORT_WAT: &str = r#"
(module
  (import "env" "not_provided" (func $f))
  (memory (export "memory") 1)
  (func (export "_start") (call $f)))
"#;

struct Harness {
    dir: tempfile::TempDir,
    rt: WasmRuntime,
    next: u32,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // A small pool: many test runtimes live in one process.
        let options =
            WasmRuntimeOptions { engine: EngineOptions { pooling: true, max_instances: 16 } };
        let rt = WasmRuntime::with_options(dir.path(), options).expect("runtime");
        Harness { dir, rt, next: 0 }
    }

    fn import_wat(&self, name: &str, wat: &str) {
        let bytes = wat::parse_str(wat).expect("valid wat");
        let file = self.dir.path().join(format!("{}.wasm", name.replace([':', '/'], "_")));
        std::fs::write(&file, bytes).expect("write wasm");
        self.rt.images().import(&file, Some(name)).expect("import");
    }

    fn import_file(&self, name: &str, file: &Path) {
        self.rt.images().import(file, Some(name)).expect("import");
    }

    fn config(&mut self, image: &str, args: &[&str], memory_limit_bytes: u64) -> ContainerConfig {
        self.next += 1;
        let name = format!("c{}", self.next);
        ContainerConfig {
            sandbox_id: "pod-uid-1".into(),
            pod_uid: "pod-uid-1".into(),
            name: name.clone(),
            image: image.into(),
            argv: std::iter::once(name.as_str())
                .chain(args.iter().copied())
                .map(String::from)
                .collect(),
            env: vec![("GREETING".into(), "hi there".into())],
            memory_limit_bytes,
            cpu_limit_millis: None,
            log_path: self.dir.path().join("pods/default_p_uid").join(format!("{name}/0.log")),
            ..Default::default()
        }
    }

    async fn run(
        &mut self,
        image: &str,
        args: &[&str],
        limit: u64,
    ) -> (ExitInfo, Vec<(LogStream, String)>) {
        let config = self.config(image, args, limit);
        let id = self.rt.create_container(&config).await.expect("create");
        self.rt.start_container(&id).await.expect("start");
        let exit = wait_exit(&self.rt, &id, Duration::from_secs(30)).await;
        (exit, read_log(&config.log_path))
    }
}

async fn wait_exit(rt: &WasmRuntime, id: &String, within: Duration) -> ExitInfo {
    let deadline = Instant::now() + within;
    loop {
        let status = rt.container_status(id).await.expect("status");
        if let ContainerState::Exited(info) = status.state {
            return info;
        }
        assert!(Instant::now() < deadline, "container {id} did not exit within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_log_line(path: &Path, line: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !read_log(path).iter().any(|(_, l)| l == line) {
        assert!(Instant::now() < deadline, "log line {line:?} not seen within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_log(path: &Path) -> Vec<(LogStream, String)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let r = cri_log::parse_line(l).expect("valid CRI log line");
            (r.stream, String::from_utf8_lossy(r.content).into_owned())
        })
        .collect()
}

fn stdout_lines(log: &[(LogStream, String)]) -> Vec<&str> {
    log.iter().filter(|(s, _)| *s == LogStream::Stdout).map(|(_, l)| l.as_str()).collect()
}

/// Where `scripts/build-guests.sh` puts the Rust guests, if it ran.
fn guests_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SKIFF_GUESTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => PathBuf::from(t).join("guests/out"),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guests/out"),
        },
    };
    dir.join("test-guest.wasip1.wasm").is_file().then_some(dir)
}

fn rust_guest(file: &str) -> Option<PathBuf> {
    match guests_dir() {
        Some(dir) => Some(dir.join(file)),
        None => {
            // In CI the guests are built first (`make test`): missing ones are a failure.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Rust guests not built under CI=true (scripts/build-guests.sh; SKIFF_GUESTS_DIR)"
            );
            eprintln!("NOTICE: Rust guests not built (run scripts/build-guests.sh); skipping");
            None
        }
    }
}

#[tokio::test]
async fn hello_should_write_cri_log_lines() {
    let mut h = Harness::new();
    h.import_wat("hello", HELLO_WAT);
    let (exit, log) = h.run("hello", &[], 64 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
    assert_eq!(stdout_lines(&log), ["hello from wat", "second line"]);
}

#[tokio::test]
async fn exit_codes_should_map_to_completed_and_error() {
    let mut h = Harness::new();
    h.import_wat("exit3", EXIT_3_WAT);
    h.import_wat("exit0", EXIT_0_WAT);
    let (exit, _) = h.run("exit3", &[], 64 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (3, "Error"));
    let (exit, _) = h.run("exit0", &[], 64 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
}

#[tokio::test]
async fn trap_should_be_reported_with_backtrace() {
    let mut h = Harness::new();
    h.import_wat("trap", TRAP_WAT);
    let (exit, _) = h.run("trap", &[], 64 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (crate::EXIT_TRAP, "Trap"));
    let message = exit.message.expect("trap message");
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("deep"), "backtrace should name the function: {message}");
    assert!(message.len() <= 4096);
}

#[tokio::test]
async fn memory_bomb_should_be_oom_killed() {
    let mut h = Harness::new();
    h.import_wat("bomb", MEMORY_BOMB_WAT);
    let (exit, _) = h.run("bomb", &[], 32 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (137, "OOMKilled"));
    assert_eq!(exit.message.as_deref(), Some("memory limit of 33554432 bytes exceeded"));
}

#[tokio::test]
async fn missing_import_should_fail_with_error_128() {
    let mut h = Harness::new();
    h.import_wat("missing", MISSING_IMPORT_WAT);
    let (exit, _) = h.run("missing", &[], 64 * MIB).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (128, "Error"));
    let message = exit.message.expect("message");
    assert!(message.contains("not_provided"), "{message}");
}

#[tokio::test]
async fn spinning_guests_should_not_block_others() {
    let mut h = Harness::new();
    h.import_wat("spin", SPIN_WAT);
    h.import_wat("hello", HELLO_WAT);
    // More spinners than guest worker threads: only epoch yields let anything else run.
    let mut spinners = Vec::new();
    for _ in 0..4 {
        let config = h.config("spin", &[], 64 * MIB);
        let id = h.rt.create_container(&config).await.expect("create");
        h.rt.start_container(&id).await.expect("start");
        spinners.push(id);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (exit, log) = h.run("hello", &[], 64 * MIB).await;
    assert_eq!(exit.reason, "Completed");
    assert_eq!(stdout_lines(&log)[0], "hello from wat");
    for id in &spinners {
        let status = h.rt.container_status(id).await.expect("status");
        assert!(matches!(status.state, ContainerState::Running { .. }), "spinner still runs");
        h.rt.stop_container(id, Duration::from_secs(1)).await.expect("stop");
    }
}

#[tokio::test]
async fn stop_container_should_abort_sleeper_and_be_idempotent() {
    let mut h = Harness::new();
    h.import_wat("sleep", SLEEP_WAT);
    let config = h.config("sleep", &[], 64 * MIB);
    let id = h.rt.create_container(&config).await.expect("create");
    let mut events = h.rt.subscribe();
    h.rt.start_container(&id).await.expect("start");
    let started = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("event")
        .expect("recv");
    assert_eq!(started.container_id, id);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        h.rt.container_status(&id).await.expect("status").state,
        ContainerState::Running { .. }
    ));

    h.rt.stop_container(&id, Duration::from_secs(10)).await.expect("stop");
    let exit = wait_exit(&h.rt, &id, Duration::from_secs(1)).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (137, "Error"));
    assert_eq!(exit.message.as_deref(), Some("stopped by the kubelet"));
    let stopped = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("event")
        .expect("recv");
    assert_eq!(stopped.container_id, id);

    h.rt.stop_container(&id, Duration::from_secs(10)).await.expect("second stop is a no-op");
    h.rt.remove_container(&id).await.expect("remove");
    h.rt.remove_container(&id).await.expect("remove is idempotent");
    assert!(matches!(h.rt.container_status(&id).await, Err(RuntimeError::NotFound(_))));
}

#[tokio::test]
async fn stop_pod_sandbox_should_stop_its_containers() {
    let mut h = Harness::new();
    h.import_wat("sleep", SLEEP_WAT);
    let sandbox =
        h.rt.run_pod_sandbox(&SandboxConfig {
            pod_uid: "pod-uid-1".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            log_directory: h.dir.path().join("pods/default_p_uid"),
            ..Default::default()
        })
        .await
        .expect("sandbox");
    assert_eq!(sandbox, "pod-uid-1");
    let config = h.config("sleep", &[], 64 * MIB);
    let id = h.rt.create_container(&config).await.expect("create");
    h.rt.start_container(&id).await.expect("start");
    h.rt.stop_pod_sandbox(&sandbox).await.expect("stop sandbox");
    let exit = wait_exit(&h.rt, &id, Duration::from_secs(1)).await;
    assert_eq!(exit.exit_code, 137);
    h.rt.stop_pod_sandbox(&sandbox).await.expect("idempotent");
}

#[tokio::test]
async fn create_should_report_missing_and_invalid_images() {
    let mut h = Harness::new();
    let config = h.config("nope:1", &[], 64 * MIB);
    let err = h.rt.create_container(&config).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::ImageNotPresent { hint, .. } if hint.contains("skiff images import")),
        "{err}"
    );

    // Valid magic, garbage after it: imports fine, fails to compile.
    let file = h.dir.path().join("bad.wasm");
    std::fs::write(&file, b"\0asm\x01\x00\x00\x00\xff\xff\xff").expect("write");
    h.import_file("bad", &file);
    let config = h.config("bad", &[], 64 * MIB);
    let err = h.rt.create_container(&config).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidImage { .. }), "{err}");
    assert!(h.rt.image_status("bad").await.expect("status").is_some());
    assert!(h.rt.image_status("nope").await.expect("status").is_none());
}

#[tokio::test]
async fn compiled_program_should_be_cached_per_digest() {
    let mut h = Harness::new();
    h.import_wat("hello", HELLO_WAT);
    h.import_wat("hello-again:v2", HELLO_WAT);
    // Concurrent creates of one digest compile once.
    let (a, b) = (h.config("hello", &[], MIB * 64), h.config("hello-again:v2", &[], MIB * 64));
    let (ra, rb) = tokio::join!(h.rt.create_container(&a), h.rt.create_container(&b));
    ra.expect("create a");
    rb.expect("create b");
    let cached: Vec<_> = std::fs::read_dir(h.dir.path().join("wasm-cache"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1);

    // A new runtime on the same data dir loads the artifact instead of compiling.
    let rt2 = WasmRuntime::with_options(
        h.dir.path(),
        WasmRuntimeOptions { engine: EngineOptions { pooling: true, max_instances: 4 } },
    )
    .expect("runtime");
    let config = h.config("hello", &[], 64 * MIB);
    let id = rt2.create_container(&config).await.expect("create from cache");
    rt2.start_container(&id).await.expect("start");
    assert_eq!(wait_exit(&rt2, &id, Duration::from_secs(10)).await.reason, "Completed");
}

#[tokio::test]
async fn rust_guests_should_run_as_p1_module_and_p2_component() {
    let Some(p1) = rust_guest("hello-wasm.wasip1.wasm") else { return };
    let Some(p2) = rust_guest("hello-wasm.wasip2.wasm") else { return };
    let mut h = Harness::new();
    h.import_file("hello-p1", &p1);
    h.import_file("hello-p2", &p2);
    for image in ["hello-p1", "hello-p2"] {
        let (exit, log) = h.run(image, &["a", "b"], 64 * MIB).await;
        assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"), "{image}: {exit:?}");
        assert_eq!(
            stdout_lines(&log),
            ["Hello from Skiff on WebAssembly!", "args: a b", "GREETING=hi there"],
            "{image}"
        );
    }
}

#[tokio::test]
async fn rust_test_guest_behaviours_should_map_to_exit_info() {
    for (target, file) in [("p1", "test-guest.wasip1.wasm"), ("p2", "test-guest.wasip2.wasm")] {
        let Some(path) = rust_guest(file) else { return };
        let mut h = Harness::new();
        h.import_file("guest", &path);

        let (exit, log) = h.run("guest", &["print", "3"], 64 * MIB).await;
        assert_eq!(exit.reason, "Completed", "{target}");
        assert_eq!(stdout_lines(&log), ["line 1", "line 2", "line 3"], "{target}");

        let (exit, _) = h.run("guest", &["exit", "7"], 64 * MIB).await;
        assert_eq!(exit.reason, "Error", "{target}");
        // wasip2's `exit` carries only ok/err unless the guest uses `exit-with-code`.
        assert!(
            exit.exit_code == 7 || (target == "p2" && exit.exit_code == 1),
            "{target}: {exit:?}"
        );

        let (exit, _) = h.run("guest", &["trap"], 64 * MIB).await;
        assert_eq!(exit.reason, "Trap", "{target}: {exit:?}");

        let (exit, log) = h.run("guest", &["oom"], 32 * MIB).await;
        assert_eq!(
            (exit.exit_code, exit.reason.as_str()),
            (137, "OOMKilled"),
            "{target}: {exit:?}"
        );
        assert!(stdout_lines(&log).contains(&"allocated 16 MiB"), "{target}: {log:?}");

        // A sleeper prints before sleeping (seen in the log while it runs), then is stopped.
        let config = h.config("guest", &["sleep", "60"], 64 * MIB);
        let id = h.rt.create_container(&config).await.expect("create");
        h.rt.start_container(&id).await.expect("start");
        wait_for_log_line(&config.log_path, "sleeping 60", Duration::from_secs(10)).await;
        h.rt.stop_container(&id, Duration::ZERO).await.expect("stop");
        assert_eq!(wait_exit(&h.rt, &id, Duration::from_secs(1)).await.exit_code, 137);

        // A spinner does not keep a short sleeper from finishing.
        let spin = h.config("guest", &["spin"], 64 * MIB);
        let spin_id = h.rt.create_container(&spin).await.expect("create");
        h.rt.start_container(&spin_id).await.expect("start");
        let (exit, log) = h.run("guest", &["sleep", "1"], 64 * MIB).await;
        assert_eq!(exit.reason, "Completed", "{target}");
        assert_eq!(stdout_lines(&log), ["sleeping 1", "done"], "{target}");
        h.rt.stop_container(&spin_id, Duration::ZERO).await.expect("stop spinner");
    }
}

/// A guest run with `mounts`; returns its exit and log.
async fn run_with_mounts(
    h: &mut Harness,
    image: &str,
    script: &str,
    mounts: Vec<skiff_runtime_core::Mount>,
) -> (ExitInfo, Vec<(LogStream, String)>) {
    let mut config = h.config(image, &["script", script], 64 * MIB);
    config.mounts = mounts;
    let id = h.rt.create_container(&config).await.expect("create");
    h.rt.start_container(&id).await.expect("start");
    let exit = wait_exit(&h.rt, &id, Duration::from_secs(30)).await;
    (exit, read_log(&config.log_path))
}

fn mount(host: &Path, guest: &str, read_only: bool) -> skiff_runtime_core::Mount {
    skiff_runtime_core::Mount {
        host_path: host.to_path_buf(),
        container_path: guest.to_string(),
        read_only,
    }
}

#[tokio::test]
async fn guest_should_reach_only_its_mounts() {
    let Some(guest) = rust_guest("test-guest.wasip1.wasm") else { return };
    let mut h = Harness::new();
    h.import_file("guest", &guest);
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), "node secret").expect("write");
    let data = h.dir.path().join("vol-data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("hello"), "from the volume").expect("write");
    std::os::unix::fs::symlink(&outside, data.join("link-out")).expect("symlink");
    std::os::unix::fs::symlink("../outside/secret", data.join("rel-out")).expect("symlink");
    let ro = h.dir.path().join("vol-ro");
    std::fs::create_dir_all(&ro).expect("mkdir");
    let mounts = || vec![mount(&data, "/data", false), mount(&ro, "/ro", true)];

    // Reading and writing inside a mount works, and the node sees the write.
    let (exit, log) =
        run_with_mounts(&mut h, "guest", "cat /data/hello; write /data/out written", mounts())
            .await;
    assert_eq!(exit.exit_code, 0, "{log:?}");
    assert!(stdout_lines(&log).contains(&"from the volume"), "{log:?}");
    assert_eq!(std::fs::read_to_string(data.join("out")).expect("read"), "written");

    // Every way out fails: `..`, absolute paths elsewhere, symlinks (absolute and relative)
    // leading out of the mount, and a write to a read-only mount.
    for attempt in [
        "cat /data/../outside/secret",
        "cat /data/../../../../etc/passwd",
        "cat /etc/passwd",
        &format!("cat {}", outside.join("secret").display()),
        "cat /data/link-out/secret",
        "cat /data/rel-out",
        "write /ro/file x",
        "write /data/../vol-ro/file x",
    ] {
        let (exit, log) = run_with_mounts(&mut h, "guest", attempt, mounts()).await;
        assert_ne!(exit.exit_code, 0, "{attempt} succeeded: {log:?}");
        assert!(!stdout_lines(&log).contains(&"node secret"), "{attempt} leaked: {log:?}");
    }
    assert!(!ro.join("file").exists(), "a read-only mount was written");
    assert!(!h.dir.path().join("vol-ro/file").exists());
}

#[tokio::test]
async fn exec_should_run_the_program_again_with_the_containers_mounts() {
    let Some(guest) = rust_guest("test-guest.wasip1.wasm") else { return };
    let mut h = Harness::new();
    h.import_file("guest", &guest);
    let data = h.dir.path().join("vol-exec");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("alive"), "yes").expect("write");
    let mut config = h.config("guest", &["sleep", "60"], 64 * MIB);
    config.mounts = vec![mount(&data, "/work", false)];
    let id = h.rt.create_container(&config).await.expect("create");
    h.rt.start_container(&id).await.expect("start");
    let argv = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let ok =
        h.rt.exec_sync(&id, &argv(&["guest", "exists", "/work/alive"]), Duration::from_secs(5))
            .await
            .expect("exec");
    assert_eq!(ok.exit_code, 0);
    let missing =
        h.rt.exec_sync(&id, &argv(&["guest", "exists", "/work/nope"]), Duration::from_secs(5))
            .await
            .expect("exec");
    assert_eq!(missing.exit_code, 1);
    let out =
        h.rt.exec_sync(&id, &argv(&["guest", "script", "cat /work/alive"]), Duration::from_secs(5))
            .await
            .expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
    let slow =
        h.rt.exec_sync(&id, &argv(&["guest", "sleep", "30"]), Duration::from_millis(300)).await;
    assert!(slow.is_err_and(|e| e.to_string().contains("timed out")), "exec timeout not enforced");
    h.rt.stop_container(&id, Duration::ZERO).await.expect("stop");
}

#[tokio::test]
async fn cpu_limit_should_throttle_a_spinning_guest() {
    let Some(guest) = rust_guest("test-guest.wasip1.wasm") else { return };
    let mut h = Harness::new();
    h.import_file("guest", &guest);
    let mut config = h.config("guest", &["spin"], 64 * MIB);
    config.cpu_limit_millis = Some(100);
    let id = h.rt.create_container(&config).await.expect("create");
    let started = Instant::now();
    h.rt.start_container(&id).await.expect("start");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let stats = h.rt.container_stats(&id).await.expect("stats");
    let share = stats.cpu_usage_nanos as f64 / started.elapsed().as_nanos() as f64;
    h.rt.stop_container(&id, Duration::ZERO).await.expect("stop");
    // 100m is a tenth of a core: throttled, still running (not killed).
    assert!(share > 0.02 && share < 0.2, "spinning guest used {share:.3} of a core");
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

#[tokio::test]
async fn wasi_http_component_should_be_served_on_its_pod_ip_and_port() {
    let Some(component) = rust_guest("hello-http.wasip2.wasm") else { return };
    let mut h = Harness::new();
    h.import_file("web", &component);
    let data = h.dir.path().join("vol-web");
    std::fs::create_dir_all(&data).expect("mkdir");
    // A free port on a loopback address of its own.
    let ip = "127.0.0.77";
    let port =
        std::net::TcpListener::bind((ip, 0)).expect("bind").local_addr().expect("addr").port();
    let mut config = h.config("web", &[], 64 * MIB);
    config.pod_ip = Some(ip.into());
    config.env.push(("POD_NAME".into(), "web-1".into()));
    config.mounts = vec![mount(&data, "/data", true)];
    config.ports = vec![skiff_runtime_core::PortMapping {
        container: "c".into(),
        name: None,
        container_port: port,
        protocol: "TCP".into(),
        host_port: None,
    }];
    let id = h.rt.create_container(&config).await.expect("create");
    h.rt.start_container(&id).await.expect("start");
    let addr = format!("{ip}:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = None;
    while first.is_none() && Instant::now() < deadline {
        let a = addr.clone();
        first = tokio::task::spawn_blocking(move || http_get(&a, "/")).await.expect("join");
        if first.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (code, body) = first.expect("served");
    assert_eq!(code, 200);
    assert!(body.contains("hello from Skiff, pod web-1"), "{body}");
    // Concurrent requests each get an instance of their own, and all succeed.
    let mut many = Vec::new();
    for _ in 0..32 {
        let a = addr.clone();
        many.push(tokio::task::spawn_blocking(move || http_get(&a, "/").map(|r| r.0)));
    }
    for r in many {
        assert_eq!(r.await.expect("join"), Some(200));
    }
    let a = addr.clone();
    let ready = tokio::task::spawn_blocking(move || http_get(&a, "/ready")).await.expect("join");
    assert_eq!(ready.map(|r| r.0), Some(503));
    std::fs::write(data.join("ready"), "").expect("write");
    let a = addr.clone();
    let ready = tokio::task::spawn_blocking(move || http_get(&a, "/ready")).await.expect("join");
    assert_eq!(ready.map(|r| r.0), Some(200));
    // Still running (an instance per request; nothing between requests).
    assert!(matches!(
        h.rt.container_status(&id).await.expect("status").state,
        ContainerState::Running { .. }
    ));
    let exec = h.rt.exec_sync(&id, &["x".to_string()], Duration::from_secs(1)).await;
    assert!(matches!(exec, Err(RuntimeError::Unsupported(_))), "{exec:?}");
    h.rt.stop_container(&id, Duration::ZERO).await.expect("stop");
    let a = addr.clone();
    let after = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if http_get(&a, "/").is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
    .await
    .expect("join");
    assert!(after, "the port stayed open after stop");
}

/// A directory whose NetworkPolicy lets a pod reach only `allowed`, and where ClusterIP
/// 10.96.0.50:80 leads to `allowed`.
struct OnlyTo {
    allowed: std::net::SocketAddr,
}

impl skiff_runtime_core::services::ServiceDirectory for OnlyTo {
    fn lookup_host(&self, name: &str, namespace: &str) -> Option<Vec<std::net::IpAddr>> {
        match (name, namespace) {
            ("web", "default") => Some(vec![self.allowed.ip()]),
            ("nosuch", _) => Some(vec![]),
            _ => None,
        }
    }

    fn route(
        &self,
        _client: std::net::IpAddr,
        dest: std::net::SocketAddr,
        _: skiff_runtime_core::services::Protocol,
    ) -> skiff_runtime_core::services::ServiceRoute {
        use skiff_runtime_core::services::ServiceRoute;
        if dest == "10.96.0.50:80".parse().expect("addr") {
            ServiceRoute::Endpoint(self.allowed)
        } else {
            ServiceRoute::Direct
        }
    }

    fn allows_egress(
        &self,
        _from: std::net::IpAddr,
        to: std::net::SocketAddr,
        _: skiff_runtime_core::services::Protocol,
    ) -> bool {
        to == self.allowed
    }
}

#[tokio::test]
async fn guest_sockets_should_resolve_cluster_names_and_follow_network_policy_egress() {
    let Some(path) = rust_guest("test-guest.wasip2.wasm") else { return };
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let (open_addr, closed_addr) =
        (open.local_addr().expect("addr"), closed.local_addr().expect("addr"));
    let mut h = Harness::new();
    h.rt.set_service_directory(std::sync::Arc::new(OnlyTo { allowed: open_addr }));
    h.import_file("guest", &path);
    let cases = [
        (open_addr.to_string(), 0),
        (closed_addr.to_string(), 1),
        // Names through the cluster's data (wasi:sockets/ip-name-lookup, in-process).
        (format!("web:{}", open_addr.port()), 0),
        ("nosuch:80".to_string(), 1),
    ];
    for (to, want) in cases {
        let mut config = h.config("guest", &["connect", &to], 64 * MIB);
        config.pod_ip = Some("127.0.0.1".into());
        config.labels.insert(skiff_runtime_core::labels::POD_NAMESPACE.into(), "default".into());
        let id = h.rt.create_container(&config).await.expect("create");
        h.rt.start_container(&id).await.expect("start");
        let exit = wait_exit(&h.rt, &id, Duration::from_secs(30)).await;
        let log = read_log(&config.log_path);
        assert_eq!(exit.exit_code, want, "connect {to} (allowed: {open_addr}): {log:?}");
    }
}
