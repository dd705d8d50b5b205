//! RFC 6902 JSON patches: the operations a policy returns to change the object, and helpers
//! that build the common ones (labels and annotations the object lacks).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One JSON patch operation; `path` and `from` are RFC 6901 JSON pointers (build their
/// segments with [`pointer_token`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Move { from: String, path: String },
    Copy { from: String, path: String },
    Test { path: String, value: Value },
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: impl Into<Value>) -> PatchOp {
        PatchOp::Add { path: path.into(), value: value.into() }
    }

    pub fn remove(path: impl Into<String>) -> PatchOp {
        PatchOp::Remove { path: path.into() }
    }

    pub fn replace(path: impl Into<String>, value: impl Into<Value>) -> PatchOp {
        PatchOp::Replace { path: path.into(), value: value.into() }
    }
}

/// Escapes one segment of a JSON pointer: `~` becomes `~0` and `/` becomes `~1`, so a label
/// key such as `app.kubernetes.io/name` can be addressed.
pub fn pointer_token(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The patch adding each of `labels` that `object`'s `metadata.labels` lacks; keys already
/// there keep their value. Creates `metadata.labels` (and `metadata`) when absent.
pub fn add_missing_labels<K, V>(
    object: &Value,
    labels: impl IntoIterator<Item = (K, V)>,
) -> Vec<PatchOp>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    add_missing_metadata_entries(object, "labels", labels)
}

/// The patch adding each of `annotations` that `object`'s `metadata.annotations` lacks, as
/// [`add_missing_labels`] does for labels.
pub fn add_missing_annotations<K, V>(
    object: &Value,
    annotations: impl IntoIterator<Item = (K, V)>,
) -> Vec<PatchOp>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    add_missing_metadata_entries(object, "annotations", annotations)
}

/// Adds entries missing from the string map `metadata.<field>`. When the map is absent (or
/// not a map) one operation adds it whole, since a patch cannot add a key under a missing
/// parent; otherwise one `add` per missing key.
fn add_missing_metadata_entries<K, V>(
    object: &Value,
    field: &str,
    entries: impl IntoIterator<Item = (K, V)>,
) -> Vec<PatchOp>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let metadata = object.get("metadata").filter(|m| m.is_object());
    let existing = metadata.and_then(|m| m.get(field)).and_then(Value::as_object);
    let mut missing = Map::new();
    for (key, value) in entries {
        let key = key.as_ref();
        if !existing.is_some_and(|map| map.contains_key(key)) {
            missing.insert(key.to_string(), Value::String(value.as_ref().to_string()));
        }
    }
    if missing.is_empty() {
        return Vec::new();
    }
    match (metadata, existing) {
        (None, _) => {
            let mut metadata = Map::new();
            metadata.insert(field.to_string(), Value::Object(missing));
            vec![PatchOp::add("/metadata", Value::Object(metadata))]
        }
        (Some(_), None) => vec![PatchOp::add(format!("/metadata/{field}"), Value::Object(missing))],
        (Some(_), Some(_)) => missing
            .into_iter()
            .map(|(key, value)| {
                PatchOp::add(format!("/metadata/{field}/{}", pointer_token(&key)), value)
            })
            .collect(),
    }
}

/// The patch as the world's `verdict.patch` carries it: JSON text, "" for no operations.
pub fn to_json(ops: &[PatchOp]) -> String {
    if ops.is_empty() {
        return String::new();
    }
    // Cannot fail: every map key in a `Value` is a string.
    serde_json::to_string(ops).unwrap_or_default()
}
