//! The event recorder every component uses (`kubectl describe` shows what it writes), with
//! client-go's `tools/record` rules so a busy component cannot flood the API:
//!
//! - **de-duplication**: an event identical to one recorded before (same source, object,
//!   type, reason and message) is not created again; the existing one gets `count + 1` and a
//!   new `lastTimestamp`;
//! - **aggregation**: once an object has had 10 events of the same type and reason with
//!   different messages within 10 minutes, further ones are folded into one event whose
//!   message starts with `(combined from similar events): `;
//! - **spam filter**: each source and object has a token bucket of 25 events, refilled with
//!   one every 5 minutes; events beyond it are dropped.
//!
//! Recording never blocks and never fails: events go through a bounded buffer (dropped when
//! it is full, like client-go's broadcaster) to writer tasks; a write that fails is logged at
//! debug level and forgotten.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// Events waiting to be written, per writer.
const BUFFER: usize = 256;
/// Writers: events of one object always go to the same writer, in order.
const WRITERS: usize = 4;
/// Entries each correlation cache keeps (client-go's `maxLruCacheEntries`).
const CACHE_ENTRIES: usize = 4096;
/// Distinct messages of one kind of event before they are aggregated (`defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// How long the distinct messages are counted (`defaultAggregateIntervalInSeconds`).
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
/// Token bucket of the spam filter (`defaultSpamBurst`, `defaultSpamQPS` = 1/300).
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
const AGGREGATE_PREFIX: &str = "(combined from similar events): ";

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events as one component (and host, for the kubelet). Cheap to clone; every
/// clone shares the buffer and the correlation caches. Must be created inside a tokio runtime
/// (it starts its writers there).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    writers: Vec<mpsc::Sender<Write>>,
    component: String,
    host: Option<String>,
    correlator: Mutex<Correlator>,
}

/// The reference an event about `obj` carries.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder for `component` (`controller-manager`, `default-scheduler`).
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self::start(client, component, None)
    }

    /// A recorder for `component` on a host (the kubelet: `source.host` is the node).
    pub fn on_host(client: kube::Client, component: &str, host: &str) -> Self {
        Self::start(client, component, Some(host.to_string()))
    }

    fn start(client: kube::Client, component: &str, host: Option<String>) -> Self {
        let writers = (0..WRITERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(BUFFER);
                tokio::spawn(write_events(client.clone(), rx));
                tx
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                writers,
                component: component.to_string(),
                host,
                correlator: Mutex::new(Correlator::default()),
            }),
        }
    }

    /// A `Normal` event about `obj`, e.g. `("SuccessfulCreate", "Created pod: web-abc12")`.
    pub fn normal<K>(&self, obj: &K, reason: &str, message: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(reference(obj), EventType::Normal, reason, message.into());
    }

    /// A `Warning` event about `obj`, e.g. `("FailedCreate", "Error creating: …")`.
    pub fn warning<K>(&self, obj: &K, reason: &str, message: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(reference(obj), EventType::Warning, reason, message.into());
    }

    /// An event about the object `involved` refers to (with its `fieldPath`, if any).
    pub fn record(
        &self,
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let inner = &self.inner;
        let source = Source { component: &inner.component, host: inner.host.as_deref() };
        let decided = {
            let mut c = inner.correlator.lock().unwrap_or_else(|e| e.into_inner());
            c.correlate(&source, &involved, type_, reason, message, Instant::now())
        };
        let Some(Decision { name, count, first, message, update }) = decided else {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        };
        let now = Time(Timestamp::now());
        // Cluster-scoped objects' events live in `default`, as client-go puts them.
        let namespace = involved.namespace.clone().unwrap_or_else(|| "default".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(inner.component.clone()),
                host: inner.host.clone(),
            }),
            reporting_component: Some(inner.component.clone()),
            reporting_instance: Some(inner.host.clone().unwrap_or_else(|| inner.component.clone())),
            first_timestamp: Some(first.map(Time).unwrap_or_else(|| now.clone())),
            last_timestamp: Some(now),
            count: Some(count),
            ..Default::default()
        };
        let writer = &inner.writers[lane(&name)];
        if writer.try_send(Write { event, update }).is_err() {
            tracing::debug!(reason, "event buffer full; event dropped");
        }
    }
}

/// The writer an event goes to: by name, so the updates of one event stay in order.
fn lane(name: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % WRITERS as u64) as usize
}

struct Write {
    event: Event,
    /// An update of an event written before (its count and timestamps), not a new one.
    update: bool,
}

async fn write_events(client: kube::Client, mut rx: mpsc::Receiver<Write>) {
    while let Some(Write { event, update }) = rx.recv().await {
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let result = if update {
            let patch = serde_json::json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                // The first write was lost (or the event expired): write it whole.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    api.create(&PostParams::default(), &event).await.map(drop)
                }
                other => other.map(drop),
            }
        } else {
            api.create(&PostParams::default(), &event).await.map(drop)
        };
        if let Err(e) = result {
            tracing::debug!(event = %name, error = %e, "event not recorded");
        }
    }
}

struct Source<'a> {
    component: &'a str,
    host: Option<&'a str>,
}

/// What to write for one recorded event.
#[derive(Debug, PartialEq)]
struct Decision {
    name: String,
    count: i32,
    /// `firstTimestamp` of the event this one updates.
    first: Option<Timestamp>,
    message: String,
    update: bool,
}

/// A map that forgets its oldest entries beyond [`CACHE_ENTRIES`].
struct Lru<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<V> Lru<V> {
    fn entry(&mut self, key: String, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) {
            while self.map.len() >= CACHE_ENTRIES {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key.clone());
        }
        self.map.entry(key).or_insert_with(make)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Aggregate {
    messages: HashSet<String>,
    at: Instant,
}

struct Seen {
    name: String,
    count: i32,
    first: Timestamp,
}

/// client-go's `EventCorrelator`: aggregation, then de-duplication, then the spam filter.
#[derive(Default)]
struct Correlator {
    spam: Lru<Bucket>,
    aggregates: Lru<Aggregate>,
    seen: Lru<Seen>,
}

impl Correlator {
    fn correlate(
        &mut self,
        source: &Source<'_>,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
        now: Instant,
    ) -> Option<Decision> {
        let object = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            source.component,
            source.host.unwrap_or(""),
            involved.kind.as_deref().unwrap_or(""),
            involved.namespace.as_deref().unwrap_or(""),
            involved.name.as_deref().unwrap_or(""),
            involved.uid.as_deref().unwrap_or(""),
            involved.api_version.as_deref().unwrap_or(""),
            type_.as_str(),
        );
        let field_path = involved.field_path.as_deref().unwrap_or("");
        let aggregate_key = format!("{object}\u{0}{reason}\u{0}{field_path}");

        // Aggregation: too many different messages of one kind become one event.
        let agg = self
            .aggregates
            .entry(aggregate_key.clone(), || Aggregate { messages: HashSet::new(), at: now });
        if now.duration_since(agg.at) > AGGREGATE_INTERVAL {
            agg.messages.clear();
        }
        agg.at = now;
        agg.messages.insert(message.clone());
        let (key, message) = if agg.messages.len() < AGGREGATE_MAX_EVENTS {
            (format!("{aggregate_key}\u{0}{message}"), message)
        } else {
            // Keep the set from growing past the maximum.
            if let Some(any) = agg.messages.iter().next().cloned() {
                agg.messages.remove(&any);
            }
            (aggregate_key, format!("{AGGREGATE_PREFIX}{message}"))
        };

        // Spam filter: a token bucket per source and object.
        let bucket = self.spam.entry(object, || Bucket { tokens: SPAM_BURST, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return None;
        }
        bucket.tokens -= 1.0;

        // De-duplication: the same event again is a count on the first one.
        let name_base = involved.name.as_deref().unwrap_or("");
        let seen = self.seen.entry(key, || Seen {
            name: event_name(name_base),
            count: 0,
            first: Timestamp::now(),
        });
        seen.count = seen.count.saturating_add(1);
        Some(Decision {
            name: seen.name.clone(),
            count: seen.count,
            first: (seen.count > 1).then_some(seen.first),
            message,
            update: seen.count > 1,
        })
    }
}

/// `<object name>.<unique hex>`, as client-go names events.
fn event_name(object: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Nanoseconds alone collide when two events are recorded in the same tick.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    format!("{object}.{:016x}", h.finish())
}

#[cfg(test)]
mod tests;
