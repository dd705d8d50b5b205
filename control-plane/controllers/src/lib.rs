//! The controller manager: every built-in controller that turns the workload resources'
//! desired state into pods (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob),
//! and the cluster's housekeeping (garbage collection, namespace and node lifecycle,
//! ServiceAccounts, disruption budgets, TTLs).
//!
//! Each controller is a module with a `run(ctx)` future built on kube-runtime's watchers and
//! `Controller`. They are level-triggered: a reconcile recomputes what should exist from the
//! API alone and writes status every time. Only the instance holding the
//! `kube-system/kube-controller-manager` Lease runs them (see [`leader`]).

pub mod events;
pub mod expectations;
pub mod history;
pub mod leader;
pub mod pods;
pub mod workqueue;

pub mod batch;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttl;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use events::Recorder;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("watch failed: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What the controller manager is told at start.
#[derive(Debug, Clone)]
pub struct Options {
    /// This instance's name in the leader-election Lease (`holderIdentity`).
    pub identity: String,
    /// How long a node may go without renewing its Lease before it is marked NotReady
    /// (`--node-monitor-grace-period`; Kubernetes' default is 40 s).
    pub node_monitor_grace_period: Duration,
    /// Leader-election Lease duration; the holder renews it every third of that.
    pub lease_duration: Duration,
    /// How many finished pods may exist before the pod garbage collector deletes the oldest
    /// (`--terminated-pod-gc-threshold`; 0 turns it off; Kubernetes' default is 12500).
    pub terminated_pod_gc_threshold: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            identity: "skiff-controller-manager".into(),
            node_monitor_grace_period: Duration::from_secs(40),
            lease_duration: Duration::from_secs(15),
            terminated_pod_gc_threshold: 12500,
        }
    }
}

/// What every controller gets: the client, the event recorder and the options.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub options: Options,
}

impl Context {
    pub fn new(client: kube::Client, options: Options) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), "controller-manager");
        Arc::new(Self { client, recorder, options })
    }
}

type ControllerFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Every controller, by the name its logs and errors carry.
fn controllers(ctx: &Arc<Context>) -> Vec<(&'static str, ControllerFuture)> {
    vec![
        ("replicaset", Box::pin(replicaset::run(ctx.clone()))),
        ("deployment", Box::pin(deployment::run(ctx.clone()))),
        ("statefulset", Box::pin(statefulset::run(ctx.clone()))),
        ("daemonset", Box::pin(daemonset::run(ctx.clone()))),
        ("job", Box::pin(job::run(ctx.clone()))),
        ("cronjob", Box::pin(cronjob::run(ctx.clone()))),
        ("garbagecollector", Box::pin(gc::run(ctx.clone()))),
        ("namespace", Box::pin(namespace::run(ctx.clone()))),
        ("serviceaccount", Box::pin(serviceaccount::run(ctx.clone()))),
        ("nodelifecycle", Box::pin(nodelifecycle::run(ctx.clone()))),
        ("disruption", Box::pin(disruption::run(ctx.clone()))),
        ("podgc", Box::pin(podgc::run(ctx.clone()))),
        ("ttl-after-finished", Box::pin(ttl::run(ctx.clone()))),
    ]
}

/// Run the controller manager until the process ends: wait to be leader, run every
/// controller while leading, stop them all when the lease is lost, and try again.
pub async fn run(client: kube::Client, options: Options) {
    let elector = leader::LeaderElector::new(client.clone(), &options);
    loop {
        let lost = elector.acquire().await;
        tracing::info!(identity = %options.identity, "leading: controllers start");
        let ctx = Context::new(client.clone(), options.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for (name, fut) in controllers(&ctx) {
            tasks.spawn(supervise(name, fut));
        }
        lost.await;
        tracing::warn!(identity = %options.identity, "leadership lost: controllers stop");
        tasks.abort_all();
    }
}

/// A controller that returns or fails is logged; the rest go on (a controller's own loop
/// retries what it can, so an end here is a bug or a closed client).
async fn supervise(name: &'static str, fut: ControllerFuture) {
    match fut.await {
        Ok(()) => tracing::debug!(controller = name, "controller finished"),
        Err(e) => tracing::error!(controller = name, error = %e, "controller stopped"),
    }
}
