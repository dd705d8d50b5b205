//! A work queue keyed by `namespace/name`, as Kubernetes' controllers use: a key queued many
//! times while waiting is processed once, a key is never processed by two workers at once
//! (queued again while processing, it runs again afterwards), and failures come back with a
//! growing delay. Also the watch plumbing that fills it: a reflector store per watched kind
//! whose events are mapped to the keys of the objects to reconcile.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;

const BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// Keys waiting to be reconciled. Cheap to clone; every clone is the same queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` unless it is already waiting.
    pub fn add(&self, key: &str) {
        let mut s = self.lock();
        if !s.dirty.insert(key.to_string()) {
            return;
        }
        if !s.processing.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queue `key` once `delay` has passed.
    pub fn add_after(&self, key: &str, delay: Duration) {
        let (q, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(&key);
        });
    }

    /// Queue `key` again after a delay that doubles with each failure in a row.
    pub fn retry(&self, key: &str) {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.to_string()).or_default();
            *n = n.saturating_add(1);
            *n
        };
        let delay = BASE_DELAY.saturating_mul(1 << n.min(8)).min(MAX_DELAY);
        self.add_after(key, delay);
    }

    /// `key` succeeded: its next failure starts from the shortest delay again.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to process; the caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Processing of `key` finished; if it was queued meanwhile it becomes ready again.
    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// Run `workers` tasks that take keys from `queue` and `sync` them: a success forgets the
/// key's failures (and queues it again after the delay `sync` asks for), a failure queues
/// it again with backoff. Runs until the task set is dropped.
pub fn spawn_workers<F, Fut>(
    tasks: &mut JoinSet<()>,
    queue: &WorkQueue,
    workers: usize,
    what: &'static str,
    sync: F,
) where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Option<Duration>, crate::Error>> + Send,
{
    for _ in 0..workers {
        let (queue, sync) = (queue.clone(), sync.clone());
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                match sync(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(d) = requeue {
                            queue.add_after(&key, d);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller = what, key = %key, error = %e, "sync failed; retrying");
                        queue.retry(&key);
                    }
                }
                queue.done(&key);
            }
        });
    }
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Split a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Watch `api` into a reflector store, calling `on_change` with every object that is
/// added, changed or deleted (to queue the keys it concerns). The watch is a task of
/// `tasks`, so it ends with them (a controller that stops leading drops its set); it
/// retries with backoff until then.
pub fn watch<K, F>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    on_change: F,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    F: Fn(&K) + Send + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher::watcher(api, config))
        .default_backoff()
        .touched_objects()
        .for_each(move |ev| {
            if let Ok(obj) = ev {
                on_change(&obj);
            }
            async {}
        });
    tasks.spawn(stream);
    store
}

/// `watch` for objects a controller of `owner_kind` owns: each change queues its owner's key.
pub fn watch_owned<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    queue: &WorkQueue,
    owner_kind: &'static str,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let queue = queue.clone();
    watch(tasks, api, config, move |obj: &K| {
        let meta = obj.meta();
        if let Some(owner) = crate::pods::controller_of(meta).filter(|o| o.kind == owner_kind) {
            queue.add(&format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), owner.name));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workqueue_should_dedupe_and_hold_keys_being_processed() {
        let q = WorkQueue::new();
        q.add("ns/a");
        q.add("ns/a");
        q.add("ns/b");
        let a = q.next().await;
        assert_eq!(a, "ns/a");
        q.add("ns/a"); // queued again while processing: not handed out twice at once
        assert_eq!(q.next().await, "ns/b");
        q.done("ns/b");
        let pending = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(pending.is_err(), "ns/a must wait until its processing is done");
        q.done("ns/a");
        assert_eq!(q.next().await, "ns/a");
        q.done("ns/a");
        let empty = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(empty.is_err(), "each add was processed once");
    }
}
