//! The prioritize decision: one scoring function over plain data.
//!
//! ```text
//! score = clamp(round(10 × Σ wᵢ·termᵢ / Σ wᵢ), 0, 10)
//! ```
//! with four terms, each in `[0, 1]` (1 is best), and weights from flags
//! (defaults: packing 4, price 3, interruption 2, age 1):
//!
//! - **packing** (most-allocated): the mean of the node's cpu and memory
//!   fractions requested after placing the pod,
//!   `((used + pod) / allocatable)`, so that full nodes fill up and
//!   under-used ones drain away. 0 when the pod does not fit (cpu, memory
//!   or pod count).
//! - **price**: USD per vCPU-hour of the node's (instance type, capacity
//!   type), from the price snapshot, relative to the cheapest candidate of
//!   the same request: `cheapest / this`, so the cheapest node gets 1 and
//!   one twice as dear per vCPU gets 0.5.
//! - **interruption**: 1 on on-demand capacity; on Spot
//!   `1 − min(1, n / K)`, where `n` counts the interruptions recorded for the
//!   node's (instance type, zone) pool within the window and
//!   [`INTERRUPTIONS_TO_ZERO`] `K = 3`: three interruptions in an hour make a
//!   pool as bad as it gets.
//! - **age**: `1 − min(1, age / expireAfter)` from the node's NodeClaim, so
//!   nodes about to expire get few new pods; 1 for `expireAfter: Never`; 0
//!   when the NodeClaim is Drifted.
//!
//! What cannot be known is neutral (0.5), never a penalty: a node the index
//! has not seen, an instance type the snapshot has no price for, a node
//! without a capacity-type label, a node without NodeClaim (age). All four
//! weights at zero give every node 0.

use spotwright_api::keys::CapacityType;
use spotwright_api::prices::PriceCatalog;

use crate::facts::{ClaimFacts, Expiry, NodeFacts, Resources};
use crate::slots::Kinship;

/// Interruptions in the window that take a Spot pool's term to 0 (`K`).
pub const INTERRUPTIONS_TO_ZERO: u32 = 3;
/// The value of a term nothing is known about.
pub const NEUTRAL: f64 = 0.5;
/// The highest score the scheduler accepts.
pub const MAX_SCORE: i64 = 10;

/// Weights of the four terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub packing: u32,
    pub price: u32,
    pub interruption: u32,
    pub age: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            packing: 4,
            price: 3,
            interruption: 2,
            age: 1,
        }
    }
}

/// How old a Spotwright node is against its expiry.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lifecycle {
    /// Seconds since the NodeClaim (else the Node) was created; `None` when unknown.
    pub age_seconds: Option<i64>,
    pub expiry: Expiry,
    pub drifted: bool,
}

/// What the score reads about a node that only changes when the node or its
/// NodeClaim does. The index derives it then, so that a call does not redo
/// it for each of thousands of candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Basis {
    pub allocatable: Resources,
    /// USD per vCPU-hour; `None` when unknown.
    pub price_per_vcpu: Option<f64>,
    pub capacity_type: Option<CapacityType>,
    /// `None` without a NodeClaim: age is neutral.
    pub lifecycle: Option<LifecycleBasis>,
}

/// The time-independent part of [`Lifecycle`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LifecycleBasis {
    /// Unix seconds: the NodeClaim's creation, else the Node's.
    pub created: Option<i64>,
    pub expiry: Expiry,
    pub drifted: bool,
}

impl Basis {
    /// Node labels win over the NodeClaim's status for instance type and
    /// capacity type.
    pub fn new(node: &NodeFacts, claim: Option<&ClaimFacts>, catalog: &PriceCatalog) -> Basis {
        let capacity_type = node
            .capacity_type
            .or_else(|| claim.and_then(|c| c.capacity_type));
        let instance_type = node
            .instance_type
            .as_deref()
            .or_else(|| claim.and_then(|c| c.instance_type.as_deref()));
        let price_per_vcpu = match (instance_type, capacity_type) {
            (Some(it), Some(ct)) if node.capacity_cpu_millis > 0 => catalog
                .price(it, ct)
                .map(|p| p / (node.capacity_cpu_millis as f64 / 1000.0)),
            _ => None,
        };
        Basis {
            allocatable: node.allocatable,
            price_per_vcpu,
            capacity_type,
            lifecycle: claim.map(|c| LifecycleBasis {
                created: c.created.or(node.created),
                expiry: c.expiry,
                drifted: c.drifted,
            }),
        }
    }
}

/// The (instance type, zone) pool of a node, from its labels, else its NodeClaim.
pub fn pool<'a>(node: &'a NodeFacts, claim: Option<&'a ClaimFacts>) -> Option<(&'a str, &'a str)> {
    let instance_type = node
        .instance_type
        .as_deref()
        .or_else(|| claim.and_then(|c| c.instance_type.as_deref()))?;
    let zone = node
        .zone
        .as_deref()
        .or_else(|| claim.and_then(|c| c.zone.as_deref()))?;
    Some((instance_type, zone))
}

/// Everything the score reads about one node in one call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidate {
    /// `None` when the node is unknown: packing is neutral.
    pub allocatable: Option<Resources>,
    /// What the pods bound to the node request.
    pub requested: Resources,
    /// USD per vCPU-hour; `None` when unknown.
    pub price_per_vcpu: Option<f64>,
    pub capacity_type: Option<CapacityType>,
    /// Interruptions of the node's pool within the window.
    pub pool_interruptions: u32,
    /// `None` without a NodeClaim: age is neutral.
    pub lifecycle: Option<Lifecycle>,
}

impl Candidate {
    /// The candidate for a node (`basis` is `None` when the node has not
    /// been seen) at `now`, Unix seconds.
    pub fn new(
        basis: Option<&Basis>,
        requested: Resources,
        pool_interruptions: u32,
        now: i64,
    ) -> Candidate {
        let Some(basis) = basis else {
            return Candidate::default();
        };
        Candidate {
            allocatable: Some(basis.allocatable),
            requested,
            price_per_vcpu: basis.price_per_vcpu,
            capacity_type: basis.capacity_type,
            pool_interruptions,
            lifecycle: basis.lifecycle.map(|l| Lifecycle {
                age_seconds: l.created.map(|t| now.saturating_sub(t)),
                expiry: l.expiry,
                drifted: l.drifted,
            }),
        }
    }
}

/// The four terms of one node, each in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Terms {
    pub packing: f64,
    pub price: f64,
    pub interruption: f64,
    pub age: f64,
}

/// Most-allocated packing after placing `pod`; 0 when it does not fit.
pub fn packing(pod: &Resources, allocatable: Option<&Resources>, requested: &Resources) -> f64 {
    let Some(allocatable) = allocatable else {
        return NEUTRAL;
    };
    let after = requested.plus(*pod);
    let fits = after.cpu_millis <= allocatable.cpu_millis
        && after.memory_bytes <= allocatable.memory_bytes
        && after.pods.max(1) <= allocatable.pods;
    if !fits {
        return 0.0;
    }
    let fraction = |used: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            float(used) / float(total)
        }
    };
    let cpu = fraction(after.cpu_millis, allocatable.cpu_millis);
    let memory = fraction(after.memory_bytes, allocatable.memory_bytes);
    ((cpu + memory) / 2.0).clamp(0.0, 1.0)
}

/// `u64` to `f64` through `i64`: one instruction on x86-64 rather than a
/// sequence; every resource figure is far below `i64::MAX`.
fn float(value: u64) -> f64 {
    value.min(i64::MAX as u64) as i64 as f64
}

/// Price per vCPU relative to the cheapest candidate.
pub fn price(price_per_vcpu: Option<f64>, cheapest: Option<f64>) -> f64 {
    match (price_per_vcpu, cheapest) {
        (Some(p), Some(c)) if p > 0.0 && c > 0.0 => (c / p).clamp(0.0, 1.0),
        (Some(p), _) if p <= 0.0 => 1.0,
        _ => NEUTRAL,
    }
}

/// Interruption risk of the node's pool.
pub fn interruption(capacity_type: Option<CapacityType>, pool_interruptions: u32) -> f64 {
    match capacity_type {
        Some(CapacityType::OnDemand) => 1.0,
        Some(CapacityType::Spot) => {
            1.0 - (f64::from(pool_interruptions) / f64::from(INTERRUPTIONS_TO_ZERO)).min(1.0)
        }
        None => NEUTRAL,
    }
}

/// Age against expiry; 0 when drifted.
pub fn age(lifecycle: Option<&Lifecycle>) -> f64 {
    let Some(lifecycle) = lifecycle else {
        return NEUTRAL;
    };
    if lifecycle.drifted {
        return 0.0;
    }
    match (lifecycle.expiry, lifecycle.age_seconds) {
        (Expiry::Never, _) => 1.0,
        (Expiry::AfterSeconds(0), Some(_)) => 0.0,
        (Expiry::AfterSeconds(limit), Some(age)) => {
            1.0 - (age.max(0) as f64 / float(limit)).min(1.0)
        }
        _ => NEUTRAL,
    }
}

/// The four terms of a candidate; `cheapest` is the lowest price per vCPU
/// among the request's candidates.
pub fn terms(pod: &Resources, candidate: &Candidate, cheapest: Option<f64>) -> Terms {
    Terms {
        packing: packing(pod, candidate.allocatable.as_ref(), &candidate.requested),
        price: price(candidate.price_per_vcpu, cheapest),
        interruption: interruption(candidate.capacity_type, candidate.pool_interruptions),
        age: age(candidate.lifecycle.as_ref()),
    }
}

/// The weighted score, `0..=10`.
pub fn combine(weights: &Weights, terms: &Terms) -> i64 {
    let partial = weighted_without_price(weights, terms.packing, terms.interruption, terms.age);
    finish(weights, partial, terms.price)
}

/// Σ wᵢ·termᵢ over every term but price, which needs all the candidates.
fn weighted_without_price(weights: &Weights, packing: f64, interruption: f64, age: f64) -> f64 {
    f64::from(weights.packing) * packing.clamp(0.0, 1.0)
        + f64::from(weights.interruption) * interruption.clamp(0.0, 1.0)
        + f64::from(weights.age) * age.clamp(0.0, 1.0)
}

/// Adds the price term, divides by Σ wᵢ, scales to 10 and rounds half up.
fn finish(weights: &Weights, partial: f64, price: f64) -> i64 {
    let total = u64::from(weights.packing)
        + u64::from(weights.price)
        + u64::from(weights.interruption)
        + u64::from(weights.age);
    if total == 0 {
        return 0;
    }
    let weighted = partial + f64::from(weights.price) * price.clamp(0.0, 1.0);
    let score = weighted / total as f64 * MAX_SCORE as f64;
    if score.is_nan() || score <= 0.0 {
        return 0;
    }
    // Round half up (the score is not negative) without calling libm's
    // round(): this runs for every candidate of every call.
    ((score + 0.5) as i64).clamp(0, MAX_SCORE)
}

/// The lowest known price per vCPU among candidates.
pub fn cheapest(candidates: &[Candidate]) -> Option<f64> {
    candidates
        .iter()
        .filter_map(|c| c.price_per_vcpu)
        .filter(|p| *p > 0.0 && p.is_finite())
        .min_by(f64::total_cmp)
}

/// Scores every candidate of one request, in order: [`combine`] of
/// [`terms`], with the cheapest price among the request's candidates.
/// Streams the candidates, keeping 16 bytes per node between its two passes.
pub fn prioritize(
    weights: &Weights,
    pod: &Resources,
    candidates: impl IntoIterator<Item = Candidate>,
) -> Vec<i64> {
    let candidates = candidates.into_iter();
    let mut partials: Vec<(f64, Option<f64>)> = Vec::with_capacity(candidates.size_hint().0);
    let mut cheapest: Option<f64> = None;
    for c in candidates {
        let partial = weighted_without_price(
            weights,
            packing(pod, c.allocatable.as_ref(), &c.requested),
            interruption(c.capacity_type, c.pool_interruptions),
            age(c.lifecycle.as_ref()),
        );
        if let Some(p) = c.price_per_vcpu.filter(|p| *p > 0.0 && p.is_finite()) {
            cheapest = Some(cheapest.map_or(p, |c: f64| c.min(p)));
        }
        partials.push((partial, c.price_per_vcpu));
    }
    partials
        .into_iter()
        .map(|(partial, p)| finish(weights, partial, price(p, cheapest)))
        .collect()
}

/// Which candidates a pod is steered to ([`prefer_launched`]): the node
/// launched for it when that is a candidate and still holds a slot of its
/// group, else the nodes holding a slot of its group (another replica's,
/// which then takes the pod's own), else its own node even though other
/// replicas took its slots there.
pub fn steer_to(kinship: &[Kinship]) -> Vec<bool> {
    let wanted = [Kinship::Own, Kinship::StandIn, Kinship::Taken]
        .into_iter()
        .find(|wanted| kinship.contains(wanted));
    kinship.iter().map(|k| Some(*k) == wanted).collect()
}

/// Narrows `steered` to the one candidate of the best score (the first of
/// equals) and returns it; `None` when none is steered. A pod steered to
/// one node can be pencilled in there ([`crate::slots::Slots::pencil`]);
/// steered to several, the scheduler's plugins pick, and which slot it took
/// is only known from its bind.
pub fn narrow_to_best(steered: &mut [bool], scores: &[i64]) -> Option<usize> {
    let best = steered
        .iter()
        .zip(scores)
        .enumerate()
        .filter(|(_, (steered, _))| **steered)
        .fold(
            None,
            |best: Option<(usize, i64)>, (i, (_, score))| match best {
                Some((_, top)) if top >= *score => best,
                _ => Some((i, *score)),
            },
        )
        .map(|(i, _)| i)?;
    for (i, steered) in steered.iter_mut().enumerate() {
        *steered = i == best;
    }
    Some(best)
}

/// Steers a pod to the node launched for it. When that node is among the
/// candidates (it passed every filter, so the pod fits there), it gets the
/// top score and every other node none: the scheduler otherwise fills the
/// fullest node first, whichever pods it was launched for, and the pods
/// crowded off need nodes of their own. Scores are left alone when the
/// pod's node is not a candidate. `launched` runs beside `scores`.
pub fn prefer_launched(scores: &mut [i64], launched: &[bool]) {
    if !launched.iter().any(|own| *own) {
        return;
    }
    for (score, own) in scores.iter_mut().zip(launched) {
        *score = if *own { MAX_SCORE } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn res(cpu: u64, mem_gib: u64, pods: u64) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: mem_gib * GIB,
            pods,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn packing_is_the_mean_fraction_after_placement() {
        let node = res(4000, 16, 110);
        let pod = res(1000, 4, 1);
        assert!(close(packing(&pod, Some(&node), &res(0, 0, 0)), 0.25));
        assert!(close(packing(&pod, Some(&node), &res(2000, 4, 5)), 0.625));
        assert!(close(packing(&pod, Some(&node), &res(3000, 12, 5)), 1.0));
    }

    #[test]
    fn packing_is_zero_when_the_pod_does_not_fit() {
        let node = res(4000, 16, 3);
        let pod = res(1000, 4, 1);
        assert_eq!(packing(&pod, Some(&node), &res(3500, 0, 0)), 0.0);
        assert_eq!(packing(&pod, Some(&node), &res(0, 13, 0)), 0.0);
        assert_eq!(packing(&pod, Some(&node), &res(0, 0, 3)), 0.0);
        assert_eq!(packing(&pod, Some(&res(0, 0, 0)), &res(0, 0, 0)), 0.0);
    }

    #[test]
    fn packing_of_an_unknown_node_is_neutral() {
        assert_eq!(packing(&res(1, 1, 1), None, &res(0, 0, 0)), NEUTRAL);
    }

    #[test]
    fn price_is_relative_to_the_cheapest() {
        assert!(close(price(Some(0.02), Some(0.02)), 1.0));
        assert!(close(price(Some(0.04), Some(0.02)), 0.5));
        assert_eq!(price(None, Some(0.02)), NEUTRAL);
        assert_eq!(price(Some(0.0), None), 1.0);
    }

    #[test]
    fn interruption_risk_grows_with_pool_interruptions() {
        assert_eq!(interruption(Some(CapacityType::OnDemand), 10), 1.0);
        assert_eq!(interruption(Some(CapacityType::Spot), 0), 1.0);
        assert!(close(interruption(Some(CapacityType::Spot), 1), 2.0 / 3.0));
        assert_eq!(interruption(Some(CapacityType::Spot), 3), 0.0);
        assert_eq!(interruption(Some(CapacityType::Spot), 30), 0.0);
        assert_eq!(interruption(None, 3), NEUTRAL);
    }

    #[test]
    fn age_counts_down_to_expiry() {
        let life = |age: i64, expiry: Expiry, drifted: bool| Lifecycle {
            age_seconds: Some(age),
            expiry,
            drifted,
        };
        let day = 86_400;
        let month = Expiry::AfterSeconds(30 * day as u64);
        assert!(close(age(Some(&life(0, month, false))), 1.0));
        assert!(close(age(Some(&life(15 * day, month, false))), 0.5));
        assert_eq!(age(Some(&life(45 * day, month, false))), 0.0);
        assert_eq!(age(Some(&life(day, month, true))), 0.0);
        assert_eq!(age(Some(&life(400 * day, Expiry::Never, false))), 1.0);
        assert_eq!(age(Some(&life(day, Expiry::Unknown, false))), NEUTRAL);
        assert_eq!(age(Some(&life(-5, month, false))), 1.0);
        assert_eq!(age(None), NEUTRAL);
    }

    #[test]
    fn the_combination_is_a_weighted_mean_rounded_to_0_10() {
        let w = Weights::default();
        let all = |t| Terms {
            packing: t,
            price: t,
            interruption: t,
            age: t,
        };
        assert_eq!(combine(&w, &all(1.0)), 10);
        assert_eq!(combine(&w, &all(0.0)), 0);
        assert_eq!(combine(&w, &all(0.5)), 5);
        // (4·1 + 3·0.5 + 2·0 + 1·1) / 10 × 10 = 6.5 → 7 (half away from zero)
        let mixed = Terms {
            packing: 1.0,
            price: 0.5,
            interruption: 0.0,
            age: 1.0,
        };
        assert_eq!(combine(&w, &mixed), 7);
        let zero = Weights {
            packing: 0,
            price: 0,
            interruption: 0,
            age: 0,
        };
        assert_eq!(combine(&zero, &all(1.0)), 0);
        let only_price = Weights { price: 1, ..zero };
        assert_eq!(combine(&only_price, &mixed), 5);
    }

    #[test]
    fn an_unknown_node_scores_neutral() {
        let scores = prioritize(&Weights::default(), &res(100, 1, 1), [Candidate::default()]);
        assert_eq!(scores, [5]);
    }

    #[test]
    fn bases_read_the_snapshot_and_the_claim() {
        let catalog = PriceCatalog::embedded().unwrap();
        let node = NodeFacts {
            name: "n".into(),
            instance_type: Some("m5.xlarge".into()),
            zone: Some("us-east-1a".into()),
            capacity_type: Some(CapacityType::Spot),
            capacity_cpu_millis: 4000,
            allocatable: res(3920, 14, 58),
            created: Some(1000),
            ready: true,
            ..NodeFacts::default()
        };
        let claim = ClaimFacts {
            created: Some(500),
            expiry: Expiry::AfterSeconds(1000),
            ..ClaimFacts::default()
        };
        let basis = Basis::new(&node, Some(&claim), catalog);
        assert!(close(basis.price_per_vcpu.unwrap(), 0.192 * 0.30 / 4.0));
        assert_eq!(basis.allocatable, node.allocatable);
        let c = Candidate::new(Some(&basis), res(1, 1, 1), 2, 1500);
        assert_eq!(c.pool_interruptions, 2);
        assert_eq!(c.lifecycle.unwrap().age_seconds, Some(1000));
        assert_eq!(age(c.lifecycle.as_ref()), 0.0);
        assert_eq!(pool(&node, None), Some(("m5.xlarge", "us-east-1a")));
        // Without a claim the capacity type still comes from the label; age is neutral.
        let basis = Basis::new(&node, None, catalog);
        assert_eq!(basis.lifecycle, None);
        // A claim fills in what the node's labels lack.
        let bare = NodeFacts {
            capacity_type: None,
            instance_type: None,
            zone: None,
            ..node.clone()
        };
        let od_claim = ClaimFacts {
            capacity_type: Some(CapacityType::OnDemand),
            instance_type: Some("m5.xlarge".into()),
            zone: Some("us-east-1b".into()),
            ..ClaimFacts::default()
        };
        let basis = Basis::new(&bare, Some(&od_claim), catalog);
        assert!(close(basis.price_per_vcpu.unwrap(), 0.192 / 4.0));
        assert_eq!(basis.capacity_type, Some(CapacityType::OnDemand));
        assert_eq!(
            pool(&bare, Some(&od_claim)),
            Some(("m5.xlarge", "us-east-1b"))
        );
        assert_eq!(pool(&bare, None), None);
        // Unknown types and missing vCPUs have no price.
        let odd = NodeFacts {
            instance_type: Some("x99.huge".into()),
            ..node.clone()
        };
        assert_eq!(Basis::new(&odd, None, catalog).price_per_vcpu, None);
        let no_cpu = NodeFacts {
            capacity_cpu_millis: 0,
            ..node
        };
        assert_eq!(Basis::new(&no_cpu, None, catalog).price_per_vcpu, None);
        assert_eq!(
            Candidate::new(None, res(1, 1, 1), 3, 0),
            Candidate::default()
        );
    }

    #[test]
    fn the_cheaper_emptier_quieter_node_wins() {
        let pod = res(500, 1, 1);
        let base = Candidate {
            allocatable: Some(res(4000, 16, 58)),
            requested: res(2000, 8, 10),
            price_per_vcpu: Some(0.015),
            capacity_type: Some(CapacityType::Spot),
            pool_interruptions: 0,
            lifecycle: None,
        };
        let dear = Candidate {
            price_per_vcpu: Some(0.048),
            capacity_type: Some(CapacityType::OnDemand),
            ..base.clone()
        };
        let noisy = Candidate {
            pool_interruptions: 3,
            ..base.clone()
        };
        let empty = Candidate {
            requested: res(0, 0, 0),
            ..base.clone()
        };
        let s = prioritize(&Weights::default(), &pod, [base, dear, noisy, empty]);
        assert!(s[0] > s[1] && s[0] > s[2] && s[0] > s[3], "{s:?}");
    }

    #[test]
    fn steering_narrows_to_the_best_scored_steered_node_first_of_equals() {
        let mut steered = [true, false, true, true];
        assert_eq!(narrow_to_best(&mut steered, &[3, 9, 7, 7]), Some(2));
        assert_eq!(steered, [false, false, true, false]);
        let mut none = [false, false];
        assert_eq!(narrow_to_best(&mut none, &[1, 2]), None);
        assert_eq!(none, [false, false]);
    }

    #[test]
    fn a_pod_is_steered_to_its_own_node_else_to_a_slot_of_its_group() {
        use Kinship::{Own, StandIn, Stranger, Taken};
        assert_eq!(steer_to(&[StandIn, Own, Stranger]), [false, true, false]);
        assert_eq!(steer_to(&[StandIn, Stranger, StandIn]), [true, false, true]);
        assert_eq!(
            steer_to(&[Taken, StandIn, Stranger]),
            [false, true, false],
            "its own node's slot was taken: another replica's slot first"
        );
        assert_eq!(steer_to(&[Taken, Stranger]), [true, false]);
        assert_eq!(steer_to(&[Stranger, Stranger]), [false, false]);
    }

    #[test]
    fn the_node_launched_for_the_pod_wins_when_it_is_a_candidate() {
        let mut scores = vec![9, 3, 10];
        prefer_launched(&mut scores, &[false, true, false]);
        assert_eq!(scores, [0, MAX_SCORE, 0]);
        let mut scores = vec![9, 3, 10];
        prefer_launched(&mut scores, &[false, false, false]);
        assert_eq!(scores, [9, 3, 10], "no node of its own: scores stand");
    }

    proptest::proptest! {
        #[test]
        fn only_the_launched_nodes_top_the_scores(
            nodes in proptest::collection::vec((0i64..=MAX_SCORE, proptest::bool::ANY), 0..20)
        ) {
            let (before, launched): (Vec<i64>, Vec<bool>) = nodes.into_iter().unzip();
            let mut after = before.clone();
            prefer_launched(&mut after, &launched);
            if launched.contains(&true) {
                for (score, own) in after.iter().zip(&launched) {
                    proptest::prop_assert_eq!(*score, if *own { MAX_SCORE } else { 0 });
                }
            } else {
                proptest::prop_assert_eq!(after, before);
            }
        }
    }
}
