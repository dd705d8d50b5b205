use std::collections::HashSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;
use crate::model::ServiceMap;
use crate::testutil::{in_netns, ready, run, service, slice};

fn opts(table: &str) -> RenderOptions {
    RenderOptions {
        table: table.into(),
        node_name: "n1".into(),
        cluster_cidr: Some(Ipv4Cidr::parse("10.244.0.0/16").unwrap()),
        service_cidr: Some(Ipv4Cidr::parse("10.96.0.0/12").unwrap()),
        excluded: HashSet::new(),
    }
}

/// A proxier that believes `services` are applied (as after a first sync).
fn synced(services: &[Service], slices: &[EndpointSlice]) -> (NftProxier, ServiceMap) {
    let map = ServiceMap::build(services, slices);
    let mut p = NftProxier::new(opts("t"));
    let tx = p.plan(&map, &HashSet::new());
    assert!(tx.full);
    p.committed(tx);
    (p, map)
}

fn key(name: &str) -> HashSet<ServiceKey> {
    [ServiceKey::new("ns", name)].into()
}

fn web(eps: &[(&str, &str)]) -> EndpointSlice {
    let eps: Vec<_> = eps.iter().map(|(ip, node)| ready(ip, node)).collect();
    slice("ns", "web", "web-1", ("", 8080), &eps)
}

fn web_svc() -> Service {
    service("ns", "web", "10.96.0.10", &[("", 80, "TCP")])
}

fn render(o: &RenderOptions, map: &ServiceMap, ns: &str, name: &str) -> Rendered {
    render_service(o, map.get(&ServiceKey::new(ns, name)).unwrap())
}

#[test]
fn first_plan_should_recreate_the_table_with_every_service() {
    let p = NftProxier::new(opts("t"));
    let tx = p.plan(&ServiceMap::default(), &HashSet::new());
    let head = "add table ip t\ndelete table ip t\nadd table ip t\n";
    assert!(tx.text.starts_with(head), "{}", tx.text);
    let map = ServiceMap::build(&[web_svc()], &[web(&[("10.244.0.5", "n1")])]);
    let tx = p.plan(&map, &HashSet::new());
    for want in [
        "add chain ip t pick-tcp-1",
        "add rule ip t pick-tcp-1 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "add rule ip t pick-tcp-1 dnat ip to ip daddr . tcp dport . numgen random mod 1 map @endpoints-tcp",
        "add element ip t endpoints-tcp { 10.96.0.10 . 80 . 0 : 10.244.0.5 . 8080 }",
        "add element ip t hairpins { 10.244.0.5 . 10.244.0.5 }",
        "add element ip t service-ips { 10.96.0.10 . tcp . 80 : goto pick-tcp-1 }",
    ] {
        assert!(tx.text.contains(want), "missing {want:?} in\n{}", tx.text);
    }
    // No chain or rule of the Service's own.
    assert!(!tx.text.contains("ns/web"), "{}", tx.text);
    assert_eq!(tx.text.matches("add chain ip t pick-").count(), 1, "{}", tx.text);
}

#[test]
fn incremental_plans_should_send_only_the_delta() {
    let other = service("ns", "other", "10.96.0.11", &[("", 80, "TCP")]);
    let other_eps = slice("ns", "other", "other-1", ("", 80), &[ready("10.244.0.9", "n1")]);
    let base_services = [web_svc(), other.clone()];
    let base_slices = [web(&[("10.244.0.5", "n1")]), other_eps.clone()];
    struct Case {
        what: &'static str,
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
        want: Vec<&'static str>,
        not: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            what: "endpoint added: a slot element added, the verdict moves to the new pick chain",
            services: base_services.to_vec(),
            slices: vec![web(&[("10.244.0.5", "n1"), ("10.244.0.6", "n2")]), other_eps.clone()],
            want: vec![
                "delete element ip t service-ips { 10.96.0.10 . tcp . 80 }",
                "add chain ip t pick-tcp-2",
                "add rule ip t pick-tcp-2 dnat ip to ip daddr . tcp dport . numgen random mod 2 map @endpoints-tcp",
                "add element ip t endpoints-tcp { 10.96.0.10 . 80 . 1 : 10.244.0.6 . 8080 }",
                "add element ip t service-ips { 10.96.0.10 . tcp . 80 : goto pick-tcp-2 }",
            ],
            // Slot 0 is unchanged; pick-tcp-1 exists already; the new endpoint is on another
            // node, so no hairpin element.
            not: vec![
                "other",
                "add table",
                "flush",
                ". 80 . 0",
                "pick-tcp-1",
                "ns/web",
                "hairpins",
            ],
        },
        Case {
            what: "endpoint replaced: only its slot element changes",
            services: base_services.to_vec(),
            slices: vec![web(&[("10.244.0.7", "n1")]), other_eps.clone()],
            want: vec![
                "delete element ip t endpoints-tcp { 10.96.0.10 . 80 . 0 }",
                "add element ip t endpoints-tcp { 10.96.0.10 . 80 . 0 : 10.244.0.7 . 8080 }",
                "delete element ip t hairpins { 10.244.0.5 . 10.244.0.5 }",
                "add element ip t hairpins { 10.244.0.7 . 10.244.0.7 }",
            ],
            not: vec!["other", "add chain", "flush chain", "delete chain", "rule", "service-ips"],
        },
        Case {
            what: "endpoint removed: no endpoints left, the map element moves to the reject map",
            services: base_services.to_vec(),
            slices: vec![web(&[]), other_eps.clone()],
            want: vec![
                "delete element ip t service-ips { 10.96.0.10 . tcp . 80 }",
                "delete element ip t endpoints-tcp { 10.96.0.10 . 80 . 0 }",
                "delete element ip t hairpins { 10.244.0.5 . 10.244.0.5 }",
                "add element ip t no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }",
            ],
            not: vec!["other", "add chain", "flush chain", "delete chain", "rule"],
        },
        Case {
            what: "service deleted: its elements go",
            services: vec![other.clone()],
            slices: vec![other_eps.clone()],
            want: vec![
                "delete element ip t service-ips { 10.96.0.10 . tcp . 80 }",
                "delete element ip t endpoints-tcp { 10.96.0.10 . 80 . 0 }",
                "delete element ip t hairpins { 10.244.0.5 . 10.244.0.5 }",
            ],
            not: vec!["other", "add ", "flush chain", "delete chain"],
        },
        Case {
            what: "no change: nothing sent",
            services: base_services.to_vec(),
            slices: base_slices.to_vec(),
            want: vec![],
            not: vec!["add", "delete", "flush"],
        },
    ];
    for case in cases {
        let (p, _) = synced(&base_services, &base_slices);
        let map = ServiceMap::build(&case.services, &case.slices);
        let tx = p.plan(&map, &key("web"));
        for w in &case.want {
            assert!(tx.text.contains(w), "{}: missing {w:?} in\n{}", case.what, tx.text);
        }
        for n in &case.not {
            assert!(!tx.text.contains(n), "{}: unexpected {n:?} in\n{}", case.what, tx.text);
        }
        assert!(!tx.full, "{}", case.what);
    }
}

#[test]
fn plan_should_order_deletions_before_additions() {
    let (p, _) = synced(&[web_svc()], &[web(&[("10.244.0.5", "n1")])]);
    let eps = [("10.244.0.6", "n1"), ("10.244.0.7", "n1")];
    let map = ServiceMap::build(&[web_svc()], &[web(&eps)]);
    let text = p.plan(&map, &key("web")).text;
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s:?} not in\n{text}"));
    assert!(at("delete element ip t endpoints-tcp") < at("add chain ip t pick-tcp-2"));
    assert!(at("delete element ip t hairpins") < at("add chain ip t pick-tcp-2"));
    assert!(at("add chain ip t pick-tcp-2") < at("add rule ip t pick-tcp-2"));
    assert!(at("add rule ip t pick-tcp-2") < at("add element ip t endpoints-tcp"));
    assert!(at("add rule ip t pick-tcp-2") < at("add element ip t service-ips"));
    assert!(at("add rule ip t pick-tcp-2") < at("add element ip t hairpins"));
}

#[test]
fn pick_chains_should_be_created_once_and_kept() {
    let (mut p, _) = synced(&[web_svc()], &[web(&[("10.244.0.5", "n1")])]);
    let two = [("10.244.0.5", "n1"), ("10.244.0.6", "n1")];
    let map = ServiceMap::build(&[web_svc()], &[web(&two)]);
    let tx = p.plan(&map, &key("web"));
    assert!(tx.text.contains("add chain ip t pick-tcp-2"), "{}", tx.text);
    p.committed(tx);
    let map = ServiceMap::build(&[web_svc()], &[web(&two[..1])]);
    let tx = p.plan(&map, &key("web"));
    assert!(!tx.text.contains("chain"), "{}", tx.text);
    p.committed(tx);
    let map = ServiceMap::build(&[web_svc()], &[web(&two)]);
    let tx = p.plan(&map, &key("web"));
    assert!(!tx.text.contains("chain"), "{}", tx.text);
    // A failed apply forgets them: the table is recreated with those in use.
    p.reset();
    let tx = p.plan(&map, &HashSet::new());
    assert!(tx.full && tx.text.contains("add chain ip t pick-tcp-2"), "{}", tx.text);
    assert!(!tx.text.contains("pick-tcp-1"), "{}", tx.text);
}

#[test]
fn map_layout_should_key_by_protocol_and_cap_the_endpoints() {
    let svc = service("ns", "dns", "10.96.0.53", &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]);
    let mut udp = slice("ns", "dns", "dns-1", ("dns", 5353), &[ready("10.244.0.5", "n1")]);
    udp.ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    let map = ServiceMap::build(&[svc], &[udp]);
    let r = render(&opts("t"), &map, "ns", "dns");
    assert_eq!(
        r.elements[&(MapName::ServiceIps, "10.96.0.53 . udp . 53".into())],
        "goto pick-udp-1"
    );
    assert_eq!(
        r.elements[&(MapName::EndpointsUdp, "10.96.0.53 . 53 . 0".into())],
        "10.244.0.5 . 5353"
    );
    let tcp = &r.elements[&(MapName::NoEndpointServices, "10.96.0.53 . tcp . 53".into())];
    assert_eq!(tcp, "goto reject-chain");

    let ips: Vec<String> =
        (0..300).map(|i| format!("10.244.{}.{}", i / 200, i % 200 + 1)).collect();
    let eps: Vec<_> = ips.iter().map(|ip| ready(ip, "n1")).collect();
    let map = ServiceMap::build(&[web_svc()], &[slice("ns", "web", "web-1", ("", 80), &eps)]);
    let r = render(&opts("t"), &map, "ns", "web");
    let goto = format!("goto pick-tcp-{MAX_PICK}");
    assert_eq!(r.elements[&(MapName::ServiceIps, "10.96.0.10 . tcp . 80".into())], goto);
    let slots = r.elements.keys().filter(|(m, _)| *m == MapName::EndpointsTcp).count();
    assert_eq!(slots, MAX_PICK);
    assert_eq!(r.hairpins.len(), MAX_PICK);
    assert!(r.chains.is_empty());
}

#[test]
fn hairpins_should_stay_while_any_service_has_the_address() {
    let a = service("ns", "a", "10.96.0.1", &[("", 80, "TCP")]);
    let b = service("ns", "b", "10.96.0.2", &[("", 80, "TCP")]);
    let sa = slice("ns", "a", "a-1", ("", 80), &[ready("10.244.0.1", "n1")]);
    let sb = slice("ns", "b", "b-1", ("", 81), &[ready("10.244.0.1", "n1")]);
    let (mut p, _) = synced(&[a.clone(), b], &[sa.clone(), sb]);
    let map = ServiceMap::build(std::slice::from_ref(&a), &[sa]);
    let tx = p.plan(&map, &key("b"));
    assert!(!tx.text.contains("hairpins"), "{}", tx.text);
    p.committed(tx);
    let map = ServiceMap::build(&[a], &[]);
    let tx = p.plan(&map, &key("a"));
    let want = "delete element ip t hairpins { 10.244.0.1 . 10.244.0.1 }";
    assert!(tx.text.contains(want), "{}", tx.text);
}

#[test]
fn hairpins_should_hold_this_nodes_endpoints_only() {
    let mut unknown = slice("ns", "web", "web-2", ("", 8080), &[ready("10.244.2.5", "n3")]);
    unknown.endpoints[0].node_name = None;
    let slices = [web(&[("10.244.0.5", "n1"), ("10.244.1.5", "n2")]), unknown];
    let map = ServiceMap::build(&[web_svc()], &slices);
    let r = render(&opts("t"), &map, "ns", "web");
    let want: BTreeSet<Ipv4Addr> =
        ["10.244.0.5".parse().unwrap(), "10.244.2.5".parse().unwrap()].into();
    assert_eq!(r.hairpins, want);
    let slots = r.elements.keys().filter(|(m, _)| *m == MapName::EndpointsTcp).count();
    assert_eq!(slots, 3);
}

#[test]
fn affinity_should_check_then_update_a_set_per_endpoint() {
    let mut svc = web_svc();
    svc.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    let map = ServiceMap::build(&[svc], &[web(&[("10.244.0.5", "n1"), ("10.244.0.6", "n1")])]);
    let ports = map.get(&ServiceKey::new("ns", "web")).unwrap();
    let r = render_service(&opts("t"), ports);
    let set5 = "affinity-ns/web/tcp/___10.244.0.5/8080";
    let ep5 = "endpoint-ns/web/tcp/___10.244.0.5/8080";
    assert!(r.sets.contains(set5));
    assert_eq!(r.sets.len(), 2);
    let svc_rules = &r.chains["service-ns/web/tcp/_"];
    assert_eq!(svc_rules[1], format!("ip saddr @{set5} goto {ep5}"), "{svc_rules:#?}");
    assert_eq!(svc_rules[3], format!("numgen random mod 2 0 goto {ep5}"));
    assert_eq!(svc_rules[4], "goto endpoint-ns/web/tcp/___10.244.0.6/8080");
    assert_eq!(
        r.chains[ep5],
        [
            format!("update @{set5} {{ ip saddr timeout 10800s }}"),
            "meta l4proto tcp dnat to 10.244.0.5:8080".to_string()
        ]
    );
}

#[test]
fn local_policy_should_use_this_nodes_endpoints_only() {
    let mut svc = web_svc();
    svc.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
    let slices = [web(&[("10.244.0.5", "n1"), ("10.244.1.5", "n2")])];
    let map = ServiceMap::build(&[svc], &slices);
    let r = render(&opts("t"), &map, "ns", "web");
    assert_eq!(
        r.elements[&(MapName::ServiceIps, "10.96.0.10 . tcp . 80".into())],
        "goto pick-tcp-1"
    );
    assert_eq!(
        r.elements[&(MapName::EndpointsTcp, "10.96.0.10 . 80 . 0".into())],
        "10.244.0.5 . 8080"
    );
    assert!(!format!("{r:?}").contains("10.244.1.5"), "{r:#?}");
    assert!(r.chains.is_empty(), "{:#?}", r.chains);
    // On a node with no local endpoint: dropped (others have some), not rejected.
    let mut o = opts("t");
    o.node_name = "n3".into();
    let r = render(&o, &map, "ns", "web");
    assert_eq!(r.elements[&(MapName::NoEndpointServices, "10.96.0.10 . tcp . 80".into())], "drop");
    assert!(r.chains.is_empty(), "{:#?}", r.chains);
}

#[test]
fn node_port_should_masquerade_and_reject_without_endpoints() {
    let mut svc = web_svc();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(30080);
    let map = ServiceMap::build(&[svc.clone()], &[web(&[("10.244.0.5", "n1")])]);
    let r = render(&opts("t"), &map, "ns", "web");
    assert_eq!(
        r.elements[&(MapName::ServiceNodePorts, "tcp . 30080".into())],
        "goto external-ns/web/tcp/_"
    );
    assert_eq!(
        r.chains["external-ns/web/tcp/_"],
        ["jump mark-for-masquerade", "goto service-ns/web/tcp/_"]
    );
    let map = ServiceMap::build(&[svc], &[]);
    let r = render(&opts("t"), &map, "ns", "web");
    let np = &r.elements[&(MapName::NoEndpointNodePorts, "tcp . 30080".into())];
    assert_eq!(np, "goto reject-chain");
    let ip = &r.elements[&(MapName::NoEndpointServices, "10.96.0.10 . tcp . 80".into())];
    assert_eq!(ip, "goto reject-chain");
}

#[test]
fn excluded_addresses_should_get_no_rule() {
    let dns = service("kube-system", "kube-dns", "10.96.0.10", &[("dns", 53, "UDP")]);
    let map = ServiceMap::build(&[dns], &[]);
    let mut o = opts("t");
    o.excluded.insert("10.96.0.10".parse().unwrap());
    assert_eq!(render(&o, &map, "kube-system", "kube-dns"), Rendered::default());
}

// Real nftables, in a network namespace of the test's own.

#[test]
fn full_sync_should_load_into_nftables_and_restart_without_duplicates() {
    in_netns(|| {
        let mut svc = web_svc();
        svc.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
        svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(30080);
        let empty = service("ns", "empty", "10.96.0.12", &[("", 80, "TCP")]);
        let plain = service("ns", "plain", "10.96.0.13", &[("", 80, "TCP")]);
        let plain_eps = slice("ns", "plain", "plain-1", ("", 80), &[ready("10.244.0.9", "n1")]);
        let map = ServiceMap::build(
            &[svc, empty, plain],
            &[web(&[("10.244.0.5", "n1"), ("10.244.0.6", "n2")]), plain_eps],
        );
        let mut p = NftProxier::new(opts("skiff-test"));
        let applied = p.sync(&map, &HashSet::new()).expect("first sync");
        assert!(applied.full);
        let listing = run("nft", &["list", "table", "ip", "skiff-test"]);
        for want in [
            "10.96.0.10 . tcp . 80 : goto service-ns/web/tcp/_",
            "10.96.0.12 . tcp . 80 : goto reject-chain",
            "tcp . 30080 : goto external-ns/web/tcp/_",
            "chain endpoint-ns/web/tcp/___10.244.0.6/8080",
            "dnat to 10.244.0.6:8080",
            "set affinity-ns/web/tcp/___10.244.0.5/8080",
            "update @affinity-ns/web/tcp/___10.244.0.5/8080 { ip saddr timeout 3h }",
            "numgen random mod 2 0 goto endpoint-ns/web/tcp/___10.244.0.5/8080",
            "10.96.0.13 . tcp . 80 : goto pick-tcp-1",
            "10.96.0.13 . 80 . 0 : 10.244.0.9 . 80",
            "chain pick-tcp-1 {",
            "dnat ip to ip daddr . tcp dport . numgen random mod 1 map @endpoints-tcp",
            "10.244.0.9 . 10.244.0.9",
        ] {
            assert!(listing.contains(want), "missing {want:?} in\n{listing}");
        }
        // A restarted proxy (new state, same table): recreated, nothing twice.
        let mut again = NftProxier::new(opts("skiff-test"));
        again.sync(&map, &HashSet::new()).expect("sync after restart");
        let relisted = run("nft", &["list", "table", "ip", "skiff-test"]);
        assert_eq!(relisted.matches("dnat to 10.244.0.6:8080").count(), 1, "{relisted}");
        assert_eq!(relisted.matches("chain services {").count(), 1);
        assert_eq!(relisted.matches("chain pick-tcp-1 {").count(), 1);
        assert_eq!(relisted.matches(": 10.244.0.9 . 80").count(), 1, "{relisted}");
        assert_eq!(relisted.len(), listing.len());
        // An incremental change applies too, and only it is sent.
        let map2 = ServiceMap::build(&[web_svc()], &[web(&[("10.244.0.5", "n1")])]);
        let changed: HashSet<ServiceKey> =
            ["web", "empty", "plain"].into_iter().map(|n| ServiceKey::new("ns", n)).collect();
        let delta = again.sync(&map2, &changed).expect("incremental sync");
        assert!(!delta.full);
        assert!(!delta.text.contains("add table"), "{}", delta.text);
        let listing = run("nft", &["list", "table", "ip", "skiff-test"]);
        for gone in ["10.244.0.6", "affinity", "10.96.0.12", "10.244.0.9", "ns/web"] {
            assert!(!listing.contains(gone), "{gone:?} still in\n{listing}");
        }
        assert!(listing.contains("10.96.0.10 . tcp . 80 : goto pick-tcp-1"), "{listing}");
        assert!(listing.contains("10.96.0.10 . 80 . 0 : 10.244.0.5 . 8080"), "{listing}");
        assert!(listing.contains("10.244.0.5 . 10.244.0.5"), "{listing}");
        // A new pick chain in an incremental transaction (nft reads the table's rules back).
        let eps = [("10.244.0.5", "n1"), ("10.244.0.7", "n1"), ("10.244.0.8", "n2")];
        let map3 = ServiceMap::build(&[web_svc()], &[web(&eps)]);
        let delta = again.sync(&map3, &key("web")).expect("incremental sync with a new chain");
        assert!(delta.text.contains("add chain ip skiff-test pick-tcp-3"), "{}", delta.text);
        let listing = run("nft", &["list", "table", "ip", "skiff-test"]);
        assert!(listing.contains("10.96.0.10 . tcp . 80 : goto pick-tcp-3"), "{listing}");
        assert!(listing.contains("10.96.0.10 . 80 . 2 : 10.244.0.8 . 8080"), "{listing}");
    });
}
