use super::*;

#[test]
fn the_final_status_should_read_as_kubectl_expects() {
    let ok = final_status(Protocol::V5, &Ok(Some(0)), &["true".into()]);
    assert_eq!(exit_code(&ok).unwrap(), 0);
    let failed =
        final_status(Protocol::V4, &Ok(Some(3)), &["sh".into(), "-c".into(), "exit 3".into()]);
    let v: serde_json::Value = serde_json::from_slice(&failed).unwrap();
    assert_eq!(v["reason"], "NonZeroExitCode");
    assert_eq!(v["details"]["causes"][0]["message"], "3");
    assert_eq!(exit_code(&failed).unwrap(), 3);
    let err =
        final_status(Protocol::V5, &Err(StreamError::NotFound("no such container".into())), &[]);
    assert!(exit_code(&err).unwrap_err().to_string().contains("no such container"));
    assert!(final_status(Protocol::V3, &Ok(None), &[]).is_empty(), "v3 sends only errors");
}

/// A SPDY exec session end to end: this crate's client against its own server.
#[tokio::test]
async fn spdy_exec_should_carry_stdin_output_and_the_exit_code() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let opts = StreamOptions { stdin: true, stdout: true, stderr: true, ..Default::default() };
    let server = tokio::spawn(serve_spdy(
        b,
        Protocol::V4,
        opts,
        vec!["cat".into()],
        Box::new(|mut io: Stdio| {
            Box::pin(async move {
                let mut input = Vec::new();
                io.stdin.as_mut().unwrap().read_to_end(&mut input).await.unwrap();
                io.stdout.as_mut().unwrap().write_all(&input).await.unwrap();
                io.stderr.as_mut().unwrap().write_all(b"warn").await.unwrap();
                Ok(Some(7))
            })
        }),
    ));
    let (session, _) = Session::start(a, Role::Client);
    let open = |k: &str| session.open(vec![("streamType".into(), k.into())]);
    let mut error = open("error").await.unwrap();
    let mut stdin = open("stdin").await.unwrap();
    let mut stdout = open("stdout").await.unwrap();
    let mut stderr = open("stderr").await.unwrap();
    stdin.write_all(b"hello").await.unwrap();
    stdin.shutdown().await.unwrap();
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    stdout.read_to_end(&mut out).await.unwrap();
    stderr.read_to_end(&mut err).await.unwrap();
    error.read_to_end(&mut status).await.unwrap();
    assert_eq!(out, b"hello");
    assert_eq!(err, b"warn");
    assert_eq!(exit_code(&status).unwrap(), 7);
    drop((stdin, stdout, stderr, error, session));
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("server ends").unwrap();
}

async fn ws_pair()
-> (WebSocketStream<tokio::io::DuplexStream>, WebSocketStream<tokio::io::DuplexStream>) {
    use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = WebSocketStream::from_raw_socket(a, WsRole::Client, None).await;
    let server = WebSocketStream::from_raw_socket(b, WsRole::Server, None).await;
    (client, server)
}

/// v5 over WebSocket: stdin ends with the close signal, output comes on its channels, and the
/// status on channel 3 carries the exit code.
#[tokio::test]
async fn websocket_v5_exec_should_end_stdin_on_close_and_report_the_exit_code() {
    let (mut client, server) = ws_pair().await;
    let opts = StreamOptions { stdin: true, stdout: true, stderr: true, ..Default::default() };
    let session = tokio::spawn(serve_ws(
        server,
        Protocol::V5,
        opts,
        vec!["cat".into()],
        Box::new(|mut io: Stdio| {
            Box::pin(async move {
                let mut input = Vec::new();
                io.stdin.as_mut().unwrap().read_to_end(&mut input).await.unwrap();
                io.stdout.as_mut().unwrap().write_all(&input).await.unwrap();
                Ok(Some(2))
            })
        }),
    ));
    client.send(Message::Binary([&[STDIN][..], b"hi"].concat().into())).await.unwrap();
    client.send(Message::Binary(vec![CLOSE, STDIN].into())).await.unwrap();
    let (mut out, mut status) = (Vec::new(), Vec::new());
    while let Some(Ok(m)) = client.next().await {
        match m {
            Message::Binary(b) if b[0] == STDOUT => out.extend_from_slice(&b[1..]),
            Message::Binary(b) if b[0] == ERROR => status.extend_from_slice(&b[1..]),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(out, b"hi");
    assert_eq!(exit_code(&status).unwrap(), 2);
    tokio::time::timeout(Duration::from_secs(5), session).await.expect("session ends").unwrap();
}

/// A client that goes away mid-command ends the command (its future is dropped).
#[tokio::test]
async fn a_client_leaving_should_end_the_command() {
    struct Dropped(tokio::sync::mpsc::Sender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.try_send(());
        }
    }
    let (client, server) = ws_pair().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let opts = StreamOptions { stdout: true, ..Default::default() };
    let session = tokio::spawn(serve_ws(
        server,
        Protocol::V5,
        opts,
        vec!["sleep".into()],
        Box::new(move |_io: Stdio| {
            Box::pin(async move {
                let _guard = Dropped(tx);
                std::future::pending::<()>().await;
                Ok(Some(0))
            })
        }),
    ));
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the command was dropped");
    tokio::time::timeout(Duration::from_secs(5), session).await.expect("session ends").unwrap();
}
