//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount,
//! created when the namespace appears and again whenever it is deleted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, split_key};
use tokio::task::JoinSet;

use crate::{Context, Error, per_namespace};

/// The ServiceAccounts every namespace gets.
pub const DEFAULT: &str = "default";
/// Namespaces looked at once: a sync is a cache read and at most one create.
const WORKERS: usize = 2;

struct Caches {
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
}

async fn reconcile(ctx: &Context, caches: &Caches, k: &str) -> Result<Requeue, Error> {
    let Some(ns) = caches.namespaces.get(&ObjectRef::new(split_key(k).1)) else {
        return Ok(None);
    };
    if per_namespace::is_terminating(&ns) {
        return Ok(None);
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    // A stale cache at worst costs a create that answers 409; a deletion it has not seen
    // yet queues the namespace again when it arrives.
    if caches.accounts.get(&ObjectRef::new(DEFAULT).within(&name)).is_some() {
        return Ok(None);
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some(DEFAULT.into()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(None),
        // Created meanwhile, or the namespace started terminating: nothing to do.
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    namespaces.wait_until_ready().await;
    accounts.wait_until_ready().await;
    per_namespace::queue_namespaces(&queue, &namespaces, &accounts, DEFAULT);
    let caches = Arc::new(Caches { namespaces: namespaces.store(), accounts: accounts.store() });
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "serviceaccount", move |k| {
        let (ctx, caches) = (ctx.clone(), caches.clone());
        async move { reconcile(&ctx, &caches, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}
