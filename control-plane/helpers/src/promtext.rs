//! The Prometheus text exposition format (version 0.0.4), read: what the control plane's
//! metrics pipeline reads from kubelets (`metrics/resource`) and what a node reads from pods
//! that ask to be scraped (`prometheus.io/scrape`). Only what those need: samples with their
//! labels, values and optional timestamps, and each family's `# TYPE`.

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A parsed exposition: the samples in order and the declared type of each family.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// The declared type of the family `sample` belongs to (`_total`, `_sum`, `_count` and
    /// `_bucket` samples belong to the family without the suffix).
    pub fn type_of(&self, sample: &str) -> Option<&str> {
        if let Some(t) = self.types.get(sample) {
            return Some(t);
        }
        ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| self.types.get(sample.strip_suffix(s)?))
            .map(String::as_str)
    }
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parse `text`, stopping after `max_samples` samples (a bound on what a misbehaving target
/// costs the reader).
pub fn parse(text: &str, max_samples: usize) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: &str| ParseError { line: i + 1, message: message.to_string() };
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (words.next(), words.next())
            {
                out.types.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        if out.samples.len() >= max_samples {
            break;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(err("invalid metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(body).ok_or_else(|| err("invalid label set"))?;
            labels = parsed;
            rest = after;
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| err("missing value"))?;
        let value = parse_value(value).ok_or_else(|| err("invalid value"))?;
        let timestamp_ms = match fields.next() {
            Some(ts) => Some(ts.parse::<i64>().map_err(|_| err("invalid timestamp"))?),
            None => None,
        };
        out.samples.push(Sample { name: name.to_string(), labels, value, timestamp_ms });
    }
    Ok(out)
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// `k="v",k2="v2"}` → the pairs and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        if key.is_empty() {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_should_read_labels_values_timestamps_and_types() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 12.5 1700000000000\nup 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\n";
        let e = parse(text, 100).unwrap();
        assert_eq!(e.samples.len(), 3);
        assert_eq!(e.samples[0].name, "x_total");
        assert_eq!(e.samples[0].label("b"), Some("q\"uote"));
        assert_eq!(e.samples[0].value, 12.5);
        assert_eq!(e.samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(e.samples[1].timestamp_ms, None);
        assert_eq!(e.type_of("x_total"), Some("counter"));
        assert_eq!(e.type_of("h_bucket"), Some("histogram"));
        assert_eq!(e.type_of("up"), None);
    }

    #[test]
    fn parse_should_refuse_garbage_and_stop_at_the_bound() {
        assert!(parse("not a metric line {", 10).is_err());
        assert!(parse("x{a=\"1\" 2", 10).is_err());
        assert!(parse("x abc", 10).is_err());
        let many: String = (0..50).map(|i| format!("m{i} 1\n")).collect();
        assert_eq!(parse(&many, 10).unwrap().samples.len(), 10);
    }
}
