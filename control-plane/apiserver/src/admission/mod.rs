//! Admission: what kube-apiserver runs between authorization and the store. First the
//! mutating plugins, in kube-apiserver's order (NamespaceLifecycle, LimitRanger,
//! ServiceAccount, Priority, DefaultStorageClass, StorageObjectInUseProtection, RuntimeClass,
//! AlwaysPullImages when enabled, MutatingAdmissionPolicy, MutatingAdmissionWebhook, Skiff's
//! mutating Wasm policies), then the validating ones (LimitRanger, PodSecurity,
//! ValidatingAdmissionPolicy, ValidatingAdmissionWebhook, Skiff's validating Wasm policies,
//! ResourceQuota).
//! DefaultTolerationSeconds is part of pod defaulting (`objects`), NodeRestriction of
//! authorization (`authz`).
//!
//! The rules themselves are in `skiff-admission`; the modules here read what the rules need
//! from the watch caches (never a store round trip per request when the cache has it) and
//! apply their answers. A quota's charge is not written here: it comes back as a transaction
//! operation that the handler commits together with the object, so that concurrent creates
//! can never overshoot a quota.

mod lifecycle;
mod limits;
mod pods;
mod podsecurity;
mod policies;
mod quota;
mod storage;
mod wasm;
mod webhooks;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_api::ResourceInfo;
use skiff_auth::UserInfo;
use skiff_store::{Consistency, ListOptions, TxnOp};

pub use self::pods::{
    DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP, SERVICE_ACCOUNT_MOUNT_PATH,
    SYSTEM_CLUSTER_CRITICAL, SYSTEM_NODE_CRITICAL,
};
pub use self::policies::{AdmissionPolicies, stamp_status as stamp_policy_status};
pub use self::wasm::{MakeHost, WasmPolicies};
pub use self::webhooks::WebhookClients;
pub(crate) use self::webhooks::post_to as post_to_webhook;
pub(crate) use self::webhooks::ready_endpoint as ready_endpoint_of;
use crate::State;
use crate::errors::ApiError;

/// The plugins that can be turned on or off (`--enable-admission-plugins`,
/// `--disable-admission-plugins`), by kube-apiserver's names.
pub const PLUGINS: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "Priority",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "RuntimeClass",
    "AlwaysPullImages",
    "PodSecurity",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "WasmAdmissionPolicy",
    "ResourceQuota",
];

/// Plugins that are off unless enabled.
const OFF_BY_DEFAULT: &[&str] = &["AlwaysPullImages"];

/// How admission is set up.
#[derive(Debug, Clone)]
pub struct Config {
    enabled: HashSet<&'static str>,
    /// Pod Security Admission's defaults and exemptions.
    pub pod_security: skiff_admission::podsecurity::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: PLUGINS.iter().copied().filter(|p| !OFF_BY_DEFAULT.contains(p)).collect(),
            pod_security: Default::default(),
        }
    }
}

impl Config {
    /// The default set with `enable` added and `disable` removed; an unknown name is an error
    /// naming it (kube-apiserver refuses to start on one too).
    pub fn with_plugins(enable: &[String], disable: &[String]) -> Result<Config, String> {
        let mut config = Config::default();
        let known = |name: &str| {
            PLUGINS.iter().copied().find(|p| *p == name).ok_or_else(|| {
                format!(
                    "admission plugin {name:?} is unknown; known plugins: {}",
                    PLUGINS.join(", ")
                )
            })
        };
        for name in enable {
            config.enabled.insert(known(name)?);
        }
        for name in disable {
            config.enabled.remove(known(name)?);
        }
        Ok(config)
    }

    pub fn enabled(&self, plugin: &str) -> bool {
        self.enabled.contains(plugin)
    }

    /// Take the plugin configurations of an `apiserver.config.k8s.io/v1`
    /// AdmissionConfiguration: PodSecurity's `PodSecurityConfiguration` (defaults and
    /// exemptions). Errors name what is wrong.
    pub fn configure(&mut self, doc: &Value) -> Result<(), String> {
        if doc["kind"] != "AdmissionConfiguration" {
            return Err(format!("expected kind AdmissionConfiguration, got {}", doc["kind"]));
        }
        for plugin in doc["plugins"].as_array().into_iter().flatten() {
            let name = plugin["name"].as_str().unwrap_or("");
            if !PLUGINS.contains(&name) {
                return Err(format!("plugins: unknown admission plugin {name:?}"));
            }
            if plugin.get("path").is_some() {
                return Err(format!(
                    "plugins[{name}]: a configuration path is not supported; put it inline"
                ));
            }
            if name == "PodSecurity" {
                self.pod_security = pod_security_configuration(&plugin["configuration"])?;
            }
        }
        Ok(())
    }
}

/// A `pod-security.admission.config.k8s.io/v1` PodSecurityConfiguration.
fn pod_security_configuration(c: &Value) -> Result<skiff_admission::podsecurity::Config, String> {
    use skiff_admission::podsecurity::{Config, Exemptions, NamespacePolicy};
    if c["kind"] != "PodSecurityConfiguration" {
        return Err(format!(
            "PodSecurity: expected kind PodSecurityConfiguration, got {}",
            c["kind"]
        ));
    }
    // The defaults are written as the namespace labels are, without the prefix.
    let mut labels = serde_json::Map::new();
    for (k, v) in c["defaults"].as_object().into_iter().flatten() {
        labels.insert(format!("pod-security.kubernetes.io/{k}"), v.clone());
    }
    let defaults = NamespacePolicy::from_labels(&labels, &NamespacePolicy::default())
        .map_err(|e| format!("PodSecurity defaults: {}", e.join("; ")))?;
    let list = |k: &str| -> Vec<String> {
        c["exemptions"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    Ok(Config {
        defaults,
        exemptions: Exemptions {
            usernames: list("usernames"),
            runtime_classes: list("runtimeClasses"),
            namespaces: list("namespaces"),
        },
    })
}

/// The operation being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// exec, attach, port-forward (and proxy): the object is the options.
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One request to admit.
pub struct Request<'a> {
    pub operation: Operation,
    pub res: &'a ResourceInfo,
    /// `""` for the object itself.
    pub subresource: &'a str,
    /// `""` for cluster-scoped objects.
    pub namespace: &'a str,
    pub name: &'a str,
    /// The stored object, for updates and deletes.
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    /// How many times this request was admitted before and lost a race at the store: from
    /// the second try on, what admission reads comes from the store, not the caches.
    pub attempt: usize,
}

impl Request<'_> {
    fn is(&self, group: &str, kind: &str) -> bool {
        self.res.group == group && self.res.kind == kind
    }

    /// The request's user (the api server's own outside a request).
    fn user(&self) -> Arc<UserInfo> {
        crate::authn::current_user().unwrap_or_else(|| Arc::new(crate::authn::apiserver_user()))
    }
}

/// What admission adds to an admitted request.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Warnings for the client (`Warning:` headers).
    pub warnings: Vec<String>,
    /// Annotations for the request's audit event.
    pub audit_annotations: Vec<(String, String)>,
    /// Writes that must commit with the object (quota charges), each conditional on the
    /// revision admission read.
    pub ops: Vec<TxnOp>,
    /// Whether a plugin changed the object (it is then validated again).
    pub mutated: bool,
}

/// Apply a webhook's JSON patch to `obj` as admission does (for the fuzz targets).
pub fn apply_webhook_patch(obj: &mut Value, patch: &[u8]) -> Result<(), String> {
    webhooks::apply_patch(obj, patch)
}

/// Admission's annotations for the audit event, carried on the response.
#[derive(Debug, Clone, Default)]
pub struct AuditAnnotations(pub Vec<(String, String)>);

impl Admitted {
    /// Put the warnings and audit annotations on `resp`.
    pub fn decorate(&self, resp: axum::response::Response) -> axum::response::Response {
        let mut resp = crate::handlers::with_warnings(resp, &bounded(&self.warnings));
        if !self.audit_annotations.is_empty() {
            resp.extensions_mut().insert(AuditAnnotations(self.audit_annotations.clone()));
        }
        resp
    }
}

/// Warnings as a response carries them (kube-apiserver's recorder): each once; when they
/// come to more than 4 Ki characters in all, each is cut to 256 and what still does not fit
/// is left out.
fn bounded(warnings: &[String]) -> Vec<String> {
    const EACH: usize = 256;
    const TOTAL: usize = 4096;
    let mut unique: Vec<&String> = Vec::new();
    for w in warnings {
        if !unique.contains(&w) {
            unique.push(w);
        }
    }
    if unique.iter().map(|w| w.chars().count()).sum::<usize>() <= TOTAL {
        return unique.into_iter().cloned().collect();
    }
    let mut out = Vec::new();
    let mut total = 0;
    for w in unique {
        let w: String = w.chars().take(EACH).collect();
        total += w.chars().count();
        if total > TOTAL {
            break;
        }
        out.push(w);
    }
    out
}

/// Charge the quotas again after a lost race at the store: the object was admitted, only
/// the charge is recomputed, from the quotas as they are now.
pub async fn recharge(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
) -> Result<Vec<TxnOp>, ApiError> {
    let mut out = Admitted::default();
    if state.admission_config().enabled("ResourceQuota") {
        quota::admit(state, req, obj, &mut out).await?;
    }
    Ok(out.ops)
}

/// Whether a write failed because a quota it charged changed meanwhile.
pub fn lost_quota_race(e: &ApiError) -> bool {
    e.code == 409 && e.details.as_ref().and_then(|d| d["kind"].as_str()) == Some("resourcequotas")
}

/// Run the admission chain on `obj` (the new object; for a delete, the object being
/// deleted). Errors are the denial of the first plugin that refuses.
pub async fn admit(
    state: &State,
    req: &Request<'_>,
    obj: &mut Value,
) -> Result<Admitted, ApiError> {
    let config = state.admission_config();
    let on = |p: &str| config.enabled(p);
    let mut out = Admitted::default();
    // Mutating plugins.
    if on("NamespaceLifecycle") {
        lifecycle::admit(state, req).await?;
    }
    let pod_create = req.is("", "Pod") && req.operation == Operation::Create;
    if pod_create && req.subresource.is_empty() {
        if on("LimitRanger") {
            out.mutated |= limits::default_pod(state, req, obj).await?;
        }
        pods::admit_pod(state, obj, &config).await?;
    }
    if req.operation == Operation::Create && req.subresource.is_empty() {
        if on("DefaultStorageClass") && req.is("", "PersistentVolumeClaim") {
            storage::default_storage_class(state, obj).await?;
        }
        if on("StorageObjectInUseProtection") {
            storage::protect_in_use(req, obj);
        }
    }
    if on("AlwaysPullImages")
        && req.is("", "Pod")
        && req.subresource.is_empty()
        && matches!(req.operation, Operation::Create | Operation::Update)
    {
        pods::always_pull_images(obj);
    }
    // A CONNECT has nothing to change: only the validating phase sees it.
    let changeable = req.operation != Operation::Connect;
    if changeable && on("MutatingAdmissionPolicy") {
        policies::mutate(state, req, obj, &mut out).await?;
    }
    if changeable && on("MutatingAdmissionWebhook") {
        webhooks::mutate(state, req, obj, &mut out).await?;
    }
    if changeable && on("WasmAdmissionPolicy") {
        wasm::mutate(state, req, obj, &mut out).await?;
    }
    // Validating plugins.
    if on("LimitRanger") {
        limits::validate(state, req, obj).await?;
    }
    if on("PodSecurity") {
        podsecurity::admit(state, &config, req, obj, &mut out).await?;
    }
    if on("ValidatingAdmissionPolicy") {
        policies::validate(state, req, obj, &mut out).await?;
    }
    if on("ValidatingAdmissionWebhook") {
        webhooks::validate(state, req, obj, &mut out).await?;
    }
    if on("WasmAdmissionPolicy") {
        wasm::validate(state, req, obj, &mut out).await?;
    }
    if on("ResourceQuota") && matches!(req.operation, Operation::Create | Operation::Update) {
        quota::admit(state, req, obj, &mut out).await?;
    }
    Ok(out)
}

/// Call `f` with the AdmissionReview request webhooks and Wasm policies are sent about
/// `req` (`obj` is the new object; for a delete, the one going).
fn with_review_request<T>(
    req: &Request<'_>,
    obj: &Value,
    uid: &str,
    f: impl FnOnce(&skiff_admission::review::RequestInfo<'_>) -> T,
) -> T {
    let user = serde_json::to_value(&*req.user()).unwrap_or(Value::Null);
    let (object, old_object) = match req.operation {
        Operation::Delete => (None, Some(req.old.unwrap_or(obj))),
        _ => (Some(obj), req.old),
    };
    f(&skiff_admission::review::RequestInfo {
        uid,
        group: req.res.group,
        version: req.res.version,
        kind: req.res.kind,
        resource: req.res.plural,
        subresource: req.subresource,
        name: req.name,
        namespace: req.namespace,
        operation: req.operation.as_str(),
        user: &user,
        object,
        old_object,
        dry_run: req.dry_run,
    })
}

/// `<resource>[.<group>] "<name>" is forbidden: <why>`, as kube's `admission.NewForbidden`.
pub fn forbidden(res: &ResourceInfo, name: &str, why: &str) -> ApiError {
    let resource = if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    };
    ApiError {
        details: Some(serde_json::json!({"name": name, "group": res.group, "kind": res.plural})),
        ..ApiError::new(403, "Forbidden", format!("{resource} \"{name}\" is forbidden: {why}"))
    }
}

/// Something derived from the objects of a few watch caches (parsed webhook configurations,
/// compiled policies), kept until one of those caches changes.
pub(crate) struct Derived<T> {
    /// The caches it is derived from, looked up once (every admitted request asks).
    caches: std::sync::OnceLock<Vec<Arc<crate::cache::Cache>>>,
    kept: Mutex<Option<(Vec<u64>, Arc<T>)>>,
}

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived { caches: std::sync::OnceLock::new(), kept: Mutex::new(None) }
    }
}

impl<T> Derived<T> {
    /// The generations of the watch caches of `plurals` in `group` (0: not built yet). The
    /// same `group` and `plurals` are given on every call.
    fn generations(&self, state: &State, group: &str, plurals: &[&str]) -> Vec<u64> {
        let caches = self.caches.get_or_init(|| {
            plurals
                .iter()
                .filter_map(|p| state.registry.by_plural(group, p))
                .map(|r| state.caches.get(r))
                .collect()
        });
        caches.iter().map(|c| c.generation()).collect()
    }

    /// The value made when the caches were at `generations`, if it is still kept.
    fn get(&self, generations: &[u64]) -> Option<Arc<T>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref().filter(|(g, _)| g == generations).map(|(_, v)| v.clone())
    }

    /// Keep `value`, made at `generations`; not while a cache is still being built
    /// (generation 0), whose objects may be incomplete.
    fn keep(&self, generations: Vec<u64>, value: T) -> Arc<T> {
        let value = Arc::new(value);
        if !generations.is_empty() && !generations.contains(&0) {
            *self.kept.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((generations, value.clone()));
        }
        value
    }
}

/// An object of a resource with the revision it was read at.
pub(crate) struct Read {
    pub value: Value,
    pub revision: u64,
}

/// The objects of `plural` (group `group`) under `namespace` (all of them for `None`): from
/// the watch cache, as kube-apiserver's admission plugins read informers, or from the store
/// when the cache is not built yet or `fresh` asks for the latest.
pub(crate) async fn list(
    state: &State,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    fresh: bool,
) -> Result<Vec<Read>, ApiError> {
    let Some(res) = state.registry.by_plural(group, plural) else { return Ok(Vec::new()) };
    let prefix = skiff_api::list_prefix(res, namespace);
    if !fresh
        && let Some((items, _)) = state.caches.get(res).snapshot(
            &prefix,
            &crate::selectors::LabelSelector::default(),
            &crate::selectors::FieldSelector::default(),
        )
    {
        return Ok(items.iter().map(|c| Read { value: c.value(), revision: c.revision }).collect());
    }
    let page = state
        .store
        .list_with(
            &prefix,
            &ListOptions { consistency: Consistency::Serializable, ..Default::default() },
        )
        .await
        .map_err(|e| ApiError::internal(format!("admission list of {plural}: {e}")))?;
    Ok(page
        .items
        .iter()
        .filter_map(|kv| {
            let value = serde_json::from_slice(&kv.value).ok()?;
            Some(Read { value, revision: kv.mod_revision })
        })
        .collect())
}

/// The object `name` of `plural` (group `group`; `namespace/name` for a namespaced one): from
/// the watch cache, or from the store when the cache does not have it (yet).
pub(crate) async fn read(
    state: &State,
    group: &str,
    plural: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let key = format!("/registry/{plural}/{name}");
    if let Some(cached) = state.cached(group, plural, &key) {
        return Ok(Some(cached.value()));
    }
    let kv = state
        .store
        .get_with(&key, Consistency::Serializable)
        .await
        .map_err(|e| ApiError::internal(format!("admission read of {key}: {e}")))?;
    Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_should_turn_plugins_on_and_off_by_kube_names() {
        let c = Config::default();
        assert!(c.enabled("ResourceQuota") && !c.enabled("AlwaysPullImages"));
        let c = Config::with_plugins(&["AlwaysPullImages".into()], &["PodSecurity".into()])
            .expect("known plugins");
        assert!(c.enabled("AlwaysPullImages") && !c.enabled("PodSecurity"));
        let e = Config::with_plugins(&["Nope".into()], &[]).expect_err("unknown plugin");
        assert!(e.contains("\"Nope\" is unknown"), "{e}");
    }

    #[test]
    fn bounded_should_dedupe_and_cut_only_when_too_long() {
        let long = "x".repeat(300);
        assert_eq!(bounded(&[long.clone(), long.clone()]), vec![long.clone()]);
        let many: Vec<String> = (0..20).map(|i| format!("{i}{long}")).collect();
        let cut = bounded(&many);
        assert!(cut.iter().all(|w| w.chars().count() == 256), "cut to 256");
        assert_eq!(cut.len(), 16, "4096 / 256");
    }

    #[test]
    fn configure_should_read_pod_security_defaults_and_exemptions() {
        let mut c = Config::default();
        let doc = serde_json::json!({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
            "plugins": [{"name": "PodSecurity", "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {"enforce": "baseline", "enforce-version": "v1.30", "warn": "restricted"},
                "exemptions": {"namespaces": ["kube-system"], "usernames": ["admin"]},
            }}],
        });
        c.configure(&doc).expect("a valid configuration");
        assert_eq!(c.pod_security.defaults.enforce.label(), "baseline:v1.30");
        assert_eq!(c.pod_security.defaults.warn.label(), "restricted:latest");
        assert_eq!(c.pod_security.exemptions.namespaces, vec!["kube-system".to_string()]);
        let bad = serde_json::json!({"kind": "AdmissionConfiguration", "plugins": [{"name": "PodSecurity",
            "configuration": {"kind": "PodSecurityConfiguration", "defaults": {"enforce": "strictest"}}}]});
        assert!(Config::default().configure(&bad).is_err());
    }
}
