//! The model against upstream's netpol e2e shape: namespaces x, y, z (labelled `ns=x` …),
//! pods a, b, c in each (labelled `pod=a` …), every pod serving TCP, UDP and SCTP on 80 and
//! 81 under named ports `serve-80-tcp` …, and per policy the expected reachability of every
//! pod from every pod (a pod always reaches itself).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);

fn pod_ip(ns: &str, pod: &str) -> IpAddr {
    let n = NAMESPACES.iter().position(|x| *x == ns).expect("namespace") as u8 + 1;
    let p = PODS.iter().position(|x| *x == pod).expect("pod") as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(10, 0, n, p))
}

fn pods() -> Vec<Arc<PodInfo>> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        for pod in PODS {
            let mut ports = Vec::new();
            for port in [80u16, 81] {
                for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                    let name = format!("serve-{port}-{}", protocol.as_str().to_lowercase());
                    ports.push(NamedPort { name, port, protocol });
                }
            }
            out.push(Arc::new(PodInfo {
                namespace: ns.into(),
                name: pod.into(),
                ips: vec![pod_ip(ns, pod)],
                labels: Labels::from([("pod".to_string(), pod.to_string())]),
                node: Some("node-1".into()),
                ports,
            }));
        }
    }
    out
}

fn namespaces() -> HashMap<String, Labels> {
    NAMESPACES
        .iter()
        .map(|ns| {
            let labels = Labels::from([
                ("ns".to_string(), ns.to_string()),
                (NAMESPACE_NAME_LABEL.to_string(), ns.to_string()),
            ]);
            (ns.to_string(), labels)
        })
        .collect()
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("policy")
}

fn model(policies: &[NetworkPolicy]) -> PolicyModel {
    let pods = pods();
    PolicyModel::build(policies, &pods, &namespaces(), [IpAddr::V4(NODE_IP)])
}

/// Expected reachability, `ns/pod` → `ns/pod`.
struct Reachability {
    expected: BTreeMap<(String, String), bool>,
}

fn all_pods() -> Vec<String> {
    NAMESPACES.iter().flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}"))).collect()
}

impl Reachability {
    fn new(default: bool) -> Reachability {
        let mut expected = BTreeMap::new();
        for from in all_pods() {
            for to in all_pods() {
                expected.insert((from.clone(), to.clone()), default);
            }
        }
        Reachability { expected }
    }

    /// Set every pair whose ends match the prefixes (`x/` for a namespace, `x/a` for a pod,
    /// `` for all).
    fn expect(mut self, from: &str, to: &str, allowed: bool) -> Reachability {
        for ((f, t), v) in self.expected.iter_mut() {
            if f.starts_with(from) && t.starts_with(to) {
                *v = allowed;
            }
        }
        self
    }

    /// Compare with the model for `port`/`protocol`, printing the table on a mismatch.
    fn check(mut self, model: &PolicyModel, port: u16, protocol: Protocol, case: &str) {
        for p in all_pods() {
            self.expected.insert((p.clone(), p), true);
        }
        let mut wrong = Vec::new();
        let mut table = String::from("      ");
        for to in all_pods() {
            table.push_str(&format!("{to:>5}"));
        }
        for from in all_pods() {
            table.push_str(&format!("\n{from:>5} "));
            for to in all_pods() {
                let (fns, fp) = from.split_once('/').expect("from");
                let (tns, tp) = to.split_once('/').expect("to");
                let dest = SocketAddr::new(pod_ip(tns, tp), port);
                let got = model.allows(pod_ip(fns, fp), dest, protocol);
                let want = self.expected[&(from.clone(), to.clone())];
                let mark = match (got, want) {
                    (true, true) => ".",
                    (false, false) => "X",
                    (true, false) => "!.",
                    (false, true) => "!X",
                };
                if got != want {
                    wrong.push(format!("{from} -> {to}"));
                }
                table.push_str(&format!("{mark:>5}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{case} on {port}/{protocol:?}: wrong for {wrong:?} (. allowed, X denied, ! wrong):\n{table}"
        );
    }
}

#[test]
fn model_should_allow_everything_without_policies() {
    let m = model(&[]);
    Reachability::new(true).check(&m, 80, Protocol::Tcp, "no policy");
    assert!(m.ingress(pod_ip("x", "a")).is_none());
}

#[test]
fn default_deny_ingress_should_isolate_every_pod_of_its_namespace() {
    let m = model(&[policy("x", "deny", json!({"podSelector": {}}))]);
    let r = Reachability::new(true).expect("", "x/", false);
    r.check(&m, 80, Protocol::Tcp, "default-deny-ingress");
    // Egress is not touched: x's pods still reach out.
    assert!(m.egress(pod_ip("x", "a")).is_none());
}

#[test]
fn allow_from_namespace_should_admit_only_that_namespace() {
    let m = model(&[policy(
        "x",
        "from-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    )]);
    let r = Reachability::new(true).expect("", "x/a", false).expect("y/", "x/a", true);
    r.check(&m, 80, Protocol::Tcp, "allow-from-namespace");
}

#[test]
fn allow_from_pod_should_mean_the_policys_namespace() {
    let m = model(&[policy(
        "x",
        "from-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let r = Reachability::new(true).expect("", "x/a", false).expect("x/b", "x/a", true);
    r.check(&m, 80, Protocol::Tcp, "allow-from-pod");
}

#[test]
fn pod_and_namespace_selector_in_one_peer_should_both_hold() {
    let and = model(&[policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                      "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let r = Reachability::new(true).expect("", "x/a", false).expect("y/b", "x/a", true);
    r.check(&and, 80, Protocol::Tcp, "pod AND namespace");
    // The same selectors as two peers are OR'ed.
    let or = model(&[policy(
        "x",
        "or",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                     {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let r = Reachability::new(true)
        .expect("", "x/a", false)
        .expect("y/", "x/a", true)
        .expect("x/b", "x/a", true);
    r.check(&or, 80, Protocol::Tcp, "pod OR namespace");
}

#[test]
fn empty_namespace_selector_should_select_every_namespace() {
    let m = model(&[policy(
        "x",
        "from-all-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {},
                                      "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let r = Reachability::new(true).expect("", "x/a", false).expect("x/b", "x/a", true);
    let r = r.expect("y/b", "x/a", true).expect("z/b", "x/a", true);
    r.check(&m, 80, Protocol::Tcp, "namespaceSelector {}");
}

#[test]
fn egress_deny_all_should_isolate_sources_only() {
    let m =
        model(&[policy("x", "deny-egress", json!({"podSelector": {}, "policyTypes": ["Egress"]}))]);
    let r = Reachability::new(true).expect("x/", "", false);
    r.check(&m, 80, Protocol::Tcp, "egress deny-all");
    assert!(m.ingress(pod_ip("x", "a")).is_none(), "ingress stays open");
    // Not even the node is reachable by egress: only policies open it.
    let node = SocketAddr::new(IpAddr::V4(NODE_IP), 10250);
    assert!(!m.allows_egress(pod_ip("x", "a"), node, Protocol::Tcp));
}

#[test]
fn egress_to_one_pod_should_allow_only_it() {
    let to_y_b = json!([{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                 "podSelector": {"matchLabels": {"pod": "b"}}}]}]);
    let m = model(&[policy(
        "x",
        "to-y-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": to_y_b.clone()}),
    )]);
    let r = Reachability::new(true).expect("x/a", "", false).expect("x/a", "y/b", true);
    r.check(&m, 80, Protocol::Tcp, "egress to one pod");
    // Egress rules and no policyTypes: the policy is Ingress too, with no ingress rule.
    let m = model(&[policy(
        "x",
        "to-y-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": to_y_b}),
    )]);
    let r = Reachability::new(true)
        .expect("x/a", "", false)
        .expect("x/a", "y/b", true)
        .expect("", "x/a", false);
    r.check(&m, 81, Protocol::Udp, "egress to one pod, ingress isolated by default");
}

#[test]
fn ip_block_should_honour_its_exceptions_for_pods_and_other_addresses() {
    let m = model(&[policy(
        "x",
        "cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}]}),
    )]);
    let r = Reachability::new(true).expect("x/a", "y/", false);
    r.check(&m, 80, Protocol::Tcp, "ipBlock except");
    let from = pod_ip("x", "a");
    let ext = |s: &str| SocketAddr::new(s.parse().expect("ip"), 443);
    assert!(m.allows(from, ext("10.0.9.9"), Protocol::Tcp), "not a pod, in the block");
    assert!(m.allows(from, ext("10.0.255.255"), Protocol::Tcp));
    assert!(!m.allows(from, ext("10.0.2.200"), Protocol::Tcp), "excepted");
    assert!(!m.allows(from, ext("10.1.0.1"), Protocol::Tcp), "outside");
    assert!(!m.allows(from, ext("fd00::1"), Protocol::Tcp), "other family");
}

#[test]
fn end_port_should_allow_a_range() {
    let m = model(&[policy(
        "x",
        "range",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"port": 80, "endPort": 81}, {"protocol": "UDP", "port": 81}]}]}),
    )]);
    let open = Reachability::new(true);
    open.check(&m, 80, Protocol::Tcp, "in range");
    Reachability::new(true).check(&m, 81, Protocol::Tcp, "range end");
    Reachability::new(true).expect("", "x/a", false).check(&m, 82, Protocol::Tcp, "past the range");
    Reachability::new(true).expect("", "x/a", false).check(&m, 80, Protocol::Udp, "UDP 80");
    Reachability::new(true).check(&m, 81, Protocol::Udp, "UDP 81");
    Reachability::new(true).expect("", "x/a", false).check(&m, 80, Protocol::Sctp, "SCTP");
}

#[test]
fn named_ports_should_resolve_against_the_destination_pod() {
    let m = model(&[policy(
        "x",
        "named",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    )]);
    Reachability::new(true).check(&m, 81, Protocol::Tcp, "named ingress port");
    Reachability::new(true).expect("", "x/a", false).check(&m, 80, Protocol::Tcp, "other port");
    Reachability::new(true).expect("", "x/a", false).check(&m, 81, Protocol::Udp, "other protocol");

    let m = model(&[policy(
        "x",
        "named-egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]}),
    )]);
    Reachability::new(true).check(&m, 80, Protocol::Udp, "named egress port");
    Reachability::new(true).expect("x/a", "", false).check(&m, 81, Protocol::Udp, "unnamed port");
    // Only pods have named ports.
    let ext = SocketAddr::new("203.0.113.1".parse().expect("ip"), 80);
    assert!(!m.allows_egress(pod_ip("x", "a"), ext, Protocol::Udp));
}

#[test]
fn policies_selecting_one_pod_should_be_ored() {
    let m = model(&[
        policy(
            "x",
            "from-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ),
        policy(
            "x",
            "from-z",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                                "ports": [{"port": 80}]}]}),
        ),
    ]);
    let r = Reachability::new(true)
        .expect("", "x/a", false)
        .expect("x/b", "x/a", true)
        .expect("z/", "x/a", true);
    r.check(&m, 80, Protocol::Tcp, "two policies on 80");
    let r = Reachability::new(true).expect("", "x/a", false).expect("x/b", "x/a", true);
    r.check(&m, 81, Protocol::Tcp, "two policies on 81");
}

#[test]
fn policy_should_not_apply_outside_its_namespace() {
    let m = model(&[policy(
        "y",
        "deny-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": []}),
    )]);
    let r = Reachability::new(true).expect("", "y/a", false);
    r.check(&m, 80, Protocol::Tcp, "policy in y");
}

#[test]
fn node_should_always_reach_isolated_pods() {
    let m = model(&[policy("x", "deny", json!({"podSelector": {}}))]);
    let to = SocketAddr::new(pod_ip("x", "a"), 80);
    assert!(m.allows(IpAddr::V4(NODE_IP), to, Protocol::Tcp), "node address");
    assert!(m.allows("127.0.0.1".parse().expect("ip"), to, Protocol::Tcp), "loopback");
    assert!(!m.allows("192.168.0.11".parse().expect("ip"), to, Protocol::Tcp), "another node");
}

#[test]
fn policy_types_should_default_as_kubernetes_does() {
    // Ingress rules of an Egress-only policy are ignored.
    let m = model(&[policy(
        "x",
        "egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "none"}}}]}],
               "egress": [{}]}),
    )]);
    Reachability::new(true).check(&m, 80, Protocol::Tcp, "egress-only policy");
    assert!(m.ingress(pod_ip("x", "a")).is_none());
    assert!(m.egress(pod_ip("x", "a")).is_some());
    // `egress: []` without policyTypes is an ingress policy.
    let m = model(&[policy("x", "empty-egress", json!({"podSelector": {}, "egress": []}))]);
    assert!(m.egress(pod_ip("x", "a")).is_none());
    assert!(m.ingress(pod_ip("x", "a")).is_some());
}

#[test]
fn namespace_name_label_should_match_without_a_namespace_object() {
    let pods = pods();
    let np = policy(
        "x",
        "by-name",
        json!({"podSelector": {},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "z"}}}]}]}),
    );
    let m = PolicyModel::build([&np], &pods, &HashMap::new(), []);
    Reachability::new(true).expect("", "x/", false).expect("z/", "x/", true).check(
        &m,
        80,
        Protocol::Tcp,
        "kubernetes.io/metadata.name",
    );
}

#[test]
fn addr_set_should_cut_exceptions_and_merge_ranges() {
    let block = IPBlock {
        cidr: "10.0.0.0/8".into(),
        except: Some(vec!["10.1.0.0/16".into(), "10.0.0.0/24".into(), "10.255.255.255/32".into()]),
    };
    let set = AddrSet::from_ip_block(&block).expect("block");
    let ranges: Vec<String> = set.v4_ranges().map(|(a, b)| format!("{a}-{b}")).collect();
    assert_eq!(ranges, ["10.0.1.0-10.0.255.255", "10.2.0.0-10.255.255.254"]);
    let all = AddrSet::parse_cidr("0.0.0.0/0").expect("all");
    assert!(all.contains("255.255.255.255".parse().expect("ip")));
    assert!(!all.contains("::1".parse().expect("ip")));
    let mut merged =
        AddrSet::from_ips(["10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip")]);
    merged.extend(&AddrSet::parse_cidr("10.0.0.0/30").expect("cidr"));
    let ranges: Vec<String> = merged.v4_ranges().map(|(a, b)| format!("{a}-{b}")).collect();
    assert_eq!(ranges, ["10.0.0.0-10.0.0.3"]);
    assert!(AddrSet::parse_cidr("10.0.0.0/33").is_none());
    let v6 = AddrSet::parse_cidr("fd00::1/64").expect("v6");
    assert!(v6.contains("fd00::ffff".parse().expect("ip")));
    // An except covering the whole block leaves nothing.
    let none = IPBlock { cidr: "10.0.0.0/24".into(), except: Some(vec!["10.0.0.0/23".into()]) };
    assert!(AddrSet::from_ip_block(&none).expect("block").is_empty());
}

#[test]
fn from_pod_should_skip_pods_policies_do_not_see() {
    let pod = |extra: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        let mut v = json!({
            "metadata": {"namespace": "x", "name": "a", "labels": {"pod": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": "10.0.1.1", "podIPs": [{"ip": "10.0.1.1"}]},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pod")
    };
    let info = PodInfo::from_pod(&pod(json!({}))).expect("running pod");
    assert_eq!(info.ips, vec!["10.0.1.1".parse::<IpAddr>().expect("ip")]);
    assert_eq!(
        info.ports,
        vec![NamedPort { name: "http".into(), port: 8080, protocol: Protocol::Tcp }]
    );
    assert!(PodInfo::from_pod(&pod(json!({"spec": {"hostNetwork": true}}))).is_none());
    assert!(PodInfo::from_pod(&pod(json!({"status": {"phase": "Succeeded"}}))).is_none());
    assert!(PodInfo::from_pod(&pod(json!({"status": {"podIP": null, "podIPs": null}}))).is_none());
}

fn merge(into: &mut serde_json::Value, patch: serde_json::Value) {
    match (into, patch) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

#[test]
fn invalid_entries_should_match_nothing() {
    // What the API server refuses (a peer with no selector and no block, endPort below port,
    // an unknown protocol, a bad CIDR) never opens anything.
    let m = model(&[policy(
        "x",
        "bad",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [
                   {"from": [{}]},
                   {"ports": [{"port": 81, "endPort": 80}, {"protocol": "ICMP"}]},
                   {"from": [{"ipBlock": {"cidr": "10.0.0.0/99"}}]}]}),
    )]);
    Reachability::new(true).expect("", "x/a", false).check(&m, 80, Protocol::Tcp, "invalid");
    Reachability::new(true).expect("", "x/a", false).check(&m, 81, Protocol::Tcp, "invalid");
}
