//! Voluntary disruption: drifted, expired and rebalance-recommended nodes
//! are replaced, new node first, and underutilized ones consolidated
//! ([`consolidate`]), under the NodePool's budgets. Watches (through the
//! cluster state) NodeClaims, Nodes, Pods, NodePools and NodeClasses.
//! Decides with [`decide`] (which claims, why, where a begun replacement
//! stands), [`crate::model::budgets`], [`crate::model::simulate`] (the
//! solver places the leaving nodes' pods) and
//! [`crate::model::consolidation`]. Does: one sweep looks at every claim,
//! moves each begun disruption one step on ([`steps`]), and begins at most
//! one new one per NodePool. [`crate::run::turns`] runs it between
//! provisioning passes, so a replacement is never launched twice at once.
//!
//! The steps of one disruption:
//! 1. simulate with the solver;
//! 2. record the plan on each old claim (`spotwright.io/disruption`);
//! 3. create the replacement claims, mark the old ones `Disrupting` and
//!    taint their nodes `spotwright.io/disrupted:NoSchedule`;
//! 4. launch the replacements and wait until they are initialized; on a
//!    failed launch or after the timeout, delete them, untaint, and retry
//!    after a while;
//! 5. delete the old claims: the termination finalizer drains through the
//!    Eviction API (PodDisruptionBudgets respected) and terminates.

pub mod consolidate;
pub mod decide;
pub mod steps;

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use spotwright_api::NodeClaim;

use crate::act::events::Notice;
use crate::act::launcher::{Launcher, Launching};
use crate::model::budgets;
use crate::model::claim::nodepool_of;
use crate::model::clock::SharedClock;
use crate::model::disruption::{is_disrupting, is_promised, pool_counts, PoolCounts};
use crate::model::facts;
use crate::model::pod::{do_not_disrupt, CachedPod};
use crate::model::simulate::{Cluster, Leaving, Simulation};
use crate::state::{ClusterState, Snapshot};
use decide::{Cause, DisruptionTiming};
use steps::{begin, Begun, Start};

/// How disruption behaves.
#[derive(Clone, Debug)]
pub struct DisruptionSettings {
    /// The scheduler whose pods the simulation places.
    pub scheduler_name: String,
    pub timing: DisruptionTiming,
    pub consolidation: consolidate::ConsolidationSettings,
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
    consolidation: consolidate::Memory,
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
            steps::advance(ctx, &snapshot, claim, state, now).await;
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
    consolidate::sweep(ctx, &mut memory.consolidation, &mut round).await;
}

/// What the candidates of one sweep share.
pub struct Round<'a> {
    snapshot: &'a Snapshot,
    /// Nodes and claims no simulation may place pods on.
    going: HashSet<String>,
    counts: HashMap<String, PoolCounts>,
    /// Pools a replacement began in this sweep: one per pool per sweep.
    begun_in: HashSet<String>,
    /// Built at the first simulation and reused: every candidate of a
    /// sweep is simulated against the same cluster.
    cluster: Option<Cluster>,
    now: Timestamp,
}

impl Round<'_> {
    /// The cluster to simulate on, built at the first call of the sweep.
    fn cluster<L: Launcher>(&mut self, ctx: &Disruption<L>) -> &mut Cluster {
        let (snapshot, going) = (self.snapshot, &self.going);
        self.cluster.get_or_insert_with(|| {
            let instance_types = ctx.act.launcher.instance_types();
            let problem = snapshot.problem(&ctx.settings.scheduler_name, &instance_types);
            Cluster::new(problem, going, instance_types)
        })
    }
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
    let unschedulable = |blocked: String| Blocked {
        cause,
        result: "unschedulable",
        note: format!("{why}, but not replaced: {blocked}"),
    };
    let simulation = simulate_leaving(claim, node, &pods, round.cluster(ctx));
    let new_nodes = match simulation {
        Simulation::Fits(new_nodes) => new_nodes,
        Simulation::Blocked(blocked) => {
            announce(ctx, memory, claim, Some(node), unschedulable(blocked)).await;
            return;
        }
    };
    let start = Start {
        cause,
        old: vec![(claim, node)],
        note: replacing_note(&why, node, &new_nodes, &pods),
        new_nodes,
        reason: "Replacing",
        savings: Vec::new(),
    };
    match begin(ctx, snapshot, start, round.now).await {
        Begun::Started => {
            round.begun_in.insert(pool_name.clone());
            round.counts.entry(pool_name).or_default().disrupting += 1;
            memory.announced.remove(&claim.name_any());
        }
        Begun::NextSweep => {}
        Begun::Blocked(blocked) => {
            announce(ctx, memory, claim, Some(node), unschedulable(blocked)).await;
        }
    }
}

fn replacing_note(
    why: &str,
    node: &Node,
    new_nodes: &[spotwright_solver::NewNode],
    pods: &[&CachedPod],
) -> String {
    let types: Vec<String> = new_nodes
        .iter()
        .map(|n| n.instance_types.first().cloned().unwrap_or_default())
        .collect();
    format!(
        "{why}: replacing node {} with {} new node(s) [{}] for {} pod(s), new node first",
        node.name_any(),
        new_nodes.len(),
        types.join(", "),
        pods.iter().filter(|p| p.is_workload()).count()
    )
}

/// The leaving node's pods placed by the solver: the new nodes to launch
/// first, or why some pod has nowhere to go.
fn simulate_leaving(
    claim: &NodeClaim,
    node: &Node,
    pods: &[&CachedPod],
    cluster: &mut Cluster,
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
    let capacity = facts::node_capacity(node);
    cluster.replacement_for(&Leaving {
        node: &node_name,
        nodepool: &pool_name,
        capacity: &capacity,
        pods: &moving,
    })
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
