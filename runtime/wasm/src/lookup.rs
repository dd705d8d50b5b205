//! `wasi:sockets/ip-name-lookup` answered from the cluster DNS's data in-process: a guest's
//! name lookup (what `getaddrinfo` becomes in a Wasm guest) walks the pod's search path over
//! the node's watch-fed cache, as an OCI pod's resolver asks the cluster DNS server; names the
//! cluster does not know go to the node's resolver. This replaces wasmtime-wasi's own
//! implementation of the interface (which asks only the node's resolver) in the linkers.

use std::net::IpAddr;
use std::sync::Arc;

use skiff_runtime_core::services::{NoServices, ServiceDirectory};
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress};
use wasmtime_wasi::p2::{DynPollable, Network, Pollable, subscribe};

/// The interface replaced (the version wasmtime-wasi registers; guests' 0.2.x imports
/// resolve to it).
const INTERFACE: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// What a guest's lookups are answered from: the node's directory and the pod's namespace.
#[derive(Clone)]
pub(crate) struct Names {
    pub(crate) services: Arc<dyn ServiceDirectory>,
    pub(crate) namespace: Arc<str>,
}

impl Default for Names {
    fn default() -> Self {
        Names { services: Arc::new(NoServices), namespace: "".into() }
    }
}

/// Store data that can answer a guest's lookups.
pub(crate) trait GuestNames: WasiView + 'static {
    fn names(&self) -> &Names;
}

/// A lookup in flight or answered (`resolve-address-stream`).
pub(crate) enum Resolving {
    Done(std::vec::IntoIter<IpAddr>),
    Failed(ErrorCode),
    Pending(tokio::task::JoinHandle<Result<Vec<IpAddr>, ErrorCode>>),
}

#[wasmtime_wasi::async_trait]
impl Pollable for Resolving {
    async fn ready(&mut self) {
        if let Resolving::Pending(task) = self {
            *self = match task.await {
                Ok(Ok(ips)) => Resolving::Done(ips.into_iter()),
                Ok(Err(code)) => Resolving::Failed(code),
                Err(_) => Resolving::Failed(ErrorCode::PermanentResolverFailure),
            };
        }
    }
}

/// What a lookup of `name` starts as: an answer from the cluster's data, an IP literal, or a
/// task asking the node's resolver.
fn start(names: &Names, name: &str) -> Resolving {
    if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Resolving::Done(vec![ip].into_iter());
    }
    if name.is_empty() || name.len() > 253 || name.contains(|c: char| c.is_whitespace()) {
        return Resolving::Failed(ErrorCode::InvalidArgument);
    }
    match names.services.lookup_host(name, &names.namespace) {
        Some(ips) if ips.is_empty() => Resolving::Failed(ErrorCode::NameUnresolvable),
        Some(ips) => Resolving::Done(ips.into_iter()),
        None => {
            let name = name.to_string();
            Resolving::Pending(tokio::spawn(async move {
                match tokio::net::lookup_host((name.as_str(), 0)).await {
                    Ok(addrs) => Ok(addrs.map(|a| a.ip().to_canonical()).collect()),
                    Err(_) => Err(ErrorCode::NameUnresolvable),
                }
            }))
        }
    }
}

/// Replace `wasi:sockets/ip-name-lookup` in `linker` (which already has wasmtime-wasi's).
pub(crate) fn add_to_linker<T: GuestNames>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut inst = linker.instance(INTERFACE)?;
    inst.resource(
        "resolve-address-stream",
        ResourceType::host::<Resolving>(),
        |mut store, rep| {
            store.data_mut().ctx().table.delete(Resource::<Resolving>::new_own(rep))?;
            Ok(())
        },
    )?;
    inst.func_wrap(
        "resolve-addresses",
        |mut store, (network, name): (Resource<Network>, String)| {
            let names = store.data().names().clone();
            let data = store.data_mut();
            let table = data.ctx().table;
            // The network handle is the capability to look names up.
            table.get(&network)?;
            let result = match start(&names, &name) {
                Resolving::Failed(code) => Err(code),
                resolving => Ok(table.push(resolving)?),
            };
            Ok((result,))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store, (this,): (Resource<Resolving>,)| {
            let table = store.data_mut().ctx().table;
            let resolving = table.get_mut(&this)?;
            if let Resolving::Pending(task) = resolving {
                if !task.is_finished() {
                    return Ok((Err::<Option<IpAddress>, _>(ErrorCode::WouldBlock),));
                }
                let answer = futures::FutureExt::now_or_never(task)
                    .map(|r| r.unwrap_or(Err(ErrorCode::PermanentResolverFailure)))
                    .unwrap_or(Err(ErrorCode::WouldBlock));
                *resolving = match answer {
                    Ok(ips) => Resolving::Done(ips.into_iter()),
                    Err(code) => Resolving::Failed(code),
                };
            }
            Ok((match resolving {
                Resolving::Done(ips) => Ok(ips.next().map(IpAddress::from)),
                Resolving::Failed(code) => Err(*code),
                Resolving::Pending(_) => Err(ErrorCode::WouldBlock),
            },))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store, (this,): (Resource<Resolving>,)| {
            let table = store.data_mut().ctx().table;
            let pollable: Resource<DynPollable> = subscribe(table, this)?;
            Ok((pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime_core::services::{Protocol, ServiceRoute};
    use std::net::SocketAddr;

    struct Cluster;

    impl ServiceDirectory for Cluster {
        fn lookup_host(&self, name: &str, ns: &str) -> Option<Vec<IpAddr>> {
            match (name, ns) {
                ("web", "shop") => Some(vec![IpAddr::from([10, 96, 0, 20])]),
                ("nosuch", _) => Some(vec![]),
                (n, _) if n.ends_with(".cluster.local") => Some(vec![]),
                _ => None,
            }
        }

        fn route(&self, _: IpAddr, _: SocketAddr, _: Protocol) -> ServiceRoute {
            ServiceRoute::Direct
        }
    }

    fn names() -> Names {
        Names { services: Arc::new(Cluster), namespace: "shop".into() }
    }

    #[tokio::test]
    async fn start_should_answer_cluster_names_in_process() {
        let n = names();
        let ips = |r: Resolving| match r {
            Resolving::Done(ips) => Some(ips.collect::<Vec<_>>()),
            _ => None,
        };
        assert_eq!(ips(start(&n, "web")), Some(vec![IpAddr::from([10, 96, 0, 20])]));
        assert_eq!(ips(start(&n, "10.1.2.3")), Some(vec![IpAddr::from([10, 1, 2, 3])]));
        assert!(matches!(start(&n, "nosuch"), Resolving::Failed(ErrorCode::NameUnresolvable)));
        assert!(matches!(start(&n, ""), Resolving::Failed(ErrorCode::InvalidArgument)));
        // Not the cluster's: the node's resolver (answered later; `localhost` comes from the
        // hosts file, no packet leaves).
        let mut pending = start(&n, "localhost");
        assert!(matches!(pending, Resolving::Pending(_)));
        pending.ready().await;
        assert!(matches!(pending, Resolving::Done(_)));
    }
}
