//! End-to-end: the node daemon's pod lifecycle on both runtimes, driven by the real kubectl —
//! a Wasm pod (wasmtime, in-process) and an OCI pod (busybox through containerd's CRI), each
//! with an init container, env from a ConfigMap and a Secret, a configMap volume, an emptyDir
//! shared by two containers, and liveness + readiness probes; a liveness failure restarts the
//! container and `kubectl logs --previous` shows the run before. A wasi:http Wasm pod answers
//! on its own pod IP once its readiness probe passes.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Containerd, Skiff, guest};

const CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  greeting: hello-from-configmap
  mode: demo
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  password: s3cr3t-value
"#;

/// A pod on `runtime` whose containers run `init`, `main` and `sidecar` (command lines for the
/// image), probed by `live`/`ready` exec commands.
#[allow(clippy::too_many_arguments)]
fn pod_manifest(
    name: &str,
    runtime: &str,
    image: &str,
    init: &[&str],
    main: &[&str],
    sidecar: &[&str],
    live: &[&str],
    ready: &[&str],
) -> String {
    let list = |v: &[&str]| {
        format!("[{}]", v.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "))
    };
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  runtimeClassName: {runtime}
  terminationGracePeriodSeconds: 1
  volumes:
    - name: config
      configMap: {{name: app-config}}
    - name: work
      emptyDir: {{}}
  initContainers:
    - name: init
      image: {image}
      imagePullPolicy: IfNotPresent
      command: {init}
      volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
    - name: main
      image: {image}
      imagePullPolicy: IfNotPresent
      command: {main}
      env:
        - name: GREETING
          valueFrom: {{configMapKeyRef: {{name: app-config, key: greeting}}}}
        - name: PASSWORD
          valueFrom: {{secretKeyRef: {{name: app-secret, key: password}}}}
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
      envFrom:
        - configMapRef: {{name: app-config}}
          prefix: CFG_
      volumeMounts:
        - {{name: config, mountPath: /config, readOnly: true}}
        - {{name: work, mountPath: /work}}
      livenessProbe:
        exec: {{command: {live}}}
        periodSeconds: 1
        failureThreshold: 2
      readinessProbe:
        exec: {{command: {ready}}}
        periodSeconds: 1
    - name: sidecar
      image: {image}
      imagePullPolicy: IfNotPresent
      command: {sidecar}
      volumeMounts: [{{name: work, mountPath: /work}}]
"#,
        init = list(init),
        main = list(main),
        sidecar = list(sidecar),
        live = list(live),
        ready = list(ready),
    )
}

fn cond(pod: &Value, ty: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The lifecycle checks both runtimes must pass.
fn check_lifecycle(s: &Skiff, name: &str, manifest: &str) {
    s.kubectl_stdin(&["apply", "-f", "-"], CONFIG);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));

    // The init container ran to completion first, then both containers; the pod turns Ready
    // once the sidecar creates the readiness file.
    let pod = s.wait_pod(name, Duration::from_secs(90), "Ready", |p| cond(p, "Ready") == "True");
    assert_eq!(cond(&pod, "Initialized"), "True");
    assert_eq!(cond(&pod, "ContainersReady"), "True");
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10."), "pod IP {ip} should come from the node's pod CIDR");

    // The main container saw its environment, the configMap volume and the init's file.
    s.wait_for("main's first output", Duration::from_secs(30), || {
        let out = s.kubectl(&["logs", name, "-c", "main"]);
        String::from_utf8_lossy(&out.stdout).contains("from-init")
    });
    let logs = s.ok(&["logs", name, "-c", "main"]);
    for want in [
        "GREETING=hello-from-configmap",
        "PASSWORD=s3cr3t-value",
        &format!("POD_NAME={name}"),
        "CFG_mode=demo",
        "hello-from-configmap",
        "from-init",
    ] {
        assert!(logs.contains(want), "main's log lacks {want:?}:\n{logs}");
    }

    // The sidecar removes the liveness file: the probe fails, main is restarted, and the
    // previous run's log is still there.
    let pod = s.wait_pod(name, Duration::from_secs(60), "main restarted", |p| {
        container(p, "main")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    let last = &container(&pod, "main")["lastState"]["terminated"];
    assert!(last.is_object(), "main's lastState: {}", container(&pod, "main"));
    let previous = s.ok(&["logs", name, "-c", "main", "--previous"]);
    assert!(previous.contains("GREETING=hello-from-configmap"), "previous log: {previous}");
    let events =
        s.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]);
    assert!(events.contains("Unhealthy") && events.contains("liveness"), "events:\n{events}");
    let describe = s.ok(&["describe", "pod", name]);
    assert!(describe.contains("Liveness:") && describe.contains("Readiness:"), "{describe}");

    let out = s.ok(&["delete", "pod", name, "--wait=true", "--timeout=60s"]);
    assert!(out.contains("deleted"), "{out}");
}

#[test]
fn wasm_pod_should_run_the_whole_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let manifest = pod_manifest(
        "wasm-life",
        "wasmtime",
        "test-guest:e2e",
        &["guest", "script", "write /work/init.txt from-init"],
        &[
            "guest",
            "script",
            "env; cat /config/greeting; cat /work/init.txt; write /work/alive yes; sleep 3600",
        ],
        &["guest", "script", "sleep 2; write /work/ready yes; sleep 4; rm /work/alive; sleep 3600"],
        &["guest", "exists", "/work/alive"],
        &["guest", "exists", "/work/ready"],
    );
    check_lifecycle(&s, "wasm-life", &manifest);
}

#[test]
fn oci_pod_should_run_the_whole_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(ctr) = Containerd::start(&dir.path().join("containerd"), "skiffe2e0") else { return };
    let s = Skiff::start_with(
        &dir.path().join("skiff"),
        &["--container-runtime-endpoint", &format!("unix://{}", ctr.socket)],
    );
    let manifest = pod_manifest(
        "oci-life",
        "runc",
        "skiff.local/busybox:1.36",
        &["sh", "-c", "echo from-init > /work/init.txt"],
        &[
            "sh",
            "-c",
            "env; cat /config/greeting; echo; cat /work/init.txt; touch /work/alive; exec sleep 3600",
        ],
        &["sh", "-c", "sleep 2; touch /work/ready; sleep 4; rm -f /work/alive; exec sleep 3600"],
        &["test", "-f", "/work/alive"],
        &["test", "-f", "/work/ready"],
    );
    check_lifecycle(&s, "oci-life", &manifest);
    drop(s);
    drop(ctr);
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

#[test]
fn wasi_http_pod_should_answer_on_its_pod_ip_once_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    s.import(&guest("hello-http.wasip2.wasm"), "hello-http:e2e");
    s.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  runtimeClassName: wasmtime
  volumes:
    - name: data
      emptyDir: {}
  containers:
    - name: http
      image: hello-http:e2e
      imagePullPolicy: IfNotPresent
      ports: [{containerPort: 8080, name: http}]
      env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
      volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 1
      livenessProbe:
        httpGet: {path: /healthz, port: 8080}
        periodSeconds: 2
    - name: gate
      image: test-guest:e2e
      imagePullPolicy: IfNotPresent
      command: ["guest", "script", "sleep 4; write /data/ready yes; sleep 3600"]
      volumeMounts: [{name: data, mountPath: /data}]
"#;
    let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    let pod = s.wait_pod("web", Duration::from_secs(60), "serving", |p| {
        container(p, "http")["state"]["running"].is_object() && p["status"]["podIP"].is_string()
    });
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10."), "pod IP {ip}");
    let addr = format!("{ip}:8080");
    // Serving, but not Ready until the gate writes the file: the readiness probe sees 503.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    while Instant::now() < deadline && first.is_none() {
        first = http_get(&addr, "/");
        if first.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (code, body) = first.expect("the pod answers on its pod IP");
    assert_eq!(code, 200);
    assert!(body.contains("hello from Skiff") && body.contains("web"), "{body}");
    let early = s.json(&["get", "pod", "web"]);
    if http_get(&addr, "/ready").map(|r| r.0) == Some(503) {
        assert_eq!(cond(&early, "Ready"), "False", "Ready while /ready answers 503");
    }
    let pod = s.wait_pod("web", Duration::from_secs(30), "Ready", |p| cond(p, "Ready") == "True");
    assert_eq!(container(&pod, "http")["ready"], true);
    assert_eq!(http_get(&addr, "/ready").map(|r| r.0), Some(200));
    // Nothing answers on the node's own address at that port: the pod has its own IP.
    assert!(http_get("127.0.0.1:8080", "/").is_none_or(|(_, b)| !b.contains("hello from Skiff")));
    s.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    s.wait_for("the port to close", Duration::from_secs(10), || http_get(&addr, "/").is_none());
}
