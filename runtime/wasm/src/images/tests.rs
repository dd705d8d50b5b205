#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::io::Write;

use serde_json::json;

use super::*;

/// Smallest valid core module: magic + version.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\x00\x00\x00";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds an OCI image-layout tarball in memory.
struct LayoutBuilder {
    blobs: Vec<Vec<u8>>,
    manifests: Vec<serde_json::Value>,
}

impl LayoutBuilder {
    fn new() -> Self {
        LayoutBuilder { blobs: Vec::new(), manifests: Vec::new() }
    }

    fn blob(&mut self, bytes: Vec<u8>) -> (String, usize) {
        let d = sha(&bytes);
        let n = bytes.len();
        self.blobs.push(bytes);
        (d, n)
    }

    /// Adds a manifest with one layer of `layer_type`; returns the manifest digest.
    fn image(&mut self, layer_type: &str, layer: &[u8], ref_name: Option<&str>) -> String {
        let (config_digest, config_size) = self.blob(b"{}".to_vec());
        let (layer_digest, layer_size) = self.blob(layer.to_vec());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.wasm.config.v0+json",
            "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config_size },
            "layers": [ { "mediaType": layer_type, "digest": layer_digest, "size": layer_size } ],
        });
        let (digest, size) = self.blob(serde_json::to_vec(&manifest).unwrap());
        let mut desc = json!({ "mediaType": OCI_MANIFEST, "digest": digest, "size": size });
        if let Some(name) = ref_name {
            let mut annotations = serde_json::Map::new();
            annotations.insert(REF_NAME.to_string(), json!(name));
            desc["annotations"] = serde_json::Value::Object(annotations);
        }
        self.manifests.push(desc);
        digest
    }

    fn write(&self, path: &Path, gzip: bool) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = json!({ "schemaVersion": 2, "manifests": self.manifests });
        add("index.json", &serde_json::to_vec(&index).unwrap());
        for blob in &self.blobs {
            let d = sha(blob);
            add(&format!("blobs/sha256/{}", d.trim_start_matches("sha256:")), blob);
        }
        let bytes = tar.into_inner().unwrap();
        let mut f = File::create(path).unwrap();
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap();
        } else {
            f.write_all(&bytes).unwrap();
        }
    }
}

#[test]
fn normalize_name_should_add_latest_and_strip_docker_hub() {
    assert_eq!(normalize_name("hello").unwrap(), "hello:latest");
    assert_eq!(normalize_name("hello:v1").unwrap(), "hello:v1");
    assert_eq!(normalize_name("docker.io/library/hello").unwrap(), "hello:latest");
    assert_eq!(normalize_name("docker.io/acme/hello:2").unwrap(), "acme/hello:2");
    assert_eq!(normalize_name("ghcr.io/acme/hello").unwrap(), "ghcr.io/acme/hello:latest");
    assert_eq!(normalize_name("localhost:5000/hello").unwrap(), "localhost:5000/hello:latest");
    for bad in ["", " ", "a b", "hello:", ":tag", "repo/", "x@sha256:00"] {
        assert!(matches!(normalize_name(bad), Err(ImageError::InvalidName(_))), "{bad:?}");
    }
}

#[test]
fn import_should_store_bare_module_under_normalized_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    let file = dir.path().join("m.wasm");
    fs::write(&file, EMPTY_MODULE).unwrap();

    let imported = store.import(&file, Some("docker.io/library/hello")).unwrap();
    assert_eq!(
        imported,
        vec![ImportedImage { name: "hello:latest".into(), digest: sha(EMPTY_MODULE) }]
    );

    for reference in ["hello", "hello:latest", "docker.io/library/hello:latest", &sha(EMPTY_MODULE)]
    {
        let r = store.resolve(reference).unwrap_or_else(|| panic!("{reference} should resolve"));
        assert_eq!(r.digest, sha(EMPTY_MODULE));
        assert_eq!(r.wasm_digest, r.digest);
        assert_eq!(r.size, EMPTY_MODULE.len() as u64);
        assert_eq!(fs::read(&r.wasm_path).unwrap(), EMPTY_MODULE);
    }
    assert!(store.resolve("hello:v2").is_none());
    assert_eq!(store.list().unwrap().len(), 1);
    // Nothing left in the staging directory.
    assert_eq!(fs::read_dir(dir.path().join("images/tmp")).unwrap().count(), 0);
}

#[test]
fn import_should_reject_bare_module_without_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let file = dir.path().join("m.wasm");
    fs::write(&file, EMPTY_MODULE).unwrap();
    let err = store.import(&file, None).unwrap_err();
    assert!(matches!(err, ImageError::NameRequired { .. }), "{err}");
    assert!(err.to_string().contains("--name"), "{err}");
}

#[test]
fn import_should_reject_files_that_are_neither_wasm_nor_oci() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let file = dir.path().join("x.txt");
    fs::write(&file, b"hello world, definitely not a tarball").unwrap();
    let err = store.import(&file, Some("x")).unwrap_err();
    assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err}");
}

#[test]
fn import_should_read_oci_layout_tarball_with_names_from_annotations() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let mut layout = LayoutBuilder::new();
        let manifest = layout.image(
            "application/vnd.wasm.content.layer.v1+wasm",
            EMPTY_MODULE,
            Some("docker.io/acme/app:1.0"),
        );
        let tarball = dir.path().join("app.tar");
        layout.write(&tarball, gzip);

        let imported = store.import(&tarball, None).unwrap();
        assert_eq!(
            imported,
            vec![ImportedImage { name: "acme/app:1.0".into(), digest: manifest.clone() }]
        );
        let r = store.resolve("acme/app:1.0").unwrap();
        assert_eq!(r.digest, manifest);
        assert_eq!(r.wasm_digest, sha(EMPTY_MODULE));
        assert_eq!(fs::read(&r.wasm_path).unwrap(), EMPTY_MODULE);
        // Pinned by manifest digest, too.
        assert!(store.resolve(&format!("acme/app@{manifest}")).is_some());
    }
}

#[test]
fn import_should_let_name_override_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let mut layout = LayoutBuilder::new();
    // A bare tag names no repository, so --name is needed.
    layout.image("application/wasm", EMPTY_MODULE, Some("latest"));
    let tarball = dir.path().join("app.tar");
    layout.write(&tarball, false);

    let err = store.import(&tarball, None).unwrap_err();
    assert!(matches!(err, ImageError::NoNames { .. }), "{err}");
    let imported = store.import(&tarball, Some("mine:v3")).unwrap();
    assert_eq!(imported[0].name, "mine:v3");
    assert!(store.resolve("mine:v3").is_some());
}

#[test]
fn import_should_reject_oci_layout_without_wasm_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let mut layout = LayoutBuilder::new();
    layout.image("application/vnd.oci.image.layer.v1.tar+gzip", b"not wasm", Some("nginx:1.27"));
    let tarball = dir.path().join("nginx.tar");
    layout.write(&tarball, true);

    let err = store.import(&tarball, None).unwrap_err();
    assert!(matches!(err, ImageError::NoWasmLayer { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("application/vnd.oci.image.layer.v1.tar+gzip"), "{msg}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn import_should_reject_wasm_layer_without_magic() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let mut layout = LayoutBuilder::new();
    layout.image("application/wasm", b"garbage!", Some("bad:1"));
    let tarball = dir.path().join("bad.tar");
    layout.write(&tarball, false);
    let err = store.import(&tarball, None).unwrap_err();
    assert!(matches!(err, ImageError::InvalidLayout { .. }), "{err}");
}

#[test]
fn resolve_should_see_imports_made_by_another_store_instance() {
    // Stands in for `skiff images import` writing while the server's store reads.
    let dir = tempfile::tempdir().unwrap();
    let reader = ImageStore::open(dir.path()).unwrap();
    let writer = ImageStore::open(dir.path()).unwrap();
    let file = dir.path().join("m.wasm");
    fs::write(&file, EMPTY_MODULE).unwrap();
    assert!(reader.resolve("a").is_none());
    writer.import(&file, Some("a")).unwrap();
    assert!(reader.resolve("a").is_some());
    writer.import(&file, Some("b")).unwrap();
    assert!(reader.resolve("b").is_some());
    assert!(reader.resolve("a").is_some());
}

#[test]
fn remove_should_drop_names_and_sweep_should_free_only_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let module = dir.path().join("m.wasm");
    std::fs::write(&module, EMPTY_MODULE).unwrap();
    store.import(&module, Some("a:1")).unwrap();
    store.import(&module, Some("b:1")).unwrap();
    let other = dir.path().join("o.wasm");
    std::fs::write(&other, b"\0asm\x01\x00\x00\x00\x00").unwrap();
    store.import(&other, Some("c:1")).unwrap();

    assert!(matches!(store.remove(&["nope:1".into()]), Err(ImageError::NotFound(_))));
    assert_eq!(store.remove(&["a:1".into()]).unwrap(), ["a:1"]);
    assert!(store.resolve("a:1").is_none());
    let shared = store.resolve("b:1").unwrap();
    assert_eq!(store.sweep(std::time::Duration::ZERO).unwrap(), 0, "b:1 still needs the blob");
    assert!(shared.wasm_path.is_file());

    // By image id: every name of it.
    let c = store.resolve("c:1").unwrap();
    assert_eq!(store.remove(std::slice::from_ref(&c.digest)).unwrap(), ["c:1"]);
    // A recent blob survives a sweep with a grace period (a pull may be about to name it).
    assert_eq!(store.sweep(std::time::Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(store.sweep(std::time::Duration::ZERO).unwrap(), 9);
    assert!(!c.wasm_path.exists());
    assert!(shared.wasm_path.is_file());
}
