//! Patches: JSON, merge and strategic merge patches applied to the live object, and
//! server-side apply (`application/apply-patch+yaml`), which may create the object.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use skiff_api::ResourceInfo;
use skiff_store::KeyValue;

use super::write::{admit_update, create_admitted, write};
use super::{
    MAX_RETRIES, Target, decode, field_validation, is_dry_run, json_response, read_current,
    too_many_writers, with_warnings,
};
use crate::errors::ApiError;
use crate::objects::{self, resource_version_of};
use crate::patch::{PatchType, apply_patch};
use crate::{State, apply, convert};

/// `PATCH` by the patch type of the request's content type; apply goes to server-side apply.
pub async fn patch(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let patch_type =
        PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    if patch_type == PatchType::StrategicMerge && res.is_custom() {
        // Custom resources have no patch strategies (kube-apiserver's answer).
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if patch_type == PatchType::Apply {
        return server_side_apply(state, target, headers, body, q).await;
    }
    for attempt in 0..MAX_RETRIES {
        let prev = read_current(state, res.plural, &key, &name).await?;
        let old = decode(&prev)?;
        // A view is patched in its own shape.
        let mut new = match &target.view {
            Some(view) => convert::from_storage_via(state, vec![old.clone()], view)
                .await?
                .pop()
                .unwrap_or(Value::Null),
            None => old.clone(),
        };
        apply_patch(&mut new, patch_type, body)?;
        if let Some(view) = &target.view {
            new = convert::to_storage_via(state, new, view, &res.api_version()).await?;
        }
        // A patch that names a resourceVersion is a precondition.
        if let Some(rv) = resource_version_of(&new)
            && rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let warnings = field_validation(res, &new, q)?;
        objects::prepare_update(&mut new, &old, res, target.subresource.as_deref())?;
        apply::record_update(res, target.subresource.as_deref(), Some(&old), &mut new, q, headers)?;
        let admitted = admit_update(state, target, &old, &mut new, is_dry_run(q), attempt).await?;
        if let Some(resp) =
            finish_update(state, res, &key, &prev, &new, q, &warnings, admitted).await?
        {
            return Ok(resp);
        }
    }
    Err(too_many_writers(res.plural, &name))
}

/// The end of a read-modify-write: answer `new` on a dry run, else write it over `prev`
/// with admission's charges. `None` means another writer came first (or a quota changed)
/// and the caller should start over.
#[allow(clippy::too_many_arguments)]
async fn finish_update(
    state: &State,
    res: &ResourceInfo,
    key: &str,
    prev: &KeyValue,
    new: &Value,
    q: &HashMap<String, String>,
    warnings: &[String],
    mut admitted: crate::admission::Admitted,
) -> Result<Option<Response>, ApiError> {
    if is_dry_run(q) {
        return Ok(Some(admitted.decorate(json_response(StatusCode::OK, new))));
    }
    let ops = std::mem::take(&mut admitted.ops);
    match write(state, res, key, prev, new, ops).await {
        Err(e) if e.code == 409 && e.reason == "Conflict" => Ok(None),
        Err(e) => Err(e),
        Ok(obj) => {
            let resp = with_warnings(json_response(StatusCode::OK, &obj), warnings);
            Ok(Some(admitted.decorate(resp)))
        }
    }
}

/// Server-side apply (`application/apply-patch+yaml`); applying to a missing object creates it.
async fn server_side_apply(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let sub = target.subresource.as_deref();
    let request =
        apply::ApplyRequest::parse(res, target.namespace.as_deref(), &name, headers, body, q)?;
    for attempt in 0..MAX_RETRIES {
        let prev =
            state.store.get(&key).await.map_err(|e| ApiError::from_store(e, res.plural, &name))?;
        let Some(prev) = prev else {
            if sub.is_some() {
                return Err(ApiError::not_found(res.plural, &name));
            }
            let mut obj = request.apply_to(res, None, None)?;
            let warnings = field_validation(res, &obj, q)?;
            crate::crds::refuse_create_while_terminating(res)?;
            objects::prepare_create(&mut obj, res, target.namespace.as_deref())?;
            match create_admitted(state, res, obj, is_dry_run(q), warnings).await {
                Err(e) if e.reason == "AlreadyExists" => continue,
                result => return result,
            }
        };
        let old = decode(&prev)?;
        let mut new = request.apply_to(res, sub, Some(&old))?;
        let warnings = field_validation(res, &new, q)?;
        objects::prepare_update(&mut new, &old, res, sub)?;
        let admitted = admit_update(state, target, &old, &mut new, is_dry_run(q), attempt).await?;
        if let Some(resp) =
            finish_update(state, res, &key, &prev, &new, q, &warnings, admitted).await?
        {
            return Ok(resp);
        }
    }
    Err(too_many_writers(res.plural, &name))
}
