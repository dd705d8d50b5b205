//! API aggregation, as kube-aggregator does it inside kube-apiserver: an `APIService`
//! (`apiregistration.k8s.io/v1`) that names a Service makes every request for its group-version
//! go to that Service, over HTTPS checked against the APIService's `caBundle`, presenting the
//! front-proxy client certificate and telling who asks in `X-Remote-User`, `X-Remote-Group`,
//! `X-Remote-Uid` and `X-Remote-Extra-*` (the extension server trusts these for the
//! certificate's sake, as the `extension-apiserver-authentication` ConfigMap tells it).
//! Authentication and authorization happen here first, as for any request.
//!
//! Availability and discovery never wait on an extension server: a loop checks each one
//! (`GET /apis/<group>/<version>`, 5 s at most, every 10 s and whenever the APIServices
//! change), writes the `Available` condition, and keeps the resource list it answered. The
//! `/apis` documents merge the kept lists; an unavailable server's group is left out of
//! aggregated discovery instead of making every client wait for it (kubernetes #56430).
//!
//! The front-proxy certificate is issued by the cluster CA with CN `front-proxy-client`, the
//! only name `requestheader-allowed-names` accepts; the CSR signer refuses that name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use skiff_store::StoreError;

use crate::State;
use crate::cache::Cache;
use crate::errors::ApiError;
use crate::objects::now_rfc3339;

const GROUP: &str = "apiregistration.k8s.io";
const PLURAL: &str = "apiservices";
/// The client certificate's CN, and the only name extension servers accept.
pub const PROXY_CLIENT_NAME: &str = "front-proxy-client";
/// How long an availability check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_PERIOD: Duration = Duration::from_secs(10);
/// The largest discovery answer kept from an extension server.
const MAX_DISCOVERY_BYTES: usize = 4 * 1024 * 1024;

/// Where an APIService sends its requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub ca_bundle: Option<String>,
    pub insecure_skip_tls_verify: bool,
}

/// One APIService.
#[derive(Debug, Clone)]
pub struct ApiService {
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority_minimum: i64,
    pub version_priority: i64,
    /// `None`: served by this api server (a local APIService).
    pub remote: Option<Remote>,
}

impl ApiService {
    fn parse(obj: &Value) -> Option<ApiService> {
        let spec = obj.get("spec")?;
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let remote = spec.get("service").filter(|s| s.is_object()).map(|svc| Remote {
            namespace: s(svc, "namespace"),
            service: s(svc, "name"),
            port: svc
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
            ca_bundle: spec.get("caBundle").and_then(Value::as_str).map(str::to_string),
            insecure_skip_tls_verify: spec.get("insecureSkipTLSVerify") == Some(&json!(true)),
        });
        Some(ApiService {
            name: obj.pointer("/metadata/name").and_then(Value::as_str)?.to_string(),
            group: s(spec, "group"),
            version: s(spec, "version"),
            group_priority_minimum: spec
                .get("groupPriorityMinimum")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            version_priority: spec.get("versionPriority").and_then(Value::as_i64).unwrap_or(0),
            remote,
        })
    }
}

/// The APIServices by (group, version).
type ByGroupVersion = HashMap<(String, String), ApiService>;

/// The client identity presented to extension servers.
struct ProxyClient {
    cert_pem: String,
    key_pem: String,
}

/// What the aggregator keeps.
#[derive(Default)]
pub struct Aggregator {
    built: Mutex<Option<(u64, Arc<ByGroupVersion>)>>,
    cache: OnceLock<Arc<Cache>>,
    /// The resource list each available extension server answered last, by APIService name.
    discovery: Mutex<HashMap<String, Value>>,
    proxy_client: OnceLock<ProxyClient>,
    tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
    started: AtomicBool,
}

impl Aggregator {
    /// Present this client certificate and key (PEM) to extension servers.
    pub fn set_proxy_client(&self, cert_pem: String, key_pem: String) {
        let _ = self.proxy_client.set(ProxyClient { cert_pem, key_pem });
    }
}

fn cache(state: &State) -> Option<&Arc<Cache>> {
    if let Some(c) = state.aggregator.cache.get() {
        return Some(c);
    }
    let res = state.registry.by_plural(GROUP, PLURAL)?;
    Some(state.aggregator.cache.get_or_init(|| state.caches.get(res)))
}

/// Every APIService, by (group, version), rebuilt when the APIServices change.
fn services(state: &State) -> Arc<ByGroupVersion> {
    let Some(cache) = cache(state) else { return Arc::default() };
    let generation = cache.generation();
    let mut built = state.aggregator.built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((g, s)) = built.as_ref()
        && *g == generation
    {
        return s.clone();
    }
    let mut map = HashMap::new();
    for (_, _, obj) in cache.decoded() {
        if let Some(a) = ApiService::parse(&obj) {
            map.insert((a.group.clone(), a.version.clone()), a);
        }
    }
    let map = Arc::new(map);
    *built = Some((generation, map.clone()));
    map
}

/// Whether the APIService's last check passed (its `Available` condition).
fn is_available(state: &State, name: &str) -> bool {
    state.aggregator.discovery.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
}

/// The APIService that sends `group`/`version` elsewhere, if one does.
pub fn remote(state: &State, group: &str, version: &str) -> Option<ApiService> {
    if group.is_empty() {
        return None;
    }
    let services = services(state);
    services.get(&(group.to_string(), version.to_string())).filter(|a| a.remote.is_some()).cloned()
}

/// Whether `group` is served (in some version) by an extension server.
pub fn is_remote_group(state: &State, group: &str) -> bool {
    !group.is_empty() && services(state).values().any(|a| a.group == group && a.remote.is_some())
}

/// The `APIGroup` entries of the remote groups (legacy `/apis`), versions by priority.
pub fn api_groups(state: &State) -> Vec<Value> {
    let services = services(state);
    let mut by_group: HashMap<&str, Vec<&ApiService>> = HashMap::new();
    for a in services.values().filter(|a| a.remote.is_some()) {
        by_group.entry(a.group.as_str()).or_default().push(a);
    }
    let mut groups: Vec<(&str, Vec<&ApiService>)> = by_group.into_iter().collect();
    groups.sort_by_key(|(g, vs)| {
        (-(vs.iter().map(|a| a.group_priority_minimum).max().unwrap_or(0)), g.to_string())
    });
    groups
        .into_iter()
        .map(|(group, mut vs)| {
            vs.sort_by(|a, b| {
                b.version_priority.cmp(&a.version_priority).then_with(|| {
                    skiff_apiextensions::crd::compare_versions(&b.version, &a.version)
                })
            });
            let versions: Vec<Value> = vs
                .iter()
                .map(|a| json!({"groupVersion": format!("{group}/{}", a.version), "version": a.version}))
                .collect();
            json!({"name": group, "versions": versions.clone(), "preferredVersion": versions[0]})
        })
        .collect()
}

/// The `APIGroup` document of a remote group.
pub fn api_group(state: &State, group: &str) -> Option<Value> {
    let mut g = api_groups(state).into_iter().find(|g| g["name"] == group)?;
    if let Some(o) = g.as_object_mut() {
        o.insert("kind".into(), json!("APIGroup"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    Some(g)
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`) entries of the remote groups whose
/// servers answered their last check.
pub fn aggregated_items(state: &State) -> Vec<Value> {
    let services = services(state);
    let discovery = state.aggregator.discovery.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut by_group: HashMap<&str, Vec<(&ApiService, &Value)>> = HashMap::new();
    for a in services.values().filter(|a| a.remote.is_some()) {
        if let Some(list) = discovery.get(&a.name) {
            by_group.entry(a.group.as_str()).or_default().push((a, list));
        }
    }
    let mut groups: Vec<_> = by_group.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(b.0));
    groups
        .into_iter()
        .map(|(group, mut vs)| {
            vs.sort_by_key(|(a, _)| std::cmp::Reverse(a.version_priority));
            let versions: Vec<Value> = vs
                .iter()
                .map(|(a, list)| {
                    json!({"version": a.version, "resources": aggregated_resources(group, &a.version, list), "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect()
}

/// An `APIResourceList`'s resources in aggregated discovery's shape.
fn aggregated_resources(group: &str, version: &str, list: &Value) -> Vec<Value> {
    let all = list["resources"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in all.iter().filter(|r| !r["name"].as_str().unwrap_or("").contains('/')) {
        let name = r["name"].as_str().unwrap_or("");
        let kind = r["kind"].as_str().unwrap_or("");
        let subresources: Vec<Value> = all
            .iter()
            .filter_map(|s| {
                let (parent, sub) = s["name"].as_str()?.split_once('/')?;
                (parent == name).then(|| {
                    json!({"subresource": sub,
                        "responseKind": {"group": s["group"].as_str().unwrap_or(group), "version": s["version"].as_str().unwrap_or(version), "kind": s["kind"]},
                        "verbs": s["verbs"]})
                })
            })
            .collect();
        let mut entry = json!({
            "resource": name,
            "responseKind": {"group": group, "version": version, "kind": kind},
            "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
            "singularResource": r["singularName"].as_str().unwrap_or(""),
            "verbs": r["verbs"],
        });
        for key in ["shortNames", "categories"] {
            if let Some(v) = r.get(key).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                entry[key] = v.clone();
            }
        }
        if !subresources.is_empty() {
            entry["subresources"] = json!(subresources);
        }
        out.push(entry);
    }
    out
}

/// Send a request for an aggregated group-version to its extension server, and stream the
/// answer back.
pub async fn proxy(
    state: &State,
    service: &ApiService,
    parts: http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let unavailable = |why: String| {
        ApiError::new(503, "ServiceUnavailable", format!("{} is unavailable: {why}", service.name))
    };
    let remote = service.remote.as_ref().ok_or_else(|| ApiError::internal("a local APIService"))?;
    if !is_available(state, &service.name) {
        // kube-aggregator answers at once while the check fails, instead of trying.
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "the server is currently unable to handle the request ({} is not available)",
                service.name
            ),
        ));
    }
    let user = crate::authn::current_user().ok_or_else(ApiError::unauthorized)?;
    let (host, port) = endpoint(state, remote).await.map_err(unavailable)?;
    let tls = tls_config(state, remote).map_err(unavailable)?;
    let server_name = format!("{}.{}.svc", remote.service, remote.namespace);
    let stream = connect(&host, port, &server_name, tls).await.map_err(unavailable)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(conn);
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = http::Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query)
        .header(header::HOST, format!("{server_name}:{}", remote.port));
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_ENCODING, header::USER_AGENT]
    {
        if let Some(v) = parts.headers.get(&name) {
            request = request.header(name, v);
        }
    }
    request = request.header("X-Remote-User", user.name.as_str());
    if !user.uid.is_empty() {
        request = request.header("X-Remote-Uid", user.uid.as_str());
    }
    for g in &user.groups {
        request = request.header("X-Remote-Group", g.as_str());
    }
    for (k, vs) in &user.extra {
        let name = format!("X-Remote-Extra-{}", urlencoding::encode(k));
        for v in vs {
            request = request.header(name.as_str(), v.as_str());
        }
    }
    let request = request
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
    let response = sender.send_request(request).await.map_err(|e| unavailable(e.to_string()))?;
    let (parts, incoming) = response.into_parts();
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

/// A ready address of the APIService's Service (its `externalName`, or an endpoint).
async fn endpoint(state: &State, remote: &Remote) -> Result<(String, u16), String> {
    let key = format!("{}/{}", remote.namespace, remote.service);
    let svc = crate::admission::read(state, "", "services", &key)
        .await
        .map_err(|e| e.message)?
        .ok_or_else(|| {
            format!("service/{} in \"{}\" is not present", remote.service, remote.namespace)
        })?;
    if svc.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        let host = svc.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or("");
        return Ok((host.to_string(), remote.port));
    }
    crate::admission::ready_endpoint_of(state, &svc, remote.port).await
}

async fn connect(
    host: &str,
    port: u16,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("dial tcp {host}:{port}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("invalid server name {server_name:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))
}

/// The TLS client configuration for an APIService: its caBundle (or no verification with
/// `insecureSkipTLSVerify`), presenting the front-proxy client certificate.
fn tls_config(state: &State, remote: &Remote) -> Result<Arc<rustls::ClientConfig>, String> {
    use base64::Engine as _;
    let key = format!(
        "{}|{}",
        remote.insecure_skip_tls_verify,
        remote.ca_bundle.as_deref().unwrap_or("")
    );
    let mut cache = state.aggregator.tls.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    let client = state
        .aggregator
        .proxy_client
        .get()
        .ok_or("this api server has no front-proxy client certificate")?;
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let private = rustls_pemfile::private_key(&mut client.key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("the front-proxy key is missing")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if remote.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::join::AcceptAnyServer(provider)))
            .with_client_auth_cert(certs, private)
            .map_err(|e| e.to_string())?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match remote.ca_bundle.as_deref().filter(|b| !b.is_empty()) {
            Some(bundle) => {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(bundle.as_bytes())
                    .map_err(|e| format!("caBundle is not valid base64: {e}"))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        builder
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, private)
            .map_err(|e| e.to_string())?
    };
    let config = Arc::new(config);
    if cache.len() > 256 {
        cache.clear();
    }
    cache.insert(key, config.clone());
    Ok(config)
}

/// Check one extension server: its group-version's resource list, within [`CHECK_TIMEOUT`].
async fn check(state: &State, a: &ApiService) -> Result<Value, (&'static str, String)> {
    let Some(remote) = &a.remote else { return Err(("Local", String::new())) };
    let (host, port) = endpoint(state, remote).await.map_err(|e| {
        let reason = if e.contains("not present") { "ServiceNotFound" } else { "MissingEndpoints" };
        (reason, e)
    })?;
    let url = format!(
        "https://{}.{}.svc:{}/apis/{}/{}",
        remote.service, remote.namespace, remote.port, a.group, a.version
    );
    // The message names the Service, not the endpoint picked (it would change every round).
    let picked = format!("{host}:{port}");
    let named = format!("{}.{}.svc:{}", remote.service, remote.namespace, remote.port);
    let failing = |why: String| {
        (
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: {}", why.replace(&picked, &named)),
        )
    };
    let tls = tls_config(state, remote).map_err(failing)?;
    let call = async {
        let server_name = format!("{}.{}.svc", remote.service, remote.namespace);
        let stream = connect(&host, port, &server_name, tls).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = http::Request::get(format!("/apis/{}/{}", a.group, a.version))
            .header(header::HOST, format!("{server_name}:{}", remote.port))
            .header(header::ACCEPT, "application/json")
            .header("X-Remote-User", "system:kube-aggregator")
            .header("X-Remote-Group", "system:masters")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_DISCOVERY_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("bad status from {url}: {}", status.as_u16()));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    };
    tokio::time::timeout(CHECK_TIMEOUT, call)
        .await
        .map_err(|_| failing("Client.Timeout exceeded while awaiting headers".into()))?
        .map_err(failing)
}

/// Start the availability loop (once per server).
pub async fn start(state: &Arc<State>) {
    if let Some(c) = cache(state)
        && !c.is_ready()
    {
        state.caches.reach(c, 1).await;
    }
    if !state.aggregator.started.swap(true, Ordering::SeqCst) {
        tokio::spawn(run(state.clone()));
    }
}

/// Check every APIService every [`CHECK_PERIOD`] and whenever they change; write their
/// `Available` conditions and keep their resource lists for discovery.
async fn run(state: Arc<State>) {
    let Some(cache) = cache(&state).cloned() else { return };
    let mut revisions = cache.revisions();
    let mut tick = tokio::time::interval(CHECK_PERIOD);
    loop {
        let seen = cache.generation();
        let objects = cache.decoded();
        let checks = objects.iter().filter_map(|(key, rev, obj)| {
            let a = ApiService::parse(obj)?;
            let state = state.clone();
            let (key, rev, obj) = (key.clone(), *rev, obj.clone());
            Some(async move {
                let result = check(&state, &a).await;
                let (available, reason, message) = match &result {
                    Ok(list) => {
                        state
                            .aggregator
                            .discovery
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(a.name.clone(), list.clone());
                        (true, "Passed", "all checks passed".to_string())
                    }
                    Err(("Local", _)) => {
                        (true, "Local", "Local APIServices are always available".to_string())
                    }
                    Err((reason, message)) => {
                        state
                            .aggregator
                            .discovery
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&a.name);
                        (false, *reason, message.clone())
                    }
                };
                write_available(&state, &key, rev, &obj, available, reason, &message).await;
            })
        });
        futures::future::join_all(checks).await;
        // Forget the servers of APIServices that are gone.
        let names: Vec<String> =
            objects.iter().filter_map(|(_, _, o)| ApiService::parse(o).map(|a| a.name)).collect();
        state
            .aggregator
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n, _| names.contains(n));
        // The next round: on the tick, or when the APIServices change (not on every
        // progress notification of their cache), and never sooner than a second from now.
        let earliest = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                r = revisions.changed() => if r.is_err() { return },
                _ = tick.tick() => break,
            }
            if cache.generation() != seen {
                break;
            }
        }
        tokio::time::sleep_until(earliest).await;
    }
}

async fn write_available(
    state: &State,
    key: &str,
    revision: u64,
    obj: &Value,
    available: bool,
    reason: &str,
    message: &str,
) {
    let status = if available { "True" } else { "False" };
    let old: Vec<Value> =
        obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let current = old.iter().find(|c| c["type"] == "Available");
    if current
        .is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message)
    {
        return;
    }
    let since = current
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now_rfc3339()));
    let mut conditions: Vec<Value> =
        old.iter().filter(|c| c["type"] != "Available").cloned().collect();
    conditions.push(json!({"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason, "message": message}));
    let mut new = obj.clone();
    new["status"] = json!({"conditions": conditions});
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    match state.store.update(key, skiff_api::gojson::to_vec(&new), Some(revision)).await {
        Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(apiservice = %key, error = %e, "writing the Available condition"),
    }
}

/// The `extension-apiserver-authentication` ConfigMap of `kube-system`: how extension
/// servers authenticate this api server's proxied requests (and clients' certificates).
pub fn authentication_config_map(client_ca_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
    "data": {
        "client-ca-file": client_ca_pem,
        "requestheader-client-ca-file": client_ca_pem,
        "requestheader-allowed-names": format!("[\"{PROXY_CLIENT_NAME}\"]"),
        "requestheader-username-headers": "[\"X-Remote-User\"]",
        "requestheader-uid-headers": "[\"X-Remote-Uid\"]",
        "requestheader-group-headers": "[\"X-Remote-Group\"]",
        "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
    }})
}

/// A plain JSON answer with status `code` (for documents built here).
pub fn json_answer(code: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(crate::handlers::json_body_bytes(v)));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_become_aggregated_discovery() {
        let list = json!({"resources": [
            {"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder", "verbs": ["get", "list"], "shortNames": ["fl"]},
            {"name": "flunders/status", "namespaced": true, "kind": "Flunder", "verbs": ["get"]}]});
        let out = aggregated_resources("wardle.example.com", "v1", &list);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["resource"], "flunders");
        assert_eq!(out[0]["scope"], "Namespaced");
        assert_eq!(out[0]["shortNames"], json!(["fl"]));
        assert_eq!(out[0]["subresources"][0]["subresource"], "status");
    }

    #[test]
    fn apiservices_parse_with_kube_defaults() {
        let a = ApiService::parse(&json!({"metadata": {"name": "v1.x.example.com"},
            "spec": {"group": "x.example.com", "version": "v1", "service": {"namespace": "ns", "name": "svc"}}}))
        .expect("parsed");
        assert_eq!(a.remote.expect("remote").port, 443);
    }
}
