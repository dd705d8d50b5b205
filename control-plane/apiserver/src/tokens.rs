//! Service account tokens: `serviceaccounts/{name}/token` issues a bound JWT (ES256, signed
//! with the cluster CA's key, which every control-plane member holds), and a request bearing
//! one authenticates as `system:serviceaccount:{namespace}:{name}` while that ServiceAccount
//! (same uid) exists and the token has not expired.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use skiff_auth::UserInfo;

use crate::State;
use crate::errors::ApiError;
use crate::handlers::{self, Target, json_response, parse_body};

/// Issuer and default audience, as Kubernetes uses them.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy tokens kept in `kubernetes.io/service-account-token` Secrets.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
const DEFAULT_EXPIRY: i64 = 3600;
const MIN_EXPIRY: i64 = 600;
const MAX_EXPIRY: i64 = 48 * 3600;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A key that cannot sign service account tokens.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("reading the signing key: {0}")]
    Pem(std::io::Error),
    #[error("no private key in the signing key PEM")]
    NoPrivateKey,
    #[error("the signing key is not an ECDSA P-256 PKCS#8 key: {0}")]
    NotEcdsaP256(ring::error::KeyRejected),
}

/// Signs and verifies service account tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    key_id: String,
    /// Tokens whose signature verified, by their sha256, with their claims: a client sends
    /// the same token with every request, and an ECDSA verification costs more than the
    /// rest of authorizing it. Times and the objects a token names are checked every time.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<Value>>>,
}

/// Verified tokens remembered at most; the memory is cleared whole when full.
const VERIFIED_TOKENS_KEPT: usize = 4096;

impl TokenSigner {
    /// From a PEM private key (PKCS#8, ECDSA P-256), e.g. the cluster CA's.
    pub fn from_pem(pem: &str) -> Result<TokenSigner, SigningKeyError> {
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(SigningKeyError::Pem)?
            .ok_or(SigningKeyError::NoPrivateKey)?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &rng,
        )
        .map_err(SigningKeyError::NotEcdsaP256)?;
        let key_id = b64(&Sha256::digest(key.public_key().as_ref()));
        Ok(TokenSigner { key, key_id, verified: Default::default() })
    }

    fn sign(&self, claims: &Value) -> Result<String, ApiError> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| ApiError::internal("signing the token failed"))?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`): what a relying party
    /// outside the cluster verifies service account tokens with.
    pub fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then X and Y of 32 bytes each.
        let point = self.key.public_key().as_ref();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(x),
            "y": b64(y),
        }]})
    }

    /// The claims of a token this signer issued, if its signature and times are valid.
    pub fn verify(&self, token: &str, now: i64) -> Option<Value> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.verified.lock().ok().and_then(|m| m.get(&digest).cloned());
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signature(token)?);
                if let Ok(mut m) = self.verified.lock() {
                    if m.len() >= VERIFIED_TOKENS_KEPT {
                        m.clear();
                    }
                    m.insert(digest, claims.clone());
                }
                claims
            }
        };
        let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        match claims.get("iss").and_then(Value::as_str) {
            Some(ISSUER) => {
                let exp = claims.get("exp").and_then(Value::as_i64)?;
                if now >= exp || now < nbf {
                    return None;
                }
            }
            // Legacy Secret-based tokens never expire: they live as long as their Secret.
            Some(LEGACY_ISSUER) => {}
            _ => return None,
        }
        Some((*claims).clone())
    }

    /// The claims of `token` if this signer's signature on it verifies.
    fn verify_signature(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |p: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok();
        let header: Value = serde_json::from_slice(&decode(h)?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public.verify(format!("{h}.{c}").as_bytes(), &decode(s)?).ok()?;
        serde_json::from_slice(&decode(c)?).ok()
    }
}

/// Service account issuer discovery: `/.well-known/openid-configuration`, as kube-apiserver
/// serves it, pointing at the JWKS on the address the caller used.
pub fn openid_configuration(host: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("https://{host}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// `POST serviceaccounts/{name}/token`: a TokenRequest answered with a signed token.
pub async fn request(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let Some(signer) = state.token_signer.get() else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "this api server has no service account token signing key configured",
        ));
    };
    let sa_target = Target { subresource: None, ..target.clone() };
    let sa = handlers::get(state, &sa_target).await?;
    let req = parse_body(headers, body)?;
    if !req.is_object() || req.get("spec").is_some_and(|s| !s.is_object() && !s.is_null()) {
        return Err(ApiError::bad_request("a TokenRequest must be an object with an object spec"));
    }
    let name = target.name.clone().unwrap_or_default();
    let ns = target.namespace.clone().unwrap_or_default();
    let expiry =
        req.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(DEFAULT_EXPIRY);
    if !(MIN_EXPIRY..=1 << 32).contains(&expiry) {
        return Err(ApiError::invalid(
            "TokenRequest",
            &name,
            vec![(
                "spec.expirationSeconds".into(),
                format!("Invalid value: {expiry}: may not specify a duration less than 10 minutes"),
            )],
        ));
    }
    let expiry = expiry.min(MAX_EXPIRY);
    let audiences: Vec<Value> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!(ISSUER)]);
    if !audiences.iter().all(Value::is_string) {
        return Err(ApiError::invalid(
            "TokenRequest",
            &name,
            vec![("spec.audiences".into(), "Invalid value: audiences must be strings".into())],
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
    });
    if let Some(bound) = req.pointer("/spec/boundObjectRef").filter(|b| !b.is_null()) {
        let (claim, object) = bound_object(state, &ns, &name, bound).await?;
        k8s[claim] = object;
    }
    let claims = json!({
        "aud": audiences,
        "exp": now + expiry,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let token = signer.sign(&claims)?;
    let expires = chrono::DateTime::from_timestamp(now + expiry, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut spec = req.get("spec").and_then(Value::as_object).cloned().unwrap_or_default();
    spec.insert("audiences".into(), Value::Array(audiences));
    spec.insert("expirationSeconds".into(), json!(expiry));
    let answer = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// The claim (`pod`, `secret` or `node`) and its value for a token bound to `bound` (a
/// TokenRequest's `boundObjectRef`), as kube-apiserver checks it: a Pod or Secret in the
/// account's namespace or a Node, that exists, with the uid given if one is, and a pod that
/// runs as this account. The claims are written under fixed keys, whatever the request
/// spelled.
async fn bound_object(
    state: &State,
    ns: &str,
    account: &str,
    bound: &Value,
) -> Result<(&'static str, Value), ApiError> {
    let field = |k: &str| bound.get(k).and_then(Value::as_str).unwrap_or("");
    let (kind, name, uid) = (field("kind"), field("name"), field("uid"));
    let invalid = |why: String| {
        ApiError::invalid("TokenRequest", account, vec![("spec.boundObjectRef".into(), why)])
    };
    let (claim, plural, key) = match kind {
        "Pod" => ("pod", "pods", format!("/registry/pods/{ns}/{name}")),
        "Secret" => ("secret", "secrets", format!("/registry/secrets/{ns}/{name}")),
        "Node" => ("node", "nodes", format!("/registry/nodes/{name}")),
        other => {
            return Err(invalid(format!(
                "Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\", \"Node\""
            )));
        }
    };
    if name.is_empty() {
        return Err(invalid("name: Required value".into()));
    }
    let Some(object) = read_core(state, plural, &key).await else {
        return Err(ApiError::not_found(plural, name));
    };
    let actual_uid = uid_of(&object).unwrap_or("");
    if !uid.is_empty() && uid != actual_uid {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    if kind == "Pod" {
        let runs_as = object.pointer("/spec/serviceAccountName").and_then(Value::as_str);
        if runs_as != Some(account) {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
            )));
        }
    }
    Ok((claim, json!({"name": name, "uid": actual_uid})))
}

/// The object at `key` (of `plural` in the core group): from the watch cache, or the store
/// while the cache does not have it.
pub(crate) async fn read_core(state: &State, plural: &str, key: &str) -> Option<Value> {
    if let Some(cached) = state.cached("", plural, key) {
        return Some(cached.value());
    }
    let kv = state.store.get_with(key, skiff_store::Consistency::Serializable).await.ok()??;
    handlers::decode(&kv).ok()
}

fn uid_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid").and_then(Value::as_str)
}

/// The user of a valid service account token: bound (issued by `serviceaccounts/token`)
/// while its ServiceAccount (same uid) and any pod or Secret it is bound to exist, legacy
/// (kept in a `kubernetes.io/service-account-token` Secret) while that Secret still holds it.
pub async fn authenticate(state: &State, token: &str) -> Option<UserInfo> {
    authenticate_for(state, token, &[ISSUER]).await.map(|(user, _)| user)
}

/// The audiences of a service account token whose signature and expiry hold (`None` when
/// they do not): for kube's "token audiences … is invalid for the target audiences …".
pub fn verified_audiences(state: &State, token: &str) -> Option<Vec<String>> {
    let claims = state.token_signer.get()?.verify(token, chrono::Utc::now().timestamp())?;
    if claims.get("iss").and_then(Value::as_str) == Some(LEGACY_ISSUER) {
        return Some(vec![ISSUER.to_string()]);
    }
    Some(match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    })
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s.as_ref())).collect();
    format!("[{}]", quoted.join(" "))
}

/// The `iss` claim of a JWT, read without verifying it (to tell a forged or damaged token of
/// this cluster from a token some other authenticator may know).
pub fn claims_issuer_unverified(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss").and_then(Value::as_str).map(str::to_string)
}

/// [`authenticate`] for a token meant for one of `audiences` (the api server's own is
/// [`ISSUER`]): the user and the audiences the token and `audiences` share. A token none of
/// whose audiences is asked for does not authenticate. Legacy Secret-based tokens carry no
/// audience and are the api server's only.
pub async fn authenticate_for(
    state: &State,
    token: &str,
    audiences: &[&str],
) -> Option<(UserInfo, Vec<String>)> {
    let signer = state.token_signer.get()?;
    let claims = signer.verify(token, chrono::Utc::now().timestamp())?;
    let text = |p: &str| claims.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let legacy = claims.get("iss").and_then(Value::as_str) == Some(LEGACY_ISSUER);
    let token_audiences: Vec<&str> = if legacy {
        vec![ISSUER]
    } else {
        match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    };
    let shared: Vec<String> =
        audiences.iter().filter(|a| token_audiences.contains(a)).map(|a| a.to_string()).collect();
    if shared.is_empty() {
        return None;
    }
    let (ns, name, uid) = if legacy {
        let field = |k: &str| {
            claims.get(format!("kubernetes.io/serviceaccount/{k}")).and_then(Value::as_str)
        };
        let (ns, name, uid, secret) = (
            field("namespace")?,
            field("service-account.name")?,
            field("service-account.uid")?,
            field("secret.name")?,
        );
        let stored =
            read_core(state, "secrets", &format!("/registry/secrets/{ns}/{secret}")).await?;
        let held = stored
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())?;
        if !crate::join::constant_time_eq(&held, token.as_bytes()) {
            return None;
        }
        (ns.to_string(), name.to_string(), uid.to_string())
    } else {
        (
            text("/kubernetes.io/namespace"),
            text("/kubernetes.io/serviceaccount/name"),
            text("/kubernetes.io/serviceaccount/uid"),
        )
    };
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    let sa = read_core(state, "serviceaccounts", &format!("/registry/serviceaccounts/{ns}/{name}"))
        .await?;
    if uid_of(&sa) != Some(uid.as_str()) {
        return None;
    }
    let mut user = UserInfo::for_service_account(&ns, &name);
    user.uid = uid;
    // A token bound to a pod or Secret dies with it, as kube-apiserver checks.
    for kind in ["pod", "secret"] {
        let bound_name = text(&format!("/kubernetes.io/{kind}/name"));
        if bound_name.is_empty() {
            continue;
        }
        let plural = if kind == "pod" { "pods" } else { "secrets" };
        let obj =
            read_core(state, plural, &format!("/registry/{plural}/{ns}/{bound_name}")).await?;
        let bound_uid = text(&format!("/kubernetes.io/{kind}/uid"));
        if uid_of(&obj) != Some(bound_uid.as_str()) {
            return None;
        }
        if kind == "pod" {
            user.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![bound_name]);
            user.extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![bound_uid]);
            if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str) {
                user.extra
                    .insert("authentication.kubernetes.io/node-name".into(), vec![node.into()]);
            }
        }
    }
    let jti = text("/jti");
    if !jti.is_empty() {
        user.extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={jti}")],
        );
    }
    Some((user, shared))
}

/// Fill a new `kubernetes.io/service-account-token` Secret as kube's tokens controller does:
/// `token`, `ca.crt` and `namespace`, and the ServiceAccount's uid annotation. A Secret of
/// that type for a ServiceAccount that does not exist is refused.
pub async fn fill_legacy_token_secret(state: &State, secret: &mut Value) -> Result<(), ApiError> {
    if secret.get("type").and_then(Value::as_str) != Some("kubernetes.io/service-account-token") {
        return Ok(());
    }
    let ns = secret
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = secret.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let sa_name = secret
        .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let invalid = |why: &str| {
        ApiError::invalid(
            "Secret",
            &name,
            vec![(
                "metadata.annotations[kubernetes.io/service-account.name]".into(),
                why.to_string(),
            )],
        )
    };
    if sa_name.is_empty() {
        return Err(invalid("Required value"));
    }
    let sa =
        read_core(state, "serviceaccounts", &format!("/registry/serviceaccounts/{ns}/{sa_name}"))
            .await
            .ok_or_else(|| {
                invalid(&format!(
                    "Invalid value: {sa_name:?}: service account {ns}/{sa_name} not found"
                ))
            })?;
    let uid = uid_of(&sa).unwrap_or("").to_string();
    let token = legacy_token(state, &ns, &name, &sa_name, &uid)?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(uid);
    if !secret.get("data").is_some_and(Value::is_object) {
        secret["data"] = json!({});
    }
    secret["data"]["token"] = json!(b64(token.as_bytes()));
    secret["data"]["namespace"] = json!(b64(ns.as_bytes()));
    if let Some(ca) = state.cluster_ca() {
        secret["data"]["ca.crt"] = json!(b64(ca.as_bytes()));
    }
    Ok(())
}

/// The token a new `kubernetes.io/service-account-token` Secret holds (what kube's tokens
/// controller writes into it): a legacy JWT naming the Secret and its ServiceAccount.
pub fn legacy_token(
    state: &State,
    namespace: &str,
    secret: &str,
    service_account: &str,
    service_account_uid: &str,
) -> Result<String, ApiError> {
    let signer = state.token_signer.get().ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "this api server has no service account token signing key configured",
        )
    })?;
    signer.sign(&json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": service_account,
        "kubernetes.io/serviceaccount/service-account.uid": service_account_uid,
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenSigner::from_pem(&key.serialize_pem()).unwrap()
    }

    #[test]
    fn tokens_should_verify_until_they_expire() {
        let s = signer();
        let claims = json!({"iss": ISSUER, "exp": 2000, "nbf": 1000, "sub": "system:serviceaccount:default:sa"});
        let token = s.sign(&claims).unwrap();
        assert_eq!(s.verify(&token, 1500), Some(claims));
        assert_eq!(s.verify(&token, 2000), None);
        assert_eq!(s.verify(&token, 999), None);
    }

    #[test]
    fn the_jwks_should_verify_the_tokens_it_describes() {
        let s = signer();
        let token = s.sign(&json!({"iss": ISSUER, "exp": 10, "sub": "x"})).expect("sign");
        let jwk = &s.jwks()["keys"][0];
        let decode = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.as_str().expect("string"))
                .expect("base64url")
        };
        let (x, y) = (decode(&jwk["x"]), decode(&jwk["y"]));
        assert_eq!((x.len(), y.len()), (32, 32));
        let point = [&[4u8][..], &x, &y].concat();
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        let header: Value =
            serde_json::from_slice(&decode(&json!(input.split('.').next()))).expect("header");
        assert_eq!(header["kid"], jwk["kid"], "tokens name the key the JWKS lists");
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &decode(&json!(sig)))
            .expect("the JWK verifies the token");
        let doc = openid_configuration("127.0.0.1:6443");
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], "https://127.0.0.1:6443/openid/v1/jwks");
    }

    #[test]
    fn tampered_or_foreign_tokens_should_not_verify() {
        let (a, b) = (signer(), signer());
        let token = a.sign(&json!({"iss": ISSUER, "exp": 2000})).unwrap();
        assert!(b.verify(&token, 1500).is_none());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(json!({"iss": ISSUER, "exp": 9999}).to_string().as_bytes());
        parts[1] = &forged;
        assert!(a.verify(&parts.join("."), 1500).is_none());
        assert!(a.verify("not.a.token", 1500).is_none());
    }
}
