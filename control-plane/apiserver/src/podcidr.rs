//! Node pod CIDRs: every Node created without `spec.podCIDR` is given the lowest free block of
//! the cluster CIDR, held by a claim key written in the Node's own transaction (so two nodes
//! never share a block) and released when the Node is deleted.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_store::TxnOp;

use crate::errors::ApiError;

const CLAIM_PREFIX: &str = "/registry/ranges/podcidrs/";

/// The cluster's pod address space and the size of each node's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidrs {
    pub network: Ipv4Addr,
    pub prefix: u32,
    /// Prefix length of one node's block.
    pub node_prefix: u32,
}

impl Default for PodCidrs {
    /// 10.128.0.0/9 in /18 blocks: 512 nodes of 16,382 pod addresses each (a node runs
    /// thousands of Wasm pods). Clear of the service CIDR 10.96.0.0/12.
    fn default() -> Self {
        PodCidrs { network: Ipv4Addr::new(10, 128, 0, 0), prefix: 9, node_prefix: 18 }
    }
}

/// Why a cluster CIDR and node prefix length do not make a pod address space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodCidrError {
    #[error("{0:?} is not a CIDR")]
    NotCidr(String),
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    #[error("{0:?} is not a prefix length")]
    NotPrefixLength(String),
    #[error("a node block of /{node_prefix} does not fit the cluster CIDR /{prefix}")]
    BlockDoesNotFit { prefix: u32, node_prefix: u32 },
    #[error("{0} has host bits set")]
    HostBitsSet(String),
}

impl PodCidrs {
    /// Parse `a.b.c.d/n` and a node prefix length.
    pub fn parse(cidr: &str, node_prefix: u32) -> Result<Self, PodCidrError> {
        let (ip, bits) =
            cidr.split_once('/').ok_or_else(|| PodCidrError::NotCidr(cidr.to_string()))?;
        let network: Ipv4Addr = ip.parse().map_err(|_| PodCidrError::NotIpv4(ip.to_string()))?;
        let prefix: u32 =
            bits.parse().map_err(|_| PodCidrError::NotPrefixLength(bits.to_string()))?;
        if prefix > 30 || node_prefix > 30 || node_prefix < prefix {
            return Err(PodCidrError::BlockDoesNotFit { prefix, node_prefix });
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        if u32::from(network) & !mask != 0 {
            return Err(PodCidrError::HostBitsSet(cidr.to_string()));
        }
        Ok(PodCidrs { network, prefix, node_prefix })
    }

    fn blocks(&self) -> u32 {
        1u32 << (self.node_prefix - self.prefix)
    }

    fn block(&self, index: u32) -> String {
        let base = u32::from(self.network) + (index << (32 - self.node_prefix));
        format!("{}/{}", Ipv4Addr::from(base), self.node_prefix)
    }
}

fn claim_key(cidr: &str) -> String {
    format!("{CLAIM_PREFIX}{}", cidr.replace('/', "_"))
}

/// The claim keys already taken, to pick a free block.
pub fn claim_prefix() -> &'static str {
    CLAIM_PREFIX
}

/// Give `node` the lowest block not in `taken` (claim keys), unless it names its own
/// `spec.podCIDR`; returns the claim to write with it.
/// `taken` holds the claim keys; `from` is the block the search for a free one starts at (and
/// wraps around from): 0 gives the lowest free block, a random start lets nodes created at
/// the same moment, after colliding once, each find a different block.
pub fn assign(
    cidrs: &PodCidrs,
    node: &mut Value,
    taken: &HashSet<String>,
    from: u32,
) -> Result<Vec<TxnOp>, ApiError> {
    let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let claim =
        |cidr: &str| TxnOp::Create { key: claim_key(cidr), value: name.clone().into_bytes() };
    if let Some(own) =
        node.pointer("/spec/podCIDR").and_then(Value::as_str).filter(|s| !s.is_empty())
    {
        let own = own.to_string();
        if node.pointer("/spec/podCIDRs").is_none() {
            node["spec"]["podCIDRs"] = json!([own]);
        }
        // Claimed when inside the cluster CIDR, so no other node is given it.
        return Ok(if cidrs.contains(&own) { vec![claim(&own)] } else { Vec::new() });
    }
    let n = cidrs.blocks();
    let free = (0..n)
        .map(|i| cidrs.block((i + from % n.max(1)) % n))
        .find(|b| !taken.contains(&claim_key(b)));
    let Some(block) = free else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "no pod CIDR left for node {name:?}: all {} blocks of /{} in {}/{} are taken",
                cidrs.blocks(),
                cidrs.node_prefix,
                cidrs.network,
                cidrs.prefix
            ),
        ));
    };
    if !node.get("spec").is_some_and(Value::is_object) {
        node["spec"] = json!({});
    }
    node["spec"]["podCIDR"] = json!(block);
    node["spec"]["podCIDRs"] = json!([block]);
    Ok(vec![claim(&block)])
}

impl PodCidrs {
    fn contains(&self, cidr: &str) -> bool {
        let Some((ip, _)) = cidr.split_once('/') else { return false };
        let Ok(ip) = ip.parse::<Ipv4Addr>() else { return false };
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
        u32::from(ip) & mask == u32::from(self.network)
    }
}

/// The claim a Node holds, to delete with it.
pub fn release(node: &Value) -> Option<String> {
    node.pointer("/spec/podCIDR").and_then(Value::as_str).map(claim_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_should_pick_the_lowest_free_block() {
        let cidrs = PodCidrs::parse("10.200.0.0/16", 18).unwrap();
        let mut a = json!({"metadata": {"name": "a"}});
        let ops = assign(&cidrs, &mut a, &HashSet::new(), 0).unwrap();
        assert_eq!(a["spec"]["podCIDR"], "10.200.0.0/18");
        assert_eq!(a["spec"]["podCIDRs"], json!(["10.200.0.0/18"]));
        let TxnOp::Create { key, .. } = &ops[0] else { panic!("claim expected") };
        let mut b = json!({"metadata": {"name": "b"}, "spec": {}});
        let taken = HashSet::from([key.clone()]);
        assign(&cidrs, &mut b, &taken, 0).unwrap();
        assert_eq!(b["spec"]["podCIDR"], "10.200.64.0/18");
        // A search that starts further on wraps around past the end.
        let mut c = json!({"metadata": {"name": "c"}});
        assign(&cidrs, &mut c, &taken, 2).unwrap();
        assert_eq!(c["spec"]["podCIDR"], "10.200.128.0/18");
        let mut d = json!({"metadata": {"name": "d"}});
        let taken = HashSet::from([claim_key("10.200.0.0/18"), claim_key("10.200.192.0/18")]);
        assign(&cidrs, &mut d, &taken, 3).unwrap();
        assert_eq!(d["spec"]["podCIDR"], "10.200.64.0/18");
        assert_eq!(release(&a).as_deref(), Some(key.as_str()));
    }

    #[test]
    fn assign_should_fail_clearly_when_the_space_is_full() {
        let cidrs = PodCidrs::parse("10.200.0.0/17", 18).unwrap();
        let taken: HashSet<String> = (0..2).map(|i| claim_key(&cidrs.block(i))).collect();
        let err = assign(&cidrs, &mut json!({"metadata": {"name": "c"}}), &taken, 1).unwrap_err();
        assert_eq!(err.code, 503);
        assert!(err.message.contains("no pod CIDR left"), "{}", err.message);
    }

    #[test]
    fn parse_should_reject_bad_cidrs() {
        assert_eq!(
            PodCidrs::parse("10.0.0.1/8", 16),
            Err(PodCidrError::HostBitsSet("10.0.0.1/8".into()))
        );
        assert_eq!(
            PodCidrs::parse("10.0.0.0/16", 8),
            Err(PodCidrError::BlockDoesNotFit { prefix: 16, node_prefix: 8 })
        );
        assert!(PodCidrs::parse("nonsense", 18).is_err());
    }
}
