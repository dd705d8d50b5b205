//! End-to-end with the real kubectl: cascading deletion by propagation policy, pod eviction
//! against a PodDisruptionBudget, service account tokens as credentials, and Service address
//! allocation.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Skiff;

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    (guard, dir, skiff)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn apply(s: &Skiff, yaml: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply failed: {}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn cascading_deletion_should_follow_the_propagation_policy() {
    let (_g, _d, s) = started();
    for mode in ["orphan", "foreground", "background"] {
        apply(&s, &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owner-{mode}}}\n"));
        let uid = s.ok(&["get", "cm", &format!("owner-{mode}"), "-o", "jsonpath={.metadata.uid}"]);
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep-{mode}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner-{mode}, uid: {uid}, blockOwnerDeletion: true}}\n"
            ),
        );
        let out = s.ok(&[
            "delete",
            "cm",
            &format!("owner-{mode}"),
            &format!("--cascade={mode}"),
            "--wait=true",
            "--timeout=30s",
        ]);
        assert!(out.contains("deleted"), "{out}");
        let gone = |name: &str| {
            let out = s.kubectl(&["get", "cm", name]);
            !out.status.success() && text(&out.stderr).contains("NotFound")
        };
        assert!(gone(&format!("owner-{mode}")), "owner-{mode} still there after --wait");
        let dep = format!("dep-{mode}");
        if mode == "orphan" {
            // The dependent stays, without the reference to its deleted owner.
            s.wait_for("ownerReference removed", Duration::from_secs(10), || {
                let d = s.json(&["get", "cm", &dep]);
                d.pointer("/metadata/ownerReferences").is_none()
            });
        } else {
            s.wait_for(&format!("{dep} deleted"), Duration::from_secs(10), || gone(&dep));
        }
    }
}

#[test]
fn eviction_should_honour_disruption_budgets() {
    let (_g, dir, s) = started();
    s.import(&support::guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    apply(
        &s,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: guard}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: guarded}}\n",
    );
    let running = |name: &str| {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: guarded}}}}\nspec:\n  runtimeClassName: wasmtime\n  containers: [{{name: c, image: test-guest:e2e, imagePullPolicy: IfNotPresent, command: [guest, sleep, \"3600\"]}}]\n"
            ),
        );
    };
    let status = |want: [i64; 3]| {
        s.wait_for(&format!("budget status {want:?}"), Duration::from_secs(60), || {
            let p = s.json(&["get", "pdb", "guard"]);
            let st = &p["status"];
            [&st["currentHealthy"], &st["desiredHealthy"], &st["disruptionsAllowed"]]
                .map(|v| v.as_i64().unwrap_or(-1))
                == want
        });
    };
    let eviction = dir.path().join("eviction.json");
    std::fs::write(
        &eviction,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"victim","namespace":"default"}}"#,
    )
    .expect("write eviction");
    let evict = || {
        s.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/victim/eviction",
            "-f",
            eviction.to_str().unwrap_or_default(),
        ])
    };
    // One healthy pod, one needed: the budget allows no disruption.
    running("victim");
    status([1, 1, 0]);
    let out = evict();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        text(&out.stderr)
    );
    assert!(s.kubectl(&["get", "pod", "victim"]).status.success(), "the pod must survive");
    // A second healthy pod: one disruption allowed; the eviction uses it up.
    running("spare");
    status([2, 1, 1]);
    let mut watch = std::process::Command::new(support::tool("kubectl"))
        .env("HOME", s.tool_home())
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["get", "pdb", "guard", "--watch", "-o"])
        .arg(r#"jsonpath={.status.disruptionsAllowed} {.status.disruptedPods}{"\n"}"#)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get --watch");
    let lines = {
        let stdout = watch.stdout.take().expect("watch stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    };
    assert!(lines.recv_timeout(Duration::from_secs(30)).is_ok(), "the watch started");
    let out = evict();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The eviction wrote the budget: decremented, with the pod recorded as disrupted.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut recorded = false;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("0 ") && line.contains("victim") => {
                recorded = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(recorded, "no budget update with disruptionsAllowed 0 and victim in disruptedPods");
    s.wait_for("victim deleted or terminating", Duration::from_secs(30), || {
        let out = s.kubectl(&["get", "pod", "victim", "-o", "json"]);
        !out.status.success()
            || serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .is_some_and(|p| p.pointer("/metadata/deletionTimestamp").is_some())
    });
    // Once the pod is going the controller forgets it; the budget stays spent.
    status([1, 1, 0]);
}

#[test]
fn service_account_tokens_should_authenticate_until_the_account_is_deleted() {
    let (_g, _d, s) = started();
    s.ok(&["create", "serviceaccount", "robot"]);
    s.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    let token = s.ok(&["create", "token", "robot", "--duration=15m"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_robot = |args: &[&str]| {
        let mut a = vec!["--token", token];
        a.extend_from_slice(args);
        s.kubectl(&a)
    };
    let out = as_robot(&["get", "serviceaccount", "robot", "-o", "jsonpath={.metadata.name}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "robot");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let out = s.kubectl(&["--token", &forged, "get", "namespaces"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Unauthorized"), "{}", text(&out.stderr));
    s.ok(&["delete", "serviceaccount", "robot"]);
    let out = as_robot(&["get", "namespaces"]);
    assert!(!out.status.success(), "a token of a deleted account must not authenticate");
    assert!(text(&out.stderr).contains("Unauthorized"), "{}", text(&out.stderr));
}

/// Service account issuer discovery: the OpenID configuration names the issuer tokens carry,
/// and the JWKS it points to verifies a token the cluster issued.
#[test]
fn issuer_discovery_should_publish_the_key_that_verifies_tokens() {
    use base64::Engine as _;
    let (_g, _d, s) = started();
    let doc: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
            .expect("openid configuration");
    assert_eq!(doc["issuer"], "https://kubernetes.default.svc.cluster.local");
    let host = s.url.trim_start_matches("https://");
    assert_eq!(doc["jwks_uri"], format!("https://{host}/openid/v1/jwks"));
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "ES256");
    let jwks: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/openid/v1/jwks"])).expect("jwks");
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"]),
        (&json!("EC"), &json!("P-256"), &json!("ES256"))
    );

    s.ok(&["create", "serviceaccount", "verifier"]);
    let token = s.ok(&["create", "token", "verifier"]);
    let token = token.trim();
    let b64 =
        |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).expect("base64url");
    let (input, sig) = token.rsplit_once('.').expect("a JWT");
    let header: Value =
        serde_json::from_slice(&b64(input.split('.').next().unwrap_or(""))).expect("header");
    assert_eq!(header["kid"], key["kid"], "the token names the published key");
    let point =
        [&[4u8][..], &b64(key["x"].as_str().unwrap_or("")), &b64(key["y"].as_str().unwrap_or(""))]
            .concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &b64(sig))
        .expect("the published key verifies the token");
}

#[test]
fn services_should_get_unique_addresses_released_on_delete() {
    let (_g, _d, s) = started();
    assert_eq!(
        s.ok(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]),
        "10.96.0.1"
    );
    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: 10.96.100.100\n  type: NodePort\n  ports: [{{port: 80, nodePort: 30100}}]\n"
        )
    };
    apply(&s, &svc("first"));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &svc("second"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("provided IP is already allocated"),
        "{}",
        text(&out.stderr)
    );
    // Random picks never collide with the claimed one, and each gets its own node port.
    for i in 0..5 {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: auto-{i}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n"
            ),
        );
    }
    let list = s.json(&["get", "services"]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut ips: Vec<String> =
        items.iter().filter_map(|i| i["spec"]["clusterIP"].as_str().map(str::to_string)).collect();
    let count = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), count, "cluster IPs must be unique: {ips:?}");
    // Deleting the first frees its address and port for the second.
    s.ok(&["delete", "service", "first"]);
    apply(&s, &svc("second"));
    assert_eq!(
        s.ok(&["get", "service", "second", "-o", "jsonpath={.spec.ports[0].nodePort}"]),
        "30100"
    );
}
