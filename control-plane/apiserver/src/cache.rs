//! The watch cache, after kube-apiserver's cacher: one cache per resource, fed by one store
//! watch, holding the resource's current objects and a window of its recent events.
//!
//! Objects are not decoded when their events arrive: the stored JSON is kept as the bytes
//! clients are served (`resourceVersion` spliced in), plus the few attributes selectors look
//! at, picked out of the text in one pass (`attrs.rs`); its protobuf envelope is encoded at
//! most once, when a client first asks for it. Watchers share those
//! bytes through one broadcast channel: no watcher decodes, converts or serializes an object
//! of the stored version, and a watcher copies each event into its own output once, batching
//! whatever is pending into one write.
//!
//! A watcher that cannot keep up falls behind the channel's bounded window and is ended with
//! a 410 `Expired` event (the client lists again), so one stuck reader never holds more than
//! that window. Lists with `resourceVersion=0`, `resourceVersionMatch=NotOlderThan` and
//! (after a read-index round trip, as kube-apiserver's consistent reads from cache do) plain
//! consistent lists are answered from the cache, item bytes copied, never re-encoded.
//!
//! What the cache cannot answer (a resume older than its window, a revision it does not reach
//! within [`WAIT_FOR_REVISION`], exact-revision or paged lists, converted views) goes to the
//! store as before.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_api::protobuf;
use skiff_api::{ResourceInfo, list_prefix};
use skiff_store::{Store, StoreError, WatchEvent};
use tokio::sync::broadcast;

use crate::selectors::{FieldSelector, LabelSelector};

mod attrs;

use attrs::Attrs;

/// How long a read waits for the cache to reach the revision it needs before it is served
/// from the store instead.
pub const WAIT_FOR_REVISION: Duration = Duration::from_secs(3);

/// The largest windows of a custom resource's cache.
const CUSTOM_WINDOW: usize = 256;

/// Sizes of a cache's windows.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Recent events kept for watchers that resume from a resourceVersion.
    pub history: usize,
    /// Events a watcher may fall behind the newest before it is ended with 410.
    pub watcher_window: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { history: 4096, watcher_window: 4096 }
    }
}

/// One object as the cache serves it.
#[derive(Debug)]
pub struct Cached {
    pub key: String,
    /// The object's resourceVersion (for a deleted object, the delete's revision).
    pub revision: u64,
    /// The object in JSON, its resourceVersion stamped: what a client of the stored version
    /// is sent.
    pub json: Bytes,
    /// `metadata.name/namespace/labels` and the kind's selectable fields: what selectors read.
    attrs: Attrs,
    /// The protobuf envelope, encoded the first time a client wants it (`None`: no protobuf
    /// form).
    proto: OnceLock<Option<Bytes>>,
}

impl Cached {
    /// A change read from the store, as the cache would have made it (for a watcher that
    /// follows the store's history instead of the cache). Without selectors (`selective`
    /// false) nothing is decoded: the stored bytes get their resourceVersion spliced in, and
    /// the previous value only says that there was one.
    pub fn event_from_store(kind: &str, event: WatchEvent, selective: bool) -> Option<CachedEvent> {
        let make = |key: String, revision: u64, value: &[u8]| -> Option<Arc<Cached>> {
            if selective {
                return Cached::from_stored(kind, key, revision, value).map(Arc::new);
            }
            let json = crate::objects::stamp_resource_version(value, revision)?;
            Some(Arc::new(Cached {
                key,
                revision,
                json: Bytes::from(json),
                attrs: Attrs::default(),
                proto: OnceLock::new(),
            }))
        };
        match event {
            WatchEvent::Put { kv, prev } => {
                let prev = prev.and_then(|p| make(p.key, p.mod_revision, &p.value));
                let object = make(kv.key, kv.mod_revision, &kv.value)?;
                Some(CachedEvent { revision: object.revision, object, prev, deleted: false })
            }
            WatchEvent::Delete { key, revision, prev } => {
                let object = make(key, revision, &prev.value)?;
                Some(CachedEvent { revision, object, prev: None, deleted: true })
            }
            WatchEvent::Progress { .. } => None,
        }
    }

    fn new(kind: &str, key: String, revision: u64, obj: Value) -> Cached {
        let obj = crate::handlers::with_resource_version(obj, revision);
        let attrs = Attrs::of(kind, &obj);
        let json = Bytes::from(skiff_api::gojson::to_vec(&obj));
        Cached { key, revision, json, attrs, proto: OnceLock::new() }
    }

    /// The object stored as `value` (JSON without its resourceVersion), without decoding it:
    /// the revision is spliced into the bytes and the attributes picked out of them.
    /// An object stored with a resourceVersion of its own (written around the api server's
    /// encoding), or one the scan cannot read, is decoded instead; `None` when the value is
    /// not JSON.
    fn from_stored(kind: &str, key: String, revision: u64, value: &[u8]) -> Option<Cached> {
        if let Some(attrs) = attrs::from_json(kind, value)
            && let Some(json) = crate::objects::stamp_resource_version(value, revision)
        {
            return Some(Cached {
                key,
                revision,
                json: Bytes::from(json),
                attrs,
                proto: OnceLock::new(),
            });
        }
        let obj = serde_json::from_slice::<Value>(value).ok()?;
        Some(Cached::new(kind, key, revision, obj))
    }

    /// The object decoded (for conversions and tables, which need the whole object).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        self.attrs.matches(labels, fields)
    }

    /// Whether the object is being deleted (`metadata.deletionTimestamp` is set).
    pub fn is_terminating(&self) -> bool {
        self.attrs.is_terminating()
    }

    /// The protobuf envelope of the object, if its kind has one.
    pub fn protobuf(&self) -> Option<&Bytes> {
        self.proto.get_or_init(|| protobuf::encode(&self.value()).ok().map(Bytes::from)).as_ref()
    }
}

/// A change as every watcher of the resource receives it.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: u64,
    /// The object after the change; for a delete, the last state with the delete's revision.
    pub object: Arc<Cached>,
    /// The object before the change (`None` for a create).
    pub prev: Option<Arc<Cached>>,
    pub deleted: bool,
}

impl CachedEvent {
    /// The event a watcher with these selectors sees: its type and object, or none.
    pub fn for_watcher(
        &self,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Option<&'static str> {
        let all = labels.is_empty() && fields.is_empty();
        let is = |c: &Cached| all || c.matches(labels, fields);
        if self.deleted {
            return is(&self.object).then_some("DELETED");
        }
        let was = self.prev.as_deref().is_some_and(is);
        match (was, is(&self.object)) {
            (false, true) => Some("ADDED"),
            (true, true) => Some("MODIFIED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        }
    }
}

/// What the broadcast channel carries.
#[derive(Debug, Clone)]
pub enum Message {
    Event(Arc<CachedEvent>),
    /// Every event up to this revision has been sent: a bookmark.
    Progress(u64),
}

struct Inner {
    objects: BTreeMap<String, Arc<Cached>>,
    /// The state above is the one at this revision.
    revision: u64,
    /// Recent events, oldest first; every event after `history_from` is here.
    history: VecDeque<Arc<CachedEvent>>,
    history_from: u64,
    /// `None` until the first list arrived (and while the cache is being rebuilt).
    tx: Option<broadcast::Sender<Message>>,
}

/// The cache of one resource.
pub struct Cache {
    pub resource: ResourceInfo,
    prefix: String,
    /// The name the resource's selectable fields go by (`selectors::fields_key`), worked
    /// out once rather than per event.
    fields_key: &'static str,
    config: CacheConfig,
    inner: Mutex<Inner>,
    /// The revision the cache has reached, for readers waiting on a newer one.
    reached: tokio::sync::watch::Sender<u64>,
    /// Counts changes of the cache's objects (not progress notifications): whoever derives
    /// state from the objects (the RBAC index) rebuilds when it moves.
    generation: std::sync::atomic::AtomicU64,
}

/// What a watcher starts from: the objects to send first (a snapshot at `revision`, or the
/// events after the watcher's resourceVersion) and the channel of everything after.
pub struct Subscription {
    pub initial: Vec<Arc<Cached>>,
    pub replay: Vec<Arc<CachedEvent>>,
    pub revision: u64,
    pub rx: broadcast::Receiver<Message>,
}

/// Where a watcher starts.
pub enum Start {
    /// The current state as ADDED events (the caller has made sure the cache reached the
    /// revision it needs), then what follows.
    Snapshot,
    /// Every change after this revision.
    After(u64),
    /// Every change from now on.
    Now,
}

impl Cache {
    /// An empty cache, not ready until [`Cache::run`] has listed the resource.
    fn new(resource: ResourceInfo, config: CacheConfig) -> Cache {
        Cache {
            prefix: list_prefix(&resource, None),
            fields_key: crate::selectors::fields_key(&resource),
            resource,
            config,
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                revision: 0,
                history: VecDeque::new(),
                history_from: 0,
                tx: None,
            }),
            reached: tokio::sync::watch::Sender::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update under the lock is applied whole before anything can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the cache holds the resource (its first list has arrived).
    pub fn is_ready(&self) -> bool {
        *self.reached.borrow() > 0
    }

    /// A number that changes whenever the cache's objects change (0 until it is ready).
    pub fn generation(&self) -> u64 {
        if !self.is_ready() {
            return 0;
        }
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A receiver that sees each revision the cache reaches (whoever derives state from the
    /// objects waits on it, then compares [`Cache::generation`]).
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reached.subscribe()
    }

    /// Every object of the resource, decoded, with its key and revision (none while the
    /// cache is not ready): for the few derived states that read all of a small resource.
    pub fn decoded(&self) -> Vec<(String, u64, Value)> {
        self.snapshot(&self.prefix, &LabelSelector::default(), &FieldSelector::default())
            .map(|(items, _)| {
                items.iter().map(|c| (c.key.clone(), c.revision, c.value())).collect()
            })
            .unwrap_or_default()
    }

    /// The object at `key` as the cache has it (`None` also while the cache is not ready).
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects under `prefix` at the cache's revision, matching the selectors.
    pub fn snapshot(
        &self,
        prefix: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Option<(Vec<Arc<Cached>>, u64)> {
        let inner = self.lock();
        inner.tx.as_ref()?;
        Some((matching(&inner.objects, prefix, labels, fields), inner.revision))
    }

    /// A watcher's start, consistent with the channel it then follows: `None` when the
    /// cache cannot serve it (not built yet, or the resume point is older than its window).
    pub fn subscribe(
        &self,
        prefix: &str,
        start: Start,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Option<Subscription> {
        let inner = self.lock();
        let rx = inner.tx.as_ref()?.subscribe();
        match start {
            Start::Snapshot => Some(Subscription {
                initial: matching(&inner.objects, prefix, labels, fields),
                replay: Vec::new(),
                revision: inner.revision,
                rx,
            }),
            Start::Now => Some(Subscription {
                initial: Vec::new(),
                replay: Vec::new(),
                revision: inner.revision,
                rx,
            }),
            Start::After(after) => {
                if after < inner.history_from || after > inner.revision {
                    return None;
                }
                let replay = inner
                    .history
                    .iter()
                    .filter(|e| e.revision > after && e.object.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Some(Subscription { initial: Vec::new(), replay, revision: inner.revision, rx })
            }
        }
    }

    fn apply(&self, event: WatchEvent) {
        let mut inner = self.lock();
        let kind = self.fields_key;
        let message = match event {
            WatchEvent::Put { kv, .. } => {
                let Some(object) =
                    Cached::from_stored(kind, kv.key.clone(), kv.mod_revision, &kv.value)
                else {
                    tracing::warn!(key = %kv.key, "watch cache: skipping an undecodable object");
                    return;
                };
                let object = Arc::new(object);
                let prev = inner.objects.insert(kv.key, object.clone());
                inner.revision = inner.revision.max(object.revision);
                Message::Event(Arc::new(CachedEvent {
                    revision: object.revision,
                    object,
                    prev,
                    deleted: false,
                }))
            }
            WatchEvent::Delete { key, revision, prev } => {
                let last = inner.objects.remove(&key);
                inner.revision = inner.revision.max(revision);
                let object = match Cached::from_stored(kind, key.clone(), revision, &prev.value) {
                    Some(object) => object,
                    None => {
                        let obj = last.as_ref().map(|c| c.value()).unwrap_or(Value::Null);
                        Cached::new(kind, key, revision, obj)
                    }
                };
                let object = Arc::new(object);
                Message::Event(Arc::new(CachedEvent {
                    revision,
                    object,
                    prev: last,
                    deleted: true,
                }))
            }
            WatchEvent::Progress { revision } => {
                inner.revision = inner.revision.max(revision);
                Message::Progress(inner.revision)
            }
        };
        if let Message::Event(ev) = &message {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            if inner.history.len() >= self.config.history.max(1)
                && let Some(old) = inner.history.pop_front()
            {
                inner.history_from = old.revision;
            }
            inner.history.push_back(ev.clone());
        }
        if let Some(tx) = &inner.tx {
            // No receivers is fine: nobody watches right now.
            let _ = tx.send(message);
        }
        let revision = inner.revision;
        drop(inner);
        self.reached.send_replace(revision);
    }

    /// Replace the whole state with a fresh list; watchers of the old state are ended (their
    /// channel closes), as they may have missed events.
    fn reset(&self, objects: BTreeMap<String, Arc<Cached>>, revision: u64) {
        let mut inner = self.lock();
        inner.objects = objects;
        inner.revision = revision;
        inner.history.clear();
        inner.history_from = revision;
        inner.tx = Some(broadcast::channel(self.config.watcher_window.max(1)).0);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        drop(inner);
        self.reached.send_replace(revision);
    }

    fn invalidate(&self) {
        self.lock().tx = None;
        self.reached.send_replace(0);
    }

    /// Keep the cache fed: list, then follow the store's watch; on any error, start over.
    async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow(&store).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(resource = self.resource.plural, error = %e, "watch cache: rebuilding");
                    self.invalidate();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn follow(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        let listed = store.list(&self.prefix).await?;
        let kind = self.fields_key;
        let mut objects = BTreeMap::new();
        for kv in listed.items {
            let Some(object) =
                Cached::from_stored(kind, kv.key.clone(), kv.mod_revision, &kv.value)
            else {
                continue;
            };
            objects.insert(kv.key, Arc::new(object));
        }
        let mut events = store.watch(&self.prefix, listed.revision).await?;
        self.reset(objects, listed.revision);
        while let Some(event) = events.next().await {
            self.apply(event?);
        }
        Err(StoreError::Unavailable("the store's watch ended".into()))
    }
}

fn matching(
    objects: &BTreeMap<String, Arc<Cached>>,
    prefix: &str,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Vec<Arc<Cached>> {
    let all = labels.is_empty() && fields.is_empty();
    objects
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(_, c)| all || c.matches(labels, fields))
        .map(|(_, c)| c.clone())
        .collect()
}

/// The caches of every resource, made on first use.
pub struct WatchCaches {
    store: Arc<dyn Store>,
    /// For caches made from now on.
    config: Mutex<CacheConfig>,
    caches: Mutex<HashMap<String, Arc<Cache>>>,
}

impl WatchCaches {
    pub fn new(store: Arc<dyn Store>, config: CacheConfig) -> Self {
        WatchCaches { store, config: Mutex::new(config), caches: Mutex::new(HashMap::new()) }
    }

    /// The window sizes of caches made from now on (set before serving).
    pub fn set_config(&self, config: CacheConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The cache of `resource`, started (in the background) if this is its first use.
    pub fn get(&self, resource: &ResourceInfo) -> Arc<Cache> {
        let prefix = list_prefix(resource, None);
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = caches.get(&prefix) {
            return c.clone();
        }
        let mut config = *self.config.lock().unwrap_or_else(|p| p.into_inner());
        if resource.is_custom() {
            // A cluster may serve a thousand custom kinds, most of them quiet: their windows
            // (allocated whole) stay small, as kube-apiserver's default cache size does.
            config.history = config.history.min(CUSTOM_WINDOW);
            config.watcher_window = config.watcher_window.min(CUSTOM_WINDOW);
        }
        let cache = Arc::new(Cache::new(resource.clone(), config));
        tokio::spawn(cache.clone().run(self.store.clone()));
        caches.insert(prefix, cache.clone());
        cache
    }

    /// Wait (at most [`WAIT_FOR_REVISION`]) until `cache` has reached `revision`, asking the
    /// store's watches to report progress meanwhile; false when it did not.
    pub async fn reach(&self, cache: &Cache, revision: u64) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REVISION;
        let mut rx = cache.reached.subscribe();
        loop {
            let reached = *rx.borrow_and_update();
            if reached > 0 && reached >= revision {
                return true;
            }
            if reached > 0 {
                self.store.request_watch_progress();
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // A request the feeder missed while busy is repeated after a short while.
            let step = (deadline - now).min(Duration::from_millis(20));
            if let Ok(Err(_)) = tokio::time::timeout(step, rx.changed()).await {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selectors::supported_fields;
    use serde_json::json;
    use skiff_api::Registry;
    use skiff_store::KeyValue;

    fn pods() -> ResourceInfo {
        Registry::builtin().by_plural("", "pods").expect("pods").clone()
    }

    fn cache(history: usize) -> Cache {
        Cache::new(pods(), CacheConfig { history, watcher_window: 16 })
    }

    fn pod_kv(ns: &str, name: &str, node: &str, app: &str, rev: u64) -> KeyValue {
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}});
        KeyValue {
            key: format!("/registry/pods/{ns}/{name}"),
            value: serde_json::to_vec(&obj).expect("json"),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    fn put(c: &Cache, kv: KeyValue) {
        c.apply(WatchEvent::Put { kv, prev: None });
    }

    fn none() -> (LabelSelector, FieldSelector) {
        (LabelSelector::default(), FieldSelector::default())
    }

    #[test]
    fn objects_should_be_served_with_their_resource_version_and_filtered_on_attributes() {
        let c = cache(8);
        c.reset(BTreeMap::new(), 1);
        put(&c, pod_kv("a", "p1", "n1", "web", 2));
        put(&c, pod_kv("a", "p2", "n2", "db", 3));
        put(&c, pod_kv("b", "p3", "n1", "web", 4));
        let (l, f) = none();
        let (all, rev) = c.snapshot("/registry/pods/a/", &l, &f).expect("ready");
        assert_eq!(rev, 4);
        assert_eq!(
            all.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["/registry/pods/a/p1", "/registry/pods/a/p2"]
        );
        let v: Value = serde_json::from_slice(&all[0].json).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "2");
        let on_n1 = FieldSelector::parse("spec.nodeName=n1", supported_fields("Pod")).expect("f");
        let web = LabelSelector::parse("app=web").expect("l");
        let (hits, _) = c.snapshot("/registry/pods/", &web, &on_n1).expect("ready");
        assert_eq!(hits.len(), 2);
        let db = LabelSelector::parse("app=db").expect("l");
        assert!(c.snapshot("/registry/pods/", &db, &on_n1).expect("ready").0.is_empty());
        assert!(all[0].protobuf().is_some_and(|b| b.starts_with(protobuf::MAGIC)));
    }

    #[test]
    fn a_label_change_should_be_deleted_for_a_watcher_it_leaves_and_added_for_one_it_joins() {
        let c = cache(8);
        c.reset(BTreeMap::new(), 1);
        let mut sub_web = c
            .subscribe(
                "/registry/pods/",
                Start::After(1),
                &LabelSelector::default(),
                &Default::default(),
            )
            .expect("sub");
        put(&c, pod_kv("a", "p", "n", "web", 2));
        put(&c, pod_kv("a", "p", "n", "db", 3));
        c.apply(WatchEvent::Delete {
            key: "/registry/pods/a/p".into(),
            revision: 4,
            prev: pod_kv("a", "p", "n", "db", 3),
        });
        let web = LabelSelector::parse("app=web").expect("l");
        let db = LabelSelector::parse("app=db").expect("l");
        let f = FieldSelector::default();
        let mut seen = Vec::new();
        while let Ok(Message::Event(ev)) = sub_web.rx.try_recv() {
            seen.push((ev.for_watcher(&web, &f), ev.for_watcher(&db, &f), ev.revision));
        }
        assert_eq!(
            seen,
            [
                (Some("ADDED"), None, 2),
                (Some("DELETED"), Some("ADDED"), 3),
                (None, Some("DELETED"), 4),
            ]
        );
    }

    #[test]
    fn a_resume_should_replay_the_window_and_refuse_what_fell_out_of_it() {
        let c = cache(3);
        c.reset(BTreeMap::new(), 10);
        for i in 0..5 {
            put(&c, pod_kv("a", &format!("p{i}"), "n", "web", 11 + i));
        }
        let (l, f) = none();
        // The window holds revisions 13..=15: resuming after 12 or later works.
        let sub = c.subscribe("/registry/pods/", Start::After(12), &l, &f).expect("in window");
        assert_eq!(sub.replay.iter().map(|e| e.revision).collect::<Vec<_>>(), [13, 14, 15]);
        assert!(c.subscribe("/registry/pods/", Start::After(11), &l, &f).is_none());
        assert!(c.subscribe("/registry/pods/", Start::After(16), &l, &f).is_none());
        let sub = c.subscribe("/registry/pods/a/p4", Start::After(12), &l, &f).expect("one key");
        assert_eq!(sub.replay.len(), 1);
    }

    #[test]
    fn a_watcher_that_does_not_read_should_lag_within_a_bounded_window() {
        let c = cache(4);
        c.reset(BTreeMap::new(), 1);
        let (l, f) = none();
        let mut slow = c.subscribe("/registry/pods/", Start::After(1), &l, &f).expect("sub");
        for i in 0..100 {
            put(&c, pod_kv("a", &format!("p{i}"), "n", "web", 2 + i));
        }
        assert!(matches!(slow.rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
        assert!(c.lock().history.len() <= 4);
    }
}
