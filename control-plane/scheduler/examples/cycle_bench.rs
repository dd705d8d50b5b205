//! The scheduling algorithm alone: scheduling cycles (pre-filter to select, then assume) of
//! the default profile over simulated nodes held in the cache, with no API server and no
//! binding. It tells how much of the end-to-end throughput (`skiff-bench-scheduler`) the
//! algorithm itself costs.
//!
//! `cargo run --release -p skiff-scheduler --example cycle_bench -- [nodes] [pods]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::framework::CycleState;
use skiff_scheduler::metrics::Metrics;
use skiff_scheduler::profiles::{self, ProfileConfig};
use skiff_scheduler::queue::SchedulingQueue;
use skiff_scheduler::scheduler::{Scheduler, Shared};
use skiff_scheduler::types::PodInfo;

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}},
        "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("node")
}

fn pod(case: &str, i: usize) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "pause",
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]});
    let mut labels = json!({"app": "bench"});
    match case {
        "anti-affinity" => {
            let group = format!("g{}", i / 10);
            labels["group"] = json!(group);
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        "spread" => {
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "bench"}}}]);
        }
        _ => {}
    }
    serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "namespace": "bench",
        "uid": format!("{case}-{i}"), "labels": labels}, "spec": spec}))
    .expect("pod")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("scheduling cycles of the default profile (no binding): {nodes} nodes, {pods} pods");
    for case in ["basic", "anti-affinity", "spread"] {
        let queue = Arc::new(SchedulingQueue::without_profiles());
        let options = skiff_scheduler::Options::default();
        let fwk = Arc::new(
            profiles::build(&ProfileConfig::named("default-scheduler"), None, &queue, &options)
                .expect("profile"),
        );
        let profiles = HashMap::from([(fwk.profile_name.clone(), fwk.clone())]);
        queue.set_profiles(profiles.clone());
        let mut cache = Cache::new();
        for i in 0..nodes {
            cache.add_or_update_node(Arc::new(node(i)));
        }
        let shared = Arc::new(Shared {
            cache: Mutex::new(cache),
            queue,
            profiles,
            metrics: Metrics::new(),
            client: None,
            events: None,
            runtime: runtime.handle().clone(),
        });
        let infos: Vec<Arc<PodInfo>> =
            (0..pods).map(|i| Arc::new(PodInfo::new(Arc::new(pod(case, i))))).collect();
        let mut scheduler = Scheduler::new(shared.clone());
        let started = Instant::now();
        let mut failed = 0;
        for info in &infos {
            scheduler.refresh_snapshot();
            let mut state = CycleState::default();
            match scheduler.schedule_pod(&fwk, &mut state, info) {
                Ok(host) => {
                    let mut assumed = (**info).clone();
                    assumed.node_name = host.clone();
                    shared.cache().assume_pod(Arc::new(assumed), &host);
                }
                Err(_) => failed += 1,
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  {case:<14} {:>8.0} pods/s  ({:.2} s, {:.1} µs per pod, {failed} unschedulable)",
            pods as f64 / secs,
            secs,
            secs * 1e6 / pods as f64
        );
    }
}
