//! Shared informers: one watch and one cache per resource type for every consumer in a
//! process (client-go's `SharedInformerFactory`). A controller asks the factory for the
//! informer of a type, registers its change handlers, and reads the cache and its indexes;
//! the factory starts each watch once, and a handler registered after the start is first
//! told every cached object, so none is missed. With the controller manager's dozen
//! controllers this is one pod watch and one pod cache instead of one each.
//!
//! The cache is kube-runtime's reflector [`Store`]; on top of it an informer keeps named
//! indexes (pods by owner, node and namespace, see [`pod_indexes`]) and tells its handlers
//! each change with the object as it was before (what expectations need).

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

/// A change to one cached object, told after the cache holds it.
pub enum Change<'a, K> {
    /// Added or modified; `old` is the cached object before, if there was one.
    Upsert { old: Option<Arc<K>>, new: &'a K },
    /// Deleted; `old` is the cached object before, if there was one.
    Delete { old: Option<Arc<K>>, gone: &'a K },
    /// A (re)list finished: every cached object may have changed.
    Resynced,
}

impl<K> Change<'_, K> {
    /// The object the change is about (`None` for a resync).
    pub fn object(&self) -> Option<&K> {
        match self {
            Change::Upsert { new, .. } => Some(new),
            Change::Delete { gone, .. } => Some(gone),
            Change::Resynced => None,
        }
    }
}

type Handler<K> = Box<dyn FnMut(&Change<'_, K>) + Send>;
/// Handlers, each with the scope it was registered in (0: the informer's whole life).
type Handlers<K> = Arc<Mutex<Vec<(u64, Handler<K>)>>>;
type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// The informer's indexes over the store.
struct State<K: Resource<DynamicType = ()> + 'static> {
    index_fns: Vec<(&'static str, IndexFn<K>)>,
    /// (index, value) → objects.
    index: HashMap<(&'static str, String), HashSet<ObjectRef<K>>>,
    /// object → the (index, value) pairs it is filed under.
    filed: HashMap<ObjectRef<K>, Vec<(&'static str, String)>>,
}

impl<K: Resource<DynamicType = ()> + 'static> State<K> {
    fn file(&mut self, obj: &K) {
        let r = ObjectRef::from_obj(obj);
        self.unfile(&r);
        let keys: Vec<(&'static str, String)> = self
            .index_fns
            .iter()
            .flat_map(|(name, f)| f(obj).into_iter().map(move |v| (*name, v)))
            .collect();
        for k in &keys {
            self.index.entry(k.clone()).or_default().insert(r.clone());
        }
        if !keys.is_empty() {
            self.filed.insert(r, keys);
        }
    }

    fn unfile(&mut self, r: &ObjectRef<K>) {
        for k in self.filed.remove(r).unwrap_or_default() {
            if let Some(set) = self.index.get_mut(&k) {
                set.remove(r);
                if set.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
    }
}

/// The shared cache of one resource type. Cheap to clone; every clone is the same informer.
pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    state: Arc<Mutex<State<K>>>,
    /// Held while handlers run (not the index lock: a handler may read the indexes).
    handlers: Handlers<K>,
    /// The scope `on_change` registers handlers in (see [`Informer::scoped`]).
    scope: u64,
    /// True once the first list is in the store. (Not the reflector store's own readiness:
    /// it wakes only the last of several tasks waiting at once, and a shared informer has
    /// many waiters.)
    ready: Arc<tokio::sync::watch::Sender<bool>>,
    /// True from a (re)list's start until it is in the store (the store still shows the
    /// objects from before it meanwhile).
    listing: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            state: self.state.clone(),
            handlers: self.handlers.clone(),
            ready: self.ready.clone(),
            listing: self.listing.clone(),
            scope: self.scope,
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> std::fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer").field("kind", &K::kind(&())).field("scope", &self.scope).finish()
    }
}

/// Removes the handlers registered in one scope of an informer when dropped
/// (see [`Informer::scoped`]).
pub struct Scope {
    remove: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(remove) = self.remove.take() {
            remove();
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn new() -> (Self, Writer<K>) {
        let (store, writer) = reflector::store();
        let state = State { index_fns: Vec::new(), index: HashMap::new(), filed: HashMap::new() };
        let handlers = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(tokio::sync::watch::Sender::new(false));
        let listing = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(state));
        (Self { store, state, handlers, ready, listing, scope: 0 }, writer)
    }

    /// An informer fed by hand instead of by a watch, for the unit tests of its consumers.
    pub fn fed() -> (Self, Feed<K>) {
        let (informer, writer) = Self::new();
        (informer.clone(), Feed { informer, writer })
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache (read-only).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Call `handler` with every object already cached (as an `Upsert` without `old`), then
    /// with every change from now on, so a handler registered late misses nothing. Handlers
    /// run on the watch's task, in order, one at a time: they should only queue work (a key
    /// on a work queue). A handler may read this informer's store and indexes.
    ///
    /// Answers whether that replay was a whole, current list (the store held a finished
    /// list); otherwise the handler is told `Resynced` once the list is in.
    pub fn on_change(&self, handler: impl FnMut(&Change<'_, K>) + Send + 'static) -> bool {
        let mut handler: Handler<K> = Box::new(handler);
        // Holding the handlers' lock: no change is told between the replay and the push, and
        // a list that finishes after the check below is told to this handler as `Resynced`.
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        let complete = self.is_ready() && !self.listing.load(Ordering::SeqCst);
        for obj in self.store.state() {
            handler(&Change::Upsert { old: None, new: &obj });
        }
        handlers.push((self.scope, handler));
        complete
    }

    /// The same informer (same watch, cache and indexes), whose `on_change` handlers belong
    /// to a new scope: dropping the returned [`Scope`] removes them, and the watch goes on. A
    /// consumer that comes and goes (a controller manager per leadership term) registers
    /// through a scoped clone of an informer that outlives it.
    pub fn scoped(&self) -> (Self, Scope) {
        static NEXT_SCOPE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let scope = NEXT_SCOPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handlers = self.handlers.clone();
        let remove = move || {
            handlers.lock().unwrap_or_else(|e| e.into_inner()).retain(|(s, _)| *s != scope);
        };
        (Self { scope, ..self.clone() }, Scope { remove: Some(Box::new(remove)) })
    }

    /// Whether the first list is in the cache.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Tell every handler. A handler that panics is logged and kept: the watch, and the other
    /// consumers of a shared informer, go on.
    fn tell(&self, change: &Change<'_, K>) {
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, h) in handlers.iter_mut() {
            let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(change)));
            if told.is_err() {
                tracing::error!(kind = %K::kind(&()), "an informer handler panicked");
            }
        }
    }

    /// File every object under the values `f` gives it in the index `name` (a no-op if an
    /// index of that name exists). Objects already cached are filed at once.
    pub fn add_index(
        &self,
        name: &'static str,
        f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut state = self.lock();
        if state.index_fns.iter().any(|(n, _)| *n == name) {
            return;
        }
        state.index_fns.push((name, Box::new(f)));
        for obj in self.store.state() {
            state.file(&obj);
        }
    }

    /// The cached objects filed under `value` in the index `name`.
    pub fn by_index(&self, name: &'static str, value: &str) -> Vec<Arc<K>> {
        let state = self.lock();
        let Some(refs) = state.index.get(&(name, value.to_string())) else {
            return Vec::new();
        };
        refs.iter().filter_map(|r| self.store.get(r)).collect()
    }

    /// Wait until the first list has filled the cache.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // An error means the informer is gone; nothing more will come.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The watch loop: apply each event to the cache, re-file it, tell the handlers.
    async fn run(self, api: Api<K>, config: watcher::Config, mut writer: Writer<K>) {
        // Like kube-controller-manager's informers, keep no managedFields: nothing here reads
        // them, an update without them leaves the server's own in place, and they are the
        // largest part of a cached pod.
        let mut events = watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => self.process(&mut writer, &ev),
                Err(e) => tracing::debug!(error = %e, "watch failed; the watcher retries"),
            }
        }
    }

    /// Apply one watch event to the cache, re-file it, tell the handlers.
    fn process(&self, writer: &mut Writer<K>, ev: &watcher::Event<K>) {
        let old = match ev {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                self.store.get(&ObjectRef::from_obj(o))
            }
            _ => None,
        };
        // A handler registered between these two steps is replayed the object and then
        // told the change too: told twice, never missed.
        writer.apply_watcher_event(ev);
        match ev {
            watcher::Event::Apply(new) => {
                self.lock().file(new);
                self.tell(&Change::Upsert { old, new });
            }
            watcher::Event::Delete(gone) => {
                self.lock().unfile(&ObjectRef::from_obj(gone));
                self.tell(&Change::Delete { old, gone });
            }
            watcher::Event::InitApply(obj) => self.lock().file(obj),
            watcher::Event::InitDone => {
                self.listing.store(false, Ordering::SeqCst);
                tracing::debug!(kind = %K::kind(&()), objects = self.store.len(), "informer synced");
                // Objects deleted while the watch was down are gone from the store.
                let mut state = self.lock();
                let stale: Vec<ObjectRef<K>> =
                    state.filed.keys().filter(|r| self.store.get(r).is_none()).cloned().collect();
                for r in &stale {
                    state.unfile(r);
                }
                drop(state);
                self.ready.send_replace(true);
                self.tell(&Change::Resynced);
            }
            watcher::Event::Init => self.listing.store(true, Ordering::SeqCst),
        }
    }
}

/// The hand that feeds an [`Informer::fed`] informer: each event is handled as if its watch
/// had delivered it.
pub struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    informer: Informer<K>,
    writer: Writer<K>,
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn event(&mut self, ev: watcher::Event<K>) {
        self.informer.process(&mut self.writer, &ev);
    }
}

/// Index names of [`pod_indexes`].
pub const BY_OWNER_UID: &str = "owner-uid";
pub const BY_NODE: &str = "node";
pub const BY_NAMESPACE: &str = "namespace";
/// Pods without a controller, by namespace (what controllers may adopt).
pub const ORPHANS_BY_NAMESPACE: &str = "orphans-by-namespace";

/// The pod informer's indexes: by the uid of every owner, by node, by namespace, and the
/// namespace's pods that no controller owns.
pub fn pod_indexes(pods: &Informer<Pod>) {
    pods.add_index(ORPHANS_BY_NAMESPACE, |p: &Pod| {
        let orphan = skiff_helpers::pods::controller_of(&p.metadata).is_none();
        p.metadata.namespace.clone().filter(|_| orphan).into_iter().collect()
    });
    pods.add_index(BY_OWNER_UID, |p: &Pod| {
        p.metadata.owner_references.iter().flatten().map(|o| o.uid.clone()).collect()
    });
    pods.add_index(BY_NODE, |p: &Pod| {
        p.spec.as_ref().and_then(|s| s.node_name.clone()).into_iter().collect()
    });
    pods.add_index(BY_NAMESPACE, |p: &Pod| p.metadata.namespace.clone().into_iter().collect());
}

/// Give `informer` the [`pod_indexes`] if it is the pod informer.
fn with_pod_indexes<K: Resource<DynamicType = ()> + 'static>(informer: &Informer<K>) {
    if let Some(pods) = (informer as &dyn Any).downcast_ref::<Informer<Pod>>() {
        pod_indexes(pods);
    }
}

struct Entry {
    informer: Box<dyn Any + Send + Sync>,
}

/// One informer per resource type for a process (or, in the controller manager, for one
/// leadership term). An informer's watch starts when it is first asked for and ends when the
/// factory is dropped.
pub struct SharedInformers {
    client: kube::Client,
    entries: Mutex<HashMap<TypeId, Entry>>,
    tasks: Mutex<JoinSet<()>>,
    /// Handlers registered on adopted informers, removed with this factory.
    scopes: Mutex<Vec<Scope>>,
}

impl SharedInformers {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            entries: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            scopes: Mutex::new(Vec::new()),
        }
    }

    /// The pod informer (with [`pod_indexes`]).
    pub fn pods(&self) -> Informer<Pod> {
        self.get::<Pod>()
    }

    /// Hand out `informer`, which is watched elsewhere (by a factory that lives longer, e.g.
    /// one the whole process shares), as this factory's informer of `K` instead of starting
    /// a watch of its own. Handlers registered through this factory are removed when it is
    /// dropped; the watch and the cache go on.
    pub fn adopt<K>(&self, informer: &Informer<K>)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (scoped, scope) = informer.scoped();
        with_pod_indexes(&scoped);
        self.scopes.lock().unwrap_or_else(|e| e.into_inner()).push(scope);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(TypeId::of::<K>(), Entry { informer: Box::new(scoped) });
    }

    /// The informer of every `K` in the cluster, watching from the first call on (which must
    /// be inside a tokio runtime). Pods come with [`pod_indexes`].
    pub fn get<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get(&TypeId::of::<K>()) {
            if let Some(i) = e.informer.downcast_ref::<Informer<K>>() {
                return i.clone();
            }
        }
        let (informer, writer) = Informer::<K>::new();
        with_pod_indexes(&informer);
        let api = Api::<K>::all(self.client.clone());
        let run = informer.clone();
        let watch = run.run(api, watcher::Config::default(), writer);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).spawn(watch);
        entries.insert(TypeId::of::<K>(), Entry { informer: Box::new(informer.clone()) });
        informer
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn pod(name: &str, node: &str, owner: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
            status: None,
        }
    }

    /// Feed watch events the way the watch loop does (without a server).
    fn apply(informer: &Informer<Pod>, writer: &mut Writer<Pod>, ev: watcher::Event<Pod>) {
        writer.apply_watcher_event(&ev);
        let mut state = informer.lock();
        match &ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => state.file(p),
            watcher::Event::Delete(p) => state.unfile(&ObjectRef::from_obj(p)),
            _ => {}
        }
    }

    #[test]
    fn pod_indexes_should_follow_changes() {
        let (informer, mut writer) = Informer::<Pod>::new();
        pod_indexes(&informer);
        apply(&informer, &mut writer, watcher::Event::Apply(pod("a", "n1", "rs1")));
        apply(&informer, &mut writer, watcher::Event::Apply(pod("b", "n1", "rs2")));
        let names = |v: Vec<Arc<Pod>>| {
            let mut n: Vec<String> = v.iter().filter_map(|p| p.metadata.name.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(informer.by_index(BY_NODE, "n1")), ["a", "b"]);
        assert_eq!(names(informer.by_index(BY_OWNER_UID, "rs1")), ["a"]);
        assert_eq!(names(informer.by_index(BY_NAMESPACE, "ns")), ["a", "b"]);
        // Moved to another node and owner: filed anew, not twice.
        apply(&informer, &mut writer, watcher::Event::Apply(pod("a", "n2", "rs2")));
        assert_eq!(names(informer.by_index(BY_NODE, "n1")), ["b"]);
        assert_eq!(names(informer.by_index(BY_NODE, "n2")), ["a"]);
        assert!(informer.by_index(BY_OWNER_UID, "rs1").is_empty());
        apply(&informer, &mut writer, watcher::Event::Delete(pod("b", "n1", "rs2")));
        assert!(informer.by_index(BY_NODE, "n1").is_empty());
        assert_eq!(names(informer.by_index(BY_OWNER_UID, "rs2")), ["a"]);
    }

    /// The names told to a handler, as `+name` (upsert), `-name` (delete), `resync`.
    fn recorder(informer: &Informer<Pod>) -> Arc<Mutex<Vec<String>>> {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        informer.on_change(move |c| {
            let entry = match c {
                Change::Upsert { new, .. } => {
                    format!("+{}", new.metadata.name.as_deref().unwrap_or(""))
                }
                Change::Delete { gone, .. } => {
                    format!("-{}", gone.metadata.name.as_deref().unwrap_or(""))
                }
                Change::Resynced => "resync".into(),
            };
            log.lock().unwrap().push(entry);
        });
        seen
    }

    #[test]
    fn scoped_handlers_should_end_with_their_scope_while_the_informer_goes_on() {
        let (informer, mut writer) = Informer::<Pod>::new();
        pod_indexes(&informer);
        let forever = recorder(&informer);
        informer.process(&mut writer, &watcher::Event::Apply(pod("a", "n1", "rs1")));
        let (scoped, scope) = informer.scoped();
        // Registered late: told what is cached, then every change.
        let term = recorder(&scoped);
        informer.process(&mut writer, &watcher::Event::Apply(pod("b", "n1", "rs1")));
        drop(scope);
        informer.process(&mut writer, &watcher::Event::Delete(pod("a", "n1", "rs1")));
        informer.process(&mut writer, &watcher::Event::Init);
        informer.process(&mut writer, &watcher::Event::InitApply(pod("b", "n1", "rs1")));
        informer.process(&mut writer, &watcher::Event::InitDone);
        assert_eq!(*term.lock().unwrap(), ["+a", "+b"]);
        assert_eq!(*forever.lock().unwrap(), ["+a", "+b", "-a", "resync"]);
        assert!(informer.is_ready());
        // The scoped clone reads the same cache.
        assert_eq!(scoped.store().len(), 1);
        assert_eq!(scoped.by_index(BY_NODE, "n1").len(), 1);
    }

    #[test]
    fn on_change_should_say_whether_its_replay_was_a_whole_current_list() {
        let (informer, mut writer) = Informer::<Pod>::new();
        assert!(!informer.on_change(|_| {}), "nothing listed yet");
        informer.process(&mut writer, &watcher::Event::Init);
        informer.process(&mut writer, &watcher::Event::InitApply(pod("a", "n1", "rs1")));
        informer.process(&mut writer, &watcher::Event::InitDone);
        assert!(informer.on_change(|_| {}), "the first list is in");
        // A relist after a watch failure: the store still shows the old list until it ends.
        informer.process(&mut writer, &watcher::Event::Init);
        informer.process(&mut writer, &watcher::Event::InitApply(pod("b", "n1", "rs1")));
        let resynced = Arc::new(Mutex::new(0));
        let count = resynced.clone();
        let complete = informer.on_change(move |c| {
            if matches!(c, Change::Resynced) {
                *count.lock().unwrap() += 1;
            }
        });
        assert!(!complete, "a replay during a relist is not current");
        informer.process(&mut writer, &watcher::Event::InitDone);
        assert_eq!(*resynced.lock().unwrap(), 1, "told once the relist is in");
        assert!(informer.on_change(|_| {}));
    }

    #[test]
    fn a_panicking_handler_should_not_stop_the_others() {
        let (informer, mut writer) = Informer::<Pod>::new();
        informer.on_change(|c| {
            if matches!(c, Change::Upsert { .. }) {
                panic!("a handler's bug");
            }
        });
        let seen = recorder(&informer);
        informer.process(&mut writer, &watcher::Event::Apply(pod("a", "n1", "rs1")));
        informer.process(&mut writer, &watcher::Event::Apply(pod("b", "n1", "rs1")));
        assert_eq!(*seen.lock().unwrap(), ["+a", "+b"]);
        assert_eq!(informer.store().len(), 2);
    }

    #[tokio::test]
    async fn adopted_informers_should_lose_their_handlers_with_the_factory() {
        // A client that reaches nothing: an adopted informer starts no watch of its own.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (shared, mut writer) = Informer::<Pod>::new();
        shared.process(&mut writer, &watcher::Event::Apply(pod("a", "n1", "rs1")));
        let factory = SharedInformers::new(client);
        factory.adopt(&shared);
        let pods = factory.get::<Pod>();
        assert_eq!(pods.by_index(BY_OWNER_UID, "rs1").len(), 1, "the pod indexes are there");
        let seen = recorder(&pods);
        shared.process(&mut writer, &watcher::Event::Apply(pod("b", "n2", "rs1")));
        drop(factory);
        shared.process(&mut writer, &watcher::Event::Apply(pod("c", "n2", "rs1")));
        assert_eq!(*seen.lock().unwrap(), ["+a", "+b"]);
        assert_eq!(shared.store().len(), 3);
        assert!(shared.handlers.lock().unwrap().is_empty());
    }

    #[test]
    fn add_index_should_file_objects_already_cached() {
        let (informer, mut writer) = Informer::<Pod>::new();
        apply(&informer, &mut writer, watcher::Event::Apply(pod("a", "n1", "rs1")));
        informer.add_index(BY_NODE, |p: &Pod| {
            p.spec.as_ref().and_then(|s| s.node_name.clone()).into_iter().collect()
        });
        assert_eq!(informer.by_index(BY_NODE, "n1").len(), 1);
    }
}
