//! `ValidatingAdmissionPolicy` (admissionregistration.k8s.io/v1) and
//! `MutatingAdmissionPolicy` (v1beta1), as kube-apiserver's plugins: each policy with each of
//! its bindings (and each of the binding's params) is evaluated in CEL, in this process, with
//! no webhook. The CEL environment and the policies' semantics are
//! `skiff_admission::{cel, policy}`; this module keeps the compiled policies (compiled once
//! per change of the policies or bindings), finds params in the watch caches and answers
//! `authorizer` checks with the api server's own authorizers.

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_admission::cel::{Authorizer, AuthzCheck};
use skiff_admission::policy::{self, CompiledPolicy, PolicyRequest};
use skiff_auth::UserInfo;

use super::{Admitted, Operation, Request};
use crate::State;
use crate::errors::ApiError;

const GROUP: &str = "admissionregistration.k8s.io";

/// One policy with one of its bindings, and their match rules parsed.
struct Entry {
    policy: Arc<CompiledPolicy>,
    matcher: policy::Matcher,
    binding: Value,
}

/// The compiled policies of both kinds, each with its bindings, per change of either.
#[derive(Default)]
pub struct AdmissionPolicies {
    validating: super::Derived<Vec<Entry>>,
    mutating: super::Derived<Vec<Entry>>,
}

/// Every (policy, binding) pair of one kind, compiled once per change.
async fn entries(state: &State, mutating: bool) -> Result<Arc<Vec<Entry>>, ApiError> {
    let (policies, bindings) = if mutating {
        ("mutatingadmissionpolicies", "mutatingadmissionpolicybindings")
    } else {
        ("validatingadmissionpolicies", "validatingadmissionpolicybindings")
    };
    let kept = if mutating {
        &state.admission_policies.mutating
    } else {
        &state.admission_policies.validating
    };
    let generations = kept.generations(state, GROUP, &[policies, bindings]);
    if let Some(all) = kept.get(&generations) {
        return Ok(all);
    }
    let bound = super::list(state, GROUP, bindings, None, false).await?;
    let mut all = Vec::new();
    if !bound.is_empty() {
        let mut compiled: Vec<(String, Arc<CompiledPolicy>, Value)> = Vec::new();
        for p in super::list(state, GROUP, policies, None, false).await? {
            let name = p.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            let c = if mutating {
                policy::compile_mutating(&p.value)
            } else {
                policy::compile_validating(&p.value)
            };
            compiled.push((name.to_string(), Arc::new(c), p.value));
        }
        for b in bound {
            let wanted = b.value.pointer("/spec/policyName").and_then(Value::as_str).unwrap_or("");
            if let Some((_, c, json)) = compiled.iter().find(|(n, _, _)| n == wanted) {
                let matcher = policy::Matcher::new(json, &b.value);
                all.push(Entry { policy: c.clone(), matcher, binding: b.value });
            }
        }
    }
    let key = |e: &Entry| {
        let binding = e.binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        (e.policy.name.clone(), binding.to_string())
    };
    all.sort_by_key(key);
    Ok(kept.keep(generations, all))
}

/// `authorizer` checks in CEL, answered by the api server's authorizers for the requester (or
/// the service account an expression names).
pub(super) struct ApiAuthorizer<'a> {
    state: &'a State,
    user: Arc<UserInfo>,
}

impl<'a> ApiAuthorizer<'a> {
    pub(super) fn new(state: &'a State, user: Arc<UserInfo>) -> Self {
        ApiAuthorizer { state, user }
    }
}

impl Authorizer for ApiAuthorizer<'_> {
    fn allowed(&self, check: &AuthzCheck) -> (bool, String) {
        let user = match &check.user {
            // `authorizer.serviceAccount(ns, name)`: the account with its groups.
            Some(name) => {
                let probe = UserInfo { name: name.clone(), ..Default::default() };
                match probe.service_account() {
                    Some((ns, sa)) => UserInfo::for_service_account(ns, sa),
                    None => UserInfo::new(name.clone(), &[]),
                }
            }
            None => (*self.user).clone(),
        };
        let attrs = match &check.path {
            Some(path) => skiff_auth::Attributes {
                verb: check.verb.clone(),
                resource_request: false,
                path: path.clone(),
                ..Default::default()
            },
            None => skiff_auth::Attributes {
                verb: check.verb.clone(),
                resource_request: true,
                api_group: check.group.clone(),
                namespace: check.namespace.clone(),
                resource: check.resource.clone(),
                subresource: check.subresource.clone(),
                name: check.name.clone(),
                ..Default::default()
            },
        };
        let d = crate::authz::authorize(self.state, &user, &attrs);
        (d.is_allowed(), d.reason().to_string())
    }
}

/// The params a binding names, for the request: `Ok(vec![None])` when the policy takes none;
/// an empty list when none were found and the binding says to allow; `Err` a configuration
/// error.
async fn params(state: &State, e: &Entry, namespace: &str) -> Result<Vec<Option<Value>>, String> {
    let Some((api_version, kind)) = &e.policy.param_kind else { return Ok(vec![None]) };
    let Some(r) = policy::param_ref(&e.binding) else { return Ok(vec![None]) };
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let res = state
        .registry
        .by_kind(group, kind)
        .ok_or_else(|| format!("paramKind {api_version}, Kind={kind} is not served"))?;
    let ns = r.params_namespace(namespace, res.namespaced)?;
    let found: Vec<Value> = match &r.name {
        Some(name) => {
            let key = match &ns {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            super::read(state, res.group, res.plural, &key)
                .await
                .map_err(|e| e.message)?
                .into_iter()
                .collect()
        }
        None => {
            let all = super::list(state, res.group, res.plural, ns.as_deref(), false)
                .await
                .map_err(|e| e.message)?;
            let selector = r.selector.clone().unwrap_or_else(|| json!({}));
            all.into_iter()
                .map(|p| p.value)
                .filter(|p| {
                    skiff_helpers::labels::json_selector_matches(
                        &selector,
                        p.pointer("/metadata/labels"),
                    )
                })
                .collect()
        }
    };
    if found.is_empty() {
        r.when_not_found()?;
    }
    Ok(found.into_iter().map(Some).collect())
}

/// The request as policies see it; `namespace` is the request's Namespace object.
fn policy_request<'a>(
    req: &'a Request<'_>,
    obj: &'a Value,
    user: &'a Value,
    namespace: Option<&'a Value>,
) -> PolicyRequest<'a> {
    let (object, old_object) = match req.operation {
        Operation::Delete => (None, Some(req.old.unwrap_or(obj))),
        _ => (Some(obj), req.old),
    };
    PolicyRequest {
        operation: req.operation.as_str(),
        group: req.res.group,
        version: req.res.version,
        resource: req.res.plural,
        subresource: req.subresource,
        kind: req.res.kind,
        namespace: req.namespace,
        name: req.name,
        namespaced: req.res.namespaced,
        user_info: Some(user),
        dry_run: req.dry_run,
        object,
        old_object,
        namespace_object: namespace,
        options: None,
    }
}

async fn namespace_object(state: &State, req: &Request<'_>) -> Result<Option<Value>, ApiError> {
    if req.namespace.is_empty() {
        return Ok(None);
    }
    super::read(state, "", "namespaces", req.namespace).await
}

/// A denial as the client sees it.
fn denial(code: u16, reason: &str, message: String) -> ApiError {
    ApiError::new(code, super::webhooks::static_reason(reason), message)
}

/// ValidatingAdmissionPolicies: every matching (policy, binding, params) in turn; the first
/// denial wins, warnings and audit annotations of all are kept.
pub(super) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    if req.res.group == GROUP {
        return Ok(());
    }
    let all = entries(state, false).await?;
    if all.is_empty() {
        return Ok(());
    }
    let ns = namespace_object(state, req).await?;
    let user_info = req.user();
    let user = serde_json::to_value(&*user_info).unwrap_or(Value::Null);
    let pr = policy_request(req, obj, &user, ns.as_ref());
    // The `request` and `namespaceObject` variables, built once for every policy.
    let prepared = pr.prepare();
    let authorizer = ApiAuthorizer { state, user: user_info.clone() };
    let mut first_denial = None;
    for e in all.iter() {
        if !e.matcher.matches(&pr) {
            continue;
        }
        let outcomes = match params(state, e, req.namespace).await {
            Ok(list) => list
                .iter()
                .map(|p| {
                    let authz: &dyn Authorizer = &authorizer;
                    policy::validate_prepared(
                        &e.policy,
                        &e.binding,
                        p.as_ref(),
                        &pr,
                        &prepared,
                        Some(authz),
                    )
                })
                .collect(),
            Err(why) => vec![policy::configuration_error(&e.policy, Some(&e.binding), &why)],
        };
        for o in outcomes {
            out.warnings.extend(o.warnings);
            out.audit_annotations.extend(o.audit_annotations);
            if let Some((code, reason, message)) = o.denied {
                first_denial.get_or_insert_with(|| denial(code, &reason, message));
            }
        }
    }
    // Every binding is evaluated (their warnings and audit annotations all count); the
    // first denial answers.
    match first_denial {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// MutatingAdmissionPolicies, in order, each seeing the last one's changes.
pub(super) async fn mutate(
    state: &State,
    req: &Request<'_>,
    obj: &mut Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    if req.res.group == GROUP || req.operation == Operation::Delete {
        return Ok(());
    }
    let all = entries(state, true).await?;
    if all.is_empty() {
        return Ok(());
    }
    let ns = namespace_object(state, req).await?;
    let user = serde_json::to_value(&*req.user()).unwrap_or(Value::Null);
    for e in all.iter() {
        let current = obj.clone();
        let pr = policy_request(req, &current, &user, ns.as_ref());
        if !e.matcher.matches(&pr) {
            continue;
        }
        let list = match params(state, e, req.namespace).await {
            Ok(list) => list,
            Err(why) => {
                match policy::mutation_configuration_error(&e.policy, Some(&e.binding), &why) {
                    Ok(_) => continue,
                    Err(message) => return Err(denial(403, "Forbidden", message)),
                }
            }
        };
        for p in &list {
            let latest = obj.clone();
            let pr = policy_request(req, &latest, &user, ns.as_ref());
            match policy::mutate(&e.policy, &e.binding, p.as_ref(), &pr, obj) {
                Ok(changed) => out.mutated |= changed,
                Err(message) => return Err(denial(403, "Forbidden", message)),
            }
        }
    }
    Ok(())
}

/// A policy's `status` as written with it: the generation seen and the type checking of
/// its expressions (kube's type-checking controller writes the same a moment later).
pub fn stamp_status(policy: &mut Value) {
    let checking = policy::type_checking(policy, &|_, _| None);
    let generation = policy.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    policy["status"] = json!({"observedGeneration": generation, "typeChecking": checking});
}
