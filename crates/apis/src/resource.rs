//! Exact resource quantities (upstream `k8s.io/apimachinery/pkg/api/resource`) for the
//! code that adds and compares them: quota usage, LimitRange bounds, HPA metrics.
//!
//! A [`Quantity`] holds its amount in nano-units as an `i128` (exact for every real-world
//! value: `1Ei` is 1.15e27 nano-units, well inside the range) and the format it was
//! written in. Printing follows upstream's canonical form: binary amounts that are whole
//! multiples of 1024 keep a binary suffix (`256Mi`), everything else is printed with the
//! largest decimal SI suffix that keeps the number whole (`1500m`, `2k`, `500u`). Sums keep
//! the format of their first non-zero operand, as upstream's `Quantity.Add` does.

use std::cmp::Ordering;
use std::fmt;

/// How a quantity is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `Ki`, `Mi`, … suffixes.
    BinarySI,
    /// `m`, `k`, `M`, … suffixes.
    #[default]
    DecimalSI,
    /// `e3`-style exponents.
    DecimalExponent,
}

const NANO: i128 = 1_000_000_000;

/// An exact quantity. Equality and ordering compare amounts only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    nanos: i128,
    format: Format,
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct ParseQuantityError;

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// A whole number of units, printed in decimal SI.
    pub fn from_int(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANO,
            format: Format::DecimalSI,
        }
    }

    /// Thousandths of a unit (millicores), printed in decimal SI.
    pub fn from_milli(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    /// A whole number of units printed with binary suffixes where they fit (bytes).
    pub fn from_bytes(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANO,
            format: Format::BinarySI,
        }
    }

    pub fn parse(s: &str) -> Result<Quantity, ParseQuantityError> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(ParseQuantityError);
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let (base, exp, format): (i128, i32, Format) = match suffix {
            "" => (1, 0, Format::DecimalSI),
            "Ki" => (1 << 10, 0, Format::BinarySI),
            "Mi" => (1 << 20, 0, Format::BinarySI),
            "Gi" => (1 << 30, 0, Format::BinarySI),
            "Ti" => (1 << 40, 0, Format::BinarySI),
            "Pi" => (1 << 50, 0, Format::BinarySI),
            "Ei" => (1 << 60, 0, Format::BinarySI),
            "n" => (1, -9, Format::DecimalSI),
            "u" => (1, -6, Format::DecimalSI),
            "m" => (1, -3, Format::DecimalSI),
            "k" => (1, 3, Format::DecimalSI),
            "M" => (1, 6, Format::DecimalSI),
            "G" => (1, 9, Format::DecimalSI),
            "T" => (1, 12, Format::DecimalSI),
            "P" => (1, 15, Format::DecimalSI),
            "E" => (1, 18, Format::DecimalSI),
            other => {
                let e = other.strip_prefix(['e', 'E']).ok_or(ParseQuantityError)?;
                (
                    1,
                    e.parse::<i32>().map_err(|_| ParseQuantityError)?,
                    Format::DecimalExponent,
                )
            }
        };
        // Digits as one integer, scaled by 10^-frac_len.
        let mut mantissa: i128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(c - b'0')))
                .ok_or(ParseQuantityError)?;
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| ParseQuantityError)?;
        // nanos = mantissa × base × 10^(exp - frac_len + 9), rounded up (upstream rounds
        // sub-nano amounts up).
        let shift = exp - frac_len + 9;
        let scaled = mantissa.checked_mul(base).ok_or(ParseQuantityError)?;
        let nanos = if shift >= 0 {
            let mut v = scaled;
            for _ in 0..shift {
                v = v.checked_mul(10).ok_or(ParseQuantityError)?;
            }
            v
        } else {
            let mut d: i128 = 1;
            for _ in 0..(-shift).min(38) {
                d *= 10;
            }
            (scaled + d - 1) / d
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
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

    /// The amount in thousandths, rounded up (upstream `MilliValue`).
    pub fn milli_value(&self) -> i64 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// The amount in whole units, rounded up (upstream `Value`).
    pub fn value(&self) -> i64 {
        ceil_div(self.nanos, NANO)
    }

    /// The amount as a float, for ratios.
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// `self + other`, in the format of the first non-zero operand.
    pub fn add(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format,
        }
    }

    pub fn sub(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos.saturating_sub(other.nanos),
            format,
        }
    }

    /// `self × n`.
    pub fn mul(&self, n: i64) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_mul(i128::from(n)),
            format: self.format,
        }
    }

    /// The canonical string (upstream `Quantity.String`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole = abs % (NANO as u128) == 0;
        if self.format == Format::BinarySI && whole && abs >= 1024 * NANO as u128 {
            let mut units = abs / NANO as u128;
            let mut exp = 0;
            while exp < 6 && units % 1024 == 0 {
                units /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{sign}{units}{suffix}");
        }
        // Decimal: mantissa × 10^exp with exp a multiple of 3 and the mantissa whole.
        let mut mantissa = abs;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                format!("{sign}{mantissa}")
            } else {
                format!("{sign}{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => return format!("{sign}{mantissa}e{exp}"),
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

fn ceil_div(n: i128, d: i128) -> i64 {
    let q = n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0);
    i64::try_from(q).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for Quantity {
    type Err = ParseQuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl From<Quantity> for k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    fn from(q: Quantity) -> Self {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.canonical())
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = ParseQuantityError;
    fn try_from(
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<Self, Self::Error> {
        Quantity::parse(&q.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).expect("parses")
    }

    #[test]
    fn prints_canonically_like_upstream() {
        let cases = [
            ("1", "1"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1024Ki", "1Mi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("100Ki", "100Ki"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("10G", "10G"),
            ("-250m", "-250m"),
            ("1n", "1n"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).canonical(), want, "{input}");
        }
    }

    #[test]
    fn sums_keep_the_first_operand_format() {
        assert_eq!(q("128Mi").add(&q("128Mi")).to_string(), "256Mi");
        assert_eq!(Quantity::ZERO.add(&q("128Mi")).to_string(), "128Mi");
        assert_eq!(q("100m").add(&q("200m")).to_string(), "300m");
        assert_eq!(q("1").add(&q("500m")).to_string(), "1500m");
        assert_eq!(q("2").sub(&q("2")).to_string(), "0");
        assert_eq!(q("500m").mul(3).to_string(), "1500m");
    }

    #[test]
    fn compares_and_rounds_up() {
        assert!(q("1") > q("999m"));
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("1Ki").value(), 1024);
        assert!(Quantity::parse("1.2.3").is_err());
        assert!(Quantity::parse("1Zi").is_err());
        assert!(Quantity::parse("").is_err());
    }
}
