//! The cluster's certificates and the admin credential: a CA and a serving certificate made on
//! first start and kept under `DATA_DIR/pki`, and the kubeconfig that real kubectl uses as is.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("pki i/o error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("tls configuration failed: {0}")]
    Tls(String),
}

/// Certificates and credentials of one cluster.
pub struct Pki {
    pub ca_cert_pem: String,
    /// The CA's key: every control-plane member holds it, to issue its own certificates.
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Bearer token of the cluster admin (`system:masters`).
    pub admin_token: String,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.into(), source })
}

/// Write a file readable by its owner only, atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io { path: path.into(), source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A certificate for `hosts` (IP addresses or DNS names) signed by `issuer`, with a fresh
/// key: `(cert_pem, key_pem)`.
fn issue_leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    hosts: &[String],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Load the PKI from `dir`, creating whatever is missing. The serving certificate is
    /// (re)issued when it does not cover every address in `hosts`.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        if !ca_cert_path.exists() || !ca_key_path.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "skiff-ca");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_private(&ca_cert_path, cert.pem().as_bytes())?;
        }
        let ca_cert_pem = read(&ca_cert_path)?;
        let ca_key_pem = read(&ca_key_path)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, KeyPair::from_pem(&ca_key_pem)?)?;

        let server_cert_path = dir.join("apiserver.crt");
        let server_key_path = dir.join("apiserver.key");
        let hosts_path = dir.join("apiserver.hosts");
        let mut want: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
        ];
        for h in hosts {
            if !want.contains(h) {
                want.push(h.clone());
            }
        }
        let covered = read(&hosts_path).map(|s| s.lines().map(str::to_string).collect::<Vec<_>>());
        let needs_issue = !server_cert_path.exists()
            || !server_key_path.exists()
            || !matches!(&covered, Ok(c) if want.iter().all(|h| c.contains(h)));
        if needs_issue {
            let usages = [ExtendedKeyUsagePurpose::ServerAuth];
            let (cert, key) = issue_leaf(&issuer, "skiff-apiserver", &want, &usages)?;
            write_private(&server_key_path, key.as_bytes())?;
            write_private(&server_cert_path, cert.as_bytes())?;
            write_private(&hosts_path, want.join("\n").as_bytes())?;
        }

        let token_path = dir.join("admin.token");
        if !token_path.exists() {
            let mut raw = [0u8; 32];
            rand::rng().fill_bytes(&mut raw);
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            write_private(&token_path, token.as_bytes())?;
        }
        Ok(Pki {
            ca_cert_pem,
            ca_key_pem,
            server_cert_pem: read(&server_cert_path)?,
            server_key_pem: read(&server_key_path)?,
            admin_token: read(&token_path)?.trim().to_string(),
        })
    }

    /// Put the CA and admin credential of an existing cluster into `dir` (a member joining
    /// it), so [`Pki::load_or_create`] issues this member's certificates under that CA.
    pub fn install_cluster_credentials(
        dir: &Path,
        ca_cert_pem: &str,
        ca_key_pem: &str,
        admin_token: &str,
    ) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
        // Reject material that would not load before writing any of it.
        Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
        write_private(&dir.join("ca.key"), ca_key_pem.as_bytes())?;
        write_private(&dir.join("ca.crt"), ca_cert_pem.as_bytes())?;
        write_private(&dir.join("admin.token"), admin_token.as_bytes())
    }

    /// This member's certificate for the raft peer transport (`peer.crt`/`peer.key` in `dir`),
    /// issued under the cluster CA for `hosts`, usable as both server and client (mutual
    /// TLS); reissued when it does not cover every host. Returns `(cert_pem, key_pem)`.
    pub fn peer_identity(
        &self,
        dir: &Path,
        hosts: &[String],
    ) -> Result<(String, String), PkiError> {
        let cert_path = dir.join("peer.crt");
        let key_path = dir.join("peer.key");
        let hosts_path = dir.join("peer.hosts");
        let mut want: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
        for h in hosts {
            if !want.contains(h) {
                want.push(h.clone());
            }
        }
        let covered = read(&hosts_path).map(|s| s.lines().map(str::to_string).collect::<Vec<_>>());
        let ca_changed = !matches!(read(&dir.join("peer.ca")), Ok(ca) if ca == self.ca_cert_pem);
        if ca_changed
            || !cert_path.exists()
            || !key_path.exists()
            || !matches!(&covered, Ok(c) if want.iter().all(|h| c.contains(h)))
        {
            let issuer =
                Issuer::from_ca_cert_pem(&self.ca_cert_pem, KeyPair::from_pem(&self.ca_key_pem)?)?;
            // Server and client: members authenticate each other (mutual TLS).
            let usages = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let (cert, key) = issue_leaf(&issuer, "skiff-peer", &want, &usages)?;
            write_private(&key_path, key.as_bytes())?;
            write_private(&cert_path, cert.as_bytes())?;
            write_private(&hosts_path, want.join("\n").as_bytes())?;
            write_private(&dir.join("peer.ca"), self.ca_cert_pem.as_bytes())?;
        }
        Ok((read(&cert_path)?, read(&key_path)?))
    }

    /// A rustls server config serving the apiserver certificate (HTTP/2 and HTTP/1.1) that
    /// asks for, but does not require, a client certificate issued by the cluster CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        server_tls_config_with_clients(
            &self.server_cert_pem,
            &self.server_key_pem,
            Some(&self.ca_cert_pem),
        )
    }

    /// The admin kubeconfig against `server_url` (e.g. `https://127.0.0.1:6443`), as kubeadm,
    /// kind and k3s write theirs: the current context's user `skiff-admin` holds a client
    /// certificate (CN `skiff-admin`, O `system:masters`, from the cluster CA, valid a year,
    /// issued afresh each time this is written); the bearer token is the user
    /// `skiff-admin-token` of context `skiff-token`.
    pub fn kubeconfig(&self, server_url: &str) -> String {
        match issue_client_cert(
            &self.ca_cert_pem,
            &self.ca_key_pem,
            ADMIN_USER,
            &["system:masters"],
            ADMIN_CERT_TTL,
        ) {
            Ok((cert, key)) => {
                admin_kubeconfig(server_url, &self.ca_cert_pem, &cert, &key, &self.admin_token)
            }
            // Without a certificate the token alone still works.
            Err(_) => kubeconfig(server_url, &self.ca_cert_pem, ADMIN_USER, &self.admin_token),
        }
    }
}

/// A rustls server config serving `cert_pem` with `key_pem` (HTTP/2 and HTTP/1.1).
pub fn server_tls_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    server_tls_config_with_clients(cert_pem, key_pem, None)
}

/// As [`server_tls_config`]; with `client_ca_pem`, a client may present a certificate, which
/// is accepted only when that CA issued it (callers read it from the connection to
/// authenticate); clients without one are let through to other authentication.
pub fn server_tls_config_with_clients(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| PkiError::Tls("no private key in the key PEM".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
                roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A serving certificate for `hosts` issued by the cluster CA: `(cert_pem, key_pem)`.
pub fn issue_serving_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    hosts: &[String],
) -> Result<(String, String), PkiError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    issue_leaf(&issuer, common_name, hosts, &[ExtendedKeyUsagePurpose::ServerAuth])
}

/// A client certificate for `user` in `groups` (CN and O, as the api server reads them)
/// issued by the cluster CA, valid for `ttl_seconds` from now: `(cert_pem, key_pem)`.
pub fn issue_client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    user: &str,
    groups: &[&str],
    ttl_seconds: u64,
) -> Result<(String, String), PkiError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let now = time::OffsetDateTime::now_utc();
    // A little slack before now for clocks that are slightly behind.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(ttl_seconds.min(i64::MAX as u64) as i64);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig for `user` authenticating with a client certificate and key (PEM).
pub fn client_cert_kubeconfig(
    server_url: &str,
    ca_cert_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n",
        b64(ca_cert_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// The admin's user name (its certificate's CN).
pub const ADMIN_USER: &str = "skiff-admin";
/// How long an admin client certificate is valid: a year, as kubeadm's.
const ADMIN_CERT_TTL: u64 = 365 * 24 * 3600;

/// The admin kubeconfig: a certificate user (the current context) and a token user.
pub fn admin_kubeconfig(
    server_url: &str,
    ca_cert_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    token: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: {ADMIN_USER}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n- name: {ADMIN_USER}-token\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {ADMIN_USER}\n    namespace: default\n- name: skiff-token\n  context:\n    cluster: skiff\n    user: {ADMIN_USER}-token\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n",
        b64(ca_cert_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// A kubeconfig for `user` holding bearer `token`, trusting `ca_cert_pem` for `server_url`.
pub fn kubeconfig(server_url: &str, ca_cert_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_cert_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_or_create_should_be_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &[]).unwrap();
        let b = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert!(a.server_config().is_ok());
        // A new host re-issues the serving cert under the same CA.
        let c = Pki::load_or_create(dir.path(), &["10.1.2.3".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.server_cert_pem, c.server_cert_pem);
        assert!(a.kubeconfig("https://127.0.0.1:1").contains("certificate-authority-data"));
    }
}
