//! End-to-end: the real kubectl 1.34, 1.35 and 1.37, each against its own fresh `skiff server`,
//! through the everyday verbs on a directory of manifests of every served kind. Each version
//! runs every check and reports all that failed.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Checks, Skiff, guest, manifests, not_contained, phase, tool};

/// Every kind of tests/manifests as `kubectl api-resources` lists it:
/// (group, version, kind, plural, namespaced, short names).
const KINDS: &[(&str, &str, &str, &str, bool, &str)] = &[
    ("", "v1", "Namespace", "namespaces", false, "ns"),
    ("", "v1", "Node", "nodes", false, "no"),
    ("", "v1", "Pod", "pods", true, "po"),
    ("", "v1", "Service", "services", true, "svc"),
    ("", "v1", "Endpoints", "endpoints", true, "ep"),
    ("", "v1", "ConfigMap", "configmaps", true, "cm"),
    ("", "v1", "Secret", "secrets", true, ""),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, "sa"),
    ("", "v1", "Event", "events", true, "ev"),
    ("", "v1", "PersistentVolume", "persistentvolumes", false, "pv"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, "pvc"),
    ("", "v1", "LimitRange", "limitranges", true, "limits"),
    ("", "v1", "ResourceQuota", "resourcequotas", true, "quota"),
    ("", "v1", "ReplicationController", "replicationcontrollers", true, "rc"),
    ("apps", "v1", "Deployment", "deployments", true, "deploy"),
    ("apps", "v1", "ReplicaSet", "replicasets", true, "rs"),
    ("apps", "v1", "StatefulSet", "statefulsets", true, "sts"),
    ("apps", "v1", "DaemonSet", "daemonsets", true, "ds"),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", true, ""),
    ("batch", "v1", "Job", "jobs", true, ""),
    ("batch", "v1", "CronJob", "cronjobs", true, "cj"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, "hpa"),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, "netpol"),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true, "ing"),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, ""),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, ""),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, ""),
    ("events.k8s.io", "v1", "Event", "events", true, "ev"),
    ("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false, ""),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, ""),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, ""),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, ""),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, ""),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, "sc"),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, "pdb"),
    ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, "pc"),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        "crd,crds",
    ),
];

/// One manifest object: what kubectl calls it and how to get it back.
struct Obj {
    group: String,
    version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    manifest: Value,
}

impl Obj {
    fn from(manifest: &Value) -> Obj {
        let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        Obj {
            group: group.to_string(),
            version: version.to_string(),
            kind: manifest["kind"].as_str().unwrap_or_default().to_string(),
            name: manifest["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            namespace: manifest["metadata"]["namespace"].as_str().map(str::to_string),
            manifest: manifest.clone(),
        }
    }

    /// `deployment.apps/e2e-deploy`, as kubectl prints it after apply/create/label.
    fn printed(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            format!("{kind}/{}", self.name)
        } else {
            format!("{kind}.{}/{}", self.group, self.name)
        }
    }

    /// Arguments that name exactly this object's resource and version for `kubectl get`.
    fn get_args(&self) -> Vec<String> {
        // A core kind has no group to pin its version with; its plain kind names it (and the
        // core Event before events.k8s.io's).
        let resource = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}.{}", self.kind, self.version, self.group)
        };
        let mut args = vec!["get".to_string(), resource, self.name.clone()];
        if let Some(ns) = &self.namespace {
            args.extend(["-n".to_string(), ns.clone()]);
        }
        args
    }
}

struct Kubectl<'a> {
    bin: PathBuf,
    skiff: &'a Skiff,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Kubectl<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", self.skiff.tool_home())
            .arg("--kubeconfig")
            .arg(&self.skiff.kubeconfig)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {}",
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    /// kubectl that must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail: {}", text(&out.stdout));
        text(&out.stderr)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
    }

    fn stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("kubectl output")
    }

    fn stdin_ok(&self, args: &[&str], input: &str) -> String {
        let out = self.stdin(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn get(&self, obj: &Obj) -> Value {
        let args = obj.get_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.json(&args)
    }

    fn not_found(&self, args: &[&str]) {
        let err = self.fails(args);
        assert!(err.contains("(NotFound)"), "kubectl {args:?}: want NotFound, got {err}");
    }

    /// Runs kubectl in the background, collecting its stdout.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kubectl");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&text(&buf[..n]));
            }
        });
        Background { child, out }
    }
}

struct Background {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Background {
    fn output(&self) -> String {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Polls the output until `pred` holds; panics with the output after `timeout`.
    fn wait_output(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.output()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; output so far:\n{}", self.output());
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The line of `out` whose first column is `first`, split on whitespace.
fn row<'a>(out: &'a str, first: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
}

/// A header line's column names (multi-word names such as `NOMINATED NODE` kept whole).
fn header(out: &str) -> Vec<String> {
    let line = out.lines().next().unwrap_or_default();
    line.split("  ").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `describe` output has a line `key:   value`.
fn described(out: &str, key: &str, value: &str) -> bool {
    out.lines()
        .any(|l| l.split_once(':').is_some_and(|(k, v)| k.trim() == key && v.trim() == value))
}

/// What kubectl says when it applies `o` again: `configured` when its manifest changed, and
/// always for a PodDisruptionBudget, because kubectl's patch carries spec.selector (patch
/// strategy `replace`) whether it changed or not.
fn reapplied(o: &Obj, changed: &[&str]) -> &'static str {
    if changed.contains(&o.name.as_str()) || o.kind == "PodDisruptionBudget" {
        "configured"
    } else {
        "unchanged"
    }
}

/// Every line of `want` is a line of `out`.
fn assert_lines(out: &str, want: impl Iterator<Item = String>) {
    let missing: Vec<String> = want.filter(|w| !out.lines().any(|l| l == w)).collect();
    assert!(missing.is_empty(), "missing lines {missing:#?} in:\n{out}");
}

fn write_dir(dir: &Path, objs: &[(PathBuf, Value)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (path, v) in objs {
        let name = path.file_name().expect("file name");
        std::fs::write(dir.join(name), serde_yaml_ng::to_string(v).expect("yaml")).expect("write");
    }
}

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(&dir.path().join("data"));
    skiff.import(&guest("hello-wasm.wasip2.wasm"), "hello-wasm:latest");
    skiff.import(&guest("test-guest.wasip2.wasm"), "test-guest:p2");
    (guard, dir, skiff)
}

fn suite(version: &str) {
    let (_serial, dir, skiff) = started();
    let k = Kubectl { bin: tool(&format!("kubectl-{version}")), skiff: &skiff };
    let client = k.ok(&["version", "--client", "-o", "json"]);
    assert!(client.contains(&format!("\"v{version}.")), "not kubectl {version}: {client}");

    let originals = manifests();
    let objs: Vec<Obj> = originals.iter().map(|(_, v)| Obj::from(v)).collect();
    let by_name = |name: &str| {
        objs.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no manifest {name}"))
    };
    let manifest_dir = dir.path().join("manifests");
    write_dir(&manifest_dir, &originals);
    let manifest_dir = manifest_dir.to_str().expect("utf-8 path").to_string();

    // The same manifests with changes: a config value changed, a key removed, a key added; a
    // deployment scaled, an env value changed and an annotation removed.
    let mut changed = originals.clone();
    for (_, v) in &mut changed {
        match v["metadata"]["name"].as_str() {
            Some("e2e-config") => v["data"] = json!({"color": "green", "shape": "round"}),
            Some("e2e-deploy") => {
                v["spec"]["replicas"] = json!(2);
                v["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("second");
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("annotations");
                }
            }
            _ => {}
        }
    }
    let changed_dir = dir.path().join("changed");
    write_dir(&changed_dir, &changed);
    let changed_dir = changed_dir.to_str().expect("utf-8 path").to_string();

    let mut c = Checks::default();

    c.check("apply -f DIR creates every kind", || {
        let out = k.ok(&["apply", "-f", &manifest_dir]);
        assert_lines(&out, objs.iter().map(|o| format!("{} created", o.printed())));
    });

    c.check("applied objects hold their manifests and last-applied-configuration", || {
        let mut bad = vec![];
        for o in &objs {
            let args = o.get_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut a = args.clone();
            a.extend(["-o", "json"]);
            let out = k.run(&a);
            if !out.status.success() {
                bad.push(format!("{}: {}", o.printed(), text(&out.stderr).trim()));
                continue;
            }
            let live: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let diffs = not_contained(&o.manifest, &live, "");
            if !diffs.is_empty() {
                bad.push(format!("{}: {diffs:?}", o.printed()));
            }
            let last =
                live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok());
            match last {
                Some(last) if not_contained(&o.manifest, &last, "").is_empty() => {}
                _ => bad.push(format!("{}: no matching last-applied-configuration", o.printed())),
            }
            if live["metadata"]["uid"].as_str().unwrap_or("").is_empty()
                || live["metadata"]["resourceVersion"].as_str().unwrap_or("").is_empty()
                || live["metadata"]["creationTimestamp"].as_str().unwrap_or("").is_empty()
            {
                bad.push(format!("{}: uid/resourceVersion/creationTimestamp unset", o.printed()));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    });

    c.check("apply -f DIR again leaves everything unchanged", || {
        let out = k.ok(&["apply", "-f", &manifest_dir]);
        let want = objs.iter().map(|o| format!("{} {}", o.printed(), reapplied(o, &[])));
        assert_lines(&out, want);
    });

    c.check("apply -f DIR with changes and removed fields configures just those", || {
        let out = k.ok(&["apply", "-f", &changed_dir]);
        let changed = ["e2e-config", "e2e-deploy"];
        let want = objs.iter().map(|o| format!("{} {}", o.printed(), reapplied(o, &changed)));
        assert_lines(&out, want);
        let cm = k.get(by_name("e2e-config"));
        assert_eq!(cm["data"], json!({"color": "green", "shape": "round"}), "removed key kept");
        let d = k.get(by_name("e2e-deploy"));
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "second");
        assert!(
            d["metadata"]["annotations"].get("e2e/note").is_none(),
            "removed annotation kept: {}",
            d["metadata"]["annotations"]
        );
        assert_eq!(d["metadata"]["generation"], 2, "a spec change bumps generation");
    });

    c.check("apply --server-side -f DIR", || {
        let out = k.ok(&["apply", "--server-side", "-f", &changed_dir]);
        assert_lines(&out, objs.iter().map(|o| format!("{} serverside-applied", o.printed())));
        // kubectl hides managedFields unless asked to show them.
        let cm = k.json(&["get", "configmap", "e2e-config", "-n", "e2e", "--show-managed-fields"]);
        assert_eq!(cm["data"], json!({"color": "green", "shape": "round"}));
        let managers = cm["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        assert!(
            managers.iter().any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
            "no Apply entry of manager kubectl: {managers:?}"
        );
    });

    c.check("server-side apply: conflicts, --force-conflicts, removal by its manager", || {
        let cm = |data: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-ssa\n  namespace: e2e\ndata:\n{data}"
            )
        };
        let ssa = ["apply", "--server-side", "-f", "-", "--field-manager"];
        let out = k.stdin_ok(&[&ssa[..], &["alpha"]].concat(), &cm("  a: \"1\"\n  b: \"2\"\n"));
        assert_eq!(out.trim(), "configmap/e2e-ssa serverside-applied");
        let out = k.stdin(&[&ssa[..], &["beta"]].concat(), &cm("  a: \"9\"\n"));
        assert!(!out.status.success(), "a conflicting apply should fail");
        let err = text(&out.stderr);
        assert!(err.contains("conflict with \"alpha\"") && err.contains(".data.a"), "{err}");
        k.stdin_ok(&[&ssa[..], &["beta", "--force-conflicts"]].concat(), &cm("  a: \"9\"\n"));
        // alpha drops b, which it alone owns, and no longer owns a: b goes, a stays.
        k.stdin_ok(&[&ssa[..], &["alpha"]].concat(), &cm("  c: \"3\"\n"));
        let live = k.json(&["get", "configmap", "e2e-ssa", "-n", "e2e"]);
        assert_eq!(live["data"], json!({"a": "9", "c": "3"}));
    });

    c.check("create namespace|configmap|secret|deployment", || {
        assert_eq!(k.ok(&["create", "namespace", "e2e-made"]).trim(), "namespace/e2e-made created");
        let ns = k.json(&["get", "namespace", "e2e-made"]);
        assert_eq!(ns["status"]["phase"], "Active");
        let out = k.ok(&[
            "create",
            "configmap",
            "made-cm",
            "-n",
            "e2e",
            "--from-literal=k1=v1",
            "--from-literal=k2=v2",
        ]);
        assert_eq!(out.trim(), "configmap/made-cm created");
        let cm = k.json(&["get", "configmap", "made-cm", "-n", "e2e"]);
        assert_eq!(cm["data"], json!({"k1": "v1", "k2": "v2"}));
        let out = k.ok(&[
            "create",
            "secret",
            "generic",
            "made-secret",
            "-n",
            "e2e",
            "--from-literal=token=abc",
        ]);
        assert_eq!(out.trim(), "secret/made-secret created");
        let s = k.json(&["get", "secret", "made-secret", "-n", "e2e"]);
        assert_eq!(s["data"], json!({"token": "YWJj"}));
        assert_eq!(s["type"], "Opaque");
        let out = k.ok(&[
            "create",
            "deployment",
            "made-deploy",
            "-n",
            "e2e",
            "--image=test-guest:p2",
            "--replicas=2",
        ]);
        assert_eq!(out.trim(), "deployment.apps/made-deploy created");
        let d = k.json(&["get", "deployment", "made-deploy", "-n", "e2e"]);
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "made-deploy"}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "test-guest:p2");
        let err = k.fails(&["create", "configmap", "made-cm", "-n", "e2e"]);
        assert!(err.contains("configmaps \"made-cm\" already exists"), "{err}");
    });

    c.check("get -o wide", || {
        support::wait_pod_with(
            |args| k.run(args),
            "e2e-pod",
            "e2e",
            Duration::from_secs(60),
            |p| phase(p) == "Succeeded",
        );
        let out = k.ok(&["get", "pods", "-n", "e2e", "-o", "wide"]);
        assert_eq!(
            header(&out),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ],
            "{out}"
        );
        let r = row(&out, "e2e-pod");
        assert_eq!(r[1..3], ["0/1", "Completed"], "{out}");
        // The pod's own address, from the node's pod CIDR.
        assert!(r.contains(&"skiff-e2e") && r.iter().any(|c| c.starts_with("10.")), "{out}");
        let out = k.ok(&["get", "deployments", "-n", "e2e", "-o", "wide"]);
        assert_eq!(
            header(&out),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
            "{out}"
        );
        let r = row(&out, "e2e-deploy");
        assert_eq!(r[r.len() - 3..], ["main", "test-guest:p2", "app=e2e-deploy"], "{out}");
    });

    c.check("get -o yaml|json|jsonpath|custom-columns", || {
        let yaml: Value = serde_yaml_ng::from_str(&k.ok(&[
            "get",
            "configmap",
            "e2e-config",
            "-n",
            "e2e",
            "-o",
            "yaml",
        ]))
        .expect("yaml");
        assert_eq!(yaml["kind"], "ConfigMap");
        assert_eq!(yaml["data"]["shape"], "round");
        let list = k.json(&["get", "configmaps", "-n", "e2e"]);
        assert_eq!(list["kind"], "List");
        let names: BTreeSet<&str> = list["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["metadata"]["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains("e2e-config") && names.contains("made-cm"), "{names:?}");
        let out = k.ok(&[
            "get",
            "configmaps",
            "-n",
            "e2e",
            "-l",
            "suite=e2e",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        assert_eq!(out, "e2e-config");
        let out = k.ok(&[
            "get",
            "deployment",
            "e2e-deploy",
            "-n",
            "e2e",
            "-o",
            "jsonpath={.spec.template.spec.containers[?(@.name==\"main\")].image}",
        ]);
        assert_eq!(out, "test-guest:p2");
        let out = k.ok(&[
            "get",
            "configmap",
            "e2e-config",
            "-n",
            "e2e",
            "-o",
            "custom-columns=NAME:.metadata.name,COLOR:.data.color,SUITE:.metadata.labels.suite",
        ]);
        let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines, [vec!["NAME", "COLOR", "SUITE"], vec!["e2e-config", "green", "e2e"]]);
    });

    c.check("get -l and get all", || {
        let out = k.ok(&["get", "all", "-n", "e2e", "-l", "suite=e2e", "-o", "name"]);
        let got: BTreeSet<&str> = out.lines().collect();
        let want: BTreeSet<&str> = [
            "pod/e2e-pod",
            "service/e2e-svc",
            "replicationcontroller/e2e-rc",
            "daemonset.apps/e2e-ds",
            "deployment.apps/e2e-deploy",
            "replicaset.apps/e2e-rs",
            "statefulset.apps/e2e-sts",
            "horizontalpodautoscaler.autoscaling/e2e-hpa",
            "cronjob.batch/e2e-cron",
            "job.batch/e2e-job",
        ]
        .into();
        assert_eq!(got, want);
        let out = k.ok(&["get", "configmaps", "-n", "e2e", "-l", "suite!=e2e", "-o", "name"]);
        assert!(
            !out.contains("configmap/e2e-config") && out.contains("configmap/made-cm"),
            "suite!=e2e should select made-cm, not e2e-config: {out:?}"
        );
        let out = k.ok(&["get", "nodes", "-l", "suite in (e2e)", "-o", "name"]);
        assert_eq!(out.trim(), "node/e2e-node");
    });

    c.check("get --field-selector", || {
        let out = k.ok(&[
            "get",
            "configmaps",
            "-n",
            "e2e",
            "--field-selector",
            "metadata.name=made-cm",
            "-o",
            "name",
        ]);
        assert_eq!(out.trim(), "configmap/made-cm");
        let out = k.ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "status.phase=Succeeded,spec.nodeName=skiff-e2e",
            "-o",
            "name",
        ]);
        assert!(out.lines().any(|l| l == "pod/e2e-pod"), "{out}");
        let out =
            k.ok(&["get", "pods", "-A", "--field-selector", "status.phase=Running", "-o", "name"]);
        assert!(!out.contains("pod/e2e-pod"), "{out}");
        let err = k.fails(&["get", "configmaps", "--field-selector", "data.color=green"]);
        assert!(err.contains("field label not supported"), "{err}");
    });

    c.check("get -A", || {
        let out = k.ok(&["get", "configmaps", "-A"]);
        assert_eq!(header(&out), ["NAMESPACE", "NAME", "DATA", "AGE"], "{out}");
        let r = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.get(1) == Some(&"e2e-config"))
            .unwrap_or_else(|| panic!("no e2e-config row:\n{out}"));
        assert_eq!(r[..3], ["e2e", "e2e-config", "2"], "{out}");
        let out = k.ok(&["get", "namespaces"]);
        assert_eq!(row(&out, "e2e")[1], "Active", "{out}");
        k.not_found(&["get", "configmap", "nope", "-n", "e2e"]);
    });

    c.check("get -w", || {
        let table = k.spawn(&["get", "configmaps", "-n", "e2e", "-w"]);
        let events = k.spawn(&[
            "get",
            "configmaps",
            "-n",
            "e2e",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ]);
        table.wait_output("the initial list", Duration::from_secs(10), |o| {
            o.lines().any(|l| l.starts_with("e2e-config "))
        });
        events.wait_output("the initial ADDED events", Duration::from_secs(10), |o| {
            o.contains("\"name\":\"e2e-config\"") || o.contains("\"name\": \"e2e-config\"")
        });
        k.ok(&["create", "configmap", "e2e-watched", "-n", "e2e", "--from-literal=one=1"]);
        let data_column = |n: &'static str| {
            move |o: &str| {
                o.lines().any(|l| {
                    let c: Vec<&str> = l.split_whitespace().collect();
                    c.first() == Some(&"e2e-watched") && c.get(1) == Some(&n)
                })
            }
        };
        table.wait_output("the created configmap", Duration::from_secs(10), data_column("1"));
        k.ok(&["patch", "configmap", "e2e-watched", "-n", "e2e", "-p", r#"{"data":{"two":"2"}}"#]);
        table.wait_output("the patched configmap", Duration::from_secs(10), data_column("2"));
        k.ok(&["delete", "configmap", "e2e-watched", "-n", "e2e"]);
        let types = || {
            serde_json::Deserializer::from_str(&events.output())
                .into_iter::<Value>()
                .map_while(Result::ok)
                .filter(|e| e["object"]["metadata"]["name"] == "e2e-watched")
                .map(|e| e["type"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        events.wait_output("ADDED, MODIFIED, DELETED", Duration::from_secs(10), |_| {
            types() == ["ADDED", "MODIFIED", "DELETED"]
        });
    });

    c.check("describe", || {
        let out = k.ok(&["describe", "configmap", "e2e-config", "-n", "e2e"]);
        assert!(described(&out, "Name", "e2e-config"), "{out}");
        assert!(described(&out, "Namespace", "e2e"), "{out}");
        assert!(described(&out, "Labels", "suite=e2e"), "{out}");
        assert!(out.contains("Data\n====") && out.contains("color:\n----\ngreen"), "{out}");
        let out = k.ok(&["describe", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert!(described(&out, "Selector", "app=e2e-deploy"), "{out}");
        assert!(described(&out, "Image", "test-guest:p2"), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("Replicas:") && l.contains("2 desired")),
            "{out}"
        );
        let out = k.ok(&["describe", "pod", "e2e-pod", "-n", "e2e"]);
        assert!(described(&out, "Status", "Succeeded"), "{out}");
        assert!(described(&out, "Node", "skiff-e2e/127.0.0.1"), "{out}");
        let out = k.ok(&["describe", "node", "skiff-e2e"]);
        assert!(described(&out, "Name", "skiff-e2e"), "{out}");
        let out = k.ok(&["describe", "namespace", "e2e"]);
        assert!(described(&out, "Status", "Active"), "{out}");
    });

    c.check("edit via KUBE_EDITOR", || {
        let editor = dir.path().join("editor.sh");
        std::fs::write(&editor, "#!/bin/sh\nsed -i 's/^  color: green$/  color: purple/' \"$1\"\n")
            .expect("editor");
        std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let out = k
            .cmd(&["edit", "configmap", "e2e-config", "-n", "e2e"])
            .env("KUBE_EDITOR", &editor)
            .output()
            .expect("kubectl edit");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "configmap/e2e-config edited");
        let cm = k.json(&["get", "configmap", "e2e-config", "-n", "e2e"]);
        assert_eq!(cm["data"]["color"], "purple");
        // Nothing to change the second time.
        let out = k
            .cmd(&["edit", "configmap", "e2e-config", "-n", "e2e"])
            .env("KUBE_EDITOR", &editor)
            .output()
            .expect("kubectl edit");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("Edit cancelled, no changes made."), "{out:?}");
    });

    c.check("patch (strategic merge)", || {
        let out = k.ok(&[
            "patch",
            "deployment",
            "e2e-deploy",
            "-n",
            "e2e",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"EXTRA","value":"yes"}]}]}}}}"#,
        ]);
        assert_eq!(out.trim(), "deployment.apps/e2e-deploy patched");
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(1), "merged by name: {containers}");
        assert_eq!(containers[0]["image"], "test-guest:p2");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "EXTRA", "value": "yes"}, {"name": "MODE", "value": "second"}]),
            // Merged by name; kube-apiserver's strategic merge puts entries new to the list
            // before the ones it keeps (no $setElementOrder in a kubectl patch).
            "env merged by name, the new entry first"
        );
    });

    c.check("patch --type merge", || {
        let out = k.ok(&[
            "patch",
            "configmap",
            "e2e-config",
            "-n",
            "e2e",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"shape":null,"weight":"light"}}"#,
        ]);
        assert_eq!(out.trim(), "configmap/e2e-config patched");
        let cm = k.json(&["get", "configmap", "e2e-config", "-n", "e2e"]);
        assert_eq!(cm["data"], json!({"color": "purple", "weight": "light"}));
    });

    c.check("patch --type json", || {
        let out = k.ok(&[
            "patch",
            "deployment",
            "e2e-deploy",
            "-n",
            "e2e",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":1},{"op":"add","path":"/metadata/labels/patched","value":"json"}]"#,
        ]);
        assert_eq!(out.trim(), "deployment.apps/e2e-deploy patched");
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"]["patched"], "json");
        let err = k.fails(&[
            "patch",
            "deployment",
            "e2e-deploy",
            "-n",
            "e2e",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"test","path":"/spec/replicas","value":9}]"#,
        ]);
        assert!(!err.is_empty());
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert_eq!(d["spec"]["replicas"], 1, "a failed json patch changed the object");
        let out = k.ok(&[
            "patch",
            "configmap",
            "e2e-config",
            "-n",
            "e2e",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"weight":"light"}}"#,
        ]);
        assert_eq!(out.trim(), "configmap/e2e-config patched (no change)");
    });

    c.check("label", || {
        let out = k.ok(&["label", "configmap", "e2e-config", "-n", "e2e", "tier=backend"]);
        assert_eq!(out.trim(), "configmap/e2e-config labeled");
        let err = k.fails(&["label", "configmap", "e2e-config", "-n", "e2e", "tier=frontend"]);
        assert!(err.contains("already has a value (backend)"), "{err}");
        k.ok(&["label", "configmap", "e2e-config", "-n", "e2e", "tier=frontend", "--overwrite"]);
        let cm = k.json(&["get", "configmap", "e2e-config", "-n", "e2e"]);
        assert_eq!(cm["metadata"]["labels"], json!({"suite": "e2e", "tier": "frontend"}));
        let out = k.ok(&["label", "configmap", "e2e-config", "-n", "e2e", "tier-"]);
        assert_eq!(out.trim(), "configmap/e2e-config unlabeled");
        let out = k.ok(&["label", "nodes", "-l", "suite=e2e", "zone=z1"]);
        assert_eq!(out.trim(), "node/e2e-node labeled");
        let out = k.ok(&["get", "nodes", "-l", "zone=z1", "-o", "name"]);
        assert_eq!(out.trim(), "node/e2e-node");
    });

    c.check("annotate", || {
        let out = k.ok(&["annotate", "deployment", "e2e-deploy", "-n", "e2e", "e2e/owner=team-a"]);
        assert_eq!(out.trim(), "deployment.apps/e2e-deploy annotated");
        let err = k.fails(&["annotate", "deployment", "e2e-deploy", "-n", "e2e", "e2e/owner=b"]);
        assert!(err.contains("already has a value (team-a)"), "{err}");
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert_eq!(d["metadata"]["annotations"]["e2e/owner"], "team-a");
        k.ok(&["annotate", "deployment", "e2e-deploy", "-n", "e2e", "e2e/owner-"]);
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert!(d["metadata"]["annotations"].get("e2e/owner").is_none(), "{d}");
    });

    c.check("scale", || {
        let out = k.ok(&["scale", "deployment", "e2e-deploy", "-n", "e2e", "--replicas=3"]);
        assert_eq!(out.trim(), "deployment.apps/e2e-deploy scaled");
        let d = k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e"]);
        assert_eq!(d["spec"]["replicas"], 3);
        let scale =
            k.json(&["get", "deployment", "e2e-deploy", "-n", "e2e", "--subresource=scale"]);
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 3);
        let err = k.fails(&[
            "scale",
            "deployment",
            "e2e-deploy",
            "-n",
            "e2e",
            "--current-replicas=5",
            "--replicas=1",
        ]);
        assert!(err.contains("Expected replicas to be 5, was 3"), "{err}");
        let out = k.ok(&["scale", "statefulset", "e2e-sts", "-n", "e2e", "--replicas=2"]);
        assert_eq!(out.trim(), "statefulset.apps/e2e-sts scaled");
        assert_eq!(k.json(&["get", "sts", "e2e-sts", "-n", "e2e"])["spec"]["replicas"], 2);
    });

    c.check("delete and --wait", || {
        let out = k.ok(&["delete", "configmap", "made-cm", "-n", "e2e"]);
        assert!(out.starts_with("configmap \"made-cm\" deleted"), "{out}");
        k.not_found(&["get", "configmap", "made-cm", "-n", "e2e"]);
        let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: e2e\n  finalizers: [e2e.skiff.dev/hold]\n";
        k.stdin_ok(&["apply", "-f", "-"], held);
        // --wait (the default) blocks while a finalizer holds the object.
        let mut waiting = k.spawn(&["delete", "configmap", "held", "-n", "e2e", "--timeout=30s"]);
        wait_until("deletionTimestamp on held", Duration::from_secs(10), || {
            let cm = k.json(&["get", "configmap", "held", "-n", "e2e"]);
            cm["metadata"]["deletionTimestamp"].is_string()
        });
        // Still waiting a while after the object got its deletionTimestamp.
        std::thread::sleep(Duration::from_millis(500));
        assert!(waiting.exited().is_none(), "delete --wait returned while the object remained");
        k.ok(&[
            "patch",
            "configmap",
            "held",
            "-n",
            "e2e",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = waiting.exited() {
                break s;
            }
            assert!(Instant::now() < deadline, "delete --wait did not return");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{}", waiting.output());
        assert!(waiting.output().starts_with("configmap \"held\" deleted"), "{}", waiting.output());
        k.not_found(&["get", "configmap", "held", "-n", "e2e"]);
        // --wait=false returns at once.
        k.stdin_ok(&["apply", "-f", "-"], held);
        let started = Instant::now();
        k.ok(&["delete", "configmap", "held", "-n", "e2e", "--wait=false"]);
        assert!(started.elapsed() < Duration::from_secs(5));
        let cm = k.json(&["get", "configmap", "held", "-n", "e2e"]);
        assert!(cm["metadata"]["deletionTimestamp"].is_string(), "{cm}");
        k.ok(&["patch", "configmap", "held", "-n", "e2e", "--type", "json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
        wait_until("held gone", Duration::from_secs(10), || {
            !k.run(&["get", "configmap", "held", "-n", "e2e"]).status.success()
        });
    });

    c.check("delete --cascade=orphan|background|foreground", || {
        let owned = |owner: &str| {
            let o = k.json(&["get", "configmap", owner, "-n", "e2e"]);
            let uid = o["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}-dependent\n  namespace: e2e\n  ownerReferences:\n    - apiVersion: v1\n      kind: ConfigMap\n      name: {owner}\n      uid: {uid}\n"
            )
        };
        for mode in ["orphan", "background", "foreground"] {
            let owner = format!("owner-{mode}");
            k.ok(&["create", "configmap", &owner, "-n", "e2e"]);
            k.stdin_ok(&["apply", "-f", "-"], &owned(&owner));
            let out = k.ok(&[
                "delete",
                "configmap",
                &owner,
                "-n",
                "e2e",
                &format!("--cascade={mode}"),
                "--timeout=20s",
            ]);
            assert!(out.starts_with(&format!("configmap \"{owner}\" deleted")), "{out}");
            wait_until(&format!("{owner} gone"), Duration::from_secs(20), || {
                !k.run(&["get", "configmap", &owner, "-n", "e2e"]).status.success()
            });
            let dependent = format!("{owner}-dependent");
            if mode == "orphan" {
                wait_until("the orphan's ownerReferences cleared", Duration::from_secs(20), || {
                    let d = k.json(&["get", "configmap", &dependent, "-n", "e2e"]);
                    d["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)
                });
            } else {
                wait_until(&format!("{dependent} collected"), Duration::from_secs(20), || {
                    !k.run(&["get", "configmap", &dependent, "-n", "e2e"]).status.success()
                });
            }
        }
    });

    c.check("explain", || {
        let out = k.ok(&["explain", "deployment.spec.replicas"]);
        assert!(described(&out, "GROUP", "apps"), "{out}");
        assert!(described(&out, "KIND", "Deployment"), "{out}");
        assert!(described(&out, "VERSION", "v1"), "{out}");
        assert!(out.contains("FIELD: replicas <integer>"), "{out}");
        assert!(out.contains("Number of desired pods"), "{out}");
        let out = k.ok(&["explain", "configmaps"]);
        assert!(described(&out, "KIND", "ConfigMap"), "{out}");
        assert!(out.contains("ConfigMap holds configuration data"), "{out}");
        assert!(out.contains("binaryData\t<map[string]string>"), "{out}");
        let out = k.ok(&["explain", "hpa.spec.metrics", "--api-version=autoscaling/v2"]);
        assert!(described(&out, "VERSION", "v2"), "{out}");
        let err = k.fails(&["explain", "configmaps.nosuchfield"]);
        assert!(err.contains("nosuchfield"), "{err}");
    });

    c.check("api-resources", || {
        let out = k.ok(&["api-resources"]);
        assert_eq!(header(&out), ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        let mut missing = vec![];
        for (group, version, kind, plural, namespaced, short) in KINDS {
            let gv =
                if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
            let mut want = vec![*plural];
            if !short.is_empty() {
                want.push(short);
            }
            let namespaced = namespaced.to_string();
            want.extend([gv.as_str(), namespaced.as_str(), kind]);
            if !rows.contains(&want) {
                missing.push(want.join(" "));
            }
        }
        assert!(missing.is_empty(), "rows missing: {missing:#?}\n{out}");
        let out = k.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(
            got,
            [
                "controllerrevisions.apps",
                "daemonsets.apps",
                "deployments.apps",
                "replicasets.apps",
                "statefulsets.apps"
            ]
        );
        let out = k.ok(&["api-resources", "--namespaced=false", "-o", "name"]);
        for name in ["namespaces", "nodes", "persistentvolumes", "storageclasses.storage.k8s.io"] {
            assert!(out.lines().any(|l| l == name), "{name} not cluster-scoped:\n{out}");
        }
        assert!(!out.lines().any(|l| l == "pods"), "{out}");
        // A CRD is stored (its kind is served too: tests/e2e_crd.rs).
        let out =
            k.ok(&["get", "crd", "widgets.e2e.skiff.dev", "-o", "jsonpath={.spec.names.plural}"]);
        assert_eq!(out.trim(), "widgets");
    });

    c.check("api-versions", || {
        let out = k.ok(&["api-versions"]);
        let got: Vec<&str> = out.lines().collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "api-versions sorts its output");
        let mut want: BTreeSet<String> = KINDS
            .iter()
            .map(|(g, v, ..)| if g.is_empty() { v.to_string() } else { format!("{g}/{v}") })
            .collect();
        want.insert("autoscaling/v1".into());
        let missing: Vec<&String> = want.iter().filter(|gv| !got.contains(&gv.as_str())).collect();
        assert!(missing.is_empty(), "missing {missing:?} in:\n{out}");
    });

    c.check("auth can-i", || {
        for args in [
            &["create", "deployments", "-n", "e2e"][..],
            &["delete", "nodes"],
            &["get", "pods", "--subresource=log", "-n", "e2e"],
            &["*", "*", "--all-namespaces"],
        ] {
            let out = k.ok(&[&["auth", "can-i"][..], args].concat());
            assert_eq!(out.trim(), "yes", "auth can-i {args:?}");
        }
    });

    c.check("diff", || {
        let cm = |color: &str| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-diff\n  namespace: e2e\ndata:\n  color: {color}\n")
        };
        // A new object: all added, and (a dry run) not created.
        let out = k.stdin(&["diff", "-f", "-"], &cm("red"));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let diff = text(&out.stdout);
        assert!(diff.lines().any(|l| l == "+  name: e2e-diff"), "{diff}");
        k.not_found(&["get", "configmap", "e2e-diff", "-n", "e2e"]);
        k.stdin_ok(&["apply", "-f", "-"], &cm("red"));
        let out = k.stdin(&["diff", "-f", "-"], &cm("red"));
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(text(&out.stdout), "");
        let out = k.stdin(&["diff", "-f", "-"], &cm("teal"));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let diff = text(&out.stdout);
        assert!(diff.lines().any(|l| l == "-  color: red"), "{diff}");
        assert!(diff.lines().any(|l| l == "+  color: teal"), "{diff}");
        assert_eq!(k.json(&["get", "configmap", "e2e-diff", "-n", "e2e"])["data"]["color"], "red");
    });

    c.check("delete -f DIR", || {
        let out = k.ok(&["delete", "-f", &manifest_dir, "--wait=false"]);
        for o in &objs {
            let ns =
                o.namespace.as_ref().map(|n| format!(" from {n} namespace")).unwrap_or_default();
            let prefix = format!("{} \"{}\" deleted", o.kind.to_lowercase(), o.name);
            let prefix = if o.group.is_empty() {
                prefix
            } else {
                format!("{}.{} \"{}\" deleted", o.kind.to_lowercase(), o.group, o.name)
            };
            assert!(
                out.lines().any(|l| l == prefix || l == format!("{prefix}{ns}")),
                "want {prefix:?} in:\n{out}"
            );
        }
        // Gone, or on their way out (the namespace while it empties; the pod while its node
        // stops it).
        for o in &objs {
            let args = o.get_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut a = args.clone();
            a.extend(["-o", "json"]);
            let out = k.run(&a);
            if out.status.success() {
                let live: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                assert!(
                    live["metadata"]["deletionTimestamp"].is_string(),
                    "{} still there after delete",
                    o.printed()
                );
            } else {
                assert!(text(&out.stderr).contains("(NotFound)"), "{}", text(&out.stderr));
            }
        }
        let ns = k.run(&["get", "namespace", "e2e", "-o", "json"]);
        if ns.status.success() {
            let ns: Value = serde_json::from_slice(&ns.stdout).unwrap_or(Value::Null);
            assert_eq!(ns["status"]["phase"], "Terminating");
        }
    });

    c.finish(&format!("kubectl {version}"));
}

#[test]
fn kubectl_1_34_should_drive_every_served_kind() {
    suite("1.34");
}

#[test]
fn kubectl_1_35_should_drive_every_served_kind() {
    suite("1.35");
}

#[test]
fn kubectl_1_37_should_drive_every_served_kind() {
    suite("1.37");
}
