//! Watches that feed the cache and the queue: nodes, pods, and the objects plugins read
//! (namespaces, PVs, PVCs, StorageClasses, RuntimeClasses, PDBs). Each change that can make
//! a waiting pod schedulable is passed to the queue as a `ClusterEvent`.

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
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use crate::framework::{Action, ClusterEvent, Resource};
use crate::scheduler::Shared;
use crate::snapshot::Listers;
use crate::types::{NodeInfo, PodInfo};

/// Start every watch; `synced` receives one message per watch once its first list is in.
/// Returns how many messages to wait for.
pub fn start(
    shared: &Arc<Shared>,
    client: &kube::Client,
    tasks: &mut tokio::task::JoinSet<()>,
    synced: mpsc::UnboundedSender<&'static str>,
) -> usize {
    tasks.spawn(watch_nodes(shared.clone(), Api::all(client.clone()), synced.clone()));
    tasks.spawn(watch_pods(shared.clone(), Api::all(client.clone()), synced.clone()));
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
    8
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

async fn watch_pods(
    shared: Arc<Shared>,
    api: Api<Pod>,
    synced: mpsc::UnboundedSender<&'static str>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .boxed();
    let mut seen: Option<HashSet<String>> = None;
    let mut known: HashSet<String> = HashSet::new();
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: pod watch failed; retrying");
                continue;
            }
        };
        match ev {
            Event::Init => seen = Some(HashSet::new()),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let uid = pod.uid().unwrap_or_default();
                if let Some(seen) = seen.as_mut() {
                    seen.insert(uid.clone());
                }
                known.insert(uid);
                on_pod(&shared, pod);
            }
            Event::Delete(pod) => {
                let uid = pod.uid().unwrap_or_default();
                known.remove(&uid);
                on_pod_deleted(
                    &shared,
                    &uid,
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty()),
                );
            }
            Event::InitDone => {
                if let Some(seen) = seen.take() {
                    let gone: Vec<String> = known.difference(&seen).cloned().collect();
                    for uid in gone {
                        known.remove(&uid);
                        on_pod_deleted(&shared, &uid, true);
                    }
                }
                let _ = synced.send("pods");
            }
        }
    }
}

fn on_pod_deleted(shared: &Shared, uid: &str, assigned: bool) {
    shared.queue.delete(uid);
    if assigned {
        shared.cache().remove_pod(uid);
        shared.queue.move_for_event(ClusterEvent::new(Resource::Pod, Action::Delete));
    }
}

fn on_pod(shared: &Shared, pod: Pod) {
    let terminal = phase_terminal(&pod);
    let info = Arc::new(PodInfo::new(Arc::new(pod)));
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
