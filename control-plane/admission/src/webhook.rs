//! Dynamic admission webhooks as kube-apiserver calls them (`k8s.io/apiserver/pkg/admission/
//! plugin/webhook`): which webhooks of a Mutating- or ValidatingWebhookConfiguration a request
//! reaches (rules, scope, namespace and object selectors), and the configuration's defaults.
//! The AdmissionReview sent and read back is [`crate::review`].

use serde::Deserialize;
use serde_json::Value;

/// One webhook of a configuration, with kube's defaults filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub name: String,
    #[serde(default)]
    pub client_config: ClientConfig,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// `Fail` (the default) or `Ignore`.
    #[serde(default = "default_failure_policy")]
    pub failure_policy: String,
    /// `Equivalent` (the default) or `Exact`.
    #[serde(default = "default_match_policy")]
    pub match_policy: String,
    #[serde(default)]
    pub namespace_selector: Option<Value>,
    #[serde(default)]
    pub object_selector: Option<Value>,
    #[serde(default)]
    pub side_effects: Option<String>,
    /// Seconds, 1 to 30; 10 by default.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub admission_review_versions: Vec<String>,
    /// Mutating webhooks only: `Never` (the default) or `IfNeeded`.
    #[serde(default = "default_reinvocation")]
    pub reinvocation_policy: String,
    #[serde(default)]
    pub match_conditions: Vec<MatchCondition>,
}

fn default_failure_policy() -> String {
    "Fail".into()
}
fn default_match_policy() -> String {
    "Equivalent".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_reinvocation() -> String {
    "Never".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub service: Option<ServiceReference>,
    /// PEM certificates, base64 in the object.
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    /// 443 by default.
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    443
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub api_versions: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// `*` (the default), `Cluster` or `Namespaced`.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
}

/// The webhooks of a Mutating- or ValidatingWebhookConfiguration object; webhooks that do not
/// parse are left out (validation refuses them on write).
pub fn webhooks_of(configuration: &Value) -> Vec<Webhook> {
    configuration
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| Webhook::deserialize(w).ok())
        .collect()
}

/// What a request is, as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    /// The plural (`pods`).
    pub resource: &'a str,
    /// `""` for the resource itself.
    pub subresource: &'a str,
    /// Whether the resource is namespaced.
    pub namespaced: bool,
}

impl Rule {
    /// kube's `rules.Matcher`: operation, group, version, resource (with `*`, `*/*`,
    /// `pods/*`, `*/status`) and scope all match.
    pub fn matches(&self, a: &Attributes<'_>, any_version: bool) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        has(&self.operations, a.operation)
            && has(&self.api_groups, a.group)
            && (any_version || has(&self.api_versions, a.version))
            && self.resource_matches(a)
            && match self.scope.as_deref() {
                Some("Cluster") => !a.namespaced,
                Some("Namespaced") => a.namespaced,
                _ => true,
            }
    }

    fn resource_matches(&self, a: &Attributes<'_>) -> bool {
        self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            match (res, sub) {
                ("*", "*") => true,
                ("*", "") => a.subresource.is_empty(),
                ("*", s) => a.subresource == s,
                (res, "*") => res == a.resource,
                (res, s) => res == a.resource && a.subresource == s,
            }
        })
    }
}

impl Webhook {
    /// Whether a rule of this webhook covers the request. With `matchPolicy: Equivalent` a
    /// rule for another version of the same group and resource covers it too (Skiff serves
    /// each resource in one stored version, so the object is sent as it is).
    pub fn rules_match(&self, a: &Attributes<'_>) -> bool {
        let equivalent = self.match_policy != "Exact";
        self.rules.iter().any(|r| r.matches(a, equivalent))
    }

    /// The namespace selector: for a namespaced object, against its namespace's labels; a
    /// Namespace is matched on its own labels; other cluster-scoped objects always match.
    /// `namespace_labels` is `None` for cluster-scoped objects other than namespaces.
    pub fn namespace_matches(&self, namespace_labels: Option<&Value>) -> bool {
        match (&self.namespace_selector, namespace_labels) {
            (None, _) | (_, None) => true,
            (Some(selector), Some(labels)) => {
                skiff_helpers::labels::json_selector_matches(selector, Some(labels))
            }
        }
    }

    /// The object selector against the new object's labels or the old one's (either
    /// matching is enough, as kube: a delete has only the old, a create only the new).
    pub fn object_matches(&self, object: Option<&Value>, old: Option<&Value>) -> bool {
        let Some(selector) = &self.object_selector else { return true };
        let labels = |o: Option<&Value>| o.and_then(|o| o.pointer("/metadata/labels")).cloned();
        [object, old].into_iter().flatten().any(|o| {
            skiff_helpers::labels::json_selector_matches(selector, labels(Some(o)).as_ref())
        })
    }

    /// `failurePolicy: Ignore`.
    pub fn ignores_failures(&self) -> bool {
        self.failure_policy == "Ignore"
    }

    /// The AdmissionReview version to send: the first of the webhook's list Skiff speaks.
    pub fn review_version(&self) -> Option<&'static str> {
        self.admission_review_versions.iter().find_map(|v| match v.as_str() {
            "v1" => Some("v1"),
            "v1beta1" => Some("v1beta1"),
            _ => None,
        })
    }
}

/// A policy's `matchConstraints` (or a binding's `matchResources`), as ValidatingAdmissionPolicy
/// shapes them: `resourceRules` (rules with `resourceNames`), `excludeResourceRules`,
/// `namespaceSelector`, `objectSelector` and `matchPolicy`. `namespace_labels` as for
/// [`Webhook::namespace_matches`]; `name` is the object's name. An absent value matches
/// everything (a binding without `matchResources`).
pub fn constraints_match(
    constraints: Option<&Value>,
    a: &Attributes<'_>,
    name: &str,
    namespace_labels: Option<&Value>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let Some(c) = constraints.filter(|c| !c.is_null()) else { return true };
    let equivalent = c.get("matchPolicy").and_then(Value::as_str) != Some("Exact");
    let rule_hits = |field: &str| -> Option<bool> {
        let rules = c.get(field)?.as_array()?;
        Some(rules.iter().any(|r| {
            let names: Vec<&str> = r
                .get("resourceNames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            Rule::deserialize(r).is_ok_and(|rule| rule.matches(a, equivalent))
                && (names.is_empty() || names.contains(&name))
        }))
    };
    if rule_hits("resourceRules") == Some(false) || rule_hits("excludeResourceRules") == Some(true)
    {
        return false;
    }
    let selectors = Webhook {
        name: String::new(),
        client_config: ClientConfig::default(),
        rules: Vec::new(),
        failure_policy: default_failure_policy(),
        match_policy: default_match_policy(),
        namespace_selector: c.get("namespaceSelector").filter(|s| !s.is_null()).cloned(),
        object_selector: c.get("objectSelector").filter(|s| !s.is_null()).cloned(),
        side_effects: None,
        timeout_seconds: default_timeout(),
        admission_review_versions: Vec::new(),
        reinvocation_policy: default_reinvocation(),
        match_conditions: Vec::new(),
    };
    selectors.namespace_matches(namespace_labels) && selectors.object_matches(object, old)
}

/// kube's validation of a webhook configuration's `webhooks` (field path, message); `mutating`
/// allows `reinvocationPolicy`.
pub fn validate_configuration(configuration: &Value, mutating: bool) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let Some(webhooks) = configuration.get("webhooks").and_then(Value::as_array) else {
        return errs;
    };
    let mut names = std::collections::HashSet::new();
    for (i, w) in webhooks.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let name = w.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push((at("name"), "Required value".into()));
        } else if name.split('.').count() < 3 {
            errs.push((
                at("name"),
                format!(
                    "Invalid value: {name:?}: should be a domain with at least three segments separated by dots"
                ),
            ));
        } else if !names.insert(name) {
            errs.push((at("name"), format!("Duplicate value: {name:?}")));
        }
        let webhook = match Webhook::deserialize(w) {
            Ok(webhook) => webhook,
            Err(e) => {
                errs.push((format!("webhooks[{i}]"), format!("Invalid value: {e}")));
                continue;
            }
        };
        match webhook.side_effects.as_deref() {
            None => errs.push((
                at("sideEffects"),
                "Required value: must specify one of None, NoneOnDryRun".into(),
            )),
            Some("None" | "NoneOnDryRun") => {}
            Some(other) => errs.push((
                at("sideEffects"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"None\", \"NoneOnDryRun\""
                ),
            )),
        }
        if webhook.admission_review_versions.is_empty() {
            errs.push((
                at("admissionReviewVersions"),
                "Required value: must specify one of v1, v1beta1".into(),
            ));
        } else if webhook.review_version().is_none() {
            errs.push((
                at("admissionReviewVersions"),
                "Invalid value: must include at least one of v1, v1beta1".into(),
            ));
        }
        if !(1..=30).contains(&webhook.timeout_seconds) {
            errs.push((
                at("timeoutSeconds"),
                format!(
                    "Invalid value: {}: the timeout value must be between 1 and 30 seconds",
                    webhook.timeout_seconds
                ),
            ));
        }
        if !matches!(webhook.failure_policy.as_str(), "Fail" | "Ignore") {
            errs.push((
                at("failurePolicy"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Fail\", \"Ignore\"",
                    webhook.failure_policy
                ),
            ));
        }
        if !matches!(webhook.match_policy.as_str(), "Exact" | "Equivalent") {
            errs.push((
                at("matchPolicy"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Equivalent\", \"Exact\"",
                    webhook.match_policy
                ),
            ));
        }
        if mutating && !matches!(webhook.reinvocation_policy.as_str(), "Never" | "IfNeeded") {
            errs.push((
                at("reinvocationPolicy"),
                format!(
                    "Unsupported value: {:?}: supported values: \"IfNeeded\", \"Never\"",
                    webhook.reinvocation_policy
                ),
            ));
        }
        let cc = &webhook.client_config;
        match (&cc.url, &cc.service) {
            (Some(_), Some(_)) => errs.push((
                at("clientConfig"),
                "Required value: exactly one of url or service is required".into(),
            )),
            (None, None) => errs.push((
                at("clientConfig"),
                "Required value: exactly one of url or service is required".into(),
            )),
            (Some(url), None) => {
                if let Err(why) = check_url(url) {
                    errs.push((at("clientConfig.url"), format!("Invalid value: {url:?}: {why}")));
                }
            }
            (None, Some(svc)) => {
                if let Some(path) = &svc.path
                    && !path.starts_with('/')
                {
                    errs.push((
                        at("clientConfig.service.path"),
                        format!("Invalid value: {path:?}: must start with a '/'"),
                    ));
                }
                if svc.port == 0 {
                    errs.push((
                        at("clientConfig.service.port"),
                        "Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive"
                            .into(),
                    ));
                }
            }
        }
        for (j, rule) in webhook.rules.iter().enumerate() {
            for op in &rule.operations {
                if !matches!(op.as_str(), "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
                    errs.push((
                        format!("webhooks[{i}].rules[{j}].operations"),
                        format!(
                            "Unsupported value: {op:?}: supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\""
                        ),
                    ));
                }
            }
            for (field, list) in [
                ("apiGroups", &rule.api_groups),
                ("apiVersions", &rule.api_versions),
                ("resources", &rule.resources),
            ] {
                if list.is_empty() {
                    errs.push((
                        format!("webhooks[{i}].rules[{j}].{field}"),
                        "Required value".into(),
                    ));
                }
            }
        }
    }
    errs
}

/// A webhook URL must be `https://host[:port][/path]`, without user info, query or fragment.
fn check_url(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("'https' is the only allowed URL scheme");
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err("host must be specified");
    }
    if host.contains('@') {
        return Err("user information is not permitted in the URL");
    }
    if url.contains('#') {
        return Err("fragments are not permitted in the URL");
    }
    if url.contains('?') {
        return Err("query parameters are not permitted in the URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs<'a>(op: &'a str, group: &'a str, resource: &'a str, sub: &'a str) -> Attributes<'a> {
        Attributes {
            operation: op,
            group,
            version: "v1",
            resource,
            subresource: sub,
            namespaced: true,
        }
    }

    fn rule(resources: &[&str]) -> Rule {
        Rule {
            operations: vec!["CREATE".into()],
            api_groups: vec!["".into()],
            api_versions: vec!["v1".into()],
            resources: resources.iter().map(|s| s.to_string()).collect(),
            scope: None,
        }
    }

    #[test]
    fn rule_should_match_resources_and_subresources_as_kube() {
        let cases: &[(&[&str], &str, &str, bool)] = &[
            (&["pods"], "pods", "", true),
            (&["pods"], "pods", "status", false),
            (&["pods/*"], "pods", "status", true),
            (&["pods/*"], "pods", "", true),
            (&["*"], "pods", "", true),
            (&["*"], "pods", "status", false),
            (&["*/*"], "pods", "exec", true),
            (&["*/status"], "services", "status", true),
            (&["*/status"], "services", "", false),
            (&["pods/exec"], "pods", "exec", true),
            (&["pods/exec"], "pods", "attach", false),
            (&["services"], "pods", "", false),
        ];
        for (resources, resource, sub, want) in cases {
            let got = rule(resources).matches(&attrs("CREATE", "", resource, sub), false);
            assert_eq!(got, *want, "{resources:?} vs {resource}/{sub}");
        }
    }

    #[test]
    fn rule_should_match_operation_group_version_and_scope() {
        let mut r = rule(&["pods"]);
        assert!(!r.matches(&attrs("UPDATE", "", "pods", ""), false));
        r.operations = vec!["*".into()];
        assert!(r.matches(&attrs("UPDATE", "", "pods", ""), false));
        assert!(!r.matches(&attrs("CREATE", "apps", "pods", ""), false));
        let mut v2 = attrs("CREATE", "", "pods", "");
        v2.version = "v2";
        assert!(!r.matches(&v2, false));
        assert!(r.matches(&v2, true), "equivalent versions match");
        r.scope = Some("Cluster".into());
        assert!(!r.matches(&attrs("CREATE", "", "pods", ""), false));
        r.scope = Some("Namespaced".into());
        assert!(r.matches(&attrs("CREATE", "", "pods", ""), false));
    }

    #[test]
    fn webhook_should_take_kube_defaults() {
        let w = webhooks_of(
            &json!({"webhooks": [{"name": "a.b.c", "clientConfig": {"url": "https://x"}}]}),
        );
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].failure_policy, "Fail");
        assert_eq!(w[0].match_policy, "Equivalent");
        assert_eq!(w[0].timeout_seconds, 10);
        assert_eq!(w[0].reinvocation_policy, "Never");
        assert!(!w[0].ignores_failures());
    }

    #[test]
    fn selectors_should_match_namespace_and_object_labels() {
        let w = webhooks_of(&json!({"webhooks": [{
            "name": "a.b.c",
            "namespaceSelector": {"matchLabels": {"team": "a"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
        }]}));
        let w = &w[0];
        assert!(w.namespace_matches(Some(&json!({"team": "a"}))));
        assert!(!w.namespace_matches(Some(&json!({"team": "b"}))));
        assert!(w.namespace_matches(None), "cluster-scoped objects are not filtered");
        let with = json!({"metadata": {"labels": {"skip": "1"}}});
        let without = json!({"metadata": {}});
        assert!(!w.object_matches(Some(&with), None));
        assert!(w.object_matches(Some(&without), None));
        assert!(w.object_matches(Some(&with), Some(&without)), "either object matching is enough");
    }

    #[test]
    fn constraints_should_match_rules_names_exclusions_and_selectors() {
        let c = json!({
            "resourceRules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "resourceNames": ["a", "b"]}],
            "excludeResourceRules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["*"],
                "resources": ["pods"], "resourceNames": ["b"]}],
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
        });
        let a = attrs("CREATE", "", "pods", "");
        let prod = json!({"env": "prod"});
        assert!(constraints_match(Some(&c), &a, "a", Some(&prod), None, None));
        assert!(!constraints_match(Some(&c), &a, "b", Some(&prod), None, None), "excluded");
        assert!(!constraints_match(Some(&c), &a, "z", Some(&prod), None, None), "not named");
        assert!(!constraints_match(Some(&c), &a, "a", Some(&json!({})), None, None));
        assert!(constraints_match(None, &a, "anything", None, None, None));
    }

    #[test]
    fn validate_configuration_should_report_kube_messages() {
        let cfg = json!({"webhooks": [
            {"name": "short", "clientConfig": {}, "admissionReviewVersions": ["v2"], "timeoutSeconds": 31,
             "rules": [{"operations": ["PATCH"], "apiGroups": [""], "apiVersions": ["v1"], "resources": []}]},
            {"name": "ok.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "clientConfig": {"url": "http://insecure"}},
        ]});
        let errs = validate_configuration(&cfg, false);
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"webhooks[0].name"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].sideEffects"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].admissionReviewVersions"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].timeoutSeconds"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].clientConfig"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].rules[0].operations"), "{errs:?}");
        assert!(fields.contains(&"webhooks[0].rules[0].resources"), "{errs:?}");
        assert!(errs.iter().any(|(f, m)| f == "webhooks[1].clientConfig.url"
            && m.contains("'https' is the only allowed URL scheme")));
        let good = json!({"webhooks": [{"name": "ok.example.com", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "clientConfig": {"service": {"namespace": "a", "name": "b"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
        assert_eq!(validate_configuration(&good, true), Vec::new());
    }
}
