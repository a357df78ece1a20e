//! Underutilized consolidation, as one part of the disruption sweep. For
//! each NodePool with `consolidationPolicy: WhenEmptyOrUnderutilized`:
//! gather its candidates (nodes whose pods have not changed for
//! `consolidateAfter`), let [`crate::model::consolidation::evaluate`]
//! decide, and begin the action through the same steps as a drift
//! replacement ([`super::steps`]).
//!
//! The pool's recent peak is remembered: per pod template, the most pods
//! its nodes held at any sweep within `consolidateAfter`. An action must
//! leave room for those no longer there (see the model's stability rule).
//!
//! It waits while the cluster is not quiet: a pod pending for Spotwright, a
//! claim not yet initialized, or a disruption under way anywhere. A
//! simulation over a moving cluster would plan on room that is about to
//! be taken or given back.

mod candidates;
mod memory;

use std::collections::HashSet;
use std::time::Duration;

use kube::ResourceExt;
use spotwright_api::v1alpha1::DisruptionReason;
use spotwright_api::NodePool;

use super::decide::{Cause, Saving};
use super::steps::{begin, Begun, Start};
use super::{Disruption, Round};
use crate::act::events::Notice;
use crate::act::launcher::Launcher;
use crate::model::budgets;
use crate::model::consolidation::cost::RateLimit;
use crate::model::consolidation::underutilized_after;
use crate::model::consolidation::{
    evaluate, Action, Candidate, Decision, Pool, Rules, Settings, NEW_NODE,
};
use crate::model::disruption::PoolCounts;
use candidates::{candidates, min_types, quiet};
use memory::{question_print, recent_peak, remember_demand, remember_pods};

/// How consolidation behaves, from the flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsolidationSettings {
    pub decisions: Settings,
    /// Per NodePool.
    pub rate_limit: RateLimit,
    /// How long a node is kept after it is initialized (`--nomination-window`).
    pub nomination_window: Duration,
}

pub use memory::Memory;

/// One look at every NodePool, after the sweep's drift and expiry.
pub async fn sweep<L: Launcher>(ctx: &Disruption<L>, memory: &mut Memory, round: &mut Round<'_>) {
    let snapshot = round.snapshot;
    remember_pods(memory, snapshot, round.now);
    remember_demand(memory, snapshot, round.now);
    let pools: HashSet<String> = snapshot.nodepools.iter().map(|p| p.name_any()).collect();
    memory.asked.retain(|pool, _| pools.contains(pool));
    memory.begun.retain(|pool, _| pools.contains(pool));
    memory.announced.retain(|pool, _| pools.contains(pool));
    if !round.begun_in.is_empty() || !quiet(snapshot, &ctx.settings.scheduler_name) {
        return;
    }
    let mut pools: Vec<&NodePool> = snapshot.nodepools.iter().map(AsRef::as_ref).collect();
    pools.sort_by_key(|p| p.name_any());
    for pool in pools {
        if consolidate_pool(ctx, memory, round, pool).await {
            // One action per sweep: the next sweep sees the cluster it made.
            return;
        }
    }
}
/// Evaluates one pool and begins its best action; whether one began.
async fn consolidate_pool<L: Launcher>(
    ctx: &Disruption<L>,
    memory: &mut Memory,
    round: &mut Round<'_>,
    pool: &NodePool,
) -> bool {
    let snapshot = round.snapshot;
    let name = pool.name_any();
    let Some(consolidate_after) = underutilized_after(pool) else {
        return false;
    };
    let instance_types = ctx.act.launcher.instance_types();
    let found = candidates(
        snapshot,
        &memory.settled,
        &name,
        consolidate_after,
        ctx.settings.consolidation.nomination_window,
        &instance_types,
        round.now,
    );
    if found.is_empty() {
        return false;
    }
    let count = round.counts.get(&name).copied().unwrap_or_default();
    let budget = budgets::allowed(
        &pool.spec.disruption.budgets,
        DisruptionReason::Underutilized,
        count.nodes,
        count.disrupting,
        round.now,
    );
    let limit = ctx.settings.consolidation.rate_limit;
    let begun = memory.begun.entry(name.clone()).or_default();
    limit.allows(begun, round.now);
    let held = held_by(budget, count, limit, limit.wait(begun, round.now));
    let rules = Rules {
        threshold: f64::from(pool.spec.disruption.consolidation_threshold.min(100)) / 100.0,
        min_types: min_types(pool),
        // Evaluated even when held back, so the block is explained.
        budget: budget.max(1),
    };
    let settings = &ctx.settings.consolidation.decisions;
    let peak = recent_peak(memory, &name);
    let question = Pool {
        candidates: &found,
        recent_peak: &peak,
        rules: &rules,
    };
    let held_kind = held.as_ref().map(|(kind, _)| *kind);
    let asked = question_print(memory, question, held_kind, round.now);
    if memory.asked.get(&name) == Some(&asked) {
        return false;
    }
    memory.asked.insert(name.clone(), asked);
    let started = std::time::Instant::now();
    let evaluation = evaluate(round.cluster(ctx), question, settings);
    ctx.act
        .metrics
        .consolidation_evaluation
        .observe(started.elapsed().as_secs_f64());
    let Some(decision) = evaluation.decision else {
        tracing::debug!(nodepool = %name, candidates = found.len(), simulations = evaluation.simulations, "nothing to consolidate");
        return false;
    };
    if let Some((kind, why)) = held {
        let note = format!("{}, but not begun: {why}", describe(&decision, &found));
        announce_held(ctx, memory, pool, &decision, kind, note).await;
        return false;
    }
    memory.announced.remove(&name);
    let begun = start(ctx, memory, round, pool, decision, &found).await;
    if begun {
        memory.asked.remove(&name);
    }
    begun
}

/// What holds a found action back: the budget or the rate limit (its
/// kind, and why in words).
fn held_by(
    budget: usize,
    count: PoolCounts,
    limit: RateLimit,
    rate_wait: Option<std::time::Duration>,
) -> Option<(&'static str, String)> {
    if budget == 0 {
        let why = format!(
            "the NodePool's Underutilized budget is used up ({} of {} nodes disrupted)",
            count.disrupting, count.nodes
        );
        return Some(("budget", why));
    }
    rate_wait.map(|wait| {
        let why = format!(
            "the consolidation rate limit ({} per {}s) allows the next in {}s",
            limit.max,
            limit.window.as_secs(),
            wait.as_secs()
        );
        ("rate_limit", why)
    })
}

/// Begins `decision`; whether it began.
async fn start<L: Launcher>(
    ctx: &Disruption<L>,
    memory: &mut Memory,
    round: &mut Round<'_>,
    pool: &NodePool,
    decision: Decision,
    found: &[Candidate],
) -> bool {
    let snapshot = round.snapshot;
    let mut old = Vec::new();
    for &i in &decision.candidates {
        let claim = snapshot.claim(&found[i].claim);
        let node = snapshot.node(&found[i].node);
        let (Some(claim), Some(node)) = (claim, node) else {
            return false;
        };
        old.push((claim.as_ref(), node.as_ref()));
    }
    let share = decision.after / decision.candidates.len() as f64;
    let savings = decision
        .candidates
        .iter()
        .enumerate()
        .map(|(n, &i)| Saving {
            action: decision.action.as_str().to_owned(),
            lead: n == 0,
            before: found[i].price,
            after: share,
        })
        .collect();
    let new_nodes = match &decision.action {
        Action::Delete => Vec::new(),
        Action::Replace(node) => vec![node.as_ref().clone()],
    };
    let note = describe(&decision, found);
    let start = Start {
        cause: Cause::Underutilized,
        old,
        new_nodes,
        reason: "Consolidating",
        note,
        savings,
    };
    let action = decision.action.as_str();
    let metrics = &ctx.act.metrics;
    match begin(ctx, snapshot, start, round.now).await {
        Begun::Started => {
            let name = pool.name_any();
            memory
                .begun
                .entry(name.clone())
                .or_default()
                .push_back(round.now);
            round.begun_in.insert(name);
            metrics
                .consolidation_actions
                .with_label_values(&[action, "started"])
                .inc();
            true
        }
        Begun::NextSweep => false,
        Begun::Blocked(why) => {
            tracing::info!(nodepool = %pool.name_any(), "consolidation not begun: {why}");
            metrics
                .consolidation_actions
                .with_label_values(&[action, "blocked"])
                .inc();
            false
        }
    }
}

/// What the action does, for its Events: the nodes, the pods moved, and
/// the $/h before and after.
pub fn describe(decision: &Decision, found: &[Candidate]) -> String {
    let nodes: Vec<&str> = decision
        .candidates
        .iter()
        .map(|&i| found[i].node.as_str())
        .collect();
    let what = match &decision.action {
        Action::Delete => format!(
            "deleting node(s) [{}]; their pods fit on the other nodes",
            nodes.join(", ")
        ),
        Action::Replace(node) => format!(
            "replacing node(s) [{}] with one {} node of [{}]",
            nodes.join(", "),
            node.capacity_types.first().map_or("", |c| c.as_str()),
            node.instance_types.join(", ")
        ),
    };
    let moved: Vec<String> = decision
        .moves
        .iter()
        .take(10)
        .map(|(pod, to)| {
            if to == NEW_NODE {
                format!("{pod} → new node")
            } else {
                format!("{pod} → {to}")
            }
        })
        .collect();
    let more = decision.moves.len().saturating_sub(moved.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "Underutilized: {what}; moving {} pod(s) [{}{more}]; ${:.4}/h before, ${:.4}/h after at most (disruption cost {:.1})",
        decision.moves.len(),
        moved.join(", "),
        decision.before,
        decision.after,
        decision.disruption_cost
    )
}

/// A found action that the budget or rate limit holds back: an Event on
/// the NodePool, once per distinct reason.
async fn announce_held<L>(
    ctx: &Disruption<L>,
    memory: &mut Memory,
    pool: &NodePool,
    decision: &Decision,
    kind: &str,
    note: String,
) {
    let name = pool.name_any();
    if memory.announced.get(&name).is_some_and(|k| k == kind) {
        return;
    }
    ctx.act
        .metrics
        .consolidation_actions
        .with_label_values(&[decision.action.as_str(), "held"])
        .inc();
    tracing::info!(nodepool = %name, "{note}");
    let notice = Notice::normal("ConsolidationHeld", "Consolidate", note);
    ctx.act.events.about(pool, notice).await;
    memory.announced.insert(name, kind.to_owned());
}
