//! The audit log file backend (kube-apiserver's `--audit-log-path`, `plugin/pkg/audit/log`):
//! one JSON event per line, appended to a file that is rotated as kube-apiserver's lumberjack
//! rotates it (`--audit-log-maxsize`, `--audit-log-maxbackup`, `--audit-log-maxage`), or
//! written to stdout for the path `-`.
//!
//! Requests never wait for the disk: [`LogWriter::write`] hands the event to a bounded queue
//! that one thread drains, serializing and writing each event and flushing whenever the queue
//! runs empty (a burst is written with one flush, a lone event at once). When the queue is
//! full (the disk cannot keep up) the event is dropped and counted as an error, as
//! kube-apiserver's batching backend does, rather than stalling every request behind the
//! disk. An I/O error is logged once per run of failures and never fails a request.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::event::Event;

/// lumberjack's backup timestamp: `audit-2026-12-06T22-11-39.123.log`.
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

impl LogTarget {
    /// `-` is stdout, as kube-apiserver's `--audit-log-path -`.
    pub fn from_path(path: &Path) -> LogTarget {
        if path == Path::new("-") { LogTarget::Stdout } else { LogTarget::File(path.to_path_buf()) }
    }
}

/// When the file is rotated and which rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationOptions {
    /// Rotate before a write that would take the file past this size.
    pub max_size_bytes: u64,
    /// Rotated files kept, newest first; 0 keeps all.
    pub max_backups: usize,
    /// Rotated files older than this (by the time in their name) are removed; `None` keeps them.
    pub max_age: Option<Duration>,
}

impl RotationOptions {
    /// lumberjack's size when none is given.
    pub const DEFAULT_MAX_SIZE_MB: u64 = 100;

    /// The options of kube-apiserver's flags: `--audit-log-maxsize` (MB; 0: 100 MB),
    /// `--audit-log-maxbackup` (0: keep all), `--audit-log-maxage` (days; 0: keep).
    pub fn from_flags(max_size_mb: u32, max_backups: u32, max_age_days: u32) -> RotationOptions {
        let mb = if max_size_mb == 0 { Self::DEFAULT_MAX_SIZE_MB } else { u64::from(max_size_mb) };
        RotationOptions {
            max_size_bytes: mb * 1024 * 1024,
            max_backups: max_backups as usize,
            max_age: (max_age_days > 0)
                .then(|| Duration::from_secs(u64::from(max_age_days) * 24 * 3600)),
        }
    }
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions::from_flags(0, 0, 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("opening the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the audit log writer: {0}")]
    Thread(#[source] std::io::Error),
}

/// Counts since the writer was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Events handed to [`LogWriter::write`].
    pub events: u64,
    /// Events dropped (queue full) or lost to an I/O error.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    errors: AtomicU64,
}

enum Message {
    Event(Box<Event>),
    /// Answered once every event queued before it is written and flushed.
    Flush(SyncSender<()>),
}

/// The audit log backend. `Send + Sync`; dropping it writes what is queued and stops the
/// writer thread.
pub struct LogWriter {
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl LogWriter {
    /// Events the queue holds before new ones are dropped: at ~1 KiB an event, 10 MiB of
    /// burst, seconds of a busy api server's traffic.
    pub const QUEUE_CAPACITY: usize = 10_000;

    /// Open (create, or append to) the log. Fails when the file cannot be opened, so that a
    /// server with a bad `--audit-log-path` does not start without its audit log.
    pub fn open(target: LogTarget, options: RotationOptions) -> Result<LogWriter, LogError> {
        let sink = match target {
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(path) => Sink::File(
                RotatingFile::open(&path, options)
                    .map_err(|source| LogError::Open { path, source })?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(Self::QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("skiff-audit-log".into())
            .spawn(move || run(sink, rx, &c))
            .map_err(LogError::Thread)?;
        Ok(LogWriter { tx: Some(tx), thread: Some(thread), counters })
    }

    /// Queue `event` for writing. Never blocks; `false` when it was dropped (queue full).
    pub fn write(&self, event: Event) -> bool {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        // No sender: the writer is being dropped. Disconnected: its thread is gone.
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Message::Event(Box::new(event))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let dropped = self.counters.errors.fetch_add(1, Ordering::Relaxed);
                // One warning per 1000 drops: a stalled disk would flood the log.
                if dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        "audit log queue full: dropping audit events (the disk is not keeping up)"
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Block until every event queued before this call is written and flushed.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            events: self.counters.events.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: write what comes, flush when nothing more is waiting.
fn run(mut sink: Sink, rx: Receiver<Message>, counters: &Counters) {
    let mut failing = false;
    let mut unflushed = 0u64;
    let mut waiting: Vec<SyncSender<()>> = Vec::new();
    let report = |result: std::io::Result<()>, lost: u64, failing: &mut bool| match result {
        Ok(()) => *failing = false,
        Err(e) => {
            counters.errors.fetch_add(lost, Ordering::Relaxed);
            if !*failing {
                tracing::error!(error = %e, "writing the audit log failed; audit events are lost until it recovers");
                *failing = true;
            }
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => match event.to_line() {
                    Ok(line) => {
                        let r = sink.write_line(&line);
                        let ok = r.is_ok();
                        report(r, 1, &mut failing);
                        unflushed += u64::from(ok);
                    }
                    Err(e) => report(Err(std::io::Error::other(e)), 1, &mut failing),
                },
                Message::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
        }
        report(sink.flush(), unflushed, &mut failing);
        unflushed = 0;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = sink.flush();
}

enum Sink {
    Stdout,
    File(RotatingFile),
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File(f) => f.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().flush(),
            Sink::File(f) => f.file.flush(),
        }
    }
}

/// The log file and its rotated predecessors (`<name>-<time><ext>` beside it).
struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    options: RotationOptions,
    /// The time in the name of the last backup this process made.
    last_backup: Option<DateTime<Utc>>,
}

impl RotatingFile {
    fn open(path: &Path, options: RotationOptions) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        // Backups of an earlier run count too: new names must sort after theirs.
        let last_backup = backups_of(path).ok().and_then(|b| b.into_iter().map(|(t, _)| t).max());
        let f = RotatingFile {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            options,
            last_backup,
        };
        f.remove_old_backups(Utc::now());
        Ok(f)
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        // An event larger than the whole file still gets written, into a file of its own:
        // lumberjack refuses it, but an audit event is not to be lost for being big.
        if self.size > 0 && self.size + len > self.options.max_size_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// Move the file aside under a timestamped name, start a new one, trim the backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let now = Utc::now();
        // Backup names must sort as their contents do (cleanup keeps the newest by name):
        // a rotation within the millisecond of the one before takes the next millisecond.
        let mut at = match self.last_backup {
            Some(last) if last >= now => last + chrono::Duration::milliseconds(1),
            _ => now,
        };
        let backup = loop {
            let candidate = backup_name(&self.path, at);
            if !candidate.exists() {
                break candidate;
            }
            at += chrono::Duration::milliseconds(1);
        };
        std::fs::rename(&self.path, &backup)?;
        self.last_backup = Some(at);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path);
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                // Keep writing to the renamed file rather than nowhere.
                let _ = std::fs::rename(&backup, &self.path);
                return Err(e);
            }
        };
        if let Ok(meta) = std::fs::metadata(&backup) {
            let _ = std::fs::set_permissions(&self.path, meta.permissions());
        }
        self.file = BufWriter::new(file);
        self.size = 0;
        self.remove_old_backups(now);
        Ok(())
    }

    /// lumberjack's cleanup: keep the newest `max_backups`, drop those older than `max_age`.
    fn remove_old_backups(&self, now: DateTime<Utc>) {
        if self.options.max_backups == 0 && self.options.max_age.is_none() {
            return;
        }
        let mut backups = match backups_of(&self.path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "listing old audit log files");
                return;
            }
        };
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        let cutoff = self
            .options
            .max_age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .map(|age| now - age);
        for (i, (time, path)) in backups.iter().enumerate() {
            let too_many = self.options.max_backups > 0 && i >= self.options.max_backups;
            let too_old = cutoff.is_some_and(|c| *time < c);
            if (too_many || too_old)
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(error = %e, file = %path.display(), "removing an old audit log file");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    // The audit log names who did what: readable by its owner only, as kube-apiserver's.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// `dir/audit.log` → (`dir`, `audit`, `.log`); the extension is what follows the last dot
/// of the file name, as Go's `filepath.Ext` has it (lumberjack's rule).
fn split_name(path: &Path) -> (PathBuf, String, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) => (dir, name[..i].to_string(), name[i..].to_string()),
        None => (dir, name, String::new()),
    }
}

/// The name `path` is rotated to at `at` (UTC).
pub(super) fn backup_name(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let (dir, stem, ext) = split_name(path);
    dir.join(format!("{stem}-{}{ext}", at.format(BACKUP_TIME_FORMAT)))
}

/// The rotated files of `path`, with the time in their names.
fn backups_of(path: &Path) -> std::io::Result<Vec<(DateTime<Utc>, PathBuf)>> {
    let (dir, stem, ext) = split_name(path);
    let prefix = format!("{stem}-");
    let listing = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(listing)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(ext.as_str()))
        else {
            continue;
        };
        // Anything else beside the log that happens to share its prefix is not ours.
        if let Ok(t) = NaiveDateTime::parse_from_str(stamp, BACKUP_TIME_FORMAT) {
            found.push((t.and_utc(), entry.path()));
        }
    }
    Ok(found)
}
