//! Cron schedules for disruption budgets, in UTC and to the minute.
//!
//! Budgets say *when* they apply with the cron syntax operators already
//! know (and that Karpenter's NodePools use), so this follows Vixie cron as
//! Go's `robfig/cron` parses it: five fields, names for months and weekdays,
//! `7` as a second Sunday, and the old rule that when both day fields are
//! restricted a day matches if *either* does ("the 1st, and every Monday").
//! A day field counts as unrestricted when it is `*` (or `*/1`), as in
//! `robfig/cron`; `*/2` or `1-31` are restrictions.
//!
//! Each field is kept as a bit set, so matching is a few bit tests and the
//! backwards search for the last firing skips whole days and hours.

use std::time::Duration;

use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::Offset;
use k8s_openapi::jiff::Timestamp;

/// How far back [`Schedule::last_fire_at_or_before`] looks at most: a year
/// and a day, so that every yearly schedule is found.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a string is not a cron schedule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five whitespace-separated fields.
    #[error("cron schedule {input:?} has {found} fields; expected 5 (minute hour day-of-month month day-of-week) or a macro such as @daily")]
    FieldCount { input: String, found: usize },
    /// An `@` word that is not one of the known macros.
    #[error("cron schedule {input:?}: unknown macro; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")]
    UnknownMacro { input: String },
    /// One comma-separated part of a field is wrong.
    #[error("cron schedule {input:?}: {field} field, {part:?}: {reason}")]
    Field {
        input: String,
        field: &'static str,
        part: String,
        reason: String,
    },
}

/// A parsed five-field cron schedule, evaluated in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bits 0 (Sunday) to 6; a `7` in the input sets bit 0.
    days_of_week: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ...
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field::new("minute", 0, 59, &[]),
    Field::new("hour", 0, 23, &[]),
    Field::new("day-of-month", 1, 31, &[]),
    Field::new("month", 1, 12, &MONTHS),
    Field::new("day-of-week", 0, 7, &WEEKDAYS),
];

impl Field {
    const fn new(name: &'static str, min: u32, max: u32, names: &'static [&'static str]) -> Self {
        Field {
            name,
            min,
            max,
            names,
        }
    }
}

impl Schedule {
    /// Parses five fields (minute hour day-of-month month day-of-week) or
    /// one of the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
    /// `@daily`, `@midnight`, `@hourly`.
    pub fn parse(input: &str) -> Result<Schedule, CronError> {
        let trimmed = input.trim();
        let expanded = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => {
                    return Err(CronError::UnknownMacro {
                        input: input.to_owned(),
                    })
                }
            }
        } else {
            trimmed
        };
        let texts: Vec<&str> = expanded.split_whitespace().collect();
        if texts.len() != FIELDS.len() {
            return Err(CronError::FieldCount {
                input: input.to_owned(),
                found: texts.len(),
            });
        }
        let mut sets = [(0u64, false); 5];
        for ((set, field), text) in sets.iter_mut().zip(&FIELDS).zip(texts) {
            *set = parse_field(field, text, input)?;
        }
        let [(minutes, _), (hours, _), (days_of_month, dom_star), (months, _), (dow, dow_star)] =
            sets;
        Ok(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            // Fold `7` (bit 7) onto Sunday (bit 0).
            days_of_week: (dow | (dow >> 7)) & 0x7f,
            dom_star,
            dow_star,
        })
    }

    /// Whether the schedule fires in the minute that contains `t`.
    pub fn matches(&self, t: Timestamp) -> bool {
        let dt = Offset::UTC.to_datetime(t);
        bit(self.minutes, dt.minute()) && bit(self.hours, dt.hour()) && self.day_matches(dt.date())
    }

    /// The latest minute `m` with `m <= t` and `t - m <= lookback` at which
    /// the schedule fires. `lookback` is capped at [`MAX_LOOKBACK`].
    pub fn last_fire_at_or_before(&self, t: Timestamp, lookback: Duration) -> Option<Timestamp> {
        const MINUTE_NS: i128 = 60_000_000_000;
        let t_ns = t.as_nanosecond();
        let lookback_ns = lookback.min(MAX_LOOKBACK).as_nanos() as i128;
        // Minute indexes (minutes since the epoch) that may hold the answer.
        let hi = t_ns.div_euclid(MINUTE_NS) as i64;
        // The earliest minute at or after `t - lookback`: a ceiling division.
        let lo = -((lookback_ns - t_ns).div_euclid(MINUTE_NS)) as i64;
        if lo > hi {
            return None;
        }
        let (lo_day, hi_day) = (lo.div_euclid(1440), hi.div_euclid(1440));
        let mut date = Offset::UTC
            .to_datetime(Timestamp::from_second(hi * 60).ok()?)
            .date();
        for day in (lo_day..=hi_day).rev() {
            if self.day_matches(date) {
                // Minutes of this day, 0 to 1439, within `lo..=hi`.
                let start = (lo - day * 1440).max(0) as u32;
                let end = (hi - day * 1440).min(1439) as u32;
                if let Some(minute_of_day) = self.last_in_day(start, end) {
                    return Timestamp::from_second((day * 1440 + i64::from(minute_of_day)) * 60)
                        .ok();
                }
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    /// The latest minute of the day in `start..=end` whose hour and minute match.
    fn last_in_day(&self, start: u32, end: u32) -> Option<u32> {
        let (first_hour, last_hour) = (start / 60, end / 60);
        let mut top = last_hour;
        loop {
            let hour = highest_in(self.hours, first_hour, top)?;
            let low = if hour == first_hour { start % 60 } else { 0 };
            let high = if hour == last_hour { end % 60 } else { 59 };
            if let Some(minute) = highest_in(self.minutes, low, high) {
                return Some(hour * 60 + minute);
            }
            if hour == first_hour {
                return None;
            }
            top = hour - 1;
        }
    }

    fn day_matches(&self, date: Date) -> bool {
        if !bit(self.months, date.month()) {
            return false;
        }
        let dom = bit(self.days_of_month, date.day());
        let dow = bit(self.days_of_week, date.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn bit(set: u64, n: i8) -> bool {
    (0..64).contains(&n) && set & (1 << n) != 0
}

/// The highest set bit of `set` in `low..=high`.
fn highest_in(set: u64, low: u32, high: u32) -> Option<u32> {
    let below = if high >= 63 {
        u64::MAX
    } else {
        (1u64 << (high + 1)) - 1
    };
    let masked = set & below & (u64::MAX << low);
    (masked != 0).then(|| 63 - masked.leading_zeros())
}

/// Parses one field into a bit set, and whether it was `*` (step 1).
fn parse_field(field: &Field, text: &str, input: &str) -> Result<(u64, bool), CronError> {
    let mut set = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let bad = |reason: String| CronError::Field {
            input: input.to_owned(),
            field: field.name,
            part: part.to_owned(),
            reason,
        };
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step =
                    number(step).ok_or_else(|| bad(format!("step {step:?} is not a number")))?;
                if step == 0 {
                    return Err(bad("the step must be at least 1".to_owned()));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" {
            star |= step.unwrap_or(1) == 1;
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(field, a).map_err(|e| bad(e.to_string()))?,
                value(field, b).map_err(|e| bad(e.to_string()))?,
            )
        } else {
            let a = value(field, range).map_err(|e| bad(e.to_string()))?;
            // `a/n` means from `a` to the end, every `n`.
            (a, if step.is_some() { field.max } else { a })
        };
        if low > high {
            return Err(bad(format!(
                "the range starts at {low}, after its end {high}"
            )));
        }
        for v in (low..=high).step_by(step.unwrap_or(1) as usize) {
            set |= 1 << v;
        }
    }
    Ok((set, star))
}

/// What is wrong with one value of a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum ValueError {
    #[error("empty value")]
    Empty,
    #[error("{text:?} is not a number{names}")]
    NotANumber { text: String, names: String },
    #[error("{value} is outside {min}-{max}")]
    OutOfRange { value: u32, min: u32, max: u32 },
}

/// A number or name within the field's range.
fn value(field: &Field, text: &str) -> Result<u32, ValueError> {
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    if let Some(i) = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(field.min + i as u32);
    }
    let v = number(text).ok_or_else(|| ValueError::NotANumber {
        text: text.to_owned(),
        names: match field.names.first().zip(field.names.last()) {
            Some((first, last)) => format!(" or a name {first}-{last}"),
            None => String::new(),
        },
    })?;
    if !(field.min..=field.max).contains(&v) {
        return Err(ValueError::OutOfRange {
            value: v,
            min: field.min,
            max: field.max,
        });
    }
    Ok(v)
}

/// Plain decimal digits (no sign), as a number.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn err(input: &str) -> String {
        Schedule::parse(input).unwrap_err().to_string()
    }

    #[test]
    fn parses_good_schedules() {
        for good in [
            "* * * * *",
            "0 9 * * 1-5",
            "*/15 0-6,22-23 1,15 jan-MAR,Dec sun,SAT",
            "5/10 1-20/3 */2 6 7",
            "  0 0 * * 0  ",
            "@yearly",
            "@ANNUALLY",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn rejects_bad_schedules_naming_field_and_part() {
        assert!(err("").contains("has 0 fields"));
        assert!(err("* * * *").contains("has 4 fields"));
        assert!(err("* * * * * *").contains("has 6 fields"));
        assert!(err("@every 5m").contains("unknown macro"));
        let e = err("60 * * * *");
        assert!(
            e.contains("minute field") && e.contains("\"60\"") && e.contains("outside 0-59"),
            "{e}"
        );
        assert!(err("* 24 * * *").contains("hour field"));
        assert!(err("* * 0 * *").contains("day-of-month field, \"0\""));
        assert!(err("* * * 13 * ").contains("month field"));
        assert!(err("* * * * 8").contains("day-of-week field"));
        assert!(err("* * * foo *").contains("\"foo\" is not a number or a name JAN-DEC"));
        assert!(err("* * * * MON-FOO").contains("day-of-week field, \"MON-FOO\""));
        assert!(err("*/0 * * * *").contains("step must be at least 1"));
        assert!(err("*/x * * * *").contains("step \"x\" is not a number"));
        assert!(err("1,,2 * * * *").contains("empty value"));
        assert!(err("5-1 * * * *").contains("starts at 5, after its end 1"));
        assert!(err("-1 * * * *").contains("empty value"));
        assert!(err("+1 * * * *").contains("not a number"));
        assert!(!err("* * * * SUN-").contains('\n'));
    }

    #[test]
    fn matches_fields_in_utc() {
        let s = Schedule::parse("30 9 * * 1-5").unwrap();
        assert!(s.matches(ts("2024-01-01T09:30:00Z"))); // Monday
        assert!(s.matches(ts("2024-01-01T09:30:59.999Z")));
        assert!(!s.matches(ts("2024-01-01T09:31:00Z")));
        assert!(!s.matches(ts("2024-01-06T09:30:00Z"))); // Saturday
        assert!(!s.matches(ts("2024-01-01T09:30:00+01:00")));
        let sundays = Schedule::parse("0 0 * * 7").unwrap();
        assert_eq!(sundays, Schedule::parse("0 0 * * SUN").unwrap());
        assert!(sundays.matches(ts("2024-01-07T00:00:00Z")));
        let feb = Schedule::parse("0 12 29 feb *").unwrap();
        assert!(feb.matches(ts("2024-02-29T12:00:00Z")));
        assert!(!feb.matches(ts("2024-03-29T12:00:00Z")));
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, and every Friday.
        let s = Schedule::parse("0 0 13 * 5").unwrap();
        assert!(s.matches(ts("2024-01-13T00:00:00Z"))); // Saturday the 13th
        assert!(s.matches(ts("2024-01-05T00:00:00Z"))); // Friday the 5th
        assert!(!s.matches(ts("2024-01-06T00:00:00Z")));
        // With one day field `*`, both must match.
        let s = Schedule::parse("0 0 * * 5").unwrap();
        assert!(!s.matches(ts("2024-01-13T00:00:00Z")));
        let s = Schedule::parse("0 0 13 * *").unwrap();
        assert!(!s.matches(ts("2024-01-05T00:00:00Z")));
        // `*/2` is a restriction: odd days, or Fridays.
        let s = Schedule::parse("0 0 */2 * 5").unwrap();
        assert!(s.matches(ts("2024-01-03T00:00:00Z")));
        assert!(s.matches(ts("2024-01-12T00:00:00Z")));
        assert!(!s.matches(ts("2024-01-10T00:00:00Z")));
    }

    #[test]
    fn finds_the_last_firing() {
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        let day = Duration::from_secs(24 * 3600);
        let at = |t| s.last_fire_at_or_before(ts(t), 3 * day);
        assert_eq!(at("2024-01-01T09:00:00Z"), Some(ts("2024-01-01T09:00:00Z")));
        assert_eq!(at("2024-01-01T16:59:30Z"), Some(ts("2024-01-01T09:00:00Z")));
        assert_eq!(at("2024-01-06T08:00:00Z"), Some(ts("2024-01-05T09:00:00Z")));
        assert_eq!(at("2024-01-08T08:59:59Z"), Some(ts("2024-01-05T09:00:00Z")));
        assert_eq!(at("2024-01-08T09:00:01Z"), Some(ts("2024-01-08T09:00:00Z")));
        // `t - m <= lookback`, to the nanosecond.
        let t = ts("2024-01-01T17:00:00Z");
        let eight_hours = Duration::from_secs(8 * 3600);
        assert_eq!(
            s.last_fire_at_or_before(t, eight_hours),
            Some(ts("2024-01-01T09:00:00Z"))
        );
        let t = ts("2024-01-01T17:00:00.000000001Z");
        assert_eq!(s.last_fire_at_or_before(t, eight_hours), None);
        assert_eq!(s.last_fire_at_or_before(t, Duration::ZERO), None);
        // A yearly schedule is found within the cap; one that never fires is not.
        let yearly = Schedule::parse("@yearly").unwrap();
        let t = ts("2024-12-31T23:59:00Z");
        let got = yearly.last_fire_at_or_before(t, Duration::MAX);
        assert_eq!(got, Some(ts("2024-01-01T00:00:00Z")));
        let never = Schedule::parse("0 0 31 2 *").unwrap();
        assert_eq!(never.last_fire_at_or_before(t, Duration::MAX), None);
    }

    /// One comma-separated part of a field, for the reference.
    #[derive(Clone, Debug)]
    enum Part {
        Star(u32),
        Range(u32, u32, u32),
        From(u32, u32),
        One(u32),
    }

    impl Part {
        fn text(&self) -> String {
            match self {
                Part::Star(1) => "*".to_owned(),
                Part::Star(n) => format!("*/{n}"),
                Part::Range(a, b, 1) => format!("{a}-{b}"),
                Part::Range(a, b, n) => format!("{a}-{b}/{n}"),
                Part::From(a, n) => format!("{a}/{n}"),
                Part::One(a) => a.to_string(),
            }
        }

        fn contains(&self, v: u32, min: u32) -> bool {
            match *self {
                Part::Star(n) => (v - min).is_multiple_of(n),
                Part::Range(a, b, n) => a <= v && v <= b && (v - a).is_multiple_of(n),
                Part::From(a, n) => a <= v && (v - a).is_multiple_of(n),
                Part::One(a) => v == a,
            }
        }
    }

    fn parts(min: u32, max: u32) -> impl Strategy<Value = Vec<Part>> {
        let part = prop_oneof![
            (1..=max).prop_map(Part::Star),
            (min..=max, min..=max, 1..=max).prop_map(|(a, b, n)| Part::Range(
                a.min(b),
                a.max(b),
                n
            )),
            (min..=max, 1..=max).prop_map(|(a, n)| Part::From(a, n)),
            (min..=max).prop_map(Part::One),
        ];
        prop::collection::vec(part, 1..=3)
    }

    fn text(field: &[Part]) -> String {
        field.iter().map(Part::text).collect::<Vec<_>>().join(",")
    }

    fn any_contains(field: &[Part], v: u32, min: u32) -> bool {
        field.iter().any(|p| p.contains(v, min))
    }

    /// (minute, hour, day, month, weekday with Sunday 0) of a Unix minute,
    /// by Howard Hinnant's civil-from-days.
    fn civil(minute: i64) -> [u32; 5] {
        let (days, rem) = (minute.div_euclid(1440), minute.rem_euclid(1440) as u32);
        let weekday = (days + 4).rem_euclid(7) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        [rem % 60, rem / 60, day, month, weekday]
    }

    type Fields = (Vec<Part>, Vec<Part>, Vec<Part>, Vec<Part>, Vec<Part>);

    fn fields() -> impl Strategy<Value = Fields> {
        (
            parts(0, 59),
            parts(0, 23),
            parts(1, 31),
            parts(1, 12),
            parts(0, 7),
        )
    }

    fn reference(f: &Fields, minute: i64) -> bool {
        let [mi, h, d, mo, wd] = civil(minute);
        let is_star = |field: &[Part]| field.iter().any(|p| matches!(p, Part::Star(1)));
        let dom = any_contains(&f.2, d, 1);
        let dow = any_contains(&f.4, wd, 0) || (wd == 0 && any_contains(&f.4, 7, 0));
        let day = if is_star(&f.2) || is_star(&f.4) {
            dom && dow
        } else {
            dom || dow
        };
        any_contains(&f.0, mi, 0) && any_contains(&f.1, h, 0) && any_contains(&f.3, mo, 1) && day
    }

    fn schedule(f: &Fields) -> Schedule {
        let input = [&f.0, &f.1, &f.2, &f.3, &f.4].map(|p| text(p)).join(" ");
        Schedule::parse(&input).unwrap()
    }

    proptest! {
        #[test]
        fn matches_agrees_with_reference(f in fields(), day in 0i64..60_000, step in 1i64..=7) {
            let s = schedule(&f);
            for minute in (day * 1440..(day + 1) * 1440).step_by(step as usize) {
                let t = Timestamp::from_second(minute * 60 + 59).unwrap();
                prop_assert_eq!(s.matches(t), reference(&f, minute), "minute {}", minute);
            }
        }

        #[test]
        fn last_fire_agrees_with_a_walk(
            f in fields(),
            second in 0i64..4_000_000_000,
            nanos in 0i32..1_000_000_000,
            lookback_s in 0u64..3 * 86_400,
        ) {
            let s = schedule(&f);
            let t = Timestamp::new(second, nanos).unwrap();
            let lookback = Duration::from_secs(lookback_s);
            let walk = (0..)
                .map(|k| Timestamp::from_second((second.div_euclid(60) - k) * 60).unwrap())
                .take_while(|m| t.duration_since(*m).unsigned_abs() <= lookback)
                .find(|m| s.matches(*m));
            prop_assert_eq!(s.last_fire_at_or_before(t, lookback), walk);
        }
    }
}
