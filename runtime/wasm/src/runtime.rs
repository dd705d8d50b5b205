//! `WasmRuntime`: the `ContainerRuntime` that runs pods' containers as wasmtime guests in
//! this process.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use skiff_runtime_core::cri_log::LogStream;
use skiff_runtime_core::services::{NoServices, Protocol, ServiceDirectory, ServiceRoute};
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerId, ContainerRuntime, ContainerState, ContainerStats,
    ContainerStatus, ExecResult, ExitInfo, ImageEntry, ImageInfo, RuntimeError, SandboxConfig,
    SandboxId, SandboxStatus, labels,
};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::engine::{
    self, EngineOptions, EpochTicker, MemoryLimiter, Metered, P1Host, P2Host, Program,
    ProgramCache, Usage,
};
use crate::images::ImageStore;
use crate::log::{CriLog, LogFiles, OPEN_LOG_FILES};

/// `handler` of the RuntimeClass this runtime serves.
pub const HANDLER: &str = "wasmtime";
/// Exit code of a container killed by the kubelet or for exceeding its memory limit.
pub const EXIT_KILLED: i32 = 137;
/// Exit code of a guest that trapped (as if it had aborted: 128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// Exit code of a guest that could not be instantiated (missing imports, no `_start`, …).
pub const EXIT_CANNOT_RUN: i32 = 128;
/// Longest termination message kept.
const MAX_MESSAGE: usize = 4096;
const GUEST_WORKER_THREADS: usize = 2;
/// How long a stopping wasi:http server keeps serving (capped by the grace period): longer
/// than an endpoint removal takes to reach every node's proxy.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

mod streams;

/// Tuning for [`WasmRuntime::with_options`].
#[derive(Debug, Clone, Default)]
pub struct WasmRuntimeOptions {
    pub engine: EngineOptions,
}

/// Runs containers as wasmtime guests: one `Engine`, programs compiled once per image digest,
/// a `Store` per container, guests on a dedicated tokio runtime so they never compete with
/// the caller's (api server, kubelet) threads.
pub struct WasmRuntime {
    inner: Arc<Inner>,
    /// `Some` until drop; shut down in the background so dropping from async code is fine.
    guests: Option<tokio::runtime::Runtime>,
    _ticker: EpochTicker,
}

struct Inner {
    engine: Engine,
    images: ImageStore,
    programs: ProgramCache,
    /// The containers' log files that are open (a few: a quiet container holds none).
    logs: Arc<LogFiles>,
    containers: Mutex<HashMap<ContainerId, Container>>,
    sandboxes: Mutex<HashMap<SandboxId, Sandbox>>,
    events: broadcast::Sender<ContainerEvent>,
    next_id: AtomicU64,
    /// The cluster's Services and names, for guests' outgoing requests (set by the node once
    /// its proxy and DNS run; until then every address is connected to as it is).
    services: std::sync::RwLock<Arc<dyn ServiceDirectory>>,
    /// How guests' HTTPS requests verify servers (the node's CAs, and the cluster CA once the
    /// node gives it).
    guest_tls: std::sync::RwLock<Arc<rustls::ClientConfig>>,
}

/// What a sandbox status reports (the rest of its config is the kubelet's).
struct Sandbox {
    ip: Option<String>,
    labels: BTreeMap<String, String>,
}

struct Container {
    /// Shared with the running guest (a wasi:http server keeps it for every request).
    config: Arc<ContainerConfig>,
    image_id: String,
    program: Arc<Program>,
    log: CriLog,
    state: ContainerState,
    task: Option<AbortHandle>,
    usage: Arc<Usage>,
}

impl WasmRuntime {
    /// A runtime keeping images in `data_dir/images` and compiled artifacts in
    /// `data_dir/wasm-cache`.
    pub fn new(data_dir: &Path) -> Result<Self, RuntimeError> {
        Self::with_options(data_dir, WasmRuntimeOptions::default())
    }

    pub fn with_options(
        data_dir: &Path,
        options: WasmRuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        let images = ImageStore::open(&data_dir.join("images"))
            .map_err(|e| RuntimeError::Other(format!("opening image store: {e}")))?;
        let engine = engine::new_engine(&options.engine)
            .map_err(|e| RuntimeError::Other(format!("creating wasmtime engine: {e:#}")))?;
        let programs = ProgramCache::new(&engine, &data_dir.join("wasm-cache"))
            .map_err(|e| RuntimeError::Other(format!("setting up WASI linkers: {e}")))?;
        let ticker = EpochTicker::start(&engine).map_err(|source| RuntimeError::Io {
            context: "starting epoch ticker".into(),
            source,
        })?;
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(GUEST_WORKER_THREADS)
            .thread_name("skiff-wasm-guest")
            .enable_all()
            .build()
            .map_err(|source| RuntimeError::Io {
                context: "starting guest runtime".into(),
                source,
            })?;
        let (events, _) = broadcast::channel(1024);
        let guest_tls = crate::http::guest_tls(None)
            .map_err(|e| RuntimeError::Other(format!("guests' TLS configuration: {e}")))?;
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                images,
                programs,
                logs: LogFiles::new(OPEN_LOG_FILES),
                containers: Mutex::new(HashMap::new()),
                sandboxes: Mutex::new(HashMap::new()),
                events,
                next_id: AtomicU64::new(1),
                services: std::sync::RwLock::new(Arc::new(NoServices)),
                guest_tls: std::sync::RwLock::new(guest_tls),
            }),
            guests: Some(guests),
            _ticker: ticker,
        })
    }

    /// The node's image store (for `skiff images` and the kubelet's image checks).
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// Resolve guests' outgoing requests to Services through `directory` from now on
    /// (containers started later see it).
    pub fn set_service_directory(&self, directory: Arc<dyn ServiceDirectory>) {
        if let Ok(mut d) = self.inner.services.write() {
            *d = directory;
        }
    }

    /// Let guests' HTTPS requests trust the cluster CA (PEM) besides the node's CAs, as a pod
    /// that verifies with its mounted `ca.crt` does (see [`crate::http::guest_tls`]);
    /// containers started later see it.
    pub fn trust_cluster_ca(&self, ca_pem: &str) -> Result<(), RuntimeError> {
        let tls =
            crate::http::guest_tls(Some(ca_pem)).map_err(|e| RuntimeError::Other(e.to_string()))?;
        if let Ok(mut t) = self.inner.guest_tls.write() {
            *t = tls;
        }
        Ok(())
    }

    fn guest_tls(&self) -> Arc<rustls::ClientConfig> {
        match self.inner.guest_tls.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn service_directory(&self) -> Arc<dyn ServiceDirectory> {
        match self.inner.services.read() {
            Ok(d) => d.clone(),
            Err(_) => Arc::new(NoServices),
        }
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn guest_handle(&self) -> Result<&tokio::runtime::Handle, RuntimeError> {
        self.guests
            .as_ref()
            .map(|rt| rt.handle())
            .ok_or_else(|| RuntimeError::Other("runtime is shutting down".into()))
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.guests.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn lock_containers(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, pod_uid: &str, container_id: &str) {
        let _ = self.events.send(ContainerEvent {
            pod_uid: pod_uid.to_string(),
            container_id: container_id.to_string(),
        });
    }

    /// Record that a running container ended, unless it already had (stopped concurrently).
    fn record_exit(&self, id: &str, exit: impl FnOnce(DateTime<Utc>) -> ExitInfo) {
        let pod_uid = {
            let mut containers = self.lock_containers();
            let Some(c) = containers.get_mut(id) else { return };
            let ContainerState::Running { started_at } = c.state else { return };
            c.state = ContainerState::Exited(exit(started_at));
            c.task = None;
            c.log.finish();
            c.config.pod_uid.clone()
        };
        self.notify(&pod_uid, id);
    }
}

/// How a guest run ended, before mapping to kubelet terms.
enum Outcome {
    Returned,
    Exit(i32),
    /// A p2 command's `run` returned `err`.
    Failed,
    Trap(wasmtime::Error),
    CannotRun(String),
}

fn exit_info(
    outcome: Outcome,
    memory_denied: bool,
    limit: u64,
    started_at: DateTime<Utc>,
) -> ExitInfo {
    let finished_at = Utc::now();
    let info = |exit_code: i32, reason: &str, message: Option<String>| ExitInfo {
        exit_code,
        reason: reason.to_string(),
        message: message.map(truncate_message),
        started_at,
        finished_at,
    };
    match outcome {
        Outcome::Returned | Outcome::Exit(0) => info(0, "Completed", None),
        _ if memory_denied => {
            info(EXIT_KILLED, "OOMKilled", Some(format!("memory limit of {limit} bytes exceeded")))
        }
        Outcome::Exit(code) => info(code, "Error", None),
        Outcome::Failed => info(1, "Error", None),
        Outcome::Trap(e) => info(EXIT_TRAP, "Trap", Some(error_chain(&e))),
        Outcome::CannotRun(message) => info(EXIT_CANNOT_RUN, "Error", Some(message)),
    }
}

/// The error and its causes (for a trap: the trap and the guest's wasm backtrace), without
/// the host's Rust backtrace that `{:?}` would add under `RUST_BACKTRACE`.
fn error_chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str("\n\nCaused by:\n    ");
        }
        out.push_str(&cause.to_string());
    }
    out
}

fn truncate_message(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn classify(result: wasmtime::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Returned,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Outcome::Exit(exit.0),
            None => Outcome::Trap(e),
        },
    }
}

/// The guest's WASI context: its argv and env, and its volume mounts as preopened
/// directories (cap-std handles underneath: `..`, absolute paths and symlinks cannot leave a
/// mount). `workingDir` is passed as `PWD` (WASI has no working directory of its own).
/// Outbound networking (WASI sockets, name lookups) is allowed, like a container's.
pub(crate) fn wasi_context(
    config: &ContainerConfig,
    services: &Arc<dyn ServiceDirectory>,
) -> Result<WasiCtxBuilder, String> {
    let mut builder = WasiCtxBuilder::new();
    // wasmtime-wasi allows neither TCP nor UDP unless told (setting an address check alone
    // does not): a guest's sockets are as open as a container's, within NetworkPolicy.
    builder
        .args(&config.argv)
        .envs(&config.env)
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true);
    // NetworkPolicy's egress half for the guest's own sockets, checked where the kernel cannot
    // tell the pod from the node: at the endpoint a Service address leads to.
    let pod_ip: Option<std::net::IpAddr> = config.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
    let services = services.clone();
    builder.socket_addr_check(move |addr, use_| {
        let protocol = match use_ {
            SocketAddrUse::TcpConnect => Some(Protocol::Tcp),
            SocketAddrUse::UdpSend => Some(Protocol::Udp),
            _ => None,
        };
        let allowed = match (protocol, pod_ip) {
            (Some(protocol), Some(from)) => match services.route(from, addr, protocol) {
                ServiceRoute::Endpoint(ep) => services.allows_egress(from, ep, protocol),
                ServiceRoute::NoEndpoints => false,
                ServiceRoute::Direct => services.allows_egress(from, addr, protocol),
            },
            _ => true,
        };
        Box::pin(async move { allowed })
    });
    if let Some(wd) = &config.working_dir {
        builder.env("PWD", wd);
    }
    for m in &config.mounts {
        let perms = if m.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
        builder.preopened_dir(&m.host_path, &m.container_path, perms).map_err(|e| {
            format!(
                "mounting {} at {}: {}",
                m.host_path.display(),
                m.container_path,
                error_chain(&e)
            )
        })?;
    }
    Ok(builder)
}

fn wasi_builder(
    config: &ContainerConfig,
    log: &CriLog,
    services: &Arc<dyn ServiceDirectory>,
) -> Result<WasiCtxBuilder, String> {
    let mut builder = wasi_context(config, services)?;
    builder.stdout(log.stream(LogStream::Stdout)).stderr(log.stream(LogStream::Stderr));
    Ok(builder)
}

/// Instantiate and run one guest to completion. Cancelling the future (abort) drops the
/// store and with it the instance.
async fn run_guest(
    engine: Engine,
    program: Arc<Program>,
    config: Arc<ContainerConfig>,
    log: CriLog,
    usage: Arc<Usage>,
    services: Arc<dyn ServiceDirectory>,
    tls: Arc<rustls::ClientConfig>,
) -> (Outcome, bool) {
    // Each kind's future is boxed on its own: this one (kept by every container's task) stays
    // small, and an idle HTTP server does not pay for a command's instantiate-and-call state.
    if let Program::Http(pre) = &*program {
        let serve = crate::http::serve(engine, pre.clone(), config, log, usage, services, tls);
        let message = Box::pin(serve).await;
        return (Outcome::CannotRun(message), false);
    }
    let limiter = MemoryLimiter::new(config.memory_limit_bytes).with_usage(usage);
    match wasi_builder(&config, &log, &services) {
        Ok(builder) => {
            let net = guest_net(&config, &services, tls);
            Box::pin(run_command(&engine, &program, builder, limiter, net)).await
        }
        Err(message) => (Outcome::CannotRun(message), false),
    }
}

/// What a command guest's name lookups and outgoing HTTP requests are answered from.
pub(crate) struct GuestNet {
    names: crate::lookup::Names,
    hooks: crate::http::ServiceHooks,
}

pub(crate) fn guest_net(
    config: &ContainerConfig,
    services: &Arc<dyn ServiceDirectory>,
    tls: Arc<rustls::ClientConfig>,
) -> GuestNet {
    let namespace = config.labels.get(labels::POD_NAMESPACE).map(String::as_str).unwrap_or("");
    GuestNet {
        names: crate::lookup::Names { services: services.clone(), namespace: namespace.into() },
        hooks: crate::http::ServiceHooks::for_container(config, services.clone(), tls),
    }
}

/// Run a command program (a p1 module's `_start`, a p2 component's `wasi:cli/run`) in a new
/// store with `builder`'s WASI context; returns how it ended and whether memory was refused.
async fn run_command(
    engine: &Engine,
    program: &Program,
    mut builder: WasiCtxBuilder,
    limiter: MemoryLimiter,
    net: GuestNet,
) -> (Outcome, bool) {
    match program {
        Program::Module(pre) => {
            let wasi = builder.build_p1();
            let mut store = Store::new(engine, P1Host { wasi, limiter });
            store.limiter(|h| &mut h.limiter);
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
            let outcome = match pre.instantiate_async(&mut store).await {
                Err(e) => instantiate_failure(e),
                Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                    Err(e) => {
                        Outcome::CannotRun(format!("module has no usable _start export: {e}"))
                    }
                    Ok(start) => classify(start.call_async(&mut store, ()).await),
                },
            };
            (outcome, store.data().limiter.denied)
        }
        Program::Component(pre) => {
            let ctx = builder.build();
            let GuestNet { names, hooks } = net;
            let http = wasmtime_wasi_http::WasiHttpCtx::new();
            let host = P2Host { ctx, table: ResourceTable::new(), limiter, names, http, hooks };
            let mut store = Store::new(engine, host);
            store.limiter(|h| &mut h.limiter);
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
            let outcome = match pre.instantiate_async(&mut store).await {
                Err(e) => instantiate_failure(e),
                Ok(command) => match command.wasi_cli_run().call_run(&mut store).await {
                    Ok(Ok(())) => Outcome::Returned,
                    Ok(Err(())) => Outcome::Failed,
                    Err(e) => classify(Err(e)),
                },
            };
            (outcome, store.data().limiter.denied)
        }
        Program::Http(_) => {
            (Outcome::CannotRun("a wasi:http component has no command to run".into()), false)
        }
        Program::Unlinkable(message) => (Outcome::CannotRun(message.clone()), false),
    }
}

/// Run `program` once more as a separate instance with `argv` (exec probes and hooks): the
/// container's env and mounts, output captured (1 MiB each), ended after `timeout`.
async fn exec_guest(
    engine: Engine,
    program: Arc<Program>,
    mut config: ContainerConfig,
    argv: Vec<String>,
    timeout: Duration,
    services: Arc<dyn ServiceDirectory>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<ExecResult, RuntimeError> {
    const CAP: usize = 1 << 20;
    config.argv = argv;
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(CAP);
    let stderr = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(CAP);
    let mut builder = wasi_context(&config, &services).map_err(RuntimeError::Other)?;
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    let limiter = MemoryLimiter::new(config.memory_limit_bytes);
    let net = guest_net(&config, &services, tls);
    let run = run_command(&engine, &program, builder, limiter, net);
    let (outcome, _) = tokio::time::timeout(timeout, run).await.map_err(|_| {
        RuntimeError::Other(format!("command {:?} timed out after {timeout:?}", config.argv))
    })?;
    let exit_code = match outcome {
        Outcome::Returned | Outcome::Exit(0) => 0,
        Outcome::Exit(code) => code,
        Outcome::Failed => 1,
        Outcome::Trap(_) => EXIT_TRAP,
        Outcome::CannotRun(m) => {
            return Err(RuntimeError::Other(format!("cannot run {:?}: {m}", config.argv)));
        }
    };
    Ok(ExecResult {
        exit_code,
        stdout: stdout.contents().to_vec(),
        stderr: stderr.contents().to_vec(),
    })
}

/// Instantiation runs start functions too, so an exit or trap there is the guest's own.
fn instantiate_failure(e: wasmtime::Error) -> Outcome {
    if e.downcast_ref::<I32Exit>().is_some() || e.downcast_ref::<wasmtime::Trap>().is_some() {
        classify(Err(e))
    } else {
        Outcome::CannotRun(format!("cannot instantiate: {}", error_chain(&e)))
    }
}

#[async_trait]
impl ContainerRuntime for WasmRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok(self.inner.images.resolve(image).map(|r| ImageInfo { id: r.digest, size_bytes: r.size }))
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: &skiff_runtime_core::PullAuth,
    ) -> Result<ImageInfo, RuntimeError> {
        use crate::images::registry::PullError;
        match self.inner.images.pull(image, auth).await {
            Ok(pulled) => Ok(ImageInfo { id: pulled.digest, size_bytes: pulled.size }),
            Err(e) => {
                let hint = match e {
                    PullError::NotFound { .. } | PullError::Unreachable { .. } => {
                        "; to run an image without a registry, import it with `skiff images import`"
                    }
                    _ => "",
                };
                Err(RuntimeError::PullFailed {
                    image: image.to_string(),
                    message: format!("{e}{hint}"),
                })
            }
        }
    }

    /// Bookkeeping only (the sandbox id is the pod uid); creates the pod's log directory.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
        std::fs::create_dir_all(&config.log_directory).map_err(|source| RuntimeError::Io {
            context: format!("creating log directory {}", config.log_directory.display()),
            source,
        })?;
        let id = config.pod_uid.clone();
        self.inner.sandboxes.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id.clone(),
            Sandbox { ip: config.pod_ip.clone(), labels: config.labels.clone() },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox: &SandboxId) -> Result<(), RuntimeError> {
        let ids: Vec<ContainerId> = self
            .inner
            .lock_containers()
            .iter()
            .filter(|(_, c)| &c.config.sandbox_id == sandbox)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.stop_container(&id, Duration::ZERO).await?;
        }
        self.inner.sandboxes.lock().unwrap_or_else(|p| p.into_inner()).remove(sandbox);
        Ok(())
    }

    /// Resolves the image and compiles it (once per digest, cached on disk and in memory);
    /// sub-millisecond when the digest was seen before.
    async fn create_container(
        &self,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let image = self.inner.images.resolve(&config.image).ok_or_else(|| {
            RuntimeError::ImageNotPresent {
                image: config.image.clone(),
                hint: "import it with `skiff images import`".to_string(),
            }
        })?;
        let program =
            self.inner.programs.get(&image.wasm_digest, &image.wasm_path).await.map_err(|e| {
                RuntimeError::InvalidImage { image: config.image.clone(), message: e.to_string() }
            })?;
        // File mounts are gathered into directories once, here: the run, its exec probes and
        // (for wasi:http) every request's instance share them.
        let mut config = config.clone();
        config.mounts = crate::mounts::preopens(&config).map_err(|message| {
            RuntimeError::Other(format!("preparing the mounts of {}: {message}", config.name))
        })?;
        config.termination_message_host_path = None;
        let config = &config;
        let log = CriLog::open(&config.log_path, &self.inner.logs).map_err(|source| {
            RuntimeError::Io {
                context: format!("opening log file {}", config.log_path.display()),
                source,
            }
        })?;
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("wasm-{}-{n}", config.name);
        tracing::debug!(container = %id, image = %config.image, kind = program.kind(), "created");
        self.inner.lock_containers().insert(
            id.clone(),
            Container {
                config: Arc::new(config.clone()),
                image_id: image.digest,
                program,
                log,
                state: ContainerState::Created,
                task: None,
                usage: Arc::default(),
            },
        );
        Ok(id)
    }

    /// Spawns the guest on the runtime's own threads and returns. Starting a running
    /// container again is a no-op; an exited one cannot be restarted.
    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let handle = self.guest_handle()?.clone();
        let pod_uid = {
            let mut containers = self.inner.lock_containers();
            let c = containers.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            match c.state {
                ContainerState::Created => {}
                ContainerState::Running { .. } => return Ok(()),
                ContainerState::Exited(_) => {
                    return Err(RuntimeError::Other(format!(
                        "container {id} has exited; create a new one"
                    )));
                }
            }
            let started_at = Utc::now();
            c.state = ContainerState::Running { started_at };
            let inner = self.inner.clone();
            let services = self.service_directory();
            let tls = self.guest_tls();
            let (engine, program, config, log) =
                (inner.engine.clone(), c.program.clone(), c.config.clone(), c.log.clone());
            let usage = c.usage.clone();
            let cpu_limit = config.cpu_limit_millis;
            let container_id = id.clone();
            let limit = config.memory_limit_bytes;
            // Spawned while holding the lock so the task cannot record its exit before
            // `task` is set.
            let task = handle.spawn(async move {
                let guest = run_guest(engine, program, config, log, usage.clone(), services, tls);
                let (outcome, denied) = Metered::new(guest, usage, cpu_limit).await;
                inner.record_exit(&container_id, |started_at| {
                    exit_info(outcome, denied, limit, started_at)
                });
            });
            c.task = Some(task.abort_handle());
            c.config.pod_uid.clone()
        };
        self.inner.notify(&pod_uid, id);
        Ok(())
    }

    /// WASI has no signals, so there is nothing to ask a guest politely: it is aborted at
    /// once (at its next epoch yield or host call, within ~10 ms) and `timeout` is unused.
    /// Idempotent.
    async fn stop_container(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        // A wasi:http server goes on answering for a moment (within the grace period): the
        // proxies still send it new connections until they have seen its endpoint go, and a
        // rolling update must not drop them.
        let serving = {
            let containers = self.inner.lock_containers();
            let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            matches!(c.state, ContainerState::Running { .. })
                && matches!(&*c.program, Program::Http(_))
        };
        if serving && !timeout.is_zero() {
            tokio::time::sleep(timeout.min(HTTP_DRAIN)).await;
        }
        let pod_uid = {
            let mut containers = self.inner.lock_containers();
            let c = containers.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            let now = Utc::now();
            let started_at = match c.state {
                ContainerState::Exited(_) => return Ok(()),
                ContainerState::Running { started_at } => started_at,
                ContainerState::Created => now,
            };
            if let Some(task) = c.task.take() {
                task.abort();
            }
            c.log.finish();
            c.state = ContainerState::Exited(ExitInfo {
                exit_code: EXIT_KILLED,
                reason: "Error".to_string(),
                message: Some("stopped by the kubelet".to_string()),
                started_at,
                finished_at: now,
            });
            c.config.pod_uid.clone()
        };
        self.inner.notify(&pod_uid, id);
        Ok(())
    }

    /// Stops the container first if it still runs. Idempotent.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        match self.stop_container(id, Duration::ZERO).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.inner.lock_containers().remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let containers = self.inner.lock_containers();
        let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        Ok(ContainerStatus {
            id: id.clone(),
            name: c.config.name.clone(),
            image: c.config.image.clone(),
            image_id: c.image_id.clone(),
            state: c.state.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            sandbox_id: c.config.sandbox_id.clone(),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    /// Runs `cmd` as a new instance of the container's program (there are no processes to
    /// enter): same env and mounts, so it sees what the container sees.
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (program, config) = {
            let containers = self.inner.lock_containers();
            let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            if !matches!(c.state, ContainerState::Running { .. }) {
                return Err(RuntimeError::Other(format!("container {id} is not running")));
            }
            (c.program.clone(), ContainerConfig::clone(&c.config))
        };
        if matches!(&*program, Program::Http(_)) {
            return Err(RuntimeError::Unsupported(
                "this container is a wasi:http component: it has no command to run; probe it with httpGet or tcpSocket".into(),
            ));
        }
        let handle = self.guest_handle()?.clone();
        let engine = self.inner.engine.clone();
        let argv = cmd.to_vec();
        let (services, tls) = (self.service_directory(), self.guest_tls());
        handle
            .spawn(exec_guest(engine, program, config, argv, timeout, services, tls))
            .await
            .map_err(|e| RuntimeError::Other(format!("exec task failed: {e}")))?
    }

    async fn exec_stream(
        &self,
        id: &ContainerId,
        cmd: &[String],
        io: skiff_streams::Stdio,
    ) -> Result<i32, RuntimeError> {
        self.exec_streaming(id, cmd, io).await
    }

    async fn attach(&self, id: &ContainerId, io: skiff_streams::Stdio) -> Result<(), RuntimeError> {
        self.attach_streaming(id, io).await
    }

    async fn port_forward(
        &self,
        id: &ContainerId,
        port: u16,
    ) -> Result<skiff_streams::BoxDuplex, RuntimeError> {
        self.port_forwarding(id, port).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let containers = self.inner.lock_containers();
        Ok(containers
            .iter()
            .map(|(id, c)| ContainerStatus {
                id: id.clone(),
                name: c.config.name.clone(),
                image: c.config.image.clone(),
                image_id: c.image_id.clone(),
                state: c.state.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                sandbox_id: c.config.sandbox_id.clone(),
            })
            .collect())
    }

    async fn sandbox_status(&self, sandbox: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        let sandboxes = self.inner.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        let found =
            sandboxes.get(sandbox).ok_or_else(|| RuntimeError::NotFound(sandbox.clone()))?;
        Ok(SandboxStatus {
            id: sandbox.clone(),
            ready: true,
            ip: found.ip.clone(),
            labels: found.labels.clone(),
        })
    }

    async fn remove_image(&self, image_id: &str) -> Result<(), RuntimeError> {
        match self.inner.images.remove(&[image_id.to_string()]) {
            Ok(_) | Err(crate::images::ImageError::NotFound(_)) => {}
            Err(e) => return Err(RuntimeError::Other(format!("removing image {image_id}: {e}"))),
        }
        // Blobs younger than a minute may belong to a pull not yet recorded.
        self.inner
            .images
            .sweep(Duration::from_secs(60))
            .map(|_| ())
            .map_err(|e| RuntimeError::Other(format!("removing image {image_id}: {e}")))
    }

    async fn image_fs(&self) -> Result<Option<skiff_runtime_core::ImageFsUsage>, RuntimeError> {
        Ok(self
            .inner
            .images
            .fs_usage()
            .map(|(capacity, available)| skiff_runtime_core::ImageFsUsage { capacity, available }))
    }

    async fn list_images(&self) -> Result<Vec<ImageEntry>, RuntimeError> {
        let mut by_digest: HashMap<String, ImageEntry> = HashMap::new();
        for image in self.inner.images.list().unwrap_or_default() {
            let e = by_digest.entry(image.entry.digest.clone()).or_insert_with(|| ImageEntry {
                id: image.entry.digest.clone(),
                names: Vec::new(),
                size_bytes: image.entry.size,
            });
            e.names.push(image.name.clone());
        }
        Ok(by_digest.into_values().collect())
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let containers = self.inner.lock_containers();
        let c = containers.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        Ok(ContainerStats {
            cpu_usage_nanos: c.usage.cpu_nanos.load(Ordering::Relaxed),
            memory_working_set_bytes: c.usage.memory_bytes.load(Ordering::Relaxed),
            http_requests: matches!(&*c.program, Program::Http(_))
                .then(|| c.usage.http_requests.load(Ordering::Relaxed)),
            http_in_flight: matches!(&*c.program, Program::Http(_))
                .then(|| c.usage.http_in_flight.load(Ordering::Relaxed)),
        })
    }
}
