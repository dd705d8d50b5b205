use skiff_policy_sdk::{PatchOp, json};

use super::*;

fn settings() -> Value {
    json!({"labels": {"team": "unknown", "app.kubernetes.io/managed-by": "skiff"}})
}

fn request(operation: &str, object: Value) -> Request {
    Request::from_json(
        &json!({"kind": {"kind": "ConfigMap"}, "operation": operation, "object": object})
            .to_string(),
    )
    .unwrap()
}

#[test]
fn settings_should_refuse_missing_empty_or_invalid_labels() {
    assert!(DefaultLabel::validate_settings(&json!({})).is_err());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {}})).is_err());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {"team": 1}})).is_err());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {"bad key": "x"}})).is_err());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {"team": "-x"}})).is_err());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {"team": "a".repeat(64)}})).is_err());
    assert!(DefaultLabel::validate_settings(&settings()).is_ok());
    assert!(DefaultLabel::validate_settings(&json!({"labels": {"team": ""}})).is_ok());
}

#[test]
fn label_syntax_should_follow_kubernetes() {
    for key in ["team", "app.kubernetes.io/name", "a_b.c-d", "x/y"] {
        assert!(is_label_key(key), "{key}");
    }
    for key in ["", "/name", "Example.com/name", "a//b", "-a", "a/", "a.-b/c"] {
        assert!(!is_label_key(key), "{key}");
    }
}

#[test]
fn validate_should_create_the_labels_map_when_absent() {
    let verdict =
        DefaultLabel::validate(&request("CREATE", json!({"metadata": {"name": "a"}})), &settings());
    assert!(verdict.allowed);
    assert_eq!(
        verdict.patch,
        vec![PatchOp::add(
            "/metadata/labels",
            json!({"team": "unknown", "app.kubernetes.io/managed-by": "skiff"})
        )]
    );
}

#[test]
fn validate_should_add_only_missing_labels_and_never_overwrite() {
    let object = json!({"metadata": {"name": "a", "labels": {"team": "web"}}});
    let verdict = DefaultLabel::validate(&request("UPDATE", object), &settings());
    assert_eq!(
        verdict.patch,
        vec![PatchOp::add("/metadata/labels/app.kubernetes.io~1managed-by", "skiff")]
    );
}

#[test]
fn validate_should_not_patch_a_labelled_object() {
    let object =
        json!({"metadata": {"labels": {"team": "web", "app.kubernetes.io/managed-by": "me"}}});
    let verdict = DefaultLabel::validate(&request("CREATE", object), &settings());
    assert_eq!(verdict, Verdict::allow());
}

#[test]
fn validate_should_leave_deletes_and_subresources_alone() {
    let delete =
        Request::from_json(r#"{"operation": "DELETE", "oldObject": {"metadata": {}}}"#).unwrap();
    assert_eq!(DefaultLabel::validate(&delete, &settings()), Verdict::allow());
    let mut status = request("UPDATE", json!({"metadata": {}}));
    status.sub_resource = "status".into();
    assert_eq!(DefaultLabel::validate(&status, &settings()), Verdict::allow());
}
