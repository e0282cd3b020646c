//! Resource quantities (`k8s.io/apimachinery/pkg/api/resource`): parsing for
//! comparisons (requests ≤ limits, positive storage requests). Values are held as
//! `f64`, which is exact enough for ordering real-world quantities.

use once_cell::sync::Lazy;
use regex::Regex;

/// The upstream error for an unparsable quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

static QUANTITY: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$").expect("invariant: static regex")
});

/// Parses a quantity such as `100m`, `1.5Gi`, `2e3` into its numeric value.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let caps = QUANTITY.captures(s.trim())?;
    let number = caps.get(1)?.as_str();
    if number.matches('.').count() > 1
        || number.trim_start_matches(['+', '-']).is_empty()
        || number == "."
    {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let suffix = caps.get(2).map_or("", |m| m.as_str());
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    Some(value * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffix_forms() {
        let cases = [
            ("1", Some(1.0)),
            ("100m", Some(0.1)),
            ("1.5", Some(1.5)),
            ("1Ki", Some(1024.0)),
            ("2Gi", Some(2.0 * 1024.0 * 1024.0 * 1024.0)),
            ("1e3", Some(1000.0)),
            ("1E-3", Some(0.001)),
            ("5M", Some(5e6)),
            ("-1", Some(-1.0)),
            ("abc", None),
            ("1Zi", None),
            ("", None),
            ("1..2", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), want, "{s}");
        }
    }
}
