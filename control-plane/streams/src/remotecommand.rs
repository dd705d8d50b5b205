//! exec and attach: the `channel.k8s.io` protocols.
//!
//! Over WebSocket every binary message is one channel's data, prefixed with the channel's
//! number: 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status` once, at the end), 4 resize
//! (`{"Width":…,"Height":…}`); `v5` adds 255, "close": `[255, channel]` ends the client's
//! stdin. Over SPDY each of these is a stream named by its `streamType` header, and the
//! client's stdin ends with FIN.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::PollSender;

use crate::spdy::{self, Role, Session};
use crate::{BoxRead, BoxWrite, Stdio, StreamError, StreamOptions, TermSize};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// How long a SPDY client has to open the streams it asked for.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);
const PIPE: usize = 64 * 1024;

/// A `channel.k8s.io` protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    V2,
    V3,
    V4,
    V5,
}

impl Protocol {
    pub fn from_name(name: &str) -> Self {
        match name {
            "v5.channel.k8s.io" => Protocol::V5,
            "v4.channel.k8s.io" => Protocol::V4,
            "v3.channel.k8s.io" => Protocol::V3,
            _ => Protocol::V2,
        }
    }
}

/// What a session runs once its streams are in place: `Some(exit code)` for exec, `None`
/// for attach (which has no exit code of its own).
pub type Run =
    Box<dyn FnOnce(Stdio) -> BoxFuture<'static, Result<Option<i32>, StreamError>> + Send>;

/// The error channel's content for how a session ended.
fn final_status(
    protocol: Protocol,
    result: &Result<Option<i32>, StreamError>,
    command: &[String],
) -> Vec<u8> {
    if protocol < Protocol::V4 {
        // Before v4 the error channel carries only an error's text.
        return match result {
            Ok(None) | Ok(Some(0)) => Vec::new(),
            Ok(Some(code)) => {
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes()
            }
            Err(e) => e.to_string().into_bytes(),
        };
    }
    let status = match result {
        Ok(None) | Ok(Some(0)) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(Some(code)) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": e.to_string(),
            "reason": match e { StreamError::NotFound(_) => "NotFound", StreamError::BadRequest(_) => "BadRequest", StreamError::Internal(_) => "InternalError" },
            "code": match e { StreamError::NotFound(_) => 404, StreamError::BadRequest(_) => 400, StreamError::Internal(_) => 500 },
        }),
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// Writes into one WebSocket channel: each write is one binary message.
struct ChannelWriter {
    channel: u8,
    tx: PollSender<Message>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone");
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        let n = buf.len().min(32 * 1024);
        let mut m = BytesMut::with_capacity(n + 1);
        m.put_u8(self.channel);
        m.put_slice(&buf[..n]);
        self.tx.send_item(Message::Binary(m.freeze())).map_err(|_| gone())?;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn pipe() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(PIPE)
}

/// Serve an exec/attach session on a WebSocket connection speaking `protocol`.
pub async fn serve_ws<T>(
    ws: WebSocketStream<T>,
    protocol: Protocol,
    opts: StreamOptions,
    command: Vec<String>,
    run: Run,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut stdio = Stdio { tty: opts.tty, ..Default::default() };
    let mut stdin_w = None;
    if opts.stdin {
        let (w, r) = pipe();
        stdin_w = Some(w);
        stdio.stdin = Some(Box::new(r));
    }
    if opts.stdout {
        stdio.stdout =
            Some(Box::new(ChannelWriter { channel: STDOUT, tx: PollSender::new(tx.clone()) }));
    }
    if opts.stderr && !opts.tty {
        stdio.stderr =
            Some(Box::new(ChannelWriter { channel: STDERR, tx: PollSender::new(tx.clone()) }));
    }
    let mut resize_tx = None;
    if opts.tty {
        let (rtx, rrx) = mpsc::channel(8);
        resize_tx = Some(rtx);
        stdio.resize = Some(rrx);
    }
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    STDIN => {
                        if let Some(w) = stdin_w.as_mut()
                            && w.write_all(&b[1..]).await.is_err()
                        {
                            stdin_w = None;
                        }
                    }
                    RESIZE => {
                        if let (Some(r), Ok(size)) =
                            (&resize_tx, serde_json::from_slice::<TermSize>(&b[1..]))
                        {
                            let _ = r.try_send(size);
                        }
                    }
                    CLOSE if protocol >= Protocol::V5 && b.get(1) == Some(&STDIN) => stdin_w = None,
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let result = tokio::select! {
        r = run(stdio) => r,
        _ = gone_rx => {
            tracing::debug!("streaming client left; session ended");
            writer.abort();
            return;
        }
    };
    let status = final_status(protocol, &result, &command);
    if !status.is_empty() {
        let mut m = BytesMut::with_capacity(status.len() + 1);
        m.put_u8(ERROR);
        m.put_slice(&status);
        let _ = tx.send(Message::Binary(m.freeze())).await;
    }
    let _ = tx.send(crate::ws::normal_close()).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    reader.abort();
}

/// Serve an exec/attach session on a connection switched to SPDY/3.1.
pub async fn serve_spdy<T>(
    io: T,
    protocol: Protocol,
    opts: StreamOptions,
    command: Vec<String>,
    run: Run,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, mut incoming) = Session::start(io, Role::Server);
    let want = |t: &str| match t {
        "error" => true,
        "stdin" => opts.stdin,
        "stdout" => opts.stdout,
        "stderr" => opts.stderr && !opts.tty,
        "resize" => opts.tty && protocol >= Protocol::V3,
        _ => false,
    };
    let needed =
        ["error", "stdin", "stdout", "stderr", "resize"].iter().filter(|t| want(t)).count();
    let mut got: Vec<(String, spdy::Stream)> = Vec::new();
    let collect = async {
        while got.len() < needed {
            let Some(s) = incoming.recv().await else { return false };
            let kind = s.header("streamtype").unwrap_or("").to_string();
            if want(&kind) && !got.iter().any(|(k, _)| *k == kind) {
                got.push((kind, s));
            }
        }
        true
    };
    match tokio::time::timeout(STREAMS_TIMEOUT, collect).await {
        Ok(true) => {}
        _ => {
            tracing::debug!("streaming client did not open its streams in time");
            if let Some((_, e)) = got.iter_mut().find(|(k, _)| k == "error") {
                let late = Err(StreamError::Internal(
                    "timed out waiting for the client to create its streams".into(),
                ));
                let _ = e.write_all(&final_status(protocol, &late, &command)).await;
            }
            return;
        }
    }
    let mut take =
        |k: &str| got.iter().position(|(kind, _)| kind == k).map(|i| got.swap_remove(i).1);
    let mut error = take("error");
    let mut stdio = Stdio { tty: opts.tty, ..Default::default() };
    let mut copies = Vec::new();
    if let Some(mut s) = take("stdin") {
        let (mut w, r) = pipe();
        stdio.stdin = Some(Box::new(r) as BoxRead);
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut s, &mut w).await;
            let _ = w.shutdown().await;
            // Keep the stream (and so its id) until the copy is done.
            drop(s);
        }));
    }
    let mut outputs = Vec::new();
    for (kind, slot) in [("stdout", 0), ("stderr", 1)] {
        if let Some(mut s) = take(kind) {
            let (w, mut r) = pipe();
            if slot == 0 {
                stdio.stdout = Some(Box::new(w) as BoxWrite);
            } else {
                stdio.stderr = Some(Box::new(w) as BoxWrite);
            }
            outputs.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut r, &mut s).await;
                let _ = s.shutdown().await;
                s
            }));
        }
    }
    if let Some(mut s) = take("resize") {
        let (rtx, rrx) = mpsc::channel(8);
        stdio.resize = Some(rrx);
        copies.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // kubectl writes one JSON object per line.
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    if let Ok(size) = serde_json::from_slice::<TermSize>(&buf[..end]) {
                        let _ = rtx.try_send(size);
                    }
                    buf.drain(..=end);
                }
            }
        }));
    }
    let result = tokio::select! {
        r = run(stdio) => r,
        _ = session.closed() => {
            tracing::debug!("streaming client left; session ended");
            for c in copies { c.abort(); }
            return;
        }
    };
    // Output first, then the status, so the client has all of it when it reads the status.
    // All output first (however slowly the client reads; if it leaves, the copies fail).
    let mut keep = Vec::new();
    for o in outputs {
        if let Ok(s) = o.await {
            keep.push(s);
        }
    }
    if let Some(e) = error.as_mut() {
        let status = final_status(protocol, &result, &command);
        let _ = e.write_all(&status).await;
        let _ = e.shutdown().await;
    }
    for c in copies {
        c.abort();
    }
    drop(keep);
    drop(error);
    // Give the client a moment to read and close; then end the session ourselves.
    let _ = tokio::time::timeout(Duration::from_secs(2), session.closed()).await;
    session.close().await;
}

/// The exit code a `channel.k8s.io` v4 error stream reports (empty: success).
fn exit_code(status: &[u8]) -> Result<i32, StreamError> {
    if status.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let v: serde_json::Value = serde_json::from_slice(status)
        .map_err(|_| StreamError::Internal(String::from_utf8_lossy(status).trim().to_string()))?;
    if v["status"] == "Success" {
        return Ok(0);
    }
    if v["reason"] == "NonZeroExitCode"
        && let Some(code) = v
            .pointer("/details/causes")
            .and_then(|c| c.as_array())
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<i32>().ok())
    {
        return Ok(code);
    }
    Err(StreamError::Internal(
        v["message"].as_str().unwrap_or("the runtime reported an error").to_string(),
    ))
}

/// The tasks of a client session; dropping it (the caller went away) ends them and the
/// session.
struct ClientTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    session: Session,
}

impl Drop for ClientTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let session = self.session.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { session.close().await });
        }
    }
}

/// Run an exec or attach session against a container runtime's streaming server at `url`
/// (what CRI `Exec`/`Attach` returned), as its SPDY client; the exit code it reports. All of
/// the command's output is passed on before this returns; dropping the future ends the
/// session.
pub async fn client(url: &str, io: Stdio) -> Result<i32, StreamError> {
    let (conn, _) = crate::upgrade::dial_spdy(url, &["v4.channel.k8s.io"]).await?;
    let (session, _incoming) = Session::start(conn, Role::Client);
    let mut guard = ClientTasks { tasks: Vec::new(), session: session.clone() };
    let open = |kind: &'static str| {
        let session = session.clone();
        async move {
            session
                .open(vec![("streamType".into(), kind.into())])
                .await
                .map_err(|e| StreamError::Internal(format!("opening the {kind} stream: {e}")))
        }
    };
    let mut error = open("error").await?;
    if let Some(mut stdin) = io.stdin {
        let mut s = open("stdin").await?;
        let session = session.clone();
        guard.tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdin, &mut s).await;
            let _ = s.shutdown().await;
            // Keep the stream (and so its id) until the session ends.
            session.closed().await;
        }));
    }
    let mut outputs = Vec::new();
    if let Some(mut out) = io.stdout {
        let mut s = open("stdout").await?;
        outputs.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut s, &mut out).await;
            let _ = out.flush().await;
        }));
    }
    if let Some(mut err) = io.stderr.filter(|_| !io.tty) {
        let mut s = open("stderr").await?;
        outputs.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut s, &mut err).await;
            let _ = err.flush().await;
        }));
    }
    if io.tty
        && let Some(mut resize) = io.resize
    {
        let mut s = open("resize").await?;
        guard.tasks.push(tokio::spawn(async move {
            while let Some(size) = resize.recv().await {
                let mut line = serde_json::to_vec(&size).unwrap_or_default();
                line.push(b'\n');
                if s.write_all(&line).await.is_err() {
                    break;
                }
            }
        }));
    }
    let mut status = Vec::new();
    let _ = error.read_to_end(&mut status).await;
    // The runtime ends the output streams after the command; all of it goes on first (a slow
    // reader is waited for: its client leaving drops this future).
    for o in outputs {
        let _ = o.await;
    }
    drop(guard);
    exit_code(&status)
}

#[cfg(test)]
mod tests;
