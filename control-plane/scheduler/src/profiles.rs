//! Scheduler profiles: which plugins run at each extension point, with what weights and
//! arguments — kube-scheduler's default plugin set, in its order and with its score
//! weights. A profile may switch plugins off and choose the resource scoring strategy.

use std::sync::Arc;

use crate::Options;
use crate::framework::{Framework, Plugin, WeightedScore};
use crate::plugins::balanced_allocation::{BalancedAllocation, BalancedAllocationArgs};
use crate::plugins::default_binder::DefaultBinder;
use crate::plugins::default_preemption::{DefaultPreemption, KubePreemptionApi};
use crate::plugins::image_locality::ImageLocality;
use crate::plugins::inter_pod_affinity::{InterPodAffinity, InterPodAffinityArgs};
use crate::plugins::node_affinity::{NodeAffinity, NodeAffinityArgs};
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_fit::{FitArgs, NodeResourcesFit};
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::pod_topology_spread::PodTopologySpread;
use crate::plugins::runtime_class::RuntimeClass;
use crate::plugins::scheduling_gates::SchedulingGates;
use crate::plugins::taint_toleration::TaintToleration;
use crate::plugins::volume_binding::{KubeVolumeBindingApi, VolumeBinding};
use crate::queue::SchedulingQueue;

/// One profile: a scheduler name pods select with `spec.schedulerName`.
#[derive(Debug, Clone, Default)]
pub struct ProfileConfig {
    pub scheduler_name: String,
    /// Plugins switched off in this profile (by Kubernetes name; `*` for every optional one).
    pub disabled: Vec<String>,
    pub fit: FitArgs,
    pub inter_pod_affinity: InterPodAffinityArgs,
}

impl ProfileConfig {
    pub fn named(scheduler_name: &str) -> Self {
        ProfileConfig { scheduler_name: scheduler_name.into(), ..Default::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {profile}: plugin {plugin}: {message}")]
    Args { profile: String, plugin: &'static str, message: String },
}

/// Build a profile's framework. Without a client (the cycle benchmark, tests) the plugins
/// that write to the API — VolumeBinding, DefaultPreemption, DefaultBinder — are left out.
pub fn build(
    config: &ProfileConfig,
    client: Option<&kube::Client>,
    queue: &Arc<SchedulingQueue>,
    options: &Options,
) -> Result<Framework, ProfileError> {
    let name = if config.scheduler_name.is_empty() {
        crate::DEFAULT_SCHEDULER_NAME
    } else {
        config.scheduler_name.as_str()
    };
    let mut fwk = Framework::empty(name);
    fwk.percentage_of_nodes_to_score = options.percentage_of_nodes_to_score;
    let on = |plugin: &str| !config.disabled.iter().any(|d| d == plugin || d == "*");
    let args_err = |plugin: &'static str, e: &dyn std::fmt::Display| ProfileError::Args {
        profile: name.to_string(),
        plugin,
        message: e.to_string(),
    };

    // Weights: kube-scheduler's defaults (TaintToleration 3, NodeAffinity 2,
    // PodTopologySpread 2, InterPodAffinity 2, the rest 1).
    let fit = Arc::new(
        NodeResourcesFit::new(config.fit.clone())
            .map_err(|e| args_err(crate::plugins::node_resources_fit::NAME, &e))?,
    );
    let balanced = Arc::new(
        BalancedAllocation::new(BalancedAllocationArgs::default())
            .map_err(|e| args_err(crate::plugins::balanced_allocation::NAME, &e))?,
    );
    let affinity = Arc::new(
        NodeAffinity::new(NodeAffinityArgs::default())
            .map_err(|e| args_err(crate::plugins::node_affinity::NAME, &e))?,
    );
    let volumes = client
        .map(|c| Arc::new(VolumeBinding::new(Arc::new(KubeVolumeBindingApi::new(c.clone())))));
    let inter_pod = Arc::new(
        InterPodAffinity::new(config.inter_pod_affinity.clone())
            .map_err(|e| args_err(crate::plugins::inter_pod_affinity::NAME, &e))?,
    );
    let spread = Arc::new(PodTopologySpread::new());

    if on(crate::plugins::scheduling_gates::NAME) {
        fwk.pre_enqueue.push(Arc::new(SchedulingGates));
    }
    // Pre-filter and filter, in kube-scheduler's order (cheap checks first).
    if on(crate::plugins::node_unschedulable::NAME) {
        fwk.filter.push(Arc::new(NodeUnschedulable));
    }
    if on(crate::plugins::node_name::NAME) {
        fwk.filter.push(Arc::new(NodeName));
    }
    if on(crate::plugins::taint_toleration::NAME) {
        let p = Arc::new(TaintToleration);
        fwk.filter.push(p.clone());
        fwk.pre_score.push(p.clone());
        fwk.score.push(WeightedScore { plugin: p, weight: 3 });
    }
    if on(crate::plugins::runtime_class::NAME) {
        let p = Arc::new(RuntimeClass);
        fwk.pre_filter.push(p.clone());
        fwk.filter.push(p);
    }
    if on(crate::plugins::node_affinity::NAME) {
        fwk.pre_filter.push(affinity.clone());
        fwk.filter.push(affinity.clone());
        fwk.pre_score.push(affinity.clone());
        fwk.score.push(WeightedScore { plugin: affinity, weight: 2 });
    }
    if on(crate::plugins::node_ports::NAME) {
        let p = Arc::new(NodePorts);
        fwk.pre_filter.push(p.clone());
        fwk.filter.push(p);
    }
    if on(crate::plugins::node_resources_fit::NAME) {
        fwk.pre_filter.push(fit.clone());
        fwk.filter.push(fit.clone());
        fwk.pre_score.push(fit.clone());
        fwk.score.push(WeightedScore { plugin: fit, weight: 1 });
    }
    if let Some(volumes) = volumes.filter(|_| on(crate::plugins::volume_binding::NAME)) {
        fwk.pre_filter.push(volumes.clone());
        fwk.filter.push(volumes.clone());
        fwk.reserve.push(volumes.clone());
        fwk.pre_bind.push(volumes);
    }
    if on(crate::plugins::pod_topology_spread::NAME) {
        fwk.pre_filter.push(spread.clone());
        fwk.filter.push(spread.clone());
        fwk.pre_score.push(spread.clone());
        fwk.score.push(WeightedScore { plugin: spread, weight: 2 });
    }
    if on(crate::plugins::inter_pod_affinity::NAME) {
        fwk.pre_filter.push(inter_pod.clone());
        fwk.filter.push(inter_pod.clone());
        fwk.pre_score.push(inter_pod.clone());
        fwk.score.push(WeightedScore { plugin: inter_pod, weight: 2 });
    }
    if let Some(client) = client.filter(|_| on(crate::plugins::default_preemption::NAME)) {
        let weak = Arc::downgrade(queue);
        let api = KubePreemptionApi::new(
            client.clone(),
            skiff_client_tools::Recorder::new(client.clone(), crate::DEFAULT_SCHEDULER_NAME),
            Arc::new(move |node: &str| {
                weak.upgrade().map(|q| q.nominated_for(node)).unwrap_or_default()
            }),
        );
        fwk.post_filter.push(Arc::new(DefaultPreemption::new(Arc::new(api)).asynchronous()));
    }
    if on(crate::plugins::balanced_allocation::NAME) {
        fwk.pre_score.push(balanced.clone());
        fwk.score.push(WeightedScore { plugin: balanced, weight: 1 });
    }
    if on(crate::plugins::image_locality::NAME) {
        let p = Arc::new(ImageLocality);
        fwk.pre_score.push(p.clone());
        fwk.score.push(WeightedScore { plugin: p, weight: 1 });
    }
    if let Some(client) = client {
        fwk.bind.push(Arc::new(DefaultBinder::new(client.clone())));
    }
    register_events(&mut fwk);
    Ok(fwk)
}

/// Record each plugin's requeue events under its name.
fn register_events(fwk: &mut Framework) {
    let mut plugins: Vec<(&'static str, Vec<crate::framework::ClusterEvent>)> = Vec::new();
    let mut add = |p: &dyn Plugin| plugins.push((p.name(), p.events()));
    for p in &fwk.pre_enqueue {
        add(p.as_ref());
    }
    for p in &fwk.pre_filter {
        add(p.as_ref());
    }
    for p in &fwk.filter {
        add(p.as_ref());
    }
    for p in &fwk.reserve {
        add(p.as_ref());
    }
    for p in &fwk.permit {
        add(p.as_ref());
    }
    for (name, events) in plugins {
        fwk.events.entry(name).or_insert(events);
    }
}
