//! Custom resources: what the CustomResourceDefinitions of the cluster make the api server
//! serve. Each established CRD adds one resource per served version to the registry the
//! server routes, discovers and documents with; each version carries its schema (parsed
//! once), its CEL rules (compiled once), its printer columns, its `scale` paths and its
//! conversion. The served set is rebuilt from the CRD watch cache when that cache changes,
//! reusing every CRD whose resourceVersion did not move.
//!
//! The CRD's own status (accepted names, `NamesAccepted`, `Established`, `Terminating`,
//! `storedVersions`) and the removal of a deleted CRD's objects are `controller`'s.

pub mod controller;
pub mod conversion;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use skiff_admission::webhook::{ClientConfig, ServiceReference};
use skiff_api::{Attachment, Registry, ResourceInfo, intern, intern_list};
use skiff_apiextensions::FieldError;
use skiff_apiextensions::cel::Rules;
use skiff_apiextensions::crd::{ConversionStrategy, CrdView, Names, PrinterColumn};
use skiff_apiextensions::schema::Schema;

use crate::State;
use crate::cache::Cache;
use crate::errors::ApiError;

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

const GROUP: &str = "apiextensions.k8s.io";
const PLURAL: &str = "customresourcedefinitions";

/// Where the `scale` subresource reads and writes: JSON pointers made from the CRD's
/// `subresources.scale` paths (`.spec.replicas` is `/spec/replicas`).
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// How objects move between versions (`spec.conversion`).
#[derive(Debug, Clone)]
pub enum Conversion {
    /// Only `apiVersion` changes.
    None,
    /// A ConversionReview to this webhook, in the first of these review versions it knows.
    Webhook { client_config: ClientConfig, review_versions: Vec<String> },
}

/// One served version of a custom resource, attached to its `ResourceInfo`.
pub struct CustomVersion {
    pub kind: String,
    pub schema: Option<Schema>,
    pub rules: Option<Rules>,
    /// The version's `openAPIV3Schema`, for the OpenAPI documents.
    pub raw_schema: Option<Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    pub status: bool,
    /// The deprecation warning sent with every answer, when the version is deprecated.
    pub warning: Option<String>,
    pub conversion: Conversion,
    /// `selectableFields` as field selector names (`spec.color`).
    pub selectable_fields: Vec<String>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// The CRD's resourceVersion this was built from.
    pub revision: u64,
}

impl CustomVersion {
    /// The custom version attached to `res`, if it is a custom resource.
    pub fn of(res: &ResourceInfo) -> Option<&CustomVersion> {
        res.custom.as_ref().and_then(|a| a.0.downcast_ref::<CustomVersion>())
    }

    /// Drop undeclared fields and fill defaults (kube's decoding of a custom object), before
    /// anything else reads the object.
    pub fn prune_and_default(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            schema.prune(obj);
            schema.default(obj);
        }
    }

    /// The fields `fieldValidation` reports: those the schema does not declare.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        match &self.schema {
            Some(schema) => {
                let mut copy = obj.clone();
                schema.prune(&mut copy)
            }
            None => Vec::new(),
        }
    }

    /// The schema's and the CEL rules' verdict on `obj` (`old` on an update).
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(schema) = &self.schema {
            errors.extend(schema.validate(obj));
        }
        // kube runs the rules only on objects the schema accepts.
        if errors.is_empty()
            && let Some(rules) = &self.rules
            && !rules.is_empty()
        {
            errors.extend(rules.validate(obj, old));
        }
        errors
    }
}

/// The resources served at one moment: the built-in ones and those of established CRDs.
pub struct Served {
    pub registry: Arc<Registry>,
    /// What each CRD contributed, by name, with the resourceVersion it was built from.
    entries: HashMap<String, (u64, Vec<ResourceInfo>)>,
    /// The aggregated discovery of `/apis` for `registry`, made on first use.
    apis_discovery: OnceLock<Value>,
}

impl Served {
    fn builtin(builtin: &Registry) -> Served {
        Served::new(builtin.clone(), HashMap::new())
    }

    fn new(registry: Registry, entries: HashMap<String, (u64, Vec<ResourceInfo>)>) -> Served {
        Served { registry: Arc::new(registry), entries, apis_discovery: OnceLock::new() }
    }

    /// The aggregated discovery document of `/apis` for these resources (built once).
    pub fn apis_discovery(&self) -> Value {
        self.apis_discovery
            .get_or_init(|| crate::discovery::aggregated(&self.registry, false))
            .clone()
    }
}

/// The served set and the CRD cache generation it was built from.
#[derive(Default)]
pub struct CustomResources {
    built: Mutex<Option<(u64, Arc<Served>)>>,
    cache: OnceLock<Arc<Cache>>,
    started: std::sync::atomic::AtomicBool,
}

/// The CRD watch cache.
pub fn crd_cache(state: &State) -> Option<&Arc<Cache>> {
    if let Some(c) = state.crds.cache.get() {
        return Some(c);
    }
    let res = state.registry.by_plural(GROUP, PLURAL)?;
    Some(state.crds.cache.get_or_init(|| state.caches.get(res)))
}

/// Wait until the CRD cache is built (at start-up, before serving).
pub async fn ready(state: &State) {
    if let Some(cache) = crd_cache(state)
        && !cache.is_ready()
    {
        state.caches.reach(cache, 1).await;
    }
}

/// Build the CRD cache and start the CRD controllers (once per server).
pub async fn start(state: &Arc<State>) {
    ready(state).await;
    if !state.crds.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
        tokio::spawn(controller::run(state.clone()));
    }
}

/// After a write to a CRD: wait until its cache has it, so the next request is routed by it.
pub async fn settle_write(state: &State) {
    if let Some(cache) = crd_cache(state) {
        state.caches.reach(cache, state.store.current_revision()).await;
    }
}

/// Every resource served now (built-in and custom).
pub fn registry(state: &State) -> Arc<Registry> {
    served(state).registry.clone()
}

/// The served set, rebuilt first if the CRDs changed since it was built.
pub fn served(state: &State) -> Arc<Served> {
    let Some(cache) = crd_cache(state) else {
        return Arc::new(Served::builtin(&state.registry));
    };
    let generation = cache.generation();
    let mut built = state.crds.built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((g, served)) = built.as_ref()
        && *g == generation
    {
        return served.clone();
    }
    let previous = built.as_ref().map(|(_, s)| s.clone());
    let served = Arc::new(rebuild(state, cache, previous.as_deref()));
    *built = Some((generation, served.clone()));
    served
}

fn rebuild(state: &State, cache: &Cache, previous: Option<&Served>) -> Served {
    let Some((crds, _)) = cache.snapshot(
        &skiff_api::list_prefix(&cache.resource, None),
        &crate::selectors::LabelSelector::default(),
        &crate::selectors::FieldSelector::default(),
    ) else {
        return Served::builtin(&state.registry);
    };
    let mut entries = HashMap::with_capacity(crds.len());
    for c in &crds {
        let name = c.key.rsplit('/').next().unwrap_or("").to_string();
        let reused = previous
            .and_then(|p| p.entries.get(&name))
            .filter(|(rv, _)| *rv == c.revision)
            .map(|(_, r)| r.clone());
        let resources = match reused {
            Some(r) => r,
            None => resources_of(&c.value(), c.revision),
        };
        entries.insert(name, (c.revision, resources));
    }
    let mut custom: Vec<&ResourceInfo> = entries.values().flat_map(|(_, r)| r.iter()).collect();
    // A group's versions in kube's priority order, so its first is its preferred one.
    custom.sort_by(|a, b| {
        a.group
            .cmp(b.group)
            .then_with(|| skiff_apiextensions::crd::compare_versions(b.version, a.version))
            .then_with(|| a.plural.cmp(b.plural))
    });
    // A built-in resource always wins a clash of group, version and plural.
    let registry = state.registry.with(custom.into_iter().cloned());
    Served::new(registry, entries)
}

fn is_condition_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// `.spec.replicas` as the JSON pointer `/spec/replicas`.
pub fn json_path_pointer(path: &str) -> String {
    path.trim_start_matches('.').split('.').fold(String::new(), |mut p, seg| {
        p.push('/');
        p.push_str(&seg.replace('~', "~0").replace('/', "~1"));
        p
    })
}

/// The webhook `clientConfig` of a CRD as the admission webhooks' client takes it.
fn client_config(c: &skiff_apiextensions::crd::ClientConfig) -> ClientConfig {
    ClientConfig {
        url: c.url.clone(),
        service: c.service.as_ref().map(|s| ServiceReference {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            path: s.path.clone(),
            port: u16::try_from(s.port).unwrap_or(443),
        }),
        ca_bundle: c.ca_bundle.clone(),
    }
}

/// The resources an established CRD serves, one per served version, under its accepted
/// names.
fn resources_of(crd: &Value, revision: u64) -> Vec<ResourceInfo> {
    if !is_condition_true(crd, "Established") {
        return Vec::new();
    }
    let view = CrdView::parse(crd);
    let names = match crd.pointer("/status/acceptedNames").filter(|n| n.get("plural").is_some()) {
        Some(accepted) => Names::parse(accepted),
        None => view.names.clone(),
    };
    if view.group.is_empty() || names.plural.is_empty() || names.kind.is_empty() {
        return Vec::new();
    }
    let storage_version = view.storage_version().map(|v| v.name.clone()).unwrap_or_default();
    let conversion = match (&view.conversion.strategy, &view.conversion.client_config) {
        (ConversionStrategy::Webhook, Some(c)) => Conversion::Webhook {
            client_config: client_config(c),
            review_versions: view.conversion.review_versions.clone(),
        },
        _ => Conversion::None,
    };
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    let short: Vec<&str> = names.short_names.iter().map(String::as_str).collect();
    let categories: Vec<&str> = names.categories.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for v in view.versions.iter().filter(|v| v.served && !v.name.is_empty()) {
        let schema = v.schema.as_ref().map(Schema::parse);
        let rules = v.schema.as_ref().map(Rules::for_serving);
        let scale = v.scale.as_ref().map(|s| ScalePaths {
            spec_replicas: json_path_pointer(&s.spec_replicas_path),
            status_replicas: json_path_pointer(&s.status_replicas_path),
            label_selector: s.label_selector_path.as_deref().map(json_path_pointer),
        });
        let subresources: &'static [&'static str] = match (v.status_subresource, scale.is_some()) {
            (true, true) => &["status", "scale"],
            (true, false) => &["status"],
            (false, true) => &["scale"],
            (false, false) => &[],
        };
        let storage =
            (v.name != storage_version).then(|| (intern(&view.group), intern(&storage_version)));
        let attached = CustomVersion {
            kind: names.kind.clone(),
            schema,
            rules,
            raw_schema: v.schema.clone(),
            columns: v.printer_columns.clone(),
            scale,
            status: v.status_subresource,
            warning: v.warning(&view.group, &names.kind),
            conversion: conversion.clone(),
            selectable_fields: v
                .selectable_fields
                .iter()
                .map(|p| p.trim_start_matches('.').to_string())
                .collect(),
            terminating,
            revision,
        };
        out.push(ResourceInfo {
            group: intern(&view.group),
            version: intern(&v.name),
            kind: intern(&names.kind),
            list_kind: intern(&names.list_kind),
            plural: intern(&names.plural),
            singular: intern(&names.singular),
            namespaced: view.namespaced,
            short_names: intern_list(&short),
            categories: intern_list(&categories),
            verbs: &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            subresources,
            has_spec: true,
            storage,
            custom: Some(Attachment(Arc::new(attached))),
        });
    }
    out
}

/// The answer to a create of a custom object while its CRD is being deleted.
pub fn refuse_create_while_terminating(res: &ResourceInfo) -> Result<(), ApiError> {
    match CustomVersion::of(res) {
        Some(cv) if cv.terminating => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        )),
        _ => Ok(()),
    }
}

/// Check a custom object: the schema, the CEL rules (with `old` on an update), as kube's
/// custom resource strategy validates it.
pub fn validate(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(cv) = CustomVersion::of(res) else { return Ok(()) };
    let errors = cv.validate(obj, old);
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::invalid_fields(res.group, res.kind, name, &errors))
}

/// The generation of a custom object moves when anything but its metadata (and, with a
/// status subresource, its status) changes.
pub fn spec_changed(res: &ResourceInfo, new: &Value, old: &Value) -> bool {
    let status = CustomVersion::of(res).is_some_and(|cv| cv.status);
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else { return new != old };
    let counted = |k: &&String| {
        !(matches!(k.as_str(), "metadata" | "apiVersion" | "kind") || (status && *k == "status"))
    };
    let nk: Vec<&String> = n.keys().filter(counted).collect();
    let ok: Vec<&String> = o.keys().filter(counted).collect();
    nk != ok || nk.iter().any(|k| n.get(*k) != o.get(*k))
}

/// The `autoscaling/v1` Scale of a custom object.
pub fn scale_of(paths: &ScalePaths, obj: &Value) -> Value {
    let replicas = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| obj.pointer(p))
        .and_then(Value::as_str)
        .unwrap_or("");
    crate::subresources::scale_value(
        obj,
        replicas(&paths.spec_replicas),
        replicas(&paths.status_replicas),
        selector,
    )
}

/// Set the value at a JSON pointer, making the objects on the way.
pub fn set_at(obj: &mut Value, pointer: &str, value: Value) {
    let mut cur = obj;
    let segs: Vec<String> =
        pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Value::Object(m) = cur else { return };
        if i + 1 == segs.len() {
            m.insert(seg.clone(), value);
            return;
        }
        cur = m.entry(seg.clone()).or_insert_with(|| json!({}));
    }
}

/// The Table columns of a custom version: Name, then its printer columns (or Age when it
/// declares none), as kube's default table convertor for custom resources.
pub fn table_columns(cv: &CustomVersion) -> Vec<Value> {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0})];
    if cv.columns.is_empty() {
        cols.push(json!({"name": "Age", "type": "date", "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            "priority": 0}));
    }
    for c in &cv.columns {
        cols.push(json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    cols
}

/// One Table row's cells for a custom object.
pub fn table_cells(cv: &CustomVersion, obj: &Value) -> Vec<Value> {
    let mut cells =
        vec![json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""))];
    if cv.columns.is_empty() {
        cells.push(json!(crate::table::age(obj.pointer("/metadata/creationTimestamp"))));
    }
    for c in &cv.columns {
        let found = skiff_apiextensions::crd::evaluate_jsonpath(obj, &c.json_path);
        let cell = match found.as_deref() {
            None | Some([]) => Value::Null,
            Some([one]) => match (c.type_.as_str(), one) {
                ("date", Value::String(_)) => json!(crate::table::age(Some(one))),
                (_, Value::Array(_) | Value::Object(_)) => json!(one.to_string()),
                _ => one.clone(),
            },
            Some(many) => json!(
                many.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        cells.push(cell);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_become_pointers() {
        assert_eq!(json_path_pointer(".spec.replicas"), "/spec/replicas");
        assert_eq!(json_path_pointer(".status.a/b"), "/status/a~1b");
        let mut o = json!({});
        set_at(&mut o, "/spec/replicas", json!(3));
        assert_eq!(o, json!({"spec": {"replicas": 3}}));
    }

    #[test]
    fn generation_counts_what_is_not_metadata_or_status() {
        let crd = json!({"metadata": {"name": "ws.example.com", "uid": "u"},
            "spec": {"group": "example.com", "names": {"plural": "ws", "kind": "W"},
                "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}}}]},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        let res = resources_of(&crd, 1).pop().expect("served");
        let old = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut new = old.clone();
        new["status"]["y"] = json!(2);
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(!spec_changed(&res, &new, &old));
        new["data"] = json!(1);
        assert!(spec_changed(&res, &new, &old));
        assert_eq!(skiff_api::object_key(&res, Some("ns"), "a"), "/registry/example.com/ws/ns/a");
    }
}
