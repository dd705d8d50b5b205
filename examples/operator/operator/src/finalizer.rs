//! The `web.skiff.dev/cleanup` finalizer's decisions, pure: what a reconcile does with a site
//! given its metadata, and what a deletion does next given what is left of its children. A
//! site gets the finalizer before its first child is made; once it is being deleted, its
//! children are deleted explicitly and the finalizer goes only when they are all gone. Every
//! step is idempotent: the reconciler may run it again at any time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::desired::ChildKind;
use crate::site::FINALIZER;

/// What a reconcile of a site does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not being deleted and no finalizer yet: add it, then apply.
    AddFinalizer,
    /// Not being deleted: make the children what the spec says.
    Apply,
    /// Being deleted with the finalizer: clean up.
    Cleanup,
    /// Being deleted without the finalizer: someone else's deletion; nothing to do.
    Nothing,
}

fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// The first step for a site with metadata `meta`.
pub fn step(meta: &ObjectMeta) -> Step {
    match (meta.deletion_timestamp.is_some(), has_finalizer(meta)) {
        (false, false) => Step::AddFinalizer,
        (false, true) => Step::Apply,
        (true, true) => Step::Cleanup,
        (true, false) => Step::Nothing,
    }
}

/// A JSON patch adding the finalizer, valid only against the `resourceVersion` it was made
/// from (a concurrent change fails the patch's test and the reconcile is retried).
/// `None` when the finalizer is there already.
pub fn add_patch(meta: &ObjectMeta) -> Option<Value> {
    if has_finalizer(meta) {
        return None;
    }
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    finalizers.push(FINALIZER.to_string());
    Some(finalizers_patch(meta, finalizers))
}

/// A JSON patch removing the finalizer (and only it), under the same precondition.
/// `None` when it is not there.
pub fn remove_patch(meta: &ObjectMeta) -> Option<Value> {
    if !has_finalizer(meta) {
        return None;
    }
    let finalizers =
        meta.finalizers.iter().flatten().filter(|f| *f != FINALIZER).cloned().collect();
    Some(finalizers_patch(meta, finalizers))
}

fn finalizers_patch(meta: &ObjectMeta, finalizers: Vec<String>) -> Value {
    let mut ops = Vec::new();
    if let Some(rv) = &meta.resource_version {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    // `add` on an existing member replaces it: one op whether the list exists or not.
    ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": finalizers}));
    Value::Array(ops)
}

/// What is left of one child during a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// Not there.
    Absent,
    /// There, but not controlled by this site (same name, someone else's): left alone.
    Foreign,
    /// There and ours: to delete.
    Present,
    /// Ours and already being deleted: to wait for.
    Deleting,
}

/// The state of a child whose metadata is `meta` (`None`: not found), for the site `uid`.
pub fn child_state(meta: Option<&ObjectMeta>, site_uid: &str) -> ChildState {
    let Some(meta) = meta else { return ChildState::Absent };
    let ours = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == site_uid && o.controller == Some(true));
    match (ours, meta.deletion_timestamp.is_some()) {
        (false, _) => ChildState::Foreign,
        (true, false) => ChildState::Present,
        (true, true) => ChildState::Deleting,
    }
}

/// The next step of a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Delete these children, then look again.
    Delete(Vec<ChildKind>),
    /// Deletions are under way: look again later.
    Wait,
    /// Every child is gone: remove the finalizer.
    RemoveFinalizer,
}

/// What to do next given each child's state.
pub fn cleanup(children: &[(ChildKind, ChildState)]) -> Cleanup {
    let present: Vec<ChildKind> =
        children.iter().filter(|(_, s)| *s == ChildState::Present).map(|(k, _)| *k).collect();
    if !present.is_empty() {
        Cleanup::Delete(present)
    } else if children.iter().any(|(_, s)| *s == ChildState::Deleting) {
        Cleanup::Wait
    } else {
        Cleanup::RemoveFinalizer
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn meta(deleting: bool, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            name: Some("blog".into()),
            resource_version: Some("42".into()),
            deletion_timestamp: deleting.then_some(Time(Timestamp::UNIX_EPOCH)),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn step_should_follow_deletion_and_finalizer() {
        let cases = [
            (false, &[][..], Step::AddFinalizer),
            (false, &["other"][..], Step::AddFinalizer),
            (false, &[FINALIZER][..], Step::Apply),
            (false, &["other", FINALIZER][..], Step::Apply),
            (true, &[FINALIZER][..], Step::Cleanup),
            (true, &["other", FINALIZER][..], Step::Cleanup),
            (true, &["other"][..], Step::Nothing),
            (true, &[][..], Step::Nothing),
        ];
        for (deleting, finalizers, want) in cases {
            assert_eq!(step(&meta(deleting, finalizers)), want, "{deleting} {finalizers:?}");
        }
    }

    #[test]
    fn add_patch_should_append_under_the_resource_version() {
        assert_eq!(
            add_patch(&meta(false, &[])),
            Some(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ]))
        );
        assert_eq!(
            add_patch(&meta(false, &["other"])).map(|p| p[1]["value"].clone()),
            Some(json!(["other", FINALIZER]))
        );
        assert_eq!(add_patch(&meta(false, &[FINALIZER])), None);
    }

    #[test]
    fn remove_patch_should_keep_other_finalizers() {
        assert_eq!(
            remove_patch(&meta(true, &["other", FINALIZER])),
            Some(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/metadata/finalizers", "value": ["other"]},
            ]))
        );
        assert_eq!(
            remove_patch(&meta(true, &[FINALIZER])).map(|p| p[1]["value"].clone()),
            Some(json!([]))
        );
        assert_eq!(remove_patch(&meta(true, &["other"])), None);
    }

    fn child(owner_uid: Option<&str>, controller: bool, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "web.skiff.dev/v1alpha1".into(),
                    kind: "StaticSite".into(),
                    name: "blog".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..meta(deleting, &[])
        }
    }

    #[test]
    fn child_state_should_leave_other_owners_children_alone() {
        let cases = [
            (None, ChildState::Absent),
            (Some(child(Some("u1"), true, false)), ChildState::Present),
            (Some(child(Some("u1"), true, true)), ChildState::Deleting),
            (Some(child(Some("u2"), true, false)), ChildState::Foreign),
            (Some(child(Some("u1"), false, false)), ChildState::Foreign),
            (Some(child(None, false, false)), ChildState::Foreign),
        ];
        for (meta, want) in cases {
            assert_eq!(child_state(meta.as_ref(), "u1"), want, "{meta:?}");
        }
    }

    #[test]
    fn cleanup_should_delete_then_wait_then_release() {
        use ChildKind::*;
        use ChildState::*;
        let cases = [
            (
                [(Deployment, Present), (Service, Present), (ConfigMap, Present)],
                Cleanup::Delete(vec![Deployment, Service, ConfigMap]),
            ),
            (
                [(Deployment, Deleting), (Service, Absent), (ConfigMap, Present)],
                Cleanup::Delete(vec![ConfigMap]),
            ),
            ([(Deployment, Deleting), (Service, Absent), (ConfigMap, Absent)], Cleanup::Wait),
            (
                [(Deployment, Absent), (Service, Foreign), (ConfigMap, Absent)],
                Cleanup::RemoveFinalizer,
            ),
            (
                [(Deployment, Absent), (Service, Absent), (ConfigMap, Absent)],
                Cleanup::RemoveFinalizer,
            ),
        ];
        for (children, want) in cases {
            assert_eq!(cleanup(&children), want, "{children:?}");
        }
    }
}
