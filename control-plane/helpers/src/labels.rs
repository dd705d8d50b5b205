//! Label selectors (`metav1.LabelSelector`) against an object's labels, as apimachinery's
//! `labels.Selector` matches them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use crate::Labels;

/// Kubernetes' `LabelSelector` semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold. An empty selector matches everything (callers
/// that must refuse empty selectors check that themselves); an unknown operator matches
/// nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    selector_matches_with(selector, |k| labels.get(k).map(String::as_str))
}

/// [`selector_matches`] against labels looked up by `label` (the labels of a JSON object,
/// read in place).
pub fn selector_matches_with<'a>(
    selector: &LabelSelector,
    label: impl Fn(&str) -> Option<&'a str>,
) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    if !pairs.into_iter().all(|(k, v)| label(k) == Some(v.as_str())) {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = label(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// [`selector_matches`] for a `LabelSelector` and labels as JSON (as stored). A selector or
/// labels that are not of their type select nothing.
pub fn json_selector_matches(
    selector: &serde_json::Value,
    labels: Option<&serde_json::Value>,
) -> bool {
    use serde::Deserialize as _;
    let Ok(selector) = LabelSelector::deserialize(selector) else {
        return false;
    };
    let labels = match labels.map(Labels::deserialize) {
        None => Labels::new(),
        Some(Ok(l)) => l,
        Some(Err(_)) => return false,
    };
    selector_matches(&selector, &labels)
}

/// True for a selector with neither labels nor expressions.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// An object's labels (empty when it has none).
pub fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// The string form of a `LabelSelector` (`a=b,c in (x,y)`), as the scale subresource reports.
pub fn json_selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        parts.push(match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selector_should_follow_kubernetes_semantics() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("env", "NotIn", &["prod"]),
                req("track", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
            ]),
        };
        let ok = labels(&[("app", "web"), ("tier", "a"), ("track", "x")]);
        assert!(selector_matches(&sel, &ok));
        let mut bad = ok.clone();
        bad.insert("env".into(), "prod".into());
        assert!(!selector_matches(&sel, &bad), "NotIn");
        let mut bad = ok.clone();
        bad.insert("legacy".into(), "1".into());
        assert!(!selector_matches(&sel, &bad), "DoesNotExist");
        let mut bad = ok.clone();
        bad.remove("track");
        assert!(!selector_matches(&sel, &bad), "Exists");
        let mut bad = ok.clone();
        bad.insert("tier".into(), "c".into());
        assert!(!selector_matches(&sel, &bad), "In");
        assert!(!selector_matches(&sel, &labels(&[("app", "db")])), "matchLabels");
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])), "empty matches all");
        assert!(selector_is_empty(&LabelSelector::default()));
    }

    #[test]
    fn selector_should_refuse_unknown_operators_and_missing_keys() {
        let sel = |r| LabelSelector { match_labels: None, match_expressions: Some(vec![r]) };
        let l = labels(&[("a", "1")]);
        assert!(!selector_matches(&sel(req("a", "Gt", &["0"])), &l), "Gt is not a label operator");
        assert!(!selector_matches(&sel(req("b", "In", &["1"])), &l), "In needs the key");
        assert!(selector_matches(&sel(req("b", "NotIn", &["1"])), &l), "NotIn holds without it");
        assert!(!selector_matches(&sel(req("a", "In", &[])), &l), "In with no values");
        let empty_exprs = LabelSelector { match_labels: None, match_expressions: Some(vec![]) };
        assert!(selector_is_empty(&empty_exprs));
        assert!(selector_matches(&empty_exprs, &l));
    }
}
