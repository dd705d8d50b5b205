//! What the api server offers a policy (the world's `host` interface): its log, and reads of
//! the cluster objects the policy declared in its WasmAdmissionPolicy's `spec.context`.
//!
//! These call into the host, so they only work inside a component; on a native target (unit
//! tests) they panic.

use serde_json::Value;

use crate::bindings::skiff::policy::host as imports;

pub use imports::LogLevel;

/// A host answer the SDK could not read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host returned an object that is not JSON: a host bug, not retryable.
    #[error("host returned invalid JSON for {what}: {source}")]
    InvalidJson { what: String, source: serde_json::Error },
}

/// Logs `message` in the api server's log, tagged with the policy's name.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message);
}

pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// The object `kind` `namespace`/`name` of `api_version` (e.g. `"v1"`, `"ConfigMap"`) from the
/// api server's cache; `None` when it does not exist or the policy did not declare the kind.
/// `namespace` is "" for cluster-scoped kinds.
pub fn get_object(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, HostError> {
    let Some(json) = imports::get_object(api_version, kind, namespace, name) else {
        return Ok(None);
    };
    serde_json::from_str(&json).map(Some).map_err(|source| HostError::InvalidJson {
        what: format!("{api_version} {kind} {namespace}/{name}"),
        source,
    })
}

/// The objects of `kind` in `namespace` ("" = all namespaces); empty when the policy did not
/// declare the kind.
pub fn list_objects(
    api_version: &str,
    kind: &str,
    namespace: &str,
) -> Result<Vec<Value>, HostError> {
    imports::list_objects(api_version, kind, namespace)
        .iter()
        .map(|json| serde_json::from_str(json))
        .collect::<Result<_, _>>()
        .map_err(|source| HostError::InvalidJson {
            what: format!("a list of {api_version} {kind} in namespace {namespace:?}"),
            source,
        })
}
