//! Property tests over random structural schemas (seeded, bounded): every generated schema
//! passes [`structural_errors`]; an object generated to conform validates, survives pruning
//! unchanged and stays valid once defaulted; on random objects `validate` does not panic,
//! `prune` leaves only declared fields, and `default` is idempotent.

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::*;

const ITERATIONS: usize = 2_000;
const NAMES: [&str; 8] = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"];

/// A schema and a generator of values that conform to it.
struct Gen {
    rng: StdRng,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A structural schema node; `depth` bounds nesting.
    fn schema(&mut self, depth: usize) -> Value {
        let kinds: &[&str] = if depth == 0 {
            &["string", "integer", "number", "boolean", "int-or-string"]
        } else {
            &[
                "string",
                "integer",
                "number",
                "boolean",
                "int-or-string",
                "object",
                "object",
                "map",
                "array",
                "embedded",
                "preserve",
            ]
        };
        let mut s = match *self.pick(kinds) {
            "string" => self.string_schema(),
            "integer" => self.integer_schema(),
            "number" => {
                let min = self.rng.random_range(-50.0..50.0_f64).round();
                let mut s = json!({"type": "number"});
                if self.chance(0.5) {
                    s["minimum"] = json!(min);
                    s["maximum"] = json!(min + self.rng.random_range(1.0..100.0_f64).round());
                }
                if self.chance(0.2) {
                    s["format"] = json!("double");
                }
                s
            }
            "boolean" => json!({"type": "boolean"}),
            "int-or-string" => {
                if self.chance(0.5) {
                    json!({"x-kubernetes-int-or-string": true})
                } else {
                    json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]})
                }
            }
            "object" => self.object_schema(depth),
            "map" => {
                let mut s =
                    json!({"type": "object", "additionalProperties": self.schema(depth - 1)});
                if self.chance(0.3) {
                    s["maxProperties"] = json!(self.rng.random_range(2..5));
                }
                if self.chance(0.2) {
                    s["x-kubernetes-map-type"] = json!("atomic");
                }
                s
            }
            "array" => self.array_schema(depth),
            "embedded" => {
                let mut s = json!({"type": "object", "x-kubernetes-embedded-resource": true});
                if self.chance(0.5) {
                    s["x-kubernetes-preserve-unknown-fields"] = json!(true);
                } else {
                    s["properties"] = json!({"spec": self.object_schema(depth - 1)});
                }
                s
            }
            _ => {
                let mut s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
                if self.chance(0.5) {
                    s["properties"] = self.properties(depth - 1);
                }
                s
            }
        };
        if self.chance(0.1) && s.get("x-kubernetes-embedded-resource").is_none() {
            s["nullable"] = json!(true);
        }
        s
    }

    fn string_schema(&mut self) -> Value {
        match self.rng.random_range(0..5) {
            0 => json!({"type": "string", "enum": ["red", "green", "blue"]}),
            1 => {
                json!({"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": self.rng.random_range(1..12)})
            }
            2 => json!({"type": "string", "pattern": "^(foo|bar)-[0-9]{2}$"}),
            3 => {
                let f = *self.pick(&[
                    "date-time",
                    "date",
                    "uuid",
                    "ipv4",
                    "hostname",
                    "byte",
                    "duration",
                    "k8s-short-name",
                    "email",
                    "mac",
                    "cidr",
                ]);
                json!({"type": "string", "format": f})
            }
            _ => {
                let min = self.rng.random_range(0..4);
                json!({"type": "string", "minLength": min, "maxLength": min + self.rng.random_range(0..10)})
            }
        }
    }

    fn integer_schema(&mut self) -> Value {
        let mut s = json!({"type": "integer"});
        if self.chance(0.6) {
            let min = self.rng.random_range(-100..100_i64);
            let step = if self.chance(0.4) { self.rng.random_range(2..6_i64) } else { 1 };
            s["minimum"] = json!(min);
            s["maximum"] = json!(min + step * self.rng.random_range(1..40_i64));
            if step > 1 {
                s["multipleOf"] = json!(step);
            }
            if self.chance(0.3) {
                s["format"] = json!("int32");
            }
        } else if self.chance(0.3) {
            s["enum"] = json!([1, 2, 3]);
        }
        s
    }

    fn properties(&mut self, depth: usize) -> Value {
        let n = self.rng.random_range(1..5);
        let mut props = Map::new();
        for _ in 0..n {
            let name = *self.pick(&NAMES);
            let mut p = self.schema(depth);
            if self.chance(0.25) {
                let d = self.value(&p, 2);
                if !d.is_null() {
                    p["default"] = d;
                }
            }
            props.insert(name.to_string(), p);
        }
        Value::Object(props)
    }

    fn object_schema(&mut self, depth: usize) -> Value {
        let props = self.properties(depth.saturating_sub(1));
        let mut s = json!({"type": "object", "properties": props});
        if self.chance(0.4) {
            let names: Vec<String> =
                props.as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
            let req: Vec<&String> = names.iter().filter(|_| self.rng.random_bool(0.5)).collect();
            if !req.is_empty() {
                s["required"] = json!(req);
            }
        }
        if self.chance(0.1) {
            let first =
                props.as_object().and_then(|p| p.keys().next().cloned()).unwrap_or_default();
            // A junctor that the generated values always meet.
            s["anyOf"] = json!([{"required": [first]}, {"not": {"required": [first]}}]);
        }
        s
    }

    fn array_schema(&mut self, depth: usize) -> Value {
        let mut s = match self.rng.random_range(0..4) {
            0 => {
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string", "maxLength": 20}})
            }
            1 => {
                let mut item = self.object_schema(depth - 1);
                item["properties"]["name"] = json!({"type": "string", "minLength": 1});
                item["required"] = json!(["name"]);
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": item})
            }
            _ => json!({"type": "array", "items": self.schema(depth - 1)}),
        };
        if self.chance(0.4) {
            let min = self.rng.random_range(0..2);
            s["minItems"] = json!(min);
            s["maxItems"] = json!(min + self.rng.random_range(1..4));
        }
        s
    }

    /// A value conforming to `s`.
    fn value(&mut self, s: &Value, depth: usize) -> Value {
        // kube-openapi never lets null through an enum, nullable or not.
        if s["nullable"] == json!(true) && s.get("enum").is_none() && self.chance(0.1) {
            return Value::Null;
        }
        if s["x-kubernetes-int-or-string"] == json!(true) {
            return if self.chance(0.5) {
                json!(self.rng.random_range(0..65536))
            } else {
                json!("http")
            };
        }
        match s["type"].as_str().unwrap_or("") {
            "string" => self.string_value(s),
            "integer" => {
                if let Some(e) = s["enum"].as_array() {
                    return self.pick(e).clone();
                }
                let min = s["minimum"].as_i64().unwrap_or(-1000);
                let max = s["maximum"].as_i64().unwrap_or(1000);
                let step = s["multipleOf"].as_i64().unwrap_or(1);
                let (lo, hi) = (min.div_euclid(step) + 1, max.div_euclid(step));
                let k = if lo <= hi { self.rng.random_range(lo..=hi) } else { lo };
                json!(k * step)
            }
            "number" => {
                let min = s["minimum"].as_f64().unwrap_or(-1e6);
                let max = s["maximum"].as_f64().unwrap_or(1e6);
                json!(self.rng.random_range(min..=max))
            }
            "boolean" => json!(self.chance(0.5)),
            "array" => {
                let min = s["minItems"].as_u64().unwrap_or(0) as usize;
                let max = s["maxItems"].as_u64().unwrap_or(4) as usize;
                let n = self.rng.random_range(min..=max.max(min));
                let items: Vec<Value> = (0..n)
                    .map(|i| {
                        let mut v = if depth == 0 && s["items"]["type"] == "object" {
                            json!({})
                        } else {
                            self.value(&s["items"], depth.saturating_sub(1))
                        };
                        match s["x-kubernetes-list-type"].as_str() {
                            Some("set") => v = json!(format!("item-{i}")),
                            Some("map") => v["name"] = json!(format!("n{i}")),
                            _ => {}
                        }
                        v
                    })
                    .collect();
                Value::Array(items)
            }
            "object" => self.object_value(s, depth),
            _ => json!({"free": "form"}),
        }
    }

    fn string_value(&mut self, s: &Value) -> Value {
        if let Some(e) = s["enum"].as_array() {
            return self.pick(e).clone();
        }
        let min = s["minLength"].as_u64().unwrap_or(0) as usize;
        let max = s["maxLength"].as_u64().unwrap_or(12) as usize;
        let letters = |g: &mut Gen, n: usize| -> String {
            (0..n).map(|_| g.rng.random_range(b'a'..=b'z') as char).collect()
        };
        let v = match (s["pattern"].as_str(), s["format"].as_str()) {
            (Some("^[a-z]+$"), _) => {
                let n = self.rng.random_range(min.max(1)..=max.max(1));
                letters(self, n)
            }
            (Some(_), _) => {
                format!("{}-{:02}", self.pick(&["foo", "bar"]), self.rng.random_range(0..100))
            }
            (None, Some("date-time")) => format!(
                "2024-0{}-1{}T0{}:30:00Z",
                self.rng.random_range(1..10),
                self.rng.random_range(0..10),
                self.rng.random_range(0..10)
            ),
            (None, Some("date")) => {
                format!("2023-1{}-2{}", self.rng.random_range(0..3), self.rng.random_range(0..9))
            }
            (None, Some("uuid")) => {
                let h: String = (0..32).map(|_| *self.pick(&['0', '7', 'a', 'F', '9'])).collect();
                format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
            }
            (None, Some("ipv4")) => format!(
                "10.{}.{}.{}",
                self.rng.random_range(0..256),
                self.rng.random_range(0..256),
                self.rng.random_range(0..256)
            ),
            (None, Some("hostname")) => format!("{}.example.com", letters(self, 5)),
            (None, Some("byte")) => {
                let bytes: Vec<u8> =
                    (0..self.rng.random_range(1..20)).map(|_| self.rng.random()).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            (None, Some("duration")) => {
                format!("{}m{}s", self.rng.random_range(0..60), self.rng.random_range(0..60))
            }
            (None, Some("k8s-short-name")) => {
                format!("{}-{}", letters(self, 3), self.rng.random_range(0..99))
            }
            (None, Some("email")) => format!("{}@example.com", letters(self, 4)),
            (None, Some("mac")) => "01:23:45:67:89:ab".to_string(),
            (None, Some("cidr")) => format!("10.{}.0.0/16", self.rng.random_range(0..256)),
            _ => {
                let n = self.rng.random_range(min..=max.max(min));
                letters(self, n)
            }
        };
        json!(v)
    }

    fn object_value(&mut self, s: &Value, depth: usize) -> Value {
        let mut m = Map::new();
        let required: Vec<&str> = s["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = s["properties"].as_object() {
            for (k, p) in props {
                if required.contains(&k.as_str()) || (depth > 0 && self.chance(0.7)) {
                    m.insert(k.clone(), self.value(p, depth.saturating_sub(1)));
                }
            }
        }
        if s["additionalProperties"].is_object() {
            let max = s["maxProperties"].as_u64().unwrap_or(3) as usize;
            for i in 0..self.rng.random_range(0..=max.min(3)) {
                if depth > 0 {
                    let v = self.value(&s["additionalProperties"], depth - 1);
                    m.insert(format!("key{i}"), v);
                }
            }
        }
        if s["x-kubernetes-preserve-unknown-fields"] == json!(true) && self.chance(0.5) {
            m.insert("unknownField".into(), json!({"deep": [1, {"x": null}]}));
        }
        if s["x-kubernetes-embedded-resource"] == json!(true) {
            m.insert("apiVersion".into(), json!("v1"));
            m.insert("kind".into(), json!("Thing"));
            m.insert("metadata".into(), json!({"name": "thing", "labels": {"a": "b"}}));
        }
        Value::Object(m)
    }

    /// Random JSON, biased toward the names the schemas use.
    fn junk(&mut self, depth: usize) -> Value {
        match self.rng.random_range(0..if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(0.5)),
            2 => json!(self.rng.random_range(-5..300)),
            3 => json!(self.rng.random_range(-5.0..5.0_f64)),
            4 | 5 => json!(*self.pick(&["", "red", "x", "2024-01-01", "item-1", "http", "a/b"])),
            6 => Value::Array(
                (0..self.rng.random_range(0..4)).map(|_| self.junk(depth - 1)).collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.rng.random_range(0..5) {
                    let k = if self.chance(0.7) {
                        *self.pick(&NAMES)
                    } else {
                        *self.pick(&["name", "metadata", "kind", "apiVersion", "spec", "other"])
                    };
                    let v = self.junk(depth - 1);
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }
        }
    }
}

impl Gen {
    /// A schema-shaped value with keywords of random kinds, to show that nothing built from
    /// a malformed schema panics.
    fn junk_schema(&mut self, depth: usize) -> Value {
        const KEYWORDS: [&str; 24] = [
            "type",
            "format",
            "properties",
            "items",
            "additionalProperties",
            "required",
            "enum",
            "default",
            "nullable",
            "maximum",
            "minimum",
            "multipleOf",
            "maxLength",
            "pattern",
            "maxItems",
            "allOf",
            "anyOf",
            "not",
            "x-kubernetes-int-or-string",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
            "x-kubernetes-map-type",
        ];
        let mut m = Map::new();
        for _ in 0..self.rng.random_range(0..6) {
            let k = *self.pick(&KEYWORDS);
            let v = match (k, depth) {
                ("properties", d) if d > 0 => {
                    let mut p = Map::new();
                    p.insert(self.pick(&NAMES).to_string(), self.junk_schema(d - 1));
                    Value::Object(p)
                }
                ("items" | "additionalProperties" | "not", d) if d > 0 && self.chance(0.7) => {
                    self.junk_schema(d - 1)
                }
                ("allOf" | "anyOf", d) if d > 0 => {
                    json!([self.junk_schema(d - 1), self.junk_schema(d - 1)])
                }
                ("type", _) => json!(*self.pick(&[
                    "object", "array", "string", "integer", "number", "boolean", "null", "x"
                ])),
                ("format", _) => {
                    json!(*self.pick(&["int32", "date-time", "byte", "float", "uuid", "nope"]))
                }
                ("pattern", _) => json!(*self.pick(&["^a+$", "(", "a**", "[", "\\d{2}"])),
                ("x-kubernetes-list-type", _) => {
                    json!(*self.pick(&["set", "map", "atomic", "bag"]))
                }
                _ => self.junk(2),
            };
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    }
}

#[test]
fn malformed_schemas_should_not_panic() {
    let mut g = Gen { rng: StdRng::seed_from_u64(0xbad) };
    for _ in 0..ITERATIONS {
        let root = g.junk_schema(3);
        let _ = structural_errors(&root, "schema");
        let schema = Schema::parse(&root);
        let mut obj = g.junk(4);
        let _ = schema.validate(&obj);
        schema.prune(&mut obj);
        schema.default(&mut obj);
        let _ = schema.validate(&obj);
        let _ = schema.list_type_at(&["alpha", "*"]);
    }
}

/// The fields `prune` may leave: declared ones, those under preserve-unknown-fields, and
/// the meta fields of resources. `Err` names the first field that should have gone.
fn only_declared(v: &Value, n: Option<&Node>, embedded: bool, path: &str) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                let Some(n) = n else { return Err(p) };
                if (embedded || n.embedded_resource)
                    && ["apiVersion", "kind", "metadata"].contains(&k.as_str())
                {
                    continue;
                }
                let child = n
                    .properties
                    .get(k)
                    .or_else(|| n.additional_properties.as_ref().and_then(|a| a.schema()));
                let declared = n.properties.contains_key(k) || n.additional_properties.is_some();
                if !declared && !n.preserve_unknown_fields {
                    return Err(p);
                }
                if declared {
                    only_declared(x, child, false, &p)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            let item = n.and_then(|n| n.items.as_deref());
            for (i, x) in items.iter().enumerate() {
                if n.is_some_and(|n| n.preserve_unknown_fields) {
                    // Under a preserving array, kube keeps everything its items do not declare.
                    continue;
                }
                only_declared(x, item, false, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[test]
fn schemas_should_hold_their_properties_on_random_input() {
    let mut g = Gen { rng: StdRng::seed_from_u64(0x5c1ff) };
    for iteration in 0..ITERATIONS {
        let mut root = json!({"type": "object", "properties": {"spec": g.object_schema(3)}});
        if g.chance(0.3) {
            root["properties"]["status"] =
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        }
        let errs = structural_errors(&root, "schema");
        assert!(errs.is_empty(), "#{iteration}: generated schema refused: {errs:?}\n{root:#}");
        let schema = Schema::parse(&root);

        let mut obj = g.object_value(&root, 4);
        obj["apiVersion"] = json!("example.com/v1");
        obj["kind"] = json!("Widget");
        obj["metadata"] = json!({"name": "w"});
        let errs = schema.validate(&obj);
        assert!(
            errs.is_empty(),
            "#{iteration}: conforming object refused: {errs:?}\n{root:#}\n{obj:#}"
        );
        let before = obj.clone();
        assert!(
            schema.prune(&mut obj).is_empty(),
            "#{iteration}: pruned a conforming object\n{before:#}"
        );
        assert_eq!(obj, before, "#{iteration}");
        schema.default(&mut obj);
        let errs = schema.validate(&obj);
        assert!(
            errs.is_empty(),
            "#{iteration}: defaulted object refused: {errs:?}\n{root:#}\n{obj:#}"
        );
        let once = obj.clone();
        schema.default(&mut obj);
        assert_eq!(obj, once, "#{iteration}: defaulting twice changed the object");

        let mut junk = g.junk(5);
        if let Value::Object(m) = &mut junk
            && g.chance(0.5)
        {
            m.insert("spec".into(), g.junk(4));
        }
        let _ = schema.validate(&junk);
        schema.prune(&mut junk);
        if let Err(field) = only_declared(&junk, Some(schema.root()), true, "") {
            panic!("#{iteration}: {field} survived pruning\n{root:#}\n{junk:#}");
        }
        schema.default(&mut junk);
        let once = junk.clone();
        schema.default(&mut junk);
        assert_eq!(junk, once, "#{iteration}: defaulting random input twice changed it");
        let _ = schema.validate(&junk);
    }
}
