//! The `scale` subresource of the replicated kinds, the `eviction` subresource of pods and the
//! `proxy` subresource of nodes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::list_prefix;
use skiff_store::StoreError;

use crate::State;
use crate::errors::ApiError;
use crate::handlers::{self, MAX_RETRIES, Target, decode, json_response, parse_body};
use crate::kinds::{selector_matches, selector_string};
use crate::objects::{self, name_of};
use crate::patch::{PatchType, apply_patch};

/// The `autoscaling/v1` Scale of a replicated object.
fn scale_of(obj: &Value) -> Value {
    let selector = match obj.pointer("/spec/selector") {
        // ReplicationControllers select with a plain map.
        Some(Value::Object(m))
            if !m.contains_key("matchLabels") && !m.contains_key("matchExpressions") =>
        {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        }
        Some(sel) => selector_string(sel),
        None => String::new(),
    };
    let replicas = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    scale_value(obj, replicas("/spec/replicas"), replicas("/status/replicas"), &selector)
}

/// An `autoscaling/v1` Scale of `obj` (its metadata) with these replicas and selector.
pub(crate) fn scale_value(obj: &Value, spec: i64, status: i64, selector: &str) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    })
}

/// NodeRestriction for scale from zero: RBAC lets nodes (`system:skiff:activator`) write
/// `deployments/scale`, and this narrows it to what a node's activator does: a Deployment at 0
/// replicas, named by a Service of its namespace that opts in to scale to zero, to 1.
fn node_may_scale(
    state: &Arc<State>,
    target: &Target,
    old: &Value,
    replicas: i64,
) -> Result<(), ApiError> {
    let Some(user) = crate::authn::current_user() else { return Ok(()) };
    let Some(node) = user.node_name() else { return Ok(()) };
    let name = target.name.as_deref().unwrap_or_default();
    let ns = target.namespace.as_deref().unwrap_or_default();
    let current = old.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let named = target.resource.plural == "deployments"
        && state.registry.by_plural("", "services").is_some_and(|svcs| {
            state
                .caches
                .get(svcs)
                .snapshot(
                    &skiff_api::list_prefix(svcs, Some(ns)),
                    &crate::selectors::LabelSelector::default(),
                    &crate::selectors::FieldSelector::default(),
                )
                .is_some_and(|(items, _)| {
                    items.iter().any(|svc| {
                        svc.value()
                            .pointer(&format!(
                                "/metadata/annotations/{}",
                                skiff_helpers::scaletozero::DEPLOYMENT_ANNOTATION
                                    .replace('/', "~1")
                            ))
                            .and_then(Value::as_str)
                            == Some(name)
                    })
                })
        });
    if named && current == 0 && replicas == 1 {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "Forbidden",
        format!(
            "node \"{node}\" may only scale a Deployment that a Service of its namespace names for scale to zero, from 0 to 1 replica (deployments/scale {ns}/{name}: {current} to {replicas})"
        ),
    ))
}

/// GET, PUT and PATCH of `{resource}/{name}/scale`.
pub async fn scale(
    state: &Arc<State>,
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let res = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let key = target.key().unwrap_or_default();
    let dry_run = handlers::is_dry_run(q);
    // A custom resource reads and writes where its CRD's `subresources.scale` says.
    let paths = crate::crds::CustomVersion::of(res).and_then(|cv| cv.scale.as_ref());
    let scale_of = |obj: &Value| match paths {
        Some(p) => crate::crds::scale_of(p, obj),
        None => scale_of(obj),
    };
    for _ in 0..MAX_RETRIES {
        let prev = handlers::read_current(state, res.plural, &key, &name).await?;
        let old = decode(&prev)?;
        let current = scale_of(&old);
        let wanted = match method.as_str() {
            "GET" => return Ok(json_response(StatusCode::OK, &current)),
            "PUT" => parse_body(headers, body)?,
            "PATCH" => {
                let ct =
                    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let pt = PatchType::from_content_type(ct)
                    .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
                let mut s = current.clone();
                apply_patch(&mut s, pt, body)?;
                s
            }
            m => {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({m})"
                )));
            }
        };
        if let Some(rv) = objects::resource_version_of(&wanted)
            && rv != prev.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                res.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let replicas = match wanted.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => {
                v.as_i64().filter(|n| *n >= 0 && *n <= i64::from(i32::MAX)).ok_or_else(|| {
                    ApiError::invalid(
                        "Scale",
                        &name,
                        vec![(
                            "spec.replicas".into(),
                            format!("Invalid value: {v}: must be greater than or equal to 0"),
                        )],
                    )
                })?
            }
        };
        node_may_scale(state, target, &old, replicas)?;
        let mut new = old.clone();
        match paths {
            Some(p) => crate::crds::set_at(&mut new, &p.spec_replicas, json!(replicas)),
            None => new["spec"]["replicas"] = json!(replicas),
        }
        objects::prepare_update(&mut new, &old, res, None)?;
        if dry_run {
            return Ok(json_response(StatusCode::OK, &scale_of(&new)));
        }
        match handlers::write(state, res, &key, &prev, &new, Vec::new()).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
            Ok(obj) => return Ok(json_response(StatusCode::OK, &scale_of(&obj))),
        }
    }
    Err(handlers::too_many_writers(res.plural, &name))
}

/// `POST pods/{name}/eviction`: delete the pod unless a PodDisruptionBudget forbids it.
pub async fn evict(
    state: &Arc<State>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let ns = target.namespace.clone().unwrap_or_default();
    let eviction = parse_body(headers, body)?;
    if !name_of(&eviction).is_empty() && name_of(&eviction) != name {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object ({})",
            name_of(&eviction)
        )));
    }
    let pod = handlers::get(state, target).await?;
    // Pods that are finished, not started or already going are evicted without a budget.
    let ignores_budgets =
        matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending")
        ) || pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    let dry_run = handlers::is_dry_run(q)
        || eviction
            .pointer("/deleteOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    // A budget written by someone else meanwhile is read again, as Kubernetes retries.
    let mut counted = ignores_budgets;
    for _ in 0..MAX_RETRIES {
        if counted {
            break;
        }
        counted = check_disruption_budgets(state, &ns, &pod, dry_run).await?;
    }
    if !counted {
        return Err(ApiError::new(
            429,
            "TooManyRequests",
            "the disruption budget changed during the eviction; try again",
        ));
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let mut delete_headers = HeaderMap::new();
    delete_headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let pod_target = Target { subresource: None, ..target.clone() };
    let body = serde_json::to_vec(&options).unwrap_or_default();
    handlers::delete(state, &pod_target, &delete_headers, &body, q).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Refuse an eviction that a matching PodDisruptionBudget does not allow, and count it
/// against the budget when it is allowed (`disruptionsAllowed` decremented and the pod
/// recorded in `disruptedPods`, written over the budget's resourceVersion; the disruption
/// controller reconciles both). `false` means the budget changed meanwhile: read it again.
async fn check_disruption_budgets(
    state: &Arc<State>,
    ns: &str,
    pod: &Value,
    dry_run: bool,
) -> Result<bool, ApiError> {
    let Some(pdbs) = state.registry.lookup("policy", "v1", "poddisruptionbudgets").cloned() else {
        return Ok(true);
    };
    let page = state
        .store
        .list(&list_prefix(&pdbs, Some(ns)))
        .await
        .map_err(|e| ApiError::from_store(e, pdbs.plural, ""))?;
    let labels = pod.pointer("/metadata/labels");
    let mut matching = Vec::new();
    for kv in &page.items {
        let pdb = decode(kv)?;
        let selects = pdb.pointer("/spec/selector").is_some_and(|sel| {
            let empty = sel.as_object().is_none_or(|m| m.is_empty());
            !empty && selector_matches(sel, labels)
        });
        if selects {
            matching.push((kv.clone(), pdb));
        }
    }
    match matching.len() {
        0 => return Ok(true),
        1 => {}
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    }
    let (kv, mut pdb) = matching.remove(0);
    let status_of =
        |field: &str| pdb.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0);
    let too_many = |cause: String, message: &str| ApiError {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
        ..ApiError::new(429, "TooManyRequests", message)
    };
    // An unready pod may go while the budget is met without it (the default
    // `unhealthyPodEvictionPolicy: IfHealthyBudget`; `AlwaysAllow` lets it go regardless).
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    if !ready {
        let policy = pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str);
        let desired = status_of("desiredHealthy");
        if policy == Some("AlwaysAllow") || (status_of("currentHealthy") >= desired && desired > 0)
        {
            return Ok(true);
        }
    }
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if status_of("observedGeneration") < generation {
        return Err(too_many(
            format!(
                "The disruption budget {} is still being processed by the server.",
                name_of(&pdb)
            ),
            "Cannot evict pod as it would violate the pod's disruption budget.",
        ));
    }
    let allowed = status_of("disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::new(403, "Forbidden", "pdb disruptions allowed is negative"));
    }
    if pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() > 2000)
    {
        return Err(ApiError::new(
            403,
            "Forbidden",
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many(
            format!(
                "The disruption budget {} needs {} healthy pods and has {} currently",
                name_of(&pdb),
                status_of("desiredHealthy"),
                status_of("currentHealthy")
            ),
            "Cannot evict pod as it would violate the pod's disruption budget.",
        ));
    }
    if dry_run {
        return Ok(true);
    }
    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
    let pod_name = name_of(pod).to_string();
    if !pdb["status"].get("disruptedPods").is_some_and(Value::is_object) {
        pdb["status"]["disruptedPods"] = json!({});
    }
    pdb["status"]["disruptedPods"][pod_name] = json!(objects::now_rfc3339());
    match state
        .store
        .update(&kv.key, skiff_api::gojson::to_vec_stored(&pdb), Some(kv.mod_revision))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(ApiError::from_store(e, "poddisruptionbudgets", name_of(&pdb))),
    }
}

/// The kubelet endpoints of `node`: registered in this process, or reached over HTTPS.
pub async fn node_endpoints(
    state: &Arc<State>,
    node: &str,
) -> Result<Arc<dyn skiff_api::nodes::NodeEndpoints>, ApiError> {
    let endpoints = state
        .node_endpoints
        .read()
        .map_err(|_| ApiError::internal("node endpoint registry poisoned"))?
        .get(node)
        .cloned();
    if let Some(endpoints) = endpoints {
        return Ok(endpoints);
    }
    let target = handlers::parse_target(state, "", "v1", &["nodes", node])?;
    handlers::get(state, &target).await?;
    match state.remote_kubelet(node).await? {
        Some(remote) => Ok(remote),
        None => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "node {node:?} serves no kubelet API and has no endpoints registered with this api server"
            ),
        )),
    }
}

/// `nodes/{node}/proxy/{path}`: pass the request to the node's registered endpoints and its
/// answer back as is.
pub async fn node_proxy(
    state: &Arc<State>,
    method: &str,
    node: &str,
    path: &str,
    query: String,
) -> Result<Response, ApiError> {
    let endpoints = node_endpoints(state, node).await?;
    let request = skiff_api::nodes::NodeProxyRequest {
        method: method.to_string(),
        path: path.to_string(),
        query,
    };
    let resp = endpoints.proxy(request).await.map_err(|e| match e {
        skiff_api::nodes::NodeProxyError::NotFound(m) => ApiError::new(404, "NotFound", m),
        skiff_api::nodes::NodeProxyError::MethodNotAllowed(m) => ApiError::method_not_allowed(m),
        skiff_api::nodes::NodeProxyError::Internal(m) => ApiError::internal(m),
    })?;
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = if method == "HEAD" { axum::body::Body::empty() } else { resp.body.into() };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, resp.content_type)
        .body(body)
        .map_err(|e| ApiError::internal(format!("building the proxied answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_should_report_selector_and_replicas() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let rc =
            json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1, "selector": {"app": "x"}}});
        assert_eq!(scale_of(&rc)["status"]["selector"], "app=x");
    }
}
