//! Requests to a view: another version of a stored resource (events.k8s.io/v1 Events over
//! core/v1 ones), served as the stored resource with the bodies converted both ways.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::ResourceInfo;

use super::{Target, dispatch_stored, field_validation, parse_body, query_bool, with_warnings};
use crate::errors::ApiError;
use crate::patch::PatchType;
use crate::{State, convert, objects};

/// A request to a view (another version of a stored resource): the body is converted to the
/// storage shape, the request served as for the stored resource, and the answer converted back.
pub(super) async fn dispatch_view(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    view: &ResourceInfo,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let mut warnings = Vec::new();
    let converted;
    let mut json_headers = headers.clone();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let apply =
        method == Method::PATCH && PatchType::from_content_type(ct) == Some(PatchType::Apply);
    let body = if apply {
        // An applied configuration is a (partial) object in the view's shape.
        let mut obj: Value = serde_yaml_ng::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}"))
        })?;
        objects::check_type(&mut obj, view)?;
        let stored =
            convert::to_storage_via(state, obj, view, &target.resource.api_version()).await?;
        converted = skiff_api::gojson::to_vec(&stored);
        &converted[..]
    } else if matches!(method.as_str(), "POST" | "PUT") && target.subresource.is_none() {
        let mut obj = parse_body(headers, body)?;
        objects::check_type(&mut obj, view)?;
        warnings = field_validation(view, &obj, q)?;
        let stored =
            convert::to_storage_via(state, obj, view, &target.resource.api_version()).await?;
        converted = skiff_api::gojson::to_vec(&stored);
        json_headers
            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        &converted[..]
    } else {
        body
    };
    // A Table of a version its CRD's webhook converts is made of converted objects: the
    // stored ones are read as JSON, converted, then printed with the version's columns.
    let table = super::read::wanted_table(headers, q)
        .filter(|_| method == Method::GET && !query_bool(q, "watch"))
        .filter(|_| crate::crds::conversion::needs_webhook(view));
    if table.is_some() {
        json_headers.insert(header::ACCEPT, http::HeaderValue::from_static("application/json"));
    }
    let resp = dispatch_stored(state, method, target, &json_headers, body, q).await?;
    if query_bool(q, "watch") {
        return Ok(resp);
    }
    let resp = convert_response(state, resp, view).await?;
    let resp = match table {
        Some(include) => table_of(resp, view, include).await?,
        None => resp,
    };
    Ok(with_warnings(resp, &warnings))
}

/// The Table of a converted JSON answer (one object or a list).
async fn table_of(
    resp: Response,
    view: &ResourceInfo,
    include: &str,
) -> Result<Response, ApiError> {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading a response to print: {e}")))?;
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    if !parts.status.is_success() {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    let meta = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let (objects, rv, next) = if v.get("kind").and_then(Value::as_str) == Some(view.list_kind) {
        let items = v.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        (items, meta("/metadata/resourceVersion"), meta("/metadata/continue"))
    } else {
        (vec![v.clone()], meta("/metadata/resourceVersion"), None)
    };
    let table = crate::table::to_table(
        view,
        &objects,
        rv.as_deref().unwrap_or(""),
        next.as_deref().filter(|c| !c.is_empty()),
        include,
    );
    Ok(super::json_response(parts.status, &table))
}

/// Convert a buffered JSON answer about stored objects into the view's version.
async fn convert_response(
    state: &State,
    resp: Response,
    view: &ResourceInfo,
) -> Result<Response, ApiError> {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading a response to convert: {e}")))?;
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if kind == view.kind {
        v = convert::from_storage_via(state, vec![v], view).await?.pop().unwrap_or(Value::Null);
    } else if kind == view.list_kind {
        v["apiVersion"] = json!(view.api_version());
        if let Some(Value::Array(items)) = v.get_mut("items") {
            *items = convert::from_storage_via(state, std::mem::take(items), view).await?;
            if !view.is_custom() {
                super::strip_type_meta(items);
            }
        }
    }
    Ok(Response::from_parts(parts, Body::from(super::json_body_bytes(&v))))
}
