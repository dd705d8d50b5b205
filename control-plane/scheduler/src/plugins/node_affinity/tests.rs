//! Cases modelled on Kubernetes' `node_affinity_test.go`.

use super::*;
use crate::framework::Code;
use crate::types::testing::*;
use k8s_openapi::api::core::v1::Affinity;

type Labels<'a> = &'a [(&'a str, &'a str)];

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn exprs(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: Some(reqs), match_fields: None }
}

fn fields(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: None, match_fields: Some(reqs) }
}

fn name_in(names: &[&str]) -> NodeSelectorRequirement {
    req("metadata.name", "In", names)
}

fn affinity(
    required: Option<Vec<NodeSelectorTerm>>,
    preferred: Vec<(i32, NodeSelectorTerm)>,
) -> NodeAffinitySpec {
    NodeAffinitySpec {
        required_during_scheduling_ignored_during_execution: required
            .map(|node_selector_terms| NodeSelector { node_selector_terms }),
        preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty()).then(|| {
            preferred
                .into_iter()
                .map(|(weight, preference)| PreferredSchedulingTerm { weight, preference })
                .collect()
        }),
    }
}

fn affinity_pod(
    selector: &[(&str, &str)],
    required: Option<Vec<NodeSelectorTerm>>,
    preferred: Vec<(i32, NodeSelectorTerm)>,
) -> PodInfo {
    let mut p = pod("p", &[]);
    let spec = p.spec.as_mut().unwrap();
    if !selector.is_empty() {
        spec.node_selector =
            Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }
    if required.is_some() || !preferred.is_empty() {
        spec.affinity = Some(Affinity {
            node_affinity: Some(affinity(required, preferred)),
            ..Default::default()
        });
    }
    pod_info(p)
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
    let mut n = node(name, &[]);
    n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    node_info(n, vec![])
}

/// Pre-filter then filter, as the framework runs them (a skipped filter passes).
fn run_filter(plugin: &NodeAffinity, pod: &PodInfo, node: &NodeInfo) -> Status {
    let mut state = CycleState::default();
    let (_, pre) = plugin.pre_filter(&mut state, pod, &Snapshot::default());
    if pre.is_skip() {
        return Status::success();
    }
    if !pre.is_success() {
        return pre;
    }
    plugin.filter(&state, pod, node)
}

struct FilterCase<'a> {
    name: &'a str,
    selector: &'a [(&'a str, &'a str)],
    required: Option<Vec<NodeSelectorTerm>>,
    node_name: &'a str,
    labels: &'a [(&'a str, &'a str)],
    want: Option<&'a str>,
}

impl Default for FilterCase<'_> {
    fn default() -> Self {
        FilterCase {
            name: "",
            selector: &[],
            required: None,
            node_name: "node1",
            labels: &[],
            want: None,
        }
    }
}

fn check_filter_cases(plugin: &NodeAffinity, cases: Vec<FilterCase<'_>>) {
    for c in cases {
        let pod = affinity_pod(c.selector, c.required, vec![]);
        let status = run_filter(plugin, &pod, &labelled(c.node_name, c.labels));
        match c.want {
            None => assert!(status.is_success(), "{}: {status:?}", c.name),
            Some(reason) => {
                assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{}", c.name);
                assert_eq!(status.reasons.to_vec(), vec![reason.to_string()], "{}", c.name);
            }
        }
    }
}

#[test]
fn node_affinity_filter_should_match_node_selector_and_required_terms() {
    let pod_reason = Some(ERR_REASON_POD);
    let cases = vec![
        FilterCase { name: "no selector", ..Default::default() },
        FilterCase {
            name: "missing labels",
            selector: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "same labels",
            selector: &[("foo", "bar")],
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "node labels are superset",
            selector: &[("foo", "bar")],
            labels: &[("foo", "bar"), ("baz", "blah")],
            ..Default::default()
        },
        FilterCase {
            name: "node labels are subset",
            selector: &[("foo", "bar"), ("baz", "blah")],
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchExpressions using In operator that matches the existing node",
            required: Some(vec![exprs(vec![req("foo", "In", &["bar", "value2"])])]),
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchExpressions using Gt operator that matches the existing node",
            required: Some(vec![exprs(vec![req("kernel-version", "Gt", &["0204"])])]),
            labels: &[("kernel-version", "0206")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchExpressions using NotIn operator that matches the existing node",
            required: Some(vec![exprs(vec![req("mem-type", "NotIn", &["DDR", "DDR2"])])]),
            labels: &[("mem-type", "DDR3")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchExpressions using Exists operator that matches the existing node",
            required: Some(vec![exprs(vec![req("GPU", "Exists", &[])])]),
            labels: &[("GPU", "NVIDIA-GRID-K1")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with affinity that don't match node's labels won't schedule onto the node",
            required: Some(vec![exprs(vec![req("foo", "In", &["value1", "value2"])])]),
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with empty MatchExpressions is not a valid value will match no objects and won't schedule onto the node",
            required: Some(vec![exprs(vec![])]),
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with an empty []NodeSelectorTerm in affinity, can't match the nodes' labels and won't schedule onto the node",
            required: Some(vec![]),
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with multiple matchExpressions ANDed that matches the existing node",
            required: Some(vec![exprs(vec![
                req("GPU", "Exists", &[]),
                req("GPU", "NotIn", &["AMD", "INTER"]),
            ])]),
            labels: &[("GPU", "NVIDIA-GRID-K1")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with multiple matchExpressions ANDed that doesn't match the existing node",
            required: Some(vec![exprs(vec![
                req("GPU", "Exists", &[]),
                req("GPU", "In", &["AMD", "INTER"]),
            ])]),
            labels: &[("GPU", "NVIDIA-GRID-K1")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with multiple NodeSelectorTerms ORed in affinity, matches the node's labels and will schedule onto the node",
            required: Some(vec![
                exprs(vec![req("foo", "In", &["bar", "value2"])]),
                exprs(vec![req("diffkey", "In", &["wrong", "value2"])]),
            ]),
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with an Affinity and a PodSpec.NodeSelector(the old thing that we are deprecating) both are satisfied, will schedule onto the node",
            selector: &[("foo", "bar")],
            required: Some(vec![exprs(vec![req("foo", "Exists", &[])])]),
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with an Affinity matches node's labels but the PodSpec.NodeSelector(the old thing that we are deprecating) is not satisfied, won't schedule onto the node",
            selector: &[("foo", "bar")],
            required: Some(vec![exprs(vec![req("foo", "Exists", &[])])]),
            labels: &[("foo", "barrrrrr")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with an invalid value in Affinity term won't be scheduled onto the node",
            required: Some(vec![exprs(vec![req("foo", "NotIn", &["invalid value: ___@#$%^"])])]),
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with a non-integer Gt value won't be scheduled onto the node",
            required: Some(vec![exprs(vec![req("kernel-version", "Gt", &["abc"])])]),
            labels: &[("kernel-version", "5")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchFields using In operator that matches the existing node",
            required: Some(vec![fields(vec![name_in(&["node1"])])]),
            ..Default::default()
        },
        FilterCase {
            name: "Pod with matchFields using In operator that does not match the existing node",
            required: Some(vec![fields(vec![name_in(&["node1"])])]),
            node_name: "node2",
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with two terms: matchFields does not match, but matchExpressions matches",
            required: Some(vec![
                fields(vec![name_in(&["node1"])]),
                exprs(vec![req("foo", "In", &["bar"])]),
            ]),
            node_name: "node2",
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with one term: matchFields does not match, but matchExpressions matches",
            required: Some(vec![NodeSelectorTerm {
                match_expressions: Some(vec![req("foo", "In", &["bar"])]),
                match_fields: Some(vec![name_in(&["node1"])]),
            }]),
            node_name: "node2",
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
        FilterCase {
            name: "Pod with one term: both matchFields and matchExpressions match",
            required: Some(vec![NodeSelectorTerm {
                match_expressions: Some(vec![req("foo", "In", &["bar"])]),
                match_fields: Some(vec![name_in(&["node1"])]),
            }]),
            labels: &[("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Pod with two terms: both matchFields and matchExpressions do not match",
            required: Some(vec![
                fields(vec![name_in(&["node1"])]),
                exprs(vec![req("foo", "In", &["not-match-to-bar"])]),
            ]),
            node_name: "node2",
            labels: &[("foo", "bar")],
            want: pod_reason,
            ..Default::default()
        },
    ];
    check_filter_cases(&NodeAffinity::default(), cases);
}

#[test]
fn node_affinity_filter_should_enforce_added_affinity() {
    let plugin = NodeAffinity::new(NodeAffinityArgs {
        added_affinity: Some(affinity(
            Some(vec![exprs(vec![req("zone", "In", &["foo"])])]),
            vec![],
        )),
    })
    .expect("valid args");
    let pod_terms = || Some(vec![exprs(vec![req("foo", "In", &["bar"])])]);
    let cases = vec![
        FilterCase {
            name: "Matches added affinity and Pod's node affinity",
            required: pod_terms(),
            labels: &[("zone", "foo"), ("foo", "bar")],
            ..Default::default()
        },
        FilterCase {
            name: "Matches added affinity but not Pod's node affinity",
            required: pod_terms(),
            labels: &[("zone", "foo"), ("foo", "baz")],
            want: Some(ERR_REASON_POD),
            ..Default::default()
        },
        FilterCase {
            name: "Doesn't match added affinity",
            required: pod_terms(),
            labels: &[("zone", "bar"), ("foo", "bar")],
            want: Some(ERR_REASON_ENFORCED),
            ..Default::default()
        },
        FilterCase {
            name: "Pod without affinity is still held to the added affinity",
            labels: &[("zone", "bar")],
            want: Some(ERR_REASON_ENFORCED),
            ..Default::default()
        },
    ];
    check_filter_cases(&plugin, cases);
}

/// (name, selector, required terms, want code, want node names)
type PreFilterCase<'a> =
    (&'a str, Labels<'a>, Option<Vec<NodeSelectorTerm>>, Code, Option<HashSet<String>>);

#[test]
fn node_affinity_pre_filter_should_narrow_to_named_nodes() {
    let set = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect::<HashSet<_>>());
    let foo_in_bar = || req("foo", "In", &["bar"]);
    let cases: Vec<PreFilterCase<'_>> = vec![
        ("no affinity and no selector", &[], None, Code::Skip, None),
        ("only a node selector", &[("foo", "bar")], None, Code::Success, None),
        (
            "required terms without names",
            &[],
            Some(vec![exprs(vec![foo_in_bar()])]),
            Code::Success,
            None,
        ),
        (
            "matchFields In one node",
            &[],
            Some(vec![fields(vec![name_in(&["node1"])])]),
            Code::Success,
            set(&["node1"]),
        ),
        (
            "matchFields In in multiple terms",
            &[],
            Some(vec![fields(vec![name_in(&["node1"])]), fields(vec![name_in(&["node2"])])]),
            Code::Success,
            set(&["node1", "node2"]),
        ),
        (
            "one term with matchFields and matchExpressions",
            &[],
            Some(vec![NodeSelectorTerm {
                match_expressions: Some(vec![foo_in_bar()]),
                match_fields: Some(vec![name_in(&["node1"])]),
            }]),
            Code::Success,
            set(&["node1"]),
        ),
        (
            "two terms, one without matchFields",
            &[],
            Some(vec![fields(vec![name_in(&["node1"])]), exprs(vec![foo_in_bar()])]),
            Code::Success,
            None,
        ),
        (
            "one term, name requirements with no overlap",
            &[],
            Some(vec![fields(vec![name_in(&["node1"]), name_in(&["node2"])])]),
            Code::UnschedulableAndUnresolvable,
            None,
        ),
        (
            "one term, name requirements that overlap",
            &[],
            Some(vec![fields(vec![name_in(&["node1", "node2"]), name_in(&["node2", "node3"])])]),
            Code::Success,
            set(&["node2"]),
        ),
        (
            "NotIn on the name does not narrow",
            &[],
            Some(vec![fields(vec![req("metadata.name", "NotIn", &["node1"])])]),
            Code::Success,
            None,
        ),
    ];
    for (name, selector, required, code, names) in cases {
        let pod = affinity_pod(selector, required, vec![]);
        let mut state = CycleState::default();
        let (result, status) =
            NodeAffinity::default().pre_filter(&mut state, &pod, &Snapshot::default());
        assert_eq!(status.code, code, "{name}");
        if code == Code::UnschedulableAndUnresolvable {
            assert_eq!(status.reasons.to_vec(), vec![ERR_REASON_CONFLICT.to_string()], "{name}");
        }
        assert_eq!(result.and_then(|r| r.node_names), names, "{name}");
    }
    // With an added affinity there is always something to check.
    let plugin = NodeAffinity::new(NodeAffinityArgs {
        added_affinity: Some(affinity(Some(vec![exprs(vec![req("zone", "Exists", &[])])]), vec![])),
    })
    .unwrap();
    let (_, status) = plugin.pre_filter(
        &mut CycleState::default(),
        &affinity_pod(&[], None, vec![]),
        &Snapshot::default(),
    );
    assert!(status.is_success(), "added affinity: {status:?}");
}

/// Pre-score, score and normalize over `nodes`; `None` when pre-score skips.
fn run_score(plugin: &NodeAffinity, pod: &PodInfo, nodes: Vec<NodeInfo>) -> Option<Vec<i64>> {
    let nodes: Vec<Arc<NodeInfo>> = nodes.into_iter().map(Arc::new).collect();
    let mut state = CycleState::default();
    let status = plugin.pre_score(&mut state, pod, &nodes, &Snapshot::default());
    if status.is_skip() {
        return None;
    }
    assert!(status.is_success(), "{status:?}");
    let mut scores: Vec<NodeScore> = nodes
        .iter()
        .map(|n| {
            let (score, status) = plugin.score(&state, pod, n);
            assert!(status.is_success());
            NodeScore { name: n.name.clone(), score }
        })
        .collect();
    assert!(plugin.normalize(&state, pod, &mut scores).is_success());
    Some(scores.into_iter().map(|s| s.score).collect())
}

/// (name, args, pod's preferred terms, node labels, want; None = pre-score skips)
type ScoreCase<'a> =
    (&'a str, NodeAffinityArgs, Vec<(i32, NodeSelectorTerm)>, Vec<Labels<'a>>, Option<Vec<i64>>);

#[test]
fn node_affinity_score_should_weigh_matching_preferred_terms() {
    let label1: &[(&str, &str)] = &[("foo", "bar")];
    let label2: &[(&str, &str)] = &[("key", "value")];
    let label3: &[(&str, &str)] = &[("az", "az1")];
    let label4: &[(&str, &str)] = &[("abc", "az11"), ("def", "az22")];
    let label5: &[(&str, &str)] = &[("foo", "bar"), ("key", "value"), ("az", "az1")];
    let affinity1 = || vec![(2, exprs(vec![req("foo", "In", &["bar"])]))];
    let affinity2 = || {
        vec![
            (2, exprs(vec![req("foo", "In", &["bar"])])),
            (4, exprs(vec![req("key", "In", &["value"])])),
            (
                5,
                exprs(vec![
                    req("foo", "In", &["bar"]),
                    req("key", "In", &["value"]),
                    req("az", "In", &["az1"]),
                ]),
            ),
        ]
    };
    let added_key = NodeAffinityArgs {
        added_affinity: Some(affinity(None, vec![(3, exprs(vec![req("key", "In", &["value"])]))])),
    };
    let added_foo = NodeAffinityArgs { added_affinity: Some(affinity(None, affinity1())) };
    let cases: Vec<ScoreCase<'_>> = vec![
        (
            "all nodes are same priority as NodeAffinity is nil",
            NodeAffinityArgs::default(),
            vec![],
            vec![label1, label2, label3],
            None,
        ),
        (
            "no node matches preferred scheduling requirements in NodeAffinity of pod so all nodes' priority is zero",
            NodeAffinityArgs::default(),
            affinity1(),
            vec![label4, label2, label3],
            Some(vec![0, 0, 0]),
        ),
        (
            "only node1 matches the preferred scheduling requirements of pod",
            NodeAffinityArgs::default(),
            affinity1(),
            vec![label1, label2, label3],
            Some(vec![100, 0, 0]),
        ),
        (
            // Raw 2, 11, 4 → 18, 100, 36.
            "all nodes matches the preferred scheduling requirements of pod but with different priorities",
            NodeAffinityArgs::default(),
            affinity2(),
            vec![label1, label5, label2],
            Some(vec![18, 100, 36]),
        ),
        ("added affinity", added_foo, vec![], vec![label1, label2], Some(vec![100, 0])),
        (
            // Raw 2, 3, 5 → 40, 60, 100.
            "added affinity and pod has default affinity",
            added_key,
            affinity1(),
            vec![label1, label2, label5],
            Some(vec![40, 60, 100]),
        ),
        (
            "terms with weight 0 or no requirements are ignored",
            NodeAffinityArgs::default(),
            vec![(0, exprs(vec![req("foo", "In", &["bar"])])), (5, exprs(vec![]))],
            vec![label1],
            None,
        ),
    ];
    for (name, args, preferred, labels, want) in cases {
        let plugin = NodeAffinity::new(args).expect("valid args");
        let pod = affinity_pod(&[], None, preferred);
        let nodes =
            labels.iter().enumerate().map(|(i, l)| labelled(&format!("node{i}"), l)).collect();
        assert_eq!(run_score(&plugin, &pod, nodes), want, "{name}");
    }
}

#[test]
fn node_affinity_pre_score_should_fail_on_an_invalid_preferred_term() {
    let pod = affinity_pod(&[], None, vec![(1, exprs(vec![req("foo", "Gt", &["bar"])]))]);
    let status = NodeAffinity::default().pre_score(
        &mut CycleState::default(),
        &pod,
        &[],
        &Snapshot::default(),
    );
    assert_eq!(status.code, Code::Error);
}

#[test]
fn node_affinity_new_should_reject_invalid_added_affinity() {
    let cases = vec![
        (
            "no required terms",
            affinity(Some(vec![]), vec![]),
            NodeAffinityArgsError::NoRequiredTerms,
        ),
        (
            "unknown operator",
            affinity(Some(vec![exprs(vec![req("foo", "Near", &["bar"])])]), vec![]),
            NodeAffinityArgsError::InvalidRequiredTerm {
                index: 0,
                reason: "operator \"Near\" is not supported".into(),
            },
        ),
        (
            "In without values",
            affinity(
                Some(vec![exprs(vec![req("foo", "Exists", &[]), req("foo", "In", &[])])]),
                vec![],
            ),
            NodeAffinityArgsError::InvalidRequiredTerm {
                index: 0,
                reason: "for 'in', 'notin' operators, values set can't be empty".into(),
            },
        ),
        (
            "field with two values",
            affinity(Some(vec![fields(vec![name_in(&["a", "b"])])]), vec![]),
            NodeAffinityArgsError::InvalidRequiredTerm {
                index: 0,
                reason: "field \"metadata.name\": values must have one element".into(),
            },
        ),
        (
            "weight 0",
            affinity(None, vec![(0, exprs(vec![req("foo", "Exists", &[])]))]),
            NodeAffinityArgsError::InvalidWeight { index: 0, weight: 0 },
        ),
        (
            "invalid label key in a preferred term",
            affinity(None, vec![(1, exprs(vec![req("-foo", "Exists", &[])]))]),
            NodeAffinityArgsError::InvalidPreferredTerm {
                index: 0,
                reason: "key \"-foo\" is not a valid label key".into(),
            },
        ),
    ];
    for (name, added, want) in cases {
        let got = NodeAffinity::new(NodeAffinityArgs { added_affinity: Some(added) }).err();
        assert_eq!(got, Some(want), "{name}");
    }
    let valid = affinity(
        Some(vec![exprs(vec![
            req("example.com/zone", "In", &["a", "b"]),
            req("gen", "Gt", &["3"]),
        ])]),
        vec![(100, fields(vec![name_in(&["node1"])]))],
    );
    assert!(NodeAffinity::new(NodeAffinityArgs { added_affinity: Some(valid) }).is_ok());
}
