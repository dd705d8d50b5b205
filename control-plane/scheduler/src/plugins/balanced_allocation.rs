//! NodeResourcesBalancedAllocation: favor nodes whose resources would be used evenly with
//! the pod placed, so no single resource runs out while others sit idle. The score is
//! `(1 - std) * 100`, where `std` is the standard deviation of the requested fractions of
//! each resource (cpu and memory by default).

use std::borrow::Cow;
use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::plugins::node_resources_fit::{
    ResourceArgsError, ResourceSpec, allocatable_and_requested, default_resources,
    pod_resource_requests, validate_resources,
};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// `NodeResourcesBalancedAllocationArgs`. Weights must be 1: the score is a deviation,
/// not a weighted mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedAllocationArgs {
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocationArgs {
    fn default() -> Self {
        BalancedAllocationArgs { resources: default_resources() }
    }
}

#[derive(Debug)]
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation { resources: default_resources() }
    }
}

/// The pod's requests of each resource, in `resources` order.
#[derive(Debug, Clone)]
struct PodRequests(Arc<[i64]>);

impl BalancedAllocation {
    pub fn new(args: BalancedAllocationArgs) -> Result<Self, ResourceArgsError> {
        validate_resources(&args.resources, 1, 1)?;
        Ok(BalancedAllocation { resources: args.resources })
    }

    /// Kubernetes' `balancedResourceScorer`. Resources the node does not have are left out.
    fn score_node(&self, node: &NodeInfo, requests: &[i64]) -> i64 {
        let fraction = |(spec, &pod_request): (&ResourceSpec, &i64)| {
            let (alloc, requested) = allocatable_and_requested(node, &spec.name, pod_request, true);
            (alloc != 0).then(|| (requested as f64 / alloc as f64).min(1.0))
        };
        let fractions = || self.resources.iter().zip(requests).filter_map(fraction);
        // Two passes over the resources instead of collecting the fractions, so scoring a
        // node allocates nothing.
        let (mut count, mut total, mut first, mut second) = (0usize, 0.0f64, 0.0f64, 0.0f64);
        for f in fractions() {
            match count {
                0 => first = f,
                1 => second = f,
                _ => {}
            }
            count += 1;
            total += f;
        }
        let std = match count {
            0 | 1 => 0.0,
            // The common case (cpu and memory), as Kubernetes computes it.
            2 => ((first - second) / 2.0).abs(),
            n => {
                let mean = total / n as f64;
                let sum: f64 = fractions().map(|f| (f - mean) * (f - mean)).sum();
                (sum / n as f64).sqrt()
            }
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let requests = pod_resource_requests(pod, &self.resources, true);
        // A best-effort pod would score every node the same "balanced" 100 and pile onto
        // one node (kubernetes/kubernetes#129138), so it is not scored at all.
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PodRequests(requests.into()));
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        // Like Kubernetes, compute the requests here when pre-score did not run.
        let requests: Cow<'_, [i64]> = match state.read::<PodRequests>(PRE_SCORE_KEY) {
            Some(PodRequests(r)) => Cow::Borrowed(&r[..]),
            None => {
                let r = pod_resource_requests(pod, &self.resources, true);
                if r.iter().all(|r| *r == 0) {
                    return (0, Status::success());
                }
                Cow::Owned(r)
            }
        };
        (self.score_node(node, &requests), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

    type Req<'a> = &'a [(&'a str, &'a str)];
    /// (name, args, pod, nodes with allocatable and pods, want)
    type Case<'a> = (&'a str, BalancedAllocationArgs, Pod, Vec<(Req<'a>, Vec<Pod>)>, Vec<i64>);

    fn res_pod(name: &str, containers: &[Req<'_>]) -> Pod {
        let mut p = pod(name, &[]);
        p.spec.as_mut().unwrap().containers = containers
            .iter()
            .map(|r| Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(r)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        p
    }

    fn cpu_and_memory() -> Pod {
        res_pod(
            "cpu-and-memory",
            &[&[("cpu", "1000m"), ("memory", "2000")], &[("cpu", "2000m"), ("memory", "3000")]],
        )
    }

    fn cpu_only() -> Pod {
        res_pod(
            "cpu-only",
            &[&[("cpu", "1000m"), ("memory", "0")], &[("cpu", "2000m"), ("memory", "0")]],
        )
    }

    fn gpu_resources() -> BalancedAllocationArgs {
        BalancedAllocationArgs {
            resources: vec![
                ResourceSpec::new("cpu", 1),
                ResourceSpec::new("memory", 1),
                ResourceSpec::new("example.com/gpu", 1),
            ],
        }
    }

    #[test]
    fn balanced_allocation_should_favor_evenly_used_nodes() {
        let cases: Vec<Case<'_>> = vec![
            (
                // node1: cpu 0.75, memory 0.5, std 0.125 → 87; node2: 0.5, 0.5 → 100.
                "nothing scheduled, resources requested, differently sized nodes",
                BalancedAllocationArgs::default(),
                cpu_and_memory(),
                vec![
                    (&[("cpu", "4000m"), ("memory", "10000")], vec![]),
                    (&[("cpu", "6000m"), ("memory", "10000")], vec![]),
                ],
                vec![87, 100],
            ),
            (
                // node1: cpu 0.6, memory 0.25 → 82; node2: cpu 0.6, memory 0.2 → 80.
                "resources requested, pods scheduled with resources, differently sized nodes",
                BalancedAllocationArgs::default(),
                cpu_and_memory(),
                vec![
                    (&[("cpu", "10000m"), ("memory", "20000")], vec![cpu_only()]),
                    (&[("cpu", "10000m"), ("memory", "50000")], vec![cpu_and_memory()]),
                ],
                vec![82, 80],
            ),
            (
                // The cpu fraction is capped at 1: std (1 - 0.5)/2 = 0.25 → 75.
                "requested resources at node capacity",
                BalancedAllocationArgs::default(),
                cpu_and_memory(),
                vec![(&[("cpu", "2000m"), ("memory", "10000")], vec![])],
                vec![75],
            ),
            (
                // Fractions 0.5, 0.5, 0.25: mean 0.4167, std 0.1179 → 88.
                "include scalar resource on a node for balanced resource allocation",
                gpu_resources(),
                res_pod(
                    "gpu",
                    &[&[("cpu", "2000m"), ("memory", "5000"), ("example.com/gpu", "1")]],
                ),
                vec![(&[("cpu", "4000m"), ("memory", "10000"), ("example.com/gpu", "4")], vec![])],
                vec![88],
            ),
            (
                "node without the scalar resource leaves it out",
                gpu_resources(),
                res_pod(
                    "gpu",
                    &[&[("cpu", "2000m"), ("memory", "5000"), ("example.com/gpu", "1")]],
                ),
                vec![(&[("cpu", "4000m"), ("memory", "10000")], vec![])],
                vec![100],
            ),
            (
                // The pod does not request the gpu, so only cpu (0.5) and memory (0.25) count.
                "scalar resource the pod does not request is left out",
                gpu_resources(),
                res_pod("no-gpu", &[&[("cpu", "2000m"), ("memory", "2500")]]),
                vec![(&[("cpu", "4000m"), ("memory", "10000"), ("example.com/gpu", "4")], vec![])],
                vec![87],
            ),
            (
                // Only memory is requested and scored against: one fraction, std 0.
                "node without cpu",
                BalancedAllocationArgs::default(),
                cpu_and_memory(),
                vec![(&[("memory", "10000")], vec![])],
                vec![100],
            ),
        ];
        for (name, args, p, nodes, want) in cases {
            let plugin = BalancedAllocation::new(args).expect("valid args");
            let p = pod_info(p);
            let nodes: Vec<Arc<NodeInfo>> = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (alloc, pods))| {
                    Arc::new(node_info(node(&format!("node{i}"), alloc), pods))
                })
                .collect();
            let mut state = CycleState::default();
            let pre = plugin.pre_score(&mut state, &p, &nodes, &Snapshot::default());
            assert!(pre.is_success(), "{name}: {pre:?}");
            let got: Vec<i64> = nodes
                .iter()
                .map(|n| {
                    let (score, status) = plugin.score(&state, &p, n);
                    assert!(status.is_success(), "{name}");
                    score
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn balanced_allocation_should_skip_best_effort_pods() {
        let plugin = BalancedAllocation::default();
        let p = pod_info(pod("best-effort", &[]));
        let nodes =
            vec![Arc::new(node_info(node("n", &[("cpu", "4"), ("memory", "8Gi")]), vec![]))];
        let mut state = CycleState::default();
        let status = plugin.pre_score(&mut state, &p, &nodes, &Snapshot::default());
        assert_eq!(status.code, Code::Skip);
        // Without pre-score state the score itself is 0 for such a pod.
        assert_eq!(plugin.score(&CycleState::default(), &p, &nodes[0]), (0, Status::success()));
    }

    #[test]
    fn balanced_allocation_new_should_require_weight_one() {
        let args = BalancedAllocationArgs { resources: vec![ResourceSpec::new("cpu", 2)] };
        assert_eq!(
            BalancedAllocation::new(args).err(),
            Some(ResourceArgsError::WeightOutOfRange { index: 0, weight: 2, min: 1, max: 1 })
        );
        let dup = BalancedAllocationArgs {
            resources: vec![ResourceSpec::new("cpu", 1), ResourceSpec::new("cpu", 1)],
        };
        assert!(BalancedAllocation::new(dup).is_err());
    }
}
