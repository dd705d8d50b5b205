//! Cases modelled on Kubernetes' `default_preemption_test.go` (`TestPostFilter`,
//! `TestSelectBestCandidate`, `TestPodEligibleToPreemptOthers`, `TestDryRunPreemption`),
//! with a resources filter and a state-keeping "conflict" plugin defined here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::framework::{FilterPlugin, PreFilterPlugin, PreFilterResult};
use crate::types::testing::{node, node_info, pod};

// ---------------------------------------------------------------------------------------
// Test plugins

/// Requested + pod <= allocatable for cpu and pod count (a cut-down NodeResourcesFit).
struct FitResources;

impl Plugin for FitResources {
    fn name(&self) -> &'static str {
        "TestFit"
    }
}

impl FilterPlugin for FitResources {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
            reasons.push("Too many pods".to_string());
        }
        if pod.requests.milli_cpu > 0
            && node.requested.milli_cpu + pod.requests.milli_cpu > node.allocatable.milli_cpu
        {
            reasons.push("Insufficient cpu".to_string());
        }
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: Code::Unschedulable,
                reasons: reasons.into_iter().map(Into::into).collect(),
                plugin: "",
            }
        }
    }
}

/// Rejects a node running a pod labelled `conflict=true`, counting them in CycleState
/// (like inter-pod anti-affinity), so preemption must go through add/remove pod.
struct Conflict;

const CONFLICT: &str = "TestConflict";

#[derive(Clone, Default)]
struct ConflictState(HashMap<String, usize>);

fn conflicting(p: &PodInfo) -> bool {
    p.labels.get("conflict").is_some_and(|v| v == "true")
}

impl Plugin for Conflict {
    fn name(&self) -> &'static str {
        CONFLICT
    }
}

impl PreFilterPlugin for Conflict {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let mut counts = HashMap::new();
        for n in &snapshot.nodes {
            counts.insert(n.name.clone(), n.pods.iter().filter(|p| conflicting(p)).count());
        }
        state.write(CONFLICT, ConflictState(counts));
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<ConflictState>(CONFLICT)
            && conflicting(added)
        {
            *s.0.entry(node.name.clone()).or_default() += 1;
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<ConflictState>(CONFLICT)
            && conflicting(removed)
        {
            let n = s.0.entry(node.name.clone()).or_default();
            *n = n.saturating_sub(1);
        }
        Status::success()
    }
}

impl FilterPlugin for Conflict {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        match state.read::<ConflictState>(CONFLICT) {
            Some(s) if s.0.get(&node.name).copied().unwrap_or(0) > 0 => {
                Status::unschedulable("node(s) had conflicting pods")
            }
            Some(_) => Status::success(),
            None => Status::error("conflict state missing"),
        }
    }
}

fn framework() -> Framework {
    let mut f = Framework::empty("default-scheduler");
    let conflict = Arc::new(Conflict);
    f.pre_filter.push(conflict.clone());
    f.filter.push(Arc::new(FitResources));
    f.filter.push(conflict);
    f
}

// ---------------------------------------------------------------------------------------
// Fake API

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Condition { pod: String, status: String, reason: String, message: String },
    Delete(String),
    Event { pod: String, message: String },
    Nominate { pod: String, node: Option<String> },
}

#[derive(Default)]
struct FakeApi {
    calls: Mutex<Vec<Call>>,
    /// Node to the pods nominated to it.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Pods the fake answers NotFound for.
    gone: HashSet<String>,
    /// Fail every delete with a server error.
    fail_delete: bool,
}

impl FakeApi {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn push(&self, c: Call) {
        self.calls.lock().expect("calls").push(c);
    }

    fn answer(&self, action: &'static str, pod: &Pod) -> Result<(), PreemptionError> {
        let name = name_of(pod);
        if self.gone.contains(&name) {
            return Err(PreemptionError::NotFound(name));
        }
        if self.fail_delete && action == "delete" {
            return Err(PreemptionError::Api {
                action,
                pod: name,
                source: Box::new(kube::Error::LinesCodecMaxLineLengthExceeded),
            });
        }
        Ok(())
    }

    fn deleted(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .calls()
            .into_iter()
            .filter_map(|c| if let Call::Delete(p) = c { Some(p) } else { None })
            .collect();
        d.sort();
        d
    }
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

impl PreemptionApi for FakeApi {
    fn patch_condition<'a>(
        &'a self,
        pod: &'a Pod,
        condition: &'a PodCondition,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            self.answer("patch", pod)?;
            self.push(Call::Condition {
                pod: name_of(pod),
                status: condition.status.clone(),
                reason: condition.reason.clone().unwrap_or_default(),
                message: condition.message.clone().unwrap_or_default(),
            });
            assert_eq!(condition.type_, DISRUPTION_TARGET);
            Ok(())
        })
    }

    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            self.answer("delete", pod)?;
            self.push(Call::Delete(name_of(pod)));
            Ok(())
        })
    }

    fn set_nominated_node<'a>(
        &'a self,
        pod: &'a Pod,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), PreemptionError>> {
        Box::pin(async move {
            self.answer("nominate", pod)?;
            self.push(Call::Nominate { pod: name_of(pod), node: node.map(str::to_string) });
            Ok(())
        })
    }

    fn record_preempted(&self, victim: &Pod, message: &str) {
        self.push(Call::Event { pod: name_of(victim), message: message.to_string() });
    }

    fn nominated_pods(&self, node: &str) -> Vec<Arc<PodInfo>> {
        self.nominated.get(node).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Builders

const LOW: i32 = 0;
const MID: i32 = 100;
const HIGH: i32 = 1000;

/// A pod with this priority requesting `cpu`.
fn p(name: &str, cpu: &str, priority: i32) -> Pod {
    let mut pod = pod(name, &[("cpu", cpu)]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.priority = Some(priority);
    }
    pod
}

/// Started `secs` seconds after the epoch (a smaller number ran longer).
fn started(mut pod: Pod, secs: i64) -> Pod {
    let t = Timestamp::from_second(secs).expect("timestamp");
    pod.status.get_or_insert_with(PodStatus::default).start_time = Some(Time(t));
    pod
}

fn labelled(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata.labels.get_or_insert_with(Default::default).insert(key.into(), value.into());
    pod
}

fn nominated_to(mut pod: Pod, node: &str) -> Pod {
    pod.status.get_or_insert_with(PodStatus::default).nominated_node_name = Some(node.into());
    pod
}

/// Being deleted after an earlier preemption.
fn preempted(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    pod.status.get_or_insert_with(PodStatus::default).conditions = Some(vec![PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(PREEMPTION_BY_SCHEDULER.into()),
        message: Some("default-scheduler: preempting to accommodate a higher priority pod".into()),
        ..Default::default()
    }]);
    pod
}

fn never(mut pod: Pod) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.preemption_policy = Some("Never".into());
    }
    pod
}

/// A node with `cpu` cores and room for 110 pods.
fn n(name: &str, cpu: &str) -> Node {
    node(name, &[("cpu", cpu), ("pods", "110")])
}

fn pdb(name: &str, app: &str, allowed: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            ..Default::default()
        }),
    }
}

fn snapshot(nodes: Vec<(Node, Vec<Pod>)>, pdbs: Vec<PodDisruptionBudget>) -> Arc<Snapshot> {
    let infos = nodes
        .into_iter()
        .map(|(node, pods)| {
            let node_name = node.metadata.name.clone();
            let pods = pods
                .into_iter()
                .map(|mut p| {
                    if let Some(spec) = p.spec.as_mut() {
                        spec.node_name = node_name.clone();
                    }
                    p
                })
                .collect();
            node_info(node, pods)
        })
        .collect();
    let mut snap = Snapshot::from_nodes(infos);
    snap.listers.pdbs = Arc::new(
        pdbs.into_iter()
            .map(|p| {
                (format!("default/{}", p.metadata.name.clone().unwrap_or_default()), Arc::new(p))
            })
            .collect(),
    );
    Arc::new(snap)
}

// ---------------------------------------------------------------------------------------
// PostFilter, end to end over the fake API

struct Case {
    name: &'static str,
    nodes: Vec<(Node, Vec<Pod>)>,
    pdbs: Vec<PodDisruptionBudget>,
    preemptor: Pod,
    /// Nodes the filters rejected as UnschedulableAndUnresolvable (e.g. node affinity).
    unresolvable: Vec<&'static str>,
    /// Pending pods nominated to a node.
    nominated: Vec<(&'static str, Pod)>,
    want_code: Code,
    /// Empty for Success.
    want_message: &'static str,
    /// `None`: no result; `Some(None)`: a result that clears the nomination.
    want_result: Option<Option<&'static str>>,
    want_deleted: Vec<&'static str>,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            nodes: Vec::new(),
            pdbs: Vec::new(),
            preemptor: p("preemptor", "1", HIGH),
            unresolvable: Vec::new(),
            nominated: Vec::new(),
            want_code: Code::Success,
            want_message: "",
            want_result: None,
            want_deleted: Vec::new(),
        }
    }
}

struct Outcome {
    result: Option<PostFilterResult>,
    status: Status,
    api: Arc<FakeApi>,
}

async fn run(case: Case) -> Outcome {
    let snap = snapshot(case.nodes, case.pdbs);
    let fw = framework();
    let pod = Arc::new(PodInfo::new(Arc::new(case.preemptor)));
    let mut state = CycleState::default();
    let (_, status) = fw.run_pre_filter(&mut state, &pod, &snap);
    assert!(status.is_success(), "{}: pre-filter {status:?}", case.name);

    let mut filtered = NodeStatuses::new();
    for node in &snap.nodes {
        let status = if case.unresolvable.contains(&node.name.as_str()) {
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector")
        } else {
            fw.run_filter(&state, &pod, node)
        };
        assert!(status.is_rejected(), "{}: the pod fits on {} already", case.name, node.name);
        filtered.insert(node.name.clone(), status);
    }

    let mut api = FakeApi::default();
    for (node, pod) in case.nominated {
        api.nominated
            .entry(node.to_string())
            .or_default()
            .push(Arc::new(PodInfo::new(Arc::new(pod))));
    }
    let api = Arc::new(api);
    let mut plugin = DefaultPreemption::new(api.clone());
    plugin.fixed_offset = Some(0);
    let before = state.read::<ConflictState>(CONFLICT).map(|s| s.0.clone());
    let (result, status) = plugin.post_filter(&state, &pod, &snap, &fw, &filtered).await;
    assert_eq!(
        state.read::<ConflictState>(CONFLICT).map(|s| s.0.clone()),
        before,
        "{}: the dry run must work on copies of the cycle state",
        case.name
    );
    Outcome { result, status, api }
}

#[tokio::test]
async fn default_preemption_should_post_filter_like_kubernetes() {
    let cases = vec![
        Case {
            name: "one low-priority victim is preempted",
            nodes: vec![(n("node1", "1"), vec![p("low", "1", LOW)])],
            want_result: Some(Some("node1")),
            want_deleted: vec!["low"],
            ..Default::default()
        },
        Case {
            name: "the node whose highest victim has the lower priority wins over fewer victims",
            nodes: vec![
                (n("node1", "1"), vec![p("mid", "1", MID)]),
                (n("node2", "1"), vec![p("low1", "500m", LOW), p("low2", "500m", LOW)]),
            ],
            want_result: Some(Some("node2")),
            want_deleted: vec!["low1", "low2"],
            ..Default::default()
        },
        Case {
            name: "with equal priorities the node with the smaller priority sum wins",
            nodes: vec![
                (n("node1", "1"), vec![p("a1", "500m", MID), p("a2", "500m", MID)]),
                (n("node2", "1"), vec![p("b1", "1", MID)]),
            ],
            want_result: Some(Some("node2")),
            want_deleted: vec!["b1"],
            ..Default::default()
        },
        Case {
            name: "a PDB-protected victim is avoided when another node works",
            nodes: vec![
                (n("node1", "1"), vec![labelled(p("db", "1", LOW), "app", "db")]),
                (n("node2", "1"), vec![p("batch", "1", MID)]),
            ],
            pdbs: vec![pdb("db", "db", 0)],
            want_result: Some(Some("node2")),
            want_deleted: vec!["batch"],
            ..Default::default()
        },
        Case {
            name: "a PDB is violated when no other node works",
            nodes: vec![(n("node1", "1"), vec![labelled(p("db", "1", LOW), "app", "db")])],
            pdbs: vec![pdb("db", "db", 0)],
            want_result: Some(Some("node1")),
            want_deleted: vec!["db"],
            ..Default::default()
        },
        Case {
            name: "a PDB with disruptions left does not protect",
            nodes: vec![
                (n("node1", "1"), vec![labelled(p("db", "1", LOW), "app", "db")]),
                (n("node2", "1"), vec![p("batch", "1", MID)]),
            ],
            pdbs: vec![pdb("db", "db", 1)],
            want_result: Some(Some("node1")),
            want_deleted: vec!["db"],
            ..Default::default()
        },
        Case {
            name: "nothing to preempt among pods of equal priority",
            nodes: vec![(n("node1", "1"), vec![p("peer", "1", HIGH)])],
            want_code: Code::Unschedulable,
            want_message: "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            want_result: Some(None),
            ..Default::default()
        },
        Case {
            name: "unresolvable nodes are counted as not helpful",
            nodes: vec![
                (n("node1", "1"), vec![p("peer", "1", HIGH)]),
                (n("node2", "1"), vec![p("low", "1", LOW)]),
            ],
            unresolvable: vec!["node2"],
            want_code: Code::Unschedulable,
            want_message: "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.",
            want_result: Some(None),
            ..Default::default()
        },
        Case {
            name: "unresolvable nodes are skipped for one where preemption helps",
            nodes: vec![
                (n("node1", "1"), vec![p("lowest", "1", LOW)]),
                (n("node2", "1"), vec![p("mid", "1", MID)]),
            ],
            unresolvable: vec!["node1"],
            want_result: Some(Some("node2")),
            want_deleted: vec!["mid"],
            ..Default::default()
        },
        Case {
            name: "a node too small even when emptied keeps its filter's reason",
            nodes: vec![(n("node1", "1"), vec![p("low", "500m", LOW)])],
            preemptor: p("preemptor", "2", HIGH),
            want_code: Code::Unschedulable,
            want_message: "preemption: 0/1 nodes are available: 1 Insufficient cpu.",
            want_result: Some(None),
            ..Default::default()
        },
        Case {
            name: "preemptionPolicy Never is not eligible",
            nodes: vec![(n("node1", "1"), vec![p("low", "1", LOW)])],
            preemptor: never(p("preemptor", "1", HIGH)),
            want_code: Code::Unschedulable,
            want_message: "preemption: not eligible due to preemptionPolicy=Never.",
            ..Default::default()
        },
        Case {
            name: "a victim of an earlier preemption still terminating on the nominated node: wait",
            nodes: vec![(
                n("node1", "2"),
                vec![preempted(p("going", "1", LOW)), p("low", "1", LOW)],
            )],
            preemptor: nominated_to(p("preemptor", "1", HIGH), "node1"),
            want_code: Code::Unschedulable,
            want_message: "preemption: not eligible due to a terminating pod on the nominated node.",
            ..Default::default()
        },
        Case {
            name: "a terminating pod on a nominated node that is now unresolvable does not block",
            nodes: vec![
                (n("node1", "2"), vec![preempted(p("going", "1", LOW)), p("low", "1", LOW)]),
                (n("node2", "1"), vec![p("other", "1", LOW)]),
            ],
            unresolvable: vec!["node1"],
            preemptor: nominated_to(p("preemptor", "1", HIGH), "node1"),
            want_result: Some(Some("node2")),
            want_deleted: vec!["other"],
            ..Default::default()
        },
        Case {
            name: "reprieve keeps the pods that still fit, the most important first",
            nodes: vec![(
                n("node1", "3"),
                vec![
                    started(p("old", "1", LOW), 100),
                    started(p("young", "1", LOW), 300),
                    started(p("middle", "1", LOW), 200),
                ],
            )],
            want_result: Some(Some("node1")),
            want_deleted: vec!["young"],
            ..Default::default()
        },
        Case {
            name: "reprieve evicts the lowest priority first",
            nodes: vec![(n("node1", "3"), vec![p("p5", "1", 5), p("p1", "1", 1), p("p3", "1", 3)])],
            want_result: Some(Some("node1")),
            want_deleted: vec!["p1"],
            ..Default::default()
        },
        Case {
            name: "a conflicting pod is removed through the pre-filter state",
            nodes: vec![(
                n("node1", "4"),
                vec![
                    labelled(p("conflicting", "100m", LOW), "conflict", "true"),
                    p("fine", "100m", LOW),
                ],
            )],
            want_result: Some(Some("node1")),
            want_deleted: vec!["conflicting"],
            ..Default::default()
        },
    ];

    for case in cases {
        let name = case.name;
        let want_deleted: Vec<String> = case.want_deleted.iter().map(|s| s.to_string()).collect();
        let (want_code, want_message, want_result) =
            (case.want_code, case.want_message, case.want_result);
        let out = run(case).await;
        assert_eq!(out.status.code, want_code, "{name}: {:?}", out.status);
        assert_eq!(out.status.message(), want_message, "{name}");
        assert_eq!(out.status.plugin, NAME, "{name}");
        let got = out.result.as_ref().map(|r| r.nominated_node.as_deref());
        assert_eq!(got, want_result, "{name}");
        assert_eq!(out.api.deleted(), want_deleted, "{name}");

        let calls = out.api.calls();
        for victim in &want_deleted {
            assert!(
                calls.contains(&Call::Condition {
                    pod: victim.clone(),
                    status: "True".into(),
                    reason: "PreemptionByScheduler".into(),
                    message: "default-scheduler: preempting to accommodate a higher priority pod"
                        .into(),
                }),
                "{name}: {victim} has no DisruptionTarget condition: {calls:?}"
            );
            let node = want_result.flatten().unwrap_or_default();
            assert!(
                calls.contains(&Call::Event {
                    pod: victim.clone(),
                    message: format!("Preempted by pod uid-preemptor on node {node}"),
                }),
                "{name}: no Preempted event on {victim}: {calls:?}"
            );
        }
        match want_result.flatten() {
            Some(node) => assert!(
                calls.contains(&Call::Nominate {
                    pod: "preemptor".into(),
                    node: Some(node.to_string())
                }),
                "{name}: preemptor not nominated: {calls:?}"
            ),
            None => assert!(calls.is_empty(), "{name}: unexpected API calls {calls:?}"),
        }
    }
}

#[tokio::test]
async fn default_preemption_should_clear_lower_priority_nominations_on_the_node() {
    let out = run(Case {
        name: "nominations",
        nodes: vec![(n("node1", "1"), vec![p("low", "1", LOW)])],
        nominated: vec![
            ("node1", nominated_to(p("waiting-low", "1", MID), "node1")),
            ("node1", nominated_to(p("waiting-high", "1", HIGH), "node1")),
            // Nominated only in the scheduler's memory: nothing to clear in the API.
            ("node1", p("memory-only", "1", LOW)),
        ],
        ..Default::default()
    })
    .await;
    assert!(out.status.is_success(), "{:?}", out.status);
    let nominations: Vec<Call> =
        out.api.calls().into_iter().filter(|c| matches!(c, Call::Nominate { .. })).collect();
    assert_eq!(
        nominations,
        vec![
            Call::Nominate { pod: "waiting-low".into(), node: None },
            Call::Nominate { pod: "preemptor".into(), node: Some("node1".into()) },
        ]
    );
}

#[tokio::test]
async fn default_preemption_should_not_renominate_a_pod_already_nominated_there() {
    // The nominated node is Unschedulable and holds no terminating victim: preempt again.
    let out = run(Case {
        name: "renominate",
        nodes: vec![(n("node1", "1"), vec![p("low", "1", LOW)])],
        preemptor: nominated_to(p("preemptor", "1", HIGH), "node1"),
        ..Default::default()
    })
    .await;
    assert!(out.status.is_success(), "{:?}", out.status);
    assert_eq!(out.api.deleted(), vec!["low".to_string()]);
    assert!(!out.api.calls().iter().any(|c| matches!(c, Call::Nominate { .. })));
}

#[tokio::test]
async fn default_preemption_should_skip_api_calls_for_victims_already_terminating() {
    let mut going = p("going", "1", LOW);
    going.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let out = run(Case {
        name: "terminating victim",
        nodes: vec![(n("node1", "2"), vec![going, p("low", "1", LOW)])],
        preemptor: p("preemptor", "2", HIGH),
        ..Default::default()
    })
    .await;
    assert!(out.status.is_success(), "{:?}", out.status);
    assert_eq!(out.result.and_then(|r| r.nominated_node).as_deref(), Some("node1"));
    assert_eq!(out.api.deleted(), vec!["low".to_string()]);
}

#[tokio::test]
async fn default_preemption_should_count_a_vanished_victim_as_preempted() {
    let snap = snapshot(vec![(n("node1", "1"), vec![p("low", "1", LOW)])], Vec::new());
    let fw = framework();
    let pod = Arc::new(PodInfo::new(Arc::new(p("preemptor", "1", HIGH))));
    let mut state = CycleState::default();
    let _ = fw.run_pre_filter(&mut state, &pod, &snap);
    let filtered: NodeStatuses =
        [("node1", Status::unschedulable("Insufficient cpu"))].into_iter().collect();
    let api = Arc::new(FakeApi { gone: HashSet::from(["low".to_string()]), ..Default::default() });
    let plugin = DefaultPreemption::new(api.clone());
    let (result, status) = plugin.post_filter(&state, &pod, &snap, &fw, &filtered).await;
    assert!(status.is_success(), "{status:?}");
    assert_eq!(result.and_then(|r| r.nominated_node).as_deref(), Some("node1"));
    // Gone before the condition was added: no delete and no event.
    assert_eq!(
        api.calls(),
        vec![Call::Nominate { pod: "preemptor".into(), node: Some("node1".into()) }]
    );
}

#[tokio::test]
async fn default_preemption_should_return_an_error_when_a_victim_cannot_be_deleted() {
    let snap = snapshot(vec![(n("node1", "1"), vec![p("low", "1", LOW)])], Vec::new());
    let fw = framework();
    let pod = Arc::new(PodInfo::new(Arc::new(p("preemptor", "1", HIGH))));
    let mut state = CycleState::default();
    let _ = fw.run_pre_filter(&mut state, &pod, &snap);
    let filtered: NodeStatuses =
        [("node1", Status::unschedulable("Insufficient cpu"))].into_iter().collect();
    let api = Arc::new(FakeApi { fail_delete: true, ..Default::default() });
    let plugin = DefaultPreemption::new(api.clone());
    let (result, status) = plugin.post_filter(&state, &pod, &snap, &fw, &filtered).await;
    assert_eq!(status.code, Code::Error);
    assert!(status.message().starts_with("preemption: delete pod low: "), "{status:?}");
    assert!(result.is_none(), "the nomination is kept on a transient error");
    assert!(!api.calls().iter().any(|c| matches!(c, Call::Nominate { .. })));
}

// ---------------------------------------------------------------------------------------
// Pieces

fn candidate(node: &str, victims: Vec<Pod>, num_pdb_violations: usize) -> Candidate {
    Candidate {
        node: node.into(),
        victims: victims.into_iter().map(|v| Arc::new(PodInfo::new(Arc::new(v)))).collect(),
        num_pdb_violations,
    }
}

#[test]
fn pick_one_node_should_follow_kubernetes_order() {
    let now = 1_000_000 * 1_000_000_000i128;
    let cases: Vec<(&str, Vec<Candidate>, &str)> = vec![
        (
            "fewest PDB violations",
            vec![
                candidate("a", vec![p("a1", "1", LOW)], 1),
                candidate("b", vec![p("b1", "1", MID)], 0),
            ],
            "b",
        ),
        (
            "lowest highest-priority victim",
            vec![
                candidate("a", vec![p("a1", "1", MID)], 0),
                candidate("b", vec![p("b1", "1", LOW), p("b2", "1", LOW), p("b3", "1", LOW)], 0),
            ],
            "b",
        ),
        (
            "smallest sum of priorities",
            vec![
                candidate("a", vec![p("a1", "1", MID), p("a2", "1", 50)], 0),
                candidate("b", vec![p("b1", "1", MID), p("b2", "1", 10)], 0),
            ],
            "b",
        ),
        (
            "negative priorities: fewer victims still cost less",
            vec![
                candidate("a", vec![p("a1", "1", -10), p("a2", "1", -10)], 0),
                candidate("b", vec![p("b1", "1", -10)], 0),
            ],
            "b",
        ),
        (
            "fewest victims",
            vec![
                candidate("a", vec![p("a1", "1", MID), p("a2", "1", 0), p("a3", "1", 0)], 0),
                candidate("b", vec![p("b1", "1", MID), p("b2", "1", 0)], 0),
            ],
            "b",
        ),
        (
            "latest start of the highest-priority victims",
            vec![
                candidate(
                    "a",
                    vec![started(p("a1", "1", MID), 100), started(p("a2", "1", LOW), 900)],
                    0,
                ),
                candidate(
                    "b",
                    vec![started(p("b1", "1", MID), 500), started(p("b2", "1", LOW), 10)],
                    0,
                ),
            ],
            "b",
        ),
        (
            "a victim that has not started counts as starting now",
            vec![
                candidate("a", vec![started(p("a1", "1", MID), 500)], 0),
                candidate("b", vec![p("b1", "1", MID)], 0),
            ],
            "b",
        ),
        (
            "then the first",
            vec![
                candidate("a", vec![started(p("a1", "1", MID), 500)], 0),
                candidate("b", vec![started(p("b1", "1", MID), 500)], 0),
            ],
            "a",
        ),
    ];
    for (name, candidates, want) in cases {
        let got = pick_one_node(&candidates, now).map(|i| candidates[i].node.as_str());
        assert_eq!(got, Some(want), "{name}");
    }
    assert_eq!(pick_one_node(&[], now), None);
}

#[test]
fn num_candidates_should_take_percentage_floor_and_node_count() {
    let plugin = DefaultPreemption::new(Arc::new(FakeApi::default()));
    for (nodes, want) in [(10, 10), (100, 100), (1000, 100), (5000, 500)] {
        assert_eq!(plugin.num_candidates(nodes), want, "{nodes} nodes");
    }
    let custom = DefaultPreemption::with_args(
        Arc::new(FakeApi::default()),
        DefaultPreemptionArgs {
            min_candidate_nodes_percentage: 40,
            min_candidate_nodes_absolute: 1,
        },
    );
    assert_eq!(custom.num_candidates(10), 4);
}

#[test]
fn filter_pods_with_pdb_violation_should_spend_budgets_in_order() {
    let info = |pod: Pod| Arc::new(PodInfo::new(Arc::new(pod)));
    let mut disrupted = pdb("already", "web", 0);
    if let Some(s) = disrupted.status.as_mut() {
        s.disrupted_pods = Some([("web-0".to_string(), Time(Timestamp::now()))].into());
    }
    let mut other_ns = pdb("other", "api", 0);
    other_ns.metadata.namespace = Some("kube-system".into());
    let mut empty = pdb("empty", "x", 0);
    if let Some(spec) = empty.spec.as_mut() {
        spec.selector = Some(LabelSelector::default());
    }
    let pdbs = vec![pdb("db", "db", 1), disrupted, other_ns, empty];
    let snap = snapshot(Vec::new(), pdbs);
    let infos = pdb_infos(&snap);
    assert_eq!(infos.len(), 3, "an empty selector matches nothing");

    let pods = vec![
        info(labelled(p("db-0", "1", LOW), "app", "db")),
        info(labelled(p("db-1", "1", LOW), "app", "db")),
        info(labelled(p("web-0", "1", LOW), "app", "web")),
        info(labelled(p("api-0", "1", LOW), "app", "api")),
        info(p("plain", "1", LOW)),
    ];
    let (violating, non_violating) = filter_pods_with_pdb_violation(&pods, &infos);
    let names = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&violating), vec!["db-1"]);
    assert_eq!(names(&non_violating), vec!["db-0", "web-0", "api-0", "plain"]);
}

#[test]
fn disruption_condition_should_be_skipped_when_already_present() {
    let msg = "default-scheduler: preempting to accommodate a higher priority pod";
    let fresh = p("v", "1", LOW);
    let c = disruption_condition(&fresh, msg).expect("new condition");
    assert_eq!((c.type_.as_str(), c.status.as_str()), ("DisruptionTarget", "True"));
    assert_eq!(c.reason.as_deref(), Some("PreemptionByScheduler"));
    assert_eq!(c.message.as_deref(), Some(msg));
    assert!(c.last_transition_time.is_some());

    let marked = preempted(p("v", "1", LOW));
    assert!(disruption_condition(&marked, msg).is_none());
    assert!(disruption_condition(&marked, "other-scheduler: preempting").is_some());
}

#[test]
fn random_below_should_stay_in_range() {
    assert_eq!(random_below(0), 0);
    for _ in 0..100 {
        assert!(random_below(7) < 7);
    }
}
