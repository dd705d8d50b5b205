//! The CRD controllers kube-apiserver runs beside its custom resource handler, in one loop
//! woken by the CRD watch cache: the naming controller (accepted names and `NamesAccepted`,
//! reconsidered for the whole group whenever one CRD changes), the establishing controller
//! (`Established` once the names are accepted), `storedVersions`, and the finalizing
//! controller (a deleted CRD's objects are deleted, then its cleanup finalizer removed).
//!
//! Every api server of a cluster runs it; the writes are compare-and-swap on the stored CRD,
//! so members that race agree (the loser reads the winner's write and has nothing to do).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_store::StoreError;

use super::{CLEANUP_FINALIZER, crd_cache};
use crate::State;
use crate::objects::now_rfc3339;

/// Run until the api server stops.
pub async fn run(state: Arc<State>) {
    let Some(cache) = crd_cache(&state).cloned() else { return };
    let mut revisions = cache.revisions();
    let mut seen_generation = u64::MAX;
    let mut cleaning: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        let generation = cache.generation();
        if generation != 0 && generation != seen_generation {
            seen_generation = generation;
            let mut crds = cache.decoded();
            // Oldest first, and each CRD judged against the names given earlier in this
            // pass: of two new CRDs asking for one name, the older gets it.
            crds.sort_by(|a, b| {
                let created = |c: &Value| {
                    c.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                created(&a.2).cmp(&created(&b.2)).then_with(|| a.0.cmp(&b.0))
            });
            // Names compete within a group only.
            let group_of = |c: &Value| {
                c.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string()
            };
            let mut groups: std::collections::HashMap<String, Vec<usize>> = Default::default();
            for (i, (_, _, c)) in crds.iter().enumerate() {
                groups.entry(group_of(c)).or_default().push(i);
            }
            for i in 0..crds.len() {
                let (key, revision, crd) = (&crds[i].0, crds[i].1, &crds[i].2);
                let others: Vec<&Value> = groups
                    .get(&group_of(crd))
                    .into_iter()
                    .flatten()
                    .filter(|j| **j != i)
                    .map(|j| &crds[*j].2)
                    .collect();
                let status = desired_status(crd, &others);
                if let Some(status) = &status
                    && let Err(e) = write_status(&state, key, revision, crd, status.clone()).await
                {
                    tracing::debug!(crd = %key, error = %e, "CRD status not written; retried on the next change");
                }
                let (key, crd) = (key.clone(), crd.clone());
                if let Some(status) = status {
                    crds[i].2["status"] = status;
                }
                let deleting =
                    crd.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
                if deleting && has_cleanup_finalizer(&crd) && cleaning.insert(key.clone()) {
                    let (state, done) = (state.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        if let Err(e) = clean_up(&state, &key, &crd).await {
                            tracing::warn!(crd = %key, error = %e, "deleting the custom objects of a deleted CRD");
                        }
                        let _ = done.send(key);
                    });
                }
            }
        }
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // A status write that failed (a lost leader, say) is tried again.
            _ = resync.tick() => seen_generation = u64::MAX,
            Some(key) = done_rx.recv() => {
                // Look again: a cleanup that could not finish is started afresh.
                cleaning.remove(&key);
                seen_generation = u64::MAX;
            }
        }
    }
}

fn has_cleanup_finalizer(crd: &Value) -> bool {
    crd.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f == CLEANUP_FINALIZER))
}

/// A condition as kube writes it; the transition time kept when the status did not change.
fn condition(old: &[Value], ty: &str, status: bool, reason: &str, message: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c["type"] == ty && c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now_rfc3339()));
    json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// The status `crd` should have given the other CRDs, or `None` when it has it already.
fn desired_status(crd: &Value, others: &[&Value]) -> Option<Value> {
    let old_status = crd.get("status").cloned().unwrap_or(json!({}));
    let old_conditions: Vec<Value> =
        old_status["conditions"].as_array().cloned().unwrap_or_default();
    let names = skiff_apiextensions::crd::accepted_names(crd, others);
    let mut conditions: Vec<Value> = Vec::new();
    conditions.push(condition(
        &old_conditions,
        "NamesAccepted",
        names.accepted,
        &names.reason,
        &names.message,
    ));
    let was_established =
        old_conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True");
    if was_established || names.accepted {
        conditions.push(condition(
            &old_conditions,
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ));
    } else {
        conditions.push(condition(
            &old_conditions,
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
        ));
    }
    if crd.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        let terminating = old_conditions.iter().find(|c| c["type"] == "Terminating");
        // The cleanup reports its own progress; only the first mark is made here.
        conditions.push(terminating.cloned().unwrap_or_else(|| {
            condition(
                &old_conditions,
                "Terminating",
                true,
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            )
        }));
    }
    // Conditions others wrote (e.g. by a later Skiff) are kept after ours.
    for c in &old_conditions {
        let ty = c["type"].as_str().unwrap_or("");
        if !conditions.iter().any(|n| n["type"] == ty) {
            conditions.push(c.clone());
        }
    }
    let mut stored: Vec<Value> =
        old_status["storedVersions"].as_array().cloned().unwrap_or_default();
    if let Some(v) = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v.get("name"))
        && !stored.contains(v)
    {
        stored.push(v.clone());
    }
    // Once established, the names served do not change while other names are refused.
    let accepted = if names.accepted || !was_established {
        names.names
    } else {
        old_status.get("acceptedNames").cloned().unwrap_or(names.names)
    };
    let status =
        json!({"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored});
    let same = |a: &Value, b: &Value| a == b;
    let unchanged = same(&old_status["acceptedNames"], &status["acceptedNames"])
        && same(&old_status["storedVersions"], &status["storedVersions"])
        && conditions_equal(&old_conditions, &conditions);
    (!unchanged).then_some(status)
}

/// Conditions equal but for their order.
fn conditions_equal(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.contains(c))
}

async fn write_status(
    state: &State,
    key: &str,
    revision: u64,
    crd: &Value,
    status: Value,
) -> Result<(), StoreError> {
    let mut new = crd.clone();
    new["status"] = status;
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let bytes = skiff_api::gojson::to_vec(&new);
    match state.store.update(key, bytes, Some(revision)).await {
        Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delete every object of a deleted CRD (objects with finalizers are marked and waited
/// for), then drop the CRD's cleanup finalizer, deleting the CRD when it was the last.
async fn clean_up(state: &Arc<State>, key: &str, crd: &Value) -> Result<(), String> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd
        .pointer("/status/acceptedNames/plural")
        .or_else(|| crd.pointer("/spec/names/plural"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let prefix = format!("/registry/{group}/{plural}/");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let items = state.store.list(&prefix).await.map_err(|e| e.to_string())?.items;
        if items.is_empty() {
            break;
        }
        set_terminating(
            state,
            key,
            &format!("CustomResource deletion is in progress ({} remaining)", items.len()),
        )
        .await;
        for kv in items {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&kv.value) else {
                let _ = state.store.delete(&kv.key, Some(kv.mod_revision)).await;
                continue;
            };
            let has_finalizers = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if !has_finalizers {
                let _ = state.store.delete(&kv.key, Some(kv.mod_revision)).await;
            } else if obj.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null) {
                obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                let bytes = skiff_api::gojson::to_vec(&obj);
                let _ = state.store.update(&kv.key, bytes, Some(kv.mod_revision)).await;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("objects under {prefix} still have finalizers"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..16 {
        let Some(kv) = state.store.get(key).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let mut crd: Value = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        let finalizers: Vec<Value> = crd
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .cloned()
            .collect();
        let result = if finalizers.is_empty() {
            state.store.delete(key, Some(kv.mod_revision)).await.map(|_| ())
        } else {
            crd["metadata"]["finalizers"] = Value::Array(finalizers);
            let bytes = skiff_api::gojson::to_vec(&crd);
            state.store.update(key, bytes, Some(kv.mod_revision)).await.map(|_| ())
        };
        match result {
            Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the CRD kept changing while its finalizer was removed".into())
}

/// Mark the CRD `Terminating` with `message` (best effort: the loop goes on regardless).
async fn set_terminating(state: &State, key: &str, message: &str) {
    let Ok(Some(kv)) = state.store.get(key).await else { return };
    let Ok(mut crd) = serde_json::from_slice::<Value>(&kv.value) else { return };
    let conditions =
        crd.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut next: Vec<Value> =
        conditions.iter().filter(|c| c["type"] != "Terminating").cloned().collect();
    next.push(condition(&conditions, "Terminating", true, "InstanceDeletionInProgress", message));
    if conditions_equal(&conditions, &next) {
        return;
    }
    crd["status"]["conditions"] = Value::Array(next);
    let bytes = skiff_api::gojson::to_vec(&crd);
    let _ = state.store.update(key, bytes, Some(kv.mod_revision)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str) -> Value {
        json!({"metadata": {"name": name},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    #[test]
    fn a_new_crd_is_established_with_its_names() {
        let c = crd("widgets.example.com", "widgets", "Widget");
        let status = desired_status(&c, &[]).expect("a status to write");
        assert_eq!(status["acceptedNames"]["plural"], "widgets");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        let types: Vec<(&str, &str)> = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .map(|c| (c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(types, [("NamesAccepted", "True"), ("Established", "True")]);
        let mut settled = c.clone();
        settled["status"] = status;
        assert!(desired_status(&settled, &[]).is_none(), "nothing more to write");
    }
}
