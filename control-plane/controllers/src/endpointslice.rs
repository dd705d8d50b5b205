//! The EndpointSlice controller (Kubernetes' `pkg/controller/endpointslice` and its reconciler,
//! `k8s.io/endpointslice`): every Service with a selector gets `discovery.k8s.io/v1`
//! EndpointSlices listing the addresses of the pods it selects, at most 100 endpoints a slice,
//! one group of slices per set of resolved ports.
//!
//! A sync reads the Service, its namespace's pods (the pod informer's namespace index) and the
//! slices it manages (an index of the slice informer), computes the slices that should exist
//! (pure: [`desired`] and [`plan`]) and writes only those whose content changed, reusing
//! existing slices as upstream does so that one pod change rewrites one slice. Slices are
//! created with `generateName`, so the cache cannot tell a slice we have just created from
//! none: the [`SliceTracker`] remembers our writes and a sync waits until the cache has them.
//!
//! Kept apart from upstream on purpose: a Service whose selector is removed loses the slices
//! this controller made (upstream leaves them behind, stale).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::informers::{BY_NAMESPACE, Change, Informer};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::pods::{controller_ref, is_ready, phase};
use tokio::task::JoinSet;

use crate::replicaset::{api_message, is_conflict, is_not_found};
use crate::{Context, Error};

#[cfg(test)]
mod tests;

/// `discovery.k8s.io/managed-by`: which controller owns a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// `discovery.k8s.io/service-name`: the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Set (empty) on the slices and Endpoints of a Service without a cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// This controller's `managed-by` value.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// When the change that led to a write happened (for latency measurements downstream).
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Index of the slice informer: the slices this controller manages, by `namespace/service`.
const BY_SERVICE: &str = "endpointslice-controller-by-service";
/// Services syncing at once (Kubernetes' `--concurrent-service-endpoint-syncs`).
const WORKERS: usize = 5;
/// How soon a sync that found the slice cache behind our writes looks again.
pub(crate) const STALE_RETRY: Duration = Duration::from_millis(100);
/// How soon a sync that skipped pods on unknown nodes looks again.
const NODE_RETRY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Pure decisions.
// ---------------------------------------------------------------------------------------

/// The Service's selector, if it has a non-empty one (an empty selector is no selector: the
/// API drops it on the way to the store).
pub fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Does `selector` (a Service's: labels only) select `pod`?
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// Kubernetes' `IsServiceIPSet`: a cluster IP that is neither empty nor `None`.
pub fn has_cluster_ip(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    !ip.is_empty() && ip != "None"
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

/// The pod's IPv4 addresses (`status.podIPs`, or `status.podIP` when the list is empty).
pub fn pod_ipv4s(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else { return Vec::new() };
    let ips: Vec<&str> = match st.pod_ips.as_ref().filter(|v| !v.is_empty()) {
        Some(ips) => ips.iter().map(|i| i.ip.as_str()).collect(),
        None => st.pod_ip.as_deref().into_iter().collect(),
    };
    ips.into_iter().filter(|ip| ip.parse::<Ipv4Addr>().is_ok()).map(String::from).collect()
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not finished, has an address, and (unless
/// `include_terminating`) not being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    let st = pod.status.as_ref();
    let has_ip = st.and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty())
        || st.and_then(|s| s.pod_ips.as_ref()).is_some_and(|ips| !ips.is_empty());
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// Kubernetes' `FindPort`: the pod port a Service port targets. A named target is looked up
/// in the containers' ports, then in the sidecars' (restartable init containers), by name and
/// protocol; a pod without it has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        // The API server defaults the target to the port; a Service read from elsewhere may not
        // have been defaulted.
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Kubernetes' `getEndpointPorts`: the Service's ports as this pod serves them; a port whose
/// named target the pod lacks is left out.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Kubernetes' `ShouldSetHostname`: the pod asked for a hostname under this Service's
/// subdomain (what StatefulSet pods behind their headless Service do).
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref()).is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// The `targetRef` of a pod's endpoint.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Kubernetes' `podToEndpoint`. `serving` is the pod's readiness (or forced by
/// `publishNotReadyAddresses`); `ready` is serving and not terminating, except that
/// `publishNotReadyAddresses` makes it always true.
pub fn pod_to_endpoint(pod: &Pod, zone: Option<&str>, svc: &Service) -> Endpoint {
    let publish = publish_not_ready(svc);
    let serving = publish || is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish || (serving && !terminating);
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses: pod_ipv4s(pod),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pod_reference(pod)),
        zone: zone.filter(|z| !z.is_empty()).map(String::from),
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

/// A set of ports independent of their order (Kubernetes' `PortMapKey`).
pub type PortKey = Vec<(String, String, i32, Option<String>)>;

pub fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.port.unwrap_or(0),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// What identifies an endpoint across syncs (Kubernetes' endpoint hash): its target, its
/// addresses and its hostname. Everything else about it may change in place.
pub type EndpointKey = (String, String, Vec<String>, String);

pub fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let r = ep.target_ref.as_ref();
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    (
        r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
        r.and_then(|r| r.name.clone()).unwrap_or_default(),
        addresses,
        ep.hostname.clone().unwrap_or_default(),
    )
}

/// The endpoints that share one set of ports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortGroup {
    pub ports: Vec<EndpointPort>,
    pub endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// What the Service's slices should hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub groups: BTreeMap<PortKey, PortGroup>,
    /// Pods left out because their node is not (yet) known: upstream's "Node not found".
    pub skipped: Vec<String>,
}

/// The desired endpoints of `svc` from the pods it selects. `node` tells a node's zone label:
/// `None` for an unknown node, `Some(None)` for a node without a zone.
pub fn desired(
    svc: &Service,
    pods: &[Arc<Pod>],
    node: impl Fn(&str) -> Option<Option<String>>,
) -> Desired {
    let mut out = Desired::default();
    let publish = publish_not_ready(svc);
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let key = port_key(&ports);
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let zone = match node(node_name) {
            Some(zone) => zone,
            // Published anyway when the user asked for every address.
            None if publish => None,
            None => {
                out.skipped.push(format!(
                    "skipping Pod {} for Service {ns}/{}: Node {node_name} Not Found",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    svc.metadata.name.as_deref().unwrap_or_default(),
                ));
                continue;
            }
        };
        let group =
            out.groups.entry(key).or_insert_with(|| PortGroup { ports, ..Default::default() });
        let ep = pod_to_endpoint(pod, zone.as_deref(), svc);
        if !ep.addresses.is_empty() {
            group.endpoints.insert(endpoint_key(&ep), ep);
        }
    }
    out
}

/// Is `slice` controlled by `svc` (by uid, so a slice of an older Service of the same name is not)?
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Service" && o.controller == Some(true) && o.uid == uid)
}

/// Kubernetes' `setEndpointSliceLabels`: the Service's labels (but the reserved ones), the
/// headless label when it has no cluster IP, and the service-name and managed-by labels.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !has_cluster_ip(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// Kubernetes' `getEndpointSlicePrefix`: `<service>-`, unless that is no valid name prefix.
pub fn slice_prefix(name: &str) -> String {
    if name.len() < 253 { format!("{name}-") } else { name.to_string() }
}

/// A new (unnamed) slice of `svc` with `ports` and no endpoints yet.
pub fn new_slice(svc: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(svc.metadata.name.as_deref().unwrap_or_default())),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![controller_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// What a sync writes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Without a name (they carry `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed copies of cached slices (with their `resourceVersion`).
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<Arc<EndpointSlice>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn endpoints_len(s: &EndpointSlice) -> usize {
    s.endpoints.len()
}

/// Kubernetes' `getSliceToFill`: the slice that `n` more endpoints fill closest to `max`.
fn slice_to_fill(slices: &[EndpointSlice], n: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in slices.iter().enumerate() {
        let Some(diff) = max.checked_sub(n + endpoints_len(s)) else { continue };
        if best.is_none_or(|(_, d)| diff < d) && diff < max {
            best = Some((i, diff));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Kubernetes' `reconcileByPortMapping` for one set of ports: keep the endpoints already
/// placed where they are (updating those that changed), drop the unwanted ones, fill the
/// slices being updated anyway, then one nearly-full unchanged slice, then new slices.
fn plan_group(
    svc: &Service,
    existing: &[Arc<EndpointSlice>],
    mut wanted: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    max: usize,
    labels: &BTreeMap<String, String>,
    plan: &mut Plan,
) {
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    for slice in existing {
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut changed = false;
        for ep in &slice.endpoints {
            if let Some(want) = wanted.remove(&endpoint_key(ep)) {
                changed |= want != *ep;
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                plan.delete.push(slice.clone());
            } else {
                let mut s = (**slice).clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels.clone());
                to_update.push(s);
            }
        } else if labels_changed {
            let mut s = (**slice).clone();
            s.metadata.labels = Some(labels.clone());
            to_update.push(s);
        } else {
            unchanged.push((**slice).clone());
        }
    }
    let mut rest = wanted.into_values();
    let mut left = rest.len();
    if left > 0 && !to_update.is_empty() {
        // Fullest first, so fewer slices end up partly filled.
        to_update.sort_by_key(|s| std::cmp::Reverse(endpoints_len(s)));
        for s in to_update.iter_mut() {
            while left > 0 && s.endpoints.len() < max {
                if let Some(ep) = rest.next() {
                    s.endpoints.push(ep);
                }
                left -= 1;
            }
        }
    }
    while left > 0 {
        let reuse = if left < max { slice_to_fill(&unchanged, left, max) } else { None };
        let (mut s, named) = match reuse {
            Some(i) => (unchanged.remove(i), true),
            None => (new_slice(svc, ports.to_vec()), false),
        };
        while left > 0 && s.endpoints.len() < max {
            if let Some(ep) = rest.next() {
                s.endpoints.push(ep);
            }
            left -= 1;
        }
        if named {
            to_update.push(s);
        } else {
            plan.create.push(s);
        }
    }
    plan.update.extend(to_update);
}

/// Kubernetes' `reconcileByAddressType` and `finalize`: the writes that turn `existing` (the
/// slices this controller manages for the Service) into what `desired` asks for.
pub fn plan(svc: &Service, existing: &[Arc<EndpointSlice>], desired: &Desired) -> Plan {
    plan_with_max(svc, existing, desired, MAX_ENDPOINTS_PER_SLICE)
}

pub fn plan_with_max(
    svc: &Service,
    existing: &[Arc<EndpointSlice>],
    desired: &Desired,
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let labels = slice_labels(svc);
    let mut by_ports: BTreeMap<PortKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    // Sorted by name: the same cache gives the same plan.
    let mut sorted: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        if owned_by(s, svc) && s.address_type == "IPv4" {
            by_ports
                .entry(port_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s.clone());
        } else {
            plan.delete.push(s.clone());
        }
    }
    for (key, group) in &desired.groups {
        let existing = by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        plan_group(svc, existing, group.endpoints.clone(), &group.ports, max, &labels, &mut plan);
    }
    for (key, slices) in &by_ports {
        if !desired.groups.contains_key(key) {
            plan.delete.extend(slices.iter().cloned());
        }
    }
    // A Service without endpoints keeps one empty slice, so that it is seen to have none.
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(svc, Vec::new());
        let is_placeholder = |s: &EndpointSlice| {
            s.endpoints.is_empty()
                && s.ports.as_ref().is_none_or(Vec::is_empty)
                && s.address_type == placeholder.address_type
                && s.metadata.namespace == placeholder.metadata.namespace
                && s.metadata.labels == placeholder.metadata.labels
                && s.metadata.owner_references == placeholder.metadata.owner_references
        };
        if plan.delete.len() == 1 && is_placeholder(&plan.delete[0]) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    recycle(&mut plan, |s| owned_by(s, svc));
    plan
}

/// Kubernetes' `finalize`: a slice about to be created takes the place of one about to be
/// deleted (an update instead of a create and a delete), when that one is ours and of the
/// same address type.
pub(crate) fn recycle(plan: &mut Plan, ours: impl Fn(&EndpointSlice) -> bool) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let old = &plan.delete[i];
        let Some(new) = plan.create.last() else { break };
        if old.address_type == new.address_type && ours(old) {
            let old = plan.delete.remove(i);
            let Some(mut new) = plan.create.pop() else { break };
            new.metadata.name = old.metadata.name.clone();
            new.metadata.generate_name = old.metadata.generate_name.clone();
            new.metadata.resource_version = old.metadata.resource_version.clone();
            new.metadata.uid = old.metadata.uid.clone();
            new.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
            new.metadata.annotations = old.metadata.annotations.clone();
            plan.update.push(new);
        } else {
            i += 1;
        }
    }
}

/// Did anything a Service's endpoints show change between two versions of a pod (Kubernetes'
/// `podEndpointsChanged`, plus the labels that decide which Services select it)?
pub fn pod_changed_for_endpoints(old: &Pod, new: &Pod) -> bool {
    let spec = |p: &Pod| {
        p.spec.as_ref().map(|s| (s.node_name.clone(), s.hostname.clone(), s.subdomain.clone()))
    };
    let ips = |p: &Pod| {
        p.status.as_ref().map(|s| (s.pod_ip.clone(), s.pod_ips.clone().unwrap_or_default()))
    };
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || is_ready(old) != is_ready(new)
        || phase(old) != phase(new)
        || ips(old) != ips(new)
        || spec(old) != spec(new)
}

// ---------------------------------------------------------------------------------------
// Our writes the slice cache has not shown yet.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// We wrote the slice; the cache must show this resourceVersion or a later one.
    Written(u64),
    /// We deleted the slice; the cache must not show it.
    Deleted,
}

/// Kubernetes' `EndpointSliceTracker`: per owner key, the slices this controller wrote or
/// deleted and the cache has not caught up with. A sync on a stale cache would create a
/// second set of slices (created slices have generated names), so it waits instead.
#[derive(Default)]
pub struct SliceTracker {
    expected: Mutex<Expectations>,
}

/// Owner key → slice name → what the cache must show, and since when.
type Expectations = HashMap<String, HashMap<String, (Expect, Instant)>>;

/// An expectation the cache has not met in this long is dropped (the object was changed or
/// deleted by someone else in between, and a watch event for that will come or has come).
const EXPECT_TTL: Duration = Duration::from_secs(30);

fn resource_version(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
}

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Expectations> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn written(&self, key: &str, slice: &EndpointSlice) {
        let (Some(name), Some(rv)) = (slice.metadata.name.clone(), resource_version(slice)) else {
            return;
        };
        self.lock()
            .entry(key.to_string())
            .or_default()
            .insert(name, (Expect::Written(rv), Instant::now()));
    }

    pub fn deleted(&self, key: &str, name: &str) {
        self.lock()
            .entry(key.to_string())
            .or_default()
            .insert(name.to_string(), (Expect::Deleted, Instant::now()));
    }

    /// Is this watch event the echo of our own write (no need to sync for it)?
    pub fn is_own_write(&self, key: &str, slice: &EndpointSlice) -> bool {
        let (Some(name), Some(rv)) = (slice.metadata.name.as_deref(), resource_version(slice))
        else {
            return false;
        };
        let mut all = self.lock();
        let Some(m) = all.get_mut(key) else { return false };
        match m.get(name) {
            Some((Expect::Written(w), _)) if *w == rv => {
                m.remove(name);
                true
            }
            _ => false,
        }
    }

    /// A slice left the cache: true when that was our delete.
    pub fn gone(&self, key: &str, name: &str) -> bool {
        let mut all = self.lock();
        let Some(m) = all.get_mut(key) else { return false };
        matches!(m.remove(name), Some((Expect::Deleted, _)))
    }

    /// Is the cache (`cached`, the key's slices) behind our writes?
    pub fn stale(&self, key: &str, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut all = self.lock();
        let Some(m) = all.get_mut(key) else { return false };
        let now = Instant::now();
        m.retain(|name, (expect, at)| {
            if now.duration_since(*at) > EXPECT_TTL {
                return false;
            }
            let seen = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match expect {
                Expect::Written(rv) => {
                    seen.is_none_or(|s| resource_version(s).is_some_and(|v| v < *rv))
                }
                Expect::Deleted => seen.is_some(),
            }
        });
        let stale = !m.is_empty();
        if !stale {
            all.remove(key);
        }
        stale
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// When the pod's Ready condition last changed, whatever its status.
fn ready_transition(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref().map(|t| t.0)
}

/// Kubernetes' `TriggerTimeTracker`: the earliest moment among the changes a sync is the first
/// to see (the Service's creation when the Service is new to it, each pod's last readiness
/// transition when it moved on), which goes into the `last-change-trigger-time` annotation.
#[derive(Default)]
pub struct TriggerTimes {
    seen: Mutex<HashMap<String, HashMap<String, Timestamp>>>,
}

impl TriggerTimes {
    pub fn compute(&self, key: &str, svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
        let mut all = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let known = all.get(key);
        let mut times = Vec::new();
        if known.is_none()
            && let Some(t) = &svc.metadata.creation_timestamp
        {
            times.push(t.0);
        }
        let mut next = HashMap::with_capacity(pods.len());
        for pod in pods {
            let Some(t) = ready_transition(pod) else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if known.and_then(|m| m.get(&name)).is_none_or(|last| t > *last) {
                times.push(t);
            }
            next.insert(name, t);
        }
        all.insert(key.to_string(), next);
        times.into_iter().min()
    }

    pub fn forget(&self, key: &str) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// Kubernetes' `addTriggerTimeAnnotation` on every slice about to be written.
pub fn annotate_trigger_time(plan: &mut Plan, at: Option<Timestamp>) {
    for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        let mut a = s.metadata.annotations.take().unwrap_or_default();
        match at {
            Some(t) => a.insert(ANNOTATION_TRIGGER_TIME.into(), t.to_string()),
            None => a.remove(ANNOTATION_TRIGGER_TIME),
        };
        s.metadata.annotations = (!a.is_empty()).then_some(a);
    }
}

// ---------------------------------------------------------------------------------------
// The controller.
// ---------------------------------------------------------------------------------------

/// The namespace index of the Service informer (shared by the endpoint controllers).
pub(crate) fn service_indexes(services: &Informer<Service>) {
    services
        .add_index(BY_NAMESPACE, |s: &Service| s.metadata.namespace.clone().into_iter().collect());
}

/// Queue every Service of the pod's namespace whose selector selects it (as it was or is).
pub(crate) fn wake_services_of(
    services: &Informer<Service>,
    queue: &WorkQueue,
    old: Option<&Pod>,
    new: &Pod,
) {
    let ns = new.metadata.namespace.as_deref().unwrap_or_default();
    for svc in services.by_index(BY_NAMESPACE, ns) {
        if let Some(sel) = selector_of(&svc)
            && (selects(sel, new) || old.is_some_and(|o| selects(sel, o)))
        {
            queue.add(&key_of(svc.as_ref()));
        }
    }
}

/// The pod handler both endpoint controllers use: a change that shows in endpoints wakes the
/// Services that select the pod.
pub(crate) fn watch_pods(pods: &Informer<Pod>, services: &Informer<Service>, queue: &WorkQueue) {
    let (services, queue, all) = (services.clone(), queue.clone(), services.store());
    pods.on_change(move |change| match change {
        Change::Upsert { old: Some(old), new } => {
            if pod_changed_for_endpoints(old, new) {
                wake_services_of(&services, &queue, Some(old), new);
            }
        }
        Change::Upsert { old: None, new } => wake_services_of(&services, &queue, None, new),
        Change::Delete { gone, .. } => wake_services_of(&services, &queue, None, gone),
        Change::Resynced => all.state().iter().for_each(|s| queue.add(&key_of(s.as_ref()))),
    });
}

/// The `namespace/service` a managed slice belongs to, if `managed_by` manages it.
pub(crate) fn owner_key(slice: &EndpointSlice, managed_by: &str) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(managed_by) {
        return None;
    }
    let svc = labels.get(LABEL_SERVICE_NAME)?;
    Some(format!("{}/{svc}", slice.metadata.namespace.as_deref().unwrap_or_default()))
}

/// Queue the owner of every slice change `managed_by` did not cause itself (someone edited or
/// deleted a managed slice: put it back).
pub(crate) fn watch_slices(
    slices: &Informer<EndpointSlice>,
    queue: &WorkQueue,
    tracker: &Arc<SliceTracker>,
    managed_by: &'static str,
    index: &'static str,
) {
    slices
        .add_index(index, move |s: &EndpointSlice| owner_key(s, managed_by).into_iter().collect());
    let (queue, tracker) = (queue.clone(), tracker.clone());
    slices.on_change(move |change| match change {
        Change::Upsert { old, new } => {
            let key = owner_key(new, managed_by);
            // A slice that stopped being ours (managed-by changed) wakes its former owner.
            if let Some(old_key) = old.as_deref().and_then(|o| owner_key(o, managed_by))
                && Some(&old_key) != key.as_ref()
            {
                queue.add(&old_key);
            }
            if let Some(key) = key
                && !tracker.is_own_write(&key, new)
            {
                queue.add(&key);
            }
        }
        Change::Delete { gone, .. } => {
            if let Some(key) = owner_key(gone, managed_by)
                && !tracker.gone(&key, gone.metadata.name.as_deref().unwrap_or_default())
            {
                queue.add(&key);
            }
        }
        Change::Resynced => {}
    });
}

/// Was the create refused because the namespace is being deleted (retrying cannot help)?
pub(crate) fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// Write `plan` for the owner `key`: creates (unless the owner is being deleted: they would
/// race the garbage collector), updates, deletes, each remembered by `tracker`. `what` names
/// the owner in errors, as upstream does (`Service ns/name`).
pub(crate) async fn apply_plan(
    api: &Api<EndpointSlice>,
    tracker: &SliceTracker,
    key: &str,
    what: &str,
    plan: Plan,
    owner_deleting: bool,
) -> Result<(), kube::Error> {
    let pp = PostParams::default();
    if !owner_deleting {
        for slice in &plan.create {
            match api.create(&pp, slice).await {
                Ok(created) => tracker.written(key, &created),
                Err(e) if namespace_terminating(&e) => return Ok(()),
                Err(e) => {
                    return Err(wrap(e, format!("failed to create EndpointSlice for {what}")));
                }
            }
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &pp, slice).await {
            Ok(updated) => tracker.written(key, &updated),
            Err(e) => {
                return Err(wrap(e, format!("failed to update {name} EndpointSlice for {what}")));
            }
        }
    }
    for slice in &plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracker.deleted(key, &name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(wrap(e, format!("failed to delete {name} EndpointSlice for {what}")));
            }
        }
    }
    Ok(())
}

/// Prefix an API error's message with what was being done, keeping its code (a conflict stays
/// a conflict for [`crate::replicaset::retry_conflict_soon`]).
fn wrap(e: kube::Error, context: String) -> kube::Error {
    match e {
        kube::Error::Api(mut s) => {
            s.message = format!("{context}: {}", s.message);
            kube::Error::Api(s)
        }
        other => other,
    }
}

struct Controller {
    ctx: Arc<Context>,
    services: Store<Service>,
    pods: Informer<Pod>,
    nodes: Store<Node>,
    slices: Informer<EndpointSlice>,
    tracker: Arc<SliceTracker>,
    trigger_times: TriggerTimes,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let slices = ctx.informers.get::<EndpointSlice>();
    services.wait_until_ready().await;
    pods.wait_until_ready().await;
    nodes.wait_until_ready().await;
    slices.wait_until_ready().await;
    service_indexes(&services);
    let queue = WorkQueue::new();
    let tracker = Arc::new(SliceTracker::default());
    workqueue::enqueue_objects(&services, &queue);
    watch_pods(&pods, &services, &queue);
    watch_slices(&slices, &queue, &tracker, CONTROLLER_NAME, BY_SERVICE);
    let c = Arc::new(Controller {
        ctx,
        services: services.store(),
        pods,
        nodes: nodes.store(),
        slices,
        tracker,
        trigger_times: TriggerTimes::default(),
    });
    let mut tasks = JoinSet::new();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "endpointslice", move |key| {
        let c = c.clone();
        async move { crate::replicaset::retry_conflict_soon("endpointslice", &key, c.sync(&key).await) }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        let existing = self.slices.by_index(BY_SERVICE, key);
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // The garbage collector deletes the slices with their owner.
            self.tracker.forget(key);
            self.trigger_times.forget(key);
            return Ok(None);
        };
        // Services of type ExternalName receive no endpoints (kubernetes/kubernetes#105986).
        if is_external_name(&svc) {
            return Ok(None);
        }
        if self.tracker.stale(key, &existing) {
            return Ok(Some(STALE_RETRY));
        }
        let what = format!("Service {ns}/{name}");
        let Some(selector) = selector_of(&svc) else {
            let plan = Plan { delete: existing, ..Default::default() };
            if !plan.is_empty() {
                apply_plan(&api, &self.tracker, key, &what, plan, true).await?;
            }
            return Ok(None);
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_NAMESPACE, ns)
            .into_iter()
            .filter(|p| selects(selector, p))
            .collect();
        let desired = desired(&svc, &pods, |node| {
            let n = self.nodes.get(&ObjectRef::new(node))?;
            Some(n.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ZONE)).cloned())
        });
        let trigger = self.trigger_times.compute(key, &svc, &pods);
        let mut plan = plan(&svc, &existing, &desired);
        if !plan.is_empty() {
            annotate_trigger_time(&mut plan, trigger);
            tracing::debug!(
                service = %key,
                create = plan.create.len(),
                update = plan.update.len(),
                delete = plan.delete.len(),
                "writing endpoint slices"
            );
            let deleting = svc.metadata.deletion_timestamp.is_some();
            if let Err(e) = apply_plan(&api, &self.tracker, key, &what, plan, deleting).await {
                if !is_conflict(&e) {
                    self.ctx.recorder.warning(
                        svc.as_ref(),
                        "FailedToUpdateEndpointSlices",
                        format!(
                            "Error updating Endpoint Slices for Service {ns}/{name}: {}",
                            api_message(&e)
                        ),
                    );
                }
                return Err(e.into());
            }
        }
        if !desired.skipped.is_empty() {
            let msg = match desired.skipped.as_slice() {
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            self.ctx.recorder.warning(
                svc.as_ref(),
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {ns}/{name}: {msg}"),
            );
            tracing::info!(service = %key, "pods on unknown nodes skipped; looking again");
            return Ok(Some(NODE_RETRY));
        }
        Ok(None)
    }
}
