//! End-to-end with the real kubectl: the audit log (`--audit-policy-file`, `--audit-log-path`)
//! holds one `audit.k8s.io/v1` event per request and stage, at the level the policy gives it,
//! nothing for excluded paths, and never a Secret's value.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::Skiff;

/// A distinctive Secret value: it must appear nowhere in the audit log, plain or base64.
const SECRET_VALUE: &str = "audit-e2e-distinctive-9f3c1b7a";

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs: ["/healthz*"]
  - level: None
    resources:
      - group: ""
        resources: ["events"]
      - group: "events.k8s.io"
        resources: ["events"]
  # The Secrets of one namespace with their bodies, to check what the log scrubs from them.
  - level: RequestResponse
    namespaces: ["redacted"]
    resources: [{group: "", resources: ["secrets"]}]
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
    omitStages: ["RequestReceived"]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"]}]
  - level: Request
    resources: [{group: "", resources: ["pods"]}]
  - level: Metadata
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn read_events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {e}: {l}")))
        .collect()
}

/// The events kubectl's request `verb` on `resource` `namespace/name` produced at `stage`.
fn kubectl_events<'a>(
    events: &'a [Value],
    stage: &str,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["stage"] == stage
                && e["verb"] == verb
                && e["userAgent"].as_str().is_some_and(|ua| ua.starts_with("kubectl"))
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["namespace"].as_str().unwrap_or("") == namespace
                && e["objectRef"]["name"].as_str().unwrap_or("") == name
        })
        .collect()
}

#[test]
fn audit_log_should_record_each_request_at_its_policy_level() {
    let _guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let log = dir.path().join("audit/audit.log");
    // The server's own log, at debug, is checked for credentials and Secret values too.
    let server_log = dir.path().join("server.log");
    let s = Skiff::start_logging(
        &dir.path().join("data"),
        &[
            "--audit-policy-file",
            policy.to_str().expect("utf-8 path"),
            "--audit-log-path",
            log.to_str().expect("utf-8 path"),
            "--audit-log-maxbackup",
            "3",
        ],
        &server_log,
        "debug,h2=info,hyper=info,hyper_util=info,rustls=info,tower=info,openraft=info",
    );

    // Excluded first: the log is written in order, so once later requests are in it, this
    // one would be too had it been logged.
    assert_eq!(s.ok(&["get", "--raw", "/healthz"]).trim(), "ok");

    s.ok(&["create", "configmap", "cm1", "--from-literal=colour=teal"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        &format!("--from-literal=password={SECRET_VALUE}"),
    ]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec:\n  runtimeClassName: wasmtime\n  containers: [{name: c, image: audit-e2e:none, imagePullPolicy: Never}]\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], pod);
    assert!(out.status.success(), "create pod: {}", text(&out.stderr));
    s.ok(&["create", "namespace", "redacted"]);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s2, namespace: redacted}}\nstringData: {{token: {SECRET_VALUE}}}\n"
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &secret);
    assert!(out.status.success(), "apply secret: {}", text(&out.stderr));

    s.ok(&["get", "configmap", "cm1", "-o", "json"]);
    let got = s.ok(&["get", "secret", "s1", "-o", "json"]);
    assert!(got.contains(&base64(SECRET_VALUE)), "the secret was stored: {got}");
    s.ok(&["get", "pod", "p1", "-o", "json"]);
    s.ok(&["-n", "redacted", "get", "secret", "s2", "-o", "yaml"]);
    // Credentials: a service account's token, and a forged one.
    s.ok(&["create", "serviceaccount", "auditee"]);
    let sa_token = s.ok(&["create", "token", "auditee"]).trim().to_string();
    let as_sa = s.kubectl(&["--token", &sa_token, "get", "configmaps"]);
    assert!(!as_sa.status.success(), "auditee has no role binding: {}", text(&as_sa.stdout));
    assert!(text(&as_sa.stderr).contains("forbidden"), "{}", text(&as_sa.stderr));
    let forged = format!("{}AAAA", &sa_token[..sa_token.len() - 4]);
    let as_forged = s.kubectl(&["--token", &forged, "get", "configmaps"]);
    assert!(text(&as_forged.stderr).contains("Unauthorized"), "{}", text(&as_forged.stderr));
    let missing = s.kubectl(&["get", "configmap", "missing"]);
    assert!(!missing.status.success(), "configmap missing exists");

    // Events are written by a thread of their own: wait for the last request's.
    let mut events = Vec::new();
    s.wait_for("the last request's audit event", Duration::from_secs(15), || {
        events = read_events(&log);
        !kubectl_events(&events, "ResponseComplete", "get", "configmaps", "default", "missing")
            .is_empty()
    });

    // Who kubectl is: the same user on every line it caused.
    let one = |stage: &str, verb: &str, resource: &str, ns: &str, name: &str| -> Value {
        let found = kubectl_events(&events, stage, verb, resource, ns, name);
        assert_eq!(
            found.len(),
            1,
            "{stage} events of {verb} {resource} {ns}/{name}: {found:#?}\nall events:\n{}",
            events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        );
        found[0].clone()
    };
    let cm_create = one("ResponseComplete", "create", "configmaps", "default", "cm1");
    let admin = cm_create["user"]["username"].as_str().unwrap_or_default().to_string();
    assert!(!admin.is_empty(), "no user in {cm_create}");
    let whoami = s.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(whoami.trim(), admin, "the audit log names kubectl's user");
    const AUDITEE: &str = "system:serviceaccount:default:auditee";
    for e in
        events.iter().filter(|e| e["userAgent"].as_str().is_some_and(|u| u.starts_with("kubectl")))
    {
        // The service account's and the forged token's requests, checked below.
        if e["user"]["username"] == AUDITEE || e["user"]["username"] == "" {
            continue;
        }
        assert_eq!(e["user"]["username"], admin.as_str(), "{e}");
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert!(e["auditID"].as_str().is_some_and(|id| id.len() == 36), "{e}");
        assert!(e["requestReceivedTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }

    // The service account's refused list: a 403 with the authorizer's decision.
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["username"] == AUDITEE && e["stage"] == "ResponseComplete")
        .collect();
    assert!(
        refused.iter().any(|e| e["responseStatus"]["code"] == 403
            && e["annotations"]["authorization.k8s.io/decision"] == "forbid"),
        "no forbidden list by {AUDITEE}: {refused:#?}"
    );

    // The forged token's request: a 401 with no user.
    assert!(
        events.iter().any(|e| e["user"]["username"] == ""
            && e["responseStatus"]["code"] == 401
            && e["objectRef"]["resource"] == "configmaps"),
        "no 401 event for the forged token"
    );

    // ConfigMaps: RequestResponse, both bodies, and a RequestReceived event before.
    assert_eq!(cm_create["level"], "RequestResponse");
    assert_eq!(cm_create["responseStatus"]["code"], 201);
    assert_eq!(cm_create["objectRef"]["apiVersion"], "v1");
    let uri = cm_create["requestURI"].as_str().unwrap_or_default();
    assert!(uri.starts_with("/api/v1/namespaces/default/configmaps?"), "requestURI {uri}");
    assert!(cm_create["objectRef"].get("apiGroup").is_none(), "core group: {cm_create}");
    assert_eq!(cm_create["requestObject"]["data"]["colour"], "teal");
    assert_eq!(cm_create["responseObject"]["metadata"]["name"], "cm1", "{cm_create}");
    assert!(cm_create["responseObject"]["metadata"]["uid"].is_string());
    let received = one("RequestReceived", "create", "configmaps", "default", "");
    assert_eq!(received["auditID"], cm_create["auditID"], "RequestReceived comes first, same ID");
    let cm_get = one("ResponseComplete", "get", "configmaps", "default", "cm1");
    assert_eq!(cm_get["level"], "RequestResponse");
    assert_eq!(cm_get["responseStatus"]["code"], 200);
    assert_eq!(cm_get["responseObject"]["data"]["colour"], "teal", "{cm_get}");
    assert!(cm_get.get("requestObject").is_none(), "a GET has no body: {cm_get}");
    let cm_missing = one("ResponseComplete", "get", "configmaps", "default", "missing");
    assert_eq!(cm_missing["responseStatus"]["code"], 404);
    assert_eq!(cm_missing["responseStatus"]["reason"], "NotFound");
    assert_eq!(cm_missing["responseStatus"]["status"], "Failure");

    // Secrets: Metadata only, and no RequestReceived (omitted by the rule).
    for (verb, code) in [("create", 201), ("get", 200)] {
        let e = one("ResponseComplete", verb, "secrets", "default", "s1");
        assert_eq!(e["level"], "Metadata", "{e}");
        assert_eq!(e["responseStatus"]["code"], code, "{e}");
        assert!(e.get("requestObject").is_none(), "{e}");
        assert!(e.get("responseObject").is_none(), "{e}");
    }
    assert!(
        events.iter().all(|e| !(e["stage"] == "RequestReceived"
            && e["objectRef"]["resource"] == "secrets"
            && e["objectRef"]["namespace"] == "default")),
        "RequestReceived of secrets is omitted"
    );

    // Pods: Request, the request body only.
    let pod_create = one("ResponseComplete", "create", "pods", "default", "p1");
    assert_eq!(pod_create["level"], "Request");
    assert_eq!(pod_create["responseStatus"]["code"], 201);
    assert_eq!(pod_create["requestObject"]["spec"]["containers"][0]["image"], "audit-e2e:none");
    assert!(pod_create.get("responseObject").is_none(), "{pod_create}");
    let pod_get = one("ResponseComplete", "get", "pods", "default", "p1");
    assert_eq!(pod_get["level"], "Request");
    assert_eq!(pod_get["responseStatus"]["code"], 200);

    // Secrets logged with their bodies: values scrubbed, keys kept.
    let s2_create = one("ResponseComplete", "create", "secrets", "redacted", "s2");
    assert_eq!(s2_create["level"], "RequestResponse");
    assert_eq!(s2_create["requestObject"]["stringData"]["token"], "<redacted>");
    assert_eq!(s2_create["responseObject"]["data"]["token"], "<redacted>");
    // kubectl apply looked for s2 (404) before creating it; then it was read (200).
    let s2_gets = kubectl_events(&events, "ResponseComplete", "get", "secrets", "redacted", "s2");
    let codes: Vec<&Value> = s2_gets.iter().map(|e| &e["responseStatus"]["code"]).collect();
    assert_eq!(codes, [404, 200], "{s2_gets:#?}");
    assert_eq!(s2_gets[1]["responseObject"]["data"]["token"], "<redacted>");
    assert_eq!(
        s2_gets[1]["responseObject"]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "<redacted>"
    );

    // Nothing for /healthz, nothing for events.
    assert!(
        events.iter().all(|e| !e["requestURI"].as_str().unwrap_or("").starts_with("/healthz")),
        "a /healthz request was logged"
    );
    assert!(events.iter().all(|e| e["objectRef"]["resource"] != "events"), "events were logged");
    // Other requests fall to the last rule: kubectl's discovery, at Metadata.
    assert!(
        events.iter().any(|e| e["level"] == "Metadata" && e.get("objectRef").is_none()),
        "no non-resource request at Metadata"
    );

    // No Secret value and no credential anywhere in the audit log directory or the server's
    // log: plain or encoded values, whole tokens or their signatures.
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig");
    let admin_token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_string())
        .expect("the admin kubeconfig holds a token");
    let signature = |t: &str| t.rsplit('.').next().unwrap_or("").to_string();
    let needles = [
        ("the secret value", SECRET_VALUE.to_string()),
        ("the base64 secret value", base64(SECRET_VALUE)),
        ("the admin token", admin_token),
        ("a service account token", sa_token.clone()),
        ("a service account token's signature", signature(&sa_token)),
        ("a forged token's signature", signature(&forged)),
    ];
    let mut files: Vec<_> = std::fs::read_dir(log.parent().expect("log dir"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.push(server_log.clone());
    for path in files {
        let content = std::fs::read_to_string(&path).expect("log file");
        assert!(!content.is_empty(), "{} is empty", path.display());
        for (what, needle) in &needles {
            assert!(!content.contains(needle.as_str()), "{} holds {what}", path.display());
        }
    }
    // The server log did record those requests (so the check above read a real log).
    let server_text = std::fs::read_to_string(&server_log).expect("server log");
    assert!(server_text.contains("DEBUG"), "the server log is not at debug level");

    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("apiserver_audit_event_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no apiserver_audit_event_total in /metrics"));
    assert!(total >= events.len() as f64, "{total} events counted, {} in the log", events.len());
}
