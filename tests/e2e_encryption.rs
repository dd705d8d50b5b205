//! End-to-end with the real kubectl: Secrets encrypted at rest, as kube-apiserver's
//! `--encryption-provider-config` does it. No file of the data dir (RocksDB tables, its log,
//! raft log and snapshots) holds a Secret's value, and keys rotate as Kubernetes documents it:
//! the new key first, then `kubectl get secrets -A -o json | kubectl replace -f -`. A member
//! that joins gets the cluster's keys, so every member reads what any member wrote.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use support::Skiff;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn b64(value: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// `n` random bytes.
fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("urandom");
    b
}

/// A value no file could hold by chance.
fn distinctive(what: &str) -> String {
    let hex: String = random(16).iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}-{hex}")
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The files under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn apply(s: &Skiff, yaml: &str) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply failed: {}{}", text(&out.stdout), text(&out.stderr));
}

/// The decoded `data[item]` of Secret `name` in `ns`.
fn secret_item(s: &Skiff, ns: &str, name: &str, item: &str) -> String {
    let path = format!("jsonpath={{.data.{}}}", item.replace('.', "\\."));
    let encoded = s.ok(&["get", "secret", name, "-n", ns, "-o", &path]);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_else(|e| panic!("secret {ns}/{name} {item}: {e}: {encoded:?}"));
    text(&decoded)
}

fn restart(s: &mut Skiff, dir: &Path, extra: &[&str]) {
    s.signal(libc::SIGTERM);
    *s = Skiff::start_with(dir, extra);
}

#[test]
fn encryption_should_keep_secret_values_out_of_every_file() {
    let _serial = support::serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    // Frequent snapshots: the raft log is compacted into RocksDB checkpoints and images too.
    let flags = ["--snapshot-every", "20"];
    let mut s = Skiff::start_with(&dir, &flags);

    // A new cluster made its own configuration, for the owner's eyes only.
    let config = dir.join("pki/encryption-config.yaml");
    let config_text = std::fs::read_to_string(&config).expect("generated encryption config");
    assert!(config_text.contains("aesgcm") && config_text.contains("secrets"), "{config_text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).expect("config").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", config.display());
    }

    let password = distinctive("password");
    let token = distinctive("token");
    let string_data = distinctive("stringdata");
    // Letters G to Z only: the store compresses its tables, and hex would let the compressor
    // match short runs of it against the UIDs and hashes around it, splitting the value.
    let cm_value: String = random(48).iter().map(|b| char::from(b'G' + b % 20)).collect();
    s.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={password}"),
        &format!("--from-literal=token={token}"),
    ]);
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n  api-key: {string_data}\n"
        ),
    );
    let tls =
        rcgen::generate_simple_self_signed(vec!["tls.example.com".to_string()]).expect("cert");
    let (cert_pem, key_pem) = (tls.cert.pem(), tls.signing_key.serialize_pem());
    std::fs::write(tmp.path().join("tls.crt"), &cert_pem).expect("tls.crt");
    std::fs::write(tmp.path().join("tls.key"), &key_pem).expect("tls.key");
    let (crt, key) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    s.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    s.ok(&["create", "configmap", "plain", &format!("--from-literal=value={cm_value}")]);
    // Some churn, so that snapshots are taken while the Secrets are in the store.
    for i in 0..30 {
        s.ok(&["annotate", "configmap", "plain", &format!("round={i}"), "--overwrite"]);
    }

    let check_values = |s: &Skiff| {
        assert_eq!(secret_item(s, "default", "db", "password"), password);
        assert_eq!(secret_item(s, "default", "db", "token"), token);
        assert_eq!(secret_item(s, "default", "api", "api-key"), string_data);
        assert_eq!(secret_item(s, "default", "web-tls", "tls.key"), key_pem);
        assert_eq!(secret_item(s, "default", "web-tls", "tls.crt"), cert_pem);
    };
    check_values(&s);

    // A restart flushes what the store still had in memory into its files, and proves the
    // generated key is kept.
    restart(&mut s, &dir, &flags);
    check_values(&s);
    s.signal(libc::SIGTERM);

    // The private key's PEM body, line by line (a line is long enough to be distinctive).
    let key_lines: Vec<&str> =
        key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40).collect();
    assert!(!key_lines.is_empty(), "{key_pem}");
    let mut needles: Vec<(String, String)> = Vec::new();
    for (what, value) in [("password", &password), ("token", &token), ("stringData", &string_data)]
    {
        needles.push((format!("{what} (raw)"), value.clone()));
        needles.push((format!("{what} (base64)"), b64(value.as_bytes())));
    }
    // The key's whole base64 form, and pieces of it: RocksDB compresses its tables, which may
    // split a long value, never every 32-character piece of a random one. Pieces start past
    // the PEM header and the PKCS#8 prefix every P-256 key shares (the admin kubeconfig holds
    // a key of its own, which begins the same way).
    let key_b64 = b64(key_pem.as_bytes());
    needles.push(("tls.key (base64)".into(), key_b64.clone()));
    for (i, start) in (128..key_b64.len().saturating_sub(32)).step_by(64).enumerate() {
        needles.push((format!("tls.key (base64) piece {i}"), key_b64[start..start + 32].into()));
    }
    for (i, line) in key_lines.iter().enumerate() {
        needles.push((format!("tls.key line {i} (raw)"), line.to_string()));
    }
    let files = files(&dir);
    assert!(files.len() > 5, "too few files to scan: {files:?}");
    let mut leaks = Vec::new();
    for (what, needle) in &needles {
        for f in files_containing(&dir, needle) {
            leaks.push(format!("{what} in {}", f.display()));
        }
    }
    assert!(leaks.is_empty(), "Secret values found on disk:\n{}", leaks.join("\n"));

    // The scan does find what is not encrypted: the ConfigMap's value is there in clear.
    // Any 12-letter piece is enough (a compressor may still split the value in places).
    let found: Vec<PathBuf> = (0..cm_value.len() - 11)
        .step_by(12)
        .flat_map(|i| files_containing(&dir, &cm_value[i..i + 12]))
        .collect();
    assert!(!found.is_empty(), "the ConfigMap value is in no file: the scan proves nothing");
    // And the Secrets are there, sealed.
    assert!(!files_containing(&dir, "k8s:enc:aesgcm:v1:key1:").is_empty());
}

/// An EncryptionConfiguration for Secrets with these aesgcm keys (name, key), first first.
fn write_config(path: &Path, keys: &[(&str, &[u8])]) -> String {
    let mut yaml = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aesgcm:\n          keys:\n",
    );
    for (name, key) in keys {
        yaml.push_str(&format!("            - name: {name}\n              secret: {}\n", b64(key)));
    }
    std::fs::write(path, &yaml).expect("writing the encryption config");
    path.display().to_string()
}

#[test]
fn encryption_should_rotate_keys_with_kubectl_replace() {
    let _serial = support::serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let (key1, key2, key3) = (random(32), random(32), random(32));
    let config = tmp.path().join("encryption.yaml");
    let flag = write_config(&config, &[("key1", &key1)]);
    let flags = ["--encryption-provider-config", flag.as_str()];
    let mut s = Skiff::start_with(&dir, &flags);

    let (v1, v2) = (distinctive("first"), distinctive("second"));
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["create", "secret", "generic", "s1", &format!("--from-literal=v={v1}")]);
    s.ok(&["create", "secret", "generic", "s2", "-n", "team", &format!("--from-literal=v={v2}")]);
    s.ok(&["create", "configmap", "c1", "--from-literal=v=plain"]);
    let check = |s: &Skiff| {
        assert_eq!(secret_item(s, "default", "s1", "v"), v1);
        assert_eq!(secret_item(s, "team", "s2", "v"), v2);
    };
    let rv =
        |s: &Skiff| s.ok(&["get", "secret", "s1", "-o", "jsonpath={.metadata.resourceVersion}"]);
    check(&s);

    // Step 1: the new key first, the old one still there to read with.
    write_config(&config, &[("key2", &key2), ("key1", &key1)]);
    restart(&mut s, &dir, &flags);
    check(&s);
    let before = rv(&s);

    // Step 2: rewrite every Secret; unchanged objects are written anew since they are stale.
    let all = s.ok(&["get", "secrets", "-A", "-o", "json"]);
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &all);
    assert!(out.status.success(), "replace failed: {}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(rv(&s), before, "replacing a Secret read with the old key must write it");
    // Written once is enough: a second replace of fresh values changes nothing.
    let after = rv(&s);
    let all = s.ok(&["get", "secrets", "-A", "-o", "json"]);
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rv(&s), after, "a fresh, unchanged Secret is not rewritten");
    check(&s);

    // Step 3: the old key removed: everything still reads.
    write_config(&config, &[("key2", &key2)]);
    restart(&mut s, &dir, &flags);
    check(&s);
    s.ok(&["get", "secrets", "-A"]);

    // A key the Secrets were not written with: reading them is an internal error (500) that
    // names the key, the server keeps running and serves everything else.
    write_config(&config, &[("key3", &key3)]);
    restart(&mut s, &dir, &flags);
    let out = s.kubectl(&["get", "secret", "s1", "-v=6"]);
    assert!(!out.status.success(), "read a Secret with the wrong key: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("500 Internal Server Error"), "{stderr}");
    assert!(stderr.contains("InternalError") && stderr.contains("cannot decrypt"), "{stderr}");
    assert!(stderr.contains("key2"), "the message names the key: {stderr}");
    assert!(!stderr.contains(&v1), "{stderr}");
    let out = s.kubectl(&["get", "secrets", "-n", "team"]);
    assert!(!out.status.success(), "listed Secrets with the wrong key");
    assert_eq!(s.ok(&["get", "configmap", "c1", "-o", "jsonpath={.data.v}"]), "plain");
    s.ok(&["create", "configmap", "c2", "--from-literal=v=still-writable"]);
    s.ok(&["get", "namespaces"]);
    // New Secrets are written (and read) with the key in use.
    s.ok(&["create", "secret", "generic", "s3", "--from-literal=v=new"]);
    s.wait_for("the new Secret to read", Duration::from_secs(10), || {
        s.kubectl(&["get", "secret", "s3"]).status.success()
    });
    assert_eq!(secret_item(&s, "default", "s3", "v"), "new");
    let alive = s.child.as_mut().map(|c| matches!(c.try_wait(), Ok(None))).unwrap_or(false);
    assert!(alive, "the server exited");
}

/// A second control-plane member (`skiff server --join`), killed on drop.
struct Joined {
    child: Child,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Joined {
    fn start(first: &Skiff, dir: &Path) -> Joined {
        let token = std::fs::read_to_string(first.dir.join("token")).expect("join token");
        let mut child = Command::new(support::skiff_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--disable-agent", "--node-ip"])
            .args(["127.0.0.1", "--node-name", "second", "--join", &first.url, "--token"])
            .arg(token.trim())
            .arg("--data-dir")
            .arg(dir)
            .env("SKIFF_LOG", "info,openraft=warn,kube=warn")
            .env_remove("SKIFF_TOKEN")
            .env_remove("SKIFF_ENCRYPTION_PROVIDER_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the joining member");
        let ready = support::ready_lines(&mut child)
            .recv_timeout(Duration::from_secs(120))
            .expect("the joining member did not become ready in 120 s");
        let kubeconfig = PathBuf::from(ready.split_whitespace().nth(1).unwrap_or_default());
        Joined { child, dir: dir.to_path_buf(), kubeconfig }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let home = self.dir.join("tool-home");
        let _ = std::fs::create_dir_all(&home);
        Command::new(support::tools_dir().join("kubectl"))
            .env("HOME", home)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn encryption_should_give_joining_members_the_clusters_keys() {
    let _serial = support::serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = Skiff::start(&tmp.path().join("first"));
    let second = Joined::start(&first, &tmp.path().join("second"));

    let config = |dir: &Path| {
        std::fs::read_to_string(dir.join("pki/encryption-config.yaml")).expect("encryption config")
    };
    assert_eq!(config(&second.dir), config(&first.dir), "the joiner got the cluster's config");

    // Written through one member, read through the other, both ways.
    let (v1, v2) = (distinctive("via-first"), distinctive("via-second"));
    first.ok(&["create", "secret", "generic", "from-first", &format!("--from-literal=v={v1}")]);
    // The joiner may still be catching up when it first answers: poll until its write goes
    // through.
    let literal = format!("--from-literal=v={v2}");
    first.wait_for("a write through the joiner", Duration::from_secs(60), || {
        let out = second.kubectl(&["create", "secret", "generic", "from-second", &literal]);
        out.status.success() || text(&out.stderr).contains("AlreadyExists")
    });
    first.wait_for("the joiner's Secret on the first member", Duration::from_secs(10), || {
        first.kubectl(&["get", "secret", "from-second"]).status.success()
    });
    assert_eq!(secret_item(&first, "default", "from-second", "v"), v2);
    let mut read = String::new();
    first.wait_for("the first member's Secret on the joiner", Duration::from_secs(10), || {
        let out = second.kubectl(&["get", "secret", "from-first", "-o", "jsonpath={.data.v}"]);
        read = text(&out.stdout);
        out.status.success()
    });
    let read = base64::engine::general_purpose::STANDARD.decode(read.trim()).expect("base64");
    assert_eq!(text(&read), v1);

    // Neither member keeps either value in clear.
    for (what, value) in [("first", &v1), ("second", &v2)] {
        for needle in [value.clone(), b64(value.as_bytes())] {
            for dir in [&first.dir, &second.dir] {
                let found = files_containing(dir, &needle);
                assert!(found.is_empty(), "the {what} value in clear: {found:?}");
            }
        }
    }
}
