//! End-to-end: the OpenAPI documents as the real kubectl 1.35 uses them — `kubectl explain`
//! (OpenAPI v3, and v2 in its protobuf form), `--validate=strict`, and client-side
//! `kubectl apply`, whose strategic merge patches are built from the published patch metadata.

mod support;

use serde_json::Value;
use support::Skiff;

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    (guard, dir, skiff)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn kubectl_explain_should_print_real_field_descriptions() {
    let (_serial, _dir, s) = started();
    let out = s.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("List of containers belonging to the pod."), "{out}");
    assert!(out.contains("image\t<string>"), "{out}");
    assert!(out.contains("imagePullPolicy\t<string>"), "{out}");
    let image = s.ok(&["explain", "pods.spec.containers.image"]);
    assert!(image.contains("Container image name."), "{image}");

    let recursive = s.ok(&["explain", "pod", "--recursive"]);
    for field in [
        "metadata\t<ObjectMeta>",
        "ownerReferences\t<[]OwnerReference>",
        "containerPort\t<integer> -required-",
        "tolerations\t<[]Toleration>",
    ] {
        assert!(recursive.contains(field), "{field} missing from:\n{recursive}");
    }
    assert!(recursive.lines().count() > 500, "{recursive}");

    // The same schema read from OpenAPI v2, which kubectl fetches as gnostic protobuf.
    let v2 = s.ok(&["explain", "pods.spec.containers.ports", "--output=plaintext-openapiv2"]);
    assert!(v2.contains("containerPort\t<integer> -required-"), "{v2}");
    assert!(v2.contains("Number of port to expose on the pod's IP address."), "{v2}");
    let lease = s.ok(&["explain", "leases.spec.holderIdentity"]);
    assert!(lease.contains("holderIdentity contains the identity of the holder"), "{lease}");
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
    - name: main
      image: example.test/main:1
      env: [{name: MODE, value: one}]
      ports: [{containerPort: 8080}]
    - name: side
      image: example.test/side:1
";

#[test]
fn kubectl_apply_strict_should_reject_a_misspelled_field_by_name() {
    let (_serial, _dir, s) = started();
    let bad = POD.replace(
        "      image: example.test/side:1",
        "      imagePullPolicyy: Always\n      image: example.test/side:1",
    );
    let out = s.kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &bad);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imagePullPolicyy"), "{}", text(&out));
    let get = s.kubectl(&["get", "pod", "web"]);
    assert!(!get.status.success(), "the invalid pod was created");
}

#[test]
fn kubectl_apply_twice_should_strategic_merge_containers_by_name() {
    let (_serial, _dir, s) = started();
    let out = s.kubectl_stdin(&["apply", "-f", "-"], POD);
    assert!(out.status.success(), "{}", text(&out));
    // The second apply drops a label, adds one and changes one container's image; kubectl
    // computes a strategic merge patch with `$setElementOrder/containers`, which needs the
    // merge key of `containers` from the published schema.
    let changed = POD
        .replace("labels: {app: web}", "labels: {tier: front}")
        .replace("example.test/side:1", "example.test/side:2");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pod/web configured"), "{}", text(&out));
    let pod: Value = s.json(&["get", "pod", "web"]);
    assert_eq!(pod["metadata"]["labels"], serde_json::json!({"tier": "front"}));
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let images: Vec<&str> = containers.iter().filter_map(|c| c["image"].as_str()).collect();
    assert_eq!(images, ["example.test/main:1", "example.test/side:2"]);
    assert_eq!(containers[0]["env"][0]["value"], "one");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080);

    // `kubectl diff` against the applied state finds nothing to change.
    let diff = s.kubectl_stdin(&["diff", "-f", "-"], &changed);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
}
