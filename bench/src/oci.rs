//! OCI image layouts the benchmarks and tests push to a registry.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Write an OCI image layout at `out` holding `module` as a Wasm artifact (one
/// `application/vnd.wasm.content.layer.v1+wasm` layer) tagged `tag`; `out`.
pub fn wasm_layout(module: &[u8], out: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let put = |bytes: &[u8]| -> anyhow::Result<(String, usize)> {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).context("writing a blob")?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer, layer_size) = put(module)?;
    let (config, config_size) = put(b"{}")?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.wasm.content.layer.v1+wasm", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put(&serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index)?).context("index.json")?;
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .context("oci-layout")?;
    Ok(out.to_path_buf())
}

/// `module` grown to at least `size` bytes with a custom section (which runtimes ignore):
/// the same program, as big as a real application's module.
pub fn padded_module(module: &[u8], size: usize) -> Vec<u8> {
    let mut out = module.to_vec();
    let name = b"skiff-bench-padding";
    let payload = size.saturating_sub(module.len()).max(1);
    let mut body = Vec::with_capacity(payload + name.len() + 5);
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    // Not compressible: registries and clients may compress, real code barely does.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    body.extend((0..payload).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    out.push(0);
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
