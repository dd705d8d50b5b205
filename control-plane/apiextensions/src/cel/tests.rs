//! Tables of validation rules with kube's messages: compilation and the CRD's checks of a
//! rule, estimated cost, evaluation (messages, reasons, field paths, types), transition
//! rules, cost limits and ratcheting.

use serde_json::{Value, json};

use super::*;

const PATH: &str = "spec.versions[0].schema.openAPIV3Schema";

/// A custom resource's schema with `spec` as given.
fn with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

/// A `spec` of `props` with `rules` (each a rule, or a whole `x-kubernetes-validations` entry).
fn spec_with(props: Value, rules: &[Value]) -> Value {
    let rules: Vec<Value> =
        rules.iter().map(|r| if r.is_string() { json!({"rule": r}) } else { r.clone() }).collect();
    json!({"type": "object", "properties": props, "x-kubernetes-validations": rules})
}

fn scale_props() -> Value {
    json!({
        "replicas": {"type": "integer"},
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "name": {"type": "string"},
    })
}

fn compile_errors(schema: &Value) -> Vec<String> {
    match Rules::compile(schema, PATH) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn rules(schema: &Value) -> Rules {
    match Rules::compile(schema, PATH) {
        Ok(r) => r,
        Err(e) => panic!("{schema}: {e:?}"),
    }
}

/// Rules compiled whatever their estimated cost (kube's runtime validator never looks).
fn rules_unchecked(schema: &Value) -> Rules {
    compile_with(schema, PATH, CompileOptions { cel: false, per_expression_cost: false }).0
}

fn errors(rules: &Rules, obj: &Value, old: Option<&Value>) -> Vec<String> {
    rules.validate(obj, old).iter().map(ToString::to_string).collect()
}

const RULE_AT: &str =
    "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]";

#[test]
fn compile_should_report_kube_compilation_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "self.foo == 1",
            "rule: Invalid value: {\"Rule\":\"self.foo == 1\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: compilation failed: ERROR: <input>:1:5: undefined field 'foo'\n | self.foo == 1\n | ....^",
        ),
        (
            "has(self.replicas.x) || foo",
            "rule: Invalid value: {\"Rule\":\"has(self.replicas.x) || foo\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: compilation failed: ERROR: <input>:1:25: undeclared reference to 'foo' (in container '')\n | has(self.replicas.x) || foo\n | ........................^",
        ),
        (
            "self.replicas == 'a'",
            "rule: Invalid value: {\"Rule\":\"self.replicas == 'a'\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: compilation failed: ERROR: <input>:1:15: found no matching overload for '_==_' applied to '(int, string)'\n | self.replicas == 'a'\n | ..............^",
        ),
        (
            "self.replicas",
            "rule: Invalid value: {\"Rule\":\"self.replicas\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: cel expression must evaluate to a bool",
        ),
        (
            "self.name < 3",
            "rule: Invalid value: {\"Rule\":\"self.name \\u003c 3\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: compilation failed: ERROR: <input>:1:11: found no matching overload for '_<_' applied to '(string, int)'\n | self.name < 3\n | ..........^",
        ),
    ];
    for (rule, want) in cases {
        let schema = with_spec(spec_with(scale_props(), &[json!(rule)]));
        assert_eq!(compile_errors(&schema), vec![format!("{RULE_AT}.{want}")], "{rule}");
    }
    // A syntax error is cel-go's parser's.
    let schema = with_spec(spec_with(scale_props(), &[json!("self.replicas >")]));
    let errs = compile_errors(&schema);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("compilation failed: ERROR: <input>:1:"), "{errs:?}");
}

#[test]
fn compile_should_accept_rules_kube_accepts() {
    let ok = [
        "self.replicas <= self.maxReplicas",
        "self.minReplicas <= self.replicas",
        "self.name.startsWith('a')",
        "has(self.name) && self.name.size() < 64",
        "!has(self.minReplicas) || self.minReplicas >= 0",
        "self.replicas + 1 > 0 && double(self.replicas) < 1.5e3",
        "self.name.matches('^[a-z]+$') ? self.replicas > 0 : true",
        "[1, 2].exists(x, x == self.replicas)",
        "self.?name.orValue('') != 'x'",
    ];
    for rule in ok {
        let schema = with_spec(spec_with(scale_props(), &[json!(rule)]));
        assert_eq!(compile_errors(&schema), Vec::<String>::new(), "{rule}");
    }
    let list = json!({"type": "array", "maxItems": 100, "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self.all(x, x.size() < 10)"}]});
    assert_eq!(
        compile_errors(&with_spec(spec_with(json!({"list": list}), &[]))),
        Vec::<String>::new()
    );
}

#[test]
fn compile_should_check_the_fields_of_a_rule() {
    let entry = |e: Value| with_spec(spec_with(scale_props(), &[e]));
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"rule": " "}),
            vec![format!("{RULE_AT}.rule: Required value: rule is not specified")],
        ),
        (
            json!({"rule": "true", "message": "two\nlines"}),
            vec![format!(
                "{RULE_AT}.message: Invalid value: \"two\\nlines\": must not contain line breaks"
            )],
        ),
        (
            json!({"rule": "true", "message": "  "}),
            vec![format!(
                "{RULE_AT}.message: Invalid value: \"  \": must be non-empty if specified"
            )],
        ),
        (
            json!({"rule": "true ||\nfalse"}),
            vec![format!(
                "{RULE_AT}.message: Required value: message must be specified if rule contains line breaks"
            )],
        ),
        (
            json!({"rule": "true", "reason": "FieldValueNotFound"}),
            vec![format!(
                "{RULE_AT}.reason: Unsupported value: \"FieldValueNotFound\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
            )],
        ),
        (
            json!({"rule": "true", "fieldPath": ".nope"}),
            vec![format!("{RULE_AT}.fieldPath: Invalid value: \".nope\": must be a valid path")],
        ),
        (
            json!({"rule": "true", "messageExpression": " "}),
            vec![format!(
                "{RULE_AT}.messageExpression: Required value: messageExpression must be non-empty if specified"
            )],
        ),
        (
            json!({"rule": "true", "messageExpression": "self.replicas"}),
            vec![format!(
                "{RULE_AT}.messageExpression: Invalid value: {{\"Rule\":\"true\",\"Message\":\"\",\"MessageExpression\":\"self.replicas\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}}: messageExpression must evaluate to a string"
            )],
        ),
        (
            json!({"rule": "true", "messageExpression": "self.nope"}),
            vec![format!(
                "{RULE_AT}.messageExpression: Invalid value: {{\"Rule\":\"true\",\"Message\":\"\",\"MessageExpression\":\"self.nope\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}}: messageExpression compilation failed: ERROR: <input>:1:5: undefined field 'nope'\n | self.nope\n | ....^"
            )],
        ),
        (
            json!({"rule": "self.replicas > 0", "optionalOldSelf": false}),
            vec![format!(
                "{RULE_AT}.optionalOldSelf: Invalid value: false: may not be set if oldSelf is not used in rule"
            )],
        ),
        (json!({"rule": "self == oldSelf", "optionalOldSelf": true}), vec![]),
        (
            json!({"rule": "true", "fieldPath": ".replicas", "reason": "FieldValueForbidden"}),
            vec![],
        ),
    ];
    for (entry_value, want) in cases {
        assert_eq!(compile_errors(&entry(entry_value.clone())), want, "{entry_value}");
    }
}

#[test]
fn compile_should_refuse_old_self_where_old_values_cannot_be_found() {
    let list = |list_type: &str| {
        let mut l = json!({"type": "array", "maxItems": 10, "items": {
            "type": "object", "required": ["k"], "properties": {"k": {"type": "string", "maxLength": 5}},
            "x-kubernetes-validations": [{"rule": "self.k == oldSelf.k"}]}});
        if !list_type.is_empty() {
            l["x-kubernetes-list-type"] = json!(list_type);
            l["x-kubernetes-list-map-keys"] = json!(["k"]);
        }
        with_spec(spec_with(json!({"list": l}), &[]))
    };
    assert_eq!(compile_errors(&list("map")), Vec::<String>::new());
    assert_eq!(
        compile_errors(&list("")),
        vec![format!(
            "{PATH}.properties[spec].properties[list].items.x-kubernetes-validations[0].rule: Invalid value: \"self.k == oldSelf.k\": oldSelf cannot be used on the uncorrelatable portion of the schema within {PATH}.properties[spec].properties[list]"
        )]
    );
}

#[test]
fn compile_should_refuse_rules_whose_estimated_cost_is_unbounded() {
    let quadratic = json!({"type": "array", "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x != y))"}]});
    let errs = compile_errors(&with_spec(spec_with(json!({"list": quadratic}), &[])));
    let rule = format!("{PATH}.properties[spec].properties[list].x-kubernetes-validations[0].rule");
    assert_eq!(
        errs,
        vec![
            format!(
                "{rule}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
            ),
            format!(
                "{rule}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema"
            ),
            format!(
                "{PATH}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
            ),
        ]
    );
    // Bounded, the same rule is fine.
    let bounded = json!({"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 64},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x != y))"}]});
    assert_eq!(
        compile_errors(&with_spec(spec_with(json!({"list": bounded}), &[]))),
        Vec::<String>::new()
    );
}

#[test]
fn compile_should_add_up_the_cost_of_every_rule() {
    // Each rule runs once per item of an unbounded list: a few units times ~1M items.
    let rules: Vec<Value> =
        (0..20).map(|i| json!({"rule": format!("self.a + {i} != self.b")})).collect();
    let items = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "x-kubernetes-validations": rules});
    let schema = with_spec(spec_with(json!({"list": {"type": "array", "items": items}}), &[]));
    let errs = compile_errors(&schema);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    let at = |i: usize| {
        format!("{PATH}.properties[spec].properties[list].items.x-kubernetes-validations[{i}].rule")
    };
    assert_eq!(
        errs[0],
        format!(
            "{}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            at(0)
        )
    );
    assert!(errs[4].starts_with(&format!("{PATH}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of 1.")), "{}", errs[4]);
    // With a bound on the list, the same rules fit.
    let mut bounded = schema.clone();
    bounded["properties"]["spec"]["properties"]["list"]["maxItems"] = json!(1000);
    assert_eq!(compile_errors(&bounded), Vec::<String>::new());
}

fn scale_rules() -> Rules {
    rules(&with_spec(spec_with(
        scale_props(),
        &[
            json!({"rule": "self.replicas <= self.maxReplicas", "message": "replicas must be at most maxReplicas"}),
            json!("self.minReplicas <= self.replicas"),
            json!({"rule": "self.name != 'forbidden'", "reason": "FieldValueForbidden", "message": "name is forbidden", "fieldPath": ".name"}),
            json!({"rule": "self.name != 'required'", "reason": "FieldValueRequired", "message": "a name is required"}),
            json!({"rule": "self.name != 'duplicate'", "reason": "FieldValueDuplicate"}),
            json!({"rule": "self.replicas != 13", "messageExpression": "'replicas ' + string(self.replicas) + ' is unlucky'"}),
            json!({"rule": "self.replicas != 14", "message": "fallback", "messageExpression": "'x' + string(10 / (self.replicas - 14))"}),
            json!({"rule": "self.replicas != 15", "message": "fallback", "messageExpression": "self.name"}),
        ],
    )))
}

#[test]
fn validate_should_report_failures_as_kube_does() {
    let rules = scale_rules();
    let spec = |v: Value| json!({"spec": v});
    let base = json!({"replicas": 3, "minReplicas": 1, "maxReplicas": 20, "name": "web"});
    let with = |k: &str, v: Value| {
        let mut s = base.clone();
        s[k] = v;
        spec(s)
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (spec(base.clone()), vec![]),
        (
            with("replicas", json!(21)),
            vec!["spec: Invalid value: \"object\": replicas must be at most maxReplicas"],
        ),
        (
            with("minReplicas", json!(4)),
            vec!["spec: Invalid value: \"object\": failed rule: self.minReplicas <= self.replicas"],
        ),
        (with("name", json!("forbidden")), vec!["spec.name: Forbidden: name is forbidden"]),
        (with("name", json!("required")), vec!["spec: Required value: a name is required"]),
        (with("name", json!("duplicate")), vec!["spec: Duplicate value: \"object\""]),
        (
            with("replicas", json!(13)),
            vec!["spec: Invalid value: \"object\": replicas 13 is unlucky"],
        ),
        // A messageExpression that fails to evaluate, or is empty, leaves the message.
        (with("replicas", json!(14)), vec!["spec: Invalid value: \"object\": fallback"]),
        (
            json!({"spec": {"replicas": 15, "minReplicas": 1, "maxReplicas": 20, "name": " "}}),
            vec!["spec: Invalid value: \"object\": fallback"],
        ),
        // A missing field is a runtime error, in cel-go's words.
        (
            spec(json!({"replicas": 3, "maxReplicas": 5, "name": "web"})),
            vec![
                "spec: Invalid value: \"object\": no such key: minReplicas evaluating rule: self.minReplicas <= self.replicas",
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&rules, &obj, None), want, "{obj}");
    }
}

#[test]
fn validate_should_give_items_and_values_their_paths() {
    let schema = with_spec(spec_with(
        json!({
            "list": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 10,
                "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "bad item"}]}},
            "map": {"type": "object", "maxProperties": 10, "additionalProperties": {"type": "integer",
                "x-kubernetes-validations": [{"rule": "self >= 0"}]}},
            "int-or-string": {"x-kubernetes-int-or-string": true,
                "x-kubernetes-validations": [{"rule": "type(self) == int ? self < 10 : self.endsWith('%')"}]},
        }),
        &[],
    ));
    let rules = rules(&schema);
    let obj = json!({"spec": {
        "list": ["ok", "fine", "bad"],
        "map": {"a": 1, "b.c": -1},
        "int-or-string": 12,
    }});
    assert_eq!(
        errors(&rules, &obj, None),
        vec![
            "spec.int-or-string: Invalid value: \"\": failed rule: type(self) == int ? self < 10 : self.endsWith('%')",
            "spec.list[2]: Invalid value: \"string\": bad item",
            "spec.map[b.c]: Invalid value: \"integer\": failed rule: self >= 0",
        ]
    );
    let ok = json!({"spec": {"list": [], "map": {}, "int-or-string": "50%"}});
    assert_eq!(errors(&rules, &ok, None), Vec::<String>::new());
}

#[test]
fn validate_should_type_values_by_their_schema() {
    let props = json!({
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "data": {"type": "string", "format": "byte"},
        "timeout": {"type": "string", "format": "duration"},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "flag": {"type": "boolean"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "escaped-name": {"type": "string"},
        "namespace": {"type": "string"},
    });
    let rules_of = |rule: &str| rules(&with_spec(spec_with(props.clone(), &[json!(rule)])));
    let obj = json!({"spec": {
        "count": 2, "ratio": 1, "data": "aGVsbG8=", "timeout": "1h30m", "at": "2024-05-01T10:00:00Z",
        "day": "2024-05-01", "flag": true, "free": {"x": 1}, "escaped-name": "e", "namespace": "ns",
    }});
    for rule in [
        "self.count + 1 == 3",
        "self.ratio == 1.0",
        "self.data == b'hello'",
        "self.timeout == duration('90m')",
        "self.at > timestamp('2024-01-01T00:00:00Z')",
        "self.day == timestamp('2024-05-01T00:00:00Z')",
        "self.flag",
        "self.free == {}",
        "self.escaped__dash__name == 'e'",
        "self.__namespace__ == 'ns'",
    ] {
        assert_eq!(errors(&rules_of(rule), &obj, None), Vec::<String>::new(), "{rule}");
    }
}

#[test]
fn validate_should_expose_only_type_and_name_at_resource_roots() {
    let schema = json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a') && self.kind == 'Widget'"}],
        "properties": {
            "spec": {"type": "object", "properties": {
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true,
                    "x-kubernetes-validations": [{"rule": "self.apiVersion == 'v1' && has(self.metadata.generateName)"}]},
            }},
        },
    });
    let rules = rules(&schema);
    let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "b", "labels": {"x": "y"}},
        "spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}}}});
    assert_eq!(
        errors(&rules, &obj, None),
        vec![
            "Invalid value: \"object\": failed rule: self.metadata.name.startsWith('a') && self.kind == 'Widget'"
        ]
    );
    let labels = json!({"type": "object", "x-kubernetes-validations": [{"rule": "has(self.metadata.labels)"}]});
    assert_eq!(
        compile_errors(&labels),
        vec![format!(
            "{PATH}.x-kubernetes-validations[0].rule: Invalid value: {{\"Rule\":\"has(self.metadata.labels)\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}}: compilation failed: ERROR: <input>:1:4: undefined field 'labels'\n | has(self.metadata.labels)\n | ...^"
        )]
    );
}

#[test]
fn transition_rules_should_run_only_where_an_old_value_is_found() {
    let schema = with_spec(spec_with(
        json!({
            "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
            "ports": {"type": "array", "maxItems": 10, "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "maxLength": 10}, "port": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.port >= oldSelf.port", "message": "port may only grow"}]}},
            "limits": {"type": "object", "maxProperties": 10, "additionalProperties": {"type": "integer",
                "x-kubernetes-validations": [{"rule": "self >= oldSelf"}]}},
            "version": {"type": "integer", "x-kubernetes-validations": [{
                "rule": "!oldSelf.hasValue() || self > oldSelf.value()", "optionalOldSelf": true,
                "message": "version must increase"}]},
        }),
        &[],
    ));
    let rules = rules(&schema);
    let old = json!({"spec": {"mode": "a", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
        "limits": {"cpu": 2}, "version": 3}});
    // On create, only the optionalOldSelf rule runs, with no old value.
    assert_eq!(errors(&rules, &old, None), Vec::<String>::new());
    let new = json!({"spec": {"mode": "b",
        "ports": [{"name": "https", "port": 442}, {"name": "admin", "port": 1}, {"name": "http", "port": 81}],
        "limits": {"cpu": 1, "memory": 0}, "version": 3}});
    assert_eq!(
        errors(&rules, &new, Some(&old)),
        vec![
            "spec.limits[cpu]: Invalid value: \"integer\": failed rule: self >= oldSelf",
            "spec.mode: Invalid value: \"string\": Value is immutable",
            "spec.ports[0]: Invalid value: \"object\": port may only grow",
            "spec.version: Invalid value: \"integer\": version must increase",
        ]
    );
    let mut fine = new.clone();
    fine["spec"]["mode"] = json!("a");
    fine["spec"]["ports"][0]["port"] = json!(443);
    fine["spec"]["limits"]["cpu"] = json!(2);
    fine["spec"]["version"] = json!(4);
    assert_eq!(errors(&rules, &fine, Some(&old)), Vec::<String>::new());
}

#[test]
fn validate_should_ratchet_errors_of_unchanged_values() {
    let schema = with_spec(spec_with(
        json!({"a": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 10"}]},
               "b": {"type": "integer"}}),
        &[],
    ));
    let rules = rules(&schema);
    let old = json!({"spec": {"a": 20, "b": 1}});
    let unchanged_a = json!({"spec": {"a": 20, "b": 2}});
    let outcome = rules.check(&unchanged_a, Some(&old));
    assert_eq!(outcome.errors, Vec::new());
    assert_eq!(
        outcome.warnings,
        vec!["spec.a: Invalid value: \"integer\": failed rule: self < 10"]
    );
    let changed_a = json!({"spec": {"a": 21, "b": 1}});
    assert_eq!(
        errors(&rules, &changed_a, Some(&old)),
        vec!["spec.a: Invalid value: \"integer\": failed rule: self < 10"]
    );
}

#[test]
fn validate_should_stop_at_the_per_call_cost_limit() {
    let list = json!({"type": "array", "items": {"type": "integer"},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, self.all(z, x + y + z >= 0)))"}]});
    let schema = with_spec(spec_with(
        json!({"list": list, "other": {"type": "integer",
        "x-kubernetes-validations": [{"rule": "self > 100"}]}}),
        &[],
    ));
    // kube refuses such a rule in a CRD; its runtime limit holds all the same.
    assert!(Rules::compile(&schema, PATH).is_err());
    let rules = rules_unchecked(&schema);
    let obj = json!({"spec": {"list": (0..100).collect::<Vec<i32>>(), "other": 1}});
    assert_eq!(
        errors(&rules, &obj, None),
        vec![
            "spec.list: Invalid value: \"array\": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: self.all(x, self.all(y, self.all(z, x + y + z >= 0)))"
        ]
    );
}

#[test]
fn validate_should_share_one_budget_among_all_rules() {
    // Each item's rule costs a bit less than the per-call limit; a dozen exhaust the budget.
    let items = json!({"type": "array", "items": {"type": "integer"},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, self.all(z, x + y + z >= 0)))"}]});
    let schema = with_spec(spec_with(json!({"lists": {"type": "array", "items": items}}), &[]));
    let rules = rules_unchecked(&schema);
    let list: Vec<i32> = (0..40).collect();
    let obj = json!({"spec": {"lists": vec![list; 20]}});
    let errs = errors(&rules, &obj, None);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with(": Invalid value: \"array\": validation failed due to running out of cost budget, no further validation rules will be run"),
        "{errs:?}"
    );
    assert!(errs[0].starts_with("spec.lists["), "{errs:?}");
}

#[test]
fn rules_should_be_shareable_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Rules>();
    assert!(rules(&with_spec(json!({"type": "object"}))).is_empty());
    assert!(!scale_rules().is_empty());
}
