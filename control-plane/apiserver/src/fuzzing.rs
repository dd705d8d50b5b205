//! Entry points for fuzzing the decoders that read untrusted request bodies: Kubernetes
//! protobuf, JSON and YAML bodies, and the four patch types; and what admission reads from
//! outside programs and policy authors: a webhook's AdmissionReview answer (and the JSON
//! patch in it), and CEL expressions over arbitrary objects. Each must answer any input
//! with a value or an `ApiError`, never a panic. The cargo-fuzz targets in `fuzz/` call
//! these; the tests below run them over seeded random and mutated inputs on stable Rust.

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use crate::handlers::parse_body;
use crate::patch::{PatchType, apply_patch};

/// A protobuf request body (`k8s\0` envelope), decoded and re-encoded.
pub fn protobuf(data: &[u8]) {
    if let Ok(v) = skiff_api::protobuf::decode(data) {
        let _ = skiff_api::protobuf::encode(&v);
    }
}

/// A JSON or YAML request body, parsed and checked against its kind's schema.
pub fn body(data: &[u8]) {
    for ct in ["application/json", "application/yaml"] {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        if let Ok(v) = parse_body(&headers, data) {
            let kind = v.get("kind").and_then(Value::as_str).unwrap_or("Pod").to_string();
            let api_version =
                v.get("apiVersion").and_then(Value::as_str).unwrap_or("v1").to_string();
            let _ = crate::typed::check(&api_version, &kind, &v);
        }
    }
}

/// Credentials as a request carries them: the bytes as an `Authorization` header, as
/// impersonation headers, as a client certificate (DER), and the token in them as a service
/// account token, an OIDC ID token and a bootstrap token; plus a request line as the
/// authorizers read it. Each parser must refuse garbage without panicking.
pub fn credentials(data: &[u8]) {
    use std::sync::OnceLock;
    static SIGNER: OnceLock<Option<crate::tokens::TokenSigner>> = OnceLock::new();
    static OIDC: OnceLock<Option<skiff_auth::oidc::OidcVerifier>> = OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(&[b"Bearer ", data].concat()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        headers.insert("impersonate-user", v.clone());
        headers.append("impersonate-group", v.clone());
        headers.insert("impersonate-extra-scopes%2Fx", v);
    }
    let _ = crate::authn::impersonation_request(&headers);
    let _ = crate::authn::user_of_certificate(&crate::authn::PeerCertificates(
        std::sync::Arc::new(vec![rustls::pki_types::CertificateDer::from(data.to_vec())]),
    ));
    let token = crate::authn::bearer_token(&headers).unwrap_or(&text).to_string();
    let signer = SIGNER.get_or_init(|| {
        let key = rcgen::KeyPair::generate().ok()?;
        crate::tokens::TokenSigner::from_pem(&key.serialize_pem()).ok()
    });
    if let Some(signer) = signer {
        let _ = signer.verify(&token, 1_700_000_000);
    }
    let oidc = OIDC.get_or_init(|| {
        let config = skiff_auth::oidc::OidcConfig::new("https://issuer.example", "skiff");
        skiff_auth::oidc::OidcVerifier::new(config, skiff_auth::oidc::Jwks::default()).ok()
    });
    if let Some(oidc) = oidc {
        let _ = oidc.verify(&token, 1_700_000_000);
    }
    let _ = skiff_auth::oidc::Jwks::parse(data);
    let _ = crate::bootstrap_tokens::BootstrapToken::parse(&token);
    let (method, path) = text.split_once(' ').unwrap_or(("GET", &text));
    let _ = skiff_auth::Attributes::from_request(method, path, data.len().is_multiple_of(2));
}

fn target() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}],
            "ports": [{"containerPort": 80}]}], "volumes": [{"name": "v", "emptyDir": {}}]}})
}

/// A patch body of every type applied to a pod; the first byte picks the type.
pub fn patch(data: &[u8]) {
    let Some((first, body)) = data.split_first() else { return };
    let ty = match first % 3 {
        0 => PatchType::Json,
        1 => PatchType::Merge,
        _ => PatchType::StrategicMerge,
    };
    let mut pod = target();
    let _ = apply_patch(&mut pod, ty, body);
}

/// A webhook's answer: read as an AdmissionReview (v1 and v1beta1), and its patch applied
/// to a pod.
pub fn admission_review(data: &[u8]) {
    for version in ["v1", "v1beta1"] {
        if let Ok(answer) = skiff_admission::review::decode_response(version, data, "u") {
            let _ = skiff_admission::review::denial("w", answer.status.as_ref());
            if let Some(patch) = answer.patch {
                let mut pod = target();
                let _ = crate::admission::apply_webhook_patch(&mut pod, &patch);
            }
        }
    }
}

/// A CEL expression (the bytes up to the first NUL) evaluated over an object (the rest, as
/// JSON), within a small cost budget.
pub fn cel(data: &[u8]) {
    let (expr, object) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    skiff_admission::cel::fuzz_eval(&String::from_utf8_lossy(expr), object);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random bytes, and mutations (flips, truncations, splices) of the seeds.
    fn inputs(seeds: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
        let mut rng = Rng(0x5eed_5eed_1234_5678);
        let mut out = seeds.to_vec();
        for i in 0..count {
            let mut v = if i % 4 == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..1 + rng.below(4) {
                if v.is_empty() {
                    break;
                }
                let at = rng.below(v.len());
                match rng.below(4) {
                    0 => v[at] ^= 1 << rng.below(8),
                    1 => v.truncate(at),
                    2 => v.insert(at, rng.next() as u8),
                    _ => {
                        let other = &seeds[rng.below(seeds.len())];
                        let from = rng.below(other.len().max(1));
                        v.splice(at..at, other.iter().skip(from).take(16).copied());
                    }
                }
            }
            out.push(v);
        }
        out
    }

    #[test]
    fn protobuf_decoder_should_never_panic() {
        let pod = target();
        let seeds = vec![skiff_api::protobuf::encode(&pod).unwrap(), b"k8s\0".to_vec()];
        for input in inputs(&seeds, 20_000) {
            protobuf(&input);
        }
    }

    #[test]
    fn body_decoders_should_never_panic() {
        let seeds = vec![
            serde_json::to_vec(&target()).unwrap(),
            serde_yaml_ng::to_string(&target()).unwrap().into_bytes(),
            b"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"spec\":{\"replicas\":\"x\"}}"
                .to_vec(),
            b"- a\n- &x b\n- *x\n".to_vec(),
        ];
        for input in inputs(&seeds, 5_000) {
            body(&input);
        }
    }

    #[test]
    fn credential_parsers_should_never_panic() {
        let seeds = vec![
            b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJ4In0.c2ln".to_vec(),
            b"abcdef.0123456789abcdef".to_vec(),
            b"GET /api/v1/namespaces/ns/pods/p/exec".to_vec(),
            b"\x30\x82\x01\x0a\x02\x82\x01\x01".to_vec(),
            b"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}".to_vec(),
        ];
        for input in inputs(&seeds, 20_000) {
            credentials(&input);
        }
    }

    #[test]
    fn patch_decoders_should_never_panic() {
        let seeds = vec![
            b"\x00[{\"op\":\"replace\",\"path\":\"/spec/containers/0/image\",\"value\":\"j\"}]".to_vec(),
            b"\x01{\"metadata\":{\"labels\":null},\"spec\":{\"containers\":[]}}".to_vec(),
            b"\x02{\"spec\":{\"containers\":[{\"name\":\"c\",\"$patch\":\"delete\"}],\"$setElementOrder/volumes\":[{\"name\":\"v\"}]}}".to_vec(),
            b"\x02{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"x\"]},\"spec\":{\"$retainKeys\":[\"containers\"]}}".to_vec(),
        ];
        for input in inputs(&seeds, 20_000) {
            patch(&input);
        }
    }

    #[test]
    fn admission_review_decoder_should_never_panic() {
        let seeds = vec![
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2xhYmVscy94IiwidmFsdWUiOiIxIn1d","warnings":["w"],"auditAnnotations":{"a":"b"}}}"#.to_vec(),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":403,"reason":"Forbidden","message":"no"}}}"#.to_vec(),
        ];
        for input in inputs(&seeds, 20_000) {
            admission_review(&input);
        }
    }

    #[test]
    fn cel_evaluator_should_never_panic() {
        let seeds = vec![
            b"object.spec.replicas <= 3 && object.metadata.name.startsWith('a')\0{\"spec\":{\"replicas\":2},\"metadata\":{\"name\":\"ab\"}}".to_vec(),
            b"[1,2,3].map(x, x * 2).filter(y, y > 2).size() == 2".to_vec(),
            b"quantity('1Gi').isGreaterThan(quantity('1Mi')) && url('https://a/b').getHost() == 'a'".to_vec(),
            b"cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && 'abc'.matches('^a') && has(object.x)".to_vec(),
        ];
        for input in inputs(&seeds, 3_000) {
            cel(&input);
        }
    }
}
