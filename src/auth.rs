//! Authentication and authorization flags of `skiff server`, `skiff kubeconfig create` (a
//! kubeconfig with a client certificate the cluster CA issues for a new user) and `skiff
//! kubeconfig admin` (the admin kubeconfig re-issued).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use skiff_apiserver::ApiServer;

#[derive(clap::Args)]
pub struct AuthArgs {
    /// Let requests without credentials reach every path as `system:anonymous` (RBAC then
    /// decides). Off, they reach only /healthz, /livez, /readyz and /version.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    anonymous_auth: bool,
    /// Authorizers, in order: "Node,RBAC" (the default), "RBAC", or "AlwaysAllow" (every
    /// authenticated request is allowed: for comparisons only).
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: String,
}

impl AuthArgs {
    pub fn apply(&self, api: &ApiServer) -> anyhow::Result<()> {
        let mode: skiff_apiserver::authz::Mode = self
            .authorization_mode
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--authorization-mode: {e}"))?;
        api.set_authorization_mode(mode);
        api.set_anonymous_auth(self.anonymous_auth);
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct KubeconfigCreateArgs {
    /// The user name (the certificate's CN).
    user: String,
    /// Groups of the user (the certificate's O), repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// How long the certificate is valid, e.g. 8h, 30d (default 365d).
    #[arg(long, default_value = "365d")]
    ttl: String,
    /// The API server URL the kubeconfig points at (default: the admin kubeconfig's).
    #[arg(long)]
    server: Option<String>,
    /// Where to write the kubeconfig (default: standard output).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct KubeconfigAdminArgs {
    /// The API server URL the kubeconfig points at (default: the current admin kubeconfig's).
    #[arg(long)]
    server: Option<String>,
    /// Where to write the kubeconfig (default: DATA_DIR/kubeconfig.yaml, replaced).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// `skiff kubeconfig admin`: the admin kubeconfig with a freshly issued certificate.
pub fn kubeconfig_admin(args: KubeconfigAdminArgs) -> anyhow::Result<()> {
    let dir = crate::server::data_dir(args.data_dir.clone());
    let (ca_cert, ca_key, server) = cluster_ca(&dir, args.server.as_deref())?;
    let token = read_data(&dir.join("pki").join("admin.token"))?.trim().to_string();
    let (cert, key) = skiff_apiserver::pki::issue_client_cert(
        &ca_cert,
        &ca_key,
        skiff_apiserver::pki::ADMIN_USER,
        &["system:masters"],
        365 * 86400,
    )
    .context("issuing the admin client certificate")?;
    let text = skiff_apiserver::pki::admin_kubeconfig(&server, &ca_cert, &cert, &key, &token);
    let path = args.output.unwrap_or_else(|| dir.join("kubeconfig.yaml"));
    skiff_apiserver::pki::write_private(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// A file of a server's data dir.
fn read_data(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| {
        format!("reading {} (is this the data dir of a skiff server?)", p.display())
    })
}

/// The cluster CA (certificate, key) of data dir `dir`, and the API server URL: `server`, or
/// the admin kubeconfig's.
fn cluster_ca(dir: &Path, server: Option<&str>) -> anyhow::Result<(String, String, String)> {
    let pki = dir.join("pki");
    let ca_cert = read_data(&pki.join("ca.crt"))?;
    let ca_key = read_data(&pki.join("ca.key"))?;
    let server = match server {
        Some(s) => s.to_string(),
        None => server_of(&read_data(&dir.join("kubeconfig.yaml"))?)?,
    };
    Ok((ca_cert, ca_key, server))
}

/// The server URL of a kubeconfig's first cluster.
fn server_of(kubeconfig: &str) -> anyhow::Result<String> {
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(kubeconfig).context("parsing the admin kubeconfig")?;
    Ok(v["clusters"][0]["cluster"]["server"]
        .as_str()
        .context("no server in the admin kubeconfig")?
        .to_string())
}

/// `10s`, `15m`, `8h`, `30d` → seconds.
fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num.parse().with_context(|| format!("--ttl {text:?}: expected e.g. 8h or 30d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("--ttl {text:?}: the unit must be s, m, h or d"),
    };
    Ok(n * mult)
}

pub fn kubeconfig_create(args: KubeconfigCreateArgs) -> anyhow::Result<()> {
    let dir = crate::server::data_dir(args.data_dir.clone());
    let (ca_cert, ca_key, server) = cluster_ca(&dir, args.server.as_deref())?;
    let ttl = parse_ttl(&args.ttl)?;
    let groups: Vec<&str> = args.groups.iter().map(String::as_str).collect();
    let (cert, key) =
        skiff_apiserver::pki::issue_client_cert(&ca_cert, &ca_key, &args.user, &groups, ttl)
            .context("issuing the client certificate")?;
    let text =
        skiff_apiserver::pki::client_cert_kubeconfig(&server, &ca_cert, &args.user, &cert, &key);
    match &args.output {
        Some(path) => skiff_apiserver::pki::write_private(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_should_read_units() {
        assert_eq!(parse_ttl("10s").unwrap(), 10);
        assert_eq!(parse_ttl("8h").unwrap(), 8 * 3600);
        assert_eq!(parse_ttl("30d").unwrap(), 30 * 86400);
        assert!(parse_ttl("3y").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
