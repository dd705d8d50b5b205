//! What the api server serves: one `ResourceInfo` per resource, as discovery reports it.

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
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
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
        }
    };
}

/// The set of resources served, looked up by group + plural or by group + kind.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Registry {
    /// The built-in resources this version of Skiff serves.
    pub fn builtin() -> Self {
        let resources = vec![
            resource!("", "v1", "Namespace", "namespaces", "namespace", false,
                short: &["ns"], categories: &[], sub: &["status", "finalize"], spec: false),
            resource!("", "v1", "Node", "nodes", "node", false,
                short: &["no"], categories: &[], sub: &["status"], spec: false),
            resource!("", "v1", "Pod", "pods", "pod", true,
                short: &["po"], categories: &["all"], sub: &["status", "log", "binding"], spec: false),
            resource!("", "v1", "Event", "events", "event", true,
                short: &["ev"], categories: &[], sub: &[], spec: false),
            resource!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false,
                short: &[], categories: &[], sub: &[], spec: false),
            resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true,
                short: &[], categories: &[], sub: &[], spec: false),
            resource!("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
                "customresourcedefinitions", "customresourcedefinition", false,
                short: &["crd", "crds"], categories: &["api-extensions"], sub: &["status"], spec: true),
        ];
        Registry { resources }
    }

    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    pub fn by_plural(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources.iter().find(|r| r.group == group && r.plural == plural)
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
