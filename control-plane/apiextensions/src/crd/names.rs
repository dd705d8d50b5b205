//! kube's `NamingConditionController` (`pkg/controller/status/naming_controller.go`): which
//! of the names a CRD asks for it may have, given the names the other CRDs of its group
//! were given, and the `NamesAccepted` condition that says so.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// What a CRD's names come to.
#[derive(Debug, Clone, PartialEq)]
pub struct NamesResult {
    /// `status.acceptedNames`: the names asked for where they are free, else the ones
    /// accepted before.
    pub names: Value,
    /// `NamesAccepted` is `True`.
    pub accepted: bool,
    /// `NoConflicts`, else the last conflict found: `PluralConflict`, `SingularConflict`,
    /// `ShortNamesConflict`, `KindConflict` or `ListKindConflict`.
    pub reason: String,
    /// `no conflicts found`, or e.g. `"widgets" is already in use`.
    pub message: String,
}

fn text<'v>(names: &'v Value, key: &str) -> &'v str {
    names.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list(names: &Value, key: &str) -> Vec<String> {
    names
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `requested` may be had: it is what was accepted, or nobody in the group has it.
fn equal_to_accepted_or_fresh(
    requested: &str,
    accepted: &str,
    used: &BTreeSet<String>,
) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The names `crd` is given among `others` (the cluster's CRDs; those of other groups
/// and `crd` itself, by name, are skipped). As kube, the names taken are the accepted names
/// of every CRD of the group, `crd`'s own included. Its `spec.names` are read defaulted
/// (`singular` the lowercase kind, `listKind` the kind + `List`).
pub fn accepted_names(crd: &Value, others: &[&Value]) -> NamesResult {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let own_name = crd.pointer("/metadata/name");
    let mut resources = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let same_group = others
        .iter()
        .copied()
        .filter(|o| o.pointer("/metadata/name") != own_name)
        .chain(std::iter::once(crd))
        .filter(|o| o.pointer("/spec/group").and_then(Value::as_str) == Some(group));
    for other in same_group {
        let accepted = other.pointer("/status/acceptedNames").unwrap_or(&Value::Null);
        resources.insert(text(accepted, "plural").to_string());
        resources.insert(text(accepted, "singular").to_string());
        resources.extend(list(accepted, "shortNames"));
        kinds.insert(text(accepted, "kind").to_string());
        kinds.insert(text(accepted, "listKind").to_string());
    }

    let requested = crd.pointer("/spec/names").unwrap_or(&Value::Null);
    let accepted = crd.pointer("/status/acceptedNames").unwrap_or(&Value::Null);
    let kind = text(requested, "kind");
    let singular = match text(requested, "singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match text(requested, "listKind") {
        "" if !kind.is_empty() => format!("{kind}List"),
        s => s.to_string(),
    };

    let mut names = json!({
        "plural": text(accepted, "plural"),
        "singular": text(accepted, "singular"),
        "kind": text(accepted, "kind"),
        "listKind": text(accepted, "listKind"),
    });
    if let Some(short) = accepted.get("shortNames") {
        names["shortNames"] = short.clone();
    }
    let mut conflict: Option<(&str, String)> = None;
    let mut take = |key: &str,
                    want: &str,
                    used: &BTreeSet<String>,
                    reason: &'static str,
                    names: &mut Value| {
        match equal_to_accepted_or_fresh(want, text(accepted, key), used) {
            Ok(()) => names[key] = json!(want),
            Err(message) => conflict = Some((reason, message)),
        }
    };
    take("plural", text(requested, "plural"), &resources, "PluralConflict", &mut names);
    take("singular", &singular, &resources, "SingularConflict", &mut names);
    let requested_short = list(requested, "shortNames");
    let accepted_short = list(accepted, "shortNames");
    if requested_short != accepted_short {
        let mut errors: Vec<String> = Vec::new();
        for short in &requested_short {
            if accepted_short.contains(short) {
                continue;
            }
            if let Err(e) = equal_to_accepted_or_fresh(short, "", &resources)
                && !errors.contains(&e)
            {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            match requested.get("shortNames") {
                Some(s) => names["shortNames"] = s.clone(),
                None => {
                    if let Some(o) = names.as_object_mut() {
                        o.remove("shortNames");
                    }
                }
            }
        } else {
            // kube's aggregate error: one message alone, several in brackets.
            let message = if errors.len() == 1 {
                errors.remove(0)
            } else {
                format!("[{}]", errors.join(", "))
            };
            take_conflict(&mut conflict, "ShortNamesConflict", message);
        }
    }
    let mut take = |key: &str,
                    want: &str,
                    used: &BTreeSet<String>,
                    reason: &'static str,
                    names: &mut Value| {
        match equal_to_accepted_or_fresh(want, text(accepted, key), used) {
            Ok(()) => names[key] = json!(want),
            Err(message) => conflict = Some((reason, message)),
        }
    };
    take("kind", kind, &kinds, "KindConflict", &mut names);
    take("listKind", &list_kind, &kinds, "ListKindConflict", &mut names);
    match requested.get("categories") {
        Some(c) => names["categories"] = c.clone(),
        None => {
            if let Some(o) = names.as_object_mut() {
                o.remove("categories");
            }
        }
    }

    match conflict {
        Some((reason, message)) => {
            NamesResult { names, accepted: false, reason: reason.to_string(), message }
        }
        None => NamesResult {
            names,
            accepted: true,
            reason: "NoConflicts".to_string(),
            message: "no conflicts found".to_string(),
        },
    }
}

fn take_conflict(conflict: &mut Option<(&str, String)>, reason: &'static str, message: String) {
    *conflict = Some((reason, message));
}
