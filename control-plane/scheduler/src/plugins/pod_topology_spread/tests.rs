//! Cases modelled on Kubernetes' podtopologyspread `filtering_test.go`
//! (`TestSingleConstraint`, `TestMultipleConstraints`, the minDomains, nodeAffinityPolicy,
//! nodeTaintsPolicy and matchLabelKeys cases, `TestPreFilterStateAddPod`/`RemovePod`) and
//! `scoring_test.go` (`TestPodTopologySpreadScore`), plus a check that counts kept between
//! cycles equal counts made from scratch.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::framework::Code;
use crate::plugins::topology::testing::*;

// ---------------------------------------------------------------------------------------
// Builders

fn spread(
    max_skew: i32,
    key: &str,
    when: &str,
    selector: Option<LabelSelector>,
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: key.to_string(),
        when_unsatisfiable: when.to_string(),
        label_selector: selector,
        ..Default::default()
    }
}

fn hard(max_skew: i32, key: &str, selector: LabelSelector) -> TopologySpreadConstraint {
    spread(max_skew, key, DO_NOT_SCHEDULE, Some(selector))
}

fn soft(max_skew: i32, key: &str, selector: Option<LabelSelector>) -> TopologySpreadConstraint {
    spread(max_skew, key, SCHEDULE_ANYWAY, selector)
}

fn with_spread(mut p: Pod, constraints: Vec<TopologySpreadConstraint>) -> Pod {
    p.spec.as_mut().expect("spec").topology_spread_constraints = Some(constraints);
    p
}

fn foo() -> LabelSelector {
    exists("foo")
}

fn bar() -> LabelSelector {
    exists("bar")
}

/// The incoming pod, labelled `foo`.
fn incoming(constraints: Vec<TopologySpreadConstraint>) -> Pod {
    with_spread(pod("p", &[("foo", "")], ""), constraints)
}

/// `n` pods labelled `foo` on `node`, named after it.
fn foos(node: &str, n: usize) -> Vec<Pod> {
    (0..n).map(|i| pod(&format!("{node}-{i}"), &[("foo", "")], node)).collect()
}

/// Nodes node-a, node-b (zone1) and node-x, node-y (zone2), with a `node` label.
fn four_nodes() -> Vec<Node> {
    ["node-a", "node-b", "node-x", "node-y"]
        .into_iter()
        .enumerate()
        .map(|(i, n)| node(n, &[("zone", if i < 2 { "zone1" } else { "zone2" }), ("node", n)]))
        .collect()
}

fn info(p: Pod) -> PodInfo {
    PodInfo::new(Arc::new(p))
}

// ---------------------------------------------------------------------------------------
// Filter

const S: Code = Code::Success;
const U: Code = Code::Unschedulable;
const UU: Code = Code::UnschedulableAndUnresolvable;

struct FilterCase {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    want: Vec<Code>,
}

fn run_filter_cases(cases: Vec<FilterCase>) {
    let shared = PodTopologySpread::new();
    for c in cases {
        let snap = snapshot(c.nodes, c.pods);
        let pod = info(c.pod);
        for (round, pl) in [&PodTopologySpread::new(), &shared, &shared].into_iter().enumerate() {
            let mut state = CycleState::default();
            let (_, status) = pl.pre_filter(&mut state, &pod, &snap);
            assert!(status.is_success(), "{} (round {round}): pre-filter {status:?}", c.name);
            let got: Vec<Code> =
                snap.nodes.iter().map(|n| pl.filter(&state, &pod, n).code).collect();
            assert_eq!(got, c.want, "{} (round {round})", c.name);
            for n in &snap.nodes {
                let s = pl.filter(&state, &pod, n);
                let reason = match s.code {
                    Code::Unschedulable => ERR_CONSTRAINTS_NOT_MATCH,
                    Code::UnschedulableAndUnresolvable => ERR_NODE_LABEL_NOT_MATCH,
                    _ => continue,
                };
                assert_eq!(s.reasons.as_slice(), [reason], "{} on {}", c.name, n.name);
            }
        }
    }
}

#[test]
fn pod_topology_spread_should_filter_one_constraint_like_kubernetes() {
    let zone = || vec![hard(1, "zone", foo())];
    let by_node = |skew| vec![hard(skew, "node", foo())];
    let spread_2_1_0_3 = || [foos("node-a", 2), foos("node-b", 1), foos("node-y", 3)].concat();
    let cases = vec![
        FilterCase {
            name: "no existing pods",
            pod: incoming(zone()),
            nodes: four_nodes(),
            pods: vec![],
            want: vec![S, S, S, S],
        },
        FilterCase {
            name: "no existing pods, incoming pod doesn't match itself",
            pod: incoming(vec![hard(1, "zone", exists("bar"))]),
            nodes: four_nodes(),
            pods: vec![],
            want: vec![S, S, S, S],
        },
        FilterCase {
            name: "existing pods in a different namespace do not count",
            pod: incoming(zone()),
            nodes: four_nodes(),
            pods: vec![
                in_namespace(pod("p-a1", &[("foo", "")], "node-a"), "ns1"),
                in_namespace(pod("p-b1", &[("foo", "")], "node-a"), "ns2"),
                pod("p-x1", &[("foo", "")], "node-x"),
                pod("p-y1", &[("foo", "")], "node-y"),
            ],
            want: vec![S, S, U, U],
        },
        FilterCase {
            name: "pods spread across zones as 3/3, all nodes fit",
            pod: incoming(zone()),
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            want: vec![S, S, S, S],
        },
        FilterCase {
            name: "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
            pod: incoming(zone()),
            nodes: vec![
                node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                node("node-b", &[("zon", "zone1"), ("node", "node-b")]),
                node("node-x", &[("zone", "zone2"), ("node", "node-x")]),
                node("node-y", &[("zone", "zone2"), ("node", "node-y")]),
            ],
            pods: [foos("node-a", 1), foos("node-b", 1), foos("node-x", 1), foos("node-y", 1)]
                .concat(),
            want: vec![S, UU, U, U],
        },
        FilterCase {
            name: "pod cannot be scheduled as all nodes don't have label 'rack'",
            pod: incoming(vec![hard(1, "rack", foo())]),
            nodes: vec![
                node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                node("node-x", &[("zone", "zone2"), ("node", "node-x")]),
            ],
            pods: vec![],
            want: vec![UU, UU],
        },
        FilterCase {
            name: "pods spread across nodes as 2/1/0/3, only node-x fits",
            pod: incoming(by_node(1)),
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            want: vec![U, U, S, U],
        },
        FilterCase {
            name: "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
            pod: incoming(by_node(2)),
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            want: vec![U, S, S, U],
        },
        FilterCase {
            name: "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
            pod: with_spread(pod("p", &[("bar", "")], ""), by_node(1)),
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            want: vec![U, S, S, U],
        },
        FilterCase {
            name: "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
            pod: {
                let mut p = incoming(by_node(1));
                p.spec.as_mut().expect("spec").affinity =
                    Some(node_affinity_in("node", &["node-a", "node-y"]));
                p
            },
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            // node-b and node-x would be rejected by NodeAffinity, not by this plugin.
            want: vec![S, S, S, U],
        },
        FilterCase {
            name: "terminating Pods should be excluded",
            pod: incoming(by_node(1)),
            nodes: vec![
                node("node-a", &[("node", "node-a")]),
                node("node-b", &[("node", "node-b")]),
            ],
            pods: vec![
                terminating(pod("p-a", &[("foo", "")], "node-a")),
                pod("p-b", &[("foo", "")], "node-b"),
            ],
            want: vec![S, U],
        },
        FilterCase {
            name: "an empty selector counts no pod, so every node fits",
            pod: incoming(vec![hard(1, "node", LabelSelector::default())]),
            nodes: four_nodes(),
            pods: spread_2_1_0_3(),
            want: vec![S, S, S, S],
        },
    ];
    run_filter_cases(cases);
}

fn node_affinity_in(key: &str, values: &[&str]) -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: key.to_string(),
                        operator: "In".into(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    }]),
                    match_fields: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn pod_topology_spread_should_filter_several_constraints_like_kubernetes() {
    let cases = vec![
        FilterCase {
            name: "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
            pod: incoming(vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
            nodes: four_nodes(),
            pods: [foos("node-a", 2), foos("node-b", 1), foos("node-y", 3)].concat(),
            want: vec![U, U, S, U],
        },
        FilterCase {
            name: "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
            pod: incoming(vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
            nodes: four_nodes(),
            pods: [foos("node-a", 2), foos("node-b", 1), foos("node-y", 4)].concat(),
            want: vec![U, U, U, U],
        },
        FilterCase {
            name: "Constraints hold different labelSelectors, spreads = [1/0, 1/0/0/1]",
            pod: with_spread(
                pod("p", &[("foo", ""), ("bar", "")], ""),
                vec![hard(1, "zone", foo()), hard(1, "node", bar())],
            ),
            nodes: four_nodes(),
            pods: vec![
                pod("p-a1", &[("foo", "")], "node-a"),
                pod("p-y1", &[("bar", "")], "node-y"),
            ],
            want: vec![U, U, S, U],
        },
        FilterCase {
            name: "Constraints hold different labelSelectors, spreads = [1/0, 0/0/1/1]",
            pod: with_spread(
                pod("p", &[("foo", ""), ("bar", "")], ""),
                vec![hard(1, "zone", foo()), hard(1, "node", bar())],
            ),
            nodes: four_nodes(),
            pods: vec![
                pod("p-a1", &[("foo", "")], "node-a"),
                pod("p-x1", &[("bar", "")], "node-x"),
                pod("p-y1", &[("bar", "")], "node-y"),
            ],
            // zone1 has one foo pod, zone2 none: only zone2 fits; there node-x and node-y
            // already run a bar pod while node-a and node-b do not.
            want: vec![U, U, U, U],
        },
        FilterCase {
            name: "one node lacks the second constraint's key",
            pod: incoming(vec![hard(1, "zone", foo()), hard(1, "rack", foo())]),
            nodes: vec![
                node("node-a", &[("zone", "zone1"), ("rack", "r1")]),
                node("node-b", &[("zone", "zone1")]),
                node("node-x", &[("zone", "zone2"), ("rack", "r2")]),
            ],
            pods: foos("node-b", 3),
            // node-b counts for neither constraint, as it lacks "rack".
            want: vec![S, UU, S],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn pod_topology_spread_should_apply_min_domains() {
    let three_nodes = || {
        ["node-a", "node-b", "node-c"]
            .into_iter()
            .map(|n| {
                node(n, &[("node", n), ("zone", if n == "node-c" { "zone2" } else { "zone1" })])
            })
            .collect::<Vec<_>>()
    };
    let min_domains = |skew, key: &str, min| {
        let mut c = hard(skew, key, foo());
        c.min_domains = Some(min);
        c
    };
    let cases = vec![
        FilterCase {
            name: "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < minDomains, then the third node fits",
            pod: incoming(vec![min_domains(2, "node", 4)]),
            nodes: three_nodes(),
            pods: [foos("node-a", 2), foos("node-b", 2), foos("node-c", 1)].concat(),
            want: vec![U, U, S],
        },
        FilterCase {
            name: "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > minDomains, then the all nodes fit",
            pod: incoming(vec![min_domains(2, "node", 2)]),
            nodes: three_nodes(),
            pods: [foos("node-a", 2), foos("node-b", 2), foos("node-c", 1)].concat(),
            want: vec![S, S, S],
        },
        FilterCase {
            name: "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, then the third node fits",
            pod: incoming(vec![min_domains(2, "zone", 3)]),
            nodes: three_nodes(),
            pods: [foos("node-a", 1), foos("node-b", 1), foos("node-c", 1)].concat(),
            want: vec![U, U, S],
        },
        FilterCase {
            name: "pods spread across zone as 2/1, maxSkew is 2 and the number of domains == minDomains, then all nodes fit",
            pod: incoming(vec![min_domains(2, "zone", 2)]),
            nodes: three_nodes(),
            pods: [foos("node-a", 1), foos("node-b", 1), foos("node-c", 1)].concat(),
            want: vec![S, S, S],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn pod_topology_spread_should_apply_node_inclusion_policies() {
    let with_policies = |affinity: Option<&str>, taints: Option<&str>| {
        let mut c = hard(1, "zone", foo());
        c.node_affinity_policy = affinity.map(String::from);
        c.node_taints_policy = taints.map(String::from);
        c
    };
    let ssd = |mut p: Pod| {
        p.spec.as_mut().expect("spec").node_selector =
            Some(labels(&[("disk", "ssd")]).into_iter().collect());
        p
    };
    let disk_nodes = || {
        vec![
            node("node-a", &[("zone", "zone1"), ("disk", "ssd")]),
            node("node-b", &[("zone", "zone1")]),
            node("node-x", &[("zone", "zone2"), ("disk", "ssd")]),
            node("node-y", &[("zone", "zone2")]),
        ]
    };
    let disk_pods = || [foos("node-a", 1), foos("node-y", 2)].concat();
    let tainted = || {
        let mut x = node("node-x", &[("zone", "zone2")]);
        x.spec.as_mut().expect("spec").taints = Some(vec![Taint {
            key: "foo".into(),
            value: Some("bar".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
        vec![node("node-a", &[("zone", "zone1")]), x]
    };
    let tolerating = |mut p: Pod| {
        p.spec.as_mut().expect("spec").tolerations = Some(vec![Toleration {
            key: Some("foo".into()),
            operator: Some("Equal".into()),
            value: Some("bar".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]);
        p
    };
    let cases = vec![
        FilterCase {
            name: "NodeAffinityPolicy honored by default: only ssd nodes count, zones 1/0",
            pod: ssd(incoming(vec![with_policies(None, None)])),
            nodes: disk_nodes(),
            pods: disk_pods(),
            want: vec![U, U, S, S],
        },
        FilterCase {
            name: "NodeAffinityPolicy ignored: every node counts, zones 1/2",
            pod: ssd(incoming(vec![with_policies(Some("Ignore"), None)])),
            nodes: disk_nodes(),
            pods: disk_pods(),
            want: vec![S, S, U, U],
        },
        FilterCase {
            name: "NodeTaintsPolicy ignored by default: the tainted node's zone counts as 0",
            pod: incoming(vec![with_policies(None, None)]),
            nodes: tainted(),
            pods: foos("node-a", 1),
            want: vec![U, S],
        },
        FilterCase {
            name: "NodeTaintsPolicy honored: a node with an untolerated taint is not a domain",
            pod: incoming(vec![with_policies(None, Some("Honor"))]),
            nodes: tainted(),
            pods: foos("node-a", 1),
            want: vec![S, S],
        },
        FilterCase {
            name: "NodeTaintsPolicy honored: a tolerated taint keeps the node",
            pod: tolerating(incoming(vec![with_policies(None, Some("Honor"))])),
            nodes: tainted(),
            pods: foos("node-a", 1),
            want: vec![U, S],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn pod_topology_spread_should_merge_match_label_keys() {
    let nodes = || vec![node("node-a", &[("zone", "zone1")]), node("node-x", &[("zone", "zone2")])];
    let pods = || {
        vec![
            pod("old-1", &[("foo", ""), ("pod-template-hash", "v1")], "node-a"),
            pod("old-2", &[("foo", ""), ("pod-template-hash", "v1")], "node-a"),
            pod("new-1", &[("foo", ""), ("pod-template-hash", "v2")], "node-x"),
        ]
    };
    let constraint = |keys: &[&str]| {
        let mut c = hard(1, "zone", foo());
        c.match_label_keys = Some(keys.iter().map(|k| k.to_string()).collect());
        c
    };
    let v2 = |c| with_spread(pod("p", &[("foo", ""), ("pod-template-hash", "v2")], ""), vec![c]);
    let cases = vec![
        FilterCase {
            name: "without matchLabelKeys every revision counts: zones 2/1",
            pod: v2(constraint(&[])),
            nodes: nodes(),
            pods: pods(),
            want: vec![U, S],
        },
        FilterCase {
            name: "matchLabelKeys pod-template-hash: only the pod's revision counts, zones 0/1",
            pod: v2(constraint(&["pod-template-hash"])),
            nodes: nodes(),
            pods: pods(),
            want: vec![S, U],
        },
        FilterCase {
            name: "matchLabelKeys naming a label the pod lacks changes nothing",
            pod: v2(constraint(&["missing"])),
            nodes: nodes(),
            pods: pods(),
            want: vec![U, S],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn pod_topology_spread_pre_filter_should_skip_without_hard_constraints() {
    let pl = PodTopologySpread::new();
    let snap = snapshot(four_nodes(), vec![]);
    for (name, p) in [
        ("no constraints", pod("p", &[("foo", "")], "")),
        ("only ScheduleAnyway", incoming(vec![soft(1, "zone", Some(foo()))])),
    ] {
        let (_, status) = pl.pre_filter(&mut CycleState::default(), &info(p), &snap);
        assert_eq!(status.code, Code::Skip, "{name}");
    }
    let status = pl.filter(&CycleState::default(), &info(incoming(vec![])), &snap.nodes[0]);
    assert_eq!(
        status.message(),
        "error reading \"PreFilterPodTopologySpread\" from cycleState: not found"
    );
}

// ---------------------------------------------------------------------------------------
// add_pod / remove_pod

fn filter_counts(state: &CycleState) -> Vec<(BTreeMap<String, i64>, i64)> {
    let s = state.read::<PreFilterState>(PRE_FILTER_KEY).expect("state");
    s.constraints
        .iter()
        .map(|fc| {
            let ids = crate::plugins::topology::label_interner().values(fc.key).clone();
            let counts = ids
                .entries()
                .into_iter()
                .filter(|(_, id)| fc.domains.nodes.get(*id as usize).is_some_and(|n| *n > 0))
                .map(|(v, id)| (v, fc.domains.pods[id as usize]))
                .collect();
            (counts, fc.min)
        })
        .collect()
}

fn domain_counts(entries: &[(&str, i64)], min: i64) -> (BTreeMap<String, i64>, i64) {
    (entries.iter().map(|(v, n)| (v.to_string(), *n)).collect(), min)
}

#[test]
fn pod_topology_spread_add_and_remove_pod_should_update_counts() {
    let nodes = || {
        vec![
            node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
            node("node-b", &[("zone", "zone1"), ("node", "node-b")]),
            node("node-x", &[("zone", "zone2"), ("node", "node-x")]),
        ]
    };
    let snap = snapshot(nodes(), [foos("node-a", 1), foos("node-x", 1)].concat());
    let pl = PodTopologySpread::new();
    let p = info(incoming(vec![hard(1, "zone", foo()), hard(1, "node", foo())]));
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, &p, &snap).1.is_success());
    let before = filter_counts(&state);
    assert_eq!(
        before,
        vec![
            domain_counts(&[("zone1", 1), ("zone2", 1)], 1),
            domain_counts(&[("node-a", 1), ("node-b", 0), ("node-x", 1)], 0),
        ]
    );

    let node_b = snap.get("node-b").expect("node-b");
    let added = info(pod("new", &[("foo", "")], "node-b"));
    assert!(pl.add_pod(&mut state, &p, &added, node_b, &snap).is_success());
    assert_eq!(
        filter_counts(&state),
        vec![
            domain_counts(&[("zone1", 2), ("zone2", 1)], 1),
            domain_counts(&[("node-a", 1), ("node-b", 1), ("node-x", 1)], 1),
        ],
        "node b and zone1 gain a pod; node b no longer holds the minimum"
    );
    let got: Vec<Code> = snap.nodes.iter().map(|n| pl.filter(&state, &p, n).code).collect();
    assert_eq!(got, vec![U, U, S]);

    // Pods of other namespaces and pods the selector does not match change nothing.
    let other_ns = info(in_namespace(pod("other", &[("foo", "")], "node-b"), "ns1"));
    let unmatched = info(pod("other", &[("bar", "")], "node-b"));
    let after_add = filter_counts(&state);
    for p2 in [&other_ns, &unmatched] {
        assert!(pl.add_pod(&mut state, &p, p2, node_b, &snap).is_success());
        assert_eq!(filter_counts(&state), after_add);
    }

    let node_x = snap.get("node-x").expect("node-x");
    let victim = node_x.pods[0].clone();
    assert!(pl.remove_pod(&mut state, &p, &victim, node_x, &snap).is_success());
    assert!(pl.remove_pod(&mut state, &p, &added, node_b, &snap).is_success());
    assert_eq!(
        filter_counts(&state),
        vec![
            domain_counts(&[("zone1", 1), ("zone2", 0)], 0),
            domain_counts(&[("node-a", 1), ("node-b", 0), ("node-x", 0)], 0),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Score

struct ScoreCase {
    name: &'static str,
    pod: Pod,
    /// Nodes that passed the filters, scored in this order.
    nodes: Vec<Node>,
    /// Nodes in the snapshot that failed the filters.
    failed: Vec<Node>,
    pods: Vec<Pod>,
    want: Vec<i64>,
}

fn hostname(name: &str) -> Node {
    node(name, &[(LABEL_HOSTNAME, name)])
}

fn zone_host(name: &str, zone: &str) -> Node {
    node(name, &[("zone", zone), (LABEL_HOSTNAME, name)])
}

fn run_score_cases(cases: Vec<ScoreCase>) {
    let shared = PodTopologySpread::new();
    for c in cases {
        let scored: Vec<String> =
            c.nodes.iter().map(|n| n.metadata.name.clone().unwrap_or_default()).collect();
        let snap = snapshot([c.nodes, c.failed].concat(), c.pods);
        let filtered: Vec<Arc<NodeInfo>> =
            scored.iter().filter_map(|n| snap.get(n).cloned()).collect();
        let pod = info(c.pod);
        for (round, pl) in [&PodTopologySpread::new(), &shared].into_iter().enumerate() {
            let mut state = CycleState::default();
            let status = pl.pre_score(&mut state, &pod, &filtered, &snap);
            assert!(status.is_success(), "{} (round {round}): pre-score {status:?}", c.name);
            let mut scores: Vec<NodeScore> = filtered
                .iter()
                .map(|n| NodeScore { name: n.name.clone(), score: pl.score(&state, &pod, n).0 })
                .collect();
            assert!(pl.normalize(&state, &pod, &mut scores).is_success());
            let got: Vec<i64> = scores.iter().map(|s| s.score).collect();
            assert_eq!(got, c.want, "{} (round {round})", c.name);
        }
    }
}

#[test]
fn pod_topology_spread_should_score_like_kubernetes() {
    let on_host = |skew| vec![soft(skew, LABEL_HOSTNAME, Some(foo()))];
    let four = || ["node-a", "node-b", "node-c", "node-d"].map(hostname).to_vec();
    let spread_2_1_0_3 = || [foos("node-a", 2), foos("node-b", 1), foos("node-d", 3)].concat();
    let spread_4_3_2_1 =
        || [foos("node-a", 4), foos("node-b", 3), foos("node-c", 2), foos("node-d", 1)].concat();
    let spread_4_2_1_3 =
        || [foos("node-a", 4), foos("node-b", 2), foos("node-x", 1), foos("node-y", 3)].concat();
    let cases = vec![
        ScoreCase {
            name: "one constraint on node, no existing pods",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a"), hostname("node-b")],
            failed: vec![],
            pods: vec![],
            want: vec![100, 100],
        },
        ScoreCase {
            name: "one constraint on node, only one node is candidate",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a")],
            failed: vec![hostname("node-b")],
            pods: [foos("node-a", 2), foos("node-b", 1)].concat(),
            want: vec![100],
        },
        ScoreCase {
            name: "one constraint on node, all nodes have the same number of matching pods",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a"), hostname("node-b")],
            failed: vec![],
            pods: [foos("node-a", 1), foos("node-b", 1)].concat(),
            want: vec![100, 100],
        },
        ScoreCase {
            name: "one constraint on node, all 4 nodes are candidates",
            pod: incoming(on_host(1)),
            nodes: four(),
            failed: vec![],
            pods: spread_2_1_0_3(),
            want: vec![20, 60, 100, 0],
        },
        ScoreCase {
            name: "one constraint on node, null selector",
            pod: incoming(vec![soft(1, LABEL_HOSTNAME, None)]),
            nodes: four(),
            failed: vec![],
            pods: spread_2_1_0_3(),
            want: vec![100, 100, 100, 100],
        },
        ScoreCase {
            name: "one constraint on node, all 4 nodes are candidates, maxSkew=2",
            pod: incoming(on_host(2)),
            nodes: four(),
            failed: vec![],
            pods: spread_2_1_0_3(),
            want: vec![33, 66, 100, 16],
        },
        ScoreCase {
            name: "one constraint on node, all 4 nodes are candidates, maxSkew=3",
            pod: incoming(on_host(3)),
            nodes: four(),
            failed: vec![],
            pods: spread_4_3_2_1(),
            want: vec![44, 66, 77, 100],
        },
        ScoreCase {
            name: "one constraint on node, 3 out of 4 nodes are candidates",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a"), hostname("node-b"), hostname("node-x")],
            failed: vec![hostname("node-y")],
            pods: spread_4_2_1_3(),
            want: vec![33, 83, 100],
        },
        ScoreCase {
            name: "one constraint on node, 3 out of 4 nodes are candidates, one node doesn't match topology key",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a"), node("node-b", &[("n", "node-b")]), hostname("node-x")],
            failed: vec![hostname("node-y")],
            pods: spread_4_2_1_3(),
            want: vec![16, 0, 100],
        },
        ScoreCase {
            name: "one constraint on zone, 3 out of 4 nodes are candidates",
            pod: incoming(vec![soft(1, "zone", Some(foo()))]),
            nodes: vec![
                zone_host("node-a", "zone1"),
                zone_host("node-b", "zone1"),
                zone_host("node-x", "zone2"),
            ],
            failed: vec![zone_host("node-y", "zone2")],
            pods: spread_4_2_1_3(),
            want: vec![75, 75, 100],
        },
        ScoreCase {
            name: "two Constraints on zone and node, 2 out of 4 nodes are candidates",
            pod: incoming(vec![soft(1, "zone", Some(foo())), soft(1, LABEL_HOSTNAME, Some(foo()))]),
            nodes: vec![zone_host("node-a", "zone1"), zone_host("node-x", "zone2")],
            failed: vec![zone_host("node-b", "zone1"), zone_host("node-y", "zone2")],
            pods: [foos("node-a", 2), foos("node-b", 1), foos("node-x", 2), foos("node-y", 4)]
                .concat(),
            want: vec![100, 63],
        },
        ScoreCase {
            name: "two Constraints on zone and node, with different labelSelectors",
            pod: with_spread(
                pod("p", &[("foo", ""), ("bar", "")], ""),
                vec![soft(1, "zone", Some(foo())), soft(1, LABEL_HOSTNAME, Some(bar()))],
            ),
            nodes: vec![
                zone_host("node-a", "zone1"),
                zone_host("node-b", "zone1"),
                zone_host("node-x", "zone2"),
                zone_host("node-y", "zone2"),
            ],
            failed: vec![],
            pods: vec![
                pod("p-a1", &[("foo", "")], "node-a"),
                pod("p-b1", &[("foo", ""), ("bar", "")], "node-b"),
                pod("p-y1", &[("foo", "")], "node-y"),
                pod("p-y2", &[("bar", "")], "node-y"),
            ],
            want: vec![60, 20, 100, 60],
        },
        ScoreCase {
            name: "two Constraints on zone and node, with different labelSelectors, some nodes have 0 pods",
            pod: with_spread(
                pod("p", &[("foo", ""), ("bar", "")], ""),
                vec![soft(1, "zone", Some(foo())), soft(1, LABEL_HOSTNAME, Some(bar()))],
            ),
            nodes: vec![
                zone_host("node-a", "zone1"),
                zone_host("node-b", "zone1"),
                zone_host("node-x", "zone2"),
                zone_host("node-y", "zone2"),
            ],
            failed: vec![],
            pods: vec![
                pod("p-b1", &[("bar", "")], "node-b"),
                pod("p-x1", &[("foo", "")], "node-x"),
                pod("p-y1", &[("foo", ""), ("bar", "")], "node-y"),
            ],
            want: vec![100, 60, 40, 0],
        },
        ScoreCase {
            name: "terminating pods and pods of other namespaces are not counted",
            pod: incoming(on_host(1)),
            nodes: vec![hostname("node-a"), hostname("node-b")],
            failed: vec![],
            pods: vec![
                terminating(pod("t", &[("foo", "")], "node-a")),
                in_namespace(pod("o", &[("foo", "")], "node-a"), "ns1"),
                pod("b", &[("foo", "")], "node-b"),
            ],
            want: vec![100, 0],
        },
    ];
    run_score_cases(cases);
}

#[test]
fn pod_topology_spread_pre_score_should_skip_without_soft_constraints() {
    let pl = PodTopologySpread::new();
    let snap = snapshot(four_nodes(), vec![]);
    let p = info(incoming(vec![hard(1, "zone", foo())]));
    assert_eq!(pl.pre_score(&mut CycleState::default(), &p, &snap.nodes, &snap).code, Code::Skip);
}

#[test]
fn pod_topology_spread_should_register_pod_and_node_events() {
    let events = PodTopologySpread::new().events();
    for resource in [Resource::Pod, Resource::Node] {
        for action in [Action::Add, Action::Update, Action::Delete] {
            assert!(
                events.contains(&ClusterEvent::new(resource, action)),
                "{resource:?} {action:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Counts kept between cycles

/// A small deterministic generator for randomized clusters.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Matching pods per domain of `c`, over the nodes with all of `all`'s keys that `c` counts.
fn reference_counts<'a>(
    pod: &PodInfo,
    c: &Constraint,
    all: &[Constraint],
    snap: &'a Snapshot,
) -> BTreeMap<&'a str, i64> {
    let mut counts = BTreeMap::new();
    for n in &snap.nodes {
        if !has_all_keys(n, all) || !Inclusion::new(pod, n).includes(c) {
            continue;
        }
        let n: &'a NodeInfo = n;
        *counts.entry(n.labels[&c.topology_key].as_str()).or_default() +=
            c.count_on(n, &pod.namespace);
    }
    counts
}

/// Kubernetes' filter computed the slow way, per node.
fn reference_filter(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Status {
    let all = constraints(pod, DO_NOT_SCHEDULE);
    for c in &all {
        let Some(value) = node.labels.get(&c.topology_key) else {
            return Status::unresolvable(ERR_NODE_LABEL_NOT_MATCH);
        };
        let counts = reference_counts(pod, c, &all, snap);
        let min = if (counts.len() as i64) < c.min_domains {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        let here = counts.get(value.as_str()).copied().unwrap_or(0);
        if here + i64::from(c.matches(pod)) - min > c.max_skew {
            return Status::unschedulable(ERR_CONSTRAINTS_NOT_MATCH);
        }
    }
    Status::success()
}

/// Kubernetes' normalized scores computed the slow way (all 0 without soft constraints).
fn reference_scores(pod: &PodInfo, snap: &Snapshot) -> Vec<i64> {
    let all = constraints(pod, SCHEDULE_ANYWAY);
    if all.is_empty() {
        return vec![0; snap.nodes.len()];
    }
    let ignored: Vec<bool> = snap.nodes.iter().map(|n| !has_all_keys(n, &all)).collect();
    let scored: Vec<&Arc<NodeInfo>> =
        snap.nodes.iter().zip(&ignored).filter(|(_, i)| !**i).map(|(n, _)| n).collect();
    let raw: Vec<i64> = snap
        .nodes
        .iter()
        .zip(&ignored)
        .map(|(node, ignored)| {
            if *ignored {
                return 0;
            }
            let mut score = 0f64;
            for c in &all {
                let value = &node.labels[&c.topology_key];
                let (count, size) = if c.topology_key == LABEL_HOSTNAME {
                    (c.count_on(node, &pod.namespace), scored.len())
                } else {
                    let domains: HashSet<&str> =
                        scored.iter().map(|n| n.labels[&c.topology_key].as_str()).collect();
                    let counts = reference_counts(pod, c, &all, snap);
                    (counts.get(value.as_str()).copied().unwrap_or(0), domains.len())
                };
                score += count as f64 * ((size + 2) as f64).ln() + (c.max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();
    let counted: Vec<i64> =
        raw.iter().zip(&ignored).filter(|(_, i)| !**i).map(|(s, _)| *s).collect();
    let (min, max) = (
        counted.iter().copied().min().unwrap_or(0),
        counted.iter().copied().max().unwrap_or(0).max(0),
    );
    raw.iter()
        .zip(&ignored)
        .map(|(s, ignored)| match (ignored, max) {
            (true, _) => 0,
            (false, 0) => 100,
            _ => 100 * (max + min - s) / max,
        })
        .collect()
}

/// Filter statuses (all success when pre-filter skips) and normalized scores (all 0 when
/// pre-score skips), every node being a candidate.
fn decisions(pl: &PodTopologySpread, pod: &PodInfo, snap: &Snapshot) -> (Vec<Status>, Vec<i64>) {
    let mut state = CycleState::default();
    let (_, pre) = pl.pre_filter(&mut state, pod, snap);
    let statuses = snap
        .nodes
        .iter()
        .map(|n| if pre.is_skip() { Status::success() } else { pl.filter(&state, pod, n) })
        .collect();
    let mut scores: Vec<NodeScore> =
        snap.nodes.iter().map(|n| NodeScore { name: n.name.clone(), score: 0 }).collect();
    if pl.pre_score(&mut state, pod, &snap.nodes, snap).is_success() {
        for (s, n) in scores.iter_mut().zip(&snap.nodes) {
            s.score = pl.score(&state, pod, n).0;
        }
        let _ = pl.normalize(&state, pod, &mut scores);
    }
    (statuses, scores.iter().map(|s| s.score).collect())
}

fn random_pod(rng: &mut Rng, name: &str) -> Pod {
    let apps = ["web", "api", "db"];
    let keys = ["zone", LABEL_HOSTNAME, "rack"];
    let mut p = in_namespace(
        pod(name, &[("app", rng.pick(&apps)), ("tier", rng.pick(&["a", "b"]))], ""),
        rng.pick(&["default", "default", "ns1"]),
    );
    let mut cs = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let selector = match rng.below(5) {
            0 => Some(exists("app")),
            1 => Some(LabelSelector::default()),
            2 if cs.len() % 2 == 1 => None,
            _ => Some(is_in("app", &[rng.pick(&apps)])),
        };
        let when = if rng.below(2) == 0 { DO_NOT_SCHEDULE } else { SCHEDULE_ANYWAY };
        let mut c = spread(1 + rng.below(3) as i32, rng.pick(&keys), when, selector);
        if rng.below(3) == 0 {
            c.min_domains = Some(1 + rng.below(4) as i32);
        }
        if rng.below(3) == 0 {
            c.match_label_keys = Some(vec!["tier".into()]);
        }
        c.node_affinity_policy =
            [None, Some("Honor".to_string()), Some("Ignore".to_string())][rng.below(3)].clone();
        c.node_taints_policy =
            [None, Some("Honor".to_string()), Some("Ignore".to_string())][rng.below(3)].clone();
        cs.push(c);
    }
    let spec = p.spec.as_mut().expect("spec");
    if rng.below(3) == 0 {
        spec.node_selector = Some(labels(&[("zone", rng.pick(&["a", "b"]))]).into_iter().collect());
    }
    if rng.below(3) == 0 {
        spec.tolerations =
            Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]);
    }
    with_spread(p, cs)
}

#[test]
fn pod_topology_spread_should_decide_as_kubernetes_on_random_clusters_with_counts_kept_between_cycles()
 {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 1..=4u64 {
        let mut rng = Rng(seed);
        let nodes: Vec<Node> = (0..9)
            .map(|i| {
                let name = format!("n{i}");
                let mut pairs =
                    vec![("zone", ["a", "b", "c"][i % 3]), (LABEL_HOSTNAME, name.as_str())];
                if i % 4 != 0 {
                    pairs.push(("rack", ["r1", "r2"][i % 2]));
                }
                let mut n = node(&name, &pairs);
                if i % 5 == 2 {
                    n.spec.as_mut().expect("spec").taints = Some(vec![Taint {
                        key: "dedicated".into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    }]);
                }
                n
            })
            .collect();
        let mut snap = snapshot(nodes, vec![]);
        let kept = PodTopologySpread::new();
        for i in 0..60 {
            let name = format!("p{i}");
            let mut p = random_pod(&mut rng, &name);
            let candidate = info(p.clone());
            let (statuses, scores) = decisions(&kept, &candidate, &snap);
            let want: Vec<Status> =
                snap.nodes.iter().map(|n| reference_filter(&candidate, n, &snap)).collect();
            assert_eq!(statuses, want, "seed {seed}, pod {name}: filter");
            assert_eq!(
                scores,
                reference_scores(&candidate, &snap),
                "seed {seed}, pod {name}: scores"
            );
            for st in &statuses {
                *seen
                    .entry(st.reasons.first().map(|r| r.to_string()).unwrap_or_default())
                    .or_default() += 1;
            }
            if scores.iter().any(|s| *s != 100 && *s != 0) {
                *seen.entry("scored".into()).or_default() += 1;
            }
            let fits: Vec<usize> =
                (0..snap.nodes.len()).filter(|&i| statuses[i].is_success()).collect();
            let host = if fits.is_empty() {
                rng.below(snap.nodes.len())
            } else {
                fits[rng.below(fits.len())]
            };
            p.spec.as_mut().expect("spec").node_name = Some(snap.nodes[host].name.clone());
            if rng.below(8) == 0 {
                p = terminating(p);
            }
            snap = with_pod(&snap, p);
        }
    }
    for outcome in ["", ERR_CONSTRAINTS_NOT_MATCH, ERR_NODE_LABEL_NOT_MATCH, "scored"] {
        assert!(
            seen.get(outcome).is_some_and(|n| *n >= 10),
            "{outcome:?} seen {:?} times",
            seen.get(outcome)
        );
    }
}
