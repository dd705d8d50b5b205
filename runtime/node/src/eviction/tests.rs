use super::*;
use crate::resources::ThresholdValue;

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

fn pod(name: &str, priority: i32, extra: serde_json::Value) -> Arc<Pod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"priority": priority, "containers": [{"name": "app", "image": "img"}]},
    });
    if let Some(spec) = extra.as_object() {
        for (k, x) in spec {
            v["spec"][k] = x.clone();
        }
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn requests(resource: &str, q: &str) -> serde_json::Value {
    json!({"containers": [{"name": "app", "image": "img", "resources": {"requests": {resource: q}}}]})
}

fn cand(p: Arc<Pod>, memory: Option<i64>, disk: Option<i64>) -> Candidate {
    Candidate {
        pod: p,
        usage: PodUsage {
            memory,
            disk,
            inodes: None,
            containers: vec![ContainerUsage { name: "app".into(), memory, disk }],
        },
    }
}

fn names(c: &[Candidate]) -> Vec<&str> {
    c.iter().map(|c| c.pod.metadata.name.as_deref().unwrap_or("")).collect()
}

#[test]
fn rank_should_put_pods_over_their_requests_first_then_low_priority_then_the_largest_excess() {
    let mut pods = vec![
        // Within its request: last, whatever its priority or use.
        cand(pod("within", -10, requests("memory", "1Gi")), Some(GI / 2), None),
        cand(pod("over-high-prio", 1000, requests("memory", "100Mi")), Some(GI), None),
        cand(pod("over-small", 0, requests("memory", "100Mi")), Some(200 * MI), None),
        cand(pod("over-big", 0, requests("memory", "100Mi")), Some(GI), None),
        cand(pod("no-stats", 5000, json!({})), None, None),
    ];
    rank(&mut pods, Signal::MemoryAvailable);
    assert_eq!(names(&pods), ["no-stats", "over-big", "over-small", "over-high-prio", "within"]);
}

#[test]
fn rank_should_use_disk_use_above_the_ephemeral_storage_request_under_disk_pressure() {
    let mut pods = vec![
        cand(pod("requested", 0, requests("ephemeral-storage", "10Gi")), None, Some(5 * GI)),
        cand(pod("small", 0, json!({})), None, Some(MI)),
        cand(pod("large", 0, json!({})), None, Some(3 * GI)),
        cand(pod("large-important", 100, json!({})), None, Some(4 * GI)),
    ];
    rank(&mut pods, Signal::NodeFsAvailable);
    assert_eq!(names(&pods), ["large", "small", "large-important", "requested"]);
}

#[test]
fn rank_should_order_by_priority_only_for_pids() {
    let mut pods =
        vec![cand(pod("b", 10, json!({})), None, None), cand(pod("a", -5, json!({})), None, None)];
    rank(&mut pods, Signal::PidAvailable);
    assert_eq!(names(&pods), ["a", "b"]);
}

#[test]
fn eviction_message_should_be_the_kubelets() {
    let t = Threshold { signal: Signal::NodeFsAvailable, value: ThresholdValue::Quantity(GI) };
    let c = cand(pod("x", 0, json!({})), None, Some(3 * GI));
    let msg =
        eviction_message(&c, &t, Some(Observation { available: 512 * MI, capacity: 100 * GI }));
    assert_eq!(
        msg,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 512Mi. \
         Container app was using 3Gi, request is 0, has larger consumption of ephemeral-storage. "
    );
    // A container within its request is not named.
    let t =
        Threshold { signal: Signal::MemoryAvailable, value: ThresholdValue::Quantity(100 * MI) };
    let c = cand(pod("y", 0, requests("memory", "1Gi")), Some(GI / 2), None);
    let msg = eviction_message(&c, &t, Some(Observation { available: 50 * MI, capacity: 8 * GI }));
    assert_eq!(
        msg,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
    );
}

#[test]
fn thresholds_met_should_compare_available_with_the_amount_of_capacity() {
    let thresholds: Thresholds =
        "nodefs.available<10%,memory.available<100Mi,pid.available<100".parse().unwrap();
    let obs = Observations::from([
        (Signal::NodeFsAvailable, Observation { available: 9 * GI, capacity: 100 * GI }),
        (Signal::MemoryAvailable, Observation { available: 50 * MI, capacity: 8 * GI }),
        (Signal::PidAvailable, Observation { available: 1000, capacity: 32768 }),
    ]);
    let met = thresholds_met(&thresholds, &obs);
    // Memory first.
    let signals: Vec<Signal> = met.iter().map(|t| t.signal).collect();
    assert_eq!(signals, [Signal::MemoryAvailable, Signal::NodeFsAvailable]);
    // A signal without an observation is never met.
    assert!(thresholds_met(&thresholds, &Observations::new()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn pressure_should_hold_for_the_transition_period() {
    let period = Duration::from_secs(30);
    let t = Threshold { signal: Signal::NodeFsAvailable, value: ThresholdValue::Percentage(0.1) };
    let mut last = BTreeMap::new();
    let start = Instant::now();
    assert_eq!(pressure_now(&[t], &mut last, start, period), [Pressure::Disk]);
    let later = start + Duration::from_secs(20);
    assert_eq!(pressure_now(&[], &mut last, later, period), [Pressure::Disk], "held");
    let after = start + Duration::from_secs(31);
    assert!(pressure_now(&[], &mut last, after, period).is_empty());
}

#[test]
fn admission_should_refuse_pods_as_the_kubelet_does() {
    let best_effort = pod("be", 0, json!({}));
    let burstable = pod("bu", 0, requests("memory", "10Mi"));
    assert_eq!(admit(&best_effort, &[]), Ok(()));
    assert_eq!(admit(&burstable, &[Pressure::Memory]), Ok(()));
    assert_eq!(
        admit(&best_effort, &[Pressure::Memory]),
        Err("The node had condition: [MemoryPressure]. ".into())
    );
    let tolerating = pod(
        "tol",
        0,
        json!({"tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}),
    );
    assert_eq!(admit(&tolerating, &[Pressure::Memory]), Ok(()));
    assert_eq!(
        admit(&burstable, &[Pressure::Memory, Pressure::Disk]),
        Err("The node had condition: [MemoryPressure DiskPressure]. ".into())
    );
    let critical = pod("crit", 2_000_001_000, json!({}));
    assert_eq!(admit(&critical, &[Pressure::Disk]), Ok(()));
}

fn usage(volumes: &[(&str, u64)], containers: &[(&str, u64)]) -> LocalUsage {
    LocalUsage {
        volumes: volumes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        containers: containers.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

#[test]
fn local_storage_should_be_enforced_with_the_kubelets_messages() {
    let p = pod(
        "p",
        0,
        json!({"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "5Mi"}}, {"name": "free", "emptyDir": {}}]}),
    );
    assert!(has_local_storage_limits(&p));
    assert_eq!(local_storage_violation(&p, &usage(&[("scratch", 5 << 20)], &[])), None);
    assert_eq!(
        local_storage_violation(&p, &usage(&[("scratch", 20 << 20)], &[])).as_deref(),
        Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"5Mi\". ")
    );
    let limited = pod(
        "l",
        0,
        json!({"volumes": [{"name": "free", "emptyDir": {}}],
               "containers": [
                   {"name": "a", "image": "img", "resources": {"limits": {"ephemeral-storage": "4Mi"}}},
                   {"name": "b", "image": "img", "resources": {"limits": {"ephemeral-storage": "4Mi"}}}]}),
    );
    assert!(has_local_storage_limits(&limited));
    // The pod's total: volumes and logs against the sum of the limits.
    assert_eq!(
        local_storage_violation(&limited, &usage(&[("free", 7 << 20)], &[("a", 2 << 20)]))
            .as_deref(),
        Some("Pod ephemeral local storage usage exceeds the total limit of containers 8Mi. ")
    );
    // One container over its own.
    assert_eq!(
        local_storage_violation(&limited, &usage(&[], &[("a", 5 << 20)])).as_deref(),
        Some("Container a exceeded its local ephemeral storage limit \"4Mi\". ")
    );
    assert_eq!(local_storage_violation(&limited, &usage(&[], &[("a", 1 << 20)])), None);
    assert!(!has_local_storage_limits(&pod("plain", 0, json!({}))));
    // Limits print as apimachinery prints them back.
    let half = pod("h", 0, json!({"volumes": [{"name": "s", "emptyDir": {"sizeLimit": "0.5Gi"}}]}));
    assert_eq!(
        local_storage_violation(&half, &usage(&[("s", 1 << 30)], &[])).as_deref(),
        Some("Usage of EmptyDir volume \"s\" exceeds the limit \"512Mi\". ")
    );
}

#[test]
fn measure_local_should_walk_the_pods_volumes_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let p =
        pod("m", 0, json!({"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}]}));
    let vol = volumes_dir(dir.path()).join("scratch");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("sub/data"), vec![7u8; 64 * 1024]).unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/0.log"), b"hello\n").unwrap();
    let u = measure_local(&p, dir.path());
    assert!(u.volumes["scratch"] >= 64 * 1024, "{u:?}");
    assert!(u.containers["app"] > 0);
    assert!(local_storage_violation(&p, &u).is_some());
}

#[test]
fn shared_state_should_report_conditions_and_hand_evictions_over_once() {
    let shared = EvictionShared::default();
    assert!(shared.pressure().is_empty());
    let changed = shared.set(&[Pressure::Disk], "2026-01-01T00:00:00Z");
    assert_eq!(changed.len(), 1);
    assert_eq!(shared.pressure(), [Pressure::Disk]);
    assert!(shared.set(&[Pressure::Disk], "later").is_empty(), "no change, nothing to post");
    let json = shared.condition_json("now");
    let disk = json.iter().find(|c| c["type"] == "DiskPressure").unwrap();
    assert_eq!(disk["status"], "True");
    assert_eq!(disk["reason"], "KubeletHasDiskPressure");
    assert_eq!(disk["message"], "kubelet has disk pressure");
    assert_eq!(disk["lastTransitionTime"], "2026-01-01T00:00:00Z");
    let mem = json.iter().find(|c| c["type"] == "MemoryPressure").unwrap();
    assert_eq!(mem["reason"], "KubeletHasSufficientMemory");
    shared.request("u1", Eviction { message: "m".into(), disruption_condition: true });
    assert_eq!(shared.take("u1").map(|e| e.message), Some("m".into()));
    assert_eq!(shared.take("u1"), None);
}
