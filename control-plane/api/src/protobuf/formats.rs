//! JSON spellings of Kubernetes' special protobuf types: times and Go durations.

use chrono::{DateTime, SecondsFormat};

/// A time or duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormatError {
    #[error("{input:?} is not an RFC 3339 time: {source}")]
    Time { input: String, source: chrono::ParseError },
    #[error("{0:?} is not a duration (like \"1h30m\" or \"500ms\")")]
    Duration(String),
}

/// `meta.v1.Time` (seconds) or `MicroTime` (microseconds) as RFC 3339 in UTC.
pub(super) fn format_time(seconds: i64, nanos: i32, micro: bool) -> Option<String> {
    if micro {
        let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
        let t = DateTime::from_timestamp(seconds, nanos / 1000 * 1000)?;
        Some(t.to_rfc3339_opts(SecondsFormat::Micros, true))
    } else {
        Some(DateTime::from_timestamp(seconds, 0)?.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// RFC 3339 to (seconds, nanoseconds).
pub(super) fn parse_time(s: &str) -> Result<(i64, i32), FormatError> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|source| FormatError::Time { input: s.to_string(), source })?;
    Ok((t.timestamp(), t.timestamp_subsec_nanos() as i32))
}

const SECOND: u64 = 1_000_000_000;

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`.
pub(super) fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let u = ns.unsigned_abs();
    let mut s = String::new();
    if ns < 0 {
        s.push('-');
    }
    if u < SECOND {
        let (unit, div, width) = match u {
            0..1_000 => ("ns", 1, 0),
            1_000..1_000_000 => ("µs", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        s.push_str(&fraction(u, div, width));
        s.push_str(unit);
        return s;
    }
    let (h, rest) = (u / (3600 * SECOND), u % (3600 * SECOND));
    let (m, sec) = (rest / (60 * SECOND), rest % (60 * SECOND));
    if h > 0 {
        s.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        s.push_str(&format!("{m}m"));
    }
    s.push_str(&fraction(sec, SECOND, 9));
    s.push('s');
    s
}

fn fraction(v: u64, div: u64, width: usize) -> String {
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return int.to_string();
    }
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.ParseDuration`: a signed sequence of decimal numbers with units
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), or `0`.
pub(super) fn parse_duration(s: &str) -> Result<i64, FormatError> {
    let bad = || FormatError::Duration(s.to_string());
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = r.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let mut value = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac.is_empty() {
            let digits = &frac[..frac.len().min(18)];
            let f: u128 = digits.parse().map_err(|_| bad())?;
            value += f * scale / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(bad)?;
        rest = r;
    }
    let total = i64::try_from(total).map_err(|_| bad())?;
    Ok(if neg { -total } else { total })
}
