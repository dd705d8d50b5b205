//! End-to-end: identity and access with the real kubectl and helm against a real `skiff
//! server`. Users with client certificates from `skiff kubeconfig create`, a service account
//! token, and impersonation each get exactly what their bindings to `view`, `edit`, `admin`,
//! `cluster-admin` or a custom Role (resourceNames and a subresource) allow; `kubectl auth
//! can-i` and `whoami` tell the truth; 403s carry kube-apiserver's message; escalation is
//! refused; anonymous callers reach only health and version; bad credentials get 401; helm 3
//! and helm 4 install a chart with its own RBAC as a namespace admin.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Checks, Skiff, guest, repo_root, skiff_bin, tool, tools_dir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl as one user (its own kubeconfig).
struct User<'a> {
    name: &'static str,
    kubeconfig: PathBuf,
    skiff: &'a Skiff,
}

impl User<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(tools_dir().join("kubectl"))
            .env("HOME", self.skiff.tool_home())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}: kubectl {args:?} failed: {}{}",
            self.name,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// kubectl that must fail with `want` in its error output.
    fn refused(&self, args: &[&str], want: &str) {
        let out = self.run(args);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: kubectl {args:?} should fail: {}",
            self.name,
            text(&out.stdout)
        );
        assert!(err.contains(want), "{}: kubectl {args:?}: want {want:?} in: {err}", self.name);
    }

    /// `run` with `stdin` as kubectl's input.
    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(tools_dir().join("kubectl"))
            .env("HOME", self.skiff.tool_home())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// `kubectl auth can-i` as this user: yes or no.
    fn can(&self, args: &[&str]) -> bool {
        let out = self.run(&[&["auth", "can-i"], args].concat());
        let answer = text(&out.stdout);
        match answer.trim() {
            "yes" => true,
            "no" => false,
            other => panic!("{}: can-i {args:?}: {other:?} {}", self.name, text(&out.stderr)),
        }
    }
}

/// `skiff kubeconfig create NAME --group G...` against the server's data dir.
fn client_cert_user<'a>(s: &'a Skiff, name: &'static str, groups: &[&str], dir: &Path) -> User<'a> {
    let path = dir.join(format!("{name}.kubeconfig"));
    let mut cmd = Command::new(skiff_bin());
    cmd.args(["kubeconfig", "create", name, "--data-dir"]).arg(&s.dir).arg("-o").arg(&path);
    for g in groups {
        cmd.args(["--group", g]);
    }
    let out = cmd.output().expect("skiff kubeconfig create");
    assert!(out.status.success(), "skiff kubeconfig create {name}: {}", text(&out.stderr));
    User { name, kubeconfig: path, skiff: s }
}

/// A kubeconfig for the same server with a bearer token (or none: anonymous).
fn token_user<'a>(s: &'a Skiff, name: &'static str, token: Option<&str>, dir: &Path) -> User<'a> {
    let admin = std::fs::read_to_string(&s.kubeconfig).expect("admin kubeconfig");
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&admin).expect("yaml");
    let user = &mut doc["users"][0]["user"];
    *user = match token {
        Some(t) => serde_yaml_ng::from_str(&format!("token: {t:?}")).expect("yaml"),
        None => serde_yaml_ng::from_str("{}").expect("yaml"),
    };
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml_ng::to_string(&doc).expect("yaml")).expect("write kubeconfig");
    User { name, kubeconfig: path, skiff: s }
}

const CUSTOM_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: config-keeper, namespace: team-a}
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["app-config"]
  verbs: ["get", "update"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "update", "patch"]
"#;

#[test]
fn rbac_should_give_each_user_exactly_what_its_bindings_allow() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("data"));
    for ns in ["team-a", "team-b"] {
        s.ok(&["create", "namespace", ns]);
    }
    let alice = client_cert_user(&s, "alice", &["devs"], dir.path());
    let bob = client_cert_user(&s, "bob", &[], dir.path());
    let carol = client_cert_user(&s, "carol", &[], dir.path());
    let dave = client_cert_user(&s, "dave", &[], dir.path());
    let erin = client_cert_user(&s, "erin", &[], dir.path());
    let frank = client_cert_user(&s, "frank", &[], dir.path());
    let grace = client_cert_user(&s, "grace", &[], dir.path());
    // alice sees team-a (through her group), bob edits it, carol administers it, dave owns
    // the cluster, erin may impersonate alice only.
    s.ok(&[
        "create",
        "rolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
        "-n",
        "team-a",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
        "-n",
        "team-a",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "carol-admin",
        "--clusterrole=admin",
        "--user=carol",
        "-n",
        "team-a",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "dave-root",
        "--clusterrole=cluster-admin",
        "--user=dave",
    ]);
    s.ok(&[
        "create",
        "clusterrole",
        "impersonate-alice",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=alice",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "erin-impersonates",
        "--clusterrole=impersonate-alice",
        "--user=erin",
    ]);
    // A service account with a custom Role: one ConfigMap by name, and a subresource.
    s.ok(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], CUSTOM_ROLE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&[
        "create",
        "rolebinding",
        "robot-keeper",
        "--role=config-keeper",
        "--serviceaccount=team-a:robot",
        "-n",
        "team-a",
    ]);
    s.ok(&["create", "configmap", "app-config", "--from-literal=k=v", "-n", "team-a"]);
    s.ok(&["create", "configmap", "other", "--from-literal=k=v", "-n", "team-a"]);
    s.ok(&["create", "deployment", "web", "--image=hello-http:latest", "-n", "team-a"]);
    let token = s.ok(&["create", "token", "robot", "-n", "team-a"]).trim().to_string();
    let robot = token_user(&s, "robot", Some(&token), dir.path());
    let mut c = Checks::default();

    c.check("the can-i table", || {
        // (user, can-i args, expected)
        let table: &[(&User, &[&str], bool)] = &[
            (&alice, &["get", "pods", "-n", "team-a"], true),
            (&alice, &["list", "deployments.apps", "-n", "team-a"], true),
            (&alice, &["get", "secrets", "-n", "team-a"], false),
            (&alice, &["create", "pods", "-n", "team-a"], false),
            (&alice, &["get", "pods", "-n", "team-b"], false),
            (&alice, &["list", "nodes"], false),
            (&bob, &["create", "deployments.apps", "-n", "team-a"], true),
            (&bob, &["create", "pods/exec", "-n", "team-a"], true),
            (&bob, &["get", "secrets", "-n", "team-a"], true),
            (&bob, &["create", "roles", "-n", "team-a"], false),
            (&bob, &["create", "rolebindings", "-n", "team-a"], false),
            (&bob, &["delete", "pods", "-n", "team-b"], false),
            (&carol, &["create", "roles", "-n", "team-a"], true),
            (&carol, &["create", "rolebindings", "-n", "team-a"], true),
            (&carol, &["delete", "namespaces/team-a"], false),
            (&carol, &["create", "clusterrolebindings"], false),
            (&dave, &["delete", "nodes"], true),
            (&dave, &["get", "/metrics"], true),
            (&erin, &["impersonate", "users/alice"], true),
            (&erin, &["impersonate", "users/dave"], false),
            (&erin, &["get", "pods", "-n", "team-a"], false),
            (&robot, &["get", "configmaps/app-config", "-n", "team-a"], true),
            (&robot, &["update", "configmaps/app-config", "-n", "team-a"], true),
            (&robot, &["get", "configmaps/other", "-n", "team-a"], false),
            (&robot, &["list", "configmaps", "-n", "team-a"], false),
            (&robot, &["patch", "deployments.apps", "--subresource=scale", "-n", "team-a"], true),
            (&robot, &["patch", "deployments.apps", "-n", "team-a"], false),
            (&robot, &["get", "configmaps/app-config", "-n", "team-b"], false),
        ];
        let mut wrong = Vec::new();
        for (user, args, want) in table {
            if user.can(args) != *want {
                wrong.push(format!("{} can-i {args:?}: want {want}", user.name));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    });

    c.check("can-i --list per user", || {
        let list = robot.ok(&["auth", "can-i", "--list", "-n", "team-a"]);
        let rows: Vec<Vec<&str>> =
            list.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
        let row = |resource: &str| rows.iter().find(|r| r.first() == Some(&resource)).cloned();
        assert_eq!(
            row("configmaps"),
            Some(vec!["configmaps", "[]", "[app-config]", "[get", "update]"]),
            "{list}"
        );
        assert_eq!(
            row("deployments.apps/scale"),
            Some(vec!["deployments.apps/scale", "[]", "[]", "[get", "update", "patch]"]),
            "{list}"
        );
        // What every authenticated user has, and nothing else.
        assert!(row("selfsubjectaccessreviews.authorization.k8s.io").is_some(), "{list}");
        assert!(
            row("secrets").is_none() && row("pods").is_none() && row("*.*").is_none(),
            "{list}"
        );
        let dave_list = dave.ok(&["auth", "can-i", "--list"]);
        assert!(
            dave_list
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["*.*", "[]", "[]", "[*]"]),
            "{dave_list}"
        );
    });

    c.check("real requests and kube-apiserver's 403 messages", || {
        alice.ok(&["get", "pods", "-n", "team-a"]);
        alice.refused(
            &["create", "configmap", "x", "-n", "team-a"],
            r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "team-a""#,
        );
        alice.refused(
            &["get", "deployment", "web", "-n", "team-b"],
            r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "team-b""#,
        );
        alice.refused(&["get", "nodes"], r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#);
        bob.ok(&["scale", "deployment", "web", "--replicas=2", "-n", "team-a"]);
        robot.ok(&["get", "configmap", "app-config", "-n", "team-a"]);
        robot.refused(&["get", "configmap", "other", "-n", "team-a"], r#"configmaps "other" is forbidden: User "system:serviceaccount:team-a:robot" cannot get resource "configmaps""#);
        // `kubectl scale` reads the Deployment first; patching the subresource needs only it.
        robot.ok(&["patch", "deployment", "web", "--subresource=scale", "-n", "team-a", "--type=merge", "-p", r#"{"spec":{"replicas":1}}"#]);
        robot.refused(&["label", "deployment", "web", "x=y", "-n", "team-a"], "is forbidden");
        dave.ok(&["get", "nodes"]);
    });

    c.check("escalation and bind checks", || {
        // carol administers team-a: she may create Roles with what she holds there...
        carol.ok(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "team-a"]);
        carol.ok(&["create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice", "-n", "team-a"]);
        // ...but not grant what she does not hold, nor bind a role beyond her.
        carol.refused(
            &["create", "role", "node-reader", "--verb=list", "--resource=nodes", "-n", "team-a"],
            "is attempting to grant RBAC permissions not currently held",
        );
        carol.refused(
            &["create", "rolebinding", "carol-root", "--clusterrole=cluster-admin", "--user=carol", "-n", "team-a"],
            "is attempting to grant RBAC permissions not currently held",
        );
        // bob edits but may not touch RBAC at all.
        bob.refused(&["create", "rolebinding", "x", "--clusterrole=view", "--user=bob", "-n", "team-a"], "forbidden");
        // Editing a role to widen it is escalation too.
        carol.refused(
            &["patch", "role", "pod-reader", "-n", "team-a", "--type=json", "-p", r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["get"]}}]"#],
            "is attempting to grant RBAC permissions not currently held",
        );
        // With `escalate` and `bind` granted explicitly, the same succeeds.
        s.ok(&["create", "clusterrole", "rbac-escalator", "--verb=escalate,bind", "--resource=roles.rbac.authorization.k8s.io,clusterroles.rbac.authorization.k8s.io"]);
        s.ok(&["create", "rolebinding", "carol-escalates", "--clusterrole=rbac-escalator", "--user=carol", "-n", "team-a"]);
        carol.ok(&["create", "role", "node-reader", "--verb=list", "--resource=nodes", "-n", "team-a"]);
    });

    c.check("aggregationRule needs every permission", || {
        // frank manages cluster roles, with the rules he holds, but is not a cluster admin.
        s.ok(&["create", "clusterrole", "role-manager", "--verb=get,list,create", "--resource=clusterroles.rbac.authorization.k8s.io"]);
        s.ok(&["create", "clusterrolebinding", "frank-manages", "--clusterrole=role-manager", "--user=frank"]);
        frank.ok(&["create", "clusterrole", "role-reader", "--verb=get,list", "--resource=clusterroles.rbac.authorization.k8s.io"]);
        // An aggregated role may gather anything: kube asks for cluster-admin to create one.
        let aggregated = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
            "metadata":{"name":"gather-all"},"aggregationRule":{"clusterRoleSelectors":[{}]},"rules":[]}"#;
        let out = frank.run_stdin(&["create", "-f", "-"], aggregated);
        assert!(!out.status.success(), "frank created an aggregated ClusterRole");
        assert!(
            text(&out.stderr).contains("must have cluster-admin privileges to use the aggregationRule"),
            "{}",
            text(&out.stderr)
        );
        // A cluster admin may; so may a user granted `escalate` (kube checks neither).
        dave.ok(&["create", "clusterrole", "aggregated-by-dave", "--aggregation-rule=x=y"]);
        s.ok(&["create", "clusterrole", "role-escalator", "--verb=escalate", "--resource=clusterroles.rbac.authorization.k8s.io"]);
        s.ok(&["create", "clusterrolebinding", "frank-escalates", "--clusterrole=role-escalator", "--user=frank"]);
        let out = frank.run_stdin(&["create", "-f", "-"], aggregated);
        assert!(out.status.success(), "with escalate: {}", text(&out.stderr));
    });

    c.check("namespaced paths do not reach cluster-scoped objects", || {
        // grace holds cluster-admin in team-b only: nothing outside it.
        s.ok(&[
            "create",
            "rolebinding",
            "grace-root",
            "--clusterrole=cluster-admin",
            "--user=grace",
            "-n",
            "team-b",
        ]);
        grace.ok(&["get", "pods", "-n", "team-b"]);
        for path in [
            "/api/v1/namespaces/team-b/nodes/skiff-e2e",
            "/api/v1/namespaces/team-b/namespaces/team-a",
        ] {
            grace.refused(&["get", "--raw", path], "NotFound");
        }
        grace.refused(&["get", "node", "skiff-e2e"], "forbidden");
    });

    c.check("service account tokens: audiences and bound objects", || {
        // A token for another audience is not the api server's.
        let vault = s.ok(&["create", "token", "robot", "-n", "team-a", "--audience=vault"]);
        let for_vault = token_user(&s, "for-vault", Some(vault.trim()), dir.path());
        for_vault.refused(&["get", "configmap", "app-config", "-n", "team-a"], "Unauthorized");
        let review = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{}","audiences":["vault"]}}}}"#,
            vault.trim()
        );
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &review);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token review json");
        assert_eq!(v["status"]["authenticated"], true, "{v}");
        assert_eq!(v["status"]["audiences"], serde_json::json!(["vault"]), "{v}");
        let review = review.replace(r#""audiences":["vault"]"#, r#""audiences":["other"]"#);
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &review);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token review json");
        // kube leaves `authenticated: false` out (omitempty) and says why.
        assert_eq!(v["status"].get("authenticated"), None, "{v}");
        assert!(
            v["status"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("token audiences [\"vault\"] is invalid for the target audiences [\"other\"]")),
            "{v}"
        );
        // A token may be bound to a Pod, Secret or Node only, and to a pod of its own account.
        let request = |bound: &str| {
            let body = format!(
                r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{{"boundObjectRef":{bound}}}}}"#
            );
            let path = dir.path().join("token-request.json");
            std::fs::write(&path, body).expect("token request");
            s.kubectl(&["create", "--raw", "/api/v1/namespaces/team-a/serviceaccounts/robot/token", "-f", path.to_str().expect("utf-8")])
        };
        let out = request(r#"{"kind":"ServiceAccount","apiVersion":"v1","name":"default"}"#);
        assert!(!out.status.success() && text(&out.stderr).contains("Unsupported value"), "{}", text(&out.stderr));
        let web_pod = s.ok(&["get", "pods", "-n", "team-a", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
        let out = request(&format!(r#"{{"kind":"Pod","apiVersion":"v1","name":"{}"}}"#, web_pod.trim()));
        assert!(
            !out.status.success() && text(&out.stderr).contains("different serviceaccount name"),
            "{}",
            text(&out.stderr)
        );
        let out = request(r#"{"kind":"Pod","apiVersion":"v1","name":"no-such-pod"}"#);
        assert!(!out.status.success() && text(&out.stderr).contains("not found"), "{}", text(&out.stderr));
    });

    c.check("whoami", || {
        let me = |u: &User| -> serde_json::Value {
            serde_json::from_str(&u.ok(&["auth", "whoami", "-o", "json"])).expect("whoami json")
        };
        let a = me(&alice);
        assert_eq!(a["status"]["userInfo"]["username"], "alice");
        assert_eq!(
            a["status"]["userInfo"]["groups"],
            serde_json::json!(["devs", "system:authenticated"])
        );
        let r = me(&robot);
        assert_eq!(r["status"]["userInfo"]["username"], "system:serviceaccount:team-a:robot");
        let groups = r["status"]["userInfo"]["groups"].as_array().cloned().unwrap_or_default();
        for g in ["system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"]
        {
            assert!(groups.iter().any(|x| x == g), "{r}");
        }
        assert!(r["status"]["userInfo"]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{r}");
        let admin =
            serde_json::from_str::<serde_json::Value>(&s.ok(&["auth", "whoami", "-o", "json"]))
                .expect("json");
        assert_eq!(admin["status"]["userInfo"]["username"], "skiff-admin");
    });

    c.check("impersonation", || {
        let out = erin.ok(&["--as=alice", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        assert_eq!(out.trim(), "alice");
        erin.ok(&["--as=alice", "get", "pods", "-n", "team-a"]);
        erin.refused(
            &["--as=dave", "get", "pods"],
            r#"users "dave" is forbidden: User "erin" cannot impersonate resource "users" in API group "" at the cluster scope"#,
        );
        erin.refused(&["--as=alice", "--as-group=system:masters", "get", "nodes"], "cannot impersonate resource \"groups\"");
        // The admin may be anyone; as alice it gets alice's answers.
        let out = s.kubectl(&["--as=alice", "get", "secrets", "-n", "team-a"]);
        assert!(!out.status.success() && text(&out.stderr).contains(r#"User "alice" cannot list resource "secrets""#), "{}", text(&out.stderr));
    });

    c.check("anonymous and bad credentials", || {
        // kubectl cannot send a request without credentials (it asks for a user name), so the
        // anonymous calls go through curl, trusting the cluster CA.
        let ca = dir.path().join("ca.crt");
        std::fs::copy(s.dir.join("pki/ca.crt"), &ca).expect("cluster CA");
        let anon = |path: &str| -> (u16, String) {
            let out = Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&ca)
                .args(["-w", "\n%{http_code}", &format!("{}{path}", s.url)])
                .output()
                .expect("curl (install it: scripts/bootstrap.sh does)");
            let text = text(&out.stdout);
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
            (code.trim().parse().unwrap_or(0), body.to_string())
        };
        for path in ["/healthz", "/livez", "/readyz", "/version"] {
            assert_eq!(anon(path).0, 200, "anonymous {path}");
        }
        for path in ["/api", "/api/v1/namespaces/default/pods", "/metrics"] {
            let (code, body) = anon(path);
            assert_eq!(code, 401, "anonymous {path}: {body}");
            assert!(body.contains("Unauthorized"), "{body}");
        }
        let garbage = token_user(&s, "garbage", Some("not-a-token"), dir.path());
        garbage.refused(&["get", "--raw", "/healthz"], "Unauthorized");
        // A forged service account token: the right shape, a signature that does not verify.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[2] = parts[2].chars().rev().collect();
        let forged = token_user(&s, "forged", Some(&parts.join(".")), dir.path());
        forged.refused(&["get", "configmap", "app-config", "-n", "team-a"], "Unauthorized");
        // Deleting the service account revokes its tokens; a new one of the same name (new
        // uid) does not bring them back.
        s.ok(&["delete", "serviceaccount", "robot", "-n", "team-a"]);
        robot.refused(&["get", "configmap", "app-config", "-n", "team-a"], "Unauthorized");
        s.ok(&["create", "serviceaccount", "robot", "-n", "team-a"]);
        robot.refused(&["get", "configmap", "app-config", "-n", "team-a"], "Unauthorized");
    });

    c.check("legacy service account token secrets", || {
        s.ok(&["create", "serviceaccount", "legacy", "-n", "team-b"]);
        let secret = r#"{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
            "metadata":{"name":"legacy-token","namespace":"team-b","annotations":{"kubernetes.io/service-account.name":"legacy"}}}"#;
        let out = s.kubectl_stdin(&["create", "-f", "-"], secret);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let b64 = s.ok(&["get", "secret", "legacy-token", "-n", "team-b", "-o", "jsonpath={.data.token}"]);
        let out = Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().expect("stdin").write_all(b64.trim().as_bytes())?;
            ch.wait_with_output()
        }).expect("base64");
        let legacy = token_user(&s, "legacy", Some(text(&out.stdout).trim()), dir.path());
        let who = legacy.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        assert_eq!(who.trim(), "system:serviceaccount:team-b:legacy");
        s.ok(&["delete", "secret", "legacy-token", "-n", "team-b"]);
        legacy.refused(&["auth", "whoami"], "Unauthorized");
    });

    c.check("subject access reviews answer from the authorizer", || {
        let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
            "spec":{"user":"bob","resourceAttributes":{"verb":"create","group":"apps","resource":"deployments","namespace":"team-a"}}}"#;
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], sar);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sar json");
        assert_eq!(v["status"]["allowed"], true, "{v}");
        assert!(v["status"]["reason"].as_str().is_some_and(|r| r.contains("bob-edit")), "{v}");
        let deny = sar.replace("team-a", "team-b");
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &deny);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sar json");
        assert_eq!(v["status"]["allowed"], false, "{v}");
    });

    c.finish("rbac");
}

fn helm_as_namespace_admin(version: &str) {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(&dir.path().join("data"));
    s.import(&guest("hello-http.wasip2.wasm"), "hello-http:latest");
    s.ok(&["create", "namespace", "apps"]);
    let admin = client_cert_user(&s, "ns-admin", &[], dir.path());
    s.ok(&[
        "create",
        "rolebinding",
        "ns-admin",
        "--clusterrole=admin",
        "--user=ns-admin",
        "-n",
        "apps",
    ]);
    assert!(
        !admin.can(&["create", "clusterrolebindings"]),
        "the namespace admin must not be a cluster admin"
    );
    let chart = repo_root().join("charts/skiff-operator-demo");
    let run = |args: &[&str]| -> Output {
        Command::new(tool(&format!("helm-{version}")))
            .env("HOME", s.tool_home())
            .env("HELM_CACHE_HOME", dir.path().join("cache"))
            .env("HELM_CONFIG_HOME", dir.path().join("config"))
            .env("HELM_DATA_HOME", dir.path().join("data-helm"))
            .arg("--kubeconfig")
            .arg(&admin.kubeconfig)
            .args(["--namespace", "apps"])
            .args(args)
            .output()
            .expect("running helm")
    };
    let out = run(&["install", "op", chart.to_str().expect("utf-8"), "--wait", "--timeout=120s"]);
    assert!(
        out.status.success(),
        "helm {version} install as a namespace admin: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The chart's own RBAC works: its service account may read ConfigMaps and update its own.
    let sa = "--as=system:serviceaccount:apps:op-watcher";
    for (args, want) in [
        (vec!["list", "configmaps"], true),
        (vec!["update", "configmaps/op-settings"], true),
        (vec!["update", "configmaps/other"], false),
        (vec!["list", "secrets"], false),
    ] {
        let out = s.kubectl(&[&["auth", "can-i", sa, "-n", "apps"], &args[..]].concat());
        assert_eq!(text(&out.stdout).trim(), if want { "yes" } else { "no" }, "{args:?}");
    }
    let out = run(&["uninstall", "op", "--wait"]);
    assert!(out.status.success(), "helm {version} uninstall: {}", text(&out.stderr));
    // Outside its namespace the admin installs nothing.
    let out = Command::new(tool(&format!("helm-{version}")))
        .env("HOME", s.tool_home())
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data-helm"))
        .arg("--kubeconfig")
        .arg(&admin.kubeconfig)
        .args(["--namespace", "default", "install", "op2", chart.to_str().expect("utf-8")])
        .output()
        .expect("running helm");
    assert!(
        !out.status.success() && text(&out.stderr).contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn helm_3_should_install_a_chart_with_its_own_rbac_as_a_namespace_admin() {
    helm_as_namespace_admin("3.19");
}

#[test]
fn helm_4_should_install_a_chart_with_its_own_rbac_as_a_namespace_admin() {
    helm_as_namespace_admin("4.3");
}
