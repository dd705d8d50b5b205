//! CEL as kube-apiserver evaluates it for admission (`k8s.io/apiserver/pkg/cel`,
//! `pkg/admission/plugin/cel`): the base environment of `environment/base.go` (the standard
//! library, optionals, the `ext` strings and sets libraries and Kubernetes' own libraries:
//! lists, regex, URLs, quantities, IP and CIDR, named formats, the authorizer), the admission
//! variables (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`,
//! `authorizer`), kube's error texts, and runtime cost limits.
//!
//! Expressions run on the `cel` crate's interpreter. It has no cost tracking, so [`cost`]
//! rewrites each compiled expression to charge a per-evaluation meter at every call and every
//! comprehension step, and the libraries here charge for the work they do on strings and
//! lists; a meter past its limit makes every later charge fail, which stops evaluation with
//! kube's `operation cancelled: actual cost limit exceeded`.

mod authz;
mod cost;
mod format;
mod library;
mod net;
mod quantity;
mod url;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull,
    CelOptional, CelString, CelTimestamp, CelUInt, Type,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError};
use serde_json::Value;

pub use authz::{Authorizer, AuthzCheck};
pub use format::{dns1035_label, dns1123_label, dns1123_subdomain};
pub(crate) use library::TYPE_TAG;

/// kube's `celconfig.PerCallLimit`: what one expression may cost.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's `celconfig.RuntimeCELCostBudget`: what all the expressions of one policy binding
/// may cost together for one request.
pub const RUNTIME_COST_BUDGET: u64 = 10_000_000;

/// The admission variables an expression may name (`cel.ObjectVarName` and friends).
pub const ADMISSION_VARIABLES: [&str; 8] = [
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
    "authorizer",
    "authorizer.requestResource",
];

/// Why an expression does not compile. The text is kube's `CompilationResult.Error`:
/// `compilation failed: ERROR: <input>:1:1: undeclared reference to 'x' (in container '')`
/// followed by the source line and a caret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The expression does not parse.
    #[error("compilation failed: {0}")]
    Syntax(String),
    /// It names a variable, field of `variables` or function the environment lacks, or
    /// fails the caller's check ([`compile_checked`]).
    #[error("compilation failed: {0}")]
    Undeclared(String),
}

/// Why an evaluation failed. [`EvalError::CostExceeded`] and [`EvalError::BudgetExhausted`]
/// are kube's two cost errors: the first fails one expression, the second every expression
/// of the binding still to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression went over the per-call limit.
    #[error("operation cancelled: actual cost limit exceeded")]
    CostExceeded { limit: u64 },
    /// The binding's shared budget ran out.
    #[error(
        "validation failed due to running out of cost budget, no further validation rules will be run"
    )]
    BudgetExhausted,
    /// A runtime error, as cel-go words it (`no such key: x`, `division by zero`).
    #[error("{0}")]
    Runtime(String),
}

/// A compiled expression: the instrumented AST and the source it came from.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    expr: IdedExpr,
}

impl Program {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `activation`, charging `budget`. Named variables are evaluated at
    /// most once for this call; use a [`Session`] to share them (and the converted inputs)
    /// across several expressions.
    pub fn eval(
        &self,
        activation: &Activation<'_>,
        budget: &mut Budget,
    ) -> Result<Value, EvalError> {
        Session::new(*activation).eval(self, budget)
    }
}

/// Which names an expression may use: kube declares `params` only for policies with a
/// `paramKind`, the authorizer only where the API field offers it, and `variables.<name>`
/// only for variables the policy defines (earlier ones, for a variable).
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    names: BTreeSet<String>,
    variables: Option<BTreeSet<String>>,
}

impl Declarations {
    /// Every admission variable, any `variables.<name>`.
    pub fn admission() -> Self {
        Declarations {
            names: ADMISSION_VARIABLES.iter().map(|s| s.to_string()).collect(),
            variables: None,
        }
    }

    /// Only the given root names.
    pub fn of(names: &[&str]) -> Self {
        Declarations { names: names.iter().map(|s| s.to_string()).collect(), variables: None }
    }

    /// Restricts `variables.<name>` to these names.
    pub fn with_variables<'n>(mut self, names: impl IntoIterator<Item = &'n str>) -> Self {
        self.variables = Some(names.into_iter().map(str::to_string).collect());
        self
    }
}

/// Compiles `expr` for admission, with every admission variable declared.
pub fn compile(expr: &str) -> Result<Program, CompileError> {
    compile_with(expr, &Declarations::admission())
}

/// Compiles `expr`; names outside `decls`, unknown fields of `variables` and unknown
/// functions are compile errors, as kube's type checker reports them.
pub fn compile_with(expr: &str, decls: &Declarations) -> Result<Program, CompileError> {
    compile_checked(expr, decls, &mut |_| Vec::new())
}

/// Compiles `expr` as [`compile_with`] does, then hands the parsed expression to `check`
/// (a caller's own type checking, e.g. against a CRD's schema): each (node id, message) it
/// returns is a compile error at that node, in cel-go's words, the issues joined by newlines.
pub fn compile_checked(
    expr: &str,
    decls: &Declarations,
    check: &mut dyn FnMut(&IdedExpr) -> Vec<(u64, String)>,
) -> Result<Program, CompileError> {
    let env = environment();
    let parsed = env.compile(expr).map_err(|e| CompileError::Syntax(go_style(&e.to_string())))?;
    let ast = parsed.expression().clone();
    let source_info = parsed.source_info();
    let position =
        |id: u64| source_info.offset_for(id).map(|(start, _)| start as usize).unwrap_or(0);
    let mut scope = Vec::new();
    if let Some((id, message)) = check_references(&ast, decls, &mut scope) {
        return Err(CompileError::Undeclared(error_at(expr, position(id), &message)));
    }
    let issues = check(&ast);
    if !issues.is_empty() {
        let text: Vec<String> =
            issues.iter().map(|(id, message)| error_at(expr, position(*id), message)).collect();
        return Err(CompileError::Undeclared(text.join("\n")));
    }
    let ast = library::rewrite_literals(ast);
    Ok(Program { source: expr.to_string(), expr: cost::instrument(ast) })
}

/// The crate prints `\n| line`; cel-go prints `\n | line`.
fn go_style(message: &str) -> String {
    message.replace("\n| ", "\n | ")
}

/// cel-go's issue text: `ERROR: <input>:line:col: message`, the line and a caret.
pub(crate) fn error_at(source: &str, offset: usize, message: &str) -> String {
    let before = source.get(..offset).unwrap_or(source);
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count();
    let line = source[line_start..].lines().next().unwrap_or("");
    format!(
        "ERROR: <input>:{line_no}:{}: {message}\n | {line}\n | {}^",
        column + 1,
        ".".repeat(column)
    )
}

/// Names a call may use without a declaration: the standard library's functions and types.
const STANDARD_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "hasValue",
    "value",
    "or",
    "orValue",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
];

/// Identifiers that name types rather than variables.
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

fn known_function(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('@')
        || name.starts_with('!')
        || name.starts_with('-')
        || STANDARD_FUNCTIONS.contains(&name)
        || library::FUNCTIONS.contains(&name)
}

/// The first reference `decls` does not cover: (node id, cel-go's message).
fn check_references(
    expr: &IdedExpr,
    decls: &Declarations,
    scope: &mut Vec<String>,
) -> Option<(u64, String)> {
    let undeclared = |name: &str| format!("undeclared reference to '{name}' (in container '')");
    match &expr.expr {
        Expr::Ident(name) => {
            let ok = scope.iter().any(|s| s == name)
                || decls.names.contains(name)
                || TYPE_NAMES.contains(&name.as_str());
            (!ok).then(|| (expr.id, undeclared(name)))
        }
        Expr::Select(select) => {
            let Some(segments) = qualified(expr) else {
                return check_references(&select.operand, decls, scope);
            };
            let root = segments[0];
            if scope.iter().any(|s| s == root) {
                return None;
            }
            let declared =
                (1..=segments.len()).any(|n| decls.names.contains(&segments[..n].join(".")));
            if !declared {
                return Some((expr.id, undeclared(root)));
            }
            if let (Some(vars), "variables", Some(field)) =
                (&decls.variables, root, segments.get(1))
                && !vars.contains(*field)
            {
                return Some((expr.id, format!("undefined field '{field}'")));
            }
            None
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                if let Some(segments) = qualified(target) {
                    let name = format!("{}.{}", segments.join("."), call.func_name);
                    if library::FUNCTIONS.contains(&name.as_str())
                        || STANDARD_FUNCTIONS.contains(&name.as_str())
                    {
                        return call.args.iter().find_map(|a| check_references(a, decls, scope));
                    }
                }
                if let Some(found) = check_references(target, decls, scope) {
                    return Some(found);
                }
            }
            if !known_function(&call.func_name) {
                return Some((expr.id, undeclared(&call.func_name)));
            }
            call.args.iter().find_map(|a| check_references(a, decls, scope))
        }
        Expr::Comprehension(c) => {
            if let Some(found) = check_references(&c.iter_range, decls, scope)
                .or_else(|| check_references(&c.accu_init, decls, scope))
            {
                return Some(found);
            }
            let pushed = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
            let before = scope.len();
            scope.extend(pushed.into_iter().flatten().cloned());
            let found = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .find_map(|e| check_references(e, decls, scope));
            scope.truncate(before);
            found
        }
        Expr::List(list) => list.elements.iter().find_map(|e| check_references(e, decls, scope)),
        Expr::Map(map) => map.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => check_references(&e.key, decls, scope)
                .or_else(|| check_references(&e.value, decls, scope)),
            EntryExpr::StructField(f) => check_references(&f.value, decls, scope),
        }),
        Expr::Struct(s) => s.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => check_references(&e.value, decls, scope),
            EntryExpr::StructField(f) => check_references(&f.value, decls, scope),
        }),
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

/// `a.b.c` as its segments, when the expression is an identifier and field selections
/// (presence tests included: `has(a.b)` names `a.b`).
fn qualified(expr: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut e = expr;
    loop {
        match &e.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(s) => {
                segments.push(s.field.as_str());
                e = &s.operand;
            }
            _ => return None,
        }
    }
}

/// The environment every expression compiles and runs in, built once.
fn environment() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Registration only fails on a duplicate declaration, a bug caught by every test.
        if let Err(e) = library::register(&mut env) {
            panic!("CEL environment: {e}");
        }
        Arc::new(env)
    })
    .clone()
}

/// What an expression may use: the request's objects (as the api server holds them,
/// JSON), the policy's named variables and an authorizer.
#[derive(Clone, Copy)]
pub struct Activation<'a> {
    /// `null` when absent (a DELETE has no object).
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The AdmissionRequest as CEL sees it (kind, resource, operation, userInfo, …).
    pub request: &'a Value,
    pub params: Option<&'a Value>,
    pub namespace_object: Option<&'a Value>,
    /// `variables.<name>`: each evaluated on first use, at most once per [`Session`].
    pub variables: Option<&'a Variables>,
    /// `authorizer` and `authorizer.requestResource`; undeclared when `None`.
    pub authorizer: Option<&'a dyn Authorizer>,
}

impl<'a> Activation<'a> {
    /// An activation with only `request` set.
    pub fn new(request: &'a Value) -> Self {
        Activation {
            object: None,
            old_object: None,
            request,
            params: None,
            namespace_object: None,
            variables: None,
            authorizer: None,
        }
    }
}

/// A policy's `spec.variables`, compiled, in order.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    entries: Vec<(String, Result<Program, CompileError>)>,
}

impl Variables {
    pub fn new() -> Self {
        Variables::default()
    }

    pub fn push(&mut self, name: impl Into<String>, program: Result<Program, CompileError>) {
        self.entries.push((name.into(), program));
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The remaining cost a binding may spend (kube's `remainingBudget`); each expression is
/// also held to [`PER_CALL_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    remaining: u64,
}

impl Budget {
    /// A binding's budget, [`RUNTIME_COST_BUDGET`].
    pub fn per_binding() -> Self {
        Budget { remaining: RUNTIME_COST_BUDGET }
    }

    pub fn new(remaining: u64) -> Self {
        Budget { remaining }
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// One lazily evaluated `variables.<name>`.
struct VarSlot {
    in_progress: AtomicBool,
    value: OnceLock<Result<Cached, String>>,
}

/// A variable's value, kept for later expressions when it can be copied out of the
/// evaluation that made it (every value but a borrowed authorizer check).
enum Cached {
    Value(Box<dyn Val>),
    Uncacheable,
}

/// A variable's value for one access.
enum VarValue<'s> {
    Borrowed(&'s (dyn Val + 'static)),
    Owned(Box<dyn Val + 's>),
}

/// The variables of a CustomResourceDefinition validation rule, already CEL values: `self`,
/// the value at the rule's node (any value, not only an object), and `oldSelf`, the old
/// value at the same path (unbound when `None`; an optional for `optionalOldSelf` rules).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub self_value: &'a (dyn Val + 'a),
    pub old_self: Option<&'a (dyn Val + 'a)>,
}

/// Evaluations sharing one activation: inputs are converted to CEL values once, and each
/// named variable is evaluated at most once (kube evaluates them lazily per activation).
pub struct Session<'a> {
    activation: Activation<'a>,
    /// `self` and `oldSelf`, for a CRD validation rule.
    scope: Option<Scope<'a>>,
    inputs: [OnceLock<Box<dyn Val + 'a>>; 5],
    slots: Vec<VarSlot>,
    /// Cost of variables evaluated on behalf of the running expression, charged to the
    /// binding budget afterwards (kube's composition cost).
    variable_cost: AtomicU64,
}

const INPUT_NAMES: [&str; 5] = ["object", "oldObject", "request", "params", "namespaceObject"];

impl<'a> Session<'a> {
    pub fn new(activation: Activation<'a>) -> Self {
        let count = activation.variables.map_or(0, |v| v.entries.len());
        Session {
            activation,
            scope: None,
            inputs: Default::default(),
            slots: (0..count)
                .map(|_| VarSlot { in_progress: AtomicBool::new(false), value: OnceLock::new() })
                .collect(),
            variable_cost: AtomicU64::new(0),
        }
    }

    /// A session for CRD validation rules: `self` and `oldSelf` bound to `scope`, no
    /// admission variable (compile such rules with `Declarations::of(&["self", "oldSelf"])`).
    pub fn scoped(scope: Scope<'a>) -> Self {
        static NO_REQUEST: Value = Value::Null;
        let mut session = Session::new(Activation::new(&NO_REQUEST));
        session.scope = Some(scope);
        session
    }

    /// Evaluates `program`: held to [`PER_CALL_LIMIT`] and to what `budget` has left, whose
    /// remainder is reduced by what it cost (variables it evaluated included).
    pub fn eval(&self, program: &Program, budget: &mut Budget) -> Result<Value, EvalError> {
        let limit = PER_CALL_LIMIT.min(budget.remaining);
        self.variable_cost.store(0, Ordering::Relaxed);
        let ctx = self.context();
        let meter = cost::Meter::start(limit);
        let result = cel::Value::resolve_val(&program.expr, &ctx)
            .map_err(|e| runtime_message(&e))
            .and_then(|v| to_json(v.as_ref()));
        let (used, exceeded) = meter.finish();
        let spent = used.saturating_add(self.variable_cost.swap(0, Ordering::Relaxed));
        if exceeded {
            if limit < PER_CALL_LIMIT {
                budget.remaining = 0;
                return Err(EvalError::BudgetExhausted);
            }
            budget.remaining = budget.remaining.saturating_sub(used);
            return Err(EvalError::CostExceeded { limit });
        }
        if spent > budget.remaining {
            budget.remaining = 0;
            return Err(EvalError::BudgetExhausted);
        }
        budget.remaining -= spent;
        result.map_err(EvalError::Runtime)
    }

    fn context(&self) -> Context<'_, '_> {
        let mut ctx = Context::with_env(environment());
        ctx.set_variable_resolver(self);
        if let Some(vars) = self.activation.variables {
            ctx.add_variable_as_val(
                "variables",
                Box::new(LazyVariables { session: self, names: vars }),
            );
        } else {
            ctx.add_variable_from_value("variables", HashMap::<String, i64>::new());
        }
        if let Some(handle) = self.activation.authorizer {
            ctx.add_variable_as_val("authorizer", Box::new(authz::authorizer(handle)));
            ctx.add_variable_as_val(
                "authorizer.requestResource",
                Box::new(authz::request_resource(handle, self.activation.request)),
            );
        }
        ctx
    }

    /// `variables.<name>`, evaluated now if it was not yet.
    fn variable(&self, index: usize) -> Result<VarValue<'_>, String> {
        let (name, program) = match self.activation.variables.and_then(|v| v.entries.get(index)) {
            Some(entry) => entry,
            None => return Err("no such variable".to_string()),
        };
        let slot = &self.slots[index];
        if let Some(done) = slot.value.get() {
            return match done {
                Ok(Cached::Value(v)) => Ok(VarValue::Borrowed(v.as_ref())),
                Ok(Cached::Uncacheable) => {
                    self.evaluate_variable(name, program).map(|(v, _)| VarValue::Owned(v))
                }
                Err(e) => Err(e.clone()),
            };
        }
        if slot.in_progress.swap(true, Ordering::AcqRel) {
            return Err(format!("composited variable {name:?} refers to itself"));
        }
        let outcome = self.evaluate_variable(name, program);
        slot.in_progress.store(false, Ordering::Release);
        match outcome {
            Err(e) => {
                let _ = slot.value.set(Err(e.clone()));
                Err(e)
            }
            Ok((v, Some(copy))) => {
                let _ = slot.value.set(Ok(Cached::Value(copy)));
                Ok(VarValue::Owned(v))
            }
            Ok((v, None)) => {
                let _ = slot.value.set(Ok(Cached::Uncacheable));
                Ok(VarValue::Owned(v))
            }
        }
    }

    /// Runs a variable's program with a meter of its own; its cost goes to the binding.
    #[allow(clippy::type_complexity)]
    fn evaluate_variable(
        &self,
        name: &str,
        program: &Result<Program, CompileError>,
    ) -> Result<(Box<dyn Val + '_>, Option<Box<dyn Val>>), String> {
        let program = program
            .as_ref()
            .map_err(|e| format!("composited variable {name:?} fails to compile: {e}"))?;
        let ctx = self.context();
        let meter = cost::Meter::start(PER_CALL_LIMIT);
        let result = cel::Value::resolve_val(&program.expr, &ctx).map(CowVal::into_owned);
        let (used, exceeded) = meter.finish();
        self.variable_cost.fetch_add(used, Ordering::Relaxed);
        if exceeded {
            return Err(format!(
                "composited variable {name:?} fails to evaluate: {}",
                EvalError::CostExceeded { limit: PER_CALL_LIMIT }
            ));
        }
        let value = result.map_err(|e| {
            format!("composited variable {name:?} fails to evaluate: {}", runtime_message(&e))
        })?;
        let copy = to_static(value.as_ref());
        Ok((value, copy))
    }

    fn input(&self, index: usize) -> &(dyn Val + 'a) {
        let a = &self.activation;
        let json = match index {
            0 => a.object,
            1 => a.old_object,
            2 => Some(a.request),
            3 => a.params,
            _ => a.namespace_object,
        };
        self.inputs[index]
            .get_or_init(|| match json {
                Some(v) => from_json(v),
                None => Box::new(CelNull),
            })
            .as_ref()
    }
}

impl VariableResolver for Session<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if let Some(scope) = &self.scope {
            match variable {
                "self" => return Some(CowVal::Borrowed(scope.self_value)),
                "oldSelf" => return scope.old_self.map(CowVal::Borrowed),
                _ => {}
            }
        }
        let index = INPUT_NAMES.iter().position(|n| *n == variable)?;
        Some(CowVal::Borrowed(self.input(index)))
    }
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// The `variables` object: a field access evaluates the variable (once).
#[derive(Debug)]
struct LazyVariables<'s, 'a> {
    session: &'s Session<'a>,
    names: &'s Variables,
}

static VARIABLES_TYPE: Type = Type::new_unspecified_type("kubernetes.variables");

impl Val for LazyVariables<'_, '_> {
    fn get_type(&self) -> &Type {
        &VARIABLES_TYPE
    }
    fn cel_type() -> &'static Type {
        &VARIABLES_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn cel::common::traits::Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(LazyVariables { session: self.session, names: self.names })
    }
}

impl cel::common::traits::Indexer for LazyVariables<'_, '_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(name) = idx.downcast_ref::<CelString>() else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_string(),
                want: "string".into(),
            });
        };
        let Some(index) = self.names.entries.iter().position(|(n, _)| n == name.inner()) else {
            return Err(ExecutionError::no_such_key(name.inner()));
        };
        match self.session.variable(index) {
            Ok(VarValue::Borrowed(v)) => Ok(CowVal::Borrowed(v)),
            Ok(VarValue::Owned(v)) => Ok(CowVal::Owned(v)),
            Err(message) => Err(ExecutionError::function_error("variables", message)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A copy of `v` that borrows nothing, when `v` is made of values that can be copied so.
fn to_static(v: &dyn Val) -> Option<Box<dyn Val>> {
    macro_rules! plain {
        ($($t:ty),*) => {
            $(if let Some(x) = v.downcast_ref::<$t>() {
                return Some(Box::new(x.clone()));
            })*
        };
    }
    plain!(CelBool, CelInt, CelUInt, CelDouble, CelNull, CelTimestamp, CelDuration);
    if let Some(s) = v.downcast_ref::<CelString>() {
        return Some(Box::new(CelString::from(s.inner().to_string())));
    }
    if let Some(b) = v.downcast_ref::<CelBytes>() {
        return Some(Box::new(CelBytes::from(b.inner().to_vec())));
    }
    if let Some(list) = v.downcast_ref::<CelList>() {
        let items =
            list.inner().iter().map(|i| to_static(i.as_ref())).collect::<Option<Vec<_>>>()?;
        return Some(Box::new(CelList::from(items)));
    }
    if let Some(map) = v.downcast_ref::<CelMap>() {
        let mut entries: HashMap<CelMapKey<'static>, Box<dyn Val>> =
            HashMap::with_capacity(map.inner().len());
        for (k, item) in map.inner() {
            let key = k.inner();
            let key = if let Some(s) = key.downcast_ref::<CelString>() {
                CelMapKey::from(s.inner().to_string())
            } else if let Some(i) = key.downcast_ref::<CelInt>() {
                CelMapKey::from(*i.inner())
            } else if let Some(u) = key.downcast_ref::<CelUInt>() {
                CelMapKey::from(*u.inner())
            } else {
                CelMapKey::from(*key.downcast_ref::<CelBool>()?.inner())
            };
            entries.insert(key, to_static(item.as_ref())?);
        }
        return Some(Box::new(CelMap::from(entries)));
    }
    if let Some(opt) = v.downcast_ref::<CelOptional>() {
        return Some(Box::new(match opt.option() {
            Some(inner) => CelOptional::of(to_static(inner)?),
            None => CelOptional::none(),
        }));
    }
    library::static_copy(v)
}

/// cel-go's wording of a runtime error.
pub(crate) fn runtime_message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnexpectedType { .. }
        | ExecutionError::UnsupportedTargetType { .. }
        | ExecutionError::NotSupportedAsMethod { .. }
        | ExecutionError::UnsupportedIndex(..) => "no such overload".to_string(),
        ExecutionError::UndeclaredReference(name) => format!("no such attribute(s): {name}"),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::Overflow(..) => "integer overflow".to_string(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of range: {}", debug_scalar(i)),
        ExecutionError::DuplicateKey(k) => format!("duplicate map key: {}", debug_scalar(k)),
        other => other.to_string(),
    }
}

fn debug_scalar(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => u.to_string(),
        cel::Value::String(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// A JSON value as a CEL value; strings are borrowed, not copied.
pub(crate) fn from_json(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else {
                // Like kube's JSON decoding: what does not fit an int64 is a float64.
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(from_json).collect::<Vec<_>>()))
        }
        Value::Object(map) => {
            let entries: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
                map.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), from_json(v))).collect();
            Box::new(CelMap::from(entries))
        }
    }
}

/// A CEL value as JSON (what the api server stores): optionals unwrap (`none` is null),
/// Kubernetes' own types print as their strings, timestamps as RFC 3339.
pub(crate) fn to_json(v: &dyn Val) -> Result<Value, String> {
    if let Some(b) = v.downcast_ref::<CelBool>() {
        return Ok(Value::Bool(*b.inner()));
    }
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(Value::from(*i.inner()));
    }
    if let Some(u) = v.downcast_ref::<CelUInt>() {
        return Ok(Value::from(*u.inner()));
    }
    if let Some(d) = v.downcast_ref::<CelDouble>() {
        return Ok(serde_json::Number::from_f64(*d.inner()).map_or(Value::Null, Value::Number));
    }
    if let Some(s) = v.downcast_ref::<CelString>() {
        return Ok(Value::String(s.inner().to_string()));
    }
    if v.downcast_ref::<CelNull>().is_some() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.downcast_ref::<CelBytes>() {
        return Ok(Value::String(library::base64_std(b.inner())));
    }
    if let Some(list) = v.downcast_ref::<CelList>() {
        return list
            .inner()
            .iter()
            .map(|i| to_json(i.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(map) = v.downcast_ref::<CelMap>() {
        let mut out = serde_json::Map::new();
        for (k, item) in map.inner() {
            let key = match to_json(k.inner())? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, to_json(item.as_ref())?);
        }
        return Ok(Value::Object(out));
    }
    if let Some(opt) = v.downcast_ref::<CelOptional>() {
        return opt.option().map_or(Ok(Value::Null), to_json);
    }
    if let Some(t) = v.downcast_ref::<CelTimestamp>() {
        // Go prints UTC as `Z`.
        let text = t.inner().to_rfc3339();
        return Ok(Value::String(match text.strip_suffix("+00:00") {
            Some(utc) => format!("{utc}Z"),
            None => text,
        }));
    }
    if let Some(d) = v.downcast_ref::<CelDuration>() {
        return Ok(Value::String(library::go_duration(d.inner().num_nanoseconds())));
    }
    if let Some(text) = library::display(v) {
        return Ok(Value::String(text));
    }
    Err(format!("unsupported result type: {}", v.get_type().name()))
}

/// Compiles `expr` and evaluates it on `object_json` (as `object`, and as the request) with a
/// small budget. For fuzzing: whatever the input, it returns, without panicking.
pub fn fuzz_eval(expr: &str, object_json: &[u8]) {
    const FUZZ_BUDGET: u64 = 10_000;
    let Ok(program) = compile(expr) else { return };
    let object: Value = serde_json::from_slice(object_json).unwrap_or(Value::Null);
    let mut activation = Activation::new(&object);
    activation.object = Some(&object);
    activation.old_object = Some(&object);
    let _ = program.eval(&activation, &mut Budget::new(FUZZ_BUDGET));
}
