//! Just enough gRPC (over HTTP/2, via `h2`) and protobuf to speak etcd's v3 API: the handful
//! of messages the benchmark sends, encoded by hand, and the few response fields it reads.
//!
//! Why not the `etcd-client` crate: it generates its code with `prost-build` at build time,
//! which turns on features of `regex`/`either`/`bitflags` in the build-dependency graph that
//! `bindgen` shares, and so rebuilds RocksDB's C++ for every build of the workspace. This
//! module is what kube-apiserver's grpc-go client does on the wire, without the extras
//! (balancer, retries, auth) that a benchmark on loopback does not need.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use h2::RecvStream;
use h2::client::{ResponseFuture, SendRequest};
use http::{HeaderMap, Request, Uri};
use tokio::net::TcpStream;

pub const KV_RANGE: &str = "/etcdserverpb.KV/Range";
pub const KV_TXN: &str = "/etcdserverpb.KV/Txn";
pub const KV_COMPACT: &str = "/etcdserverpb.KV/Compact";
pub const WATCH: &str = "/etcdserverpb.Watch/Watch";
pub const STATUS: &str = "/etcdserverpb.Maintenance/Status";
pub const DEFRAGMENT: &str = "/etcdserverpb.Maintenance/Defragment";

/// One HTTP/2 connection; clones share it and multiplex their calls as streams.
#[derive(Clone)]
pub struct Channel {
    send: SendRequest<Bytes>,
    authority: String,
}

impl Channel {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
        let tcp =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            // Watchers receive far more than they send: large windows keep the server from
            // stalling on flow control (grpc-go's BDP estimation does the same).
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 26)
            .handshake::<_, Bytes>(tcp)
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            // Ends when the server goes away; calls in flight then fail with the cause.
            let _ = connection.await;
        });
        Ok(Channel { send, authority: addr.to_string() })
    }

    async fn open(
        &self,
        path: &str,
        first: &[u8],
        end_of_stream: bool,
    ) -> anyhow::Result<(ResponseFuture, h2::SendStream<Bytes>)> {
        let uri: Uri = format!("http://{}{path}", self.authority).parse()?;
        let request = Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let mut send = self.send.clone().ready().await.context("connection closed")?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(frame(first), end_of_stream)?;
        Ok((response, stream))
    }

    /// A unary call: one request message, one response message.
    pub async fn unary(&self, path: &str, request: &[u8]) -> anyhow::Result<Bytes> {
        let (response, _send) = self.open(path, request, true).await?;
        let mut body = MessageReader::new(response.await?)?;
        let message = body.next().await?.with_context(|| format!("{path}: empty response"))?;
        while body.next().await?.is_some() {}
        Ok(message)
    }

    /// A bidirectional stream opened with its first request message.
    pub async fn bidi(&self, path: &str, first: &[u8]) -> anyhow::Result<BidiStream> {
        let (response, send) = self.open(path, first, false).await?;
        Ok(BidiStream { _send: send, response: Some(response), reader: None })
    }
}

/// A server stream whose request side stays open (closing it would end an etcd watch).
pub struct BidiStream {
    _send: h2::SendStream<Bytes>,
    response: Option<ResponseFuture>,
    reader: Option<MessageReader>,
}

impl BidiStream {
    /// The next message; `None` once the server ended the stream cleanly.
    pub async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        if let Some(response) = self.response.take() {
            self.reader = Some(MessageReader::new(response.await?)?);
        }
        match &mut self.reader {
            Some(reader) => reader.next().await,
            None => bail!("stream already failed"),
        }
    }
}

/// Splits a gRPC response body into messages and checks `grpc-status` at the end.
struct MessageReader {
    body: RecvStream,
    buf: BytesMut,
    done: bool,
}

impl MessageReader {
    fn new(response: http::Response<RecvStream>) -> anyhow::Result<MessageReader> {
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            bail!("HTTP status {}", parts.status);
        }
        // A "trailers-only" response carries the error status in its headers.
        check_status(&parts.headers)?;
        Ok(MessageReader { body, buf: BytesMut::new(), done: false })
    }

    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 5 {
                if self.buf[0] != 0 {
                    bail!("compressed gRPC message (not negotiated)");
                }
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            if self.done {
                if !self.buf.is_empty() {
                    bail!("stream ended inside a message");
                }
                return Ok(None);
            }
            match self.body.data().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.body.flow_control().release_capacity(chunk.len())?;
                    self.buf.extend_from_slice(&chunk);
                }
                None => {
                    self.done = true;
                    if let Some(trailers) = self.body.trailers().await? {
                        check_status(&trailers)?;
                    }
                }
            }
        }
    }
}

fn check_status(headers: &HeaderMap) -> anyhow::Result<()> {
    match headers.get("grpc-status").map(|v| v.to_str().unwrap_or("?")) {
        None | Some("0") => Ok(()),
        Some(code) => {
            let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
            bail!("gRPC status {code}: {message}")
        }
    }
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// Protobuf encoding of the requests (field numbers from etcd's `rpc.proto` / `kv.proto`).
pub mod request {
    fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
        varint(buf, u64::from(field) << 3);
        varint(buf, v);
    }

    fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(buf, (u64::from(field) << 3) | 2);
        varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }

    /// The end of the key range that holds exactly the keys starting with `prefix`.
    fn prefix_end(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0] // every key
    }

    /// `RangeRequest` for one key (linearizable: etcd's default).
    pub fn get(key: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(key.len() + 4);
        bytes(&mut m, 1, key);
        m
    }

    fn put_op(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut put = Vec::with_capacity(key.len() + value.len() + 8);
        bytes(&mut put, 1, key);
        bytes(&mut put, 2, value);
        let mut op = Vec::with_capacity(put.len() + 4);
        bytes(&mut op, 2, &put); // RequestOp.request_put
        op
    }

    /// `TxnRequest`: if `mod_revision(key) == expected` then put, else get the key. With
    /// `expected == 0` this is a create-if-absent. kube-apiserver's create and
    /// GuaranteedUpdate send exactly this.
    pub fn compare_and_put(key: &[u8], value: &[u8], expected: u64) -> Vec<u8> {
        let mut compare = Vec::with_capacity(key.len() + 16);
        // result = EQUAL is the default (0) and so not sent.
        uint(&mut compare, 2, 2); // target = MOD
        bytes(&mut compare, 3, key);
        uint(&mut compare, 6, expected); // mod_revision
        let put = put_op(key, value);
        let mut m = Vec::with_capacity(compare.len() + put.len() + key.len() + 16);
        bytes(&mut m, 1, &compare);
        bytes(&mut m, 2, &put);
        if expected != 0 {
            let mut get_op = Vec::new();
            bytes(&mut get_op, 1, &get(key)); // RequestOp.request_range
            bytes(&mut m, 3, &get_op);
        }
        m
    }

    /// `CompactionRequest` that returns once the compaction is applied to the backend.
    pub fn compact(revision: u64) -> Vec<u8> {
        let mut m = Vec::new();
        uint(&mut m, 1, revision);
        uint(&mut m, 2, 1); // physical
        m
    }

    /// `WatchRequest{create_request}` for every key under `prefix` from `start_revision`
    /// (inclusive), with previous values as kube-apiserver asks for them.
    pub fn watch_prefix(prefix: &[u8], start_revision: u64) -> Vec<u8> {
        let mut create = Vec::new();
        bytes(&mut create, 1, prefix);
        bytes(&mut create, 2, &prefix_end(prefix));
        uint(&mut create, 3, start_revision);
        uint(&mut create, 6, 1); // prev_kv
        let mut m = Vec::with_capacity(create.len() + 4);
        bytes(&mut m, 1, &create);
        m
    }

    /// `StatusRequest` and `DefragmentRequest` are empty.
    pub fn empty() -> Vec<u8> {
        Vec::new()
    }
}

/// Protobuf decoding of the few response fields the benchmark reads.
pub mod response {
    use anyhow::{Context, bail};

    enum Value<'a> {
        Int(u64),
        Bytes(&'a [u8]),
    }

    fn varint(buf: &mut &[u8]) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().context("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }

    fn take<'a>(buf: &mut &'a [u8], n: usize) -> anyhow::Result<&'a [u8]> {
        if buf.len() < n {
            bail!("truncated field");
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }

    /// Calls `f` with every field of `msg` (unknown wire types are an error, as they would be
    /// for any protobuf parser).
    fn each<'a>(
        mut msg: &'a [u8],
        mut f: impl FnMut(u32, Value<'a>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        while !msg.is_empty() {
            let key = varint(&mut msg)?;
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Value::Int(varint(&mut msg)?),
                1 => Value::Int(u64::from_le_bytes(take(&mut msg, 8)?.try_into()?)),
                2 => {
                    let len = varint(&mut msg)? as usize;
                    Value::Bytes(take(&mut msg, len)?)
                }
                5 => Value::Int(u64::from(u32::from_le_bytes(take(&mut msg, 4)?.try_into()?))),
                w => bail!("unsupported wire type {w}"),
            };
            f(field, value)?;
        }
        Ok(())
    }

    fn int_field(msg: &[u8], wanted: u32) -> anyhow::Result<u64> {
        let mut out = 0;
        each(msg, |field, v| {
            if let (true, Value::Int(v)) = (field == wanted, v) {
                out = v;
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn message_field(msg: &[u8], wanted: u32) -> anyhow::Result<Option<&[u8]>> {
        let mut out = None;
        each(msg, |field, v| {
            if let (true, Value::Bytes(b)) = (field == wanted, v) {
                out.get_or_insert(b);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// `ResponseHeader.revision` of any response whose field 1 is the header.
    pub fn revision(msg: &[u8]) -> anyhow::Result<u64> {
        let header = message_field(msg, 1)?.context("response without header")?;
        int_field(header, 3)
    }

    /// `RangeResponse`: the `mod_revision` of the first key, if any.
    pub fn first_mod_revision(msg: &[u8]) -> anyhow::Result<Option<u64>> {
        match message_field(msg, 2)? {
            Some(kv) => Ok(Some(int_field(kv, 3)?)),
            None => Ok(None),
        }
    }

    /// `TxnResponse`: whether the comparison held, and the revision after the txn.
    pub fn txn(msg: &[u8]) -> anyhow::Result<(bool, u64)> {
        Ok((int_field(msg, 2)? != 0, revision(msg)?))
    }

    pub struct Status {
        pub member_id: u64,
        pub leader: u64,
    }

    pub fn status(msg: &[u8]) -> anyhow::Result<Status> {
        let header = message_field(msg, 1)?.context("status without header")?;
        Ok(Status { member_id: int_field(header, 2)?, leader: int_field(msg, 4)? })
    }

    /// What one `WatchResponse` says.
    #[derive(Default)]
    pub struct Watch {
        pub created: bool,
        pub canceled: bool,
        pub cancel_reason: String,
        pub compact_revision: u64,
    }

    /// Decodes a `WatchResponse`, appending the revision of each event to `revisions`.
    pub fn watch(msg: &[u8], revisions: &mut Vec<u64>) -> anyhow::Result<Watch> {
        let mut out = Watch::default();
        each(msg, |field, v| {
            match (field, v) {
                (3, Value::Int(v)) => out.created = v != 0,
                (4, Value::Int(v)) => out.canceled = v != 0,
                (5, Value::Int(v)) => out.compact_revision = v,
                (6, Value::Bytes(b)) => out.cancel_reason = String::from_utf8_lossy(b).into(),
                (11, Value::Bytes(event)) => {
                    // Event.kv.mod_revision: a delete's kv carries the delete's revision.
                    let kv = message_field(event, 2)?.context("watch event without kv")?;
                    revisions.push(int_field(kv, 3)?);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{request, response};

    #[test]
    fn compare_and_put_should_encode_like_protoc() {
        // protoc --encode=etcdserverpb.TxnRequest of
        // compare{target:MOD key:"k" mod_revision:7} success{request_put{key:"k" value:"v"}}
        // failure{request_range{key:"k"}}
        let expected = [
            0x0a, 0x07, 0x10, 0x02, 0x1a, 0x01, b'k', 0x30, 0x07, // compare
            0x12, 0x08, 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // success
            0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'k', // failure
        ];
        assert_eq!(request::compare_and_put(b"k", b"v", 7), expected);
    }

    #[test]
    fn watch_response_should_yield_event_revisions() {
        // header{revision:9} created:true events[{kv{key:"a" mod_revision:8}}]
        let msg = [
            0x0a, 0x02, 0x18, 0x09, 0x18, 0x01, 0x5a, 0x07, 0x12, 0x05, 0x0a, 0x01, b'a', 0x18,
            0x08,
        ];
        let mut revs = Vec::new();
        let w = response::watch(&msg, &mut revs).expect("decodes");
        assert!(w.created);
        assert_eq!(revs, [8]);
        assert_eq!(response::revision(&msg).expect("header"), 9);
    }
}
