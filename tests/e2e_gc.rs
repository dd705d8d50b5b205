//! End-to-end with the real kubectl and real Wasm pods: the controller manager's garbage
//! collector (background, foreground and orphan deletion of a Deployment's chain,
//! `blockOwnerDeletion`, owners that never existed), the namespace lifecycle (every
//! discovered namespaced resource is emptied; custom resources are not served yet), the default
//! ServiceAccount, and PodDisruptionBudget status with the eviction API.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Skiff, guest};

const WAIT: Duration = Duration::from_secs(60);

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(dir.path());
    skiff.import(&guest("test-guest.wasip1.wasm"), "test-guest:e2e");
    (guard, dir, skiff)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn apply(s: &Skiff, yaml: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply failed: {}{}", text(&out.stdout), text(&out.stderr));
}

/// The object, or None once it is gone.
fn get(s: &Skiff, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json"]);
    let out = s.kubectl(&a);
    if out.status.success() {
        return serde_json::from_slice(&out.stdout).ok();
    }
    assert!(text(&out.stderr).contains("NotFound"), "{}", text(&out.stderr));
    None
}

fn uid(s: &Skiff, kind: &str, name: &str) -> String {
    s.ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

fn finalizers(o: &Value) -> Vec<&str> {
    o["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// A running Wasm pod labelled `app`.
fn sleeper(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  runtimeClassName: wasmtime\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: c\n    image: test-guest:e2e\n    imagePullPolicy: IfNotPresent\n    command: [guest, sleep, \"3600\"]\n"
    )
}

/// A ReplicaSet of 2 replicas controlling two running pods of known names. The pods come
/// first so that the ReplicaSet controller adopts them instead of making its own; the test
/// sets the same controller reference itself so as not to depend on when it does.
fn replica_set(s: &Skiff, name: &str, app: &str) -> Vec<String> {
    let pods: Vec<String> = (0..2).map(|i| format!("{name}-{i}")).collect();
    for p in &pods {
        apply(s, &sleeper(p, app));
    }
    apply(
        s,
        &format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      runtimeClassName: wasmtime\n      terminationGracePeriodSeconds: 5\n      containers: [{{name: c, image: test-guest:e2e, imagePullPolicy: IfNotPresent, command: [guest, sleep, \"3600\"]}}]\n"
        ),
    );
    let rs = uid(s, "replicaset", name);
    let controller = format!(
        r#"{{"metadata":{{"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"{name}","uid":"{rs}","controller":true,"blockOwnerDeletion":true}}]}}}}"#
    );
    for p in &pods {
        s.ok(&["patch", "pod", p, "--type=merge", "-p", &controller]);
    }
    for p in &pods {
        wait_ready(s, p);
    }
    pods
}

fn wait_ready(s: &Skiff, pod: &str) {
    s.wait_pod(pod, WAIT, "Ready", |p| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
}

/// A Deployment of two running Wasm pods, as the Deployment and ReplicaSet controllers
/// make it: answers the name of its ReplicaSet and of its pods.
fn deployment_chain(s: &Skiff, name: &str) -> (String, Vec<String>) {
    apply(
        s,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: wasmtime\n      terminationGracePeriodSeconds: 5\n      containers: [{{name: c, image: test-guest:e2e, imagePullPolicy: IfNotPresent, command: [guest, sleep, \"3600\"]}}]\n"
        ),
    );
    let d = uid(s, "deployment", name);
    let owned_by = |o: &Value, uid: &str| o["metadata"]["ownerReferences"][0]["uid"] == uid;
    let mut chain = (String::new(), Vec::new());
    s.wait_for("the Deployment's ReplicaSet and two ready pods", WAIT, || {
        let sets = s.json(&["get", "replicaset", "-l", &format!("app={name}")]);
        let Some(rs) = sets["items"].as_array().and_then(|i| i.iter().find(|r| owned_by(r, &d)))
        else {
            return false;
        };
        let rs_uid = rs["metadata"]["uid"].as_str().unwrap_or_default();
        let pods = s.json(&["get", "pod", "-l", &format!("app={name}")]);
        let ready: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| owned_by(p, rs_uid))
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        chain = (rs["metadata"]["name"].as_str().unwrap_or_default().to_string(), ready);
        chain.1.len() == 2
    });
    chain
}

#[test]
fn background_deletion_should_remove_the_deployment_at_once_and_its_chain_after() {
    let (_g, _d, s) = started();
    let (rs, pods) = deployment_chain(&s, "bg");
    s.ok(&["delete", "deployment", "bg", "--cascade=background", "--wait=false"]);
    assert!(get(&s, &["deployment", "bg"]).is_none(), "the Deployment goes at once");
    s.wait_for("ReplicaSet collected", WAIT, || get(&s, &["replicaset", &rs]).is_none());
    s.wait_for("pods collected", WAIT, || pods.iter().all(|p| get(&s, &["pod", p]).is_none()));
}

#[test]
fn foreground_deletion_should_keep_the_deployment_until_its_chain_is_gone() {
    let (_g, _d, s) = started();
    let (rs_name, pods) = deployment_chain(&s, "fg");
    // The pods stay terminating until the test lets them go, so that the chain's state can
    // be looked at while the deletion is under way.
    let hold = r#"{"metadata":{"finalizers":["e2e.skiff.dev/hold"]}}"#;
    for p in &pods {
        s.ok(&["patch", "pod", p, "--type=merge", "-p", hold]);
    }
    s.ok(&["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"]);
    let terminating = |o: &Value| o["metadata"]["deletionTimestamp"].is_string();
    s.wait_for("every pod terminating", WAIT, || {
        pods.iter().all(|p| get(&s, &["pod", p]).is_some_and(|p| terminating(&p)))
    });
    // The ReplicaSet has dependents of its own: it is deleted in the foreground too, and
    // the Deployment waits for it.
    let rs = get(&s, &["replicaset", &rs_name]).expect("the ReplicaSet waits for its pods");
    assert!(terminating(&rs), "{rs}");
    assert_eq!(finalizers(&rs), vec!["foregroundDeletion"]);
    std::thread::sleep(Duration::from_secs(2));
    let d = get(&s, &["deployment", "fg"]).expect("the Deployment stays while its chain goes");
    assert!(terminating(&d), "{d}");
    assert_eq!(finalizers(&d), vec!["foregroundDeletion"]);
    let release = r#"{"metadata":{"finalizers":null}}"#;
    for p in &pods {
        s.ok(&["patch", "pod", p, "--type=merge", "-p", release]);
    }
    // Until the last pod and the ReplicaSet are gone, the Deployment is there.
    s.wait_for("the Deployment gone last", WAIT, || {
        let deployment = get(&s, &["deployment", "fg"]);
        let rs = get(&s, &["replicaset", &rs_name]);
        let left = pods.iter().filter(|p| get(&s, &["pod", p]).is_some()).count();
        if deployment.is_none() {
            assert!(rs.is_none() && left == 0, "Deployment gone before its dependents");
            return true;
        }
        if rs.is_some() || left > 0 {
            let d = deployment.unwrap_or_default();
            assert_eq!(finalizers(&d), vec!["foregroundDeletion"], "{d}");
        }
        false
    });
}

#[test]
fn orphan_deletion_should_leave_the_replicaset_and_pods_without_the_reference() {
    let (_g, _d, s) = started();
    let (rs_name, pods) = deployment_chain(&s, "or");
    let rs_uid = uid(&s, "replicaset", &rs_name);
    s.ok(&["delete", "deployment", "or", "--cascade=orphan", "--timeout=30s"]);
    assert!(get(&s, &["deployment", "or"]).is_none());
    let rs = get(&s, &["replicaset", &rs_name]).expect("the ReplicaSet stays");
    assert!(rs["metadata"]["ownerReferences"].is_null(), "{rs}");
    assert!(rs["metadata"]["deletionTimestamp"].is_null(), "{rs}");
    // Nothing is collected later either, and the pods keep their own owner.
    std::thread::sleep(Duration::from_secs(3));
    for p in &pods {
        let pod = get(&s, &["pod", p]).expect("the pods stay");
        assert!(pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], rs_uid.as_str());
    }
    assert!(get(&s, &["replicaset", &rs_name]).is_some());
}

#[test]
fn dependents_should_be_collected_when_their_owner_is_absent_or_deleted() {
    let (_g, _d, s) = started();
    apply(&s, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n");
    let owner = uid(&s, "cm", "owner");
    let dependent = |name: &str, owner_name: &str, uid: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: {owner_name}, uid: {uid}}}\n"
        )
    };
    apply(&s, &dependent("owned", "owner", &owner));
    // An owner that never existed (same name, another uid) does not keep anything alive.
    apply(&s, &dependent("stray", "owner", "00000000-0000-0000-0000-000000000000"));
    s.wait_for("the stray dependent collected", WAIT, || get(&s, &["cm", "stray"]).is_none());
    assert!(get(&s, &["cm", "owned"]).is_some(), "a dependent of a living owner stays");
    // An API delete without a policy is background deletion for ConfigMaps.
    s.ok(&["delete", "--raw", "/api/v1/namespaces/default/configmaps/owner"]);
    s.wait_for("the dependent collected", WAIT, || get(&s, &["cm", "owned"]).is_none());
}

#[test]
fn foreground_deletion_should_wait_only_for_blocking_dependents() {
    let (_g, _d, s) = started();
    apply(&s, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n");
    let owner = uid(&s, "cm", "owner");
    for (name, block) in [("blocking", true), ("loose", false)] {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  finalizers: [e2e.skiff.dev/hold]\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner}, blockOwnerDeletion: {block}}}\n"
            ),
        );
    }
    s.ok(&["delete", "cm", "owner", "--cascade=foreground", "--wait=false"]);
    let held = |name: &str| {
        get(&s, &["cm", name]).is_some_and(|o| o["metadata"]["deletionTimestamp"].is_string())
    };
    s.wait_for("both dependents being deleted", WAIT, || held("blocking") && held("loose"));
    // The blocking dependent is still there (its own finalizer holds it): so is the owner.
    std::thread::sleep(Duration::from_secs(2));
    let o = get(&s, &["cm", "owner"]).expect("the owner waits for its blocking dependent");
    assert_eq!(finalizers(&o), vec!["foregroundDeletion"]);
    let release = r#"{"metadata":{"finalizers":null}}"#;
    s.ok(&["patch", "cm", "blocking", "--type=merge", "-p", release]);
    // The non-blocking dependent does not hold the owner back.
    s.wait_for("the owner gone", WAIT, || get(&s, &["cm", "owner"]).is_none());
    assert!(held("loose"), "the non-blocking dependent is still held by its own finalizer");
    s.ok(&["patch", "cm", "loose", "--type=merge", "-p", release]);
    s.wait_for("the loose dependent gone", WAIT, || get(&s, &["cm", "loose"]).is_none());
}

#[test]
fn namespace_deletion_should_remove_its_content_and_then_itself() {
    let (_g, _d, s) = started();
    s.ok(&["create", "namespace", "doomed"]);
    s.wait_for("the default ServiceAccount", WAIT, || {
        get(&s, &["serviceaccount", "default", "-n", "doomed"]).is_some()
    });
    apply(
        &s,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: doomed, finalizers: [e2e.skiff.dev/hold]}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: doomed}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj, namespace: doomed}\nspec:\n  schedule: '0 0 1 1 *'\n  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: test-guest:e2e}]}}}}\n",
    );
    let pod = sleeper("p", "doomed");
    let out = s.kubectl_stdin(&["apply", "-n", "doomed", "-f", "-"], &pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let condition = |ns: &Value, t: &str| -> (String, String, String) {
        let c = ns["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default();
        let f = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (f("status"), f("reason"), f("message"))
    };
    // Everything goes but the held ConfigMap, which the conditions report.
    s.wait_for("only the held ConfigMap left", WAIT, || {
        let ns = get(&s, &["namespace", "doomed"]).expect("namespace held");
        condition(&ns, "NamespaceContentRemaining").2
            == "Some resources are remaining: configmaps. has 1 resource instances"
    });
    let ns = get(&s, &["namespace", "doomed"]).expect("namespace held");
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(
        condition(&ns, "NamespaceFinalizersRemaining"),
        (
            "True".into(),
            "SomeFinalizerRemain".into(),
            "Some finalizers are remaining: e2e.skiff.dev/hold in 1 resource instances".into()
        )
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionDiscoveryFailure"),
        (
            "False".into(),
            "ResourcesDiscovered".into(),
            "All resources successfully discovered".into()
        )
    );
    assert_eq!(ns["spec"]["finalizers"][0], "kubernetes");
    for what in [["pod", "p"], ["secret", "s"], ["cronjob", "cj"], ["serviceaccount", "default"]] {
        assert!(get(&s, &[what[0], what[1], "-n", "doomed"]).is_none(), "{what:?} left");
    }
    s.ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    s.wait_for("the namespace gone", WAIT, || get(&s, &["namespace", "doomed"]).is_none());
}

#[test]
fn every_namespace_should_get_a_default_service_account_back() {
    let (_g, _d, s) = started();
    s.ok(&["create", "namespace", "fresh"]);
    let sa = || get(&s, &["serviceaccount", "default", "-n", "fresh"]);
    s.wait_for("the default ServiceAccount", WAIT, || sa().is_some());
    let first = sa().unwrap_or_default()["metadata"]["uid"].clone();
    s.ok(&["delete", "serviceaccount", "default", "-n", "fresh"]);
    s.wait_for("the default ServiceAccount recreated", WAIT, || {
        sa().is_some_and(|a| a["metadata"]["uid"] != first)
    });
    assert!(get(&s, &["serviceaccount", "default", "-n", "default"]).is_some());
}

#[test]
fn disruption_budget_status_should_follow_pods_and_refuse_evictions_past_it() {
    let (_g, dir, s) = started();
    let pods = replica_set(&s, "guarded", "guarded");
    apply(
        &s,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: guard}\nspec:\n  maxUnavailable: 50%\n  selector: {matchLabels: {app: guarded}}\n",
    );
    let pdb = || s.json(&["get", "pdb", "guard"]);
    let fields = |p: &Value| {
        let st = &p["status"];
        [
            &st["expectedPods"],
            &st["desiredHealthy"],
            &st["currentHealthy"],
            &st["disruptionsAllowed"],
        ]
        .map(|v| v.as_i64().unwrap_or(-1))
    };
    // Half of the ReplicaSet's 2 replicas may be unavailable (rounded up): 1 must stay.
    s.wait_for("both pods healthy in the budget", WAIT, || fields(&pdb()) == [2, 1, 2, 1]);
    let p = pdb();
    assert_eq!(p["status"]["observedGeneration"], p["metadata"]["generation"]);
    let allowed = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (allowed["status"].as_str(), allowed["reason"].as_str()),
        (Some("True"), Some("SufficientPods"))
    );

    let evict = |pod: &str| {
        let file = dir.path().join(format!("eviction-{pod}.json"));
        std::fs::write(
            &file,
            format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#),
        )
        .expect("write eviction");
        s.kubectl(&[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            file.to_str().unwrap_or_default(),
        ])
    };
    let out = evict(&pods[0]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("the evicted pod terminating or gone", WAIT, || {
        get(&s, &["pod", &pods[0]]).is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    // Require every pod: no disruption allowed, and the eviction is refused with 429.
    s.ok(&["patch", "pdb", "guard", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/maxUnavailable"},{"op":"add","path":"/spec/minAvailable","value":"100%"}]"#]);
    s.wait_for("the budget recomputed", WAIT, || {
        let p = pdb();
        p["status"]["observedGeneration"] == p["metadata"]["generation"]
            && p["status"]["disruptionsAllowed"] == 0
    });
    let p = pdb();
    assert_eq!(p["status"]["desiredHealthy"], 2, "{p}");
    let out = evict(&pods[1]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(err.contains("TooManyRequests") || err.contains("429"), "{err}");
    assert!(
        get(&s, &["pod", &pods[1]]).is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null())
    );
}
