//! Scaling, revisions, status and history (Kubernetes' `pkg/controller/deployment/sync.go`):
//! finding or creating the new ReplicaSet and keeping its revision annotations, scaling a
//! paused Deployment or a scaling event proportionally across the active sets, computing and
//! writing the status, and deleting sets beyond `revisionHistoryLimit`.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_helpers::pods::{controller_of, controller_ref};

use super::DeploymentSync;
use super::progress::progress_deadline;
use super::rolling::new_rs_new_replicas;
use super::util::{
    AVAILABLE, DESIRED_REPLICAS, FOUND_NEW_RS, MAX_REPLICAS, MIN_AVAILABLE, MIN_UNAVAILABLE,
    NEW_RS_CREATED, PAUSED, POD_TEMPLATE_HASH, PROGRESSING, RESUMED, REVISION, RS_CREATE_ERROR,
    TIMED_OUT, annotation, by_creation, condition, created, equal_ignore_hash, get_condition,
    int_annotation, is_rolling, max_surge, max_unavailable, next_revision, replicas_of, revision,
    rs_actual, rs_available, rs_ready, rs_replicas, set_condition, set_new_rs_annotations,
    set_replicas_annotations, template_hash,
};
use crate::Error;
use crate::replicaset::{api_message, is_not_found};

/// Kubernetes' `calculateStatus`, with the `Available` condition.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let prev = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_actual(rs)).sum()),
        updated_replicas: Some(new_rs.map_or(0, rs_actual)),
        ready_replicas: Some(all.iter().map(|rs| rs_ready(rs)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: prev.collision_count,
        conditions: prev.conditions.clone(),
        terminating_replicas: None,
    };
    let cond = if available >= replicas_of(d) - max_unavailable(d) {
        condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// Proportional scaling (Kubernetes' `scale` for a rollout in progress): the new size of each
/// active set, given as `(replicas, max-replicas annotation, created)`, so that the total is
/// `desired + maxSurge`, spread in proportion to their sizes; leftovers go to the largest.
pub fn proportional_sizes(
    desired: i32,
    surge: i32,
    status_replicas: i32,
    sets: &[(i32, Option<i32>, Option<Timestamp>)],
) -> Vec<i32> {
    let total: i32 = sets.iter().map(|s| s.0).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    // Largest first; ties: newer first when adding, older first when removing.
    order.sort_by(|&a, &b| {
        sets[b].0.cmp(&sets[a].0).then_with(|| {
            if to_add > 0 { sets[b].2.cmp(&sets[a].2) } else { sets[a].2.cmp(&sets[b].2) }
        })
    });
    let mut sizes: Vec<i32> = sets.iter().map(|s| s.0).collect();
    if to_add == 0 {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let (replicas, annotated, _) = sets[i];
        let proportion = if replicas == 0 || to_add == added {
            0
        } else {
            let fraction = if desired == 0 {
                -replicas
            } else {
                let annotated = annotated.unwrap_or(status_replicas).max(1);
                let want = f64::from(replicas) * f64::from(desired + surge) / f64::from(annotated);
                want.round() as i32 - replicas
            };
            let allowed = to_add - added;
            if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
        };
        sizes[i] += proportion;
        added += proportion;
    }
    if let Some(&first) = order.first() {
        sizes[first] = (sizes[first] + to_add - added).max(0);
    }
    sizes
}

fn normalize_status(s: &DeploymentStatus) -> DeploymentStatus {
    let z = |v: Option<i32>| v.filter(|n| *n != 0);
    DeploymentStatus {
        observed_generation: s.observed_generation,
        replicas: z(s.replicas),
        updated_replicas: z(s.updated_replicas),
        ready_replicas: z(s.ready_replicas),
        available_replicas: z(s.available_replicas),
        unavailable_replicas: z(s.unavailable_replicas),
        terminating_replicas: None,
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
    }
}

impl DeploymentSync<'_> {
    pub(super) fn status_now(&self) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        calculate_status(&self.d, &all, self.new_rs(), self.now)
    }

    pub(super) fn sync_status_only(&self) -> DeploymentStatus {
        self.status_now()
    }

    fn set_status_condition(&mut self, c: DeploymentCondition) {
        set_condition(self.d.status.get_or_insert_default(), c);
    }

    /// Kubernetes' `checkPausedConditions`.
    pub(super) fn check_paused_conditions(&mut self) {
        if progress_deadline(&self.d).is_none() {
            return;
        }
        let status = self.d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return;
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && !paused_cond {
            self.set_status_condition(condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused",
                self.now,
            ));
        } else if !paused && paused_cond {
            self.set_status_condition(condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed",
                self.now,
            ));
        }
    }

    /// A set with pods whose desired-replicas annotation is not the Deployment's replicas.
    pub(super) fn is_scaling_event(&self) -> bool {
        let r = self.replicas();
        self.sets
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| int_annotation(rs, DESIRED_REPLICAS).is_some_and(|v| v != r))
    }

    /// Find the new set and bring its annotations and the Deployment's revision up to date;
    /// create it when `create` and there is none (Kubernetes' `getNewReplicaSet`).
    pub(super) async fn sync_revision(&mut self, create: bool) -> Result<(), Error> {
        let old: Vec<&ReplicaSet> = self.old_indexes().into_iter().map(|i| &self.sets[i]).collect();
        let new_revision = next_revision(&old);
        if let Some(i) = self.new_index() {
            let mut rs = self.sets[i].clone();
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let annotations_changed = set_new_rs_annotations(&self.d, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_default();
            if annotations_changed || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0)
            {
                spec.min_ready_seconds = min_ready;
                self.sets[i] =
                    self.rs_api.replace(&rs.name_any(), &PostParams::default(), &rs).await?;
                return Ok(());
            }
            let rev = annotation(&rs.metadata, REVISION).unwrap_or_default().to_string();
            self.set_deployment_revision(&rev).await?;
            if progress_deadline(&self.d).is_some()
                && get_condition(&self.d.status.clone().unwrap_or_default(), PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", rs.name_any());
                self.set_status_condition(condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_RS,
                    &msg,
                    self.now,
                ));
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let Some(spec) = self.d.spec.clone() else { return Ok(()) };
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        let replicas = new_rs_new_replicas(&self.d, &all, 0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.d.name_any())),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(rs) => {
                if replicas > 0 {
                    self.ctl.ctx.recorder.normal(
                        &self.d,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {} from 0 to {replicas}", rs.name_any()),
                    );
                }
                let msg = format!("Created new replica set \"{}\"", rs.name_any());
                if progress_deadline(&self.d).is_some() {
                    self.set_status_condition(condition(
                        PROGRESSING,
                        "True",
                        NEW_RS_CREATED,
                        &msg,
                        self.now,
                    ));
                }
                rs
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours already (a cache behind our own create), or another template's hash.
                let existing = self.rs_api.get(&rs.name_any()).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    existing
                } else {
                    let count = collision.unwrap_or(0).wrapping_add(1);
                    let api: Api<Deployment> = Api::namespaced(
                        self.ctl.ctx.client.clone(),
                        &self.d.namespace().unwrap_or_default(),
                    );
                    let patch = json!({"status": {"collisionCount": count}});
                    api.patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await?;
                    return Err(Error::Invalid(format!(
                        "hash collision for replica set {}",
                        rs.name_any()
                    )));
                }
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set \"{}\": {}",
                    rs.name_any(),
                    api_message(&e)
                );
                if progress_deadline(&self.d).is_some() {
                    self.set_status_condition(condition(
                        PROGRESSING,
                        "False",
                        RS_CREATE_ERROR,
                        &msg,
                        self.now,
                    ));
                    let status = self.d.status.clone().unwrap_or_default();
                    self.patch_status(&status).await?;
                }
                self.ctl.ctx.recorder.warning(&self.d, "FailedCreate", &msg);
                return Err(e.into());
            }
        };
        let rev = annotation(&created.metadata, REVISION).unwrap_or_default().to_string();
        self.sets.push(created);
        self.set_deployment_revision(&rev).await
    }

    async fn set_deployment_revision(&mut self, rev: &str) -> Result<(), Error> {
        if rev.is_empty() || annotation(&self.d.metadata, REVISION) == Some(rev) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.ctl.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let d =
            api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.d.metadata.annotations = d.metadata.annotations;
        Ok(())
    }

    /// Scale set `i` to `n`, refreshing its replica annotations (Kubernetes' `scaleReplicaSet`).
    pub(super) async fn scale(&mut self, i: usize, n: i32) -> Result<bool, Error> {
        let mut rs = self.sets[i].clone();
        let from = rs_replicas(&rs);
        let max = self.replicas() + max_surge(&self.d);
        let annotations_changed = set_replicas_annotations(&mut rs, self.replicas(), max);
        if from == n && !annotations_changed {
            return Ok(false);
        }
        rs.spec.get_or_insert_default().replicas = Some(n);
        let patch = json!({
            "metadata": {"annotations": rs.metadata.annotations, "resourceVersion": rs.resource_version()},
            "spec": {"replicas": n},
        });
        self.sets[i] = self
            .rs_api
            .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if from != n {
            let op = if from < n { "up" } else { "down" };
            self.ctl.ctx.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {} from {from} to {n}", rs.name_any()),
            );
        }
        Ok(from != n)
    }

    /// Kubernetes' `sync`: a paused Deployment or a scaling event only scales, no rollout.
    pub(super) async fn sync_scale(&mut self, paused: bool) -> Result<DeploymentStatus, Error> {
        self.sync_revision(false).await?;
        self.scale_sets().await?;
        if paused {
            self.cleanup().await;
        }
        Ok(self.status_now())
    }

    async fn scale_sets(&mut self) -> Result<(), Error> {
        let desired = self.replicas();
        let new = self.new_index();
        let old = self.old_indexes();
        // One active set (or none): it takes the whole count (the newest when none is active).
        let mut newest_first: Vec<usize> = old.iter().rev().copied().collect();
        let active: Vec<usize> = new
            .into_iter()
            .chain(newest_first.iter().copied())
            .filter(|&i| rs_replicas(&self.sets[i]) > 0)
            .collect();
        let target = match active.len() {
            0 => new.or_else(|| newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, desired).await?;
            return Ok(());
        }
        // The new set is saturated: the old ones go.
        if let Some(i) = new {
            let rs = &self.sets[i];
            if int_annotation(rs, DESIRED_REPLICAS) == Some(desired)
                && rs_replicas(rs) == desired
                && rs_available(rs) == desired
            {
                for i in old {
                    if rs_replicas(&self.sets[i]) > 0 {
                        self.scale(i, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        newest_first.retain(|&i| rs_replicas(&self.sets[i]) > 0);
        let active: Vec<usize> = new
            .filter(|&i| rs_replicas(&self.sets[i]) > 0)
            .into_iter()
            .chain(newest_first)
            .collect();
        let shape: Vec<_> = active
            .iter()
            .map(|&i| {
                let rs = &self.sets[i];
                (rs_replicas(rs), int_annotation(rs, MAX_REPLICAS), created(rs))
            })
            .collect();
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = proportional_sizes(desired, max_surge(&self.d), status_replicas, &shape);
        for (i, n) in active.into_iter().zip(sizes) {
            self.scale(i, n).await?;
        }
        Ok(())
    }

    /// Delete the oldest zero-replica sets beyond `revisionHistoryLimit`.
    pub(super) async fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut old: Vec<&ReplicaSet> = self
            .old_indexes()
            .into_iter()
            .map(|i| &self.sets[i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = old.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return;
        }
        old.sort_by(|a, b| revision(a).cmp(&revision(b)).then_with(|| by_creation(a, b)));
        let doomed: Vec<String> = old
            .into_iter()
            .take(diff as usize)
            .filter(|rs| {
                rs_actual(rs) == 0
                    && rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0)
            })
            .map(|rs| rs.name_any())
            .collect();
        for name in doomed {
            if let Err(e) = self.rs_api.delete(&name, &DeleteParams::default()).await
                && !is_not_found(&e)
            {
                tracing::debug!(rs = %name, error = %e, "old replica set not deleted");
            }
            self.sets.retain(|rs| rs.metadata.name.as_deref() != Some(&name));
        }
    }

    pub(super) async fn write_status(
        &mut self,
        original: &DeploymentStatus,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        if normalize_status(original) == normalize_status(&status) {
            return Ok(());
        }
        self.patch_status(&status).await?;
        self.d.status = Some(status);
        Ok(())
    }

    async fn patch_status(&self, s: &DeploymentStatus) -> Result<(), Error> {
        let nz = |v: Option<i32>| match v {
            Some(n) if n != 0 => json!(n),
            _ => Value::Null,
        };
        let patch = json!({"status": {
            "observedGeneration": s.observed_generation,
            "replicas": nz(s.replicas),
            "updatedReplicas": nz(s.updated_replicas),
            "readyReplicas": nz(s.ready_replicas),
            "availableReplicas": nz(s.available_replicas),
            "unavailableReplicas": nz(s.unavailable_replicas),
            "collisionCount": s.collision_count,
            "conditions": s.conditions,
        }});
        let api: Api<Deployment> =
            Api::namespaced(self.ctl.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        match api
            .patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }
}
