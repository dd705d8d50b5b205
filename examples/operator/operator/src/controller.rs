//! The controller loop: watches of the StaticSites and of the children this operator labelled
//! feed a [`Queue`] of site keys, and one worker reconciles them one at a time.
//!
//! kube-runtime's `Controller` does the same, but kube-runtime does not build for WASI (see
//! the README), so this is the loop both builds share, with its behaviour: level-triggered
//! (a key says only "look at this site"; the reconciler reads it afresh), a list on start and
//! after every watch expiry (every site is reconciled on start: a resync), watches resumed
//! from the last `resourceVersion` and bookmarks, a re-list when that is too old (410), and
//! backoff on errors.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::desired::MANAGED_BY_LABEL;
use crate::queue::{Key, Queue};
use crate::reconcile::{Context, Next, brief, reconcile};
use crate::site::{MANAGER, StaticSite};

/// A watch request's server-side timeout (kube's and client-go's default range).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// Backoff after a failed list or watch: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A failed reconcile is retried after this long.
const RETRY: Duration = Duration::from_secs(5);

/// Run the watches and the worker until the process ends.
pub async fn run(ctx: Arc<Context>) {
    let queue = Arc::new(Queue::default());
    let children = format!("{MANAGED_BY_LABEL}={MANAGER}");
    let client = &ctx.client;
    tokio::spawn(watch(Api::<StaticSite>::all(client.clone()), None, queue.clone(), site_key));
    tokio::spawn(watch(
        Api::<Deployment>::all(client.clone()),
        Some(children.clone()),
        queue.clone(),
        owner_key,
    ));
    tokio::spawn(watch(
        Api::<Service>::all(client.clone()),
        Some(children.clone()),
        queue.clone(),
        owner_key,
    ));
    tokio::spawn(watch(
        Api::<ConfigMap>::all(client.clone()),
        Some(children),
        queue.clone(),
        owner_key,
    ));
    loop {
        let key = queue.next().await;
        match reconcile(&key, &ctx).await {
            Ok(Next::After(delay)) => queue.add_after(key, delay),
            Ok(Next::OnChange) => {}
            Err(e) if e.is_retryable() => {
                println!("reconcile {key} failed, retrying in {}s: {e}", RETRY.as_secs());
                queue.add_after(key, RETRY);
            }
            Err(e) => println!("reconcile {key} failed until the site changes: {e}"),
        }
    }
}

/// A site's own key.
fn site_key(site: &StaticSite) -> Option<Key> {
    Some(Key { namespace: site.namespace()?, name: site.name_any() })
}

/// The key of the StaticSite controlling a child, if one does.
pub fn owner_key(child: &impl Resource) -> Option<Key> {
    owner_key_of(child.meta())
}

fn owner_key_of(meta: &ObjectMeta) -> Option<Key> {
    let owner = meta.owner_references.iter().flatten().find(|o| {
        o.controller == Some(true)
            && o.kind == StaticSite::kind(&())
            && o.api_version.split('/').next() == Some(&*StaticSite::group(&()))
    })?;
    Some(Key { namespace: meta.namespace.clone()?, name: owner.name.clone() })
}

/// Doubling waits between failed attempts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// An attempt succeeded: start over.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// List then watch `api` (objects matching `labels`) forever, queueing `key_of` every object
/// seen.
async fn watch<K>(
    api: Api<K>,
    labels: Option<String>,
    queue: Arc<Queue>,
    key_of: fn(&K) -> Option<Key>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let kind = K::kind(&());
    let mut backoff = Backoff::default();
    loop {
        let list_params = ListParams { label_selector: labels.clone(), ..ListParams::default() };
        let list = match api.list(&list_params).await {
            Ok(list) => list,
            Err(e) => {
                let delay = backoff.next_delay();
                println!("listing {kind}: {}; again in {}s", brief(&e), delay.as_secs());
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        for object in &list.items {
            queue_key(&queue, key_of(object));
        }
        let mut version = list.metadata.resource_version.unwrap_or_default();
        // Watch from `version` until the server has forgotten it, then list again.
        'watching: loop {
            let params = WatchParams {
                label_selector: labels.clone(),
                timeout: Some(WATCH_TIMEOUT_SECS),
                bookmarks: true,
                ..WatchParams::default()
            };
            let events = match api.watch(&params, &version).await {
                Ok(events) => events,
                Err(kube::Error::Api(status)) if status.code == 410 => break 'watching,
                Err(e) => {
                    let delay = backoff.next_delay();
                    println!("watching {kind}: {}; again in {}s", brief(&e), delay.as_secs());
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let mut events = pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                        backoff.reset();
                        if let Some(v) = o.resource_version() {
                            version = v;
                        }
                        queue_key(&queue, key_of(&o));
                    }
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    Ok(WatchEvent::Error(status)) if status.code == 410 => break 'watching,
                    Ok(WatchEvent::Error(status)) => {
                        println!("watching {kind}: {} ({})", status.message, status.code);
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue 'watching;
                    }
                    Err(e) => {
                        println!("watching {kind}: {}", brief(&e));
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue 'watching;
                    }
                }
            }
            // The server ended the watch (its timeout): resume where it stopped.
        }
    }
}

fn queue_key(queue: &Queue, key: Option<Key>) {
    if let Some(key) = key {
        queue.add(key);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn child(owner: Option<(&str, &str, bool)>) -> ObjectMeta {
        ObjectMeta {
            name: Some("blog".into()),
            namespace: Some("web".into()),
            owner_references: owner.map(|(api_version, kind, controller)| {
                vec![OwnerReference {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    name: "blog".into(),
                    uid: "u1".into(),
                    controller: Some(controller),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn owner_key_should_name_only_a_controlling_static_site() {
        let blog = Some(Key { namespace: "web".into(), name: "blog".into() });
        let cases = [
            (Some(("web.skiff.dev/v1alpha1", "StaticSite", true)), blog.clone()),
            (Some(("web.skiff.dev/v1", "StaticSite", true)), blog),
            (Some(("web.skiff.dev/v1alpha1", "StaticSite", false)), None),
            (Some(("apps/v1", "ReplicaSet", true)), None),
            (Some(("other.example/v1", "StaticSite", true)), None),
            (None, None),
        ];
        for (owner, want) in cases {
            assert_eq!(owner_key_of(&child(owner)), want, "{owner:?}");
        }
    }

    #[test]
    fn backoff_should_double_up_to_its_cap_and_reset() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }
}
