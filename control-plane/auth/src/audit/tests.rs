//! Tests of the audit policy, events, redaction and log rotation.

use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::log::backup_name;
use super::*;
use crate::attributes::Attributes;
use crate::user::UserInfo;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # Nothing for health checks.
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  # The node's watches of its own pods are noise.
  - level: None
    users: ["system:node:n1"]
    verbs: ["watch"]
    resources: [{group: "", resources: ["pods"]}]
  - level: RequestResponse
    userGroups: ["auditors"]
  - level: Request
    resources:
      - group: ""
        resources: ["pods/log", "*/status"]
  - level: RequestResponse
    resources:
      - group: "apps"
        resources: ["deployments/*"]
  - level: Metadata
    resources: [{group: "", resources: ["secrets", "configmaps"]}]
    omitStages: ["ResponseStarted"]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["cluster-info"]}]
  - level: Request
    namespaces: [""]
  - level: RequestResponse
    namespaces: ["audited"]
    omitManagedFields: false
  - level: Metadata
    nonResourceURLs: ["/api*"]
  - level: Request
    verbs: ["create", "update", "patch"]
omitManagedFields: true
"#;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, groups)
}

#[test]
fn policy_should_pick_the_first_matching_rule() {
    let policy = Policy::parse(POLICY).expect("policy parses");
    let alice = user("alice", &[]);
    let res = |verb: &str, group: &str, resource: &str, ns: &str, name: &str| {
        Attributes::resource(verb, group, resource, ns, name)
    };
    // (case, user, attributes, level)
    let cases: Vec<(&str, UserInfo, Attributes, Level)> = vec![
        ("healthz prefix", alice.clone(), Attributes::non_resource("get", "/healthz"), Level::None),
        (
            "healthz subpath",
            alice.clone(),
            Attributes::non_resource("get", "/healthz/etcd"),
            Level::None,
        ),
        ("exact url", alice.clone(), Attributes::non_resource("get", "/version"), Level::None),
        (
            "exact url is not a prefix",
            alice.clone(),
            Attributes::non_resource("get", "/versions"),
            Level::None,
        ),
        (
            "api prefix",
            alice.clone(),
            Attributes::non_resource("get", "/apis/apps"),
            Level::Metadata,
        ),
        (
            "user and verb",
            user("system:node:n1", &["system:nodes"]),
            res("watch", "", "pods", "ns", ""),
            Level::None,
        ),
        (
            "same user, other verb",
            user("system:node:n1", &["system:nodes"]),
            res("get", "", "pods", "ns", "p"),
            Level::None,
        ),
        (
            "same user, other verb, writes",
            user("system:node:n1", &["system:nodes"]),
            res("create", "", "pods", "ns", ""),
            Level::Request,
        ),
        (
            "group wins over later rules",
            user("bob", &["auditors"]),
            res("get", "", "secrets", "ns", "s"),
            Level::RequestResponse,
        ),
        (
            "subresource named",
            alice.clone(),
            res("get", "", "pods", "ns", "p").with_subresource("log"),
            Level::Request,
        ),
        (
            "resource alone is not its subresource",
            alice.clone(),
            res("get", "", "pods", "ns", "p"),
            Level::None,
        ),
        (
            "*/status",
            alice.clone(),
            res("patch", "", "nodes", "", "n1").with_subresource("status"),
            Level::Request,
        ),
        (
            "*/status is the core group only",
            alice.clone(),
            res("get", "apps", "deployments", "ns", "d").with_subresource("status"),
            Level::RequestResponse,
        ),
        (
            "resource/* matches the resource",
            alice.clone(),
            res("get", "apps", "deployments", "ns", "d"),
            Level::RequestResponse,
        ),
        (
            "resource/* matches its subresources",
            alice.clone(),
            res("update", "apps", "deployments", "ns", "d").with_subresource("scale"),
            Level::RequestResponse,
        ),
        ("other group", alice.clone(), res("get", "apps", "statefulsets", "ns", "s"), Level::None),
        ("secrets", alice.clone(), res("get", "", "secrets", "ns", "s"), Level::Metadata),
        (
            "resourceNames after an earlier rule on all configmaps",
            alice.clone(),
            res("get", "", "configmaps", "kube-public", "cluster-info"),
            Level::Metadata,
        ),
        ("cluster-scoped", alice.clone(), res("get", "", "nodes", "", "n1"), Level::Request),
        (
            "namespace",
            alice.clone(),
            res("list", "", "pods", "audited", ""),
            Level::RequestResponse,
        ),
        ("other namespace", alice.clone(), res("list", "", "pods", "other", ""), Level::None),
        (
            "resource rule does not match a non-resource request",
            alice.clone(),
            Attributes::non_resource("create", "/logs"),
            Level::Request,
        ),
        (
            "non-resource rule does not match a resource request",
            alice.clone(),
            res("get", "", "services", "other", "svc"),
            Level::None,
        ),
        ("no match", alice.clone(), res("get", "", "services", "other", "s"), Level::None),
    ];
    for (case, u, attrs, want) in cases {
        assert_eq!(policy.evaluate(&u, &attrs).level, want, "{case}");
    }
}

#[test]
fn policy_should_union_omit_stages_and_choose_managed_fields() {
    let policy = Policy::parse(POLICY).expect("policy parses");
    let alice = user("alice", &[]);
    let secrets = policy.evaluate(&alice, &Attributes::resource("get", "", "secrets", "ns", "s"));
    assert_eq!(secrets.omit_stages, vec![Stage::RequestReceived, Stage::ResponseStarted]);
    assert!(secrets.omits(Stage::ResponseStarted));
    assert!(!secrets.omits(Stage::ResponseComplete));
    assert!(secrets.omit_managed_fields, "the policy's default");
    let audited = policy.evaluate(&alice, &Attributes::resource("get", "", "pods", "audited", "p"));
    assert_eq!(audited.omit_stages, vec![Stage::RequestReceived]);
    assert!(!audited.omit_managed_fields, "the rule's own choice");
    let none = policy.evaluate(&alice, &Attributes::resource("get", "", "services", "x", "s"));
    assert_eq!(none.level, Level::None);
    assert_eq!(none.omit_stages, vec![Stage::RequestReceived]);
}

#[test]
fn policy_should_read_json_too() {
    let policy = Policy::parse(
        r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata","users":null}]}"#,
    )
    .expect("json policy");
    assert_eq!(policy.rules.len(), 1);
    assert_eq!(
        policy.evaluate(&user("a", &[]), &Attributes::non_resource("get", "/")).level,
        Level::Metadata
    );
}

#[test]
fn policy_should_refuse_bad_files_with_a_clear_error() {
    let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";
    let cases: &[(&str, &str)] = &[
        ("rules:\n- level: Everything\n", "rules[0].level: unknown level \"Everything\""),
        ("rules:\n- users: [a]\n", "rules[0].level: required"),
        (
            "rules:\n- level: None\n  omitStages: [Done]\n",
            "rules[0].omitStages[0]: unknown stage \"Done\"",
        ),
        (
            "omitStages: [Sometimes]\nrules:\n- level: None\n",
            "omitStages[0]: unknown stage \"Sometimes\"",
        ),
        ("rules:\n- level: None\n  nonResourceURLs: [healthz]\n", "must begin with a '/'"),
        (
            "rules:\n- level: None\n  nonResourceURLs: [\"/a*/b\"]\n",
            "may only be the last character",
        ),
        (
            "rules:\n- level: None\n  nonResourceURLs: [/a]\n  namespaces: [x]\n",
            "cannot apply to both",
        ),
        (
            "rules:\n- level: None\n  resources: [{group: apps/v1, resources: [deployments]}]\n",
            "is not an API group name",
        ),
        (
            "rules:\n- level: None\n  resources: [{group: '', resourceNames: [x]}]\n",
            "using resourceNames requires at least one resource",
        ),
        ("rules:\n- level: None\n  omitStage: [RequestReceived]\n", "unknown field `omitStage`"),
        ("rules: []\n", "no rules"),
    ];
    for (body, want) in cases {
        let err = Policy::parse(&format!("{head}{body}")).expect_err(body).to_string();
        assert!(err.contains(want), "{body}: got {err:?}, want {want:?}");
    }
    let err =
        Policy::parse("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]")
            .expect_err("old version");
    assert_eq!(err, PolicyError::ApiVersion("audit.k8s.io/v1beta1".into()));
    let err = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Pol\nrules: [{level: None}]")
        .expect_err("kind");
    assert_eq!(err, PolicyError::Kind("Pol".into()));
    assert!(matches!(Policy::parse("rules: [").expect_err("yaml"), PolicyError::Parse(_)));
}

fn sample_event() -> Event {
    let at = Utc.with_ymd_and_hms(2026, 12, 6, 22, 11, 39).single().expect("time")
        + chrono::Duration::microseconds(123_456);
    let mut e = Event::new(
        Level::Request,
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        "create",
        UserInfo::new("admin", &["system:masters"]),
        at,
    );
    e.stage = Stage::ResponseComplete;
    e.stage_timestamp = at + chrono::Duration::milliseconds(5);
    e.source_ips = vec!["127.0.0.1".into()];
    e.user_agent = Some("kubectl/v1.35.0".into());
    e.object_ref = Some(ObjectReference {
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: "cm".into(),
        api_version: "v1".into(),
        ..Default::default()
    });
    e.response_status = Some(ResponseStatus::from_response(201, None));
    e.request_object = Some(json!({"kind": "ConfigMap"}));
    e.annotations.insert("authorization.k8s.io/decision".into(), "allow".into());
    e.annotations.insert("authorization.k8s.io/reason".into(), "".into());
    e
}

#[test]
fn event_should_serialize_as_audit_k8s_io_v1() {
    let e = sample_event();
    let line = e.to_line().expect("serializes");
    assert_eq!(line.last(), Some(&b'\n'));
    let text = std::str::from_utf8(&line).expect("utf-8");
    assert_eq!(text.trim_end().lines().count(), 1, "one line");
    let v: Value = serde_json::from_slice(&line).expect("json");
    let want = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request",
        "auditID": e.audit_id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        "verb": "create",
        "user": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"],
        "userAgent": "kubectl/v1.35.0",
        "objectRef": {"resource": "configmaps", "namespace": "default", "name": "cm", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "ConfigMap"},
        "requestReceivedTimestamp": "2026-12-06T22:11:39.123456Z",
        "stageTimestamp": "2026-12-06T22:11:39.128456Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
    });
    assert_eq!(v, want);
    // kube-apiserver's field order, which people grep and diff by.
    let keys: Vec<&str> = [
        "\"kind\"",
        "\"apiVersion\"",
        "\"level\"",
        "\"auditID\"",
        "\"stage\"",
        "\"requestURI\"",
        "\"verb\"",
        "\"user\"",
        "\"sourceIPs\"",
        "\"userAgent\"",
        "\"objectRef\"",
        "\"responseStatus\"",
        "\"requestObject\"",
        "\"requestReceivedTimestamp\"",
        "\"stageTimestamp\"",
        "\"annotations\"",
    ]
    .to_vec();
    let positions: Vec<usize> =
        keys.iter().map(|k| text.find(k).unwrap_or_else(|| panic!("{k} missing"))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "field order: {text}");
    let uuid = uuid::Uuid::parse_str(&e.audit_id).expect("auditID is a uuid");
    assert_eq!(uuid.get_version_num(), 4);
    let back: Event = serde_json::from_slice(&line).expect("reads back");
    assert_eq!(back, e);
}

#[test]
fn response_status_should_keep_an_error_status_bounded_fields() {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "configmaps \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "configmaps"}, "code": 404
    });
    let s = ResponseStatus::from_response(404, Some(&body));
    assert_eq!(
        serde_json::to_value(&s).expect("json"),
        json!({"metadata": {}, "status": "Failure", "message": "configmaps \"x\" not found",
               "reason": "NotFound", "details": {"name": "x", "kind": "configmaps"}, "code": 404})
    );
    let ok =
        ResponseStatus::from_response(200, Some(&json!({"kind": "ConfigMap", "data": {"a": "b"}})));
    assert_eq!(serde_json::to_value(&ok).expect("json"), json!({"metadata": {}, "code": 200}));
}

#[test]
fn object_reference_should_take_a_created_objects_name() {
    let mut r =
        ObjectReference { resource: "pods".into(), namespace: "ns".into(), ..Default::default() };
    r.complete_from(&json!({"metadata": {"name": "p", "namespace": "other", "uid": "u1"}}));
    assert_eq!(r.name, "p");
    assert_eq!(r.namespace, "ns", "the path's namespace stays");
    assert_eq!(r.uid, "u1");
}

const SECRET_VALUE: &str = "c3VwZXItc2VjcmV0LXZhbHVl";

fn assert_no_secret(v: &Value, what: &str) {
    let text = v.to_string();
    assert!(!text.contains(SECRET_VALUE), "{what} leaks the secret: {text}");
    assert!(!text.contains("super-secret"), "{what} leaks the secret: {text}");
    assert!(!text.contains("abcdef.0123456789abcdef"), "{what} leaks a token: {text}");
}

#[test]
fn redaction_should_remove_secret_values_and_tokens_wherever_they_appear() {
    let last_applied =
        format!(r#"{{"apiVersion":"v1","kind":"Secret","data":{{"password":"{SECRET_VALUE}"}}}}"#);
    let secret = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "s", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied, "team": "a"}},
        "type": "Opaque",
        "data": {"password": SECRET_VALUE},
        "stringData": {"plain": "super-secret"},
    });
    // (case, resource, subresource, body)
    let cases: Vec<(&str, &str, &str, Value)> = vec![
        ("secret", "secrets", "", secret.clone()),
        ("secret seen elsewhere", "", "", json!({"kind": "List", "items": [secret.clone()]})),
        (
            "secret list (items have no kind)",
            "secrets",
            "",
            json!({"kind": "SecretList", "items": [{"metadata": {"name": "s"}, "data": {"password": SECRET_VALUE}}]}),
        ),
        ("watch event", "secrets", "", json!({"type": "ADDED", "object": secret.clone()})),
        (
            "table",
            "secrets",
            "",
            json!({"kind": "Table", "rows": [{"cells": ["s", "Opaque", 1], "object": {
                "kind": "PartialObjectMetadata", "metadata": {"name": "s", "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": last_applied}}}}]}),
        ),
        ("merge patch", "secrets", "", json!({"data": {"password": SECRET_VALUE}})),
        (
            "json patch",
            "secrets",
            "",
            json!([{"op": "replace", "path": "/data/password", "value": SECRET_VALUE},
                   {"op": "add", "path": "/stringData", "value": {"plain": "super-secret"}}]),
        ),
        (
            "bootstrap token",
            "secrets",
            "",
            json!({"kind": "Secret", "type": "bootstrap.kubernetes.io/token", "metadata": {"name": "bootstrap-token-abcdef"},
                   "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef", "token": "abcdef.0123456789abcdef"}}),
        ),
        (
            "token request",
            "serviceaccounts",
            "token",
            json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                   "spec": {"audiences": ["x"]}, "status": {"token": "abcdef.0123456789abcdef"}}),
        ),
        (
            "token request without kind",
            "serviceaccounts",
            "token",
            json!({"status": {"token": "abcdef.0123456789abcdef"}}),
        ),
        (
            "token review",
            "tokenreviews",
            "",
            json!({"kind": "TokenReview", "spec": {"token": "abcdef.0123456789abcdef"}}),
        ),
    ];
    for (case, resource, sub, mut body) in cases {
        redact_secret_material(&mut body, resource, sub);
        assert_no_secret(&body, case);
        assert!(body.to_string().contains(REDACTED), "{case}: nothing redacted: {body}");
    }

    let mut s = secret.clone();
    redact_secret_material(&mut s, "secrets", "");
    assert_eq!(s["data"], json!({"password": REDACTED}), "keys stay, values go");
    assert_eq!(s["stringData"], json!({"plain": REDACTED}));
    assert_eq!(s["metadata"]["annotations"]["team"], "a", "other annotations stay");
    assert_eq!(s["metadata"]["name"], "s");
}

#[test]
fn redaction_should_leave_other_objects_alone() {
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{}"}}, "data": {"k": "v"}});
    let mut body = cm.clone();
    redact_secret_material(&mut body, "configmaps", "");
    assert_eq!(body, cm);
    let patch = json!([{"op": "replace", "path": "/data/k", "value": "v2"}]);
    let mut body = patch.clone();
    redact_secret_material(&mut body, "configmaps", "");
    assert_eq!(body, patch);
}

#[test]
fn omit_managed_fields_should_strip_objects_and_list_items() {
    let mut v = json!({"metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}]},
                       "items": [{"metadata": {"name": "b", "managedFields": []}}]});
    omit_managed_fields(&mut v);
    assert_eq!(v, json!({"metadata": {"name": "a"}, "items": [{"metadata": {"name": "b"}}]}));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn lines_of(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is an event"))
        .collect()
}

#[test]
fn log_writer_should_append_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/audit.log");
    std::fs::create_dir_all(dir.path().join("logs")).expect("mkdir");
    std::fs::write(&path, "").expect("existing log");
    let writer =
        LogWriter::open(LogTarget::File(path.clone()), RotationOptions::default()).expect("open");
    let e = sample_event();
    assert!(writer.write(e.clone()));
    assert!(writer.write(e.clone()));
    writer.flush();
    let events = lines_of(&path);
    assert_eq!(events, vec![e.clone(), e.clone()]);
    assert_eq!(writer.stats(), LogStats { events: 2, errors: 0 });
    drop(writer);
    // Reopening appends.
    let writer =
        LogWriter::open(LogTarget::File(path.clone()), RotationOptions::default()).expect("reopen");
    writer.write(e);
    drop(writer);
    assert_eq!(lines_of(&path).len(), 3, "dropping the writer writes what was queued");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let fresh = dir.path().join("new/audit.log");
        drop(LogWriter::open(LogTarget::File(fresh.clone()), RotationOptions::default()));
        let mode = std::fs::metadata(&fresh).expect("created").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the audit log is its owner's alone");
    }
}

#[test]
fn log_writer_should_refuse_a_path_it_cannot_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").expect("file");
    let err =
        LogWriter::open(LogTarget::File(blocker.join("audit.log")), RotationOptions::default())
            .err()
            .expect("cannot create a file under a file");
    assert!(err.to_string().starts_with("opening the audit log"), "{err}");
}

#[test]
fn log_writer_should_rotate_and_keep_max_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    let event = |i: usize| {
        let mut e = sample_event();
        e.request_uri = format!("/api/v1/namespaces/default/configmaps/{i:03}");
        e
    };
    let line_len = event(0).to_line().expect("line").len() as u64;
    // Three events a file.
    let options =
        RotationOptions { max_size_bytes: line_len * 3 + 1, max_backups: 2, max_age: None };
    let writer = LogWriter::open(LogTarget::File(path.clone()), options).expect("open");
    // All at once: several rotations fall within one millisecond, and their backups must
    // still be named in order (cleanup keeps the newest by name).
    let mut written = Vec::new();
    for i in 0..20 {
        let e = event(i);
        written.push(e.request_uri.clone());
        writer.write(e);
    }
    writer.flush();
    let names = files_in(dir.path());
    assert_eq!(names.len(), 3, "the log and max_backups rotated files: {names:?}");
    assert!(names.contains(&"audit.log".to_string()));
    let backups: Vec<&String> = names.iter().filter(|n| *n != "audit.log").collect();
    for b in &backups {
        let stamp = b
            .strip_prefix("audit-")
            .and_then(|r| r.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("backup name {b}"));
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S%.3f")
            .unwrap_or_else(|e| panic!("backup {b} has no lumberjack timestamp: {e}"));
        assert_eq!(stamp.len(), "2026-12-06T22-11-39.123".len());
    }
    // Every file within its size; the newest events survive, in order.
    let mut kept = Vec::new();
    for name in &names {
        let p = dir.path().join(name);
        assert!(std::fs::metadata(&p).expect("stat").len() <= options.max_size_bytes, "{name}");
    }
    for b in &backups {
        kept.extend(lines_of(&dir.path().join(b)).into_iter().map(|e| e.request_uri));
    }
    kept.extend(lines_of(&path).into_iter().map(|e| e.request_uri));
    assert_eq!(kept.as_slice(), &written[written.len() - kept.len()..]);
    assert_eq!(kept.len(), 8, "2 full backups of 3 and the current file's 2");
}

#[test]
fn log_writer_should_remove_backups_older_than_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    let old = backup_name(&path, Utc::now() - chrono::Duration::days(3));
    let recent = backup_name(&path, Utc::now() - chrono::Duration::hours(1));
    let unrelated = dir.path().join("audit-notes.log");
    for p in [&old, &recent, &unrelated] {
        std::fs::write(p, "{}\n").expect("write");
    }
    let options = RotationOptions {
        max_size_bytes: 1024 * 1024,
        max_backups: 0,
        max_age: Some(Duration::from_secs(2 * 24 * 3600)),
    };
    drop(LogWriter::open(LogTarget::File(path.clone()), options).expect("open"));
    assert!(!old.exists(), "older than max age");
    assert!(recent.exists());
    assert!(unrelated.exists(), "not a rotated file");
}

#[test]
fn rotation_options_should_follow_kube_apiserver_flag_defaults() {
    let d = RotationOptions::from_flags(0, 0, 0);
    assert_eq!(d.max_size_bytes, 100 * 1024 * 1024);
    assert_eq!(d.max_backups, 0);
    assert_eq!(d.max_age, None);
    let o = RotationOptions::from_flags(5, 3, 7);
    assert_eq!(o.max_size_bytes, 5 * 1024 * 1024);
    assert_eq!(o.max_backups, 3);
    assert_eq!(o.max_age, Some(Duration::from_secs(7 * 86400)));
    assert_eq!(LogTarget::from_path(Path::new("-")), LogTarget::Stdout);
    assert_eq!(
        backup_name(
            Path::new("/var/log/audit"),
            Utc.with_ymd_and_hms(2026, 12, 6, 22, 11, 39).single().expect("t")
        ),
        Path::new("/var/log/audit-2026-12-06T22-11-39.000")
    );
}

const RECORDER_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
  - level: None
    nonResourceURLs: ["/healthz*"]
  - level: RequestResponse
    namespaces: ["redacted"]
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
    omitStages: ["RequestReceived"]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps", "pods/exec"]}]
  - level: Request
    resources: [{group: "", resources: ["pods"]}]
  - level: Metadata
"#;

/// A recorder writing to a file in a temp dir, and a way to read what it wrote.
struct Harness {
    recorder: Recorder,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let writer = LogWriter::open(LogTarget::File(path.clone()), RotationOptions::default())
            .expect("open");
        let policy = Policy::parse(RECORDER_POLICY).expect("policy");
        Harness { recorder: Recorder::new(policy, writer), path, _dir: dir }
    }

    fn begin(&self, attrs: &Attributes, uri: &str) -> Option<AuditRecord> {
        let admin = UserInfo::new("admin", &["system:masters"]);
        self.recorder.begin(&RequestMeta {
            user: &admin,
            impersonated: None,
            attrs,
            request_uri: uri,
            source_ip: Some("10.0.0.7".parse().expect("ip")),
            user_agent: Some("kubectl/v1.35.0"),
        })
    }

    fn events(&self) -> Vec<Value> {
        self.recorder.writer().flush();
        std::fs::read_to_string(&self.path)
            .expect("read log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

#[test]
fn recorder_should_write_nothing_at_level_none() {
    let h = Harness::new();
    assert!(h.begin(&Attributes::non_resource("get", "/healthz"), "/healthz").is_none());
    assert!(h.begin(&Attributes::non_resource("get", "/healthz/ping"), "/healthz/ping").is_none());
    assert!(h.events().is_empty());
}

#[test]
fn recorder_should_write_request_received_and_response_complete() {
    let h = Harness::new();
    let attrs = Attributes::from_request("POST", "/api/v1/namespaces/default/pods", false);
    // An HTTP/2 request's URI carries scheme and authority; requestURI does not.
    let uri = "https://127.0.0.1:6443/api/v1/namespaces/default/pods?fieldManager=kubectl";
    let mut r = h.begin(&attrs, uri).expect("audited");
    assert_eq!(r.level(), Level::Request);
    assert!(r.wants_request_object());
    assert!(r.needs_request_body());
    assert!(!r.wants_response_object());
    r.set_request_object(
        br#"{"kind":"Pod","metadata":{"name":"p1","managedFields":[{"manager":"x"}]},"spec":{}}"#,
    );
    r.set_authorization("allow", "RBAC: allowed by ClusterRoleBinding \"cluster-admin\"");
    r.finish(201, Some(br#"{"kind":"Pod","metadata":{"name":"p1","uid":"u"}}"#));
    let events = h.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let (received, complete) = (&events[0], &events[1]);
    assert_eq!(received["stage"], "RequestReceived");
    assert_eq!(complete["stage"], "ResponseComplete");
    assert_eq!(received["auditID"], complete["auditID"], "one audit ID per request");
    assert_eq!(received["requestReceivedTimestamp"], complete["requestReceivedTimestamp"]);
    assert!(received.get("requestObject").is_none(), "the body is not read yet");
    assert!(received.get("annotations").is_none());
    assert_eq!(complete["level"], "Request");
    assert_eq!(complete["verb"], "create");
    assert_eq!(complete["user"]["username"], "admin");
    assert_eq!(complete["sourceIPs"], json!(["10.0.0.7"]));
    assert_eq!(complete["userAgent"], "kubectl/v1.35.0");
    assert_eq!(complete["requestURI"], "/api/v1/namespaces/default/pods?fieldManager=kubectl");
    assert_eq!(
        complete["objectRef"],
        json!({"resource": "pods", "namespace": "default", "name": "p1", "apiVersion": "v1"})
    );
    assert_eq!(complete["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(
        complete["requestObject"],
        json!({"kind": "Pod", "metadata": {"name": "p1"}, "spec": {}}),
        "managed fields omitted as the policy says"
    );
    assert!(complete.get("responseObject").is_none(), "Request level keeps no response");
    assert_eq!(complete["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(complete.get("impersonatedUser").is_none());
}

#[test]
fn recorder_should_keep_only_metadata_of_secrets_and_omit_stages() {
    let h = Harness::new();
    let attrs = Attributes::from_request("POST", "/api/v1/namespaces/default/secrets", false);
    let mut r = h.begin(&attrs, "/api/v1/namespaces/default/secrets").expect("audited");
    assert_eq!(r.level(), Level::Metadata);
    assert!(!r.wants_request_object());
    assert!(r.needs_request_body(), "for the created secret's name");
    let body = format!(
        r#"{{"kind":"Secret","metadata":{{"name":"s1"}},"data":{{"k":"{SECRET_VALUE}"}}}}"#
    );
    r.set_request_object(body.as_bytes());
    r.finish(201, Some(body.as_bytes()));
    let events = h.events();
    assert_eq!(events.len(), 1, "RequestReceived omitted: {events:?}");
    let e = &events[0];
    assert_eq!(e["stage"], "ResponseComplete");
    assert_eq!(e["objectRef"]["name"], "s1", "the name comes from the body even at Metadata");
    assert!(e.get("requestObject").is_none());
    assert!(e.get("responseObject").is_none());
    assert_no_secret(e, "metadata event");
}

#[test]
fn recorder_should_redact_secrets_logged_at_request_response() {
    let h = Harness::new();
    let attrs = Attributes::from_request("PUT", "/api/v1/namespaces/redacted/secrets/s1", false);
    let mut r = h.begin(&attrs, "/api/v1/namespaces/redacted/secrets/s1").expect("audited");
    assert!(r.wants_response_object());
    let body = format!(
        r#"{{"kind":"Secret","metadata":{{"name":"s1"}},"data":{{"k":"{SECRET_VALUE}"}}}}"#
    );
    r.set_request_object(body.as_bytes());
    r.finish(200, Some(body.as_bytes()));
    let events = h.events();
    let e = events.last().expect("event");
    assert_eq!(e["level"], "RequestResponse");
    assert_eq!(e["requestObject"]["data"]["k"], REDACTED);
    assert_eq!(e["responseObject"]["data"]["k"], REDACTED);
    let text = std::fs::read_to_string(&h.path).expect("log");
    assert!(!text.contains(SECRET_VALUE), "{text}");
}

#[test]
fn recorder_should_log_errors_from_the_status_body() {
    let h = Harness::new();
    let attrs =
        Attributes::from_request("GET", "/api/v1/namespaces/default/configmaps/nope", false);
    let r = h.begin(&attrs, "/api/v1/namespaces/default/configmaps/nope").expect("audited");
    assert!(r.wants_response_object());
    r.finish(
        404,
        Some(br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"nope\" not found","reason":"NotFound","code":404}"#),
    );
    let events = h.events();
    let e = events.last().expect("event");
    assert_eq!(e["responseStatus"]["code"], 404);
    assert_eq!(e["responseStatus"]["status"], "Failure");
    assert_eq!(e["responseStatus"]["reason"], "NotFound");
    assert_eq!(e["responseStatus"]["message"], "configmaps \"nope\" not found");
    assert_eq!(e["responseObject"]["kind"], "Status");
}

#[test]
fn recorder_should_finish_a_long_running_request_the_client_left() {
    let h = Harness::new();
    let attrs = Attributes::from_request("GET", "/api/v1/namespaces/default/pods/p/exec", false);
    let mut r =
        h.begin(&attrs, "/api/v1/namespaces/default/pods/p/exec?command=sh").expect("audited");
    r.response_started(101);
    drop(r);
    let stages: Vec<(String, u64)> = h
        .events()
        .iter()
        .map(|e| {
            (
                e["stage"].as_str().unwrap_or("").to_string(),
                e["responseStatus"]["code"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        stages,
        vec![
            ("RequestReceived".to_string(), 0),
            ("ResponseStarted".to_string(), 101),
            ("ResponseComplete".to_string(), 101)
        ]
    );
    // A record dropped before any response writes nothing more.
    let attrs = Attributes::from_request("GET", "/api/v1/namespaces/default/configmaps", false);
    drop(h.begin(&attrs, "/api/v1/namespaces/default/configmaps").expect("audited"));
    assert_eq!(h.events().len(), 4);
}

#[test]
fn recorder_should_record_the_impersonated_user_and_non_resource_requests() {
    let h = Harness::new();
    let admin = UserInfo::new("admin", &["system:masters"]);
    let jane = UserInfo::new("jane", &["devs"]);
    let attrs = Attributes::from_request("GET", "/apis", false);
    let mut r = h
        .recorder
        .begin(&RequestMeta {
            user: &admin,
            impersonated: Some(&jane),
            attrs: &attrs,
            request_uri: "/apis",
            source_ip: None,
            user_agent: None,
        })
        .expect("audited");
    assert_eq!(r.level(), Level::Metadata);
    assert!(!r.wants_request_object());
    assert!(!r.needs_request_body());
    r.set_request_object(b"{}");
    r.finish(200, Some(b"{\"kind\":\"APIGroupList\"}"));
    let events = h.events();
    let e = events.last().expect("event");
    assert_eq!(e["user"]["username"], "admin");
    assert_eq!(e["impersonatedUser"]["username"], "jane");
    assert_eq!(e["verb"], "get");
    assert!(e.get("objectRef").is_none());
    assert!(e.get("sourceIPs").is_none());
    assert!(e.get("requestObject").is_none());
}
