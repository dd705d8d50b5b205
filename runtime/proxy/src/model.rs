//! What the node proxy serves, computed from the API objects alone (pure): each Service port
//! (ClusterIP, port, protocol) with its endpoints from the EndpointSlices, kube-proxy's
//! `ServicePortMap` and `EndpointsMap` in one. The endpoint choice rules (ready endpoints,
//! else serving-and-terminating ones; `Local` traffic policies) live here too, so the
//! nftables rules and the in-process route for Wasm guests choose alike.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_runtime_core::services::Protocol;

/// The label joining an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// A Service carrying this label is served by another proxy (kube-proxy skips it too).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// An IPv4 block (`10.96.0.0/12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        let (ip, bits) = s.trim().split_once('/')?;
        let addr: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = bits.parse().ok()?;
        (prefix <= 32)
            .then(|| Ipv4Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A Service by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey { namespace: namespace.to_string(), name: name.to_string() }
    }

    pub fn of_service(svc: &Service) -> Option<ServiceKey> {
        Some(ServiceKey {
            namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: svc.metadata.name.clone()?,
        })
    }

    /// The Service a slice belongs to, by its `kubernetes.io/service-name` label.
    pub fn of_slice(slice: &EndpointSlice) -> Option<ServiceKey> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ServiceKey {
            namespace: slice.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: name.clone(),
        })
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service (kube-proxy's `ServicePortName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub service: ServiceKey,
    /// The port's name; empty for the single unnamed port a Service may have.
    pub port: String,
    pub protocol: Protocol,
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
}

/// A Service port as the proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// ClientIP session affinity's timeout, when the Service asks for it.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes to this node's endpoints only.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: NodePort traffic goes to this node's endpoints only.
    pub external_local: bool,
    /// Every endpoint of every slice, sorted, one per address and port.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    pub fn protocol(&self) -> Protocol {
        self.name.protocol
    }

    /// kube-proxy's choice among `candidates`: the ready ones, else (so connections keep
    /// working during a rollout whose old pods are all terminating) the serving ones that
    /// are terminating.
    fn usable<'a>(candidates: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
        let ready: Vec<&Endpoint> = candidates.clone().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates.filter(|e| e.serving && e.terminating).collect()
    }

    /// The endpoints any node may send this port's traffic to.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        Self::usable(self.endpoints.iter())
    }

    /// The endpoints on `node`.
    pub fn local_endpoints(&self, node: &str) -> Vec<&Endpoint> {
        Self::usable(self.endpoints.iter().filter(move |e| e.node_name.as_deref() == Some(node)))
    }

    /// Where ClusterIP traffic from `node` goes (internal traffic policy applied).
    pub fn internal_endpoints(&self, node: &str) -> Vec<&Endpoint> {
        if self.internal_local { self.local_endpoints(node) } else { self.cluster_endpoints() }
    }

    /// Where NodePort traffic arriving at `node` goes (external traffic policy applied).
    pub fn external_endpoints(&self, node: &str) -> Vec<&Endpoint> {
        if self.external_local { self.local_endpoints(node) } else { self.cluster_endpoints() }
    }
}

/// The proxy's ports of `svc`, with their endpoints from `slices` (those labelled with its
/// name). Empty for what the proxy does not serve: headless and ExternalName Services, those
/// without an IPv4 ClusterIP, and those another proxy serves.
pub fn service_ports(svc: &Service, slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    let Some(key) = ServiceKey::of_service(svc) else {
        return Vec::new();
    };
    if svc.metadata.labels.as_ref().is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL)) {
        return Vec::new();
    }
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
    let Some(cluster_ip) = ips.filter_map(|ip| ip.parse::<Ipv4Addr>().ok()).next() else {
        // Headless ("None") or IPv6-only.
        return Vec::new();
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref().unwrap_or("")) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        let mut endpoints = Vec::new();
        let mut seen = HashSet::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            // A slice's port matches the Service's by name (and protocol).
            let slice_port = slice.ports.iter().flatten().find(|sp| {
                sp.name.as_deref().unwrap_or("") == port_name
                    && Protocol::parse(sp.protocol.as_deref().unwrap_or("")) == Some(protocol)
            });
            let Some(target) =
                slice_port.and_then(|sp| sp.port).and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let cond = ep.conditions.as_ref();
                // Unset conditions mean "unknown": Kubernetes treats them as ready/serving.
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    if seen.insert((ip, target)) {
                        endpoints.push(Endpoint {
                            ip,
                            port: target,
                            ready,
                            serving,
                            terminating,
                            node_name: ep.node_name.clone(),
                        });
                    }
                }
            }
        }
        endpoints.sort();
        out.push(ServicePort {
            name: ServicePortName { service: key.clone(), port: port_name, protocol },
            cluster_ip,
            port,
            node_port: p.node_port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0),
            affinity_timeout,
            internal_local,
            external_local,
            endpoints,
        });
    }
    out
}

/// Every served Service port, by Service and by address. Cheap to clone (ports are shared).
#[derive(Debug, Clone, Default)]
pub struct ServiceMap {
    by_service: HashMap<ServiceKey, Arc<[ServicePort]>>,
    by_addr: HashMap<(Ipv4Addr, u16, Protocol), (ServiceKey, usize)>,
    by_node_port: HashMap<(u16, Protocol), (ServiceKey, usize)>,
}

impl ServiceMap {
    /// The map of `services` with the `slices` joined to them.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> ServiceMap {
        let mut by_key: HashMap<ServiceKey, Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            if let Some(k) = ServiceKey::of_slice(s) {
                by_key.entry(k).or_default().push(s);
            }
        }
        let mut map = ServiceMap::default();
        for svc in services {
            if let Some(key) = ServiceKey::of_service(svc) {
                let slices = by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
                map.set(key, service_ports(svc, slices));
            }
        }
        map
    }

    /// Replace the ports of `key` (none: the Service is gone or not served).
    pub fn set(&mut self, key: ServiceKey, ports: Vec<ServicePort>) {
        if let Some(old) = self.by_service.remove(&key) {
            for p in old.iter() {
                let a = (p.cluster_ip, p.port, p.protocol());
                if self.by_addr.get(&a).is_some_and(|(k, _)| *k == key) {
                    self.by_addr.remove(&a);
                }
                if let Some(np) = p.node_port {
                    let n = (np, p.protocol());
                    if self.by_node_port.get(&n).is_some_and(|(k, _)| *k == key) {
                        self.by_node_port.remove(&n);
                    }
                }
            }
        }
        if ports.is_empty() {
            return;
        }
        for (i, p) in ports.iter().enumerate() {
            self.by_addr.insert((p.cluster_ip, p.port, p.protocol()), (key.clone(), i));
            if let Some(np) = p.node_port {
                self.by_node_port.insert((np, p.protocol()), (key.clone(), i));
            }
        }
        self.by_service.insert(key, ports.into());
    }

    pub fn get(&self, key: &ServiceKey) -> Option<&[ServicePort]> {
        self.by_service.get(key).map(|p| &p[..])
    }

    /// The Service port at a ClusterIP.
    pub fn lookup(&self, ip: Ipv4Addr, port: u16, protocol: Protocol) -> Option<&ServicePort> {
        let (k, i) = self.by_addr.get(&(ip, port, protocol))?;
        self.by_service.get(k)?.get(*i)
    }

    /// The Service port of a NodePort.
    pub fn lookup_node_port(&self, port: u16, protocol: Protocol) -> Option<&ServicePort> {
        let (k, i) = self.by_node_port.get(&(port, protocol))?;
        self.by_service.get(k)?.get(*i)
    }

    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &[ServicePort])> {
        self.by_service.iter().map(|(k, v)| (k, &v[..]))
    }

    /// Number of served Services.
    pub fn len(&self) -> usize {
        self.by_service.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests;
