//! Skiff's own admission plugin: policies as WebAssembly components (`wit/policy.wit`),
//! run in this process by [`skiff_wasm_policy::PolicyHost`]. A `WasmAdmissionPolicy`
//! (`policy.skiff.dev/v1alpha1`, cluster-scoped) names the module (an image reference), its
//! settings, whether it mutates, its failure policy, its limits, the kinds it may read and its
//! `matchConstraints` (shaped as ValidatingAdmissionPolicy's); a `WasmAdmissionPolicyBinding`
//! puts it to work, with `matchResources`, `validationActions` (Deny, Warn, Audit) and, if it
//! likes, settings of its own. As for ValidatingAdmissionPolicy, a policy without a binding
//! does nothing.
//!
//! Mutating policies run in the mutating phase, after the webhooks, one after another (each
//! sees the last one's patch); validating ones run together in the validating phase. A
//! module is loaded (resolved, pulled if missing, compiled, its settings checked) once per
//! policy generation; every call gets a fresh store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_admission::webhook::{Attributes, constraints_match};
use skiff_api::ResourceInfo;
use skiff_wasm_policy::{ClusterReader, Limits, Module, PolicyError, PolicyHost};

use super::{Admitted, Operation, Request};
use crate::State;
use crate::cache::Cache;
use crate::errors::ApiError;

pub const GROUP: &str = "policy.skiff.dev";
const POLICIES: &str = "wasmadmissionpolicies";
const BINDINGS: &str = "wasmadmissionpolicybindings";
/// How long finding, pulling and compiling a module may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// One policy put to work by one binding.
struct Bound {
    policy: String,
    binding: String,
    module: String,
    /// JSON text.
    settings: Arc<str>,
    mutating: bool,
    /// `failurePolicy: Ignore`.
    fail_open: bool,
    constraints: Option<Value>,
    match_resources: Option<Value>,
    deny: bool,
    warn: bool,
    audit: bool,
    limits: Limits,
    /// `(apiVersion, kind)` the policy may read.
    context: Vec<(String, String)>,
    /// The policy's uid and generation, so a changed or recreated policy loads again.
    uid: String,
    generation: i64,
}

/// Loaded modules by (policy uid, generation, settings): settings are checked once.
type Loaded = HashMap<(String, i64, Arc<str>), Arc<Module>>;

/// What running Wasm policies keeps between requests.
#[derive(Default)]
pub struct WasmPolicies {
    /// Made on the first policy call: an api server with no Wasm policy starts no engine and
    /// no epoch ticker.
    host: std::sync::OnceLock<Arc<PolicyHost>>,
    make_host: std::sync::OnceLock<MakeHost>,
    /// Every (policy, binding) pair, parsed once per change of either.
    bound: super::Derived<Vec<Arc<Bound>>>,
    loaded: Mutex<Loaded>,
}

/// How the policy host is made (the binary knows where the image store is).
pub type MakeHost = Box<dyn Fn() -> Result<PolicyHost, String> + Send + Sync>;

impl WasmPolicies {
    /// Run policies with a host `make` makes when the first one is called.
    pub fn set_host_maker(&self, make: MakeHost) {
        let _ = self.make_host.set(make);
    }
}

/// Every (policy, binding) pair, parsed once per change of either.
async fn bound(state: &State) -> Result<Arc<Vec<Arc<Bound>>>, ApiError> {
    let generations = state.wasm_policies.bound.generations(state, GROUP, &[POLICIES, BINDINGS]);
    if let Some(all) = state.wasm_policies.bound.get(&generations) {
        return Ok(all);
    }
    let policies = super::list(state, GROUP, POLICIES, None, false).await?;
    let bindings = super::list(state, GROUP, BINDINGS, None, false).await?;
    let by_name: HashMap<&str, &Value> = policies
        .iter()
        .map(|p| {
            (p.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""), &p.value)
        })
        .collect();
    let mut all: Vec<Arc<Bound>> = bindings
        .iter()
        .filter_map(|b| {
            let name = b.value.pointer("/spec/policyName").and_then(Value::as_str)?;
            Some(Arc::new(parse(by_name.get(name)?, &b.value)))
        })
        .collect();
    all.sort_by(|a, b| (&a.policy, &a.binding).cmp(&(&b.policy, &b.binding)));
    Ok(state.wasm_policies.bound.keep(generations, all))
}

fn parse(policy: &Value, binding: &Value) -> Bound {
    let spec = &policy["spec"];
    let name =
        |o: &Value| o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let settings = binding
        .pointer("/spec/settings")
        .filter(|s| !s.is_null())
        .or_else(|| spec.get("settings").filter(|s| !s.is_null()))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let actions: Vec<&str> = binding
        .pointer("/spec/validationActions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec!["Deny"]);
    let defaults = Limits::default();
    Bound {
        policy: name(policy),
        binding: name(binding),
        module: spec["module"].as_str().unwrap_or("").to_string(),
        settings: settings.to_string().into(),
        mutating: spec["mutating"].as_bool().unwrap_or(false),
        fail_open: spec["failurePolicy"].as_str() == Some("Ignore"),
        constraints: spec.get("matchConstraints").cloned(),
        match_resources: binding.pointer("/spec/matchResources").cloned(),
        deny: actions.contains(&"Deny"),
        warn: actions.contains(&"Warn"),
        audit: actions.contains(&"Audit"),
        limits: Limits {
            timeout: spec["timeoutMilliseconds"]
                .as_u64()
                .map(Duration::from_millis)
                .unwrap_or(defaults.timeout),
            memory_bytes: spec["memoryLimitBytes"]
                .as_u64()
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(defaults.memory_bytes),
        },
        context: spec["context"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((c["apiVersion"].as_str()?.to_string(), c["kind"].as_str()?.to_string()))
            })
            .collect(),
        uid: policy.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string(),
        generation: policy.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
    }
}

/// The bound policies of one phase that cover the request.
async fn matching(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    mutating: bool,
) -> Result<Vec<Arc<Bound>>, ApiError> {
    // Policies cannot lock themselves (or webhooks) out of being changed.
    if req.res.group == GROUP || req.res.group == "admissionregistration.k8s.io" {
        return Ok(Vec::new());
    }
    let all = bound(state).await?;
    if !all.iter().any(|b| b.mutating == mutating) {
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
    let labels = if req.res.group.is_empty() && req.res.kind == "Namespace" {
        Some(obj.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})))
    } else if req.res.namespaced && !req.namespace.is_empty() {
        let ns = super::read(state, "", "namespaces", req.namespace).await?;
        Some(ns.and_then(|n| n.pointer("/metadata/labels").cloned()).unwrap_or_else(|| json!({})))
    } else {
        None
    };
    let (new, old) = match req.operation {
        Operation::Delete => (None, Some(req.old.unwrap_or(obj))),
        _ => (Some(obj), req.old),
    };
    Ok(all
        .iter()
        .filter(|b| b.mutating == mutating)
        .filter(|b| {
            constraints_match(b.constraints.as_ref(), &attrs, req.name, labels.as_ref(), new, old)
                && constraints_match(
                    b.match_resources.as_ref(),
                    &attrs,
                    req.name,
                    labels.as_ref(),
                    new,
                    old,
                )
        })
        .cloned()
        .collect())
}

/// The policy's module, loaded and its settings checked once per generation.
async fn load(state: &State, b: &Bound) -> Result<Arc<Module>, PolicyError> {
    let key = (b.uid.clone(), b.generation, b.settings.clone());
    if let Some(m) = state.wasm_policies.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
    {
        return Ok(m.clone());
    }
    let host = host(state)?;
    let module =
        tokio::time::timeout(LOAD_TIMEOUT, host.load(&b.module)).await.map_err(|_| {
            PolicyError::Image {
                reference: b.module.clone(),
                why: format!("not loaded within {LOAD_TIMEOUT:?}"),
            }
        })??;
    host.validate_settings(&module, &b.policy, &b.settings, b.limits).await?;
    let mut loaded = state.wasm_policies.loaded.lock().unwrap_or_else(|p| p.into_inner());
    // Older generations of the policy are of no more use.
    loaded.retain(|(uid, g, _), _| uid != &b.uid || *g == b.generation);
    loaded.insert(key, module.clone());
    Ok(module)
}

fn host(state: &State) -> Result<&Arc<PolicyHost>, PolicyError> {
    let policies = &state.wasm_policies;
    if let Some(host) = policies.host.get() {
        return Ok(host);
    }
    let no_host = |why: String| PolicyError::Image { reference: String::new(), why };
    let make = policies
        .make_host
        .get()
        .ok_or_else(|| no_host("this api server runs no Wasm policies".into()))?;
    let host = make().map_err(|e| no_host(format!("starting the Wasm policy host: {e}")))?;
    Ok(policies.host.get_or_init(|| Arc::new(host)))
}

/// The objects a policy declared it reads, from the watch caches.
struct CacheReader {
    kinds: HashMap<(String, String), (ResourceInfo, Arc<Cache>)>,
}

impl CacheReader {
    fn new(state: &State, context: &[(String, String)]) -> CacheReader {
        let kinds = context
            .iter()
            .filter_map(|(api_version, kind)| {
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let res = state.registry.by_kind(group, kind)?.clone();
                let cache = state.caches.get(&res);
                Some(((api_version.clone(), kind.clone()), (res, cache)))
            })
            .collect();
        CacheReader { kinds }
    }
}

impl ClusterReader for CacheReader {
    fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<String> {
        let (res, cache) = self.kinds.get(&(api_version.to_string(), kind.to_string()))?;
        let ns = Some(namespace).filter(|n| !n.is_empty());
        let cached = cache.get(&skiff_api::object_key(res, ns, name))?;
        String::from_utf8(cached.json.to_vec()).ok()
    }

    fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<String> {
        let Some((res, cache)) = self.kinds.get(&(api_version.to_string(), kind.to_string()))
        else {
            return Vec::new();
        };
        let prefix = skiff_api::list_prefix(res, Some(namespace).filter(|n| !n.is_empty()));
        let Some((items, _)) = cache.snapshot(
            &prefix,
            &crate::selectors::LabelSelector::default(),
            &crate::selectors::FieldSelector::default(),
        ) else {
            return Vec::new();
        };
        items.iter().filter_map(|c| String::from_utf8(c.json.to_vec()).ok()).collect()
    }
}

/// The AdmissionRequest policies are given, as JSON text.
fn request_json(req: &Request<'_>, obj: &Value) -> String {
    let uid = uuid::Uuid::new_v4().to_string();
    super::with_review_request(req, obj, &uid, |info| {
        skiff_admission::review::request(info).to_string()
    })
}

/// Run one policy; `Ok(None)` when it failed and its failure policy lets the request on.
async fn run(
    state: &State,
    b: &Bound,
    request: &str,
) -> Result<Option<skiff_wasm_policy::Verdict>, ApiError> {
    let result = async {
        let module = load(state, b).await?;
        let reader: Arc<dyn ClusterReader> = Arc::new(CacheReader::new(state, &b.context));
        host(state)?.validate(&module, &b.policy, request, &b.settings, reader, b.limits).await
    }
    .await;
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if b.fail_open => {
            tracing::warn!(policy = %b.policy, error = %e, "Wasm admission policy failed; failurePolicy is Ignore");
            Ok(None)
        }
        Err(e) => Err(ApiError::internal(format!(
            "Internal error occurred: WasmAdmissionPolicy {:?} failed: {e}",
            b.policy
        ))),
    }
}

/// Apply a verdict's refusal per the binding's actions, and keep its warnings and audit
/// annotations.
fn take(b: &Bound, v: &skiff_wasm_policy::Verdict, out: &mut Admitted) -> Result<(), ApiError> {
    out.warnings.extend(v.warnings.iter().cloned());
    for (k, val) in &v.audit_annotations {
        out.audit_annotations.push((format!("{}/{k}", b.policy), val.clone()));
    }
    if v.allowed {
        return Ok(());
    }
    let message = if v.message.is_empty() { "denied without explanation" } else { &v.message };
    if b.warn {
        out.warnings.push(format!(
            "Validation failed for WasmAdmissionPolicy '{}' with binding '{}': {message}",
            b.policy, b.binding
        ));
    }
    if b.audit {
        out.audit_annotations.push((
            "policy.skiff.dev/validation_failure".into(),
            json!([{"message": message, "policy": b.policy, "binding": b.binding}]).to_string(),
        ));
    }
    if b.deny {
        let reason = super::webhooks::reason_of_code(v.code);
        return Err(ApiError::new(
            v.code,
            reason,
            format!(
                "admission policy {:?} (WasmAdmissionPolicy with binding {:?}) denied the request: {message}",
                b.policy, b.binding
            ),
        ));
    }
    Ok(())
}

/// Mutating policies, in order.
pub(super) async fn mutate(
    state: &State,
    req: &Request<'_>,
    obj: &mut Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let policies = matching(state, req, obj, true).await?;
    for b in policies {
        let request = request_json(req, obj);
        let Some(v) = run(state, &b, &request).await? else { continue };
        take(&b, &v, out)?;
        if let Some(patch) = &v.patch
            && req.operation != Operation::Delete
        {
            super::webhooks::apply_patch(obj, patch).map_err(|why| {
                ApiError::internal(format!(
                    "Internal error occurred: WasmAdmissionPolicy {:?} answered a patch that cannot be applied: {why}",
                    b.policy
                ))
            })?;
            out.mutated = true;
        }
    }
    Ok(())
}

/// Validating policies, all at once; the first refusal (in policy order) wins.
pub(super) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let policies = matching(state, req, obj, false).await?;
    if policies.is_empty() {
        return Ok(());
    }
    let request = request_json(req, obj);
    let results = futures::future::join_all(policies.iter().map(|b| run(state, b, &request))).await;
    let mut refusal = None;
    for (b, result) in policies.iter().zip(results) {
        match result {
            Err(e) => {
                refusal.get_or_insert(e);
            }
            Ok(None) => {}
            Ok(Some(v)) => {
                if let Err(e) = take(b, &v, out) {
                    refusal.get_or_insert(e);
                }
            }
        }
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
