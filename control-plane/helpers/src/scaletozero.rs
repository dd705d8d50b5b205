//! Scale to zero's annotations (Skiff's own): a Service names the Deployment (same namespace)
//! that may rest at 0 replicas behind it, and how long it may idle first. Read by the control
//! plane (which scales an idle Deployment to 0) and by the nodes' proxies (which hold the next
//! request and scale it back to 1).

use std::collections::BTreeMap;
use std::time::Duration;

/// The Deployment, in the Service's namespace, that may rest at 0 replicas.
pub const DEPLOYMENT_ANNOTATION: &str = "scale-to-zero.skiff.dev/deployment";
/// How long the Deployment may answer no request before it is scaled to 0 (a Go duration:
/// `30s`, `5m`); [`DEFAULT_IDLE_TIMEOUT`] when absent or unreadable.
pub const IDLE_TIMEOUT_ANNOTATION: &str = "scale-to-zero.skiff.dev/idle-timeout";
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The Deployment a Service with these annotations wakes, when it opts in.
pub fn deployment(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations?.get(DEPLOYMENT_ANNOTATION).map(String::as_str).filter(|d| !d.is_empty())
}

/// The idle timeout these annotations ask for.
pub fn idle_timeout(annotations: Option<&BTreeMap<String, String>>) -> Duration {
    annotations
        .and_then(|a| a.get(IDLE_TIMEOUT_ANNOTATION))
        .and_then(|t| crate::duration::parse(t))
        .unwrap_or(DEFAULT_IDLE_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_should_name_the_deployment_and_the_idle_time() {
        let mut a = BTreeMap::new();
        assert_eq!(deployment(Some(&a)), None);
        assert_eq!(idle_timeout(Some(&a)), DEFAULT_IDLE_TIMEOUT);
        a.insert(DEPLOYMENT_ANNOTATION.to_string(), "web".to_string());
        a.insert(IDLE_TIMEOUT_ANNOTATION.to_string(), "90s".to_string());
        assert_eq!(deployment(Some(&a)), Some("web"));
        assert_eq!(idle_timeout(Some(&a)), Duration::from_secs(90));
        a.insert(IDLE_TIMEOUT_ANNOTATION.to_string(), "soon".to_string());
        assert_eq!(idle_timeout(Some(&a)), DEFAULT_IDLE_TIMEOUT);
    }
}
