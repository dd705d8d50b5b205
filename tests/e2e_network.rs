//! End-to-end: the cluster network. Two nodes, each in a network namespace this test makes
//! (`skiff server` with its embedded node and containerd in one, `skiff agent` in the other, on
//! a bridge of the test's own), reach each other's pods by pod IP (host-gateway routes), reach
//! Services by ClusterIP (nftables for the host and OCI pods, in-process for Wasm guests) and by
//! name (the built-in cluster DNS), for Wasm and OCI pods alike; StatefulSet pods resolve each
//! other by their stable names; a rolling update behind a Service drops no request; and what the
//! node leaves in the kernel keeps every cluster address on the machine.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::netns::{TwoNodes as Cluster, http_get, in_ns};

/// What these tests ask of the two-node cluster.
trait NetworkCluster {
    fn ready_pods(&self, app: &str, n: usize, timeout: Duration) -> Vec<(String, String, String)>;
    fn cluster_ip(&self, svc: &str) -> String;
    fn ready_endpoints(&self, svc: &str) -> Vec<String>;
    fn wait_endpoints(&self, svc: &str, n: usize);
    fn busybox(&self, name: &str, script: &str) -> String;
}

impl NetworkCluster for Cluster {
    /// Pods with label `app=<app>` once `n` of them are Ready: (name, pod IP, node).
    fn ready_pods(&self, app: &str, n: usize, timeout: Duration) -> Vec<(String, String, String)> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let list = self.server.json(&["get", "pods", "-l", &format!("app={app}")]);
            let ready: Vec<_> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .map(|p| {
                    let s = |ptr: &str| {
                        p.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string()
                    };
                    (s("/metadata/name"), s("/status/podIP"), s("/spec/nodeName"))
                })
                .collect();
            if ready.len() == n {
                return ready;
            }
            last = list;
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{n} ready pods of app={app} not seen in {timeout:?}; last: {last}");
    }

    fn cluster_ip(&self, svc: &str) -> String {
        self.server.ok(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]).trim().to_string()
    }

    /// Ready endpoints of a Service's EndpointSlices.
    fn ready_endpoints(&self, svc: &str) -> Vec<String> {
        let list = self.server.json(&[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ]);
        let mut ips = Vec::new();
        for slice in list["items"].as_array().into_iter().flatten() {
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                if ep["conditions"]["ready"] == true {
                    ips.extend(
                        ep["addresses"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_string),
                    );
                }
            }
        }
        ips.sort();
        ips
    }

    fn wait_endpoints(&self, svc: &str, n: usize) {
        self.server.wait_for(
            &format!("{n} ready endpoints of {svc}"),
            Duration::from_secs(30),
            || self.ready_endpoints(svc).len() == n,
        );
    }

    /// Run a one-shot OCI busybox pod on the server's node; its log once it succeeded.
    fn busybox(&self, name: &str, script: &str) -> String {
        let manifest = format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  runtimeClassName: runc
  nodeName: skiff-e2e
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", {script:?}]
"#
        );
        self.apply(&manifest);
        let pod = self.server.wait_pod(name, Duration::from_secs(90), "finished", |p| {
            matches!(support::phase(p), "Succeeded" | "Failed")
        });
        let log = self.server.ok(&["logs", name]);
        assert_eq!(support::phase(&pod), "Succeeded", "pod {name} failed; its log:\n{log}");
        log
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      runtimeClassName: wasmtime
      terminationGracePeriodSeconds: 5
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
        - name: http
          image: hello-http:e2e
          imagePullPolicy: IfNotPresent
          ports: [{containerPort: 8080, name: http}]
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

#[test]
fn services_dns_and_routes_should_join_wasm_and_oci_pods_across_nodes() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(true) else { return };
    let ns0 = c.net.ns(0).to_string();
    c.apply(WEB);
    let pods = c.ready_pods("web", 2, Duration::from_secs(90));
    let nodes: std::collections::BTreeSet<_> = pods.iter().map(|p| p.2.clone()).collect();
    assert_eq!(nodes.len(), 2, "web should spread over both nodes: {pods:?}");
    c.wait_endpoints("web", 2);
    let ip = c.cluster_ip("web");

    // Pod IPs across nodes (host-gateway routes), and the ClusterIP from the node (nftables).
    in_ns(&ns0, || {
        for (name, pod_ip, node) in &pods {
            let (code, body) = http_get(&format!("{pod_ip}:8080"), "/", Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("pod {name} on {node} by pod IP: {e}"));
            assert_eq!(code, 200);
            assert!(body.contains(name.as_str()), "{body}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let (code, body) = http_get(&format!("{ip}:80"), "/", Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("ClusterIP {ip}: {e}"));
            assert_eq!(code, 200, "{body}");
            seen.extend(pods.iter().filter(|p| body.contains(p.0.as_str())).map(|p| p.0.clone()));
        }
        assert_eq!(seen.len(), 2, "both endpoints should answer through the ClusterIP: {seen:?}");
    });

    // The cluster DNS on its ClusterIP, from the node.
    let dig =
        |name: &str| c.net.exec(0, &["dig", "+short", "+time=2", "+tries=1", "@10.96.0.10", name]);
    assert_eq!(dig("web.default.svc.cluster.local").expect("dig").trim(), ip);
    let nx = c
        .net
        .exec(0, &["dig", "+time=2", "+tries=1", "@10.96.0.10", "nosuch.default.svc.cluster.local"])
        .expect("dig");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");

    // An OCI pod reaches the Wasm Service by name. (No `wget -T`: Debian's busybox 1.35
    // crashes on it.)
    let log = c.busybox(
        "client",
        "wget -qO- http://web.default.svc.cluster.local/ && nslookup web.default.svc.cluster.local",
    );
    assert!(log.contains("hello from Skiff"), "{log}");
    assert!(log.contains(&ip), "nslookup should answer the ClusterIP {ip}:\n{log}");

    // A Wasm guest (on each node) calls an OCI Service by name, in-process.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: oci-web, labels: {app: oci-web}}
spec:
  runtimeClassName: runc
  nodeName: skiff-e2e
  terminationGracePeriodSeconds: 1
  containers:
    - name: httpd
      image: skiff.local/busybox:1.36
      command: ["sh", "-c", "mkdir -p /www && echo hello-from-oci > /www/index.html && exec httpd -f -p 8080 -h /www"]
      ports: [{containerPort: 8080, name: web}]
      readinessProbe: {tcpSocket: {port: web}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: oci-web}
spec:
  selector: {app: oci-web}
  ports: [{port: 80, targetPort: web}]
"#,
    );
    c.wait_endpoints("oci-web", 1);
    in_ns(&ns0, || {
        for (name, pod_ip, node) in &pods {
            // The endpoint reaches each node's Service table a little after the API shows it
            // (as with kube-proxy): until then the Service refuses connections, so poll.
            let deadline = Instant::now() + Duration::from_secs(15);
            let (code, body) = loop {
                let (code, body) = http_get(
                    &format!("{pod_ip}:8080"),
                    "/fetch?url=http://oci-web/index.html",
                    Duration::from_secs(10),
                )
                .unwrap_or_else(|e| panic!("{name} on {node}: {e}"));
                if code == 200 || Instant::now() > deadline {
                    break (code, body);
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            // (The body comes chunked: this client does not decode it.)
            assert!(
                code == 200 && body.contains("hello-from-oci"),
                "Wasm pod {name} on {node} calling oci-web: {code} {body}"
            );
            let (code, body) = http_get(
                &format!("{pod_ip}:8080"),
                "/fetch?url=http://nosuch/",
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(code, 502, "an unknown name fails: {body}");
        }
    });

    // A StatefulSet's pods by their stable names: Wasm in-process, OCI through the DNS server.
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      runtimeClassName: wasmtime
      terminationGracePeriodSeconds: 1
      containers:
        - name: http
          image: hello-http:e2e
          imagePullPolicy: IfNotPresent
          ports: [{containerPort: 8080, name: http}]
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
"#,
    );
    let db = c.ready_pods("db", 2, Duration::from_secs(90));
    c.wait_endpoints("db", 2);
    let db0 = db.iter().find(|p| p.0 == "db-0").expect("db-0");
    let db1 = db.iter().find(|p| p.0 == "db-1").expect("db-1");
    in_ns(&ns0, || {
        let (code, body) = http_get(
            &format!("{}:8080", db0.1),
            "/fetch?url=http://db-1.db:8080/",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("db-0 calling db-1.db: {e}"));
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("pod db-1"), "{body}");
    });
    // (busybox's nslookup does not walk the search path: full names.)
    let log = c.busybox(
        "resolver",
        "nslookup db-0.db.default.svc.cluster.local && nslookup db-1.db.default.svc.cluster.local",
    );
    assert!(
        log.contains(&db0.1) && log.contains(&db1.1),
        "stable names should resolve to {} and {}:\n{log}",
        db0.1,
        db1.1
    );

    // NodePort: the other node's address reaches the Service; ClientIP affinity keeps a
    // client on one endpoint.
    c.server.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"type":"NodePort","sessionAffinity":"ClientIP"}}"#,
    ]);
    let node_port = c.server.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let node_port = node_port.trim().to_string();
    assert!(node_port.parse::<u16>().is_ok_and(|p| (30000..=32767).contains(&p)), "{node_port}");
    let ns1 = c.net.ns(1).to_string();
    let via_node_port = format!("{}:{node_port}", c.net.node_ip(0));
    let mut answered = std::collections::BTreeSet::new();
    in_ns(&ns1, || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while n < 20 {
            match http_get(&via_node_port, "/", Duration::from_secs(2)) {
                Ok((200, body)) => {
                    n += 1;
                    answered.extend(
                        pods.iter().filter(|p| body.contains(p.0.as_str())).map(|p| p.0.clone()),
                    );
                }
                other => assert!(
                    Instant::now() < deadline,
                    "NodePort {via_node_port} from node-b: {other:?}"
                ),
            }
        }
    });
    assert_eq!(
        answered.len(),
        1,
        "ClientIP affinity should keep one client on one endpoint: {answered:?}"
    );

    // Deleting a Service removes its rules within a second.
    c.server.ok(&["delete", "svc", "web"]);
    let gone = Instant::now();
    in_ns(&ns0, || {
        loop {
            match http_get(&format!("{ip}:80"), "/", Duration::from_millis(500)) {
                Err(e) if e.contains("refused") => break,
                other => assert!(
                    gone.elapsed() < Duration::from_secs(1),
                    "ClusterIP {ip} still answers 1 s after its Service was deleted: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn cluster_addresses_should_stay_on_the_machine() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(false) else { return };
    let cidr = c.server.cluster_cidr.clone();
    // An address of the cluster range that no node holds: the /16's last /18 is unassigned.
    let octets: Vec<&str> = cidr.split('/').next().unwrap_or("").split('.').collect();
    let unassigned = format!("{}.{}.250.1", octets[0], octets[1]);
    // Give the namespace a default gateway (nothing answers there) to prove nothing uses it.
    let gw = format!("{}.1", c.net.prefix);
    c.net.exec(0, &["ip", "route", "replace", "default", "via", &gw]).expect("default route");
    let service = c.net.exec(0, &["ip", "route", "get", "10.96.200.200"]).expect("route get");
    assert!(service.starts_with("local 10.96.200.200") && !service.contains(&gw), "{service}");
    let pod = c.net.exec(0, &["ip", "route", "get", &unassigned]);
    assert!(
        matches!(&pod, Err(e) if e.contains("unreachable") || e.contains("No route")),
        "an unassigned pod address must be unreachable, not routed: {pod:?}"
    );
    // A ClusterIP without a rule is refused at once, with the node daemons stopped.
    let ns0 = c.net.ns(0).to_string();
    let Cluster { agent, server, net, .. } = c;
    drop(agent);
    drop(server);
    in_ns(&ns0, || {
        let started = Instant::now();
        let err = http_get("10.96.200.200:80", "/", Duration::from_secs(2))
            .expect_err("nothing serves it");
        assert!(err.contains("refused"), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "refused only after {:?}",
            started.elapsed()
        );
    });
    let service = net.exec(0, &["ip", "route", "get", "10.96.0.1"]).expect("route get");
    assert!(!service.contains(&gw), "{service}");
    drop(net);
}

#[test]
fn rolling_update_behind_a_service_should_drop_no_request() {
    let _serial = support::serial();
    let Some(c) = Cluster::start(false) else { return };
    let ns0 = c.net.ns(0).to_string();
    c.apply(
        &WEB.replace("replicas: 2", "replicas: 3")
            .replace("whenUnsatisfiable: DoNotSchedule", "whenUnsatisfiable: ScheduleAnyway"),
    );
    c.ready_pods("web", 3, Duration::from_secs(90));
    c.wait_endpoints("web", 3);
    let ip = c.cluster_ip("web");
    let before: Vec<String> =
        c.ready_pods("web", 3, Duration::from_secs(5)).into_iter().map(|p| p.0).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failures) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            in_ns(&ns0, || {
                let (mut ok, mut failures) = (0u64, Vec::new());
                let deadline = Instant::now() + Duration::from_secs(120);
                // Bounded: at most 50,000 requests or two minutes.
                for _ in 0..50_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline
                    {
                        break;
                    }
                    match http_get(&format!("{ip}:80"), "/", Duration::from_secs(5)) {
                        Ok((200, _)) => ok += 1,
                        other => failures.push(format!("{other:?}")),
                    }
                }
                (ok, failures)
            })
        });
        c.server.ok(&["rollout", "restart", "deployment/web"]);
        let out = c.server.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
        assert!(out.status.success(), "rollout: {}", String::from_utf8_lossy(&out.stderr));
        // Until the old pods are gone, not merely replaced in the endpoints.
        c.server.wait_for("old pods gone", Duration::from_secs(60), || {
            let names = c.server.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
            before.iter().all(|p| !names.contains(p.as_str()))
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().expect("load loop")
    });
    eprintln!("rolling update: {ok} requests answered, {} failed", failures.len());
    assert!(ok > 100, "the load loop ran too little to tell: {ok}");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
}
