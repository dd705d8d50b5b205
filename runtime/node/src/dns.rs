//! A pod's resolver configuration from its `dnsPolicy` and `dnsConfig`, as the kubelet's
//! `pkg/kubelet/network/dns` computes it: `ClusterFirst` (the default) points the pod at the
//! cluster DNS with the namespace's search path and `ndots:5`; `Default` keeps the node's
//! `resolv.conf`; `None` uses `dnsConfig` alone; host-network pods get the node's unless they
//! ask for `ClusterFirstWithHostNet`.

use k8s_openapi::api::core::v1::PodSpec;
use skiff_runtime_core::DnsConfig;

/// The node's cluster DNS settings (`clusterDNS`, `clusterDomain` in the kubelet's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDnsSettings {
    /// The cluster DNS's address; `None`: no cluster DNS, `ClusterFirst` acts as `Default`.
    pub server: Option<String>,
    pub domain: String,
}

impl Default for ClusterDnsSettings {
    fn default() -> Self {
        ClusterDnsSettings { server: None, domain: "cluster.local".into() }
    }
}

/// Kubernetes' limits on a pod's resolver (`validation.MaxDNSNameservers`, search paths).
const MAX_SERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The pod's resolver configuration; `None` keeps the node's `resolv.conf`.
pub fn pod_dns_config(
    spec: &PodSpec,
    namespace: &str,
    cluster: &ClusterDnsSettings,
) -> Option<DnsConfig> {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        "None" => false,
        // "Default" and anything unknown (validation refuses those): the node's file.
        _ => false,
    };
    let mut config = match (policy, cluster_first, &cluster.server) {
        ("None", _, _) => DnsConfig::default(),
        (_, true, Some(server)) => {
            let d = &cluster.domain;
            DnsConfig {
                servers: vec![server.clone()],
                searches: vec![format!("{namespace}.svc.{d}"), format!("svc.{d}"), d.clone()],
                options: vec!["ndots:5".into()],
            }
        }
        _ => {
            // The node's resolv.conf unless the pod adds to it.
            spec.dns_config.as_ref()?;
            node_resolv_conf()
        }
    };
    if let Some(extra) = &spec.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !config.servers.contains(s) {
                config.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !config.searches.contains(s) {
                config.searches.push(s.clone());
            }
        }
        // An option the pod names replaces the same option from the policy.
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else { continue };
            let rendered = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            config.options.retain(|existing| existing.split(':').next() != Some(name));
            config.options.push(rendered);
        }
    }
    config.servers.truncate(MAX_SERVERS);
    config.searches.truncate(MAX_SEARCHES);
    Some(config)
}

/// The node's own resolver settings (for `Default` with a `dnsConfig` to merge in).
fn node_resolv_conf() -> DnsConfig {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolv_conf(&text)
}

fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => c.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => c.searches = words.map(str::to_string).collect(),
            Some("options") => c.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    fn cluster() -> ClusterDnsSettings {
        ClusterDnsSettings { server: Some("10.96.0.10".into()), domain: "cluster.local".into() }
    }

    fn spec(policy: Option<&str>, host_network: bool, extra: Option<PodDNSConfig>) -> PodSpec {
        PodSpec {
            dns_policy: policy.map(str::to_string),
            host_network: Some(host_network),
            dns_config: extra,
            ..Default::default()
        }
    }

    #[test]
    fn pod_dns_config_should_follow_the_dns_policy() {
        let cluster_first = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "web.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        let cases: [(Option<&str>, bool, Option<DnsConfig>); 6] = [
            (None, false, Some(cluster_first.clone())),
            (Some("ClusterFirst"), false, Some(cluster_first.clone())),
            // A host-network pod keeps the node's resolver unless it asks otherwise.
            (Some("ClusterFirst"), true, None),
            (Some("ClusterFirstWithHostNet"), true, Some(cluster_first.clone())),
            (Some("Default"), false, None),
            (Some("None"), false, Some(DnsConfig::default())),
        ];
        for (policy, host, want) in cases {
            assert_eq!(
                pod_dns_config(&spec(policy, host, None), "web", &cluster()),
                want,
                "{policy:?} host={host}"
            );
        }
    }

    #[test]
    fn pod_dns_config_should_merge_dns_config() {
        let extra = PodDNSConfig {
            nameservers: Some(vec!["192.0.2.53".into()]),
            searches: Some(vec!["example.internal".into()]),
            options: Some(vec![
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) },
                PodDNSConfigOption { name: Some("edns0".into()), value: None },
            ]),
        };
        let got = pod_dns_config(&spec(None, false, Some(extra.clone())), "a", &cluster()).unwrap();
        assert_eq!(got.servers, ["10.96.0.10", "192.0.2.53"]);
        assert_eq!(got.searches.last().map(String::as_str), Some("example.internal"));
        assert_eq!(got.options, ["ndots:2", "edns0"]);
        let none =
            pod_dns_config(&spec(Some("None"), false, Some(extra)), "a", &cluster()).unwrap();
        assert_eq!(none.servers, ["192.0.2.53"]);
        assert_eq!(none.searches, ["example.internal"]);
    }

    #[test]
    fn pod_dns_config_should_fall_back_without_a_cluster_dns() {
        let no_dns = ClusterDnsSettings::default();
        assert_eq!(pod_dns_config(&spec(None, false, None), "a", &no_dns), None);
    }

    #[test]
    fn parse_resolv_conf_should_read_servers_searches_and_options() {
        let c = parse_resolv_conf(
            "# x\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch a.example b.example\noptions ndots:1 rotate\n",
        );
        assert_eq!(c.servers, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(c.searches, ["a.example", "b.example"]);
        assert_eq!(c.options, ["ndots:1", "rotate"]);
    }
}
