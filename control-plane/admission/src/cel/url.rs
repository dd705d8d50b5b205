//! kube's `library/urls.go`: `url(s)`, `isURL(s)` and the `kubernetes.URL` getters, with URLs
//! read as Go's `net/url` reads them (`ParseRequestURI` to accept, `Parse` for the parts),
//! since WHATWG parsers accept and normalise differently.

use std::any::Any;
use std::collections::BTreeMap;

use cel::common::types::{CelList, CelMap, CelMapKey, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::library::{arg, boolean, fail, no_overload, owned, str_arg, string};

pub(crate) static URL_TYPE: Type = Type::new_unspecified_type("kubernetes.URL");

/// The parts of a URL, as Go's `url.URL` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    pub has_user: bool,
    pub host: String,
    pub path: String,
    pub raw_path: String,
    pub raw_query: String,
    pub fragment: String,
    /// The text it was parsed from (what `String()` would rebuild).
    pub text: String,
}

impl Val for GoUrl {
    fn get_type(&self) -> &Type {
        &URL_TYPE
    }
    fn cel_type() -> &'static Type {
        &URL_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<GoUrl>() == Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for GoUrl {}

pub(crate) fn display(v: &dyn Val) -> Option<String> {
    v.downcast_ref::<GoUrl>().map(|u| u.text.clone())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Path,
    Host,
    QueryComponent,
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Go's `shouldEscape`, for the modes used here.
fn should_escape(c: u8, mode: Encoding) -> bool {
    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
        return false;
    }
    if mode == Encoding::Host {
        return !matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        );
    }
    match c {
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Encoding::Path => c == b'?',
            _ => true,
        },
        _ => true,
    }
}

/// Go's `unescape`.
fn unescape(s: &str, mode: Encoding) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(h), Some(l)) =
                    (b.get(i + 1).copied().and_then(unhex), b.get(i + 2).copied().and_then(unhex))
                else {
                    // Bytes, not `&s[..]`: the escape may end inside a multibyte character.
                    let end = (i + 3).min(b.len());
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(&b[i..end])
                    ));
                };
                out.push(h << 4 | l);
                i += 3;
            }
            b'+' if mode == Encoding::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                if mode == Encoding::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        (c as char).to_string()
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn escape(s: &str, mode: Encoding) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
    out
}

/// Go's `validEncoded` for paths.
fn valid_encoded_path(s: &str) -> bool {
    s.bytes().all(|c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape(c, Encoding::Path)
    })
}

fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i == 0 => return Ok(("", raw)),
            b'0'..=b'9' | b'+' | b'-' | b'.' => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_string()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else { return Err("missing ']' in host".to_string()) };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host, Encoding::Host)
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    })
}

/// Go's `url.parse`.
fn parse_inner(raw: &str, via_request: bool) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_string());
    }
    if raw.is_empty() && via_request {
        return Err("empty url".to_string());
    }
    let mut url = GoUrl { text: raw.to_string(), ..GoUrl::default() };
    if raw == "*" {
        url.path = "*".to_string();
        return Ok(url);
    }
    let (scheme, mut rest) = get_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((r, q)) = rest.split_once('?') {
        url.raw_query = q.to_string();
        rest = r;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        if via_request {
            return Err("invalid URI for request".to_string());
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return Err("first path segment in URL cannot contain colon".to_string());
        }
    }
    if (!url.scheme.is_empty() || !via_request && !rest.starts_with("///"))
        && rest.starts_with("//")
    {
        let authority_and_rest = &rest[2..];
        let (authority, tail) = match authority_and_rest.find('/') {
            Some(i) => (&authority_and_rest[..i], &authority_and_rest[i..]),
            None => (authority_and_rest, ""),
        };
        let host = match authority.rfind('@') {
            None => parse_host(authority)?,
            Some(i) => {
                if !valid_userinfo(&authority[..i]) {
                    return Err("net/url: invalid userinfo".to_string());
                }
                url.has_user = true;
                parse_host(&authority[i + 1..])?
            }
        };
        url.host = host;
        rest = tail;
    }
    url.path = unescape(rest, Encoding::Path)?;
    if escape(&url.path, Encoding::Path) != rest {
        url.raw_path = rest.to_string();
    }
    Ok(url)
}

/// `url.ParseRequestURI`: an absolute URI or an absolute path, with Go's error text.
pub(crate) fn parse_request_uri(raw: &str) -> Result<GoUrl, String> {
    parse_inner(raw, true).map_err(|e| format!("parse {raw:?}: {e}"))
}

/// `url.Parse`: the fragment split off first.
fn parse(raw: &str) -> Result<GoUrl, String> {
    let (u, fragment) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let mut url = parse_inner(u, false).map_err(|e| format!("parse {raw:?}: {e}"))?;
    if let Some(f) = fragment {
        url.fragment = unescape(f, Encoding::Path).map_err(|e| format!("parse {raw:?}: {e}"))?;
    }
    url.text = raw.to_string();
    Ok(url)
}

impl GoUrl {
    fn hostname(&self) -> &str {
        let host = &self.host;
        if let Some(rest) = host.strip_prefix('[') {
            return rest.find(']').map_or(rest, |i| &rest[..i]);
        }
        match host.rfind(':') {
            Some(i) if valid_optional_port(&host[i..]) => &host[..i],
            _ => host,
        }
    }

    fn port(&self) -> &str {
        let host = &self.host;
        let after = match host.rfind(']') {
            Some(i) if host.starts_with('[') => &host[i + 1..],
            _ => host.as_str(),
        };
        match after.rfind(':') {
            Some(i) if valid_optional_port(&after[i..]) => &after[i + 1..],
            _ => "",
        }
    }

    fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded_path(&self.raw_path)
            && unescape(&self.raw_path, Encoding::Path).is_ok_and(|p| p == self.path)
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".to_string();
        }
        escape(&self.path, Encoding::Path)
    }

    /// Go's `url.ParseQuery`, keys in order; malformed pairs are skipped.
    fn query(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(k), Ok(v)) =
                (unescape(k, Encoding::QueryComponent), unescape(v, Encoding::QueryComponent))
            else {
                continue;
            };
            out.entry(k).or_default().push(v);
        }
        out
    }
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let u = || URL_TYPE.to_owned();
    env.add_type(u())?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], to_url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    env.add_member_overload("getScheme", "url_get_scheme", u(), vec![], get_scheme_fn)?;
    env.add_member_overload("getHost", "url_get_host", u(), vec![], get_host)?;
    env.add_member_overload("getHostname", "url_get_hostname", u(), vec![], get_hostname)?;
    env.add_member_overload("getPort", "url_get_port", u(), vec![], get_port)?;
    env.add_member_overload(
        "getEscapedPath",
        "url_get_escaped_path",
        u(),
        vec![],
        get_escaped_path,
    )?;
    env.add_member_overload("getQuery", "url_get_query", u(), vec![], get_query)?;
    Ok(())
}

fn to_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "url")?;
    let conversion =
        |e: String| fail("url", format!("URL parse error during conversion from string: {e}"));
    parse_request_uri(s).map_err(conversion)?;
    parse(s).map(CowVal::owned).map_err(conversion)
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse_request_uri(str_arg(&args, 0, "isURL")?).is_ok())
}

fn url_arg<'x>(args: &'x [CowVal<'_, '_>], function: &str) -> Result<&'x GoUrl, ExecutionError> {
    arg(args, 0)?.downcast_ref::<GoUrl>().ok_or_else(|| no_overload(function, args))
}

fn get_scheme_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(url_arg(&args, "getScheme")?.scheme.clone())
}

fn get_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(url_arg(&args, "getHost")?.host.clone())
}

fn get_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(url_arg(&args, "getHostname")?.hostname().to_string())
}

fn get_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(url_arg(&args, "getPort")?.port().to_string())
}

fn get_escaped_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(url_arg(&args, "getEscapedPath")?.escaped_path())
}

fn get_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let query = url_arg(&args, "getQuery")?.query();
    let entries: std::collections::HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = query
        .into_iter()
        .map(|(k, values)| {
            let list: Vec<Box<dyn Val + 'v>> = values
                .into_iter()
                .map(|v| Box::new(CelString::from(v)) as Box<dyn Val + 'v>)
                .collect();
            (CelMapKey::from(k), Box::new(CelList::from(list)) as Box<dyn Val + 'v>)
        })
        .collect();
    owned(CelMap::from(entries))
}
