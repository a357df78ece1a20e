//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `2e3`) as
//! integers, rounded up the way `resource.Quantity` rounds
//! (`MilliValue()`, `Value()`), so that requests summed here match what the
//! scheduler sums.

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a Kubernetes quantity")]
    Malformed(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The quantity in thousandths of its unit, rounded up (CPU in millicores).
pub fn milli_value(quantity: &str) -> Result<i64, QuantityError> {
    scaled(quantity, 1000)
}

/// The quantity in its unit, rounded up (memory in bytes, pods in pods).
pub fn value(quantity: &str) -> Result<i64, QuantityError> {
    scaled(quantity, 1)
}

/// `quantity × factor`, rounded towards positive infinity.
fn scaled(quantity: &str, factor: u128) -> Result<i64, QuantityError> {
    let malformed = || QuantityError::Malformed(quantity.to_owned());
    let too_large = || QuantityError::TooLarge(quantity.to_owned());
    let s = quantity.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = s.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(malformed());
    }
    if fraction.contains('.') {
        return Err(malformed());
    }
    // value = mantissa / 10^fraction_digits × multiplier
    let digits = whole.bytes().chain(fraction.bytes());
    let mut mantissa: u128 = 0;
    for digit in digits {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    let (mut numerator, mut denominator) = (mantissa, pow10(fraction.len()).ok_or_else(too_large)?);
    match suffix_scale(suffix).ok_or_else(malformed)? {
        Scale::Binary(shift) => {
            if numerator.leading_zeros() < shift {
                return Err(too_large());
            }
            numerator <<= shift;
        }
        Scale::Decimal(exponent) if exponent >= 0 => {
            numerator = numerator
                .checked_mul(pow10(exponent.unsigned_abs() as usize).ok_or_else(too_large)?)
                .ok_or_else(too_large)?
        }
        Scale::Decimal(exponent) => {
            match pow10(exponent.unsigned_abs() as usize).and_then(|p| denominator.checked_mul(p)) {
                Some(d) => denominator = d,
                // Smaller than anything representable: rounds up to one unit.
                None => return Ok(if numerator == 0 || negative { 0 } else { 1 }),
            }
        }
    }
    numerator = numerator.checked_mul(factor).ok_or_else(too_large)?;
    let magnitude = if negative {
        numerator / denominator
    } else {
        numerator.div_ceil(denominator)
    };
    let magnitude = i64::try_from(magnitude).map_err(|_| too_large())?;
    Ok(if negative { -magnitude } else { magnitude })
}

enum Scale {
    /// × 2^n
    Binary(u32),
    /// × 10^n
    Decimal(i32),
}

fn suffix_scale(suffix: &str) -> Option<Scale> {
    Some(match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        exponent => {
            let digits = exponent
                .strip_prefix('e')
                .or_else(|| exponent.strip_prefix('E'))?;
            let unsigned = digits
                .strip_prefix('-')
                .or_else(|| digits.strip_prefix('+'))
                .unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Scale::Decimal(digits.parse().ok()?)
        }
    })
}

fn pow10(exponent: usize) -> Option<u128> {
    10u128.checked_pow(u32::try_from(exponent).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        for (q, m) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            ("2", 2000),
            ("250m", 250),
            ("1k", 1_000_000),
            ("0", 0),
            (".5", 500),
            ("5.", 5000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("+1", 1000),
        ] {
            assert_eq!(milli_value(q), Ok(m), "{q}");
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        for (q, b) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("1G", 1_000_000_000),
            ("512Ki", 512 << 10),
            ("100", 100),
            ("1e9", 1_000_000_000),
            ("8E", 8_000_000_000_000_000_000),
        ] {
            assert_eq!(value(q), Ok(b), "{q}");
        }
    }

    #[test]
    fn fractions_round_up_like_kubernetes() {
        assert_eq!(milli_value("0.0001"), Ok(1));
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(value("100m"), Ok(1));
        assert_eq!(value("1e-40"), Ok(1));
        assert_eq!(value("0e-40"), Ok(0));
        assert_eq!(milli_value("-100m"), Ok(-100));
        assert_eq!(value("-1500m"), Ok(-1));
    }

    #[test]
    fn garbage_is_an_error() {
        for q in [
            "", "m", "abc", "1.2.3", "1Q", "1mi", "1e", "1e+", "--1", "1 Gi", "1Ki2",
        ] {
            assert!(
                matches!(milli_value(q), Err(QuantityError::Malformed(_))),
                "{q}"
            );
        }
        assert!(matches!(value("100Ei"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            value("99999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(value("1e40"), Err(QuantityError::TooLarge(_))));
    }
}
