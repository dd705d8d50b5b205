//! kube's structural defaulting (`pkg/apiserver/schema/defaulting`): `null`s of
//! non-nullable fields without a default are dropped (`PruneNonNullableNullsWithoutDefaults`),
//! then defaults are applied top-down — a missing property, or a `null` one that may not be
//! null, takes its default; items and `additionalProperties` values likewise — so a
//! default's own fields are defaulted in turn. Defaults are copied, never shared.

use serde_json::Value;

use super::node::Node;

/// Drops map entries that are `null` where the schema neither allows `null` nor has a
/// default for them.
pub(crate) fn prune_nulls(x: &mut Value, node: Option<&Node>) {
    match x {
        Value::Object(m) => {
            m.retain(|k, v| {
                let schema = field_schema(node, k);
                if v.is_null() && schema.is_some_and(|s| !s.nullable && s.default.is_none()) {
                    return false;
                }
                prune_nulls(v, schema);
                true
            });
        }
        Value::Array(items) => {
            let item = node.and_then(|n| n.items.as_deref());
            for v in items {
                prune_nulls(v, item);
            }
        }
        _ => {}
    }
}

fn field_schema<'n>(node: Option<&'n Node>, k: &str) -> Option<&'n Node> {
    let n = node?;
    n.properties.get(k).or_else(|| n.additional_properties.as_ref().and_then(|a| a.schema()))
}

fn null_not_allowed(v: &Value, s: Option<&Node>) -> bool {
    v.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Applies the defaults of `node` to `x`.
pub(crate) fn apply(x: &mut Value, node: &Node) {
    match x {
        Value::Object(m) => {
            for (k, prop) in &node.properties {
                let Some(d) = &prop.default else { continue };
                match m.get_mut(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(v) if null_not_allowed(v, Some(prop)) => *v = d.clone(),
                    Some(_) => {}
                }
            }
            let ap = node.additional_properties.as_ref().and_then(|a| a.schema());
            for (k, v) in m.iter_mut() {
                if let Some(prop) = node.properties.get(k) {
                    apply(v, prop);
                } else if let Some(ap) = ap {
                    if null_not_allowed(v, Some(ap))
                        && let Some(d) = &ap.default
                    {
                        *v = d.clone();
                    }
                    apply(v, ap);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = node.items.as_deref() else { return };
            for v in items {
                if null_not_allowed(v, Some(item))
                    && let Some(d) = &item.default
                {
                    *v = d.clone();
                }
                apply(v, item);
            }
        }
        _ => {}
    }
}
