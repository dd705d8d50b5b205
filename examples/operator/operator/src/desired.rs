//! What should exist for a `StaticSite`, as pure functions the reconciler applies: the
//! ConfigMap `<name>-content`, the Deployment `<name>` and the Service `<name>`, and the status
//! a Deployment's state means. Nothing here talks to the API (the counterpart of a Kubernetes
//! controller's "compute" step; the acting half is `reconcile.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::site::{MANAGER, MAX_REPLICAS, READY, StaticSite, StaticSiteSpec, StaticSiteStatus};

/// Label naming the site a child belongs to (and the pods its Service selects).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label marking the children this operator manages (its watches select on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Pod template annotation carrying a hash of the files: new content rolls the pods.
pub const CONTENT_HASH_ANNOTATION: &str = "web.skiff.dev/content-hash";
/// Where the site-server container finds the files (a preopened directory in a Wasm pod).
pub const CONTENT_PATH: &str = "/site";
/// The site-server's port.
pub const HTTP_PORT: i32 = 8080;
/// The site-server image when `SITE_IMAGE` is not set.
pub const DEFAULT_SITE_IMAGE: &str = "site-server:latest";

/// Why a `StaticSite` cannot be made into children.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// The object lacks what every stored object has (a namespace, a uid): permanent.
    #[error("the StaticSite has no {0}")]
    MissingMetadata(&'static str),
    /// The spec breaks a rule the schema cannot state: permanent until the spec changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

/// The three children of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

/// A child's kind; its name follows from the site's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    Deployment,
    Service,
    ConfigMap,
}

impl ChildKind {
    /// Every kind, in the order the children are deleted (the pods' owner first).
    pub const ALL: [ChildKind; 3] =
        [ChildKind::Deployment, ChildKind::Service, ChildKind::ConfigMap];

    /// The child's name for site `site`.
    pub fn name(self, site: &str) -> String {
        match self {
            ChildKind::Deployment | ChildKind::Service => site.to_string(),
            ChildKind::ConfigMap => config_map_name(site),
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::ConfigMap => "ConfigMap",
        })
    }
}

/// The ConfigMap holding site `site`'s files.
pub fn config_map_name(site: &str) -> String {
    format!("{site}-content")
}

/// Where site `name` in `namespace` answers.
pub fn url(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc.cluster.local")
}

/// The labels of every child (and of the pods), which the Deployment and Service select on.
pub fn labels(site: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), site.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
    ])
}

/// The rules the CRD's schema does not enforce: file names a ConfigMap (and so the mounted
/// directory) can hold, an `index.html`, and the replica bounds (checked again in case the
/// schema was loosened).
pub fn validate(spec: &StaticSiteSpec) -> Result<(), DesiredError> {
    if !spec.files.contains_key("index.html") {
        return Err(DesiredError::InvalidSpec("files must contain index.html".into()));
    }
    for name in spec.files.keys() {
        let valid_chars =
            name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        // `..`-prefixed names are the kubelet's own entries in a ConfigMap volume.
        if name.is_empty()
            || name.len() > 253
            || !valid_chars
            || name == "."
            || name.starts_with("..")
        {
            return Err(DesiredError::InvalidSpec(format!(
                "file name {name:?} must be 1-253 letters, digits, '-', '_' or '.' and not start with '..'"
            )));
        }
    }
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(DesiredError::InvalidSpec(format!(
            "replicas {} is not within 0..={MAX_REPLICAS}",
            spec.replicas
        )));
    }
    Ok(())
}

/// The reference every child carries to its site (`controller: true`). It blocks the site's
/// foreground deletion until the child is gone (which is why the operator may update
/// `staticsites/finalizers`).
pub fn owner_reference(site: &StaticSite) -> Result<OwnerReference, DesiredError> {
    if site.metadata.uid.is_none() {
        return Err(DesiredError::MissingMetadata("uid"));
    }
    let owner = site.controller_owner_ref(&()).ok_or(DesiredError::MissingMetadata("name"))?;
    Ok(OwnerReference { block_owner_deletion: Some(true), ..owner })
}

/// The children site `site` should have, its pods running `image`.
pub fn children(site: &StaticSite, image: &str) -> Result<Children, DesiredError> {
    let name = site.name_any();
    let namespace = site.namespace().ok_or(DesiredError::MissingMetadata("namespace"))?;
    let owner = owner_reference(site)?;
    let labels = labels(&name);
    let meta = |child: String| ObjectMeta {
        name: Some(child),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };

    let config_map = ConfigMap {
        metadata: meta(config_map_name(&name)),
        data: Some(site.spec.files.clone()),
        ..ConfigMap::default()
    };

    let container = Container {
        name: "site-server".into(),
        image: Some(image.to_string()),
        // Wasm images are imported into the node's store, not pulled: `:latest` must not
        // mean Always.
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: "content".into(),
            mount_path: CONTENT_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(2),
            ..Probe::default()
        }),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(name.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(site.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        CONTENT_HASH_ANNOTATION.to_string(),
                        content_hash(&site.spec.files),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    runtime_class_name: Some("wasmtime".into()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "content".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: config_map_name(&name),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let service = Service {
        metadata: meta(name.clone()),
        spec: Some(ServiceSpec {
            selector: Some(labels.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    Ok(Children { config_map, deployment, service })
}

/// A stable hash of the files (FNV-1a over names and contents, each length-prefixed), hex.
/// It only has to change when the files do; it is no security boundary.
pub fn content_hash(files: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in (bytes.len() as u64).to_be_bytes().iter().chain(bytes) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, content) in files {
        feed(name.as_bytes());
        feed(content.as_bytes());
    }
    format!("{hash:016x}")
}

/// The status of `site` when its Deployment reports `deployment` (`None`: not there yet).
/// Ready when every wanted pod is ready (`readyReplicas == replicas > 0`) or none is wanted.
pub fn status(
    site: &StaticSite,
    deployment: Option<&DeploymentStatus>,
    now: &Time,
) -> StaticSiteStatus {
    let wanted = site.spec.replicas;
    let ready = deployment.and_then(|d| d.ready_replicas).unwrap_or(0);
    let (is_ready, reason, message) = if wanted == 0 {
        (true, "ScaledToZero", "no replicas are wanted".to_string())
    } else if ready == wanted {
        (true, "AllReplicasReady", format!("{ready}/{wanted} replicas ready"))
    } else {
        (false, "ReplicasNotReady", format!("{ready}/{wanted} replicas ready"))
    };
    with_ready(site, ready, is_ready, reason, message, now)
}

/// The status of `site` when its spec cannot be served (`Ready` False, `InvalidSpec`); what
/// runs keeps running.
pub fn invalid_status(site: &StaticSite, error: &DesiredError, now: &Time) -> StaticSiteStatus {
    let ready = site.status.as_ref().map_or(0, |s| s.ready_replicas);
    with_ready(site, ready, false, "InvalidSpec", error.to_string(), now)
}

fn with_ready(
    site: &StaticSite,
    ready_replicas: i32,
    is_ready: bool,
    reason: &str,
    message: String,
    now: &Time,
) -> StaticSiteStatus {
    let previous = site.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = site.metadata.generation;
    let condition = ready_condition(previous, is_ready, reason, message, generation, now);
    // Other writers' conditions stay; ours replaces its type.
    let mut conditions: Vec<Condition> =
        previous.iter().filter(|c| c.type_ != READY).cloned().collect();
    conditions.push(condition);
    StaticSiteStatus {
        ready_replicas,
        url: site.namespace().map(|ns| url(&site.name_any(), &ns)),
        observed_generation: generation,
        conditions,
    }
}

/// The `Ready` condition: its `lastTransitionTime` moves only when its status changes, so an
/// unchanged site gets an unchanged status (and no write).
fn ready_condition(
    previous: &[Condition],
    is_ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if is_ready { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == READY && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests;
