//! Node selector requirements and terms (`NodeSelectorRequirement`, `NodeSelectorTerm`)
//! against a node's labels and name, as `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`
//! matches them. The scheduler, the DaemonSet controller and the node all match through here.

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm};

use crate::Labels;

/// One node selector requirement against a label (or field) value (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`, `Gt`, `Lt`). `Gt` and `Lt` compare integers; a value or bound that is not
/// one matches nothing.
pub fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(int), values.first().and_then(|b| int(b)))
            else {
                return false;
            };
            if req.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// A node selector term against a node's name and labels: every label expression and every
/// field (`metadata.name`, the only field Kubernetes supports) holds. A term with neither
/// matches nothing, as in Kubernetes.
pub fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name)))
}

/// [`term_matches`] against a `Node` object.
pub fn node_matches_term(term: &NodeSelectorTerm, node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    match &node.metadata.labels {
        Some(labels) => term_matches(term, name, labels),
        None => term_matches(term, name, &Labels::new()),
    }
}

/// A pod's `nodeSelector` map against a node's labels: every pair must be there.
pub fn node_selector_matches(selector: Option<&Labels>, labels: &Labels) -> bool {
    selector.into_iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn requirement_matches_should_follow_kubernetes_operators() {
        let cases = [
            ("In hit", req("k", "In", &["a", "b"]), Some("b"), true),
            ("In miss", req("k", "In", &["a"]), Some("c"), false),
            ("In absent", req("k", "In", &["a"]), None, false),
            ("NotIn hit", req("k", "NotIn", &["a"]), Some("a"), false),
            ("NotIn absent", req("k", "NotIn", &["a"]), None, true),
            ("Exists", req("k", "Exists", &[]), Some(""), true),
            ("Exists absent", req("k", "Exists", &[]), None, false),
            ("DoesNotExist", req("k", "DoesNotExist", &[]), None, true),
            ("DoesNotExist present", req("k", "DoesNotExist", &[]), Some("x"), false),
            ("Gt", req("k", "Gt", &["3"]), Some("4"), true),
            ("Gt equal", req("k", "Gt", &["3"]), Some("3"), false),
            ("Lt", req("k", "Lt", &["3"]), Some("-1"), true),
            ("Gt not a number", req("k", "Gt", &["3"]), Some("x"), false),
            ("Lt bad bound", req("k", "Lt", &["three"]), Some("1"), false),
            ("Gt absent", req("k", "Gt", &["3"]), None, false),
            ("unknown operator", req("k", "Matches", &["a"]), Some("a"), false),
        ];
        for (name, r, value, want) in cases {
            assert_eq!(requirement_matches(&r, value), want, "{name}");
        }
    }

    #[test]
    fn term_matches_should_need_every_expression_and_field() {
        let l = labels(&[("zone", "a"), ("disk", "ssd")]);
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: (!exprs.is_empty()).then_some(exprs),
                match_fields: (!fields.is_empty()).then_some(fields),
            }
        };
        assert!(!term_matches(&term(vec![], vec![]), "n1", &l), "an empty term matches nothing");
        assert!(term_matches(&term(vec![req("zone", "In", &["a"])], vec![]), "n1", &l));
        assert!(!term_matches(
            &term(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])], vec![]),
            "n1",
            &l
        ));
        let by_name = term(vec![], vec![req("metadata.name", "In", &["n1"])]);
        assert!(term_matches(&by_name, "n1", &l));
        assert!(!term_matches(&by_name, "n2", &l));
        let other_field = term(vec![], vec![req("spec.unschedulable", "Exists", &[])]);
        assert!(!term_matches(&other_field, "n1", &l), "only metadata.name is a field");
        let node = Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("n1".into()),
                labels: Some(l.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(node_matches_term(&term(vec![req("disk", "Exists", &[])], vec![]), &node));
    }

    #[test]
    fn node_selector_matches_should_need_every_pair() {
        let l = labels(&[("zone", "a"), ("disk", "ssd")]);
        assert!(node_selector_matches(None, &l));
        assert!(node_selector_matches(Some(&labels(&[("zone", "a")])), &l));
        assert!(!node_selector_matches(Some(&labels(&[("zone", "a"), ("gpu", "1")])), &l));
    }
}
