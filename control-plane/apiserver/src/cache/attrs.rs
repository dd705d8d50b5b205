//! The attributes selectors read (`metadata.name/namespace/labels/deletionTimestamp` and the
//! kind's selectable fields), picked out of an object's JSON in one pass that decodes only
//! those fields and skips the rest of the text without building anything.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::selectors::supported_fields;

/// The fields wanted below one node of the object.
#[derive(Debug, Default)]
struct Wanted {
    children: Vec<(&'static str, Wanted)>,
}

impl Wanted {
    fn leaf(&self) -> bool {
        self.children.is_empty()
    }

    fn add(&mut self, path: &[&'static str]) {
        let Some((first, rest)) = path.split_first() else { return };
        let pos = match self.children.iter().position(|(k, _)| k == first) {
            Some(pos) => pos,
            None => {
                self.children.push((first, Wanted::default()));
                self.children.len() - 1
            }
        };
        self.children[pos].1.add(rest);
    }

    fn for_kind(kind: &str) -> Wanted {
        let mut w = Wanted::default();
        for k in ["name", "namespace", "labels", "deletionTimestamp", "resourceVersion"] {
            w.add(&["metadata", k]);
        }
        for field in supported_fields(kind) {
            w.add(&field.split('.').collect::<Vec<_>>());
        }
        w
    }

    /// The fields wanted of objects of `kind`, worked out once per kind.
    fn of_kind(kind: &str) -> Arc<Wanted> {
        static BY_KIND: LazyLock<Mutex<HashMap<String, Arc<Wanted>>>> =
            LazyLock::new(Default::default);
        let mut by_kind = BY_KIND.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = by_kind.get(kind) {
            return w.clone();
        }
        let w = Arc::new(Wanted::for_kind(kind));
        by_kind.insert(kind.to_string(), w.clone());
        w
    }
}

/// The attributes of the object in `json` (of `kind`), as `attributes` would copy them out
/// of the decoded object; `None` when the text is not a JSON object, or when its metadata
/// has a resourceVersion (not an object as the api server stores it).
pub fn from_json(kind: &str, json: &[u8]) -> Option<Value> {
    let wanted = Wanted::of_kind(kind);
    let mut de = serde_json::Deserializer::from_slice(json);
    let picked = Pick(&wanted).deserialize(&mut de).ok()?;
    let mut attrs = match picked {
        Some(Value::Object(m)) => m,
        _ => return None,
    };
    // `attributes` always has a metadata object, even an empty one.
    let meta = attrs.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if meta.get("resourceVersion").is_some() {
        return None;
    }
    Some(Value::Object(attrs))
}

/// Decodes the wanted fields of one value: the whole value at a leaf, at an inner node the
/// object of its wanted children (`None` for anything that is not an object).
struct Pick<'w>(&'w Wanted);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.leaf() {
            return serde::Deserialize::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(child) = map.next_key_seed(Key(self.0))? {
            match child {
                Some(i) => {
                    let (name, wanted) = &self.0.children[i];
                    match map.next_value_seed(Pick(wanted))? {
                        // An inner object with none of its wanted fields is left out.
                        Some(Value::Object(m)) if m.is_empty() && !wanted.leaf() => {}
                        Some(v) => {
                            out.insert((*name).to_string(), v);
                        }
                        None => {}
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads a key and answers the index of the wanted child it names, without allocating.
struct Key<'w>(&'w Wanted);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.children.iter().position(|(k, _)| *k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_json_should_pick_what_attributes_copies() {
        let objects = [
            (
                "Pod",
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"},
                        "annotations": {"x": "y"}, "managedFields": [{"manager": "m"}],
                        "deletionTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c"}],
                        "hostNetwork": false, "restartPolicy": null},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready"}]}}),
            ),
            ("Pod", json!({"metadata": {}, "spec": "odd", "status": [1, 2]})),
            ("Pod", json!({"kind": "Pod"})),
            (
                "Event",
                json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod",
                "name": "p"}, "reason": "Started", "source": {"component": "kubelet"}}),
            ),
            ("ConfigMap", json!({"metadata": {"name": "c", "labels": {}}, "data": {"k": "v"}})),
        ];
        for (kind, obj) in objects {
            let json = serde_json::to_vec(&obj).unwrap();
            assert_eq!(from_json(kind, &json), Some(super::super::attributes(kind, &obj)), "{obj}");
        }
        assert_eq!(from_json("Pod", b"[1]"), None);
        assert_eq!(
            from_json("Pod", br#"{"metadata": {"name": "p", "resourceVersion": "3"}}"#),
            None
        );
        assert_eq!(from_json("Pod", b"{\"metadata\": "), None);
    }
}
