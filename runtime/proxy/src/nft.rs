//! The nftables rules of the node proxy (kube-proxy's nftables mode): one table holding base
//! chains for DNAT (nat prerouting/output), masquerade (nat postrouting) and the reject of
//! Services without endpoints (filter input/forward/output, before DNAT), and verdict maps
//! from (ClusterIP, protocol, port) and (protocol, NodePort) to where the connection goes.
//!
//! An ordinary Service port (no NodePort, no ClientIP affinity) has no chain and no rule of
//! its own, only map elements:
//! - `endpoints`: (ClusterIP . protocol . port . slot) → (endpoint address . port), slots
//!   0..N-1 for its N chosen endpoints (the ready ones, else the serving terminating ones;
//!   this node's for `internalTrafficPolicy: Local`; at most [`MAX_PICK`], the first ones);
//! - `service-ips`: (ClusterIP . protocol . port) → `goto pick-N`, one of a few shared
//!   chains (created when an N is first used, kept until the table is recreated) whose
//!   only rules mark off-cluster clients for masquerade and
//!   `dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @endpoints`:
//!   the packet's own address and a uniform random slot look the endpoint up.
//!
//! So an endpoint change sends only that Service's changed `endpoints` elements (and its
//! `service-ips` element when N changes), and a full sync is mostly map elements. NodePort
//! Services (few) and Services with ClientIP affinity (rare) keep upstream's per-Service
//! chains: `external-…` for the NodePort (masquerade, the external traffic policy),
//! `service-…`/`local-…` picking an endpoint with a cascade of `numgen random mod K 0 …`
//! rules (iptables mode's `statistic` cascade: the same uniform choice), and, with
//! affinity, a chain per endpoint updating the endpoint's dynamic affinity set.
//!
//! Rendering is per Service and pure ([`render_service`]); [`NftProxier`] keeps what it last
//! applied per Service and plans one `nft -f -` transaction holding only the difference
//! (map elements added or deleted, changed chains flushed and refilled, gone chains and sets
//! deleted, new `pick-N` chains added). The first transaction deletes and recreates the
//! table, so a restarted node leaves nothing stale.
//!
//! Why, measured on kernel 6.18 with nft 1.0.6, 10,000 Services × 4 endpoints (release
//! benchmark `skiff-bench-proxy`, 2 shared cores):
//! - anonymous `numgen … vmap { … }` per Service chain: the kernel names each anonymous set
//!   by scanning every set of the table (41 s); named per-Service maps cost the same scan
//!   (16 s), and one shared map bound by a rule *per Service* is re-validated against every
//!   binding on each element (6.9 s). The shared `endpoints` map here is bound by the few
//!   `pick-N` rules only;
//! - a chain per Service with its cascade (~40,000 rules, 10,000 chains; each rule costs
//!   ~20 µs to load, and every commit touching rules re-validates the whole table, ~30 ms
//!   of kernel time): full sync ≈ 1.9 s, endpoint change p99 ≈ 90 ms. Map elements only
//!   (12 chains in all): full sync 0.73 s (2.8 MiB of `nft` text; ~0.6 s of it is nft
//!   parsing ~60,000 elements and the kernel inserting them), endpoint change p50 16 ms,
//!   p99 24 ms (a ~300 byte transaction);
//! - no chain per endpoint: hairpin traffic (a pod reaching itself through its Service) is
//!   masqueraded by one rule matching the shared set `hairpins` (`ip saddr . ip daddr`, an
//!   element per address of an endpoint on this node — a pod reaching itself is on this
//!   node — kept while any Service has it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, Ipv4Cidr, ServiceKey, ServiceMap, ServicePort};

/// The packet mark asking `masquerading` to masquerade (kube-proxy's default bit 14).
const MASQUERADE_MARK: u32 = 0x4000;

pub use skiff_nft::{NFT, NftError, apply};

/// What the rules depend on besides the Services.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The `ip` family table holding every rule.
    pub table: String,
    /// This node's name: `Local` traffic policies keep the endpoints on it.
    pub node_name: String,
    /// Pod traffic comes from here; traffic to a ClusterIP from elsewhere is masqueraded.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// ClusterIPs are local addresses on the node (their route is `local`): NodePort rules
    /// must not catch them.
    pub service_cidr: Option<Ipv4Cidr>,
    /// Addresses answered by the node itself (e.g. the cluster DNS): no rule for them.
    pub excluded: HashSet<Ipv4Addr>,
}

/// The proxy's verdict maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapName {
    /// (ClusterIP . port . slot) → (endpoint address . port), per protocol.
    EndpointsTcp,
    EndpointsUdp,
    EndpointsSctp,
    ServiceIps,
    ServiceNodePorts,
    NoEndpointServices,
    NoEndpointNodePorts,
}

impl MapName {
    pub fn as_str(self) -> &'static str {
        match self {
            MapName::EndpointsTcp => "endpoints-tcp",
            MapName::EndpointsUdp => "endpoints-udp",
            MapName::EndpointsSctp => "endpoints-sctp",
            MapName::ServiceIps => "service-ips",
            MapName::ServiceNodePorts => "service-nodeports",
            MapName::NoEndpointServices => "no-endpoint-services",
            MapName::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }
}

/// The nftables objects of one Service: its chains (name → rules), affinity sets, map
/// elements ((map, key) → value), endpoint addresses (in the shared `hairpins` set) and
/// the shared `pick-N` chains its elements jump to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub chains: BTreeMap<String, Vec<String>>,
    pub sets: BTreeSet<String>,
    pub elements: BTreeMap<(MapName, String), String>,
    pub hairpins: BTreeSet<Ipv4Addr>,
    pub picks: BTreeSet<(&'static str, usize)>,
}

/// The most endpoints a Service port of the map layout chooses among (its `pick-N`
/// chains are created for the N in use only); beyond, the first ones are used.
pub const MAX_PICK: usize = 256;

/// The protocols of the map layout: (name, its `endpoints-…` map).
const PROTOCOLS: [(&str, MapName); 3] = [
    ("tcp", MapName::EndpointsTcp),
    ("udp", MapName::EndpointsUdp),
    ("sctp", MapName::EndpointsSctp),
];

fn pick_chain(p: &str, n: usize) -> String {
    format!("pick-{p}-{n}")
}

/// The rules of the shared chain `pick-p-n`, which DNATs a ClusterIP connection of protocol
/// `p` to one of the `n` endpoints in the `endpoints-p` map under its (ClusterIP . port), at
/// random.
fn pick_rules(opts: &RenderOptions, p: &str, n: usize) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(cidr) = opts.cluster_cidr {
        // Off-cluster clients reaching a ClusterIP (a route to the Service CIDR via this
        // node) are masqueraded: the endpoint may answer from another node.
        rules.push(format!("ip saddr != {cidr} jump mark-for-masquerade"));
    }
    rules.push(format!(
        "dnat ip to ip daddr . {p} dport . numgen random mod {n} map @endpoints-{p}"
    ));
    rules
}

fn proto(sp: &ServicePort) -> &'static str {
    match sp.protocol() {
        skiff_runtime_core::services::Protocol::Tcp => "tcp",
        skiff_runtime_core::services::Protocol::Udp => "udp",
        skiff_runtime_core::services::Protocol::Sctp => "sctp",
    }
}

/// `namespace/name/protocol/port`: the characters of Kubernetes names are all valid in nft
/// identifiers, `/` is not valid in those names, and `_` (for an unnamed port) is not valid
/// in a port name, so names cannot collide.
fn base_name(sp: &ServicePort) -> String {
    let port = if sp.name.port.is_empty() { "_" } else { sp.name.port.as_str() };
    format!("{}/{}/{}/{}", sp.name.service.namespace, sp.name.service.name, proto(sp), port)
}

fn endpoint_suffix(ep: &Endpoint) -> String {
    format!("__{}/{}", ep.ip, ep.port)
}

/// The rules of one Service's ports.
pub fn render_service(opts: &RenderOptions, ports: &[ServicePort]) -> Rendered {
    let mut r = Rendered::default();
    for sp in ports {
        render_port(opts, sp, &mut r);
    }
    r
}

fn render_port(opts: &RenderOptions, sp: &ServicePort, r: &mut Rendered) {
    if opts.excluded.contains(&sp.cluster_ip) {
        return;
    }
    if sp.affinity_timeout.is_none() && sp.node_port.is_none() {
        render_mapped_port(opts, sp, r);
        return;
    }
    let base = base_name(sp);
    let p = proto(sp);
    let cluster_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let external_chain = format!("external-{base}");
    let cluster = sp.cluster_endpoints();
    let local = sp.local_endpoints(&opts.node_name);
    let has_endpoints = !cluster.is_empty();
    let uses_cluster = has_endpoints && (!sp.internal_local || sp.node_port.is_some());
    let uses_local =
        !local.is_empty() && (sp.internal_local || (sp.node_port.is_some() && sp.external_local));

    let (internal_chain, has_internal) = if sp.internal_local {
        (&local_chain, !local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let addr_key = format!("{} . {p} . {}", sp.cluster_ip, sp.port);
    // A Service with no endpoints at all is refused; one with endpoints elsewhere only
    // (Local policy) drops, as upstream: the client may retry and reach another node.
    let no_endpoint_verdict =
        if has_endpoints { "drop".to_string() } else { "goto reject-chain".to_string() };
    if has_internal {
        r.elements.insert((MapName::ServiceIps, addr_key), format!("goto {internal_chain}"));
    } else {
        r.elements.insert((MapName::NoEndpointServices, addr_key), no_endpoint_verdict.clone());
    }

    if let Some(np) = sp.node_port {
        let np_key = format!("{p} . {np}");
        let has_external = if sp.external_local { !local.is_empty() } else { has_endpoints };
        if has_endpoints {
            r.elements.insert(
                (MapName::ServiceNodePorts, np_key.clone()),
                format!("goto {external_chain}"),
            );
            let mut rules = Vec::new();
            if !sp.external_local {
                // The endpoint may be on another node: its reply must come back through us.
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {cluster_chain}"));
            } else {
                // Pods and the node itself are not subject to the external policy (as if
                // they went through an external load balancer and came back).
                if let Some(cidr) = opts.cluster_cidr {
                    rules.push(format!("ip saddr {cidr} goto {cluster_chain}"));
                }
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
                if has_external {
                    rules.push(format!("goto {local_chain}"));
                }
            }
            r.chains.insert(external_chain, rules);
        }
        if !has_external {
            r.elements.insert((MapName::NoEndpointNodePorts, np_key), no_endpoint_verdict);
        }
    }

    let mut endpoint_chains: BTreeMap<String, &Endpoint> = BTreeMap::new();
    let masquerade_off_cluster = opts.cluster_cidr.map(|cidr| {
        // Off-cluster clients reaching a ClusterIP (a route to the Service CIDR via this
        // node) are masqueraded: the endpoint may answer from another node.
        format!(
            "ip daddr {} {p} dport {} ip saddr != {cidr} jump mark-for-masquerade",
            sp.cluster_ip, sp.port
        )
    });
    for (chain, eps, used) in
        [(&cluster_chain, &cluster, uses_cluster), (&local_chain, &local, uses_local)]
    {
        if !used {
            continue;
        }
        let mut rules = Vec::new();
        if chain == internal_chain
            && let Some(rule) = &masquerade_off_cluster
        {
            rules.push(rule.clone());
        }
        let n = eps.len();
        r.hairpins.extend(hairpin_candidates(opts, eps));
        // Rule i is reached with probability (n-i)/n and taken with 1/(n-i): 1/n each.
        let pick = |i: usize, then: String| {
            if i + 1 == n { then } else { format!("numgen random mod {} 0 {then}", n - i) }
        };
        if sp.affinity_timeout.is_none() {
            for (i, e) in eps.iter().enumerate() {
                rules.push(pick(i, format!("meta l4proto {p} dnat to {}:{}", e.ip, e.port)));
            }
            r.chains.insert(chain.clone(), rules);
            continue;
        }
        let names: Vec<String> =
            eps.iter().map(|e| format!("endpoint-{base}{}", endpoint_suffix(e))).collect();
        for (e, name) in eps.iter().zip(&names) {
            rules.push(format!("ip saddr @affinity-{base}{} goto {name}", endpoint_suffix(e)));
        }
        for (i, name) in names.iter().enumerate() {
            rules.push(pick(i, format!("goto {name}")));
        }
        for (e, name) in eps.iter().zip(names) {
            endpoint_chains.insert(name, e);
        }
        r.chains.insert(chain.clone(), rules);
    }
    for (name, ep) in endpoint_chains {
        let mut rules = Vec::new();
        if let Some(timeout) = sp.affinity_timeout {
            let set = format!("affinity-{base}{}", endpoint_suffix(ep));
            rules.push(format!("update @{set} {{ ip saddr timeout {timeout}s }}"));
            r.sets.insert(set);
        }
        rules.push(format!("meta l4proto {p} dnat to {}:{}", ep.ip, ep.port));
        r.chains.insert(name, rules);
    }
}

/// The endpoints a connection through this node may hairpin to: a pod reaching itself
/// through its Service is on this node (another node's pod goes through its own node's
/// rules), so only this node's endpoints (and those of no known node) need an element.
fn hairpin_candidates<'a>(
    opts: &'a RenderOptions,
    eps: &'a [&Endpoint],
) -> impl Iterator<Item = Ipv4Addr> + 'a {
    eps.iter().filter(|e| e.node_name.as_deref().is_none_or(|n| n == opts.node_name)).map(|e| e.ip)
}

/// A port without NodePort or affinity: map elements only (no chain, no rule of its own).
fn render_mapped_port(opts: &RenderOptions, sp: &ServicePort, r: &mut Rendered) {
    let p = proto(sp);
    let addr_key = format!("{} . {p} . {}", sp.cluster_ip, sp.port);
    let mut eps = sp.internal_endpoints(&opts.node_name);
    if eps.is_empty() {
        // None at all: refused. Some elsewhere only (Local policy): dropped, as upstream.
        let verdict = if sp.cluster_endpoints().is_empty() { "goto reject-chain" } else { "drop" };
        r.elements.insert((MapName::NoEndpointServices, addr_key), verdict.to_string());
        return;
    }
    if eps.len() > MAX_PICK {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                service = %sp.name.service,
                endpoints = eps.len(),
                "a Service port has more endpoints than the proxy chooses among; the first {MAX_PICK} are used (logged once)"
            );
        }
        eps.truncate(MAX_PICK);
    }
    let n = eps.len();
    let map = PROTOCOLS.iter().find(|(name, _)| *name == p).map_or(MapName::EndpointsTcp, |m| m.1);
    for (slot, e) in eps.iter().enumerate() {
        r.elements.insert(
            (map, format!("{} . {} . {slot}", sp.cluster_ip, sp.port)),
            format!("{} . {}", e.ip, e.port),
        );
    }
    r.hairpins.extend(hairpin_candidates(opts, &eps));
    r.elements.insert((MapName::ServiceIps, addr_key), format!("goto {}", pick_chain(p, n)));
    r.picks.insert((p, n));
}

/// The table's fixed part: base chains, dispatch chains, maps.
fn table_setup(opts: &RenderOptions) -> String {
    let t = format!("ip {}", opts.table);
    let mut not_node_port = vec!["127.0.0.0/8".to_string()];
    if let Some(c) = opts.service_cidr {
        not_node_port.push(c.to_string());
    }
    let not_node_port = not_node_port.join(", ");
    let addr_map = "type ipv4_addr . inet_proto . inet_service : verdict ;";
    let port_map = "type inet_proto . inet_service : verdict ;";
    // Per protocol: `th dport` in a map's key or data does not survive nft 1.0.6 reading the
    // table back (a later transaction adding a rule fails, or UDP is matched as TCP).
    let endpoint_maps: String = PROTOCOLS
        .iter()
        .map(|(p, map)| {
            format!(
                "add map {t} {} {{ typeof ip daddr . {p} dport . numgen random mod {MAX_PICK} : ip daddr . {p} dport ; }}\n",
                map.as_str()
            )
        })
        .collect();
    // Filter chains see the address before DNAT (priority below dstnat's -100).
    format!(
        "add table {t}
delete table {t}
add table {t}
{endpoint_maps}add map {t} service-ips {{ {addr_map} }}
add map {t} service-nodeports {{ {port_map} }}
add map {t} no-endpoint-services {{ {addr_map} }}
add map {t} no-endpoint-nodeports {{ {port_map} }}
add set {t} hairpins {{ type ipv4_addr . ipv4_addr ; }}
add chain {t} filter-input {{ type filter hook input priority -110 ; policy accept ; }}
add chain {t} filter-forward {{ type filter hook forward priority -110 ; policy accept ; }}
add chain {t} filter-output {{ type filter hook output priority -110 ; policy accept ; }}
add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; policy accept ; }}
add chain {t} nat-output {{ type nat hook output priority -100 ; policy accept ; }}
add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}
add chain {t} endpoints-check
add chain {t} reject-chain
add chain {t} services
add chain {t} mark-for-masquerade
add chain {t} masquerading
add rule {t} filter-input ct state new jump endpoints-check
add rule {t} filter-forward ct state new jump endpoints-check
add rule {t} filter-output ct state new jump endpoints-check
add rule {t} endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule {t} endpoints-check fib daddr type local ip daddr != {{ {not_node_port} }} meta l4proto . th dport vmap @no-endpoint-nodeports
add rule {t} reject-chain meta l4proto tcp reject with tcp reset
add rule {t} reject-chain reject
add rule {t} nat-prerouting jump services
add rule {t} nat-output jump services
add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips
add rule {t} services fib daddr type local ip daddr != {{ {not_node_port} }} meta l4proto . th dport vmap @service-nodeports
add rule {t} mark-for-masquerade meta mark set meta mark or {MASQUERADE_MARK:#x}
add rule {t} nat-postrouting jump masquerading
add rule {t} masquerading ct status dnat ip saddr . ip daddr @hairpins masquerade fully-random
add rule {t} masquerading meta mark & {MASQUERADE_MARK:#x} == 0 return
add rule {t} masquerading meta mark set meta mark xor {MASQUERADE_MARK:#x}
add rule {t} masquerading masquerade fully-random
"
    )
}

/// One planned sync: the `nft -f` text and what the table holds once it is applied.
#[derive(Debug)]
pub struct Transaction {
    pub text: String,
    /// Whether the transaction recreates the whole table.
    pub full: bool,
    /// Services whose objects changed, with what they are afterwards.
    updates: Vec<(ServiceKey, Option<Rendered>)>,
    /// How many Services' endpoints have each address afterwards (those that change).
    hairpin_refs: Vec<(Ipv4Addr, usize)>,
    /// The `pick-N` chains this transaction creates.
    new_picks: BTreeSet<(&'static str, usize)>,
}

impl Transaction {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Number of Services whose rules change.
    pub fn services_changed(&self) -> usize {
        self.updates.len()
    }
}

/// The sections of a transaction, in the order the kernel needs: what refers to an object
/// goes before the object is deleted, and after it is created.
#[derive(Default)]
struct Sections {
    delete_elements: BTreeMap<MapName, Vec<String>>,
    flush_chains: String,
    delete_chains: String,
    delete_sets: String,
    add_sets: String,
    add_chains: String,
    add_rules: String,
    add_elements: BTreeMap<MapName, Vec<String>>,
    /// `pick-N` chains the new objects jump to.
    picks: BTreeSet<(&'static str, usize)>,
    /// Per endpoint address: Services that gain it minus Services that lose it.
    hairpin_delta: HashMap<Ipv4Addr, isize>,
    delete_hairpins: Vec<String>,
    add_hairpins: Vec<String>,
}

impl Sections {
    fn diff(&mut self, t: &str, old: Option<&Rendered>, new: Option<&Rendered>) {
        let empty = Rendered::default();
        let old = old.unwrap_or(&empty);
        let new = new.unwrap_or(&empty);
        for (k, v) in &old.elements {
            if new.elements.get(k) != Some(v) {
                self.delete_elements.entry(k.0).or_default().push(k.1.clone());
            }
        }
        for (k, v) in &new.elements {
            if old.elements.get(k) != Some(v) {
                self.add_elements.entry(k.0).or_default().push(format!("{} : {v}", k.1));
            }
        }
        skiff_nft::diff_chains(
            t,
            &old.chains,
            &new.chains,
            &mut self.flush_chains,
            &mut self.delete_chains,
            &mut self.add_chains,
            &mut self.add_rules,
        );
        self.picks.extend(new.picks.iter().copied());
        for ip in old.hairpins.difference(&new.hairpins) {
            *self.hairpin_delta.entry(*ip).or_default() -= 1;
        }
        for ip in new.hairpins.difference(&old.hairpins) {
            *self.hairpin_delta.entry(*ip).or_default() += 1;
        }
        for set in old.sets.difference(&new.sets) {
            let _ = writeln!(self.delete_sets, "delete set {t} {set}");
        }
        for set in new.sets.difference(&old.sets) {
            let _ = writeln!(
                self.add_sets,
                "add set {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; }}"
            );
        }
    }

    /// Create the `pick-N` chains used and not in `existing`, returning them.
    fn add_picks(
        &mut self,
        t: &str,
        opts: &RenderOptions,
        existing: &BTreeSet<(&'static str, usize)>,
    ) -> BTreeSet<(&'static str, usize)> {
        let new: BTreeSet<_> = self.picks.difference(existing).copied().collect();
        let mut chains = String::new();
        let mut rules = String::new();
        for (p, n) in &new {
            let name = pick_chain(p, *n);
            let _ = writeln!(chains, "add chain {t} {name}");
            for rule in pick_rules(opts, p, *n) {
                let _ = writeln!(rules, "add rule {t} {name} {rule}");
            }
        }
        self.add_chains.insert_str(0, &chains);
        self.add_rules.insert_str(0, &rules);
        new
    }

    /// Turn the hairpin deltas into set changes (an address stays while any Service has
    /// it), returning the new counts of the addresses that changed.
    fn hairpins(&mut self, refs: &HashMap<Ipv4Addr, usize>) -> Vec<(Ipv4Addr, usize)> {
        let mut out = Vec::new();
        for (ip, delta) in std::mem::take(&mut self.hairpin_delta) {
            let old = refs.get(&ip).copied().unwrap_or(0);
            let new = usize::try_from(old as isize + delta).unwrap_or(0);
            if old == 0 && new > 0 {
                self.add_hairpins.push(format!("{ip} . {ip}"));
            } else if old > 0 && new == 0 {
                self.delete_hairpins.push(format!("{ip} . {ip}"));
            }
            if old != new {
                out.push((ip, new));
            }
        }
        out
    }

    fn finish(self, t: &str, mut out: String) -> String {
        for (map, keys) in &self.delete_elements {
            for chunk in keys.chunks(1000) {
                let _ =
                    writeln!(out, "delete element {t} {} {{ {} }}", map.as_str(), chunk.join(", "));
            }
        }
        for chunk in self.delete_hairpins.chunks(1000) {
            let _ = writeln!(out, "delete element {t} hairpins {{ {} }}", chunk.join(", "));
        }
        out.push_str(&self.flush_chains);
        out.push_str(&self.delete_chains);
        out.push_str(&self.delete_sets);
        out.push_str(&self.add_sets);
        out.push_str(&self.add_chains);
        out.push_str(&self.add_rules);
        for (map, elems) in &self.add_elements {
            // Bounded batches: one huge line costs nft more than several.
            for chunk in elems.chunks(1000) {
                let _ =
                    writeln!(out, "add element {t} {} {{ {} }}", map.as_str(), chunk.join(", "));
            }
        }
        for chunk in self.add_hairpins.chunks(1000) {
            let _ = writeln!(out, "add element {t} hairpins {{ {} }}", chunk.join(", "));
        }
        out
    }
}

/// Keeps the table in step with the Services: plans each sync's transaction from what it
/// last applied. Not thread-safe by itself; the proxy runs one sync at a time.
pub struct NftProxier {
    opts: RenderOptions,
    applied: HashMap<ServiceKey, Rendered>,
    /// False until a transaction recreating the table was applied (or after a failure).
    table_synced: bool,
    /// Per endpoint address, how many Services have it (its `hairpins` element lives while
    /// any does).
    hairpin_refs: HashMap<Ipv4Addr, usize>,
    /// The `pick-N` chains in the table (created when first used, kept until the table is
    /// recreated).
    picks: BTreeSet<(&'static str, usize)>,
}

impl NftProxier {
    pub fn new(opts: RenderOptions) -> NftProxier {
        NftProxier {
            opts,
            applied: HashMap::new(),
            table_synced: false,
            hairpin_refs: HashMap::new(),
            picks: BTreeSet::new(),
        }
    }

    pub fn options(&self) -> &RenderOptions {
        &self.opts
    }

    /// The transaction bringing the table to `map` for the Services in `changed` (every
    /// Service, and the table itself, when the table is not known to be in step).
    pub fn plan(&self, map: &ServiceMap, changed: &HashSet<ServiceKey>) -> Transaction {
        let t = format!("ip {}", self.opts.table);
        let mut sections = Sections::default();
        let mut updates = Vec::new();
        let full = !self.table_synced;
        let empty_refs = HashMap::new();
        let refs = if full { &empty_refs } else { &self.hairpin_refs };
        if full {
            for (key, ports) in map.services() {
                let new = render_service(&self.opts, ports);
                sections.diff(&t, None, Some(&new));
                updates.push((key.clone(), Some(new)));
            }
            let hairpin_refs = sections.hairpins(refs);
            let new_picks = sections.add_picks(&t, &self.opts, &BTreeSet::new());
            let text = sections.finish(&t, table_setup(&self.opts));
            return Transaction { text, full, updates, hairpin_refs, new_picks };
        }
        for key in changed {
            let new = map.get(key).map(|ports| render_service(&self.opts, ports));
            let new = new.filter(|r| *r != Rendered::default());
            let old = self.applied.get(key);
            if old == new.as_ref() {
                continue;
            }
            sections.diff(&t, old, new.as_ref());
            updates.push((key.clone(), new));
        }
        let hairpin_refs = sections.hairpins(refs);
        let new_picks = sections.add_picks(&t, &self.opts, &self.picks);
        let text =
            if updates.is_empty() { String::new() } else { sections.finish(&t, String::new()) };
        Transaction { text, full, updates, hairpin_refs, new_picks }
    }

    /// Record that `tx` was applied.
    pub fn committed(&mut self, tx: Transaction) {
        if tx.full {
            self.applied.clear();
            self.hairpin_refs.clear();
            self.picks.clear();
            self.table_synced = true;
        }
        self.picks.extend(tx.new_picks);
        for (ip, n) in tx.hairpin_refs {
            if n == 0 {
                self.hairpin_refs.remove(&ip);
            } else {
                self.hairpin_refs.insert(ip, n);
            }
        }
        for (key, rendered) in tx.updates {
            match rendered {
                Some(r) => self.applied.insert(key, r),
                None => self.applied.remove(&key),
            };
        }
    }

    /// Forget what was applied: the next plan recreates the table (after a failed apply,
    /// whose effect on the kernel is unknown to us).
    pub fn reset(&mut self) {
        self.applied.clear();
        self.hairpin_refs.clear();
        self.picks.clear();
        self.table_synced = false;
    }

    /// Plan, apply and record one sync.
    pub fn sync(
        &mut self,
        map: &ServiceMap,
        changed: &HashSet<ServiceKey>,
    ) -> Result<Applied, NftError> {
        let mut tx = self.plan(map, changed);
        let applied = Applied {
            text: std::mem::take(&mut tx.text),
            full: tx.full,
            services_changed: tx.services_changed(),
        };
        if applied.text.is_empty() {
            return Ok(applied);
        }
        match apply(&applied.text) {
            Ok(()) => {
                self.committed(tx);
                Ok(applied)
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }
}

/// What one sync sent.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The transaction (empty when nothing changed).
    pub text: String,
    /// Whether it recreated the table.
    pub full: bool,
    /// Services whose rules changed.
    pub services_changed: usize,
}

/// Delete the table (when this part is turned off); absent is fine.
pub fn delete_table(table: &str) -> Result<(), NftError> {
    skiff_nft::delete_table("ip", table)
}

#[cfg(test)]
mod tests;
