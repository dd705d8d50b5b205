//! kube's `cel.ValidFieldPath`: a rule's `fieldPath` (and a version's `selectableFields`)
//! as a field path under a schema: `.spec.replicas`, `.labels['app.kubernetes.io/name']`,
//! `['a.b'].c`, through `properties` by name and `additionalProperties` by key.

use serde_json::Value;

/// Splits at `.`, `[` and `]` (each a token); a single-quoted string is one token, escapes
/// kept, whatever it holds.
fn tokens(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = path.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let rest = &bytes[start..];
        let len = if rest[0] == b'\'' {
            let mut end = None;
            for i in 1..rest.len() {
                if rest[i] == b'\'' && rest[i - 1] != b'\\' {
                    end = Some(i + 1);
                    break;
                }
            }
            end.unwrap_or(rest.len())
        } else if matches!(rest[0], b'.' | b'[' | b']') {
            1
        } else {
            rest.iter().position(|c| matches!(c, b'.' | b'[' | b']')).unwrap_or(rest.len())
        };
        out.push(&path[start..start + len]);
        start += len;
    }
    out
}

fn unescape_single_quoted(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('\\');
            break;
        };
        out.push(match d {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\'' => '\'',
            '\\' => '\\',
            other => return Err(format!("invalid escape char \\{other}")),
        });
    }
    Ok(out)
}

/// `json_path` as the field path kube prints (`spec.labels[app]`) and the schema it reaches;
/// the error is kube's (`does not refer to a valid field`, `expected [ or . but got: x`).
pub(crate) fn valid_field_path<'s>(
    json_path: &str,
    schema: &'s Value,
    allow_array_notation: bool,
) -> Result<(String, &'s Value), String> {
    let mut path = String::new();
    let mut schema = schema;
    let toks = tokens(json_path);
    let mut i = 0;
    let next = |i: &mut usize| -> Option<&str> {
        let t = toks.get(*i).copied();
        *i += 1;
        t
    };
    while let Some(tok) = next(&mut i) {
        let name = match tok {
            "[" => {
                if !allow_array_notation {
                    return Err("array notation is not allowed".into());
                }
                let tok = next(&mut i).ok_or("unexpected end of JSON path")?;
                if tok.len() < 2 || !tok.starts_with('\'') || !tok.ends_with('\'') {
                    return Err(format!("expected single quoted string but got {tok}"));
                }
                let name = unescape_single_quoted(&tok[1..tok.len() - 1])
                    .map_err(|e| format!("invalid string literal: {e}"))?;
                let close = next(&mut i).ok_or("unexpected end of JSON path")?;
                if close != "]" {
                    return Err(format!("expected ] but got {close}"));
                }
                name
            }
            "." => next(&mut i).ok_or("unexpected end of JSON path")?.to_string(),
            other => return Err(format!("expected [ or . but got: {other}")),
        };
        schema = step(schema, &name, &mut path)?;
    }
    Ok((path, schema))
}

/// One step down: a property by name, or an `additionalProperties` value by key.
fn step<'s>(schema: &'s Value, name: &str, path: &mut String) -> Result<&'s Value, String> {
    const INVALID: &str = "does not refer to a valid field";
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
        return props.get(name).ok_or_else(|| INVALID.to_string());
    }
    if let Some(values) = schema.get("additionalProperties") {
        path.push('[');
        path.push_str(name);
        path.push(']');
        return if values.is_object() { Ok(values) } else { Err(INVALID.into()) };
    }
    Err(INVALID.into())
}
