//! The cluster's names, answered from a cache that Services and EndpointSlices feed (CoreDNS's
//! `kubernetes` plugin with `pods insecure`, following the Kubernetes DNS specification).
//!
//! Each Service is turned into one immutable [`ServiceEntry`] when it or one of its slices
//! changes; a change rebuilds only that entry and its reverse (PTR) names. A query parses the
//! name against the zone's fixed layout (`svc.ns.svc.ZONE`, `host.svc.ns.svc.ZONE`,
//! `_port._proto.svc.ns.svc.ZONE`, `a-b-c-d.ns.pod.ZONE`), takes the entry's `Arc` under a read
//! lock held only for the map lookup, and builds its records outside the lock.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that joins an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// CoreDNS's `dns-version` TXT answer: the version of the Kubernetes DNS specification served.
const SPEC_VERSION: &str = "1.1.0";

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("invalid zone name {zone:?}: {reason}")]
    InvalidZone { zone: String, reason: String },
}

/// What the cache says about a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not a name this cache is authoritative for (outside the zone, or a reverse name of an
    /// address it does not know): forward it, or answer NXDOMAIN.
    NotOurs,
    /// A name in the zone that does not exist.
    NxDomain,
    /// The name exists; no `answers` is NODATA.
    Found { answers: Vec<Record>, additionals: Vec<Record> },
}

/// A Service or endpoint port, lowercased for matching `_port._proto` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortSpec {
    name: String,
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SvcKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    External(String),
}

/// What records are made from, taken out of a Service.
#[derive(Debug, Clone)]
struct SvcInput {
    kind: SvcKind,
    ports: Vec<PortSpec>,
    publish_not_ready: bool,
}

#[derive(Debug, Clone)]
struct EndpointInput {
    addrs: Vec<IpAddr>,
    hostname: Option<String>,
    ready: bool,
}

/// What records are made from, taken out of an EndpointSlice.
#[derive(Debug, Clone)]
struct SliceInput {
    endpoints: Vec<EndpointInput>,
    ports: Arc<Vec<PortSpec>>,
}

#[derive(Debug, Default)]
struct Inputs {
    service: Option<SvcInput>,
    slices: BTreeMap<String, SliceInput>,
}

/// One address of a headless Service, with the name it is known by.
#[derive(Debug)]
struct EndpointEntry {
    ip: IpAddr,
    /// `hostname`, or the address with dashes (`10-1-2-3`), lowercased.
    label: String,
    fqdn: Name,
    ports: Arc<Vec<PortSpec>>,
}

#[derive(Debug)]
enum EntryKind {
    ClusterIp { ips: Vec<IpAddr>, ports: Vec<PortSpec> },
    Headless { endpoints: Vec<EndpointEntry> },
    External(Name),
}

/// A Service's records, rebuilt whole when it or one of its slices changes.
#[derive(Debug)]
struct ServiceEntry {
    fqdn: Name,
    kind: EntryKind,
}

impl ServiceEntry {
    /// The (address, name) pairs this Service answers PTR queries with.
    fn reverse_names(&self) -> Vec<(IpAddr, Name)> {
        match &self.kind {
            EntryKind::ClusterIp { ips, .. } => {
                ips.iter().map(|ip| (*ip, self.fqdn.clone())).collect()
            }
            EntryKind::Headless { endpoints } => {
                endpoints.iter().map(|e| (e.ip, e.fqdn.clone())).collect()
            }
            EntryKind::External(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    /// namespace → name → entry (nested so a lookup borrows the query's labels, no key built).
    services: HashMap<String, HashMap<String, Arc<ServiceEntry>>>,
    inputs: HashMap<(String, String), Inputs>,
    /// (namespace, slice) → the Service it was filed under, for when its label changes.
    slice_owner: HashMap<(String, String), String>,
    ptr: HashMap<IpAddr, Vec<Name>>,
}

/// The zone's records. Cheap to query from any thread; updates rebuild one Service.
#[derive(Debug)]
pub struct Records {
    zone: Name,
    /// The zone's labels, lowercased, leftmost first.
    zone_labels: Vec<Vec<u8>>,
    zone_text: String,
    ttl: u32,
    soa_mname: Name,
    soa_rname: Name,
    serial: AtomicU32,
    index: RwLock<Index>,
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1)
}

fn lower(label: &[u8]) -> Option<String> {
    std::str::from_utf8(label).ok().map(|s| s.to_ascii_lowercase())
}

/// `10.1.2.3` → `10-1-2-3`, `fd00::1` → `fd00--1` (CoreDNS's endpoint names).
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// `10-1-2-3` → `10.1.2.3`; `fd00--1` → `fd00::1` (CoreDNS's pod names).
fn undash(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

fn svc_input(svc: &Service) -> Option<SvcInput> {
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        SvcKind::External(spec.external_name.clone().unwrap_or_default())
    } else {
        let ips: Vec<&String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        if ips.iter().any(|ip| ip.as_str() == "None") {
            SvcKind::Headless
        } else {
            let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            if ips.is_empty() {
                // Not allocated yet: no record until it is (as CoreDNS, which skips it).
                return None;
            }
            SvcKind::ClusterIp(ips)
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortSpec {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Some(SvcInput {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
    })
}

fn slice_input(slice: &EndpointSlice) -> SliceInput {
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortSpec {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    let endpoints = if slice.address_type == "FQDN" {
        Vec::new()
    } else {
        slice
            .endpoints
            .iter()
            .map(|e| EndpointInput {
                addrs: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e.hostname.clone().filter(|h| !h.is_empty()),
                // An unknown readiness counts as ready (the EndpointSlice API's rule).
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            })
            .collect()
    };
    SliceInput { endpoints, ports: Arc::new(ports) }
}

fn key_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

impl Records {
    /// An empty cache for `zone` (e.g. `cluster.local`), answering with `ttl` seconds.
    pub fn new(zone: &str, ttl: u32) -> Result<Records, RecordsError> {
        let text = zone.trim_end_matches('.').to_ascii_lowercase();
        let invalid = |reason: String| RecordsError::InvalidZone { zone: zone.into(), reason };
        if text.is_empty() {
            return Err(invalid("empty".into()));
        }
        let mut name = Name::from_ascii(&text).map_err(|e| invalid(e.to_string()))?;
        name.set_fqdn(true);
        let zone_labels = name.iter().map(|l| l.to_ascii_lowercase()).collect();
        let soa_mname =
            Name::from_ascii(format!("ns.dns.{text}.")).map_err(|e| invalid(e.to_string()))?;
        let soa_rname =
            Name::from_ascii(format!("hostmaster.{text}.")).map_err(|e| invalid(e.to_string()))?;
        Ok(Records {
            zone: name,
            zone_labels,
            zone_text: text,
            ttl,
            soa_mname,
            soa_rname,
            serial: AtomicU32::new(unix_now()),
            index: RwLock::new(Index::default()),
        })
    }

    /// The zone, fully qualified (`cluster.local.`).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The zone's SOA record (CoreDNS's values; the serial moves with every change).
    pub fn soa(&self) -> Record {
        let soa = SOA::new(
            self.soa_mname.clone(),
            self.soa_rname.clone(),
            self.serial.load(Ordering::Relaxed),
            7200,
            1800,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.zone.clone(), self.ttl, RData::SOA(soa))
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Add or replace a Service.
    pub fn upsert_service(&self, svc: &Service) {
        self.put_service(&mut self.write(), svc);
    }

    fn put_service(&self, index: &mut Index, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else { return };
        let input = svc_input(svc);
        index.inputs.entry(key.clone()).or_default().service = input;
        self.rebuild(index, key);
    }

    /// Forget a Service (its slices stay until they are deleted too).
    pub fn remove_service(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let mut index = self.write();
        if let Some(inputs) = index.inputs.get_mut(&key) {
            inputs.service = None;
        }
        self.rebuild(&mut index, key);
    }

    /// Add or replace an EndpointSlice (filed under its `kubernetes.io/service-name` label).
    pub fn upsert_endpoint_slice(&self, slice: &EndpointSlice) {
        self.put_slice(&mut self.write(), slice);
    }

    fn put_slice(&self, index: &mut Index, slice: &EndpointSlice) {
        let Some((ns, slice_name)) = key_of(&slice.metadata) else { return };
        let owner = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned();
        let input = slice_input(slice);
        let previous = index.slice_owner.remove(&(ns.clone(), slice_name.clone()));
        if let Some(prev) = previous.filter(|p| Some(p) != owner.as_ref()) {
            let key = (ns.clone(), prev);
            if let Some(inputs) = index.inputs.get_mut(&key) {
                inputs.slices.remove(&slice_name);
            }
            self.rebuild(index, key);
        }
        let Some(owner) = owner else { return };
        index.slice_owner.insert((ns.clone(), slice_name.clone()), owner.clone());
        let key = (ns, owner);
        index.inputs.entry(key.clone()).or_default().slices.insert(slice_name, input);
        self.rebuild(index, key);
    }

    /// Forget an EndpointSlice.
    pub fn remove_endpoint_slice(&self, namespace: &str, name: &str) {
        let mut index = self.write();
        let Some(owner) = index.slice_owner.remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        let key = (namespace.to_string(), owner);
        if let Some(inputs) = index.inputs.get_mut(&key) {
            inputs.slices.remove(name);
        }
        self.rebuild(&mut index, key);
    }

    /// Replace everything (after a re-list, when deletions may have been missed). Built aside
    /// and swapped in, so queries never see a half-filled cache.
    pub fn replace_all<'a>(
        &self,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        let mut fresh = Index::default();
        // Slices first: each Service's entry is then built once, with all its endpoints.
        for s in slices {
            self.put_slice(&mut fresh, s);
        }
        for s in services {
            self.put_service(&mut fresh, s);
        }
        *self.write() = fresh;
    }

    /// Remake one Service's entry and reverse names from its inputs.
    fn rebuild(&self, index: &mut Index, key: (String, String)) {
        let (ns, name) = &key;
        let old = index.services.get_mut(ns).and_then(|m| m.remove(name));
        if let Some(old) = &old {
            for (ip, fqdn) in old.reverse_names() {
                if let Some(names) = index.ptr.get_mut(&ip) {
                    names.retain(|n| *n != fqdn);
                    if names.is_empty() {
                        index.ptr.remove(&ip);
                    }
                }
            }
        }
        let entry = index.inputs.get(&key).and_then(|i| self.build_entry(ns, name, i));
        match entry {
            Some(entry) => {
                for (ip, fqdn) in entry.reverse_names() {
                    index.ptr.entry(ip).or_default().push(fqdn);
                }
                index.services.entry(ns.clone()).or_default().insert(name.clone(), Arc::new(entry));
            }
            None => {
                if index.services.get(ns).is_some_and(|m| m.is_empty()) {
                    index.services.remove(ns);
                }
            }
        }
        if index.inputs.get(&key).is_some_and(|i| i.service.is_none() && i.slices.is_empty()) {
            index.inputs.remove(&key);
        }
        self.serial.store(unix_now(), Ordering::Relaxed);
    }

    fn build_entry(&self, ns: &str, name: &str, inputs: &Inputs) -> Option<ServiceEntry> {
        let svc = inputs.service.as_ref()?;
        let (ns, name) = (ns.to_ascii_lowercase(), name.to_ascii_lowercase());
        let fqdn = Name::from_ascii(format!("{name}.{ns}.svc.{}.", self.zone_text)).ok()?;
        let kind = match &svc.kind {
            SvcKind::External(target) => {
                let mut target = Name::from_ascii(target).ok()?;
                target.set_fqdn(true);
                EntryKind::External(target)
            }
            SvcKind::ClusterIp(ips) => {
                EntryKind::ClusterIp { ips: ips.clone(), ports: svc.ports.clone() }
            }
            SvcKind::Headless => {
                let mut endpoints: Vec<EndpointEntry> = Vec::new();
                for slice in inputs.slices.values() {
                    for ep in &slice.endpoints {
                        if !ep.ready && !svc.publish_not_ready {
                            continue;
                        }
                        for ip in &ep.addrs {
                            if endpoints.iter().any(|e| e.ip == *ip) {
                                continue;
                            }
                            let label = match &ep.hostname {
                                Some(h) => h.to_ascii_lowercase(),
                                None => dashed(*ip),
                            };
                            let Ok(fqdn) = Name::from_ascii(format!(
                                "{label}.{name}.{ns}.svc.{}.",
                                self.zone_text
                            )) else {
                                continue;
                            };
                            endpoints.push(EndpointEntry {
                                ip: *ip,
                                label,
                                fqdn,
                                ports: slice.ports.clone(),
                            });
                        }
                    }
                }
                EntryKind::Headless { endpoints }
            }
        };
        Some(ServiceEntry { fqdn, kind })
    }

    fn record(&self, name: &Name, rdata: RData) -> Record {
        Record::from_rdata(name.clone(), self.ttl, rdata)
    }

    fn address(&self, name: &Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(name, RData::AAAA(AAAA(v6))),
        }
    }

    /// Address records of `ips` that `qtype` asks for (A, AAAA, or both for ANY).
    fn addresses(
        &self,
        name: &Name,
        qtype: RecordType,
        ips: impl Iterator<Item = IpAddr>,
    ) -> Vec<Record> {
        ips.filter(|ip| match qtype {
            RecordType::A => ip.is_ipv4(),
            RecordType::AAAA => ip.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        })
        .map(|ip| self.address(name, ip))
        .collect()
    }

    /// SRV records with CoreDNS's priority 0 and weights sharing 100.
    fn srv(&self, name: &Name, targets: &[(u16, Name)]) -> Vec<Record> {
        let weight = (100 / targets.len().max(1)).max(1) as u16;
        targets
            .iter()
            .map(|(port, target)| {
                self.record(name, RData::SRV(SRV::new(0, weight, *port, target.clone())))
            })
            .collect()
    }

    fn entry(&self, ns: &str, name: &str) -> Option<Arc<ServiceEntry>> {
        self.read().services.get(ns).and_then(|m| m.get(name)).cloned()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.read().services.contains_key(ns)
    }

    /// Answer `qtype` for `name` (any case; records carry the name as asked).
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let labels: Vec<&[u8]> = name.iter().collect();
        if labels.len() >= 2 {
            let tail = (labels[labels.len() - 2], labels[labels.len() - 1]);
            let reverse = tail.1.eq_ignore_ascii_case(b"arpa")
                && (tail.0.eq_ignore_ascii_case(b"in-addr") || tail.0.eq_ignore_ascii_case(b"ip6"));
            if reverse {
                return self.lookup_reverse(name, qtype);
            }
        }
        let z = self.zone_labels.len();
        if labels.len() < z {
            return Lookup::NotOurs;
        }
        let split = labels.len() - z;
        let in_zone =
            labels[split..].iter().zip(&self.zone_labels).all(|(a, b)| a.eq_ignore_ascii_case(b));
        if !in_zone {
            return Lookup::NotOurs;
        }
        let mut rest = Vec::with_capacity(split);
        for l in &labels[..split] {
            match lower(l) {
                Some(l) => rest.push(l),
                None => return Lookup::NxDomain,
            }
        }
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let found = |answers: Vec<Record>| Lookup::Found { answers, additionals: Vec::new() };
        match rest.as_slice() {
            [] => match qtype {
                RecordType::SOA => found(vec![self.soa()]),
                _ => found(Vec::new()),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => {
                    found(vec![self.record(name, RData::TXT(TXT::new(vec![SPEC_VERSION.into()])))])
                }
                _ => found(Vec::new()),
            },
            ["svc"] | ["pod"] => found(Vec::new()),
            [ns, "svc"] => {
                if self.namespace_exists(ns) {
                    found(Vec::new())
                } else {
                    Lookup::NxDomain
                }
            }
            [svc, ns, "svc"] => self.lookup_service(name, qtype, ns, svc),
            [first, svc, ns, "svc"] => self.lookup_endpoint_or_proto(name, qtype, ns, svc, first),
            [port, proto, svc, ns, "svc"] => self.lookup_port(name, qtype, ns, svc, port, proto),
            [_ns, "pod"] => found(Vec::new()),
            [ip, _ns, "pod"] => match undash(ip) {
                Some(ip) => found(self.addresses(name, qtype, std::iter::once(ip))),
                None => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }

    fn lookup_service(&self, name: &Name, qtype: RecordType, ns: &str, svc: &str) -> Lookup {
        let Some(entry) = self.entry(ns, svc) else { return Lookup::NxDomain };
        match &entry.kind {
            EntryKind::External(target) => Lookup::Found {
                answers: vec![self.record(name, RData::CNAME(CNAME(target.clone())))],
                additionals: Vec::new(),
            },
            EntryKind::ClusterIp { ips, ports } => match qtype {
                RecordType::SRV => {
                    let targets: Vec<(u16, Name)> =
                        ports.iter().map(|p| (p.port, entry.fqdn.clone())).collect();
                    let additionals = if targets.is_empty() {
                        Vec::new()
                    } else {
                        self.addresses(&entry.fqdn, RecordType::ANY, ips.iter().copied())
                    };
                    Lookup::Found { answers: self.srv(name, &targets), additionals }
                }
                _ => Lookup::Found {
                    answers: self.addresses(name, qtype, ips.iter().copied()),
                    additionals: Vec::new(),
                },
            },
            EntryKind::Headless { endpoints } => match qtype {
                RecordType::SRV => self.endpoint_srv(name, endpoints.iter(), |_| true),
                _ => Lookup::Found {
                    answers: self.addresses(name, qtype, endpoints.iter().map(|e| e.ip)),
                    additionals: Vec::new(),
                },
            },
        }
    }

    /// SRV records of headless endpoints' ports that `keep` accepts, targets per endpoint.
    fn endpoint_srv<'e>(
        &self,
        name: &Name,
        endpoints: impl Iterator<Item = &'e EndpointEntry>,
        keep: impl Fn(&PortSpec) -> bool,
    ) -> Lookup {
        let mut targets = Vec::new();
        let mut additionals = Vec::new();
        for e in endpoints {
            let before = targets.len();
            targets.extend(e.ports.iter().filter(|p| keep(p)).map(|p| (p.port, e.fqdn.clone())));
            if targets.len() > before {
                additionals.push(self.address(&e.fqdn, e.ip));
            }
        }
        Lookup::Found { answers: self.srv(name, &targets), additionals }
    }

    /// `host.svc.ns.svc.ZONE` (a headless Service's endpoint) or `_proto.svc.ns.svc.ZONE`.
    fn lookup_endpoint_or_proto(
        &self,
        name: &Name,
        qtype: RecordType,
        ns: &str,
        svc: &str,
        first: &str,
    ) -> Lookup {
        let Some(entry) = self.entry(ns, svc) else { return Lookup::NxDomain };
        if let Some(proto) = first.strip_prefix('_') {
            // An empty non-terminal above `_port._proto`: there if some port has the protocol.
            let exists = match &entry.kind {
                EntryKind::ClusterIp { ports, .. } => ports.iter().any(|p| p.protocol == proto),
                EntryKind::Headless { endpoints } => {
                    endpoints.iter().any(|e| e.ports.iter().any(|p| p.protocol == proto))
                }
                EntryKind::External(_) => false,
            };
            return if exists {
                Lookup::Found { answers: Vec::new(), additionals: Vec::new() }
            } else {
                Lookup::NxDomain
            };
        }
        let EntryKind::Headless { endpoints } = &entry.kind else { return Lookup::NxDomain };
        let matching: Vec<&EndpointEntry> = endpoints.iter().filter(|e| e.label == first).collect();
        if matching.is_empty() {
            return Lookup::NxDomain;
        }
        Lookup::Found {
            answers: self.addresses(name, qtype, matching.iter().map(|e| e.ip)),
            additionals: Vec::new(),
        }
    }

    /// `_port._proto.svc.ns.svc.ZONE`: the Service's named port.
    fn lookup_port(
        &self,
        name: &Name,
        qtype: RecordType,
        ns: &str,
        svc: &str,
        port: &str,
        proto: &str,
    ) -> Lookup {
        let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
            return Lookup::NxDomain;
        };
        let Some(entry) = self.entry(ns, svc) else { return Lookup::NxDomain };
        let matches = |p: &PortSpec| p.name == port && p.protocol == proto;
        let found = match &entry.kind {
            EntryKind::ClusterIp { ips, ports } => {
                let targets: Vec<(u16, Name)> = ports
                    .iter()
                    .filter(|p| matches(p))
                    .map(|p| (p.port, entry.fqdn.clone()))
                    .collect();
                if targets.is_empty() {
                    return Lookup::NxDomain;
                }
                let additionals = self.addresses(&entry.fqdn, RecordType::ANY, ips.iter().copied());
                Lookup::Found { answers: self.srv(name, &targets), additionals }
            }
            EntryKind::Headless { endpoints } => {
                let found = self.endpoint_srv(name, endpoints.iter(), matches);
                if matches!(&found, Lookup::Found { answers, .. } if answers.is_empty()) {
                    return Lookup::NxDomain;
                }
                found
            }
            EntryKind::External(_) => return Lookup::NxDomain,
        };
        match (qtype, found) {
            (RecordType::SRV, found) => found,
            _ => Lookup::Found { answers: Vec::new(), additionals: Vec::new() },
        }
    }

    fn lookup_reverse(&self, name: &Name, qtype: RecordType) -> Lookup {
        let Ok(net) = name.parse_arpa_name() else { return Lookup::NotOurs };
        if net.prefix_len() != net.max_prefix_len() {
            return Lookup::NotOurs;
        }
        let targets = match self.read().ptr.get(&net.addr()) {
            Some(names) => names.clone(),
            None => return Lookup::NotOurs,
        };
        let answers = match qtype {
            RecordType::PTR | RecordType::ANY => {
                targets.into_iter().map(|t| self.record(name, RData::PTR(PTR(t)))).collect()
            }
            _ => Vec::new(),
        };
        Lookup::Found { answers, additionals: Vec::new() }
    }

    /// The addresses `name` (absolute, any case) has in the zone: `None` when it is not the
    /// zone's, `Some(empty)` when it does not exist or has no address. An ExternalName's
    /// alias is followed while it stays in the zone.
    pub fn addresses_of(&self, name: &Name) -> Option<Vec<IpAddr>> {
        let mut name = name.clone();
        for _ in 0..8 {
            let mut ips = Vec::new();
            let mut alias = None;
            for qtype in [RecordType::A, RecordType::AAAA] {
                match self.lookup(&name, qtype) {
                    Lookup::NotOurs => return None,
                    Lookup::NxDomain => return Some(Vec::new()),
                    Lookup::Found { answers, .. } => {
                        for r in answers {
                            match r.data {
                                RData::A(a) => ips.push(IpAddr::V4(a.0)),
                                RData::AAAA(a) => ips.push(IpAddr::V6(a.0)),
                                RData::CNAME(c) => alias = Some(c.0),
                                _ => {}
                            }
                        }
                    }
                }
            }
            match alias {
                Some(target) if ips.is_empty() => name = target,
                _ => return Some(ips),
            }
        }
        Some(Vec::new())
    }
}

#[cfg(test)]
mod tests;
