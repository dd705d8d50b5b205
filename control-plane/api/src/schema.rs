//! Patch metadata of built-in kinds: how each list field merges. Kubernetes declares this on
//! its Go types (`+listType`, `+listMapKey`, `+patchStrategy`, `+patchMergeKey`); Skiff keeps
//! the same knowledge in one table, used by strategic merge patch, by server-side apply and by
//! the OpenAPI documents (as `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`).

/// How a list field is treated as a whole (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// Scalars, each present once; merged as a union.
    Set,
    /// Objects keyed by the given fields; merged item by item.
    Map(&'static [&'static str]),
}

/// The patch metadata of one list field of one API type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListField {
    /// OpenAPI definition name of the type that holds the field, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub owner: &'static str,
    /// The field's JSON name.
    pub field: &'static str,
    /// Kinds whose objects hold this field; empty when the owner type is shared (e.g. `PodSpec`).
    pub kinds: &'static [&'static str],
    /// Field names the owner type appears under in an object path; empty when any.
    pub parents: &'static [&'static str],
    pub list_type: ListType,
    /// Strategic merge patch strategy, e.g. `merge` or `merge,retainKeys`.
    pub patch_strategy: Option<&'static str>,
    /// Strategic merge patch key of items.
    pub patch_merge_key: Option<&'static str>,
}

const CONTAINERS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

macro_rules! list_field {
    ($owner:literal . $field:literal, kinds: $kinds:expr, parents: $parents:expr, $lt:expr,
     strategy: $strategy:expr, key: $key:expr) => {
        ListField {
            owner: $owner,
            field: $field,
            kinds: $kinds,
            parents: $parents,
            list_type: $lt,
            patch_strategy: $strategy,
            patch_merge_key: $key,
        }
    };
    ($owner:literal . $field:literal, $lt:expr, strategy: $strategy:expr, key: $key:expr) => {
        list_field!($owner . $field, kinds: &[], parents: &[], $lt, strategy: $strategy, key: $key)
    };
}

/// A map list merged by one key, as most Kubernetes object lists are.
macro_rules! merged {
    ($owner:literal . $field:literal, $key:literal) => {
        list_field!($owner . $field, ListType::Map(&[$key]), strategy: Some("merge"), key: Some($key))
    };
    ($owner:literal . $field:literal, $key:literal, kinds: $kinds:expr, parents: $parents:expr) => {
        list_field!($owner . $field, kinds: $kinds, parents: $parents, ListType::Map(&[$key]),
            strategy: Some("merge"), key: Some($key))
    };
}

macro_rules! atomic {
    ($owner:literal . $field:literal) => {
        list_field!($owner . $field, ListType::Atomic, strategy: None, key: None)
    };
    ($owner:literal . $field:literal, kinds: $kinds:expr, parents: $parents:expr) => {
        list_field!($owner . $field, kinds: $kinds, parents: $parents, ListType::Atomic,
            strategy: None, key: None)
    };
}

/// Every list field with patch metadata, most specific entries first.
pub static LIST_FIELDS: &[ListField] = &[
    // Object metadata.
    list_field!("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."finalizers", ListType::Set,
        strategy: Some("merge"), key: None),
    merged!("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."ownerReferences", "uid"),
    atomic!("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."managedFields"),
    atomic!("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"."matchExpressions"),
    // Pods and pod templates.
    list_field!("io.k8s.api.core.v1.PodSpec"."volumes", ListType::Map(&["name"]),
        strategy: Some("merge,retainKeys"), key: Some("name")),
    merged!("io.k8s.api.core.v1.PodSpec"."initContainers", "name"),
    merged!("io.k8s.api.core.v1.PodSpec"."containers", "name"),
    merged!("io.k8s.api.core.v1.PodSpec"."ephemeralContainers", "name"),
    merged!("io.k8s.api.core.v1.PodSpec"."imagePullSecrets", "name"),
    merged!("io.k8s.api.core.v1.PodSpec"."hostAliases", "ip"),
    merged!("io.k8s.api.core.v1.PodSpec"."schedulingGates", "name"),
    list_field!("io.k8s.api.core.v1.PodSpec"."resourceClaims", ListType::Map(&["name"]),
        strategy: Some("merge,retainKeys"), key: Some("name")),
    list_field!("io.k8s.api.core.v1.PodSpec"."topologySpreadConstraints",
        ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
        strategy: Some("merge"), key: Some("topologyKey")),
    atomic!("io.k8s.api.core.v1.PodSpec"."tolerations"),
    atomic!("io.k8s.api.core.v1.PodSpec"."readinessGates"),
    list_field!("io.k8s.api.core.v1.Container"."ports", kinds: &[], parents: CONTAINERS,
        ListType::Map(&["containerPort", "protocol"]),
        strategy: Some("merge"), key: Some("containerPort")),
    list_field!("io.k8s.api.core.v1.EphemeralContainer"."ports", kinds: &[], parents: CONTAINERS,
        ListType::Map(&["containerPort", "protocol"]),
        strategy: Some("merge"), key: Some("containerPort")),
    merged!("io.k8s.api.core.v1.Container"."env", "name"),
    merged!("io.k8s.api.core.v1.EphemeralContainer"."env", "name"),
    merged!("io.k8s.api.core.v1.Container"."volumeMounts", "mountPath"),
    merged!("io.k8s.api.core.v1.EphemeralContainer"."volumeMounts", "mountPath"),
    merged!("io.k8s.api.core.v1.Container"."volumeDevices", "devicePath"),
    merged!("io.k8s.api.core.v1.EphemeralContainer"."volumeDevices", "devicePath"),
    atomic!("io.k8s.api.core.v1.Container"."command"),
    atomic!("io.k8s.api.core.v1.Container"."args"),
    atomic!("io.k8s.api.core.v1.Container"."envFrom"),
    atomic!("io.k8s.api.core.v1.Container"."resizePolicy"),
    merged!("io.k8s.api.core.v1.PodStatus"."conditions", "type"),
    merged!("io.k8s.api.core.v1.PodStatus"."podIPs", "ip"),
    merged!("io.k8s.api.core.v1.PodStatus"."hostIPs", "ip"),
    atomic!("io.k8s.api.core.v1.PodStatus"."containerStatuses"),
    atomic!("io.k8s.api.core.v1.PodStatus"."initContainerStatuses"),
    // Services, endpoints, nodes, namespaces and the rest of core/v1.
    list_field!("io.k8s.api.core.v1.ServiceSpec"."ports", kinds: &["Service"], parents: &["spec"],
        ListType::Map(&["port", "protocol"]), strategy: Some("merge"), key: Some("port")),
    atomic!("io.k8s.api.core.v1.ServiceSpec"."clusterIPs"),
    atomic!("io.k8s.api.core.v1.ServiceSpec"."externalIPs"),
    atomic!("io.k8s.api.core.v1.ServiceSpec"."ipFamilies"),
    merged!("io.k8s.api.core.v1.ServiceStatus"."conditions", "type"),
    atomic!("io.k8s.api.core.v1.EndpointSubset"."addresses", kinds: &["Endpoints"], parents: &["subsets"]),
    atomic!("io.k8s.api.core.v1.EndpointSubset"."ports", kinds: &["Endpoints"], parents: &["subsets"]),
    atomic!("io.k8s.api.core.v1.Endpoints"."subsets"),
    merged!("io.k8s.api.core.v1.NodeStatus"."conditions", "type"),
    merged!("io.k8s.api.core.v1.NodeStatus"."addresses", "type", kinds: &["Node"], parents: &["status"]),
    atomic!("io.k8s.api.core.v1.NodeSpec"."taints"),
    list_field!("io.k8s.api.core.v1.NodeSpec"."podCIDRs", ListType::Set,
        strategy: Some("merge"), key: None),
    merged!("io.k8s.api.core.v1.NamespaceStatus"."conditions", "type"),
    merged!("io.k8s.api.core.v1.ServiceAccount"."secrets", "name"),
    atomic!("io.k8s.api.core.v1.ServiceAccount"."imagePullSecrets"),
    merged!("io.k8s.api.core.v1.PersistentVolumeClaimStatus"."conditions", "type"),
    merged!("io.k8s.api.core.v1.ReplicationControllerStatus"."conditions", "type"),
    atomic!("io.k8s.api.core.v1.LimitRangeSpec"."limits"),
    // admissionregistration/v1
    merged!("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration"."webhooks", "name"),
    merged!("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration"."webhooks", "name"),
    // apps/v1, batch/v1, autoscaling, policy.
    merged!("io.k8s.api.apps.v1.DeploymentStatus"."conditions", "type"),
    merged!("io.k8s.api.apps.v1.ReplicaSetStatus"."conditions", "type"),
    merged!("io.k8s.api.apps.v1.StatefulSetStatus"."conditions", "type"),
    merged!("io.k8s.api.apps.v1.DaemonSetStatus"."conditions", "type"),
    atomic!("io.k8s.api.apps.v1.StatefulSetSpec"."volumeClaimTemplates"),
    list_field!("io.k8s.api.batch.v1.JobStatus"."conditions", ListType::Atomic,
        strategy: Some("merge"), key: Some("type")),
    merged!("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus"."conditions", "type"),
    atomic!("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec"."metrics"),
    merged!("io.k8s.api.policy.v1.PodDisruptionBudgetStatus"."conditions", "type"),
    // Networking, discovery, RBAC, apiextensions.
    atomic!("io.k8s.api.networking.v1.IngressSpec"."rules"),
    atomic!("io.k8s.api.networking.v1.IngressSpec"."tls"),
    atomic!("io.k8s.api.networking.v1.NetworkPolicySpec"."ingress"),
    atomic!("io.k8s.api.networking.v1.NetworkPolicySpec"."egress"),
    atomic!("io.k8s.api.networking.v1.NetworkPolicySpec"."policyTypes"),
    atomic!("io.k8s.api.discovery.v1.EndpointSlice"."endpoints"),
    atomic!("io.k8s.api.discovery.v1.EndpointSlice"."ports", kinds: &["EndpointSlice"], parents: &[]),
    atomic!("io.k8s.api.rbac.v1.Role"."rules"),
    atomic!("io.k8s.api.rbac.v1.ClusterRole"."rules"),
    atomic!("io.k8s.api.rbac.v1.RoleBinding"."subjects"),
    atomic!("io.k8s.api.rbac.v1.ClusterRoleBinding"."subjects"),
    merged!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus"."conditions", "type"),
];

/// The list fields with patch metadata of one OpenAPI definition.
pub fn list_fields_of(owner: &str) -> impl Iterator<Item = &'static ListField> + '_ {
    LIST_FIELDS.iter().filter(move |f| f.owner == owner)
}

/// The patch metadata of the list at `path` (field names from the object's root, no indices)
/// in an object of `kind`, if the list has any.
pub fn list_field(kind: &str, path: &[&str]) -> Option<&'static ListField> {
    let (last, rest) = path.split_last()?;
    let parent = rest.last().copied();
    LIST_FIELDS.iter().find(|f| {
        f.field == *last
            && (f.kinds.is_empty() || f.kinds.contains(&kind))
            && (f.parents.is_empty()
                || (f.kinds.is_empty() && parent.is_some_and(|p| f.parents.contains(&p)))
                || (!f.kinds.is_empty()
                    && (rest.len() == f.parents.len()
                        && rest.iter().zip(f.parents).all(|(a, b)| a == b))))
            && owner_fits(f, kind, rest)
    })
}

/// Entries whose owner is a top-level kind only apply at the object's root, and entries
/// whose owner is a kind's spec or status type (e.g. `NodeStatus`) only there; `PodSpec`
/// appears in every pod template.
fn owner_fits(f: &ListField, kind: &str, rest: &[&str]) -> bool {
    let owner_type = f.owner.rsplit('.').next().unwrap_or(f.owner);
    if is_kind_name(owner_type) {
        return owner_type == kind && rest.is_empty();
    }
    if !f.kinds.is_empty() || owner_type == "PodSpec" {
        return true;
    }
    for (suffix, field) in [("Status", "status"), ("Spec", "spec")] {
        if let Some(owner_kind) = owner_type.strip_suffix(suffix) {
            return owner_kind == kind && rest == [field];
        }
    }
    true
}

fn is_kind_name(name: &str) -> bool {
    matches!(
        name,
        "Endpoints"
            | "ServiceAccount"
            | "EndpointSlice"
            | "Role"
            | "ClusterRole"
            | "RoleBinding"
            | "ClusterRoleBinding"
    )
}

/// Patch strategies of fields that are not lists: (owner definition, field, strategy).
const FIELD_STRATEGIES: &[(&str, &str, &str)] = &[
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys"),
];

/// The non-list fields of one OpenAPI definition that have a patch strategy.
pub fn field_strategies_of(owner: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    FIELD_STRATEGIES.iter().filter(move |(o, _, _)| *o == owner).map(|(_, f, s)| (*f, *s))
}

/// Strategic merge patch strategy of the object field at `path` in an object of `kind`
/// (`replace` means a patch replaces it whole).
pub fn map_patch_strategy(kind: &str, path: &[&str]) -> Option<&'static str> {
    let (last, rest) = path.split_last()?;
    FIELD_STRATEGIES.iter().find_map(|(owner, field, strategy)| {
        let owner_type = owner.rsplit('.').next().unwrap_or(owner);
        let owner_kind = owner_type.strip_suffix("Spec")?;
        (owner_kind == kind && rest == ["spec"] && field == last).then_some(*strategy)
    })
}

/// `x-kubernetes-list-type` of the list at `path` in an object of `kind`; lists without
/// metadata are atomic, as in Kubernetes.
pub fn list_type(kind: &str, path: &[&str]) -> ListType {
    list_field(kind, path).map_or(ListType::Atomic, |f| f.list_type)
}

/// Strategic merge patch key of the list at `path` in an object of `kind`.
pub fn patch_merge_key(kind: &str, path: &[&str]) -> Option<&'static str> {
    list_field(kind, path)
        .filter(|f| f.patch_strategy.is_some_and(|s| s.split(',').any(|p| p == "merge")))
        .and_then(|f| f.patch_merge_key)
}

/// Strategic merge patch strategy (`merge`, `merge,retainKeys`, ...) of the field at `path`.
pub fn patch_strategy(kind: &str, path: &[&str]) -> Option<&'static str> {
    list_field(kind, path).and_then(|f| f.patch_strategy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_type_should_know_containers_ports_and_metadata_lists() {
        assert_eq!(patch_merge_key("Pod", &["spec", "containers"]), Some("name"));
        assert_eq!(
            patch_merge_key("Deployment", &["spec", "template", "spec", "containers", "ports"]),
            Some("containerPort")
        );
        assert_eq!(
            list_type("Pod", &["spec", "containers", "ports"]),
            ListType::Map(&["containerPort", "protocol"])
        );
        assert_eq!(list_type("Service", &["spec", "ports"]), ListType::Map(&["port", "protocol"]));
        assert_eq!(patch_merge_key("Service", &["spec", "ports"]), Some("port"));
        assert_eq!(list_type("Pod", &["spec", "tolerations"]), ListType::Atomic);
        assert_eq!(list_type("Pod", &["metadata", "finalizers"]), ListType::Set);
        assert_eq!(patch_strategy("Pod", &["metadata", "finalizers"]), Some("merge"));
        assert_eq!(patch_merge_key("Secret", &["metadata", "ownerReferences"]), Some("uid"));
        assert_eq!(patch_merge_key("Node", &["status", "addresses"]), Some("type"));
        assert_eq!(patch_merge_key("Endpoints", &["subsets", "addresses"]), None);
        assert_eq!(patch_merge_key("Deployment", &["status", "conditions"]), Some("type"));
        assert_eq!(patch_merge_key("Pod", &["spec", "containers", "args"]), None);
        assert_eq!(list_type("ClusterRole", &["rules"]), ListType::Atomic);
        assert_eq!(patch_merge_key("EndpointSlice", &["ports"]), None);
    }
}
