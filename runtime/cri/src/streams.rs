//! `kubectl exec`, `attach` and `port-forward` for OCI containers: CRI `Exec`, `Attach` and
//! `PortForward` return a URL on the runtime's streaming server, which the node then speaks
//! SPDY to (`v4.channel.k8s.io`, `portforward.k8s.io`).

use k8s_cri::v1 as cri;
use skiff_runtime_core::{ContainerId, RuntimeError};
use skiff_streams::{BoxDuplex, Stdio, StreamError};

use crate::{CriRuntime, object_error, rpc_error};

fn stream_error(e: StreamError) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

impl CriRuntime {
    pub(crate) async fn exec_streaming(
        &self,
        id: &ContainerId,
        cmd: &[String],
        io: Stdio,
    ) -> Result<i32, RuntimeError> {
        let (tty, stdin, stdout) = (io.tty, io.stdin.is_some(), io.stdout.is_some());
        // With a TTY the runtime refuses a separate stderr.
        let stderr = io.stderr.is_some() && !tty;
        let request = cri::ExecRequest {
            container_id: id.clone(),
            cmd: cmd.to_vec(),
            tty,
            stdin,
            stdout,
            stderr,
        };
        let url = self.rt().exec(request).await.map_err(|s| object_error("Exec", id, s))?;
        skiff_streams::remotecommand::client(&url.into_inner().url, io).await.map_err(stream_error)
    }

    pub(crate) async fn attach_streaming(
        &self,
        id: &ContainerId,
        io: Stdio,
    ) -> Result<(), RuntimeError> {
        let (tty, stdin, stdout) = (io.tty, io.stdin.is_some(), io.stdout.is_some());
        let stderr = io.stderr.is_some() && !tty;
        let request = cri::AttachRequest { container_id: id.clone(), tty, stdin, stdout, stderr };
        let url = self.rt().attach(request).await.map_err(|s| object_error("Attach", id, s))?;
        skiff_streams::remotecommand::client(&url.into_inner().url, io)
            .await
            .map(|_| ())
            .map_err(stream_error)
    }

    pub(crate) async fn port_forwarding(
        &self,
        id: &ContainerId,
        port: u16,
    ) -> Result<BoxDuplex, RuntimeError> {
        let sandbox = self
            .rt()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter { id: id.clone(), ..Default::default() }),
            })
            .await
            .map_err(|s| rpc_error("ListContainers", s))?
            .into_inner()
            .containers
            .into_iter()
            .next()
            .map(|c| c.pod_sandbox_id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        let url = self
            .rt()
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: sandbox.clone(),
                port: vec![i32::from(port)],
            })
            .await
            .map_err(|s| object_error("PortForward", &sandbox, s))?
            .into_inner()
            .url;
        skiff_streams::portforward::client(&url, port).await.map_err(stream_error)
    }
}
