//! End-to-end: admission with the real kubectl against a real `skiff server`. LimitRange
//! defaults reach a Deployment's pods and its bounds refuse a pod; a ResourceQuota stops the
//! fourth pod with the quota's message, `kubectl describe quota` shows the usage, concurrent
//! creates never overshoot it and a deleted pod gives its share back; PodSecurity
//! `restricted` refuses a privileged OCI pod with kube's message and `warn` mode warns;
//! NamespaceLifecycle keeps the system namespaces; DefaultStorageClass and the volume
//! protection finalizers; and mutating and validating webhooks served over HTTPS by a test
//! program (tests/webhook/server.py), reached through a Service and by URL, with
//! reinvocation, a denial with the webhook's message, and `failurePolicy` Fail and Ignore
//! with the webhook down. Then Skiff's Wasm admission policies (the examples in
//! `examples/policies`, imported as images): allowed registries and a default label enforced
//! on Wasm and OCI pods, Warn and Audit actions, and a trapping and a looping policy that
//! obey `failurePolicy` while the api server keeps answering quickly.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::{Checks, Skiff, guest, repo_root};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn apply(s: &Skiff, manifest: &str) -> Output {
    s.kubectl_stdin(&["apply", "-f", "-"], manifest)
}

fn apply_ok(s: &Skiff, manifest: &str) -> String {
    let out = apply(s, manifest);
    assert!(out.status.success(), "apply failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

/// `kubectl apply` that must fail with `want` in its error output.
fn apply_refused(s: &Skiff, manifest: &str, want: &str) {
    let out = apply(s, manifest);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "apply should fail: {}", text(&out.stdout));
    assert!(err.contains(want), "want {want:?} in: {err}");
}

fn pod(ns: &str, name: &str, extra_labels: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: t{extra_labels}}}
spec:
  runtimeClassName: wasmtime
  containers:
  - name: app
    image: test-guest:e2e{resources}
"#
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n")
}

/// The webhook test server, killed on drop.
struct WebhookServer {
    _server: support::PyServer,
    port: u16,
    log: std::path::PathBuf,
}

impl WebhookServer {
    fn start(dir: &Path, cert: &str, key: &str) -> WebhookServer {
        let (cert_file, key_file, log) =
            (dir.join("webhook.crt"), dir.join("webhook.key"), dir.join("webhook.log"));
        std::fs::write(&cert_file, cert).expect("writing the cert");
        std::fs::write(&key_file, key).expect("writing the key");
        let server = support::PyServer::start(
            &repo_root().join("tests/webhook/server.py"),
            &[&cert_file, &key_file, &log],
        );
        WebhookServer { port: server.port, _server: server, log }
    }

    /// The paths of the requests it was sent about object `name`.
    fn calls(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["name"] == name)
            .map(|v| v["path"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn admission_plugins_and_webhooks_should_behave_as_kubernetes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let mut checks = Checks::default();

    checks.check("LimitRange defaults reach a Deployment's pods", || {
        apply_ok(&s, &namespace("lr", ""));
        apply_ok(
            &s,
            r#"apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: lr}
spec:
  limits:
  - type: Container
    default: {cpu: 200m, memory: 64Mi}
    defaultRequest: {cpu: 100m, memory: 32Mi}
    max: {cpu: "1"}
"#,
        );
        apply_ok(
            &s,
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: lr}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      runtimeClassName: wasmtime
      containers: [{name: app, image: "test-guest:e2e"}]
"#,
        );
        let mut pods = Vec::new();
        s.wait_for("the Deployment's two pods", Duration::from_secs(30), || {
            pods = s.json(&["get", "pods", "-n", "lr", "-l", "app=web"])["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            pods.len() == 2
        });
        for p in &pods {
            let r = &p["spec"]["containers"][0]["resources"];
            assert_eq!(r["limits"]["cpu"], "200m", "{r}");
            assert_eq!(r["limits"]["memory"], "64Mi", "{r}");
            assert_eq!(r["requests"]["cpu"], "100m", "{r}");
            assert_eq!(r["requests"]["memory"], "32Mi", "{r}");
            let note =
                p["metadata"]["annotations"]["kubernetes.io/limit-ranger"].as_str().unwrap_or("");
            assert!(note.starts_with("LimitRanger plugin set: "), "annotation: {note:?}");
        }
        apply_refused(
            &s,
            &pod("lr", "big", "", "\n    resources: {limits: {cpu: \"2\"}}"),
            "maximum cpu usage per Container is 1, but limit is 2",
        );
    });

    checks.check("a ResourceQuota stops the fourth pod and shows its usage", || {
        apply_ok(&s, &namespace("q", ""));
        apply_ok(
            &s,
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute, namespace: q}\nspec:\n  hard: {pods: \"3\", count/configmaps: \"10\"}\n",
        );
        s.wait_for("the quota's status", Duration::from_secs(20), || {
            s.json(&["get", "resourcequota", "compute", "-n", "q"])["status"]["hard"]["pods"]
                == "3"
        });
        for i in 0..3 {
            apply_ok(&s, &pod("q", &format!("p{i}"), "", ""));
        }
        apply_refused(
            &s,
            &pod("q", "p3", "", ""),
            "pods \"p3\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=3, limited: pods=3",
        );
        let described = s.ok(&["describe", "quota", "compute", "-n", "q"]);
        let pods_line = described.lines().find(|l| l.trim_start().starts_with("pods")).unwrap_or("");
        let cols: Vec<&str> = pods_line.split_whitespace().collect();
        assert_eq!(cols, ["pods", "3", "3"], "describe quota:\n{described}");
        // A deleted pod gives its share back (the quota controller recomputes).
        s.ok(&["delete", "pod", "p0", "-n", "q", "--wait=false", "--grace-period=0", "--force"]);
        s.wait_for("the quota to give the pod back", Duration::from_secs(30), || {
            s.json(&["get", "resourcequota", "compute", "-n", "q"])["status"]["used"]["pods"]
                == "2"
        });
        apply_ok(&s, &pod("q", "p3", "", ""));
    });

    checks.check("concurrent creates never overshoot a quota", || {
        apply_ok(&s, &namespace("race", ""));
        apply_ok(
            &s,
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: cms, namespace: race}\nspec:\n  hard: {count/configmaps: \"5\"}\n",
        );
        s.wait_for("the quota's status", Duration::from_secs(20), || {
            !s.json(&["get", "resourcequota", "cms", "-n", "race"])["status"]["hard"].is_null()
        });
        // The namespace's kube-root-ca.crt ConfigMap counts too.
        s.wait_for("kube-root-ca.crt", Duration::from_secs(20), || {
            s.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "race"]).status.success()
        });
        let created: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let s = &s;
                    scope.spawn(move || {
                        s.kubectl(&["create", "configmap", &format!("c{i}"), "-n", "race"])
                            .status
                            .success()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(false)).filter(|ok| *ok).count()
        });
        assert_eq!(created, 4, "exactly the four free units were taken");
        let n = s.json(&["get", "configmaps", "-n", "race"])["items"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(n, 5);
        let used = s.json(&["get", "resourcequota", "cms", "-n", "race"]);
        assert_eq!(used["status"]["used"]["count/configmaps"], "5", "{used}");
    });

    checks.check("PodSecurity restricted refuses a privileged OCI pod; warn mode warns", || {
        apply_ok(&s, &namespace("locked", "pod-security.kubernetes.io/enforce: restricted"));
        let privileged = |ns: &str| {
            format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: priv, namespace: {ns}}}
spec:
  runtimeClassName: runc
  containers:
  - name: c
    image: skiff.local/busybox:1.36
    securityContext: {{privileged: true}}
"#
            )
        };
        apply_refused(
            &s,
            &privileged("locked"),
            "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
        );
        apply_ok(&s, &namespace("warned", "pod-security.kubernetes.io/warn: baseline"));
        let err = apply_ok(&s, &privileged("warned"));
        assert!(
            err.contains("Warning: would violate PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"),
            "kubectl's warnings: {err}"
        );
        // A workload's template is warned about, never refused.
        let err = apply_ok(
            &s,
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: privdep, namespace: locked}
spec:
  replicas: 0
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec:
      runtimeClassName: runc
      containers: [{name: c, image: "skiff.local/busybox:1.36", securityContext: {privileged: true}}]
"#,
        );
        assert!(
            err.contains("Warning: would violate PodSecurity \"restricted:latest\""),
            "kubectl's warnings: {err}"
        );
        apply_refused(
            &s,
            &namespace("typo", "pod-security.kubernetes.io/enforce: superstrict"),
            "pod-security.kubernetes.io/enforce",
        );
    });

    checks.check("NamespaceLifecycle keeps the system namespaces", || {
        for ns in ["default", "kube-system", "kube-public"] {
            let out = s.kubectl(&["delete", "namespace", ns, "--dry-run=server"]);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "deleting {ns} should fail");
            assert!(
                err.contains(&format!(
                    "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
                )),
                "{err}"
            );
        }
    });

    checks.check("DefaultStorageClass and the claim protection finalizer", || {
        apply_ok(
            &s,
            r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: skiff.dev/none
"#,
        );
        apply_ok(
            &s,
            r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
        );
        let pvc = s.json(&["get", "pvc", "data"]);
        assert_eq!(pvc["spec"]["storageClassName"], "standard", "{pvc}");
        assert_eq!(
            pvc["metadata"]["finalizers"],
            serde_json::json!(["kubernetes.io/pvc-protection"])
        );
        s.ok(&["delete", "pvc", "data", "--wait=false"]);
        s.wait_for("the unused claim to go", Duration::from_secs(20), || {
            !s.kubectl(&["get", "pvc", "data"]).status.success()
        });
    });

    checks.check("a ValidatingAdmissionPolicy with params denies big Deployments", || {
        apply_ok(&s, &namespace("vap", "vap: \"on\""));
        apply_ok(&s, &namespace("vap-warn", "vap: \"warn\""));
        apply_ok(
            &s,
            r#"apiVersion: v1
kind: ConfigMap
metadata: {name: replica-limit, namespace: vap}
data: {maxReplicas: "3"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: max-replicas}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    messageExpression: "'replicas must be no greater than ' + params.data.maxReplicas + ', got ' + string(object.spec.replicas)"
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas-binding}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef: {name: replica-limit, namespace: vap, parameterNotFoundAction: Deny}
  matchResources: {namespaceSelector: {matchLabels: {vap: "on"}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas-warn}
spec:
  policyName: max-replicas
  validationActions: [Warn]
  paramRef: {name: replica-limit, namespace: vap, parameterNotFoundAction: Deny}
  matchResources: {namespaceSelector: {matchLabels: {vap: "warn"}}}
"#,
        );
        let deployment = |ns: &str, name: &str, replicas: u32| {
            format!(
                r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: wasmtime
      containers: [{{name: app, image: "test-guest:e2e"}}]
"#
            )
        };
        apply_refused(
            &s,
            &deployment("vap", "big", 5),
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: replicas must be no greater than 3, got 5",
        );
        apply_ok(&s, &deployment("vap", "small", 2));
        let err = apply_ok(&s, &deployment("vap-warn", "big", 5));
        assert!(
            err.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-warn': replicas must be no greater than 3, got 5"),
            "{err}"
        );
        let listed = s.ok(&["get", "validatingadmissionpolicies"]);
        assert!(listed.contains("max-replicas") && listed.contains("v1/ConfigMap"), "{listed}");
        apply_refused(
            &s,
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  validations: [{expression: "object.spec.replicas <="}]
"#,
            "compilation failed",
        );
    });

    checks.check("a policy on CONNECT refuses kubectl exec", || {
        apply_ok(
            &s,
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-exec}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CONNECT], resources: [pods/exec]}
  validations:
  - expression: "object.command.size() > 0 && object.command[0] == 'allowed'"
    message: "exec is not allowed in this namespace"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-exec}
spec:
  policyName: no-exec
  validationActions: [Deny]
  matchResources: {namespaceSelector: {matchLabels: {vap: "on"}}}
"#,
        );
        let mut pod = String::new();
        s.wait_for("a pod of the small Deployment", Duration::from_secs(30), || {
            let pods = s.json(&["get", "pods", "-n", "vap", "-l", "app=small"]);
            pod = pods["items"][0]["metadata"]["name"].as_str().unwrap_or("").to_string();
            !pod.is_empty()
        });
        let out = s.kubectl(&["exec", "-n", "vap", &pod, "--", "ls"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "exec should be refused");
        assert!(err.contains("exec is not allowed in this namespace"), "{err}");
    });

    checks.check("a MutatingAdmissionPolicy adds a label and an annotation", || {
        apply_ok(
            &s,
            r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: add-owner}
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: "Object{metadata: Object.metadata{labels: {'owner': 'skiff'}}}"
  - patchType: JSONPatch
    jsonPatch:
      expression: "[JSONPatch{op: 'add', path: '/metadata/annotations', value: {'patched': 'yes'}}]"
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: add-owner}
spec:
  policyName: add-owner
  matchResources: {namespaceSelector: {matchLabels: {vap: "on"}}}
"#,
        );
        s.ok(&["create", "configmap", "labelled", "-n", "vap", "--from-literal=a=b"]);
        let cm = s.json(&["get", "configmap", "labelled", "-n", "vap"]);
        assert_eq!(cm["metadata"]["labels"]["owner"], "skiff", "{cm}");
        assert_eq!(cm["metadata"]["annotations"]["patched"], "yes", "{cm}");
        assert_eq!(cm["data"]["a"], "b");
        s.ok(&["create", "configmap", "plain", "-n", "default"]);
        let cm = s.json(&["get", "configmap", "plain"]);
        assert!(cm["metadata"]["labels"].get("owner").is_none(), "{cm}");
    });

    let (ca, cert, key) =
        support::loopback_pki_for("webhook-test-ca", &["localhost", "webhook.default.svc"]);
    let server = WebhookServer::start(dir.path(), &cert, &key);
    let port = server.port;
    apply_ok(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: webhook, namespace: default}\nspec: {type: ExternalName, externalName: localhost}\n",
    );
    apply_ok(&s, &namespace("hooked", "webhooks: \"on\""));
    let rules =
        "rules: [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [pods]}]";
    let selector = "namespaceSelector: {matchLabels: {webhooks: \"on\"}}";
    apply_ok(
        &s,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: a-mutate}}
webhooks:
- name: a.skiff.test
  clientConfig:
    service: {{namespace: default, name: webhook, port: {port}, path: /mutate-a}}
    caBundle: {ca}
  {rules}
  {selector}
  reinvocationPolicy: IfNeeded
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: b-mutate}}
webhooks:
- name: b.skiff.test
  clientConfig:
    url: https://127.0.0.1:{port}/mutate-b
    caBundle: {ca}
  {rules}
  {selector}
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: deny}}
webhooks:
- name: deny.skiff.test
  clientConfig:
    url: https://127.0.0.1:{port}/validate
    caBundle: {ca}
  {rules}
  {selector}
  sideEffects: None
  admissionReviewVersions: [v1]
"#,
            ca = b64(&ca),
        ),
    );

    checks.check("mutating webhooks patch, in order, with reinvocation", || {
        let err = apply_ok(&s, &pod("hooked", "w1", "", ""));
        let labels = s.json(&["get", "pod", "w1", "-n", "hooked"])["metadata"]["labels"].clone();
        assert_eq!(labels["a"], "1", "{labels}");
        assert_eq!(labels["b"], "1", "{labels}");
        assert_eq!(labels["a-saw-b"], "true", "webhook a was reinvoked: {labels}");
        assert_eq!(
            server.calls("w1"),
            ["/mutate-a", "/mutate-b", "/mutate-a", "/validate"],
            "the order of calls"
        );
        assert!(err.contains("Warning: validated by the test webhook"), "warnings: {err}");
        // Namespaces the selector leaves out are not sent to the webhooks.
        apply_ok(&s, &pod("default", "w2", "", ""));
        let labels = s.json(&["get", "pod", "w2"])["metadata"]["labels"].clone();
        assert!(labels.get("a").is_none(), "{labels}");
        assert!(server.calls("w2").is_empty());
    });

    checks.check("a validating webhook's denial reaches the client", || {
        apply_refused(
            &s,
            &pod("hooked", "w3", ", deny: \"true\"", ""),
            "admission webhook \"deny.skiff.test\" denied the request: pods labelled deny=true are refused",
        );
        assert!(
            s.kubectl(&["get", "pod", "w3", "-n", "hooked"]).status.code() != Some(0),
            "nothing was written"
        );
    });

    checks.check("failurePolicy Fail and Ignore with the webhook down", || {
        let down = dead_port();
        let config = |policy: &str| {
            format!(
                r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: down}}
webhooks:
- name: down.skiff.test
  clientConfig:
    url: https://127.0.0.1:{down}/validate
    caBundle: {ca}
  {rules}
  {selector}
  failurePolicy: {policy}
  timeoutSeconds: 2
  sideEffects: None
  admissionReviewVersions: [v1]
"#,
                ca = b64(&ca),
            )
        };
        apply_ok(&s, &config("Fail"));
        apply_refused(
            &s,
            &pod("hooked", "w4", "", ""),
            "failed calling webhook \"down.skiff.test\"",
        );
        apply_ok(&s, &config("Ignore"));
        apply_ok(&s, &pod("hooked", "w4", "", ""));
        s.ok(&["delete", "validatingwebhookconfiguration", "down"]);
    });

    checks.finish("admission");
}

/// A Wasm policy and its binding, as YAML.
fn wasm_policy(name: &str, module: &str, spec: &str, binding: &str) -> String {
    format!(
        r#"apiVersion: policy.skiff.dev/v1alpha1
kind: WasmAdmissionPolicy
metadata: {{name: {name}}}
spec:
  module: {module}
  matchConstraints:
    resourceRules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}}]
    namespaceSelector: {{matchLabels: {{policies: "on"}}}}
{spec}
---
apiVersion: policy.skiff.dev/v1alpha1
kind: WasmAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
{binding}
"#
    )
}

fn oci_pod(ns: &str, name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  runtimeClassName: runc\n  containers: [{{name: c, image: \"{image}\"}}]\n"
    )
}

#[test]
fn wasm_policies_should_enforce_on_both_runtimes_and_fail_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    for p in ["allowed-registries", "default-label", "trap", "spin"] {
        s.import(&guest(&format!("policy-{p}.wasm")), &format!("skiff.local/policies/{p}:v1"));
    }
    s.import(&guest("test-guest.wasip1.wasm"), "skiff.local/test-guest:e2e");
    apply_ok(&s, &namespace("guarded", "policies: \"on\""));
    let mut checks = Checks::default();

    apply_ok(
        &s,
        &wasm_policy(
            "registries",
            "skiff.local/policies/allowed-registries:v1",
            "  settings: {registries: [skiff.local]}",
            "",
        ),
    );
    apply_ok(
        &s,
        &wasm_policy(
            "team-label",
            "skiff.local/policies/default-label:v1",
            "  mutating: true\n  settings: {labels: {team: unknown}}",
            "",
        ),
    );
    let wasm_pod = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: guarded}}\nspec:\n  runtimeClassName: wasmtime\n  containers: [{{name: app, image: \"{image}\"}}]\n"
        )
    };

    checks.check("allowed registries: Wasm and OCI pods from elsewhere are refused", || {
        apply_refused(
            &s,
            &wasm_pod("w-bad", "docker.io/library/app:1"),
            "admission policy \"registries\" (WasmAdmissionPolicy with binding \"registries\") denied the request: ",
        );
        apply_refused(&s, &oci_pod("guarded", "o-bad", "nginx:1.27"), "nginx:1.27");
        apply_ok(&s, &wasm_pod("w-ok", "skiff.local/test-guest:e2e"));
        apply_ok(&s, &oci_pod("guarded", "o-ok", "skiff.local/busybox:1.36"));
    });

    checks.check("default label: both runtimes' pods get it, an existing one is kept", || {
        for name in ["w-ok", "o-ok"] {
            let labels = s.json(&["get", "pod", name, "-n", "guarded"])["metadata"]["labels"].clone();
            assert_eq!(labels["team"], "unknown", "{name}: {labels}");
        }
        let out = s.kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: w-team, namespace: guarded, labels: {team: core}}\nspec:\n  runtimeClassName: wasmtime\n  containers: [{name: app, image: skiff.local/test-guest:e2e}]\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let labels = s.json(&["get", "pod", "w-team", "-n", "guarded"])["metadata"]["labels"].clone();
        assert_eq!(labels["team"], "core");
    });

    checks.check("Warn and Audit actions warn instead of refusing", || {
        apply_ok(
            &s,
            &wasm_policy(
                "registries",
                "skiff.local/policies/allowed-registries:v1",
                "  settings: {registries: [skiff.local]}",
                "  validationActions: [Warn, Audit]",
            ),
        );
        let err = apply_ok(&s, &oci_pod("guarded", "o-warned", "nginx:1.27"));
        assert!(
            err.contains("Warning: Validation failed for WasmAdmissionPolicy 'registries' with binding 'registries': "),
            "{err}"
        );
        s.ok(&["delete", "wasmadmissionpolicybinding", "registries"]);
    });

    checks.check("a trapping policy obeys failurePolicy", || {
        let trap = |policy: &str| {
            wasm_policy(
                "trap",
                "skiff.local/policies/trap:v1",
                &format!("  failurePolicy: {policy}"),
                "",
            )
        };
        apply_ok(&s, &trap("Fail"));
        apply_refused(
            &s,
            &wasm_pod("t1", "skiff.local/test-guest:e2e"),
            "WasmAdmissionPolicy \"trap\" failed: the policy trapped",
        );
        apply_ok(&s, &trap("Ignore"));
        apply_ok(&s, &wasm_pod("t1", "skiff.local/test-guest:e2e"));
        s.ok(&["delete", "wasmadmissionpolicybinding", "trap"]);
    });

    checks.check("a looping policy times out and the api server stays fast", || {
        apply_ok(
            &s,
            &wasm_policy(
                "spin",
                "skiff.local/policies/spin:v1",
                "  failurePolicy: Fail\n  timeoutMilliseconds: 200",
                "",
            ),
        );
        // Four pods stuck behind the spinning policy at once, and meanwhile other requests.
        std::thread::scope(|scope| {
            let spinning: Vec<_> = (0..4)
                .map(|i| {
                    let s = &s;
                    let pod = wasm_pod(&format!("s{i}"), "skiff.local/test-guest:e2e");
                    scope.spawn(move || apply(s, &pod))
                })
                .collect();
            for i in 0..5 {
                let started = std::time::Instant::now();
                s.ok(&["create", "configmap", &format!("fast{i}"), "-n", "guarded"]);
                let took = started.elapsed();
                assert!(took < Duration::from_secs(2), "a configmap create took {took:?}");
            }
            for h in spinning {
                let out = h.join().expect("apply thread");
                assert!(!out.status.success(), "a spinning policy must not admit");
                let err = text(&out.stderr);
                assert!(err.contains("ran past its deadline"), "{err}");
            }
        });
        s.ok(&["delete", "wasmadmissionpolicybinding", "spin"]);
    });

    checks.finish("wasm policies");
}
