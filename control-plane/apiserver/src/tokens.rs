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

use crate::State;
use crate::errors::ApiError;
use crate::handlers::{self, Target, json_response, parse_body};

/// Issuer and default audience, as Kubernetes uses them.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
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
}

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
        Ok(TokenSigner { key, key_id })
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
        let claims: Value = serde_json::from_slice(&decode(c)?).ok()?;
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        if now >= exp || now < nbf || claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return None;
        }
        Some(claims)
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
    let mut req = parse_body(headers, body)?;
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
    let now = chrono::Utc::now().timestamp();
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
    });
    if let Some(bound) = req.pointer("/spec/boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase();
        k8s[kind] = json!({"name": bound.get("name"), "uid": bound.get("uid")});
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
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    req["spec"]["audiences"] = Value::Array(audiences);
    req["spec"]["expirationSeconds"] = json!(expiry);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_response(StatusCode::CREATED, &req))
}

/// Whether `token` is a valid service account token whose ServiceAccount still exists.
pub async fn authenticate(state: &State, token: &str) -> bool {
    let Some(signer) = state.token_signer.get() else { return false };
    let Some(claims) = signer.verify(token, chrono::Utc::now().timestamp()) else {
        return false;
    };
    let ns = claims.pointer("/kubernetes.io/namespace").and_then(Value::as_str).unwrap_or("");
    let name =
        claims.pointer("/kubernetes.io/serviceaccount/name").and_then(Value::as_str).unwrap_or("");
    let uid = claims.pointer("/kubernetes.io/serviceaccount/uid");
    let key = format!("/registry/serviceaccounts/{ns}/{name}");
    match state.store.get(&key).await {
        Ok(Some(kv)) => {
            handlers::decode(&kv).ok().and_then(|sa| sa.pointer("/metadata/uid").cloned()).as_ref()
                == uid
        }
        _ => false,
    }
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
