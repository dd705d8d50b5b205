use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::util::{LAST_APPLIED, fenceposts};
use super::*;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
    let v = |s: &str| match s.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(s.into()),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            generation: Some(3),
            annotations: Some(labels(&[
                ("kubernetes.io/change-cause", "v2"),
                (LAST_APPLIED, "{}"),
            ])),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template("web:2"),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(v(surge)),
                    max_unavailable: Some(v(unavailable)),
                }),
            }),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

/// A set: name, image, revision, spec replicas, (status replicas, available), created at.
fn rs(
    name: &str,
    image: &str,
    rev: i64,
    replicas: i32,
    actual: i32,
    available: i32,
    created: i64,
) -> ReplicaSet {
    let mut t = template(image);
    t.metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
        .map(|l| l.insert(POD_TEMPLATE_HASH.into(), name.into()));
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            annotations: Some(labels(&[(REVISION, &rev.to_string())])),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(t),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: actual,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
    }
}

#[test]
fn fenceposts_should_round_like_kubernetes() {
    // (replicas, maxSurge, maxUnavailable) -> (surge, unavailable)
    let cases = [
        (10, "25%", "25%", (3, 2)),
        (4, "25%", "25%", (1, 1)),
        (1, "25%", "25%", (1, 0)),
        (3, "0", "0", (0, 1)),
        (3, "1", "0", (1, 0)),
        (10, "0%", "30%", (0, 3)),
        (5, "50%", "50%", (3, 2)),
    ];
    for (replicas, s, u, want) in cases {
        let d = deployment(replicas, s, u);
        assert_eq!((max_surge(&d), fenceposts(&d).1), want, "{replicas} {s} {u}");
    }
    assert_eq!(max_unavailable(&deployment(2, "0", "5")), 2, "capped at replicas");
    assert_eq!(max_unavailable(&deployment(0, "1", "1")), 0, "zero replicas");
    let mut recreate = deployment(3, "1", "1");
    if let Some(s) = recreate.spec.as_mut().and_then(|s| s.strategy.as_mut()) {
        s.type_ = Some("Recreate".into());
    }
    assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
}

#[test]
fn template_hash_should_be_stable_and_ignore_its_own_label() {
    let a = template("web:1");
    let h = template_hash(&a, None);
    assert_eq!(h, template_hash(&a.clone(), None), "same template, same hash");
    assert!(h.len() <= 10 && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
    assert_ne!(h, template_hash(&template("web:2"), None), "another template");
    assert_ne!(h, template_hash(&a, Some(1)), "a collision count changes it");
    let mut labeled = a.clone();
    labeled
        .metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
        .map(|l| l.insert(POD_TEMPLATE_HASH.into(), h.clone()));
    assert_eq!(template_hash(&labeled, None), h);
    assert!(equal_ignore_hash(&labeled, &a));
    assert!(!equal_ignore_hash(&labeled, &template("web:2")));
    // A field left out equals one set empty.
    let mut empty = a.clone();
    if let Some(m) = empty.metadata.as_mut() {
        m.annotations = Some(BTreeMap::new());
    }
    assert!(equal_ignore_hash(&empty, &a));
}

#[test]
fn revisions_should_pick_the_new_set_and_renumber_a_rollback() {
    let d = deployment(3, "1", "0");
    let sets = vec![
        rs("v1", "web:1", 1, 0, 0, 0, 0),
        rs("v2", "web:2", 2, 0, 0, 0, 10),
        rs("v3", "web:3", 3, 3, 3, 3, 20),
    ];
    // The Deployment's template is web:2: v2 is the new set (a rollback), its revision becomes 4.
    let new = find_new_rs(&d, &sets).expect("new set");
    assert_eq!(new.name_any(), "v2");
    let old: Vec<&ReplicaSet> = sets.iter().filter(|s| s.name_any() != "v2").collect();
    assert_eq!(next_revision(&old), 4);
    let mut reused = new.clone();
    assert!(set_new_rs_annotations(&d, &mut reused, 4, true));
    let ann = reused.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("4"));
    assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("2"));
    assert_eq!(ann.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"), "copied");
    assert!(!ann.contains_key(LAST_APPLIED), "never copied");
    assert!(!set_new_rs_annotations(&d, &mut reused, 4, true), "idempotent");
    // A set about to be created gets the replica annotations.
    let mut fresh = rs("new", "web:2", 0, 0, 0, 0, 30);
    fresh.metadata.annotations = None;
    set_new_rs_annotations(&d, &mut fresh, 1, false);
    let ann = fresh.metadata.annotations.unwrap_or_default();
    assert_eq!(
        (ann[REVISION].as_str(), ann[DESIRED_REPLICAS].as_str(), ann[MAX_REPLICAS].as_str()),
        ("1", "3", "4")
    );
    assert!(!ann.contains_key(REVISION_HISTORY));
    assert_eq!(find_new_rs(&deployment(1, "1", "0"), &sets[..1]).map(|r| r.name_any()), None);
}

#[test]
fn rolling_arithmetic_should_respect_surge_and_unavailable() {
    // (replicas, surge, unavailable, old (replicas, available), new (replicas, available)) ->
    // (new set's next size, how many old may go)
    let cases = [
        (3, "1", "0", (3, 3), (0, 0), 1, 0),
        (3, "1", "0", (3, 3), (1, 1), 1, 1),
        (3, "1", "0", (2, 2), (2, 1), 2, 0),
        (10, "25%", "25%", (10, 10), (0, 0), 3, 2),
        (10, "25%", "25%", (8, 8), (5, 0), 5, 0),
        (4, "0", "1", (4, 4), (0, 0), 0, 1),
        (4, "0", "1", (3, 3), (0, 0), 1, 0),
    ];
    for (replicas, s, u, (or, oa), (nr, na), want_new, want_down) in cases {
        let d = deployment(replicas, s, u);
        let old = rs("old", "web:1", 1, or, or, oa, 0);
        let new = rs("new", "web:2", 2, nr, nr, na, 10);
        let all = [&old, &new];
        assert_eq!(
            new_rs_new_replicas(&d, &all, nr),
            want_new,
            "new size {replicas} {s} {u} {or}/{nr}"
        );
        assert_eq!(
            max_scaled_down(&d, &all, Some(&new)).max(0),
            want_down,
            "scale down {replicas} {s} {u} {or}/{nr}"
        );
    }
}

#[test]
fn status_should_sum_the_sets_and_report_progress() {
    let mut d = deployment(3, "1", "0");
    d.status = Some(DeploymentStatus {
        observed_generation: Some(3),
        replicas: Some(3),
        updated_replicas: Some(0),
        available_replicas: Some(3),
        conditions: Some(vec![condition(PROGRESSING, "True", NEW_RS_CREATED, "Created", ts(0))]),
        ..Default::default()
    });
    let old = rs("old", "web:1", 1, 2, 2, 2, 0);
    let new = rs("new", "web:2", 2, 2, 2, 1, 10);
    let all = [&old, &new];
    let mut s = calculate_status(&d, &all, Some(&new), ts(5));
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas,
            s.observed_generation
        ),
        (Some(4), Some(2), Some(3), Some(3), Some(1), Some(3))
    );
    let avail = get_condition(&s, AVAILABLE).expect("Available");
    assert_eq!((avail.status.as_str(), avail.reason.as_deref()), ("True", Some(MIN_AVAILABLE)));
    rollout_progress(&d, Some(&new), &mut s, ts(5));
    let p = get_condition(&s, PROGRESSING).expect("Progressing");
    assert_eq!(p.reason.as_deref(), Some(RS_UPDATED));
    assert_eq!(p.message.as_deref(), Some("ReplicaSet \"new\" is progressing."));
    assert_eq!(p.last_transition_time, Some(Time(ts(0))), "still True: transition kept");

    // Everything updated and available: NewReplicaSetAvailable.
    let done = rs("new", "web:2", 2, 3, 3, 3, 10);
    let mut s = calculate_status(&d, &[&done], Some(&done), ts(9));
    rollout_progress(&d, Some(&done), &mut s, ts(9));
    let p = get_condition(&s, PROGRESSING).expect("Progressing");
    assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE));
    assert_eq!(p.message.as_deref(), Some("ReplicaSet \"new\" has successfully progressed."));
    assert!(deployment_complete(&d, &s));

    // No progress past the deadline: ProgressDeadlineExceeded.
    let stuck_old = rs("old", "web:1", 1, 3, 3, 3, 0);
    let stuck_new = rs("new", "web:2", 2, 1, 1, 0, 10);
    let mut stuck = d.clone();
    stuck.status = Some(calculate_status(&d, &[&stuck_old, &stuck_new], Some(&stuck_new), ts(0)));
    let mut s = calculate_status(&stuck, &[&stuck_old, &stuck_new], Some(&stuck_new), ts(700));
    rollout_progress(&stuck, Some(&stuck_new), &mut s, ts(700));
    let p = get_condition(&s, PROGRESSING).expect("Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some(TIMED_OUT)));

    // Too few available: Available False.
    let s = calculate_status(&d, &[&stuck_new], Some(&stuck_new), ts(1));
    let a = get_condition(&s, AVAILABLE).expect("Available");
    assert_eq!((a.status.as_str(), a.reason.as_deref()), ("False", Some(MIN_UNAVAILABLE)));
}

#[test]
fn proportional_scaling_should_spread_by_size() {
    // 10 replicas, surge 3, mid-rollout old 8 + new 5 = 13; scaled to 20 (+ surge 3 = 23).
    let sizes =
        proportional_sizes(20, 3, 13, &[(5, Some(13), Some(ts(10))), (8, Some(13), Some(ts(0)))]);
    assert_eq!(sizes.iter().sum::<i32>(), 23, "{sizes:?}");
    assert_eq!(sizes, vec![9, 14]);
    // Scaled down to 5 (+ surge 2 = 7).
    let sizes =
        proportional_sizes(5, 2, 13, &[(5, Some(13), Some(ts(10))), (8, Some(13), Some(ts(0)))]);
    assert_eq!(sizes.iter().sum::<i32>(), 7, "{sizes:?}");
    assert_eq!(sizes, vec![3, 4]);
    // To zero everything goes.
    assert_eq!(proportional_sizes(0, 0, 13, &[(5, None, None), (8, None, None)]), vec![0, 0]);
    // Nothing to add: unchanged.
    assert_eq!(proportional_sizes(10, 3, 13, &[(5, None, None), (8, None, None)]), vec![5, 8]);
}
