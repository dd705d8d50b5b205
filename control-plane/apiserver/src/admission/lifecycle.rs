//! `NamespaceLifecycle`, as kube-apiserver's plugin: nothing new goes into a namespace that
//! does not exist or is being deleted, and the namespaces the cluster itself needs
//! (`default`, `kube-system`, `kube-public`) cannot be deleted.

use super::{Operation, Request};
use crate::State;
use crate::errors::ApiError;
use crate::handlers::decode;

/// Namespaces that may not be deleted.
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

pub(super) async fn admit(state: &State, req: &Request<'_>) -> Result<(), ApiError> {
    if req.is("", "Namespace") && req.operation == Operation::Delete && IMMORTAL.contains(&req.name)
    {
        return Err(super::forbidden(req.res, req.name, "this namespace may not be deleted"));
    }
    // A review or a subresource create (eviction, token, binding) names an object that
    // exists; only new objects are checked.
    if req.operation == Operation::Create
        && req.res.namespaced
        && !req.namespace.is_empty()
        && req.subresource.is_empty()
    {
        ensure_namespace(state, req).await?;
    }
    Ok(())
}

/// New objects may go into the request's namespace only while it exists and is not being
/// deleted. This reads the namespace from the watch cache (no store round trip per create);
/// one the cache does not know yet (just created) is read from the store.
async fn ensure_namespace(state: &State, req: &Request<'_>) -> Result<(), ApiError> {
    let ns = req.namespace;
    let key = format!("/registry/namespaces/{ns}");
    let terminating = || ApiError {
        details: Some(serde_json::json!({"causes": [{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {ns} is being terminated"),
            "field": "metadata.namespace",
        }]})),
        ..super::forbidden(
            req.res,
            req.name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )
    };
    if let Some(cached) = state.cached("", "namespaces", &key) {
        return if cached.is_terminating() { Err(terminating()) } else { Ok(()) };
    }
    match state.store.get(&key).await.map_err(|e| ApiError::from_store(e, "namespaces", ns))? {
        None => Err(ApiError::not_found("namespaces", ns)),
        Some(kv) => {
            let obj = decode(&kv)?;
            if obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(terminating());
            }
            Ok(())
        }
    }
}
