//! Review resources, answered on `create` and never stored: `authorization.k8s.io`
//! SubjectAccessReview, SelfSubjectAccessReview and SelfSubjectRulesReview from the real
//! authorizer, and `authentication.k8s.io` SelfSubjectReview (`kubectl auth whoami`).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_auth::{Attributes, UserInfo};

use crate::State;
use crate::errors::ApiError;

fn attributes_of(res: &ResourceInfo, spec: &Value) -> Result<Attributes, ApiError> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
        (Some(r), None) if r.is_object() => Ok(Attributes {
            verb: text(r, "verb"),
            resource_request: true,
            api_group: text(r, "group"),
            api_version: text(r, "version"),
            namespace: text(r, "namespace"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            path: String::new(),
        }),
        (None, Some(n)) if n.is_object() => Ok(Attributes::non_resource(&text(n, "verb"), &text(n, "path"))),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            res.kind,
            "",
            vec![("spec.nonResourceAttributes".into(), "Invalid value: \"null\": cannot be specified in combination with resourceAttributes".into())],
        )),
        _ => Err(ApiError::invalid(
            res.kind,
            "",
            vec![(
                "spec.resourceAttributes".into(),
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            )],
        )),
    }
}

/// A LocalSubjectAccessReview is about its URL's namespace: its metadata takes the namespace,
/// and the attributes must name the same one (kube does not fill it in).
fn local_review_namespace(obj: &mut Value, namespace: &str) -> Result<(), ApiError> {
    let meta = obj.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(m)) = meta {
        match m.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                m.insert("namespace".into(), json!(namespace));
            }
            Some(ns) if ns == namespace => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let invalid = |field: &str, detail: String| {
        ApiError::invalid("LocalSubjectAccessReview", "", vec![(field.into(), detail)])
    };
    if let Some(n) = obj.pointer("/spec/nonResourceAttributes").filter(|v| !v.is_null()) {
        return Err(invalid(
            "spec.nonResourceAttributes",
            format!("Invalid value: {n}: disallowed on this kind of request"),
        ));
    }
    let asked = obj.pointer("/spec/resourceAttributes/namespace").and_then(Value::as_str);
    if obj.pointer("/spec/resourceAttributes").is_some() && asked.unwrap_or("") != namespace {
        return Err(invalid(
            "spec.resourceAttributes.namespace",
            format!("Invalid value: {}: must match metadata.namespace", json!(asked.unwrap_or(""))),
        ));
    }
    Ok(())
}

/// The user a SubjectAccessReview asks about (`spec.user`, `groups`, `uid`, `extra`).
fn subject_of(spec: &Value) -> Result<UserInfo, ApiError> {
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "SubjectAccessReview",
            "",
            vec![(
                "spec.user".into(),
                "Invalid value: \"\": at least one of user or group must be specified".into(),
            )],
        ));
    }
    let extra: BTreeMap<String, Vec<String>> =
        spec.get("extra").and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
    Ok(UserInfo {
        name: user,
        uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
        groups,
        extra,
    })
}

fn rule_json(r: &skiff_auth::rbac::PolicyRule) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// Answer a review `obj` of `res` (already type-checked) for the request's user.
pub async fn answer(
    state: &State,
    res: &ResourceInfo,
    mut obj: Value,
    namespace: Option<&str>,
) -> Result<Value, ApiError> {
    if res.kind == "LocalSubjectAccessReview" {
        local_review_namespace(&mut obj, namespace.unwrap_or(""))?;
    }
    let requester = crate::authn::current_user()
        .map(|u| (*u).clone())
        .unwrap_or_else(crate::authn::apiserver_user);
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let status = match res.kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let attrs = attributes_of(res, &spec)?;
            let subject = if res.kind != "SelfSubjectAccessReview" {
                subject_of(&spec)?
            } else {
                requester.clone()
            };
            let decision = crate::authz::authorize(state, &subject, &attrs);
            let mut status = json!({"allowed": decision.is_allowed()});
            if matches!(decision, skiff_auth::Decision::Deny(_)) {
                status["denied"] = json!(true);
            }
            if !decision.reason().is_empty() {
                status["reason"] = json!(decision.reason());
            }
            status
        }
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            let (rules, errors) = crate::authz::rules_for(state, &requester, ns);
            let resource: Vec<Value> = rules
                .iter()
                .filter(|r| !r.resources.is_empty() || !r.api_groups.is_empty())
                .map(rule_json)
                .collect();
            let non_resource: Vec<Value> = rules
                .iter()
                .filter(|r| !r.non_resource_urls.is_empty())
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect();
            let mut status = json!({
                "resourceRules": resource,
                "nonResourceRules": non_resource,
                "incomplete": !errors.is_empty(),
            });
            if !errors.is_empty() {
                status["evaluationError"] = json!(errors.join(", "));
            }
            status
        }
        "SelfSubjectReview" => json!({"userInfo": requester}),
        "TokenReview" => crate::certificates::token_review_status(state, &mut obj).await?,
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

/// `componentstatuses`: the health of the control plane's parts, computed on each read
/// (deprecated in Kubernetes, still served with its warning). Skiff runs the scheduler and the
/// controllers in the api server's process; `etcd-0` is the store, probed with a read.
pub async fn component_statuses(
    state: &State,
    method: &axum::http::Method,
    target: &crate::handlers::Target,
    headers: &axum::http::HeaderMap,
    q: &std::collections::HashMap<String, String>,
) -> Result<axum::response::Response, ApiError> {
    if method != axum::http::Method::GET || crate::handlers::query_bool(q, "watch") {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let healthy = |name: &str| {
        json!({"metadata": {"name": name},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]})
    };
    let store = match state.store.get("/registry/namespaces/default").await {
        Ok(_) => healthy("etcd-0"),
        Err(e) => json!({"metadata": {"name": "etcd-0"},
            "conditions": [{"type": "Healthy", "status": "False", "error": e.to_string()}]}),
    };
    let mut items = vec![healthy("scheduler"), healthy("controller-manager"), store];
    if let Some(name) = &target.name {
        items.retain(|c| c["metadata"]["name"] == json!(name));
    }
    for c in &mut items {
        c["kind"] = json!("ComponentStatus");
        c["apiVersion"] = json!("v1");
    }
    let warning = vec!["v1 ComponentStatus is deprecated in v1.19+".to_string()];
    if let Some(include) = crate::handlers::wanted_table(headers, q) {
        if items.is_empty() {
            let name = target.name.as_deref().unwrap_or("");
            return Err(ApiError::not_found("componentstatus", name));
        }
        let table = crate::table::to_table(&target.resource, &items, "", None, include);
        return Ok(crate::handlers::with_warnings(
            crate::handlers::json_response(axum::http::StatusCode::OK, &table),
            &warning,
        ));
    }
    let body = match &target.name {
        Some(name) => items.pop().ok_or_else(|| ApiError::not_found("componentstatus", name))?,
        None => {
            crate::handlers::strip_type_meta(&mut items);
            json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items})
        }
    };
    Ok(crate::handlers::with_warnings(
        crate::handlers::json_response(axum::http::StatusCode::OK, &body),
        &warning,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::Registry;

    #[test]
    fn access_reviews_should_need_exactly_one_kind_of_attributes() {
        let reg = Registry::builtin();
        let r = reg.lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap();
        let a = attributes_of(
            r,
            &json!({"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "ns"}}),
        )
        .unwrap();
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("get", "pods", "ns")
        );
        assert_eq!(attributes_of(r, &json!({})).unwrap_err().code, 422);
        let both = json!({"resourceAttributes": {}, "nonResourceAttributes": {}});
        assert_eq!(attributes_of(r, &both).unwrap_err().code, 422);
        assert_eq!(subject_of(&json!({})).unwrap_err().code, 422);
        let s = subject_of(&json!({"user": "jane", "groups": ["g"]})).unwrap();
        assert_eq!((s.name.as_str(), s.groups.len()), ("jane", 1));
    }
}
