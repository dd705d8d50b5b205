//! The Recreate strategy (Kubernetes' `pkg/controller/deployment/recreate.go`): scale every
//! old set to zero, wait until none of their pods runs, then scale the new set up.

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet};
use kube::ResourceExt;
use skiff_client_tools::informers::BY_OWNER_UID;
use skiff_helpers::pods::{controller_of, phase};

use super::DeploymentSync;
use super::progress::deployment_complete;
use super::util::{rs_actual, rs_replicas};
use crate::Error;

impl DeploymentSync<'_> {
    /// Kubernetes' `rolloutRecreate`: every old pod gone before the new set scales up.
    pub(super) async fn rollout_recreate(&mut self) -> Result<DeploymentStatus, Error> {
        self.sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old_indexes() {
            if rs_replicas(&self.sets[i]) > 0 {
                scaled_down |= self.scale(i, 0).await?;
            }
        }
        if scaled_down || self.old_pods_running() {
            return Ok(self.rollout_status());
        }
        if self.new_index().is_none() {
            self.sync_revision(true).await?;
        }
        if let Some(i) = self.new_index() {
            let desired = self.replicas();
            self.scale(i, desired).await?;
        }
        if deployment_complete(&self.d, &self.status_now()) {
            self.cleanup().await;
        }
        Ok(self.rollout_status())
    }

    /// Whether a pod of an old set has not finished yet. Read from the shared pod cache; a
    /// pod's deletion wakes its Recreate Deployment (see `Wakeups::wake_for_deleted_pod`), so
    /// a cache that still shows a deleted pod is looked at again once it catches up.
    fn old_pods_running(&self) -> bool {
        let old: Vec<&ReplicaSet> = self.old_indexes().into_iter().map(|i| &self.sets[i]).collect();
        if old.iter().any(|rs| rs_actual(rs) > 0) {
            return true;
        }
        let ns = self.d.namespace();
        let labels =
            self.d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        old.iter().filter_map(|rs| rs.uid()).any(|uid| {
            self.ctl.pods.by_index(BY_OWNER_UID, &uid).iter().any(|p| {
                p.namespace() == ns
                    && controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
                    && labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))
                    && !matches!(phase(p), "Succeeded" | "Failed")
            })
        })
    }
}
