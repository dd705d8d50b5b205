use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

/// A pod: its name, node ("" = unassigned), phase, ready since (seconds), restarts, created at.
fn pod(
    name: &str,
    node: &str,
    ph: &str,
    ready: Option<i64>,
    restarts: i32,
    created: i64,
) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(ph.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready.map(|s| Time(ts(s))),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: restarts,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn pods_to_delete_should_follow_kubernetes_ranking() {
    // (case, pods, how many, expected victims in order)
    type Case = (&'static str, Vec<Arc<Pod>>, usize, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "unassigned before assigned",
            vec![pod("a", "n1", "Running", Some(0), 0, 0), pod("u", "", "Pending", None, 0, 0)],
            1,
            vec!["u"],
        ),
        (
            "pending < unknown < running",
            vec![
                pod("r", "n1", "Running", None, 0, 0),
                pod("k", "n1", "Unknown", None, 0, 0),
                pod("p", "n1", "Pending", None, 0, 0),
            ],
            2,
            vec!["p", "k"],
        ),
        (
            "not ready before ready",
            vec![
                pod("ready", "n1", "Running", Some(0), 0, 0),
                pod("notready", "n1", "Running", None, 0, 0),
            ],
            1,
            vec!["notready"],
        ),
        (
            "ready for less time first",
            vec![
                pod("old", "n1", "Running", Some(10), 0, 0),
                pod("young", "n1", "Running", Some(50), 0, 0),
            ],
            1,
            vec!["young"],
        ),
        (
            "more restarts first",
            vec![
                pod("calm", "n1", "Running", Some(10), 0, 0),
                pod("flappy", "n1", "Running", Some(10), 4, 0),
            ],
            1,
            vec!["flappy"],
        ),
        (
            "newer first",
            vec![
                pod("older", "n1", "Running", Some(10), 0, 1),
                pod("newer", "n1", "Running", Some(10), 0, 5),
            ],
            1,
            vec!["newer"],
        ),
        (
            "doubled-up node first",
            vec![
                pod("alone", "n1", "Running", Some(10), 0, 0),
                pod("pair1", "n2", "Running", Some(10), 0, 0),
                pod("pair2", "n2", "Running", Some(10), 0, 0),
            ],
            1,
            vec!["pair2"],
        ),
        ("all when asked for more", vec![pod("x", "n1", "Running", None, 0, 0)], 3, vec!["x"]),
    ];
    for (case, pods, n, want) in cases {
        let got = pods_to_delete(&pods, n);
        // The doubled-up case only pins that a pod of n2 goes.
        if case == "doubled-up node first" {
            assert!(names(&got)[0].starts_with("pair"), "{case}: {:?}", names(&got));
            continue;
        }
        assert_eq!(names(&got), want, "{case}");
    }
}

#[test]
fn slow_start_should_double_batches_up_to_the_count() {
    let cases = [
        (0, vec![]),
        (1, vec![1]),
        (3, vec![1, 2]),
        (10, vec![1, 2, 4, 3]),
        (500, vec![1, 2, 4, 8, 16, 32, 64, 128, 245]),
    ];
    for (n, want) in cases {
        let got = slow_start_batches(n, SLOW_START_INITIAL_BATCH);
        assert_eq!(got, want, "{n}");
        assert_eq!(got.iter().sum::<usize>(), n);
    }
}

#[test]
fn status_should_count_labeled_ready_and_available_pods() {
    let template: BTreeMap<String, String> =
        [("app".to_string(), "web".to_string()), ("tier".to_string(), "fe".to_string())].into();
    let mut labeled = (*pod("l", "n1", "Running", Some(0), 0, 0)).clone();
    labeled.metadata.labels.get_or_insert_default().insert("tier".into(), "fe".into());
    let pods = vec![
        Arc::new(labeled),
        pod("recent", "n1", "Running", Some(95), 0, 0),
        pod("notready", "n1", "Running", None, 0, 0),
    ];
    // minReadySeconds 10 at t=100: "l" (ready since 0) is available, "recent" (since 95) not.
    let wanted = |replicas, min_ready_seconds, generation| Wanted {
        template_labels: template.clone(),
        replicas,
        min_ready_seconds,
        generation,
    };
    let s = compute_status(&ReplicaStatus::default(), &wanted(3, 10, 7), &pods, None, ts(100));
    assert_eq!(
        (
            s.replicas,
            s.fully_labeled_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.observed_generation
        ),
        (3, 1, 2, 1, 7)
    );
    assert!(s.conditions.is_empty());

    // A failed create sets ReplicaFailure/FailedCreate; a clean sync clears it.
    let failed = compute_status(&s, &wanted(5, 0, 7), &pods, Some("quota exceeded"), ts(100));
    let c = failed.conditions.iter().find(|c| c.type_ == REPLICA_FAILURE).expect("condition");
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some("FailedCreate")));
    assert_eq!(c.message.as_deref(), Some("quota exceeded"));
    let failed_delete = compute_status(&s, &wanted(1, 0, 7), &pods, Some("boom"), ts(100));
    assert_eq!(failed_delete.conditions[0].reason.as_deref(), Some("FailedDelete"));
    let cleared = compute_status(&failed, &wanted(3, 0, 8), &pods, None, ts(100));
    assert!(cleared.conditions.is_empty());
    assert_eq!(cleared.available_replicas, 2, "minReadySeconds 0: ready is available");
}

#[test]
fn status_patch_should_leave_out_zero_counts() {
    let s = ReplicaStatus { replicas: 0, observed_generation: 2, ..Default::default() };
    let p = s.to_patch();
    assert_eq!(p["status"]["replicas"], 0);
    assert!(p["status"]["readyReplicas"].is_null());
    assert_eq!(p["status"]["observedGeneration"], 2);
}
