//! Registration. Watches (through the cluster state) NodeClaims and Nodes.
//! Decides ([`decide`]) per claim: a Node whose providerID matches gets the
//! claim's labels and taints, and the claim records `Registered` and
//! `Initialized`; the registration taint comes off once the claim's launch
//! group has registered (or `gate` has passed); a claim whose instance
//! never registers within the timeout is deleted. Does: Node label and
//! taint patches, the claim's status, Events; the termination finalizer
//! then terminates a timed-out claim's instance, and its pods, still
//! pending, are solved again.

pub mod decide;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use spotwright_api::{conditions, NodeClaim};

pub use decide::*;

use crate::act::events::{Events, Notice};
use crate::act::{claims, nodes};
use crate::model::claim::{is_condition_true, node_name, provider_id};
use crate::model::clock::SharedClock;
use crate::model::launch_group::LaunchGroup;
use crate::state::{ClusterState, Kind, Snapshot};
use crate::Error;

/// Claims handled at once. A launch group's registration taints should come
/// off together: the scheduler fills whichever nodes open first with pods
/// solved onto the others. At 8, a 36-node group opened over a second.
const CONCURRENCY: usize = 32;
/// Writes to one Node per sweep. A new Node is written by its agent (or
/// KWOK), the node controller and us within its first second, so a write
/// guarded by resourceVersion is often refused; waiting for the next sweep
/// kept some of a group's nodes gated 1 to 2.5 s after the rest.
const NODE_WRITE_ATTEMPTS: u32 = 3;
/// The pause before reading a Node again after a refused write, times the
/// attempt number.
const CONFLICT_PAUSE: Duration = Duration::from_millis(20);
/// The least time between two sweeps: Node status updates come often, and
/// a sweep reads every claim.
const SWEEP_GAP: Duration = Duration::from_millis(250);

/// What registration works with.
pub struct Registration {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
    pub settings: RegistrationSettings,
}

/// Runs registration until the process ends: a sweep over every claim on
/// each claim or Node change, when a registration taint's bound is reached,
/// and at least every `recheck`.
pub async fn run(ctx: Registration) {
    let mut changes = ctx.state.subscribe(&[Kind::NodeClaims, Kind::Nodes]);
    ctx.state.ready().await;
    loop {
        let next_gate = sweep(&ctx).await;
        let wait = next_gate.map_or(ctx.settings.recheck, |g| g.min(ctx.settings.recheck));
        changes.pace(SWEEP_GAP, wait).await;
    }
}

/// One look at every claim; returns when the next registration taint's
/// bound is reached, if any is waiting for one.
pub async fn sweep(ctx: &Registration) -> Option<Duration> {
    let snapshot = ctx.state.snapshot();
    let now = ctx.clock.now();
    let snapshot = &snapshot;
    let groups = &group_progress(snapshot);
    let looks: Vec<BoxFuture<'_, Option<Duration>>> = snapshot
        .claims
        .iter()
        .map(|claim| {
            async move {
                let node = provider_id(claim).and_then(|p| snapshot.node_with_provider_id(p));
                let node = node.map(AsRef::as_ref);
                let group = LaunchGroup::of(claim).map(|g| GroupProgress {
                    registered: groups.get(&g.id).copied().unwrap_or_default(),
                    size: g.size,
                });
                let decision = decide(claim, node, group, &ctx.settings, now);
                let gate_opens_in = match &decision {
                    RegistrationDecision::Register { gate_opens_in, .. } => *gate_opens_in,
                    _ => None,
                };
                if let Err(err) = act(ctx, claim, node, group, decision, now).await {
                    tracing::warn!(claim = %claim.name_any(), error = %err, reason = err.metric_reason(), "registration failed; retrying");
                }
                gate_opens_in
            }
            .boxed()
        })
        .collect();
    let waits: Vec<Option<Duration>> = futures::stream::iter(looks)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    waits.into_iter().flatten().min()
}

/// Per launch group id, how many of its claims have a Node.
fn group_progress(snapshot: &Snapshot) -> HashMap<String, usize> {
    let mut registered = HashMap::new();
    for claim in &snapshot.claims {
        let has_node =
            provider_id(claim).is_some_and(|p| snapshot.node_with_provider_id(p).is_some());
        if let Some(group) = LaunchGroup::of(claim).filter(|_| has_node) {
            *registered.entry(group.id).or_insert(0) += 1;
        }
    }
    registered
}

async fn act(
    ctx: &Registration,
    claim: &NodeClaim,
    node: Option<&Node>,
    group: Option<GroupProgress>,
    decision: RegistrationDecision,
    now: Timestamp,
) -> Result<(), Error> {
    let decision = match (decision, node) {
        (RegistrationDecision::TimedOut { waited }, _) => {
            return time_out(ctx, claim, waited).await
        }
        (decision @ RegistrationDecision::Register { .. }, Some(node)) => {
            write_node(ctx, claim, node, group, decision, now).await?
        }
        (decision, _) => decision,
    };
    let RegistrationDecision::Register {
        node_name: registered,
        initialized,
        ..
    } = decision
    else {
        return Ok(());
    };
    let (conditions, changed) = registered_conditions(claim, &registered, initialized, now);
    if changed || node_name(claim) != Some(registered.as_str()) {
        claims::write_status(&ctx.client, claim, &conditions, Some(&registered)).await?;
        announce(&ctx.events, claim, &registered, initialized).await;
    }
    Ok(())
}

/// Writes the decision's update onto `node`. When the write is refused
/// because the Node changed, reads it again and decides again on what it
/// holds now, up to [`NODE_WRITE_ATTEMPTS`] writes. Returns the decision
/// that was written, or `Ignore` if the Node is gone.
pub async fn write_node(
    ctx: &Registration,
    claim: &NodeClaim,
    node: &Node,
    group: Option<GroupProgress>,
    mut decision: RegistrationDecision,
    now: Timestamp,
) -> Result<RegistrationDecision, Error> {
    let mut read_again: Option<Node> = None;
    for attempt in 1..=NODE_WRITE_ATTEMPTS {
        let RegistrationDecision::Register { node_update, .. } = &decision else {
            return Ok(decision);
        };
        if node_update.is_empty() {
            return Ok(decision);
        }
        let current = read_again.as_ref().unwrap_or(node);
        match update_node(&ctx.client, current, node_update).await {
            Err(err) if err.is_conflict() && attempt < NODE_WRITE_ATTEMPTS => {
                tokio::time::sleep(CONFLICT_PAUSE.saturating_mul(attempt)).await;
                let Some(fresh) = nodes::get(&ctx.client, &current.name_any()).await? else {
                    return Ok(RegistrationDecision::Ignore);
                };
                decision = decide(claim, Some(&fresh), group, &ctx.settings, now);
                read_again = Some(fresh);
            }
            result => return result.map(|()| decision),
        }
    }
    Ok(decision)
}

async fn time_out(ctx: &Registration, claim: &NodeClaim, waited: Duration) -> Result<(), Error> {
    let note = format!(
        "no Node registered within {}s of launch; deleting the claim so its instance is terminated and its pods are solved again",
        waited.as_secs()
    );
    tracing::warn!(claim = %claim.name_any(), "{note}");
    let notice = Notice::warning("RegistrationTimedOut", "Delete", note);
    ctx.events.about(claim, notice).await;
    claims::delete_named(&ctx.client, &claim.name_any()).await
}

async fn announce(events: &Events, claim: &NodeClaim, node_name: &str, initialized: bool) {
    if !is_condition_true(claim, conditions::REGISTERED) {
        let note = format!("Node {node_name} registered; labels and taints applied");
        events
            .about(claim, Notice::normal("Registered", "Register", note))
            .await;
    }
    if initialized && !is_condition_true(claim, conditions::INITIALIZED) {
        let note = format!("Node {node_name} is Ready and its startup taints are gone");
        events
            .about(claim, Notice::normal("Initialized", "Initialize", note))
            .await;
    }
}

/// Labels by merge patch (other labels untouched); taints replace the whole
/// list, guarded by the Node's resourceVersion; both in one write.
async fn update_node(client: &Client, node: &Node, update: &NodeUpdate) -> Result<(), Error> {
    nodes::set_labels_and_taints(client, node, &update.labels, update.taints.as_deref()).await
}
