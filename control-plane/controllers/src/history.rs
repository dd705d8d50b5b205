//! ControllerRevisions, the template history of StatefulSets and DaemonSets: each revision
//! holds a patch that restores the pod template (`{"spec":{"template":{…,"$patch":"replace"}}}`,
//! what `kubectl rollout undo` applies), is named `<owner>-<hash>` and numbered; an
//! unchanged template reuses its revision (renumbered to the newest), a hash collision with
//! different content bumps the owner's `collisionCount`, and old revisions are pruned down
//! to `revisionHistoryLimit`.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::Error;
use skiff_helpers::pods::controller_ref;

/// The label a revision carries with its hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Pods carry the revision they were made from (StatefulSet: the revision's name,
/// DaemonSet: its hash).
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a.
pub fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Kubernetes' `rand.SafeEncodeString`: each character mapped into an alphabet without
/// vowels, so a hash never spells a word.
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// The revision data for `template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision restores.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The hash of revision data, salted with the collision count when there is one.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// A new (not yet stored) revision of `owner` for `template`.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    number: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = template_patch(template);
    let h = hash(&data, collision_count);
    let mut labels: BTreeMap<String, String> =
        template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), h.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{h}", owner.name_any())),
            namespace: owner.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

/// The hash a revision carries (its label, or the end of its name).
pub fn hash_of(rev: &ControllerRevision) -> String {
    rev.labels().get(HASH_LABEL).cloned().unwrap_or_else(|| {
        rev.name_any().rsplit_once('-').map(|(_, h)| h.to_string()).unwrap_or_default()
    })
}

/// Same content (the template), whatever the name and number.
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data == b.data
}

/// One more than the highest revision number.
pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Oldest first: by number, then creation time, then name.
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        (a.revision, a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any()).cmp(&(
            b.revision,
            b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            b.name_any(),
        ))
    });
}

/// The revisions to delete so that at most `limit` remain beside the `live` ones (those
/// pods still use, or the current and update revisions): oldest first.
pub fn to_prune(
    revisions: &[ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<String> {
    let mut old: Vec<ControllerRevision> =
        revisions.iter().filter(|r| !live.contains(&r.name_any())).cloned().collect();
    sort(&mut old);
    let excess = old.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    old.into_iter().take(excess).map(|r| r.name_any()).collect()
}

/// Make sure a revision for `template` exists and is the newest: reuse an equal one
/// (renumbering it when an older number), or create it, bumping `collision_count` when its
/// name is taken by different content. Returns the revision and the collision count to
/// record in the owner's status.
pub async fn ensure<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    revisions: &[ControllerRevision],
    collision_count: Option<i32>,
) -> Result<(ControllerRevision, Option<i32>), Error> {
    let next = next_number(revisions);
    let mut collisions = collision_count;
    for _ in 0..32 {
        let wanted = new_revision(owner, template, next, collisions);
        let mut same: Vec<ControllerRevision> =
            revisions.iter().filter(|r| equal(r, &wanted)).cloned().collect();
        sort(&mut same);
        if let Some(latest) = same.pop() {
            if latest.revision + 1 == next {
                return Ok((latest, collisions));
            }
            let patch = json!({"revision": next});
            let renumbered = api
                .patch(&latest.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok((renumbered, collisions));
        }
        match api.create(&PostParams::default(), &wanted).await {
            Ok(created) => return Ok((created, collisions)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&wanted.name_any()).await?;
                if equal(&existing, &wanted) {
                    return Ok((existing, collisions));
                }
                collisions = Some(collisions.unwrap_or(0) + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!("no free revision name for {}", owner.name_any())))
}

/// Delete the revisions [`to_prune`] names.
pub async fn prune(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Result<(), Error> {
    for name in to_prune(revisions, live, limit) {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn owner() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn fnv32a_should_match_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn revision_should_be_named_by_a_stable_template_hash() {
        let a = new_revision(&owner(), &template("one"), 1, None);
        let again = new_revision(&owner(), &template("one"), 7, None);
        let b = new_revision(&owner(), &template("two"), 2, None);
        let salted = new_revision(&owner(), &template("one"), 1, Some(1));
        assert_eq!(a.name_any(), again.name_any(), "same template, same name");
        assert!(equal(&a, &again));
        assert_ne!(a.name_any(), b.name_any());
        assert!(!equal(&a, &b));
        assert_ne!(a.name_any(), salted.name_any(), "a collision count changes the name");
        assert!(a.name_any().starts_with("web-"));
        let h = hash_of(&a);
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{h}");
        assert_eq!(a.labels().get("app").map(String::as_str), Some("web"));
        assert_eq!(a.owner_references()[0].kind, "StatefulSet");
        assert_eq!(template_of(&a), Some(template("one")), "the data restores the template");
        assert_eq!(a.data.as_ref().unwrap().0["spec"]["template"]["$patch"], "replace");
    }

    #[test]
    fn history_should_prune_the_oldest_unused_revisions() {
        let revs: Vec<ControllerRevision> =
            (1..=6).map(|n| new_revision(&owner(), &template(&format!("v{n}")), n, None)).collect();
        let name = |n: usize| revs[n - 1].name_any();
        let cases: &[(&[usize], i32, &[usize])] = &[
            (&[6], 10, &[]),
            (&[6], 2, &[1, 2, 3]),
            (&[5, 6], 2, &[1, 2]),
            (&[1, 6], 0, &[2, 3, 4, 5]),
            (&[], 6, &[]),
        ];
        for (live, limit, want) in cases {
            let live: HashSet<String> = live.iter().map(|n| name(*n)).collect();
            let got = to_prune(&revs, &live, *limit);
            let want: Vec<String> = want.iter().map(|n| name(*n)).collect();
            assert_eq!(got, want, "live {live:?} limit {limit}");
        }
        assert_eq!(next_number(&revs), 7);
        assert_eq!(next_number(&[]), 1);
    }
}
