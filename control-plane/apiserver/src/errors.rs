//! API errors as Kubernetes `Status` objects with the code and reason clients branch on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_store::StoreError;

/// One failed request, rendered as a `metav1.Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "kind": resource})),
            ..Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
        }
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "kind": resource})),
            ..Self::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
        }
    }

    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(json!({"name": name, "kind": resource})),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
            )
        }
    }

    /// 422 with one cause per invalid field, like Kubernetes' `field.ErrorList`.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
            .collect();
        ApiError {
            details: Some(json!({"name": name, "kind": kind, "causes": causes})),
            ..Self::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {}", summary.join(", ")),
            )
        }
    }

    /// 422 Invalid for field errors of a `group` `kind`, in kube-apiserver's words:
    /// `Widget.example.com "w" is invalid: spec.size: Invalid value: …`, the errors of more
    /// than one bracketed, each a cause with its own reason.
    pub fn invalid_fields(
        group: &str,
        kind: &str,
        name: &str,
        errors: &[skiff_apiextensions::FieldError],
    ) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let summary = match texts.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut details = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError {
            details: Some(details),
            ..Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {summary}"))
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }

    /// Map a store failure on object `name` of `resource`.
    pub fn from_store(err: StoreError, resource: &str, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists(_) => Self::already_exists(resource, name),
            StoreError::NotFound(_) => Self::not_found(resource, name),
            StoreError::Conflict { .. } => Self::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StoreError::Compacted { requested, oldest } => {
                Self::gone(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::FutureRevision { requested, current } => ApiError {
                details: Some(json!({
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                })),
                ..Self::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                )
            },
            StoreError::WatchLagged => Self::gone("watch fell behind; relist and watch again"),
            StoreError::Unavailable(m) => ApiError {
                details: Some(json!({"retryAfterSeconds": 1})),
                ..Self::new(503, "ServiceUnavailable", m)
            },
            StoreError::Storage(m) => Self::internal(format!("storage error: {m}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::handlers::json_body_bytes(&self.to_status());
        (self.status_code(), [(axum::http::header::CONTENT_TYPE, "application/json")], body)
            .into_response()
    }
}
