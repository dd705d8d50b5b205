//! Field ownership: the set of fields an object sets, in Kubernetes' `FieldsV1` format, the
//! list semantics that name list items, and the `metadata.managedFields` entries that record
//! which field manager owns which fields.
//!
//! A field set is a set of paths. Each path element is spelled as in `FieldsV1`: `f:name` for
//! a field, `k:{"name":"c"}` for the item of an associative list with those key values,
//! `v:"x"` for the item of a set, `i:3` for a list index. The `.` of `FieldsV1` (the node
//! itself is a member) only appears in the encoding.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// One path into an object, as `FieldsV1` element strings.
pub type FieldPath = Vec<String>;

pub use skiff_api::schema::ListType;

/// `metadata.managedFields` (or one `FieldsV1` set in it) that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("expected an object at {0}")]
    NotAnObject(String),
    #[error("unknown path element {0:?}")]
    UnknownPathElement(String),
    #[error("metadata.managedFields must be a list")]
    NotAList,
    #[error("invalid managedFields operation {0:?}")]
    InvalidOperation(Option<String>),
    #[error("invalid managedFields fieldsType {0:?}")]
    InvalidFieldsType(Option<String>),
}

/// The list semantics of the list at `path` (field names, no indices) in objects of `kind`,
/// after Kubernetes' `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`. Lists the
/// schema does not mark are atomic, as in Kubernetes.
pub fn list_type(kind: &str, path: &[String]) -> ListType {
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    skiff_api::schema::list_type(kind, &names)
}

/// Whether the map at `path` is atomic (`x-kubernetes-map-type: atomic`): set and owned as a
/// whole, like a label selector of a workload.
pub fn is_atomic_map(kind: &str, path: &[String]) -> bool {
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    atomic_map(kind, &names)
}

fn atomic_map(kind: &str, names: &[&str]) -> bool {
    matches!(
        (kind, names),
        ("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job", ["spec", "selector"])
    )
}

/// The value a missing list-map key takes (its schema default), if it has one.
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| json!("TCP"))
}

/// The `k:` path element of an associative-list item: its key values, sorted by key name.
fn key_element(item: &Value, keys: &[&str]) -> Option<String> {
    let obj = item.as_object()?;
    let mut fields = BTreeMap::new();
    for key in keys {
        match obj.get(*key).filter(|v| !v.is_null()).cloned().or_else(|| key_default(key)) {
            Some(v) => {
                fields.insert(*key, v);
            }
            None if keys.len() == 1 => return None,
            None => {}
        }
    }
    let body: Vec<String> =
        fields.iter().map(|(k, v)| format!("{}:{}", Value::from(*k), v)).collect();
    Some(format!("k:{{{}}}", body.join(",")))
}

/// The path element naming `item` of a list of `list` semantics (None for atomic lists).
pub fn item_element(list: ListType, item: &Value) -> Option<String> {
    match list {
        ListType::Atomic => None,
        ListType::Set => Some(format!("v:{item}")),
        ListType::Map(keys) => key_element(item, keys),
    }
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    pub fn new() -> Self {
        FieldSet(BTreeSet::new())
    }

    pub fn insert(&mut self, path: FieldPath) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &[String]) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldPath> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether no member is in `other`.
    pub fn is_disjoint(&self, other: &FieldSet) -> bool {
        self.0.is_disjoint(&other.0)
    }

    /// Whether some member lies strictly below `path`.
    pub fn has_descendant(&self, path: &[String]) -> bool {
        self.0
            .range(path.to_vec()..)
            .find(|p| p.as_slice() != path)
            .is_some_and(|p| p.len() > path.len() && p.starts_with(path))
    }

    /// Members that are `path` or lie below it.
    pub fn under(&self, path: &[String]) -> FieldSet {
        FieldSet(
            self.0.range(path.to_vec()..).take_while(|p| p.starts_with(path)).cloned().collect(),
        )
    }

    /// Parse a `FieldsV1` object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, ManagedFieldsError> {
        fn walk(
            v: &Value,
            path: &mut FieldPath,
            out: &mut FieldSet,
        ) -> Result<(), ManagedFieldsError> {
            let Value::Object(m) = v else {
                return Err(ManagedFieldsError::NotAnObject(path_string(path)));
            };
            for (key, child) in m {
                if key == "." {
                    out.insert(path.clone());
                    continue;
                }
                if !["f:", "k:", "v:", "i:"].iter().any(|p| key.starts_with(p)) {
                    return Err(ManagedFieldsError::UnknownPathElement(key.clone()));
                }
                path.push(key.clone());
                if child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path.clone());
                } else {
                    walk(child, path, out)?;
                }
                path.pop();
            }
            Ok(())
        }
        let mut out = FieldSet::new();
        walk(v, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// Encode as a `FieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node {
            member: bool,
            children: BTreeMap<String, Node>,
        }
        fn render(node: &Node) -> Value {
            let mut m = Map::new();
            if node.member && !node.children.is_empty() {
                m.insert(".".into(), json!({}));
            }
            for (k, child) in &node.children {
                m.insert(k.clone(), render(child));
            }
            Value::Object(m)
        }
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for elem in path {
                node = node.children.entry(elem.clone()).or_default();
            }
            node.member = true;
        }
        render(&root)
    }
}

impl FromIterator<FieldPath> for FieldSet {
    fn from_iter<I: IntoIterator<Item = FieldPath>>(iter: I) -> Self {
        FieldSet(iter.into_iter().collect())
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="c"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for elem in path {
        if let Some(name) = elem.strip_prefix("f:") {
            s.push('.');
            s.push_str(name);
        } else if let Some(keys) = elem.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let body: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", body.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = elem.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        } else {
            s.push_str(elem);
        }
    }
    s
}

/// Metadata fields that belong to the server or the request, never to a field manager.
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "selfLink",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// The fields of an object with, for each leaf (a scalar, an atomic list or map, an empty
/// map or a null), its value. Inner nodes that are members (list items) map to `None`.
pub type Fields = BTreeMap<FieldPath, Option<Value>>;

/// Every field `obj` (of `kind`) sets, except server-owned metadata, apiVersion and kind.
pub fn fields_of(kind: &str, obj: &Value) -> Fields {
    fields_of_where(kind, obj, |_| true)
}

/// The fields `fields_of` finds under the top-level keys `keep` accepts.
pub fn fields_of_where(kind: &str, obj: &Value, keep: impl Fn(&str) -> bool) -> Fields {
    let mut out = Fields::new();
    let Value::Object(top) = obj else { return out };
    let mut names = Vec::new();
    let mut path = Vec::new();
    for (key, child) in top {
        if key == "apiVersion" || key == "kind" || !keep(key) {
            continue;
        }
        if key == "metadata" {
            if let Value::Object(meta) = child {
                names.push(key.clone());
                path.push(format!("f:{key}"));
                for (mk, mv) in meta {
                    if !STRIPPED_METADATA.contains(&mk.as_str()) {
                        walk_field(kind, mk, mv, &mut names, &mut path, &mut out);
                    }
                }
                names.pop();
                path.pop();
            }
            continue;
        }
        walk_field(kind, key, child, &mut names, &mut path, &mut out);
    }
    out
}

fn walk_field(
    kind: &str,
    key: &str,
    value: &Value,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut Fields,
) {
    names.push(key.to_string());
    path.push(format!("f:{key}"));
    walk_value(kind, value, names, path, out);
    names.pop();
    path.pop();
}

fn walk_value(
    kind: &str,
    value: &Value,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut Fields,
) {
    match value {
        Value::Object(m) if !m.is_empty() && !is_atomic_map(kind, names) => {
            for (k, v) in m {
                walk_field(kind, k, v, names, path, out);
            }
        }
        Value::Array(items) => {
            let lt = list_type(kind, names);
            let elems: Option<Vec<String>> =
                items.iter().map(|item| item_element(lt, item)).collect();
            let Some(elems) = elems.filter(|_| lt != ListType::Atomic) else {
                out.insert(path.clone(), Some(value.clone()));
                return;
            };
            for (item, elem) in items.iter().zip(elems) {
                path.push(elem);
                match (lt, item) {
                    (ListType::Map(_), Value::Object(m)) => {
                        out.insert(path.clone(), None);
                        for (k, v) in m {
                            walk_field(kind, k, v, names, path, out);
                        }
                    }
                    _ => {
                        out.insert(path.clone(), Some(item.clone()));
                    }
                }
                path.pop();
            }
        }
        other => {
            out.insert(path.clone(), Some(other.clone()));
        }
    }
}

/// The `FieldsV1` encoding of the set of fields `fields_of_where` finds in `obj` under the
/// top-level keys `keep` accepts, built in one walk over the object instead of through a set
/// of paths: what a create records for its manager.
pub fn fields_v1_of(kind: &str, obj: &Value, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    let mut out = Map::new();
    let Value::Object(top) = obj else { return out };
    let mut names: Vec<&str> = Vec::new();
    for (key, child) in top {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            k if !keep(k) => {}
            "metadata" => {
                let Value::Object(meta) = child else { continue };
                names.push("metadata");
                let mut node = Map::new();
                for (mk, mv) in meta {
                    if !STRIPPED_METADATA.contains(&mk.as_str()) {
                        names.push(mk);
                        if let Some(n) = render_value(kind, mv, &mut names) {
                            node.insert(format!("f:{mk}"), n);
                        }
                        names.pop();
                    }
                }
                names.pop();
                if !node.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(node));
                }
            }
            _ => {
                names.push(key);
                if let Some(n) = render_value(kind, child, &mut names) {
                    out.insert(format!("f:{key}"), n);
                }
                names.pop();
            }
        }
    }
    out
}

/// The `FieldsV1` node of `value` at field path `names`: `{}` for a leaf (a member), a map of
/// children otherwise (with `"."` when the node is itself a member), None when it holds no
/// field at all (an empty associative list or set).
fn render_value<'a>(kind: &str, value: &'a Value, names: &mut Vec<&'a str>) -> Option<Value> {
    match value {
        Value::Object(m) if !m.is_empty() && !atomic_map(kind, names) => {
            let mut node = Map::new();
            for (k, v) in m {
                names.push(k);
                if let Some(n) = render_value(kind, v, names) {
                    node.insert(format!("f:{k}"), n);
                }
                names.pop();
            }
            (!node.is_empty()).then_some(Value::Object(node))
        }
        Value::Array(items) => {
            let lt = skiff_api::schema::list_type(kind, names);
            let elems: Option<Vec<String>> =
                items.iter().map(|item| item_element(lt, item)).collect();
            let Some(elems) = elems.filter(|_| lt != ListType::Atomic) else {
                return Some(Value::Object(Map::new()));
            };
            let mut node = Map::new();
            for (item, elem) in items.iter().zip(elems) {
                let mut member = Map::new();
                if let (ListType::Map(_), Value::Object(m)) = (lt, item) {
                    for (k, v) in m {
                        names.push(k);
                        if let Some(n) = render_value(kind, v, names) {
                            member.insert(format!("f:{k}"), n);
                        }
                        names.pop();
                    }
                    if !member.is_empty() {
                        member.insert(".".into(), Value::Object(Map::new()));
                    }
                }
                merge_node(&mut node, elem, Value::Object(member));
            }
            (!node.is_empty()).then_some(Value::Object(node))
        }
        _ => Some(Value::Object(Map::new())),
    }
}

/// Put `node` under `key`, merged with what two list items with the same key already put
/// there: the union of their fields, a member when either is one.
fn merge_node(parent: &mut Map<String, Value>, key: String, node: Value) {
    let Some(Value::Object(existing)) = parent.get_mut(&key) else {
        parent.insert(key, node);
        return;
    };
    let Value::Object(node) = node else { return };
    let member = existing.is_empty() || existing.contains_key(".") || node.is_empty();
    for (k, v) in node {
        merge_node(existing, k, v);
    }
    if member && !existing.is_empty() {
        existing.insert(".".into(), Value::Object(Map::new()));
    }
}

/// The paths of `fields` as a set.
pub fn set_of(fields: &Fields) -> FieldSet {
    fields.keys().cloned().collect()
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub removed: FieldSet,
    pub modified: FieldSet,
}

impl Comparison {
    pub fn new(old: &Fields, new: &Fields) -> Comparison {
        let mut c = Comparison::default();
        for (path, value) in new {
            match old.get(path) {
                None => c.added.insert(path.clone()),
                Some(old_value) if old_value != value => c.modified.insert(path.clone()),
                Some(_) => {}
            }
        }
        for path in old.keys() {
            if !new.contains_key(path) {
                c.removed.insert(path.clone());
            }
        }
        c
    }

    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }

    /// Fields another manager cannot keep once this change is made.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Whether an operation was an apply or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Whether this entry is the one of `manager` doing `operation` on `subresource`.
    pub fn is(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    /// How Kubernetes names this manager in a conflict message.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        self.to_json_with(self.fields.to_fields_v1())
    }

    /// The entry encoded with `fields_v1` as its fields (already in `FieldsV1` form).
    pub fn to_json_with(&self, fields_v1: Value) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1,
        });
        if let Some(t) = &self.time {
            v["time"] = json!(t);
        }
        if self.manager.is_empty() {
            // `manager` is omitempty in Go: a client without a User-Agent has none.
            if let Some(m) = v.as_object_mut() {
                m.remove("manager");
            }
        }
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }
}

/// What a request's `metadata.managedFields` asks for.
#[derive(Debug)]
pub enum RequestedManagedFields {
    /// Absent, empty or unreadable: keep the live object's.
    Keep,
    /// `[{}]`: drop all ownership.
    Reset,
    /// A new list of entries set directly.
    Set(Vec<ManagedEntry>),
}

/// Decode `metadata.managedFields` of `obj`.
pub fn decode(obj: &Value) -> Result<Vec<ManagedEntry>, ManagedFieldsError> {
    let Some(list) = obj.pointer("/metadata/managedFields") else { return Ok(Vec::new()) };
    let Value::Array(items) = list else {
        return Err(ManagedFieldsError::NotAList);
    };
    items.iter().map(decode_entry).collect()
}

fn decode_entry(item: &Value) -> Result<ManagedEntry, ManagedFieldsError> {
    let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
    let operation = match s("operation").as_deref() {
        Some("Apply") => Operation::Apply,
        Some("Update") => Operation::Update,
        other => return Err(ManagedFieldsError::InvalidOperation(other.map(str::to_string))),
    };
    match s("fieldsType").as_deref() {
        Some("FieldsV1") => {}
        other => return Err(ManagedFieldsError::InvalidFieldsType(other.map(str::to_string))),
    }
    let fields = FieldSet::from_fields_v1(item.get("fieldsV1").unwrap_or(&json!({})))?;
    Ok(ManagedEntry {
        manager: s("manager").unwrap_or_default(),
        operation,
        api_version: s("apiVersion").unwrap_or_default(),
        time: s("time"),
        subresource: s("subresource").filter(|s| !s.is_empty()),
        fields,
    })
}

/// Read what a request body says about managedFields.
pub fn requested(obj: &Value) -> RequestedManagedFields {
    match obj.pointer("/metadata/managedFields") {
        Some(Value::Array(items)) if items.len() == 1 && items[0] == json!({}) => {
            RequestedManagedFields::Reset
        }
        Some(Value::Array(items)) if !items.is_empty() => match decode(obj) {
            Ok(entries) => RequestedManagedFields::Set(entries),
            Err(_) => RequestedManagedFields::Keep,
        },
        _ => RequestedManagedFields::Keep,
    }
}

/// Write `entries` (without empty ones) into `obj`'s metadata, Apply entries first and the
/// Update entries by time, as Kubernetes orders them.
pub fn encode_into(obj: &mut Value, entries: &[ManagedEntry]) {
    encode_reusing(obj, entries, &[]);
}

/// `encode_into`, where `encoded[i]`, when there is one, is entry `i` already encoded (an
/// entry of the live object this write left alone).
pub fn encode_reusing(obj: &mut Value, entries: &[ManagedEntry], encoded: &[Option<&Value>]) {
    let mut kept: Vec<(&ManagedEntry, Option<&Value>)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.fields.is_empty())
        .map(|(i, e)| (e, encoded.get(i).copied().flatten()))
        .collect();
    kept.sort_by(|(a, _), (b, _)| {
        (a.operation == Operation::Update)
            .cmp(&(b.operation == Operation::Update))
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    if kept.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(
                kept.iter()
                    .map(|(e, encoded)| encoded.map_or_else(|| e.to_json(), Value::clone))
                    .collect(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(elems: &[&str]) -> FieldPath {
        elems.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn fields_of_should_name_list_items_by_their_keys() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "labels": {"app": "x"}, "finalizers": ["a/b"]},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["x", "y"],
                "ports": [{"containerPort": 80}]}]}});
        let set = set_of(&fields_of("Pod", &pod));
        let want: FieldSet = [
            p(&["f:metadata", "f:labels", "f:app"]),
            p(&["f:metadata", "f:finalizers", "v:\"a/b\""]),
            p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}"]),
            p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:name"]),
            p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]),
            p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:args"]),
            p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"c\"}",
                "f:ports",
                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
            ]),
            p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"c\"}",
                "f:ports",
                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
                "f:containerPort",
            ]),
        ]
        .into_iter()
        .collect();
        assert_eq!(set, want);
    }

    #[test]
    fn field_set_should_round_trip_through_fields_v1() {
        let encoded = json!({"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}});
        let set = FieldSet::from_fields_v1(&encoded).unwrap();
        assert_eq!(set.len(), 4);
        assert!(set.contains(&p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}"])));
        assert_eq!(set.to_fields_v1(), encoded);
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"x:bad": {}})),
            Err(ManagedFieldsError::UnknownPathElement("x:bad".into()))
        );
    }

    #[test]
    fn fields_v1_of_should_encode_what_fields_of_finds() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "labels": {"app": "x"}, "finalizers": ["a/b"],
                "annotations": {}, "ownerReferences": []},
            "spec": {"containers": [
                    {"name": "c", "image": "i", "args": ["x", "y"], "env": [],
                        "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "1"}}},
                    {"name": "d", "image": "j", "ports": [{"containerPort": 81, "name": "x"}]},
                    {"name": "d", "command": ["sh"], "ports": [{"containerPort": 81}]},
                    {"name": "e"}],
                "nodeSelector": {"a": "b"}, "tolerations": [{"key": "k"}], "hostNetwork": null},
            "status": {"phase": "Pending"}});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "replicas": 2,
                "template": {"metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let names_only = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "n", "namespace": "x"}});
        for (kind, obj) in [("Pod", &pod), ("Deployment", &deployment), ("ConfigMap", &names_only)]
        {
            for without_status in [false, true] {
                let keep = |k: &str| !without_status || k != "status";
                let want = set_of(&fields_of_where(kind, obj, keep)).to_fields_v1();
                let got = Value::Object(fields_v1_of(kind, obj, keep));
                assert_eq!(got, want, "{kind}, without status {without_status}");
                assert_eq!(serde_json::to_string(&got).unwrap(), want.to_string());
            }
        }
    }

    #[test]
    fn path_string_should_print_like_kubernetes() {
        let path = p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]);
        assert_eq!(path_string(&path), ".spec.containers[name=\"c\"].image");
        let port = p(&["f:spec", "f:ports", "k:{\"port\":80,\"protocol\":\"TCP\"}"]);
        assert_eq!(path_string(&port), ".spec.ports[port=80,protocol=\"TCP\"]");
        assert_eq!(
            path_string(&p(&["f:metadata", "f:finalizers", "v:\"x\""])),
            ".metadata.finalizers[=\"x\"]"
        );
    }

    #[test]
    fn comparison_should_find_added_removed_and_modified_leaves() {
        let old = fields_of("Pod", &json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
        let new = fields_of("Pod", &json!({"metadata": {"labels": {"a": "9", "c": "3"}}}));
        let c = Comparison::new(&old, &new);
        assert_eq!(c.modified, [p(&["f:metadata", "f:labels", "f:a"])].into_iter().collect());
        assert_eq!(c.added, [p(&["f:metadata", "f:labels", "f:c"])].into_iter().collect());
        assert_eq!(c.removed, [p(&["f:metadata", "f:labels", "f:b"])].into_iter().collect());
    }

    #[test]
    fn requested_should_tell_reset_from_keep() {
        assert!(matches!(
            requested(&json!({"metadata": {"managedFields": [{}]}})),
            RequestedManagedFields::Reset
        ));
        assert!(matches!(
            requested(&json!({"metadata": {"managedFields": []}})),
            RequestedManagedFields::Keep
        ));
        assert!(matches!(requested(&json!({"metadata": {}})), RequestedManagedFields::Keep));
    }
}
