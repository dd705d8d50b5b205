//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run. A bound claim's
//! volume must be reachable from the node (its `nodeAffinity`); a claim whose class waits for
//! the first consumer (`WaitForFirstConsumer`) is matched here, per node, with the smallest
//! available pre-provisioned volume that fits (local and hostPath volumes pinned to nodes),
//! and the binding is written when the pod is bound.
//!
//! Kubernetes splits that binding between the scheduler (which pre-binds the volume) and the
//! PV controller (which completes both sides). Skiff has no PV controller, so pre-bind writes
//! both sides itself, leaving the objects as the controller would: the volume's `claimRef`
//! and phase `Bound`; the claim's `volumeName`, its `bind-completed` / `bound-by-controller`
//! annotations and phase `Bound` with the volume's capacity and access modes. For the same
//! reason, a claim the user pre-bound (`spec.volumeName` set, binding not completed) is
//! completed here too, for the volume it names.
//!
//! Reserve records the chosen volumes in the plugin's assume cache, so the next pods do not
//! take them before the API shows the binding; an assumption lapses when the API's copy of
//! the volume changes (the binding arrived, or someone else wrote it) or on unreserve.
//!
//! No score: Kubernetes scores volume capacity only behind the `StorageCapacityScoring`
//! feature gate (off by default). Dynamic provisioning (claims that no existing volume can
//! satisfy, `volume.kubernetes.io/selected-node`) and CSI storage capacity are not supported:
//! such a claim finds no volume on any node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

use crate::framework::{
    Action, ClusterEvent, Code, CycleState, FilterPlugin, Plugin, PreBindPlugin, PreFilterPlugin,
    PreFilterResult, ReservePlugin, Resource, Status,
};
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo, node_selector_term_matches, selector_matches, value};

pub const NAME: &str = "VolumeBinding";

/// A claim waiting for its first consumer found no volume on the node.
pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
/// A bound claim's volume cannot be reached from the node.
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// A bound claim names a volume that does not exist.
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// A claim that should have been bound before scheduling is not.
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// On a claim: its binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a volume or claim: the binding was made by the system, not pre-bound by the user.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The storage class annotation that still takes precedence over `storageClassName`.
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
const STORAGE: &str = "storage";

/// A failed write of the binding. Every variant fails the pod's binding cycle, which
/// retries the pod; `Conflict` means another writer got there first (re-read and retry).
#[derive(Debug, thiserror::Error)]
pub enum VolumeBindingError {
    #[error("conflict updating {resource} {name:?}: {message}")]
    Conflict { resource: &'static str, name: String, message: String },
    #[error("{resource} {name:?} not found")]
    NotFound { resource: &'static str, name: String },
    #[error("updating {resource} {name:?}: {message}")]
    Api { resource: &'static str, name: String, message: String },
}

impl VolumeBindingError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, VolumeBindingError::Conflict { .. })
    }
}

/// The API writes pre-bind makes. Each call is one replace of the given object with its
/// `metadata.resourceVersion` as precondition (a stale object is a `Conflict`), returning
/// the object as stored. Calls are independent and thread-safe; a dropped future has made
/// at most its one write. Retrying is safe because pre-bind writes only what is missing.
pub trait VolumeBindingApi: Send + Sync {
    fn update_pv<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>>;
    fn update_pv_status<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>>;
    fn update_pvc<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>>;
    fn update_pvc_status<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>>;
}

/// `VolumeBindingApi` over the API server.
#[derive(Clone)]
pub struct KubeVolumeBindingApi {
    client: kube::Client,
}

impl KubeVolumeBindingApi {
    pub fn new(client: kube::Client) -> Self {
        KubeVolumeBindingApi { client }
    }

    fn pvs(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn pvcs(&self, pvc: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), pvc.metadata.namespace.as_deref().unwrap_or_default())
    }
}

fn api_error(resource: &'static str, name: &str, e: kube::Error) -> VolumeBindingError {
    let name = name.to_string();
    match e {
        kube::Error::Api(s) if s.code == 409 => {
            VolumeBindingError::Conflict { resource, name, message: s.message }
        }
        kube::Error::Api(s) if s.code == 404 => VolumeBindingError::NotFound { resource, name },
        other => VolumeBindingError::Api { resource, name, message: other.to_string() },
    }
}

impl VolumeBindingApi for KubeVolumeBindingApi {
    fn update_pv<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>> {
        Box::pin(async move {
            let name = pv.metadata.name.as_deref().unwrap_or_default();
            self.pvs()
                .replace(name, &PostParams::default(), pv)
                .await
                .map_err(|e| api_error("persistentvolumes", name, e))
        })
    }

    fn update_pv_status<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>> {
        Box::pin(async move {
            let name = pv.metadata.name.as_deref().unwrap_or_default();
            self.pvs()
                .replace_status(name, &PostParams::default(), pv)
                .await
                .map_err(|e| api_error("persistentvolumes", name, e))
        })
    }

    fn update_pvc<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>> {
        Box::pin(async move {
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            self.pvcs(pvc)
                .replace(name, &PostParams::default(), pvc)
                .await
                .map_err(|e| api_error("persistentvolumeclaims", name, e))
        })
    }

    fn update_pvc_status<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>> {
        Box::pin(async move {
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            self.pvcs(pvc)
                .replace_status(name, &PostParams::default(), pvc)
                .await
                .map_err(|e| api_error("persistentvolumeclaims", name, e))
        })
    }
}

/// A volume the scheduler decided (or reserve assumed) to bind to a claim.
#[derive(Clone)]
struct StaticBinding {
    pv: Arc<PersistentVolume>,
    pvc: Arc<PersistentVolumeClaim>,
}

/// A bound claim and its volume (`None`: the volume does not exist).
#[derive(Clone)]
struct BoundClaim {
    pv: Option<Arc<PersistentVolume>>,
}

/// A claim to bind on the chosen node, with the volumes that could take it apart from node
/// affinity (which is the only per-node question).
#[derive(Clone)]
struct ClaimToBind {
    pvc: Arc<PersistentVolumeClaim>,
    /// A volume already pointing at this claim: when it exists it is the only answer.
    prebound: Option<Arc<PersistentVolume>>,
    /// Other fitting volumes, smallest first.
    candidates: Vec<Arc<PersistentVolume>>,
}

/// What pre-filter computed for the pod, and what filter found per node.
#[derive(Clone)]
struct State {
    bound: Vec<BoundClaim>,
    /// Smallest request first, so small claims take small volumes.
    to_bind: Vec<ClaimToBind>,
    /// What each feasible node would bind (Kubernetes' `podVolumesByNode`). Filter only
    /// gets `&CycleState` and may run for many nodes at once, hence the lock; clones of the
    /// state (preemption) share it, as Kubernetes' do.
    by_node: Arc<Mutex<HashMap<String, Arc<Vec<StaticBinding>>>>>,
}

/// A volume reserve assumed bound to a claim, until the API's copy of the volume changes.
struct Assumed {
    claim_namespace: String,
    claim_name: String,
    claim_uid: String,
    /// The volume's resourceVersion when assumed.
    pv_version: String,
    pod_uid: String,
}

/// A claim reference, from the API object or an assumption.
#[derive(Clone, Copy)]
struct ClaimRef<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
}

impl ClaimRef<'_> {
    /// Kubernetes' `IsVolumeBoundToClaim`: same namespace and name, and the same uid when
    /// the reference has one.
    fn is_for(&self, pvc: &PersistentVolumeClaim) -> bool {
        self.namespace == pvc.metadata.namespace.as_deref().unwrap_or_default()
            && self.name == pvc.metadata.name.as_deref().unwrap_or_default()
            && (self.uid.is_empty() || self.uid == pvc.metadata.uid.as_deref().unwrap_or_default())
    }
}

fn object_claim_ref(pv: &PersistentVolume) -> Option<ClaimRef<'_>> {
    pv.spec.as_ref()?.claim_ref.as_ref().map(|r| ClaimRef {
        namespace: r.namespace.as_deref().unwrap_or_default(),
        name: r.name.as_deref().unwrap_or_default(),
        uid: r.uid.as_deref().unwrap_or_default(),
    })
}

pub struct VolumeBinding {
    api: Arc<dyn VolumeBindingApi>,
    /// Volume name to the claim reserve assumed it bound to.
    assumed: Mutex<HashMap<String, Assumed>>,
}

impl VolumeBinding {
    pub fn new(api: Arc<dyn VolumeBindingApi>) -> Self {
        VolumeBinding { api, assumed: Mutex::new(HashMap::new()) }
    }

    fn assumed(&self) -> MutexGuard<'_, HashMap<String, Assumed>> {
        // The map stays consistent even if a holder panicked: every update is one insert
        // or remove.
        self.assumed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write one binding as Kubernetes' binder and PV controller together leave it, skipping
    /// what is already done.
    async fn bind(&self, b: &StaticBinding) -> Result<(), VolumeBindingError> {
        let pv_name = b.pv.metadata.name.clone().unwrap_or_default();

        // The volume: claimRef (GetBindVolumeToClaim), then phase Bound.
        let mut pv = (*b.pv).clone();
        let already_for_claim = object_claim_ref(&pv).is_some_and(|r| r.is_for(&b.pvc));
        let exact = object_claim_ref(&pv).is_some_and(|r| {
            r.is_for(&b.pvc) && r.uid == b.pvc.metadata.uid.as_deref().unwrap_or_default()
        });
        let mut dirty = false;
        if !exact {
            pv.spec.get_or_insert_default().claim_ref = Some(claim_reference(&b.pvc));
            dirty = true;
        }
        if !already_for_claim {
            let ann = pv.metadata.annotations.get_or_insert_default();
            if !ann.contains_key(ANN_BOUND_BY_CONTROLLER) {
                ann.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
                dirty = true;
            }
        }
        if dirty {
            pv = self.api.update_pv(&pv).await?;
        }
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            let status = pv.status.get_or_insert_with(PersistentVolumeStatus::default);
            status.phase = Some("Bound".into());
            status.message = None;
            status.last_phase_transition_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            self.api.update_pv_status(&pv).await?;
        }

        // The claim: volumeName and annotations (bindClaimToVolume), then status.
        let mut pvc = (*b.pvc).clone();
        let spec = pvc.spec.get_or_insert_default();
        let set_volume = spec.volume_name.as_deref() != Some(pv_name.as_str());
        let mut dirty = false;
        if set_volume {
            spec.volume_name = Some(pv_name.clone());
            dirty = true;
        }
        let ann = pvc.metadata.annotations.get_or_insert_default();
        if set_volume && !ann.contains_key(ANN_BOUND_BY_CONTROLLER) {
            ann.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
            dirty = true;
        }
        if !ann.contains_key(ANN_BIND_COMPLETED) {
            ann.insert(ANN_BIND_COMPLETED.into(), "yes".into());
            dirty = true;
        }
        if dirty {
            pvc = self.api.update_pvc(&pvc).await?;
        }
        let pv_spec = b.pv.spec.as_ref();
        let status = pvc.status.get_or_insert_with(PersistentVolumeClaimStatus::default);
        let mut dirty = false;
        let modes = pv_spec.and_then(|s| s.access_modes.clone());
        if status.access_modes != modes {
            status.access_modes = modes;
            dirty = true;
        }
        if status.phase.as_deref() != Some("Bound") {
            status.phase = Some("Bound".into());
            // Capacity is copied only when the claim becomes Bound: a later difference can
            // be deliberate (a filesystem smaller than its device).
            status.capacity = pv_spec.and_then(|s| s.capacity.clone());
            dirty = true;
        }
        if dirty {
            self.api.update_pvc_status(&pvc).await?;
        }
        tracing::debug!(
            namespace = pvc.metadata.namespace.as_deref().unwrap_or_default(),
            claim = pvc.metadata.name.as_deref().unwrap_or_default(),
            volume = %pv_name,
            "claim bound to volume"
        );
        Ok(())
    }
}

/// The reference a volume keeps to its claim (`reference.GetReference`).
fn claim_reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: pvc.metadata.namespace.clone(),
        name: pvc.metadata.name.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// The claim's class: the beta annotation still wins over `storageClassName`.
fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    annotation(&pvc.metadata, ANN_BETA_STORAGE_CLASS)
        .or_else(|| pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or_default()
}

fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, ANN_BETA_STORAGE_CLASS)
        .or_else(|| pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or_default()
}

fn requested_storage(pvc: &PersistentVolumeClaim) -> i64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(STORAGE))
        .and_then(|q| value(&q.0))
        .unwrap_or(0)
}

fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get(STORAGE))
        .and_then(|q| value(&q.0))
        .unwrap_or(0)
}

/// Kubernetes' `CheckVolumeModeMismatches`, with an unset mode meaning Filesystem.
fn volume_mode_matches(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let claim = pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim.unwrap_or("Filesystem") == volume.unwrap_or("Filesystem")
}

/// Every access mode the claim asks for is one the volume offers.
fn access_modes_match(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let offered = pv.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    pvc.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

fn selector_allows(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    match pvc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => true,
        Some(sel) => selector_matches(sel, pv.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())),
    }
}

/// A volume nobody claims that may be bound. Kubernetes binds only `Available` volumes; a
/// new volume is `Pending` until the PV controller marks it `Available`, and Skiff has no
/// PV controller, so an unclaimed `Pending` (or phase-less) volume counts as available too.
fn is_available(pv: &PersistentVolume) -> bool {
    matches!(
        pv.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("" | "Pending" | "Available")
    )
}

/// Kubernetes' `CheckNodeAffinity`: any required term matches the node; no requirement
/// matches every node.
fn volume_fits_node(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    let Some(required) =
        pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, &node.name, &node.labels))
}

/// The nodes a local volume is pinned to by `kubernetes.io/hostname In [...]` in every
/// required term (Kubernetes' `GetLocalPersistentVolumeNodeNames`). `None`: no such pin.
/// Unlike Kubernetes, a term without a hostname expression means no pin at all, rather than
/// being left out of the union (which would drop nodes that term allows).
fn local_volume_nodes(pv: &PersistentVolume) -> Option<HashSet<String>> {
    let required = pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    let mut union = HashSet::new();
    for term in &required.node_selector_terms {
        let mut nodes: Option<HashSet<String>> = None;
        for req in term.match_expressions.iter().flatten() {
            if req.key == LABEL_HOSTNAME && req.operator == "In" {
                let values: HashSet<String> = req.values.iter().flatten().cloned().collect();
                nodes = Some(match nodes {
                    None => values,
                    Some(n) => n.intersection(&values).cloned().collect(),
                });
            }
        }
        union.extend(nodes?);
    }
    (!union.is_empty()).then_some(union)
}

/// A claim is bound once it names a volume and the binding was completed.
fn is_fully_bound(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
        && annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some()
}

/// Does the claim's class wait for the first consumer? No class, or a class that does not
/// exist, binds immediately.
fn is_delay_binding(pvc: &PersistentVolumeClaim, snapshot: &Snapshot) -> Result<bool, String> {
    let class = claim_class(pvc);
    if class.is_empty() {
        return Ok(false);
    }
    let Some(sc) = snapshot.listers.storage_classes.get(class) else { return Ok(false) };
    match sc.volume_binding_mode.as_deref() {
        None => Err(format!("VolumeBindingMode not set for StorageClass {class:?}")),
        Some(mode) => Ok(mode == WAIT_FOR_FIRST_CONSUMER),
    }
}

fn state_missing() -> Status {
    Status::error(format!("error reading {NAME:?} from cycleState: not found"))
}

impl VolumeBinding {
    /// The claim a volume is (or is assumed) bound to. An assumption holds only while the
    /// API's copy of the volume is the one it was made on.
    fn effective_claim_ref<'a>(
        assumed: &'a HashMap<String, Assumed>,
        pv: &'a PersistentVolume,
    ) -> Option<ClaimRef<'a>> {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        if let Some(a) = assumed.get(name)
            && pv.metadata.resource_version.as_deref().unwrap_or_default() == a.pv_version
        {
            return Some(ClaimRef {
                namespace: &a.claim_namespace,
                name: &a.claim_name,
                uid: &a.claim_uid,
            });
        }
        object_claim_ref(pv)
    }

    /// The per-pod part of Kubernetes' `FindMatchingVolume`: the volume already pointing at
    /// the claim, and the unclaimed volumes of its class that fit, smallest first. Only node
    /// affinity is left for filter.
    fn match_claim(
        assumed: &HashMap<String, Assumed>,
        pvc: Arc<PersistentVolumeClaim>,
        snapshot: &Snapshot,
    ) -> ClaimToBind {
        let class = claim_class(&pvc);
        let request = requested_storage(&pvc);
        let mut prebound: Option<Arc<PersistentVolume>> = None;
        let mut candidates: Vec<(i64, &str, Arc<PersistentVolume>)> = Vec::new();
        for (name, pv) in snapshot.listers.persistent_volumes.iter() {
            if volume_class(pv) != class {
                continue;
            }
            let claim_ref = Self::effective_claim_ref(assumed, pv);
            if claim_ref.is_some_and(|r| !r.is_for(&pvc)) {
                continue;
            }
            let size = capacity(pv);
            if size < request
                || !volume_mode_matches(&pvc, pv)
                || pv.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            if claim_ref.is_some() {
                // Several volumes pointing at one claim is a user error; pick one stably.
                if prebound
                    .as_ref()
                    .is_none_or(|p| p.metadata.name.as_deref() > Some(name.as_str()))
                {
                    prebound = Some(pv.clone());
                }
                continue;
            }
            if !is_available(pv) || !selector_allows(&pvc, pv) || !access_modes_match(&pvc, pv) {
                continue;
            }
            candidates.push((size, name.as_str(), pv.clone()));
        }
        candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let candidates = candidates.into_iter().map(|(_, _, pv)| pv).collect();
        ClaimToBind { pvc, prebound, candidates }
    }

    /// A claim the user pre-bound to a volume (`spec.volumeName`): the PV controller would
    /// bind it if the volume is free for it and satisfies it (`checkVolumeSatisfyClaim`).
    fn user_prebound(
        assumed: &HashMap<String, Assumed>,
        pvc: &Arc<PersistentVolumeClaim>,
        volume_name: &str,
        snapshot: &Snapshot,
    ) -> Option<ClaimToBind> {
        let pv = snapshot.listers.persistent_volumes.get(volume_name)?;
        let free = Self::effective_claim_ref(assumed, pv).is_none_or(|r| r.is_for(pvc));
        let satisfies = pv.metadata.deletion_timestamp.is_none()
            && capacity(pv) >= requested_storage(pvc)
            && volume_class(pv) == claim_class(pvc)
            && volume_mode_matches(pvc, pv);
        (free && satisfies).then(|| ClaimToBind {
            pvc: pvc.clone(),
            prebound: Some(pv.clone()),
            candidates: Vec::new(),
        })
    }

    /// Forget assumptions the API has overtaken: the volume changed or is gone.
    fn prune_assumed(assumed: &mut HashMap<String, Assumed>, snapshot: &Snapshot) {
        assumed.retain(|name, a| {
            snapshot.listers.persistent_volumes.get(name).is_some_and(|pv| {
                pv.metadata.resource_version.as_deref().unwrap_or_default() == a.pv_version
            })
        });
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(Resource::PersistentVolume, Action::Add),
            ClusterEvent::new(Resource::PersistentVolume, Action::Update),
            ClusterEvent::new(Resource::PersistentVolumeClaim, Action::Add),
            ClusterEvent::new(Resource::PersistentVolumeClaim, Action::Update),
            ClusterEvent::new(Resource::StorageClass, Action::Add),
            ClusterEvent::new(Resource::StorageClass, Action::Update),
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
        ]
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        // The volumes themselves, not `PodInfo::claims`: a generic ephemeral volume's claim
        // is checked differently (it is created by a controller, for this pod).
        let volumes = pod.pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
        let mut claims: Vec<Arc<PersistentVolumeClaim>> = Vec::new();
        for v in volumes {
            let (name, ephemeral) = if let Some(c) = &v.persistent_volume_claim {
                (c.claim_name.clone(), false)
            } else if v.ephemeral.is_some() {
                (format!("{}-{}", pod.name, v.name), true)
            } else {
                continue;
            };
            let Some(pvc) =
                snapshot.listers.persistent_volume_claims.get(&format!("{}/{name}", pod.namespace))
            else {
                return (
                    None,
                    Status::unresolvable(if ephemeral {
                        format!(
                            "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                        )
                    } else {
                        format!("persistentvolumeclaim {name:?} not found")
                    }),
                );
            };
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                let volume =
                    pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or_default();
                return (
                    None,
                    Status::unresolvable(format!(
                        "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {volume:?}"
                    )),
                );
            }
            if pvc.metadata.deletion_timestamp.is_some() {
                return (
                    None,
                    Status::unresolvable(format!(
                        "persistentvolumeclaim {name:?} is being deleted"
                    )),
                );
            }
            if ephemeral {
                let owned = pvc
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && o.uid == pod.uid);
                if !owned {
                    let ns = &pod.namespace;
                    return (
                        None,
                        Status::unresolvable(format!(
                            "PVC {ns}/{name} was not created for pod {ns}/{} (pod is not owner)",
                            pod.name
                        )),
                    );
                }
            }
            // Two volumes of the pod may mount one claim; it needs one binding.
            if !claims.iter().any(|c| Arc::ptr_eq(c, pvc)) {
                claims.push(pvc.clone());
            }
        }
        if claims.is_empty() {
            return (None, Status::skip());
        }

        let mut assumed = self.assumed();
        Self::prune_assumed(&mut assumed, snapshot);
        let mut bound = Vec::new();
        let mut to_bind = Vec::new();
        let mut unbound_immediate = false;
        for pvc in claims {
            let volume_name =
                pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or_default();
            if is_fully_bound(&pvc) {
                bound.push(BoundClaim {
                    pv: snapshot.listers.persistent_volumes.get(volume_name).cloned(),
                });
            } else if !volume_name.is_empty() {
                match Self::user_prebound(&assumed, &pvc, volume_name, snapshot) {
                    Some(c) => to_bind.push(c),
                    None => unbound_immediate = true,
                }
            } else {
                match is_delay_binding(&pvc, snapshot) {
                    Err(e) => return (None, Status::error(e)),
                    Ok(true) => to_bind.push(Self::match_claim(&assumed, pvc, snapshot)),
                    Ok(false) => unbound_immediate = true,
                }
            }
        }
        drop(assumed);
        if unbound_immediate {
            // The PV controller binds these; Kubernetes requeues the pod once it has.
            return (None, Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE));
        }
        to_bind.sort_by_key(|c| requested_storage(&c.pvc));

        // Bound local volumes pin the pod to their nodes (Kubernetes' `GetEligibleNodes`);
        // a missing volume leaves the choice to filter.
        let mut eligible: Option<HashSet<String>> = None;
        if bound.iter().all(|b| b.pv.is_some()) {
            for pv in bound.iter().filter_map(|b| b.pv.as_ref()) {
                if let Some(nodes) = local_volume_nodes(pv) {
                    eligible = Some(match eligible {
                        None => nodes,
                        Some(e) => e.intersection(&nodes).cloned().collect(),
                    });
                }
            }
        }
        state.write(NAME, State { bound, to_bind, by_node: Arc::default() });
        (eligible.map(|n| PreFilterResult { node_names: Some(n) }), Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<State>(NAME) else { return state_missing() };

        // Kubernetes' `checkBoundClaims`: the first missing or unreachable volume decides.
        let (mut affinity_ok, mut volumes_exist) = (true, true);
        for b in &s.bound {
            match &b.pv {
                None => {
                    volumes_exist = false;
                    break;
                }
                Some(pv) if !volume_fits_node(pv, node) => {
                    affinity_ok = false;
                    break;
                }
                Some(_) => {}
            }
        }

        let mut bindings: Vec<StaticBinding> = Vec::new();
        let mut found = true;
        if !s.to_bind.is_empty() {
            bindings.reserve_exact(s.to_bind.len());
            let taken = |bindings: &[StaticBinding], pv: &Arc<PersistentVolume>| {
                bindings.iter().any(|b| Arc::ptr_eq(&b.pv, pv))
            };
            for claim in &s.to_bind {
                let chosen = match claim.prebound.as_ref().filter(|pv| !taken(&bindings, pv)) {
                    // A volume pointing at the claim is the answer, or there is none here.
                    Some(pv) => volume_fits_node(pv, node).then_some(pv),
                    None => claim
                        .candidates
                        .iter()
                        .find(|pv| !taken(&bindings, pv) && volume_fits_node(pv, node)),
                };
                match chosen {
                    Some(pv) => {
                        bindings.push(StaticBinding { pv: pv.clone(), pvc: claim.pvc.clone() })
                    }
                    None => {
                        found = false;
                        break;
                    }
                }
            }
        }

        if !(affinity_ok && found && volumes_exist) {
            let mut status = Status {
                code: Code::UnschedulableAndUnresolvable,
                reasons: smallvec::SmallVec::new(),
                plugin: "",
            };
            if !affinity_ok {
                status.reasons.push(ERR_REASON_NODE_CONFLICT.into());
            }
            if !found {
                status.reasons.push(ERR_REASON_BIND_CONFLICT.into());
            }
            if !volumes_exist {
                status.reasons.push(ERR_REASON_PV_NOT_EXIST.into());
            }
            return status;
        }
        if !bindings.is_empty() {
            s.by_node
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(node.name.clone(), Arc::new(bindings));
        }
        Status::success()
    }
}

impl State {
    fn bindings_for(&self, node: &str) -> Option<Arc<Vec<StaticBinding>>> {
        self.by_node.lock().unwrap_or_else(PoisonError::into_inner).get(node).cloned()
    }
}

impl ReservePlugin for VolumeBinding {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        // No bindings: the pod has no claims (pre-filter skipped), or all are bound.
        let Some(bindings) = state.read::<State>(NAME).and_then(|s| s.bindings_for(node)) else {
            return Status::success();
        };
        let mut assumed = self.assumed();
        for b in bindings.iter() {
            let meta = &b.pvc.metadata;
            assumed.insert(
                b.pv.metadata.name.clone().unwrap_or_default(),
                Assumed {
                    claim_namespace: meta.namespace.clone().unwrap_or_default(),
                    claim_name: meta.name.clone().unwrap_or_default(),
                    claim_uid: meta.uid.clone().unwrap_or_default(),
                    pv_version: b.pv.metadata.resource_version.clone().unwrap_or_default(),
                    pod_uid: pod.uid.clone(),
                },
            );
        }
        Status::success()
    }

    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        let Some(bindings) = state.read::<State>(NAME).and_then(|s| s.bindings_for(node)) else {
            return;
        };
        let mut assumed = self.assumed();
        for b in bindings.iter() {
            let name = b.pv.metadata.name.as_deref().unwrap_or_default();
            // Only this pod's assumption: another pod may have assumed the volume since.
            if assumed.get(name).is_some_and(|a| a.pod_uid == pod.uid) {
                assumed.remove(name);
            }
        }
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(s) = state.read::<State>(NAME) else { return Status::success() };
            if s.to_bind.is_empty() {
                return Status::success();
            }
            let Some(bindings) = s.bindings_for(node) else {
                return Status::error(format!("no pod volumes found for node {node:?}"));
            };
            for b in bindings.iter() {
                if let Err(e) = self.bind(b).await {
                    tracing::debug!(pod = %pod.key(), error = %e, "binding volumes failed");
                    return Status::error(format!("binding volumes: {e}"));
                }
            }
            Status::success()
        })
    }
}

#[cfg(test)]
mod tests;
