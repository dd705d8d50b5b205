//! The reconciler the controller loop calls for a site's key (on any change to the site or to
//! a child it controls, and on a periodic resync): it acts on what `finalizer` and `desired`
//! decide. It is never told why it runs, so every pass reads the site as it is and converges
//! from there.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::desired::{self, ChildKind, DesiredError};
use crate::finalizer::{self, Cleanup, Step};
use crate::queue::Key;
use crate::site::{MANAGER, StaticSite};

/// A settled site is looked at again this often (a resync: level-triggered, whatever was
/// missed).
const RESYNC: Duration = Duration::from_secs(300);
/// A deletion in progress is looked at again this often (the children's own deletion events
/// usually come first).
const CLEANUP_POLL: Duration = Duration::from_secs(2);

/// When to look at a site again (besides on any change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// After this long.
    After(Duration),
    /// Only when it or a child changes.
    OnChange,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The site-server image of the sites' pods.
    pub site_image: String,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The site cannot be turned into children; retrying without a change will not help.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// A JSON patch `finalizer` built does not parse: a bug, not retried.
    #[error("building a JSON patch: {0}")]
    Patch(#[from] serde_json::Error),
    /// An API call failed (conflict, unavailable, …): retried.
    #[error("{action}: {}", brief(source))]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Whether retrying the same site later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Api { .. })
    }
}

/// An API error as one line: the server's message and code (kube's own display adds the
/// whole status structure).
pub fn brief(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// Reconcile the site `key` as it is now.
pub async fn reconcile(key: &Key, ctx: &Context) -> Result<Next, Error> {
    let (namespace, name) = (&key.namespace, &key.name);
    let sites: Api<StaticSite> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(site) =
        sites.get_opt(name).await.map_err(api_error(format!("reading StaticSite {key}")))?
    else {
        // Deleted (its finalizer already let it go): nothing of it is left to manage.
        println!("reconcile {key}: gone");
        return Ok(Next::OnChange);
    };
    let step = finalizer::step(&site.metadata);
    println!(
        "reconcile {key}: generation {} resourceVersion {} step {step:?}",
        site.metadata.generation.unwrap_or(0),
        site.resource_version().unwrap_or_default(),
    );
    match step {
        Step::Nothing => Ok(Next::OnChange),
        Step::Cleanup => cleanup(&site, namespace, ctx).await,
        Step::AddFinalizer => {
            let mut site = site;
            if let Some(patch) = finalizer::add_patch(&site.metadata) {
                site = sites
                    .patch(name, &PatchParams::default(), &json_patch(patch)?)
                    .await
                    .map_err(api_error(format!("adding the finalizer to {namespace}/{name}")))?;
                println!("{namespace}/{name}: finalizer added");
            }
            apply(&site, namespace, &sites, ctx).await
        }
        Step::Apply => apply(&site, namespace, &sites, ctx).await,
    }
}

fn json_patch(ops: serde_json::Value) -> Result<Patch<()>, Error> {
    Ok(Patch::Json(serde_json::from_value(ops)?))
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Server-side apply the children, then write the status their state means.
async fn apply(
    site: &StaticSite,
    namespace: &str,
    sites: &Api<StaticSite>,
    ctx: &Context,
) -> Result<Next, Error> {
    let name = site.name_any();
    if let Err(invalid) = desired::validate(&site.spec) {
        println!("{namespace}/{name}: {invalid}; children left as they are");
        write_status(site, sites, desired::invalid_status(site, &invalid, &now())).await?;
        return Ok(Next::OnChange);
    }
    let children = desired::children(site, &ctx.site_image)?;
    let params = PatchParams::apply(MANAGER).force();
    let client = &ctx.client;
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(&ChildKind::ConfigMap.name(&name), &params, &Patch::Apply(&children.config_map))
        .await
        .map_err(api_error(format!("applying ConfigMap {namespace}/{name}-content")))?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(&name, &params, &Patch::Apply(&children.deployment))
        .await
        .map_err(api_error(format!("applying Deployment {namespace}/{name}")))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(&name, &params, &Patch::Apply(&children.service))
        .await
        .map_err(api_error(format!("applying Service {namespace}/{name}")))?;
    let status = desired::status(site, deployment.status.as_ref(), &now());
    println!(
        "{namespace}/{name}: applied ConfigMap, Deployment, Service; {}/{} replicas ready",
        status.ready_replicas, site.spec.replicas
    );
    write_status(site, sites, status).await?;
    Ok(Next::After(RESYNC))
}

/// Write `status` through the status subresource, unless the site has it already.
async fn write_status(
    site: &StaticSite,
    sites: &Api<StaticSite>,
    status: crate::site::StaticSiteStatus,
) -> Result<(), Error> {
    if site.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = site.name_any();
    let patch = Patch::Merge(json!({"status": status}));
    sites
        .patch_status(&name, &PatchParams::default(), &patch)
        .await
        .map_err(api_error(format!("writing the status of {name}")))?;
    Ok(())
}

/// One deletion step: delete what is left of the children, wait for them to go, then let the
/// site go.
async fn cleanup(site: &StaticSite, namespace: &str, ctx: &Context) -> Result<Next, Error> {
    let name = site.name_any();
    let uid = site.meta().uid.clone().ok_or(DesiredError::MissingMetadata("uid"))?;
    let client = &ctx.client;
    let mut states = Vec::new();
    for kind in ChildKind::ALL {
        let child = kind.name(&name);
        let meta = match kind {
            ChildKind::Deployment => child_meta::<Deployment>(client, namespace, &child).await?,
            ChildKind::Service => child_meta::<Service>(client, namespace, &child).await?,
            ChildKind::ConfigMap => child_meta::<ConfigMap>(client, namespace, &child).await?,
        };
        states.push((kind, finalizer::child_state(meta.as_ref(), &uid)));
    }
    match finalizer::cleanup(&states) {
        Cleanup::Delete(kinds) => {
            for kind in kinds {
                let child = kind.name(&name);
                match kind {
                    ChildKind::Deployment => {
                        delete::<Deployment>(client, namespace, &child).await?
                    }
                    ChildKind::Service => delete::<Service>(client, namespace, &child).await?,
                    ChildKind::ConfigMap => delete::<ConfigMap>(client, namespace, &child).await?,
                }
                println!("{namespace}/{name}: deleting {kind} {child}");
            }
            Ok(Next::After(CLEANUP_POLL))
        }
        Cleanup::Wait => {
            println!("{namespace}/{name}: waiting for children to go: {states:?}");
            Ok(Next::After(CLEANUP_POLL))
        }
        Cleanup::RemoveFinalizer => {
            if let Some(patch) = finalizer::remove_patch(&site.metadata) {
                Api::<StaticSite>::namespaced(client.clone(), namespace)
                    .patch(&name, &PatchParams::default(), &json_patch(patch)?)
                    .await
                    .map_err(api_error(format!("removing the finalizer of {namespace}/{name}")))?;
            }
            println!("{namespace}/{name}: children gone, finalizer removed");
            Ok(Next::OnChange)
        }
    }
}

/// The metadata of `name` of kind `K`, `None` when it does not exist.
async fn child_meta<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ObjectMeta>, Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let found = Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(api_error(format!("reading {} {namespace}/{name}", K::kind(&()))))?;
    Ok(found.map(|k| k.meta().clone()))
}

/// Delete `name` of kind `K` (its dependents in the background); gone already is fine.
async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Api {
            action: format!("deleting {} {namespace}/{name}", K::kind(&())),
            source,
        }),
    }
}
