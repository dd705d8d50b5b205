use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use skiff_runtime_core::PullAuth;
use skiff_runtime_core::registries::RegistryConfig;

use super::{PullError, Reference};
use crate::images::ImageStore;

/// A module that validates: `(module)`.
const WASM: &[u8] = b"\0asm\x01\0\0\0";

#[derive(Default)]
struct Registry {
    /// Path → (content type, body).
    objects: HashMap<String, (String, Vec<u8>)>,
    /// `Authorization` value required, if any.
    basic: Option<String>,
    requests: Vec<String>,
    /// Path → bytes after which the next response breaks the connection (once).
    cut: HashMap<String, usize>,
    /// `Range` headers received.
    ranges: Vec<String>,
}

type Shared = Arc<Mutex<Registry>>;

async fn serve(State(reg): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let mut reg = reg.lock().expect("lock");
    reg.requests.push(uri.path().to_string());
    if let Some(want) = &reg.basic
        && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"test\"")],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
    }
    let range = headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(r) = &range {
        reg.ranges.push(r.clone());
    }
    let cut = reg.cut.remove(uri.path());
    match reg.objects.get(uri.path()) {
        Some((_, body)) if cut.is_some() => {
            let n = cut.unwrap_or_default();
            use futures::StreamExt as _;
            let first = bytes::Bytes::copy_from_slice(&body[..n]);
            // The break comes once the first bytes are on the wire.
            let chunks = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                .chain(futures::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    Err(std::io::Error::other("connection cut by the test"))
                }));
            let mut response = axum::body::Body::from_stream(chunks).into_response();
            response.headers_mut().insert("content-length", body.len().into());
            response
        }
        Some((ct, body)) => match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let from: usize = r.trim_end_matches('-').parse().unwrap_or(0);
                let content_range = format!("bytes {from}-{}/{}", body.len() - 1, body.len());
                (
                    StatusCode::PARTIAL_CONTENT,
                    [("content-type", ct.clone()), ("content-range", content_range)],
                    body[from..].to_vec(),
                )
                    .into_response()
            }
            None => ([("content-type", ct.clone())], body.clone()).into_response(),
        },
        None => {
            (StatusCode::NOT_FOUND, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#).into_response()
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A plain-HTTP registry on 127.0.0.1:0 and a store configured to reach it.
async fn start() -> (Shared, String, tempfile::TempDir, ImageStore) {
    let reg: Shared = Arc::default();
    let app = axum::Router::new().fallback(serve).with_state(reg.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let yaml = format!("mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n");
    store.set_registry_config(RegistryConfig::parse(yaml.as_bytes()).expect("config"));
    (reg, host, dir, store)
}

/// Publish `wasm` as `repo:tag` (a manifest with one wasm layer whose descriptor says
/// `layer_size`/`layer_digest`); returns the manifest digest.
fn publish(
    reg: &Shared,
    repo: &str,
    tag: &str,
    blob: &[u8],
    layer_digest: &str,
    layer_size: usize,
) -> String {
    let config = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": layer_digest, "size": layer_size}],
    });
    let manifest = serde_json::to_vec(&manifest).expect("json");
    let md = digest(&manifest);
    let mut r = reg.lock().expect("lock");
    let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
    r.objects.insert(format!("/v2/{repo}/manifests/{tag}"), (mt.clone(), manifest.clone()));
    r.objects.insert(format!("/v2/{repo}/manifests/{md}"), (mt, manifest));
    r.objects.insert(
        format!("/v2/{repo}/blobs/{layer_digest}"),
        ("application/octet-stream".into(), blob.to_vec()),
    );
    md
}

/// Nothing but committed blobs: no staging files, no blob named in `absent`.
fn assert_clean(dir: &tempfile::TempDir, store: &ImageStore, absent: &str) {
    let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "staging files left: {tmp:?}");
    assert!(!store.has_blob(absent), "unverified blob kept");
}

#[tokio::test]
async fn pull_should_store_verified_image_and_resolve_by_tag_and_digest() {
    let (reg, host, _dir, store) = start().await;
    let md = publish(&reg, "wasm/hello", "v1", WASM, &digest(WASM), WASM.len());
    let image = format!("{host}/wasm/hello:v1");
    let pulled = store.pull(&image, &PullAuth::default()).await.expect("pull");
    assert_eq!(pulled.digest, md);
    assert_eq!(pulled.size, WASM.len() as u64);
    let resolved = store.resolve(&image).expect("resolves after pull");
    assert_eq!(resolved.digest, md);
    assert_eq!(std::fs::read(&resolved.wasm_path).expect("read"), WASM);

    // By digest: recorded as repo@digest; the layer is not fetched again.
    let pinned = format!("{host}/wasm/hello@{md}");
    reg.lock().expect("lock").requests.clear();
    store.pull(&pinned, &PullAuth::default()).await.expect("pull by digest");
    assert!(store.resolve(&pinned).is_some());
    let requests = reg.lock().expect("lock").requests.clone();
    assert!(
        requests.iter().all(|r| !r.contains("/blobs/")),
        "shared blob fetched again: {requests:?}"
    );
}

#[tokio::test]
async fn pull_should_keep_nothing_when_a_blob_does_not_match_its_digest() {
    let (reg, host, dir, store) = start().await;
    let claimed = digest(b"\0asm\x01\0\0\x02");
    publish(&reg, "bad", "v1", WASM, &claimed, WASM.len());
    let image = format!("{host}/bad:v1");
    let err = store.pull(&image, &PullAuth::default()).await.expect_err("must fail");
    assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&host), "names the registry: {err}");
    assert!(store.resolve(&image).is_none());
    assert_clean(&dir, &store, &claimed);
}

#[tokio::test]
async fn pull_should_keep_nothing_when_a_blob_is_truncated() {
    let (reg, host, dir, store) = start().await;
    // The registry sends fewer bytes than the manifest says.
    let full = b"\0asm\x01\0\0\0\0\0\0\0";
    publish(&reg, "short", "v1", WASM, &digest(full), full.len());
    let image = format!("{host}/short:v1");
    let err = store.pull(&image, &PullAuth::default()).await.expect_err("must fail");
    assert!(matches!(err, PullError::SizeMismatch { expected: 12, got: 8, .. }), "{err}");
    assert!(store.resolve(&image).is_none());
    assert_clean(&dir, &store, &digest(full));
    // More bytes than promised are refused too.
    publish(&reg, "long", "v1", full, &digest(WASM), WASM.len());
    let err = store.pull(&format!("{host}/long:v1"), &PullAuth::default()).await.expect_err("fail");
    assert!(matches!(err, PullError::SizeMismatch { .. }), "{err}");
    assert_clean(&dir, &store, &digest(WASM));
}

#[tokio::test]
async fn pull_should_report_the_registrys_401_and_use_credentials() {
    let (reg, host, _dir, store) = start().await;
    publish(&reg, "private", "v1", WASM, &digest(WASM), WASM.len());
    reg.lock().expect("lock").basic = Some("Basic dTpw".into()); // u:p
    let image = format!("{host}/private:v1");
    let wrong =
        PullAuth { username: Some("u".into()), password: Some("x".into()), ..Default::default() };
    let err = store.pull(&image, &wrong).await.expect_err("wrong password");
    let text = err.to_string();
    assert!(text.contains("401 Unauthorized") && text.contains(&host), "{text}");
    assert!(text.contains("authentication required"), "{text}");
    let err = store.pull(&image, &PullAuth::default()).await.expect_err("anonymous");
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err}");
    let right = PullAuth { auth: Some("dTpw".into()), ..Default::default() };
    store.pull(&image, &right).await.expect("right credentials");
}

#[tokio::test]
async fn pull_should_pick_the_wasi_manifest_of_an_index() {
    let (reg, host, _dir, store) = start().await;
    let md = publish(&reg, "multi", "wasm-only", WASM, &digest(WASM), WASM.len());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(b"x"), "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": 10,
             "platform": {"os": "wasi", "architecture": "wasm"}},
        ],
    });
    let index = serde_json::to_vec(&index).expect("json");
    reg.lock().expect("lock").objects.insert(
        "/v2/multi/manifests/v1".into(),
        ("application/vnd.oci.image.index.v1+json".into(), index),
    );
    let pulled = store.pull(&format!("{host}/multi:v1"), &PullAuth::default()).await.expect("pull");
    assert_eq!(pulled.digest, md);
}

#[tokio::test]
async fn pull_should_refuse_container_images_and_unknown_tags() {
    let (reg, host, _dir, store) = start().await;
    let err =
        store.pull(&format!("{host}/nothing:v1"), &PullAuth::default()).await.expect_err("404");
    assert!(matches!(err, PullError::NotFound { .. }), "{err}");
    let layer = b"not a tar".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()},
        ],
    }))
    .expect("json");
    reg.lock().expect("lock").objects.insert(
        "/v2/linux/manifests/v1".into(),
        ("application/vnd.oci.image.manifest.v1+json".into(), manifest),
    );
    let err = store.pull(&format!("{host}/linux:v1"), &PullAuth::default()).await.expect_err("oci");
    assert!(matches!(err, PullError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("runtimeClassName runc"), "{err}");
}

#[test]
fn reference_should_split_registry_repository_tag_and_digest() {
    let r = Reference::parse("busybox").expect("parse");
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
        ("docker.io", "library/busybox", Some("latest"))
    );
    let r = Reference::parse("127.0.0.1:5000/a/b:v1").expect("parse");
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
        ("127.0.0.1:5000", "a/b", Some("v1"))
    );
    let d = format!("sha256:{}", "a".repeat(64));
    let r = Reference::parse(&format!("localhost/x@{d}")).expect("parse");
    assert_eq!((r.registry.as_str(), r.tag, r.digest), ("localhost", None, Some(d)));
    assert!(Reference::parse("UPPER/case").is_err());
    assert!(Reference::parse("x@sha256:zz").is_err());
}

#[tokio::test]
async fn pull_should_take_the_module_out_of_a_single_layer_rootfs() {
    let (reg, host, _dir, store) = start().await;
    let mut tar =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in [("etc/readme.txt", &b"hi"[..]), ("app.wasm", WASM)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes).expect("append");
    }
    let layer = tar.into_inner().expect("tar").finish().expect("gzip");
    let config = serde_json::to_vec(&serde_json::json!({"config": {"Entrypoint": ["/app.wasm"]}}))
        .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
    }))
    .expect("json");
    {
        let mut r = reg.lock().expect("lock");
        let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
        r.objects.insert("/v2/spin/app/manifests/v1".into(), (mt, manifest));
        r.objects.insert(
            format!("/v2/spin/app/blobs/{}", digest(&layer)),
            ("application/octet-stream".into(), layer),
        );
        r.objects.insert(
            format!("/v2/spin/app/blobs/{}", digest(&config)),
            ("application/json".into(), config),
        );
    }
    let image = format!("{host}/spin/app:v1");
    let pulled = store.pull(&image, &PullAuth::default()).await.expect("pull");
    assert_eq!(pulled.wasm_digest, digest(WASM));
    let resolved = store.resolve(&image).expect("resolves");
    assert_eq!(std::fs::read(resolved.wasm_path).expect("read"), WASM);
}

#[tokio::test]
async fn pull_should_resume_an_interrupted_blob_download() {
    let (reg, host, dir, store) = start().await;
    let big: Vec<u8> = WASM.iter().copied().chain((0..100_000u32).map(|i| i as u8)).collect();
    publish(&reg, "resume", "v1", &big, &digest(&big), big.len());
    let blob_path = format!("/v2/resume/blobs/{}", digest(&big));
    reg.lock().expect("lock").cut.insert(blob_path, 40_000);
    let image = format!("{host}/resume:v1");
    let err = store.pull(&image, &PullAuth::default()).await.expect_err("cut");
    assert!(matches!(err, PullError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("interrupted after 40000 of"), "{err}");
    assert!(store.resolve(&image).is_none(), "nothing partial is used");
    let partial = dir
        .path()
        .join("tmp")
        .join(format!("partial-{}", digest(&big).trim_start_matches("sha256:")));
    assert_eq!(std::fs::metadata(&partial).expect("partial kept").len(), 40_000);

    store.pull(&image, &PullAuth::default()).await.expect("resumed pull");
    assert_eq!(reg.lock().expect("lock").ranges, ["bytes=40000-"]);
    let resolved = store.resolve(&image).expect("resolves");
    assert_eq!(std::fs::read(resolved.wasm_path).expect("read"), big);
    assert!(!partial.exists());
}
