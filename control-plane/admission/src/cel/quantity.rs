//! kube's `library/quantity.go`: `quantity(s)`, `isQuantity(s)` and the `kubernetes.Quantity`
//! methods, over [`skiff_helpers::quantity::Quantity`].

use std::any::Any;
use std::cmp::Ordering;

use cel::common::types::{CelDouble, CelInt, INT_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use skiff_helpers::quantity::{Format, Quantity};

use super::library::{arg, boolean, fail, int_arg, no_overload, owned, str_arg};

pub(crate) static QUANTITY_TYPE: Type = Type::new_unspecified_type("kubernetes.Quantity");

/// apimachinery's `ErrFormatWrong`, what `ParseQuantity` says of malformed text.
const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug, Clone)]
pub(crate) struct QuantityVal(pub(crate) Quantity);

impl Val for QuantityVal {
    fn get_type(&self) -> &Type {
        &QUANTITY_TYPE
    }
    fn cel_type() -> &'static Type {
        &QUANTITY_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<QuantityVal>().is_some_and(|o| o.0 == self.0)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for QuantityVal {}

pub(crate) fn display(v: &dyn Val) -> Option<String> {
    v.downcast_ref::<QuantityVal>().map(|q| q.0.to_string())
}

fn q_arg<'x>(
    args: &'x [CowVal<'_, '_>],
    i: usize,
    function: &str,
) -> Result<&'x Quantity, ExecutionError> {
    arg(args, i)?
        .downcast_ref::<QuantityVal>()
        .map(|q| &q.0)
        .ok_or_else(|| no_overload(function, args))
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let q = || QUANTITY_TYPE.to_owned();
    env.add_type(q())?;
    env.add_overload("quantity", "string_to_quantity", vec![STRING_TYPE], to_quantity)?;
    env.add_overload("isQuantity", "is_quantity_string", vec![STRING_TYPE], is_quantity)?;
    // kube declares `sign` global but documents `q.sign()`: accept both.
    env.add_overload("sign", "quantity_sign", vec![q()], sign)?;
    env.add_member_overload("sign", "quantity_sign_member", q(), vec![], sign)?;
    env.add_member_overload(
        "isGreaterThan",
        "quantity_is_greater_than",
        q(),
        vec![q()],
        is_greater_than,
    )?;
    env.add_member_overload("isLessThan", "quantity_is_less_than", q(), vec![q()], is_less_than)?;
    env.add_member_overload("compareTo", "quantity_compare_to", q(), vec![q()], compare_to)?;
    env.add_member_overload("asApproximateFloat", "quantity_get_float", q(), vec![], as_float)?;
    env.add_member_overload("asInteger", "quantity_get_int", q(), vec![], as_integer)?;
    env.add_member_overload("isInteger", "quantity_is_integer", q(), vec![], is_integer)?;
    env.add_member_overload("add", "quantity_add", q(), vec![q()], add)?;
    env.add_member_overload("add", "quantity_add_int", q(), vec![INT_TYPE], add_int)?;
    env.add_member_overload("sub", "quantity_sub", q(), vec![q()], sub)?;
    env.add_member_overload("sub", "quantity_sub_int", q(), vec![INT_TYPE], sub_int)?;
    Ok(())
}

/// `ParseQuantity`, with its error text.
pub(crate) fn parse(text: &str) -> Result<Quantity, String> {
    // The number must have a digit or a point (`Mi` alone is not a quantity); apimachinery
    // does not trim, `Quantity::parse` does (for JSON).
    let number = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !number.starts_with(|c: char| c.is_ascii_digit() || c == '.') || text.trim() != text {
        return Err(FORMAT_WRONG.to_string());
    }
    Quantity::parse(text).ok_or_else(|| FORMAT_WRONG.to_string())
}

fn to_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "quantity")?;
    parse(s).map(QuantityVal).map(CowVal::owned).map_err(|e| fail("quantity", e))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse(str_arg(&args, 0, "isQuantity")?).is_ok())
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = q_arg(&args, 0, "sign")?;
    owned(CelInt::from(q.nano_value().signum() as i64))
}

fn ordering<'b, 'v>(args: &[CowVal<'b, 'v>], function: &str) -> Result<Ordering, ExecutionError> {
    Ok(q_arg(args, 0, function)?.cmp(q_arg(args, 1, function)?))
}

fn is_greater_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ordering(&args, "isGreaterThan")? == Ordering::Greater)
}

fn is_less_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ordering(&args, "isLessThan")? == Ordering::Less)
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let o = ordering(&args, "compareTo")?;
    owned(CelInt::from(o as i64))
}

/// apimachinery's `AsInt64`: the value when it is a whole number that fits an int64.
fn as_i64(q: &Quantity) -> Option<i64> {
    const NANO: i128 = 1_000_000_000;
    let n = q.nano_value();
    if n % NANO != 0 {
        return None;
    }
    i64::try_from(n / NANO).ok()
}

fn as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = q_arg(&args, 0, "asApproximateFloat")?;
    owned(CelDouble::from(q.nano_value() as f64 / 1e9))
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = q_arg(&args, 0, "asInteger")?;
    match as_i64(q) {
        Some(i) => owned(CelInt::from(i)),
        None => Err(fail("asInteger", "cannot convert value to integer")),
    }
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(as_i64(q_arg(&args, 0, "isInteger")?).is_some())
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let sum = q_arg(&args, 0, "add")?.clone() + q_arg(&args, 1, "add")?.clone();
    owned(QuantityVal(sum))
}

fn add_int<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = q_arg(&args, 0, "add")?.clone();
    let n = int_arg(&args, 1, "add")?;
    owned(QuantityVal(q + Quantity::new(n, Format::DecimalExponent)))
}

fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let diff = q_arg(&args, 0, "sub")?.clone() - q_arg(&args, 1, "sub")?.clone();
    owned(QuantityVal(diff))
}

fn sub_int<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = q_arg(&args, 0, "sub")?.clone();
    let n = int_arg(&args, 1, "sub")?;
    owned(QuantityVal(q - Quantity::new(n, Format::DecimalExponent)))
}
