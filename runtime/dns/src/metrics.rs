//! The server's Prometheus metrics under CoreDNS's names and labels, so CoreDNS dashboards and
//! alerts work unchanged. Every series a listener can touch is created when it starts and held
//! by handle: a query counts itself with array indexing, no label hashing and no lock.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The `type` label's values (CoreDNS counts types outside its list as `other`).
const TYPES: [&str; 12] =
    ["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "ANY", "HTTPS", "other"];
const RCODES: [&str; 7] =
    ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"];
/// The server block's zone: Skiff serves one block, `.` (as the default Corefile).
const ZONE: &str = ".";

pub(crate) fn type_index(t: RecordType) -> usize {
    match t {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::CNAME => 2,
        RecordType::MX => 3,
        RecordType::NS => 4,
        RecordType::PTR => 5,
        RecordType::SOA => 6,
        RecordType::SRV => 7,
        RecordType::TXT => 8,
        RecordType::ANY => 9,
        RecordType::HTTPS => 10,
        _ => 11,
    }
}

/// The "other" type, for packets whose question could not be read.
pub(crate) const OTHER_TYPE: usize = 11;

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}

/// The metric families, shared by every listener of a [`crate::ClusterDns`].
#[derive(Clone)]
pub(crate) struct Metrics {
    requests: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    forwards: Family<Labels, Counter>,
    panics: Counter,
}

fn duration_histogram() -> Histogram {
    // CoreDNS's buckets: 0.25 ms doubling 16 times.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            requests: Family::default(),
            responses: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            forwards: Family::default(),
            panics: Counter::default(),
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            self.requests.clone(),
        );
        registry.register(
            "coredns_dns_responses",
            "Counter of response status codes.",
            self.responses.clone(),
        );
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            self.durations.clone(),
        );
        registry.register(
            "coredns_forward_requests",
            "Counter of requests made per upstream.",
            self.forwards.clone(),
        );
        registry.register(
            "coredns_panics",
            "A metrics that counts the number of panics.",
            self.panics.clone(),
        );
    }

    /// Handles on every series of the listener `server` (`dns://ADDR`).
    pub(crate) fn listener(
        &self,
        server: &str,
        upstreams: &[std::net::SocketAddr],
    ) -> ListenerMetrics {
        let mut requests = Vec::new();
        for proto in ["udp", "tcp"] {
            for family in ["1", "2"] {
                for t in TYPES {
                    let labels = vec![
                        ("server", server.to_string()),
                        ("zone", ZONE.to_string()),
                        ("proto", proto.to_string()),
                        ("family", family.to_string()),
                        ("type", t.to_string()),
                    ];
                    requests.push(self.requests.get_or_create(&labels).clone());
                }
            }
        }
        let responses = RCODES
            .iter()
            .map(|r| {
                let labels = vec![
                    ("server", server.to_string()),
                    ("zone", ZONE.to_string()),
                    ("rcode", r.to_string()),
                ];
                self.responses.get_or_create(&labels).clone()
            })
            .collect();
        let durations = TYPES
            .iter()
            .map(|t| {
                let labels = vec![
                    ("server", server.to_string()),
                    ("zone", ZONE.to_string()),
                    ("type", t.to_string()),
                ];
                self.durations.get_or_create(&labels).clone()
            })
            .collect();
        let forwards = upstreams
            .iter()
            .map(|u| self.forwards.get_or_create(&vec![("to", u.to_string())]).clone())
            .collect();
        ListenerMetrics { requests, responses, durations, forwards, panics: self.panics.clone() }
    }
}

/// One listener's series.
pub(crate) struct ListenerMetrics {
    /// proto × family × type.
    requests: Vec<Counter>,
    responses: Vec<Counter>,
    durations: Vec<Histogram>,
    /// Per upstream, in the configured order.
    forwards: Vec<Counter>,
    panics: Counter,
}

impl ListenerMetrics {
    pub(crate) fn request(&self, tcp: bool, ipv6: bool, type_index: usize) {
        let i = (usize::from(tcp) * 2 + usize::from(ipv6)) * TYPES.len() + type_index;
        if let Some(c) = self.requests.get(i) {
            c.inc();
        }
    }

    pub(crate) fn response(&self, rcode: ResponseCode, type_index: usize, seconds: f64) {
        if let Some(c) = self.responses.get(rcode_index(rcode)) {
            c.inc();
        }
        if let Some(h) = self.durations.get(type_index) {
            h.observe(seconds);
        }
    }

    pub(crate) fn forward(&self, upstream: usize) {
        if let Some(c) = self.forwards.get(upstream) {
            c.inc();
        }
    }

    pub(crate) fn panic(&self) {
        self.panics.inc();
    }
}
