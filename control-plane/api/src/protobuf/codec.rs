//! Translation between one protobuf message and its JSON value, driven by the schema table.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::ProtoError;
use super::formats::{format_duration, format_time, parse_duration, parse_time};
use super::schema::{Field, Message, Special, Ty, message};
use super::wire::{FIXED64, LEN, Reader, VARINT, put_bytes, put_int, put_key, put_nested};

/// Deep enough for any real object (CRD schemas included), shallow enough for the stack.
pub(super) const MAX_DEPTH: usize = 100;

fn malformed(msg: &Message, detail: impl Into<String>) -> ProtoError {
    ProtoError::Malformed { message: msg.display(), detail: detail.into() }
}

fn invalid(msg: &Message, field: &str, detail: impl Into<String>) -> ProtoError {
    ProtoError::InvalidValue {
        message: msg.display(),
        field: field.to_string(),
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decode `buf` as `msg`. `None` is a value JSON leaves out (an unset time, a nil raw object).
pub(super) fn decode_message(
    msg: &'static Message,
    buf: &[u8],
    depth: usize,
) -> Result<Option<Value>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    if msg.special != Special::None && msg.special != Special::ObjectMeta {
        return decode_special(msg, buf, depth);
    }
    let mut obj = Map::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (tag, wt) = r.key().map_err(|e| malformed(msg, e))?;
        let Some(f) = msg.field_by_tag(tag) else {
            r.skip(wt).map_err(|e| malformed(msg, format!("field {tag}: {e}")))?;
            continue;
        };
        let ctx = |e: &str| malformed(msg, format!("field {:?}: {e}", f.json));
        match f.ty {
            Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
                expect_wire(msg, f, wt, LEN)?;
                let entry = r.bytes().map_err(ctx)?;
                let (k, v) = decode_map_entry(msg, f, entry, depth)?;
                match obj.get_mut(f.json) {
                    Some(Value::Object(m)) => {
                        m.insert(k, v);
                    }
                    _ => {
                        obj.insert(f.json.to_string(), Value::Object(Map::from_iter([(k, v)])));
                    }
                }
            }
            Ty::Message(i) => {
                expect_wire(msg, f, wt, LEN)?;
                let b = r.bytes().map_err(ctx)?;
                let v = decode_message(message(i), b, depth + 1)?;
                if f.inline {
                    if let Some(Value::Object(m)) = v {
                        obj.extend(m);
                    }
                } else if f.repeated {
                    push(&mut obj, f.json, v.unwrap_or(Value::Null));
                } else if let Some(v) = v {
                    obj.insert(f.json.to_string(), v);
                }
            }
            scalar if f.repeated && wt == LEN && scalar != Ty::String && scalar != Ty::Bytes => {
                // Packed repeated numbers.
                let b = r.bytes().map_err(ctx)?;
                let mut pr = Reader::new(b);
                let packed_wt = if scalar == Ty::Double { FIXED64 } else { VARINT };
                while !pr.done() {
                    let v = decode_scalar(msg, f, packed_wt, &mut pr)?;
                    push(&mut obj, f.json, v);
                }
            }
            _ => {
                let v = decode_scalar(msg, f, wt, &mut r)?;
                if f.repeated {
                    push(&mut obj, f.json, v);
                } else if !omitted_zero(msg, f, &v) {
                    obj.insert(f.json.to_string(), v);
                }
            }
        }
    }
    Ok(Some(Value::Object(obj)))
}

/// Go writes every non-pointer field, set or not, so a zero on the wire is often a field the
/// client never set. It is dropped where Go's JSON would leave it out (a non-pointer with
/// omitempty, per the Go types in go-scalars.tsv), so a protobuf body reads as the JSON one
/// does: no `stdin: false`, no `hostPort: 0`. A pointer's zero (`replicas: 0`,
/// `automountServiceAccountToken: false`) and a field without omitempty are kept. Fields the
/// table does not know lose only their empty strings.
fn omitted_zero(msg: &Message, f: &Field, v: &Value) -> bool {
    let zero = match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !zero || f.keep_zero {
        return false;
    }
    f.go_known
        || matches!(v, Value::String(_))
        || (msg.special == Special::ObjectMeta && f.json == "generation")
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    match obj.get_mut(key) {
        Some(Value::Array(a)) => a.push(v),
        _ => {
            obj.insert(key.to_string(), Value::Array(vec![v]));
        }
    }
}

fn expect_wire(msg: &Message, f: &Field, got: u8, want: u8) -> Result<(), ProtoError> {
    if got == want {
        Ok(())
    } else {
        Err(malformed(msg, format!("field {:?} has wire type {got}, expected {want}", f.json)))
    }
}

fn decode_scalar(
    msg: &Message,
    f: &Field,
    wt: u8,
    r: &mut Reader<'_>,
) -> Result<Value, ProtoError> {
    let ctx = |e: &str| malformed(msg, format!("field {:?}: {e}", f.json));
    Ok(match f.ty {
        Ty::String => {
            expect_wire(msg, f, wt, LEN)?;
            Value::String(utf8(msg, f.json, r.bytes().map_err(ctx)?)?)
        }
        Ty::Bytes => {
            expect_wire(msg, f, wt, LEN)?;
            Value::String(BASE64.encode(r.bytes().map_err(ctx)?))
        }
        Ty::Bool => {
            expect_wire(msg, f, wt, VARINT)?;
            Value::Bool(r.varint().map_err(ctx)? != 0)
        }
        Ty::Int32 => {
            expect_wire(msg, f, wt, VARINT)?;
            Value::from(r.varint().map_err(ctx)? as i32)
        }
        Ty::Int64 => {
            expect_wire(msg, f, wt, VARINT)?;
            Value::from(r.varint().map_err(ctx)? as i64)
        }
        Ty::Double => {
            expect_wire(msg, f, wt, FIXED64)?;
            let d = f64::from_bits(r.fixed64().map_err(ctx)?);
            Value::Number(
                Number::from_f64(d)
                    .ok_or_else(|| invalid(msg, f.json, format!("{d} has no JSON form")))?,
            )
        }
        Ty::Message(_) | Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
            return Err(malformed(msg, format!("field {:?} is not a scalar", f.json)));
        }
    })
}

fn utf8(msg: &Message, field: &str, b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| invalid(msg, field, "string is not valid UTF-8"))
}

fn decode_map_entry(
    msg: &Message,
    f: &Field,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value = None;
    let mut r = Reader::new(entry);
    let ctx = |e: &str| malformed(msg, format!("map {:?}: {e}", f.json));
    while !r.done() {
        match r.key().map_err(ctx)? {
            (1, LEN) => key = utf8(msg, f.json, r.bytes().map_err(ctx)?)?,
            (2, LEN) => {
                let b = r.bytes().map_err(ctx)?;
                value = Some(match f.ty {
                    Ty::MapString => Value::String(utf8(msg, f.json, b)?),
                    Ty::MapBytes => Value::String(BASE64.encode(b)),
                    Ty::MapMessage(i) => {
                        decode_message(message(i), b, depth + 1)?.unwrap_or(Value::Null)
                    }
                    _ => return Err(ctx("not a map")),
                });
            }
            (_, wt) => r.skip(wt).map_err(ctx)?,
        }
    }
    let value = match (value, f.ty) {
        (Some(v), _) => v,
        (None, Ty::MapMessage(i)) => {
            decode_message(message(i), &[], depth + 1)?.unwrap_or(Value::Null)
        }
        (None, _) => Value::String(String::new()),
    };
    Ok((key, value))
}

/// The raw fields of a small special message, by number.
fn raw_fields<'a>(msg: &Message, buf: &'a [u8]) -> Result<Vec<(u32, RawValue<'a>)>, ProtoError> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (tag, wt) = r.key().map_err(|e| malformed(msg, e))?;
        let v = match wt {
            VARINT => RawValue::Varint(r.varint().map_err(|e| malformed(msg, e))?),
            LEN => RawValue::Bytes(r.bytes().map_err(|e| malformed(msg, e))?),
            _ => {
                r.skip(wt).map_err(|e| malformed(msg, e))?;
                continue;
            }
        };
        out.push((tag, v));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum RawValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint_field(fields: &[(u32, RawValue<'_>)], tag: u32) -> Option<u64> {
    fields.iter().rev().find_map(|(t, v)| match v {
        RawValue::Varint(n) if *t == tag => Some(*n),
        _ => None,
    })
}

fn bytes_field<'a>(fields: &[(u32, RawValue<'a>)], tag: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(t, v)| match v {
        RawValue::Bytes(b) if *t == tag => Some(*b),
        _ => None,
    })
}

fn schema_field(msg: &Message, tag: u32) -> Result<&'static Message, ProtoError> {
    match msg.field_by_tag(tag).map(|f| f.ty) {
        Some(Ty::Message(i)) => Ok(message(i)),
        _ => Err(malformed(msg, format!("field {tag} is not a message"))),
    }
}

fn decode_special(
    msg: &'static Message,
    buf: &[u8],
    depth: usize,
) -> Result<Option<Value>, ProtoError> {
    let fields = raw_fields(msg, buf)?;
    Ok(match msg.special {
        Special::Quantity => {
            let s = bytes_field(&fields, 1).map(|b| utf8(msg, "string", b)).transpose()?;
            Some(Value::String(s.filter(|s| !s.is_empty()).unwrap_or_else(|| "0".into())))
        }
        Special::Time | Special::MicroTime => {
            // Go writes an unset (zero) time as an empty message; JSON has null for it.
            if fields.is_empty() {
                return Ok(None);
            }
            let seconds = varint_field(&fields, 1).unwrap_or(0) as i64;
            let nanos = varint_field(&fields, 2).unwrap_or(0) as i32;
            let s = format_time(seconds, nanos, msg.special == Special::MicroTime)
                .ok_or_else(|| invalid(msg, "seconds", format!("{seconds} is out of range")))?;
            Some(Value::String(s))
        }
        Special::Duration => {
            Some(Value::String(format_duration(varint_field(&fields, 1).unwrap_or(0) as i64)))
        }
        Special::IntOrString => {
            if varint_field(&fields, 1) == Some(1) {
                let s = bytes_field(&fields, 3).map(|b| utf8(msg, "strVal", b)).transpose()?;
                Some(Value::String(s.unwrap_or_default()))
            } else {
                Some(Value::from(varint_field(&fields, 2).unwrap_or(0) as i32))
            }
        }
        Special::RawExtension | Special::RawJson => match bytes_field(&fields, 1) {
            None | Some([]) => None,
            Some(raw) if raw.starts_with(super::MAGIC) => {
                Some(super::decode_envelope(raw, depth + 1)?)
            }
            Some(raw) => Some(serde_json::from_slice(raw).map_err(|e| {
                invalid(msg, "raw", format!("embedded object is neither JSON nor protobuf: {e}"))
            })?),
        },
        Special::OrBool => match bytes_field(&fields, 2) {
            Some(b) => decode_message(schema_field(msg, 2)?, b, depth + 1)?,
            None => Some(Value::Bool(varint_field(&fields, 1).unwrap_or(0) != 0)),
        },
        Special::OrArray => {
            let items: Vec<&[u8]> = fields
                .iter()
                .filter_map(|(t, v)| match v {
                    RawValue::Bytes(b) if *t == 2 => Some(*b),
                    _ => None,
                })
                .collect();
            if items.is_empty() {
                match bytes_field(&fields, 1) {
                    Some(b) => decode_message(schema_field(msg, 1)?, b, depth + 1)?,
                    None => None,
                }
            } else {
                let schema = schema_field(msg, 2)?;
                let mut out = Vec::with_capacity(items.len());
                for b in items {
                    out.push(decode_message(schema, b, depth + 1)?.unwrap_or(Value::Null));
                }
                Some(Value::Array(out))
            }
        }
        Special::StringList => {
            let mut items = Vec::new();
            for (t, v) in &fields {
                if let (1, RawValue::Bytes(b)) = (t, v) {
                    items.push(Value::String(utf8(msg, "items", b)?));
                }
            }
            Some(Value::Array(items))
        }
        Special::OrStringArray => {
            let mut items = Vec::new();
            for (t, v) in &fields {
                if let (2, RawValue::Bytes(b)) = (t, v) {
                    items.push(Value::String(utf8(msg, "property", b)?));
                }
            }
            if items.is_empty() {
                match bytes_field(&fields, 1) {
                    Some(b) => decode_message(schema_field(msg, 1)?, b, depth + 1)?,
                    None => None,
                }
            } else {
                Some(Value::Array(items))
            }
        }
        Special::None | Special::ObjectMeta => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Append `v` encoded as `msg` to `out`. `type_meta_ok`: `apiVersion` and `kind` may appear
/// (they travel in the envelope, or are left out of list items, as Kubernetes does).
pub(super) fn encode_message(
    msg: &'static Message,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
    type_meta_ok: bool,
) -> Result<(), ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    if msg.special != Special::None && msg.special != Special::ObjectMeta {
        return encode_special(msg, v, out, depth);
    }
    let Some(obj) = v.as_object() else {
        return Err(ProtoError::WrongType {
            message: msg.display(),
            expected: "an object",
            got: kind_of(v),
        });
    };
    let type_meta_ok = type_meta_ok || msg.field_by_json("metadata").is_some();
    let mut used = 0usize;
    for f in msg.fields {
        if f.inline {
            let Ty::Message(i) = f.ty else { continue };
            let inner = message(i);
            let sub: Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| msg.field_by_json(k).is_none() && accepts(inner, k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !sub.is_empty() {
                used += sub.len();
                put_nested(out, f.tag, |o| {
                    encode_message(inner, &Value::Object(sub), o, depth + 1, false)
                })?;
            }
            continue;
        }
        let Some(val) = obj.get(f.json) else { continue };
        used += 1;
        if val.is_null() {
            continue;
        }
        encode_field(msg, f, val, out, depth)?;
    }
    if used < obj.len() {
        for k in obj.keys() {
            let type_meta = type_meta_ok
                && (k == "apiVersion" || k == "kind")
                && msg.field_by_json(k).is_none();
            if !type_meta && msg.field_by_json(k).is_none() && !accepts(msg, k) {
                return Err(ProtoError::UnknownField { message: msg.display(), field: k.clone() });
            }
        }
    }
    Ok(())
}

/// Whether `key` is a field of `msg` or of one of its inline structs.
fn accepts(msg: &Message, key: &str) -> bool {
    msg.fields.iter().any(|f| match f.ty {
        Ty::Message(i) if f.inline => accepts(message(i), key),
        _ => f.json == key,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(msg: &Message, f: &Field, expected: &str, v: &Value) -> ProtoError {
    invalid(msg, f.json, format!("expected {expected}, got {}", kind_of(v)))
}

fn encode_field(
    msg: &'static Message,
    f: &Field,
    val: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    match f.ty {
        Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
            let m = val.as_object().ok_or_else(|| wrong(msg, f, "an object", val))?;
            for (k, v) in m {
                put_nested(out, f.tag, |o| {
                    put_bytes(o, 1, k.as_bytes());
                    match f.ty {
                        Ty::MapString => {
                            let s = match v {
                                Value::String(s) => s.as_str(),
                                Value::Null => "",
                                other => return Err(wrong(msg, f, "string values", other)),
                            };
                            put_bytes(o, 2, s.as_bytes());
                        }
                        Ty::MapBytes => {
                            let b = decode_base64(msg, f, v)?;
                            put_bytes(o, 2, &b);
                        }
                        Ty::MapMessage(i) => {
                            put_nested(o, 2, |o| {
                                encode_value_message(message(i), v, o, depth + 1)
                            })?;
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            Ok(())
        }
        _ if f.repeated => {
            let items = val.as_array().ok_or_else(|| wrong(msg, f, "an array", val))?;
            for item in items {
                encode_single(msg, f, item, out, depth)?;
            }
            Ok(())
        }
        _ => encode_single(msg, f, val, out, depth),
    }
}

/// A message value where null means the empty message.
fn encode_value_message(
    m: &'static Message,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    if v.is_null() { Ok(()) } else { encode_message(m, v, out, depth, false) }
}

fn decode_base64(msg: &Message, f: &Field, v: &Value) -> Result<Vec<u8>, ProtoError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => super::normalize::decode_base64(s)
            .map_err(|e| invalid(msg, f.json, format!("not valid base64: {e}"))),
        other => Err(wrong(msg, f, "a base64 string", other)),
    }
}

fn encode_single(
    msg: &'static Message,
    f: &Field,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    match f.ty {
        Ty::String => match v {
            Value::String(s) => put_bytes(out, f.tag, s.as_bytes()),
            other => return Err(wrong(msg, f, "a string", other)),
        },
        Ty::Bytes => {
            let b = decode_base64(msg, f, v)?;
            put_bytes(out, f.tag, &b);
        }
        Ty::Bool => match v {
            Value::Bool(b) => put_int(out, f.tag, i64::from(*b)),
            other => return Err(wrong(msg, f, "a boolean", other)),
        },
        Ty::Int32 => {
            let n = integer(v).and_then(|n| i32::try_from(n).ok());
            put_int(out, f.tag, i64::from(n.ok_or_else(|| wrong(msg, f, "a 32-bit integer", v))?));
        }
        Ty::Int64 => {
            put_int(out, f.tag, integer(v).ok_or_else(|| wrong(msg, f, "a 64-bit integer", v))?);
        }
        Ty::Double => {
            let d = v.as_f64().ok_or_else(|| wrong(msg, f, "a number", v))?;
            put_key(out, f.tag, FIXED64);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Ty::Message(i) => {
            put_nested(out, f.tag, |o| encode_value_message(message(i), v, o, depth + 1))?;
        }
        Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
            return Err(invalid(msg, f.json, "a map cannot be a list item"));
        }
    }
    Ok(())
}

/// A JSON number with an integral value.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64().filter(|d| d.fract() == 0.0 && d.abs() < 9.0e18).map(|d| d as i64)
        }),
        _ => None,
    }
}

fn encode_special(
    msg: &'static Message,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    let wrong_type = |expected: &'static str| ProtoError::WrongType {
        message: msg.display(),
        expected,
        got: kind_of(v),
    };
    match msg.special {
        Special::Quantity => match v {
            Value::String(s) => put_bytes(out, 1, s.as_bytes()),
            Value::Number(n) => put_bytes(out, 1, n.to_string().as_bytes()),
            _ => return Err(wrong_type("a quantity string")),
        },
        Special::Time | Special::MicroTime => {
            let s = v.as_str().ok_or_else(|| wrong_type("an RFC 3339 time string"))?;
            let (seconds, nanos) = parse_time(s).map_err(|e| invalid(msg, "", e.to_string()))?;
            put_int(out, 1, seconds);
            let nanos = if msg.special == Special::MicroTime { nanos / 1000 * 1000 } else { 0 };
            put_int(out, 2, i64::from(nanos));
        }
        Special::Duration => {
            let s = v.as_str().ok_or_else(|| wrong_type("a duration string"))?;
            put_int(out, 1, parse_duration(s).map_err(|e| invalid(msg, "", e.to_string()))?);
        }
        Special::IntOrString => match v {
            Value::String(s) => {
                put_int(out, 1, 1);
                put_int(out, 2, 0);
                put_bytes(out, 3, s.as_bytes());
            }
            Value::Number(_) => {
                let n = integer(v)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| wrong_type("a 32-bit integer or a string"))?;
                put_int(out, 1, 0);
                put_int(out, 2, i64::from(n));
                put_bytes(out, 3, b"");
            }
            _ => return Err(wrong_type("an integer or a string")),
        },
        Special::RawExtension | Special::RawJson => {
            let raw = serde_json::to_vec(v).map_err(|e| invalid(msg, "raw", e.to_string()))?;
            put_bytes(out, 1, &raw);
        }
        Special::OrBool => match v {
            Value::Bool(b) => put_int(out, 1, i64::from(*b)),
            Value::Object(_) => {
                put_int(out, 1, 1);
                let schema = schema_field(msg, 2)?;
                put_nested(out, 2, |o| encode_message(schema, v, o, depth + 1, false))?;
            }
            _ => return Err(wrong_type("a boolean or a schema object")),
        },
        Special::OrArray => match v {
            Value::Array(items) => {
                let schema = schema_field(msg, 2)?;
                for item in items {
                    put_nested(out, 2, |o| encode_message(schema, item, o, depth + 1, false))?;
                }
            }
            Value::Object(_) => {
                let schema = schema_field(msg, 1)?;
                put_nested(out, 1, |o| encode_message(schema, v, o, depth + 1, false))?;
            }
            _ => return Err(wrong_type("a schema object or an array of them")),
        },
        Special::StringList => {
            let items = v.as_array().ok_or_else(|| wrong_type("an array of strings"))?;
            for item in items {
                let s = item.as_str().ok_or_else(|| wrong_type("an array of strings"))?;
                put_bytes(out, 1, s.as_bytes());
            }
        }
        Special::OrStringArray => match v {
            Value::Array(items) => {
                for item in items {
                    let s = item.as_str().ok_or_else(|| wrong_type("an array of strings"))?;
                    put_bytes(out, 2, s.as_bytes());
                }
            }
            Value::Object(_) => {
                let schema = schema_field(msg, 1)?;
                put_nested(out, 1, |o| encode_message(schema, v, o, depth + 1, false))?;
            }
            _ => return Err(wrong_type("a schema object or an array of strings")),
        },
        Special::None | Special::ObjectMeta => {}
    }
    Ok(())
}
