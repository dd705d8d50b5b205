//! End-to-end: a cluster of two nodes — `skiff server` with its embedded node and a
//! `skiff agent` joined with the server's token — driven by the real kubectl. Pods run on
//! both nodes; when the agent is killed its node turns `Unknown`, is tainted `unreachable`,
//! and its pods are evicted once their toleration runs out while pods that tolerate longer
//! stay; the controllers move the Deployment's pods to the node that is left; a restarted
//! agent makes its node Ready again and finishes what was deleted meanwhile.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::{Agent, Skiff, guest, phase};

/// Grace before an unrenewed node is marked Unknown, and the Lease duration of both nodes:
/// shortened for the test (Kubernetes: 40 s and 40 s).
const SERVER_FLAGS: &[&str] =
    &["--node-monitor-grace-period", "5", "--node-lease-duration-seconds", "4"];
const AGENT_FLAGS: &[&str] =
    &["--node-lease-duration-seconds", "4", "--kubelet-listen", "127.0.0.1:0"];
const IMAGE: &str = "test-guest:e2e";

fn cluster(dir: &std::path::Path) -> (Skiff, Agent) {
    let s = Skiff::start_with(&dir.join("server"), SERVER_FLAGS);
    s.import(&guest("test-guest.wasip1.wasm"), IMAGE);
    let agent = s.start_agent(&dir.join("agent"), "skiff-agent", AGENT_FLAGS);
    agent.import(&guest("test-guest.wasip1.wasm"), IMAGE);
    (s, agent)
}

/// A sleeping Wasm pod pinned to `node`, tolerating `unreachable` for `seconds` when given.
fn pinned_pod(name: &str, node: &str, unreachable_seconds: Option<u32>) -> String {
    let toleration = unreachable_seconds.map_or(String::new(), |s| {
        format!(
            "  tolerations:\n    - key: node.kubernetes.io/unreachable\n      operator: Exists\n      effect: NoExecute\n      tolerationSeconds: {s}\n"
        )
    });
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasmtime\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n{toleration}  containers:\n    - name: main\n      image: {IMAGE}\n      args: [sleep, \"3600\"]\n"
    )
}

fn taints(s: &Skiff, node: &str) -> Vec<(String, String)> {
    let n = s.json(&["get", "node", node]);
    n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["effect"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn terminating(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_string()
}

#[test]
fn agent_pods_should_be_evicted_when_their_node_becomes_unreachable() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, mut agent) = cluster(dir.path());

    // The agent's node is a node like the server's: its own pod CIDR, runtime handlers, Lease.
    let node = s.json(&["get", "node", "skiff-agent"]);
    let cidr_agent = node["spec"]["podCIDR"].as_str().unwrap_or_default().to_string();
    let cidr_server = s.json(&["get", "node", "skiff-e2e"])["spec"]["podCIDR"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!cidr_agent.is_empty() && cidr_agent != cidr_server, "{cidr_agent} vs {cidr_server}");
    assert!(
        node["status"]["runtimeHandlers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["name"] == "wasmtime")),
        "{}",
        node["status"]
    );
    assert!(
        s.json(&["get", "lease", "skiff-agent", "-n", "kube-node-lease"])["spec"]["renewTime"]
            .is_string()
    );

    // Three pods on the agent: one tolerating unreachable for 1 s, one for an hour, one with
    // the api server's default (300 s, added at create); one on the server node.
    for (name, node, secs) in [
        ("short", "skiff-agent", Some(1)),
        ("long", "skiff-agent", Some(3600)),
        ("default", "skiff-agent", None),
        ("home", "skiff-e2e", Some(1)),
    ] {
        {
            let out = s.kubectl_stdin(&["apply", "-f", "-"], &pinned_pod(name, node, secs));
            assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let default = s.json(&["get", "pod", "default"]);
    let defaults: Vec<(&str, i64)> = default["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["key"].as_str().unwrap_or(""), t["tolerationSeconds"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(
        defaults,
        [("node.kubernetes.io/not-ready", 300), ("node.kubernetes.io/unreachable", 300)],
        "DefaultTolerationSeconds"
    );
    for name in ["short", "long", "default", "home"] {
        let p = s.wait_pod(name, Duration::from_secs(60), "Running", |p| phase(p) == "Running");
        let ip = p["status"]["podIP"].as_str().unwrap_or_default().to_string();
        assert!(!ip.is_empty(), "{name} has no pod IP: {}", p["status"]);
    }
    assert_eq!(s.json(&["get", "pod", "short"])["spec"]["nodeName"], "skiff-agent");
    assert_eq!(s.json(&["get", "pod", "home"])["spec"]["nodeName"], "skiff-e2e");

    // The agent's kubelet API, reached through the api server: logs and node endpoints.
    let port = &s.json(&["get", "node", "skiff-agent"])["status"]["daemonEndpoints"]["kubeletEndpoint"]
        ["Port"];
    assert!(port.as_u64().is_some_and(|p| p > 0), "kubelet port {port}");
    s.wait_for("the agent pod's log", Duration::from_secs(10), || {
        String::from_utf8_lossy(&s.kubectl(&["logs", "long"]).stdout).contains("sleeping 3600")
    });
    let health = s.ok(&["get", "--raw", "/api/v1/nodes/skiff-agent/proxy/healthz"]);
    assert_eq!(health.trim(), "ok");
    let summary: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/skiff-agent/proxy/stats/summary",
    ]))
    .expect("summary JSON");
    assert_eq!(summary["node"]["nodeName"], "skiff-agent", "{summary}");
    let pods: Vec<&str> = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["podRef"]["name"].as_str())
        .collect();
    assert!(pods.contains(&"long") && !pods.contains(&"home"), "{pods:?}");

    // The agent dies without a word.
    agent.kill();
    s.wait_for("the agent's node to turn Unknown", Duration::from_secs(30), || {
        s.node_ready("skiff-agent") == "Unknown"
    });
    let n = s.json(&["get", "node", "skiff-agent"]);
    let ready = n["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{ready}");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    s.wait_for("unreachable taints", Duration::from_secs(10), || {
        let t = taints(&s, "skiff-agent");
        t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
    });
    assert_eq!(s.node_ready("skiff-e2e"), "True", "the server's node is untouched");
    assert!(taints(&s, "skiff-e2e").is_empty());

    // `short` goes after its second; the others stay, not ready.
    let short = s.wait_pod("short", Duration::from_secs(20), "evicted", terminating);
    let target = short["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(target["reason"], "DeletionByTaintManager", "{}", short["status"]);
    let events = s.ok(&["get", "events", "--field-selector", "involvedObject.name=short"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
    for name in ["long", "default", "home"] {
        let p = s.json(&["get", "pod", name]);
        assert!(!terminating(&p), "{name} was evicted too early");
    }
    let long = s.json(&["get", "pod", "long"]);
    let ready = long["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "False", "pods of an unreachable node are not ready: {ready}");
    let home = s.json(&["get", "pod", "home"]);
    assert_eq!(phase(&home), "Running");

    // The agent comes back: Ready again, taints gone, the evicted pod finished, the others
    // ready again.
    let agent = s.start_agent(&dir.path().join("agent"), "skiff-agent", AGENT_FLAGS);
    s.wait_for("taints removed", Duration::from_secs(15), || taints(&s, "skiff-agent").is_empty());
    s.wait_for("the evicted pod to be gone", Duration::from_secs(30), || {
        !s.kubectl(&["get", "pod", "short"]).status.success()
    });
    s.wait_pod("long", Duration::from_secs(30), "Ready again", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    });
    drop(agent);
}

/// Deployment pods spread over both nodes move to the server's node when the agent dies.
#[test]
fn deployment_pods_should_move_to_the_surviving_node() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, mut agent) = cluster(dir.path());
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      runtimeClassName: wasmtime\n      tolerations:\n        - key: node.kubernetes.io/unreachable\n          operator: Exists\n          effect: NoExecute\n          tolerationSeconds: 2\n      containers:\n        - name: main\n          image: {IMAGE}\n          args: [sleep, \"3600\"]\n"
    );
    {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let per_node = |s: &Skiff| -> BTreeMap<String, usize> {
        let pods = s.json(&["get", "pods", "-l", "app=web"]);
        let mut m = BTreeMap::new();
        for p in pods["items"].as_array().into_iter().flatten() {
            if !terminating(p) && phase(p) == "Running" {
                *m.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).or_default() +=
                    1;
            }
        }
        m
    };
    let before = per_node(&s);
    assert_eq!(before.values().sum::<usize>(), 4, "{before:?}");
    assert!(
        before.get("skiff-agent").copied().unwrap_or(0) > 0,
        "the scheduler used both nodes: {before:?}"
    );

    agent.kill();
    s.wait_for("all 4 replicas running on the server's node", Duration::from_secs(60), || {
        let m = per_node(&s);
        m.get("skiff-e2e").copied() == Some(4) && !m.contains_key("skiff-agent")
    });
    s.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["status"]["readyReplicas"], 4, "{}", d["status"]);
}

/// A Deployment heals both ways: a guest that crashes (a Wasm trap) is restarted in place by
/// its node, and a deleted pod is replaced by its ReplicaSet.
#[test]
fn wasm_deployment_should_heal_a_crashed_guest_and_a_deleted_pod() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("server"));
    s.import(&guest("test-guest.wasip1.wasm"), IMAGE);
    // Each guest waits for a file named after its pod in a host directory, removes it and
    // traps: writing that file "kills" the guest.
    let ctl = dir.path().join("ctl");
    std::fs::create_dir_all(&ctl).expect("ctl dir");
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: heal\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: heal}}\n  template:\n    metadata:\n      labels: {{app: heal}}\n    spec:\n      runtimeClassName: wasmtime\n      volumes:\n        - name: ctl\n          hostPath: {{path: {}, type: Directory}}\n      containers:\n        - name: main\n          image: {IMAGE}\n          env:\n            - name: POD_NAME\n              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n          args: [script, \"await /ctl/$(POD_NAME); rm /ctl/$(POD_NAME); trap\"]\n          volumeMounts:\n            - {{name: ctl, mountPath: /ctl}}\n",
        ctl.display()
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    s.ok(&["rollout", "status", "deployment/heal", "--timeout=60s"]);
    let names = || -> Vec<String> {
        let pods = s.json(&["get", "pods", "-l", "app=heal"]);
        let mut v: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !terminating(p))
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let before = names();
    assert_eq!(before.len(), 2, "{before:?}");

    // Crash the first guest: its node restarts it, the pod stays.
    std::fs::write(ctl.join(&before[0]), "die").expect("kill file");
    let p = s.wait_pod(&before[0], Duration::from_secs(30), "restarted and ready", |p| {
        let c = &p["status"]["containerStatuses"][0];
        c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["ready"] == true
    });
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "Trap", "{last}");
    assert!(!ctl.join(&before[0]).exists(), "the guest removed its file before trapping");
    assert_eq!(names(), before, "a crashed guest is restarted in place, not replaced");

    // Delete the second pod: the ReplicaSet makes a new one.
    s.ok(&["delete", "pod", &before[1], "--wait=false"]);
    s.wait_for("a replacement pod", Duration::from_secs(30), || {
        let now = names();
        now.len() == 2 && now.contains(&before[0]) && !now.contains(&before[1])
    });
    s.ok(&["rollout", "status", "deployment/heal", "--timeout=60s"]);
    let d = s.json(&["get", "deployment", "heal"]);
    assert_eq!(d["status"]["readyReplicas"], 2, "{}", d["status"]);
}

/// A DaemonSet runs one pod on each of the two nodes, and its pods tolerate their node
/// becoming unreachable (the DaemonSet controller's default tolerations) instead of being
/// evicted like other pods.
#[test]
fn daemonset_should_run_one_pod_on_each_node() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, mut agent) = cluster(dir.path());
    let manifest = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: everywhere\nspec:\n  selector:\n    matchLabels: {{app: everywhere}}\n  template:\n    metadata:\n      labels: {{app: everywhere}}\n    spec:\n      runtimeClassName: wasmtime\n      containers:\n        - name: main\n          image: {IMAGE}\n          args: [sleep, \"3600\"]\n"
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    s.ok(&["rollout", "status", "daemonset/everywhere", "--timeout=60s"]);
    let nodes_of = |s: &Skiff| -> Vec<String> {
        let pods = s.json(&["get", "pods", "-l", "app=everywhere"]);
        let mut v: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !terminating(p) && phase(p) == "Running")
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(nodes_of(&s), ["skiff-agent", "skiff-e2e"]);
    let ds = s.json(&["get", "daemonset", "everywhere"]);
    for field in [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
    ] {
        assert_eq!(ds["status"][field], 2, "{field}: {}", ds["status"]);
    }
    assert_eq!(ds["status"]["numberMisscheduled"], 0, "{}", ds["status"]);

    agent.kill();
    s.wait_for("unreachable taints", Duration::from_secs(30), || {
        taints(&s, "skiff-agent")
            .contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
    });
    // Give the taint manager time to act on anything it would evict.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let pods = s.json(&[
            "get",
            "pods",
            "-l",
            "app=everywhere",
            "--field-selector",
            "spec.nodeName=skiff-agent",
        ]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "{pods}");
        assert!(!terminating(&items[0]), "a DaemonSet pod was evicted: {}", items[0]);
        std::thread::sleep(Duration::from_millis(200));
    }
}
