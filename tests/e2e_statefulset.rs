//! End-to-end: the StatefulSet and DaemonSet controllers with the real kubectl and Wasm pods
//! (the test guest sleeping, Ready once it has written a file its exec probe looks for).
//! A StatefulSet starts its pods in ordinal order (each only once the one before is Ready,
//! read from a watch), scales down from the highest ordinal, brings a deleted pod back
//! under the same name, creates claims from its volumeClaimTemplates and rolls an update
//! out down to its partition; a DaemonSet runs one pod on the node, follows its node
//! selector and rolls out; `kubectl rollout status` finishes for both.

mod support;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::{Skiff, guest, tools_dir};

const NODE: &str = "skiff-e2e";
const WAIT: Duration = Duration::from_secs(120);

/// The container of every test pod: Ready a second after it starts, then sleeps.
fn sleeper(env: &str) -> String {
    format!(
        r#"
      terminationGracePeriodSeconds: 1
      runtimeClassName: wasmtime
      volumes: [{{name: work, emptyDir: {{}}}}]
      containers:
        - name: main
          image: test-guest:e2e
          imagePullPolicy: IfNotPresent
          command: ["guest", "script", "sleep 1; write /work/ready yes; sleep 3600"]
          env: [{{name: VERSION, value: "{env}"}}]
          volumeMounts: [{{name: work, mountPath: /work}}]
          readinessProbe:
            exec: {{command: ["guest", "exists", "/work/ready"]}}
            periodSeconds: 1"#
    )
}

/// A server with the test guest imported (the temp dir lives as long as the server).
fn start() -> (tempfile::TempDir, Skiff) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    (dir, s)
}

fn apply(s: &Skiff, yaml: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Pods matching `selector`, by name.
fn pods(s: &Skiff, selector: &str) -> BTreeMap<String, Value> {
    let list = s.json(&["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["metadata"]["name"].as_str().unwrap_or("").to_string(), p.clone()))
        .collect()
}

/// Wait until the pods matching `selector` are exactly `names`, all Ready and not terminating.
fn wait_ready_pods(s: &Skiff, selector: &str, names: &[&str]) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    let what = format!("pods {names:?} Ready");
    s.wait_for(&what, WAIT, || {
        last = pods(s, selector);
        last.keys().map(String::as_str).eq(names.iter().copied())
            && last.values().all(|p| is_ready(p) && p["metadata"]["deletionTimestamp"].is_null())
    });
    last
}

fn no_owners(obj: &Value) -> bool {
    obj["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// A `kubectl get pods --watch` running beside the test: every event, in order.
struct PodWatch {
    child: Child,
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl PodWatch {
    fn start(s: &Skiff, selector: &str) -> PodWatch {
        let mut child = Command::new(tools_dir().join("kubectl"))
            .env("HOME", s.tool_home())
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get --watch");
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout));
            for ev in stream.into_iter::<Value>().map_while(Result::ok) {
                let ty = ev["type"].as_str().unwrap_or("").to_string();
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((ty, ev["object"].clone()));
            }
        });
        PodWatch { child, events }
    }

    /// Wait until the watch has listed the `n` pods that exist already (kubectl prints them
    /// as ADDED before it watches), so that changes made next are seen as they happen.
    fn wait_listed(&self, s: &Skiff, n: usize) {
        s.wait_for(&format!("the pod watch to list {n} pods"), Duration::from_secs(30), || {
            self.events().iter().filter(|(ty, _)| ty == "ADDED").count() >= n
        });
    }

    fn events(&self) -> Vec<(String, Value)> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Names in the order they first showed up (ADDED), and in the order their deletion
    /// began (a deletionTimestamp, or DELETED, whichever came first).
    fn orders(&self) -> (Vec<String>, Vec<String>) {
        let (mut added, mut deleting) = (Vec::new(), Vec::new());
        for (ty, pod) in self.events() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            if ty == "ADDED" && !added.contains(&name) {
                added.push(name.clone());
            }
            let going = ty == "DELETED" || !pod["metadata"]["deletionTimestamp"].is_null();
            if going && !deleting.contains(&name) {
                deleting.push(name);
            }
        }
        (added, deleting)
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn statefulset(name: &str, replicas: i32, policy: &str, extra_spec: &str, env: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  clusterIP: None
  selector: {{app: {name}}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  serviceName: {name}
  replicas: {replicas}
  podManagementPolicy: {policy}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{sleeper}
"#,
        sleeper = sleeper(env)
    )
}

fn rollout_status(s: &Skiff, what: &str) -> String {
    s.ok(&["rollout", "status", what, "--timeout=120s"])
}

#[test]
fn statefulset_should_start_in_order_scale_down_in_reverse_and_keep_names() {
    let _serial = support::serial();
    let (_dir, s) = start();
    let watch = PodWatch::start(&s, "app=web");
    apply(&s, &statefulset("web", 3, "OrderedReady", "", "v1"));
    let ready = wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);

    // Ordered start: in the watch, pod i appears only after pod i-1 was seen Ready.
    let mut seen_ready: Vec<String> = Vec::new();
    for (ty, pod) in watch.events() {
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        if ty == "ADDED" {
            let ord: usize = name.trim_start_matches("web-").parse().expect("ordinal");
            if ord > 0 {
                let prev = format!("web-{}", ord - 1);
                assert!(seen_ready.contains(&prev), "{name} was created before {prev} was Ready");
            }
        }
        if is_ready(&pod) && !seen_ready.contains(&name) {
            seen_ready.push(name);
        }
    }
    let (added, _) = watch.orders();
    assert_eq!(added, ["web-0", "web-1", "web-2"]);
    // The same from the objects: each pod was created no earlier than its predecessor was Ready.
    for i in 1..3 {
        let prev = &ready[&format!("web-{}", i - 1)];
        let ready_at = prev["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("")
            .to_string();
        let created =
            ready[&format!("web-{i}")]["metadata"]["creationTimestamp"].as_str().unwrap_or("");
        assert!(
            created >= ready_at.as_str(),
            "web-{i} created {created}, web-{} Ready {ready_at}",
            i - 1
        );
    }

    // Identity: labels, hostname and subdomain.
    let p1 = &ready["web-1"];
    assert_eq!(p1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(p1["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(p1["spec"]["hostname"], "web-1");
    assert_eq!(p1["spec"]["subdomain"], "web");
    assert_eq!(p1["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    let sts = s.json(&["get", "statefulset", "web"]);
    let rev = sts["status"]["updateRevision"].as_str().unwrap_or("").to_string();
    assert!(rev.starts_with("web-"), "updateRevision {rev}");
    assert_eq!(p1["metadata"]["labels"]["controller-revision-hash"], rev.as_str());
    for (field, want) in [
        ("replicas", 3),
        ("readyReplicas", 3),
        ("currentReplicas", 3),
        ("updatedReplicas", 3),
        ("availableReplicas", 3),
    ] {
        assert_eq!(sts["status"][field], want, "status.{field}: {}", sts["status"]);
    }
    assert_eq!(sts["status"]["currentRevision"], rev.as_str());
    assert_eq!(sts["status"]["observedGeneration"], sts["metadata"]["generation"]);
    let out = rollout_status(&s, "statefulset/web");
    assert!(
        // kubectl reports every RollingUpdate with a rollingUpdate block (which the api
        // server defaults, partition 0) as a partitioned roll out.
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let revs = s.json(&["get", "controllerrevisions"]);
    let names: Vec<&str> = revs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, [rev.as_str()], "one ControllerRevision");

    // A deleted pod comes back under its name.
    let old_uid = uid(&ready["web-1"]);
    s.ok(&["delete", "pod", "web-1", "--wait=false"]);
    let back =
        s.wait_pod("web-1", WAIT, "recreated and Ready", |p| uid(p) != old_uid && is_ready(p));
    assert_eq!(back["spec"]["hostname"], "web-1");

    // Scale down: web-2 goes first and is gone before web-1 starts terminating; web-0 stays.
    drop(watch);
    wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);
    let watch = PodWatch::start(&s, "app=web");
    watch.wait_listed(&s, 3);
    let web0 = uid(&pods(&s, "app=web")["web-0"]);
    s.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    let left = wait_ready_pods(&s, "app=web", &["web-0"]);
    assert_eq!(uid(&left["web-0"]), web0, "web-0 kept");
    let (_, deleting) = watch.orders();
    assert_eq!(deleting, ["web-2", "web-1"], "reverse ordinal order");
    let events = watch.events();
    let gone2 =
        events.iter().position(|(ty, p)| ty == "DELETED" && p["metadata"]["name"] == "web-2");
    let going1 = events.iter().position(|(_, p)| {
        p["metadata"]["name"] == "web-1" && !p["metadata"]["deletionTimestamp"].is_null()
    });
    assert!(
        gone2.is_some() && going1.is_some() && gone2 < going1,
        "web-2 must be gone before web-1 is deleted"
    );

    // Scale up again: the same names, in order.
    s.ok(&["scale", "statefulset", "web", "--replicas=2"]);
    wait_ready_pods(&s, "app=web", &["web-0", "web-1"]);

    let events = s.ok(&["get", "events", "--field-selector", "involvedObject.name=web"]);
    for want in [
        "create Pod web-0 in StatefulSet web successful",
        "delete Pod web-2 in StatefulSet web successful",
    ] {
        assert!(events.contains(want), "events lack {want:?}:\n{events}");
    }
    let describe = s.ok(&["describe", "statefulset", "web"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
}

#[test]
fn statefulset_should_create_claims_and_roll_out_down_to_the_partition() {
    let _serial = support::serial();
    let (_dir, s) = start();
    // Local volumes on the node, one per claim plus a spare (a claim removed on scale-down
    // leaves its volume Released), offered through a WaitForFirstConsumer class: the
    // scheduler binds each claim when it places the claim's pod.
    let mut volumes = String::from(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-wffc}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    for i in 0..4 {
        let pv_dir = s.dir.join(format!("pv-data-{i}"));
        std::fs::create_dir_all(&pv_dir).expect("pv dir");
        volumes.push_str(&format!(
            r#"---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-db-{i}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: local-wffc
  local: {{path: {}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [skiff-e2e]}}]
"#,
            pv_dir.display()
        ));
    }
    apply(&s, &volumes);
    let extra = r#"  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Delete}
  volumeClaimTemplates:
    - metadata: {name: data, labels: {tier: storage}}
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: local-wffc
        resources: {requests: {storage: 1Mi}}"#;
    let mut manifest = statefulset("db", 3, "Parallel", extra, "v1");
    manifest = manifest.replace(
        "volumeMounts: [{name: work, mountPath: /work}]",
        "volumeMounts: [{name: work, mountPath: /work}, {name: data, mountPath: /data}]",
    );
    apply(&s, &manifest);
    let ready = wait_ready_pods(&s, "app=db", &["db-0", "db-1", "db-2"]);

    // One claim per pod, named <claim>-<set>-<ordinal>, labelled, and mounted by its pod.
    let claims = s.json(&["get", "pvc"]);
    let mut names: Vec<String> = claims["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["data-db-0", "data-db-1", "data-db-2"]);
    let mut bound_to = std::collections::BTreeSet::new();
    for c in claims["items"].as_array().unwrap() {
        // Bound by the scheduler's VolumeBinding to a volume of its own.
        assert_eq!(c["status"]["phase"], "Bound", "{}", c["metadata"]["name"]);
        let pv = c["spec"]["volumeName"].as_str().unwrap_or("").to_string();
        assert!(pv.starts_with("pv-db-"), "{pv}");
        assert!(bound_to.insert(pv), "two claims on one volume");
        assert_eq!(c["metadata"]["labels"]["tier"], "storage");
        assert_eq!(c["metadata"]["labels"]["app"], "db");
        assert!(no_owners(c), "whenDeleted: Retain: no owner: {}", c["metadata"]);
    }
    let vols = ready["db-2"]["spec"]["volumes"].as_array().unwrap().clone();
    let data = vols.iter().find(|v| v["name"] == "data").expect("data volume");
    assert_eq!(data["persistentVolumeClaim"]["claimName"], "data-db-2");

    // whenScaled: Delete — before the removed pod goes, its claim names it as owner, so the
    // garbage collector takes the claim with the pod; the claims still in range stay.
    s.ok(&["scale", "statefulset", "db", "--replicas=2"]);
    wait_ready_pods(&s, "app=db", &["db-0", "db-1"]);
    s.wait_for("data-db-2 collected with its pod", WAIT, || {
        let out = s.kubectl(&["get", "pvc", "data-db-2"]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
    for kept in ["data-db-0", "data-db-1"] {
        let claim = s.json(&["get", "pvc", kept]);
        assert!(no_owners(&claim), "{}", claim["metadata"]);
    }
    s.ok(&["scale", "statefulset", "db", "--replicas=3"]);
    let ready = wait_ready_pods(&s, "app=db", &["db-0", "db-1", "db-2"]);
    // Back in range: the claim is made again, owned by no pod.
    s.wait_for("data-db-2 without a pod owner", WAIT, || {
        let out = s.kubectl(&["get", "pvc", "data-db-2", "-o", "json"]);
        let claim: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        out.status.success() && no_owners(&claim)
    });
    let before: BTreeMap<String, String> = ready.iter().map(|(n, p)| (n.clone(), uid(p))).collect();
    let rev1 = s.json(&["get", "statefulset", "db"])["status"]["updateRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();

    // Partition 2: only db-2 is updated.
    s.ok(&["patch", "statefulset", "db", "--type=strategic", "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}},"template":{"spec":{"containers":[{"name":"main","env":[{"name":"VERSION","value":"v2"}]}]}}}}"#]);
    let out = rollout_status(&s, "statefulset/db");
    assert!(out.contains("partitioned roll out complete: 1 new pods have been updated"), "{out}");
    let sts = s.json(&["get", "statefulset", "db"]);
    let rev2 = sts["status"]["updateRevision"].as_str().unwrap_or("").to_string();
    assert_ne!(rev1, rev2);
    assert_eq!(sts["status"]["currentRevision"], rev1.as_str());
    assert_eq!(sts["status"]["updatedReplicas"], 1);
    assert_eq!(sts["status"]["currentReplicas"], 2);
    let now = wait_ready_pods(&s, "app=db", &["db-0", "db-1", "db-2"]);
    let rev_of = |p: &Value| {
        p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(rev_of(&now["db-2"]), rev2);
    assert_ne!(uid(&now["db-2"]), before["db-2"]);
    for n in ["db-0", "db-1"] {
        assert_eq!(uid(&now[n]), before[n], "{n} is below the partition");
        assert_eq!(rev_of(&now[n]), rev1);
    }

    // Partition 0: the rest follow, highest ordinal first.
    let watch = PodWatch::start(&s, "app=db");
    watch.wait_listed(&s, 3);
    s.ok(&[
        "patch",
        "statefulset",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let out = rollout_status(&s, "statefulset/db");
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    let (_, deleting) = watch.orders();
    assert_eq!(deleting, ["db-1", "db-0"]);
    let sts = s.json(&["get", "statefulset", "db"]);
    assert_eq!(sts["status"]["currentRevision"], rev2.as_str());
    let history = s.ok(&["rollout", "history", "statefulset/db"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo: the first revision's template comes back (renumbered 3, same name).
    s.ok(&["rollout", "undo", "statefulset/db"]);
    rollout_status(&s, "statefulset/db");
    s.wait_for("every pod back at the first revision", WAIT, || {
        let now = pods(&s, "app=db");
        now.len() == 3 && now.values().all(|p| is_ready(p) && rev_of(p) == rev1)
    });
    let sts = s.json(&["get", "statefulset", "db"]);
    assert_eq!(sts["status"]["updateRevision"], rev1.as_str());
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "v1");
    let rev = s.json(&["get", "controllerrevision", &rev1]);
    assert_eq!(rev["revision"], 3);
}

fn daemonset(name: &str, extra_pod_spec: &str, env: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{extra_pod_spec}{sleeper}
"#,
        sleeper = sleeper(env)
    )
}

/// Wait for DaemonSet `name` to have rolled out (kubectl) with exactly one Ready pod on each
/// of `nodes`, each bound to its node and pinned there by node affinity; returns the pods
/// by name. Made to be called with every node of a cluster.
fn daemon_pods_on(s: &Skiff, name: &str, nodes: &[&str]) -> BTreeMap<String, Value> {
    let out = rollout_status(s, &format!("daemonset/{name}"));
    assert!(out.contains(&format!("daemon set \"{name}\" successfully rolled out")), "{out}");
    let mut last = BTreeMap::new();
    s.wait_for(&format!("one Ready {name} pod on each of {nodes:?}"), WAIT, || {
        last = pods(s, &format!("app={name}"));
        let mut on: Vec<&str> =
            last.values().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
        on.sort();
        let mut want = nodes.to_vec();
        want.sort();
        on == want && last.values().all(is_ready)
    });
    for (pod_name, pod) in &last {
        assert!(pod_name.starts_with(&format!("{name}-")), "{pod_name}");
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"][0]["key"], "metadata.name");
        assert_eq!(term["matchFields"][0]["values"][0], node);
    }
    let ds = s.json(&["get", "daemonset", name]);
    let n = nodes.len();
    for field in [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "numberAvailable",
        "updatedNumberScheduled",
    ] {
        assert_eq!(ds["status"][field], n, "status.{field}: {}", ds["status"]);
    }
    assert_eq!(ds["status"]["numberMisscheduled"], 0);
    last
}

#[test]
fn daemonset_should_run_on_the_node_follow_its_selector_and_roll_out() {
    let _serial = support::serial();
    let (_dir, s) = start();
    apply(&s, &daemonset("agent", "", "v1"));
    let first = daemon_pods_on(&s, "agent", &[NODE]);
    let (name, pod) = first.iter().next().unwrap();
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(tolerations.contains("node.kubernetes.io/unreachable"), "{tolerations}");
    let ds = s.json(&["get", "daemonset", "agent"]);
    assert_eq!(ds["status"]["observedGeneration"], ds["metadata"]["generation"]);

    // A deleted pod is replaced.
    s.ok(&["delete", "pod", name, "--wait=false"]);
    s.wait_for("a replacement pod", WAIT, || {
        let now = pods(&s, "app=agent");
        now.len() == 1 && !now.contains_key(name) && now.values().all(is_ready)
    });

    // Rolling update: the pod is replaced by one of the new revision.
    let before = pods(&s, "app=agent");
    apply(&s, &daemonset("agent", "", "v2"));
    let out = rollout_status(&s, "daemonset/agent");
    assert!(out.contains("successfully rolled out"), "{out}");
    s.wait_for("the new pod alone", WAIT, || {
        let now = pods(&s, "app=agent");
        now.len() == 1 && now.keys().all(|k| !before.contains_key(k)) && now.values().all(is_ready)
    });
    let now = pods(&s, "app=agent");
    let pod = now.values().next().unwrap();
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "v2");
    let revs = s.json(&["get", "controllerrevisions", "-l", "app=agent"]);
    assert_eq!(revs["items"].as_array().map(Vec::len), Some(2), "two revisions");
    let hash =
        pod["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("").to_string();
    assert!(
        revs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["metadata"]["name"] == format!("agent-{hash}").as_str())
    );

    // Undo: back to the first template.
    s.ok(&["rollout", "undo", "daemonset/agent"]);
    let back = daemon_pods_on(&s, "agent", &[NODE]);
    let pod = back.values().next().unwrap();
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "v1");

    // A node selector: no pod until the node carries the label, none once it is removed.
    apply(&s, &daemonset("ssd", "\n      nodeSelector: {disk: ssd}", "v1"));
    s.wait_for("ssd status observed", WAIT, || {
        let ds = s.json(&["get", "daemonset", "ssd"]);
        ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
    });
    assert_eq!(s.json(&["get", "daemonset", "ssd"])["status"]["desiredNumberScheduled"], 0);
    assert!(pods(&s, "app=ssd").is_empty());
    s.ok(&["label", "node", NODE, "disk=ssd"]);
    let out = rollout_status(&s, "daemonset/ssd");
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(pods(&s, "app=ssd").len(), 1);
    s.ok(&["label", "node", NODE, "disk-"]);
    s.wait_for("ssd pod removed", WAIT, || pods(&s, "app=ssd").is_empty());
    let events = s.ok(&["get", "events", "--field-selector", "involvedObject.name=ssd"]);
    assert!(
        events.contains("Created pod: ssd-") && events.contains("Deleted pod: ssd-"),
        "{events}"
    );

    // A NoSchedule taint: the running daemon pod stays, a new DaemonSet gets no pod until
    // it tolerates the taint.
    s.ok(&["taint", "node", NODE, "dedicated=infra:NoSchedule"]);
    apply(&s, &daemonset("late", "", "v1"));
    s.wait_for("late status observed", WAIT, || {
        let ds = s.json(&["get", "daemonset", "late"]);
        ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
    });
    assert_eq!(s.json(&["get", "daemonset", "late"])["status"]["desiredNumberScheduled"], 0);
    assert!(pods(&s, "app=late").is_empty());
    assert_eq!(pods(&s, "app=agent").len(), 1, "NoSchedule does not evict");
    let tolerant = daemonset(
        "late",
        "\n      tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]",
        "v1",
    );
    apply(&s, &tolerant);
    daemon_pods_on(&s, "late", &[NODE]);
    s.ok(&["taint", "node", NODE, "dedicated-"]);
}
