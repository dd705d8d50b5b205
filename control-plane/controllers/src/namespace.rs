//! The namespace lifecycle controller: a namespace being deleted (with the `kubernetes`
//! finalizer in its spec) has all its content deleted, custom resources included, reports
//! progress in its status conditions the way Kubernetes does, and once nothing is left has
//! the finalizer removed through the `finalize` subresource, which lets it go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::{Context, Error};

/// The spec finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How soon a namespace whose content is still going is looked at again.
const RECHECK: Duration = Duration::from_secs(1);
/// Namespaces emptied at once (Kubernetes' `--concurrent-namespace-syncs` default).
const WORKERS: usize = 10;

/// What a pass over a terminating namespace found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    /// Why discovery failed, if it did.
    pub discovery_error: Option<String>,
    /// Errors deleting some resource types.
    pub delete_errors: Vec<String>,
    /// Objects left, by `resource.group`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects left holding each finalizer.
    pub finalizers: BTreeMap<String, usize>,
}

impl Content {
    pub fn is_empty(&self) -> bool {
        self.discovery_error.is_none()
            && self.delete_errors.is_empty()
            && self.remaining.values().all(|n| *n == 0)
    }
}

/// The condition types the namespace deleter maintains, in Kubernetes' order, with the
/// reason and message of their "all is well" variant.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentRemoved", "All content successfully removed"),
];

/// The failing conditions (type, reason, message) `content` calls for.
pub(crate) fn failures(content: &Content) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(e) = &content.discovery_error {
        out.push(("NamespaceDeletionDiscoveryFailure", "DiscoveryFailed", e.clone()));
    }
    if !content.delete_errors.is_empty() {
        let mut errors = content.delete_errors.clone();
        errors.sort();
        out.push((
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                errors.join(", ")
            ),
        ));
    }
    let left: Vec<String> = content
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    if !left.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", sorted(left).join(", ")),
        ));
    }
    let held: Vec<String> = content
        .finalizers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    if !held.is_empty() {
        out.push((
            "NamespaceFinalizersRemaining",
            "SomeFinalizerRemain",
            format!("Some finalizers are remaining: {}", sorted(held).join(", ")),
        ));
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The namespace's conditions updated for `content`: every maintained type present, a
/// transition time that moves only when the status does. `None` when nothing changed.
pub(crate) fn updated_conditions(
    old: &[NamespaceCondition],
    content: &Content,
    now: Timestamp,
) -> Option<Vec<NamespaceCondition>> {
    let failing = failures(content);
    let mut conditions = old.to_vec();
    let mut changed = false;
    for (type_, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match failing.iter().find(|(t, _, _)| *t == type_) {
            Some((_, reason, message)) => ("True", *reason, message.clone()),
            None => ("False", ok_reason, ok_message.to_string()),
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(reason)
                    || c.message.as_deref() != Some(message.as_str())
                {
                    if c.status != status {
                        c.last_transition_time = Some(Time(now));
                    }
                    c.status = status.into();
                    c.reason = Some(reason.into());
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed.then_some(conditions)
}

/// Delete everything in `ns` and count what is left.
async fn delete_content(client: &kube::Client, ns: &str) -> Content {
    let mut content = Content::default();
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(e) => {
            content.discovery_error = Some(e.to_string());
            return content;
        }
    };
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let background = DeleteParams::background();
            let label = format!("{}.{}", ar.plural, ar.group);
            if caps.supports_operation(verbs::DELETE_COLLECTION)
                && let Err(e) = api.delete_collection(&background, &ListParams::default()).await
            {
                content.delete_errors.push(format!("{label}: {e}"));
            }
            let items = match api.list(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    content.delete_errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            if items.is_empty() {
                continue;
            }
            if !caps.supports_operation(verbs::DELETE_COLLECTION)
                && caps.supports_operation(verbs::DELETE)
            {
                for o in items.iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    if let Err(e) = api.delete(&name, &background).await
                        && !matches!(&e, kube::Error::Api(s) if s.code == 404)
                    {
                        content.delete_errors.push(format!("{label}: {e}"));
                    }
                }
            }
            content.remaining.insert(label, items.len());
            for f in items.iter().flat_map(|o| o.metadata.finalizers.iter().flatten()) {
                *content.finalizers.entry(f.clone()).or_default() += 1;
            }
        }
    }
    content
}

async fn reconcile(
    ctx: &Context,
    namespaces: &Store<Namespace>,
    k: &str,
) -> Result<Requeue, Error> {
    let Some(ns) = namespaces.get(&ObjectRef::new(split_key(k).1)) else {
        return Ok(None);
    };
    let holds = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if ns.metadata.deletion_timestamp.is_none() || !holds {
        return Ok(None);
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let content = delete_content(&ctx.client, &name).await;
    let old = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if let Some(conditions) = updated_conditions(&old, &content, Timestamp::now()) {
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    if !content.is_empty() {
        return Ok(Some(RECHECK));
    }
    // Nothing left: drop our finalizer, over the namespace as it is now.
    let Some(mut live) = api.get_opt(&name).await? else {
        return Ok(None);
    };
    if let Some(spec) = live.spec.as_mut() {
        spec.finalizers =
            spec.finalizers.take().map(|f| f.into_iter().filter(|f| f != FINALIZER).collect());
    }
    match api.replace_subresource("finalize", &name, &PostParams::default(), &live).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(Duration::ZERO)),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let namespaces = ctx.informers.get::<Namespace>();
    namespaces.wait_until_ready().await;
    let (q, all) = (queue.clone(), namespaces.store());
    namespaces.on_change(move |change| match change.object() {
        Some(ns) => q.add(&key_of(ns)),
        // A relist: any namespace may have changed.
        None => {
            for ns in all.state() {
                q.add(&key_of(ns.as_ref()));
            }
        }
    });
    let namespaces = namespaces.store();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "namespace", move |k| {
        let (ctx, namespaces) = (ctx.clone(), namespaces.clone());
        async move { reconcile(&ctx, &namespaces, &k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: &[NamespaceCondition]) -> Vec<(String, String, String, String)> {
        c.iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn updated_conditions_should_report_what_remains_like_kubernetes() {
        let content = Content {
            remaining: BTreeMap::from([
                ("pods.".into(), 2),
                ("configmaps.".into(), 1),
                ("widgets.example.com".into(), 0),
            ]),
            finalizers: BTreeMap::from([("example.com/hold".into(), 1)]),
            ..Content::default()
        };
        let now = Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let c = updated_conditions(&[], &content, now).unwrap_or_default();
        let got = messages(&c);
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[0],
            (
                "NamespaceDeletionDiscoveryFailure".into(),
                "False".into(),
                "ResourcesDiscovered".into(),
                "All resources successfully discovered".into()
            )
        );
        assert_eq!(got[2].2, "ContentDeleted");
        assert_eq!(
            got[3],
            (
                "NamespaceContentRemaining".into(),
                "True".into(),
                "SomeResourcesRemain".into(),
                "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances".into()
            )
        );
        assert_eq!(got[4].2, "SomeFinalizerRemain");
        assert_eq!(
            got[4].3,
            "Some finalizers are remaining: example.com/hold in 1 resource instances"
        );
        // Same content again: nothing to write.
        assert!(updated_conditions(&c, &content, now).is_none());
        // Content gone: the failing ones flip back, with a new transition time.
        let later = Timestamp::from_second(1_000_100).unwrap_or(Timestamp::UNIX_EPOCH);
        let done = updated_conditions(&c, &Content::default(), later).unwrap_or_default();
        let remaining = &done[3];
        assert_eq!(remaining.status, "False");
        assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(remaining.last_transition_time, Some(Time(later)));
        assert_eq!(
            done[0].last_transition_time,
            Some(Time(now)),
            "unchanged status keeps its time"
        );
    }

    #[test]
    fn failures_should_list_delete_errors_sorted_and_counted() {
        let content = Content {
            delete_errors: vec!["b: boom".into(), "a: bang".into()],
            discovery_error: Some("Discovery failed for some groups, 1 failing: x".into()),
            ..Content::default()
        };
        let f = failures(&content);
        assert_eq!(f[0].0, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(f[0].1, "DiscoveryFailed");
        assert_eq!(f[1].2, "Failed to delete all resource types, 2 remaining: a: bang, b: boom");
        assert!(!content.is_empty());
    }
}
