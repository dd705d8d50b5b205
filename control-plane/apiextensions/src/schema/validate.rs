//! kube-openapi's schema validator (`k8s.io/kube-openapi/pkg/validation/validate`) as
//! apiextensions runs it on custom objects, and the conversion of its results to field
//! errors (`kubeOpenAPIResultToFieldErrors`).
//!
//! The validators of a node run in kube-openapi's order — type, `allOf`/`anyOf`/`oneOf`/
//! `not`, string, format, number, array, enum, object — each where it applies to the
//! value's kind (so an integer field given `"x"` also earns its `enum` error, as in kube).
//! An object's fields are visited in the object's key order, so errors come out in a
//! deterministic order; as in kube, an error whose message was already reported is
//! dropped. The "match count" kube-openapi keeps to pick the `anyOf`/`oneOf` branch whose
//! errors it reports is kept the same way.
//!
//! Paths are built only for errors: the walk keeps a stack of borrowed segments.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::{Map, Number, Value};

use super::gofmt::{self, float_v, quote};
use super::node::{AdditionalProperties, Bound, CheckedFormat, JsonType, Node};
use crate::errors::{ErrorType, FieldError};

/// One step of the path kube-openapi names a value by.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    /// A declared property: `spec.replicas`.
    Prop(&'a str),
    /// A key under `additionalProperties`: always `.key`, even at the root.
    Key(&'a str),
    Index(usize),
}

struct Issue {
    /// kube-openapi's message: what duplicates are recognized by.
    message: String,
    error: FieldError,
}

/// Runs kube-openapi's validation of `data` against `node`. `prefix` is the field path the
/// names are children of (`None`: kube's nil path, printed `<nil>`).
pub(crate) fn validate(node: &Node, data: &Value, prefix: Option<&str>) -> Vec<FieldError> {
    let mut w = Walk { prefix, path: Vec::new(), issues: Vec::new() };
    w.node(node, data);
    w.finish()
}

struct Walk<'a, 'p> {
    prefix: Option<&'p str>,
    path: Vec<Seg<'a>>,
    issues: Vec<Issue>,
}

/// A JSON number as Go decodes it: an int64 when the literal is one, else a float64.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        match n.as_i64() {
            Some(i) => Num::Int(i),
            None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn value(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) => float_value(f),
        }
    }
}

/// A float64 as a bad value: integral ones as integers, so they print as Go's `%v` does
/// (`11`, not `11.0`).
fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// go-openapi's `swag.IsFloat64AJSONInteger`.
pub(crate) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9007199254740991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f == f.trunc() {
        return true;
    }
    if f < 0.0 {
        // Go's uint64 of a negative float wraps; only exact integers pass.
        return false;
    }
    let g = f.trunc();
    if g == 0.0 {
        return false;
    }
    (f - g).abs() / (f + g).min(f64::MAX) < 1e-9
}

impl<'a> Walk<'a, '_> {
    /// kube-openapi's path of the current value (`spec.items[2].name`, `.key` for a map
    /// entry at the root).
    fn name(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Prop(p) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(p);
                }
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }

    /// The field path of an error named `name`: the prefix's child (`fldPath.Child(name)`).
    fn field(&self, name: &str) -> String {
        let name = name.strip_prefix('.').unwrap_or(name);
        match self.prefix {
            _ if name.is_empty() => self.bare_field(),
            None => name.to_string(),
            Some(p) => format!("{p}.{name}"),
        }
    }

    /// The prefix alone, for errors kube-openapi gives no name (`<nil>` at a CR's root).
    fn bare_field(&self) -> String {
        self.prefix.unwrap_or("<nil>").to_string()
    }

    fn push(&mut self, message: String, error: FieldError) {
        self.issues.push(Issue { message, error });
    }

    /// An error of kube-openapi's `default:` branch: `field.Invalid(name, value, message)`.
    fn invalid(&mut self, name: &str, value: Value, message: String) {
        let e = FieldError::invalid(self.field(name), value, message.clone());
        self.push(message, e);
    }

    /// A plain Go error (range checks, `anyOf`…): `field.Invalid(fldPath, "", message)`.
    fn plain(&mut self, message: String) {
        let e =
            FieldError::invalid(self.bare_field(), Value::String(String::new()), message.clone());
        self.push(message, e);
    }

    /// `errors.InvalidType`: `… in body must be of type <t>: "<found>"`.
    fn type_error(&mut self, type_name: &str, found: &str) {
        let name = self.name();
        let message = format!("{name} in body must be of type {type_name}: {}", quote(found));
        let e = FieldError::new(
            ErrorType::TypeInvalid,
            self.field(&name),
            Some(Value::String(found.to_string())),
            message.clone(),
        );
        self.push(message, e);
    }

    fn finish(self) -> Vec<FieldError> {
        if self.issues.len() < 2 {
            return self.issues.into_iter().map(|i| i.error).collect();
        }
        let mut seen = HashSet::new();
        self.issues
            .into_iter()
            .filter(|i| seen.insert(i.message.clone()))
            .map(|i| i.error)
            .collect()
    }

    /// Validates `data` at the current path; returns kube-openapi's match count.
    fn node(&mut self, n: &'a Node, data: &'a Value) -> usize {
        if data.is_null() {
            let mut count = 0;
            if n.types.is_set() && !n.types.contains(JsonType::Null) && !n.nullable {
                self.type_error(n.types.joined(), "null");
            } else {
                count += 1;
            }
            self.enumeration(n, data);
            return count;
        }
        let kind = JsonType::of(data);
        let mut count = 0;
        if n.types.is_set() || n.type_format().is_some() {
            count += 1 + self.type_check(n, data, kind);
        }
        count += 1 + self.schema_props(n, data);
        if let Value::String(s) = data {
            count += 1;
            self.string(n, s);
            if let CheckedFormat::String(f) = n.checked_format {
                count += 1;
                if !f.validates(s) {
                    self.type_error(&n.format, s);
                }
            }
        }
        if let Value::Number(num) = data {
            count += 2;
            self.number(n, Num::of(num));
        }
        if let Value::Array(items) = data {
            count += 1 + self.array(n, items);
        }
        count += 1;
        self.enumeration(n, data);
        if let Value::Object(map) = data {
            count += 1 + self.object(n, map);
        }
        count + 1
    }

    /// kube-openapi's `typeValidator`; 1 when the value is of the node's type.
    fn type_check(&mut self, n: &Node, data: &Value, kind: JsonType) -> usize {
        let t_format = n.type_format();
        let value_format = match kind {
            JsonType::Integer => "int64",
            JsonType::Number => "float64",
            _ => "",
        };
        let is_float_int = kind == JsonType::Number
            && data.as_f64().is_some_and(is_json_integer)
            && n.types.contains(JsonType::Integer);
        let is_int_float = kind == JsonType::Integer && n.types.contains(JsonType::Number);
        let stringish = matches!(kind, JsonType::String | JsonType::Array);
        if let Some(tf) = t_format
            && !stringish
            && !(n.types.contains(kind) || value_format == tf || is_float_int || is_int_float)
        {
            self.type_error(tf, value_format);
            return 0;
        }
        // A string format on a non-numeric node: strings and arrays pass the type check
        // (the format validator judges strings; arrays pass, as in kube).
        if t_format.is_some()
            && stringish
            && !(n.types.contains(JsonType::Number) || n.types.contains(JsonType::Integer))
        {
            return 1;
        }
        if !(n.types.contains(kind) || is_float_int || is_int_float) {
            self.type_error(n.types.joined(), kind.name());
            return 0;
        }
        1
    }

    /// Runs `f` with a fresh error list; returns its errors and match count.
    fn aside(&mut self, f: impl FnOnce(&mut Self) -> usize) -> (Vec<Issue>, usize) {
        let saved = std::mem::take(&mut self.issues);
        let count = f(self);
        (std::mem::replace(&mut self.issues, saved), count)
    }

    /// `allOf`, `anyOf`, `oneOf`, `not` (kube-openapi's `schemaPropsValidator`).
    fn schema_props(&mut self, n: &'a Node, data: &'a Value) -> usize {
        let Some(c) = &n.checks else { return 1 };
        let mut count = 0;
        if !c.any_of.is_empty() {
            let mut best: Option<(Vec<Issue>, usize)> = None;
            let mut first_success = None;
            for branch in &c.any_of {
                let (issues, cnt) = self.aside(|w| w.node(branch, data));
                if issues.is_empty() {
                    best = None;
                    first_success = Some(cnt);
                    break;
                }
                if best.as_ref().is_none_or(|(_, b)| cnt > *b) {
                    best = Some((issues, cnt));
                }
            }
            if first_success.is_none() {
                let m =
                    format!("{} must validate at least one schema (anyOf)", quote(&self.name()));
                self.plain(m);
            }
            match (best, first_success) {
                (Some((issues, cnt)), _) => {
                    self.issues.extend(issues);
                    count += cnt;
                }
                (None, Some(cnt)) => count += cnt,
                (None, None) => {}
            }
        }
        if !c.one_of.is_empty() {
            let mut best: Option<(Vec<Issue>, usize)> = None;
            let mut first_success = None;
            let mut validated = 0;
            for branch in &c.one_of {
                let (issues, cnt) = self.aside(|w| w.node(branch, data));
                if issues.is_empty() {
                    validated += 1;
                    best = None;
                    first_success.get_or_insert(cnt);
                    continue;
                }
                if validated == 0 && best.as_ref().is_none_or(|(_, b)| cnt > *b) {
                    best = Some((issues, cnt));
                }
            }
            if validated != 1 {
                let detail = if validated == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                let m = format!(
                    "{} must validate one and only one schema (oneOf). {detail}",
                    quote(&self.name())
                );
                self.plain(m);
                if let Some((issues, cnt)) = best {
                    self.issues.extend(issues);
                    count += cnt;
                }
            } else if let Some(cnt) = first_success {
                count += cnt;
            }
        }
        if !c.all_of.is_empty() {
            let mut validated = 0;
            for branch in &c.all_of {
                let (issues, cnt) = self.aside(|w| w.node(branch, data));
                if issues.is_empty() {
                    validated += 1;
                }
                self.issues.extend(issues);
                count += cnt;
            }
            if validated != c.all_of.len() {
                let none = if validated == 0 { ". None validated" } else { "" };
                let m =
                    format!("{} must validate all the schemas (allOf){none}", quote(&self.name()));
                self.plain(m);
            }
        }
        if let Some(not) = &c.not {
            let (issues, _) = self.aside(|w| w.node(not, data));
            if issues.is_empty() {
                let m = format!("{} must not validate the schema (not)", quote(&self.name()));
                self.plain(m);
            }
        }
        count + 1
    }

    /// maxLength, minLength, pattern: the first that fails.
    fn string(&mut self, n: &Node, s: &str) {
        let Some(c) = &n.checks else { return };
        let len = || s.chars().count() as i64;
        if let Some(max) = c.max_length
            && len() > max
        {
            let name = self.name();
            let message = format!("{name} in body should be at most {max} chars long");
            let detail = if max == 1 {
                "may not be more than 1 byte".to_string()
            } else if max >= 0 {
                format!("may not be more than {max} bytes")
            } else {
                "value is too long".to_string()
            };
            let e = FieldError::new(ErrorType::TooLong, self.field(&name), None, detail);
            self.push(message, e);
            return;
        }
        if let Some(min) = c.min_length
            && len() < min
        {
            let name = self.name();
            let m = format!("{name} in body should be at least {min} chars long");
            self.invalid(&name, Value::String(s.to_string()), m);
            return;
        }
        if let Some(p) = &c.pattern {
            let name = self.name();
            match &p.regex {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => {
                    let m = format!("{name} in body should match '{}'", p.source);
                    self.invalid(&name, Value::String(s.to_string()), m);
                }
                Err(why) => {
                    let m = format!(
                        "{name} in body should match '{}, but pattern is invalid: {why}'",
                        p.source
                    );
                    self.invalid(&name, Value::String(s.to_string()), m);
                }
            }
        }
    }

    /// The value's own range check, then multipleOf, minimum, maximum (kube's order).
    fn number(&mut self, n: &Node, num: Num) {
        if let Some(m) = n.range_error(&num.value(), "Checked", || self.name()) {
            self.plain(m);
        }
        let Some(c) = &n.checks else { return };
        let checks = [
            (c.multiple_of, "MultipleOf"),
            (c.minimum, "Minimum boundary"),
            (c.maximum, "Maximum boundary"),
        ];
        for (i, (bound, label)) in checks.into_iter().enumerate() {
            let Some(b) = bound else { continue };
            if !b.in_range
                && let Some(m) = n.range_error(&float_value(b.value), label, || self.name())
            {
                self.plain(m);
            }
            match i {
                0 => self.multiple_of(num, b),
                1 => self.bound(num, b, false),
                _ => self.bound(num, b, true),
            }
        }
    }

    /// `MultipleOfNativeType` for a bound of the node's type, else the float check.
    fn multiple_of(&mut self, num: Num, b: Bound) {
        match (num, b.in_range) {
            (Num::Int(i), true) => {
                let factor = b.value as i64;
                if factor <= 0 {
                    let name = self.name();
                    let m =
                        format!("factor MultipleOf declared for {name} must be positive: {factor}");
                    self.invalid(&name, Value::from(factor), m);
                } else if i % factor != 0 {
                    let name = self.name();
                    let m = format!("{name} in body should be a multiple of {factor}");
                    self.invalid(&name, Value::from(i), m);
                }
            }
            _ => {
                let (data, factor) = (num.as_f64(), b.value);
                if factor <= 0.0 {
                    let name = self.name();
                    let m = format!(
                        "factor MultipleOf declared for {name} must be positive: {}",
                        float_v(factor)
                    );
                    self.invalid(&name, float_value(factor), m);
                    return;
                }
                let mult = if factor < 1.0 { 1.0 / factor * data } else { data / factor };
                if !is_json_integer(mult) {
                    let name = self.name();
                    let m = format!("{name} in body should be a multiple of {}", float_v(factor));
                    let value = if b.in_range { num.value() } else { float_value(data) };
                    self.invalid(&name, value, m);
                }
            }
        }
    }

    /// `MaximumNativeType`/`MinimumNativeType`: integers against the bound truncated to an
    /// int64, floats against the bound.
    fn bound(&mut self, num: Num, b: Bound, max: bool) {
        let word = match (max, b.exclusive) {
            (true, false) => "less than or equal to",
            (true, true) => "less than",
            (false, false) => "greater than or equal to",
            (false, true) => "greater than",
        };
        let fails = |ord: std::cmp::Ordering| {
            let beyond = if max { ord.is_gt() } else { ord.is_lt() };
            beyond || (b.exclusive && ord.is_eq())
        };
        match (num, b.in_range) {
            (Num::Int(i), true) => {
                let limit = b.value as i64;
                if fails(i.cmp(&limit)) {
                    let name = self.name();
                    let m = format!("{name} in body should be {word} {limit}");
                    self.invalid(&name, Value::from(i), m);
                }
            }
            _ => {
                let f = num.as_f64();
                if f.partial_cmp(&b.value).is_some_and(fails) {
                    let name = self.name();
                    let m = format!("{name} in body should be {word} {}", float_v(b.value));
                    let value = if b.in_range { num.value() } else { float_value(f) };
                    self.invalid(&name, value, m);
                }
            }
        }
    }

    fn array(&mut self, n: &'a Node, items: &'a [Value]) -> usize {
        let mut count = 0;
        if let Some(item) = &n.items {
            for (i, v) in items.iter().enumerate() {
                self.path.push(Seg::Index(i));
                count += self.node(item, v);
                self.path.pop();
            }
        }
        if let Some(c) = &n.checks {
            let size = items.len() as i64;
            if let Some(min) = c.min_items
                && size < min
            {
                let name = self.name();
                let m = format!("{name} in body should have at least {min} items");
                self.invalid(&name, Value::from(size), m);
            }
            if let Some(max) = c.max_items
                && size > max
            {
                let name = self.name();
                let message = format!("{name} in body should have at most {max} items");
                let e = too_many(self.field(&name), size, max);
                self.push(message, e);
            }
            if c.unique_items && items.iter().enumerate().any(|(i, a)| items[..i].contains(a)) {
                let name = self.name();
                let m = format!("{name} in body shouldn't contain duplicates");
                self.invalid(&name, Value::String(String::new()), m);
            }
        }
        count + 1
    }

    fn enumeration(&mut self, n: &Node, data: &Value) {
        let Some(c) = &n.checks else { return };
        if c.enum_values.is_empty() || c.enum_values.iter().any(|e| enum_matches(data, e)) {
            return;
        }
        let name = self.name();
        let values: Vec<String> = c
            .enum_values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => {
                    let mut s = String::new();
                    gofmt::go_json(other, &mut s);
                    s
                }
            })
            .collect();
        let message = format!("{name} in body should be one of [{}]", values.join(" "));
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let e = FieldError::not_supported(self.field(&name), data.clone(), &refs);
        self.push(message, e);
    }

    fn object(&mut self, n: &'a Node, map: &'a Map<String, Value>) -> usize {
        let mut count = 0;
        if let Some(c) = &n.checks {
            let size = map.len() as i64;
            if let Some(min) = c.min_properties
                && size < min
            {
                let name = self.name();
                let m = format!("{name} in body should have at least {min} properties");
                self.invalid(&name, Value::from(size), m);
            }
            if let Some(max) = c.max_properties
                && size > max
            {
                let name = self.name();
                let message = format!("{name} in body should have at most {max} properties");
                let e = too_many(self.field(&name), size, max);
                self.push(message, e);
            }
        }
        let forbid_others =
            matches!(n.additional_properties, Some(AdditionalProperties::Allowed(false)));
        let others = n.additional_properties.as_ref().and_then(AdditionalProperties::schema);
        for (k, v) in map {
            if let Some(p) = n.properties.get(k) {
                self.path.push(Seg::Prop(k));
                count += self.node(p, v);
                self.path.pop();
            } else if forbid_others {
                let name = self.name();
                let m = format!("{name}.{k} in body is a forbidden property");
                self.invalid(&name, Value::String(k.clone()), m);
            } else if let Some(ap) = others {
                self.path.push(Seg::Key(k));
                count += self.node(ap, v);
                self.path.pop();
            }
        }
        if let Some(c) = &n.checks {
            for k in &c.required {
                if !map.contains_key(k) {
                    let name = format!("{}.{k}", self.name());
                    let message = format!("{name} in body is required");
                    let e = FieldError::required(self.field(&name), "");
                    self.push(message, e);
                }
            }
        }
        count
    }
}

/// `field.TooMany(path, actual, max)`.
fn too_many(field: String, actual: i64, max: i64) -> FieldError {
    let detail = match max {
        1 => "must have at most 1 item".to_string(),
        m if m >= 0 => format!("must have at most {m} items"),
        _ => "has too many items".to_string(),
    };
    FieldError::new(ErrorType::TooMany, field, Some(Value::from(actual)), detail)
}

/// kube-openapi's enum match: equal after converting the value to the enum value's Go type
/// (a float matches an integer enum value it truncates to; an integer matches a string
/// enum value that is its code point, as Go's `string(rune)` conversion has it). `null`
/// never matches.
fn enum_matches(data: &Value, e: &Value) -> bool {
    match (data, e) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(d), Value::Number(x)) => match (Num::of(d), Num::of(x)) {
            (Num::Int(a), Num::Int(b)) => a == b,
            (Num::Float(a), Num::Int(b)) => a.is_finite() && (a as i64) == b,
            (Num::Int(a), Num::Float(b)) => a as f64 == b,
            (Num::Float(a), Num::Float(b)) => a == b,
        },
        (Value::Number(d), Value::String(s)) => match Num::of(d) {
            Num::Int(i) => {
                let c = u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
                let mut it = s.chars();
                it.next() == Some(c) && it.next().is_none()
            }
            Num::Float(_) => false,
        },
        _ => data == e,
    }
}
