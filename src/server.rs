//! `skiff server`: wires store, api server, scheduler and the embedded node together.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_apiserver::ApiServer;
use skiff_apiserver::join::{JoinService, JoinToken};
use skiff_apiserver::pki::{Pki, write_private};
use skiff_client_tools::informers::SharedInformers;
use skiff_store::{PeerOptions, PeerTls, RaftStore, RaftStoreOptions};

/// Port of the raft peer listener when `--listen` names a fixed port.
const DEFAULT_PEER_PORT: u16 = 6444;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the cluster keeps its state (store, certificates, images, logs).
    /// Default: /var/lib/skiff for root, else ~/.local/share/skiff.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTPS API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Name of the embedded node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Address the node reports (default: the first non-loopback IPv4 address, else 127.0.0.1).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Run the control plane only, without the embedded node.
    #[arg(long)]
    disable_agent: bool,
    /// Events each resource's watch cache keeps for watchers resuming from a resourceVersion;
    /// also how far a watcher may fall behind before it is ended with 410 Expired.
    #[arg(long, default_value_t = 4096)]
    default_watch_cache_size: usize,
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1): scheduler
    /// profiles, disabled plugins, scoring strategy, percentageOfNodesToScore.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// Most pods the embedded node accepts (`status.capacity.pods`).
    #[arg(long, default_value_t = 2000)]
    max_pods: u32,
    /// Join the cluster of the control-plane member whose API is at this URL
    /// (e.g. https://10.0.0.1:6443) instead of forming a new cluster. Needed only the first
    /// time: the data dir remembers its cluster.
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    /// The join token, as written to DATA_DIR/token by the first server.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Address of the raft peer listener (mutual TLS between members). Default: the
    /// --listen address with port 6444, or port 0 (any free port) when --listen has port 0.
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// CRI endpoint of the OCI runtime (containerd), e.g. unix:///run/containerd/containerd.sock.
    /// Without it the node runs Wasm pods only; OCI pods (RuntimeClass `runc`) wait with a
    /// message saying so.
    #[arg(long, env = "SKIFF_CONTAINER_RUNTIME_ENDPOINT")]
    container_runtime_endpoint: Option<String>,
    /// The pod address space; each node gets a block of it (`spec.podCIDR`).
    #[arg(long, default_value = "10.128.0.0/9")]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR block.
    #[arg(long, default_value_t = 18)]
    node_cidr_mask_size: u32,
    /// How long a node may go without renewing its Lease before the node lifecycle
    /// controller marks it NotReady and taints it.
    #[arg(long, value_name = "SECONDS", default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Finished pods kept before the pod garbage collector deletes the oldest (0: no limit).
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Seconds a new pod tolerates its node being not ready before eviction, unless the pod
    /// says otherwise (the default toleration the api server adds).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds a new pod tolerates its node being unreachable before eviction, unless the pod
    /// says otherwise.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Duration of the embedded node's Lease; it renews every quarter of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 40)]
    node_lease_duration_seconds: u64,
    /// The longest lifetime of certificates the cluster signs for CertificateSigningRequests
    /// (node and user client certificates), e.g. 8760h0m0s.
    #[arg(long, value_name = "DURATION", default_value = "8760h0m0s", value_parser = skiff_node::resources::parse_duration)]
    cluster_signing_duration: Duration,
    /// How often the metrics pipeline reads every node's and pod's usage for the metrics APIs
    /// (`kubectl top`, the HPA); at least 1s (metrics-server's `--metric-resolution`); 0s
    /// collects nothing.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = skiff_node::resources::parse_duration)]
    metrics_resolution: Duration,
    /// How often the HPA controller looks at each HorizontalPodAutoscaler
    /// (kube-controller-manager's `--horizontal-pod-autoscaler-sync-period`).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = skiff_node::resources::parse_duration)]
    horizontal_pod_autoscaler_sync_period: Duration,
    #[command(flatten)]
    auth: crate::auth::AuthArgs,
    #[command(flatten)]
    admission: crate::admission::AdmissionArgs,
    #[command(flatten)]
    oidc: OidcArgs,
    #[command(flatten)]
    audit: AuditArgs,
    #[command(flatten)]
    network: crate::node::NetworkArgs,
    #[command(flatten)]
    resources: crate::node::ResourceArgs,
    #[command(flatten)]
    images: crate::node::ImageArgs,
    /// An EncryptionConfiguration file (apiserver.config.k8s.io/v1): which resources are
    /// encrypted at rest, with which providers and keys (the first encrypts; the others still
    /// decrypt). Default: DATA_DIR/pki/encryption-config.yaml, made on a new cluster's first
    /// start with a fresh AES-GCM key for Secrets.
    #[arg(long, env = "SKIFF_ENCRYPTION_PROVIDER_CONFIG", value_name = "PATH")]
    encryption_provider_config: Option<PathBuf>,
    /// Store snapshot interval in log entries (tuning and tests).
    #[arg(long, hide = true, env = "SKIFF_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Log entries the store keeps behind its snapshot (tuning and tests).
    #[arg(long, hide = true, env = "SKIFF_LOGS_KEPT_AFTER_SNAPSHOT")]
    logs_kept_after_snapshot: Option<u64>,
}

/// kube-apiserver's `--oidc-*` flags: accept ID tokens of one OpenID Connect issuer.
#[derive(clap::Args)]
struct OidcArgs {
    /// Accept OIDC ID tokens whose `iss` is exactly this URL (https only). Without it, no
    /// OIDC token is accepted.
    #[arg(long, value_name = "URL")]
    oidc_issuer_url: Option<String>,
    /// The client id every token's `aud` must include.
    #[arg(long)]
    oidc_client_id: Option<String>,
    /// The claim that names the user.
    #[arg(long, default_value = "sub")]
    oidc_username_claim: String,
    /// Put before every user name; "-" for none. Default: the issuer URL and "#", unless the
    /// username claim is "email".
    #[arg(long)]
    oidc_username_prefix: Option<String>,
    /// The claim that lists the user's groups (a string or an array of strings).
    #[arg(long)]
    oidc_groups_claim: Option<String>,
    /// Put before every group.
    #[arg(long, default_value = "")]
    oidc_groups_prefix: String,
    /// A claim every token must carry with this value (KEY=VALUE, repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    oidc_required_claim: Vec<String>,
    /// The signing algorithms accepted, comma-separated (RS256/384/512, PS256/384/512,
    /// ES256, ES384).
    #[arg(long, value_delimiter = ',', default_value = "RS256")]
    oidc_signing_algs: Vec<String>,
    /// The CAs the issuer's HTTPS certificate must chain to (default: the system's).
    #[arg(long, value_name = "PATH")]
    oidc_ca_file: Option<PathBuf>,
    /// Take the issuer's keys (a JWKS document) from this file instead of fetching them from
    /// the issuer; re-read when it changes. For clusters that cannot reach their issuer.
    #[arg(long, value_name = "PATH")]
    oidc_jwks_file: Option<PathBuf>,
}

impl OidcArgs {
    /// The authenticator's options, `None` without an issuer; refuses what kube-apiserver
    /// refuses.
    fn options(&self) -> anyhow::Result<Option<skiff_apiserver::oidc::OidcOptions>> {
        let Some(issuer_url) = &self.oidc_issuer_url else {
            anyhow::ensure!(
                self.oidc_client_id.is_none(),
                "--oidc-client-id needs --oidc-issuer-url"
            );
            return Ok(None);
        };
        let client_id = self.oidc_client_id.clone().unwrap_or_default();
        let mut required_claims = Vec::new();
        for pair in &self.oidc_required_claim {
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .with_context(|| format!("--oidc-required-claim {pair:?}: expected KEY=VALUE"))?;
            required_claims.push((key.to_string(), value.to_string()));
        }
        let config = skiff_apiserver::oidc::OidcConfig {
            username_claim: self.oidc_username_claim.clone(),
            username_prefix: self.oidc_username_prefix.clone(),
            groups_claim: self.oidc_groups_claim.clone().filter(|c| !c.is_empty()),
            groups_prefix: self.oidc_groups_prefix.clone(),
            required_claims,
            signing_algs: self.oidc_signing_algs.iter().map(|a| a.trim().to_string()).collect(),
            ..skiff_apiserver::oidc::OidcConfig::new(issuer_url.clone(), client_id)
        };
        config.validate()?;
        Ok(Some(skiff_apiserver::oidc::OidcOptions {
            config,
            ca_file: self.oidc_ca_file.clone(),
            jwks_file: self.oidc_jwks_file.clone(),
        }))
    }
}

/// kube-apiserver's `--audit-*` flags: the audit policy and the log file backend. Auditing
/// needs both the policy and the path.
#[derive(clap::Args)]
struct AuditArgs {
    /// The audit policy (audit.k8s.io/v1 Policy): which requests are logged, at which level.
    #[arg(long, value_name = "PATH")]
    audit_policy_file: Option<PathBuf>,
    /// Write audit events to this file as JSON lines; "-" means standard out.
    #[arg(long, value_name = "PATH")]
    audit_log_path: Option<PathBuf>,
    /// Days to keep rotated audit log files, by the time in their names (0: no limit).
    #[arg(long, value_name = "DAYS", default_value_t = 0)]
    audit_log_maxage: u32,
    /// Rotated audit log files to keep (0: all).
    #[arg(long, default_value_t = 0)]
    audit_log_maxbackup: u32,
    /// Size in megabytes at which the audit log is rotated (0: 100).
    #[arg(long, value_name = "MB", default_value_t = 0)]
    audit_log_maxsize: u32,
}

impl AuditArgs {
    /// The auditor the flags ask for, `None` when auditing is off (as kube-apiserver, it
    /// needs both a policy and a log path).
    fn auditor(&self) -> anyhow::Result<Option<skiff_apiserver::audit::Auditor>> {
        let (policy_file, log_path) = match (&self.audit_policy_file, &self.audit_log_path) {
            (Some(policy), Some(path)) => (policy.clone(), path.clone()),
            (Some(_), None) => {
                tracing::warn!("--audit-policy-file without --audit-log-path: no audit log");
                return Ok(None);
            }
            (None, Some(_)) => {
                tracing::warn!("--audit-log-path without --audit-policy-file: no audit events");
                return Ok(None);
            }
            (None, None) => return Ok(None),
        };
        let options = skiff_apiserver::audit::AuditOptions {
            policy_file,
            log_path,
            max_age_days: self.audit_log_maxage,
            max_backups: self.audit_log_maxbackup,
            max_size_mb: self.audit_log_maxsize,
        };
        Ok(Some(skiff_apiserver::audit::Auditor::new(&options)?))
    }
}

/// What the data dir remembers about its membership (`DATA_DIR/member.json`): written when
/// a member joins, absent on the member that formed the cluster (node 1).
struct MemberFile {
    node_id: u64,
}

impl MemberFile {
    fn read(path: &std::path::Path) -> anyhow::Result<Option<MemberFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let node_id =
            v["nodeId"].as_u64().with_context(|| format!("{} has no nodeId", path.display()))?;
        Ok(Some(MemberFile { node_id }))
    }

    fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let v = serde_json::json!({"nodeId": self.node_id, "joined": true});
        write_private(path, v.to_string().as_bytes())?;
        Ok(())
    }
}

/// Bind `addr` with SO_REUSEADDR, so a restarted member gets its old port back at once.
fn bind_reusable(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(1024)?.into_std()?)
}

/// The data directory: the flag, else `/var/lib/skiff` for root, else `~/.local/share/skiff`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return PathBuf::from("/var/lib/skiff");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/skiff")
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".into())
}

/// The first non-loopback IPv4 address of an interface that is up.
pub fn default_node_ip() -> IpAddr {
    let mut found = None;
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs.
    #[allow(unsafe_code)]
    unsafe {
        let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut addrs) == 0 {
            let mut cur = addrs;
            while !cur.is_null() {
                let ifa = &*cur;
                let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
                let loopback = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
                if up
                    && !loopback
                    && !ifa.ifa_addr.is_null()
                    && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
                {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    found = Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    break;
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(addrs);
        }
    }
    found.unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Flags kube-apiserver refuses stop the server before it touches its data dir.
    let oidc = args.oidc.options()?;
    let dir = data_dir(args.data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;

    // Bind first: the addresses this member advertises must name the ports it really has.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let node_ip = args.node_ip.unwrap_or_else(default_node_ip);
    let node_name = args.node_name.unwrap_or_else(host_name);
    let url_host =
        if addr.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    let url = format!("https://{}", SocketAddr::new(url_host, addr.port()));
    let peer_listen = args.peer_listen.unwrap_or_else(|| {
        let port = if args.listen.port() == 0 { 0 } else { DEFAULT_PEER_PORT };
        SocketAddr::new(args.listen.ip(), port)
    });
    let peer_listener = bind_reusable(peer_listen).context("binding the peer listener")?;
    let peer_addr = peer_listener.local_addr()?;
    let peer_host = if peer_addr.ip().is_unspecified() { node_ip } else { peer_addr.ip() };
    let peer_url = format!("https://{}", SocketAddr::new(peer_host, peer_addr.port()));

    let member_path = dir.join("member.json");
    let mut member = MemberFile::read(&member_path)?;
    match (&member, &args.join) {
        (None, Some(join_url)) => {
            let token = args.token.as_deref().context("--join needs --token (or SKIFF_TOKEN)")?;
            let token = JoinToken::parse(token)?;
            anyhow::ensure!(
                !dir.join("store").exists(),
                "{} already holds a store of its own; --join needs a fresh data dir",
                dir.display()
            );
            tracing::info!(server = %join_url, %peer_url, "joining the cluster");
            let bundle = skiff_apiserver::join::request_join(join_url, &token, &peer_url)
                .await
                .with_context(|| format!("joining the cluster at {join_url}"))?;
            Pki::install_cluster_credentials(
                &dir.join("pki"),
                &bundle.ca_cert,
                &bundle.ca_key,
                &bundle.admin_token,
            )?;
            // Every member must open what every other member sealed: the cluster's
            // encryption configuration comes with the join (plain text if it keeps none).
            let encryption = bundle
                .encryption_config
                .clone()
                .unwrap_or_else(skiff_apiserver::encryption::EncryptionConfig::plain_text);
            write_private(
                &dir.join("pki").join(skiff_apiserver::encryption::CONFIG_FILE),
                encryption.as_bytes(),
            )?;
            token.write(&dir.join("token"))?;
            let joined = MemberFile { node_id: bundle.node_id };
            joined.write(&member_path)?;
            tracing::info!(node_id = joined.node_id, "admitted to the cluster as a learner");
            member = Some(joined);
        }
        (Some(m), Some(_)) => {
            tracing::info!(
                node_id = m.node_id,
                "this data dir is already a member; ignoring --join"
            );
        }
        _ => {}
    }
    // A member that joined waits to be added; the first server forms the cluster.
    let (node_id, initialize) = member.map_or((1, true), |m| (m.node_id, false));

    // Pods reach the api server through the `kubernetes` Service: its address and its
    // fully qualified name must be in the serving certificate, as on kube-apiserver.
    let hosts = vec![
        url_host.to_string(),
        node_ip.to_string(),
        node_name.clone(),
        host_name(),
        skiff_apiserver::services::API_SERVICE_IP.to_string(),
        format!("kubernetes.default.svc.{}", args.network.cluster_domain),
    ];
    let pki = Pki::load_or_create(&dir.join("pki"), &hosts).context("preparing certificates")?;
    let token = JoinToken::load_or_create(&dir.join("token"), &pki.ca_cert_pem)?;
    let (peer_cert, peer_key) = pki
        .peer_identity(
            &dir.join("pki"),
            &[peer_host.to_string(), node_ip.to_string(), node_name.clone()],
        )
        .context("preparing the peer certificate")?;
    let defaults = RaftStoreOptions::default();
    let options = RaftStoreOptions {
        node_id,
        initialize,
        peer: Some(PeerOptions {
            advertise_url: peer_url.clone(),
            listener: Arc::new(peer_listener),
            tls: PeerTls {
                ca_cert_pem: pki.ca_cert_pem.clone(),
                cert_pem: peer_cert,
                key_pem: peer_key,
            },
        }),
        snapshot_every: args.snapshot_every.unwrap_or(defaults.snapshot_every),
        logs_kept_after_snapshot: args
            .logs_kept_after_snapshot
            .unwrap_or(defaults.logs_kept_after_snapshot),
        // A joining member may have a long log (or a big snapshot) to catch up on.
        ready_timeout: if initialize {
            defaults.ready_timeout
        } else {
            std::time::Duration::from_secs(300)
        },
        ..defaults
    };
    let (encryption_text, encryption) = skiff_apiserver::encryption::load_or_generate(
        &dir.join("pki"),
        args.encryption_provider_config.as_deref(),
        initialize && !dir.join("store").exists(),
    )?;
    let store = Arc::new(
        RaftStore::open_with(&dir.join("store"), options).await.context("opening the store")?,
    );
    // Values are sealed before they are proposed: the raft log, its snapshots and RocksDB
    // only ever see ciphertext of the encrypted resources.
    let encrypting =
        Arc::new(skiff_apiserver::encryption::EncryptingStore::new(store.clone(), &encryption));
    tracing::info!(resources = ?encrypting.encrypted_resources(), "encryption at rest");

    let api = ApiServer::new(
        encrypting,
        pki.admin_token.clone(),
        SocketAddr::new(url_host, addr.port()).to_string(),
    );
    let signer = Arc::new(
        skiff_apiserver::certificates::Signer::new(
            &pki.ca_cert_pem,
            &pki.ca_key_pem,
            args.cluster_signing_duration,
        )
        .context("the certificate signer")?,
    );
    // The api server's own identity towards kubelets, issued afresh at every start.
    let (kubelet_client_cert, kubelet_client_key) = signer
        .issue_client(
            "kube-apiserver-kubelet-client",
            "system:masters",
            Duration::from_secs(365 * 24 * 3600),
        )
        .context("the api server's kubelet client certificate")?;
    api.set_kubelet_client_identity(
        skiff_apiserver::kubelet::ClientIdentity::from_pem(
            &kubelet_client_cert,
            &kubelet_client_key,
        )
        .context("the api server's kubelet client certificate")?,
    );
    let join_service = Arc::new(JoinService {
        token,
        ca_cert_pem: pki.ca_cert_pem.clone(),
        ca_key_pem: pki.ca_key_pem.clone(),
        admin_token: pki.admin_token.clone(),
        store: store.clone(),
        encryption_config: Some(encryption_text),
        api: api.state().clone(),
        signer: signer.clone(),
    });
    let api = api.with_unauthenticated_routes(join_service.router());
    api.set_pod_cidrs(
        skiff_apiserver::podcidr::PodCidrs::parse(&args.cluster_cidr, args.node_cidr_mask_size)
            .map_err(|e| anyhow::anyhow!("--cluster-cidr {}: {e}", args.cluster_cidr))?,
    );
    api.set_watch_cache(skiff_apiserver::cache::CacheConfig {
        history: args.default_watch_cache_size,
        watcher_window: args.default_watch_cache_size,
    });
    api.set_cluster_ca(&pki.ca_cert_pem);
    api.start_metrics_pipeline(args.metrics_resolution);
    args.auth.apply(&api)?;
    args.admission.apply(&api)?;
    api.set_policy_host_maker(crate::admission::policy_host_maker(&dir, &args.images));
    if let Some(oidc) = oidc {
        api.set_oidc(
            skiff_apiserver::oidc::OidcAuthenticator::start(oidc)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    // The front-proxy identity extension servers (APIServices) trust.
    let (proxy_cert, proxy_key) = skiff_apiserver::pki::issue_client_cert(
        &pki.ca_cert_pem,
        &pki.ca_key_pem,
        skiff_apiserver::aggregator::PROXY_CLIENT_NAME,
        &[],
        10 * 365 * 24 * 3600,
    )
    .map_err(|e| anyhow::anyhow!("the front-proxy client certificate: {e}"))?;
    api.set_front_proxy_client(proxy_cert, proxy_key);
    api.enable_service_account_tokens(&pki.ca_key_pem)
        .map_err(|e| anyhow::anyhow!("service account token signing: {e}"))?;
    api.state().metrics.register_collector(Box::new(store.metrics_collector()));
    if let Some(auditor) = args.audit.auditor()? {
        api.state().metrics.register_collector(auditor.metrics_collector());
        api.set_auditor(Arc::new(auditor));
    }
    api.bootstrap()
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the cluster: {}", e.message))?;
    // Node identity: CSRs approved and signed, expired bootstrap tokens removed.
    tokio::spawn(skiff_apiserver::certificates::run(api.state().clone(), api.client(), signer));
    tokio::spawn(skiff_apiserver::bootstrap_tokens::run_cleaner(api.client()));
    tokio::spawn(skiff_apiserver::certificates::ensure_node_bootstrap_bindings(api.client()));
    // The `kubernetes` Service lists every live member.
    tokio::spawn(skiff_apiserver::members::run(
        api.client(),
        SocketAddr::new(url_host, addr.port()),
    ));
    let kubeconfig = dir.join("kubeconfig.yaml");
    write_private(&kubeconfig, pki.kubeconfig(&url).as_bytes())?;
    tokio::spawn(api.clone().serve_tls(listener, pki.server_config()?));

    // The scheduler, like the controllers, gets threads of its own: `skiff-sched` runs the
    // scheduling cycles, `skiff-sched-io` its watches and bindings.
    let scheduler_metrics = skiff_scheduler::metrics::Metrics::new();
    api.state().metrics.with_registry(|r| scheduler_metrics.register(r));
    // The controllers' work queues run in this process: their metrics are served here too.
    api.state().metrics.with_registry(skiff_client_tools::workqueue::register_metrics);
    let mut scheduler_options = skiff_scheduler::Options {
        identity: format!("{node_name}_{node_id}"),
        ..Default::default()
    };
    if let Some(path) = &args.scheduler_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --scheduler-config {}", path.display()))?;
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("parsing --scheduler-config {}", path.display()))?;
        let config = skiff_scheduler::config::parse(&doc)
            .map_err(|e| anyhow::anyhow!("--scheduler-config {}: {e}", path.display()))?;
        scheduler_options.profiles = config.profiles;
        scheduler_options.percentage_of_nodes_to_score = config.percentage_of_nodes_to_score;
    }
    {
        use skiff_apiserver::objects as o;
        use std::sync::atomic::Ordering::Relaxed;
        o::DEFAULT_NOT_READY_TOLERATION_SECONDS
            .store(args.default_not_ready_toleration_seconds, Relaxed);
        o::DEFAULT_UNREACHABLE_TOLERATION_SECONDS
            .store(args.default_unreachable_toleration_seconds, Relaxed);
    }
    let mut controller_options = skiff_controllers::Options {
        identity: format!("{node_name}_{node_id}"),
        node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        root_ca_pem: Some(pki.ca_cert_pem.clone()),
        hpa_sync_period: args.horizontal_pod_autoscaler_sync_period.max(Duration::from_secs(1)),
        ..Default::default()
    };
    // The controllers get threads of their own (`skiff-ctrl`), like a process of their own:
    // a busy api server does not starve them, and their CPU time can be told apart. Their
    // runtime also runs the pod informer that the scheduler and the controller manager share:
    // one pod watch and one decoded copy of each pod for the process.
    let controller_client = api.client();
    let (pods_tx, pods_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("skiff-ctrl".into()).spawn(move || {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("skiff-ctrl")
            .enable_all()
            .build();
        let rt = match built {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the controller manager could not start");
                return;
            }
        };
        let process_informers = SharedInformers::new(controller_client.clone());
        let pods = {
            let _in_runtime = rt.enter();
            process_informers.pods()
        };
        let _ = pods_tx.send(pods.clone());
        controller_options.pods = Some(pods);
        rt.block_on(skiff_controllers::run(controller_client, controller_options));
    })?;
    // Without it (the controllers' runtime did not start) the scheduler watches pods itself.
    scheduler_options.pods = pods_rx.await.ok();

    let scheduler_client = api.client();
    std::thread::Builder::new().name("skiff-sched-io".into()).spawn(move || {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("skiff-sched-io")
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(skiff_scheduler::run(
                scheduler_client,
                scheduler_options,
                scheduler_metrics,
            )),
            Err(e) => tracing::error!(error = %e, "the scheduler could not start"),
        }
    })?;

    if !args.disable_agent {
        let node = crate::node::NodeArgs {
            name: node_name.clone(),
            ip: node_ip,
            max_pods: args.max_pods,
            container_runtime_endpoint: args.container_runtime_endpoint.clone(),
            lease_duration: Duration::from_secs(args.node_lease_duration_seconds),
            kubelet_port: 0,
            labels: BTreeMap::from([(
                "node-role.kubernetes.io/control-plane".to_string(),
                String::new(),
            )]),
            network: args.network.clone(),
            resources: args.resources.clone(),
            images: args.images.clone(),
            cluster_cidr: args.cluster_cidr.clone(),
        };
        let kubelet = crate::node::start(&dir, node, api.client()).await?;
        api.register_log_source(&node_name, kubelet.log_source());
        api.register_node_endpoints(&node_name, kubelet.endpoints());
        api.register_pod_streams(&node_name, kubelet.pod_streams());
        tokio::spawn(async move {
            if let Err(e) = kubelet.run().await {
                tracing::error!(error = %e, "node stopped");
            }
        });
    }

    tracing::info!(api = %url, peer = %peer_url, node_id, kubeconfig = %kubeconfig.display(), elapsed_ms = started.elapsed().as_millis() as u64, "skiff is ready");
    println!("READY {url} {} {peer_url}", kubeconfig.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    store.shutdown().await;
    Ok(())
}
