//! Tables of CRD validation cases with kube's messages, accepted names with conflicts,
//! version priority, JSONPath, and the typed view.

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::*;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "selector": {"type": "string"},
                            "mode": {"type": "string"},
                            "template": {"type": "object", "properties": {"image": {"type": "string"}}},
                        }},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                    },
                }},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
            }],
        },
    })
}

/// `crd()` with `value` set at each JSON pointer (`null` removes).
fn with(changes: &[(&str, Value)]) -> Value {
    let mut obj = crd();
    for (pointer, value) in changes {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        let Some(target) = obj.pointer_mut(parent) else { panic!("no {parent}") };
        match (target, value) {
            (Value::Object(m), Value::Null) => {
                m.remove(key);
            }
            (Value::Object(m), v) => {
                m.insert(key.to_string(), v.clone());
            }
            (Value::Array(a), v) => a[key.parse::<usize>().unwrap_or(0)] = v.clone(),
            _ => panic!("cannot set {pointer}"),
        }
    }
    obj
}

fn errors(crd: &Value, old: Option<&Value>) -> Vec<String> {
    validate_crd(crd, old).iter().map(ToString::to_string).collect()
}

const LABEL_1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn validate_crd_should_accept_a_valid_crd() {
    assert_eq!(errors(&crd(), None), Vec::<String>::new());
    // v1's defaults stand in for what is missing.
    let defaulted =
        with(&[("/spec/names/singular", Value::Null), ("/spec/names/listKind", Value::Null)]);
    assert_eq!(errors(&defaulted, None), Vec::<String>::new());
}

#[test]
fn validate_crd_should_report_names_and_group_as_kube_does() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            with(&[("/metadata/name", json!("gadgets.example.com"))]),
            vec![r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#.into()],
        ),
        (
            with(&[("/metadata/name", Value::Null)]),
            vec!["metadata.name: Required value: name or generateName is required".into()],
        ),
        (
            with(&[("/metadata/namespace", json!("default"))]),
            vec!["metadata.namespace: Forbidden: not allowed on this type".into()],
        ),
        (
            with(&[("/spec/group", json!("example")), ("/metadata/name", json!("widgets.example"))]),
            vec![r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#.into()],
        ),
        (
            with(&[("/spec/group", json!("Example.com")), ("/metadata/name", json!("widgets.Example.com"))]),
            vec![
                format!("metadata.name: Invalid value: \"widgets.Example.com\": {SUBDOMAIN}"),
                format!("spec.group: Invalid value: \"Example.com\": {SUBDOMAIN}"),
            ],
        ),
        (with(&[("/spec/group", json!(""))]), vec![
            r#"metadata.name: Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group"#.into(),
            "spec.group: Required value".into(),
        ]),
        (
            with(&[("/spec/scope", json!("Global"))]),
            vec![r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#.into()],
        ),
        (
            with(&[("/spec/names/shortNames", json!(["w d"]))]),
            vec![format!("spec.names.shortNames[0]: Invalid value: \"w d\": {LABEL_1035}")],
        ),
        (
            with(&[("/spec/names/kind", json!("Wid_get"))]),
            vec![format!("spec.names.kind: Invalid value: \"Wid_get\": may have mixed case, but should otherwise match: {LABEL_1035}")],
        ),
        (
            with(&[("/spec/names/listKind", json!("Widget"))]),
            vec![r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#.into()],
        ),
        (
            with(&[("/spec/names/categories", json!(["all", "Mine"]))]),
            vec![format!("spec.names.categories[1]: Invalid value: \"Mine\": {LABEL_1035}")],
        ),
        (
            with(&[("/spec/names/kind", Value::Null), ("/spec/names/listKind", Value::Null)]),
            vec!["spec.names.kind: Required value".into(), "spec.names.listKind: Required value".into()],
        ),
        (
            with(&[("/spec/group", json!("widgets.k8s.io")), ("/metadata/name", json!("widgets.widgets.k8s.io"))]),
            vec![r#"metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111"#.into()],
        ),
        (
            with(&[
                ("/spec/group", json!("widgets.k8s.io")),
                ("/metadata/name", json!("widgets.widgets.k8s.io")),
                ("/metadata/annotations", json!({"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"})),
            ]),
            vec![],
        ),
        (
            with(&[("/spec/preserveUnknownFields", json!(true))]),
            vec!["spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead".into()],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{}", obj["spec"]);
    }
}

#[test]
fn validate_crd_should_check_versions() {
    let v1 = crd()["spec"]["versions"][0].clone();
    let mut v2 = v1.clone();
    v2["name"] = json!("v2");
    let detail = |crd: &Value| -> Vec<(String, String)> {
        validate_crd(crd, None).into_iter().map(|e| (e.field, e.detail)).collect()
    };
    let pair = |f: &str, d: &str| (f.to_string(), d.to_string());
    assert_eq!(
        detail(&with(&[("/spec/versions", json!([v1, v2]))])),
        vec![
            pair("spec.versions", "must have exactly one version marked as storage version"),
            // As kube's registry: only the first storage version is recorded as stored.
            pair("status.storedVersions", "must have the storage version v2"),
        ]
    );
    assert_eq!(
        detail(&with(&[("/spec/versions", json!([v1, v1]))])),
        vec![
            pair("spec.versions", "must contain unique version names"),
            pair("spec.versions", "must have exactly one version marked as storage version"),
        ]
    );
    assert_eq!(
        detail(&with(&[("/spec/versions", json!([]))])),
        vec![
            pair("spec.versions", "must have exactly one version marked as storage version"),
            pair("status.storedVersions", "must have at least one stored version"),
        ]
    );
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            with(&[("/spec/versions/0/name", json!("V1"))]),
            vec![format!("spec.versions[0].name: Invalid value: \"V1\": {LABEL_1035}")],
        ),
        (
            with(&[("/spec/versions/0/schema", Value::Null)]),
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value".into()],
        ),
        (
            with(&[("/spec/versions/0/deprecationWarning", json!("old"))]),
            vec![r#"spec.versions[0].deprecationWarning: Invalid value: "old": can only be set for deprecated versions"#.into()],
        ),
        (
            with(&[("/spec/versions/0/deprecated", json!(true)), ("/spec/versions/0/deprecationWarning", json!("tab\there"))]),
            vec![r#"spec.versions[0].deprecationWarning: Invalid value: "tab\there": must only contain printable UTF-8 characters; control character found at index 3"#.into()],
        ),
        (
            with(&[("/spec/versions/0/deprecated", json!(true)), ("/spec/versions/0/deprecationWarning", json!("use v2"))]),
            vec![],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{}", obj["spec"]["versions"]);
    }
}

#[test]
fn validate_crd_should_compile_each_versions_rules() {
    let schema_path = "spec.versions[0].schema.openAPIV3Schema";
    let crd = with(&[(
        "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-validations",
        json!([{"rule": "self.replicas > self.nope"}]),
    )]);
    assert_eq!(
        errors(&crd, None),
        vec![format!(
            "{schema_path}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: {{\"Rule\":\"self.replicas \\u003e self.nope\",\"Message\":\"\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}}: compilation failed: ERROR: <input>:1:21: undefined field 'nope'\n | self.replicas > self.nope\n | ....................^"
        )]
    );
    let ok = with(&[(
        "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-validations",
        json!([{"rule": "self.replicas >= 0", "message": "replicas must not be negative"}]),
    )]);
    assert_eq!(errors(&ok, None), Vec::<String>::new());
}

#[test]
fn validate_crd_should_check_subresources_and_columns() {
    let at = "spec.versions[0]";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            with(&[(
                "/spec/versions/0/subresources/scale/specReplicasPath",
                json!("spec.replicas"),
            )]),
            vec![format!(
                r#"{at}.subresources.scale.specReplicasPath: Invalid value: "spec.replicas": must be a simple json path starting with ."#
            )],
        ),
        (
            with(&[(
                "/spec/versions/0/subresources/scale/specReplicasPath",
                json!(".status.replicas"),
            )]),
            vec![format!(
                r#"{at}.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#
            )],
        ),
        (
            with(&[("/spec/versions/0/subresources/scale/statusReplicasPath", Value::Null)]),
            vec![format!("{at}.subresources.scale.statusReplicasPath: Required value")],
        ),
        (
            with(&[(
                "/spec/versions/0/subresources/scale/labelSelectorPath",
                json!(".metadata.labels"),
            )]),
            vec![format!(
                r#"{at}.subresources.scale.labelSelectorPath: Invalid value: ".metadata.labels": should be a json path under either .spec or .status"#
            )],
        ),
        (
            with(&[(
                "/spec/versions/0/subresources/scale/labelSelectorPath",
                json!(".spec.selector"),
            )]),
            vec![],
        ),
        (
            with(&[("/spec/versions/0/subresources/scale/specReplicasPath", json!(".spec.mode"))]),
            vec![format!(
                r#"{at}.subresources.scale.specReplicasPath: Invalid value: ".spec.mode": should be a json path to a field of type integer, not string"#
            )],
        ),
        (
            with(&[("/spec/versions/0/subresources/status", json!({"x": 1}))]),
            vec![format!(
                r#"{at}.subresources.status: Invalid value: {{"x":1}}: must be an empty object"#
            )],
        ),
        (
            with(&[(
                "/spec/versions/0/additionalPrinterColumns/0",
                json!({"type": "float", "format": "huge", "jsonPath": "spec"}),
            )]),
            vec![
                format!("{at}.additionalPrinterColumns[0].name: Required value"),
                format!(
                    r#"{at}.additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#
                ),
                format!(
                    r#"{at}.additionalPrinterColumns[0].format: Invalid value: "huge": must be one of byte,date,date-time,double,float,int32,int64,password"#
                ),
                format!(
                    r#"{at}.additionalPrinterColumns[0].jsonPath: Invalid value: "spec": must be a simple json path starting with ."#
                ),
            ],
        ),
        (
            with(&[("/spec/versions/0/additionalPrinterColumns/0", json!({"name": "A"}))]),
            vec![
                format!(
                    "{at}.additionalPrinterColumns[0].type: Required value: must be one of boolean,date,integer,number,string"
                ),
                format!("{at}.additionalPrinterColumns[0].jsonPath: Required value"),
            ],
        ),
        (
            with(&[(
                "/spec/versions/0/additionalPrinterColumns/0/jsonPath",
                json!(".spec.list[0"),
            )]),
            vec![format!(
                r#"{at}.additionalPrinterColumns[0].jsonPath: Invalid value: ".spec.list[0": must be a valid JSONPath: unterminated array"#
            )],
        ),
        (
            with(&[(
                "/spec/versions/0/additionalPrinterColumns/0/jsonPath",
                json!(r#".status.conditions[?(@.type=="Ready")].status"#),
            )]),
            vec![],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{}", obj["spec"]["versions"][0]);
    }
}

#[test]
fn validate_crd_should_check_selectable_fields() {
    let at = "spec.versions[0].selectableFields";
    let fields = |paths: &[&str]| -> Value {
        with(&[(
            "/spec/versions/0/selectableFields",
            json!(paths.iter().map(|p| json!({"jsonPath": p})).collect::<Vec<_>>()),
        )])
    };
    let cases: Vec<(Value, Vec<String>)> = vec![
        (fields(&[".spec.replicas", ".spec.mode"]), vec![]),
        (
            fields(&[".spec.nope"]),
            vec![format!(
                r#"{at}[0].jsonPath: Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field"#
            )],
        ),
        (
            fields(&[".spec['mode']"]),
            vec![format!(
                r#"{at}[0].jsonPath: Invalid value: ".spec['mode']": is an invalid path: array notation is not allowed"#
            )],
        ),
        (
            fields(&[".spec.template"]),
            vec![format!(
                r#"{at}[0].jsonPath: Invalid value: ".spec.template": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."#
            )],
        ),
        (
            fields(&[".spec.mode", ".spec.mode"]),
            vec![format!(r#"{at}[1].jsonPath: Duplicate value: ".spec.mode""#)],
        ),
        (fields(&[""]), vec![format!("{at}[0].jsonPath: Required value")]),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{}", obj["spec"]["versions"][0]["selectableFields"]);
    }
    // More than eight: kube's TooMany.
    let mut schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let mut paths = Vec::new();
    for i in 0..9 {
        schema["properties"]["spec"]["properties"][format!("f{i}")] = json!({"type": "string"});
        paths.push(json!({"jsonPath": format!(".spec.f{i}")}));
    }
    let many = with(&[
        ("/spec/versions/0/schema/openAPIV3Schema", schema),
        ("/spec/versions/0/selectableFields", json!(paths)),
    ]);
    assert_eq!(errors(&many, None), vec![format!("{at}: Too many: 9: must have at most 8 items")]);
    // An update that leaves too many as they were is allowed.
    assert_eq!(errors(&many, Some(&many)), Vec::<String>::new());
}

#[test]
fn validate_crd_should_check_conversion() {
    let at = "spec.conversion";
    let webhook =
        |w: Value| with(&[("/spec/conversion", json!({"strategy": "Webhook", "webhook": w}))]);
    let cases: Vec<(Value, Vec<String>)> = vec![
        (with(&[("/spec/conversion", json!({"strategy": "None"}))]), vec![]),
        (
            with(&[("/spec/conversion", json!({"strategy": "Magic"}))]),
            vec![format!(
                r#"{at}.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#
            )],
        ),
        (
            with(&[(
                "/spec/conversion",
                json!({"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"]}}),
            )]),
            vec![format!(
                "{at}.webhook.conversionReviewVersions: Forbidden: should not be set when strategy is not set to Webhook"
            )],
        ),
        (
            webhook(json!({})),
            vec![
                format!(
                    "{at}.webhook.clientConfig: Required value: required when strategy is set to Webhook"
                ),
                format!("{at}.webhook.conversionReviewVersions: Required value"),
            ],
        ),
        (
            webhook(
                json!({"clientConfig": {"url": "https://conv.example.com/convert"}, "conversionReviewVersions": ["v1"]}),
            ),
            vec![],
        ),
        (
            webhook(
                json!({"clientConfig": {"service": {"namespace": "ns", "name": "conv", "path": "/convert"}}, "conversionReviewVersions": ["v1beta1", "v1"]}),
            ),
            vec![],
        ),
        (
            webhook(
                json!({"clientConfig": {"url": "http://u:p@conv.example.com/c?x=1#f"}, "conversionReviewVersions": ["v1"]}),
            ),
            vec![
                format!(
                    r#"{at}.webhook.clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#
                ),
                format!(
                    r#"{at}.webhook.clientConfig.url: Invalid value: "u:p": user information is not permitted in the URL"#
                ),
                format!(
                    r#"{at}.webhook.clientConfig.url: Invalid value: "f": fragments are not permitted in the URL"#
                ),
                format!(
                    r#"{at}.webhook.clientConfig.url: Invalid value: "x=1": query parameters are not permitted in the URL"#
                ),
            ],
        ),
        (
            webhook(
                json!({"clientConfig": {"url": "https://x.example.com", "service": {"namespace": "ns", "name": "conv"}}, "conversionReviewVersions": ["v1"]}),
            ),
            vec![format!(
                "{at}.webhook.clientConfig: Required value: exactly one of url or service is required"
            )],
        ),
        (
            webhook(
                json!({"clientConfig": {"service": {"name": "conv", "port": 0, "path": "/a//B"}}, "conversionReviewVersions": ["v2", "v2"]}),
            ),
            vec![
                format!("{at}.webhook.clientConfig.service.namespace: Required value"),
                format!(
                    "{at}.webhook.clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive"
                ),
                format!(
                    r#"{at}.webhook.clientConfig.service.path: Invalid value: "/a//B": segment[1] may not be empty"#
                ),
                format!(
                    "{at}.webhook.clientConfig.service.path: Invalid value: \"/a//B\": segment[2]: {SUBDOMAIN}"
                ),
                format!(
                    r#"{at}.webhook.conversionReviewVersions[1]: Invalid value: "v2": duplicate version"#
                ),
                format!(
                    r#"{at}.webhook.conversionReviewVersions: Invalid value: ["v2","v2"]: must include at least one of v1, v1beta1"#
                ),
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{}", obj["spec"]["conversion"]);
    }
}

#[test]
fn validate_crd_update_should_keep_stored_versions_and_names() {
    let mut old = crd();
    let mut beta = old["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    old["spec"]["versions"] = json!([beta, old["spec"]["versions"][0].clone()]);
    old["status"] = json!({
        "storedVersions": ["v1beta1", "v1"],
        "conditions": [{"type": "Established", "status": "True"}],
        "acceptedNames": {"plural": "widgets", "kind": "Widget"},
    });
    // Dropping a version that objects may still be stored in.
    let new = crd();
    assert_eq!(
        errors(&new, Some(&old)),
        vec![
            "status.storedVersions[0]: Invalid value: \"v1beta1\": missing from spec.versions; v1beta1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1beta1 and removes v1beta1 from status.storedVersions"
        ]
    );
    // Once established, scope and kind are fixed; group and plural always are.
    let mut changed = old.clone();
    changed["spec"]["scope"] = json!("Cluster");
    changed["spec"]["names"]["kind"] = json!("Gadget");
    changed["spec"]["names"]["listKind"] = json!("GadgetList");
    changed["spec"]["names"]["plural"] = json!("gadgets");
    assert_eq!(
        errors(&changed, Some(&old)),
        vec![
            r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
            r#"spec.names.kind: Invalid value: "Gadget": field is immutable"#,
            r#"spec.names.plural: Invalid value: "gadgets": field is immutable"#,
        ]
    );
    assert_eq!(errors(&old, Some(&old)), Vec::<String>::new());
}

fn group_crd(name: &str, group: &str, names: Value, accepted: Option<Value>) -> Value {
    let mut crd = json!({"metadata": {"name": name}, "spec": {"group": group, "names": names}});
    if let Some(a) = accepted {
        crd["status"] = json!({"acceptedNames": a});
    }
    crd
}

#[test]
fn accepted_names_should_refuse_names_taken_in_the_group() {
    let widgets = group_crd(
        "widgets.example.com",
        "example.com",
        json!({"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]}),
        None,
    );
    let fresh = accepted_names(&widgets, &[]);
    assert_eq!(
        fresh,
        NamesResult {
            names: json!({"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]}),
            accepted: true,
            reason: "NoConflicts".into(),
            message: "no conflicts found".into(),
        }
    );
    let taken =
        |names: Value| group_crd("gadgets.example.com", "example.com", names.clone(), Some(names));
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            taken(
                json!({"plural": "widgets", "singular": "w", "kind": "Gadget", "listKind": "GadgetList"}),
            ),
            "PluralConflict",
            r#""widgets" is already in use"#,
        ),
        (
            taken(
                json!({"plural": "gadgets", "singular": "wd", "kind": "Gadget", "listKind": "GadgetList"}),
            ),
            "ShortNamesConflict",
            r#""wd" is already in use"#,
        ),
        (
            taken(
                json!({"plural": "gadgets", "singular": "gadget", "kind": "Widget", "listKind": "GadgetList"}),
            ),
            "KindConflict",
            r#""Widget" is already in use"#,
        ),
        (
            taken(
                json!({"plural": "gadgets", "singular": "widget", "kind": "Gadget", "listKind": "WidgetList"}),
            ),
            "ListKindConflict",
            r#""WidgetList" is already in use"#,
        ),
    ];
    for (other, reason, message) in cases {
        let got = accepted_names(&widgets, &[&other]);
        assert!(!got.accepted, "{other}");
        assert_eq!((got.reason.as_str(), got.message.as_str()), (reason, message), "{other}");
    }
    // The plural taken, the other names are still given.
    let got = accepted_names(&widgets, &[&taken(json!({"plural": "widgets", "kind": "Gadget"}))]);
    assert_eq!(got.names["plural"], json!(""));
    assert_eq!(got.names["kind"], json!("Widget"));
    // Two short names taken: kube's aggregate.
    let both =
        taken(json!({"plural": "a", "singular": "b", "shortNames": ["x", "y"], "kind": "Gadget"}));
    let mut wants_both = widgets.clone();
    wants_both["spec"]["names"]["shortNames"] = json!(["x", "y"]);
    let got = accepted_names(&wants_both, &[&both]);
    assert_eq!(got.message, r#"["x" is already in use, "y" is already in use]"#);
    // Other groups do not count, nor does the CRD's own entry among the others.
    let elsewhere = group_crd(
        "widgets.other.io",
        "other.io",
        json!({}),
        Some(json!({"plural": "widgets", "kind": "Widget"})),
    );
    let mut own = widgets.clone();
    own["status"] = json!({"acceptedNames": fresh.names});
    assert!(accepted_names(&widgets, &[&elsewhere]).accepted);
    assert!(accepted_names(&own, &[&own]).accepted);
    // Names already accepted stay accepted.
    assert_eq!(accepted_names(&own, &[&widgets]).names, own["status"]["acceptedNames"]);
}

#[test]
fn compare_versions_should_follow_kube_priority() {
    let mut versions = vec![
        "foo10",
        "v1alpha1",
        "v11alpha2",
        "v1",
        "foo1",
        "v3beta1",
        "v12alpha1",
        "v10beta3",
        "v11beta2",
        "v2",
        "v10",
    ];
    versions.sort_by(|a, b| compare_versions(b, a));
    assert_eq!(
        versions,
        [
            "v10",
            "v2",
            "v1",
            "v11beta2",
            "v10beta3",
            "v3beta1",
            "v12alpha1",
            "v11alpha2",
            "v1alpha1",
            "foo1",
            "foo10"
        ]
    );
    assert_eq!(compare_versions("v1", "v1"), Ordering::Equal);
    assert_eq!(compare_versions("v1beta1", "v1alpha9"), Ordering::Greater);
    assert_eq!(compare_versions("v1beta", "v1"), Ordering::Less);
}

#[test]
fn evaluate_jsonpath_should_find_printer_column_values() {
    let obj = json!({
        "metadata": {"name": "a", "labels": {"app": "web", "app.kubernetes.io/name": "w"}},
        "spec": {"replicas": 3, "list": [{"name": "x", "n": 1}, {"name": "y", "n": 2}, {"name": "z", "n": 3}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]},
    });
    let cases: Vec<(&str, Option<Value>)> = vec![
        (".spec.replicas", Some(json!([3]))),
        (".metadata.labels.app", Some(json!(["web"]))),
        (".metadata.labels['app.kubernetes.io/name']", Some(json!(["w"]))),
        (r#".status.conditions[?(@.type=="Ready")].status"#, Some(json!(["True"]))),
        (".status.conditions[?(@.type!='Ready')].type", Some(json!(["Synced"]))),
        (".spec.list[0]", Some(json!([{"name": "x", "n": 1}]))),
        (".spec.list[-1].name", Some(json!(["z"]))),
        (".spec.list[*].name", Some(json!(["x", "y", "z"]))),
        (".spec.list[0:2].n", Some(json!([1, 2]))),
        (".spec.list[0,2].name", Some(json!(["x", "z"]))),
        (".spec.list[?(@.n > 1)].name", Some(json!(["y", "z"]))),
        ("..n", Some(json!([1, 2, 3]))),
        ("{.spec.replicas}", Some(json!([3]))),
        (".spec.missing", Some(json!([]))),
        (".spec.list[9]", Some(json!([]))),
        (".spec.list[0", None),
        (".spec.list[?(@.n ~ 1)]", None),
    ];
    for (path, want) in cases {
        assert_eq!(evaluate_jsonpath(&obj, path).map(Value::from), want, "{path}");
    }
}

#[test]
fn crd_view_should_read_what_serving_needs() {
    let mut obj = crd();
    obj["spec"]["names"] = json!({"plural": "widgets", "kind": "Widget"});
    obj["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"namespace": "ns", "name": "conv"}}, "conversionReviewVersions": ["v1"]}});
    let mut beta = obj["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    beta["deprecated"] = json!(true);
    beta["selectableFields"] = json!([{"jsonPath": ".spec.mode"}]);
    obj["spec"]["versions"] = json!([beta, obj["spec"]["versions"][0].clone()]);
    let view = CrdView::parse(&obj);
    assert_eq!(view.name, "widgets.example.com");
    assert_eq!(view.names.singular, "widget");
    assert_eq!(view.names.list_kind, "WidgetList");
    assert!(view.namespaced);
    assert_eq!(view.storage_version().map(|v| v.name.as_str()), Some("v1"));
    assert_eq!(
        view.served_versions().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["v1", "v1beta1"]
    );
    let beta = view.version("v1beta1").expect("v1beta1");
    assert_eq!(
        beta.warning("example.com", "Widget").as_deref(),
        Some("example.com/v1beta1 Widget is deprecated")
    );
    assert_eq!(beta.selectable_fields, [".spec.mode"]);
    assert!(beta.status_subresource);
    assert_eq!(
        beta.scale,
        Some(Scale {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None
        })
    );
    assert_eq!(beta.printer_columns[0].json_path, ".spec.replicas");
    assert_eq!(view.conversion.strategy, ConversionStrategy::Webhook);
    let service = view.conversion.client_config.and_then(|c| c.service).expect("service");
    assert_eq!((service.namespace.as_str(), service.port), ("ns", 443));
}
