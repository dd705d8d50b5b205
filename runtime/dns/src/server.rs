//! The DNS listeners: UDP and TCP on each listen address, answering from [`Records`] and
//! forwarding other names to the upstream resolvers (CoreDNS's `kubernetes` then `forward`).
//!
//! UDP is the hot path and is served by our own loops: several `SO_REUSEPORT` sockets per
//! address, each a task that receives, answers in place and sends, with no task spawned and no
//! channel crossed per query (hickory-server's UDP path spawns a task per query and funnels
//! every reply through one channel to one socket). Only forwarded queries get a task of their
//! own, so a slow upstream never holds up cluster names. TCP, where framing and idle timeouts
//! matter more than speed, is hickory-server's [`hickory_server::Server`] with our handler.
//!
//! A packet never stops a listener: the answer step is pure and runs under `catch_unwind`
//! (counted in `coredns_panics_total`), and every decode error is a FORMERR or a drop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::DNSClass;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::metrics::{ListenerMetrics, OTHER_TYPE, type_index};
use crate::records::{Lookup, Records};

/// Largest UDP answer without EDNS (RFC 1035).
const PLAIN_UDP_MAX: usize = 512;
/// Largest UDP answer whatever a client advertises (CoreDNS's cap).
const EDNS_UDP_MAX: u16 = 4096;
/// What we advertise in our OPT record (the DNS flag day 2020 value).
const ADVERTISED_PAYLOAD: u16 = 1232;
/// How long a TCP connection may stay idle (CoreDNS's read timeout).
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// What to do with a received packet.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply(Vec<u8>),
    /// Not ours: ask the upstreams (the request's type index, for the metrics).
    Forward(usize),
    Drop,
}

/// Answers packets for one listener. Shared by its UDP loops and its TCP server.
pub(crate) struct Handler {
    pub(crate) records: Arc<Records>,
    pub(crate) upstreams: Arc<[SocketAddr]>,
    pub(crate) forward_timeout: Duration,
    pub(crate) metrics: ListenerMetrics,
    /// Forwarded queries in flight (CoreDNS's `max_concurrent`): beyond it, REFUSED at once
    /// rather than a pile of tasks waiting on a slow upstream.
    pub(crate) forwards: Arc<tokio::sync::Semaphore>,
}

/// The bound on forwarded queries in flight (CoreDNS's `max_concurrent` is unset by default;
/// a node-local server should not let a dead upstream pile up tasks).
pub(crate) const MAX_CONCURRENT_FORWARDS: usize = 1000;

/// The id, flags and question count of a packet that could not be decoded, if its header can.
fn header_of(packet: &[u8]) -> Option<Header> {
    Header::read(&mut BinDecoder::new(packet)).ok()
}

fn encode(msg: &Message) -> Option<Vec<u8>> {
    msg.to_vec().ok()
}

fn error_reply(request: &Metadata, rcode: ResponseCode) -> Option<Vec<u8>> {
    let mut msg = Message::error_msg(request.id, request.op_code, rcode);
    msg.metadata.recursion_desired = request.recursion_desired;
    msg.metadata.recursion_available = true;
    encode(&msg)
}

impl Handler {
    /// Answer one packet: pure apart from the metrics; never panics on any input (a panic
    /// in the answer code is caught and the packet dropped).
    pub(crate) fn handle_packet(&self, packet: &[u8], transport: Transport, ipv6: bool) -> Outcome {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.answer_packet(packet, transport, ipv6, start)
        }));
        outcome.unwrap_or_else(|_| {
            self.metrics.panic();
            Outcome::Drop
        })
    }

    fn answer_packet(
        &self,
        packet: &[u8],
        transport: Transport,
        ipv6: bool,
        start: Instant,
    ) -> Outcome {
        let tcp = transport == Transport::Tcp;
        // Shorter than a header, or a response (never answer those: reflection loops).
        let Some(header) = header_of(packet) else { return Outcome::Drop };
        if header.metadata.message_type == MessageType::Response {
            return Outcome::Drop;
        }
        let reply = |rcode: ResponseCode, type_index: usize, bytes: Option<Vec<u8>>| {
            self.metrics.response(rcode, type_index, start.elapsed().as_secs_f64());
            bytes.map_or(Outcome::Drop, Outcome::Reply)
        };
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.request(tcp, ipv6, OTHER_TYPE);
                let bytes = error_reply(&header.metadata, ResponseCode::FormErr);
                return reply(ResponseCode::FormErr, OTHER_TYPE, bytes);
            }
        };
        let [query] = request.queries.as_slice() else {
            self.metrics.request(tcp, ipv6, OTHER_TYPE);
            let bytes = error_reply(&request.metadata, ResponseCode::FormErr);
            return reply(ResponseCode::FormErr, OTHER_TYPE, bytes);
        };
        let qtype = query.query_type();
        let ti = type_index(qtype);
        self.metrics.request(tcp, ipv6, ti);
        if request.metadata.op_code != OpCode::Query {
            let bytes = error_reply(&request.metadata, ResponseCode::NotImp);
            return reply(ResponseCode::NotImp, ti, bytes);
        }
        let lookup = match query.query_class() {
            DNSClass::IN | DNSClass::ANY => self.records.lookup(query.name(), qtype),
            _ => Lookup::NotOurs,
        };
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.metadata.recursion_available = true;
        response.add_query(query.clone());
        match lookup {
            Lookup::NotOurs if !self.upstreams.is_empty() => return Outcome::Forward(ti),
            Lookup::NotOurs => {
                // No upstream: say so at once rather than let the client time out.
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            Lookup::NxDomain => {
                response.metadata.authoritative = true;
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(self.records.soa());
            }
            Lookup::Found { answers, additionals } => {
                response.metadata.authoritative = true;
                if answers.is_empty() {
                    response.add_authority(self.records.soa());
                }
                response.insert_answers(answers);
                response.insert_additionals(additionals);
            }
        }
        let limit = match (&request.edns, transport) {
            (_, Transport::Tcp) => usize::from(u16::MAX),
            (Some(edns), Transport::Udp) => {
                usize::from(edns.max_payload().clamp(PLAIN_UDP_MAX as u16, EDNS_UDP_MAX))
            }
            (None, Transport::Udp) => PLAIN_UDP_MAX,
        };
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(ADVERTISED_PAYLOAD);
            response.set_edns(edns);
        }
        let rcode = response.metadata.response_code;
        reply(rcode, ti, fit(&mut response, limit))
    }

    /// The answer to a query no cache holds: relayed from the first upstream that answers
    /// in time, SERVFAIL when none does.
    pub(crate) async fn forward(&self, packet: &[u8], ti: usize) -> Option<Vec<u8>> {
        let start = Instant::now();
        let header = header_of(packet)?;
        let client_id = header.metadata.id;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            self.metrics.forward(i);
            // Our own id towards the upstream: a reply must match it, not a guessable copy.
            let id: u16 = rand::random();
            let mut query = packet.to_vec();
            query[..2].copy_from_slice(&id.to_be_bytes());
            let Ok(Some(mut answer)) =
                tokio::time::timeout(self.forward_timeout, exchange(*upstream, &query, id)).await
            else {
                continue;
            };
            answer[..2].copy_from_slice(&client_id.to_be_bytes());
            let rcode =
                header_of(&answer).map_or(ResponseCode::ServFail, |h| h.metadata.response_code);
            self.metrics.response(rcode, ti, start.elapsed().as_secs_f64());
            return Some(answer);
        }
        self.metrics.response(ResponseCode::ServFail, ti, start.elapsed().as_secs_f64());
        error_reply(&header.metadata, ResponseCode::ServFail)
    }

    /// REFUSED, for a query to forward when too many are in flight already.
    pub(crate) fn refuse(&self, packet: &[u8], ti: usize) -> Option<Vec<u8>> {
        let header = header_of(packet)?;
        self.metrics.response(ResponseCode::Refused, ti, 0.0);
        error_reply(&header.metadata, ResponseCode::Refused)
    }

    /// [`Self::handle_packet`] and [`Self::forward`] together, for transports that wait.
    pub(crate) async fn respond(
        &self,
        packet: &[u8],
        transport: Transport,
        ipv6: bool,
    ) -> Option<Vec<u8>> {
        match self.handle_packet(packet, transport, ipv6) {
            Outcome::Reply(bytes) => Some(bytes),
            Outcome::Forward(ti) => {
                let Ok(_permit) = self.forwards.try_acquire() else {
                    return self.refuse(packet, ti);
                };
                self.forward(packet, ti).await
            }
            Outcome::Drop => None,
        }
    }
}

/// Encode `msg` within `limit` bytes: drop the additional section first (allowed without
/// TC), then every record with TC set so the client retries over TCP.
fn fit(msg: &mut Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = encode(msg)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    msg.additionals.clear();
    let bytes = encode(msg)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    msg.answers.clear();
    msg.authorities.clear();
    msg.metadata.truncation = true;
    encode(msg)
}

/// One UDP exchange with an upstream from a fresh ephemeral port.
async fn exchange(upstream: SocketAddr, query: &[u8], id: u16) -> Option<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; usize::from(EDNS_UDP_MAX)];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

/// Serve UDP on `socket` until the task is aborted.
pub(crate) async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "dns: udp receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if src.port() == 0 {
            continue;
        }
        let packet = &buf[..n];
        match handler.handle_packet(packet, Transport::Udp, src.is_ipv6()) {
            Outcome::Reply(bytes) => {
                // A full send buffer or an unreachable client is the client's loss only.
                let _ = socket.send_to(&bytes, src).await;
            }
            Outcome::Forward(ti) => {
                let Ok(permit) = handler.forwards.clone().try_acquire_owned() else {
                    if let Some(bytes) = handler.refuse(packet, ti) {
                        let _ = socket.send_to(&bytes, src).await;
                    }
                    continue;
                };
                let handler = handler.clone();
                let packet = packet.to_vec();
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Some(bytes) = handler.forward(&packet, ti).await {
                        let _ = socket.send_to(&bytes, src).await;
                    }
                    drop(permit);
                });
            }
            Outcome::Drop => {}
        }
    }
}

/// `count` UDP sockets sharing `addr` through `SO_REUSEPORT` (the kernel spreads clients
/// over them), and the address they share (its port chosen by the first when `addr`'s is 0).
pub(crate) fn bind_udp(addr: SocketAddr, count: usize) -> io::Result<(Vec<UdpSocket>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_port(true)?;
        // Room for a burst while the tasks are busy (the kernel caps it at rmem_max).
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("udp socket without an inet address"))?;
        }
        sockets.push(UdpSocket::from_std(socket.into())?);
    }
    Ok((sockets, bound))
}

/// A TCP listener on `addr` (the UDP sockets' address).
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// UDP and TCP on the same address, retrying with another port when `addr`'s is 0 and the
/// port the UDP socket got is taken for TCP.
pub(crate) fn bind_both(
    addr: SocketAddr,
    udp_sockets: usize,
) -> Result<(Vec<UdpSocket>, tokio::net::TcpListener, SocketAddr), ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    let mut attempts = 0;
    loop {
        let (udp, bound) = bind_udp(addr, udp_sockets).map_err(err)?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) if addr.port() == 0 && attempts < 8 => {
                tracing::debug!(error = %e, %bound, "dns: tcp port taken, trying another");
                attempts += 1;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// Starts the TCP side: hickory-server's TCP handling around [`Handler`].
pub(crate) fn serve_tcp(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
) -> hickory_server::Server<TcpHandler> {
    let mut server = hickory_server::Server::new(TcpHandler(handler));
    server.register_listener(listener, TCP_IDLE, 64);
    server
}

/// [`Handler`] as hickory-server's request handler. hickory has decoded the request already;
/// we answer from its raw bytes so TCP and UDP take one path, then hand hickory the message.
pub(crate) struct TcpHandler(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let ipv6 = request.src().is_ipv6();
        let bytes = self.0.respond(request.as_slice(), Transport::Tcp, ipv6).await;
        let message = bytes.and_then(|b| Message::from_vec(&b).ok());
        let failed = || {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        };
        let Some(message) = message else { return failed() };
        let builder = MessageResponseBuilder::new(&request.queries, message.edns.as_ref());
        let response = builder.build(
            message.metadata,
            message.answers.iter(),
            message.authorities.iter(),
            std::iter::empty(),
            message.additionals.iter(),
        );
        response_handle.send_response(response).await.unwrap_or_else(|_| failed())
    }
}
