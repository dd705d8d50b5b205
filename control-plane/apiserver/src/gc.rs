//! The api server's part in garbage collection, as Kubernetes' generic registry does it at
//! delete time: the propagation policy of a delete becomes the `orphan` or
//! `foregroundDeletion` finalizer on the object (or neither, for background deletion), and
//! the object is removed once no finalizer is left. Finding and deleting or orphaning the
//! dependents is the controller manager's garbage collector's work.

use skiff_api::ResourceInfo;

/// The finalizers the garbage collector owns.
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// Whether a delete that names no propagation policy orphans the dependents of this kind.
/// Kubernetes keeps that legacy default for ReplicationControllers and batch/v1 Jobs (and
/// for the old extensions/apps beta versions of the workload kinds, which are not served).
pub fn orphans_by_default(res: &ResourceInfo) -> bool {
    matches!(
        (res.group, res.version, res.kind),
        ("", "v1", "ReplicationController") | ("batch", "v1", "Job")
    )
}

/// The garbage-collection finalizer a delete leaves on an object, given the policy asked
/// for (`Orphan`, `Background`, `Foreground` or none), the object's finalizers and the
/// kind's default: an explicit policy wins, then a GC finalizer the object already
/// carries, then the kind's default. `None` is background deletion.
pub fn finalizer_for(
    res: &ResourceInfo,
    policy: Option<&str>,
    finalizers: &[&str],
) -> Option<&'static str> {
    match policy {
        Some("Orphan") => return Some(ORPHAN),
        Some("Foreground") => return Some(FOREGROUND),
        Some(_) => return None,
        None => {}
    }
    for f in finalizers {
        match *f {
            ORPHAN => return Some(ORPHAN),
            FOREGROUND => return Some(FOREGROUND),
            _ => {}
        }
    }
    orphans_by_default(res).then_some(ORPHAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &'static str, version: &'static str, kind: &'static str) -> ResourceInfo {
        ResourceInfo {
            group,
            version,
            kind,
            list_kind: "",
            plural: "",
            singular: "",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &[],
            subresources: &[],
            has_spec: true,
            storage: None,
            custom: None,
        }
    }

    #[test]
    fn finalizer_for_should_follow_policy_then_finalizers_then_kind_default() {
        let deploy = res("apps", "v1", "Deployment");
        let job = res("batch", "v1", "Job");
        let rc = res("", "v1", "ReplicationController");
        type Case<'a> = (&'a ResourceInfo, Option<&'a str>, &'a [&'a str], Option<&'a str>);
        let cases: &[Case] = &[
            (&deploy, None, &[], None),
            (&deploy, Some("Background"), &[ORPHAN], None),
            (&deploy, Some("Foreground"), &[], Some(FOREGROUND)),
            (&deploy, Some("Orphan"), &[FOREGROUND], Some(ORPHAN)),
            (&deploy, None, &["x", FOREGROUND], Some(FOREGROUND)),
            (&job, None, &[], Some(ORPHAN)),
            (&job, Some("Background"), &[], None),
            (&job, None, &[FOREGROUND], Some(FOREGROUND)),
            (&rc, None, &[], Some(ORPHAN)),
        ];
        for (r, policy, finalizers, want) in cases {
            assert_eq!(
                finalizer_for(r, *policy, finalizers),
                *want,
                "{} {policy:?} {finalizers:?}",
                r.kind
            );
        }
    }
}
