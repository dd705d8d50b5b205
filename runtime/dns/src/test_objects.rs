//! Services and EndpointSlices as the API would hand them over, for unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::records::SERVICE_NAME_LABEL;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

/// Ports as (name, protocol, port).
fn service_ports(ports: &[(&str, &str, i32)]) -> Option<Vec<ServicePort>> {
    Some(
        ports
            .iter()
            .map(|(name, proto, port)| ServicePort {
                name: Some(name.to_string()),
                protocol: Some(proto.to_string()),
                port: *port,
                ..Default::default()
            })
            .collect(),
    )
}

pub fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: service_ports(ports),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn headless(ns: &str, name: &str, ports: &[(&str, &str, i32)]) -> Service {
    cluster_ip(ns, name, &["None"], ports)
}

pub fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// An endpoint: (address, hostname, ready).
pub type Ep<'a> = (&'a str, Option<&'a str>, bool);

pub fn slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[Ep<'_>],
    ports: &[(&str, &str, i32)],
) -> EndpointSlice {
    let mut metadata = meta(ns, name);
    metadata.labels = Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), service.to_string())]));
    let v6 = endpoints.first().is_some_and(|(a, _, _)| a.contains(':'));
    EndpointSlice {
        metadata,
        address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
        endpoints: endpoints
            .iter()
            .map(|(addr, host, ready)| Endpoint {
                addresses: vec![addr.to_string()],
                hostname: host.map(String::from),
                conditions: Some(EndpointConditions { ready: Some(*ready), ..Default::default() }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(name, proto, port)| EndpointPort {
                    name: Some(name.to_string()),
                    protocol: Some(proto.to_string()),
                    port: Some(*port),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}
