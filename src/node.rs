//! Starting a node daemon (kubelet, proxy, cluster DNS, NetworkPolicy) with its runtimes:
//! shared by `skiff server` (the embedded node) and `skiff agent`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_dns::{ClusterDns, DnsOptions};
use skiff_netpol::{Enforcement, NetpolHealth, NetpolOptions, NetworkPolicies};
use skiff_node::{Kubelet, NodeConfig};
use skiff_proxy::{Proxy, ProxyHealth, ProxyMode, ProxyOptions};
use skiff_runtime_core::services::{Protocol, ServiceDirectory, ServiceRoute};

/// The Service range; the api server allocates ClusterIPs from it.
const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The Node condition that tells whether the node's Service rules and routes are in force.
const PROXY_CONDITION: &str = "ServiceProxyReady";
/// How long the cluster DNS waits for its address to become the node's.
const DNS_BIND_WAIT: Duration = Duration::from_secs(30);
/// The Node condition that tells whether NetworkPolicies are enforced in the kernel.
const POLICY_CONDITION: &str = "NetworkPolicyReady";

/// How the node joins the cluster network.
#[derive(clap::Args, Clone, Debug)]
pub struct NetworkArgs {
    /// How Services reach their endpoints: `nftables` (kernel rules and cluster routes for
    /// OCI pods and the host; Wasm guests in-process) or `none` (Wasm guests in-process only;
    /// the host's network is left as it is).
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Nftables)]
    pub proxy_mode: ProxyModeArg,
    /// The cluster DNS address pods are given (`dnsPolicy: ClusterFirst`); every node answers
    /// it itself.
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where this node's DNS server listens, UDP and TCP (default: the cluster DNS address,
    /// port 53; port 0 picks a free port).
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// Resolvers for names outside the cluster domain, e.g. 192.168.1.1:53, comma-separated
    /// (default: none: such names get NXDOMAIN at once).
    #[arg(long, value_delimiter = ',')]
    pub dns_upstream: Vec<SocketAddr>,
}

/// What the node sets aside from allocatable and when it evicts pods (the kubelet's flags).
#[derive(clap::Args, Clone, Debug)]
pub struct ResourceArgs {
    /// Resources reserved for Kubernetes daemons, e.g. cpu=100m,memory=100Mi,ephemeral-storage=1Gi
    /// (subtracted from allocatable).
    #[arg(long, value_name = "RESOURCE=QUANTITY,...", default_value = "")]
    pub kube_reserved: skiff_node::resources::Reserved,
    /// Resources reserved for the operating system, same syntax as --kube-reserved.
    #[arg(long, value_name = "RESOURCE=QUANTITY,...", default_value = "")]
    pub system_reserved: skiff_node::resources::Reserved,
    /// Hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10% (signals:
    /// memory.available, nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree, pid.available). Signals left out have none.
    #[arg(long, value_name = "SIGNAL<QUANTITY,...", env = "SKIFF_EVICTION_HARD", default_value = skiff_node::resources::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: skiff_node::resources::Thresholds,
    /// How long a pressure condition stays true after its threshold was last crossed.
    #[arg(long, value_name = "DURATION", default_value = "5m0s", value_parser = skiff_node::resources::parse_duration)]
    pub eviction_pressure_transition_period: Duration,
    /// How often the eviction manager reads the signals and pods' local storage use.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = skiff_node::resources::parse_duration)]
    pub eviction_monitoring_interval: Duration,
}

impl ResourceArgs {
    pub fn config(&self) -> skiff_node::resources::ResourceConfig {
        skiff_node::resources::ResourceConfig {
            kube_reserved: self.kube_reserved.clone(),
            system_reserved: self.system_reserved.clone(),
            eviction_hard: self.eviction_hard.clone(),
            pressure_transition_period: self.eviction_pressure_transition_period,
            monitoring_interval: self.eviction_monitoring_interval,
        }
    }
}

/// How the node pulls images (the kubelet's flags, plus the registry config file).
#[derive(clap::Args, Clone, Debug)]
pub struct ImageArgs {
    /// Registry mirrors, credentials and TLS settings, in k3s's registries.yaml format
    /// (default: DATA_DIR/registries.yaml; a missing file means none). Read at start.
    #[arg(long, value_name = "PATH")]
    pub registry_config: Option<std::path::PathBuf>,
    /// Pull one image at a time, as the kubelet does by default.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub serialize_image_pulls: bool,
    /// containerd's registry `config_path` (its `hosts.toml` directory): the registry config
    /// is written there as `HOST/hosts.toml` files at start, for OCI pulls.
    #[arg(long, value_name = "DIR")]
    pub containerd_registry_config_path: Option<std::path::PathBuf>,
    /// Image file system usage (percent) at which unused images are removed, least recently
    /// used first; 100 turns image garbage collection off.
    #[arg(long, env = "SKIFF_IMAGE_GC_HIGH_THRESHOLD", default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Usage image garbage collection brings the image file system down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// How long an unused image is kept at least, e.g. 2m0s.
    #[arg(long, value_name = "DURATION", default_value = "2m0s", value_parser = skiff_node::resources::parse_duration)]
    pub minimum_image_ttl_duration: Duration,
    /// How often image garbage collection looks (the kubelet's fixed 5 minutes; for tests).
    #[arg(long, hide = true, default_value = "5m0s", value_parser = skiff_node::resources::parse_duration)]
    pub image_gc_period: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyModeArg {
    Nftables,
    None,
}

pub struct NodeArgs {
    pub name: String,
    pub ip: IpAddr,
    pub max_pods: u32,
    pub container_runtime_endpoint: Option<String>,
    pub lease_duration: Duration,
    pub labels: BTreeMap<String, String>,
    pub kubelet_port: u16,
    pub network: NetworkArgs,
    pub resources: ResourceArgs,
    pub images: ImageArgs,
    /// The cluster's pod range (routed `unreachable` under the nodes' blocks).
    pub cluster_cidr: String,
}

/// Raise this process's soft open-file limit to its hard limit, as systemd-era daemons do (a
/// soft limit of 1024 is for `select`-era programs): every Wasm pod serving HTTP holds a
/// listening socket in this process. Returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// What a Wasm guest's sockets and name lookups ask: names from the cluster DNS's cache,
/// endpoints from the proxy's Service map, NetworkPolicy verdicts from the policy engine
/// (set once the node knows its pod range).
struct NodeServices {
    proxy: Arc<Proxy>,
    dns: Arc<ClusterDns>,
    policies: Arc<std::sync::OnceLock<Arc<NetworkPolicies>>>,
}

impl ServiceDirectory for NodeServices {
    fn lookup_host(&self, name: &str, namespace: &str) -> Option<Vec<IpAddr>> {
        self.dns.lookup_host(name, namespace)
    }

    fn route(&self, client: IpAddr, dest: SocketAddr, protocol: Protocol) -> ServiceRoute {
        self.proxy.route(client, dest, protocol)
    }

    fn allows_egress(&self, from: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        self.policies.get().is_none_or(|p| p.allows_egress(from, to, protocol))
    }

    fn allows_ingress(&self, peer: IpAddr, to: SocketAddr, protocol: Protocol) -> bool {
        self.policies.get().is_none_or(|p| p.allows_ingress(peer, to, protocol))
    }
}

/// A kubelet for this machine, keeping its state under `dir`: the Wasm runtime always, the
/// OCI runtime when a CRI endpoint is given; the node proxy, cluster DNS and NetworkPolicy
/// running beside it. Call `run` on it to start.
pub async fn start(
    dir: &Path,
    args: NodeArgs,
    client: kube::Client,
) -> anyhow::Result<Arc<Kubelet>> {
    // The engine's instance pool holds every running guest at once (plus probes and
    // requests in flight): sized for the pods the node accepts, never below the default.
    let pooled = args.max_pods.saturating_add(args.max_pods / 4);
    let engine = skiff_runtime_wasm::EngineOptions {
        max_instances: pooled.max(skiff_runtime_wasm::EngineOptions::default().max_instances),
        ..Default::default()
    };
    let options = skiff_runtime_wasm::WasmRuntimeOptions { engine };
    let wasm = Arc::new(
        skiff_runtime_wasm::WasmRuntime::with_options(dir, options)
            .context("starting the Wasm runtime")?,
    );
    // The cluster CA (kept in the data dir by a server and by a joined agent alike): guests'
    // HTTPS trusts it as pods verifying with their mounted `ca.crt` do.
    let ca_path = dir.join("pki").join("ca.crt");
    match std::fs::read_to_string(&ca_path) {
        Ok(pem) => wasm
            .trust_cluster_ca(&pem)
            .with_context(|| format!("trusting the cluster CA of {}", ca_path.display()))?,
        Err(e) => {
            tracing::warn!(path = %ca_path.display(), error = %e, "no cluster CA: Wasm guests cannot verify the api server")
        }
    }
    let net = &args.network;
    let config = NodeConfig {
        name: args.name.clone(),
        ip: args.ip.to_string(),
        pods_dir: dir.join("pods"),
        max_pods: args.max_pods,
        labels: args.labels.clone(),
        lease_duration: args.lease_duration,
        kubelet_port: args.kubelet_port,
        cluster_dns: skiff_node::dns::ClusterDnsSettings {
            server: Some(net.cluster_dns.to_string()),
            domain: net.cluster_domain.clone(),
        },
        resources: args.resources.config(),
        serialize_image_pulls: args.images.serialize_image_pulls,
        image_gc: skiff_node::images::GcPolicy {
            high_threshold_percent: args.images.image_gc_high_threshold,
            low_threshold_percent: args.images.image_gc_low_threshold,
            min_age: args.images.minimum_image_ttl_duration,
            period: args.images.image_gc_period,
        },
    };
    let registry_config =
        args.images.registry_config.clone().unwrap_or_else(|| dir.join("registries.yaml"));
    let registries = skiff_runtime_core::registries::RegistryConfig::load(&registry_config)?;
    if let Some(hosts_dir) = &args.images.containerd_registry_config_path {
        registries.write_containerd_hosts(hosts_dir)?;
    }
    wasm.images().set_registry_config(registries);

    let mut proxy_options = ProxyOptions::new(&args.name);
    proxy_options.node_ip = match args.ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    };
    proxy_options.service_cidr = Some(SERVICE_CIDR.to_string());
    proxy_options.cluster_cidr = Some(args.cluster_cidr.clone());
    proxy_options.mode = match net.proxy_mode {
        ProxyModeArg::Nftables => ProxyMode::Nftables,
        ProxyModeArg::None => ProxyMode::None,
    };
    proxy_options.locally_served = vec![net.cluster_dns];
    let activator_ip = proxy_options.node_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    let proxy = Arc::new(Proxy::new(proxy_options).context("setting up the node proxy")?);
    let activator = skiff_proxy::activator::Activator::new(
        activator_ip,
        &args.name,
        client.clone(),
        tokio::runtime::Handle::current(),
    );
    proxy.set_activator(activator.clone());
    let dns_listen = net.dns_listen.unwrap_or(SocketAddr::new(IpAddr::V4(net.cluster_dns), 53));
    let dns = ClusterDns::new(DnsOptions {
        zone: net.cluster_domain.clone(),
        listen: vec![dns_listen],
        upstreams: net.dns_upstream.clone(),
        ..Default::default()
    })
    .context("setting up the cluster DNS")?;
    let policies = Arc::new(std::sync::OnceLock::new());
    wasm.set_service_directory(Arc::new(NodeServices {
        proxy: proxy.clone(),
        dns: dns.clone(),
        policies: policies.clone(),
    }));

    let mut runtimes: Vec<Arc<dyn skiff_runtime_core::ContainerRuntime>> = vec![wasm];
    if let Some(endpoint) = &args.container_runtime_endpoint {
        let cri = skiff_runtime_cri::CriRuntime::connect(endpoint)
            .await
            .with_context(|| format!("connecting to the container runtime at {endpoint}"))?;
        tracing::info!(%endpoint, "OCI runtime connected (RuntimeClass runc)");
        runtimes.push(Arc::new(cri));
    }
    let kubelet = Kubelet::new(config, client.clone(), runtimes);
    kubelet.add_metrics(|registry| {
        proxy.register_metrics(registry);
        activator.register_metrics(registry);
        dns.register_metrics(registry);
    });
    tokio::spawn(proxy.clone().run(client.clone()));
    tokio::spawn(report_proxy_health(proxy, kubelet.clone()));
    let mut netpol = NetpolOptions::new(&args.name);
    netpol.enforcement = match net.proxy_mode {
        ProxyModeArg::Nftables => Enforcement::Nftables,
        ProxyModeArg::None => Enforcement::InProcess,
    };
    netpol.node_addresses = vec![args.ip];
    tokio::spawn(run_network_policies(netpol, policies, client.clone(), kubelet.clone()));
    tokio::spawn(async move {
        // The cluster DNS address is the node's once the proxy has routed the Service range
        // locally: wait for that (bounded), then serve.
        let deadline = tokio::time::Instant::now() + DNS_BIND_WAIT;
        while dns.listen().is_err() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Listening or not, the cache is fed: Wasm guests resolve names from it in-process.
        if let Err(e) = dns.run(client).await {
            tracing::error!(error = %e, listen = %dns_listen, "the cluster DNS server stopped; Wasm guests still resolve names in-process");
        }
    });
    Ok(kubelet)
}

/// NetworkPolicy on this node: nftables for its OCI pods (the CNI half of its pod range, known
/// once the control plane assigned the range), in-process checks for its Wasm pods.
async fn run_network_policies(
    mut options: NetpolOptions,
    slot: Arc<std::sync::OnceLock<Arc<NetworkPolicies>>>,
    client: kube::Client,
    kubelet: Arc<Kubelet>,
) {
    options.oci_pod_cidr = kubelet.pod_cidr().await.and_then(|c| lower_half(&c));
    let policies = match NetworkPolicies::new(options) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::error!(error = %e, "NetworkPolicy cannot be enforced on this node");
            return;
        }
    };
    kubelet.add_metrics(|registry| policies.register_metrics(registry));
    let _ = slot.set(policies.clone());
    let health = policies.clone();
    let kubelet_health = kubelet.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let (ok, reason, message) = match health.health() {
                NetpolHealth::Ok => {
                    (true, "PoliciesInForce", "NetworkPolicies are enforced".to_string())
                }
                NetpolHealth::Unavailable(why) => (
                    false,
                    "NetworkPolicyUnavailable",
                    format!(
                        "NetworkPolicies cannot be enforced in nftables ({why}); Wasm pods are still checked in-process"
                    ),
                ),
            };
            kubelet_health.set_condition(POLICY_CONDITION, ok, reason, &message).await;
        }
    });
    policies.run(client).await;
}

/// The lower half of a node's pod block (its OCI pods', as `skiff_node::network` plans it).
fn lower_half(cidr: &str) -> Option<String> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    (bits < 32).then(|| format!("{ip}/{}", bits + 1))
}

/// Keep the Node's `ServiceProxyReady` condition in step with the proxy (an event when it
/// turns false), so a node without nftables or route privileges says why.
async fn report_proxy_health(proxy: Arc<Proxy>, kubelet: Arc<Kubelet>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let (ok, reason, message) = match proxy.health() {
            ProxyHealth::Ok => (
                true,
                "ProxyRulesInForce",
                "Service rules and cluster routes are in force".to_string(),
            ),
            ProxyHealth::NftablesUnavailable(why) => (
                false,
                "NftablesUnavailable",
                format!(
                    "Services cannot be programmed in nftables ({why}); OCI pods and the host cannot reach ClusterIPs, Wasm pods still reach Services in-process"
                ),
            ),
            ProxyHealth::RoutesUnavailable(why) => (
                false,
                "RoutesUnavailable",
                format!(
                    "cluster routes cannot be installed ({why}); pods of other nodes are not reachable by pod IP"
                ),
            ),
        };
        kubelet.set_condition(PROXY_CONDITION, ok, reason, &message).await;
    }
}
