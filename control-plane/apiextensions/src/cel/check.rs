//! What kube's CEL type checker and static cost estimator say about a rule, approximated
//! over the parsed expression (the `cel` crate has neither).
//!
//! Types: `self`/`oldSelf` are typed by the node's schema ([`Decl`]), literals by their
//! value, and a few dozen functions and operators by their result; anything else is `dyn`,
//! which is never an error. The checks kept are the ones kube users meet: a field the schema
//! does not declare (`undefined field 'x'`), an operator over two plain types it has no
//! overload for (`found no matching overload for '_==_' applied to '(int, string)'`), and a
//! rule that cannot be a bool.
//!
//! Cost, as cel-go's `EstimateCost` with kube's size estimator counts it, in outline: one
//! per variable, field read and call; string operations a tenth per byte they scan (sizes
//! from `maxLength`, else the request size); list and map functions one per element; a
//! comprehension its range's size times its body (sizes from `maxItems`/`maxProperties`,
//! else as many of the smallest item as fit in a request). It is a worst case, not a
//! measure: the point is to tell bounded rules from ones that are not, as kube does.

use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use super::decl::{Decl, Kind, MAX_REQUEST_SIZE};

/// A static type, with the largest size a value may have where that matters to cost.
#[derive(Debug, Clone)]
pub(crate) enum Ty {
    /// Unknown until run time: `x-kubernetes-int-or-string`, most library results.
    Dyn(u64),
    Bool,
    Int,
    Uint,
    Double,
    Null,
    Type,
    String(u64),
    Bytes(u64),
    Duration,
    Timestamp,
    List(Box<Ty>, u64),
    Map(Box<Ty>, Box<Ty>, u64),
    /// A schema object: its fields are known.
    Object(Arc<Decl>),
    Optional(Box<Ty>),
}

impl Ty {
    /// The type of a value of schema type `decl`.
    pub(crate) fn of(decl: &Arc<Decl>) -> Ty {
        let max = decl.max_elements;
        match &decl.kind {
            Kind::Object { .. } => Ty::Object(decl.clone()),
            // kube's map keys are strings without a size estimate.
            Kind::Map { values } => Ty::Map(Box::new(Ty::String(0)), Box::new(Ty::of(values)), max),
            Kind::List { items } => Ty::List(Box::new(Ty::of(items)), max),
            Kind::String => Ty::String(max),
            Kind::Bytes => Ty::Bytes(max),
            Kind::Duration => Ty::Duration,
            Kind::Timestamp { .. } => Ty::Timestamp,
            Kind::Int => Ty::Int,
            Kind::Double => Ty::Double,
            Kind::Bool => Ty::Bool,
            Kind::IntOrString => Ty::Dyn(max),
        }
    }

    fn unknown() -> Ty {
        Ty::Dyn(MAX_REQUEST_SIZE)
    }

    fn is_dyn(&self) -> bool {
        matches!(self, Ty::Dyn(_))
    }

    /// The largest size a value may have: bytes of a string, elements of a list or map.
    fn size(&self) -> u64 {
        match self {
            Ty::Dyn(n) | Ty::String(n) | Ty::Bytes(n) | Ty::List(_, n) | Ty::Map(_, _, n) => *n,
            Ty::Object(decl) => match &decl.kind {
                Kind::Object { fields } => fields.len() as u64,
                _ => 0,
            },
            _ => 1,
        }
    }

    /// The name cel-go prints, for plain types (others are not reported).
    fn plain_name(&self) -> Option<&'static str> {
        Some(match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String(_) => "string",
            Ty::Bytes(_) => "bytes",
            Ty::Duration => "google.protobuf.Duration",
            Ty::Timestamp => "google.protobuf.Timestamp",
            _ => return None,
        })
    }

    fn is_number(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn same_plain(&self, other: &Ty) -> bool {
        self.plain_name().is_some() && self.plain_name() == other.plain_name()
    }
}

/// A tenth per unit, rounded up: kube's `StringTraversalCostFactor`.
fn tenth(units: u64) -> u64 {
    units.div_ceil(10)
}

/// What checking one expression found.
pub(crate) struct Checked {
    pub ty: Ty,
    /// The estimated worst-case cost of one evaluation.
    pub cost: u64,
    pub uses_old_self: bool,
    /// (node id, cel-go's message) of each problem.
    pub issues: Vec<(u64, String)>,
}

/// Checks `expr` with `self` of type `self_ty` and `oldSelf` of type `old_self_ty`.
pub(crate) fn check(expr: &IdedExpr, self_ty: &Ty, old_self_ty: &Ty) -> Checked {
    let mut checker = Checker {
        self_ty,
        old_self_ty,
        scope: Vec::new(),
        issues: Vec::new(),
        uses_old_self: false,
    };
    let (ty, cost) = checker.expr(expr);
    Checked { ty, cost, uses_old_self: checker.uses_old_self, issues: checker.issues }
}

struct Checker<'t> {
    self_ty: &'t Ty,
    old_self_ty: &'t Ty,
    /// Comprehension variables, innermost last.
    scope: Vec<(String, Ty)>,
    issues: Vec<(u64, String)>,
    uses_old_self: bool,
}

impl Checker<'_> {
    fn issue(&mut self, id: u64, message: String) {
        self.issues.push((id, message));
    }

    fn expr(&mut self, e: &IdedExpr) -> (Ty, u64) {
        match &e.expr {
            Expr::Literal(lit) => (literal(lit), 0),
            Expr::Ident(name) => (self.ident(name), 1),
            Expr::Select(select) => {
                let (operand, cost) = self.expr(&select.operand);
                let ty = self.select(e.id, &operand, &select.field);
                (if select.test { Ty::Bool } else { ty }, cost + 1)
            }
            Expr::Call(call) => {
                self.call(e.id, &call.func_name, call.target.as_deref(), &call.args)
            }
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(list) => {
                let mut cost = 10u64;
                let mut elem: Option<Ty> = None;
                for item in &list.elements {
                    let (ty, c) = self.expr(item);
                    cost = cost.saturating_add(c);
                    elem = Some(match elem {
                        None => ty,
                        Some(prev) if same_kind(&prev, &ty) => max_size(prev, ty),
                        Some(_) => Ty::unknown(),
                    });
                }
                let n = list.elements.len() as u64;
                (Ty::List(Box::new(elem.unwrap_or_else(Ty::unknown)), n), cost)
            }
            Expr::Map(map) => {
                let mut cost = 30u64;
                let mut types: Option<(Ty, Ty)> = None;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        let (k, ck) = self.expr(&m.key);
                        let (v, cv) = self.expr(&m.value);
                        cost = cost.saturating_add(ck).saturating_add(cv);
                        types = Some(match types {
                            None => (k, v),
                            Some((pk, pv)) => (
                                if same_kind(&pk, &k) { pk } else { Ty::unknown() },
                                if same_kind(&pv, &v) { pv } else { Ty::unknown() },
                            ),
                        });
                    }
                }
                let n = map.entries.len() as u64;
                let (k, v) = types.unwrap_or_else(|| (Ty::unknown(), Ty::unknown()));
                (Ty::Map(Box::new(k), Box::new(v), n), cost)
            }
            Expr::Struct(s) => {
                let mut cost = 40u64;
                for entry in &s.entries {
                    let value = match &entry.expr {
                        EntryExpr::StructField(f) => &f.value,
                        EntryExpr::MapEntry(m) => &m.value,
                    };
                    cost = cost.saturating_add(self.expr(value).1);
                }
                (Ty::unknown(), cost)
            }
            Expr::Unspecified => (Ty::unknown(), 0),
        }
    }

    fn ident(&mut self, name: &str) -> Ty {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return ty.clone();
        }
        match name {
            "self" => self.self_ty.clone(),
            "oldSelf" => {
                self.uses_old_self = true;
                self.old_self_ty.clone()
            }
            "int" | "uint" | "double" | "string" | "bytes" | "bool" | "list" | "map"
            | "null_type" | "type" | "dyn" => Ty::Type,
            _ => Ty::unknown(),
        }
    }

    fn select(&mut self, id: u64, operand: &Ty, field: &str) -> Ty {
        match operand {
            Ty::Object(decl) => match decl.field(field) {
                Some(f) => Ty::of(&f.decl),
                None => {
                    self.issue(id, format!("undefined field '{field}'"));
                    Ty::unknown()
                }
            },
            Ty::Map(_, values, _) => (**values).clone(),
            Ty::Optional(inner) => Ty::Optional(Box::new(self.select(id, inner, field))),
            _ => Ty::unknown(),
        }
    }

    fn comprehension(&mut self, c: &cel::common::ast::ComprehensionExpr) -> (Ty, u64) {
        let (range, range_cost) = self.expr(&c.iter_range);
        let (elem, iterations) = match &range {
            Ty::List(elem, n) => ((**elem).clone(), *n),
            Ty::Map(key, _, n) => ((**key).clone(), *n),
            Ty::Object(_) => (Ty::unknown(), range.size()),
            other => (Ty::unknown(), other.size().max(1)),
        };
        let (init, init_cost) = self.expr(&c.accu_init);
        let vars = self.scope.len();
        self.scope.push((c.iter_var.clone(), elem));
        if let Some(var2) = &c.iter_var2 {
            self.scope.push((var2.clone(), Ty::unknown()));
        }
        self.scope.push((c.accu_var.clone(), init.clone()));
        let (_, cond_cost) = self.expr(&c.loop_cond);
        let (step, step_cost) = self.expr(&c.loop_step);
        // `map` and `filter` start from `[]` and append: the result is a list of what the
        // step appends, as long as the range.
        let accu = match (&init, &step) {
            (Ty::List(_, 0), Ty::List(item, _)) => Ty::List(item.clone(), iterations),
            _ => init,
        };
        if let Some(last) = self.scope.last_mut() {
            last.1 = accu;
        }
        let (result, result_cost) = self.expr(&c.result);
        self.scope.truncate(vars);
        let per_step = cond_cost.saturating_add(step_cost);
        let cost = range_cost
            .saturating_add(init_cost)
            .saturating_add(iterations.saturating_mul(per_step))
            .saturating_add(result_cost);
        (result, cost)
    }

    fn call(
        &mut self,
        id: u64,
        function: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> (Ty, u64) {
        // Qualified functions (`optional.none()`, `sets.contains(...)`) have a namespace
        // target that is no value.
        let namespaced = target.is_some_and(|t| {
            matches!(&t.expr, Expr::Ident(n) if ["optional", "sets", "strings", "format", "ip", "cel", "jsonPatch"].contains(&n.as_str()) && !self.scope.iter().any(|(s, _)| s == n))
        });
        let (target_ty, target_cost) = match target {
            Some(t) if !namespaced => {
                let (ty, cost) = self.expr(t);
                (Some(ty), cost)
            }
            _ => (None, 0),
        };
        let mut arg_tys = Vec::with_capacity(args.len());
        let mut cost = target_cost;
        for a in args {
            let (ty, c) = self.expr(a);
            cost = cost.saturating_add(c);
            arg_tys.push(ty);
        }
        let (ty, own) = self.function(id, function, target_ty.as_ref(), &arg_tys);
        (ty, cost.saturating_add(own))
    }

    /// The result type and own cost of `function` over typed arguments.
    fn function(&mut self, id: u64, function: &str, target: Option<&Ty>, args: &[Ty]) -> (Ty, u64) {
        let arg = |i: usize| args.get(i).cloned().unwrap_or_else(Ty::unknown);
        let size = |t: Option<&Ty>| t.map_or(MAX_REQUEST_SIZE, Ty::size);
        match (function, target) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None) => (Ty::Bool, 0),
            (operators::NOT_STRICTLY_FALSE, None) => (Ty::Bool, 0),
            (operators::LOGICAL_NOT, None) => (Ty::Bool, 1),
            (operators::CONDITIONAL, None) => {
                let (a, b) = (arg(1), arg(2));
                (if same_kind(&a, &b) { max_size(a, b) } else { Ty::unknown() }, 0)
            }
            (operators::EQUALS | operators::NOT_EQUALS, None) => {
                let (a, b) = (arg(0), arg(1));
                if a.plain_name().is_some() && b.plain_name().is_some() && !a.same_plain(&b) {
                    self.no_overload(id, function, &a, &b);
                }
                let scanned = a.size().min(b.size());
                let own = match (&a, &b) {
                    (Ty::String(_) | Ty::Bytes(_), _) | (_, Ty::String(_) | Ty::Bytes(_)) => {
                        1 + tenth(scanned)
                    }
                    (Ty::List(..) | Ty::Map(..), _) | (_, Ty::List(..) | Ty::Map(..)) => {
                        1 + scanned
                    }
                    _ => 1,
                };
                (Ty::Bool, own)
            }
            (
                operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                None,
            ) => {
                let (a, b) = (arg(0), arg(1));
                let comparable = (a.is_number() && b.is_number()) || a.same_plain(&b);
                if a.plain_name().is_some() && b.plain_name().is_some() && !comparable {
                    self.no_overload(id, function, &a, &b);
                }
                let own = match (&a, &b) {
                    (Ty::String(x) | Ty::Bytes(x), Ty::String(y) | Ty::Bytes(y)) => {
                        1 + tenth((*x).min(*y))
                    }
                    _ => 1,
                };
                (Ty::Bool, own)
            }
            (operators::ADD, None) => {
                let (a, b) = (arg(0), arg(1));
                let ty = match (&a, &b) {
                    (Ty::String(x), Ty::String(y)) => Ty::String(x.saturating_add(*y)),
                    (Ty::Bytes(x), Ty::Bytes(y)) => Ty::Bytes(x.saturating_add(*y)),
                    (Ty::List(e, x), Ty::List(f, y)) => {
                        let elem = if e.is_dyn() {
                            (**f).clone()
                        } else if same_kind(e, f) {
                            max_size((**e).clone(), (**f).clone())
                        } else {
                            Ty::unknown()
                        };
                        Ty::List(Box::new(elem), x.saturating_add(*y))
                    }
                    (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Ty::Timestamp,
                    (x, y)
                        if x.same_plain(y)
                            && matches!(x, Ty::Int | Ty::Uint | Ty::Double | Ty::Duration) =>
                    {
                        x.clone()
                    }
                    (x, y) => {
                        if x.plain_name().is_some() && y.plain_name().is_some() {
                            self.no_overload(id, function, x, y);
                        }
                        Ty::unknown()
                    }
                };
                let own = match &ty {
                    Ty::String(n) | Ty::Bytes(n) => 1 + tenth(*n),
                    Ty::List(_, n) => 1 + *n,
                    _ => 1,
                };
                (ty, own)
            }
            (
                operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO,
                None,
            ) => {
                let (a, b) = (arg(0), arg(1));
                let ty = match (&a, &b) {
                    (Ty::Timestamp, Ty::Timestamp) if function == operators::SUBSTRACT => {
                        Ty::Duration
                    }
                    (Ty::Timestamp, Ty::Duration) if function == operators::SUBSTRACT => {
                        Ty::Timestamp
                    }
                    (Ty::Duration, Ty::Duration) if function == operators::SUBSTRACT => {
                        Ty::Duration
                    }
                    (x, y)
                        if x.is_number()
                            && x.same_plain(y)
                            && !(function == operators::MODULO && matches!(x, Ty::Double)) =>
                    {
                        x.clone()
                    }
                    (x, y) => {
                        if x.plain_name().is_some() && y.plain_name().is_some() {
                            self.no_overload(id, function, x, y);
                        }
                        Ty::unknown()
                    }
                };
                (ty, 1)
            }
            (operators::NEGATE, None) => (arg(0), 1),
            (operators::INDEX, None) => {
                let ty = match arg(0) {
                    Ty::List(elem, _) => *elem,
                    Ty::Map(_, values, _) => *values,
                    Ty::Optional(inner) => Ty::Optional(Box::new(index_of(&inner))),
                    _ => Ty::unknown(),
                };
                (ty, 1)
            }
            (operators::OPT_INDEX, None) => (Ty::Optional(Box::new(index_of(&arg(0)))), 1),
            (operators::OPT_SELECT, None) => (Ty::Optional(Box::new(Ty::unknown())), 1),
            (operators::IN, None) => {
                let own = match arg(1) {
                    Ty::List(elem, n) => {
                        let per = match *elem {
                            Ty::String(m) | Ty::Bytes(m) => 1 + tenth(m.min(arg(0).size())),
                            _ => 1,
                        };
                        1 + n.saturating_mul(per)
                    }
                    _ => 1,
                };
                (Ty::Bool, own)
            }
            ("size", _) => (Ty::Int, 1),
            ("contains", Some(t)) => (Ty::Bool, 1 + tenth(t.size().saturating_mul(arg(0).size()))),
            ("startsWith" | "endsWith", Some(_)) => (Ty::Bool, 1 + tenth(arg(0).size())),
            ("matches", _) => {
                let subject = target.map_or_else(|| arg(0).size(), Ty::size);
                let pattern = if target.is_some() { arg(0) } else { arg(1) };
                (Ty::Bool, 1 + tenth(subject).saturating_mul(pattern.size().div_ceil(4).max(1)))
            }
            ("lowerAscii" | "upperAscii" | "trim" | "reverse", Some(t)) => {
                (Ty::String(t.size()), 1 + tenth(t.size()))
            }
            ("substring" | "charAt", Some(t)) => (Ty::String(t.size()), 1 + tenth(t.size())),
            ("replace", Some(t)) => (Ty::String(t.size()), 1 + tenth(2 * t.size())),
            ("split", Some(t)) => {
                (Ty::List(Box::new(Ty::String(t.size())), t.size()), 1 + tenth(2 * t.size()))
            }
            ("join", Some(t)) => {
                let elem = match t {
                    Ty::List(e, _) => e.size(),
                    _ => MAX_REQUEST_SIZE,
                };
                let n = t.size().saturating_mul(elem);
                (Ty::String(n), 1 + tenth(n))
            }
            ("find", Some(t)) => (Ty::String(t.size()), 1 + tenth(t.size())),
            ("findAll", Some(t)) => {
                (Ty::List(Box::new(Ty::String(t.size())), t.size()), 1 + tenth(t.size()))
            }
            ("format", Some(_)) => (Ty::String(MAX_REQUEST_SIZE), 1 + tenth(size(target))),
            ("indexOf" | "lastIndexOf", Some(t)) => (Ty::Int, 1 + list_scan(t)),
            ("isSorted", Some(t)) => (Ty::Bool, 1 + list_scan(t)),
            ("sum" | "min" | "max", Some(t)) => {
                let ty = match t {
                    Ty::List(e, _) => (**e).clone(),
                    _ => Ty::unknown(),
                };
                (ty, 1 + list_scan(t))
            }
            ("int", None) => (Ty::Int, 1),
            ("uint", None) => (Ty::Uint, 1),
            ("double", None) => (Ty::Double, 1),
            ("string", None) => (Ty::String(arg(0).size().max(20)), 1 + tenth(arg(0).size())),
            ("bytes", None) => (Ty::Bytes(arg(0).size()), 1 + tenth(arg(0).size())),
            ("bool", None) => (Ty::Bool, 1),
            ("duration", None) => (Ty::Duration, 1),
            ("timestamp", None) => (Ty::Timestamp, 1),
            ("type", None) => (Ty::Type, 1),
            ("dyn", None) => (Ty::Dyn(arg(0).size()), 0),
            ("hasValue", Some(_)) => (Ty::Bool, 1),
            ("value", Some(Ty::Optional(inner))) => ((**inner).clone(), 1),
            ("orValue", Some(Ty::Optional(inner))) => ((**inner).clone(), 1),
            ("or", Some(t @ Ty::Optional(_))) => (t.clone(), 1),
            ("of" | "ofNonZeroValue", None) => (Ty::Optional(Box::new(arg(0))), 1),
            ("none", None) => (Ty::Optional(Box::new(Ty::unknown())), 1),
            (
                "isURL"
                | "isQuantity"
                | "isIP"
                | "isCIDR"
                | "isInteger"
                | "isLessThan"
                | "isGreaterThan"
                | "isCanonical"
                | "isLoopback"
                | "isUnspecified"
                | "isLinkLocalMulticast"
                | "isLinkLocalUnicast"
                | "isGlobalUnicast"
                | "containsIP"
                | "containsCIDR",
                _,
            ) => (Ty::Bool, 1 + tenth(arg(0).size().min(MAX_REQUEST_SIZE))),
            (
                "getDate" | "getDayOfMonth" | "getDayOfWeek" | "getDayOfYear" | "getFullYear"
                | "getHours" | "getMilliseconds" | "getMinutes" | "getMonth" | "getSeconds"
                | "sign" | "asInteger" | "compareTo" | "family" | "prefixLength",
                _,
            ) => (Ty::Int, 1),
            ("asApproximateFloat", _) => (Ty::Double, 1),
            _ => (Ty::unknown(), 1),
        }
    }

    fn no_overload(&mut self, id: u64, function: &str, a: &Ty, b: &Ty) {
        let (Some(x), Some(y)) = (a.plain_name(), b.plain_name()) else { return };
        self.issue(
            id,
            format!("found no matching overload for '{function}' applied to '({x}, {y})'"),
        );
    }
}

fn index_of(t: &Ty) -> Ty {
    match t {
        Ty::List(elem, _) => (**elem).clone(),
        Ty::Map(_, values, _) => (**values).clone(),
        _ => Ty::unknown(),
    }
}

/// The cost of going over a list once, comparing each element (strings by their bytes).
fn list_scan(t: &Ty) -> u64 {
    match t {
        Ty::List(elem, n) => {
            let per = match **elem {
                Ty::String(m) | Ty::Bytes(m) => 1 + tenth(m),
                _ => 1,
            };
            n.saturating_mul(per)
        }
        other => tenth(other.size()),
    }
}

fn same_kind(a: &Ty, b: &Ty) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The larger of two types of the same kind.
fn max_size(a: Ty, b: Ty) -> Ty {
    if b.size() > a.size() { b } else { a }
}

fn literal(lit: &LiteralValue) -> Ty {
    match lit {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(b) => Ty::Bytes(b.inner().len() as u64),
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(s) => Ty::String(s.inner().len() as u64),
        LiteralValue::UInt(_) => Ty::Uint,
    }
}
