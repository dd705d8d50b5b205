//! The server over real loopback sockets (port 0), the decoder under garbage, and the pods'
//! search path.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::*;
use crate::metrics::Metrics;
use crate::server::{Handler, Outcome, Transport};
use crate::test_objects::{Ep, cluster_ip, external, headless, slice};

const ANSWER_WAIT: Duration = Duration::from_secs(5);

fn options() -> DnsOptions {
    DnsOptions {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        udp_sockets: 2,
        ..Default::default()
    }
}

fn feed(records: &Records) {
    records.upsert_service(&cluster_ip("default", "web", &["10.96.0.10"], &[("http", "TCP", 80)]));
    records.upsert_service(&headless("default", "db", &[("pg", "TCP", 5432)]));
    records.upsert_endpoint_slice(&slice(
        "default",
        "db-1",
        "db",
        &[("10.1.0.1", Some("db-0"), true), ("10.1.0.2", Some("db-1"), true)],
        &[("pg", "TCP", 5432)],
    ));
    records.upsert_service(&external("default", "ext", "example.com"));
    // Enough endpoints that the A answer exceeds 512 bytes.
    records.upsert_service(&headless("default", "big", &[]));
    let addrs: Vec<String> = (1..=60).map(|i| format!("10.9.0.{i}")).collect();
    let eps: Vec<Ep<'_>> = addrs.iter().map(|a| (a.as_str(), None, true)).collect();
    records.upsert_endpoint_slice(&slice("default", "big-1", "big", &eps, &[]));
}

fn started(options: DnsOptions) -> (Arc<ClusterDns>, SocketAddr) {
    let dns = ClusterDns::new(options).expect("dns");
    feed(dns.records());
    let addrs = dns.listen().expect("listen");
    assert_eq!(dns.bound_addrs(), addrs);
    (dns, addrs[0])
}

fn query_bytes(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

async fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(packet, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(ANSWER_WAIT, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("a valid answer")
}

async fn udp_query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> Message {
    udp_exchange(server, &query_bytes(name, qtype, edns)).await
}

async fn tcp_query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let packet = query_bytes(name, qtype, None);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.expect("connect");
        stream.write_all(&(packet.len() as u16).to_be_bytes()).await.expect("write");
        stream.write_all(&packet).await.expect("write");
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.expect("read message");
        Message::from_vec(&buf).expect("a valid answer")
    };
    tokio::time::timeout(ANSWER_WAIT, exchange).await.expect("an answer in time")
}

fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn is_soa(m: &Message) -> bool {
    m.authorities.len() == 1 && matches!(m.authorities[0].data, RData::SOA(_))
}

#[tokio::test]
async fn server_should_answer_a_with_authority_over_udp_and_tcp() {
    let (_dns, addr) = started(options());
    for m in [
        udp_query(addr, "web.default.svc.cluster.local.", RecordType::A, None).await,
        tcp_query(addr, "web.default.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert_eq!(addrs(&m), ["10.96.0.10"]);
        assert_eq!(m.answers[0].ttl, 5);
    }
}

#[tokio::test]
async fn server_should_answer_srv_cname_ptr_and_pods() {
    let (_dns, addr) = started(options());
    let m = udp_query(addr, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV, None).await;
    let mut targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{} {}", s.port, s.target)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        ["5432 db-0.db.default.svc.cluster.local.", "5432 db-1.db.default.svc.cluster.local."]
    );
    assert_eq!(m.additionals.len(), 2);

    let m = udp_query(addr, "ext.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(
        m.answers[0].data,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(
            Name::from_ascii("example.com.").expect("name")
        ))
    );

    let m = udp_query(addr, "2.0.1.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert!(m.metadata.authoritative);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(hickory_proto::rr::rdata::PTR(
            Name::from_ascii("db-1.db.default.svc.cluster.local.").expect("name")
        ))
    );

    let m = udp_query(addr, "db-1.db.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(addrs(&m), ["10.1.0.2"]);

    let m = udp_query(addr, "10-244-0-5.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(addrs(&m), ["10.244.0.5"]);
}

#[tokio::test]
async fn server_should_answer_nxdomain_and_nodata_with_the_soa() {
    let (_dns, addr) = started(options());
    let m = udp_query(addr, "nope.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative && m.answers.is_empty() && is_soa(&m));

    let m = udp_query(addr, "web.default.svc.cluster.local.", RecordType::AAAA, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.answers.is_empty() && is_soa(&m));

    // Outside the zone with no upstream: NXDOMAIN at once, not authoritative.
    let m = udp_query(addr, "example.com.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!m.metadata.authoritative);
}

#[tokio::test]
async fn server_should_truncate_over_udp_and_answer_in_full_over_tcp() {
    let (_dns, addr) = started(options());
    let name = "big.default.svc.cluster.local.";
    let m = udp_query(addr, name, RecordType::A, None).await;
    assert!(m.metadata.truncation, "60 addresses do not fit 512 bytes");
    assert!(m.answers.is_empty());
    // EDNS0 makes room.
    let m = udp_query(addr, name, RecordType::A, Some(4096)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    assert!(m.edns.is_some());
    // A small EDNS size is raised to 512, not honoured below it: still truncated.
    let m = udp_query(addr, name, RecordType::A, Some(100)).await;
    assert!(m.metadata.truncation);
    let m = tcp_query(addr, name, RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

#[tokio::test]
async fn server_should_forward_other_names_upstream() {
    let upstream =
        ClusterDns::new(DnsOptions { zone: "upstream.test".into(), ..options() }).expect("dns");
    upstream.records().upsert_service(&cluster_ip("ns", "far", &["10.50.0.1"], &[]));
    let up_addr = upstream.listen().expect("listen")[0];
    let dns = ClusterDns::new(DnsOptions { upstreams: vec![up_addr], ..options() }).expect("dns");
    let mut registry = Registry::default();
    dns.register_metrics(&mut registry);
    let addr = dns.listen().expect("listen")[0];
    let m = udp_query(addr, "far.ns.svc.upstream.test.", RecordType::A, None).await;
    assert_eq!(addrs(&m), ["10.50.0.1"]);
    let m = tcp_query(addr, "far.ns.svc.upstream.test.", RecordType::A).await;
    assert_eq!(addrs(&m), ["10.50.0.1"]);
    let m = udp_query(addr, "nope.ns.svc.upstream.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let text = metrics_text(&registry);
    assert!(
        text.contains(&format!("coredns_forward_requests_total{{to=\"{up_addr}\"}} 3")),
        "{text}"
    );
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text
}

#[tokio::test]
async fn server_should_count_requests_in_coredns_names() {
    let dns = ClusterDns::new(options()).expect("dns");
    let mut registry = Registry::default();
    dns.register_metrics(&mut registry);
    feed(dns.records());
    let addr = dns.listen().expect("listen")[0];
    udp_query(addr, "web.default.svc.cluster.local.", RecordType::A, None).await;
    udp_query(addr, "nope.default.svc.cluster.local.", RecordType::A, None).await;
    let text = metrics_text(&registry);
    let server = format!("dns://{addr}");
    for line in [
        format!(
            "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",proto=\"udp\",family=\"1\",type=\"A\"}} 2"
        ),
        format!(
            "coredns_dns_responses_total{{server=\"{server}\",zone=\".\",rcode=\"NXDOMAIN\"}} 1"
        ),
        format!(
            "coredns_dns_request_duration_seconds_count{{server=\"{server}\",zone=\".\",type=\"A\"}} 2"
        ),
        "coredns_panics_total 0".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
}

/// Random bytes, and valid queries with bytes flipped, cut short or counts inflated.
fn garbage(rng: &mut StdRng, valid: &[Vec<u8>]) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => (0..rng.random_range(0..700)).map(|_| rng.random()).collect(),
        1 => {
            let mut p = valid[rng.random_range(0..valid.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..p.len());
                p[i] = rng.random();
            }
            p
        }
        2 => {
            let p = &valid[rng.random_range(0..valid.len())];
            p[..rng.random_range(0..p.len())].to_vec()
        }
        _ => {
            let mut p = valid[rng.random_range(0..valid.len())].clone();
            // Section counts that promise more than the packet holds, or a compression loop.
            let i = rng.random_range(4..12);
            p[i] = 0xff;
            if rng.random_bool(0.5) {
                p.extend_from_slice(&[0xc0, 0x0c, 0xc0, 0x0c]);
            }
            p
        }
    }
}

fn valid_queries() -> Vec<Vec<u8>> {
    vec![
        query_bytes("web.default.svc.cluster.local.", RecordType::A, None),
        query_bytes("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV, Some(1232)),
        query_bytes("2.0.1.10.in-addr.arpa.", RecordType::PTR, None),
        query_bytes("example.com.", RecordType::AAAA, Some(4096)),
    ]
}

#[test]
fn handler_should_never_panic_on_garbage() {
    let records = Arc::new(Records::new("cluster.local", 5).expect("zone"));
    feed(&records);
    let metrics = Metrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let handler = Handler {
        records,
        upstreams: Arc::from(Vec::new()),
        forward_timeout: Duration::from_secs(1),
        metrics: metrics.listener("test", &[]),
        forwards: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let valid = valid_queries();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..20_000 {
        let packet = garbage(&mut rng, &valid);
        let transport = if rng.random_bool(0.5) { Transport::Udp } else { Transport::Tcp };
        if let Outcome::Reply(bytes) = handler.handle_packet(&packet, transport, false) {
            // Whatever we send back is itself a valid message.
            assert!(Message::from_vec(&bytes).is_ok());
        }
    }
    assert!(metrics_text(&registry).contains("coredns_panics_total 0"));
    // Still answers.
    let Outcome::Reply(bytes) = handler.handle_packet(&valid[0], Transport::Udp, false) else {
        panic!("no answer");
    };
    assert_eq!(addrs(&Message::from_vec(&bytes).expect("answer")), ["10.96.0.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_should_keep_serving_after_thousands_of_malformed_packets() {
    let dns = ClusterDns::new(options()).expect("dns");
    let mut registry = Registry::default();
    dns.register_metrics(&mut registry);
    feed(dns.records());
    let addr = dns.listen().expect("listen")[0];
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let valid = valid_queries();
    let mut rng = StdRng::seed_from_u64(42);
    let mut sink = vec![0u8; 65535];
    for i in 0..5_000 {
        let packet = garbage(&mut rng, &valid);
        // An empty datagram is legal to send; the server must shrug it off too.
        let _ = socket.send_to(&packet, addr).await;
        if i % 64 == 0 {
            // Drain replies so our receive buffer never fills; let the server catch up.
            while socket.try_recv_from(&mut sink).is_ok() {}
            tokio::task::yield_now().await;
        }
    }
    let m = udp_query(addr, "web.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(addrs(&m), ["10.96.0.10"]);
    let m = tcp_query(addr, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addrs(&m), ["10.1.0.1"]);
    assert!(metrics_text(&registry).contains("coredns_panics_total 0"));
}

#[tokio::test]
async fn dig_should_get_the_same_answers() {
    let dig = std::process::Command::new("dig").arg("-v").output();
    if dig.is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig (bind9-dnsutils) is required under CI"
        );
        eprintln!("dig not installed: skipped");
        return;
    }
    let (_dns, addr) = started(options());
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("dig");
        cmd.arg(format!("@{}", addr.ip()))
            .arg("-p")
            .arg(addr.port().to_string())
            .args(["+time=2", "+tries=1"])
            .args(args);
        async move {
            let out = cmd.output().await.expect("dig runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert_eq!(run(&["+short", "web.default.svc.cluster.local", "A"]).await.trim(), "10.96.0.10");
    assert_eq!(
        run(&["+short", "+tcp", "db-0.db.default.svc.cluster.local", "A"]).await.trim(),
        "10.1.0.1"
    );
    assert_eq!(run(&["+short", "-x", "10.96.0.10"]).await.trim(), "web.default.svc.cluster.local.");
    // dig retries a truncated answer over TCP on its own.
    let full = run(&["+short", "+noedns", "big.default.svc.cluster.local", "A"]).await;
    assert_eq!(full.lines().count(), 60, "{full}");
    let nx = run(&["nope.default.svc.cluster.local", "A"]).await;
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa rd ra"), "{nx}");
}

#[test]
fn lookup_host_should_follow_the_pod_search_path() {
    let dns = ClusterDns::new(DnsOptions::default()).expect("dns");
    feed(dns.records());
    let ip = |s: &str| vec![s.parse::<IpAddr>().expect("ip")];
    assert_eq!(dns.lookup_host("web", "default"), Some(ip("10.96.0.10")));
    assert_eq!(dns.lookup_host("web.default", "other"), Some(ip("10.96.0.10")));
    assert_eq!(dns.lookup_host("web.default.svc", "other"), Some(ip("10.96.0.10")));
    assert_eq!(dns.lookup_host("web.default.svc.cluster.local", "other"), Some(ip("10.96.0.10")));
    assert_eq!(dns.lookup_host("WEB.default.svc.cluster.local.", "other"), Some(ip("10.96.0.10")));
    // StatefulSet pods' stable names, short and long.
    assert_eq!(dns.lookup_host("db-0.db", "default"), Some(ip("10.1.0.1")));
    assert_eq!(dns.lookup_host("db-1.db.default.svc.cluster.local", "x"), Some(ip("10.1.0.2")));
    assert_eq!(dns.lookup_host("10-244-0-5.default.pod", "x"), Some(ip("10.244.0.5")));
    // In another namespace only by a longer name.
    assert_eq!(dns.lookup_host("web", "other"), None);
    // A cluster name that does not exist vs a name for someone else.
    assert_eq!(dns.lookup_host("nope.default.svc.cluster.local", "default"), Some(vec![]));
    assert_eq!(dns.lookup_host("nope", "default"), None);
    assert_eq!(dns.lookup_host("example.com", "default"), None);
    assert_eq!(dns.lookup_host("example.com.", "default"), None);
    assert_eq!(dns.lookup_host("ext", "default"), None);
    assert_eq!(dns.lookup_host("10.1.2.3", "default"), Some(ip("10.1.2.3")));
}
