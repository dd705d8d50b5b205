//! A container's mounts as WASI preopens. A directory mount is preopened as it is. WASI can
//! only preopen directories, so file mounts (a `subPath` naming a file, the termination message
//! file) are gathered by their parent path into a private directory per container run holding
//! hard links to the files (copies where a link is impossible, e.g. across file systems —
//! Kubernetes does not update subPath mounts either), and that directory is preopened at the
//! parent path. The guest never sees the files' siblings on the node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skiff_runtime_core::{ContainerConfig, Mount};

/// The directories to preopen for `config`, in mount order.
pub(crate) fn preopens(config: &ContainerConfig) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    // parent path in the guest → (file name → (host file, read-only))
    let mut files: BTreeMap<String, BTreeMap<String, (PathBuf, bool)>> = BTreeMap::new();
    let mut add_file = |guest: &str, host: &Path, read_only: bool| -> Result<(), String> {
        let guest = guest.trim_end_matches('/');
        let (parent, name) = guest
            .rsplit_once('/')
            .ok_or_else(|| format!("mount path {guest:?} must be absolute"))?;
        let parent = if parent.is_empty() { "/" } else { parent };
        files
            .entry(parent.to_string())
            .or_default()
            .insert(name.to_string(), (host.to_path_buf(), read_only));
        Ok(())
    };
    for m in &config.mounts {
        if !m.container_path.starts_with('/') {
            return Err(format!("mount path {:?} must be absolute", m.container_path));
        }
        match std::fs::metadata(&m.host_path) {
            Ok(meta) if meta.is_dir() => out.push(m.clone()),
            Ok(_) => add_file(&m.container_path, &m.host_path, m.read_only)?,
            Err(e) => {
                return Err(format!("mount source {} is not usable: {e}", m.host_path.display()));
            }
        }
    }
    if let (Some(guest), Some(host)) =
        (&config.termination_message_path, &config.termination_message_host_path)
        && host.exists()
    {
        add_file(guest, host, false)?;
    }
    if files.is_empty() {
        return Ok(out);
    }
    let base = config
        .log_path
        .parent()
        .map(|p| p.join(format!(".files-{}", config.attempt)))
        .ok_or_else(|| "container has no log directory for its file mounts".to_string())?;
    let _ = std::fs::remove_dir_all(&base);
    for (i, (parent, entries)) in files.into_iter().enumerate() {
        let dir = base.join(i.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating {} for file mounts: {e}", dir.display()))?;
        let mut all_read_only = true;
        for (name, (host, read_only)) in entries {
            all_read_only &= read_only;
            let target = dir.join(&name);
            // Resolve configMap/secret `..data` links: the link must point at the real file.
            let source = host.canonicalize().unwrap_or(host.clone());
            if std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target)
                    .map_err(|e| format!("exposing {} at {parent}/{name}: {e}", host.display()))?;
            }
        }
        out.push(Mount { host_path: dir, container_path: parent, read_only: all_read_only });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_mounts_should_be_grouped_by_parent_without_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("app.conf"), "x=1").unwrap();
        std::fs::write(vol.join("secret-sibling"), "nope").unwrap();
        let term = dir.path().join("term");
        std::fs::write(&term, "").unwrap();
        let config = ContainerConfig {
            mounts: vec![
                Mount { host_path: vol.clone(), container_path: "/data".into(), read_only: true },
                Mount {
                    host_path: vol.join("app.conf"),
                    container_path: "/etc/app.conf".into(),
                    read_only: true,
                },
            ],
            termination_message_path: Some("/dev/termination-log".into()),
            termination_message_host_path: Some(term.clone()),
            log_path: dir.path().join("c/0.log"),
            ..Default::default()
        };
        let pre = preopens(&config).unwrap();
        assert_eq!(pre.len(), 3);
        assert_eq!(pre[0].host_path, vol);
        let dev = pre.iter().find(|m| m.container_path == "/dev").unwrap();
        assert!(!dev.read_only);
        let etc = pre.iter().find(|m| m.container_path == "/etc").unwrap();
        assert!(etc.read_only);
        assert_eq!(std::fs::read_to_string(etc.host_path.join("app.conf")).unwrap(), "x=1");
        assert!(!etc.host_path.join("secret-sibling").exists());
        // The termination log is the same file the kubelet reads.
        std::fs::write(dev.host_path.join("termination-log"), "bye").unwrap();
        assert_eq!(std::fs::read_to_string(&term).unwrap(), "bye");
    }
}
