//! Namespace labels, the admission decision and namespace warnings, modelled on kube's
//! `api/helpers_test.go` and `admission/admission_test.go`.

use serde_json::{Map, Value, json};

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

fn lv(level: Level, version: Option<(u32, u32)>) -> LevelVersion {
    LevelVersion { level, version }
}

/// A pod that passes restricted:latest.
fn restricted_pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "a", "image": "nginx",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
}

/// A pod with no security settings: passes baseline, fails restricted.
fn plain_pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}})
}

/// A privileged container on the host network: fails baseline and restricted.
fn privileged_pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "nginx", "securityContext": {"privileged": true}}]},
    })
}

const PLAIN_RESTRICTED: &str = concat!(
    r#"allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "a" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
);

fn request<'a>(kind: (&'a str, &'a str), operation: &'a str, object: &'a Value) -> Request<'a> {
    Request {
        operation,
        group: kind.0,
        kind: kind.1,
        subresource: "",
        namespace: "ns",
        username: "alice",
        object,
        old_object: None,
    }
}

const POD: (&str, &str) = ("", "Pod");

fn annotations(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn level_version_should_print_as_kube_does() {
    assert_eq!(lv(Level::Restricted, None).label(), "restricted:latest");
    assert_eq!(lv(Level::Baseline, Some((1, 30))).label(), "baseline:v1.30");
    assert_eq!(lv(Level::Privileged, Some((1, 0))).label(), "privileged:v1.0");
}

#[test]
fn parse_version_should_accept_latest_and_v1_minor_only() {
    type Parsed = Result<Option<(u32, u32)>, &'static str>;
    let cases: &[(&str, Parsed)] = &[
        ("latest", Ok(None)),
        ("v1.0", Ok(Some((1, 0)))),
        ("v1.35", Ok(Some((1, 35)))),
        ("v1.999", Ok(Some((1, 999)))),
        ("v1.035", Err(r#"must be "latest" or "v1.x""#)),
        ("v1.", Err(r#"must be "latest" or "v1.x""#)),
        ("1.30", Err(r#"must be "latest" or "v1.x""#)),
        ("v2.0", Err(r#"must be "latest" or "v1.x""#)),
        ("v1.30.1", Err(r#"must be "latest" or "v1.x""#)),
        ("Latest", Err(r#"must be "latest" or "v1.x""#)),
        ("", Err(r#"must be "latest" or "v1.x""#)),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_version(input), *expected, "{input:?}");
    }
}

#[test]
fn policy_to_evaluate_should_layer_labels_over_defaults() {
    let defaults = NamespacePolicy {
        enforce: lv(Level::Baseline, Some((1, 20))),
        audit: lv(Level::Restricted, None),
        warn: lv(Level::Privileged, None),
    };
    let cases: Vec<(&str, Map<String, Value>, NamespacePolicy)> = vec![
        ("no labels", labels(&[]), defaults),
        (
            "enforce stricter than warn: warn follows level and version",
            labels(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.25")]),
            NamespacePolicy {
                enforce: lv(Level::Restricted, Some((1, 25))),
                audit: lv(Level::Restricted, None),
                warn: lv(Level::Restricted, Some((1, 25))),
            },
        ),
        (
            "warn version set: warn follows the level only",
            labels(&[(ENFORCE_LEVEL_LABEL, "baseline"), (WARN_VERSION_LABEL, "v1.30")]),
            NamespacePolicy {
                enforce: lv(Level::Baseline, Some((1, 20))),
                audit: lv(Level::Restricted, None),
                warn: lv(Level::Baseline, Some((1, 30))),
            },
        ),
        (
            "explicit warn level is kept",
            labels(&[(ENFORCE_LEVEL_LABEL, "restricted"), (WARN_LEVEL_LABEL, "privileged")]),
            NamespacePolicy {
                enforce: lv(Level::Restricted, Some((1, 20))),
                audit: lv(Level::Restricted, None),
                warn: lv(Level::Privileged, None),
            },
        ),
        (
            "enforce version alone does not move warn",
            labels(&[(ENFORCE_VERSION_LABEL, "latest")]),
            NamespacePolicy { enforce: lv(Level::Baseline, None), ..defaults },
        ),
        (
            "bad levels: enforce restricted, audit and warn privileged, bad versions latest",
            labels(&[
                (ENFORCE_LEVEL_LABEL, "superstrict"),
                (AUDIT_LEVEL_LABEL, "loud"),
                (AUDIT_VERSION_LABEL, "v1.x"),
                (WARN_LEVEL_LABEL, "quiet"),
            ]),
            NamespacePolicy {
                enforce: lv(Level::Restricted, Some((1, 20))),
                audit: lv(Level::Privileged, None),
                warn: lv(Level::Privileged, None),
            },
        ),
    ];
    for (name, labels, expected) in cases {
        assert_eq!(policy_to_evaluate(&labels, &defaults).0, expected, "{name}");
    }
}

#[test]
fn from_labels_should_return_kube_messages_for_bad_values() {
    let defaults = NamespacePolicy::default();
    let bad = labels(&[
        (ENFORCE_LEVEL_LABEL, "superstrict"),
        (ENFORCE_VERSION_LABEL, "1.30"),
        (WARN_LEVEL_LABEL, "Baseline"),
        ("other", "x"),
    ]);
    assert_eq!(
        NamespacePolicy::from_labels(&bad, &defaults),
        Err(vec![
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "superstrict": must be one of privileged, baseline, restricted"#.to_string(),
            r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.30": must be "latest" or "v1.x""#.to_string(),
            r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "Baseline": must be one of privileged, baseline, restricted"#.to_string(),
        ])
    );
    let good = labels(&[(AUDIT_LEVEL_LABEL, "baseline"), (AUDIT_VERSION_LABEL, "v1.29")]);
    assert_eq!(
        NamespacePolicy::from_labels(&good, &defaults),
        Ok(NamespacePolicy { audit: lv(Level::Baseline, Some((1, 29))), ..defaults })
    );
}

#[test]
fn admit_should_deny_a_privileged_pod_under_restricted_with_every_reason() {
    let pod = privileged_pod("p");
    let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    assert_eq!(
        outcome.denied.as_deref(),
        Some(concat!(
            r#"violates PodSecurity "restricted:latest": "#,
            "host namespaces (hostNetwork=true), ",
            r#"privileged (container "a" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "a" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ))
    );
    // Warn defaults to the enforce level, but a refused request carries no warnings.
    assert!(outcome.warnings.is_empty());
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[(ENFORCE_POLICY_ANNOTATION, "restricted:latest")])
    );
}

#[test]
fn admit_should_separate_enforce_audit_and_warn() {
    let ns = labels(&[
        (ENFORCE_LEVEL_LABEL, "baseline"),
        (AUDIT_LEVEL_LABEL, "restricted"),
        (AUDIT_VERSION_LABEL, "v1.30"),
        (WARN_LEVEL_LABEL, "restricted"),
    ]);
    let pod = plain_pod("p");
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    assert_eq!(outcome.denied, None);
    assert_eq!(
        outcome.warnings,
        vec![format!(r#"would violate PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#)]
    );
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[
            (
                AUDIT_VIOLATIONS_ANNOTATION,
                &format!(r#"would violate PodSecurity "restricted:v1.30": {PLAIN_RESTRICTED}"#)
            ),
            (ENFORCE_POLICY_ANNOTATION, "baseline:latest"),
        ])
    );

    // Baseline violations are refused, and audited even then.
    let pod = privileged_pod("p");
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    let baseline = r#"host namespaces (hostNetwork=true), privileged (container "a" must not set securityContext.privileged=true)"#;
    assert_eq!(
        outcome.denied,
        Some(format!(r#"violates PodSecurity "baseline:latest": {baseline}"#))
    );
    assert!(outcome.warnings.is_empty());
    assert_eq!(outcome.audit_annotations[0].0, AUDIT_VIOLATIONS_ANNOTATION);
    assert!(outcome.audit_annotations[0].1.starts_with(r#"would violate PodSecurity "restricted:v1.30": host namespaces (hostNetwork=true), privileged"#));

    // A compliant pod gets only the enforce-policy annotation.
    let pod = restricted_pod("p");
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    assert_eq!(
        outcome,
        Outcome {
            audit_annotations: annotations(&[(ENFORCE_POLICY_ANNOTATION, "baseline:latest")]),
            ..Outcome::default()
        }
    );
}

#[test]
fn admit_should_short_cut_fully_privileged_namespaces() {
    let pod = privileged_pod("p");
    let expected = Outcome {
        audit_annotations: annotations(&[(ENFORCE_POLICY_ANNOTATION, "privileged:latest")]),
        ..Outcome::default()
    };
    assert_eq!(admit(&Config::default(), &labels(&[]), &request(POD, "CREATE", &pod)), expected);
    // The pinned version is not reported on this path, as in kube.
    let pinned = labels(&[(ENFORCE_LEVEL_LABEL, "privileged"), (ENFORCE_VERSION_LABEL, "v1.25")]);
    assert_eq!(admit(&Config::default(), &pinned, &request(POD, "CREATE", &pod)), expected);
}

#[test]
fn admit_should_honour_exemptions() {
    let config = Config {
        defaults: NamespacePolicy {
            enforce: lv(Level::Restricted, None),
            ..NamespacePolicy::default()
        },
        exemptions: Exemptions {
            usernames: vec!["system:serviceaccount:kube-system:admin".into()],
            runtime_classes: vec!["kata".into()],
            namespaces: vec!["kube-system".into()],
        },
    };
    let pod = privileged_pod("p");
    let exempt = |reason: &str| Outcome {
        audit_annotations: annotations(&[(EXEMPT_ANNOTATION, reason)]),
        ..Outcome::default()
    };

    let in_exempt_ns = Request { namespace: "kube-system", ..request(POD, "CREATE", &pod) };
    assert_eq!(admit(&config, &labels(&[]), &in_exempt_ns), exempt("namespace"));

    let by_exempt_user = Request {
        username: "system:serviceaccount:kube-system:admin",
        ..request(POD, "CREATE", &pod)
    };
    assert_eq!(admit(&config, &labels(&[]), &by_exempt_user), exempt("user"));

    let mut kata = pod.clone();
    kata["spec"]["runtimeClassName"] = json!("kata");
    assert_eq!(
        admit(&config, &labels(&[]), &request(POD, "CREATE", &kata)),
        exempt("runtimeClass")
    );

    let deployment = json!({"spec": {"template": {"spec": kata["spec"].clone()}}});
    assert_eq!(
        admit(
            &config,
            &labels(&[(WARN_LEVEL_LABEL, "baseline")]),
            &request(("apps", "Deployment"), "CREATE", &deployment)
        ),
        exempt("runtimeClass")
    );

    // Defaults apply when the namespace has no labels: not exempt, refused.
    assert!(admit(&config, &labels(&[]), &request(POD, "CREATE", &pod)).denied.is_some());
}

#[test]
fn admit_should_evaluate_with_fallbacks_and_report_bad_labels() {
    let ns = labels(&[(ENFORCE_LEVEL_LABEL, "superstrict"), (WARN_LEVEL_LABEL, "loud")]);
    let pod = plain_pod("p");
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    assert_eq!(
        outcome.denied,
        Some(format!(r#"violates PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#))
    );
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[
            (ENFORCE_POLICY_ANNOTATION, "restricted:latest"),
            (
                ERROR_ANNOTATION,
                concat!(
                    "Failed to parse policy: [",
                    r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "superstrict": must be one of privileged, baseline, restricted, "#,
                    r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "loud": must be one of privileged, baseline, restricted]"#,
                ),
            ),
        ])
    );
    // Bad audit/warn levels fail open, but the namespace is not "fully privileged" while its
    // labels have errors, so pods are still looked at.
    let ns = labels(&[(WARN_LEVEL_LABEL, "loud")]);
    let outcome = admit(&Config::default(), &ns, &request(POD, "CREATE", &pod));
    assert_eq!(outcome.denied, None);
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[
            (ENFORCE_POLICY_ANNOTATION, "privileged:latest"),
            (
                ERROR_ANNOTATION,
                r#"Failed to parse policy: metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "loud": must be one of privileged, baseline, restricted"#,
            ),
        ])
    );
}

#[test]
fn admit_should_pin_the_policy_version() {
    let root = json!({
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        },
    });
    // runAsUser=0 is only checked from v1.23.
    let pinned = labels(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.22")]);
    let outcome = admit(&Config::default(), &pinned, &request(POD, "CREATE", &root));
    assert_eq!(outcome.denied, None);
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[(ENFORCE_POLICY_ANNOTATION, "restricted:v1.22")])
    );

    let latest = labels(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.23")]);
    let outcome = admit(&Config::default(), &latest, &request(POD, "CREATE", &root));
    assert_eq!(
        outcome.denied.as_deref(),
        Some(
            r#"violates PodSecurity "restricted:v1.23": runAsUser=0 (pod must not set runAsUser=0)"#
        )
    );
}

#[test]
fn admit_should_only_warn_and_audit_workload_templates() {
    let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    let template = plain_pod("ignored");
    let warning = format!(r#"would violate PodSecurity "restricted:latest": {PLAIN_RESTRICTED}"#);
    let workloads: Vec<((&str, &str), Value)> = vec![
        (("apps", "Deployment"), json!({"spec": {"template": template}})),
        (("apps", "ReplicaSet"), json!({"spec": {"template": template}})),
        (("apps", "StatefulSet"), json!({"spec": {"template": template}})),
        (("apps", "DaemonSet"), json!({"spec": {"template": template}})),
        (("batch", "Job"), json!({"spec": {"template": template}})),
        (("batch", "CronJob"), json!({"spec": {"jobTemplate": {"spec": {"template": template}}}})),
        (("", "ReplicationController"), json!({"spec": {"template": template}})),
        (("", "PodTemplate"), json!({"template": template})),
    ];
    for (kind, object) in &workloads {
        for op in ["CREATE", "UPDATE"] {
            let outcome = admit(&Config::default(), &ns, &request(*kind, op, object));
            // Warn follows enforce here; audit stays privileged; no enforce-policy annotation.
            assert_eq!(
                outcome,
                Outcome { warnings: vec![warning.clone()], ..Outcome::default() },
                "{kind:?} {op}"
            );
        }
    }

    let audit_ns = labels(&[(AUDIT_LEVEL_LABEL, "baseline")]);
    let privileged = json!({"spec": {"template": privileged_pod("x")}});
    let outcome = admit(
        &Config::default(),
        &audit_ns,
        &request(("apps", "Deployment"), "CREATE", &privileged),
    );
    assert_eq!(outcome.denied, None);
    assert!(outcome.warnings.is_empty());
    assert_eq!(
        outcome.audit_annotations,
        annotations(&[(
            AUDIT_VIOLATIONS_ANNOTATION,
            r#"would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true), privileged (container "a" must not set securityContext.privileged=true)"#,
        )])
    );
}

#[test]
fn admit_should_skip_what_kube_skips_for_workloads() {
    let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    let deployment = json!({"spec": {"template": plain_pod("x")}});
    let cases: Vec<(&str, Request)> = vec![
        (
            "scale subresource",
            Request {
                subresource: "scale",
                ..request(("apps", "Deployment"), "UPDATE", &deployment)
            },
        ),
        (
            "status subresource",
            Request {
                subresource: "status",
                ..request(("apps", "Deployment"), "UPDATE", &deployment)
            },
        ),
        ("delete", request(("apps", "Deployment"), "DELETE", &deployment)),
        ("not a pod-spec resource", request(("", "Service"), "CREATE", &deployment)),
        ("other group", request(("extensions", "Deployment"), "CREATE", &deployment)),
    ];
    for (name, req) in cases {
        assert_eq!(admit(&Config::default(), &ns, &req), Outcome::default(), "{name}");
    }
    // A ReplicationController without a template has nothing to check.
    let rc = json!({"spec": {"replicas": 1}});
    assert_eq!(
        admit(&Config::default(), &ns, &request(("", "ReplicationController"), "CREATE", &rc)),
        Outcome::default()
    );
    // Warn and audit privileged: nothing to do even if enforce is not.
    let enforce_only =
        labels(&[(ENFORCE_LEVEL_LABEL, "restricted"), (WARN_LEVEL_LABEL, "privileged")]);
    assert_eq!(
        admit(
            &Config::default(),
            &enforce_only,
            &request(("apps", "Deployment"), "CREATE", &deployment)
        ),
        Outcome::default()
    );
    // A missing template is an empty pod spec, which passes.
    let empty = json!({"spec": {}});
    assert_eq!(
        admit(&Config::default(), &ns, &request(("apps", "Deployment"), "CREATE", &empty)),
        Outcome::default()
    );
}

#[test]
fn admit_should_ignore_pod_updates_that_change_nothing_checked() {
    let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    let old = plain_pod("p");
    let denied = |new: &Value, subresource: &'static str| {
        let req = Request { old_object: Some(&old), subresource, ..request(POD, "UPDATE", new) };
        admit(&Config::default(), &ns, &req).denied.is_some()
    };

    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    relabelled["metadata"]["annotations"] =
        json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"});
    relabelled["spec"]["activeDeadlineSeconds"] = json!(10);
    assert!(!denied(&relabelled, ""), "metadata-only update");

    let mut new_image = old.clone();
    new_image["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert!(denied(&new_image, ""), "image change");

    let mut init_added = old.clone();
    init_added["spec"]["initContainers"] = json!([{"name": "i", "image": "busybox"}]);
    assert!(denied(&init_added, ""), "container count change");

    let mut debug = old.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    assert!(denied(&debug, "ephemeralcontainers"), "ephemeral container added");
    assert!(!denied(&debug, "status"), "status subresource is ignored");
    let debug_old = debug.clone();
    let req = Request {
        old_object: Some(&debug_old),
        subresource: "ephemeralcontainers",
        ..request(POD, "UPDATE", &debug)
    };
    assert!(
        admit(&Config::default(), &ns, &req).denied.is_none(),
        "ephemeral containers unchanged"
    );

    for subresource in
        ["exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"]
    {
        let req = Request { subresource, ..request(POD, "CREATE", &new_image) };
        assert_eq!(admit(&Config::default(), &ns, &req), Outcome::default(), "{subresource}");
    }
    assert_eq!(
        admit(&Config::default(), &ns, &request(POD, "DELETE", &new_image)),
        Outcome::default()
    );
    assert_eq!(
        admit(&Config::default(), &ns, &request(POD, "CONNECT", &new_image)),
        Outcome::default()
    );
}

#[test]
fn admit_should_refuse_namespaces_with_new_label_errors() {
    let ns =
        |pairs: &[(&str, &str)]| json!({"metadata": {"name": "test", "labels": labels(pairs)}});
    let namespace = ("", "Namespace");
    let bad_level = ns(&[(ENFORCE_LEVEL_LABEL, "unknown")]);
    let bad_version =
        ns(&[(ENFORCE_LEVEL_LABEL, "privileged"), (ENFORCE_VERSION_LABEL, "unknown")]);
    let good = ns(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.0")]);
    let level_msg = r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "unknown": must be one of privileged, baseline, restricted"#;
    let version_msg = r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "unknown": must be "latest" or "v1.x""#;

    let admit_ns = |new: &Value, old: Option<&Value>| {
        let op = if old.is_some() { "UPDATE" } else { "CREATE" };
        let req = Request { old_object: old, namespace: "test", ..request(namespace, op, new) };
        admit(&Config::default(), &Map::new(), &req).denied
    };
    assert_eq!(admit_ns(&good, None), None, "create restricted");
    assert_eq!(admit_ns(&bad_level, None).as_deref(), Some(level_msg), "create malformed level");
    assert_eq!(
        admit_ns(&bad_version, None).as_deref(),
        Some(version_msg),
        "create malformed version"
    );
    assert_eq!(admit_ns(&bad_level, Some(&bad_level)), None, "update no-op malformed level");
    assert_eq!(admit_ns(&bad_version, Some(&bad_version)), None, "update no-op malformed version");
    assert_eq!(
        admit_ns(&bad_level, Some(&good)).as_deref(),
        Some(level_msg),
        "update malformed level"
    );
    assert_eq!(
        admit_ns(&bad_level, Some(&bad_version)).as_deref(),
        Some(level_msg),
        "different errors"
    );

    let both = ns(&[(ENFORCE_LEVEL_LABEL, "unknown"), (ENFORCE_VERSION_LABEL, "unknown")]);
    assert_eq!(admit_ns(&both, None), Some(format!("[{level_msg}, {version_msg}]")));

    let errors =
        namespace_label_errors(&Config::default(), &labels(&[(AUDIT_LEVEL_LABEL, "x")]), None);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field(), "metadata.labels[pod-security.kubernetes.io/audit]");
    assert_eq!(
        errors[0].body(),
        r#"Invalid value: "x": must be one of privileged, baseline, restricted"#
    );
}

#[test]
fn namespace_warnings_should_report_existing_pods_that_violate_a_tighter_enforce_level() {
    let config = Config::default();
    let restricted = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    let baseline = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
    let pods = vec![
        restricted_pod("ok"),
        plain_pod("plain-b"),
        plain_pod("plain-a"),
        plain_pod("plain-c"),
        privileged_pod("priv"),
        {
            let mut p = plain_pod("single");
            p["spec"]["containers"][0]["securityContext"] =
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
            p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
            p
        },
    ];
    let plain_reasons = "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile";
    assert_eq!(
        namespace_warnings(&config, "test", &restricted, Some(&baseline), &pods),
        vec![
            r#"existing pods in namespace "test" violate the new PodSecurity enforce level "restricted:latest""#.to_string(),
            format!("plain-a (and 2 other pods): {plain_reasons}"),
            format!("priv: host namespaces, privileged, {plain_reasons}"),
            "single: runAsNonRoot != true".to_string(),
        ]
    );
    // Baseline: only the privileged pod.
    assert_eq!(
        namespace_warnings(&config, "test", &baseline, Some(&labels(&[])), &pods),
        vec![
            r#"existing pods in namespace "test" violate the new PodSecurity enforce level "baseline:latest""#.to_string(),
            "priv: host namespaces, privileged".to_string(),
        ]
    );
}

#[test]
fn namespace_warnings_should_skip_changes_that_do_not_tighten_enforce() {
    let config = Config::default();
    let pods = vec![privileged_pod("priv")];
    let l = |pairs: &[(&str, &str)]| labels(pairs);
    type Labels = Map<String, Value>;
    let cases: Vec<(&str, Labels, Option<Labels>)> = vec![
        ("create", l(&[(ENFORCE_LEVEL_LABEL, "restricted")]), None),
        (
            "update no-op",
            l(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.0")]),
            Some(l(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.0")])),
        ),
        (
            "relax level identical version",
            l(&[(ENFORCE_LEVEL_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "v1.0")]),
            Some(l(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.0")])),
        ),
        (
            "relax level implicit latest",
            l(&[(ENFORCE_LEVEL_LABEL, "baseline")]),
            Some(l(&[(ENFORCE_LEVEL_LABEL, "restricted")])),
        ),
        (
            "to implicit privileged",
            l(&[]),
            Some(l(&[(ENFORCE_LEVEL_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.0")])),
        ),
        ("malformed new labels are refused", l(&[(ENFORCE_LEVEL_LABEL, "unknown")]), Some(l(&[]))),
    ];
    for (name, new, old) in cases {
        assert_eq!(
            namespace_warnings(&config, "test", &new, old.as_ref(), &pods),
            Vec::<String>::new(),
            "{name}"
        );
    }
    // Same level, different version: dry-run.
    let new = l(&[(ENFORCE_LEVEL_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "v1.30")]);
    let old = l(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
    assert_eq!(namespace_warnings(&config, "test", &new, Some(&old), &pods).len(), 2);
    // Tightened by the defaults when labels go away.
    let config = Config {
        defaults: NamespacePolicy {
            enforce: lv(Level::Baseline, None),
            ..NamespacePolicy::default()
        },
        ..Config::default()
    };
    let warnings = namespace_warnings(
        &config,
        "test",
        &l(&[]),
        Some(&l(&[(ENFORCE_LEVEL_LABEL, "privileged")])),
        &pods,
    );
    assert_eq!(warnings[1], "priv: host namespaces, privileged");
}

#[test]
fn namespace_warnings_should_warn_that_an_exempt_namespace_ignores_its_policy() {
    let config = Config {
        exemptions: Exemptions { namespaces: vec!["test".into()], ..Exemptions::default() },
        ..Config::default()
    };
    let pods = vec![privileged_pod("priv")];
    let create = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
    assert_eq!(
        namespace_warnings(&config, "test", &create, None, &pods),
        vec![
            r#"namespace "test" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#
        ]
    );
    let update = labels(&[
        (ENFORCE_LEVEL_LABEL, "restricted"),
        (ENFORCE_VERSION_LABEL, "v1.0"),
        (AUDIT_LEVEL_LABEL, "restricted"),
        (WARN_LEVEL_LABEL, "baseline"),
    ]);
    assert_eq!(
        namespace_warnings(&config, "test", &update, Some(&labels(&[])), &pods),
        vec![
            r#"namespace "test" is exempt from Pod Security, and the policy (enforce=restricted:v1.0, audit=restricted:latest, warn=baseline:latest) will be ignored"#
        ]
    );
    // Privileged or default policies say nothing; other namespaces are not exempt.
    assert!(
        namespace_warnings(
            &config,
            "test",
            &labels(&[(ENFORCE_LEVEL_LABEL, "privileged")]),
            None,
            &pods
        )
        .is_empty()
    );
    assert!(namespace_warnings(&config, "other", &create, None, &pods).is_empty());
}

#[test]
fn namespace_warnings_should_prioritise_and_bound_the_pods_checked() {
    let config = Config {
        exemptions: Exemptions { runtime_classes: vec!["kata".into()], ..Exemptions::default() },
        ..Config::default()
    };
    let new = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
    let old = labels(&[]);
    let owned = |name: &str, uid: &str| {
        let mut p = privileged_pod(name);
        p["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true}]);
        p
    };
    let mut exempt = privileged_pod("exempt");
    exempt["spec"]["runtimeClassName"] = json!("kata");

    // Replicas of one controller go after unique pods, exempt runtime classes are skipped.
    let mut pods = vec![exempt, owned("rs1-b", "1"), owned("rs1-a", "1"), owned("rs2-a", "2")];
    pods.extend((0..NAMESPACE_MAX_PODS_TO_CHECK - 2).map(|i| {
        let mut p = plain_pod(&format!("unique-{i:04}"));
        p["spec"]["containers"][0]["ports"] = json!([{"hostPort": 80}]);
        p
    }));
    let warnings = namespace_warnings(&config, "test", &new, Some(&old), &pods);
    assert_eq!(
        warnings,
        vec![
            format!("new PodSecurity enforce level only checked against the first {NAMESPACE_MAX_PODS_TO_CHECK} of 3001 existing pods"),
            r#"existing pods in namespace "test" violate the new PodSecurity enforce level "baseline:latest""#.to_string(),
            "rs1-b (and 1 other pod): host namespaces, privileged".to_string(),
            format!("unique-0000 (and {} other pods): hostPort", NAMESPACE_MAX_PODS_TO_CHECK - 3),
        ]
    );
}
