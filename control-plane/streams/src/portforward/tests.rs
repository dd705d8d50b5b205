use super::*;
use crate::Stdio;
use async_trait::async_trait;
use tokio::io::AsyncReadExt;

/// A node whose pod echoes on port 7 and has nothing on any other port.
struct EchoPod;

#[async_trait]
impl PodStreams for EchoPod {
    async fn exec(&self, _: Target, _: Vec<String>, _: Stdio) -> Result<i32, StreamError> {
        Err(StreamError::BadRequest("no exec here".into()))
    }
    async fn attach(&self, _: Target, _: Stdio) -> Result<(), StreamError> {
        Err(StreamError::BadRequest("no attach here".into()))
    }
    async fn port_forward(&self, _: Target, port: u16) -> Result<BoxDuplex, StreamError> {
        if port == 8 {
            // Says goodbye and closes, whatever the client does.
            let (ours, mut theirs) = tokio::io::duplex(1024);
            tokio::spawn(async move {
                let _ = theirs.write_all(b"bye").await;
            });
            return Ok(Box::new(ours));
        }
        if port != 7 {
            return Err(StreamError::NotFound(format!(
                "connect: connection refused (port {port})"
            )));
        }
        let (ours, mut theirs) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(&mut theirs);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        Ok(Box::new(ours))
    }
}

fn headers(kind: &str, port: u16, id: u32) -> spdy::Headers {
    vec![
        ("streamType".into(), kind.into()),
        ("port".into(), port.to_string()),
        ("requestID".into(), id.to_string()),
    ]
}

#[tokio::test]
async fn forwarded_connections_should_reach_the_port_or_say_why_not() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let target = Target { pod: "web".into(), pod_uid: "u1".into(), ..Default::default() };
    tokio::spawn(serve(b, target, Arc::new(EchoPod)));
    let (session, _) = Session::start(a, Role::Client);

    let mut error = session.open(headers("error", 7, 0)).await.unwrap();
    error.shutdown().await.unwrap();
    let mut data = session.open(headers("data", 7, 0)).await.unwrap();
    data.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    data.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");

    // A second connection to a closed port: its error stream says so.
    let mut error2 = session.open(headers("error", 9, 1)).await.unwrap();
    error2.shutdown().await.unwrap();
    let _data2 = session.open(headers("data", 9, 1)).await.unwrap();
    let mut message = String::new();
    error2.read_to_string(&mut message).await.unwrap();
    assert!(
        message.contains("error forwarding port 9 to pod web, uid u1")
            && message.contains("refused"),
        "{message}"
    );
}

/// A pod that closes its side ends the forwarded connection for the client (the error stream
/// closes), even though the client never closed its own side.
#[tokio::test]
async fn a_pod_closing_should_end_the_connection() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve(b, Target::default(), Arc::new(EchoPod)));
    let (session, _) = Session::start(a, Role::Client);
    let mut error = session.open(headers("error", 8, 0)).await.unwrap();
    error.shutdown().await.unwrap();
    let mut data = session.open(headers("data", 8, 0)).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        data.read_to_end(&mut got).await.unwrap();
        let mut message = String::new();
        error.read_to_string(&mut message).await.unwrap();
        message
    };
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the connection ends once the pod closes");
    assert_eq!(got, b"bye");
    assert_eq!(message, "");
}
