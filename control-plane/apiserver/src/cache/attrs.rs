//! The attributes selectors read (`metadata.name/namespace/labels/deletionTimestamp` and the
//! kind's selectable fields), picked out of an object's JSON in one pass that decodes only
//! those fields and skips the rest of the text without building anything.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::selectors::{FieldSelector, LabelSelector, field_string, supported_fields};

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

/// What selectors can ask of an object: its labels, the text of each field a field selector
/// may name (`metadata.name`, `metadata.namespace` and the kind's selectable fields) and
/// whether it is being deleted, kept flat. (As a JSON tree of the same fields they took about
/// 3 KiB per pod: a map node per level.)
#[derive(Debug, Default, PartialEq)]
pub struct Attrs {
    /// `metadata.labels` with string values, sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The fields whose text is not empty, as [`field_string`] reads them.
    fields: Box<[(&'static str, Box<str>)]>,
    terminating: bool,
}

impl Attrs {
    /// The attributes of `obj` (of `kind`).
    pub fn of(kind: &str, obj: &Value) -> Attrs {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let fields: Vec<(&'static str, Box<str>)> = ["metadata.name", "metadata.namespace"]
            .iter()
            .chain(supported_fields(kind))
            .filter_map(|f| {
                let text = field_string(obj, f);
                (!text.is_empty()).then(|| (*f, text.into()))
            })
            .collect();
        let terminating = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
        Attrs { labels: labels.into(), fields: fields.into(), terminating }
    }

    fn label(&self, key: &str) -> Option<&str> {
        let i = self.labels.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.labels[i].1)
    }

    fn field(&self, path: &str) -> &str {
        self.fields.iter().find(|(f, _)| *f == path).map_or("", |(_, v)| v)
    }

    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_with(|k| self.label(k))
            && fields.matches_with(|f| std::borrow::Cow::Borrowed(self.field(f)))
    }

    /// Whether `metadata.deletionTimestamp` is set.
    pub fn is_terminating(&self) -> bool {
        self.terminating
    }
}

/// The attributes of the object in `json` (of `kind`), as [`Attrs::of`] takes them from the
/// decoded object; `None` when the text is not a JSON object, or when its metadata has a
/// resourceVersion (not an object as the api server stores it).
pub fn from_json(kind: &str, json: &[u8]) -> Option<Attrs> {
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
    Some(Attrs::of(kind, &Value::Object(attrs)))
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
            assert_eq!(from_json(kind, &json), Some(Attrs::of(kind, &obj)), "{obj}");
        }
        assert_eq!(from_json("Pod", b"[1]"), None);
        assert_eq!(
            from_json("Pod", br#"{"metadata": {"name": "p", "resourceVersion": "3"}}"#),
            None
        );
        assert_eq!(from_json("Pod", b"{\"metadata\": "), None);
    }

    #[test]
    fn attrs_should_match_selectors_as_the_whole_object_does() {
        let objects = [
            json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "web",
                    "tier": "front", "odd": 3}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"nodeName": "n1", "hostNetwork": false, "restartPolicy": null,
                    "schedulerName": {"not": "text"}},
                "status": {"phase": "Running", "podIP": "10.0.0.1"}}),
            json!({"metadata": {"name": "q", "labels": {}}, "spec": {"hostNetwork": true}}),
            json!({"metadata": {}}),
        ];
        let labels = [
            "",
            "app=web",
            "app!=web",
            "app in (web,db)",
            "app notin (web)",
            "tier",
            "!tier",
            "odd",
            "!odd",
            "app=web,tier=back",
        ];
        let fields = [
            "",
            "metadata.name=p",
            "metadata.name!=p",
            "metadata.namespace=n",
            "spec.nodeName=n1",
            "spec.nodeName=",
            "spec.nodeName!=",
            "spec.hostNetwork=false",
            "spec.hostNetwork=true",
            "spec.restartPolicy=",
            "spec.schedulerName=",
            "status.phase=Running,status.podIP=10.0.0.1",
            "status.podIP!=10.0.0.1",
        ];
        let mut checked = 0;
        for obj in &objects {
            let attrs = Attrs::of("Pod", obj);
            assert_eq!(
                attrs.is_terminating(),
                obj.pointer("/metadata/deletionTimestamp").is_some()
            );
            for l in labels {
                let l = LabelSelector::parse(l).unwrap();
                for f in fields {
                    let f = FieldSelector::parse(f, supported_fields("Pod")).unwrap();
                    let whole = l.matches(obj.pointer("/metadata/labels")) && f.matches(obj);
                    assert_eq!(attrs.matches(&l, &f), whole, "{l:?} {f:?} on {obj}");
                    checked += usize::from(whole);
                }
            }
        }
        assert!(checked > 10, "the table should have matches as well as misses: {checked}");
    }
}
