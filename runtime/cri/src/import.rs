//! Importing an OCI image tarball into containerd, for nodes without a registry. Image import
//! is not part of CRI, so this runs containerd's own client, `ctr`, in the namespace the CRI
//! plugin serves (`k8s.io`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::socket_path;

/// The containerd namespace whose images the CRI plugin sees.
pub const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{file}: an OCI container image goes to containerd: pass --container-runtime-endpoint \
         (the containerd socket, e.g. unix:///run/containerd/containerd.sock)"
    )]
    NoEndpoint { file: PathBuf },
    #[error("CRI endpoint {endpoint}: socket {socket} does not exist (is containerd running?)")]
    NoSocket { endpoint: String, socket: PathBuf },
    #[error("running ctr (containerd's client, shipped with containerd) failed: {0}")]
    Ctr(#[source] std::io::Error),
    #[error("ctr {action} failed ({status}): {stderr}")]
    Failed { action: String, status: std::process::ExitStatus, stderr: String },
    #[error("{file}: the tarball holds {count} images but --name names only one")]
    AmbiguousName { file: PathBuf, count: usize },
    #[error("{file}: containerd imported no named image (give one with --name repo:tag)")]
    NothingImported { file: PathBuf },
}

fn ctr(socket: &Path, args: &[&str], action: &str) -> Result<String, ImportError> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE])
        .args(args)
        .output()
        .map_err(ImportError::Ctr)?;
    if !out.status.success() {
        return Err(ImportError::Failed {
            action: action.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names `ctr images import` reports (`unpacking NAME (sha256:…)...done`).
fn imported_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("unpacking "))
        .filter_map(|l| l.split_once(" (").map(|(name, _)| name.to_string()))
        .collect()
}

/// Import the OCI image-layout (or Docker archive) tarball `file` into the containerd at
/// `endpoint` (`unix:///path` or a path), optionally naming its one image `name` (in addition
/// to the names the tarball gives it). Returns the names the images got. Blocking: runs `ctr`.
pub fn import_oci_image(
    endpoint: Option<&str>,
    file: &Path,
    name: Option<&str>,
) -> Result<Vec<String>, ImportError> {
    let endpoint = endpoint.ok_or_else(|| ImportError::NoEndpoint { file: file.to_path_buf() })?;
    let socket = socket_path(endpoint);
    if !socket.exists() {
        return Err(ImportError::NoSocket { endpoint: endpoint.to_string(), socket });
    }
    let path = file.to_string_lossy();
    // With --name, images without a name of their own are kept by digest so they can be tagged.
    let mut args = vec!["images", "import"];
    if name.is_some() {
        args.push("--digests");
    }
    args.push(&path);
    let names = imported_names(&ctr(&socket, &args, "images import")?);
    let Some(name) = name else {
        if names.is_empty() {
            return Err(ImportError::NothingImported { file: file.to_path_buf() });
        }
        return Ok(names);
    };
    // `--digests` adds a by-digest name next to each named image; one image may have both.
    let source = names
        .iter()
        .find(|n| !n.contains('@'))
        .or_else(|| names.first())
        .ok_or_else(|| ImportError::NothingImported { file: file.to_path_buf() })?;
    let named = names.iter().filter(|n| !n.contains('@')).count();
    if named > 1 {
        return Err(ImportError::AmbiguousName { file: file.to_path_buf(), count: named });
    }
    let name = normalize(name);
    if *source != name {
        ctr(&socket, &["images", "tag", "--force", source, &name], "images tag")?;
    }
    // The by-digest names were only a handle for tagging; the tarball's own names stay (one
    // may be in use, e.g. as the sandbox image).
    let digest_names: Vec<&str> =
        names.iter().filter(|n| n.contains('@') && **n != name).map(String::as_str).collect();
    if !digest_names.is_empty() {
        let mut args = vec!["images", "rm"];
        args.extend(digest_names);
        ctr(&socket, &args, "images rm")?;
    }
    Ok(vec![name])
}

/// A reference as containerd stores it: a bare `repo:tag` is a Docker Hub name.
fn normalize(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') { full } else { format!("{full}:latest") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_names_should_read_ctr_output() {
        let out = "unpacking skiff.local/busybox:1.36 (sha256:18668e)...done\n\
                   unpacking import-2024@sha256:abc (sha256:abc)...done\n";
        assert_eq!(imported_names(out), ["skiff.local/busybox:1.36", "import-2024@sha256:abc"]);
    }

    #[test]
    fn normalize_should_expand_docker_hub_names() {
        assert_eq!(normalize("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalize("skiff.local/busybox:1.36"), "skiff.local/busybox:1.36");
        assert_eq!(normalize("localhost:5000/a"), "localhost:5000/a:latest");
    }

    #[test]
    fn import_should_need_an_endpoint() {
        let err = import_oci_image(None, Path::new("x.tar"), None).unwrap_err();
        assert!(err.to_string().contains("--container-runtime-endpoint"), "{err}");
    }
}
