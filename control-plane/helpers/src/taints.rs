//! Tolerations against taints, as `k8s.io/api/core/v1` `Toleration.ToleratesTaint` decides.
//! The scheduler (TaintToleration, NodeUnschedulable, PodTopologySpread), the DaemonSet
//! controller and the node lifecycle's evictions all ask here.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Does `toleration` tolerate `taint`? An empty effect matches every effect and an empty key
/// every key; operator `Exists` matches any value, `Equal` (also when the operator is empty,
/// its default) only the same value, a missing value being the empty string. Any other
/// operator matches nothing. (API validation refuses `Equal` with an empty key; this function,
/// like Kubernetes', does not second-guess it.)
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Is `taint` tolerated by any of `tolerations`?
pub fn tolerated_by(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.into(),
            time_added: None,
        }
    }

    /// The union of the cases the DaemonSet controller and the node lifecycle tested, with
    /// Kubernetes' `TestTolerationToleratesTaint` rows where the two copies disagreed (an
    /// empty operator is `Equal`; an empty key with `Equal` compares values only).
    #[test]
    fn tolerates_should_follow_kubernetes_matching() {
        let cases = [
            (
                "equal key value effect",
                tol("k", "Equal", "v", "NoSchedule"),
                taint("k", "v", "NoSchedule"),
                true,
            ),
            (
                "equal other value",
                tol("k", "Equal", "v", "NoSchedule"),
                taint("k", "w", "NoSchedule"),
                false,
            ),
            ("empty operator is Equal", tol("k", "", "v", ""), taint("k", "v", "NoExecute"), true),
            (
                "empty operator, other value",
                tol("k", "", "v", ""),
                taint("k", "x", "NoExecute"),
                false,
            ),
            (
                "exists, other effect",
                tol("k", "Exists", "", "NoSchedule"),
                taint("k", "x", "NoExecute"),
                false,
            ),
            ("exists, any effect", tol("k", "Exists", "", ""), taint("k", "x", "NoExecute"), true),
            (
                "empty key exists tolerates all",
                tol("", "Exists", "", ""),
                taint("any", "x", "NoSchedule"),
                true,
            ),
            (
                "empty key equal, equal empty values",
                tol("", "Equal", "", ""),
                taint("any", "", "NoSchedule"),
                true,
            ),
            (
                "empty key equal, other value",
                tol("", "Equal", "", ""),
                taint("any", "x", "NoSchedule"),
                false,
            ),
            ("other key", tol("other", "Exists", "", ""), taint("k", "", "NoSchedule"), false),
            (
                "missing value equals empty",
                tol("k", "Equal", "", "NoExecute"),
                taint("k", "", "NoExecute"),
                true,
            ),
            ("unknown operator", tol("k", "Gt", "1", ""), taint("k", "1", "NoSchedule"), false),
            (
                "effect PreferNoSchedule",
                tol("k", "Exists", "", "PreferNoSchedule"),
                taint("k", "", "PreferNoSchedule"),
                true,
            ),
        ];
        for (name, t, taint, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{name}: {t:?} vs {taint:?}");
        }
        assert!(tolerated_by(
            &[tol("a", "Exists", "", ""), tol("k", "Exists", "", "")],
            &taint("k", "", "NoSchedule")
        ));
        assert!(!tolerated_by(&[], &taint("k", "", "NoSchedule")));
    }
}
