//! kube's pruning of unknown fields (`pkg/apiserver/schema/pruning`): fields a schema does
//! not declare are dropped; `apiVersion`, `kind` and `metadata` stay at the root and in
//! embedded resources (their `metadata` cut down to ObjectMeta's fields, as decoding it
//! does); under `x-kubernetes-preserve-unknown-fields` unknown fields stay while declared
//! ones are still pruned inside. The dropped paths are kube's (`spec.foo`,
//! `spec.items[0].bar`, `spec.labels.app.x`, `metadata.foo`), sorted.

use std::fmt::Write;

use serde_json::Value;

use super::node::Node;
use super::objectmeta;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prunes `obj` against `node`, the root of a resource when `resource_root` (its meta fields
/// are kept whatever the schema says, `metadata` cut to ObjectMeta when `object_meta`).
/// Returns the pruned paths when `track`.
pub(crate) fn prune(
    obj: &mut Value,
    node: &Node,
    resource_root: bool,
    track: bool,
    object_meta: bool,
) -> Vec<String> {
    let mut p = Pruner { path: String::new(), pruned: Vec::new(), track, object_meta };
    p.prune(obj, Some(node), resource_root);
    p.pruned.sort();
    p.pruned
}

struct Pruner {
    /// The current path, as text: push and truncate, so walking allocates nothing per node.
    path: String,
    pruned: Vec<String>,
    track: bool,
    object_meta: bool,
}

impl Pruner {
    fn enter_key(&mut self, k: &str) -> usize {
        let len = self.path.len();
        if self.track {
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(k);
        }
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        if self.track {
            let _ = write!(self.path, "[{i}]");
        }
        len
    }

    fn record(&mut self, k: &str) {
        if self.track {
            let p = if self.path.is_empty() { k.to_string() } else { format!("{}.{k}", self.path) };
            self.pruned.push(p);
        }
    }

    /// ObjectMeta's unknown fields go, as kube's decoding into ObjectMeta drops them.
    fn prune_metadata(&mut self, metadata: &mut Value) {
        if !self.object_meta {
            return;
        }
        let len = self.enter_key("metadata");
        let mut dropped = Vec::new();
        objectmeta::prune_metadata(metadata, |k| dropped.push(k.to_string()));
        for k in dropped {
            self.record(&k);
        }
        self.path.truncate(len);
    }

    fn prune(&mut self, x: &mut Value, node: Option<&Node>, embedded: bool) {
        if let Some(n) = node
            && n.preserve_unknown_fields
        {
            self.keep_unknown(x, n, embedded || n.embedded_resource);
            return;
        }
        match x {
            Value::Object(m) => {
                let Some(n) = node else {
                    for k in m.keys() {
                        self.record(k);
                    }
                    m.clear();
                    return;
                };
                let embedded = embedded || n.embedded_resource;
                let ap = n.additional_properties.as_ref();
                let mut unknown = Vec::new();
                for (k, v) in m.iter_mut() {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        if k == "metadata" {
                            self.prune_metadata(v);
                        }
                        continue;
                    }
                    if let Some(p) = n.properties.get(k) {
                        let len = self.enter_key(k);
                        self.prune(v, Some(p), false);
                        self.path.truncate(len);
                    } else if let Some(ap) = ap {
                        let len = self.enter_key(k);
                        self.prune(v, ap.schema(), false);
                        self.path.truncate(len);
                    } else {
                        unknown.push(k.clone());
                    }
                }
                for k in unknown {
                    if !META_FIELDS.contains(&k.as_str()) || !self.path.is_empty() {
                        self.record(&k);
                    }
                    m.remove(&k);
                }
            }
            Value::Array(items) => {
                let item = node.and_then(|n| n.items.as_deref());
                for (i, v) in items.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.prune(v, item, false);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// kube's `skipPrune`: unknown fields stay; declared ones are pruned by their schemas.
    fn keep_unknown(&mut self, x: &mut Value, n: &Node, embedded: bool) {
        match x {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        if k == "metadata" {
                            self.prune_metadata(v);
                        }
                        continue;
                    }
                    let schema = match n.properties.get(k) {
                        Some(p) => Some(p),
                        None => match &n.additional_properties {
                            Some(ap) => ap.schema(),
                            None => continue,
                        },
                    };
                    let len = self.enter_key(k);
                    self.prune(v, schema, false);
                    self.path.truncate(len);
                }
            }
            Value::Array(items) => {
                // kube keeps skipping into the items, whatever their schema says.
                let Some(item) = n.items.as_deref() else { return };
                for (i, v) in items.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.keep_unknown(v, item, item.embedded_resource);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }
}
