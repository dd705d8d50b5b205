//! The CRI container log format: one record per line,
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, where `P` marks a partial line
//! (the content continues in the next record) and `F` a full one.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub time: DateTime<Utc>,
    pub stream: LogStream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Largest content carried by one record; longer lines are split into partial records.
pub const MAX_RECORD_CONTENT: usize = 16 * 1024;

/// Encode `data` written by a guest on `stream` at `time` as CRI records. `pending` holds an
/// unterminated tail from earlier writes of the same stream; it is emitted as a partial record
/// once it reaches [`MAX_RECORD_CONTENT`] or when [`flush_partial`] is called.
pub fn encode(
    out: &mut Vec<u8>,
    pending: &mut Vec<u8>,
    stream: LogStream,
    time: DateTime<Utc>,
    data: &[u8],
) {
    let mut rest = data;
    while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
        pending.extend_from_slice(&rest[..pos]);
        push_record(out, stream, time, false, pending);
        pending.clear();
        rest = &rest[pos + 1..];
    }
    pending.extend_from_slice(rest);
    while pending.len() >= MAX_RECORD_CONTENT {
        let tail = pending.split_off(MAX_RECORD_CONTENT);
        push_record(out, stream, time, true, pending);
        *pending = tail;
    }
}

/// Emit an unterminated tail as a partial record (used when the stream closes).
pub fn flush_partial(
    out: &mut Vec<u8>,
    pending: &mut Vec<u8>,
    stream: LogStream,
    time: DateTime<Utc>,
) {
    if !pending.is_empty() {
        push_record(out, stream, time, true, pending);
        pending.clear();
    }
}

fn push_record(
    out: &mut Vec<u8>,
    stream: LogStream,
    time: DateTime<Utc>,
    partial: bool,
    content: &[u8],
) {
    let _ = write!(
        out,
        "{} {} {} ",
        time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        stream.as_str(),
        if partial { "P" } else { "F" }
    );
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Parse one line (without its trailing newline). `None` for a malformed line.
pub fn parse_line(line: &[u8]) -> Option<LogRecord<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    Some(LogRecord { time, stream, partial, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_should_split_lines_and_keep_partial_tail() {
        let t = Utc::now();
        let (mut out, mut pending) = (Vec::new(), Vec::new());
        encode(&mut out, &mut pending, LogStream::Stdout, t, b"hello\nwor");
        encode(&mut out, &mut pending, LogStream::Stdout, t, b"ld\n");
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let r = parse_line(lines[1].as_bytes()).unwrap();
        assert_eq!(r.content, b"world");
        assert!(!r.partial);
        assert_eq!(r.stream, LogStream::Stdout);
        assert!(pending.is_empty());
    }

    #[test]
    fn parse_line_should_reject_garbage() {
        assert!(parse_line(b"not a log line").is_none());
        assert!(parse_line(b"2024-01-01T00:00:00Z stdin F x").is_none());
    }

    #[test]
    fn flush_partial_should_emit_p_record() {
        let t = Utc::now();
        let (mut out, mut pending) = (Vec::new(), b"tail".to_vec());
        flush_partial(&mut out, &mut pending, LogStream::Stderr, t);
        let r = parse_line(out.strip_suffix(b"\n").unwrap()).unwrap();
        assert!(r.partial);
        assert_eq!(r.content, b"tail");
    }
}
