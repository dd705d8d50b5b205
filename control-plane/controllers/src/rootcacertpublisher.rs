//! The root CA certificate publisher (kube-controller-manager's `root-ca-cert-publisher`):
//! every active namespace has a `kube-root-ca.crt` ConfigMap whose `ca.crt` is the cluster
//! CA, so a pod can verify the api server it reaches in-cluster (the ServiceAccount admission
//! projects that key into every pod). The ConfigMap is created when its namespace appears,
//! created again when deleted, and put back when its data or description are changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, split_key};
use tokio::task::JoinSet;

use crate::{Context, Error, per_namespace};

/// The ConfigMap every namespace gets.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its one key.
pub const CA_KEY: &str = "ca.crt";
/// The annotation saying what the ConfigMap is for, and its text (Kubernetes' own).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// Namespaces looked at once: a sync is a cache read and at most one write.
const WORKERS: usize = 2;

struct Caches {
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
}

/// What a namespace's ConfigMap should be, given the one it has (if any).
#[derive(Debug, PartialEq)]
enum Want {
    Nothing,
    Create(ConfigMap),
    Replace(ConfigMap),
}

/// The data the ConfigMap must hold: the CA and nothing else.
fn wanted_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CA_KEY.to_string(), ca_pem.to_string())])
}

/// Pure decision for one namespace: create the ConfigMap, put it back (other data, a changed
/// CA, no description), or leave it. The rest of a kept ConfigMap (labels, other annotations)
/// stays as it is.
fn compute(existing: Option<&ConfigMap>, ca_pem: &str) -> Want {
    let data = wanted_data(ca_pem);
    let Some(cm) = existing else {
        return Want::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        });
    };
    let described = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    let binary = cm.binary_data.as_ref().is_some_and(|b| !b.is_empty());
    if cm.data.as_ref() == Some(&data) && described && !binary {
        return Want::Nothing;
    }
    let mut fixed = cm.clone();
    fixed.data = Some(data);
    fixed.binary_data = None;
    fixed
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Want::Replace(fixed)
}

async fn reconcile(
    ctx: &Context,
    caches: &Caches,
    ca_pem: &str,
    k: &str,
) -> Result<Requeue, Error> {
    let ns_name = split_key(k).1;
    let Some(ns) = caches.namespaces.get(&ObjectRef::new(ns_name)) else {
        return Ok(None);
    };
    if per_namespace::is_terminating(&ns) {
        return Ok(None);
    }
    let existing = caches.config_maps.get(&ObjectRef::new(CONFIG_MAP).within(ns_name));
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns_name);
    match compute(existing.as_deref(), ca_pem) {
        Want::Nothing => Ok(None),
        Want::Create(cm) => match api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(None),
            // Created meanwhile (the cache shows it soon and the namespace is looked at
            // again), or the namespace went or started terminating: nothing to do.
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(None),
            Err(e) => Err(e.into()),
        },
        // A conflict (a stale cache) fails the sync, which is retried once the cache has
        // the newer version.
        Want::Replace(cm) => match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

/// Run until the controller manager stops leading. Without a CA to publish (a control plane
/// that does not know its CA) there is nothing to do.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let Some(ca_pem) = ctx.options.root_ca_pem.clone().filter(|p| !p.trim().is_empty()) else {
        tracing::info!("no cluster CA given: kube-root-ca.crt ConfigMaps are not published");
        return Ok(());
    };
    let ca_pem: Arc<str> = ca_pem.into();
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let namespaces = ctx.informers.get::<Namespace>();
    let config_maps = ctx.informers.get::<ConfigMap>();
    namespaces.wait_until_ready().await;
    config_maps.wait_until_ready().await;
    per_namespace::queue_namespaces(&queue, &namespaces, &config_maps, CONFIG_MAP);
    let caches =
        Arc::new(Caches { namespaces: namespaces.store(), config_maps: config_maps.store() });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "root-ca-cert-publisher", move |k| {
        let (ctx, caches, ca_pem) = (ctx.clone(), caches.clone(), ca_pem.clone());
        async move { reconcile(&ctx, &caches, &ca_pem, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn published() -> ConfigMap {
        match compute(None, CA) {
            Want::Create(cm) => cm,
            other => panic!("want a create, got {other:?}"),
        }
    }

    #[test]
    fn compute_should_create_the_config_map_with_the_ca_and_description() {
        let cm = published();
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert_eq!(cm.data, Some(wanted_data(CA)));
        let annotations = cm.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get(DESCRIPTION_ANNOTATION).map(String::as_str), Some(DESCRIPTION));
    }

    #[test]
    fn compute_should_leave_a_published_config_map_alone() {
        let mut cm = published();
        cm.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
        assert_eq!(compute(Some(&cm), CA), Want::Nothing);
    }

    #[test]
    fn compute_should_put_back_changed_data_and_a_removed_description() {
        type Edit = fn(&mut ConfigMap);
        let cases: [(&str, Edit); 4] = [
            ("another CA", |cm| cm.data = Some(wanted_data("other"))),
            ("an extra key", |cm| {
                cm.data.get_or_insert_with(BTreeMap::new).insert("x".into(), "y".into());
            }),
            ("no data", |cm| cm.data = None),
            ("no description", |cm| cm.metadata.annotations = None),
        ];
        for (what, change) in cases {
            let mut cm = published();
            cm.metadata.labels = Some(BTreeMap::from([("kept".into(), "yes".into())]));
            change(&mut cm);
            let Want::Replace(fixed) = compute(Some(&cm), CA) else {
                panic!("{what}: want a replace");
            };
            assert_eq!(fixed.data, Some(wanted_data(CA)), "{what}");
            assert_eq!(fixed.metadata.labels, cm.metadata.labels, "{what}: labels kept");
            let described = fixed.metadata.annotations.unwrap_or_default();
            assert_eq!(
                described.get(DESCRIPTION_ANNOTATION).map(String::as_str),
                Some(DESCRIPTION)
            );
        }
    }
}
