//! End-to-end: server-side apply and managedFields with the real kubectl 1.35.

mod support;

use serde_json::Value;
use support::Skiff;

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    (guard, dir, skiff)
}

fn lease(name: &str, labels: &[(&str, &str)], spec: &[(&str, &str)]) -> String {
    let labels: String = labels.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
    let spec: String = spec.iter().map(|(k, v)| format!("  {k}: {v}\n")).collect();
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  labels:\n{labels}spec:\n{spec}"
    )
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The managers of `obj` as `manager/operation`, in order.
fn managers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| &e["fieldsV1"])
}

#[test]
fn server_side_apply_should_create_update_and_remove_fields_no_longer_applied() {
    let (_guard, _dir, s) = started();
    let first = lease(
        "l1",
        &[("app", "web"), ("tier", "front")],
        &[("holderIdentity", "h1"), ("leaseDurationSeconds", "10")],
    );
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &first);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("lease.coordination.k8s.io/l1 serverside-applied"),
        "{}",
        text(&out)
    );
    let obj = s.json(&["get", "lease", "l1", "--show-managed-fields"]);
    assert_eq!(managers(&obj), vec!["kubectl/Apply"]);
    let fields = fields_of(&obj, "kubectl").expect("kubectl's fields");
    assert!(fields.pointer("/f:spec/f:holderIdentity").is_some(), "{fields}");
    assert!(fields.pointer("/f:metadata/f:labels/f:tier").is_some(), "{fields}");
    assert!(obj.pointer("/metadata/managedFields/0/time").is_some());

    // Re-apply with a changed field and without a label and a spec field.
    let second = lease("l1", &[("app", "web")], &[("holderIdentity", "h2")]);
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &second);
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "lease", "l1"]);
    assert_eq!(obj["spec"]["holderIdentity"], "h2");
    assert!(obj["spec"].get("leaseDurationSeconds").is_none(), "{obj}");
    assert_eq!(obj["metadata"]["labels"], serde_json::json!({"app": "web"}));

    // The same apply again changes nothing, not even the resourceVersion.
    let rv = obj["metadata"]["resourceVersion"].clone();
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &second);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.json(&["get", "lease", "l1"])["metadata"]["resourceVersion"], rv);
}

#[test]
fn conflicting_field_managers_should_need_force_conflicts() {
    let (_guard, _dir, s) = started();
    let a = lease("shared", &[("app", "v1")], &[("holderIdentity", "alice")]);
    let out = s.kubectl_stdin(&["apply", "--server-side", "--field-manager=a", "-f", "-"], &a);
    assert!(out.status.success(), "{}", text(&out));

    // b applying the same values shares them without a conflict.
    let out = s.kubectl_stdin(&["apply", "--server-side", "--field-manager=b", "-f", "-"], &a);
    assert!(out.status.success(), "{}", text(&out));

    let b = lease("shared", &[("app", "v1")], &[("holderIdentity", "bob")]);
    let out = s.kubectl_stdin(&["apply", "--server-side", "--field-manager=b", "-f", "-"], &b);
    assert!(!out.status.success(), "a conflicting apply succeeded");
    let msg = text(&out);
    assert!(
        msg.contains("Apply failed with 1 conflict: conflict with \"a\": .spec.holderIdentity"),
        "{msg}"
    );
    assert!(msg.contains("--force-conflicts"), "kubectl's advice is missing: {msg}");
    assert_eq!(s.json(&["get", "lease", "shared"])["spec"]["holderIdentity"], "alice");

    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=b", "--force-conflicts", "-f", "-"],
        &b,
    );
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "lease", "shared", "--show-managed-fields"]);
    assert_eq!(obj["spec"]["holderIdentity"], "bob");
    let a_fields = fields_of(&obj, "a").expect("a still owns the label");
    assert!(a_fields.pointer("/f:spec/f:holderIdentity").is_none(), "{a_fields}");
    assert!(a_fields.pointer("/f:metadata/f:labels/f:app").is_some(), "{a_fields}");
    let b_fields = fields_of(&obj, "b").expect("b's fields");
    assert!(b_fields.pointer("/f:spec/f:holderIdentity").is_some(), "{b_fields}");

    // kubectl shows the managers on request only.
    let yaml = s.ok(&["get", "lease", "shared", "-o", "yaml", "--show-managed-fields"]);
    assert!(yaml.contains("manager: a") && yaml.contains("manager: b"), "{yaml}");
    assert!(yaml.contains("operation: Apply") && yaml.contains("fieldsType: FieldsV1"), "{yaml}");
    let yaml = s.ok(&["get", "lease", "shared", "-o", "yaml"]);
    assert!(!yaml.contains("managedFields"), "{yaml}");
}

#[test]
fn updates_should_record_their_managers() {
    let (_guard, _dir, s) = started();
    // (`kubectl create namespace` sends protobuf; a manifest goes as JSON.)
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], ns);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.kubectl(&["label", "namespace", "team", "owner=ops"]);
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "namespace", "team", "--show-managed-fields"]);
    let m = managers(&obj);
    assert!(m.contains(&"kubectl-create/Update".to_string()), "{m:?}");
    assert!(m.contains(&"kubectl-label/Update".to_string()), "{m:?}");
    let label = fields_of(&obj, "kubectl-label").expect("kubectl-label's fields");
    assert!(label.pointer("/f:metadata/f:labels/f:owner").is_some(), "{label}");

    // An apply that changes the label another manager set conflicts, naming the updater.
    let ns =
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels:\n    owner: dev\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], ns);
    assert!(!out.status.success(), "conflicting apply succeeded");
    assert!(
        text(&out).contains("conflict with \"kubectl-label\" using v1: .metadata.labels.owner"),
        "{}",
        text(&out)
    );
}

#[test]
fn client_side_apply_then_server_side_apply_should_migrate_the_managers() {
    let (_guard, _dir, s) = started();
    let first = lease("migrated", &[("app", "v1")], &[("holderIdentity", "one")]);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &first);
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "lease", "migrated", "--show-managed-fields"]);
    assert_eq!(managers(&obj), vec!["kubectl-client-side-apply/Update"]);

    let second = lease("migrated", &[("app", "v2")], &[("holderIdentity", "two")]);
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &second);
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "lease", "migrated", "--show-managed-fields"]);
    assert_eq!(obj["spec"]["holderIdentity"], "two");
    assert_eq!(obj["metadata"]["labels"]["app"], "v2");
    let m = managers(&obj);
    assert!(m.contains(&"kubectl/Apply".to_string()), "{m:?}");
    let kubectl = fields_of(&obj, "kubectl").expect("kubectl's fields");
    assert!(kubectl.pointer("/f:spec/f:holderIdentity").is_some(), "{kubectl}");

    // And back to client-side apply, which kubectl allows after a server-side one.
    let third = lease("migrated", &[("app", "v3")], &[("holderIdentity", "three")]);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &third);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.json(&["get", "lease", "migrated"])["spec"]["holderIdentity"], "three");
}

#[test]
fn server_side_applied_pod_should_run_and_keep_the_node_status_owner_apart() {
    let (_guard, _dir, s) = started();
    s.import(&support::guest("hello-wasm.wasip2.wasm"), "hello-wasm:latest");
    let pod = |labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ssa-pod\n  labels:\n{labels}spec:\n  runtimeClassName: wasmtime\n  restartPolicy: Never\n  containers:\n  - name: hello\n    image: hello-wasm:latest\n    imagePullPolicy: IfNotPresent\n    env:\n    - name: GREETING\n      value: hi\n"
        )
    };
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &pod("    app: hello\n    tier: demo\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let done = s.wait_pod("ssa-pod", std::time::Duration::from_secs(60), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(done["spec"]["containers"][0]["env"][0]["value"], "hi");

    // The node's status writes are recorded apart from the applier's fields.
    let obj = s.json(&["get", "pod", "ssa-pod", "--show-managed-fields"]);
    let entries = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let status = entries.iter().find(|e| e["subresource"] == "status").expect("a status entry");
    assert_eq!(status["operation"], "Update");
    assert!(status["fieldsV1"].pointer("/f:status/f:phase").is_some(), "{status}");
    let applied = fields_of(&obj, "kubectl").expect("kubectl's fields");
    assert!(applied.get("f:status").is_none(), "{applied}");
    let env = applied
        .pointer("/f:spec/f:containers/k:{\"name\":\"hello\"}/f:env/k:{\"name\":\"GREETING\"}");
    assert!(env.is_some(), "{applied}");

    // Re-applying without a label removes it and leaves the status alone.
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &pod("    app: hello\n"));
    assert!(out.status.success(), "{}", text(&out));
    let obj = s.json(&["get", "pod", "ssa-pod"]);
    assert_eq!(obj["metadata"]["labels"], serde_json::json!({"app": "hello"}));
    assert_eq!(obj["status"]["phase"], "Succeeded");
}
