//! `skiff token create|list|delete`: bootstrap tokens for nodes joining with
//! `skiff agent --token <id>.<secret>` (kubeadm's `token` commands). They are
//! `bootstrap.kubernetes.io/token` Secrets in `kube-system`, written through the API with the
//! admin kubeconfig of the data dir.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use skiff_apiserver::bootstrap_tokens::{
    BootstrapToken, NAMESPACE, SECRET_PREFIX, SECRET_TYPE, is_expired_now, secret_field,
};

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The server's data dir, whose admin kubeconfig is used.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// A kubeconfig to use instead of the data dir's.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print it (`<id>.<secret>`).
    Create {
        /// How long the token is valid, e.g. 24h0m0s; 0 for ever.
        #[arg(long, default_value = "24h0m0s", value_parser = skiff_node::resources::parse_duration)]
        ttl: Duration,
        /// A note kept with the token.
        #[arg(long)]
        description: Option<String>,
        /// Extra groups the token's user is in, each `system:bootstrappers:*`.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// List bootstrap tokens.
    List,
    /// Delete bootstrap tokens by id (or whole token); nodes can no longer join with them.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn client(args: &TokenArgs) -> anyhow::Result<kube::Client> {
    let path = match &args.kubeconfig {
        Some(p) => p.clone(),
        None => crate::server::data_dir(args.data_dir.clone()).join("kubeconfig.yaml"),
    };
    let yaml =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    skiff_apiserver::certificates::client_from_kubeconfig(&yaml)
        .await
        .with_context(|| format!("using {}", path.display()))
}

async fn run_async(args: TokenArgs) -> anyhow::Result<()> {
    let secrets = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret"));
    let api: Api<DynamicObject> = Api::namespaced_with(client(&args).await?, NAMESPACE, &secrets);
    match args.command {
        TokenCommand::Create { ttl, description, groups } => {
            let token = BootstrapToken::generate();
            let ttl = (!ttl.is_zero()).then_some(ttl);
            let secret: DynamicObject =
                serde_json::from_value(token.to_secret(ttl, description.as_deref(), &groups)?)?;
            api.create(&PostParams::default(), &secret)
                .await
                .context("creating the bootstrap token Secret")?;
            println!("{token}");
        }
        TokenCommand::List => {
            let list = api
                .list(&ListParams::default().fields(&format!("type={SECRET_TYPE}")))
                .await
                .context("listing bootstrap tokens")?;
            println!(
                "{:<24} {:<22} {:<46} {:<30} EXTRA GROUPS",
                "TOKEN", "EXPIRES", "USAGES", "DESCRIPTION"
            );
            for secret in list.items {
                let v = serde_json::to_value(&secret)?;
                let field = |f: &str| secret_field(&v, f).unwrap_or_default();
                let (id, key) = (field("token-id"), field("token-secret"));
                if id.is_empty() {
                    continue;
                }
                let mut expires = field("expiration");
                if expires.is_empty() {
                    expires = "<forever>".into();
                } else if is_expired_now(&v) {
                    expires = format!("{expires} (expired)");
                }
                let usages: Vec<&str> = [
                    ("usage-bootstrap-authentication", "authentication"),
                    ("usage-bootstrap-signing", "signing"),
                ]
                .into_iter()
                .filter(|(k, _)| field(k) == "true")
                .map(|(_, u)| u)
                .collect();
                let description = field("description");
                println!(
                    "{:<24} {:<22} {:<46} {:<30} {}",
                    format!("{id}.{key}"),
                    expires,
                    usages.join(","),
                    if description.is_empty() { "<none>".into() } else { description },
                    field("auth-extra-groups"),
                );
            }
        }
        TokenCommand::Delete { ids } => {
            for id in ids {
                // Either the id or the whole token.
                let id = id.split('.').next().unwrap_or_default().to_string();
                let name = format!("{SECRET_PREFIX}{id}");
                api.delete(&name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting bootstrap token {id}"))?;
                println!("bootstrap token {id:?} deleted");
            }
        }
    }
    Ok(())
}
