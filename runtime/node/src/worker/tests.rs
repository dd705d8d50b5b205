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
    context_with_client(handler, rt, pods_dir, leftovers, client)
}

fn context_with_client(
    handler: &str,
    rt: Arc<FakeRuntime>,
    pods_dir: &std::path::Path,
    leftovers: Leftovers,
    client: kube::Client,
) -> Arc<WorkerContext> {
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
        eviction: Arc::default(),
        leftovers: Mutex::new(leftovers),
        runtime_classes: Mutex::default(),
        runtime_class_read: tokio::sync::Mutex::default(),
        metrics: Arc::new(crate::stats::KubeletMetrics::new("node-1")),
        recorder: skiff_client_tools::Recorder::on_host(client.clone(), "kubelet", "node-1"),
        images: crate::images::ImagePulls::new(true),
        services: no_services(),
    })
}

/// A Service cache that has been listed and holds none.
fn no_services() -> kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service> {
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    store
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
    // The waiting message is the pull's error, as the kubelet shows it.
    assert!(
        message.as_deref().is_some_and(|m| m.contains("no registry to pull from")),
        "{message:?}"
    );
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

/// Every pod on the node keeps its worker's task for as long as it runs, and a task holds its
/// future's whole state machine: the deep awaits of a pass (API calls, the runtime) must not
/// be part of it, or ten thousand idle pods pay for them all the time.
#[tokio::test]
async fn pod_worker_task_should_stay_small_while_idle() {
    let rt = FakeRuntime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = Arc::new(pod(json!({})));
    let w = PodWorker::new(context("fake", rt, dir.path(), Leftovers::default()), &pod);
    let (_tx, rx) = watch::channel(Some(pod));
    let run = w.run(rx, Arc::new(Notify::new()));
    let size = std::mem::size_of_val(&run);
    assert!(size <= 4096, "a pod worker's task holds {size} bytes");
}

/// A client whose api server records every request's method, path and body. It answers a
/// status patch with `pod` holding that status at resourceVersion 2, anything else with `pod`.
/// The requests a [`recording_client`] saw: method, path and body.
type Recorded = Arc<Mutex<Vec<(String, String, Value)>>>;

fn recording_client(pod: &Pod) -> (kube::Client, Recorded) {
    use http_body_util::BodyExt;
    let seen: Recorded = Arc::default();
    let pod = serde_json::to_value(pod).expect("pod json");
    let record = seen.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (record, mut answer) = (record.clone(), pod.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if parts.method == http::Method::PATCH && parts.uri.path().ends_with("/status") {
                answer["status"] = body["status"].clone();
                answer["metadata"]["resourceVersion"] = json!("2");
            }
            record.lock().expect("requests").push((
                parts.method.to_string(),
                parts.uri.path().to_string(),
                body,
            ));
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(answer.to_string())))
                .expect("response");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (kube::Client::new(service, "default"), seen)
}

/// One worker pass as `run` makes it: the pod to work from, sync, status.
async fn pass(w: &mut PodWorker, watched: &Arc<Pod>) {
    let pod = w.current_pod(Some(watched.clone())).expect("a pod");
    assert!(matches!(w.sync(Some(&pod)).await, Synced::Wait(_)));
    w.write_status(&pod).await;
}

/// Issue 17 ("Scale"): a pod that starts at once goes from Pending to Running in one status
/// write; neither a pass before the watch brings that write back (the runtime's start event)
/// nor the write coming back writes again.
#[tokio::test]
async fn pod_worker_should_write_one_status_from_pending_to_running() {
    let rt = FakeRuntime::new();
    rt.images.store(true, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().expect("tempdir");
    let created: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": UID, "resourceVersion": "1"},
        "spec": {"containers": [{"name": "app", "image": "img:1"}]},
        "status": {"phase": "Pending"},
    }))
    .expect("valid pod");
    let created = Arc::new(created);
    let (client, requests) = recording_client(&created);
    let ctx = context_with_client(WASM_HANDLER, rt, dir.path(), Leftovers::default(), client);
    let mut w = PodWorker::new(ctx, &created);
    let status_writes = || {
        let requests = requests.lock().expect("requests");
        requests
            .iter()
            .filter(|(m, p, _)| m == "PATCH" && p.ends_with("/pods/web/status"))
            .map(|(_, _, body)| body["status"].clone())
            .collect::<Vec<Value>>()
    };

    pass(&mut w, &created).await;
    let writes = status_writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let written = &writes[0];
    assert_eq!(written["phase"], "Running");
    assert!(written["containerStatuses"][0]["state"]["running"].is_object(), "{written}");
    let conditions = written["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready").map(|c| c["status"].clone());
    assert_eq!(ready, Some(json!("True")), "{written}");

    // Woken again before the watch has the write: the pod it shows is still Pending.
    pass(&mut w, &created).await;
    assert_eq!(status_writes().len(), 1, "a pass before the write came back wrote again");

    // The watch brings the write back.
    let mut echoed = (*created).clone();
    echoed.metadata.resource_version = Some("2".into());
    echoed.status = serde_json::from_value(written.clone()).expect("a pod status");
    pass(&mut w, &Arc::new(echoed)).await;
    assert_eq!(status_writes().len(), 1, "nothing changed, nothing written");
}
