//! Exact integer readings of resource quantities (`100m`, `1.5Gi`, `2e3`), rounded up
//! like upstream's `Quantity.MilliValue()` / `Value()`, so that a request of `0.1` cpu
//! is 100 millicores and never 101 through float error.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The quantity in thousandths (millicores for cpu), rounded up; `None` if unparsable.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 3)
}

/// The quantity as a whole number (bytes, counts), rounded up; `None` if unparsable.
pub fn value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 0)
}

/// `s` × 10^`scale`, rounded up, saturating at the i64 range.
fn scaled(s: &str, scale: i32) -> Option<i64> {
    let s = s.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c - b'0'))?;
    }
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    let (binary_shift, mut exp10) = match suffix {
        "" => (0u32, 0i32),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            (0, exp.parse::<i32>().ok()?)
        }
    };
    exp10 += scale - frac_digits;
    let saturate = if negative { i64::MIN } else { i64::MAX };
    let Some(mut numerator) = mantissa.checked_mul(1i128 << binary_shift) else {
        return Some(saturate);
    };
    let mut denominator: i128 = 1;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            match numerator.checked_mul(10) {
                Some(n) => numerator = n,
                None => return Some(saturate),
            }
        }
    } else {
        for _ in 0..(-exp10).min(40) {
            denominator *= 10;
        }
    }
    // Rounded away from zero, as upstream's scaled values are.
    let magnitude = (numerator + denominator - 1) / denominator;
    let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn milli_values_are_exact_and_round_up() {
        for (input, want) in [
            ("100m", Some(100)),
            ("0.1", Some(100)),
            ("0.3", Some(300)),
            ("1", Some(1000)),
            ("2.5", Some(2500)),
            ("1500u", Some(2)),
            ("1n", Some(1)),
            ("1k", Some(1_000_000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("-100m", Some(-100)),
            ("", None),
            ("abc", None),
            ("1.2.3", None),
            ("1Zi", None),
        ] {
            assert_eq!(milli_value(&q(input)), want, "{input}");
        }
    }

    #[test]
    fn values_cover_binary_and_decimal_suffixes() {
        for (input, want) in [
            ("1Ki", 1024),
            ("1Mi", 1024 * 1024),
            ("1.5Gi", 1536 * 1024 * 1024),
            ("200Mi", 200 * 1024 * 1024),
            ("1G", 1_000_000_000),
            ("110", 110),
            ("100m", 1),
            ("8Ei", i64::MAX),
            ("+5", 5),
        ] {
            assert_eq!(value(&q(input)), Some(want), "{input}");
        }
    }
}
