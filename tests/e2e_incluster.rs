//! End-to-end: pods call the api server in-cluster with their projected ServiceAccount token,
//! as client-go's in-cluster configuration does, and get exactly what their Role allows. Wasm
//! pods (on the server's node and on an agent; `wasi:http`, the node verifying the api server
//! with the cluster CA) and an OCI pod (runc; a static client verifying with its mounted
//! `ca.crt`) run as ServiceAccount `reader`, bound to a Role allowing `get`/`list` on
//! ConfigMaps only: listing ConfigMaps answers 200 with the namespace's ConfigMap, listing
//! Secrets or Pods answers 403. On the way: the ServiceAccount admission's
//! `kube-api-access-*` volume, the `kube-root-ca.crt` ConfigMap of the root CA publisher, the
//! `KUBERNETES_SERVICE_*` variables, and a pod with `automountServiceAccountToken: false`
//! that has no token.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::netns::{AGENT_NODE, TwoNodes as Cluster};
use support::{Checks, guest, phase, wait_pod_with};

const NS: &str = "incluster";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const WAIT: Duration = Duration::from_secs(120);
/// What each pod's containers ask for, by container name: (path, status wanted).
const CALLS: [(&str, &str, u16); 3] = [
    ("configmaps", "api/v1/namespaces/{namespace}/configmaps", 200),
    ("secrets", "api/v1/namespaces/{namespace}/secrets", 403),
    ("pods", "api/v1/namespaces/{namespace}/pods", 403),
];

const ACCESS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: incluster}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: incluster}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmap-reader, namespace: incluster}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-configmaps, namespace: incluster}
subjects: [{kind: ServiceAccount, name: reader, namespace: incluster}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-settings, namespace: incluster}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: app-password, namespace: incluster}
stringData: {password: not-for-readers}
"#;

/// A pod running as `reader` with one container per call of [`CALLS`]: a Wasm pod on `node`,
/// or (with `tools`, the host directory holding the static client) an OCI pod.
fn caller(name: &str, node: &str, tools: Option<&Path>) -> Value {
    let containers: Vec<Value> = CALLS
        .iter()
        .map(|(c, path, _)| match tools {
            None => json!({"name": c, "image": "test-guest:incluster", "command": ["guest", "kube-get", path]}),
            Some(_) => json!({
                "name": c, "image": "skiff.local/busybox:1.36",
                "command": ["/tools/test-guest.static", "kube-get", path],
                "volumeMounts": [{"name": "tools", "mountPath": "/tools", "readOnly": true}],
            }),
        })
        .collect();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": "reader",
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "runtimeClassName": if tools.is_some() { "runc" } else { "wasmtime" },
            "containers": containers,
        },
    });
    if let Some(dir) = tools {
        pod["spec"]["volumes"] =
            json!([{"name": "tools", "hostPath": {"path": dir, "type": "Directory"}}]);
    }
    pod
}

fn apply(c: &Cluster, manifest: &str) {
    let out = c.server.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn logs(c: &Cluster, pod: &str, container: &str) -> String {
    let out = c.server.kubectl(&["logs", "-n", NS, pod, "-c", container]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn finished(c: &Cluster, pod: &str) -> Value {
    wait_pod_with(
        |a| c.server.kubectl(a),
        pod,
        NS,
        WAIT,
        |p| matches!(phase(p), "Succeeded" | "Failed"),
    )
}

/// The projected API access volume of `pod` (the one the admission added), if any.
fn access_volume(pod: &Value) -> Option<&Value> {
    pod["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("kube-api-access-")))
}

fn check_admitted(pod: &Value) {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    assert_eq!(pod["spec"]["serviceAccountName"], "reader", "{name}");
    let volume = access_volume(pod)
        .unwrap_or_else(|| panic!("{name}: no kube-api-access volume: {}", pod["spec"]["volumes"]));
    let vname = volume["name"].as_str().unwrap_or("");
    let suffix = vname.trim_start_matches("kube-api-access-");
    assert!(
        suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{name}: volume name {vname}"
    );
    assert_eq!(
        volume["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        }),
        "{name}"
    );
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let mounted = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["name"] == vname && m["mountPath"] == MOUNT && m["readOnly"] == true);
        assert!(
            mounted,
            "{name}/{}: not mounted read-only at {MOUNT}: {}",
            c["name"], c["volumeMounts"]
        );
    }
}

/// Each container's call answered what `reader` may have: 200 with the ConfigMap, 403 with
/// kube-apiserver's message naming the service account.
fn check_calls(c: &Cluster, pod: &str) {
    let p = finished(c, pod);
    for (container, _, want) in CALLS {
        let out = logs(c, pod, container);
        assert!(
            out.contains(&format!("GET https://10.96.0.1:443/api/v1/namespaces/{NS}/{container} ")),
            "{pod}/{container}: not through the kubernetes Service's KUBERNETES_SERVICE_* address: {out}"
        );
        assert!(out.contains(&format!("status {want}\n")), "{pod}/{container}: want {want}: {out}");
        if want == 200 {
            assert!(out.contains("\"app-settings\""), "{pod}/{container}: no ConfigMap: {out}");
            assert!(!out.contains("not-for-readers"), "{pod}/{container}: {out}");
        } else {
            let user = format!(
                "User \\\"system:serviceaccount:{NS}:reader\\\" cannot list resource \\\"{container}\\\""
            );
            assert!(out.contains(&user), "{pod}/{container}: want {user}: {out}");
            assert!(!out.contains("not-for-readers"), "{pod}/{container}: a Secret leaked: {out}");
        }
    }
    assert_eq!(phase(&p), "Succeeded", "{pod}: {}", p["status"]);
}

#[test]
fn pods_should_call_the_api_in_cluster_with_exactly_their_roles_rights() {
    let _serial = support::serial();
    // Wasm on both nodes, OCI (its own containerd) on the server's node.
    let Some(c) = Cluster::start_with(true, false) else { return };
    let wasm = guest("test-guest.wasip2.wasm");
    c.server.import(&wasm, "test-guest:incluster");
    c.agent.import(&wasm, "test-guest:incluster");
    let tools = c.dir.path().join("tools");
    std::fs::create_dir_all(&tools).expect("tools dir");
    std::fs::copy(guest("test-guest.static"), tools.join("test-guest.static"))
        .expect("copy client");

    apply(&c, ACCESS);
    let mut checks = Checks::default();

    checks.check("every namespace gets the cluster CA as kube-root-ca.crt", || {
        let ca = std::fs::read_to_string(c.server.dir.join("pki/ca.crt")).expect("cluster CA");
        let mut last = Value::Null;
        c.server.wait_for("kube-root-ca.crt in incluster", Duration::from_secs(30), || {
            let out =
                c.server.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", NS, "-o", "json"]);
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            out.status.success()
        });
        assert_eq!(last["data"], json!({"ca.crt": ca}));
        assert!(last["metadata"]["annotations"]["kubernetes.io/description"].is_string(), "{last}");
        // Changed by hand, it is put back.
        c.server.ok(&[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"data":{"ca.crt":"tampered"}}"#,
        ]);
        c.server.wait_for("kube-root-ca.crt put back", Duration::from_secs(30), || {
            let cm = c.server.json(&["get", "configmap", "kube-root-ca.crt", "-n", NS]);
            cm["data"] == json!({"ca.crt": ca})
        });
    });

    let pods = [
        caller("wasm-server", "skiff-e2e", None),
        caller("wasm-agent", AGENT_NODE, None),
        caller("oci", "skiff-e2e", Some(&tools)),
    ];
    let mut no_token = caller("no-token", "skiff-e2e", None);
    no_token["spec"]["automountServiceAccountToken"] = json!(false);
    no_token["spec"]["containers"] = json!([{"name": "configmaps", "image": "test-guest:incluster", "command": ["guest", "kube-get", "api"]}]);
    let all: Vec<String> = pods.iter().chain([&no_token]).map(Value::to_string).collect();
    apply(&c, &all.join("\n---\n"));

    checks.check("the ServiceAccount admission mounts the API access volume", || {
        for pod in ["wasm-server", "wasm-agent", "oci"] {
            check_admitted(&c.server.json(&["get", "pod", pod, "-n", NS]));
        }
    });
    for pod in ["wasm-server", "wasm-agent", "oci"] {
        checks.check(&format!("{pod} gets exactly what its Role allows"), || check_calls(&c, pod));
    }
    checks.check("automountServiceAccountToken: false leaves the pod without a token", || {
        let p = finished(&c, "no-token");
        assert!(access_volume(&p).is_none(), "{}", p["spec"]["volumes"]);
        assert_eq!(p["spec"]["serviceAccountName"], "reader");
        let out = logs(&c, "no-token", "configmaps");
        assert!(out.contains("no service account token"), "{out}");
        assert_eq!(phase(&p), "Failed", "{}", p["status"]);
    });
    checks.finish("in-cluster API access");
}
