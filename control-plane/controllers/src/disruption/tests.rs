use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            deletion_timestamp: deleting.then(|| Time(at(5))),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    })
}

fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("b".into()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[test]
fn scaled_should_round_percentages_like_kubernetes() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(scaled(&IntOrString::Int(2), 10, true), Ok(2));
    assert_eq!(scaled(&pct("50%"), 5, true), Ok(3));
    assert_eq!(scaled(&pct("50%"), 5, false), Ok(2));
    assert_eq!(scaled(&pct("34%"), 3, true), Ok(2));
    assert_eq!(scaled(&pct("100%"), 7, true), Ok(7));
    assert_eq!(scaled(&pct("0%"), 7, true), Ok(0));
    assert!(scaled(&pct("half"), 7, true).is_err());
}

#[test]
fn expected_and_desired_should_follow_min_available_or_max_unavailable() {
    let pct = |s: &str| Some(IntOrString::String(s.into()));
    let int = |n: i32| Some(IntOrString::Int(n));
    // minAvailable as a number counts the matching pods, not the controllers' scale.
    assert_eq!(expected_and_desired(&pdb(int(2), None), 4, 10), Ok((4, 2)));
    assert_eq!(expected_and_desired(&pdb(pct("50%"), None), 4, 5), Ok((5, 3)));
    assert_eq!(expected_and_desired(&pdb(None, int(1)), 4, 5), Ok((5, 4)));
    assert_eq!(expected_and_desired(&pdb(None, pct("30%")), 4, 5), Ok((5, 3)));
    assert_eq!(expected_and_desired(&pdb(None, int(9)), 4, 5), Ok((5, 0)));
    assert_eq!(expected_and_desired(&pdb(None, None), 4, 5), Ok((0, 0)));
}

#[test]
fn status_for_should_count_healthy_pods_and_allowed_disruptions() {
    let now = at(1000);
    let pods = vec![
        pod("a", true, false),
        pod("b", true, false),
        pod("c", false, false),
        pod("d", true, true),
    ];
    let s = status_for(&pdb(Some(IntOrString::Int(1)), None), &pods, Ok(0), now);
    assert_eq!(
        (s.current_healthy, s.desired_healthy, s.expected_pods, s.disruptions_allowed),
        (2, 1, 4, 1)
    );
    assert_eq!(s.observed_generation, Some(3));
    let c = &s.conditions.clone().unwrap_or_default()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("DisruptionAllowed", "True", "SufficientPods")
    );

    // A pod being evicted counts as unhealthy until it is deleted or two minutes pass.
    let mut budget = pdb(Some(IntOrString::Int(1)), None);
    budget.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(BTreeMap::from([
            ("a".to_string(), Time(at(990))),
            ("b".to_string(), Time(at(100))),
            ("d".to_string(), Time(at(990))),
        ])),
        ..PodDisruptionBudgetStatus::default()
    });
    let s = status_for(&budget, &pods, Ok(0), now);
    assert_eq!(s.current_healthy, 1);
    assert_eq!(s.disruptions_allowed, 0);
    let kept: Vec<&String> =
        s.disrupted_pods.as_ref().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(kept, vec!["a"], "expired and deleted pods are forgotten");
    let c = &s.conditions.clone().unwrap_or_default()[0];
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InsufficientPods"));

    // No pod expected: no disruption, whatever the arithmetic says.
    let s = status_for(&pdb(None, Some(IntOrString::Int(0))), &pods, Ok(0), now);
    assert_eq!(s.disruptions_allowed, 0);

    // A controller that cannot be found: fail safe.
    let s = status_for(
        &pdb(None, Some(IntOrString::Int(1))),
        &pods,
        Err("found no controllers for pod \"a\"".into()),
        now,
    );
    assert_eq!(s.disruptions_allowed, 0);
    let c = &s.conditions.clone().unwrap_or_default()[0];
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        ("SyncFailed", "found no controllers for pod \"a\"")
    );
}
