//! `PodSecurity`, as kube-apiserver's built-in Pod Security Admission: each namespace's
//! `pod-security.kubernetes.io/*` labels choose the level (and version) that pods must meet
//! (`enforce`), that earn a warning (`warn`) or an audit annotation (`audit`); workload
//! templates are warned and audited, never refused. The checks are
//! `skiff_admission::podsecurity`.

use serde_json::{Map, Value};
use skiff_admission::podsecurity;

use super::{Admitted, Config, Operation, Request};
use crate::State;
use crate::errors::ApiError;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// Kinds whose pods (or pod templates) are checked.
fn checked(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Pod" | "ReplicationController" | "PodTemplate")
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job" | "CronJob")
    )
}

pub(super) async fn admit(
    state: &State,
    config: &Config,
    req: &Request<'_>,
    obj: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    if req.operation == Operation::Delete {
        return Ok(());
    }
    let psa = &config.pod_security;
    if req.res.group.is_empty() && req.res.kind == "Namespace" && req.subresource.is_empty() {
        return admit_namespace(state, psa, req, obj, out).await;
    }
    // Only a pod's own writes, its ephemeral containers and its resize are evaluated: the
    // status writes of the kubelet and the like go by without reading the namespace.
    let evaluated_subresource = match req.subresource {
        "" => true,
        "ephemeralcontainers" | "resize" => req.res.kind == "Pod",
        _ => false,
    };
    if !evaluated_subresource || !checked(req.res.group, req.res.kind) || req.namespace.is_empty() {
        return Ok(());
    }
    let labels = match super::read(state, "", "namespaces", req.namespace).await? {
        Some(ns) => ns.pointer("/metadata/labels").and_then(Value::as_object).cloned(),
        None => None,
    }
    .unwrap_or_default();
    // The common case costs nothing: no labels of ours and privileged defaults.
    if defaults_privileged(psa) && !labels.keys().any(|k| k.starts_with(LABEL_PREFIX)) {
        return Ok(());
    }
    let user = req.user();
    let request = podsecurity::Request {
        operation: req.operation.as_str(),
        group: req.res.group,
        kind: req.res.kind,
        subresource: req.subresource,
        namespace: req.namespace,
        username: &user.name,
        object: obj,
        old_object: req.old,
    };
    let outcome = podsecurity::admit(psa, &labels, &request);
    out.warnings.extend(outcome.warnings);
    out.audit_annotations.extend(outcome.audit_annotations);
    match outcome.denied {
        Some(why) => Err(super::forbidden(req.res, req.name, &why)),
        None => Ok(()),
    }
}

/// Whether a namespace without labels of ours is left alone (every mode's default is
/// `privileged`).
fn defaults_privileged(psa: &podsecurity::Config) -> bool {
    let d = &psa.defaults;
    [&d.enforce, &d.audit, &d.warn].iter().all(|lv| lv.level == podsecurity::Level::Privileged)
}

/// A Namespace's labels must name real levels and versions; when its enforce level changes,
/// the pods already there that would not be admitted are named in warnings.
async fn admit_namespace(
    state: &State,
    psa: &podsecurity::Config,
    req: &Request<'_>,
    ns: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let labels_of = |o: &Value| -> Map<String, Value> {
        o.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
    };
    let labels = labels_of(ns);
    let old_labels = req.old.map(labels_of);
    let ours = |l: &Map<String, Value>| l.keys().any(|k| k.starts_with(LABEL_PREFIX));
    if !ours(&labels) && !old_labels.as_ref().is_some_and(ours) {
        return Ok(());
    }
    let errors = podsecurity::namespace_label_errors(psa, &labels, old_labels.as_ref());
    if !errors.is_empty() {
        let causes = errors.iter().map(|e| (e.field(), e.body())).collect();
        return Err(ApiError::invalid("Namespace", req.name, causes));
    }
    if req.operation != Operation::Update {
        return Ok(());
    }
    let pods = super::list(state, "", "pods", Some(req.name), false).await?;
    let pods: Vec<Value> = pods.into_iter().map(|p| p.value).collect();
    out.warnings.extend(podsecurity::namespace_warnings(
        psa,
        req.name,
        &labels,
        old_labels.as_ref(),
        &pods,
    ));
    Ok(())
}
