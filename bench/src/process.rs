//! The child processes a benchmark starts (servers, peers): killed when their guard drops, so
//! an error, a panic or Ctrl-C leaves nothing running; and the line a child prints once it is
//! ready, read without ever letting its output pipe fill up.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::time::Duration;

/// A child process, killed (and reaped) on drop.
pub struct KillOnDrop(Child);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(child)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Kill and reap the child now. Idempotent.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why [`first_line`] found no line.
#[derive(Debug)]
pub enum NoLine {
    /// The output ended (the child exited); the lines it printed.
    Ended(Vec<String>),
    TimedOut,
}

/// Read `output` (a child's piped stdout or stderr) on a thread until `find` accepts a line,
/// and answer what `find` made of it. The rest of the output is read and dropped until it
/// ends, so the child never blocks on a full pipe.
pub async fn first_line<T: Send + 'static>(
    output: impl Read + Send + 'static,
    within: Duration,
    mut find: impl FnMut(&str) -> Option<T> + Send + 'static,
) -> Result<T, NoLine> {
    let reader = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(output).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(found) = find(&line) {
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(found);
            }
            seen.push(line);
        }
        Err(NoLine::Ended(seen))
    });
    match tokio::time::timeout(within, reader).await {
        Ok(Ok(found)) => found,
        Ok(Err(_)) => Err(NoLine::Ended(Vec::new())),
        Err(_) => Err(NoLine::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_line_should_answer_the_first_accepted_line() {
        let out: &[u8] = b"starting\nREADY https://127.0.0.1:1 /k\nmore\n";
        let found = first_line(out, Duration::from_secs(5), |l| {
            l.strip_prefix("READY ").map(str::to_owned)
        })
        .await;
        assert_eq!(found.ok().as_deref(), Some("https://127.0.0.1:1 /k"));
    }

    #[tokio::test]
    async fn first_line_should_give_the_lines_seen_when_the_output_ends() {
        let out: &[u8] = b"one\ntwo\n";
        match first_line(out, Duration::from_secs(5), |_| None::<()>).await {
            Err(NoLine::Ended(seen)) => assert_eq!(seen, ["one", "two"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kill_on_drop_should_kill_the_child() {
        let child = std::process::Command::new("sleep").arg("600").spawn().expect("sleep");
        let pid = child.id();
        drop(KillOnDrop::new(child));
        // Reaped: no /proc entry is left.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
