//! Watch fan-out: a bounded history of recent events plus a broadcast channel, both fed by
//! the state machine after each applied batch, under one lock so that a new watcher's history
//! replay and its live subscription meet exactly, with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::{StoreError, WatchEvent, WatchStream};

type Batch = Arc<[WatchEvent]>;

/// Shared by the state machine (the only writer) and `RaftStore` (watchers, revision reads).
pub(crate) struct WatchHub {
    inner: Mutex<HubInner>,
    /// Last applied log index; written under `inner`, read lock-free.
    revision: AtomicU64,
    shut_down: AtomicBool,
}

struct HubInner {
    history: VecDeque<WatchEvent>,
    history_capacity: usize,
    /// Every event with a revision above this is in `history`: the oldest `after` a watcher
    /// may ask for. Raised as events are evicted; set to the applied index at startup and on
    /// snapshot install, since nothing before those is known.
    complete_after: u64,
    tx: Option<broadcast::Sender<Batch>>,
    channel_capacity: usize,
}

impl WatchHub {
    pub(crate) fn new(history_capacity: usize, channel_capacity: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(channel_capacity.max(1));
        Arc::new(WatchHub {
            inner: Mutex::new(HubInner {
                history: VecDeque::new(),
                history_capacity: history_capacity.max(1),
                complete_after: 0,
                tx: Some(tx),
                channel_capacity: channel_capacity.max(1),
            }),
            revision: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // A panic while holding this lock leaves the history consistent (every mutation is
        // a single push/pop), so poisoning carries no information here.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Forget all history: the state is now the one at `revision` (startup, snapshot install).
    /// Live watchers are cut off (they see `WatchLagged`) because they would miss the jump.
    pub(crate) fn reset(&self, revision: u64) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.complete_after = revision;
        if inner.tx.is_some() {
            let (tx, _) = broadcast::channel(inner.channel_capacity);
            inner.tx = Some(tx);
        }
        self.revision.store(revision, Ordering::Release);
    }

    /// Record the events of one applied batch, which brought the state to `applied`.
    pub(crate) fn publish(&self, applied: u64, events: Vec<WatchEvent>) {
        let mut inner = self.lock();
        if !events.is_empty() {
            let batch: Batch = events.into();
            for ev in batch.iter() {
                if inner.history.len() == inner.history_capacity {
                    if let Some(old) = inner.history.pop_front() {
                        inner.complete_after = old.revision();
                    }
                }
                inner.history.push_back(ev.clone());
            }
            if let Some(tx) = &inner.tx {
                // No receivers is fine: nobody is watching.
                let _ = tx.send(batch);
            }
        }
        self.revision.store(applied, Ordering::Release);
    }

    /// End every live watch (store shutdown).
    pub(crate) fn close(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.lock().tx = None;
    }

    pub(crate) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: u64,
    ) -> Result<WatchStream, StoreError> {
        let (replay, rx) = {
            let inner = self.lock();
            let current = self.current_revision();
            if after < inner.complete_after && after < current {
                return Err(StoreError::Compacted {
                    requested: after,
                    oldest: inner.complete_after,
                });
            }
            let Some(tx) = &inner.tx else {
                return Err(StoreError::Unavailable("store is shut down".into()));
            };
            let replay: VecDeque<WatchEvent> = inner
                .history
                .iter()
                .filter(|ev| ev.revision() > after && event_key(ev).starts_with(prefix))
                .cloned()
                .collect();
            // Subscribing under the same lock as `publish` means the receiver sees exactly the
            // batches published after the history copy above.
            (replay, tx.subscribe())
        };
        let state = WatchState {
            queue: replay,
            rx,
            prefix: prefix.to_owned(),
            after,
            hub: Arc::clone(self),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }
}

fn event_key(ev: &WatchEvent) -> &str {
    match ev {
        WatchEvent::Put { kv, .. } => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

struct WatchState {
    queue: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Batch>,
    prefix: String,
    after: u64,
    hub: Arc<WatchHub>,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some((Ok(ev), self));
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    let (after, prefix) = (self.after, &self.prefix);
                    self.queue.extend(
                        batch
                            .iter()
                            .filter(|ev| {
                                ev.revision() > after && event_key(ev).starts_with(prefix.as_str())
                            })
                            .cloned(),
                    );
                }
                Err(RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some((Err(StoreError::WatchLagged), self));
                }
                Err(RecvError::Closed) => {
                    self.done = true;
                    let err = if self.hub.shut_down.load(Ordering::Acquire) {
                        StoreError::Unavailable("store is shut down".into())
                    } else {
                        // The channel was replaced by `reset`: history jumped.
                        StoreError::WatchLagged
                    };
                    return Some((Err(err), self));
                }
            }
        }
    }
}
