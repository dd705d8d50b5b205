use hickory_proto::rr::rdata::SRV;

use super::*;
use crate::test_objects::{cluster_ip, external, headless, slice};

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

fn records() -> Records {
    let r = Records::new("cluster.local", 5).expect("zone");
    r.upsert_service(&cluster_ip(
        "default",
        "web",
        &["10.96.0.10"],
        &[("http", "TCP", 80), ("dns", "UDP", 53)],
    ));
    r.upsert_service(&headless("default", "db", &[("pg", "TCP", 5432)]));
    r.upsert_endpoint_slice(&slice(
        "default",
        "db-abc",
        "db",
        &[
            ("10.1.0.1", Some("db-0"), true),
            ("10.1.0.2", Some("db-1"), true),
            ("10.1.0.3", None, true),
            ("10.1.0.4", Some("db-3"), false),
        ],
        &[("pg", "TCP", 5432)],
    ));
    r.upsert_service(&external("default", "ext", "example.com"));
    r
}

fn found(l: Lookup) -> (Vec<Record>, Vec<Record>) {
    match l {
        Lookup::Found { answers, additionals } => (answers, additionals),
        other => panic!("expected records, got {other:?}"),
    }
}

fn ips(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
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

fn srvs(records: &[Record]) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn lookup_should_answer_a_service_cluster_ip() {
    let r = records();
    let (answers, _) = found(r.lookup(&name("web.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.96.0.10"]);
    assert_eq!(answers[0].ttl, 5);
    // Any case; the answer carries the name as asked.
    let asked = name("WeB.Default.SVC.cluster.LOCAL.");
    let (answers, _) = found(r.lookup(&asked, RecordType::A));
    assert_eq!(ips(&answers), ["10.96.0.10"]);
    assert!(answers[0].name.eq_case(&asked));
    // No IPv6 address: NODATA.
    let (answers, _) = found(r.lookup(&name("web.default.svc.cluster.local."), RecordType::AAAA));
    assert!(answers.is_empty());
}

#[test]
fn lookup_should_answer_srv_for_services_and_named_ports() {
    let r = records();
    let (answers, additionals) =
        found(r.lookup(&name("web.default.svc.cluster.local."), RecordType::SRV));
    assert_eq!(
        srvs(&answers),
        [
            (53, "web.default.svc.cluster.local.".to_string()),
            (80, "web.default.svc.cluster.local.".to_string())
        ]
    );
    assert_eq!(ips(&additionals), ["10.96.0.10"]);
    let (answers, _) =
        found(r.lookup(&name("_http._tcp.web.default.svc.cluster.local."), RecordType::SRV));
    assert_eq!(srvs(&answers), [(80, "web.default.svc.cluster.local.".to_string())]);
    match &answers[0].data {
        RData::SRV(s) => {
            assert_eq!(*s, SRV::new(0, 100, 80, name("web.default.svc.cluster.local.")))
        }
        other => panic!("not an SRV: {other:?}"),
    }
    let (answers, _) =
        found(r.lookup(&name("_dns._udp.web.default.svc.cluster.local."), RecordType::SRV));
    assert_eq!(srvs(&answers), [(53, "web.default.svc.cluster.local.".to_string())]);
    // Wrong protocol or unknown port name: no such name.
    assert_eq!(
        r.lookup(&name("_http._udp.web.default.svc.cluster.local."), RecordType::SRV),
        Lookup::NxDomain
    );
    assert_eq!(
        r.lookup(&name("_nope._tcp.web.default.svc.cluster.local."), RecordType::SRV),
        Lookup::NxDomain
    );
    // The empty non-terminal `_tcp.web...` exists.
    let (answers, _) =
        found(r.lookup(&name("_tcp.web.default.svc.cluster.local."), RecordType::SRV));
    assert!(answers.is_empty());
}

#[test]
fn lookup_should_answer_headless_services_with_ready_endpoints() {
    let r = records();
    let (answers, _) = found(r.lookup(&name("db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
    // StatefulSet-style stable names and the dashed form for endpoints without a hostname.
    let (answers, _) = found(r.lookup(&name("db-0.db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.1"]);
    let (answers, _) =
        found(r.lookup(&name("10-1-0-3.db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.3"]);
    // Not ready: not published.
    assert_eq!(
        r.lookup(&name("db-3.db.default.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    // SRV targets are the endpoints' names, their addresses in the additional section.
    let (answers, additionals) =
        found(r.lookup(&name("_pg._tcp.db.default.svc.cluster.local."), RecordType::SRV));
    assert_eq!(
        srvs(&answers),
        [
            (5432, "10-1-0-3.db.default.svc.cluster.local.".to_string()),
            (5432, "db-0.db.default.svc.cluster.local.".to_string()),
            (5432, "db-1.db.default.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(ips(&additionals), ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
    match &answers[0].data {
        RData::SRV(s) => assert_eq!(s.weight, 33),
        other => panic!("not an SRV: {other:?}"),
    }
}

#[test]
fn lookup_should_publish_not_ready_endpoints_when_the_service_asks() {
    let r = records();
    let mut svc = headless("default", "db", &[("pg", "TCP", 5432)]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    r.upsert_service(&svc);
    let (answers, _) = found(r.lookup(&name("db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"]);
    let (answers, _) = found(r.lookup(&name("db-3.db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.4"]);
}

#[test]
fn lookup_should_alias_external_name_services() {
    let r = records();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let (answers, _) = found(r.lookup(&name("ext.default.svc.cluster.local."), qtype));
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].data, RData::CNAME(CNAME(name("example.com."))));
    }
}

#[test]
fn lookup_should_answer_ptr_for_cluster_ips_and_headless_endpoints() {
    let r = records();
    let (answers, _) = found(r.lookup(&name("10.0.96.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(answers[0].data, RData::PTR(PTR(name("web.default.svc.cluster.local."))));
    let (answers, _) = found(r.lookup(&name("1.0.1.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(answers[0].data, RData::PTR(PTR(name("db-0.db.default.svc.cluster.local."))));
    let (answers, _) = found(r.lookup(&name("3.0.1.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(answers[0].data, RData::PTR(PTR(name("10-1-0-3.db.default.svc.cluster.local."))));
    // Unknown addresses fall through (forwarded), as CoreDNS's `fallthrough in-addr.arpa`.
    assert_eq!(r.lookup(&name("9.9.9.9.in-addr.arpa."), RecordType::PTR), Lookup::NotOurs);
    r.upsert_service(&cluster_ip("default", "v6", &["fd00::10"], &[]));
    let v6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    let (answers, _) = found(r.lookup(&name(v6), RecordType::PTR));
    assert_eq!(answers[0].data, RData::PTR(PTR(name("v6.default.svc.cluster.local."))));
}

#[test]
fn lookup_should_answer_pod_names_from_the_name() {
    let r = records();
    let (answers, _) = found(r.lookup(&name("10-244-1-7.any.pod.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.244.1.7"]);
    let (answers, _) = found(r.lookup(&name("fd00--7.any.pod.cluster.local."), RecordType::AAAA));
    assert_eq!(ips(&answers), ["fd00::7"]);
    assert_eq!(
        r.lookup(&name("not-an-ip.any.pod.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn lookup_should_tell_nxdomain_from_nodata() {
    let r = records();
    assert_eq!(r.lookup(&name("nope.default.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    assert_eq!(r.lookup(&name("web.nons.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    assert_eq!(
        r.lookup(&name("a.b.c.d.e.default.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(r.lookup(&name("nope.cluster.local."), RecordType::A), Lookup::NxDomain);
    for exists in
        ["default.svc.cluster.local.", "svc.cluster.local.", "cluster.local.", "pod.cluster.local."]
    {
        let (answers, _) = found(r.lookup(&name(exists), RecordType::A));
        assert!(answers.is_empty(), "{exists}");
    }
    assert_eq!(r.lookup(&name("example.com."), RecordType::A), Lookup::NotOurs);
    assert_eq!(r.lookup(&name("local."), RecordType::A), Lookup::NotOurs);
    let (answers, _) = found(r.lookup(&name("cluster.local."), RecordType::SOA));
    assert!(matches!(answers[0].data, RData::SOA(_)));
}

#[test]
fn updates_should_rebuild_only_what_changed() {
    let r = records();
    // A slice leaves: its endpoints and their reverse names go, the Service stays.
    r.remove_endpoint_slice("default", "db-abc");
    let (answers, _) = found(r.lookup(&name("db.default.svc.cluster.local."), RecordType::A));
    assert!(answers.is_empty());
    assert_eq!(r.lookup(&name("1.0.1.10.in-addr.arpa."), RecordType::PTR), Lookup::NotOurs);
    // A slice that arrives before its Service is kept for it.
    r.upsert_endpoint_slice(&slice("other", "late-1", "late", &[("10.2.0.1", None, true)], &[]));
    assert_eq!(r.lookup(&name("late.other.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    r.upsert_service(&headless("other", "late", &[]));
    let (answers, _) = found(r.lookup(&name("late.other.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.2.0.1"]);
    // A Service leaves: its names, its namespace (its last Service) and its PTR go.
    r.remove_service("default", "web");
    assert_eq!(r.lookup(&name("web.default.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    assert_eq!(r.lookup(&name("10.0.96.10.in-addr.arpa."), RecordType::PTR), Lookup::NotOurs);
    r.remove_service("default", "db");
    r.remove_service("default", "ext");
    assert_eq!(r.lookup(&name("default.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    // A slice relabelled to another Service moves with it.
    r.upsert_service(&headless("other", "b", &[]));
    r.upsert_endpoint_slice(&slice("other", "late-1", "b", &[("10.2.0.1", None, true)], &[]));
    let (answers, _) = found(r.lookup(&name("late.other.svc.cluster.local."), RecordType::A));
    assert!(answers.is_empty());
    let (answers, _) = found(r.lookup(&name("b.other.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.2.0.1"]);
}

#[test]
fn addresses_of_should_follow_aliases_inside_the_zone() {
    let r = records();
    r.upsert_service(&external("default", "alias", "web.default.svc.cluster.local"));
    assert_eq!(
        r.addresses_of(&name("alias.default.svc.cluster.local.")),
        Some(vec!["10.96.0.10".parse().expect("ip")])
    );
    // Out of the zone: for someone else to resolve.
    assert_eq!(r.addresses_of(&name("ext.default.svc.cluster.local.")), None);
    assert_eq!(r.addresses_of(&name("example.com.")), None);
}

#[test]
fn new_should_refuse_an_invalid_zone() {
    assert!(Records::new("", 5).is_err());
    assert!(Records::new("bad..zone", 5).is_err());
    assert_eq!(
        Records::new("Cluster.Local.", 5).expect("zone").zone().to_ascii(),
        "cluster.local."
    );
}

#[test]
fn replace_all_should_drop_what_was_missed() {
    let r = records();
    let web = cluster_ip("default", "web", &["10.96.0.10"], &[]);
    let db = headless("default", "db", &[]);
    let db_slice = slice("default", "db-abc", "db", &[("10.1.0.9", None, true)], &[]);
    r.replace_all([&web, &db], [&db_slice]);
    assert_eq!(r.lookup(&name("ext.default.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    let (answers, _) = found(r.lookup(&name("db.default.svc.cluster.local."), RecordType::A));
    assert_eq!(ips(&answers), ["10.1.0.9"]);
    assert_eq!(r.lookup(&name("1.0.1.10.in-addr.arpa."), RecordType::PTR), Lookup::NotOurs);
}
