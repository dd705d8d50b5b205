//! The ClusterRole aggregation controller (kube-controller-manager's
//! `clusterrole-aggregation`): a ClusterRole with an `aggregationRule` gets as its rules the
//! union of the rules of every ClusterRole its selectors match, kept up to date as those
//! change. This is how `admin`, `edit` and `view` grow when a CRD's chart ships
//! `aggregate-to-*` roles.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::{Context, Error};

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let roles = ctx.informers.get::<ClusterRole>();
    roles.wait_until_ready().await;
    let (q, all) = (queue.clone(), roles.store());
    // Any change may change what any aggregated role selects: look at all of them.
    let enqueue_aggregated = move || {
        for role in all.state().iter().filter(|r| r.aggregation_rule.is_some()) {
            q.add(&key_of(role.as_ref()));
        }
    };
    enqueue_aggregated();
    roles.on_change(move |_| enqueue_aggregated());
    let roles = roles.store();
    workqueue::spawn_workers(&mut tasks, &queue, 1, "clusterrole-aggregation", move |k| {
        let (ctx, roles) = (ctx.clone(), roles.clone());
        async move { reconcile(&ctx, &roles, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn reconcile(ctx: &Context, roles: &Store<ClusterRole>, key: &str) -> Result<Requeue, Error> {
    let (_, name) = split_key(key);
    // Only an aggregated role is worth turning the whole store into JSON for.
    let aggregated = roles.get(&ObjectRef::new(name)).is_some_and(|r| r.aggregation_rule.is_some());
    if !aggregated {
        return Ok(None);
    }
    let all: Vec<Value> =
        roles.state().iter().filter_map(|r| serde_json::to_value(r.as_ref()).ok()).collect();
    let Some(target) =
        all.iter().find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    else {
        return Ok(None);
    };
    let refs: Vec<&Value> = all.iter().collect();
    let Some(rules) = skiff_auth::rbac::aggregate(target, &refs) else { return Ok(None) };
    let current: Vec<skiff_auth::rbac::PolicyRule> =
        serde_json::from_value(target.get("rules").cloned().unwrap_or(Value::Null))
            .unwrap_or_default();
    if current == rules {
        return Ok(None);
    }
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"rules": rules}))).await?;
    Ok(None)
}
