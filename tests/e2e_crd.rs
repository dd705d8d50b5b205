//! End-to-end: custom resources with the real kubectl against a real `skiff server`. A CRD
//! with two versions (v1 stored, v1beta1 converted by a webhook the test program
//! tests/extension/server.py serves over HTTPS), a structural schema with defaults, CEL rules
//! (one a transition rule), printer columns, and the status and scale subresources: established
//! and discovered (`api-resources`, `explain`), created, applied, patched (merge and JSON; a
//! strategic merge patch refused as kube refuses it), scaled, watched (`get -w`), waited on
//! (`wait --for=condition=Ready`), read and written through v1beta1, refused with kube's
//! messages when invalid, the v1beta1 reads failing clearly (and v1 still served) with the webhook down, and
//! the CRD's deletion taking its objects with it. Then an aggregated API served by the same
//! test program: an APIService, `kubectl get` through Skiff with the front-proxy identity, the
//! `Available` condition, and discovery staying fast while the extension server is down.

mod support;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Checks, Skiff, python, repo_root};

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

/// A kubectl run that must fail with `want` in its error output.
fn refused(out: Output, want: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "should fail: {}", text(&out.stdout));
    assert!(err.contains(want), "want {want:?} in: {err}");
}

/// The test program (conversion webhook and extension api server), killed on drop.
struct Extension {
    server: support::PyServer,
    port: u16,
    log: std::path::PathBuf,
}

impl Extension {
    fn start(dir: &Path, cert: &str, key: &str, client_ca: &str) -> Extension {
        let (cert_file, key_file, ca_file, log) = (
            dir.join("extension.crt"),
            dir.join("extension.key"),
            dir.join("client-ca.crt"),
            dir.join("extension.log"),
        );
        std::fs::write(&cert_file, cert).expect("writing the cert");
        std::fs::write(&key_file, key).expect("writing the key");
        std::fs::write(&ca_file, client_ca).expect("writing the client CA");
        let server = support::PyServer::start(
            &repo_root().join("tests/extension/server.py"),
            &[&cert_file, &key_file, &ca_file, &log],
        );
        Extension { port: server.port, server, log }
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn crd(port: u16, ca: &str) -> String {
    let widget_schema = |size: &str| {
        format!(
            r#"        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [replicas]
              x-kubernetes-validations:
              - rule: "self.replicas <= self.maxReplicas"
                message: "replicas must not exceed maxReplicas"
              - rule: "self.color == oldSelf.color"
                messageExpression: "'color is immutable: was ' + oldSelf.color"
                reason: FieldValueForbidden
              properties:
                replicas: {{type: integer, minimum: 0, description: "How many widgets to run."}}
                maxReplicas: {{type: integer, default: 10}}
                color: {{type: string, enum: [blue, green, red], default: blue}}
{size}
            status:
              type: object
              properties:
                replicas: {{type: integer}}
                selector: {{type: string}}
                conditions:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [type]
                  items:
                    type: object
                    required: [type, status]
                    properties:
                      type: {{type: string}}
                      status: {{type: string}}
                      reason: {{type: string}}
                      message: {{type: string}}
                      lastTransitionTime: {{type: string, format: date-time}}
"#
        )
    };
    let v1 = widget_schema("                size: {type: integer}");
    let v1beta1 = widget_schema(
        "                dimensions:\n                  type: object\n                  properties:\n                    size: {type: integer}",
    );
    let common = r#"    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    selectableFields:
    - {jsonPath: .spec.color}
"#;
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.stable.skiff.test
spec:
  group: stable.skiff.test
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
    shortNames: [wd]
    categories: [all]
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        caBundle: {ca}
        service: {{namespace: default, name: extension, port: {port}, path: /convert}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
{v1}{common}  - name: v1beta1
    served: true
    storage: false
    schema:
{v1beta1}{common}"#,
        ca = b64(ca)
    )
}

fn widget(name: &str, replicas: i64, extra: &str) -> String {
    format!(
        "apiVersion: stable.skiff.test/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  replicas: {replicas}\n  size: 7\n{extra}"
    )
}

#[test]
fn custom_resources_should_behave_as_kubernetes() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("data"));
    let mut checks = Checks::default();

    let client_ca =
        s.json(&["get", "configmap", "-n", "kube-system", "extension-apiserver-authentication"]);
    let client_ca =
        client_ca["data"]["requestheader-client-ca-file"].as_str().unwrap_or("").to_string();
    let (ca, cert, key) =
        support::loopback_pki_for("extension-test-ca", &["localhost", "extension.default.svc"]);
    let mut ext = Extension::start(dir.path(), &cert, &key, &client_ca);
    apply_ok(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: extension, namespace: default}\nspec: {type: ExternalName, externalName: localhost}\n",
    );

    checks.check("the CRD is established, discovered and explained", || {
        apply_ok(&s, &crd(ext.port, &ca));
        s.ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=30s",
            "crd/widgets.stable.skiff.test",
        ]);
        let crd = s.json(&["get", "crd", "widgets.stable.skiff.test"]);
        assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget", "{crd}");
        assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]), "{crd}");
        let resources = s.ok(&["api-resources", "--api-group=stable.skiff.test"]);
        assert!(resources.contains("widgets") && resources.contains("wd"), "{resources}");
        assert!(
            resources.contains("stable.skiff.test/v1")
                || resources.contains("stable.skiff.test/v1beta1"),
            "{resources}"
        );
        let explained = s.ok(&["explain", "widget.spec.replicas"]);
        assert!(explained.contains("How many widgets to run."), "{explained}");
    });

    checks.check("invalid CRDs are refused with kube's messages; a name conflict is reported", || {
        let bad = |name: &str, schema: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {name}s.bad.skiff.test}}\nspec:\n  group: bad.skiff.test\n  scope: Namespaced\n  names: {{plural: {name}s, singular: {name}, kind: K{name}, shortNames: [wd]}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n{schema}"
            )
        };
        // A property without a type: not structural.
        let out = apply(&s, &bad("untyped", "        type: object\n        properties:\n          spec: {properties: {a: {type: string}}}\n"));
        refused(out, "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields");
        // A CEL rule that does not compile.
        let out = apply(
            &s,
            &bad("badcel", "        type: object\n        properties:\n          spec:\n            type: object\n            x-kubernetes-validations: [{rule: \"self.nope == 1\"}]\n            properties: {a: {type: string}}\n"),
        );
        refused(out, "compilation failed");
        // Names taken by another CRD of the group are not accepted.
        apply_ok(&s, &bad("first", "        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"));
        let second = bad("second", "        type: object\n        x-kubernetes-preserve-unknown-fields: true\n")
            .replace("shortNames: [wd]", "shortNames: [firsts]");
        apply_ok(&s, &second);
        s.wait_for("NamesAccepted False on the second CRD", Duration::from_secs(30), || {
            let c = s.json(&["get", "crd", "seconds.bad.skiff.test"]);
            c["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["type"] == "NamesAccepted" && c["status"] == "False" && c["reason"] == "ShortNamesConflict")
            })
        });
        s.ok(&["delete", "crd", "firsts.bad.skiff.test", "seconds.bad.skiff.test"]);
    });

    checks.check("create, defaults, pruning and printer columns", || {
        // kubectl validates strictly by default: an unknown field is an error...
        let out = apply(&s, &widget("w1", 2, "  bogus: 1\n"));
        refused(out, "unknown field \"spec.bogus\"");
        // ...and with --validate=warn a warning, the field pruned.
        let out = s.kubectl_stdin(
            &["apply", "--validate=warn", "-f", "-"],
            &widget("w1", 2, "  bogus: 1\n"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let warned = text(&out.stderr);
        assert!(warned.contains("unknown field \"spec.bogus\""), "kubectl warns: {warned}");
        let w = s.json(&["get", "widget", "w1"]);
        assert_eq!(w["spec"]["color"], "blue", "defaulted: {w}");
        assert_eq!(w["spec"]["maxReplicas"], 10, "defaulted: {w}");
        assert!(w["spec"].get("bogus").is_none(), "pruned: {w}");
        assert_eq!(w["metadata"]["generation"], 1, "{w}");
        let table = s.ok(&["get", "wd"]);
        let header = table.lines().next().unwrap_or("");
        for col in ["NAME", "REPLICAS", "COLOR", "READY", "AGE"] {
            assert!(header.contains(col), "{col} in {table}");
        }
        assert!(
            table.lines().any(|l| l.starts_with("w1") && l.contains(" 2 ") && l.contains("blue")),
            "{table}"
        );
        // `kubectl get all` includes the custom kind (its category).
        let all = s.ok(&["get", "all"]);
        assert!(all.contains("widget.stable.skiff.test/w1"), "{all}");
    });

    checks.check("field selectors on selectableFields", || {
        apply_ok(&s, &widget("green", 1, "  color: green\n"));
        let names = s.ok(&["get", "widgets", "--field-selector", "spec.color=green", "-o", "name"]);
        assert_eq!(names.trim(), "widget.stable.skiff.test/green", "{names}");
        let names =
            s.ok(&["get", "widgets", "--field-selector", "spec.color!=green", "-o", "name"]);
        assert_eq!(names.trim(), "widget.stable.skiff.test/w1", "{names}");
        refused(
            s.kubectl(&["get", "widgets", "--field-selector", "spec.size=7"]),
            "field label not supported",
        );
        s.ok(&["delete", "widget", "green"]);
    });

    checks.check("the schema refuses bad objects with field paths", || {
        let out = apply(
            &s,
            &widget("bad", 1, "  color: purple\n").replace("replicas: 1", "replicas: one"),
        );
        refused(out, "spec.replicas in body must be of type integer");
        let out = apply(&s, &widget("bad", 1, "  color: purple\n"));
        refused(out, "spec.color: Unsupported value: \"purple\"");
        let out = apply(&s, &widget("bad", -1, ""));
        refused(out, "spec.replicas in body should be greater than or equal to 0");
    });

    checks.check("CEL rules, with a transition rule and messageExpression", || {
        let out = apply(&s, &widget("bad", 11, ""));
        refused(out, "replicas must not exceed maxReplicas");
        let out = apply(&s, &widget("w1", 2, "  color: red\n"));
        refused(out, "color is immutable: was blue");
    });

    checks.check("merge and JSON patches; strategic merge refused", || {
        s.ok(&["patch", "widget", "w1", "--type=merge", "-p", r#"{"spec":{"maxReplicas":8}}"#]);
        s.ok(&[
            "patch",
            "widget",
            "w1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/size","value":9}]"#,
        ]);
        let w = s.json(&["get", "widget", "w1"]);
        assert_eq!(
            (w["spec"]["maxReplicas"].as_i64(), w["spec"]["size"].as_i64()),
            (Some(8), Some(9)),
            "{w}"
        );
        assert_eq!(w["metadata"]["generation"], 3, "{w}");
        let out = s.kubectl(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":1}}"#]);
        refused(out, "application/merge-patch+json");
    });

    checks.check("status and scale subresources, kubectl scale and wait", || {
        let status = r#"{"status":{"replicas":2,"selector":"app=w1","conditions":[{"type":"Ready","status":"True","reason":"Up","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
        s.ok(&["patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", status]);
        let w = s.json(&["get", "widget", "w1"]);
        assert_eq!(w["status"]["replicas"], 2, "{w}");
        let generation = w["metadata"]["generation"].clone();
        // The main resource does not write status.
        s.ok(&["patch", "widget", "w1", "--type=merge", "-p", r#"{"status":{"replicas":99}}"#]);
        assert_eq!(s.json(&["get", "widget", "w1"])["status"]["replicas"], 2);
        s.ok(&["wait", "--for=condition=Ready", "--timeout=20s", "widget/w1"]);
        s.ok(&["scale", "widget", "w1", "--replicas=4"]);
        let w = s.json(&["get", "widget", "w1"]);
        assert_eq!(w["spec"]["replicas"], 4, "{w}");
        assert_ne!(w["metadata"]["generation"], generation, "scaling is a spec change: {w}");
        let scale: Value = serde_json::from_str(&s.ok(&[
            "get",
            "--raw",
            "/apis/stable.skiff.test/v1/namespaces/default/widgets/w1/scale",
        ]))
        .expect("scale json");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!((scale["spec"]["replicas"].as_i64(), scale["status"]["replicas"].as_i64()), (Some(4), Some(2)), "{scale}");
        assert_eq!(scale["status"]["selector"], "app=w1", "{scale}");
        let table = s.ok(&["get", "widget", "w1"]);
        assert!(table.lines().nth(1).is_some_and(|l| l.contains("True")), "Ready column: {table}");
    });

    checks.check("get -w sees a change as it happens", || {
        let mut watch = support::in_netns(None, &support::tools_dir().join("kubectl"))
            .env("HOME", s.tool_home())
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args([
                "get",
                "widgets",
                "-w",
                "--output-watch-events",
                "-o",
                "custom-columns=E:.type,N:.object.metadata.name,S:.object.spec.size",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("kubectl get -w");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = watch.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let mut patched = false;
        while Instant::now() < deadline
            && !seen
                .iter()
                .any(|l: &String| l.starts_with("MODIFIED") && l.contains("w1") && l.contains("12"))
        {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(line);
            }
            if !patched && seen.iter().any(|l| l.starts_with("ADDED")) {
                s.ok(&["patch", "widget", "w1", "--type=merge", "-p", r#"{"spec":{"size":12}}"#]);
                patched = true;
            }
        }
        let _ = watch.kill();
        let _ = watch.wait();
        assert!(seen.iter().any(|l| l.starts_with("MODIFIED") && l.contains("12")), "{seen:?}");
    });

    checks.check("v1beta1 is served through the conversion webhook", || {
        let w = s.json(&["get", "widgets.v1beta1.stable.skiff.test", "w1"]);
        assert_eq!(w["apiVersion"], "stable.skiff.test/v1beta1", "{w}");
        assert_eq!(w["spec"]["dimensions"]["size"], 12, "{w}");
        assert_eq!(w["metadata"]["labels"]["converted-by"], "test-webhook", "{w}");
        apply_ok(
            &s,
            "apiVersion: stable.skiff.test/v1beta1\nkind: Widget\nmetadata: {name: w2, namespace: default}\nspec: {replicas: 1, dimensions: {size: 5}}\n",
        );
        let stored = s.json(&["get", "widgets.v1.stable.skiff.test", "w2"]);
        assert_eq!(stored["apiVersion"], "stable.skiff.test/v1", "{stored}");
        assert_eq!(stored["spec"]["size"], 5, "{stored}");
        let list = s.json(&["get", "widgets.v1beta1.stable.skiff.test"]);
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
        assert!(ext.requests().iter().any(|r| r["path"] == "/convert"), "the webhook was called");
    });

    checks.check("a conversion webhook that fails stops only the versions that need it", || {
        apply_ok(
            &s,
            &widget("w3", 1, "").replace("name: w3", "name: w3\n  labels: {conversion: fail}"),
        );
        let out = s.kubectl(&["get", "widgets.v1beta1.stable.skiff.test", "w3"]);
        refused(out, "refusing to convert an object labelled conversion=fail");
        s.ok(&["get", "widgets.v1.stable.skiff.test", "w3"]);
        s.ok(&["delete", "widget", "w3"]);
    });

    checks.check("an aggregated API answers kubectl through Skiff", || {
        apply_ok(
            &s,
            &format!(
                "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{name: v1alpha1.wardle.skiff.test}}\nspec:\n  group: wardle.skiff.test\n  version: v1alpha1\n  groupPriorityMinimum: 1000\n  versionPriority: 15\n  caBundle: {}\n  service: {{namespace: default, name: extension, port: {}}}\n",
                b64(&ca),
                ext.port
            ),
        );
        s.ok(&["wait", "--for=condition=Available", "--timeout=30s", "apiservice/v1alpha1.wardle.skiff.test"]);
        let names = s.ok(&["get", "flunders", "-o", "name"]);
        assert!(names.contains("flunder.wardle.skiff.test/alpha") && names.contains("beta"), "{names}");
        let one = s.json(&["get", "fl", "alpha"]);
        assert_eq!(one["metadata"]["annotations"]["requested-by"], "skiff-admin", "{one}");
        let groups = one["metadata"]["annotations"]["requested-groups"].as_str().unwrap_or("");
        assert!(groups.contains("system:masters"), "{one}");
        assert!(ext.requests().iter().any(|r| r["cn"] == "front-proxy-client"), "front-proxy cert");
    });

    checks.check("a down extension server does not slow anything else", || {
        ext.stop();
        let started = Instant::now();
        s.ok(&["get", "pods", "-A"]);
        s.ok(&["api-resources"]);
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        s.wait_for("the APIService to become unavailable", Duration::from_secs(60), || {
            let a = s.json(&["get", "apiservice", "v1alpha1.wardle.skiff.test"]);
            a["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["type"] == "Available" && c["status"] == "False")
            })
        });
        let out = s.kubectl(&[
            "get",
            "--raw",
            "/apis/wardle.skiff.test/v1alpha1/namespaces/default/flunders",
        ]);
        assert!(!out.status.success());
        // The v1 version of the custom resource does not need the webhook.
        s.ok(&["get", "widgets.v1.stable.skiff.test", "w1"]);
        refused(
            s.kubectl(&["get", "widgets.v1beta1.stable.skiff.test", "w1"]),
            "conversion webhook for",
        );
    });

    checks.check("deleting the CRD deletes its objects first", || {
        // Without the webhook the CRD keeps its stored version only.
        s.ok(&[
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["test.skiff.dev/hold"]}}"#,
        ]);
        s.ok(&["delete", "crd", "widgets.stable.skiff.test", "--wait=false"]);
        s.wait_for("the CRD to be terminating", Duration::from_secs(30), || {
            let c = s.json(&["get", "crd", "widgets.stable.skiff.test"]);
            c["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["type"] == "Terminating" && c["status"] == "True")
            })
        });
        s.wait_for("w1 to be marked deleted", Duration::from_secs(30), || {
            s.json(&["get", "widgets.v1.stable.skiff.test", "w1"])["metadata"]["deletionTimestamp"]
                .is_string()
        });
        refused(s.kubectl_stdin(&["create", "-f", "-"], &widget("w9", 1, "")), "terminating");
        s.ok(&[
            "patch",
            "widgets.v1.stable.skiff.test",
            "w1",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
        s.wait_for("the CRD to be gone", Duration::from_secs(30), || {
            !s.kubectl(&["get", "crd", "widgets.stable.skiff.test"]).status.success()
        });
        let out = s.kubectl(&["get", "widgets"]);
        assert!(!out.status.success(), "the kind is no longer served");
    });

    checks.finish("custom resources");
}

/// A custom resource type of kube-rs's `CustomResource` derive: its CRD generated from the
/// type (plus the scale subresource, which the test adds), its objects typed.
#[derive(
    kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
)]
#[kube(
    group = "library.skiff.test",
    version = "v1",
    kind = "Book",
    namespaced,
    status = "BookStatus",
    shortname = "bk",
    printcolumn = r#"{"name":"Pages","type":"integer","jsonPath":".spec.pages"}"#
)]
struct BookSpec {
    title: String,
    pages: i64,
}

#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
struct BookStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copies: Option<i64>,
}

#[test]
fn kube_rs_and_the_python_client_should_drive_the_same_crd() {
    use kube::CustomResourceExt as _;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(async {
        let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    });
    let mut checks = Checks::default();

    checks.check("kube-rs installs the derived CRD and drives Books", || {
        rt.block_on(async {
            let mut crd = serde_json::to_value(Book::crd()).expect("crd json");
            crd["spec"]["versions"][0]["subresources"]["scale"] = serde_json::json!({
                "specReplicasPath": ".spec.pages", "statusReplicasPath": ".status.copies"});
            let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
                serde_json::from_value(crd).expect("typed crd");
            let crds = Api::<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            >::all(client.clone());
            crds.create(&PostParams::default(), &crd).await.expect("create the CRD");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let got = crds.get("books.library.skiff.test").await.expect("get the CRD");
                let established = got.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter().any(|c| c.type_ == "Established" && c.status == "True")
                });
                if established {
                    break;
                }
                assert!(Instant::now() < deadline, "the CRD was not established");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let books: Api<Book> = Api::namespaced(client.clone(), "default");
            let book = Book::new("from-rust", BookSpec { title: "Written in Rust".into(), pages: 300 });
            let created = books.create(&PostParams::default(), &book).await.expect("create a Book");
            assert!(created.metadata.uid.is_some());
            let listed = books.list(&ListParams::default()).await.expect("list Books");
            assert_eq!(listed.items.len(), 1);
            assert_eq!(listed.items[0].spec.title, "Written in Rust");
            let patched = books
                .patch("from-rust", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"pages": 310}})))
                .await
                .expect("patch a Book");
            assert_eq!(patched.spec.pages, 310);
            let status = books
                .patch_status(
                    "from-rust",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": {"copies": 2}})),
                )
                .await
                .expect("patch the status");
            assert_eq!(status.status.and_then(|s| s.copies), Some(2));
            let applied = books
                .patch(
                    "from-rust",
                    &PatchParams::apply("e2e-crd").force(),
                    &Patch::Apply(serde_json::json!({"apiVersion": "library.skiff.test/v1", "kind": "Book",
                        "metadata": {"name": "from-rust"}, "spec": {"title": "Applied", "pages": 320}})),
                )
                .await
                .expect("server-side apply a Book");
            assert_eq!((applied.spec.title.as_str(), applied.spec.pages), ("Applied", 320));
        });
    });

    checks.check("the Python client's CustomObjectsApi drives the same CRD", || {
        let out = Command::new(python())
            .arg(repo_root().join("tests/clients/custom_objects.py"))
            .arg(&s.kubeconfig)
            .arg("default")
            .output()
            .expect("running python");
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 8, "{stdout}");
    });

    checks.finish("CRD clients");
}
