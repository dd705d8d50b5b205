//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do).

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{Action, ClusterEvent, CycleState, FilterPlugin, Plugin, Resource, Status};
use crate::types::{NodeInfo, PodInfo, tolerated_by};

pub const NAME: &str = "NodeUnschedulable";

/// Kubernetes' `ErrReasonUnschedulable`.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// The taint the node lifecycle puts on cordoned nodes; tolerating it tolerates the flag.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

static UNSCHEDULABLE_TAINT: LazyLock<Taint> = LazyLock::new(|| Taint {
    key: TAINT_NODE_UNSCHEDULABLE.to_string(),
    effect: "NoSchedule".to_string(),
    ..Default::default()
});

#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
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

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable || tolerated_by(&pod.tolerations, &UNSCHEDULABLE_TAINT) {
            return Status::success();
        }
        Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn node_unschedulable_filter_should_reject_cordoned_nodes_unless_tolerated() {
        let toleration = Toleration {
            key: Some(TAINT_NODE_UNSCHEDULABLE.into()),
            effect: Some("NoSchedule".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        let cases = [
            (
                "Does not schedule pod to unschedulable node (node.spec.unschedulable==true)",
                Some(true),
                vec![],
                Code::UnschedulableAndUnresolvable,
            ),
            ("Schedule pod to normal node", Some(false), vec![], Code::Success),
            ("Schedule pod to node with unset unschedulable", None, vec![], Code::Success),
            (
                "Schedule pod with toleration to unschedulable node (node.spec.unschedulable==true)",
                Some(true),
                vec![toleration.clone()],
                Code::Success,
            ),
            (
                "A toleration with another effect does not help",
                Some(true),
                vec![Toleration { effect: Some("NoExecute".into()), ..toleration.clone() }],
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, unschedulable, tolerations, code) in cases {
            let mut n = node("n", &[]);
            n.spec.as_mut().unwrap().unschedulable = unschedulable;
            let mut p = pod("p", &[]);
            p.spec.as_mut().unwrap().tolerations = Some(tolerations);
            let status = NodeUnschedulable.filter(
                &CycleState::default(),
                &pod_info(p),
                &node_info(n, vec![]),
            );
            assert_eq!(status.code, code, "{name}");
            if code != Code::Success {
                assert_eq!(
                    status.reasons.to_vec(),
                    vec![ERR_REASON_UNSCHEDULABLE.to_string()],
                    "{name}"
                );
            }
        }
    }
}
