//! Who counts against a NodePool's disruption budgets: shared by every
//! controller that disrupts (emptiness, replacement) and by the solve, which
//! must not count on a node that is going.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::{Resource, ResourceExt};
use spotwright_api::{conditions, keys, NodeClaim};

use super::claim::{is_condition_true, nodepool_of};

/// How long a node stays after it is initialized before emptiness or
/// consolidation may take it. The pods it was launched for bind only once
/// it is ready, on the scheduler's own retry (backoff up to 10 s): removing
/// it before that, even with `consolidateAfter: 0s`, would launch again for
/// them or lose a bare pod bound to a node being deleted (Karpenter keeps a
/// nomination window for the same reason).
pub const NOMINATION_WINDOW: Duration = Duration::from_secs(30);

/// A NodePool's nodes and how many of them are being disrupted, for its budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Live claims, not counting replacements whose old claim still exists
    /// (they would inflate a percent budget while the old node still counts).
    pub nodes: usize,
    /// Deleting, being replaced, or `Disrupting=True`.
    pub disrupting: usize,
}

/// Whether a claim counts against its pool's budget.
pub fn is_disrupting(claim: &NodeClaim) -> bool {
    claim.meta().deletion_timestamp.is_some()
        || claim
            .annotations()
            .contains_key(keys::DISRUPTION_ANNOTATION)
        || is_condition_true(claim, conditions::DISRUPTING)
}

/// A replacement whose old claim (named in `existing`) is still there: its
/// room is promised to the old node's pods. One that replaces several
/// (consolidation) stays promised while any of them is there.
pub fn is_promised(claim: &NodeClaim, existing: &HashSet<String>) -> bool {
    let by_label = claim
        .labels()
        .get(keys::REPLACES_LABEL)
        .is_some_and(|old| existing.contains(old));
    by_label
        || claim
            .annotations()
            .get(keys::REPLACES_ALL_ANNOTATION)
            .is_some_and(|all| all.split(',').any(|old| existing.contains(old.trim())))
}

/// Per NodePool, its [`PoolCounts`].
pub fn pool_counts<'a>(
    claims: impl IntoIterator<Item = &'a NodeClaim> + Clone,
) -> HashMap<String, PoolCounts> {
    // An old claim still draining keeps its replacements promised to it.
    let existing: HashSet<String> = claims.clone().into_iter().map(|c| c.name_any()).collect();
    let mut counts: HashMap<String, PoolCounts> = HashMap::new();
    for claim in claims {
        let replacing = is_promised(claim, &existing);
        let slot = counts.entry(nodepool_of(claim)).or_default();
        if is_disrupting(claim) {
            slot.disrupting += 1;
        }
        if claim.meta().deletion_timestamp.is_none() && !replacing {
            slot.nodes += 1;
        }
    }
    counts
}
