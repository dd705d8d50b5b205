//! kube's `policy/matching`: whether a policy's `matchConstraints` and a binding's
//! `matchResources` select a request (namespace and object selectors, resource rules with
//! resource names, excluded rules, `matchPolicy`).

use serde::Deserialize;
use serde_json::Value;

use super::PolicyRequest;
use crate::webhook::{Attributes, Rule};

/// Whether the policy applies to the request under this binding: the binding names the
/// policy, the policy's `matchConstraints` select the request, and so does the binding's
/// `matchResources` when it has one. A policy without `matchConstraints` matches nothing
/// (kube reports it as a configuration error).
pub fn matches(policy: &Value, binding: &Value, req: &PolicyRequest<'_>) -> bool {
    let policy_name = policy.pointer("/metadata/name").and_then(Value::as_str);
    let bound = binding.pointer("/spec/policyName").and_then(Value::as_str);
    if bound.is_some() && bound != policy_name {
        return false;
    }
    let Some(constraints) = policy.pointer("/spec/matchConstraints") else { return false };
    if !resources_match(constraints, req) {
        return false;
    }
    binding.pointer("/spec/matchResources").is_none_or(|mr| resources_match(mr, req))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamedRule {
    #[serde(flatten)]
    rule: Rule,
    #[serde(default)]
    resource_names: Vec<String>,
}

fn rules(v: Option<&Value>) -> Vec<NamedRule> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| NamedRule::deserialize(r).ok())
        .collect()
}

fn rule_matches(rules: &[NamedRule], req: &PolicyRequest<'_>, any_version: bool) -> bool {
    let attrs = Attributes {
        operation: req.operation,
        group: req.group,
        version: req.version,
        resource: req.resource,
        subresource: req.subresource,
        namespaced: req.namespaced,
    };
    rules.iter().any(|r| {
        r.rule.matches(&attrs, any_version)
            && (r.resource_names.is_empty() || r.resource_names.iter().any(|n| n == req.name))
    })
}

fn labels(object: Option<&Value>) -> Option<&Value> {
    object.and_then(|o| o.pointer("/metadata/labels"))
}

/// kube's namespace predicate: a Namespace is matched on its own labels, other
/// cluster-scoped objects always match, namespaced ones on their namespace's labels.
fn namespace_matches(selector: Option<&Value>, req: &PolicyRequest<'_>) -> bool {
    let Some(selector) = selector else { return true };
    if req.group.is_empty() && req.resource == "namespaces" && req.subresource.is_empty() {
        let own = labels(req.object).or_else(|| labels(req.old_object));
        return skiff_helpers::labels::json_selector_matches(selector, own);
    }
    if !req.namespaced || req.namespace.is_empty() {
        return true;
    }
    skiff_helpers::labels::json_selector_matches(selector, labels(req.namespace_object))
}

/// kube's object predicate: the new object's labels or the old one's.
fn object_matches(selector: Option<&Value>, req: &PolicyRequest<'_>) -> bool {
    let Some(selector) = selector else { return true };
    [req.object, req.old_object]
        .into_iter()
        .flatten()
        .any(|o| skiff_helpers::labels::json_selector_matches(selector, labels(Some(o))))
}

/// One `MatchResources` against the request.
fn resources_match(mr: &Value, req: &PolicyRequest<'_>) -> bool {
    if !namespace_matches(mr.get("namespaceSelector"), req)
        || !object_matches(mr.get("objectSelector"), req)
    {
        return false;
    }
    // `Equivalent` (the default): Skiff serves each resource in one version, so a rule for
    // another version of the same group and resource covers the request.
    let any_version = mr.get("matchPolicy").and_then(Value::as_str) != Some("Exact");
    if rule_matches(&rules(mr.get("excludeResourceRules")), req, any_version) {
        return false;
    }
    let included = rules(mr.get("resourceRules"));
    included.is_empty() || rule_matches(&included, req, any_version)
}
