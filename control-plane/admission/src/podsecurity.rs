//! Pod Security Admission: the Pod Security Standards (privileged, baseline, restricted, each
//! at a policy version), a namespace's policy from its `pod-security.kubernetes.io/*` labels,
//! and the admission decision kube-apiserver's `PodSecurity` plugin makes for pods, workload
//! templates and namespaces. Counterparts (Kubernetes 1.35): `k8s.io/pod-security-admission`
//! `api/helpers.go`, `admission/admission.go`, `admission/response.go`, the checks in `policy/`
//! (see [`checks`]), and `plugin/pkg/admission/security/podsecurity/admission.go`.
//!
//! Everything here is pure: the api server passes in the namespace's labels (and, for a
//! namespace update, its pods) from its caches.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

pub mod checks;
#[cfg(test)]
mod tests;

pub use checks::go_quote;

/// Prefix of the namespace labels and of the audit annotations the plugin adds.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

pub const ENFORCE_POLICY_ANNOTATION: &str = "pod-security.kubernetes.io/enforce-policy";
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "pod-security.kubernetes.io/audit-violations";
pub const EXEMPT_ANNOTATION: &str = "pod-security.kubernetes.io/exempt";
pub const ERROR_ANNOTATION: &str = "pod-security.kubernetes.io/error";

/// At most this many existing pods are evaluated when a namespace's enforce level tightens.
pub const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

/// A Pod Security Standards level, ordered from least to most strict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level at a version: `None` is "latest".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Option<(u32, u32)>,
}

impl LevelVersion {
    pub const PRIVILEGED_LATEST: LevelVersion = LevelVersion::latest(Level::Privileged);

    pub const fn latest(level: Level) -> LevelVersion {
        LevelVersion { level, version: None }
    }

    /// "restricted:latest", "baseline:v1.30" — as kube prints them in messages.
    pub fn label(&self) -> String {
        match self.version {
            None => format!("{}:latest", self.level),
            Some((major, minor)) => format!("{}:v{major}.{minor}", self.level),
        }
    }

    /// Both privileged (whatever the version), or the same level and version.
    fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

/// Parses a `*-version` label value: `Ok(None)` for "latest", `Ok(Some((1, x)))` for "v1.x".
/// Minor versions beyond `u32` are refused (kube accepts up to `i64`; they mean "latest" anyway).
pub fn parse_version(s: &str) -> Result<Option<(u32, u32)>, &'static str> {
    const ERR: &str = r#"must be "latest" or "v1.x""#;
    if s == "latest" {
        return Ok(None);
    }
    let minor = s.strip_prefix("v1.").ok_or(ERR)?;
    let digits_ok = !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
        && (minor.len() == 1 || !minor.starts_with('0'));
    if !digits_ok {
        return Err(ERR);
    }
    minor.parse::<u32>().map(|m| Some((1, m))).map_err(|_| ERR)
}

/// The three modes of a namespace, from its labels
/// (pod-security.kubernetes.io/{enforce,audit,warn}[-version]) over the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for NamespacePolicy {
    /// kube-apiserver's built-in defaults: privileged:latest for every mode.
    fn default() -> Self {
        NamespacePolicy {
            enforce: LevelVersion::PRIVILEGED_LATEST,
            audit: LevelVersion::PRIVILEGED_LATEST,
            warn: LevelVersion::PRIVILEGED_LATEST,
        }
    }
}

impl NamespacePolicy {
    /// The policy the labels ask for, or kube's messages for the label values it refuses
    /// (`metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "superstrict":
    /// must be one of privileged, baseline, restricted`).
    ///
    /// What kube does with bad values: a namespace *create* with any of them is refused (422
    /// Invalid); an *update* is refused only when its errors differ from the old object's, so
    /// a namespace that already had bad labels can still be updated (see
    /// [`namespace_label_errors`]). Pods in such a namespace are still evaluated, with the
    /// fallback [`policy_to_evaluate`] returns and an `error` audit annotation.
    pub fn from_labels(
        labels: &Map<String, Value>,
        defaults: &NamespacePolicy,
    ) -> Result<NamespacePolicy, Vec<String>> {
        let (policy, errors) = policy_to_evaluate(labels, defaults);
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors.iter().map(ToString::to_string).collect())
        }
    }

    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn].iter().all(|lv| lv.level == Level::Privileged)
    }

    fn equivalent(&self, other: &NamespacePolicy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// A namespace label value kube refuses, as a field error on `metadata.labels[<label>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    pub label: &'static str,
    pub value: String,
    pub detail: &'static str,
}

impl LabelError {
    /// The field path kube reports: `metadata.labels[pod-security.kubernetes.io/enforce]`.
    pub fn field(&self) -> String {
        format!("metadata.labels[{}]", self.label)
    }

    /// The message without the field, as in a Status cause: `Invalid value: "x": must be ...`.
    pub fn body(&self) -> String {
        format!("Invalid value: {}: {}", go_quote(&self.value), self.detail)
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field(), self.body())
    }
}

const LEVEL_ERROR: &str = "must be one of privileged, baseline, restricted";

/// kube's `PolicyToEvaluate`: the policy to apply and the label errors. A usable policy comes
/// back even with errors: a bad enforce level means restricted, a bad audit or warn level
/// means privileged (fail open), a bad version means latest. When only the enforce level is
/// set and it is stricter than warn, warn follows it (and its version, unless warn-version is
/// set).
pub fn policy_to_evaluate(
    labels: &Map<String, Value>,
    defaults: &NamespacePolicy,
) -> (NamespacePolicy, Vec<LabelError>) {
    let mut policy = *defaults;
    let mut errors = Vec::new();
    let value_of = |label: &str| labels.get(label).map(label_text);

    let parse_level = |label: &'static str, on_error: Level, errors: &mut Vec<LabelError>| {
        let value = value_of(label)?;
        Some(Level::parse(&value).ok_or_else(|| {
            errors.push(LabelError { label, value, detail: LEVEL_ERROR });
            on_error
        }))
    };
    let mut enforce_level_ok = false;
    if let Some(level) = parse_level(ENFORCE_LEVEL_LABEL, Level::Restricted, &mut errors) {
        enforce_level_ok = level.is_ok();
        policy.enforce.level = level.unwrap_or_else(|fallback| fallback);
    }
    let parse_version_label = |label: &'static str, errors: &mut Vec<LabelError>| {
        let value = value_of(label)?;
        Some(parse_version(&value).unwrap_or_else(|detail| {
            errors.push(LabelError { label, value, detail });
            None
        }))
    };
    if let Some(version) = parse_version_label(ENFORCE_VERSION_LABEL, &mut errors) {
        policy.enforce.version = version;
    }
    if let Some(level) = parse_level(AUDIT_LEVEL_LABEL, Level::Privileged, &mut errors) {
        policy.audit.level = level.unwrap_or_else(|fallback| fallback);
    }
    if let Some(version) = parse_version_label(AUDIT_VERSION_LABEL, &mut errors) {
        policy.audit.version = version;
    }
    let has_warn_level = labels.contains_key(WARN_LEVEL_LABEL);
    if let Some(level) = parse_level(WARN_LEVEL_LABEL, Level::Privileged, &mut errors) {
        policy.warn.level = level.unwrap_or_else(|fallback| fallback);
    }
    let has_warn_version = labels.contains_key(WARN_VERSION_LABEL);
    if let Some(version) = parse_version_label(WARN_VERSION_LABEL, &mut errors) {
        policy.warn.version = version;
    }

    if !has_warn_level && enforce_level_ok && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

/// Label values are strings in a valid object; anything else is shown as its JSON text.
fn label_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Who and what is never evaluated (kube's `PodSecurityConfiguration.exemptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub usernames: Vec<String>,
    pub runtime_classes: Vec<String>,
    pub namespaces: Vec<String>,
}

impl Exemptions {
    fn namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.namespaces.iter().any(|n| n == namespace)
    }

    fn username(&self, username: &str) -> bool {
        !username.is_empty() && self.usernames.iter().any(|u| u == username)
    }

    fn runtime_class(&self, spec: &Value) -> bool {
        let class = spec.get("runtimeClassName").and_then(Value::as_str).unwrap_or_default();
        !class.is_empty() && self.runtime_classes.iter().any(|c| c == class)
    }
}

/// The plugin's configuration. Default: all privileged:latest, no exemptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub defaults: NamespacePolicy,
    pub exemptions: Exemptions,
}

/// One failed check, as kube's CheckResult: reason + detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// Every check of `lv` (and the versions it includes) against a pod's metadata and spec; the
/// failed ones come back in kube's order (baseline checks by id, then restricted ones by id).
pub fn check_pod(lv: &LevelVersion, metadata: &Value, spec: &Value) -> Vec<Violation> {
    checks::evaluate(lv, metadata, spec)
}

/// Reasons joined with ", ": what kube shows per pod when checking a whole namespace.
pub fn forbidden_reason(violations: &[Violation]) -> String {
    violations.iter().map(|v| v.reason.as_str()).collect::<Vec<_>>().join(", ")
}

/// Reasons joined with ", ", each followed by " (detail)" when it has one.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect();
    parts.join(", ")
}

/// What admission asks about.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// "CREATE" | "UPDATE" | "DELETE" | "CONNECT"
    pub operation: &'a str,
    /// e.g. "", "Pod", ""; "apps", "Deployment", ""
    pub group: &'a str,
    pub kind: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub username: &'a str,
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
}

/// The answer.
///
/// `denied`: for pods, the part after `pods "x" is forbidden: ` (403), starting with
/// `violates PodSecurity "restricted:latest": `; for a Namespace request, the part after
/// `Namespace "x" is invalid: ` (422), i.e. the label errors (one, or `[a, b]` when several).
/// `warnings` as kubectl shows them (`would violate PodSecurity "restricted:latest": ...`).
/// `audit_annotations`, sorted by key, with the plugin's `pod-security.kubernetes.io/` prefix:
/// `enforce-policy`, `audit-violations`, `exempt`, `error`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub denied: Option<String>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

impl Outcome {
    fn exempt(reason: &str) -> Outcome {
        Outcome {
            audit_annotations: vec![(EXEMPT_ANNOTATION.to_string(), reason.to_string())],
            ..Outcome::default()
        }
    }
}

/// Pod subresources that never change what the checks look at. Any other pod subresource
/// (`ephemeralcontainers`, `resize`, ...) carries a Pod and is evaluated, so an unknown one
/// fails safe.
const IGNORED_POD_SUBRESOURCES: &[&str] =
    &["exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"];

/// The admission decision for a request, given the labels of the request's namespace.
///
/// Only CREATE and UPDATE are looked at. Pods are enforced, audited and warned about; workload
/// resources with a pod template (ReplicationController, PodTemplate, ReplicaSet, Deployment,
/// StatefulSet, DaemonSet, Job, CronJob) are only audited and warned about — their pods are
/// enforced when created. A Namespace request is refused when its labels are invalid (see
/// [`namespace_label_errors`]); its warnings come from [`namespace_warnings`].
pub fn admit(config: &Config, namespace_labels: &Map<String, Value>, req: &Request) -> Outcome {
    if !matches!(req.operation, "CREATE" | "UPDATE") {
        return Outcome::default();
    }
    match (req.group, req.kind) {
        ("", "Namespace") => admit_namespace(config, req),
        ("", "Pod") => admit_pod(config, namespace_labels, req),
        _ => admit_pod_controller(config, namespace_labels, req),
    }
}

fn admit_namespace(config: &Config, req: &Request) -> Outcome {
    if !req.subresource.is_empty() {
        return Outcome::default();
    }
    let old_labels = match req.operation {
        "UPDATE" => req.old_object.map(labels_of),
        _ => None,
    };
    let errors = namespace_label_errors(config, labels_of(req.object), old_labels);
    if errors.is_empty() {
        return Outcome::default();
    }
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Outcome { denied: Some(aggregate(&messages)), ..Outcome::default() }
}

fn admit_pod(config: &Config, namespace_labels: &Map<String, Value>, req: &Request) -> Outcome {
    if IGNORED_POD_SUBRESOURCES.contains(&req.subresource) {
        return Outcome::default();
    }
    if config.exemptions.namespace(req.namespace) {
        return Outcome::exempt("namespace");
    }
    if config.exemptions.username(req.username) {
        return Outcome::exempt("user");
    }
    let (policy, errors) = policy_to_evaluate(namespace_labels, &config.defaults);
    if errors.is_empty() && policy.fully_privileged() {
        // kube reports privileged:latest here whatever version the labels pin.
        return Outcome {
            audit_annotations: vec![(
                ENFORCE_POLICY_ANNOTATION.to_string(),
                LevelVersion::PRIVILEGED_LATEST.label(),
            )],
            ..Outcome::default()
        };
    }
    if req.operation == "UPDATE"
        && let Some(old) = req.old_object
        && !is_significant_pod_update(req.object, old)
    {
        return Outcome::default();
    }
    let meta = req.object.get("metadata").unwrap_or(&Value::Null);
    let spec = req.object.get("spec").unwrap_or(&Value::Null);
    evaluate_pod(config, &policy, &errors, meta, spec, true)
}

fn admit_pod_controller(
    config: &Config,
    namespace_labels: &Map<String, Value>,
    req: &Request,
) -> Outcome {
    let Some(template) = pod_template(req.group, req.kind, req.object) else {
        return Outcome::default();
    };
    if !req.subresource.is_empty() {
        return Outcome::default();
    }
    if config.exemptions.namespace(req.namespace) {
        return Outcome::exempt("namespace");
    }
    if config.exemptions.username(req.username) {
        return Outcome::exempt("user");
    }
    let (policy, errors) = policy_to_evaluate(namespace_labels, &config.defaults);
    if errors.is_empty()
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged
    {
        return Outcome::default();
    }
    // A ReplicationController may have no template: nothing to check.
    let Some(template) = template else {
        return Outcome::default();
    };
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    evaluate_pod(config, &policy, &errors, meta, spec, false)
}

/// The pod template of a workload resource kube checks: `None` for other resources,
/// `Some(None)` when the resource has no template. A missing template elsewhere is an empty
/// one, as Go's value-typed field decodes.
fn pod_template<'v>(group: &str, kind: &str, object: &'v Value) -> Option<Option<&'v Value>> {
    const EMPTY: &Value = &Value::Null;
    let path: &[&str] = match (group, kind) {
        ("", "ReplicationController") => {
            return Some(object.pointer("/spec/template").filter(|t| !t.is_null()));
        }
        ("", "PodTemplate") => &["template"],
        ("apps", "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            &["spec", "template"]
        }
        ("batch", "CronJob") => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    };
    Some(Some(path.iter().try_fold(object, |v, key| v.get(*key)).unwrap_or(EMPTY)))
}

/// kube's `EvaluatePod`: enforce (pods only), audit, and warn when the request is allowed.
fn evaluate_pod(
    config: &Config,
    policy: &NamespacePolicy,
    errors: &[LabelError],
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> Outcome {
    if config.exemptions.runtime_class(spec) {
        return Outcome::exempt("runtimeClass");
    }
    let mut annotations = BTreeMap::new();
    if !errors.is_empty() {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        annotations
            .insert(ERROR_ANNOTATION, format!("Failed to parse policy: {}", aggregate(&messages)));
    }
    let mut outcome = Outcome::default();
    if enforce {
        annotations.insert(ENFORCE_POLICY_ANNOTATION, policy.enforce.label());
        let violations = check_pod(&policy.enforce, meta, spec);
        if !violations.is_empty() {
            outcome.denied = Some(format!(
                "violates PodSecurity {}: {}",
                go_quote(&policy.enforce.label()),
                forbidden_detail(&violations)
            ));
        }
    }
    let audit = check_pod(&policy.audit, meta, spec);
    if !audit.is_empty() {
        annotations.insert(
            AUDIT_VIOLATIONS_ANNOTATION,
            format!(
                "would violate PodSecurity {}: {}",
                go_quote(&policy.audit.label()),
                forbidden_detail(&audit)
            ),
        );
    }
    // No warnings on a request that is refused anyway.
    if outcome.denied.is_none() {
        let warn = check_pod(&policy.warn, meta, spec);
        if !warn.is_empty() {
            outcome.warnings.push(format!(
                "would violate PodSecurity {}: {}",
                go_quote(&policy.warn.label()),
                forbidden_detail(&warn)
            ));
        }
    }
    outcome.audit_annotations = annotations.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    outcome
}

/// kube's `isSignificantPodUpdate`: an update is evaluated only when the containers it could
/// change (count, images, added or changed ephemeral containers) differ; other pod fields that
/// may change after creation do not affect the checks.
fn is_significant_pod_update(pod: &Value, old: &Value) -> bool {
    fn containers<'v>(pod: &'v Value, key: &str) -> &'v [Value] {
        let list = pod.get("spec").and_then(|spec| spec.get(key)).and_then(Value::as_array);
        list.map(Vec::as_slice).unwrap_or_default()
    }
    fn text<'v>(c: &'v Value, key: &str) -> &'v str {
        c.get(key).and_then(Value::as_str).unwrap_or_default()
    }
    for key in ["containers", "initContainers"] {
        let (new, old) = (containers(pod, key), containers(old, key));
        if new.len() != old.len()
            || new.iter().zip(old).any(|(n, o)| text(n, "image") != text(o, "image"))
        {
            return true;
        }
    }
    let old_ephemeral = containers(old, "ephemeralContainers");
    containers(pod, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral.iter().find(|o| text(o, "name") == text(c, "name")) {
            None => true,
            Some(o) => text(o, "image") != text(c, "image"),
        }
    })
}

/// The label errors for which kube refuses a namespace create (`old_labels` is `None`) or
/// update. An update is refused only when it has errors that differ from the old labels'.
pub fn namespace_label_errors(
    config: &Config,
    new_labels: &Map<String, Value>,
    old_labels: Option<&Map<String, Value>>,
) -> Vec<LabelError> {
    let (_, errors) = policy_to_evaluate(new_labels, &config.defaults);
    if let Some(old_labels) = old_labels {
        let (_, old_errors) = policy_to_evaluate(old_labels, &config.defaults);
        if !old_errors.is_empty() && old_errors == errors {
            return Vec::new();
        }
    }
    errors
}

/// Namespace create/update whose labels change the enforce level: kube evaluates the existing
/// pods and returns warnings such as `existing pods in namespace "x" violate the new PodSecurity
/// enforce level "restricted:latest"` and per-pod lines (`pod-a (and 2 other pods): reasons`).
/// `pods` are the namespace's pods; `old_labels` is `None` for a create. An exempt namespace
/// gets one warning that its policy is ignored. Nothing comes back for a request kube refuses.
pub fn namespace_warnings(
    config: &Config,
    namespace: &str,
    new_labels: &Map<String, Value>,
    old_labels: Option<&Map<String, Value>>,
    pods: &[Value],
) -> Vec<String> {
    if !namespace_label_errors(config, new_labels, old_labels).is_empty() {
        return Vec::new();
    }
    let (policy, _) = policy_to_evaluate(new_labels, &config.defaults);
    let exempt_warning = || -> Vec<String> {
        if config.exemptions.namespace(namespace) {
            exempt_namespace_warning(config, namespace, &policy, new_labels).into_iter().collect()
        } else {
            Vec::new()
        }
    };
    let Some(old_labels) = old_labels else {
        return exempt_warning();
    };
    let (old_policy, _) = policy_to_evaluate(old_labels, &config.defaults);
    let (new, old) = (policy.enforce, old_policy.enforce);
    // Nothing to dry-run unless the enforce policy got stricter.
    if new == old
        || new.level == Level::Privileged
        || (new.version == old.version && new.level <= old.level)
    {
        return Vec::new();
    }
    if config.exemptions.namespace(namespace) {
        return exempt_warning();
    }
    existing_pod_warnings(config, namespace, &new, pods)
}

fn exempt_namespace_warning(
    config: &Config,
    namespace: &str,
    policy: &NamespacePolicy,
    labels: &Map<String, Value>,
) -> Option<String> {
    if policy.fully_privileged() || policy.equivalent(&config.defaults) {
        return None;
    }
    // Only the non-privileged modes the labels set explicitly.
    let modes = [
        ("enforce", policy.enforce, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL),
        ("audit", policy.audit, AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL),
        ("warn", policy.warn, WARN_LEVEL_LABEL, WARN_VERSION_LABEL),
    ];
    let shown: Vec<String> = modes
        .iter()
        .filter(|(_, lv, level_label, version_label)| {
            lv.level != Level::Privileged
                && (labels.contains_key(*level_label) || labels.contains_key(*version_label))
        })
        .map(|(mode, lv, _, _)| format!("{mode}={}", lv.label()))
        .collect();
    Some(format!(
        "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
        go_quote(namespace),
        shown.join(", ")
    ))
}

/// kube's `EvaluatePodsInNamespace`, without its time budget: pods of exempt runtime classes are
/// skipped, one pod per controller goes first, at most [`NAMESPACE_MAX_PODS_TO_CHECK`] are
/// checked, and pods with the same reasons share a line named after the lexically first.
fn existing_pod_warnings(
    config: &Config,
    namespace: &str,
    enforce: &LevelVersion,
    pods: &[Value],
) -> Vec<String> {
    let mut prioritized: Vec<&Value> = Vec::new();
    let mut later_replicas: Vec<&Value> = Vec::new();
    let mut seen_controllers: HashSet<&str> = HashSet::new();
    for pod in pods {
        if config.exemptions.runtime_class(pod.get("spec").unwrap_or(&Value::Null)) {
            continue;
        }
        match controller_uid(pod) {
            Some(uid) if !seen_controllers.insert(uid) => later_replicas.push(pod),
            _ => prioritized.push(pod),
        }
    }
    prioritized.extend(later_replicas);
    let total = prioritized.len();
    prioritized.truncate(NAMESPACE_MAX_PODS_TO_CHECK);

    // Per distinct reason list: (lexically first pod name, pod count), in first-seen order.
    let mut by_reason: Vec<(String, String, usize)> = Vec::new();
    for pod in &prioritized {
        let meta = pod.get("metadata").unwrap_or(&Value::Null);
        let violations = check_pod(enforce, meta, pod.get("spec").unwrap_or(&Value::Null));
        if violations.is_empty() {
            continue;
        }
        let reason = forbidden_reason(&violations);
        let pod_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        match by_reason.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, first, count)) => {
                *count += 1;
                if pod_name < first.as_str() {
                    *first = pod_name.to_string();
                }
            }
            None => by_reason.push((reason, pod_name.to_string(), 1)),
        }
    }

    let mut warnings = Vec::new();
    if prioritized.len() < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            prioritized.len()
        ));
    }
    if !by_reason.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            go_quote(namespace),
            go_quote(&enforce.label())
        ));
    }
    let mut pod_lines: Vec<String> = by_reason
        .into_iter()
        .map(|(reason, first, count)| match count {
            1 => format!("{first}: {reason}"),
            2 => format!("{first} (and 1 other pod): {reason}"),
            n => format!("{first} (and {} other pods): {reason}", n - 1),
        })
        .collect();
    pod_lines.sort();
    warnings.extend(pod_lines);
    warnings
}

/// The uid of the owner reference marked `controller: true`.
fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| r.get("uid").and_then(Value::as_str).unwrap_or_default())
}

/// The object's labels, empty when it has none.
fn labels_of(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Go's error aggregate text: one message alone, several as `[a, b]` without repeats.
fn aggregate(messages: &[String]) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for m in messages {
        if !distinct.contains(&m.as_str()) {
            distinct.push(m);
        }
    }
    match distinct.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}
