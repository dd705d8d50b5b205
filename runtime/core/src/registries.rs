//! The node's registry configuration (`DATA_DIR/registries.yaml`, k3s's `registries.yaml`
//! format): mirrors per registry host, and per-endpoint credentials and TLS settings. The
//! Wasm runtime's puller reads it directly; for containerd it is rendered into the
//! `hosts.toml` files of containerd's `config_path` ([`RegistryConfig::write_containerd_hosts`]).
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example.com:5000"]
//!   registry.local:5000:
//!     endpoint: ["http://registry.local:5000"]   # plain HTTP
//! configs:
//!   mirror.example.com:5000:
//!     auth: {username: u, password: p}            # or auth: base64(u:p), identity_token
//!     tls: {ca_file: /etc/ca.pem, cert_file: c.pem, key_file: k.pem, insecure_skip_verify: false}
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Marks the `hosts.toml` files Skiff wrote, so it rewrites or removes only its own.
const HOSTS_TOML_MARKER: &str =
    "# Written by skiff from its registries.yaml; edits are overwritten.";

#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    #[error("reading registry config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("registry config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("writing containerd registry hosts under {path}: {source}")]
    WriteHosts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `registries.yaml`. Empty when the file does not exist: every registry is reached over
/// HTTPS at its own address, trusted by the node's CA bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegistryConfig {
    /// Registry host (`docker.io`, `host:port`, or `*` for every registry) → mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Endpoint host (`host[:port]`) → its credentials and TLS settings.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Mirror {
    /// Endpoint URLs tried in order before the registry itself; `http://` means plain HTTP.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<HostAuth>,
    #[serde(default)]
    pub tls: Option<HostTls>,
}

/// Credentials for an endpoint, used when the pod gives none.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HostAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(username:password)`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for HostAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAuth").field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HostTls {
    /// Extra CA bundle (PEM) trusted for this endpoint besides the node's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) presented to the endpoint.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (for local testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]`, plus an optional path prefix; no
    /// trailing slash. Requests go to `{base}/v2/…`.
    pub base: String,
    /// `host[:port]`: the key of `configs`.
    pub host: String,
    pub plain_http: bool,
    /// Whether this is a mirror (else the registry itself).
    pub mirror: bool,
    pub config: HostConfig,
}

impl RegistryConfig {
    /// Read `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, RegistryConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(RegistryConfigError::Read { path: path.to_path_buf(), source });
            }
        };
        Self::parse(&bytes)
            .map_err(|message| RegistryConfigError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parse `registries.yaml` text.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let config: RegistryConfig = serde_yaml_ng::from_slice(bytes).map_err(|e| e.to_string())?;
        for (host, mirror) in &config.mirrors {
            for url in &mirror.endpoint {
                parse_endpoint_url(url).ok_or_else(|| {
                    format!("mirrors.{host}: endpoint {url:?} is not an http(s) URL")
                })?;
            }
        }
        for (host, c) in &config.configs {
            if let Some(tls) = &c.tls
                && tls.cert_file.is_some() != tls.key_file.is_some()
            {
                return Err(format!("configs.{host}.tls: cert_file and key_file go together"));
            }
        }
        Ok(config)
    }

    /// Where to fetch `registry`'s content (`host[:port]` as written in image names; Docker
    /// Hub is `docker.io`), in order: its mirrors, the `*` mirrors, then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirrors = self.mirrors.get(registry).into_iter().chain(self.mirrors.get("*"));
        for url in mirrors.flat_map(|m| m.endpoint.iter()) {
            if let Some((base, host, plain_http)) = parse_endpoint_url(url)
                && !out.iter().any(|e: &Endpoint| e.base == base)
            {
                let config = self.configs.get(&host).cloned().unwrap_or_default();
                out.push(Endpoint { base, host, plain_http, mirror: true, config });
            }
        }
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let base = format!("https://{host}");
        // A mirror at the registry's own address (e.g. `http://host:port`: plain HTTP) says
        // how to reach the registry itself; it is not tried a second time over HTTPS.
        if let Some(own) = out.iter_mut().find(|e| e.host == host) {
            own.mirror = false;
        } else {
            let config = self
                .configs
                .get(registry)
                .or_else(|| self.configs.get(host))
                .cloned()
                .unwrap_or_default();
            out.push(Endpoint {
                base,
                host: host.to_string(),
                plain_http: false,
                mirror: false,
                config,
            });
        }
        out
    }

    /// containerd's `hosts.toml` for each registry this config says something about:
    /// `(directory name under config_path, file contents)`.
    pub fn containerd_hosts(&self) -> Vec<(String, String)> {
        let mut registries: Vec<&String> = self.mirrors.keys().collect();
        for host in self.configs.keys() {
            // A config for an endpoint that is only a mirror is written in the mirror's block.
            let is_mirror_endpoint = self.mirrors.values().any(|m| {
                m.endpoint.iter().any(|u| parse_endpoint_url(u).is_some_and(|(_, h, _)| &h == host))
            });
            if !is_mirror_endpoint && !registries.contains(&host) {
                registries.push(host);
            }
        }
        let mut out = Vec::new();
        for registry in registries {
            let dir = if registry == "*" { "_default".to_string() } else { registry.clone() };
            let mut text = format!("{HOSTS_TOML_MARKER}\n");
            let mirrors: Vec<(String, String)> = self
                .mirrors
                .get(registry)
                .map(|m| m.endpoint.as_slice())
                .unwrap_or(&[])
                .iter()
                .filter_map(|u| parse_endpoint_url(u).map(|(base, host, _)| (base, host)))
                .collect();
            let mut hosts: Vec<(String, String)> = Vec::new();
            if registry == "*" {
                hosts = mirrors;
            } else {
                let own_host = if registry == "docker.io" {
                    "registry-1.docker.io"
                } else {
                    registry.as_str()
                };
                // A mirror at the registry's own address is how to reach the registry itself.
                let server = mirrors
                    .iter()
                    .find(|(_, h)| h == own_host)
                    .map(|(b, _)| b.clone())
                    .unwrap_or_else(|| format!("https://{own_host}"));
                text.push_str(&format!("server = {}\n", toml_string(&server)));
                if let Some(tls) = self.configs.get(registry).and_then(|c| c.tls.as_ref()) {
                    text.push_str(&tls_toml(tls));
                }
                hosts.extend(mirrors.into_iter().filter(|(_, h)| h != own_host));
                // containerd 1.6 rejects a hosts.toml without a `host` table: the registry
                // itself is listed last as well (tried again only if everything else failed).
                hosts.push((server, registry.clone()));
            }
            for (base, host) in hosts {
                text.push_str(&format!("\n[host.{}]\n", toml_string(&base)));
                text.push_str("capabilities = [\"pull\", \"resolve\"]\n");
                if let Some(tls) = self.configs.get(&host).and_then(|c| c.tls.as_ref()) {
                    text.push_str(&tls_toml(tls));
                }
            }
            out.push((dir, text));
        }
        out
    }

    /// Write [`Self::containerd_hosts`] under `config_path` (`<registry>/hosts.toml`), and
    /// remove the files an earlier run wrote for registries no longer configured. Files Skiff
    /// did not write are left alone.
    pub fn write_containerd_hosts(&self, config_path: &Path) -> Result<(), RegistryConfigError> {
        let err =
            |source| RegistryConfigError::WriteHosts { path: config_path.to_path_buf(), source };
        std::fs::create_dir_all(config_path).map_err(err)?;
        let hosts = self.containerd_hosts();
        for entry in std::fs::read_dir(config_path).map_err(err)? {
            let dir = entry.map_err(err)?.path();
            let file = dir.join("hosts.toml");
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let ours =
                std::fs::read_to_string(&file).is_ok_and(|t| t.starts_with(HOSTS_TOML_MARKER));
            if ours && !hosts.iter().any(|(d, _)| *d == name) {
                std::fs::remove_file(&file).map_err(err)?;
                let _ = std::fs::remove_dir(&dir);
            }
        }
        for (dir, text) in hosts {
            let dir = config_path.join(dir);
            std::fs::create_dir_all(&dir).map_err(err)?;
            let tmp = dir.join(".hosts.toml.tmp");
            std::fs::write(&tmp, text).map_err(err)?;
            std::fs::rename(&tmp, dir.join("hosts.toml")).map_err(err)?;
        }
        Ok(())
    }
}

fn tls_toml(tls: &HostTls) -> String {
    let mut s = String::new();
    if let Some(ca) = &tls.ca_file {
        s.push_str(&format!("ca = {}\n", toml_string(&ca.to_string_lossy())));
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        s.push_str(&format!(
            "client = [[{}, {}]]\n",
            toml_string(&cert.to_string_lossy()),
            toml_string(&key.to_string_lossy())
        ));
    }
    if tls.insecure_skip_verify {
        s.push_str("skip_verify = true\n");
    }
    s
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `(base without trailing slash, host[:port], plain_http)` of an endpoint URL.
fn parse_endpoint_url(url: &str) -> Option<(String, String, bool)> {
    let (plain_http, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return None;
    }
    let base = format!("{}://{rest}", if plain_http { "http" } else { "https" });
    // A `/v2` suffix names the API root itself; requests add it again.
    let base = base.strip_suffix("/v2").map(str::to_string).unwrap_or(base);
    Some((base, host.to_string(), plain_http))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com:5000/", "http://10.0.0.1:5000"]
  "registry.local:5000":
    endpoint: ["http://registry.local:5000"]
configs:
  "mirror.example.com:5000":
    auth: {username: u, password: p}
    tls: {ca_file: /etc/ca.pem, cert_file: /c.pem, key_file: /k.pem}
  "127.0.0.1:5001":
    tls: {ca_file: /tmp/ca "x".pem, insecure_skip_verify: true}
"#;

    #[test]
    fn endpoints_should_list_mirrors_then_the_registry() {
        let config = RegistryConfig::parse(SAMPLE.as_bytes()).expect("parses");
        let eps = config.endpoints("docker.io");
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "https://mirror.example.com:5000",
                "http://10.0.0.1:5000",
                "https://registry-1.docker.io"
            ]
        );
        assert!(eps[1].plain_http && eps[0].mirror && !eps[2].mirror);
        assert_eq!(eps[0].config.auth.as_ref().and_then(|a| a.username.as_deref()), Some("u"));
        let eps = config.endpoints("127.0.0.1:5001");
        assert_eq!(eps.len(), 1);
        assert!(eps[0].config.tls.as_ref().is_some_and(|t| t.insecure_skip_verify));
        // A mirror at the registry's own address replaces it (plain HTTP here).
        let eps = config.endpoints("registry.local:5000");
        assert_eq!(eps.len(), 1);
        assert!(eps[0].plain_http && !eps[0].mirror);
    }

    #[test]
    fn parse_should_reject_bad_endpoints_and_half_client_certs() {
        assert!(RegistryConfig::parse(b"mirrors: {x: {endpoint: [ftp://x]}}").is_err());
        assert!(RegistryConfig::parse(b"configs: {x: {tls: {cert_file: /c}}}").is_err());
        assert_eq!(RegistryConfig::parse(b"\n").expect("empty"), RegistryConfig::default());
    }

    #[test]
    fn containerd_hosts_should_render_servers_mirrors_and_tls() {
        let config = RegistryConfig::parse(SAMPLE.as_bytes()).expect("parses");
        let hosts: BTreeMap<String, String> = config.containerd_hosts().into_iter().collect();
        let docker = &hosts["docker.io"];
        assert!(docker.contains("server = \"https://registry-1.docker.io\""));
        assert!(docker.contains("[host.\"https://mirror.example.com:5000\"]"));
        assert!(docker.contains("ca = \"/etc/ca.pem\"\nclient = [[\"/c.pem\", \"/k.pem\"]]"));
        assert!(docker.contains("[host.\"http://10.0.0.1:5000\"]"));
        let local = &hosts["127.0.0.1:5001"];
        assert!(local.contains("ca = \"/tmp/ca \\\"x\\\".pem\"\nskip_verify = true"));
        assert!(
            local.contains("[host.\"https://127.0.0.1:5001\"]"),
            "containerd 1.6 needs a host table"
        );
        let plain = &hosts["registry.local:5000"];
        assert!(plain.contains("server = \"http://registry.local:5000\""), "{plain}");
        assert!(!hosts.contains_key("mirror.example.com:5000"));

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("other")).expect("mkdir");
        std::fs::write(dir.path().join("other/hosts.toml"), "server = \"x\"").expect("write");
        config.write_containerd_hosts(dir.path()).expect("write hosts");
        assert!(dir.path().join("docker.io/hosts.toml").is_file());
        RegistryConfig::default().write_containerd_hosts(dir.path()).expect("rewrite");
        assert!(!dir.path().join("docker.io").exists());
        assert!(dir.path().join("other/hosts.toml").is_file(), "files not ours are kept");
    }
}
