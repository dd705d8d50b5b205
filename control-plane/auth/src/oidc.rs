//! OIDC ID tokens: verifying a JWS-signed ID token against an issuer's JSON Web Key Set
//! and mapping its claims to a user, as kube-apiserver's `--oidc-*` authenticator
//! (`k8s.io/apiserver/plugin/pkg/authenticator/token/oidc`) does. Pure: the caller supplies
//! the keys and the current time; fetching and refreshing keys is the api server's job.
//!
//! What is checked, in order: size and shape of the compact JWS, the header's `alg` (one of
//! the configured signing algorithms; `none` and HMAC never), that `iss` is exactly the
//! issuer URL (so other issuers' tokens are told apart before any key lookup), the signature
//! with the key named by `kid` (every compatible key when there is no `kid`), then the
//! signed claims: `aud` naming the client id, `exp` in the future, `nbf` and `iat` not
//! further in the future than the clock skew allows, the username claim, `email_verified`
//! when the username is the email, the groups claim and the required claims.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::user::UserInfo;

/// Tokens longer than this are refused before any decoding: an ID token is a few KiB at
/// most, and a bearer token is attacker-controlled input.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How far in the future `nbf` and `iat` may lie, for clocks that disagree a little. Five
/// minutes, as the OIDC verifier kube-apiserver uses allows for `nbf`.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// Signing algorithms kube-apiserver accepts with `--oidc-signing-algs` that Skiff can
/// verify (ES512 is missing: P-521 is not supported).
pub const SUPPORTED_SIGNING_ALGS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];

/// Why a token was refused. Messages are for the server's log only: a client is answered
/// 401 without them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("token is {len} bytes, more than the {MAX_TOKEN_BYTES} accepted")]
    TooLarge { len: usize },
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("signing algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("no verification keys are loaded")]
    NoKeys,
    #[error("no key with kid {0:?} in the issuer's key set")]
    UnknownKeyId(String),
    #[error("the token has no kid and no key of the issuer's key set verifies it")]
    NoMatchingKey,
    #[error("signature does not verify with the key {kid:?}")]
    BadSignature { kid: String },
    #[error("issuer {0:?} is not the configured issuer")]
    WrongIssuer(String),
    #[error("audience does not include the client id")]
    WrongAudience,
    #[error("token expired at {0} (unix time)")]
    Expired(i64),
    #[error("token is not valid before {at} (unix time, claim {claim})")]
    NotYetValid { claim: &'static str, at: i64 },
    #[error("claim {0:?} is missing")]
    MissingClaim(String),
    #[error("claim {claim:?} is invalid: {reason}")]
    InvalidClaim { claim: String, reason: &'static str },
    #[error("the email is not verified (email_verified is not true)")]
    EmailNotVerified,
    #[error("required claim {0:?} does not have the required value")]
    RequiredClaimMismatch(String),
}

impl OidcError {
    /// Whether fresh keys from the issuer might make this token verify: the issuer may have
    /// rotated its keys since they were last fetched.
    pub fn wants_key_refresh(&self) -> bool {
        matches!(self, OidcError::NoKeys | OidcError::UnknownKeyId(_) | OidcError::NoMatchingKey)
    }
}

/// A configuration kube-apiserver would refuse to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcConfigError {
    #[error("oidc issuer URL {0:?} must use the https scheme")]
    IssuerNotHttps(String),
    #[error("oidc client id must be set with the issuer URL")]
    MissingClientId,
    #[error("oidc username claim must not be empty")]
    EmptyUsernameClaim,
    #[error("oidc signing algorithm {0:?} is not supported (supported: {list})", list = SUPPORTED_SIGNING_ALGS.join(", "))]
    UnsupportedAlgorithm(String),
    #[error("no oidc signing algorithm is configured")]
    NoSigningAlgorithms,
}

/// The `--oidc-*` flags of kube-apiserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// `--oidc-issuer-url`: must equal the tokens' `iss` exactly; https only.
    pub issuer_url: String,
    /// `--oidc-client-id`: must be one of the tokens' audiences.
    pub client_id: String,
    /// `--oidc-username-claim` (default `sub`).
    pub username_claim: String,
    /// `--oidc-username-prefix`. `None`: the issuer URL and `#` unless the username claim is
    /// `email`; `Some("-")`: no prefix.
    pub username_prefix: Option<String>,
    /// `--oidc-groups-claim`: a string or an array of strings; no groups when unset.
    pub groups_claim: Option<String>,
    /// `--oidc-groups-prefix`, put before every group.
    pub groups_prefix: String,
    /// `--oidc-required-claim key=value`: each claim must be present with exactly this
    /// string value.
    pub required_claims: Vec<(String, String)>,
    /// `--oidc-signing-algs` (default `RS256`).
    pub signing_algs: Vec<String>,
}

impl OidcConfig {
    /// The configuration for `issuer_url` and `client_id` with kube-apiserver's defaults.
    pub fn new(issuer_url: impl Into<String>, client_id: impl Into<String>) -> OidcConfig {
        OidcConfig {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            username_claim: "sub".to_string(),
            username_prefix: None,
            groups_claim: None,
            groups_prefix: String::new(),
            required_claims: Vec::new(),
            signing_algs: vec!["RS256".to_string()],
        }
    }

    /// Refuse what kube-apiserver refuses at start.
    pub fn validate(&self) -> Result<(), OidcConfigError> {
        self.parsed_algorithms().map(|_| ())
    }

    fn parsed_algorithms(&self) -> Result<Vec<SigningAlg>, OidcConfigError> {
        if !self.issuer_url.starts_with("https://") || self.issuer_url.len() == "https://".len() {
            return Err(OidcConfigError::IssuerNotHttps(self.issuer_url.clone()));
        }
        if self.client_id.is_empty() {
            return Err(OidcConfigError::MissingClientId);
        }
        if self.username_claim.is_empty() {
            return Err(OidcConfigError::EmptyUsernameClaim);
        }
        if self.signing_algs.is_empty() {
            return Err(OidcConfigError::NoSigningAlgorithms);
        }
        self.signing_algs
            .iter()
            .map(|a| {
                SigningAlg::parse(a).ok_or_else(|| OidcConfigError::UnsupportedAlgorithm(a.clone()))
            })
            .collect()
    }

    /// The prefix user names get, after kube-apiserver's defaulting.
    pub fn effective_username_prefix(&self) -> String {
        match self.username_prefix.as_deref() {
            Some("-") => String::new(),
            Some(p) if !p.is_empty() => p.to_string(),
            // Names from other claims (`sub` above all) are only unique per issuer, so they
            // are qualified by it; emails are taken as they are.
            _ if self.username_claim != "email" => format!("{}#", self.issuer_url),
            _ => String::new(),
        }
    }
}

/// A JWS algorithm Skiff verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigningAlg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl SigningAlg {
    fn parse(name: &str) -> Option<SigningAlg> {
        Some(match name {
            "RS256" => SigningAlg::Rs256,
            "RS384" => SigningAlg::Rs384,
            "RS512" => SigningAlg::Rs512,
            "PS256" => SigningAlg::Ps256,
            "PS384" => SigningAlg::Ps384,
            "PS512" => SigningAlg::Ps512,
            "ES256" => SigningAlg::Es256,
            "ES384" => SigningAlg::Es384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Rs384 => "RS384",
            SigningAlg::Rs512 => "RS512",
            SigningAlg::Ps256 => "PS256",
            SigningAlg::Ps384 => "PS384",
            SigningAlg::Ps512 => "PS512",
            SigningAlg::Es256 => "ES256",
            SigningAlg::Es384 => "ES384",
        }
    }

    fn rsa_parameters(self) -> Option<&'static ring::signature::RsaParameters> {
        use ring::signature as s;
        Some(match self {
            SigningAlg::Rs256 => &s::RSA_PKCS1_2048_8192_SHA256,
            SigningAlg::Rs384 => &s::RSA_PKCS1_2048_8192_SHA384,
            SigningAlg::Rs512 => &s::RSA_PKCS1_2048_8192_SHA512,
            SigningAlg::Ps256 => &s::RSA_PSS_2048_8192_SHA256,
            SigningAlg::Ps384 => &s::RSA_PSS_2048_8192_SHA384,
            SigningAlg::Ps512 => &s::RSA_PSS_2048_8192_SHA512,
            SigningAlg::Es256 | SigningAlg::Es384 => return None,
        })
    }

    fn curve(self) -> Option<Curve> {
        match self {
            SigningAlg::Es256 => Some(Curve::P256),
            SigningAlg::Es384 => Some(Curve::P384),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn verification(self) -> &'static ring::signature::EcdsaVerificationAlgorithm {
        match self {
            // JWS carries ECDSA signatures as r||s of fixed width, not ASN.1.
            Curve::P256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &ring::signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `0x04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

/// One verification key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    /// The algorithm the key is restricted to, if the JWK says.
    alg: Option<String>,
    key: PublicKey,
}

impl Jwk {
    fn parse(v: &Value) -> Result<Jwk, &'static str> {
        let field = |name: &str| v.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            return Err("not a signing key");
        }
        let key = match field("kty") {
            Some("RSA") => {
                let n = b64_field(v, "n")?;
                let e = b64_field(v, "e")?;
                let n = strip_leading_zeros(&n);
                let e = strip_leading_zeros(&e);
                if n.is_empty() || e.is_empty() {
                    return Err("empty RSA modulus or exponent");
                }
                PublicKey::Rsa { n: n.to_vec(), e: e.to_vec() }
            }
            Some("EC") => {
                let curve = match field("crv") {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    _ => return Err("unsupported curve"),
                };
                let width = curve.coordinate_len();
                let x = b64_field(v, "x")?;
                let y = b64_field(v, "y")?;
                if x.len() > width || y.len() > width {
                    return Err("EC coordinate longer than the curve allows");
                }
                let mut point = Vec::with_capacity(1 + 2 * width);
                point.push(0x04);
                // Some encoders drop leading zero bytes that RFC 7518 says to keep.
                for c in [&x, &y] {
                    point.extend(std::iter::repeat_n(0, width - c.len()));
                    point.extend_from_slice(c);
                }
                PublicKey::Ec { curve, point }
            }
            _ => return Err("unsupported key type"),
        };
        Ok(Jwk {
            kid: field("kid").map(str::to_string),
            alg: field("alg").map(str::to_string),
            key,
        })
    }

    /// Whether this key may verify a signature made with `alg`.
    fn fits(&self, alg: SigningAlg) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return false;
        }
        match &self.key {
            PublicKey::Rsa { .. } => alg.rsa_parameters().is_some(),
            PublicKey::Ec { curve, .. } => alg.curve() == Some(*curve),
        }
    }

    fn verify(&self, alg: SigningAlg, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            PublicKey::Rsa { n, e } => {
                let Some(params) = alg.rsa_parameters() else { return false };
                ring::signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            PublicKey::Ec { curve, point } => {
                if alg.curve() != Some(*curve) {
                    return false;
                }
                ring::signature::UnparsedPublicKey::new(curve.verification(), point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

fn b64_field(v: &Value, name: &'static str) -> Result<Vec<u8>, &'static str> {
    let text = v.get(name).and_then(Value::as_str).ok_or("a key parameter is missing")?;
    b64url(text).ok_or("a key parameter is not base64url")
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// base64url without padding, as JWS and JWK use it; a trailing `=` is tolerated in keys.
fn b64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// An issuer's JSON Web Key Set (RFC 7517): the RSA and EC P-256/P-384 signing keys in it.
/// Keys of other types or curves, and keys whose `use` is not `sig`, are skipped, so a
/// set that also publishes encryption or Ed25519 keys still works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// A JWKS document that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not JSON: {0}")]
    NotJson(String),
    #[error("the key set has no \"keys\" array")]
    NoKeysArray,
}

impl Jwks {
    /// Parse a JWKS document (`{"keys": [...]}`).
    pub fn parse(bytes: &[u8]) -> Result<Jwks, JwksError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let entries = doc.get("keys").and_then(Value::as_array).ok_or(JwksError::NoKeysArray)?;
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match Jwk::parse(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => tracing::debug!(index = i, reason, "skipping a JWKS key"),
            }
        }
        Ok(Jwks { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Verifies the ID tokens of one issuer and client with one key set. Cheap to rebuild when
/// the keys change ([`OidcVerifier::with_keys`]); shared read-only otherwise.
#[derive(Debug, Clone)]
pub struct OidcVerifier {
    config: OidcConfig,
    algorithms: Vec<SigningAlg>,
    username_prefix: String,
    jwks: Jwks,
}

impl OidcVerifier {
    /// A verifier for `config` with the keys `jwks`. Fails on what
    /// [`OidcConfig::validate`] refuses.
    pub fn new(config: OidcConfig, jwks: Jwks) -> Result<OidcVerifier, OidcConfigError> {
        let algorithms = config.parsed_algorithms()?;
        let username_prefix = config.effective_username_prefix();
        Ok(OidcVerifier { config, algorithms, username_prefix, jwks })
    }

    /// The same verifier with another key set.
    pub fn with_keys(&self, jwks: Jwks) -> OidcVerifier {
        OidcVerifier { jwks, ..self.clone() }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The user `token` names if it is a valid ID token at `now_unix` (seconds).
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<UserInfo, OidcError> {
        let claims = self.verified_claims(token)?;
        self.check_claims(&claims, now_unix)?;
        self.user(&claims)
    }

    /// The token's claims, once its signature checks out.
    fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::TooLarge { len: token.len() });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::Malformed("not three dot-separated parts"));
        };
        let header =
            b64url_strict(header_b64).ok_or(OidcError::Malformed("header is not base64url"))?;
        let header: Map<String, Value> = serde_json::from_slice(&header)
            .map_err(|_| OidcError::Malformed("header is not a JSON object"))?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(OidcError::Malformed("header has no alg"))?;
        let alg = SigningAlg::parse(alg_name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| OidcError::UnsupportedAlgorithm(alg_name.to_string()))?;
        // Extensions marked critical must be understood; Skiff understands none.
        if header.contains_key("crit") {
            return Err(OidcError::Malformed("header has critical extensions"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(OidcError::Malformed("kid is not a string")),
        };
        let signature = b64url_strict(signature_b64)
            .ok_or(OidcError::Malformed("signature is not base64url"))?;
        let payload =
            b64url_strict(payload_b64).ok_or(OidcError::Malformed("payload is not base64url"))?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| OidcError::Malformed("payload is not a JSON object"))?;
        // Another issuer's token (a service account's, another OIDC provider's) is told
        // apart before any key is looked up, so it cannot make the api server fetch keys.
        // The claim is checked again, signed, in `check_claims`.
        check_issuer(&claims, &self.config.issuer_url)?;

        if self.jwks.is_empty() {
            return Err(OidcError::NoKeys);
        }
        match kid {
            Some(kid) => {
                let mut named =
                    self.jwks.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Err(OidcError::UnknownKeyId(kid.to_string()));
                }
                if !named.any(|k| k.fits(alg) && k.verify(alg, signed, &signature)) {
                    return Err(OidcError::BadSignature { kid: kid.to_string() });
                }
            }
            None => {
                if !self.jwks.keys.iter().any(|k| k.fits(alg) && k.verify(alg, signed, &signature))
                {
                    return Err(OidcError::NoMatchingKey);
                }
            }
        }
        Ok(claims)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<(), OidcError> {
        check_issuer(claims, &self.config.issuer_url)?;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.config.client_id,
            Some(Value::Array(auds)) => {
                auds.iter().any(|a| a.as_str() == Some(&self.config.client_id))
            }
            Some(_) => return Err(invalid("aud", "not a string or an array of strings")),
            None => return Err(OidcError::MissingClaim("aud".to_string())),
        };
        if !audience_ok {
            return Err(OidcError::WrongAudience);
        }
        let exp =
            time_claim(claims, "exp")?.ok_or_else(|| OidcError::MissingClaim("exp".to_string()))?;
        if exp <= now {
            return Err(OidcError::Expired(exp));
        }
        for claim in ["nbf", "iat"] {
            if let Some(at) = time_claim(claims, claim)?
                && at > now.saturating_add(CLOCK_SKEW_SECS)
            {
                return Err(OidcError::NotYetValid { claim, at });
            }
        }
        if self.config.username_claim == "email" {
            // OIDC Core: an email is only an identity once the issuer has verified it. An
            // issuer that does not say (no claim) is trusted, as kube-apiserver does.
            match claims.get("email_verified") {
                None | Some(Value::Bool(true)) => {}
                Some(_) => return Err(OidcError::EmailNotVerified),
            }
        }
        for (claim, want) in &self.config.required_claims {
            match claims.get(claim) {
                Some(Value::String(got)) if got == want => {}
                Some(_) => return Err(OidcError::RequiredClaimMismatch(claim.clone())),
                None => return Err(OidcError::MissingClaim(claim.clone())),
            }
        }
        Ok(())
    }

    fn user(&self, claims: &Map<String, Value>) -> Result<UserInfo, OidcError> {
        let claim = &self.config.username_claim;
        let name = match claims.get(claim) {
            Some(Value::String(name)) if !name.is_empty() => name,
            Some(Value::String(_)) => return Err(invalid(claim, "empty")),
            Some(_) => return Err(invalid(claim, "not a string")),
            None => return Err(OidcError::MissingClaim(claim.clone())),
        };
        let mut groups = Vec::new();
        if let Some(claim) = &self.config.groups_claim {
            match claims.get(claim) {
                None | Some(Value::Null) => {}
                Some(Value::String(g)) => groups.push(g.as_str()),
                Some(Value::Array(items)) => {
                    for item in items {
                        groups.push(item.as_str().ok_or_else(|| {
                            invalid(claim, "not a string or an array of strings")
                        })?);
                    }
                }
                Some(_) => return Err(invalid(claim, "not a string or an array of strings")),
            }
        }
        let mut groups: Vec<String> =
            groups.into_iter().map(|g| format!("{}{g}", self.config.groups_prefix)).collect();
        groups.push(crate::user::AUTHENTICATED.to_string());
        Ok(UserInfo {
            name: format!("{}{name}", self.username_prefix),
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        })
    }
}

fn check_issuer(claims: &Map<String, Value>, issuer_url: &str) -> Result<(), OidcError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer_url => Ok(()),
        Some(Value::String(iss)) => Err(OidcError::WrongIssuer(iss.clone())),
        Some(_) => Err(invalid("iss", "not a string")),
        None => Err(OidcError::MissingClaim("iss".to_string())),
    }
}

fn invalid(claim: &str, reason: &'static str) -> OidcError {
    OidcError::InvalidClaim { claim: claim.to_string(), reason }
}

/// base64url without padding, strictly: a JWS part never carries `=`.
fn b64url_strict(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional), if present.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, OidcError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            let seconds = v.as_i64().or_else(|| {
                v.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f.floor() as i64)
            });
            seconds.map(Some).ok_or_else(|| invalid(name, "not a number"))
        }
    }
}

#[cfg(test)]
mod tests;
