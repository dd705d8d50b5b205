//! The CRD's own validation (kube's `ValidateCustomResourceDefinition` and
//! `ValidateCustomResourceDefinitionUpdate`, with v1's options), over the v1 object.
//!
//! Paths are v1's (`spec.versions[0].schema.openAPIV3Schema`,
//! `spec.conversion.webhook.clientConfig`): kube validates its internal version, whose
//! paths differ where v1 was converted (a schema shared by every version is reported under
//! `spec.validation`, the webhook under `spec.conversion.webhookClientConfig`).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::jsonpath;
use crate::cel::{self, CompileOptions, valid_field_path};
use crate::dns::{dns1035_label, dns1123_subdomain};
use crate::errors::{ErrorType, FieldError};

const PRINTER_COLUMN_TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];
const PRINTER_COLUMN_FORMATS: [&str; 8] =
    ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];
/// kube's `MaxSelectableFields`.
const MAX_SELECTABLE_FIELDS: usize = 8;
const ACCEPTED_REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn empty_list() -> &'static Vec<Value> {
    static EMPTY: Vec<Value> = Vec::new();
    &EMPTY
}

/// What an update relaxes, from the old object (kube's `validationOptions`).
struct Options {
    require_schema: bool,
    require_recognized_review_version: bool,
    immutable_names: bool,
    /// Versions whose schema the update left as it was: their rules' cost is not checked
    /// again (a limit that changed must not make a stored CRD unchangeable).
    unchanged_schemas: BTreeSet<String>,
    /// Versions allowed more than [`MAX_SELECTABLE_FIELDS`] (they had them, unchanged).
    too_many_selectable_fields: BTreeSet<String>,
}

fn versions(crd: &Value) -> &Vec<Value> {
    crd.pointer("/spec/versions").and_then(Value::as_array).unwrap_or(empty_list())
}

fn schema_of(version: &Value) -> Option<&Value> {
    version.pointer("/schema/openAPIV3Schema").filter(|s| !s.is_null())
}

fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| text(c, "type") == "Established" && text(c, "status") == "True")
}

impl Options {
    fn new(crd: &Value, old: Option<&Value>) -> Options {
        let Some(old) = old else {
            return Options {
                require_schema: true,
                require_recognized_review_version: true,
                immutable_names: false,
                unchanged_schemas: BTreeSet::new(),
                too_many_selectable_fields: BTreeSet::new(),
            };
        };
        let old_review = old
            .pointer("/spec/conversion/webhook/conversionReviewVersions")
            .and_then(Value::as_array);
        let recognized = old_review.is_none_or(|v| {
            v.is_empty()
                || v.iter().any(|x| ACCEPTED_REVIEW_VERSIONS.contains(&x.as_str().unwrap_or("")))
        });
        let old_version = |name: &str| versions(old).iter().find(|v| text(v, "name") == name);
        let mut unchanged_schemas = BTreeSet::new();
        let mut too_many = BTreeSet::new();
        for v in versions(crd) {
            let name = text(v, "name");
            let Some(o) = old_version(name) else { continue };
            if schema_of(v) == schema_of(o) {
                unchanged_schemas.insert(name.to_string());
            }
            let fields = |x: &Value| x.get("selectableFields").cloned();
            let old_count = o.get("selectableFields").and_then(Value::as_array).map_or(0, Vec::len);
            if old_count > MAX_SELECTABLE_FIELDS && fields(v) == fields(o) {
                too_many.insert(name.to_string());
            }
        }
        Options {
            require_schema: versions(old).iter().all(|v| schema_of(v).is_some()),
            require_recognized_review_version: recognized,
            immutable_names: is_established(old),
            unchanged_schemas,
            too_many_selectable_fields: too_many,
        }
    }
}

/// See [`super::validate_crd`].
pub(crate) fn validate(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let opts = Options::new(crd, old);
    let mut errs = Vec::new();
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let names = spec.get("names").unwrap_or(&Value::Null);
    metadata(crd, spec, names, old.is_some(), &mut errs);
    spec_errors(spec, names, &opts, &mut errs);
    if let Some(old) = old {
        update_errors(spec, old.get("spec").unwrap_or(&Value::Null), &opts, &mut errs);
        let accepted = old.pointer("/status/acceptedNames").unwrap_or(&Value::Null);
        names_errors(&defaulted_names(accepted), "status.acceptedNames", &mut errs);
    }
    stored_versions(spec, old, &mut errs);
    api_approval(crd, old, spec, &mut errs);
    let old_preserves =
        old.and_then(|o| o.pointer("/spec/preserveUnknownFields")) == Some(&json!(true));
    if !old_preserves && spec.get("preserveUnknownFields") == Some(&json!(true)) {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs
}

fn metadata(crd: &Value, spec: &Value, names: &Value, update: bool, errs: &mut Vec<FieldError>) {
    let meta = crd.get("metadata").unwrap_or(&Value::Null);
    let name = text(meta, "name");
    let required = format!("{}.{}", text(names, "plural"), text(spec, "group"));
    let generate = text(meta, "generateName");
    if !generate.is_empty() && !update {
        for msg in dns1123_subdomain(generate.trim_end_matches('-')) {
            errs.push(FieldError::invalid("metadata.generateName", json!(generate), msg));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else if !update {
        for msg in dns1123_subdomain(name) {
            errs.push(FieldError::invalid("metadata.name", json!(name), msg));
        }
        if name != required {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                r#"must be spec.names.plural+"."+spec.group"#,
            ));
        }
    }
    if !text(meta, "namespace").is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
}

/// `spec.names` as v1 defaults them.
fn defaulted_names(names: &Value) -> Value {
    let mut names = if names.is_object() { names.clone() } else { json!({}) };
    let kind = text(&names, "kind").to_string();
    if text(&names, "singular").is_empty() && !kind.is_empty() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if text(&names, "listKind").is_empty() && !kind.is_empty() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    names
}

fn spec_errors(spec: &Value, names: &Value, opts: &Options, errs: &mut Vec<FieldError>) {
    let group = text(spec, "group");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let bad = dns1123_subdomain(group);
        if !bad.is_empty() {
            errs.push(FieldError::invalid("spec.group", json!(group), bad.join(",")));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                json!(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    match text(spec, "scope") {
        "" => errs.push(FieldError::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let preserve_unknown = spec.get("preserveUnknownFields") == Some(&json!(true));
    let versions = spec.get("versions").and_then(Value::as_array).unwrap_or(empty_list());
    if opts.require_schema {
        for (i, v) in versions.iter().enumerate() {
            if schema_of(v).is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "",
                ));
            }
        }
    } else if !preserve_unknown {
        for (i, v) in versions.iter().enumerate() {
            if v.get("served") == Some(&json!(true)) && schema_of(v).is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "because otherwise all fields are pruned",
                ));
            }
        }
    }
    if preserve_unknown && versions.iter().filter_map(schema_of).any(has_default) {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            json!(true),
            "must be false in order to use defaults in the schema",
        ));
    }

    let mut seen = BTreeSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let name = text(v, "name");
        if v.get("storage") == Some(&json!(true)) {
            storage += 1;
        }
        if !seen.insert(name) {
            unique = false;
        }
        let bad = dns1035_label(name);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.versions[{i}].name"),
                json!(name),
                bad.join(","),
            ));
        }
        version_errors(v, &format!("spec.versions[{i}]"), opts, errs);
    }
    if !unique {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(versions),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }

    let names = defaulted_names(names);
    for (key, field) in
        [("plural", "plural"), ("singular", "singular"), ("kind", "kind"), ("listKind", "listKind")]
    {
        if text(&names, key).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{field}"), ""));
        }
    }
    names_errors(&names, "spec.names", errs);

    let conversion = spec.get("conversion").unwrap_or(&Value::Null);
    let strategy = match text(conversion, "strategy") {
        "" if conversion.is_null() => "None",
        s => s,
    };
    if strategy != "None" && preserve_unknown {
        errs.push(FieldError::invalid(
            "spec.conversion.strategy",
            json!(strategy),
            "must be None if spec.preserveUnknownFields is true",
        ));
    }
    conversion_errors(conversion, strategy, opts.require_recognized_review_version, errs);
}

/// kube's `schemaHasDefaults`: a `default` anywhere in the schema.
fn has_default(schema: &Value) -> bool {
    if schema.get("default").is_some() {
        return true;
    }
    let children = |key: &str| -> Vec<&Value> {
        match schema.get(key) {
            Some(Value::Object(m)) if key == "properties" => m.values().collect(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => Vec::new(),
        }
    };
    ["properties", "items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"]
        .iter()
        .flat_map(|k| children(k))
        .any(has_default)
}

fn names_errors(names: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for key in ["plural", "singular"] {
        let v = text(names, key);
        let bad = dns1035_label(v);
        if !v.is_empty() && !bad.is_empty() {
            errs.push(FieldError::invalid(format!("{path}.{key}"), json!(v), bad.join(",")));
        }
    }
    for key in ["kind", "listKind"] {
        let v = text(names, key);
        let bad = dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.{key}"),
                json!(v),
                format!("may have mixed case, but should otherwise match: {}", bad.join(",")),
            ));
        }
    }
    for (i, short) in strings(names, "shortNames").iter().enumerate() {
        let bad = dns1035_label(short);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.shortNames[{i}]"),
                json!(short),
                bad.join(","),
            ));
        }
    }
    let kind = text(names, "kind");
    if !kind.is_empty() && kind == text(names, "listKind") {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    for (i, category) in strings(names, "categories").iter().enumerate() {
        let bad = dns1035_label(category);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.categories[{i}]"),
                json!(category),
                bad.join(","),
            ));
        }
    }
}

fn deprecation_warning_errors(version: &Value) -> Vec<String> {
    let deprecated = version.get("deprecated") == Some(&json!(true));
    let Some(warning) = version.get("deprecationWarning").and_then(Value::as_str) else {
        return Vec::new();
    };
    if !deprecated {
        return vec!["can only be set for deprecated versions".to_string()];
    }
    let mut errors = Vec::new();
    if warning.len() > 256 {
        errors.push("must be <= 256 characters long".to_string());
    }
    if warning.is_empty() {
        errors.push("must not be an empty string".to_string());
    }
    for (i, c) in warning.char_indices() {
        if c.is_control() {
            errors.push(format!(
                "must only contain printable UTF-8 characters; control character found at index {i}"
            ));
            break;
        }
        if c != ' ' && c.is_whitespace() {
            errors.push(format!(
                "must only contain printable UTF-8 characters; non-printable character found at index {i}"
            ));
            break;
        }
    }
    errors
}

fn version_errors(version: &Value, path: &str, opts: &Options, errs: &mut Vec<FieldError>) {
    let name = text(version, "name");
    for e in deprecation_warning_errors(version) {
        let warning = version.get("deprecationWarning").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid(format!("{path}.deprecationWarning"), warning, e));
    }
    let subresources = version.get("subresources").unwrap_or(&Value::Null);
    let status_enabled = subresources.get("status").is_some_and(|s| !s.is_null());
    let schema = schema_of(version);
    if let Some(schema) = schema {
        let schema_path = format!("{path}.schema.openAPIV3Schema");
        if status_enabled {
            errs.extend(crate::schema::status_root_errors(schema, &schema_path));
        }
        let structural = crate::schema::structural_errors(schema, &schema_path);
        let options = CompileOptions {
            cel: structural.is_empty(),
            per_expression_cost: !opts.unchanged_schemas.contains(name),
        };
        errs.extend(structural);
        errs.extend(cel::compile_with(schema, &schema_path, options).1);
    }
    subresource_errors(subresources, schema, &format!("{path}.subresources"), errs);
    let columns =
        version.get("additionalPrinterColumns").and_then(Value::as_array).unwrap_or(empty_list());
    for (i, column) in columns.iter().enumerate() {
        column_errors(column, &format!("{path}.additionalPrinterColumns[{i}]"), errs);
    }
    let fields = version.get("selectableFields").and_then(Value::as_array).unwrap_or(empty_list());
    if !fields.is_empty() {
        let fields_path = format!("{path}.selectableFields");
        match schema {
            None => errs.push(FieldError::invalid(
                fields_path,
                json!(""),
                "may only be set when `version.schema.openAPIV3Schema` is not included",
            )),
            Some(schema) => {
                let allow_many = opts.too_many_selectable_fields.contains(name);
                selectable_field_errors(fields, schema, &fields_path, allow_many, errs);
            }
        }
    }
}

/// kube's `validateSimpleJSONPath`.
fn simple_json_path(s: &str, path: &str) -> Option<FieldError> {
    if s.is_empty() {
        return Some(FieldError::invalid(path, json!(s), "must not be empty"));
    }
    if !s.starts_with('.') {
        return Some(FieldError::invalid(
            path,
            json!(s),
            "must be a simple json path starting with .",
        ));
    }
    None
}

/// The schema a simple JSON path (`.spec.replicas`) names, when the schema declares it.
fn schema_at<'s>(schema: &'s Value, json_path: &str) -> Option<&'s Value> {
    let mut node = schema;
    for part in json_path.strip_prefix('.')?.split('.') {
        node = node.get("properties")?.get(part)?;
    }
    Some(node)
}

fn subresource_errors(
    subresources: &Value,
    schema: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(status) = subresources.get("status").filter(|s| !s.is_null())
        && status.as_object().is_none_or(|o| !o.is_empty())
    {
        errs.push(FieldError::invalid(
            format!("{path}.status"),
            status.clone(),
            "must be an empty object",
        ));
    }
    let Some(scale) = subresources.get("scale").filter(|s| !s.is_null()) else { return };
    // Skiff also checks what the schema declares at the paths (kube finds out on the
    // first request of the scale subresource).
    let declared = |json_path: &str, want: &str, field: &str, errs: &mut Vec<FieldError>| {
        let found = schema.and_then(|s| schema_at(s, json_path)).map(|s| text(s, "type"));
        if let Some(ty) = found.filter(|t| !t.is_empty() && *t != want) {
            errs.push(FieldError::invalid(
                format!("{path}.scale.{field}"),
                json!(json_path),
                format!("should be a json path to a field of type {want}, not {ty}"),
            ));
        }
    };
    for (field, under, message) in [
        ("specReplicasPath", ".spec.", "should be a json path under .spec"),
        ("statusReplicasPath", ".status.", "should be a json path under .status"),
    ] {
        let value = text(scale, field);
        let at = format!("{path}.scale.{field}");
        if value.is_empty() {
            errs.push(FieldError::required(at, ""));
        } else if let Some(e) = simple_json_path(value, &at) {
            errs.push(e);
        } else if !value.starts_with(under) {
            errs.push(FieldError::invalid(at, json!(value), message));
        } else {
            declared(value, "integer", field, errs);
        }
    }
    let selector = text(scale, "labelSelectorPath");
    if !selector.is_empty() {
        let at = format!("{path}.scale.labelSelectorPath");
        if let Some(e) = simple_json_path(selector, &at) {
            errs.push(e);
        } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
            errs.push(FieldError::invalid(
                at,
                json!(selector),
                "should be a json path under either .spec or .status",
            ));
        } else {
            declared(selector, "string", "labelSelectorPath", errs);
        }
    }
}

fn column_errors(column: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if text(column, "name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let types = format!("must be one of {}", PRINTER_COLUMN_TYPES.join(","));
    match text(column, "type") {
        "" => errs.push(FieldError::required(format!("{path}.type"), types)),
        t if !PRINTER_COLUMN_TYPES.contains(&t) => {
            errs.push(FieldError::invalid(format!("{path}.type"), json!(t), types));
        }
        _ => {}
    }
    let format = text(column, "format");
    if !format.is_empty() && !PRINTER_COLUMN_FORMATS.contains(&format) {
        errs.push(FieldError::invalid(
            format!("{path}.format"),
            json!(format),
            format!("must be one of {}", PRINTER_COLUMN_FORMATS.join(",")),
        ));
    }
    let json_path = text(column, "jsonPath");
    let at = format!("{path}.jsonPath");
    if json_path.is_empty() {
        errs.push(FieldError::required(at, ""));
    } else if let Some(e) = simple_json_path(json_path, &at) {
        errs.push(e);
    } else if let Err(e) = jsonpath::parse(json_path) {
        // Skiff refuses what kube's table printer would fail to parse on every request.
        errs.push(FieldError::invalid(
            at,
            json!(json_path),
            format!("must be a valid JSONPath: {e}"),
        ));
    }
}

fn selectable_field_errors(
    fields: &[Value],
    schema: &Value,
    path: &str,
    allow_many: bool,
    errs: &mut Vec<FieldError>,
) {
    let mut unique = BTreeSet::new();
    for (i, field) in fields.iter().enumerate() {
        let at = format!("{path}[{i}].jsonPath");
        let json_path = text(field, "jsonPath");
        if json_path.is_empty() {
            errs.push(FieldError::required(at, ""));
            continue;
        }
        let (normalized, found) = match valid_field_path(json_path, schema, false) {
            Ok(found) => found,
            Err(e) => {
                errs.push(FieldError::invalid(
                    at,
                    json!(json_path),
                    format!("is an invalid path: {e}"),
                ));
                continue;
            }
        };
        let root = normalized.split(['.', '[']).next().unwrap_or("");
        if root == "metadata" {
            errs.push(FieldError::invalid(
                at.clone(),
                json!(json_path),
                "must not point to fields in metadata",
            ));
        }
        if !matches!(text(found, "type"), "string" | "boolean" | "integer") {
            errs.push(FieldError::invalid(
                at.clone(),
                json!(json_path),
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        if !unique.insert(normalized) {
            errs.push(FieldError::duplicate(at, json!(json_path)));
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS && !allow_many {
        errs.push(FieldError::new(
            ErrorType::TooMany,
            path,
            Some(json!(unique.len())),
            format!("must have at most {MAX_SELECTABLE_FIELDS} items"),
        ));
    }
}

fn conversion_errors(
    conversion: &Value,
    strategy: &str,
    require_recognized: bool,
    errs: &mut Vec<FieldError>,
) {
    if conversion.is_null() {
        return;
    }
    let path = "spec.conversion";
    match strategy {
        "" => errs.push(FieldError::required(format!("{path}.strategy"), "")),
        "None" | "Webhook" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.strategy"),
            json!(other),
            &["None", "Webhook"],
        )),
    }
    let webhook = conversion.get("webhook").unwrap_or(&Value::Null);
    let client_config = webhook.get("clientConfig").filter(|c| !c.is_null());
    let review_versions = webhook.get("conversionReviewVersions").and_then(Value::as_array);
    let config_path = format!("{path}.webhook.clientConfig");
    let review_path = format!("{path}.webhook.conversionReviewVersions");
    if strategy != "Webhook" {
        if client_config.is_some() {
            errs.push(FieldError::forbidden(
                config_path,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if review_versions.is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::forbidden(
                review_path,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        return;
    }
    match client_config {
        None => {
            errs.push(FieldError::required(config_path, "required when strategy is set to Webhook"))
        }
        Some(cc) => {
            let url = cc.get("url").and_then(Value::as_str);
            let service = cc.get("service").filter(|s| !s.is_null());
            match (url, service) {
                (Some(url), None) => {
                    errs.extend(webhook_url_errors(url, &format!("{config_path}.url")))
                }
                (None, Some(service)) => {
                    errs.extend(webhook_service_errors(service, &format!("{config_path}.service")))
                }
                _ => errs.push(FieldError::required(
                    config_path,
                    "exactly one of url or service is required",
                )),
            }
        }
    }
    let versions = review_versions.map(Vec::as_slice).unwrap_or(&[]);
    if versions.is_empty() {
        errs.push(FieldError::required(review_path, ""));
        return;
    }
    let mut seen = BTreeSet::new();
    let mut accepted = false;
    for (i, v) in versions.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        if !seen.insert(v) {
            errs.push(FieldError::invalid(
                format!("{review_path}[{i}]"),
                json!(v),
                "duplicate version",
            ));
            continue;
        }
        for e in dns1035_label(v) {
            errs.push(FieldError::invalid(format!("{review_path}[{i}]"), json!(v), e));
        }
        accepted |= ACCEPTED_REVIEW_VERSIONS.contains(&v);
    }
    if require_recognized && !accepted {
        errs.push(FieldError::invalid(
            review_path,
            json!(versions),
            format!("must include at least one of {}", ACCEPTED_REVIEW_VERSIONS.join(", ")),
        ));
    }
}

/// The parts of a URL kube's webhook validation looks at, as Go's `url.Parse` splits it.
struct UrlParts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    host: &'a str,
    query: &'a str,
    fragment: &'a str,
}

fn parse_url(url: &str) -> Result<UrlParts<'_>, String> {
    if url.chars().any(|c| c.is_ascii_control()) {
        return Err(format!("parse {url:?}: net/url: invalid control character in URL"));
    }
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let scheme_end = rest.find(':').filter(|&i| {
        let s = &rest[..i];
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if rest.starts_with(':') {
        return Err(format!("parse {url:?}: missing protocol scheme"));
    }
    let (scheme, rest) = match scheme_end {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => ("", rest),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (user, host) = match rest.strip_prefix("//") {
        Some(authority) => {
            let authority = authority.split('/').next().unwrap_or("");
            match authority.rsplit_once('@') {
                Some((user, host)) => (Some(user), host),
                None => (None, authority),
            }
        }
        None => (None, ""),
    };
    Ok(UrlParts { scheme, user, host, query, fragment })
}

/// apiserver's `webhook.ValidateWebhookURL` (https required).
fn webhook_url_errors(url: &str, path: &str) -> Vec<FieldError> {
    const FORM: &str = "; desired format: https://host[/path]";
    let mut errs = Vec::new();
    let u = match parse_url(url) {
        Ok(u) => u,
        Err(e) => {
            return vec![FieldError::required(path, format!("url must be a valid URL: {e}{FORM}"))];
        }
    };
    if u.scheme != "https" {
        errs.push(FieldError::invalid(
            path,
            json!(u.scheme),
            format!("'https' is the only allowed URL scheme{FORM}"),
        ));
    }
    if u.host.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(u.host),
            format!("host must be specified{FORM}"),
        ));
    }
    if let Some(user) = u.user {
        errs.push(FieldError::invalid(
            path,
            json!(user),
            "user information is not permitted in the URL",
        ));
    }
    if !u.fragment.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(u.fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if !u.query.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(u.query),
            "query parameters are not permitted in the URL",
        ));
    }
    errs
}

/// apiserver's `webhook.ValidateWebhookService`.
fn webhook_service_errors(service: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if text(service, "name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    if text(service, "namespace").is_empty() {
        errs.push(FieldError::required(format!("{path}.namespace"), ""));
    }
    let port = service.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    let Some(url_path) = service.get("path").and_then(Value::as_str) else { return errs };
    let at = format!("{path}.path");
    if url_path == "/" || url_path.is_empty() {
        return errs;
    }
    if url_path == "//" {
        errs.push(FieldError::invalid(at, json!(url_path), "segment[0] may not be empty"));
        return errs;
    }
    if !url_path.starts_with('/') {
        errs.push(FieldError::invalid(at.clone(), json!(url_path), "must start with a '/'"));
    }
    let trimmed = url_path.get(1..).unwrap_or("");
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    for (i, step) in trimmed.split('/').enumerate() {
        if step.is_empty() {
            errs.push(FieldError::invalid(
                at.clone(),
                json!(url_path),
                format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        for failure in dns1123_subdomain(step) {
            errs.push(FieldError::invalid(
                at.clone(),
                json!(url_path),
                format!("segment[{i}]: {failure}"),
            ));
        }
    }
    errs
}

fn update_errors(spec: &Value, old_spec: &Value, opts: &Options, errs: &mut Vec<FieldError>) {
    let immutable = |path: &str, new: &Value, old: &Value, errs: &mut Vec<FieldError>| {
        if new != old {
            errs.push(FieldError::invalid(path, new.clone(), "field is immutable"));
        }
    };
    let at = |v: &Value, p: &str| v.pointer(p).cloned().unwrap_or(json!(""));
    if opts.immutable_names {
        immutable("spec.scope", &at(spec, "/scope"), &at(old_spec, "/scope"), errs);
        immutable("spec.names.kind", &at(spec, "/names/kind"), &at(old_spec, "/names/kind"), errs);
    }
    immutable("spec.group", &at(spec, "/group"), &at(old_spec, "/group"), errs);
    immutable(
        "spec.names.plural",
        &at(spec, "/names/plural"),
        &at(old_spec, "/names/plural"),
        errs,
    );
}

/// `status.storedVersions` as the registry sets it before validating: on create the
/// storage version (the status is the server's), on update the old ones and the new
/// storage version.
fn stored_versions(spec: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let versions = spec.get("versions").and_then(Value::as_array).unwrap_or(empty_list());
    let mut stored: Vec<String> = old
        .map(|o| strings(o.get("status").unwrap_or(&Value::Null), "storedVersions"))
        .unwrap_or_default();
    if let Some(storage) = versions.iter().find(|v| v.get("storage") == Some(&json!(true))) {
        let name = text(storage, "name").to_string();
        if !stored.contains(&name) {
            stored.push(name);
        }
    }
    let path = "status.storedVersions";
    if stored.is_empty() {
        errs.push(FieldError::invalid(path, Value::Null, "must have at least one stored version"));
        return;
    }
    for v in versions {
        let name = text(v, "name");
        if v.get("storage") == Some(&json!(true)) && !stored.iter().any(|s| s == name) {
            errs.push(FieldError::invalid(
                path,
                json!(stored),
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !versions.iter().any(|v| text(v, "name") == s) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(s),
                format!("missing from spec.versions; {s} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {s} and removes {s} from status.storedVersions"),
            ));
        }
    }
}

/// kube's `validateAPIApproval`: groups under `k8s.io` and `kubernetes.io` need the
/// `api-approved.kubernetes.io` annotation.
fn api_approval(crd: &Value, old: Option<&Value>, spec: &Value, errs: &mut Vec<FieldError>) {
    let group = text(spec, "group");
    let protected = group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if !protected {
        return;
    }
    let annotation = |o: &Value| -> String {
        o.pointer("/metadata/annotations")
            .and_then(|a| a.get(APPROVAL_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let state = |value: &str| -> (u8, String) {
        let is_url = value.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !rest.starts_with('/')
        });
        if value.is_empty() {
            (
                0,
                format!(
                    "protected groups must have approval annotation {APPROVAL_ANNOTATION:?}, see https://github.com/kubernetes/enhancements/pull/1111"
                ),
            )
        } else if value.starts_with("unapproved") {
            (1, String::new())
        } else if is_url {
            (2, String::new())
        } else {
            (
                3,
                format!(
                    "protected groups must have approval annotation {APPROVAL_ANNOTATION:?} with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"
                ),
            )
        }
    };
    let value = annotation(crd);
    let (new_state, reason) = state(&value);
    if old.is_some_and(|o| state(&annotation(o)).0 == new_state) {
        return;
    }
    let path = format!("metadata.annotations[{APPROVAL_ANNOTATION}]");
    match new_state {
        0 => errs.push(FieldError::required(path, reason)),
        3 => errs.push(FieldError::invalid(path, json!(value), reason)),
        _ => {}
    }
}
