//! The CEL type of each node of a structural schema, as kube's `common.SchemaDeclType` and
//! `WithTypeAndObjectMeta` make it (`k8s.io/apiserver/pkg/cel/common/schemas.go`), with the
//! size bounds its cost estimator uses, and the conversion of a custom object's JSON to CEL
//! values by that type (`UnstructuredToVal`, `valuesunstructured.go`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull,
    CelString, CelTimestamp,
};
use cel::common::value::Val;
use serde_json::Value;

/// `celconfig.MaxRequestSizeBytes`: what bounds every unbounded list, map and string.
pub(crate) const MAX_REQUEST_SIZE: u64 = 3 * 1024 * 1024;

/// kube's minimal serialized sizes (`apiservercel.MinStringSize` and friends).
const MIN_STRING_SIZE: u64 = 2;
const MIN_BOOL_SIZE: u64 = 4;
const MIN_NUMBER_SIZE: u64 = 1;
const MIN_DURATION_SIZE: u64 = 4;
const MAX_DURATION_SIZE: u64 = 22;
const DATE_SIZE: u64 = 12;
const MIN_DATETIME_SIZE: u64 = 22;
const MAX_DATETIME_SIZE: u64 = 37;
/// `metadata.name` and `metadata.generateName` as kube caps them for cost estimates.
const NAME_MAX_LENGTH: u64 = 253;

/// What a node is in CEL.
#[derive(Debug)]
pub(crate) enum Kind {
    /// `properties`: a CEL object whose fields are the properties with a CEL type and a name
    /// CEL can spell (escaped: `foo-bar` is `foo__dash__bar`).
    Object {
        fields: BTreeMap<String, Field>,
    },
    /// `additionalProperties`: `map(string, values)`.
    Map {
        values: Arc<Decl>,
    },
    List {
        items: Arc<Decl>,
    },
    String,
    Bytes,
    Duration,
    /// `date` (`date_only`) and `date-time`.
    Timestamp {
        date_only: bool,
    },
    Int,
    Double,
    Bool,
    /// `x-kubernetes-int-or-string`: `dyn`, an int or a string at run time.
    IntOrString,
}

#[derive(Debug)]
pub(crate) struct Field {
    /// The name CEL spells the property with.
    pub escaped: String,
    pub decl: Arc<Decl>,
}

/// One node's CEL type.
#[derive(Debug)]
pub(crate) struct Decl {
    pub kind: Kind,
    /// The largest size a value may have: bytes of a string, items of a list, entries of a
    /// map (kube's `DeclType.MaxElements`).
    pub max_elements: u64,
    /// The fewest bytes a value takes in JSON (kube's `MinSerializedSize`).
    pub min_size: u64,
}

impl Decl {
    fn new(kind: Kind, max_elements: u64, min_size: u64) -> Arc<Decl> {
        Arc::new(Decl { kind, max_elements, min_size })
    }

    /// The field named `name` (as CEL spells it).
    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        match &self.kind {
            Kind::Object { fields } => fields.values().find(|f| f.escaped == name),
            _ => None,
        }
    }
}

fn int_of(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_i64).map(|n| n.max(0) as u64)
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// The CEL type of `schema`, `None` where kube has none (no `type`, an array without
/// `items`): such a node is left out of its parent and out of reach of rules.
/// `resource_root`: the root of the object or an `x-kubernetes-embedded-resource`, where
/// `apiVersion`, `kind` and `metadata.name`/`generateName` are always declared (and no other
/// field of `metadata`).
pub(crate) fn decl_of(schema: &Value, resource_root: bool) -> Option<Arc<Decl>> {
    if is_true(schema, "x-kubernetes-int-or-string") {
        let max = match int_of(schema, "maxLength") {
            Some(n) => n.saturating_mul(4),
            None => MAX_REQUEST_SIZE - 2,
        };
        return Some(Decl::new(Kind::IntOrString, max, 1));
    }
    match schema.get("type").and_then(Value::as_str).unwrap_or("") {
        "array" => {
            let items = schema.get("items").filter(|i| i.is_object())?;
            let items = decl_of(items, is_true(items, "x-kubernetes-embedded-resource"))?;
            let max =
                int_of(schema, "maxItems").unwrap_or((MAX_REQUEST_SIZE - 2) / (items.min_size + 1));
            Some(Decl::new(Kind::List { items }, max, 2))
        }
        "object" => {
            if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let values = decl_of(values, is_true(values, "x-kubernetes-embedded-resource"))?;
                let max = int_of(schema, "maxProperties")
                    .unwrap_or((MAX_REQUEST_SIZE - 2) / (values.min_size + 6));
                return Some(Decl::new(Kind::Map { values }, max, 2));
            }
            Some(object_decl(schema, resource_root))
        }
        "string" => Some(string_decl(schema)),
        "boolean" => Some(Decl::new(Kind::Bool, 0, MIN_BOOL_SIZE)),
        "number" => Some(Decl::new(Kind::Double, 0, MIN_NUMBER_SIZE)),
        "integer" => Some(Decl::new(Kind::Int, 0, MIN_NUMBER_SIZE)),
        _ => None,
    }
}

fn object_decl(schema: &Value, resource_root: bool) -> Arc<Decl> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = BTreeMap::new();
    let mut min_size = 2;
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let Some(decl) = decl_of(prop, is_true(prop, "x-kubernetes-embedded-resource")) else {
                continue;
            };
            if required.contains(&name.as_str()) && prop.get("default").is_none() {
                min_size += name.len() as u64 + decl.min_size + 4;
            }
            if let Some(escaped) = escape(name) {
                fields.insert(name.clone(), Field { escaped, decl });
            }
        }
    }
    if resource_root {
        let plain = || Decl::new(Kind::String, MAX_REQUEST_SIZE - 2, MIN_STRING_SIZE);
        let capped = |max| Decl::new(Kind::String, max, MIN_STRING_SIZE);
        for name in ["apiVersion", "kind"] {
            fields.insert(name.to_string(), Field { escaped: name.to_string(), decl: plain() });
        }
        let meta = BTreeMap::from([
            ("name".to_string(), Field { escaped: "name".into(), decl: capped(NAME_MAX_LENGTH) }),
            (
                "generateName".to_string(),
                Field { escaped: "generateName".into(), decl: capped(NAME_MAX_LENGTH - 1) },
            ),
        ]);
        let meta = Decl::new(Kind::Object { fields: meta }, 0, 2);
        fields.insert("metadata".to_string(), Field { escaped: "metadata".into(), decl: meta });
    }
    Decl::new(Kind::Object { fields }, 0, min_size)
}

fn string_decl(schema: &Value) -> Arc<Decl> {
    let max_length = int_of(schema, "maxLength");
    match schema.get("format").and_then(Value::as_str).unwrap_or("") {
        "byte" => {
            let max = max_length.unwrap_or(MAX_REQUEST_SIZE - 2);
            Decl::new(Kind::Bytes, max, MIN_STRING_SIZE)
        }
        "duration" => Decl::new(Kind::Duration, MAX_DURATION_SIZE, MIN_DURATION_SIZE),
        "date" => Decl::new(Kind::Timestamp { date_only: true }, DATE_SIZE, DATE_SIZE),
        "date-time" => {
            Decl::new(Kind::Timestamp { date_only: false }, MAX_DATETIME_SIZE, MIN_DATETIME_SIZE)
        }
        _ => {
            let enum_max = schema.get("enum").and_then(Value::as_array).map(|values| {
                values.iter().filter_map(Value::as_str).map(|s| s.len() as u64).max().unwrap_or(0)
            });
            // maxLength counts runes; a rune is up to 4 bytes.
            let max = match (max_length, enum_max) {
                (Some(n), _) => n.saturating_mul(4),
                (None, Some(n)) => n,
                (None, None) => MAX_REQUEST_SIZE - 2,
            };
            Decl::new(Kind::String, max, MIN_STRING_SIZE)
        }
    }
}

/// CEL's reserved words: a property so named is spelled `__name__`.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// kube's `cel.Escape`: how CEL spells a property name, `None` when it cannot.
pub(crate) fn escape(name: &str) -> Option<String> {
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// `value` as a CEL value of type `decl`: integers as ints, numbers as doubles, `byte`
/// strings as bytes, `date`/`date-time` as timestamps, `duration` as durations; an object
/// holds only its declared fields (under their escaped names). Strings are borrowed. Data
/// that does not fit the type (which schema validation refuses first) is converted as
/// plain JSON.
pub(crate) fn to_cel<'v>(value: &'v Value, decl: &'v Decl) -> Box<dyn Val + 'v> {
    match (&decl.kind, value) {
        (_, Value::Null) => Box::new(CelNull),
        (Kind::Object { fields }, Value::Object(map)) => {
            let mut entries: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> =
                HashMap::with_capacity(map.len().min(fields.len()));
            for (name, field) in fields {
                if let Some(v) = map.get(name) {
                    entries.insert(CelMapKey::from(field.escaped.as_str()), to_cel(v, &field.decl));
                }
            }
            Box::new(CelMap::from(entries))
        }
        (Kind::Map { values }, Value::Object(map)) => {
            let entries: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> =
                map.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), to_cel(v, values))).collect();
            Box::new(CelMap::from(entries))
        }
        (Kind::List { items }, Value::Array(list)) => {
            Box::new(CelList::from(list.iter().map(|v| to_cel(v, items)).collect::<Vec<_>>()))
        }
        (Kind::Bytes, Value::String(s)) => match base64_decode(s) {
            Some(bytes) => Box::new(CelBytes::from(bytes)),
            None => Box::new(CelString::from(s.as_str())),
        },
        (Kind::Duration, Value::String(s)) => match parse_go_duration(s) {
            Some(d) => Box::new(CelDuration::from(d)),
            None => Box::new(CelString::from(s.as_str())),
        },
        (Kind::Timestamp { date_only }, Value::String(s)) => match parse_timestamp(s, *date_only) {
            Some(t) => Box::new(CelTimestamp::from(t)),
            None => Box::new(CelString::from(s.as_str())),
        },
        (Kind::Double, Value::Number(n)) => Box::new(CelDouble::from(n.as_f64().unwrap_or(0.0))),
        (Kind::Int | Kind::IntOrString, Value::Number(n)) if n.is_i64() => {
            Box::new(CelInt::from(n.as_i64().unwrap_or(0)))
        }
        _ => plain(value),
    }
}

/// JSON as CEL without a schema (for data that does not fit its type).
fn plain(value: &Value) -> Box<dyn Val + '_> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(items.iter().map(plain).collect::<Vec<_>>())),
        Value::Object(map) => {
            let entries: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
                map.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), plain(v))).collect();
            Box::new(CelMap::from(entries))
        }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// An RFC 3339 `date-time`, or a `date` (`2006-01-02`, midnight UTC).
fn parse_timestamp(s: &str, date_only: bool) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if date_only {
        let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        let utc = chrono::FixedOffset::east_opt(0)?;
        return date.and_hms_opt(0, 0, 0)?.and_local_timezone(utc).single();
    }
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// A Go duration (`1h30m`, `-1.5s`, `300ms`), as `strfmt.ParseDuration` reads the format
/// kube's schemas use.
pub(crate) fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += number * scale;
    }
    if nanos > i64::MAX as f64 {
        return None;
    }
    let d = chrono::Duration::nanoseconds(nanos as i64);
    Some(if negative { -d } else { d })
}
