//! End-to-end: the wire format, the API surface and the admin kubeconfig as kube-apiserver
//! serves them. Bodies are compared byte for byte with what kube writes: Status bodies with
//! kube's exact bytes; objects, lists and watch events with the field order of kube's own
//! serialization fixtures (control-plane/api/src/protobuf/testdata/kube-v1.35); the served
//! resources with the GA set of k8s-openapi's v1_35 types (read from its sources).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use kube::Client;
use kube::client::Body;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use support::{Checks, Skiff};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

async fn client(s: &Skiff, context: Option<&str>) -> Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let opts = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let config = Config::from_custom_kubeconfig(kc, &opts).await.expect("config");
    Client::try_from(config).expect("client")
}

/// One request; the status, the headers and the raw body.
async fn raw(
    c: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = c.send(req).await.expect("send");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect_bytes().await.expect("body");
    (parts.status.as_u16(), parts.headers, bytes.to_vec())
}

async fn post_json(c: &Client, path: &str, v: &Value) -> (u16, Value) {
    let (code, _, body) =
        raw(c, "POST", path, "application/json", v.to_string().into_bytes()).await;
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// JSON with its keys in the order written (serde_json's maps sort them).
#[derive(Debug, Clone)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Scalar,
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Ordered>()? {
                    out.push((k, v));
                }
                Ok(Ordered::Object(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Ordered>()? {
                    out.push(v);
                }
                Ok(Ordered::Array(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where `got`'s keys are not in the relative order of `kube`'s (the same kind written by
/// kube, every field set): one line per object out of order.
fn order_problems(got: &Ordered, kube: &Ordered, path: &str, out: &mut Vec<String>) {
    match (got, kube) {
        (Ordered::Object(g), Ordered::Object(k)) => {
            let rank: BTreeMap<&str, usize> =
                k.iter().enumerate().map(|(i, (name, _))| (name.as_str(), i)).collect();
            let ranks: Vec<usize> =
                g.iter().filter_map(|(n, _)| rank.get(n.as_str()).copied()).collect();
            if ranks.windows(2).any(|w| w[0] > w[1]) {
                let keys: Vec<&str> = g.iter().map(|(n, _)| n.as_str()).collect();
                out.push(format!("{path}: {keys:?}"));
            }
            for (name, v) in g {
                if let Some((_, kv)) = k.iter().find(|(n, _)| n == name) {
                    order_problems(v, kv, &format!("{path}.{name}"), out);
                }
            }
        }
        (Ordered::Array(g), Ordered::Array(k)) if !k.is_empty() => {
            for (i, v) in g.iter().enumerate() {
                order_problems(v, &k[0], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn fixture(name: &str) -> Ordered {
    let p = support::repo_root()
        .join("control-plane/api/src/protobuf/testdata/kube-v1.35")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("fixture JSON")
}

/// A body must be exactly what Go's encoder writes for it: the Go-ordered encoding of its own
/// content plus a newline, with every object in kube's field order.
fn check_kube_bytes(body: &[u8], fixture_name: &str) {
    let text = String::from_utf8_lossy(body);
    assert!(
        text.ends_with("}\n"),
        "a JSON body ends with a newline: …{}",
        &text[text.len().saturating_sub(40)..]
    );
    let v: Value = serde_json::from_slice(body).expect("JSON");
    let mut want = skiff_api::gojson::to_vec(&v);
    want.push(b'\n');
    assert_eq!(text, String::from_utf8_lossy(&want), "not Go's encoding of the same object");
    let got: Ordered = serde_json::from_slice(body).expect("JSON");
    let mut problems = Vec::new();
    order_problems(&got, &fixture(fixture_name), "", &mut problems);
    assert!(problems.is_empty(), "fields out of kube's order:\n{}", problems.join("\n"));
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "fidelity"}, "annotations": {"note": "a<b>&c"}},
        "spec": {"runtimeClassName": "wasmtime",
            "nodeSelector": {"fidelity.skiff.test/none": "true"},
            "initContainers": [{"name": "init", "image": "example.com/init:1"}],
            "containers": [{"name": "app", "image": "example.com/app:1",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"memory": "64Mi"}}}]}})
}

/// The served (group, version, resource) with scope and verbs, from discovery.
fn served(s: &Skiff) -> BTreeMap<(String, String, String), (bool, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut lists = vec![("".to_string(), "v1".to_string(), s.ok(&["get", "--raw", "/api/v1"]))];
    let groups: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/apis"])).expect("groups");
    for g in groups["groups"].as_array().into_iter().flatten() {
        for v in g["versions"].as_array().into_iter().flatten() {
            let gv = v["groupVersion"].as_str().unwrap_or("");
            let (group, version) = gv.split_once('/').unwrap_or(("", gv));
            lists.push((
                group.into(),
                version.into(),
                s.ok(&["get", "--raw", &format!("/apis/{gv}")]),
            ));
        }
    }
    for (group, version, text) in lists {
        let list: Value = serde_json::from_str(&text).expect("resource list");
        for r in list["resources"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("");
            if name.contains('/') {
                continue;
            }
            let mut verbs: Vec<String> = r["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            verbs.sort();
            out.insert(
                (group.clone(), version.clone(), name.to_string()),
                (r["namespaced"].as_bool().unwrap_or(false), verbs),
            );
        }
    }
    out
}

/// The GA resources of Kubernetes 1.35 as k8s-openapi's v1_35 types describe them, read from
/// the crate's sources in Cargo's registry: (group, version, plural) -> namespaced.
fn k8s_openapi_ga() -> BTreeMap<(String, String, String), bool> {
    // Where skiff-api's build.rs reads them too (SKIFF_K8S_OPENAPI_SRC overrides).
    let src = match std::env::var_os("SKIFF_K8S_OPENAPI_SRC") {
        Some(p) => PathBuf::from(p).join("v1_35"),
        None => {
            let home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo")
            });
            std::fs::read_dir(home.join("registry/src"))
                .expect("cargo registry")
                .flatten()
                .map(|d| d.path().join("k8s-openapi-0.29.0/src/v1_35"))
                .find(|p| p.is_dir())
                .expect("k8s-openapi 0.29.0 sources in Cargo's registry (or SKIFF_K8S_OPENAPI_SRC)")
        }
    };
    let mut out = BTreeMap::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for block in text.split("impl crate::Resource for ").skip(1) {
                let block = block.split("\n}").next().unwrap_or("");
                let konst = |k: &str| {
                    block
                        .split(&format!("const {k}: &'static str = \""))
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_string()
                };
                let (group, version, plural) =
                    (konst("GROUP"), konst("VERSION"), konst("URL_PATH_SEGMENT"));
                let scope = block.split("type Scope = crate::").nth(1).unwrap_or("");
                if plural.is_empty()
                    || version.contains("alpha")
                    || version.contains("beta")
                    || scope.starts_with("SubResourceScope")
                {
                    continue;
                }
                out.insert((group, version, plural), scope.starts_with("NamespaceResourceScope"));
            }
        }
    }
    out
}

fn kubectl_api_resources(s: &Skiff, group: &str) -> Vec<Vec<String>> {
    s.ok(&["api-resources", &format!("--api-group={group}")])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn the_api_should_serve_what_kube_apiserver_serves_as_it_writes_it() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Skiff::start(dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let c = rt.block_on(client(&s, None));
    let mut checks = Checks::default();

    checks.check("status-bodies-are-kubes-bytes", || {
        let (code, _, body) =
            rt.block_on(raw(&c, "GET", "/api/v1/namespaces/default/pods/nope", "application/json", vec![]));
        assert_eq!(code, 404);
        assert_eq!(
            String::from_utf8_lossy(&body),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        let (code, _, body) =
            rt.block_on(raw(&c, "POST", "/api/v1/namespaces", "application/json", ns.to_string().into_bytes()));
        assert_eq!(code, 409);
        assert_eq!(
            String::from_utf8_lossy(&body),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"namespaces \\\"default\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"default\",\"kind\":\"namespaces\"},\"code\":409}\n"
        );
    });

    checks.check("pod-and-deployment-in-kubes-field-order", || {
        let (code, _, body) = rt.block_on(raw(
            &c,
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            pod("ordered").to_string().into_bytes(),
        ));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        check_kube_bytes(&body, "core.v1.Pod");
        assert!(String::from_utf8_lossy(&body).contains("a\\u003cb\\u003e\\u0026c"), "HTML-safe escaping");
        let (code, _, body) =
            rt.block_on(raw(&c, "GET", "/api/v1/namespaces/default/pods/ordered", "", vec![]));
        assert_eq!(code, 200);
        check_kube_bytes(&body, "core.v1.Pod");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"ordered\",\"namespace\":\"default\",\"uid\":"), "{text}");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ordered"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "o"}},
                "template": {"metadata": {"labels": {"app": "o"}}, "spec": {"runtimeClassName": "wasmtime",
                    "containers": [{"name": "app", "image": "example.com/app:1"}]}}}});
        let (code, _, body) = rt.block_on(raw(
            &c,
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            d.to_string().into_bytes(),
        ));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        check_kube_bytes(&body, "apps.v1.Deployment");
        let got: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(got["spec"]["replicas"], 0, "a pointer's zero stays");
    });

    checks.check("list-and-watch-in-kubes-order", || {
        let (code, _, body) =
            rt.block_on(raw(&c, "GET", "/api/v1/namespaces/default/pods", "", vec![]));
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(text.starts_with("{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\""), "{text}");
        assert!(text.ends_with("]}\n"), "{text}");
        let list: Value = serde_json::from_slice(&body).expect("json");
        let ordered: Ordered = serde_json::from_slice(&body).expect("json");
        let mut problems = Vec::new();
        if let Ordered::Object(fields) = &ordered
            && let Some((_, Ordered::Array(items))) = fields.iter().find(|(k, _)| k == "items")
        {
            for (i, item) in items.iter().enumerate() {
                order_problems(item, &fixture("core.v1.Pod"), &format!("items[{i}]"), &mut problems);
            }
        }
        assert!(problems.is_empty(), "{problems:?}");
        assert!(text.contains(",\"items\":[{\"metadata\":{\"name\":\"ordered\""), "items are written without TypeMeta, as kube writes them: {text}");
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
        let out = s.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dordered&x={rv}"),
        ]);
        let first = out.lines().next().expect("an event");
        assert!(first.starts_with("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"ordered\""), "{first}");
        let event: Ordered = serde_json::from_str(first).expect("event");
        let mut problems = Vec::new();
        // The event's own keys in kube's order ("type", "object"); its object is a Pod.
        let keys = |o: &Ordered| match o {
            Ordered::Object(f) => f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        assert_eq!(keys(&event), keys(&fixture("core.v1.WatchEvent")));
        if let Ordered::Object(fields) = &event {
            order_problems(&fields[1].1, &fixture("core.v1.Pod"), "object", &mut problems);
        }
        assert!(problems.is_empty(), "{problems:?}");
    });

    checks.check("secret-from-line-broken-base64", || {
        let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        use base64::Engine as _;
        let std64 = base64::engine::general_purpose::STANDARD.encode(&payload);
        let wrapped: String = std64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "wrapped-json"}, "data": {"blob": wrapped}});
        let (code, got) = rt.block_on(post_json(&c, "/api/v1/namespaces/default/secrets", &secret));
        assert_eq!(code, 201, "{got}");
        assert_eq!(got["data"]["blob"], std64, "written back as standard base64");
        let back = s.json(&["get", "secret", "wrapped-json", "-o", "json"]);
        assert_eq!(back["data"]["blob"], std64);
        let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"k": "no!"}});
        let (code, got) = rt.block_on(post_json(&c, "/api/v1/namespaces/default/secrets", &bad));
        assert_eq!(code, 400, "{got}");
        assert_eq!(
            got["message"],
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 2"
        );
        let out = Command::new(support::python())
            .arg(support::repo_root().join("tests/clients/secret_base64.py"))
            .arg(&s.kubeconfig)
            .arg("default")
            .output()
            .expect("python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 2, "{stdout}");
    });

    checks.check("served-resources-are-the-1.35-ga-set", || {
        let served = served(&s);
        let ga = k8s_openapi_ga();
        assert!(ga.len() >= 60, "k8s-openapi's GA set looks wrong: {}", ga.len());
        // Skiff's own API groups and the beta group it serves on purpose.
        let own = |g: &str, v: &str| {
            g == "policy.skiff.dev"
                || g.ends_with("metrics.k8s.io")
                || (g == "admissionregistration.k8s.io" && v == "v1beta1")
        };
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        for ((g, v, r), namespaced) in &ga {
            match served.get(&(g.clone(), v.clone(), r.clone())) {
                None => missing.push(format!("{g}/{v} {r}")),
                Some((n, verbs)) => {
                    if n != namespaced {
                        wrong.push(format!("{g}/{v} {r}: namespaced {n}, kube {namespaced}"));
                    }
                    let want: Vec<&str> = match r.as_str() {
                        "bindings"
                        | "tokenreviews"
                        | "selfsubjectreviews"
                        | "localsubjectaccessreviews"
                        | "selfsubjectaccessreviews"
                        | "selfsubjectrulesreviews"
                        | "subjectaccessreviews" => {
                            vec!["create"]
                        }
                        "componentstatuses" => vec!["get", "list"],
                        _ => vec![
                            "create",
                            "delete",
                            "deletecollection",
                            "get",
                            "list",
                            "patch",
                            "update",
                            "watch",
                        ],
                    };
                    if verbs.iter().map(String::as_str).collect::<Vec<_>>() != want {
                        wrong.push(format!("{g}/{v} {r}: verbs {verbs:?}, kube {want:?}"));
                    }
                }
            }
        }
        let extra: Vec<String> = served
            .keys()
            .filter(|(g, v, r)| !ga.contains_key(&(g.clone(), v.clone(), r.clone())) && !own(g, v))
            .map(|(g, v, r)| format!("{g}/{v} {r}"))
            .collect();
        assert!(
            missing.is_empty() && wrong.is_empty() && extra.is_empty(),
            "missing: {missing:?}\nwrong: {wrong:?}\nextra: {extra:?}"
        );
    });

    checks.check("kubectl-api-resources-as-kube-prints-it", || {
        // kube-apiserver 1.35's answer for these groups (tabwriter columns split on spaces).
        let want_storage = [
            "NAME SHORTNAMES APIVERSION NAMESPACED KIND",
            "csidrivers storage.k8s.io/v1 false CSIDriver",
            "csinodes storage.k8s.io/v1 false CSINode",
            "csistoragecapacities storage.k8s.io/v1 true CSIStorageCapacity",
            "storageclasses sc storage.k8s.io/v1 false StorageClass",
            "volumeattachments storage.k8s.io/v1 false VolumeAttachment",
            "volumeattributesclasses vac storage.k8s.io/v1 false VolumeAttributesClass",
        ];
        let want_flow = [
            "NAME SHORTNAMES APIVERSION NAMESPACED KIND",
            "flowschemas flowcontrol.apiserver.k8s.io/v1 false FlowSchema",
            "prioritylevelconfigurations flowcontrol.apiserver.k8s.io/v1 false PriorityLevelConfiguration",
        ];
        let want_resource = [
            "NAME SHORTNAMES APIVERSION NAMESPACED KIND",
            "deviceclasses resource.k8s.io/v1 false DeviceClass",
            "resourceclaims resource.k8s.io/v1 true ResourceClaim",
            "resourceclaimtemplates resource.k8s.io/v1 true ResourceClaimTemplate",
            "resourceslices resource.k8s.io/v1 false ResourceSlice",
        ];
        for (group, want) in [
            ("storage.k8s.io", &want_storage[..]),
            ("flowcontrol.apiserver.k8s.io", &want_flow[..]),
            ("resource.k8s.io", &want_resource[..]),
        ] {
            let got: Vec<String> =
                kubectl_api_resources(&s, group).into_iter().map(|l| l.join(" ")).collect();
            assert_eq!(got, want.iter().map(|l| l.to_string()).collect::<Vec<_>>(), "{group}");
        }
    });

    checks.check("token-reviews-answer-as-kube", || {
        let kc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig"))
                .expect("yaml");
        let admin_token = kc["users"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|u| u["user"]["token"].as_str())
            .expect("a token user in the admin kubeconfig")
            .to_string();
        let sa_token = s.ok(&["create", "token", "default"]).trim().to_string();
        let review = |token: &str| {
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}});
            let (code, got) =
                rt.block_on(post_json(&c, "/apis/authentication.k8s.io/v1/tokenreviews", &body));
            assert_eq!(code, 201, "{got}");
            got["status"].clone()
        };
        let admin = review(&admin_token);
        assert_eq!(admin["authenticated"], true, "{admin}");
        assert_eq!(admin["user"]["username"], "skiff-admin");
        assert!(
            admin["user"]["groups"]
                .as_array()
                .is_some_and(|g| g.contains(&json!("system:masters"))),
            "{admin}"
        );
        let sa = review(&sa_token);
        assert_eq!(sa["authenticated"], true, "{sa}");
        assert_eq!(sa["user"]["username"], "system:serviceaccount:default:default");
        assert_eq!(
            sa["user"]["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ])
        );
        assert!(sa["audiences"].as_array().is_some_and(|a| !a.is_empty()), "{sa}");
        // A token claiming this cluster's issuer with a forged signature: kube answers
        // `{"user":{},"error":…}` (authenticated false is omitted); a token no authenticator
        // knows gets `{"user":{}}`.
        let issuer: Value =
            serde_json::from_str(&s.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
                .expect("oidc");
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let forged = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg": "ES256", "kid": "forged"})),
            b64(&json!({"iss": issuer["issuer"], "sub": "system:serviceaccount:default:default",
                "aud": [issuer["issuer"]], "exp": 4102444800u64}))
        );
        let forged = review(&forged);
        assert_eq!(forged, json!({"user": {}, "error": "invalid bearer token"}), "{forged}");
        assert_eq!(review("not-a-token-anyone-knows"), json!({"user": {}}));
    });

    checks.check("admin-kubeconfig-certificate-and-token-users", || {
        let kc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig"))
                .expect("yaml");
        assert_eq!(kc["current-context"], "skiff");
        let users = kc["users"].as_array().expect("users");
        let cert_user = users.iter().find(|u| u["name"] == "skiff-admin").expect("skiff-admin");
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(
                cert_user["user"]["client-certificate-data"]
                    .as_str()
                    .expect("client-certificate-data"),
            )
            .expect("base64");
        let pem_path = dir.path().join("admin.crt");
        std::fs::write(&pem_path, &pem).expect("write");
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&pem_path)
            .output()
            .expect("openssl");
        let subject = String::from_utf8_lossy(&text.stdout);
        assert!(
            subject.contains("O = system:masters") && subject.contains("CN = skiff-admin"),
            "{subject}"
        );
        // `skiff kubeconfig admin` issues a fresh certificate (rotation); both users work.
        let rotated = dir.path().join("rotated.kubeconfig");
        let out = Command::new(support::skiff_bin())
            .args(["kubeconfig", "admin", "--data-dir"])
            .arg(&s.dir)
            .arg("-o")
            .arg(&rotated)
            .output()
            .expect("skiff kubeconfig admin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let new: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&rotated).expect("rotated"))
                .expect("yaml");
        assert_ne!(
            new["users"][0]["user"]["client-certificate-data"],
            cert_user["user"]["client-certificate-data"]
        );
        assert_eq!(new["clusters"], kc["clusters"]);
        let rotated_arg = rotated.to_string_lossy().to_string();
        for context in ["skiff", "skiff-token"] {
            let who = s.ok(&[
                "--kubeconfig",
                &rotated_arg,
                "auth",
                "whoami",
                "--context",
                context,
                "-o",
                "json",
            ]);
            let who: Value = serde_json::from_str(&who).expect("whoami");
            assert_eq!(who["status"]["userInfo"]["username"], "skiff-admin", "{context}: {who}");
        }
        for context in ["skiff", "skiff-token"] {
            let who = s.ok(&["auth", "whoami", "--context", context, "-o", "json"]);
            let who: Value = serde_json::from_str(&who).expect("whoami");
            assert_eq!(who["status"]["userInfo"]["username"], "skiff-admin", "{context}: {who}");
            assert!(
                who["status"]["userInfo"]["groups"]
                    .as_array()
                    .is_some_and(|g| g.contains(&json!("system:masters"))),
                "{context}: {who}"
            );
        }
    });

    checks.check("protobuf-created-pod-equals-json-created-pod", || {
        // A Go client's protobuf writes every non-pointer field: `stdin: false`, `tty: false`,
        // `hostNetwork: false`, `hostPort: 0`. kube reads them as unset.
        let mut noisy = pod("via-protobuf");
        noisy["spec"]["hostNetwork"] = json!(false);
        noisy["spec"]["containers"][0]["stdin"] = json!(false);
        noisy["spec"]["containers"][0]["tty"] = json!(false);
        noisy["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(0);
        noisy["spec"]["automountServiceAccountToken"] = json!(false);
        let pb = skiff_api::protobuf::encode(&noisy).expect("protobuf");
        let (code, _, body) =
            rt.block_on(raw(&c, "POST", "/api/v1/namespaces/default/pods", PROTOBUF, pb));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        let mut plain = pod("via-json");
        plain["spec"]["automountServiceAccountToken"] = json!(false);
        let (code, _) = rt.block_on(post_json(&c, "/api/v1/namespaces/default/pods", &plain));
        assert_eq!(code, 201);
        let read = |name: &str| {
            let mut v = s.json(&["get", "pod", name, "-o", "json"]);
            let m = v["metadata"].as_object_mut().expect("metadata");
            for k in ["name", "uid", "resourceVersion", "creationTimestamp", "managedFields"] {
                m.remove(k);
            }
            v.as_object_mut().expect("pod").remove("status");
            v
        };
        let (a, b) = (read("via-protobuf"), read("via-json"));
        assert_eq!(a, b, "protobuf:\n{a:#}\njson:\n{b:#}");
        assert_eq!(a["spec"]["automountServiceAccountToken"], false, "a pointer's false stays");
        assert!(a["spec"]["containers"][0].get("stdin").is_none());
    });

    checks.check("flowcontrol-bootstrapped-and-requests-classified", || {
        let fs = s.json(&["get", "flowschemas", "-o", "json"]);
        let names: BTreeSet<&str> = fs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        for want in
            ["exempt", "catch-all", "probes", "global-default", "service-accounts", "system-nodes"]
        {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        let pl = s.json(&["get", "prioritylevelconfigurations", "-o", "json"]);
        assert_eq!(pl["items"].as_array().map(Vec::len), Some(8), "{pl}");
        let exempt_uid = fs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["metadata"]["name"] == "exempt")
            .and_then(|i| i["metadata"]["uid"].as_str())
            .expect("exempt uid")
            .to_string();
        let (_, headers, _) = rt.block_on(raw(&c, "GET", "/api/v1/namespaces", "", vec![]));
        assert_eq!(
            headers.get("x-kubernetes-pf-flowschema-uid").and_then(|v| v.to_str().ok()),
            Some(exempt_uid.as_str()),
            "the admin (system:masters) is exempt"
        );
        s.wait_for("the Dangling conditions", std::time::Duration::from_secs(20), || {
            let fs = s.json(&["get", "flowschema", "global-default", "-o", "json"]);
            fs["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "Dangling" && c["status"] == "False" && c["reason"] == "Found"
                })
            })
        });
        let table = s.ok(&["get", "flowschemas"]);
        assert!(
            table.lines().next().is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                == [
                    "NAME",
                    "PRIORITYLEVEL",
                    "MATCHINGPRECEDENCE",
                    "DISTINGUISHERMETHOD",
                    "AGE",
                    "MISSINGPL"
                ]),
            "{table}"
        );
    });

    checks.check("new-kinds-validate-default-and-print-as-kube", || {
        let csi = json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "csi.skiff.test"}, "spec": {}});
        let (code, got) = rt.block_on(post_json(&c, "/apis/storage.k8s.io/v1/csidrivers", &csi));
        assert_eq!(code, 201, "{got}");
        assert_eq!(got["spec"]["attachRequired"], true);
        assert_eq!(got["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
        let ip = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress", "metadata": {"name": "2001:DB8::1"},
            "spec": {"parentRef": {"resource": "services", "name": "x", "namespace": "default"}}});
        let (code, got) = rt.block_on(post_json(&c, "/apis/networking.k8s.io/v1/ipaddresses", &ip));
        assert_eq!(code, 422, "{got}");
        assert!(got["message"].as_str().is_some_and(|m| m.contains("must be in canonical form (\"2001:db8::1\")")), "{got}");
        let claim = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "gpu"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.skiff.test"}}]}}});
        let (code, got) = rt.block_on(post_json(&c, "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims", &claim));
        assert_eq!(code, 201, "{got}");
        assert_eq!(got["spec"]["devices"]["requests"][0]["exactly"]["allocationMode"], "ExactCount");
        let table = s.ok(&["get", "resourceclaims"]);
        assert!(table.contains("gpu") && table.contains("pending"), "{table}");
        let cs = s.ok(&["get", "componentstatuses"]);
        assert!(cs.contains("etcd-0") && cs.contains("Healthy"), "{cs}");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "ordered"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "nowhere"}});
        let (code, got) = rt.block_on(post_json(&c, "/api/v1/namespaces/default/bindings", &binding));
        assert_eq!(code, 201, "{got}");
        assert_eq!(s.json(&["get", "pod", "ordered", "-o", "json"])["spec"]["nodeName"], "nowhere");
        let lsar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "spec": {"user": "nobody", "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}});
        let (code, got) = rt.block_on(post_json(&c, "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews", &lsar));
        assert_eq!(code, 201, "{got}");
        assert_eq!(got["status"]["allowed"], false, "{got}");
        let mut other = lsar.clone();
        other["spec"]["resourceAttributes"]["namespace"] = json!("kube-system");
        let (code, got) = rt.block_on(post_json(&c, "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews", &other));
        assert_eq!(code, 422, "{got}");
    });

    checks.finish("API fidelity");
}
