use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::site::{StaticSite, StaticSiteSpec, StaticSiteStatus};

fn site(replicas: i32, files: &[(&str, &str)]) -> StaticSite {
    StaticSite {
        metadata: ObjectMeta {
            name: Some("blog".into()),
            namespace: Some("web".into()),
            uid: Some("u1".into()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec: StaticSiteSpec {
            files: files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            replicas,
        },
        status: None,
    }
}

fn index() -> StaticSite {
    site(2, &[("index.html", "<h1>hi</h1>"), ("style.css", "h1{}")])
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("timestamp"))
}

fn owner() -> serde_json::Value {
    json!([{
        "apiVersion": "web.skiff.dev/v1alpha1", "kind": "StaticSite", "name": "blog", "uid": "u1",
        "controller": true, "blockOwnerDeletion": true,
    }])
}

fn labels() -> serde_json::Value {
    json!({"app.kubernetes.io/name": "blog", "app.kubernetes.io/managed-by": "static-site-operator"})
}

#[test]
fn children_should_be_a_config_map_of_the_files() {
    let c = children(&index(), "site-server:latest").expect("children");
    assert_eq!(
        serde_json::to_value(&c.config_map).expect("json"),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "blog-content", "namespace": "web", "labels": labels(), "ownerReferences": owner()},
            "data": {"index.html": "<h1>hi</h1>", "style.css": "h1{}"},
        })
    );
}

#[test]
fn children_should_be_a_wasm_deployment_mounting_the_files() {
    let site = index();
    let c = children(&site, "registry.local/site-server:v2").expect("children");
    assert_eq!(
        serde_json::to_value(&c.deployment).expect("json"),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "blog", "namespace": "web", "labels": labels(), "ownerReferences": owner()},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels()},
                "template": {
                    "metadata": {
                        "labels": labels(),
                        "annotations": {"web.skiff.dev/content-hash": content_hash(&site.spec.files)},
                    },
                    "spec": {
                        "runtimeClassName": "wasmtime",
                        "containers": [{
                            "name": "site-server",
                            "image": "registry.local/site-server:v2",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "volumeMounts": [{"name": "content", "mountPath": "/site", "readOnly": true}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
                        }],
                        "volumes": [{"name": "content", "configMap": {"name": "blog-content"}}],
                    },
                },
            },
        })
    );
}

#[test]
fn children_should_be_a_service_on_port_80() {
    let c = children(&index(), "site-server:latest").expect("children");
    assert_eq!(
        serde_json::to_value(&c.service).expect("json"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "blog", "namespace": "web", "labels": labels(), "ownerReferences": owner()},
            "spec": {
                "selector": labels(),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        })
    );
}

#[test]
fn children_should_need_a_stored_site() {
    let mut no_uid = index();
    no_uid.metadata.uid = None;
    assert_eq!(children(&no_uid, "i").err(), Some(DesiredError::MissingMetadata("uid")));
    let mut no_namespace = index();
    no_namespace.metadata.namespace = None;
    assert_eq!(
        children(&no_namespace, "i").err(),
        Some(DesiredError::MissingMetadata("namespace"))
    );
}

#[test]
fn content_hash_should_change_with_any_name_or_content() {
    let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let base = content_hash(&files(&[("index.html", "a"), ("b.css", "b")]));
    assert_eq!(base, content_hash(&files(&[("b.css", "b"), ("index.html", "a")])));
    assert_eq!(base.len(), 16);
    for other in [
        files(&[("index.html", "a"), ("b.css", "c")]),
        files(&[("index.html", "a"), ("c.css", "b")]),
        files(&[("index.html", "a")]),
        // Moving bytes between a name and its content is a change too.
        files(&[("index.htmla", ""), ("b.css", "b")]),
    ] {
        assert_ne!(base, content_hash(&other), "{other:?}");
    }
}

#[test]
fn validate_should_want_index_html_safe_names_and_bounded_replicas() {
    type Case<'a> = (i32, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 9] = [
        (1, &[("index.html", "")], true),
        (0, &[("index.html", ""), ("app.min.js", ""), ("data_1-2.json", "")], true),
        (10, &[("index.html", ""), (".well-known", "")], true),
        (1, &[("about.html", "")], false),
        (1, &[("index.html", ""), ("../etc", "")], false),
        (1, &[("index.html", ""), ("a/b.html", "")], false),
        (1, &[("index.html", ""), ("..data", "")], false),
        (11, &[("index.html", "")], false),
        (-1, &[("index.html", "")], false),
    ];
    for (replicas, files, ok) in cases {
        let s = site(replicas, files);
        assert_eq!(validate(&s.spec).is_ok(), ok, "{replicas} {files:?}: {:?}", validate(&s.spec));
    }
}

fn ready(deployment_ready: Option<i32>, replicas: i32) -> (i32, String, String) {
    let deployment = deployment_ready
        .map(|r| DeploymentStatus { ready_replicas: Some(r), ..Default::default() });
    let s = status(&site(replicas, &[("index.html", "")]), deployment.as_ref(), &at(100));
    let c = &s.conditions[0];
    (s.ready_replicas, c.status.clone(), c.reason.clone())
}

#[test]
fn status_should_be_ready_when_every_wanted_pod_is() {
    let cases = [
        (None, 2, (0, "False", "ReplicasNotReady")),
        (Some(1), 2, (1, "False", "ReplicasNotReady")),
        (Some(2), 2, (2, "True", "AllReplicasReady")),
        (None, 0, (0, "True", "ScaledToZero")),
        (Some(1), 0, (1, "True", "ScaledToZero")),
    ];
    for (deployment_ready, replicas, (want_ready, want_status, want_reason)) in cases {
        assert_eq!(
            ready(deployment_ready, replicas),
            (want_ready, want_status.to_string(), want_reason.to_string()),
            "{deployment_ready:?} of {replicas}"
        );
    }
}

#[test]
fn status_should_carry_url_generation_and_message() {
    let deployment = DeploymentStatus { ready_replicas: Some(1), ..Default::default() };
    let s = status(&index(), Some(&deployment), &at(100));
    assert_eq!(s.url.as_deref(), Some("http://blog.web.svc.cluster.local"));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.conditions.len(), 1);
    assert_eq!(s.conditions[0].type_, "Ready");
    assert_eq!(s.conditions[0].message, "1/2 replicas ready");
    assert_eq!(s.conditions[0].observed_generation, Some(3));
}

#[test]
fn status_should_move_the_transition_time_only_when_readiness_changes() {
    let mut s = index();
    let deployment = |r| DeploymentStatus { ready_replicas: Some(r), ..Default::default() };
    let first = status(&s, Some(&deployment(1)), &at(100));
    assert_eq!(first.conditions[0].last_transition_time, at(100));

    // Still not ready, later: same time, so the same status (and no write).
    s.status = Some(first.clone());
    let again = status(&s, Some(&deployment(1)), &at(200));
    assert_eq!(again, first);

    // Ready now: the time moves.
    let ready = status(&s, Some(&deployment(2)), &at(300));
    assert_eq!(ready.conditions[0].status, "True");
    assert_eq!(ready.conditions[0].last_transition_time, at(300));
}

#[test]
fn status_should_keep_other_writers_conditions() {
    let mut s = index();
    let mut other = status(&s, None, &at(1)).conditions.remove(0);
    other.type_ = "Audited".into();
    s.status =
        Some(StaticSiteStatus { conditions: vec![other.clone()], ..StaticSiteStatus::default() });
    let types: Vec<String> =
        status(&s, None, &at(2)).conditions.into_iter().map(|c| c.type_).collect();
    assert_eq!(types, ["Audited", "Ready"]);
}

#[test]
fn invalid_status_should_report_the_spec_error_and_keep_ready_replicas() {
    let mut s = site(1, &[("about.html", "")]);
    s.status = Some(StaticSiteStatus { ready_replicas: 1, ..StaticSiteStatus::default() });
    let Err(error) = validate(&s.spec) else { panic!("about.html alone must be refused") };
    let got = invalid_status(&s, &error, &at(5));
    assert_eq!(got.ready_replicas, 1);
    assert_eq!(got.conditions[0].status, "False");
    assert_eq!(got.conditions[0].reason, "InvalidSpec");
    assert_eq!(got.conditions[0].message, "invalid spec: files must contain index.html");
}
