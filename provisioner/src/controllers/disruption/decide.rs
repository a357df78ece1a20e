//! The decisions of voluntary disruption, as plain functions over the
//! objects: which claims to replace and why, and where a replacement that
//! began stands. The controller ([`super`]) only carries them out.
//!
//! A replacement's state lives on the old claim, in
//! [`keys::DISRUPTION_ANNOTATION`], written before any other step: that is
//! what makes every step resumable and a second replacement impossible.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::DisruptionReason;
use spotwright_api::{conditions, keys, NodeClaim};

use crate::model::claim::{elapsed, find_condition, is_condition_true};
use crate::Error;

/// Reason of `Disrupting=False` after a replacement was given up: the claim
/// is tried again once [`DisruptionTiming::retry_after`] has passed.
pub const ROLLED_BACK: &str = "ReplacementRolledBack";

/// Why a node is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// Older than its `expireAfter`: replaced regardless of budgets.
    Expired,
    /// EC2 recommended rebalancing away from its Spot pool.
    Rebalance,
    /// Its `Drifted` condition is `True`.
    Drifted,
    /// Consolidation found its pods a cheaper place: on the other nodes,
    /// or on one cheaper node.
    Underutilized,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Expired => "Expired",
            Cause::Rebalance => "Rebalance",
            Cause::Drifted => "Drifted",
            Cause::Underutilized => "Underutilized",
        }
    }

    /// The budget reason that limits it; `None`: budgets do not apply.
    pub fn budget_reason(self) -> Option<DisruptionReason> {
        match self {
            Cause::Expired => None,
            Cause::Rebalance => Some(DisruptionReason::Rebalance),
            Cause::Drifted => Some(DisruptionReason::Drifted),
            Cause::Underutilized => Some(DisruptionReason::Underutilized),
        }
    }
}

/// The replacement of one claim, as recorded in [`keys::DISRUPTION_ANNOTATION`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replacement {
    pub cause: Cause,
    /// When the replacement began (RFC 3339).
    pub started: Timestamp,
    /// The replacement NodeClaims; empty when the pods fit on other nodes.
    pub replacements: Vec<String>,
    /// Set by consolidation: what the action saves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation: Option<Saving>,
}

/// A consolidation's saving, as recorded on each claim it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saving {
    /// `delete` or `replace`.
    pub action: String,
    /// The first claim of the action: it alone counts the action in the
    /// metrics, so a multi-node action counts once.
    pub lead: bool,
    /// This claim's $/h.
    pub before: f64,
    /// Its share of the replacement's $/h at worst.
    pub after: f64,
}

impl Replacement {
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The claim's recorded replacement: `None` when none began, `Err` when the
/// annotation cannot be read (the replacement is then rolled back).
pub fn replacement_of(claim: &NodeClaim) -> Option<Result<Replacement, Error>> {
    let raw = claim.annotations().get(keys::DISRUPTION_ANNOTATION)?;
    Some(serde_json::from_str(raw).map_err(|e| Error::Annotation {
        key: keys::DISRUPTION_ANNOTATION,
        reason: e.to_string(),
    }))
}

/// Timings of voluntary disruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisruptionTiming {
    /// Replacements not initialized this long after the start are given up.
    pub replacement_timeout: Duration,
    /// A rolled-back claim waits this long before it is tried again.
    pub retry_after: Duration,
}

/// Why the claim should be replaced now, with a human reason; `None` when
/// it should not. Only live, initialized claims that no replacement has
/// begun for are considered (and the caller leaves out replacements whose
/// old claim still exists: see [`is_promised`]).
pub fn cause(claim: &NodeClaim, now: Timestamp) -> Option<(Cause, String)> {
    let eligible = claim.meta().deletion_timestamp.is_none()
        && is_condition_true(claim, conditions::INITIALIZED)
        && !claim
            .annotations()
            .contains_key(keys::DISRUPTION_ANNOTATION);
    if !eligible {
        return None;
    }
    if let Some(age) = expired_age(claim, now) {
        return Some((
            Cause::Expired,
            format!("older than its expireAfter ({}s)", age.as_secs()),
        ));
    }
    if let Some(at) = claim.annotations().get(keys::REBALANCE_ANNOTATION) {
        return Some((
            Cause::Rebalance,
            format!("EC2 recommended rebalancing at {at}"),
        ));
    }
    let drifted = find_condition(claim, conditions::DRIFTED).filter(|c| c.status == "True")?;
    Some((
        Cause::Drifted,
        format!("{}: {}", drifted.reason, drifted.message),
    ))
}

/// The claim's age when it has reached its `expireAfter`.
fn expired_age(claim: &NodeClaim, now: Timestamp) -> Option<Duration> {
    let Ok(Lifetime::After(limit)) = Lifetime::parse(claim.spec.expire_after.as_deref()?) else {
        return None;
    };
    let created = claim.meta().creation_timestamp.as_ref()?.0;
    let age = elapsed(created, now);
    (age >= limit).then_some(age)
}

/// Whether a rollback is recent enough that the claim waits.
pub fn backing_off(claim: &NodeClaim, now: Timestamp, retry_after: Duration) -> bool {
    find_condition(claim, conditions::DISRUPTING).is_some_and(|c| {
        c.status == "False"
            && c.reason == ROLLED_BACK
            && elapsed(c.last_transition_time.0, now) < retry_after
    })
}

/// The order candidates are taken in: expired first (they ignore budgets),
/// then rebalance recommendations (an interruption may follow), then
/// drift; the oldest claim first within each.
pub fn order(candidates: &mut [(&NodeClaim, Cause, String)]) {
    candidates.sort_by(|a, b| {
        let created = |c: &NodeClaim| c.meta().creation_timestamp.as_ref().map(|t| t.0);
        (a.1, created(a.0), a.0.name_any()).cmp(&(b.1, created(b.0), b.0.name_any()))
    });
}

/// Where a begun replacement stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Give up: untaint, delete the replacements, retry later.
    RollBack(String),
    /// These replacements have no instance yet.
    Launch(Vec<String>),
    /// Launched, not all initialized yet.
    Wait,
    /// Every replacement is initialized: drain and terminate the old node.
    Drain,
}

/// `replacements` holds, per name recorded in `state`, the claim if it exists.
pub fn progress(
    state: &Replacement,
    replacements: &[(&str, Option<&NodeClaim>)],
    now: Timestamp,
    timeout: Duration,
) -> Progress {
    if let Some((name, _)) = replacements
        .iter()
        .find(|(_, c)| c.is_none_or(|c| c.meta().deletion_timestamp.is_some()))
    {
        return Progress::RollBack(format!(
            "replacement NodeClaim {name} is gone (its launch failed or it was deleted)"
        ));
    }
    let claims = replacements.iter().filter_map(|(_, c)| *c);
    if claims
        .clone()
        .all(|c| is_condition_true(c, conditions::INITIALIZED))
    {
        return Progress::Drain;
    }
    if elapsed(state.started, now) >= timeout {
        return Progress::RollBack(format!(
            "replacements not initialized within {}s",
            timeout.as_secs()
        ));
    }
    let unlaunched: Vec<String> = claims
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_ref())
                .is_none()
        })
        .map(|c| c.name_any())
        .collect();
    if unlaunched.is_empty() {
        Progress::Wait
    } else {
        Progress::Launch(unlaunched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::disruption::{is_promised, pool_counts};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use proptest::prelude::*;
    use spotwright_api::v1alpha1::{NodeClaimSpec, NodeClaimStatus, NodeClassReference};
    use std::collections::HashSet;

    #[test]
    fn every_cause_has_its_metric_series_from_the_start() {
        let causes = [
            Cause::Expired,
            Cause::Rebalance,
            Cause::Drifted,
            Cause::Underutilized,
        ];
        // A new cause fails to compile here until it is listed above.
        for cause in causes {
            match cause {
                Cause::Expired | Cause::Rebalance | Cause::Drifted | Cause::Underutilized => {}
            }
        }
        let names: Vec<&str> = causes.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, crate::metrics::DISRUPTION_CAUSES);
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn condition(type_: &str, status: &str, reason: &str, when: Timestamp) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            last_transition_time: Time(when),
            observed_generation: None,
        }
    }

    fn claim(name: &str, created: i64, conditions: Vec<Condition>) -> NodeClaim {
        let mut claim = NodeClaim::new(
            name,
            NodeClaimSpec {
                node_class_ref: NodeClassReference {
                    name: "default".into(),
                },
                ..NodeClaimSpec::default()
            },
        );
        claim.metadata.creation_timestamp = Some(Time(at(created)));
        claim
            .labels_mut()
            .insert(keys::NODEPOOL_LABEL.into(), "pool".into());
        claim.status = Some(NodeClaimStatus {
            conditions,
            ..NodeClaimStatus::default()
        });
        claim
    }

    fn push(claim: &mut NodeClaim, condition: Condition) {
        if let Some(status) = claim.status.as_mut() {
            status.conditions.push(condition);
        }
    }

    fn initialized(name: &str, created: i64) -> NodeClaim {
        claim(
            name,
            created,
            vec![condition(
                conditions::INITIALIZED,
                "True",
                "Initialized",
                at(created),
            )],
        )
    }

    fn launched(mut claim: NodeClaim) -> NodeClaim {
        if let Some(status) = claim.status.as_mut() {
            status.provider_id = Some("aws:///us-east-1a/i-0abc".into());
        }
        claim
    }

    #[test]
    fn drift_rebalance_and_expiry_are_causes_in_that_precedence() {
        let mut c = initialized("a", 0);
        assert_eq!(cause(&c, at(10)), None, "a healthy claim is left alone");
        push(
            &mut c,
            condition(conditions::DRIFTED, "True", "AMIDrift", at(5)),
        );
        assert_eq!(cause(&c, at(10)).map(|(k, _)| k), Some(Cause::Drifted));
        c.annotations_mut().insert(
            keys::REBALANCE_ANNOTATION.into(),
            "2026-11-25T00:00:00Z".into(),
        );
        assert_eq!(cause(&c, at(10)).map(|(k, _)| k), Some(Cause::Rebalance));
        c.spec.expire_after = Some("1h".into());
        assert_eq!(cause(&c, at(3599)).map(|(k, _)| k), Some(Cause::Rebalance));
        assert_eq!(cause(&c, at(3600)).map(|(k, _)| k), Some(Cause::Expired));
        c.spec.expire_after = Some("Never".into());
        assert_eq!(
            cause(&c, at(1_000_000)).map(|(k, _)| k),
            Some(Cause::Rebalance)
        );
    }

    #[test]
    fn a_drift_that_reverted_is_no_cause() {
        let mut c = initialized("a", 0);
        push(
            &mut c,
            condition(conditions::DRIFTED, "False", "NotDrifted", at(5)),
        );
        assert_eq!(cause(&c, at(10)), None);
    }

    #[test]
    fn uninitialized_begun_and_replacement_claims_are_not_candidates() {
        let mut c = claim(
            "a",
            0,
            vec![condition(conditions::DRIFTED, "True", "AMIDrift", at(5))],
        );
        assert_eq!(cause(&c, at(10)), None, "not initialized");
        c = initialized("a", 0);
        push(
            &mut c,
            condition(conditions::DRIFTED, "True", "AMIDrift", at(5)),
        );
        let mut begun = c.clone();
        begun
            .annotations_mut()
            .insert(keys::DISRUPTION_ANNOTATION.into(), "{}".into());
        assert_eq!(cause(&begun, at(10)), None, "a replacement already began");
        let mut replacement = c.clone();
        replacement
            .labels_mut()
            .insert(keys::REPLACES_LABEL.into(), "old".into());
        let existing: HashSet<String> = ["old".to_owned()].into();
        assert!(
            is_promised(&replacement, &existing),
            "a replacement is not replaced while its old node exists"
        );
        assert!(
            !is_promised(&replacement, &HashSet::new()),
            "once the old claim is gone it is a node like any other"
        );
    }

    #[test]
    fn a_rollback_backs_off_then_allows_a_retry() {
        let c = claim(
            "a",
            0,
            vec![condition(
                conditions::DISRUPTING,
                "False",
                ROLLED_BACK,
                at(100),
            )],
        );
        let wait = Duration::from_secs(60);
        assert!(backing_off(&c, at(159), wait));
        assert!(!backing_off(&c, at(160), wait));
    }

    #[test]
    fn the_annotation_round_trips_and_garbage_is_an_error() {
        let state = Replacement {
            cause: Cause::Drifted,
            started: at(0),
            replacements: vec!["n1".into()],
            consolidation: None,
        };
        let mut c = initialized("a", 0);
        c.annotations_mut()
            .insert(keys::DISRUPTION_ANNOTATION.into(), state.to_annotation());
        assert!(matches!(replacement_of(&c), Some(Ok(s)) if s == state));
        c.annotations_mut()
            .insert(keys::DISRUPTION_ANNOTATION.into(), "{not json".into());
        assert!(matches!(replacement_of(&c), Some(Err(_))));
    }

    #[test]
    fn progress_launches_waits_drains_or_rolls_back() {
        let state = Replacement {
            cause: Cause::Drifted,
            started: at(0),
            replacements: vec!["n1".into(), "n2".into()],
            consolidation: None,
        };
        let timeout = Duration::from_secs(600);
        let fresh = claim("n1", 0, vec![]);
        let up = launched(claim("n2", 0, vec![]));
        let ready = launched(initialized("n2", 0));
        assert_eq!(
            progress(
                &state,
                &[("n1", Some(&fresh)), ("n2", Some(&up))],
                at(5),
                timeout
            ),
            Progress::Launch(vec!["n1".into()])
        );
        let fresh_up = launched(claim("n1", 0, vec![]));
        assert_eq!(
            progress(
                &state,
                &[("n1", Some(&fresh_up)), ("n2", Some(&ready))],
                at(5),
                timeout
            ),
            Progress::Wait
        );
        assert!(matches!(
            progress(
                &state,
                &[("n1", Some(&fresh_up)), ("n2", Some(&ready))],
                at(600),
                timeout
            ),
            Progress::RollBack(_)
        ));
        let ready1 = launched(initialized("n1", 0));
        assert_eq!(
            progress(
                &state,
                &[("n1", Some(&ready1)), ("n2", Some(&ready))],
                at(10_000),
                timeout
            ),
            Progress::Drain,
            "initialized replacements drain even past the timeout"
        );
        assert!(matches!(
            progress(
                &state,
                &[("n1", None), ("n2", Some(&ready))],
                at(5),
                timeout
            ),
            Progress::RollBack(_)
        ));
    }

    #[test]
    fn no_replacements_needed_drains_at_once() {
        let state = Replacement {
            cause: Cause::Drifted,
            started: at(0),
            replacements: vec![],
            consolidation: None,
        };
        assert_eq!(
            progress(&state, &[], at(0), Duration::from_secs(1)),
            Progress::Drain
        );
    }

    #[test]
    fn candidates_are_ordered_by_cause_then_age() {
        let (a, b, c) = (
            initialized("a", 30),
            initialized("b", 10),
            initialized("c", 20),
        );
        let mut list = vec![
            (&a, Cause::Drifted, String::new()),
            (&b, Cause::Drifted, String::new()),
            (&c, Cause::Expired, String::new()),
        ];
        order(&mut list);
        let names: Vec<String> = list.iter().map(|(c, _, _)| c.name_any()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    proptest! {
        /// Replacements in flight never count as pool nodes, and every
        /// begun or deleting claim counts as disrupting.
        #[test]
        fn pool_counts_match_a_direct_count(states in proptest::collection::vec(0u8..4, 0..12)) {
            let mut claims = Vec::new();
            for (i, state) in states.iter().enumerate() {
                let mut c = initialized(&format!("c{i}"), 0);
                match state {
                    1 => { c.annotations_mut().insert(keys::DISRUPTION_ANNOTATION.into(), "{}".into()); }
                    2 => { c.metadata.deletion_timestamp = Some(Time(at(1))); }
                    3 => { c.labels_mut().insert(keys::REPLACES_LABEL.into(), "c0".into()); }
                    _ => {}
                }
                claims.push(c);
            }
            let counts = pool_counts(claims.iter()).get("pool").copied().unwrap_or_default();
            let disrupting = states.iter().filter(|s| matches!(s, 1 | 2)).count();
            prop_assert_eq!(counts.disrupting, disrupting);
            // c0 exists whenever there are claims, draining or not.
            let replacing = states.iter().filter(|s| **s == 3).count();
            let nodes = states.iter().filter(|s| **s != 2).count() - replacing;
            prop_assert_eq!(counts.nodes, nodes);
        }
    }
}
