//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`) for every built-in
//! type, translated to and from the JSON objects the api server works with.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` message: field 1 the TypeMeta
//! (`apiVersion`, `kind`), field 2 the object's own protobuf encoding, fields 3 and 4 its
//! content encoding and type (empty). Field numbers come from a table build.rs generates from
//! the prost sources of the `k8s-pb` crate; JSON names from `k8s-openapi`.
//!
//! JSON and protobuf are not quite isomorphic: Go writes every non-pointer field, so empty
//! strings read from the wire are taken as unset (see `codec::omitted_zero`), and unset times
//! are left out. Everything else round-trips.

mod codec;
mod formats;
pub mod gojson;
mod normalize;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use normalize::{InvalidBytes, decode_base64, normalize};

use wire::{LEN, Reader, put_bytes, put_nested};

/// The media type of Kubernetes' protobuf encoding.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a body could not be translated. Every variant names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error(
        "not a Kubernetes protobuf message: the body does not start with the magic bytes \"k8s\\0\""
    )]
    MissingMagic,
    #[error("malformed protobuf in {message}: {detail}")]
    Malformed { message: String, detail: String },
    #[error("the object has no {0}; a protobuf envelope needs apiVersion and kind")]
    MissingTypeMeta(&'static str),
    #[error("no protobuf message is known for kind {kind:?} of apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{message} has no field {field:?}")]
    UnknownField { message: String, field: String },
    #[error("{message}: expected {expected}, got {got}")]
    WrongType { message: String, expected: &'static str, got: &'static str },
    #[error("invalid value in {message} field {field:?}: {detail}")]
    InvalidValue { message: String, field: String, detail: String },
    #[error("the object nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("the protobuf body has content encoding {0:?}; only unencoded bodies are supported")]
    UnsupportedEncoding(String),
}

/// Whether `kind` of `api_version` has a protobuf encoding here.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::lookup(api_version, kind).is_some()
}

/// Decode a protobuf body (magic + envelope) to a JSON object with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    decode_envelope(body, 0)
}

fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::MissingMagic)?;
    let bad = |detail: &str| ProtoError::Malformed {
        message: "runtime.Unknown (the envelope)".into(),
        detail: detail.into(),
    };
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    let text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not valid UTF-8"));
    let mut r = Reader::new(rest);
    while !r.done() {
        match r.key().map_err(bad)? {
            (1, LEN) => {
                let mut tm = Reader::new(r.bytes().map_err(bad)?);
                while !tm.done() {
                    match tm.key().map_err(bad)? {
                        (1, LEN) => api_version = text(tm.bytes().map_err(bad)?)?,
                        (2, LEN) => kind = text(tm.bytes().map_err(bad)?)?,
                        (_, wt) => tm.skip(wt).map_err(bad)?,
                    }
                }
            }
            (2, LEN) => raw = r.bytes().map_err(bad)?,
            (3, LEN) => encoding = text(r.bytes().map_err(bad)?)?,
            (_, wt) => r.skip(wt).map_err(bad)?,
        }
    }
    if !encoding.is_empty() {
        return Err(ProtoError::UnsupportedEncoding(encoding));
    }
    if kind.is_empty() {
        return Err(ProtoError::MissingTypeMeta("kind"));
    }
    let msg = schema::lookup(&api_version, &kind).ok_or_else(|| ProtoError::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut obj = match codec::decode_message(msg, raw, depth)? {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

/// Encode a JSON object with `apiVersion` and `kind` as a protobuf body. Fields the
/// protobuf message does not have are an error (the caller can answer JSON instead).
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::with_capacity(256);
    encode_into(obj, &mut out)?;
    Ok(out)
}

fn encode_into(obj: &Value, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or(ProtoError::MissingTypeMeta("apiVersion"))?;
    let kind =
        obj.get("kind").and_then(Value::as_str).ok_or(ProtoError::MissingTypeMeta("kind"))?;
    let msg = schema::lookup(api_version, kind).ok_or_else(|| ProtoError::UnknownKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    out.extend_from_slice(MAGIC);
    put_nested(out, 1, |o| {
        put_bytes(o, 1, api_version.as_bytes());
        put_bytes(o, 2, kind.as_bytes());
        Ok::<(), ProtoError>(())
    })?;
    put_nested(out, 2, |o| codec::encode_message(msg, obj, o, 0, true))?;
    put_bytes(out, 3, b"");
    put_bytes(out, 4, b"");
    Ok(())
}

/// One frame of a protobuf watch stream: a 4-byte big-endian length, then the envelope of a
/// `meta.v1.WatchEvent {1 type, 2 object}` whose object holds `object`'s own envelope. The
/// event is typed in `object`'s group version, where Kubernetes registers `WatchEvent` too.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtoError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or(ProtoError::MissingTypeMeta("apiVersion"))?;
    let mut out = vec![0u8; 4];
    out.extend_from_slice(MAGIC);
    put_nested(&mut out, 1, |o| {
        put_bytes(o, 1, api_version.as_bytes());
        put_bytes(o, 2, b"WatchEvent");
        Ok::<(), ProtoError>(())
    })?;
    put_nested(&mut out, 2, |o| {
        put_bytes(o, 1, event_type.as_bytes());
        put_nested(o, 2, |o| put_nested(o, 1, |o| encode_into(object, o)))
    })?;
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    let len = u32::try_from(out.len() - 4).map_err(|_| ProtoError::InvalidValue {
        message: "meta.v1.WatchEvent".into(),
        field: "object".into(),
        detail: "the event is larger than 4 GiB".into(),
    })?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// The object's own message inside an envelope [`encode`] wrote (field 2 of the
/// `runtime.Unknown`), so a list can embed stored envelopes without encoding them again.
pub fn envelope_payload(envelope: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(envelope.strip_prefix(MAGIC)?);
    while !r.done() {
        match r.key().ok()? {
            (2, LEN) => return r.bytes().ok(),
            (_, wt) => r.skip(wt).ok()?,
        }
    }
    None
}

/// A list body (`PodList`, ...) from its items' envelopes (as [`encode`] wrote them): the
/// items are copied, never decoded. `kind` is the list kind; its message names the fields.
pub fn encode_list<'a>(
    api_version: &str,
    kind: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    items: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, ProtoError> {
    let msg = schema::lookup(api_version, kind).ok_or_else(|| ProtoError::UnknownKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let field = |m: &'static schema::Message, json: &str| {
        m.field_by_json(json)
            .ok_or_else(|| ProtoError::UnknownField { message: m.display(), field: json.into() })
    };
    let (meta, items_field) = (field(msg, "metadata")?, field(msg, "items")?);
    let schema::Ty::Message(list_meta) = meta.ty else {
        return Err(ProtoError::WrongType {
            message: msg.display(),
            expected: "a ListMeta message",
            got: "a scalar",
        });
    };
    let list_meta = schema::message(list_meta);
    let rv_tag = field(list_meta, "resourceVersion")?.tag;
    let continue_tag = field(list_meta, "continue")?.tag;
    let mut payload = Vec::new();
    put_nested(&mut payload, meta.tag, |o| {
        put_bytes(o, rv_tag, resource_version.as_bytes());
        if let Some(c) = continue_token {
            put_bytes(o, continue_tag, c.as_bytes());
        }
        Ok::<(), ProtoError>(())
    })?;
    for item in items {
        let raw = envelope_payload(item).ok_or_else(|| ProtoError::Malformed {
            message: msg.display(),
            detail: "an item is not a protobuf envelope".into(),
        })?;
        put_bytes(&mut payload, items_field.tag, raw);
    }
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(MAGIC);
    put_nested(&mut out, 1, |o| {
        put_bytes(o, 1, api_version.as_bytes());
        put_bytes(o, 2, kind.as_bytes());
        Ok::<(), ProtoError>(())
    })?;
    put_bytes(&mut out, 2, &payload);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(out)
}

/// A watch frame (as [`encode_watch_event`] writes) around an object envelope [`encode`]
/// already wrote, in the group version `api_version`.
pub fn encode_watch_frame(event_type: &str, api_version: &str, envelope: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.extend_from_slice(MAGIC);
    let _ = put_nested(&mut out, 1, |o| {
        put_bytes(o, 1, api_version.as_bytes());
        put_bytes(o, 2, b"WatchEvent");
        Ok::<(), ProtoError>(())
    });
    let _ = put_nested(&mut out, 2, |o| {
        put_bytes(o, 1, event_type.as_bytes());
        put_nested(o, 2, |o| {
            put_bytes(o, 1, envelope);
            Ok::<(), ProtoError>(())
        })
    });
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Split one frame off a protobuf watch stream: `Ok(Some((event, rest)))`, or `Ok(None)` when
/// `stream` does not hold a whole frame yet. The event decodes like any body, its `object`
/// being the decoded object.
pub fn decode_watch_frame(stream: &[u8]) -> Result<Option<(Value, &[u8])>, ProtoError> {
    let Some(len) = stream.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let Some(frame) = stream.get(4..4 + len) else { return Ok(None) };
    Ok(Some((decode(frame)?, &stream[4 + len..])))
}
