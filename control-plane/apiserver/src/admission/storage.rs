//! `DefaultStorageClass` (a claim that names no class gets the cluster's default one) and
//! `StorageObjectInUseProtection` (claims and volumes get the finalizers that keep them while
//! in use), as kube-apiserver's plugins.

use serde_json::{Value, json};

use super::Request;
use crate::State;
use crate::errors::ApiError;

/// The annotation that marks the default class (and its beta predecessor).
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

use skiff_admission::finalizers::{PV_PROTECTION, PVC_PROTECTION};

/// A new claim without `storageClassName` (an empty one means "no class" and stays) gets
/// the default class; with several defaults, the newest (kube ≥ 1.26), then by name.
pub(super) async fn default_storage_class(state: &State, pvc: &mut Value) -> Result<(), ApiError> {
    if pvc.pointer("/spec/storageClassName").is_some_and(|v| !v.is_null()) {
        return Ok(());
    }
    let classes = super::list(state, "storage.k8s.io", "storageclasses", None, false).await?;
    let is_default = |c: &Value| {
        [DEFAULT_CLASS, DEFAULT_CLASS_BETA].iter().any(|a| {
            c.pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1")))
                .and_then(Value::as_str)
                == Some("true")
        })
    };
    let newest = classes.iter().map(|c| &c.value).filter(|c| is_default(c)).max_by(|a, b| {
        let at = |c: &Value| {
            c.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let name = |c: &Value| {
            c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string()
        };
        at(a).cmp(&at(b)).then_with(|| name(b).cmp(&name(a)))
    });
    if let Some(class) = newest
        && let Some(name) = class.pointer("/metadata/name").and_then(Value::as_str)
        && let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("storageClassName".into(), json!(name));
    }
    Ok(())
}

/// The protection finalizer of a new claim or volume.
pub(super) fn protect_in_use(req: &Request<'_>, obj: &mut Value) {
    let finalizer = match (req.res.group, req.res.kind) {
        ("", "PersistentVolumeClaim") => PVC_PROTECTION,
        ("", "PersistentVolume") => PV_PROTECTION,
        _ => return,
    };
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}
