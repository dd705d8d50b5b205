//! Go's renderings that kube's messages are made of: `%v` of a float64, `%q` of a string,
//! `strconv.FormatFloat(f, 'f', -1, 64)`, and `encoding/json` of a decoded value (what
//! `listtype` compares compound set items by).

use std::fmt::Write;

use serde_json::Value;

/// `fmt.Sprintf("%v", f)`: the shortest digits, in `%e` form when the exponent is below -4
/// or at least 6 (`1e+06`, `1.5e-05`), otherwise plain (`123456`, `0.5`).
pub(crate) fn float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exp = decimal_exponent(f);
    if !(-4..6).contains(&exp) { exponent_form(f, 2) } else { format!("{f}") }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent.
pub(crate) fn float_f(f: f64) -> String {
    format!("{f}")
}

/// The exponent of `f` in scientific notation with the shortest digits.
fn decimal_exponent(f: f64) -> i32 {
    let e = format!("{f:e}");
    e.rsplit_once('e').and_then(|(_, x)| x.parse().ok()).unwrap_or(0)
}

/// `1.5e+06` / `1e-07`: Go's `%e` with the shortest digits and at least `width` exponent
/// digits.
fn exponent_form(f: f64, width: usize) -> String {
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>width$}")
}

/// `strconv.Quote(s)` (`%q`), as skiff-admission writes it for Pod Security's messages.
pub(crate) fn quote(s: &str) -> String {
    skiff_admission::podsecurity::go_quote(s)
}

/// `json.Marshal` of a decoded JSON value as Go writes it: integers as they are, floats
/// with the shortest digits (`1`, `1.5`, `1e+21`, `1e-7`), object keys sorted.
pub(crate) fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(f)) => out.push_str(&go_json_float(f)),
            (None, None) => {
                let _ = write!(out, "{n}");
            }
        },
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                go_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
    }
}

/// `encoding/json`'s float64: plain below 1e21 and from 1e-6, `%e` outside, `e-07` as `e-7`.
fn go_json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) { exponent_form(f, 1) } else { format!("{f}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_v_should_write_floats_as_go_fmt_does() {
        let cases = [
            (10.0, "10"),
            (10.5, "10.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
        ];
        for (f, want) in cases {
            assert_eq!(float_v(f), want, "{f}");
        }
        assert_eq!(float_f(1e20), "100000000000000000000");
        assert_eq!(float_f(1.0), "1");
    }

    #[test]
    fn quote_should_escape_as_strconv_quote_does() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(quote("\u{1}é"), "\"\\x01é\"");
        assert_eq!(quote("\u{200b}"), "\"\\u200b\"");
    }

    #[test]
    fn go_json_should_write_floats_and_sorted_keys_as_encoding_json_does() {
        let v = json!({"b": [1, 1.0, 1.5, 1e21, 1e-7], "a": "x"});
        let mut s = String::new();
        go_json(&v, &mut s);
        assert_eq!(s, r#"{"a":"x","b":[1,1,1.5,1e+21,1e-7]}"#);
    }
}
