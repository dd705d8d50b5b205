//! Unit tests of OIDC ID token verification: a test issuer signs tokens with an ECDSA key
//! generated per run and a fixed RSA key from `testdata/`.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://issuer.example.test";
const CLIENT: &str = "skiff";
const NOW: i64 = 1_700_000_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_key(alg: &'static signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generating an EC key");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("loading the EC key")
}

fn rsa_key() -> RsaKeyPair {
    let pem = include_str!("../testdata/rsa2048.pk8.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("PEM body");
    RsaKeyPair::from_pkcs8(&der).expect("the test RSA key")
}

/// Reads one DER element (tag, length) at `at`; returns the content range.
fn der_element(der: &[u8], at: usize, tag: u8) -> std::ops::Range<usize> {
    assert_eq!(der[at], tag, "DER tag");
    let (len, start) = match der[at + 1] {
        l if l < 0x80 => (l as usize, at + 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = der[at + 2..at + 2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize);
            (len, at + 2 + n)
        }
    };
    start..start + len
}

fn rsa_jwk(kid: &str, key: &RsaKeyPair) -> Value {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let der = key.public().as_ref();
    let seq = der_element(der, 0, 0x30);
    let n = der_element(der, seq.start, 0x02);
    let e = der_element(der, n.end, 0x02);
    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&der[n]), "e": b64(&der[e])})
}

fn ec_jwk(kid: &str, key: &EcdsaKeyPair, crv: &str) -> Value {
    let point = key.public_key().as_ref();
    let width = (point.len() - 1) / 2;
    json!({
        "kty": "EC", "kid": kid, "crv": crv,
        "x": b64(&point[1..1 + width]), "y": b64(&point[1 + width..]),
    })
}

enum Signer<'a> {
    Ec(&'a EcdsaKeyPair),
    Rsa(&'a RsaKeyPair, &'static dyn signature::RsaEncoding),
}

fn sign_raw(header: &Value, payload: &[u8], signer: &Signer) -> String {
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let rng = SystemRandom::new();
    let sig = match signer {
        Signer::Ec(key) => key.sign(&rng, message.as_bytes()).expect("signing").as_ref().to_vec(),
        Signer::Rsa(key, encoding) => {
            let mut sig = vec![0; key.public().modulus_len()];
            key.sign(*encoding, &rng, message.as_bytes(), &mut sig).expect("signing");
            sig
        }
    };
    format!("{message}.{}", b64(&sig))
}

fn sign(header: Value, claims: &Value, signer: &Signer) -> String {
    sign_raw(&header, claims.to_string().as_bytes(), signer)
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "jane",
        "email": "jane@example.test",
        "email_verified": true,
        "groups": ["devs", "ops"],
        "iat": NOW - 10,
        "exp": NOW + 600,
    })
}

/// A test issuer: one ES256 key (`ec`), one RS256 key (`rsa`), and the JWKS with both.
struct Issuer {
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
    jwks: Jwks,
}

impl Issuer {
    fn new() -> Issuer {
        let ec = ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let rsa = rsa_key();
        let doc = json!({"keys": [ec_jwk("ec-1", &ec, "P-256"), rsa_jwk("rsa-1", &rsa)]});
        let jwks = Jwks::parse(doc.to_string().as_bytes()).expect("jwks");
        assert_eq!(jwks.len(), 2);
        Issuer { ec, rsa, jwks }
    }

    fn es256(&self, claims: &Value) -> String {
        sign(json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}), claims, &Signer::Ec(&self.ec))
    }

    fn verifier(&self, config: OidcConfig) -> OidcVerifier {
        OidcVerifier::new(config, self.jwks.clone()).expect("valid config")
    }
}

fn config() -> OidcConfig {
    OidcConfig {
        signing_algs: vec!["ES256".into(), "RS256".into()],
        ..OidcConfig::new(ISSUER, CLIENT)
    }
}

fn email_config() -> OidcConfig {
    OidcConfig {
        username_claim: "email".into(),
        groups_claim: Some("groups".into()),
        groups_prefix: "oidc:".into(),
        ..config()
    }
}

#[test]
fn verifier_should_accept_a_valid_es256_token() {
    let issuer = Issuer::new();
    let user = issuer.verifier(config()).verify(&issuer.es256(&claims()), NOW).expect("valid");
    assert_eq!(user.name, "https://issuer.example.test#jane");
    assert_eq!(user.groups, vec!["system:authenticated"]);
    assert!(user.uid.is_empty() && user.extra.is_empty());
}

#[test]
fn verifier_should_accept_rs256_ps256_and_es384_tokens() {
    let issuer = Issuer::new();
    let es384 = ec_key(&signature::ECDSA_P384_SHA384_FIXED_SIGNING);
    let doc = json!({"keys": [ec_jwk("ec-384", &es384, "P-384"), rsa_jwk("rsa-1", &issuer.rsa)]});
    let jwks = Jwks::parse(doc.to_string().as_bytes()).expect("jwks");
    let all = OidcConfig {
        signing_algs: vec!["RS256".into(), "PS256".into(), "ES384".into()],
        ..OidcConfig::new(ISSUER, CLIENT)
    };
    let verifier = OidcVerifier::new(all, jwks).expect("config");
    let rs256 = sign(
        json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(),
        &Signer::Rsa(&issuer.rsa, &signature::RSA_PKCS1_SHA256),
    );
    let ps256 = sign(
        json!({"alg": "PS256", "kid": "rsa-1"}),
        &claims(),
        &Signer::Rsa(&issuer.rsa, &signature::RSA_PSS_SHA256),
    );
    let es384 = sign(json!({"alg": "ES384", "kid": "ec-384"}), &claims(), &Signer::Ec(&es384));
    for token in [rs256, ps256, es384] {
        let user = verifier.verify(&token, NOW).expect("valid");
        assert_eq!(user.name, "https://issuer.example.test#jane");
    }
}

#[test]
fn verifier_should_refuse_an_expired_token() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    let mut c = claims();
    c["exp"] = json!(NOW - 1);
    assert_eq!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::Expired(NOW - 1)));
    c["exp"] = json!(NOW);
    assert_eq!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::Expired(NOW)));
    c["exp"] = json!(NOW as f64 + 0.5);
    assert!(matches!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::Expired(_))));
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::MissingClaim("exp".into())));
    c["exp"] = json!("tomorrow");
    assert!(matches!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::InvalidClaim { .. })));
}

#[test]
fn verifier_should_refuse_a_token_from_the_future_beyond_the_clock_skew() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    let mut c = claims();
    c["nbf"] = json!(NOW + 60);
    verifier.verify(&issuer.es256(&c), NOW).expect("a minute of skew is tolerated");
    c["nbf"] = json!(NOW + CLOCK_SKEW_SECS + 1);
    assert_eq!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::NotYetValid { claim: "nbf", at: NOW + CLOCK_SKEW_SECS + 1 })
    );
    let mut c = claims();
    c["iat"] = json!(NOW + 3600);
    c["exp"] = json!(NOW + 7200);
    assert!(matches!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::NotYetValid { claim: "iat", .. })
    ));
}

#[test]
fn verifier_should_refuse_another_issuer() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    for iss in
        ["https://issuer.example.test/", "https://other.example.test", "http://issuer.example.test"]
    {
        let mut c = claims();
        c["iss"] = json!(iss);
        assert_eq!(
            verifier.verify(&issuer.es256(&c), NOW),
            Err(OidcError::WrongIssuer(iss.into()))
        );
    }
    // Another issuer's token naming a kid this issuer lacks: no reason to fetch keys.
    let mut c = claims();
    c["iss"] = json!("https://other.example.test");
    let token = sign(json!({"alg": "ES256", "kid": "other"}), &c, &Signer::Ec(&issuer.ec));
    let err = verifier.verify(&token, NOW).expect_err("another issuer");
    assert_eq!(err, OidcError::WrongIssuer("https://other.example.test".into()));
    assert!(!err.wants_key_refresh());
    let mut c = claims();
    c.as_object_mut().expect("object").remove("iss");
    assert_eq!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::MissingClaim("iss".into())));
}

#[test]
fn verifier_should_check_the_audience_as_a_string_or_an_array() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    let with_aud = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        verifier.verify(&issuer.es256(&c), NOW)
    };
    assert!(with_aud(json!(["other", CLIENT])).is_ok());
    assert_eq!(with_aud(json!("other")), Err(OidcError::WrongAudience));
    assert_eq!(with_aud(json!(["other"])), Err(OidcError::WrongAudience));
    assert_eq!(with_aud(json!([])), Err(OidcError::WrongAudience));
    assert!(matches!(with_aud(json!(7)), Err(OidcError::InvalidClaim { .. })));
    let mut c = claims();
    c.as_object_mut().expect("object").remove("aud");
    assert_eq!(verifier.verify(&issuer.es256(&c), NOW), Err(OidcError::MissingClaim("aud".into())));
}

#[test]
fn verifier_should_refuse_a_forged_signature() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    // Another key claiming the issuer's kid.
    let intruder = ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
    let forged = sign(json!({"alg": "ES256", "kid": "ec-1"}), &claims(), &Signer::Ec(&intruder));
    assert_eq!(verifier.verify(&forged, NOW), Err(OidcError::BadSignature { kid: "ec-1".into() }));
    // The issuer's signature over other claims.
    let genuine = issuer.es256(&claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(c.to_string().as_bytes()), parts[2]);
    assert_eq!(
        verifier.verify(&tampered, NOW),
        Err(OidcError::BadSignature { kid: "ec-1".into() })
    );
    // An RSA signature with a flipped bit.
    let rs256 = sign(
        json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(),
        &Signer::Rsa(&issuer.rsa, &signature::RSA_PKCS1_SHA256),
    );
    let (message, sig) = rs256.rsplit_once('.').expect("three parts");
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).expect("b64");
    sig[10] ^= 1;
    let flipped = format!("{message}.{}", b64(&sig));
    assert_eq!(
        verifier.verify(&flipped, NOW),
        Err(OidcError::BadSignature { kid: "rsa-1".into() })
    );
    // The EC key's kid on an RSA-signed token: the named key cannot verify it.
    let confused = sign(
        json!({"alg": "RS256", "kid": "ec-1"}),
        &claims(),
        &Signer::Rsa(&issuer.rsa, &signature::RSA_PKCS1_SHA256),
    );
    assert_eq!(
        verifier.verify(&confused, NOW),
        Err(OidcError::BadSignature { kid: "ec-1".into() })
    );
    // Without a kid every key is tried, and none verifies the intruder's signature.
    let no_kid = sign(json!({"alg": "ES256"}), &claims(), &Signer::Ec(&intruder));
    let err = verifier.verify(&no_kid, NOW).expect_err("forged");
    assert_eq!(err, OidcError::NoMatchingKey);
    assert!(err.wants_key_refresh());
}

#[test]
fn verifier_should_try_every_key_when_the_token_has_no_kid() {
    let issuer = Issuer::new();
    let token = sign(json!({"alg": "ES256"}), &claims(), &Signer::Ec(&issuer.ec));
    issuer.verifier(config()).verify(&token, NOW).expect("valid without kid");
}

#[test]
fn verifier_should_refuse_alg_none_hmac_and_unconfigured_algorithms() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    let payload = b64(claims().to_string().as_bytes());
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
    assert_eq!(verifier.verify(&none, NOW), Err(OidcError::UnsupportedAlgorithm("none".into())));
    // HS256 keyed with the issuer's public key bytes: the classic key-confusion attack.
    let header = b64(br#"{"alg":"HS256","kid":"ec-1"}"#);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, issuer.ec.public_key().as_ref());
    let tag = ring::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    let hs256 = format!("{header}.{payload}.{}", b64(tag.as_ref()));
    assert_eq!(verifier.verify(&hs256, NOW), Err(OidcError::UnsupportedAlgorithm("HS256".into())));
    // RS256 is supported but not configured here.
    let es_only = issuer.verifier(OidcConfig { signing_algs: vec!["ES256".into()], ..config() });
    let rs256 = sign(
        json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(),
        &Signer::Rsa(&issuer.rsa, &signature::RSA_PKCS1_SHA256),
    );
    assert_eq!(es_only.verify(&rs256, NOW), Err(OidcError::UnsupportedAlgorithm("RS256".into())));
    // The default configuration accepts RS256 only, as kube-apiserver's.
    let default = issuer.verifier(OidcConfig::new(ISSUER, CLIENT));
    assert!(default.verify(&rs256, NOW).is_ok());
    assert_eq!(
        default.verify(&issuer.es256(&claims()), NOW),
        Err(OidcError::UnsupportedAlgorithm("ES256".into()))
    );
}

#[test]
fn verifier_should_ask_for_fresh_keys_on_an_unknown_kid() {
    let issuer = Issuer::new();
    let token = sign(json!({"alg": "ES256", "kid": "ec-2"}), &claims(), &Signer::Ec(&issuer.ec));
    let err = issuer.verifier(config()).verify(&token, NOW).expect_err("unknown kid");
    assert_eq!(err, OidcError::UnknownKeyId("ec-2".into()));
    assert!(err.wants_key_refresh());
    let empty = issuer.verifier(config()).with_keys(Jwks::default());
    let err = empty.verify(&issuer.es256(&claims()), NOW).expect_err("no keys");
    assert_eq!(err, OidcError::NoKeys);
    assert!(err.wants_key_refresh());
    assert!(!OidcError::BadSignature { kid: "k".into() }.wants_key_refresh());
}

#[test]
fn verifier_should_refuse_malformed_tokens() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(config());
    for token in ["", "garbage", "a.b", "a.b.c.d", "!!!.e30.e30", "e30.e30.!!!", "e30=.e30.e30"] {
        assert!(
            matches!(verifier.verify(token, NOW), Err(OidcError::Malformed(_))),
            "{token:?} should be malformed"
        );
    }
    let not_json_header = format!("{}.e30.e30", b64(b"alg"));
    assert!(matches!(verifier.verify(&not_json_header, NOW), Err(OidcError::Malformed(_))));
    let not_json_payload =
        sign_raw(&json!({"alg": "ES256", "kid": "ec-1"}), b"not json", &Signer::Ec(&issuer.ec));
    assert_eq!(
        verifier.verify(&not_json_payload, NOW),
        Err(OidcError::Malformed("payload is not a JSON object"))
    );
    let crit = sign(
        json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"]}),
        &claims(),
        &Signer::Ec(&issuer.ec),
    );
    assert!(matches!(verifier.verify(&crit, NOW), Err(OidcError::Malformed(_))));
    // A huge token is refused before it is decoded, even if it is otherwise valid.
    let mut c = claims();
    c["padding"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let huge = issuer.es256(&c);
    assert_eq!(verifier.verify(&huge, NOW), Err(OidcError::TooLarge { len: huge.len() }));
    let huge_garbage = ".".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(verifier.verify(&huge_garbage, NOW), Err(OidcError::TooLarge { .. })));
}

#[test]
fn verifier_should_prefix_usernames_and_groups() {
    let issuer = Issuer::new();
    let token = issuer.es256(&claims());
    let user = issuer.verifier(email_config()).verify(&token, NOW).expect("valid");
    assert_eq!(user.name, "jane@example.test");
    assert_eq!(user.groups, vec!["oidc:devs", "oidc:ops", "system:authenticated"]);

    let name = |prefix: Option<&str>, claim: &str| {
        let config = OidcConfig {
            username_claim: claim.into(),
            username_prefix: prefix.map(str::to_string),
            ..config()
        };
        issuer.verifier(config).verify(&token, NOW).expect("valid").name
    };
    assert_eq!(name(None, "sub"), "https://issuer.example.test#jane");
    assert_eq!(name(Some(""), "sub"), "https://issuer.example.test#jane");
    assert_eq!(name(Some("-"), "sub"), "jane");
    assert_eq!(name(Some("oidc:"), "sub"), "oidc:jane");
    assert_eq!(name(Some("oidc:"), "email"), "oidc:jane@example.test");
    assert_eq!(name(None, "email"), "jane@example.test");

    // A single group may come as a string.
    let mut c = claims();
    c["groups"] = json!("devs");
    let user = issuer.verifier(email_config()).verify(&issuer.es256(&c), NOW).expect("valid");
    assert_eq!(user.groups, vec!["oidc:devs", "system:authenticated"]);
    // No groups claim: no groups but system:authenticated.
    c.as_object_mut().expect("object").remove("groups");
    let user = issuer.verifier(email_config()).verify(&issuer.es256(&c), NOW).expect("valid");
    assert_eq!(user.groups, vec!["system:authenticated"]);
    // Neither a number nor an array with a number is a group.
    for bad in [json!(7), json!(["devs", 7])] {
        c["groups"] = bad;
        assert!(matches!(
            issuer.verifier(email_config()).verify(&issuer.es256(&c), NOW),
            Err(OidcError::InvalidClaim { .. })
        ));
    }
}

#[test]
fn verifier_should_refuse_a_missing_or_odd_username_claim() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(email_config());
    let mut c = claims();
    c.as_object_mut().expect("object").remove("email");
    assert_eq!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::MissingClaim("email".into()))
    );
    for bad in [json!(""), json!(["jane@example.test"])] {
        c["email"] = bad;
        assert!(matches!(
            verifier.verify(&issuer.es256(&c), NOW),
            Err(OidcError::InvalidClaim { .. })
        ));
    }
}

#[test]
fn verifier_should_require_a_verified_email_when_the_username_is_the_email() {
    let issuer = Issuer::new();
    let mut c = claims();
    for unverified in [json!(false), json!("true"), json!(null)] {
        c["email_verified"] = unverified;
        assert_eq!(
            issuer.verifier(email_config()).verify(&issuer.es256(&c), NOW),
            Err(OidcError::EmailNotVerified)
        );
        // Other username claims do not care.
        issuer.verifier(config()).verify(&issuer.es256(&c), NOW).expect("sub does not care");
    }
    // An issuer that does not say is trusted, as kube-apiserver does.
    c.as_object_mut().expect("object").remove("email_verified");
    issuer.verifier(email_config()).verify(&issuer.es256(&c), NOW).expect("no claim");
}

#[test]
fn verifier_should_enforce_required_claims() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier(OidcConfig {
        required_claims: vec![("hd".into(), "example.test".into()), ("tier".into(), "gold".into())],
        ..config()
    });
    let mut c = claims();
    c["hd"] = json!("example.test");
    c["tier"] = json!("gold");
    verifier.verify(&issuer.es256(&c), NOW).expect("both present");
    c["tier"] = json!("silver");
    assert_eq!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::RequiredClaimMismatch("tier".into()))
    );
    c["tier"] = json!(["gold"]);
    assert_eq!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::RequiredClaimMismatch("tier".into()))
    );
    c.as_object_mut().expect("object").remove("tier");
    assert_eq!(
        verifier.verify(&issuer.es256(&c), NOW),
        Err(OidcError::MissingClaim("tier".into()))
    );
}

#[test]
fn jwks_should_skip_keys_it_cannot_use() {
    let issuer = Issuer::new();
    let doc = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "too-long", "x": b64(&[1; 33]), "y": b64(&[1; 32])},
        "not an object",
        ec_jwk("ec-1", &issuer.ec, "P-256"),
    ]});
    let jwks = Jwks::parse(doc.to_string().as_bytes()).expect("parses");
    assert_eq!(jwks.len(), 1);
    assert!(jwks.contains_kid("ec-1") && !jwks.contains_kid("ed"));
    let verifier = issuer.verifier(config()).with_keys(jwks);
    verifier.verify(&issuer.es256(&claims()), NOW).expect("the usable key verifies");

    assert!(matches!(Jwks::parse(b"not json"), Err(JwksError::NotJson(_))));
    assert_eq!(Jwks::parse(br#"{"keys": {}}"#), Err(JwksError::NoKeysArray));
    assert_eq!(Jwks::parse(b"{}"), Err(JwksError::NoKeysArray));
    assert!(Jwks::parse(br#"{"keys": []}"#).expect("empty set").is_empty());
}

#[test]
fn jwks_should_accept_ec_coordinates_without_leading_zeros() {
    // Some encoders drop leading zero bytes; find a key whose x starts with one.
    let key = (0..2000)
        .map(|_| ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING))
        .find(|k| k.public_key().as_ref()[1] == 0)
        .expect("one key in 256 has a zero first byte");
    let point = key.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(&point[2..33]), "y": b64(&point[33..])});
    let jwks = Jwks::parse(json!({"keys": [jwk]}).to_string().as_bytes()).expect("parses");
    let token = sign(json!({"alg": "ES256", "kid": "k"}), &claims(), &Signer::Ec(&key));
    let verifier = OidcVerifier::new(config(), jwks).expect("config");
    verifier.verify(&token, NOW).expect("short x is padded");
}

#[test]
fn config_should_refuse_what_kube_apiserver_refuses() {
    assert_eq!(
        OidcConfig::new("http://issuer.example.test", CLIENT).validate(),
        Err(OidcConfigError::IssuerNotHttps("http://issuer.example.test".into()))
    );
    assert!(matches!(
        OidcConfig::new("https://", CLIENT).validate(),
        Err(OidcConfigError::IssuerNotHttps(_))
    ));
    assert_eq!(OidcConfig::new(ISSUER, "").validate(), Err(OidcConfigError::MissingClientId));
    let es512 = OidcConfig { signing_algs: vec!["ES512".into()], ..config() };
    assert_eq!(es512.validate(), Err(OidcConfigError::UnsupportedAlgorithm("ES512".into())));
    let hs256 = OidcConfig { signing_algs: vec!["HS256".into()], ..config() };
    assert!(OidcVerifier::new(hs256, Jwks::default()).is_err());
    let none = OidcConfig { signing_algs: vec![], ..config() };
    assert_eq!(none.validate(), Err(OidcConfigError::NoSigningAlgorithms));
    assert_eq!(config().validate(), Ok(()));
}
