//! Tables of cases for the schema module, messages compared exactly (many are kube's own
//! cases from apiextensions-apiserver's tests).

use serde_json::{Value, json};

use super::*;

fn texts(errs: Vec<FieldError>) -> Vec<String> {
    errs.into_iter().map(|e| e.to_string()).collect()
}

/// kube-openapi's validation alone, as kube's `TestValidateCustomResource` runs it.
fn openapi(schema: &Value, obj: &Value) -> Vec<String> {
    texts(validate::validate(&Node::parse(schema), obj, None))
}

/// A schema whose `spec` is `spec`.
fn with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

fn check_validate(cases: &[(&str, Value, Value, &[&str])]) {
    for (name, spec_schema, spec, want) in cases {
        let schema = Schema::parse(&with_spec(spec_schema.clone()));
        let got = texts(schema.validate(&object(spec.clone())));
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn validate_should_report_types_as_kube_openapi_does() {
    let int = json!({"type": "object", "properties": {"replicas": {"type": "integer"}}});
    let num = json!({"type": "object", "properties": {"ratio": {"type": "number"}}});
    let cases: &[(&str, Value, Value, &[&str])] = &[
        ("an integer", int.clone(), json!({"replicas": 3}), &[]),
        (
            "a string for an integer",
            int.clone(),
            json!({"replicas": "3"}),
            &[
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ],
        ),
        ("a whole float for an integer", int.clone(), json!({"replicas": 3.0}), &[]),
        (
            "a fraction for an integer",
            int.clone(),
            json!({"replicas": 1.5}),
            &[
                r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
                r#"<nil>: Invalid value: "": Checked value must be of type integer (default format) in spec.replicas"#,
            ],
        ),
        (
            "null for a non-nullable field",
            int.clone(),
            json!({"replicas": null}),
            &[
                r#"spec.replicas: Invalid value: "null": spec.replicas in body must be of type integer: "null""#,
            ],
        ),
        (
            "null for a nullable field",
            json!({"type": "object", "properties": {"replicas": {"type": "integer", "nullable": true}}}),
            json!({"replicas": null}),
            &[],
        ),
        ("an integer for a number", num.clone(), json!({"ratio": 2}), &[]),
        (
            "an object for a number",
            num,
            json!({"ratio": {}}),
            &[
                r#"spec.ratio: Invalid value: "object": spec.ratio in body must be of type number: "object""#,
            ],
        ),
        (
            "a number for a boolean",
            json!({"type": "object", "properties": {"on": {"type": "boolean"}}}),
            json!({"on": 1}),
            &[
                r#"spec.on: Invalid value: "integer": spec.on in body must be of type boolean: "integer""#,
            ],
        ),
        (
            "an array for an object",
            json!({"type": "object"}),
            json!([]),
            &[r#"spec: Invalid value: "array": spec in body must be of type object: "array""#],
        ),
        (
            "int-or-string given a boolean",
            json!({"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": true}}}),
            json!({"port": true}),
            &[
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
            ],
        ),
        (
            "int-or-string given either",
            json!({"type": "object", "properties": {"a": {"x-kubernetes-int-or-string": true}, "b": {"x-kubernetes-int-or-string": true}}}),
            json!({"a": 80, "b": "http"}),
            &[],
        ),
        (
            "preserve-unknown-fields without a type takes anything",
            json!({"type": "object", "properties": {"any": {"x-kubernetes-preserve-unknown-fields": true}}}),
            json!({"any": [1, "x", {"y": null}]}),
            &[],
        ),
        (
            "int32 out of range",
            json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int32"}}}),
            json!({"n": 2147483648_i64}),
            &[
                r#"<nil>: Invalid value: "": Checked value must be of type integer with format int32 in spec.n"#,
            ],
        ),
        (
            "a boolean for an int32",
            json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int32"}}}),
            json!({"n": true}),
            &[r#"spec.n: Invalid value: "": spec.n in body must be of type int32: """#],
        ),
        (
            "a number for a date-time string",
            json!({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}}),
            json!({"at": 5}),
            &[
                r#"spec.at: Invalid value: "int64": spec.at in body must be of type date-time: "int64""#,
            ],
        ),
    ];
    check_validate(cases);
}

#[test]
fn validate_should_report_value_validations_with_kube_messages() {
    let field = |f: Value| json!({"type": "object", "properties": {"f": f}});
    let cases: &[(&str, Value, Value, &[&str])] = &[
        (
            "maximum",
            field(json!({"type": "integer", "maximum": 10})),
            json!({"f": 11}),
            &["spec.f: Invalid value: 11: spec.f in body should be less than or equal to 10"],
        ),
        (
            "maximum reached",
            field(json!({"type": "integer", "maximum": 10})),
            json!({"f": 10}),
            &[],
        ),
        (
            "exclusive maximum",
            field(json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true})),
            json!({"f": 10}),
            &["spec.f: Invalid value: 10: spec.f in body should be less than 10"],
        ),
        (
            "minimum",
            field(json!({"type": "integer", "minimum": 1})),
            json!({"f": 0}),
            &["spec.f: Invalid value: 0: spec.f in body should be greater than or equal to 1"],
        ),
        (
            "exclusive minimum",
            field(json!({"type": "number", "minimum": 0.5, "exclusiveMinimum": true})),
            json!({"f": 0.5}),
            &["spec.f: Invalid value: 0.5: spec.f in body should be greater than 0.5"],
        ),
        (
            "float maximum",
            field(json!({"type": "number", "maximum": 1.5})),
            json!({"f": 2.5}),
            &["spec.f: Invalid value: 2.5: spec.f in body should be less than or equal to 1.5"],
        ),
        (
            "large float bounds print as Go's %v",
            field(json!({"type": "number", "maximum": 1000000})),
            json!({"f": 2000000.5}),
            &[
                "spec.f: Invalid value: 2000000.5: spec.f in body should be less than or equal to 1e+06",
            ],
        ),
        (
            "a maximum that is no integer, on an integer",
            field(json!({"type": "integer", "maximum": 10.5})),
            json!({"f": 11}),
            &[
                r#"<nil>: Invalid value: "": Maximum boundary value must be of type integer (default format) in spec.f"#,
                "spec.f: Invalid value: 11: spec.f in body should be less than or equal to 10.5",
            ],
        ),
        (
            "multipleOf",
            field(json!({"type": "integer", "multipleOf": 2})),
            json!({"f": 7}),
            &["spec.f: Invalid value: 7: spec.f in body should be a multiple of 2"],
        ),
        (
            "float multipleOf",
            field(json!({"type": "number", "multipleOf": 0.1})),
            json!({"f": 0.3}),
            &[],
        ),
        (
            "float multipleOf missed",
            field(json!({"type": "number", "multipleOf": 0.25})),
            json!({"f": 0.3}),
            &["spec.f: Invalid value: 0.3: spec.f in body should be a multiple of 0.25"],
        ),
        (
            "maxLength counts characters",
            field(json!({"type": "string", "maxLength": 5})),
            json!({"f": "ééééé"}),
            &[],
        ),
        (
            "maxLength",
            field(json!({"type": "string", "maxLength": 5})),
            json!({"f": "abcdef"}),
            &["spec.f: Too long: may not be more than 5 bytes"],
        ),
        (
            "maxLength of one",
            field(json!({"type": "string", "maxLength": 1})),
            json!({"f": "ab"}),
            &["spec.f: Too long: may not be more than 1 byte"],
        ),
        (
            "minLength",
            field(json!({"type": "string", "minLength": 3})),
            json!({"f": "ab"}),
            &[r#"spec.f: Invalid value: "ab": spec.f in body should be at least 3 chars long"#],
        ),
        (
            "maxLength is checked before the pattern",
            field(json!({"type": "string", "maxLength": 2, "pattern": "^[a-z]+$"})),
            json!({"f": "ABC"}),
            &["spec.f: Too long: may not be more than 2 bytes"],
        ),
        (
            "pattern",
            field(json!({"type": "string", "pattern": "^[a-z]+$"})),
            json!({"f": "A1"}),
            &[r#"spec.f: Invalid value: "A1": spec.f in body should match '^[a-z]+$'"#],
        ),
        (
            "format",
            field(json!({"type": "string", "format": "date-time"})),
            json!({"f": "foo"}),
            &[r#"spec.f: Invalid value: "foo": spec.f in body must be of type date-time: "foo""#],
        ),
        (
            "an unknown format is ignored",
            field(json!({"type": "string", "format": "colour"})),
            json!({"f": "foo"}),
            &[],
        ),
        (
            "enum",
            field(json!({"type": "string", "enum": ["a", "b"]})),
            json!({"f": "x"}),
            &[r#"spec.f: Unsupported value: "x": supported values: "a", "b""#],
        ),
        (
            "numeric enum",
            field(json!({"type": "integer", "enum": [1, 2]})),
            json!({"f": 3}),
            &[r#"spec.f: Unsupported value: 3: supported values: "1", "2""#],
        ),
        (
            "a whole float matches an integer enum",
            field(json!({"type": "integer", "enum": [1, 2]})),
            json!({"f": 2.0}),
            &[],
        ),
        (
            "minItems",
            field(json!({"type": "array", "items": {"type": "integer"}, "minItems": 2})),
            json!({"f": [1]}),
            &["spec.f: Invalid value: 1: spec.f in body should have at least 2 items"],
        ),
        (
            "maxItems",
            field(json!({"type": "array", "items": {"type": "integer"}, "maxItems": 3})),
            json!({"f": [1, 2, 3, 4]}),
            &["spec.f: Too many: 4: must have at most 3 items"],
        ),
        (
            "uniqueItems",
            field(json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true})),
            json!({"f": [1, 2, 1]}),
            &[r#"spec.f: Invalid value: "": spec.f in body shouldn't contain duplicates"#],
        ),
        (
            "minProperties",
            field(
                json!({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 2}),
            ),
            json!({"f": {"a": "x"}}),
            &["spec.f: Invalid value: 1: spec.f in body should have at least 2 properties"],
        ),
        (
            "maxProperties",
            field(
                json!({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}),
            ),
            json!({"f": {"a": "x", "b": "y"}}),
            &["spec.f: Too many: 2: must have at most 1 item"],
        ),
        (
            "required",
            json!({"type": "object", "required": ["name", "size"], "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}),
            json!({"size": 1}),
            &["spec.name: Required value"],
        ),
        (
            "items",
            json!({"type": "object", "properties": {"items": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}}}}}}),
            json!({"items": [{"name": "a"}, {"name": "b"}, {"name": 3}]}),
            &[
                r#"spec.items[2].name: Invalid value: "integer": spec.items[2].name in body must be of type string: "integer""#,
            ],
        ),
        (
            "additionalProperties values",
            json!({"type": "object", "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}}}),
            json!({"labels": {"app": "web", "tier": 1}}),
            &[
                r#"spec.labels.tier: Invalid value: "integer": spec.labels.tier in body must be of type string: "integer""#,
            ],
        ),
        (
            "additionalProperties false",
            field(json!({"type": "object", "additionalProperties": false})),
            json!({"f": {"x": 1}}),
            &[r#"spec.f: Invalid value: "x": spec.f.x in body is a forbidden property"#],
        ),
        (
            "an integer field given a string also fails its enum, as in kube",
            field(json!({"type": "integer", "enum": [1, 2]})),
            json!({"f": "x"}),
            &[
                r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#,
                r#"spec.f: Unsupported value: "x": supported values: "1", "2""#,
            ],
        ),
    ];
    check_validate(cases);
}

#[test]
fn validate_should_honour_junctors() {
    let cases: &[(&str, Value, Value, &[&str])] = &[
        (
            "anyOf none",
            json!({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
                   "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
            json!({}),
            &[
                r#"<nil>: Invalid value: "": "spec" must validate at least one schema (anyOf)"#,
                "spec.a: Required value",
            ],
        ),
        (
            "anyOf one",
            json!({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
                   "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
            json!({"b": "x"}),
            &[],
        ),
        (
            "oneOf two",
            json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                   "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
            json!({"a": "x", "b": "y"}),
            &[
                r#"<nil>: Invalid value: "": "spec" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            ],
        ),
        (
            "oneOf none",
            json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                   "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
            json!({}),
            &[
                r#"<nil>: Invalid value: "": "spec" must validate one and only one schema (oneOf). Found none valid"#,
                "spec.a: Required value",
            ],
        ),
        (
            "allOf",
            json!({"type": "string", "allOf": [{"maxLength": 3}, {"pattern": "^a"}]}),
            json!("bcde"),
            &[
                "spec: Too long: may not be more than 3 bytes",
                r#"spec: Invalid value: "bcde": spec in body should match '^a'"#,
                r#"<nil>: Invalid value: "": "spec" must validate all the schemas (allOf). None validated"#,
            ],
        ),
        (
            "not",
            json!({"type": "string", "not": {"enum": ["forbidden"]}}),
            json!("forbidden"),
            &[r#"<nil>: Invalid value: "": "spec" must not validate the schema (not)"#],
        ),
        (
            "an error repeated by allOf is reported once",
            json!({"type": "string", "maxLength": 3, "allOf": [{"maxLength": 3}]}),
            json!("abcd"),
            &[
                "spec: Too long: may not be more than 3 bytes",
                r#"<nil>: Invalid value: "": "spec" must validate all the schemas (allOf). None validated"#,
            ],
        ),
    ];
    check_validate(cases);
}

/// Cases from kube's `TestValidateCustomResource` (compared there as sets).
#[test]
fn validate_should_match_kube_test_cases() {
    let int_or_string_any_of = json!({"type": "object", "properties": {"field": {
        "nullable": true, "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}});
    let int_or_string_all_of = json!({"type": "object", "properties": {"field": {
        "nullable": true, "x-kubernetes-int-or-string": true,
        "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}]}}});
    let enums = json!({"type": "object", "properties": {"field": {"type": "object",
        "required": ["nestedint", "nestedstring"], "properties": {
            "nestedint": {"type": "integer", "enum": [1, 2]},
            "nestedstring": {"type": "string", "enum": ["a", "b"]}}}}});
    let cases: &[(Value, Value, &[&str])] = &[
        (int_or_string_any_of.clone(), json!({"field": null}), &[]),
        (int_or_string_any_of.clone(), json!({"field": 42}), &[]),
        (
            int_or_string_any_of.clone(),
            json!({"field": true}),
            &[
                r#"field: Invalid value: "boolean": field in body must be of type integer,string: "boolean""#,
                r#"<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)"#,
                r#"field: Invalid value: "boolean": field in body must be of type integer: "boolean""#,
            ],
        ),
        (
            int_or_string_any_of,
            json!({"field": 1.2}),
            &[
                r#"field: Invalid value: "number": field in body must be of type integer,string: "number""#,
                r#"<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)"#,
                r#"field: Invalid value: "number": field in body must be of type integer: "number""#,
                r#"<nil>: Invalid value: "": Checked value must be of type integer (default format) in field"#,
            ],
        ),
        (
            int_or_string_all_of,
            json!({"field": []}),
            &[
                r#"field: Invalid value: "array": field in body must be of type integer,string: "array""#,
                r#"<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)"#,
                r#"field: Invalid value: "array": field in body must be of type integer: "array""#,
                r#"<nil>: Invalid value: "": "field" must validate all the schemas (allOf). None validated"#,
            ],
        ),
        (
            json!({"type": "object", "properties": {"field": {"type": "string", "pattern": "+"}}}),
            json!({"field": "foo"}),
            &[
                "field: Invalid value: \"foo\": field in body should match '+, but pattern is invalid: error parsing regexp: missing argument to repetition operator: `+`'",
            ],
        ),
        (
            json!({"type": "object", "required": ["field"], "properties": {"field": {"type": "object",
                "required": ["nested"], "properties": {"nested": {}}}}}),
            json!({"test": "a"}),
            &["field: Required value"],
        ),
        (
            json!({"type": "object", "required": ["field"], "properties": {"field": {"type": "object",
                "required": ["nested"], "properties": {"nested": {}}}}}),
            json!({"field": {}}),
            &["field.nested: Required value"],
        ),
        (
            enums.clone(),
            json!({"field": {}}),
            &["field.nestedint: Required value", "field.nestedstring: Required value"],
        ),
        (
            enums,
            json!({"field": {"nestedint": "x", "nestedstring": true}}),
            &[
                r#"field.nestedint: Invalid value: "string": field.nestedint in body must be of type integer: "string""#,
                r#"field.nestedint: Unsupported value: "x": supported values: "1", "2""#,
                r#"field.nestedstring: Invalid value: "boolean": field.nestedstring in body must be of type string: "boolean""#,
                r#"field.nestedstring: Unsupported value: true: supported values: "a", "b""#,
            ],
        ),
        (
            json!({"type": "object", "properties": {"field": {"type": "object"}}}),
            json!({"field": 42}),
            &[
                r#"field: Invalid value: "integer": field in body must be of type object: "integer""#,
            ],
        ),
    ];
    for (schema, obj, want) in cases {
        assert_eq!(openapi(schema, obj), *want, "{obj}");
    }
}

#[test]
fn validate_should_require_type_meta_at_the_root() {
    let schema = Schema::parse(&json!({"type": "object"}));
    assert_eq!(
        texts(schema.validate(&json!({"metadata": {}}))),
        ["apiVersion: Required value", "kind: Required value"]
    );
    assert_eq!(
        texts(schema.validate(&json!({"apiVersion": 1, "kind": "W"}))),
        ["apiVersion: Invalid value: 1: must be a string"]
    );
}

#[test]
fn validate_should_check_embedded_resources() {
    let embedded = json!({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}});
    let dns1035 = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    let kind_err = format!(
        r#"spec.template.kind: Invalid value: "Foo_Bar": may have mixed case, but should otherwise match: {dns1035}"#
    );
    let cases: &[(&str, Value, Value, Vec<&str>)] = &[
        (
            "type meta missing",
            embedded.clone(),
            json!({"template": {}}),
            vec!["spec.template.apiVersion: Required value", "spec.template.kind: Required value"],
        ),
        (
            "complete",
            embedded.clone(),
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}),
            vec![],
        ),
        (
            "bad kind",
            embedded.clone(),
            json!({"template": {"apiVersion": "apps/v1", "kind": "Foo_Bar"}}),
            vec![kind_err.as_str()],
        ),
        (
            "bad apiVersion",
            embedded.clone(),
            json!({"template": {"apiVersion": "a/b/c", "kind": "Pod"}}),
            vec![
                r#"spec.template.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#,
            ],
        ),
        (
            "empty kind",
            embedded.clone(),
            json!({"template": {"apiVersion": "v1", "kind": ""}}),
            vec![r#"spec.template.kind: Invalid value: "": must not be empty"#],
        ),
        (
            "metadata of the wrong types",
            embedded.clone(),
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}}}),
            vec![
                r#"spec.template.metadata: Invalid value: {"name":5}: json: cannot unmarshal number into Go struct field ObjectMeta.name of type string"#,
            ],
        ),
        (
            "labels of the wrong type",
            embedded.clone(),
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": 1}}}}),
            vec![
                r#"spec.template.metadata: Invalid value: {"labels":{"a":1}}: json: cannot unmarshal number into Go struct field ObjectMeta.labels of type string"#,
            ],
        ),
        (
            "a name that is no path segment",
            embedded.clone(),
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a/b%c"}}}),
            vec![
                r#"spec.template.metadata.name: Invalid value: "a/b%c": may not contain '/'"#,
                r#"spec.template.metadata.name: Invalid value: "a/b%c": may not contain '%'"#,
            ],
        ),
        (
            "a bad namespace and a negative generation",
            embedded,
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "a.b", "generation": -1}}}),
            vec![
                r#"spec.template.metadata.namespace: Invalid value: "a.b": must not contain dots"#,
                "spec.template.metadata.generation: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            "inside additionalProperties the path is a key",
            json!({"type": "object", "properties": {"pods": {"type": "object", "additionalProperties": {
                "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}}),
            json!({"pods": {"one": {"kind": "Pod"}}}),
            vec!["spec.pods[one].apiVersion: Required value"],
        ),
    ];
    for (name, spec_schema, spec, want) in cases {
        let schema = Schema::parse(&with_spec(spec_schema.clone()));
        assert_eq!(texts(schema.validate(&object(spec.clone()))), *want, "{name}");
    }
}

#[test]
fn validate_should_check_set_and_map_lists() {
    let list = |extra: Value, items: Value| {
        let mut l = json!({"type": "array", "items": items});
        if let (Some(l), Some(extra)) = (l.as_object_mut(), extra.as_object()) {
            l.extend(extra.clone());
        }
        json!({"type": "object", "properties": {"list": l}})
    };
    let obj_item = json!({"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}});
    let cases: &[(&str, Value, Value, &[&str])] = &[
        (
            "set: the second sighting only",
            list(json!({"x-kubernetes-list-type": "set"}), json!({"type": "integer"})),
            json!({"list": [1, 2, 1, 1, 2]}),
            &["spec.list[2]: Duplicate value: 1", "spec.list[4]: Duplicate value: 2"],
        ),
        (
            "set: 1 and 1.0 differ, as Go values do",
            list(json!({"x-kubernetes-list-type": "set"}), json!({"type": "number"})),
            json!({"list": [1, 1.0]}),
            &[],
        ),
        (
            "set of objects",
            list(
                json!({"x-kubernetes-list-type": "set"}),
                json!({"type": "object", "x-kubernetes-map-type": "atomic", "x-kubernetes-preserve-unknown-fields": true}),
            ),
            json!({"list": [{"a": 1}, {"a": 1}]}),
            &[r#"spec.list[1]: Duplicate value: {"a":1}"#],
        ),
        (
            "map with one key",
            list(
                json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
                obj_item.clone(),
            ),
            json!({"list": [{"name": "a"}, {"name": "b"}, {"name": "a", "port": 1}]}),
            &[r#"spec.list[2]: Duplicate value: {"name":"a"}"#],
        ),
        (
            "map items without the key",
            list(
                json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
                obj_item.clone(),
            ),
            json!({"list": [{"port": 1}, {"port": 2}]}),
            &["spec.list[1]: Duplicate value: {}"],
        ),
        (
            "map with two keys",
            list(
                json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"]}),
                obj_item.clone(),
            ),
            json!({"list": [{"name": "a", "port": 1}, {"name": "a", "port": 2}, {"port": 1, "name": "a"}]}),
            &[r#"spec.list[2]: Duplicate value: {"name":"a","port":1}"#],
        ),
        (
            "map items must be objects",
            list(
                json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
                obj_item,
            ),
            json!({"list": [{"name": "a"}, "x"]}),
            &[
                r#"spec.list[1]: Invalid value: "string": spec.list[1] in body must be of type object: "string""#,
                r#"spec.list[1]: Invalid value: "x": must be an object for an array of list-type map"#,
            ],
        ),
    ];
    check_validate(cases);
}

#[test]
fn prune_should_drop_undeclared_fields_and_report_their_paths() {
    let schema = Schema::parse(&json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                "loose": {"type": "object", "additionalProperties": true},
                "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "openList": {"type": "array", "x-kubernetes-preserve-unknown-fields": true,
                             "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object"}}}
            }}
        }
    }));
    let mut obj = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "bogus": 1, "ownerReferences": [{"name": "o", "extra": true}]},
        "spec": {
            "replicas": 1, "unknown": 2,
            "list": [{"name": "a", "x": 1}],
            "labels": {"k": {"v": "1", "w": 2}},
            "loose": {"k": {"x": 1}, "s": "kept"},
            "open": {"anything": {"goes": 1}, "known": {"a": "x", "b": "y"}},
            "openList": [{"a": "x", "b": "kept"}],
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {}, "status": {}}
        },
        "status": {}
    });
    let pruned = schema.prune(&mut obj);
    assert_eq!(
        pruned,
        [
            "metadata.bogus",
            "metadata.ownerReferences[0].extra",
            "spec.labels.k.w",
            "spec.list[0].x",
            "spec.loose.k.x",
            "spec.open.known.b",
            "spec.template.metadata.junk",
            "spec.template.status",
            "spec.unknown",
            "status",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "ownerReferences": [{"name": "o"}]},
            "spec": {
                "replicas": 1,
                "list": [{"name": "a"}],
                "labels": {"k": {"v": "1"}},
                "loose": {"k": {}, "s": "kept"},
                "open": {"anything": {"goes": 1}, "known": {"a": "x"}},
                "openList": [{"a": "x", "b": "kept"}],
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
            }
        })
    );
    // Pruning again finds nothing.
    assert!(schema.prune(&mut obj).is_empty());
}

#[test]
fn prune_should_keep_everything_under_a_preserving_root() {
    let schema =
        Schema::parse(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}));
    let mut obj =
        json!({"apiVersion": "v1", "kind": "K", "anything": [1], "spec": {"a": "x", "b": 1}});
    assert_eq!(schema.prune(&mut obj), ["spec.b"]);
    assert_eq!(obj, json!({"apiVersion": "v1", "kind": "K", "anything": [1], "spec": {"a": "x"}}));
}

#[test]
fn default_should_fill_fields_as_kube_does() {
    let schema = Schema::parse(&json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "default": {}, "properties": {
                "replicas": {"type": "integer", "default": 1},
                "strategy": {"type": "object", "default": {"type": "Rolling"},
                             "properties": {"type": {"type": "string"}, "maxSurge": {"type": "integer", "default": 25}}},
                "ports": {"type": "array", "items": {"type": "object", "properties": {
                    "protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}},
                "limits": {"type": "object", "additionalProperties": {"type": "string", "default": "none"}},
                "nothing": {"type": "string"},
                "maybe": {"type": "string", "nullable": true},
                "withNull": {"type": "string", "default": "d"}
            }}
        }
    }));
    let mut obj = json!({"apiVersion": "v1", "kind": "K", "spec": {
        "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
        "limits": {"cpu": null, "mem": "1"},
        "nothing": null, "maybe": null, "withNull": null
    }});
    schema.default(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({
            "replicas": 1,
            "strategy": {"type": "Rolling", "maxSurge": 25},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "limits": {"cpu": "none", "mem": "1"},
            "maybe": null,
            "withNull": "d"
        })
    );
    let once = obj.clone();
    schema.default(&mut obj);
    assert_eq!(obj, once);

    let mut empty = json!({"apiVersion": "v1", "kind": "K"});
    schema.default(&mut empty);
    assert_eq!(
        empty["spec"],
        json!({"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}, "withNull": "d"})
    );
}

#[test]
fn parse_should_prune_defaults() {
    let schema = Schema::parse(&json!({"type": "object", "properties": {"spec": {
        "type": "object", "default": {"a": 1, "b": 2}, "properties": {"a": {"type": "integer"}}}}}));
    let mut obj = json!({"apiVersion": "v1", "kind": "K"});
    schema.default(&mut obj);
    assert_eq!(obj["spec"], json!({"a": 1}));
}

#[test]
fn list_and_map_types_should_be_found_by_path() {
    let schema = Schema::parse(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"},
                               "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
            "args": {"type": "array", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "string"}}}}
        }}}}),
    );
    assert_eq!(
        schema.list_type_at(&["spec", "ports"]),
        Some(ListType::Map(vec!["port".into(), "protocol".into()]))
    );
    assert_eq!(schema.list_type_at(&["spec", "ports", "*", "tags"]), Some(ListType::Set));
    assert_eq!(schema.list_type_at(&["spec", "args"]), Some(ListType::Atomic));
    assert_eq!(schema.list_type_at(&["spec", "selector"]), None);
    assert_eq!(schema.map_type_at(&["spec", "selector"]), Some(MapType::Atomic));
    assert_eq!(schema.map_type_at(&["spec", "labels", "any"]), Some(MapType::Granular));
    assert_eq!(
        schema.node_at(&["spec", "labels", "*", "x"]).map(|n| n.type_.as_str()),
        Some("string")
    );
    assert_eq!(
        schema.node_at(&["spec", "ports", "0", "port"]).map(|n| n.type_.as_str()),
        Some("integer")
    );
    assert!(schema.node_at(&["spec", "missing"]).is_none());
}

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

fn structural(schema: Value) -> Vec<String> {
    texts(structural_errors(&schema, P))
}

#[test]
fn structural_errors_should_accept_a_structural_schema() {
    let schema = json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
            "spec": {
                "type": "object",
                "required": ["replicas"],
                "anyOf": [{"required": ["image"]}, {"required": ["command"]}],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "image": {"type": "string", "pattern": "^[a-z/:.]+$"},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "x-kubernetes-preserve-unknown-fields": true},
                    "raw": {"x-kubernetes-preserve-unknown-fields": true}
                }
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    });
    assert_eq!(structural(schema), Vec::<String>::new());
}

#[test]
fn structural_errors_should_report_kube_messages() {
    let spec = |s: Value| json!({"type": "object", "properties": {"spec": s}});
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "a field without a type",
            spec(json!({})),
            vec![format!(
                "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
            )],
        ),
        (
            "items without a type",
            spec(json!({"type": "array", "items": {}})),
            vec![format!(
                "{P}.properties[spec].items.type: Required value: must not be empty for specified array items"
            )],
        ),
        (
            "an array without items",
            spec(json!({"type": "array"})),
            vec![format!("{P}.properties[spec].items: Required value: must be specified")],
        ),
        (
            "a root that is no object",
            json!({"type": "string"}),
            vec![format!(r#"{P}.type: Invalid value: "string": must be object at the root"#)],
        ),
        (
            "a root without a type",
            json!({}),
            vec![format!("{P}.type: Required value: must not be empty at the root")],
        ),
        (
            "additionalProperties at the root",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![format!("{P}.additionalProperties: Forbidden: must not be used at the root")],
        ),
        (
            "a type under anyOf",
            spec(json!({"type": "object", "properties": {"a": {"type": "string"}},
                        "anyOf": [{"properties": {"a": {"type": "string"}}}]})),
            vec![format!(
                "{P}.properties[spec].anyOf[0].properties[a].type: Forbidden: must be empty to be structural"
            )],
        ),
        (
            "what junctors may not say, sorted",
            spec(
                json!({"type": "object", "allOf": [{"description": "d", "nullable": true, "default": 1,
                        "x-kubernetes-list-type": "set", "title": "t"}]}),
            ),
            vec![
                format!(
                    "{P}.properties[spec].allOf[0].default: Forbidden: must be undefined to be structural"
                ),
                format!(
                    "{P}.properties[spec].allOf[0].description: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.properties[spec].allOf[0].nullable: Forbidden: must be false to be structural"
                ),
                format!(
                    "{P}.properties[spec].allOf[0].title: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.properties[spec].allOf[0].x-kubernetes-list-type: Forbidden: must be undefined to be structural"
                ),
                // The per-node rules look under junctors too.
                format!(
                    "{P}.properties[spec].allOf[0].type: Required value: must be array if x-kubernetes-list-type is specified"
                ),
            ],
        ),
        (
            "a junctor naming an undeclared property",
            json!({"type": "object", "anyOf": [{"properties": {"foo": {"maxLength": 3}}}], "properties": {}}),
            vec![format!(
                "{P}.properties[foo]: Required value: because it is defined in {P}.anyOf[0].properties[foo]"
            )],
        ),
        (
            "int-or-string's anyOf may name types",
            spec(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                        "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"maxLength": 5}]}}})),
            vec![],
        ),
        (
            "anyOf with other types is not int-or-string's",
            spec(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                        "anyOf": [{"type": "integer"}, {"type": "boolean"}]}}})),
            vec![
                format!(
                    "{P}.properties[spec].properties[p].anyOf[0].type: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.properties[spec].properties[p].anyOf[1].type: Forbidden: must be empty to be structural"
                ),
            ],
        ),
        (
            "int-or-string with preserve-unknown-fields",
            spec(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                        "x-kubernetes-preserve-unknown-fields": true}}})),
            vec![format!(
                "{P}.properties[spec].properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
            )],
        ),
        (
            "an embedded resource without a type or properties",
            spec(
                json!({"type": "object", "properties": {"t": {"x-kubernetes-embedded-resource": true}}}),
            ),
            vec![
                format!(
                    "{P}.properties[spec].properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
                ),
                format!(
                    "{P}.properties[spec].properties[t].type: Required value: must be object if x-kubernetes-embedded-resource is true"
                ),
            ],
        ),
        (
            "an embedded resource's kind must be a string",
            spec(
                json!({"type": "object", "properties": {"t": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"kind": {"type": "integer"}}}}}),
            ),
            vec![format!(
                r#"{P}.properties[spec].properties[t].properties[kind].type: Invalid value: "integer": must be string"#
            )],
        ),
        (
            "metadata may only restrict name and generateName",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "labels": {"type": "object"}}}}}),
            vec![format!(
                "{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            )],
        ),
        (
            "metadata in a junctor",
            json!({"type": "object", "properties": {"metadata": {"type": "object"}},
                   "anyOf": [{"properties": {"metadata": {}}}]}),
            vec![format!(
                "{P}.anyOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"
            )],
        ),
        (
            "an invalid pattern",
            spec(json!({"type": "string", "pattern": "(a"})),
            vec![format!(
                "{P}.properties[spec].pattern: Invalid value: \"(a\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ): `(a`"
            )],
        ),
        (
            "an unknown type",
            spec(json!({"type": "foo"})),
            vec![format!(
                r#"{P}.properties[spec].type: Unsupported value: "foo": supported values: "array", "boolean", "integer", "number", "object", "string""#
            )],
        ),
        (
            "type null",
            spec(json!({"type": "null"})),
            vec![
                format!(
                    r#"{P}.properties[spec].type: Unsupported value: "null": supported values: "array", "boolean", "integer", "number", "object", "string""#
                ),
                format!(
                    "{P}.properties[spec].type: Forbidden: type cannot be set to null, use nullable as an alternative"
                ),
            ],
        ),
        (
            "$ref and friends",
            spec(
                json!({"type": "object", "$ref": "#/x", "patternProperties": {"a": {}}, "additionalItems": false}),
            ),
            vec![
                format!(
                    "{P}.properties[spec].additionalItems: Forbidden: additionalItems is not supported"
                ),
                format!(
                    "{P}.properties[spec].patternProperties: Forbidden: patternProperties is not supported"
                ),
                format!("{P}.properties[spec].$ref: Forbidden: $ref is not supported"),
            ],
        ),
        (
            "$schema alone",
            json!({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}),
            vec![format!(r#"{P}: Invalid value: "": OpenAPIV3Schema 'schema' is not supported"#)],
        ),
        (
            "uniqueItems",
            spec(json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true})),
            vec![format!(
                "{P}.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            )],
        ),
        (
            "properties with additionalProperties",
            spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
            ),
            vec![format!(
                "{P}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            )],
        ),
        (
            "preserve-unknown-fields false",
            spec(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
            vec![format!(
                "{P}.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
            )],
        ),
        (
            "a nullable root",
            json!({"type": "object", "nullable": true}),
            vec![format!("{P}.nullable: Forbidden: nullable cannot be true at the root")],
        ),
        (
            "a default in top-level metadata",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {"name": "x"}}}}),
            vec![format!(
                "{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
            )],
        ),
        (
            "a default of the wrong type",
            spec(
                json!({"type": "object", "properties": {"replicas": {"type": "integer", "default": "x"}}}),
            ),
            vec![format!(
                r#"{P}.properties[spec].properties[replicas].default: Invalid value: "string":  in body must be of type integer: "string""#
            )],
        ),
        (
            "a default breaking a bound",
            spec(
                json!({"type": "object", "properties": {"replicas": {"type": "integer", "maximum": 5, "default": 7}}}),
            ),
            vec![format!(
                "{P}.properties[spec].properties[replicas].default: Invalid value: 7:  in body should be less than or equal to 5"
            )],
        ),
        (
            "a default with unknown fields",
            spec(
                json!({"type": "object", "default": {"a": 1, "b": 2}, "properties": {"a": {"type": "integer"}}}),
            ),
            vec![format!(
                r#"{P}.properties[spec].default: Invalid value: {{"a":1,"b":2}}: must not have unknown fields"#
            )],
        ),
        (
            "a default of an embedded resource without its kind",
            spec(
                json!({"type": "object", "properties": {"t": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "x-kubernetes-preserve-unknown-fields": true, "default": {"apiVersion": "v1"}}}}),
            ),
            vec![format!("{P}.properties[spec].properties[t].default.kind: Required value")],
        ),
        (
            "a list-type on an object",
            spec(json!({"type": "object", "x-kubernetes-list-type": "set"})),
            vec![format!(
                r#"{P}.properties[spec].type: Invalid value: "object": must be array if x-kubernetes-list-type is specified"#
            )],
        ),
        (
            "an unknown list-type",
            spec(
                json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}),
            ),
            vec![format!(
                r#"{P}.properties[spec].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
            )],
        ),
        (
            "a map-type on a string",
            spec(json!({"type": "string", "x-kubernetes-map-type": "atomic"})),
            vec![format!(
                r#"{P}.properties[spec].type: Invalid value: "string": must be object if x-kubernetes-map-type is specified"#
            )],
        ),
        (
            "a map list without keys",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}),
            ),
            vec![format!(
                "{P}.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )],
        ),
        (
            "map keys without a map list",
            spec(
                json!({"type": "array", "x-kubernetes-list-map-keys": ["a"], "items": {"type": "object"}}),
            ),
            vec![format!(
                "{P}.properties[spec].x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty"
            )],
        ),
        (
            "map keys that are no properties, or not scalars",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"],
                        "items": {"type": "object", "required": ["a"], "properties": {"a": {"type": "object"}}}}),
            ),
            vec![
                format!(
                    r#"{P}.properties[spec].items.properties[a].type: Invalid value: "object": must be a scalar type if parent array's x-kubernetes-list-type is map"#
                ),
                format!(
                    r#"{P}.properties[spec].x-kubernetes-list-map-keys: Invalid value: ["a","b"]: entries must all be names of item properties"#
                ),
            ],
        ),
        (
            "a map key neither required nor defaulted",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string", "nullable": true}}}}),
            ),
            vec![
                format!(
                    "{P}.properties[spec].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
                ),
                format!(
                    "{P}.properties[spec].items.properties[name].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable"
                ),
            ],
        ),
        (
            "a set of granular objects",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            ),
            vec![format!(
                r#"{P}.properties[spec].items.x-kubernetes-map-type: Invalid value: "null": must be atomic as item of a list with x-kubernetes-list-type=set"#
            )],
        ),
        (
            "a set of nullable items",
            spec(
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string", "nullable": true}}),
            ),
            vec![format!(
                "{P}.properties[spec].items.nullable: Forbidden: cannot be nullable when x-kubernetes-list-type is set"
            )],
        ),
    ];
    for (name, schema, want) in cases {
        assert_eq!(structural(schema), want, "{name}");
    }
}

#[test]
fn status_root_errors_should_allow_only_what_survives_cutting_status_out() {
    assert!(
        status_root_errors(&json!({"type": "object", "properties": {}, "required": ["spec"]}), P)
            .is_empty()
    );
    assert_eq!(
        texts(status_root_errors(&json!({"type": "string"}), P)),
        [format!(
            r#"{P}.type: Invalid value: "string": only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#
        )]
    );
    let errs =
        texts(status_root_errors(&json!({"type": "object", "anyOf": [{"required": ["a"]}]}), P));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].ends_with("XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled"), "{}", errs[0]);
}

#[test]
fn schema_should_be_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Schema>();
}

/// kube's own pruning cases (`pruning/algorithm_test.go`), pruned as a value, not a resource.
#[test]
fn prune_should_match_kube_test_cases() {
    let cases = [
        (
            json!({"properties": {"a": {}, "c": {"additionalProperties": {"type": "integer"}}}}),
            json!({"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1}}}),
            json!({"a": 1, "c": {"a": 1, "b": 2, "c": {}}}),
            vec!["b", "c.c.a"],
        ),
        (
            json!({"properties": {"a": {}, "c": {"additionalProperties": false}}}),
            json!({"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1, "apiVersion": "unknown"}}}),
            json!({"a": 1, "c": {"a": 1, "b": 2, "c": {}}}),
            vec!["b", "c.c.a", "c.c.apiVersion"],
        ),
        (
            json!({"type": "object", "properties": {"pruned": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object"}}}}}),
            json!({"unspecified": "bar", "pruned": {"apiVersion": "foo/v1", "kind": "Foo", "unspecified": "bar",
                "metadata": {"name": "instance", "unspecified": "bar"}, "spec": {"unspecified": "bar"}}}),
            json!({"pruned": {"apiVersion": "foo/v1", "kind": "Foo",
                "metadata": {"name": "instance", "unspecified": "bar"}, "spec": {}}}),
            vec!["pruned.spec.unspecified", "pruned.unspecified", "unspecified"],
        ),
    ];
    for (schema, mut obj, want, want_paths) in cases {
        let paths = prune::prune(&mut obj, &Node::parse(&schema), false, true, false);
        assert_eq!(obj, want);
        assert_eq!(paths, want_paths);
    }
}

/// kube's own defaulting cases (`defaulting/algorithm_test.go`).
#[test]
fn default_should_match_kube_test_cases() {
    let cases = [
        (
            json!({"nullable": true, "items": {"properties": {"a": {"default": "A"}}}}),
            json!([null]),
            json!([null]),
        ),
        (json!({"items": {"default": "A"}}), json!([null]), json!(["A"])),
        (
            json!({"properties": {"a": {"nullable": true, "default": "A"}}}),
            json!({"a": null}),
            json!({"a": null}),
        ),
        (json!({"properties": {"a": {"default": "A"}}}), json!({"a": null}), json!({"a": "A"})),
        (
            json!({"additionalProperties": {"nullable": true, "default": "A"}}),
            json!({"a": null}),
            json!({"a": null}),
        ),
        (json!({"additionalProperties": {"default": "A"}}), json!({"a": null}), json!({"a": "A"})),
        (json!({"additionalProperties": true}), json!({"a": null}), json!({"a": null})),
        (json!({"properties": {"a": {"type": "string"}}}), json!({"a": null}), json!({"a": null})),
    ];
    for (schema, mut obj, want) in cases {
        defaults::apply(&mut obj, &Node::parse(&schema));
        assert_eq!(obj, want, "{schema}");
    }
    // Before defaulting, kube drops the nulls no default will replace.
    let schema = Node::parse(
        &json!({"properties": {"a": {"type": "string"}, "b": {"x-kubernetes-preserve-unknown-fields": true}}}),
    );
    let mut obj = json!({"a": null, "b": {"c": null}, "d": null});
    defaults::prune_nulls(&mut obj, Some(&schema));
    assert_eq!(obj, json!({"b": {"c": null}, "d": null}));
}
