//! The uniqueness that `x-kubernetes-list-type: set` and `map` promise
//! (apiextensions' `pkg/apiserver/schema/listtype`): a set's items are unique, a map list's
//! items are unique by their `x-kubernetes-list-map-keys`. Only the second sighting of a
//! value is reported, as in kube; scalars compare as Go values (`1` and `1.0` differ),
//! objects and arrays by their JSON.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::gofmt::go_json;
use super::node::{ListType, Node};
use super::path::{FieldPath, Step};
use crate::errors::FieldError;

/// Checks every set and map list of `obj` (a custom object) against `node`.
pub(crate) fn validate(node: &Node, obj: &Value, out: &mut Vec<FieldError>) {
    if let Value::Object(m) = obj {
        let mut path = FieldPath::new(None);
        object(&mut path, node, m, out);
    }
}

fn object<'a>(
    path: &mut FieldPath<'a>,
    node: &Node,
    m: &'a Map<String, Value>,
    out: &mut Vec<FieldError>,
) {
    if let Some(ap) = node.additional_properties.as_ref().and_then(|a| a.schema()) {
        for (k, v) in m {
            path.push(Step::Key(k));
            value(path, ap, v, out);
            path.pop();
        }
    }
    if !node.properties.is_empty() {
        for (k, v) in m {
            if let Some(p) = node.properties.get(k) {
                path.push(Step::Child(k));
                value(path, p, v, out);
                path.pop();
            }
        }
    }
}

fn value<'a>(path: &mut FieldPath<'a>, node: &Node, v: &'a Value, out: &mut Vec<FieldError>) {
    match v {
        Value::Array(items) => array(path, node, items, out),
        Value::Object(m) => object(path, node, m, out),
        _ => {}
    }
}

fn array<'a>(path: &mut FieldPath<'a>, node: &Node, items: &'a [Value], out: &mut Vec<FieldError>) {
    match &node.list_type {
        Some(ListType::Set) => {
            for i in repeated(items.iter().map(SetKey::of)) {
                out.push(FieldError::duplicate(path.index(i), items[i].clone()));
            }
        }
        Some(ListType::Map(keys)) => map_list(path, keys, items, out),
        _ => {}
    }
    if let Some(item) = &node.items {
        for (i, v) in items.iter().enumerate() {
            path.push(Step::Index(i));
            value(path, item, v, out);
            path.pop();
        }
    }
}

fn map_list(path: &FieldPath<'_>, keys: &[String], items: &[Value], out: &mut Vec<FieldError>) {
    if let Some(i) = items.iter().position(|x| !x.is_null() && !x.is_object()) {
        out.push(FieldError::invalid(
            path.index(i),
            items[i].clone(),
            "must be an object for an array of list-type map",
        ));
        return;
    }
    if items.len() <= 1 {
        return;
    }
    if let [key] = keys {
        fn found<'v>(x: &'v Value, key: &str) -> Option<&'v Value> {
            x.as_object().and_then(|m| m.get(key))
        }
        for i in
            repeated(items.iter().map(|x| found(x, key).map_or(SetKey::Unspecified, SetKey::of)))
        {
            let mut dup = Map::new();
            if let Some(v) = found(&items[i], key) {
                dup.insert(key.clone(), v.clone());
            }
            out.push(FieldError::duplicate(path.index(i), Value::Object(dup)));
        }
        return;
    }
    let key_of = |x: &Value| -> Map<String, Value> {
        let m = x.as_object();
        keys.iter()
            .filter_map(|k| m.and_then(|m| m.get(k)).map(|v| (k.clone(), v.clone())))
            .collect()
    };
    let composite: Vec<Value> = items.iter().map(|x| Value::Object(key_of(x))).collect();
    for i in repeated(composite.iter().map(SetKey::of)) {
        out.push(FieldError::duplicate(path.index(i), composite[i].clone()));
    }
}

/// An item as a Go map key: scalars by type and value, objects and arrays by their JSON.
#[derive(Debug, PartialEq, Eq, Hash)]
enum SetKey<'a> {
    Unspecified,
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(&'a str),
    Compound(String),
}

impl<'a> SetKey<'a> {
    fn of(v: &'a Value) -> SetKey<'a> {
        match v {
            Value::Null => SetKey::Null,
            Value::Bool(b) => SetKey::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SetKey::Int(i),
                // -0 and 0 are one map key in Go.
                None => SetKey::Float((n.as_f64().unwrap_or(0.0) + 0.0).to_bits()),
            },
            Value::String(s) => SetKey::Str(s),
            compound => {
                let mut s = String::new();
                go_json(compound, &mut s);
                SetKey::Compound(s)
            }
        }
    }
}

/// The indices where a key is seen for the second time.
fn repeated<'a>(keys: impl Iterator<Item = SetKey<'a>>) -> Vec<usize> {
    let mut seen: HashMap<SetKey<'a>, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, k) in keys.enumerate() {
        let n = seen.entry(k).or_insert(0);
        *n += 1;
        if *n == 2 {
            out.push(i);
        }
    }
    out
}
