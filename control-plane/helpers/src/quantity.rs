//! Resource quantities (`256Mi`, `1.5G`, `500m`, `2`, `2.2e9`) as integers, as apimachinery's
//! `resource.Quantity` gives them: [`value`] in base units (bytes, cores, counts) and
//! [`milli_value`] in thousandths, both rounded up. Exact: the number is read as a decimal
//! fraction and scaled in 128-bit integers, so `9m` CPU is 9 millicores (through `f64` it
//! would be 9.000000000000002 and round up to 10). Only a quantity too large for that falls
//! back to floating point.
//!
//! [`Quantity`] is the whole `resource.Quantity` for code that adds quantities up and shows
//! them to users (quota usage, LimitRange messages): exact to the nano like apimachinery,
//! with its formats and its canonical text (`1500m`, `1536Mi`, `1k`).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// A quantity in thousandths, rounded up (`100m` CPU is 100, `1` is 1000). `None` if malformed.
pub fn milli_value(q: &str) -> Option<i64> {
    exact(q, 1000).or_else(|| approximate(q).map(|v| (v * 1000.0).ceil() as i64))
}

/// A quantity in base units, rounded up (`1Ki` is 1024, `500m` is 1). `None` if malformed.
pub fn value(q: &str) -> Option<i64> {
    exact(q, 1).or_else(|| approximate(q).map(|v| v.ceil() as i64))
}

/// The number and the suffix of a quantity (`1.5`, `Gi`).
fn split(q: &str) -> (&str, &str) {
    let q = q.trim();
    let at = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    q.split_at(at)
}

/// A suffix as base and exponent: `Ki` is 1024¹, `m` is 10⁻³, `e6` is 10⁶.
fn suffix_scale(suffix: &str) -> Option<(i128, i32)> {
    Some(match suffix {
        "" => (10, 0),
        "n" => (10, -9),
        "u" => (10, -6),
        "m" => (10, -3),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        s if s.starts_with('e') || s.starts_with('E') => (10, s[1..].parse().ok()?),
        _ => return None,
    })
}

/// `q` times `scale`, rounded up (towards zero for negatives), in integer arithmetic.
/// `None` when `q` is malformed or too large for this path.
fn exact(q: &str, scale: i128) -> Option<i64> {
    let (num, suffix) = split(q);
    let (negative, num) = match num.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The value is numer / denom.
    let mut numer = int
        .bytes()
        .chain(frac.bytes())
        .try_fold(0i128, |acc, b| acc.checked_mul(10)?.checked_add(i128::from(b - b'0')))?;
    numer = numer.checked_mul(scale)?;
    let mut denom = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let (base, exp) = suffix_scale(suffix)?;
    let factor = base.checked_pow(exp.unsigned_abs())?;
    if exp >= 0 {
        numer = numer.checked_mul(factor)?;
    } else {
        denom = denom.checked_mul(factor)?;
    }
    let magnitude = if negative { numer / denom } else { (numer + denom - 1) / denom };
    let v = if negative { -magnitude } else { magnitude };
    i64::try_from(v).ok()
}

/// The floating-point reading, for quantities too large for [`exact`].
fn approximate(q: &str) -> Option<f64> {
    let (num, suffix) = split(q);
    let n: f64 = num.parse().ok()?;
    let (base, exp) = suffix_scale(suffix)?;
    #[allow(clippy::cast_precision_loss)]
    Some(n * (base as f64).powi(exp))
}

/// How a [`Quantity`] is written out (apimachinery's `resource.Format`): kept from the text it
/// was parsed from, so `1Gi` stays binary and `1e3` stays an exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `12k`, `500m`: powers of 1000.
    DecimalSI,
    /// `12Mi`: powers of 1024.
    BinarySI,
    /// `12e6`.
    DecimalExponent,
}

/// Billionths in one unit: apimachinery keeps nine decimals and rounds finer values up.
const NANO: i128 = 1_000_000_000;

/// The largest binary quantity parsing keeps (2⁶³−1 units); apimachinery caps `9Ei` there.
const MAX_BINARY_NANOS: i128 = i64::MAX as i128 * NANO;

/// An exact resource quantity, as apimachinery's `resource.Quantity`: a value to the nano, the
/// [`Format`] it prints in, and, when it was parsed from text already in canonical form, that
/// text (apimachinery prints such a quantity back exactly as it was written, `+1` included).
///
/// Equality and order compare values only (`1Gi == 1073741824`), like `Quantity.Cmp`.
/// Arithmetic keeps the left operand's format unless that operand is zero, like
/// `Quantity.Add`/`Sub`. Values beyond ±1.7·10²⁹ units (which only `DecimalExponent`
/// text can spell) are not representable and do not parse.
#[derive(Debug, Clone)]
pub struct Quantity {
    nanos: i128,
    format: Format,
    text: Option<Box<str>>,
}

impl Quantity {
    /// Zero, printed `0` (`resource.Quantity{Format: DecimalSI}`).
    pub fn zero() -> Self {
        Quantity { nanos: 0, format: Format::DecimalSI, text: None }
    }

    /// `value` units (`resource.NewQuantity`).
    pub fn new(value: i64, format: Format) -> Self {
        Quantity { nanos: i128::from(value) * NANO, format, text: None }
    }

    /// `milli` thousandths (`resource.NewMilliQuantity`).
    pub fn new_milli(milli: i64, format: Format) -> Self {
        Quantity { nanos: i128::from(milli) * 1_000_000, format, text: None }
    }

    /// `nanos` billionths of a unit (`resource.NewScaledQuantity(nanos, Nano)`).
    pub fn from_nanos(nanos: i128, format: Format) -> Self {
        Quantity { nanos, format, text: None }
    }

    /// Parses a quantity as apimachinery's `ParseQuantity` does (surrounding whitespace is
    /// trimmed, as its JSON decoder does): a signed decimal number, then a suffix (`n u m k M
    /// G T P E`, `Ki … Ei`, or an exponent `e3`/`E-3`). Finer than a nano rounds up, away
    /// from zero. `None` for malformed text or a value too large to represent.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text == "0" {
            return Some(Quantity { nanos: 0, format: Format::DecimalSI, text: Some(text.into()) });
        }
        let parts = scan(text)?;
        let (base, exponent, mut format) = interpret_suffix(parts.suffix)?;
        let digits = parts
            .num
            .bytes()
            .chain(parts.denom.bytes())
            .try_fold(0u128, |acc, b| acc.checked_mul(10)?.checked_add(u128::from(b - b'0')))?;
        let denom_len = i64::try_from(parts.denom.len()).ok()?;
        let magnitude = if base == 10 {
            scale_pow10(digits, i64::from(exponent) + 9 - denom_len)?
        } else {
            let scaled = digits.checked_mul(1u128.checked_shl(u32::try_from(exponent).ok()?)?)?;
            scale_pow10(scaled, 9 - denom_len)?
        };
        let mut magnitude = i128::try_from(magnitude).ok()?;
        if format == Format::BinarySI {
            magnitude = magnitude.min(MAX_BINARY_NANOS);
            if magnitude > 0 && magnitude < NANO {
                // apimachinery: a binary quantity below one is shown in decimal.
                format = Format::DecimalSI;
            }
        }
        let nanos = if parts.positive { magnitude } else { -magnitude };
        let canonical = keeps_text(&parts, base, exponent);
        Some(Quantity { nanos, format, text: canonical.then(|| text.into()) })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The exact value in billionths of a unit.
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    /// The value in base units, rounded away from zero (`Quantity.Value`: `500m` is 1).
    pub fn value(&self) -> i128 {
        div_away_from_zero(self.nanos, NANO)
    }

    /// The value in thousandths, rounded away from zero (`Quantity.MilliValue`).
    pub fn milli_value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000)
    }

    /// Rounded up to whole units (`Quantity.RoundUp(0)`); a whole value keeps its text.
    pub fn round_up_to_units(&self) -> Self {
        if self.nanos % NANO == 0 {
            return self.clone();
        }
        Quantity { nanos: self.value() * NANO, format: self.format, text: None }
    }

    /// apimachinery's canonical text for this value and format, ignoring the kept text.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            // Small or fractional binary values print in decimal rather than round.
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut units = self.nanos / NANO;
            let mut power = 0;
            while power < BINARY_SUFFIXES.len() - 1 && units % 1024 == 0 {
                units /= 1024;
                power += 1;
            }
            return format!("{units}{}", BINARY_SUFFIXES[power]);
        }
        let mut mantissa = self.nanos;
        let mut exponent: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            mantissa = mantissa.saturating_mul(10);
            exponent -= 1;
        }
        if format == Format::DecimalExponent {
            return if exponent == 0 {
                mantissa.to_string()
            } else {
                format!("{mantissa}e{exponent}")
            };
        }
        if exponent > 18 {
            // Past `E` there is no SI suffix; apimachinery would drop it, we write `1000E`.
            mantissa = mantissa.saturating_mul(10i128.pow(exponent.unsigned_abs() - 18));
            exponent = 18;
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        format!("{mantissa}{suffix}")
    }
}

const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// The pieces of a quantity's text, as apimachinery's `parseQuantityString` splits it.
struct Scanned<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

fn scan(s: &str) -> Option<Scanned<'_>> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    let done = |num, denom, suffix| Some(Scanned { positive, num, denom, suffix });
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return done("0", "", "");
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == start { "0" } else { &s[start..pos] };
    if pos >= end {
        return done(num, "", "");
    }
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
        if pos >= end {
            return done(num, denom, "");
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return None;
    }
    done(num, denom, &s[suffix_start..])
}

/// A suffix as (base, exponent, format): `Ki` is (2, 10), `m` is (10, −3), `e6` is (10, 6).
fn interpret_suffix(suffix: &str) -> Option<(u32, i32, Format)> {
    let decimal = |e| Some((10, e, Format::DecimalSI));
    let binary = |e| Some((2, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            Some((10, s[1..].parse().ok()?, Format::DecimalExponent))
        }
        _ => None,
    }
}

/// `value · 10^power`, rounded up when `power` is negative. `None` on overflow.
fn scale_pow10(value: u128, power: i64) -> Option<u128> {
    let exp = u32::try_from(power.unsigned_abs()).ok();
    if power >= 0 {
        return value.checked_mul(10u128.checked_pow(exp?)?);
    }
    match exp.and_then(|e| 10u128.checked_pow(e)) {
        Some(divisor) => Some(value.div_ceil(divisor)),
        // Every representable value is below the divisor: it rounds up to one nano.
        None => Some(u128::from(value != 0)),
    }
}

/// Whether apimachinery keeps the parsed text as the quantity's printed form: only when it
/// took the int64 path of `ParseQuantity` and the text was already canonical.
fn keeps_text(parts: &Scanned<'_>, base: u32, exponent: i32) -> bool {
    const MAX_INT64_FACTORS: usize = 18;
    if base == 2 {
        if !parts.denom.is_empty() || exponent < 0 {
            return false;
        }
        let digits_used = parts.num.len() + usize::try_from(exponent * 3 / 10).unwrap_or(0) + 1;
        if digits_used > 15 {
            return false;
        }
        let Ok(value) = parts.num.parse::<i64>() else { return false };
        let fits = value.checked_mul(1i64 << exponent).is_some();
        return fits && exponent % 10 == 0 && value & 0x07 != 0;
    }
    let digits = parts.num.len() + parts.denom.len();
    if digits > MAX_INT64_FACTORS {
        return false;
    }
    let scale = i64::from(exponent) - parts.denom.len() as i64;
    if scale < -9 {
        return false;
    }
    let shifted = format!("{}{}", parts.num, parts.denom);
    scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
}

fn div_away_from_zero(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    if value % divisor == 0 {
        quotient
    } else if value > 0 {
        quotient + 1
    } else {
        quotient - 1
    }
}

impl fmt::Display for Quantity {
    /// The text apimachinery prints: the parsed text when it was canonical, else
    /// [`Quantity::canonical`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.canonical()),
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Add for Quantity {
    type Output = Quantity;
    fn add(mut self, rhs: Quantity) -> Quantity {
        self += &rhs;
        self
    }
}

impl Sub for Quantity {
    type Output = Quantity;
    fn sub(mut self, rhs: Quantity) -> Quantity {
        self -= &rhs;
        self
    }
}

impl AddAssign<&Quantity> for Quantity {
    /// `Quantity.Add`: the sum takes `rhs`'s format when `self` is zero.
    fn add_assign(&mut self, rhs: &Quantity) {
        if self.nanos == 0 {
            self.format = rhs.format;
        }
        self.nanos = self.nanos.saturating_add(rhs.nanos);
        self.text = None;
    }
}

impl SubAssign<&Quantity> for Quantity {
    /// `Quantity.Sub`: the difference takes `rhs`'s format when `self` is zero.
    fn sub_assign(&mut self, rhs: &Quantity) {
        if self.nanos == 0 {
            self.format = rhs.format;
        }
        self.nanos = self.nanos.saturating_sub(rhs.nanos);
        self.text = None;
    }
}

impl Neg for Quantity {
    type Output = Quantity;
    fn neg(self) -> Quantity {
        Quantity { nanos: -self.nanos, format: self.format, text: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_should_round_up() {
        assert_eq!(milli_value("100m"), Some(100));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("500m"), Some(1));
    }

    #[test]
    fn quantities_should_parse_exactly() {
        let cases = [
            ("9m", Some(9), Some(1)),
            ("205m", Some(205), Some(1)),
            ("0.1", Some(100), Some(1)),
            ("1.5Gi", Some(1_610_612_736_000), Some(1_610_612_736)),
            ("2.2e9", Some(2_200_000_000_000), Some(2_200_000_000)),
            ("1e-3", Some(1), Some(1)),
            ("100n", Some(1), Some(1)),
            ("+3", Some(3000), Some(3)),
            ("-2.5", Some(-2500), Some(-2)),
            ("256Mi", Some(268_435_456_000), Some(268_435_456)),
            ("1G", Some(1_000_000_000_000), Some(1_000_000_000)),
            ("2", Some(2000), Some(2)),
            ("1e3", Some(1_000_000), Some(1000)),
            (" 64Ki ", Some(65_536_000), Some(65_536)),
            ("12Qi", None, None),
            ("1x", None, None),
            ("Mi", None, None),
            ("", None, None),
        ];
        for (q, milli, base) in cases {
            assert_eq!(milli_value(q), milli, "milli {q}");
            assert_eq!(value(q), base, "value {q}");
        }
    }

    #[test]
    fn quantities_too_large_for_integers_should_fall_back() {
        // 7Ei fits an i64 in base units but not in thousandths: the float path saturates.
        assert_eq!(value("7Ei"), Some(7 * 1024i64.pow(6)));
        assert_eq!(milli_value("7Ei"), Some(i64::MAX), "saturates like a float cast");
    }

    /// `decQuantity(v, scale, f)` of apimachinery's tests, in nanos.
    fn dec(v: i128, scale: i32) -> i128 {
        if scale >= -9 {
            v * 10i128.pow((scale + 9).unsigned_abs())
        } else {
            v / 10i128.pow((-9 - scale).unsigned_abs())
        }
    }

    #[test]
    fn quantity_should_parse_like_apimachinery() {
        use Format::*;
        // apimachinery's TestQuantityParse table: input, value, format.
        let cases: &[(&str, i128, Format)] = &[
            ("0", 0, DecimalSI),
            ("0n", 0, DecimalSI),
            ("0Ki", 0, BinarySI),
            ("0M", 0, DecimalSI),
            ("1", dec(1, 0), DecimalSI),
            ("1Ki", dec(1024, 0), BinarySI),
            ("8Ki", dec(8 * 1024, 0), BinarySI),
            ("7Mi", dec(7 << 20, 0), BinarySI),
            ("6Gi", dec(6 << 30, 0), BinarySI),
            ("5Ti", dec(5 << 40, 0), BinarySI),
            ("4Pi", dec(4 << 50, 0), BinarySI),
            ("3Ei", dec(3 << 60, 0), BinarySI),
            ("5n", dec(5, -9), DecimalSI),
            ("4u", dec(4, -6), DecimalSI),
            ("3m", dec(3, -3), DecimalSI),
            ("8k", dec(8, 3), DecimalSI),
            ("50k", dec(5, 4), DecimalSI),
            ("7M", dec(7, 6), DecimalSI),
            ("6G", dec(6, 9), DecimalSI),
            ("40T", dec(4, 13), DecimalSI),
            ("2P", dec(2, 15), DecimalSI),
            ("1E", dec(1, 18), DecimalSI),
            ("1E-3", dec(1, -3), DecimalExponent),
            ("1e3", dec(1, 3), DecimalExponent),
            ("1E18", dec(1, 18), DecimalExponent),
            ("100.035k", dec(100_035, 0), DecimalSI),
            ("0.001", dec(1, -3), DecimalSI),
            ("0.0005k", dec(5, -1), DecimalSI),
            ("0.5", dec(5, -1), DecimalSI),
            ("0.5e-2", dec(5, -3), DecimalExponent),
            ("10.035M", dec(10_035, 3), DecimalSI),
            ("1.3E+6", dec(13, 5), DecimalExponent),
            ("9.01", dec(901, -2), DecimalSI),
            ("6.987654321G", dec(6_987_654_321, 0), DecimalSI),
            ("1.01E", dec(101, 16), DecimalSI),
            ("3.001n", dec(4, -9), DecimalSI),
            ("1.1E-9", dec(2, -9), DecimalExponent),
            ("0.0000000001", dec(1, -9), DecimalSI),
            ("0.00000012345", dec(124, -9), DecimalSI),
            ("9Ei", i128::from(i64::MAX) * 1_000_000_000, BinarySI),
            ("9223372036854775807Ki", i128::from(i64::MAX) * 1_000_000_000, BinarySI),
            ("12E", dec(12, 18), DecimalSI),
            ("100.035Ki", dec(10_243_584, -2), BinarySI),
            ("0.5Mi", dec(512 * 1024, 0), BinarySI),
            ("0.025Ti", dec(274_877_906_944, -1), BinarySI),
            ("0.000000000001Ki", dec(2, -9), DecimalSI),
            (".001", dec(1, -3), DecimalSI),
            ("1.", dec(1, 0), DecimalSI),
            ("1.G", dec(1, 9), DecimalSI),
            (" 64Ki ", dec(65_536, 0), BinarySI),
        ];
        for &(input, nanos, format) in cases {
            let q = Quantity::parse(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(q.nano_value(), nanos, "value of {input}");
            assert_eq!(q.format(), format, "format of {input}");
            let negative = Quantity::parse(&format!("-{}", input.trim())).expect("negative");
            assert_eq!(negative.nano_value(), -nanos, "value of -{input}");
            let plus = Quantity::parse(&format!("+{}", input.trim())).expect("explicit plus");
            assert_eq!(plus.nano_value(), nanos, "value of +{input}");
        }
        for bad in
            ["", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-"]
        {
            assert!(Quantity::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn quantity_should_print_canonical_text() {
        use Format::*;
        // apimachinery's TestQuantityString: value, format, canonical text, another spelling.
        let cases: &[(i128, Format, &str, &str)] = &[
            (dec(1 << 30, 0), BinarySI, "1Gi", "1024Mi"),
            (dec(300 << 20, 0), BinarySI, "300Mi", "307200Ki"),
            (dec(6 * 1024, 0), BinarySI, "6Ki", ""),
            (dec(1001 << 30, 0), BinarySI, "1001Gi", "1025024Mi"),
            (dec(1 << 40, 0), BinarySI, "1Ti", "1024Gi"),
            (dec(5, 0), BinarySI, "5", "5000m"),
            (dec(500, -3), BinarySI, "500m", "0.5"),
            (dec(1, 9), DecimalSI, "1G", "1000M"),
            (dec(1000, 6), DecimalSI, "1G", "0.001T"),
            (dec(1, -3), DecimalSI, "1m", "1000u"),
            (dec(80, -3), DecimalSI, "80m", ""),
            (dec(1080, -3), DecimalSI, "1080m", "1.08"),
            (dec(108, -2), DecimalSI, "1080m", "1080000000n"),
            (dec(300, 6), DecimalSI, "300M", ""),
            (dec(1_234_567, 6), DecimalSI, "1234567M", ""),
            (dec(1_234_567, -3), BinarySI, "1234567m", ""),
            (dec(3, 3), DecimalSI, "3k", ""),
            (dec(1025, 0), BinarySI, "1025", ""),
            (0, DecimalSI, "0", ""),
            (0, BinarySI, "0", ""),
            (dec(1, 9), DecimalExponent, "1e9", ".001e12"),
            (dec(1, -3), DecimalExponent, "1e-3", "0.001e0"),
            (dec(1, -9), DecimalExponent, "1e-9", "1000e-12"),
            (dec(80, -3), DecimalExponent, "80e-3", ""),
            (dec(300, 6), DecimalExponent, "300e6", ""),
            (dec(3, 3), DecimalExponent, "3e3", ""),
            (0, DecimalExponent, "0", "00"),
            (dec(1, -9), DecimalSI, "1n", ""),
            (dec(10800, -10), DecimalSI, "1080n", ""),
            (dec(1080, -6), DecimalSI, "1080u", ""),
        ];
        for &(nanos, format, text, alternate) in cases {
            let q = Quantity::from_nanos(nanos, format);
            assert_eq!(q.to_string(), text, "{nanos} {format:?}");
            if nanos != 0 {
                assert_eq!((-q).to_string(), format!("-{text}"), "negative {text}");
            }
            let parsed = Quantity::parse(text).expect("canonical text parses");
            assert_eq!(parsed.to_string(), text, "{text} prints as written");
            if !alternate.is_empty() {
                let other = Quantity::parse(alternate).expect("alternate parses");
                assert_eq!(other.to_string(), text, "{alternate} prints canonically");
            }
        }
        // TestQuantityParseEmit.
        for (input, text) in [
            ("1024Mi", "1Gi"),
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
            ("1.5", "1500m"),
            ("1000", "1k"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
        ] {
            let q = Quantity::parse(input).expect("parses");
            assert_eq!(q.to_string(), text, "{input}");
            assert_eq!((-q).to_string(), format!("-{text}"), "-{input}");
        }
    }

    #[test]
    fn quantity_arithmetic_should_keep_the_left_format_unless_zero() {
        let q = |s: &str| Quantity::parse(s).expect("parses");
        // TestQuantityAddZeroPreservesSuffix / SubZero.
        for text in ["100m", "1Gi"] {
            assert_eq!((q(text) + Quantity::zero()).to_string(), text);
            assert_eq!((Quantity::zero() + q(text)).to_string(), text);
            assert_eq!((q(text) - q("0")).to_string(), text);
            assert_eq!((q("0") - q(text)).to_string(), format!("-{text}"));
        }
        assert_eq!((q("1Gi") + q("512Mi")).to_string(), "1536Mi");
        assert_eq!((q("500m") + q("1")).to_string(), "1500m");
        assert_eq!((q("10") + q("1Ki")).format(), Format::DecimalSI);
        assert_eq!((q("1Ki") + q("10")).to_string(), "1034");
        assert_eq!((q("2Gi") - q("1Gi")).to_string(), "1Gi");
        assert_eq!((q("1") - q("1")).to_string(), "0");
        assert_eq!(Quantity::new(3, Format::DecimalSI).to_string(), "3");
        assert_eq!(Quantity::new_milli(1500, Format::DecimalSI).to_string(), "1500m");
        assert_eq!(Quantity::new(2048, Format::BinarySI).to_string(), "2Ki");
    }

    #[test]
    fn quantity_should_compare_and_round_like_apimachinery() {
        let q = |s: &str| Quantity::parse(s).expect("parses");
        assert_eq!(q("1Gi"), q("1073741824"));
        assert!(q("1500m") < q("2"));
        assert!(q("-1") < Quantity::zero());
        assert!(q("0m").is_zero());
        assert!(q("-5").is_negative());
        assert_eq!(q("500m").value(), 1);
        assert_eq!(q("-500m").value(), -1);
        assert_eq!(q("1500u").milli_value(), 2);
        assert_eq!(q("1Ki").milli_value(), 1_024_000);
        let rounded = q("1500m").round_up_to_units();
        assert_eq!(rounded.to_string(), "2");
        assert_eq!(q("+1").to_string(), "+1", "canonical int64 text is kept as written");
        assert_eq!(q("+1").round_up_to_units().to_string(), "+1");
    }
}
