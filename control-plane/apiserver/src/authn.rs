//! Authentication: who a request is, as kube-apiserver's authenticator chain decides it.
//!
//! In order, first success wins: the server's own components (in-process transport:
//! `system:apiserver` in `system:masters`), an x509 client certificate the cluster CA issued
//! (CN = user, O = groups), then a bearer token: the admin token, a bootstrap token, a
//! service account token (bound or legacy), an OIDC ID token. A request with no credential is
//! anonymous (`system:anonymous`) where anonymous access is on: everywhere with
//! `--anonymous-auth`, otherwise only on the health and version paths (as kube-apiserver's
//! anonymous authenticator conditions allow). A credential that fails is a 401, never
//! anonymous. Then impersonation headers (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`)
//! turn the user into another, if RBAC lets it `impersonate` each part.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use skiff_auth::user::{self, UserInfo};
use skiff_auth::{Attributes, Decision};

use crate::State;
use crate::errors::ApiError;

tokio::task_local! {
    /// The user the request being served acts as (after impersonation).
    static USER: Arc<UserInfo>;
}

/// The user of the request being served on this task, if any.
pub fn current_user() -> Option<Arc<UserInfo>> {
    USER.try_with(|u| u.clone()).ok()
}

/// Serve `f` as `user`: [`current_user`] answers it inside.
pub async fn scope<F: std::future::Future>(user: Arc<UserInfo>, f: F) -> F::Output {
    USER.scope(user, f).await
}

/// The name of the admin token's user (its kubeconfig's user, in `system:masters`).
pub const ADMIN_USER: &str = "skiff-admin";
/// The user of the server's own components (kube-apiserver's loopback client).
pub const APISERVER_USER: &str = "system:apiserver";

/// The TLS client certificate chain of a connection, leaf first, as the server verified it
/// against the cluster CA (set by the TLS acceptor on every request of the connection).
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<rustls::pki_types::CertificateDer<'static>>>);

/// The address a request came from (set by the TLS acceptor), for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// Paths anonymous callers may reach while `--anonymous-auth` is off.
const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// The longest bearer token any authenticator reads; longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The user of the server's own in-process components.
pub fn apiserver_user() -> UserInfo {
    UserInfo::new(APISERVER_USER, &[user::MASTERS])
}

/// The user a request authenticates as: `Ok(None)` means no credential was presented (the
/// caller decides about anonymous access), `Err` a credential that does not authenticate.
pub async fn authenticate(
    state: &State,
    headers: &HeaderMap,
    peer: Option<&PeerCertificates>,
) -> Result<Option<UserInfo>, ApiError> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        // kube-apiserver tries the certificate first; a bad token is a 401 even then, as a
        // request carrying both cannot be half trusted.
        if let Some(user) = peer.and_then(user_of_certificate) {
            return Ok(Some(user));
        }
        return match bearer_token(headers) {
            Some(t) => {
                authenticate_token(state, t).await.map(Some).ok_or_else(ApiError::unauthorized)
            }
            None => Err(ApiError::unauthorized()),
        };
    }
    Ok(peer.and_then(user_of_certificate))
}

/// The bearer token of an `Authorization` header, if it holds one of a sane length.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
}

/// The user of a verified client certificate: CN is the name, each O a group.
pub fn user_of_certificate(peer: &PeerCertificates) -> Option<UserInfo> {
    let leaf = peer.0.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(UserInfo::new(name, &refs))
}

/// The user a bearer token authenticates, trying every token authenticator in turn (admin
/// token, bootstrap tokens, service account tokens, OIDC ID tokens). `None`: no authenticator
/// accepts it (401).
pub async fn authenticate_token(state: &State, token: &str) -> Option<UserInfo> {
    if crate::join::constant_time_eq(token.as_bytes(), state.admin_token().as_bytes()) {
        return Some(UserInfo::new(ADMIN_USER, &[user::MASTERS]));
    }
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    if token.len() == 23 && token.as_bytes().get(6) == Some(&b'.') {
        return crate::bootstrap_tokens::authenticate(state, token).await;
    }
    if token.matches('.').count() != 2 {
        return None;
    }
    if let Some(user) = crate::tokens::authenticate(state, token).await {
        return Some(user);
    }
    match state.oidc.get() {
        Some(oidc) => oidc.authenticate(token).await,
        None => None,
    }
}

/// Whether an anonymous request may go on to authorization: `--anonymous-auth`, or a path
/// that is public either way.
pub fn anonymous_allowed(anonymous_auth: bool, path: &str) -> bool {
    anonymous_auth
        || ANONYMOUS_PATHS.iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

/// Whether the request asks to impersonate.
pub fn wants_impersonation(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == IMPERSONATE_USER
            || k == IMPERSONATE_GROUP
            || k == IMPERSONATE_UID
            || k.starts_with(IMPERSONATE_EXTRA)
    })
}

/// What the `Impersonate-*` headers ask for.
pub struct ImpersonationRequest {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: String,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the `Impersonate-*` headers ask for: user, groups, uid and extra.
pub fn impersonation_request(headers: &HeaderMap) -> Result<ImpersonationRequest, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let name = values(IMPERSONATE_USER).into_iter().next().unwrap_or_default();
    let groups = values(IMPERSONATE_GROUP);
    let uid = values(IMPERSONATE_UID).into_iter().next().unwrap_or_default();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix(IMPERSONATE_EXTRA)
            && let Ok(v) = v.to_str()
        {
            // The key is percent-encoded in the header name.
            let key = urlencoding::decode(key).map(|k| k.into_owned()).unwrap_or(key.to_string());
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, uid or extra without impersonating a user",
        ));
    }
    Ok(ImpersonationRequest { name, groups, uid, extra })
}

/// The user `requester` impersonates with the request's `Impersonate-*` headers, each part
/// authorized (`impersonate` on users, serviceaccounts, groups, uids, userextras) as
/// kube-apiserver's impersonation filter does.
pub fn impersonate(
    state: &State,
    requester: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let ImpersonationRequest { name, groups, uid, extra } = impersonation_request(headers)?;
    let check = |attrs: Attributes| -> Result<(), ApiError> {
        match crate::authz::authorize(state, requester, &attrs) {
            Decision::Allow(_) => Ok(()),
            d => Err(crate::authz::forbidden(requester, &attrs, d.reason())),
        }
    };
    let mut impersonated = UserInfo { name: name.clone(), uid: uid.clone(), ..Default::default() };
    let as_user = UserInfo { name: name.clone(), ..Default::default() };
    if let Some((ns, sa)) = as_user.service_account().map(|(a, b)| (a.to_string(), b.to_string())) {
        check(Attributes::resource("impersonate", "", "serviceaccounts", &ns, &sa))?;
        if groups.is_empty() {
            impersonated.groups =
                vec![user::SERVICE_ACCOUNTS.to_string(), format!("system:serviceaccounts:{ns}")];
        }
    } else {
        check(Attributes::resource("impersonate", "", "users", "", &name))?;
    }
    for g in &groups {
        check(Attributes::resource("impersonate", "", "groups", "", g))?;
        impersonated.groups.push(g.clone());
    }
    if !uid.is_empty() {
        check(Attributes::resource("impersonate", "authentication.k8s.io", "uids", "", &uid))?;
    }
    for (key, vals) in &extra {
        for v in vals {
            check(
                Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "", v)
                    .with_subresource(key),
            )?;
        }
    }
    impersonated.extra = extra;
    if name == user::ANONYMOUS {
        if !impersonated.in_group(user::UNAUTHENTICATED) {
            impersonated.groups.push(user::UNAUTHENTICATED.to_string());
        }
    } else if !impersonated.in_group(user::AUTHENTICATED) {
        impersonated.groups.push(user::AUTHENTICATED.to_string());
    }
    Ok(impersonated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_should_reach_only_health_and_version_unless_enabled() {
        for p in ["/healthz", "/livez", "/readyz", "/version", "/readyz/ping"] {
            assert!(anonymous_allowed(false, p), "{p}");
        }
        for p in ["/api", "/apis", "/api/v1/pods", "/metrics", "/healthzx", "/"] {
            assert!(!anonymous_allowed(false, p), "{p}");
        }
        assert!(anonymous_allowed(true, "/api"));
    }

    #[test]
    fn certificates_should_name_the_user_and_groups() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "jane");
        dn.push(rcgen::DnType::OrganizationName, "devs");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).expect("cert");
        let peer = PeerCertificates(Arc::new(vec![cert.der().clone()]));
        let user = user_of_certificate(&peer).expect("user");
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, vec!["devs".to_string(), user::AUTHENTICATED.to_string()]);
    }
}
