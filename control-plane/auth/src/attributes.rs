//! What a request asks to do, as authorizers see it (kube-apiserver's `RequestInfo` and
//! `authorizer.Attributes`): a verb on a resource (group, namespace, name, subresource) or on
//! a non-resource path.

use serde::{Deserialize, Serialize};

/// The attributes of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// For resources: get, list, watch, create, update, patch, delete, deletecollection (or
    /// impersonate, bind, escalate, ... when checked on the server's own behalf). For other
    /// paths: the HTTP method in lower case.
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The request path (for non-resource requests).
    pub path: String,
}

impl Attributes {
    /// A resource check (as SubjectAccessReview `resourceAttributes` ask it).
    pub fn resource(
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A non-resource check (`nonResourceAttributes`).
    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.to_string(), path: path.to_string(), ..Default::default() }
    }

    pub fn with_subresource(mut self, subresource: &str) -> Attributes {
        self.subresource = subresource.to_string();
        self
    }

    /// The attributes of an HTTP request: `method`, `path` (without query) and whether the
    /// query asks to watch. Paths under `/api/v1` and `/apis/<group>/<version>` are resource
    /// requests; every other path (and the discovery paths themselves) is not.
    pub fn from_request(method: &str, path: &str, watch: bool) -> Attributes {
        let non_resource = || Attributes::non_resource(&method.to_ascii_lowercase(), path);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, mut rest) = match segs.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource(),
        };
        let mut verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => return non_resource(),
        };
        let mut watch = watch;
        // The deprecated `/watch/` prefix.
        if rest.first() == Some(&"watch") {
            watch = true;
            rest = &rest[1..];
        }
        let mut namespace = "";
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            namespace = rest[1];
            // `namespaces/<ns>/status|finalize` are subresources of the namespace itself.
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        let resource = rest.first().copied().unwrap_or("");
        let name = rest.get(1).copied().unwrap_or("");
        let subresource = if rest.len() >= 3 { rest[2] } else { "" };
        if name.is_empty() {
            verb = match verb {
                "get" if watch => "watch",
                "get" => "list",
                "delete" => "deletecollection",
                v => v,
            };
        } else if verb == "get" && watch {
            verb = "watch";
        }
        // Streaming subresources are connect requests: kubectl ≥ 1.30 opens them with a
        // WebSocket GET, and RBAC grants them as `create` (as kube-apiserver requires).
        if matches!(subresource, "exec" | "attach" | "portforward") {
            verb = "create";
        }
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            api_group: group.to_string(),
            api_version: version.to_string(),
            namespace: namespace.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name: name.to_string(),
            path: path.to_string(),
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules name them.
    pub fn resource_and_subresource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_should_read_requests_as_kube_apiserver_does() {
        // (verb, group, namespace, resource, subresource, name)
        type Read<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);
        // (method, path, watch) -> what the request is read as
        let cases: &[(&str, &str, bool, Read)] = &[
            ("GET", "/api/v1/pods", false, ("list", "", "", "pods", "", "")),
            ("GET", "/api/v1/pods", true, ("watch", "", "", "pods", "", "")),
            ("GET", "/api/v1/namespaces/ns/pods/p", false, ("get", "", "ns", "pods", "", "p")),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                false,
                ("get", "", "ns", "pods", "log", "p"),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p/exec",
                false,
                ("create", "", "ns", "pods", "exec", "p"),
            ),
            ("POST", "/api/v1/namespaces/ns/pods", false, ("create", "", "ns", "pods", "", "")),
            (
                "DELETE",
                "/api/v1/namespaces/ns/pods",
                false,
                ("deletecollection", "", "ns", "pods", "", ""),
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/ns/deployments/d/scale",
                false,
                ("patch", "apps", "ns", "deployments", "scale", "d"),
            ),
            ("GET", "/api/v1/namespaces/ns", false, ("get", "", "ns", "namespaces", "", "ns")),
            (
                "PUT",
                "/api/v1/namespaces/ns/finalize",
                false,
                ("update", "", "ns", "namespaces", "finalize", "ns"),
            ),
            ("GET", "/api/v1/namespaces", false, ("list", "", "", "namespaces", "", "")),
            ("GET", "/api/v1/watch/namespaces/ns/pods", false, ("watch", "", "ns", "pods", "", "")),
            (
                "PUT",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
                false,
                ("update", "rbac.authorization.k8s.io", "", "clusterroles", "", "x"),
            ),
            ("PATCH", "/api/v1/nodes/n1/status", false, ("patch", "", "", "nodes", "status", "n1")),
        ];
        for (method, path, watch, want) in cases {
            let a = Attributes::from_request(method, path, *watch);
            assert!(a.resource_request, "{path}");
            let got = (
                a.verb.as_str(),
                a.api_group.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.name.as_str(),
            );
            assert_eq!(&got, want, "{method} {path}");
        }
        for path in ["/healthz", "/version", "/api", "/api/v1", "/apis/apps/v1", "/openapi/v2"] {
            let a = Attributes::from_request("GET", path, false);
            assert!(!a.resource_request, "{path}");
            assert_eq!(a.verb, "get");
            assert_eq!(a.path, path);
        }
    }
}
