//! apimachinery's `field.Path` as a stack of borrowed steps, rendered only when an error
//! needs it: `spec.template`, `spec.labels[app]`, `spec.items[2]`.

use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    Child(&'a str),
    Key(&'a str),
    Index(usize),
}

pub(crate) struct FieldPath<'a> {
    /// The path the steps are under (`None`: the root of the object).
    prefix: Option<&'a str>,
    steps: Vec<Step<'a>>,
}

impl<'a> FieldPath<'a> {
    pub(crate) fn new(prefix: Option<&'a str>) -> Self {
        FieldPath { prefix, steps: Vec::new() }
    }

    pub(crate) fn push(&mut self, s: Step<'a>) {
        self.steps.push(s);
    }

    pub(crate) fn pop(&mut self) {
        self.steps.pop();
    }

    /// The path, with `last` appended when given.
    pub(crate) fn render(&self, last: Option<Step<'_>>) -> String {
        let mut s = self.prefix.unwrap_or("").to_string();
        for step in self.steps.iter().copied().chain(last) {
            match step {
                Step::Child(c) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(c);
                }
                Step::Key(k) => {
                    let _ = write!(s, "[{k}]");
                }
                Step::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }

    pub(crate) fn child(&self, name: &str) -> String {
        self.render(Some(Step::Child(name)))
    }

    pub(crate) fn index(&self, i: usize) -> String {
        self.render(Some(Step::Index(i)))
    }
}
