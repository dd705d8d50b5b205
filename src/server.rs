//! `skiff server`: wires store, api server, scheduler and the embedded node together.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use skiff_apiserver::ApiServer;
use skiff_apiserver::pki::{Pki, write_private};
use skiff_node::{Kubelet, NodeConfig};
use skiff_store::RaftStore;

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
    /// Most pods the embedded node accepts (`status.capacity.pods`).
    #[arg(long, default_value_t = 2000)]
    max_pods: u32,
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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".into())
}

/// The first non-loopback IPv4 address of an interface that is up.
fn default_node_ip() -> IpAddr {
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
    let dir = data_dir(args.data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    let store = Arc::new(RaftStore::open(&dir.join("store")).await.context("opening the store")?);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let node_ip = args.node_ip.unwrap_or_else(default_node_ip);
    let node_name = args.node_name.unwrap_or_else(host_name);
    let url_host =
        if addr.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    let url = format!("https://{}", SocketAddr::new(url_host, addr.port()));
    let hosts = vec![url_host.to_string(), node_ip.to_string(), node_name.clone(), host_name()];
    let pki = Pki::load_or_create(&dir.join("pki"), &hosts).context("preparing certificates")?;
    let api = ApiServer::new(
        store.clone(),
        pki.admin_token.clone(),
        SocketAddr::new(url_host, addr.port()).to_string(),
    );
    api.bootstrap()
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the cluster: {}", e.message))?;
    let kubeconfig = dir.join("kubeconfig.yaml");
    write_private(&kubeconfig, pki.kubeconfig(&url).as_bytes())?;
    tokio::spawn(api.clone().serve_tls(listener, pki.server_config()?));

    let scheduler_client = api.client();
    tokio::spawn(async move {
        if let Err(e) = skiff_scheduler::run(scheduler_client).await {
            tracing::error!(error = %e, "scheduler stopped");
        }
    });

    if !args.disable_agent {
        let runtime = Arc::new(
            skiff_runtime_wasm::WasmRuntime::new(&dir).context("starting the Wasm runtime")?,
        );
        let config = NodeConfig {
            name: node_name.clone(),
            ip: node_ip.to_string(),
            pods_dir: dir.join("pods"),
            max_pods: args.max_pods,
            labels: BTreeMap::from([(
                "node-role.kubernetes.io/control-plane".to_string(),
                String::new(),
            )]),
        };
        let kubelet = Kubelet::new(config, api.client(), runtime);
        api.register_log_source(&node_name, kubelet.log_source());
        tokio::spawn(async move {
            if let Err(e) = kubelet.run().await {
                tracing::error!(error = %e, "node stopped");
            }
        });
    }

    tracing::info!(api = %url, kubeconfig = %kubeconfig.display(), elapsed_ms = started.elapsed().as_millis() as u64, "skiff is ready");
    println!("READY {url} {}", kubeconfig.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    store.shutdown().await;
    Ok(())
}
