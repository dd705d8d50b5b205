//! Admission policies as WebAssembly components, run in the api server's own process: the
//! Kubewarden idea without a policy server or a webhook hop. A policy is a component of the
//! `skiff:policy` world (`wit/policy.wit`), named by an image reference and found in the
//! node's image store (imported, or pulled like any image).
//!
//! One [`PolicyHost`] per api server holds one wasmtime `Engine` (epoch interruption, its own
//! ticker), one `Linker`, and an `InstancePre` per module digest, compiled once. Every call
//! gets a fresh `Store` with a memory limit and a deadline: a policy that traps, runs past its
//! time or asks for too much memory fails that call alone ([`PolicyError`]) and the caller
//! applies the policy's `failurePolicy`. The guest yields to the runtime at every epoch tick,
//! so a looping policy never holds a thread that other requests need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_runtime_wasm::EpochTicker;
use skiff_runtime_wasm::images::ImageStore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/policy.wit",
        world: "policy",
        exports: { default: async },
    });
}

use bindings::skiff::policy::host::LogLevel;

/// Calls running at once (the pool's size); more wait for a slot.
pub const CONCURRENT_CALLS: usize = 64;
/// The most linear memory a policy may be given (`memoryLimitBytes`).
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

/// How often the epoch advances: the granularity of deadlines and of yields.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// A call's wall time may be this many times its running time limit (queueing on a busy
/// server), and no less than [`WALL_FLOOR`].
pub const WALL_CAP: u32 = 20;
const WALL_FLOOR: Duration = Duration::from_secs(5);

/// Runs a call's future, adding up the time its polls take (the guest yields at every epoch
/// tick, so a poll is short); over `limit`, the call ends (`None`) at its next yield.
struct RunningTime<F> {
    inner: std::pin::Pin<Box<F>>,
    used: Duration,
    limit: Duration,
}

impl<F: std::future::Future> std::future::Future for RunningTime<F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.used += started.elapsed();
        match polled {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending if self.used > self.limit => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// Run `call` within `limits`: `None` when it ran (or waited) too long.
async fn within<F: std::future::Future>(limits: &Limits, call: F) -> Option<F::Output> {
    let wall = (limits.timeout * WALL_CAP).max(WALL_FLOOR);
    let running =
        RunningTime { inner: Box::pin(call), used: Duration::ZERO, limit: limits.timeout };
    tokio::time::timeout(wall, running).await.ok().flatten()
}

/// Limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time the call may spend running (its own CPU time: a call that waits for a busy
    /// server is not cut short for it). Wall time is capped at [`WALL_CAP`] times this.
    pub timeout: Duration,
    /// Linear memory the policy may hold.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_millis(250), memory_bytes: 32 << 20 }
    }
}

/// A policy's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub message: String,
    /// The code of a refusal (403 when the policy gave none).
    pub code: u16,
    /// An RFC 6902 JSON patch.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("module {reference:?} is not in the image store and could not be pulled: {why}")]
    Image { reference: String, why: String },
    #[error("module {reference:?} is not a skiff:policy component: {why}")]
    Compile { reference: String, why: String },
    #[error("the policy trapped: {0}")]
    Trap(String),
    #[error("the policy ran past its deadline of {0:?}")]
    Timeout(Duration),
    #[error("the policy asked for more than its {0} bytes of memory")]
    Memory(usize),
    #[error("the policy refused its settings: {0}")]
    Settings(String),
}

/// Objects a policy may read while it runs (from the api server's watch caches).
pub trait ClusterReader: Send + Sync {
    /// The object as JSON, if it exists and the policy declared its kind.
    fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<String>;
    /// The objects of a declared kind in `namespace` (`""`: all), as JSON.
    fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<String>;
}

/// A compiled policy module.
pub struct Module {
    /// `sha256:<hex>` of the component.
    pub digest: String,
    pre: bindings::PolicyPre<HostState>,
}

/// What a call's store holds.
struct HostState {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    policy: Arc<str>,
    reader: Arc<dyn ClusterReader>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl bindings::skiff::policy::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let message: String = message.chars().take(4096).collect();
        let policy = &*self.policy;
        match level {
            LogLevel::Debug => tracing::debug!(policy, "{message}"),
            LogLevel::Info => tracing::info!(policy, "{message}"),
            LogLevel::Warn => tracing::warn!(policy, "{message}"),
            LogLevel::Error => tracing::error!(policy, "{message}"),
        }
    }

    fn get_object(
        &mut self,
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    ) -> Option<String> {
        self.reader.get(&api_version, &kind, &namespace, &name)
    }

    fn list_objects(
        &mut self,
        api_version: String,
        kind: String,
        namespace: String,
    ) -> Vec<String> {
        self.reader.list(&api_version, &kind, &namespace)
    }
}

impl bindings::skiff::policy::types::Host for HostState {}

/// Runs policies.
pub struct PolicyHost {
    engine: Engine,
    /// A pool slot per running call.
    slots: tokio::sync::Semaphore,
    linker: Linker<HostState>,
    images: Option<Arc<ImageStore>>,
    modules: Mutex<HashMap<String, Arc<Module>>>,
    _ticker: EpochTicker,
}

impl PolicyHost {
    /// A host finding modules in `images` (`None`: only modules given as bytes).
    pub fn new(images: Option<Arc<ImageStore>>) -> wasmtime::Result<PolicyHost> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // A store per call: instances, memories, tables and fiber stacks come from a pool of
        // slots made once, so a call maps and unmaps nothing (on-demand allocation spends more
        // on mmap, munmap and TLB shootdowns than the policy spends running).
        let n = CONCURRENT_CALLS as u32;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n * 2)
            .total_tables(n * 2)
            .total_stacks(n)
            .max_memory_size(MAX_MEMORY_BYTES)
            // Nothing kept resident in an idle slot: memory goes back to the system when a
            // call ends (a slot kept warm would cost RSS for every slot ever used).
            .linear_memory_keep_resident(0)
            .table_keep_resident(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.memory_reservation(MAX_MEMORY_BYTES as u64);
        config.memory_guard_size(64 << 10);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let ticker = EpochTicker::every(&engine, EPOCH_TICK, "skiff-policy-epoch")?;
        Ok(PolicyHost {
            engine,
            slots: tokio::sync::Semaphore::new(CONCURRENT_CALLS),
            linker,
            images,
            modules: Mutex::default(),
            _ticker: ticker,
        })
    }

    /// The module an image reference names: from the image store (pulled when missing),
    /// compiled once per digest.
    pub async fn load(self: &Arc<Self>, reference: &str) -> Result<Arc<Module>, PolicyError> {
        let image_error =
            |why: String| PolicyError::Image { reference: reference.to_string(), why };
        let Some(images) = &self.images else {
            return Err(image_error("this api server has no image store".into()));
        };
        let resolved = match images.resolve(reference) {
            Some(r) => r,
            None => {
                images
                    .pull(reference, &Default::default())
                    .await
                    .map_err(|e| image_error(e.to_string()))?;
                images
                    .resolve(reference)
                    .ok_or_else(|| image_error("pulled, yet not found".into()))?
            }
        };
        if let Some(m) = self.cached(&resolved.wasm_digest) {
            return Ok(m);
        }
        let bytes = tokio::fs::read(&resolved.wasm_path)
            .await
            .map_err(|e| image_error(format!("reading {}: {e}", resolved.wasm_path.display())))?;
        // Compiling takes Cranelift a while: on a blocking thread, not one serving requests.
        let (host, reference) = (self.clone(), reference.to_string());
        tokio::task::spawn_blocking(move || host.compile(&reference, &bytes))
            .await
            .map_err(|e| image_error(format!("compiling: {e}")))?
    }

    fn cached(&self, digest: &str) -> Option<Arc<Module>> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner()).get(digest).cloned()
    }

    /// Compile a component (or take the compiled one of the same digest).
    pub fn compile(&self, reference: &str, bytes: &[u8]) -> Result<Arc<Module>, PolicyError> {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        if let Some(m) = self.cached(&digest) {
            return Ok(m);
        }
        let compile_error =
            |why: String| PolicyError::Compile { reference: reference.to_string(), why };
        let component =
            Component::new(&self.engine, bytes).map_err(|e| compile_error(format!("{e:#}")))?;
        let pre =
            self.linker.instantiate_pre(&component).map_err(|e| compile_error(format!("{e:#}")))?;
        let pre = bindings::PolicyPre::new(pre).map_err(|e| compile_error(format!("{e:#}")))?;
        let module = Arc::new(Module { digest: digest.clone(), pre });
        self.modules.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, module.clone());
        Ok(module)
    }

    /// A pool slot for one call, waited for at most the call's wall-time cap.
    async fn slot(&self, limits: &Limits) -> Result<tokio::sync::SemaphorePermit<'_>, PolicyError> {
        let wall = (limits.timeout * WALL_CAP).max(WALL_FLOOR);
        match tokio::time::timeout(wall, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PolicyError::Timeout(limits.timeout)),
        }
    }

    fn store(
        &self,
        policy: &str,
        reader: Arc<dyn ClusterReader>,
        limits: &Limits,
    ) -> Store<HostState> {
        // No arguments, environment, files or sockets: a policy sees only its inputs.
        let state = HostState {
            ctx: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes.min(MAX_MEMORY_BYTES))
                .instances(16)
                .tables(16)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            policy: policy.into(),
            reader,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Yield to the runtime at every tick; the call's timeout ends it.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// Call `validate-settings`.
    pub async fn validate_settings(
        &self,
        module: &Module,
        policy: &str,
        settings: &str,
        limits: Limits,
    ) -> Result<(), PolicyError> {
        let reader: Arc<dyn ClusterReader> = Arc::new(NothingToRead);
        let _slot = self.slot(&limits).await?;
        let mut store = self.store(policy, reader, &limits);
        let call = async {
            let instance = module.pre.instantiate_async(&mut store).await?;
            instance.call_validate_settings(&mut store, settings).await
        };
        match within(&limits, call).await {
            None => Err(PolicyError::Timeout(limits.timeout)),
            Some(Err(e)) => Err(trap(e, &limits)),
            Some(Ok(Err(why))) => Err(PolicyError::Settings(why)),
            Some(Ok(Ok(()))) => Ok(()),
        }
    }

    /// Call `validate` on an AdmissionRequest (JSON) with the policy's settings (JSON).
    pub async fn validate(
        &self,
        module: &Module,
        policy: &str,
        request: &str,
        settings: &str,
        reader: Arc<dyn ClusterReader>,
        limits: Limits,
    ) -> Result<Verdict, PolicyError> {
        let _slot = self.slot(&limits).await?;
        let mut store = self.store(policy, reader, &limits);
        let call = async {
            let instance = module.pre.instantiate_async(&mut store).await?;
            instance.call_validate(&mut store, request, settings).await
        };
        let v = match within(&limits, call).await {
            None => return Err(PolicyError::Timeout(limits.timeout)),
            Some(Err(e)) => return Err(trap(e, &limits)),
            Some(Ok(v)) => v,
        };
        Ok(Verdict {
            allowed: v.allowed,
            message: v.message,
            // A refusal is an error: no code below 400 (as kube's `ToStatusErr`).
            code: if v.code == 0 { 403 } else { v.code.max(400) },
            patch: (!v.patch.is_empty()).then(|| v.patch.into_bytes()),
            warnings: v.warnings,
            audit_annotations: v.audit_annotations,
        })
    }
}

/// A trap, told apart from running out of memory; the message is the trap's own (the
/// backtrace stays in the log).
fn trap(e: wasmtime::Error, limits: &Limits) -> PolicyError {
    let full = format!("{e:#}");
    if full.contains("memory") && (full.contains("grow") || full.contains("limit")) {
        return PolicyError::Memory(limits.memory_bytes);
    }
    tracing::debug!(error = %full, "policy trap");
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(t) => PolicyError::Trap(t.to_string()),
        None => PolicyError::Trap(e.root_cause().to_string()),
    }
}

struct NothingToRead;

impl ClusterReader for NothingToRead {
    fn get(&self, _: &str, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn list(&self, _: &str, _: &str, _: &str) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
