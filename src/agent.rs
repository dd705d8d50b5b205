//! `skiff agent`: a node daemon of its own, joined to a cluster by URL and join token. It
//! verifies the cluster CA against the token, gets its credential from a control-plane
//! member, writes `DATA_DIR/kubelet.kubeconfig`, and runs the kubelet against the API over
//! HTTPS — the same API path every other client takes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use skiff_apiserver::join::{JoinToken, request_agent_credentials};
use skiff_apiserver::pki::{kubeconfig, server_tls_config, write_private};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// URL of a control-plane member's API, e.g. https://10.0.0.1:6443.
    #[arg(long, value_name = "URL", env = "SKIFF_SERVER")]
    server: String,
    /// The join token, as written to DATA_DIR/token by the first server.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: String,
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
    let token = JoinToken::parse(&args.token)?;
    let node_ip = args.node_ip.unwrap_or_else(crate::server::default_node_ip);
    let kubelet_listen =
        args.kubelet_listen.unwrap_or_else(|| std::net::SocketAddr::new(node_ip, 10250));
    let listener = tokio::net::TcpListener::bind(kubelet_listen)
        .await
        .with_context(|| format!("binding the kubelet API on {kubelet_listen}"))?;
    let kubelet_port = listener.local_addr()?.port();
    let bundle = request_agent_credentials(&args.server, &token, &name, &node_ip.to_string())
        .await
        .with_context(|| format!("getting node credentials from {}", args.server))?;
    let kubeconfig_path = dir.join("kubelet.kubeconfig");
    let yaml =
        kubeconfig(&args.server, &bundle.ca_cert, &format!("system:node:{name}"), &bundle.token);
    write_private(&kubeconfig_path, yaml.as_bytes())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).context("node kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("node kubeconfig")?;
    let client = kube::Client::try_from(config).context("API client")?;

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
    let kubelet = crate::node::start(&dir, node, client).await?;
    let tls = server_tls_config(&bundle.kubelet_cert, &bundle.kubelet_key)?;
    let api = skiff_apiserver::kubelet::router(
        kubelet.log_source(),
        kubelet.endpoints(),
        kubelet.pod_streams(),
        bundle.token,
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
