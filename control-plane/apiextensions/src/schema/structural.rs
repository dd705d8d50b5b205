//! Whether a version's `openAPIV3Schema` may be served, as the CRD's validation decides
//! (`validateCustomResourceDefinitionValidation` with v1's options): kube's
//! `ValidateStructural` (structural invariants and completeness, errors sorted as kube
//! sorts them), then `ValidateDefaults` (defaults pruned, and valid against their schema)
//! when the schema is structural, then the per-node checks of
//! `ValidateCustomResourceDefinitionOpenAPISchema` (unsupported keywords, `uniqueItems`,
//! `additionalProperties` with `properties`, defaults in metadata, list and map types).
//!
//! Not here: the `x-kubernetes-validations` rules (compiled, and their `rule`/`message`
//! fields checked, by `crate::cel`), CEL checks of defaults, and the root-fields rule of
//! CRDs with a status subresource ([`status_root_errors`]).

use serde_json::{Map, Value};

use super::node::{Node, bool_field, str_field};
use super::pattern;
use super::{objectmeta, prune, validate};
use crate::errors::FieldError;

const META_FIELDS: [&str; 3] = ["metadata", "kind", "apiVersion"];
const OPENAPI_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// See [`crate::schema::structural_errors`].
pub(crate) fn errors(schema: &Value, path: &str) -> Vec<FieldError> {
    let Some(root) = schema.as_object() else {
        return vec![FieldError::invalid(path, schema.clone(), "must be an object")];
    };
    let mut errs = Vec::new();
    if bool_field(root, "nullable") {
        errs.push(FieldError::forbidden(
            format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let unsupported = unsupported_field(schema);
    if unsupported.is_none() {
        let mut structural = Vec::new();
        invariants(root, Level::Root, path, &mut structural);
        completeness(root, path, &mut structural);
        if structural.is_empty() {
            let node = Node::parse(schema);
            defaults(&node, path, true, false, &mut errs);
        } else {
            // kube sorts by the whole error text, so the order does not hang on map order.
            let mut keyed: Vec<(String, FieldError)> =
                structural.into_iter().map(|e| (format!("{}: {}", e.field, e.body()), e)).collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            errs.extend(keyed.into_iter().map(|(_, e)| e));
        }
    }
    let ssv = Ssv { allow_defaults: true, reason: String::new(), inside_meta: false };
    openapi(schema, path, &ssv, true, &mut errs);
    if errs.is_empty()
        && let Some(why) = unsupported
    {
        errs.push(FieldError::invalid(path, Value::String(String::new()), why));
    }
    errs
}

/// The fields allowed at the root of a schema whose version has a status subresource.
const STATUS_ROOT_FIELDS: [(&str, &str); 22] = [
    ("description", "Description"),
    ("type", "Type"),
    ("format", "Format"),
    ("title", "Title"),
    ("maximum", "Maximum"),
    ("exclusiveMaximum", "ExclusiveMaximum"),
    ("minimum", "Minimum"),
    ("exclusiveMinimum", "ExclusiveMinimum"),
    ("maxLength", "MaxLength"),
    ("minLength", "MinLength"),
    ("pattern", "Pattern"),
    ("maxItems", "MaxItems"),
    ("minItems", "MinItems"),
    ("uniqueItems", "UniqueItems"),
    ("multipleOf", "MultipleOf"),
    ("required", "Required"),
    ("items", "Items"),
    ("properties", "Properties"),
    ("externalDocs", "ExternalDocs"),
    ("example", "Example"),
    ("x-kubernetes-preserve-unknown-fields", "XPreserveUnknownFields"),
    ("x-kubernetes-validations", "XValidations"),
];

/// kube's check of the schema root when the version has a status subresource: the root is
/// an object and uses only the fields that still mean the same once `status` is cut out.
/// `path` is the schema's (`spec.versions[0].schema.openAPIV3Schema`).
pub fn status_root_errors(schema: &Value, path: &str) -> Vec<FieldError> {
    let Some(root) = schema.as_object() else { return Vec::new() };
    for (k, v) in root {
        if is_zero(v) {
            continue;
        }
        if k == "type" {
            if v.as_str() != Some("object") {
                return vec![FieldError::invalid(
                    format!("{path}.type"),
                    v.clone(),
                    r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
                )];
            }
            continue;
        }
        if !STATUS_ROOT_FIELDS.iter().any(|(f, _)| f == k) {
            let names: Vec<&str> = STATUS_ROOT_FIELDS.iter().map(|(_, n)| *n).collect();
            return vec![FieldError::invalid(
                path,
                schema.clone(),
                format!(
                    "only [{}] fields are allowed at the root of the schema if the status subresource is enabled",
                    names.join(" ")
                ),
            )];
        }
    }
    Vec::new()
}

/// Go's zero value, as far as a JSON field can be one.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// What makes kube's `NewStructural` fail; it is reported only when nothing else is (the
/// other causes are all reported by the per-node checks, `$schema` is not).
fn unsupported_field(v: &Value) -> Option<String> {
    let m = v.as_object()?;
    let nonempty = |k: &str| match m.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    };
    let found = [
        ("id", "OpenAPIV3Schema 'id' is not supported"),
        ("$schema", "OpenAPIV3Schema 'schema' is not supported"),
        ("$ref", "OpenAPIV3Schema '$ref' is not supported"),
        ("patternProperties", "OpenAPIV3Schema 'patternProperties' is not supported"),
        ("dependencies", "OpenAPIV3Schema 'dependencies' is not supported"),
        ("additionalItems", "OpenAPIV3Schema 'additionalItems' is not supported"),
        ("definitions", "OpenAPIV3Schema 'definitions' is not supported"),
    ]
    .into_iter()
    .find(|(k, _)| {
        nonempty(k) || (*k == "additionalItems" && m.get(*k).is_some_and(|x| !x.is_null()))
    });
    if let Some((_, why)) = found {
        return Some(why.to_string());
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        return Some(
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
                .into(),
        );
    }
    if m.get("items").is_some_and(|i| i.as_array().is_some_and(|a| !a.is_empty())) {
        return Some("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
    }
    let children = ["not", "items", "additionalProperties"].into_iter().filter_map(|k| m.get(k));
    let lists = ["allOf", "anyOf", "oneOf"]
        .into_iter()
        .filter_map(|k| m.get(k).and_then(Value::as_array))
        .flatten();
    let props = m.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.values());
    children.chain(lists).chain(props).find_map(unsupported_field)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn props(m: &Map<String, Value>) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
    obj(m.get("properties")).into_iter().flatten().filter_map(|(k, v)| Some((k, v.as_object()?)))
}

fn schemas<'a>(
    m: &'a Map<String, Value>,
    k: &str,
) -> impl Iterator<Item = (usize, &'a Map<String, Value>)> {
    m.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| Some((i, v.as_object()?)))
}

fn has(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).is_some_and(|v| !v.is_null())
}

fn non_empty_list(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// `{type: integer}` then `{type: string}` and nothing else: int-or-string's `anyOf`.
fn is_int_or_string_any_of(m: &Map<String, Value>) -> bool {
    let only_type = |s: &Map<String, Value>, t: &str| {
        str_field(s, "type") == t && s.iter().all(|(k, v)| k == "type" || is_zero(v))
    };
    let branches: Vec<_> = schemas(m, "anyOf").map(|(_, s)| s).collect();
    m.get("anyOf").and_then(Value::as_array).is_some_and(|a| a.len() == 2)
        && branches.len() == 2
        && only_type(branches[0], "integer")
        && only_type(branches[1], "string")
}

fn is_int_or_string_all_of(m: &Map<String, Value>) -> bool {
    schemas(m, "allOf").next().is_some_and(|(i, first)| i == 0 && is_int_or_string_any_of(first))
}

/// kube's `validateStructuralInvariants`.
fn invariants(s: &Map<String, Value>, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let ty = str_field(s, "type");
    if ty == "array" && !has(s, "items") {
        errs.push(FieldError::required(format!("{path}.items"), "must be specified"));
    }
    if let Some(items) = obj(s.get("items")) {
        invariants(items, Level::Item, &format!("{path}.items"), errs);
    }
    for (k, p) in props(s) {
        invariants(p, Level::Field, &format!("{path}.properties[{k}]"), errs);
    }
    if has(s, "additionalProperties") {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                format!("{path}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(ap) = obj(s.get("additionalProperties")) {
            invariants(ap, Level::Field, &format!("{path}.additionalProperties"), errs);
        }
    }
    let int_or_string = bool_field(s, "x-kubernetes-int-or-string");
    let preserve = bool_field(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = bool_field(s, "x-kubernetes-embedded-resource");
    if int_or_string && preserve {
        errs.push(FieldError::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid(
            format!("{path}.x-kubernetes-embedded-resource"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    value_validation(s, is_int_or_string_any_of(s), is_int_or_string_all_of(s), lvl, path, errs);

    let check_metadata = lvl == Level::Root || embedded;
    if embedded && ty != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        errs.push(type_error(path, ty, msg));
    } else if ty.is_empty() && !int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(format!("{path}.type"), msg));
    }
    if embedded && has(s, "additionalProperties") {
        errs.push(FieldError::forbidden(
            format!("{path}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            Value::from(ty),
            "must be object at the root",
        ));
    }
    let properties = obj(s.get("properties"));
    for field in ["kind", "apiVersion"] {
        if let Some(p) = obj(properties.and_then(|p| p.get(field)))
            && check_metadata
            && str_field(p, "type") != "string"
        {
            errs.push(FieldError::invalid(
                format!("{path}.properties[{field}].type"),
                Value::from(str_field(p, "type")),
                "must be string",
            ));
        }
    }
    if let Some(meta) = obj(properties.and_then(|p| p.get("metadata"))) {
        let meta_path = format!("{path}.properties[metadata]");
        if check_metadata && str_field(meta, "type") != "object" {
            errs.push(FieldError::invalid(
                format!("{meta_path}.type"),
                Value::from(str_field(meta, "type")),
                "must be object",
            ));
        }
        if lvl == Level::Root && !root_metadata_is_plain(meta) {
            errs.push(FieldError::forbidden(
                meta_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && props(s).next().is_none() {
        errs.push(FieldError::required(
            format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// `Required` when `ty` is empty, else `Invalid`.
fn type_error(path: &str, ty: &str, msg: &str) -> FieldError {
    if ty.is_empty() {
        FieldError::required(format!("{path}.type"), msg)
    } else {
        FieldError::invalid(format!("{path}.type"), Value::from(ty), msg)
    }
}

/// A root `metadata` schema may say no more than its type, a default, and properties
/// `name` and/or `generateName`.
fn root_metadata_is_plain(meta: &Map<String, Value>) -> bool {
    meta.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" => true,
        "properties" => v.as_object().is_none_or(|p| {
            let name = p.contains_key("name");
            let generate = p.contains_key("generateName");
            p.is_empty()
                || (name && generate && p.len() == 2)
                || ((name || generate) && p.len() == 1)
        }),
        _ => is_zero(v),
    })
}

/// kube's `validateValueValidation`: the junctors of a node, and its pattern.
fn value_validation(
    s: &Map<String, Value>,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, v) in schemas(s, "anyOf") {
            nested(v, false, lvl, &format!("{path}.anyOf[{i}]"), errs);
        }
    }
    for (i, v) in schemas(s, "allOf") {
        nested(v, skip_first_all_of_any_of && i == 0, lvl, &format!("{path}.allOf[{i}]"), errs);
    }
    for (i, v) in schemas(s, "oneOf") {
        nested(v, false, lvl, &format!("{path}.oneOf[{i}]"), errs);
    }
    if let Some(not) = obj(s.get("not")) {
        nested(not, false, lvl, &format!("{path}.not"), errs);
    }
    let p = str_field(s, "pattern");
    if !p.is_empty()
        && let Err(why) = pattern::compile(p)
    {
        errs.push(FieldError::invalid(
            format!("{path}.pattern"),
            Value::from(p),
            format!("must be a valid regular expression, but isn't: {why}"),
        ));
    }
}

/// kube's `validateNestedValueValidation`: what a schema under a junctor may not say.
fn nested(
    v: &Map<String, Value>,
    skip_any_of: bool,
    lvl: Level,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    value_validation(v, skip_any_of, false, lvl, path, errs);
    if let Some(items) = obj(v.get("items")) {
        nested(items, false, lvl, &format!("{path}.items"), errs);
    }
    for (k, p) in props(v) {
        nested(p, false, Level::Field, &format!("{path}.properties[{k}]"), errs);
    }
    let forbid = |errs: &mut Vec<FieldError>, field: &str, detail: &str| {
        errs.push(FieldError::forbidden(format!("{path}.{field}"), detail));
    };
    if !str_field(v, "type").is_empty() {
        forbid(errs, "type", "must be empty to be structural");
    }
    match v.get("additionalProperties") {
        Some(Value::Object(_)) | Some(Value::Bool(true)) => {
            forbid(errs, "additionalProperties", "must be undefined to be structural")
        }
        _ => {}
    }
    if has(v, "default") {
        forbid(errs, "default", "must be undefined to be structural");
    }
    if !str_field(v, "title").is_empty() {
        forbid(errs, "title", "must be empty to be structural");
    }
    if !str_field(v, "description").is_empty() {
        forbid(errs, "description", "must be empty to be structural");
    }
    if bool_field(v, "nullable") {
        forbid(errs, "nullable", "must be false to be structural");
    }
    if has(v, "externalDocs") {
        forbid(errs, "externalDocs", "must be undefined to be structural");
    }
    for ext in [
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if bool_field(v, ext) {
            forbid(errs, ext, "must be false to be structural");
        }
    }
    if non_empty_list(v, "x-kubernetes-list-map-keys") {
        forbid(errs, "x-kubernetes-list-map-keys", "must be empty to be structural");
    }
    for ext in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if has(v, ext) {
            forbid(errs, ext, "must be undefined to be structural");
        }
    }
    if non_empty_list(v, "x-kubernetes-validations") {
        forbid(errs, "x-kubernetes-validations", "must be empty to be structural");
    }
    if obj(v.get("properties")).is_some_and(|p| p.contains_key("metadata")) {
        errs.push(FieldError::forbidden(
            format!("{path}.properties[metadata]"),
            "must not be specified in a nested context",
        ));
    }
}

/// kube's `validateStructuralCompleteness`: what the root's junctors say of properties and
/// items must be declared outside them too.
fn completeness(root: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    junctor_completeness(root, Some(root), path, path, errs);
}

fn junctor_completeness(
    v: &Map<String, Value>,
    s: Option<&Map<String, Value>>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut each = |n: &Map<String, Value>, p: String| nested_completeness(n, s, s_path, &p, errs);
    if let Some(not) = obj(v.get("not")) {
        each(not, format!("{v_path}.not"));
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        for (i, n) in schemas(v, k) {
            each(n, format!("{v_path}.{k}[{i}]"));
        }
    }
}

fn nested_completeness(
    v: &Map<String, Value>,
    s: Option<&Map<String, Value>>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(s_path, format!("because it is defined in {v_path}")));
        return;
    };
    junctor_completeness(v, Some(s), s_path, v_path, errs);
    if let Some(items) = obj(v.get("items")) {
        nested_completeness(
            items,
            obj(s.get("items")),
            &format!("{s_path}.items"),
            &format!("{v_path}.items"),
            errs,
        );
    }
    for (k, p) in props(v) {
        let s_prop = format!("{s_path}.properties[{k}]");
        let v_prop = format!("{v_path}.properties[{k}]");
        match obj(obj(s.get("properties")).and_then(|sp| sp.get(k))) {
            Some(sp) => nested_completeness(p, Some(sp), &s_prop, &v_prop, errs),
            None => errs
                .push(FieldError::required(s_prop, format!("because it is defined in {v_prop}"))),
        }
    }
}

/// kube's `ValidateDefaults`: every default of the structural part (not under
/// `additionalProperties`, where defaults are refused) must be pruned already and valid.
/// Defaults inside an embedded resource's metadata are only checked against their schema.
fn defaults(
    node: &Node,
    path: &str,
    embedded_root: bool,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
) {
    let embedded = embedded_root || node.embedded_resource;
    let inside_meta = inside_meta && !embedded;
    if let Some(d) = &node.default {
        let dpath = format!("{path}.default");
        if inside_meta {
            errs.extend(validate::validate(node, d, Some(&dpath)));
        } else {
            let mut pruned = d.clone();
            prune::prune(&mut pruned, node, embedded, false, false);
            if pruned != *d {
                errs.push(FieldError::invalid(
                    dpath.clone(),
                    d.clone(),
                    "must not have unknown fields",
                ));
            }
            let mut meta = Vec::new();
            objectmeta::validate(node, d, Some(&dpath), embedded, &mut meta);
            if meta.is_empty() {
                errs.extend(validate::validate(node, d, Some(&dpath)));
            } else {
                errs.extend(meta);
            }
        }
    }
    if let Some(items) = &node.items {
        defaults(items, &format!("{path}.items"), false, inside_meta, errs);
    }
    for (k, p) in &node.properties {
        let sub_meta = inside_meta || (embedded && META_FIELDS.contains(&k.as_str()));
        defaults(p, &format!("{path}.properties[{k}]"), false, sub_meta, errs);
    }
}

/// The state kube's `specStandardValidator` carries down the schema.
#[derive(Clone)]
struct Ssv {
    allow_defaults: bool,
    reason: String,
    inside_meta: bool,
}

impl Ssv {
    fn forbid_defaults(&self, reason: String) -> Ssv {
        Ssv { allow_defaults: false, reason, ..self.clone() }
    }
}

/// kube's `ValidateCustomResourceDefinitionOpenAPISchema`, less its CEL part.
fn openapi(schema: &Value, path: &str, ssv: &Ssv, is_root: bool, errs: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else { return };
    standard(s, path, ssv, errs);
    let forbid = |errs: &mut Vec<FieldError>, field: &str, detail: &str| {
        errs.push(FieldError::forbidden(format!("{path}.{field}"), detail));
    };
    if bool_field(s, "uniqueItems") {
        forbid(
            errs,
            "uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    let ty = str_field(s, "type");
    let properties = obj(s.get("properties")).filter(|p| !p.is_empty());
    if let Some(ap) = s.get("additionalProperties").filter(|v| !v.is_null()) {
        if properties.is_some() && ap != &Value::Bool(true) {
            forbid(
                errs,
                "additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            );
        }
        let sub = if ssv.inside_meta {
            ssv.forbid_defaults("inside additionalProperties applying to object metadata".into())
        } else {
            ssv.clone()
        };
        openapi(ap, &format!("{path}.additionalProperties"), &sub, false, errs);
    }
    for (k, p) in properties.into_iter().flatten() {
        let mut sub = ssv.clone();
        if (is_root || bool_field(s, "x-kubernetes-embedded-resource"))
            && META_FIELDS.contains(&k.as_str())
        {
            sub.inside_meta = true;
            if is_root {
                sub = sub.forbid_defaults(format!("in top-level {k}"));
            }
        }
        openapi(p, &format!("{path}.properties[{k}]"), &sub, false, errs);
    }
    if let Some(not) = s.get("not") {
        openapi(not, &format!("{path}.not"), ssv, false, errs);
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        for (i, v) in s.get(k).and_then(Value::as_array).into_iter().flatten().enumerate() {
            openapi(v, &format!("{path}.{k}[{i}]"), ssv, false, errs);
        }
    }
    for (k, v) in obj(s.get("definitions")).into_iter().flatten() {
        openapi(v, &format!("{path}.definitions[{k}]"), ssv, false, errs);
    }
    match s.get("items") {
        Some(items @ Value::Object(_)) => {
            openapi(items, &format!("{path}.items"), ssv, false, errs)
        }
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                openapi(v, &format!("{path}.items[{i}]"), ssv, false, errs);
            }
        }
        _ => {}
    }
    for (k, v) in obj(s.get("dependencies")).into_iter().flatten() {
        if v.is_object() {
            openapi(v, &format!("{path}.dependencies[{k}]"), ssv, false, errs);
        }
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            Value::Bool(false),
            "must be true or undefined",
        ));
    }
    list_and_map_types(s, ty, path, errs);
}

/// kube's `specStandardValidatorV3.validate`.
fn standard(s: &Map<String, Value>, path: &str, ssv: &Ssv, errs: &mut Vec<FieldError>) {
    let forbid = |errs: &mut Vec<FieldError>, field: &str, detail: &str| {
        errs.push(FieldError::forbidden(format!("{path}.{field}"), detail));
    };
    let ty = str_field(s, "type");
    if !ty.is_empty() && !OPENAPI_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            Value::from(ty),
            &OPENAPI_TYPES,
        ));
    }
    if has(s, "default") && !ssv.allow_defaults {
        let detail = if ssv.reason.is_empty() {
            "must not be set".to_string()
        } else {
            format!("must not be set {}", ssv.reason)
        };
        forbid(errs, "default", &detail);
    }
    if !str_field(s, "id").is_empty() {
        forbid(errs, "id", "id is not supported");
    }
    if has(s, "additionalItems") {
        forbid(errs, "additionalItems", "additionalItems is not supported");
    }
    if obj(s.get("patternProperties")).is_some_and(|p| !p.is_empty()) {
        forbid(errs, "patternProperties", "patternProperties is not supported");
    }
    if obj(s.get("definitions")).is_some_and(|p| !p.is_empty()) {
        forbid(errs, "definitions", "definitions is not supported");
    }
    if has(s, "dependencies") {
        forbid(errs, "dependencies", "dependencies is not supported");
    }
    if has(s, "$ref") {
        forbid(errs, "$ref", "$ref is not supported");
    }
    if ty == "null" {
        forbid(errs, "type", "type cannot be set to null, use nullable as an alternative");
    }
    if non_empty_list(s, "items") {
        forbid(errs, "items", "items must be a schema object and not an array");
    }
    if ssv.inside_meta && bool_field(s, "x-kubernetes-embedded-resource") {
        forbid(errs, "x-kubernetes-embedded-resource", "must not be used inside of resource meta");
    }
}

/// The `x-kubernetes-map-type`, `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`
/// rules of kube's OpenAPI schema validation, with `validateMapListKeysMapSet`.
fn list_and_map_types(s: &Map<String, Value>, ty: &str, path: &str, errs: &mut Vec<FieldError>) {
    let map_type = s.get("x-kubernetes-map-type").and_then(Value::as_str);
    if map_type.is_some() && ty != "object" {
        errs.push(type_error(path, ty, "must be object if x-kubernetes-map-type is specified"));
    }
    if let Some(mt) = map_type
        && mt != "atomic"
        && mt != "granular"
    {
        errs.push(FieldError::not_supported(
            format!("{path}.x-kubernetes-map-type"),
            Value::from(mt),
            &["atomic", "granular"],
        ));
    }
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let items = s.get("items");
    let item = obj(items);
    if list_type.is_some() && ty != "array" {
        errs.push(type_error(path, ty, "must be array if x-kubernetes-list-type is specified"));
    } else if list_type == Some("set")
        && let Some(is) = item
    {
        let set_msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
        match str_field(is, "type") {
            "array" => {
                if let Some(lt) = is.get("x-kubernetes-list-type").and_then(Value::as_str)
                    && lt != "atomic"
                {
                    errs.push(FieldError::invalid(
                        format!("{path}.items.x-kubernetes-list-type"),
                        Value::from(lt),
                        set_msg,
                    ));
                }
            }
            "object"
                if is.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic") =>
            {
                // kube shows the items' list type here (usually unset).
                let shown = is.get("x-kubernetes-list-type").cloned().unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    format!("{path}.items.x-kubernetes-map-type"),
                    shown,
                    set_msg,
                ));
            }
            _ => {}
        }
    }
    if let Some(lt) = list_type
        && !matches!(lt, "atomic" | "set" | "map")
    {
        errs.push(FieldError::not_supported(
            format!("{path}.x-kubernetes-list-type"),
            Value::from(lt),
            &["atomic", "set", "map"],
        ));
    }
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        let msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => errs.push(FieldError::required(format!("{path}.x-kubernetes-list-type"), msg)),
            Some("map") => {}
            Some(lt) => errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-list-type"),
                Value::from(lt),
                msg,
            )),
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None | Some(Value::Null) => errs.push(FieldError::required(
                format!("{path}.items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(Value::Array(_)) => errs.push(FieldError::invalid(
                format!("{path}.items"),
                items.cloned().unwrap_or(Value::Null),
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            _ => {}
        }
        if let Some(is) = item {
            let item_type = str_field(is, "type");
            if item_type != "object" {
                errs.push(FieldError::invalid(
                    format!("{path}.items.type"),
                    Value::from(item_type),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let key_list = Value::from(keys.clone());
                let item_props = obj(is.get("properties"));
                let mut seen = Vec::new();
                for k in &keys {
                    match obj(item_props.and_then(|p| p.get(*k))) {
                        Some(p) => {
                            if matches!(str_field(p, "type"), "array" | "object") {
                                errs.push(FieldError::invalid(
                                    format!("{path}.items.properties[{k}].type"),
                                    Value::from(item_type),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => errs.push(FieldError::invalid(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            key_list.clone(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(k) {
                        errs.push(FieldError::invalid(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            key_list.clone(),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(*k);
                }
            }
        }
    }
    // validateMapListKeysMapSet
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, item) {
        if bool_field(is, "nullable") {
            errs.push(FieldError::forbidden(
                format!("{path}.items.nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = is
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for k in &keys {
                let Some(p) = obj(obj(is.get("properties")).and_then(|ps| ps.get(*k))) else {
                    continue;
                };
                if !required.contains(k) && !has(p, "default") {
                    errs.push(FieldError::required(
                        format!("{path}.items.properties[{k}].default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if bool_field(p, "nullable") {
                    errs.push(FieldError::forbidden(
                        format!("{path}.items.properties[{k}].nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}
