//! Benchmark of admission on the pod create path: pod creates/s and latency percentiles on one
//! `skiff server --disable-agent`, in the same run, with (a) no policy, (b) 20
//! ValidatingAdmissionPolicies, (c) 20 Wasm admission policies (20 distinct modules),
//! (c1) one Wasm policy, and (d) one validating webhook served over HTTPS by this program.
//! Every configuration is in place for the whole run; each round's namespace is labelled to
//! select one of them, and the order of configurations rotates from round to round. Also
//! the server's RSS before and after the 20 Wasm policies are loaded.
//!
//! `skiff-bench-admission --skiff target/release/skiff --policy $SKIFF_GUESTS_DIR/policy-allowed-registries.wasm`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use skiff_bench::requests::{JSON, call, create_pods_in, post_json, settle};
use skiff_bench::{Latencies, Server, ms};

#[derive(Parser)]
struct Args {
    /// The skiff binary to benchmark.
    #[arg(long)]
    skiff: PathBuf,
    /// The allowed-registries policy component (scripts/build-guests.sh builds it).
    #[arg(long)]
    policy: PathBuf,
    /// Pods created per configuration per round.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Policies in configurations (b) and (c).
    #[arg(long, default_value_t = 20)]
    policies: usize,
    /// Pods created one at a time per round with no policy and with one Wasm policy (the
    /// latency a policy adds, without queueing).
    #[arg(long, default_value_t = 500)]
    serial_pods: usize,
}

const CONFIGS: [&str; 5] = ["none", "vap", "wasm", "wasm1", "webhook"];

fn label(config: &str) -> String {
    format!("bench-admission-{config}")
}

/// The policy component with a custom section naming `i` appended: a module of its own
/// digest (compiled and kept on its own), as 20 different policies would be.
fn variant(module: &[u8], i: usize) -> Vec<u8> {
    let name = b"skiff-bench";
    let payload = format!("variant {i}");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = module.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend(section);
    out
}

/// An HTTPS validating webhook that admits everything, on loopback; answers its port and the
/// CA bundle (PEM) clients must trust.
async fn start_webhook() -> anyhow::Result<(u16, String)> {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let uid = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.pointer("/request/uid").cloned())
                            .unwrap_or_default();
                        let answer = serde_json::json!({
                            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": uid, "allowed": true},
                        });
                        Ok::<_, hyper::Error>(
                            http::Response::builder()
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap_or_default(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((port, pem))
}

/// The policies of every configuration, each selecting the namespaces labelled for it.
async fn configure(
    admin: &kube::Client,
    policies: usize,
    webhook_port: u16,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let selector = |config: &str| serde_json::json!({"matchLabels": {label(config): "true"}});
    let pod_rules = serde_json::json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
    let ar = "/apis/admissionregistration.k8s.io/v1";
    let wasm = "/apis/policy.skiff.dev/v1alpha1";
    for i in 0..policies {
        post_json(admin, format!("{ar}/validatingadmissionpolicies"), serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": format!("bench-vap-{i}")},
            "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": pod_rules},
                "validations": [
                    {"expression": "object.spec.containers.all(c, c.image.startsWith('registry.example/'))",
                     "message": "images come from registry.example"},
                    {"expression": format!("object.metadata.name.size() <= {}", 200 + i),
                     "messageExpression": "'name too long: ' + object.metadata.name"},
                ]},
        })).await?;
        post_json(admin, format!("{ar}/validatingadmissionpolicybindings"), serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": format!("bench-vap-{i}")},
            "spec": {"policyName": format!("bench-vap-{i}"), "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": selector("vap")}},
        })).await?;
    }
    let wasm_policy = |name: String, module: String, config: &str| {
        let policy = serde_json::json!({
            "apiVersion": "policy.skiff.dev/v1alpha1", "kind": "WasmAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"module": module, "settings": {"registries": ["registry.example"]},
                "matchConstraints": {"resourceRules": pod_rules, "namespaceSelector": selector(config)}},
        });
        let binding = serde_json::json!({
            "apiVersion": "policy.skiff.dev/v1alpha1", "kind": "WasmAdmissionPolicyBinding",
            "metadata": {"name": name}, "spec": {"policyName": name},
        });
        (policy, binding)
    };
    let mut all = (0..policies)
        .map(|i| wasm_policy(format!("bench-wasm-{i}"), module_name(i), "wasm"))
        .collect::<Vec<_>>();
    all.push(wasm_policy("bench-wasm-one".into(), module_name(0), "wasm1"));
    for (policy, binding) in all {
        post_json(admin, format!("{wasm}/wasmadmissionpolicies"), policy).await?;
        post_json(admin, format!("{wasm}/wasmadmissionpolicybindings"), binding).await?;
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    post_json(admin, format!("{ar}/validatingwebhookconfigurations"), serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench-webhook"},
        "webhooks": [{"name": "allow.bench.skiff", "rules": pod_rules, "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "namespaceSelector": selector("webhook"),
            "clientConfig": {"url": format!("https://127.0.0.1:{webhook_port}/validate"), "caBundle": ca}}],
    })).await?;
    Ok(())
}

fn module_name(i: usize) -> String {
    format!("skiff.local/bench/policy-{i}:v1")
}

async fn labelled_namespace(admin: &kube::Client, name: &str, config: &str) -> anyhow::Result<()> {
    post_json(
        admin,
        "/api/v1/namespaces".into(),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {label(config): "true"}},
        }),
    )
    .await
    .map(drop)
}

/// Have the server admit pods in `ns` one at a time, so that the policies it just read are
/// in force and the Wasm modules are loaded and compiled (the first call of a policy waits for
/// its module) before anything is measured.
async fn warm_up(admin: &kube::Client, ns: &str) -> anyhow::Result<()> {
    create_pods_in(admin, ns, 20, 1, JSON).await.map(drop)
}

fn write_variants(dir: &Path, module: &[u8], n: usize) -> anyhow::Result<Vec<(PathBuf, String)>> {
    std::fs::create_dir_all(dir)?;
    (0..n)
        .map(|i| {
            let path = dir.join(format!("policy-{i}.wasm"));
            std::fs::write(&path, variant(module, i))?;
            Ok((path, module_name(i)))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let module = std::fs::read(&args.policy)
        .with_context(|| format!("reading {} (scripts/build-guests.sh)", args.policy.display()))?;
    let scratch =
        std::env::temp_dir().join(format!("skiff-bench-admission-modules-{}", std::process::id()));
    let variants = write_variants(&scratch, &module, args.policies.max(1))?;
    let mut builder =
        Server::builder(&args.skiff, &format!("skiff-bench-admission-{}", std::process::id()))
            .disable_agent()
            .log_to_file();
    for (path, name) in &variants {
        builder = builder.image(path, name);
    }
    let server = builder.start().await?;
    let admin = server.client().clone();
    let (port, ca) = start_webhook().await?;
    configure(&admin, args.policies, port, &ca).await.context("creating the policies")?;
    println!(
        "skiff-bench-admission: `skiff server --disable-agent`, {} pods per configuration and round, \
         {} clients, JSON over HTTPS on loopback, {} rounds, {} CPUs",
        args.pods,
        args.clients,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Warm every configuration up (policies read, modules compiled), measuring the RSS the
    // Wasm policies add.
    for config in ["none", "vap", "webhook"] {
        let ns = format!("warm-{config}");
        labelled_namespace(&admin, &ns, config).await?;
        warm_up(&admin, &ns).await.with_context(|| format!("warming up {config}"))?;
    }
    settle(&[server.pid()]).await;
    let rss_before = server.rss_kib();
    for config in ["wasm", "wasm1"] {
        let ns = format!("warm-{config}");
        labelled_namespace(&admin, &ns, config).await?;
        warm_up(&admin, &ns).await.with_context(|| format!("warming up {config}"))?;
    }
    settle(&[server.pid()]).await;
    let rss_after = server.rss_kib();
    let mut results: Vec<Vec<(f64, Latencies)>> = CONFIGS.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for k in 0..CONFIGS.len() {
            let i = (k + round) % CONFIGS.len();
            let config = CONFIGS[i];
            let ns = format!("adm-{config}-{round}");
            labelled_namespace(&admin, &ns, config).await?;
            settle(&[server.pid()]).await;
            let c = create_pods_in(&admin, &ns, args.pods, args.clients, JSON)
                .await
                .with_context(|| format!("creates with {config}"))?;
            let rate = args.pods as f64 / c.elapsed.as_secs_f64();
            println!(
                "  round {round} {config:<8} {rate:>7.0} creates/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                ms(c.latencies.p50()),
                ms(c.latencies.p99())
            );
            results[i].push((rate, c.latencies));
        }
    }
    // One client, so latency is the request's own, not queueing: what one Wasm policy adds.
    let mut serial: [Vec<Duration>; 2] = Default::default();
    for round in 0..args.rounds {
        for (i, config) in ["none", "wasm1"].into_iter().enumerate() {
            let ns = format!("serial-{config}-{round}");
            labelled_namespace(&admin, &ns, config).await?;
            settle(&[server.pid()]).await;
            let c = create_pods_in(&admin, &ns, args.serial_pods, 1, JSON).await?;
            serial[i].extend(c.latencies.sorted().iter().copied());
        }
    }
    let serial: Vec<Latencies> = serial.into_iter().map(Latencies::new).collect();
    // Each configuration's median round.
    let medians: Vec<(f64, Duration, Duration)> = results
        .iter_mut()
        .map(|rounds| {
            rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (rate, l) = &rounds[rounds.len() / 2];
            (*rate, l.p50(), l.p99())
        })
        .collect();
    println!();
    println!("  configuration                     creates/s   vs none    p50 ms    p99 ms");
    let names = [
        "(a) no policy",
        "(b) 20 ValidatingAdmissionPolicies",
        "(c) 20 Wasm policies",
        "(c1) 1 Wasm policy",
        "(d) 1 validating webhook",
    ];
    let base = medians[0].0;
    for (name, (rate, p50, p99)) in names.iter().zip(&medians) {
        println!(
            "  {name:<34} {rate:>8.0}   {:>6.2}x  {:>8.2}  {:>8.2}",
            rate / base,
            ms(*p50),
            ms(*p99)
        );
    }
    println!();
    println!(
        "  one client, {} pods per round: no policy p50 {:.2} ms p99 {:.2} ms; one Wasm policy \
         p50 {:.2} ms p99 {:.2} ms",
        args.serial_pods * args.rounds,
        ms(serial[0].p50()),
        ms(serial[0].p99()),
        ms(serial[1].p50()),
        ms(serial[1].p99())
    );
    println!(
        "  targets: (b) {:.2}x and (c) {:.2}x of (a) (target >= 0.8x); one Wasm policy adds \
         {:+.2} ms at p99 with one client (target < 1 ms), {:+.2} ms at p99 under 64 clients",
        medians[1].0 / base,
        medians[2].0 / base,
        ms(serial[1].p99()) - ms(serial[0].p99()),
        ms(medians[3].2) - ms(medians[0].2)
    );
    println!(
        "  server RSS: {:.1} MiB before the Wasm policies were loaded, {:.1} MiB after {} \
         policies ({} distinct modules) and their first calls: +{:.1} MiB (target < 64 MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        args.policies + 1,
        args.policies,
        (rss_after as f64 - rss_before as f64) / 1024.0
    );
    let (status, _, _) = call(&admin, Method::GET, "/readyz", JSON, JSON, Vec::new()).await?;
    anyhow::ensure!(status == StatusCode::OK, "the server is not ready after the run");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
