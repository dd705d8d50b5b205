//! Skiff's scheduler: Kubernetes' scheduling framework (`framework`) with its in-tree
//! plugins (`plugins`), a cache of nodes and pods fed by watches with assumed pods
//! (`cache`, `informers`), the scheduling queue with back-off and event-driven requeueing
//! (`queue`), and the loop that ties them together (`scheduler`). Profiles
//! (`spec.schedulerName`) are built in `profiles`. Only the holder of the
//! `kube-system/kube-scheduler` Lease schedules.

pub mod cache;
pub mod config;
pub mod framework;
pub mod informers;
pub mod metrics;
pub mod plugins;
pub mod profiles;
pub mod queue;
pub mod scheduler;
pub mod snapshot;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_client_tools::informers::{Informer, SharedInformers};

use crate::metrics::Metrics;
use crate::queue::SchedulingQueue;
use crate::scheduler::{Scheduler, Shared};

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
pub const LEASE_NAME: &str = "kube-scheduler";

#[derive(Clone)]
pub struct Options {
    /// Leader-election identity (`<node>_<member>`).
    pub identity: String,
    pub lease_duration: Duration,
    /// Without leader election every instance schedules (one control-plane member, tests).
    pub leader_elect: bool,
    pub profiles: Vec<profiles::ProfileConfig>,
    pub percentage_of_nodes_to_score: u32,
    /// The pod informer to follow, when the process shares one (`skiff server` shares its
    /// with the controller manager); `None` starts a pod watch of the scheduler's own.
    pub pods: Option<Informer<Pod>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            identity: "skiff-scheduler".into(),
            lease_duration: Duration::from_secs(15),
            leader_elect: true,
            profiles: vec![profiles::ProfileConfig::named(DEFAULT_SCHEDULER_NAME)],
            percentage_of_nodes_to_score: 0,
            pods: None,
        }
    }
}

/// Run the scheduler until the process ends: wait for the Lease, schedule while holding it,
/// stop when it is lost, and try again.
pub async fn run(client: kube::Client, options: Options, metrics: Metrics) {
    metrics.set_leader(false);
    if !options.leader_elect {
        metrics.set_leader(true);
        run_leading(client, options, metrics).await;
        return;
    }
    let elector = skiff_client_tools::LeaderElector::new(
        client.clone(),
        LEASE_NAME,
        &options.identity,
        options.lease_duration,
    );
    loop {
        let lost = elector.acquire().await;
        tracing::info!(identity = %options.identity, "leading: scheduler starts");
        metrics.set_leader(true);
        let task = tokio::spawn(run_leading(client.clone(), options.clone(), metrics.clone()));
        lost.await;
        tracing::warn!(identity = %options.identity, "leadership lost: scheduler stops");
        task.abort();
        let _ = task.await;
        metrics.set_leader(false);
    }
}

/// Closes the queue when dropped, which ends the scheduling thread.
struct CloseOnDrop(Arc<SchedulingQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Schedule until this future is dropped.
pub async fn run_leading(client: kube::Client, options: Options, metrics: Metrics) {
    let queue = Arc::new(SchedulingQueue::without_profiles());
    let _close = CloseOnDrop(queue.clone());
    let events = skiff_client_tools::Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME);
    let mut profiles: HashMap<String, Arc<framework::Framework>> = HashMap::new();
    for p in &options.profiles {
        match profiles::build(p, Some(&client), &queue, &options) {
            Ok(fwk) => {
                profiles.insert(fwk.profile_name.clone(), Arc::new(fwk));
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduler profile rejected; the scheduler does not start");
                return;
            }
        }
    }
    queue.set_profiles(profiles.clone());
    let shared = Arc::new(Shared {
        cache: Mutex::new(cache::Cache::new()),
        queue: queue.clone(),
        profiles,
        metrics,
        client: Some(client.clone()),
        events: Some(events),
        runtime: tokio::runtime::Handle::current(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::unbounded_channel();
    // Without a shared pod informer, one of this term's own (its watch ends with the term).
    let own_informers;
    let pods = match &options.pods {
        Some(pods) => pods.clone(),
        None => {
            own_informers = SharedInformers::new(client.clone());
            own_informers.get::<Pod>()
        }
    };
    let (watches, _pods_scope) = informers::start(&shared, &client, &pods, &mut tasks, synced_tx);
    for _ in 0..watches {
        if synced_rx.recv().await.is_none() {
            return;
        }
    }
    let flusher = shared.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            flusher.queue.flush();
            flusher.metrics.set_pending(flusher.queue.counts());
        }
    });
    let scheduler = Scheduler::new(shared.clone());
    let thread =
        std::thread::Builder::new().name("skiff-sched".into()).spawn(move || scheduler.run());
    if let Err(e) = thread {
        tracing::error!(error = %e, "could not start the scheduling thread");
        return;
    }
    tracing::info!("scheduler: caches synced, scheduling");
    while tasks.join_next().await.is_some() {}
}
