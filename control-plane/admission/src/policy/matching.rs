//! kube's `policy/matching`: whether a policy's `matchConstraints` and a binding's
//! `matchResources` select a request (namespace and object selectors, resource rules with
//! resource names, excluded rules, `matchPolicy`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use super::PolicyRequest;
use crate::webhook::{Attributes, Rule};

/// Whether the policy applies to the request under this binding: the binding names the
/// policy, the policy's `matchConstraints` select the request, and so does the binding's
/// `matchResources` when it has one. A policy without `matchConstraints` matches nothing
/// (kube reports it as a configuration error).
pub fn matches(policy: &Value, binding: &Value, req: &PolicyRequest<'_>) -> bool {
    Matcher::new(policy, binding).matches(req)
}

/// [`matches`] with the rules and selectors of a (policy, binding) parsed once, for the api
/// server to keep with the compiled policy.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// `None`: the binding names another policy, or the policy has no `matchConstraints`.
    policy: Option<Resources>,
    binding: Option<Resources>,
}

impl Matcher {
    pub fn new(policy: &Value, binding: &Value) -> Matcher {
        let policy_name = policy.pointer("/metadata/name").and_then(Value::as_str);
        let bound = binding.pointer("/spec/policyName").and_then(Value::as_str);
        let constraints = policy.pointer("/spec/matchConstraints");
        let usable = (bound.is_none() || bound == policy_name) && constraints.is_some();
        Matcher {
            policy: constraints.filter(|_| usable).map(Resources::new),
            binding: binding.pointer("/spec/matchResources").map(Resources::new),
        }
    }

    pub fn matches(&self, req: &PolicyRequest<'_>) -> bool {
        let Some(policy) = &self.policy else { return false };
        policy.matches(req) && self.binding.as_ref().is_none_or(|b| b.matches(req))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
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

/// A selector as written; one that does not parse selects nothing.
#[derive(Debug, Clone)]
enum Selector {
    Parsed(LabelSelector),
    Invalid,
}

impl Selector {
    fn new(v: Option<&Value>) -> Option<Selector> {
        let v = v.filter(|v| !v.is_null())?;
        Some(match LabelSelector::deserialize(v) {
            Ok(s) => Selector::Parsed(s),
            Err(_) => Selector::Invalid,
        })
    }

    /// Against the labels of `object` (read in place).
    fn matches(&self, object: Option<&Value>) -> bool {
        let Selector::Parsed(selector) = self else { return false };
        let labels = object.and_then(|o| o.pointer("/metadata/labels")).and_then(Value::as_object);
        skiff_helpers::labels::selector_matches_with(selector, |k| {
            labels.and_then(|l| l.get(k)).and_then(Value::as_str)
        })
    }
}

/// One `MatchResources`, parsed.
#[derive(Debug, Clone)]
struct Resources {
    namespace_selector: Option<Selector>,
    object_selector: Option<Selector>,
    any_version: bool,
    include: Vec<NamedRule>,
    exclude: Vec<NamedRule>,
}

impl Resources {
    fn new(mr: &Value) -> Resources {
        Resources {
            namespace_selector: Selector::new(mr.get("namespaceSelector")),
            object_selector: Selector::new(mr.get("objectSelector")),
            // `Equivalent` (the default): Skiff serves each resource in one version, so a
            // rule for another version of the same group and resource covers the request.
            any_version: mr.get("matchPolicy").and_then(Value::as_str) != Some("Exact"),
            include: rules(mr.get("resourceRules")),
            exclude: rules(mr.get("excludeResourceRules")),
        }
    }

    fn matches(&self, req: &PolicyRequest<'_>) -> bool {
        if !self.namespace_matches(req) || !self.object_matches(req) {
            return false;
        }
        if rule_matches(&self.exclude, req, self.any_version) {
            return false;
        }
        self.include.is_empty() || rule_matches(&self.include, req, self.any_version)
    }

    /// kube's namespace predicate: a Namespace is matched on its own labels, other
    /// cluster-scoped objects always match, namespaced ones on their namespace's labels.
    fn namespace_matches(&self, req: &PolicyRequest<'_>) -> bool {
        let Some(selector) = &self.namespace_selector else { return true };
        if req.group.is_empty() && req.resource == "namespaces" && req.subresource.is_empty() {
            let own = req.object.filter(|o| o.pointer("/metadata/labels").is_some());
            return selector.matches(own.or(req.old_object));
        }
        if !req.namespaced || req.namespace.is_empty() {
            return true;
        }
        selector.matches(req.namespace_object)
    }

    /// kube's object predicate: the new object's labels or the old one's.
    fn object_matches(&self, req: &PolicyRequest<'_>) -> bool {
        let Some(selector) = &self.object_selector else { return true };
        [req.object, req.old_object].into_iter().flatten().any(|o| selector.matches(Some(o)))
    }
}
