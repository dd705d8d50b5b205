//! Guest stdout/stderr → the container's CRI log file.
//!
//! Complete lines are appended as soon as the guest writes them (line buffering), so
//! `kubectl logs -f` sees output while the guest runs; an unterminated tail waits for its
//! newline, for [`cri_log::MAX_RECORD_CONTENT`] bytes, or for [`CriLog::finish`].
//!
//! A container does not keep its log file open: writes take it from [`LogFiles`], the node's
//! few open log files (the most recently written), so ten thousand idle guests hold no file
//! descriptor for their logs (like containerd's shim, which the kubelet does not pay for).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
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
/// Log files kept open between writes: enough for the guests that log all the time, few
/// enough that the node's file descriptors go to sockets.
pub(crate) const OPEN_LOG_FILES: usize = 128;

/// The node's open log files, by path, most recently written kept: a write to a file not here
/// opens it (append mode, so a reopened file goes on at its end) and closes the least
/// recently written one when `capacity` files are open.
pub(crate) struct LogFiles {
    capacity: usize,
    open: Mutex<OpenFiles>,
}

#[derive(Default)]
struct OpenFiles {
    files: HashMap<PathBuf, (Arc<File>, u64)>,
    clock: u64,
}

impl LogFiles {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(LogFiles { capacity: capacity.max(1), open: Mutex::default() })
    }

    /// The open file at `path` (opened for appending, created if missing).
    fn get(&self, path: &Path) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.clock += 1;
        let now = open.clock;
        if let Some((file, used)) = open.files.get_mut(path) {
            *used = now;
            return Ok(file.clone());
        }
        if open.files.len() >= self.capacity {
            // Close the older half at once, so the scan runs once per `capacity / 2` opens.
            let mut ages: Vec<u64> = open.files.values().map(|(_, used)| *used).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            open.files.retain(|_, (_, used)| *used > cut);
        }
        let file = Arc::new(append(path)?);
        open.files.insert(path.to_path_buf(), (file.clone(), now));
        Ok(file)
    }

    /// Close `path` if it is open (its container ended).
    fn close(&self, path: &Path) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).files.remove(path);
    }

    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).files.len()
    }
}

fn append(path: &Path) -> io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// One container's log file, shared by its stdout and stderr streams.
#[derive(Clone)]
pub(crate) struct CriLog {
    inner: Arc<Mutex<LogFile>>,
}

struct LogFile {
    path: PathBuf,
    files: Arc<LogFiles>,
    stdout_tail: Vec<u8>,
    stderr_tail: Vec<u8>,
    scratch: Vec<u8>,
    /// Set after a write error; later output is dropped rather than failing the guest.
    broken: bool,
}

impl CriLog {
    /// Create `path` (and its parent directories) if missing; writes append to it through
    /// `files`.
    pub(crate) fn open(path: &Path, files: &Arc<LogFiles>) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        // The file exists from the start (`kubectl logs` of a quiet container reads it empty).
        drop(append(path)?);
        Ok(CriLog {
            inner: Arc::new(Mutex::new(LogFile {
                path: path.to_path_buf(),
                files: files.clone(),
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
        let LogFile { path, files, stdout_tail, stderr_tail, scratch, broken } = &mut *guard;
        let tail = match stream {
            LogStream::Stdout => stdout_tail,
            LogStream::Stderr => stderr_tail,
        };
        scratch.clear();
        cri_log::encode(scratch, tail, stream, Utc::now(), data);
        if !scratch.is_empty() && !*broken {
            // Local-disk append; cheap enough to do inline on the guest's thread (wasmtime's
            // own `OutputFile` does the same).
            if let Err(e) = files.get(path).and_then(|f| (&*f).write_all(scratch)) {
                tracing::warn!(error = %e, "container log write failed; dropping further output");
                *broken = true;
            }
        }
    }

    /// Emit unterminated tails as partial records. Called when the container ends.
    pub(crate) fn finish(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let LogFile { path, files, stdout_tail, stderr_tail, scratch, broken } = &mut *guard;
        scratch.clear();
        let now = Utc::now();
        cri_log::flush_partial(scratch, stdout_tail, LogStream::Stdout, now);
        cri_log::flush_partial(scratch, stderr_tail, LogStream::Stderr, now);
        if !scratch.is_empty() && !*broken {
            let _ = files.get(path).and_then(|f| (&*f).write_all(scratch));
        }
        files.close(path);
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

#[cfg(test)]
mod log_files_tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        let data = fs::read(path).expect("log file");
        data.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let rec = cri_log::parse_line(l).expect("a CRI log line");
                String::from_utf8_lossy(rec.content).into_owned()
            })
            .collect()
    }

    #[test]
    fn log_files_should_keep_few_open_and_append_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LogFiles::new(4);
        let logs: Vec<(PathBuf, CriLog)> = (0..10)
            .map(|i| {
                let path = dir.path().join(format!("c{i}/0.log"));
                let log = CriLog::open(&path, &files).expect("open");
                (path, log)
            })
            .collect();
        // Created at once, holding no descriptor until written.
        assert!(logs.iter().all(|(p, _)| p.exists()));
        assert_eq!(files.open_count(), 0);
        for round in 0..3 {
            for (i, (_, log)) in logs.iter().enumerate() {
                log.write(LogStream::Stdout, format!("c{i} line {round}\n").as_bytes());
                assert!(files.open_count() <= 4, "{} open", files.open_count());
            }
        }
        for (i, (path, _)) in logs.iter().enumerate() {
            let want: Vec<String> = (0..3).map(|r| format!("c{i} line {r}")).collect();
            assert_eq!(lines(path), want);
        }
        // A container that ends gives its file back, partial tail written.
        let (path, log) = &logs[9];
        log.write(LogStream::Stderr, b"no newline");
        log.finish();
        assert!(lines(path).contains(&"no newline".to_string()));
        let open = files.open.lock().expect("lock");
        assert!(!open.files.contains_key(path.as_path()));
    }
}
