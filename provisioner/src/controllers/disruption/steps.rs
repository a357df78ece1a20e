//! The steps of one disruption, shared by drift, expiry, rebalance and
//! consolidation: record, create the replacements, mark, launch, wait,
//! delete the old claims (termination drains them), or roll back.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde_json::json;
use spotwright_api::{conditions, keys, NodeClaim, NodeClass};
use spotwright_solver::NewNode;

use super::decide::{self, Cause, Progress, Replacement, Saving, ROLLED_BACK};
use super::Disruption;
use crate::act::events::Notice;
use crate::act::launcher::{launch_claim, Launcher, Origin};
use crate::act::{claims, nodes};
use crate::model::claim::{elapsed, find_condition, ConditionUpdate};
use crate::model::new_claim::{claim_name, new_claim};
use crate::state::Snapshot;

/// A disruption to begin: the claims that go and the nodes to launch first.
pub struct Start<'a> {
    pub cause: Cause,
    /// The claims that go, with their Nodes; the first leads.
    pub old: Vec<(&'a NodeClaim, &'a Node)>,
    /// Launched first; none when the pods fit on the other nodes.
    pub new_nodes: Vec<NewNode>,
    /// The Event's reason and text, on every old claim and Node.
    pub reason: &'static str,
    pub note: String,
    /// Consolidation's saving per old claim, in the order of `old`.
    pub savings: Vec<Saving>,
}

/// What [`begin`] came to.
pub enum Begun {
    Started,
    /// Nothing begun, to be tried next sweep (a write conflicted).
    NextSweep,
    /// The replacements cannot be built: why.
    Blocked(String),
}

/// Records the plan on every old claim, then creates the replacements,
/// marks the old claims and launches.
pub async fn begin<L: Launcher>(
    ctx: &Disruption<L>,
    snapshot: &Snapshot,
    start: Start<'_>,
    now: Timestamp,
) -> Begun {
    let Some((lead, _)) = start.old.first() else {
        return Begun::Blocked("nothing to disrupt".into());
    };
    let replacements = match replacement_claims(snapshot, &start, lead) {
        Ok(replacements) => replacements,
        Err(why) => return Begun::Blocked(why),
    };
    let mut recorded = Vec::new();
    for (i, (claim, node)) in start.old.iter().enumerate() {
        let state = Replacement {
            cause: start.cause,
            started: now,
            replacements: replacements.iter().map(|(r, _)| r.name_any()).collect(),
            consolidation: start.savings.get(i).cloned(),
        };
        // The record comes first: whatever happens after, a restart resumes it.
        let record = json!({"annotations": {keys::DISRUPTION_ANNOTATION: state.to_annotation()}});
        match claims::patch_metadata(&ctx.act.client, claim, record, true).await {
            Ok(object) => recorded.push((object, *node, state)),
            Err(err) => {
                tracing::debug!(claim = %claim.name_any(), error = %err, "disruption not recorded; next sweep");
                // Those recorded find their replacements missing and roll back.
                return Begun::NextSweep;
            }
        }
    }
    ctx.act
        .metrics
        .disruption_decisions
        .with_label_values(&[start.cause.as_str(), "replacing"])
        .inc();
    for (claim, node) in &start.old {
        tracing::info!(claim = %claim.name_any(), "{}", start.note);
        let notice = Notice::normal(start.reason, "Replace", start.note.clone());
        ctx.act
            .events
            .on_claim_and_node(claim, Some(node), notice)
            .await;
    }
    let mut created = Vec::new();
    for (replacement, class) in &replacements {
        match claims::create(&ctx.act.client, replacement).await {
            Ok(object) => created.push((object, *class)),
            // Seen as gone by the next step, which rolls back and retries.
            Err(err) => {
                tracing::warn!(claim = %replacement.name_any(), error = %err, "replacement claim not created")
            }
        }
    }
    for (claim, node, state) in &recorded {
        mark(ctx, claim, Some(node), state).await;
    }
    for (replacement, class) in &created {
        launch_replacement(ctx, replacement, class, lead).await;
    }
    Begun::Started
}

/// The replacement NodeClaims for `start`, each with its NodeClass.
fn replacement_claims<'s>(
    snapshot: &'s Snapshot,
    start: &Start,
    lead: &NodeClaim,
) -> Result<Vec<(NodeClaim, &'s NodeClass)>, String> {
    let all: Vec<String> = start.old.iter().map(|(c, _)| c.name_any()).collect();
    let mut replacements = Vec::new();
    for new_node in &start.new_nodes {
        let pool = snapshot
            .pool(&new_node.nodepool)
            .ok_or("the replacement's NodePool is gone")?;
        let class = snapshot
            .class_of(pool)
            .ok_or("the replacement's NodeClass is gone")?;
        let mut replacement = new_claim(&claim_name(&new_node.nodepool), pool, class, new_node);
        replacement
            .labels_mut()
            .insert(keys::REPLACES_LABEL.to_owned(), lead.name_any());
        if all.len() > 1 {
            replacement
                .annotations_mut()
                .insert(keys::REPLACES_ALL_ANNOTATION.to_owned(), all.join(","));
        }
        replacements.push((replacement, class.as_ref()));
    }
    Ok(replacements)
}

async fn launch_replacement<L: Launcher>(
    ctx: &Disruption<L>,
    replacement: &NodeClaim,
    class: &NodeClass,
    old: &NodeClaim,
) {
    let why = format!("replaces {}", old.name_any());
    // Created by an earlier sweep, perhaps by an earlier process.
    launch_claim(
        &ctx.act,
        replacement,
        class,
        Origin::Found(Some(why)),
        ctx.clock.now(),
    )
    .await;
}

/// `Disrupting=True` on the claim and the disruption taint on its node;
/// both idempotent, so each step repeats them until they hold.
async fn mark<L>(ctx: &Disruption<L>, claim: &NodeClaim, node: Option<&Node>, state: &Replacement) {
    let message = if state.replacements.is_empty() {
        format!("{}: draining, its pods fit elsewhere", state.cause.as_str())
    } else {
        format!(
            "{}: replacements {:?} first, then drain",
            state.cause.as_str(),
            state.replacements
        )
    };
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: true,
        reason: state.cause.as_str(),
        message,
    };
    let client = &ctx.act.client;
    if let Err(err) = claims::write_condition(client, claim, update, ctx.clock.now()).await {
        tracing::debug!(claim = %claim.name_any(), error = %err, "Disrupting not written; next sweep");
    }
    if let Some(node) = node {
        if let Err(err) = nodes::set_disrupted_taint(client, node, true).await {
            tracing::debug!(node = %node.name_any(), error = %err, "taint not written; next sweep");
        }
    }
}

/// Moves a begun disruption one step on.
pub async fn advance<L: Launcher>(
    ctx: &Disruption<L>,
    snapshot: &Snapshot,
    claim: &NodeClaim,
    state: Result<Replacement, crate::Error>,
    now: Timestamp,
) {
    let node = snapshot.node_named_by(claim).map(AsRef::as_ref);
    let state = match state {
        Ok(state) => state,
        Err(why) => return roll_back(ctx, snapshot, claim, node, None, why.to_string()).await,
    };
    let replacements: Vec<(&str, Option<&NodeClaim>)> = state
        .replacements
        .iter()
        .map(|name| (name.as_str(), snapshot.claim(name).map(AsRef::as_ref)))
        .collect();
    let timeout = ctx.settings.timing.replacement_timeout;
    match decide::progress(&state, &replacements, now, timeout) {
        Progress::RollBack(why) => roll_back(ctx, snapshot, claim, node, Some(&state), why).await,
        Progress::Launch(names) => {
            mark(ctx, claim, node, &state).await;
            for name in names {
                let Some(replacement) = snapshot.claim(&name) else {
                    continue;
                };
                if let Some(class) = snapshot.class(&replacement.spec.node_class_ref.name) {
                    launch_replacement(ctx, replacement, class, claim).await;
                }
            }
        }
        Progress::Wait => mark(ctx, claim, node, &state).await,
        Progress::Drain => drain(ctx, claim, node, &state, now).await,
    }
}

/// The replacements are up: delete the old claim; termination drains it.
async fn drain<L>(
    ctx: &Disruption<L>,
    claim: &NodeClaim,
    node: Option<&Node>,
    state: &Replacement,
    now: Timestamp,
) {
    match claims::delete(&ctx.act.client, claim).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(claim = %claim.name_any(), error = %err, "deleting the replaced claim failed; next sweep");
            return;
        }
    }
    let metrics = &ctx.act.metrics;
    metrics
        .disruption_decisions
        .with_label_values(&[state.cause.as_str(), "drained"])
        .inc();
    if state.cause == Cause::Drifted {
        if let Some(drifted) = find_condition(claim, conditions::DRIFTED) {
            metrics
                .drift_replacement
                .observe(elapsed(drifted.last_transition_time.0, now).as_secs_f64());
        }
    }
    if let Some(saving) = &state.consolidation {
        metrics
            .consolidation_savings
            .add(saving.before - saving.after);
    }
    count_consolidation(ctx, Some(state), "completed");
    let note = if state.replacements.is_empty() {
        "its pods fit on the other nodes; draining (PodDisruptionBudgets respected) and terminating"
            .to_owned()
    } else {
        format!(
            "replacements {:?} initialized after {}s; draining (PodDisruptionBudgets respected) and terminating",
            state.replacements,
            elapsed(state.started, now).as_secs()
        )
    };
    tracing::info!(claim = %claim.name_any(), "{note}");
    let notice = Notice::normal("Replaced", "Replace", note);
    ctx.act.events.on_claim_and_node(claim, node, notice).await;
}

/// Counts a consolidation action's `result` once: on its lead claim.
fn count_consolidation<L>(ctx: &Disruption<L>, state: Option<&Replacement>, result: &str) {
    let Some(saving) = state.and_then(|s| s.consolidation.as_ref()) else {
        return;
    };
    if saving.lead {
        ctx.act
            .metrics
            .consolidation_actions
            .with_label_values(&[&saving.action, result])
            .inc();
    }
}

/// Gives a replacement up: its replacement claims are deleted (their
/// instances terminated), the node untainted, the record removed, and
/// `Disrupting=False` holds the claim back for `retry_after`.
async fn roll_back<L>(
    ctx: &Disruption<L>,
    snapshot: &Snapshot,
    claim: &NodeClaim,
    node: Option<&Node>,
    state: Option<&Replacement>,
    why: String,
) {
    if let Err(err) = undo(ctx, snapshot, claim, node, state, &why).await {
        tracing::warn!(claim = %claim.name_any(), error = %err, "rolling back a replacement failed; next sweep");
        return;
    }
    let cause = state.map_or("Unknown", |s| s.cause.as_str());
    let metrics = &ctx.act.metrics;
    metrics
        .disruption_decisions
        .with_label_values(&[cause, "rolled_back"])
        .inc();
    count_consolidation(ctx, state, "rolled_back");
    let note = format!("replacement given up, node untainted, retried later: {why}");
    tracing::warn!(claim = %claim.name_any(), "{note}");
    let notice = Notice::warning("ReplacementRolledBack", "Replace", note);
    ctx.act.events.on_claim_and_node(claim, node, notice).await;
}

/// The writes of a rollback, in an order that a failure at any point
/// resumes from: replacements, taint, condition, record.
async fn undo<L>(
    ctx: &Disruption<L>,
    snapshot: &Snapshot,
    claim: &NodeClaim,
    node: Option<&Node>,
    state: Option<&Replacement>,
    why: &str,
) -> Result<(), crate::Error> {
    let client = &ctx.act.client;
    for name in state.map(|s| s.replacements.as_slice()).unwrap_or_default() {
        let live = snapshot
            .claim(name)
            .is_some_and(|c| c.meta().deletion_timestamp.is_none());
        if live {
            claims::delete_named(client, name).await?;
        }
    }
    if let Some(node) = node {
        nodes::set_disrupted_taint(client, node, false).await?;
    }
    let update = ConditionUpdate {
        type_: conditions::DISRUPTING,
        status: false,
        reason: ROLLED_BACK,
        message: why.to_owned(),
    };
    claims::write_condition(client, claim, update, ctx.clock.now()).await?;
    let forget = json!({"annotations": {keys::DISRUPTION_ANNOTATION: null}});
    claims::patch_metadata(client, claim, forget, false).await?;
    Ok(())
}
