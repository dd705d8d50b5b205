//! Cases modelled on Kubernetes' `volume_binding_test.go` and `binder_test.go`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use k8s_openapi::api::core::v1::{
    EphemeralVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec,
    PersistentVolumeStatus, Pod, Volume, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use super::*;
use crate::types::testing::{node_info, pod, pod_info, quantities};

const WAIT_SC: &str = "wait-sc";
const IMMEDIATE_SC: &str = "immediate-sc";

fn storage_class(name: &str, mode: Option<&str>) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: mode.map(Into::into),
        ..Default::default()
    }
}

fn classes() -> Vec<StorageClass> {
    vec![
        storage_class(WAIT_SC, Some("WaitForFirstConsumer")),
        storage_class(IMMEDIATE_SC, Some("Immediate")),
    ]
}

/// An unbound claim in `default` asking for `request` with ReadWriteOnce.
fn pvc(name: &str, class: &str, request: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("10".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: (!class.is_empty()).then(|| class.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantities(&[("storage", request)])),
                ..Default::default()
            }),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

/// A claim the PV controller has bound to `pv`.
fn bound_pvc(name: &str, class: &str, pv: &str) -> PersistentVolumeClaim {
    let mut c = pvc(name, class, "1Gi");
    c.spec.as_mut().unwrap().volume_name = Some(pv.into());
    c.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
    c.status.as_mut().unwrap().phase = Some("Bound".into());
    c
}

/// An Available ReadWriteOnce volume.
fn pv(name: &str, class: &str, capacity: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("5".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some(quantities(&[("storage", capacity)])),
            storage_class_name: (!class.is_empty()).then(|| class.into()),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

fn with_affinity(mut v: PersistentVolume, key: &str, values: &[&str]) -> PersistentVolume {
    v.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: "In".into(),
                    values: Some(values.iter().map(|s| s.to_string()).collect()),
                }]),
                match_fields: None,
            }],
        }),
    });
    v
}

/// A local volume on one node.
fn local_pv(name: &str, class: &str, capacity: &str, node: &str) -> PersistentVolume {
    with_affinity(pv(name, class, capacity), "kubernetes.io/hostname", &[node])
}

fn with_phase(mut v: PersistentVolume, phase: &str) -> PersistentVolume {
    v.status.as_mut().unwrap().phase = Some(phase.into());
    v
}

fn with_claim_ref(mut v: PersistentVolume, claim: &str, uid: &str) -> PersistentVolume {
    v.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some("default".into()),
        name: Some(claim.into()),
        uid: (!uid.is_empty()).then(|| uid.into()),
        ..Default::default()
    });
    v
}

fn pod_with_claims(name: &str, claims: &[&str]) -> Pod {
    let mut p = pod(name, &[]);
    p.spec.as_mut().unwrap().volumes = Some(
        claims
            .iter()
            .map(|c| Volume {
                name: format!("vol-{c}"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: c.to_string(),
                    read_only: None,
                }),
                ..Default::default()
            })
            .collect(),
    );
    p
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    let mut n = crate::types::testing::node(name, &[("cpu", "4"), ("pods", "110")]);
    let mut l: BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.insert("kubernetes.io/hostname".into(), name.into());
    n.metadata.labels = Some(l);
    n
}

fn snapshot(
    nodes: &[Node],
    pvcs: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
    classes: &[StorageClass],
) -> Snapshot {
    let mut s = Snapshot::from_nodes(nodes.iter().map(|n| node_info(n.clone(), vec![])).collect());
    s.listers.persistent_volume_claims = Arc::new(
        pvcs.iter()
            .map(|c| {
                let key = format!(
                    "{}/{}",
                    c.metadata.namespace.as_deref().unwrap(),
                    c.metadata.name.as_deref().unwrap()
                );
                (key, Arc::new(c.clone()))
            })
            .collect(),
    );
    s.listers.persistent_volumes = Arc::new(
        pvs.iter().map(|v| (v.metadata.name.clone().unwrap(), Arc::new(v.clone()))).collect(),
    );
    s.listers.storage_classes = Arc::new(
        classes.iter().map(|c| (c.metadata.name.clone().unwrap(), Arc::new(c.clone()))).collect(),
    );
    s
}

/// The fake API: records every write and answers with the object one version later, or a
/// conflict for the operation named in `conflict_on`.
#[derive(Default)]
struct FakeApi {
    writes: Mutex<Vec<Write>>,
    conflict_on: Mutex<Option<&'static str>>,
}

#[derive(Debug, Clone)]
enum Write {
    Pv(PersistentVolume),
    PvStatus(PersistentVolume),
    Pvc(PersistentVolumeClaim),
    PvcStatus(PersistentVolumeClaim),
}

fn next_version(meta: &mut ObjectMeta) {
    let rv: u64 = meta.resource_version.as_deref().unwrap_or("0").parse().unwrap();
    meta.resource_version = Some((rv + 1).to_string());
}

impl FakeApi {
    fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    fn check(&self, op: &'static str, name: &str) -> Result<(), VolumeBindingError> {
        if *self.conflict_on.lock().unwrap() == Some(op) {
            return Err(VolumeBindingError::Conflict {
                resource: "persistentvolumes",
                name: name.into(),
                message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
        Ok(())
    }

    fn pv_write(
        &self,
        op: &'static str,
        pv: &PersistentVolume,
        record: fn(PersistentVolume) -> Write,
    ) -> Result<PersistentVolume, VolumeBindingError> {
        self.check(op, pv.metadata.name.as_deref().unwrap())?;
        self.writes.lock().unwrap().push(record(pv.clone()));
        let mut out = pv.clone();
        next_version(&mut out.metadata);
        Ok(out)
    }

    fn pvc_write(
        &self,
        op: &'static str,
        pvc: &PersistentVolumeClaim,
        record: fn(PersistentVolumeClaim) -> Write,
    ) -> Result<PersistentVolumeClaim, VolumeBindingError> {
        self.check(op, pvc.metadata.name.as_deref().unwrap())?;
        self.writes.lock().unwrap().push(record(pvc.clone()));
        let mut out = pvc.clone();
        next_version(&mut out.metadata);
        Ok(out)
    }
}

impl VolumeBindingApi for FakeApi {
    fn update_pv<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>> {
        Box::pin(async move { self.pv_write("pv", pv, Write::Pv) })
    }
    fn update_pv_status<'a>(
        &'a self,
        pv: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<PersistentVolume, VolumeBindingError>> {
        Box::pin(async move { self.pv_write("pv-status", pv, Write::PvStatus) })
    }
    fn update_pvc<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>> {
        Box::pin(async move { self.pvc_write("pvc", pvc, Write::Pvc) })
    }
    fn update_pvc_status<'a>(
        &'a self,
        pvc: &'a PersistentVolumeClaim,
    ) -> BoxFuture<'a, Result<PersistentVolumeClaim, VolumeBindingError>> {
        Box::pin(async move { self.pvc_write("pvc-status", pvc, Write::PvcStatus) })
    }
}

fn plugin() -> (VolumeBinding, Arc<FakeApi>) {
    let api = Arc::new(FakeApi::default());
    (VolumeBinding::new(api.clone()), api)
}

fn unresolvable(reasons: &[&str]) -> Status {
    Status {
        code: Code::UnschedulableAndUnresolvable,
        reasons: reasons.iter().map(|r| r.to_string().into()).collect(),
        plugin: "",
    }
}

struct Case {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pvcs: Vec<PersistentVolumeClaim>,
    pvs: Vec<PersistentVolume>,
    classes: Vec<StorageClass>,
    want_pre_filter: Status,
    /// The nodes pre-filter narrows the search to.
    want_nodes: Option<Vec<&'static str>>,
    /// Per node, in order; checked only when pre-filter succeeds.
    want_filter: Vec<Status>,
    /// Per feasible node: (claim, volume) pairs it would bind.
    want_bindings: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        pod: pod_with_claims("pod-a", &["pvc-a"]),
        nodes: vec![node("node-a", &[])],
        pvcs: Vec::new(),
        pvs: Vec::new(),
        classes: classes(),
        want_pre_filter: Status::success(),
        want_nodes: None,
        want_filter: vec![Status::success()],
        want_bindings: Vec::new(),
    }
}

fn cases() -> Vec<Case> {
    let two_nodes = || vec![node("node-a", &[]), node("node-b", &[])];
    let bind_conflict = || unresolvable(&[ERR_REASON_BIND_CONFLICT]);
    vec![
        Case { pod: pod("pod-a", &[]), want_pre_filter: Status::skip(), ..case("pod has no pvcs") },
        Case {
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a")],
            pvs: vec![with_phase(
                with_claim_ref(pv("pv-a", WAIT_SC, "1Gi"), "pvc-a", "uid-pvc-a"),
                "Bound",
            )],
            ..case("all bound")
        },
        Case {
            nodes: two_nodes(),
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a")],
            pvs: vec![with_phase(local_pv("pv-a", WAIT_SC, "1Gi", "node-a"), "Bound")],
            want_nodes: Some(vec!["node-a"]),
            want_filter: vec![Status::success(), unresolvable(&[ERR_REASON_NODE_CONFLICT])],
            ..case("bound local volume: its node fits, another node has a node affinity conflict")
        },
        Case {
            nodes: vec![node("node-a", &[("foo", "bar")]), node("node-b", &[("foo", "barbar")])],
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a")],
            pvs: vec![with_phase(
                with_affinity(pv("pv-a", WAIT_SC, "1Gi"), "foo", &["bar"]),
                "Bound",
            )],
            want_filter: vec![Status::success(), unresolvable(&[ERR_REASON_NODE_CONFLICT])],
            ..case("bound volume with label affinity does not narrow nodes but filters them")
        },
        Case {
            want_pre_filter: unresolvable(&[r#"persistentvolumeclaim "pvc-a" not found"#]),
            ..case("pvc does not exist")
        },
        Case {
            pod: pod_with_claims("pod-a", &["pvc-a", "pvc-b"]),
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a")],
            want_pre_filter: unresolvable(&[r#"persistentvolumeclaim "pvc-b" not found"#]),
            ..case("part of pvcs do not exist")
        },
        Case {
            pvcs: vec![{
                let mut c = pvc("pvc-a", WAIT_SC, "1Gi");
                c.metadata.deletion_timestamp =
                    Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
                c
            }],
            want_pre_filter: unresolvable(&[r#"persistentvolumeclaim "pvc-a" is being deleted"#]),
            ..case("pvc is being deleted")
        },
        Case {
            pvcs: vec![{
                let mut c = bound_pvc("pvc-a", WAIT_SC, "pv-a");
                c.status.as_mut().unwrap().phase = Some("Lost".into());
                c
            }],
            want_pre_filter: unresolvable(&[
                r#"persistentvolumeclaim "pvc-a" bound to non-existent persistentvolume "pv-a""#,
            ]),
            ..case("pv not found claim lost")
        },
        Case {
            pod: {
                let mut p = pod("pod-a", &[]);
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "scratch".into(),
                    ephemeral: Some(EphemeralVolumeSource::default()),
                    ..Default::default()
                }]);
                p
            },
            want_pre_filter: unresolvable(&[
                r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "pod-a-scratch""#,
            ]),
            ..case("ephemeral volume's claim not created yet")
        },
        Case {
            pod: {
                let mut p = pod("pod-a", &[]);
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "scratch".into(),
                    ephemeral: Some(EphemeralVolumeSource::default()),
                    ..Default::default()
                }]);
                p
            },
            pvcs: vec![{
                let mut c = bound_pvc("pod-a-scratch", WAIT_SC, "pv-a");
                c.metadata.owner_references = Some(vec![OwnerReference {
                    controller: Some(true),
                    uid: "someone-else".into(),
                    ..Default::default()
                }]);
                c
            }],
            want_pre_filter: unresolvable(&[
                "PVC default/pod-a-scratch was not created for pod default/pod-a (pod is not owner)",
            ]),
            ..case("ephemeral volume's claim owned by another pod")
        },
        Case {
            pod: {
                let mut p = pod("pod-a", &[]);
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "scratch".into(),
                    ephemeral: Some(EphemeralVolumeSource::default()),
                    ..Default::default()
                }]);
                p
            },
            pvcs: vec![{
                let mut c = bound_pvc("pod-a-scratch", WAIT_SC, "pv-a");
                c.metadata.owner_references = Some(vec![OwnerReference {
                    controller: Some(true),
                    uid: "uid-pod-a".into(),
                    ..Default::default()
                }]);
                c
            }],
            pvs: vec![with_phase(local_pv("pv-a", WAIT_SC, "1Gi", "node-a"), "Bound")],
            want_nodes: Some(vec!["node-a"]),
            ..case("ephemeral volume's claim owned by the pod and bound")
        },
        Case {
            pvcs: vec![pvc("pvc-a", IMMEDIATE_SC, "1Gi")],
            pvs: vec![pv("pv-a", IMMEDIATE_SC, "1Gi")],
            want_pre_filter: unresolvable(&[ERR_REASON_UNBOUND_IMMEDIATE]),
            ..case("immediate claims not bound")
        },
        Case {
            pvcs: vec![pvc("pvc-a", "", "1Gi")],
            pvs: vec![pv("pv-a", "", "1Gi")],
            want_pre_filter: unresolvable(&[ERR_REASON_UNBOUND_IMMEDIATE]),
            ..case("claim without a class binds immediately")
        },
        Case {
            pvcs: vec![pvc("pvc-a", "no-such-sc", "1Gi")],
            want_pre_filter: unresolvable(&[ERR_REASON_UNBOUND_IMMEDIATE]),
            ..case("claim of a class that does not exist binds immediately")
        },
        Case {
            pvcs: vec![pvc("pvc-a", "broken-sc", "1Gi")],
            classes: vec![storage_class("broken-sc", None)],
            want_pre_filter: Status::error(
                r#"VolumeBindingMode not set for StorageClass "broken-sc""#,
            ),
            ..case("class without a binding mode is an error")
        },
        Case {
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a")],
            want_filter: vec![unresolvable(&[ERR_REASON_PV_NOT_EXIST])],
            ..case("pv not found")
        },
        Case {
            nodes: vec![node("node-a", &[]), node("node-b", &[]), node("node-c", &[])],
            pvcs: vec![pvc("pvc-a", WAIT_SC, "50Gi")],
            pvs: vec![
                local_pv("pv-a-big", WAIT_SC, "200Gi", "node-a"),
                local_pv("pv-a-small", WAIT_SC, "60Gi", "node-a"),
                local_pv("pv-a-tiny", WAIT_SC, "10Gi", "node-a"),
                local_pv("pv-b", WAIT_SC, "100Gi", "node-b"),
            ],
            want_filter: vec![Status::success(), Status::success(), bind_conflict()],
            want_bindings: vec![
                ("node-a", vec![("pvc-a", "pv-a-small")]),
                ("node-b", vec![("pvc-a", "pv-b")]),
            ],
            ..case("unbound claim takes the smallest fitting volume on each node")
        },
        Case {
            pvcs: vec![{
                let mut c = pvc("pvc-a", WAIT_SC, "1Gi");
                c.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
                c
            }],
            pvs: vec![local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
            want_filter: vec![bind_conflict()],
            ..case("volume without the claim's access modes")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![local_pv("pv-a", "other-sc", "1Gi", "node-a")],
            want_filter: vec![bind_conflict()],
            ..case("volume of another class")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "2Gi")],
            pvs: vec![local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
            want_filter: vec![bind_conflict()],
            ..case("volume too small")
        },
        Case {
            pvcs: vec![{
                let mut c = pvc("pvc-a", WAIT_SC, "1Gi");
                c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
                c
            }],
            pvs: vec![local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
            want_filter: vec![bind_conflict()],
            ..case("volume of another volume mode")
        },
        Case {
            pvcs: vec![{
                let mut c = pvc("pvc-a", WAIT_SC, "1Gi");
                c.spec.as_mut().unwrap().selector = Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
                    ..Default::default()
                });
                c
            }],
            pvs: vec![local_pv("pv-hdd", WAIT_SC, "1Gi", "node-a"), {
                let mut v = local_pv("pv-ssd", WAIT_SC, "5Gi", "node-a");
                v.metadata.labels = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
                v
            }],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-ssd")])],
            ..case("claim selector picks a labelled volume over a smaller one")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![with_claim_ref(local_pv("pv-a", WAIT_SC, "1Gi", "node-a"), "pvc-other", "")],
            want_filter: vec![bind_conflict()],
            ..case("volume reserved for another claim")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![with_claim_ref(
                local_pv("pv-a", WAIT_SC, "1Gi", "node-a"),
                "pvc-a",
                "uid-old-pvc-a",
            )],
            want_filter: vec![bind_conflict()],
            ..case("volume reserved for an earlier claim of the same name")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "5Gi")],
            pvs: vec![
                with_claim_ref(local_pv("pv-pre", WAIT_SC, "100Gi", "node-a"), "pvc-a", ""),
                local_pv("pv-small", WAIT_SC, "10Gi", "node-a"),
            ],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-pre")])],
            ..case("volume pre-bound to the claim wins over a smaller one")
        },
        Case {
            nodes: two_nodes(),
            pvcs: vec![pvc("pvc-a", WAIT_SC, "5Gi")],
            pvs: vec![
                with_claim_ref(local_pv("pv-pre", WAIT_SC, "10Gi", "node-b"), "pvc-a", "uid-pvc-a"),
                local_pv("pv-other", WAIT_SC, "10Gi", "node-a"),
            ],
            want_filter: vec![bind_conflict(), Status::success()],
            want_bindings: vec![("node-b", vec![("pvc-a", "pv-pre")])],
            ..case("volume pre-bound to the claim confines it to the volume's node")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![
                with_phase(local_pv("pv-released", WAIT_SC, "1Gi", "node-a"), "Released"),
                with_phase(local_pv("pv-failed", WAIT_SC, "1Gi", "node-a"), "Failed"),
            ],
            want_filter: vec![bind_conflict()],
            ..case("released and failed volumes are not available")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![with_phase(local_pv("pv-new", WAIT_SC, "1Gi", "node-a"), "Pending")],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-new")])],
            ..case("a new volume is available without a PV controller to mark it so")
        },
        Case {
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![{
                let mut v = local_pv("pv-a", WAIT_SC, "1Gi", "node-a");
                v.metadata.deletion_timestamp =
                    Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
                v
            }],
            want_filter: vec![bind_conflict()],
            ..case("volume being deleted")
        },
        Case {
            pod: pod_with_claims("pod-a", &["pvc-a", "pvc-b"]),
            nodes: two_nodes(),
            pvcs: vec![pvc("pvc-a", WAIT_SC, "10Gi"), pvc("pvc-b", WAIT_SC, "10Gi")],
            pvs: vec![
                local_pv("pv-a-1", WAIT_SC, "10Gi", "node-a"),
                local_pv("pv-a-2", WAIT_SC, "10Gi", "node-a"),
                local_pv("pv-b-1", WAIT_SC, "10Gi", "node-b"),
            ],
            want_filter: vec![Status::success(), bind_conflict()],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-a-1"), ("pvc-b", "pv-a-2")])],
            ..case("two claims do not pick the same volume")
        },
        Case {
            pod: pod_with_claims("pod-a", &["pvc-big", "pvc-small"]),
            pvcs: vec![pvc("pvc-big", WAIT_SC, "50Gi"), pvc("pvc-small", WAIT_SC, "5Gi")],
            pvs: vec![
                local_pv("pv-100", WAIT_SC, "100Gi", "node-a"),
                local_pv("pv-10", WAIT_SC, "10Gi", "node-a"),
            ],
            want_bindings: vec![("node-a", vec![("pvc-small", "pv-10"), ("pvc-big", "pv-100")])],
            ..case("smaller claims choose first")
        },
        Case {
            pod: pod_with_claims("pod-a", &["pvc-a", "pvc-a"]),
            pvcs: vec![pvc("pvc-a", WAIT_SC, "1Gi")],
            pvs: vec![local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-a")])],
            ..case("a claim mounted twice needs one volume")
        },
        Case {
            pod: pod_with_claims("pod-a", &["pvc-a", "pvc-b"]),
            nodes: vec![node("node-a", &[("foo", "barbar")])],
            pvcs: vec![bound_pvc("pvc-a", WAIT_SC, "pv-a"), pvc("pvc-b", WAIT_SC, "1Gi")],
            pvs: vec![with_phase(
                with_affinity(pv("pv-a", WAIT_SC, "1Gi"), "foo", &["bar"]),
                "Bound",
            )],
            want_filter: vec![unresolvable(&[ERR_REASON_NODE_CONFLICT, ERR_REASON_BIND_CONFLICT])],
            ..case("bound and unbound unsatisfied")
        },
        Case {
            nodes: two_nodes(),
            pvcs: vec![{
                let mut c = pvc("pvc-a", "", "1Gi");
                c.spec.as_mut().unwrap().volume_name = Some("pv-a".into());
                c
            }],
            pvs: vec![local_pv("pv-a", "", "1Gi", "node-a"), local_pv("pv-b", "", "1Gi", "node-b")],
            want_filter: vec![Status::success(), bind_conflict()],
            want_bindings: vec![("node-a", vec![("pvc-a", "pv-a")])],
            ..case("claim pre-bound by the user to a free volume binds it on the volume's node")
        },
        Case {
            pvcs: vec![{
                let mut c = pvc("pvc-a", "", "1Gi");
                c.spec.as_mut().unwrap().volume_name = Some("pv-a".into());
                c
            }],
            pvs: vec![with_claim_ref(
                local_pv("pv-a", "", "1Gi", "node-a"),
                "pvc-other",
                "uid-pvc-other",
            )],
            want_pre_filter: unresolvable(&[ERR_REASON_UNBOUND_IMMEDIATE]),
            ..case("claim pre-bound by the user to a volume bound elsewhere stays unbound")
        },
    ]
}

fn binding_names(state: &CycleState, node: &str) -> Vec<(String, String)> {
    let s = state.read::<State>(NAME).unwrap();
    s.bindings_for(node)
        .map(|b| {
            b.iter()
                .map(|b| {
                    (b.pvc.metadata.name.clone().unwrap(), b.pv.metadata.name.clone().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn volume_binding_should_pre_filter_and_filter_as_kubernetes() {
    for c in cases() {
        let (plugin, api) = plugin();
        let snap = snapshot(&c.nodes, &c.pvcs, &c.pvs, &c.classes);
        let pod = pod_info(c.pod.clone());
        let mut state = CycleState::default();
        let (result, status) = plugin.pre_filter(&mut state, &pod, &snap);
        assert_eq!(status, c.want_pre_filter, "{}: pre-filter", c.name);
        let want_nodes =
            c.want_nodes.as_ref().map(|n| n.iter().map(|s| s.to_string()).collect::<HashSet<_>>());
        assert_eq!(result.and_then(|r| r.node_names), want_nodes, "{}: pre-filter nodes", c.name);
        if !status.is_success() {
            continue;
        }
        assert_eq!(c.want_filter.len(), snap.nodes.len(), "{}: one expectation per node", c.name);
        for (n, want) in snap.nodes.iter().zip(&c.want_filter) {
            assert_eq!(&plugin.filter(&state, &pod, n), want, "{}: filter on {}", c.name, n.name);
        }
        for n in &snap.nodes {
            let want: Vec<(String, String)> = c
                .want_bindings
                .iter()
                .find(|(node, _)| *node == n.name)
                .map(|(_, b)| b.iter().map(|(c, v)| (c.to_string(), v.to_string())).collect())
                .unwrap_or_default();
            assert_eq!(binding_names(&state, &n.name), want, "{}: bindings on {}", c.name, n.name);
        }
        assert!(api.writes().is_empty(), "{}: the scheduling cycle writes nothing", c.name);
    }
}

/// Schedule `pod` onto `node`: pre-filter, filter, reserve. Returns the cycle state.
fn schedule(
    plugin: &VolumeBinding,
    snap: &Snapshot,
    pod: &PodInfo,
    node: &str,
) -> (CycleState, Status) {
    let mut state = CycleState::default();
    let (_, status) = plugin.pre_filter(&mut state, pod, snap);
    assert!(status.is_success(), "pre-filter: {status:?}");
    let status = plugin.filter(&state, pod, snap.get(node).unwrap());
    if status.is_success() {
        assert!(plugin.reserve(&mut state, pod, node).is_success());
    }
    (state, status)
}

#[test]
fn volume_binding_should_keep_a_reserved_volume_from_other_pods_until_unreserved() {
    let (plugin, _) = plugin();
    let snap = snapshot(
        &[node("node-a", &[])],
        &[pvc("pvc-a", WAIT_SC, "1Gi"), pvc("pvc-b", WAIT_SC, "1Gi")],
        &[local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
        &classes(),
    );
    let first = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let second = pod_info(pod_with_claims("pod-b", &["pvc-b"]));

    let (mut first_state, status) = schedule(&plugin, &snap, &first, "node-a");
    assert!(status.is_success());
    let (_, status) = schedule(&plugin, &snap, &second, "node-a");
    assert_eq!(status, unresolvable(&[ERR_REASON_BIND_CONFLICT]), "the volume is assumed taken");

    // The same claim, in another pod (a shared claim), finds its assumed volume.
    let sharer = pod_info(pod_with_claims("pod-c", &["pvc-a"]));
    let (mut sharer_state, status) = schedule(&plugin, &snap, &sharer, "node-a");
    assert!(status.is_success());
    assert_eq!(binding_names(&sharer_state, "node-a"), [("pvc-a".into(), "pv-a".into())]);
    plugin.unreserve(&mut sharer_state, &sharer, "node-a");

    plugin.unreserve(&mut first_state, &first, "node-a");
    plugin.unreserve(&mut first_state, &first, "node-a"); // idempotent
    let (state, status) = schedule(&plugin, &snap, &second, "node-a");
    assert!(status.is_success(), "unreserve frees the volume: {status:?}");
    assert_eq!(binding_names(&state, "node-a"), [("pvc-b".into(), "pv-a".into())]);
}

#[test]
fn volume_binding_should_drop_an_assumption_once_the_api_shows_the_volume_changed() {
    let (plugin, _) = plugin();
    let claims = [pvc("pvc-a", WAIT_SC, "1Gi"), pvc("pvc-b", WAIT_SC, "1Gi")];
    let volume = local_pv("pv-a", WAIT_SC, "1Gi", "node-a");
    let snap = snapshot(&[node("node-a", &[])], &claims, std::slice::from_ref(&volume), &classes());
    let first = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let second = pod_info(pod_with_claims("pod-b", &["pvc-b"]));
    let (_, status) = schedule(&plugin, &snap, &first, "node-a");
    assert!(status.is_success());

    // The binding failed elsewhere and the volume came back changed but still free.
    let mut changed = volume;
    changed.metadata.resource_version = Some("6".into());
    let snap = snapshot(&[node("node-a", &[])], &claims, &[changed], &classes());
    let (_, status) = schedule(&plugin, &snap, &second, "node-a");
    assert!(status.is_success(), "{status:?}");
}

#[test]
fn volume_binding_should_write_both_sides_of_the_binding_in_pre_bind() {
    let (plugin, api) = plugin();
    let snap = snapshot(
        &[node("node-a", &[])],
        &[pvc("pvc-a", WAIT_SC, "5Gi")],
        &[local_pv("pv-a", WAIT_SC, "10Gi", "node-a")],
        &classes(),
    );
    let pod = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let (state, status) = schedule(&plugin, &snap, &pod, "node-a");
    assert!(status.is_success());
    assert_eq!(block_on(plugin.pre_bind(&state, &pod, "node-a")), Status::success());

    let writes = api.writes();
    assert_eq!(writes.len(), 4, "{writes:#?}");
    let Write::Pv(pv) = &writes[0] else { panic!("first the volume: {:?}", writes[0]) };
    let claim_ref = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(
        claim_ref,
        &ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some("default".into()),
            name: Some("pvc-a".into()),
            uid: Some("uid-pvc-a".into()),
            resource_version: Some("10".into()),
            field_path: None,
        }
    );
    assert_eq!(pv.metadata.annotations.as_ref().unwrap()[ANN_BOUND_BY_CONTROLLER], "yes");
    assert_eq!(pv.metadata.resource_version.as_deref(), Some("5"), "the version scheduled on");

    let Write::PvStatus(pv) = &writes[1] else { panic!("then its status: {:?}", writes[1]) };
    let status = pv.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
    assert!(status.last_phase_transition_time.is_some());
    assert_eq!(pv.metadata.resource_version.as_deref(), Some("6"), "on top of the spec write");

    let Write::Pvc(claim) = &writes[2] else { panic!("then the claim: {:?}", writes[2]) };
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("pv-a"));
    let ann = claim.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[ANN_BIND_COMPLETED], "yes");
    assert_eq!(ann[ANN_BOUND_BY_CONTROLLER], "yes");
    assert_eq!(claim.metadata.resource_version.as_deref(), Some("10"));

    let Write::PvcStatus(claim) = &writes[3] else { panic!("then its status: {:?}", writes[3]) };
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(status.capacity, Some(quantities(&[("storage", "10Gi")])));
    assert_eq!(claim.metadata.resource_version.as_deref(), Some("11"));
}

#[test]
fn volume_binding_should_complete_a_user_pre_bound_claim_as_the_pv_controller_would() {
    let (plugin, api) = plugin();
    let mut claim = pvc("pvc-a", "", "1Gi");
    claim.spec.as_mut().unwrap().volume_name = Some("pv-a".into());
    let snap =
        snapshot(&[node("node-a", &[])], &[claim], &[local_pv("pv-a", "", "1Gi", "node-a")], &[]);
    let pod = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let (state, status) = schedule(&plugin, &snap, &pod, "node-a");
    assert!(status.is_success());
    assert!(block_on(plugin.pre_bind(&state, &pod, "node-a")).is_success());

    let writes = api.writes();
    assert_eq!(writes.len(), 4, "{writes:#?}");
    let Write::Pvc(claim) = &writes[2] else { panic!("{:?}", writes[2]) };
    let ann = claim.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
    assert!(!ann.contains_key(ANN_BOUND_BY_CONTROLLER), "the user chose the volume");
}

#[test]
fn volume_binding_should_write_only_what_is_missing() {
    let (plugin, api) = plugin();
    // An earlier attempt wrote the volume side, then failed on the claim.
    let volume = with_phase(
        with_claim_ref(local_pv("pv-a", WAIT_SC, "1Gi", "node-a"), "pvc-a", "uid-pvc-a"),
        "Bound",
    );
    let snap =
        snapshot(&[node("node-a", &[])], &[pvc("pvc-a", WAIT_SC, "1Gi")], &[volume], &classes());
    let pod = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let (state, status) = schedule(&plugin, &snap, &pod, "node-a");
    assert!(status.is_success());
    assert!(block_on(plugin.pre_bind(&state, &pod, "node-a")).is_success());
    let writes = api.writes();
    assert!(
        matches!(writes.as_slice(), [Write::Pvc(_), Write::PvcStatus(_)]),
        "only the claim side: {writes:#?}"
    );
}

#[test]
fn volume_binding_should_fail_pre_bind_with_an_error_on_conflict() {
    let (plugin, api) = plugin();
    *api.conflict_on.lock().unwrap() = Some("pvc");
    let snap = snapshot(
        &[node("node-a", &[])],
        &[pvc("pvc-a", WAIT_SC, "1Gi")],
        &[local_pv("pv-a", WAIT_SC, "1Gi", "node-a")],
        &classes(),
    );
    let pod = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let (state, _) = schedule(&plugin, &snap, &pod, "node-a");
    let status = block_on(plugin.pre_bind(&state, &pod, "node-a"));
    assert_eq!(status.code, Code::Error);
    assert!(status.message().starts_with("binding volumes: conflict updating"), "{status:?}");
    assert!(
        matches!(api.writes().as_slice(), [Write::Pv(_), Write::PvStatus(_)]),
        "stops at the failed write"
    );
}

#[test]
fn volume_binding_should_not_write_when_every_claim_is_bound() {
    let (plugin, api) = plugin();
    let snap = snapshot(
        &[node("node-a", &[])],
        &[bound_pvc("pvc-a", WAIT_SC, "pv-a")],
        &[with_phase(local_pv("pv-a", WAIT_SC, "1Gi", "node-a"), "Bound")],
        &classes(),
    );
    let with_claims = pod_info(pod_with_claims("pod-a", &["pvc-a"]));
    let (state, status) = schedule(&plugin, &snap, &with_claims, "node-a");
    assert!(status.is_success());
    assert!(block_on(plugin.pre_bind(&state, &with_claims, "node-a")).is_success());
    // A pod without claims has no state at all.
    let no_claims = pod_info(pod("pod-b", &[]));
    assert!(block_on(plugin.pre_bind(&CycleState::default(), &no_claims, "node-a")).is_success());
    assert!(api.writes().is_empty());
}

#[test]
fn volume_binding_should_requeue_on_volume_claim_class_and_node_events() {
    let (plugin, _) = plugin();
    let events = plugin.events();
    for resource in [
        Resource::PersistentVolume,
        Resource::PersistentVolumeClaim,
        Resource::StorageClass,
        Resource::Node,
    ] {
        for action in [Action::Add, Action::Update] {
            assert!(
                events.contains(&ClusterEvent::new(resource, action)),
                "{resource:?} {action:?}"
            );
        }
    }
    assert_eq!(events.len(), 8);
}
