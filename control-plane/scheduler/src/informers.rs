//! Watches that feed the cache and the queue: nodes, pods, and the objects plugins read
//! (namespaces, PVs, PVCs, StorageClasses, RuntimeClasses, PDBs). Each change that can make
//! a waiting pod schedulable is passed to the queue as a `ClusterEvent`.
//!
//! Pods come from a shared pod informer rather than a watch of their own: in `skiff server`
//! the controller manager reads the same one, so the process decodes each pod event once and
//! holds one copy of each pod (the scheduler's cache shares the informer's `Arc<Pod>`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use skiff_client_tools::informers::{Change, Informer, Scope};
use tokio::sync::mpsc;

use crate::framework::{Action, ClusterEvent, Resource};
use crate::scheduler::Shared;
use crate::snapshot::Listers;
use crate::types::{NodeInfo, PodInfo};

/// Start every watch and follow `pods`; `synced` receives one message per watch once its
/// first list is in. Returns how many messages to wait for, and the scope of the pod handler
/// (dropping it stops following the pods).
pub fn start(
    shared: &Arc<Shared>,
    client: &kube::Client,
    pods: &Informer<Pod>,
    tasks: &mut tokio::task::JoinSet<()>,
    synced: mpsc::UnboundedSender<&'static str>,
) -> (usize, Scope) {
    tasks.spawn(watch_nodes(shared.clone(), Api::all(client.clone()), synced.clone()));
    let scope = follow_pods(shared, pods, synced.clone());
    tasks.spawn(watch_lister::<PersistentVolume>(
        shared.clone(),
        Api::all(client.clone()),
        synced.clone(),
        Resource::PersistentVolume,
        |l| &mut l.persistent_volumes,
    ));
    tasks.spawn(watch_lister::<PersistentVolumeClaim>(
        shared.clone(),
        Api::all(client.clone()),
        synced.clone(),
        Resource::PersistentVolumeClaim,
        |l| &mut l.persistent_volume_claims,
    ));
    tasks.spawn(watch_lister::<StorageClass>(
        shared.clone(),
        Api::all(client.clone()),
        synced.clone(),
        Resource::StorageClass,
        |l| &mut l.storage_classes,
    ));
    tasks.spawn(watch_lister::<RuntimeClass>(
        shared.clone(),
        Api::all(client.clone()),
        synced.clone(),
        Resource::RuntimeClass,
        |l| &mut l.runtime_classes,
    ));
    tasks.spawn(watch_lister::<PodDisruptionBudget>(
        shared.clone(),
        Api::all(client.clone()),
        synced.clone(),
        Resource::Pod,
        |l| &mut l.pdbs,
    ));
    tasks.spawn(watch_namespaces(shared.clone(), Api::all(client.clone()), synced));
    (8, scope)
}

/// `namespace/name` for namespaced objects, `name` otherwise.
fn key_of<K: kube::Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        _ => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// The node fields placement depends on; a heartbeat that changes none of them moves no pods.
fn placement_fields(n: &NodeInfo) -> impl PartialEq + use<> {
    (
        n.labels.clone(),
        n.taints
            .iter()
            .map(|t| (t.key.clone(), t.value.clone(), t.effect.clone()))
            .collect::<Vec<_>>(),
        n.unschedulable,
        n.allocatable.clone(),
        n.runtime_handlers.clone(),
        n.ready(),
        n.image_states.len(),
    )
}

async fn watch_nodes(
    shared: Arc<Shared>,
    api: Api<Node>,
    synced: mpsc::UnboundedSender<&'static str>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .boxed();
    let mut seen: Option<HashSet<String>> = None;
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: node watch failed; retrying");
                continue;
            }
        };
        match ev {
            Event::Init => seen = Some(HashSet::new()),
            Event::InitApply(node) | Event::Apply(node) => {
                let name = node.name_any();
                if let Some(seen) = seen.as_mut() {
                    seen.insert(name.clone());
                }
                let node = Arc::new(node);
                let fresh = NodeInfo::new(node.clone());
                let event = {
                    let mut cache = shared.cache();
                    let old = cache.node(&name);
                    cache.add_or_update_node(node);
                    match old {
                        None => Some(Action::Add),
                        Some(old) if placement_fields(&old) != placement_fields(&fresh) => {
                            Some(Action::Update)
                        }
                        Some(_) => None,
                    }
                };
                if let Some(action) = event {
                    shared.queue.move_for_event(ClusterEvent::new(Resource::Node, action));
                }
            }
            Event::Delete(node) => {
                shared.cache().remove_node(&node.name_any());
                shared.queue.move_for_event(ClusterEvent::new(Resource::Node, Action::Delete));
            }
            Event::InitDone => {
                if let Some(seen) = seen.take() {
                    let mut cache = shared.cache();
                    for name in cache.node_names() {
                        if !seen.contains(&name) {
                            cache.remove_node(&name);
                        }
                    }
                }
                let _ = synced.send("nodes");
            }
        }
    }
}

fn phase_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Keep the cache and the queue in step with the pods `pods` holds. The handler runs on the
/// informer's task, one change at a time; after every (re)list it is told `Resynced` and
/// reads the whole store, since the changes of a list are not told one by one.
fn follow_pods(
    shared: &Arc<Shared>,
    pods: &Informer<Pod>,
    synced: mpsc::UnboundedSender<&'static str>,
) -> Scope {
    let (pods, scope) = pods.scoped();
    let store = pods.store();
    let shared = shared.clone();
    // Sent once: at the first `Resynced`, or at once if the informer had listed already.
    let synced = Arc::new(std::sync::Mutex::new(Some(synced)));
    let send_synced = {
        let synced = synced.clone();
        move || {
            if let Some(tx) = synced.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send("pods");
            }
        }
    };
    let on_resync = send_synced.clone();
    let mut known: HashSet<String> = HashSet::new();
    let complete = pods.on_change(move |change| match change {
        Change::Upsert { new, .. } => {
            // The store's own copy, so the cache and the informer share one pod.
            let Some(pod) = store.get(&ObjectRef::from_obj(*new)) else { return };
            known.insert(pod.uid().unwrap_or_default());
            on_pod(&shared, pod);
        }
        Change::Delete { gone, .. } => {
            let uid = gone.uid().unwrap_or_default();
            known.remove(&uid);
            on_pod_deleted(&shared, &uid, assigned(gone));
        }
        Change::Resynced => {
            let listed = store.state();
            let uids: HashSet<String> =
                listed.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            let gone: Vec<String> = known.difference(&uids).cloned().collect();
            for uid in gone {
                known.remove(&uid);
                on_pod_deleted(&shared, &uid, true);
            }
            for pod in listed {
                known.insert(pod.uid().unwrap_or_default());
                on_pod(&shared, pod);
            }
            on_resync();
        }
    });
    // The replay was a whole, current list: the cache has every pod now.
    if complete {
        send_synced();
    }
    scope
}

fn assigned(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

fn on_pod_deleted(shared: &Shared, uid: &str, assigned: bool) {
    shared.queue.delete(uid);
    if assigned {
        shared.cache().remove_pod(uid);
        shared.queue.move_for_event(ClusterEvent::new(Resource::Pod, Action::Delete));
    }
}

fn on_pod(shared: &Shared, pod: Arc<Pod>) {
    let terminal = phase_terminal(&pod);
    let info = Arc::new(PodInfo::new(pod));
    if !info.node_name.is_empty() {
        shared.queue.delete(&info.uid);
        if terminal {
            // A finished pod holds no resources.
            let had = shared.cache().contains_pod(&info.uid);
            if had {
                shared.cache().remove_pod(&info.uid);
                shared.queue.move_for_event(ClusterEvent::new(Resource::Pod, Action::Delete));
            }
            return;
        }
        let new = {
            let mut cache = shared.cache();
            let new = !cache.contains_pod(&info.uid);
            cache.add_or_update_pod(info);
            new
        };
        if new {
            shared.queue.move_for_event(ClusterEvent::new(Resource::Pod, Action::Add));
        }
        return;
    }
    if !shared.profiles.contains_key(&info.scheduler_name) {
        return;
    }
    if info.terminating || terminal {
        shared.queue.delete(&info.uid);
        return;
    }
    if let Some(node) = info
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        shared.queue.add_nominated(info.clone(), node);
    }
    shared.queue.add(info);
}

/// Which of the listers' maps a watch keeps.
type ListerField<K> = fn(&mut Listers) -> &mut Arc<HashMap<String, Arc<K>>>;

async fn watch_lister<K>(
    shared: Arc<Shared>,
    api: Api<K>,
    synced: mpsc::UnboundedSender<&'static str>,
    resource: Resource,
    field: ListerField<K>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .boxed();
    let mut init: Option<HashMap<String, Arc<K>>> = None;
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, kind = %K::kind(&()), "scheduler: watch failed; retrying");
                continue;
            }
        };
        let action = match ev {
            Event::Init => {
                init = Some(HashMap::new());
                continue;
            }
            Event::InitApply(obj) => {
                if let Some(m) = init.as_mut() {
                    m.insert(key_of(&obj), Arc::new(obj));
                }
                continue;
            }
            Event::InitDone => {
                if let Some(m) = init.take() {
                    *field(&mut shared.cache().listers) = Arc::new(m);
                }
                let _ = synced.send("lister");
                Action::Update
            }
            Event::Apply(obj) => {
                let key = key_of(&obj);
                let mut cache = shared.cache();
                let map = Arc::make_mut(field(&mut cache.listers));
                match map.insert(key, Arc::new(obj)) {
                    None => Action::Add,
                    Some(_) => Action::Update,
                }
            }
            Event::Delete(obj) => {
                let mut cache = shared.cache();
                Arc::make_mut(field(&mut cache.listers)).remove(&key_of(&obj));
                Action::Delete
            }
        };
        shared.queue.move_for_event(ClusterEvent::new(resource, action));
    }
}

async fn watch_namespaces(
    shared: Arc<Shared>,
    api: Api<Namespace>,
    synced: mpsc::UnboundedSender<&'static str>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .boxed();
    let mut init: Option<HashMap<String, crate::types::Labels>> = None;
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: namespace watch failed; retrying");
                continue;
            }
        };
        let action = match ev {
            Event::Init => {
                init = Some(HashMap::new());
                continue;
            }
            Event::InitApply(ns) => {
                if let Some(m) = init.as_mut() {
                    m.insert(ns.name_any(), ns.labels().clone());
                }
                continue;
            }
            Event::InitDone => {
                if let Some(m) = init.take() {
                    shared.cache().listers.namespaces = Arc::new(m);
                }
                let _ = synced.send("namespaces");
                Action::Update
            }
            Event::Apply(ns) => {
                let mut cache = shared.cache();
                let map = Arc::make_mut(&mut cache.listers.namespaces);
                match map.insert(ns.name_any(), ns.labels().clone()) {
                    None => Action::Add,
                    Some(_) => Action::Update,
                }
            }
            Event::Delete(ns) => {
                Arc::make_mut(&mut shared.cache().listers.namespaces).remove(&ns.name_any());
                Action::Delete
            }
        };
        shared.queue.move_for_event(ClusterEvent::new(Resource::Namespace, action));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::cache::Cache;
    use crate::metrics::Metrics;
    use crate::profiles::{self, ProfileConfig};
    use crate::queue::SchedulingQueue;

    fn pod(name: &str, node: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
            "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}))
        .expect("pod")
    }

    #[tokio::test]
    async fn pods_should_be_followed_through_the_shared_informer_without_a_copy() {
        let (pods, mut feed) = Informer::<Pod>::fed();
        feed.event(Event::Init);
        feed.event(Event::InitApply(pod("a", "n1")));
        feed.event(Event::InitDone);
        let queue = Arc::new(SchedulingQueue::without_profiles());
        let fwk = profiles::build(
            &ProfileConfig::named(crate::DEFAULT_SCHEDULER_NAME),
            None,
            &queue,
            &crate::Options::default(),
        )
        .expect("profile");
        let profiles = HashMap::from([(fwk.profile_name.clone(), Arc::new(fwk))]);
        queue.set_profiles(profiles.clone());
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::new()),
            queue,
            profiles,
            metrics: Metrics::new(),
            client: None,
            events: None,
            runtime: tokio::runtime::Handle::current(),
        });
        let (synced, mut told) = mpsc::unbounded_channel();
        let scope = follow_pods(&shared, &pods, synced);

        // Registered after the first list: replayed the store and synced at once.
        assert_eq!(told.try_recv(), Ok("pods"));
        let (cached, node) = shared.cache().pod("uid-a").expect("a is cached");
        assert_eq!(node, "n1");
        let stored = pods.store().get(&ObjectRef::from_obj(&pod("a", "n1"))).expect("stored");
        assert!(Arc::ptr_eq(&cached.pod, &stored), "the cache holds the informer's own pod");

        // A pending pod is queued; a change is followed.
        feed.event(Event::Apply(pod("b", "")));
        assert_eq!(shared.queue.counts().active, 1);
        // A relist without `a`: the pod deleted while the watch was down leaves the cache,
        // and `synced` is not told twice.
        feed.event(Event::Init);
        feed.event(Event::InitApply(pod("b", "")));
        feed.event(Event::InitDone);
        assert!(!shared.cache().contains_pod("uid-a"));
        assert_eq!(shared.queue.counts().active, 1);
        assert!(told.try_recv().is_err());
        feed.event(Event::Delete(pod("b", "")));
        assert_eq!(shared.queue.counts().active, 0);

        // Once the scope ends, the informer goes on without the scheduler.
        drop(scope);
        feed.event(Event::Apply(pod("c", "n1")));
        assert!(!shared.cache().contains_pod("uid-c"));
        assert_eq!(pods.store().len(), 1);
    }
}
