//! Builds the Kubernetes protobuf schema table used by `skiff_api::protobuf`.
//!
//! Field numbers and wire types come from the prost-generated sources of the pinned `k8s-pb`
//! crate; JSON field names (which prost turned into snake_case) and the original message names
//! come from the pinned `k8s-openapi` crate's sources. Neither crate is linked: only their
//! sources are read, and the result is a compact static table in `OUT_DIR/protobuf_schema.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heck::ToLowerCamelCase;

const K8S_PB: &str = "k8s-pb-0.9.0";
const K8S_OPENAPI: &str = "k8s-openapi-0.29.0";
const OPENAPI_VERSION_DIR: &str = "v1_35";

/// Pointer fields whose empty string means something different from "unset".
const KEEP_EMPTY_STRING: &[(&str, &str)] = &[
    ("api.core.v1.PersistentVolumeClaimSpec", "storageClassName"),
    ("api.core.v1.PersistentVolumeClaimSpec", "volumeAttributesClassName"),
];

/// Message types with their own JSON form.
const SPECIAL: &[(&str, &str)] = &[
    ("apimachinery.pkg.api.resource.Quantity", "Quantity"),
    ("apimachinery.pkg.api.resource.QuantityValue", "Quantity"),
    ("apimachinery.pkg.apis.meta.v1.Time", "Time"),
    ("apimachinery.pkg.apis.meta.v1.MicroTime", "MicroTime"),
    ("apimachinery.pkg.apis.meta.v1.Duration", "Duration"),
    ("apimachinery.pkg.apis.meta.v1.ObjectMeta", "ObjectMeta"),
    ("apimachinery.pkg.util.intstr.IntOrString", "IntOrString"),
    // Go's `type ExtraValue []string`: a JSON array of strings.
    ("api.authentication.v1.ExtraValue", "StringList"),
    ("api.authentication.v1beta1.ExtraValue", "StringList"),
    ("api.authorization.v1.ExtraValue", "StringList"),
    ("api.authorization.v1beta1.ExtraValue", "StringList"),
    ("api.certificates.v1.ExtraValue", "StringList"),
    ("api.certificates.v1beta1.ExtraValue", "StringList"),
    ("apimachinery.pkg.runtime.RawExtension", "RawExtension"),
    ("apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1.Json", "RawJson"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.Json", "RawJson"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrBool", "OrBool"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JsonSchemaPropsOrBool", "OrBool"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrArray", "OrArray"),
    ("apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JsonSchemaPropsOrArray", "OrArray"),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrStringArray",
        "OrStringArray",
    ),
    (
        "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JsonSchemaPropsOrStringArray",
        "OrStringArray",
    ),
];

/// JSON names of fields whose types k8s-openapi does not describe, where the name guessed
/// from other types' fields is wrong: (message, prost field, JSON name).
const JSON_NAMES: &[(&str, &str, &str)] = &[
    ("api.admission.v1.AdmissionRequest", "sub_resource", "subResource"),
    ("api.admission.v1beta1.AdmissionRequest", "sub_resource", "subResource"),
    (
        "api.core.v1.PodLogOptions",
        "insecure_skip_tls_verify_backend",
        "insecureSkipTLSVerifyBackend",
    ),
];

/// API groups whose module has no `Resource` impl to learn the mapping from.
const EXTRA_GROUPS: &[(&str, &str)] = &[
    ("meta.k8s.io", "apimachinery.pkg.apis.meta"),
    ("admission.k8s.io", "api.admission"),
    ("apidiscovery.k8s.io", "api.apidiscovery"),
    ("imagepolicy.k8s.io", "api.imagepolicy"),
    ("metrics.k8s.io", "metrics.pkg.apis.metrics"),
    ("custom.metrics.k8s.io", "metrics.pkg.apis.custom_metrics"),
    ("external.metrics.k8s.io", "metrics.pkg.apis.external_metrics"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SKIFF_K8S_PB_SRC");
    println!("cargo:rerun-if-env-changed=SKIFF_K8S_OPENAPI_SRC");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    let pb_src = locate("SKIFF_K8S_PB_SRC", K8S_PB);
    let openapi_src = locate("SKIFF_K8S_OPENAPI_SRC", K8S_OPENAPI).join(OPENAPI_VERSION_DIR);

    let scalars = go_scalars();
    let mut messages = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (module, file) in rust_files(&pb_src, true) {
        let text = read(&file);
        parse_pb_module(&module, &text, &mut messages, &mut groups);
    }
    for (g, m) in EXTRA_GROUPS {
        groups.entry(g.to_string()).or_insert_with(|| m.to_string());
    }

    // k8s-openapi: (module, prost struct name) -> (definition name, JSON field names).
    let mut openapi: HashMap<(String, String), (String, Vec<String>)> = HashMap::new();
    let mut global: HashMap<String, Vec<String>> = HashMap::new();
    for (module, file) in rust_files(&openapi_src, false) {
        let text = read(&file);
        let Some(def) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// Generated from definition "))
            .and_then(|d| d.rsplit('.').next())
        else {
            continue;
        };
        let names = json_names(&text);
        for n in &names {
            let e = global.entry(normalize(n)).or_default();
            if !e.contains(n) {
                e.push(n.clone());
            }
        }
        // k8s-pb keeps most message names (`CSIDriver`) but camel-cases a few (`JsonSchemaProps`).
        openapi.insert((module, normalize(def)), (def.to_string(), names));
    }

    let index: HashMap<&String, usize> = messages.keys().enumerate().map(|(i, k)| (k, i)).collect();
    let mut out = String::new();
    let mut guessed = Vec::new();
    out.push_str("// Generated by build.rs from the k8s-pb and k8s-openapi sources.\n");
    out.push_str("pub(super) static MESSAGES: &[Message] = &[\n");
    for (full, msg) in &messages {
        let (module, name) = full.rsplit_once('.').unwrap_or(("", full));
        let entry = openapi.get(&(module.to_string(), normalize(name)));
        let proto_name = match entry {
            Some((def, _)) => def.clone(),
            None => name
                .strip_suffix("List")
                .and_then(|item| openapi.get(&(module.to_string(), normalize(item))))
                .map_or_else(|| name.to_string(), |(def, _)| format!("{def}List")),
        };
        let special = SPECIAL.iter().find(|(n, _)| n == full).map_or("None", |(_, s)| s);
        let mut fields = msg.fields.clone();
        fields.sort_by_key(|f| f.tag);
        // prost keeps the .proto's field order, which go-to-protobuf wrote in the Go struct's
        // order: the order encoding/json writes the fields in (tags are not: `initContainers`
        // is 20 but comes second). Indices into the tag-sorted fields.
        let go_order: Vec<String> = msg
            .fields
            .iter()
            .filter_map(|d| fields.iter().position(|f| f.tag == d.tag))
            .map(|i| i.to_string())
            .collect();
        let _ = write!(
            out,
            "    Message {{ name: {full:?}, proto: {proto_name:?}, special: Special::{special}, go_order: &[{}], fields: &[",
            go_order.join(",")
        );
        for f in &fields {
            // Go's inline (embedded) structs are fields of their own in protobuf, but their
            // fields sit in the parent's JSON object: k8s-openapi flattens them too.
            let mut inline = false;
            let fixed = JSON_NAMES.iter().find(|(m, f_, _)| m == full && *f_ == f.snake);
            let json = match entry {
                _ if fixed.is_some() => fixed.map(|(_, _, j)| j.to_string()).unwrap_or_default(),
                Some((_, names)) => match names.iter().find(|n| same_name(n, &f.snake)) {
                    Some(n) => n.clone(),
                    None if matches!(f.ty, Ty::Message(_)) && !f.repeated => {
                        inline = true;
                        f.snake.to_lower_camel_case()
                    }
                    None => {
                        guessed.push(format!("{full}.{}", f.snake));
                        f.snake.to_lower_camel_case()
                    }
                },
                None => match global.get(&normalize(&f.snake)) {
                    Some(v) if v.len() == 1 => v[0].clone(),
                    _ => {
                        guessed.push(format!("{full}.{}", f.snake));
                        f.snake.to_lower_camel_case()
                    }
                },
            };
            let ty = match &f.ty {
                Ty::Scalar(s) => s.clone(),
                Ty::Message(path) => match index.get(path) {
                    Some(i) => format!("Message({i})"),
                    None => panic!("{full}.{}: message type {path} not found in {K8S_PB}", f.snake),
                },
                Ty::Map(v) => match v.as_ref() {
                    Ty::Scalar(s) if s == "String" => "MapString".to_string(),
                    Ty::Scalar(s) if s == "Bytes" => "MapBytes".to_string(),
                    Ty::Message(path) => match index.get(path) {
                        Some(i) => format!("MapMessage({i})"),
                        None => panic!("{full}.{}: map value {path} not found", f.snake),
                    },
                    other => panic!("{full}.{}: unsupported map value {other:?}", f.snake),
                },
            };
            let go = scalars.get(&(module.to_string(), normalize(name), json.clone()));
            // A zero read from the wire is dropped only where Go's JSON omits it: a non-pointer
            // with omitempty. Fields not in the table keep the old rule (empty strings go).
            let keep_zero = match go {
                Some((ptr, omit)) => *ptr || !*omit,
                None => KEEP_EMPTY_STRING.iter().any(|(m, j)| m == full && *j == json),
            };
            let known = go.is_some();
            let _ = write!(
                out,
                " Field {{ json: {json:?}, tag: {}, ty: Ty::{ty}, repeated: {}, keep_zero: {keep_zero}, go_known: {known}, inline: {inline} }},",
                f.tag, f.repeated
            );
        }
        out.push_str(" ] },\n");
    }
    out.push_str("];\n\n/// API group -> k8s-pb module prefix (the version follows).\n");
    out.push_str("pub(super) static GROUPS: &[(&str, &str)] = &[\n");
    for (g, m) in &groups {
        let _ = writeln!(out, "    ({g:?}, {m:?}),");
    }
    out.push_str("];\n");
    // Fields of types k8s-openapi does not have (alpha versions, some lists): their JSON name
    // is the lowerCamelCase of the snake_case name, which is right unless it holds an acronym.
    let _ = writeln!(out, "// {} messages; JSON names guessed for:", messages.len());
    for g in &guessed {
        let _ = writeln!(out, "//   {g}");
    }

    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("protobuf_schema.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// go-scalars.tsv: (k8s-pb module, normalized struct name, JSON name) -> (pointer, omitempty).
fn go_scalars() -> HashMap<(String, String, String), (bool, bool)> {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("go-scalars.tsv");
    let text = read(&path);
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [package, strukt, json, ptr, omit] = cols[..] else {
            panic!("{}: bad line {line:?}", path.display())
        };
        let module = package.replace('/', ".").replace('-', "_");
        out.insert((module, normalize(strukt), json.to_string()), (ptr == "ptr", omit == "omit"));
    }
    out
}

/// The `src` directory of a crate in Cargo's registry (or the directory `env` names).
fn locate(env: &str, crate_dir: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| {
            panic!("neither CARGO_HOME nor HOME is set; set {env} to {crate_dir}/src")
        });
    let registry = home.join("registry").join("src");
    let found = std::fs::read_dir(&registry).ok().into_iter().flatten().flatten().find_map(|idx| {
        let src = idx.path().join(crate_dir).join("src");
        src.is_dir().then_some(src)
    });
    found.unwrap_or_else(|| {
        panic!(
            "the sources of {crate_dir} were not found under {}; run `cargo fetch` or set {env} to its src directory",
            registry.display()
        )
    })
}

fn read(path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", path.display());
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.rs` file under `root` with its module path (`api.core.v1`); with `mod_only`, only
/// `mod.rs` files, named by their directory.
fn rust_files(root: &Path, mod_only: bool) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if !name.ends_with(".rs") || (mod_only && name != "mod.rs") {
                continue;
            }
            let rel = dir.strip_prefix(root).unwrap_or(&dir);
            let module: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
            out.push((module.join("."), path));
        }
    }
    out.sort();
    out
}

#[derive(Clone, Debug)]
enum Ty {
    Scalar(String),
    Message(String),
    Map(Box<Ty>),
}

#[derive(Clone, Debug)]
struct PbField {
    snake: String,
    tag: u32,
    ty: Ty,
    repeated: bool,
}

#[derive(Default)]
struct PbMessage {
    fields: Vec<PbField>,
}

/// Read prost's generated structs: `#[prost(KIND, LABEL, tag = "N")] pub name: TYPE,`.
fn parse_pb_module(
    module: &str,
    text: &str,
    messages: &mut BTreeMap<String, PbMessage>,
    groups: &mut BTreeMap<String, String>,
) {
    let mut current: Option<String> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            let empty = rest.ends_with("{}");
            let name = rest.trim_end_matches("{}").trim_end_matches('{').trim().to_string();
            let full = format!("{module}.{name}");
            messages.entry(full.clone()).or_default();
            current = (!empty).then_some(full);
        } else if t == "}" && !line.starts_with(' ') {
            current = None;
        } else if let Some(attr) = t.strip_prefix("#[prost(").and_then(|a| a.strip_suffix(")]")) {
            let Some(msg) = current.clone() else { continue };
            // The declaration may span several lines; it ends with ',' at bracket depth 0.
            let mut decl = String::new();
            for l in lines.by_ref() {
                decl.push_str(l.trim());
                let depth = decl.matches('<').count() as i64 - decl.matches('>').count() as i64;
                if depth == 0 && decl.ends_with(',') {
                    break;
                }
            }
            let field = parse_field(module, attr, &decl)
                .unwrap_or_else(|| panic!("cannot read field of {msg}: #[prost({attr})] {decl}"));
            messages.entry(msg).or_default().fields.push(field);
        } else if let Some(rest) = t.strip_prefix("const API_VERSION: &'static str = \"") {
            let api_version = rest.trim_end_matches("\";");
            if let Some((group, _version)) = api_version.split_once('/') {
                let prefix = module.rsplit_once('.').map_or(module, |(p, _)| p);
                groups.entry(group.to_string()).or_insert_with(|| prefix.to_string());
            } else {
                groups.entry(String::new()).or_insert_with(|| "api.core".to_string());
            }
        }
    }
}

fn parse_field(module: &str, attr: &str, decl: &str) -> Option<PbField> {
    // `btree_map = "string, message"` holds the separator itself: read it first.
    let (map_spec, attr) = match attr.strip_prefix("btree_map = \"") {
        Some(rest) => {
            let (spec, rest) = rest.split_once('"')?;
            (Some(spec), rest.trim_start_matches(", "))
        }
        None => (None, attr),
    };
    let parts: Vec<&str> = attr.split(", ").collect();
    let tag = parts.iter().find_map(|p| p.strip_prefix("tag = \""))?.trim_end_matches('"');
    let tag: u32 = tag.parse().ok()?;
    let repeated = parts.contains(&"repeated");
    let snake = decl.strip_prefix("pub ")?.split(':').next()?.trim().trim_start_matches("r#");
    let ty_text = decl.split_once(':')?.1.trim().trim_end_matches(',');
    let scalar = |k: &str| -> Option<Ty> {
        Some(Ty::Scalar(
            match k {
                "string" => "String",
                "bool" => "Bool",
                "int32" => "Int32",
                "int64" => "Int64",
                "double" => "Double",
                k if k.starts_with("bytes") => "Bytes",
                _ => return None,
            }
            .to_string(),
        ))
    };
    let kind = parts.first()?;
    let ty = if let Some(map) = map_spec {
        let (k, v) = map.split_once(", ")?;
        if k != "string" {
            return None;
        }
        let value = if v == "message" { message_type(module, ty_text)? } else { scalar(v)? };
        Ty::Map(Box::new(value))
    } else if *kind == "message" {
        message_type(module, ty_text)?
    } else {
        scalar(kind)?
    };
    Some(PbField { snake: snake.to_string(), tag, ty, repeated })
}

/// The message a field's Rust type names, as a dotted path from the crate root.
fn message_type(module: &str, ty_text: &str) -> Option<Ty> {
    // The innermost type argument, last one for maps: Option<Box<X>>, Vec<X>, BTreeMap<K, X>.
    let inner = ty_text.trim_end_matches(|c: char| c == '>' || c == ',' || c.is_whitespace());
    let inner = inner.rsplit(['<', ',']).next()?.trim();
    let mut path: Vec<&str> = module.split('.').collect();
    let segs: Vec<&str> = inner.split("::").collect();
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "super" => {
                path.pop();
            }
            "self" => {}
            s if i + 1 == segs.len() || !s.is_empty() => path.push(s),
            _ => {}
        }
    }
    Some(Ty::Message(path.join(".")))
}

/// A name with case and separators removed: prost's snake_case of `podIPs` is `pod_ips`, of
/// `$ref` is `ref`, of `x-kubernetes-list-type` is `x_kubernetes_list_type`.
fn normalize(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn same_name(json: &str, snake: &str) -> bool {
    normalize(json) == normalize(snake)
}

/// The JSON field names k8s-openapi's `Deserialize` impl lists for its struct.
fn json_names(text: &str) -> Vec<String> {
    let Some(at) = text.find("deserializer.deserialize_struct(") else { return Vec::new() };
    let rest = &text[at..];
    let Some(open) = rest.find("&[") else { return Vec::new() };
    let Some(close) = rest[open..].find(']') else { return Vec::new() };
    rest[open + 2..open + close]
        .split(',')
        .filter_map(|s| {
            let s = s.trim();
            s.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
        })
        .collect()
}
