//! End-to-end: pods pull their images from a real OCI registry — Debian's `docker-registry`
//! (distribution 2.8) on loopback, with TLS from a test CA and htpasswd auth, images pushed
//! with `skopeo` from OCI layouts built here (a Wasm test guest, and the local busybox). A Wasm
//! pod and an OCI pod pull by tag and by digest with an `imagePullSecret` on the embedded node,
//! a Wasm pod on an agent; a wrong password shows `ErrImagePull`, then `ImagePullBackOff`, with
//! the registry's 401; the kubelet's `Pulling`/`Pulled` events are recorded.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Containerd, Skiff, guest, phase, repo_root};

const USER: &str = "skiff";
const PASSWORD: &str = "pull-s3cret";
/// Hard eviction on memory only: a nearly full disk on the test machine must not evict pods.
const NO_DISK_EVICTION: &str = "memory.available<1Mi";

/// Whether `docker-registry` and `skopeo` are here; under `CI=true` their absence fails.
fn tools_present() -> bool {
    let missing: Vec<&str> = ["docker-registry", "skopeo"]
        .into_iter()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing:?} not installed (scripts/bootstrap.sh installs them)"
    );
    eprintln!("{missing:?} not installed; skipping the registry tests (scripts/bootstrap.sh)");
    false
}

/// A `docker-registry` serving HTTPS on 127.0.0.1 with htpasswd auth; killed on drop.
struct Registry {
    child: Child,
    host: String,
    /// Holds `ca.crt` (skopeo's --dest-cert-dir) and `ca.pem` (for registries.yaml).
    certs: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        let (ca_pem, cert_pem, key_pem) = support::loopback_pki("skiff registry test CA");
        std::fs::write(certs.join("ca.crt"), &ca_pem).expect("write ca");
        std::fs::write(certs.join("ca.pem"), &ca_pem).expect("write ca");
        let server_dir = dir.join("server");
        std::fs::create_dir_all(&server_dir).expect("mkdir");
        std::fs::write(server_dir.join("tls.crt"), cert_pem).expect("write cert");
        std::fs::write(server_dir.join("tls.key"), key_pem).expect("write key");
        let hash = bcrypt::hash_with_result(PASSWORD, 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoA);
        std::fs::write(server_dir.join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
        // docker-registry cannot listen on port 0: take a free port and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n  tls:\n    certificate: {cert}\n    key: {key}\nauth:\n  htpasswd:\n    realm: skiff-test\n    path: {htpasswd}\n",
            data = dir.join("data").display(),
            cert = server_dir.join("tls.crt").display(),
            key = server_dir.join("tls.key").display(),
            htpasswd = server_dir.join("htpasswd").display(),
        );
        std::fs::write(server_dir.join("config.yml"), config).expect("config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(server_dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen on {host}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, host, certs }
    }

    /// `skopeo copy SRC docker://HOST/DEST` with the test credentials; returns the manifest
    /// digest.
    fn push(&self, src: &str, dest: &str, work: &Path) -> String {
        let digest_file = work.join(format!("digest-{}", dest.replace(['/', ':'], "_")));
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-creds", &format!("{USER}:{PASSWORD}")])
            .arg("--dest-cert-dir")
            .arg(&self.certs)
            .arg("--digestfile")
            .arg(&digest_file)
            .arg(src)
            .arg(format!("docker://{}/{dest}", self.host))
            .output()
            .expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&digest_file).expect("digest file").trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout directory holding `wasm` as a Wasm artifact tagged `tag`.
fn wasm_layout(wasm: &Path, out: &Path, tag: &str) -> PathBuf {
    let module = std::fs::read(wasm).expect("read guest");
    skiff_bench::oci::wasm_layout(&module, out, tag).expect("writing the OCI layout")
}

/// The local busybox image as an OCI archive (scripts/containerd.sh builds it).
fn busybox_archive(work: &Path) -> PathBuf {
    let images = work.join("oci-images");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/containerd.sh"))
        .arg("images")
        .arg(&images)
        .output()
        .expect("running scripts/containerd.sh images");
    assert!(out.status.success(), "containerd.sh images: {}", String::from_utf8_lossy(&out.stderr));
    images.join("busybox.tar")
}

fn pod(
    name: &str,
    class: &str,
    image: &str,
    secret: &str,
    policy: &str,
    node: Option<&str>,
) -> String {
    let command =
        if class == "runc" { r#"["sleep", "3600"]"# } else { r#"["guest", "sleep", "3600"]"# };
    let node = node.map(|n| format!("  nodeName: {n}\n")).unwrap_or_default();
    // No secret: the pod's ServiceAccount's pull secrets (or none) apply.
    let secrets = if secret.is_empty() {
        String::new()
    } else {
        format!("  imagePullSecrets:\n  - name: {secret}\n")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{node}  runtimeClassName: {class}\n  terminationGracePeriodSeconds: 1\n{secrets}  containers:\n  - name: app\n    image: {image}\n    imagePullPolicy: {policy}\n    command: {command}\n"
    )
}

fn waiting(p: &Value) -> (&str, &str) {
    let w = p.pointer("/status/containerStatuses/0/state/waiting");
    (
        w.and_then(|w| w["reason"].as_str()).unwrap_or(""),
        w.and_then(|w| w["message"].as_str()).unwrap_or(""),
    )
}

fn events_of(s: &Skiff, pod: &str) -> Vec<(String, String)> {
    let events =
        s.json(&["get", "events", "--field-selector", &format!("involvedObject.name={pod}")]);
    events["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    (
                        e["reason"].as_str().unwrap_or("").to_string(),
                        e["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The kubelet's event trail from image to start, in order: Pulling, Pulled, Created, Started.
/// Events are written in the background: polled until all are there.
fn trail(s: &Skiff, pod: &str) -> Vec<(String, String)> {
    let want = ["Pulling", "Pulled", "Created", "Started"];
    let mut events = Vec::new();
    s.wait_for(&format!("{pod}'s events {want:?}"), Duration::from_secs(20), || {
        events = events_of(s, pod);
        want.iter().all(|w| events.iter().any(|(r, _)| r == w))
    });
    events
}

fn wait_running(s: &Skiff, name: &str) -> Value {
    s.wait_pod(name, Duration::from_secs(90), "Running", |p| phase(p) == "Running")
}

/// A wrong password: ErrImagePull with the registry's 401, then ImagePullBackOff.
fn check_unauthorized(s: &Skiff, name: &str) {
    // ErrImagePull shows for a moment after each attempt, ImagePullBackOff (carrying the last
    // error) while the back-off lasts, whose growth makes the first rare: whichever shows
    // first, both must carry the registry's 401, and both must have been reported.
    let p = s.wait_pod(name, Duration::from_secs(60), "ErrImagePull or ImagePullBackOff", |p| {
        matches!(waiting(p).0, "ErrImagePull" | "ImagePullBackOff")
    });
    let (_, message) = waiting(&p);
    assert!(message.contains("401"), "{name}: the registry's 401 should show: {message}");
    let p = s.wait_pod(name, Duration::from_secs(30), "ImagePullBackOff", |p| {
        waiting(p).0 == "ImagePullBackOff"
    });
    let (_, message) = waiting(&p);
    assert!(message.contains("ErrImagePull: ") && message.contains("401"), "{name}: {message}");
    let mut events = Vec::new();
    s.wait_for(&format!("{name}'s pull failure events"), Duration::from_secs(20), || {
        events = events_of(s, name);
        let has =
            |reason: &str, text: &str| events.iter().any(|(r, m)| r == reason && m.contains(text));
        has("Failed", "401") && has("Failed", "Error: ErrImagePull") && has("BackOff", "Back-off")
    });
    assert!(
        events.iter().any(|(r, m)| r == "Failed" && m.starts_with("Failed to pull image")),
        "{name}: {events:?}"
    );
}

#[test]
fn pods_should_pull_images_from_a_registry_with_pull_secrets() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let registry = Registry::start(&work.join("registry"));
    let host = registry.host.clone();
    let layout = wasm_layout(&guest("test-guest.wasip1.wasm"), &work.join("wasm-layout"), "v1");
    let wasm_digest =
        registry.push(&format!("oci:{}:v1", layout.display()), "wasm/test-guest:v1", work);

    let registries = work.join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "configs:\n  \"{host}\":\n    tls:\n      ca_file: {}\n",
            registry.certs.join("ca.pem").display()
        ),
    )
    .expect("registries.yaml");
    let containerd = Containerd::start(&work.join("containerd"), "skreg0");
    // Disk-based eviction thresholds depend on the machine's disk; this test is about pulls.
    let mut args: Vec<String> = vec![
        "--registry-config".into(),
        registries.display().to_string(),
        "--eviction-hard".into(),
        NO_DISK_EVICTION.into(),
    ];
    let mut busybox_digest = None;
    if let Some(c) = &containerd {
        args.push("--container-runtime-endpoint".into());
        args.push(format!("unix://{}", c.socket));
        args.push("--containerd-registry-config-path".into());
        args.push(work.join("containerd/certs.d").display().to_string());
        let archive = busybox_archive(work);
        busybox_digest = Some(registry.push(
            &format!("oci-archive:{}", archive.display()),
            "oci/busybox:1.36",
            work,
        ));
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Skiff::start_with(&work.join("skiff"), &arg_refs);
    for (name, password) in [("regcred", PASSWORD), ("badcred", "wrong-password")] {
        s.ok(&[
            "create",
            "secret",
            "docker-registry",
            name,
            &format!("--docker-server={host}"),
            &format!("--docker-username={USER}"),
            &format!("--docker-password={password}"),
        ]);
    }

    let mut manifests = vec![
        pod(
            "wasm-tag",
            "wasmtime",
            &format!("{host}/wasm/test-guest:v1"),
            "regcred",
            "IfNotPresent",
            None,
        ),
        pod(
            "wasm-digest",
            "wasmtime",
            &format!("{host}/wasm/test-guest@{wasm_digest}"),
            "regcred",
            "IfNotPresent",
            None,
        ),
        pod(
            "wasm-bad",
            "wasmtime",
            &format!("{host}/wasm/test-guest:v1"),
            "badcred",
            "Always",
            None,
        ),
    ];
    if let Some(d) = &busybox_digest {
        manifests.push(pod(
            "oci-tag",
            "runc",
            &format!("{host}/oci/busybox:1.36"),
            "regcred",
            "IfNotPresent",
            None,
        ));
        manifests.push(pod(
            "oci-digest",
            "runc",
            &format!("{host}/oci/busybox@{d}"),
            "regcred",
            "IfNotPresent",
            None,
        ));
        manifests.push(pod(
            "oci-bad",
            "runc",
            &format!("{host}/oci/busybox:1.36"),
            "badcred",
            "Always",
            None,
        ));
    }
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifests.join("---\n"));
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));

    let p = wait_running(&s, "wasm-tag");
    let image_id =
        p.pointer("/status/containerStatuses/0/imageID").and_then(Value::as_str).unwrap_or("");
    assert!(image_id.contains(&wasm_digest), "imageID {image_id} should name {wasm_digest}");
    wait_running(&s, "wasm-digest");
    let events = trail(&s, "wasm-tag");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Pulling"
                && m == &format!("Pulling image \"{host}/wasm/test-guest:v1\"")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with(&format!(
                "Successfully pulled image \"{host}/wasm/test-guest:v1\" in "
            ))
            && m.contains("including waiting). Image size: ")),
        "{events:?}"
    );
    check_unauthorized(&s, "wasm-bad");

    // The ServiceAccount's imagePullSecrets serve a pod that names none (pulled again: Always).
    s.ok(&[
        "patch",
        "serviceaccount",
        "default",
        "-p",
        r#"{"imagePullSecrets":[{"name":"regcred"}]}"#,
    ]);
    let manifest =
        pod("wasm-sa", "wasmtime", &format!("{host}/wasm/test-guest:v1"), "", "Always", None);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    wait_running(&s, "wasm-sa");
    trail(&s, "wasm-sa");

    if busybox_digest.is_some() {
        wait_running(&s, "oci-tag");
        wait_running(&s, "oci-digest");
        trail(&s, "oci-tag");
        check_unauthorized(&s, "oci-bad");
    }

    // An agent node pulls with the same secret, by digest.
    let agent = s.start_agent(
        &work.join("agent"),
        "registry-agent",
        &[
            "--registry-config",
            &registries.display().to_string(),
            "--eviction-hard",
            NO_DISK_EVICTION,
        ],
    );
    let manifest = pod(
        "wasm-agent",
        "wasmtime",
        &format!("{host}/wasm/test-guest@{wasm_digest}"),
        "regcred",
        "IfNotPresent",
        Some(&agent.name),
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    wait_running(&s, "wasm-agent");
    trail(&s, "wasm-agent");
    drop(agent);
    drop(s);
    drop(containerd);
}

/// Image garbage collection past the high threshold (set to 1 % so any machine is past it):
/// an unused image goes, the image of a running pod stays.
#[test]
fn image_gc_should_remove_unused_images_and_keep_running_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("skiff");
    let s = Skiff::start_with(
        &data,
        &[
            "--image-gc-high-threshold",
            "1",
            "--image-gc-low-threshold",
            "0",
            "--minimum-image-ttl-duration",
            "1s",
            "--image-gc-period",
            "1s",
            "--eviction-hard",
            NO_DISK_EVICTION,
        ],
    );
    s.import(&guest("test-guest.wasip1.wasm"), "gc-keep:1");
    let manifest = pod("gc-user", "wasmtime", "gc-keep:1", "none", "IfNotPresent", None);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    wait_running(&s, "gc-user");
    s.import(&guest("hello-wasm.wasip1.wasm"), "gc-drop:1");
    let list = || {
        let out = Command::new(support::skiff_bin())
            .args(["images", "list", "--data-dir"])
            .arg(&data)
            .output()
            .expect("skiff images list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(list().contains("gc-drop:1"));
    s.wait_for("gc-drop:1 collected", Duration::from_secs(30), || !list().contains("gc-drop:1"));
    assert!(list().contains("gc-keep:1"), "the running pod's image stays: {}", list());
    let p = s.json(&["get", "pod", "gc-user"]);
    assert_eq!(phase(&p), "Running");
}
