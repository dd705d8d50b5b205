//! The `ContainerRuntime` contract between the kubelet and a runtime (Wasm, CRI), plus the
//! runtime-neutral pieces both share: container configs and states, and the CRI log format.
//!
//! The trait is CRI-shaped on purpose: the kubelet computes what to do, a runtime only does it.

pub mod cri_log;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Identifies one container instance inside a runtime. Opaque to the kubelet.
pub type ContainerId = String;
/// Identifies one pod sandbox inside a runtime. Opaque to the kubelet.
pub type SandboxId = String;

/// What the kubelet asks a runtime to set up for a pod before its containers.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// Directory for this pod's container logs (`<root>/pods/<ns>_<name>_<uid>`).
    pub log_directory: PathBuf,
}

/// Everything a runtime needs to create one container.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub sandbox_id: SandboxId,
    pub pod_uid: String,
    pub name: String,
    /// Image reference as written in the pod spec (`repo:tag`, `repo@sha256:…`).
    pub image: String,
    /// `argv[0..]` for the guest: the pod's `command` (or the container name when empty)
    /// followed by its `args`.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Hard memory limit in bytes; exceeding it ends the container as `OOMKilled`.
    pub memory_limit_bytes: u64,
    /// CPU limit in millicores, if any.
    pub cpu_limit_millis: Option<u64>,
    /// File the runtime appends stdout/stderr to, in the CRI log format (see [`cri_log`]).
    pub log_path: PathBuf,
}

/// Why a container stopped, in the kubelet's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `Trap`, … as shown in `containerStatuses[].state.terminated.reason`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Observed state of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running { started_at: DateTime<Utc> },
    Exited(ExitInfo),
}

/// Status of one container as a runtime reports it.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub name: String,
    pub image: String,
    /// Resolved image id (`sha256:…`).
    pub image_id: String,
    pub state: ContainerState,
}

/// A state change a runtime pushes to the kubelet, so it need not poll.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub pod_uid: String,
    pub container_id: ContainerId,
}

/// An image a runtime holds locally.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:<hex>` of the image manifest (or of the bare module).
    pub id: String,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not in the node's store and cannot be pulled.
    #[error("image {image:?} not present on node: {hint}")]
    ImageNotPresent { image: String, hint: String },
    /// The image exists but cannot be run by this runtime (bad module, wrong media type).
    #[error("invalid image {image:?}: {message}")]
    InvalidImage { image: String, message: String },
    #[error("no such container {0}")]
    NotFound(ContainerId),
    #[error("runtime i/o error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime error: {0}")]
    Other(String),
}

impl RuntimeError {
    /// Whether retrying the same call later might succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RuntimeError::Io { .. } | RuntimeError::Other(_))
    }
}

/// A container runtime as the kubelet drives it. Implementations are thread-safe; every
/// method may be called concurrently for different containers.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Name of the RuntimeClass handler this runtime serves (`wasmtime`, `runc`).
    fn handler(&self) -> &str;

    /// Resolve an image reference to a local image, or `None` if absent.
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError>;

    /// Set up the pod-level environment. Idempotent per pod uid.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError>;

    /// Stop every container of the sandbox and release its resources. Idempotent.
    async fn stop_pod_sandbox(&self, sandbox: &SandboxId) -> Result<(), RuntimeError>;

    /// Prepare a container (e.g. compile or load its module). Does not run it.
    async fn create_container(&self, config: &ContainerConfig)
    -> Result<ContainerId, RuntimeError>;

    /// Start a created container. Returns once it is running.
    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Stop a container, giving it up to `timeout` to finish. Idempotent; a stopped
    /// container stays listed (with its exit info) until removed.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration)
    -> Result<(), RuntimeError>;

    /// Forget a stopped container. Idempotent.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError>;

    /// A stream of state changes (start, exit). Each subscriber sees events from the time it
    /// subscribed; a lagging subscriber should fall back to `container_status`.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent>;
}
