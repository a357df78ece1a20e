//! Drift: a NodeClaim whose node no longer matches what its NodePool and
//! NodeClass would launch today gets the `Drifted` condition, status
//! `True`, with one of these reasons (checked in this order):
//!
//! - `AMIDrift`: the claim's `status.imageID` is not among the NodeClass's
//!   resolved AMIs (`status.amis`, re-resolved from SSM every `--nodeclass-refresh`, 30 s by default, by
//!   [`crate::controllers::nodeclass`]; for `eks@latest` from the API server's version,
//!   so a control-plane upgrade drifts every node). Only judged when the
//!   class has resolved AMIs: a failed resolution drifts nothing.
//! - `NodeClassDrift` / `NodePoolDrift`: the hash recorded on the claim when
//!   it was made ([`keys::NODECLASS_HASH_ANNOTATION`],
//!   [`keys::NODEPOOL_HASH_ANNOTATION`]) differs from the hash of the
//!   NodeClass's spec / the NodePool's template now. Requirements are not
//!   part of the NodePool hash. Claims without the annotation (made before
//!   hashes existed) never spec-drift.
//! - `RequirementsDrift`: the Node's labels (the labels the claim gives its
//!   Node, while there is none) fail one of the NodePool's requirements.
//!   `minValues` is ignored. A well-known instance key
//!   (type, zone, capacity type, family, ...) the labels lack is unknown, not
//!   a failure.
//!
//! A drift that reverts sets the condition to `False` (reason
//! `NotDrifted`), keeping when it changed; a claim that never drifted gets
//! no `Drifted` condition at all. Only `True` means drifted (the extender
//! and disruption read it so).
//!
//! Watches (through the cluster state) NodeClaims, Nodes, NodePools and
//! NodeClasses; [`decide::drift`] decides; [`run`] judges every claim every
//! `interval` (30 s) and at once when a NodeClass's resolution changes, and
//! writes the conditions, an Event per new drift, and the
//! `drifted_nodeclaims` gauge.

pub mod decide;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, Resource, ResourceExt};
use prometheus::IntGaugeVec;
use spotwright_api::conditions;
use tokio::sync::Notify;

pub use decide::*;

use crate::act::claims;
use crate::act::events::{Events, Notice};
use crate::model::claim::{find_condition, nodepool_of, provider_id};
use crate::model::clock::SharedClock;
use crate::state::{ClusterState, Kind};

/// The least time between two checks woken by changes: a burst of
/// NodeClass or NodePool updates is judged once.
const CHANGE_GAP: Duration = Duration::from_millis(500);

/// How the drift controller behaves.
#[derive(Clone, Debug)]
pub struct DriftSettings {
    /// How often every claim is judged. With the NodeClass refresh of 30 s,
    /// a new AMI shows as drift within about a minute, and at once when the
    /// NodeClass controller wakes drift.
    pub interval: Duration,
    /// Judges at once when notified (a NodeClass's AMIs changed).
    pub wake: Option<Arc<Notify>>,
    /// Set to the drifted claims by reason after each round.
    pub drifted: Option<IntGaugeVec>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            interval: Duration::from_secs(30),
            wake: None,
            drifted: None,
        }
    }
}

/// What drift works with.
pub struct Drift {
    pub client: Client,
    pub state: ClusterState,
    pub events: Events,
    pub clock: SharedClock,
    pub settings: DriftSettings,
}

/// Judges every claim every `settings.interval`, until the process ends.
pub async fn run(ctx: Drift) {
    // A NodeClass's resolved AMIs or a NodePool's template changing is seen
    // through the state, so the check that follows reads the new objects (a
    // wake from the NodeClass controller alone could come before its write
    // is back through the watch).
    let mut changes = ctx.state.subscribe(&[Kind::NodeClasses, Kind::NodePools]);
    ctx.state.ready().await;
    loop {
        let written = judge_all(&ctx).await;
        if written > 0 {
            tracing::debug!(written, "drift conditions written");
        }
        let interval = ctx.settings.interval;
        match &ctx.settings.wake {
            Some(wake) => {
                tokio::select! {
                    _ = changes.pace(CHANGE_GAP, interval) => {}
                    _ = wake.notified() => {}
                }
            }
            None => changes.pace(CHANGE_GAP, interval).await,
        }
    }
}

/// One round over the state: writes every `Drifted` condition that
/// changed, and sets the gauge. Returns how many were written.
pub async fn judge_all(ctx: &Drift) -> usize {
    let snapshot = ctx.state.snapshot();
    let now = ctx.clock.now();
    let mut written = 0;
    let mut drifted: BTreeMap<&'static str, i64> = [
        AMI_DRIFT,
        NODEPOOL_DRIFT,
        NODECLASS_DRIFT,
        REQUIREMENTS_DRIFT,
    ]
    .into_iter()
    .map(|r| (r, 0))
    .collect();
    for claim in snapshot
        .claims
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
    {
        let node = provider_id(claim)
            .and_then(|p| snapshot.node_with_provider_id(p))
            .or_else(|| snapshot.node_named_by(claim));
        let pool = snapshot.pool(&nodepool_of(claim));
        let class = snapshot.class(&claim.spec.node_class_ref.name);
        let verdict = drift(
            claim,
            node.map(AsRef::as_ref),
            pool.map(AsRef::as_ref),
            class.map(AsRef::as_ref),
        );
        if let Some(count) = verdict.as_ref().and_then(|(r, _)| drifted.get_mut(r)) {
            *count += 1;
        }
        if write(ctx, claim, verdict, now).await {
            written += 1;
        }
    }
    if let Some(gauge) = &ctx.settings.drifted {
        for (reason, count) in drifted {
            gauge.with_label_values(&[reason]).set(count);
        }
    }
    written
}

/// Writes the claim's `Drifted` condition when the verdict changes it, with
/// an Event for a new drift. Returns whether it wrote.
async fn write(
    ctx: &Drift,
    claim: &spotwright_api::NodeClaim,
    verdict: Option<(&'static str, String)>,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    let was = find_condition(claim, conditions::DRIFTED)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.clone());
    let Some(conditions) = drifted_conditions(claim, verdict.clone(), now) else {
        return false;
    };
    if let Err(err) = claims::write_status(&ctx.client, claim, &conditions, None).await {
        // A conflict or a deleted claim: judged again next round.
        tracing::debug!(claim = %claim.name_any(), error = %err, "drift condition not written");
        return false;
    }
    match verdict {
        Some((reason, message)) if was.as_deref() != Some(reason) => {
            tracing::info!(claim = %claim.name_any(), reason, "{message}");
            let notice = Notice::normal(reason, "Drift", message);
            ctx.events.about(claim, notice).await;
        }
        None if was.is_some() => {
            tracing::info!(claim = %claim.name_any(), "drift reverted");
        }
        _ => {}
    }
    true
}
