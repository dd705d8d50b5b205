//! Cases modelled on Kubernetes' `fit_test.go`, `least_allocated_test.go`,
//! `most_allocated_test.go` and `requested_to_capacity_ratio_test.go`.

use super::*;
use crate::framework::Code;
use crate::types::testing::*;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

type Req<'a> = &'a [(&'a str, &'a str)];

fn container(requests: Req<'_>) -> Container {
    Container {
        name: "c".into(),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with one container per entry of `containers` and of `init`.
fn res_pod(name: &str, containers: &[Req<'_>], init: &[Req<'_>]) -> Pod {
    let mut p = pod(name, &[]);
    let spec = p.spec.as_mut().unwrap();
    spec.containers = containers.iter().map(|r| container(r)).collect();
    if !init.is_empty() {
        spec.init_containers = Some(init.iter().map(|r| container(r)).collect());
    }
    p
}

const AAA: &str = "example.com/aaa";
const BBB: &str = "example.com/bbb";
const SUB_K8S_IO: &str = "subdomain.kubernetes.io/something";
const HUGEPAGES: &str = "hugepages-2Mi";

/// Kubernetes' `makeAllocatableResources(10, 20, 32, 5, 20, 5)`.
const FIT_NODE: Req<'static> = &[
    ("cpu", "10m"),
    ("memory", "20"),
    ("pods", "32"),
    (AAA, "5"),
    ("ephemeral-storage", "20"),
    (HUGEPAGES, "5"),
];

/// Requests of cpu and memory, as a `'static` slice.
macro_rules! cpu_mem {
    ($cpu:literal, $mem:literal) => {
        &[("cpu", $cpu), ("memory", $mem)]
    };
}

fn run_filter(args: FitArgs, p: Pod, node: &NodeInfo) -> Status {
    let plugin = NodeResourcesFit::new(args).expect("valid args");
    let mut state = CycleState::default();
    let (result, pre) = plugin.pre_filter(&mut state, &pod_info(p.clone()), &Snapshot::default());
    assert!(result.is_none() && pre.is_success(), "pre-filter: {pre:?}");
    plugin.filter(&state, &pod_info(p), node)
}

struct FilterCase<'a> {
    name: &'a str,
    containers: &'a [Req<'a>],
    init: &'a [Req<'a>],
    overhead: Req<'a>,
    existing: Req<'a>,
    args: FitArgs,
    want: &'a [&'a str],
}

impl Default for FilterCase<'_> {
    fn default() -> Self {
        FilterCase {
            name: "",
            containers: &[&[]],
            init: &[],
            overhead: &[],
            existing: &[],
            args: FitArgs::default(),
            want: &[],
        }
    }
}

fn check_filter_cases(allocatable: Req<'_>, cases: Vec<FilterCase<'_>>) {
    for c in cases {
        let mut p = res_pod("p", c.containers, c.init);
        if !c.overhead.is_empty() {
            p.spec.as_mut().unwrap().overhead = Some(quantities(c.overhead));
        }
        let node = node_info(node("n", allocatable), vec![pod("existing", c.existing)]);
        let status = run_filter(c.args, p, &node);
        if c.want.is_empty() {
            assert!(status.is_success(), "{}: {status:?}", c.name);
        } else {
            assert_eq!(status.code, Code::Unschedulable, "{}", c.name);
            assert_eq!(status.reasons.to_vec(), c.want, "{}", c.name);
        }
    }
}

#[test]
fn node_resources_fit_filter_should_report_each_insufficient_resource() {
    let cases = vec![
        FilterCase {
            name: "no resources requested always fits",
            existing: cpu_mem!("10m", "20"),
            ..Default::default()
        },
        FilterCase {
            name: "too many resources fails",
            containers: &[cpu_mem!("1m", "1")],
            existing: cpu_mem!("10m", "20"),
            want: &["Insufficient cpu", "Insufficient memory"],
            ..Default::default()
        },
        FilterCase {
            name: "too many resources fails due to init container cpu",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("3m", "1")],
            existing: cpu_mem!("8m", "19"),
            want: &["Insufficient cpu"],
            ..Default::default()
        },
        FilterCase {
            name: "too many resources fails due to highest init container cpu",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("3m", "1"), cpu_mem!("2m", "1")],
            existing: cpu_mem!("8m", "19"),
            want: &["Insufficient cpu"],
            ..Default::default()
        },
        FilterCase {
            name: "too many resources fails due to init container memory",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("1m", "3")],
            existing: cpu_mem!("9m", "19"),
            want: &["Insufficient memory"],
            ..Default::default()
        },
        FilterCase {
            name: "too many resources fails due to highest init container memory",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("1m", "3"), cpu_mem!("1m", "2")],
            existing: cpu_mem!("9m", "19"),
            want: &["Insufficient memory"],
            ..Default::default()
        },
        FilterCase {
            name: "init container fits because it's the max, not sum, of containers and init containers",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("1m", "1")],
            existing: cpu_mem!("9m", "19"),
            ..Default::default()
        },
        FilterCase {
            name: "multiple init containers fit because it's the max, not sum, of containers and init containers",
            containers: &[cpu_mem!("1m", "1")],
            init: &[cpu_mem!("1m", "1"), cpu_mem!("1m", "1")],
            existing: cpu_mem!("9m", "19"),
            ..Default::default()
        },
        FilterCase {
            name: "both resources fit",
            containers: &[cpu_mem!("1m", "1")],
            existing: cpu_mem!("5m", "5"),
            ..Default::default()
        },
        FilterCase {
            name: "one resource memory fits",
            containers: &[cpu_mem!("2m", "1")],
            existing: cpu_mem!("9m", "5"),
            want: &["Insufficient cpu"],
            ..Default::default()
        },
        FilterCase {
            name: "one resource cpu fits",
            containers: &[cpu_mem!("1m", "2")],
            existing: cpu_mem!("5m", "19"),
            want: &["Insufficient memory"],
            ..Default::default()
        },
        FilterCase {
            name: "equal edge case",
            containers: &[cpu_mem!("5m", "1")],
            existing: cpu_mem!("5m", "19"),
            ..Default::default()
        },
        FilterCase {
            name: "equal edge case for init container",
            containers: &[cpu_mem!("4m", "1")],
            init: &[cpu_mem!("5m", "1")],
            existing: cpu_mem!("5m", "19"),
            ..Default::default()
        },
        FilterCase {
            name: "extended resource fits",
            containers: &[&[(AAA, "1")]],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource fits for init container",
            init: &[&[(AAA, "1")]],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource capacity enforced",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (AAA, "10")]],
            existing: &[(AAA, "0")],
            want: &["Insufficient example.com/aaa"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource capacity enforced for init container",
            init: &[&[("cpu", "1m"), ("memory", "1"), (AAA, "10")]],
            existing: &[(AAA, "0")],
            want: &["Insufficient example.com/aaa"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable enforced",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (AAA, "1")]],
            existing: &[(AAA, "5")],
            want: &["Insufficient example.com/aaa"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable enforced for multiple containers",
            containers: &[
                &[("cpu", "1m"), ("memory", "1"), (AAA, "3")],
                &[("cpu", "1m"), ("memory", "1"), (AAA, "3")],
            ],
            existing: &[(AAA, "2")],
            want: &["Insufficient example.com/aaa"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable admits multiple init containers",
            init: &[
                &[("cpu", "1m"), ("memory", "1"), (AAA, "3")],
                &[("cpu", "1m"), ("memory", "1"), (AAA, "3")],
            ],
            existing: &[(AAA, "2")],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable enforced for multiple init containers",
            init: &[
                &[("cpu", "1m"), ("memory", "1"), (AAA, "6")],
                &[("cpu", "1m"), ("memory", "1"), (AAA, "3")],
            ],
            existing: &[(AAA, "2")],
            want: &["Insufficient example.com/aaa"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable enforced for unknown resource",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (BBB, "1")]],
            want: &["Insufficient example.com/bbb"],
            ..Default::default()
        },
        FilterCase {
            name: "extended resource allocatable enforced for unknown resource for init container",
            init: &[&[("cpu", "1m"), ("memory", "1"), (BBB, "1")]],
            want: &["Insufficient example.com/bbb"],
            ..Default::default()
        },
        FilterCase {
            name: "kubernetes.io resource capacity enforced for init container",
            init: &[&[("cpu", "1m"), ("memory", "1"), (SUB_K8S_IO, "10")]],
            want: &["Insufficient subdomain.kubernetes.io/something"],
            ..Default::default()
        },
        FilterCase {
            name: "hugepages resource capacity enforced",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (HUGEPAGES, "10")]],
            existing: &[(HUGEPAGES, "0")],
            want: &["Insufficient hugepages-2Mi"],
            ..Default::default()
        },
        FilterCase {
            name: "hugepages resource capacity enforced for init container",
            init: &[&[("cpu", "1m"), ("memory", "1"), (HUGEPAGES, "10")]],
            want: &["Insufficient hugepages-2Mi"],
            ..Default::default()
        },
        FilterCase {
            name: "hugepages resource allocatable enforced for multiple containers",
            containers: &[
                &[("cpu", "1m"), ("memory", "1"), (HUGEPAGES, "3")],
                &[("cpu", "1m"), ("memory", "1"), (HUGEPAGES, "3")],
            ],
            existing: &[(HUGEPAGES, "2")],
            want: &["Insufficient hugepages-2Mi"],
            ..Default::default()
        },
        FilterCase {
            name: "skip checking ignored extended resource",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (BBB, "1")]],
            args: FitArgs { ignored_resources: vec![BBB.into()], ..Default::default() },
            ..Default::default()
        },
        FilterCase {
            name: "ignored resources apply only to extended resources",
            containers: &[&[(HUGEPAGES, "10")]],
            args: FitArgs { ignored_resources: vec![HUGEPAGES.into()], ..Default::default() },
            want: &["Insufficient hugepages-2Mi"],
            ..Default::default()
        },
        FilterCase {
            name: "resources + pod overhead fits",
            containers: &[cpu_mem!("1m", "1")],
            overhead: &[("cpu", "3m"), ("memory", "13")],
            existing: cpu_mem!("5m", "5"),
            ..Default::default()
        },
        FilterCase {
            name: "requests + overhead does not fit for memory",
            containers: &[cpu_mem!("1m", "1")],
            overhead: &[("cpu", "1m"), ("memory", "15")],
            existing: cpu_mem!("5m", "5"),
            want: &["Insufficient memory"],
            ..Default::default()
        },
        FilterCase {
            name: "skip checking ignored extended resource via resource groups",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (BBB, "1"), (SUB_K8S_IO, "1")]],
            args: FitArgs {
                ignored_resource_groups: vec!["example.com".into()],
                ..Default::default()
            },
            want: &["Insufficient subdomain.kubernetes.io/something"],
            ..Default::default()
        },
        FilterCase {
            name: "skip checking extended resource request with quantity zero via resource groups",
            containers: &[&[("cpu", "1m"), ("memory", "1"), (AAA, "0")]],
            existing: &[(AAA, "6")],
            ..Default::default()
        },
        FilterCase {
            name: "skip checking resource request with quantity zero",
            containers: &[&[(AAA, "1")]],
            existing: &[("cpu", "20m"), ("memory", "30"), (AAA, "1")],
            ..Default::default()
        },
    ];
    check_filter_cases(FIT_NODE, cases);
}

#[test]
fn node_resources_fit_filter_should_reject_a_full_node_with_too_many_pods() {
    let node: Req<'_> = &[("cpu", "10m"), ("memory", "20"), ("pods", "1")];
    let cases = vec![
        FilterCase {
            name: "even without specified resources, predicate fails when there's no space for additional pod",
            existing: &[("cpu", "10m"), ("memory", "20")],
            want: &["Too many pods"],
            ..Default::default()
        },
        FilterCase {
            name: "even if both resources fit, predicate fails when there's no space for additional pod",
            containers: &[&[("cpu", "1m"), ("memory", "1")]],
            existing: &[("cpu", "5m"), ("memory", "5")],
            want: &["Too many pods"],
            ..Default::default()
        },
        FilterCase {
            name: "even for equal edge case, predicate fails when there's no space for additional pod",
            containers: &[&[("cpu", "5m"), ("memory", "1")]],
            existing: &[("cpu", "5m"), ("memory", "19")],
            want: &["Too many pods"],
            ..Default::default()
        },
        FilterCase {
            name: "even for equal edge case, predicate fails when there's no space for additional pod due to init container",
            containers: &[&[("cpu", "5m"), ("memory", "1")]],
            init: &[&[("cpu", "5m"), ("memory", "1")]],
            existing: &[("cpu", "5m"), ("memory", "19")],
            want: &["Too many pods"],
            ..Default::default()
        },
        FilterCase {
            name: "too many pods comes first, then every insufficient resource",
            containers: &[&[("cpu", "6m"), ("memory", "2")]],
            existing: &[("cpu", "5m"), ("memory", "19")],
            want: &["Too many pods", "Insufficient cpu", "Insufficient memory"],
            ..Default::default()
        },
    ];
    check_filter_cases(node, cases);
}

#[test]
fn node_resources_fit_filter_should_check_ephemeral_storage() {
    let cases = vec![
        FilterCase {
            name: "empty storage requested, and pod fits",
            containers: &[&[("cpu", "1m"), ("memory", "1")]],
            existing: &[("cpu", "2m"), ("memory", "10")],
            ..Default::default()
        },
        FilterCase {
            name: "storage ephemeral local storage request exceeds allocatable",
            containers: &[&[("ephemeral-storage", "25")]],
            existing: &[("cpu", "2m"), ("memory", "2")],
            want: &["Insufficient ephemeral-storage"],
            ..Default::default()
        },
        FilterCase {
            name: "ephemeral local storage is sufficient",
            containers: &[&[("ephemeral-storage", "5")]],
            existing: &[("cpu", "2m"), ("memory", "2"), ("ephemeral-storage", "10")],
            ..Default::default()
        },
        FilterCase {
            name: "pod fits",
            containers: &[&[("ephemeral-storage", "10")]],
            existing: &[("cpu", "2m"), ("memory", "2")],
            ..Default::default()
        },
    ];
    check_filter_cases(FIT_NODE, cases);
}

#[test]
fn node_resources_fit_filter_should_error_without_pre_filter_state() {
    let plugin = NodeResourcesFit::default();
    let node = node_info(node("n", FIT_NODE), vec![]);
    let status = plugin.filter(&CycleState::default(), &pod_info(pod("p", &[])), &node);
    assert_eq!(status.code, Code::Error);
    assert_eq!(
        status.message(),
        "reading \"PreFilterNodeResourcesFit\" from cycleState: not found"
    );
}

fn strategy(strategy: ScoringStrategyType, resources: &[(&str, i64)]) -> FitArgs {
    FitArgs {
        scoring_strategy: ScoringStrategy {
            strategy,
            resources: resources.iter().map(|(n, w)| ResourceSpec::new(n, *w)).collect(),
        },
        ..Default::default()
    }
}

fn run_score(args: FitArgs, p: Pod, nodes: Vec<NodeInfo>) -> Vec<i64> {
    let plugin = NodeResourcesFit::new(args).expect("valid args");
    let pod = pod_info(p);
    let nodes: Vec<Arc<NodeInfo>> = nodes.into_iter().map(Arc::new).collect();
    let mut state = CycleState::default();
    assert!(plugin.pre_score(&mut state, &pod, &nodes, &Snapshot::default()).is_success());
    nodes
        .iter()
        .map(|n| {
            let (score, status) = plugin.score(&state, &pod, n);
            assert!(status.is_success());
            score
        })
        .collect()
}

/// A score case: the pod's containers, and each node's allocatable with the pods on it.
struct ScoreCase<'a> {
    name: &'a str,
    args: FitArgs,
    pod: Pod,
    nodes: Vec<(Req<'a>, Vec<Pod>)>,
    want: &'a [i64],
}

fn check_score_cases(cases: Vec<ScoreCase<'_>>) {
    for c in cases {
        let nodes = c
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, (alloc, pods))| node_info(node(&format!("node{}", i + 1), alloc), pods))
            .collect();
        assert_eq!(run_score(c.args, c.pod, nodes), c.want, "{}", c.name);
    }
}

fn cpu_and_memory() -> Pod {
    res_pod(
        "cpu-and-memory",
        &[&[("cpu", "1000m"), ("memory", "2000")], &[("cpu", "2000m"), ("memory", "3000")]],
        &[],
    )
}

fn cpu_only() -> Pod {
    res_pod(
        "cpu-only",
        &[&[("cpu", "1000m"), ("memory", "0")], &[("cpu", "2000m"), ("memory", "0")]],
        &[],
    )
}

#[test]
fn least_allocated_should_favor_nodes_with_more_free_resources() {
    let least = || strategy(ScoringStrategyType::LeastAllocated, &[("cpu", 1), ("memory", 1)]);
    let cases = vec![
        ScoreCase {
            // Default requests (100m, 200Mi) count: cpu (4000-100)*100/4000 = 97,
            // memory 98 → 97; and 98, 98 → 98.
            name: "nothing scheduled, nothing requested",
            args: least(),
            pod: pod("empty", &[]),
            nodes: vec![
                (&[("cpu", "4"), ("memory", "10Gi")], vec![]),
                (&[("cpu", "6"), ("memory", "10Gi")], vec![]),
            ],
            want: &[97, 98],
        },
        ScoreCase {
            // node1: cpu 25, memory 50 → 37; node2: cpu 50, memory 50 → 50.
            name: "nothing scheduled, resources requested, differently sized nodes",
            args: least(),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[37, 50],
        },
        ScoreCase {
            // node1: cpu (10000-6000)/10000 = 40, memory (20000-5000)/20000 = 75 → 57;
            // node2: cpu 40, memory (50000-10000)/50000 = 80 → 60.
            name: "resources requested, pods scheduled with resources",
            args: least(),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "10000m"), ("memory", "20000")], vec![cpu_only()]),
                (&[("cpu", "10000m"), ("memory", "50000")], vec![cpu_and_memory()]),
            ],
            want: &[57, 60],
        },
        ScoreCase {
            // node1: (25*2 + 50)/3 = 33; node2: (50*2 + 50)/3 = 50.
            name: "resources requested with weights",
            args: strategy(ScoringStrategyType::LeastAllocated, &[("cpu", 2), ("memory", 1)]),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[33, 50],
        },
        ScoreCase {
            // cpu over capacity scores 0, memory 50 → 25.
            name: "requested resources exceed node capacity",
            args: least(),
            pod: res_pod("big", &[&[("cpu", "6000m"), ("memory", "5000")]], &[]),
            nodes: vec![(&[("cpu", "4000m"), ("memory", "10000")], vec![])],
            want: &[25],
        },
        ScoreCase {
            // node1 has the gpu: (25 + 50 + 75)/3 = 50; node2 lacks it, so it is left out:
            // (50 + 50)/2 = 50.
            name: "extended resource scored only where the node has it",
            args: strategy(
                ScoringStrategyType::LeastAllocated,
                &[("cpu", 1), ("memory", 1), ("example.com/gpu", 1)],
            ),
            pod: res_pod(
                "gpu",
                &[&[("cpu", "3000m"), ("memory", "5000"), ("example.com/gpu", "1")]],
                &[],
            ),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000"), ("example.com/gpu", "4")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[50, 50],
        },
        ScoreCase {
            name: "zero-capacity node scores 0",
            args: least(),
            pod: cpu_and_memory(),
            nodes: vec![(&[], vec![])],
            want: &[0],
        },
    ];
    check_score_cases(cases);
}

#[test]
fn most_allocated_should_favor_nodes_with_less_free_resources() {
    let most = || strategy(ScoringStrategyType::MostAllocated, &[("cpu", 1), ("memory", 1)]);
    let cases = vec![
        ScoreCase {
            // Default requests: cpu 100*100/4000 = 2, memory 1 → 1; cpu 1, memory 1 → 1.
            name: "nothing scheduled, nothing requested",
            args: most(),
            pod: pod("empty", &[]),
            nodes: vec![
                (&[("cpu", "4"), ("memory", "10Gi")], vec![]),
                (&[("cpu", "6"), ("memory", "10Gi")], vec![]),
            ],
            want: &[1, 1],
        },
        ScoreCase {
            // node1: cpu 75, memory 50 → 62; node2: 50, 50 → 50.
            name: "nothing scheduled, resources requested, differently sized nodes",
            args: most(),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[62, 50],
        },
        ScoreCase {
            // node1: cpu 60, memory 25 → 42; node2: cpu 60, memory 20 → 40.
            name: "resources requested, pods scheduled with resources",
            args: most(),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "10000m"), ("memory", "20000")], vec![cpu_only()]),
                (&[("cpu", "10000m"), ("memory", "50000")], vec![cpu_and_memory()]),
            ],
            want: &[42, 40],
        },
        ScoreCase {
            // cpu over capacity counts as full (100), memory 50 → 75.
            name: "requested resources exceed node capacity",
            args: most(),
            pod: res_pod("big", &[&[("cpu", "6000m"), ("memory", "5000")]], &[]),
            nodes: vec![(&[("cpu", "4000m"), ("memory", "10000")], vec![])],
            want: &[75],
        },
        ScoreCase {
            // node1: (75*1 + 50*3)/4 = 56; node2: (50 + 150)/4 = 50.
            name: "resources requested with weights",
            args: strategy(ScoringStrategyType::MostAllocated, &[("cpu", 1), ("memory", 3)]),
            pod: cpu_and_memory(),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[56, 50],
        },
    ];
    check_score_cases(cases);
}

fn shape(points: &[(i32, i32)]) -> ScoringStrategyType {
    ScoringStrategyType::RequestedToCapacityRatio {
        shape: points
            .iter()
            .map(|&(utilization, score)| UtilizationShapePoint { utilization, score })
            .collect(),
    }
}

#[test]
fn requested_to_capacity_ratio_should_follow_the_shape() {
    let spread = || strategy(shape(&[(0, 10), (100, 0)]), &[("cpu", 1), ("memory", 1)]);
    let pack_foo_bar =
        strategy(shape(&[(0, 0), (100, 10)]), &[("intel.com/foo", 3), ("intel.com/bar", 5)]);
    let cases = vec![
        ScoreCase {
            name: "nothing scheduled, nothing requested (default - least requested nodes have priority)",
            args: spread(),
            pod: res_pod("zero", &[&[("cpu", "0"), ("memory", "0")]], &[]),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[100, 100],
        },
        ScoreCase {
            // node1: cpu at 75% → 25, memory at 50% → 50, mean 37.5 rounds to 38.
            name: "nothing scheduled, resources requested, differently sized nodes (default - least requested nodes have priority)",
            args: spread(),
            pod: res_pod("p", &[&[("cpu", "3000m"), ("memory", "5000")]], &[]),
            nodes: vec![
                (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
            ],
            want: &[38, 50],
        },
        ScoreCase {
            name: "bin packing one extended resource",
            args: strategy(shape(&[(0, 0), (100, 10)]), &[("intel.com/foo", 1)]),
            pod: res_pod("p", &[&[("intel.com/foo", "2")]], &[]),
            nodes: vec![
                (&[("intel.com/foo", "4")], vec![]),
                (&[("intel.com/foo", "8")], vec![]),
                (&[("cpu", "4")], vec![]),
            ],
            want: &[50, 25, 0],
        },
        ScoreCase {
            name: "a pod that does not request the scored resource scores 0",
            args: strategy(shape(&[(0, 0), (100, 10)]), &[("intel.com/foo", 1)]),
            pod: res_pod("p", &[&[("cpu", "1")]], &[]),
            nodes: vec![(&[("intel.com/foo", "4")], vec![])],
            want: &[0],
        },
        ScoreCase {
            // node1: foo 50% → 50, bar 25% → 25: (150 + 125)/8 = 34.4 → 34;
            // node2: foo 25, bar 50: (75 + 250)/8 = 40.6 → 41.
            name: "bin packing two weighted extended resources",
            args: pack_foo_bar,
            pod: res_pod("p", &[&[("intel.com/foo", "2"), ("intel.com/bar", "2")]], &[]),
            nodes: vec![
                (&[("intel.com/foo", "4"), ("intel.com/bar", "8")], vec![]),
                (&[("intel.com/foo", "8"), ("intel.com/bar", "4")], vec![]),
            ],
            want: &[34, 41],
        },
        ScoreCase {
            // cpu at 0% scores 0 and is left out of the mean: only memory (50%) counts.
            name: "resources scoring 0 are left out of the mean",
            args: strategy(shape(&[(0, 0), (100, 10)]), &[("cpu", 1), ("memory", 1)]),
            pod: res_pod("p", &[&[("cpu", "0"), ("memory", "5000")]], &[]),
            nodes: vec![(&[("cpu", "4000m"), ("memory", "10000")], vec![])],
            want: &[50],
        },
    ];
    check_score_cases(cases);
}

#[test]
fn broken_linear_should_interpolate_between_points() {
    // (name, shape points, probes of (utilization, score))
    type Points<'a> = &'a [(i64, i64)];
    let cases: &[(&str, Points<'_>, Points<'_>)] = &[
        (
            "two points",
            &[(10, 1), (90, 9)],
            &[(0, 1), (10, 1), (15, 1), (20, 2), (50, 5), (89, 8), (90, 9), (100, 9)],
        ),
        (
            "three points, rising then falling",
            &[(0, 2), (40, 10), (100, 0)],
            &[(0, 2), (10, 4), (20, 6), (40, 10), (70, 5), (100, 0)],
        ),
        ("one point", &[(50, 7)], &[(0, 7), (50, 7), (100, 7)]),
    ];
    for (name, points, probes) in cases {
        for &(p, want) in *probes {
            assert_eq!(broken_linear(points, p), want, "{name} at {p}");
        }
    }
}

#[test]
fn node_resources_fit_new_should_reject_invalid_args() {
    let cases: Vec<(&str, FitArgs, ResourceArgsError)> = vec![
        (
            "weight 0",
            strategy(ScoringStrategyType::LeastAllocated, &[("cpu", 0)]),
            ResourceArgsError::WeightOutOfRange { index: 0, weight: 0, min: 1, max: 100 },
        ),
        (
            "weight above 100",
            strategy(ScoringStrategyType::MostAllocated, &[("cpu", 1), ("memory", 101)]),
            ResourceArgsError::WeightOutOfRange { index: 1, weight: 101, min: 1, max: 100 },
        ),
        (
            "duplicate resource",
            strategy(ScoringStrategyType::LeastAllocated, &[("cpu", 1), ("cpu", 2)]),
            ResourceArgsError::DuplicateResource { index: 1, name: "cpu".into() },
        ),
        ("empty shape", strategy(shape(&[]), &[("cpu", 1)]), ResourceArgsError::EmptyShape),
        (
            "utilization not increasing",
            strategy(shape(&[(50, 1), (50, 2)]), &[("cpu", 1)]),
            ResourceArgsError::UtilizationNotIncreasing { index: 1 },
        ),
        (
            "utilization above 100",
            strategy(shape(&[(0, 1), (101, 2)]), &[("cpu", 1)]),
            ResourceArgsError::UtilizationOutOfRange { index: 1, utilization: 101 },
        ),
        (
            "score above 10",
            strategy(shape(&[(0, 11)]), &[("cpu", 1)]),
            ResourceArgsError::ScoreOutOfRange { index: 0, score: 11 },
        ),
        (
            "resource group with a slash",
            FitArgs {
                ignored_resource_groups: vec!["example.com/aaa".into()],
                ..Default::default()
            },
            ResourceArgsError::InvalidResourceGroup { index: 0, group: "example.com/aaa".into() },
        ),
    ];
    for (name, args, want) in cases {
        assert_eq!(NodeResourcesFit::new(args).err(), Some(want), "{name}");
    }
    assert!(NodeResourcesFit::new(FitArgs::default()).is_ok());
}

#[test]
fn fit_args_default_should_be_least_allocated_on_cpu_and_memory() {
    let args = FitArgs::default();
    assert_eq!(args.scoring_strategy.strategy, ScoringStrategyType::LeastAllocated);
    assert_eq!(
        args.scoring_strategy.resources,
        vec![ResourceSpec::new("cpu", 1), ResourceSpec::new("memory", 1)]
    );
    assert!(args.ignored_resources.is_empty() && args.ignored_resource_groups.is_empty());
}
