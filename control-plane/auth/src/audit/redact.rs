//! What an audit event must never carry: Secret values and tokens. kube-apiserver leaves
//! this to the policy author (its example policies log Secrets at `Metadata`); Skiff scrubs
//! request and response bodies whatever the level, so that no policy can put a Secret's
//! value or a credential into the audit log. Also kube's `omitManagedFields`.

use serde_json::Value;

/// What a scrubbed value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `kubectl apply` keeps the whole applied object, a Secret's values included, here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replace secret material in `body`, the request or response body of a request on
/// `resource`/`subresource`, with [`REDACTED`]:
/// - the values of a Secret's `data` and `stringData` and its last-applied annotation
///   (in Secrets, SecretLists, tables and watch events of Secrets, and in any object of kind
///   `Secret` wherever it appears);
/// - every `value` of a JSON patch of a Secret, and the data of merge patches of one;
/// - `status.token` of a TokenRequest (`serviceaccounts/token`) and `spec.token` of a
///   TokenReview.
///
/// Keys stay: which keys a Secret has is metadata, as `kubectl describe` shows it.
pub fn redact_secret_material(body: &mut Value, resource: &str, subresource: &str) {
    let secrets = resource == "secrets";
    if resource == "serviceaccounts" && subresource == "token" {
        redact_at(body, &["status", "token"]);
    }
    if resource == "tokenreviews" {
        redact_at(body, &["spec", "token"]);
    }
    walk(body, secrets);
}

/// `in_secret`: `value` is (part of) a body about Secrets, so any `data`/`stringData` map in
/// it is a Secret's, whatever its `kind` says (patches and list items have none).
fn walk(value: &mut Value, in_secret: bool) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, in_secret)),
        Value::Object(map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            let is_secret = kind == "Secret" || (in_secret && kind.is_empty());
            if is_secret {
                for key in ["data", "stringData"] {
                    if let Some(data) = map.get_mut(key) {
                        redact_values(data);
                    }
                }
            }
            // Other kinds inside a body about Secrets (Table rows, PartialObjectMetadata)
            // have no data but may carry the last-applied annotation.
            if (is_secret || in_secret)
                && let Some(annotation) = map
                    .get_mut("metadata")
                    .and_then(|m| m.get_mut("annotations"))
                    .and_then(|a| a.get_mut(LAST_APPLIED))
            {
                *annotation = Value::String(REDACTED.to_string());
            }
            // A JSON patch operation on a Secret: its value may be anything under data.
            if in_secret
                && map.contains_key("op")
                && map.contains_key("path")
                && let Some(v) = map.get_mut("value")
            {
                *v = Value::String(REDACTED.to_string());
            }
            match kind.as_str() {
                "TokenRequest" => redact_at(value, &["status", "token"]),
                "TokenReview" => redact_at(value, &["spec", "token"]),
                _ => {}
            }
            let children_in_secret = in_secret || kind == "SecretList";
            if let Value::Object(map) = value {
                map.values_mut().for_each(|v| walk(v, children_in_secret));
            }
        }
        _ => {}
    }
}

/// Every value of a `data` map (or the whole field, if it is not a map).
fn redact_values(data: &mut Value) {
    match data {
        Value::Object(m) => {
            m.values_mut().for_each(|v| *v = Value::String(REDACTED.to_string()));
        }
        Value::Null => {}
        other => *other = Value::String(REDACTED.to_string()),
    }
}

fn redact_at(value: &mut Value, path: &[&str]) {
    let mut cur = value;
    for key in path {
        match cur.get_mut(*key) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if !cur.is_null() {
        *cur = Value::String(REDACTED.to_string());
    }
}

/// Drop `metadata.managedFields` from `body` and from each of its `items` (kube's
/// `omitManagedFields`: they are long and say little an auditor wants).
pub fn omit_managed_fields(body: &mut Value) {
    fn strip(v: &mut Value) {
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    strip(body);
    if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip);
    }
}
