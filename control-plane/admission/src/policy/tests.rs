//! Tests of Validating- and MutatingAdmissionPolicies, modelled on the examples of kube's
//! "Validating Admission Policy" and "Mutating Admission Policy" pages.

use serde_json::{Value, json};

use super::*;

fn max_replicas_policy() -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "max-replicas"},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "rules.example.com/v1", "kind": "ReplicaLimit"},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]
            }]},
            "validations": [{
                "expression": "object.spec.replicas <= params.maxReplicas",
                "messageExpression": "'object.spec.replicas must be no greater than ' + string(params.maxReplicas)",
                "reason": "Invalid"
            }]
        }
    })
}

fn binding(name: &str, policy: &str, actions: &[&str]) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"policyName": policy, "validationActions": actions,
                 "paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"}}
    })
}

fn deployment(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
           "spec": {"replicas": replicas}})
}

fn request<'a>(object: &'a Value, namespace: &'a Value) -> PolicyRequest<'a> {
    PolicyRequest {
        operation: "CREATE",
        group: "apps",
        version: "v1",
        resource: "deployments",
        kind: "Deployment",
        namespace: "default",
        name: "web",
        namespaced: true,
        object: Some(object),
        namespace_object: Some(namespace),
        ..PolicyRequest::default()
    }
}

fn namespace() -> Value {
    json!({"metadata": {"name": "default", "labels": {"env": "prod"}}})
}

#[test]
fn validate_should_deny_deployments_over_the_params_limit_with_message_expression() {
    let policy = compile_validating(&max_replicas_policy());
    assert!(policy.compile_errors().is_empty(), "{:?}", policy.compile_errors());
    let b = binding("max-replicas-binding", "max-replicas", &["Deny"]);
    let params = json!({"maxReplicas": 3});
    let (ns, too_many, fine) = (namespace(), deployment(5), deployment(2));

    let outcome = validate(&policy, &b, Some(&params), &request(&too_many, &ns), None);
    assert_eq!(
        outcome.denied,
        Some((
            422,
            "Invalid".to_string(),
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: object.spec.replicas must be no greater than 3".to_string()
        ))
    );
    assert_eq!(
        validate(&policy, &b, Some(&params), &request(&fine, &ns), None),
        Outcome::default()
    );
}

#[test]
fn validate_should_fall_back_to_message_then_expression() {
    let mut p = max_replicas_policy();
    p["spec"]["validations"] = json!([
        {"expression": "object.spec.replicas < 2", "message": "  too many  ", "messageExpression": "1 == 1 ? 'multi\\nline' : ''", "reason": "Forbidden"},
        {"expression": "  object.spec.replicas < 1 "}
    ]);
    let policy = compile_validating(&p);
    let (ns, d) = (namespace(), deployment(5));
    let b = binding("b", "max-replicas", &["Deny"]);
    let outcome = validate(&policy, &b, Some(&json!({})), &request(&d, &ns), None);
    let (code, reason, message) = outcome.denied.unwrap();
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: too many"
    );

    let b = binding("b", "max-replicas", &["Warn"]);
    let outcome = validate(&policy, &b, Some(&json!({})), &request(&d, &ns), None);
    assert_eq!(outcome.denied, None);
    assert_eq!(
        outcome.warnings,
        vec![
            "Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'b': too many".to_string(),
            "Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'b': failed expression: object.spec.replicas < 1".to_string(),
        ]
    );
}

#[test]
fn validate_should_warn_and_audit_by_validation_actions() {
    let policy = compile_validating(&max_replicas_policy());
    let b = binding("max-replicas-binding", "max-replicas", &["Warn", "Audit"]);
    let (ns, d) = (namespace(), deployment(5));
    let outcome = validate(&policy, &b, Some(&json!({"maxReplicas": 3})), &request(&d, &ns), None);
    assert_eq!(outcome.denied, None);
    assert_eq!(
        outcome.warnings,
        vec!["Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding': object.spec.replicas must be no greater than 3".to_string()]
    );
    assert_eq!(
        outcome.audit_annotations,
        vec![(
            "validation.policy.admission.k8s.io/validation_failure".to_string(),
            r#"[{"message":"object.spec.replicas must be no greater than 3","policy":"max-replicas","binding":"max-replicas-binding","expressionIndex":0,"validationActions":["Warn","Audit"]}]"#.to_string()
        )]
    );
}

#[test]
fn validate_should_publish_audit_annotations() {
    let mut p = max_replicas_policy();
    p["spec"]["auditAnnotations"] = json!([
        {"key": "high-replica-count", "valueExpression": "object.spec.replicas > 1 ? 'Deployment spec.replicas set to ' + string(object.spec.replicas) : null"},
        {"key": "empty", "valueExpression": "'   '"}
    ]);
    let policy = compile_validating(&p);
    let (ns, d) = (namespace(), deployment(3));
    let b = binding("b", "max-replicas", &["Deny"]);
    let outcome = validate(&policy, &b, Some(&json!({"maxReplicas": 5})), &request(&d, &ns), None);
    assert_eq!(
        outcome.audit_annotations,
        vec![(
            "max-replicas/high-replica-count".to_string(),
            "Deployment spec.replicas set to 3".to_string()
        )]
    );
}

#[test]
fn validate_should_skip_when_match_conditions_fail_and_apply_failure_policy_to_errors() {
    let mut p = max_replicas_policy();
    p["spec"]["matchConditions"] = json!([
        {"name": "exclude-leases", "expression": "!(request.resource.group == 'coordination.k8s.io' && request.resource.resource == 'leases')"},
        {"name": "labelled", "expression": "has(object.metadata.labels) && 'app' in object.metadata.labels"}
    ]);
    let policy = compile_validating(&p);
    let b = binding("b", "max-replicas", &["Deny"]);
    let ns = namespace();
    let mut unlabelled = deployment(5);
    unlabelled["metadata"].as_object_mut().unwrap().remove("labels");
    let params = json!({"maxReplicas": 3});
    assert_eq!(
        validate(&policy, &b, Some(&params), &request(&unlabelled, &ns), None),
        Outcome::default()
    );
    let labelled = deployment(5);
    assert!(validate(&policy, &b, Some(&params), &request(&labelled, &ns), None).denied.is_some());

    // A condition that errors: Fail denies with the error, Ignore admits.
    p["spec"]["matchConditions"] = json!([{"name": "broken", "expression": "object.nope == 1"}]);
    let policy = compile_validating(&p);
    let outcome = validate(&policy, &b, Some(&params), &request(&labelled, &ns), None);
    assert_eq!(
        outcome.denied.unwrap().2,
        "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: expression 'object.nope == 1' resulted in error: no such key: nope"
    );
    p["spec"]["failurePolicy"] = json!("Ignore");
    let policy = compile_validating(&p);
    assert_eq!(
        validate(&policy, &b, Some(&params), &request(&labelled, &ns), None),
        Outcome::default()
    );
}

#[test]
fn validate_should_use_variables() {
    let mut p = max_replicas_policy();
    p["spec"]["variables"] = json!([
        {"name": "replicas", "expression": "object.spec.replicas"},
        {"name": "limit", "expression": "params.maxReplicas + 0"},
        {"name": "over", "expression": "variables.replicas > variables.limit"}
    ]);
    p["spec"]["validations"] = json!([{"expression": "!variables.over", "messageExpression": "'replicas ' + string(variables.replicas) + ' over ' + string(variables.limit)"}]);
    let policy = compile_validating(&p);
    assert!(policy.compile_errors().is_empty(), "{:?}", policy.compile_errors());
    let (ns, d) = (namespace(), deployment(7));
    let b = binding("b", "max-replicas", &["Deny"]);
    let outcome = validate(&policy, &b, Some(&json!({"maxReplicas": 3})), &request(&d, &ns), None);
    assert_eq!(
        outcome.denied.unwrap().2,
        "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: replicas 7 over 3"
    );

    // A variable may only use the ones before it.
    p["spec"]["variables"] =
        json!([{"name": "a", "expression": "variables.b"}, {"name": "b", "expression": "1"}]);
    p["spec"]["validations"] = json!([{"expression": "variables.a == variables.b"}]);
    let policy = compile_validating(&p);
    let errors = policy.compile_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "spec.variables[0].expression");
    assert!(errors[0].1.contains("undefined field 'b'"), "{}", errors[0].1);
}

#[test]
fn validate_should_apply_failure_policy_to_runtime_and_compile_errors() {
    let mut p = max_replicas_policy();
    p["spec"]["validations"] = json!([{"expression": "object.spec.missing > 1"}]);
    let (ns, d) = (namespace(), deployment(1));
    let b = binding("b", "max-replicas", &["Deny"]);
    let policy = compile_validating(&p);
    let outcome = validate(&policy, &b, None, &request(&d, &ns), None);
    assert_eq!(
        outcome.denied,
        Some((
            422,
            "Invalid".to_string(),
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: expression 'object.spec.missing > 1' resulted in error: no such key: missing".to_string()
        ))
    );
    p["spec"]["failurePolicy"] = json!("Ignore");
    assert_eq!(
        validate(&compile_validating(&p), &b, None, &request(&d, &ns), None),
        Outcome::default()
    );

    p["spec"]["failurePolicy"] = json!("Fail");
    p["spec"]["validations"] = json!([{"expression": "object.spec.replicas >"}]);
    let outcome = validate(&compile_validating(&p), &b, None, &request(&d, &ns), None);
    let message = outcome.denied.unwrap().2;
    assert!(
        message.starts_with("ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: compilation error: compilation failed: ERROR: <input>:1:"),
        "{message}"
    );
}

#[test]
fn validate_should_stop_on_the_cost_limit() {
    let mut p = max_replicas_policy();
    p["spec"]["validations"] = json!([{"expression": "object.items.all(x, object.items.all(y, object.items.all(z, x + y + z >= 0)))"}]);
    let object = json!({"items": (0..500).collect::<Vec<_>>()});
    let ns = namespace();
    let b = binding("b", "max-replicas", &["Deny"]);
    let outcome = validate(&compile_validating(&p), &b, None, &request(&object, &ns), None);
    assert_eq!(
        outcome.denied.unwrap().2,
        "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: expression 'object.items.all(x, object.items.all(y, object.items.all(z, x + y + z >= 0)))' resulted in error: operation cancelled: actual cost limit exceeded"
    );
}

#[test]
fn matches_should_follow_constraints_and_binding_resources() {
    let p = max_replicas_policy();
    let (ns, d) = (namespace(), deployment(1));
    let req = request(&d, &ns);
    let plain = binding("b", "max-replicas", &["Deny"]);
    assert!(matches(&p, &plain, &req));
    assert!(!matches(&p, &binding("b", "other-policy", &["Deny"]), &req));

    let pods = PolicyRequest { group: "", resource: "pods", kind: "Pod", ..req };
    assert!(!matches(&p, &plain, &pods));
    let delete = PolicyRequest { operation: "DELETE", ..req };
    assert!(!matches(&p, &plain, &delete));
    let other_version = PolicyRequest { version: "v1beta1", ..req };
    assert!(matches(&p, &plain, &other_version), "Equivalent by default");
    let mut exact = p.clone();
    exact["spec"]["matchConstraints"]["matchPolicy"] = json!("Exact");
    assert!(!matches(&exact, &plain, &other_version));

    let mut scoped = plain.clone();
    scoped["spec"]["matchResources"] =
        json!({"namespaceSelector": {"matchLabels": {"env": "test"}}});
    assert!(!matches(&p, &scoped, &req));
    scoped["spec"]["matchResources"] = json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}});
    assert!(matches(&p, &scoped, &req));
    scoped["spec"]["matchResources"] = json!({"objectSelector": {"matchLabels": {"app": "db"}}});
    assert!(!matches(&p, &scoped, &req));
    scoped["spec"]["matchResources"] = json!({"excludeResourceRules": [{"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["deployments"], "resourceNames": ["web"]}]});
    assert!(!matches(&p, &scoped, &req));
    scoped["spec"]["matchResources"] = json!({"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["*"], "resourceNames": ["other"]}]});
    assert!(!matches(&p, &scoped, &req));

    let mut no_constraints = p.clone();
    no_constraints["spec"].as_object_mut().unwrap().remove("matchConstraints");
    assert!(!matches(&no_constraints, &plain, &req));
}

#[test]
fn param_ref_should_say_what_to_fetch_and_what_to_do_when_missing() {
    let b = binding("b", "max-replicas", &["Deny"]);
    let r = param_ref(&b).unwrap();
    assert_eq!(r.name.as_deref(), Some("limits"));
    assert_eq!(r.params_namespace("team", true), Ok(Some("default".to_string())));
    assert_eq!(
        r.when_not_found(),
        Err("no params found for policy binding with `Deny` parameterNotFoundAction".to_string())
    );
    let policy = compile_validating(&max_replicas_policy());
    let outcome = configuration_error(&policy, Some(&b), &r.when_not_found().unwrap_err());
    assert_eq!(
        outcome.denied.unwrap().2,
        "ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    );
    let selecting = json!({"spec": {"paramRef": {"selector": {"matchLabels": {"a": "b"}}, "parameterNotFoundAction": "Allow"}}});
    let r = param_ref(&selecting).unwrap();
    assert!(r.name.is_none() && r.selector.is_some());
    assert_eq!(r.when_not_found(), Ok(()));
    assert_eq!(
        r.params_namespace("", true),
        Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".to_string())
    );
    assert_eq!(param_ref(&json!({"spec": {}})), None);
}

fn label_policy(patch_type: &str, expression: &str) -> Value {
    let key = if patch_type == "JSONPatch" { "jsonPatch" } else { "applyConfiguration" };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1beta1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "add-label"},
        "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
            "reinvocationPolicy": "IfNeeded",
            "mutations": [{"patchType": patch_type, key: {"expression": expression}}]
        }
    })
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
}

fn pod_request<'a>(object: &'a Value, ns: &'a Value) -> PolicyRequest<'a> {
    PolicyRequest {
        operation: "CREATE",
        version: "v1",
        resource: "pods",
        kind: "Pod",
        namespace: "default",
        name: "p",
        namespaced: true,
        object: Some(object),
        namespace_object: Some(ns),
        ..PolicyRequest::default()
    }
}

#[test]
fn mutate_should_add_a_label_by_apply_configuration() {
    let policy = compile_mutating(&label_policy(
        "ApplyConfiguration",
        "Object{metadata: Object.metadata{labels: {'environment': 'test'}}, spec: Object.spec{containers: [Object.spec.containers{name: 'app', imagePullPolicy: 'Always'}]}}",
    ));
    assert!(policy.compile_errors().is_empty(), "{:?}", policy.compile_errors());
    assert!(policy.reinvoke_if_needed);
    let (ns, original) = (namespace(), pod());
    let mut object = original.clone();
    let b = json!({"metadata": {"name": "add-label-binding"}, "spec": {"policyName": "add-label"}});
    assert_eq!(mutate(&policy, &b, None, &pod_request(&original, &ns), &mut object), Ok(true));
    assert_eq!(object["metadata"]["labels"], json!({"app": "web", "environment": "test"}));
    assert_eq!(
        object["spec"]["containers"],
        json!([{"name": "app", "image": "nginx", "imagePullPolicy": "Always"}])
    );
    // Applying again changes nothing.
    let again = object.clone();
    assert_eq!(mutate(&policy, &b, None, &pod_request(&again, &ns), &mut object), Ok(false));
}

#[test]
fn mutate_should_add_a_label_by_json_patch() {
    let policy = compile_mutating(&label_policy(
        "JSONPatch",
        "[JSONPatch{op: 'add', path: '/metadata/labels/' + jsonPatch.escape('example.com/env'), value: 'test'}]",
    ));
    assert!(policy.compile_errors().is_empty(), "{:?}", policy.compile_errors());
    let (ns, original) = (namespace(), pod());
    let mut object = original.clone();
    let b = json!({"metadata": {"name": "b"}, "spec": {"policyName": "add-label"}});
    assert_eq!(mutate(&policy, &b, None, &pod_request(&original, &ns), &mut object), Ok(true));
    assert_eq!(object["metadata"]["labels"], json!({"app": "web", "example.com/env": "test"}));

    // A failed `test` leaves the object as it was.
    let policy = compile_mutating(&label_policy(
        "JSONPatch",
        "[JSONPatch{op: 'test', path: '/metadata/name', value: 'other'}, JSONPatch{op: 'remove', path: '/metadata/labels'}]",
    ));
    let mut object = original.clone();
    assert_eq!(mutate(&policy, &b, None, &pod_request(&original, &ns), &mut object), Ok(false));
    assert_eq!(object, original);
}

#[test]
fn mutate_should_report_failures_under_fail_and_skip_them_under_ignore() {
    let mut p = label_policy(
        "JSONPatch",
        "[JSONPatch{op: 'replace', path: '/spec/nope/deeper', value: 1}]",
    );
    let (ns, original) = (namespace(), pod());
    let b = json!({"metadata": {"name": "b"}, "spec": {"policyName": "add-label"}});
    let mut object = original.clone();
    let err = mutate(&compile_mutating(&p), &b, None, &pod_request(&original, &ns), &mut object)
        .unwrap_err();
    assert!(err.starts_with("policy 'add-label' with binding 'b' denied request: JSONPath: replace operation does not apply"), "{err}");

    p["spec"]["mutations"] = json!([{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{spec: Object.spec.wrong{}}"}}]);
    let err = mutate(&compile_mutating(&p), &b, None, &pod_request(&original, &ns), &mut object)
        .unwrap_err();
    assert_eq!(
        err,
        "policy 'add-label' with binding 'b' denied request: type mismatch: unexpected type name \"Object.spec.wrong\", expected \"Object.spec\", which matches field name path from root Object type"
    );

    p["spec"]["mutations"] = json!([{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{metadata: Object.metadata{labels: {'x': object.nope}}}"}}]);
    p["spec"]["failurePolicy"] = json!("Ignore");
    let mut object = original.clone();
    assert_eq!(
        mutate(&compile_mutating(&p), &b, None, &pod_request(&original, &ns), &mut object),
        Ok(false)
    );
    assert_eq!(object, original);
}

#[test]
fn type_checking_should_warn_about_unknown_fields_and_compile_errors() {
    let mut p = max_replicas_policy();
    p["spec"]["validations"] = json!([
        {"expression": "object.spec.replicas <= params.maxReplicass"},
        {"expression": "object.spec.replicaz > 0"},
        {"expression": "object.spec.replicas >"}
    ]);
    let lookup = |api_version: &str, kind: &str| -> Option<Value> {
        match (api_version, kind) {
            ("rules.example.com/v1", "ReplicaLimit") => {
                Some(json!({"type": "object", "properties": {"maxReplicas": {"type": "integer"}}}))
            }
            ("apps/v1", "Deployment") => Some(json!({"type": "object", "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }})),
            _ => None,
        }
    };
    let status = type_checking(&p, &lookup);
    let warnings = status["expressionWarnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 3, "{status}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].expression");
    assert_eq!(
        warnings[0]["warning"],
        "rules.example.com/v1, Kind=ReplicaLimit: ERROR: <input>:1:32: undefined field 'maxReplicass'\n | object.spec.replicas <= params.maxReplicass\n | ...............................^"
    );
    assert_eq!(
        warnings[1]["warning"],
        "apps/v1, Kind=Deployment: ERROR: <input>:1:13: undefined field 'replicaz'\n | object.spec.replicaz > 0\n | ............^"
    );
    assert_eq!(warnings[2]["fieldRef"], "spec.validations[2].expression");
    assert_eq!(type_checking(&max_replicas_policy(), &lookup), json!({}));
}
