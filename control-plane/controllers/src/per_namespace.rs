//! What the controllers that keep one named object in every namespace share (the
//! ServiceAccount controller's `default` account, the root CA publisher's `kube-root-ca.crt`):
//! their work-queue keys are namespaces, queued when a namespace appears or changes and when
//! its object changes or goes.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use serde::de::DeserializeOwned;
use skiff_client_tools::informers::{Change, Informer};
use skiff_client_tools::workqueue::WorkQueue;

/// The work-queue key of the namespace `name` (cluster-scoped: no namespace part).
pub fn key(name: &str) -> String {
    format!("/{name}")
}

/// Whether `ns` is being deleted: nothing more is created in it.
pub fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Queue on `queue` every namespace `namespaces` adds or changes, and the namespace of every
/// object of `objects` named `name` that changes or goes; every namespace on a relist (which
/// may have missed a change or a deletion).
pub fn queue_namespaces<K>(
    queue: &WorkQueue,
    namespaces: &Informer<Namespace>,
    objects: &Informer<K>,
    name: &'static str,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (q, all) = (queue.clone(), namespaces.store());
    let every_namespace = move || {
        for ns in all.state() {
            q.add(&key(ns.metadata.name.as_deref().unwrap_or_default()));
        }
    };
    let q = queue.clone();
    let resync = every_namespace.clone();
    namespaces.on_change(move |change| match change {
        Change::Upsert { new, .. } => q.add(&key(new.metadata.name.as_deref().unwrap_or_default())),
        Change::Delete { .. } => {}
        Change::Resynced => resync(),
    });
    let q = queue.clone();
    objects.on_change(move |change| match change.object() {
        Some(o) if o.meta().name.as_deref() == Some(name) => {
            if let Some(ns) = o.meta().namespace.as_deref() {
                q.add(&key(ns));
            }
        }
        Some(_) => {}
        None => every_namespace(),
    });
}
