//! kube's version priority (`version.CompareKubeAwareVersionStrings`): what discovery lists
//! first and what a group's preferred version is.

use std::cmp::Ordering;

/// GA above beta above alpha, whatever the major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stability {
    Alpha,
    Beta,
    Ga,
}

/// `v1`, `v2beta3`, `v1alpha1` as (major, stability, minor); `None` for other names.
fn parse(v: &str) -> Option<(u64, Stability, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    if digits == 0 {
        return None;
    }
    let major = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    if rest.is_empty() {
        return Some((major, Stability::Ga, 0));
    }
    let (stability, minor) = if let Some(m) = rest.strip_prefix("alpha") {
        (Stability::Alpha, m)
    } else {
        (Stability::Beta, rest.strip_prefix("beta")?)
    };
    if minor.is_empty() || !minor.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((major, stability, minor.parse().ok()?))
}

/// `Greater` when `a` comes first: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > any name that
/// is not kube-like, and among those, alphabetically first comes first. Sort with
/// `b.cmp(a)` (descending) for discovery order.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (parse(a), parse(b)) {
        (None, None) => b.cmp(a),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sa.cmp(&sb).then(ma.cmp(&mb)).then(na.cmp(&nb)),
    }
}
