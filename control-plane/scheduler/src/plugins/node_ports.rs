//! NodePorts: a pod's host ports must be free on the node. Only pods that ask for host
//! ports are checked; the rest skip the filter.

use std::sync::Arc;

use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult,
    Resource, Status,
};
use crate::plugins::helper::missing_state;
use crate::snapshot::Snapshot;
use crate::types::{HostPort, NodeInfo, PodInfo};

pub const NAME: &str = "NodePorts";

const PRE_FILTER_KEY: &str = "PreFilterNodePorts";

/// Kubernetes' `ErrReason` for this plugin.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug, Default)]
pub struct NodePorts;

/// The host ports the pod wants, computed once per pod.
#[derive(Debug, Clone)]
struct WantedPorts(Arc<[HostPort]>);

/// Kubernetes' `GetHostPorts`: host ports of the regular containers and of the init
/// containers that run for the pod's whole life (sidecars, `restartPolicy: Always`).
/// Ordinary init containers have exited before the others start, so their ports are not
/// held.
pub fn wanted_host_ports(pod: &PodInfo) -> Vec<HostPort> {
    let Some(spec) = pod.pod.spec.as_ref() else { return Vec::new() };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}

/// Would these ports fit next to the ports already used on `node`?
pub fn fits_ports(wanted: &[HostPort], node: &NodeInfo) -> bool {
    !wanted.iter().any(|w| node.used_ports.iter().any(|used| used.conflicts(w)))
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // A port is freed when a pod goes away; a new node has all its ports free.
        vec![
            ClusterEvent::new(Resource::Pod, Action::Delete),
            ClusterEvent::new(Resource::Node, Action::Add),
        ]
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let wanted = wanted_host_ports(pod);
        if wanted.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, WantedPorts(wanted.into()));
        (None, Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(WantedPorts(wanted)) = state.read::<WantedPorts>(PRE_FILTER_KEY) else {
            return missing_state(PRE_FILTER_KEY);
        };
        if fits_ports(wanted, node) { Status::success() } else { Status::unschedulable(ERR_REASON) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod};

    /// A pod whose container claims these "PROTOCOL/IP/PORT" host ports.
    fn pod_with_ports(name: &str, ports: &[&str]) -> Pod {
        let mut p = pod(name, &[]);
        p.spec.as_mut().unwrap().containers[0].ports = Some(
            ports
                .iter()
                .map(|spec| {
                    let parts: Vec<&str> = spec.split('/').collect();
                    ContainerPort {
                        container_port: 80,
                        protocol: Some(parts[0].into()),
                        host_ip: Some(parts[1].into()),
                        host_port: Some(parts[2].parse().unwrap()),
                        ..Default::default()
                    }
                })
                .collect(),
        );
        p
    }

    fn run(p: Pod, node: &NodeInfo) -> (Status, Status) {
        let plugin = NodePorts;
        let mut state = CycleState::default();
        let (_, pre) = plugin.pre_filter(&mut state, &pod_info(p.clone()), &Snapshot::default());
        if pre.is_skip() {
            return (pre, Status::success());
        }
        let filter = plugin.filter(&state, &pod_info(p), node);
        (pre, filter)
    }

    #[test]
    fn node_ports_should_reject_nodes_where_a_wanted_host_port_is_taken() {
        let cases: &[(&str, &[&str], &[&str], Code)] = &[
            ("other port", &["UDP/127.0.0.1/8080"], &["UDP/127.0.0.1/9090"], Code::Success),
            (
                "same udp port",
                &["UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/8080"],
                Code::Unschedulable,
            ),
            (
                "same tcp port",
                &["TCP/127.0.0.1/8080"],
                &["TCP/127.0.0.1/8080"],
                Code::Unschedulable,
            ),
            ("different host ip", &["TCP/127.0.0.1/8080"], &["TCP/127.0.0.2/8080"], Code::Success),
            ("different protocol", &["UDP/127.0.0.1/8080"], &["TCP/127.0.0.1/8080"], Code::Success),
            (
                "second udp port conflict",
                &["UDP/127.0.0.1/8000", "UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/8080"],
                Code::Unschedulable,
            ),
            (
                "first tcp port conflict",
                &["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8080"],
                &["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8081"],
                Code::Unschedulable,
            ),
            (
                "first tcp port conflict due to 0.0.0.0 hostIP",
                &["TCP/0.0.0.0/8001"],
                &["TCP/127.0.0.1/8001"],
                Code::Unschedulable,
            ),
            (
                "TCP hostPort conflict due to 0.0.0.0 hostIP",
                &["TCP/10.0.10.10/8001", "TCP/0.0.0.0/8001"],
                &["TCP/127.0.0.1/8001"],
                Code::Unschedulable,
            ),
            (
                "second tcp port conflict to 0.0.0.0 hostIP",
                &["TCP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001"],
                Code::Unschedulable,
            ),
            (
                "second different protocol",
                &["UDP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001"],
                Code::Success,
            ),
            (
                "UDP hostPort conflict due to 0.0.0.0 hostIP",
                &["UDP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001", "UDP/0.0.0.0/8001"],
                Code::Unschedulable,
            ),
        ];
        for (name, wanted, used, code) in cases {
            let node = node_info(node("n", &[]), vec![pod_with_ports("existing", used)]);
            let (pre, status) = run(pod_with_ports("p", wanted), &node);
            assert!(pre.is_success(), "{name}: pre-filter {pre:?}");
            assert_eq!(status.code, *code, "{name}");
            if *code != Code::Success {
                assert_eq!(status.reasons.to_vec(), vec![ERR_REASON.to_string()], "{name}");
            }
        }
    }

    #[test]
    fn node_ports_should_skip_pods_without_host_ports() {
        let node = node_info(node("n", &[]), vec![pod_with_ports("existing", &["TCP/0.0.0.0/80"])]);
        let mut p = pod("p", &[]);
        p.spec.as_mut().unwrap().containers[0].ports =
            Some(vec![ContainerPort { container_port: 80, ..Default::default() }]);
        let (pre, status) = run(p, &node);
        assert_eq!(pre.code, Code::Skip);
        assert!(status.is_success());
    }

    #[test]
    fn node_ports_should_count_sidecars_but_not_ordinary_init_containers() {
        let node =
            node_info(node("n", &[]), vec![pod_with_ports("existing", &["TCP/0.0.0.0/8080"])]);
        let init_with_port = |restart: Option<&str>| {
            let mut p = pod("p", &[]);
            let ports = pod_with_ports("x", &["TCP/0.0.0.0/8080"]).spec.unwrap().containers[0]
                .ports
                .clone();
            p.spec.as_mut().unwrap().init_containers = Some(vec![Container {
                name: "init".into(),
                ports,
                restart_policy: restart.map(str::to_string),
                ..Default::default()
            }]);
            p
        };
        let (pre, _) = run(init_with_port(None), &node);
        assert_eq!(pre.code, Code::Skip, "ordinary init container");
        let (_, status) = run(init_with_port(Some("Always")), &node);
        assert_eq!(status.code, Code::Unschedulable, "sidecar");
    }

    #[test]
    fn node_ports_filter_should_error_without_pre_filter_state() {
        let node = node_info(node("n", &[]), vec![]);
        let status = NodePorts.filter(&CycleState::default(), &pod_info(pod("p", &[])), &node);
        assert_eq!(status.code, Code::Error);
        assert_eq!(status.message(), "reading \"PreFilterNodePorts\" from cycleState: not found");
    }
}
