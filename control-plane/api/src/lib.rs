//! The object model every part shares: which resources Skiff serves (group, version, kind,
//! scope, short names, verbs, subresources), how they are keyed in the store, and small
//! helpers over generic (JSON) objects.

pub mod logs;
pub mod nodes;
pub mod protobuf;
pub mod registry;
pub mod schema;

pub use protobuf::gojson;
pub use registry::{Attachment, Registry, ResourceInfo, intern, intern_list};

/// Store key of one object, shaped like etcd's keys in Kubernetes. Custom resources live
/// under their group (`/registry/<group>/<plural>/…`, as kube-apiserver keeps them), which
/// no built-in plural can collide with: every custom group has a dot.
pub fn object_key(resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    let mut key = list_prefix(resource, namespace);
    key.push_str(name);
    key
}

/// Store key prefix for listing a resource, across namespaces or within one.
pub fn list_prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    let group = if resource.is_custom() { resource.group } else { "" };
    let sep = if group.is_empty() { "" } else { "/" };
    match namespace {
        Some(ns) if resource.namespaced => {
            format!("/registry/{group}{sep}{}/{}/", resource.plural, ns)
        }
        _ => format!("/registry/{group}{sep}{}/", resource.plural),
    }
}

/// Why a name, label key or label value is invalid. The texts are Kubernetes' own: clients
/// see them in the causes of an `Invalid` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must be no more than 253 characters and not empty")]
    SubdomainLength,
    #[error(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
         '-' or '.', and must start and end with an alphanumeric character (e.g. \
         'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )]
    NotDnsSubdomain,
    #[error(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
         '-', and must start and end with an alphanumeric character (e.g. 'my-name', or \
         '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )]
    NotDnsLabel,
    #[error(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
         with an alphabetic character, and end with an alphanumeric character (e.g. \
         'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    )]
    NotDns1035Label,
    #[error("name or generateName is required")]
    MissingName,
    #[error("may not be '{0}'")]
    DotSegment(String),
    #[error("may not contain '{0}'")]
    ForbiddenChar(char),
    #[error(
        "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
         alphanumeric characters, '-' or '.', and must start and end with an \
         alphanumeric character"
    )]
    InvalidPrefix,
    #[error(
        "name part must consist of alphanumeric characters, '-', '_' or '.', and \
         must start and end with an alphanumeric character (e.g. 'MyName',  or \
         'my.name',  or '123-abc', regex used for validation is \
         '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )]
    InvalidNamePart,
    #[error(
        "a valid label must be an empty string or consist of alphanumeric characters, \
         '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
         'MyValue',  or 'my_value',  or '12345', regex used for validation is \
         '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    )]
    NotLabelValue,
}

/// Validates a name as an RFC 1123 DNS subdomain (what most object names must be).
pub fn validate_dns_subdomain(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 253 {
        return Err(NameError::SubdomainLength);
    }
    if !name.split('.').all(is_dns_label) {
        return Err(NameError::NotDnsSubdomain);
    }
    Ok(())
}

/// Validates a name as an RFC 1123 DNS label (namespaces, container names).
pub fn validate_dns_label(name: &str) -> Result<(), NameError> {
    if name.len() <= 63 && is_dns_label(name) { Ok(()) } else { Err(NameError::NotDnsLabel) }
}

/// Validates a name as an RFC 1035 DNS label (Service names: must start with a letter).
pub fn validate_dns1035_label(name: &str) -> Result<(), NameError> {
    if name.len() <= 63 && is_dns_label(name) && name.as_bytes()[0].is_ascii_lowercase() {
        Ok(())
    } else {
        Err(NameError::NotDns1035Label)
    }
}

/// Validates a name that only has to be usable as one URL path segment (RBAC objects).
pub fn validate_path_segment(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::MissingName);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotSegment(name.to_string()));
    }
    if let Some(c) = name.chars().find(|c| *c == '/' || *c == '%') {
        return Err(NameError::ForbiddenChar(c));
    }
    Ok(())
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Validates a label or annotation key: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters.
pub fn validate_qualified_name(key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && validate_dns_subdomain(p).is_err()
    {
        return Err(NameError::InvalidPrefix);
    }
    if !is_qualified_part(name) {
        return Err(NameError::InvalidNamePart);
    }
    Ok(())
}

/// Validates a label value: empty, or at most 63 characters of the qualified-name alphabet.
pub fn validate_label_value(value: &str) -> Result<(), NameError> {
    if value.is_empty() || is_qualified_part(value) {
        Ok(())
    } else {
        Err(NameError::NotLabelValue)
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_dns_subdomain_should_accept_dots_and_reject_uppercase() {
        assert!(validate_dns_subdomain("web-1.example").is_ok());
        assert!(validate_dns_subdomain("Web").is_err());
        assert!(validate_dns_subdomain("-web").is_err());
        assert!(validate_dns_subdomain("").is_err());
    }

    #[test]
    fn name_errors_should_keep_kubernetes_wording() {
        assert_eq!(
            validate_dns_label("Web").unwrap_err().to_string(),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character (e.g. 'my-name', or \
             '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(validate_path_segment("..").unwrap_err().to_string(), "may not be '..'");
        assert_eq!(validate_path_segment("a/b").unwrap_err().to_string(), "may not contain '/'");
    }

    #[test]
    fn object_key_should_follow_etcd_layout() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        assert_eq!(object_key(pods, Some("default"), "web"), "/registry/pods/default/web");
        let nodes = reg.by_plural("", "nodes").unwrap();
        assert_eq!(object_key(nodes, Some("default"), "n1"), "/registry/nodes/n1");
    }
}
