use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodSpec, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

const NOW: i64 = 1_800_000_000;

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, v, e)| Taint {
                        key: k.to_string(),
                        value: (!v.is_empty()).then(|| v.to_string()),
                        effect: e.to_string(),
                        time_added: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(op),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

fn template(selector: &[(&str, &str)], tolerations: Vec<Toleration>) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            node_selector: (!selector.is_empty())
                .then(|| selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            tolerations: Some(tolerations),
            ..Default::default()
        }),
    }
}

#[test]
fn node_fit_should_weigh_selectors_affinity_and_taints() {
    let run = NodeFit { should_run: true, should_continue_running: true };
    let keep = NodeFit { should_run: false, should_continue_running: true };
    let none = NodeFit::default();
    let cases: Vec<(&str, Node, PodTemplateSpec, NodeFit)> = vec![
        ("plain", node("a", &[], &[]), template(&[], vec![]), run),
        (
            "selector matches",
            node("a", &[("disk", "ssd")], &[]),
            template(&[("disk", "ssd")], vec![]),
            run,
        ),
        (
            "selector misses",
            node("a", &[("disk", "hdd")], &[]),
            template(&[("disk", "ssd")], vec![]),
            none,
        ),
        (
            "NoSchedule taint",
            node("a", &[], &[("dedicated", "x", "NoSchedule")]),
            template(&[], vec![]),
            keep,
        ),
        (
            "NoExecute taint",
            node("a", &[], &[("dedicated", "x", "NoExecute")]),
            template(&[], vec![]),
            none,
        ),
        (
            "PreferNoSchedule ignored",
            node("a", &[], &[("soft", "", "PreferNoSchedule")]),
            template(&[], vec![]),
            run,
        ),
        (
            "tolerated",
            node("a", &[], &[("dedicated", "x", "NoExecute")]),
            template(&[], vec![tol("dedicated", "Equal", "x", "")]),
            run,
        ),
        // The daemon defaults: cordoned, not-ready and pressured nodes still run the pod.
        (
            "unschedulable",
            node("a", &[], &[("node.kubernetes.io/unschedulable", "", "NoSchedule")]),
            template(&[], vec![]),
            run,
        ),
        (
            "not-ready",
            node("a", &[], &[("node.kubernetes.io/not-ready", "", "NoExecute")]),
            template(&[], vec![]),
            run,
        ),
        (
            "unreachable",
            node("a", &[], &[("node.kubernetes.io/unreachable", "", "NoExecute")]),
            template(&[], vec![]),
            run,
        ),
        (
            "disk-pressure",
            node("a", &[], &[("node.kubernetes.io/disk-pressure", "", "NoSchedule")]),
            template(&[], vec![]),
            run,
        ),
        (
            "network-unavailable",
            node("a", &[], &[("node.kubernetes.io/network-unavailable", "", "NoSchedule")]),
            template(&[], vec![]),
            keep,
        ),
    ];
    for (what, n, t, want) in cases {
        assert_eq!(node_fit(&n, &t), want, "{what}");
    }
}

#[test]
fn node_fit_should_honour_required_node_affinity() {
    let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
    };
    let with_terms = |terms: Vec<NodeSelectorTerm>| {
        let mut t = template(&[], vec![]);
        t.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        t
    };
    let exprs = |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
        match_expressions: Some(r),
        match_fields: None,
    };
    let fields = |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(r),
    };
    let n = node("a", &[("zone", "z1"), ("cpus", "8")], &[]);
    let cases = vec![
        (vec![exprs(vec![req("zone", "In", &["z1", "z2"])])], true),
        (vec![exprs(vec![req("zone", "NotIn", &["z1"])])], false),
        (vec![exprs(vec![req("zone", "Exists", &[]), req("gpu", "DoesNotExist", &[])])], true),
        (vec![exprs(vec![req("cpus", "Gt", &["4"])])], true),
        (vec![exprs(vec![req("cpus", "Lt", &["4"])])], false),
        // Terms are ORed; requirements within a term ANDed.
        (
            vec![
                exprs(vec![req("zone", "In", &["z9"])]),
                fields(vec![req("metadata.name", "In", &["a"])]),
            ],
            true,
        ),
        (vec![fields(vec![req("metadata.name", "In", &["b"])])], false),
        (vec![NodeSelectorTerm::default()], false),
    ];
    for (terms, want) in cases {
        let fit = node_fit(&n, &with_terms(terms.clone()));
        assert_eq!(fit.should_run, want, "{terms:?}");
    }
}

/// A daemon pod on `node`: `R` Running+Ready long ago, `r` Ready 2 s ago, `P` Pending,
/// `F` Failed, `T` terminating; `hash` its revision; `age` orders creation.
fn pod(name: &str, node: &str, s: char, hash: &str, age: i64) -> Pod {
    let since = if s == 'r' { NOW - 2 } else { NOW - 3600 };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(BTreeMap::from([(POD_REVISION_LABEL.into(), hash.into())])),
            creation_timestamp: Some(Time(Timestamp::from_second(NOW - age).unwrap())),
            deletion_timestamp: (s == 'T').then(|| Time(Timestamp::from_second(NOW).unwrap())),
            ..Default::default()
        },
        spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
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
                status: if matches!(s, 'R' | 'r' | 'T') { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(Timestamp::from_second(since).unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

const RUN: NodeFit = NodeFit { should_run: true, should_continue_running: true };
const OUT: NodeFit = NodeFit { should_run: false, should_continue_running: false };

fn layout<'a>(fits: &[(&str, NodeFit)], pods: &'a [Pod]) -> Vec<NodePods<'a>> {
    fits.iter()
        .map(|(n, fit)| NodePods {
            node: n.to_string(),
            fit: *fit,
            pods: pods
                .iter()
                .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(*n))
                .collect(),
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

#[test]
fn plan_should_put_one_pod_on_each_eligible_node() {
    let ondelete = Strategy::OnDelete;
    let pods = vec![
        pod("p-b", "b", 'R', "h1", 10),
        pod("p-c", "c", 'R', "h1", 10),
        pod("p-d1", "d", 'R', "h1", 20),
        pod("p-d2", "d", 'R', "h1", 10),
        pod("p-e", "e", 'F', "h1", 10),
        pod("p-f", "f", 'T', "h1", 10),
    ];
    let nodes =
        layout(&[("a", RUN), ("b", RUN), ("c", OUT), ("d", RUN), ("e", RUN), ("f", RUN)], &pods);
    let got = plan(&nodes, "h1", ondelete, 0, now());
    assert_eq!(got.create, vec!["a"], "a new node gets a pod; a terminating pod is waited for");
    assert_eq!(
        got.delete,
        vec!["p-c", "p-d2", "p-e"],
        "ineligible node, newer duplicate, failed pod"
    );
}

#[test]
fn plan_should_roll_within_max_unavailable() {
    let ru =
        |surge, unavail| Strategy::RollingUpdate { max_surge: surge, max_unavailable: unavail };
    let old = |n: &str| pod(&format!("old-{n}"), n, 'R', "h1", 10);
    let fits = [("a", RUN), ("b", RUN), ("c", RUN)];
    // All old and available: delete maxUnavailable of them.
    let pods = vec![old("a"), old("b"), old("c")];
    assert_eq!(plan(&layout(&fits, &pods), "h2", ru(0, 1), 0, now()).delete, vec!["old-a"]);
    assert_eq!(
        plan(&layout(&fits, &pods), "h2", ru(0, 2), 0, now()).delete,
        vec!["old-a", "old-b"]
    );
    // One node is replacing its pod (terminating): the budget is spent.
    let pods = vec![pod("old-a", "a", 'T', "h1", 10), old("b"), old("c")];
    assert_eq!(plan(&layout(&fits, &pods), "h2", ru(0, 1), 0, now()).delete, Vec::<String>::new());
    // A new pod not yet Ready counts as unavailable; an unavailable old pod goes regardless.
    let pods = vec![pod("new-a", "a", 'P', "h2", 1), pod("old-b", "b", 'P', "h1", 10), old("c")];
    let got = plan(&layout(&fits, &pods), "h2", ru(0, 1), 0, now());
    assert_eq!(got.delete, vec!["old-b"]);
    // Done: nothing to do.
    let pods = vec![
        pod("n-a", "a", 'R', "h2", 1),
        pod("n-b", "b", 'R', "h2", 1),
        pod("n-c", "c", 'R', "h2", 1),
    ];
    assert_eq!(plan(&layout(&fits, &pods), "h2", ru(0, 1), 0, now()), Plan::default());
}

#[test]
fn plan_should_surge_a_new_pod_before_removing_the_old_one() {
    let ru = Strategy::RollingUpdate { max_surge: 1, max_unavailable: 0 };
    let fits = [("a", RUN), ("b", RUN)];
    let pods = vec![pod("old-a", "a", 'R', "h1", 10), pod("old-b", "b", 'R', "h1", 10)];
    let got = plan(&layout(&fits, &pods), "h2", ru, 0, now());
    assert_eq!((got.create, got.delete), (vec!["a".to_string()], vec![]));
    // The new pod is not available yet: wait, the surge budget is in use.
    let pods = vec![
        pod("old-a", "a", 'R', "h1", 10),
        pod("new-a", "a", 'P', "h2", 1),
        pod("old-b", "b", 'R', "h1", 10),
    ];
    let got = plan(&layout(&fits, &pods), "h2", ru, 0, now());
    assert_eq!((got.create, got.delete), (vec![], vec![]));
    // Available: the old pod goes, and the next node surges.
    let pods = vec![
        pod("old-a", "a", 'R', "h1", 10),
        pod("new-a", "a", 'R', "h2", 1),
        pod("old-b", "b", 'R', "h1", 10),
    ];
    let got = plan(&layout(&fits, &pods), "h2", ru, 0, now());
    assert_eq!((got.create, got.delete), (vec!["b".to_string()], vec!["old-a".to_string()]));
    // minReadySeconds: Ready 2 s ago is not yet available for 10.
    let pods = vec![
        pod("old-a", "a", 'R', "h1", 10),
        pod("new-a", "a", 'r', "h2", 1),
        pod("old-b", "b", 'R', "h1", 10),
    ];
    let got = plan(&layout(&fits, &pods), "h2", ru, 10, now());
    assert_eq!((got.create, got.delete), (vec![], vec![]));
}

fn ds(strategy: Option<DaemonSetUpdateStrategy>) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("kube-system".into()),
            uid: Some("ds-uid".into()),
            generation: Some(4),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            template: template(
                &[],
                vec![tol("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule")],
            ),
            update_strategy: strategy,
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn strategy_should_resolve_percentages_like_kubernetes() {
    let rolling = |surge: Option<IntOrString>, unavail: Option<IntOrString>| {
        ds(Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: surge,
                max_unavailable: unavail,
            }),
        }))
    };
    let pct = |s: &str| Some(IntOrString::String(s.into()));
    let cases = [
        (rolling(None, None), 10, (0, 1)),
        (rolling(Some(IntOrString::Int(0)), pct("25%")), 10, (0, 2)),
        (rolling(pct("25%"), Some(IntOrString::Int(0))), 10, (3, 0)),
        (rolling(Some(IntOrString::Int(0)), pct("10%")), 5, (0, 1)),
        (rolling(None, Some(IntOrString::Int(3))), 10, (0, 3)),
    ];
    for (d, desired, (surge, unavail)) in cases {
        assert_eq!(
            Strategy::of(&d, desired),
            Strategy::RollingUpdate { max_surge: surge, max_unavailable: unavail },
            "{:?}",
            d.spec.unwrap().update_strategy
        );
    }
    let on_delete =
        ds(Some(DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None }));
    assert_eq!(Strategy::of(&on_delete, 3), Strategy::OnDelete);
}

#[test]
fn status_should_count_each_node_once() {
    let pods = vec![
        pod("a", "a", 'R', "h2", 5),
        pod("b-old", "b", 'R', "h1", 20),
        pod("b-new", "b", 'P', "h2", 1),
        pod("c", "c", 'P', "h2", 5),
        pod("x", "x", 'R', "h2", 5),
    ];
    let nodes = layout(&[("a", RUN), ("b", RUN), ("c", RUN), ("d", RUN), ("x", OUT)], &pods);
    let st = compute_status(&ds(None), &nodes, "h2", Some(1), now());
    assert_eq!(st.desired_number_scheduled, 4);
    assert_eq!(st.current_number_scheduled, 3);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 2, "b counts its oldest pod, which is Ready");
    assert_eq!(st.number_available, Some(2));
    assert_eq!(st.number_unavailable, Some(2));
    assert_eq!(st.updated_number_scheduled, Some(2), "a and c; b's oldest pod is old");
    assert_eq!(st.observed_generation, Some(4));
    assert_eq!(st.collision_count, Some(1));
}

#[test]
fn new_pod_should_be_pinned_to_its_node_with_the_daemon_tolerations() {
    let p = new_pod(&ds(None), "h2", "node-1");
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(p.labels()[POD_REVISION_LABEL], "h2");
    assert_eq!(p.labels()[TEMPLATE_GENERATION_LABEL], "4");
    let spec = p.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-1"));
    let terms = spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!((field.key.as_str(), field.operator.as_str()), ("metadata.name", "In"));
    assert_eq!(field.values, Some(vec!["node-1".to_string()]));
    let tols = spec.tolerations.unwrap();
    assert_eq!(tols.len(), 6, "defaults, the template's own duplicate replaced: {tols:?}");
    for key in [
        "not-ready",
        "unreachable",
        "disk-pressure",
        "memory-pressure",
        "pid-pressure",
        "unschedulable",
    ] {
        let key = format!("node.kubernetes.io/{key}");
        assert!(tols.iter().any(|t| t.key.as_deref() == Some(&key)), "{key}");
    }
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("DaemonSet", Some(true)));
}
