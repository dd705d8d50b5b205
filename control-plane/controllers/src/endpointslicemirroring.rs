//! The EndpointSlice mirroring controller (Kubernetes' `pkg/controller/endpointslicemirroring`):
//! the Endpoints users write for a Service without a selector are mirrored into
//! EndpointSlices (managed by `endpointslicemirroring-controller.k8s.io`, owned by the
//! Endpoints), so that everything reading slices sees them. One slice per subset and address
//! type, at most 1000 addresses a subset; Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (the api server's own) or used as
//! leader-election locks are not mirrored.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::informers::{Change, Informer};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::pods::controller_ref;
use tokio::task::JoinSet;

use crate::endpoints::{ANNOTATION_LEADER, Served, repack};
use crate::endpointslice::{
    EndpointKey, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, Plan, PortKey, STALE_RETRY, SliceTracker,
    apply_plan, endpoint_key, port_key, recycle, selector_of, slice_prefix, watch_slices,
};
use crate::replicaset::{api_message, is_conflict, retry_conflict_soon};
use crate::{Context, Error};

pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Kubernetes' `--mirroring-max-endpoints-per-subset` default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// Annotations of the Endpoints that are not copied to its slices.
const NOT_MIRRORED: [&str; 2] = [
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];

const BY_ENDPOINTS: &str = "endpointslicemirroring-by-endpoints";
const WORKERS: usize = 5;

/// Kubernetes' `shouldMirror`.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let skip =
        ep.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SKIP_MIRROR)).map(String::as_str)
            == Some("true");
    let leader =
        ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
    !skip && !leader
}

/// Kubernetes' `addressToEndpoint`: a mirrored endpoint only knows whether it is ready.
pub fn address_to_endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions { ready: Some(ready), ..Default::default() }),
        target_ref: a.target_ref.clone(),
        node_name: a.node_name.clone(),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    }
}

fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

fn mirrored_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut a = ep.metadata.annotations.clone().unwrap_or_default();
    for k in NOT_MIRRORED {
        a.remove(k);
    }
    a
}

/// The slice mirroring `ep`'s subset with `ports` and address type `addr_type` (Kubernetes'
/// `newEndpointSlice`): its labels, service-name and managed-by, its annotations but two.
pub fn mirrored_slice(
    ep: &Endpoints,
    ports: Vec<EndpointPort>,
    addr_type: &str,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let annotations = mirrored_annotations(ep);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(&name)),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![controller_ref(ep)]),
            ..Default::default()
        },
        address_type: addr_type.into(),
        endpoints,
        ports: Some(ports),
    }
}

/// What mirroring `ep` writes, and what it left out.
#[derive(Debug, Default)]
pub struct Mirror {
    pub plan: Plan,
    /// Addresses that are not IPs.
    pub invalid: usize,
    /// Addresses left out (the invalid ones and those past the per-subset limit).
    pub skipped: usize,
}

struct Group {
    ports: Vec<EndpointPort>,
    addr_type: &'static str,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

fn same_endpoints(existing: &[Endpoint], wanted: &BTreeMap<EndpointKey, Endpoint>) -> bool {
    let mut seen = HashSet::new();
    existing.len() == wanted.len()
        && existing.iter().all(|e| {
            let k = endpoint_key(e);
            wanted.get(&k) == Some(e) && seen.insert(k)
        })
}

fn annotations_of(s: &EndpointSlice) -> BTreeMap<String, String> {
    s.metadata.annotations.clone().unwrap_or_default()
}

/// Kubernetes' mirroring `reconcile`: the Endpoints' subsets (repacked), one slice per subset
/// and address type; the first existing slice of each is rewritten in place when anything
/// differs, the others deleted.
pub fn mirror(ep: &Endpoints, existing: &[Arc<EndpointSlice>]) -> Mirror {
    mirror_with_max(ep, existing, MAX_ENDPOINTS_PER_SUBSET)
}

pub fn mirror_with_max(ep: &Endpoints, existing: &[Arc<EndpointSlice>], max: usize) -> Mirror {
    let mut out = Mirror::default();
    let items = ep.subsets.iter().flatten().flat_map(|s| {
        let ports = s.ports.clone().unwrap_or_default();
        let ready = s.addresses.iter().flatten().map(move |a| (a.clone(), true));
        let not_ready = s.not_ready_addresses.iter().flatten().map(|a| (a.clone(), false));
        ready.chain(not_ready).map(move |(address, ready)| Served {
            address,
            ready,
            ports: ports.clone(),
        })
    });
    let mut groups: BTreeMap<(PortKey, &'static str), Group> = BTreeMap::new();
    for subset in repack(items.collect::<Vec<_>>()) {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = port_key(&ports);
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let (mut total, mut added) = (0, 0);
        for (a, is_ready) in ready.chain(not_ready) {
            total += 1;
            if added >= max {
                continue;
            }
            let Some(t) = address_type(&a.ip) else {
                out.invalid += 1;
                continue;
            };
            let g = groups.entry((key.clone(), t)).or_insert_with(|| Group {
                ports: ports.clone(),
                addr_type: t,
                endpoints: BTreeMap::new(),
            });
            let e = address_to_endpoint(a, is_ready);
            g.endpoints.insert(endpoint_key(&e), e);
            added += 1;
        }
        out.skipped += total - added;
    }

    let mut by_key: BTreeMap<(PortKey, String), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    let mut sorted: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        by_key
            .entry((port_key(s.ports.as_deref().unwrap_or_default()), s.address_type.clone()))
            .or_default()
            .push(s.clone());
    }
    let labels_of = |s: &EndpointSlice| {
        let mut l = s.metadata.labels.clone().unwrap_or_default();
        l.remove(LABEL_MANAGED_BY);
        l.remove(LABEL_SERVICE_NAME);
        l
    };
    let want_owner = Some(vec![controller_ref(ep)]);
    for ((key, t), g) in &groups {
        let slices = by_key.remove(&(key.clone(), t.to_string())).unwrap_or_default();
        let desired = mirrored_slice(
            ep,
            g.ports.clone(),
            g.addr_type,
            g.endpoints.values().cloned().collect(),
        );
        let Some((first, rest)) = slices.split_first() else {
            out.plan.create.push(desired);
            continue;
        };
        out.plan.delete.extend(rest.iter().cloned());
        let unchanged = same_endpoints(&first.endpoints, &g.endpoints)
            && ep.metadata.labels.clone().unwrap_or_default() == labels_of(first)
            && mirrored_annotations(ep) == annotations_of(first)
            && first.metadata.owner_references == want_owner;
        if !unchanged {
            let mut s = desired;
            s.metadata.name = first.metadata.name.clone();
            s.metadata.generate_name = first.metadata.generate_name.clone();
            s.metadata.resource_version = first.metadata.resource_version.clone();
            s.metadata.uid = first.metadata.uid.clone();
            s.metadata.creation_timestamp = first.metadata.creation_timestamp.clone();
            out.plan.update.push(s);
        }
    }
    // Port sets no longer in the Endpoints.
    out.plan.delete.extend(by_key.into_values().flatten());
    recycle(&mut out.plan, |_| true);
    out
}

struct Controller {
    ctx: Arc<Context>,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Informer<EndpointSlice>,
    tracker: Arc<SliceTracker>,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let services = ctx.informers.get::<Service>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let slices = ctx.informers.get::<EndpointSlice>();
    services.wait_until_ready().await;
    endpoints.wait_until_ready().await;
    slices.wait_until_ready().await;
    let queue = WorkQueue::new();
    let tracker = Arc::new(SliceTracker::default());
    let (q, all) = (queue.clone(), endpoints.store());
    endpoints.on_change(move |change| match change {
        Change::Upsert { old, new } => {
            if should_mirror(new) || old.as_deref().is_some_and(should_mirror) {
                q.add(&key_of(*new));
            }
        }
        Change::Delete { gone, .. } => q.add(&key_of(*gone)),
        Change::Resynced => all.state().iter().for_each(|e| q.add(&key_of(e.as_ref()))),
    });
    // A Service gaining or losing its selector turns mirroring off or on.
    let (q, eps) = (queue.clone(), endpoints.store());
    services.on_change(move |change| {
        if let Some(svc) = change.object() {
            let (ns, name) = (
                svc.metadata.namespace.as_deref().unwrap_or_default(),
                svc.metadata.name.as_deref().unwrap_or_default(),
            );
            if eps.get(&ObjectRef::new(name).within(ns)).is_some() {
                q.add(&key_of(svc));
            }
        }
    });
    watch_slices(&slices, &queue, &tracker, CONTROLLER_NAME, BY_ENDPOINTS);
    let c = Arc::new(Controller {
        ctx,
        services: services.store(),
        endpoints: endpoints.store(),
        slices,
        tracker,
    });
    let mut tasks = JoinSet::new();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "endpointslicemirroring", move |key| {
        let c = c.clone();
        async move { retry_conflict_soon("endpointslicemirroring", &key, c.sync(&key).await) }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        let existing = self.slices.by_index(BY_ENDPOINTS, key);
        if self.tracker.stale(key, &existing) {
            return Ok(Some(STALE_RETRY));
        }
        let what = format!("Endpoints {ns}/{name}");
        let at = ObjectRef::new(name).within(ns);
        let ep = self.endpoints.get(&at).filter(|e| should_mirror(e));
        // Mirrored only while the Service exists without a selector.
        let svc = self
            .services
            .get(&ObjectRef::new(name).within(ns))
            .filter(|s| selector_of(s).is_none());
        let (Some(ep), Some(_)) = (ep, svc) else {
            if !existing.is_empty() {
                let plan = Plan { delete: existing, ..Default::default() };
                apply_plan(&api, &self.tracker, key, &what, plan, true).await?;
            }
            return Ok(None);
        };
        let m = mirror(&ep, &existing);
        if m.invalid > 0 {
            self.ctx.recorder.warning(
                ep.as_ref(),
                "InvalidIPAddress",
                format!(
                    "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                    m.invalid
                ),
            );
        }
        if m.skipped > m.invalid {
            self.ctx.recorder.warning(
                ep.as_ref(),
                "TooManyAddressesToMirror",
                format!(
                    "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                    m.skipped
                ),
            );
        }
        if m.plan.is_empty() {
            return Ok(None);
        }
        let deleting = ep.metadata.deletion_timestamp.is_some();
        if let Err(e) = apply_plan(&api, &self.tracker, key, &what, m.plan, deleting).await {
            if !is_conflict(&e) {
                tracing::warn!(endpoints = %key, error = %api_message(&e), "mirroring failed");
            }
            return Err(e.into());
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EndpointPort as CorePort, EndpointSubset, ObjectReference};

    use super::*;

    fn endpoints(subsets: Vec<EndpointSubset>) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("ext".into()),
                namespace: Some("ns".into()),
                uid: Some("ep-uid".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                annotations: Some(
                    [
                        ("note".to_string(), "kept".to_string()),
                        (
                            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                            "{}".to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            subsets: Some(subsets),
        }
    }

    fn subset(ready: &[&str], not_ready: &[&str], port: i32) -> EndpointSubset {
        let addrs = |ips: &[&str]| {
            let v: Vec<EndpointAddress> = ips
                .iter()
                .map(|ip| EndpointAddress {
                    ip: ip.to_string(),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(format!("p-{ip}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect();
            (!v.is_empty()).then_some(v)
        };
        EndpointSubset {
            addresses: addrs(ready),
            not_ready_addresses: addrs(not_ready),
            ports: Some(vec![CorePort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }
    }

    fn apply(existing: &[Arc<EndpointSlice>], plan: Plan) -> Vec<Arc<EndpointSlice>> {
        let mut out: BTreeMap<String, Arc<EndpointSlice>> = existing
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone()))
            .collect();
        for s in plan.delete {
            out.remove(s.metadata.name.as_deref().unwrap_or_default());
        }
        for s in plan.update {
            out.insert(s.metadata.name.clone().unwrap_or_default(), Arc::new(s));
        }
        for (i, mut s) in plan.create.into_iter().enumerate() {
            let name = format!("ext-{}{i}", out.len());
            s.metadata.name = Some(name.clone());
            out.insert(name, Arc::new(s));
        }
        out.into_values().collect()
    }

    #[test]
    fn should_mirror_should_skip_labelled_and_leader_endpoints() {
        let mut ep = endpoints(vec![]);
        assert!(should_mirror(&ep));
        ep.metadata.labels = Some([(LABEL_SKIP_MIRROR.to_string(), "true".to_string())].into());
        assert!(!should_mirror(&ep));
        let mut lock = endpoints(vec![]);
        lock.metadata.annotations =
            Some([(ANNOTATION_LEADER.to_string(), "{}".to_string())].into());
        assert!(!should_mirror(&lock));
    }

    #[test]
    fn mirror_should_create_one_slice_per_subset_and_address_type() {
        let ep = endpoints(vec![
            subset(&["10.0.0.1", "fd00::1"], &["10.0.0.2"], 80),
            subset(&["10.0.0.9"], &[], 8080),
        ]);
        let m = mirror(&ep, &[]);
        assert_eq!((m.plan.create.len(), m.invalid, m.skipped), (3, 0, 0));
        let s = m
            .plan
            .create
            .iter()
            .find(|s| s.address_type == "IPv4" && s.endpoints.len() == 2)
            .expect("v4 slice");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("ext"));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(annotations_of(s), [("note".to_string(), "kept".to_string())].into());
        let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Endpoints", "ep-uid", Some(true))
        );
        let ready: Vec<(String, Option<bool>)> = s
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().and_then(|c| c.ready)))
            .collect();
        assert_eq!(
            ready,
            [("10.0.0.1".to_string(), Some(true)), ("10.0.0.2".to_string(), Some(false))]
        );
        let port = &s.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(80)));
    }

    #[test]
    fn mirror_should_write_nothing_when_in_sync_and_update_in_place_otherwise() {
        let ep = endpoints(vec![subset(&["10.0.0.1"], &[], 80)]);
        let slices = apply(&[], mirror(&ep, &[]).plan);
        assert!(mirror(&ep, &slices).plan.is_empty());
        let changed = endpoints(vec![subset(&["10.0.0.1", "10.0.0.3"], &[], 80)]);
        let m = mirror(&changed, &slices);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (0, 1, 0));
        // A new port: the old slice is reused for it rather than deleted and created anew.
        let moved = endpoints(vec![subset(&["10.0.0.1"], &[], 81)]);
        let m = mirror(&moved, &slices);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (0, 1, 0));
    }

    #[test]
    fn mirror_should_skip_invalid_and_surplus_addresses() {
        let ep =
            endpoints(vec![subset(&["10.0.0.1", "not-an-ip", "10.0.0.2", "10.0.0.3"], &[], 80)]);
        let m = mirror_with_max(&ep, &[], 2);
        assert_eq!((m.invalid, m.skipped), (1, 2));
        assert_eq!(m.plan.create[0].endpoints.len(), 2);
    }
}
