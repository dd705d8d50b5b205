//! End-to-end: NetworkPolicy as a truth table, after Kubernetes' own netpol e2e
//! (`test/e2e/network/netpol`): three namespaces labelled `ns=x`, `ns=y`, `ns=z`, each with
//! pods `a`, `b`, `c` labelled `pod=a`... serving ports 8080 and 8081 (named `serve-8080`,
//! `serve-8081`); every policy is applied alone, the 9×9 reachability matrix is observed per
//! port and compared with the one the policy implies, then the policy is deleted and
//! everything must be reachable again. Cases: default-deny ingress, allow from a namespace
//! (namespaceSelector), allow from pods (podSelector, alone and with a namespaceSelector),
//! default-deny egress (by pod IP: no DNS), `ipBlock` with `except` (egress and ingress), port
//! ranges (`endPort`) and named ports. Each change must be in effect within 2 s of `kubectl`
//! (the time is printed; OCI rows are seen a round of their loop later, allowed for).
//!
//! Layouts: Wasm pods (enforced in-process by the node), OCI pods (nftables, table
//! `skiff-netpol`) and a mix, on one node and spread over two (`skiff-e2e` with containerd,
//! `node-b` with Wasm only), in network namespaces of the test's own.
//!
//! Probing: a Wasm pod is asked by the test, from inside its node's namespace, to fetch
//! `http://<target>:<port>/` (`/fetch?url=...&timeout_ms=...` of examples/hello-http: 200 when
//! the connection is allowed, 502 when it is refused or dropped). An OCI pod runs a busybox
//! loop (bounded) that probes every target on both ports in rounds and prints
//! `RESULT <round> <from> <to> <port> ok|fail` and `ROUND <round> <from> <start> <end>`
//! (times from `/proc/uptime`, the test's clock too); the test reads the rounds that began
//! after a policy was applied. The targets' addresses reach the OCI pods once, before any
//! policy, from a small HTTP server the test runs on the node's address.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Checks;
use support::netns::{AGENT_NODE, TwoNodes as Cluster, http_get, in_ns};

const IMAGE: &str = "hello-http:e2e";
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [8080, 8081];
const SERVER_NODE: &str = "skiff-e2e";
/// How long a Wasm pod's probe of a dropped connection waits.
const PROBE_TIMEOUT_MS: u64 = 500;
/// How long an OCI pod's probe waits, in seconds: longer, as a busy machine may take a while
/// to start the probe's processes.
const OCI_PROBE_WAIT: &str = "0.7";
/// How long a policy change may take to show in the whole matrix before the case fails.
const CONVERGE: Duration = Duration::from_secs(10);
/// How soon after `kubectl apply` (or delete) a change must be in effect: no row may be seen
/// without it later than this, and the first observation matching in every row must come
/// within it — for OCI rows plus [`OCI_ROUND_SLACK`], as their loop sees a change only at its
/// next round.
const EFFECT_BOUND: Duration = Duration::from_secs(2);
/// The resolution of the OCI pods' rounds (a round waits up to `OCI_PROBE_WAIT` for dropped
/// connections, then pauses 0.2 s; slower on a busy machine).
const OCI_ROUND_SLACK: Duration = Duration::from_millis(1500);

/// The two-node cluster, with what these tests ask of it.
trait PolicyCluster {
    /// The network namespace of node `node`.
    fn node_ns(&self, node: &str) -> &str;
}

impl PolicyCluster for Cluster {
    fn node_ns(&self, node: &str) -> &str {
        self.net.ns(if node == SERVER_NODE { 0 } else { 1 })
    }
}

/// Seconds since boot (`/proc/uptime`): the clock the OCI pods' loops print too.
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|t| t.parse().ok()))
        .expect("/proc/uptime")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wasm,
    Oci,
}

/// Where each pod of a layout runs: (runtime, node) for (namespace index, pod index).
struct Layout {
    name: &'static str,
    place: fn(usize, usize) -> (Kind, &'static str),
}

/// Alternating over the two nodes, so that every namespace and pod pair has a neighbour on
/// each.
fn spread(ns: usize, pod: usize) -> &'static str {
    if (ns + pod) % 2 == 0 { SERVER_NODE } else { AGENT_NODE }
}

/// One of the nine pods of a layout.
#[derive(Debug, Clone)]
struct Peer {
    /// Its namespace's `ns` label (`x`) and its `pod` label (`a`).
    ns: &'static str,
    pod: &'static str,
    /// The namespace's real name (per layout).
    namespace: String,
    kind: Kind,
    node: &'static str,
    ip: String,
}

impl Peer {
    fn id(&self) -> String {
        format!("{}/{}", self.ns, self.pod)
    }

    fn is(&self, id: &str) -> bool {
        self.id() == id
    }
}

/// What a policy case expects of (from, to, port); a pod always reaches itself.
type Expect = Box<dyn Fn(&Peer, &Peer, u16) -> bool>;

struct Case {
    name: &'static str,
    /// Manifests with `$X`, `$Y`, `$Z` for the namespaces' names, `$CIDR` for the cluster's
    /// pod range and `$IP(x/a)` for a pod's address.
    policies: &'static str,
    /// The ports probed.
    ports: &'static [u16],
    expect: Expect,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "default-deny-ingress",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: $X}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#,
            ports: &[8080],
            expect: Box::new(|_, to, _| to.ns != "x"),
        },
        Case {
            name: "allow-from-namespace",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: $X}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
    - from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: ["y"]}]}}]
"#,
            ports: &[8080],
            expect: Box::new(|from, to, _| !to.is("x/a") || from.ns == "y"),
        },
        Case {
            name: "allow-from-pod",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-pods, namespace: $X}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector: {matchLabels: {pod: "b"}}
        - {namespaceSelector: {matchLabels: {ns: "z"}}, podSelector: {matchLabels: {pod: "c"}}}
"#,
            ports: &[8080],
            expect: Box::new(|from, to, _| !to.is("x/a") || from.is("x/b") || from.is("z/c")),
        },
        Case {
            name: "default-deny-egress",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: $X}
spec:
  podSelector: {}
  policyTypes: [Egress]
"#,
            ports: &[8080],
            expect: Box::new(|from, _, _| from.ns != "x"),
        },
        Case {
            name: "ip-block-except",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-cidr, namespace: $X}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: "$CIDR", except: ["$IP(y/b)/32"]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-cidr, namespace: $Y}
spec:
  podSelector: {matchLabels: {pod: "c"}}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: "$CIDR", except: ["$IP(x/b)/32", "$IP(z/b)/32"]}}]
"#,
            ports: &[8080],
            expect: Box::new(|from, to, _| {
                !(from.is("x/a") && to.is("y/b"))
                    && !(to.is("y/c") && (from.is("x/b") || from.is("z/b")))
            }),
        },
        Case {
            name: "port-range",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-range, namespace: $X}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
    - ports: [{protocol: TCP, port: 8081, endPort: 8090}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-range, namespace: $Y}
spec:
  podSelector: {matchLabels: {pod: "b"}}
  policyTypes: [Egress]
  egress:
    - ports: [{protocol: TCP, port: 7000, endPort: 8080}]
"#,
            ports: &PORTS,
            expect: Box::new(|from, to, port| {
                !(to.is("x/a") && port == 8080) && !(from.is("y/b") && port == 8081)
            }),
        },
        Case {
            name: "named-ports",
            policies: r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-named, namespace: $X}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: "z"}}}]
      ports: [{port: serve-8081}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-named, namespace: $Y}
spec:
  podSelector: {matchLabels: {pod: "b"}}
  policyTypes: [Egress]
  egress:
    - ports: [{protocol: TCP, port: serve-8080}]
"#,
            ports: &PORTS,
            expect: Box::new(|from, to, port| {
                (!to.is("x/a") || (port == 8081 && from.ns == "z"))
                    && !(from.is("y/b") && port == 8081)
            }),
        },
    ]
}

/// The OCI pods' loop: serve both ports, fetch the target list (`name ip` lines) once from
/// `$TARGETS`, then probe every target on both ports in rounds, all of a round at once.
/// Bounded: at most 3000 rounds. (No `wget -T`: Debian's busybox 1.35 crashes on it; a
/// background kill bounds a dropped connection instead.)
const OCI_LOOP: &str = r#"
mkdir -p /www && echo ok > /www/index.html
httpd -p 8080 -h /www && httpd -p 8081 -h /www || exit 1
n=0
until wget -q -O /tmp/targets "$TARGETS" 2>/dev/null && [ -s /tmp/targets ]; do
  n=$((n+1)); [ $n -gt 1500 ] && exit 1; sleep 0.2
done
n=0
while [ $n -lt 3000 ]; do
  n=$((n+1))
  s=$(cut -d' ' -f1 /proc/uptime)
  while read to ip; do
    for port in 8080 8081; do
      (wget -q -O /dev/null "http://$ip:$port/" 2>/dev/null & w=$!
       (sleep $WAIT; kill $w 2>/dev/null) & k=$!
       if wait $w; then r=ok; else r=fail; fi
       kill $k 2>/dev/null
       echo "RESULT $n $ME $to $port $r") &
    done
  done < /tmp/targets
  wait
  echo "ROUND $n $ME $s $(cut -d' ' -f1 /proc/uptime)"
  sleep 0.2
done
"#;

fn pod_manifest(p: &Peer, targets_url: &str) -> String {
    let ports =
        "[{containerPort: 8080, name: serve-8080}, {containerPort: 8081, name: serve-8081}]";
    let (ns, pod, node, namespace) = (p.ns, p.pod, p.node, &p.namespace);
    match p.kind {
        Kind::Wasm => format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {namespace}, labels: {{pod: "{pod}"}}}}
spec:
  runtimeClassName: wasmtime
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: http
      image: {IMAGE}
      imagePullPolicy: IfNotPresent
      ports: {ports}
      env: [{{name: POD_NAME, value: {ns}-{pod}}}]
      readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"#
        ),
        Kind::Oci => {
            let wait = OCI_PROBE_WAIT;
            format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {namespace}, labels: {{pod: "{pod}", client: oci}}}}
spec:
  runtimeClassName: runc
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", {OCI_LOOP:?}]
      env:
        - {{name: ME, value: {ns}/{pod}}}
        - {{name: TARGETS, value: "{targets_url}"}}
        - {{name: WAIT, value: "{wait}"}}
      ports: {ports}
      readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
            )
        }
    }
}

/// A tiny HTTP server on `addr` inside namespace `ns` answering every request with the
/// body in `body` (503 while it is empty), until `stop` is set.
fn serve_targets(
    ns: String,
    addr: String,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
) -> (String, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        in_ns(&ns, || {
            let listener = TcpListener::bind(format!("{addr}:0")).expect("bind target server");
            listener.set_nonblocking(true).expect("nonblocking");
            tx.send(listener.local_addr().expect("local addr").to_string()).expect("send addr");
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let text = body.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let status = if text.is_empty() { "503 Not Yet" } else { "200 OK" };
                        let _ = write!(
                            s,
                            "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                            text.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("target server address");
    (addr, handle)
}

/// One observed cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ok,
    Fail,
    /// No answer of either kind (the probe itself broke, or no round yet).
    Unknown,
}

/// (from, to, port) → what was seen, for the pods by index.
type Matrix = BTreeMap<(usize, usize, u16), Seen>;

/// When each row of an observation was probed, as offsets from the change's moment.
struct Observation {
    matrix: Matrix,
    /// When this observation began, relative to the change.
    started: Duration,
    /// Per source row, relative to the change: when its live probes ended (Wasm), or when
    /// the first of its unbroken run of rounds matching what is expected began (OCI; absent
    /// when its latest round does not match).
    seen_at: BTreeMap<usize, Duration>,
    /// When some OCI row was last seen not matching (the change came later there).
    not_before: Duration,
    /// Problems seen on the way (errors of probes).
    notes: Vec<String>,
}

struct Run<'a> {
    c: &'a Cluster,
    peers: Vec<Peer>,
}

impl Run<'_> {
    /// Between observations of every row: short for Wasm pods alone; with OCI pods, each
    /// observation runs kubectl, whose CPU the two cores need for the pods' own probes.
    fn poll_interval(&self) -> Duration {
        if self.peers.iter().any(|p| p.kind == Kind::Oci) {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(50)
        }
    }

    /// Probe every (from, to, port) once: Wasm sources live, OCI sources from the latest
    /// complete round of their loop that began at or after `since` (uptime seconds). An OCI
    /// row matching `want` counts from the start of its first round in the unbroken run of
    /// matching rounds (a probe's fate is sealed at its first packet), so the time kubectl
    /// takes to fetch the logs does not count.
    fn observe(
        &self,
        kind: Kind,
        ports: &[u16],
        want: &Matrix,
        t0: Instant,
        since: f64,
    ) -> Observation {
        let mut matrix = Matrix::new();
        let mut notes = Vec::new();
        let started = t0.elapsed();
        let mut seen_at: BTreeMap<usize, Duration> = BTreeMap::new();
        let mut not_before = Duration::ZERO;
        let oci_ns: Vec<String> = {
            let mut v: Vec<String> = self
                .peers
                .iter()
                .filter(|p| p.kind == Kind::Oci && kind == Kind::Oci)
                .map(|p| p.namespace.clone())
                .collect();
            v.dedup();
            v
        };
        let (wasm, logs) = std::thread::scope(|scope| {
            let logs: Vec<_> = oci_ns
                .iter()
                .map(|ns| {
                    scope.spawn(move || {
                        self.c.server.kubectl(&[
                            "logs",
                            "-n",
                            ns,
                            "-l",
                            "client=oci",
                            "--tail=120",
                            "--max-log-requests=10",
                        ])
                    })
                })
                .collect();
            let mut probes = Vec::new();
            for (i, from) in
                self.peers.iter().enumerate().filter(|(_, p)| p.kind == kind && kind == Kind::Wasm)
            {
                for (j, to) in self.peers.iter().enumerate() {
                    for &port in ports {
                        let ns = self.c.node_ns(from.node).to_string();
                        probes.push(scope.spawn(move || {
                            let path = format!(
                                "/fetch?url=http://{}:{port}/&timeout_ms={PROBE_TIMEOUT_MS}",
                                to.ip
                            );
                            let r = in_ns(&ns, || {
                                http_get(
                                    &format!("{}:8080", from.ip),
                                    &path,
                                    Duration::from_secs(5),
                                )
                            });
                            ((i, j, port), r, t0.elapsed())
                        }));
                    }
                }
            }
            let wasm: Vec<_> =
                probes.into_iter().map(|h| h.join().expect("probe thread")).collect();
            let logs: Vec<_> = logs.into_iter().map(|h| h.join().expect("logs thread")).collect();
            (wasm, logs)
        });
        for (key, r, at) in wasm {
            let row = seen_at.entry(key.0).or_default();
            *row = (*row).max(at);
            let seen = match r {
                Ok((200, _)) => Seen::Ok,
                Ok((502, _)) => Seen::Fail,
                other => {
                    notes.push(format!(
                        "{} -> {}:{}: {other:?}",
                        self.peers[key.0].id(),
                        self.peers[key.1].id(),
                        key.2
                    ));
                    Seen::Unknown
                }
            };
            matrix.insert(key, seen);
        }
        // OCI rows: per source, its rounds that began after the change, by number: (start,
        // end, results).
        type Round = (f64, f64, Vec<(String, u16, bool)>);
        let mut rounds: BTreeMap<String, BTreeMap<u64, Round>> = BTreeMap::new();
        let mut results: BTreeMap<(String, u64), Vec<(String, u16, bool)>> = BTreeMap::new();
        for out in &logs {
            if !out.status.success() {
                notes
                    .push(format!("kubectl logs: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    ["RESULT", n, from, to, port, r] => {
                        let (Ok(n), Ok(port)) = (n.parse::<u64>(), port.parse::<u16>()) else {
                            continue;
                        };
                        results.entry((from.to_string(), n)).or_default().push((
                            to.to_string(),
                            port,
                            *r == "ok",
                        ));
                    }
                    ["ROUND", n, from, start, end] => {
                        let (Ok(n), Ok(start), Ok(end)) =
                            (n.parse::<u64>(), start.parse::<f64>(), end.parse::<f64>())
                        else {
                            continue;
                        };
                        if start >= since {
                            let r = results.remove(&(from.to_string(), n)).unwrap_or_default();
                            rounds.entry(from.to_string()).or_default().insert(n, (start, end, r));
                        }
                    }
                    _ => {}
                }
            }
        }
        for (i, from) in
            self.peers.iter().enumerate().filter(|(_, p)| p.kind == kind && kind == Kind::Oci)
        {
            let row = |r: &Round| -> Vec<((usize, usize, u16), Seen)> {
                let mut cells = Vec::new();
                for (j, to) in self.peers.iter().enumerate() {
                    for &port in ports {
                        let seen =
                            r.2.iter()
                                .find(|(t, p, _)| *t == to.id() && *p == port)
                                .map(|(_, _, ok)| if *ok { Seen::Ok } else { Seen::Fail })
                                .unwrap_or(Seen::Unknown);
                        cells.push(((i, j, port), seen));
                    }
                }
                cells
            };
            let matches = |cells: &[((usize, usize, u16), Seen)]| {
                cells.iter().all(|(k, v)| want.get(k) == Some(v))
            };
            let mut list: Vec<Round> =
                rounds.get(&from.id()).map(|m| m.values().cloned().collect()).unwrap_or_default();
            // A probe that failed between two rounds where it succeeded was too slow, not
            // refused (a busy machine): within a case the state changes once, so a real
            // change never looks like that.
            for k in 1..list.len().saturating_sub(1) {
                let ok = |r: &Round, to: &str, port: u16| {
                    r.2.iter().any(|(t, p, ok)| t == to && *p == port && *ok)
                };
                let (before, after) = (list[k - 1].clone(), list[k + 1].clone());
                for cell in list[k].2.iter_mut() {
                    if !cell.2 && ok(&before, &cell.0, cell.1) && ok(&after, &cell.0, cell.1) {
                        cell.2 = true;
                    }
                }
            }
            let list: Vec<&Round> = list.iter().collect();
            let Some(last) = list.last() else {
                for (j, _) in self.peers.iter().enumerate() {
                    for &port in ports {
                        matrix.insert((i, j, port), Seen::Unknown);
                    }
                }
                continue;
            };
            let cells = row(last);
            // In effect since the first round of the streak of matching rounds that ends
            // with the last one.
            if matches(&cells) {
                let streak = list.iter().rev().take_while(|r| matches(&row(r))).count();
                let first = list[list.len() - streak];
                seen_at.insert(i, Duration::from_secs_f64((first.0 - since).max(0.0)));
                // The round before it began while the change was not yet in effect there.
                if streak < list.len() {
                    let before = list[list.len() - streak - 1];
                    not_before =
                        not_before.max(Duration::from_secs_f64((before.0 - since).max(0.0)));
                }
            }
            matrix.extend(cells);
        }
        Observation { matrix, started, seen_at, not_before, notes }
    }

    fn expected(&self, ports: &[u16], expect: &dyn Fn(&Peer, &Peer, u16) -> bool) -> Matrix {
        let mut m = Matrix::new();
        for (i, from) in self.peers.iter().enumerate() {
            for (j, to) in self.peers.iter().enumerate() {
                for &port in ports {
                    let ok = i == j || expect(from, to, port);
                    m.insert((i, j, port), if ok { Seen::Ok } else { Seen::Fail });
                }
            }
        }
        m
    }

    /// The matrices side by side per port, rows from, columns to (`.` reachable, `X` not,
    /// `?` unknown; `*` marks a cell that differs from what was expected).
    fn render(&self, ports: &[u16], want: &Matrix, got: &Matrix) -> String {
        let ids: Vec<String> = self.peers.iter().map(Peer::id).collect();
        let kinds: Vec<&str> =
            self.peers.iter().map(|p| if p.kind == Kind::Wasm { "w" } else { "o" }).collect();
        let mut out = String::new();
        for &port in ports {
            out.push_str(&format!("port {port}: expected{:22}observed\n", ""));
            let header: String = ids.iter().map(|id| format!("{id:>4}")).collect();
            out.push_str(&format!("{:8}{header}  {:8}{header}\n", "", ""));
            for (i, id) in ids.iter().enumerate() {
                let row = |m: &Matrix, mark: bool| -> String {
                    (0..ids.len())
                        .map(|j| {
                            let c = match m.get(&(i, j, port)) {
                                Some(Seen::Ok) => '.',
                                Some(Seen::Fail) => 'X',
                                _ => '?',
                            };
                            let differs = mark && want.get(&(i, j, port)) != got.get(&(i, j, port));
                            format!("{:>3}{}", c, if differs { '*' } else { ' ' })
                        })
                        .collect()
                };
                let label = format!("{id}({})@{}", kinds[i], &self.peers[i].node[..1]);
                out.push_str(&format!(
                    "{label:8}{}  {label:8}{}\n",
                    row(want, false),
                    row(got, true)
                ));
            }
        }
        out
    }

    /// One observation of every row.
    fn observe_all(&self, ports: &[u16], want: &Matrix, t0: Instant, since: f64) -> Observation {
        let mut obs = self.observe(Kind::Wasm, ports, want, t0, since);
        let oci = self.observe(Kind::Oci, ports, want, t0, since);
        obs.matrix.extend(oci.matrix);
        obs.notes.extend(oci.notes);
        obs
    }

    /// Observe the rows of `kind` until they all match `want` (or `CONVERGE` passed): the last
    /// observation, with (not before, in effect) as [`Run::converge`] tells them when they
    /// matched.
    fn follow(
        &self,
        kind: Kind,
        ports: &[u16],
        want: &Matrix,
        t0: Instant,
        since: f64,
    ) -> (Observation, Option<(Duration, Duration)>) {
        let deadline = t0 + CONVERGE;
        let rows: Vec<usize> =
            self.peers.iter().enumerate().filter(|(_, p)| p.kind == kind).map(|(i, _)| i).collect();
        // Per source row: since when it has matched without a break.
        let mut matching: BTreeMap<usize, Duration> = BTreeMap::new();
        let mut not_before = Duration::ZERO;
        let pause = match kind {
            Kind::Wasm => Duration::from_millis(50),
            Kind::Oci => Duration::from_millis(500),
        };
        // Bounded: each observation takes at least a probe or a kubectl call.
        for _ in 0..400 {
            let obs = self.observe(kind, ports, want, t0, since);
            not_before = not_before.max(obs.not_before);
            let mut all = true;
            for &i in &rows {
                let ok = want
                    .iter()
                    .filter(|(k, _)| k.0 == i)
                    .all(|(k, v)| obs.matrix.get(k) == Some(v));
                match (ok, obs.seen_at.get(&i)) {
                    (true, Some(at)) if kind == Kind::Oci => {
                        matching.insert(i, *at);
                    }
                    (true, Some(at)) => {
                        matching.entry(i).or_insert(*at);
                    }
                    _ => {
                        all = false;
                        matching.remove(&i);
                        if kind == Kind::Wasm {
                            not_before = not_before.max(obs.started);
                        }
                    }
                }
            }
            if all {
                let at = matching.values().copied().max().unwrap_or_default();
                return (obs, Some((not_before, at)));
            }
            if Instant::now() > deadline {
                return (obs, None);
            }
            std::thread::sleep(pause);
        }
        (self.observe(kind, ports, want, t0, since), None)
    }

    /// Poll until the observed matrix equals `want`: how long after `t0` it was not yet and
    /// was in effect (see [`Observation`]); panics with both matrices when it never is.
    fn converge(
        &self,
        what: &str,
        ports: &[u16],
        want: &Matrix,
        t0: Instant,
        since: f64,
    ) -> (Duration, Duration) {
        // Wasm rows are probed live (often), OCI rows read from the pods' logs (each read
        // costs a few kubectl calls): each kind at its own pace, each until all its rows match.
        let kinds: Vec<Kind> = [Kind::Wasm, Kind::Oci]
            .into_iter()
            .filter(|k| self.peers.iter().any(|p| p.kind == *k))
            .collect();
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = kinds
                .iter()
                .map(|&kind| scope.spawn(move || self.follow(kind, ports, want, t0, since)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("follow thread")).collect()
        });
        let mut matrix = Matrix::new();
        let mut notes = Vec::new();
        let (mut not_before, mut at, mut ok) = (Duration::ZERO, Duration::ZERO, true);
        for (obs, result) in outcomes {
            matrix.extend(obs.matrix);
            notes.extend(obs.notes);
            match result {
                Some((nb, a)) => {
                    not_before = not_before.max(nb);
                    at = at.max(a);
                }
                None => ok = false,
            }
        }
        if ok && matrix == *want {
            return (not_before, at);
        }
        let obs = Observation {
            matrix,
            started: Duration::ZERO,
            seen_at: BTreeMap::new(),
            not_before,
            notes,
        };
        let diffs: Vec<String> = want
            .iter()
            .filter(|(k, v)| obs.matrix.get(k) != Some(v))
            .map(|((i, j, port), v)| {
                format!(
                    "{} -> {}:{port} expected {v:?}, observed {:?}",
                    self.peers[*i].id(),
                    self.peers[*j].id(),
                    obs.matrix.get(&(*i, *j, *port)).unwrap_or(&Seen::Unknown)
                )
            })
            .collect();
        panic!(
            "{what}: the matrix did not match within {CONVERGE:?}\n{}mismatches:\n  {}\nnotes: {:?}",
            self.render(ports, want, &obs.matrix),
            diffs.join("\n  "),
            obs.notes
        );
    }
}

fn substitute(text: &str, peers: &[Peer], cidr: &str) -> String {
    let mut out = text.to_string();
    for p in peers {
        out = out.replace(&format!("$IP({})", p.id()), &p.ip);
    }
    for ns in NAMESPACES {
        let real =
            peers.iter().find(|p| p.ns == ns).map(|p| p.namespace.clone()).unwrap_or_default();
        out = out.replace(&format!("${}", ns.to_uppercase()), &real);
    }
    out.replace("$CIDR", cidr)
}

/// Create the nine pods of `layout`, run every case on them, then remove them.
fn run_layout(c: &Cluster, layout: &Layout, checks: &mut Checks) {
    let started = Instant::now();
    let body = Arc::new(Mutex::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (targets, server) =
        serve_targets(c.net.ns(0).to_string(), c.net.node_ip(0), body.clone(), stop.clone());
    let mut peers = Vec::new();
    let mut manifest = String::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        let namespace = format!("{}-{ns}", layout.name);
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}, labels: {{ns: \"{ns}\"}}}}\n"
        ));
        for (i, pod) in PODS.iter().enumerate() {
            let (kind, node) = (layout.place)(n, i);
            peers.push(Peer {
                ns,
                pod,
                namespace: namespace.clone(),
                kind,
                node,
                ip: String::new(),
            });
        }
    }
    for p in &peers {
        manifest.push_str("---");
        manifest.push_str(&pod_manifest(p, &format!("http://{targets}/")));
    }
    c.apply(&manifest);
    // Every pod Ready, with its address.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = c.server.json(&["get", "pods", "-A", "-l", "pod"]);
        let mut missing = Vec::new();
        for p in peers.iter_mut() {
            let pod = list["items"].as_array().into_iter().flatten().find(|o| {
                o["metadata"]["namespace"] == p.namespace.as_str() && o["metadata"]["name"] == p.pod
            });
            let ready = pod.is_some_and(|o| {
                o["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            match pod.and_then(|o| o["status"]["podIP"].as_str()) {
                Some(ip) if ready => p.ip = ip.to_string(),
                _ => missing.push(p.id()),
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{}: pods not Ready in 120 s: {missing:?}", layout.name);
        std::thread::sleep(Duration::from_millis(300));
    }
    *body.lock().unwrap_or_else(|e| e.into_inner()) =
        peers.iter().map(|p| format!("{} {}\n", p.id(), p.ip)).collect();
    eprintln!(
        "{}: 9 pods Ready in {:?}: {}",
        layout.name,
        started.elapsed(),
        peers
            .iter()
            .map(|p| format!("{}={:?}@{}/{}", p.id(), p.kind, p.node, p.ip))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let run = Run { c, peers };
    let all = |_: &Peer, _: &Peer, _: u16| true;
    // Before any policy: everything reaches everything (and the OCI loops have their lists).
    checks.check(&format!("{}: no policy", layout.name), || {
        let want = run.expected(&PORTS, &all);
        let t0 = Instant::now();
        let since = uptime();
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let obs = run.observe_all(&PORTS, &want, t0, since);
            if obs.matrix == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "without policies everything should be reachable:\n{}notes: {:?}",
                run.render(&PORTS, &want, &obs.matrix),
                obs.notes
            );
            std::thread::sleep(run.poll_interval());
        }
    });
    let bound = if run.peers.iter().any(|p| p.kind == Kind::Oci) {
        EFFECT_BOUND + OCI_ROUND_SLACK
    } else {
        EFFECT_BOUND
    };
    for case in cases() {
        let policies = substitute(case.policies, &run.peers, &c.server.cluster_cidr);
        let what = format!("{}: {}", layout.name, case.name);
        let want = run.expected(case.ports, &*case.expect);
        let since = uptime();
        let t0 = Instant::now();
        c.apply(&policies);
        checks.check(&what, || {
            let (after, took) = run.converge(&what, case.ports, &want, t0, since);
            eprintln!(
                "{what}: in effect {took:?} after apply (not before {after:?}; seen after {:?})",
                t0.elapsed()
            );
            assert!(
                took <= bound && after <= EFFECT_BOUND,
                "{what}: in effect only {took:?} after apply (bound {bound:?}), still not {after:?} after"
            );
        });
        let since = uptime();
        let t0 = Instant::now();
        c.delete(&policies);
        checks.check(&format!("{what} deleted"), || {
            let want = run.expected(case.ports, &all);
            let (after, took) =
                run.converge(&format!("{what} deleted"), case.ports, &want, t0, since);
            eprintln!("{what}: all reachable again {took:?} after delete (not before {after:?})");
            assert!(
                took <= bound && after <= EFFECT_BOUND,
                "{what}: deletion in effect only {took:?} after (bound {bound:?}), still not {after:?} after"
            );
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    // Out of the way of the next layout: unlabelled (no selector of its picks them) and
    // deleted without waiting.
    for ns in NAMESPACES {
        let namespace = format!("{}-{ns}", layout.name);
        c.server.ok(&["label", "namespace", &namespace, "ns-"]);
        c.server.ok(&["delete", "namespace", &namespace, "--wait=false"]);
    }
    eprintln!("{}: done in {:?}", layout.name, started.elapsed());
}

const WASM_ONE_NODE: Layout = Layout { name: "wasm-1", place: |_, _| (Kind::Wasm, SERVER_NODE) };
const WASM_TWO_NODES: Layout = Layout { name: "wasm-2", place: |n, i| (Kind::Wasm, spread(n, i)) };
const OCI_ONE_NODE: Layout = Layout { name: "oci-1", place: |_, _| (Kind::Oci, SERVER_NODE) };
/// Pods a and b Wasm, c OCI.
const MIXED_ONE_NODE: Layout = Layout {
    name: "mixed-1",
    place: |_, i| (if i == 2 { Kind::Oci } else { Kind::Wasm }, SERVER_NODE),
};
/// Pods a and b Wasm on alternating nodes, c OCI (on the node with containerd).
const MIXED_TWO_NODES: Layout = Layout {
    name: "mixed-2",
    place: |n, i| if i == 2 { (Kind::Oci, SERVER_NODE) } else { (Kind::Wasm, spread(n, i)) },
};

#[test]
fn network_policies_should_hold_for_wasm_pods_on_one_and_two_nodes() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(false) else { return };
    let mut checks = Checks::default();
    run_layout(&c, &WASM_ONE_NODE, &mut checks);
    run_layout(&c, &WASM_TWO_NODES, &mut checks);
    checks.finish("NetworkPolicy truth table, Wasm pods");
}

#[test]
fn network_policies_should_hold_for_oci_pods() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(true) else { return };
    let mut checks = Checks::default();
    run_layout(&c, &OCI_ONE_NODE, &mut checks);
    checks.finish("NetworkPolicy truth table, OCI pods");
}

#[test]
fn network_policies_should_hold_for_mixed_pods_on_one_and_two_nodes() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(true) else { return };
    let mut checks = Checks::default();
    run_layout(&c, &MIXED_ONE_NODE, &mut checks);
    run_layout(&c, &MIXED_TWO_NODES, &mut checks);
    checks.finish("NetworkPolicy truth table, Wasm and OCI pods");
}
