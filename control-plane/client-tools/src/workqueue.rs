//! A work queue keyed by `namespace/name`, as Kubernetes' controllers use: a key queued many
//! times while waiting is processed once, a key is never processed by two workers at once
//! (queued again while processing, it runs again afterwards), and failures come back with a
//! growing delay (client-go's `util/workqueue` with its rate limiter). Also the handlers that
//! fill it from a shared informer's changes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::{Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use skiff_helpers::pods::controller_of;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::informers::Informer;

/// What a sync asks for when it succeeds: look again after this long, or (`None`) only when
/// something changes.
pub type Requeue = Option<Duration>;

const BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// client-go's workqueue metrics, by queue name (the controller's), shared by every queue of
/// the process: `workqueue_adds_total`, `workqueue_depth`, `workqueue_retries_total`,
/// `workqueue_work_duration_seconds`.
struct Metrics {
    adds: Family<NameLabel, Counter>,
    depth: Family<NameLabel, Gauge>,
    retries: Family<NameLabel, Counter>,
    work: Family<NameLabel, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

fn metrics() -> &'static Metrics {
    static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        adds: Family::default(),
        depth: Family::default(),
        retries: Family::default(),
        // client-go's buckets: 1 µs to 10 s by tens.
        work: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-6, 10.0, 8))),
    })
}

/// Register the work queues' metrics (under client-go's names) in `registry`.
pub fn register_metrics(registry: &mut Registry) {
    let m = metrics();
    registry.register(
        "workqueue_adds",
        "Total number of adds handled by workqueue",
        m.adds.clone(),
    );
    registry.register("workqueue_depth", "Current depth of workqueue", m.depth.clone());
    registry.register(
        "workqueue_retries",
        "Total number of retries handled by workqueue",
        m.retries.clone(),
    );
    registry.register(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        m.work.clone(),
    );
}

/// One queue's handles on the metrics, once it is named.
#[derive(Clone)]
struct QueueMetrics {
    adds: Counter,
    depth: Gauge,
    retries: Counter,
    work: Histogram,
}

#[derive(Default)]
struct State {
    metrics: Option<QueueMetrics>,
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    /// Keys with a delayed add pending, and when it is due.
    waiting: HashMap<String, Instant>,
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

    /// Report this queue's metrics under `name`.
    pub fn set_name(&self, name: &str) {
        let m = metrics();
        let label = NameLabel { name: name.to_string() };
        self.lock().metrics = Some(QueueMetrics {
            adds: m.adds.get_or_create(&label).clone(),
            depth: m.depth.get_or_create(&label).clone(),
            retries: m.retries.get_or_create(&label).clone(),
            work: m.work.get_or_create(&label).clone(),
        });
    }

    /// Queue `key` unless it is already waiting.
    pub fn add(&self, key: &str) {
        let mut s = self.lock();
        if !s.dirty.insert(key.to_string()) {
            return;
        }
        if let Some(m) = &s.metrics {
            m.adds.inc();
        }
        if !s.processing.contains(key) {
            s.queue.push_back(key.to_string());
            if let Some(m) = &s.metrics {
                m.depth.set(s.queue.len() as i64);
            }
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queue `key` once `delay` has passed. A key waits for one deadline only, the earliest
    /// asked for: a sync that asks to look again in ten minutes after every change does not
    /// pile up timers.
    pub fn add_after(&self, key: &str, delay: Duration) {
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.waiting.get(key).is_some_and(|t| *t <= at) {
                return;
            }
            s.waiting.insert(key.to_string(), at);
        }
        let (q, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut s = q.lock();
                let due = s.waiting.get(&key) == Some(&at);
                if due {
                    s.waiting.remove(&key);
                }
                due
            };
            if due {
                q.add(&key);
            }
        });
    }

    /// Queue `key` again after a delay that doubles with each failure in a row.
    pub fn retry(&self, key: &str) {
        let n = {
            let mut s = self.lock();
            if let Some(m) = &s.metrics {
                m.retries.inc();
            }
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
                    if let Some(m) = &s.metrics {
                        m.depth.set(s.queue.len() as i64);
                    }
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
            if let Some(m) = &s.metrics {
                m.depth.set(s.queue.len() as i64);
            }
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// Run `workers` tasks that take keys from `queue` and `sync` them: a success forgets the
/// key's failures (and queues it again after the delay `sync` asks for), a failure queues
/// it again with backoff. Runs until the task set is dropped.
pub fn spawn_workers<F, Fut, E>(
    tasks: &mut JoinSet<()>,
    queue: &WorkQueue,
    workers: usize,
    what: &'static str,
    sync: F,
) where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Requeue, E>> + Send,
    E: std::fmt::Display,
{
    queue.set_name(what);
    for _ in 0..workers {
        let (queue, sync) = (queue.clone(), sync.clone());
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                tracing::trace!(controller = what, key = %key, "sync");
                let started = std::time::Instant::now();
                let outcome = sync(key.clone()).await;
                if let Some(m) = &queue.lock().metrics {
                    m.work.observe(started.elapsed().as_secs_f64());
                }
                match outcome {
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

/// Queue the key of every object `informer` tells of (added, changed, deleted; every cached
/// one after a re-list).
pub fn enqueue_objects<K>(informer: &Informer<K>, queue: &WorkQueue)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (queue, store) = (queue.clone(), informer.store());
    informer.on_change(move |change| match change.object() {
        Some(obj) => queue.add(&key_of(obj)),
        None => store.state().iter().for_each(|obj| queue.add(&key_of(obj.as_ref()))),
    });
}

/// Queue the key of the controller of kind `owner_kind` (its `ownerReferences` entry with
/// `controller: true`) of every object `informer` tells of (of every cached one after a
/// re-list).
pub fn enqueue_controllers<K>(informer: &Informer<K>, queue: &WorkQueue, owner_kind: &'static str)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (queue, store) = (queue.clone(), informer.store());
    let enqueue = move |queue: &WorkQueue, meta: &kube::api::ObjectMeta| {
        if let Some(owner) = controller_of(meta).filter(|o| o.kind == owner_kind) {
            queue.add(&format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), owner.name));
        }
    };
    informer.on_change(move |change| match change.object() {
        Some(obj) => enqueue(&queue, obj.meta()),
        None => store.state().iter().for_each(|obj| enqueue(&queue, obj.meta())),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn add_after_should_keep_only_the_earliest_deadline_per_key() {
        let q = WorkQueue::new();
        q.add_after("ns/a", Duration::from_secs(600));
        q.add_after("ns/a", Duration::from_secs(600));
        q.add_after("ns/a", Duration::from_secs(5));
        assert_eq!(q.lock().waiting.len(), 1);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(q.next().await, "ns/a");
        q.done("ns/a");
        tokio::time::sleep(Duration::from_secs(700)).await;
        let again = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(again.is_err(), "the later deadlines were folded into the earliest");
        assert!(q.lock().waiting.is_empty());
    }

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
