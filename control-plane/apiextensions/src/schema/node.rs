//! A version's `openAPIV3Schema` parsed once: kube's `Structural` (type, properties, items,
//! additionalProperties, defaults, the `x-kubernetes-*` extensions) together with the value
//! validations kube-openapi checks (`allOf`/`anyOf`/`oneOf`/`not` included, as schemas of
//! their own). Parsing is lenient: a field of the wrong JSON type is ignored, as the CRD's
//! own validation has refused such schemas before they are served.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::formats::StringFormat;
use super::gofmt;
use super::pattern::Pattern;

/// A JSON value's type as kube-openapi names it once decoded the Go way: integer literals
/// that fit an int64 are `integer`, every other number is `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    Null,
}

impl JsonType {
    pub fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
        }
    }

    pub fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_i64() => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    fn from_name(s: &str) -> Option<JsonType> {
        Some(match s {
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "string" => JsonType::String,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "boolean" => JsonType::Boolean,
            "null" => JsonType::Null,
            _ => return None,
        })
    }
}

/// The types a node accepts, as kube-openapi's `spec.StringOrArray` after apiextensions'
/// conversion (`x-kubernetes-int-or-string` becomes `[integer, string]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Types {
    /// No `type`: anything goes (preserve-unknown-fields and int-or-string nodes).
    #[default]
    Any,
    One(JsonType),
    IntOrString,
    /// A type kube does not know; only a value of that name would match, i.e. none.
    Other(String),
}

impl Types {
    pub(crate) fn is_set(&self) -> bool {
        !matches!(self, Types::Any)
    }

    pub(crate) fn contains(&self, t: JsonType) -> bool {
        match self {
            Types::Any => false,
            Types::One(x) => *x == t,
            Types::IntOrString => matches!(t, JsonType::Integer | JsonType::String),
            Types::Other(s) => s == t.name(),
        }
    }

    /// `strings.Join(Type, ",")`.
    pub(crate) fn joined(&self) -> &str {
        match self {
            Types::Any => "",
            Types::One(t) => t.name(),
            Types::IntOrString => "integer,string",
            Types::Other(s) => s,
        }
    }
}

/// The format a node is checked against, after apiextensions drops the formats it does not
/// support for the node's type (`StripUnsupportedFormatsPostProcessor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CheckedFormat {
    #[default]
    None,
    /// `int32`/`int64` on an integer, `float`/`double` on a number.
    Numeric(NumericFormat),
    String(StringFormat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericFormat {
    Int32,
    Int64,
    Float,
    Double,
}

/// `x-kubernetes-list-type`, with the map keys of a `map` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// `x-kubernetes-map-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Granular,
    Atomic,
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
pub enum AdditionalProperties {
    Allowed(bool),
    Schema(Box<Node>),
}

impl AdditionalProperties {
    /// The schema of the values, if `additionalProperties` is one (kube's
    /// `AdditionalProperties.Structural`).
    pub fn schema(&self) -> Option<&Node> {
        match self {
            AdditionalProperties::Schema(s) => Some(s),
            AdditionalProperties::Allowed(_) => None,
        }
    }
}

/// One node of a schema.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// `type` as written (`""` when absent).
    pub type_: String,
    /// `format` as written.
    pub format: String,
    pub nullable: bool,
    /// `default`, already pruned as kube prunes defaults when it serves a schema.
    pub default: Option<Value>,
    pub properties: BTreeMap<String, Node>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Node>>,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub int_or_string: bool,
    pub list_type: Option<ListType>,
    pub map_type: Option<MapType>,
    pub(crate) types: Types,
    pub(crate) checked_format: CheckedFormat,
    pub(crate) checks: Option<Box<Checks>>,
}

/// A numeric bound (`maximum`, `minimum`, `multipleOf`) and whether kube-openapi finds it
/// of the node's numeric type and format (if not, every number checked against it earns
/// a `… boundary value must be of type …` error, as in kube).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub value: f64,
    pub exclusive: bool,
    pub in_range: bool,
}

/// The value validations of a node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    pub maximum: Option<Bound>,
    pub minimum: Option<Bound>,
    pub multiple_of: Option<Bound>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub pattern: Option<Pattern>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub unique_items: bool,
    pub enum_values: Vec<Value>,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub required: Vec<String>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
}

impl Checks {
    fn is_empty(&self) -> bool {
        self.maximum.is_none()
            && self.minimum.is_none()
            && self.multiple_of.is_none()
            && self.max_length.is_none()
            && self.min_length.is_none()
            && self.pattern.is_none()
            && self.max_items.is_none()
            && self.min_items.is_none()
            && !self.unique_items
            && self.enum_values.is_empty()
            && self.max_properties.is_none()
            && self.min_properties.is_none()
            && self.required.is_empty()
            && self.all_of.is_empty()
            && self.any_of.is_empty()
            && self.one_of.is_empty()
            && self.not.is_none()
    }
}

pub(crate) fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn bool_field(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// An integer field (`maxLength`, …); a float with no fraction is taken too.
pub(crate) fn int_field(m: &Map<String, Value>, k: &str) -> Option<i64> {
    let n = m.get(k)?.as_number()?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
}

fn float_field(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k)?.as_f64()
}

impl Node {
    /// `required`.
    pub fn required(&self) -> &[String] {
        self.checks.as_ref().map_or(&[], |c| &c.required)
    }

    /// `enum`.
    pub fn enum_values(&self) -> &[Value] {
        self.checks.as_ref().map_or(&[], |c| &c.enum_values)
    }

    /// `maxLength`, `maxItems`, `maxProperties`: the bounds CEL cost estimates start from.
    pub fn max_length(&self) -> Option<i64> {
        self.checks.as_ref().and_then(|c| c.max_length)
    }

    pub fn max_items(&self) -> Option<i64> {
        self.checks.as_ref().and_then(|c| c.max_items)
    }

    pub fn max_properties(&self) -> Option<i64> {
        self.checks.as_ref().and_then(|c| c.max_properties)
    }

    /// Parses one schema node and everything under it.
    pub fn parse(v: &Value) -> Node {
        let Some(m) = v.as_object() else { return Node::default() };
        let type_ = str_field(m, "type").to_string();
        let format = str_field(m, "format").to_string();
        let int_or_string = bool_field(m, "x-kubernetes-int-or-string");
        let types = if int_or_string {
            Types::IntOrString
        } else if type_.is_empty() {
            Types::Any
        } else {
            JsonType::from_name(&type_).map_or_else(|| Types::Other(type_.clone()), Types::One)
        };
        let checked_format = checked_format(&types, &format);
        let list_type = match str_field(m, "x-kubernetes-list-type") {
            "atomic" => Some(ListType::Atomic),
            "set" => Some(ListType::Set),
            "map" => Some(ListType::Map(
                m.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            )),
            _ => None,
        };
        let map_type = match str_field(m, "x-kubernetes-map-type") {
            "granular" => Some(MapType::Granular),
            "atomic" => Some(MapType::Atomic),
            _ => None,
        };
        let properties = m
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), Node::parse(v))).collect())
            .unwrap_or_default();
        let additional_properties = match m.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(AdditionalProperties::Allowed(*b)),
            Some(s @ Value::Object(_)) => {
                Some(AdditionalProperties::Schema(Box::new(Node::parse(s))))
            }
            _ => None,
        };
        let items = match m.get("items") {
            Some(s @ Value::Object(_)) => Some(Box::new(Node::parse(s))),
            _ => None,
        };
        let mut node = Node {
            nullable: bool_field(m, "nullable"),
            default: m.get("default").filter(|d| !d.is_null()).cloned(),
            properties,
            additional_properties,
            items,
            preserve_unknown_fields: bool_field(m, "x-kubernetes-preserve-unknown-fields"),
            embedded_resource: bool_field(m, "x-kubernetes-embedded-resource"),
            int_or_string,
            list_type,
            map_type,
            types,
            checked_format,
            checks: None,
            type_,
            format,
        };
        let checks = node.parse_checks(m);
        if !checks.is_empty() {
            node.checks = Some(Box::new(checks));
        }
        node
    }

    fn parse_checks(&self, m: &Map<String, Value>) -> Checks {
        let schemas = |k: &str| -> Vec<Node> {
            m.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Node::parse).collect())
                .unwrap_or_default()
        };
        let bound = |k: &str, excl: &str, label: &str| {
            float_field(m, k).map(|value| Bound {
                value,
                exclusive: bool_field(m, excl),
                in_range: self.range_error(&Value::from(value), label, String::new).is_none(),
            })
        };
        Checks {
            maximum: bound("maximum", "exclusiveMaximum", "Maximum boundary"),
            minimum: bound("minimum", "exclusiveMinimum", "Minimum boundary"),
            multiple_of: bound("multipleOf", "", "MultipleOf"),
            max_length: int_field(m, "maxLength"),
            min_length: int_field(m, "minLength"),
            pattern: m
                .get("pattern")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(Pattern::new),
            max_items: int_field(m, "maxItems"),
            min_items: int_field(m, "minItems"),
            unique_items: bool_field(m, "uniqueItems"),
            enum_values: m.get("enum").and_then(Value::as_array).cloned().unwrap_or_default(),
            max_properties: int_field(m, "maxProperties"),
            min_properties: int_field(m, "minProperties"),
            required: m
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            all_of: schemas("allOf"),
            any_of: schemas("anyOf"),
            one_of: schemas("oneOf"),
            not: m.get("not").filter(|n| n.is_object()).map(|n| Box::new(Node::parse(n))),
        }
    }

    /// The format the type validator sees (`t.Format`): the format as written, when kept.
    pub(crate) fn type_format(&self) -> Option<&str> {
        (self.checked_format != CheckedFormat::None).then_some(self.format.as_str())
    }

    /// The numeric type and format kube-openapi's number validator checks values against:
    /// only for a node of exactly one type, `integer` or `number`.
    fn numeric_kind(&self) -> (&'static str, Option<NumericFormat>) {
        let format = match self.checked_format {
            CheckedFormat::Numeric(f) => Some(f),
            _ => None,
        };
        match self.types {
            Types::One(JsonType::Integer) => ("integer", format),
            Types::One(JsonType::Number) => ("number", format),
            _ => ("", None),
        }
    }

    /// kube-openapi's `IsValueValidAgainstRange`: the message when `n` is not of the node's
    /// numeric type and format (an integer field given `1.5`, an int32 given 2³¹), `path`
    /// being the value's kube-openapi path.
    pub(crate) fn range_error(
        &self,
        n: &Value,
        prefix: &str,
        path: impl FnOnce() -> String,
    ) -> Option<String> {
        let (type_name, format) = self.numeric_kind();
        let out_of_range = match (type_name, format) {
            ("integer", Some(NumericFormat::Int32)) => {
                !fits_int(n, i32::MIN.into(), i32::MAX.into())
            }
            ("integer", _) => !fits_int(n, i64::MIN.into(), i64::MAX.into()),
            (_, Some(NumericFormat::Float)) => {
                n.as_f64().is_some_and(|f| f.is_finite() && f.abs() > f64::from(f32::MAX))
            }
            _ => false,
        };
        if !out_of_range {
            return None;
        }
        let path = path();
        Some(if format.is_some() {
            format!(
                "{prefix} value must be of type {type_name} with format {} in {path}",
                self.format
            )
        } else {
            format!("{prefix} value must be of type {type_name} (default format) in {path}")
        })
    }
}

/// Whether `strconv.ParseInt(FormatFloat(n, 'f', -1), 10, bits)` succeeds: an integer, or a
/// float with no fraction, within `[min, max]`.
fn fits_int(n: &Value, min: i128, max: i128) -> bool {
    if let Some(i) = n.as_i64() {
        return (min..=max).contains(&i128::from(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.is_finite() => {
            // Integral floats print without a decimal point; the range is checked exactly.
            let text = gofmt::float_f(f);
            text.parse::<i128>().is_ok_and(|i| (min..=max).contains(&i))
        }
        _ => false,
    }
}

fn checked_format(types: &Types, format: &str) -> CheckedFormat {
    if format.is_empty() {
        return CheckedFormat::None;
    }
    match types {
        Types::Any | Types::IntOrString | Types::One(JsonType::String) => {
            StringFormat::from_name(format).map_or(CheckedFormat::None, CheckedFormat::String)
        }
        Types::One(JsonType::Integer) => match format {
            "int32" => CheckedFormat::Numeric(NumericFormat::Int32),
            "int64" => CheckedFormat::Numeric(NumericFormat::Int64),
            _ => CheckedFormat::None,
        },
        Types::One(JsonType::Number) => match format {
            "float" => CheckedFormat::Numeric(NumericFormat::Float),
            "double" => CheckedFormat::Numeric(NumericFormat::Double),
            _ => CheckedFormat::None,
        },
        _ => CheckedFormat::None,
    }
}
