//! The host against the example and fault-injection policies `scripts/build-guests.sh`
//! builds (`policy-*.wasm` in SKIFF_GUESTS_DIR): answers, patches, and faults that stop only
//! the call they happen in.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A built policy, or `None` (after saying why) when the guests are not built; under
/// `CI=true` that fails the test.
fn policy(name: &str) -> Option<Vec<u8>> {
    let dir = match std::env::var_os("SKIFF_GUESTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/guests/out"),
    };
    let path = dir.join(format!("policy-{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{}: {e} (scripts/build-guests.sh; SKIFF_GUESTS_DIR)",
                path.display()
            );
            eprintln!("NOTICE: policy guests not built (scripts/build-guests.sh); skipping");
            None
        }
    }
}

fn pod_request(image: &str, labels: serde_json::Value) -> String {
    json!({
        "uid": "u1", "operation": "CREATE", "namespace": "default", "name": "p",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "userInfo": {"username": "alice"},
        "object": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": image}]}},
    })
    .to_string()
}

fn reader() -> Arc<dyn ClusterReader> {
    Arc::new(NothingToRead)
}

#[tokio::test]
async fn allowed_registries_should_deny_other_registries() {
    let Some(bytes) = policy("allowed-registries") else { return };
    let host = PolicyHost::new(None).expect("host");
    let m = host.compile("allowed-registries", &bytes).expect("compile");
    let settings = r#"{"registries": ["skiff.local"]}"#;
    host.validate_settings(&m, "p", settings, Limits::default()).await.expect("settings");
    let bad = host.validate_settings(&m, "p", r#"{"registries": []}"#, Limits::default()).await;
    assert!(matches!(bad, Err(PolicyError::Settings(_))), "{bad:?}");
    let ok = host
        .validate(
            &m,
            "p",
            &pod_request("skiff.local/app:1", json!({})),
            settings,
            reader(),
            Limits::default(),
        )
        .await
        .expect("verdict");
    assert!(ok.allowed, "{ok:?}");
    let no = host
        .validate(
            &m,
            "p",
            &pod_request("nginx:1.27", json!({})),
            settings,
            reader(),
            Limits::default(),
        )
        .await
        .expect("verdict");
    assert!(!no.allowed);
    assert_eq!(no.code, 403);
    assert!(no.message.contains("nginx:1.27"), "{}", no.message);
}

#[tokio::test]
async fn default_label_should_answer_a_patch_for_missing_labels() {
    let Some(bytes) = policy("default-label") else { return };
    let host = PolicyHost::new(None).expect("host");
    let m = host.compile("default-label", &bytes).expect("compile");
    let settings = r#"{"labels": {"team": "unknown"}}"#;
    let v = host
        .validate(
            &m,
            "p",
            &pod_request("x", json!({"app": "a"})),
            settings,
            reader(),
            Limits::default(),
        )
        .await
        .expect("verdict");
    assert!(v.allowed);
    let patch: serde_json::Value =
        serde_json::from_slice(v.patch.as_deref().expect("a patch")).expect("json patch");
    assert_eq!(patch, json!([{"op": "add", "path": "/metadata/labels/team", "value": "unknown"}]));
    let v = host
        .validate(
            &m,
            "p",
            &pod_request("x", json!({"team": "a"})),
            settings,
            reader(),
            Limits::default(),
        )
        .await
        .expect("verdict");
    assert!(v.patch.is_none(), "an existing label is kept: {v:?}");
}

#[tokio::test]
async fn faults_should_stop_only_their_call() {
    let (Some(trap), Some(spin)) = (policy("trap"), policy("spin")) else { return };
    let host = PolicyHost::new(None).expect("host");
    let trap = host.compile("trap", &trap).expect("compile");
    let spin = host.compile("spin", &spin).expect("compile");
    let req = pod_request("x", json!({}));
    let e = host.validate(&trap, "trap", &req, "{}", reader(), Limits::default()).await;
    assert!(matches!(e, Err(PolicyError::Trap(_))), "{e:?}");
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let started = Instant::now();
    // A spinning policy next to a quick task: the task is not held up behind it.
    let quick = tokio::spawn(async { Instant::now() });
    let e = host.validate(&spin, "spin", &req, "{}", reader(), limits).await;
    assert!(matches!(e, Err(PolicyError::Timeout(_))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "stopped at its deadline");
    let ran_at = quick.await.expect("quick task");
    assert!(
        ran_at.duration_since(started) < Duration::from_millis(80),
        "the runtime was not blocked"
    );
    if let Some(hog) = policy("hog") {
        let hog = host.compile("hog", &hog).expect("compile");
        let limits = Limits { memory_bytes: 8 << 20, ..Limits::default() };
        let e = host.validate(&hog, "hog", &req, "{}", reader(), limits).await;
        assert!(matches!(e, Err(PolicyError::Memory(_) | PolicyError::Trap(_))), "{e:?}");
    }
}

#[test]
fn compile_should_refuse_what_is_not_a_policy_component() {
    let host = PolicyHost::new(None).expect("host");
    let e = host.compile("junk", b"not wasm").err().expect("refused");
    assert!(matches!(e, PolicyError::Compile { .. }), "{e:?}");
}
