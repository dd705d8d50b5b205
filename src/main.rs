//! `skiff`: the whole system in one binary. `skiff server` runs a control plane with an
//! embedded node; `skiff images` manages the node-local image store.

mod admission;
mod agent;
mod auth;
mod node;
mod server;
mod token;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-compatible orchestrator for WebAssembly and OCI pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the server's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a control plane (store, api server, scheduler, controllers) with an embedded node.
    Server(server::ServerArgs),
    /// Run a node only, joined to a cluster (`--server URL --token T`).
    Agent(agent::AgentArgs),
    /// Write kubeconfigs for users: `skiff kubeconfig create USER --group G`.
    Kubeconfig {
        #[command(subcommand)]
        command: KubeconfigCommand,
    },
    /// Manage bootstrap tokens for joining nodes (`create`, `list`, `delete`).
    Token(token::TokenArgs),
    /// Manage the node-local image store.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Subcommand)]
enum KubeconfigCommand {
    /// A kubeconfig for a new user, authenticating with a client certificate the cluster CA
    /// issues (CN = user, O = each group); RBAC decides what the user may do.
    Create(auth::KubeconfigCreateArgs),
    /// Re-issue the admin kubeconfig: a fresh client certificate (CN skiff-admin, O
    /// system:masters) for its current context, and the admin token as user
    /// `skiff-admin-token` (context `skiff-token`). Rewrites DATA_DIR/kubeconfig.yaml unless
    /// `-o` names another file.
    Admin(auth::KubeconfigAdminArgs),
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Import an image: a bare `.wasm` file or an OCI tarball holding a Wasm artifact goes to
    /// the node's Wasm store; an OCI container image (non-Wasm layers) goes to containerd.
    Import {
        file: PathBuf,
        /// Name (`repo:tag`) for a bare module, or to override the tarball's own names.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, env = "SKIFF_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// containerd's socket (`unix:///path` or a path), for OCI container images.
        #[arg(long, env = "SKIFF_CONTAINER_RUNTIME_ENDPOINT")]
        container_runtime_endpoint: Option<String>,
    },
    /// List imported images.
    List {
        #[arg(long, env = "SKIFF_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Remove images from the node's Wasm store, by name or image id (`sha256:…`). Containers
    /// already running keep running; their blobs go at the next prune.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(long, env = "SKIFF_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Delete blobs of the Wasm store that no image name refers to (older than ten minutes, so
    /// pulls in progress keep theirs).
    Prune {
        #[arg(long, env = "SKIFF_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=warn,kube=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::Server(_) | Command::Agent(_)) {
        match node::raise_open_file_limit() {
            Ok(limit) => tracing::debug!(limit, "open-file limit"),
            Err(e) => tracing::warn!(error = %e, "raising the open-file limit failed"),
        }
    }
    match cli.command {
        Command::Server(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("skiff-api")
                .build()?;
            rt.block_on(server::run(args))
        }
        Command::Agent(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("skiff-agent")
                .build()?;
            rt.block_on(agent::run(args))
        }
        Command::Kubeconfig { command: KubeconfigCommand::Create(args) } => {
            auth::kubeconfig_create(args)
        }
        Command::Kubeconfig { command: KubeconfigCommand::Admin(args) } => {
            auth::kubeconfig_admin(args)
        }
        Command::Token(args) => token::run(args),
        Command::Images {
            command: ImagesCommand::Import { file, name, data_dir, container_runtime_endpoint },
        } => {
            let store = skiff_runtime_wasm::images::ImageStore::open(
                &server::data_dir(data_dir).join("images"),
            )?;
            match store.import(&file, name.as_deref()) {
                Ok(images) => {
                    for image in images {
                        println!("imported {} ({})", image.name, image.digest);
                    }
                }
                Err(skiff_runtime_wasm::images::ImageError::NoWasmLayer { .. }) => {
                    let names = skiff_runtime_cri::import::import_oci_image(
                        container_runtime_endpoint.as_deref(),
                        &file,
                        name.as_deref(),
                    )?;
                    for name in names {
                        println!("imported {name} into containerd");
                    }
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Command::Images { command: ImagesCommand::Rm { images, data_dir } } => {
            let store = skiff_runtime_wasm::images::ImageStore::open(
                &server::data_dir(data_dir).join("images"),
            )?;
            for name in store.remove(&images)? {
                println!("removed {name}");
            }
            Ok(())
        }
        Command::Images { command: ImagesCommand::Prune { data_dir } } => {
            let store = skiff_runtime_wasm::images::ImageStore::open(
                &server::data_dir(data_dir).join("images"),
            )?;
            let freed = store.sweep(std::time::Duration::from_secs(600))?;
            println!("freed {freed} bytes");
            Ok(())
        }
        Command::Images { command: ImagesCommand::List { data_dir } } => {
            let store = skiff_runtime_wasm::images::ImageStore::open(
                &server::data_dir(data_dir).join("images"),
            )?;
            println!("{:<40} {:<73} SIZE", "NAME", "DIGEST");
            for image in store.list()? {
                println!("{:<40} {:<73} {}", image.name, image.entry.digest, image.entry.size);
            }
            Ok(())
        }
    }
}
