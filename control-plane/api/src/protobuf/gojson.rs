//! JSON exactly as kube-apiserver writes it: Go's encoding/json over the API's Go structs.
//!
//! - Fields of a built-in kind come in its Go struct's order (`kind`, `apiVersion`,
//!   `metadata`, `spec`, `status`, and each nested struct in its own order); the order comes
//!   from the protobuf schema table, whose fields build.rs keeps in declaration order.
//! - Map keys (labels, `data`, custom resources, anything without a Go struct) are sorted, as
//!   Go sorts them.
//! - Strings are escaped as Go escapes them: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`,
//!   U+2028 and U+2029 as `\u2028` and `\u2029`.
//! - Numbers: integers as they are, floats as Go formats a float64.
//!
//! - A zero in a non-pointer field with omitempty (`stdin: false`, `minReadySeconds: 0`) is
//!   left out, as Go leaves it out (go-scalars.tsv says which fields those are).
//!
//! Fields the kind does not declare (an older or newer version's) follow the declared ones,
//! sorted. Writing never fails: every JSON value has a form.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use serde_json::{Map, Number, Value};

use super::schema::{self, Message, Special, Ty};

/// Encode `v` as kube-apiserver would, without the trailing newline a response body carries.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out);
    out
}

/// Append `v`, encoded as kube-apiserver would, to `out`.
pub fn write(v: &Value, out: &mut Vec<u8>) {
    Writer { skip_resource_version: false }.root(v, true, out);
}

/// Encode an object for the store: as [`to_vec`], without `metadata.resourceVersion` (the
/// store's revision is the resourceVersion, stamped in on every read).
pub fn to_vec_stored(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    Writer { skip_resource_version: true }.root(v, true, &mut out);
    out
}

/// The message of a kind, cached by apiVersion then kind; `None` for kinds without a Go
/// struct (custom resources), whose keys are written sorted as Go writes a map.
pub(super) fn message_of(api_version: &str, kind: &str) -> Option<&'static Message> {
    type Cache = RwLock<HashMap<String, HashMap<String, Option<&'static Message>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(m) = cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(api_version)
        .and_then(|kinds| kinds.get(kind))
    {
        return *m;
    }
    let m = schema::lookup(api_version, kind);
    let mut w = cache.write().unwrap_or_else(|e| e.into_inner());
    // Bounded: custom kinds come and go; the built-in ones are a few hundred.
    if w.values().map(HashMap::len).sum::<usize>() < 4096 {
        w.entry(api_version.to_string()).or_default().insert(kind.to_string(), m);
    }
    m
}

/// The order of `meta.k8s.io/v1` Table, which has no protobuf message.
const TABLE: &[&str] = &["kind", "apiVersion", "metadata", "columnDefinitions", "rows"];
const TABLE_COLUMN: &[&str] = &["name", "type", "format", "description", "priority"];
const TABLE_ROW: &[&str] = &["cells", "conditions", "object"];
const WATCH_EVENT: &[&str] = &["type", "object"];
const LIST_META: &[&str] = &["selfLink", "resourceVersion", "continue", "remainingItemCount"];

struct Writer {
    skip_resource_version: bool,
}

impl Writer {
    /// An object written as itself (a response, a stored object, a list item, a watch
    /// event's or a table row's object, an embedded RawExtension): its `apiVersion` and
    /// `kind` say which Go struct it is. `top`: the outermost value, whose
    /// `metadata.resourceVersion` the stored form leaves out.
    fn root(&self, v: &Value, top: bool, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let msg = m
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .zip(m.get("kind").and_then(Value::as_str))
                    .and_then(|(api_version, kind)| message_of(api_version, kind));
                let skip = (top && self.skip_resource_version).then_some("resourceVersion");
                match msg {
                    Some(msg) => self.object(m, msg, skip, out),
                    None if top && is_table(m) => self.table(m, out),
                    None if top && is_watch_event(m) => self.watch_event(m, out),
                    None => self.sorted(m, skip, out),
                }
            }
            Value::Array(items) => {
                array(items, out, |item, out| {
                    self.root(item, top, out);
                });
            }
            scalar => write_scalar(scalar, out),
        }
    }

    /// JSON with no Go struct behind it (maps, raw JSON, custom resources): keys sorted at
    /// every depth, as Go writes a `map[string]interface{}`.
    fn untyped(&self, v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => self.sorted(m, None, out),
            Value::Array(items) => {
                array(items, out, |item, out| {
                    self.untyped(item, out);
                });
            }
            scalar => write_scalar(scalar, out),
        }
    }

    /// A map, sorted; `skip`: the key left out of its `metadata` (a stored custom resource's
    /// resourceVersion).
    fn sorted(&self, m: &Map<String, Value>, skip: Option<&str>, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (k, v) in m {
            comma(&mut first, out);
            write_str(k, out);
            out.push(b':');
            match (skip, v) {
                (Some(skip), Value::Object(meta)) if k == "metadata" => {
                    out.push(b'{');
                    let mut inner = true;
                    for (k, v) in meta.iter().filter(|(k, _)| *k != skip) {
                        comma(&mut inner, out);
                        write_str(k, out);
                        out.push(b':');
                        self.untyped(v, out);
                    }
                    out.push(b'}');
                }
                _ => self.untyped(v, out),
            }
        }
        out.push(b'}');
    }

    /// A value of a field of type `ty`.
    fn typed(&self, v: &Value, ty: Ty, out: &mut Vec<u8>) {
        match (ty, v) {
            (Ty::Message(i), Value::Object(m)) => {
                let msg = schema::message(i);
                match msg.special {
                    Special::None | Special::ObjectMeta => self.object(m, msg, None, out),
                    // Embedded objects carry their own apiVersion and kind.
                    Special::RawExtension => self.root(v, false, out),
                    Special::OrBool | Special::OrArray | Special::OrStringArray => {
                        match schema_field(msg) {
                            Some(props) => self.object(m, props, None, out),
                            None => self.sorted(m, None, out),
                        }
                    }
                    _ => self.sorted(m, None, out),
                }
            }
            (Ty::Message(i), Value::Array(items)) => {
                let msg = schema::message(i);
                let props = match msg.special {
                    Special::OrArray => schema_field(msg),
                    _ => None,
                };
                array(items, out, |item, out| match (props, item) {
                    (Some(p), Value::Object(m)) => self.object(m, p, None, out),
                    _ => self.untyped(item, out),
                });
            }
            (Ty::MapMessage(i), Value::Object(m)) => {
                out.push(b'{');
                for (n, (k, item)) in m.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    write_str(k, out);
                    out.push(b':');
                    self.typed(item, Ty::Message(i), out);
                }
                out.push(b'}');
            }
            (_, v) => self.untyped(v, out),
        }
    }

    /// A field's value: each element of type `ty` when it is repeated.
    fn field(&self, v: &Value, ty: Ty, repeated: bool, out: &mut Vec<u8>) {
        match v {
            Value::Array(items) if repeated => {
                array(items, out, |item, out| {
                    self.typed(item, ty, out);
                });
            }
            v => self.typed(v, ty, out),
        }
    }

    /// An object of a Go struct: `kind` and `apiVersion` first when the struct does not
    /// declare them (TypeMeta is inlined first in every kind), then the declared fields in Go
    /// order, then any others sorted. `skip`: a key of its `metadata` left out.
    fn object(
        &self,
        m: &Map<String, Value>,
        msg: &'static Message,
        skip: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        self.object_without(m, msg, skip, None, out)
    }

    /// `object`, also leaving out key `own` of `m` itself. The keys present are put in Go's
    /// order by their rank in the message's index: the work follows the object's size, not
    /// the struct's.
    fn object_without(
        &self,
        m: &Map<String, Value>,
        msg: &'static Message,
        skip: Option<&str>,
        own: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let index = schema::field_index(msg);
        let mut present: smallvec::SmallVec<[(u16, &String, &Value, &'static schema::Field); 16]> =
            smallvec::SmallVec::with_capacity(m.len());
        let mut undeclared = 0usize;
        for (k, v) in m {
            match index.get(k.as_str()) {
                Some(&(rank, f)) => present.push((rank, k, v, f)),
                None => undeclared += 1,
            }
        }
        present.sort_unstable_by_key(|p| p.0);
        out.push(b'{');
        let mut first = true;
        if undeclared > 0 {
            // TypeMeta (inline, first in every kind) when the struct does not declare it.
            for name in ["kind", "apiVersion"] {
                if let Some(v) = m.get(name)
                    && !index.contains_key(name)
                {
                    comma(&mut first, out);
                    write_str(name, out);
                    out.push(b':');
                    self.untyped(v, out);
                }
            }
        }
        for (_, k, v, f) in present {
            if Some(k.as_str()) == own || (!f.repeated && omitted_zero(f, v)) {
                continue;
            }
            comma(&mut first, out);
            write_str(k, out);
            out.push(b':');
            match (skip, v, f.ty) {
                (Some(skip), Value::Object(meta), Ty::Message(sub)) if k == "metadata" => {
                    self.object_without(meta, schema::message(sub), None, Some(skip), out);
                }
                _ => self.field(v, f.ty, f.repeated, out),
            }
        }
        if undeclared > 0 {
            let rest = m.iter().filter(|(k, _)| {
                !matches!(k.as_str(), "kind" | "apiVersion")
                    && Some(k.as_str()) != own
                    && !index.contains_key(k.as_str())
            });
            for (k, v) in rest {
                comma(&mut first, out);
                write_str(k, out);
                out.push(b':');
                self.untyped(v, out);
            }
        }
        out.push(b'}');
    }

    /// `meta.k8s.io/v1` Table: its parts in Go order; each row's object is whatever kind it is.
    fn table(&self, m: &Map<String, Value>, out: &mut Vec<u8>) {
        self.in_order(m, TABLE, out, |w, k, v, out| match (k, v) {
            ("metadata", Value::Object(meta)) => {
                w.in_order(meta, LIST_META, out, |w, _, v, out| w.untyped(v, out))
            }
            ("columnDefinitions" | "rows", Value::Array(items)) => {
                array(items, out, |item, out| match (k, item) {
                    ("rows", Value::Object(row)) => {
                        w.in_order(row, TABLE_ROW, out, |w, k, v, out| {
                            if k == "object" { w.root(v, false, out) } else { w.untyped(v, out) }
                        })
                    }
                    (_, Value::Object(col)) => {
                        w.in_order(col, TABLE_COLUMN, out, |w, _, v, out| w.untyped(v, out))
                    }
                    _ => w.untyped(item, out),
                });
            }
            _ => w.untyped(v, out),
        })
    }

    /// `{"type":…,"object":…}`: a watch event (meta.k8s.io WatchEvent, written without
    /// TypeMeta); its object is whatever kind it is.
    fn watch_event(&self, m: &Map<String, Value>, out: &mut Vec<u8>) {
        self.in_order(m, WATCH_EVENT, out, |w, k, v, out| {
            if k == "object" { w.root(v, false, out) } else { w.untyped(v, out) }
        })
    }

    /// An object whose keys come in `order` (each written by `each`), any others after,
    /// sorted.
    fn in_order(
        &self,
        m: &Map<String, Value>,
        order: &[&str],
        out: &mut Vec<u8>,
        each: impl Fn(&Self, &str, &Value, &mut Vec<u8>),
    ) {
        out.push(b'{');
        let mut first = true;
        for &k in order {
            if let Some(v) = m.get(k) {
                comma(&mut first, out);
                write_str(k, out);
                out.push(b':');
                each(self, k, v, out);
            }
        }
        for (k, v) in m.iter().filter(|(k, _)| !order.contains(&k.as_str())) {
            comma(&mut first, out);
            write_str(k, out);
            out.push(b':');
            self.untyped(v, out);
        }
        out.push(b'}');
    }
}

/// A zero Go's encoding/json leaves out: a non-pointer field with omitempty (per the Go types)
/// holding its type's zero. A value of the wrong JSON type is written as it is.
pub(super) fn omitted_zero(f: &schema::Field, v: &Value) -> bool {
    if f.keep_zero || !f.go_known {
        return false;
    }
    match (f.ty, v) {
        (Ty::String, Value::String(s)) => s.is_empty(),
        (Ty::Bool, Value::Bool(b)) => !b,
        (Ty::Int32 | Ty::Int64 | Ty::Double, Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// The JSONSchemaProps message inside a `JSONSchemaPropsOr*` wrapper.
fn schema_field(msg: &'static Message) -> Option<&'static Message> {
    msg.fields.iter().find_map(|f| match f.ty {
        Ty::Message(i) if f.json == "schema" => Some(schema::message(i)),
        _ => None,
    })
}

fn is_table(m: &Map<String, Value>) -> bool {
    m.get("kind").and_then(Value::as_str) == Some("Table")
        && m.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("meta.k8s.io/"))
}

/// `{"type", "object"}`: a watch event (meta.k8s.io WatchEvent, written without TypeMeta).
fn is_watch_event(m: &Map<String, Value>) -> bool {
    m.len() == 2 && m.get("type").is_some_and(Value::is_string) && m.contains_key("object")
}

/// `[a,b,…]`, each item written by `each`.
fn array<T>(items: &[T], out: &mut Vec<u8>, mut each: impl FnMut(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(item, out);
    }
    out.push(b']');
}

fn comma(first: &mut bool, out: &mut Vec<u8>) {
    if *first {
        *first = false;
    } else {
        out.push(b',');
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        // Containers are written by the caller.
        Value::Array(_) | Value::Object(_) => out.extend_from_slice(b"null"),
    }
}

/// A number as Go's encoding/json writes a float64 or an integer.
fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        return;
    }
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    out.extend_from_slice(go_float(f).as_bytes());
}

/// Go's `strconv.AppendFloat(f, 'f' or 'e', -1, 64)` as encoding/json picks them: `'e'` below
/// 1e-6 and from 1e21, with a one-digit negative exponent where Go's is `e-07`.
pub(super) fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    // Rust: `1.5e-7`, `1e21`; Go: `1.5e-07` cleaned up to `1.5e-7`, `1e+21`.
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => s,
    }
}

/// Which bytes need a look when writing a string: `u` for `\u00XX`, a letter for its short
/// escape, `h` for the HTML-safe `\u00XX` of `<`, `>`, `&`, `e` for a possible U+2028/U+2029.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'<' as usize] = b'h';
    t[b'>' as usize] = b'h';
    t[b'&' as usize] = b'h';
    t[0xe2] = b'e';
    t
};

/// A JSON string as Go's encoding/json writes it (HTML-safe): control characters, `"`, `\`,
/// `<`, `>`, `&` and U+2028/U+2029 (`E2 80 A8`/`A9`) are escaped.
pub(super) fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let kind = ESCAPE[usize::from(b)];
        if kind == 0 {
            i += 1;
            continue;
        }
        let mut len = 1;
        match kind {
            b'e' => {
                if bytes.get(i + 1) != Some(&0x80) || !matches!(bytes.get(i + 2), Some(0xa8 | 0xa9))
                {
                    i += 1;
                    continue;
                }
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 { b"\\u2028" } else { b"\\u2029" });
                len = 3;
            }
            b'u' | b'h' => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            short => {
                out.extend_from_slice(&bytes[start..i]);
                out.push(b'\\');
                out.push(short);
            }
        }
        i += len;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube's own serialization of every GA kind of Kubernetes 1.35 (the api's
    /// compatibility fixtures; see testdata/kube-v1.35/README.md).
    fn fixtures() -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/protobuf/testdata/kube-v1.35");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).expect("fixtures").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".json") else { continue };
            let json = std::fs::read(e.path()).expect("read");
            let pb = std::fs::read(dir.join(format!("{stem}.pb"))).ok();
            out.push((stem.to_string(), json, pb));
        }
        out.sort();
        assert!(out.len() > 80, "the fixtures are missing: {}", out.len());
        out
    }

    /// `json` without the whitespace outside strings (the fixtures are indented).
    fn compact(json: &[u8]) -> Vec<u8> {
        let (mut out, mut in_str, mut esc) = (Vec::with_capacity(json.len()), false, false);
        for &b in json {
            if in_str {
                out.push(b);
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
            } else if !b.is_ascii_whitespace() {
                in_str = b == b'"';
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn every_ga_kind_should_be_written_byte_for_byte_as_kube_writes_it() {
        let mut wrong = Vec::new();
        for (name, json, _) in fixtures() {
            let v: Value = serde_json::from_slice(&json).expect("fixture is JSON");
            let want = compact(&json);
            let got = to_vec(&v);
            if got != want {
                let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                let from = at.saturating_sub(60);
                wrong.push(format!(
                    "{name}: at byte {at}\n   got  …{}\n   want …{}",
                    String::from_utf8_lossy(&got[from..(at + 60).min(got.len())]),
                    String::from_utf8_lossy(&want[from..(at + 60).min(want.len())])
                ));
            }
        }
        assert!(wrong.is_empty(), "{} kinds differ:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn every_ga_kind_should_decode_from_kube_protobuf_to_kube_json() {
        let mut wrong = Vec::new();
        for (name, json, pb) in fixtures() {
            // A watch event's protobuf frame is not an envelope (see `watch_frame`).
            let Some(pb) = pb.filter(|_| name != "core.v1.WatchEvent") else { continue };
            let want: Value = serde_json::from_slice(&json).expect("fixture is JSON");
            match super::super::decode(&pb) {
                Ok(got) if to_vec(&got) == to_vec(&want) => {}
                Ok(got) => wrong.push(format!(
                    "{name}:\n   got  {}\n   want {}",
                    String::from_utf8_lossy(&to_vec(&got)),
                    String::from_utf8_lossy(&to_vec(&want))
                )),
                Err(e) => wrong.push(format!("{name}: {e}")),
            }
        }
        assert!(wrong.is_empty(), "{} kinds differ:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn strings_should_be_escaped_as_go_escapes_them() {
        let mut out = Vec::new();
        write_str("a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{2028}\u{2029}é😀", &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#""a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u2028\u2029é😀""#
        );
    }

    #[test]
    fn floats_should_be_formatted_as_go_formats_a_float64() {
        for (f, want) in [
            (0.0, "0"),
            (1.5, "1.5"),
            (100.0, "100"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-2.5e22, "-2.5e+22"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn stored_form_should_leave_out_only_the_resource_version() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "7", "uid": "u"}, "spec": {}});
        assert_eq!(
            String::from_utf8(to_vec_stored(&pod)).expect("utf8"),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","uid":"u"},"spec":{}}"#
        );
        let cr = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "resourceVersion": "7"}, "spec": {"b": 1, "a": 2}});
        assert_eq!(
            String::from_utf8(to_vec_stored(&cr)).expect("utf8"),
            r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"a":2,"b":1}}"#
        );
    }

    #[test]
    fn only_the_outermost_resource_version_should_be_left_out_of_the_stored_form() {
        let cr = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "resourceVersion": "7",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u"}]},
            "spec": {"template": {"metadata": {"resourceVersion": "3"}},
                "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": "4", "name": "p"}}}});
        assert_eq!(
            String::from_utf8(to_vec_stored(&cr)).expect("utf8"),
            concat!(
                r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","#,
                r#""ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"d","uid":"u"}]},"#,
                r#""spec":{"embedded":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","resourceVersion":"4"}},"#,
                r#""template":{"metadata":{"resourceVersion":"3"}}}}"#
            )
        );
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "resourceVersion": "9"},
            "spec": {"containers": [{"name": "c", "stdin": false, "tty": true}], "hostNetwork": false}});
        assert_eq!(
            String::from_utf8(to_vec_stored(&pod)).expect("utf8"),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","tty":true}]}}"#,
            "zeros Go omits are not written"
        );
    }

    #[test]
    fn a_table_should_be_written_in_its_go_order() {
        let t = serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table",
            "metadata": {"resourceVersion": "5", "continue": "c"},
            "columnDefinitions": [{"priority": 0, "description": "d", "format": "name",
                "type": "string", "name": "Name"}],
            "rows": [{"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"uid": "u", "name": "p"}},
                "cells": ["p"]}]});
        assert_eq!(
            String::from_utf8(to_vec(&t)).expect("utf8"),
            concat!(
                r#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"5","continue":"c"},"#,
                r#""columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"d","priority":0}],"#,
                r#""rows":[{"cells":["p"],"object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","uid":"u"}}}]}"#
            )
        );
    }
}
