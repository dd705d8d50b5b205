use super::*;
use skiff_api::registry::Registry;

fn pods() -> ResourceInfo {
    Registry::builtin().by_plural("", "pods").cloned().expect("pods are served")
}

fn request(config: Value, manager: &str, force: bool) -> ApplyRequest {
    ApplyRequest { config, manager: manager.to_string(), force }
}

fn pod(image: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn entries(obj: &Value) -> Vec<ManagedEntry> {
    managed::decode(obj).unwrap()
}

fn owner_of(obj: &Value, path: &[&str]) -> Vec<String> {
    let path: FieldPath = path.iter().map(|s| s.to_string()).collect();
    entries(obj)
        .into_iter()
        .filter(|e| e.fields.contains(&path))
        .map(|e| format!("{}/{}", e.manager, e.operation.as_str()))
        .collect()
}

const IMAGE: &[&str] = &["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"];
const APP: &[&str] = &["f:metadata", "f:labels", "f:app"];

#[test]
fn apply_should_create_and_record_the_applied_fields() {
    let res = pods();
    let obj =
        request(pod("i:1", json!({"app": "x"})), "a", false).apply_to(&res, None, None).unwrap();
    assert_eq!(obj["spec"]["containers"][0]["image"], "i:1");
    let e = entries(&obj);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].manager, "a");
    assert_eq!(e[0].operation, Operation::Apply);
    assert!(e[0].time.is_some());
    assert_eq!(
        obj["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
    );
    assert!(obj["metadata"]["managedFields"][0].get("subresource").is_none());
}

#[test]
fn apply_should_report_conflicts_with_other_managers_like_kubernetes() {
    let res = pods();
    let live =
        request(pod("i:1", json!({"app": "x"})), "a", false).apply_to(&res, None, None).unwrap();
    let err = request(pod("i:2", json!({"app": "x"})), "b", false)
        .apply_to(&res, None, Some(&live))
        .unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"a\": .spec.containers[name=\"c\"].image"
    );
    let causes = &err.details.unwrap()["causes"];
    assert_eq!(
        causes,
        &json!([{"type": "FieldManagerConflict", "message": "conflict with \"a\"",
            "field": ".spec.containers[name=\"c\"].image"}])
    );
}

#[test]
fn apply_with_force_should_move_the_field_to_the_applier() {
    let res = pods();
    let live =
        request(pod("i:1", json!({"app": "x"})), "a", false).apply_to(&res, None, None).unwrap();
    let obj = request(pod("i:2", json!({"app": "x"})), "b", true)
        .apply_to(&res, None, Some(&live))
        .unwrap();
    assert_eq!(obj["spec"]["containers"][0]["image"], "i:2");
    assert_eq!(owner_of(&obj, IMAGE), vec!["b/Apply"]);
    // The unchanged label is shared.
    let mut owners = owner_of(&obj, APP);
    owners.sort();
    assert_eq!(owners, vec!["a/Apply", "b/Apply"]);
}

#[test]
fn two_appliers_setting_the_same_value_should_share_the_field() {
    let res = pods();
    let live =
        request(pod("i:1", json!({"app": "x"})), "a", false).apply_to(&res, None, None).unwrap();
    let obj = request(pod("i:1", json!({"app": "x"})), "b", false)
        .apply_to(&res, None, Some(&live))
        .unwrap();
    let mut owners = owner_of(&obj, IMAGE);
    owners.sort();
    assert_eq!(owners, vec!["a/Apply", "b/Apply"]);
    // Once a gives the label up, b still holds it, so it stays.
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
    let after = request(config, "a", false).apply_to(&res, None, Some(&obj)).unwrap();
    assert_eq!(after["metadata"]["labels"]["app"], "x");
    assert_eq!(owner_of(&after, APP), vec!["b/Apply"]);
}

#[test]
fn apply_should_remove_fields_no_longer_applied() {
    let res = pods();
    let live = request(pod("i:1", json!({"app": "x", "tier": "web"})), "a", false)
        .apply_to(&res, None, None)
        .unwrap();
    let obj = request(pod("i:1", json!({"app": "x"})), "a", false)
        .apply_to(&res, None, Some(&live))
        .unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "x"}));
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
    let obj = request(config, "a", false).apply_to(&res, None, Some(&obj)).unwrap();
    assert!(obj["metadata"].get("labels").is_none(), "{obj}");
}

#[test]
fn apply_should_keep_fields_it_never_owned() {
    let res = pods();
    let mut live = pod("i:1", json!({"app": "x"}));
    live["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    let obj = request(pod("i:1", json!({"app": "x", "tier": "web"})), "a", false)
        .apply_to(&res, None, Some(&live))
        .unwrap();
    let obj = request(pod("i:1", json!({"app": "x"})), "a", false)
        .apply_to(&res, None, Some(&obj))
        .unwrap();
    assert_eq!(obj["spec"]["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(obj["metadata"]["labels"], json!({"app": "x"}));
}

#[test]
fn apply_should_merge_associative_lists_by_key_and_union_sets() {
    let res = pods();
    let mut live = pod("i:1", json!({}));
    live["spec"]["containers"].as_array_mut().unwrap().push(
        json!({"name": "d", "image": "j", "ports": [{"containerPort": 80, "protocol": "TCP"}]}),
    );
    live["metadata"]["finalizers"] = json!(["x/one"]);
    live["spec"]["tolerations"] = json!([{"key": "a"}]);
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["x/two"]},
        "spec": {"containers": [{"name": "d", "ports": [{"containerPort": 80, "name": "http"}]}],
            "tolerations": [{"key": "b"}]}});
    let obj = request(config, "a", false).apply_to(&res, None, Some(&live)).unwrap();
    assert_eq!(obj["spec"]["containers"].as_array().unwrap().len(), 2);
    assert_eq!(
        obj["spec"]["containers"][1]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );
    assert_eq!(obj["metadata"]["finalizers"], json!(["x/one", "x/two"]));
    assert_eq!(obj["spec"]["tolerations"], json!([{"key": "b"}]));
    let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(fields["f:metadata"]["f:finalizers"].get("v:\"x/two\"").is_some(), "{fields}");
    assert!(
        fields["f:spec"]["f:containers"]["k:{\"name\":\"d\"}"]["f:ports"]
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{fields}"
    );
}

#[test]
fn update_after_apply_should_take_ownership_of_changed_fields() {
    let res = pods();
    let live =
        request(pod("i:1", json!({"app": "x"})), "a", false).apply_to(&res, None, None).unwrap();
    let mut new = live.clone();
    new["spec"]["containers"][0]["image"] = json!("i:2");
    let headers = HeaderMap::new();
    let q = HashMap::from([("fieldManager".to_string(), "editor".to_string())]);
    record_update(&res, None, Some(&live), &mut new, &q, &headers).unwrap();
    assert_eq!(owner_of(&new, IMAGE), vec!["editor/Update"]);
    assert_eq!(owner_of(&new, APP), vec!["a/Apply"]);
    let editor = entries(&new).into_iter().find(|e| e.manager == "editor").unwrap();
    assert_eq!(editor.fields.len(), 1);
    // a re-applying its old image now conflicts with the updater, named as Kubernetes does.
    let err = request(pod("i:1", json!({"app": "x"})), "a", false)
        .apply_to(&res, None, Some(&new))
        .unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"editor\" using v1: .spec.containers[name=\"c\"].image"
    );
}

#[test]
fn record_update_should_name_the_manager_after_the_user_agent_and_drop_empty_entries() {
    let res = pods();
    let mut created = pod("i:1", json!({"app": "x"}));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        "kubectl/v1.35.0 (linux/amd64) kubernetes/abc".parse().unwrap(),
    );
    record_update(&res, None, None, &mut created, &HashMap::new(), &headers).unwrap();
    assert_eq!(owner_of(&created, APP), vec!["kubectl/Update"]);
    // Another manager changing every field kubectl owned leaves kubectl with nothing.
    let mut new = created.clone();
    new["metadata"]["labels"]["app"] = json!("y");
    new["spec"]["containers"][0]["image"] = json!("i:2");
    let q = HashMap::from([("fieldManager".to_string(), "other".to_string())]);
    record_update(&res, None, Some(&created), &mut new, &q, &headers).unwrap();
    let managers: Vec<String> = entries(&new).into_iter().map(|e| e.manager).collect();
    assert_eq!(managers, vec!["kubectl", "other"]);
    // A request sending `[{}]` resets managedFields.
    let mut reset = new.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(&res, None, Some(&new), &mut reset, &q, &headers).unwrap();
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
}

#[test]
fn status_updates_should_record_the_subresource_and_own_only_status() {
    let res = pods();
    let live = pod("i:1", json!({"app": "x"}));
    let mut new = live.clone();
    new["status"] = json!({"phase": "Running"});
    let q = HashMap::from([("fieldManager".to_string(), "kubelet".to_string())]);
    record_update(&res, Some("status"), Some(&live), &mut new, &q, &HeaderMap::new()).unwrap();
    let e = entries(&new);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].subresource.as_deref(), Some("status"));
    assert_eq!(e[0].fields.to_fields_v1(), json!({"f:status": {"f:phase": {}}}));
    assert_eq!(new["metadata"]["managedFields"][0]["subresource"], "status");
}

#[test]
fn kubectl_apply_should_take_over_fields_kubectl_applied_client_side() {
    let res = pods();
    let mut live = pod("i:1", json!({"app": "x"}));
    let last = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
    live["metadata"]["annotations"] = json!({LAST_APPLIED: last.to_string()});
    let q = HashMap::from([("fieldManager".to_string(), "kubectl-client-side-apply".to_string())]);
    let mut created = live.clone();
    record_update(&res, None, None, &mut created, &q, &HeaderMap::new()).unwrap();
    let obj = request(pod("i:2", json!({"app": "x"})), "kubectl", false)
        .apply_to(&res, None, Some(&created))
        .unwrap();
    assert_eq!(obj["spec"]["containers"][0]["image"], "i:2");
    let annotation: Value =
        serde_json::from_str(obj["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap())
            .unwrap();
    assert_eq!(annotation["spec"]["containers"][0]["image"], "i:2");
    // Any other manager still conflicts.
    let err = request(pod("i:3", json!({"app": "x"})), "other", false)
        .apply_to(&res, None, Some(&created))
        .unwrap_err();
    assert_eq!(err.code, 409);
}

#[test]
fn apply_request_should_require_a_field_manager_and_matching_names() {
    let res = pods();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, "application/apply-patch+yaml".parse().unwrap());
    let body = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n";
    let err = ApplyRequest::parse(&res, Some("default"), "p", &headers, body, &HashMap::new())
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let q = HashMap::from([("fieldManager".to_string(), "m".to_string())]);
    let err = ApplyRequest::parse(&res, Some("default"), "q", &headers, body, &q).unwrap_err();
    assert_eq!(err.code, 400);
    let managed =
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  managedFields:\n  - manager: x\n";
    let err = ApplyRequest::parse(&res, Some("default"), "p", &headers, managed, &q).unwrap_err();
    assert_eq!(err.message, "metadata.managedFields must be nil");
    let req = ApplyRequest::parse(&res, Some("default"), "p", &headers, body, &q).unwrap();
    assert_eq!(req.config["metadata"]["namespace"], "default");
}
