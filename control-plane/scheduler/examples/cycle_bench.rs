//! The scheduling algorithm alone: scheduling cycles (pre-filter to select, then assume) of
//! the default profile over simulated nodes held in the cache, with no API server and no
//! binding. It tells how much of the end-to-end throughput (`skiff-bench-scheduler`) the
//! algorithm itself costs.
//!
//! The preemption case fills 4-CPU nodes with four 1-CPU low-priority pods each; every
//! measured pod fails, preempts (DefaultPreemption with an API that only records its
//! victims), has its victim removed from the cache as the watch would, and is scheduled
//! again onto its nominated node: two cycles per pod, as in the end-to-end bench.
//!
//! `cargo build --release --workspace --example cycle_bench && target/release/examples/cycle_bench [nodes] [pods] [cases]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use serde_json::json;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::framework::CycleState;
use skiff_scheduler::metrics::Metrics;
use skiff_scheduler::plugins::default_preemption::{
    DefaultPreemption, PreemptionApi, PreemptionError,
};
use skiff_scheduler::profiles::{self, ProfileConfig};
use skiff_scheduler::queue::SchedulingQueue;
use skiff_scheduler::scheduler::{ScheduleError, Scheduler, Shared};
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

fn pod_spec(cpu: &str) -> serde_json::Value {
    json!({"containers": [{"name": "c", "image": "pause",
        "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]})
}

fn pod(case: &str, i: usize) -> Pod {
    let mut spec = pod_spec("100m");
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
        "preemption" => {
            spec = pod_spec("1");
            spec["priority"] = json!(1000);
        }
        _ => {}
    }
    serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "namespace": "bench",
        "uid": format!("{case}-{i}"), "labels": labels}, "spec": spec}))
    .expect("pod")
}

/// A low-priority 1-CPU pod bound to node `n` (preemption's victims).
fn victim(n: usize, j: usize) -> Pod {
    let mut spec = pod_spec("1");
    spec["priority"] = json!(1);
    spec["nodeName"] = json!(format!("node-{n}"));
    serde_json::from_value(json!({"metadata": {"name": format!("low-{n}-{j}"),
        "namespace": "bench-init", "uid": format!("low-{n}-{j}")}, "spec": spec}))
    .expect("pod")
}

/// Preemption's API calls, reduced to remembering who was deleted.
#[derive(Default)]
struct RecordingApi {
    deleted: Mutex<Vec<String>>,
}

impl PreemptionApi for RecordingApi {
    fn patch_condition<'a>(
        &'a self,
        _pod: &'a Pod,
        _condition: &'a PodCondition,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), PreemptionError>> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.deleted.lock().unwrap_or_else(|e| e.into_inner()).push(uid);
        Box::pin(async { Ok(()) })
    }
    fn set_nominated_node<'a>(
        &'a self,
        _pod: &'a Pod,
        _node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async { Ok(()) })
    }
    fn record_preempted(&self, _victim: &Pod, _message: &str) {}
    fn nominated_pods(&self, _node: &str) -> Vec<Arc<PodInfo>> {
        Vec::new()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let cases = args.next().unwrap_or_else(|| "basic,anti-affinity,spread,preemption".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("scheduling cycles of the default profile (no binding): {nodes} nodes, {pods} pods");
    for case in cases.split(',') {
        let queue = Arc::new(SchedulingQueue::without_profiles());
        let options = skiff_scheduler::Options::default();
        let mut fwk =
            profiles::build(&ProfileConfig::named("default-scheduler"), None, &queue, &options)
                .expect("profile");
        let api = Arc::new(RecordingApi::default());
        if case == "preemption" {
            fwk.post_filter.push(Arc::new(DefaultPreemption::new(api.clone())));
        }
        let fwk = Arc::new(fwk);
        let profiles = HashMap::from([(fwk.profile_name.clone(), fwk.clone())]);
        queue.set_profiles(profiles.clone());
        let mut cache = Cache::new();
        for i in 0..nodes {
            cache.add_or_update_node(Arc::new(node(i)));
            if case == "preemption" {
                for j in 0..4 {
                    cache.add_or_update_pod(Arc::new(PodInfo::new(Arc::new(victim(i, j)))));
                }
            }
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
            let mut info = info.clone();
            // A preemptor gets a second cycle once its victims are gone.
            for _ in 0..2 {
                scheduler.refresh_snapshot();
                let mut state = CycleState::default();
                match scheduler.schedule_pod(&fwk, &mut state, &info) {
                    Ok(host) => {
                        let mut assumed = (*info).clone();
                        assumed.node_name = host.clone();
                        shared.queue.remove_nominated(&info.uid);
                        shared.cache().assume_pod(Arc::new(assumed), &host);
                        break;
                    }
                    Err(_) if fwk.post_filter.is_empty() => {
                        failed += 1;
                        break;
                    }
                    Err(ScheduleError::Fit(diagnosis)) => {
                        let snapshot = scheduler.snapshot().clone();
                        let (result, _) = runtime.block_on(fwk.post_filter[0].post_filter(
                            &state,
                            &info,
                            &snapshot,
                            &fwk,
                            &diagnosis.node_statuses,
                        ));
                        let Some(node) = result.and_then(|r| r.nominated_node) else {
                            failed += 1;
                            break;
                        };
                        let victims = std::mem::take(
                            &mut *api.deleted.lock().unwrap_or_else(|e| e.into_inner()),
                        );
                        for uid in victims {
                            shared.cache().remove_pod(&uid);
                        }
                        let mut nominated = (*info.pod).clone();
                        nominated.status.get_or_insert_default().nominated_node_name =
                            Some(node.clone());
                        info = Arc::new(PodInfo::new(Arc::new(nominated)));
                        shared.queue.add_nominated(info.clone(), &node);
                    }
                    Err(ScheduleError::Error(_)) => {
                        failed += 1;
                        break;
                    }
                }
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
