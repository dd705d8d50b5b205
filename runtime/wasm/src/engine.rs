//! The node's one wasmtime `Engine`, its epoch ticker, and the per-digest program cache
//! (compiled artifacts on disk, `InstancePre`s in memory).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Precompiled,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; a spinning guest yields at least this often.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine tuning. The defaults suit a node; tests shrink the pool.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use the pooling instance allocator (`false`: allocate on demand).
    pub pooling: bool,
    /// Concurrent instances the pool must hold (core modules and components each count one).
    pub max_instances: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { pooling: true, max_instances: 2048 }
    }
}

/// Build the engine: async (always on in wasmtime 48), epoch interruption, and a pooling
/// allocator sized for `max_instances` guests.
pub(crate) fn new_engine(options: &EngineOptions) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if options.pooling {
        let n = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // A Rust `wasm32-wasip2` command is one component holding a few core instances (the
        // program plus small shim/fixup modules) but one memory and a couple of tables; a
        // wasip1 module is one core instance, one memory, one table. Memory slots are virtual
        // reservations (4 GiB + guards each), only touched pages cost RSS.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_add(n / 4))
            .total_tables(n.saturating_mul(2))
            .total_stacks(n)
            // Return memory of finished guests to the OS right away: nothing kept resident
            // per slot, decommits not batched, few warm slots retained.
            .linear_memory_keep_resident(0)
            .table_keep_resident(0)
            .async_stack_keep_resident(0)
            .decommit_batch_size(1)
            .max_unused_warm_slots(16);
        // Pooled fiber stacks are only decommitted when zeroing is on (with nothing kept
        // resident, "zeroing" is a single madvise); without it every stack a guest ever
        // touched stays resident after the guest ends.
        config.async_stack_zeroing(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
}

/// Advances an engine's epoch every tick until dropped (the node's engine: every
/// [`EPOCH_TICK`]; other engines of the process pick their own).
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        EpochTicker::every(engine, EPOCH_TICK, "skiff-wasm-epoch")
    }

    /// A ticker for `engine` every `tick`, on a thread named `name`.
    pub fn every(engine: &Engine, tick: Duration, name: &str) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            while !flag.load(Ordering::Acquire) {
                std::thread::park_timeout(tick);
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Store data of a WASI p1 core module.
pub(crate) struct P1Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
}

/// Store data of a WASI p2 component.
pub(crate) struct P2Host {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) names: crate::lookup::Names,
    /// A command may call out with `wasi:http/outgoing-handler` too (as `wasmtime run -S
    /// http` allows): its requests meet the cluster as a wasi:http server's do.
    pub(crate) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) hooks: crate::http::ServiceHooks,
}

impl crate::lookup::GuestNames for P2Host {
    fn names(&self) -> &crate::lookup::Names {
        &self.names
    }
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for P2Host {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps the total linear memory of one container's store and remembers whether it refused
/// a growth, which turns the guest's subsequent failure into `OOMKilled`.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    pub(crate) denied: bool,
    /// Where this store's memory is added (and taken back when it is dropped): a container
    /// may have many stores at once (a wasi:http server has one per request in flight).
    usage: Option<Arc<Usage>>,
    /// The last growth allowed, taken back if the engine then fails it.
    last_grow: usize,
}

/// What a container uses, readable while it runs (stats).
#[derive(Default, Debug)]
pub(crate) struct Usage {
    /// Time spent running the guest's code, in nanoseconds.
    pub(crate) cpu_nanos: std::sync::atomic::AtomicU64,
    /// Linear memory the guest's live instances hold now, plus [`STORE_OVERHEAD`] for each,
    /// in bytes.
    pub(crate) memory_bytes: std::sync::atomic::AtomicU64,
    /// Requests a wasi:http server has been handed (answered or not).
    pub(crate) http_requests: std::sync::atomic::AtomicU64,
    /// Requests whose guest has not finished yet (an answer may still be streaming).
    pub(crate) http_in_flight: std::sync::atomic::AtomicU64,
}

/// One request in flight, counted in its container's usage until dropped.
pub(crate) struct InFlight(Arc<Usage>);

impl InFlight {
    pub(crate) fn new(usage: Arc<Usage>) -> Self {
        usage.http_requests.fetch_add(1, Ordering::Relaxed);
        usage.http_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(usage)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.http_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one live instance costs beside its linear memory (its `Store`, WASI context, resource
/// table and stack), as measured for a small component on x86-64: counted in a container's
/// memory so that a busy wasi:http pod with many instances in flight shows them.
pub(crate) const STORE_OVERHEAD: u64 = 64 * 1024;

/// The calling thread's CPU time, in nanoseconds. A poll runs on one thread from start to end,
/// so the difference across a poll is the CPU the guest really used: time the thread was
/// preempted (a busy machine) does not count, as it would with wall time.
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct passed by reference.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Runs a guest future, counting the CPU time its polls take as the guest's, and, with
/// a CPU limit, throttles it: once it has used more than its share of one core since it
/// started, it sleeps (at its next epoch yield) until it is back within the limit. A guest
/// over its limit is slowed down, never killed.
pub(crate) struct Metered<F> {
    inner: std::pin::Pin<Box<F>>,
    usage: Arc<Usage>,
    limit_millis: Option<u64>,
    started: Instant,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, usage: Arc<Usage>, limit_millis: Option<u64>) -> Self {
        Metered {
            inner: Box::pin(inner),
            usage,
            limit_millis: limit_millis.filter(|l| *l > 0),
            started: Instant::now(),
            sleep: None,
        }
    }
}

impl<F: std::future::Future> std::future::Future for Metered<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            self.sleep = None;
        }
        let t = thread_cpu_nanos();
        let out = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(t);
        let used = self.usage.cpu_nanos.fetch_add(spent, Ordering::Relaxed) + spent;
        if out.is_pending()
            && let Some(limit) = self.limit_millis
        {
            let allowed = self.started.elapsed().as_nanos() as u64 * limit / 1000;
            if used > allowed {
                // Sleep until the budget has caught up with what was used.
                let wait = Duration::from_nanos((used - allowed) * 1000 / limit);
                let mut sleep = Box::pin(tokio::time::sleep(wait.min(Duration::from_secs(1))));
                let _ = sleep.as_mut().poll(cx);
                self.sleep = Some(sleep);
            }
        }
        out
    }
}

impl MemoryLimiter {
    /// `limit_bytes == 0` means no limit.
    pub(crate) fn new(limit_bytes: u64) -> Self {
        let limit = if limit_bytes == 0 {
            usize::MAX
        } else {
            usize::try_from(limit_bytes).unwrap_or(usize::MAX)
        };
        MemoryLimiter { limit, used: 0, denied: false, usage: None, last_grow: 0 }
    }

    /// Also count the memory in use (and the store's overhead) in `usage`, until dropped.
    pub(crate) fn with_usage(mut self, usage: Arc<Usage>) -> Self {
        usage.memory_bytes.fetch_add(STORE_OVERHEAD, Ordering::Relaxed);
        self.usage = Some(usage);
        self
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(u) = &self.usage {
            u.memory_bytes.fetch_sub(self.used as u64 + STORE_OVERHEAD, Ordering::Relaxed);
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        let total = self.used.saturating_add(grow);
        if total > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.used = total;
        self.last_grow = grow;
        if let Some(u) = &self.usage {
            u.memory_bytes.fetch_add(grow as u64, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed by us but refused by the engine (pool slot size, mmap failure): still a
        // memory exhaustion from the guest's point of view, and the growth counted above did
        // not happen.
        self.denied = true;
        let grow = std::mem::take(&mut self.last_grow);
        self.used = self.used.saturating_sub(grow);
        if let Some(u) = &self.usage {
            u.memory_bytes.fetch_sub(grow as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// A compiled image, ready to instantiate.
pub(crate) enum Program {
    Module(wasmtime::InstancePre<P1Host>),
    Component(CommandPre<P2Host>),
    /// A component exporting `wasi:http/incoming-handler`: served, an instance per request.
    Http(wasmtime_wasi_http::p2::bindings::ProxyPre<crate::http::HttpHost>),
    /// Compiles but cannot be linked (an import Skiff does not provide, no `wasi:cli/run`).
    /// Kept so each container of the image ends as `Error` with this message, like a binary
    /// whose shared library is missing, instead of failing to be created.
    Unlinkable(String),
}

impl Program {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Program::Module(_) => "module",
            Program::Component(_) => "component",
            Program::Http(_) => "wasi:http component",
            Program::Unlinkable(_) => "unlinkable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CompileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a WebAssembly binary (bad magic or unknown version)")]
    NotWasm,
    #[error("compiling: {0:#}")]
    Compile(wasmtime::Error),
    #[error("linking against WASI: {0:#}")]
    Link(wasmtime::Error),
    #[error("compile task failed: {0}")]
    Join(String),
}

/// Programs by wasm digest. Each digest is compiled (or loaded from `cache_dir`) once, on a
/// blocking thread; concurrent callers for the same digest wait for that one compile.
pub(crate) struct ProgramCache {
    engine: Engine,
    cache_dir: PathBuf,
    p1_linker: Arc<wasmtime::Linker<P1Host>>,
    p2_linker: Arc<wasmtime::component::Linker<P2Host>>,
    http_linker: Arc<wasmtime::component::Linker<crate::http::HttpHost>>,
    programs: Mutex<HashMap<String, Arc<OnceCell<Arc<Program>>>>>,
}

impl ProgramCache {
    pub(crate) fn new(engine: &Engine, cache_dir: &Path) -> Result<Self, CompileError> {
        let mut p1_linker = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |h: &mut P1Host| &mut h.wasi)
            .map_err(CompileError::Link)?;
        let mut p2_linker = wasmtime::component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker).map_err(CompileError::Link)?;
        crate::lookup::add_to_linker(&mut p2_linker).map_err(CompileError::Link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2_linker)
            .map_err(CompileError::Link)?;
        let mut http_linker = wasmtime::component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(CompileError::Link)?;
        crate::lookup::add_to_linker(&mut http_linker).map_err(CompileError::Link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(CompileError::Link)?;
        Ok(ProgramCache {
            engine: engine.clone(),
            cache_dir: cache_dir.to_path_buf(),
            p1_linker: Arc::new(p1_linker),
            p2_linker: Arc::new(p2_linker),
            http_linker: Arc::new(http_linker),
            programs: Mutex::new(HashMap::new()),
        })
    }

    /// The program for `wasm_digest` (`sha256:<hex>`), whose binary is at `wasm_path`.
    pub(crate) async fn get(
        &self,
        wasm_digest: &str,
        wasm_path: &Path,
    ) -> Result<Arc<Program>, CompileError> {
        let cell = {
            let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
            programs.entry(wasm_digest.to_string()).or_default().clone()
        };
        if let Some(program) = cell.get() {
            return Ok(program.clone());
        }
        let program = cell
            .get_or_try_init(|| async {
                let engine = self.engine.clone();
                let cwasm = self.cwasm_path(wasm_digest);
                let wasm_path = wasm_path.to_path_buf();
                let (p1, p2) = (self.p1_linker.clone(), self.p2_linker.clone());
                let http = self.http_linker.clone();
                let digest = wasm_digest.to_string();
                tokio::task::spawn_blocking(move || {
                    load_or_compile(&engine, &digest, &wasm_path, &cwasm, &p1, &p2, &http)
                })
                .await
                .map_err(|e| CompileError::Join(e.to_string()))?
                .map(Arc::new)
            })
            .await?;
        Ok(program.clone())
    }

    fn cwasm_path(&self, wasm_digest: &str) -> PathBuf {
        let name = wasm_digest.strip_prefix("sha256:").unwrap_or(wasm_digest);
        self.cache_dir.join(format!("{name}.cwasm"))
    }
}

enum Compiled {
    Module(Module),
    Component(Component),
}

fn load_or_compile(
    engine: &Engine,
    digest: &str,
    wasm_path: &Path,
    cwasm: &Path,
    p1: &wasmtime::Linker<P1Host>,
    p2: &wasmtime::component::Linker<P2Host>,
    http: &wasmtime::component::Linker<crate::http::HttpHost>,
) -> Result<Program, CompileError> {
    let started = Instant::now();
    let compiled = match load_cached(engine, cwasm) {
        Some(c) => {
            tracing::debug!(digest, elapsed = ?started.elapsed(), "loaded compiled wasm from cache");
            c
        }
        None => {
            let bytes = fs::read(wasm_path)
                .map_err(|source| CompileError::Read { path: wasm_path.to_path_buf(), source })?;
            let compiled = match bytes.get(4..8) {
                _ if !bytes.starts_with(b"\0asm") => return Err(CompileError::NotWasm),
                Some([0x01, 0x00, 0x00, 0x00]) => {
                    Compiled::Module(Module::new(engine, &bytes).map_err(CompileError::Compile)?)
                }
                Some([0x0d, 0x00, 0x01, 0x00]) => Compiled::Component(
                    Component::new(engine, &bytes).map_err(CompileError::Compile)?,
                ),
                _ => return Err(CompileError::NotWasm),
            };
            tracing::info!(digest, elapsed = ?started.elapsed(), "compiled wasm");
            store_cached(&compiled, cwasm);
            compiled
        }
    };
    let unlinkable = |what: &str, e: wasmtime::Error| {
        tracing::info!(digest, error = %format!("{e:#}"), "{what}");
        Program::Unlinkable(format!("{what}: {e:#}"))
    };
    Ok(match compiled {
        Compiled::Module(m) => match p1.instantiate_pre(&m) {
            Ok(pre) => Program::Module(pre),
            Err(e) => unlinkable("cannot link module against WASI preview 1", e),
        },
        Compiled::Component(c) => {
            // A wasi:http proxy (exports wasi:http/incoming-handler) is served; anything else
            // must be a wasi:cli command.
            let proxy =
                http.instantiate_pre(&c).and_then(wasmtime_wasi_http::p2::bindings::ProxyPre::new);
            match proxy {
                Ok(pre) => Program::Http(pre),
                Err(_) => match p2.instantiate_pre(&c) {
                    Err(e) => unlinkable("cannot link component against WASI preview 2", e),
                    Ok(pre) => match CommandPre::new(pre) {
                        Ok(pre) => Program::Component(pre),
                        Err(e) => unlinkable(
                            "component is neither a wasi:cli command nor a wasi:http proxy",
                            e,
                        ),
                    },
                },
            }
        }
    })
}

/// A previously compiled artifact, if present and loadable by this engine (a wasmtime
/// upgrade or config change makes old artifacts fail to load; they are then recompiled).
fn load_cached(engine: &Engine, cwasm: &Path) -> Option<Compiled> {
    let kind = Engine::detect_precompiled_file(cwasm).ok()??;
    // SAFETY: `deserialize_file` trusts the file to be a wasmtime artifact. Files in the
    // cache directory are written only by `store_cached` below, from our own compilation,
    // atomically (temp + rename), and are named by the digest of the wasm they came from.
    #[allow(unsafe_code)]
    let loaded = unsafe {
        match kind {
            Precompiled::Module => Module::deserialize_file(engine, cwasm).map(Compiled::Module),
            Precompiled::Component => {
                Component::deserialize_file(engine, cwasm).map(Compiled::Component)
            }
        }
    };
    match loaded {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!(path = %cwasm.display(), error = %e, "stale compiled artifact; recompiling");
            None
        }
    }
}

/// Best effort: a failure only costs a recompile next time.
fn store_cached(compiled: &Compiled, cwasm: &Path) {
    let bytes = match compiled {
        Compiled::Module(m) => m.serialize(),
        Compiled::Component(c) => c.serialize(),
    };
    let result = bytes.map_err(|e| std::io::Error::other(e.to_string())).and_then(|bytes| {
        if let Some(dir) = cwasm.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = cwasm.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, cwasm).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    });
    if let Err(e) = result {
        tracing::warn!(path = %cwasm.display(), error = %e, "cannot cache compiled wasm");
    }
}
