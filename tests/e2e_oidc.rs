//! End-to-end: OIDC ID tokens as kubectl credentials (kube-apiserver's `--oidc-*` flags).
//! A test issuer signs ID tokens with an ES256 key generated per run; the server takes its
//! keys from a JWKS file (`--oidc-jwks-file`) or fetches them over HTTPS from the issuer's
//! discovery document, served by `openssl s_server` with a test CA.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use support::Skiff;

const ISSUER: &str = "https://issuer.example.test";
const CLIENT: &str = "skiff";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock after 1970").as_secs()
        as i64
}

/// A signing key of the test issuer.
struct SigningKey {
    kid: String,
    key: EcdsaKeyPair,
}

impl SigningKey {
    fn generate(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        SigningKey { kid: kid.to_string(), key }
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    /// A compact JWS of `claims` with this key's kid.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(&SystemRandom::new(), input.as_bytes()).expect("signing");
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    // Written beside and renamed, so the server never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc.to_string()).expect("writing the JWKS");
    std::fs::rename(&tmp, path).expect("renaming the JWKS");
}

/// An ID token's claims for `email` in `groups`, valid for ten minutes.
fn id_claims(issuer: &str, email: &str, groups: &[&str]) -> Value {
    json!({
        "iss": issuer,
        "aud": CLIENT,
        "sub": format!("id-{email}"),
        "email": email,
        "email_verified": true,
        "groups": groups,
        "iat": now(),
        "exp": now() + 600,
    })
}

/// kubectl with `token` as its only credential (the kubeconfig's token is overridden),
/// verbose enough to print the response status.
fn as_token(s: &Skiff, token: &str, args: &[&str]) -> Output {
    let mut a = vec!["--token", token, "-v=6"];
    a.extend_from_slice(args);
    s.kubectl(&a)
}

/// `kubectl auth whoami` as `token`: `(username, groups)`.
fn whoami(s: &Skiff, token: &str) -> (String, Vec<String>) {
    let out = s.kubectl(&["--token", token, "auth", "whoami", "-o", "json"]);
    assert!(out.status.success(), "whoami: {}{}", text(&out.stdout), text(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).expect("a SelfSubjectReview");
    let info = &review["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    (info["username"].as_str().unwrap_or_default().to_string(), groups)
}

fn assert_unauthorized(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{what} must not authenticate");
    assert!(err.contains("401 Unauthorized"), "{what}: no 401 in {err}");
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{what}: kubectl should say Unauthorized: {err}"
    );
}

#[test]
fn oidc_tokens_should_authenticate_users_with_keys_from_a_jwks_file() {
    let _g = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("issuer-jwks.json");
    let k1 = SigningKey::generate("k1");
    write_jwks(&jwks, &[&k1]);
    let jwks_arg = jwks.to_string_lossy().into_owned();
    let s = Skiff::start_with(
        &dir.path().join("server"),
        &[
            "--oidc-issuer-url",
            ISSUER,
            "--oidc-client-id",
            CLIENT,
            "--oidc-jwks-file",
            &jwks_arg,
            "--oidc-username-claim",
            "email",
            "--oidc-groups-claim",
            "groups",
            "--oidc-groups-prefix",
            "oidc:",
            // kube-apiserver's default is RS256 only; this issuer signs with ES256.
            "--oidc-signing-algs",
            "ES256",
        ],
    );

    let jane = k1.sign(&id_claims(ISSUER, "jane@example.test", &["devs"]));
    let (name, groups) = whoami(&s, &jane);
    assert_eq!(name, "jane@example.test");
    assert!(groups.contains(&"oidc:devs".to_string()), "groups: {groups:?}");
    assert!(groups.contains(&"system:authenticated".to_string()), "groups: {groups:?}");
    assert_eq!(groups.len(), 2, "groups: {groups:?}");

    // What an ID token must not get through with.
    let mut expired = id_claims(ISSUER, "jane@example.test", &["devs"]);
    expired["iat"] = json!(now() - 1200);
    expired["exp"] = json!(now() - 600);
    let mut other_audience = id_claims(ISSUER, "jane@example.test", &["devs"]);
    other_audience["aud"] = json!("another-client");
    let mut other_issuer = id_claims("https://elsewhere.example.test", "jane@example.test", &[]);
    other_issuer["aud"] = json!(CLIENT);
    let mut unverified = id_claims(ISSUER, "jane@example.test", &["devs"]);
    unverified["email_verified"] = json!(false);
    let intruder = SigningKey::generate("k1");
    let forged = intruder.sign(&id_claims(ISSUER, "jane@example.test", &["devs"]));
    let bad = [
        ("an expired token", k1.sign(&expired)),
        ("a token for another audience", k1.sign(&other_audience)),
        ("a token of another issuer", k1.sign(&other_issuer)),
        ("a token with an unverified email", k1.sign(&unverified)),
        ("a forged token", forged),
        ("garbage", "not-a-token".to_string()),
        ("a truncated token", jane[..jane.len() - 5].to_string()),
    ];
    for (what, token) in &bad {
        assert_unauthorized(&as_token(&s, token, &["get", "pods"]), what);
    }

    // Authorization sees the prefixed groups: devs may read, a stranger may not.
    s.ok(&[
        "create",
        "clusterrolebinding",
        "oidc-devs-view",
        "--clusterrole=view",
        "--group=oidc:devs",
    ]);
    s.wait_for("jane may list pods", Duration::from_secs(10), || {
        as_token(&s, &jane, &["get", "pods"]).status.success()
    });
    let bob = k1.sign(&id_claims(ISSUER, "bob@example.test", &["others"]));
    let (name, _) = whoami(&s, &bob);
    assert_eq!(name, "bob@example.test");
    let out = as_token(&s, &bob, &["get", "pods"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "bob is bound to no role: {}", text(&out.stdout));
    assert!(err.contains("403 Forbidden") && !err.contains("401"), "bob: {err}");

    // A new key in the file is picked up without a restart; the one it replaced stops working.
    let k2 = SigningKey::generate("k2");
    write_jwks(&jwks, &[&k2]);
    let jane2 = k2.sign(&id_claims(ISSUER, "jane@example.test", &["devs"]));
    s.wait_for("the rotated key to be accepted", Duration::from_secs(20), || {
        as_token(&s, &jane2, &["get", "pods"]).status.success()
    });
    assert_unauthorized(&as_token(&s, &jane, &["get", "pods"]), "a token of the retired key");
}

/// `openssl s_server -WWW`: serves the files under `root` over HTTPS on `port`.
struct StaticHttps {
    child: Child,
}

impl StaticHttps {
    fn start(root: &Path, port: u16, cert: &Path, key: &Path) -> StaticHttps {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("running openssl s_server (the test issuer)");
        StaticHttps { child }
    }
}

impl Drop for StaticHttps {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn oidc_server_should_fetch_keys_from_the_issuer_once_it_is_reachable() {
    let _g = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = support::loopback_pki("skiff oidc test CA");
    let (ca_file, cert_file, key_file) =
        (dir.path().join("ca.pem"), dir.path().join("issuer.crt"), dir.path().join("issuer.key"));
    std::fs::write(&ca_file, ca).expect("ca");
    std::fs::write(&cert_file, cert).expect("cert");
    std::fs::write(&key_file, key).expect("key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let issuer = format!("https://127.0.0.1:{port}");
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join(".well-known")).expect("www");
    std::fs::write(
        www.join(".well-known/openid-configuration"),
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys.json")}).to_string(),
    )
    .expect("discovery document");
    let k1 = SigningKey::generate("k1");
    write_jwks(&www.join("keys.json"), &[&k1]);

    // The issuer is down when the server starts: the server starts anyway.
    let ca_arg = ca_file.to_string_lossy().into_owned();
    let s = Skiff::start_with(
        &dir.path().join("server"),
        &[
            "--oidc-issuer-url",
            &issuer,
            "--oidc-client-id",
            CLIENT,
            "--oidc-ca-file",
            &ca_arg,
            "--oidc-signing-algs",
            "RS256,ES256",
        ],
    );
    let token = k1.sign(&id_claims(&issuer, "jane@example.test", &[]));
    assert_unauthorized(&as_token(&s, &token, &["auth", "whoami"]), "a token before keys load");

    let _issuer = StaticHttps::start(&www, port, &cert_file, &key_file);
    // The server's retries back off (10 s, then 20 s, 40 s, ...): on a loaded machine the
    // issuer may come up just after the second one, so allow for the third.
    s.wait_for("keys fetched from the issuer", Duration::from_secs(120), || {
        as_token(&s, &token, &["auth", "whoami"]).status.success()
    });
    // The default username prefix qualifies `sub` with the issuer.
    let (name, groups) = whoami(&s, &token);
    assert_eq!(name, format!("{issuer}#id-jane@example.test"));
    assert_eq!(groups, vec!["system:authenticated"]);

    // The issuer rotates in a new key: a token naming it makes the server fetch again.
    let k2 = SigningKey::generate("k2");
    write_jwks(&www.join("keys.json"), &[&k1, &k2]);
    let token2 = k2.sign(&id_claims(&issuer, "jane@example.test", &[]));
    s.wait_for("the new key fetched on its first use", Duration::from_secs(30), || {
        as_token(&s, &token2, &["auth", "whoami"]).status.success()
    });
    assert!(as_token(&s, &token, &["auth", "whoami"]).status.success(), "k1 still valid");
}

#[test]
fn oidc_server_should_refuse_an_issuer_url_that_is_not_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(support::skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("server"))
        .args(["--oidc-issuer-url", "http://issuer.example.test", "--oidc-client-id", CLIENT])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running skiff server");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for skiff server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("skiff server kept running with an http issuer URL");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("reading stderr");
    assert!(!status.success(), "an http issuer must stop the server");
    assert!(err.contains("must use the https scheme"), "{err}");
    assert!(!dir.path().join("server").exists(), "refused before touching its data dir");
}
