//! The work queue of the controller loop, keyed by namespace/name (client-go's delaying,
//! de-duplicating `workqueue` in small): a key is in the queue at most once, due at the
//! earliest time anyone asked for it. Events and requeues only add keys; the worker takes one
//! key at a time, so a site is never reconciled twice at once, and an event that comes during
//! a reconcile makes it run again afterwards.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A namespaced object's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The queue's state, without time or waiting: every decision is a function of its calls.
#[derive(Debug, Default)]
pub struct WorkQueue {
    due: HashMap<Key, Instant>,
    order: BTreeSet<(Instant, Key)>,
}

/// What [`WorkQueue::pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop {
    /// This key is due: it has left the queue.
    Due(Key),
    /// Nothing is due before this time.
    Until(Instant),
    /// The queue is empty.
    Empty,
}

impl WorkQueue {
    /// Queue `key` for `at`, or keep it at its earlier time.
    pub fn add(&mut self, key: Key, at: Instant) {
        match self.due.get(&key) {
            Some(&queued) if queued <= at => {}
            Some(&queued) => {
                self.order.remove(&(queued, key.clone()));
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
            None => {
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
        }
    }

    /// Take the earliest key due at `now`.
    pub fn pop(&mut self, now: Instant) -> Pop {
        let Some((at, key)) = self.order.first().cloned() else { return Pop::Empty };
        if at > now {
            return Pop::Until(at);
        }
        self.order.remove(&(at, key.clone()));
        self.due.remove(&key);
        Pop::Due(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.due.len()
    }
}

/// The shared queue: adds from any task, [`Queue::next`] for the worker.
#[derive(Default)]
pub struct Queue {
    state: Mutex<WorkQueue>,
    added: Notify,
}

impl Queue {
    /// Queue `key` now.
    pub fn add(&self, key: Key) {
        self.add_after(key, Duration::ZERO);
    }

    /// Queue `key` after `delay` (or sooner, if it is queued sooner already).
    pub fn add_after(&self, key: Key, delay: Duration) {
        self.lock().add(key, Instant::now() + delay);
        self.added.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkQueue> {
        // Its operations leave it consistent even if a panic interrupted a holder.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next due key, waiting for one. Cancel-safe: a key leaves the queue only when this
    /// returns it.
    pub async fn next(&self) -> Key {
        loop {
            // Registered before looking, so an add between the look and the wait is not missed.
            let added = self.added.notified();
            let popped = self.lock().pop(Instant::now());
            match popped {
                Pop::Due(key) => return key,
                Pop::Until(at) => {
                    let _ = tokio::time::timeout_at(at, added).await;
                }
                Pop::Empty => added.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key { namespace: "default".into(), name: name.into() }
    }

    #[test]
    fn work_queue_should_keep_each_key_once_at_its_earliest_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = WorkQueue::default();
        q.add(key("a"), t0 + 10 * s);
        q.add(key("a"), t0 + 20 * s); // later: ignored
        q.add(key("b"), t0 + 5 * s);
        q.add(key("a"), t0 + 2 * s); // sooner: moves it
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(t0), Pop::Until(t0 + 2 * s));
        assert_eq!(q.pop(t0 + 3 * s), Pop::Due(key("a")));
        assert_eq!(q.pop(t0 + 3 * s), Pop::Until(t0 + 5 * s));
        assert_eq!(q.pop(t0 + 60 * s), Pop::Due(key("b")));
        assert_eq!(q.pop(t0 + 60 * s), Pop::Empty);
    }

    #[test]
    fn work_queue_should_pop_due_keys_oldest_first() {
        let t0 = Instant::now();
        let mut q = WorkQueue::default();
        q.add(key("late"), t0 + Duration::from_millis(2));
        q.add(key("early"), t0 + Duration::from_millis(1));
        let now = t0 + Duration::from_secs(1);
        assert_eq!(q.pop(now), Pop::Due(key("early")));
        assert_eq!(q.pop(now), Pop::Due(key("late")));
    }

    #[tokio::test(start_paused = true)]
    async fn queue_next_should_wait_for_the_due_time() {
        let q = std::sync::Arc::new(Queue::default());
        q.add_after(key("a"), Duration::from_secs(30));
        let start = Instant::now();
        assert_eq!(q.next().await, key("a"));
        assert!(start.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn queue_next_should_wake_for_a_sooner_add() {
        let q = std::sync::Arc::new(Queue::default());
        q.add_after(key("later"), Duration::from_secs(300));
        let adder = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            adder.add(key("now"));
        });
        let start = Instant::now();
        assert_eq!(q.next().await, key("now"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
