//! Bootstrap tokens: short-lived bearer tokens `<id>.<secret>` kept as
//! `bootstrap.kubernetes.io/token` Secrets in `kube-system`, which let a new node
//! authenticate just enough to ask for its own certificate (kube-apiserver's bootstrap token
//! authenticator, plus kube-controller-manager's token cleaner).
//!
//! A token authenticates as `system:bootstrap:<id>` in `system:bootstrappers` (and the
//! Secret's `auth-extra-groups`) only while its Secret exists, has not expired and allows
//! `usage-bootstrap-authentication`. A token whose Secret allows `usage-bootstrap-signing`
//! also lets a joining node check the cluster CA: `GET /cacerts?token-id=<id>` answers an
//! HMAC of the CA under the token's secret ([`ca_signature`]), which only a server that
//! knows the secret can compute (kube-controller-manager's bootstrap signer signs the
//! `cluster-info` ConfigMap with the same idea).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};
use skiff_auth::UserInfo;

use crate::State;

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Where bootstrap token Secrets live.
pub const NAMESPACE: &str = "kube-system";
/// Bootstrap token Secrets are named this plus the token id.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group every bootstrap token user is in.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// A bootstrap token's user is this plus the token id.
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The header `/cacerts?token-id=<id>` answers with: hex HMAC-SHA256 of the CA PEM under the
/// token's secret.
pub const CA_SIGNATURE_HEADER: &str = "x-skiff-ca-signature";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a bootstrap token or its Secret is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapTokenError {
    #[error("malformed bootstrap token: it must match [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    Malformed,
    #[error("bootstrap token group {0:?} must start with \"system:bootstrappers:\"")]
    BadGroup(String),
}

/// A bootstrap token `<id>.<secret>`. `Display` gives that form; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken").field("id", &self.id).finish_non_exhaustive()
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl BootstrapToken {
    /// A fresh random token (ids and secrets from `[a-z0-9]`, as kubeadm makes them).
    pub fn generate() -> BootstrapToken {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
        };
        BootstrapToken { id: pick(ID_LEN), secret: pick(SECRET_LEN) }
    }

    /// Parse `<id>.<secret>` (`^[a-z0-9]{6}\.[a-z0-9]{16}$`).
    pub fn parse(text: &str) -> Result<BootstrapToken, BootstrapTokenError> {
        let (id, secret) = text.trim().split_once('.').ok_or(BootstrapTokenError::Malformed)?;
        if !is_token_part(id, ID_LEN) || !is_token_part(secret, SECRET_LEN) {
            return Err(BootstrapTokenError::Malformed);
        }
        Ok(BootstrapToken { id: id.to_string(), secret: secret.to_string() })
    }

    /// The name of this token's Secret.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// Hex HMAC-SHA256 of `ca_pem` under this token's secret (see [`ca_signature`]).
    pub fn ca_signature(&self, ca_pem: &str) -> String {
        ca_signature(&self.secret, ca_pem)
    }

    /// The Secret that makes this token valid: for `ttl` (none: no expiry), allowed for
    /// authentication and signing, with `extra_groups` (each `system:bootstrappers:*`).
    pub fn to_secret(
        &self,
        ttl: Option<Duration>,
        description: Option<&str>,
        extra_groups: &[String],
    ) -> Result<Value, BootstrapTokenError> {
        for g in extra_groups {
            if !g.starts_with(&format!("{BOOTSTRAPPERS}:")) || g.len() <= BOOTSTRAPPERS.len() + 1 {
                return Err(BootstrapTokenError::BadGroup(g.clone()));
            }
        }
        let mut data = serde_json::Map::new();
        data.insert("token-id".into(), json!(self.id));
        data.insert("token-secret".into(), json!(self.secret));
        data.insert("usage-bootstrap-authentication".into(), json!("true"));
        data.insert("usage-bootstrap-signing".into(), json!("true"));
        if let Some(ttl) = ttl {
            let at = chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            data.insert(
                "expiration".into(),
                json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
        }
        if let Some(d) = description {
            data.insert("description".into(), json!(d));
        }
        if !extra_groups.is_empty() {
            data.insert("auth-extra-groups".into(), json!(extra_groups.join(",")));
        }
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret_name(), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "stringData": data,
        }))
    }
}

/// Hex HMAC-SHA256 of `ca_pem` under `token_secret`: what `/cacerts?token-id=` answers, and
/// what a joining node recomputes before it trusts the CA.
pub fn ca_signature(token_secret: &str, ca_pem: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, ca_pem.as_bytes()).as_ref())
}

/// A data field of a Secret as text (`data` is base64, `stringData` is not yet folded in
/// on stored Secrets, but is read too for objects built by [`BootstrapToken::to_secret`]).
pub fn secret_field(secret: &Value, field: &str) -> Option<String> {
    use base64::Engine as _;
    if let Some(v) = secret.pointer(&format!("/data/{field}")).and_then(Value::as_str) {
        let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
        return String::from_utf8(raw).ok();
    }
    secret.pointer(&format!("/stringData/{field}")).and_then(Value::as_str).map(str::to_string)
}

/// Whether the token Secret has an `expiration` at or before `now` (an unparsable expiration
/// counts as expired: kube refuses such tokens too).
pub fn is_expired(secret: &Value, now: DateTime<Utc>) -> bool {
    match secret_field(secret, "expiration") {
        None => false,
        Some(text) => DateTime::parse_from_rfc3339(&text).map_or(true, |at| at <= now),
    }
}

/// Whether the token Secret has expired by now.
pub fn is_expired_now(secret: &Value) -> bool {
    is_expired(secret, Utc::now())
}

/// The user `token` authenticates as, given its Secret, at `now`: the Secret must be of the
/// bootstrap type, name the token's id, hold its secret (compared in constant time), be
/// unexpired, not be deleted, and allow authentication.
pub fn user_for(secret: &Value, token: &BootstrapToken, now: DateTime<Utc>) -> Option<UserInfo> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return None;
    }
    if secret_field(secret, "token-id").as_deref() != Some(token.id.as_str()) {
        return None;
    }
    let stored = secret_field(secret, "token-secret")?;
    if !crate::join::constant_time_eq(stored.as_bytes(), token.secret.as_bytes()) {
        return None;
    }
    if is_expired(secret, now) {
        return None;
    }
    if secret_field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    for g in secret_field(secret, "auth-extra-groups").unwrap_or_default().split(',') {
        let g = g.trim();
        // Only groups under system:bootstrappers: a token Secret cannot grant more.
        if g.starts_with(&format!("{BOOTSTRAPPERS}:")) && !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(UserInfo::new(format!("{USER_PREFIX}{}", token.id), &groups))
}

/// The Secret of token `id`: from the watch cache, or from the store when the cache does not
/// have it (yet).
async fn read_secret(state: &State, id: &str) -> Option<Value> {
    let key = format!("/registry/secrets/{NAMESPACE}/{SECRET_PREFIX}{id}");
    crate::tokens::read_core(state, "secrets", &key).await
}

/// The user of a bootstrap token `<id>.<secret>` (`system:bootstrap:<id>`), if a valid,
/// unexpired `bootstrap.kubernetes.io/token` Secret in `kube-system` matches it.
pub async fn authenticate(state: &State, token: &str) -> Option<UserInfo> {
    let token = BootstrapToken::parse(token).ok()?;
    let secret = read_secret(state, &token.id).await?;
    user_for(&secret, &token, Utc::now())
}

/// The HMAC of `ca_pem` under the secret of token `id` (see [`ca_signature`]), if that token
/// is valid and allows signing.
pub async fn sign_ca(state: &State, id: &str, ca_pem: &str) -> Option<String> {
    if !is_token_part(id, ID_LEN) {
        return None;
    }
    let secret = read_secret(state, id).await?;
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || secret_field(&secret, "token-id").as_deref() != Some(id)
        || secret_field(&secret, "usage-bootstrap-signing").as_deref() != Some("true")
        || is_expired(&secret, Utc::now())
    {
        return None;
    }
    Some(ca_signature(&secret_field(&secret, "token-secret")?, ca_pem))
}

/// How often the token cleaner looks for expired tokens.
const CLEAN_EVERY: Duration = Duration::from_secs(10);

/// Delete expired bootstrap token Secrets, for as long as the process runs
/// (kube-controller-manager's `tokencleaner`). Idempotent; safe to run on every member.
pub async fn run_cleaner(client: kube::Client) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, ListParams};
    let api: Api<Secret> = Api::namespaced(client, NAMESPACE);
    let mut tick = tokio::time::interval(CLEAN_EVERY);
    loop {
        tick.tick().await;
        let list =
            match api.list(&ListParams::default().fields(&format!("type={SECRET_TYPE}"))).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "token cleaner: listing bootstrap tokens");
                    continue;
                }
            };
        let now = Utc::now();
        for secret in list.items {
            let Ok(value) = serde_json::to_value(&secret) else { continue };
            if !is_expired(&value, now) {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(secret = %name, "deleted an expired bootstrap token"),
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "deleting an expired bootstrap token")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(token: &BootstrapToken, ttl: Option<Duration>, groups: &[String]) -> Value {
        use base64::Engine as _;
        // What the store holds: stringData folded into base64 data.
        let mut s = token.to_secret(ttl, Some("test"), groups).expect("secret");
        let data: serde_json::Map<String, Value> = s["stringData"]
            .as_object()
            .expect("stringData")
            .iter()
            .map(|(k, v)| {
                let b =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().expect("string"));
                (k.clone(), json!(b))
            })
            .collect();
        s["data"] = Value::Object(data);
        s.as_object_mut().expect("object").remove("stringData");
        s
    }

    #[test]
    fn bootstrap_token_should_parse_only_the_kube_format() {
        let t = BootstrapToken::generate();
        let text = t.to_string();
        assert_eq!(BootstrapToken::parse(&text).expect("parse"), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdefg",
            "abcdef.0123456789abcd-f",
            "abcdef:0123456789abcdef",
        ] {
            assert!(BootstrapToken::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(BootstrapToken::parse("abcdef.0123456789abcdef").is_ok());
    }

    #[test]
    fn user_for_should_authenticate_only_a_valid_unexpired_token() {
        let now = Utc::now();
        let t = BootstrapToken::generate();
        let groups = vec!["system:bootstrappers:workers".to_string()];
        let s = stored(&t, Some(Duration::from_secs(3600)), &groups);
        let user = user_for(&s, &t, now).expect("valid token");
        assert_eq!(user.name, format!("system:bootstrap:{}", t.id));
        assert!(user.in_group("system:bootstrappers"));
        assert!(user.in_group("system:bootstrappers:workers"));
        assert!(user.in_group("system:authenticated"));

        // A wrong secret, expired, no authentication usage, wrong type: nothing.
        let mut wrong = t.clone();
        wrong.secret = "0000000000000000".into();
        assert!(user_for(&s, &wrong, now).is_none());
        assert!(user_for(&s, &t, now + chrono::Duration::hours(2)).is_none());
        let mut no_usage = s.clone();
        no_usage["data"].as_object_mut().expect("data").remove("usage-bootstrap-authentication");
        assert!(user_for(&no_usage, &t, now).is_none());
        let mut opaque = s.clone();
        opaque["type"] = json!("Opaque");
        assert!(user_for(&opaque, &t, now).is_none());
        // A Secret of another id does not authenticate this one.
        let other = BootstrapToken { id: "zzzzzz".into(), secret: t.secret.clone() };
        assert!(user_for(&s, &other, now).is_none());
        // No expiration: valid for good.
        assert!(user_for(&stored(&t, None, &[]), &t, now + chrono::Duration::days(999)).is_some());
    }

    #[test]
    fn user_for_should_ignore_extra_groups_outside_bootstrappers() {
        let t = BootstrapToken::generate();
        let mut s = stored(&t, None, &[]);
        use base64::Engine as _;
        s["data"]["auth-extra-groups"] = json!(
            base64::engine::general_purpose::STANDARD
                .encode("system:masters,system:bootstrappers:x")
        );
        let user = user_for(&s, &t, Utc::now()).expect("valid");
        assert!(!user.in_group("system:masters"));
        assert!(user.in_group("system:bootstrappers:x"));
        assert!(t.to_secret(None, None, &["system:masters".into()]).is_err());
    }

    #[test]
    fn ca_signature_should_depend_on_secret_and_ca() {
        let t = BootstrapToken::generate();
        let a = t.ca_signature("CA one");
        assert_eq!(a, ca_signature(&t.secret, "CA one"));
        assert_ne!(a, t.ca_signature("CA two"));
        assert_ne!(a, BootstrapToken::generate().ca_signature("CA one"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn is_expired_should_treat_garbage_as_expired() {
        let now = Utc::now();
        assert!(!is_expired(&json!({"stringData": {}}), now));
        assert!(is_expired(&json!({"stringData": {"expiration": "soon"}}), now));
        assert!(is_expired(&json!({"stringData": {"expiration": "2000-01-01T00:00:00Z"}}), now));
        assert!(!is_expired(&json!({"stringData": {"expiration": "2999-01-01T00:00:00Z"}}), now));
    }
}
