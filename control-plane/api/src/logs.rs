//! How the api server reaches a node for `pods/log`: a node registers a `PodLogSource`.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// The options of a `pods/log` request (`PodLogOptions`).
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since_seconds: Option<u64>,
    /// RFC 3339 time; only lines at or after it.
    pub since_time: Option<String>,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

/// A node's log reader. `logs` returns the log text (already decoded from the runtime's log
/// format); with `follow` the stream stays open until the container stops or the caller drops it.
#[async_trait]
pub trait PodLogSource: Send + Sync + 'static {
    async fn logs(
        &self,
        request: LogRequest,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, LogError>;
}
