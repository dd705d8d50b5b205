//! Starting a node daemon (kubelet) with its runtimes: shared by `skiff server` (the embedded
//! node) and `skiff agent`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_node::{Kubelet, NodeConfig};

pub struct NodeArgs {
    pub name: String,
    pub ip: IpAddr,
    pub max_pods: u32,
    pub container_runtime_endpoint: Option<String>,
    pub lease_duration: Duration,
    pub labels: BTreeMap<String, String>,
    pub kubelet_port: u16,
}

/// A kubelet for this machine, keeping its state under `dir`: the Wasm runtime always, the
/// OCI runtime when a CRI endpoint is given. Call `run` on it to start.
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
    let config = NodeConfig {
        name: args.name,
        ip: args.ip.to_string(),
        pods_dir: dir.join("pods"),
        max_pods: args.max_pods,
        labels: args.labels,
        lease_duration: args.lease_duration,
        kubelet_port: args.kubelet_port,
    };
    let mut runtimes: Vec<Arc<dyn skiff_runtime_core::ContainerRuntime>> = vec![wasm];
    if let Some(endpoint) = &args.container_runtime_endpoint {
        let cri = skiff_runtime_cri::CriRuntime::connect(endpoint)
            .await
            .with_context(|| format!("connecting to the container runtime at {endpoint}"))?;
        tracing::info!(%endpoint, "OCI runtime connected (RuntimeClass runc)");
        runtimes.push(Arc::new(cri));
    }
    Ok(Kubelet::new(config, client, runtimes))
}
