//! The authenticated user of a request (kube-apiserver's `user.Info`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Anonymous requests are in this group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user name of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// Members may do everything; no authorizer is asked.
pub const MASTERS: &str = "system:masters";
/// Every node's group; a node's user is `system:node:<name>`.
pub const NODES: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// Who a request is: name, uid, groups and extra, as `authentication.k8s.io/v1` `UserInfo`
/// serializes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(rename = "username", default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user `name` in `groups`, plus `system:authenticated` (as every authenticator adds it).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo { name: name.into(), groups, ..Default::default() }
    }

    /// The anonymous user (`system:anonymous` in `system:unauthenticated`).
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.to_string(),
            groups: vec![UNAUTHENTICATED.to_string()],
            ..Default::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name of a node's user (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.name.strip_prefix(NODE_PREFIX).filter(|n| !n.is_empty())
    }

    /// The user of service account `namespace/name`, in its groups (`system:serviceaccounts`,
    /// `system:serviceaccounts:<namespace>`).
    pub fn for_service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo::new(
            format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            &[SERVICE_ACCOUNTS, &format!("system:serviceaccounts:{namespace}")],
        )
    }

    /// `(namespace, name)` of a service account's user (`system:serviceaccount:<ns>:<name>`).
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_should_name_its_node_and_service_account() {
        let node = UserInfo::new("system:node:n1", &[NODES]);
        assert_eq!(node.node_name(), Some("n1"));
        assert_eq!(UserInfo::new("system:node:n1", &[]).node_name(), None);
        let sa = UserInfo::new("system:serviceaccount:ns:app", &[SERVICE_ACCOUNTS]);
        assert_eq!(sa.service_account(), Some(("ns", "app")));
        assert_eq!(UserInfo::new("system:serviceaccount:ns", &[]).service_account(), None);
        assert!(sa.in_group(AUTHENTICATED));
    }
}
