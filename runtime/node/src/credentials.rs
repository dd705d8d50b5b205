//! Registry credentials for a pod's image, found the way the kubelet's docker keyring finds
//! them (`pkg/credentialprovider/keyring.go`): the pod's `imagePullSecrets` and its
//! ServiceAccount's, of type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`;
//! a key matches an image when its host (with `*` globs per dot-separated label) and port
//! match and its path is a prefix of the image's repository path. Every match is returned,
//! most specific key first, for the caller to try in turn.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Api;
use serde::Deserialize;
use skiff_runtime_core::PullAuth;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

#[derive(Deserialize, Default)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Deserialize, Default, Clone)]
struct DockerConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default, alias = "identityToken")]
    identitytoken: Option<String>,
    #[serde(default, alias = "registryToken")]
    registrytoken: Option<String>,
}

/// Docker config keys and their credentials, from any number of pull secrets.
#[derive(Debug, Default)]
pub struct Keyring {
    entries: Vec<(String, PullAuth)>,
}

impl Keyring {
    /// Add the credentials of one secret; `Err` says why it holds none.
    pub fn add_secret(&mut self, secret: &Secret) -> Result<(), String> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.clone().unwrap_or_default();
        let kind = secret.type_.as_deref().unwrap_or_default();
        let entries: BTreeMap<String, DockerConfigEntry> = match kind {
            DOCKER_CONFIG_JSON => {
                let bytes = data
                    .get(".dockerconfigjson")
                    .ok_or_else(|| format!("secret {name:?} has no .dockerconfigjson key"))?;
                serde_json::from_slice::<DockerConfigJson>(&bytes.0)
                    .map_err(|e| format!("secret {name:?}: .dockerconfigjson: {e}"))?
                    .auths
            }
            DOCKER_CFG => {
                let bytes = data
                    .get(".dockercfg")
                    .ok_or_else(|| format!("secret {name:?} has no .dockercfg key"))?;
                serde_json::from_slice(&bytes.0)
                    .map_err(|e| format!("secret {name:?}: .dockercfg: {e}"))?
            }
            other => {
                return Err(format!(
                    "secret {name:?} is of type {other:?}, not {DOCKER_CONFIG_JSON} or {DOCKER_CFG}"
                ));
            }
        };
        for (key, e) in entries {
            let auth = PullAuth {
                username: e.username.filter(|s| !s.is_empty()),
                password: e.password.filter(|s| !s.is_empty()),
                auth: e.auth.filter(|s| !s.is_empty()),
                server_address: Some(key.clone()),
                identity_token: e.identitytoken.filter(|s| !s.is_empty()),
                registry_token: e.registrytoken.filter(|s| !s.is_empty()),
            };
            self.entries.push((key, auth));
        }
        Ok(())
    }

    /// Credentials whose key matches `image`, most specific first (reverse order of keys,
    /// as the kubelet sorts them). Empty: pull anonymously.
    pub fn lookup(&self, image: &str) -> Vec<PullAuth> {
        let Some(target) = image_location(image) else { return Vec::new() };
        // Keys sort as the kubelet indexes them: host[:port] + path, without the scheme.
        let mut found: Vec<(String, &PullAuth)> = self
            .entries
            .iter()
            .filter_map(|(key, auth)| {
                let glob = key_location(key)?;
                matches(&glob, &target).then(|| (glob.index_key(), auth))
            })
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        let mut out: Vec<PullAuth> = Vec::new();
        for (_, auth) in found {
            if !out.contains(auth) {
                out.push(auth.clone());
            }
        }
        out
    }
}

/// `(host labels, port, path)` of a keyring key or an image.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    host: Vec<String>,
    port: Option<String>,
    path: String,
}

impl Location {
    fn index_key(&self) -> String {
        let port = self.port.as_ref().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}{port}{}", self.host.join("."), self.path)
    }
}

fn split_location(s: &str) -> Option<Location> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, String::new()),
    };
    if hostport.is_empty() {
        return None;
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p.to_string())),
        _ => (hostport, None),
    };
    let host = match host.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    };
    Some(Location { host: host.split('.').map(str::to_string).collect(), port, path })
}

fn key_location(key: &str) -> Option<Location> {
    let mut loc = split_location(key.trim())?;
    // Docker Hub's legacy key `https://index.docker.io/v1/` names the whole registry.
    if loc.host == ["docker", "io"] && (loc.path == "/v1/" || loc.path == "/v1") {
        loc.path = String::new();
    }
    loc.path = loc.path.trim_end_matches('/').to_string();
    Some(loc)
}

/// Where an image lives: registry host (Docker Hub when the first part is not a host) and
/// repository path, without tag or digest.
fn image_location(image: &str) -> Option<Location> {
    let no_digest = image.split('@').next().unwrap_or(image);
    let (first, rest) = match no_digest.split_once('/') {
        Some((f, r)) if f.contains(['.', ':']) || f == "localhost" => {
            (f.to_string(), r.to_string())
        }
        _ => ("docker.io".to_string(), no_digest.to_string()),
    };
    let last = rest.rsplit('/').next().unwrap_or_default();
    let repo = match last.rsplit_once(':') {
        Some((_, tag)) => rest[..rest.len() - tag.len() - 1].to_string(),
        None => rest,
    };
    let repo = if matches!(first.as_str(), "docker.io" | "index.docker.io") && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    split_location(&format!("{first}/{repo}"))
}

fn matches(glob: &Location, target: &Location) -> bool {
    glob.host.len() == target.host.len()
        && glob.host.iter().zip(&target.host).all(|(g, t)| glob_match(g, t))
        && glob.port == target.port
        && target.path.starts_with(&glob.path)
}

/// `filepath.Match` for one DNS label: `*` (any run), `?` (one character), literals.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The pod's pull secrets and its ServiceAccount's, read from the API. Secrets that cannot
/// be read or hold no credentials are named in the second value (the kubelet's
/// `FailedToRetrieveImagePullSecret` warning) and otherwise skipped.
pub async fn keyring_for(client: &kube::Client, pod: &Pod) -> (Keyring, Vec<String>) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = pod.spec.clone().unwrap_or_default();
    let mut names: Vec<String> = spec
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect();
    let account =
        spec.service_account_name.filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    if let Ok(Some(sa)) = accounts.get_opt(&account).await {
        for r in sa.image_pull_secrets.unwrap_or_default() {
            if !r.name.is_empty() && !names.contains(&r.name) {
                names.push(r.name);
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut keyring = Keyring::default();
    let mut problems = Vec::new();
    for name in names {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                if let Err(e) = keyring.add_secret(&secret) {
                    problems.push(e);
                }
            }
            Ok(None) => problems.push(format!("secret {name:?} not found")),
            Err(e) => problems.push(format!("reading secret {name:?}: {e}")),
        }
    }
    (keyring, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, json: serde_json::Value) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.to_string().into_bytes()),
            )])),
            ..Default::default()
        }
    }

    fn users(auths: &[PullAuth]) -> Vec<&str> {
        auths.iter().map(|a| a.username.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn lookup_should_match_hosts_ports_paths_and_globs_like_the_kubelet() {
        let mut k = Keyring::default();
        k.add_secret(&secret(
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"username": "port"},
                "https://registry.example.com/team": {"username": "team"},
                "registry.example.com": {"username": "host"},
                "*.example.org": {"username": "glob"},
                "https://index.docker.io/v1/": {"username": "hub", "password": "p"},
            }}),
        ))
        .expect("valid");
        k.add_secret(&secret(
            DOCKER_CFG,
            ".dockercfg",
            serde_json::json!({"quay.io": {"auth": "dTpw"}}),
        ))
        .expect("valid");
        assert_eq!(users(&k.lookup("127.0.0.1:5000/a/b:v1")), ["port"]);
        assert!(k.lookup("127.0.0.1:5001/a/b:v1").is_empty(), "ports must match");
        assert_eq!(users(&k.lookup("registry.example.com/team/app:1")), ["team", "host"]);
        assert_eq!(users(&k.lookup("registry.example.com/other/app")), ["host"]);
        assert_eq!(users(&k.lookup("eu.example.org/x@sha256:abc")), ["glob"]);
        assert!(k.lookup("a.eu.example.org/x").is_empty(), "a glob covers one label");
        assert_eq!(users(&k.lookup("busybox")), ["hub"]);
        assert_eq!(users(&k.lookup("docker.io/library/busybox:1")), ["hub"]);
        assert_eq!(k.lookup("quay.io/x/y")[0].auth.as_deref(), Some("dTpw"));
    }

    #[test]
    fn add_secret_should_reject_other_types_and_bad_json() {
        let mut k = Keyring::default();
        assert!(k.add_secret(&secret("Opaque", "x", serde_json::json!({}))).is_err());
        let bad = Secret {
            type_: Some(DOCKER_CONFIG_JSON.into()),
            data: Some(BTreeMap::from([(".dockerconfigjson".into(), ByteString(b"{".to_vec()))])),
            ..Default::default()
        };
        assert!(k.add_secret(&bad).is_err());
    }
}
