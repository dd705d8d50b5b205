use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::json;

use super::testutil::{FakeApi, connects, in_netns, namespace, pod, policy, run};
use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn in_process() -> NetworkPolicies {
    let mut opts = NetpolOptions::new("n1");
    opts.enforcement = Enforcement::InProcess;
    opts.node_addresses = vec![ip("192.168.0.10")];
    NetworkPolicies::new(opts).expect("options")
}

fn from_b_only() -> NetworkPolicy {
    policy(
        "x",
        "b-only",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                            "ports": [{"port": "http"}]}]}),
    )
}

#[test]
fn checks_should_follow_changes_after_a_sync_and_count_denials() {
    let np = in_process();
    let mut registry = Registry::default();
    np.register_metrics(&mut registry);
    np.update_namespace(&namespace("x"));
    np.update_pod(&pod("x", "a", "10.0.1.1", "n1", &[("http", 8080)]));
    np.update_pod(&pod("x", "b", "10.0.1.2", "n1", &[]));
    np.update_pod(&pod("x", "c", "10.0.1.3", "n2", &[]));
    np.update_policy(&from_b_only());
    // Not synced yet: the model is empty and allows everything.
    assert!(np.allows_ingress(ip("10.0.1.3"), addr("10.0.1.1:8080"), Protocol::Tcp));
    let report = np.sync().expect("sync");
    assert!(report.rebuilt);
    assert!(report.transaction.is_none(), "in-process only");
    assert_eq!(np.health(), NetpolHealth::Ok);
    assert!(np.allows_ingress(ip("10.0.1.2"), addr("10.0.1.1:8080"), Protocol::Tcp));
    assert!(!np.allows_ingress(ip("10.0.1.3"), addr("10.0.1.1:8080"), Protocol::Tcp));
    assert!(!np.allows_ingress(ip("10.0.1.2"), addr("10.0.1.1:9090"), Protocol::Tcp));
    assert!(np.allows_ingress(ip("192.168.0.10"), addr("10.0.1.1:9090"), Protocol::Tcp), "node");
    assert!(
        np.allows_egress(ip("10.0.1.1"), addr("10.0.1.3:80"), Protocol::Tcp),
        "no egress policy"
    );

    // Nothing policies see changed: no rebuild.
    let mut relabelled = pod("x", "b", "10.0.1.2", "n1", &[]);
    np.update_pod(&relabelled);
    assert!(!np.sync().expect("sync").rebuilt);
    // A label change is seen.
    relabelled.metadata.labels = Some([("pod".to_string(), "z".to_string())].into());
    np.update_pod(&relabelled);
    assert!(np.sync().expect("sync").rebuilt);
    assert!(!np.allows_ingress(ip("10.0.1.2"), addr("10.0.1.1:8080"), Protocol::Tcp));

    np.delete_policy(&from_b_only());
    np.sync().expect("sync");
    assert!(np.allows_ingress(ip("10.0.1.3"), addr("10.0.1.1:8080"), Protocol::Tcp));

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("skiff_netpol_denied_connections_total{direction=\"ingress\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("skiff_netpol_denied_connections_total{direction=\"egress\"} 0"),
        "{text}"
    );
    assert!(text.contains("skiff_netpol_policies 0"), "{text}");
    assert!(text.contains("skiff_netpol_sync_duration_seconds_count 4"), "{text}");
}

#[test]
fn new_should_refuse_a_bad_cidr() {
    let mut opts = NetpolOptions::new("n1");
    opts.oci_pod_cidr = Some("10.0.0.0/40".into());
    let err = NetworkPolicies::new(opts).err().expect("refused");
    assert!(err.to_string().starts_with("invalid OCI pod CIDR"), "{err}");
}

#[tokio::test]
async fn wait_until_synced_should_return_after_the_first_sync() {
    let np = Arc::new(in_process());
    let waiter = tokio::spawn({
        let np = np.clone();
        async move { np.wait_until_synced().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    np.sync().expect("sync");
    tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("in time").expect("task");
}

/// Pods x/a, x/b, x/c on node n1 at 10.0.1.1-3 (addresses on `lo`, reached through the output
/// and input hooks as Wasm pods' are), TCP listeners on b:8080 and c:8081, and the engine.
fn lab(table: &str) -> (NetworkPolicies, Vec<TcpListener>) {
    for a in ["10.0.1.1", "10.0.1.2", "10.0.1.3"] {
        run("ip", &["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    // Connections complete in the listen backlog: nobody needs to accept them.
    let listeners = vec![
        TcpListener::bind("10.0.1.2:8080").expect("listen b"),
        TcpListener::bind("10.0.1.3:8081").expect("listen c"),
    ];
    let mut opts = NetpolOptions::new("n1");
    opts.table = table.into();
    let np = NetworkPolicies::new(opts).expect("options");
    np.update_namespace(&namespace("x"));
    np.update_pod(&pod("x", "a", "10.0.1.1", "n1", &[]));
    np.update_pod(&pod("x", "b", "10.0.1.2", "n1", &[("http", 8080)]));
    np.update_pod(&pod("x", "c", "10.0.1.3", "n1", &[("alt", 8081)]));
    (np, listeners)
}

#[test]
fn nftables_should_enforce_policies_and_lift_them_within_a_second() {
    in_netns(|| {
        let (np, _listeners) = lab("netpol-test");
        assert!(matches!(np.health(), NetpolHealth::Unavailable(_)), "before the first sync");
        let first = np.sync().expect("first sync");
        assert!(first.transaction.expect("sent").full);
        assert_eq!(np.health(), NetpolHealth::Ok);
        assert!(connects("10.0.1.1", addr("10.0.1.2:8080")), "no policy: open");

        np.update_policy(&policy(
            "x",
            "b-from-c",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}],
                                "ports": [{"port": "http"}]}]}),
        ));
        let tx = np.sync().expect("sync").transaction.expect("sent");
        assert!(!tx.full);
        assert_eq!(tx.pods_changed, 1, "only b's chain: {}", tx.text);
        assert!(!connects("10.0.1.1", addr("10.0.1.2:8080")), "a is not allowed in");
        assert!(connects("10.0.1.3", addr("10.0.1.2:8080")), "c is");
        assert!(connects("127.0.0.1", addr("10.0.1.2:8080")), "the node is");
        assert!(connects("10.0.1.2", addr("10.0.1.2:8080")), "b itself is");

        // The peer set changes in place: a joins c's label.
        np.update_pod(&{
            let mut a = pod("x", "a", "10.0.1.1", "n1", &[]);
            a.metadata.labels = Some([("pod".to_string(), "c".to_string())].into());
            a
        });
        np.sync().expect("sync");
        assert!(connects("10.0.1.1", addr("10.0.1.2:8080")), "a now matches");
        np.update_pod(&pod("x", "a", "10.0.1.1", "n1", &[]));
        np.sync().expect("sync");
        assert!(!connects("10.0.1.1", addr("10.0.1.2:8080")), "a no longer matches");

        // Egress at the source: a may reach c's alt port only.
        np.update_policy(&policy(
            "x",
            "a-egress",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.2/32"]}}],
                               "ports": [{"port": "alt"}]}]}),
        ));
        np.sync().expect("sync");
        assert!(connects("10.0.1.1", addr("10.0.1.3:8081")), "named port of c, in the block");
        assert!(!connects("10.0.1.1", addr("10.0.1.2:8080")), "excepted");
        assert!(connects("10.0.1.2", addr("10.0.1.3:8081")), "b has no egress policy");

        // Lifting both: in force on new connections within a second of the change.
        np.delete_policy(&policy("x", "b-from-c", json!({})));
        np.delete_policy(&policy("x", "a-egress", json!({})));
        let changed = Instant::now();
        np.sync().expect("sync");
        while !connects("10.0.1.1", addr("10.0.1.2:8080")) {
            assert!(changed.elapsed() < Duration::from_secs(1), "still denied after 1 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let listing = run("nft", &["list", "table", "inet", "netpol-test"]);
        assert!(!listing.contains("chain pod-"), "no pod chain left:\n{listing}");
        assert!(!listing.contains("set pod-"), "no pod set left:\n{listing}");
    });
}

#[test]
fn nftables_should_keep_established_connections_and_recreate_the_table_on_restart() {
    in_netns(|| {
        let (np, listeners) = lab("netpol-restart");
        np.sync().expect("first sync");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let mut stream = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(addr("10.0.1.1:0")).expect("bind");
            s.connect(addr("10.0.1.2:8080")).await.expect("connect")
        });
        np.update_policy(&policy("x", "deny", json!({"podSelector": {}})));
        np.sync().expect("sync");
        assert!(!connects("10.0.1.1", addr("10.0.1.2:8080")), "new connections are denied");
        // The connection opened before still carries data both ways.
        let (mut server, _) = listeners[0].accept().expect("accept");
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            stream.write_all(b"ping").await.expect("write");
        });
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut server, &mut buf).expect("read");
        std::io::Write::write_all(&mut server, b"pong").expect("reply");
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).await.expect("read reply");
            assert_eq!(&reply, b"pong");
        });

        // A new engine (a restarted node) on a table holding stale chains starts afresh.
        run("nft", &["add", "chain", "inet", "netpol-restart", "stale"]);
        let (np2, _more) = {
            let mut opts = NetpolOptions::new("n1");
            opts.table = "netpol-restart".into();
            (NetworkPolicies::new(opts).expect("options"), ())
        };
        for p in [("a", "10.0.1.1"), ("b", "10.0.1.2"), ("c", "10.0.1.3")] {
            np2.update_pod(&pod("x", p.0, p.1, "n1", &[]));
        }
        np2.sync().expect("sync");
        let listing = run("nft", &["list", "table", "inet", "netpol-restart"]);
        assert!(!listing.contains("stale"), "{listing}");
        assert!(connects("10.0.1.1", addr("10.0.1.2:8080")), "no policy known to np2");
        drop(np);
        nft::delete_table("netpol-restart").expect("delete");
        nft::delete_table("netpol-restart").expect("absent is fine");
    });
}

/// OCI pods in namespaces of their own, wired by veth pairs and routed by the node: their
/// traffic crosses the forward hook (pod to pod) and the input hook (pod to a Wasm pod).
#[test]
fn nftables_should_filter_routed_oci_pods_and_leave_wasm_pods_to_the_runtime() {
    use super::testutil::{PodNetns, wire_pod};
    in_netns(|| {
        run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let (p1, p2) = (PodNetns::new(), PodNetns::new());
        wire_pod(&p1, "p1", "10.244.0.11", "10.244.0.1");
        wire_pod(&p2, "p2", "10.244.1.12", "10.244.1.1");
        // The Wasm pod: an address routed locally, listeners in the node process.
        run("ip", &["addr", "add", "10.244.2.5/32", "dev", "lo"]);
        let _wasm = [
            TcpListener::bind("10.244.2.5:8081").expect("listen"),
            TcpListener::bind("10.244.2.5:8082").expect("listen"),
        ];
        let _server = p2.exec(|| TcpListener::bind("10.244.1.12:8080").expect("listen"));

        let mut opts = NetpolOptions::new("n1");
        opts.table = "netpol-routed".into();
        opts.oci_pod_cidr = Some("10.244.0.0/23".into());
        let np = NetworkPolicies::new(opts).expect("options");
        np.update_namespace(&namespace("x"));
        np.update_pod(&pod("x", "p1", "10.244.0.11", "n1", &[]));
        np.update_pod(&pod("x", "p2", "10.244.1.12", "n1", &[]));
        np.update_pod(&pod("x", "w", "10.244.2.5", "n1", &[("metrics", 8081)]));
        np.sync().expect("sync");
        let p1_connects = |to: &'static str| p1.exec(move || connects("10.244.0.11", addr(to)));
        assert!(p1_connects("10.244.1.12:8080"), "routed, no policy");
        assert!(p1_connects("10.244.2.5:8082"), "to the Wasm pod, no policy");

        np.update_policy(&policy(
            "x",
            "p2-from-w",
            json!({"podSelector": {"matchLabels": {"pod": "p2"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "w"}}}]}]}),
        ));
        np.update_policy(&policy(
            "x",
            "p1-to-metrics",
            json!({"podSelector": {"matchLabels": {"pod": "p1"}}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"port": "metrics"}]}]}),
        ));
        np.update_policy(&policy(
            "x",
            "w-deny",
            json!({"podSelector": {"matchLabels": {"pod": "w"}}}),
        ));
        np.sync().expect("sync");
        assert!(!p1_connects("10.244.1.12:8080"), "forward hook: p2 admits w only");
        assert!(connects("10.244.2.5", addr("10.244.1.12:8080")), "output hook: w is admitted");
        assert!(connects("10.244.1.1", addr("10.244.1.12:8080")), "the node is admitted");
        assert!(p1_connects("10.244.2.5:8081"), "input hook: p1 may reach w's metrics port");
        assert!(!p1_connects("10.244.2.5:8082"), "input hook: but no other port");
        // w is outside the OCI range: its ingress is the Wasm runtime's to check.
        assert!(!np.allows_ingress(ip("10.244.0.11"), addr("10.244.2.5:8081"), Protocol::Tcp));
        let listing = run("nft", &["list", "table", "inet", "netpol-routed"]);
        assert!(!listing.contains("pod-ingress-10.244.2.5"), "{listing}");

        np.delete_policy(&policy("x", "p2-from-w", json!({})));
        np.delete_policy(&policy("x", "p1-to-metrics", json!({})));
        let changed = Instant::now();
        np.sync().expect("sync");
        while !p1_connects("10.244.1.12:8080") {
            assert!(changed.elapsed() < Duration::from_secs(1), "still denied after 1 s");
        }
    });
}

#[tokio::test]
async fn run_should_follow_the_informers_within_a_second() {
    let ns = json!({"metadata": {"name": "x", "labels": {"ns": "x"}, "resourceVersion": "1"}});
    let pods: Vec<serde_json::Value> = [("a", "10.0.1.1"), ("b", "10.0.1.2")]
        .iter()
        .map(|(name, ip)| serde_json::to_value(pod("x", name, ip, "n1", &[])).expect("json"))
        .collect();
    let api = FakeApi::default().with("namespaces", vec![ns]).with("pods", pods);
    let np = Arc::new(in_process());
    let task = tokio::spawn(np.clone().run(api.client()));
    tokio::time::timeout(Duration::from_secs(5), np.wait_until_synced()).await.expect("synced");
    let (a, b) = (ip("10.0.1.1"), addr("10.0.1.2:80"));
    assert!(np.allows_ingress(a, b, Protocol::Tcp));
    // Informers watch from now on; wait for the policy watch before telling it anything.
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.watches("networkpolicies") == 0 {
        assert!(Instant::now() < deadline, "no policy watch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut deny =
        serde_json::to_value(policy("x", "deny", json!({"podSelector": {}}))).expect("json");
    deny["metadata"]["resourceVersion"] = json!("2");
    api.send("networkpolicies", "ADDED", deny.clone());
    let told = Instant::now();
    while np.allows_ingress(a, b, Protocol::Tcp) {
        assert!(told.elapsed() < Duration::from_secs(1), "policy not in force after 1 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    deny["metadata"]["resourceVersion"] = json!("3");
    api.send("networkpolicies", "DELETED", deny);
    let told = Instant::now();
    while !np.allows_ingress(a, b, Protocol::Tcp) {
        assert!(told.elapsed() < Duration::from_secs(1), "policy still in force after 1 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
}
