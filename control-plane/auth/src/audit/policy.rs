//! The audit policy file (`audit.k8s.io/v1` `Policy`, kube-apiserver's `--audit-policy-file`)
//! and the check that picks a request's level: kube's `audit/policy/checker.go` and the
//! policy validation of `apis/audit/validation`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::attributes::Attributes;
use crate::user::UserInfo;

pub const POLICY_API_VERSION: &str = "audit.k8s.io/v1";

/// How much of a request the audit log records. Ordered: each level records what the one
/// before it does, and more.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Level {
    /// Nothing.
    #[default]
    None,
    /// Who asked what, when, and the response code; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata and both bodies.
    RequestResponse,
}

impl Level {
    pub const ALL: [Level; 4] =
        [Level::None, Level::Metadata, Level::Request, Level::RequestResponse];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// The point of a request's handling an event is written at.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Stage {
    /// As soon as the request is received, before it is handled.
    #[default]
    RequestReceived,
    /// When a long-running request (watch, exec) has sent its response headers.
    ResponseStarted,
    /// When the response is complete.
    ResponseComplete,
    /// When handling the request failed unexpectedly.
    Panic,
}

impl Stage {
    pub const ALL: [Stage; 4] =
        [Stage::RequestReceived, Stage::ResponseStarted, Stage::ResponseComplete, Stage::Panic];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("parsing the audit policy: {0}")]
    Parse(String),
    #[error("the audit policy has apiVersion {0:?}; want {POLICY_API_VERSION}")]
    ApiVersion(String),
    #[error("the audit policy has kind {0:?}; want Policy")]
    Kind(String),
    /// kube-apiserver refuses an empty policy too: it would silently log nothing.
    #[error("the audit policy has no rules")]
    NoRules,
    #[error("invalid audit policy: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A parsed, validated audit policy. Rules are checked in order; the first that matches a
/// request decides its level; a request no rule matches is not audited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
    /// Stages no event is written at, whichever rule matches (added to each rule's own).
    pub omit_stages: Vec<Stage>,
    /// Drop `metadata.managedFields` from logged bodies, unless a rule says otherwise.
    pub omit_managed_fields: bool,
}

/// One rule. Every list that is not empty must match the request; empty lists match all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    /// Resource requests only. A resource is `pods`, `pods/log` (a subresource), `*`,
    /// `*/status` (that subresource of any resource) or `pods/*` (the resource and all its
    /// subresources).
    pub resources: Vec<GroupResources>,
    /// Resource requests in these namespaces only; `""` names cluster-scoped requests.
    pub namespaces: Vec<String>,
    /// Non-resource requests only: exact paths, `*`, or prefixes ending in `*`.
    pub non_resource_urls: Vec<String>,
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields` when set.
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupResources {
    /// The API group; `""` is the core group. No wildcard, as in kube-apiserver.
    pub group: String,
    /// Empty: every resource of the group.
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDecision {
    pub level: Level,
    /// Stages to write no event at (the rule's and the policy's), in stage order.
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

impl RuleDecision {
    pub fn omits(&self, stage: Stage) -> bool {
        self.omit_stages.contains(&stage)
    }
}

// The file's shape. Unknown fields are refused: a misspelt `omitStages` silently ignored
// would log what the author meant to leave out.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    rules: Vec<RawRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    omit_stages: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    omit_managed_fields: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    #[serde(default, deserialize_with = "null_as_default")]
    level: String,
    #[serde(default, deserialize_with = "null_as_default")]
    users: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    user_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    resources: Vec<RawGroupResources>,
    #[serde(default, deserialize_with = "null_as_default")]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", deserialize_with = "null_as_default")]
    non_resource_urls: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGroupResources {
    #[serde(default, deserialize_with = "null_as_default")]
    group: String,
    #[serde(default, deserialize_with = "null_as_default")]
    resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    resource_names: Vec<String>,
}

/// YAML's `users:` with nothing after it is null; read it as the empty list it means.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Policy {
    /// Parse and validate a policy file (YAML or JSON).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if raw.api_version != POLICY_API_VERSION {
            return Err(PolicyError::ApiVersion(raw.api_version));
        }
        if raw.kind != "Policy" {
            return Err(PolicyError::Kind(raw.kind));
        }
        if raw.rules.is_empty() {
            return Err(PolicyError::NoRules);
        }
        let mut errors = Vec::new();
        let omit_stages = parse_stages(&raw.omit_stages, "omitStages", &mut errors);
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            if let Some(rule) = parse_rule(r, &format!("rules[{i}]"), &mut errors) {
                rules.push(rule);
            }
        }
        if !errors.is_empty() {
            return Err(PolicyError::Invalid(errors));
        }
        Ok(Policy { rules, omit_stages, omit_managed_fields: raw.omit_managed_fields })
    }

    /// The level, stages and managed-fields choice for a request by `user` (the authenticated
    /// user, before impersonation, as kube-apiserver checks it) with `attrs`.
    pub fn evaluate(&self, user: &UserInfo, attrs: &Attributes) -> RuleDecision {
        match self.rules.iter().find(|r| r.matches(user, attrs)) {
            Some(rule) => RuleDecision {
                level: rule.level,
                omit_stages: union_stages(&self.omit_stages, &rule.omit_stages),
                omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
            },
            None => RuleDecision {
                level: Level::None,
                omit_stages: union_stages(&self.omit_stages, &[]),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }
}

fn union_stages(a: &[Stage], b: &[Stage]) -> Vec<Stage> {
    let mut all: Vec<Stage> = a.iter().chain(b).copied().collect();
    all.sort();
    all.dedup();
    all
}

fn parse_stages(raw: &[String], field: &str, errors: &mut Vec<String>) -> Vec<Stage> {
    let mut stages = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        match Stage::parse(s) {
            Some(st) => stages.push(st),
            None => errors.push(format!(
                "{field}[{i}]: unknown stage {s:?}: allowed stages are {}",
                Stage::ALL.map(Stage::as_str).join(", ")
            )),
        }
    }
    stages
}

fn parse_rule(r: RawRule, field: &str, errors: &mut Vec<String>) -> Option<PolicyRule> {
    let before = errors.len();
    let level = match Level::parse(&r.level) {
        Some(l) => Some(l),
        None if r.level.is_empty() => {
            errors.push(format!("{field}.level: required"));
            None
        }
        None => {
            errors.push(format!(
                "{field}.level: unknown level {:?}: supported levels are {}",
                r.level,
                Level::ALL.map(Level::as_str).join(", ")
            ));
            None
        }
    };
    for (i, url) in r.non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        if !url.starts_with('/') {
            errors.push(format!(
                "{field}.nonResourceURLs[{i}]: {url:?}: non-resource URL rules must begin with a '/'"
            ));
        }
        if url.strip_suffix('*').unwrap_or(url).contains('*') {
            errors.push(format!(
                "{field}.nonResourceURLs[{i}]: {url:?}: a wildcard '*' may only be the last character"
            ));
        }
    }
    for (i, gr) in r.resources.iter().enumerate() {
        if !gr.group.is_empty() && !is_dns_subdomain(&gr.group) {
            errors.push(format!(
                "{field}.resources[{i}].group: {:?} is not an API group name (a lower-case DNS subdomain, without version)",
                gr.group
            ));
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            errors.push(format!(
                "{field}.resources[{i}].resourceNames: using resourceNames requires at least one resource"
            ));
        }
    }
    if !r.non_resource_urls.is_empty() && (!r.resources.is_empty() || !r.namespaces.is_empty()) {
        errors.push(format!(
            "{field}.nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"
        ));
    }
    let omit_stages = parse_stages(&r.omit_stages, &format!("{field}.omitStages"), errors);
    if errors.len() > before {
        return None;
    }
    Some(PolicyRule {
        level: level?,
        users: r.users,
        user_groups: r.user_groups,
        verbs: r.verbs,
        resources: r
            .resources
            .into_iter()
            .map(|g| GroupResources {
                group: g.group,
                resources: g.resources,
                resource_names: g.resource_names,
            })
            .collect(),
        namespaces: r.namespaces,
        non_resource_urls: r.non_resource_urls,
        omit_stages,
        omit_managed_fields: r.omit_managed_fields,
    })
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

impl PolicyRule {
    /// Whether this rule applies to a request (kube's `ruleMatches`).
    pub fn matches(&self, user: &UserInfo, attrs: &Attributes) -> bool {
        if !self.users.is_empty() && !has(&self.users, &user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| has(&self.user_groups, g)) {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, &attrs.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return !attrs.resource_request
                && self.non_resource_urls.iter().any(|spec| path_matches(&attrs.path, spec));
        }
        true
    }

    fn matches_resource(&self, attrs: &Attributes) -> bool {
        if !attrs.resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !has(&self.namespaces, &attrs.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = attrs.resource_and_subresource();
        let sub = attrs.subresource.as_str();
        self.resources.iter().filter(|gr| gr.group == attrs.api_group).any(|gr| {
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !has(&gr.resource_names, &attrs.name) {
                return false;
            }
            gr.resources.iter().any(|res| {
                res == "*"
                    || *res == combined
                    || (!sub.is_empty() && res.strip_prefix("*/") == Some(sub))
                    || res.strip_suffix("/*") == Some(attrs.resource.as_str())
            })
        })
    }
}

/// `spec` is `*`, the exact path, or a prefix followed by `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}
