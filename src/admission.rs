//! Admission flags of `skiff server`, as kube-apiserver's: which plugins run, and the
//! `AdmissionConfiguration` file that configures them (PodSecurity's defaults and
//! exemptions).

use std::path::PathBuf;

use anyhow::Context as _;
use skiff_apiserver::ApiServer;
use skiff_apiserver::admission::Config;

#[derive(clap::Args)]
pub struct AdmissionArgs {
    /// Admission plugins to turn on besides the default ones (comma-separated), e.g.
    /// AlwaysPullImages.
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Admission plugins to turn off (comma-separated).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// An `apiserver.config.k8s.io/v1` AdmissionConfiguration (YAML or JSON) with plugin
    /// configurations; Skiff reads PodSecurity's.
    #[arg(long, value_name = "FILE")]
    admission_control_config_file: Option<PathBuf>,
}

impl AdmissionArgs {
    pub fn apply(&self, api: &ApiServer) -> anyhow::Result<()> {
        let mut config =
            Config::with_plugins(&self.enable_admission_plugins, &self.disable_admission_plugins)
                .map_err(|e| anyhow::anyhow!("--enable/--disable-admission-plugins: {e}"))?;
        if let Some(path) = &self.admission_control_config_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let doc: serde_json::Value = serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{}: not YAML", path.display()))?;
            config.configure(&doc).map_err(|e| {
                anyhow::anyhow!("--admission-control-config-file {}: {e}", path.display())
            })?;
        }
        api.set_admission_config(config);
        Ok(())
    }
}

/// How the host of Wasm admission policies is made, on the first policy call: modules come
/// from the node's image store under `dir`, pulled with the node's registry settings when
/// missing.
pub fn policy_host_maker(
    dir: &std::path::Path,
    images: &crate::node::ImageArgs,
) -> skiff_apiserver::admission::MakeHost {
    let root = dir.join("images");
    let config = images.registry_config.clone().unwrap_or_else(|| dir.join("registries.yaml"));
    Box::new(move || {
        let store = skiff_runtime_wasm::images::ImageStore::open(&root)
            .map_err(|e| format!("opening the image store: {e}"))?;
        let registries = skiff_runtime_core::registries::RegistryConfig::load(&config)
            .map_err(|e| format!("reading {}: {e}", config.display()))?;
        store.set_registry_config(registries);
        skiff_wasm_policy::PolicyHost::new(Some(std::sync::Arc::new(store)))
            .map_err(|e| e.to_string())
    })
}
