//! Type checks of built-in kinds against their real schema (the k8s-openapi structs): a
//! wrong type is a 400, and fields the schema does not know are reported for
//! `fieldValidation`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::ApiError;

fn roundtrip<T: DeserializeOwned + Serialize>(kind: &str, obj: &Value) -> Result<Value, ApiError> {
    let typed: T = T::deserialize(obj)
        .map_err(|e| ApiError::bad_request(format!("{kind} in version is invalid: {e}")))?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Paths of fields in `obj` that the kind's schema does not have. Unknown kinds have none.
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2,
        batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    let known = match (api_version, kind) {
        ("v1", "Pod") => roundtrip::<core::Pod>(kind, obj)?,
        ("v1", "Namespace") => roundtrip::<core::Namespace>(kind, obj)?,
        ("v1", "Node") => roundtrip::<core::Node>(kind, obj)?,
        ("v1", "Event") => roundtrip::<core::Event>(kind, obj)?,
        ("v1", "Service") => roundtrip::<core::Service>(kind, obj)?,
        ("v1", "Endpoints") => roundtrip::<core::Endpoints>(kind, obj)?,
        ("v1", "ConfigMap") => roundtrip::<core::ConfigMap>(kind, obj)?,
        ("v1", "Secret") => roundtrip::<core::Secret>(kind, obj)?,
        ("v1", "ServiceAccount") => roundtrip::<core::ServiceAccount>(kind, obj)?,
        ("v1", "PersistentVolume") => roundtrip::<core::PersistentVolume>(kind, obj)?,
        ("v1", "PersistentVolumeClaim") => roundtrip::<core::PersistentVolumeClaim>(kind, obj)?,
        ("v1", "LimitRange") => roundtrip::<core::LimitRange>(kind, obj)?,
        ("v1", "ResourceQuota") => roundtrip::<core::ResourceQuota>(kind, obj)?,
        ("v1", "ReplicationController") => roundtrip::<core::ReplicationController>(kind, obj)?,
        ("apps/v1", "Deployment") => roundtrip::<apps::Deployment>(kind, obj)?,
        ("apps/v1", "ReplicaSet") => roundtrip::<apps::ReplicaSet>(kind, obj)?,
        ("apps/v1", "StatefulSet") => roundtrip::<apps::StatefulSet>(kind, obj)?,
        ("apps/v1", "DaemonSet") => roundtrip::<apps::DaemonSet>(kind, obj)?,
        ("apps/v1", "ControllerRevision") => roundtrip::<apps::ControllerRevision>(kind, obj)?,
        ("batch/v1", "Job") => roundtrip::<batch::Job>(kind, obj)?,
        ("batch/v1", "CronJob") => roundtrip::<batch::CronJob>(kind, obj)?,
        ("autoscaling/v1", "HorizontalPodAutoscaler") => {
            roundtrip::<autoscaling1::HorizontalPodAutoscaler>(kind, obj)?
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            roundtrip::<autoscaling2::HorizontalPodAutoscaler>(kind, obj)?
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            roundtrip::<networking::NetworkPolicy>(kind, obj)?
        }
        ("networking.k8s.io/v1", "Ingress") => roundtrip::<networking::Ingress>(kind, obj)?,
        ("networking.k8s.io/v1", "IngressClass") => {
            roundtrip::<networking::IngressClass>(kind, obj)?
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            roundtrip::<discovery::EndpointSlice>(kind, obj)?
        }
        ("coordination.k8s.io/v1", "Lease") => roundtrip::<coordination::Lease>(kind, obj)?,
        ("events.k8s.io/v1", "Event") => roundtrip::<events::Event>(kind, obj)?,
        ("node.k8s.io/v1", "RuntimeClass") => roundtrip::<node::RuntimeClass>(kind, obj)?,
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::Role>(kind, obj)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            roundtrip::<rbac::RoleBinding>(kind, obj)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            roundtrip::<rbac::ClusterRole>(kind, obj)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<rbac::ClusterRoleBinding>(kind, obj)?
        }
        ("storage.k8s.io/v1", "StorageClass") => roundtrip::<storage::StorageClass>(kind, obj)?,
        ("policy/v1", "PodDisruptionBudget") => {
            roundtrip::<policy::PodDisruptionBudget>(kind, obj)?
        }
        ("policy/v1", "Eviction") => roundtrip::<policy::Eviction>(kind, obj)?,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            roundtrip::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(kind, obj)?
        }
        ("authorization.k8s.io/v1", "SubjectAccessReview") => {
            roundtrip::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(kind, obj)?
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            roundtrip::<scheduling::PriorityClass>(kind, obj)?
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            roundtrip::<apiextensions::CustomResourceDefinition>(kind, obj)?
        }
        _ => return Ok(Vec::new()),
    };
    let mut unknown = Vec::new();
    diff(obj, &known, &mut String::new(), &mut unknown);
    Ok(unknown)
}

fn diff(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => diff(v, kv, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                diff(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
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
    fn check_should_reject_wrong_types() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert_eq!(check("v1", "Pod", &pod).unwrap_err().code, 400);
    }
}
