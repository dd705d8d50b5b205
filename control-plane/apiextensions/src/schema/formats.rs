//! The string formats a CRD schema may use, checked as kube-openapi's `strfmt.Default`
//! registry checks them (`k8s.io/kube-openapi/pkg/validation/strfmt`), limited to the set
//! apiextensions keeps (`pkg/apiserver/validation/formats.go`, 1.35): any other format is
//! dropped from the schema and never checked.
//!
//! Go's parsers (`net/url.ParseRequestURI`, `net/mail.ParseAddress`, `time.ParseDuration`,
//! `net.ParseMAC`, `netutils.ParseIPSloppy`) are followed closely but not bug for bug: the
//! differences are in corners such as e-mail comments and IPv6 zones.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// A supported string format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    BsonObjectId,
    Uri,
    Email,
    Hostname,
    Ipv4,
    Ipv6,
    Cidr,
    Mac,
    Uuid,
    Uuid3,
    Uuid4,
    Uuid5,
    Isbn,
    Isbn10,
    Isbn13,
    CreditCard,
    Ssn,
    HexColor,
    RgbColor,
    Byte,
    Password,
    Date,
    Duration,
    DateTime,
    K8sShortName,
    K8sLongName,
}

impl StringFormat {
    /// The format named `name`, after go-openapi's normalization (dashes removed, so
    /// `date-time` is `datetime`); `None` for formats kube ignores.
    pub fn from_name(name: &str) -> Option<StringFormat> {
        let normalized: String = name.chars().filter(|c| *c != '-').collect();
        Some(match normalized.as_str() {
            "bsonobjectid" => StringFormat::BsonObjectId,
            "uri" => StringFormat::Uri,
            "email" => StringFormat::Email,
            "hostname" => StringFormat::Hostname,
            "ipv4" => StringFormat::Ipv4,
            "ipv6" => StringFormat::Ipv6,
            "cidr" => StringFormat::Cidr,
            "mac" => StringFormat::Mac,
            "uuid" => StringFormat::Uuid,
            "uuid3" => StringFormat::Uuid3,
            "uuid4" => StringFormat::Uuid4,
            "uuid5" => StringFormat::Uuid5,
            "isbn" => StringFormat::Isbn,
            "isbn10" => StringFormat::Isbn10,
            "isbn13" => StringFormat::Isbn13,
            "creditcard" => StringFormat::CreditCard,
            "ssn" => StringFormat::Ssn,
            "hexcolor" => StringFormat::HexColor,
            "rgbcolor" => StringFormat::RgbColor,
            "byte" => StringFormat::Byte,
            "password" => StringFormat::Password,
            "date" => StringFormat::Date,
            "duration" => StringFormat::Duration,
            "datetime" => StringFormat::DateTime,
            "k8sshortname" => StringFormat::K8sShortName,
            "k8slongname" => StringFormat::K8sLongName,
            _ => return None,
        })
    }

    /// Whether `s` is a valid value of this format.
    pub fn validates(self, s: &str) -> bool {
        match self {
            StringFormat::BsonObjectId => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            StringFormat::Uri => is_request_uri(s),
            StringFormat::Email => is_email(s),
            StringFormat::Hostname => is_hostname(s),
            StringFormat::Ipv4 => is_ipv4(s),
            StringFormat::Ipv6 => s.contains(':') && s.parse::<Ipv6Addr>().is_ok(),
            StringFormat::Cidr => is_cidr(s),
            StringFormat::Mac => is_mac(s),
            StringFormat::Uuid => UUID.is_match(s),
            StringFormat::Uuid3 => UUID3.is_match(s),
            StringFormat::Uuid4 => UUID4.is_match(s),
            StringFormat::Uuid5 => UUID5.is_match(s),
            StringFormat::Isbn => is_isbn10(s) || is_isbn13(s),
            StringFormat::Isbn10 => is_isbn10(s),
            StringFormat::Isbn13 => is_isbn13(s),
            StringFormat::CreditCard => is_credit_card(s),
            StringFormat::Ssn => s.len() == 11 && SSN.is_match(s),
            StringFormat::HexColor => HEX_COLOR.is_match(s),
            StringFormat::RgbColor => RGB_COLOR.is_match(s),
            StringFormat::Byte => BASE64.is_match(s),
            StringFormat::Password => true,
            StringFormat::Date => is_date(s),
            StringFormat::Duration => is_duration(s),
            StringFormat::DateTime => is_date_time(s),
            StringFormat::K8sShortName => s.len() <= 63 && SHORT_NAME.is_match(s),
            StringFormat::K8sLongName => s.len() <= 253 && LONG_NAME.is_match(s),
        }
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file; a typo is caught by the tests below.
    Regex::new(pattern).unwrap_or_else(|e| panic!("format pattern {pattern}: {e}"))
}

static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9\-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static UUID: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static UUID3: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static UUID5: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static CREDIT_CARD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
    )
});
static HEX_COLOR: LazyLock<Regex> = LazyLock::new(|| re(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGB_COLOR: LazyLock<Regex> = LazyLock::new(|| {
    let c = r"(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])";
    let s = r"[\t\n\f\r ]*";
    re(&format!(r"^rgb\({s}{c}{s},{s}{c}{s},{s}{c}{s}\)$"))
});
static BASE64: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
});
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$"));
static SHORT_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static LONG_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static DATE_TIME_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static DURATION_PART: LazyLock<Regex> = LazyLock::new(|| re(r"(([0-9]+)[\t\n\f\r ]*([A-Za-zµ]+))"));

fn is_hostname(s: &str) -> bool {
    HOSTNAME.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// `netutils.ParseIPSloppy(s) != nil && strings.Contains(s, ".")`: dotted quads with leading
/// zeros allowed, or an IPv6 address with an embedded IPv4 part.
fn is_ipv4(s: &str) -> bool {
    if !s.contains('.') {
        return false;
    }
    if s.contains(':') { s.parse::<Ipv6Addr>().is_ok() } else { parse_ipv4_sloppy(s) }
}

fn parse_ipv4_sloppy(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.bytes()
                    .try_fold(0u32, |n, b| {
                        let n = n * 10 + u32::from(b - b'0');
                        (n <= 255).then_some(n)
                    })
                    .is_some()
        })
}

/// `netutils.ParseCIDRSloppy`: an address, `/`, and a decimal prefix length within its size.
fn is_cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else { return false };
    let size = if addr.contains(':') {
        if addr.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        128
    } else if parse_ipv4_sloppy(addr) {
        32
    } else {
        return false;
    };
    !bits.is_empty()
        && bits.len() <= 8
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= size)
}

/// `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx…`/`xx-xx…`, or groups of four hex digits
/// separated by dots.
fn is_mac(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 14 {
        return false;
    }
    let hex2 = |x: &[u8]| x.len() >= 2 && x[0].is_ascii_hexdigit() && x[1].is_ascii_hexdigit();
    if b[2] == b':' || b[2] == b'-' {
        if !(b.len() + 1).is_multiple_of(3) {
            return false;
        }
        let n = (b.len() + 1) / 3;
        if !matches!(n, 6 | 8 | 20) {
            return false;
        }
        (0..n).all(|i| {
            let x = &b[i * 3..];
            hex2(x) && (x.len() == 2 || x[2] == b[2])
        })
    } else if b[4] == b'.' {
        if !(b.len() + 1).is_multiple_of(5) {
            return false;
        }
        let n = 2 * (b.len() + 1) / 5;
        if !matches!(n, 6 | 8 | 20) {
            return false;
        }
        (0..n / 2).all(|i| {
            let x = &b[i * 5..];
            hex2(x) && hex2(&x[2..]) && (x.len() == 4 || x[4] == b'.')
        })
    } else {
        false
    }
}

fn isbn_digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' | b'-'))
        .collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10 || !d[..9].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let last = match d[9] {
        b'X' => 10,
        c if c.is_ascii_digit() => u32::from(c - b'0'),
        _ => return false,
    };
    let sum: u32 =
        d[..9].iter().enumerate().map(|(i, c)| (i as u32 + 1) * u32::from(c - b'0')).sum();
    (sum + 10 * last).is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = d[..12]
        .iter()
        .enumerate()
        .map(|(i, c)| if i % 2 == 0 { 1 } else { 3 } * u32::from(c - b'0'))
        .sum();
    u32::from(d[12] - b'0') == (10 - sum % 10) % 10
}

/// govalidator's `IsCreditCard`: the digits (everything else dropped) match a known issuer
/// and pass the Luhn check.
fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !CREDIT_CARD.is_match(&digits) {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(c - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n >= 10 {
                n = n % 10 + 1;
            }
        }
        sum += n;
    }
    sum % 10 == 0
}

/// `time.Parse("2006-01-02", s)`: four-digit year, two-digit month and day, a real date.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some(),
        _ => false,
    }
}

/// strfmt's `IsDateTime`: a date, `t`/`T`, then `hh:mm:ss[.frac]` and `Z` or an offset.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else { return false };
    if !is_date(date) {
        return false;
    }
    let Some(c) = DATE_TIME_TAIL.captures(time) else { return false };
    let field = |i: usize| c.get(i).map_or("", |m| m.as_str());
    field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
}

/// strfmt's `ParseDuration`: Go's `time.ParseDuration`, or else any `<digits> <unit>` with
/// a unit it knows (`3 days`, `1 week`, `5 millis`).
fn is_duration(s: &str) -> bool {
    if go_parse_duration(s) {
        return true;
    }
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let mut ok = false;
    for c in DURATION_PART.captures_iter(s) {
        // Atoi fails (and with it the whole parse) on a factor past int64.
        if c.get(2).is_none_or(|m| m.as_str().parse::<i64>().is_err()) {
            return false;
        }
        let unit = c.get(3).map_or("", |m| m.as_str()).trim().to_lowercase();
        for variants in UNITS {
            let last = variants.len() - 1;
            for (i, v) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(v)) || v.eq_ignore_ascii_case(&unit) {
                    ok = true;
                }
            }
        }
    }
    ok
}

/// Go's `time.ParseDuration` grammar: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or `0`, units `ns`,
/// `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`, within ±2⁶³ ns.
fn go_parse_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return false;
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return false,
        };
        let value: f64 = format!("0{int}.{frac}0").parse().unwrap_or(f64::INFINITY);
        total += value * scale;
        if total > 9.223_372_036_854_776e18 {
            return false;
        }
        rest = after;
    }
    true
}

/// Go's `url.ParseRequestURI`: an absolute URI (`scheme:…`) or an absolute path, no
/// control characters, well-formed `%` escapes, and a numeric port.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if s == "*" {
        return true;
    }
    let (scheme, rest) = match split_scheme(s) {
        Ok(x) => x,
        Err(()) => return false,
    };
    let rest = match rest.strip_suffix('?') {
        Some(r) if rest.matches('?').count() == 1 => r,
        _ => rest.split_once('?').map_or(rest, |(p, _)| p),
    };
    if !rest.starts_with('/') {
        // `mailto:x` is an opaque URI; without a scheme a request URI must be a path.
        return !scheme.is_empty();
    }
    let mut path = rest;
    if !scheme.is_empty()
        && let Some(after) = rest.strip_prefix("//")
    {
        let (authority, p) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        if !valid_authority(authority) {
            return false;
        }
        path = p;
    }
    valid_escapes(path)
}

/// Go's `getScheme`: letters, then letters, digits, `+`, `-`, `.` up to the first `:`.
fn split_scheme(s: &str) -> Result<(&str, &str), ()> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err(()),
            ':' => return Ok((&s[..i], &s[i + 1..])),
            _ => return Ok(("", s)),
        }
    }
    Ok(("", s))
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 3 > b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_authority(authority: &str) -> bool {
    let host = match authority.rfind('@') {
        Some(i) => {
            let user = &authority[..i];
            let ok = user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
            if !ok || !valid_escapes(user) {
                return false;
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    let (name, port) = if host.starts_with('[') {
        match host.rfind(']') {
            Some(i) => (&host[..=i], &host[i + 1..]),
            None => return false,
        }
    } else {
        match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && valid_escapes(name)
        && name.bytes().all(|b| {
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"%".contains(&b)
        })
}

/// `net/mail.ParseAddress` for the forms people write: `local@domain` or
/// `Display Name <local@domain>`, with a dot-atom or quoted local part.
fn is_email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => {
            let name = s[..i].trim();
            let name_ok = name.is_empty()
                || (name.starts_with('"') && name.ends_with('"') && name.len() >= 2)
                || name
                    .split_whitespace()
                    .all(|w| w.split('.').all(|a| a.is_empty() || is_atom(a)));
            if !name_ok {
                return false;
            }
            &inner[i + 1..]
        }
        _ => s,
    };
    let Some(at) = addr.rfind('@') else { return false };
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        !local[1..local.len() - 1].contains(['"', '\r', '\n'])
    } else {
        is_dot_atom(local)
    };
    let domain_ok = (domain.starts_with('[') && domain.ends_with(']') && domain.len() >= 2)
        || is_dot_atom(domain);
    local_ok && domain_ok
}

fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            (c as u32) >= 0x80 || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
        })
}

fn is_dot_atom(s: &str) -> bool {
    s.split('.').all(is_atom)
}

#[cfg(test)]
mod tests {
    use super::StringFormat::{self, *};

    #[test]
    fn from_name_should_normalize_dashes_and_ignore_unknown_formats() {
        assert_eq!(StringFormat::from_name("date-time"), Some(DateTime));
        assert_eq!(StringFormat::from_name("datetime"), Some(DateTime));
        assert_eq!(StringFormat::from_name("k8s-short-name"), Some(K8sShortName));
        assert_eq!(StringFormat::from_name("int32"), None);
        assert_eq!(StringFormat::from_name("color"), None);
    }

    #[test]
    fn validates_should_accept_and_refuse_as_strfmt_does() {
        let cases: &[(StringFormat, &str, bool)] = &[
            (BsonObjectId, "507f1f77bcf86cd799439011", true),
            (BsonObjectId, "507f1f77bcf86cd79943901", false),
            (Uri, "http://example.com/a?b=c", true),
            (Uri, "/just/a/path", true),
            (Uri, "mailto:someone", true),
            (Uri, "relative/path", false),
            (Uri, "http://host:port/", false),
            (Uri, "http://example.com/%zz", false),
            (Uri, ":nope", false),
            (Email, "someone@example.com", true),
            (Email, "Some One <some.one@example.com>", true),
            (Email, "someone", false),
            (Email, "a..b@example.com", false),
            (Hostname, "example.com", true),
            (Hostname, "localhost", true),
            (Hostname, "-bad.com", false),
            (Hostname, "under_score.com", false),
            (Ipv4, "10.0.0.1", true),
            (Ipv4, "010.000.000.001", true),
            (Ipv4, "256.0.0.1", false),
            (Ipv4, "::ffff:10.0.0.1", true),
            (Ipv4, "::1", false),
            (Ipv6, "::1", true),
            (Ipv6, "2001:db8::8a2e:370:7334", true),
            (Ipv6, "10.0.0.1", false),
            (Ipv6, "fe80::1%eth0", false),
            (Cidr, "10.0.0.0/8", true),
            (Cidr, "2001:db8::/32", true),
            (Cidr, "10.0.0.0/33", false),
            (Cidr, "10.0.0.0", false),
            (Mac, "01:23:45:67:89:ab", true),
            (Mac, "01-23-45-67-89-ab-cd-ef", true),
            (Mac, "0123.4567.89ab", true),
            (Mac, "01:23:45:67:89", false),
            (Mac, "01:23-45:67:89:ab", false),
            (Uuid, "A987FBC9-4BED-3078-CF07-9141BA07C9F3", true),
            (Uuid, "a987fbc94bed3078cf079141ba07c9f3", true),
            (Uuid, "a987fbc9-4bed-3078-cf07-9141ba07c9f", false),
            (Uuid3, "a987fbc9-4bed-3078-cf07-9141ba07c9f3", true),
            (Uuid3, "a987fbc9-4bed-4078-8f07-9141ba07c9f3", false),
            (Uuid4, "a987fbc9-4bed-4078-8f07-9141ba07c9f3", true),
            (Uuid4, "a987fbc9-4bed-4078-cf07-9141ba07c9f3", false),
            (Uuid5, "a987fbc9-4bed-5078-af07-9141ba07c9f3", true),
            (Isbn10, "0321751043", true),
            (Isbn10, "0-321-75104-3", true),
            (Isbn10, "0321751044", false),
            (Isbn13, "978-0321751041", true),
            (Isbn13, "9780321751042", false),
            (Isbn, "0321751043", true),
            (Isbn, "9780321751041", true),
            (CreditCard, "4111 1111 1111 1111", true),
            (CreditCard, "4111111111111112", false),
            (Ssn, "123-45-6789", true),
            (Ssn, "123456789", false),
            (HexColor, "#ffffff", true),
            (HexColor, "fff", true),
            (HexColor, "#ffff", false),
            (RgbColor, "rgb(255, 255, 255)", true),
            (RgbColor, "rgb(256,0,0)", false),
            (Byte, "aGVsbG8=", true),
            (Byte, "aGVsbG8", false),
            (Byte, "", false),
            (Password, "", true),
            (Date, "2024-02-29", true),
            (Date, "2023-02-29", false),
            (Date, "2024-2-01", false),
            (DateTime, "2024-02-29T10:20:30Z", true),
            (DateTime, "2024-02-29t10:20:30.123+02:00", true),
            (DateTime, "2024-02-29T10:20:30", false),
            (DateTime, "2024-02-29T24:00:00Z", false),
            (DateTime, "foo", false),
            (Duration, "1h30m", true),
            (Duration, "1.5s", true),
            (Duration, "-5µs", true),
            (Duration, "3 days", true),
            (Duration, "1 week", true),
            (Duration, "10 apples", false),
            (Duration, "", false),
            (Duration, "1x", false),
            (K8sShortName, "my-name", true),
            (K8sShortName, "My-name", false),
            (K8sLongName, "a.b-c.d", true),
            (K8sLongName, "a..b", false),
        ];
        for (f, s, want) in cases {
            assert_eq!(f.validates(s), *want, "{f:?} {s:?}");
        }
    }
}
