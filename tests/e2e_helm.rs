//! End-to-end: the real helm 3.19, 4.1 and 4.3, each against its own fresh `skiff server`,
//! through a release's life (install, upgrade, rollback, history, list, uninstall) of
//! charts/skiff-demo: a Wasm Deployment, a Service, a ConfigMap and a Secret. Install and
//! upgrade `--wait` for the Deployment's rollout.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{Checks, Skiff, guest, repo_root, tool};

struct Helm<'a> {
    bin: PathBuf,
    home: &'a Path,
    skiff: &'a Skiff,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Helm<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .env("HOME", self.skiff.tool_home())
            .arg("--kubeconfig")
            .arg(&self.skiff.kubeconfig)
            .args(["--namespace", "e2e"])
            .args(args)
            // Keep helm's cache, config and data out of the user's home.
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .output()
            .expect("running helm")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm {args:?}: {e}: {out}"))
    }
}

/// `KEY: value` of helm's release summary.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// A revision as helm prints it in JSON (a number in history, a string in list).
fn revision(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

fn release_state(s: &Skiff) -> (i64, String, String) {
    let d = s.json(&["get", "deployment", "demo-skiff-demo", "-n", "e2e"]);
    let cm = s.json(&["get", "configmap", "demo-skiff-demo", "-n", "e2e"]);
    let secret = s.json(&["get", "secret", "demo-skiff-demo", "-n", "e2e"]);
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        cm["data"]["greeting"].as_str().unwrap_or_default().to_string(),
        secret["data"]["password"].as_str().unwrap_or_default().to_string(),
    )
}

fn suite(version: &str) {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("data"));
    // A guest that keeps serving, so that the Deployment becomes available and `--wait` ends.
    s.import(&guest("hello-http.wasip2.wasm"), "hello-http:latest");
    let helm = Helm { bin: tool(&format!("helm-{version}")), home: dir.path(), skiff: &s };
    let v = helm.ok(&["version", "--short"]);
    assert!(v.starts_with(&format!("v{version}.")), "not helm {version}: {v}");
    let chart = repo_root().join("charts/skiff-demo");
    let chart = chart.to_str().expect("utf-8 path");
    let mut c = Checks::default();

    c.check("install", || {
        let out = helm.ok(&[
            "install",
            "demo",
            chart,
            "--create-namespace",
            "--set",
            "image=hello-http:latest",
            "--wait",
            "--timeout=120s",
        ]);
        assert_eq!(field(&out, "NAME"), Some("demo"), "{out}");
        assert_eq!(field(&out, "NAMESPACE"), Some("e2e"), "{out}");
        assert_eq!(field(&out, "STATUS"), Some("deployed"), "{out}");
        assert_eq!(field(&out, "REVISION"), Some("1"), "{out}");
        // "change-me", base64-encoded by the chart.
        assert_eq!(release_state(&s), (1, "hello".into(), "Y2hhbmdlLW1l".into()));
        let d = s.json(&["get", "deployment", "demo-skiff-demo", "-n", "e2e"]);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["runtimeClassName"], "wasmtime");
        assert_eq!(pod["containers"][0]["image"], "hello-http:latest");
        // `--wait` returned: the Deployment is rolled out.
        assert_eq!(d["status"]["availableReplicas"], 1, "{}", d["status"]);
        assert_eq!(d["status"]["updatedReplicas"], 1, "{}", d["status"]);
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(d["metadata"]["annotations"]["meta.helm.sh/release-name"], "demo");
        let svc = s.json(&["get", "service", "demo-skiff-demo", "-n", "e2e"]);
        assert_eq!(svc["spec"]["ports"][0]["port"], 80);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
        assert!(svc["spec"]["clusterIP"].is_string(), "{svc}");
        // The release itself is stored as a Secret.
        let out =
            s.ok(&["get", "secrets", "-n", "e2e", "-l", "owner=helm,name=demo", "-o", "name"]);
        assert_eq!(out.trim(), "secret/sh.helm.release.v1.demo.v1");
    });

    c.check("list", || {
        let list = helm.json(&["list"]);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        let r = &list[0];
        assert_eq!((r["name"].as_str(), r["namespace"].as_str()), (Some("demo"), Some("e2e")));
        assert_eq!(revision(&r["revision"]), "1");
        assert_eq!(r["status"], "deployed");
        assert_eq!(r["chart"], "skiff-demo-0.1.0");
        assert_eq!(r["app_version"], "1.0.0");
        let table = helm.ok(&["list"]);
        let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        assert_eq!(row.first(), Some(&"demo"), "{table}");
        assert!(row.contains(&"deployed") && row.contains(&"skiff-demo-0.1.0"), "{table}");
    });

    c.check("upgrade", || {
        let out = helm.ok(&[
            "upgrade",
            "demo",
            chart,
            "--set",
            "replicas=2",
            "--set",
            "greeting=bonjour",
            "--set",
            "password=s3cr3t",
            "--set",
            "image=hello-http:latest",
            "--wait",
            "--timeout=120s",
        ]);
        assert!(out.contains("has been upgraded"), "{out}");
        assert_eq!(field(&out, "REVISION"), Some("2"), "{out}");
        assert_eq!(field(&out, "STATUS"), Some("deployed"), "{out}");
        assert_eq!(release_state(&s), (2, "bonjour".into(), "czNjcjN0".into()));
        // `--wait` returned: the new template is rolled out on both replicas.
        let d = s.json(&["get", "deployment", "demo-skiff-demo", "-n", "e2e"]);
        assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"]);
        assert_eq!(d["status"]["updatedReplicas"], 2, "{}", d["status"]);
        assert_eq!(d["status"]["availableReplicas"], 2, "{}", d["status"]);
        let values = helm.json(&["get", "values", "demo"]);
        assert_eq!(
            values,
            json!({"greeting": "bonjour", "password": "s3cr3t", "replicas": 2, "image": "hello-http:latest"})
        );
    });

    c.check("history", || {
        let h = helm.json(&["history", "demo"]);
        let rows: Vec<(String, &str)> = h
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (revision(&r["revision"]), r["status"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(rows, [("1".into(), "superseded"), ("2".into(), "deployed")], "{h}");
        assert_eq!(h[0]["description"], "Install complete");
        assert_eq!(h[1]["description"], "Upgrade complete");
    });

    c.check("rollback", || {
        let out = helm.ok(&["rollback", "demo", "1"]);
        assert!(out.contains("Rollback was a success"), "{out}");
        assert_eq!(release_state(&s), (1, "hello".into(), "Y2hhbmdlLW1l".into()));
        let h = helm.json(&["history", "demo"]);
        assert_eq!(h.as_array().map(Vec::len), Some(3), "{h}");
        assert_eq!(revision(&h[2]["revision"]), "3");
        assert_eq!(h[2]["status"], "deployed");
        assert_eq!(h[2]["description"], "Rollback to 1");
        assert_eq!(h[1]["status"], "superseded");
        let list = helm.json(&["list"]);
        assert_eq!(revision(&list[0]["revision"]), "3", "{list}");
        let out =
            s.ok(&["get", "secrets", "-n", "e2e", "-l", "owner=helm,name=demo", "-o", "name"]);
        assert_eq!(out.lines().count(), 3, "{out}");
    });

    c.check("uninstall", || {
        let out = helm.ok(&["uninstall", "demo"]);
        assert!(out.contains("release \"demo\" uninstalled"), "{out}");
        for kind in ["deployment", "service", "configmap", "secret"] {
            let out = s.kubectl(&["get", kind, "demo-skiff-demo", "-n", "e2e"]);
            assert!(
                !out.status.success() && text(&out.stderr).contains("(NotFound)"),
                "{kind} left after uninstall: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        assert_eq!(helm.json(&["list"]), json!([]));
        let out = s.ok(&["get", "secrets", "-n", "e2e", "-l", "owner=helm", "-o", "name"]);
        assert_eq!(out.trim(), "", "release records left after uninstall");
        let out = helm.run(&["history", "demo"]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("release: not found"), "{}", text(&out.stderr));
    });

    c.finish(&format!("helm {version}"));
}

#[test]
fn helm_3_19_should_install_upgrade_roll_back_and_uninstall() {
    suite("3.19");
}

#[test]
fn helm_4_1_should_install_upgrade_roll_back_and_uninstall() {
    suite("4.1");
}

#[test]
fn helm_4_3_should_install_upgrade_roll_back_and_uninstall() {
    suite("4.3");
}
