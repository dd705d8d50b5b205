//! What kube checks of the objects a custom object embeds (`x-kubernetes-embedded-resource`,
//! apiextensions' `pkg/apiserver/schema/objectmeta`): `apiVersion` and `kind` present and
//! well-formed, and `metadata` an ObjectMeta — its fields of the right JSON types (Go's
//! decoding errors, word for word), `name`/`generateName` usable as path segments, the
//! namespace a DNS label, the generation not negative. Labels, annotations, owner
//! references, finalizers and managed fields are only type-checked here.
//!
//! Also the field set of ObjectMeta, which pruning keeps (kube decodes `metadata` into
//! ObjectMeta, dropping what it does not know).

use serde_json::{Map, Value};

use super::node::Node;
use super::path::{FieldPath, Step};
use crate::dns::{dns1035_label, dns1123_label};
use crate::errors::FieldError;

/// ObjectMeta's fields and the Go types the decoder wants them in.
const OBJECT_META: &[(&str, GoType)] = &[
    ("name", GoType::String),
    ("generateName", GoType::String),
    ("namespace", GoType::String),
    ("selfLink", GoType::String),
    ("uid", GoType::String),
    ("resourceVersion", GoType::String),
    ("generation", GoType::Int64),
    ("creationTimestamp", GoType::Time),
    ("deletionTimestamp", GoType::Time),
    ("deletionGracePeriodSeconds", GoType::Int64),
    ("labels", GoType::StringMap),
    ("annotations", GoType::StringMap),
    ("ownerReferences", GoType::OwnerReferences),
    ("finalizers", GoType::StringList),
    ("managedFields", GoType::ManagedFields),
];

const OWNER_REFERENCE: &[&str] =
    &["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"];
const MANAGED_FIELDS_ENTRY: &[&str] =
    &["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    String,
    Int64,
    Time,
    StringMap,
    StringList,
    OwnerReferences,
    ManagedFields,
}

/// Drops the fields ObjectMeta does not have from `metadata` (and from its owner references
/// and managed fields entries); `record` gets each dropped field's path below `metadata`
/// (`foo`, `ownerReferences[0].foo`).
pub(crate) fn prune_metadata(metadata: &mut Value, mut record: impl FnMut(&str)) {
    let Value::Object(m) = metadata else { return };
    m.retain(|k, _| {
        let known = OBJECT_META.iter().any(|(f, _)| f == k);
        if !known {
            record(k);
        }
        known
    });
    for (field, known) in
        [("ownerReferences", OWNER_REFERENCE), ("managedFields", MANAGED_FIELDS_ENTRY)]
    {
        if let Some(Value::Array(items)) = m.get_mut(field) {
            for (i, item) in items.iter_mut().enumerate() {
                if let Value::Object(entry) = item {
                    entry.retain(|k, _| {
                        let keep = known.contains(&k.as_str());
                        if !keep {
                            record(&format!("{field}[{i}].{k}"));
                        }
                        keep
                    });
                }
            }
        }
    }
}

/// kube's `objectmeta.Validate`: the embedded resources of `obj` (and `obj` itself when
/// `is_resource_root`), errors under `prefix`.
pub(crate) fn validate(
    node: &Node,
    obj: &Value,
    prefix: Option<&str>,
    is_resource_root: bool,
    out: &mut Vec<FieldError>,
) {
    let mut path = FieldPath::new(prefix);
    walk(&mut path, node, obj, is_resource_root, out);
}

fn walk<'a>(
    path: &mut FieldPath<'a>,
    node: &Node,
    v: &'a Value,
    embedded: bool,
    out: &mut Vec<FieldError>,
) {
    match v {
        Value::Object(m) => {
            if embedded || node.embedded_resource {
                embedded_resource(path, m, out);
            }
            for (k, v) in m {
                if let Some(p) = node.properties.get(k) {
                    path.push(Step::Child(k));
                    walk(path, p, v, false, out);
                    path.pop();
                } else if let Some(ap) =
                    node.additional_properties.as_ref().and_then(|a| a.schema())
                {
                    path.push(Step::Key(k));
                    walk(path, ap, v, false, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(path, item, v, false, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// kube's `validateEmbeddedResource`.
fn embedded_resource(path: &FieldPath<'_>, m: &Map<String, Value>, out: &mut Vec<FieldError>) {
    for field in ["apiVersion", "kind"] {
        if !m.contains_key(field) {
            out.push(FieldError::required(path.child(field), ""));
        }
    }
    if let Some(v) = m.get("apiVersion") {
        match v.as_str() {
            None => out.push(FieldError::invalid(
                path.child("apiVersion"),
                v.clone(),
                "must be a string",
            )),
            Some("") => out.push(FieldError::invalid(
                path.child("apiVersion"),
                v.clone(),
                "must not be empty",
            )),
            Some(gv) if gv.matches('/').count() > 1 => out.push(FieldError::invalid(
                path.child("apiVersion"),
                v.clone(),
                format!("unexpected GroupVersion string: {gv}"),
            )),
            Some(_) => {}
        }
    }
    if let Some(v) = m.get("kind") {
        match v.as_str() {
            None => {
                out.push(FieldError::invalid(path.child("kind"), v.clone(), "must be a string"))
            }
            Some("") => {
                out.push(FieldError::invalid(path.child("kind"), v.clone(), "must not be empty"))
            }
            Some(kind) => {
                let errs = dns1035_label(&kind.to_lowercase());
                if !errs.is_empty() {
                    out.push(FieldError::invalid(
                        path.child("kind"),
                        v.clone(),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            errs.join(",")
                        ),
                    ));
                }
            }
        }
    }
    if let Some(meta) = m.get("metadata") {
        let meta_path = path.child("metadata");
        match decode_error(meta) {
            Some(e) => out.push(FieldError::invalid(meta_path, meta.clone(), e)),
            None => object_meta(&meta_path, meta, out),
        }
    }
}

/// The error Go's `json.Unmarshal` gives decoding `meta` into an ObjectMeta, if any (the
/// first, in key order).
fn decode_error(meta: &Value) -> Option<String> {
    let m = match meta {
        Value::Null => return None,
        Value::Object(m) => m,
        other => {
            return Some(format!(
                "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
                json_kind(other)
            ));
        }
    };
    let field_err = |field: &str, v: &Value, ty: &str| {
        Some(format!(
            "json: cannot unmarshal {} into Go struct field ObjectMeta.{field} of type {ty}",
            json_kind(v)
        ))
    };
    for (field, v) in m {
        let Some((_, ty)) = OBJECT_META.iter().find(|(f, _)| f == field) else { continue };
        if v.is_null() {
            continue;
        }
        let err = match ty {
            GoType::String if !v.is_string() => field_err(field, v, "string"),
            GoType::Int64 if !v.is_i64() => field_err(field, v, "int64"),
            GoType::Time => match v.as_str() {
                None => Some(format!("json: cannot unmarshal {} into Go value of type string", json_kind(v))),
                Some(t) if chrono::DateTime::parse_from_rfc3339(t).is_err() => Some(format!(
                    "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
                    super::gofmt::quote(t),
                    super::gofmt::quote(t)
                )),
                Some(_) => None,
            },
            GoType::StringMap => match v.as_object() {
                None => field_err(field, v, "map[string]string"),
                Some(entries) => entries
                    .values()
                    .find(|x| !x.is_string() && !x.is_null())
                    .and_then(|x| field_err(field, x, "string")),
            },
            GoType::StringList => match v.as_array() {
                None => field_err(field, v, "[]string"),
                Some(items) => {
                    items.iter().find(|x| !x.is_string() && !x.is_null()).and_then(|x| field_err(field, x, "string"))
                }
            },
            GoType::OwnerReferences => match v.as_array() {
                None => field_err(field, v, "[]v1.OwnerReference"),
                Some(items) => items.iter().find_map(|x| match x {
                    Value::Null => None,
                    Value::Object(r) => r.iter().find_map(|(k, f)| {
                        let want = match k.as_str() {
                            "apiVersion" | "kind" | "name" | "uid" => "string",
                            "controller" | "blockOwnerDeletion" => "bool",
                            _ => return None,
                        };
                        let ok = f.is_null() || if want == "bool" { f.is_boolean() } else { f.is_string() };
                        (!ok).then(|| {
                            format!(
                                "json: cannot unmarshal {} into Go struct field OwnerReference.ownerReferences.{k} of type {want}",
                                json_kind(f)
                            )
                        })
                    }),
                    other => field_err(field, other, "v1.OwnerReference"),
                }),
            },
            GoType::ManagedFields => match v.as_array() {
                None => field_err(field, v, "[]v1.ManagedFieldsEntry"),
                Some(items) => items
                    .iter()
                    .find(|x| !x.is_object() && !x.is_null())
                    .and_then(|x| field_err(field, x, "v1.ManagedFieldsEntry")),
            },
            _ => None,
        };
        if err.is_some() {
            return err;
        }
    }
    None
}

/// Go's name for a JSON value in decoding errors (`number 1.5` for a number that does not
/// fit the integer it was decoded into).
fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_i64() => "number".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// `ValidateObjectMeta` for an embedded object (its name need not be set).
fn object_meta(path: &str, meta: &Value, out: &mut Vec<FieldError>) {
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let generate_name = s("generateName");
    for msg in path_segment_errors(generate_name, true) {
        out.push(FieldError::invalid(
            format!("{path}.generateName"),
            Value::from(generate_name),
            msg,
        ));
    }
    let name = s("name");
    if !name.is_empty() {
        for msg in path_segment_errors(name, false) {
            out.push(FieldError::invalid(format!("{path}.name"), Value::from(name), msg));
        }
    }
    let namespace = s("namespace");
    if !namespace.is_empty() {
        for msg in dns1123_label(namespace) {
            out.push(FieldError::invalid(format!("{path}.namespace"), Value::from(namespace), msg));
        }
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        out.push(FieldError::invalid(
            format!("{path}.generation"),
            Value::from(g),
            "must be greater than or equal to 0",
        ));
    }
}

/// apimachinery's `IsPathSegmentName` (`IsPathSegmentPrefix` for a `generateName`).
fn path_segment_errors(name: &str, prefix: bool) -> Vec<String> {
    if !prefix && (name == "." || name == "..") {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}
