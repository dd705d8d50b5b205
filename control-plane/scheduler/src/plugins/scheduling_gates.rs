//! SchedulingGates: a pod with `spec.schedulingGates` waits outside the active queue until
//! every gate is removed.

use crate::framework::{Action, ClusterEvent, Plugin, PreEnqueuePlugin, Resource, Status};
use crate::types::PodInfo;

pub const NAME: &str = "SchedulingGates";

#[derive(Debug, Default)]
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // Only an update of the gated pod itself (a gate removed) can let it in.
        vec![ClusterEvent::new(Resource::Pod, Action::Update)]
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates =
            pod.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_deref()).unwrap_or_default();
        if gates.is_empty() {
            return Status::success();
        }
        // Go's `%v` of a []string: "[a b]".
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        Status::unresolvable(format!("waiting for scheduling gates: [{}]", names.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::PodSchedulingGate;

    #[test]
    fn scheduling_gates_should_hold_pods_until_every_gate_is_removed() {
        // (name, gates, rejection)
        type Case<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("pod does not carry scheduling gates", None, None),
            ("pod carries an empty list of scheduling gates", Some(&[]), None),
            (
                "pod carries scheduling gates",
                Some(&["foo", "bar"]),
                Some("waiting for scheduling gates: [foo bar]"),
            ),
            (
                "pod carries one scheduling gate",
                Some(&["example.com/quota"]),
                Some("waiting for scheduling gates: [example.com/quota]"),
            ),
        ];
        for (name, gates, want) in cases {
            let mut p = pod("p", &[]);
            p.spec.as_mut().unwrap().scheduling_gates = gates
                .map(|g| g.iter().map(|n| PodSchedulingGate { name: n.to_string() }).collect());
            let status = SchedulingGates.pre_enqueue(&pod_info(p));
            match want {
                None => assert!(status.is_success(), "{name}"),
                Some(msg) => {
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(status.reasons.to_vec(), vec![msg.to_string()], "{name}");
                }
            }
        }
    }
}
