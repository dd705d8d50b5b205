//! Role-based access control: the rules of Roles and ClusterRoles, granted to users, groups and
//! service accounts by RoleBindings and ClusterRoleBindings. The Kubernetes counterparts are
//! kube-apiserver's RBAC authorizer (`plugin/pkg/auth/authorizer/rbac`) and its rule resolver
//! (`pkg/registry/rbac/validation/rule.go`), the rule matchers of `pkg/apis/rbac/v1`, the
//! escalation check's `Covers` (`k8s.io/component-helpers/auth/rbac/validation`) and the
//! union of rules the ClusterRole aggregation controller writes
//! (`pkg/controller/clusterroleaggregation`).
//!
//! The api server keeps one [`RbacIndex`], rebuilt from the stored objects whenever one of them
//! changes. A check reads only the bindings that name the user, one of its groups or its
//! service account (as a user name), cluster-wide and in the request's namespace; every role
//! reference is resolved when the index is built.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Attributes, Decision, UserInfo};

/// The API group of RBAC objects, and of User and Group subjects.
pub const API_GROUP: &str = "rbac.authorization.k8s.io";

/// The label prefix and value the default aggregated roles select
/// (`rbac.authorization.k8s.io/aggregate-to-admin: "true"`, ...).
pub const AGGREGATE_TO_PREFIX: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// One rule of a Role or ClusterRole (`rbac.authorization.k8s.io/v1` `PolicyRule`). Missing
/// and `null` lists read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub verbs: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    /// `verbs` on `resources` of `api_groups`.
    pub fn resource(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: strings(verbs),
            api_groups: strings(api_groups),
            resources: strings(resources),
            ..Default::default()
        }
    }

    /// `verbs` on the paths `urls` (a trailing `*` matches any suffix).
    pub fn non_resource(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule { verbs: strings(verbs), non_resource_urls: strings(urls), ..Default::default() }
    }

    /// The same rule, limited to the objects named `names`.
    pub fn with_names(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = strings(names);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Matching one rule

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == "*" || g == group)
}

/// `resource` or `resource/subresource` against the rule's resources, which may be `*`,
/// `resource/subresource` or `*/subresource`. Compared piecewise so a check allocates nothing.
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == "*" {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, sub)) => sub == subresource && (res == resource || res == "*"),
            None => false,
        }
    })
}

fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// Whether `rule` allows the request `attrs`, as Kubernetes' `RuleAllows`: verb, then for a
/// resource request the API group, `resource[/subresource]` (also through `*` and
/// `*/subresource`) and the object's name when the rule names objects; for any other request
/// the path (exact, `*`, or a prefix ending in `*`).
pub fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    if attrs.resource_request {
        api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, &attrs.resource, &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        non_resource_url_matches(rule, &attrs.path)
    }
}

// ---------------------------------------------------------------------------------------------
// Covers: the escalation check

/// The rule broken into rules of one verb, group, resource and name each (URL rules into one
/// verb and URL each), as Kubernetes' `BreakdownRule`.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(
                        rule.resource_names
                            .iter()
                            .map(|name| PolicyRule { resource_names: one(name), ..base.clone() }),
                    );
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..Default::default()
            });
        }
    }
    out
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    has(owner, "*")
        || wanted.iter().all(|w| {
            has(owner, w)
                || w.split_once('/')
                    .is_some_and(|(_, sub)| owner.iter().any(|o| o.strip_prefix("*/") == Some(sub)))
        })
}

fn urls_cover(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        owner.iter().any(|o| o == w || (o.ends_with('*') && w.starts_with(o.trim_end_matches('*'))))
    })
}

/// Whether `owner` (any rule) grants everything `sub` (one broken-down rule) asks.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let names = owner.resource_names.is_empty()
        || (!sub.resource_names.is_empty() && has_all(&owner.resource_names, &sub.resource_names));
    verbs
        && groups
        && names
        && resources_cover(&owner.resources, &sub.resources)
        && urls_cover(&owner.non_resource_urls, &sub.non_resource_urls)
}

/// Whether the rules `owner` holds cover every permission `requested` asks, as Kubernetes'
/// `validation.Covers` (the check that keeps a user from granting what it does not hold).
/// On failure, the permissions not covered, one verb, group, resource and name (or one verb
/// and URL) each, in the order of `requested`.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> Result<(), Vec<PolicyRule>> {
    let missing: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}

/// Merges rules that differ only in their verbs and name one group and one resource (and no
/// object names or URLs) into one rule each, as Kubernetes' `CompactRules` does before it
/// reports missing permissions. Other rules are kept as they are; first-seen order.
pub fn compact(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut other = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut by_resource: HashMap<(&str, &str), usize> = HashMap::new();
    for rule in rules {
        let is_simple = rule.resource_names.is_empty()
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            other.push(rule.clone());
            continue;
        }
        let key = (rule.api_groups[0].as_str(), rule.resources[0].as_str());
        match by_resource.get(&key) {
            Some(&i) => simple[i].verbs.extend(rule.verbs.iter().cloned()),
            None => {
                by_resource.insert(key, simple.len());
                simple.push(rule.clone());
            }
        }
    }
    other.extend(simple);
    other
}

/// Go's `%q` of a string: quoted, with quotes, backslashes and control characters escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// A rule as Kubernetes prints it in error messages (`CompactString`):
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`; empty lists are left out.
pub fn describe(rule: &PolicyRule) -> String {
    let parts: Vec<String> = [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ]
    .into_iter()
    .filter(|(_, items)| !items.is_empty())
    .map(|(field, items)| format!("{field}:{}", go_quote_list(items)))
    .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Several errors as one message, as apimachinery's aggregate error prints them: one error
/// as itself, more as `[a, b]` (repeated messages once).
pub fn join_errors(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The message kube-apiserver rejects an escalating Role, ClusterRole or binding with:
/// `user "u" (groups=["g"]) is attempting to grant RBAC permissions not currently held:` and
/// the `missing` permissions (as [`covers`] returned them), compacted, one per line, sorted;
/// then any errors met resolving the user's own rules.
pub fn escalation_message(
    user: &UserInfo,
    missing: &[PolicyRule],
    resolution_errors: &[String],
) -> String {
    let mut lines: Vec<String> = compact(missing).iter().map(describe).collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        lines.join("\n")
    );
    if !resolution_errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", join_errors(resolution_errors)));
    }
    msg
}

// ---------------------------------------------------------------------------------------------
// Aggregation

/// A ClusterRole as aggregation reads it.
struct ParsedClusterRole<'a> {
    name: &'a str,
    labels: Option<&'a Value>,
    selectors: Option<Vec<Value>>,
    rules: Vec<PolicyRule>,
}

impl<'a> ParsedClusterRole<'a> {
    fn parse(obj: &'a Value) -> ParsedClusterRole<'a> {
        ParsedClusterRole {
            name: name_of(obj),
            labels: metadata_field(obj, "labels"),
            selectors: aggregation_selectors(obj),
            rules: rules_of(obj),
        }
    }
}

/// The rules of every role in `candidates` (sorted by name) that any of `selectors` selects,
/// other than `target` itself: per selector in order, per role by name, each rule once.
fn aggregate_rules(
    target: &str,
    selectors: &[Value],
    candidates: &[ParsedClusterRole<'_>],
) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for role in candidates {
            if role.name == target
                || !skiff_helpers::labels::json_selector_matches(selector, role.labels)
            {
                continue;
            }
            for rule in &role.rules {
                if !out.contains(rule) {
                    out.push(rule.clone());
                }
            }
        }
    }
    out
}

/// The `clusterRoleSelectors` of an object's `aggregationRule`; None without one.
fn aggregation_selectors(role: &Value) -> Option<Vec<Value>> {
    let rule = role.get("aggregationRule").filter(|r| !r.is_null())?;
    Some(rule.get("clusterRoleSelectors").and_then(Value::as_array).cloned().unwrap_or_default())
}

fn metadata_field<'v>(obj: &'v Value, field: &str) -> Option<&'v Value> {
    obj.get("metadata")?.get(field)
}

fn name_of(obj: &Value) -> &str {
    metadata_field(obj, "name").and_then(Value::as_str).unwrap_or("")
}

fn namespace_of(obj: &Value) -> &str {
    metadata_field(obj, "namespace").and_then(Value::as_str).unwrap_or("")
}

/// The `rules` of a Role or ClusterRole. A rule that does not parse is left out (it could only
/// have come from a store that skipped validation), so a damaged object grants less, never
/// more.
fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    let Some(rules) = obj.get("rules").and_then(Value::as_array) else {
        return Vec::new();
    };
    rules
        .iter()
        .filter_map(|r| match PolicyRule::deserialize(r) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::warn!(role = name_of(obj), error = %e, "ignoring a policy rule that does not parse");
                None
            }
        })
        .collect()
}

/// The rules the ClusterRole `target` gets from its `aggregationRule`, as the ClusterRole
/// aggregation controller computes them: for each of its `clusterRoleSelectors` in order, the
/// rules of every ClusterRole in `cluster_roles` the selector matches (`matchLabels` and
/// `matchExpressions` In/NotIn/Exists/DoesNotExist), by name, leaving out `target` itself and
/// rules already taken. The `rules` of the selected roles are read as stored, so aggregated
/// roles that select one another converge over repeated runs, as they do under the
/// controller. None when `target` has no `aggregationRule`.
pub fn aggregate(target: &Value, cluster_roles: &[&Value]) -> Option<Vec<PolicyRule>> {
    let selectors = aggregation_selectors(target)?;
    let mut candidates: Vec<ParsedClusterRole<'_>> =
        cluster_roles.iter().map(|r| ParsedClusterRole::parse(r)).collect();
    candidates.sort_by(|a, b| a.name.cmp(b.name));
    Some(aggregate_rules(name_of(target), &selectors, &candidates))
}

// ---------------------------------------------------------------------------------------------
// The index

/// The four kinds of RBAC objects as stored: JSON of `rbac.authorization.k8s.io/v1` Role,
/// ClusterRole, RoleBinding and ClusterRoleBinding objects, borrowed from the caller (the index
/// copies what it keeps).
#[derive(Debug, Clone, Default)]
pub struct RbacObjects<'a> {
    pub roles: Vec<&'a Value>,
    pub cluster_roles: Vec<&'a Value>,
    pub role_bindings: Vec<&'a Value>,
    pub cluster_role_bindings: Vec<&'a Value>,
}

impl<'a> RbacObjects<'a> {
    /// Sorts `objects` by their `kind`; objects of other kinds are left out.
    pub fn from_objects(objects: impl IntoIterator<Item = &'a Value>) -> RbacObjects<'a> {
        let mut out = RbacObjects::default();
        for obj in objects {
            match obj.get("kind").and_then(Value::as_str) {
                Some("Role") => out.roles.push(obj),
                Some("ClusterRole") => out.cluster_roles.push(obj),
                Some("RoleBinding") => out.role_bindings.push(obj),
                Some("ClusterRoleBinding") => out.cluster_role_bindings.push(obj),
                _ => {}
            }
        }
        out
    }
}

type Rules = Arc<[PolicyRule]>;

/// One binding with its role reference resolved.
#[derive(Debug)]
struct Grant {
    /// `ClusterRoleBinding "b" of ClusterRole "r"` or `RoleBinding "b/ns" of Role "r"`.
    source: String,
    /// Each subject as Kubernetes describes it (`User "u"`, `ServiceAccount "sa/ns"`).
    subjects: Vec<String>,
    /// The role's rules, or why the reference does not resolve.
    rules: Result<Rules, String>,
}

/// A binding as filed under one of its subjects.
#[derive(Debug, Clone)]
struct Entry {
    /// The binding's place among its scope's bindings (by name), so a check visits bindings in
    /// a stable order whichever subjects brought them in.
    order: u32,
    /// Which of the binding's subjects this entry is filed under.
    subject: u32,
    grant: Arc<Grant>,
}

/// The bindings of one scope (cluster-wide, or one namespace) by subject. Service account
/// subjects are filed under their user name, `system:serviceaccount:<ns>:<name>`.
#[derive(Debug, Default)]
struct Bindings {
    users: HashMap<String, Vec<Entry>>,
    groups: HashMap<String, Vec<Entry>>,
}

impl Bindings {
    /// Every binding with a subject that is `user`, once, in binding order, each with the first
    /// of its subjects that applies (as Kubernetes' `appliesTo` picks it).
    fn applying<'s>(&'s self, user: &UserInfo, out: &mut Vec<&'s Entry>) {
        out.clear();
        if let Some(entries) = self.users.get(user.name.as_str()) {
            out.extend(entries);
        }
        for group in &user.groups {
            if let Some(entries) = self.groups.get(group.as_str()) {
                out.extend(entries);
            }
        }
        if out.len() > 1 {
            out.sort_unstable_by_key(|e| (e.order, e.subject));
            out.dedup_by_key(|e| e.order);
        }
    }

    fn add(
        &mut self,
        binding: &Value,
        binding_namespace: &str,
        order: u32,
        rules: Result<Rules, String>,
    ) {
        let role_ref = binding.get("roleRef");
        let ref_field =
            |f: &str| role_ref.and_then(|r| r.get(f)).and_then(Value::as_str).unwrap_or("");
        let source = if binding_namespace.is_empty() {
            format!(
                "ClusterRoleBinding {} of {} {}",
                go_quote(name_of(binding)),
                ref_field("kind"),
                go_quote(ref_field("name"))
            )
        } else {
            format!(
                "RoleBinding {} of {} {}",
                go_quote(&format!("{}/{binding_namespace}", name_of(binding))),
                ref_field("kind"),
                go_quote(ref_field("name"))
            )
        };
        let subjects =
            binding.get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        // Where each subject is filed: (subject index, is it a group, user or group name).
        let mut filed: Vec<(u32, bool, String)> = Vec::new();
        let mut described = Vec::with_capacity(subjects.len());
        for (i, subject) in subjects.iter().enumerate() {
            let field = |f: &str| subject.get(f).and_then(Value::as_str).unwrap_or("");
            let (kind, name) = (field("kind"), field("name"));
            match kind {
                "User" => {
                    filed.push((i as u32, false, name.to_string()));
                    described.push(format!("User {}", go_quote(name)));
                }
                "Group" => {
                    filed.push((i as u32, true, name.to_string()));
                    described.push(format!("Group {}", go_quote(name)));
                }
                "ServiceAccount" => {
                    // A service account subject without a namespace means the binding's own;
                    // in a ClusterRoleBinding it matches no one.
                    let ns = match field("namespace") {
                        "" => binding_namespace,
                        ns => ns,
                    };
                    if !ns.is_empty() {
                        filed.push((
                            i as u32,
                            false,
                            format!("{}{ns}:{name}", crate::user::SERVICE_ACCOUNT_PREFIX),
                        ));
                    }
                    described.push(format!("ServiceAccount {}", go_quote(&format!("{name}/{ns}"))));
                }
                other => described.push(format!("{other} {}", go_quote(name))),
            }
        }
        if filed.is_empty() {
            return;
        }
        let grant = Arc::new(Grant { source, subjects: described, rules });
        for (subject, is_group, key) in filed {
            let entry = Entry { order, subject, grant: grant.clone() };
            let map = if is_group { &mut self.groups } else { &mut self.users };
            map.entry(key).or_default().push(entry);
        }
    }
}

/// An immutable index that answers RBAC questions: built from every Role, ClusterRole,
/// RoleBinding and ClusterRoleBinding whenever one changes, then shared (behind an `Arc`) by
/// every request. Role references are resolved at build time; aggregated ClusterRoles hold the
/// union their `aggregationRule` selects (computed here, so the answer does not wait for the
/// aggregation controller to write it back).
#[derive(Debug, Default)]
pub struct RbacIndex {
    cluster: Bindings,
    namespaced: HashMap<String, Bindings>,
    cluster_roles: HashMap<String, Rules>,
    roles: HashMap<String, HashMap<String, Rules>>,
}

/// Gives every aggregated ClusterRole the union its selectors pick from the others, repeating
/// until nothing changes so that aggregated roles that select aggregated roles (admin selects
/// edit, edit selects view) see the final rules, as the controller's repeated runs do. Bounded,
/// so a cycle of roles selecting each other cannot loop for ever.
fn resolve_aggregation(roles: &mut [ParsedClusterRole<'_>]) {
    roles.sort_by(|a, b| a.name.cmp(b.name));
    let aggregated: Vec<usize> =
        (0..roles.len()).filter(|&i| roles[i].selectors.is_some()).collect();
    for _ in 0..=aggregated.len() {
        let mut changed = false;
        for &i in &aggregated {
            let selectors = roles[i].selectors.as_deref().unwrap_or(&[]);
            let rules = aggregate_rules(roles[i].name, selectors, roles);
            if rules != roles[i].rules {
                roles[i].rules = rules;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Kubernetes' message for a role reference that names no role.
fn not_found(kind: &str, name: &str) -> String {
    format!("{}.{API_GROUP} {} not found", kind.to_ascii_lowercase(), go_quote(name))
}

impl RbacIndex {
    /// Indexes `objects`. Bindings whose role is missing grant nothing (and are reported by
    /// [`RbacIndex::rules_for`] and in [`RbacIndex::authorize`]'s reason); objects without a
    /// name are ignored.
    pub fn build(objects: &RbacObjects<'_>) -> RbacIndex {
        let mut cluster_roles: Vec<ParsedClusterRole<'_>> = objects
            .cluster_roles
            .iter()
            .filter(|r| !name_of(r).is_empty())
            .map(|r| ParsedClusterRole::parse(r))
            .collect();
        resolve_aggregation(&mut cluster_roles);
        let cluster_roles: HashMap<String, Rules> =
            cluster_roles.into_iter().map(|r| (r.name.to_string(), r.rules.into())).collect();

        let mut roles: HashMap<String, HashMap<String, Rules>> = HashMap::new();
        for role in &objects.roles {
            let (ns, name) = (namespace_of(role), name_of(role));
            if ns.is_empty() || name.is_empty() {
                continue;
            }
            roles
                .entry(ns.to_string())
                .or_default()
                .insert(name.to_string(), rules_of(role).into());
        }

        let mut index = RbacIndex { cluster_roles, roles, ..Default::default() };

        // Sorted by name (namespace, name), with the keys read once.
        let mut crbs: Vec<(&str, &Value)> = objects
            .cluster_role_bindings
            .iter()
            .map(|b| (name_of(b), *b))
            .filter(|(name, _)| !name.is_empty())
            .collect();
        crbs.sort_by(|a, b| a.0.cmp(b.0));
        for (order, (_, binding)) in crbs.into_iter().enumerate() {
            let rules = index.resolve(binding, "");
            index.cluster.add(binding, "", order as u32, rules);
        }

        let mut rbs: Vec<(&str, &str, &Value)> = objects
            .role_bindings
            .iter()
            .map(|b| (namespace_of(b), name_of(b), *b))
            .filter(|(ns, name, _)| !ns.is_empty() && !name.is_empty())
            .collect();
        rbs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (order, (ns, _, binding)) in rbs.into_iter().enumerate() {
            let rules = index.resolve(binding, ns);
            if !index.namespaced.contains_key(ns) {
                index.namespaced.insert(ns.to_string(), Bindings::default());
            }
            if let Some(bindings) = index.namespaced.get_mut(ns) {
                bindings.add(binding, ns, order as u32, rules);
            }
        }
        index
    }

    /// The rules a binding's `roleRef` names (a Role in the binding's namespace, or a
    /// ClusterRole), as Kubernetes' `GetRoleReferenceRules`.
    fn resolve(&self, binding: &Value, namespace: &str) -> Result<Rules, String> {
        let role_ref = binding.get("roleRef");
        let field = |f: &str| role_ref.and_then(|r| r.get(f)).and_then(Value::as_str).unwrap_or("");
        let (kind, name) = (field("kind"), field("name"));
        match kind {
            "Role" => self
                .roles
                .get(namespace)
                .and_then(|r| r.get(name))
                .cloned()
                .ok_or_else(|| not_found(kind, name)),
            "ClusterRole" => {
                self.cluster_roles.get(name).cloned().ok_or_else(|| not_found(kind, name))
            }
            other => Err(format!("unsupported role reference kind: {}", go_quote(other))),
        }
    }

    /// The rules of the Role `namespace/name` (kind `Role`) or the ClusterRole `name` (kind
    /// `ClusterRole`; aggregated ones with their aggregated rules): what a binding to it grants,
    /// for the check that a user may create that binding. None when there is no such role.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        match kind {
            "Role" => self.roles.get(namespace)?.get(name).map(|r| &r[..]),
            "ClusterRole" => self.cluster_roles.get(name).map(|r| &r[..]),
            _ => None,
        }
    }

    /// The RoleBindings of `namespace`; none for `""` (cluster-wide).
    fn namespace(&self, namespace: &str) -> Option<&Bindings> {
        if namespace.is_empty() { None } else { self.namespaced.get(namespace) }
    }

    /// kube-apiserver's RBAC authorizer. Allow, with a reason that names the binding, role and
    /// subject (`RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to User "u"`, or
    /// `RBAC: allowed by RoleBinding "b/ns" of Role "r" to Group "g"`), when a rule of a
    /// ClusterRoleBinding or of a RoleBinding in the request's namespace allows it; otherwise
    /// no opinion, with the bindings that name missing roles as the reason (empty when there
    /// are none). RBAC never denies.
    ///
    /// A request without a namespace (cluster-scoped resources, non-resource paths) reads only
    /// ClusterRoleBindings, so a RoleBinding never grants those, even to a ClusterRole.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        let mut candidates: Vec<&Entry> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for bindings in std::iter::once(&self.cluster).chain(self.namespace(&attrs.namespace)) {
            bindings.applying(user, &mut candidates);
            for entry in &candidates {
                match &entry.grant.rules {
                    Ok(rules) => {
                        if rules.iter().any(|r| rule_allows(r, attrs)) {
                            let subject = entry.grant.subjects.get(entry.subject as usize);
                            return Decision::Allow(format!(
                                "RBAC: allowed by {} to {}",
                                entry.grant.source,
                                subject.map(String::as_str).unwrap_or("")
                            ));
                        }
                    }
                    Err(e) => errors.push(e.clone()),
                }
            }
        }
        if errors.is_empty() {
            Decision::NoOpinion(String::new())
        } else {
            Decision::NoOpinion(format!("RBAC: {}", join_errors(&errors)))
        }
    }

    /// Every rule that applies to `user` in `namespace` (`""`: cluster-wide bindings only), for
    /// SelfSubjectRulesReview and the escalation check: ClusterRoleBindings first, then the
    /// namespace's RoleBindings, each in name order. The second list holds one error for each
    /// applying binding whose role is missing (the review's `incomplete` and
    /// `evaluationError`, through [`join_errors`]); the rules returned still hold.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let mut candidates: Vec<&Entry> = Vec::new();
        for bindings in std::iter::once(&self.cluster).chain(self.namespace(namespace)) {
            bindings.applying(user, &mut candidates);
            for entry in &candidates {
                match &entry.grant.rules {
                    Ok(r) => rules.extend(r.iter().cloned()),
                    Err(e) => errors.push(e.clone()),
                }
            }
        }
        (rules, errors)
    }
}

#[cfg(test)]
mod tests;
