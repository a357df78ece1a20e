//! NodePool deletion. Watches (through the cluster state) NodePools and
//! NodeClaims. Decides ([`decide::plan`]): every NodePool carries the
//! `spotwright.io/termination` finalizer; once a pool is deleted, its
//! claims are deleted oldest first, as many at a time as its budgets
//! without `reasons` allow, and the finalizer goes with the last claim.
//! Does: the claim deletions (the termination finalizer drains each node
//! through the Eviction API and terminates its instance) and Events on the
//! pool. Claims are also owned by their pool, so the garbage collector
//! deletes any that were missed once the pool is gone.

pub mod decide;

use std::time::Duration;

use kube::{Client, ResourceExt};
use spotwright_api::{NodeClaim, NodePool};

pub use decide::*;

use crate::act::events::{Events, Notice};
use crate::act::{claims, pools};
use crate::model::budgets;
use crate::model::claim::nodepool_of;
use crate::model::clock::SharedClock;
use crate::model::disruption::pool_counts;
use crate::state::{ClusterState, Kind, Snapshot};
use crate::Error;

/// The least time between two sweeps.
const SWEEP_GAP: Duration = Duration::from_millis(500);
/// The most: budgets with a schedule open without any change.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What NodePool deletion works with.
pub struct NodePoolDeletion {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
}

/// Runs until the process ends: a sweep on each NodePool or NodeClaim change.
pub async fn run(ctx: NodePoolDeletion) {
    let mut changes = ctx.state.subscribe(&[Kind::NodePools, Kind::NodeClaims]);
    ctx.state.ready().await;
    loop {
        let snapshot = ctx.state.snapshot();
        for pool in &snapshot.nodepools {
            if let Err(err) = step(&ctx, &snapshot, pool).await {
                tracing::warn!(nodepool = %pool.name_any(), error = %err, reason = err.metric_reason(), "nodepool deletion step failed; retrying");
            }
        }
        changes.pace(SWEEP_GAP, SWEEP_EVERY).await;
    }
}

async fn step(ctx: &NodePoolDeletion, snapshot: &Snapshot, pool: &NodePool) -> Result<(), Error> {
    let name = pool.name_any();
    let claims: Vec<&NodeClaim> = snapshot
        .claims
        .iter()
        .map(AsRef::as_ref)
        .filter(|c| nodepool_of(c) == name)
        .collect();
    let counts = pool_counts(claims.iter().copied());
    let count = counts.get(&name).copied().unwrap_or_default();
    let allowed = budgets::allowed_for_any_reason(
        &pool.spec.disruption.budgets,
        count.nodes,
        count.disrupting,
        ctx.clock.now(),
    );
    match plan(pool, &claims, allowed) {
        PoolStep::Nothing | PoolStep::Wait { .. } => Ok(()),
        PoolStep::AddFinalizer => pools::set_finalizer(&ctx.client, pool, true).await,
        PoolStep::Release => {
            pools::set_finalizer(&ctx.client, pool, false).await?;
            let note = "every node of the pool is drained and terminated".to_owned();
            let notice = Notice::normal("NodePoolDeleted", "Delete", note);
            ctx.events.about(pool, notice).await;
            Ok(())
        }
        PoolStep::DeleteClaims {
            claims: names,
            left,
        } => {
            for claim in claims.iter().filter(|c| names.contains(&c.name_any())) {
                claims::delete(&ctx.client, claim).await?;
                let note = format!(
                    "NodePool {name} is deleted: draining NodeClaim {} ({left} more to go after this round)",
                    claim.name_any()
                );
                let notice = |note| Notice::normal("NodePoolDeleting", "Delete", note);
                ctx.events.about(pool, notice(note.clone())).await;
                ctx.events.about(*claim, notice(note)).await;
            }
            Ok(())
        }
    }
}
