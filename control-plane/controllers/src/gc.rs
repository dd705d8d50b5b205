//! The garbage collector: a graph of `ownerReferences` over every resource the API serves
//! (found through discovery, custom resources included as they appear), kept by metadata
//! watches, and three kinds of work on it, as Kubernetes' garbage collector does:
//!
//! - background deletion: an object whose owners are all gone is deleted (an owner missing
//!   from the graph is confirmed absent by a live GET with a uid check first);
//! - foreground deletion: an owner being deleted with the `foregroundDeletion` finalizer
//!   gets its dependents deleted (those that have dependents of their own in the foreground
//!   too), and loses the finalizer once no dependent with `blockOwnerDeletion` is left;
//! - orphaning: an owner being deleted with the `orphan` finalizer has its reference removed
//!   from every dependent, then loses the finalizer.
//!
//! The api server only turns a delete's propagation policy into those finalizers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::task::{AbortHandle, JoinSet};

use crate::{Context, Error};
use skiff_client_tools::workqueue::WorkQueue;

/// The finalizers the garbage collector acts on.
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

const WORKERS: usize = 8;
const REDISCOVERY: Duration = Duration::from_secs(30);
/// How soon a failed first discovery is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long the workers wait for the first listing of every resource before starting.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);

/// A resource the graph holds objects of.
#[derive(Debug)]
pub(crate) struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
}

/// One object of the graph: who it is, whom it names as owners, and its deletion state.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: Arc<Kind>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waits for its dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    fn owner(&self, uid: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|r| r.uid == uid)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// Look at an object: delete it if its owners are gone or deleting it in the
    /// foreground; for an owner deleting in the foreground, finish when it may.
    AttemptToDelete(String),
    /// Orphan the dependents of an owner carrying the `orphan` finalizer, then drop it.
    Orphan(String),
}

impl Work {
    /// The work queue's key for it.
    fn key(&self) -> String {
        match self {
            Work::AttemptToDelete(uid) => format!("delete/{uid}"),
            Work::Orphan(uid) => format!("orphan/{uid}"),
        }
    }

    fn from_key(key: &str) -> Option<Work> {
        match key.split_once('/')? {
            ("delete", uid) => Some(Work::AttemptToDelete(uid.into())),
            ("orphan", uid) => Some(Work::Orphan(uid.into())),
            _ => None,
        }
    }
}

/// The ownership graph: objects by uid, and the uids naming each uid as an owner (owners
/// not observed, or gone, included).
#[derive(Default)]
pub(crate) struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Record an added or changed object; answers the work it calls for.
    pub fn upsert(&mut self, node: Node) -> Vec<Work> {
        let mut work = Vec::new();
        let old = self.nodes.get(&node.uid);
        let was_deleting_dependents = old.is_some_and(Node::deleting_dependents);
        let old_owners: Vec<OwnerReference> = old.map(|o| o.owners.clone()).unwrap_or_default();
        for r in &old_owners {
            match node.owner(&r.uid) {
                None => {
                    if let Some(set) = self.dependents.get_mut(&r.uid) {
                        set.remove(&node.uid);
                        if set.is_empty() {
                            self.dependents.remove(&r.uid);
                        }
                    }
                    // An owner waiting for its dependents may be done now.
                    if self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents) {
                        work.push(Work::AttemptToDelete(r.uid.clone()));
                    }
                }
                Some(now) if now.block_owner_deletion != r.block_owner_deletion => {
                    if self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents) {
                        work.push(Work::AttemptToDelete(r.uid.clone()));
                    }
                }
                Some(_) => {}
            }
        }
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(node.uid.clone());
        }
        // An owner never seen, or one deleting its dependents: this object may have to go.
        if node.owners.iter().any(|r| self.nodes.get(&r.uid).is_none_or(Node::deleting_dependents))
        {
            work.push(Work::AttemptToDelete(node.uid.clone()));
        }
        if node.deleting_dependents() {
            if !was_deleting_dependents {
                for d in self.dependents.get(&node.uid).into_iter().flatten() {
                    work.push(Work::AttemptToDelete(d.clone()));
                }
            }
            work.push(Work::AttemptToDelete(node.uid.clone()));
        }
        if node.orphaning() {
            work.push(Work::Orphan(node.uid.clone()));
        }
        self.nodes.insert(node.uid.clone(), node);
        work
    }

    /// Forget a deleted object; answers the work it calls for (its dependents may have
    /// lost their last owner, its owners may be done waiting for it).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for r in &node.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
            if self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents) {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        for d in self.dependents.get(uid).into_iter().flatten() {
            work.push(Work::AttemptToDelete(d.clone()));
        }
        work
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The observed objects naming `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owner(uid).is_some())
            .collect()
    }

    /// The dependents that keep a foreground deletion of `uid` waiting: those whose
    /// reference to it has `blockOwnerDeletion: true`.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents_of(uid)
            .into_iter()
            .filter(|d| d.owner(uid).is_some_and(|r| r.block_owner_deletion == Some(true)))
            .collect()
    }

    /// Uids of the objects of `kind` (by group and kind).
    fn uids_of(&self, kind: &Kind) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.kind.ar.group == kind.ar.group && n.kind.ar.kind == kind.ar.kind)
            .map(|n| n.uid.clone())
            .collect()
    }
}

/// What an owner reference points at, as far as the collection of its dependent goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnerState {
    /// Exists and is not waiting for its dependents: the dependent stays.
    Solid,
    /// Absent (or another object under that name): the reference is dangling.
    Dangling,
    /// Being deleted in the foreground, waiting for its dependents to go.
    Waiting,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Keep,
    /// Keep the object (a solid owner remains) but drop the references to these owners.
    RemoveOwners(Vec<String>),
    Delete(Propagation),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What to do with `item` given the state of each of its owners (by uid), as Kubernetes'
/// garbage collector decides: any solid owner keeps it; otherwise it is deleted, in the
/// foreground when an owner waits for it and it has dependents of its own, else by the
/// policy its own finalizers ask for.
pub(crate) fn decide(
    item: &Node,
    owners: &[(String, OwnerState)],
    has_dependents: bool,
) -> Decision {
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    if solid {
        let gone: Vec<String> = owners
            .iter()
            .filter(|(_, s)| *s != OwnerState::Solid)
            .map(|(uid, _)| uid.clone())
            .collect();
        return if gone.is_empty() { Decision::Keep } else { Decision::RemoveOwners(gone) };
    }
    if owners.iter().any(|(_, s)| *s == OwnerState::Waiting) && has_dependents {
        return Decision::Delete(Propagation::Foreground);
    }
    if item.has_finalizer(ORPHAN) {
        Decision::Delete(Propagation::Orphan)
    } else if item.has_finalizer(FOREGROUND) {
        Decision::Delete(Propagation::Foreground)
    } else {
        Decision::Delete(Propagation::Background)
    }
}

/// Resources the collector does not track (as Kubernetes ignores events).
fn ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

type GroupKind = (String, String);

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    queue: WorkQueue,
    /// Watched resources by (group, kind), with their watch's handle.
    kinds: Mutex<HashMap<GroupKind, (Arc<Kind>, AbortHandle)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

impl Collector {
    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.queue.add(&w.key());
        }
    }

    fn observe(&self, kind: &Arc<Kind>, obj: PartialObjectMeta<DynamicObject>) {
        let m = obj.metadata;
        let Some(uid) = m.uid else { return };
        let node = Node {
            kind: kind.clone(),
            namespace: m.namespace,
            name: m.name.unwrap_or_default(),
            uid,
            owners: m.owner_references.unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.unwrap_or_default(),
        };
        let work = lock(&self.graph).upsert(node);
        self.enqueue(work);
    }

    fn forget(&self, uid: &str) {
        let work = lock(&self.graph).remove(uid);
        self.enqueue(work);
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            None => Api::all_with(self.client.clone(), &kind.ar),
        }
    }

    fn resolve(&self, api_version: &str, kind: &str) -> Option<Arc<Kind>> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        lock(&self.kinds).get(&(group.to_string(), kind.to_string())).map(|(k, _)| k.clone())
    }

    /// Watch one resource into the graph for as long as it is served. `synced` fires on
    /// its first complete listing.
    async fn watch(
        self: Arc<Self>,
        kind: Arc<Kind>,
        mut synced: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(self.client.clone(), &kind.ar);
        let mut events =
            watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(obj)) => {
                    listed.extend(obj.metadata.uid.clone());
                    self.observe(&kind, obj);
                }
                Ok(Event::InitDone) => {
                    // What vanished while the watch was down was deleted.
                    let known = lock(&self.graph).uids_of(&kind);
                    for uid in known.iter().filter(|u| !listed.contains(*u)) {
                        self.forget(uid);
                    }
                    listed.clear();
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Apply(obj)) => self.observe(&kind, obj),
                Ok(Event::Delete(obj)) => {
                    if let Some(uid) = &obj.metadata.uid {
                        self.forget(uid);
                    }
                }
                Err(e) => {
                    tracing::debug!(resource = %kind.ar.plural, error = %e, "garbage collector watch failed");
                }
            }
        }
    }

    /// Start watches for resources discovery shows and stop those it no longer shows.
    /// Answers the first-listing signals of the new watches.
    async fn discover(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<()>>, Error> {
        let discovery = Discovery::new(self.client.clone()).run_aggregated().await?;
        let mut seen = HashSet::new();
        let mut synced = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let ops = [verbs::LIST, verbs::WATCH, verbs::DELETE];
                if !ops.iter().all(|op| caps.supports_operation(op)) || ignored(&ar) {
                    continue;
                }
                let key = (ar.group.clone(), ar.kind.clone());
                seen.insert(key.clone());
                if lock(&self.kinds).contains_key(&key) {
                    continue;
                }
                let kind = Arc::new(Kind { ar, namespaced: caps.scope == Scope::Namespaced });
                let (tx, rx) = tokio::sync::oneshot::channel();
                let handle = tasks.spawn(self.clone().watch(kind.clone(), Some(tx)));
                lock(&self.kinds).insert(key, (kind, handle));
                synced.push(rx);
            }
        }
        let stale: Vec<Arc<Kind>> = {
            let mut kinds = lock(&self.kinds);
            let gone: Vec<GroupKind> =
                kinds.keys().filter(|k| !seen.contains(*k)).cloned().collect();
            gone.into_iter()
                .filter_map(|k| kinds.remove(&k))
                .map(|(kind, handle)| {
                    handle.abort();
                    kind
                })
                .collect()
        };
        for kind in stale {
            let uids = lock(&self.graph).uids_of(&kind);
            for uid in uids {
                self.forget(&uid);
            }
        }
        Ok(synced)
    }

    async fn process(&self, work: &Work) -> Result<(), Error> {
        match work {
            Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.orphan(uid).await,
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let (item, blocking, has_dependents, cached) = {
            let graph = lock(&self.graph);
            let Some(item) = graph.node(uid).cloned() else { return Ok(()) };
            let blocking: Vec<(String, bool)> = graph
                .blocking_dependents(uid)
                .into_iter()
                .map(|d| (d.uid.clone(), d.deleting))
                .collect();
            let has_dependents = !graph.dependents_of(uid).is_empty();
            let cached: Vec<Option<OwnerState>> = item
                .owners
                .iter()
                .map(|r| {
                    graph.node(&r.uid).map(|o| {
                        if o.deleting_dependents() {
                            OwnerState::Waiting
                        } else {
                            OwnerState::Solid
                        }
                    })
                })
                .collect();
            (item, blocking, has_dependents, cached)
        };
        if item.deleting_dependents() {
            if blocking.is_empty() {
                return self.remove_finalizer(&item, FOREGROUND).await;
            }
            for (dep, deleting) in blocking {
                if !deleting {
                    self.queue.add(&Work::AttemptToDelete(dep).key());
                }
            }
            return Ok(());
        }
        if item.deleting || item.owners.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::with_capacity(item.owners.len());
        for (r, cached) in item.owners.iter().zip(cached) {
            let state = match cached {
                Some(s) => s,
                None => self.owner_state(&item, r).await?,
            };
            owners.push((r.uid.clone(), state));
        }
        match decide(&item, &owners, has_dependents) {
            Decision::Keep => Ok(()),
            Decision::RemoveOwners(uids) => self.remove_owner_refs(&item, &uids).await,
            Decision::Delete(p) => {
                let policy = match p {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                    Propagation::Orphan => PropagationPolicy::Orphan,
                };
                tracing::debug!(kind = %item.kind.ar.kind, name = %item.name, ?p, "collecting");
                let params = DeleteParams {
                    propagation_policy: Some(policy),
                    preconditions: Some(Preconditions {
                        uid: Some(item.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self
                    .api(&item.kind, item.namespace.as_deref())
                    .delete(&item.name, &params)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_gone(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// An owner the graph does not hold, looked up live (with its uid) as Kubernetes does
    /// before deleting anything.
    async fn owner_state(&self, item: &Node, r: &OwnerReference) -> Result<OwnerState, Error> {
        let Some(kind) = self.resolve(&r.api_version, &r.kind) else {
            // A kind not served (yet): not ours to judge.
            tracing::debug!(owner = %r.name, kind = %r.kind, "owner of an unknown kind");
            return Ok(OwnerState::Solid);
        };
        // A cluster-scoped object cannot be owned by a namespaced one.
        if kind.namespaced && item.namespace.is_none() {
            return Ok(OwnerState::Dangling);
        }
        let live = self.api(&kind, item.namespace.as_deref()).get_opt(&r.name).await?;
        Ok(match live {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let foreground = o.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                if o.metadata.deletion_timestamp.is_some() && foreground {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        })
    }

    async fn orphan(&self, uid: &str) -> Result<(), Error> {
        let (owner, dependents) = {
            let graph = lock(&self.graph);
            let Some(owner) = graph.node(uid).cloned() else { return Ok(()) };
            let deps: Vec<Node> = graph.dependents_of(uid).into_iter().cloned().collect();
            (owner, deps)
        };
        if !owner.orphaning() {
            return Ok(());
        }
        for d in &dependents {
            self.remove_owner_refs(d, &[uid.to_string()]).await?;
        }
        self.remove_finalizer(&owner, ORPHAN).await
    }

    /// Drop the references to `owners` from `item`, over its live resourceVersion.
    async fn remove_owner_refs(&self, item: &Node, owners: &[String]) -> Result<(), Error> {
        let api = self.api(&item.kind, item.namespace.as_deref());
        for _ in 0..5 {
            let Some(live) = api.get_opt(&item.name).await? else { return Ok(()) };
            if live.metadata.uid.as_deref() != Some(item.uid.as_str()) {
                return Ok(());
            }
            let refs: Vec<OwnerReference> = live.metadata.owner_references.unwrap_or_default();
            let kept: Vec<&OwnerReference> =
                refs.iter().filter(|r| !owners.contains(&r.uid)).collect();
            if kept.len() == refs.len() {
                return Ok(());
            }
            let patch = json!({"metadata": {
                "ownerReferences": if kept.is_empty() { json!(null) } else { json!(kept) },
                "resourceVersion": live.metadata.resource_version,
                "uid": item.uid,
            }});
            match api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) if is_gone(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Invalid(format!("{} kept changing while its owners were removed", item.name)))
    }

    /// Drop one of the collector's finalizers from `item`, over its live resourceVersion.
    async fn remove_finalizer(&self, item: &Node, finalizer: &str) -> Result<(), Error> {
        let api = self.api(&item.kind, item.namespace.as_deref());
        for _ in 0..5 {
            let Some(live) = api.get_opt(&item.name).await? else { return Ok(()) };
            if live.metadata.uid.as_deref() != Some(item.uid.as_str()) {
                return Ok(());
            }
            let finalizers = live.metadata.finalizers.unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {
                "finalizers": kept,
                "resourceVersion": live.metadata.resource_version,
            }});
            match api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) if is_gone(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Invalid(format!("{} kept changing while its finalizer was removed", item.name)))
    }

    async fn work(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            if let Some(work) = Work::from_key(&key) {
                match self.process(&work).await {
                    Ok(()) => self.queue.forget(&key),
                    Err(e) => {
                        tracing::debug!(?work, error = %e, "garbage collection retried");
                        self.queue.retry(&key);
                    }
                }
            }
            self.queue.done(&key);
        }
    }
}

/// A change to the CustomResourceDefinitions: time to look for new resources.
async fn crd_changes(client: Client, changed: Arc<tokio::sync::Notify>) {
    let api = Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        if matches!(event, Ok(Event::Apply(_) | Event::Delete(_))) {
            changed.notify_one();
        }
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let gc = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        queue: WorkQueue::new(),
        kinds: Mutex::new(HashMap::new()),
    });
    // Everything spawned here ends with this future (the JoinSet aborts on drop).
    let mut tasks = JoinSet::new();
    let crds = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(crd_changes(ctx.client.clone(), crds.clone()));
    let mut started = false;
    loop {
        match gc.discover(&mut tasks).await {
            Ok(synced) if !started => {
                // Decide nothing before the graph holds the whole cluster once.
                let all = futures::future::join_all(synced);
                let _ = tokio::time::timeout(SYNC_DEADLINE, all).await;
                for _ in 0..WORKERS {
                    tasks.spawn(gc.clone().work());
                }
                started = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "garbage collector discovery failed"),
        }
        // Until the first discovery worked, try again soon.
        let next = if started { REDISCOVERY } else { RETRY };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = crds.notified() => {
                // A new definition is served once established: give it a moment.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
