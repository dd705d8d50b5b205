//! TaintToleration: a pod may not land on a node with a `NoSchedule` or `NoExecute` taint it
//! does not tolerate; among the rest, nodes with fewer untolerated `PreferNoSchedule`
//! taints score higher.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreScorePlugin, Resource, ScorePlugin, Status,
};
use crate::plugins::helper::{default_normalize_score, missing_state};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo, tolerated_by};

pub const NAME: &str = "TaintToleration";

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";
const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

#[derive(Debug, Default)]
pub struct TaintToleration;

/// The pod's tolerations that can tolerate a `PreferNoSchedule` taint (that effect, or
/// none, which means every effect).
#[derive(Debug, Clone)]
struct PreferNoScheduleTolerations(Arc<[Toleration]>);

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerated_by(tolerations, taint)
}

/// Kubernetes' filter reason, `node(s) had untolerated taint {key: value}` (Go's `%s` of
/// an empty value prints nothing, so a taint without value reads `{key: }`).
pub fn untolerated_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
        ]
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let untolerated = node.taints.iter().find(|taint| {
            (taint.effect == NO_SCHEDULE || taint.effect == NO_EXECUTE)
                && !tolerated(&pod.tolerations, taint)
        });
        match untolerated {
            None => Status::success(),
            Some(taint) => Status::unresolvable(untolerated_reason(taint)),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let relevant: Arc<[Toleration]> = pod
            .tolerations
            .iter()
            .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == PREFER_NO_SCHEDULE))
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreferNoScheduleTolerations(relevant));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    /// The number of `PreferNoSchedule` taints the pod does not tolerate; normalize turns
    /// fewer into better.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(PreferNoScheduleTolerations(tolerations)) =
            state.read::<PreferNoScheduleTolerations>(PRE_SCORE_KEY)
        else {
            return (0, missing_state(PRE_SCORE_KEY));
        };
        let count = node
            .taints
            .iter()
            .filter(|t| t.effect == PREFER_NO_SCHEDULE && !tolerated(tolerations, t))
            .count();
        (count as i64, Status::success())
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            ..Default::default()
        }
    }

    fn node_with_taints(name: &str, taints: Vec<Taint>) -> NodeInfo {
        let mut n = node(name, &[]);
        n.spec.as_mut().unwrap().taints = Some(taints);
        node_info(n, vec![])
    }

    fn pod_with_tolerations(tolerations: Vec<Toleration>) -> PodInfo {
        let mut p = pod("p", &[]);
        p.spec.as_mut().unwrap().tolerations = Some(tolerations);
        pod_info(p)
    }

    #[test]
    fn taint_toleration_filter_should_reject_untolerated_no_schedule_taints() {
        let cases = vec![
            (
                "A pod having no tolerations can't be scheduled onto a node with nonempty taints",
                vec![],
                vec![taint("dedicated", "user1", "NoSchedule")],
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                "A pod which can be scheduled on a dedicated node assigned to user1 with effect NoSchedule",
                vec![toleration("dedicated", "Equal", "user1", "NoSchedule")],
                vec![taint("dedicated", "user1", "NoSchedule")],
                None,
            ),
            (
                "A pod which can't be scheduled on a dedicated node assigned to user2 with effect NoSchedule",
                vec![toleration("dedicated", "Equal", "user2", "NoSchedule")],
                vec![taint("dedicated", "user1", "NoSchedule")],
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                "A pod can be scheduled onto the node, with a toleration uses operator Exists that tolerates the taints on the node",
                vec![toleration("foo", "Exists", "", "NoSchedule")],
                vec![taint("foo", "bar", "NoSchedule")],
                None,
            ),
            (
                "A pod has multiple tolerations, node has multiple taints, all the taints are tolerated, pod can be scheduled onto the node",
                vec![
                    toleration("dedicated", "Equal", "user2", "NoSchedule"),
                    toleration("foo", "Exists", "", "NoSchedule"),
                ],
                vec![taint("dedicated", "user2", "NoSchedule"), taint("foo", "bar", "NoSchedule")],
                None,
            ),
            (
                "A pod has a toleration that keys and values match the taint on the node, but (non-empty) effect doesn't match, can't be scheduled onto the node",
                vec![toleration("foo", "Equal", "bar", "PreferNoSchedule")],
                vec![taint("foo", "bar", "NoSchedule")],
                Some("node(s) had untolerated taint {foo: bar}"),
            ),
            (
                "The pod has a toleration that keys and values match the taint on the node, the effect of toleration is empty, and the effect of taint is NoSchedule. Pod can be scheduled onto the node",
                vec![toleration("foo", "Equal", "bar", "")],
                vec![taint("foo", "bar", "NoSchedule")],
                None,
            ),
            (
                "The pod has a toleration that key and value don't match the taint on the node, but the effect of taint on node is PreferNoSchedule. Pod can be scheduled onto the node",
                vec![toleration("dedicated", "Equal", "user2", "NoSchedule")],
                vec![taint("dedicated", "user1", "PreferNoSchedule")],
                None,
            ),
            (
                "The pod has no toleration, but the effect of taint on node is PreferNoSchedule. Pod can be scheduled onto the node",
                vec![],
                vec![taint("dedicated", "user1", "PreferNoSchedule")],
                None,
            ),
            (
                "A NoExecute taint rejects a pod that does not tolerate it, and a taint without value prints none",
                vec![],
                vec![taint("node.kubernetes.io/not-ready", "", "NoExecute")],
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
        ];
        for (name, tolerations, taints, want) in cases {
            let status = TaintToleration.filter(
                &CycleState::default(),
                &pod_with_tolerations(tolerations),
                &node_with_taints("n", taints),
            );
            match want {
                None => assert!(status.is_success(), "{name}: {status:?}"),
                Some(reason) => {
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(status.reasons.to_vec(), vec![reason.to_string()], "{name}");
                }
            }
        }
    }

    #[test]
    fn taint_toleration_score_should_prefer_nodes_with_fewer_untolerated_prefer_no_schedule_taints()
    {
        let pns = "PreferNoSchedule";
        let cases = vec![
            (
                "node with taints tolerated by the pod, gets a higher score than those node with intolerable taints",
                vec![toleration("foo", "Equal", "bar", pns)],
                vec![vec![taint("foo", "bar", pns)], vec![taint("foo", "blah", pns)]],
                vec![100, 0],
            ),
            (
                "the nodes that all of their taints are tolerated by the pod, get the same score, no matter how many tolerable taints a node has",
                vec![
                    toleration("cpu-type", "Equal", "arm64", pns),
                    toleration("disk-type", "Equal", "ssd", pns),
                ],
                vec![
                    vec![],
                    vec![taint("cpu-type", "arm64", pns)],
                    vec![taint("cpu-type", "arm64", pns), taint("disk-type", "ssd", pns)],
                ],
                vec![100, 100, 100],
            ),
            (
                "the more intolerable taints a node has, the lower score it gets.",
                vec![toleration("foo", "Equal", "bar", pns)],
                vec![
                    vec![],
                    vec![taint("cpu-type", "arm64", pns)],
                    vec![taint("cpu-type", "arm64", pns), taint("disk-type", "ssd", pns)],
                ],
                vec![100, 50, 0],
            ),
            (
                "only taints and tolerations that have effect PreferNoSchedule are checked by prioritizeTaints function",
                vec![
                    toleration("cpu-type", "Equal", "arm64", "NoSchedule"),
                    toleration("disk-type", "Equal", "ssd", "NoSchedule"),
                ],
                vec![
                    vec![],
                    vec![taint("cpu-type", "arm64", "NoSchedule")],
                    vec![taint("cpu-type", "arm64", pns), taint("disk-type", "ssd", pns)],
                ],
                vec![100, 100, 0],
            ),
            (
                "Default behaviour No taints and tolerations, lands on node with no taints",
                vec![],
                vec![vec![], vec![taint("cpu-type", "arm64", pns)]],
                vec![100, 0],
            ),
        ];
        for (name, tolerations, node_taints, want) in cases {
            let pod = pod_with_tolerations(tolerations);
            let nodes: Vec<Arc<NodeInfo>> = node_taints
                .into_iter()
                .enumerate()
                .map(|(i, t)| Arc::new(node_with_taints(&format!("n{i}"), t)))
                .collect();
            let plugin = TaintToleration;
            let mut state = CycleState::default();
            assert!(plugin.pre_score(&mut state, &pod, &nodes, &Snapshot::default()).is_success());
            let mut scores: Vec<NodeScore> = nodes
                .iter()
                .map(|n| {
                    let (score, status) = plugin.score(&state, &pod, n);
                    assert!(status.is_success(), "{name}");
                    NodeScore { name: n.name.clone(), score }
                })
                .collect();
            assert!(plugin.normalize(&state, &pod, &mut scores).is_success());
            let got: Vec<i64> = scores.iter().map(|s| s.score).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
