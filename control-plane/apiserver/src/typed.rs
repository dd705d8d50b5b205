//! Type checks of built-in kinds against their real schema (the k8s-openapi structs): a
//! wrong type is a 400, and fields the schema does not know are reported for
//! `fieldValidation`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::ApiError;

fn roundtrip<T: DeserializeOwned + Serialize>(kind: &str, obj: &Value) -> Result<Value, ApiError> {
    let typed: T = serde_json::from_value(obj.clone())
        .map_err(|e| ApiError::bad_request(format!("{kind} in version is invalid: {e}")))?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Paths of fields in `obj` that the kind's schema does not have. Unknown kinds have none.
pub fn check(kind: &str, obj: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::{coordination::v1 as coordination, core::v1 as core, node::v1 as node};
    let known = match kind {
        "Pod" => roundtrip::<core::Pod>(kind, obj)?,
        "Namespace" => roundtrip::<core::Namespace>(kind, obj)?,
        "Node" => roundtrip::<core::Node>(kind, obj)?,
        "Event" => roundtrip::<core::Event>(kind, obj)?,
        "RuntimeClass" => roundtrip::<node::RuntimeClass>(kind, obj)?,
        "Lease" => roundtrip::<coordination::Lease>(kind, obj)?,
        _ => return Ok(Vec::new()),
    };
    let mut unknown = Vec::new();
    diff(obj, &known, &mut String::new(), &mut unknown);
    Ok(unknown)
}

fn diff(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => diff(v, kv, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                diff(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_should_find_unknown_fields_with_paths() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Never"}], "bogus": 1}});
        let unknown = check("Pod", &pod).unwrap();
        assert_eq!(
            unknown,
            vec!["spec.bogus".to_string(), "spec.containers[0].imagePullPolicyy".to_string()]
        );
    }

    #[test]
    fn check_should_reject_wrong_types() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert_eq!(check("Pod", &pod).unwrap_err().code, 400);
    }
}
