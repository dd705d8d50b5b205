//! Scheduler profiles: which plugins run at each extension point, with what weights and
//! arguments, as kube-scheduler's default `KubeSchedulerConfiguration` sets them up.

use std::sync::Arc;

use crate::framework::Framework;
use crate::plugins::default_binder::DefaultBinder;
use crate::queue::SchedulingQueue;
use crate::Options;

/// One profile: a scheduler name pods select with `spec.schedulerName`.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub scheduler_name: String,
    /// Plugins switched off in this profile (by Kubernetes name).
    pub disabled: Vec<String>,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig { scheduler_name: crate::DEFAULT_SCHEDULER_NAME.into(), disabled: Vec::new() }
    }
}

/// Build a profile's framework.
pub fn build(
    config: &ProfileConfig,
    client: &kube::Client,
    _queue: &Arc<SchedulingQueue>,
    options: &Options,
) -> Framework {
    let mut fwk = Framework::empty(&config.scheduler_name);
    fwk.percentage_of_nodes_to_score = options.percentage_of_nodes_to_score;
    fwk.bind.push(Arc::new(DefaultBinder::new(client.clone())));
    fwk
}
