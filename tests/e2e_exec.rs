//! `kubectl exec`, `attach`, `port-forward` and `cp` with the real kubectl 1.34, 1.35 and
//! 1.37, on the embedded node and on an agent (through the api server's proxy to the agent's
//! kubelet API), each with Wasm pods and OCI pods (its own containerd), over WebSocket
//! (kubectl's default) and over SPDY (its fallback).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::netns::{AGENT_NODE, TwoNodes as Cluster, http_get, in_ns};
use support::{guest, in_netns, tool};

const KUBECTLS: [&str; 3] = ["kubectl-1.34", "kubectl-1.35", "kubectl-1.37"];
/// The busybox pods: on the embedded node and on the agent.
const OCI_PODS: [&str; 2] = ["oci", "oci-b"];
/// kubectl's switches back to SPDY for exec/attach/cp and for port-forward.
const SPDY: [(&str, &str); 2] =
    [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"), ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: wasm-a}
spec:
  runtimeClassName: wasmtime
  nodeName: skiff-e2e
  terminationGracePeriodSeconds: 1
  containers:
    - name: guest
      image: test-guest:e2e
      command: ["guest", "ticks"]
---
apiVersion: v1
kind: Pod
metadata: {name: wasm-b}
spec:
  runtimeClassName: wasmtime
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
    - name: guest
      image: test-guest:e2e
      command: ["guest", "ticks"]
---
apiVersion: v1
kind: Pod
metadata: {name: http-b}
spec:
  runtimeClassName: wasmtime
  nodeName: node-b
  containers:
    - name: http
      image: hello-http:e2e
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: oci}
spec:
  runtimeClassName: runc
  nodeName: skiff-e2e
  terminationGracePeriodSeconds: 1
  containers:
    - name: box
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", "mkdir -p /www && echo hello-from-oci > /www/index.html && httpd -p 8080 -h /www && while true; do echo tick; sleep 0.2; done"]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: oci-b}
spec:
  runtimeClassName: runc
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
    - name: box
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", "mkdir -p /www && echo hello-from-oci > /www/index.html && httpd -p 8080 -h /www && while true; do echo tick; sleep 0.2; done"]
      ports: [{containerPort: 8080}]
"#;

/// kubectl `bin` beside the server (in its network namespace), bounded to 60 s.
fn kubectl_cmd(c: &Cluster, bin: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = in_netns(c.server.netns.as_deref(), Path::new("timeout"));
    cmd.arg("60")
        .arg(tool(bin))
        .env("HOME", c.server.tool_home())
        .arg("--kubeconfig")
        .arg(&c.server.kubeconfig)
        .args(args)
        .envs(env.iter().copied());
    cmd
}

fn run(c: &Cluster, bin: &str, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = kubectl_cmd(c, bin, env, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("kubectl output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kubectl exec` without and with stdin: output, stderr and the exit code come back.
fn check_exec(c: &Cluster, bin: &str, env: &[(&str, &str)]) {
    let what = format!("{bin} {env:?}");
    // Wasm (a WASI p1 module: exit codes are the guest's own), on both nodes.
    for pod in ["wasm-a", "wasm-b"] {
        let out = run(c, bin, env, &["exec", pod, "--", "guest", "exit", "3"], "");
        assert_eq!(out.status.code(), Some(3), "{what} {pod}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("exiting with 3"),
            "{what} {pod}: {}",
            text(&out.stdout)
        );
        let out = run(c, bin, env, &["exec", "-i", pod, "--", "guest", "stdin"], "abc\n");
        assert!(out.status.success(), "{what} {pod}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "read 4 bytes: ABC", "{what} {pod}");
    }
    // OCI, through containerd's streaming server, on both nodes.
    for pod in OCI_PODS {
        let script = "echo out; echo err >&2; exit 5";
        let out = run(c, bin, env, &["exec", pod, "--", "sh", "-c", script], "");
        assert_eq!(out.status.code(), Some(5), "{what} {pod}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "out", "{what} {pod}");
        assert!(text(&out.stderr).contains("err"), "{what} {pod}: {}", text(&out.stderr));
        let out = run(c, bin, env, &["exec", "-i", pod, "--", "tr", "a-z", "A-Z"], "shout\n");
        assert!(out.status.success(), "{what} {pod}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "SHOUT", "{what} {pod}");
    }
}

/// `kubectl exec -it` under a pseudo-terminal (`script` gives kubectl one).
fn check_tty(c: &Cluster, bin: &str) {
    let line = |pod: &str, command: &str| {
        format!(
            "{} --kubeconfig {} exec -it {pod} -- {command}",
            tool(bin).display(),
            c.server.kubeconfig.display()
        )
    };
    let script = |command: String| {
        in_netns(c.server.netns.as_deref(), Path::new("timeout"))
            .args(["60", "script", "-qec"])
            .arg(command)
            .arg("/dev/null")
            .env("HOME", c.server.tool_home())
            .stdin(Stdio::null())
            .output()
            .expect("script")
    };
    let out = script(line("oci", "sh -c 'tty; exit 2'"));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{bin} -it oci: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("/dev/pts/"), "a terminal: {}", text(&out.stdout));
    // A terminal has one output: the guest's stderr shows there too.
    let out = script(line("wasm-a", "guest no-such-mode"));
    assert_eq!(out.status.code(), Some(2), "{bin} -it wasm-a: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("unknown mode"),
        "stderr on the terminal: {}",
        text(&out.stdout)
    );
    let out = script(line("wasm-b", "guest exit 4"));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{bin} -it wasm-b: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `kubectl attach` streams what the running container writes from now on.
fn check_attach(c: &Cluster, bin: &str, env: &[(&str, &str)]) {
    for (pod, want) in
        [("wasm-a", "tick "), ("wasm-b", "tick "), ("oci", "tick"), ("oci-b", "tick")]
    {
        let mut child = kubectl_cmd(c, bin, env, &["attach", pod])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl attach");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        for line in lines.by_ref().take(50) {
            let line = line.unwrap_or_default();
            if line.starts_with(want) {
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen, 3, "{bin} {env:?}: attach to {pod} shows its output as it is written");
    }
}

/// `kubectl port-forward` to a busybox httpd (OCI, embedded node) and a wasi:http pod (agent).
fn check_port_forward(c: &Cluster, bin: &str, env: &[(&str, &str)]) {
    for (pod, path, want) in [
        ("oci", "/index.html", "hello-from-oci"),
        ("oci-b", "/index.html", "hello-from-oci"),
        ("http-b", "/", "hello from Skiff"),
    ] {
        let mut child = kubectl_cmd(c, bin, env, &["port-forward", &format!("pod/{pod}"), ":8080"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines.by_ref().take(5).map_while(Result::ok).find_map(|l| {
            l.strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
        });
        let Some(port) = port else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("port-forward output");
            panic!("{bin} {env:?}: port-forward to {pod} did not start: {}", text(&out.stderr));
        };
        let ns = c.net.ns(0).to_string();
        for _ in 0..3 {
            let (code, body) = in_ns(&ns, || {
                http_get(&format!("127.0.0.1:{port}"), path, Duration::from_secs(10))
            })
            .unwrap_or_else(|e| panic!("{bin} {env:?}: GET through port-forward to {pod}: {e}"));
            assert_eq!(code, 200, "{bin} {env:?} {pod}: {body}");
            assert!(body.contains(want), "{bin} {env:?} {pod}: {body}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `kubectl cp` into and out of an OCI pod; a Wasm pod has no `tar`, and says so.
fn check_cp(c: &Cluster, bin: &str, dir: &Path) {
    let local = dir.join(format!("{bin}-in.txt"));
    let back = dir.join(format!("{bin}-out.txt"));
    let content = format!("copied by {bin}\n").repeat(2000);
    std::fs::write(&local, &content).expect("write");
    for pod in OCI_PODS {
        let to = format!("{pod}:/tmp/{bin}.txt");
        let out = run(c, bin, &[], &["cp", &local.to_string_lossy(), &to], "");
        assert!(out.status.success(), "{bin} cp into {pod}: {}", text(&out.stderr));
        let _ = std::fs::remove_file(&back);
        let out = run(c, bin, &[], &["cp", &to, &back.to_string_lossy()], "");
        assert!(out.status.success(), "{bin} cp out of {pod}: {}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(&back).expect("copied back"), content, "{pod}");
    }
    let out = run(c, bin, &[], &["cp", &local.to_string_lossy(), "wasm-a:/tmp/x"], "");
    assert!(!out.status.success(), "cp into a Wasm pod cannot work");
    assert!(
        text(&out.stderr).contains("WebAssembly") && text(&out.stderr).contains("tar"),
        "{bin}: the message says why: {}",
        text(&out.stderr)
    );
}

#[test]
fn exec_attach_port_forward_and_cp_should_work_on_every_node_with_every_kubectl() {
    let _serial = support::serial();
    let Some(c) = Cluster::start_with(true, true) else { return };
    c.server.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    c.agent.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    c.apply(PODS);
    for pod in ["wasm-a", "wasm-b", "http-b", "oci", "oci-b"] {
        c.server.wait_pod(pod, Duration::from_secs(90), "running", |p| {
            p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for bin in KUBECTLS {
        check_exec(&c, bin, &[]);
        check_attach(&c, bin, &[]);
        check_port_forward(&c, bin, &[]);
        check_tty(&c, bin);
        check_cp(&c, bin, dir.path());
    }
    // The SPDY fallback, with the newest kubectl.
    check_exec(&c, "kubectl-1.37", &SPDY);
    check_attach(&c, "kubectl-1.37", &SPDY);
    check_port_forward(&c, "kubectl-1.37", &SPDY);

    // Refusals read as kube-apiserver's.
    let out = run(&c, "kubectl-1.37", &[], &["exec", "oci", "-c", "nope", "--", "true"], "");
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod oci"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&c, "kubectl-1.37", &[], &["exec", "wasm-a"], "");
    assert!(!out.status.success(), "exec needs a command");
    let node_of = |pod: &str| c.server.json(&["get", "pod", pod])["spec"]["nodeName"].clone();
    assert_eq!(node_of("wasm-b"), AGENT_NODE, "the agent's pods went through its kubelet API");
}
