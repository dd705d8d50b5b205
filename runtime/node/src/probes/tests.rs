use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;

use hyper::service::service_fn;
use k8s_openapi::api::core::v1::{ContainerPort, GRPCAction, HTTPHeader, TCPSocketAction};
use tokio::net::TcpListener;

use super::*;
use crate::testing::{FakeRuntime, exit};

fn ctx(runtime: Arc<dyn ContainerRuntime>) -> ProbeContext {
    ProbeContext {
        runtime,
        container_id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        pod_uid: "uid-1".into(),
        metrics: None,
    }
}

fn container(ports: &[(&str, u16)]) -> Container {
    Container {
        name: "app".into(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| ContainerPort {
                    name: Some(n.to_string()),
                    container_port: i32::from(*p),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { port, path: Some(path.into()), ..Default::default() }),
        ..Default::default()
    }
}

type SeenHeaders = Arc<Mutex<Vec<http::HeaderMap>>>;

/// An HTTP server on port 0: `/ok` 200, `/redirect` 302, `/slow` never answers, others 503.
async fn http_server() -> (u16, SeenHeaders) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: SeenHeaders = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    record.lock().unwrap().push(req.headers().clone());
                    async move {
                        let status = match req.uri().path() {
                            "/ok" => 200,
                            "/redirect" => 302,
                            "/slow" => std::future::pending().await,
                            _ => 503,
                        };
                        let body = http_body_util::Full::new(Bytes::from_static(b"fine"));
                        Ok::<_, Infallible>(
                            http::Response::builder().status(status).body(body).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn http_probe_should_pass_on_2xx_and_3xx_and_fail_with_the_status_code() {
    let (port, _) = http_server().await;
    let c = container(&[]);
    let ctx = ctx(FakeRuntime::new());
    let ok = run_probe(&http_probe(IntOrString::Int(i32::from(port)), "/ok"), &c, &ctx).await;
    assert_eq!(ok, ProbeResult { success: true, message: "fine".into() });
    let redirect =
        run_probe(&http_probe(IntOrString::Int(i32::from(port)), "redirect"), &c, &ctx).await;
    assert!(redirect.success, "{redirect:?}");
    let bad = run_probe(&http_probe(IntOrString::Int(i32::from(port)), "/bad"), &c, &ctx).await;
    assert_eq!(bad, ProbeResult::failure("HTTP probe failed with statuscode: 503"));
}

#[tokio::test]
async fn http_probe_should_resolve_named_ports_and_send_headers() {
    let (port, seen) = http_server().await;
    let c = container(&[("metrics", 1), ("http", port)]);
    let mut probe = http_probe(IntOrString::String("http".into()), "/ok");
    probe.http_get.as_mut().unwrap().http_headers = Some(vec![
        HTTPHeader { name: "X-Probe".into(), value: "yes".into() },
        HTTPHeader { name: "Host".into(), value: "example.test".into() },
    ]);
    let r = run_probe(&probe, &c, &ctx(FakeRuntime::new())).await;
    assert!(r.success, "{r:?}");
    let headers = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-probe"], "yes");
    assert_eq!(headers["host"], "example.test");
    assert_eq!(headers["user-agent"], PROBE_USER_AGENT);

    let missing = run_probe(
        &http_probe(IntOrString::String("admin".into()), "/"),
        &c,
        &ctx(FakeRuntime::new()),
    )
    .await;
    assert_eq!(missing, ProbeResult::failure("couldn't find port: admin in app"));
}

#[tokio::test]
async fn http_probe_should_fail_when_the_answer_takes_longer_than_the_timeout() {
    let (port, _) = http_server().await;
    let probe = http_probe(IntOrString::Int(i32::from(port)), "/slow");
    let started = std::time::Instant::now();
    let r = run_probe(&probe, &container(&[]), &ctx(FakeRuntime::new())).await;
    assert!(!r.success);
    assert_eq!(
        r.message,
        format!(
            "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5), "timeoutSeconds defaults to 1");
}

#[tokio::test]
async fn https_probe_should_not_verify_the_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![key.cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let svc = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from_static(
                b"secure",
            ))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    });
    let mut probe = http_probe(IntOrString::Int(i32::from(port)), "/");
    probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let r = run_probe(&probe, &container(&[]), &ctx(FakeRuntime::new())).await;
    assert_eq!(r, ProbeResult::success("secure"));
}

#[tokio::test]
async fn tcp_probe_should_pass_when_listening_and_fail_with_connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let tcp = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(i32::from(port)), host: None }),
        ..Default::default()
    };
    let ctx = ctx(FakeRuntime::new());
    assert!(run_probe(&tcp(open), &container(&[]), &ctx).await.success);
    let r = run_probe(&tcp(closed), &container(&[]), &ctx).await;
    assert_eq!(
        r,
        ProbeResult::failure(format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"))
    );
}

/// A gRPC health server written on h2: `""` serves, `db` does not, anything else is unknown.
async fn grpc_health_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                    let mut body = req.into_body();
                    let mut data = Vec::new();
                    while let Some(chunk) = body.data().await {
                        data.extend_from_slice(&chunk.unwrap());
                    }
                    // Field 1 (service), length-delimited, after the 5-byte gRPC prefix.
                    let service = if data.len() > 7 { &data[7..] } else { &b""[..] };
                    let status: Option<u8> = match service {
                        b"" => Some(1),
                        b"db" => Some(2),
                        _ => None,
                    };
                    let head = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut stream = respond.send_response(head, false).unwrap();
                    let mut trailers = http::HeaderMap::new();
                    match status {
                        Some(s) => {
                            stream
                                .send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, s]), false)
                                .unwrap();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                        }
                        None => {
                            trailers.insert("grpc-status", "5".parse().unwrap());
                            trailers.insert("grpc-message", "unknown service".parse().unwrap());
                        }
                    }
                    stream.send_trailers(trailers).unwrap();
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn grpc_probe_should_report_serving_status_and_rpc_errors() {
    let port = grpc_health_server().await;
    let grpc = |service: &str| Probe {
        grpc: Some(GRPCAction { port: i32::from(port), service: Some(service.into()) }),
        ..Default::default()
    };
    let ctx = ctx(FakeRuntime::new());
    let c = container(&[]);
    assert!(run_probe(&grpc(""), &c, &ctx).await.success);
    assert_eq!(
        run_probe(&grpc("db"), &c, &ctx).await,
        ProbeResult::failure("service unhealthy (responded with \"NOT_SERVING\")")
    );
    assert_eq!(
        run_probe(&grpc("cache"), &c, &ctx).await,
        ProbeResult::failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        )
    );
}

fn exec_probe_spec(name: &str) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec!["check".into(), name.into()]) }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn exec_probe_should_use_the_exit_code_output_and_timeout() {
    let rt = FakeRuntime::new();
    rt.on_exec(|cmd| match cmd[1].as_str() {
        "good" => Ok(exit(0, "all good")),
        "bad" => Ok(exit(2, "broken")),
        _ => Err(skiff_runtime_core::RuntimeError::Unsupported("no exec here".into())),
    });
    let ctx = ctx(rt.clone());
    let c = container(&[]);
    assert_eq!(
        run_probe(&exec_probe_spec("good"), &c, &ctx).await,
        ProbeResult::success("all good")
    );
    assert_eq!(run_probe(&exec_probe_spec("bad"), &c, &ctx).await, ProbeResult::failure("broken"));
    assert_eq!(
        run_probe(&exec_probe_spec("other"), &c, &ctx).await,
        ProbeResult::failure("no exec here")
    );
    *rt.exec_delay.lock().unwrap() = Duration::from_secs(5);
    let mut slow = exec_probe_spec("good");
    slow.timeout_seconds = Some(2);
    assert_eq!(
        run_probe(&slow, &c, &ctx).await,
        ProbeResult::failure("command \"check good\" timed out")
    );
}

/// A fake runtime whose exec probes answer by probe name (`check <name>`): exit code per name.
fn scripted() -> (Arc<FakeRuntime>, Arc<Mutex<HashMap<String, i32>>>) {
    let codes: Arc<Mutex<HashMap<String, i32>>> = Arc::default();
    let rt = FakeRuntime::new();
    let c = codes.clone();
    rt.on_exec(move |cmd| {
        let code = c.lock().unwrap().get(&cmd[1]).copied().unwrap_or(0);
        Ok(exit(code, if code == 0 { "" } else { "nope" }))
    });
    (rt, codes)
}

/// Sleep until the set's next probe is due and run it.
async fn step(set: &mut ProbeSet, ctx: &ProbeContext) -> Vec<ProbeEvent> {
    let due = set.next_due().expect("a probe is due");
    tokio::time::sleep_until(due).await;
    set.run_due(ctx).await
}

fn probed(rt: &FakeRuntime) -> Vec<String> {
    rt.execs.lock().unwrap().drain(..).map(|c| c[1].clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn probe_set_without_probes_should_be_started_and_ready_at_once() {
    let set = ProbeSet::new(&container(&[]), Instant::now());
    assert!(set.started() && set.ready());
    assert_eq!(set.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn readiness_should_apply_initial_delay_period_and_thresholds() {
    let (rt, codes) = scripted();
    let ctx = ctx(rt.clone());
    let mut c = container(&[]);
    let mut probe = exec_probe_spec("ready");
    probe.initial_delay_seconds = Some(3);
    probe.period_seconds = Some(5);
    probe.success_threshold = Some(2);
    probe.failure_threshold = Some(2);
    c.readiness_probe = Some(probe);
    let start = Instant::now();
    let mut set = ProbeSet::new(&c, start);
    assert!(set.started() && !set.ready(), "readiness starts as not ready");
    assert_eq!(set.next_due(), Some(start + Duration::from_secs(3)));

    assert_eq!(step(&mut set, &ctx).await, vec![], "one success is below successThreshold");
    assert_eq!(set.next_due(), Some(start + Duration::from_secs(8)));
    assert_eq!(step(&mut set, &ctx).await, vec![ProbeEvent::ReadyChanged { ready: true }]);
    assert!(set.ready());

    codes.lock().unwrap().insert("ready".into(), 1);
    let unhealthy = ProbeEvent::Unhealthy {
        kind: ProbeKind::Readiness,
        message: "Readiness probe failed: nope".into(),
    };
    assert_eq!(step(&mut set, &ctx).await, vec![unhealthy.clone()]);
    assert!(set.ready(), "one failure is below failureThreshold");
    assert_eq!(
        step(&mut set, &ctx).await,
        vec![unhealthy, ProbeEvent::ReadyChanged { ready: false }]
    );
    assert_eq!(Instant::now() - start, Duration::from_secs(18));
    assert!(set.next_due().is_some(), "readiness keeps probing after failing");
}

#[tokio::test(start_paused = true)]
async fn liveness_should_ask_for_a_restart_after_failure_threshold_and_then_stop() {
    let (rt, codes) = scripted();
    codes.lock().unwrap().insert("live".into(), 1);
    let ctx = ctx(rt.clone());
    let mut c = container(&[]);
    let mut probe = exec_probe_spec("live");
    probe.termination_grace_period_seconds = Some(7);
    c.liveness_probe = Some(probe);
    let start = Instant::now();
    let mut set = ProbeSet::new(&c, start);
    assert!(set.ready(), "no readiness probe: ready once started");
    step(&mut set, &ctx).await;
    step(&mut set, &ctx).await;
    let events = step(&mut set, &ctx).await;
    assert_eq!(Instant::now() - start, Duration::from_secs(20), "default period is 10s");
    assert_eq!(
        events,
        vec![
            ProbeEvent::Unhealthy {
                kind: ProbeKind::Liveness,
                message: "Liveness probe failed: nope".into()
            },
            ProbeEvent::ReadyChanged { ready: false },
            ProbeEvent::Restart {
                kind: ProbeKind::Liveness,
                message: "Container app failed liveness probe, will be restarted".into(),
                grace_period_seconds: Some(7),
            },
        ]
    );
    assert_eq!(set.next_due(), None, "on hold until the container restarts");
}

#[tokio::test(start_paused = true)]
async fn startup_probe_should_gate_liveness_and_readiness_until_it_succeeds() {
    let (rt, codes) = scripted();
    codes.lock().unwrap().insert("startup".into(), 1);
    let ctx = ctx(rt.clone());
    let mut c = container(&[]);
    let mut startup = exec_probe_spec("startup");
    startup.period_seconds = Some(2);
    startup.failure_threshold = Some(10);
    c.startup_probe = Some(startup);
    c.liveness_probe = Some(exec_probe_spec("live"));
    c.readiness_probe = Some(exec_probe_spec("ready"));
    let start = Instant::now();
    let mut set = ProbeSet::new(&c, start);
    assert!(!set.started() && !set.ready());
    for _ in 0..3 {
        step(&mut set, &ctx).await;
    }
    assert_eq!(probed(&rt), ["startup", "startup", "startup"], "only the startup probe runs");
    assert!(!set.started());

    codes.lock().unwrap().insert("startup".into(), 0);
    assert_eq!(step(&mut set, &ctx).await, vec![ProbeEvent::StartedChanged { started: true }]);
    assert!(set.started() && !set.ready());
    // Liveness and readiness are due right away; the startup probe never runs again.
    assert_eq!(set.next_due(), Some(Instant::now()));
    assert_eq!(step(&mut set, &ctx).await, vec![ProbeEvent::ReadyChanged { ready: true }]);
    let mut ran = probed(&rt);
    ran.sort();
    assert_eq!(ran, ["live", "ready", "startup"]);
    step(&mut set, &ctx).await;
    let mut ran = probed(&rt);
    ran.sort();
    assert_eq!(ran, ["live", "ready"]);
}

#[tokio::test(start_paused = true)]
async fn startup_probe_failing_past_its_threshold_should_ask_for_a_restart() {
    let (rt, codes) = scripted();
    codes.lock().unwrap().insert("startup".into(), 1);
    let ctx = ctx(rt.clone());
    let mut c = container(&[]);
    let mut startup = exec_probe_spec("startup");
    startup.failure_threshold = Some(2);
    c.startup_probe = Some(startup);
    let mut set = ProbeSet::new(&c, Instant::now());
    step(&mut set, &ctx).await;
    let events = step(&mut set, &ctx).await;
    assert!(events.contains(&ProbeEvent::Restart {
        kind: ProbeKind::Startup,
        message: "Container app failed startup probe, will be restarted".into(),
        grace_period_seconds: None,
    }));
    assert_eq!(set.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn probes_should_be_counted_in_prober_probe_total() {
    let (rt, _) = scripted();
    let metrics = Arc::new(KubeletMetrics::new("n1"));
    let mut ctx = ctx(rt);
    ctx.metrics = Some(metrics.clone());
    let mut c = container(&[]);
    c.readiness_probe = Some(exec_probe_spec("ready"));
    let mut set = ProbeSet::new(&c, Instant::now());
    step(&mut set, &ctx).await;
    step(&mut set, &ctx).await;
    let text = metrics.encode();
    assert!(
        text.contains(
            "prober_probe_total{probe_type=\"Readiness\",result=\"successful\",container=\"app\",pod=\"web\",namespace=\"default\"} 2"
        ),
        "{text}"
    );
}
