//! A 3-member Skiff store for the benchmark: member 1 runs in the benchmark process (as it
//! would inside the api server that drives it), members 2 and 3 are child processes of this
//! same binary (`SKIFF_BENCH_MEMBER` set), all talking raft over mutual TLS on loopback, as
//! etcd's three members do.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skiff_apiserver::pki::Pki;
use skiff_store::{PeerOptions, PeerTls, RaftStore, RaftStoreOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdout, Command};

use crate::target::SkiffTarget;

/// Set (to `DIR|PKI_DIR`) when this process is a follower member of the 3-member target.
pub const MEMBER_ENV: &str = "SKIFF_BENCH_MEMBER";

fn bind_loopback() -> anyhow::Result<Arc<std::net::TcpListener>> {
    Ok(Arc::new(std::net::TcpListener::bind("127.0.0.1:0").context("binding a peer port")?))
}

fn member_options(
    pki_dir: &Path,
    dir: &Path,
    listener: Arc<std::net::TcpListener>,
    node_id: u64,
    initialize: bool,
) -> anyhow::Result<RaftStoreOptions> {
    let pki = Pki::load_or_create(pki_dir, &[]).context("loading the benchmark CA")?;
    std::fs::create_dir_all(dir)?;
    let (cert_pem, key_pem) = pki.peer_identity(dir, &[]).context("issuing a peer certificate")?;
    let url = format!("https://{}", listener.local_addr()?);
    Ok(RaftStoreOptions {
        node_id,
        initialize,
        peer: Some(PeerOptions {
            advertise_url: url,
            listener,
            tls: PeerTls { ca_cert_pem: pki.ca_cert_pem, cert_pem, key_pem },
        }),
        ..RaftStoreOptions::default()
    })
}

/// Body of a follower member process: print the peer URL, read the node id the leader
/// assigned, join, say READY, and serve until stdin closes (the benchmark ended or died).
pub async fn member_main(spec: &str) -> anyhow::Result<()> {
    let (dir, pki_dir) = spec.split_once('|').context("SKIFF_BENCH_MEMBER is DIR|PKI_DIR")?;
    let listener = bind_loopback()?;
    println!("URL https://{}", listener.local_addr()?);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let id: u64 = stdin.next_line().await?.context("no node id on stdin")?.trim().parse()?;
    let options =
        member_options(Path::new(pki_dir), &Path::new(dir).join("store"), listener, id, false)?;
    let store = RaftStore::open_with(&Path::new(dir).join("store"), options).await?;
    println!("READY");
    while stdin.next_line().await?.is_some() {}
    store.shutdown().await;
    Ok(())
}

async fn read_line(
    out: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    what: &str,
) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(60), out.next_line())
        .await
        .with_context(|| format!("member did not print {what} in time"))??
        .with_context(|| format!("member exited before printing {what}"))
}

/// Start a 3-member store under `dir`: member 1 here (the target drives it), 2 and 3 as
/// child processes that join it.
pub async fn start(dir: &Path) -> anyhow::Result<SkiffTarget> {
    let pki_dir = dir.join("pki");
    Pki::load_or_create(&pki_dir, &[]).context("creating the benchmark CA")?;
    let leader_dir = dir.join("member-1");
    let options = member_options(&pki_dir, &leader_dir, bind_loopback()?, 1, true)?;
    let leader = Arc::new(RaftStore::open_with(&leader_dir, options).await?);
    let mut children = Vec::new();
    let exe = std::env::current_exe()?;
    for n in 2..=3 {
        let member_dir = dir.join(format!("member-{n}"));
        let spec = format!("{}|{}", member_dir.display(), pki_dir.display());
        let mut child = Command::new(&exe)
            .env(MEMBER_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a member process")?;
        let mut out = BufReader::new(child.stdout.take().context("member stdout")?).lines();
        let url = read_line(&mut out, "its URL").await?;
        let url = url.strip_prefix("URL ").context("member printed no URL")?.to_owned();
        let id = leader.add_learner(&url).await.context("adding a learner")?;
        let stdin = child.stdin.as_mut().context("member stdin")?;
        stdin.write_all(format!("{id}\n").as_bytes()).await?;
        if read_line(&mut out, "READY").await? != "READY" {
            bail!("member {url} did not get ready");
        }
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while leader.members().iter().filter(|m| m.voter).count() < 3 {
        if Instant::now() > deadline {
            bail!("members did not become voters: {:?}", leader.members());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(SkiffTarget::with_members(leader, dir, children))
}
