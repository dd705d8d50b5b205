//! End-to-end: a Deployment of Wasm pods driven by the real kubectl — scale 3→10→2, a deleted
//! pod healed, a rolling update with maxUnavailable=0 during which a watcher asserts on every
//! pod event that at least `replicas` pods are Ready, `kubectl rollout status|history|undo|
//! pause|resume|restart`, the events and status fields kubectl reads, Recreate, and a rollout
//! that exceeds its progress deadline.

mod support;

use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::{Checks, Skiff, guest, tools_dir};

const REPLICAS: usize = 3;

/// Ready one second after start (the readiness probe looks for the file the guest writes), so
/// that a rollout really has pods that run but are not Ready yet.
fn manifest(replicas: usize) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  revisionHistoryLimit: 10
  selector:
    matchLabels: {{app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      runtimeClassName: wasmtime
      terminationGracePeriodSeconds: 1
      volumes: [{{name: work, emptyDir: {{}}}}]
      containers:
        - name: app
          image: test-guest:e2e
          imagePullPolicy: IfNotPresent
          command: ["guest", "script", "sleep 1; write /work/ready yes; sleep 3600"]
          env: [{{name: VERSION, value: "1"}}]
          volumeMounts: [{{name: work, mountPath: /work}}]
          readinessProbe:
            exec: {{command: ["guest", "exists", "/work/ready"]}}
            periodSeconds: 1
"#
    )
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn hash_of(pod: &Value) -> String {
    pod["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_string()
}

/// The web pods not being deleted.
fn live_pods(s: &Skiff) -> Vec<Value> {
    let list = s.json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .map(|a| {
            a.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
        })
        .unwrap_or_default()
}

fn deployment(s: &Skiff) -> Value {
    s.json(&["get", "deployment", "web"])
}

fn condition<'a>(d: &'a Value, type_: &str) -> &'a Value {
    d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// The ReplicaSets of the Deployment by name: (revision, spec replicas, VERSION of the template).
fn sets(s: &Skiff) -> HashMap<String, (String, i64, String)> {
    let list = s.json(&["get", "rs", "-l", "app=web"]);
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|rs| {
                    let env = &rs["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"];
                    (
                        rs["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                        (
                            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                            env.as_str().unwrap_or_default().to_string(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rollout_status(s: &Skiff) -> String {
    s.ok(&["rollout", "status", "deployment/web", "--timeout=120s"])
}

/// Every status field kubectl and helm read says `n` replicas, all updated and available.
fn assert_settled(s: &Skiff, n: i64) {
    let d = deployment(s);
    let st = &d["status"];
    assert_eq!(st["observedGeneration"], d["metadata"]["generation"], "{st}");
    for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
        assert_eq!(st[field].as_i64().unwrap_or(0), n, "{field}: {st}");
    }
    assert_eq!(st["unavailableReplicas"].as_i64().unwrap_or(0), 0, "{st}");
    let avail = condition(&d, "Available");
    assert_eq!(
        (avail["status"].as_str(), avail["reason"].as_str()),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );
    let prog = condition(&d, "Progressing");
    assert_eq!(
        (prog["status"].as_str(), prog["reason"].as_str()),
        (Some("True"), Some("NewReplicaSetAvailable")),
        "{prog}"
    );
}

fn wait_live_ready(s: &Skiff, n: usize, what: &str) -> Vec<Value> {
    let mut pods = Vec::new();
    s.wait_for(what, Duration::from_secs(90), || {
        pods = live_pods(s);
        pods.len() == n && pods.iter().all(is_ready)
    });
    pods
}

/// Watches the web pods (`kubectl get pods -w`) and records, after each event once the first
/// `REPLICAS` pods were Ready, the number of Ready pods not being deleted.
struct ReadyWatch {
    child: std::process::Child,
    seen: Arc<Mutex<(usize, Vec<usize>)>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ReadyWatch {
    fn start(s: &Skiff) -> ReadyWatch {
        let mut child = Command::new(tools_dir().join("kubectl"))
            .env("HOME", s.tool_home())
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["get", "pods", "-l", "app=web", "-w", "--output-watch-events", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new((0usize, Vec::new())));
        let out = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut pods: HashMap<String, Value> = HashMap::new();
            let mut armed = false;
            for ev in
                serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>()
            {
                let Ok(ev) = ev else { break };
                let obj = &ev["object"];
                let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
                if ev["type"] == "DELETED" {
                    pods.remove(&name);
                } else {
                    pods.insert(name, obj.clone());
                }
                let ready = pods
                    .values()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
                    .count();
                armed |= ready >= REPLICAS;
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                o.0 += 1;
                if armed {
                    o.1.push(ready);
                }
            }
        });
        ReadyWatch { child, seen, reader: Some(reader) }
    }

    /// (events seen, Ready counts after each event once armed).
    fn stop(mut self) -> (usize, Vec<usize>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[test]
fn deployment_should_scale_heal_roll_out_and_roll_back_wasm_pods() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let mut c = Checks::default();

    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest(REPLICAS));
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));

    c.check("created: 3 pods of one ReplicaSet, revision 1", || {
        let out = rollout_status(&s);
        assert!(out.contains("\"web\" successfully rolled out"), "{out}");
        let pods = wait_live_ready(&s, 3, "3 Ready pods");
        let rs = sets(&s);
        assert_eq!(rs.len(), 1, "{rs:?}");
        let (name, (rev, replicas, _)) = rs.iter().next().expect("one set");
        assert_eq!((rev.as_str(), *replicas), ("1", 3));
        let hash = hash_of(&pods[0]);
        assert_eq!(name, &format!("web-{hash}"));
        for p in &pods {
            assert_eq!(hash_of(p), hash);
            let pname = p["metadata"]["name"].as_str().unwrap_or_default();
            assert!(pname.starts_with(&format!("web-{hash}-")), "{pname}");
            let owner = &p["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["kind"].as_str(), owner["name"].as_str()),
                (Some("ReplicaSet"), Some(name.as_str()))
            );
            assert_eq!(owner["controller"], true);
        }
        let rsj = s.json(&["get", "rs", name]);
        let ann = &rsj["metadata"]["annotations"];
        assert_eq!(ann["deployment.kubernetes.io/desired-replicas"], "3");
        assert_eq!(ann["deployment.kubernetes.io/max-replicas"], "4");
        assert_eq!(rsj["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash.as_str());
        let st = &rsj["status"];
        assert_eq!(
            (
                st["replicas"].as_i64(),
                st["readyReplicas"].as_i64(),
                st["availableReplicas"].as_i64()
            ),
            (Some(3), Some(3), Some(3))
        );
        assert_eq!(st["fullyLabeledReplicas"].as_i64(), Some(3));
        assert_eq!(st["observedGeneration"], rsj["metadata"]["generation"]);
        assert_eq!(
            deployment(&s)["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "1"
        );
        assert_settled(&s, 3);
    });

    c.check("scale 3 -> 10 -> 2", || {
        s.ok(&["scale", "deployment/web", "--replicas=10"]);
        rollout_status(&s);
        wait_live_ready(&s, 10, "10 Ready pods");
        s.wait_for("status of 10", Duration::from_secs(30), || {
            deployment(&s)["status"]["availableReplicas"].as_i64() == Some(10)
        });
        assert_settled(&s, 10);
        s.ok(&["scale", "deployment/web", "--replicas=2"]);
        wait_live_ready(&s, 2, "2 pods left");
        s.wait_for("status of 2", Duration::from_secs(30), || {
            deployment(&s)["status"]["replicas"].as_i64() == Some(2)
        });
        assert_settled(&s, 2);
        let rs = sets(&s);
        assert_eq!(rs.len(), 1, "scaling makes no new set: {rs:?}");
        assert_eq!(rs.values().next().map(|v| v.1), Some(2));
    });

    c.check("a deleted pod is replaced", || {
        let before = live_pods(&s);
        assert_eq!(before.len(), 2);
        let victim = before[0]["metadata"]["name"].as_str().unwrap_or_default().to_string();
        s.ok(&["delete", "pod", &victim, "--wait=false"]);
        let pods = wait_live_ready(&s, 2, "the deleted pod replaced");
        assert!(
            pods.iter().all(|p| p["metadata"]["name"] != victim.as_str()),
            "{victim} still there"
        );
        let rs_name = sets(&s).keys().next().cloned().unwrap_or_default();
        let events =
            s.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={rs_name}")]);
        assert!(
            events.contains("SuccessfulCreate") && events.contains("Created pod: "),
            "{events}"
        );
        assert!(
            events.contains("SuccessfulDelete") && events.contains("Deleted pod: "),
            "{events}"
        );
    });

    s.ok(&["scale", "deployment/web", &format!("--replicas={REPLICAS}")]);
    rollout_status(&s);
    wait_live_ready(&s, REPLICAS, "3 pods again");
    let first_set = sets(&s).keys().next().cloned().unwrap_or_default();

    c.check("rolling update keeps replicas Ready throughout", || {
        let watch = ReadyWatch::start(&s);
        s.wait_for("the watcher sees the pods", Duration::from_secs(20), || {
            let seen = watch.seen.lock().map(|g| g.1.len()).unwrap_or(0);
            seen > 0
        });
        s.ok(&["set", "env", "deployment/web", "VERSION=2"]);
        s.ok(&["annotate", "deployment/web", "kubernetes.io/change-cause=version 2"]);
        let out = rollout_status(&s);
        assert!(out.contains("successfully rolled out"), "{out}");
        let pods = wait_live_ready(&s, REPLICAS, "3 new pods");
        let (events, counts) = watch.stop();
        assert!(events > 2 * REPLICAS, "the watcher saw the rollout: {events} events");
        assert!(
            counts.iter().all(|n| *n >= REPLICAS),
            "fewer than {REPLICAS} Ready pods during the rollout: {counts:?}"
        );
        let rs = sets(&s);
        assert_eq!(rs.len(), 2, "{rs:?}");
        assert_eq!(rs[&first_set].1, 0, "old set scaled to zero");
        let (new_name, new) = rs.iter().find(|(n, _)| **n != first_set).expect("new set");
        assert_eq!((new.0.as_str(), new.1, new.2.as_str()), ("2", 3, "2"));
        assert!(pods.iter().all(|p| format!("web-{}", hash_of(p)) == *new_name));
        assert_settled(&s, 3);
        let ev = s.ok(&["get", "events", "--field-selector", "involvedObject.name=web"]);
        assert!(ev.contains("ScalingReplicaSet"), "{ev}");
        assert!(ev.contains(&format!("Scaled up replica set {new_name} from 0 to 1")), "{ev}");
        assert!(ev.contains(&format!("Scaled down replica set {first_set} from 3 to 2")), "{ev}");
    });

    c.check("rollout history lists the revisions", || {
        let out = s.ok(&["rollout", "history", "deployment/web"]);
        let revs: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(revs, ["1", "2"], "{out}");
        assert!(out.contains("version 2"), "change-cause: {out}");
        let one = s.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
        assert!(
            one.contains("VERSION:\t1") || one.contains("VERSION: 1") || one.contains("VERSION:	1"),
            "{one}"
        );
    });

    c.check("rollout undo returns to the previous template", || {
        let out = s.ok(&["rollout", "undo", "deployment/web"]);
        assert!(out.contains("rolled back"), "{out}");
        rollout_status(&s);
        s.wait_for("back on the first set", Duration::from_secs(60), || {
            let rs = sets(&s);
            rs.get(&first_set).is_some_and(|v| v.1 == 3 && v.0 == "3")
        });
        let d = deployment(&s);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "1");
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
        let rsj = s.json(&["get", "rs", &first_set]);
        assert_eq!(
            rsj["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
            "1"
        );
        let pods = wait_live_ready(&s, REPLICAS, "pods of the first set");
        assert!(pods.iter().all(|p| format!("web-{}", hash_of(p)) == first_set));
        assert_eq!(sets(&s).len(), 2, "the first set was re-used");
        assert_settled(&s, 3);
    });

    c.check("pause holds the rollout, resume lets it go", || {
        s.ok(&["rollout", "pause", "deployment/web"]);
        s.ok(&["set", "env", "deployment/web", "VERSION=3"]);
        s.wait_for("paused condition", Duration::from_secs(20), || {
            let d = deployment(&s);
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && condition(&d, "Progressing")["reason"] == "DeploymentPaused"
        });
        let d = deployment(&s);
        assert_eq!(condition(&d, "Progressing")["status"], "Unknown");
        assert_eq!(sets(&s).len(), 2, "no new set while paused");
        assert!(live_pods(&s).iter().all(|p| format!("web-{}", hash_of(p)) == first_set));
        s.ok(&["rollout", "resume", "deployment/web"]);
        rollout_status(&s);
        let rs = sets(&s);
        assert_eq!(rs.len(), 3, "{rs:?}");
        assert!(rs.values().any(|v| v.2 == "3" && v.1 == 3 && v.0 == "4"), "{rs:?}");
        assert_settled(&s, 3);
    });

    c.check("rollout restart rolls new pods", || {
        let before: Vec<String> = live_pods(&s)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        s.ok(&["rollout", "restart", "deployment/web"]);
        rollout_status(&s);
        let pods = wait_live_ready(&s, REPLICAS, "restarted pods");
        assert!(pods.iter().all(|p| {
            !before.contains(&p["metadata"]["name"].as_str().unwrap_or_default().to_string())
        }));
        let d = deployment(&s);
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "5");
        assert_settled(&s, 3);
    });

    c.check("Recreate replaces every pod at once", || {
        let m =
            manifest(2).replace("name: web", "name: rec").replace("app: web", "app: rec").replace(
                "type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}",
                "type: Recreate",
            );
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &m);
        assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
        s.ok(&["rollout", "status", "deployment/rec", "--timeout=120s"]);
        let first = s.json(&["get", "rs", "-l", "app=rec"])["items"][0]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        s.ok(&["set", "env", "deployment/rec", "VERSION=2"]);
        s.ok(&["rollout", "status", "deployment/rec", "--timeout=120s"]);
        let ev = s.ok(&["get", "events", "--field-selector", "involvedObject.name=rec"]);
        assert!(ev.contains(&format!("Scaled down replica set {first} from 2 to 0")), "{ev}");
        let rs = s.json(&["get", "rs", "-l", "app=rec"]);
        let sizes: Vec<(String, i64)> = rs["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                            r["spec"]["replicas"].as_i64().unwrap_or(-1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert!(
            sizes.iter().any(|(n, r)| *n != first && *r == 2)
                && sizes.iter().any(|(n, r)| *n == first && *r == 0),
            "{sizes:?}"
        );
    });

    c.check("a rollout that never becomes Ready exceeds its progress deadline", || {
        let m = manifest(1)
            .replace("name: web", "name: stuck")
            .replace("app: web", "app: stuck")
            .replace(
                "revisionHistoryLimit: 10",
                "revisionHistoryLimit: 10\n  progressDeadlineSeconds: 3",
            )
            .replace("/work/ready\"]", "/work/never\"]");
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &m);
        assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
        let out = s.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "rollout status succeeded on a stuck rollout");
        assert!(err.contains("exceeded its progress deadline"), "{err}");
        let d = s.json(&["get", "deployment", "stuck"]);
        let p = condition(&d, "Progressing");
        assert_eq!(
            (p["status"].as_str(), p["reason"].as_str()),
            (Some("False"), Some("ProgressDeadlineExceeded")),
            "{p}"
        );
        assert!(
            p["message"].as_str().unwrap_or_default().ends_with("has timed out progressing."),
            "{p}"
        );
        let a = condition(&d, "Available");
        assert_eq!(
            (a["status"].as_str(), a["reason"].as_str()),
            (Some("False"), Some("MinimumReplicasUnavailable")),
            "{a}"
        );
    });

    c.finish("deployment");
}
