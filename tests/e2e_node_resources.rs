//! End-to-end: honest node resources, pressure and eviction, with the real `skiff` and the real
//! kubectl. The node reports `ephemeral-storage` from its data dir's file system with
//! allocatable by the kubelet's formula (`--kube-reserved`, `--system-reserved`,
//! `--eviction-hard`), and a pod requesting it schedules; a pod writing past its emptyDir
//! `sizeLimit` (Wasm and OCI) or its containers' `ephemeral-storage` limit is evicted with the
//! kubelet's reason, message and event; a forced `nodefs.available` threshold turns
//! DiskPressure on, taints the node, evicts the running pod and refuses new ones.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Containerd, Skiff, guest};

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

/// A quantity as the node writes them (`123Ki`, `2`, `1900m`): in base units, or
/// thousandths for `m`.
fn quantity(q: &str) -> i64 {
    let (n, scale) = [("Ki", 1i64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)]
        .into_iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, m)))
        .unwrap_or((q, 1));
    n.parse::<i64>().unwrap_or_else(|_| panic!("quantity {q:?}")) * scale
}

fn node(s: &Skiff) -> Value {
    s.json(&["get", "node", "skiff-e2e"])
}

fn condition<'a>(node: &'a Value, ty: &str) -> &'a Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

fn apply(s: &Skiff, manifest: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
}

/// A Wasm pod running the test guest's `script`.
fn wasm_pod(name: &str, script: &str, extra_spec: &str, resources: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: wasmtime
  terminationGracePeriodSeconds: 1
{extra_spec}
  containers:
    - name: app
      image: test-guest:e2e
      imagePullPolicy: IfNotPresent
      command: ["guest", "script", {script:?}]
{resources}
"#
    )
}

fn events_of(s: &Skiff, name: &str) -> Vec<Value> {
    let list =
        s.json(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Wait until pod `name` is Failed with reason Evicted; check its message and its event.
fn expect_evicted(s: &Skiff, name: &str, message: impl Fn(&str) -> bool) -> Value {
    let pod = s.wait_pod(name, Duration::from_secs(90), "Evicted", |p| {
        p["status"]["phase"] == "Failed" && p["status"]["reason"] == "Evicted"
    });
    let got = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(message(got), "pod {name}'s eviction message: {got:?}");
    s.wait_for("the Evicted event", Duration::from_secs(30), || {
        events_of(s, name).iter().any(|e| {
            e["reason"] == "Evicted" && e["type"] == "Warning" && e["message"].as_str() == Some(got)
        })
    });
    // Its containers were stopped and are not restarted.
    let pod = s.wait_pod(name, Duration::from_secs(30), "stopped", |p| {
        p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_null()))
    });
    assert_eq!(pod["status"]["phase"], "Failed");
    pod
}

#[test]
fn node_should_report_allocatable_by_the_kubelets_formula_and_run_pods_requesting_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start_with(
        dir.path(),
        &[
            "--kube-reserved",
            "cpu=100m,memory=100Mi,ephemeral-storage=1Gi",
            "--system-reserved",
            "memory=50Mi,ephemeral-storage=512Mi",
            "--eviction-hard",
            "memory.available<100Mi,nodefs.available<1%",
        ],
    );
    let n = node(&s);
    let cap = &n["status"]["capacity"];
    let alloc = &n["status"]["allocatable"];
    let storage = quantity(cap["ephemeral-storage"].as_str().unwrap_or("0"));
    assert!(storage > GI, "ephemeral-storage capacity {storage} should be the data dir's disk");
    // The kubelet's arithmetic: the percentage is a 32-bit float times the capacity.
    let threshold = (storage as f64 * f64::from(1f32 / 100f32)) as i64;
    let want = storage - GI - 512 * MI - threshold;
    let got = quantity(alloc["ephemeral-storage"].as_str().unwrap_or("0"));
    assert!(got > 0, "allocatable ephemeral-storage {got}");
    assert_eq!(got, want, "allocatable ephemeral-storage (capacity {storage})");
    let memory = quantity(cap["memory"].as_str().unwrap_or("0"));
    assert_eq!(
        quantity(alloc["memory"].as_str().unwrap_or("0")),
        memory - 100 * MI - 50 * MI - 100 * MI
    );
    let cpus = quantity(cap["cpu"].as_str().unwrap_or("0"));
    assert_eq!(alloc["cpu"], format!("{}m", cpus * 1000 - 100));
    assert_eq!(alloc["pods"], cap["pods"]);

    // No pressure, no pressure taints.
    for (ty, reason, message) in [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ] {
        let c = condition(&n, ty);
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some(reason)));
        assert_eq!(c["message"], message);
    }
    assert!(!has_taint(&n, "node.kubernetes.io/disk-pressure", "NoSchedule"), "{}", n["spec"]);

    // A pod requesting 1Gi of ephemeral storage schedules and runs; one asking for more than
    // the node has stays Pending with the scheduler's reason.
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let requests = |q: &str| {
        format!(
            "      resources:\n        requests: {{ephemeral-storage: {q}}}\n        limits: {{ephemeral-storage: {q}}}"
        )
    };
    apply(&s, &wasm_pod("storage-1g", "echo hello; sleep 3600", "", &requests("1Gi")));
    apply(&s, &wasm_pod("storage-huge", "sleep 3600", "", &requests("1Ei")));
    let pod = s.wait_pod("storage-1g", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pod["spec"]["nodeName"], "skiff-e2e");
    let pod = s.wait_pod("storage-huge", Duration::from_secs(30), "Unschedulable", |p| {
        p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        })
    });
    let cond = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert!(
        cond["message"].as_str().unwrap_or_default().contains("Insufficient ephemeral-storage"),
        "{cond}"
    );

    // `skiff agent` takes the same flags.
    let agent = s.start_agent(
        &dir.path().join("agent"),
        "skiff-agent",
        &[
            "--kubelet-listen",
            "127.0.0.1:0",
            "--system-reserved",
            "ephemeral-storage=2Gi,cpu=1",
            "--eviction-hard",
            "nodefs.available<2Gi",
        ],
    );
    let n = s.json(&["get", "node", &agent.name]);
    let storage = quantity(n["status"]["capacity"]["ephemeral-storage"].as_str().unwrap_or("0"));
    let got = quantity(n["status"]["allocatable"]["ephemeral-storage"].as_str().unwrap_or("0"));
    assert_eq!(got, storage - 4 * GI, "agent's allocatable ephemeral-storage");
    let cpus = quantity(n["status"]["capacity"]["cpu"].as_str().unwrap_or("0"));
    let want_cpu = if cpus == 1 { "0".to_string() } else { format!("{}", cpus - 1) };
    assert_eq!(n["status"]["allocatable"]["cpu"], want_cpu.as_str());
}

#[test]
fn wasm_pods_over_their_local_storage_limits_should_be_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start_with(dir.path(), &["--eviction-monitoring-interval", "1s"]);
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    // A file of 12 KiB in an emptyDir limited to 8Ki (du counts blocks, the directory too).
    let big = "x".repeat(12 * 1024);
    apply(
        &s,
        &wasm_pod(
            "fills-scratch",
            &format!("write /scratch/big {big}; echo written; sleep 3600"),
            "  volumes:\n    - name: scratch\n      emptyDir: {sizeLimit: 8Ki}",
            "      volumeMounts: [{name: scratch, mountPath: /scratch}]",
        ),
    );
    // A container whose log outgrows its ephemeral-storage limit: the pod's total is over the
    // containers' total limit first, as the kubelet checks it.
    apply(
        &s,
        &wasm_pod(
            "loud",
            &format!("echo {big}; sleep 3600"),
            "",
            "      resources:\n        limits: {ephemeral-storage: 4Ki}",
        ),
    );
    // A pod within its limits keeps running.
    apply(
        &s,
        &wasm_pod(
            "quiet",
            "write /scratch/small ok; sleep 3600",
            "  volumes:\n    - name: scratch\n      emptyDir: {sizeLimit: 1Mi}",
            "      volumeMounts: [{name: scratch, mountPath: /scratch}]",
        ),
    );
    expect_evicted(&s, "fills-scratch", |m| {
        m == "Usage of EmptyDir volume \"scratch\" exceeds the limit \"8Ki\". "
    });
    expect_evicted(&s, "loud", |m| {
        m == "Pod ephemeral local storage usage exceeds the total limit of containers 4Ki. "
    });
    let quiet = s.wait_pod("quiet", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(quiet["status"]["reason"].is_null(), "{}", quiet["status"]);
    // The evicted pod's emptyDir was given back.
    let leftover = std::fs::read_dir(dir.path().join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("fills-scratch"))
        .any(|e| e.path().join("volumes/scratch/big").exists());
    assert!(!leftover, "the evicted pod's emptyDir still holds its file");
}

#[test]
fn oci_pod_writing_past_its_empty_dir_size_limit_should_be_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(ctr) = Containerd::start(&dir.path().join("containerd"), "skiffe2e6") else { return };
    let s = Skiff::start_with(
        &dir.path().join("skiff"),
        &[
            "--container-runtime-endpoint",
            &format!("unix://{}", ctr.socket),
            "--eviction-monitoring-interval",
            "1s",
        ],
    );
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: dd-scratch
spec:
  runtimeClassName: runc
  terminationGracePeriodSeconds: 1
  volumes:
    - name: scratch
      emptyDir: {sizeLimit: 5Mi}
  containers:
    - name: dd
      image: skiff.local/busybox:1.36
      imagePullPolicy: IfNotPresent
      command: ["sh", "-c", "dd if=/dev/zero of=/scratch/fill bs=1M count=20 && exec sleep 3600"]
      volumeMounts: [{name: scratch, mountPath: /scratch}]
"#,
    );
    expect_evicted(&s, "dd-scratch", |m| {
        m == "Usage of EmptyDir volume \"scratch\" exceeds the limit \"5Mi\". "
    });
    drop(s);
    drop(ctr);
}

#[test]
fn forced_disk_pressure_should_taint_the_node_evict_its_pod_and_refuse_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quiet = ["--eviction-hard", "nodefs.available<1%", "--eviction-monitoring-interval", "1s"];
    let mut s = Skiff::start_with(dir.path(), &quiet);
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    apply(&s, &wasm_pod("victim", "echo hello from the victim; sleep 3600", "", ""));
    s.wait_pod("victim", Duration::from_secs(60), "Running", |p| p["status"]["phase"] == "Running");
    let n = node(&s);
    assert_eq!(condition(&n, "DiskPressure")["status"], "False");

    // The same node again, with a threshold every disk crosses.
    s.signal(libc::SIGTERM);
    let forced =
        ["--eviction-hard", "nodefs.available<99%", "--eviction-monitoring-interval", "1s"];
    let s = Skiff::start_with(dir.path(), &forced);
    s.wait_for("DiskPressure and its taint", Duration::from_secs(60), || {
        let n = node(&s);
        condition(&n, "DiskPressure")["status"] == "True"
            && has_taint(&n, "node.kubernetes.io/disk-pressure", "NoSchedule")
    });
    let n = node(&s);
    let c = condition(&n, "DiskPressure");
    assert_eq!(c["reason"], "KubeletHasDiskPressure");
    assert_eq!(c["message"], "kubelet has disk pressure");
    assert_eq!(condition(&n, "MemoryPressure")["status"], "False");
    s.wait_for("the NodeHasDiskPressure event", Duration::from_secs(30), || {
        events_of(&s, "skiff-e2e").iter().any(|e| e["reason"] == "NodeHasDiskPressure")
    });

    // The running pod is evicted to reclaim ephemeral-storage, with the kubelet's message.
    let pod = expect_evicted(&s, "victim", |m| {
        m.starts_with("The node was low on resource: ephemeral-storage. Threshold quantity: ")
            && m.contains(", available: ")
            && m.contains("Container app was using ")
            && m.ends_with("request is 0, has larger consumption of ephemeral-storage. ")
    });
    let disruption = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(disruption["status"], "True", "{}", pod["status"]);
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    assert!(
        events_of(&s, "skiff-e2e").iter().any(|e| e["reason"] == "EvictionThresholdMet"
            && e["message"] == "Attempting to reclaim ephemeral-storage"),
        "node events"
    );

    // A new pod is not scheduled onto the tainted node; one tolerating the taint is refused by
    // the node.
    apply(&s, &wasm_pod("untolerated", "sleep 3600", "", ""));
    apply(
        &s,
        &wasm_pod(
            "tolerant",
            "sleep 3600",
            "  tolerations:\n    - {key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}",
            "",
        ),
    );
    expect_evicted(&s, "tolerant", |m| m == "The node had condition: [DiskPressure]. ");
    let pod = s.wait_pod("untolerated", Duration::from_secs(30), "Unschedulable", |p| {
        p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        })
    });
    assert!(pod["spec"]["nodeName"].is_null());
}

#[test]
fn forced_memory_and_pid_pressure_should_be_reported_tainted_and_refuse_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start_with(
        dir.path(),
        &[
            "--eviction-hard",
            "memory.available<1Pi,pid.available<100M",
            "--eviction-monitoring-interval",
            "1s",
        ],
    );
    s.wait_for("MemoryPressure, PIDPressure and their taints", Duration::from_secs(60), || {
        let n = node(&s);
        condition(&n, "MemoryPressure")["status"] == "True"
            && condition(&n, "PIDPressure")["status"] == "True"
            && has_taint(&n, "node.kubernetes.io/memory-pressure", "NoSchedule")
            && has_taint(&n, "node.kubernetes.io/pid-pressure", "NoSchedule")
    });
    let n = node(&s);
    let memory = condition(&n, "MemoryPressure");
    assert_eq!(memory["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(memory["message"], "kubelet has insufficient memory available");
    let pid = condition(&n, "PIDPressure");
    assert_eq!(pid["reason"], "KubeletHasInsufficientPID");
    assert_eq!(pid["message"], "kubelet has insufficient PID available");
    assert_eq!(condition(&n, "DiskPressure")["status"], "False");
    assert!(!has_taint(&n, "node.kubernetes.io/disk-pressure", "NoSchedule"));

    // A pod tolerating both taints reaches the node, which refuses it.
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    apply(
        &s,
        &wasm_pod(
            "tolerant",
            "sleep 3600",
            "  tolerations:\n    - {key: node.kubernetes.io/memory-pressure, operator: Exists}\n    - {key: node.kubernetes.io/pid-pressure, operator: Exists}",
            "",
        ),
    );
    // (Allocatable memory is 0 with this threshold, so it requests none.)
    expect_evicted(&s, "tolerant", |m| {
        m == "The node had condition: [MemoryPressure PIDPressure]. "
    });
}
