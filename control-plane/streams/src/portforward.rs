//! port-forward: `portforward.k8s.io` over SPDY. Each forwarded connection is a pair of
//! streams the client opens with the same `requestID` and `port` headers: `error` (the
//! server writes why a connection failed, if it did) and `data` (the bytes both ways).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::spdy::{self, Role, Session};
use crate::{BoxDuplex, PodStreams, StreamError, Target};

/// How long the first stream of a pair waits for the second.
const PAIR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the other direction of a forwarded connection may go on once one has ended.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Serve port-forward streams on a SPDY connection until the client closes it.
pub async fn serve<T>(io: T, target: Target, streams: Arc<dyn PodStreams>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, mut incoming) = Session::start(io, Role::Server);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
        // A half whose partner never came is dropped (closed) after a while, as the kubelet
        // drops it after its stream-creation timeout.
        pairs.retain(|_, p| p.since.elapsed() < PAIR_TIMEOUT);
        let request = stream.header("requestid").unwrap_or("").to_string();
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        let entry = pairs.entry(request.clone()).or_insert_with(|| Pair {
            error: None,
            data: None,
            since: std::time::Instant::now(),
        });
        match kind.as_str() {
            "error" => entry.error = Some(stream),
            "data" => entry.data = Some(stream),
            _ => continue,
        }
        if entry.error.is_some() && entry.data.is_some() {
            let Some(Pair { error: Some(error), data: Some(data), .. }) = pairs.remove(&request)
            else {
                continue;
            };
            tokio::spawn(forward(error, data, target.clone(), streams.clone()));
        }
    }
    drop(session);
}

/// The two streams of one forwarded connection, as they arrive.
struct Pair {
    error: Option<spdy::Stream>,
    data: Option<spdy::Stream>,
    since: std::time::Instant,
}

async fn forward(
    mut error: spdy::Stream,
    data: spdy::Stream,
    target: Target,
    streams: Arc<dyn PodStreams>,
) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
    let result = match port {
        Some(port) => match streams.port_forward(target.clone(), port).await {
            Ok(conn) => splice(data, conn).await.map_err(|e| {
                format!(
                    "error forwarding port {port} to pod {}, uid {}: {e}",
                    target.pod, target.pod_uid
                )
            }),
            Err(e) => Err(format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.pod, target.pod_uid
            )),
        },
        None => Err(format!(
            "invalid port header {:?}: a port-forward stream needs a port",
            data.header("port").unwrap_or("")
        )),
    };
    if let Err(message) = result {
        tracing::debug!(%message, "port-forward connection failed");
        let _ = error.write_all(message.as_bytes()).await;
    }
    // Closing the error stream is what tells the client this connection is over.
    let _ = error.shutdown().await;
}

/// Copy both ways until one side ends, then give the other a moment to finish (as the
/// kubelet does): a client waits for the connection to end, not for both halves of it.
async fn splice(data: spdy::Stream, conn: BoxDuplex) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = tokio::io::split(data);
    let (mut from_pod, mut to_pod) = tokio::io::split(conn);
    let up = async {
        let r = tokio::io::copy(&mut from_client, &mut to_pod).await;
        let _ = to_pod.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy(&mut from_pod, &mut to_client).await;
        let _ = to_client.shutdown().await;
        r
    };
    tokio::pin!(up, down);
    let first = tokio::select! {
        r = &mut up => { let _ = tokio::time::timeout(LINGER, &mut down).await; r }
        r = &mut down => { let _ = tokio::time::timeout(LINGER, &mut up).await; r }
    };
    first.map(|_| ())
}

/// A connection through a runtime's port-forward streaming server: the data stream, with the
/// session and error stream it needs kept alive.
struct Forwarded {
    data: spdy::Stream,
    error: spdy::Stream,
    /// What the error stream said so far (read once the data stream ends).
    said: Vec<u8>,
    session: Session,
}

impl AsyncRead for Forwarded {
    /// The data stream's bytes; at its end, what the runtime wrote on the error stream (the
    /// connection into the pod failed) is returned as an error.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.data).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut chunk = [0u8; 512];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.error).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                break;
            }
            let n = rb.filled().len();
            self.said.extend_from_slice(&chunk[..n]);
        }
        if self.said.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            let message = String::from_utf8_lossy(&self.said).trim().to_string();
            Poll::Ready(Err(std::io::Error::other(message)))
        }
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.data).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.data).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.data).poll_shutdown(cx)
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        let session = self.session.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { session.close().await });
        }
    }
}

/// Connect to `port` through a runtime's streaming server at `url` (what CRI `PortForward`
/// returned), as its SPDY client.
pub async fn client(url: &str, port: u16) -> Result<BoxDuplex, StreamError> {
    let (conn, _) = crate::upgrade::dial_spdy(url, &[crate::upgrade::PORTFORWARD]).await?;
    let (session, _incoming) = Session::start(conn, Role::Client);
    let headers = |kind: &str| {
        vec![
            ("streamType".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestID".to_string(), "0".to_string()),
        ]
    };
    let failed = |e: spdy::SpdyError| StreamError::Internal(format!("port-forward to {port}: {e}"));
    let mut error = session.open(headers("error")).await.map_err(failed)?;
    let _ = error.shutdown().await;
    let data = session.open(headers("data")).await.map_err(failed)?;
    Ok(Box::new(Forwarded { data, error, said: Vec::new(), session }))
}

#[cfg(test)]
mod tests;
