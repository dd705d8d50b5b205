//! Type checks of built-in kinds against their real schema (the k8s-openapi structs): a
//! wrong type is a 400, and fields the schema does not know are reported for
//! `fieldValidation`, found while the object is decoded (as kube-apiserver's strict decoder
//! finds them) rather than by encoding it again and comparing.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::ApiError;

/// One step of a path into the checked object.
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_ignored::Path<'_>, out: &mut Vec<Step>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            steps(parent, out);
            out.push(Step::Index(*index));
        }
        Path::Map { parent, key } => {
            steps(parent, out);
            out.push(Step::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent, out),
    }
}

/// Decode `obj` as `T`; answer the paths (`spec.containers[0].x`) of the fields `T` does not
/// have, except those set to null.
fn unknown_fields<T: DeserializeOwned>(kind: &str, obj: &Value) -> Result<Vec<String>, ApiError> {
    let mut unknown = Vec::new();
    let decoded = serde_ignored::deserialize::<_, _, T>(obj, |path| {
        let mut path_steps = Vec::new();
        steps(&path, &mut path_steps);
        let mut value = Some(obj);
        let mut text = String::new();
        for step in &path_steps {
            match step {
                Step::Key(k) => {
                    value = value.and_then(|v| v.get(k));
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(k);
                }
                Step::Index(i) => {
                    value = value.and_then(|v| v.get(i));
                    text.push_str(&format!("[{i}]"));
                }
            }
        }
        if !value.is_some_and(Value::is_null) {
            unknown.push(text);
        }
    });
    match decoded {
        Ok(_) => Ok(unknown),
        Err(e) => Err(ApiError::bad_request(format!("{kind} in version is invalid: {e}"))),
    }
}

/// Paths of fields in `obj` that the kind's schema does not have. Unknown kinds have none.
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admissionregistration, apps::v1 as apps,
        autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    let unknown = match (api_version, kind) {
        ("v1", "Pod") => unknown_fields::<core::Pod>(kind, obj)?,
        ("v1", "Namespace") => unknown_fields::<core::Namespace>(kind, obj)?,
        ("v1", "Node") => unknown_fields::<core::Node>(kind, obj)?,
        ("v1", "Event") => unknown_fields::<core::Event>(kind, obj)?,
        ("v1", "Service") => unknown_fields::<core::Service>(kind, obj)?,
        ("v1", "Endpoints") => unknown_fields::<core::Endpoints>(kind, obj)?,
        ("v1", "ConfigMap") => unknown_fields::<core::ConfigMap>(kind, obj)?,
        ("v1", "Secret") => unknown_fields::<core::Secret>(kind, obj)?,
        ("v1", "ServiceAccount") => unknown_fields::<core::ServiceAccount>(kind, obj)?,
        ("v1", "PersistentVolume") => unknown_fields::<core::PersistentVolume>(kind, obj)?,
        ("v1", "PersistentVolumeClaim") => {
            unknown_fields::<core::PersistentVolumeClaim>(kind, obj)?
        }
        ("v1", "LimitRange") => unknown_fields::<core::LimitRange>(kind, obj)?,
        ("v1", "ResourceQuota") => unknown_fields::<core::ResourceQuota>(kind, obj)?,
        ("v1", "ReplicationController") => {
            unknown_fields::<core::ReplicationController>(kind, obj)?
        }
        ("apps/v1", "Deployment") => unknown_fields::<apps::Deployment>(kind, obj)?,
        ("apps/v1", "ReplicaSet") => unknown_fields::<apps::ReplicaSet>(kind, obj)?,
        ("apps/v1", "StatefulSet") => unknown_fields::<apps::StatefulSet>(kind, obj)?,
        ("apps/v1", "DaemonSet") => unknown_fields::<apps::DaemonSet>(kind, obj)?,
        ("apps/v1", "ControllerRevision") => unknown_fields::<apps::ControllerRevision>(kind, obj)?,
        ("batch/v1", "Job") => unknown_fields::<batch::Job>(kind, obj)?,
        ("batch/v1", "CronJob") => unknown_fields::<batch::CronJob>(kind, obj)?,
        ("autoscaling/v1", "HorizontalPodAutoscaler") => {
            unknown_fields::<autoscaling1::HorizontalPodAutoscaler>(kind, obj)?
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            unknown_fields::<autoscaling2::HorizontalPodAutoscaler>(kind, obj)?
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            unknown_fields::<networking::NetworkPolicy>(kind, obj)?
        }
        ("networking.k8s.io/v1", "Ingress") => unknown_fields::<networking::Ingress>(kind, obj)?,
        ("networking.k8s.io/v1", "IngressClass") => {
            unknown_fields::<networking::IngressClass>(kind, obj)?
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            unknown_fields::<discovery::EndpointSlice>(kind, obj)?
        }
        ("coordination.k8s.io/v1", "Lease") => unknown_fields::<coordination::Lease>(kind, obj)?,
        ("events.k8s.io/v1", "Event") => unknown_fields::<events::Event>(kind, obj)?,
        ("node.k8s.io/v1", "RuntimeClass") => unknown_fields::<node::RuntimeClass>(kind, obj)?,
        ("rbac.authorization.k8s.io/v1", "Role") => unknown_fields::<rbac::Role>(kind, obj)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            unknown_fields::<rbac::RoleBinding>(kind, obj)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            unknown_fields::<rbac::ClusterRole>(kind, obj)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            unknown_fields::<rbac::ClusterRoleBinding>(kind, obj)?
        }
        ("storage.k8s.io/v1", "StorageClass") => {
            unknown_fields::<storage::StorageClass>(kind, obj)?
        }
        ("policy/v1", "PodDisruptionBudget") => {
            unknown_fields::<policy::PodDisruptionBudget>(kind, obj)?
        }
        ("policy/v1", "Eviction") => unknown_fields::<policy::Eviction>(kind, obj)?,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => unknown_fields::<
            k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
        >(kind, obj)?,
        ("authorization.k8s.io/v1", "SubjectAccessReview") => {
            unknown_fields::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(kind, obj)?
        }
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            unknown_fields::<admissionregistration::MutatingWebhookConfiguration>(kind, obj)?
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            unknown_fields::<admissionregistration::ValidatingWebhookConfiguration>(kind, obj)?
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            unknown_fields::<admissionregistration::ValidatingAdmissionPolicy>(kind, obj)?
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            unknown_fields::<admissionregistration::ValidatingAdmissionPolicyBinding>(kind, obj)?
        }
        ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicy") => unknown_fields::<
            k8s_openapi::api::admissionregistration::v1beta1::MutatingAdmissionPolicy,
        >(kind, obj)?,
        ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicyBinding") => {
            unknown_fields::<
                k8s_openapi::api::admissionregistration::v1beta1::MutatingAdmissionPolicyBinding,
            >(kind, obj)?
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            unknown_fields::<scheduling::PriorityClass>(kind, obj)?
        }
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => unknown_fields::<
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        >(kind, obj)?,
        ("authentication.k8s.io/v1", "TokenReview") => {
            unknown_fields::<k8s_openapi::api::authentication::v1::TokenReview>(kind, obj)?
        }
        ("apiregistration.k8s.io/v1", "APIService") => unknown_fields::<
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        >(kind, obj)?,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            unknown_fields::<apiextensions::CustomResourceDefinition>(kind, obj)?
        }
        _ => Vec::new(),
    };
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_should_find_unknown_fields_with_paths() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Never"}], "bogus": 1}});
        let unknown = check("v1", "Pod", &pod).unwrap();
        assert_eq!(
            unknown,
            vec!["spec.bogus".to_string(), "spec.containers[0].imagePullPolicyy".to_string()]
        );
    }

    #[test]
    fn check_should_find_unknown_fields_below_optional_fields_and_skip_nulls() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "v1", "kind": "X",
                "name": "x", "uid": "u", "colour": "red"}]},
            "spec": {"securityContext": {"runAsUser": 1, "runAsUzer": 2},
                "containers": [{"name": "c"}, {"name": "d", "resources": {"limitz": {}}}],
                "gone": null}});
        assert_eq!(
            check("v1", "Pod", &pod).unwrap(),
            vec![
                "metadata.ownerReferences[0].colour".to_string(),
                "spec.containers[1].resources.limitz".to_string(),
                "spec.securityContext.runAsUzer".to_string(),
            ]
        );
    }

    #[test]
    fn check_should_reject_wrong_types() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert_eq!(check("v1", "Pod", &pod).unwrap_err().code, 400);
    }
}
