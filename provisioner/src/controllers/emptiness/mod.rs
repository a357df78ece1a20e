//! Emptiness. Watches (through the cluster state) NodeClaims, Nodes, Pods
//! and NodePools. Decides ([`decide`]): a node of a NodePool whose
//! consolidation policy allows it (`WhenEmpty`, and
//! `WhenEmptyOrUnderutilized`, which includes it) that has carried no
//! workload pod for `consolidateAfter` goes, within the pool's `Empty`
//! budget. Does: deletes its NodeClaim (the termination finalizer does the
//! rest), with Events on the claim and Node.
//!
//! Workload pods are those that are not DaemonSet-owned, not mirror pods and
//! not terminal. `spotwright.io/do-not-disrupt: "true"` on the Node or any of
//! its pods keeps the node, and an Event on the Node says so.
//!
//! A node is empty since its workload pods last changed
//! ([`crate::model::pod_events`]): kept in memory, and at a node's first
//! look resumed from the claim's `status.lastPodEventTime` if the node
//! still holds the pods recorded, so that a restart does not start the
//! clock again.

pub mod decide;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use spotwright_api::v1alpha1::DisruptionReason;
use spotwright_api::{conditions, keys, NodeClaim};

pub use decide::*;

use crate::act::claims;
use crate::act::events::{Events, Notice};
use crate::model::budgets;
use crate::model::claim::{node_name, ConditionUpdate};
use crate::model::clock::SharedClock;
use crate::model::disruption::{is_promised, pool_counts};
use crate::model::pod_events::PodsSeenByNode;
use crate::state::{ClusterState, Snapshot};

/// How the emptiness loop runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmptinessSettings {
    /// How often every claim is looked at.
    pub sweep_interval: Duration,
    /// How long a node is kept after it is initialized (`--nomination-window`).
    pub nomination_window: Duration,
}

impl Default for EmptinessSettings {
    fn default() -> Self {
        EmptinessSettings {
            sweep_interval: Duration::from_secs(5),
            nomination_window: NOMINATION_WINDOW,
        }
    }
}

/// What emptiness works with.
pub struct Emptiness {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
    pub settings: EmptinessSettings,
}

/// What the loop remembers between sweeps.
#[derive(Debug, Default)]
struct Tracking {
    /// Per Node: its workload pods, and since when.
    pods: PodsSeenByNode,
    /// Per claim: the last block reason announced, so each is announced once.
    blocked: HashMap<String, String>,
}

/// Runs the emptiness loop forever.
pub async fn run(ctx: Emptiness) {
    ctx.state.ready().await;
    let mut tracking = Tracking::default();
    let mut ticker = tokio::time::interval(ctx.settings.sweep_interval);
    loop {
        ticker.tick().await;
        sweep(&ctx, &mut tracking).await;
    }
}

async fn sweep(ctx: &Emptiness, tracking: &mut Tracking) {
    let now = ctx.clock.now();
    let snapshot = ctx.state.snapshot();
    let names: HashSet<String> = snapshot.claims.iter().map(|c| c.name_any()).collect();
    tracking.blocked.retain(|name, _| names.contains(name));
    tracking.pods = snapshot.pods_seen(&tracking.pods, now);
    let mut allowed = budgets_left(&snapshot, now);
    for claim in &snapshot.claims {
        let Some(policy) = policy_for(&snapshot, claim, ctx.settings.nomination_window) else {
            continue;
        };
        // A replacement waits empty for its old node's pods (until that
        // node is drained and gone): not removable yet.
        if is_promised(claim, &names) {
            continue;
        }
        let node = snapshot.node_named_by(claim).map(AsRef::as_ref);
        let pods = node_name(claim)
            .map(|n| snapshot.pods_on(n))
            .unwrap_or_default();
        let seen = node.and_then(|n| tracking.pods.get(&n.name_any()));
        let empty_since = seen.map(|seen| seen.since);
        let blocked = &mut tracking.blocked;
        match decide(claim, node, &pods, policy, empty_since, now) {
            EmptinessDecision::Blocked { reason } => {
                if blocked.get(&claim.name_any()) != Some(&reason) {
                    if let Some(node) = node {
                        let note = format!("empty, but not removed: {reason}");
                        let notice = Notice::normal("DisruptionBlocked", "Remove", note);
                        ctx.events.about(node, notice).await;
                    }
                    blocked.insert(claim.name_any(), reason);
                }
            }
            EmptinessDecision::Remove { empty_for } => {
                let left = allowed.get_mut(&crate::model::claim::nodepool_of(claim));
                match left {
                    Some(left) if *left > 0 => *left -= 1,
                    _ => {
                        tracing::debug!(claim = %claim.name_any(), "empty, but the pool's disruption budget is used up");
                        continue;
                    }
                }
                remove(ctx, claim, node, empty_for).await;
            }
            _ => {
                blocked.remove(&claim.name_any());
            }
        }
    }
}

async fn remove(
    ctx: &Emptiness,
    claim: &NodeClaim,
    node: Option<&k8s_openapi::api::core::v1::Node>,
    empty_for: Duration,
) {
    // Says why in `kubectl get nodeclaims` (the Disruption column) while it drains.
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: true,
        reason: "Empty",
        message: format!("empty for {}s: draining", empty_for.as_secs()),
    };
    let now = ctx.clock.now();
    if let Err(err) = claims::write_condition(&ctx.client, claim, update, now).await {
        tracing::debug!(claim = %claim.name_any(), error = %err, "Disrupting not written; removing anyway");
    }
    if let Err(err) = claims::delete(&ctx.client, claim).await.map(drop) {
        tracing::warn!(error = %err, "removal failed; retrying");
        return;
    }
    let note = format!(
        "removed: no pods but DaemonSet, mirror or finished ones for {}s",
        empty_for.as_secs()
    );
    tracing::info!(claim = %claim.name_any(), "{note}");
    let notice = Notice::normal("Empty", "Remove", note);
    ctx.events.on_claim_and_node(claim, node, notice).await;
}

/// Per NodePool, how many nodes emptiness may still remove this sweep.
fn budgets_left(snapshot: &Snapshot, now: Timestamp) -> HashMap<String, usize> {
    let counts = pool_counts(snapshot.claims.iter().map(AsRef::as_ref));
    snapshot
        .nodepools
        .iter()
        .map(|pool| {
            let name = pool.name_any();
            let count = counts.get(&name).copied().unwrap_or_default();
            let left = budgets::allowed(
                &pool.spec.disruption.budgets,
                DisruptionReason::Empty,
                count.nodes,
                count.disrupting,
                now,
            );
            (name, left)
        })
        .collect()
}

/// The claim's NodePool's policy; claims of unknown pools are left alone.
fn policy_for(
    snapshot: &Snapshot,
    claim: &NodeClaim,
    nomination_window: Duration,
) -> Option<EmptinessPolicy> {
    let pool_name = claim.labels().get(keys::NODEPOOL_LABEL)?;
    let pool = snapshot.pool(pool_name)?;
    match EmptinessPolicy::of(pool, nomination_window) {
        Ok(policy) => Some(policy),
        Err(err) => {
            tracing::warn!(nodepool = %pool_name, error = %err, "bad consolidateAfter; not removing its nodes");
            None
        }
    }
}
