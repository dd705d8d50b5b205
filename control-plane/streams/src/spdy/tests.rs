use super::*;

#[test]
fn dictionary_should_be_spdy3s() {
    let d = dictionary();
    assert_eq!(d.len(), 1423);
    assert_eq!(&d[..11], b"\0\0\0\x07options");
    assert!(d.ends_with(b",*,enq=0."));
}

#[test]
fn header_blocks_should_round_trip_across_one_zlib_stream() {
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    for i in 0..3 {
        let h: Headers = vec![
            ("streamtype".into(), "data".into()),
            ("port".into(), format!("80{i}")),
            ("requestid".into(), i.to_string()),
        ];
        let block = enc.encode(&h);
        assert_eq!(dec.decode(&block).unwrap(), h);
    }
}

#[tokio::test]
async fn streams_should_carry_data_both_ways_and_end_with_fin() {
    let (a, b) = tokio::io::duplex(1024);
    let (client, _) = Session::start(a, Role::Client);
    let (_server, mut incoming) = Session::start(b, Role::Server);
    let opener = tokio::spawn(async move {
        let mut s = client.open(vec![("streamType".into(), "data".into())]).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        back
    });
    let mut s = incoming.recv().await.expect("a stream");
    assert_eq!(s.header("streamtype"), Some("data"));
    assert_eq!(s.id() % 2, 1, "client streams are odd");
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    // A large answer crosses many frames and the bounded queues.
    let big = vec![7u8; 300_000];
    s.write_all(&big).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(opener.await.unwrap(), big);
}

#[tokio::test]
async fn a_closed_transport_should_fail_opens_and_end_reads() {
    let (a, b) = tokio::io::duplex(1024);
    let (client, _) = Session::start(a, Role::Client);
    drop(b);
    assert!(client.open(vec![]).await.is_err());
}
