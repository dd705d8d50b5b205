//! The in-cluster `kube::Client`, as a pod's service account sees the api server.
//!
//! Natively it is kube's own: `Config::incluster()` (the `KUBERNETES_SERVICE_*` address, the
//! mounted token, reloaded by kube every minute, and `ca.crt`) over hyper and rustls. On
//! wasm32-wasip2 kube's TLS stack does not build (see the README), so requests go through
//! `wasi:http` ([`crate::wasip2::transport`]) to the same address, the host verifying the
//! server with the cluster CA.

/// The directory of the pod's projected service account credentials.
#[cfg(target_os = "wasi")]
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why there is no client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[cfg(not(target_os = "wasi"))]
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[cfg(not(target_os = "wasi"))]
    #[error("building the client: {0}")]
    Build(#[from] kube::Error),
    #[cfg(target_os = "wasi")]
    #[error("{0} is not set: not running in a pod?")]
    MissingEnv(&'static str),
    #[cfg(target_os = "wasi")]
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// kube's in-cluster client. Call within the tokio runtime (the client spawns its buffer).
#[cfg(not(target_os = "wasi"))]
pub fn in_cluster() -> Result<kube::Client, ClientError> {
    let config = kube::Config::incluster()?;
    Ok(kube::Client::try_from(config)?)
}

/// The in-cluster client over `wasi:http`. Call within the tokio runtime.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub fn in_cluster() -> Result<kube::Client, ClientError> {
    let env = |name: &'static str| std::env::var(name).map_err(|_| ClientError::MissingEnv(name));
    let host = env("KUBERNETES_SERVICE_HOST")?;
    let port = env("KUBERNETES_SERVICE_PORT")?;
    // An IPv6 literal goes in brackets.
    let authority =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let dir = std::path::Path::new(SERVICE_ACCOUNT_DIR);
    let namespace_file = dir.join("namespace");
    let namespace = std::fs::read_to_string(&namespace_file).map_err(|source| {
        ClientError::Read { path: namespace_file.display().to_string(), source }
    })?;
    let transport = crate::wasip2::transport::WasiHttp::new(authority, dir.join("token"));
    Ok(kube::Client::new(transport, namespace.trim().to_string()))
}

#[cfg(all(target_os = "wasi", not(target_env = "p2")))]
compile_error!("build the operator for wasm32-wasip2: it reaches the api server through wasi:http");
