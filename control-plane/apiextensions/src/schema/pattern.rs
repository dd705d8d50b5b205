//! `pattern` as Go's `regexp` reads it. Go and the `regex` crate share RE2's syntax, but Go's
//! `\d`, `\w`, `\s` and `\b` are ASCII, Go reads `[` inside a class, `&&` and `~~` as
//! plain characters, `{` that starts no repetition as a literal, `\Q…\E` and octal escapes;
//! the pattern is rewritten to say the same thing to `regex`. Errors are worded as Go's
//! (`error parsing regexp: missing closing ): `(a``) for the usual mistakes.

use regex::Regex;

/// A schema's `pattern`, compiled once.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    /// The regex, or Go's words for why it does not compile.
    pub(crate) regex: Result<Regex, String>,
}

impl Pattern {
    pub fn new(source: &str) -> Pattern {
        Pattern { source: source.to_string(), regex: compile(source) }
    }

    /// Why the pattern does not compile, in Go's words.
    pub fn error(&self) -> Option<&str> {
        self.regex.as_ref().err().map(String::as_str)
    }
}

/// Compiles a Go regular expression; the error is Go's message.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    // `regex` takes `a**`; Go does not.
    if let Some((code, expr)) = classify(pattern).filter(|(c, _)| c.starts_with("invalid nested")) {
        return Err(format!("error parsing regexp: {code}: `{expr}`"));
    }
    let translated = translate(pattern);
    Regex::new(&translated).map_err(|e| go_error(pattern, &e.to_string()))
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\f\\r ";

fn translate(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            match n {
                'd' | 'w' | 's' | 'D' | 'W' | 'S' => {
                    let set = match n.to_ascii_lowercase() {
                        'd' => DIGIT,
                        'w' => WORD,
                        _ => SPACE,
                    };
                    let neg = if n.is_ascii_uppercase() { "^" } else { "" };
                    out.push('[');
                    out.push_str(neg);
                    out.push_str(set);
                    out.push(']');
                    i += 2;
                }
                'b' | 'B' if !in_class => {
                    out.push_str("(?-u:\\");
                    out.push(n);
                    out.push(')');
                    i += 2;
                }
                'Q' => {
                    let mut j = i + 2;
                    while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                        out.push_str(&regex::escape(&chars[j].to_string()));
                        j += 1;
                    }
                    i = (j + 2).min(chars.len());
                }
                '0'..='7' => {
                    let digits: String = chars[i + 1..]
                        .iter()
                        .take(3)
                        .take_while(|d| ('0'..='7').contains(d))
                        .collect();
                    if n == '0' || digits.len() >= 2 {
                        let code = u32::from_str_radix(&digits, 8).unwrap_or(0);
                        out.push_str(&format!("\\x{{{code:x}}}"));
                        i += 1 + digits.len();
                    } else {
                        out.push('\\');
                        out.push(n);
                        i += 2;
                    }
                }
                _ => {
                    out.push('\\');
                    out.push(n);
                    i += 2;
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' if i > class_start => {
                    in_class = false;
                    out.push(']');
                }
                '[' if chars.get(i + 1) == Some(&':') => {
                    // A POSIX class `[:alpha:]`: copied through its closing `:]`.
                    let end = (i + 2..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                    match end {
                        Some(e) => {
                            out.extend(&chars[i..e + 2]);
                            i = e + 2;
                            continue;
                        }
                        None => out.push_str("\\["),
                    }
                }
                '[' => out.push_str("\\["),
                '&' | '~' if chars.get(i + 1) == Some(&c) => {
                    out.push(c);
                    out.push('\\');
                    out.push(c);
                    i += 2;
                    continue;
                }
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` right after `[` or `[^` is a member, not the end.
                class_start = i + usize::from(chars.get(i) == Some(&']'));
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '{' if is_repeat(&chars[i..]) => {
                let len = chars[i..].iter().position(|c| *c == '}').map_or(1, |p| p + 1);
                out.extend(&chars[i..i + len]);
                i += len;
                continue;
            }
            '{' => out.push_str("\\{"),
            '}' => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s`.
fn is_repeat(s: &[char]) -> bool {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    s.get(i) == Some(&'}')
}

/// Go's `regexp/syntax` error for the usual mistakes, else the `regex` crate's reason.
fn go_error(p: &str, fallback: &str) -> String {
    let (code, expr) = classify(p).unwrap_or_else(|| {
        let reason = fallback
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(fallback)
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        (reason, p.to_string())
    });
    format!("error parsing regexp: {code}: `{expr}`")
}

fn classify(p: &str) -> Option<(String, String)> {
    let b = p.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut prev_can_repeat = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if i + 1 >= b.len() {
                    return Some(("trailing backslash at end of expression".into(), String::new()));
                }
                i += 2;
                prev_can_repeat = true;
                continue;
            }
            b'[' => {
                let mut j = i + 1;
                if b.get(j) == Some(&b'^') {
                    j += 1;
                }
                if b.get(j) == Some(&b']') {
                    j += 1;
                }
                while j < b.len() && b[j] != b']' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Some(("missing closing ]".into(), p[i..].to_string()));
                }
                i = j + 1;
                prev_can_repeat = true;
                continue;
            }
            b'(' => {
                depth += 1;
                prev_can_repeat = false;
            }
            b')' => {
                if depth == 0 {
                    return Some(("unexpected )".into(), p.to_string()));
                }
                depth -= 1;
                prev_can_repeat = true;
            }
            b'|' => prev_can_repeat = false,
            b'*' | b'+' | b'?' => {
                let mut end = i + 1;
                if b.get(end) == Some(&b'?') {
                    end += 1;
                }
                if !prev_can_repeat {
                    return Some((
                        "missing argument to repetition operator".into(),
                        p[i..end].to_string(),
                    ));
                }
                if matches!(b.get(end), Some(b'*' | b'+' | b'?')) {
                    return Some((
                        "invalid nested repetition operator".into(),
                        p[i..=end].to_string(),
                    ));
                }
                i = end;
                prev_can_repeat = false;
                continue;
            }
            _ => prev_can_repeat = true,
        }
        i += 1;
    }
    (depth > 0).then(|| ("missing closing )".into(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_should_read_patterns_as_go_does() {
        let cases: &[(&str, &str, bool)] = &[
            (r"^\d+$", "123", true),
            (r"^\d+$", "١٢٣", false),
            (r"^\w+$", "é", false),
            (r"^[\d_]+$", "1_2", true),
            (r"^[\D]$", "a", true),
            (r"^{foo}$", "{foo}", true),
            (r"^a{2}$", "aa", true),
            (r"^[[a]+$", "[a[", true),
            (r"^[]a]+$", "]a", true),
            (r"^[[:alpha:]]+$", "abc", true),
            (r"^\Qa.b\E$", "a.b", true),
            (r"^\Qa.b\E$", "axb", false),
            (r"^\101$", "A", true),
            (r"^[a&&b]$", "&", true),
            (r"^a\/b$", "a/b", true),
        ];
        for (p, s, want) in cases {
            let re = compile(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(re.is_match(s), *want, "{p} on {s}");
        }
    }

    #[test]
    fn compile_should_explain_errors_in_go_words() {
        let cases = [
            ("+", "error parsing regexp: missing argument to repetition operator: `+`"),
            ("(a", "error parsing regexp: missing closing ): `(a`"),
            ("a)", "error parsing regexp: unexpected ): `a)`"),
            ("a[bc", "error parsing regexp: missing closing ]: `[bc`"),
            ("a\\", "error parsing regexp: trailing backslash at end of expression: ``"),
            ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
        ];
        for (p, want) in cases {
            assert_eq!(compile(p).err().as_deref(), Some(want), "{p}");
        }
    }
}
