//! Runtime cost, as cel-go's `interpreter.CostTracker` and kube's `library.CostEstimator`
//! approximate it: one unit per variable or field read and per function call, plus the size
//! of what string and list functions scan or build (strings at 0.1 per byte, lists and maps
//! at one per element: kube's `common.StringTraversalCostFactor` and list traversal costs).
//!
//! The `cel` crate's interpreter has no hook for this, so [`instrument`] rewrites a compiled
//! expression. What does not depend on the data is counted when compiling: the expression's
//! own reads and calls are charged once, a comprehension's step's at each step
//! (`@cost(step, n)`). What does is charged as it runs: arguments of functions that scan their
//! input become `@scan(a)`, and so do results of functions that build strings or lists.
//! Those are identity functions that charge the thread's [`Meter`]; past its limit they fail,
//! and keep failing, so the evaluation stops (a comprehension at its next step) however deep
//! it is nested. Library functions charge for their own work (regexes, authorization checks).

use std::cell::RefCell;

use cel::common::ast::LiteralValue;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, operators};
use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelString, DYN_TYPE, INT_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// The text cel-go cancels an evaluation with.
pub(crate) const COST_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

struct Frame {
    used: u64,
    limit: u64,
    exceeded: bool,
}

thread_local! {
    /// One frame per evaluation running on this thread, innermost last: a named variable
    /// evaluated in the middle of an expression gets a frame of its own.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The cost meter of one evaluation on this thread, from [`Meter::start`] to
/// [`Meter::finish`] (or drop).
pub(crate) struct Meter {
    depth: usize,
    done: bool,
}

impl Meter {
    pub(crate) fn start(limit: u64) -> Meter {
        let depth = FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            frames.push(Frame { used: 0, limit, exceeded: false });
            frames.len()
        });
        Meter { depth, done: false }
    }

    /// What the evaluation cost, and whether it went over its limit.
    pub(crate) fn finish(mut self) -> (u64, bool) {
        self.done = true;
        self.pop()
    }

    fn pop(&self) -> (u64, bool) {
        FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            frames.truncate(self.depth);
            frames.pop().map_or((0, false), |fr| (fr.used, fr.exceeded))
        })
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.done {
            self.pop();
        }
    }
}

/// Charges `units` to the running evaluation; an error once it is over its limit. Outside an
/// evaluation (a library function called directly) it charges nothing.
pub(crate) fn charge(units: u64) -> Result<(), ExecutionError> {
    FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        let Some(frame) = frames.last_mut() else { return Ok(()) };
        frame.used = frame.used.saturating_add(units);
        if frame.exceeded || frame.used > frame.limit {
            frame.exceeded = true;
            return Err(ExecutionError::function_error("cost", COST_EXCEEDED));
        }
        Ok(())
    })
}

/// kube's string traversal factor: a tenth of a unit per byte, rounded up.
pub(crate) fn string_cost(len: usize) -> u64 {
    (len as u64).div_ceil(10)
}

/// What it costs to go over a value once: its bytes for a string, its elements for a list
/// or map; nothing for a scalar.
pub(crate) fn traversal(v: &dyn Val) -> u64 {
    if let Some(s) = v.downcast_ref::<CelString>() {
        return string_cost(s.inner().len());
    }
    if let Some(b) = v.downcast_ref::<CelBytes>() {
        return string_cost(b.inner().len());
    }
    if let Some(l) = v.downcast_ref::<CelList>() {
        return l.inner().len() as u64;
    }
    if let Some(m) = v.downcast_ref::<CelMap>() {
        return m.inner().len() as u64;
    }
    0
}

fn first<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    args.into_iter().next().ok_or_else(ExecutionError::missing_argument_or_target)
}

fn cost_call<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    charge(1)?;
    first(args)
}

/// `@cost(value, n)`: a comprehension step, charged `n` (the variables and fields its body
/// reads, which cel-go charges one each).
fn cost_weighted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let weight = args
        .get(1)
        .and_then(|w| w.downcast_ref::<CelInt>())
        .map_or(1, |w| (*w.inner()).max(1) as u64);
    charge(weight)?;
    first(args)
}

fn scan_call<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = first(args)?;
    charge(traversal(v.as_ref()))?;
    Ok(v)
}

const COST: &str = "@cost";
const SCAN: &str = "@scan";

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(COST, "cost_dyn", vec![DYN_TYPE], cost_call)?;
    env.add_overload(COST, "cost_dyn_int", vec![DYN_TYPE, INT_TYPE], cost_weighted)?;
    env.add_overload(SCAN, "scan_dyn", vec![DYN_TYPE], scan_call)?;
    Ok(())
}

/// Functions whose cost grows with the size of their receiver and arguments.
const SCANS_INPUT: &[&str] = &[
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::IN,
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "indexOf",
    "lastIndexOf",
    "isSorted",
    "sum",
    "min",
    "max",
    "url",
    "isURL",
    "validate",
    "quantity",
    "isQuantity",
];

/// Functions whose result is as large as what they read or more.
const BUILDS_OUTPUT: &[&str] = &[
    operators::ADD,
    "split",
    "replace",
    "join",
    "lowerAscii",
    "upperAscii",
    "format",
    "string",
    "substring",
    "quote",
    "reverse",
    "trim",
    "getQuery",
];

/// Operators the interpreter evaluates itself, which cel-go does not charge for.
const FREE: &[&str] = &[
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::CONDITIONAL,
    operators::NOT_STRICTLY_FALSE,
    COST,
    SCAN,
];

/// Roots of qualified function names (`optional.of`): a call's target that spells one must
/// stay a plain name for the interpreter to resolve the function.
const FUNCTION_NAMESPACES: &[&str] =
    &["optional", "format", "strings", "sets", "ip", "cel", "jsonPatch"];

fn node(expr: Expr) -> IdedExpr {
    IdedExpr { id: 0, expr }
}

fn wrap(function: &str, e: IdedExpr) -> IdedExpr {
    node(Expr::Call(CallExpr { func_name: function.to_string(), target: None, args: vec![e] }))
}

/// `e`, charging `weight` each time it is evaluated.
fn charged(e: IdedExpr, weight: u64) -> IdedExpr {
    let weight =
        IdedExpr { id: 0, expr: Expr::Literal(LiteralValue::Int(CelInt::from(weight as i64))) };
    node(Expr::Call(CallExpr { func_name: COST.to_string(), target: None, args: vec![e, weight] }))
}

fn is_namespace(e: &IdedExpr) -> bool {
    let mut e = e;
    loop {
        match &e.expr {
            Expr::Ident(name) => return FUNCTION_NAMESPACES.contains(&name.as_str()),
            Expr::Select(s) if !s.test => e = &s.operand,
            _ => return false,
        }
    }
}

/// What `e` costs each time it runs, as cel-go counts it, without the data-dependent parts
/// (charged at run time) and without the steps of comprehensions (charged per step): one
/// per variable or field read and per function call.
fn static_cost(e: &IdedExpr) -> u64 {
    match &e.expr {
        Expr::Ident(_) => 1,
        Expr::Select(s) => 1 + static_cost(&s.operand),
        Expr::Call(c) => {
            let own = u64::from(!FREE.contains(&c.func_name.as_str()));
            let target = match &c.target {
                Some(t) if !is_namespace(t) => static_cost(t),
                _ => 0,
            };
            own + target + c.args.iter().map(static_cost).sum::<u64>()
        }
        Expr::List(l) => l.elements.iter().map(static_cost).sum(),
        Expr::Map(m) => m.entries.iter().map(|entry| entry_cost(&entry.expr)).sum(),
        Expr::Struct(s) => s.entries.iter().map(|entry| entry_cost(&entry.expr)).sum(),
        Expr::Comprehension(c) => {
            static_cost(&c.iter_range) + static_cost(&c.accu_init) + static_cost(&c.result)
        }
        _ => 0,
    }
}

fn entry_cost(entry: &EntryExpr) -> u64 {
    match entry {
        EntryExpr::MapEntry(e) => static_cost(&e.key) + static_cost(&e.value),
        EntryExpr::StructField(f) => static_cost(&f.value),
    }
}

/// Rewrites `expr` to charge the meter as it runs: its static cost once, each
/// comprehension step's as it runs, and the size of what scanning and building functions
/// handle.
pub(crate) fn instrument(expr: IdedExpr) -> IdedExpr {
    let weight = 1 + static_cost(&expr);
    charged(rewrite(expr), weight)
}

fn rewrite(expr: IdedExpr) -> IdedExpr {
    let id = expr.id;
    let rewritten = match expr.expr {
        Expr::Call(call) => return rewrite_call(id, call),
        Expr::Comprehension(c) => Expr::Comprehension(Box::new(rewrite_comprehension(*c))),
        Expr::Select(mut s) => {
            s.operand = Box::new(rewrite(*s.operand));
            Expr::Select(s)
        }
        Expr::List(mut l) => {
            l.elements = l.elements.into_iter().map(rewrite).collect();
            Expr::List(l)
        }
        Expr::Map(mut m) => {
            for entry in &mut m.entries {
                rewrite_entry(&mut entry.expr);
            }
            Expr::Map(m)
        }
        Expr::Struct(mut s) => {
            for entry in &mut s.entries {
                rewrite_entry(&mut entry.expr);
            }
            Expr::Struct(s)
        }
        other => other,
    };
    IdedExpr { id, expr: rewritten }
}

fn rewrite_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::MapEntry(e) => {
            e.key = rewrite(std::mem::take(&mut e.key));
            e.value = rewrite(std::mem::take(&mut e.value));
        }
        EntryExpr::StructField(f) => f.value = rewrite(std::mem::take(&mut f.value)),
    }
}

fn rewrite_call(id: u64, call: CallExpr) -> IdedExpr {
    let scans = SCANS_INPUT.contains(&call.func_name.as_str());
    let builds = BUILDS_OUTPUT.contains(&call.func_name.as_str());
    let prepare = |e: IdedExpr| {
        let e = rewrite(e);
        if scans && !matches!(e.expr, Expr::Literal(_)) { wrap(SCAN, e) } else { e }
    };
    let target = call.target.map(|t| if is_namespace(&t) { t } else { Box::new(prepare(*t)) });
    let args = call.args.into_iter().map(prepare).collect();
    let call =
        IdedExpr { id, expr: Expr::Call(CallExpr { func_name: call.func_name, target, args }) };
    if builds { wrap(SCAN, call) } else { call }
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

/// `accu + [items]`: the step of `map` and `filter`, which the interpreter runs in place
/// and must keep its shape. Each item is charged its size (the list grows by it) and
/// `weight`.
fn append_items(step: &mut IdedExpr, accu: &str, weight: u64) -> bool {
    let Expr::Call(call) = &mut step.expr else { return false };
    if call.func_name != operators::ADD
        || call.target.is_some()
        || call.args.len() != 2
        || !is_ident(&call.args[0], accu)
    {
        return false;
    }
    let Expr::List(list) = &mut call.args[1].expr else { return false };
    for element in &mut list.elements {
        let item = rewrite(std::mem::take(element));
        *element = wrap(SCAN, if weight > 0 { charged(item, weight) } else { item });
    }
    true
}

fn rewrite_comprehension(mut c: ComprehensionExpr) -> ComprehensionExpr {
    let weight = 1 + static_cost(&c.loop_cond) + static_cost(&c.loop_step);
    c.iter_range = rewrite(c.iter_range);
    c.accu_init = rewrite(c.accu_init);
    c.result = rewrite(c.result);
    let accu = c.accu_var.clone();
    let literal_cond = matches!(c.loop_cond.expr, Expr::Literal(_));

    // `map`/`filter`: charge each appended item (and each filter test), keeping the step.
    if literal_cond && is_ident(&c.result, &accu) {
        if append_items(&mut c.loop_step, &accu, weight) {
            return c;
        }
        if let Expr::Call(call) = &mut c.loop_step.expr
            && call.func_name == operators::CONDITIONAL
            && call.args.len() == 3
            && is_ident(&call.args[2], &accu)
        {
            let guard = std::mem::take(&mut call.args[0]);
            call.args[0] = charged(rewrite(guard), weight);
            if !append_items(&mut call.args[1], &accu, 0) {
                call.args[1] = rewrite(std::mem::take(&mut call.args[1]));
            }
            return c;
        }
    }

    // `all`/`exists`: the step folds the accumulator with `&&`/`||`, which the interpreter
    // recognises to defer errors; charge the loop condition (or the predicate) instead.
    if let Expr::Call(call) = &mut c.loop_step.expr
        && (call.func_name == operators::LOGICAL_AND || call.func_name == operators::LOGICAL_OR)
        && call.args.len() == 2
        && is_ident(&call.args[0], &accu)
    {
        let predicate = rewrite(std::mem::take(&mut call.args[1]));
        if literal_cond {
            call.args[1] = charged(predicate, weight);
        } else {
            call.args[1] = predicate;
            c.loop_cond = charged(rewrite(c.loop_cond), weight);
        }
        return c;
    }

    c.loop_cond = rewrite(c.loop_cond);
    c.loop_step = charged(rewrite(c.loop_step), weight);
    c
}
