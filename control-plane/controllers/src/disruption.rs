//! The disruption controller: the status of every PodDisruptionBudget (`currentHealthy`,
//! `desiredHealthy`, `expectedPods`, `disruptionsAllowed`, `disruptedPods`,
//! `observedGeneration` and the `DisruptionAllowed` condition) computed from the pods its
//! selector matches and the scale of their controllers, as Kubernetes computes it. The
//! eviction subresource reads that status, decrements `disruptionsAllowed` and records the
//! pod in `disruptedPods`; this controller forgets the pods it recorded once they are
//! deleted, or after two minutes if they are not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::{Context, Error};
use skiff_client_tools::informers::{BY_NAMESPACE, Informer};
use skiff_client_tools::workqueue::{self, WorkQueue, key_of, split_key};
use skiff_helpers::labels::{selector_is_empty, selector_matches};
use skiff_helpers::pods::{controller_of, is_ready};

/// How long an eviction recorded in `disruptedPods` may go without the pod being deleted
/// before the pod counts again (Kubernetes' DeletionTimeout).
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);
const RESYNC: Duration = Duration::from_secs(30);

/// Kubernetes' GetScaledValueFromIntOrPercent: an integer as is, `N%` of `total` rounded
/// up or down.
pub(crate) fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = pct * i64::from(total);
            let v = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            i32::try_from(v).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// Whether a budget needs its pods' controllers' scale (percentages and maxUnavailable).
fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.is_some_and(|s| s.max_unavailable.is_some())
        || matches!(spec.and_then(|s| s.min_available.as_ref()), Some(IntOrString::String(_)))
}

/// `(expectedPods, desiredHealthy)` for a budget over `pods` pods whose controllers ask for
/// `scale` replicas in all.
pub(crate) fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: usize,
    scale: i32,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let unavailable = scaled(max, scale, true)?;
        return Ok((scale, (scale - unavailable).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((i32::try_from(pods).unwrap_or(i32::MAX), *n)),
        Some(min) => Ok((scale, scaled(min, scale, true)?)),
        None => Ok((0, 0)),
    }
}

/// The pods in `disruptedPods` still expected to go: not yet deleted, recorded less than
/// [`DELETION_TIMEOUT`] ago.
pub(crate) fn still_disrupted(
    recorded: &BTreeMap<String, Time>,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> BTreeMap<String, Time> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.as_deref()?;
            let at = recorded.get(name)?;
            (at.0.checked_add(DELETION_TIMEOUT).ok()? > now).then(|| (name.to_string(), at.clone()))
        })
        .collect()
}

/// Ready, not being deleted and not being evicted.
pub(crate) fn healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.name.as_ref().is_none_or(|n| !disrupted.contains_key(n)))
        .filter(|p| is_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Set the `DisruptionAllowed` condition, moving its transition time only when its status
/// changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let fresh = Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    match conditions.iter_mut().find(|c| c.type_ == fresh.type_) {
        None => conditions.push(fresh),
        Some(c) => {
            if c.status != fresh.status {
                c.last_transition_time = fresh.last_transition_time;
            }
            c.status = fresh.status;
            c.reason = fresh.reason;
            c.message = fresh.message;
            c.observed_generation = fresh.observed_generation;
        }
    }
}

/// The budget's status for its `pods`, given the total scale of their controllers (or why
/// it could not be found): Kubernetes' arithmetic, `disruptionsAllowed` never negative and
/// zero while no pod is expected.
pub(crate) fn status_for(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    scale: Result<i32, String>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    let computed = scale.and_then(|s| expected_and_desired(pdb, pods.len(), s));
    let (expected, desired) = match computed {
        Ok(v) => v,
        Err(e) => {
            // Fail safe: no disruption while the budget cannot be computed.
            status.disruptions_allowed = 0;
            let mut conditions = old.conditions.unwrap_or_default();
            set_condition(&mut conditions, "False", "SyncFailed", &e, generation, now);
            status.conditions = Some(conditions);
            return status;
        }
    };
    let disrupted = still_disrupted(&old.disrupted_pods.clone().unwrap_or_default(), pods, now);
    let current = healthy(pods, &disrupted);
    let allowed = if expected <= 0 { 0 } else { (current - desired).max(0) };
    status.current_healthy = current;
    status.desired_healthy = desired;
    status.expected_pods = expected;
    status.disruptions_allowed = allowed;
    status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
    let mut conditions = old.conditions.unwrap_or_default();
    if allowed > 0 {
        set_condition(&mut conditions, "True", "SufficientPods", "", generation, now);
    } else {
        set_condition(&mut conditions, "False", "InsufficientPods", "", generation, now);
    }
    status.conditions = Some(conditions);
    status
}

/// Does the budget's selector take this pod? In policy/v1 an empty selector takes every
/// pod of the namespace and a missing one none.
fn selects(selector: Option<&LabelSelector>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    selector.is_some_and(|s| selector_is_empty(s) || selector_matches(s, &labels))
}

struct Disruption {
    ctx: Arc<Context>,
    budgets: Store<PodDisruptionBudget>,
    pods: Informer<Pod>,
    queue: WorkQueue,
}

impl Disruption {
    /// The budgets in the pod's namespace that select it.
    fn budgets_of(budgets: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        budgets
            .state()
            .iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
            .filter(|b| selects(b.spec.as_ref().and_then(|s| s.selector.as_ref()), pod))
            .map(|b| key_of(b.as_ref()))
            .collect()
    }

    /// The total replicas the controllers of `pods` ask for, each controller counted once;
    /// a ReplicaSet run by a Deployment counts as the Deployment.
    async fn controllers_scale(&self, ns: &str, pods: &[Arc<Pod>]) -> Result<i32, String> {
        let client = &self.ctx.client;
        let mut seen: HashMap<String, i32> = HashMap::new();
        for pod in pods {
            let Some(r) = controller_of(&pod.metadata) else { continue };
            if seen.contains_key(&r.uid) {
                continue;
            }
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let missing = || format!("found no controllers for pod {name:?}");
            let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
            let found: Option<(String, i32)> = match (group, r.kind.as_str()) {
                ("apps", "ReplicaSet") => {
                    let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                        .get_opt(&r.name)
                        .await
                        .map_err(|e| e.to_string())?
                        .filter(|rs| rs.metadata.uid.as_deref() == Some(&r.uid));
                    match rs {
                        None => None,
                        Some(rs) => match controller_of(&rs.metadata)
                            .filter(|d| d.kind == "Deployment")
                        {
                            Some(d) => Api::<Deployment>::namespaced(client.clone(), ns)
                                .get_opt(&d.name)
                                .await
                                .map_err(|e| e.to_string())?
                                .filter(|x| x.metadata.uid.as_deref() == Some(&d.uid))
                                .map(|x| {
                                    let n = x.spec.and_then(|s| s.replicas).unwrap_or(1);
                                    (d.uid.clone(), n)
                                }),
                            None => {
                                Some((r.uid.clone(), rs.spec.and_then(|s| s.replicas).unwrap_or(1)))
                            }
                        },
                    }
                }
                ("apps", "StatefulSet") => Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| e.to_string())?
                    .filter(|x| x.metadata.uid.as_deref() == Some(&r.uid))
                    .map(|x| (r.uid.clone(), x.spec.and_then(|s| s.replicas).unwrap_or(1))),
                ("", "ReplicationController") => {
                    Api::<ReplicationController>::namespaced(client.clone(), ns)
                        .get_opt(&r.name)
                        .await
                        .map_err(|e| e.to_string())?
                        .filter(|x| x.metadata.uid.as_deref() == Some(&r.uid))
                        .map(|x| (r.uid.clone(), x.spec.and_then(|s| s.replicas).unwrap_or(1)))
                }
                _ => None,
            };
            let (uid, n) = found.ok_or_else(missing)?;
            seen.insert(r.uid.clone(), 0);
            seen.insert(uid, n);
        }
        Ok(seen.values().sum())
    }

    async fn sync(&self, key: &str) -> Result<(), Error> {
        let (ns, name) = split_key(key);
        let Some(pdb) = self.budgets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_NAMESPACE, ns)
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| selects(selector, p))
            .collect();
        let scale = if needs_scale(&pdb) {
            let unmanaged = pods.iter().any(|p| controller_of(&p.metadata).is_none());
            if unmanaged {
                self.ctx.recorder.warning(
                    pdb.as_ref(),
                    "UnmanagedPods",
                    "Pods selected by this PodDisruptionBudget were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                );
            }
            self.controllers_scale(ns, &pods).await
        } else {
            Ok(0)
        };
        if let Err(e) = &scale {
            self.ctx.recorder.warning(
                pdb.as_ref(),
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
        }
        let status = status_for(&pdb, &pods, scale, Timestamp::now());
        if pdb.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = (*pdb).clone();
        updated.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), ns);
        // Over the resourceVersion read: an eviction counted meanwhile is not overwritten.
        match api.replace_status(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    // The watches end with this future.
    let queue = WorkQueue::new();
    let budgets = ctx.informers.get::<PodDisruptionBudget>();
    budgets.wait_until_ready().await;
    workqueue::enqueue_objects(&budgets, &queue);
    let budgets = budgets.store();
    // Pods are looked at once there is a budget to keep: most clusters' pods change far more
    // often than their budgets, and many clusters have none.
    let first = queue.next().await;
    let pods = ctx.informers.get::<Pod>();
    pods.wait_until_ready().await;
    let (b, q) = (budgets.clone(), queue.clone());
    pods.on_change(move |change| {
        if let Some(pod) = change.object() {
            for key in Disruption::budgets_of(&b, pod) {
                q.add(&key);
            }
        }
    });
    queue.done(&first);
    queue.add(&first);
    let d = Disruption { ctx, budgets, pods, queue };
    // Recorded disruptions expire without any event: every budget is looked at now and then.
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let key = tokio::select! {
            key = d.queue.next() => key,
            _ = resync.tick() => {
                for b in d.budgets.state() {
                    d.queue.add(&key_of(b.as_ref()));
                }
                continue;
            }
        };
        match d.sync(&key).await {
            Ok(()) => d.queue.forget(&key),
            Err(e) => {
                tracing::debug!(%key, error = %e, "disruption budget sync retried");
                d.queue.retry(&key);
            }
        }
        d.queue.done(&key);
    }
}

#[cfg(test)]
mod tests;
