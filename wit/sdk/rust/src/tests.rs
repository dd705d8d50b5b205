use serde_json::json;

use super::*;

struct DenyAll;

impl Policy for DenyAll {
    fn validate(request: &Request, _settings: &Value) -> Verdict {
        Verdict::deny(format!("{} {} denied", request.operation, request.name))
    }
}

fn pod_request(object: Value) -> Request {
    Request::from_json(
        &json!({
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["dev", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        })
        .to_string(),
    )
    .unwrap()
}

#[test]
fn request_should_parse_an_admission_request() {
    let request = pod_request(json!({"metadata": {"name": "web"}}));
    assert_eq!(request.operation, Operation::Create);
    assert_eq!(request.kind.api_version(), "v1");
    assert!(request.kind.is("", "Pod"));
    assert_eq!(request.user.username, "alice");
    assert!(request.user.in_group("dev"));
    assert!(request.object.is_some());
    assert_eq!(request.old_object, None);
}

#[test]
fn request_should_default_missing_fields() {
    let request = Request::from_json(r#"{"operation": "DELETE"}"#).unwrap();
    assert_eq!(request.operation, Operation::Delete);
    assert_eq!(request.namespace, "");
    assert_eq!(request.object, None);
    assert!(Request::from_json(r#"{"operation": "PATCH"}"#).is_err());
}

#[test]
fn group_version_kind_should_spell_api_version() {
    let gvk =
        GroupVersionKind { group: "apps".into(), version: "v1".into(), kind: "Deployment".into() };
    assert_eq!(gvk.api_version(), "apps/v1");
}

#[test]
fn decide_should_refuse_unreadable_input_with_500() {
    let verdict = decide::<DenyAll>("not json", "{}");
    assert!(!verdict.allowed);
    assert_eq!(verdict.code, 500);
    let verdict = decide::<DenyAll>(r#"{"operation": "CREATE"}"#, "{");
    assert_eq!(verdict.code, 500);
}

#[test]
fn decide_should_pass_parsed_input_to_the_policy() {
    let verdict = decide::<DenyAll>(r#"{"operation": "UPDATE", "name": "x"}"#, "");
    assert_eq!(verdict, Verdict::deny("UPDATE x denied"));
}

#[test]
fn parse_settings_should_read_empty_text_as_an_empty_object() {
    assert_eq!(parse_settings("").unwrap(), json!({}));
    assert_eq!(parse_settings(" \n").unwrap(), json!({}));
    assert_eq!(parse_settings(r#"{"a": 1}"#).unwrap(), json!({"a": 1}));
    assert!(parse_settings("[").is_err());
}

#[test]
fn settings_as_should_explain_a_mismatch() {
    #[derive(serde::Deserialize, Debug)]
    struct Settings {
        #[allow(dead_code)]
        registries: Vec<String>,
    }
    let err = settings_as::<Settings>(&json!({"registries": 3})).unwrap_err();
    assert!(err.starts_with("invalid settings: "), "{err}");
}

#[test]
fn verdict_should_convert_to_the_world_record() {
    let verdict = Verdict::deny("no")
        .with_code(422)
        .with_warning("careful")
        .with_audit_annotation("policy", "deny-all");
    let wire: bindings::Verdict = verdict.into();
    assert!(!wire.allowed);
    assert_eq!(wire.message, "no");
    assert_eq!(wire.code, 422);
    assert_eq!(wire.patch, "");
    assert_eq!(wire.warnings, vec!["careful".to_string()]);
    assert_eq!(wire.audit_annotations, vec![("policy".to_string(), "deny-all".to_string())]);

    let wire: bindings::Verdict =
        Verdict::allow().with_patch([PatchOp::add("/metadata/labels/a", "b")]).into();
    assert!(wire.allowed);
    assert_eq!(wire.code, 0);
    assert_eq!(wire.patch, r#"[{"op":"add","path":"/metadata/labels/a","value":"b"}]"#);
}

#[test]
fn patch_ops_should_serialize_as_rfc6902() {
    let ops = vec![
        PatchOp::add("/a", json!({"b": 1})),
        PatchOp::remove("/c"),
        PatchOp::replace("/d", 2),
        PatchOp::Move { from: "/e".into(), path: "/f".into() },
        PatchOp::Copy { from: "/g".into(), path: "/h".into() },
        PatchOp::Test { path: "/i".into(), value: json!(null) },
    ];
    let json: Value = serde_json::from_str(&patch::to_json(&ops)).unwrap();
    assert_eq!(
        json,
        json!([
            {"op": "add", "path": "/a", "value": {"b": 1}},
            {"op": "remove", "path": "/c"},
            {"op": "replace", "path": "/d", "value": 2},
            {"op": "move", "from": "/e", "path": "/f"},
            {"op": "copy", "from": "/g", "path": "/h"},
            {"op": "test", "path": "/i", "value": null},
        ])
    );
}

#[test]
fn pointer_token_should_escape_tilde_and_slash() {
    assert_eq!(patch::pointer_token("app.kubernetes.io/name"), "app.kubernetes.io~1name");
    assert_eq!(patch::pointer_token("a~b/c"), "a~0b~1c");
    assert_eq!(patch::pointer_token("plain"), "plain");
}

#[test]
fn add_missing_labels_should_add_only_absent_keys() {
    let object = json!({"metadata": {"labels": {"team": "web", "x": "1"}}});
    let ops = patch::add_missing_labels(
        &object,
        [("team", "unknown"), ("app.kubernetes.io/part-of", "shop")],
    );
    assert_eq!(ops, vec![PatchOp::add("/metadata/labels/app.kubernetes.io~1part-of", "shop")]);
}

#[test]
fn add_missing_labels_should_create_the_map_when_absent() {
    let ops = patch::add_missing_labels(&json!({"metadata": {"name": "a"}}), [("team", "unknown")]);
    assert_eq!(ops, vec![PatchOp::add("/metadata/labels", json!({"team": "unknown"}))]);
    // A null map is replaced as a whole too ("add" on an existing member replaces it).
    let ops = patch::add_missing_labels(&json!({"metadata": {"labels": null}}), [("team", "u")]);
    assert_eq!(ops, vec![PatchOp::add("/metadata/labels", json!({"team": "u"}))]);
    let ops = patch::add_missing_annotations(&json!({"kind": "Pod"}), [("a", "b")]);
    assert_eq!(ops, vec![PatchOp::add("/metadata", json!({"annotations": {"a": "b"}}))]);
}

#[test]
fn add_missing_labels_should_return_nothing_when_all_present() {
    let object = json!({"metadata": {"labels": {"team": "web"}}});
    assert!(patch::add_missing_labels(&object, [("team", "unknown")]).is_empty());
    assert!(patch::add_missing_labels(&object, std::iter::empty::<(&str, &str)>()).is_empty());
}

#[test]
fn pod_spec_should_find_the_spec_of_each_workload_kind() {
    let template = json!({"template": {"spec": {"containers": []}}});
    let cases = [
        ("", "Pod", json!({"spec": {"containers": []}}), true),
        ("", "PodTemplate", template.clone(), true),
        ("", "ReplicationController", json!({"spec": template.clone()}), true),
        ("apps", "Deployment", json!({"spec": template.clone()}), true),
        ("apps", "ReplicaSet", json!({"spec": template.clone()}), true),
        ("apps", "StatefulSet", json!({"spec": template.clone()}), true),
        ("apps", "DaemonSet", json!({"spec": template.clone()}), true),
        ("batch", "Job", json!({"spec": template.clone()}), true),
        ("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": template.clone()}}}), true),
        ("example.com", "Deployment", json!({"spec": template.clone()}), false),
        ("", "ConfigMap", json!({"data": {}}), false),
        ("apps", "Deployment", json!({"spec": {}}), false),
    ];
    for (group, kind, object, found) in cases {
        let gvk = GroupVersionKind { group: group.into(), version: "v1".into(), kind: kind.into() };
        assert_eq!(pod::pod_spec(&gvk, &object).is_some(), found, "{group} {kind}");
    }
}

#[test]
fn containers_should_list_every_container_list() {
    let spec = json!({
        "initContainers": [{"name": "init"}],
        "containers": [{"name": "a"}, {"name": "b"}],
        "ephemeralContainers": [{"name": "debug"}],
    });
    let names: Vec<_> =
        pod::containers(&spec).map(|(list, c)| (list, c["name"].as_str().unwrap())).collect();
    assert_eq!(
        names,
        vec![
            ("initContainers", "init"),
            ("containers", "a"),
            ("containers", "b"),
            ("ephemeralContainers", "debug"),
        ]
    );
    assert_eq!(pod::containers(&json!({})).count(), 0);
}

#[test]
fn request_pod_spec_should_read_the_object() {
    let request = pod_request(json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}}));
    let spec = request.pod_spec().unwrap();
    assert_eq!(spec["containers"][0]["image"], "nginx");
}
