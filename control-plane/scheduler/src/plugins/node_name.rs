//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node. Such pods
//! are normally bound already and never reach the scheduler; the filter matters when the
//! framework is asked "would this pod fit there?" (preemption, simulations).

use crate::framework::{Action, ClusterEvent, CycleState, FilterPlugin, Plugin, Resource, Status};
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";

/// Kubernetes' `ErrReason` for this plugin.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
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

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.node_name.is_empty() || pod.node_name == node.name {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;

    #[test]
    fn node_name_filter_should_match_only_the_requested_node() {
        let cases = [
            ("no host specified", "", Code::Success),
            ("host matches", "foo", Code::Success),
            ("host doesn't match", "bar", Code::UnschedulableAndUnresolvable),
        ];
        let node = node_info(node("foo", &[]), vec![]);
        for (name, wanted, code) in cases {
            let mut p = pod("p", &[]);
            p.spec.as_mut().unwrap().node_name = (!wanted.is_empty()).then(|| wanted.to_string());
            let status = NodeName.filter(&CycleState::default(), &pod_info(p), &node);
            assert_eq!(status.code, code, "{name}");
            if code != Code::Success {
                assert_eq!(status.reasons.to_vec(), vec![ERR_REASON.to_string()], "{name}");
            }
        }
    }
}
