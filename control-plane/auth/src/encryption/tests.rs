use super::*;

const KEY: &[u8] = b"/registry/secrets/default/s1";
const PLAIN: &[u8] = br#"{"kind":"Secret","data":{"a":"aGVsbG8="}}"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A configuration for `secrets` with `providers` (YAML list items, indented 6).
fn config(providers: &str) -> EncryptionConfig {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    );
    EncryptionConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn keyed(provider: &str, keys: &[(&str, &[u8])]) -> String {
    let mut s = format!("      - {provider}:\n          keys:\n");
    for (name, secret) in keys {
        s.push_str(&format!("            - name: {name}\n              secret: {}\n", b64(secret)));
    }
    s
}

const IDENTITY: &str = "      - identity: {}\n";

fn secrets(c: &EncryptionConfig) -> Arc<Transformer> {
    c.transformer_for("", "secrets").expect("secrets are configured")
}

fn parse_error(text: &str) -> String {
    match EncryptionConfig::parse(text) {
        Ok(c) => panic!("accepted {text}\nas {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn transformer_should_round_trip_values_with_every_provider_and_key_size() {
    let cases: &[(&str, usize, &str, usize)] = &[
        // provider, key size, prefix, bytes added besides the prefix
        ("aesgcm", 16, AESGCM_PREFIX, 12 + 16),
        ("aesgcm", 24, AESGCM_PREFIX, 12 + 16),
        ("aesgcm", 32, AESGCM_PREFIX, 12 + 16),
        ("aescbc", 16, AESCBC_PREFIX, 16 + (16 - PLAIN.len() % 16)),
        ("aescbc", 24, AESCBC_PREFIX, 16 + (16 - PLAIN.len() % 16)),
        ("aescbc", 32, AESCBC_PREFIX, 16 + (16 - PLAIN.len() % 16)),
        ("secretbox", 32, SECRETBOX_PREFIX, 24 + 16),
    ];
    for &(provider, size, prefix, overhead) in cases {
        let t = secrets(&config(&keyed(provider, &[("key1", &vec![7u8; size])])));
        assert!(!t.writes_plain_text());
        let stored = t.encrypt(PLAIN, KEY).unwrap().into_owned();
        let want_prefix = format!("{prefix}key1:");
        assert!(stored.starts_with(want_prefix.as_bytes()), "{provider}/{size}: {stored:?}");
        assert_eq!(stored.len(), want_prefix.len() + overhead + PLAIN.len(), "{provider}/{size}");
        assert!(
            !stored.windows(PLAIN.len()).any(|w| w == PLAIN),
            "{provider}/{size}: plain text in the stored value"
        );
        // Fresh randomness per write: the same value never encrypts the same way twice.
        assert_ne!(stored, t.encrypt(PLAIN, KEY).unwrap().into_owned(), "{provider}/{size}");
        let read = t.decrypt(&stored, KEY).unwrap();
        assert_eq!(read, Decrypted { value: Cow::Borrowed(PLAIN), stale: false }, "{provider}");
        // An empty value round-trips too.
        let empty = t.encrypt(b"", KEY).unwrap().into_owned();
        assert_eq!(t.decrypt(&empty, KEY).unwrap().value.as_ref(), b"");
    }
}

/// Values sealed by another AES implementation (Python's `cryptography`) in kube-apiserver's
/// layout, key `bytes(range(32))`: Skiff reads what kube-apiserver wrote.
#[test]
fn transformer_should_read_values_in_kube_apiservers_layout() {
    let gcm = "6b38733a656e633a61657367636d3a76313a6b6579313a6465666768696a6b6c6d6e6f3339b50f178d74a41c313a8ba8001edf6ee0626bff0dd148dcf3cd6ac181c40fc29a2287742fb97980e9901bb1f1ee816356231ecaf0657e85";
    let cbc = "6b38733a656e633a6165736362633a76313a6b6579313ac8c9cacbcccdcecfd0d1d2d3d4d5d6d707d16fe6735d98b78b6abb88e36de8980d3ed6e6ecd1daed711c0d35641d4b23b6d6d5187decbcd7927eeafb93ea7e5e";
    let key: Vec<u8> = (0u8..32).collect();
    for (provider, stored) in [("aesgcm", gcm), ("aescbc", cbc)] {
        let stored = hex_decode(stored);
        let t = secrets(&config(&keyed(provider, &[("key1", &key)])));
        assert_eq!(t.decrypt(&stored, KEY).unwrap().value.as_ref(), PLAIN, "{provider}");
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn aesgcm_should_not_open_a_value_moved_under_another_key() {
    let t = secrets(&config(&keyed("aesgcm", &[("key1", &[1; 32])])));
    let stored = t.encrypt(PLAIN, KEY).unwrap().into_owned();
    let err = t.decrypt(&stored, b"/registry/secrets/default/other").unwrap_err();
    assert!(matches!(err, TransformError::Decrypt { provider: "aesgcm", .. }), "{err}");
}

#[test]
fn transformer_should_fail_with_a_wrong_key_naming_it() {
    for provider in ["aesgcm", "aescbc", "secretbox"] {
        let writer = secrets(&config(&keyed(provider, &[("key1", &[1; 32])])));
        let stored = writer.encrypt(PLAIN, KEY).unwrap().into_owned();
        // Same name, other secret.
        let other = secrets(&config(&keyed(provider, &[("key1", &[2; 32])])));
        match other.decrypt(&stored, KEY) {
            Err(TransformError::Decrypt { key, .. }) => assert_eq!(key, "key1"),
            // CBC has no authentication: a wrong key may yield valid-looking padding, but
            // never the plain text.
            Ok(d) if provider == "aescbc" => assert_ne!(d.value.as_ref(), PLAIN),
            other => panic!("{provider}: {other:?}"),
        }
        // Another name.
        let renamed = secrets(&config(&keyed(provider, &[("key2", &[1; 32])])));
        let err = renamed.decrypt(&stored, KEY).unwrap_err();
        assert_eq!(
            err,
            TransformError::UnknownKey { provider: static_name(provider), key: "key1".into() }
        );
        assert!(err.to_string().contains("\"key1\""), "{err}");
    }
}

fn static_name(s: &str) -> &'static str {
    match s {
        "aesgcm" => "aesgcm",
        "aescbc" => "aescbc",
        _ => "secretbox",
    }
}

#[test]
fn transformer_should_reject_truncated_and_altered_values() {
    for provider in ["aesgcm", "aescbc", "secretbox"] {
        let t = secrets(&config(&keyed(provider, &[("key1", &[1; 32])])));
        let stored = t.encrypt(PLAIN, KEY).unwrap().into_owned();
        let prefix_len = format!("k8s:enc:{provider}:v1:key1:").len();
        for cut in [prefix_len, prefix_len + 5, stored.len() - 1] {
            assert!(t.decrypt(&stored[..cut], KEY).is_err(), "{provider}: cut at {cut}");
        }
        if provider != "aescbc" {
            let mut flipped = stored.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(t.decrypt(&flipped, KEY).is_err(), "{provider}: altered");
        }
    }
}

#[test]
fn rotation_should_read_old_values_as_stale_and_write_with_the_new_key() {
    let old = secrets(&config(&keyed("aesgcm", &[("key1", &[1; 32])])));
    let written_before = old.encrypt(PLAIN, KEY).unwrap().into_owned();

    // Step 1: the new key first, the old one still there.
    let both = secrets(&config(&keyed("aesgcm", &[("key2", &[2; 32]), ("key1", &[1; 32])])));
    let read = both.decrypt(&written_before, KEY).unwrap();
    assert_eq!(read.value.as_ref(), PLAIN);
    assert!(read.stale, "a value of the second key must be reported stale");
    let rewritten = both.encrypt(&read.value, KEY).unwrap().into_owned();
    assert!(rewritten.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    assert!(!both.decrypt(&rewritten, KEY).unwrap().stale);

    // Step 2: the old key gone: rewritten values read, old ones fail naming their key.
    let new = secrets(&config(&keyed("aesgcm", &[("key2", &[2; 32])])));
    assert_eq!(new.decrypt(&rewritten, KEY).unwrap().value.as_ref(), PLAIN);
    let err = new.decrypt(&written_before, KEY).unwrap_err();
    assert!(err.to_string().contains("key1"), "{err}");

    // A value of a later provider is stale too (switching from aescbc to secretbox).
    let cbc = secrets(&config(&keyed("aescbc", &[("k", &[3; 32])])));
    let by_cbc = cbc.encrypt(PLAIN, KEY).unwrap().into_owned();
    let switched = secrets(&config(&format!(
        "{}{}",
        keyed("secretbox", &[("s", &[4; 32])]),
        keyed("aescbc", &[("k", &[3; 32])])
    )));
    let read = switched.decrypt(&by_cbc, KEY).unwrap();
    assert!(read.stale && read.value.as_ref() == PLAIN);
}

#[test]
fn identity_should_read_plain_text_only_when_listed() {
    // Encryption first, identity after: plain values (stored before) read, as stale.
    let t = secrets(&config(&format!("{}{IDENTITY}", keyed("aesgcm", &[("key1", &[1; 32])]))));
    let read = t.decrypt(PLAIN, KEY).unwrap();
    assert_eq!(read, Decrypted { value: Cow::Borrowed(PLAIN), stale: true });

    // No identity: plain values are an error.
    let strict = secrets(&config(&keyed("aesgcm", &[("key1", &[1; 32])])));
    assert_eq!(strict.decrypt(PLAIN, KEY).unwrap_err(), TransformError::PlainTextNotAllowed);

    // Identity first (decrypting everything back): writes plain text, still reads encrypted
    // values, as stale.
    let encrypted = strict.encrypt(PLAIN, KEY).unwrap().into_owned();
    let back = secrets(&config(&format!("{IDENTITY}{}", keyed("aesgcm", &[("key1", &[1; 32])]))));
    assert!(back.writes_plain_text());
    assert_eq!(back.encrypt(PLAIN, KEY).unwrap(), Cow::Borrowed(PLAIN));
    let read = back.decrypt(&encrypted, KEY).unwrap();
    assert!(read.stale && read.value.as_ref() == PLAIN);
    assert!(!back.decrypt(PLAIN, KEY).unwrap().stale);

    // Identity alone never takes an encrypted value for plain text.
    let plain = secrets(&config(IDENTITY));
    let err = plain.decrypt(&encrypted, KEY).unwrap_err();
    assert_eq!(err, TransformError::NoProvider { prefix: "k8s:enc:aesgcm:v1:".into() });
}

#[test]
fn config_should_pick_exact_then_group_then_global_entries() {
    let text = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers: [{secretbox: {keys: [{name: s, secret: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=}]}}]
  - resources: ['*.apps']
    providers: [{aescbc: {keys: [{name: c, secret: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=}]}}]
  - resources: ['*.*']
    providers: [{aesgcm: {keys: [{name: g, secret: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=}]}}, {identity: {}}]
";
    let c = EncryptionConfig::parse(text).unwrap();
    let prefix = |group: &str, resource: &str| {
        let t = c.transformer_for(group, resource).unwrap();
        let stored = t.encrypt(PLAIN, KEY).unwrap().into_owned();
        String::from_utf8_lossy(&stored[..stored.iter().rposition(|&b| b == b':').unwrap_or(0)])
            .split(':')
            .nth(2)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(prefix("", "secrets"), "secretbox");
    assert_eq!(prefix("", "configmaps"), "secretbox");
    assert_eq!(prefix("apps", "deployments"), "aescbc");
    assert_eq!(prefix("", "pods"), "aesgcm");
    assert_eq!(prefix("batch", "jobs"), "aesgcm");

    // Without a global entry, an unnamed resource is not configured at all.
    let only = config(IDENTITY);
    assert!(only.transformer_for("", "configmaps").is_none());
    assert!(only.transformer_for("apps", "secrets").is_none());
}

#[test]
fn config_should_join_the_providers_of_a_resource_named_twice() {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}  - resources: [secrets]\n    providers:\n{IDENTITY}",
        keyed("aesgcm", &[("key1", &[1; 32])])
    );
    let t = secrets(&EncryptionConfig::parse(&text).unwrap());
    assert!(!t.writes_plain_text());
    assert!(t.decrypt(PLAIN, KEY).unwrap().stale, "identity of the second entry reads plain text");
}

#[test]
fn generated_config_should_encrypt_secrets_with_a_fresh_aesgcm_key() {
    let text = EncryptionConfig::generate_default();
    let c = EncryptionConfig::parse(&text).unwrap();
    let t = secrets(&c);
    let stored = t.encrypt(PLAIN, KEY).unwrap().into_owned();
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{text}");
    // Secrets written before encryption was on still read.
    assert!(t.decrypt(PLAIN, KEY).unwrap().stale);
    assert!(c.transformer_for("", "configmaps").is_none());
    // Every cluster its own key.
    assert_ne!(text, EncryptionConfig::generate_default());
    let plain = EncryptionConfig::parse(&EncryptionConfig::plain_text()).unwrap();
    assert!(secrets(&plain).writes_plain_text());
}

#[test]
fn config_should_accept_json_and_the_legacy_kind() {
    let json = format!(
        r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration","resources":[{{"resources":["secrets"],"providers":[{{"aesgcm":{{"keys":[{{"name":"k","secret":"{}"}}]}}}}]}}]}}"#,
        b64(&[9; 16])
    );
    assert!(!secrets(&EncryptionConfig::parse(&json).unwrap()).writes_plain_text());
    let legacy = "kind: EncryptionConfig\napiVersion: v1\nresources:\n  - resources: [secrets]\n    providers: [{identity: {}}]\n";
    assert!(secrets(&EncryptionConfig::parse(legacy).unwrap()).writes_plain_text());
}

#[test]
fn config_should_reject_bad_files_naming_the_field() {
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
    let with = |resources: &str| format!("{head}resources:\n{resources}");
    let one =
        |providers: &str| with(&format!("  - resources: [secrets]\n    providers:\n{providers}"));
    let k32 = b64(&[1; 32]);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "is empty"),
        ("resources: [".into(), "decoding the encryption configuration"),
        ("apiVersion: v1\nkind: Pod\n".into(), "unsupported encryption configuration type v1/Pod"),
        (format!("{head}resources: []\n"), "resources: at least one resources is required"),
        (
            with("  - resources: []\n    providers: [{identity: {}}]\n"),
            "resources[0].resources: at least one resources[0].resources is required",
        ),
        (
            with("  - resources: [secrets]\n    providers: []\n"),
            "resources[0].providers: at least one resources[0].providers is required",
        ),
        (one("      - {}\n"), "resources[0].providers[0]: provider does not contain any"),
        (
            one("      - {identity: {}, aesgcm: {keys: []}}\n"),
            "resources[0].providers[0]: more than one provider",
        ),
        (
            one("      - kms: {name: x, endpoint: 'unix:///k.sock'}\n"),
            "resources[0].providers[0].kms: kms providers are not supported by Skiff",
        ),
        (
            one("      - aesgcm: {keys: []}\n"),
            "resources[0].providers[0].aesgcm.keys: at least one keys",
        ),
        (
            one(&keyed("aesgcm", &[("key1", &[1; 20])])),
            "resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 20, expected one of [16, 24, 32]",
        ),
        (
            one(&keyed("secretbox", &[("key1", &[1; 16])])),
            "resources[0].providers[0].secretbox.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 16, expected one of [32]",
        ),
        (
            one("      - aescbc: {keys: [{name: k, secret: 'not base64!'}]}\n"),
            "resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secrets must be base64 encoded",
        ),
        (
            one(&format!("      - aesgcm: {{keys: [{{secret: {k32}}}]}}\n")),
            "resources[0].providers[0].aesgcm.keys[0].name: name is a mandatory field for a key",
        ),
        (
            one("      - aesgcm: {keys: [{name: k}]}\n"),
            "resources[0].providers[0].aesgcm.keys[0].secret: secret is a mandatory field for a key",
        ),
        (
            one(&keyed("aesgcm", &[("k", &[1; 32]), ("k", &[2; 32])])),
            "resources[0].providers[0].aesgcm.keys[1].name: duplicate key name \"k\"",
        ),
        (
            with("  - resources: [Secrets]\n    providers: [{identity: {}}]\n"),
            "resources[0].resources[0]: Invalid value: \"Secrets\": resource name should not contain capital letters",
        ),
        (
            with("  - resources: ['*']\n    providers: [{identity: {}}]\n"),
            "resources[0].resources[0]: Invalid value: \"*\": use '*.' to encrypt all the resources",
        ),
        (
            with("  - resources: [events.events.k8s.io]\n    providers: [{identity: {}}]\n"),
            "Use 'events' instead in the config file",
        ),
        (
            with("  - resources: [serviceipallocations]\n    providers: [{identity: {}}]\n"),
            "resources which do not have REST API/s cannot be encrypted",
        ),
        (
            with("  - resources: ['secrets.*']\n    providers: [{identity: {}}]\n"),
            "encrypting the same resource across groups is not supported",
        ),
        (
            with("  - resources: [secrets, secrets]\n    providers: [{identity: {}}]\n"),
            "resources[0].resources: Invalid value: [\"secrets\", \"secrets\"]: the same resource cannot be specified multiple times",
        ),
        (
            with("  - resources: [secrets, '*.']\n    providers: [{identity: {}}]\n"),
            "using overlapping resources such as 'secrets' and '*.'",
        ),
        (
            with(
                "  - resources: ['*.*']\n    providers: [{identity: {}}]\n  - resources: [secrets]\n    providers: [{identity: {}}]\n",
            ),
            "resources[1].resources: resource \"secrets\" is masked by earlier rule \"*.*\"",
        ),
        (
            with(
                "  - resources: ['*.apps']\n    providers: [{identity: {}}]\n  - resources: [deployments.apps]\n    providers: [{identity: {}}]\n",
            ),
            "resource \"deployments.apps\" is masked by earlier rule \"*.apps\"",
        ),
    ];
    for (text, want) in cases {
        let got = parse_error(&text);
        assert!(got.contains(want), "for\n{text}\nwant {want:?}\ngot  {got:?}");
        // A key's secret is never echoed.
        assert!(!got.contains(&k32), "{got}");
    }
}

#[test]
fn config_should_report_every_problem_at_once() {
    let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [Secrets]\n    providers: [{}]\n";
    let got = parse_error(text);
    assert!(
        got.contains("resources[0].resources[0]") && got.contains("resources[0].providers[0]"),
        "{got}"
    );
}

#[test]
fn debug_output_should_never_show_a_key() {
    let secret = [5u8; 32];
    let c = config(&keyed("aesgcm", &[("key1", &secret)]));
    let shown = format!("{c:?} {:?}", secrets(&c));
    assert!(shown.contains("aesgcm[key1]"), "{shown}");
    assert!(!shown.contains(&b64(&secret)) && !shown.contains("5, 5"), "{shown}");
}
