//! End-to-end: client libraries against a real `skiff server` over HTTPS with its kubeconfig:
//! the official Python `kubernetes` client (tests/clients/python_client.py) and kube-rs. Each
//! creates, lists, patches, watches and deletes every kind of tests/manifests.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, Config};
use serde_json::{Value, json};
use support::{Skiff, guest, manifests, python, repo_root};

fn started() -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Skiff) {
    let guard = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let skiff = Skiff::start(&dir.path().join("data"));
    skiff.import(&guest("hello-wasm.wasip2.wasm"), "hello-wasm:latest");
    skiff.import(&guest("test-guest.wasip2.wasm"), "test-guest:p2");
    (guard, dir, skiff)
}

#[test]
fn python_client_should_create_list_watch_patch_and_delete_every_kind() {
    let (_serial, _dir, s) = started();
    let out = std::process::Command::new(python())
        .arg(repo_root().join("tests/clients/python_client.py"))
        .arg(&s.kubeconfig)
        .arg(repo_root().join("tests/manifests"))
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "python client: {} failed:\n{}\n{}",
        failed.len(),
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        manifests().len() + 1,
        "a kind went unreported"
    );
}

async fn client(s: &Skiff) -> Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

async fn api_for(
    client: &Client,
    manifest: &Value,
) -> anyhow::Result<(Api<DynamicObject>, String)> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let (ar, caps) = pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let api = match (caps.scope, manifest["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        (Scope::Namespaced, None) => anyhow::bail!("namespaced {kind} without a namespace"),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
    };
    Ok((api, format!("{kind} {api_version}")))
}

/// Create, list, patch and watch one object.
async fn round_trip(client: &Client, manifest: &Value) -> anyhow::Result<()> {
    let (api, _) = api_for(client, manifest).await?;
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let obj: DynamicObject = serde_json::from_value(manifest.clone())?;
    let created = api.create(&PostParams::default(), &obj).await?;
    anyhow::ensure!(
        created.metadata.name.as_deref() == Some(name),
        "created {:?}",
        created.metadata.name
    );
    anyhow::ensure!(created.metadata.uid.is_some(), "no uid");

    let list = api.list(&ListParams::default().labels("suite=e2e")).await?;
    let names: Vec<String> = list.items.iter().filter_map(|o| o.metadata.name.clone()).collect();
    anyhow::ensure!(names.iter().any(|n| n == name), "{name} not listed: {names:?}");
    let rv = list.metadata.resource_version.unwrap_or_default();

    let patch = json!({"metadata": {"labels": {"patched": "kube-rs"}}});
    let patched = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let labels = patched.metadata.labels.unwrap_or_default();
    anyhow::ensure!(
        labels.get("patched").map(String::as_str) == Some("kube-rs")
            && labels.get("suite").map(String::as_str) == Some("e2e"),
        "labels after patch: {labels:?}"
    );

    // A watch from the list's resourceVersion replays the patch.
    let wp = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(10);
    let mut events = api.watch(&wp, &rv).await?.boxed();
    let mut seen = vec![];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Modified(o))))
                if o.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("patched"))
                    .map(String::as_str)
                    == Some("kube-rs") =>
            {
                return Ok(());
            }
            Ok(Ok(Some(e))) => seen.push(format!("{e:?}").chars().take(80).collect::<String>()),
            Ok(Ok(None)) | Err(_) => {
                anyhow::bail!("watch from {rv} did not show the patch: {seen:?}")
            }
            Ok(Err(e)) => anyhow::bail!("watch: {e}"),
        }
    }
}

async fn delete(client: &Client, manifest: &Value) -> anyhow::Result<()> {
    let (api, _) = api_for(client, manifest).await?;
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    api.delete(name, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if api.get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{name} still there 30 s after delete")
}

/// The typed API of k8s-openapi structs, with a watch, on ConfigMaps.
async fn typed(client: &Client) -> anyhow::Result<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rs"}});
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(ns)?).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rs");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "rs-typed"}, "data": {"k": "v"}}))?;
    cms.create(&PostParams::default(), &cm).await?;
    let rv = cms.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    cms.patch("rs-typed", &PatchParams::default(), &Patch::Strategic(json!({"data": {"k": "w"}})))
        .await?;
    let mut events = cms.watch(&WatchParams::default().timeout(10), &rv).await?.boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Modified(o))))
                if o.data.as_ref().and_then(|d| d.get("k")).map(String::as_str) == Some("w") =>
            {
                break;
            }
            Ok(Ok(Some(_))) => {}
            other => anyhow::bail!("typed watch did not show the patch: {other:?}"),
        }
    }
    cms.delete("rs-typed", &DeleteParams::default()).await?;
    anyhow::ensure!(cms.get_opt("rs-typed").await?.is_none(), "rs-typed still there");
    Ok(())
}

#[test]
fn kube_rs_should_create_list_watch_patch_and_delete_every_kind() {
    // The serial guard is a std mutex: hold it outside the async part.
    let (_serial, _dir, s) = started();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(kube_rs_every_kind(&s));
}

async fn kube_rs_every_kind(s: &Skiff) {
    let client = client(s).await;
    let objs = manifests();
    let mut failed: Vec<(String, String)> = vec![];
    let label = |m: &Value| {
        format!("{} {}", m["kind"].as_str().unwrap_or(""), m["apiVersion"].as_str().unwrap_or(""))
    };
    for (_, m) in &objs {
        if let Err(e) = round_trip(&client, m).await {
            failed.push((label(m), format!("{e:#}")));
        }
    }
    for (_, m) in objs.iter().rev() {
        if failed.iter().any(|(l, _)| *l == label(m)) {
            continue;
        }
        if let Err(e) = delete(&client, m).await {
            failed.push((label(m), format!("delete: {e:#}")));
        }
    }
    if let Err(e) = typed(&client).await {
        failed.push(("typed ConfigMap".into(), format!("{e:#}")));
    }
    let report: Vec<String> = failed.iter().map(|(l, e)| format!("{l}: {e}")).collect();
    assert!(
        failed.is_empty(),
        "kube-rs: {} of {} failed:\n{}",
        failed.len(),
        objs.len() + 1,
        report.join("\n")
    );
}
