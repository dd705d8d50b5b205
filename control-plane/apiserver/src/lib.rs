//! The Kubernetes API server: routing, authentication, codecs, discovery, OpenAPI, CRUD, patch,
//! watch and subresources over the `Store`, served over HTTPS to users and in-process (no
//! sockets) to the components that run beside it.

pub mod admission;
pub mod aggregator;
pub mod apply;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap_tokens;
pub mod cache;
pub mod certificates;
pub mod codec;
pub mod convert;
pub mod crds;
pub mod discovery;
pub mod encryption;
pub mod errors;
pub mod flowcontrol;
pub mod fuzzing;
pub mod ga_kinds;
pub mod gc;
pub mod gnostic;
pub mod handlers;
pub mod join;
pub mod kinds;
pub mod kubelet;
pub mod managed;
pub mod members;
pub mod metrics;
pub mod metricsapi;
pub mod objects;
pub mod oidc;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod podcidr;
pub mod printers;
pub mod promsd;
pub mod reviews;
pub mod selectors;
pub mod services;
pub mod streaming;
pub mod subresources;
pub mod table;
pub mod tokens;
pub mod typed;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::Registry;
use skiff_api::logs::PodLogSource;
use skiff_api::nodes::NodeEndpoints;
use skiff_store::Store;
use tower::ServiceExt;

use crate::errors::ApiError;
use crate::handlers::json_response;
use crate::metrics::{DurationLabels, Metrics, RequestLabels};

/// Shared state of one api server.
pub struct State {
    /// API Priority and Fairness: how requests are classified and limited.
    pub apf: flowcontrol::Apf,
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub metrics: Metrics,
    admin_token: String,
    /// `pods/log` endpoints of nodes, by node name.
    pub log_sources: RwLock<HashMap<String, Arc<dyn PodLogSource>>>,
    /// `nodes/proxy` endpoints of nodes, by node name.
    pub node_endpoints: RwLock<HashMap<String, Arc<dyn NodeEndpoints>>>,
    /// exec/attach/port-forward of nodes in this process, by node name.
    pub pod_streams: RwLock<HashMap<String, Arc<dyn skiff_streams::PodStreams>>>,
    server_address: String,
    /// Signs and verifies service account tokens, once configured.
    pub token_signer: std::sync::OnceLock<tokens::TokenSigner>,
    /// The cluster's pod address space, split among nodes.
    pod_cidrs: RwLock<podcidr::PodCidrs>,
    /// The cluster CA (PEM), which remote nodes' kubelet certificates are checked against.
    cluster_ca: std::sync::OnceLock<String>,
    /// The client certificate and key (PEM) this api server presents to remote kubelets
    /// (kube-apiserver's `--kubelet-client-certificate`), once set.
    kubelet_client: std::sync::OnceLock<kubelet::ClientIdentity>,
    /// One watch cache per resource, serving watches and most lists.
    pub caches: cache::WatchCaches,
    /// Writes the audit log, once configured.
    pub auditor: std::sync::OnceLock<Arc<audit::Auditor>>,
    /// Verifies OIDC ID tokens, once configured.
    pub oidc: std::sync::OnceLock<Arc<oidc::OidcAuthenticator>>,
    /// The RBAC index, rebuilt when roles or bindings change.
    pub rbac: authz::Rbac,
    authorization_mode: RwLock<authz::Mode>,
    /// Anonymous requests reach every path (then RBAC decides), not only health and version.
    anonymous_auth: std::sync::atomic::AtomicBool,
    /// Which admission plugins run, and how.
    admission: RwLock<Arc<admission::Config>>,
    /// What calling admission webhooks keeps between requests.
    pub webhook_clients: admission::WebhookClients,
    /// Wasm admission policies: the host that runs them and what is loaded.
    pub wasm_policies: admission::WasmPolicies,
    /// Validating- and MutatingAdmissionPolicies, compiled.
    pub admission_policies: admission::AdmissionPolicies,
    /// Nodes' and pods' usage and pods' own metrics (`metrics.k8s.io` and the custom and
    /// external metrics APIs).
    pub metrics_pipeline: metricsapi::MetricsPipeline,
    /// The custom resources the cluster's CRDs make this server serve.
    pub crds: crds::CustomResources,
    /// APIServices: which group-versions extension servers serve, and their health.
    pub aggregator: aggregator::Aggregator,
}

impl State {
    /// The object at `key` (of `plural` in `group`) as the watch cache has it: `None` when
    /// the cache does not have it (yet), and the caller reads the store.
    pub fn cached(&self, group: &str, plural: &str, key: &str) -> Option<Arc<cache::Cached>> {
        let res = self.registry.by_plural(group, plural)?;
        self.caches.get(res).get(key)
    }

    pub fn authorization_mode(&self) -> authz::Mode {
        self.authorization_mode.read().map(|m| *m).unwrap_or_default()
    }

    /// The admission plugins' configuration.
    pub fn admission_config(&self) -> Arc<admission::Config> {
        self.admission.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn anonymous_auth(&self) -> bool {
        self.anonymous_auth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cluster CA certificate (PEM), once set.
    pub fn cluster_ca(&self) -> Option<&str> {
        self.cluster_ca.get().map(String::as_str)
    }

    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn pod_cidrs(&self) -> podcidr::PodCidrs {
        self.pod_cidrs.read().map(|c| *c).unwrap_or_default()
    }

    /// The kubelet API of `node` when it runs apart from this api server: found from its
    /// Node object (InternalIP, kubelet port). `Ok(None)` when the node serves none.
    pub async fn remote_kubelet(
        &self,
        node: &str,
    ) -> Result<Option<Arc<kubelet::RemoteKubelet>>, ApiError> {
        let Some(nodes) = self.registry.by_plural("", "nodes") else { return Ok(None) };
        let key = skiff_api::object_key(nodes, None, node);
        let Some(kv) =
            self.store.get(&key).await.map_err(|e| ApiError::from_store(e, "nodes", node))?
        else {
            return Err(ApiError::not_found("nodes", node));
        };
        let obj: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("decoding node {node}: {e}")))?;
        let (Some((host, port)), Some(ca)) =
            (kubelet::kubelet_address(&obj), self.cluster_ca.get())
        else {
            return Ok(None);
        };
        let auth = match self.kubelet_client.get() {
            Some(identity) => kubelet::ClientAuth::Certificate(identity),
            None => kubelet::ClientAuth::Token(&self.admin_token),
        };
        kubelet::RemoteKubelet::new(node, &host, port, ca, auth)
            .map(|k| Some(Arc::new(k)))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// Marks a request that came through the in-process transport (never set from the network).
#[derive(Clone, Copy, Debug)]
pub struct InProcess;

#[derive(Clone)]
pub struct ApiServer {
    state: Arc<State>,
    router: Router,
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, admin_token: String, server_address: String) -> Self {
        let state = Arc::new(State {
            caches: cache::WatchCaches::new(store.clone(), cache::CacheConfig::default()),
            store,
            registry: Registry::builtin(),
            metrics: Metrics::new(),
            admin_token,
            log_sources: RwLock::new(HashMap::new()),
            node_endpoints: RwLock::new(HashMap::new()),
            pod_streams: RwLock::new(HashMap::new()),
            server_address,
            token_signer: std::sync::OnceLock::new(),
            pod_cidrs: RwLock::new(podcidr::PodCidrs::default()),
            cluster_ca: std::sync::OnceLock::new(),
            kubelet_client: std::sync::OnceLock::new(),
            auditor: std::sync::OnceLock::new(),
            oidc: std::sync::OnceLock::new(),
            rbac: authz::Rbac::default(),
            authorization_mode: RwLock::new(authz::Mode::default()),
            anonymous_auth: std::sync::atomic::AtomicBool::new(false),
            admission: RwLock::new(Arc::new(admission::Config::default())),
            webhook_clients: admission::WebhookClients::default(),
            wasm_policies: admission::WasmPolicies::default(),
            admission_policies: admission::AdmissionPolicies::default(),
            metrics_pipeline: metricsapi::MetricsPipeline::default(),
            crds: crds::CustomResources::default(),
            aggregator: aggregator::Aggregator::default(),
            apf: flowcontrol::Apf::default(),
        });
        let s = state.clone();
        let router = Router::new().fallback(move |req: Request| {
            let s = s.clone();
            async move { serve_request(s, req).await }
        });
        ApiServer { state, router }
    }

    /// The sizes of the watch caches' windows (kube-apiserver's `--default-watch-cache-size`).
    pub fn set_watch_cache(&self, config: cache::CacheConfig) {
        self.state.caches.set_config(config);
    }

    /// Issue and accept service account tokens signed with `key_pem` (the cluster CA's key,
    /// so that every member accepts every member's tokens).
    pub fn enable_service_account_tokens(
        &self,
        key_pem: &str,
    ) -> Result<(), tokens::SigningKeyError> {
        let signer = tokens::TokenSigner::from_pem(key_pem)?;
        let _ = self.state.token_signer.set(signer);
        Ok(())
    }

    /// Allocate nodes' pod CIDRs from `cidrs` instead of the default 10.128.0.0/9 in /18s.
    pub fn set_pod_cidrs(&self, cidrs: podcidr::PodCidrs) {
        if let Ok(mut c) = self.state.pod_cidrs.write() {
            *c = cidrs;
        }
    }

    /// The cluster CA (PEM): remote nodes' kubelet APIs must present certificates it issued.
    pub fn set_cluster_ca(&self, ca_pem: &str) {
        let _ = self.state.cluster_ca.set(ca_pem.to_string());
    }

    /// Present `identity` to remote kubelets instead of the admin token.
    pub fn set_kubelet_client_identity(&self, identity: kubelet::ClientIdentity) {
        let _ = self.state.kubelet_client.set(identity);
    }

    /// Write the audit log with `auditor`.
    pub fn set_auditor(&self, auditor: Arc<audit::Auditor>) {
        let _ = self.state.auditor.set(auditor);
    }

    /// Which admission plugins run, and how (`--enable-admission-plugins`,
    /// `--disable-admission-plugins`, `--admission-control-config-file`).
    pub fn set_admission_config(&self, config: admission::Config) {
        if let Ok(mut c) = self.state.admission.write() {
            *c = Arc::new(config);
        }
    }

    /// Run Wasm admission policies with the host `make` makes on the first policy call.
    pub fn set_policy_host_maker(&self, make: admission::MakeHost) {
        self.state.wasm_policies.set_host_maker(make);
    }

    /// Collect nodes' and pods' metrics every `resolution` for the metrics APIs
    /// (`--metrics-resolution`). Must be called inside the api server's runtime.
    pub fn start_metrics_pipeline(&self, resolution: std::time::Duration) {
        metricsapi::MetricsPipeline::start(&self.state, resolution);
    }

    /// Which authorizers run (`--authorization-mode`).
    pub fn set_authorization_mode(&self, mode: authz::Mode) {
        if let Ok(mut m) = self.state.authorization_mode.write() {
            *m = mode;
        }
    }

    /// Let anonymous requests reach every path, for RBAC to decide (`--anonymous-auth`).
    pub fn set_anonymous_auth(&self, on: bool) {
        self.state.anonymous_auth.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Accept OIDC ID tokens verified by `oidc`.
    pub fn set_oidc(&self, oidc: Arc<oidc::OidcAuthenticator>) {
        let _ = self.state.oidc.set(oidc);
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serve `routes` beside the Kubernetes API, outside its bearer-token authentication
    /// (they authenticate callers themselves, or are public, like the join routes).
    pub fn with_unauthenticated_routes(mut self, routes: Router) -> Self {
        self.router = routes.merge(self.router);
        self
    }

    /// Register the node `name`'s log endpoint (used by `pods/log`).
    pub fn register_log_source(&self, node: &str, source: Arc<dyn PodLogSource>) {
        if let Ok(mut m) = self.state.log_sources.write() {
            m.insert(node.to_string(), source);
        }
    }

    /// Register the node `name`'s streaming sessions (`pods/exec`, `attach`, `portforward`).
    pub fn register_pod_streams(&self, node: &str, streams: Arc<dyn skiff_streams::PodStreams>) {
        if let Ok(mut m) = self.state.pod_streams.write() {
            m.insert(node.to_string(), streams);
        }
    }

    /// Register the node `name`'s HTTP endpoints (served as `nodes/{name}/proxy/{path}`).
    pub fn register_node_endpoints(&self, node: &str, endpoints: Arc<dyn NodeEndpoints>) {
        if let Ok(mut m) = self.state.node_endpoints.write() {
            m.insert(node.to_string(), endpoints);
        }
    }

    /// A kube client that reaches this api server in-process: same router, no sockets.
    /// Requests are served on the runtime this is called from (the api server's), whichever
    /// runtime the caller runs on: components on threads of their own do not serve their own
    /// requests on them.
    pub fn client(&self) -> kube::Client {
        let router = self.router.clone();
        let runtime = tokio::runtime::Handle::current();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let router = router.clone();
            let runtime = runtime.clone();
            async move {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(InProcess);
                let req = http::Request::from_parts(parts, Body::new(body));
                match runtime.spawn(router.oneshot(req)).await {
                    Ok(response) => response,
                    Err(e) => {
                        Ok(ApiError::internal(format!("request task failed: {e}")).into_response())
                    }
                }
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Create what a fresh cluster must have: the `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease` namespaces, the `wasmtime` and `runc` RuntimeClasses and the two
    /// system PriorityClasses. Idempotent.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        let reg = &self.state.registry;
        let mut wanted: Vec<(&str, Value)> =
            ["default", "kube-system", "kube-public", "kube-node-lease"]
                .iter()
                .map(|ns| {
                    (
                        "namespaces",
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    )
                })
                .collect();
        wanted.push((
            "runtimeclasses",
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasmtime"}, "handler": "wasmtime"}),
        ));
        wanted.push((
            "runtimeclasses",
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "runc"}, "handler": "runc"}),
        ));
        for (name, value) in
            [crate::admission::SYSTEM_CLUSTER_CRITICAL, crate::admission::SYSTEM_NODE_CRITICAL]
        {
            wanted.push((
                "priorityclasses",
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": name}, "value": value,
                    "description": "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
                    "preemptionPolicy": "PreemptLowerPriority"}),
            ));
        }
        for (plural, mut obj) in wanted {
            let group = match plural {
                "runtimeclasses" => "node.k8s.io",
                "priorityclasses" => "scheduling.k8s.io",
                _ => "",
            };
            let Some(res) = reg.by_plural(group, plural) else { continue };
            let key = skiff_api::object_key(res, None, objects::name_of(&obj));
            if self
                .state
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::from_store(e, plural, ""))?
                .is_some()
            {
                continue;
            }
            objects::prepare_create(&mut obj, res, None)?;
            match self.state.store.create(&key, skiff_api::gojson::to_vec(&obj)).await {
                Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(ApiError::from_store(e, plural, "")),
            }
        }
        self.bootstrap_rbac().await?;
        crds::start(&self.state).await;
        self.bootstrap_extension_authentication().await?;
        aggregator::start(&self.state).await;
        flowcontrol::start(&self.state).await;
        self.bootstrap_api_service().await
    }

    /// The `extension-apiserver-authentication` ConfigMap extension servers read (kept
    /// current with the cluster CA).
    async fn bootstrap_extension_authentication(&self) -> Result<(), ApiError> {
        let (Some(ca), Some(res)) =
            (self.state.cluster_ca(), self.state.registry.by_plural("", "configmaps"))
        else {
            return Ok(());
        };
        let mut want = aggregator::authentication_config_map(ca);
        let key =
            skiff_api::object_key(res, Some("kube-system"), "extension-apiserver-authentication");
        let stored = self
            .state
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::from_store(e, "configmaps", ""))?;
        match stored {
            Some(kv) => {
                let mut current: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
                if current.get("data") != want.get("data") {
                    current["data"] = want["data"].take();
                    // Another member may have written it first: nothing to do then.
                    let _ = self
                        .state
                        .store
                        .update(&key, skiff_api::gojson::to_vec(&current), Some(kv.mod_revision))
                        .await;
                }
            }
            None => {
                objects::prepare_create(&mut want, res, Some("kube-system"))?;
                match self.state.store.create(&key, skiff_api::gojson::to_vec(&want)).await {
                    Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(ApiError::from_store(e, "configmaps", "")),
                }
            }
        }
        Ok(())
    }

    /// Present `cert_pem`/`key_pem` (the front-proxy client identity) to extension servers.
    pub fn set_front_proxy_client(&self, cert_pem: String, key_pem: String) {
        self.state.aggregator.set_proxy_client(cert_pem, key_pem);
    }

    /// The default roles and bindings kube-apiserver bootstraps (created when missing; the
    /// aggregated roles start with their aggregated rules).
    async fn bootstrap_rbac(&self) -> Result<(), ApiError> {
        let reg = &self.state.registry;
        let objects = skiff_auth::policy::bootstrap_objects();
        let cluster_roles: Vec<&Value> =
            objects.iter().filter(|o| o["kind"] == "ClusterRole").collect();
        for obj in &objects {
            let kind = obj["kind"].as_str().unwrap_or("");
            let Some(res) = reg.by_kind("rbac.authorization.k8s.io", kind) else { continue };
            let mut obj = obj.clone();
            if let Some(rules) = skiff_auth::rbac::aggregate(&obj, &cluster_roles) {
                obj["rules"] = serde_json::to_value(rules).unwrap_or(Value::Null);
            }
            let ns = objects::namespace_of(&obj).map(str::to_string);
            let key = skiff_api::object_key(res, ns.as_deref(), objects::name_of(&obj));
            let stored = self
                .state
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::from_store(e, res.plural, ""))?;
            if stored.is_some() {
                continue;
            }
            objects::prepare_create(&mut obj, res, ns.as_deref())?;
            match self.state.store.create(&key, skiff_api::gojson::to_vec(&obj)).await {
                Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(ApiError::from_store(e, res.plural, "")),
            }
        }
        authz::ready(&self.state).await;
        Ok(())
    }

    /// The `kubernetes` Service in `default` (the first address of the service range) and
    /// its Endpoints, which point at this api server.
    async fn bootstrap_api_service(&self) -> Result<(), ApiError> {
        let reg = &self.state.registry;
        let (Some(services), Some(endpoints)) =
            (reg.lookup("", "v1", "services"), reg.lookup("", "v1", "endpoints"))
        else {
            return Ok(());
        };
        let addr: Option<std::net::SocketAddr> = self.state.server_address.parse().ok();
        let (ip, port) =
            addr.map_or(("127.0.0.1".to_string(), 6443), |a| (a.ip().to_string(), a.port()));
        let key = skiff_api::object_key(services, Some("default"), "kubernetes");
        let exists = |r| async move {
            self.state
                .store
                .get(r)
                .await
                .map_err(|e| ApiError::from_store(e, "services", "kubernetes"))
        };
        if exists(&key).await?.is_none() {
            let mut svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
            objects::prepare_create(&mut svc, services, Some("default"))?;
            match handlers::create_service(&self.state, svc, &key, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        // The cluster DNS: every node answers it locally on this address (no endpoints, no
        // selector), as NodeLocal DNSCache does; the name and labels are the ones clients and
        // charts look for.
        let key = skiff_api::object_key(services, Some("kube-system"), "kube-dns");
        if exists(&key).await?.is_none() {
            let mut svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
                "spec": {"clusterIP": crate::services::CLUSTER_DNS_IP.to_string(), "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}});
            objects::prepare_create(&mut svc, services, Some("kube-system"))?;
            match handlers::create_service(&self.state, svc, &key, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let key = skiff_api::object_key(endpoints, Some("default"), "kubernetes");
        if exists(&key).await?.is_none() {
            let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
            objects::prepare_create(&mut ep, endpoints, Some("default"))?;
            match self.state.store.create(&key, skiff_api::gojson::to_vec(&ep)).await {
                Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(ApiError::from_store(e, "endpoints", "kubernetes")),
            }
        }
        // Its EndpointSlice, which the node proxies read (kube-apiserver writes both).
        if let Some(slices) = reg.lookup("discovery.k8s.io", "v1", "endpointslices") {
            let key = skiff_api::object_key(slices, Some("default"), "kubernetes");
            if exists(&key).await?.is_none() {
                let mut slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
                objects::prepare_create(&mut slice, slices, Some("default"))?;
                match self.state.store.create(&key, skiff_api::gojson::to_vec(&slice)).await {
                    Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(ApiError::from_store(e, "endpointslices", "kubernetes")),
                }
            }
        }
        Ok(())
    }

    /// Serve HTTPS on `listener` until the process ends.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) {
        kubelet::serve_tls(self.router.clone(), listener, tls).await
    }
}

/// What a request is, for metrics.
#[derive(Default)]
struct RequestInfo {
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: String,
}

/// Marks a request of the server's own components (set here from [`InProcess`], removed
/// from any other request), for handlers that see only headers.
pub(crate) const IN_PROCESS_HEADER: &str = "x-skiff-in-process";

async fn serve_request(state: Arc<State>, mut req: Request) -> Response {
    let started = Instant::now();
    let mut info = RequestInfo { verb: req.method().to_string(), ..Default::default() };
    let in_process = req.extensions().get::<InProcess>().is_some();
    req.headers_mut().remove(IN_PROCESS_HEADER);
    if in_process {
        req.headers_mut().insert(IN_PROCESS_HEADER, header::HeaderValue::from_static("1"));
    }
    let attrs = request_attributes(&req);
    let auditor = if in_process { None } else { state.auditor.get().cloned() };
    let audit_meta = auditor.as_ref().map(|_| {
        let agent =
            req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
        let source = req.extensions().get::<authn::RemoteAddr>().map(|a| a.0.ip());
        (req.uri().to_string(), agent, source)
    });
    let admitted = admit(&state, req, in_process, &attrs).await;
    let mut record = match (&auditor, &audit_meta) {
        (Some(auditor), Some((uri, agent, source))) => {
            let unknown = skiff_auth::UserInfo::default();
            let (requester, impersonated) = match &admitted {
                Ok(a) => (&a.requester, (a.requester != *a.user).then_some(&*a.user)),
                Err(r) => (r.requester.as_ref().unwrap_or(&unknown), None),
            };
            auditor.begin(&audit::RequestMeta {
                user: requester,
                impersonated,
                attrs: &attrs,
                request_uri: uri,
                source_ip: *source,
                user_agent: agent.as_deref(),
            })
        }
        _ => None,
    };
    let resp = match admitted {
        Ok(a) => {
            let mut req = a.req;
            if let Some(r) = &mut record {
                r.set_authorization("allow", &a.reason);
                if r.needs_request_body() {
                    req = audit_request_object(req, r).await;
                }
            }
            // API Priority and Fairness; the server's own requests are exempt, as kube's
            // loopback client (system:masters) is.
            let long_running = attrs.verb == "watch"
                || attrs.verb == "proxy"
                || matches!(
                    attrs.subresource.as_str(),
                    "exec" | "attach" | "portforward" | "log" | "proxy"
                );
            let ticket = if in_process {
                Ok(None)
            } else {
                state.apf.admit(&a.user, &attrs, long_running).await.map(Some)
            };
            match ticket {
                Err(rejected) => rejected,
                Ok(ticket) => {
                    let mut resp = match authn::scope(a.user, route(&state, req, &mut info)).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    };
                    if let Some(t) = ticket {
                        t.stamp(&mut resp);
                    }
                    resp
                }
            }
        }
        Err(refused) => {
            if let Some(r) = &mut record
                && refused.error.code == 403
            {
                r.set_authorization("forbid", &refused.reason);
            }
            refused.error.into_response()
        }
    };
    let resp = match record {
        Some(r) => audit_response(r, &attrs, resp).await,
        None => resp,
    };
    if info.group == "rbac.authorization.k8s.io"
        && !matches!(info.verb.as_str(), "GET" | "LIST" | "WATCH")
        && resp.status().is_success()
    {
        authz::settle_write(&state, &info.resource).await;
    }
    if info.group == "apiextensions.k8s.io"
        && !matches!(info.verb.as_str(), "GET" | "LIST" | "WATCH")
        && resp.status().is_success()
    {
        crds::settle_write(&state).await;
    }
    if !info.resource.is_empty() {
        let d = DurationLabels {
            verb: info.verb.clone(),
            group: info.group.clone(),
            version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            scope: info.scope.clone(),
        };
        if info.verb != "WATCH" {
            state.metrics.durations.get_or_create(&d).observe(started.elapsed().as_secs_f64());
        }
        state
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                verb: d.verb,
                group: d.group,
                version: d.version,
                resource: d.resource,
                subresource: d.subresource,
                scope: d.scope,
                code: resp.status().as_u16().to_string(),
            })
            .inc();
    }
    resp
}

const MAX_BODY: usize = 3 * 1024 * 1024;

/// A request let through: the user it acts as (after impersonation), the user that sent it,
/// why it is allowed, and the request with its impersonation headers removed.
struct Admitted {
    user: Arc<skiff_auth::UserInfo>,
    requester: skiff_auth::UserInfo,
    reason: String,
    req: Request,
}

/// A request turned away (401 or 403), with its sender when it authenticated.
struct Refused {
    error: ApiError,
    requester: Option<skiff_auth::UserInfo>,
    reason: String,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused { error, requester: None, reason: String::new() }
    }
}

/// What a request asks, for the authorizers and the audit policy.
fn request_attributes(req: &Request) -> skiff_auth::Attributes {
    let q: HashMap<String, String> = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let mut attrs =
        skiff_auth::Attributes::from_request(req.method().as_str(), req.uri().path(), watch);
    // A list or watch of one object by name is authorized as that object (kube-apiserver
    // reads `metadata.name` from the field selector), which nodes rely on.
    if attrs.name.is_empty()
        && matches!(attrs.verb.as_str(), "list" | "watch")
        && let Some(name) = q.get("fieldSelector").and_then(|f| {
            f.split(',').find_map(|term| {
                // `=` or `==` (a `!=` term leaves `metadata.name!` as the field).
                let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
                (field.trim() == "metadata.name").then(|| value.trim().to_string())
            })
        })
    {
        attrs.name = name;
    }
    attrs
}

/// Authenticate, impersonate and authorize a request.
async fn admit(
    state: &State,
    mut req: Request,
    in_process: bool,
    attrs: &skiff_auth::Attributes,
) -> Result<Admitted, Refused> {
    if in_process {
        let user = authn::apiserver_user();
        return Ok(Admitted {
            user: Arc::new(user.clone()),
            requester: user,
            reason: String::new(),
            req,
        });
    }
    let path = req.uri().path().to_string();
    let peer = req.extensions().get::<authn::PeerCertificates>().cloned();
    let requester = match authn::authenticate(state, req.headers(), peer.as_ref()).await? {
        Some(user) => user,
        None if authn::anonymous_allowed(state.anonymous_auth(), &path) => {
            skiff_auth::UserInfo::anonymous()
        }
        None => return Err(ApiError::unauthorized().into()),
    };
    let refuse = |error: ApiError, reason: &str| Refused {
        error,
        requester: Some(requester.clone()),
        reason: reason.to_string(),
    };
    let user = if authn::wants_impersonation(req.headers()) {
        let impersonated =
            authn::impersonate(state, &requester, req.headers()).map_err(|e| refuse(e, ""))?;
        let headers = req.headers_mut();
        let names: Vec<header::HeaderName> =
            headers.keys().filter(|k| k.as_str().starts_with("impersonate-")).cloned().collect();
        for name in names {
            headers.remove(name);
        }
        impersonated
    } else {
        requester.clone()
    };
    let decision = authz::authorize(state, &user, attrs);
    if !decision.is_allowed() {
        return Err(refuse(authz::forbidden(&user, attrs, decision.reason()), decision.reason()));
    }
    if user.node_name().is_some() && attrs.resource_request {
        if attrs.verb == "create" {
            // NodeRestriction needs the object a node creates (its name, its annotations).
            // The labels a node changes on its Node are checked where every update and patch
            // is written (`authz::check_node_labels`).
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
                refuse(ApiError::bad_request(format!("reading the request body: {e}")), "")
            })?;
            let incoming: Option<Value> = serde_json::from_slice(&bytes).ok();
            authz::node_restriction(state, &user, attrs, incoming.as_ref())
                .map_err(|e| refuse(e, ""))?;
            req = Request::from_parts(parts, Body::from(bytes));
        } else {
            authz::node_restriction(state, &user, attrs, None).map_err(|e| refuse(e, ""))?;
        }
    }
    Ok(Admitted { user: Arc::new(user), requester, reason: decision.reason().to_string(), req })
}

/// Give the audit record the request's object (JSON; a protobuf body is converted), and the
/// request back whole.
async fn audit_request_object(req: Request, record: &mut audit::AuditRecord) -> Request {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Request::from_parts(parts, Body::empty());
    };
    if !bytes.is_empty() {
        let mut headers = parts.headers.clone();
        if let Ok(json) = codec::json_body(&mut headers, bytes.clone()) {
            record.set_request_object(&json);
        }
    }
    Request::from_parts(parts, Body::from(bytes))
}

/// Finish the audit record of `resp`: at once with the response object when the policy
/// wants it (or the Status of an error), or, for a long-running request (watch, exec,
/// attach, port-forward, proxy, followed logs), ResponseStarted now and ResponseComplete
/// when its body ends.
async fn audit_response(
    mut record: audit::AuditRecord,
    attrs: &skiff_auth::Attributes,
    resp: Response,
) -> Response {
    if let Some(a) = resp.extensions().get::<admission::AuditAnnotations>() {
        record.add_annotations(a.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    let code = resp.status().as_u16();
    let long_running = attrs.verb == "watch"
        || matches!(attrs.subresource.as_str(), "exec" | "attach" | "portforward" | "proxy")
        || code == 101;
    if long_running {
        record.response_started(code);
        let (parts, body) = resp.into_parts();
        // The record is finished when the body is dropped: at its end, or when the client goes.
        struct Finish(Option<audit::AuditRecord>, u16);
        impl Drop for Finish {
            fn drop(&mut self) {
                if let Some(r) = self.0.take() {
                    r.finish(self.1, None);
                }
            }
        }
        let finish = Finish(Some(record), code);
        let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
            let _ = &finish;
            chunk
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json = content_type.starts_with("application/json");
    let protobuf = content_type.starts_with("application/vnd.kubernetes.protobuf");
    if (json || protobuf) && (record.wants_response_object() || code >= 400) {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                // The log holds JSON whatever the client asked for.
                let logged = if protobuf {
                    skiff_api::protobuf::decode(&bytes)
                        .ok()
                        .and_then(|v| serde_json::to_vec(&v).ok())
                } else {
                    Some(bytes.to_vec())
                };
                record.finish(code, logged.as_deref());
                return Response::from_parts(parts, Body::from(bytes));
            }
            Err(_) => {
                record.finish(code, None);
                return Response::from_parts(parts, Body::empty());
            }
        }
    }
    record.finish(code, None);
    resp
}

async fn route(
    state: &Arc<State>,
    req: Request,
    info: &mut RequestInfo,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let q: HashMap<String, String> = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let accept =
        parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    // Every resource served now, custom ones included.
    let served = crds::served(state);
    let reg = &*served.registry;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |r: Response| -> Result<Response, ApiError> {
        if parts.method == http::Method::GET {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed("only GET is allowed here"))
        }
    };
    let discovery_response = |v: Value, aggregated: bool| {
        let mut r = json_response(StatusCode::OK, &v);
        if aggregated && let Ok(ct) = discovery::AGGREGATED_CONTENT_TYPE.parse() {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        r
    };
    let not_found =
        || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    match segs.as_slice() {
        [] => get_only(json_response(
            StatusCode::OK,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics", "/openapi/v3", "/readyz", "/version"]}),
        )),
        ["version"] => get_only(json_response(StatusCode::OK, &discovery::version())),
        ["prometheus", "discovery", role] => {
            get_only(json_response(StatusCode::OK, &promsd::discover(state, role)?))
        }
        ["healthz"] | ["livez"] | ["readyz"] => get_only((StatusCode::OK, "ok").into_response()),
        ["metrics"] => get_only(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                state.metrics.encode(),
            )
                .into_response(),
        ),
        ["api"] => {
            if discovery::wants_aggregated(&accept) {
                get_only(discovery_response(discovery::aggregated(reg, true), true))
            } else {
                get_only(json_response(
                    StatusCode::OK,
                    &discovery::api_versions(&state.server_address),
                ))
            }
        }
        ["apis"] => {
            if discovery::wants_aggregated(&accept) {
                let mut d = served.apis_discovery();
                if let Some(items) = d["items"].as_array_mut() {
                    items.extend(metricsapi::aggregated_items(state));
                    items.extend(aggregator::aggregated_items(state));
                }
                get_only(discovery_response(d, true))
            } else {
                let mut d = discovery::api_group_list(reg);
                if let Some(groups) = d["groups"].as_array_mut() {
                    groups.extend(metricsapi::api_groups());
                    groups.extend(aggregator::api_groups(state));
                }
                get_only(json_response(StatusCode::OK, &d))
            }
        }
        ["apis", group] if aggregator::is_remote_group(state, group) => get_only(json_response(
            StatusCode::OK,
            &aggregator::api_group(state, group).ok_or_else(not_found)?,
        )),
        ["apis", group, version, rest @ ..]
            if aggregator::remote(state, group, version).is_some() =>
        {
            let service = aggregator::remote(state, group, version).ok_or_else(not_found)?;
            info.verb = parts.method.to_string();
            info.group = group.to_string();
            info.version = version.to_string();
            info.resource = match rest {
                ["namespaces", _, r, ..] | [r, ..] => r.to_string(),
                [] => String::new(),
            };
            aggregator::proxy(state, &service, parts, body).await
        }
        ["apis", group] if metricsapi::api_group(group).is_some() => get_only(json_response(
            StatusCode::OK,
            &metricsapi::api_group(group).ok_or_else(not_found)?,
        )),
        ["apis", group, version] if metricsapi::api_group(group).is_some() => {
            get_only(json_response(
                StatusCode::OK,
                &metricsapi::api_resource_list(state, group, version).ok_or_else(not_found)?,
            ))
        }
        ["apis", group, version, rest @ ..] if metricsapi::api_group(group).is_some() => {
            info.verb = "GET".into();
            info.group = group.to_string();
            info.version = version.to_string();
            info.resource = match rest {
                ["namespaces", _, r, ..] | [r, ..] => r.to_string(),
                [] => String::new(),
            };
            get_only(json_response(
                StatusCode::OK,
                &metricsapi::serve(state, group, version, rest, &q)?,
            ))
        }
        ["api", "v1"] => get_only(json_response(
            StatusCode::OK,
            &discovery::api_resource_list(reg, "", "v1").ok_or_else(not_found)?,
        )),
        ["apis", group] => get_only(json_response(
            StatusCode::OK,
            &discovery::api_group(reg, group).ok_or_else(not_found)?,
        )),
        ["apis", group, version] => get_only(json_response(
            StatusCode::OK,
            &discovery::api_resource_list(reg, group, version).ok_or_else(not_found)?,
        )),
        ["openapi", "v2"] => {
            if accept.contains("protobuf") {
                get_only(
                    // Go's mime parser rejects the '@' of the requested type; Kubernetes answers octet-stream.
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        openapi::v2_protobuf(reg),
                    )
                        .into_response(),
                )
            } else {
                get_only(openapi_response(&openapi::v2(reg), &parts, None))
            }
        }
        ["openapi", "v3"] => get_only(json_response(StatusCode::OK, &openapi::v3_root(reg))),
        ["openapi", "v3", "api", version] => get_only(openapi_response(
            &*openapi::v3(reg, "", version).ok_or_else(not_found)?,
            &parts,
            q.get("hash"),
        )),
        ["openapi", "v3", "apis", group, version] => get_only(openapi_response(
            &*openapi::v3(reg, group, version).ok_or_else(not_found)?,
            &parts,
            q.get("hash"),
        )),
        ["api", "v1", "nodes", node, "proxy", rest @ ..] => {
            info.verb = parts.method.to_string();
            info.version = "v1".into();
            info.resource = "nodes".into();
            info.subresource = "proxy".into();
            info.scope = "resource".into();
            let query = parts.uri.query().unwrap_or("").to_string();
            subresources::node_proxy(state, parts.method.as_str(), node, &rest.join("/"), query)
                .await
        }
        [".well-known", "openid-configuration"] => {
            // HTTP/2 carries the address in the URI's authority, HTTP/1.1 in Host.
            let host = parts
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
                .unwrap_or("");
            get_only(json_response(StatusCode::OK, &tokens::openid_configuration(host)))
        }
        ["openid", "v1", "jwks"] => {
            let signer = state.token_signer.get().ok_or_else(not_found)?;
            let mut r = json_response(StatusCode::OK, &signer.jwks());
            if let Ok(ct) = "application/jwk-set+json".parse() {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            get_only(r)
        }
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "pods",
            name,
            sub @ ("exec" | "attach" | "portforward"),
        ] => {
            info.verb = if parts.method == http::Method::GET { "GET" } else { "CREATE" }.into();
            info.version = "v1".into();
            info.resource = "pods".into();
            info.subresource = (*sub).into();
            info.scope = "resource".into();
            let (ns, name, sub) = (ns.to_string(), name.to_string(), sub.to_string());
            drop(body);
            streaming::serve(state, parts, &ns, &name, &sub).await
        }
        ["api", version, rest @ ..] => {
            let streaming = q.get("watch").is_some_and(|w| w == "true" || w == "1");
            let r = resource_request(state, parts, body, "", version, rest, &q, info).await;
            codec::negotiate(&accept, streaming, r).await
        }
        ["apis", group, version, rest @ ..] => {
            let streaming = q.get("watch").is_some_and(|w| w == "true" || w == "1");
            let r = resource_request(state, parts, body, group, version, rest, &q, info).await;
            codec::negotiate(&accept, streaming, r).await
        }
        _ => Err(not_found()),
    }
}

/// A cached OpenAPI document with its ETag, as kube-apiserver serves them: a request naming
/// the current hash (as the `/openapi/v3` index links do) may be cached for good, one naming
/// an old hash is redirected to the current one, and a matching `If-None-Match` gets 304.
fn openapi_response(
    doc: &openapi::Document,
    parts: &http::request::Parts,
    hash: Option<&String>,
) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    if let Some(h) = hash
        && *h != doc.hash
    {
        let location = format!("{}?hash={}", parts.uri.path(), doc.hash);
        return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
    }
    let cache_control =
        if hash.is_some() { "public, immutable, max-age=31536000" } else { "no-cache, private" };
    let not_modified = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if not_modified {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control.to_string())],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control.to_string()),
        ],
        doc.json.clone(),
    )
        .into_response()
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    state: &Arc<State>,
    mut parts: http::request::Parts,
    body: Body,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
    info: &mut RequestInfo,
) -> Result<Response, ApiError> {
    let target = handlers::parse_target(state, group, version, rest)?;
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    info.verb = match (parts.method.as_str(), target.name.is_some()) {
        ("GET", false) if watching => "WATCH",
        ("GET", false) => "LIST",
        (m, _) => m,
    }
    .to_string();
    info.group = group.to_string();
    info.version = version.to_string();
    info.resource = target.resource.plural.to_string();
    info.subresource = target.subresource.clone().unwrap_or_default();
    info.scope = match (&target.name, &target.namespace) {
        (Some(_), _) => "resource",
        (None, Some(_)) => "namespace",
        (None, None) => "cluster",
    }
    .to_string();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("request body too large or unreadable: {e}"),
        )
    })?;
    let bytes = codec::json_body(&mut parts.headers, bytes)?;
    let resp = handlers::dispatch(state, &parts.method, &target, &parts.headers, &bytes, q).await?;
    // A deprecated version of a custom resource warns on every answer.
    let shown = target.view.as_ref().unwrap_or(&target.resource);
    Ok(match crds::CustomVersion::of(shown).and_then(|cv| cv.warning.as_ref()) {
        Some(w) => handlers::with_warnings(resp, std::slice::from_ref(w)),
        None => resp,
    })
}
