//! The controller manager: every built-in controller that turns the workload resources'
//! desired state into pods (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob),
//! and the cluster's housekeeping (garbage collection, namespace and node lifecycle,
//! ServiceAccounts, disruption budgets, TTLs), and the endpoints of Services (Endpoints,
//! EndpointSlices, and the mirroring of user-written Endpoints into slices).
//!
//! Every controller is written one way (client-go's): it takes the informers of what it
//! watches from the shared [`SharedInformers`] in its [`Context`] (one watch and one cache per
//! resource for the whole controller manager), registers handlers that put the
//! `namespace/name` keys of the objects to reconcile on a
//! [`WorkQueue`](skiff_client_tools::WorkQueue), and runs
//! `workqueue::spawn_workers` with a `sync(key)` that reads the caches, acts through the API
//! and returns when to look again. Syncs are level-triggered: they recompute what should exist
//! from the API alone and write status every time. Only the instance holding the
//! `kube-system/kube-controller-manager` Lease runs them.
//!
//! To add a controller: a module with `pub async fn run(ctx: Arc<Context>) -> Result<(), Error>`
//! in that shape, listed in `controllers()` below.

pub mod expectations;
pub mod history;
pub mod per_namespace;

pub mod batch;
pub mod clusterroleaggregation;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod scaletozero;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttl;
pub mod volumeprotection;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
pub use skiff_client_tools::Recorder;
use skiff_client_tools::informers::{Informer, SharedInformers};

/// The controller manager's leader-election Lease, in `kube-system`.
pub const LEASE_NAME: &str = "kube-controller-manager";

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
    /// The cluster CA (PEM) published as every namespace's `kube-root-ca.crt` ConfigMap
    /// (`--root-ca-file`); `None` publishes nothing.
    pub root_ca_pem: Option<String>,
    /// How often each HorizontalPodAutoscaler is looked at
    /// (`--horizontal-pod-autoscaler-sync-period`; Kubernetes' default is 15 s).
    pub hpa_sync_period: Duration,
    /// The pod informer to use, when the process shares one (`skiff server` shares its with
    /// the scheduler); `None` starts a pod watch of each leadership term's own.
    pub pods: Option<Informer<Pod>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            identity: "skiff-controller-manager".into(),
            node_monitor_grace_period: Duration::from_secs(40),
            lease_duration: Duration::from_secs(15),
            terminated_pod_gc_threshold: 12500,
            root_ca_pem: None,
            hpa_sync_period: Duration::from_secs(15),
            pods: None,
        }
    }
}

/// What every controller gets: the client, the shared informers (one watch and cache per
/// resource for all controllers), the event recorder and the options.
pub struct Context {
    pub client: kube::Client,
    pub informers: SharedInformers,
    pub recorder: Recorder,
    pub options: Options,
}

impl Context {
    /// Must be called inside a tokio runtime (the recorder and informers start tasks there).
    pub fn new(client: kube::Client, options: Options) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), "controller-manager");
        let informers = SharedInformers::new(client.clone());
        if let Some(pods) = &options.pods {
            informers.adopt(pods);
        }
        Arc::new(Self { client, informers, recorder, options })
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
        ("root-ca-cert-publisher", Box::pin(rootcacertpublisher::run(ctx.clone()))),
        ("nodelifecycle", Box::pin(nodelifecycle::run(ctx.clone()))),
        ("disruption", Box::pin(disruption::run(ctx.clone()))),
        ("podgc", Box::pin(podgc::run(ctx.clone()))),
        ("ttl-after-finished", Box::pin(ttl::run(ctx.clone()))),
        ("endpoint", Box::pin(endpoints::run(ctx.clone()))),
        ("endpointslice", Box::pin(endpointslice::run(ctx.clone()))),
        ("endpointslicemirroring", Box::pin(endpointslicemirroring::run(ctx.clone()))),
        ("clusterrole-aggregation", Box::pin(clusterroleaggregation::run(ctx.clone()))),
        ("resourcequota", Box::pin(resourcequota::run(ctx.clone()))),
        ("pvc-protection", Box::pin(volumeprotection::run_pvc(ctx.clone()))),
        ("pv-protection", Box::pin(volumeprotection::run_pv(ctx.clone()))),
        ("horizontalpodautoscaling", Box::pin(hpa::run(ctx.clone()))),
        ("scale-to-zero", Box::pin(scaletozero::run(ctx.clone()))),
    ]
}

/// Run the controller manager until the process ends: wait to be leader, run every
/// controller while leading, stop them all when the lease is lost, and try again.
pub async fn run(client: kube::Client, options: Options) {
    let elector = skiff_client_tools::LeaderElector::new(
        client.clone(),
        LEASE_NAME,
        &options.identity,
        options.lease_duration,
    );
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
