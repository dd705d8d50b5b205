//! The `ContainerRuntime` contract between the kubelet and a runtime (Wasm, CRI), plus the
//! runtime-neutral pieces both share: container configs and states, and the CRI log format.
//!
//! The trait is CRI-shaped on purpose: the kubelet computes what to do, a runtime only does it.

pub mod cri_log;
pub mod registries;
pub mod services;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Identifies one container instance inside a runtime. Opaque to the kubelet.
pub type ContainerId = String;
/// Identifies one pod sandbox inside a runtime. Opaque to the kubelet.
pub type SandboxId = String;

/// What the kubelet asks a runtime to set up for a pod before its containers.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// Directory for this pod's container logs (`<root>/pods/<ns>_<name>_<uid>`).
    pub log_directory: PathBuf,
    /// Restarts of the sandbox so far (CRI `attempt`).
    pub attempt: u32,
    /// The pod's hostname (`spec.hostname`, else its name).
    pub hostname: String,
    /// Labels the runtime stores with the sandbox; the kubelet finds its sandboxes by them
    /// after a restart ([`labels::POD_UID`], …).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.hostNetwork`: share the node's network namespace.
    pub host_network: bool,
    /// The address the kubelet chose for the pod, for runtimes that do not get one from a
    /// network plugin (Wasm: its listeners bind it). `None` for CRI runtimes, whose network
    /// plugin assigns it; see [`ContainerRuntime::sandbox_status`].
    pub pod_ip: Option<String>,
    /// Ports the pod's containers declare (the runtime may map or serve them).
    pub ports: Vec<PortMapping>,
    /// Cgroup parent for the pod (CRI runtimes), e.g. `/skiff/pod<uid>`.
    pub cgroup_parent: Option<String>,
    /// The pod's `resolv.conf`, from its `dnsPolicy` and `dnsConfig`; `None` keeps the
    /// node's (CRI runtimes copy the host's file).
    pub dns: Option<DnsConfig>,
}

/// A pod's resolver configuration (CRI `DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    /// `resolv.conf` options, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// A declared container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// Name of the container that declares it.
    pub container: String,
    pub name: Option<String>,
    pub container_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub host_port: Option<u16>,
}

/// A host directory or file made visible inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path on the node (a volume's directory, or one file of it for `subPath`).
    pub host_path: PathBuf,
    /// Absolute path inside the container (`volumeMounts[].mountPath`).
    pub container_path: String,
    pub read_only: bool,
}

/// Labels the kubelet puts on sandboxes and containers (the names Kubernetes' kubelet uses).
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Annotation: the run number of a container (its restart count when it started).
    pub const CONTAINER_RESTART: &str = "io.kubernetes.container.restartCount";
}

/// Everything a runtime needs to create one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub sandbox_id: SandboxId,
    pub pod_uid: String,
    pub name: String,
    /// Image reference as written in the pod spec (`repo:tag`, `repo@sha256:…`).
    pub image: String,
    /// `argv[0..]` for the guest: the pod's `command` (or the container name when empty)
    /// followed by its `args`.
    pub argv: Vec<String>,
    /// The pod spec's `command` and `args` as written (OCI: they override the image's
    /// ENTRYPOINT and CMD the Kubernetes way; empty keeps the image's).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Hard memory limit in bytes; exceeding it ends the container as `OOMKilled`.
    pub memory_limit_bytes: u64,
    /// CPU limit in millicores, if any (Wasm: the guest is throttled to it, not killed).
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores (CRI: cpu shares), if any.
    pub cpu_request_millis: Option<u64>,
    /// Run number of this container within its pod (CRI `attempt`; the restart count).
    pub attempt: u32,
    /// `workingDir`; `None` keeps the image's (Wasm: `/`).
    pub working_dir: Option<String>,
    /// Volume mounts, in the pod spec's order.
    pub mounts: Vec<Mount>,
    /// Ports the container declares (Wasm: a `wasi:http` component is served on them).
    pub ports: Vec<PortMapping>,
    /// The pod's address (Wasm: listeners of `wasi:http` components bind it).
    pub pod_ip: Option<String>,
    /// Labels stored with the container ([`labels`]); a restarted kubelet adopts by them.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Where the container writes its termination message (OCI: a host file is mounted
    /// there). `None`: no message file.
    pub termination_message_path: Option<String>,
    /// Host file backing `termination_message_path`.
    pub termination_message_host_path: Option<PathBuf>,
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
    /// Labels given at creation ([`ContainerConfig::labels`]).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Sandbox the container belongs to.
    pub sandbox_id: SandboxId,
}

/// Observed state of a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxStatus {
    pub id: SandboxId,
    pub ready: bool,
    /// The pod's IP as the runtime's network plugin assigned it.
    pub ip: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Result of running a command in a container ([`ContainerRuntime::exec_sync`]).
#[derive(Debug, Clone)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Resource usage of one container, cumulative since it started.
#[derive(Debug, Clone, Default)]
pub struct ContainerStats {
    /// CPU time used, in nanoseconds.
    pub cpu_usage_nanos: u64,
    /// Memory in use now (Wasm: linear memories; OCI: the cgroup's working set).
    pub memory_working_set_bytes: u64,
    /// Requests served so far, when the runtime dispatches them itself (a Wasm wasi:http
    /// server); `None` otherwise.
    pub http_requests: Option<u64>,
    /// Requests being answered now (same runtimes as `http_requests`).
    pub http_in_flight: Option<u64>,
}

/// An image a runtime holds, with the names it answers to.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub id: String,
    pub names: Vec<String>,
    pub size_bytes: u64,
}

/// The file system an image store lives on, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFsUsage {
    pub capacity: u64,
    /// Free for unprivileged writers (`f_bavail`).
    pub available: u64,
}

impl ImageFsUsage {
    /// The file system holding `path` (statvfs); `None` if it cannot be read.
    // fsblkcnt_t is narrower than u64 on some targets.
    #[allow(clippy::useless_conversion)]
    pub fn of(path: &std::path::Path) -> Option<ImageFsUsage> {
        use std::os::unix::ffi::OsStrExt as _;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs is a plain C struct of integers (all-zero is valid); `c_path` is
        // NUL-terminated and `st` a valid out-parameter.
        #[allow(unsafe_code)]
        let (rc, st) = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            (libc::statvfs(c_path.as_ptr(), &mut st), st)
        };
        (rc == 0).then(|| ImageFsUsage {
            capacity: u64::from(st.f_blocks).saturating_mul(st.f_frsize),
            available: u64::from(st.f_bavail).saturating_mul(st.f_frsize),
        })
    }
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

/// Credentials for one registry (CRI `AuthConfig`), from the pod's `imagePullSecrets`.
/// `Default` is anonymous. `Debug` never prints the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// `base64(username:password)`, as docker config files carry it.
    pub auth: Option<String>,
    /// The registry host the credentials were given for (the docker config key).
    pub server_address: Option<String>,
    /// An OAuth2 refresh token for the registry's token service.
    pub identity_token: Option<String>,
    /// A bearer token sent to the registry as it is.
    pub registry_token: Option<String>,
}

impl PullAuth {
    /// No credentials at all.
    pub fn is_anonymous(&self) -> bool {
        self.username.is_none()
            && self.password.is_none()
            && self.auth.is_none()
            && self.identity_token.is_none()
            && self.registry_token.is_none()
    }
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("PullAuth")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("auth", &hidden(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &hidden(&self.identity_token))
            .field("registry_token", &hidden(&self.registry_token))
            .finish()
    }
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
    /// The operation is not something this runtime can do (e.g. exec into a Wasm guest).
    #[error("{0}")]
    Unsupported(String),
    /// Pulling an image failed (no registry reachable, unknown image).
    #[error("pulling image {image:?}: {message}")]
    PullFailed { image: String, message: String },
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

    /// Fetch an image into the node (`imagePullPolicy` Always / IfNotPresent when absent),
    /// with `auth` for its registry (empty: anonymous, or what the node's registry config
    /// holds). Idempotent; nothing partial is kept when it fails. Safe to call concurrently.
    async fn pull_image(&self, image: &str, _auth: &PullAuth) -> Result<ImageInfo, RuntimeError> {
        Err(RuntimeError::PullFailed {
            image: image.to_string(),
            message: format!(
                "the {} runtime has no registry to pull from; import the image with `skiff images import`",
                self.handler()
            ),
        })
    }

    /// Images held by this runtime (for the Node's `status.images`).
    async fn list_images(&self) -> Result<Vec<ImageEntry>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Remove an image by id ([`ImageEntry::id`]), every name of it (image garbage
    /// collection). Idempotent.
    async fn remove_image(&self, image_id: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot remove image {image_id}",
            self.handler()
        )))
    }

    /// Size and free space of the file system holding this runtime's images; `None` when
    /// unknown (no image garbage collection then).
    async fn image_fs(&self) -> Result<Option<ImageFsUsage>, RuntimeError> {
        Ok(None)
    }

    /// A sandbox's state and IP.
    async fn sandbox_status(&self, sandbox: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        Ok(SandboxStatus { id: sandbox.clone(), ready: true, ..Default::default() })
    }

    /// Sandboxes this runtime has (running or not), so a restarted kubelet can adopt or
    /// clean them up.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Every container this runtime has, running or exited.
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Forget a stopped sandbox. Idempotent.
    async fn remove_pod_sandbox(&self, _sandbox: &SandboxId) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Run `cmd` in a running container and wait for it (exec probes, exec hooks).
    async fn exec_sync(
        &self,
        _id: &ContainerId,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot run commands in a container",
            self.handler()
        )))
    }

    /// Tell the runtime the node's pod CIDR (CRI `UpdateRuntimeConfig`: the network plugin
    /// assigns OCI pods' IPs from it). Runtimes without a network plugin ignore it.
    async fn update_pod_cidr(&self, _cidr: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Usage of one container.
    async fn container_stats(&self, _id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        Ok(ContainerStats::default())
    }

    /// Run `cmd` in a running container with the caller's standard streams (`kubectl exec`);
    /// its exit code. Dropping the future ends the command.
    async fn exec_stream(
        &self,
        _id: &ContainerId,
        _cmd: &[String],
        _io: skiff_streams::Stdio,
    ) -> Result<i32, RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot run commands in a container",
            self.handler()
        )))
    }

    /// Join a running container's standard streams (`kubectl attach`) until it exits or the
    /// caller leaves.
    async fn attach(
        &self,
        _id: &ContainerId,
        _io: skiff_streams::Stdio,
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot attach to a container",
            self.handler()
        )))
    }

    /// A connection to `port` in the network of the pod `id` belongs to (`kubectl
    /// port-forward`).
    async fn port_forward(
        &self,
        _id: &ContainerId,
        _port: u16,
    ) -> Result<skiff_streams::BoxDuplex, RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot forward ports",
            self.handler()
        )))
    }
}
