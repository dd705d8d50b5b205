//! How a node's in-process guests (Wasm) meet the cluster's Services and names without a
//! kernel hop: the node's proxy and DNS implement [`ServiceDirectory`], the Wasm runtime asks
//! it on every outgoing connection and name lookup of a guest. OCI pods get the same answers
//! from the kernel (nftables) and the cluster DNS server.

use std::net::{IpAddr, SocketAddr};

/// Transport protocol of a connection, as Services name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From a Service or container port's `protocol` (`TCP` when empty, as Kubernetes defaults).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "" | "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Where a new connection to an address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRoute {
    /// The address is not a Service's: connect to it as it is.
    Direct,
    /// A Service's address: connect to this endpoint instead.
    Endpoint(SocketAddr),
    /// A Service's address with no endpoint ready for this client: refuse the connection
    /// (as kube-proxy's reject rule does).
    NoEndpoints,
}

/// The cluster's Services and names as one node sees them. Implementations answer from
/// watch-fed caches: cheap, never blocking, safe to call from any thread.
pub trait ServiceDirectory: Send + Sync + 'static {
    /// The addresses `name` resolves to for a pod in `namespace`, as the cluster DNS answers
    /// that pod (its search path `NS.svc.cluster.local svc.cluster.local cluster.local`, then
    /// the name as written). `None` when the cluster DNS has no answer and the name should be
    /// looked up elsewhere; `Some(empty)` when the name is the cluster's and does not exist.
    fn lookup_host(&self, name: &str, namespace: &str) -> Option<Vec<IpAddr>>;

    /// Where a new connection from `client` (the pod's address) to `dest` goes, chosen as the
    /// node proxy chooses for the kernel: a ready endpoint (or serving-and-terminating when
    /// none is ready), at random or by the client's affinity.
    fn route(&self, client: IpAddr, dest: SocketAddr, protocol: Protocol) -> ServiceRoute;

    /// Whether NetworkPolicy lets the pod at `from` open a connection to `to` (an endpoint,
    /// after Service resolution): the egress half, checked at the source.
    fn allows_egress(&self, _from: IpAddr, _to: SocketAddr, _protocol: Protocol) -> bool {
        true
    }

    /// Whether NetworkPolicy lets `peer` open a connection to the pod at `to`: the ingress
    /// half, checked at the destination.
    fn allows_ingress(&self, _peer: IpAddr, _to: SocketAddr, _protocol: Protocol) -> bool {
        true
    }
}

/// A directory that knows no Services: every address is connected to as it is.
pub struct NoServices;

impl ServiceDirectory for NoServices {
    fn lookup_host(&self, _name: &str, _namespace: &str) -> Option<Vec<IpAddr>> {
        None
    }

    fn route(&self, _client: IpAddr, _dest: SocketAddr, _protocol: Protocol) -> ServiceRoute {
        ServiceRoute::Direct
    }
}
