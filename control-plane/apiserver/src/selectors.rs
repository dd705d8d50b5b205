//! Label and field selectors as the list and watch query parameters carry them.

use std::borrow::Cow;

use serde_json::Value;

/// A `labelSelector` or `fieldSelector` query parameter that does not parse; the text is what
/// the client gets in a `BadRequest` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement: unbalanced '{paren}' in {selector:?}")]
    Unbalanced { paren: char, selector: String },
    #[error("unable to parse requirement: expected '(values)', found {0:?}")]
    NotASet(String),
    #[error("invalid label key {0:?}")]
    InvalidKey(String),
    #[error("invalid selector: '{0}'; can't understand '{0}'")]
    NotATerm(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for term in split_terms(s)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(check_key(key.trim())?)
            } else if let Some((k, rest)) = split_word(term, " notin ") {
                Requirement::NotIn(check_key(k)?, parse_set(rest)?)
            } else if let Some((k, rest)) = split_word(term, " in ") {
                Requirement::In(check_key(k)?, parse_set(rest)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(check_key(k.trim())?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Eq(check_key(k.trim())?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Eq(check_key(k.trim())?, v.trim().to_string())
            } else {
                Requirement::Exists(check_key(term)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object with these `metadata.labels` matches.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether an object whose label `k` is `get(k)` matches.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Split on commas that are not inside a `( … )` set.
fn split_terms(s: &str) -> Result<Vec<&str>, SelectorError> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(SelectorError::Unbalanced { paren: ')', selector: s.to_string() });
        }
    }
    if depth != 0 {
        return Err(SelectorError::Unbalanced { paren: '(', selector: s.to_string() });
    }
    out.push(&s[start..]);
    Ok(out)
}

fn split_word<'a>(term: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    term.find(word).map(|i| (term[..i].trim(), term[i + word.len()..].trim()))
}

fn parse_set(s: &str) -> Result<Vec<String>, SelectorError> {
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::NotASet(s.to_string()))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn check_key(k: &str) -> Result<String, SelectorError> {
    let ok = !k.is_empty()
        && k.len() <= 316
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok { Ok(k.to_string()) } else { Err(SelectorError::InvalidKey(k.to_string())) }
}

/// A parsed `fieldSelector` (`=`, `==`, `!=` terms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse, accepting only the fields `supported` (plus `metadata.name`/`metadata.namespace`).
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::NotATerm(term.to_string()));
            };
            let field = field.trim();
            if !(field == "metadata.name"
                || field == "metadata.namespace"
                || supported.contains(&field))
            {
                return Err(SelectorError::UnsupportedField(field.to_string()));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value a `metadata.name=X` term pins, if any (lets a watch skip other keys).
    pub fn exact_name(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(|field| field_string(obj, field))
    }

    /// Whether an object whose field `f` reads `get(f)` (as [`field_string`] reads it)
    /// matches.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Cow<'a, str>) -> bool {
        self.0.iter().all(|(field, eq, want)| (get(field) == want.as_str()) == *eq)
    }
}

/// The value of the dotted `field` of `obj` as a field selector compares it: a string as it
/// is, a boolean or number as text, anything else (or nothing) as "".
pub fn field_string<'a>(obj: &'a Value, field: &str) -> Cow<'a, str> {
    match field.split('.').try_fold(obj, |o, part| o.get(part)) {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Bool(b)) => Cow::Owned(b.to_string()),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        _ => Cow::Borrowed(""),
    }
}

/// The fields custom resources select on (their versions' `selectableFields`), by the key
/// [`fields_key`] gives them.
static CUSTOM_FIELDS: std::sync::RwLock<
    Option<std::collections::HashMap<&'static str, &'static [&'static str]>>,
> = std::sync::RwLock::new(None);

/// What names a resource's selectable fields for [`supported_fields`] and the watch cache's
/// attributes: its kind, or for a custom resource `Kind.version.group` (a custom kind may
/// share a built-in kind's name), whose `selectableFields` are registered here.
pub fn fields_key(res: &skiff_api::ResourceInfo) -> &'static str {
    let Some(cv) = crate::crds::CustomVersion::of(res) else { return res.kind };
    let key = skiff_api::intern(&format!("{}.{}.{}", res.kind, res.version, res.group));
    let fields: Vec<&str> = cv.selectable_fields.iter().map(String::as_str).collect();
    let fields = skiff_api::intern_list(&fields);
    let known =
        CUSTOM_FIELDS.read().ok().and_then(|m| m.as_ref().and_then(|m| m.get(key).copied()));
    if known != Some(fields)
        && let Ok(mut m) = CUSTOM_FIELDS.write()
    {
        m.get_or_insert_with(Default::default).insert(key, fields);
    }
    key
}

/// Field selectors a kind supports beyond `metadata.name` / `metadata.namespace` (for a
/// custom resource, named by [`fields_key`]).
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Namespace" => &["status.phase"],
        "Node" => &["spec.unschedulable"],
        "Secret" => &["type"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        custom => CUSTOM_FIELDS
            .read()
            .ok()
            .and_then(|m| m.as_ref().and_then(|m| m.get(custom).copied()))
            .unwrap_or(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_should_support_all_operators() {
        let labels = json!({"app": "web", "tier": "front"});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, api)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert_eq!(
            LabelSelector::parse("app in (web").unwrap_err().to_string(),
            "unable to parse requirement: unbalanced '(' in \"app in (web\""
        );
    }

    #[test]
    fn field_selector_should_treat_missing_as_empty_and_reject_unknown_fields() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}});
        let fs = FieldSelector::parse("spec.nodeName=", supported_fields("Pod")).unwrap();
        assert!(fs.matches(&pod));
        let fs = FieldSelector::parse("spec.nodeName!=", supported_fields("Pod")).unwrap();
        assert!(!fs.matches(&pod));
        assert_eq!(FieldSelector::parse("metadata.name=p", &[]).unwrap().exact_name(), Some("p"));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", supported_fields("Pod")).unwrap_err().to_string(),
            "field label not supported: spec.foo"
        );
    }
}
