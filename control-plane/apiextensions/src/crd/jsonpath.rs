//! The JSONPath of printer columns (client-go's `util/jsonpath`, as kube's table convertor
//! uses it: `{` + path + `}`, missing keys allowed), for the forms columns use:
//! `.spec.replicas`, `.metadata.labels.app`, `['a.b']`, `[0]`, `[-1]`, `[1:3]`, `[*]`,
//! `.*`, `..name`, `[0,2]` and filters `[?(@.type=="Ready")]` (`==`, `!=`, `<`, `<=`, `>`,
//! `>=`, or `@.x` alone for presence).

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Field(String),
    /// `*`: every value of an object, every item of a list.
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[a,b]`: indexes or quoted names.
    Union(Vec<Step>),
    Filter(Filter),
    /// `..x`: `x` applied to the value and everything under it.
    Recursive(Box<Step>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter {
    left: Operand,
    /// `None`: a presence test.
    op: Option<(String, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@.a.b`, relative to the item.
    Path(Vec<Step>),
    Literal(Value),
}

/// Parses `path` (with or without the surrounding braces); the error says what is wrong.
pub(crate) fn parse(path: &str) -> Result<Vec<Step>, String> {
    let path = path.trim();
    let path = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut parser = Parser { s: path.as_bytes(), text: path, i: 0 };
    let steps = parser.steps(false)?;
    if parser.i < parser.s.len() {
        return Err(format!("unrecognized character in action: {:?}", &path[parser.i..]));
    }
    Ok(steps)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// Steps until the end, or (in a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                b'.' if self.s.get(self.i + 1) == Some(&b'.') => {
                    self.i += 2;
                    let inner =
                        if self.peek() == Some(b'[') { self.bracket()? } else { self.name_step()? };
                    steps.push(Step::Recursive(Box::new(inner)));
                }
                b'.' => {
                    self.i += 1;
                    if matches!(self.peek(), None | Some(b'.' | b'['))
                        && steps.is_empty()
                        && !in_filter
                    {
                        // `.` alone is the whole object.
                        continue;
                    }
                    steps.push(self.name_step()?);
                }
                b'[' => steps.push(self.bracket()?),
                _ if in_filter => break,
                _ => {
                    return Err(format!(
                        "unrecognized character in action: {:?}",
                        &self.text[self.i..]
                    ));
                }
            }
        }
        Ok(steps)
    }

    fn name_step(&mut self) -> Result<Step, String> {
        if self.peek() == Some(b'*') {
            self.i += 1;
            return Ok(Step::Wildcard);
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(
                c,
                b'.' | b'[' | b']' | b' ' | b'(' | b')' | b'=' | b'!' | b'<' | b'>' | b','
            ) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err("missing field name".to_string());
        }
        Ok(Step::Field(self.text[start..self.i].to_string()))
    }

    fn bracket(&mut self) -> Result<Step, String> {
        self.i += 1; // `[`
        self.skip_spaces();
        let step = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Step::Wildcard
            }
            Some(b'?') => {
                self.i += 1;
                if self.peek() != Some(b'(') {
                    return Err("expected ( after ?".to_string());
                }
                self.i += 1;
                let filter = self.filter()?;
                self.skip_spaces();
                if self.peek() != Some(b')') {
                    return Err("unterminated filter".to_string());
                }
                self.i += 1;
                Step::Filter(filter)
            }
            _ => {
                let mut items = vec![self.union_item()?];
                self.skip_spaces();
                while self.peek() == Some(b',') {
                    self.i += 1;
                    self.skip_spaces();
                    items.push(self.union_item()?);
                    self.skip_spaces();
                }
                if items.len() == 1 { items.remove(0) } else { Step::Union(items) }
            }
        };
        self.skip_spaces();
        if self.peek() != Some(b']') {
            return Err("unterminated array".to_string());
        }
        self.i += 1;
        Ok(step)
    }

    fn union_item(&mut self) -> Result<Step, String> {
        if let Some(q @ (b'\'' | b'"')) = self.peek() {
            return Ok(Step::Field(self.quoted(q)?));
        }
        let mut parts: [Option<i64>; 3] = [None; 3];
        let mut part = 0;
        loop {
            self.skip_spaces();
            let start = self.i;
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i > start {
                let n = self.text[start..self.i]
                    .parse::<i64>()
                    .map_err(|e| format!("invalid array index: {e}"))?;
                parts[part] = Some(n);
            }
            self.skip_spaces();
            if self.peek() == Some(b':') && part < 2 {
                self.i += 1;
                part += 1;
                continue;
            }
            break;
        }
        match (part, parts) {
            (0, [Some(n), _, _]) => Ok(Step::Index(n)),
            (0, _) => Err("invalid array index".to_string()),
            (_, [a, b, c]) => Ok(Step::Slice(a, b, c)),
        }
    }

    fn quoted(&mut self, quote: u8) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        let rest = &self.text[self.i..];
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            if c == '\\' {
                if let Some((_, d)) = chars.next() {
                    out.push(d);
                }
                continue;
            }
            if c as u32 == u32::from(quote) {
                self.i += at + 1;
                return Ok(out);
            }
            out.push(c);
        }
        Err("unterminated quoted string".to_string())
    }

    fn filter(&mut self) -> Result<Filter, String> {
        self.skip_spaces();
        let left = self.operand()?;
        self.skip_spaces();
        let op_start = self.i;
        while self.peek().is_some_and(|c| matches!(c, b'=' | b'!' | b'<' | b'>')) {
            self.i += 1;
        }
        let op = &self.text[op_start..self.i];
        if op.is_empty() {
            return Ok(Filter { left, op: None });
        }
        if !["==", "!=", "<", "<=", ">", ">="].contains(&op) {
            return Err(format!("unrecognized filter operator {op}"));
        }
        self.skip_spaces();
        let right = self.operand()?;
        Ok(Filter { left, op: Some((op.to_string(), right)) })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek() {
            Some(b'@') => {
                self.i += 1;
                Ok(Operand::Path(self.steps(true)?))
            }
            Some(q @ (b'\'' | b'"')) => Ok(Operand::Literal(Value::String(self.quoted(q)?))),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b' ' | b')' | b'=' | b'!' | b'<' | b'>'))
                {
                    self.i += 1;
                }
                let word = &self.text[start..self.i];
                match word {
                    "true" => Ok(Operand::Literal(Value::Bool(true))),
                    "false" => Ok(Operand::Literal(Value::Bool(false))),
                    "nil" | "null" => Ok(Operand::Literal(Value::Null)),
                    _ => serde_json::from_str::<serde_json::Number>(word)
                        .map(|n| Operand::Literal(Value::Number(n)))
                        .map_err(|_| format!("unrecognized filter operand {word:?}")),
                }
            }
        }
    }
}

/// Every value `steps` reach from `root`.
pub(crate) fn evaluate<'v>(steps: &[Step], root: &'v Value) -> Vec<&'v Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            apply(step, v, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'v>(step: &Step, v: &'v Value, out: &mut Vec<&'v Value>) {
    match step {
        Step::Field(name) => out.extend(v.get(name.as_str())),
        Step::Wildcard => match v {
            Value::Object(m) => out.extend(m.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Step::Index(i) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let at = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&at) {
                    out.push(&a[at as usize]);
                }
            }
        }
        Step::Slice(start, end, step) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let clamp = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let from = clamp(start.unwrap_or(0));
                let to = clamp(end.unwrap_or(len));
                let by = step.unwrap_or(1).max(1);
                let mut at = from;
                while at < to {
                    out.push(&a[at as usize]);
                    at += by;
                }
            }
        }
        Step::Union(items) => {
            for item in items {
                apply(item, v, out);
            }
        }
        Step::Filter(filter) => {
            let candidates: Box<dyn Iterator<Item = &Value>> = match v {
                Value::Array(a) => Box::new(a.iter()),
                other => Box::new(std::iter::once(other)),
            };
            out.extend(candidates.filter(|item| filter.matches(item)));
        }
        Step::Recursive(inner) => {
            let mut stack = vec![v];
            while let Some(node) = stack.pop() {
                apply(inner, node, out);
                match node {
                    Value::Object(m) => stack.extend(m.values().rev()),
                    Value::Array(a) => stack.extend(a.iter().rev()),
                    _ => {}
                }
            }
        }
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let value = |o: &Operand| -> Option<Value> {
            match o {
                Operand::Literal(v) => Some(v.clone()),
                Operand::Path(steps) => evaluate(steps, item).first().map(|v| (*v).clone()),
            }
        };
        let Some(left) = value(&self.left) else { return false };
        let Some((op, right)) = &self.op else { return true };
        let Some(right) = value(right) else { return false };
        let ordering = match (&left, &right) {
            (Value::Number(a), Value::Number(b)) => {
                a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b))
            }
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => None,
        };
        match op.as_str() {
            "==" => ordering.map_or(left == right, |o| o.is_eq()),
            "!=" => ordering.map_or(left != right, |o| o.is_ne()),
            "<" => ordering.is_some_and(|o| o.is_lt()),
            "<=" => ordering.is_some_and(|o| o.is_le()),
            ">" => ordering.is_some_and(|o| o.is_gt()),
            _ => ordering.is_some_and(|o| o.is_ge()),
        }
    }
}
