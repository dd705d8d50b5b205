use super::*;

fn kind(k: &str) -> Arc<Kind> {
    Arc::new(Kind {
        ar: ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: k.into(),
            plural: format!("{}s", k.to_lowercase()),
        },
        namespaced: true,
    })
}

fn owner_ref(uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Owner".into(),
        name: format!("name-{uid}"),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
    Node {
        kind: kind("Thing"),
        namespace: Some("default".into()),
        name: format!("name-{uid}"),
        uid: uid.into(),
        owners,
        deleting: false,
        finalizers: Vec::new(),
    }
}

fn deleting(mut n: Node, finalizer: &str) -> Node {
    n.deleting = true;
    n.finalizers.push(finalizer.into());
    n
}

#[test]
fn decide_should_keep_delete_or_unlink_like_kubernetes() {
    use OwnerState::*;
    let plain = node("d", vec![]);
    let orphaning = deleting(node("d", vec![]), ORPHAN);
    let s = |pairs: &[(&str, OwnerState)]| -> Vec<(String, OwnerState)> {
        pairs.iter().map(|(u, st)| (u.to_string(), *st)).collect()
    };
    let cases = [
        ("solid owner keeps it", &plain, s(&[("a", Solid)]), false, Decision::Keep),
        (
            "solid owner plus gone ones: unlink the gone",
            &plain,
            s(&[("a", Solid), ("b", Dangling), ("c", Waiting)]),
            true,
            Decision::RemoveOwners(vec!["b".into(), "c".into()]),
        ),
        (
            "all owners gone",
            &plain,
            s(&[("a", Dangling)]),
            true,
            Decision::Delete(Propagation::Background),
        ),
        (
            "owner waiting, item has dependents: foreground",
            &plain,
            s(&[("a", Waiting)]),
            true,
            Decision::Delete(Propagation::Foreground),
        ),
        (
            "owner waiting, leaf: background",
            &plain,
            s(&[("a", Waiting), ("b", Dangling)]),
            false,
            Decision::Delete(Propagation::Background),
        ),
        (
            "item's own orphan finalizer decides",
            &orphaning,
            s(&[("a", Dangling)]),
            true,
            Decision::Delete(Propagation::Orphan),
        ),
    ];
    for (what, item, owners, has_deps, want) in cases {
        assert_eq!(decide(item, &owners, has_deps), want, "{what}");
    }
}

#[test]
fn graph_should_ask_to_check_dependents_when_their_owner_goes() {
    let mut g = Graph::default();
    assert!(g.upsert(node("owner", vec![])).is_empty());
    // An observed, living owner: nothing to do for the dependent.
    assert!(g.upsert(node("dep", vec![owner_ref("owner", true)])).is_empty());
    // An owner never seen: the dependent must be checked (a live GET decides).
    assert_eq!(
        g.upsert(node("stray", vec![owner_ref("ghost", false)])),
        vec![Work::AttemptToDelete("stray".into())]
    );
    assert_eq!(g.remove("owner"), vec![Work::AttemptToDelete("dep".into())]);
    assert!(g.remove("nobody").is_empty());
}

#[test]
fn graph_should_drive_foreground_deletion_until_no_blocking_dependent_is_left() {
    let mut g = Graph::default();
    g.upsert(node("owner", vec![]));
    g.upsert(node("blocker", vec![owner_ref("owner", true)]));
    g.upsert(node("loose", vec![owner_ref("owner", false)]));
    let mut work = g.upsert(deleting(node("owner", vec![]), FOREGROUND));
    work.sort_by_key(|w| format!("{w:?}"));
    assert_eq!(
        work,
        vec![
            Work::AttemptToDelete("blocker".into()),
            Work::AttemptToDelete("loose".into()),
            Work::AttemptToDelete("owner".into()),
        ]
    );
    let blocking: Vec<&str> =
        g.blocking_dependents("owner").iter().map(|n| n.uid.as_str()).collect();
    assert_eq!(blocking, vec!["blocker"]);
    // The non-blocking dependent going does not finish anything by itself…
    g.remove("loose");
    assert_eq!(g.blocking_dependents("owner").len(), 1);
    // …the blocking one going asks to look at the owner again, which may now finish.
    assert_eq!(g.remove("blocker"), vec![Work::AttemptToDelete("owner".into())]);
    assert!(g.blocking_dependents("owner").is_empty());
}

#[test]
fn graph_should_recheck_a_waiting_owner_when_a_dependent_drops_its_reference() {
    let mut g = Graph::default();
    g.upsert(node("dep", vec![owner_ref("owner", true)]));
    g.upsert(deleting(node("owner", vec![]), FOREGROUND));
    assert_eq!(g.upsert(node("dep", vec![])), vec![Work::AttemptToDelete("owner".into())]);
    assert!(g.dependents_of("owner").is_empty());
}

#[test]
fn graph_should_orphan_for_an_owner_with_the_orphan_finalizer() {
    let mut g = Graph::default();
    g.upsert(node("owner", vec![]));
    g.upsert(node("dep", vec![owner_ref("owner", true)]));
    assert_eq!(
        g.upsert(deleting(node("owner", vec![]), ORPHAN)),
        vec![Work::Orphan("owner".into())]
    );
    let deps: Vec<&str> = g.dependents_of("owner").iter().map(|n| n.uid.as_str()).collect();
    assert_eq!(deps, vec!["dep"]);
}
