//! A container's environment, the kubelet's way: `envFrom` first, then `env` in order, with
//! `$(VAR)` references expanded against what came before; values from ConfigMaps, Secrets,
//! the downward API and the container's resources; then the Services' variables the
//! container did not set itself (service links, and always the api server's `kubernetes`
//! Service, which in-cluster clients find the api server by).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
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

/// The namespace and names of the Services every pod learns of, whatever its
/// `enableServiceLinks` (the kubelet's master services).
const MASTER_SERVICES: (&str, &[&str]) = ("default", &["kubernetes"]);

/// A Service name as a variable name prefix: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variables of one Service with a cluster IP and ports: `{NAME}_SERVICE_HOST`,
/// `{NAME}_SERVICE_PORT` (the first port) and `{NAME}_SERVICE_PORT_{PORT_NAME}` per named
/// port, and Docker's link variables (`{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`).
fn service_vars(
    name: &str,
    ip: &str,
    ports: &[(Option<String>, i32, String)],
) -> Vec<(String, String)> {
    let prefix = env_name(name);
    let Some((_, first, first_proto)) = ports.first() else { return Vec::new() };
    let host_port = |port: i32| {
        if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
    };
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), first.to_string()),
    ];
    for (port_name, port, _) in ports {
        if let Some(n) = port_name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{prefix}_SERVICE_PORT_{}", env_name(n)), port.to_string()));
        }
    }
    let scheme = |proto: &String| proto.to_ascii_lowercase();
    out.push((
        format!("{prefix}_PORT"),
        format!("{}://{}", scheme(first_proto), host_port(*first)),
    ));
    for (_, port, proto) in ports {
        let base = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        out.push((base.clone(), format!("{}://{}", scheme(proto), host_port(*port))));
        out.push((format!("{base}_PROTO"), scheme(proto)));
        out.push((format!("{base}_PORT"), port.to_string()));
        out.push((format!("{base}_ADDR"), ip.to_string()));
    }
    out
}

/// The Service variables of a pod in `namespace`: every Service of its namespace with a
/// cluster IP when `enable_links` (`spec.enableServiceLinks`, true by default), and the
/// master services always (a Service of the pod's own namespace of the same name wins).
pub fn service_env(
    services: &[Arc<Service>],
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let svc: &Service = svc;
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if ns == namespace && enable_links {
            chosen.insert(name.to_string(), svc);
        } else if ns == MASTER_SERVICES.0 && MASTER_SERVICES.1.contains(&name) {
            chosen.entry(name.to_string()).or_insert(svc);
        }
    }
    chosen
        .iter()
        .flat_map(|(name, svc)| {
            let spec = svc.spec.as_ref();
            let ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
            let ports: Vec<(Option<String>, i32, String)> = spec
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p.protocol.clone().filter(|p| !p.is_empty());
                    (p.name.clone(), p.port, proto.unwrap_or_else(|| "TCP".into()))
                })
                .collect();
            service_vars(name, ip, &ports)
        })
        .collect()
}

/// The environment of `container`; `services` are the pod's Service variables
/// ([`service_env`]): `$(VAR)` may name them, and those the container does not set come
/// last. An error is the kubelet's `CreateContainerConfigError` message (a missing
/// ConfigMap, Secret or key that is not optional).
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    fields: &FieldValues,
    node_allocatable: &BTreeMap<String, f64>,
    services: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    // What `$(VAR)` sees: the Service variables, overridden by the container's own so far.
    let scope = |env: &[(String, String)]| {
        let mut all = services.to_vec();
        all.extend_from_slice(env);
        all
    };
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
            let v = expand(&v, &scope(&env));
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
    for (name, value) in services {
        if !env.iter().any(|(k, _)| k == name) {
            env.push((name.clone(), value.clone()));
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

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"clusterIP": ip, "ports": ports},
            }))
            .expect("service"),
        )
    }

    fn vars(env: &[(String, String)]) -> BTreeMap<&str, &str> {
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn service_env_should_link_namespace_services_and_always_the_api_server() {
        let services = vec![
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            service(
                "app",
                "web-db",
                "10.96.0.9",
                serde_json::json!([{"port": 5432}, {"name": "metrics", "port": 9187, "protocol": "TCP"}]),
            ),
            service("app", "headless", "None", serde_json::json!([{"port": 80}])),
            service("other", "elsewhere", "10.96.0.10", serde_json::json!([{"port": 80}])),
        ];
        let env = service_env(&services, "app", true);
        let got = vars(&env);
        assert_eq!(got.get("KUBERNETES_SERVICE_HOST"), Some(&"10.96.0.1"));
        assert_eq!(got.get("KUBERNETES_SERVICE_PORT"), Some(&"443"));
        assert_eq!(got.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some(&"443"));
        assert_eq!(got.get("KUBERNETES_PORT"), Some(&"tcp://10.96.0.1:443"));
        assert_eq!(got.get("KUBERNETES_PORT_443_TCP_ADDR"), Some(&"10.96.0.1"));
        assert_eq!(got.get("WEB_DB_SERVICE_HOST"), Some(&"10.96.0.9"));
        assert_eq!(got.get("WEB_DB_SERVICE_PORT"), Some(&"5432"));
        assert_eq!(got.get("WEB_DB_SERVICE_PORT_METRICS"), Some(&"9187"));
        assert_eq!(got.get("WEB_DB_PORT_9187_TCP"), Some(&"tcp://10.96.0.9:9187"));
        assert_eq!(got.get("WEB_DB_PORT_5432_TCP_PROTO"), Some(&"tcp"));
        assert_eq!(got.get("WEB_DB_PORT_5432_TCP_PORT"), Some(&"5432"));
        assert!(
            !got.keys().any(|k| k.starts_with("HEADLESS_") || k.starts_with("ELSEWHERE_")),
            "{got:?}"
        );

        // Without service links only the api server's variables remain.
        let env = service_env(&services, "app", false);
        assert!(env.iter().all(|(k, _)| k.starts_with("KUBERNETES_")), "{env:?}");
        assert!(vars(&env).contains_key("KUBERNETES_SERVICE_HOST"));
    }
}
