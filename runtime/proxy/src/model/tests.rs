use super::*;
use crate::testutil::{ready, service, slice};

fn ports(svc: &Service, slices: &[EndpointSlice]) -> Vec<ServicePort> {
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    service_ports(svc, &refs)
}

fn ips(eps: Vec<&Endpoint>) -> Vec<String> {
    eps.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect()
}

#[test]
fn service_ports_should_join_slices_by_label_and_port_name() {
    let svc = service("ns", "web", "10.96.0.10", &[("http", 80, "TCP"), ("dns", 53, "UDP")]);
    let slices = [
        slice("ns", "web", "web-a", ("http", 8080), &[ready("10.244.0.5", "n1")]),
        // Another Service's slice and a port of no Service port: ignored.
        slice("ns", "other", "other-a", ("http", 9999), &[ready("10.244.0.9", "n1")]),
        slice("ns", "web", "web-b", ("metrics", 9090), &[ready("10.244.0.6", "n1")]),
        // The same endpoint in two slices (during a move): once.
        slice(
            "ns",
            "web",
            "web-c",
            ("http", 8080),
            &[ready("10.244.0.5", "n1"), ready("10.244.0.7", "n2")],
        ),
    ];
    let map = ServiceMap::build([&svc], slices.iter());
    let http = map.lookup("10.96.0.10".parse().unwrap(), 80, Protocol::Tcp).unwrap();
    assert_eq!(ips(http.cluster_endpoints()), ["10.244.0.5:8080", "10.244.0.7:8080"]);
    assert_eq!(http.name.port, "http");
    let dns = map.lookup("10.96.0.10".parse().unwrap(), 53, Protocol::Udp).unwrap();
    assert!(dns.endpoints.is_empty());
    assert!(map.lookup("10.96.0.10".parse().unwrap(), 53, Protocol::Tcp).is_none());
}

#[test]
fn service_ports_should_skip_what_the_proxy_does_not_serve() {
    let mut headless = service("ns", "h", "None", &[("", 80, "TCP")]);
    let mut external = service("ns", "e", "10.96.0.2", &[("", 80, "TCP")]);
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    let mut other_proxy = service("ns", "o", "10.96.0.3", &[("", 80, "TCP")]);
    other_proxy.metadata.labels =
        Some([(SERVICE_PROXY_NAME_LABEL.to_string(), "cilium".to_string())].into());
    headless.spec.as_mut().unwrap().cluster_ips = Some(vec!["None".into()]);
    for svc in [&headless, &external, &other_proxy] {
        assert!(ports(svc, &[]).is_empty(), "{:?}", svc.metadata.name);
    }
    assert_eq!(ports(&service("ns", "p", "10.96.0.4", &[("", 80, "TCP")]), &[]).len(), 1);
}

#[test]
fn endpoints_should_fall_back_to_serving_terminating_ones() {
    let svc = service("ns", "web", "10.96.0.10", &[("", 80, "TCP")]);
    let cases: &[(&str, Vec<crate::testutil::Ep<'_>>, Vec<&str>)] = &[
        (
            "ready ones only when some are ready",
            vec![ready("10.0.0.1", "n1"), ("10.0.0.2", "n1", false, true, true)],
            vec!["10.0.0.1:80"],
        ),
        (
            "serving and terminating when none is ready",
            vec![
                ("10.0.0.2", "n1", false, true, true),
                ("10.0.0.3", "n1", false, false, true),
                ("10.0.0.4", "n1", false, false, false),
            ],
            vec!["10.0.0.2:80"],
        ),
        ("none", vec![("10.0.0.4", "n1", false, false, false)], vec![]),
    ];
    for (what, eps, want) in cases {
        let p = ports(&svc, &[slice("ns", "web", "s", ("", 80), eps)]);
        assert_eq!(ips(p[0].cluster_endpoints()), *want, "{what}");
    }
}

#[test]
fn local_policies_should_keep_this_nodes_endpoints() {
    let mut svc = service("ns", "web", "10.96.0.10", &[("", 80, "TCP")]);
    let spec = svc.spec.as_mut().unwrap();
    spec.internal_traffic_policy = Some("Local".into());
    spec.external_traffic_policy = Some("Local".into());
    spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
    let p = &ports(
        &svc,
        &[slice("ns", "web", "s", ("", 80), &[ready("10.0.0.1", "n1"), ready("10.0.0.2", "n2")])],
    )[0];
    assert_eq!(ips(p.internal_endpoints("n1")), ["10.0.0.1:80"]);
    assert_eq!(ips(p.external_endpoints("n2")), ["10.0.0.2:80"]);
    assert!(p.internal_endpoints("n3").is_empty());
    assert_eq!(ips(p.cluster_endpoints()).len(), 2);
    assert_eq!(p.node_port, Some(30080));
}

#[test]
fn affinity_should_default_to_kubernetes_timeout() {
    let mut svc = service("ns", "web", "10.96.0.10", &[("", 80, "TCP")]);
    assert_eq!(ports(&svc, &[])[0].affinity_timeout, None);
    svc.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    assert_eq!(ports(&svc, &[])[0].affinity_timeout, Some(10800));
    svc.spec.as_mut().unwrap().session_affinity_config =
        Some(k8s_openapi::api::core::v1::SessionAffinityConfig {
            client_ip: Some(k8s_openapi::api::core::v1::ClientIPConfig {
                timeout_seconds: Some(60),
            }),
        });
    assert_eq!(ports(&svc, &[])[0].affinity_timeout, Some(60));
}

#[test]
fn service_map_set_should_replace_a_services_ports() {
    let a = service("ns", "a", "10.96.0.1", &[("", 80, "TCP")]);
    let mut map = ServiceMap::build([&a], []);
    assert_eq!(map.len(), 1);
    let key = ServiceKey::new("ns", "a");
    let moved = service("ns", "a", "10.96.0.2", &[("", 80, "TCP")]);
    map.set(key.clone(), ports(&moved, &[]));
    assert!(map.lookup("10.96.0.1".parse().unwrap(), 80, Protocol::Tcp).is_none());
    assert!(map.lookup("10.96.0.2".parse().unwrap(), 80, Protocol::Tcp).is_some());
    map.set(key, Vec::new());
    assert!(map.is_empty());
}

#[test]
fn cidr_should_parse_and_contain() {
    let c = Ipv4Cidr::parse("10.96.0.1/12").unwrap();
    assert_eq!(c.to_string(), "10.96.0.0/12");
    assert!(c.contains("10.111.255.255".parse().unwrap()));
    assert!(!c.contains("10.112.0.0".parse().unwrap()));
    assert!(Ipv4Cidr::parse("10.96.0.0").is_none());
}
