use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::testutil::{in_netns, ready, run, service, slice};

fn in_process(node: &str) -> Proxy {
    let mut opts = ProxyOptions::new(node);
    opts.mode = ProxyMode::None;
    opts.locally_served = vec!["10.96.0.10".parse().unwrap()];
    Proxy::new(opts).unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client() -> IpAddr {
    "10.244.0.100".parse().unwrap()
}

#[test]
fn route_should_choose_among_ready_endpoints_and_refuse_without_any() {
    let p = in_process("n1");
    p.update_service(&service("ns", "web", "10.96.0.20", &[("", 80, "TCP")]));
    p.update_service(&service("ns", "empty", "10.96.0.21", &[("", 80, "TCP")]));
    p.update_service(&service("kube-system", "dns", "10.96.0.10", &[("", 53, "UDP")]));
    p.update_endpoint_slice(&slice(
        "ns",
        "web",
        "web-1",
        ("", 8080),
        &[
            ready("10.244.0.5", "n1"),
            ready("10.244.1.5", "n2"),
            ("10.244.1.6", "n2", false, true, true),
        ],
    ));
    let report = p.sync().unwrap();
    assert!(report.transaction.is_none());
    assert_eq!(report.services_recomputed, 3);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        match p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp) {
            ServiceRoute::Endpoint(e) => seen.insert(e),
            other => panic!("{other:?}"),
        };
    }
    let want: HashSet<SocketAddr> = [sa("10.244.0.5:8080"), sa("10.244.1.5:8080")].into();
    assert_eq!(seen, want);
    assert_eq!(p.route(client(), sa("10.96.0.21:80"), Protocol::Tcp), ServiceRoute::NoEndpoints);
    assert_eq!(p.route(client(), sa("10.96.0.20:81"), Protocol::Tcp), ServiceRoute::Direct);
    assert_eq!(p.route(client(), sa("10.96.0.20:80"), Protocol::Udp), ServiceRoute::Direct);
    assert_eq!(p.route(client(), sa("1.1.1.1:80"), Protocol::Tcp), ServiceRoute::Direct);
    // Served by the node itself (the cluster DNS).
    assert_eq!(p.route(client(), sa("10.96.0.10:53"), Protocol::Udp), ServiceRoute::Direct);
    assert_eq!(p.health(), ProxyHealth::Ok);
}

#[test]
fn route_should_keep_a_clients_endpoint_under_client_ip_affinity() {
    let p = in_process("n1");
    let mut svc = service("ns", "web", "10.96.0.20", &[("", 80, "TCP")]);
    svc.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    p.update_service(&svc);
    let eps: Vec<_> = (1..=8).map(|i| format!("10.244.0.{i}")).collect();
    let eps: Vec<_> = eps.iter().map(|ip| ready(ip, "n1")).collect();
    p.update_endpoint_slice(&slice("ns", "web", "web-1", ("", 8080), &eps));
    p.sync().unwrap();
    let first = p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp);
    for _ in 0..50 {
        assert_eq!(p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp), first);
    }
    // Another client is chosen for independently: over 50 clients, more than one endpoint.
    let chosen: HashSet<String> = (0..50)
        .map(|i| {
            let c: IpAddr = format!("10.244.5.{i}").parse().unwrap();
            format!("{:?}", p.route(c, sa("10.96.0.20:80"), Protocol::Tcp))
        })
        .collect();
    assert!(chosen.len() > 1);
}

#[test]
fn route_should_apply_traffic_policies_for_cluster_ips_and_node_ports() {
    let mut opts = ProxyOptions::new("n1");
    opts.mode = ProxyMode::None;
    opts.node_ip = Some("192.168.1.1".parse().unwrap());
    let p = Proxy::new(opts).unwrap();
    let mut svc = service("ns", "web", "10.96.0.20", &[("", 80, "TCP")]);
    let spec = svc.spec.as_mut().unwrap();
    spec.internal_traffic_policy = Some("Local".into());
    spec.external_traffic_policy = Some("Local".into());
    spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
    p.update_service(&svc);
    p.update_endpoint_slice(&slice("ns", "web", "s", ("", 8080), &[ready("10.244.1.5", "n2")]));
    p.sync().unwrap();
    assert_eq!(p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp), ServiceRoute::NoEndpoints);
    assert_eq!(
        p.route(client(), sa("192.168.1.1:30080"), Protocol::Tcp),
        ServiceRoute::NoEndpoints
    );
    p.update_endpoint_slice(&slice(
        "ns",
        "web",
        "s",
        ("", 8080),
        &[ready("10.244.1.5", "n2"), ready("10.244.0.5", "n1")],
    ));
    p.sync().unwrap();
    let local = ServiceRoute::Endpoint(sa("10.244.0.5:8080"));
    assert_eq!(p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp), local);
    assert_eq!(p.route(client(), sa("127.0.0.1:30080"), Protocol::Tcp), local);
    // Removing the Service removes its routes.
    p.delete_service(&svc);
    p.sync().unwrap();
    assert_eq!(p.route(client(), sa("10.96.0.20:80"), Protocol::Tcp), ServiceRoute::Direct);
    assert!(p.service_map().is_empty());
}

#[test]
fn metrics_should_use_kube_proxys_names() {
    let p = in_process("n1");
    let mut registry = Registry::default();
    p.register_metrics(&mut registry);
    p.update_service(&service("ns", "web", "10.96.0.20", &[("", 80, "TCP")]));
    p.update_endpoint_slice(&slice("ns", "web", "s", ("", 8080), &[]));
    p.sync().unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for want in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count 1",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds ",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total 1",
        "kubeproxy_sync_proxy_rules_service_changes_total 1",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn new_should_refuse_a_bad_cidr() {
    let mut opts = ProxyOptions::new("n1");
    opts.service_cidr = Some("10.96.0.0".into());
    let err = Proxy::new(opts).err().unwrap();
    assert!(err.to_string().contains("invalid service CIDR \"10.96.0.0\""), "{err}");
}

fn node(name: &str, cidr: &str, ip: &str) -> Node {
    Node {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(NodeSpec { pod_cidr: Some(cidr.into()), ..Default::default() }),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress { type_: "InternalIP".into(), address: ip.into() }]),
            ..Default::default()
        }),
    }
}

fn nft_proxy(table: &str) -> Proxy {
    let mut opts = ProxyOptions::new("n1");
    opts.table = table.into();
    opts.service_cidr = Some("10.96.0.0/12".into());
    opts.cluster_cidr = Some("10.244.0.0/16".into());
    opts.node_ip = Some("192.168.50.1".parse().unwrap());
    Proxy::new(opts).unwrap()
}

/// Connect with a deadline; the error kind and how long it took.
fn connect(addr: &str) -> (std::io::Result<TcpStream>, Duration) {
    let start = Instant::now();
    let r = TcpStream::connect_timeout(&sa(addr), Duration::from_secs(3));
    (r, start.elapsed())
}

#[test]
fn traffic_should_reach_the_endpoint_and_be_refused_once_it_is_gone() {
    in_netns(|| {
        // An address of the node standing for a pod (no dummy links on every kernel).
        run("ip", &["addr", "add", "10.244.1.5/32", "dev", "lo"]);
        let listener = TcpListener::bind("10.244.1.5:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = nft_proxy("skiff-traffic");
        p.update_service(&service("ns", "web", "10.96.0.20", &[("", 80, "TCP")]));
        let with = slice("ns", "web", "s", ("", i32::from(port)), &[ready("10.244.1.5", "n1")]);
        p.update_endpoint_slice(&with);
        p.sync().expect("sync");
        assert_eq!(p.health(), ProxyHealth::Ok);

        let (conn, _) = connect("10.96.0.20:80");
        let mut conn = conn.expect("connect to the ClusterIP");
        let (mut served, _) = listener.accept().unwrap();
        conn.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        drop((conn, served));

        // The endpoint leaves: refused at once (reject), not a timeout.
        p.update_endpoint_slice(&slice("ns", "web", "s", ("", i32::from(port)), &[]));
        let report = p.sync().expect("sync");
        let tx = report.transaction.unwrap();
        assert!(!tx.full && tx.text.contains("no-endpoint-services"), "{}", tx.text);
        let (r, took) = connect("10.96.0.20:80");
        assert_eq!(r.err().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
        assert!(took < Duration::from_secs(1), "{took:?}");
        // An address of no Service: RST from the local route, at once.
        let (r, took) = connect("10.96.0.99:80");
        assert_eq!(r.err().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
        assert!(took < Duration::from_secs(1), "{took:?}");
        // A pod address of no node: unreachable at once.
        let (r, _) = connect("10.244.77.1:80");
        assert!(r.is_err());

        // Back again.
        p.update_endpoint_slice(&with);
        p.sync().expect("sync");
        let (conn, _) = connect("10.96.0.20:80");
        conn.expect("connect after the endpoint came back");
    });
}

#[test]
fn routes_should_follow_nodes_and_report_an_unreachable_gateway() {
    in_netns(|| {
        // The node's network (on lo: nothing is sent, only routes are checked).
        run("ip", &["addr", "add", "192.168.50.1/24", "dev", "lo"]);
        let p = nft_proxy("skiff-routes");
        p.update_node(&node("n1", "10.244.0.0/24", "192.168.50.1"));
        p.update_node(&node("n2", "10.244.2.0/24", "192.168.50.2"));
        p.sync().expect("sync");
        let routes = run("ip", &["route", "show"]);
        assert!(routes.contains("10.244.2.0/24 via 192.168.50.2 dev lo"), "{routes}");
        assert!(routes.contains("unreachable 10.244.0.0/16"), "{routes}");
        let local = run("ip", &["route", "show", "table", "local"]);
        assert!(local.contains("local 10.96.0.0/12 dev lo"), "{local}");

        p.delete_node(&node("n2", "10.244.2.0/24", "192.168.50.2"));
        p.sync().expect("sync");
        assert!(!run("ip", &["route", "show"]).contains("10.244.2.0/24"));

        // host-gw needs the gateway on a connected network.
        p.update_node(&node("far", "10.244.3.0/24", "203.0.113.7"));
        let err = p.sync().expect_err("an unreachable gateway");
        assert!(matches!(err, ProxyError::Routes(RouteError::GatewayNotConnected { .. })), "{err}");
        match p.health() {
            ProxyHealth::RoutesUnavailable(why) => {
                assert!(why.contains("203.0.113.7") && why.contains("directly connected"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        p.delete_node(&node("far", "10.244.3.0/24", "203.0.113.7"));
        p.sync().expect("sync");
        assert_eq!(p.health(), ProxyHealth::Ok);
    });
}
