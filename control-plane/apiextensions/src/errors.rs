//! Field errors as apimachinery's `field.Error`: a type, a path, the bad value and a detail,
//! rendered the way kube-apiserver puts them in a `Status` (`spec.replicas: Invalid value: …`).

use serde_json::Value;

/// apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// The `StatusCause.reason` kube-apiserver gives this type (`FieldValueInvalid`, …).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The words `field.Error.ErrorBody` starts with.
    fn words(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::TypeInvalid => "Invalid value",
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    /// The field's path as kube writes it: `spec.containers[0].name`, `metadata.labels[a]`.
    pub field: String,
    /// The value found, shown after the error's words; `None` for types that never show one.
    pub bad_value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: ErrorType,
        field: impl Into<String>,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError { kind, field: field.into(), bad_value, detail: detail.into() }
    }

    pub fn invalid(field: impl Into<String>, bad_value: Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Some(bad_value), detail)
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }

    pub fn not_supported(field: impl Into<String>, bad_value: Value, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, Some(bad_value), detail)
    }

    /// `Invalid value: <shown>: detail`, for a bad value kube prints as Go marshals a Go
    /// struct (its field names, in field order), which a JSON `Value` cannot hold: the text
    /// is kept in front of `detail` (`bad_value` is `None`), so `body()` reads as kube's.
    pub fn invalid_shown(field: impl Into<String>, shown: &str, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, field, None, format!("{shown}: {detail}"))
    }

    pub fn duplicate(field: impl Into<String>, bad_value: Value) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(bad_value), "")
    }

    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// `field.Error.ErrorBody()`: `Invalid value: "x": detail`, `Required value`, ….
    pub fn body(&self) -> String {
        let mut s = self.kind.words().to_string();
        let shows_value = !matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if shows_value && let Some(v) = &self.bad_value {
            s.push_str(": ");
            s.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// A value as `field.Error` prints it: strings quoted, numbers and booleans bare, `null` as
/// `"null"`, and objects and arrays as the JSON they are.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_read_as_kube_writes_them() {
        let e = FieldError::invalid(
            "spec.a",
            json!("string"),
            "spec.a in body must be of type integer: \"string\"",
        );
        assert_eq!(
            e.to_string(),
            r#"spec.a: Invalid value: "string": spec.a in body must be of type integer: "string""#
        );
        assert_eq!(FieldError::required("spec.b", "").to_string(), "spec.b: Required value");
        let ns = FieldError::not_supported("spec.c", json!("x"), &["a", "b"]);
        assert_eq!(ns.to_string(), r#"spec.c: Unsupported value: "x": supported values: "a", "b""#);
        assert_eq!(ns.reason(), "FieldValueNotSupported");
    }
}
