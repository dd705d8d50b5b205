//! A container's environment, the kubelet's way: `envFrom` first, then `env` in order, with
//! `$(VAR)` references expanded against what came before; values from ConfigMaps, Secrets,
//! the downward API and the container's resources.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

use crate::volumes::{FieldError, FieldValues, field_value, resource_value};

/// Why a container's environment cannot be built: its `CreateContainerConfigError`. It waits
/// for the missing object or key (unless the reference is optional).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { key: String, namespace: String, name: String },
    #[error("env {var}: {source}")]
    Field {
        var: String,
        #[source]
        source: FieldError,
    },
    #[error("env {var}: resourceFieldRef names no container {container:?}")]
    NoSuchContainer { var: String, container: String },
}

/// Expand `$(VAR)` references in `s` with `env` (later entries win); `$$` is a literal `$`,
/// and a reference to an unknown variable is left as written — Kubernetes' rules.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match lookup.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Fetches ConfigMaps and Secrets once per resolution.
struct Objects<'a> {
    client: &'a kube::Client,
    ns: &'a str,
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Objects<'_> {
    async fn config_map(&mut self, name: &str) -> Option<&BTreeMap<String, String>> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
            let data = api.get_opt(name).await.ok().flatten().map(|cm| {
                let mut d = cm.data.unwrap_or_default();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    d.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                d
            });
            self.config_maps.insert(name.to_string(), data);
        }
        self.config_maps.get(name).and_then(Option::as_ref)
    }

    async fn secret(&mut self, name: &str) -> Option<&BTreeMap<String, String>> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
            let data = api.get_opt(name).await.ok().flatten().map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            });
            self.secrets.insert(name.to_string(), data);
        }
        self.secrets.get(name).and_then(Option::as_ref)
    }
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

/// The environment of `container`. An error is the kubelet's `CreateContainerConfigError`
/// message (a missing ConfigMap, Secret or key that is not optional).
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    fields: &FieldValues,
    node_allocatable: &BTreeMap<String, f64>,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut objects =
        Objects { client, ns: &ns, config_maps: HashMap::new(), secrets: HashMap::new() };
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = from.config_map_ref {
            match objects.config_map(&r.name).await {
                Some(data) => {
                    for (k, v) in data.clone() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name)),
            }
        }
        if let Some(r) = from.secret_ref {
            match objects.secret(&r.name).await {
                Some(data) => {
                    for (k, v) in data.clone() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(EnvError::SecretNotFound(r.name)),
            }
        }
    }
    for e in container.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            let v = expand(&v, &env);
            set(&mut env, e.name, v);
            continue;
        }
        let Some(from) = e.value_from else {
            set(&mut env, e.name, String::new());
            continue;
        };
        let value = if let Some(r) = from.config_map_key_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.config_map(&r.name).await {
                Some(data) => match data.get(&r.key) {
                    Some(v) => Some(v.clone()),
                    None if optional => None,
                    None => {
                        return Err(EnvError::ConfigMapKeyNotFound {
                            key: r.key,
                            namespace: ns.clone(),
                            name: r.name,
                        });
                    }
                },
                None if optional => None,
                None => return Err(EnvError::ConfigMapNotFound(r.name)),
            }
        } else if let Some(r) = from.secret_key_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.secret(&r.name).await {
                Some(data) => match data.get(&r.key) {
                    Some(v) => Some(v.clone()),
                    None if optional => None,
                    None => {
                        return Err(EnvError::SecretKeyNotFound {
                            key: r.key,
                            namespace: ns.clone(),
                            name: r.name,
                        });
                    }
                },
                None if optional => None,
                None => return Err(EnvError::SecretNotFound(r.name)),
            }
        } else if let Some(f) = from.field_ref {
            Some(
                field_value(pod, &f.field_path, fields)
                    .map_err(|source| EnvError::Field { var: e.name.clone(), source })?,
            )
        } else if let Some(r) = from.resource_field_ref {
            let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) if n != container.name => pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == n))
                    .cloned()
                    .ok_or_else(|| EnvError::NoSuchContainer {
                        var: e.name.clone(),
                        container: n.to_string(),
                    })?,
                _ => container.clone(),
            };
            Some(
                resource_value(
                    &target,
                    &r.resource,
                    r.divisor.as_ref().map(|q| q.0.as_str()),
                    node_allocatable,
                )
                .map_err(|source| EnvError::Field { var: e.name.clone(), source })?,
            )
        } else {
            None
        };
        // An optional reference that is missing leaves the variable unset.
        if let Some(v) = value {
            set(&mut env, e.name, v);
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_should_follow_kubernetes_rules() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "x y".to_string())];
        assert_eq!(expand("$(A)-$(B)", &env), "1-x y");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("$$(A) costs $5", &env), "$(A) costs $5");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("é$(A)ü", &env), "é1ü");
    }
}
