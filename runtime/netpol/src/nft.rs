//! NetworkPolicy in nftables for the pods on this node (the CNI plugin's policy engine, as
//! kube-router's and Calico's are): one `inet` table whose filter chains on the forward,
//! input and output hooks let established and related packets through, then send a new
//! connection's packets to the egress chain of its source pod and the ingress chain of its
//! destination pod, through verdict maps keyed by pod address. A pod's chain accepts (or,
//! for egress, returns) what its rules allow and drops the rest; a pod no policy isolates in
//! a direction has no chain there. Peers are named interval sets (address ranges: selected
//! pods and `ipBlock`s without their exceptions, computed by [`crate::model`]).
//!
//! Rendering is per pod and pure ([`render_pod`]); [`NftEnforcer`] keeps what it last
//! applied per pod and plans one `nft -f -` transaction with only the difference. The first
//! transaction deletes and recreates the table, so a restarted node leaves nothing stale.
//! The output hook is what catches local Wasm pods' connections (their sockets are bound to
//! their own address) and the node's; the node may always reach its pods (kubelet probes),
//! told apart from its Wasm pods by `fib saddr type local` and the `local-pods` set.
//!
//! Bridged traffic between two OCI pods of this node reaches the forward hook only with
//! `br_netfilter` (`net.bridge.bridge-nf-call-iptables=1`), as for every bridge CNI.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use skiff_runtime_core::services::Protocol;

use crate::model::{AddrSet, PodInfo, PolicyModel, PortMatch, Ports, Rule};

pub use skiff_nft::{NFT, NftError, apply};

/// What the rules depend on besides the model.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The `inet` family table holding every rule.
    pub table: String,
    /// Pods on this node get chains.
    pub node_name: String,
    /// Only pods with an address in here get chains (the OCI pods' range); `None`: every
    /// pod of the node.
    pub enforced: Option<AddrSet>,
}

/// The table's maps and sets keyed by pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapName {
    /// Every pod address of this node: traffic from them is not the node's.
    LocalPods,
    IngressPods,
    EgressPods,
}

impl MapName {
    pub fn as_str(self) -> &'static str {
        match self {
            MapName::LocalPods => "local-pods",
            MapName::IngressPods => "ingress-pods",
            MapName::EgressPods => "egress-pods",
        }
    }
}

/// The nftables objects of one pod address: chains (name → rules), interval sets (name →
/// elements) and map elements ((map, key) → verdict; empty for a plain set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub chains: BTreeMap<String, Vec<String>>,
    pub sets: BTreeMap<String, Vec<String>>,
    pub elements: BTreeMap<(MapName, String), String>,
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// One line of a pod chain before rendering: the peers (`None`: any) and the protocol and
/// destination port range (`None`: any).
struct Clause {
    peers: Option<AddrSet>,
    l4: Option<(Protocol, Option<(u16, u16)>)>,
}

/// The clauses of `rules`. Named ports resolve against `own` (the pod itself, for ingress)
/// or, for egress, against every pod among the peers (`own` is `None`).
fn clauses(
    model: &PolicyModel,
    rules: &[std::sync::Arc<Rule>],
    own: Option<&PodInfo>,
) -> Vec<Clause> {
    let mut out = Vec::new();
    for rule in rules {
        let peers = match &rule.peers {
            crate::model::Peers::All => None,
            crate::model::Peers::Only(set) => Some(set.clone()),
        };
        let specs = match &rule.ports {
            Ports::All => {
                out.push(Clause { peers, l4: None });
                continue;
            }
            Ports::Only(specs) => specs,
        };
        for spec in specs {
            let p = spec.protocol;
            match &spec.port {
                PortMatch::Any => out.push(Clause { peers: peers.clone(), l4: Some((p, None)) }),
                PortMatch::Range(a, b) => {
                    out.push(Clause { peers: peers.clone(), l4: Some((p, Some((*a, *b)))) })
                }
                PortMatch::Named(name) => match own {
                    Some(pod) => {
                        for port in pod.resolve(name, p) {
                            out.push(Clause {
                                peers: peers.clone(),
                                l4: Some((p, Some((port, port)))),
                            });
                        }
                    }
                    None => {
                        for (port, ips) in model.named_port_destinations(&rule.peers, name, p) {
                            out.push(Clause {
                                peers: Some(AddrSet::from_ips(ips)),
                                l4: Some((p, Some((port, port)))),
                            });
                        }
                    }
                },
            }
        }
    }
    out
}

fn set_elements(set: &AddrSet) -> Vec<String> {
    set.v4_ranges().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect()
}

/// Render `clauses` into `chain` (and its sets) of `r`; `dir` is `saddr` for ingress,
/// `daddr` for egress; allowed packets get `verdict`, the rest is dropped.
fn render_chain(
    r: &mut Rendered,
    chain: &str,
    own_ip: IpAddr,
    clauses: Vec<Clause>,
    dir: &str,
    verdict: &str,
) {
    // A pod may always reach itself (inside an OCI pod that never leaves its namespace; a
    // Wasm pod's connection to itself goes through loopback and the hooks).
    let mut rules = vec![format!("ip {dir} {own_ip} {verdict}")];
    let mut sets: Vec<(AddrSet, String)> = Vec::new();
    for c in clauses {
        let mut rule = String::new();
        if let Some(peers) = &c.peers {
            let elements = set_elements(peers);
            if elements.is_empty() {
                // Nothing of this family: the clause matches no IPv4 packet.
                continue;
            }
            let name = match sets.iter().find(|(s, _)| s == peers) {
                Some((_, name)) => name.clone(),
                None => {
                    let name = format!("{chain}-{}", sets.len());
                    r.sets.insert(name.clone(), elements);
                    sets.push((peers.clone(), name.clone()));
                    name
                }
            };
            let _ = write!(rule, "ip {dir} @{name} ");
        }
        match c.l4 {
            None => {}
            Some((p, None)) => {
                let _ = write!(rule, "meta l4proto {} ", proto(p));
            }
            Some((p, Some((a, b)))) if a == b => {
                let _ = write!(rule, "{} dport {a} ", proto(p));
            }
            Some((p, Some((a, b)))) => {
                let _ = write!(rule, "{} dport {a}-{b} ", proto(p));
            }
        }
        rule.push_str(verdict);
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules.push("drop".to_string());
    r.chains.insert(chain.to_string(), rules);
}

/// The objects of the pod at `ip` on this node.
pub fn render_pod(
    opts: &RenderOptions,
    model: &PolicyModel,
    ip: IpAddr,
    pod: &PodInfo,
) -> Rendered {
    let mut r = Rendered::default();
    if !ip.is_ipv4() {
        // The table dispatches IPv4 only (pods here are single-stack IPv4).
        return r;
    }
    r.elements.insert((MapName::LocalPods, ip.to_string()), String::new());
    if opts.enforced.as_ref().is_some_and(|e| !e.contains(ip)) {
        return r;
    }
    if let Some(rules) = model.ingress(ip) {
        let chain = format!("pod-ingress-{ip}");
        render_chain(&mut r, &chain, ip, clauses(model, rules, Some(pod)), "saddr", "accept");
        r.elements.insert((MapName::IngressPods, ip.to_string()), format!("goto {chain}"));
    }
    if let Some(rules) = model.egress(ip) {
        let chain = format!("pod-egress-{ip}");
        // `return`: the destination's ingress chain is checked next.
        render_chain(&mut r, &chain, ip, clauses(model, rules, None), "daddr", "return");
        r.elements.insert((MapName::EgressPods, ip.to_string()), format!("jump {chain}"));
    }
    r
}

/// The pod addresses of this node with their objects.
pub fn render(opts: &RenderOptions, model: &PolicyModel) -> HashMap<IpAddr, Rendered> {
    model
        .pods()
        .filter(|(_, p)| p.node.as_deref() == Some(opts.node_name.as_str()))
        .map(|(ip, p)| (ip, render_pod(opts, model, ip, p)))
        .collect()
}

/// The table's fixed part.
fn table_setup(table: &str) -> String {
    let t = format!("inet {table}");
    let map = "type ipv4_addr : verdict ;";
    // Priority 0 (filter): after the proxy's DNAT (-100), so rules see endpoint addresses.
    let mut out = format!(
        "add table {t}
delete table {t}
add table {t}
add set {t} local-pods {{ type ipv4_addr ; }}
add map {t} ingress-pods {{ {map} }}
add map {t} egress-pods {{ {map} }}
add chain {t} filter-forward {{ type filter hook forward priority 0 ; policy accept ; }}
add chain {t} filter-input {{ type filter hook input priority 0 ; policy accept ; }}
add chain {t} filter-output {{ type filter hook output priority 0 ; policy accept ; }}
add chain {t} dispatch
add rule {t} dispatch ct state established,related accept
add rule {t} dispatch ip saddr vmap @egress-pods
add rule {t} dispatch fib saddr type local ip saddr != @local-pods accept
add rule {t} dispatch ip daddr vmap @ingress-pods
"
    );
    for hook in ["forward", "input", "output"] {
        let _ = writeln!(out, "add rule {t} filter-{hook} jump dispatch");
    }
    out
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
    fill_sets: String,
    add_chains: String,
    add_rules: String,
    add_elements: BTreeMap<MapName, Vec<String>>,
}

fn fill_set(out: &mut String, t: &str, name: &str, elements: &[String]) {
    // Bounded batches: one huge line costs nft more than several.
    for chunk in elements.chunks(1000) {
        let _ = writeln!(out, "add element {t} {name} {{ {} }}", chunk.join(", "));
    }
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
                let elem = if v.is_empty() { k.1.clone() } else { format!("{} : {v}", k.1) };
                self.add_elements.entry(k.0).or_default().push(elem);
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
        for (name, elements) in &old.sets {
            match new.sets.get(name) {
                None => {
                    let _ = writeln!(self.delete_sets, "delete set {t} {name}");
                }
                Some(now) if now != elements => {
                    let _ = writeln!(self.fill_sets, "flush set {t} {name}");
                    fill_set(&mut self.fill_sets, t, name, now);
                }
                Some(_) => {}
            }
        }
        for (name, elements) in &new.sets {
            if !old.sets.contains_key(name) {
                let _ = writeln!(
                    self.add_sets,
                    "add set {t} {name} {{ type ipv4_addr ; flags interval ; }}"
                );
                fill_set(&mut self.add_sets, t, name, elements);
            }
        }
    }

    fn finish(self, t: &str, mut out: String) -> String {
        for (map, keys) in &self.delete_elements {
            for chunk in keys.chunks(1000) {
                let _ =
                    writeln!(out, "delete element {t} {} {{ {} }}", map.as_str(), chunk.join(", "));
            }
        }
        out.push_str(&self.flush_chains);
        out.push_str(&self.delete_chains);
        out.push_str(&self.delete_sets);
        out.push_str(&self.add_sets);
        out.push_str(&self.fill_sets);
        out.push_str(&self.add_chains);
        out.push_str(&self.add_rules);
        for (map, elems) in &self.add_elements {
            for chunk in elems.chunks(1000) {
                let _ =
                    writeln!(out, "add element {t} {} {{ {} }}", map.as_str(), chunk.join(", "));
            }
        }
        out
    }
}

/// One planned sync: the `nft -f` text and what the table holds once it is applied.
#[derive(Debug)]
pub struct Transaction {
    pub text: String,
    /// Whether the transaction recreates the whole table.
    pub full: bool,
    /// Pod addresses whose objects change, with what they are afterwards.
    updates: Vec<(IpAddr, Option<Rendered>)>,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Number of pod addresses whose objects change.
    pub fn pods_changed(&self) -> usize {
        self.updates.len()
    }
}

/// What one sync sent.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The transaction (empty when nothing changed).
    pub text: String,
    pub full: bool,
    pub pods_changed: usize,
}

/// Keeps the table in step with the model: plans each sync's transaction from what it last
/// applied. Not thread-safe by itself; one sync runs at a time.
pub struct NftEnforcer {
    opts: RenderOptions,
    applied: HashMap<IpAddr, Rendered>,
    /// False until a transaction recreating the table was applied (or after a failure).
    table_synced: bool,
}

impl NftEnforcer {
    pub fn new(opts: RenderOptions) -> NftEnforcer {
        NftEnforcer { opts, applied: HashMap::new(), table_synced: false }
    }

    pub fn options(&self) -> &RenderOptions {
        &self.opts
    }

    /// The transaction bringing the table to `model`. Every local pod is rendered (cheap,
    /// and exact: a pod's chain depends on other pods' addresses and ports too); only the
    /// pods whose objects differ from what was applied are sent.
    pub fn plan(&self, model: &PolicyModel) -> Transaction {
        let t = format!("inet {}", self.opts.table);
        let mut desired = render(&self.opts, model);
        let mut sections = Sections::default();
        let mut updates = Vec::new();
        if !self.table_synced {
            let mut keys: Vec<IpAddr> = desired.keys().copied().collect();
            keys.sort();
            for ip in keys {
                if let Some(new) = desired.remove(&ip) {
                    sections.diff(&t, None, Some(&new));
                    updates.push((ip, Some(new)));
                }
            }
            let text = sections.finish(&t, table_setup(&self.opts.table));
            return Transaction { text, full: true, updates };
        }
        let keys: BTreeSet<IpAddr> = desired.keys().chain(self.applied.keys()).copied().collect();
        for ip in keys {
            let new = desired.remove(&ip);
            let old = self.applied.get(&ip);
            if old == new.as_ref() {
                continue;
            }
            sections.diff(&t, old, new.as_ref());
            updates.push((ip, new));
        }
        let text =
            if updates.is_empty() { String::new() } else { sections.finish(&t, String::new()) };
        Transaction { text, full: false, updates }
    }

    /// Record that `tx` was applied.
    pub fn committed(&mut self, tx: Transaction) {
        if tx.full {
            self.applied.clear();
            self.table_synced = true;
        }
        for (ip, rendered) in tx.updates {
            match rendered {
                Some(r) => self.applied.insert(ip, r),
                None => self.applied.remove(&ip),
            };
        }
    }

    /// Forget what was applied: the next plan recreates the table (after a failed apply,
    /// whose effect on the kernel is unknown to us).
    pub fn reset(&mut self) {
        self.applied.clear();
        self.table_synced = false;
    }

    /// Plan, apply and record one sync. Blocking (runs `nft`).
    pub fn sync(&mut self, model: &PolicyModel) -> Result<Applied, NftError> {
        let mut tx = self.plan(model);
        let applied = Applied {
            text: std::mem::take(&mut tx.text),
            full: tx.full,
            pods_changed: tx.pods_changed(),
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

/// Delete the table (when this part is turned off); absent is fine.
pub fn delete_table(table: &str) -> Result<(), NftError> {
    skiff_nft::delete_table("inet", table)
}

#[cfg(test)]
mod tests;
