//! End-to-end: node identity, as kubeadm + kube-controller-manager + the kubelet give it. A
//! `skiff agent` joins with a bootstrap token made by `skiff token create`; its
//! CertificateSigningRequest is auto-approved and signed; it then works as
//! `system:node:<name>` with its own certificate (the node authorizer confines it), renews that
//! certificate before it expires and keeps working; a deleted token stops new joins. The
//! certificates API serves users too: `kubectl certificate approve` signs a user's CSR, and the
//! certificate logs in.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::{Agent, Skiff, guest, phase, skiff_bin, tools_dir};

const IMAGE: &str = "test-guest:e2e";
/// Certificates live a minute, so the agent renews after about 48 s.
const SERVER_FLAGS: &[&str] = &["--cluster-signing-duration", "60s"];
const AGENT: &str = "skiff-agent";

fn skiff(args: &[&str]) -> Output {
    Command::new(skiff_bin()).args(args).output().expect("running skiff")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `skiff token create` against the server; returns the token.
fn create_token(s: &Skiff) -> String {
    let dir = s.dir.to_string_lossy().into_owned();
    let out = skiff(&["token", "create", "--data-dir", &dir, "--description", "e2e"]);
    assert!(out.status.success(), "skiff token create: {}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (id, secret) = token.split_once('.').expect("<id>.<secret>");
    assert!(id.len() == 6 && secret.len() == 16, "{token}");
    token
}

/// The `skiff agent` command joining `s` as `name` with `token`.
fn agent_command(s: &Skiff, dir: &Path, name: &str, token: &str) -> Command {
    let mut c = Command::new(skiff_bin());
    c.args(["agent", "--server", &s.url, "--token", token, "--node-name", name, "--data-dir"])
        .arg(dir)
        .args(["--node-ip", "127.0.0.1", "--proxy-mode", "none", "--dns-listen", "127.0.0.1:0"])
        .args(["--kubelet-listen", "127.0.0.1:0"])
        .env("SKIFF_LOG", "info,kube=warn")
        .env("SKIFF_EVICTION_HARD", support::TEST_EVICTION_HARD)
        .env("SKIFF_IMAGE_GC_HIGH_THRESHOLD", support::TEST_IMAGE_GC_HIGH_THRESHOLD);
    c
}

/// Start an agent joining with `token` and wait until its node is Ready.
fn start_agent(s: &Skiff, dir: &Path, name: &str, token: &str) -> Agent {
    let mut child = agent_command(s, dir, name, token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning skiff agent");
    let rx = support::ready_lines(&mut child);
    rx.recv_timeout(Duration::from_secs(120)).expect("skiff agent did not start in 120 s");
    let agent = Agent { child: Some(child), dir: dir.to_path_buf(), name: name.to_string() };
    s.wait_for(&format!("node {name} Ready"), Duration::from_secs(60), || {
        s.node_ready(name) == "True"
    });
    agent
}

/// kubectl with another kubeconfig (the agent's, a user's).
fn kubectl_as(s: &Skiff, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tools_dir().join("kubectl"))
        .env("HOME", s.tool_home())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl")
}

/// The CSRs whose requestor is `user`, as JSON.
fn csrs_of(s: &Skiff, user: &str) -> Vec<Value> {
    let list = s.json(&["get", "csr"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["spec"]["username"] == user)
        .cloned()
        .collect()
}

fn approved_and_issued(csr: &Value) -> bool {
    let approved = csr["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Approved" && c["status"] == "True"));
    approved && csr["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty())
}

fn pinned_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasmtime\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n    - name: main\n      image: {IMAGE}\n      args: [sleep, \"3600\"]\n"
    )
}

fn run_pod(s: &Skiff, name: &str, node: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &pinned_pod(name, node));
    assert!(out.status.success(), "apply {name}: {}", text(&out));
    s.wait_pod(name, Duration::from_secs(60), "Running", |p| phase(p) == "Running");
}

fn client_cert_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("agent kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("the agent's kubeconfig holds a client certificate")
        .to_string()
}

#[test]
fn agent_should_join_with_a_bootstrap_token_and_work_as_its_node() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start_with(&dir.path().join("server"), SERVER_FLAGS);
    let token = create_token(&s);
    let id = token.split('.').next().unwrap_or_default().to_string();
    let listed = skiff(&["token", "list", "--data-dir", &s.dir.to_string_lossy()]);
    assert!(text(&listed).contains(&token), "token list: {}", text(&listed));

    let agent_dir = dir.path().join("agent");
    let agent = start_agent(&s, &agent_dir, AGENT, &token);
    // The first certificate was issued before this, for a minute.
    let first_expired = Instant::now() + Duration::from_secs(65);
    agent.import(&guest("test-guest.wasip1.wasm"), IMAGE);

    // Its CSR: requested by the bootstrap user, approved and issued; kubectl prints it so.
    let bootstrap_user = format!("system:bootstrap:{id}");
    let first = csrs_of(&s, &bootstrap_user);
    assert_eq!(first.len(), 1, "one CSR from {bootstrap_user}: {first:?}");
    assert!(approved_and_issued(&first[0]), "{}", first[0]["status"]);
    assert_eq!(first[0]["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
    let table = s.ok(&["get", "csr"]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for col in ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"] {
        assert!(header.contains(col), "{header}");
    }
    let row = table.lines().find(|l| l.contains(&bootstrap_user)).unwrap_or_default().to_string();
    assert!(row.contains("Approved,Issued"), "{table}");

    // The node runs pods, and its kubelet API answers the api server (its client certificate,
    // authorized by a SubjectAccessReview).
    run_pod(&s, "on-agent", AGENT);
    s.wait_for("the agent pod's log", Duration::from_secs(20), || {
        String::from_utf8_lossy(&s.kubectl(&["logs", "on-agent"]).stdout).contains("sleeping 3600")
    });
    let health = s.ok(&["get", "--raw", &format!("/api/v1/nodes/{AGENT}/proxy/healthz")]);
    assert!(health.contains("ok"), "{health}");

    // The agent's own credential is a node's: no cluster-admin token anywhere in its data dir,
    // and the node authorizer keeps it to what its pods need.
    let kubeconfig = agent_dir.join("kubelet.kubeconfig");
    let admin = std::fs::read_to_string(s.dir.join("pki/admin.token")).expect("admin token");
    let kc = std::fs::read_to_string(&kubeconfig).expect("agent kubeconfig");
    assert!(!kc.contains(admin.trim()) && !kc.contains("token:"), "{kc}");
    let whoami = kubectl_as(&s, &kubeconfig, &["auth", "whoami", "-o", "json"]);
    assert!(whoami.status.success(), "whoami as the node: {}", text(&whoami));
    let me: Value = serde_json::from_slice(&whoami.stdout).unwrap_or_default();
    assert_eq!(me["status"]["userInfo"]["username"], format!("system:node:{AGENT}"), "{me}");
    s.ok(&["create", "secret", "generic", "not-for-nodes", "--from-literal=k=v"]);
    let secret = kubectl_as(&s, &kubeconfig, &["get", "secret", "not-for-nodes"]);
    assert!(!secret.status.success(), "a node read a Secret none of its pods uses");
    assert!(
        text(&secret).contains("Forbidden") || text(&secret).contains("forbidden"),
        "{}",
        text(&secret)
    );
    let patch = kubectl_as(
        &s,
        &kubeconfig,
        &[
            "patch",
            "node",
            "skiff-e2e",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Hijacked"}]}}"#,
        ],
    );
    assert!(!patch.status.success(), "a node patched another node's status: {}", text(&patch));
    assert!(text(&patch).to_lowercase().contains("forbidden"), "{}", text(&patch));
    // Its own labels: any but the restricted ones (NodeRestriction), on patch as on update.
    let label = |l: &str| kubectl_as(&s, &kubeconfig, &["label", "node", AGENT, l]);
    let own = label("example.com/team=a");
    assert!(own.status.success(), "a node labels itself: {}", text(&own));
    let restricted = label("node-restriction.kubernetes.io/trusted=true");
    assert!(!restricted.status.success(), "a node gave itself a restricted label");
    assert!(
        text(&restricted)
            .contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        "{}",
        text(&restricted)
    );
    s.ok(&["label", "node", AGENT, "node-restriction.kubernetes.io/trusted=true"]);

    // Rotation: before the minute is up the node asks for a new certificate as itself; the
    // request is approved, the kubeconfig holds the new certificate, and the node goes on.
    let before = client_cert_of(&kubeconfig);
    let node_user = format!("system:node:{AGENT}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !csrs_of(&s, &node_user).iter().any(approved_and_issued) {
        assert!(Instant::now() < deadline, "no renewal CSR from {node_user} within 120 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    s.wait_for("the kubeconfig to hold the renewed certificate", Duration::from_secs(30), || {
        client_cert_of(&kubeconfig) != before
    });
    // Past the first certificate's expiry, the node still renews its Lease and runs pods.
    while Instant::now() < first_expired {
        std::thread::sleep(Duration::from_millis(500));
    }
    let renewed_at = |s: &Skiff| {
        s.json(&["get", "lease", AGENT, "-n", "kube-node-lease"])["spec"]["renewTime"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let lease = renewed_at(&s);
    s.wait_for("the agent to renew its Lease after rotation", Duration::from_secs(30), || {
        renewed_at(&s) != lease
    });
    assert_eq!(s.node_ready(AGENT), "True");
    assert_eq!(phase(&s.json(&["get", "pod", "on-agent"])), "Running");
    run_pod(&s, "after-rotation", AGENT);

    // A deleted token stops new joins, with a clear error.
    let out = skiff(&["token", "delete", &id, "--data-dir", &s.dir.to_string_lossy()]);
    assert!(out.status.success(), "skiff token delete: {}", text(&out));
    let mut late = agent_command(&s, &dir.path().join("late-agent"), "late-agent", &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the late agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = late.try_wait().expect("waiting for the late agent") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = late.kill();
            panic!("an agent with a deleted bootstrap token did not give up within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = late.wait_with_output().expect("late agent output");
    assert!(!status.success(), "an agent joined with a deleted token");
    let err = text(&out);
    assert!(err.contains("bootstrap token"), "unclear error: {err}");
    assert!(!s.kubectl(&["get", "node", "late-agent"]).status.success());
    drop(agent);
}

/// A key and a CSR (PEM) for `cn` in group `org`.
fn user_request(cn: &str, org: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    dn.push(rcgen::DnType::OrganizationName, org);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    (key.serialize_pem(), csr)
}

fn csr_manifest(name: &str, request_pem: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(request_pem);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {b64}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n"
    )
}

#[test]
fn certificates_api_should_sign_a_user_csr_once_approved() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("server"));
    let (key, request) = user_request("jane", "devs");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &csr_manifest("jane", &request));
    assert!(out.status.success(), "create csr: {}", text(&out));

    // Pending, requested by the admin whatever the body says; nobody signs it yet.
    let csr = s.json(&["get", "csr", "jane"]);
    assert_eq!(csr["spec"]["username"], "skiff-admin", "{}", csr["spec"]);
    let row = s.ok(&["get", "csr", "jane", "--no-headers"]);
    assert!(row.contains("Pending") && row.contains("24h"), "{row}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.json(&["get", "csr", "jane"])["status"]["certificate"].is_null());

    s.ok(&["certificate", "approve", "jane"]);
    s.wait_for("jane's certificate", Duration::from_secs(20), || {
        s.json(&["get", "csr", "jane"])["status"]["certificate"].is_string()
    });
    let row = s.ok(&["get", "csr", "jane", "--no-headers"]);
    assert!(row.contains("Approved,Issued"), "{row}");
    let cert_b64 = s.json(&["get", "csr", "jane"])["status"]["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // A denied request is never signed.
    let (_, other) = user_request("joe", "devs");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &csr_manifest("joe", &other));
    assert!(out.status.success(), "create csr: {}", text(&out));
    s.ok(&["certificate", "deny", "joe"]);
    let row = s.ok(&["get", "csr", "joe", "--no-headers"]);
    assert!(row.contains("Denied"), "{row}");
    // An approval cannot be withdrawn once given.
    let out = s.kubectl(&["certificate", "approve", "joe"]);
    assert!(
        !out.status.success() || s.ok(&["get", "csr", "joe", "--no-headers"]).contains("Denied")
    );

    // jane logs in with the signed certificate.
    let ca = std::fs::read(s.dir.join("pki/ca.crt")).expect("ca");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let kubeconfig = dir.path().join("jane.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: jane\n  user:\n    client-certificate-data: {cert_b64}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: jane\ncurrent-context: skiff\n",
            s.url,
            b64(&ca),
            b64(key.as_bytes()),
        ),
    )
    .expect("writing jane's kubeconfig");
    let out = kubectl_as(&s, &kubeconfig, &["auth", "whoami", "-o", "json"]);
    assert!(out.status.success(), "whoami as jane: {}", text(&out));
    let me: Value = serde_json::from_slice(&out.stdout).expect("whoami json");
    assert_eq!(me["status"]["userInfo"]["username"], "jane", "{me}");
    assert!(
        me["status"]["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "devs")),
        "{me}"
    );
}
