//! OpenAPI v2 (`/openapi/v2`, JSON and gnostic protobuf) and v3 (`/openapi/v3/...`) documents
//! for the served built-in kinds. Schemas come from k8s-openapi's JSON Schemas, rewritten into
//! the form kube-apiserver publishes: definitions named `io.k8s.api.core.v1.Pod`, `$ref`s into
//! `#/definitions` (v2) or `#/components/schemas` (v3), `x-kubernetes-group-version-kind` on
//! kinds and lists, int-or-string formats, and list patch metadata from `skiff_api::schema`.
//! Each document is built once per process and served from a cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use skiff_api::schema::{ListType, list_fields_of};
use skiff_api::{Registry, ResourceInfo};

const TITLE: &str = "Kubernetes";
const VERSION: &str = concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"));
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// How to produce the schema of one kind: its group-version-kind and a generator call.
struct KindSchema {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    schema: fn(&mut SchemaGenerator) -> String,
}

/// The definition name of `T`, registering its schema (and all it refers to) in `g`.
fn define<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

fn kind<T: JsonSchema + k8s_openapi::Resource>() -> KindSchema {
    KindSchema { group: T::GROUP, version: T::VERSION, kind: T::KIND, schema: define::<T> }
}

/// Every built-in kind Skiff can describe: one line per kind. A served kind not listed here
/// gets paths with a schema that accepts any object.
fn kind_schemas() -> Vec<KindSchema> {
    use api::{
        apps::v1 as apps, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2,
        batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    vec![
        kind::<core::Namespace>(),
        kind::<core::Node>(),
        kind::<core::Pod>(),
        kind::<core::Service>(),
        kind::<core::Endpoints>(),
        kind::<core::ConfigMap>(),
        kind::<core::Secret>(),
        kind::<core::ServiceAccount>(),
        kind::<core::Event>(),
        kind::<core::PersistentVolume>(),
        kind::<core::PersistentVolumeClaim>(),
        kind::<core::LimitRange>(),
        kind::<core::ResourceQuota>(),
        kind::<core::ReplicationController>(),
        kind::<core::PodTemplate>(),
        kind::<core::Binding>(),
        kind::<apps::Deployment>(),
        kind::<apps::ReplicaSet>(),
        kind::<apps::StatefulSet>(),
        kind::<apps::DaemonSet>(),
        kind::<apps::ControllerRevision>(),
        kind::<batch::Job>(),
        kind::<batch::CronJob>(),
        kind::<autoscaling1::HorizontalPodAutoscaler>(),
        kind::<autoscaling1::Scale>(),
        kind::<autoscaling2::HorizontalPodAutoscaler>(),
        kind::<networking::NetworkPolicy>(),
        kind::<networking::Ingress>(),
        kind::<networking::IngressClass>(),
        kind::<discovery::EndpointSlice>(),
        kind::<coordination::Lease>(),
        kind::<events::Event>(),
        kind::<node::RuntimeClass>(),
        kind::<rbac::Role>(),
        kind::<rbac::RoleBinding>(),
        kind::<rbac::ClusterRole>(),
        kind::<rbac::ClusterRoleBinding>(),
        kind::<storage::StorageClass>(),
        kind::<policy::PodDisruptionBudget>(),
        kind::<policy::Eviction>(),
        kind::<scheduling::PriorityClass>(),
        kind::<api::certificates::v1::CertificateSigningRequest>(),
        kind::<api::admissionregistration::v1::MutatingWebhookConfiguration>(),
        kind::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(),
        kind::<api::admissionregistration::v1::ValidatingAdmissionPolicy>(),
        kind::<api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
        kind::<api::admissionregistration::v1beta1::MutatingAdmissionPolicy>(),
        kind::<api::admissionregistration::v1beta1::MutatingAdmissionPolicyBinding>(),
        kind::<api::authentication::v1::TokenReview>(),
        kind::<apiextensions::v1::CustomResourceDefinition>(),
        kind::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(),
    ]
}

fn lookup<'a>(
    table: &'a [KindSchema],
    group: &str,
    version: &str,
    kind: &str,
) -> Option<&'a KindSchema> {
    table.iter().find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// kube's definition name for a custom kind: the group reversed, the version, the kind
/// (`com.example.stable.v1.CronTab`).
fn custom_definition_name(r: &ResourceInfo) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

/// A custom kind's definition: its CRD version's schema with `apiVersion`, `kind` and
/// `metadata` described as kube publishes them.
fn custom_schema(cv: Option<&crate::crds::CustomVersion>, r: &ResourceInfo) -> Value {
    let mut schema = cv
        .and_then(|cv| cv.raw_schema.clone())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let Some(o) = schema.as_object_mut() else { return schema };
    o.entry("description").or_insert_with(|| json!(format!("{} is a custom resource.", r.kind)));
    let props = o.entry("properties").or_insert_with(|| json!({}));
    if let Some(props) = props.as_object_mut() {
        props
            .insert("apiVersion".into(), json!({"description": API_VERSION_DOC, "type": "string"}));
        props.insert("kind".into(), json!({"description": KIND_DOC, "type": "string"}));
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("#/definitions/{META}.ObjectMeta"),
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
        );
    }
    schema
}

/// The definition name Kubernetes gives a kind that k8s-openapi does not describe.
fn fallback_name(r: &ResourceInfo, kind: &str) -> String {
    let group = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.split('.').next().unwrap_or(r.group).to_string()
    };
    format!("io.k8s.api.{group}.{}.{kind}", r.version)
}

/// Which OpenAPI dialect a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V2,
    V3,
}

impl Dialect {
    fn ref_prefix(self) -> &'static str {
        match self {
            Dialect::V2 => "#/definitions/",
            Dialect::V3 => "#/components/schemas/",
        }
    }
}

/// The resources of one document with the definition names of their kinds and lists.
struct Described<'a> {
    resource: &'a ResourceInfo,
    definition: String,
    list_definition: String,
}

/// Definitions (in v2 form, `$ref`s into `#/definitions/`) for `resources`, plus the shared
/// meta types every path refers to.
fn definitions<'a>(
    resources: impl Iterator<Item = &'a ResourceInfo>,
) -> (Map<String, Value>, Vec<Described<'a>>) {
    let table = kind_schemas();
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
        })
        .into_generator();
    for common in [
        define::<meta::v1::Status>,
        define::<meta::v1::DeleteOptions>,
        define::<meta::v1::ListMeta>,
        define::<meta::v1::Patch>,
        define::<meta::v1::WatchEvent<()>>,
        define::<meta::v1::APIResourceList>,
    ] {
        common(&mut g);
    }
    let mut described = Vec::new();
    let mut gvks: Vec<(String, Value)> = Vec::new();
    let mut fallbacks = Map::new();
    for r in resources {
        let custom = crate::crds::CustomVersion::of(r);
        let definition = match lookup(&table, r.group, r.version, r.kind) {
            Some(k) if custom.is_none() => (k.schema)(&mut g),
            _ if custom.is_some() => {
                let name = custom_definition_name(r);
                fallbacks.insert(name.clone(), custom_schema(custom, r));
                name
            }
            _ => {
                let name = fallback_name(r, r.kind);
                fallbacks.insert(
                    name.clone(),
                    json!({
                        "description": format!("{} is served by Skiff without a published schema.", r.kind),
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"$ref": format!("#/definitions/{META}.ObjectMeta")},
                        },
                    }),
                );
                name
            }
        };
        let list_definition = format!("{definition}List");
        gvks.push((definition.clone(), gvk(r.group, r.version, r.kind)));
        gvks.push((list_definition.clone(), gvk(r.group, r.version, r.list_kind)));
        described.push(Described { resource: r, definition, list_definition });
    }
    for sub in described.iter().flat_map(|d| d.resource.subresources.iter()) {
        let (group, version, kind) = subresource_kind(sub);
        if let Some(k) = lookup(&table, group, version, kind) {
            let name = (k.schema)(&mut g);
            gvks.push((name, self::gvk(group, version, kind)));
        }
    }
    if !fallbacks.is_empty() {
        define::<meta::v1::ObjectMeta>(&mut g);
    }
    let mut defs = g.take_definitions(false);
    defs.extend(fallbacks);
    for d in &described {
        let item = d.definition.clone();
        let kind = d.resource.kind;
        defs.insert(
            d.list_definition.clone(),
            json!({
                "description": format!("{} is a list of {kind} objects.", d.resource.list_kind),
                "type": "object",
                "properties": {
                    "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
                    "items": {
                        "description": format!("List of {}.", d.resource.plural),
                        "type": "array",
                        "items": {"$ref": format!("#/definitions/{item}")},
                    },
                    "kind": {"description": KIND_DOC, "type": "string"},
                    "metadata": {
                        "$ref": format!("#/definitions/{META}.ListMeta"),
                        "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                    },
                },
                "required": ["items"],
            }),
        );
    }
    for (name, def) in defs.iter_mut() {
        annotate(name, def);
    }
    let mut merged: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, g) in gvks {
        let list = merged.entry(name).or_default();
        if !list.contains(&g) {
            list.push(g);
        }
    }
    for (name, list) in merged {
        if let Some(def) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            def.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            // k8s-openapi requires `metadata` of every kind; Kubernetes does not.
            if let Some(Value::Array(required)) = def.get_mut("required") {
                required.retain(|r| r != "metadata");
                if required.is_empty() {
                    def.remove("required");
                }
            }
        }
    }
    (defs, described)
}

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Group, version and kind of what a subresource reads and writes.
fn subresource_kind(sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "eviction" => ("policy", "v1", "Eviction"),
        _ => ("", "", ""),
    }
}

/// Adds Kubernetes' extensions to one definition: list patch metadata on its list fields and
/// the int-or-string shape of `IntOrString` and `Quantity`.
fn annotate(name: &str, def: &mut Value) {
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString" {
        def["type"] = json!("string");
        def["format"] = json!("int-or-string");
    }
    if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
        def["type"] = json!("string");
    }
    let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, strategy) in skiff_api::schema::field_strategies_of(name) {
        if let Some(prop) = props.get_mut(field).and_then(Value::as_object_mut) {
            prop.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
    }
    for f in list_fields_of(name) {
        let Some(prop) = props.get_mut(f.field).and_then(Value::as_object_mut) else { continue };
        match f.list_type {
            ListType::Atomic => {
                prop.insert("x-kubernetes-list-type".into(), json!("atomic"));
            }
            ListType::Set => {
                prop.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            ListType::Map(keys) => {
                prop.insert("x-kubernetes-list-type".into(), json!("map"));
                prop.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
        if let Some(s) = f.patch_strategy {
            prop.insert("x-kubernetes-patch-strategy".into(), json!(s));
        }
        if let Some(k) = f.patch_merge_key {
            prop.insert("x-kubernetes-patch-merge-key".into(), json!(k));
        }
    }
}

/// Rewrites a v2-form schema into v3 form: `$ref`s into `#/components/schemas/`, a `$ref`
/// with siblings (a description) wrapped in `allOf`, int-or-string as `oneOf`.
fn to_v3(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                to_v3(child);
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(rest) = r.strip_prefix("#/definitions/") {
                    *r = format!("#/components/schemas/{rest}");
                }
                if m.len() > 1 {
                    let r = m.remove("$ref").unwrap_or_default();
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_v3),
        _ => {}
    }
}

fn v3_int_or_string(defs: &mut Map<String, Value>) {
    if let Some(d) = defs.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString") {
        let description = d["description"].clone();
        *d = json!({"description": description, "format": "int-or-string",
            "oneOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true});
    }
    if let Some(d) = defs.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
        let description = d["description"].clone();
        *d = json!({"description": description,
            "oneOf": [{"type": "string"}, {"type": "number"}], "x-kubernetes-int-or-string": true});
    }
}

/// `listCoreV1NamespacedPod`-style operation id part: `CoreV1`, `AppsV1`, `RbacAuthorizationV1`.
fn op_group(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") };
    let mut out = String::new();
    for part in group.split(['.', '-']) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    let mut chars = version.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
    out
}

/// The tag Kubernetes files operations under: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
fn op_tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") };
    let mut out = String::new();
    for (i, part) in group.split('.').enumerate() {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                out.push(first)
            } else {
                out.extend(first.to_uppercase())
            }
            out.push_str(chars.as_str());
        }
    }
    format!("{out}_{version}")
}

/// One query/path parameter in either dialect.
fn param(d: Dialect, name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p =
        json!({"name": name, "in": location, "description": description, "uniqueItems": true});
    if location == "path" {
        p["required"] = json!(true);
    }
    match d {
        Dialect::V2 => p["type"] = json!(ty),
        Dialect::V3 => p["schema"] = json!({"type": ty, "uniqueItems": true}),
    }
    p
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";

fn write_params(d: Dialect) -> Vec<Value> {
    vec![
        param(d, "dryRun", "query", "string", DRY_RUN),
        param(d, "fieldManager", "query", "string", FIELD_MANAGER),
        param(d, "fieldValidation", "query", "string", FIELD_VALIDATION),
    ]
}

fn list_params(d: Dialect) -> Vec<Value> {
    [
        ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        ("continue", "string", "The continue option should be set when retrieving more results from the server."),
        ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
        ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
    .iter()
    .map(|(n, t, desc)| param(d, n, "query", t, desc))
    .collect()
}

fn delete_params(d: Dialect) -> Vec<Value> {
    vec![
        param(d, "dryRun", "query", "string", DRY_RUN),
        param(
            d,
            "gracePeriodSeconds",
            "query",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        param(
            d,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "query",
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
        ),
        param(
            d,
            "propagationPolicy",
            "query",
            "string",
            "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
        ),
    ]
}

// No CBOR media types: the server neither reads nor writes CBOR, and Kubernetes publishes
// none while its CBOR serving is off.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const PRODUCES: &[&str] =
    &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
/// Custom resources: no strategic merge patch (kubectl then sends merge patches), no protobuf.
const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];
const CUSTOM_PRODUCES: &[&str] = &["application/json", "application/yaml"];

/// Builds one operation. `body` is the request schema's definition name, `response` the
/// response's.
struct Op<'a> {
    d: Dialect,
    id: String,
    action: &'a str,
    gvk: &'a Value,
    tag: &'a str,
    description: String,
    params: Vec<Value>,
    body: Option<(&'a str, &'a [&'a str])>,
    responses: Vec<(&'a str, &'a str)>,
    produces: &'a [&'a str],
}

impl Op<'_> {
    fn build(self) -> Value {
        let d = self.d;
        let reference = |name: &str| json!({"$ref": format!("{}{name}", d.ref_prefix())});
        let mut op = json!({
            "description": self.description,
            "operationId": self.id,
            "tags": [self.tag],
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        let mut params = self.params;
        let mut responses = Map::new();
        for (code, schema) in &self.responses {
            let description = match *code {
                "200" => "OK",
                "201" => "Created",
                "202" => "Accepted",
                _ => "Unauthorized",
            };
            let r = match d {
                Dialect::V2 => json!({"description": description, "schema": reference(schema)}),
                Dialect::V3 => {
                    let content: Map<String, Value> = self
                        .produces
                        .iter()
                        .map(|ct| (ct.to_string(), json!({"schema": reference(schema)})))
                        .collect();
                    json!({"description": description, "content": content})
                }
            };
            responses.insert(code.to_string(), r);
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        op["responses"] = Value::Object(responses);
        match d {
            Dialect::V2 => {
                op["produces"] = json!(self.produces);
                op["schemes"] = json!(["https"]);
                if let Some((schema, consumes)) = self.body {
                    params.insert(
                        0,
                        json!({"name": "body", "in": "body", "required": true, "schema": reference(schema)}),
                    );
                    op["consumes"] = json!(consumes);
                } else {
                    op["consumes"] = json!(["*/*"]);
                }
            }
            Dialect::V3 => {
                if let Some((schema, consumes)) = self.body {
                    let content: Map<String, Value> = consumes
                        .iter()
                        .map(|ct| (ct.to_string(), json!({"schema": reference(schema)})))
                        .collect();
                    op["requestBody"] = json!({"content": content, "required": true});
                }
            }
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        op
    }
}

/// The paths of one resource: collection, item, subresources and (for namespaced
/// resources) the all-namespaces list.
fn resource_paths(d: Dialect, desc: &Described<'_>, paths: &mut Map<String, Value>) {
    let r = desc.resource;
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let og = op_group(r.group, r.version);
    let tag = op_tag(r.group, r.version);
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let kind = r.kind;
    let gvk = gvk(r.group, r.version, kind);
    let custom = r.is_custom();
    let json_types: &[&str] = if custom { CUSTOM_PRODUCES } else { PRODUCES };
    let patch_types: &[&str] = if custom { CUSTOM_PATCH_TYPES } else { PATCH_TYPES };
    let def = desc.definition.as_str();
    let list_def = desc.list_definition.as_str();
    let status = format!("{META}.Status");
    let delete_options = format!("{META}.DeleteOptions");
    let patch = format!("{META}.Patch");
    let op = |id: String, action: &'static str, description: String| Op {
        d,
        id,
        action,
        gvk: &gvk,
        tag: &tag,
        description,
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
        produces: json_types,
    };
    let name_param = param(d, "name", "path", "string", &format!("name of the {kind}"));
    let ns_param = param(
        d,
        "namespace",
        "path",
        "string",
        "object name and auth scope, such as for teams and projects",
    );
    let pretty = param(
        d,
        "pretty",
        "query",
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    );
    let mut common = Vec::new();
    if r.namespaced {
        common.push(ns_param.clone());
    }
    common.push(pretty.clone());
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };

    let mut list = op(
        format!("list{og}{scope}{kind}"),
        "list",
        format!("list or watch objects of kind {kind}"),
    );
    list.params = list_params(d);
    list.responses = vec![("200", list_def)];
    list.produces = &[
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "application/json;stream=watch",
        "application/vnd.kubernetes.protobuf;stream=watch",
    ];
    let mut create = op(format!("create{og}{scope}{kind}"), "post", format!("create a {kind}"));
    create.params = write_params(d);
    create.body = Some((def, json_types));
    create.responses = vec![("200", def), ("201", def), ("202", def)];
    let mut delete_collection = op(
        format!("delete{og}Collection{scope}{kind}"),
        "deletecollection",
        format!("delete collection of {kind}"),
    );
    delete_collection.params = [delete_params(d), list_params(d)].concat();
    delete_collection.body = Some((&delete_options, json_types));
    delete_collection.responses = vec![("200", &status)];
    paths.insert(
        collection.clone(),
        json!({
            "get": list.build(),
            "post": create.build(),
            "delete": delete_collection.build(),
            "parameters": common.clone(),
        }),
    );

    let mut item_params = vec![name_param.clone()];
    item_params.extend(common.iter().cloned());
    let item_ops = |suffix: &str, schema: &str, patchable: bool| {
        let what =
            if suffix.is_empty() { String::new() } else { format!(" {}", suffix.to_lowercase()) };
        let mut read = op(
            format!("read{og}{scope}{kind}{suffix}"),
            "get",
            format!("read{what} of the specified {kind}"),
        );
        read.responses = vec![("200", schema)];
        let mut replace = op(
            format!("replace{og}{scope}{kind}{suffix}"),
            "put",
            format!("replace{what} of the specified {kind}"),
        );
        replace.params = write_params(d);
        replace.body = Some((schema, json_types));
        replace.responses = vec![("200", schema), ("201", schema)];
        let mut p = op(
            format!("patch{og}{scope}{kind}{suffix}"),
            "patch",
            format!("partially update{what} of the specified {kind}"),
        );
        p.params = write_params(d);
        p.params.push(param(d, "force", "query", "boolean", FORCE));
        p.body = Some((&patch, patch_types));
        p.responses = vec![("200", schema), ("201", schema)];
        let mut item =
            json!({"get": read.build(), "put": replace.build(), "parameters": item_params.clone()});
        if patchable {
            item["patch"] = p.build();
        }
        item
    };
    let mut item = item_ops("", def, true);
    let mut delete = op(format!("delete{og}{scope}{kind}"), "delete", format!("delete a {kind}"));
    delete.params = delete_params(d);
    delete.body = Some((&delete_options, json_types));
    delete.responses = vec![("200", &status), ("202", &status)];
    item["delete"] = delete.build();
    paths.insert(format!("{collection}/{{name}}"), item);

    for sub in r.subresources {
        let path = format!("{collection}/{{name}}/{sub}");
        let value = match *sub {
            "status" => item_ops("Status", def, true),
            "scale" => item_ops("Scale", "io.k8s.api.autoscaling.v1.Scale", true),
            "log" => {
                let mut read = op(
                    format!("read{og}{scope}{kind}Log"),
                    "get",
                    format!("read log of the specified {kind}"),
                );
                read.params = [
                    ("container", "string"),
                    ("follow", "boolean"),
                    ("insecureSkipTLSVerifyBackend", "boolean"),
                    ("limitBytes", "integer"),
                    ("previous", "boolean"),
                    ("sinceSeconds", "integer"),
                    ("stream", "string"),
                    ("tailLines", "integer"),
                    ("timestamps", "boolean"),
                ]
                .iter()
                .map(|(n, t)| param(d, n, "query", t, n))
                .collect();
                read.responses = Vec::new();
                read.produces = &[
                    "text/plain",
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                ];
                let mut v = read.build();
                let ok = match d {
                    Dialect::V2 => json!({"description": "OK", "schema": {"type": "string"}}),
                    Dialect::V3 => {
                        json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
                    }
                };
                v["responses"]["200"] = ok;
                json!({"get": v, "parameters": item_params.clone()})
            }
            "binding" => {
                let mut create = op(
                    format!("create{og}{scope}{kind}Binding"),
                    "post",
                    format!("create binding of a {kind}"),
                );
                create.params = write_params(d);
                create.body = Some(("io.k8s.api.core.v1.Binding", json_types));
                create.responses = vec![
                    ("200", "io.k8s.api.core.v1.Binding"),
                    ("201", "io.k8s.api.core.v1.Binding"),
                    ("202", "io.k8s.api.core.v1.Binding"),
                ];
                json!({"post": create.build(), "parameters": item_params.clone()})
            }
            "finalize" => {
                let mut replace = op(
                    format!("replace{og}{scope}{kind}Finalize"),
                    "put",
                    format!("replace finalize of the specified {kind}"),
                );
                replace.params = write_params(d);
                replace.body = Some((def, json_types));
                replace.responses = vec![("200", def), ("201", def)];
                json!({"put": replace.build(), "parameters": item_params.clone()})
            }
            "eviction" => {
                let mut create = op(
                    format!("create{og}{scope}{kind}Eviction"),
                    "post",
                    format!("create eviction of a {kind}"),
                );
                create.params = write_params(d);
                create.body = Some(("io.k8s.api.policy.v1.Eviction", json_types));
                create.responses = vec![
                    ("200", "io.k8s.api.policy.v1.Eviction"),
                    ("201", "io.k8s.api.policy.v1.Eviction"),
                ];
                json!({"post": create.build(), "parameters": item_params.clone()})
            }
            _ => continue,
        };
        paths.insert(path, value);
    }

    if r.namespaced {
        let mut all = op(
            format!("list{og}{kind}ForAllNamespaces"),
            "list",
            format!("list or watch objects of kind {kind}"),
        );
        all.params = list_params(d);
        all.responses = vec![("200", list_def)];
        paths.insert(
            format!("{prefix}/{}", r.plural),
            json!({"get": all.build(), "parameters": [pretty]}),
        );
    }
}

/// The OpenAPI v3 document of one group-version, or `None` when nothing is served there.
fn build_v3(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = reg.in_group_version(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let (mut defs, described) = definitions(resources.into_iter());
    let mut paths = Map::new();
    for d in &described {
        resource_paths(Dialect::V3, d, &mut paths);
    }
    let mut defs_value = Value::Object(std::mem::take(&mut defs));
    to_v3(&mut defs_value);
    let Value::Object(mut defs) = defs_value else { return None };
    v3_int_or_string(&mut defs);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }))
}

/// The OpenAPI v2 document of everything served.
fn build_v2(reg: &Registry) -> Value {
    build_v2_of(reg.all())
}

fn build_v2_of(resources: &[ResourceInfo]) -> Value {
    let (defs, described) = definitions(resources.iter());
    let mut paths = Map::new();
    for d in &described {
        resource_paths(Dialect::V2, d, &mut paths);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "definitions": defs,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

/// A built document, serialized once.
#[derive(Debug)]
pub struct Document {
    pub json: Bytes,
    /// Upper-case hex SHA-256 of `json`, as linked from the `/openapi/v3` index.
    pub hash: String,
}

impl Document {
    fn new(v: &Value) -> Document {
        let json = Bytes::from(serde_json::to_vec(v).unwrap_or_default());
        let hash = Sha256::digest(&json).iter().map(|b| format!("{b:02X}")).collect();
        Document { json, hash }
    }
}

type Cache = Mutex<HashMap<String, Option<Arc<Document>>>>;

/// How many built documents are kept before the cache starts over.
const MAX_CACHED_DOCUMENTS: usize = 1024;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// A key for the set of served resources, so different registries get their own documents.
fn registry_key(reg: &Registry) -> String {
    let mut h = Sha256::new();
    for r in reg.all() {
        // A custom kind's schema may change under the same names: its CRD's revision counts.
        let revision = crate::crds::CustomVersion::of(r).map_or(0, |cv| cv.revision);
        h.update(format!(
            "{}/{}/{}/{}/{}/{revision};",
            r.group,
            r.version,
            r.kind,
            r.plural,
            r.subresources.join(",")
        ));
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn cached(key: String, build: impl FnOnce() -> Option<Value>) -> Option<Arc<Document>> {
    if let Some(doc) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return doc;
    }
    let doc = build().map(|v| Arc::new(Document::new(&v)));
    if let Ok(mut c) = cache().lock() {
        // Documents of registries long gone (CRDs changed since) are dropped in bulk.
        if c.len() >= MAX_CACHED_DOCUMENTS {
            c.clear();
        }
        c.insert(key, doc.clone());
    }
    doc
}

/// The cached OpenAPI v3 document of one group-version.
pub fn v3(reg: &Registry, group: &str, version: &str) -> Option<Arc<Document>> {
    cached(format!("{}:v3:{group}/{version}", registry_key(reg)), || build_v3(reg, group, version))
}

/// The cached OpenAPI v2 document as JSON.
pub fn v2(reg: &Registry) -> Arc<Document> {
    cached(format!("{}:v2", registry_key(reg)), || Some(build_v2(reg)))
        .unwrap_or_else(|| Arc::new(Document::new(&Value::Null)))
}

/// The cached OpenAPI v2 document in gnostic's `openapi.v2.Document` protobuf encoding.
pub fn v2_protobuf(reg: &Registry) -> Bytes {
    static PB: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    let key = registry_key(reg);
    let pb = PB.get_or_init(Default::default);
    if let Some(doc) = pb.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return doc;
    }
    let doc: Value = serde_json::from_slice(&v2(reg).json).unwrap_or(Value::Null);
    let bytes = Bytes::from(crate::gnostic::document(&doc));
    if let Ok(mut c) = pb.lock() {
        if c.len() >= MAX_CACHED_DOCUMENTS {
            c.clear();
        }
        c.insert(key, bytes.clone());
    }
    bytes
}

/// The `/openapi/v3` index: one entry per served group-version with its content hash.
pub fn v3_root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, vs) in reg.groups() {
        for v in vs {
            gvs.push((g, v));
        }
    }
    for (g, v) in gvs {
        let Some(doc) = v3(reg, g, v) else { continue };
        let path = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|c| all_refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| all_refs(c, out)),
            _ => {}
        }
    }

    fn doc(d: &Document) -> Value {
        serde_json::from_slice(&d.json).unwrap()
    }

    #[test]
    fn v3_pod_schema_should_carry_container_merge_metadata() {
        let reg = Registry::builtin();
        let v = doc(&v3(&reg, "", "v1").unwrap());
        let schemas = &v["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
        let image = &schemas["io.k8s.api.core.v1.Container"]["properties"]["image"];
        assert!(image["description"].as_str().unwrap().contains("Container image name"));
        let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
        assert_eq!(meta["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
        let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["x-kubernetes-int-or-string"], true);
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "PodList"
        );
        let patch = &v["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
        assert!(patch["requestBody"]["content"]["application/apply-patch+yaml"].is_object());
        assert!(patch["requestBody"]["content"].get("application/apply-patch+cbor").is_none());
        assert!(!v.to_string().contains("cbor"), "CBOR is advertised but not served");
        assert!(
            patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation")
        );
        assert!(v["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
    }

    #[test]
    fn every_ref_should_resolve_in_v2_and_v3() {
        let reg = Registry::builtin();
        let v2 = doc(&v2(&reg));
        let mut refs = Vec::new();
        all_refs(&v2, &mut refs);
        assert!(refs.len() > 100);
        for r in &refs {
            let name = r.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("bad ref {r}"));
            assert!(v2["definitions"][name].is_object(), "dangling {r}");
        }
        for (g, vs) in reg.groups().into_iter().chain([("", vec!["v1"])]) {
            for version in vs {
                let v = doc(&v3(&reg, g, version).unwrap());
                let mut refs = Vec::new();
                all_refs(&v, &mut refs);
                for r in &refs {
                    let name = r.strip_prefix("#/components/schemas/").unwrap();
                    assert!(
                        v["components"]["schemas"][name].is_object(),
                        "dangling {r} in {g}/{version}"
                    );
                }
            }
        }
    }

    /// A resource entry for every kind of the schema table, as a full registry would have.
    fn every_kind() -> Vec<ResourceInfo> {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        kind_schemas()
            .iter()
            .filter(|k| !matches!(k.kind, "Scale" | "Binding" | "Eviction"))
            .map(|k| ResourceInfo {
                group: k.group,
                version: k.version,
                kind: k.kind,
                list_kind: leak(format!("{}List", k.kind)),
                plural: leak(format!("{}s", k.kind.to_lowercase())),
                singular: leak(k.kind.to_lowercase()),
                namespaced: true,
                short_names: &[],
                categories: &[],
                verbs: &["get"],
                subresources: match k.kind {
                    "Deployment" | "ReplicaSet" | "StatefulSet" => &["status", "scale"],
                    "Pod" => &["status", "log", "binding", "eviction"],
                    _ => &["status"],
                },
                has_spec: true,
                storage: None,
                custom: None,
            })
            .collect()
    }

    #[test]
    fn every_listed_kind_should_have_a_schema_and_deployment_its_gvk() {
        let resources = every_kind();
        let (defs, described) = definitions(resources.iter());
        assert_eq!(described.len(), resources.len());
        for d in &described {
            assert!(d.definition.ends_with(&format!(".{}", d.resource.kind)), "{}", d.definition);
            let def = &defs[&d.definition];
            assert!(def["properties"]["metadata"].is_object(), "{} has no metadata", d.definition);
            assert!(
                def["x-kubernetes-group-version-kind"].as_array().is_some_and(|l| !l.is_empty()),
                "{} has no GVK",
                d.definition
            );
        }
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            defs["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        assert_eq!(
            defs["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Scale"
        );
        let conditions = &defs["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-patch-merge-key"], "type");
        let ports = &defs["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["port", "protocol"]));
        let tolerations = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert_eq!(tolerations["x-kubernetes-list-type"], "atomic");
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        // Every table entry names a type that exists, so no patch metadata goes unpublished.
        for f in skiff_api::schema::LIST_FIELDS {
            let Some(def) = defs.get(f.owner) else { panic!("{} is not a definition", f.owner) };
            assert!(
                def["properties"][f.field].is_object(),
                "{}.{} does not exist",
                f.owner,
                f.field
            );
        }
        let v2 = build_v2_of(&resources);
        let paths = v2["paths"].as_object().unwrap();
        let scale =
            &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        let list = &paths["/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles"]["get"];
        assert_eq!(list["operationId"], "listRbacAuthorizationV1NamespacedRole");
        assert_eq!(list["tags"][0], "rbacAuthorization_v1");
    }

    /// The v2 document for every kind of the table; prints its size and build time (read with
    /// `--nocapture`).
    #[test]
    fn full_v2_document_should_describe_every_kind_in_one_document() {
        let resources = every_kind();
        let start = std::time::Instant::now();
        let v2 = build_v2_of(&resources);
        let json = serde_json::to_vec(&v2).unwrap();
        let v2_ms = start.elapsed().as_millis();
        let start = std::time::Instant::now();
        let pb = crate::gnostic::document(&v2);
        let pb_ms = start.elapsed().as_millis();
        println!(
            "v2: {} definitions, {} paths, {} bytes JSON in {v2_ms} ms; protobuf {} bytes in {pb_ms} ms",
            v2["definitions"].as_object().unwrap().len(),
            v2["paths"].as_object().unwrap().len(),
            json.len(),
            pb.len()
        );
        assert!(json.len() > 1_000_000);
        let defs = v2["definitions"].as_object().unwrap();
        for r in &resources {
            let list = format!("{}List", r.kind);
            assert!(defs.keys().any(|k| k.ends_with(&format!(".{list}"))), "no {list}");
        }
    }

    #[test]
    fn v2_protobuf_should_carry_swagger_version_and_definitions() {
        let reg = Registry::builtin();
        let pb = v2_protobuf(&reg);
        assert_eq!(&pb[..5], b"\x0a\x032.0");
        assert!(pb.len() > 100_000);
    }
}
