//! Review resources (`authorization.k8s.io` access and rules reviews, `authentication.k8s.io`
//! self-subject review): answered on `create`, never stored. Skiff has no authorization layer
//! yet, so every authenticated user may do everything, and the answers say exactly that.

use serde_json::{Value, json};
use skiff_api::ResourceInfo;

use crate::errors::ApiError;

const REASON: &str =
    "Skiff does not enforce authorization yet: every authenticated user is allowed";

/// The user every authenticated request acts as until users and RBAC land.
pub const ADMIN_USER: &str = "skiff-admin";

/// Answer a review `obj` of `res` (already type-checked).
pub fn answer(res: &ResourceInfo, mut obj: Value) -> Result<Value, ApiError> {
    let status = match res.kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" => {
            let spec = obj.get("spec");
            let has_attrs = spec.is_some_and(|s| {
                s.get("resourceAttributes").is_some() || s.get("nonResourceAttributes").is_some()
            });
            if !has_attrs {
                return Err(ApiError::invalid(
                    res.kind,
                    "",
                    vec![(
                        "spec.resourceAttributes".into(),
                        "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                    )],
                ));
            }
            json!({"allowed": true, "reason": REASON})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "SelfSubjectReview" => json!({
            "userInfo": {"username": ADMIN_USER, "groups": ["system:masters", "system:authenticated"]},
        }),
        other => {
            return Err(ApiError::method_not_allowed(format!("{other} cannot be created")));
        }
    };
    obj["status"] = status;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    } else {
        obj["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::Registry;

    #[test]
    fn access_reviews_should_be_allowed_and_need_attributes() {
        let reg = Registry::builtin();
        let r = reg.lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap();
        let ok =
            answer(r, json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}))
                .unwrap();
        assert_eq!(ok["status"]["allowed"], true);
        assert_eq!(answer(r, json!({"spec": {}})).unwrap_err().code, 422);
    }
}
