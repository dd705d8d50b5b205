//! What the Job, CronJob and TTL-after-finished controllers share: a keyed work queue with
//! delayed requeues, reflector-backed watches, and Job condition helpers.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Error;

/// A reconcile's answer: check again after this long (`None`: only when something changes).
pub type Requeue = Option<Duration>;

/// How long a failed reconcile waits before it is retried.
const ERROR_RETRY: Duration = Duration::from_secs(5);

/// Keys (`namespace/name`) to reconcile, each at most once at a time; a key added while it
/// is being reconciled is reconciled again afterwards.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<(String, Option<Instant>)>,
}

impl Queue {
    pub fn add(&self, key: String) {
        let _ = self.tx.send((key, None));
    }

    pub fn add_after(&self, key: String, after: Duration) {
        let _ = self.tx.send((key, Some(Instant::now() + after)));
    }
}

pub fn key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

pub fn key_of<K: Resource>(obj: &K) -> String {
    key(obj.meta().namespace.as_deref(), obj.meta().name.as_deref().unwrap_or_default())
}

pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub fn queue() -> (Queue, mpsc::UnboundedReceiver<(String, Option<Instant>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Queue { tx }, rx)
}

/// Run `reconcile` for the queued keys, up to `workers` different keys at once, until the
/// queue's senders are all gone.
pub async fn process<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(String, Option<Instant>)>,
    workers: usize,
    reconcile: F,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Requeue, Error>> + Send + 'static,
{
    let mut ready: VecDeque<String> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut timers: BTreeMap<(Instant, u64), String> = BTreeMap::new();
    let mut seq = 0u64;
    let mut running: HashSet<String> = HashSet::new();
    let mut again: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Start what may start.
        while running.len() < workers {
            let Some(k) = ready.pop_front() else { break };
            if running.contains(&k) {
                again.insert(k.clone());
                queued.remove(&k);
                continue;
            }
            queued.remove(&k);
            running.insert(k.clone());
            let fut = reconcile(k.clone());
            tasks.spawn(async move { (k, fut.await) });
        }
        let next_timer = timers.keys().next().map(|(at, _)| *at);
        tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some((k, None)) => {
                    if queued.insert(k.clone()) {
                        ready.push_back(k);
                    }
                }
                Some((k, Some(at))) => {
                    seq += 1;
                    timers.insert((at, seq), k);
                }
            },
            _ = tokio::time::sleep_until(next_timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if next_timer.is_some() => {
                let now = Instant::now();
                while let Some(entry) = timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let k = entry.remove();
                    if queued.insert(k.clone()) {
                        ready.push_back(k);
                    }
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((k, result)) = done else { continue };
                running.remove(&k);
                let after = match result {
                    Ok(after) => after,
                    Err(e) => {
                        tracing::warn!(key = %k, error = %e, "reconcile failed; retrying");
                        Some(ERROR_RETRY)
                    }
                };
                if let Some(after) = after {
                    seq += 1;
                    timers.insert((Instant::now() + after, seq), k.clone());
                }
                if again.remove(&k) && queued.insert(k.clone()) {
                    ready.push_back(k);
                }
            }
        }
    }
}

/// A reflector store for `api`, and the stream of its changes (each changed or deleted
/// object) to be polled for the store to fill.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl futures::Stream<Item = Arc<K>> + Send)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .filter_map(|r| async move {
            match r {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::debug!(error = %e, "watch error; the watcher retries");
                    None
                }
            }
        })
        .map(Arc::new);
    (reader, stream)
}

/// The object `namespace/name` in `store`.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// The condition of `type_` if it is True.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// `Complete` or `Failed` (the finished condition), if the Job has finished.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    true_condition(job, "Complete").or_else(|| true_condition(job, "Failed"))
}

/// When the Job finished: its finished condition's transition time.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    finished_condition(job).and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The HTTP code of an API error answer (`404`, `409`, …); `None` for other errors.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
