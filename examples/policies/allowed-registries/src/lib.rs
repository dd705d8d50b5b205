//! An admission policy that admits a pod, or a workload's pod template, only when every
//! container's image (init and ephemeral containers too) comes from an allowed registry.
//!
//! Settings: `{"registries": ["skiff.local", "registry.example.com"]}`, each a registry host
//! with an optional port; `docker.io` stands for Docker Hub. Kubewarden's
//! `trusted-repos` policy and Gatekeeper's `allowedrepos` template do the same job.

use serde::Deserialize;
use skiff_policy_sdk::{Policy, Request, Value, Verdict, pod, settings_as};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    registries: Vec<String>,
}

impl Settings {
    fn parse(settings: &Value) -> Result<Settings, String> {
        let settings: Settings = settings_as(settings)?;
        if settings.registries.is_empty() {
            return Err("settings.registries must name at least one registry".into());
        }
        for registry in &settings.registries {
            if registry.is_empty() || registry.contains('/') {
                return Err(format!(
                    "settings.registries: {registry:?} is not a registry host[:port]"
                ));
            }
        }
        Ok(settings)
    }

    fn allows(&self, image: &str) -> bool {
        let registry = registry_of(image);
        self.registries.iter().any(|allowed| normalize(allowed).eq_ignore_ascii_case(registry))
    }
}

/// The registry an image reference pulls from, by the rule Docker and Kubernetes use: the
/// first path segment is a registry host when it has a `.` or a `:`, or is `localhost`;
/// otherwise the image is on Docker Hub (`nginx:1.27` is `docker.io/library/nginx:1.27`).
/// The runtime's own parser (runtime/wasm `Reference::parse`) is not reachable from a
/// guest, so this is the one part of it a policy needs.
fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => normalize(first),
        _ => "docker.io",
    }
}

/// Docker Hub's other names are docker.io.
fn normalize(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The images of `spec` that `settings` does not allow, each once, in container order.
fn refused_images<'a>(settings: &Settings, spec: &'a Value) -> Vec<&'a str> {
    let mut refused: Vec<&str> = Vec::new();
    for (_, container) in pod::containers(spec) {
        // A container without an image is left to the api server's validation.
        let Some(image) = container.get("image").and_then(Value::as_str) else { continue };
        if !settings.allows(image) && !refused.contains(&image) {
            refused.push(image);
        }
    }
    refused
}

fn refusal(settings: &Settings, refused: &[&str]) -> String {
    let allowed = settings.registries.join(", ");
    match refused {
        [image] => format!("image {image:?} is not from an allowed registry ({allowed})"),
        images => {
            let images: Vec<String> = images.iter().map(|i| format!("{i:?}")).collect();
            format!("images {} are not from an allowed registry ({allowed})", images.join(", "))
        }
    }
}

struct AllowedRegistries;

impl Policy for AllowedRegistries {
    fn validate_settings(settings: &Value) -> Result<(), String> {
        Settings::parse(settings).map(|_| ())
    }

    fn validate(request: &Request, settings: &Value) -> Verdict {
        let settings = match Settings::parse(settings) {
            Ok(settings) => settings,
            Err(e) => return Verdict::deny(e).with_code(500),
        };
        let Some(spec) = request.pod_spec() else { return Verdict::allow() };
        let refused = refused_images(&settings, spec);
        if refused.is_empty() {
            Verdict::allow()
        } else {
            Verdict::deny(refusal(&settings, &refused))
        }
    }
}

skiff_policy_sdk::export_policy!(AllowedRegistries);

#[cfg(test)]
mod tests;
