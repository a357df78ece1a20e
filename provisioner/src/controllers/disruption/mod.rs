//! Voluntary disruption: drifted, expired and rebalance-recommended nodes
//! are replaced, new node first, under the NodePool's budgets. Watches
//! (through the cluster state) NodeClaims, Nodes, Pods, NodePools and
//! NodeClasses. Decides with [`decide`] (which claims, why, where a begun
//! replacement stands), [`crate::model::budgets`] and [`simulate`] (the
//! solver places the leaving node's pods). Does: one sweep looks at every
//! claim, moves each begun replacement one step on, and begins at most one
//! new replacement per NodePool. [`crate::run::turns`] runs it between
//! provisioning passes, so a replacement is never launched twice at once.
//!
//! The steps of one replacement:
//! 1. simulate with the solver ([`simulate`]);
//! 2. record the plan on the old claim ([`keys::DISRUPTION_ANNOTATION`]);
//! 3. create the replacement claims, mark the old one `Disrupting` and
//!    taint its node `spotwright.io/disrupted:NoSchedule`;
//! 4. launch the replacements and wait until they are initialized; on a
//!    failed launch or after the timeout, delete them, untaint, and retry
//!    after a while;
//! 5. delete the old claim: the termination finalizer drains through the
//!    Eviction API (PodDisruptionBudgets respected) and terminates.

pub mod decide;
pub mod simulate;

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde_json::json;
use spotwright_api::{conditions, keys, NodeClaim, NodeClass};
use spotwright_solver::model::InstanceType;

use crate::act::events::Notice;
use crate::act::launcher::{launch_claim, Launcher, Launching};
use crate::act::{claims, nodes};
use crate::model::budgets;
use crate::model::claim::{elapsed, find_condition, nodepool_of, ConditionUpdate};
use crate::model::clock::SharedClock;
use crate::model::disruption::{is_disrupting, is_promised, pool_counts, PoolCounts};
use crate::model::facts;
use crate::model::new_claim::{claim_name, new_claim};
use crate::model::pod::{do_not_disrupt, CachedPod};
use crate::model::problem::Problem;
use crate::state::{ClusterState, Snapshot};
use decide::{Cause, DisruptionTiming, Progress, Replacement, ROLLED_BACK};
use simulate::{simulate, Leaving, Simulation};

/// How disruption behaves.
#[derive(Clone, Debug)]
pub struct DisruptionSettings {
    /// The scheduler whose pods the simulation places.
    pub scheduler_name: String,
    pub timing: DisruptionTiming,
}

/// What disruption works with.
pub struct Disruption<L> {
    pub act: Launching<L>,
    pub state: ClusterState,
    pub clock: SharedClock,
    pub settings: DisruptionSettings,
}

/// What a sweep remembers between sweeps: the last block announced per
/// claim (its result and cause), so each is announced (Event, metric) once
/// rather than every sweep.
#[derive(Default)]
pub struct Memory {
    announced: HashMap<String, (Cause, String)>,
}

/// A claim to replace, and why.
type Candidate<'a> = (&'a NodeClaim, Cause, String);

/// One sweep.
pub async fn sweep<L: Launcher>(ctx: &Disruption<L>, memory: &mut Memory) {
    let snapshot = ctx.state.snapshot();
    let now = ctx.clock.now();
    let live: HashSet<String> = snapshot.claims.iter().map(|c| c.name_any()).collect();
    memory.announced.retain(|name, _| live.contains(name));
    for claim in snapshot
        .claims
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
    {
        if let Some(state) = decide::replacement_of(claim) {
            advance(ctx, &snapshot, claim, state, now).await;
        }
    }
    let timing = ctx.settings.timing;
    let mut candidates: Vec<Candidate> = snapshot
        .claims
        .iter()
        .filter(|c| !decide::backing_off(c, now, timing.retry_after))
        .filter(|c| !is_promised(c, &live))
        .filter_map(|c| decide::cause(c, now).map(|(cause, why)| (c.as_ref(), cause, why)))
        .collect();
    decide::order(&mut candidates);
    let mut round = Round {
        snapshot: &snapshot,
        going: going_away(&snapshot, &candidates),
        counts: pool_counts(snapshot.claims.iter().map(AsRef::as_ref)),
        begun_in: HashSet::new(),
        cluster: None,
        now,
    };
    for candidate in candidates {
        consider(ctx, memory, &mut round, candidate).await;
    }
}

/// What the candidates of one sweep share.
struct Round<'a> {
    snapshot: &'a Snapshot,
    /// Nodes and claims no simulation may place pods on.
    going: HashSet<String>,
    counts: HashMap<String, PoolCounts>,
    /// Pools a replacement began in this sweep: one per pool per sweep.
    begun_in: HashSet<String>,
    /// Built at the first simulation and reused: every candidate of a
    /// sweep is simulated against the same cluster.
    cluster: Option<(Problem, Vec<InstanceType>)>,
    now: Timestamp,
}

/// Checks one candidate against `do-not-disrupt` and its budget, then
/// simulates and begins its replacement.
async fn consider<L: Launcher>(
    ctx: &Disruption<L>,
    memory: &mut Memory,
    round: &mut Round<'_>,
    (claim, cause, why): Candidate<'_>,
) {
    let snapshot = round.snapshot;
    let pool_name = nodepool_of(claim);
    if round.begun_in.contains(&pool_name) {
        return;
    }
    let (Some(pool), Some(node)) = (snapshot.pool(&pool_name), snapshot.node_named_by(claim))
    else {
        return;
    };
    let pods = snapshot.pods_on(&node.name_any());
    if let Some(reason) = do_not_disrupt(node, &pods) {
        let note = format!("{why}, but not replaced: {reason}");
        let blocked = Blocked {
            cause,
            result: "do_not_disrupt",
            note,
        };
        announce(ctx, memory, claim, Some(node), blocked).await;
        return;
    }
    let count = round.counts.get(&pool_name).copied().unwrap_or_default();
    if let Some(note) = over_budget(pool, cause, &why, count, round.now) {
        let blocked = Blocked {
            cause,
            result: "budget",
            note,
        };
        announce(ctx, memory, claim, None, blocked).await;
        return;
    }
    let (problem, instance_types) = round.cluster.get_or_insert_with(|| {
        let instance_types = ctx.act.launcher.instance_types();
        let problem = snapshot.problem(&ctx.settings.scheduler_name, &instance_types);
        (problem, instance_types)
    });
    let plan = Planned {
        cause,
        why: &why,
        going: &round.going,
        problem: problem.clone(),
        instance_types,
    };
    match begin(ctx, snapshot, claim, node, &pods, plan, round.now).await {
        Begun::Started => {
            round.begun_in.insert(pool_name.clone());
            round.counts.entry(pool_name).or_default().disrupting += 1;
            memory.announced.remove(&claim.name_any());
        }
        Begun::NextSweep => {}
        Begun::Blocked(blocked) => {
            let note = format!("{why}, but not replaced: {blocked}");
            let blocked = Blocked {
                cause,
                result: "unschedulable",
                note,
            };
            announce(ctx, memory, claim, Some(node), blocked).await;
        }
    }
}

/// Why the pool's budget holds the candidate back, if it does.
fn over_budget(
    pool: &spotwright_api::NodePool,
    cause: Cause,
    why: &str,
    count: PoolCounts,
    now: Timestamp,
) -> Option<String> {
    let reason = cause.budget_reason()?;
    let budgets = &pool.spec.disruption.budgets;
    let allowed = budgets::allowed(budgets, reason, count.nodes, count.disrupting, now);
    if allowed > 0 {
        return None;
    }
    let problems = budgets::problems(budgets);
    Some(if problems.is_empty() {
        format!(
            "{why}, but the NodePool's {reason:?} budget is used up ({} of {} nodes disrupted)",
            count.disrupting, count.nodes
        )
    } else {
        format!(
            "{why}, but the NodePool's budgets are invalid (nothing is disrupted until fixed): {}",
            problems.join("; ")
        )
    })
}

/// Nodes (and in-flight claims, by claim name) that a simulation must not
/// place pods on: those being replaced or deleted, the other candidates,
/// and replacements whose room is promised to their old node's pods.
fn going_away(snapshot: &Snapshot, candidates: &[Candidate]) -> HashSet<String> {
    let existing: HashSet<String> = snapshot.claims.iter().map(|c| c.name_any()).collect();
    let candidate_names: HashSet<String> =
        candidates.iter().map(|(c, _, _)| c.name_any()).collect();
    let mut names = HashSet::new();
    for claim in &snapshot.claims {
        let promised = is_promised(claim, &existing);
        if is_disrupting(claim) || promised || candidate_names.contains(&claim.name_any()) {
            names.insert(claim.name_any());
            if let Some(node) = claim.status.as_ref().and_then(|s| s.node_name.clone()) {
                names.insert(node);
            }
        }
    }
    names
}

/// What [`begin`] simulates with and why.
struct Planned<'a> {
    cause: Cause,
    why: &'a str,
    going: &'a HashSet<String>,
    problem: Problem,
    instance_types: &'a [InstanceType],
}

/// What [`begin`] came to.
enum Begun {
    Started,
    /// Nothing begun, to be tried next sweep (a write conflicted).
    NextSweep,
    /// The pods cannot move: why.
    Blocked(String),
}

/// Simulates and, when the pods fit, records the plan and begins it.
async fn begin<L: Launcher>(
    ctx: &Disruption<L>,
    snapshot: &Snapshot,
    claim: &NodeClaim,
    node: &Node,
    pods: &[&CachedPod],
    plan: Planned<'_>,
    now: Timestamp,
) -> Begun {
    let new_nodes = match simulate_leaving(claim, node, pods, &plan) {
        Simulation::Fits(new_nodes) => new_nodes,
        Simulation::Blocked(why) => return Begun::Blocked(why),
    };
    let mut replacements = Vec::new();
    for new_node in &new_nodes {
        let Some(pool) = snapshot.pool(&new_node.nodepool) else {
            return Begun::Blocked("the replacement's NodePool is gone".into());
        };
        let Some(class) = snapshot.class_of(pool) else {
            return Begun::Blocked("the replacement's NodeClass is gone".into());
        };
        let mut replacement = new_claim(&claim_name(&new_node.nodepool), pool, class, new_node);
        replacement
            .labels_mut()
            .insert(keys::REPLACES_LABEL.to_owned(), claim.name_any());
        replacements.push((replacement, class.as_ref()));
    }
    let state = Replacement {
        cause: plan.cause,
        started: now,
        replacements: replacements.iter().map(|(r, _)| r.name_any()).collect(),
    };
    // The record comes first: whatever happens after, a restart resumes it.
    let record = json!({"annotations": {keys::DISRUPTION_ANNOTATION: state.to_annotation()}});
    let recorded = match claims::patch_metadata(&ctx.act.client, claim, record, true).await {
        Ok(recorded) => recorded,
        Err(err) => {
            tracing::debug!(claim = %claim.name_any(), error = %err, "replacement not recorded; next sweep");
            return Begun::NextSweep;
        }
    };
    ctx.act
        .metrics
        .disruption_decisions
        .with_label_values(&[plan.cause.as_str(), "replacing"])
        .inc();
    let types: Vec<String> = new_nodes
        .iter()
        .map(|n| n.instance_types.first().cloned().unwrap_or_default())
        .collect();
    let note = format!(
        "{}: replacing node {} with {} new node(s) [{}] for {} pod(s), new node first",
        plan.why,
        node.name_any(),
        new_nodes.len(),
        types.join(", "),
        pods.iter().filter(|p| p.is_workload()).count()
    );
    tracing::info!(claim = %claim.name_any(), "{note}");
    let notice = Notice::normal("Replacing", "Replace", note);
    ctx.act
        .events
        .on_claim_and_node(claim, Some(node), notice)
        .await;
    start(ctx, claim, &recorded, node, &state, replacements).await;
    Begun::Started
}

/// The leaving node's pods placed by the solver: the new nodes to launch
/// first, or why some pod has nowhere to go.
fn simulate_leaving(
    claim: &NodeClaim,
    node: &Node,
    pods: &[&CachedPod],
    plan: &Planned<'_>,
) -> Simulation {
    let node_name = node.name_any();
    let pool_name = nodepool_of(claim);
    let mut moving = Vec::new();
    for pod in pods.iter().filter(|p| p.is_workload()) {
        match pod.pending() {
            Ok(pending) => moving.push(pending),
            Err(err) => return Simulation::Blocked(err.to_string()),
        }
    }
    let leaving = Leaving {
        node: &node_name,
        nodepool: &pool_name,
        capacity: facts::node_capacity(node),
        pods: moving,
    };
    simulate(
        plan.problem.clone(),
        leaving,
        plan.going,
        plan.instance_types,
    )
}

/// Creates the replacement claims, marks the old claim and node, and
/// launches the replacements.
async fn start<L: Launcher>(
    ctx: &Disruption<L>,
    old: &NodeClaim,
    recorded: &NodeClaim,
    node: &Node,
    state: &Replacement,
    replacements: Vec<(NodeClaim, &NodeClass)>,
) {
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
    mark(ctx, recorded, Some(node), state).await;
    for (replacement, class) in &created {
        launch_replacement(ctx, replacement, class, old).await;
    }
}

async fn launch_replacement<L: Launcher>(
    ctx: &Disruption<L>,
    replacement: &NodeClaim,
    class: &NodeClass,
    old: &NodeClaim,
) {
    let why = format!("replaces {}", old.name_any());
    launch_claim(&ctx.act, replacement, class, Some(why), ctx.clock.now()).await;
}

/// `Disrupting=True` on the claim and the disruption taint on its node;
/// both idempotent, so each step repeats them until they hold.
async fn mark<L>(ctx: &Disruption<L>, claim: &NodeClaim, node: Option<&Node>, state: &Replacement) {
    let message = format!(
        "{}: replacements {:?} first, then drain",
        state.cause.as_str(),
        state.replacements
    );
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

/// Moves a begun replacement one step on.
async fn advance<L: Launcher>(
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
    let note = format!(
        "replacements {:?} initialized after {}s; draining (PodDisruptionBudgets respected) and terminating",
        state.replacements,
        elapsed(state.started, now).as_secs()
    );
    tracing::info!(claim = %claim.name_any(), "{note}");
    let notice = Notice::normal("Replaced", "Replace", note);
    ctx.act.events.on_claim_and_node(claim, node, notice).await;
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
    ctx.act
        .metrics
        .disruption_decisions
        .with_label_values(&[cause, "rolled_back"])
        .inc();
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

/// A candidate held back: its cause, the metric's result, the Event's note.
struct Blocked {
    cause: Cause,
    result: &'static str,
    note: String,
}

/// Why a candidate waits, once per distinct reason: an Event (on the Node
/// when there is one, else the claim) and the decision metric.
async fn announce<L>(
    ctx: &Disruption<L>,
    memory: &mut Memory,
    claim: &NodeClaim,
    node: Option<&Node>,
    blocked: Blocked,
) {
    let name = claim.name_any();
    let key = (blocked.cause, blocked.result.to_owned());
    if memory.announced.get(&name) == Some(&key) {
        return;
    }
    ctx.act
        .metrics
        .disruption_decisions
        .with_label_values(&[blocked.cause.as_str(), blocked.result])
        .inc();
    tracing::info!(claim = %name, "{}", blocked.note);
    let notice = Notice::normal("DisruptionBlocked", "Replace", blocked.note);
    match node {
        Some(node) => ctx.act.events.about(node, notice).await,
        None => ctx.act.events.about(claim, notice).await,
    }
    memory.announced.insert(name, key);
}
