//! The RollingUpdate strategy (Kubernetes' `pkg/controller/deployment/rolling.go`): scale the
//! new set up within `maxSurge` and the old sets down within `maxUnavailable`, unhealthy old
//! replicas first.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};

use super::DeploymentSync;
use super::progress::deployment_complete;
use super::util::{is_rolling, max_surge, max_unavailable, replicas_of, rs_available, rs_replicas};
use crate::Error;

/// How many replicas the new ReplicaSet should have now (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    let desired = replicas_of(d);
    if !is_rolling(d) {
        return desired;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - current).min(desired - new_rs_replicas);
    new_rs_replicas + up
}

/// How many old replicas may go now without breaking `maxUnavailable` (the bound of
/// Kubernetes' `reconcileOldReplicaSets`).
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let all_pods: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let min_available = replicas_of(d) - max_unavailable(d);
    let new_unavailable = new_rs.map_or(0, |rs| rs_replicas(rs) - rs_available(rs));
    all_pods - min_available - new_unavailable
}

impl DeploymentSync<'_> {
    /// Kubernetes' `rolloutRolling`.
    pub(super) async fn rollout_rolling(&mut self) -> Result<DeploymentStatus, Error> {
        self.sync_revision(true).await?;
        if self.reconcile_new_rs().await? || self.reconcile_old_sets().await? {
            return Ok(self.rollout_status());
        }
        let status = self.status_now();
        if deployment_complete(&self.d, &status) {
            self.cleanup().await;
        }
        Ok(self.rollout_status())
    }

    async fn reconcile_new_rs(&mut self) -> Result<bool, Error> {
        let Some(i) = self.new_index() else { return Ok(false) };
        let desired = self.replicas();
        let current = rs_replicas(&self.sets[i]);
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return self.scale(i, desired).await;
        }
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let n = new_rs_new_replicas(&self.d, &all, current);
        self.scale(i, n).await
    }

    async fn reconcile_old_sets(&mut self) -> Result<bool, Error> {
        let old: Vec<usize> =
            self.old_indexes().into_iter().filter(|&i| rs_replicas(&self.sets[i]) > 0).collect();
        if old.is_empty() {
            return Ok(false);
        }
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let max_down = max_scaled_down(&self.d, &all, self.new_rs());
        if max_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas go first: they cost no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_down {
                break;
            }
            let rs = &self.sets[i];
            let (r, avail) = (rs_replicas(rs), rs_available(rs));
            if r == 0 || r == avail {
                continue;
            }
            let down = (max_down - cleaned).min(r - avail);
            self.scale(i, r - down).await?;
            cleaned += down;
        }
        // Then available ones, as far as minAvailable allows.
        let min_available = self.replicas() - max_unavailable(&self.d);
        let available: i32 = self.sets.iter().map(rs_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let r = rs_replicas(&self.sets[i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                self.scale(i, r - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }
}
