use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn svc_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        target_port: Some(target),
        ..Default::default()
    }
}

fn service(ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("svc-uid".into()),
            labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            cluster_ip: Some("10.96.0.10".into()),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

fn http_service() -> Service {
    service(vec![svc_port("http", 80, IntOrString::Int(8080))])
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
            protocol: Some("TCP".into()),
            ..Default::default()
        }]);
    }
    p
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_000).expect("time")));
    p
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

fn known_nodes(node: &str) -> Option<Option<String>> {
    match node {
        "n1" => Some(Some("zone-a".into())),
        "n2" => Some(None),
        _ => None,
    }
}

fn many_pods(n: usize) -> Vec<Arc<Pod>> {
    arcs(
        (0..n)
            .map(|i| pod(&format!("p{i:04}"), &format!("10.1.{}.{}", i / 200, i % 200), true))
            .collect(),
    )
}

/// What the api server would hold after `plan` was written onto `existing`.
fn apply(existing: &[Arc<EndpointSlice>], plan: Plan, next: &mut usize) -> Vec<Arc<EndpointSlice>> {
    let mut out: BTreeMap<String, Arc<EndpointSlice>> =
        existing.iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone())).collect();
    for s in plan.delete {
        out.remove(s.metadata.name.as_deref().unwrap_or_default());
    }
    for s in plan.update {
        out.insert(s.metadata.name.clone().unwrap_or_default(), Arc::new(s));
    }
    for mut s in plan.create {
        *next += 1;
        let name = format!("{}{next:05}", s.metadata.generate_name.clone().unwrap_or_default());
        s.metadata.name = Some(name.clone());
        out.insert(name, Arc::new(s));
    }
    out.into_values().collect()
}

fn conditions(ep: &Endpoint) -> (bool, bool, bool) {
    let c = ep.conditions.clone().unwrap_or_default();
    (c.ready.unwrap_or(false), c.serving.unwrap_or(false), c.terminating.unwrap_or(false))
}

fn only_group(d: &Desired) -> &PortGroup {
    assert_eq!(d.groups.len(), 1, "{d:?}");
    d.groups.values().next().expect("one group")
}

#[test]
fn pod_to_endpoint_should_set_conditions_as_kubernetes_does() {
    // (pod ready, terminating, publishNotReadyAddresses) → (ready, serving, terminating)
    let cases = [
        (true, false, false, (true, true, false)),
        (false, false, false, (false, false, false)),
        (true, true, false, (false, true, true)),
        (false, true, false, (false, false, true)),
        (false, false, true, (true, true, false)),
        (false, true, true, (true, true, true)),
    ];
    for (ready, term, publish, want) in cases {
        let mut svc = http_service();
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(publish);
        }
        let mut p = pod("p", "10.1.0.1", ready);
        if term {
            p = terminating(p);
        }
        let ep = pod_to_endpoint(&p, Some("zone-a"), &svc);
        assert_eq!(conditions(&ep), want, "ready={ready} terminating={term} publish={publish}");
        assert_eq!(ep.addresses, ["10.1.0.1"]);
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        assert_eq!(ep.zone.as_deref(), Some("zone-a"));
        let r = ep.target_ref.expect("targetRef");
        assert_eq!(
            (r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("ns"), Some("p"), Some("uid-p"))
        );
    }
}

#[test]
fn desired_should_skip_pods_without_ip_or_finished() {
    let mut done = pod("done", "10.1.0.3", false);
    if let Some(st) = done.status.as_mut() {
        st.phase = Some("Succeeded".into());
    }
    let mut failed = pod("failed", "10.1.0.4", false);
    if let Some(st) = failed.status.as_mut() {
        st.phase = Some("Failed".into());
    }
    let pods = arcs(vec![
        pod("ok", "10.1.0.1", true),
        pod("no-ip", "", true),
        done,
        failed,
        terminating(pod("leaving", "10.1.0.5", true)),
    ]);
    let d = desired(&http_service(), &pods, known_nodes);
    let names: Vec<&str> = only_group(&d).endpoints.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(names, ["leaving", "ok"], "terminating pods are kept, with their conditions");
}

#[test]
fn desired_should_skip_pods_on_unknown_nodes_unless_publishing() {
    let mut lost = pod("lost", "10.1.0.2", true);
    if let Some(spec) = lost.spec.as_mut() {
        spec.node_name = Some("gone".into());
    }
    let pods = arcs(vec![pod("ok", "10.1.0.1", true), lost]);
    let d = desired(&http_service(), &pods, known_nodes);
    assert_eq!(only_group(&d).endpoints.len(), 1);
    assert_eq!(d.skipped, ["skipping Pod lost for Service ns/web: Node gone Not Found"]);
    let mut publishing = http_service();
    if let Some(spec) = publishing.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let d = desired(&publishing, &pods, known_nodes);
    assert_eq!(only_group(&d).endpoints.len(), 2);
    assert!(d.skipped.is_empty());
}

#[test]
fn endpoint_ports_should_resolve_named_target_port_per_pod() {
    let svc = service(vec![
        svc_port("http", 80, IntOrString::String("web".into())),
        svc_port("metrics", 9090, IntOrString::Int(9090)),
    ]);
    let pods = arcs(vec![
        with_port(pod("a", "10.1.0.1", true), "web", 8080),
        with_port(pod("b", "10.1.0.2", true), "web", 8080),
        with_port(pod("c", "10.1.0.3", true), "web", 3000),
        // No port named `web`: only the numeric target is served.
        pod("d", "10.1.0.4", true),
    ]);
    let d = desired(&svc, &pods, known_nodes);
    // (ports as (name, number), pod names) of each group.
    type Group = (Vec<(String, i32)>, Vec<String>);
    let mut groups: Vec<Group> = d
        .groups
        .values()
        .map(|g| {
            let ports = g
                .ports
                .iter()
                .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0)))
                .collect();
            (ports, g.endpoints.keys().map(|k| k.1.clone()).collect())
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            (vec![("http".into(), 3000), ("metrics".into(), 9090)], vec!["c".to_string()]),
            (vec![("http".into(), 8080), ("metrics".into(), 9090)], vec!["a".into(), "b".into()]),
            (vec![("metrics".into(), 9090)], vec!["d".into()]),
        ]
    );
    let plan = plan(&svc, &[], &d);
    assert_eq!(plan.create.len(), 3, "one slice per port set");
}

#[test]
fn find_port_should_match_protocol_and_sidecars() {
    let mut udp = svc_port("dns", 53, IntOrString::String("dns".into()));
    udp.protocol = Some("UDP".into());
    let tcp_only = with_port(pod("a", "10.1.0.1", true), "dns", 5353);
    assert_eq!(find_port(&tcp_only, &udp), None, "a TCP port does not serve a UDP Service port");
    let mut sidecar = pod("b", "10.1.0.2", true);
    if let Some(spec) = sidecar.spec.as_mut() {
        spec.init_containers = Some(vec![Container {
            name: "proxy".into(),
            restart_policy: Some("Always".into()),
            ports: Some(vec![ContainerPort {
                name: Some("dns".into()),
                container_port: 1053,
                protocol: Some("UDP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]);
    }
    assert_eq!(find_port(&sidecar, &udp), Some(1053));
    let untargeted = ServicePort { port: 80, target_port: None, ..Default::default() };
    assert_eq!(find_port(&tcp_only, &untargeted), Some(80));
}

#[test]
fn pod_to_endpoint_should_set_hostname_under_the_service_subdomain() {
    let mut svc = http_service();
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
    }
    // (hostname, subdomain) → hostname on the endpoint
    let cases = [
        (Some("web-0"), Some("web"), Some("web-0")),
        (Some("web-0"), Some("other"), None),
        (None, Some("web"), None),
        (Some("web-0"), None, None),
    ];
    for (hostname, subdomain, want) in cases {
        let mut p = pod("web-0", "10.1.0.1", true);
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = hostname.map(String::from);
            spec.subdomain = subdomain.map(String::from);
        }
        let ep = pod_to_endpoint(&p, None, &svc);
        assert_eq!(ep.hostname.as_deref(), want, "{hostname:?} {subdomain:?}");
    }
}

#[test]
fn slice_labels_should_copy_service_labels_and_mark_headless() {
    let mut svc = http_service();
    svc.metadata.labels = Some(labels(&[
        ("team", "a"),
        (LABEL_MANAGED_BY, "someone-else"),
        (LABEL_SERVICE_NAME, "other"),
    ]));
    let want =
        labels(&[("team", "a"), (LABEL_SERVICE_NAME, "web"), (LABEL_MANAGED_BY, CONTROLLER_NAME)]);
    assert_eq!(slice_labels(&svc), want);
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
    }
    assert_eq!(slice_labels(&svc).get(LABEL_HEADLESS).map(String::as_str), Some(""));
}

#[test]
fn plan_should_create_slices_that_name_and_own_the_service() {
    let svc = http_service();
    let d = desired(&svc, &arcs(vec![pod("a", "10.1.0.1", true)]), known_nodes);
    let plan = plan(&svc, &[], &d);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 0));
    let s = &plan.create[0];
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(s.address_type, "IPv4");
    let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Service", "web", "svc-uid")
    );
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    let ports = s.ports.as_ref().expect("ports");
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port, ports[0].protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
}

#[test]
fn plan_should_split_more_than_100_endpoints() {
    let svc = http_service();
    let d = desired(&svc, &many_pods(250), known_nodes);
    let plan = plan(&svc, &[], &d);
    let mut sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
}

#[test]
fn plan_should_not_write_when_nothing_changed() {
    let svc = http_service();
    let pods = many_pods(250);
    let mut next = 0;
    let d = desired(&svc, &pods, known_nodes);
    let slices = apply(&[], plan(&svc, &[], &d), &mut next);
    assert!(plan(&svc, &slices, &desired(&svc, &pods, known_nodes)).is_empty());
}

#[test]
fn plan_should_rewrite_only_the_slice_of_a_changed_pod() {
    let svc = http_service();
    let mut pods = many_pods(5000);
    let mut next = 0;
    let slices = apply(&[], plan(&svc, &[], &desired(&svc, &pods, known_nodes)), &mut next);
    assert_eq!(slices.len(), 50);
    pods[1234] = Arc::new(pod("p1234", "10.1.6.34", false));
    let p = plan(&svc, &slices, &desired(&svc, &pods, known_nodes));
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    let changed = p.update[0].endpoints.iter().find(|e| endpoint_key(e).1 == "p1234");
    assert_eq!(changed.map(conditions), Some((false, false, false)));
}

#[test]
fn plan_should_fill_existing_slices_before_creating_new_ones() {
    let svc = http_service();
    let mut next = 0;
    let pods = many_pods(150);
    let slices = apply(&[], plan(&svc, &[], &desired(&svc, &pods, known_nodes)), &mut next);
    // One pod gone, 31 new: the slice that lost one is updated and filled; the rest goes
    // into the half-full slice rather than a new one.
    let mut pods2: Vec<Arc<Pod>> = pods.iter().skip(1).cloned().collect();
    pods2.extend(many_pods(181).into_iter().skip(150));
    let p = plan(&svc, &slices, &desired(&svc, &pods2, known_nodes));
    assert!(p.create.is_empty(), "{p:?}");
    assert!(p.delete.is_empty());
    let after = apply(&slices, p, &mut next);
    let mut sizes: Vec<usize> = after.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [80, 100]);
}

#[test]
fn plan_should_keep_one_placeholder_for_a_service_without_endpoints() {
    let svc = http_service();
    let p = plan(&svc, &[], &desired(&svc, &[], known_nodes));
    assert_eq!(p.create.len(), 1);
    assert!(p.create[0].endpoints.is_empty());
    assert_eq!(p.create[0].ports.as_deref(), Some(&[][..]));
    let mut next = 0;
    let slices = apply(&[], p, &mut next);
    assert!(plan(&svc, &slices, &desired(&svc, &[], known_nodes)).is_empty());
    // The last pod going: its slice becomes the placeholder (an update, not delete + create).
    let one = arcs(vec![pod("a", "10.1.0.1", true)]);
    let slices = apply(&slices, plan(&svc, &slices, &desired(&svc, &one, known_nodes)), &mut next);
    assert_eq!(slices.len(), 1);
    let p = plan(&svc, &slices, &desired(&svc, &[], known_nodes));
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert!(p.update[0].endpoints.is_empty());
}

#[test]
fn plan_should_replace_slices_owned_by_an_older_service() {
    let svc = http_service();
    let mut next = 0;
    let pods = arcs(vec![pod("a", "10.1.0.1", true)]);
    let slices = apply(&[], plan(&svc, &[], &desired(&svc, &pods, known_nodes)), &mut next);
    let mut newer = svc.clone();
    newer.metadata.uid = Some("svc-uid-2".into());
    let p = plan(&newer, &slices, &desired(&newer, &pods, known_nodes));
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
}

#[test]
fn plan_should_update_labels_when_the_service_labels_change() {
    let svc = http_service();
    let mut next = 0;
    let pods = arcs(vec![pod("a", "10.1.0.1", true)]);
    let slices = apply(&[], plan(&svc, &[], &desired(&svc, &pods, known_nodes)), &mut next);
    let mut relabelled = svc.clone();
    relabelled.metadata.labels = Some(labels(&[("team", "b")]));
    let p = plan(&relabelled, &slices, &desired(&relabelled, &pods, known_nodes));
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert_eq!(
        p.update[0].metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str),
        Some("b")
    );
}

#[test]
fn pod_changed_for_endpoints_should_ignore_unrelated_changes() {
    let a = pod("a", "10.1.0.1", true);
    let mut annotated = a.clone();
    annotated.metadata.annotations = Some(labels(&[("x", "y")]));
    assert!(!pod_changed_for_endpoints(&a, &annotated));
    assert!(pod_changed_for_endpoints(&a, &pod("a", "10.1.0.1", false)));
    assert!(pod_changed_for_endpoints(&a, &pod("a", "10.1.0.2", true)));
    assert!(pod_changed_for_endpoints(&a, &terminating(a.clone())));
}

#[test]
fn slice_tracker_should_report_stale_until_the_cache_has_our_writes() {
    let t = SliceTracker::default();
    let mut s = EndpointSlice::default();
    s.metadata.name = Some("web-abcde".into());
    s.metadata.resource_version = Some("10".into());
    t.written("ns/web", &s);
    assert!(t.stale("ns/web", &[]), "created, not yet seen");
    let mut old = s.clone();
    old.metadata.resource_version = Some("9".into());
    assert!(t.stale("ns/web", &[Arc::new(old)]), "an older version is cached");
    assert!(!t.stale("ns/web", &[Arc::new(s.clone())]));
    t.deleted("ns/web", "web-abcde");
    assert!(t.stale("ns/web", &[Arc::new(s.clone())]), "deleted, still cached");
    assert!(t.gone("ns/web", "web-abcde"), "the delete was ours");
    assert!(!t.stale("ns/web", &[]));
    t.written("ns/web", &s);
    assert!(t.is_own_write("ns/web", &s));
    assert!(!t.stale("ns/web", &[]), "an echo seen by the handler settles the expectation");
}

fn ready_at(mut p: Pod, second: i64) -> Pod {
    if let Some(c) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        c[0].last_transition_time = Some(Time(Timestamp::from_second(second).expect("time")));
    }
    p
}

#[test]
fn trigger_times_should_give_the_earliest_change_not_yet_seen() {
    let t = TriggerTimes::default();
    let mut svc = http_service();
    svc.metadata.creation_timestamp = Some(Time(Timestamp::from_second(50).expect("time")));
    let at = |s: i64| Some(Timestamp::from_second(s).expect("time"));
    let pods = arcs(vec![
        ready_at(pod("a", "10.1.0.1", true), 100),
        ready_at(pod("b", "10.1.0.2", true), 120),
    ]);
    assert_eq!(t.compute("ns/web", &svc, &pods), at(50), "a new Service counts from its creation");
    assert_eq!(t.compute("ns/web", &svc, &pods), None, "nothing new");
    let pods = arcs(vec![
        ready_at(pod("a", "10.1.0.1", false), 200),
        ready_at(pod("b", "10.1.0.2", false), 180),
    ]);
    assert_eq!(t.compute("ns/web", &svc, &pods), at(180));
    let mut plan = Plan { create: vec![EndpointSlice::default()], ..Default::default() };
    annotate_trigger_time(&mut plan, at(180));
    let a = plan.create[0].metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(ANNOTATION_TRIGGER_TIME).map(String::as_str), Some("1970-01-01T00:03:00Z"));
}
