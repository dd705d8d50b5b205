//! Cases modelled on Kubernetes' interpodaffinity `filtering_test.go`
//! (`TestRequiredAffinitySingleNode`, `TestRequiredAffinityMultipleNodes`,
//! `TestPreFilterStateAddRemovePod`) and `scoring_test.go` (`TestPreferredAffinity`,
//! `TestPreferredAffinityWithHardPodAffinitySymmetricWeight`), plus a check that counts kept
//! between cycles equal counts made from scratch.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::framework::Code;
use crate::plugins::topology::testing::*;

// ---------------------------------------------------------------------------------------
// Builders

fn term(selector: LabelSelector, topology: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector),
        topology_key: topology.to_string(),
        ..Default::default()
    }
}

fn term_ns(selector: LabelSelector, namespaces: &[&str], topology: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        namespaces: Some(namespaces.iter().map(|n| n.to_string()).collect()),
        ..term(selector, topology)
    }
}

fn term_ns_selector(
    selector: LabelSelector,
    ns_selector: LabelSelector,
    topology: &str,
) -> PodAffinityTerm {
    PodAffinityTerm { namespace_selector: Some(ns_selector), ..term(selector, topology) }
}

fn affinity_mut(p: &mut Pod) -> &mut Affinity {
    p.spec.as_mut().expect("spec").affinity.get_or_insert_with(Default::default)
}

/// Required pod affinity terms.
fn with_affinity(mut p: Pod, terms: Vec<PodAffinityTerm>) -> Pod {
    let a = affinity_mut(&mut p).pod_affinity.get_or_insert_with(PodAffinity::default);
    a.required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new)
        .extend(terms);
    p
}

/// Required pod anti-affinity terms.
fn with_anti(mut p: Pod, terms: Vec<PodAffinityTerm>) -> Pod {
    let a = affinity_mut(&mut p).pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    a.required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new)
        .extend(terms);
    p
}

fn weighted(weight: i32, t: PodAffinityTerm) -> WeightedPodAffinityTerm {
    WeightedPodAffinityTerm { weight, pod_affinity_term: t }
}

fn with_preferred(mut p: Pod, terms: Vec<WeightedPodAffinityTerm>) -> Pod {
    let a = affinity_mut(&mut p).pod_affinity.get_or_insert_with(PodAffinity::default);
    a.preferred_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new)
        .extend(terms);
    p
}

fn with_preferred_anti(mut p: Pod, terms: Vec<WeightedPodAffinityTerm>) -> Pod {
    let a = affinity_mut(&mut p).pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    a.preferred_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new)
        .extend(terms);
    p
}

fn info(p: Pod) -> PodInfo {
    PodInfo::new(Arc::new(p))
}

const SERVICE: &[(&str, &str)] = &[("service", "securityscan")];
const SECURITY_S1: &[(&str, &str)] = &[("security", "S1")];

/// The incoming pod with `SECURITY_S1` labels.
fn incoming(pairs: &[(&str, &str)]) -> Pod {
    pod("incoming", pairs, "")
}

fn existing(name: &str, pairs: &[(&str, &str)], node: &str) -> Pod {
    pod(name, pairs, node)
}

// ---------------------------------------------------------------------------------------
// Filter

/// What the filter should say about one node: `None` is success.
type Want = Option<(Code, &'static str)>;

const OK: Want = None;
const AFFINITY: Want = Some((Code::UnschedulableAndUnresolvable, ERR_AFFINITY));
const ANTI: Want = Some((Code::Unschedulable, ERR_ANTI_AFFINITY));
const EXISTING: Want = Some((Code::Unschedulable, ERR_EXISTING_ANTI_AFFINITY));

struct FilterCase {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    /// Pre-filter skips (and so every node passes).
    skip: bool,
    want: Vec<Want>,
}

fn run_filter_cases(cases: Vec<FilterCase>) {
    // One plugin for every case, so memos kept between cycles are exercised too.
    let shared = InterPodAffinity::default();
    for c in cases {
        let snap = snapshot(c.nodes, c.pods);
        let pod = info(c.pod);
        for (round, pl) in [&InterPodAffinity::default(), &shared, &shared].into_iter().enumerate()
        {
            let mut state = CycleState::default();
            let (_, status) = pl.pre_filter(&mut state, &pod, &snap);
            if c.skip {
                assert_eq!(status.code, Code::Skip, "{} (round {round}): pre-filter", c.name);
                continue;
            }
            assert_eq!(
                status.code,
                Code::Success,
                "{} (round {round}): pre-filter {status:?}",
                c.name
            );
            assert_eq!(c.want.len(), snap.nodes.len(), "{}: one want per node", c.name);
            for (node, want) in snap.nodes.iter().zip(&c.want) {
                let got = pl.filter(&state, &pod, node);
                match want {
                    None => assert!(
                        got.is_success(),
                        "{} (round {round}) on {}: {got:?}",
                        c.name,
                        node.name
                    ),
                    Some((code, reason)) => {
                        assert_eq!(got.code, *code, "{} (round {round}) on {}", c.name, node.name);
                        assert_eq!(
                            got.reasons.as_slice(),
                            [*reason],
                            "{} on {}",
                            c.name,
                            node.name
                        );
                    }
                }
            }
        }
    }
}

fn node1() -> Vec<Node> {
    vec![node("node1", &[("region", "r1"), ("zone", "z11")])]
}

#[test]
fn inter_pod_affinity_should_filter_a_single_node_like_kubernetes() {
    let scan = || existing("scan", SERVICE, "node1");
    let cases = vec![
        FilterCase {
            name: "A pod that has no required pod affinity scheduling rules can schedule onto a node with no existing pods",
            pod: incoming(&[]),
            pods: vec![],
            nodes: node1(),
            skip: true,
            want: vec![],
        },
        FilterCase {
            name: "satisfies with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using In operator that matches the existing pod",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![term(is_in("service", &["securityscan", "value2"]), "region")],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "satisfies the pod with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using not in operator in labelSelector that matches the existing pod",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![term(not_in("service", &["securityscan3", "value3"]), "region")],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "Does not satisfy the PodAffinity with labelSelector because of diff Namespace",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![term_ns(
                    is_in("service", &["securityscan", "value2"]),
                    &["DiffNameSpace"],
                    "region",
                )],
            ),
            pods: vec![in_namespace(scan(), "ns")],
            nodes: node1(),
            skip: false,
            want: vec![AFFINITY],
        },
        FilterCase {
            name: "Doesn't satisfy the PodAffinity because of unmatching labelSelector with the existing pod",
            pod: with_affinity(
                incoming(SERVICE),
                vec![term(is_in("service", &["antivirusscan", "value2"]), "region")],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![AFFINITY],
        },
        FilterCase {
            name: "satisfies the PodAffinity with different label Operators in multiple RequiredDuringSchedulingIgnoredDuringExecution",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![
                    term(
                        selector(vec![
                            expr("service", "Exists", &[]),
                            expr("wrongkey", "DoesNotExist", &[]),
                        ]),
                        "region",
                    ),
                    term(
                        selector(vec![
                            expr("service", "In", &["securityscan"]),
                            expr("service", "NotIn", &["WrongValue"]),
                        ]),
                        "region",
                    ),
                ],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "The labelSelector requirements(items of matchExpressions) are ANDed, the pod cannot schedule onto the node because one of the matchExpression item don't match.",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![
                    term(
                        selector(vec![
                            expr("service", "Exists", &[]),
                            expr("wrongkey", "DoesNotExist", &[]),
                        ]),
                        "region",
                    ),
                    term(
                        selector(vec![
                            expr("service", "In", &["securityscan2"]),
                            expr("service", "NotIn", &["WrongValue"]),
                        ]),
                        "region",
                    ),
                ],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![AFFINITY],
        },
        FilterCase {
            name: "satisfies the PodAffinity and PodAntiAffinity with the existing pod",
            pod: with_anti(
                with_affinity(
                    incoming(SECURITY_S1),
                    vec![term(is_in("service", &["securityscan", "value2"]), "region")],
                ),
                vec![term(is_in("service", &["antivirusscan", "value2"]), "node")],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "satisfies the PodAffinity and PodAntiAffinity and PodAntiAffinity symmetry with the existing pod",
            pod: with_anti(
                with_affinity(
                    incoming(SECURITY_S1),
                    vec![term(is_in("service", &["securityscan", "value2"]), "region")],
                ),
                vec![term(is_in("service", &["antivirusscan", "value2"]), "node")],
            ),
            pods: vec![with_anti(
                scan(),
                vec![term(is_in("service", &["antivirusscan", "value2"]), "node")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "satisfies the PodAffinity but doesn't satisfy the PodAntiAffinity with the existing pod",
            pod: with_anti(
                with_affinity(
                    incoming(SECURITY_S1),
                    vec![term(is_in("service", &["securityscan", "value2"]), "region")],
                ),
                vec![term(is_in("service", &["securityscan", "value2"]), "zone")],
            ),
            pods: vec![scan()],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "satisfies the PodAffinity and PodAntiAffinity but doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            pod: with_anti(
                with_affinity(
                    incoming(SERVICE),
                    vec![term(is_in("service", &["securityscan", "value2"]), "region")],
                ),
                vec![term(is_in("service", &["antivirusscan", "value2"]), "node")],
            ),
            pods: vec![with_anti(
                scan(),
                vec![term(is_in("service", &["securityscan", "value2"]), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![EXISTING],
        },
        FilterCase {
            name: "pod matches its own Label in PodAffinity and that matches the existing pod Labels",
            pod: with_affinity(
                incoming(SERVICE),
                vec![term(not_in("service", &["securityscan", "value2"]), "region")],
            ),
            pods: vec![existing("elsewhere", SERVICE, "node2")],
            nodes: node1(),
            skip: false,
            want: vec![AFFINITY],
        },
        FilterCase {
            name: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            pod: incoming(SERVICE),
            pods: vec![with_anti(
                scan(),
                vec![term(is_in("service", &["securityscan", "value2"]), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![EXISTING],
        },
        FilterCase {
            name: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. satisfy PodAntiAffinity symmetry with the existing pod",
            pod: incoming(SERVICE),
            pods: vec![with_anti(
                scan(),
                vec![term(not_in("service", &["securityscan", "value2"]), "zone")],
            )],
            nodes: node1(),
            skip: true,
            want: vec![],
        },
        FilterCase {
            name: "satisfies the PodAntiAffinity with existing pod but doesn't satisfy PodAntiAffinity symmetry with incoming pod",
            pod: with_anti(
                incoming(SERVICE),
                vec![term(exists("service"), "region"), term(exists("security"), "region")],
            ),
            pods: vec![with_anti(
                existing("s1", SECURITY_S1, "node1"),
                vec![term(exists("security"), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "PodAntiAffinity symmetry check a1: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: with_anti(
                incoming(SERVICE),
                vec![term(exists("service"), "zone"), term(exists("security"), "zone")],
            ),
            pods: vec![with_anti(
                existing("s1", SECURITY_S1, "node1"),
                vec![term(exists("security"), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "PodAntiAffinity symmetry check a2: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: with_anti(incoming(SECURITY_S1), vec![term(exists("security"), "zone")]),
            pods: vec![with_anti(
                existing("scan", SERVICE, "node1"),
                vec![term(exists("service"), "zone"), term(exists("security"), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![EXISTING],
        },
        FilterCase {
            name: "PodAntiAffinity symmetry check b1: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: with_anti(
                incoming(&[("abc", ""), ("xyz", "")]),
                vec![term(exists("abc"), "zone"), term(exists("def"), "zone")],
            ),
            pods: vec![with_anti(
                existing("p", &[("def", ""), ("xyz", "")], "node1"),
                vec![term(exists("abc"), "zone"), term(exists("def"), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "PodAntiAffinity symmetry check b2: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: with_anti(
                incoming(&[("def", ""), ("xyz", "")]),
                vec![term(exists("abc"), "zone"), term(exists("def"), "zone")],
            ),
            pods: vec![with_anti(
                existing("p", &[("abc", ""), ("xyz", "")], "node1"),
                vec![term(exists("abc"), "zone"), term(exists("def"), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "affinity with NamespaceSelector",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![term_ns_selector(
                    is_in("service", &["securityscan", "value2"]),
                    is_in("team", &["team1"]),
                    "region",
                )],
            ),
            pods: vec![in_namespace(scan(), "subteam1.team1")],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "affinity with non-matching NamespaceSelector",
            pod: with_affinity(
                incoming(SECURITY_S1),
                vec![term_ns_selector(
                    is_in("service", &["securityscan", "value2"]),
                    is_in("team", &["team1"]),
                    "region",
                )],
            ),
            pods: vec![in_namespace(scan(), "subteam1.team2")],
            nodes: node1(),
            skip: false,
            want: vec![AFFINITY],
        },
        FilterCase {
            name: "anti-affinity with matching NamespaceSelector",
            pod: with_anti(
                in_namespace(incoming(SECURITY_S1), "subteam1.team1"),
                vec![term_ns_selector(
                    is_in("service", &["securityscan", "value2"]),
                    is_in("team", &["team1"]),
                    "zone",
                )],
            ),
            pods: vec![in_namespace(scan(), "subteam2.team1")],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "anti-affinity with matching all NamespaceSelector",
            pod: with_anti(
                in_namespace(incoming(SECURITY_S1), "subteam1.team1"),
                vec![term_ns_selector(
                    is_in("service", &["securityscan", "value2"]),
                    LabelSelector::default(),
                    "zone",
                )],
            ),
            pods: vec![in_namespace(scan(), "subteam2.team1")],
            nodes: node1(),
            skip: false,
            want: vec![ANTI],
        },
        FilterCase {
            name: "anti-affinity with non-matching NamespaceSelector",
            pod: with_anti(
                in_namespace(incoming(SECURITY_S1), "subteam1.team1"),
                vec![term_ns_selector(
                    is_in("service", &["securityscan", "value2"]),
                    is_in("team", &["team1"]),
                    "zone",
                )],
            ),
            pods: vec![in_namespace(scan(), "subteam1.team2")],
            nodes: node1(),
            skip: false,
            want: vec![OK],
        },
        FilterCase {
            name: "existing pod's anti-affinity with a NamespaceSelector matching the incoming pod's namespace",
            pod: in_namespace(incoming(SECURITY_S1), "subteam2.team1"),
            pods: vec![with_anti(
                in_namespace(existing("p", SERVICE, "node1"), "subteam1.team1"),
                vec![term_ns_selector(exists("security"), is_in("team", &["team1"]), "zone")],
            )],
            nodes: node1(),
            skip: false,
            want: vec![EXISTING],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn inter_pod_affinity_should_filter_several_nodes_like_kubernetes() {
    let china = || ("region", "China");
    let nodes_rz = |zones: &[&str]| -> Vec<Node> {
        zones
            .iter()
            .enumerate()
            .map(|(i, &z)| {
                let name = ["nodeA", "nodeB", "nodeC"][i];
                node(name, &[("region", "r1"), ("zone", z), ("hostname", name)])
            })
            .collect()
    };
    let cases = vec![
        FilterCase {
            name: "A pod can be scheduled onto all the nodes that have the same topology key & label value with one of them has an existing pod that matches the affinity rules",
            pod: with_affinity(incoming(&[]), vec![term(is_in("foo", &["bar"]), "region")]),
            pods: vec![existing("p1", &[("foo", "bar")], "node1")],
            nodes: vec![
                node("node1", &[china()]),
                node("node2", &[china(), ("az", "az1")]),
                node("node3", &[("region", "India")]),
            ],
            skip: false,
            want: vec![OK, OK, AFFINITY],
        },
        FilterCase {
            name: "The affinity rule is to schedule all of the pods of this collection to the same zone. The first pod of the collection should not be blocked from being scheduled onto any node, even there's no existing pod that matches the rule anywhere.",
            pod: with_affinity(
                incoming(&[("foo", "bar"), ("service", "securityscan")]),
                vec![
                    term(is_in("foo", &["bar"]), "zone"),
                    term(is_in("service", &["securityscan"]), "zone"),
                ],
            ),
            pods: vec![existing("p1", &[("foo", "bar")], "nodeA")],
            nodes: vec![
                node("nodeA", &[("zone", "az1"), ("hostname", "h1")]),
                node("nodeB", &[("zone", "az2"), ("hostname", "h2")]),
            ],
            skip: false,
            want: vec![OK, OK],
        },
        FilterCase {
            name: "The first pod of the collection can only be scheduled on nodes labelled with the requested topology keys",
            pod: with_affinity(
                incoming(&[("foo", "bar"), ("service", "securityscan")]),
                vec![
                    term(is_in("foo", &["bar"]), "zone"),
                    term(is_in("service", &["securityscan"]), "zone"),
                ],
            ),
            pods: vec![existing("p1", &[("foo", "bar")], "nodeA")],
            nodes: vec![
                node("nodeA", &[("zoneLabel", "az1"), ("hostname", "h1")]),
                node("nodeB", &[("zoneLabel", "az2"), ("hostname", "h2")]),
            ],
            skip: false,
            want: vec![AFFINITY, AFFINITY],
        },
        FilterCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB.",
            pod: with_anti(incoming(&[]), vec![term(is_in("foo", &["abc"]), "region")]),
            pods: vec![existing("p", &[("foo", "abc")], "nodeA")],
            nodes: vec![
                node("nodeA", &[("region", "r1"), ("hostname", "nodeA")]),
                node("nodeB", &[("region", "r1"), ("hostname", "nodeB")]),
            ],
            skip: false,
            want: vec![ANTI, ANTI],
        },
        FilterCase {
            name: "This test ensures that anti-affinity matches a pod when any term of the anti-affinity rule matches a pod.",
            pod: with_anti(
                incoming(&[]),
                vec![
                    term(is_in("foo", &["abc"]), "region"),
                    term(is_in("service", &["securityscan"]), "zone"),
                ],
            ),
            pods: vec![existing("p", &[("foo", "abc"), ("service", "securityscan")], "nodeA")],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![ANTI, ANTI],
        },
        FilterCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB but can be scheduled onto nodeC",
            pod: with_anti(incoming(&[]), vec![term(is_in("foo", &["abc"]), "region")]),
            pods: vec![existing("p", &[("foo", "abc")], "nodeA")],
            nodes: vec![
                node("nodeA", &[china()]),
                node("nodeB", &[china(), ("az", "az1")]),
                node("nodeC", &[("region", "India")]),
            ],
            skip: false,
            want: vec![ANTI, ANTI, OK],
        },
        FilterCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA, nodeB, but can be scheduled onto nodeC (NodeC has an existing pod that match the inter pod affinity rule but in different namespace)",
            pod: with_anti(
                in_namespace(incoming(&[("foo", "123")]), "NS1"),
                vec![term(is_in("foo", &["bar"]), "region")],
            ),
            pods: vec![
                in_namespace(existing("a", &[("foo", "bar")], "nodeA"), "NS1"),
                with_anti(
                    in_namespace(existing("c", &[], "nodeC"), "NS2"),
                    vec![term(is_in("foo", &["123"]), "region")],
                ),
            ],
            nodes: vec![
                node("nodeA", &[china()]),
                node("nodeB", &[china(), ("az", "az1")]),
                node("nodeC", &[("region", "India")]),
            ],
            skip: false,
            want: vec![ANTI, ANTI, OK],
        },
        FilterCase {
            name: "Test existing pod's anti-affinity: if an existing pod has a term with invalid topologyKey, labelSelector of the term is firstly checked, and then topologyKey of the term is also checked",
            pod: incoming(&[("foo", "")]),
            pods: vec![with_anti(
                existing("a", &[], "nodeA"),
                vec![term(exists("foo"), "invalid-node-label")],
            )],
            nodes: nodes_rz(&["z1", "z1"]),
            skip: true,
            want: vec![],
        },
        FilterCase {
            name: "Test incoming pod's anti-affinity: even if labelSelector matches, we still check if topologyKey matches",
            pod: with_anti(incoming(&[]), vec![term(exists("foo"), "invalid-node-label")]),
            pods: vec![existing("a", &[("foo", "")], "nodeA")],
            nodes: nodes_rz(&["z1", "z1"]),
            skip: false,
            want: vec![OK, OK],
        },
        FilterCase {
            name: "Test existing pod's anti-affinity: incoming pod wouldn't considered as a fit as it violates each existingPod's terms on all nodes",
            pod: incoming(&[("foo", ""), ("bar", "")]),
            pods: vec![
                with_anti(existing("a1", &[], "nodeA"), vec![term(exists("foo"), "zone")]),
                with_anti(existing("a2", &[], "nodeA"), vec![term(exists("bar"), "region")]),
            ],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![EXISTING, EXISTING],
        },
        FilterCase {
            name: "Test incoming pod's anti-affinity: incoming pod wouldn't considered as a fit as it at least violates one anti-affinity rule of existingPod",
            pod: with_anti(
                incoming(&[]),
                vec![term(exists("foo"), "zone"), term(exists("bar"), "region")],
            ),
            pods: vec![
                existing("a", &[("foo", "")], "nodeA"),
                existing("b", &[("bar", "")], "nodeB"),
            ],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![ANTI, ANTI],
        },
        FilterCase {
            name: "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            pod: incoming(&[("foo", ""), ("bar", "")]),
            pods: vec![with_anti(
                existing("a", &[], "nodeA"),
                vec![term(exists("foo"), "invalid-node-label"), term(exists("bar"), "zone")],
            )],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![EXISTING, OK],
        },
        FilterCase {
            name: "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            pod: with_anti(
                incoming(&[]),
                vec![term(exists("foo"), "invalid-node-label"), term(exists("bar"), "zone")],
            ),
            pods: vec![existing("podA", &[("foo", ""), ("bar", "")], "nodeA")],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![ANTI, OK],
        },
        FilterCase {
            name: "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            pod: incoming(&[("foo", ""), ("bar", "")]),
            pods: vec![with_anti(
                existing("a", &[], "nodeA"),
                vec![term(exists("foo"), "region"), term(exists("bar"), "zone")],
            )],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![EXISTING, EXISTING],
        },
        FilterCase {
            name: "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            pod: with_anti(
                incoming(&[]),
                vec![term(exists("foo"), "region"), term(exists("bar"), "zone")],
            ),
            pods: vec![existing("a", &[("foo", ""), ("bar", "")], "nodeA")],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![ANTI, ANTI],
        },
        FilterCase {
            name: "Test existing pod's anti-affinity: existingPod on nodeA and nodeB has at least one anti-affinity term matches incoming pod, so incoming pod can only be scheduled to nodeC",
            pod: incoming(&[("foo", ""), ("bar", "")]),
            pods: vec![
                with_anti(
                    existing("a", &[], "nodeA"),
                    vec![term(exists("foo"), "zone"), term(exists("labelA"), "zone")],
                ),
                with_anti(
                    existing("b", &[], "nodeB"),
                    vec![term(exists("bar"), "zone"), term(exists("labelB"), "zone")],
                ),
            ],
            nodes: nodes_rz(&["z1", "z2", "z3"]),
            skip: false,
            want: vec![EXISTING, EXISTING, OK],
        },
        FilterCase {
            name: "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match",
            pod: with_affinity(
                incoming(&[]),
                vec![term(exists("foo"), "region"), term(exists("bar"), "zone")],
            ),
            pods: vec![existing("pod1", &[("foo", ""), ("bar", "")], "nodeA")],
            nodes: nodes_rz(&["z1", "z1"]),
            skip: false,
            want: vec![OK, OK],
        },
        FilterCase {
            name: "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match, and the match logic should be satisfied on the same pod",
            pod: with_affinity(
                incoming(&[]),
                vec![term(exists("foo"), "region"), term(exists("bar"), "zone")],
            ),
            pods: vec![
                existing("pod1", &[("foo", "")], "nodeA"),
                existing("pod2", &[("bar", "")], "nodeB"),
            ],
            nodes: nodes_rz(&["z1", "z2"]),
            skip: false,
            want: vec![AFFINITY, AFFINITY],
        },
    ];
    run_filter_cases(cases);
}

#[test]
fn inter_pod_affinity_filter_should_error_without_pre_filter() {
    let pl = InterPodAffinity::default();
    let snap = snapshot(node1(), vec![]);
    let status = pl.filter(&CycleState::default(), &info(incoming(&[])), &snap.nodes[0]);
    assert_eq!(status.code, Code::Error);
    assert_eq!(
        status.message(),
        "error reading \"PreFilterInterPodAffinity\" from cycleState: not found"
    );
}

// ---------------------------------------------------------------------------------------
// add_pod / remove_pod

fn counts(c: &PairCounts) -> BTreeMap<(String, String), i64> {
    c.to_map()
}

fn pairs(entries: &[(&str, &str, i64)]) -> BTreeMap<(String, String), i64> {
    entries.iter().map(|(k, v, n)| ((k.to_string(), v.to_string()), *n)).collect()
}

#[test]
fn inter_pod_affinity_add_and_remove_pod_should_update_counts_like_kubernetes() {
    let anti_foo_bar = || vec![term(is_in("foo", &["bar"]), "region")];
    let complex = || {
        vec![
            term(is_in("foo", &["bar", "buzz"]), "region"),
            term(not_in("service", &["bar", "security", "test"]), "zone"),
        ]
    };
    let nodes = || {
        vec![
            node("nodeA", &[("region", "r1"), ("zone", "z11")]),
            node("nodeB", &[("region", "r1"), ("zone", "z12")]),
            node("nodeC", &[("region", "r2"), ("zone", "z21")]),
        ]
    };
    struct Case {
        name: &'static str,
        pending: Pod,
        added: Pod,
        existing: Vec<Pod>,
        /// (existing anti-affinity, affinity, anti-affinity) after adding.
        want: [BTreeMap<(String, String), i64>; 3],
    }
    let foo_bar = &[("foo", "bar")];
    let cases = vec![
        Case {
            name: "preFilterState anti-affinity terms are updated correctly after adding and removing a pod",
            pending: with_anti(pod("pending", foo_bar, ""), anti_foo_bar()),
            existing: vec![
                pod("p1", foo_bar, "nodeA"),
                with_anti(pod("p2", &[], "nodeC"), anti_foo_bar()),
            ],
            added: with_anti(pod("addedPod", foo_bar, "nodeB"), anti_foo_bar()),
            want: [
                pairs(&[("region", "r1", 1), ("region", "r2", 1)]),
                pairs(&[]),
                pairs(&[("region", "r1", 2)]),
            ],
        },
        Case {
            name: "preFilterState anti-affinity terms are updated correctly after adding and removing a pod (complex)",
            pending: with_anti(pod("pending", foo_bar, ""), complex()),
            existing: vec![
                pod("p1", foo_bar, "nodeA"),
                with_anti(pod("p2", &[], "nodeC"), anti_foo_bar()),
            ],
            added: with_anti(pod("addedPod", foo_bar, "nodeA"), complex()),
            want: [
                pairs(&[("region", "r1", 1), ("region", "r2", 1), ("zone", "z11", 1)]),
                pairs(&[]),
                pairs(&[("region", "r1", 2), ("zone", "z11", 2), ("zone", "z21", 1)]),
            ],
        },
        Case {
            name: "preFilterState matching pod affinity and anti-affinity are updated correctly after adding and removing a pod",
            pending: with_affinity(
                with_anti(pod("pending", foo_bar, ""), anti_foo_bar()),
                complex(),
            ),
            existing: vec![
                pod("p1", foo_bar, "nodeA"),
                with_anti(pod("p2", &[], "nodeC"), anti_foo_bar()),
            ],
            added: with_anti(pod("addedPod", foo_bar, "nodeA"), complex()),
            want: [
                pairs(&[("region", "r1", 1), ("region", "r2", 1), ("zone", "z11", 1)]),
                pairs(&[("region", "r1", 2), ("zone", "z11", 2)]),
                pairs(&[("region", "r1", 2)]),
            ],
        },
    ];
    for c in cases {
        let snap = snapshot(nodes(), c.existing);
        let pl = InterPodAffinity::default();
        let pending = info(c.pending);
        let added = info(c.added);
        let mut state = CycleState::default();
        let (_, status) = pl.pre_filter(&mut state, &pending, &snap);
        assert!(status.is_success(), "{}: {status:?}", c.name);
        let read = |state: &CycleState| {
            let s = state.read::<PreFilterState>(PRE_FILTER_KEY).expect("state");
            [counts(&s.existing_anti), counts(&s.affinity), counts(&s.anti)]
        };
        let before = read(&state);
        let node = snap.get(&added.node_name).expect("node");
        assert!(pl.add_pod(&mut state, &pending, &added, node, &snap).is_success());
        assert_eq!(read(&state), c.want, "{}: after add_pod", c.name);
        assert!(pl.remove_pod(&mut state, &pending, &added, node, &snap).is_success());
        assert_eq!(read(&state), before, "{}: after remove_pod", c.name);
    }
}

#[test]
fn inter_pod_affinity_remove_pod_should_let_preemption_clear_anti_affinity() {
    let snap = snapshot(
        vec![node("nodeA", &[("zone", "z1")]), node("nodeB", &[("zone", "z2")])],
        vec![with_anti(
            pod("victim", &[("app", "db")], "nodeA"),
            vec![term(is_in("app", &["web"]), "zone")],
        )],
    );
    let pl = InterPodAffinity::default();
    let web = info(incoming(&[("app", "web")]));
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, &web, &snap).1.is_success());
    assert_eq!(pl.filter(&state, &web, &snap.nodes[0]).code, Code::Unschedulable);
    let victim = snap.nodes[0].pods[0].clone();
    let mut copy = state.clone();
    assert!(pl.remove_pod(&mut copy, &web, &victim, &snap.nodes[0], &snap).is_success());
    assert!(pl.filter(&copy, &web, &snap.nodes[0]).is_success());
    assert_eq!(
        pl.filter(&state, &web, &snap.nodes[0]).code,
        Code::Unschedulable,
        "the original state is untouched"
    );
}

// ---------------------------------------------------------------------------------------
// Score

struct ScoreCase {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    args: InterPodAffinityArgs,
    /// `None`: pre-score skips (the plugin scores nothing).
    want: Option<Vec<i64>>,
}

fn run_score_cases(cases: Vec<ScoreCase>) {
    for c in cases {
        let snap = snapshot(c.nodes, c.pods);
        let pod = info(c.pod);
        let pl = InterPodAffinity::new(c.args.clone()).expect("args");
        for round in 0..2 {
            let mut state = CycleState::default();
            let status = pl.pre_score(&mut state, &pod, &snap.nodes, &snap);
            let Some(want) = &c.want else {
                assert_eq!(
                    status.code,
                    Code::Skip,
                    "{} (round {round}): pre-score {status:?}",
                    c.name
                );
                continue;
            };
            assert!(status.is_success(), "{} (round {round}): pre-score {status:?}", c.name);
            let mut scores: Vec<NodeScore> = snap
                .nodes
                .iter()
                .map(|n| {
                    let (score, status) = pl.score(&state, &pod, n);
                    assert!(status.is_success(), "{}: {status:?}", c.name);
                    NodeScore { name: n.name.clone(), score }
                })
                .collect();
            assert!(pl.normalize(&state, &pod, &mut scores).is_success());
            let got: Vec<i64> = scores.iter().map(|s| s.score).collect();
            assert_eq!(&got, want, "{} (round {round})", c.name);
        }
    }
}

#[test]
fn inter_pod_affinity_should_score_preferred_terms_like_kubernetes() {
    let china = || node("node1", &[("region", "China")]);
    let india = || node("node2", &[("region", "India")]);
    let s1 = |name: &str, node: &str| existing(name, SECURITY_S1, node);
    let s2 = |name: &str, node: &str| existing(name, &[("security", "S2")], node);
    let stay_with_s1 = || vec![weighted(5, term(is_in("security", &["S1"]), "region"))];
    let stay_with_s2 = || vec![weighted(6, term(is_in("security", &["S2"]), "region"))];
    let away_from_s1 = || vec![weighted(5, term(is_in("security", &["S1"]), "region"))];
    let args = InterPodAffinityArgs::default;
    let cases = vec![
        ScoreCase {
            name: "all nodes are same priority as Affinity is nil",
            pod: incoming(SECURITY_S1),
            pods: vec![],
            nodes: vec![china(), india()],
            args: args(),
            want: None,
        },
        ScoreCase {
            name: "Affinity: pod that matches topology key & pods in nodes will get high score comparing to others which doesn't match either pods in nodes or in topology key",
            pod: with_preferred(incoming(SECURITY_S1), stay_with_s1()),
            pods: vec![s1("p1", "node1"), s2("p2", "node2"), s1("p3", "node3")],
            nodes: vec![china(), india(), node("node3", &[("az", "az1")])],
            args: args(),
            want: Some(vec![100, 0, 0]),
        },
        ScoreCase {
            name: "All the nodes that have the same topology key & label value with one of them has an existing pod that match the affinity rules, have the same score",
            pod: with_preferred(incoming(SECURITY_S1), stay_with_s1()),
            pods: vec![s1("p1", "node1")],
            nodes: vec![
                china(),
                node("node2", &[("region", "China"), ("az", "az1")]),
                node("node3", &[("region", "India")]),
            ],
            args: args(),
            want: Some(vec![100, 100, 0]),
        },
        ScoreCase {
            name: "Affinity: nodes in one region with more matching pods score higher, weighted per term",
            pod: with_preferred(incoming(SECURITY_S1), [stay_with_s1(), stay_with_s2()].concat()),
            // China: two S1 (2*5); India: one S2 (6); node3 (az only) nothing.
            pods: vec![s1("p1", "node1"), s1("p2", "node1"), s2("p3", "node2")],
            nodes: vec![china(), india(), node("node3", &[("az", "az1")])],
            args: args(),
            want: Some(vec![100, 60, 0]),
        },
        ScoreCase {
            name: "Anti Affinity: pod that does not match existing pods in node will get high score",
            pod: with_preferred_anti(incoming(SECURITY_S1), away_from_s1()),
            pods: vec![s1("p1", "node1"), s2("p2", "node2")],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![0, 100]),
        },
        ScoreCase {
            name: "Affinity and Anti Affinity: considered only preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity",
            pod: with_preferred_anti(
                with_preferred(incoming(SECURITY_S1), stay_with_s1()),
                stay_with_s2(),
            ),
            // China: +5 (S1); India: -6 (S2).
            pods: vec![s1("p1", "node1"), s2("p2", "node2")],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![100, 0]),
        },
        ScoreCase {
            name: "Affinity symmetry: considered only the preferredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            pod: incoming(SECURITY_S1),
            pods: vec![
                with_preferred(existing("p1", &[], "node1"), stay_with_s1()),
                with_preferred(existing("p2", &[], "node2"), stay_with_s2()),
            ],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![100, 0]),
        },
        ScoreCase {
            name: "Affinity symmetry: considered RequiredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            pod: incoming(SECURITY_S1),
            pods: vec![
                with_affinity(
                    existing("p1", &[], "node1"),
                    vec![term(is_in("security", &["S1"]), "region")],
                ),
                with_affinity(
                    existing("p2", &[], "node2"),
                    vec![term(is_in("security", &["S2"]), "region")],
                ),
            ],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![100, 0]),
        },
        ScoreCase {
            name: "Hard Pod Affinity symmetry: hardPodAffinityWeight 0 does not score existing pods' required affinity",
            pod: incoming(SECURITY_S1),
            pods: vec![with_affinity(
                existing("p1", &[], "node1"),
                vec![term(is_in("security", &["S1"]), "region")],
            )],
            nodes: vec![china(), india()],
            args: InterPodAffinityArgs { hard_pod_affinity_weight: 0, ..args() },
            want: None,
        },
        ScoreCase {
            name: "Hard Pod Affinity symmetry: the weight counts once per existing pod",
            pod: incoming(SECURITY_S1),
            // China: 2 pods * 10; India: 1 pod * 10 + preferred 5.
            pods: vec![
                with_affinity(
                    existing("p1", &[], "node1"),
                    vec![term(is_in("security", &["S1"]), "region")],
                ),
                with_affinity(
                    existing("p2", &[], "node1"),
                    vec![term(is_in("security", &["S1"]), "region")],
                ),
                with_preferred(
                    with_affinity(
                        existing("p3", &[], "node2"),
                        vec![term(is_in("security", &["S1"]), "region")],
                    ),
                    stay_with_s1(),
                ),
                existing("p4", &[], "node3"),
            ],
            nodes: vec![china(), india(), node("node3", &[("region", "Japan")])],
            args: InterPodAffinityArgs { hard_pod_affinity_weight: 10, ..args() },
            want: Some(vec![100, 75, 0]),
        },
        ScoreCase {
            name: "Anti Affinity symmetry: the existing pods in node which has anti affinity match will get high score",
            pod: incoming(SECURITY_S1),
            pods: vec![
                with_preferred_anti(existing("p1", &[], "node1"), away_from_s1()),
                with_preferred_anti(
                    existing("p2", &[], "node2"),
                    vec![weighted(5, term(is_in("security", &["S2"]), "region"))],
                ),
            ],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![0, 100]),
        },
        ScoreCase {
            name: "Affinity with namespace selector: only pods in selected namespaces count",
            pod: with_preferred(
                incoming(SECURITY_S1),
                vec![weighted(
                    5,
                    term_ns_selector(
                        is_in("security", &["S1"]),
                        is_in("team", &["team1"]),
                        "region",
                    ),
                )],
            ),
            pods: vec![
                in_namespace(s1("p1", "node1"), "subteam1.team2"),
                in_namespace(s1("p2", "node2"), "subteam2.team1"),
            ],
            nodes: vec![china(), india()],
            args: args(),
            want: Some(vec![0, 100]),
        },
        ScoreCase {
            name: "ignorePreferredTermsOfExistingPods: existing pods' preferred terms do not count when the pod has none",
            pod: incoming(SECURITY_S1),
            pods: vec![with_preferred(existing("p1", &[], "node1"), stay_with_s1())],
            nodes: vec![china(), india()],
            args: InterPodAffinityArgs { ignore_preferred_terms_of_existing_pods: true, ..args() },
            want: None,
        },
        ScoreCase {
            name: "ignorePreferredTermsOfExistingPods: existing pods' preferred terms still count when the pod has some",
            pod: with_preferred(incoming(SECURITY_S1), stay_with_s2()),
            // China: +5 from p1's term; India: +6 from the pod's own term matching p2.
            pods: vec![
                with_preferred(existing("p1", &[], "node1"), stay_with_s1()),
                s2("p2", "node2"),
            ],
            nodes: vec![china(), india(), node("node3", &[("region", "Japan")])],
            args: InterPodAffinityArgs { ignore_preferred_terms_of_existing_pods: true, ..args() },
            want: Some(vec![83, 100, 0]),
        },
    ];
    run_score_cases(cases);
}

#[test]
fn inter_pod_affinity_should_reject_hard_pod_affinity_weight_out_of_range() {
    let err = InterPodAffinity::new(InterPodAffinityArgs {
        hard_pod_affinity_weight: 101,
        ..Default::default()
    })
    .err()
    .expect("invalid");
    assert_eq!(
        err.to_string(),
        "hardPodAffinityWeight: Invalid value: 101: not in valid range [0-100]"
    );
    assert!(
        InterPodAffinity::new(InterPodAffinityArgs {
            hard_pod_affinity_weight: 100,
            ..Default::default()
        })
        .is_ok()
    );
}

#[test]
fn inter_pod_affinity_should_register_pod_and_node_events() {
    let events = InterPodAffinity::default().events();
    for e in [
        ClusterEvent::new(Resource::Pod, Action::Add),
        ClusterEvent::new(Resource::Pod, Action::Update),
        ClusterEvent::new(Resource::Pod, Action::Delete),
        ClusterEvent::new(Resource::Node, Action::Add),
        ClusterEvent::new(Resource::Node, Action::Update),
    ] {
        assert!(events.contains(&e), "{e:?}");
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

/// Kubernetes' filter computed the slow way, from every pod in the cluster.
fn reference_filter(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Status {
    let ns_for = |t: &AffinityTerm, p: &PodInfo| ns_labels(t, p, snap);
    let all: Vec<(&NodeInfo, &PodInfo)> =
        snap.nodes.iter().flat_map(|n| n.pods.iter().map(move |p| (&**n, &**p))).collect();
    let same = |n: &NodeInfo, key: &str| matches!((n.labels.get(key), node.labels.get(key)), (Some(a), Some(b)) if a == b);
    let terms = &pod.required_affinity;
    if !terms.is_empty() {
        if terms.iter().any(|t| !node.labels.contains_key(&t.topology_key)) {
            return Status::unresolvable(ERR_AFFINITY);
        }
        let matching: Vec<&NodeInfo> = all
            .iter()
            .filter(|(_, q)| terms.iter().all(|t| t.matches(q, ns_for(t, q))))
            .map(|(n, _)| *n)
            .collect();
        let exist = terms.iter().all(|t| matching.iter().any(|n| same(n, &t.topology_key)));
        let counted =
            matching.iter().any(|n| terms.iter().any(|t| n.labels.contains_key(&t.topology_key)));
        let self_match = terms.iter().all(|t| t.matches(pod, ns_for(t, pod)));
        if !exist && (counted || !self_match) {
            return Status::unresolvable(ERR_AFFINITY);
        }
    }
    let anti = pod
        .required_anti_affinity
        .iter()
        .any(|t| all.iter().any(|(n, q)| same(n, &t.topology_key) && t.matches(q, ns_for(t, q))));
    if anti {
        return Status::unschedulable(ERR_ANTI_AFFINITY);
    }
    let own_ns = snap.namespace_labels(&pod.namespace);
    let existing = all.iter().any(|(n, q)| {
        q.required_anti_affinity.iter().any(|t| same(n, &t.topology_key) && t.matches(pod, own_ns))
    });
    if existing {
        return Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY);
    }
    Status::success()
}

/// Kubernetes' normalized scores computed the slow way (all 0 when nothing scores).
fn reference_scores(pod: &PodInfo, snap: &Snapshot, hard: i64) -> Vec<i64> {
    let ns_for = |t: &AffinityTerm, p: &PodInfo| ns_labels(t, p, snap);
    let own_ns = snap.namespace_labels(&pod.namespace);
    let raw: Vec<i64> = snap
        .nodes
        .iter()
        .map(|node| {
            let same = |n: &NodeInfo, key: &str| {
                matches!((n.labels.get(key), node.labels.get(key)), (Some(a), Some(b)) if a == b)
            };
            let mut score = 0;
            for n in &snap.nodes {
                for q in &n.pods {
                    for (w, sign) in pod.preferred_affinity.iter().map(|w| (w, 1)).chain(pod.preferred_anti_affinity.iter().map(|w| (w, -1))) {
                        if same(n, &w.term.topology_key) && w.term.matches(q, ns_for(&w.term, q)) {
                            score += sign * i64::from(w.weight);
                        }
                    }
                    for t in &q.required_affinity {
                        if same(n, &t.topology_key) && t.matches(pod, own_ns) {
                            score += hard;
                        }
                    }
                    for (w, sign) in q.preferred_affinity.iter().map(|w| (w, 1)).chain(q.preferred_anti_affinity.iter().map(|w| (w, -1))) {
                        if same(n, &w.term.topology_key) && w.term.matches(pod, own_ns) {
                            score += sign * i64::from(w.weight);
                        }
                    }
                }
            }
            score
        })
        .collect();
    let (min, max) =
        (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter()
        .map(
            |s| {
                if max > min { (100.0 * ((s - min) as f64 / (max - min) as f64)) as i64 } else { 0 }
            },
        )
        .collect()
}

/// Filter statuses (all success when pre-filter skips) and normalized scores (all 0 when
/// pre-score skips), as the scheduler would see them.
fn decisions(pl: &InterPodAffinity, pod: &PodInfo, snap: &Snapshot) -> (Vec<Status>, Vec<i64>) {
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

/// A random pod: labels, namespace and terms drawn from small sets so that they collide.
fn random_pod(rng: &mut Rng, name: &str) -> Pod {
    let apps = ["web", "api", "cache", "db"];
    let keys = ["zone", "host", "region", "rack"];
    let namespaces = ["default", "subteam1.team1", "subteam2.team1", "subteam1.team2"];
    let mut p = in_namespace(
        pod(name, &[("app", rng.pick(&apps)), ("tier", rng.pick(&["a", "b"]))], ""),
        rng.pick(&namespaces),
    );
    let random_term = |rng: &mut Rng| {
        let selector = match rng.below(3) {
            0 => is_in("app", &[rng.pick(&apps)]),
            1 => not_in("app", &[rng.pick(&apps), rng.pick(&apps)]),
            _ => exists("tier"),
        };
        let key = rng.pick(&keys);
        match rng.below(4) {
            0 => term_ns_selector(selector, is_in("team", &["team1"]), key),
            1 => term_ns(selector, &[rng.pick(&namespaces)], key),
            _ => term(selector, key),
        }
    };
    for _ in 0..rng.below(3) {
        match rng.below(5) {
            0 => p = with_affinity(p, vec![random_term(rng)]),
            1 | 2 => p = with_anti(p, vec![random_term(rng)]),
            3 => p = with_preferred(p, vec![weighted(1 + rng.below(100) as i32, random_term(rng))]),
            _ => {
                p = with_preferred_anti(
                    p,
                    vec![weighted(1 + rng.below(100) as i32, random_term(rng))],
                )
            }
        }
    }
    p
}

#[test]
fn inter_pod_affinity_should_decide_as_kubernetes_on_random_clusters_with_counts_kept_between_cycles()
 {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 1..=4u64 {
        let mut rng = Rng(seed);
        let nodes: Vec<Node> = (0..10)
            .map(|i| {
                let name = format!("n{i}");
                let mut pairs = vec![("zone", ["a", "b", "c"][i % 3]), ("host", name.as_str())];
                if i % 4 != 0 {
                    pairs.push(("region", ["r1", "r2"][i % 2]));
                }
                node(&name, &pairs)
            })
            .collect();
        let mut snap = snapshot(nodes, vec![]);
        let kept = InterPodAffinity::default();
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
                reference_scores(&candidate, &snap, 1),
                "seed {seed}, pod {name}: scores"
            );
            for st in &statuses {
                *seen
                    .entry(st.reasons.first().map(|r| r.to_string()).unwrap_or_default())
                    .or_default() += 1;
            }
            if scores.iter().any(|s| *s != 0) {
                *seen.entry("scored".into()).or_default() += 1;
            }
            // Place it where the filter allows (anywhere if nowhere), as the scheduler would.
            let fits: Vec<usize> =
                (0..snap.nodes.len()).filter(|&i| statuses[i].is_success()).collect();
            let host = if fits.is_empty() {
                rng.below(snap.nodes.len())
            } else {
                fits[rng.below(fits.len())]
            };
            p.spec.as_mut().expect("spec").node_name = Some(snap.nodes[host].name.clone());
            snap = with_pod(&snap, p);
        }
    }
    // The clusters must have exercised every outcome, or the comparison proves little.
    for outcome in ["", ERR_AFFINITY, ERR_ANTI_AFFINITY, ERR_EXISTING_ANTI_AFFINITY, "scored"] {
        assert!(
            seen.get(outcome).is_some_and(|n| *n >= 10),
            "{outcome:?} seen {:?} times",
            seen.get(outcome)
        );
    }
}
