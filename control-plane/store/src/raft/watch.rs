//! Watch fan-out. The state machine writes every change into the `history` column family (in
//! the same RocksDB batch as the change) and then publishes the batch on a broadcast channel.
//! A watcher replays history from RocksDB up to the revision current when it subscribed and
//! then follows the channel; subscribing and publishing share one lock, so replay and live
//! batches meet exactly, with no gap and no duplicate. A watcher that falls behind the
//! channel does not fail: it re-subscribes and replays the missed part from history.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rocksdb::DB;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::CF_HISTORY;
use super::codec::{HistoryRecord, history_key, history_revision};
use super::state_machine::read_compacted;
use crate::{StoreError, WatchEvent, WatchStream};

/// The events of one applied batch and the revision the batch brought the state to.
struct Published {
    revision: u64,
    events: Vec<WatchEvent>,
}

type Batch = Arc<Published>;

/// Events a watcher reads from history per step, so a long replay never sits in memory whole.
const REPLAY_CHUNK: usize = 512;

/// Shared by the state machine (the only publisher) and `RaftStore` (watchers).
pub(crate) struct WatchHub {
    /// Weak: open watch streams must not keep RocksDB open after the store shuts down.
    db: Weak<DB>,
    inner: Mutex<HubInner>,
    /// Last applied log index; written under `inner`, read lock-free.
    revision: AtomicU64,
    /// Oldest revision a watch may start after; history holds every change above it.
    compacted: AtomicU64,
    shut_down: AtomicBool,
    progress_interval: Duration,
    /// Wakes idle watchers to report their progress now ([`WatchHub::request_progress`]).
    progress_now: tokio::sync::Notify,
}

struct HubInner {
    tx: Option<broadcast::Sender<Batch>>,
    channel_capacity: usize,
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("store is shut down".into())
}

impl WatchHub {
    pub(crate) fn new(
        db: &Arc<DB>,
        channel_capacity: usize,
        progress_interval: Duration,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(channel_capacity.max(1));
        Arc::new(WatchHub {
            db: Arc::downgrade(db),
            inner: Mutex::new(HubInner { tx: Some(tx), channel_capacity: channel_capacity.max(1) }),
            revision: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            progress_interval,
            progress_now: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // Every mutation under this lock is a single assignment or send, so a panic while
        // holding it leaves nothing half-done; poisoning carries no information here.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    pub(crate) fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }

    pub(crate) fn set_compacted(&self, revision: u64) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    /// The state is now the one at `revision`, with history after `compacted` (startup,
    /// snapshot install). Live watchers re-subscribe and find out from history whether they
    /// can go on.
    pub(crate) fn reset(&self, revision: u64, compacted: u64) {
        let mut inner = self.lock();
        if inner.tx.is_some() {
            let (tx, _) = broadcast::channel(inner.channel_capacity);
            inner.tx = Some(tx);
        }
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
    }

    /// Announce the events of one applied batch (already in history), which brought the
    /// state to `applied`.
    pub(crate) fn publish(&self, applied: u64, events: Vec<WatchEvent>) {
        let inner = self.lock();
        if let Some(tx) = inner.tx.as_ref().filter(|_| !events.is_empty()) {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(Arc::new(Published { revision: applied, events }));
        }
        self.revision.store(applied, Ordering::Release);
    }

    /// Have every idle watcher send its `Progress` now rather than at its next interval.
    pub(crate) fn request_progress(&self) {
        self.progress_now.notify_waiters();
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// End every live watch (store shutdown).
    pub(crate) fn close(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.lock().tx = None;
    }

    /// A receiver for batches after the returned revision, which history already holds.
    fn subscribe(&self) -> Result<(broadcast::Receiver<Batch>, u64), StoreError> {
        let inner = self.lock();
        let tx = inner.tx.as_ref().ok_or_else(unavailable)?;
        Ok((tx.subscribe(), self.current_revision()))
    }

    /// The applied revision if `rx` has nothing pending: then no event up to it is unseen.
    fn idle_revision(&self, rx: &broadcast::Receiver<Batch>) -> Option<u64> {
        let _inner = self.lock();
        rx.is_empty().then(|| self.current_revision())
    }

    pub(crate) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: u64,
    ) -> Result<WatchStream, StoreError> {
        let (rx, current) = self.subscribe()?;
        let oldest = self.compacted_revision();
        if after < oldest {
            return Err(StoreError::Compacted { requested: after, oldest });
        }
        let state = WatchState {
            hub: Arc::clone(self),
            prefix: prefix.to_owned(),
            pos: after,
            replay_until: current,
            queue: VecDeque::new(),
            rx,
            reported: after,
            next_progress: Instant::now() + self.progress_interval,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }
}

/// Changes under `prefix` with revision in `(after, until]`, at most about `max` history
/// records (never splitting a revision), and the revision the read reached.
fn read_history(
    db: &DB,
    prefix: &str,
    after: u64,
    until: u64,
    max: usize,
) -> Result<(Vec<WatchEvent>, u64), StoreError> {
    let storage = |e: &dyn std::fmt::Display| StoreError::Storage(format!("reading history: {e}"));
    let history_cf =
        db.cf_handle(CF_HISTORY).ok_or_else(|| storage(&"column family history is missing"))?;
    let view = db.snapshot();
    let oldest = read_compacted(&view, db).map_err(|e| storage(&e))?;
    if after < oldest {
        return Err(StoreError::Compacted { requested: after, oldest });
    }
    let mut it = view.raw_iterator_cf(history_cf);
    it.seek(history_key(after.saturating_add(1), 0));
    let mut events = Vec::new();
    let (mut seen, mut last) = (0usize, after);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let revision = history_revision(k).map_err(|e| storage(&e))?;
        if revision > until {
            break;
        }
        if seen >= max && revision != last {
            return Ok((events, last));
        }
        if HistoryRecord::peek_key(v).map_err(|e| storage(&e))?.starts_with(prefix.as_bytes()) {
            events.push(HistoryRecord::decode(v).map_err(|e| storage(&e))?.into_event(revision));
        }
        seen += 1;
        last = revision;
        it.next();
    }
    it.status().map_err(|e| storage(&e))?;
    Ok((events, until))
}

/// The next progress notification is due: at `at`, or earlier when one is requested.
async fn progress_due(hub: &WatchHub, at: Instant) {
    tokio::select! {
        () = tokio::time::sleep_until(at) => {}
        () = hub.progress_now.notified() => {}
    }
}

struct WatchState {
    hub: Arc<WatchHub>,
    prefix: String,
    /// Every matching change up to this revision has been queued or yielded.
    pos: u64,
    /// Replay history up to this revision before following `rx`.
    replay_until: u64,
    queue: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Batch>,
    /// The revision of the last item yielded.
    reported: u64,
    next_progress: Instant,
    done: bool,
}

impl WatchState {
    fn fail(mut self, err: StoreError) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        self.done = true;
        Some((Err(err), self))
    }

    fn resubscribe(&mut self) -> Result<(), StoreError> {
        let (rx, current) = self.hub.subscribe()?;
        self.rx = rx;
        self.replay_until = current;
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(ev) = self.queue.pop_front() {
                self.reported = ev.revision();
                self.next_progress = Instant::now() + self.hub.progress_interval;
                return Some((Ok(ev), self));
            }
            if self.pos < self.replay_until {
                let Some(db) = self.hub.db.upgrade() else { return self.fail(unavailable()) };
                match read_history(&db, &self.prefix, self.pos, self.replay_until, REPLAY_CHUNK) {
                    Ok((events, reached)) => {
                        self.queue.extend(events);
                        self.pos = reached;
                    }
                    Err(e) => return self.fail(e),
                }
                continue;
            }
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(batch) => {
                        if batch.revision > self.pos {
                            let (pos, prefix) = (self.pos, self.prefix.as_str());
                            self.queue.extend(batch.events.iter().filter(|ev| {
                                ev.revision() > pos
                                    && ev.key().is_some_and(|k| k.starts_with(prefix))
                            }).cloned());
                            self.pos = batch.revision;
                        }
                    }
                    // Fell behind the channel, or the channel was replaced (snapshot
                    // install): catch up from history, which says if that is still possible.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                        if self.hub.shut_down.load(Ordering::Acquire) {
                            return self.fail(unavailable());
                        }
                        if let Err(e) = self.resubscribe() {
                            return self.fail(e);
                        }
                    }
                },
                () = progress_due(&self.hub, self.next_progress) => {
                    self.next_progress = Instant::now() + self.hub.progress_interval;
                    if let Some(idle) = self.hub.idle_revision(&self.rx) {
                        self.pos = self.pos.max(idle);
                    }
                    if self.pos > self.reported {
                        self.reported = self.pos;
                        return Some((Ok(WatchEvent::Progress { revision: self.pos }), self));
                    }
                }
            }
        }
    }
}
