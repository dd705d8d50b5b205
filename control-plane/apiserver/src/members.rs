//! The `kubernetes` Service's endpoints list every live control-plane member (kube-apiserver's
//! lease endpoint reconciler): each member keeps a Lease `kube-system/apiserver-…` labelled
//! `apiserver.kubernetes.io/identity=kube-apiserver` with its address, renewed every
//! [`RENEW`], and reconciles `default/kubernetes` (Endpoints and EndpointSlice) to the members
//! whose Lease is fresh. A member that stops renewing drops out within [`LEASE_SECONDS`].
//! Everything goes through the API, as any client's writes do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// How often a member renews its Lease and reconciles the endpoints.
pub const RENEW: Duration = Duration::from_secs(10);
/// How long a Lease counts as live after its last renewal.
pub const LEASE_SECONDS: i32 = 30;
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
const ADDRESS_ANNOTATION: &str = "skiff.dev/advertise-address";

#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("encoding endpoints: {0}")]
    Json(#[from] serde_json::Error),
}

/// The Lease name of the member at `address` (a DNS-1123 name).
pub fn lease_name(address: SocketAddr) -> String {
    let flat: String = address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("apiserver-{}", flat.trim_matches('-'))
}

/// The live members' addresses among `leases` at `now`, sorted.
pub fn live_members(leases: &[Lease], now: Timestamp) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = leases
        .iter()
        .filter(|l| {
            let Some(spec) = &l.spec else { return false };
            let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds)
            else {
                return false;
            };
            renewed.0.as_millisecond() + i64::from(secs) * 1000 > now.as_millisecond()
        })
        .filter_map(|l| l.metadata.annotations.as_ref()?.get(ADDRESS_ANNOTATION)?.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `subsets` of the `kubernetes` Endpoints for `members`: one subset per port.
pub fn endpoint_subsets(members: &[SocketAddr]) -> Value {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for m in members {
        by_port.entry(m.port()).or_default().push(m.ip().to_string());
    }
    Value::Array(
        by_port
            .into_iter()
            .map(|(port, ips)| {
                json!({"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                       "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
            })
            .collect(),
    )
}

/// The `kubernetes` EndpointSlice's endpoints and port for `members`. A slice has one port:
/// members serve on one port in a real cluster; if they do not, the lowest port's members.
pub fn slice_contents(members: &[SocketAddr]) -> Option<(Value, u16)> {
    let port = members.iter().map(SocketAddr::port).min()?;
    let endpoints: Vec<Value> = members
        .iter()
        .filter(|m| m.port() == port)
        .map(|m| json!({"addresses": [m.ip().to_string()], "conditions": {"ready": true}}))
        .collect();
    Some((Value::Array(endpoints), port))
}

/// Renew this member's Lease and reconcile the endpoints, every [`RENEW`], until dropped.
pub async fn run(client: kube::Client, address: SocketAddr) {
    let mut tick = tokio::time::interval(RENEW);
    loop {
        tick.tick().await;
        if let Err(e) = reconcile(&client, address).await {
            tracing::warn!(error = %e, "reconciling the kubernetes Service's endpoints failed");
        }
    }
}

async fn reconcile(client: &kube::Client, address: SocketAddr) -> Result<(), MembersError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let name = lease_name(address);
    let now = Timestamp::now();
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    match leases.get_opt(&name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases.replace(&name, &PostParams::default(), &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([(
                        IDENTITY_LABEL.to_string(),
                        "kube-apiserver".to_string(),
                    )])),
                    annotations: Some(BTreeMap::from([(
                        ADDRESS_ANNOTATION.to_string(),
                        address.to_string(),
                    )])),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    let selector = format!("{IDENTITY_LABEL}=kube-apiserver");
    let all = leases.list(&ListParams::default().labels(&selector)).await?;
    let members = live_members(&all.items, now);
    if members.is_empty() {
        return Ok(());
    }

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let subsets = endpoint_subsets(&members);
    if let Some(mut current) = endpoints.get_opt("kubernetes").await? {
        if serde_json::to_value(&current.subsets)? != subsets {
            current.subsets = serde_json::from_value(subsets)?;
            endpoints.replace("kubernetes", &PostParams::default(), &current).await?;
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    if let (Some(mut current), Some((eps, port))) =
        (slices.get_opt("kubernetes").await?, slice_contents(&members))
    {
        let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
        if serde_json::to_value(&current.endpoints)? != eps
            || serde_json::to_value(&current.ports)? != ports
        {
            current.endpoints = serde_json::from_value(eps)?;
            current.ports = serde_json::from_value(ports)?;
            slices.replace("kubernetes", &PostParams::default(), &current).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(addr: &str, renewed_ms_ago: i64, now: Timestamp) -> Lease {
        let renewed = Timestamp::from_millisecond(now.as_millisecond() - renewed_ms_ago).unwrap();
        Lease {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(
                    ADDRESS_ANNOTATION.to_string(),
                    addr.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(LEASE_SECONDS),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn live_members_should_drop_expired_leases() {
        let now = Timestamp::now();
        let leases = [
            lease("10.0.0.2:6443", 1_000, now),
            lease("10.0.0.1:6443", 29_000, now),
            lease("10.0.0.3:6443", 31_000, now),
            lease("not an address", 0, now),
        ];
        let live = live_members(&leases, now);
        assert_eq!(live, ["10.0.0.1:6443".parse().unwrap(), "10.0.0.2:6443".parse().unwrap()]);
    }

    #[test]
    fn endpoints_should_list_every_member_by_port() {
        let members: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:7443"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let subsets = endpoint_subsets(&members);
        assert_eq!(subsets[0]["addresses"], json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]));
        assert_eq!(subsets[0]["ports"][0]["port"], 6443);
        assert_eq!(subsets[1]["addresses"], json!([{"ip": "10.0.0.3"}]));
        let (eps, port) = slice_contents(&members).unwrap();
        assert_eq!(port, 6443);
        assert_eq!(eps.as_array().map(Vec::len), Some(2));
        assert_eq!(lease_name("10.0.0.1:6443".parse().unwrap()), "apiserver-10-0-0-1-6443");
    }
}
