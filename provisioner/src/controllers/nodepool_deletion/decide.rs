//! NodePool deletion's decisions, pure: the next step for a pool from the
//! pool, its claims and what its budgets allow.

use kube::{Resource, ResourceExt};
use spotwright_api::{NodeClaim, NodePool};

use crate::model::claim::TERMINATION_FINALIZER;

/// The next step for one NodePool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolStep {
    /// Alive without the finalizer: add it.
    AddFinalizer,
    /// Alive with the finalizer, or deleted past it: nothing to do.
    Nothing,
    /// Deleted: delete these claims now (the termination finalizer drains each).
    DeleteClaims { claims: Vec<String>, left: usize },
    /// Deleted: its claims are draining, or the budget allows no more now.
    Wait { draining: usize, held: usize },
    /// Deleted and no claim left: drop the finalizer, letting the pool go.
    Release,
}

fn has_finalizer(pool: &NodePool) -> bool {
    pool.finalizers().iter().any(|f| f == TERMINATION_FINALIZER)
}

/// Plans the next step for `pool` from its claims (those labelled with its
/// name) and the number of nodes its budgets let go now. Claims go oldest
/// first, as Karpenter expires them; names break ties.
pub fn plan(pool: &NodePool, claims: &[&NodeClaim], allowed: usize) -> PoolStep {
    if pool.meta().deletion_timestamp.is_none() {
        return match has_finalizer(pool) {
            true => PoolStep::Nothing,
            false => PoolStep::AddFinalizer,
        };
    }
    if !has_finalizer(pool) {
        return PoolStep::Nothing;
    }
    if claims.is_empty() {
        return PoolStep::Release;
    }
    let mut live: Vec<&NodeClaim> = claims
        .iter()
        .copied()
        .filter(|c| c.meta().deletion_timestamp.is_none())
        .collect();
    let draining = claims.len() - live.len();
    if live.is_empty() || allowed == 0 {
        return PoolStep::Wait {
            draining,
            held: live.len(),
        };
    }
    live.sort_by_key(|c| (c.meta().creation_timestamp.clone(), c.name_any()));
    let now: Vec<String> = live.iter().take(allowed).map(|c| c.name_any()).collect();
    PoolStep::DeleteClaims {
        left: live.len() - now.len(),
        claims: now,
    }
}
