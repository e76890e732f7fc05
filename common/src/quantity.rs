//! Kubernetes resource quantities (`250m`, `1Gi`, `1e3`, `1.5`).
//!
//! Grammar (apimachinery `resource.Quantity`):
//! `<sign>? <digits>? ('.' <digits>?)? <suffix>` with at least one digit, where the
//! suffix is a binary SI suffix (`Ki`…`Ei`), a decimal SI suffix (`n u m "" k M G T P E`)
//! or a decimal exponent (`e`/`E` followed by a signed integer).
//!
//! Values are kept exact (decimal digits plus powers of ten and 1024) so the
//! integer conversions round the way Go's `MilliValue()` / `Value()` do: up,
//! away from zero, never through a lossy float.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity {0:?}: no digits")]
    NoDigits(String),
    #[error("quantity {quantity:?}: unknown suffix {suffix:?}")]
    UnknownSuffix { quantity: String, suffix: String },
}

/// An exactly represented quantity: `±digits × 10^exp10 × 1024^bin_pow`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exact<'a> {
    negative: bool,
    /// Significant digits, no leading zeros, no trailing zeros (folded into
    /// `exp10`); empty means zero.
    digits: Cow<'a, str>,
    exp10: i64,
    bin_pow: u32,
}

fn parse_exact(s: &str) -> Result<Exact<'_>, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_part = &s[int_start..pos];
    let mut frac_part = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_part = &s[frac_start..pos];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(QuantityError::NoDigits(s.to_owned()));
    }
    let suffix = &s[pos..];
    let (suffix_exp10, bin_pow) =
        interpret_suffix(suffix).ok_or_else(|| QuantityError::UnknownSuffix {
            quantity: s.to_owned(),
            suffix: suffix.to_owned(),
        })?;

    // digits = int_part ++ frac_part, value = digits × 10^(-len(frac_part)).
    let digits: Cow<'_, str> = if frac_part.is_empty() {
        Cow::Borrowed(int_part)
    } else if int_part.is_empty() {
        Cow::Borrowed(frac_part)
    } else {
        Cow::Owned(format!("{int_part}{frac_part}"))
    };
    // Leading zeros carry nothing; trailing zeros move into the exponent.
    fn significant(d: &str) -> (&str, usize) {
        let no_leading = d.trim_start_matches('0');
        let trimmed = no_leading.trim_end_matches('0');
        (trimmed, no_leading.len() - trimmed.len())
    }
    let (digits, trailing_zeros) = match digits {
        Cow::Borrowed(d) => {
            let (t, z) = significant(d);
            (Cow::Borrowed(t), z)
        }
        Cow::Owned(d) => {
            let (t, z) = significant(&d);
            (Cow::Owned(t.to_owned()), z)
        }
    };
    let exp10 = suffix_exp10 - frac_part.len() as i64 + trailing_zeros as i64;
    Ok(Exact {
        negative,
        digits,
        exp10,
        bin_pow,
    })
}

/// Returns (power of ten, power of 1024) for a suffix.
fn interpret_suffix(suffix: &str) -> Option<(i64, u32)> {
    let decimal = |e: i64| Some((e, 0));
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
        "Ki" => Some((0, 1)),
        "Mi" => Some((0, 2)),
        "Gi" => Some((0, 3)),
        "Ti" => Some((0, 4)),
        "Pi" => Some((0, 5)),
        "Ei" => Some((0, 6)),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Exponents beyond this only saturate or vanish; keep the arithmetic small.
            let e: i64 = rest.parse().unwrap_or(if rest.starts_with('-') {
                i64::MIN / 4
            } else {
                i64::MAX / 4
            });
            decimal(e.clamp(-1_000_000, 1_000_000))
        }
    }
}

impl Exact<'_> {
    fn to_f64(&self) -> f64 {
        if self.digits.is_empty() {
            return 0.0;
        }
        // Let the standard library round the decimal correctly, then apply the
        // binary factor, which is exact in floating point.
        let decimal: f64 = format!("{}e{}", self.digits, self.exp10)
            .parse()
            .unwrap_or(f64::INFINITY);
        let value = decimal * 2f64.powi(10 * self.bin_pow as i32);
        if self.negative { -value } else { value }
    }

    /// `ceil(|value| × 10^scale)` with the sign reapplied (Go rounds away from
    /// zero), saturated to the i64 range.
    fn scaled(&self, scale: i64) -> i64 {
        const MAX_DIGITS: usize = 38; // fits u128
        if self.digits.is_empty() {
            return 0;
        }
        let (kept, dropped) = if self.digits.len() > MAX_DIGITS {
            self.digits.split_at(MAX_DIGITS)
        } else {
            (self.digits.as_ref(), "")
        };
        let inexact = dropped.bytes().any(|b| b != b'0');
        let Ok(mut magnitude) = kept.parse::<u128>() else {
            return self.saturated();
        };
        for _ in 0..self.bin_pow {
            match magnitude.checked_mul(1024) {
                Some(m) => magnitude = m,
                None => return self.saturated(),
            }
        }
        let exp = self.exp10 + dropped.len() as i64 + scale;
        let magnitude = if exp >= 0 {
            let Some(factor) = u32::try_from(exp).ok().and_then(|e| 10u128.checked_pow(e)) else {
                return self.saturated();
            };
            match magnitude.checked_mul(factor) {
                Some(m) => m,
                None => return self.saturated(),
            }
        } else {
            match u32::try_from(-exp).ok().and_then(|e| 10u128.checked_pow(e)) {
                Some(divisor) => {
                    let quotient = magnitude / divisor;
                    if magnitude % divisor != 0 || inexact {
                        quotient + 1
                    } else {
                        quotient
                    }
                }
                // Smaller than one unit at this scale, but not zero: rounds up to 1.
                None => 1,
            }
        };
        match i64::try_from(magnitude) {
            Ok(m) if self.negative => -m,
            Ok(m) => m,
            Err(_) => self.saturated(),
        }
    }

    fn saturated(&self) -> i64 {
        if self.negative { i64::MIN } else { i64::MAX }
    }
}

/// Parses a quantity to its value in base units (cores, bytes).
pub fn parse(s: &str) -> Result<f64, QuantityError> {
    parse_exact(s).map(|e| e.to_f64())
}

/// Parses a quantity to thousandths of a base unit, rounded up as Go's
/// `Quantity.MilliValue()` does, saturating at the i64 range.
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    parse_exact(s).map(|e| e.scaled(3))
}

/// Parses a quantity to whole base units, rounded up as Go's `Quantity.Value()`
/// does, saturating at the i64 range.
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    parse_exact(s).map(|e| e.scaled(0))
}

/// CPU in millicores (`MilliValue()`). Quantities in API objects have been
/// validated by the API server; an unparsable one counts as zero and is logged.
pub fn cpu_millis(q: &Quantity) -> i64 {
    parse_milli(&q.0).unwrap_or_else(|err| {
        tracing::warn!(%err, "ignoring unparsable cpu quantity");
        0
    })
}

/// Memory (or any whole-unit resource) in bytes (`Value()`), zero and logged
/// when unparsable.
pub fn bytes(q: &Quantity) -> i64 {
    parse_value(&q.0).unwrap_or_else(|err| {
        tracing::warn!(%err, "ignoring unparsable quantity");
        0
    })
}

/// The canonical string Go prints for `resource.NewMilliQuantity(milli,
/// resource.DecimalSI).String()`: trailing zeros folded into an SI suffix whose
/// exponent is a multiple of three (`250m`, `2`, `10500m`, `2k`, `0`).
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let mut mantissa = i128::from(milli);
    let mut exponent: i32 = -3;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    // Go's `%` keeps the dividend's sign, as Rust's `%` does.
    match exponent % 3 {
        1 | -2 => {
            mantissa *= 10;
            exponent -= 1;
        }
        2 | -1 => {
            mantissa *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    let suffix = match exponent {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Unreachable for i64 millis (|value| < 9.3e15), kept total for safety.
        _ => return format!("{mantissa}e{exponent}"),
    };
    format!("{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_binary_and_exponent_forms() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("1", 1.0),
            ("250m", 0.25),
            ("1.5", 1.5),
            ("+2", 2.0),
            ("-3k", -3000.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("100n", 1e-7),
            ("7u", 7e-6),
            ("1Ki", 1024.0),
            ("1Mi", 1_048_576.0),
            ("1Gi", 1_073_741_824.0),
            ("1.5Gi", 1_610_612_736.0),
            ("2Ti", 2_199_023_255_552.0),
            ("1Ei", 1_152_921_504_606_846_976.0),
            ("1G", 1e9),
            ("1E", 1e18),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("12e-3", 0.012),
            ("1e+2", 100.0),
        ];
        for &(input, want) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{input}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn rejects_malformed_quantities() {
        assert_eq!(parse(""), Err(QuantityError::Empty));
        for bad in [
            "m", "-", ".", "1K", "1 Gi", "1Gb", "1e", "1e+", "1.2.3", "abc", "1mm", " 1", "1Gi ",
            "0x10",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn milli_and_value_round_up_like_go() {
        assert_eq!(parse_milli("250m").unwrap(), 250);
        assert_eq!(parse_milli("2").unwrap(), 2000);
        assert_eq!(parse_milli("0.1").unwrap(), 100);
        assert_eq!(parse_milli("1.0005").unwrap(), 1001);
        assert_eq!(parse_milli("100n").unwrap(), 1);
        assert_eq!(parse_milli("1e-30").unwrap(), 1);
        assert_eq!(parse_milli("-0.5m").unwrap(), -1);
        assert_eq!(parse_value("1Gi").unwrap(), 1_073_741_824);
        assert_eq!(parse_value("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_value("0.5").unwrap(), 1);
        assert_eq!(parse_value("1500m").unwrap(), 2);
        assert_eq!(parse_value("128974848").unwrap(), 128_974_848);
        assert_eq!(parse_value("129e6").unwrap(), 129_000_000);
        assert_eq!(parse_value("123Mi").unwrap(), 128_974_848);
        assert_eq!(parse_value("0.000").unwrap(), 0);
    }

    #[test]
    fn huge_values_saturate_instead_of_wrapping() {
        assert_eq!(parse_value("100Ei").unwrap(), i64::MAX);
        assert_eq!(parse_milli("1e400").unwrap(), i64::MAX);
        assert_eq!(parse_value("-1e400").unwrap(), i64::MIN);
        assert_eq!(
            parse_value("123456789012345678901234567890123456789012345").unwrap(),
            i64::MAX
        );
        // Many digits, small after scaling: rounded up, not saturated.
        assert_eq!(
            parse_milli("0.0000000000000000000000000000000000000000011").unwrap(),
            1
        );
    }

    #[test]
    fn k8s_quantity_helpers() {
        assert_eq!(cpu_millis(&Quantity("1500m".into())), 1500);
        assert_eq!(cpu_millis(&Quantity("0.25".into())), 250);
        assert_eq!(bytes(&Quantity("1Gi".into())), 1 << 30);
        assert_eq!(bytes(&Quantity("garbage".into())), 0);
    }

    #[test]
    fn format_milli_matches_go_canonical_form() {
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (250, "250m"),
            (1, "1m"),
            (1000, "1"),
            (2000, "2"),
            (10500, "10500m"),
            (1500, "1500m"),
            (100, "100m"),
            (2_000_000, "2k"),
            (1_500_000, "1500"),
            (10_000, "10"),
            (100_000, "100"),
            (-250, "-250m"),
            (-3000, "-3"),
            (123_456_000_000, "123456k"),
            (i64::MAX, "9223372036854775807m"),
        ];
        for &(milli, want) in cases {
            assert_eq!(format_milli(milli), want, "format_milli({milli})");
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for milli in [0, 1, 7, 250, 999, 1000, 1001, 12_340, 5_000_000, -42] {
            assert_eq!(parse_milli(&format_milli(milli)).unwrap(), milli);
        }
    }
}
