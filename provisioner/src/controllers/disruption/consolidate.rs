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

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use spotwright_api::duration::Lifetime;
use spotwright_api::keys::{CapacityType, INSTANCE_TYPE_LABEL};
use spotwright_api::v1alpha1::{ConsolidationPolicy, DisruptionReason};
use spotwright_api::{conditions, NodeClaim, NodePool};
use spotwright_solver::model::PendingPod;

use super::decide::{Cause, Saving};
use super::steps::{begin, Begun, Start};
use super::{Disruption, Round};
use crate::act::events::Notice;
use crate::act::launcher::Launcher;
use crate::model::budgets;
use crate::model::claim::{
    elapsed, find_condition, is_condition_true, nodepool_of, offering_price,
};
use crate::model::consolidation::cost::{fingerprint, pod_cost, settled_since, RateLimit};
use crate::model::consolidation::peak::PoolHistory;
use crate::model::consolidation::{
    evaluate, Action, Candidate, Decision, Pool, Rules, Settings, NEW_NODE, SPOT_TO_SPOT_MIN_TYPES,
};
use crate::model::disruption::{is_disrupting, NOMINATION_WINDOW};
use crate::model::facts;
use crate::model::pod::{do_not_disrupt, CachedPod};
use crate::state::Snapshot;

/// How consolidation behaves, from the flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsolidationSettings {
    pub decisions: Settings,
    /// Per NodePool.
    pub rate_limit: RateLimit,
}

/// What consolidation remembers between sweeps.
#[derive(Default)]
pub struct Memory {
    /// Per Node: the fingerprint of its pods and since when it holds.
    settled: HashMap<String, (u64, Timestamp)>,
    /// Per NodePool: when its recent actions began, oldest first.
    begun: HashMap<String, VecDeque<Timestamp>>,
    /// Per NodePool: the last block announced, so each is said once.
    announced: HashMap<String, String>,
    /// Per NodePool: its workload pods per template at each sweep.
    demand: HashMap<String, PoolHistory>,
    /// Per template: one of its pods, as the solver places it.
    templates: HashMap<u64, PendingPod>,
}

/// The recent peak holds no more pods than this (it bounds the work).
const MOST_PEAK_PODS: usize = 500;

/// One look at every NodePool, after the sweep's drift and expiry.
pub async fn sweep<L: Launcher>(ctx: &Disruption<L>, memory: &mut Memory, round: &mut Round<'_>) {
    let snapshot = round.snapshot;
    remember_pods(memory, snapshot, round.now);
    remember_demand(memory, snapshot, round.now);
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

/// Updates each Node's settled time from its pods.
fn remember_pods(memory: &mut Memory, snapshot: &Snapshot, now: Timestamp) {
    let mut seen = HashMap::new();
    for node in &snapshot.nodes {
        let name = node.name_any();
        let pods = snapshot.pods_on(&name);
        let uids = pods.iter().filter(|p| p.is_workload());
        let print = fingerprint(uids.map(|p| p.uid.as_deref().unwrap_or(&p.name)));
        let previous = memory.settled.get(&name).copied();
        seen.insert(name, settled_since(previous, print, now));
    }
    memory.settled = seen;
}

/// Samples each consolidating pool's workload pods per template, and
/// forgets samples older than its `consolidateAfter`.
fn remember_demand(memory: &mut Memory, snapshot: &Snapshot, now: Timestamp) {
    let mut windows = HashMap::new();
    for pool in &snapshot.nodepools {
        if let Some(after) = underutilized_after(pool) {
            windows.insert(pool.name_any(), after);
        }
    }
    let mut counts: HashMap<String, HashMap<u64, usize>> = HashMap::new();
    for claim in snapshot.claims.iter() {
        let pool = nodepool_of(claim);
        if !windows.contains_key(&pool) {
            continue;
        }
        let Some(node) = crate::model::claim::node_name(claim) else {
            continue;
        };
        let per_template = counts.entry(pool).or_default();
        for pod in snapshot
            .pods_on(node)
            .into_iter()
            .filter(|p| p.is_workload())
        {
            let template = template_key(pod);
            *per_template.entry(template).or_default() += 1;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                memory.templates.entry(template)
            {
                if let Ok(pending) = pod.pending() {
                    slot.insert(pending);
                }
            }
        }
    }
    memory.demand.retain(|pool, _| windows.contains_key(pool));
    for (pool, window) in windows {
        let looks = counts.remove(&pool).unwrap_or_default();
        memory
            .demand
            .entry(pool)
            .or_default()
            .record(now, window, looks);
    }
    let live: HashSet<u64> = memory
        .demand
        .values()
        .flat_map(PoolHistory::templates)
        .collect();
    memory.templates.retain(|key, _| live.contains(key));
}

/// What the replicas of one template share, as a key.
fn template_key(pod: &CachedPod) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pod.shape.hash(&mut hasher);
    hasher.finish()
}

/// The pods `pool` held at its peak within its window and holds no longer.
fn recent_peak(memory: &Memory, pool: &str) -> Vec<PendingPod> {
    let Some(history) = memory.demand.get(pool) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    for (template, gone) in history.missing() {
        let Some(sample) = memory.templates.get(&template) else {
            continue;
        };
        for i in 0..gone.min(MOST_PEAK_PODS) {
            let mut pod = sample.clone();
            pod.key = format!("{}/recent-peak-{template:x}-{i}", pod.namespace);
            missing.push(pod);
        }
    }
    missing.truncate(MOST_PEAK_PODS);
    missing
}

/// No pod waits for Spotwright, no claim is still coming up, and no
/// disruption is under way.
fn quiet(snapshot: &Snapshot, scheduler_name: &str) -> bool {
    let pending = snapshot
        .pods
        .iter()
        .any(|p| p.is_provisionable(scheduler_name, &snapshot.opted_in));
    let moving = snapshot
        .claims
        .iter()
        .any(|c| is_disrupting(c) || !is_condition_true(c, conditions::INITIALIZED));
    !pending && !moving
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
        memory,
        &name,
        consolidate_after,
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
    let begun = memory.begun.entry(name.clone()).or_default();
    let rate_wait = ctx.settings.consolidation.rate_limit.wait(begun, round.now);
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
    let held = if budget == 0 {
        Some((
            "budget",
            format!(
                "the NodePool's Underutilized budget is used up ({} of {} nodes disrupted)",
                count.disrupting, count.nodes
            ),
        ))
    } else {
        rate_wait.map(|wait| {
            let limit = ctx.settings.consolidation.rate_limit;
            let why = format!(
                "the consolidation rate limit ({} per {}s) allows the next in {}s",
                limit.max,
                limit.window.as_secs(),
                wait.as_secs()
            );
            ("rate_limit", why)
        })
    };
    if let Some((kind, why)) = held {
        let note = format!("{}, but not begun: {why}", describe(&decision, &found));
        announce_held(ctx, memory, pool, &decision, kind, note).await;
        return false;
    }
    memory.announced.remove(&name);
    start(ctx, memory, round, pool, decision, &found).await
}

/// `consolidateAfter` for a pool that consolidates underutilized nodes.
fn underutilized_after(pool: &NodePool) -> Option<Duration> {
    if pool.spec.disruption.consolidation_policy != ConsolidationPolicy::WhenEmptyOrUnderutilized {
        return None;
    }
    match Lifetime::parse(&pool.spec.disruption.consolidate_after) {
        Ok(Lifetime::After(after)) => Some(after),
        _ => None,
    }
}

/// The pool's `minValues` on instance types, else Karpenter's 15.
fn min_types(pool: &NodePool) -> usize {
    pool.spec
        .template
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == INSTANCE_TYPE_LABEL)
        .filter_map(|r| r.min_values)
        .max()
        .map_or(SPOT_TO_SPOT_MIN_TYPES, |m| m as usize)
}

/// The pool's nodes consolidation may act on now.
fn candidates(
    snapshot: &Snapshot,
    memory: &Memory,
    pool: &str,
    consolidate_after: Duration,
    instance_types: &[spotwright_solver::model::InstanceType],
    now: Timestamp,
) -> Vec<Candidate> {
    snapshot
        .claims
        .iter()
        .filter(|c| nodepool_of(c) == pool && c.meta().deletion_timestamp.is_none())
        .filter(|c| old_enough(c, now))
        .filter_map(|claim| {
            let node = snapshot.node_named_by(claim)?;
            let (_, since) = memory.settled.get(&node.name_any())?;
            if elapsed(*since, now) < consolidate_after {
                return None;
            }
            candidate(snapshot, claim, node, instance_types)
        })
        .collect()
}

/// Initialized for longer than the nomination window.
fn old_enough(claim: &NodeClaim, now: Timestamp) -> bool {
    find_condition(claim, conditions::INITIALIZED).is_some_and(|c| {
        c.status == "True" && elapsed(c.last_transition_time.0, now) >= NOMINATION_WINDOW
    })
}

/// The claim as a candidate: `None` when it is empty (emptiness removes
/// it), carries `do-not-disrupt`, has no known price or an unreadable pod.
fn candidate(
    snapshot: &Snapshot,
    claim: &NodeClaim,
    node: &Node,
    instance_types: &[spotwright_solver::model::InstanceType],
) -> Option<Candidate> {
    let node_name = node.name_any();
    let pods = snapshot.pods_on(&node_name);
    if do_not_disrupt(node, &pods).is_some() {
        return None;
    }
    let workload: Vec<_> = pods.iter().filter(|p| p.is_workload()).collect();
    if workload.is_empty() {
        return None;
    }
    let mut pending = Vec::new();
    let mut disruption_cost = 0.0;
    for pod in workload {
        pending.push(pod.pending().ok()?);
        disruption_cost += pod_cost(pod.shape.priority, pod.shape.deletion_cost);
    }
    let status = claim.status.as_ref()?;
    Some(Candidate {
        claim: claim.name_any(),
        node: node_name,
        nodepool: nodepool_of(claim),
        capacity: facts::node_capacity(node),
        capacity_type: CapacityType::parse(status.capacity_type.as_deref()?)?,
        price: offering_price(claim, instance_types).filter(|p| *p > 0.0)?,
        pods: pending,
        disruption_cost,
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
