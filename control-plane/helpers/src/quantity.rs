//! Resource quantities (`256Mi`, `1.5G`, `500m`, `2`, `2.2e9`) as integers, as apimachinery's
//! `resource.Quantity` gives them: [`value`] in base units (bytes, cores, counts) and
//! [`milli_value`] in thousandths, both rounded up. Exact: the number is read as a decimal
//! fraction and scaled in 128-bit integers, so `9m` CPU is 9 millicores (through `f64` it
//! would be 9.000000000000002 and round up to 10). Only a quantity too large for that falls
//! back to floating point.

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
}
