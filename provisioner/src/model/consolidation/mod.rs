//! Underutilized consolidation, decided as a pure function over plain
//! data: which of a NodePool's candidate nodes should go, and whether for
//! nothing (their pods fit on the other nodes) or for one cheaper node.
//!
//! Every decision is a simulation with the provisioner's own solver
//! ([`Cluster`]). The rules that keep it from churning, documented in
//! `docs/provisioner.md` ("Consolidation"):
//! - it must save at least the pool's `consolidationThreshold` of the
//!   candidates' $/h, counted at the dearest type the replacement may land
//!   on ([`replace`]);
//! - the saving must pay for the disruption: `savings > eviction price ×
//!   disruption cost` ([`cost`]);
//! - it must be stable: every displaced pod is placed without any launch
//!   but the one replacement, and so are the pods the pool held at its
//!   peak within `consolidateAfter` and no longer holds (a workload that
//!   went down for a moment comes back without a launch); and the
//!   replacement could not itself be replaced by a cheaper node
//!   ([`replace`]).
//!
//! Multi-node consolidation tries the cheapest-to-disrupt candidates
//! first, as many as a binary search finds that still go onto at most one
//! new node; single-node consolidation tries each candidate alone. The
//! action worth the most (savings less the disruption's price) wins.

pub mod cost;
pub mod peak;
pub mod replace;

use std::time::Duration;

use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::ConsolidationPolicy;
use spotwright_api::NodePool;
use spotwright_solver::model::{CapacityType, InstanceType, PendingPod, Resources};
use spotwright_solver::{NewNode, Plan};

use crate::model::simulate::{unschedulable_summary, Cluster, Leaving};

/// Karpenter's figure: a Spot-to-Spot replacement must still offer this
/// many cheaper instance types when the pool sets no `minValues` on them.
pub const SPOT_TO_SPOT_MIN_TYPES: usize = 15;

/// Multi-node consolidation looks at no more candidates than this at once
/// (Karpenter's cap too).
pub const MAX_MULTI_CANDIDATES: usize = 100;

/// A node consolidation may act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub claim: String,
    pub node: String,
    pub nodepool: String,
    /// Given back to the pool's limits when it goes.
    pub capacity: Resources,
    pub capacity_type: CapacityType,
    /// $/h of its offering.
    pub price: f64,
    /// Its workload pods.
    pub pods: Vec<PendingPod>,
    /// The sum of its pods' eviction costs ([`cost::pod_cost`]).
    pub disruption_cost: f64,
}

impl Candidate {
    /// It as a node leaving the cluster, for [`Cluster::simulate`].
    pub fn leaving(&self) -> Leaving<'_> {
        Leaving {
            node: &self.node,
            nodepool: &self.nodepool,
            capacity: &self.capacity,
            pods: &self.pods,
        }
    }
}

/// What a NodePool asks of its consolidations.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// `consolidationThreshold` as a fraction (0.1 for 10).
    pub threshold: f64,
    /// Cheaper types a Spot-to-Spot replacement must offer: the pool's
    /// `minValues` on instance types, or [`SPOT_TO_SPOT_MIN_TYPES`].
    pub min_types: usize,
    /// How many nodes its `Underutilized` budget lets go now.
    pub budget: usize,
}

/// What every pool's consolidation shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Whether a Spot node may be replaced by a cheaper Spot node.
    pub spot_to_spot: bool,
    /// $/h one unit of disruption cost is worth: an action must save more
    /// than its disruption cost times this.
    pub eviction_price: f64,
    /// The most candidates multi-node consolidation looks at.
    pub max_multi: usize,
}

/// What happens to the candidates.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Their pods fit on the other nodes.
    Delete,
    /// Their pods go onto this one new node (and the other nodes).
    Replace(Box<NewNode>),
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Replace(_) => "replace",
        }
    }
}

/// A consolidation worth doing.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Indexes into the candidates given to [`evaluate`].
    pub candidates: Vec<usize>,
    pub action: Action,
    /// The candidates' $/h.
    pub before: f64,
    /// The replacement's $/h at worst (0 for a delete).
    pub after: f64,
    pub disruption_cost: f64,
    /// Where each displaced pod goes: `(pod key, node name)`; pods of the
    /// replacement are listed under [`NEW_NODE`].
    pub moves: Vec<(String, String)>,
}

/// The node name under which [`Decision::moves`] lists the replacement.
pub const NEW_NODE: &str = "(new node)";

impl Decision {
    pub fn savings(&self) -> f64 {
        self.before - self.after
    }

    /// Savings less what the disruption is worth.
    pub fn value(&self, settings: &Settings) -> f64 {
        self.savings() - settings.eviction_price * self.disruption_cost
    }
}

/// What [`evaluate`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub decision: Option<Decision>,
    /// Solver runs made.
    pub simulations: usize,
    /// Per candidate that was simulated alone and could not go: why.
    pub rejected: Vec<(usize, String)>,
}

/// One NodePool's consolidation question.
#[derive(Clone, Copy, Debug)]
pub struct Pool<'a> {
    pub candidates: &'a [Candidate],
    /// Pods the pool held at its recent peak and holds no longer: every
    /// action must leave room for them without a launch.
    pub recent_peak: &'a [PendingPod],
    pub rules: &'a Rules,
}

impl<'a> Pool<'a> {
    /// A pool whose workload has not shrunk within `consolidateAfter`: no
    /// recent peak to keep room for.
    pub fn at_rest(candidates: &'a [Candidate], rules: &'a Rules) -> Pool<'a> {
        Pool {
            candidates,
            recent_peak: &[],
            rules,
        }
    }
}

/// The best consolidation among one NodePool's candidates, if any pays.
pub fn evaluate(cluster: &mut Cluster, pool: Pool, settings: &Settings) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let candidates = pool.candidates;
    if pool.rules.budget == 0 || candidates.is_empty() {
        return evaluation;
    }
    let order = cheapest_to_disrupt_first(candidates);
    let mut best = multi_node(cluster, pool, &order, settings, &mut evaluation);
    for i in most_worth_first(candidates, &order, settings) {
        let beaten = |best: &Decision| most_worth(&candidates[i], settings) <= best.value(settings);
        if best.as_ref().is_some_and(beaten) {
            // No candidate after this one can be worth more than the best.
            break;
        }
        if !worth_simulating(cluster, &candidates[i], pool, settings) {
            continue;
        }
        match judge(cluster, pool, &[i], settings, &mut evaluation) {
            Ok(decision) => best = better(best, decision, settings),
            Err(why) => evaluation.rejected.push((i, why)),
        }
    }
    evaluation.decision = best;
    evaluation
}

fn better(best: Option<Decision>, other: Decision, settings: &Settings) -> Option<Decision> {
    match best {
        Some(best) if best.value(settings) >= other.value(settings) => Some(best),
        _ => Some(other),
    }
}

/// Candidate indexes, lowest disruption cost first, then the dearest node.
pub fn cheapest_to_disrupt_first(candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        a.disruption_cost
            .total_cmp(&b.disruption_cost)
            .then_with(|| b.price.total_cmp(&a.price))
            .then_with(|| a.claim.cmp(&b.claim))
    });
    order
}

/// The most a single candidate's action can be worth: deleting it.
fn most_worth(candidate: &Candidate, settings: &Settings) -> f64 {
    candidate.price - settings.eviction_price * candidate.disruption_cost
}

/// `order` re-sorted by [`most_worth`], highest first (stable, so equal
/// ones keep `order`'s): the single-node search can stop at the first
/// candidate that cannot beat the best found.
fn most_worth_first(candidates: &[Candidate], order: &[usize], settings: &Settings) -> Vec<usize> {
    let mut sorted = order.to_vec();
    sorted.sort_by(|&a, &b| {
        most_worth(&candidates[b], settings).total_cmp(&most_worth(&candidates[a], settings))
    });
    sorted
}

/// The largest prefix of `order` (two or more, within the budget and
/// [`Settings::max_multi`]) that consolidates, by binary search.
fn multi_node(
    cluster: &mut Cluster,
    pool: Pool,
    order: &[usize],
    settings: &Settings,
    evaluation: &mut Evaluation,
) -> Option<Decision> {
    let most = order.len().min(pool.rules.budget).min(settings.max_multi);
    let (mut low, mut high) = (2, most);
    let mut best = None;
    while low <= high {
        let middle = (low + high) / 2;
        match judge(cluster, pool, &order[..middle], settings, evaluation) {
            Ok(decision) => {
                best = Some(decision);
                low = middle + 1;
            }
            Err(_) => high = middle - 1,
        }
    }
    best
}

/// A cheap bound before a solve: the candidate's pods (and the recent
/// peak's) need at least their requests of room, either free on the other
/// nodes or on a type that costs less than the threshold allows.
fn worth_simulating(
    cluster: &Cluster,
    candidate: &Candidate,
    pool: Pool,
    settings: &Settings,
) -> bool {
    if most_worth(candidate, settings) <= 0.0 {
        return false;
    }
    let moving = candidate.pods.iter().chain(pool.recent_peak);
    let needed = moving.fold(Resources::default(), |mut sum, p| {
        sum.cpu_millis += p.requests.cpu_millis;
        sum.memory_bytes += p.requests.memory_bytes;
        sum
    });
    let free = cluster
        .problem()
        .nodes
        .iter()
        .filter(|n| !n.unavailable && n.name != candidate.node)
        .fold((0u64, 0u64), |(cpu, memory), n| {
            (
                cpu + n
                    .allocatable
                    .cpu_millis
                    .saturating_sub(n.requested.cpu_millis),
                memory
                    + n.allocatable
                        .memory_bytes
                        .saturating_sub(n.requested.memory_bytes),
            )
        });
    if free.0 >= needed.cpu_millis && free.1 >= needed.memory_bytes {
        return true;
    }
    let limit = candidate.price * (1.0 - pool.rules.threshold);
    cheapest_fitting(cluster.instance_types(), &needed).is_some_and(|p| p <= limit)
}

/// The lowest price of any offering of a type whose allocatable holds `needed`.
fn cheapest_fitting(instance_types: &[InstanceType], needed: &Resources) -> Option<f64> {
    instance_types
        .iter()
        .filter(|t| {
            t.allocatable.cpu_millis >= needed.cpu_millis
                && t.allocatable.memory_bytes >= needed.memory_bytes
        })
        .flat_map(|t| t.offerings.iter().filter(|o| o.available).map(|o| o.price))
        .min_by(f64::total_cmp)
}

/// Simulates `chosen` going and judges the result against the rules.
fn judge(
    cluster: &mut Cluster,
    pool: Pool,
    chosen: &[usize],
    settings: &Settings,
    evaluation: &mut Evaluation,
) -> Result<Decision, String> {
    let going: Vec<&Candidate> = chosen.iter().map(|&i| &pool.candidates[i]).collect();
    let leaving: Vec<Leaving> = going.iter().map(|c| c.leaving()).collect();
    let pods: Vec<PendingPod> = going
        .iter()
        .flat_map(|c| &c.pods)
        .chain(pool.recent_peak)
        .cloned()
        .collect();
    let plan = cluster.simulate_pods(&leaving, &pods);
    evaluation.simulations += 1;
    if !plan.unschedulable.is_empty() {
        return Err(format!(
            "its pods have nowhere to go: {}",
            unschedulable_summary(&plan)
        ));
    }
    let before: f64 = going.iter().map(|c| c.price).sum();
    let disruption_cost: f64 = going.iter().map(|c| c.disruption_cost).sum();
    let (action, after) = match plan.new_nodes.as_slice() {
        [] => (Action::Delete, 0.0),
        [one] => {
            let types = cluster.instance_types();
            let (node, after) = replace::choose(one, &going, pool.rules, settings, types)?;
            (Action::Replace(Box::new(node)), after)
        }
        more => return Err(format!("its pods would need {} new nodes", more.len())),
    };
    let decision = Decision {
        candidates: chosen.to_vec(),
        moves: moves(&plan, &going),
        action,
        before,
        after,
        disruption_cost,
    };
    if decision.value(settings) <= 0.0 {
        return Err(format!(
            "saving ${:.4}/h does not pay for evicting pods of disruption cost {:.1}",
            decision.savings(),
            disruption_cost
        ));
    }
    Ok(decision)
}

/// Where the candidates' own pods go (the recent peak's are left out).
fn moves(plan: &Plan, going: &[&Candidate]) -> Vec<(String, String)> {
    let own: std::collections::HashSet<&str> = going
        .iter()
        .flat_map(|c| c.pods.iter().map(|p| p.key.as_str()))
        .collect();
    let to_new = plan
        .new_nodes
        .iter()
        .flat_map(|n| n.pods.iter().map(|p| (p.clone(), NEW_NODE.to_owned())));
    plan.to_existing
        .iter()
        .cloned()
        .chain(to_new)
        .filter(|(pod, _)| own.contains(pod.as_str()))
        .collect()
}

/// `consolidateAfter` for a pool that consolidates underutilized nodes
/// (`None` for `WhenEmpty`, `Never` or an unreadable duration).
pub fn underutilized_after(pool: &NodePool) -> Option<Duration> {
    if pool.spec.disruption.consolidation_policy != ConsolidationPolicy::WhenEmptyOrUnderutilized {
        return None;
    }
    match Lifetime::parse(&pool.spec.disruption.consolidate_after) {
        Ok(Lifetime::After(after)) => Some(after),
        _ => None,
    }
}
