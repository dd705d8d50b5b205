//! A scripted `ContainerRuntime` for the node's unit tests: exec answers and usage figures
//! are set by the test; everything else is a no-op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerId, ContainerRuntime, ContainerStats,
    ContainerStatus, ExecResult, ImageInfo, RuntimeError, SandboxConfig, SandboxId,
};

type ExecFn = dyn Fn(&[String]) -> Result<ExecResult, RuntimeError> + Send + Sync;

pub(crate) struct FakeRuntime {
    exec: Mutex<Arc<ExecFn>>,
    /// Every command run, in order.
    pub execs: Mutex<Vec<Vec<String>>>,
    /// How long an exec takes (to test timeouts).
    pub exec_delay: Mutex<Duration>,
    pub stats: Mutex<HashMap<ContainerId, ContainerStats>>,
    /// Whether the node has every image (else none).
    pub images: std::sync::atomic::AtomicBool,
    events: tokio::sync::broadcast::Sender<ContainerEvent>,
}

impl FakeRuntime {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeRuntime {
            exec: Mutex::new(Arc::new(|_| Ok(exit(0, "")))),
            execs: Mutex::default(),
            exec_delay: Mutex::new(Duration::ZERO),
            stats: Mutex::default(),
            images: std::sync::atomic::AtomicBool::new(false),
            events: tokio::sync::broadcast::channel(4).0,
        })
    }

    /// Answer every exec with `f(cmd)`.
    pub fn on_exec(
        &self,
        f: impl Fn(&[String]) -> Result<ExecResult, RuntimeError> + Send + Sync + 'static,
    ) {
        *self.exec.lock().unwrap() = Arc::new(f);
    }
}

pub(crate) fn exit(code: i32, stdout: &str) -> ExecResult {
    ExecResult { exit_code: code, stdout: stdout.as_bytes().to_vec(), stderr: Vec::new() }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn handler(&self) -> &str {
        "fake"
    }
    async fn image_status(&self, _image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let present = self.images.load(std::sync::atomic::Ordering::Relaxed);
        Ok(present.then(|| ImageInfo { id: "sha256:fake".into(), size_bytes: 1 }))
    }
    async fn run_pod_sandbox(&self, c: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
        Ok(c.pod_uid.clone())
    }
    async fn stop_pod_sandbox(&self, _sandbox: &SandboxId) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn create_container(&self, c: &ContainerConfig) -> Result<ContainerId, RuntimeError> {
        Ok(c.name.clone())
    }
    async fn start_container(&self, _id: &ContainerId) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn stop_container(&self, _id: &ContainerId, _t: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn remove_container(&self, _id: &ContainerId) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }
    async fn exec_sync(
        &self,
        _id: &ContainerId,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        self.execs.lock().unwrap().push(cmd.to_vec());
        let delay = *self.exec_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let f = self.exec.lock().unwrap().clone();
        f(cmd)
    }
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        self.stats
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))
    }
}
