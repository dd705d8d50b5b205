//! `static-site-operator`: turns each `StaticSite` (`staticsites.web.skiff.dev`) into a
//! ConfigMap of its files, a Deployment of site-server Wasm pods mounting it, and a Service,
//! and reports their readiness in the site's status; a finalizer deletes them with the site.
//! A watch-fed work queue drives it (`controller.rs`: the sites and the children it labels,
//! level-triggered, resynced on start and every five minutes).
//!
//! Runs in a pod as its service account: built for wasm32-wasip2 (a Wasm pod, the api server
//! reached through `wasi:http`) or natively (an OCI pod, kube's hyper and rustls stack).
//! Env: `SITE_IMAGE`, the sites' pod image (default `site-server:latest`).

mod client;
mod controller;
mod desired;
mod finalizer;
mod queue;
mod reconcile;
mod site;
#[cfg(target_os = "wasi")]
mod wasip2;

use std::process::ExitCode;
use std::sync::Arc;

use crate::desired::DEFAULT_SITE_IMAGE;
use crate::reconcile::Context;

fn main() -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            println!("static-site-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("static-site-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One thread is plenty for a handful of watches.
#[cfg(not(target_os = "wasi"))]
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

#[cfg(target_os = "wasi")]
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let runtime = wasip2::reactor::runtime()?;
    runtime.spawn(wasip2::reactor::ticker());
    Ok(runtime)
}

async fn run() -> Result<(), client::ClientError> {
    let client = client::in_cluster()?;
    let site_image = std::env::var("SITE_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| DEFAULT_SITE_IMAGE.to_string());
    println!(
        "static-site-operator: watching StaticSites in all namespaces, site image {site_image}"
    );
    let controller = controller::run(Arc::new(Context { client, site_image }));
    // A Wasm pod is stopped by dropping its instance. A process in a container is PID 1, which
    // SIGTERM does not end unless it says so.
    #[cfg(not(target_os = "wasi"))]
    {
        use futures::future::{Either, select};
        if let Either::Right(((), _)) =
            select(std::pin::pin!(controller), std::pin::pin!(terminated())).await
        {
            println!("static-site-operator: terminated");
        }
    }
    #[cfg(target_os = "wasi")]
    controller.await;
    Ok(())
}

/// Ready on SIGTERM or SIGINT; never when they cannot be listened for.
#[cfg(not(target_os = "wasi"))]
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            futures::future::select(std::pin::pin!(term.recv()), std::pin::pin!(int.recv())).await;
        }
        (Err(e), _) | (_, Err(e)) => {
            println!("static-site-operator: cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
        }
    }
}
