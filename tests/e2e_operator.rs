//! End-to-end: a custom controller written on kube-rs, run as a Wasm pod (and, for parity,
//! its native build as an OCI pod), installed with the real helm from
//! charts/static-site-operator, whose `crds/` ships the StaticSite CRD and whose templates
//! make a StaticSite that uses it. On two nodes in network namespaces of the test's own:
//! the operator (examples/operator, wasm32-wasip2, talking to the api server over
//! `wasi:http`) reconciles the StaticSite into a ConfigMap, a Deployment of site-server Wasm
//! pods and a Service, which serves the site at its ClusterIP; a change of the files reaches
//! the pages; the operator's pod is deleted and its replacement reconciles a new site; a
//! deleted site is held by the operator's finalizer until its children are gone.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::netns::{TwoNodes as Cluster, http_get, in_ns};
use support::{Checks, Skiff, guest, repo_root, tool};

const NS: &str = "sites";
const WAIT: Duration = Duration::from_secs(180);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn helm(s: &Skiff, home: &Path, args: &[&str]) -> Output {
    support::in_netns(s.netns.as_deref(), &tool("helm"))
        .env("HOME", s.tool_home())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(args)
        .output()
        .expect("running helm")
}

/// `helm install sso charts/static-site-operator` into [`NS`] with `values` (`--set`).
fn install(c: &Cluster, values: &str) -> Output {
    let chart = repo_root().join("charts/static-site-operator");
    let home = c.dir.path().join("helm");
    helm(
        &c.server,
        &home,
        &[
            "install",
            "sso",
            &chart.display().to_string(),
            "-n",
            NS,
            "--create-namespace",
            "--set",
            values,
        ],
    )
}

fn import_everywhere(c: &Cluster) {
    for (file, name) in [
        ("static-site-operator.wasm", "static-site-operator:latest"),
        ("site-server.wasm", "site-server:latest"),
    ] {
        c.server.import(&guest(file), name);
        c.agent.import(&guest(file), name);
    }
}

fn condition(obj: &Value, ty: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn site(name: &str, body: &str) -> String {
    format!(
        "apiVersion: web.skiff.dev/v1alpha1\nkind: StaticSite\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  replicas: 1\n  files:\n    index.html: \"<h1>{body}</h1>\"\n"
    )
}

/// GET `path` from the site `name` at its Service's ClusterIP, from inside the server's
/// network namespace (where the node proxy routes Service addresses).
fn from_service(c: &Cluster, name: &str, path: &str) -> Result<(u16, String), String> {
    let svc = c.server.json(&["get", "service", name, "-n", NS]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let ns = c.net.ns(0).to_string();
    in_ns(&ns, || http_get(&format!("{ip}:80"), path, Duration::from_secs(5)))
}

fn wait_ready(c: &Cluster, name: &str) {
    let out = c.server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("--timeout={}s", WAIT.as_secs()),
        "-n",
        NS,
        &format!("staticsite/{name}"),
    ]);
    let site = c.server.kubectl(&["get", "staticsite", name, "-n", NS, "-o", "yaml"]);
    let operator = c.server.kubectl(&[
        "logs",
        "-n",
        NS,
        "-l",
        "app.kubernetes.io/name=static-site-operator",
        "--tail=30",
    ]);
    assert!(
        out.status.success(),
        "{name} not Ready: {}\n{}\noperator log:\n{}{}",
        text(&out.stderr),
        text(&site.stdout),
        text(&operator.stdout),
        text(&operator.stderr)
    );
}

#[test]
fn a_wasm_operator_on_kube_rs_should_reconcile_static_sites() {
    let _serial = support::serial();
    let Some(c) = Cluster::start_with(false, false) else { return };
    import_everywhere(&c);
    let mut checks = Checks::default();

    checks.check("helm installs the chart, its CRD from crds/ and a StaticSite using it", || {
        let out = install(&c, "example.enabled=true");
        assert!(out.status.success(), "helm install: {}{}", text(&out.stdout), text(&out.stderr));
        let crd = c.server.json(&["get", "crd", "staticsites.web.skiff.dev"]);
        assert_eq!(condition(&crd, "Established"), "True", "{crd}");
        let operator = c.server.json(&[
            "get",
            "deployment",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=static-site-operator",
        ]);
        assert_eq!(
            operator["items"][0]["spec"]["template"]["spec"]["runtimeClassName"], "wasmtime",
            "the operator runs as a Wasm pod: {operator}"
        );
    });

    checks.check("the StaticSite becomes a ConfigMap, a Deployment and a Service", || {
        wait_ready(&c, "example");
        let site = c.server.json(&["get", "staticsite", "example", "-n", NS]);
        let uid = site["metadata"]["uid"].clone();
        assert!(
            site["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "web.skiff.dev/cleanup")),
            "{site}"
        );
        assert_eq!(site["status"]["readyReplicas"], 1, "{site}");
        assert_eq!(site["status"]["url"], "http://example.sites.svc.cluster.local", "{site}");
        for (kind, name) in
            [("configmap", "example-content"), ("deployment", "example"), ("service", "example")]
        {
            let child = c.server.json(&["get", kind, name, "-n", NS]);
            let owner = &child["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["kind"].as_str(), &owner["uid"]),
                (Some("StaticSite"), &uid),
                "{kind}: {child}"
            );
        }
        let cm = c.server.json(&["get", "configmap", "example-content", "-n", NS]);
        assert!(
            cm["data"]["index.html"]
                .as_str()
                .is_some_and(|h| h.contains("Hello from a StaticSite")),
            "{cm}"
        );
    });

    checks.check("the site is served through its Service", || {
        let mut last = Err(String::new());
        c.server.wait_for("the site at its ClusterIP", Duration::from_secs(60), || {
            last = from_service(&c, "example", "/");
            matches!(&last, Ok((200, body)) if body.contains("Hello from a StaticSite"))
        });
        let (code, css) = from_service(&c, "example", "/style.css").expect("style.css");
        assert_eq!(code, 200, "{css}");
        assert!(css.contains("font-family"), "{css}");
    });

    checks.check("a change of the files reaches the pages", || {
        c.server.ok(&["patch", "staticsite", "example", "-n", NS, "--type=merge", "-p", r#"{"spec":{"files":{"index.html":"<h1>Second edition</h1>"}}}"#]);
        c.server.wait_for("the new page", WAIT, || {
            matches!(from_service(&c, "example", "/"), Ok((200, body)) if body.contains("Second edition"))
        });
    });

    checks.check("a new operator pod picks up where the old one stopped", || {
        let pods = c.server.json(&["get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=static-site-operator"]);
        let old = pods["items"][0]["metadata"]["name"].as_str().unwrap_or("").to_string();
        assert!(!old.is_empty(), "{pods}");
        c.server.ok(&["delete", "pod", "-n", NS, &old, "--wait=true"]);
        c.server.kubectl_stdin(&["apply", "-f", "-"], &site("second", "Made after a restart"));
        wait_ready(&c, "second");
        let pods = c.server.json(&["get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=static-site-operator"]);
        let now = pods["items"][0]["metadata"]["name"].as_str().unwrap_or("");
        assert_ne!(now, old, "a new operator pod: {pods}");
        c.server.wait_for("the second site", Duration::from_secs(60), || {
            matches!(from_service(&c, "second", "/"), Ok((200, body)) if body.contains("Made after a restart"))
        });
    });

    checks.check("deletion waits for the operator's finalizer", || {
        c.server.ok(&["delete", "staticsite", "second", "-n", NS, "--wait=false"]);
        c.server.wait_for("the second site to be gone", WAIT, || {
            !c.server.kubectl(&["get", "staticsite", "second", "-n", NS]).status.success()
        });
        for (kind, name) in
            [("configmap", "second-content"), ("deployment", "second"), ("service", "second")]
        {
            let out = c.server.kubectl(&["get", kind, name, "-n", NS]);
            assert!(!out.status.success(), "{kind}/{name} outlived its site");
        }
        // The other site is untouched.
        c.server.ok(&["get", "deployment", "example", "-n", NS]);
    });

    checks.finish("static site operator (Wasm)");
}

#[test]
fn the_same_operator_built_natively_should_run_as_an_oci_pod() {
    let _serial = support::serial();
    // The server's node has containerd (the operator's OCI pod); sites are Wasm pods.
    let Some(c) = Cluster::start_with(true, false) else { return };
    import_everywhere(&c);
    let guests = guest("static-site-operator.static");
    let dir = guests.parent().expect("the guests directory").display().to_string();
    let out = install(
        &c,
        &format!(
            "runtime=oci,oci.hostPath={dir},oci.binary=static-site-operator.static,example.enabled=true"
        ),
    );
    assert!(out.status.success(), "helm install: {}{}", text(&out.stdout), text(&out.stderr));
    let mut checks = Checks::default();
    checks.check("the OCI operator reconciles the StaticSite", || {
        let operator = c.server.json(&["get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=static-site-operator"]);
        assert_eq!(operator["items"][0]["spec"]["runtimeClassName"], "runc", "{operator}");
        wait_ready(&c, "example");
        c.server.wait_for("the site at its ClusterIP", Duration::from_secs(60), || {
            matches!(from_service(&c, "example", "/"), Ok((200, body)) if body.contains("Hello from a StaticSite"))
        });
    });
    checks.check("and honours deletion through its finalizer", || {
        c.server.ok(&[
            "delete",
            "staticsite",
            "example",
            "-n",
            NS,
            "--wait=true",
            "--timeout=180s",
        ]);
        let out = c.server.kubectl(&["get", "deployment", "example", "-n", NS]);
        assert!(!out.status.success(), "the Deployment outlived its site");
    });
    checks.finish("static site operator (OCI)");
}
