//! Durations as people type them: `90d`, `2160h`, `5y`, `1h30m`.
//!
//! Units: `s`, `m` (minutes), `h`, `d`, `w` (7 days), `y` (365 days).
//! Groups add up; every group needs a unit.

use std::time::Duration;

use crate::Error;

const UNITS: [(&str, u64); 6] = [
    ("y", 365 * 86_400),
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// Parses `90d`, `2160h`, `5y`, `1h30m`, `0s`.
pub fn parse_duration(input: &str) -> Result<Duration, Error> {
    let bad = |reason: &str| Error::Duration {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("empty; use e.g. 90d, 2160h, 5y, 1h30m"));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number; use e.g. 90d, 2160h, 5y, 1h30m"));
        }
        let (number, tail) = rest.split_at(digits);
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(letters);
        let seconds = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, secs)| *secs)
            .ok_or_else(|| {
                if unit.is_empty() {
                    bad("missing unit (s, m, h, d, w or y)")
                } else {
                    bad(&format!("unknown unit {unit:?} (use s, m, h, d, w or y)"))
                }
            })?;
        let number: u64 = number.parse().map_err(|_| bad("number too large"))?;
        total = number
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
        rest = tail;
    }
    Ok(Duration::from_secs(total))
}

/// The shortest exact spelling in the units above, e.g. `90d`, `1h30m`, `0s`.
/// Sub-second parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, unit) in UNITS {
        // `w` would turn 14d into 2w: days read better.
        if name == "w" {
            continue;
        }
        if secs >= unit {
            out.push_str(&format!("{}{name}", secs / unit));
            secs %= unit;
        }
    }
    out
}

/// `clap` value parser for duration flags.
pub fn clap_duration(input: &str) -> Result<Duration, String> {
    parse_duration(input).map_err(|e| match e {
        Error::Duration { reason, .. } => reason,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn parses_what_people_type() {
        for (input, secs) in [
            ("90d", 90 * DAY),
            ("2160h", 2160 * 3600),
            ("5y", 5 * 365 * DAY),
            ("1h30m", 5400),
            ("1h", 3600),
            ("30s", 30),
            ("0s", 0),
            ("2w", 14 * DAY),
            (" 1d ", DAY),
            ("1d12h", DAY + 12 * 3600),
        ] {
            assert_eq!(
                parse_duration(input).unwrap(),
                Duration::from_secs(secs),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "",
            "90",
            "d",
            "1x",
            "1.5h",
            "-1d",
            "1 d",
            "1dd",
            "99999999999999999999y",
            "18446744073709551615y",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?} accepted");
        }
        let err = parse_duration("90").unwrap_err().to_string();
        assert!(err.contains("missing unit"), "{err}");
    }

    #[test]
    fn formats_back() {
        for (secs, text) in [
            (0, "0s"),
            (90 * DAY, "90d"),
            (5 * 365 * DAY, "5y"),
            (5400, "1h30m"),
            (DAY + 1, "1d1s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
    }
}
