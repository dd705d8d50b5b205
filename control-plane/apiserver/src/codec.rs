//! Content negotiation for Kubernetes' protobuf encoding: protobuf request bodies become the
//! JSON every handler reads, and JSON answers become protobuf for clients that prefer it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use skiff_api::protobuf::{self, ProtoError};

use crate::errors::ApiError;

/// Largest answer re-encoded as protobuf; larger ones stay JSON.
const MAX_REENCODE: usize = 64 * 1024 * 1024;

fn is_protobuf(media_type: &str) -> bool {
    media_type.split(';').next().is_some_and(|b| b.trim() == protobuf::CONTENT_TYPE)
}

/// Whether the client's Accept header lists protobuf before any JSON (as client-go's
/// `application/vnd.kubernetes.protobuf, application/json` does). Table requests stay JSON.
pub fn wants_protobuf(accept: &str) -> bool {
    for media in accept.split(',') {
        if media.contains("as=") {
            continue;
        }
        if is_protobuf(media) {
            return true;
        }
        let base = media.split(';').next().unwrap_or("").trim();
        if matches!(base, "application/json" | "application/*" | "*/*") {
            return false;
        }
    }
    false
}

/// The request body as JSON: a protobuf body is decoded, and its content type rewritten so
/// the handlers read it like any JSON body.
pub fn json_body(headers: &mut HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_protobuf(ct) {
        return Ok(body);
    }
    let obj = protobuf::decode(&body).map_err(|e| match e {
        ProtoError::UnknownKind { .. } => {
            ApiError::new(415, "UnsupportedMediaType", format!("{e}; send it as application/json"))
        }
        e => ApiError::bad_request(format!("the request body is not valid protobuf: {e}")),
    })?;
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()))
}

/// Whether the client's Accept header prefers YAML (`application/yaml`) to JSON and protobuf.
pub fn wants_yaml(accept: &str) -> bool {
    for media in accept.split(',') {
        if media.contains("as=") {
            continue;
        }
        let base = media.split(';').next().unwrap_or("").trim();
        match base {
            "application/yaml" => return true,
            "" => continue,
            _ => return false,
        }
    }
    false
}

/// Answer in protobuf when the client prefers it and the object has a protobuf form; anything
/// else (watch streams, logs, Tables, kinds without a message) is passed through unchanged.
pub async fn negotiate(
    accept: &str,
    streaming: bool,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    let yaml = wants_yaml(accept);
    if streaming || !(yaml || wants_protobuf(accept)) {
        return result;
    }
    let resp = result.unwrap_or_else(IntoResponse::into_response);
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct == "application/json");
    if !json {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REENCODE).await else {
        return Err(ApiError::internal("the response was too large to re-encode"));
    };
    if yaml {
        let text = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| serde_yaml_ng::to_string(&v).ok());
        if let Some(text) = text {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            parts.headers.remove(header::CONTENT_LENGTH);
            return Ok(Response::from_parts(parts, Body::from(text)));
        }
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|v| v.get("kind").and_then(Value::as_str) != Some("Table"))
        .map(|v| protobuf::encode(&v));
    let body = match encoded {
        Some(Ok(pb)) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(protobuf::CONTENT_TYPE));
            Body::from(pb)
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "answering JSON: the object has no protobuf form");
            Body::from(bytes)
        }
        None => Body::from(bytes),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_yaml_should_need_yaml_first() {
        assert!(wants_yaml("application/yaml"));
        assert!(wants_yaml("application/yaml, application/json"));
        assert!(!wants_yaml("application/json, application/yaml"));
        assert!(!wants_yaml(""));
    }

    #[test]
    fn wants_protobuf_should_follow_the_order_of_the_accept_header() {
        assert!(wants_protobuf("application/vnd.kubernetes.protobuf, application/json"));
        assert!(wants_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(!wants_protobuf("application/json, application/vnd.kubernetes.protobuf"));
        assert!(!wants_protobuf("application/json"));
        assert!(!wants_protobuf(""));
        assert!(!wants_protobuf("*/*"));
        assert!(!wants_protobuf(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"
        ));
    }

    #[test]
    fn json_body_should_decode_protobuf_and_reject_unknown_kinds_with_415() {
        let ns =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(protobuf::CONTENT_TYPE));
        let pb = protobuf::encode(&ns).expect("encode");
        let body = json_body(&mut headers, Bytes::from(pb)).expect("decoded");
        assert_eq!(serde_json::from_slice::<Value>(&body).expect("json"), ns);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");

        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(protobuf::CONTENT_TYPE));
        let err = json_body(&mut headers, Bytes::from_static(b"not protobuf")).expect_err("bad");
        assert_eq!(err.code, 400);
        let mut unknown = protobuf::MAGIC.to_vec();
        // Envelope with TypeMeta {apiVersion "example.com/v1", kind "Widget"}.
        unknown.extend([0x0a, 24, 0x0a, 14]);
        unknown.extend(b"example.com/v1");
        unknown.extend([0x12, 6]);
        unknown.extend(b"Widget");
        let err = json_body(&mut headers, Bytes::from(unknown)).expect_err("unknown kind");
        assert_eq!(err.code, 415);
    }
}
