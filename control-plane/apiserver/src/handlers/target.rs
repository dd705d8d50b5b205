//! Resource URLs: the segments after `/api/v1` or `/apis/{group}/{version}` parsed into the
//! resource, namespace, name and subresource a request is about.

use skiff_api::{ResourceInfo, object_key};

use crate::State;
use crate::errors::ApiError;

/// A parsed resource URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource as stored (for a view such as events.k8s.io/v1 Events, the storage one).
    pub resource: ResourceInfo,
    /// The resource the URL named, when it is a view of `resource` in another version.
    pub view: Option<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn key(&self) -> Option<String> {
        self.name.as_deref().map(|n| object_key(&self.resource, self.namespace.as_deref(), n))
    }
}

/// Parse the segments after `/api/v1` or `/apis/{group}/{version}`.
pub fn parse_target(
    state: &State,
    group: &str,
    version: &str,
    segs: &[&str],
) -> Result<Target, ApiError> {
    let registry = crate::crds::registry(state);
    let lookup =
        |plural: &str| registry.lookup(group, version, plural).cloned().ok_or_else(not_served);
    // A view is served from its storage resource and converted on the way in and out.
    let with_storage = |r: ResourceInfo| -> (ResourceInfo, Option<ResourceInfo>) {
        match r.storage.and_then(|(g, v)| registry.lookup(g, v, r.plural)) {
            Some(storage) => (storage.clone(), Some(r)),
            None => (r, None),
        }
    };
    let t =
        |resource: ResourceInfo, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
            let (resource, view) = with_storage(resource);
            Target {
                resource,
                view,
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
                subresource: sub.map(str::to_string),
            }
        };
    let namespaced_plural =
        |p: &str| registry.lookup(group, version, p).is_some_and(|r| r.namespaced);
    let target = match segs {
        [res] => t(lookup(res)?, None, None, None),
        ["namespaces", ns, res] if namespaced_plural(res) => t(lookup(res)?, Some(ns), None, None),
        ["namespaces", ns, res, name] => t(lookup(res)?, Some(ns), Some(name), None),
        ["namespaces", ns, res, name, sub] => t(lookup(res)?, Some(ns), Some(name), Some(sub)),
        [res, name] => t(lookup(res)?, None, Some(name), None),
        [res, name, sub] => t(lookup(res)?, None, Some(name), Some(sub)),
        _ => return Err(not_served()),
    };
    if target.name.is_some() && target.resource.namespaced && target.namespace.is_none() {
        return Err(not_served());
    }
    // A cluster-scoped resource has no namespaced path (kube serves none): authorization
    // would otherwise see the namespace while the object reached has none.
    if target.namespace.is_some() && !target.resource.namespaced {
        return Err(not_served());
    }
    if let Some(sub) = &target.subresource
        && !target.resource.subresources.contains(&sub.as_str())
    {
        return Err(not_served());
    }
    if let Some(name) = &target.name
        && (name.is_empty() || name.contains('/'))
    {
        return Err(ApiError::bad_request("resource name may not be empty or contain '/'"));
    }
    Ok(target)
}

/// A URL naming no resource this server serves, in Kubernetes' words.
fn not_served() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}
