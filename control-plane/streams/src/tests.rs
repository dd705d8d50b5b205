use super::*;

#[test]
fn exec_options_should_parse_as_kubectl_sends_them() {
    let o = StreamOptions::from_query(
        "command=sh&command=-c&command=echo+hi%3B+exit+3&container=app&stdin=true&stdout=true&stderr=true&tty=false",
    );
    assert_eq!(o.command, ["sh", "-c", "echo hi; exit 3"]);
    assert_eq!(o.container, "app");
    assert!(o.stdin && o.stdout && o.stderr && !o.tty);
    let t = StreamOptions::from_query("command=sh&stdin=true&stdout=true&stderr=true&tty=true");
    assert!(t.tty && !t.stderr, "a terminal has no separate stderr");
}

#[test]
fn ports_should_parse_repeated_and_comma_separated() {
    assert_eq!(query_ports("ports=8080&ports=80,443").unwrap(), [8080, 80, 443]);
    assert!(query_ports("ports=0").is_err());
    assert!(query_ports("ports=http").is_err());
}
