//! The libraries of kube's base CEL environment (`environment/base.go`) on top of the `cel`
//! crate's standard library: the `ext` strings library, `ext.Sets`, `cel.bind`, and
//! Kubernetes' `library/lists.go` and `library/regex.go` here; URLs, quantities, IP and
//! CIDR, formats and the authorizer in their own modules.

use std::cell::RefCell;
use std::cmp::Ordering;

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, ListExpr, LiteralValue, MapEntryExpr,
    MapExpr,
};
use cel::common::types::{
    CelBool, CelDouble, CelDuration, CelInt, CelList, CelString, CelUInt, DYN_TYPE, INT_TYPE,
    LIST_TYPE, STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::parser::Macro;
use cel::{DeclarationError, Env, ExecutionError};

use super::{authz, cost, format, net, quantity, url};

/// Every function this module and its siblings declare (for compile-time checks).
pub(crate) const FUNCTIONS: &[&str] = &[
    // ext strings
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "strings.quote",
    "reverse",
    "format",
    // ext sets
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    // kubernetes lists, regex
    "isSorted",
    "sum",
    "min",
    "max",
    "find",
    "findAll",
    // urls
    "url",
    "isURL",
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    // quantity
    "quantity",
    "isQuantity",
    "sign",
    "isInteger",
    "asInteger",
    "asApproximateFloat",
    "add",
    "sub",
    "isLessThan",
    "isGreaterThan",
    "compareTo",
    // ip, cidr
    "ip",
    "isIP",
    "ip.isCanonical",
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    "cidr",
    "isCIDR",
    "containsIP",
    "containsCIDR",
    "prefixLength",
    "masked",
    // format
    "format.named",
    "format.dns1123Label",
    "format.dns1123Subdomain",
    "format.dns1035Label",
    "format.qualifiedName",
    "format.dns1123LabelPrefix",
    "format.dns1123SubdomainPrefix",
    "format.dns1035LabelPrefix",
    "format.labelValue",
    "format.uri",
    "format.uuid",
    "format.byte",
    "format.date",
    "format.datetime",
    "validate",
    // authz
    "path",
    "group",
    "serviceAccount",
    "resource",
    "subresource",
    "namespace",
    "name",
    "check",
    "allowed",
    "reason",
    "errored",
    "error",
    "fieldSelector",
    "labelSelector",
    // mutating admission policies
    "jsonPatch.escape",
];

/// Declares everything on `env` (an [`Env::stdlib`]).
pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cost::register(env)?;
    env.add_extension(cel::extensions::strings)?;
    env.add_macro(Macro::receiver("bind", 3, bind_macro))?;
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_intersects,
    )?;
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    env.add_member_overload("find", "string_find_string", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    env.add_overload(
        "jsonPatch.escape",
        "string_jsonpatch_escape",
        vec![STRING_TYPE],
        json_patch_escape,
    )?;
    url::register(env)?;
    quantity::register(env)?;
    net::register(env)?;
    format::register(env)?;
    authz::register(env)?;
    Ok(())
}

/// An error from a library function, shown as kube shows it: the message alone.
pub(crate) fn fail(function: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

/// cel-go's `no such overload`, for an argument of the wrong type.
pub(crate) fn no_overload(function: &str, args: &[CowVal<'_, '_>]) -> ExecutionError {
    ExecutionError::no_such_overload(
        function,
        args.iter().map(|a| a.get_type().name().to_string()).collect(),
    )
}

pub(crate) fn arg<'x, 'b, 'v>(
    args: &'x [CowVal<'b, 'v>],
    i: usize,
) -> Result<&'x (dyn Val + 'v), ExecutionError> {
    args.get(i).map(|a| a.as_ref()).ok_or_else(ExecutionError::missing_argument_or_target)
}

pub(crate) fn str_arg<'x>(
    args: &'x [CowVal<'_, '_>],
    i: usize,
    function: &str,
) -> Result<&'x str, ExecutionError> {
    let v = arg(args, i)?;
    v.downcast_ref::<CelString>().map(|s| s.inner()).ok_or_else(|| no_overload(function, args))
}

pub(crate) fn int_arg(
    args: &[CowVal<'_, '_>],
    i: usize,
    function: &str,
) -> Result<i64, ExecutionError> {
    let v = arg(args, i)?;
    v.downcast_ref::<CelInt>().map(|n| *n.inner()).ok_or_else(|| no_overload(function, args))
}

fn list_arg<'x, 'v>(
    args: &'x [CowVal<'_, 'v>],
    i: usize,
    function: &str,
) -> Result<&'x [Box<dyn Val + 'v>], ExecutionError> {
    let v = arg(args, i)?;
    v.downcast_ref::<CelList>().map(|l| l.inner()).ok_or_else(|| no_overload(function, args))
}

pub(crate) fn owned<'b, 'v>(v: impl Val + 'v) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(v))
}

pub(crate) fn boolean<'b, 'v>(b: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    owned(CelBool::from(b))
}

pub(crate) fn string<'b, 'v>(s: String) -> Result<CowVal<'b, 'v>, ExecutionError> {
    owned(CelString::from(s))
}

pub(crate) fn string_list<'b, 'v>(items: Vec<String>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    cost::charge(items.len() as u64)?;
    let items: Vec<Box<dyn Val + 'v>> =
        items.into_iter().map(|s| Box::new(CelString::from(s)) as Box<dyn Val + 'v>).collect();
    owned(CelList::from(items))
}

fn compare(a: &dyn Val, b: &dyn Val, function: &str) -> Result<Ordering, ExecutionError> {
    let no = || {
        ExecutionError::no_such_overload(
            function,
            vec![a.get_type().name().into(), b.get_type().name().into()],
        )
    };
    a.as_comparer().ok_or_else(no)?.compare(b).map_err(|_| no())
}

// --- ext.Sets ---

fn contains_all(a: &[Box<dyn Val + '_>], b: &[Box<dyn Val + '_>]) -> Result<bool, ExecutionError> {
    cost::charge((a.len() as u64).saturating_mul(b.len() as u64))?;
    Ok(b.iter().all(|x| a.iter().any(|y| y.equals(x.as_ref()))))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = list_arg(&args, 0, "sets.contains")?;
    let b = list_arg(&args, 1, "sets.contains")?;
    boolean(contains_all(a, b)?)
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = list_arg(&args, 0, "sets.equivalent")?;
    let b = list_arg(&args, 1, "sets.equivalent")?;
    boolean(contains_all(a, b)? && contains_all(b, a)?)
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = list_arg(&args, 0, "sets.intersects")?;
    let b = list_arg(&args, 1, "sets.intersects")?;
    cost::charge((a.len() as u64).saturating_mul(b.len() as u64))?;
    boolean(b.iter().any(|x| a.iter().any(|y| y.equals(x.as_ref()))))
}

// --- kubernetes lists ---

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list_arg(&args, 0, "isSorted")?;
    for pair in items.windows(2) {
        if compare(pair[0].as_ref(), pair[1].as_ref(), "isSorted")? == Ordering::Greater {
            return boolean(false);
        }
    }
    boolean(true)
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list_arg(&args, 0, "sum")?;
    let Some((head, rest)) = items.split_first() else {
        // kube's zero for an empty list of unknown element type is the int 0.
        return owned(CelInt::from(0));
    };
    let numeric = head.downcast_ref::<CelInt>().is_some()
        || head.downcast_ref::<CelUInt>().is_some()
        || head.downcast_ref::<CelDouble>().is_some()
        || head.downcast_ref::<CelDuration>().is_some();
    if !numeric {
        return Err(no_overload("sum", &args));
    }
    let mut acc: Box<dyn Val + 'v> = head.clone();
    for item in rest {
        let adder = acc.as_adder().ok_or_else(|| no_overload("sum", &args))?;
        let next = adder.add(item.as_ref())?.into_owned();
        acc = next;
    }
    Ok(CowVal::Owned(acc))
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    prefer: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list_arg(&args, 0, function)?;
    let mut best: Option<&Box<dyn Val + 'v>> = None;
    for item in items {
        best = match best {
            None => Some(item),
            Some(b) if compare(b.as_ref(), item.as_ref(), function)? == prefer => Some(item),
            keep => keep,
        };
    }
    match best {
        Some(b) => Ok(CowVal::Owned(b.clone())),
        None => Err(fail(function, format!("{function} called on empty list"))),
    }
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", Ordering::Greater)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", Ordering::Less)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list_arg(&args, 0, "indexOf")?;
    let needle = arg(&args, 1)?;
    let at = items.iter().position(|i| i.equals(needle)).map_or(-1, |i| i as i64);
    owned(CelInt::from(at))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = list_arg(&args, 0, "lastIndexOf")?;
    let needle = arg(&args, 1)?;
    let at = items.iter().rposition(|i| i.equals(needle)).map_or(-1, |i| i as i64);
    owned(CelInt::from(at))
}

// --- kubernetes regex ---

thread_local! {
    /// Recently compiled patterns: a pattern in a comprehension is compiled once, not per
    /// element (kube compiles constant patterns once, at program creation).
    static REGEXES: RefCell<Vec<(String, regex::Regex)>> = const { RefCell::new(Vec::new()) };
}

/// `pattern`, compiled (RE2 syntax, which the `regex` crate follows).
pub(crate) fn regex_for(pattern: &str, function: &str) -> Result<regex::Regex, ExecutionError> {
    const CACHED: usize = 16;
    if let Some(re) =
        REGEXES.with(|c| c.borrow().iter().find(|(p, _)| p == pattern).map(|(_, r)| r.clone()))
    {
        return Ok(re);
    }
    let re =
        regex::Regex::new(pattern).map_err(|e| fail(function, format!("Illegal regex: {e}")))?;
    REGEXES.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= CACHED {
            cache.remove(0);
        }
        cache.push((pattern.to_string(), re.clone()));
    });
    Ok(re)
}

fn regex_cost(text: &str, pattern: &str) -> Result<(), ExecutionError> {
    // kube: the string's length times the pattern's, both at the traversal factor.
    cost::charge(
        cost::string_cost(text.len()).saturating_mul(cost::string_cost(pattern.len()).max(1)),
    )
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = str_arg(&args, 0, "find")?;
    let pattern = str_arg(&args, 1, "find")?;
    regex_cost(text, pattern)?;
    let re = regex_for(pattern, "find")?;
    string(re.find(text).map(|m| m.as_str().to_string()).unwrap_or_default())
}

fn find_all_limited<'b, 'v>(
    args: &[CowVal<'b, 'v>],
    limit: i64,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = str_arg(args, 0, "findAll")?;
    let pattern = str_arg(args, 1, "findAll")?;
    regex_cost(text, pattern)?;
    let re = regex_for(pattern, "findAll")?;
    let matches = re.find_iter(text).map(|m| m.as_str().to_string());
    let found: Vec<String> = match usize::try_from(limit) {
        Ok(n) => matches.take(n).collect(),
        Err(_) => matches.collect(),
    };
    string_list(found)
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    find_all_limited(&args, -1)
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let limit = int_arg(&args, 2, "findAll")?;
    find_all_limited(&args, limit)
}

fn json_patch_escape<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "jsonPatch.escape")?;
    string(s.replace('~', "~0").replace('/', "~1"))
}

// --- cel.bind ---

/// `cel.bind(name, init, expr)`: `expr` with `name` bound to `init`, as cel-go expands it:
/// a comprehension over nothing whose accumulator is the binding.
fn bind_macro(
    helper: &mut cel::parser::MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, cel::ParseError> {
    if !matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(n)) if n == "cel") {
        return Ok(None);
    }
    let Expr::Ident(name) = &args[0].expr else {
        let id = args[0].id;
        return Err(helper.new_error(id, "cel.bind() variable names must be simple identifiers"));
    };
    let name = name.clone();
    let result = args.pop().unwrap_or_default();
    let init = args.pop().unwrap_or_default();
    target.take();
    let empty = helper.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let cond = helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into())));
    let step = helper.next_expr(Expr::Ident(name.clone()));
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: empty,
        iter_var: "#unused".to_string(),
        iter_var2: None,
        accu_var: name,
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    })))))
}

// --- struct literals of mutating admission policies ---

/// The key marking a map built from an `Object.<path>{...}` literal with its type name, so
/// the mutation can check it against the field it is set on (kube's
/// `CheckTypeNamesMatchFieldPathNames`); removed before the result is used.
pub(crate) const TYPE_TAG: &str = "@type";

/// `JSONPatch{op: .., path: ..}` and `Object.spec{...}` literals become map literals: the
/// crate has no types for them, and a map of the same fields is what the mutation needs.
pub(crate) fn rewrite_literals(expr: IdedExpr) -> IdedExpr {
    let id = expr.id;
    let rewritten = match expr.expr {
        Expr::Struct(s) => {
            let mut entries: Vec<_> = s
                .entries
                .into_iter()
                .map(|entry| {
                    let (key, value, optional) = match entry.expr {
                        EntryExpr::StructField(f) => (f.field, f.value, f.optional),
                        EntryExpr::MapEntry(e) => {
                            return cel::common::ast::IdedEntryExpr {
                                id: entry.id,
                                expr: EntryExpr::MapEntry(MapEntryExpr {
                                    key: rewrite_literals(e.key),
                                    value: rewrite_literals(e.value),
                                    optional: e.optional,
                                }),
                            };
                        }
                    };
                    cel::common::ast::IdedEntryExpr {
                        id: entry.id,
                        expr: EntryExpr::MapEntry(MapEntryExpr {
                            key: IdedExpr {
                                id: 0,
                                expr: Expr::Literal(LiteralValue::String(key.into())),
                            },
                            value: rewrite_literals(value),
                            optional,
                        }),
                    }
                })
                .collect();
            if s.type_name == "Object" || s.type_name.starts_with("Object.") {
                entries.push(cel::common::ast::IdedEntryExpr {
                    id: 0,
                    expr: EntryExpr::MapEntry(MapEntryExpr {
                        key: IdedExpr {
                            id: 0,
                            expr: Expr::Literal(LiteralValue::String(TYPE_TAG.to_string().into())),
                        },
                        value: IdedExpr {
                            id: 0,
                            expr: Expr::Literal(LiteralValue::String(s.type_name.clone().into())),
                        },
                        optional: false,
                    }),
                });
            }
            Expr::Map(MapExpr { entries })
        }
        Expr::Call(c) => Expr::Call(CallExpr {
            func_name: c.func_name,
            target: c.target.map(|t| Box::new(rewrite_literals(*t))),
            args: c.args.into_iter().map(rewrite_literals).collect(),
        }),
        Expr::Comprehension(mut c) => {
            c.iter_range = rewrite_literals(c.iter_range);
            c.accu_init = rewrite_literals(c.accu_init);
            c.loop_cond = rewrite_literals(c.loop_cond);
            c.loop_step = rewrite_literals(c.loop_step);
            c.result = rewrite_literals(c.result);
            Expr::Comprehension(c)
        }
        Expr::Select(mut s) => {
            s.operand = Box::new(rewrite_literals(*s.operand));
            Expr::Select(s)
        }
        Expr::List(mut l) => {
            l.elements = l.elements.into_iter().map(rewrite_literals).collect();
            Expr::List(l)
        }
        Expr::Map(mut m) => {
            for entry in &mut m.entries {
                if let EntryExpr::MapEntry(e) = &mut entry.expr {
                    e.key = rewrite_literals(std::mem::take(&mut e.key));
                    e.value = rewrite_literals(std::mem::take(&mut e.value));
                }
            }
            Expr::Map(m)
        }
        other => other,
    };
    IdedExpr { id, expr: rewritten }
}

// --- printing ---

/// Standard base64, for bytes in JSON.
pub(crate) fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A duration as Go prints one (`1h2m3.5s`), from nanoseconds.
pub(crate) fn go_duration(nanos: Option<i64>) -> String {
    let Some(n) = nanos else { return "overflow".to_string() };
    if n == 0 {
        return "0s".to_string();
    }
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
    let (s, frac) = ((n / 1_000_000_000) % 60, n % 1_000_000_000);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let digits = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", digits.trim_end_matches('0')));
    }
    out
}

/// A copy of a Kubernetes library value (they borrow nothing), for caching variables.
pub(crate) fn static_copy(v: &dyn Val) -> Option<Box<dyn Val>> {
    macro_rules! copy {
        ($($t:ty),*) => {
            $(if let Some(x) = v.downcast_ref::<$t>() {
                return Some(Box::new(x.clone()));
            })*
        };
    }
    copy!(
        quantity::QuantityVal,
        net::IpVal,
        net::CidrVal,
        url::GoUrl,
        format::FormatVal,
        authz::Decision
    );
    None
}

/// The text of a Kubernetes library value (a quantity, URL, IP, CIDR), for JSON results.
pub(crate) fn display(v: &dyn Val) -> Option<String> {
    quantity::display(v).or_else(|| net::display(v)).or_else(|| url::display(v))
}
