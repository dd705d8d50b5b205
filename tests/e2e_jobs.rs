//! End-to-end: Jobs and CronJobs of Wasm pods on a real server, driven by the real kubectl —
//! completions=5 with parallelism=2 (a watch asserts never more than 2 active pods), a Job
//! that fails past its backoffLimit, one failed by its podFailurePolicy, one past its
//! activeDeadlineSeconds, one that succeeds after a failed pod, an Indexed Job,
//! ttlSecondsAfterFinished, and a CronJob firing for real once a minute.

mod support;

use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use support::{Checks, Skiff, guest, tools_dir};

/// A Job of test-guest pods running `script`.
fn job(name: &str, spec: &str, script: &str, extra_pod: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    spec:
      runtimeClassName: wasmtime
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
{extra_pod}
      containers:
        - name: main
          image: test-guest:e2e
          imagePullPolicy: IfNotPresent
          command: ["guest", "script", "{script}"]
"#
    )
}

fn apply(s: &Skiff, manifest: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn pods_of(s: &Skiff, job: &str) -> Vec<Value> {
    let list = s.json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn events_of(s: &Skiff, kind: &str, name: &str) -> Vec<String> {
    let list = s.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn wait_condition(s: &Skiff, job: &str, cond: &str, timeout: &str) {
    s.ok(&[
        "wait",
        &format!("--for=condition={cond}"),
        &format!("job/{job}"),
        &format!("--timeout={timeout}"),
    ]);
}

/// Follows `kubectl get pods -w` for the Job's pods and records the most pods active (not
/// finished, not being deleted) at any event.
struct ActiveWatch {
    child: std::process::Child,
    max: Arc<Mutex<usize>>,
}

impl ActiveWatch {
    fn start(s: &Skiff, job: &str) -> ActiveWatch {
        let mut child = Command::new(tools_dir().join("kubectl"))
            .env("HOME", s.tool_home())
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["get", "pods", "-w", "-o", "json", "-l"])
            .arg(format!("batch.kubernetes.io/job-name={job}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let stdout = child.stdout.take().expect("stdout");
        let max = Arc::new(Mutex::new(0));
        let seen = max.clone();
        std::thread::spawn(move || {
            let mut active: HashMap<String, bool> = HashMap::new();
            for pod in
                serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>()
            {
                let Ok(pod) = pod else { break };
                let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
                let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
                let is_active = !matches!(phase, "Succeeded" | "Failed")
                    && pod["metadata"]["deletionTimestamp"].is_null();
                active.insert(name, is_active);
                let n = active.values().filter(|a| **a).count();
                let mut m = seen.lock().unwrap_or_else(|e| e.into_inner());
                *m = (*m).max(n);
            }
        });
        ActiveWatch { child, max }
    }

    fn max(&self) -> usize {
        *self.max.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ActiveWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn jobs_and_cronjobs_should_behave_as_on_kubernetes() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let started = Instant::now();
    let mut checks = Checks::default();

    // The CronJob goes first: it fires at the next minute boundary while the rest runs.
    apply(
        &s,
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    metadata:
      labels: {from: tick}
    spec:
      template:
        spec:
          runtimeClassName: wasmtime
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - name: main
              image: test-guest:e2e
              imagePullPolicy: IfNotPresent
              command: ["guest", "exit", "0"]
"#,
    );

    checks.check("completions=5 parallelism=2", || {
        let watch = ActiveWatch::start(&s, "par");
        apply(&s, &job("par", "  completions: 5\n  parallelism: 2", "sleep 1; exit 0", ""));
        wait_condition(&s, "par", "complete", "120s");
        let j = s.json(&["get", "job", "par"]);
        assert_eq!(j["status"]["succeeded"], 5, "{}", j["status"]);
        assert!(j["status"]["active"].is_null() || j["status"]["active"] == 0, "{}", j["status"]);
        assert!(j["status"]["completionTime"].is_string() && j["status"]["startTime"].is_string());
        let done = condition(&j, "Complete").expect("Complete");
        assert_eq!(done["reason"], "CompletionsReached");
        assert!(condition(&j, "SuccessCriteriaMet").is_some(), "{}", j["status"]);
        let pods = pods_of(&s, "par");
        assert_eq!(pods.len(), 5, "one pod per completion");
        for p in &pods {
            assert_eq!(p["status"]["phase"], "Succeeded");
            assert!(
                p["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty),
                "tracking finalizer left: {}",
                p["metadata"]
            );
            assert_eq!(p["metadata"]["labels"]["job-name"], "par");
            assert_eq!(
                p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
                j["metadata"]["uid"]
            );
            assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        }
        let max = watch.max();
        assert!(max <= 2, "{max} pods were active at once with parallelism 2");
        assert!(max >= 1, "the watch saw no active pod");
        let events = events_of(&s, "Job", "par");
        assert_eq!(
            events.iter().filter(|e| e.starts_with("SuccessfulCreate Created pod: par-")).count(),
            5,
            "{events:?}"
        );
        assert!(events.iter().any(|e| e == "Completed Job completed"), "{events:?}");
    });

    checks.check("backoffLimit exceeded", || {
        apply(&s, &job("fails", "  backoffLimit: 1", "exit 3", ""));
        wait_condition(&s, "fails", "failed", "90s");
        let j = s.json(&["get", "job", "fails"]);
        assert_eq!(j["status"]["failed"], 2, "backoffLimit 1 allows one retry: {}", j["status"]);
        let failed = condition(&j, "Failed").expect("Failed");
        assert_eq!(failed["reason"], "BackoffLimitExceeded");
        assert_eq!(failed["message"], "Job has reached the specified backoff limit");
        assert!(condition(&j, "FailureTarget").is_some());
        assert!(j["status"]["completionTime"].is_null(), "a failed Job has no completionTime");
        let pods = pods_of(&s, "fails");
        assert_eq!(pods.len(), 2);
        // The replacement waited out the back-off (10 s after the first failure).
        let mut finished: Vec<_> = pods
            .iter()
            .map(|p| p["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string())
            .collect();
        finished.sort();
        let t = |s: &str| s.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(0);
        assert!(t(&finished[1]) - t(&finished[0]) >= 9, "replacement came too soon: {finished:?}");
        let events = events_of(&s, "Job", "fails");
        assert!(
            events
                .iter()
                .any(|e| e == "BackoffLimitExceeded Job has reached the specified backoff limit"),
            "{events:?}"
        );
    });

    checks.check("podFailurePolicy FailJob", || {
        let policy = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n      - action: FailJob\n        onExitCodes: {containerName: main, operator: In, values: [42]}";
        apply(&s, &job("policy", policy, "exit 42", ""));
        wait_condition(&s, "policy", "failed", "60s");
        let j = s.json(&["get", "job", "policy"]);
        let failed = condition(&j, "Failed").expect("Failed");
        assert_eq!(failed["reason"], "PodFailurePolicy");
        let message = failed["message"].as_str().unwrap_or("");
        assert!(message.starts_with("Container main for pod default/policy-"), "{message}");
        assert!(message.ends_with("failed with exit code 42 matching FailJob rule at index 0"), "{message}");
        assert_eq!(j["status"]["failed"], 1, "no retry despite backoffLimit 6");
    });

    checks.check("activeDeadlineSeconds", || {
        apply(&s, &job("slow", "  activeDeadlineSeconds: 2", "sleep 600", ""));
        wait_condition(&s, "slow", "failed", "60s");
        let j = s.json(&["get", "job", "slow"]);
        let failed = condition(&j, "Failed").expect("Failed");
        assert_eq!(failed["reason"], "DeadlineExceeded");
        assert_eq!(failed["message"], "Job was active longer than specified deadline");
        assert!(j["status"]["active"].is_null(), "{}", j["status"]);
        s.wait_for("the running pod to be stopped", Duration::from_secs(30), || {
            pods_of(&s, "slow").iter().all(|p| {
                p["status"]["phase"] != "Running" || !p["metadata"]["deletionTimestamp"].is_null()
            })
        });
    });

    checks.check("success after a failed pod", || {
        // The pod succeeds once a file exists; it is written after the first pod failed.
        let data = dir.path().join("flaky");
        std::fs::create_dir_all(&data).expect("dir");
        let volume = format!(
            "      volumes: [{{name: data, hostPath: {{path: {:?}, type: Directory}}}}]",
            data.display().to_string()
        );
        let mut manifest = job("flaky", "  backoffLimit: 4", "exists /data/ok; echo fine", &volume);
        manifest = manifest.replace(
            "          command:",
            "          volumeMounts: [{name: data, mountPath: /data}]\n          command:",
        );
        apply(&s, &manifest);
        s.wait_for("the first pod to fail", Duration::from_secs(60), || {
            s.json(&["get", "job", "flaky"])["status"]["failed"].as_i64().unwrap_or(0) >= 1
        });
        std::fs::write(data.join("ok"), "yes").expect("write");
        wait_condition(&s, "flaky", "complete", "120s");
        let j = s.json(&["get", "job", "flaky"]);
        assert_eq!(j["status"]["succeeded"], 1);
        assert!(j["status"]["failed"].as_i64().unwrap_or(0) >= 1, "{}", j["status"]);
        assert!(condition(&j, "Failed").is_none());
    });

    checks.check("Indexed", || {
        apply(
            &s,
            &job("idx", "  completions: 3\n  parallelism: 3\n  completionMode: Indexed", "env", ""),
        );
        wait_condition(&s, "idx", "complete", "90s");
        let j = s.json(&["get", "job", "idx"]);
        assert_eq!(j["status"]["completedIndexes"], "0-2", "{}", j["status"]);
        assert_eq!(j["status"]["succeeded"], 3);
        let mut seen = Vec::new();
        for p in pods_of(&s, "idx") {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert_eq!(
                p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
                index.as_str()
            );
            assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
            assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
            let logs = s.ok(&["logs", &name]);
            assert!(
                logs.lines().any(|l| l == format!("JOB_COMPLETION_INDEX={index}")),
                "{name}: {logs}"
            );
            seen.push(index);
        }
        seen.sort();
        assert_eq!(seen, ["0", "1", "2"]);
    });

    checks.check("suspend and resume", || {
        apply(
            &s,
            &job("later", "  suspend: true\n  completions: 2\n  parallelism: 2", "exit 0", ""),
        );
        s.wait_for("the Suspended condition", Duration::from_secs(30), || {
            condition(&s.json(&["get", "job", "later"]), "Suspended")
                .is_some_and(|c| c["reason"] == "JobSuspended")
        });
        assert!(pods_of(&s, "later").is_empty(), "a suspended Job runs no pod");
        s.ok(&["patch", "job", "later", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#]);
        wait_condition(&s, "later", "complete", "60s");
        let j = s.json(&["get", "job", "later"]);
        let c = j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Suspended");
        assert_eq!(
            c.map(|c| (c["status"].clone(), c["reason"].clone())),
            Some(("False".into(), "JobResumed".into()))
        );
        let events = events_of(&s, "Job", "later");
        assert!(events.iter().any(|e| e == "Suspended Job suspended"), "{events:?}");
        assert!(events.iter().any(|e| e == "Resumed Job resumed"), "{events:?}");
    });

    checks.check("deleting a running Job lets its pods go", || {
        apply(&s, &job("busy", "  completions: 4\n  parallelism: 2", "sleep 600", ""));
        s.wait_for("two running pods", Duration::from_secs(60), || {
            pods_of(&s, "busy").iter().filter(|p| p["status"]["phase"] == "Running").count() == 2
        });
        let pods = pods_of(&s, "busy");
        assert!(
            pods.iter()
                .all(|p| p["metadata"]["finalizers"][0] == "batch.kubernetes.io/job-tracking")
        );
        s.ok(&["delete", "job", "busy", "--wait=true", "--timeout=60s"]);
        s.wait_for("the pods to be gone", Duration::from_secs(60), || {
            pods_of(&s, "busy").is_empty()
        });
    });

    checks.check("ttlSecondsAfterFinished", || {
        apply(&s, &job("short", "  ttlSecondsAfterFinished: 2", "exit 0", ""));
        wait_condition(&s, "short", "complete", "60s");
        // The TTL runs from the Job's completionTime (whole seconds), not from when
        // `kubectl wait` noticed it: whatever the delay before the first check, deletion must
        // come at least the TTL after it, less the second the timestamp may have lost.
        let job = s.json(&["get", "job", "short"]);
        let finished: k8s_openapi::jiff::Timestamp = job["status"]["completionTime"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("a completed Job has a completionTime");
        s.wait_for("the finished Job to be deleted", Duration::from_secs(30), || {
            let out = s.kubectl(&["get", "job", "short"]);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        });
        let gone = k8s_openapi::jiff::Timestamp::now();
        let waited = gone.duration_since(finished).as_secs_f64();
        assert!(waited >= 1.0, "deleted {waited:.2} s after completion, before its 2 s TTL");
        s.wait_for("its pods to be deleted", Duration::from_secs(30), || {
            pods_of(&s, "short").is_empty()
        });
    });

    checks.check("CronJob fires", || {
        let left = Duration::from_secs(75).saturating_sub(started.elapsed());
        let mut fired = Value::Null;
        s.wait_for("the CronJob to create a Job", left.max(Duration::from_secs(5)), || {
            let jobs = s.json(&["get", "jobs", "-l", "from=tick"]);
            match jobs["items"].as_array().and_then(|a| a.first()) {
                Some(j) => {
                    fired = j.clone();
                    true
                }
                None => false,
            }
        });
        let name = fired["metadata"]["name"].as_str().unwrap_or("").to_string();
        let minutes: i64 =
            name.strip_prefix("tick-").and_then(|m| m.parse().ok()).expect("tick-<minutes>");
        let stamp =
            fired["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                .as_str()
                .unwrap_or("");
        let at: Timestamp = stamp.parse().expect("scheduled timestamp");
        assert_eq!(at.as_second(), minutes * 60, "{stamp} vs {name}");
        assert_eq!(fired["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        wait_condition(&s, &name, "complete", "60s");
        s.wait_for("lastSuccessfulTime", Duration::from_secs(20), || {
            let cj = s.json(&["get", "cronjob", "tick"]);
            cj["status"]["lastSuccessfulTime"].is_string()
                && cj["status"]["lastScheduleTime"].is_string()
        });
        let events = events_of(&s, "CronJob", "tick");
        assert!(
            events.iter().any(|e| *e == format!("SuccessfulCreate Created job {name}")),
            "{events:?}"
        );
    });

    checks.finish("jobs e2e");
}
