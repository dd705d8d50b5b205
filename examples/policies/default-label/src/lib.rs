//! A mutating admission policy that gives each object it sees the labels it lacks, from its
//! settings, and never overwrites a label already set.
//!
//! Settings: `{"labels": {"team": "unknown"}}`. The answer is a JSON patch that adds the
//! missing keys, creating `metadata.labels` when the object has none.

use std::collections::BTreeMap;

use serde::Deserialize;
use skiff_policy_sdk::{Operation, Policy, Request, Value, Verdict, patch, settings_as};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    labels: BTreeMap<String, String>,
}

impl Settings {
    fn parse(settings: &Value) -> Result<Settings, String> {
        let settings: Settings = settings_as(settings)?;
        if settings.labels.is_empty() {
            return Err("settings.labels must name at least one label".into());
        }
        for (key, value) in &settings.labels {
            // Refused here, once, rather than by the api server on every object patched.
            if !is_label_key(key) {
                return Err(format!("settings.labels: {key:?} is not a valid label key"));
            }
            if !is_label_value(value) {
                return Err(format!("settings.labels.{key}: {value:?} is not a valid label value"));
            }
        }
        Ok(settings)
    }
}

/// `[prefix/]name`: a DNS subdomain prefix of at most 253 characters and a name as
/// [`is_label_name`].
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// At most 63 characters of `[A-Za-z0-9_.-]`, starting and ending with an alphanumeric; ""
/// is a valid value.
fn is_label_value(value: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_none_or(u8::is_ascii_alphanumeric);
    value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && edge(value.as_bytes().first())
        && edge(value.as_bytes().last())
}

struct DefaultLabel;

impl Policy for DefaultLabel {
    fn validate_settings(settings: &Value) -> Result<(), String> {
        Settings::parse(settings).map(|_| ())
    }

    fn validate(request: &Request, settings: &Value) -> Verdict {
        let settings = match Settings::parse(settings) {
            Ok(settings) => settings,
            Err(e) => return Verdict::deny(e).with_code(500),
        };
        // Only writes of the object itself carry metadata to patch (not DELETE or CONNECT,
        // nor a status or scale subresource).
        let writes = matches!(request.operation, Operation::Create | Operation::Update);
        let object = request.object.as_ref().filter(|_| writes && request.sub_resource.is_empty());
        let Some(object) = object else { return Verdict::allow() };
        Verdict::allow().with_patch(patch::add_missing_labels(object, &settings.labels))
    }
}

skiff_policy_sdk::export_policy!(DefaultLabel);

#[cfg(test)]
mod tests;
