//! What NetworkPolicy allows, computed from the API objects alone (pure): every pod address
//! with the ingress and egress rules that apply to it (the policies selecting its pod, their
//! peers resolved to address ranges), and the check of one connection against them. The
//! nftables rules ([`crate::nft`]) and the in-process checks for Wasm guests are both
//! rendered from one [`PolicyModel`], so the kernel and the Wasm runtime decide alike.
//!
//! Semantics are the `networking.k8s.io/v1` ones: a pod selected by no policy for a
//! direction allows everything in that direction; a selected pod allows only what the rules
//! of the policies selecting it allow (their union). A connection needs the egress half at
//! its source pod and the ingress half at its destination pod; addresses that are not pods
//! are matched by `ipBlock` only. A pod may always reach itself, and its own node may always
//! reach it (kubelet probes), as every CNI plugin has it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_helpers::Labels;
use skiff_helpers::labels::selector_matches;
use skiff_runtime_core::services::Protocol;

/// The label the API server puts on every namespace (immutable, its name): selectors may
/// rely on it even where a Namespace object is not cached yet.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A container port a policy may name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// What policies need to know of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub labels: Labels,
    pub node: Option<String>,
    /// Its containers' named ports (what a policy's named port resolves to).
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// The pod as policies see it; `None` for pods policies do not apply to: not yet given an
    /// address, finished (their address may already be another pod's), or on the host's
    /// network (their address is the node's).
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let mut ips: Vec<IpAddr> =
            status.pod_ips.iter().flatten().filter_map(|p| p.ip.parse().ok()).collect();
        if ips.is_empty()
            && let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok())
        {
            ips.push(ip);
        }
        if ips.is_empty() {
            return None;
        }
        // Sidecars (restartable init containers) serve like containers do.
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let ports = spec
            .containers
            .iter()
            .chain(sidecars)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone().filter(|n| !n.is_empty())?,
                    port: u16::try_from(p.container_port).ok()?,
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or(""))?,
                })
            })
            .collect();
        Some(PodInfo {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ips,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node: spec.node_name.clone(),
            ports,
        })
    }

    /// The port numbers `name` stands for on this pod, for `protocol`.
    pub fn resolve(&self, name: &str, protocol: Protocol) -> impl Iterator<Item = u16> + '_ {
        let name = name.to_string();
        self.ports.iter().filter(move |p| p.name == name && p.protocol == protocol).map(|p| p.port)
    }
}

/// A namespace's labels, with [`NAMESPACE_NAME_LABEL`] always set.
pub fn namespace_labels(ns: &Namespace) -> Option<(String, Labels)> {
    let name = ns.metadata.name.clone()?;
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    labels.entry(NAMESPACE_NAME_LABEL.to_string()).or_insert_with(|| name.clone());
    Some((name, labels))
}

/// Inclusive address ranges' bounds.
trait Bound: Copy + Ord {
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Bound for u32 {
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u32> {
        self.checked_sub(1)
    }
}

impl Bound for u128 {
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u128> {
        self.checked_sub(1)
    }
}

/// Sorted, disjoint, non-adjacent ranges (what an nftables interval set accepts as is).
fn normalize<T: Bound>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.retain(|(a, b)| a <= b);
    ranges.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        if let Some(last) = out.last_mut()
            && last.1.succ().is_none_or(|next| a <= next)
        {
            last.1 = last.1.max(b);
            continue;
        }
        out.push((a, b));
    }
    out
}

/// `ranges` without `cut` (both normalized).
fn subtract<T: Bound>(ranges: &[(T, T)], cut: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for &(mut a, b) in ranges {
        let mut open = true;
        for &(c, d) in cut {
            if d < a || c > b {
                continue;
            }
            if c > a
                && let Some(p) = c.pred()
            {
                out.push((a, p));
            }
            match d.succ() {
                Some(n) if n <= b => a = n,
                _ => {
                    open = false;
                    break;
                }
            }
        }
        if open {
            out.push((a, b));
        }
    }
    out
}

fn contains<T: Bound>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|(a, _)| *a <= x);
    i > 0 && ranges[i - 1].1 >= x
}

/// A set of addresses as ranges, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AddrSet {
    /// The block `cidr` (`10.0.0.0/8`, `fd00::/64`); host bits are ignored, as Kubernetes'
    /// parser does.
    pub fn parse_cidr(cidr: &str) -> Option<AddrSet> {
        let (ip, bits) = cidr.trim().split_once('/')?;
        let prefix: u32 = bits.parse().ok()?;
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) if prefix <= 32 => {
                let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
                let base = u32::from(a) & !host;
                Some(AddrSet { v4: vec![(base, base | host)], v6: Vec::new() })
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
                let base = u128::from(a) & !host;
                Some(AddrSet { v4: Vec::new(), v6: vec![(base, base | host)] })
            }
            _ => None,
        }
    }

    /// An `ipBlock`: its CIDR without its exceptions. `None` when a CIDR does not parse (the
    /// API server refuses those; a peer we cannot read matches nothing).
    pub fn from_ip_block(block: &IPBlock) -> Option<AddrSet> {
        let mut set = AddrSet::parse_cidr(&block.cidr)?;
        let mut cut = AddrSet::default();
        for e in block.except.iter().flatten() {
            cut.extend(&AddrSet::parse_cidr(e)?);
        }
        set.v4 = subtract(&set.v4, &cut.v4);
        set.v6 = subtract(&set.v6, &cut.v6);
        Some(set)
    }

    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> AddrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for ip in ips {
            match ip {
                IpAddr::V4(a) => v4.push((u32::from(a), u32::from(a))),
                IpAddr::V6(a) => v6.push((u128::from(a), u128::from(a))),
            }
        }
        AddrSet { v4: normalize(v4), v6: normalize(v6) }
    }

    /// Add `other`'s addresses.
    pub fn extend(&mut self, other: &AddrSet) {
        let mut v4 = std::mem::take(&mut self.v4);
        v4.extend_from_slice(&other.v4);
        self.v4 = normalize(v4);
        let mut v6 = std::mem::take(&mut self.v6);
        v6.extend_from_slice(&other.v6);
        self.v6 = normalize(v6);
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => contains(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The IPv4 ranges, inclusive, sorted and disjoint.
    pub fn v4_ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.v4.iter().map(|&(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b)))
    }

    /// The IPv6 ranges, inclusive, sorted and disjoint.
    pub fn v6_ranges(&self) -> impl Iterator<Item = (Ipv6Addr, Ipv6Addr)> + '_ {
        self.v6.iter().map(|&(a, b)| (Ipv6Addr::from(a), Ipv6Addr::from(b)))
    }
}

/// The other end of a connection a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// Empty `from` / `to`: every address.
    All,
    /// The selected pods' addresses and the `ipBlock`s, as one set.
    Only(AddrSet),
}

/// The destination port of a rule's port entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    Any,
    /// `port` (`endPort`), inclusive.
    Range(u16, u16),
    /// A named port, resolved against the destination pod's container ports.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: PortMatch,
}

impl PortSpec {
    /// A policy port; `None` for one the API server would refuse (it then matches nothing).
    pub fn from_api(p: &NetworkPolicyPort) -> Option<PortSpec> {
        let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or(""))?;
        let port = match (&p.port, p.end_port) {
            (None, None) => PortMatch::Any,
            (None, Some(_)) => return None,
            (Some(IntOrString::Int(n)), end) => {
                let lo = u16::try_from(*n).ok().filter(|n| *n > 0)?;
                let hi = match end {
                    None => lo,
                    Some(e) => u16::try_from(e).ok().filter(|e| *e >= lo)?,
                };
                PortMatch::Range(lo, hi)
            }
            (Some(IntOrString::String(name)), None) => PortMatch::Named(name.clone()),
            (Some(IntOrString::String(_)), Some(_)) => return None,
        };
        Some(PortSpec { protocol, port })
    }

    pub fn matches(&self, port: u16, protocol: Protocol, dest: Option<&PodInfo>) -> bool {
        if protocol != self.protocol {
            return false;
        }
        match &self.port {
            PortMatch::Any => true,
            PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
            // Only pods have named ports: other destinations never match one.
            PortMatch::Named(name) => {
                dest.is_some_and(|d| d.resolve(name, protocol).any(|p| p == port))
            }
        }
    }
}

/// The ports a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Empty `ports`: every port of every protocol.
    All,
    /// Any of these (empty when every entry was invalid: nothing).
    Only(Vec<PortSpec>),
}

/// One ingress or egress rule of a policy, its peers resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `namespace/name` of its policy (for logs and tests).
    pub policy: String,
    pub peers: Peers,
    pub ports: Ports,
}

impl Rule {
    /// Whether a connection with `peer` at its other end, to `port` of `dest` (the pod at
    /// the destination address, if any), is allowed by this rule.
    pub fn matches(
        &self,
        peer: IpAddr,
        port: u16,
        protocol: Protocol,
        dest: Option<&PodInfo>,
    ) -> bool {
        let peer_ok = match &self.peers {
            Peers::All => true,
            Peers::Only(set) => set.contains(peer),
        };
        peer_ok
            && match &self.ports {
                Ports::All => true,
                Ports::Only(specs) => specs.iter().any(|s| s.matches(port, protocol, dest)),
            }
    }
}

/// The rules in force for one pod in one direction: the union of the rules of every policy
/// selecting it (empty: the pod is isolated and nothing is allowed).
pub type Verdict = Arc<Vec<Arc<Rule>>>;

/// Everything the node checks connections against. Cheap to share (built once per change,
/// read through an `Arc`).
#[derive(Debug, Default)]
pub struct PolicyModel {
    pods: HashMap<IpAddr, Arc<PodInfo>>,
    ingress: HashMap<IpAddr, Verdict>,
    egress: HashMap<IpAddr, Verdict>,
    node_addresses: HashSet<IpAddr>,
    policies: usize,
}

/// What the policy types of a spec are, with Kubernetes' defaulting.
fn policy_types(np: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = np.spec.as_ref() else {
        return (true, false);
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => {
            (types.iter().any(|t| t == "Ingress"), types.iter().any(|t| t == "Egress"))
        }
        // Ingress always; Egress when there are egress rules.
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

struct Cluster<'a> {
    /// Pods by namespace.
    pods: HashMap<&'a str, Vec<&'a Arc<PodInfo>>>,
    namespaces: &'a HashMap<String, Labels>,
}

impl Cluster<'_> {
    fn namespace_labels(&self, ns: &str) -> Labels {
        self.namespaces
            .get(ns)
            .cloned()
            .unwrap_or_else(|| Labels::from([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]))
    }

    fn peer_addresses(&self, policy_ns: &str, peer: &NetworkPolicyPeer) -> AddrSet {
        if let Some(block) = &peer.ip_block {
            return AddrSet::from_ip_block(block).unwrap_or_default();
        }
        let namespaces: Vec<&str> = match &peer.namespace_selector {
            None if peer.pod_selector.is_none() => return AddrSet::default(),
            None => vec![policy_ns],
            Some(sel) => {
                // Namespaces known from Namespace objects or from their pods.
                let names: HashSet<&str> = self
                    .namespaces
                    .keys()
                    .map(String::as_str)
                    .chain(self.pods.keys().copied())
                    .collect();
                names
                    .into_iter()
                    .filter(|ns| selector_matches(sel, &self.namespace_labels(ns)))
                    .collect()
            }
        };
        let all = LabelSelector::default();
        let pod_sel = peer.pod_selector.as_ref().unwrap_or(&all);
        let ips = namespaces
            .iter()
            .filter_map(|ns| self.pods.get(ns))
            .flatten()
            .filter(|p| selector_matches(pod_sel, &p.labels))
            .flat_map(|p| p.ips.iter().copied());
        AddrSet::from_ips(ips)
    }

    fn rule(
        &self,
        policy: &str,
        policy_ns: &str,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        ports: Option<&Vec<NetworkPolicyPort>>,
    ) -> Rule {
        let peers = match peers {
            Some(list) if !list.is_empty() => {
                let mut set = AddrSet::default();
                for p in list {
                    set.extend(&self.peer_addresses(policy_ns, p));
                }
                Peers::Only(set)
            }
            _ => Peers::All,
        };
        let ports = match ports {
            Some(list) if !list.is_empty() => {
                Ports::Only(list.iter().filter_map(PortSpec::from_api).collect())
            }
            _ => Ports::All,
        };
        Rule { policy: policy.to_string(), peers, ports }
    }
}

impl PolicyModel {
    /// Compute the model. `node_addresses` are this node's own addresses (besides
    /// loopback): connections from them are the node's, always allowed in.
    pub fn build<'a>(
        policies: impl IntoIterator<Item = &'a NetworkPolicy>,
        pods: impl IntoIterator<Item = &'a Arc<PodInfo>>,
        namespaces: &HashMap<String, Labels>,
        node_addresses: impl IntoIterator<Item = IpAddr>,
    ) -> PolicyModel {
        let mut by_ip: HashMap<IpAddr, Arc<PodInfo>> = HashMap::new();
        let mut by_ns: HashMap<&str, Vec<&Arc<PodInfo>>> = HashMap::new();
        let mut pods: Vec<&Arc<PodInfo>> = pods.into_iter().collect();
        // Two pods claiming one address (a stale cache): the same one wins every time.
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for p in pods {
            for ip in &p.ips {
                by_ip.insert(*ip, p.clone());
            }
            by_ns.entry(p.namespace.as_str()).or_default().push(p);
        }
        let cluster = Cluster { pods: by_ns, namespaces };
        let mut ingress: HashMap<IpAddr, Vec<Arc<Rule>>> = HashMap::new();
        let mut egress: HashMap<IpAddr, Vec<Arc<Rule>>> = HashMap::new();
        let mut count = 0;
        for np in policies {
            count += 1;
            let Some(spec) = np.spec.as_ref() else { continue };
            let ns = np.metadata.namespace.as_deref().unwrap_or("default");
            let key = format!("{ns}/{}", np.metadata.name.as_deref().unwrap_or(""));
            let (is_ingress, is_egress) = policy_types(np);
            let all = LabelSelector::default();
            let selector = spec.pod_selector.as_ref().unwrap_or(&all);
            let targets: Vec<&Arc<PodInfo>> = cluster
                .pods
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|p| selector_matches(selector, &p.labels))
                .copied()
                .collect();
            if targets.is_empty() {
                continue;
            }
            let apply = |rules: Vec<Arc<Rule>>, into: &mut HashMap<IpAddr, Vec<Arc<Rule>>>| {
                for t in &targets {
                    for ip in &t.ips {
                        into.entry(*ip).or_default().extend(rules.iter().cloned());
                    }
                }
            };
            if is_ingress {
                let rules = spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| Arc::new(cluster.rule(&key, ns, r.from.as_ref(), r.ports.as_ref())))
                    .collect();
                apply(rules, &mut ingress);
            }
            if is_egress {
                let rules = spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| Arc::new(cluster.rule(&key, ns, r.to.as_ref(), r.ports.as_ref())))
                    .collect();
                apply(rules, &mut egress);
            }
        }
        PolicyModel {
            pods: by_ip,
            ingress: ingress.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            egress: egress.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            node_addresses: node_addresses.into_iter().collect(),
            policies: count,
        }
    }

    /// Number of NetworkPolicies the model was built from.
    pub fn policy_count(&self) -> usize {
        self.policies
    }

    /// The pod at `ip`, if one has it.
    pub fn pod(&self, ip: IpAddr) -> Option<&Arc<PodInfo>> {
        self.pods.get(&ip)
    }

    /// Every pod address with its pod.
    pub fn pods(&self) -> impl Iterator<Item = (IpAddr, &Arc<PodInfo>)> {
        self.pods.iter().map(|(ip, p)| (*ip, p))
    }

    /// The ingress rules of the pod at `ip`; `None` when no policy isolates it for ingress.
    pub fn ingress(&self, ip: IpAddr) -> Option<&Verdict> {
        self.ingress.get(&ip)
    }

    /// The egress rules of the pod at `ip`; `None` when no policy isolates it for egress.
    pub fn egress(&self, ip: IpAddr) -> Option<&Verdict> {
        self.egress.get(&ip)
    }

    /// Whether `ip` is this node speaking (not one of its pods): loopback or one of its
    /// addresses.
    pub fn is_node(&self, ip: IpAddr) -> bool {
        !self.pods.contains_key(&ip) && (ip.is_loopback() || self.node_addresses.contains(&ip))
    }

    /// The ingress half: whether `peer` may open a connection to `to` (the pod there).
    pub fn allows_ingress(&self, peer: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        let Some(rules) = self.ingress.get(&to.ip()) else {
            return true;
        };
        if peer == to.ip() || self.is_node(peer) {
            return true;
        }
        let dest = self.pods.get(&to.ip()).map(|p| p.as_ref());
        rules.iter().any(|r| r.matches(peer, to.port(), protocol, dest))
    }

    /// The egress half: whether the pod at `from` may open a connection to `to`.
    pub fn allows_egress(&self, from: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        let Some(rules) = self.egress.get(&from) else {
            return true;
        };
        if from == to.ip() {
            return true;
        }
        let dest = self.pods.get(&to.ip()).map(|p| p.as_ref());
        rules.iter().any(|r| r.matches(to.ip(), to.port(), protocol, dest))
    }

    /// Both halves: egress at the source if it is a pod, ingress at the destination if it
    /// is one.
    pub fn allows(&self, from: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        self.allows_egress(from, to, protocol) && self.allows_ingress(from, to, protocol)
    }

    /// The pods (address and pod) in `peers` having a port named `name` for `protocol`,
    /// grouped by the port number it stands for: what an egress rule's named port allows.
    pub fn named_port_destinations(
        &self,
        peers: &Peers,
        name: &str,
        protocol: Protocol,
    ) -> BTreeMap<u16, Vec<IpAddr>> {
        let mut out: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
        for (ip, pod) in &self.pods {
            if let Peers::Only(set) = peers
                && !set.contains(*ip)
            {
                continue;
            }
            for port in pod.resolve(name, protocol) {
                out.entry(port).or_default().push(*ip);
            }
        }
        for ips in out.values_mut() {
            ips.sort();
            ips.dedup();
        }
        out
    }
}

#[cfg(test)]
mod tests;
