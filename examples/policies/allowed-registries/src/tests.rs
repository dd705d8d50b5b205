use skiff_policy_sdk::json;

use super::*;

fn settings() -> Value {
    json!({"registries": ["skiff.local", "registry.example.com"]})
}

fn request(group: &str, kind: &str, object: Value) -> Request {
    Request::from_json(
        &json!({
            "kind": {"group": group, "version": "v1", "kind": kind},
            "operation": "CREATE",
            "object": object,
        })
        .to_string(),
    )
    .unwrap()
}

fn pod(images: &[&str]) -> Value {
    let containers: Vec<Value> =
        images.iter().map(|image| json!({"name": "c", "image": image})).collect();
    json!({"spec": {"containers": containers}})
}

#[test]
fn registry_of_should_follow_the_docker_reference_rules() {
    let cases = [
        ("nginx", "docker.io"),
        ("nginx:1.27", "docker.io"),
        ("library/nginx:1.27", "docker.io"),
        ("bitnami/redis@sha256:abc", "docker.io"),
        ("docker.io/library/nginx", "docker.io"),
        ("index.docker.io/library/nginx", "docker.io"),
        ("skiff.local/hello-wasm:latest", "skiff.local"),
        ("registry.example.com:5000/team/app:v1", "registry.example.com:5000"),
        ("localhost/app", "localhost"),
        ("localhost:5000/app", "localhost:5000"),
        ("ghcr.io/org/app", "ghcr.io"),
    ];
    for (image, registry) in cases {
        assert_eq!(registry_of(image), registry, "{image}");
    }
}

#[test]
fn settings_should_refuse_a_missing_or_empty_list() {
    assert!(AllowedRegistries::validate_settings(&json!({})).is_err());
    assert!(AllowedRegistries::validate_settings(&json!({"registries": []})).is_err());
    assert!(AllowedRegistries::validate_settings(&json!({"registries": "skiff.local"})).is_err());
    assert!(AllowedRegistries::validate_settings(&json!({"registries": ["a.io/team"]})).is_err());
    assert!(AllowedRegistries::validate_settings(&json!({"registires": ["a.io"]})).is_err());
    assert!(AllowedRegistries::validate_settings(&settings()).is_ok());
}

#[test]
fn validate_should_allow_images_from_allowed_registries() {
    let request = request("", "Pod", pod(&["skiff.local/web:1", "registry.example.com/db:2"]));
    assert!(AllowedRegistries::validate(&request, &settings()).allowed);
}

#[test]
fn validate_should_deny_a_docker_hub_image_with_the_brief_message() {
    let verdict =
        AllowedRegistries::validate(&request("", "Pod", pod(&["nginx:1.27"])), &settings());
    assert_eq!(
        verdict,
        Verdict::deny(
            r#"image "nginx:1.27" is not from an allowed registry (skiff.local, registry.example.com)"#
        )
    );
}

#[test]
fn validate_should_name_every_refused_image_once() {
    let object = json!({"spec": {
        "initContainers": [{"name": "i", "image": "busybox"}],
        "containers": [{"name": "a", "image": "skiff.local/a"}, {"name": "b", "image": "busybox"}],
        "ephemeralContainers": [{"name": "d", "image": "ghcr.io/x/debug"}],
    }});
    let verdict = AllowedRegistries::validate(&request("", "Pod", object), &settings());
    assert!(!verdict.allowed);
    assert_eq!(
        verdict.message,
        r#"images "busybox", "ghcr.io/x/debug" are not from an allowed registry (skiff.local, registry.example.com)"#
    );
}

#[test]
fn validate_should_check_pod_templates_of_workloads() {
    let template = json!({"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}});
    let cases = [
        ("apps", "Deployment", json!({"spec": template.clone()})),
        ("apps", "ReplicaSet", json!({"spec": template.clone()})),
        ("apps", "StatefulSet", json!({"spec": template.clone()})),
        ("apps", "DaemonSet", json!({"spec": template.clone()})),
        ("batch", "Job", json!({"spec": template.clone()})),
        ("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": template.clone()}}})),
    ];
    for (group, kind, object) in cases {
        let verdict = AllowedRegistries::validate(&request(group, kind, object), &settings());
        assert!(!verdict.allowed, "{kind}");
    }
}

#[test]
fn validate_should_allow_objects_without_a_pod_spec() {
    let verdict =
        AllowedRegistries::validate(&request("", "ConfigMap", json!({"data": {}})), &settings());
    assert!(verdict.allowed);
    let delete = Request::from_json(r#"{"kind": {"kind": "Pod"}, "operation": "DELETE"}"#).unwrap();
    assert!(AllowedRegistries::validate(&delete, &settings()).allowed);
}

#[test]
fn validate_should_match_allowed_registries_without_case_and_by_hub_alias() {
    let settings = json!({"registries": ["Skiff.Local", "index.docker.io"]});
    let request = request("", "Pod", pod(&["skiff.local/a", "nginx", "docker.io/library/redis"]));
    assert!(AllowedRegistries::validate(&request, &settings).allowed);
}
