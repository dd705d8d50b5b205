//! Pod addresses on this node. The node's `spec.podCIDR` is split in two halves: the lower
//! one goes to the CRI runtime's network plugin (OCI pods get their addresses through the CNI
//! bridge), the upper one to Wasm pods. Wasm pods need no interface of their own: the upper
//! half is routed as `local` on the loopback device, so Linux accepts any of its addresses as
//! the node's own — a Wasm pod's listeners bind its address, reachable from the node and from
//! OCI pods (through the bridge's gateway). Where the node may not change routes, Wasm pods get
//! addresses in 127.0.0.0/8 instead, which Linux answers on loopback with no setup.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A thread panicked while assigning addresses; permanent for this node process.
    #[error("address table poisoned")]
    Poisoned,
    /// Every address of the Wasm range is taken; one frees up when a pod leaves.
    #[error("no free address left in {range} for Wasm pods")]
    Exhausted { range: String },
    #[error("running ip: {0}")]
    RunIp(#[source] std::io::Error),
    #[error("adding the local route for {block}: {stderr}")]
    Route { block: String, stderr: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    base: u32,
    prefix: u32,
}

impl Block {
    fn parse(cidr: &str) -> Option<Block> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u32 = bits.parse().ok()?;
        (prefix <= 30).then_some(Block { base: u32::from(ip), prefix })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn halves(&self) -> (Block, Block) {
        let half = Block { base: self.base, prefix: self.prefix + 1 };
        (half, Block { base: self.base + half.size(), prefix: self.prefix + 1 })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base & mask
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// How Wasm pods' addresses are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmAddressing {
    /// From the pod CIDR's upper half, routed `local` on loopback.
    PodCidr,
    /// From 127.0.0.0/8 (the node could not add the route).
    Loopback,
}

/// The node's pod address plan and the Wasm pods' allocations.
pub struct PodNetwork {
    /// For the CRI runtime's network plugin.
    pub cri_cidr: Option<String>,
    wasm: Block,
    pub addressing: WasmAddressing,
    state: Mutex<Allocations>,
}

#[derive(Default)]
struct Allocations {
    by_pod: HashMap<String, Ipv4Addr>,
    used: BTreeSet<u32>,
    next: u32,
}

impl PodNetwork {
    /// Plan the node's addresses from its pod CIDR, adding the local route for the Wasm half
    /// (falling back to loopback addresses if that is not allowed). Without a pod CIDR, Wasm
    /// pods use loopback addresses and OCI pods whatever their network plugin gives.
    pub fn setup(pod_cidr: Option<&str>) -> PodNetwork {
        let Some(block) = pod_cidr.and_then(Block::parse) else {
            return PodNetwork {
                cri_cidr: None,
                wasm: Block { base: u32::from(Ipv4Addr::new(127, 16, 0, 0)), prefix: 12 },
                addressing: WasmAddressing::Loopback,
                state: Mutex::default(),
            };
        };
        let (cri, wasm) = block.halves();
        let addressing = match add_local_route(&wasm) {
            Ok(()) => WasmAddressing::PodCidr,
            Err(e) => {
                tracing::warn!(range = %wasm, error = %e, "cannot route the Wasm pods' addresses locally; Wasm pods get loopback addresses");
                WasmAddressing::Loopback
            }
        };
        PodNetwork { cri_cidr: Some(cri.to_string()), wasm, addressing, state: Mutex::default() }
    }

    /// The range Wasm pods' addresses come from.
    pub fn wasm_range(&self) -> String {
        match self.addressing {
            WasmAddressing::PodCidr => self.wasm.to_string(),
            WasmAddressing::Loopback => {
                format!("{}/{}", self.to_loopback(self.wasm.base), self.wasm.prefix.max(8))
            }
        }
    }

    fn to_loopback(&self, ip: u32) -> Ipv4Addr {
        match self.addressing {
            WasmAddressing::PodCidr => Ipv4Addr::from(ip),
            // Keep the low 24 bits, so nodes of one cluster stay apart on a shared host.
            WasmAddressing::Loopback => Ipv4Addr::from((127u32 << 24) | (ip & 0x00ff_ffff)),
        }
    }

    /// The address of the Wasm pod `uid`: the one it already has (`previous`, from its status,
    /// when still valid here), else the next free one.
    pub fn assign(&self, uid: &str, previous: Option<&str>) -> Result<Ipv4Addr, NetworkError> {
        let mut st = self.state.lock().map_err(|_| NetworkError::Poisoned)?;
        if let Some(ip) = st.by_pod.get(uid) {
            return Ok(*ip);
        }
        let offset_of = |ip: Ipv4Addr| -> Option<u32> {
            let raw = u32::from(ip);
            let low = self.wasm.base & 0x00ff_ffff;
            match self.addressing {
                WasmAddressing::PodCidr => self.wasm.contains(ip).then(|| raw - self.wasm.base),
                WasmAddressing::Loopback => (raw >> 24 == 127
                    && (raw & 0x00ff_ffff) >= low
                    && (raw & 0x00ff_ffff) < low + self.wasm.size())
                .then(|| (raw & 0x00ff_ffff) - low),
            }
        };
        if let Some(offset) = previous.and_then(|p| p.parse().ok()).and_then(offset_of)
            && offset > 0
            && offset < self.wasm.size() - 1
            && !st.used.contains(&offset)
        {
            st.used.insert(offset);
            let ip = self.to_loopback(self.wasm.base + offset);
            st.by_pod.insert(uid.to_string(), ip);
            return Ok(ip);
        }
        let size = self.wasm.size();
        // Skip the block's first and last addresses.
        for step in 0..size {
            let offset = 1 + (st.next + step) % (size - 2);
            if !st.used.contains(&offset) {
                st.used.insert(offset);
                st.next = offset;
                let ip = self.to_loopback(self.wasm.base + offset);
                st.by_pod.insert(uid.to_string(), ip);
                return Ok(ip);
            }
        }
        Err(NetworkError::Exhausted { range: self.wasm_range() })
    }

    pub fn release(&self, uid: &str) {
        if let Ok(mut st) = self.state.lock()
            && let Some(ip) = st.by_pod.remove(uid)
        {
            let raw = u32::from(ip) & 0x00ff_ffff;
            let offset = raw.wrapping_sub(self.wasm.base & 0x00ff_ffff);
            st.used.remove(&offset);
        }
    }
}

fn add_local_route(block: &Block) -> Result<(), NetworkError> {
    let out = std::process::Command::new("ip")
        .args(["route", "replace", "local", &block.to_string(), "dev", "lo", "scope", "host"])
        .output()
        .map_err(NetworkError::RunIp)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Route {
            block: block.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_plan(cidr: &str) -> PodNetwork {
        let block = Block::parse(cidr).unwrap();
        let (cri, wasm) = block.halves();
        PodNetwork {
            cri_cidr: Some(cri.to_string()),
            wasm,
            addressing: WasmAddressing::Loopback,
            state: Mutex::default(),
        }
    }

    #[test]
    fn halves_should_split_the_node_block() {
        let (a, b) = Block::parse("10.128.64.0/18").unwrap().halves();
        assert_eq!(a.to_string(), "10.128.64.0/19");
        assert_eq!(b.to_string(), "10.128.96.0/19");
    }

    #[test]
    fn assign_should_give_distinct_addresses_and_keep_previous_ones() {
        let net = loopback_plan("10.128.64.0/18");
        assert_eq!(net.cri_cidr.as_deref(), Some("10.128.64.0/19"));
        let a = net.assign("a", None).unwrap();
        let b = net.assign("b", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, Ipv4Addr::new(127, 128, 96, 1));
        assert_eq!(net.assign("a", None).unwrap(), a);
        // A pod that had an address before a restart keeps it.
        let c = net.assign("c", Some("127.128.96.77")).unwrap();
        assert_eq!(c, Ipv4Addr::new(127, 128, 96, 77));
        // Someone else's address is not handed out twice.
        let d = net.assign("d", Some("127.128.96.77")).unwrap();
        assert_ne!(d, c);
        net.release("c");
        assert_eq!(net.assign("e", Some("127.128.96.77")).unwrap(), c);
    }

    #[test]
    fn assign_should_report_an_exhausted_range() {
        // A /28 node block leaves a /29 for Wasm pods: six usable addresses.
        let net = loopback_plan("10.0.0.0/28");
        for i in 0..6 {
            net.assign(&format!("pod-{i}"), None).unwrap();
        }
        let err = net.assign("one-too-many", None).unwrap_err();
        assert!(matches!(err, NetworkError::Exhausted { .. }), "{err:?}");
        assert_eq!(err.to_string(), "no free address left in 127.0.0.8/29 for Wasm pods");
    }
}
