//! Raft RPC transport. Skiff runs a single voter for now, so there is no peer to talk to:
//! every client fails with `Unreachable`, which openraft treats as "back off and retry".
//! A later change replaces this with RPCs over the api server's HTTPS listener, when
//! `skiff server --join` adds voters.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{Node, NodeId, TypeConfig};

#[derive(Debug, thiserror::Error)]
#[error("no raft transport to node {0} yet (single-voter cluster)")]
struct NoTransport(NodeId);

/// Hands out [`PeerClient`]s.
pub(crate) struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> PeerClient {
        PeerClient { target }
    }
}

/// A client for one peer; every RPC fails as unreachable.
pub(crate) struct PeerClient {
    target: NodeId,
}

impl PeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
