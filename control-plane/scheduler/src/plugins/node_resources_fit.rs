//! NodeResourcesFit: the node must have room for the pod's requests (pods, cpu, memory,
//! ephemeral storage, extended resources), and among the nodes that fit, the scoring
//! strategy ranks them: LeastAllocated spreads, MostAllocated packs,
//! RequestedToCapacityRatio follows a user-given utilization→score shape.
//!
//! Also home of the resource-allocation arithmetic that NodeResourcesBalancedAllocation
//! shares (Kubernetes' `resource_allocation.go`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use crate::framework::{
    Action, ClusterEvent, Code, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, Resource, ScorePlugin, Status,
};
use crate::plugins::helper::missing_state;
use crate::snapshot::Snapshot;
use crate::types::{CPU, EPHEMERAL_STORAGE, MEMORY, NodeInfo, PodInfo, is_scalar_resource};

pub const NAME: &str = "NodeResourcesFit";

const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// Kubernetes' `MaxCustomPriorityScore`: shape points score on 0..=10, scaled to
/// 0..=MAX_NODE_SCORE.
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
const MAX_UTILIZATION: i64 = 100;
const MAX_RESOURCE_WEIGHT: i64 = 100;

/// A resource the scoring strategy looks at, and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

impl ResourceSpec {
    pub fn new(name: &str, weight: i64) -> Self {
        ResourceSpec { name: name.to_string(), weight }
    }
}

/// Kubernetes' default: cpu and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![ResourceSpec::new(CPU, 1), ResourceSpec::new(MEMORY, 1)]
}

/// One point of RequestedToCapacityRatio's piecewise-linear function: at `utilization`
/// percent (0..=100) a resource scores `score` (0..=10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilizationShapePoint {
    pub utilization: i32,
    pub score: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoringStrategyType {
    LeastAllocated,
    MostAllocated,
    /// Points sorted by increasing utilization.
    RequestedToCapacityRatio {
        shape: Vec<UtilizationShapePoint>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoringStrategy {
    pub strategy: ScoringStrategyType,
    pub resources: Vec<ResourceSpec>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            strategy: ScoringStrategyType::LeastAllocated,
            resources: default_resources(),
        }
    }
}

/// `NodeResourcesFitArgs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitArgs {
    pub scoring_strategy: ScoringStrategy,
    /// Extended resources the filter does not check (`example.com/foo`).
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (the part before `/`) the filter does not check.
    pub ignored_resource_groups: Vec<String>,
}

/// Invalid plugin arguments (a configuration error, permanent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceArgsError {
    #[error("resources[{index}].name: must not be empty")]
    EmptyResourceName { index: usize },
    #[error("resources[{index}].name: duplicate resource {name:?}")]
    DuplicateResource { index: usize, name: String },
    #[error("resources[{index}].weight: {weight} not in valid range [{min}, {max}]")]
    WeightOutOfRange { index: usize, weight: i64, min: i64, max: i64 },
    #[error("requestedToCapacityRatio.shape: must not be empty")]
    EmptyShape,
    #[error("shape[{index}].utilization: {utilization} not in valid range [0, 100]")]
    UtilizationOutOfRange { index: usize, utilization: i32 },
    #[error("shape[{index}].utilization: values must be sorted in increasing order")]
    UtilizationNotIncreasing { index: usize },
    #[error("shape[{index}].score: {score} not in valid range [0, 10]")]
    ScoreOutOfRange { index: usize, score: i32 },
    #[error("ignoredResources[{index}]: must not be empty")]
    EmptyIgnoredResource { index: usize },
    #[error("ignoredResourceGroups[{index}]: {group:?} must not contain '/'")]
    InvalidResourceGroup { index: usize, group: String },
}

/// Check a resource list: names present and unique, weights within `min..=max`.
pub(crate) fn validate_resources(
    resources: &[ResourceSpec],
    min: i64,
    max: i64,
) -> Result<(), ResourceArgsError> {
    let mut seen = HashSet::new();
    for (index, r) in resources.iter().enumerate() {
        if r.name.is_empty() {
            return Err(ResourceArgsError::EmptyResourceName { index });
        }
        if !seen.insert(r.name.as_str()) {
            return Err(ResourceArgsError::DuplicateResource { index, name: r.name.clone() });
        }
        if !(min..=max).contains(&r.weight) {
            return Err(ResourceArgsError::WeightOutOfRange { index, weight: r.weight, min, max });
        }
    }
    Ok(())
}

fn validate_shape(shape: &[UtilizationShapePoint]) -> Result<(), ResourceArgsError> {
    if shape.is_empty() {
        return Err(ResourceArgsError::EmptyShape);
    }
    for (index, p) in shape.iter().enumerate() {
        if !(0..=MAX_UTILIZATION as i32).contains(&p.utilization) {
            return Err(ResourceArgsError::UtilizationOutOfRange {
                index,
                utilization: p.utilization,
            });
        }
        if index > 0 && p.utilization <= shape[index - 1].utilization {
            return Err(ResourceArgsError::UtilizationNotIncreasing { index });
        }
        if !(0..=MAX_CUSTOM_PRIORITY_SCORE as i32).contains(&p.score) {
            return Err(ResourceArgsError::ScoreOutOfRange { index, score: p.score });
        }
    }
    Ok(())
}

/// Kubernetes' `IsExtendedResourceName`: a domain-qualified name outside `kubernetes.io`
/// and not a quota `requests.` name. Only these can be ignored.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// What the pod requests of each resource in `resources`, in that order. Scoring for
/// spreading (`use_requested == false`) counts cpu and memory with Kubernetes' defaults for
/// containers that request none (`non_zero_*`), so empty pods still weigh something;
/// BalancedAllocation uses the plain requests.
pub(crate) fn pod_resource_requests(
    pod: &PodInfo,
    resources: &[ResourceSpec],
    use_requested: bool,
) -> Vec<i64> {
    resources
        .iter()
        .map(|r| match r.name.as_str() {
            CPU if !use_requested => pod.non_zero_milli_cpu,
            MEMORY if !use_requested => pod.non_zero_memory,
            name => pod.requests.get(name),
        })
        .collect()
}

/// Kubernetes' `calculateResourceAllocatableRequest`: the node's allocatable amount of a
/// resource and what would be requested on it with the pod. `(0, 0)` (not scored) for a
/// scalar resource the pod does not request or the node does not have.
pub(crate) fn allocatable_and_requested(
    node: &NodeInfo,
    resource: &str,
    pod_request: i64,
    use_requested: bool,
) -> (i64, i64) {
    match resource {
        CPU => {
            let used =
                if use_requested { node.requested.milli_cpu } else { node.non_zero_milli_cpu };
            (node.allocatable.milli_cpu, used + pod_request)
        }
        MEMORY => {
            let used = if use_requested { node.requested.memory } else { node.non_zero_memory };
            (node.allocatable.memory, used + pod_request)
        }
        EPHEMERAL_STORAGE => {
            (node.allocatable.ephemeral_storage, node.requested.ephemeral_storage + pod_request)
        }
        name if pod_request == 0 && is_scalar_resource(name) => (0, 0),
        name => match node.allocatable.scalar.get(name) {
            Some(&alloc) => {
                (alloc, node.requested.scalar.get(name).copied().unwrap_or(0) + pod_request)
            }
            None => (0, 0),
        },
    }
}

/// The unused share of capacity on 0..=MAX_NODE_SCORE.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The used share of capacity on 0..=MAX_NODE_SCORE. Requests above capacity (default
/// requests of pods that asked for none) count as full.
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// Kubernetes' `BuildBrokenLinearFunction` over (utilization, score) points sorted by
/// utilization: flat before the first and after the last point, linear in between.
pub fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map_or(0, |&(_, s)| s)
}

#[derive(Debug, Clone)]
enum Scorer {
    Least,
    Most,
    /// Shape points with scores scaled to 0..=MAX_NODE_SCORE.
    Ratio(Vec<(i64, i64)>),
}

#[derive(Debug)]
pub struct NodeResourcesFit {
    ignored_resources: HashSet<String>,
    ignored_resource_groups: HashSet<String>,
    resources: Vec<ResourceSpec>,
    scorer: Scorer,
}

/// What the filter checks, computed once per pod.
#[derive(Debug, Clone)]
struct PreFilterState {
    milli_cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    /// Scalar resources to check: requested, non-zero and not ignored.
    scalar: Arc<[(String, i64)]>,
}

/// The pod's requests of each scored resource, in the strategy's order.
#[derive(Debug, Clone)]
struct PreScoreState(Arc<[i64]>);

impl NodeResourcesFit {
    pub fn new(args: FitArgs) -> Result<Self, ResourceArgsError> {
        let strategy = args.scoring_strategy;
        validate_resources(&strategy.resources, 1, MAX_RESOURCE_WEIGHT)?;
        for (index, r) in args.ignored_resources.iter().enumerate() {
            if r.is_empty() {
                return Err(ResourceArgsError::EmptyIgnoredResource { index });
            }
        }
        for (index, g) in args.ignored_resource_groups.iter().enumerate() {
            if g.is_empty() || g.contains('/') {
                return Err(ResourceArgsError::InvalidResourceGroup { index, group: g.clone() });
            }
        }
        let scorer = match strategy.strategy {
            ScoringStrategyType::LeastAllocated => Scorer::Least,
            ScoringStrategyType::MostAllocated => Scorer::Most,
            ScoringStrategyType::RequestedToCapacityRatio { shape } => {
                validate_shape(&shape)?;
                let scale = MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE;
                Scorer::Ratio(
                    shape
                        .iter()
                        .map(|p| (i64::from(p.utilization), i64::from(p.score) * scale))
                        .collect(),
                )
            }
        };
        Ok(NodeResourcesFit {
            ignored_resources: args.ignored_resources.into_iter().collect(),
            ignored_resource_groups: args.ignored_resource_groups.into_iter().collect(),
            resources: strategy.resources,
            scorer,
        })
    }

    fn ignored(&self, name: &str) -> bool {
        is_extended_resource(name)
            && (self.ignored_resources.contains(name)
                || name.split('/').next().is_some_and(|g| self.ignored_resource_groups.contains(g)))
    }

    fn compute_pre_filter(&self, pod: &PodInfo) -> PreFilterState {
        let r = &pod.requests;
        PreFilterState {
            milli_cpu: r.milli_cpu,
            memory: r.memory,
            ephemeral_storage: r.ephemeral_storage,
            scalar: r
                .scalar
                .iter()
                .filter(|(name, q)| **q != 0 && !self.ignored(name))
                .map(|(name, q)| (name.clone(), *q))
                .collect(),
        }
    }
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            ignored_resources: HashSet::new(),
            ignored_resource_groups: HashSet::new(),
            resources: default_resources(),
            scorer: Scorer::Least,
        }
    }
}

/// Kubernetes' `fitsRequest`: the reasons, in Kubernetes' order (pods, cpu, memory,
/// ephemeral storage, then scalar resources), one per resource that does not fit.
fn insufficient_resources(
    s: &PreFilterState,
    node: &NodeInfo,
) -> smallvec::SmallVec<[crate::framework::Reason; 1]> {
    let mut reasons = smallvec::SmallVec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        reasons.push("Too many pods".into());
    }
    if s.milli_cpu == 0 && s.memory == 0 && s.ephemeral_storage == 0 && s.scalar.is_empty() {
        return reasons;
    }
    let (alloc, used) = (&node.allocatable, &node.requested);
    if s.milli_cpu > 0 && s.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        reasons.push("Insufficient cpu".into());
    }
    if s.memory > 0 && s.memory > alloc.memory - used.memory {
        reasons.push("Insufficient memory".into());
    }
    if s.ephemeral_storage > 0
        && s.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, q) in s.scalar.iter() {
        let free = alloc.scalar.get(name).copied().unwrap_or(0)
            - used.scalar.get(name).copied().unwrap_or(0);
        if *q > free {
            reasons.push(format!("Insufficient {name}").into());
        }
    }
    reasons
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // Resources free up when a pod goes away, or a node is added or grows.
        vec![
            ClusterEvent::new(Resource::Pod, Action::Delete),
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
        ]
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        state.write(PRE_FILTER_KEY, self.compute_pre_filter(pod));
        (None, Status::success())
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return missing_state(PRE_FILTER_KEY);
        };
        let reasons = insufficient_resources(s, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status { code: Code::Unschedulable, reasons, plugin: "" }
        }
    }
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let requests = pod_resource_requests(pod, &self.resources, false);
        state.write(PRE_SCORE_KEY, PreScoreState(requests.into()));
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        // Like Kubernetes, compute the requests here when pre-score did not run.
        let requests: Cow<'_, [i64]> = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(PreScoreState(r)) => Cow::Borrowed(&r[..]),
            None => Cow::Owned(pod_resource_requests(pod, &self.resources, false)),
        };
        let (mut node_score, mut weight_sum) = (0i64, 0i64);
        for (spec, &pod_request) in self.resources.iter().zip(requests.iter()) {
            let (alloc, requested) =
                allocatable_and_requested(node, &spec.name, pod_request, false);
            if alloc == 0 {
                continue;
            }
            let score = match &self.scorer {
                Scorer::Least => least_requested_score(requested, alloc),
                Scorer::Most => most_requested_score(requested, alloc),
                Scorer::Ratio(shape) => {
                    let utilization = if requested > alloc {
                        MAX_UTILIZATION
                    } else {
                        requested * MAX_UTILIZATION / alloc
                    };
                    let s = broken_linear(shape, utilization);
                    // RequestedToCapacityRatio leaves resources that score 0 out of the mean.
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            node_score += score * spec.weight;
            weight_sum += spec.weight;
        }
        if weight_sum == 0 {
            return (0, Status::success());
        }
        let score = match self.scorer {
            Scorer::Ratio(_) => (node_score as f64 / weight_sum as f64).round() as i64,
            _ => node_score / weight_sum,
        };
        (score, Status::success())
    }
}

#[cfg(test)]
mod tests;
