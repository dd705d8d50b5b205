//! End-to-end: a real `skiff server`, the real kubectl 1.35, real Wasm guests.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Skiff, cpu_time, guest, phase, repo_root};

/// An image on a registry nothing listens for (port 9, discard).
const GHOST_IMAGE: &str = "127.0.0.1:9/no-such-image:1.0";

fn pod_yaml(name: &str, image: &str, args: &[&str], restart: &str, memory: Option<&str>) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    let limits = memory
        .map(|m| format!("\n      resources:\n        limits:\n          memory: {m}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasmtime\n  restartPolicy: {restart}\n  containers:\n    - name: main\n      image: {image}\n      args: [{}]{limits}\n",
        args.join(", ")
    )
}

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    skiff.import(&guest("hello-wasm.wasip2.wasm"), "hello-wasm:latest");
    skiff.import(&guest("test-guest.wasip1.wasm"), "test-guest:p1");
    skiff.import(&guest("test-guest.wasip2.wasm"), "test-guest:p2");
    (guard, dir, skiff)
}

fn terminated(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/containerStatuses/0/state/terminated")
}

#[test]
fn kubectl_apply_should_run_hello_wasm_to_completion_and_show_logs() {
    let (_serial, _dir, s) = started();
    let manifest = repo_root().join("examples/hello-wasm/pod.yaml");
    let out = s.ok(&["apply", "-f", manifest.to_str().unwrap_or_default()]);
    assert!(out.contains("pod/hello-wasm created"), "{out}");
    let pod =
        s.wait_pod("hello-wasm", Duration::from_secs(60), "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(terminated(&pod).and_then(|t| t["exitCode"].as_i64()), Some(0));
    assert_eq!(terminated(&pod).and_then(|t| t["reason"].as_str()), Some("Completed"));
    let logs = s.ok(&["logs", "hello-wasm"]);
    assert!(logs.contains("Hello from Skiff on WebAssembly!"), "logs: {logs}");

    // The YAML view carries what the node reported.
    let yaml: Value =
        serde_yaml_ng::from_str(&s.ok(&["get", "pod", "hello-wasm", "-o", "yaml"])).expect("yaml");
    assert_eq!(yaml["spec"]["nodeName"], "skiff-e2e");
    assert_eq!(yaml["status"]["hostIP"], "127.0.0.1");
    // A pod address of its own, from the node's pod CIDR (Wasm half, routed locally).
    let pod_ip = yaml["status"]["podIP"].as_str().unwrap_or_default();
    assert!(pod_ip.starts_with("10.") && pod_ip != "127.0.0.1", "podIP {pod_ip}");
    assert_eq!(yaml["status"]["podIPs"][0]["ip"], pod_ip);
    assert_eq!(yaml["status"]["containerStatuses"][0]["name"], "hello");
    assert!(
        yaml["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:")
    );

    // The table view shows kubectl's usual columns.
    let table = s.ok(&["get", "pods"]);
    assert!(
        table.contains("READY") && table.contains("STATUS") && table.contains("RESTARTS"),
        "{table}"
    );
    assert!(table.contains("Completed"), "{table}");

    let out = s.ok(&["delete", "pod", "hello-wasm"]);
    assert!(out.contains("deleted"), "{out}");
    let out = s.kubectl(&["get", "pod", "hello-wasm"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn running_guest_should_log_while_running_and_stop_when_deleted() {
    let (_serial, _dir, s) = started();
    let yaml = pod_yaml("spinner", "test-guest:p2", &["spin"], "Always", None);
    s.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    let yaml =
        pod_yaml("counter", "test-guest:p1", &["print", "5", "sleep", "600"], "Always", None);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.wait_pod("spinner", Duration::from_secs(60), "Running", |p| phase(p) == "Running");
    s.wait_pod("counter", Duration::from_secs(60), "Running", |p| phase(p) == "Running");
    s.wait_for("counter logs", Duration::from_secs(20), || {
        let out = s.kubectl(&["logs", "counter", "--tail", "2"]);
        String::from_utf8_lossy(&out.stdout).contains("line 5")
    });
    // A spinning guest burns a core; once deleted, the server goes quiet again.
    let pid = s.pid();
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let busy = cpu_time(pid).saturating_sub(before);
    assert!(
        busy >= Duration::from_millis(500),
        "spinner should use CPU while running, used {busy:?} in 1 s"
    );
    s.ok(&["delete", "pod", "spinner", "counter", "--timeout=60s"]);
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let idle = cpu_time(pid).saturating_sub(before);
    assert!(idle < Duration::from_millis(300), "guest still running after delete: {idle:?} in 1 s");
}

#[test]
fn misbehaving_guests_should_stop_only_themselves() {
    let (_serial, _dir, s) = started();
    for (name, image, args, mem) in [
        ("trapper", "test-guest:p2", vec!["trap"], None),
        ("bomber", "test-guest:p1", vec!["oom"], Some("32Mi")),
        ("looper", "test-guest:p2", vec!["spin"], None),
        ("looper2", "test-guest:p1", vec!["spin"], None),
    ] {
        let out =
            s.kubectl_stdin(&["apply", "-f", "-"], &pod_yaml(name, image, &args, "Never", mem));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let trap = s.wait_pod("trapper", Duration::from_secs(60), "Failed", |p| phase(p) == "Failed");
    let t = terminated(&trap).expect("terminated state");
    assert_eq!(t["reason"], "Trap", "{t}");
    assert!(t["message"].as_str().unwrap_or("").contains("wasm"), "{t}");
    let oom = s.wait_pod("bomber", Duration::from_secs(60), "OOMKilled", |p| phase(p) == "Failed");
    let t = terminated(&oom).expect("terminated state");
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");

    // With two guests spinning forever, new pods still start and finish, and the API answers.
    s.wait_pod("looper", Duration::from_secs(60), "Running", |p| phase(p) == "Running");
    let started = std::time::Instant::now();
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("quick", "test-guest:p2", &["exit", "0"], "Never", None),
    );
    assert!(out.status.success());
    s.wait_pod("quick", Duration::from_secs(30), "Succeeded", |p| phase(p) == "Succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a pod took {:?} next to spinning guests",
        started.elapsed()
    );
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("exit3", "test-guest:p1", &["exit", "3"], "Never", None),
    );
    assert!(out.status.success());
    let pod = s.wait_pod("exit3", Duration::from_secs(30), "Failed", |p| phase(p) == "Failed");
    assert_eq!(terminated(&pod).and_then(|t| t["exitCode"].as_i64()), Some(3));
    assert_eq!(terminated(&pod).and_then(|t| t["reason"].as_str()), Some("Error"));
}

#[test]
fn bad_input_should_get_kubernetes_errors_and_server_keeps_serving() {
    let (_serial, _dir, s) = started();
    let cases = [
        ("apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n", "Frobnicator"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec:\n  containers:\n  - name: c\n    image: i\n",
            "name",
        ),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n", "yaml"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  containerz: []\n",
            "containerz",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n    image: i\n",
            "Invalid value",
        ),
    ];
    for (manifest, expect) in cases {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success(), "kubectl accepted a bad manifest:\n{manifest}");
        assert!(err.contains(&expect.to_lowercase()), "error for\n{manifest}\nwas: {err}");
    }
    // A pod whose image is nowhere waits with a clear reason, and does not hang. (A registry
    // on a closed loopback port: no traffic leaves the machine.)
    s.kubectl_stdin(&["apply", "-f", "-"], &pod_yaml("ghost", GHOST_IMAGE, &[], "Always", None));
    // The registry cannot be reached: ErrImagePull, then ImagePullBackOff, as on Kubernetes.
    let pod = s.wait_pod("ghost", Duration::from_secs(30), "ErrImagePull", |p| {
        matches!(
            p.pointer("/status/containerStatuses/0/state/waiting/reason").and_then(Value::as_str),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    let msg = pod
        .pointer("/status/containerStatuses/0/state/waiting/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(msg.contains("skiff images import"), "{msg}");
    let table = s.ok(&["get", "pods"]);
    assert!(table.contains("ErrImagePull") || table.contains("ImagePullBackOff"), "{table}");
    // Importing the image later lets the pod start.
    s.import(&guest("test-guest.wasip2.wasm"), GHOST_IMAGE);
    s.wait_pod("ghost", Duration::from_secs(30), "Running", |p| {
        phase(p) == "Running" || phase(p) == "Succeeded"
    });
    // The server is still healthy.
    assert!(s.ok(&["get", "namespaces"]).contains("kube-system"));
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("apiserver_request_total{"), "{metrics}");
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket{"), "{metrics}");
    assert!(
        metrics.contains("code=\"422\"") || metrics.contains("code=\"400\""),
        "errors not counted"
    );
}

fn resource_versions(s: &Skiff) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kind in ["namespaces", "pods", "nodes", "runtimeclasses"] {
        let list = s.json(&["get", kind, "-A"]);
        for item in list["items"].as_array().into_iter().flatten() {
            let name = format!(
                "{kind}/{}/{}",
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            );
            out.push((
                name,
                item["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn objects_should_survive_sigterm_and_sigkill_with_same_resource_versions() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Skiff::start(dir.path());
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: keep-me\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 0..5 {
        let out = s.kubectl_stdin(
            &["apply", "-n", "keep-me", "-f", "-"],
            &pod_yaml(&format!("p{i}"), "never-imported:1", &[], "Always", None),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        // Let the node settle its status writes, then read the versions.
        std::thread::sleep(Duration::from_millis(500));
        let before: Vec<_> =
            resource_versions(&s).into_iter().filter(|(n, _)| !n.starts_with("nodes/")).collect();
        let pods_before = s.json(&["get", "pods", "-n", "keep-me"]);
        s.signal(sig);
        s = Skiff::start(dir.path());
        let after: Vec<_> =
            resource_versions(&s).into_iter().filter(|(n, _)| !n.starts_with("nodes/")).collect();
        assert_eq!(before, after, "objects changed across signal {sig}");
        let pods_after = s.json(&["get", "pods", "-n", "keep-me"]);
        let names = |l: &Value| -> Vec<(String, String)> {
            l["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(names(&pods_before), names(&pods_after), "pods lost across signal {sig}");
        assert!(s.ok(&["get", "ns", "keep-me"]).contains("keep-me"));
    }
}

#[test]
fn crashing_guest_should_back_off_and_keep_previous_logs() {
    let (_serial, _dir, s) = started();
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("crasher", "test-guest:p1", &["exit", "7"], "Always", None),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // First restart is immediate, the next ones back off (10 s, 20 s, …) as on Kubernetes.
    let pod = s.wait_pod("crasher", Duration::from_secs(60), "restarted and backing off", |p| {
        p.pointer("/status/containerStatuses/0/restartCount").and_then(Value::as_i64).unwrap_or(0)
            >= 1
            && p.pointer("/status/containerStatuses/0/state/waiting/reason").and_then(Value::as_str)
                == Some("CrashLoopBackOff")
    });
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 7, "{last}");
    assert_eq!(phase(&pod), "Running");
    assert!(s.ok(&["get", "pods"]).contains("CrashLoopBackOff"));
    let previous = s.ok(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("exiting with 7"), "{previous}");

    // `kubectl logs -f` streams a running guest's output.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("talker", "test-guest:p1", &["print", "3", "sleep", "600"], "Always", None),
    );
    assert!(out.status.success());
    s.wait_pod("talker", Duration::from_secs(60), "Running", |p| phase(p) == "Running");
    let mut follow = std::process::Command::new(support::tools_dir().join("kubectl"))
        .env("HOME", s.tool_home())
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["logs", "-f", "talker", "--timestamps"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 3 {
        lines.push(rx.recv_timeout(Duration::from_secs(20)).expect("followed log line"));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(lines[2].ends_with(" line 3"), "{lines:?}");
    assert!(lines[0].starts_with("20"), "timestamps expected: {lines:?}");
}

/// Write an OCI image layout holding one Wasm layer, as a tar file.
fn oci_layout_tar(wasm: &[u8], reference: &str, path: &std::path::Path) {
    use sha2::Digest;
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#.to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": digest(wasm), "size": wasm.len()}]
    })
    .to_string()
    .into_bytes();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest), "size": manifest.len(),
                        "annotations": {"org.opencontainers.image.ref.name": reference}}]
    })
    .to_string()
    .into_bytes();
    let mut builder = tar::Builder::new(std::fs::File::create(path).expect("tar file"));
    let mut add = |name: String, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).expect("tar entry");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&config, &manifest, &wasm.to_vec()] {
        add(format!("blobs/sha256/{}", &digest(blob)[7..]), blob);
    }
    builder.finish().expect("tar finish");
}

#[test]
fn oci_layout_images_run_and_oci_pods_are_refused_clearly() {
    let (_serial, dir, s) = started();
    let tarball = dir.path().join("hello-oci.tar");
    let wasm = std::fs::read(guest("hello-wasm.wasip1.wasm")).expect("guest");
    oci_layout_tar(&wasm, "registry.example/hello-oci:v1", &tarball);
    let out = std::process::Command::new(support::skiff_bin())
        .args(["images", "import", "--data-dir"])
        .arg(&s.dir)
        .arg(&tarball)
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("from-oci", "registry.example/hello-oci:v1", &[], "Never", None),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.wait_pod("from-oci", Duration::from_secs(60), "Succeeded", |p| phase(p) == "Succeeded");
    assert!(s.ok(&["logs", "from-oci"]).contains("Hello from Skiff on WebAssembly!"));

    // An OCI (runc) pod has no node to run on yet: it stays Pending with the scheduler's reason.
    let rc =
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: runc\nhandler: runc\n";
    assert!(s.kubectl_stdin(&["apply", "-f", "-"], rc).status.success());
    let oci = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx\nspec:\n  runtimeClassName: runc\n  containers:\n  - name: nginx\n    image: nginx:1.27\n";
    assert!(s.kubectl_stdin(&["apply", "-f", "-"], oci).status.success());
    let pod = s.wait_pod("nginx", Duration::from_secs(30), "Unschedulable", |p| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
    });
    let msg = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .map(|c| c["message"].to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("0/1 nodes are available") && msg.contains("runtime handler \\\"runc\\\""),
        "{msg}"
    );
    assert_eq!(phase(&pod), "Pending");
}
