//! End-to-end: kubectl's typed commands send protobuf bodies (and ask for protobuf answers);
//! the objects they create read back as JSON with the right data.

mod support;

use serde_json::Value;
use support::Skiff;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    (guard, dir, skiff)
}

/// kubectl at a verbosity that logs request and response headers; must succeed.
fn verbose_ok(s: &Skiff, args: &[&str]) -> (String, String) {
    let mut a = args.to_vec();
    a.push("-v=8");
    let out = s.kubectl(&a);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "kubectl {args:?} failed: {stdout}{stderr}");
    (stdout, stderr)
}

/// Whether the verbose log shows a protobuf request body and a protobuf answer (kubectl -v=8
/// logs each request's and each response's headers as a block ending in " >").
fn spoke_protobuf(log: &str) -> bool {
    let (mut block, mut request, mut answer) = ("", false, false);
    for line in log.lines() {
        if line.contains("\"Request\" verb=") {
            block = "request";
        } else if line.contains("\"Response\" status=") {
            block = "response";
        } else if line.trim_start().starts_with('>') {
            block = "";
        } else if line.trim_start().starts_with("Content-Type:") && line.contains(PROTOBUF) {
            match block {
                "request" => request = true,
                "response" => answer = true,
                _ => {}
            }
        }
    }
    request && answer
}

#[test]
fn kubectl_create_namespace_configmap_and_secret_should_go_through_protobuf() {
    let (_serial, _dir, s) = started();

    let (out, log) = verbose_ok(&s, &["create", "namespace", "proto-ns"]);
    assert!(out.contains("namespace/proto-ns created"), "{out}");
    assert!(spoke_protobuf(&log), "kubectl did not use protobuf:\n{log}");
    let ns = s.json(&["get", "namespace", "proto-ns"]);
    assert_eq!(ns["metadata"]["name"], "proto-ns");
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // Go writes unset strings; they must not arrive as empty values.
    assert!(ns["metadata"].get("generateName").is_none(), "{ns}");

    let (out, log) = verbose_ok(
        &s,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "proto-ns",
            "--from-literal=mode=fast",
            "--from-literal=greeting=hello world",
            "--from-literal=empty=",
        ],
    );
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(spoke_protobuf(&log), "kubectl did not use protobuf:\n{log}");
    let cm = s.json(&["get", "configmap", "settings", "-n", "proto-ns"]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"mode": "fast", "greeting": "hello world", "empty": ""})
    );
    assert_eq!(cm["metadata"]["namespace"], "proto-ns");

    let (out, log) = verbose_ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "proto-ns",
            "--from-literal=password=s3cr3t",
        ],
    );
    assert!(out.contains("secret/creds created"), "{out}");
    assert!(spoke_protobuf(&log), "kubectl did not use protobuf:\n{log}");
    let secret = s.json(&["get", "secret", "creds", "-n", "proto-ns"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "czNjcjN0", "{secret}");

    // An error answer is a protobuf Status that kubectl reads back.
    let out = s.kubectl(&["create", "namespace", "proto-ns"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namespaces \"proto-ns\" already exists"), "{err}");

    // Deleting sends DeleteOptions; the object is gone afterwards.
    s.ok(&["delete", "configmap", "settings", "-n", "proto-ns"]);
    let out = s.kubectl(&["get", "configmap", "settings", "-n", "proto-ns", "-o", "json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let listed: Value = s.json(&["get", "secrets", "-n", "proto-ns"]);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

#[test]
fn kubectl_create_deployment_should_go_through_protobuf() {
    let (_serial, _dir, s) = started();
    let (out, log) =
        verbose_ok(&s, &["create", "deployment", "web", "--image=nginx", "--replicas=0"]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(spoke_protobuf(&log), "kubectl did not use protobuf:\n{log}");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
}

#[test]
fn kubectl_auth_can_i_should_send_its_review_as_protobuf() {
    let (_serial, _dir, s) = started();
    let (out, log) = verbose_ok(&s, &["auth", "can-i", "create", "pods"]);
    assert_eq!(out.trim(), "yes");
    assert!(spoke_protobuf(&log), "kubectl did not use protobuf:\n{log}");
}

/// helm keeps each release in a Secret it writes and reads with client-go's typed (protobuf)
/// client; a chart without templates exercises just that.
#[test]
fn helm_should_store_and_list_its_release_secret_through_protobuf() {
    let (_serial, dir, s) = started();
    let chart = dir.path().join("empty-chart");
    std::fs::create_dir_all(&chart).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: empty-chart\nversion: 0.1.0\ndescription: no templates\n",
    )
    .expect("Chart.yaml");
    let helm = |args: &[&str]| {
        let out = std::process::Command::new(support::tools_dir().join("helm"))
            .env("HOME", s.tool_home())
            .args(args)
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .env("HELM_CACHE_HOME", dir.path().join("helm-cache"))
            .env("HELM_CONFIG_HOME", dir.path().join("helm-config"))
            .env("HELM_DATA_HOME", dir.path().join("helm-data"))
            .output()
            .expect("running helm");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "helm {args:?} failed: {text}");
        text
    };
    let chart_path = chart.to_string_lossy().into_owned();
    let out = helm(&["install", "demo", &chart_path, "--namespace", "default"]);
    assert!(out.contains("STATUS: deployed"), "{out}");

    let secrets = s.json(&["get", "secrets", "-l", "owner=helm,name=demo"]);
    let release = &secrets["items"][0];
    assert_eq!(release["type"], "helm.sh/release.v1", "{secrets}");
    assert_eq!(release["metadata"]["labels"]["status"], "deployed");
    assert!(release["data"]["release"].as_str().is_some_and(|r| r.len() > 100), "{release}");

    let listed = helm(&["list", "--namespace", "default", "-o", "json"]);
    let listed: Value = serde_json::from_str(listed.trim()).expect("helm list json");
    assert_eq!(listed[0]["name"], "demo", "{listed}");
    assert_eq!(listed[0]["status"], "deployed");

    helm(&["uninstall", "demo", "--namespace", "default"]);
    let secrets = s.json(&["get", "secrets", "-l", "owner=helm,name=demo"]);
    assert_eq!(secrets["items"].as_array().map(Vec::len), Some(0), "{secrets}");
}
