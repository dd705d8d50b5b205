//! Guest stdout/stderr → the container's CRI log file.
//!
//! Complete lines are appended as soon as the guest writes them (line buffering), so
//! `kubectl logs -f` sees output while the guest runs; an unterminated tail waits for its
//! newline, for [`cri_log::MAX_RECORD_CONTENT`] bytes, or for [`CriLog::finish`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::Utc;
use skiff_runtime_core::cri_log::{self, LogStream};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Largest write the guest is offered at once.
const WRITE_BUDGET: usize = 64 * 1024;

/// One container's log file, shared by its stdout and stderr streams.
#[derive(Clone)]
pub(crate) struct CriLog {
    inner: Arc<Mutex<LogFile>>,
}

struct LogFile {
    file: File,
    stdout_tail: Vec<u8>,
    stderr_tail: Vec<u8>,
    scratch: Vec<u8>,
    /// Set after a write error; later output is dropped rather than failing the guest.
    broken: bool,
}

impl CriLog {
    /// Open `path` for appending, creating its parent directories.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        Ok(CriLog {
            inner: Arc::new(Mutex::new(LogFile {
                file,
                stdout_tail: Vec::new(),
                stderr_tail: Vec::new(),
                scratch: Vec::new(),
                broken: false,
            })),
        })
    }

    pub(crate) fn stream(&self, stream: LogStream) -> CriLogStream {
        CriLogStream { log: self.clone(), stream }
    }

    fn write(&self, stream: LogStream, data: &[u8]) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let LogFile { file, stdout_tail, stderr_tail, scratch, broken } = &mut *guard;
        let tail = match stream {
            LogStream::Stdout => stdout_tail,
            LogStream::Stderr => stderr_tail,
        };
        scratch.clear();
        cri_log::encode(scratch, tail, stream, Utc::now(), data);
        if !scratch.is_empty() && !*broken {
            // Local-disk append; cheap enough to do inline on the guest's thread (wasmtime's
            // own `OutputFile` does the same).
            if let Err(e) = file.write_all(scratch) {
                tracing::warn!(error = %e, "container log write failed; dropping further output");
                *broken = true;
            }
        }
    }

    /// Emit unterminated tails as partial records. Called when the container ends.
    pub(crate) fn finish(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let LogFile { file, stdout_tail, stderr_tail, scratch, broken } = &mut *guard;
        scratch.clear();
        let now = Utc::now();
        cri_log::flush_partial(scratch, stdout_tail, LogStream::Stdout, now);
        cri_log::flush_partial(scratch, stderr_tail, LogStream::Stderr, now);
        if !scratch.is_empty() && !*broken {
            let _ = file.write_all(scratch);
        }
    }
}

/// A guest's stdout or stderr.
#[derive(Clone)]
pub(crate) struct CriLogStream {
    log: CriLog,
    stream: LogStream,
}

impl IsTerminal for CriLogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CriLogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CriLogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CriLogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Complete lines are already in the file; a partial line stays buffered until its
        // newline so records are not split at every guest-side flush.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl AsyncWrite for CriLogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.log.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
