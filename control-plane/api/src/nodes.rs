//! How the api server reaches a node for `nodes/proxy` (`/api/v1/nodes/{name}/proxy/{path}`):
//! a node registers its `NodeEndpoints` (the kubelet's `stats/summary`, `metrics`,
//! `metrics/resource`, `healthz`, …).

use async_trait::async_trait;
use bytes::Bytes;

/// One request proxied to a node.
#[derive(Debug, Clone, Default)]
pub struct NodeProxyRequest {
    /// HTTP method (`GET`, `HEAD`, …).
    pub method: String,
    /// Path below `proxy/`, without a leading slash (`stats/summary`).
    pub path: String,
    /// Raw query string, without `?` (empty when none).
    pub query: String,
}

/// A node's answer, passed through to the caller as is.
#[derive(Debug, Clone)]
pub struct NodeProxyResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

impl NodeProxyResponse {
    pub fn ok(content_type: &str, body: impl Into<Bytes>) -> Self {
        NodeProxyResponse { status: 200, content_type: content_type.to_string(), body: body.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeProxyError {
    /// No such endpoint on the node.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Internal(String),
}

/// A node's HTTP endpoints as the api server proxies them. Thread-safe; each call is
/// independent (no session), so a dropped call leaves nothing behind.
#[async_trait]
pub trait NodeEndpoints: Send + Sync + 'static {
    async fn proxy(&self, request: NodeProxyRequest) -> Result<NodeProxyResponse, NodeProxyError>;
}
