//! The api server over a real RaftStore (RocksDB in a temp dir), shared by the integration
//! tests that drive it through its router.

use std::sync::Arc;

use skiff_apiserver::ApiServer;
use skiff_store::RaftStore;

pub struct Api {
    pub server: ApiServer,
    _dir: tempfile::TempDir,
}

/// A bootstrapped api server on a fresh store.
pub async fn api() -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RaftStore::open(&dir.path().join("store")).await.expect("store"));
    let server = ApiServer::new(store, "secret-token".into(), "127.0.0.1:1".into());
    server.bootstrap().await.expect("bootstrap");
    Api { server, _dir: dir }
}
