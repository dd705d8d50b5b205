//! The node's cluster routes (flannel's host-gw backend and the covering routes around it),
//! through the `ip` program:
//! - the Service CIDR as a `local` route on `lo`: a ClusterIP never falls to the default
//!   gateway; with the nft reject of endpoint-less Services, a connection to one is refused
//!   at once, and to an address that is no Service's the kernel answers RST (nothing listens);
//! - the cluster CIDR as `unreachable`: a pod address of no known node fails at once rather
//!   than leaving by the default route;
//! - each other Node's `spec.podCIDR` via its InternalIP, which must be on a directly
//!   connected network (host-gw's rule), removed when the Node goes away.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use k8s_openapi::api::core::v1::Node;

use crate::model::Ipv4Cidr;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("running ip: {0}")]
    Run(#[source] std::io::Error),
    /// The process may not change routes (no CAP_NET_ADMIN): permanent for this process.
    #[error("not permitted to change routes (`{command}`): {stderr}")]
    NotPermitted { command: String, stderr: String },
    /// host-gw needs every node on one link: permanent until the network changes.
    #[error(
        "gateway {gateway} for {dest} (node {node}) is not on a directly connected network: {stderr}"
    )]
    GatewayNotConnected { dest: String, gateway: Ipv4Addr, node: String, stderr: String },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// What the routes depend on.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    pub node_name: String,
    /// This node's address: a Node with the same InternalIP shares this host and needs no
    /// route (several nodes on one machine, in tests).
    pub node_ip: Option<Ipv4Addr>,
    pub service_cidr: Option<Ipv4Cidr>,
    pub cluster_cidr: Option<Ipv4Cidr>,
}

/// A route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub gateway: Ipv4Addr,
    pub node: String,
}

/// The host-gw routes this node needs: every other Node's pod CIDR via its InternalIP (pure).
pub fn host_gateway_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    opts: &RouteOptions,
) -> BTreeMap<Ipv4Cidr, HostRoute> {
    let mut out = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if name == opts.node_name {
            continue;
        }
        let spec = node.spec.as_ref();
        let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        let Some(cidr) = cidrs
            .iter()
            .chain(spec.and_then(|s| s.pod_cidr.as_ref()))
            .find_map(|c| Ipv4Cidr::parse(c))
        else {
            continue;
        };
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        let Some(gateway) = addresses.into_iter().flatten().find_map(|a| {
            (a.type_ == "InternalIP").then(|| a.address.parse::<Ipv4Addr>().ok()).flatten()
        }) else {
            continue;
        };
        if gateway.is_loopback() || Some(gateway) == opts.node_ip {
            continue;
        }
        out.insert(cidr, HostRoute { gateway, node: name.to_string() });
    }
    out
}

/// The routes this process installed, kept in step with the Nodes.
pub struct ClusterRoutes {
    opts: RouteOptions,
    base_installed: bool,
    installed: BTreeMap<Ipv4Cidr, HostRoute>,
}

impl ClusterRoutes {
    pub fn new(opts: RouteOptions) -> ClusterRoutes {
        ClusterRoutes { opts, base_installed: false, installed: BTreeMap::new() }
    }

    /// Install the covering routes (once) and make the host-gw routes `desired`. Every
    /// route is tried; the first error is returned. Idempotent (`ip route replace`).
    pub fn sync(&mut self, desired: &BTreeMap<Ipv4Cidr, HostRoute>) -> Result<(), RouteError> {
        let mut first_error = None;
        if !self.base_installed {
            let mut ok = true;
            if let Some(c) = self.opts.service_cidr {
                let c = c.to_string();
                if let Err(e) = ip(&["route", "replace", "local", &c, "dev", "lo", "scope", "host"])
                {
                    ok = false;
                    first_error.get_or_insert(e);
                }
            }
            if let Some(c) = self.opts.cluster_cidr
                && let Err(e) = ip(&["route", "replace", "unreachable", &c.to_string()])
            {
                ok = false;
                first_error.get_or_insert(e);
            }
            self.base_installed = ok;
        }
        let gone: Vec<(Ipv4Cidr, HostRoute)> = self
            .installed
            .iter()
            .filter(|(c, r)| desired.get(c) != Some(r))
            .map(|(c, r)| (*c, r.clone()))
            .collect();
        for (cidr, route) in gone {
            let (c, g) = (cidr.to_string(), route.gateway.to_string());
            match ip(&["route", "del", &c, "via", &g]) {
                Ok(()) => {}
                // Already gone (someone else removed it, or the link went down).
                Err(RouteError::Failed { stderr, .. }) if stderr.contains("No such process") => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            }
            self.installed.remove(&cidr);
        }
        for (cidr, route) in desired {
            if self.installed.get(cidr) == Some(route) {
                continue;
            }
            let (c, g) = (cidr.to_string(), route.gateway.to_string());
            match ip(&["route", "replace", &c, "via", &g]) {
                Ok(()) => {
                    self.installed.insert(*cidr, route.clone());
                }
                Err(RouteError::Failed { stderr, .. })
                    if stderr.contains("invalid gateway") || stderr.contains("unreachable") =>
                {
                    first_error.get_or_insert(RouteError::GatewayNotConnected {
                        dest: c,
                        gateway: route.gateway,
                        node: route.node.clone(),
                        stderr,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Run `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), RouteError> {
    let out = Command::new("ip").args(args).output().map_err(RouteError::Run)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let command = format!("ip {}", args.join(" "));
    if stderr.contains("Operation not permitted") {
        Err(RouteError::NotPermitted { command, stderr })
    } else {
        Err(RouteError::Failed { command, stderr })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec { pod_cidr: cidr.map(Into::into), ..Default::default() }),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn host_gateway_routes_should_route_other_nodes_pod_cidrs_via_their_internal_ip() {
        let opts = RouteOptions {
            node_name: "a".into(),
            node_ip: Some("192.168.1.1".parse().unwrap()),
            ..Default::default()
        };
        let nodes = [
            node("a", Some("10.244.0.0/24"), "192.168.1.1"),
            node("b", Some("10.244.1.0/24"), "192.168.1.2"),
            node("c", None, "192.168.1.3"),
            node("same-host", Some("10.244.3.0/24"), "192.168.1.1"),
            node("loop", Some("10.244.4.0/24"), "127.0.0.1"),
        ];
        let routes = host_gateway_routes(&nodes, &opts);
        let want: BTreeMap<Ipv4Cidr, HostRoute> = [(
            Ipv4Cidr::parse("10.244.1.0/24").unwrap(),
            HostRoute { gateway: "192.168.1.2".parse().unwrap(), node: "b".into() },
        )]
        .into();
        assert_eq!(routes, want);
    }
}
