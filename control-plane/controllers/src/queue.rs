//! A work queue with Kubernetes' workqueue guarantees: an item queued twice is processed
//! once, and an item is never processed by two workers at a time (one queued while it is
//! being processed runs again after).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    processing: HashSet<T>,
    dirty: HashSet<T>,
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
            }),
            ready: Notify::new(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn add(&self, item: T) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.processing.contains(&item) {
            s.dirty.insert(item);
        } else if s.queued.insert(item.clone()) {
            s.queue.push_back(item);
            self.ready.notify_one();
        }
    }

    /// Queue `item` again after `delay` (a failed item's retry).
    pub fn add_after(self: &std::sync::Arc<Self>, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// The next item, waiting for one; call [`WorkQueue::done`] when finished with it.
    pub async fn next(&self) -> T {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(item) = s.queue.pop_front() {
                    s.queued.remove(&item);
                    s.processing.insert(item.clone());
                    if !s.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return item;
                }
            }
            ready.await;
        }
    }

    pub fn done(&self, item: &T) {
        let again = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.processing.remove(item);
            s.dirty.remove(item)
        };
        if again {
            self.add(item.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_queue_should_dedup_and_rerun_items_queued_while_processing() {
        let q = std::sync::Arc::new(WorkQueue::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, "a");
        q.add("a");
        assert_eq!(q.len(), 1, "a is being processed: it waits");
        q.done(&a);
        assert_eq!(q.next().await, "b");
        assert_eq!(q.next().await, "a");
    }
}
