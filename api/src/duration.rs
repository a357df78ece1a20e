//! Durations as the Spotwright kinds spell them: Go's `time.ParseDuration`
//! format (`720h`, `1h30m`, `90s`, `1.5h`), and `Never` where a lifetime
//! may be unbounded (`expireAfter`).

use std::time::Duration;

/// Why a string is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({reason}); use e.g. 720h, 1h30m or 90s")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// How long a node may live: `spec.expireAfter` of a NodePool or NodeClaim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// `Never`: the node is never replaced for its age.
    Never,
    /// Replaced once it is this old.
    After(Duration),
}

impl Lifetime {
    /// Parses `Never` or a Go duration.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        if input.trim() == "Never" {
            return Ok(Lifetime::Never);
        }
        parse_go_duration(input).map(Lifetime::After)
    }
}

const UNITS: [(&str, f64); 8] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// Parses Go's duration format: a sequence of decimal numbers, each with an
/// optional fraction and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`); `0` alone
/// is allowed. Negative durations are refused: no Spotwright field takes one.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let bad = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(bad("negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut seconds = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad("expected a number"));
        }
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                if unit.is_empty() {
                    bad("missing unit")
                } else {
                    bad("unknown unit")
                }
            })?;
        let number: f64 = number.parse().map_err(|_| bad("expected a number"))?;
        seconds += number * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (input, secs) in [
            ("720h", 720.0 * 3600.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
            ("0", 0.0),
            ("0s", 0.0),
            ("500ms", 0.5),
            ("2m3.5s", 123.5),
            ("+5m", 300.0),
            ("10us", 0.00001),
            ("10µs", 0.00001),
        ] {
            let parsed = parse_go_duration(input).unwrap();
            assert!(
                (parsed.as_secs_f64() - secs).abs() < 1e-9,
                "{input}: {parsed:?}"
            );
        }
    }

    #[test]
    fn bad_durations() {
        for input in ["", "h", "5", "5d", "-5m", "1..5h", ".h", "5m3", "abc"] {
            let err = parse_go_duration(input).unwrap_err();
            assert_eq!(err.input, input);
            assert_eq!(err.to_string().lines().count(), 1);
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(Lifetime::parse("Never"), Ok(Lifetime::Never));
        assert_eq!(
            Lifetime::parse("720h"),
            Ok(Lifetime::After(Duration::from_secs(720 * 3600)))
        );
        assert!(Lifetime::parse("never").is_err());
    }
}
