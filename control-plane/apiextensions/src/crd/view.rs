//! A typed view of a CustomResourceDefinition (v1), with v1's defaults applied: what the
//! api server needs to serve its custom resources, read once per CRD change.

use serde_json::Value;

use super::version::compare_versions;

/// A CRD's names (`spec.names`), defaulted: `singular` is the lowercase kind, `listKind`
/// the kind + `List`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl Names {
    pub fn parse(names: &Value) -> Names {
        let kind = text(names, "kind");
        let singular = match text(names, "singular") {
            s if s.is_empty() => kind.to_lowercase(),
            s => s,
        };
        let list_kind = match text(names, "listKind") {
            s if s.is_empty() && !kind.is_empty() => format!("{kind}List"),
            s => s,
        };
        Names {
            plural: text(names, "plural"),
            singular,
            kind,
            list_kind,
            short_names: strings(names, "shortNames"),
            categories: strings(names, "categories"),
        }
    }
}

/// `subresources.scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// `additionalPrinterColumns[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// One of `spec.versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
    /// `schema.openAPIV3Schema`.
    pub schema: Option<Value>,
    pub status_subresource: bool,
    pub scale: Option<Scale>,
    pub printer_columns: Vec<PrinterColumn>,
    /// `selectableFields[].jsonPath`.
    pub selectable_fields: Vec<String>,
}

impl VersionView {
    /// The warning a request of a deprecated version gets (kube's default when none is
    /// given: `<group>/<version> <Kind> is deprecated`).
    pub fn warning(&self, group: &str, kind: &str) -> Option<String> {
        if !self.deprecated {
            return None;
        }
        Some(match &self.deprecation_warning {
            Some(w) => w.clone(),
            None => format!("{group}/{} {kind} is deprecated", self.name),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionStrategy {
    None,
    Webhook,
}

/// `service` of a webhook's `clientConfig` (port defaulted to 443).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReference {
    pub namespace: String,
    pub name: String,
    pub path: Option<String>,
    pub port: i64,
}

/// `conversion.webhook.clientConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientConfig {
    pub url: Option<String>,
    pub service: Option<ServiceReference>,
    /// Base64 PEM, as in the object.
    pub ca_bundle: Option<String>,
}

/// `spec.conversion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub strategy: ConversionStrategy,
    pub client_config: Option<ClientConfig>,
    pub review_versions: Vec<String>,
}

/// A CustomResourceDefinition as the api server serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdView {
    /// `metadata.name`.
    pub name: String,
    pub group: String,
    pub names: Names,
    pub namespaced: bool,
    pub versions: Vec<VersionView>,
    pub conversion: Conversion,
    pub preserve_unknown_fields: bool,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn parse_version(v: &Value) -> VersionView {
    let subresources = v.get("subresources").unwrap_or(&Value::Null);
    let scale = subresources.get("scale").filter(|s| s.is_object()).map(|s| Scale {
        spec_replicas_path: text(s, "specReplicasPath"),
        status_replicas_path: text(s, "statusReplicasPath"),
        label_selector_path: s.get("labelSelectorPath").and_then(Value::as_str).map(str::to_string),
    });
    let printer_columns = v
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: text(c, "name"),
            type_: text(c, "type"),
            format: text(c, "format"),
            description: text(c, "description"),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: text(c, "jsonPath"),
        })
        .collect();
    let selectable_fields = v
        .get("selectableFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| text(f, "jsonPath"))
        .collect();
    VersionView {
        name: text(v, "name"),
        served: flag(v, "served"),
        storage: flag(v, "storage"),
        deprecated: flag(v, "deprecated"),
        deprecation_warning: v
            .get("deprecationWarning")
            .and_then(Value::as_str)
            .map(str::to_string),
        schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        status_subresource: subresources.get("status").is_some_and(|s| !s.is_null()),
        scale,
        printer_columns,
        selectable_fields,
    }
}

fn parse_client_config(c: &Value) -> ClientConfig {
    ClientConfig {
        url: c.get("url").and_then(Value::as_str).map(str::to_string),
        service: c.get("service").filter(|s| s.is_object()).map(|s| ServiceReference {
            namespace: text(s, "namespace"),
            name: text(s, "name"),
            path: s.get("path").and_then(Value::as_str).map(str::to_string),
            port: s.get("port").and_then(Value::as_i64).unwrap_or(443),
        }),
        ca_bundle: c.get("caBundle").and_then(Value::as_str).map(str::to_string),
    }
}

impl CrdView {
    /// Reads `crd`; missing fields read as v1 defaults them, nothing fails (validation is
    /// [`super::validate_crd`]'s).
    pub fn parse(crd: &Value) -> CrdView {
        let spec = crd.get("spec").unwrap_or(&Value::Null);
        let conversion = spec.get("conversion").unwrap_or(&Value::Null);
        let webhook = conversion.get("webhook").unwrap_or(&Value::Null);
        CrdView {
            name: crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
            group: text(spec, "group"),
            names: Names::parse(spec.get("names").unwrap_or(&Value::Null)),
            namespaced: text(spec, "scope") != "Cluster",
            versions: spec
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(parse_version)
                .collect(),
            conversion: Conversion {
                strategy: if text(conversion, "strategy") == "Webhook" {
                    ConversionStrategy::Webhook
                } else {
                    ConversionStrategy::None
                },
                client_config: webhook
                    .get("clientConfig")
                    .filter(|c| c.is_object())
                    .map(parse_client_config),
                review_versions: strings(webhook, "conversionReviewVersions"),
            },
            preserve_unknown_fields: flag(spec, "preserveUnknownFields"),
        }
    }

    /// The version objects are stored in.
    pub fn storage_version(&self) -> Option<&VersionView> {
        self.versions.iter().find(|v| v.storage)
    }

    pub fn version(&self, name: &str) -> Option<&VersionView> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// The served versions, by kube's priority (the preferred one first).
    pub fn served_versions(&self) -> Vec<&VersionView> {
        let mut served: Vec<&VersionView> = self.versions.iter().filter(|v| v.served).collect();
        served.sort_by(|a, b| compare_versions(&b.name, &a.name));
        served
    }
}
