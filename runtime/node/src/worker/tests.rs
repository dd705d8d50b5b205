//! A pod worker's look → decide → act pass against the fake runtime. No API server: the
//! client points at a closed port, so events and status writes are dropped.

use std::sync::Mutex;

use serde_json::json;
use skiff_runtime_core::{ContainerState, ContainerStatus, SandboxStatus};

use super::actions::{KillContainer, KillReason, SandboxReason, StartReason, compute_pod_actions};
use super::*;
use crate::testing::{FakeRuntime, exit};

const UID: &str = "uid-1";

fn context(
    handler: &str,
    rt: Arc<FakeRuntime>,
    pods_dir: &std::path::Path,
    leftovers: Leftovers,
) -> Arc<WorkerContext> {
    let url = "http://127.0.0.1:1".parse().expect("url");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    let rt: Arc<dyn ContainerRuntime> = rt;
    Arc::new(WorkerContext {
        client: client.clone(),
        runtimes: Runtimes { by_handler: BTreeMap::from([(handler.to_string(), rt)]) },
        state: Arc::default(),
        pods_dir: pods_dir.to_path_buf(),
        node_name: "node-1".into(),
        node_ip: "10.0.0.1".into(),
        network: Arc::new(PodNetwork::setup(None)),
        cluster_dns: crate::dns::ClusterDnsSettings::default(),
        allocatable: BTreeMap::new(),
        leftovers: Mutex::new(leftovers),
        runtime_classes: Mutex::default(),
        metrics: Arc::new(crate::stats::KubeletMetrics::new("node-1")),
        recorder: skiff_client_tools::Recorder::on_host(client.clone(), "kubelet", "node-1"),
    })
}

fn pod(status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": UID},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": "img:1",
                "livenessProbe": {
                    "exec": {"command": ["check"]},
                    "failureThreshold": 1,
                    "periodSeconds": 5,
                },
            }],
        },
        "status": status,
    }))
    .expect("valid pod")
}

/// What a restarted node finds: the pod's sandbox and its `app` container, still running.
fn still_running() -> Leftovers {
    let of_pod = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([(labels::POD_UID.to_string(), UID.to_string())]);
        m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        m
    };
    Leftovers {
        sandboxes: vec![(
            "fake".into(),
            SandboxStatus {
                id: "sb-1".into(),
                ready: true,
                ip: Some("10.0.0.5".into()),
                labels: of_pod(&[]),
            },
        )],
        containers: vec![(
            "fake".into(),
            ContainerStatus {
                id: "c-1".into(),
                name: "app".into(),
                image: "img:1".into(),
                image_id: "sha256:1".into(),
                state: ContainerState::Running { started_at: Utc::now() },
                labels: of_pod(&[(labels::CONTAINER_NAME, "app")]),
                annotations: BTreeMap::from([(
                    labels::CONTAINER_RESTART.to_string(),
                    "0".to_string(),
                )]),
                sandbox_id: "sb-1".into(),
            },
        )],
    }
}

#[tokio::test]
async fn pod_worker_should_kill_an_adopted_container_whose_liveness_probe_fails() {
    let rt = FakeRuntime::new();
    rt.on_exec(|_| Ok(exit(1, "unhealthy")));
    let dir = tempfile::tempdir().expect("tempdir");
    let started = status::ts(&Utc::now());
    let pod = pod(json!({
        "phase": "Running",
        "startTime": started,
        "containerStatuses": [{
            "name": "app", "image": "img:1", "imageID": "sha256:1", "ready": true,
            "restartCount": 0, "state": {"running": {"startedAt": started}},
        }],
    }));
    let mut w = PodWorker::new(context("fake", rt.clone(), dir.path(), still_running()), &pod);
    assert_eq!(w.slots[0].id.as_deref(), Some("c-1"), "the running container is adopted");
    assert_eq!(w.sandbox.as_deref(), Some("sb-1"));

    w.observe(&pod).await;
    assert_eq!(rt.execs.lock().expect("execs").as_slice(), [vec!["check".to_string()]]);
    assert!(!w.slots[0].ready);

    let actions = compute_pod_actions(Some(&pod), &w.observed(), Now::now());
    assert_eq!(
        actions.kill,
        vec![KillContainer {
            name: "app".into(),
            reason: KillReason::LivenessProbe,
            grace: Duration::from_secs(1),
        }]
    );
    assert!(actions.start.is_empty() && actions.create_sandbox.is_none(), "{actions:?}");

    let acted = w.act(Some(&pod), &actions).await;
    assert!(!acted.done);
    assert!(acted.wake.is_some_and(|t| t <= Instant::now()), "looks again at once");
    assert_eq!(
        w.slots[0].kill_reason.as_deref(),
        Some("Container app failed liveness probe, will be restarted"),
        "the exit will carry the kubelet's reason"
    );
    assert_eq!(w.slots[0].rec.probe_failure, None, "acted on once");
}

#[tokio::test]
async fn pod_worker_should_wait_for_an_image_the_node_does_not_have() {
    let rt = FakeRuntime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = pod(json!({}));
    let ctx = context(WASM_HANDLER, rt, dir.path(), Leftovers::default());
    let mut w = PodWorker::new(ctx, &pod);

    let actions = compute_pod_actions(Some(&pod), &w.observed(), Now::now());
    assert_eq!(actions.create_sandbox, Some(SandboxReason::Missing));
    assert_eq!(actions.start.len(), 1);
    assert_eq!(actions.start[0].reason, StartReason::FirstRun);

    let Synced::Wait(wake) = w.sync(Some(&pod)).await else { panic!("the pod is not leaving") };
    assert_eq!(w.sandbox.as_deref(), Some(UID), "the fake names sandboxes by pod uid");
    let ContainerPhase::Waiting { reason, message } = &w.slots[0].rec.phase else {
        panic!("app should wait: {:?}", w.slots[0].rec.phase);
    };
    assert_eq!(reason, "ErrImagePull");
    assert!(message.as_deref().is_some_and(|m| m.starts_with("Failed to pull image \"img:1\"")));
    let retry = w.slots[0].rec.next_attempt.expect("a retry time");
    assert_eq!(wake, Some(retry));

    // Until then, deciding again starts nothing.
    let actions = compute_pod_actions(Some(&pod), &w.observed(), Now::now());
    assert!(actions.start.is_empty(), "{actions:?}");
    assert_eq!(actions.wake, Some(retry));

    let status = w.compute_status(&pod);
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["containerStatuses"][0]["state"]["waiting"]["reason"], "ErrImagePull");
    assert!(status["podIP"].as_str().is_some_and(|ip| ip.starts_with("127.")), "{status}");
}
