//! Structural schemas of CustomResourceDefinitions, as kube-apiserver's apiextensions-apiserver
//! uses them (`k8s.io/apiextensions-apiserver/pkg/apiserver/schema` and kube-openapi's
//! `validate`): whether a version's `openAPIV3Schema` may be served
//! ([`structural_errors`]), and, for the custom objects of a served version, validation
//! with kube-openapi's messages and field paths, pruning of unknown fields, defaulting, and
//! the list and map types server-side apply merges by.
//!
//! A [`Schema`] is parsed once per CRD change and shared by every request; checking an
//! object builds no path text unless it reports an error.

mod defaults;
mod formats;
mod gofmt;
mod listtype;
mod node;
mod objectmeta;
mod path;
mod pattern;
mod prune;
mod structural;
mod validate;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::FieldError;

pub use formats::StringFormat;
pub use node::{AdditionalProperties, JsonType, ListType, MapType, Node};
pub use pattern::Pattern;
pub use structural::status_root_errors;

/// Why `schema` (a version's `openAPIV3Schema`, found at `path`, e.g.
/// `spec.versions[0].schema.openAPIV3Schema`) may not be served, as kube's CRD validation
/// reports it: the structural rules (sorted as kube sorts them), then the defaults (when
/// the schema is structural), then the per-node rules, e.g.
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not
/// be empty for specified object fields`. Empty when the schema is fine.
///
/// The `x-kubernetes-validations` rules are `crate::cel`'s; the status-subresource rule for
/// the root is [`status_root_errors`].
pub fn structural_errors(schema: &Value, path: &str) -> Vec<FieldError> {
    structural::errors(schema, path)
}

/// A version's schema, parsed once (assumed structural, lenient otherwise). Cheap to share:
/// it is read-only, `Send + Sync`, and meant to sit in an `Arc`.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Node,
    /// Whether some node is an embedded resource (else that pass is skipped).
    embeds: bool,
    /// Whether some list is a `set` or `map` (else that pass is skipped).
    keyed_lists: bool,
}

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

impl Schema {
    /// Parses `schema` (an `openAPIV3Schema`), pruning its defaults as kube does when it
    /// serves one.
    pub fn parse(schema: &Value) -> Schema {
        let mut root = Node::parse(schema);
        prune_defaults(&mut root, true, false);
        let (mut embeds, mut keyed_lists) = (false, false);
        visit(&root, &mut |n| {
            embeds |= n.embedded_resource;
            keyed_lists |= matches!(n.list_type, Some(ListType::Set | ListType::Map(_)));
        });
        Schema { root, embeds, keyed_lists }
    }

    /// The root node.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Validates a whole custom object, in kube's order: `apiVersion` and `kind` present
    /// (and strings), then kube-openapi's schema validation (messages and paths as
    /// `kubeOpenAPIResultToFieldErrors` makes them: `spec.replicas: Invalid value: "string":
    /// spec.replicas in body must be of type integer: "string"`; an `additionalProperties`
    /// entry is `spec.labels.key`), then the embedded resources (`apiVersion`, `kind`,
    /// `metadata`), then the uniqueness of `set` and `map` lists (`spec.list[3]: Duplicate
    /// value: {"name":"a"}`). Errors kube-openapi gives no field are under `<nil>`, as kube
    /// prints them. The root's `metadata` is the caller's to validate.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Value::Object(m) = obj {
            for field in ["apiVersion", "kind"] {
                match m.get(field) {
                    None => errs.push(FieldError::required(field, "")),
                    Some(v) if !v.is_string() => {
                        errs.push(FieldError::invalid(field, v.clone(), "must be a string"))
                    }
                    Some(_) => {}
                }
            }
        }
        errs.extend(validate::validate(&self.root, obj, None));
        if self.embeds {
            objectmeta::validate(&self.root, obj, None, false, &mut errs);
        }
        if self.keyed_lists {
            listtype::validate(&self.root, obj, &mut errs);
        }
        errs
    }

    /// Drops the fields the schema does not declare (kube's pruning), keeping `apiVersion`,
    /// `kind` and `metadata` at the root and in embedded resources (`metadata` cut down to
    /// ObjectMeta's fields). Returns the pruned paths, sorted (`spec.foo`, `metadata.foo`),
    /// which kube reports as `unknown field "spec.foo"`.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune(obj, &self.root, true, true, true)
    }

    /// Applies defaults as kube does after pruning: `null`s of non-nullable fields without a
    /// default are dropped, then defaults fill missing fields and non-nullable `null`s,
    /// top-down, in items and `additionalProperties` values too. Idempotent.
    pub fn default(&self, obj: &mut Value) {
        defaults::prune_nulls(obj, Some(&self.root));
        defaults::apply(obj, &self.root);
    }

    /// The node at `path`: property names, with `*` (or an index) for array items and `*`
    /// (or any key) for `additionalProperties` values.
    pub fn node_at(&self, path: &[&str]) -> Option<&Node> {
        let mut n = &self.root;
        for seg in path {
            n = if let Some(p) = n.properties.get(*seg) {
                p
            } else if let Some(items) =
                n.items.as_deref().filter(|_| *seg == "*" || seg.parse::<usize>().is_ok())
            {
                items
            } else {
                n.additional_properties.as_ref()?.schema()?
            };
        }
        Some(n)
    }

    /// The list type of the array at `path` (`atomic` when it declares none), for
    /// server-side apply; `None` when there is no array there.
    pub fn list_type_at(&self, path: &[&str]) -> Option<ListType> {
        let n = self.node_at(path)?;
        match &n.list_type {
            Some(lt) => Some(lt.clone()),
            None if n.type_ == "array" || n.items.is_some() => Some(ListType::Atomic),
            None => None,
        }
    }

    /// The map type of the object at `path` (`granular` when it declares none); `None`
    /// when there is no object there.
    pub fn map_type_at(&self, path: &[&str]) -> Option<MapType> {
        let n = self.node_at(path)?;
        match n.map_type {
            Some(mt) => Some(mt),
            None if n.type_ == "object"
                || !n.properties.is_empty()
                || n.additional_properties.is_some() =>
            {
                Some(MapType::Granular)
            }
            None => None,
        }
    }
}

/// Calls `f` on every node of the structural part of the schema.
fn visit(n: &Node, f: &mut impl FnMut(&Node)) {
    f(n);
    for p in n.properties.values() {
        visit(p, f);
    }
    if let Some(i) = &n.items {
        visit(i, f);
    }
    if let Some(ap) = n.additional_properties.as_ref().and_then(AdditionalProperties::schema) {
        visit(ap, f);
    }
}

/// kube's `PruneDefaults`: each default pruned as the object it would land in would be.
fn prune_defaults(n: &mut Node, resource_root: bool, meta_child: bool) {
    let embedded = resource_root || n.embedded_resource;
    if !meta_child && let Some(d) = &n.default {
        let mut pruned = d.clone();
        prune::prune(&mut pruned, n, embedded, false, true);
        n.default = Some(pruned);
    }
    for (k, p) in n.properties.iter_mut() {
        let meta = embedded && META_FIELDS.contains(&k.as_str());
        if meta
            && k == "metadata"
            && let Some(d) = p.default.as_mut()
        {
            objectmeta::prune_metadata(d, |_| {});
        }
        prune_defaults(p, false, meta);
    }
    if let Some(i) = n.items.as_deref_mut() {
        prune_defaults(i, false, false);
    }
    if let Some(AdditionalProperties::Schema(ap)) = n.additional_properties.as_mut() {
        prune_defaults(ap, false, false);
    }
}
