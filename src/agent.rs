//! `skiff agent`: a node daemon of its own, joined to a cluster by URL and token (the join
//! token, or a bootstrap token as kubeadm's `join` takes). It verifies the cluster CA against
//! the token, gets its own `system:node:<name>` client certificate (signed at once for the
//! join token, through an auto-approved CertificateSigningRequest for a bootstrap token),
//! keeps it in `DATA_DIR/pki` and renews it before it expires, writes
//! `DATA_DIR/kubelet.kubeconfig`, and runs the kubelet against the API over HTTPS — the same
//! API path every other client takes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use skiff_apiserver::certificates::{
    NodeCredentials, RotatingClient, WebhookAuth, client_from_kubeconfig, join_node,
    rotate_client_certificate,
};
use skiff_apiserver::pki::{server_tls_config_with_clients, write_private};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// URL of a control-plane member's API, e.g. https://10.0.0.1:6443.
    #[arg(long, value_name = "URL", env = "SKIFF_SERVER")]
    server: String,
    /// The join token (DATA_DIR/token of the first server) or a bootstrap token
    /// (`skiff token create`). Needed only to join: the node keeps its own certificate.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With a bootstrap token: trust the cluster CA only if it has this hash
    /// (`sha256:<hex>`), instead of the server proving that it knows the token.
    #[arg(long, value_name = "sha256:HEX")]
    ca_cert_hash: Option<String>,
    /// Where the node keeps its state (images, pods, logs, credential).
    /// Default: /var/lib/skiff for root, else ~/.local/share/skiff.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Name of the node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Address the node reports (default: the first non-loopback IPv4 address, else 127.0.0.1).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Most pods the node accepts (`status.capacity.pods`).
    #[arg(long, default_value_t = 2000)]
    max_pods: u32,
    /// CRI endpoint of the OCI runtime (containerd); without it the node runs Wasm pods only.
    #[arg(long, env = "SKIFF_CONTAINER_RUNTIME_ENDPOINT")]
    container_runtime_endpoint: Option<String>,
    /// Address of the node's kubelet API (HTTPS; logs and node endpoints for the api server).
    /// Default: the node IP, port 10250; port 0 picks a free port.
    #[arg(long)]
    kubelet_listen: Option<std::net::SocketAddr>,
    /// Duration of the node's Lease; it renews every quarter of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 40)]
    node_lease_duration_seconds: u64,
    /// The cluster's pod address space, as the servers were given it (`--cluster-cidr`).
    #[arg(long, default_value = "10.128.0.0/9")]
    cluster_cidr: String,
    #[command(flatten)]
    network: crate::node::NetworkArgs,
    #[command(flatten)]
    resources: crate::node::ResourceArgs,
    #[command(flatten)]
    images: crate::node::ImageArgs,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let dir = crate::server::data_dir(args.data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    let name = args.node_name.unwrap_or_else(crate::server::host_name);
    let node_ip = args.node_ip.unwrap_or_else(crate::server::default_node_ip);
    let kubelet_listen =
        args.kubelet_listen.unwrap_or_else(|| std::net::SocketAddr::new(node_ip, 10250));
    let listener = tokio::net::TcpListener::bind(kubelet_listen)
        .await
        .with_context(|| format!("binding the kubelet API on {kubelet_listen}"))?;
    let kubelet_port = listener.local_addr()?.port();
    let pki_dir = dir.join("pki");
    let creds = match NodeCredentials::load(&pki_dir, &name) {
        Some(creds) => creds,
        None => {
            let token = args.token.as_deref().context(
                "this node has no valid certificate yet: --token (or SKIFF_TOKEN) is needed to join",
            )?;
            let creds = join_node(
                &args.server,
                token,
                args.ca_cert_hash.as_deref(),
                &name,
                &node_ip.to_string(),
            )
            .await
            .with_context(|| format!("joining the cluster at {}", args.server))?;
            creds.save(&pki_dir)?;
            creds
        }
    };
    let kubeconfig_path = dir.join("kubelet.kubeconfig");
    let yaml = creds.kubeconfig(&args.server, &name);
    write_private(&kubeconfig_path, yaml.as_bytes())?;
    let rotating = RotatingClient::new(client_from_kubeconfig(&yaml).await?);
    let client = rotating.client();
    tokio::spawn(rotate_client_certificate(
        pki_dir,
        kubeconfig_path.clone(),
        args.server.clone(),
        name.clone(),
        creds.clone(),
        rotating,
    ));

    let node = crate::node::NodeArgs {
        name: name.clone(),
        ip: node_ip,
        max_pods: args.max_pods,
        container_runtime_endpoint: args.container_runtime_endpoint,
        lease_duration: Duration::from_secs(args.node_lease_duration_seconds),
        labels: Default::default(),
        kubelet_port,
        network: args.network,
        resources: args.resources,
        images: args.images,
        cluster_cidr: args.cluster_cidr,
    };
    let kubelet = crate::node::start(&dir, node, client.clone()).await?;
    // Callers present a client certificate of the cluster CA or a token; the api server
    // says who they are and what they may do here.
    let tls = server_tls_config_with_clients(
        &creds.kubelet_cert_pem,
        &creds.kubelet_key_pem,
        Some(&creds.ca_pem),
    )?;
    let api = skiff_apiserver::kubelet::router(
        &name,
        kubelet.log_source(),
        kubelet.endpoints(),
        kubelet.pod_streams(),
        std::sync::Arc::new(WebhookAuth::new(client)),
    );
    tokio::spawn(skiff_apiserver::kubelet::serve_tls(api, listener, tls));
    tracing::info!(node = %name, server = %args.server, kubelet_port, "agent is ready");
    println!("READY {name} {}", kubeconfig_path.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = kubelet.run() => r.context("node stopped")?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!(node = %name, "shutting down");
    Ok(())
}
