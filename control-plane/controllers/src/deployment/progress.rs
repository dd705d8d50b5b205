//! Rollout progress (Kubernetes' `pkg/controller/deployment/progress.go`): the `Progressing`
//! condition against `progressDeadlineSeconds`, the `ReplicaFailure` condition taken from the
//! sets, and when to look at a rollout again.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use skiff_client_tools::workqueue::Requeue;

use super::DeploymentSync;
use super::util::{
    NEW_RS_AVAILABLE, PROGRESSING, REPLICA_FAILURE, RS_UPDATED, TIMED_OUT, condition,
    get_condition, remove_condition, replicas_of, set_condition,
};

pub(super) fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
}

pub(super) fn generation_observed(d: &Deployment, s: &DeploymentStatus) -> bool {
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Every replica updated and available, and the newest generation observed.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas_of(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && generation_observed(d, s)
}

fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(c) = get_condition(s, PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

/// The Progressing condition of a rollout (Kubernetes' `syncRolloutStatus`), applied to `status`.
pub fn rollout_progress(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    status: &mut DeploymentStatus,
    now: Timestamp,
) {
    if progress_deadline(d).is_none() {
        remove_condition(status, PROGRESSING);
        return;
    }
    let prev = d.status.clone().unwrap_or_default();
    let current = get_condition(&prev, PROGRESSING).cloned();
    let complete_already = status.replicas == status.updated_replicas
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if complete_already {
        return;
    }
    let rs_name = new_rs.map(|rs| rs.name_any());
    if deployment_complete(d, status) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
            None => format!("Deployment \"{}\" has successfully progressed.", d.name_any()),
        };
        set_condition(status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now));
    } else if deployment_progressing(d, status) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
            None => format!("Deployment \"{}\" is progressing.", d.name_any()),
        };
        let mut c = condition(PROGRESSING, "True", RS_UPDATED, &msg, now);
        if let Some(cur) = &current {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(status, PROGRESSING);
        }
        set_condition(status, c);
    } else if timed_out(d, status, now) {
        let msg = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
            None => format!("Deployment \"{}\" has timed out progressing.", d.name_any()),
        };
        set_condition(status, condition(PROGRESSING, "False", TIMED_OUT, &msg, now));
    }
}

impl DeploymentSync<'_> {
    /// The status with the Progressing condition of a rollout and the ReplicaFailure of the sets.
    pub(super) fn rollout_status(&self) -> DeploymentStatus {
        let mut status = self.status_now();
        rollout_progress(&self.d, self.new_rs(), &mut status, self.now);
        let failure = self.new_rs().into_iter().chain(self.sets.iter()).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                .cloned()
        });
        match failure {
            Some(c) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        status
    }

    /// When to look again: when the progress deadline would pass, or after a while.
    pub(super) fn requeue(&self) -> Requeue {
        let status = self.d.status.clone().unwrap_or_default();
        if let (Some(deadline), Some(c)) =
            (progress_deadline(&self.d), get_condition(&status, PROGRESSING))
            && !deployment_complete(&self.d, &status)
            && c.reason.as_deref() != Some(TIMED_OUT)
            && c.status == "True"
            && let Some(t) = &c.last_update_time
        {
            let left = t.0.as_second() + i64::from(deadline) - self.now.as_second();
            return Some(Duration::from_secs(left.clamp(0, 600) as u64 + 1));
        }
        Some(Duration::from_secs(600))
    }
}
