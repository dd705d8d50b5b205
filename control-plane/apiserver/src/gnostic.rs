//! Encodes an OpenAPI v2 JSON document as gnostic's `openapi.v2.Document` protobuf, the form
//! kubectl and client-go request from `/openapi/v2` (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//! Field numbers follow gnostic's `openapiv2/OpenAPIv2.proto`. Vendor extensions (`x-*`) are
//! `NamedAny`s whose value carries the extension as YAML text.

use serde_json::{Map, Value};

/// A protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn str_of(&mut self, field: u32, v: &Value) {
        if let Some(s) = v.as_str() {
            self.string(field, s);
        }
    }

    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, v: &Value) {
        if v.as_bool() == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: &Value) {
        if let Some(n) = v.as_i64() {
            self.key(field, 0);
            self.varint(n as u64);
        }
    }

    fn double(&mut self, field: u32, v: &Value) {
        if let Some(n) = v.as_f64() {
            self.key(field, 1);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn strings(&mut self, field: u32, v: &Value) {
        for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
            self.bytes(field, s.as_bytes());
        }
    }
}

/// `Any { yaml = 2 }`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    let yaml = serde_yaml_ng::to_string(v).unwrap_or_default();
    m.string(2, &yaml);
    m
}

/// `NamedAny` entries for the `x-` keys of `obj`.
fn vendor_extensions(m: &mut Msg, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.string(1, k);
        named.msg(2, any(v));
        m.msg(field, named);
    }
}

/// `Schema`.
fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = v.as_object() else { return m };
    let get = |k: &str| o.get(k).unwrap_or(&Value::Null);
    m.str_of(1, get("$ref"));
    m.str_of(2, get("format"));
    m.str_of(3, get("title"));
    m.str_of(4, get("description"));
    if let Some(d) = o.get("default") {
        m.msg(5, any(d));
    }
    m.double(6, get("multipleOf"));
    m.double(7, get("maximum"));
    m.boolean(8, get("exclusiveMaximum"));
    m.double(9, get("minimum"));
    m.boolean(10, get("exclusiveMinimum"));
    m.int64(11, get("maxLength"));
    m.int64(12, get("minLength"));
    m.str_of(13, get("pattern"));
    m.int64(14, get("maxItems"));
    m.int64(15, get("minItems"));
    m.boolean(16, get("uniqueItems"));
    m.int64(17, get("maxProperties"));
    m.int64(18, get("minProperties"));
    m.strings(19, get("required"));
    for e in get("enum").as_array().into_iter().flatten() {
        m.msg(20, any(e));
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Msg::default();
            item.boolean(2, &Value::Bool(*b));
            if !*b {
                // proto3 drops a false bool; an empty oneof would read as "no schema".
                item.key(2, 0);
                item.varint(0);
            }
            m.msg(21, item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.msg(1, schema(s));
            m.msg(21, item);
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            let mut ty = Msg::default();
            ty.string(1, t);
            m.msg(22, ty);
        }
        Some(types @ Value::Array(_)) => {
            let mut ty = Msg::default();
            ty.strings(1, types);
            m.msg(22, ty);
        }
        _ => {}
    }
    match o.get("items") {
        Some(Value::Array(items)) => {
            let mut it = Msg::default();
            for i in items {
                it.msg(1, schema(i));
            }
            m.msg(23, it);
        }
        Some(i @ Value::Object(_)) => {
            let mut it = Msg::default();
            it.msg(1, schema(i));
            m.msg(23, it);
        }
        _ => {}
    }
    for s in get("allOf").as_array().into_iter().flatten() {
        m.msg(24, schema(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        m.msg(25, named_schemas(props));
    }
    m.str_of(26, get("discriminator"));
    m.boolean(27, get("readOnly"));
    if let Some(e) = o.get("example") {
        m.msg(30, any(e));
    }
    vendor_extensions(&mut m, 31, o);
    m
}

/// `Properties` / `Definitions`: `repeated NamedSchema additional_properties = 1`.
fn named_schemas(map: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    for (name, s) in map {
        let mut named = Msg::default();
        named.string(1, name);
        named.msg(2, schema(s));
        m.msg(1, named);
    }
    m
}

/// `ParametersItem` for one parameter object.
fn parameter(p: &Value) -> Msg {
    let get = |k: &str| p.get(k).unwrap_or(&Value::Null);
    let location = get("in").as_str().unwrap_or_default();
    let mut param = Msg::default();
    if location == "body" {
        let mut body = Msg::default();
        body.str_of(1, get("description"));
        body.str_of(2, get("name"));
        body.str_of(3, get("in"));
        body.boolean(4, get("required"));
        body.msg(5, schema(get("schema")));
        param.msg(1, body);
    } else {
        // Header, form data, query and path sub-schemas share a layout up to `name`; query
        // and form data carry `allow_empty_value` (5) before `type`.
        let (variant, offset) = match location {
            "header" => (1, 0),
            "formData" => (2, 1),
            "path" => (4, 0),
            _ => (3, 1),
        };
        let mut sub = Msg::default();
        sub.boolean(1, get("required"));
        sub.str_of(2, get("in"));
        sub.str_of(3, get("description"));
        sub.str_of(4, get("name"));
        sub.str_of(5 + offset, get("type"));
        sub.str_of(6 + offset, get("format"));
        sub.boolean(19 + offset, get("uniqueItems"));
        if let Some(o) = p.as_object() {
            vendor_extensions(&mut sub, 22 + offset, o);
        }
        let mut non_body = Msg::default();
        non_body.msg(variant, sub);
        param.msg(2, non_body);
    }
    let mut item = Msg::default();
    item.msg(1, param);
    item
}

/// `Operation`.
fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    let get = |k: &str| op.get(k).unwrap_or(&Value::Null);
    m.strings(1, get("tags"));
    m.str_of(2, get("summary"));
    m.str_of(3, get("description"));
    m.str_of(5, get("operationId"));
    m.strings(6, get("produces"));
    m.strings(7, get("consumes"));
    for p in get("parameters").as_array().into_iter().flatten() {
        m.msg(8, parameter(p));
    }
    let mut responses = Msg::default();
    for (code, r) in get("responses").as_object().into_iter().flatten() {
        let mut response = Msg::default();
        response.str_of(1, r.get("description").unwrap_or(&Value::Null));
        if let Some(s) = r.get("schema") {
            let mut item = Msg::default();
            item.msg(1, schema(s));
            response.msg(2, item);
        }
        let mut value = Msg::default();
        value.msg(1, response);
        let mut named = Msg::default();
        named.string(1, code);
        named.msg(2, value);
        responses.msg(1, named);
    }
    m.msg(9, responses);
    m.strings(10, get("schemes"));
    if let Some(o) = op.as_object() {
        vendor_extensions(&mut m, 13, o);
    }
    m
}

/// `PathItem`.
fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method) {
            m.msg(field, operation(op));
        }
    }
    for p in item.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        m.msg(9, parameter(p));
    }
    m
}

/// The whole `Document`.
pub fn document(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    let get = |k: &str| doc.get(k).unwrap_or(&Value::Null);
    m.str_of(1, get("swagger"));
    let mut info = Msg::default();
    info.str_of(1, &get("info")["title"]);
    info.str_of(2, &get("info")["version"]);
    m.msg(2, info);
    let mut paths = Msg::default();
    for (path, item) in get("paths").as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.string(1, path);
        named.msg(2, path_item(item));
        paths.msg(2, named);
    }
    m.msg(8, paths);
    if let Some(defs) = get("definitions").as_object() {
        m.msg(9, named_schemas(defs));
    }
    if let Some(sec) = get("securityDefinitions").as_object() {
        let mut defs = Msg::default();
        for (name, s) in sec {
            // ApiKeySecurity: type 1, name 2, in 3, description 4.
            let mut api_key = Msg::default();
            api_key.str_of(1, &s["type"]);
            api_key.str_of(2, &s["name"]);
            api_key.str_of(3, &s["in"]);
            api_key.str_of(4, &s["description"]);
            let mut item = Msg::default();
            item.msg(2, api_key);
            let mut named = Msg::default();
            named.string(1, name);
            named.msg(2, item);
            defs.msg(1, named);
        }
        m.msg(13, defs);
    }
    for req in get("security").as_array().into_iter().flatten() {
        let mut r = Msg::default();
        for (name, scopes) in req.as_object().into_iter().flatten() {
            let mut arr = Msg::default();
            arr.strings(1, scopes);
            let mut named = Msg::default();
            named.string(1, name);
            named.msg(2, arr);
            r.msg(1, named);
        }
        m.msg(12, r);
    }
    if let Some(o) = doc.as_object() {
        vendor_extensions(&mut m, 16, o);
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reads the length-delimited fields of one message: (field number, payload).
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte < 0x80 {
                    return v;
                }
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            match key & 7 {
                0 => out.push((key >> 3, varint(&mut b).to_le_bytes().to_vec())),
                1 => {
                    out.push((key >> 3, b[..8].to_vec()));
                    b = &b[8..];
                }
                _ => {
                    let len = varint(&mut b) as usize;
                    out.push((key >> 3, b[..len].to_vec()));
                    b = &b[len..];
                }
            }
        }
        out
    }

    #[test]
    fn document_should_encode_definitions_with_vendor_extensions() {
        let doc = json!({"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {},
            "definitions": {"io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
                "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                    "x-kubernetes-patch-merge-key": "name"}}}}});
        let pb = document(&doc);
        let top = fields(&pb);
        let defs = &top.iter().find(|(n, _)| *n == 9).unwrap().1;
        let named = fields(&fields(defs)[0].1);
        assert_eq!(named[0].1, b"io.k8s.api.core.v1.PodSpec");
        let schema = fields(&named[1].1);
        assert_eq!(fields(&schema.iter().find(|(n, _)| *n == 22).unwrap().1)[0].1, b"object");
        let props = fields(&schema.iter().find(|(n, _)| *n == 25).unwrap().1);
        let containers = fields(&fields(&props[0].1)[1].1);
        let ext = fields(&containers.iter().find(|(n, _)| *n == 31).unwrap().1);
        assert_eq!(ext[0].1, b"x-kubernetes-patch-merge-key");
        assert_eq!(fields(&ext[1].1)[0].1, b"name\n");
        let items = fields(&containers.iter().find(|(n, _)| *n == 23).unwrap().1);
        assert_eq!(fields(&items[0].1)[0].1, b"#/definitions/io.k8s.api.core.v1.Container");
    }
}
