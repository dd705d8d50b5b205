//! End-to-end: the scheduler on a three-node cluster — `skiff server` with its embedded
//! node and two `skiff agent` processes — driven by the real kubectl. Placement follows the
//! rules users write: nodeSelector, required pod anti-affinity, taints and tolerations,
//! topology spread; a pod that fits nowhere stays Pending with Kubernetes' message and is
//! placed as soon as room is made; a high-priority pod preempts a low-priority one; gated
//! pods wait for their gates; events, conditions and metrics tell what happened.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Agent, Skiff, guest};

const IMAGE: &str = "test-guest:e2e";
const NODES: [&str; 3] = ["skiff-e2e", "skiff-a", "skiff-b"];
const AGENT_FLAGS: &[&str] = &["--kubelet-listen", "127.0.0.1:0"];
const WAIT: Duration = Duration::from_secs(60);

/// Two profiles: the default, and a bin-packing one that scores nodes MostAllocated.
const SCHEDULER_CONFIG: &str = "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
  - schedulerName: bin-packing
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources: [{name: example.com/slot, weight: 1}]
";

fn cluster(dir: &std::path::Path) -> (Skiff, Vec<Agent>) {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("scheduler.yaml");
    std::fs::write(&config, SCHEDULER_CONFIG).expect("scheduler config");
    let config = config.display().to_string();
    let s = Skiff::start_with(&dir.join("server"), &["--scheduler-config", &config]);
    s.import(&guest("test-guest.wasip1.wasm"), IMAGE);
    let agents: Vec<Agent> = NODES[1..]
        .iter()
        .map(|name| {
            let a = s.start_agent(&dir.join(name), name, AGENT_FLAGS);
            a.import(&guest("test-guest.wasip1.wasm"), IMAGE);
            a
        })
        .collect();
    (s, agents)
}

/// A sleeping Wasm pod; `extra_spec` is YAML at the pod spec's indentation (two spaces).
fn pod(name: &str, labels: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  runtimeClassName: wasmtime\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n    - name: main\n      image: {IMAGE}\n      args: [sleep, \"3600\"]\n"
    )
}

/// A Deployment of sleeping Wasm pods labelled `app: NAME`; `extra_spec` at four spaces.
fn deployment(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      runtimeClassName: wasmtime\n      terminationGracePeriodSeconds: 1\n{extra_spec}      containers:\n        - name: main\n          image: {IMAGE}\n          args: [sleep, \"3600\"]\n"
    )
}

fn apply(s: &Skiff, yaml: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply failed: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn scheduled_condition(p: &Value) -> (String, String, String) {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

/// Pods of `app` by node, once exactly `n` are Running.
fn running_by_node(s: &Skiff, app: &str, n: usize) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    s.wait_for(&format!("{n} running pods of {app}"), WAIT, || {
        let list = s.json(&["get", "pods", "-l", &format!("app={app}")]);
        let items: Vec<&Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        if items.len() != n || !items.iter().all(|p| support::phase(p) == "Running") {
            return false;
        }
        by_node.clear();
        for p in items {
            *by_node.entry(node_of(p).to_string()).or_default() += 1;
        }
        true
    });
    by_node
}

fn unschedulable_message(s: &Skiff, name: &str) -> String {
    let p = s.wait_pod(name, WAIT, "Unschedulable", |p| {
        let (status, reason, _) = scheduled_condition(p);
        node_of(p).is_empty() && status == "False" && reason == "Unschedulable"
    });
    scheduled_condition(&p).2
}

#[test]
fn scheduler_should_place_pods_by_users_rules_on_three_nodes() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _agents) = cluster(dir.path());
    let mut checks = support::Checks::default();

    checks.check("nodeSelector picks the labelled node; a selector no node has waits for one", || {
        s.ok(&["label", "node", "skiff-b", "disk=ssd"]);
        apply(&s, &pod("ssd", "app: ssd", "  nodeSelector: {disk: ssd}\n"));
        let p = s.wait_pod("ssd", WAIT, "Running", |p| support::phase(p) == "Running");
        assert_eq!(node_of(&p), "skiff-b");

        apply(&s, &pod("gpu", "app: gpu", "  nodeSelector: {accelerator: tpu}\n"));
        let msg = unschedulable_message(&s, "gpu");
        assert!(
            msg.starts_with(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
            ),
            "{msg}"
        );
        let events = s.json(&["get", "events", "--field-selector", "involvedObject.name=gpu"]);
        assert!(
            events["items"].as_array().into_iter().flatten().any(|e| e["reason"] == "FailedScheduling"
                && e["message"].as_str().is_some_and(|m| m.starts_with("0/3 nodes are available"))),
            "no FailedScheduling event: {events}"
        );
        // A node gaining the label is a cluster event that requeues the pod at once.
        s.ok(&["label", "node", "skiff-a", "accelerator=tpu"]);
        let p = s.wait_pod("gpu", Duration::from_secs(15), "scheduled", |p| !node_of(p).is_empty());
        assert_eq!(node_of(&p), "skiff-a");
        let events = s.json(&["get", "events", "--field-selector", "involvedObject.name=gpu"]);
        assert!(
            events["items"].as_array().into_iter().flatten().any(|e| e["reason"] == "Scheduled"
                && e["message"] == "Successfully assigned default/gpu to skiff-a"),
            "no Scheduled event: {events}"
        );
        s.ok(&["delete", "pod", "ssd", "gpu", "--wait=false"]);
    });

    checks.check("required anti-affinity spreads 3 replicas over 3 nodes; a 4th waits", || {
        let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - labelSelector: {matchLabels: {app: spread}}\n              topologyKey: kubernetes.io/hostname\n";
        apply(&s, &deployment("spread", 3, anti));
        let by_node = running_by_node(&s, "spread", 3);
        assert_eq!(by_node.len(), 3, "one replica per node: {by_node:?}");
        s.ok(&["scale", "deployment", "spread", "--replicas", "4"]);
        s.wait_for("a 4th replica unschedulable by anti-affinity", WAIT, || {
            let list = s.json(&["get", "pods", "-l", "app=spread"]);
            list["items"].as_array().into_iter().flatten().any(|p| {
                let (_, reason, msg) = scheduled_condition(p);
                node_of(p).is_empty()
                    && reason == "Unschedulable"
                    && msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
            })
        });
        s.ok(&["delete", "deployment", "spread"]);
    });

    checks.check("a NoSchedule taint repels pods without the toleration", || {
        s.ok(&["taint", "node", "skiff-a", "dedicated=special:NoSchedule"]);
        apply(&s, &deployment("plain", 6, ""));
        let by_node = running_by_node(&s, "plain", 6);
        assert!(!by_node.contains_key("skiff-a"), "a pod landed on the tainted node: {by_node:?}");
        let tolerating = "  nodeSelector: {kubernetes.io/hostname: skiff-a}\n  tolerations:\n    - {key: dedicated, operator: Equal, value: special, effect: NoSchedule}\n";
        apply(&s, &pod("tolerant", "app: tolerant", tolerating));
        let p = s.wait_pod("tolerant", WAIT, "Running", |p| support::phase(p) == "Running");
        assert_eq!(node_of(&p), "skiff-a");
        apply(&s, &pod("intolerant", "app: intolerant", "  nodeSelector: {kubernetes.io/hostname: skiff-a}\n"));
        let msg = unschedulable_message(&s, "intolerant");
        assert!(
            msg.starts_with("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: special}, 2 node(s) didn't match Pod's node affinity/selector."),
            "{msg}"
        );
        s.ok(&["taint", "node", "skiff-a", "dedicated=special:NoSchedule-"]);
        let p = s.wait_pod("intolerant", Duration::from_secs(15), "scheduled once the taint is gone", |p| !node_of(p).is_empty());
        assert_eq!(node_of(&p), "skiff-a");
        s.ok(&["delete", "deployment", "plain"]);
        s.ok(&["delete", "pod", "tolerant", "intolerant", "--wait=false"]);
    });

    checks.check("topology spread with maxSkew 1 over zones", || {
        s.ok(&["label", "node", "skiff-e2e", "topology.kubernetes.io/zone=zone-1", "--overwrite"]);
        s.ok(&["label", "node", "skiff-a", "topology.kubernetes.io/zone=zone-2", "--overwrite"]);
        s.ok(&["label", "node", "skiff-b", "topology.kubernetes.io/zone=zone-2", "--overwrite"]);
        let spread = "      topologySpreadConstraints:\n        - maxSkew: 1\n          topologyKey: topology.kubernetes.io/zone\n          whenUnsatisfiable: DoNotSchedule\n          labelSelector: {matchLabels: {app: zoned}}\n";
        apply(&s, &deployment("zoned", 6, spread));
        let by_node = running_by_node(&s, "zoned", 6);
        let zone1 = by_node.get("skiff-e2e").copied().unwrap_or(0);
        let zone2 = by_node.get("skiff-a").copied().unwrap_or(0) + by_node.get("skiff-b").copied().unwrap_or(0);
        assert_eq!((zone1, zone2), (3, 3), "3 pods per zone: {by_node:?}");
        s.ok(&["delete", "deployment", "zoned"]);
    });

    checks.check("a pod that fits nowhere waits with the reason and is placed when room is made", || {
        // One slot of an extended resource, on one node.
        s.ok(&[
            "patch", "node", "skiff-b", "--subresource=status", "--type=merge", "-p",
            r#"{"status":{"capacity":{"example.com/slot":"1"},"allocatable":{"example.com/slot":"1"}}}"#,
        ]);
        let wants_slot = "  containers:\n    - name: main\n      image: test-guest:e2e\n      args: [sleep, \"3600\"]\n      resources: {requests: {example.com/slot: \"1\"}, limits: {example.com/slot: \"1\"}}\n";
        let slot_pod = |name: &str, extra: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasmtime\n  terminationGracePeriodSeconds: 1\n{extra}{wants_slot}")
        };
        apply(&s, &slot_pod("first", ""));
        let p = s.wait_pod("first", WAIT, "Running", |p| support::phase(p) == "Running");
        assert_eq!(node_of(&p), "skiff-b");
        apply(&s, &slot_pod("second", ""));
        let msg = unschedulable_message(&s, "second");
        assert!(
            msg.starts_with("0/3 nodes are available: 3 Insufficient example.com/slot. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."),
            "{msg}"
        );
        let freed = Instant::now();
        s.ok(&["delete", "pod", "first", "--wait=false"]);
        let p = s.wait_pod("second", Duration::from_secs(30), "scheduled once the slot is free", |p| !node_of(p).is_empty());
        assert_eq!(node_of(&p), "skiff-b");
        eprintln!("second pod bound {:?} after the first was deleted", freed.elapsed());

        // Preemption: a high-priority pod takes the slot from a low-priority one.
        apply(&s, "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n");
        s.ok(&["delete", "pod", "second", "--wait=false"]);
        apply(&s, &slot_pod("victim", "  priorityClassName: low\n"));
        let victim = s.wait_pod("victim", WAIT, "Running", |p| support::phase(p) == "Running");
        assert_eq!(victim["spec"]["priority"], 10, "priority admission resolves the class");
        apply(&s, &slot_pod("preemptor", "  priorityClassName: high\n"));
        let p = s.wait_pod("preemptor", WAIT, "Running on the victim's node", |p| {
            support::phase(p) == "Running" && node_of(p) == "skiff-b"
        });
        assert_eq!(p["spec"]["priority"], 1000);
        let events = s.json(&["get", "events", "--field-selector", "involvedObject.name=victim"]);
        let uid = p["metadata"]["uid"].as_str().unwrap_or("");
        assert!(
            events["items"].as_array().into_iter().flatten().any(|e| e["reason"] == "Preempted"
                && e["message"] == format!("Preempted by pod {uid} on node skiff-b").as_str()),
            "no Preempted event: {events}"
        );
        let out = s.kubectl(&["get", "pod", "victim"]);
        assert!(!out.status.success(), "the victim is gone");
        s.ok(&["delete", "pod", "preemptor", "--wait=false"]);
    });

    checks.check("the bin-packing profile packs pods onto the fullest node", || {
        for node in ["skiff-a", "skiff-b"] {
            s.ok(&[
                "patch", "node", node, "--subresource=status", "--type=merge", "-p",
                r#"{"status":{"capacity":{"example.com/slot":"4"},"allocatable":{"example.com/slot":"4"}}}"#,
            ]);
        }
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("packed-{i}");
            let extra = "  schedulerName: bin-packing\n";
            let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasmtime\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n    - name: main\n      image: test-guest:e2e\n      args: [sleep, \"3600\"]\n      resources: {{requests: {{example.com/slot: \"1\"}}, limits: {{example.com/slot: \"1\"}}}}\n");
            apply(&s, &yaml);
            let p = s.wait_pod(&name, WAIT, "scheduled", |p| !node_of(p).is_empty());
            nodes.push(node_of(&p).to_string());
        }
        assert!(nodes.iter().all(|n| *n == nodes[0]), "MostAllocated packs: {nodes:?}");
        s.ok(&["delete", "pod", "packed-0", "packed-1", "packed-2", "--wait=false"]);
    });

    checks.check("a gated pod waits until its gates are removed", || {
        apply(&s, &pod("gated", "app: gated", "  schedulingGates: [{name: example.com/wait}]\n"));
        let p = s.wait_pod("gated", WAIT, "SchedulingGated", |p| {
            scheduled_condition(p).1 == "SchedulingGated"
        });
        assert_eq!(node_of(&p), "");
        s.ok(&[
            "patch",
            "pod",
            "gated",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#,
        ]);
        s.wait_pod("gated", Duration::from_secs(15), "scheduled once ungated", |p| {
            !node_of(p).is_empty()
        });
        s.ok(&["delete", "pod", "gated", "--wait=false"]);
    });

    checks.check("a pod for another scheduler is left alone", || {
        apply(&s, &pod("elsewhere", "app: elsewhere", "  schedulerName: my-scheduler\n"));
        // The scheduler sees pods in the order they were written: once a later pod is
        // bound, it has seen (and skipped) the first.
        apply(&s, &pod("witness", "app: witness", ""));
        s.wait_pod("witness", WAIT, "scheduled", |p| !node_of(p).is_empty());
        let p = s.json(&["get", "pod", "elsewhere"]);
        assert_eq!(node_of(&p), "");
        assert_eq!(
            scheduled_condition(&p).0,
            "",
            "no PodScheduled condition from default-scheduler"
        );
        s.ok(&["delete", "pod", "elsewhere", "witness", "--wait=false"]);
    });

    checks.check("scheduler metrics", || {
        let metrics = s.ok(&["get", "--raw", "/metrics"]);
        for want in [
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}",
            "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}",
            "scheduler_scheduling_attempt_duration_seconds_bucket{",
            "scheduler_pending_pods{queue=\"unschedulable\"}",
            "scheduler_preemption_attempts_total",
            "leader_election_master_status{name=\"kube-scheduler\"} 1",
        ] {
            assert!(metrics.contains(want), "missing {want}");
        }
        let lease = s.json(&["get", "lease", "-n", "kube-system", "kube-scheduler"]);
        assert!(lease["spec"]["holderIdentity"].as_str().is_some_and(|h| h.starts_with("skiff-e2e_")), "{lease}");
    });

    checks.finish("scheduler e2e");
}
