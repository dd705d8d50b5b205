use super::*;

use skiff_store::RaftStore;

const SECRET: &str = "/registry/secrets/default/db";
const CONFIGMAP: &str = "/registry/configmaps/default/settings";

fn config(keys: &[(&str, u8)], identity: bool) -> EncryptionConfig {
    use base64::Engine as _;
    let mut text = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n",
    );
    if !keys.is_empty() {
        text.push_str("      - aesgcm:\n          keys:\n");
        for (name, byte) in keys {
            let secret = base64::engine::general_purpose::STANDARD.encode([*byte; 32]);
            text.push_str(&format!("            - {{name: {name}, secret: {secret}}}\n"));
        }
    }
    if identity {
        text.push_str("      - identity: {}\n");
    }
    EncryptionConfig::parse(&text).unwrap()
}

fn secret_json(value: &str) -> Vec<u8> {
    format!(r#"{{"kind":"Secret","data":{{"password":"{value}"}}}}"#).into_bytes()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn encrypting_store_should_seal_secrets_and_leave_other_values_alone() {
    let dir = tempfile::tempdir().unwrap();
    let raft: Arc<dyn Store> = Arc::new(RaftStore::open(dir.path()).await.unwrap());
    let store = EncryptingStore::new(raft.clone(), &config(&[("key1", 1)], true));
    assert_eq!(store.encrypted_resources(), vec!["secrets"]);

    let created = store.create(SECRET, secret_json("hunter2")).await.unwrap();
    assert_eq!(created.value, secret_json("hunter2"), "answers with the plain value");
    store.create(CONFIGMAP, b"{\"data\":{\"a\":\"plain\"}}".to_vec()).await.unwrap();

    // Below the wrapper: ciphertext for the Secret, the ConfigMap as it was.
    let raw = raft.get(SECRET).await.unwrap().unwrap().value;
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{}", String::from_utf8_lossy(&raw));
    assert!(!contains(&raw, "hunter2"));
    assert!(contains(&raft.get(CONFIGMAP).await.unwrap().unwrap().value, "plain"));

    // Through it: plain text on every read path.
    assert_eq!(store.get(SECRET).await.unwrap().unwrap().value, secret_json("hunter2"));
    let listed = store.list("/registry/").await.unwrap();
    assert!(listed.items.iter().any(|kv| kv.key == SECRET && kv.value == secret_json("hunter2")));
    let mut watch = store.watch("/registry/secrets/", created.mod_revision - 1).await.unwrap();
    let updated = store.update(SECRET, secret_json("hunter3"), None).await.unwrap();
    assert_eq!(updated.value, secret_json("hunter3"));
    let mut puts = Vec::new();
    while puts.len() < 2 {
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Put { kv, prev } => puts.push((kv.value, prev.map(|p| p.value))),
            WatchEvent::Progress { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(puts[0], (secret_json("hunter2"), None));
    assert_eq!(puts[1], (secret_json("hunter3"), Some(secret_json("hunter2"))));

    // Transactions seal their writes and answer with plain values, deletes opened.
    let other = "/registry/secrets/default/other";
    let results = store
        .txn(vec![
            TxnOp::Create { key: other.into(), value: secret_json("txn") },
            TxnOp::Delete { key: SECRET.into(), expected: Some(updated.mod_revision) },
        ])
        .await
        .unwrap();
    assert_eq!(results[0].value, secret_json("txn"));
    assert_eq!(results[1].value, secret_json("hunter3"));
    assert!(raft.get(other).await.unwrap().unwrap().value.starts_with(b"k8s:enc:"));
    let deleted = store.delete(other, None).await.unwrap();
    assert_eq!(deleted.value, secret_json("txn"));
    // The transaction's two events (in either order), opened, and the delete's.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Put { kv, .. } => seen.push(("put", kv.key, kv.value)),
            WatchEvent::Delete { key, prev, .. } => seen.push(("delete", key, prev.value)),
            WatchEvent::Progress { .. } => {}
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("delete", SECRET.to_string(), secret_json("hunter3")),
            ("delete", other.to_string(), secret_json("txn")),
            ("put", other.to_string(), secret_json("txn")),
        ]
    );
}

#[tokio::test]
async fn encrypting_store_should_report_stale_values_until_they_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let raft: Arc<dyn Store> = Arc::new(RaftStore::open(dir.path()).await.unwrap());
    let plain_before = raft.create("/registry/secrets/default/old", secret_json("old")).await;
    let plain_before = plain_before.unwrap();
    let old = EncryptingStore::new(raft.clone(), &config(&[("key1", 1)], true));
    let kv = old.create(SECRET, secret_json("v")).await.unwrap();
    assert!(!old.is_stale(SECRET, kv.mod_revision));
    // Plain text written before encryption was on is stale as soon as it is read.
    old.get("/registry/secrets/default/old").await.unwrap();
    assert!(old.is_stale("/registry/secrets/default/old", plain_before.mod_revision));

    // The new key first: the value of the old key reads, as stale, at its revision only.
    let rotated = EncryptingStore::new(raft.clone(), &config(&[("key2", 2), ("key1", 1)], false));
    assert!(!rotated.is_stale(SECRET, kv.mod_revision), "nothing read yet");
    assert_eq!(rotated.get(SECRET).await.unwrap().unwrap().value, secret_json("v"));
    assert!(rotated.is_stale(SECRET, kv.mod_revision));
    assert!(!rotated.is_stale(SECRET, kv.mod_revision + 1));
    // Rewriting the same value seals it with the new key and clears the mark.
    let rewritten = rotated.update(SECRET, secret_json("v"), Some(kv.mod_revision)).await.unwrap();
    assert!(!rotated.is_stale(SECRET, kv.mod_revision));
    let raw = raft.get(SECRET).await.unwrap().unwrap().value;
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    rotated.get(SECRET).await.unwrap();
    assert!(!rotated.is_stale(SECRET, rewritten.mod_revision));

    // The old key gone: the rewritten value reads; a value of a key the configuration lacks
    // is a storage error naming the key, on every read path, and never a panic.
    let new = EncryptingStore::new(raft.clone(), &config(&[("key2", 2)], false));
    assert_eq!(new.get(SECRET).await.unwrap().unwrap().value, secret_json("v"));
    let lost = EncryptingStore::new(raft.clone(), &config(&[("key3", 3)], false));
    for err in [
        lost.get(SECRET).await.unwrap_err(),
        lost.list("/registry/secrets/").await.unwrap_err(),
        lost.watch(SECRET, rewritten.mod_revision - 1)
            .await
            .unwrap()
            .next()
            .await
            .unwrap()
            .unwrap_err(),
    ] {
        let StoreError::Storage(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("cannot decrypt") && message.contains("key2"), "{message}");
        assert!(message.contains(SECRET), "{message}");
    }
    // Plain text without identity in the configuration is refused too.
    let err = lost.get("/registry/secrets/default/old").await.unwrap_err();
    assert!(err.to_string().contains("cannot decrypt"), "{err}");

    // A resource the configuration no longer names, but whose values are sealed: an error,
    // not ciphertext handed out as JSON.
    let nothing = EncryptingStore::new(
        raft.clone(),
        &EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [configmaps]\n    providers: [{identity: {}}]\n",
        )
        .unwrap(),
    );
    assert!(nothing.encrypted_resources().is_empty());
    let err = nothing.get(SECRET).await.unwrap_err();
    assert!(err.to_string().contains("no provider for this resource"), "{err}");
}

#[test]
fn load_or_generate_should_make_a_key_for_a_new_cluster_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let (text, config) = load_or_generate(&pki, None, true).unwrap();
    assert!(text.contains("aesgcm"), "{text}");
    assert!(config.transformer_for("", "secrets").is_some_and(|t| !t.writes_plain_text()));
    let path = pki.join(CONFIG_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // Kept across restarts.
    assert_eq!(load_or_generate(&pki, None, true).unwrap().0, text);

    // A data dir that had a store before: plain text, so members stay in agreement.
    let older = dir.path().join("older");
    let (text, config) = load_or_generate(&older, None, false).unwrap();
    assert!(!text.contains("aesgcm"));
    assert!(config.transformer_for("", "secrets").is_some_and(|t| t.writes_plain_text()));

    // A flag wins, and a bad file is an error naming it.
    let flag = dir.path().join("custom.yaml");
    std::fs::write(&flag, "kind: Pod\napiVersion: v1\n").unwrap();
    let err = load_or_generate(&pki, Some(&flag), true).unwrap_err().to_string();
    assert!(err.contains("custom.yaml") && err.contains("unsupported"), "{err}");
    let err = load_or_generate(&pki, Some(&dir.path().join("missing.yaml")), true).unwrap_err();
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}
