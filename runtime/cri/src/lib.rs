//! The CRI container runtime: runs pods' OCI containers through a CRI endpoint (containerd)
//! over gRPC.
//!
//! [`CriRuntime`] is a thin client: every call is one CRI request (or a few), the runtime keeps
//! the state. What it remembers itself is a cache of sandbox configs (CRI's CreateContainer
//! wants the sandbox's config again); a sandbox it does not know, e.g. after a restart, is
//! described from its status and annotations. containerd 1.6 has no CRI event stream, so a
//! background task polls ListContainers and turns state changes into [`ContainerEvent`]s.

mod convert;
mod events;
pub mod import;
mod streams;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use skiff_runtime_core::{
    ContainerConfig, ContainerEvent, ContainerId, ContainerRuntime, ContainerStats,
    ContainerStatus, ExecResult, ImageEntry, ImageInfo, RuntimeError, SandboxConfig, SandboxId,
    SandboxStatus,
};
use tokio::sync::broadcast;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// The RuntimeClass handler this runtime serves.
pub const HANDLER: &str = "runc";
/// How often the event task compares container states.
const EVENT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Extra time a gRPC call gets beyond the timeout it passes to the runtime.
const CALL_GRACE: Duration = Duration::from_secs(10);

/// A [`ContainerRuntime`] backed by a CRI v1 endpoint. Cheap to share (`Arc`); every method
/// may run concurrently.
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    endpoint: String,
    events: broadcast::Sender<ContainerEvent>,
    /// Configs of the sandboxes this process created or has looked up, by sandbox id.
    sandboxes: Mutex<HashMap<SandboxId, Arc<cri::PodSandboxConfig>>>,
    _poller: events::PollerGuard,
}

impl std::fmt::Debug for CriRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriRuntime").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// The socket path of a CRI endpoint given as `unix:///path` or a bare path.
pub fn socket_path(endpoint: &str) -> PathBuf {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    PathBuf::from(path)
}

fn rpc_error(what: &str, status: Status) -> RuntimeError {
    RuntimeError::Other(format!("CRI {what}: {}: {}", status.code(), status.message()))
}

/// `NotFound` for an object the runtime does not have, else the call's error.
fn object_error(what: &str, id: &str, status: Status) -> RuntimeError {
    if is_not_found(&status) {
        RuntimeError::NotFound(id.to_string())
    } else {
        rpc_error(what, status)
    }
}

fn is_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

fn whole_seconds_up(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl CriRuntime {
    /// Connect to the CRI endpoint at `endpoint` (`unix:///run/containerd/containerd.sock` or
    /// a bare socket path) and check that it answers. Must be called inside a Tokio runtime;
    /// starts the event task, which ends when the `CriRuntime` is dropped.
    pub async fn connect(endpoint: &str) -> Result<Self, RuntimeError> {
        let path = socket_path(endpoint);
        if !path.exists() {
            return Err(RuntimeError::Io {
                context: format!(
                    "CRI endpoint {endpoint}: socket {} does not exist (is containerd running?)",
                    path.display()
                ),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        let connect_path = path.clone();
        // The URI is required but unused: every connection is the unix socket.
        let channel = Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = connect_path.clone();
                async move {
                    Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .map_err(|e| {
                RuntimeError::Other(format!("connecting to CRI endpoint {endpoint}: {e}"))
            })?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        runtime
            .version(with_deadline(cri::VersionRequest::default(), Duration::from_secs(10)))
            .await
            .map_err(|s| {
                RuntimeError::Other(format!(
                    "CRI endpoint {endpoint} does not answer the CRI v1 API: {}: {}",
                    s.code(),
                    s.message()
                ))
            })?;
        let (events, _) = broadcast::channel(1024);
        let poller = events::spawn_poller(runtime.clone(), events.clone(), EVENT_POLL_INTERVAL);
        Ok(CriRuntime {
            runtime,
            images: ImageServiceClient::new(channel),
            endpoint: endpoint.to_string(),
            events,
            sandboxes: Mutex::new(HashMap::new()),
            _poller: poller,
        })
    }

    /// The endpoint this runtime was connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn cached_sandbox(&self, id: &str) -> Option<Arc<cri::PodSandboxConfig>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn remember_sandbox(&self, id: &str, config: Arc<cri::PodSandboxConfig>) {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), config);
    }

    fn forget_sandbox(&self, id: &str) {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The config of sandbox `id`: remembered, or rebuilt from its status.
    async fn sandbox_config(&self, id: &str) -> Result<Arc<cri::PodSandboxConfig>, RuntimeError> {
        if let Some(config) = self.cached_sandbox(id) {
            return Ok(config);
        }
        let status = self.raw_sandbox_status(id).await?;
        let config = Arc::new(convert::sandbox_config_from_status(&status));
        self.remember_sandbox(id, config.clone());
        Ok(config)
    }

    async fn raw_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus, RuntimeError> {
        let response = self
            .rt()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(|s| object_error("PodSandboxStatus", id, s))?;
        response
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::Other(format!("CRI PodSandboxStatus {id}: no status")))
    }

    async fn raw_container_status(&self, id: &str) -> Result<cri::ContainerStatus, RuntimeError> {
        let response = self
            .rt()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(|s| object_error("ContainerStatus", id, s))?;
        response
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::Other(format!("CRI ContainerStatus {id}: no status")))
    }

    /// Our status for a CRI status: an exited container's message comes from its termination
    /// message file when it wrote one.
    async fn to_status(
        &self,
        status: &cri::ContainerStatus,
        sandbox_id: String,
    ) -> ContainerStatus {
        let message = if status.state == cri::ContainerState::ContainerExited as i32 {
            match status.annotations.get(convert::TERMINATION_FILE_ANNOTATION) {
                Some(path) => read_termination_message(Path::new(path)).await,
                None => None,
            }
        } else {
            None
        };
        let mut ours = convert::container_status(status, message);
        ours.sandbox_id = sandbox_id;
        ours
    }

    fn notify(&self, pod_uid: Option<&String>, id: &str) {
        if let Some(uid) = pod_uid {
            let _ = self
                .events
                .send(ContainerEvent { pod_uid: uid.clone(), container_id: id.to_string() });
        }
    }

    async fn list_raw_containers(&self) -> Result<Vec<cri::Container>, RuntimeError> {
        Ok(self
            .rt()
            .list_containers(cri::ListContainersRequest::default())
            .await
            .map_err(|s| rpc_error("ListContainers", s))?
            .into_inner()
            .containers)
    }
}

async fn read_termination_message(path: &Path) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut bytes = Vec::new();
    file.take(convert::MAX_TERMINATION_MESSAGE as u64).read_to_end(&mut bytes).await.ok()?;
    Some(convert::truncate_message(bytes)).filter(|m| !m.is_empty())
}

/// Create (empty) the host file behind a container's termination message, world-writable so
/// a non-root container user can write it, as the kubelet does.
async fn create_termination_file(path: &Path) -> Result<(), RuntimeError> {
    let io_err = |e| RuntimeError::Io {
        context: format!("creating termination message file {}", path.display()),
        source: e,
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io_err)?;
    }
    tokio::fs::write(path, b"").await.map_err(io_err)?;
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).await.map_err(io_err)
}

fn image_absent(image: &str) -> RuntimeError {
    RuntimeError::ImageNotPresent {
        image: image.to_string(),
        hint: "no registry is configured for OCI images: import it into containerd with \
               `skiff images import FILE --container-runtime-endpoint SOCKET`"
            .to_string(),
    }
}

#[async_trait]
impl ContainerRuntime for CriRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let response = self
            .images
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
                verbose: false,
            })
            .await
            .map_err(|s| rpc_error("ImageStatus", s))?;
        Ok(response.into_inner().image.map(|i| ImageInfo { id: i.id, size_bytes: i.size }))
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: &skiff_runtime_core::PullAuth,
    ) -> Result<ImageInfo, RuntimeError> {
        // As the kubelet sends it: no server address (containerd would drop credentials whose
        // address is not the host it pulls from, e.g. a mirror's).
        let auth = (!auth.is_anonymous()).then(|| cri::AuthConfig {
            username: auth.username.clone().unwrap_or_default(),
            password: auth.password.clone().unwrap_or_default(),
            auth: auth.auth.clone().unwrap_or_default(),
            server_address: String::new(),
            identity_token: auth.identity_token.clone().unwrap_or_default(),
            registry_token: auth.registry_token.clone().unwrap_or_default(),
        });
        self.images
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
                auth,
                ..Default::default()
            })
            .await
            .map_err(|s| RuntimeError::PullFailed {
                image: image.to_string(),
                message: format!("rpc error: code = {:?} desc = {}", s.code(), s.message()),
            })?;
        self.image_status(image).await?.ok_or_else(|| RuntimeError::PullFailed {
            image: image.to_string(),
            message: "pulled, but the runtime does not list it".to_string(),
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageEntry>, RuntimeError> {
        let response = self
            .images
            .clone()
            .list_images(cri::ListImagesRequest::default())
            .await
            .map_err(|s| rpc_error("ListImages", s))?;
        Ok(response
            .into_inner()
            .images
            .into_iter()
            .map(|i| ImageEntry {
                id: i.id,
                names: i.repo_tags.into_iter().chain(i.repo_digests).collect(),
                size_bytes: i.size,
            })
            .collect())
    }

    async fn remove_image(&self, image_id: &str) -> Result<(), RuntimeError> {
        match self
            .images
            .clone()
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec { image: image_id.to_string(), ..Default::default() }),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(rpc_error("RemoveImage", s)),
        }
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
        // Idempotent per pod uid (and attempt): a ready sandbox for it is reused.
        let existing = self
            .rt()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| rpc_error("ListPodSandbox", s))?
            .into_inner()
            .items
            .into_iter()
            .find(|s| {
                s.metadata
                    .as_ref()
                    .is_some_and(|m| m.uid == config.pod_uid && m.attempt == config.attempt)
            });
        let request = Arc::new(convert::sandbox_config(config));
        if let Some(sandbox) = existing {
            self.remember_sandbox(&sandbox.id, request);
            return Ok(sandbox.id);
        }
        if !config.log_directory.as_os_str().is_empty() {
            tokio::fs::create_dir_all(&config.log_directory).await.map_err(|e| {
                RuntimeError::Io {
                    context: format!("creating log directory {}", config.log_directory.display()),
                    source: e,
                }
            })?;
        }
        let id = self
            .rt()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some((*request).clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|s| rpc_error("RunPodSandbox", s))?
            .into_inner()
            .pod_sandbox_id;
        self.remember_sandbox(&id, request);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox: &SandboxId) -> Result<(), RuntimeError> {
        match self
            .rt()
            .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if is_not_found(&s) => Ok(()),
            Err(s) => Err(rpc_error("StopPodSandbox", s)),
        }
    }

    async fn remove_pod_sandbox(&self, sandbox: &SandboxId) -> Result<(), RuntimeError> {
        match self
            .rt()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sandbox.clone() })
            .await
        {
            Ok(_) => {}
            Err(s) if is_not_found(&s) => {}
            Err(s) => return Err(rpc_error("RemovePodSandbox", s)),
        }
        self.forget_sandbox(sandbox);
        Ok(())
    }

    async fn sandbox_status(&self, sandbox: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        Ok(convert::sandbox_status(&self.raw_sandbox_status(sandbox).await?))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let items = self
            .rt()
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .map_err(|s| rpc_error("ListPodSandbox", s))?
            .into_inner()
            .items;
        // The list carries no IPs; ready sandboxes are asked for theirs.
        let statuses = futures::future::join_all(items.iter().map(|s| async move {
            if s.state == cri::PodSandboxState::SandboxReady as i32 {
                self.raw_sandbox_status(&s.id).await.ok()
            } else {
                None
            }
        }))
        .await;
        Ok(items
            .iter()
            .zip(statuses)
            .map(|(s, status)| match status {
                Some(status) => convert::sandbox_status(&status),
                None => SandboxStatus {
                    id: s.id.clone(),
                    ready: s.state == cri::PodSandboxState::SandboxReady as i32,
                    ip: None,
                    labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                },
            })
            .collect())
    }

    async fn create_container(
        &self,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let sandbox = self.sandbox_config(&config.sandbox_id).await?;
        let host_network = sandbox
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
        let (log_directory, log_path) =
            convert::split_log_path(Path::new(&sandbox.log_directory), &config.log_path);
        if let Some(dir) = config.log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| RuntimeError::Io {
                context: format!("creating log directory {}", dir.display()),
                source: e,
            })?;
        }
        if config.termination_message_path.is_some()
            && let Some(host) = &config.termination_message_host_path
        {
            create_termination_file(host).await?;
        }
        let mut sandbox_config = (*sandbox).clone();
        sandbox_config.log_directory = log_directory.to_string_lossy().into_owned();
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: config.sandbox_id.clone(),
            config: Some(convert::container_config(config, &log_path, host_network)),
            sandbox_config: Some(sandbox_config),
        };
        match self.rt().create_container(request).await {
            Ok(response) => Ok(response.into_inner().container_id),
            Err(s) if is_not_found(&s) && s.message().contains("image") => {
                Err(image_absent(&config.image))
            }
            Err(s) if is_not_found(&s) && s.message().contains(&config.sandbox_id) => {
                Err(RuntimeError::NotFound(config.sandbox_id.clone()))
            }
            Err(s) => Err(rpc_error("CreateContainer", s)),
        }
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.rt()
            .start_container(cri::StartContainerRequest { container_id: id.clone() })
            .await
            .map_err(|s| object_error("StartContainer", id, s))?;
        self.notify_container(id).await;
        Ok(())
    }

    async fn stop_container(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let request = cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: whole_seconds_up(timeout),
        };
        match self.rt().stop_container(with_deadline(request, timeout + CALL_GRACE)).await {
            Ok(_) => {
                self.notify_container(id).await;
                Ok(())
            }
            Err(s) if is_not_found(&s) => Ok(()),
            Err(s) => Err(rpc_error("StopContainer", s)),
        }
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        match self
            .rt()
            .remove_container(cri::RemoveContainerRequest { container_id: id.clone() })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if is_not_found(&s) => Ok(()),
            Err(s) => Err(rpc_error("RemoveContainer", s)),
        }
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let status = self.raw_container_status(id).await?;
        // ContainerStatus names no sandbox; the list entry does.
        let sandbox_id = self
            .rt()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter { id: id.clone(), ..Default::default() }),
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().containers.into_iter().next())
            .map(|c| c.pod_sandbox_id)
            .unwrap_or_default();
        Ok(self.to_status(&status, sandbox_id).await)
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let containers = self.list_raw_containers().await?;
        let statuses = futures::future::join_all(containers.iter().map(|c| async move {
            match self.raw_container_status(&c.id).await {
                Ok(status) => Some(self.to_status(&status, c.pod_sandbox_id.clone()).await),
                // Removed between the list and the status.
                Err(RuntimeError::NotFound(_)) => None,
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "container status failed");
                    None
                }
            }
        }))
        .await;
        Ok(statuses.into_iter().flatten().collect())
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let request = cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: cmd.to_vec(),
            timeout: whole_seconds_up(timeout).max(1),
        };
        match self.rt().exec_sync(with_deadline(request, timeout + CALL_GRACE)).await {
            Ok(response) => {
                let r = response.into_inner();
                Ok(ExecResult { exit_code: r.exit_code, stdout: r.stdout, stderr: r.stderr })
            }
            Err(s) if s.code() == Code::NotFound => Err(RuntimeError::NotFound(id.clone())),
            Err(s) if s.code() == Code::DeadlineExceeded || s.message().contains("timeout") => {
                Err(RuntimeError::Other(format!(
                    "command {:?} timed out after {timeout:?}",
                    cmd.join(" ")
                )))
            }
            Err(s) => Err(rpc_error("ExecSync", s)),
        }
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

    async fn update_pod_cidr(&self, cidr: &str) -> Result<(), RuntimeError> {
        self.rt()
            .update_runtime_config(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig { pod_cidr: cidr.to_string() }),
                }),
            })
            .await
            .map_err(|s| rpc_error("UpdateRuntimeConfig", s))?;
        Ok(())
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let stats = self
            .rt()
            .container_stats(cri::ContainerStatsRequest { container_id: id.clone() })
            .await
            .map_err(|s| object_error("ContainerStats", id, s))?
            .into_inner()
            .stats
            .unwrap_or_default();
        Ok(ContainerStats {
            cpu_usage_nanos: stats
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value)
                .unwrap_or(0),
            memory_working_set_bytes: stats
                .memory
                .and_then(|m| m.working_set_bytes)
                .map(|v| v.value)
                .unwrap_or(0),
            http_requests: None,
            http_in_flight: None,
        })
    }
}

impl CriRuntime {
    /// Tell subscribers right away about a change this process made, rather than at the next
    /// poll.
    async fn notify_container(&self, id: &str) {
        if let Ok(status) = self.raw_container_status(id).await {
            self.notify(status.labels.get(skiff_runtime_core::labels::POD_UID), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_should_accept_unix_urls_and_bare_paths() {
        assert_eq!(socket_path("unix:///run/c.sock"), PathBuf::from("/run/c.sock"));
        assert_eq!(socket_path("/run/c.sock"), PathBuf::from("/run/c.sock"));
    }

    #[test]
    fn whole_seconds_up_should_round_up() {
        assert_eq!(whole_seconds_up(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
    }

    #[tokio::test]
    async fn connect_should_fail_clearly_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/absent.sock", dir.path().display());
        let err = CriRuntime::connect(&endpoint).await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
