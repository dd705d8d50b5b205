//! The admission request a policy decides on: the `request` of an admission.k8s.io/v1
//! AdmissionReview (Kubernetes' `AdmissionRequest`), read from the JSON the host passes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One admission request. Fields the api server leaves out read as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Identifies this request (and its AdmissionReview response).
    #[serde(default)]
    pub uid: String,
    /// The kind of `object`, e.g. `apps/v1 Deployment`.
    #[serde(default)]
    pub kind: GroupVersionKind,
    /// The resource written, e.g. `apps/v1 deployments`.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// `status`, `scale`, `ephemeralcontainers`…; "" for the main resource.
    #[serde(default)]
    pub sub_resource: String,
    /// The object's name; "" on a create whose name the server generates.
    #[serde(default)]
    pub name: String,
    /// "" for cluster-scoped kinds.
    #[serde(default)]
    pub namespace: String,
    pub operation: Operation,
    /// Who sent the request.
    #[serde(default, rename = "userInfo")]
    pub user: UserInfo,
    /// The object as it would be stored; `None` on DELETE.
    #[serde(default)]
    pub object: Option<Value>,
    /// The object as stored before this request; `None` on CREATE.
    #[serde(default)]
    pub old_object: Option<Value>,
    /// Whether the request changes nothing (`--dry-run=server`): a policy with side effects
    /// must not act on it.
    #[serde(default)]
    pub dry_run: bool,
    /// The operation's options (`CreateOptions`, `UpdateOptions`, `DeleteOptions`), if any.
    #[serde(default)]
    pub options: Option<Value>,
}

impl Request {
    /// Parses the JSON of an AdmissionReview's `request`.
    pub fn from_json(json: &str) -> Result<Request, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The PodSpec inside `object` when its kind carries one (see [`crate::pod::pod_spec`]).
    pub fn pod_spec(&self) -> Option<&Value> {
        crate::pod::pod_spec(&self.kind, self.object.as_ref()?)
    }
}

/// What a request does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The name Kubernetes uses: `CREATE`, `UPDATE`, `DELETE`, `CONNECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind with its API group and version; `group` is "" for the core group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

impl GroupVersionKind {
    /// The object's `apiVersion`: `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this is `kind` in `group` (any version).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

/// A resource (the plural in the URL) with its API group and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// The user a request came from, as the api server authenticated them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Whether the user is in `group` (e.g. `system:masters`).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
