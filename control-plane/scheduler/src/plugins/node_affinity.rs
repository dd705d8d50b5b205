//! NodeAffinity: a pod goes only to nodes matching its `nodeSelector` and its required node
//! affinity terms (and the scheduler-enforced `addedAffinity`, if configured); among those,
//! nodes matching more of its preferred terms (by weight) score higher.
//!
//! Terms are read the way Kubernetes' `nodeaffinity` helpers parse them: a required term
//! with an invalid requirement never matches, an empty term matches nothing, and a
//! preferred term with weight 0 or no requirements is ignored.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeAffinity as NodeAffinitySpec, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm,
};

use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, Resource, ScorePlugin, Status,
};
use crate::plugins::helper::default_normalize_score;
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo, node_selector_term_matches};

pub const NAME: &str = "NodeAffinity";

const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

/// Kubernetes' `ErrReasonPod`.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// The node does not match the profile's `addedAffinity`.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
/// Every required term names nodes by `metadata.name`, and no name satisfies them.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

const OBJECT_NAME_FIELD: &str = "metadata.name";

/// `NodeAffinityArgs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeAffinityArgs {
    /// Affinity applied to every pod of the profile on top of its own: required terms
    /// filter, preferred terms add to the score.
    pub added_affinity: Option<NodeAffinitySpec>,
}

/// Invalid `addedAffinity` (a configuration error, permanent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeAffinityArgsError {
    #[error(
        "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution: must have at least one node selector term"
    )]
    NoRequiredTerms,
    #[error(
        "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{index}]: {reason}"
    )]
    InvalidRequiredTerm { index: usize, reason: String },
    #[error(
        "addedAffinity.preferredDuringSchedulingIgnoredDuringExecution[{index}].weight: {weight} must be in the range 1-100"
    )]
    InvalidWeight { index: usize, weight: i32 },
    #[error(
        "addedAffinity.preferredDuringSchedulingIgnoredDuringExecution[{index}].preference: {reason}"
    )]
    InvalidPreferredTerm { index: usize, reason: String },
}

#[derive(Debug, Default)]
pub struct NodeAffinity {
    /// `None`: no enforced affinity. `Some`: the node must match one of these terms.
    added_required: Option<Vec<NodeSelectorTerm>>,
    added_preferred: Vec<(i64, NodeSelectorTerm)>,
}

/// The pod's required terms that parse (`None` when it has no required affinity). An
/// empty list matches no node.
#[derive(Debug, Clone)]
struct RequiredTerms(Option<Arc<[NodeSelectorTerm]>>);

/// The pod's preferred terms worth scoring, with their weights.
#[derive(Debug, Clone)]
struct PreferredTerms(Arc<[(i64, NodeSelectorTerm)]>);

impl NodeAffinity {
    pub fn new(args: NodeAffinityArgs) -> Result<Self, NodeAffinityArgsError> {
        let Some(added) = args.added_affinity else { return Ok(NodeAffinity::default()) };
        let added_required = match added.required_during_scheduling_ignored_during_execution {
            None => None,
            Some(NodeSelector { node_selector_terms }) => {
                if node_selector_terms.is_empty() {
                    return Err(NodeAffinityArgsError::NoRequiredTerms);
                }
                for (index, term) in node_selector_terms.iter().enumerate() {
                    if let Err(reason) = check_term(term) {
                        return Err(NodeAffinityArgsError::InvalidRequiredTerm { index, reason });
                    }
                }
                Some(node_selector_terms)
            }
        };
        let mut added_preferred = Vec::new();
        for (index, p) in added
            .preferred_during_scheduling_ignored_during_execution
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !(1..=100).contains(&p.weight) {
                return Err(NodeAffinityArgsError::InvalidWeight { index, weight: p.weight });
            }
            if let Err(reason) = check_term(&p.preference) {
                return Err(NodeAffinityArgsError::InvalidPreferredTerm { index, reason });
            }
            if !is_empty_term(&p.preference) {
                added_preferred.push((i64::from(p.weight), p.preference));
            }
        }
        Ok(NodeAffinity { added_required, added_preferred })
    }
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_deref().unwrap_or_default().is_empty()
        && term.match_fields.as_deref().unwrap_or_default().is_empty()
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    node_selector_term_matches(term, &node.name, &node.labels)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters: a label name or
/// value (values may also be empty).
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A lowercase RFC 1123 subdomain (a label key's prefix).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Kubernetes' `IsQualifiedName`: `[prefix/]name`.
fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        None => is_label_name(key),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
    }
}

/// Why a label requirement does not parse (Kubernetes' `labels.NewRequirement`).
fn check_label_requirement(r: &NodeSelectorRequirement) -> Result<(), String> {
    if !is_qualified_name(&r.key) {
        return Err(format!("key {:?} is not a valid label key", r.key));
    }
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            return Err("values set must be empty for exists and does not exist".into());
        }
        "Gt" | "Lt" if values.len() != 1 => {
            return Err("for 'Gt', 'Lt' operators, exactly one value is required".into());
        }
        "Gt" | "Lt" if values[0].parse::<i64>().is_err() => {
            return Err(format!(
                "for 'Gt', 'Lt' operators, the value must be an integer: {:?}",
                values[0]
            ));
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => return Err(format!("operator {other:?} is not supported")),
    }
    match values.iter().find(|v| !v.is_empty() && !is_label_name(v)) {
        Some(v) => Err(format!("value {v:?} is not a valid label value")),
        None => Ok(()),
    }
}

/// Why a field requirement does not parse: `In`/`NotIn` with exactly one value.
fn check_field_requirement(r: &NodeSelectorRequirement) -> Result<(), String> {
    match r.operator.as_str() {
        "In" | "NotIn" if r.values.as_ref().is_some_and(|v| v.len() == 1) => Ok(()),
        "In" | "NotIn" => Err(format!("field {:?}: values must have one element", r.key)),
        other => Err(format!("field {:?}: operator {other:?} is not supported", r.key)),
    }
}

fn check_term(term: &NodeSelectorTerm) -> Result<(), String> {
    term.match_expressions.iter().flatten().try_for_each(check_label_requirement)?;
    term.match_fields.iter().flatten().try_for_each(check_field_requirement)
}

fn required_spec(pod: &PodInfo) -> Option<&NodeSelector> {
    pod.pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

fn preferred_spec(pod: &PodInfo) -> Option<&[PreferredSchedulingTerm]> {
    pod.pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .preferred_during_scheduling_ignored_during_execution
        .as_deref()
}

fn required_terms(pod: &PodInfo) -> RequiredTerms {
    RequiredTerms(required_spec(pod).map(|ns| {
        ns.node_selector_terms.iter().filter(|t| check_term(t).is_ok()).cloned().collect()
    }))
}

/// The pod's preferred terms worth scoring; an invalid one is an error, as in Kubernetes.
fn preferred_terms(pod: &PodInfo) -> Result<PreferredTerms, Status> {
    let mut terms = Vec::new();
    for (i, p) in preferred_spec(pod).unwrap_or_default().iter().enumerate() {
        if p.weight == 0 || is_empty_term(&p.preference) {
            continue;
        }
        if let Err(reason) = check_term(&p.preference) {
            return Err(Status::error(format!(
                "preferredDuringSchedulingIgnoredDuringExecution[{i}].preference: {reason}"
            )));
        }
        terms.push((i64::from(p.weight), p.preference.clone()));
    }
    Ok(PreferredTerms(terms.into()))
}

/// `spec.nodeSelector`: every pair must be a label of the node.
fn node_selector_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)))
}

/// The nodes the required terms name by `metadata.name`, when every term does (terms are
/// ORed, the requirements within one ANDed). `Some(empty)`: they contradict each other.
fn named_nodes(terms: &[NodeSelectorTerm]) -> Option<HashSet<String>> {
    let mut union: HashSet<String> = HashSet::new();
    for term in terms {
        let mut names: Option<HashSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key != OBJECT_NAME_FIELD || r.operator != "In" {
                continue;
            }
            let values: HashSet<String> = r.values.iter().flatten().cloned().collect();
            names = Some(match names {
                None => values,
                Some(prev) => prev.intersection(&values).cloned().collect(),
            });
        }
        // A term without a name requirement admits every node.
        union.extend(names?);
    }
    Some(union)
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // Only node labels decide; they come with a new node or a node update.
        vec![
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
        ]
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let required = required_spec(pod);
        let has_selector = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        if required.is_none() && self.added_required.is_none() && !has_selector {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, required_terms(pod));
        let terms = required.map(|r| r.node_selector_terms.as_slice()).unwrap_or_default();
        if terms.is_empty() {
            return (None, Status::success());
        }
        match named_nodes(terms) {
            None => (None, Status::success()),
            Some(names) if names.is_empty() => (None, Status::unresolvable(ERR_REASON_CONFLICT)),
            Some(names) => (Some(PreFilterResult { node_names: Some(names) }), Status::success()),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if let Some(added) = &self.added_required
            && !added.iter().any(|t| term_matches(t, node))
        {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        // Like Kubernetes, work the terms out here when pre-filter did not run.
        let terms = match state.read::<RequiredTerms>(PRE_FILTER_KEY) {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(required_terms(pod)),
        };
        let terms_match =
            terms.0.as_ref().is_none_or(|ts| ts.iter().any(|t| term_matches(t, node)));
        if node_selector_matches(pod, node) && terms_match {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let terms = match preferred_terms(pod) {
            Ok(t) => t,
            Err(status) => return status,
        };
        if terms.0.is_empty() && self.added_preferred.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, terms);
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    /// The sum of the weights of the preferred terms (the pod's and the added ones) the
    /// node matches.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let terms = match state.read::<PreferredTerms>(PRE_SCORE_KEY) {
            Some(t) => Cow::Borrowed(t),
            None => match preferred_terms(pod) {
                Ok(t) => Cow::Owned(t),
                Err(status) => return (0, status),
            },
        };
        let score = self
            .added_preferred
            .iter()
            .chain(terms.0.iter())
            .filter(|(_, t)| term_matches(t, node))
            .map(|(w, _)| w)
            .sum();
        (score, Status::success())
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests;
