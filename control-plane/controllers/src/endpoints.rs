//! The Endpoints controller (Kubernetes' `pkg/controller/endpoint`): the legacy `v1`
//! Endpoints of every Service with a selector, named as the Service, listing its pods'
//! addresses (ready in `addresses`, not ready in `notReadyAddresses`) grouped into subsets by
//! the ports they serve, and truncated at 1000 addresses.
//!
//! Endpoints of Services without a selector belong to their users (the mirroring controller
//! turns them into EndpointSlices); `default/kubernetes` belongs to the api server. An
//! Endpoints whose Service is gone is deleted, as upstream does, including those left over
//! from before this controller started.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client_tools::informers::{BY_NAMESPACE, Change, Informer};
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use skiff_helpers::pods::is_ready;
use tokio::task::JoinSet;

use crate::endpointslice::{
    ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, TriggerTimes, find_port, has_cluster_ip,
    is_external_name, namespace_terminating, pod_ipv4s, pod_reference, selector_of, selects,
    service_indexes, should_pod_be_in_endpoints, should_set_hostname, watch_pods,
};
use crate::replicaset::{api_message, is_not_found, retry_conflict_soon};
use crate::{Context, Error};

/// Kubernetes' `maxCapacity`: addresses one Endpoints holds at most.
pub const MAX_CAPACITY: usize = 1000;
/// Set to `truncated` on an Endpoints that holds fewer addresses than its Service has.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints used as leader-election locks are never the controllers' to delete or mirror.
pub const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";

const WORKERS: usize = 5;

/// Ready or not, an address serving a set of ports; the input of [`repack`].
pub struct Served {
    pub address: EndpointAddress,
    pub ready: bool,
    pub ports: Vec<EndpointPort>,
}

/// A port's identity in [`repack`]; `None` is the sentinel of addresses without ports.
type PortId = Option<(String, i32, String, Option<String>)>;

fn port_id(p: &EndpointPort) -> PortId {
    Some((
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        p.app_protocol.clone(),
    ))
}

/// Kubernetes' `RepackSubsets`: one subset per distinct set of addresses serving the same
/// ports; an address ready for a port in one place and not in another counts as ready. The
/// order is deterministic (ports and addresses sorted), so equal inputs give equal subsets.
pub fn repack(items: impl IntoIterator<Item = Served>) -> Vec<EndpointSubset> {
    let mut addresses: Vec<EndpointAddress> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut ports: BTreeMap<PortId, EndpointPort> = BTreeMap::new();
    let mut by_port: BTreeMap<PortId, BTreeMap<usize, bool>> = BTreeMap::new();
    for s in items {
        let uid = s.address.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default();
        let key = (s.address.ip.clone(), uid);
        let i = *index.entry(key).or_insert_with(|| {
            addresses.push(s.address);
            addresses.len() - 1
        });
        let ids: Vec<PortId> = if s.ports.is_empty() {
            vec![None]
        } else {
            s.ports
                .iter()
                .map(|p| {
                    let id = port_id(p);
                    ports.entry(id.clone()).or_insert_with(|| p.clone());
                    id
                })
                .collect()
        };
        for id in ids {
            let ready = by_port.entry(id).or_default().entry(i).or_insert(s.ready);
            *ready |= s.ready;
        }
    }
    let mut groups: BTreeMap<Vec<(usize, bool)>, Vec<PortId>> = BTreeMap::new();
    for (id, set) in by_port {
        groups.entry(set.into_iter().collect()).or_default().push(id);
    }
    let sort_key = |a: &EndpointAddress| {
        (
            a.ip.parse::<Ipv4Addr>().ok(),
            a.ip.clone(),
            a.target_ref.as_ref().and_then(|r| r.uid.clone()),
        )
    };
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, ids)| {
            let pick = |want: bool| {
                let mut v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .map(|(i, _)| addresses[*i].clone())
                    .collect();
                v.sort_by_key(sort_key);
                (!v.is_empty()).then_some(v)
            };
            let ports: Vec<EndpointPort> =
                ids.iter().filter_map(|id| id.as_ref().and(ports.get(id)).cloned()).collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(|s| {
        let first =
            |v: &Option<Vec<EndpointAddress>>| v.as_ref().and_then(|v| v.first()).map(sort_key);
        (
            s.ports.iter().flatten().map(port_id).collect::<Vec<_>>(),
            first(&s.addresses),
            first(&s.not_ready_addresses),
        )
    });
    subsets
}

/// Kubernetes' `podToEndpointAddressForService` (IPv4), with the hostname of a pod under the
/// Service's subdomain.
pub fn endpoint_address(pod: &Pod, svc: &Service) -> Option<EndpointAddress> {
    let ip = pod_ipv4s(pod).into_iter().next()?;
    let spec = pod.spec.as_ref();
    Some(EndpointAddress {
        ip,
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
    })
}

/// The subsets of `svc` from the pods it selects (Kubernetes' `syncService` loop and
/// `addEndpointSubset`): not-ready pods are published as ready under
/// `publishNotReadyAddresses`, terminating pods only then.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let svc_ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut items = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = endpoint_address(pod, svc) else { continue };
        let ready = publish || is_ready(pod);
        if svc_ports.is_empty() {
            // Only a headless Service may have no ports.
            if headless {
                items.push(Served { address, ready, ports: Vec::new() });
            }
            continue;
        }
        for sp in svc_ports {
            let Some(port) = find_port(pod, sp) else { continue };
            let ep = EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            };
            items.push(Served { address: address.clone(), ready, ports: vec![ep] });
        }
    }
    repack(items)
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    subsets
        .iter()
        .fold((0, 0), |(r, n), s| (r + len(&s.addresses), n + len(&s.not_ready_addresses)))
}

/// Kubernetes' `truncateEndpoints`: at most [`MAX_CAPACITY`] addresses, not-ready ones going
/// first, each subset keeping its share. True when something was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) =
        if truncate_ready { (MAX_CAPACITY, ready) } else { (MAX_CAPACITY - ready, not_ready) };
    let mut can_add = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready { &mut s.addresses } else { &mut s.not_ready_addresses };
        let n = list.as_ref().map_or(0, Vec::len);
        // Rounded up: the last subsets may get fewer than their share.
        let share = (n * max).div_ceil(total.max(1)).min(can_add);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        can_add -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// The Endpoints `svc` should have: `current` (if any) with the computed subsets, the
/// Service's labels (and the headless label when it has no cluster IP) and the over-capacity
/// annotation when truncated, and the trigger time of the change (if one is known).
pub fn desired_endpoints(
    svc: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Endpoints {
    let mut ep = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    let mut subsets = desired_subsets(svc, pods);
    let truncated = truncate(&mut subsets);
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if has_cluster_ip(svc) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    ep.metadata.labels = (!labels.is_empty()).then_some(labels);
    let mut annotations = ep.metadata.annotations.take().unwrap_or_default();
    match trigger {
        Some(t) => annotations.insert(ANNOTATION_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    ep.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    ep
}

/// Does `current` differ from `desired` in what this controller writes? (Not the trigger
/// time alone: it only rides along with a change.)
pub fn needs_write(current: Option<&Endpoints>, desired: &Endpoints) -> bool {
    let Some(current) = current else { return true };
    let map = |m: &Option<BTreeMap<String, String>>| {
        let mut m = m.clone().unwrap_or_default();
        m.remove(ANNOTATION_TRIGGER_TIME);
        m
    };
    let subsets = |e: &Endpoints| e.subsets.clone().unwrap_or_default();
    subsets(current) != subsets(desired)
        || map(&current.metadata.labels) != map(&desired.metadata.labels)
        || map(&current.metadata.annotations) != map(&desired.metadata.annotations)
}

fn is_api_server_endpoints(ns: &str, name: &str) -> bool {
    ns == "default" && name == "kubernetes"
}

fn is_leader_lock(ep: &Endpoints) -> bool {
    ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_LEADER))
}

struct Controller {
    ctx: Arc<Context>,
    services: Store<Service>,
    pods: Informer<Pod>,
    endpoints: Store<Endpoints>,
    trigger_times: TriggerTimes,
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
    services.wait_until_ready().await;
    pods.wait_until_ready().await;
    endpoints.wait_until_ready().await;
    service_indexes(&services);
    let queue = WorkQueue::new();
    workqueue::enqueue_objects(&services, &queue);
    watch_pods(&pods, &services, &queue);
    // Someone deleted an Endpoints: put it back (its Service's sync decides).
    let q = queue.clone();
    endpoints.on_change(move |change| {
        if let Change::Delete { gone, .. } = change {
            q.add(&key_of(*gone));
        }
    });
    // Kubernetes' `checkLeftoverEndpoints`: Endpoints whose Service went while no controller
    // was running.
    let svc_store = services.store();
    for ep in endpoints.store().state() {
        let (ns, name) = (
            ep.metadata.namespace.as_deref().unwrap_or_default(),
            ep.metadata.name.as_deref().unwrap_or_default(),
        );
        if !is_leader_lock(&ep) && svc_store.get(&ObjectRef::new(name).within(ns)).is_none() {
            queue.add(&key_of(ep.as_ref()));
        }
    }
    let c = Arc::new(Controller {
        ctx,
        services: services.store(),
        pods,
        endpoints: endpoints.store(),
        trigger_times: TriggerTimes::default(),
    });
    let mut tasks = JoinSet::new();
    workqueue::spawn_workers(&mut tasks, &queue, WORKERS, "endpoint", move |key| {
        let c = c.clone();
        async move { retry_conflict_soon("endpoint", &key, c.sync(&key).await) }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        if is_api_server_endpoints(ns, name) {
            return Ok(None);
        }
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            self.trigger_times.forget(key);
            if current.as_deref().is_some_and(is_leader_lock) {
                return Ok(None);
            }
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            };
        };
        // ExternalName Services have no endpoints; selector-less ones have their users'.
        if is_external_name(&svc) {
            return Ok(None);
        }
        let Some(selector) = selector_of(&svc) else { return Ok(None) };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_NAMESPACE, ns)
            .into_iter()
            .filter(|p| selects(selector, p))
            .collect();
        let trigger = self.trigger_times.compute(key, &svc, &pods);
        let desired = desired_endpoints(&svc, &pods, current.as_deref(), trigger);
        if !needs_write(current.as_deref(), &desired) {
            return Ok(None);
        }
        let pp = PostParams::default();
        let created = current.is_none();
        let result = if created {
            api.create(&pp, &desired).await
        } else {
            api.replace(name, &pp, &desired).await
        };
        match result {
            Ok(_) => Ok(None),
            Err(e) if created && namespace_terminating(&e) => Ok(None),
            Err(e) => {
                let (reason, message) = if created {
                    (
                        "FailedToCreateEndpoint",
                        format!(
                            "Failed to create endpoint for service {ns}/{name}: {}",
                            api_message(&e)
                        ),
                    )
                } else {
                    (
                        "FailedToUpdateEndpoint",
                        format!("Failed to update endpoint {ns}/{name}: {}", api_message(&e)),
                    )
                };
                if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    self.ctx.recorder.warning(&desired, reason, message);
                }
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn service(ports: Vec<(&str, i32, IntOrString)>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                labels: Some(labels(&[("team", "a")])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "web")])),
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, target)| ServicePort {
                            name: Some(name.into()),
                            port,
                            protocol: Some("TCP".into()),
                            target_port: Some(target),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container { name: "c".into(), ..Default::default() }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
                pod_ips: (!ip.is_empty()).then(|| vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn with_port(mut p: Pod, name: &str, port: i32) -> Pod {
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].ports = Some(vec![ContainerPort {
                name: Some(name.into()),
                container_port: port,
                ..Default::default()
            }]);
        }
        p
    }

    fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        v.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    fn http() -> Service {
        service(vec![("http", 80, IntOrString::Int(8080))])
    }

    #[test]
    fn desired_subsets_should_split_ready_and_not_ready_addresses() {
        let mut leaving = pod("c", "10.0.0.3", true);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).expect("time")));
        let pods: Vec<Arc<Pod>> = vec![
            pod("a", "10.0.0.1", true),
            pod("b", "10.0.0.2", false),
            leaving,
            pod("d", "", true),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let subsets = desired_subsets(&http(), &pods);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(
            ips(&subsets[0].not_ready_addresses),
            ["10.0.0.2"],
            "terminating pods are left out"
        );
        let port = &subsets[0].ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let a = &subsets[0].addresses.as_ref().expect("ready")[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        let r = a.target_ref.as_ref().expect("targetRef");
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn desired_subsets_should_publish_not_ready_addresses_when_asked() {
        let mut svc = http();
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let mut leaving = pod("c", "10.0.0.3", true);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).expect("time")));
        let pods: Vec<Arc<Pod>> =
            vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false), leaving]
                .into_iter()
                .map(Arc::new)
                .collect();
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
    }

    #[test]
    fn desired_subsets_should_group_pods_by_resolved_named_port() {
        let svc = service(vec![("http", 80, IntOrString::String("web".into()))]);
        let pods: Vec<Arc<Pod>> = vec![
            with_port(pod("a", "10.0.0.1", true), "web", 8080),
            with_port(pod("b", "10.0.0.2", false), "web", 3000),
            with_port(pod("c", "10.0.0.3", true), "web", 8080),
            pod("d", "10.0.0.4", true),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let subsets = desired_subsets(&svc, &pods);
        let got: Vec<(i32, Vec<&str>, Vec<&str>)> = subsets
            .iter()
            .map(|s| {
                (
                    s.ports.as_ref().expect("ports")[0].port,
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(3000, vec![], vec!["10.0.0.2"]), (8080, vec!["10.0.0.1", "10.0.0.3"], vec![])]
        );
    }

    #[test]
    fn desired_subsets_should_keep_headless_services_without_ports() {
        let mut svc = service(vec![]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        let mut p = pod("web-0", "10.0.0.1", true);
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = Some("web-0".into());
            spec.subdomain = Some("web".into());
        }
        let subsets = desired_subsets(&svc, &[Arc::new(p)]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        assert_eq!(
            subsets[0].addresses.as_ref().expect("ready")[0].hostname.as_deref(),
            Some("web-0")
        );
        let ep = desired_endpoints(&svc, &[], None, None);
        assert_eq!(
            ep.metadata.labels.as_ref().and_then(|l| l.get(LABEL_HEADLESS)).map(String::as_str),
            Some("")
        );
        assert_eq!(
            ep.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn repack_should_prefer_ready_and_merge_ports_with_the_same_addresses() {
        let addr = |ip: &str| EndpointAddress { ip: ip.into(), ..Default::default() };
        let port = |name: &str, n: i32| EndpointPort {
            name: Some(name.into()),
            port: n,
            protocol: Some("TCP".into()),
            ..Default::default()
        };
        let subsets = repack([
            Served { address: addr("10.0.0.1"), ready: false, ports: vec![port("a", 1)] },
            Served { address: addr("10.0.0.1"), ready: true, ports: vec![port("a", 1)] },
            Served { address: addr("10.0.0.1"), ready: true, ports: vec![port("b", 2)] },
        ]);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
        assert_eq!(subsets[0].ports.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn desired_endpoints_should_truncate_at_1000_addresses() {
        let many = |n: usize, ready: bool, from: usize| -> Vec<Arc<Pod>> {
            (from..from + n)
                .map(|i| {
                    Arc::new(pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 250, i % 250), ready))
                })
                .collect()
        };
        // (ready, not ready) → (ready kept, not ready kept)
        let cases = [(900, 300, (900, 100)), (1200, 50, (1000, 0)), (600, 400, (600, 400))];
        for (ready, not_ready, want) in cases {
            let mut pods = many(ready, true, 0);
            pods.extend(many(not_ready, false, ready));
            let ep = desired_endpoints(&http(), &pods, None, None);
            let (r, n) = count(ep.subsets.as_deref().unwrap_or_default());
            assert_eq!((r, n), want, "{ready} ready, {not_ready} not");
            let over = ep
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_OVER_CAPACITY))
                .cloned();
            assert_eq!(over.as_deref(), (ready + not_ready > MAX_CAPACITY).then_some("truncated"));
        }
    }

    #[test]
    fn needs_write_should_be_false_for_what_was_written() {
        let svc = http();
        let pods: Vec<Arc<Pod>> = vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)]
            .into_iter()
            .map(Arc::new)
            .collect();
        let t = Timestamp::from_second(100).expect("time");
        let first = desired_endpoints(&svc, &pods, None, Some(t));
        assert!(needs_write(None, &first));
        let mut stored = first.clone();
        stored.metadata.resource_version = Some("5".into());
        let again = desired_endpoints(&svc, &pods, Some(&stored), None);
        assert!(!needs_write(Some(&stored), &again), "a trigger time alone is no change");
        let changed = desired_endpoints(&svc, &pods[..1], Some(&stored), Some(t));
        let annotation =
            changed.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_TRIGGER_TIME));
        assert_eq!(annotation.map(String::as_str), Some("1970-01-01T00:01:40Z"));
        assert!(needs_write(Some(&stored), &changed));
        assert_eq!(
            changed.metadata.resource_version.as_deref(),
            Some("5"),
            "updates carry the cached version"
        );
    }
}
