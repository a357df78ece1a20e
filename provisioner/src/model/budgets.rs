//! NodePool disruption budgets: how many of a pool's nodes voluntary
//! disruption may take down at once, and when.
//!
//! The rules, and why:
//!
//! - Budgets only restrict. Of the budgets that apply, the tightest wins, so
//!   an operator can layer a standing limit ("10%") with a stricter window
//!   ("0 during business hours") without the two interfering. When none
//!   applies the pool is unlimited: the API defaults a pool to `10%`, so
//!   having none is an explicit choice.
//! - Nodes already being disrupted count against every budget: the answer is
//!   how many *more* may start, so repeated reconciles cannot overshoot.
//! - A percent rounds up, so a small pool still makes progress (10% of 3
//!   nodes is 1, not 0). `0` or `0%` is how to say "none".
//! - A scheduled budget is active for `duration` after each firing of its
//!   UTC cron `schedule`, half-open `[fire, fire + duration)`: a window
//!   "09:00 for 8h" ends at 17:00 sharp, and back-to-back windows never
//!   overlap. `schedule` and `duration` only make sense together.
//! - A budget that cannot be understood (bad `nodes`, `schedule` or
//!   `duration`) fails closed: it counts as active and allows 0 for the
//!   reasons it names. A typo in a change-freeze budget must stop disruption,
//!   not silently lift the freeze. [`problems`] says why, for Events and logs.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use spotwright_api::duration::{parse_go_duration, DurationError};
use spotwright_api::v1alpha1::{Budget, DisruptionReason};

use super::cron::{CronError, Schedule};

/// Why a budget cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// `nodes` is neither a count nor a percent.
    #[error("nodes {0:?} is neither a count such as 2 nor a percent from 0% to 100% such as 10%")]
    Nodes(String),
    /// `schedule` is set but `duration` is not.
    #[error("schedule {0:?} has no duration; a scheduled budget needs one, such as 8h")]
    ScheduleWithoutDuration(String),
    /// `duration` is set but `schedule` is not.
    #[error("duration {0:?} has no schedule; a budget with a duration needs a cron schedule")]
    DurationWithoutSchedule(String),
    /// `schedule` is not a cron schedule.
    #[error(transparent)]
    Schedule(#[from] CronError),
    /// `duration` is not a duration.
    #[error("duration {0}")]
    Duration(#[from] DurationError),
}

/// The parsed `schedule` and `duration` of a budget, `None` when it has neither.
fn window(budget: &Budget) -> Result<Option<(Schedule, Duration)>, BudgetError> {
    match (&budget.schedule, &budget.duration) {
        (None, None) => Ok(None),
        (Some(schedule), None) => Err(BudgetError::ScheduleWithoutDuration(schedule.clone())),
        (None, Some(duration)) => Err(BudgetError::DurationWithoutSchedule(duration.clone())),
        (Some(schedule), Some(duration)) => Ok(Some((
            Schedule::parse(schedule)?,
            parse_go_duration(duration)?,
        ))),
    }
}

/// Whether `budget` applies at `now`: always without a `schedule`, else
/// within `duration` after a firing of the schedule (end excluded).
pub fn is_active(budget: &Budget, now: Timestamp) -> Result<bool, BudgetError> {
    let Some((schedule, duration)) = window(budget)? else {
        return Ok(true);
    };
    Ok(schedule
        .last_fire_at_or_before(now, duration)
        .is_some_and(|fire| {
            u128::try_from(now.as_nanosecond() - fire.as_nanosecond())
                .is_ok_and(|elapsed| elapsed < duration.as_nanos())
        }))
}

/// The number of nodes `nodes` stands for in a pool of `pool_nodes`: a
/// count as is, a percent (0 to 100) of the pool rounded up.
pub fn budget_nodes(nodes: &str, pool_nodes: usize) -> Result<usize, BudgetError> {
    let bad = || BudgetError::Nodes(nodes.to_owned());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let text = nodes.trim();
    match text.strip_suffix('%') {
        Some(percent) if digits(percent) => {
            let percent: u128 = percent.parse().map_err(|_| bad())?;
            if percent > 100 {
                return Err(bad());
            }
            // At most `pool_nodes`, so it fits.
            usize::try_from((pool_nodes as u128 * percent).div_ceil(100)).map_err(|_| bad())
        }
        None if digits(text) => text.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Whether `budget` limits disruptions for `reason`; no reasons means all.
fn covers(budget: &Budget, reason: DisruptionReason) -> bool {
    budget.reasons.is_empty() || budget.reasons.contains(&reason)
}

/// How many more of a pool's `pool_nodes` nodes may be disrupted now for
/// `reason`, with `disrupting` of them already being disrupted:
/// `usize::MAX` when no active budget covers `reason`. An invalid budget
/// that covers `reason` allows 0.
pub fn allowed(
    budgets: &[Budget],
    reason: DisruptionReason,
    pool_nodes: usize,
    disrupting: usize,
    now: Timestamp,
) -> usize {
    let covering = budgets.iter().filter(|budget| covers(budget, reason));
    allowed_by(covering, pool_nodes, disrupting, now)
}

/// As [`allowed`], for a disruption that has none of the reasons a budget
/// can name (the NodePool itself is deleted): only budgets without
/// `reasons` hold it.
pub fn allowed_for_any_reason(
    budgets: &[Budget],
    pool_nodes: usize,
    disrupting: usize,
    now: Timestamp,
) -> usize {
    let covering = budgets.iter().filter(|budget| budget.reasons.is_empty());
    allowed_by(covering, pool_nodes, disrupting, now)
}

fn allowed_by<'a>(
    covering: impl Iterator<Item = &'a Budget>,
    pool_nodes: usize,
    disrupting: usize,
    now: Timestamp,
) -> usize {
    covering
        .filter_map(|budget| {
            match (
                is_active(budget, now),
                budget_nodes(&budget.nodes, pool_nodes),
            ) {
                (Ok(false), Ok(_)) => None,
                (Ok(true), Ok(nodes)) => Some(nodes),
                _ => Some(0),
            }
        })
        .min()
        .map_or(usize::MAX, |nodes| nodes.saturating_sub(disrupting))
}

/// One line per invalid budget, naming its index and what is wrong.
pub fn problems(budgets: &[Budget]) -> Vec<String> {
    budgets
        .iter()
        .enumerate()
        .filter_map(|(index, budget)| {
            let errors: Vec<String> = [budget_nodes(&budget.nodes, 0).err(), window(budget).err()]
                .into_iter()
                .flatten()
                .map(|error| error.to_string())
                .collect();
            (!errors.is_empty()).then(|| {
                format!(
                    "disruption budget {index}: {}; it allows no disruption until fixed",
                    errors.join("; ")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use DisruptionReason::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn budget(nodes: &str) -> Budget {
        Budget {
            nodes: nodes.to_owned(),
            reasons: Vec::new(),
            schedule: None,
            duration: None,
        }
    }

    fn scheduled(nodes: &str, schedule: &str, duration: &str) -> Budget {
        Budget {
            schedule: Some(schedule.to_owned()),
            duration: Some(duration.to_owned()),
            ..budget(nodes)
        }
    }

    fn for_reasons(nodes: &str, reasons: &[DisruptionReason]) -> Budget {
        Budget {
            reasons: reasons.to_vec(),
            ..budget(nodes)
        }
    }

    const MONDAY: &str = "2024-01-01T12:00:00Z";

    #[test]
    fn counts_and_percents() {
        assert_eq!(budget_nodes("2", 50).unwrap(), 2);
        assert_eq!(budget_nodes("0", 50).unwrap(), 0);
        assert_eq!(budget_nodes("70", 5).unwrap(), 70);
        assert_eq!(budget_nodes("10%", 3).unwrap(), 1);
        assert_eq!(budget_nodes("10%", 0).unwrap(), 0);
        assert_eq!(budget_nodes("10%", 20).unwrap(), 2);
        assert_eq!(budget_nodes("10%", 21).unwrap(), 3);
        assert_eq!(budget_nodes("0%", 21).unwrap(), 0);
        assert_eq!(budget_nodes("100%", 21).unwrap(), 21);
        assert_eq!(budget_nodes("100%", usize::MAX).unwrap(), usize::MAX);
        for bad in [
            "",
            "%",
            "101%",
            "-1",
            "+1",
            "1.5",
            "10 %",
            "ten",
            "5%%",
            "99999999999999999999999",
        ] {
            let error = budget_nodes(bad, 10).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn tightest_covering_budget_minus_disrupting() {
        let now = ts(MONDAY);
        assert_eq!(allowed(&[], Drifted, 10, 3, now), usize::MAX);
        let budgets = [
            budget("50%"),
            for_reasons("1", &[Drifted, Empty]),
            for_reasons("0", &[Rebalance]),
        ];
        assert_eq!(allowed(&budgets, Drifted, 10, 0, now), 1);
        assert_eq!(allowed(&budgets, Empty, 10, 1, now), 0);
        assert_eq!(allowed(&budgets, Underutilized, 10, 2, now), 3);
        assert_eq!(allowed(&budgets, Underutilized, 10, 9, now), 0);
        assert_eq!(allowed(&budgets, Rebalance, 10, 0, now), 0);
        assert_eq!(
            allowed(&budgets[1..2], Underutilized, 10, 0, now),
            usize::MAX
        );
    }

    #[test]
    fn a_deleted_pool_is_held_only_by_budgets_without_reasons() {
        let now = ts(MONDAY);
        assert_eq!(allowed_for_any_reason(&[], 10, 3, now), usize::MAX);
        let budgets = [
            budget("30%"),
            for_reasons("0", &[Drifted, Empty, Underutilized, Rebalance]),
        ];
        assert_eq!(allowed_for_any_reason(&budgets, 10, 1, now), 2);
        assert_eq!(allowed_for_any_reason(&budgets, 10, 5, now), 0);
        assert_eq!(
            allowed_for_any_reason(&budgets[1..], 10, 0, now),
            usize::MAX
        );
        let frozen = [budget("5"), scheduled("0", "0 9 * * 1-5", "8h")];
        assert_eq!(allowed_for_any_reason(&frozen, 10, 0, now), 0);
    }

    #[test]
    fn schedule_window_is_half_open() {
        let b = scheduled("0", "0 9 * * 1-5", "8h");
        let active = |t: &str| is_active(&b, ts(t)).unwrap();
        assert!(!active("2024-01-01T08:59:59Z"));
        assert!(active("2024-01-01T09:00:00Z"));
        assert!(active("2024-01-01T16:59:00Z"));
        assert!(active("2024-01-01T16:59:59.999Z"));
        assert!(!active("2024-01-01T17:00:00Z"));
        assert!(!active("2024-01-06T12:00:00Z")); // Saturday
        assert!(is_active(&budget("1"), ts(MONDAY)).unwrap());
        // The freeze applies on Monday at noon only.
        let budgets = [budget("10%"), b.clone()];
        assert_eq!(allowed(&budgets, Drifted, 30, 0, ts(MONDAY)), 0);
        assert_eq!(
            allowed(&budgets, Drifted, 30, 0, ts("2024-01-01T17:00:00Z")),
            3
        );
        // Windows longer than a day span midnight.
        let night = scheduled("0", "0 22 * * *", "10h");
        assert!(is_active(&night, ts("2024-01-02T07:59:00Z")).unwrap());
        assert!(!is_active(&night, ts("2024-01-02T08:00:00Z")).unwrap());
    }

    #[test]
    fn invalid_budgets_allow_nothing_and_are_reported() {
        let now = ts(MONDAY);
        let schedule_only = Budget {
            schedule: Some("@daily".to_owned()),
            ..budget("5")
        };
        let duration_only = Budget {
            duration: Some("1h".to_owned()),
            ..budget("5")
        };
        // Inactive right now (Saturdays only), but broken: still blocks.
        let bad_nodes = scheduled("many", "0 0 * * 6", "1h");
        let invalid = [
            budget("1O"),
            schedule_only,
            duration_only,
            scheduled("5", "0 9 * *", "8h"),
            scheduled("5", "0 9 * * *", "8 hours"),
            bad_nodes,
        ];
        for (i, b) in invalid.iter().enumerate() {
            assert_eq!(
                allowed(&[budget("100%"), b.clone()], Drifted, 10, 0, now),
                0,
                "{i}"
            );
        }
        assert!(is_active(&invalid[1], now)
            .unwrap_err()
            .to_string()
            .contains("has no duration"));
        assert!(is_active(&invalid[2], now)
            .unwrap_err()
            .to_string()
            .contains("has no schedule"));
        assert!(is_active(&invalid[3], now)
            .unwrap_err()
            .to_string()
            .contains("has 4 fields"));
        assert!(is_active(&invalid[4], now)
            .unwrap_err()
            .to_string()
            .contains("\"8 hours\""));
        // A broken budget only blocks the reasons it covers.
        let drift_only = for_reasons("x", &[Drifted]);
        assert_eq!(
            allowed(std::slice::from_ref(&drift_only), Empty, 10, 0, now),
            usize::MAX
        );
        let lines = problems(&[
            budget("1"),
            invalid[0].clone(),
            invalid[5].clone(),
            drift_only,
        ]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("disruption budget 1: nodes \"1O\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("disruption budget 2: nodes \"many\""),
            "{}",
            lines[1]
        );
        assert!(lines.iter().all(|line| !line.contains('\n')));
        assert!(problems(&[budget("0"), scheduled("10%", "@hourly", "5m")]).is_empty());
    }

    fn reasons() -> impl Strategy<Value = Vec<DisruptionReason>> {
        prop::sample::subsequence(vec![Empty, Underutilized, Drifted, Rebalance], 0..=2)
    }

    fn reason() -> impl Strategy<Value = DisruptionReason> {
        prop::sample::select(vec![Empty, Underutilized, Drifted, Rebalance])
    }

    fn any_budget() -> impl Strategy<Value = Budget> {
        let nodes = prop_oneof![
            (0usize..20).prop_map(|n| n.to_string()),
            (0usize..=100).prop_map(|p| format!("{p}%")),
            prop::sample::select(vec!["", "101%", "x", "-1"]).prop_map(str::to_owned),
        ];
        let window = prop_oneof![
            3 => Just((None, None)),
            2 => (
                prop::sample::select(vec!["0 9 * * 1-5", "*/20 * * * *", "@daily", "0 0 13 * 5"]),
                prop::sample::select(vec!["8h", "30m", "1h30m", "0s"]),
            )
                .prop_map(|(s, d)| (Some(s.to_owned()), Some(d.to_owned()))),
            1 => prop::sample::select(vec![
                (Some("@daily"), None),
                (None, Some("1h")),
                (Some("0 25 * * *"), Some("1h")),
                (Some("@daily"), Some("1x")),
            ])
            .prop_map(|(s, d)| (s.map(str::to_owned), d.map(str::to_owned))),
        ];
        (nodes, reasons(), window).prop_map(|(nodes, reasons, (schedule, duration))| Budget {
            nodes,
            reasons,
            schedule,
            duration,
        })
    }

    fn any_now() -> impl Strategy<Value = Timestamp> {
        (1_700_000_000i64..1_800_000_000).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn adding_a_budget_never_increases_allowed(
            budgets in prop::collection::vec(any_budget(), 0..4),
            extra in any_budget(),
            reason in reason(),
            pool in 0usize..200,
            disrupting in 0usize..30,
            now in any_now(),
        ) {
            let before = allowed(&budgets, reason, pool, disrupting, now);
            let mut more = budgets.clone();
            more.push(extra);
            prop_assert!(allowed(&more, reason, pool, disrupting, now) <= before);
        }

        #[test]
        fn allowed_within_every_active_covering_budget(
            budgets in prop::collection::vec(any_budget(), 0..5),
            reason in reason(),
            pool in 0usize..200,
            disrupting in 0usize..30,
            now in any_now(),
        ) {
            let got = allowed(&budgets, reason, pool, disrupting, now);
            for b in budgets.iter().filter(|b| covers(b, reason)) {
                match (is_active(b, now), budget_nodes(&b.nodes, pool)) {
                    (Ok(false), Ok(_)) => {}
                    (Ok(true), Ok(n)) => prop_assert!(got <= n.saturating_sub(disrupting)),
                    _ => prop_assert_eq!(got, 0),
                }
            }
        }

        #[test]
        fn more_disrupting_never_increases_allowed(
            budgets in prop::collection::vec(any_budget(), 0..5),
            reason in reason(),
            pool in 0usize..200,
            disrupting in 0usize..30,
            more in 0usize..30,
            now in any_now(),
        ) {
            let fewer = allowed(&budgets, reason, pool, disrupting, now);
            prop_assert!(allowed(&budgets, reason, pool, disrupting + more, now) <= fewer);
        }

        #[test]
        fn a_positive_percent_allows_a_node(percent in 1usize..=100, pool in 1usize..100_000) {
            let nodes = budget_nodes(&format!("{percent}%"), pool).unwrap();
            prop_assert!(nodes >= 1 && nodes <= pool);
            let b = budget(&format!("{percent}%"));
            prop_assert!(allowed(&[b], Drifted, pool, 0, ts(MONDAY)) >= 1);
        }
    }
}
