//! What the api server serves: one `ResourceInfo` per resource, as discovery reports it.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// One served resource of one group-version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core (legacy) group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Subresources served, e.g. `status`, `log`, `binding`.
    pub subresources: &'static [&'static str],
    /// Whether `metadata.generation` tracks spec changes for this kind.
    pub has_spec: bool,
    /// The (group, version) objects are stored as when it is not this one's: such a
    /// resource is a view of another, converted on every read and write.
    pub storage: Option<(&'static str, &'static str)>,
    /// Set for a custom resource, served from a CustomResourceDefinition (schema-checked,
    /// stored under its group, JSON only): what the api server attaches to it.
    pub custom: Option<Attachment>,
}

/// What the api server attaches to a custom resource (its schema, rules and columns),
/// opaque here; equal only to itself.
#[derive(Clone)]
pub struct Attachment(pub Arc<dyn Any + Send + Sync>);

impl PartialEq for Attachment {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Attachment {}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attachment")
    }
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    /// Whether objects of this resource are kept (reviews and bindings are only answered,
    /// component statuses only read).
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"watch")
    }

    /// Whether this is a custom resource (see [`ResourceInfo::custom`]).
    pub fn is_custom(&self) -> bool {
        self.custom.is_some()
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     short: $short:expr, categories: $cats:expr, sub: $sub:expr, spec: $spec:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            list_kind: concat!($kind, "List"),
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cats,
            verbs: ALL_VERBS,
            subresources: $sub,
            has_spec: $spec,
            storage: None,
            custom: None,
        }
    };
}

/// The set of resources served, looked up by group + plural or by group + kind.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
    /// Index of `resources` by (group, version, plural).
    index: HashMap<(&'static str, &'static str, &'static str), usize>,
}

impl Registry {
    /// The built-in resources this version of Skiff serves.
    pub fn builtin() -> Self {
        const ALL: &[&str] = &["all"];
        const NONE: &[&str] = &[];
        const STATUS: &[&str] = &["status"];
        const STATUS_SCALE: &[&str] = &["status", "scale"];
        #[rustfmt::skip]
        let resources = vec![
            // core/v1
            resource!("", "v1", "Namespace", "namespaces", "namespace", false,
                short: &["ns"], categories: NONE, sub: &["status", "finalize"], spec: false),
            resource!("", "v1", "Node", "nodes", "node", false,
                short: &["no"], categories: NONE, sub: &["status", "proxy"], spec: false),
            resource!("", "v1", "Pod", "pods", "pod", true,
                short: &["po"], categories: ALL, sub: &["status", "log", "binding", "eviction", "exec", "attach", "portforward"], spec: false),
            resource!("", "v1", "Service", "services", "service", true,
                short: &["svc"], categories: ALL, sub: STATUS, spec: false),
            resource!("", "v1", "Endpoints", "endpoints", "endpoints", true,
                short: &["ep"], categories: NONE, sub: NONE, spec: false),
            resource!("", "v1", "ConfigMap", "configmaps", "configmap", true,
                short: &["cm"], categories: NONE, sub: NONE, spec: false),
            resource!("", "v1", "Secret", "secrets", "secret", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true,
                short: &["sa"], categories: NONE, sub: &["token"], spec: false),
            resource!("", "v1", "Event", "events", "event", true,
                short: &["ev"], categories: NONE, sub: NONE, spec: false),
            resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false,
                short: &["pv"], categories: NONE, sub: STATUS, spec: false),
            resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true,
                short: &["pvc"], categories: NONE, sub: STATUS, spec: false),
            resource!("", "v1", "LimitRange", "limitranges", "limitrange", true,
                short: &["limits"], categories: NONE, sub: NONE, spec: false),
            resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true,
                short: &["quota"], categories: NONE, sub: STATUS, spec: false),
            resource!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true,
                short: &["rc"], categories: ALL, sub: STATUS_SCALE, spec: true),
            resource!("", "v1", "PodTemplate", "podtemplates", "podtemplate", true,
                short: NONE, categories: NONE, sub: NONE, spec: true),
            // Binding is created only (it sets a pod's node); ComponentStatus is read only,
            // answered from the control plane's health.
            ResourceInfo {
                verbs: &["create"],
                ..resource!("", "v1", "Binding", "bindings", "binding", true,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["get", "list"],
                ..resource!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", false,
                    short: &["cs"], categories: NONE, sub: NONE, spec: false)
            },
            // apps/v1
            resource!("apps", "v1", "Deployment", "deployments", "deployment", true,
                short: &["deploy"], categories: ALL, sub: STATUS_SCALE, spec: true),
            resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true,
                short: &["rs"], categories: ALL, sub: STATUS_SCALE, spec: true),
            resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true,
                short: &["sts"], categories: ALL, sub: STATUS_SCALE, spec: true),
            resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true,
                short: &["ds"], categories: ALL, sub: STATUS, spec: true),
            resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            // batch/v1
            resource!("batch", "v1", "Job", "jobs", "job", true,
                short: NONE, categories: ALL, sub: STATUS, spec: true),
            resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true,
                short: &["cj"], categories: ALL, sub: STATUS, spec: true),
            // autoscaling: v2 is the storage (and preferred) version, v1 is converted.
            resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true,
                short: &["hpa"], categories: ALL, sub: STATUS, spec: true),
            ResourceInfo {
                storage: Some(("autoscaling", "v2")),
                ..resource!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true,
                    short: &["hpa"], categories: ALL, sub: STATUS, spec: true)
            },
            // networking.k8s.io/v1
            resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true,
                short: &["netpol"], categories: NONE, sub: NONE, spec: true),
            resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true,
                short: &["ing"], categories: NONE, sub: STATUS, spec: true),
            resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false,
                short: NONE, categories: NONE, sub: NONE, spec: true),
            resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            // events.k8s.io/v1 shares storage with core/v1 events.
            ResourceInfo {
                storage: Some(("", "v1")),
                ..resource!("events.k8s.io", "v1", "Event", "events", "event", true,
                    short: &["ev"], categories: NONE, sub: NONE, spec: false)
            },
            resource!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false,
                short: &["sc"], categories: NONE, sub: NONE, spec: false),
            resource!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", false,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", false,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", "csistoragecapacity", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", false,
                short: NONE, categories: NONE, sub: STATUS, spec: false),
            resource!("storage.k8s.io", "v1", "VolumeAttributesClass", "volumeattributesclasses", "volumeattributesclass", false,
                short: &["vac"], categories: NONE, sub: NONE, spec: false),
            resource!("networking.k8s.io", "v1", "IPAddress", "ipaddresses", "ipaddress", false,
                short: &["ip"], categories: NONE, sub: NONE, spec: false),
            resource!("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", "servicecidr", false,
                short: NONE, categories: NONE, sub: STATUS, spec: false),
            // resource.k8s.io/v1: dynamic resource allocation, kept as objects.
            resource!("resource.k8s.io", "v1", "DeviceClass", "deviceclasses", "deviceclass", false,
                short: NONE, categories: NONE, sub: NONE, spec: true),
            resource!("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims", "resourceclaim", true,
                short: NONE, categories: NONE, sub: STATUS, spec: false),
            resource!("resource.k8s.io", "v1", "ResourceClaimTemplate", "resourceclaimtemplates", "resourceclaimtemplate", true,
                short: NONE, categories: NONE, sub: NONE, spec: false),
            resource!("resource.k8s.io", "v1", "ResourceSlice", "resourceslices", "resourceslice", false,
                short: NONE, categories: NONE, sub: NONE, spec: true),
            // flowcontrol.apiserver.k8s.io/v1: API Priority and Fairness.
            resource!("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", false,
                short: NONE, categories: NONE, sub: STATUS, spec: true),
            resource!("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", "prioritylevelconfiguration", false,
                short: NONE, categories: NONE, sub: STATUS, spec: true),
            resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true,
                short: &["pdb"], categories: NONE, sub: STATUS, spec: true),
            resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false,
                short: &["pc"], categories: NONE, sub: NONE, spec: false),
            resource!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false,
                short: &["csr"], categories: NONE, sub: &["status", "approval"], spec: false),
            resource!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false,
                short: &["crd", "crds"], categories: &["api-extensions"], sub: STATUS, spec: true),
            resource!("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", false,
                short: NONE, categories: &["api-extensions"], sub: STATUS, spec: true),
            // admissionregistration.k8s.io/v1
            resource!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", false,
                short: NONE, categories: &["api-extensions"], sub: NONE, spec: false),
            resource!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", false,
                short: NONE, categories: &["api-extensions"], sub: NONE, spec: false),
            resource!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", "validatingadmissionpolicy", false,
                short: NONE, categories: &["api-extensions"], sub: STATUS, spec: true),
            resource!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", false,
                short: NONE, categories: &["api-extensions"], sub: NONE, spec: true),
            // MutatingAdmissionPolicy is beta (v1beta1) in Kubernetes 1.35.
            resource!("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicy", "mutatingadmissionpolicies", "mutatingadmissionpolicy", false,
                short: NONE, categories: &["api-extensions"], sub: NONE, spec: true),
            resource!("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicyBinding", "mutatingadmissionpolicybindings", "mutatingadmissionpolicybinding", false,
                short: NONE, categories: &["api-extensions"], sub: NONE, spec: true),
            // policy.skiff.dev: Skiff's own Wasm admission policies.
            resource!("policy.skiff.dev", "v1alpha1", "WasmAdmissionPolicy", "wasmadmissionpolicies", "wasmadmissionpolicy", false,
                short: &["wap"], categories: &["api-extensions"], sub: STATUS, spec: true),
            resource!("policy.skiff.dev", "v1alpha1", "WasmAdmissionPolicyBinding", "wasmadmissionpolicybindings", "wasmadmissionpolicybinding", false,
                short: &["wapb"], categories: &["api-extensions"], sub: NONE, spec: true),
            // Reviews are answered, never stored: only `create`.
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", true,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
            ResourceInfo {
                verbs: &["create"],
                ..resource!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false,
                    short: NONE, categories: NONE, sub: NONE, spec: false)
            },
        ];
        Registry::from_resources(resources)
    }

    /// A registry of `resources`, in the order given (a group's first version is its
    /// preferred one).
    pub fn from_resources(resources: Vec<ResourceInfo>) -> Self {
        let mut index = HashMap::with_capacity(resources.len());
        for (i, r) in resources.iter().enumerate() {
            index.entry((r.group, r.version, r.plural)).or_insert(i);
        }
        Registry { resources, index }
    }

    /// These resources followed by `more` (custom resources after the built-in ones).
    pub fn with(&self, more: impl IntoIterator<Item = ResourceInfo>) -> Self {
        let mut resources = self.resources.clone();
        resources.extend(more);
        Registry::from_resources(resources)
    }

    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource `plural` of `group`, in the group's preferred (first listed) version.
    pub fn by_plural(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources.iter().find(|r| r.group == group && r.plural == plural)
    }

    /// The resource `plural` of `group`/`version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.index.get(&(group, version, plural)).map(|i| &self.resources[*i])
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources.iter().find(|r| r.group == group && r.kind == kind)
    }

    /// Group names other than core, in a stable order, each with its versions.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }

    /// Resources of one group-version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
        self.resources.iter().filter(move |r| r.group == group && r.version == version)
    }
}

/// `s` as a `&'static str`, allocated once per distinct text: custom resources' names come
/// from CustomResourceDefinitions at run time, and every `ResourceInfo` field is static.
/// What is interned is never freed, so only names (bounded by the CRDs ever served) go here.
pub fn intern(s: &str) -> &'static str {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(found) = seen.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// A list of interned names as one interned slice (short names, categories, verbs).
pub fn intern_list(items: &[&str]) -> &'static [&'static str] {
    static SEEN: Mutex<Option<HashSet<&'static [&'static str]>>> = Mutex::new(None);
    let items: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(found) = seen.get(items.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(items.into_boxed_slice());
    seen.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_are_shared() {
        let a = intern(&format!("widgets{}", 1));
        let b = intern("widgets1");
        assert!(std::ptr::eq(a, b));
        let l = intern_list(&["w", "wd"]);
        assert!(std::ptr::eq(l, intern_list(&[a.get(..1).unwrap_or("w"), "wd"])));
    }

    #[test]
    fn lookups_use_the_first_of_a_duplicate() {
        let reg = Registry::builtin();
        let pods = reg.lookup("", "v1", "pods").expect("pods");
        assert_eq!(pods.kind, "Pod");
        let more =
            reg.with([ResourceInfo { custom: Some(Attachment(Arc::new(()))), ..pods.clone() }]);
        assert!(!more.lookup("", "v1", "pods").expect("pods").is_custom());
    }
}
