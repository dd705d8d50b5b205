//! An object as kube-apiserver keeps it after decoding it into its Go struct: what Go's JSON
//! would leave out is left out, and `[]byte` fields hold standard base64.
//!
//! - A zero scalar (`false`, `0`, `""`) in a non-pointer field with omitempty is dropped: a Go
//!   struct cannot tell it from unset, and its JSON omits it. So `stdin: false` sent by a
//!   client, or written by a Go client's protobuf encoder (which writes every non-pointer
//!   field), reads back as kube reads it back: absent. Pointers keep their zero.
//! - `[]byte` fields (Secret `data`, ConfigMap `binaryData`, a CSR's `request`, `caBundle`...)
//!   are decoded as Go decodes base64, ignoring `\r` and `\n` (what `base64.encodebytes` and
//!   many tools write every 76 characters) and allowing non-zero trailing bits, then
//!   written back as standard base64. What Go refuses is an error at the byte Go names.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::schema::{self, Field, Message, Special, Ty};

/// Why an object could not be normalized: a `[]byte` field that is not base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBytes {
    /// JSON path of the field, e.g. `data[tls.key]`.
    pub field: String,
    /// Go's words: `illegal base64 data at input byte 4`.
    pub message: String,
}

/// Normalize `obj` (a built-in kind; anything else is left alone).
pub fn normalize(obj: &mut Value) -> Result<(), InvalidBytes> {
    let Some(msg) = top_message(obj) else { return Ok(()) };
    if let Value::Object(m) = obj {
        object(m, msg, &mut String::new(), 0)?;
    }
    Ok(())
}

/// Decode base64 as Go's `base64.StdEncoding` does: `\r` and `\n` are skipped anywhere,
/// padding is required, trailing bits need not be zero.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    // Offsets in the stripped text map back to the input's, as Go reports them.
    let mut kept = Vec::with_capacity(s.len());
    let mut origin = Vec::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b != b'\r' && b != b'\n' {
            kept.push(b);
            origin.push(i);
        }
    }
    GO_STD.decode(&kept).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                origin.get(at).copied().unwrap_or(s.len())
            }
            base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
                // Go reports the end of the last whole quantum it could read.
                origin.get(kept.len() / 4 * 4).copied().unwrap_or(s.len())
            }
        };
        format!("illegal base64 data at input byte {at}")
    })
}

const MAX_DEPTH: usize = 64;

fn top_message(v: &Value) -> Option<&'static Message> {
    let api_version = v.get("apiVersion")?.as_str()?;
    let kind = v.get("kind")?.as_str()?;
    super::gojson::message_of(api_version, kind)
}

/// `path`: the JSON path so far, for errors; each level appends to it and cuts it back.
fn object(
    m: &mut Map<String, Value>,
    msg: &'static Message,
    path: &mut String,
    depth: usize,
) -> Result<(), InvalidBytes> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let index = schema::field_index(msg);
    let mut dropped: Vec<String> = Vec::new();
    for (k, v) in m.iter_mut() {
        let Some(&(_, f)) = index.get(k.as_str()) else { continue };
        if !f.repeated && omitted_zero(f, v) {
            dropped.push(k.clone());
            continue;
        }
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        let done = match v {
            Value::Array(items) if f.repeated => {
                let mut r = Ok(());
                for (i, item) in items.iter_mut().enumerate() {
                    let at = path.len();
                    let _ = write!(path, "[{i}]");
                    r = value(item, f, path, depth);
                    path.truncate(at);
                    if r.is_err() {
                        break;
                    }
                }
                r
            }
            v => value(v, f, path, depth),
        };
        path.truncate(len);
        done?;
    }
    for k in dropped {
        m.remove(&k);
    }
    Ok(())
}

/// A zero Go's JSON leaves out (see `gojson::omitted_zero`); a value of the wrong JSON type
/// is left for the type check to refuse, as Go's decoder refuses it.
fn omitted_zero(f: &Field, v: &Value) -> bool {
    super::gojson::omitted_zero(f, v)
}

fn value(v: &mut Value, f: &Field, path: &mut String, depth: usize) -> Result<(), InvalidBytes> {
    match (f.ty, v) {
        (Ty::Bytes, Value::String(s)) => canonical(s, path),
        (Ty::MapBytes, Value::Object(m)) => {
            for (k, item) in m.iter_mut() {
                if let Value::String(s) = item {
                    canonical(s, &format!("{path}[{k}]"))?;
                }
            }
            Ok(())
        }
        (Ty::Message(i), v) => message_value(v, schema::message(i), path, depth + 1),
        (Ty::MapMessage(i), Value::Object(m)) => {
            for (k, item) in m.iter_mut() {
                let at = path.len();
                let _ = write!(path, "[{k}]");
                let r = message_value(item, schema::message(i), path, depth + 1);
                path.truncate(at);
                r?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn message_value(
    v: &mut Value,
    msg: &'static Message,
    path: &mut String,
    depth: usize,
) -> Result<(), InvalidBytes> {
    match (msg.special, v) {
        (Special::None | Special::ObjectMeta, Value::Object(m)) => object(m, msg, path, depth),
        (Special::RawExtension, v @ Value::Object(_)) => match top_message(v) {
            Some(inner) => match v {
                Value::Object(m) => object(m, inner, path, depth),
                _ => Ok(()),
            },
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Rewrite `s` as standard base64 if Go would read it.
fn canonical(s: &mut String, path: &str) -> Result<(), InvalidBytes> {
    if !s.contains(['\r', '\n']) && STANDARD.decode(s.as_bytes()).is_ok() {
        return Ok(());
    }
    let bytes =
        decode_base64(s).map_err(|message| InvalidBytes { field: path.to_string(), message })?;
    *s = STANDARD.encode(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn go_base64_should_skip_line_breaks_and_name_the_bad_byte() {
        let text = b"0123456789".repeat(12);
        let wrapped = {
            let s = STANDARD.encode(&text);
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && i % 76 == 0 {
                    out.push('\n');
                }
                out.push(c);
            }
            out.push('\n');
            out
        };
        assert_eq!(decode_base64(&wrapped).expect("decodes"), text);
        assert_eq!(decode_base64("aGk=\r\n").expect("crlf"), b"hi");
        assert_eq!(decode_base64("aGl=").expect("trailing bits"), b"hi");
        assert_eq!(decode_base64("aG!=").unwrap_err(), "illegal base64 data at input byte 2");
        assert_eq!(decode_base64("a\nG!=").unwrap_err(), "illegal base64 data at input byte 3");
        assert!(decode_base64("aGk").is_err(), "Go's StdEncoding needs padding");
    }

    #[test]
    fn secret_data_should_be_rewritten_as_standard_base64() {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "aGVs\nbG8=\n", "b": "aGk="}});
        normalize(&mut s).expect("normalized");
        assert_eq!(s["data"], json!({"a": "aGVsbG8=", "b": "aGk="}));
        let mut bad = json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "no!"}});
        let err = normalize(&mut bad).unwrap_err();
        assert_eq!(err.field, "data[k]");
        assert_eq!(err.message, "illegal base64 data at input byte 2");
    }

    #[test]
    fn zeros_go_omits_should_go_and_pointer_zeros_should_stay() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "generation": 0},
            "spec": {"automountServiceAccountToken": false, "hostNetwork": false,
                "containers": [{"name": "c", "image": "i", "stdin": false, "tty": false,
                    "ports": [{"containerPort": 80, "hostPort": 0}]}],
                "volumes": [{"name": "v", "secret": {"secretName": "s", "optional": false}}]}});
        normalize(&mut pod).expect("normalized");
        assert_eq!(
            pod,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"automountServiceAccountToken": false,
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                    "volumes": [{"name": "v", "secret": {"secretName": "s", "optional": false}}]}})
        );
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 0, "paused": false}});
        normalize(&mut d).expect("normalized");
        assert_eq!(
            d,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 0}})
        );
        // A zero of the wrong type stays, for the type check to refuse as Go's decoder does.
        let mut wrong = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"hostNetwork": 0,
            "containers": [{"name": "c", "env": [{"name": "A", "value": 0}]}]}});
        let before = wrong.clone();
        normalize(&mut wrong).expect("normalized");
        assert_eq!(wrong, before);
    }
}
