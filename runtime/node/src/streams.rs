//! The node's side of `kubectl exec`, `attach` and `port-forward`: find the running container
//! and hand the session to the runtime that runs it.

use std::sync::Arc;

use async_trait::async_trait;
use skiff_runtime_core::RuntimeError;
use skiff_streams::{BoxDuplex, PodStreams, Stdio, StreamError, Target};

use crate::state::NodeState;
use crate::stats::RunningContainer;

pub struct NodeStreams {
    pub(crate) state: Arc<NodeState>,
}

fn runtime_error(e: RuntimeError) -> StreamError {
    match e {
        RuntimeError::NotFound(id) => StreamError::NotFound(format!("container not found ({id})")),
        RuntimeError::Unsupported(m) => StreamError::BadRequest(m),
        e => StreamError::Internal(e.to_string()),
    }
}

impl NodeStreams {
    /// The running container `target` names (any running container of the pod when it names
    /// none, as port-forward does).
    fn find(&self, target: &Target) -> Result<RunningContainer, StreamError> {
        let matches = |c: &RunningContainer| {
            c.namespace == target.namespace
                && c.pod == target.pod
                && (target.pod_uid.is_empty() || c.pod_uid == target.pod_uid)
                && (target.container.is_empty() || c.container == target.container)
        };
        self.state.running_containers().into_iter().find(matches).ok_or_else(|| {
            if target.container.is_empty() {
                StreamError::NotFound(format!(
                    "pod {}/{} has no running container on this node",
                    target.namespace, target.pod
                ))
            } else {
                StreamError::NotFound(format!(
                    "container not found ({:?}): it is not running in pod {}/{} on this node",
                    target.container, target.namespace, target.pod
                ))
            }
        })
    }
}

#[async_trait]
impl PodStreams for NodeStreams {
    async fn exec(
        &self,
        target: Target,
        command: Vec<String>,
        io: Stdio,
    ) -> Result<i32, StreamError> {
        let c = self.find(&target)?;
        c.runtime.exec_stream(&c.container_id, &command, io).await.map_err(runtime_error)
    }

    async fn attach(&self, target: Target, io: Stdio) -> Result<(), StreamError> {
        let c = self.find(&target)?;
        c.runtime.attach(&c.container_id, io).await.map_err(runtime_error)
    }

    async fn port_forward(&self, target: Target, port: u16) -> Result<BoxDuplex, StreamError> {
        let c = self.find(&Target { container: String::new(), ..target })?;
        c.runtime.port_forward(&c.container_id, port).await.map_err(runtime_error)
    }
}
