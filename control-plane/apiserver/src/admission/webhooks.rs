//! `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook`, as kube-apiserver's
//! dispatchers: the webhooks of every configuration (in name order) whose rules and
//! selectors cover the request are sent an AdmissionReview over HTTPS; mutating ones in
//! turn (each sees the last one's patch; `reinvocationPolicy: IfNeeded` ones run once more
//! when a later webhook changed the object), validating ones all at once. A webhook that
//! cannot be reached, times out or answers garbage fails the request, or with
//! `failurePolicy: Ignore` is passed over with a log line.
//!
//! A service target is reached at a ready endpoint of the Service (as kube-apiserver with
//! `--enable-aggregator-routing`), or at its `externalName`; the certificate must name
//! `<service>.<namespace>.svc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use skiff_admission::review::{self, Answer};
use skiff_admission::webhook::{Attributes, Webhook, webhooks_of};

use super::{Admitted, Operation, Request};
use crate::State;
use crate::errors::ApiError;

const GROUP: &str = "admissionregistration.k8s.io";
/// The largest answer read from a webhook.
const MAX_ANSWER_BYTES: usize = 3 * 1024 * 1024;

/// One webhook with the configuration it came from and its compiled `matchConditions`.
struct Configured {
    configuration: String,
    webhook: Webhook,
    conditions: Vec<(String, Result<skiff_admission::cel::Program, String>)>,
}

/// A webhook's `matchConditions`, compiled once.
fn compile_conditions(w: &Webhook) -> Vec<(String, Result<skiff_admission::cel::Program, String>)> {
    w.match_conditions
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                skiff_admission::cel::compile(&c.expression).map_err(|e| e.to_string()),
            )
        })
        .collect()
}

/// kube's per-expression cost limit.
const CONDITION_BUDGET: u64 = 1_000_000;

/// Whether every `matchCondition` of `c` holds: `Ok(false)` skips the webhook; `Err` (a
/// condition that failed to compile or evaluate) is a failure of the webhook, which its
/// failure policy decides.
fn conditions_hold(
    state: &State,
    c: &Configured,
    req: &Request<'_>,
    obj: &Value,
) -> Result<bool, String> {
    if c.conditions.is_empty() {
        return Ok(true);
    }
    let request = super::with_review_request(req, obj, "", review::request);
    let (object, old_object) = match req.operation {
        Operation::Delete => (None, Some(req.old.unwrap_or(obj))),
        _ => (Some(obj), req.old),
    };
    let authorizer = super::policies::ApiAuthorizer::new(state, req.user());
    let activation = skiff_admission::cel::Activation {
        object,
        old_object,
        request: &request,
        params: None,
        namespace_object: None,
        variables: None,
        authorizer: Some(&authorizer),
    };
    for (name, program) in &c.conditions {
        let program = program
            .as_ref()
            .map_err(|e| format!("matchCondition {name:?} does not compile: {e}"))?;
        let mut budget = skiff_admission::cel::Budget::new(CONDITION_BUDGET);
        match program.eval(&activation, &mut budget) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Ok(false),
            Ok(other) => {
                return Err(format!("matchCondition {name:?} evaluated to {other}, not a bool"));
            }
            Err(e) => return Err(format!("matchCondition {name:?} failed: {e}")),
        }
    }
    Ok(true)
}

/// What calling webhooks keeps between requests: the parsed configurations of each kind
/// and one TLS client configuration per CA bundle.
#[derive(Default)]
pub struct WebhookClients {
    mutating: super::Derived<Vec<Configured>>,
    validating: super::Derived<Vec<Configured>>,
    tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
}

/// The webhooks of every Mutating- (`mutating`) or ValidatingWebhookConfiguration, sorted
/// by configuration name as kube-apiserver orders them; parsed once per change of them.
async fn configured(state: &State, mutating: bool) -> Result<Arc<Vec<Configured>>, ApiError> {
    let plural =
        if mutating { "mutatingwebhookconfigurations" } else { "validatingwebhookconfigurations" };
    let clients = &state.webhook_clients;
    let kept = if mutating { &clients.mutating } else { &clients.validating };
    let generations = kept.generations(state, GROUP, &[plural]);
    if let Some(webhooks) = kept.get(&generations) {
        return Ok(webhooks);
    }
    let mut configurations = super::list(state, GROUP, plural, None, false).await?;
    configurations.sort_by(|a, b| name(&a.value).cmp(name(&b.value)));
    let webhooks: Vec<Configured> = configurations
        .iter()
        .flat_map(|c| {
            webhooks_of(&c.value).into_iter().map(|webhook| Configured {
                configuration: name(&c.value).to_string(),
                conditions: compile_conditions(&webhook),
                webhook,
            })
        })
        .collect();
    Ok(kept.keep(generations, webhooks))
}

fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Requests no webhook is asked about, so that a broken webhook can always be removed
/// (kube-apiserver exempts the same kinds).
fn exempt(req: &Request<'_>) -> bool {
    req.res.group == GROUP
}

/// The webhooks of `all` that cover the request.
async fn matching<'a>(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    all: &'a [Configured],
) -> Result<Vec<Matched<'a>>, ApiError> {
    if all.is_empty() || exempt(req) {
        return Ok(Vec::new());
    }
    let attrs = Attributes {
        operation: req.operation.as_str(),
        group: req.res.group,
        version: req.res.version,
        resource: req.res.plural,
        subresource: req.subresource,
        namespaced: req.res.namespaced,
    };
    let new = (req.operation != Operation::Delete).then_some(obj);
    let old = req.old.or((req.operation == Operation::Delete).then_some(obj));
    let mut namespace_labels: Option<Option<Value>> = None;
    let mut out = Vec::new();
    for c in all {
        if !c.webhook.rules_match(&attrs) || !c.webhook.object_matches(new, old) {
            continue;
        }
        if c.webhook.namespace_selector.is_some() {
            if namespace_labels.is_none() {
                namespace_labels = Some(labels_for_namespace_selector(state, req, obj).await?);
            }
            let labels = namespace_labels.as_ref().and_then(Option::as_ref);
            let cluster_scoped = !req.res.namespaced && req.res.kind != "Namespace";
            let selected = if cluster_scoped {
                true
            } else {
                c.webhook.namespace_matches(Some(labels.unwrap_or(&json!({}))))
            };
            if !selected {
                continue;
            }
        }
        match conditions_hold(state, c, req, obj) {
            Ok(true) => out.push(Matched { c, failed: None }),
            Ok(false) => {}
            Err(why) => out.push(Matched { c, failed: Some(why) }),
        }
    }
    Ok(out)
}

/// A webhook a request reaches; `failed` when its matchConditions could not be decided
/// (then its failure policy applies instead of a call).
struct Matched<'a> {
    c: &'a Configured,
    failed: Option<String>,
}

/// The labels a namespace selector is matched against: a Namespace's own, else those of the
/// object's namespace.
async fn labels_for_namespace_selector(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
) -> Result<Option<Value>, ApiError> {
    if req.res.group.is_empty() && req.res.kind == "Namespace" {
        return Ok(obj.pointer("/metadata/labels").cloned());
    }
    if req.namespace.is_empty() {
        return Ok(None);
    }
    let ns = super::read(state, "", "namespaces", req.namespace).await?;
    Ok(ns.and_then(|ns| ns.pointer("/metadata/labels").cloned()))
}

/// The review of the request as sent to a webhook.
fn review_body(req: &Request<'_>, obj: &Value, uid: &str, version: &str) -> Vec<u8> {
    super::with_review_request(req, obj, uid, |info| review::request_body(version, info))
}

/// `failed calling webhook "<name>": <why>`, a 500 as kube-apiserver answers it.
fn call_failed(webhook: &str, why: &str) -> ApiError {
    ApiError::internal(format!(
        "Internal error occurred: failed calling webhook {webhook:?}: {why}"
    ))
}

/// A webhook's refusal as the client sees it.
fn denied(webhook: &str, status: Option<&review::Status>) -> ApiError {
    let d = review::denial(webhook, status);
    ApiError::new(d.code, static_reason(&d.reason), d.message)
}

/// The reason that goes with a refusal's code when the refusal names none.
pub(super) fn reason_of_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        _ => "",
    }
}

/// The `metav1.StatusReason`s clients branch on; another reason a webhook gives is passed on
/// as unknown (`""`).
pub(super) fn static_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().copied().find(|k| *k == reason).unwrap_or("")
}

/// Call one webhook about the request; `Ok(None)` when it failed and its failure policy says
/// to go on without it.
async fn ask(
    state: &State,
    m: &Matched<'_>,
    mutating: bool,
    req: &Request<'_>,
    obj: &Value,
) -> Result<Option<Answer>, ApiError> {
    let c = m.c;
    let w = &c.webhook;
    if let Some(why) = &m.failed {
        if w.ignores_failures() {
            tracing::warn!(webhook = %w.name, error = %why, "admission webhook's matchConditions failed; failurePolicy is Ignore");
            return Ok(None);
        }
        return Err(call_failed(&w.name, why));
    }
    let version = w.review_version().unwrap_or("v1");
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review_body(req, obj, &uid, version);
    let started = std::time::Instant::now();
    let result = post(state, w, body).await.and_then(|bytes| {
        review::decode_response(version, &bytes, &uid).map_err(|e| e.to_string())
    });
    let rejected = !matches!(&result, Ok(a) if a.allowed);
    state.metrics.observe_webhook(
        &w.name,
        mutating,
        req.operation.as_str(),
        rejected,
        started.elapsed(),
    );
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(why) if w.ignores_failures() => {
            tracing::warn!(webhook = %w.name, configuration = %c.configuration, error = %why,
                "admission webhook failed; failurePolicy is Ignore");
            Ok(None)
        }
        Err(why) => Err(call_failed(&w.name, &why)),
    }
}

/// POST the review to the webhook and read its answer's body.
async fn post(state: &State, w: &Webhook, body: Vec<u8>) -> Result<Bytes, String> {
    post_to(state, &w.client_config, w.timeout_seconds, body).await
}

/// POST a JSON review to the server a webhook `clientConfig` names (admission and CRD
/// conversion webhooks alike) and read its answer's body; `timeout_seconds` is held to 1–30.
pub(crate) async fn post_to(
    state: &State,
    client_config: &skiff_admission::webhook::ClientConfig,
    timeout_seconds: u64,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let target = target_of(state, client_config).await?;
    let tls = tls_config(state, client_config.ca_bundle.as_deref())?;
    let timeout = Duration::from_secs(timeout_seconds.clamp(1, 30));
    let call = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("failed to call webhook: Post {:?}: {e}", target.url))?;
        let _ = tcp.set_nodelay(true);
        let server_name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
            .map_err(|e| format!("invalid server name {:?}: {e}", target.server_name))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("failed to call webhook: Post {:?}: tls: {e}", target.url))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("failed to call webhook: Post {:?}: {e}", target.url))?;
        tokio::spawn(conn);
        let request = http::Request::post(&target.path)
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("failed to call webhook: Post {:?}: {e}", target.url))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("failed to call webhook: reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "failed to call webhook: the server responded with status {}",
                status.as_u16()
            ));
        }
        Ok(bytes)
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| {
        format!(
            "failed to call webhook: Post {:?}: context deadline exceeded (no answer within {}s)",
            target.url,
            timeout.as_secs()
        )
    })?
}

/// Where a webhook is reached.
struct Target {
    /// The address to connect to.
    host: String,
    port: u16,
    /// The name its certificate must carry.
    server_name: String,
    /// `Host` header.
    authority: String,
    path: String,
    /// For messages.
    url: String,
}

async fn target_of(
    state: &State,
    cc: &skiff_admission::webhook::ClientConfig,
) -> Result<Target, String> {
    if let Some(url) = &cc.url {
        let rest = url.strip_prefix("https://").ok_or("'https' is the only allowed URL scheme")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)?;
        return Ok(Target {
            server_name: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            authority: authority.to_string(),
            path: path.to_string(),
            url: url.clone(),
        });
    }
    let svc = cc.service.as_ref().ok_or("the webhook names neither a url nor a service")?;
    let path = svc.path.clone().unwrap_or_else(|| "/".into());
    let server_name = format!("{}.{}.svc", svc.name, svc.namespace);
    let url = format!("https://{server_name}:{}{path}", svc.port);
    let service = super::read(state, "", "services", &format!("{}/{}", svc.namespace, svc.name))
        .await
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("service \"{}/{}\" not found", svc.namespace, svc.name))?;
    let (host, port) = if service.pointer("/spec/type").and_then(Value::as_str)
        == Some("ExternalName")
    {
        let external = service.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or("");
        (external.to_string(), svc.port)
    } else {
        ready_endpoint(state, &service, svc.port).await?
    };
    Ok(Target {
        host,
        port,
        authority: format!("{server_name}:{}", svc.port),
        server_name,
        path,
        url,
    })
}

fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => return Ok((authority, 443)),
    };
    let port = port.parse().map_err(|_| format!("invalid port in {authority:?}"))?;
    Ok((host, port))
}

/// A ready endpoint (address, port) of `service` for its port `port`.
pub(crate) async fn ready_endpoint(
    state: &State,
    service: &Value,
    port: u16,
) -> Result<(String, u16), String> {
    let ns = service.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let svc_name = name(service);
    let no_endpoints =
        || format!("service \"{ns}/{svc_name}\" has no ready endpoints for port {port}");
    let sp = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find(|p| p["port"].as_u64() == Some(u64::from(port))))
        .ok_or_else(|| format!("service \"{ns}/{svc_name}\" has no port {port}"))?;
    let port_name = sp["name"].as_str().unwrap_or("");
    let slices = super::list(state, "discovery.k8s.io", "endpointslices", Some(ns), false)
        .await
        .map_err(|e| e.message)?;
    let mut candidates = Vec::new();
    for slice in slices.iter().map(|r| &r.value) {
        if slice.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str)
            != Some(svc_name)
        {
            continue;
        }
        let Some(target) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep.pointer("/conditions/ready") == Some(&json!(false)) {
                continue;
            }
            for addr in ep["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                candidates.push((addr.to_string(), target));
            }
        }
    }
    if candidates.is_empty() {
        return Err(no_endpoints());
    }
    let pick = rand::random_range(0..candidates.len());
    Ok(candidates.swap_remove(pick))
}

/// The TLS client configuration trusting `ca_bundle` (base64 PEM), or the system's CAs.
fn tls_config(state: &State, ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let key = ca_bundle.unwrap_or("").to_string();
    let mut cache = state.webhook_clients.tls.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    if key.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .map_err(|e| format!("caBundle is not valid base64: {e}"))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
        }
        if roots.is_empty() {
            return Err("caBundle holds no PEM certificate".into());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let config = Arc::new(config);
    // A handful of distinct bundles in practice; bound it anyway.
    if cache.len() > 256 {
        cache.clear();
    }
    cache.insert(key, config.clone());
    Ok(config)
}

/// Apply a JSON patch (a webhook's or a policy's) to `obj`; the result must still be an
/// object of its kind. Nothing changes when it fails.
pub(super) fn apply_patch(obj: &mut Value, patch: &[u8]) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| format!("the patch is not a JSON patch: {e}"))?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| format!("applying the patch: {e}"))?;
    if patched.get("kind") != obj.get("kind") || patched.get("apiVersion") != obj.get("apiVersion")
    {
        return Err("the patch changed the object's kind".into());
    }
    if patched.get("metadata").is_none_or(|m| !m.is_object()) {
        return Err("the patch left an object without metadata".into());
    }
    *obj = patched;
    Ok(())
}

/// Mutating webhooks, in order; `IfNeeded` ones once more when a later one changed the object.
pub(super) async fn mutate(
    state: &State,
    req: &Request<'_>,
    obj: &mut Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let all = configured(state, true).await?;
    let hooks = matching(state, req, obj, &all).await?;
    if hooks.is_empty() {
        return Ok(());
    }
    // The number of changes made so far, and when each webhook last saw the object.
    let mut changes = 0usize;
    let mut seen_at: Vec<usize> = vec![0; hooks.len()];
    for round in 0..2 {
        for (i, m) in hooks.iter().enumerate() {
            let c = m.c;
            if round == 1 && (c.webhook.reinvocation_policy != "IfNeeded" || seen_at[i] == changes)
            {
                continue;
            }
            let Some(answer) = ask(state, m, true, req, obj).await? else { continue };
            seen_at[i] = changes;
            take_answer(c, &answer, out);
            if !answer.allowed {
                return Err(denied(&c.webhook.name, answer.status.as_ref()));
            }
            if let Some(patch) = &answer.patch {
                let before = obj.clone();
                apply_patch(obj, patch).map_err(|why| call_failed(&c.webhook.name, &why))?;
                if *obj != before {
                    changes += 1;
                    seen_at[i] = changes;
                    out.mutated = true;
                    out.audit_annotations.push((
                        format!("mutation.webhook.admission.k8s.io/round_{round}_index_{i}"),
                        json!({"configuration": c.configuration, "webhook": c.webhook.name, "mutated": true})
                            .to_string(),
                    ));
                }
            }
        }
        // Reinvoke only when some change came after an IfNeeded webhook had run.
        if !hooks
            .iter()
            .zip(&seen_at)
            .any(|(m, seen)| m.c.webhook.reinvocation_policy == "IfNeeded" && *seen != changes)
        {
            break;
        }
    }
    Ok(())
}

/// Keep a webhook's warnings and audit annotations.
fn take_answer(c: &Configured, answer: &Answer, out: &mut Admitted) {
    out.warnings.extend(answer.warnings.iter().cloned());
    for (k, v) in &answer.audit_annotations {
        out.audit_annotations.push((format!("{}/{k}", c.webhook.name), v.clone()));
    }
}

/// Validating webhooks, all at once; the first refusal (in configuration order) wins.
pub(super) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let all = configured(state, false).await?;
    let hooks = matching(state, req, obj, &all).await?;
    if hooks.is_empty() {
        return Ok(());
    }
    let answers =
        futures::future::join_all(hooks.iter().map(|m| ask(state, m, false, req, obj))).await;
    let mut refusal = None;
    for (m, answer) in hooks.iter().zip(answers) {
        let c = m.c;
        match answer {
            Err(e) => {
                refusal.get_or_insert(e);
            }
            Ok(None) => {}
            Ok(Some(answer)) => {
                take_answer(c, &answer, out);
                if answer.patch.is_some() {
                    tracing::warn!(webhook = %c.webhook.name, "a validating webhook answered a patch; ignored");
                }
                if !answer.allowed {
                    refusal.get_or_insert(denied(&c.webhook.name, answer.status.as_ref()));
                }
            }
        }
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_patch_should_refuse_kind_changes_and_bad_patches() {
        let mut obj = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}});
        apply_patch(&mut obj, br#"[{"op":"add","path":"/metadata/labels","value":{"x":"1"}}]"#)
            .expect("patch applies");
        assert_eq!(obj["metadata"]["labels"]["x"], "1");
        let e = apply_patch(&mut obj, br#"[{"op":"replace","path":"/kind","value":"Secret"}]"#)
            .expect_err("kind change");
        assert!(e.contains("kind"), "{e}");
        assert_eq!(obj["kind"], "Pod", "nothing half-applied");
        assert!(apply_patch(&mut obj, br#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert!(apply_patch(&mut obj, b"{}").is_err());
        assert!(apply_patch(&mut obj, br#"[{"op":"remove","path":"/metadata"}]"#).is_err());
        assert_eq!(obj["metadata"]["labels"]["x"], "1");
    }

    #[test]
    fn split_host_port_should_default_to_443() {
        assert_eq!(split_host_port("example.com"), Ok(("example.com", 443)));
        assert_eq!(split_host_port("127.0.0.1:8443"), Ok(("127.0.0.1", 8443)));
        assert_eq!(split_host_port("[::1]:9443"), Ok(("[::1]", 9443)));
        assert_eq!(split_host_port("[::1]"), Ok(("[::1]", 443)));
        assert!(split_host_port("h:x").is_err());
    }

    #[test]
    fn static_reason_should_keep_known_reasons_only() {
        assert_eq!(static_reason("Forbidden"), "Forbidden");
        assert_eq!(static_reason("MyOwnReason"), "");
    }
}
