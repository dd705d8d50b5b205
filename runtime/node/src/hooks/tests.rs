use std::sync::Arc;

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime_core::ContainerRuntime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::testing::{FakeRuntime, exit};

fn ctx(runtime: Arc<dyn ContainerRuntime>) -> ProbeContext {
    ProbeContext {
        runtime,
        container_id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        pod_uid: "uid-1".into(),
        metrics: None,
    }
}

fn app() -> Container {
    Container { name: "app".into(), ..Default::default() }
}

fn exec(cmd: &[&str]) -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction { command: Some(cmd.iter().map(|s| s.to_string()).collect()) }),
        ..Default::default()
    }
}

#[tokio::test]
async fn post_start_exec_should_fail_in_kubelet_words_on_a_non_zero_exit() {
    let rt = FakeRuntime::new();
    rt.on_exec(|cmd| Ok(exit(if cmd[0] == "true" { 0 } else { 1 }, "oops")));
    let ctx = ctx(rt.clone());
    run_post_start(&exec(&["true"]), &app(), &ctx).await.unwrap();
    let err = run_post_start(&exec(&["sh", "-c", "exit 1"]), &app(), &ctx).await.unwrap_err();
    assert_eq!(err.reason(), "PostStartHookError");
    assert_eq!(err.event_reason(), "FailedPostStartHook");
    assert_eq!(
        err.message(),
        "Exec lifecycle hook ([sh -c exit 1]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: command 'sh -c exit 1' exited with 1: oops, message: \"oops\""
    );
    assert_eq!(rt.execs.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn http_hook_should_send_the_get_and_fail_only_when_nothing_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        // Any answer counts for a hook, even an error status.
        tcp.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let hook = |port: u16| LifecycleHandler {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some("/shutdown".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = ctx(FakeRuntime::new());
    let outcome = run_pre_stop(&hook(port), &app(), &ctx, Duration::from_secs(30)).await;
    assert_eq!(outcome.error, None);
    assert!(server.await.unwrap().starts_with("GET /shutdown HTTP/1.1\r\n"));

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let outcome = run_pre_stop(&hook(closed), &app(), &ctx, Duration::from_secs(30)).await;
    let err = outcome.error.expect("nothing listens");
    assert_eq!(err.event_reason(), "FailedPreStopHook");
    assert_eq!(
        err.message(),
        format!(
            "HTTP lifecycle hook (/shutdown) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: Get \"http://127.0.0.1:{closed}/shutdown\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn pre_stop_sleep_should_use_up_grace_and_leave_the_minimum() {
    let ctx = ctx(FakeRuntime::new());
    let sleep =
        |s| LifecycleHandler { sleep: Some(SleepAction { seconds: s }), ..Default::default() };
    let started = Instant::now();
    let outcome = run_pre_stop(&sleep(5), &app(), &ctx, Duration::from_secs(30)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(
        outcome,
        PreStopOutcome { remaining_grace: Duration::from_secs(25), error: None, timed_out: false }
    );

    let started = Instant::now();
    let outcome = run_pre_stop(&sleep(600), &app(), &ctx, Duration::from_secs(10)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(10), "bounded by the grace period");
    assert_eq!(
        outcome,
        PreStopOutcome { remaining_grace: MINIMUM_GRACE_PERIOD, error: None, timed_out: true }
    );
}

#[tokio::test(start_paused = true)]
async fn pre_stop_exec_should_be_cut_off_at_the_grace_period() {
    let rt = FakeRuntime::new();
    *rt.exec_delay.lock().unwrap() = Duration::from_secs(120);
    let ctx = ctx(rt.clone());
    let started = Instant::now();
    let outcome = run_pre_stop(&exec(&["drain"]), &app(), &ctx, Duration::from_secs(15)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert!(outcome.timed_out || outcome.error.is_some(), "{outcome:?}");
    assert_eq!(outcome.remaining_grace, MINIMUM_GRACE_PERIOD);
    assert_eq!(rt.execs.lock().unwrap().as_slice(), [vec!["drain".to_string()]]);
}
