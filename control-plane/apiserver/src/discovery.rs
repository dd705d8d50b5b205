//! Discovery documents: `/version`, legacy `/api`, `/apis`, per group-version
//! `APIResourceList`s, aggregated discovery (`apidiscovery.k8s.io/v2`), and OpenAPI v3.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_api::{Registry, ResourceInfo};

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client asked for aggregated discovery in its `Accept` header.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        first.contains("as=APIGroupDiscoveryList")
            && first.contains("v=v2")
            && !first.contains("v=v2beta1")
    }) || accept.split(',').any(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2;"))
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "n/a (Rust)",
        "compiler": "rustc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .map(|(group, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": vs.clone(), "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let (_, versions) = reg.groups().into_iter().find(|(g, _)| *g == group)?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs.clone(), "preferredVersion": vs[0]}),
    )
}

pub fn api_resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in reg.in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "storageVersionHash": storage_version_hash(r),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (g, v, kind, verbs) = subresource_shape(r, sub);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (g, v) != (r.group, r.version) {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The (group, version, kind) a subresource answers with, and its verbs.
fn subresource_shape(
    r: &ResourceInfo,
    sub: &str,
) -> (&'static str, &'static str, &'static str, &'static [&'static str]) {
    match sub {
        "status" => (r.group, r.version, r.kind, &["get", "patch", "update"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "finalize" => ("", "v1", "Namespace", &["update"]),
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        _ => (r.group, r.version, r.kind, &["get"]),
    }
}

fn storage_version_hash(r: &ResourceInfo) -> String {
    let (group, version) = r.storage.unwrap_or((r.group, r.version));
    let digest = Sha256::digest(format!("{group}/{version}/{}", r.kind));
    base64_short(&digest[..8])
}

fn base64_short(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Aggregated discovery for the core group (`/api`) or every named group (`/apis`).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let groups: Vec<(&str, Vec<&str>)> = if core { vec![("", vec!["v1"])] } else { reg.groups() };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(group, v)
                        .map(|r| {
                            let subs: Vec<Value> = r
                                .subresources
                                .iter()
                                .map(|s| {
                                    let (group, version, kind, verbs) = subresource_shape(r, s);
                                    json!({"subresource": s, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": verbs})
                                })
                                .collect();
                            let mut e = json!({
                                "resource": r.plural,
                                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": r.verbs,
                            });
                            if !r.short_names.is_empty() {
                                e["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                e["categories"] = json!(r.categories);
                            }
                            if !subs.is_empty() {
                                e["subresources"] = json!(subs);
                            }
                            e
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// OpenAPI v3 document for one group-version: its paths (with the query parameters clients
/// probe for, such as `fieldValidation`) and a schema per kind.
pub fn openapi_v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut any = false;
    for r in reg.in_group_version(group, version) {
        any = true;
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let schema_name = schema_name(r);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let body = json!({"content": {"application/json": {"schema": schema_ref.clone()}, "application/yaml": {"schema": schema_ref.clone()}}});
        let query = |name: &str, ty: &str| json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}});
        let write_params = vec![
            query("dryRun", "string"),
            query("fieldManager", "string"),
            query("fieldValidation", "string"),
        ];
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref.clone()}}}});
        let op = |verb: &str, action: &str, with_body: bool, params: Vec<Value>| {
            let mut o = json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk.clone(),
                "parameters": params,
                "responses": ok.clone(),
            });
            if with_body {
                o["requestBody"] = body.clone();
            }
            o
        };
        let patch_body = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}}}});
        let mut item = json!({
            "get": op("read", "get", false, vec![]),
            "put": op("replace", "put", true, write_params.clone()),
            "delete": op("delete", "delete", false, vec![query("dryRun", "string"), query("gracePeriodSeconds", "integer"), query("propagationPolicy", "string")]),
            "patch": op("patch", "patch", false, [write_params.clone(), vec![query("force", "boolean")]].concat()),
        });
        item["patch"]["requestBody"] = patch_body;
        let collection = json!({
            "get": op("list", "list", false, vec![query("labelSelector", "string"), query("fieldSelector", "string"), query("limit", "integer"), query("continue", "string"), query("watch", "boolean"), query("resourceVersion", "string")]),
            "post": op("create", "post", true, write_params),
        });
        let name =
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
        let ns = json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}});
        let (coll_path, item_params) = if r.namespaced {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
                vec![name.clone(), ns.clone()],
            )
        } else {
            (format!("{prefix}/{}", r.plural), vec![name.clone()])
        };
        let mut coll = collection;
        if r.namespaced {
            coll["parameters"] = json!([ns]);
        }
        paths.insert(coll_path.clone(), coll);
        let mut it = item;
        it["parameters"] = json!(item_params);
        paths.insert(format!("{coll_path}/{{name}}"), it);
        schemas.insert(
            schema_name,
            json!({
                "description": format!("{} ({})", r.kind, r.api_version()),
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }
            }),
        );
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Skiff", "version": concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"))},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

fn schema_name(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        let g = r.group.split('.').next().unwrap_or(r.group);
        format!("io.k8s.api.{g}")
    };
    format!("{group}.{}.{}", r.version, r.kind)
}

/// The `/openapi/v3` index: one entry per served group-version with a content hash.
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, vs) in reg.groups() {
        for v in vs {
            gvs.push((g, v));
        }
    }
    for (g, v) in gvs {
        let path = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        let doc = openapi_v3_group_version(reg, g, v).unwrap_or(Value::Null);
        let hash = hex_upper(&Sha256::digest(doc.to_string().as_bytes()));
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

const V2_TITLE: &str = "Skiff";
const V2_VERSION: &str = concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"));

/// The OpenAPI v2 document. It carries no definitions: clients that validate on their side
/// skip kinds they find no schema for, and kinds served here are validated by the server
/// (`fieldValidation`, advertised in OpenAPI v3).
pub fn openapi_v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": V2_TITLE, "version": V2_VERSION}, "paths": {}, "definitions": {}})
}

/// The same document in the gnostic `openapi.v2.Document` protobuf encoding:
/// `swagger` is field 1, `info` field 2 (an `Info` with `title` 1 and `version` 2).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, V2_TITLE.as_bytes());
    field(&mut info, 2, V2_VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_resource_list_should_include_short_names_and_subresources() {
        let reg = Registry::builtin();
        let list = api_resource_list(&reg, "", "v1").unwrap();
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(res.iter().any(|r| r["name"] == "pods/log"));
    }

    #[test]
    fn openapi_v2_protobuf_should_encode_swagger_and_info() {
        let doc = openapi_v2_protobuf();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc[6] as usize, doc.len() - 7);
    }

    #[test]
    fn openapi_v3_should_expose_field_validation_on_patch() {
        let reg = Registry::builtin();
        let doc = openapi_v3_group_version(&reg, "", "v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation")
        );
        assert!(
            openapi_v3_root(&reg)["paths"]["apis/node.k8s.io/v1"]["serverRelativeURL"].is_string()
        );
    }
}
