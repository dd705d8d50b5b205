use k8s_openapi::api::apps::v1::{
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;

const NOW: i64 = 1_800_000_000;

/// Pods as (ordinal, state, revision).
type Pods<'a> = &'a [(i32, char, &'a str)];
/// (replicas, pods, ordinals created, ordinals deleted).
type ScaleCase<'a> = (i32, Pods<'a>, &'a [i32], &'a [i32]);
/// (retention policy, current owners, condemned, owner uids wanted or None for no change).
type RetentionCase<'a> = ((&'a str, &'a str), Vec<OwnerReference>, bool, Option<Vec<&'a str>>);

/// A pod of `web` in state `s`: `R` Running+Ready (for an hour), `r` Ready 2 s ago,
/// `P` Pending, `N` Running not Ready, `F` Failed, `T` terminating; `rev` its revision.
fn pod(ord: i32, s: char, rev: &str) -> Pod {
    let ready = matches!(s, 'R' | 'r' | 'T');
    let since = if s == 'r' { NOW - 2 } else { NOW - 3600 };
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name("web", ord)),
            uid: Some(format!("uid-{ord}")),
            labels: Some(BTreeMap::from([(POD_REVISION_LABEL.into(), rev.into())])),
            deletion_timestamp: (s == 'T').then(|| Time(Timestamp::from_second(NOW).unwrap())),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(
                match s {
                    'P' => "Pending",
                    'F' => "Failed",
                    _ => "Running",
                }
                .into(),
            ),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(Timestamp::from_second(since).unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn view(replicas: i32, ordered: bool, strategy: Strategy) -> SetView {
    SetView {
        name: "web".into(),
        start: 0,
        replicas,
        ordered,
        min_ready_seconds: 0,
        strategy,
        update_revision: "new".into(),
    }
}

const ROLL: Strategy = Strategy::RollingUpdate { partition: 0 };

fn run(v: &SetView, pods: Pods) -> Plan {
    let pods: Vec<Pod> = pods.iter().map(|(o, s, r)| pod(*o, *s, r)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(v, &refs, Timestamp::from_second(NOW).unwrap())
}

fn names(ords: &[i32]) -> Vec<String> {
    ords.iter().map(|o| pod_name("web", *o)).collect()
}

#[test]
fn plan_should_start_and_stop_pods_in_order_under_ordered_ready() {
    // (replicas, pods, want created ordinals, want deleted ordinals)
    let cases: &[ScaleCase] = &[
        (3, &[], &[0], &[]),
        (3, &[(0, 'P', "new")], &[], &[]),
        (3, &[(0, 'N', "new")], &[], &[]),
        (3, &[(0, 'R', "new")], &[1], &[]),
        (3, &[(0, 'R', "new"), (1, 'R', "new")], &[2], &[]),
        (3, &[(0, 'R', "new"), (2, 'R', "new")], &[1], &[]),
        (3, &[(0, 'F', "new"), (1, 'R', "new")], &[], &[0]),
        (3, &[(0, 'T', "new"), (1, 'R', "new")], &[], &[]),
        // Scale down: the highest ordinal first, one at a time, waiting for termination.
        (1, &[(0, 'R', "new"), (1, 'R', "new"), (2, 'R', "new")], &[], &[2]),
        (1, &[(0, 'R', "new"), (1, 'R', "new"), (2, 'T', "new")], &[], &[]),
        (1, &[(0, 'R', "new"), (1, 'R', "new")], &[], &[1]),
        // Scale down waits for the remaining pods to be healthy.
        (1, &[(0, 'N', "new"), (1, 'R', "new")], &[], &[]),
        // An unhealthy condemned pod that is the first unhealthy one goes; another blocks.
        (1, &[(0, 'R', "new"), (1, 'N', "new")], &[], &[1]),
        (1, &[(0, 'R', "new"), (1, 'N', "new"), (2, 'N', "new")], &[], &[]),
        (0, &[(0, 'R', "new")], &[], &[0]),
    ];
    for (replicas, pods, create, delete) in cases {
        let got = run(&view(*replicas, true, ROLL), pods);
        assert_eq!(got.create, create.to_vec(), "replicas {replicas} pods {pods:?}");
        assert_eq!(got.delete, names(delete), "replicas {replicas} pods {pods:?}");
    }
}

#[test]
fn plan_should_act_on_every_pod_at_once_under_parallel() {
    let cases: &[ScaleCase] = &[
        (3, &[], &[0, 1, 2], &[]),
        (3, &[(1, 'P', "new")], &[0, 2], &[]),
        (1, &[(0, 'P', "new"), (1, 'N', "new"), (2, 'R', "new"), (3, 'T', "new")], &[], &[2, 1]),
        (2, &[(0, 'F', "new")], &[1], &[0]),
    ];
    for (replicas, pods, create, delete) in cases {
        let got = run(&view(*replicas, false, ROLL), pods);
        assert_eq!(got.create, create.to_vec(), "replicas {replicas} pods {pods:?}");
        assert_eq!(got.delete, names(delete), "replicas {replicas} pods {pods:?}");
    }
}

#[test]
fn plan_should_roll_from_the_highest_ordinal_down_to_the_partition() {
    let part = |p| Strategy::RollingUpdate { partition: p };
    // (strategy, pods, want deleted)
    let cases: &[(Strategy, Pods, &[i32])] = &[
        (ROLL, &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "old")], &[2]),
        // The updated pod must be Ready before the next one goes.
        (ROLL, &[(0, 'R', "old"), (1, 'R', "old"), (2, 'T', "old")], &[]),
        (ROLL, &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "new")], &[1]),
        (ROLL, &[(0, 'R', "old"), (1, 'R', "new"), (2, 'R', "new")], &[0]),
        (ROLL, &[(0, 'R', "new"), (1, 'R', "new"), (2, 'R', "new")], &[]),
        (part(2), &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "old")], &[2]),
        (part(2), &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "new")], &[]),
        (part(3), &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "old")], &[]),
        (Strategy::OnDelete, &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "old")], &[]),
    ];
    for (strategy, pods, delete) in cases {
        let got = run(&view(3, true, *strategy), pods);
        assert_eq!(got.create, Vec::<i32>::new(), "{strategy:?} {pods:?}");
        assert_eq!(got.delete, names(delete), "{strategy:?} {pods:?}");
    }
    // Parallel sets roll one pod at a time too.
    let got = run(&view(3, false, ROLL), &[(0, 'R', "old"), (1, 'R', "old"), (2, 'R', "old")]);
    assert_eq!(got.delete, names(&[2]));
}

#[test]
fn plan_should_wait_out_min_ready_seconds() {
    let mut v = view(2, true, ROLL);
    v.min_ready_seconds = 10;
    let got = run(&v, &[(0, 'r', "new")]);
    assert_eq!(got.create, Vec::<i32>::new(), "pod 0 is Ready but not yet available");
    assert_eq!(got.requeue, Some(Duration::from_secs(8)));
    assert_eq!(run(&v, &[(0, 'R', "new")]).create, vec![1]);
}

#[test]
fn plan_should_honour_the_start_ordinal() {
    let mut v = view(2, true, ROLL);
    v.start = 5;
    assert_eq!(run(&v, &[]).create, vec![5]);
    assert_eq!(run(&v, &[(5, 'R', "new")]).create, vec![6]);
    let got = run(&v, &[(0, 'R', "new"), (5, 'R', "new"), (6, 'R', "new")]);
    assert_eq!(got.delete, names(&[0]), "ordinals below the start are condemned");
    assert!(v.uses_current_revision(4) && !v.uses_current_revision(5));
    v.strategy = Strategy::RollingUpdate { partition: 1 };
    assert!(v.uses_current_revision(5) && !v.uses_current_revision(6));
}

fn set(policy: (&str, &str)) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("set-uid".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            service_name: Some("web-svc".into()),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    volumes: Some(vec![Volume { name: "data".into(), ..Default::default() }]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
                ..Default::default()
            }]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(policy.0.into()),
                    when_scaled: Some(policy.1.into()),
                },
            ),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn new_pod_should_carry_its_identity_and_claims() {
    let s = set(("Retain", "Retain"));
    let p = new_pod(&s, &s.spec.as_ref().unwrap().template, "web-abc", 2);
    assert_eq!(p.name_any(), "web-2");
    let labels = p.labels();
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert_eq!(labels[POD_REVISION_LABEL], "web-abc");
    assert_eq!(labels["app"], "web");
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
    let vols = spec.volumes.unwrap();
    assert_eq!(vols.len(), 1, "the template's volume of the same name is replaced");
    assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", Some(true)));

    let claims = claims_for(&s, 2);
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].name_any(), "data-web-2");
    assert_eq!(claims[0].namespace().as_deref(), Some("ns"));
    assert_eq!(claims[0].labels()["app"], "web", "claims carry the set's selector labels");
}

#[test]
fn claim_owner_refs_should_follow_the_retention_policy() {
    let p = pod(1, 'R', "new");
    let other = OwnerReference { uid: "other".into(), kind: "Thing".into(), ..Default::default() };
    let uids = |r: Option<Vec<OwnerReference>>| -> Option<Vec<String>> {
        r.map(|v| {
            let mut u: Vec<String> = v.into_iter().map(|r| r.uid).collect();
            u.sort();
            u
        })
    };
    let set_ref = {
        let mut r = controller_ref(&set(("Delete", "Retain")));
        r.controller = None;
        r
    };
    let pod_ref = OwnerReference {
        uid: "uid-1".into(),
        kind: "Pod".into(),
        name: "web-1".into(),
        ..Default::default()
    };
    // (policy, current refs, condemned, want uids or None for no change)
    let cases: Vec<RetentionCase> = vec![
        (("Retain", "Retain"), vec![], false, None),
        (("Retain", "Retain"), vec![], true, None),
        (("Delete", "Retain"), vec![], false, Some(vec!["set-uid"])),
        (("Delete", "Retain"), vec![set_ref.clone()], false, None),
        (("Retain", "Delete"), vec![], false, None),
        (("Retain", "Delete"), vec![], true, Some(vec!["uid-1"])),
        (("Delete", "Delete"), vec![set_ref.clone()], true, Some(vec!["uid-1"])),
        (("Delete", "Delete"), vec![pod_ref.clone()], false, Some(vec!["set-uid"])),
        (("Retain", "Retain"), vec![set_ref.clone(), other.clone()], false, Some(vec!["other"])),
        (("Retain", "Delete"), vec![pod_ref.clone()], false, Some(vec![])),
    ];
    for (policy, current, condemned, want) in cases {
        let got = claim_owner_refs(&current, &set(policy), &p, condemned);
        let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(uids(got), want, "{policy:?} condemned {condemned}");
    }
}

#[test]
fn status_should_count_pods_as_kubectl_rollout_status_reads_them() {
    let s = set(("Retain", "Retain"));
    let now = Timestamp::from_second(NOW).unwrap();
    let count = |pods: &[(i32, char, &str)]| {
        let pods: Vec<Pod> = pods.iter().map(|(o, st, r)| pod(*o, *st, r)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        compute_status(&s, &refs, "old", "new", None, now)
    };
    let st = count(&[(0, 'R', "old"), (1, 'R', "new"), (2, 'P', "new"), (3, 'T', "old")]);
    assert_eq!(st.replicas, 4);
    assert_eq!(st.ready_replicas, Some(3), "the terminating pod is still Ready");
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(1), "terminating pods count for no revision");
    assert_eq!(st.updated_replicas, Some(2));
    assert_eq!(st.current_revision.as_deref(), Some("old"));
    assert_eq!(st.update_revision.as_deref(), Some("new"));
    assert_eq!(st.observed_generation, Some(3));
    assert_eq!(st.collision_count, Some(0));
    // Every pod updated and Ready: the update revision becomes the current one.
    let st = count(&[(0, 'R', "new"), (1, 'R', "new")]);
    assert_eq!(st.current_revision.as_deref(), Some("new"));
    assert_eq!(st.current_replicas, Some(2));
}

#[test]
fn ordinal_of_should_accept_only_the_sets_own_names() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "web-"), None);
    assert_eq!(ordinal_of("web", "webx-1"), None);
    assert_eq!(ordinal_of("web", "web-db-1"), None);
}
