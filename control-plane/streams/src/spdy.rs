//! SPDY/3.1 sessions, the multiplexing Kubernetes' streaming subresources use: kubectl speaks
//! it to the api server (plainly, or tunnelled in WebSocket binary messages for
//! port-forward), and container runtimes' streaming servers speak it to the node.
//!
//! A [`Session`] runs two tasks over one byte stream: a reader that parses frames and routes
//! them to their streams, and a writer that owns the header compressor and writes frames in
//! order. Streams are [`AsyncRead`] + [`AsyncWrite`]; shutting one's write side sends FIN.
//! Only what Kubernetes' streams use is implemented: no server push, no priorities, and no
//! flow-control windows (the Go implementation Kubernetes uses neither sends nor enforces
//! them); a stream whose reader stalls holds back the session's reader once its queue is full.
//!
//! The reader never waits for the writer: what it answers itself (SYN_REPLY, RST_STREAM, PING)
//! goes through a control queue the writer serves first, so a writer stuck on a peer that
//! does not read cannot stop this side from reading.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;
const RST_REFUSED: u32 = 3;
/// Largest frame payload accepted (the 24-bit length allows 16 MiB; nobody needs that here).
const MAX_FRAME: usize = 1 << 20;
/// Largest DATA frame sent.
const MAX_DATA: usize = 32 * 1024;
/// Frames queued per stream before the session's reader waits for the stream's reader.
const STREAM_QUEUE: usize = 64;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// A stream's headers, names lower-case, in the order received.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (names are compared case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy: {0}")]
    Io(#[from] io::Error),
    #[error("spdy protocol error: {0}")]
    Protocol(String),
    #[error("spdy: the session is closed")]
    Closed,
    #[error("spdy: the peer refused stream {0}")]
    Refused(u32),
}

/// Which end of the session this is: clients open odd stream ids, servers even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

enum Out {
    Syn { id: u32, headers: Headers, fin: bool },
    Reply { id: u32, headers: Headers, fin: bool },
    Data { id: u32, data: Bytes, fin: bool },
    Rst { id: u32, status: u32 },
    Ping(u32),
    GoAway,
}

struct Slot {
    /// `None` once the peer sent FIN (or reset).
    data: Option<mpsc::Sender<Bytes>>,
    reply: Option<oneshot::Sender<Result<Headers, SpdyError>>>,
}

#[derive(Default)]
struct Streams {
    slots: HashMap<u32, Slot>,
    closed: bool,
}

struct Shared {
    streams: Mutex<Streams>,
    next_id: AtomicU32,
    /// Held while a stream id is taken and its SYN_STREAM queued, so ids go out in order.
    opening: tokio::sync::Mutex<()>,
    /// Set once the transport is done (read side ended or failed).
    closed: tokio::sync::watch::Sender<bool>,
}

/// One end of a SPDY/3.1 session. Cloning gives another handle to the same session; the
/// session ends when the transport does or every handle and stream is dropped.
#[derive(Clone)]
pub struct Session {
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
}

/// A stream of a session.
pub struct Stream {
    id: u32,
    headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
    out: PollSender<Out>,
    write_closed: bool,
    shared: Arc<Shared>,
}

impl Session {
    /// Start a session over `io`; streams the peer opens arrive on the returned receiver
    /// (each already accepted with a SYN_REPLY).
    pub fn start<T>(io: T, role: Role) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(256);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            streams: Mutex::new(Streams::default()),
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            opening: tokio::sync::Mutex::new(()),
            closed: tokio::sync::watch::channel(false).0,
        });
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        tokio::spawn(write_loop(write, out_rx, ctl_rx));
        let reader_shared = shared.clone();
        let reader_out = out_tx.clone();
        tokio::spawn(async move {
            let result = read_loop(read, &reader_shared, &ctl_tx, &reader_out, &incoming_tx).await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "spdy session ended");
            }
            close_all(&reader_shared);
        });
        (Session { out: out_tx, shared }, incoming_rx)
    }

    /// Resolves once the peer has gone (its side of the transport ended).
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// End the session: what is queued is written, then GOAWAY, then the transport is shut.
    pub async fn close(&self) {
        let _ = self.out.send(Out::GoAway).await;
    }

    /// Open a stream with `headers` and wait for the peer's SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let id = {
            let _order = self.shared.opening.lock().await;
            let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
            {
                let mut streams = self.shared.streams.lock().map_err(|_| SpdyError::Closed)?;
                if streams.closed {
                    return Err(SpdyError::Closed);
                }
                streams.slots.insert(id, Slot { data: Some(data_tx), reply: Some(reply_tx) });
            }
            let syn = Out::Syn { id, headers: headers.clone(), fin: false };
            if self.out.send(syn).await.is_err() {
                self.forget(id);
                return Err(SpdyError::Closed);
            }
            id
        };
        match reply_rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.forget(id);
                return Err(e);
            }
            Err(_) => return Err(SpdyError::Closed),
        }
        Ok(Stream::new(id, headers, data_rx, self.out.clone(), self.shared.clone()))
    }

    fn forget(&self, id: u32) {
        if let Ok(mut s) = self.shared.streams.lock() {
            s.slots.remove(&id);
        }
    }
}

impl Stream {
    fn new(
        id: u32,
        headers: Headers,
        rx: mpsc::Receiver<Bytes>,
        out: mpsc::Sender<Out>,
        shared: Arc<Shared>,
    ) -> Self {
        Stream {
            id,
            headers,
            rx,
            pending: Bytes::new(),
            out: PollSender::new(out),
            write_closed: false,
            shared,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers the stream was opened with.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(data) => self.pending = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "spdy session closed")
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_closed {
            return Poll::Ready(Err(closed()));
        }
        ready!(self.out.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_DATA);
        let id = self.id;
        self.out
            .send_item(Out::Data { id, data: Bytes::copy_from_slice(&buf[..n]), fin: false })
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed {
            return Poll::Ready(Ok(()));
        }
        ready!(self.out.poll_reserve(cx)).map_err(|_| closed())?;
        let id = self.id;
        self.out
            .send_item(Out::Data { id, data: Bytes::new(), fin: true })
            .map_err(|_| closed())?;
        self.write_closed = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.streams.lock() {
            s.slots.remove(&self.id);
        }
        // Whatever the peer still sends is dropped; it learns this side is done by FIN (not
        // RST, which would make it discard output it has not read yet).
        if self.write_closed {
            return;
        }
        let Some(out) = self.out.get_ref().cloned() else { return };
        let fin = Out::Data { id: self.id, data: Bytes::new(), fin: true };
        if let Err(mpsc::error::TrySendError::Full(fin)) = out.try_send(fin)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = out.send(fin).await;
            });
        }
    }
}

fn close_all(shared: &Shared) {
    shared.closed.send_replace(true);
    if let Ok(mut s) = shared.streams.lock() {
        s.closed = true;
        for (_, slot) in s.slots.drain() {
            if let Some(reply) = slot.reply {
                let _ = reply.send(Err(SpdyError::Closed));
            }
        }
    }
}

async fn read_exact_or_eof<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        let n = r.read(&mut buf[at..]).await?;
        if n == 0 {
            return if at == 0 {
                Ok(false)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spdy frame cut short"))
            };
        }
        at += n;
    }
    Ok(true)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut read: R,
    shared: &Arc<Shared>,
    ctl: &mpsc::UnboundedSender<Out>,
    out: &mpsc::Sender<Out>,
    incoming: &mpsc::Sender<Stream>,
) -> Result<(), SpdyError> {
    let mut inflate = HeaderDecoder::new();
    let mut head = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        if !read_exact_or_eof(&mut read, &mut head).await? {
            return Ok(());
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::Protocol(format!("frame of {len} bytes")));
        }
        payload.resize(len, 0);
        if len > 0 && !read_exact_or_eof(&mut read, &mut payload).await? {
            return Err(SpdyError::Protocol("frame cut short".into()));
        }
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let data = (len > 0).then(|| Bytes::copy_from_slice(&payload));
            deliver(shared, id, data, flags & FLAG_FIN != 0).await;
            continue;
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("unsupported SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let mut p = &payload[..];
        match kind {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(SpdyError::Protocol("short SYN_STREAM".into()));
                }
                let id = p.get_u32() & 0x7fff_ffff;
                p.advance(6);
                let headers = inflate.decode(p)?;
                let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE);
                let fin = flags & FLAG_FIN != 0;
                let accepted = match shared.streams.lock() {
                    Ok(mut s) if !s.closed => {
                        let data = (!fin).then_some(data_tx);
                        s.slots.insert(id, Slot { data, reply: None });
                        true
                    }
                    _ => false,
                };
                if !accepted {
                    let _ = ctl.send(Out::Rst { id, status: RST_REFUSED });
                    continue;
                }
                let _ = ctl.send(Out::Reply { id, headers: Vec::new(), fin: false });
                let stream = Stream::new(id, headers, data_rx, out.clone(), shared.clone());
                if incoming.send(stream).await.is_err() {
                    // Nobody takes new streams: the stream's drop resets it.
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                if p.len() < 4 {
                    return Err(SpdyError::Protocol("short SYN_REPLY".into()));
                }
                let id = p.get_u32() & 0x7fff_ffff;
                let headers = inflate.decode(p)?;
                if kind == TYPE_SYN_REPLY {
                    let reply =
                        shared.streams.lock().ok().and_then(|mut s| {
                            s.slots.get_mut(&id).and_then(|slot| slot.reply.take())
                        });
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(headers));
                    }
                }
                if flags & FLAG_FIN != 0 {
                    deliver(shared, id, None, true).await;
                }
            }
            TYPE_RST_STREAM => {
                if p.len() < 8 {
                    return Err(SpdyError::Protocol("short RST_STREAM".into()));
                }
                let id = p.get_u32() & 0x7fff_ffff;
                if let Ok(mut s) = shared.streams.lock()
                    && let Some(slot) = s.slots.get_mut(&id)
                {
                    slot.data = None;
                    if let Some(reply) = slot.reply.take() {
                        let _ = reply.send(Err(SpdyError::Refused(id)));
                    }
                }
            }
            TYPE_PING if p.len() >= 4 => {
                let _ = ctl.send(Out::Ping(p.get_u32()));
            }
            TYPE_GOAWAY => return Ok(()),
            TYPE_SETTINGS | TYPE_WINDOW_UPDATE => {}
            _ => {}
        }
    }
}

/// Hand a DATA frame's payload to its stream; FIN ends the stream's read side.
async fn deliver(shared: &Shared, id: u32, data: Option<Bytes>, fin: bool) {
    let sender = shared.streams.lock().ok().and_then(|mut s| {
        let slot = s.slots.get_mut(&id)?;
        if fin { slot.data.take() } else { slot.data.clone() }
    });
    let Some(sender) = sender else { return };
    if let Some(data) = data {
        // A reader that went away just drops what arrives.
        let _ = sender.send(data).await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<Out>,
    mut ctl: mpsc::UnboundedReceiver<Out>,
) {
    let mut deflate = HeaderEncoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut going_away = false;
    loop {
        let first = tokio::select! {
            biased;
            Some(c) = ctl.recv() => c,
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        buf.clear();
        going_away |= matches!(first, Out::GoAway);
        encode(&mut buf, first, &mut deflate);
        // Batch what is already queued into one write.
        while let Ok(c) = ctl.try_recv() {
            encode(&mut buf, c, &mut deflate);
        }
        while buf.len() < 256 * 1024 && !going_away {
            match rx.try_recv() {
                Ok(next) => {
                    going_away |= matches!(next, Out::GoAway);
                    encode(&mut buf, next, &mut deflate);
                }
                Err(_) => break,
            }
        }
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            return;
        }
        if going_away {
            break;
        }
    }
    let _ = write.shutdown().await;
}

fn control(buf: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    buf.put_u16(0x8000 | VERSION);
    buf.put_u16(kind);
    buf.put_u8(flags);
    buf.put_uint(len as u64, 3);
}

fn encode(buf: &mut BytesMut, frame: Out, deflate: &mut HeaderEncoder) {
    match frame {
        Out::Syn { id, headers, fin } => {
            let block = deflate.encode(&headers);
            control(buf, TYPE_SYN_STREAM, if fin { FLAG_FIN } else { 0 }, 10 + block.len());
            buf.put_u32(id);
            buf.put_u32(0);
            buf.put_u16(0);
            buf.put_slice(&block);
        }
        Out::Reply { id, headers, fin } => {
            let block = deflate.encode(&headers);
            control(buf, TYPE_SYN_REPLY, if fin { FLAG_FIN } else { 0 }, 4 + block.len());
            buf.put_u32(id);
            buf.put_slice(&block);
        }
        Out::Data { id, data, fin } => {
            buf.put_u32(id & 0x7fff_ffff);
            buf.put_u8(if fin { FLAG_FIN } else { 0 });
            buf.put_uint(data.len() as u64, 3);
            buf.put_slice(&data);
        }
        Out::Rst { id, status } => {
            control(buf, TYPE_RST_STREAM, 0, 8);
            buf.put_u32(id);
            buf.put_u32(status);
        }
        Out::Ping(id) => {
            control(buf, TYPE_PING, 0, 4);
            buf.put_u32(id);
        }
        Out::GoAway => {
            control(buf, TYPE_GOAWAY, 0, 8);
            buf.put_u32(0);
            buf.put_u32(0);
        }
    }
}

/// Header blocks are compressed with one zlib stream per direction for the whole session,
/// primed with SPDY/3's dictionary.
struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // With the zlib-rs backend this cannot fail before any input.
        let _ = z.set_dictionary(&dictionary());
        HeaderEncoder { z }
    }

    fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.put_u32(k.len() as u32);
            raw.put_slice(k.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.z.total_in();
            if self.z.compress_vec(input, &mut out, FlushCompress::Sync).is_err() {
                break;
            }
            input = &input[(self.z.total_in() - before) as usize..];
            // Sync-flushed output ends once the compressor leaves spare room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

struct HeaderDecoder {
    z: Decompress,
}

impl HeaderDecoder {
    fn new() -> Self {
        HeaderDecoder { z: Decompress::new(true) }
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Protocol("header block too large".into()));
                }
                out.reserve(out.len().max(256));
            }
            let before = self.z.total_in();
            let status = match self.z.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(s) => s,
                Err(e) if e.needs_dictionary().is_some() => {
                    input = &input[(self.z.total_in() - before) as usize..];
                    self.z.set_dictionary(&dictionary()).map_err(|e| {
                        SpdyError::Protocol(format!("header dictionary rejected: {e}"))
                    })?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Protocol(format!("header block: {e}"))),
            };
            input = &input[(self.z.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if status == Status::StreamEnd {
                return Ok(out);
            }
        }
    }

    fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        let bad = || SpdyError::Protocol("malformed header block".into());
        let mut p = &raw[..];
        if p.len() < 4 {
            return Err(bad());
        }
        let n = p.get_u32() as usize;
        let mut headers = Vec::with_capacity(n.min(64));
        let take = |p: &mut &[u8]| -> Result<String, SpdyError> {
            if p.len() < 4 {
                return Err(bad());
            }
            let len = p.get_u32() as usize;
            if p.len() < len {
                return Err(bad());
            }
            let s = String::from_utf8_lossy(&p[..len]).into_owned();
            p.advance(len);
            Ok(s)
        };
        for _ in 0..n {
            let k = take(&mut p)?;
            let v = take(&mut p)?;
            // Several values of one name come NUL-separated.
            for v in v.split('\0') {
                headers.push((k.to_ascii_lowercase(), v.to_string()));
            }
        }
        Ok(headers)
    }
}

/// SPDY/3's header-compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): the
/// length-prefixed words, then a run of status codes, reason phrases, dates and media types.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505",
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
        " 00:00:00",
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1424);
    for w in WORDS {
        d.put_u32(w.len() as u32);
        d.put_slice(w.as_bytes());
    }
    d.put_slice(TAIL.as_bytes());
    d
}

#[cfg(test)]
mod tests;
