//! Identity and access, as kube-apiserver's `authentication`, `authorization`, `audit` and
//! `storage/value` packages do it, without I/O of the api server's own: who a request is
//! ([`user::UserInfo`]), what it asks ([`attributes::Attributes`]), whether RBAC allows it
//! ([`rbac`]), the roles a new cluster starts with ([`policy`]), OIDC ID tokens ([`oidc`]),
//! what the audit log records ([`audit`]), and how stored values are encrypted ([`encryption`]).

pub mod attributes;
pub mod audit;
pub mod encryption;
pub mod oidc;
pub mod policy;
pub mod rbac;
pub mod user;

pub use attributes::Attributes;
pub use user::UserInfo;

/// An authorizer's answer, as kube-apiserver's: allow, deny, or no opinion (the next
/// authorizer decides; the last "no opinion" denies). The string says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    NoOpinion(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}
