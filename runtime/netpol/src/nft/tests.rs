use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::testutil::{namespace, pod, policy};

fn opts(enforced: Option<&str>) -> RenderOptions {
    RenderOptions {
        table: "t".into(),
        node_name: "n1".into(),
        enforced: enforced.map(|c| AddrSet::parse_cidr(c).expect("cidr")),
    }
}

fn model(policies: &[k8s_openapi::api::networking::v1::NetworkPolicy]) -> PolicyModel {
    let pods: Vec<Arc<PodInfo>> = [
        pod("x", "a", "10.0.1.1", "n1", &[("http", 8080)]),
        pod("x", "b", "10.0.1.2", "n1", &[("http", 8081)]),
        pod("x", "c", "10.0.2.1", "n2", &[("http", 9000), ("dns", 53)]),
    ]
    .iter()
    .filter_map(PodInfo::from_pod)
    .map(Arc::new)
    .collect();
    let ns: HashMap<String, _> =
        [namespace("x")].iter().filter_map(crate::model::namespace_labels).collect();
    PolicyModel::build(policies, &pods, &ns, [])
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn render_pod_should_write_an_ingress_chain_with_interval_sets() {
    let m = model(&[policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [
                   {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                             {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                    "ports": [{"port": "http"}, {"protocol": "UDP", "port": 5000, "endPort": 5010},
                              {"protocol": "SCTP"}]},
                   {"ports": [{"port": 22}]}]}),
    )]);
    let a = m.pod(ip("10.0.1.1")).expect("a").clone();
    let r = render_pod(&opts(None), &m, ip("10.0.1.1"), &a);
    let chain = "pod-ingress-10.0.1.1";
    assert_eq!(
        r.chains[chain],
        [
            "ip saddr 10.0.1.1 accept",
            "ip saddr @pod-ingress-10.0.1.1-0 tcp dport 8080 accept",
            "ip saddr @pod-ingress-10.0.1.1-0 udp dport 5000-5010 accept",
            "ip saddr @pod-ingress-10.0.1.1-0 meta l4proto sctp accept",
            "tcp dport 22 accept",
            "drop",
        ]
    );
    assert_eq!(
        r.sets["pod-ingress-10.0.1.1-0"],
        ["10.0.1.2", "192.168.0.0-192.168.0.255", "192.168.2.0-192.168.255.255"]
    );
    assert_eq!(r.elements[&(MapName::IngressPods, "10.0.1.1".into())], format!("goto {chain}"));
    assert!(r.elements.contains_key(&(MapName::LocalPods, "10.0.1.1".into())));
    assert!(!r.elements.contains_key(&(MapName::EgressPods, "10.0.1.1".into())));
}

#[test]
fn render_pod_should_expand_egress_named_ports_per_destination() {
    let m = model(&[policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"port": "http"}, {"port": "dns"}, {"protocol": "UDP", "port": "dns"}]}]}),
    )]);
    let a = m.pod(ip("10.0.1.1")).expect("a").clone();
    let r = render_pod(&opts(None), &m, ip("10.0.1.1"), &a);
    let chain = &r.chains["pod-egress-10.0.1.1"];
    assert_eq!(chain.first().map(String::as_str), Some("ip daddr 10.0.1.1 return"));
    assert_eq!(chain.last().map(String::as_str), Some("drop"));
    let mut by_port: Vec<(String, Vec<String>)> = chain[1..chain.len() - 1]
        .iter()
        .map(|rule| {
            let set = rule.split_whitespace().nth(2).expect("set").trim_start_matches('@');
            (rule.clone(), r.sets[set].clone())
        })
        .collect();
    by_port.sort();
    let expected = [
        ("tcp dport 8080 return", "10.0.1.1"),
        ("tcp dport 8081 return", "10.0.1.2"),
        ("tcp dport 9000 return", "10.0.2.1"),
        ("tcp dport 53 return", "10.0.2.1"),
    ];
    // `dns` is a TCP port: the UDP entry resolves to nothing.
    assert!(!chain.iter().any(|r| r.contains("udp")), "{chain:?}");
    for (rule, dest) in expected {
        assert!(
            by_port.iter().any(|(r, s)| r.ends_with(rule) && s == &[dest.to_string()]),
            "{rule} to {dest} in {by_port:?}"
        );
    }
    assert_eq!(r.elements[&(MapName::EgressPods, "10.0.1.1".into())], "jump pod-egress-10.0.1.1");
}

#[test]
fn render_should_skip_other_nodes_and_pods_outside_the_enforced_range() {
    let m = model(&[policy("x", "deny", json!({"podSelector": {}}))]);
    let all = render(&opts(None), &m);
    assert_eq!(all.len(), 2, "pods of n1 only");
    assert!(all[&ip("10.0.1.2")].chains.contains_key("pod-ingress-10.0.1.2"));
    // A deny-all chain: only the pod itself.
    assert_eq!(
        all[&ip("10.0.1.2")].chains["pod-ingress-10.0.1.2"],
        ["ip saddr 10.0.1.2 accept", "drop"]
    );
    let oci = render(&opts(Some("10.0.1.2/32")), &m);
    assert!(oci[&ip("10.0.1.1")].chains.is_empty(), "10.0.1.1 is outside 10.0.1.2/32");
    assert!(oci[&ip("10.0.1.1")].elements.contains_key(&(MapName::LocalPods, "10.0.1.1".into())));
}

#[test]
fn plan_should_send_only_the_pods_that_changed() {
    let mut nft = NftEnforcer::new(opts(None));
    let empty = model(&[]);
    let tx = nft.plan(&empty);
    assert!(tx.full);
    assert!(tx.text.starts_with("add table inet t\ndelete table inet t\nadd table inet t\n"));
    assert!(
        tx.text.contains("add element inet t local-pods { 10.0.1.1, 10.0.1.2 }"),
        "{}",
        tx.text
    );
    nft.committed(tx);
    assert!(nft.plan(&empty).is_empty(), "nothing changed");

    let selects_b = policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    );
    let m = model(&[selects_b]);
    let tx = nft.plan(&m);
    assert!(!tx.full);
    assert_eq!(tx.pods_changed(), 1);
    assert_eq!(
        tx.text,
        "add set inet t pod-ingress-10.0.1.2-0 { type ipv4_addr ; flags interval ; }
add element inet t pod-ingress-10.0.1.2-0 { 10.0.1.1 }
add chain inet t pod-ingress-10.0.1.2
add rule inet t pod-ingress-10.0.1.2 ip saddr 10.0.1.2 accept
add rule inet t pod-ingress-10.0.1.2 ip saddr @pod-ingress-10.0.1.2-0 accept
add rule inet t pod-ingress-10.0.1.2 drop
add element inet t ingress-pods { 10.0.1.2 : goto pod-ingress-10.0.1.2 }
"
    );
    nft.committed(tx);

    // The peers change: the set is refilled in place, the chain stays.
    let from_all = policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
               "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    let tx = nft.plan(&model(&[from_all]));
    assert_eq!(
        tx.text,
        "flush set inet t pod-ingress-10.0.1.2-0
add element inet t pod-ingress-10.0.1.2-0 { 10.0.1.1-10.0.1.2, 10.0.2.1 }
"
    );
    nft.committed(tx);

    // Gone: the map element first, then the chain, then its set.
    let tx = nft.plan(&empty);
    assert_eq!(
        tx.text,
        "delete element inet t ingress-pods { 10.0.1.2 }
flush chain inet t pod-ingress-10.0.1.2
delete chain inet t pod-ingress-10.0.1.2
delete set inet t pod-ingress-10.0.1.2-0
"
    );
    nft.committed(tx);
    nft.reset();
    assert!(nft.plan(&empty).full, "after a reset the table is recreated");
}
