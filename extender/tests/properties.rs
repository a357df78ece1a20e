//! Property tests of the pure decisions (`filter.rs`, `score.rs`).

use proptest::prelude::*;
use spotwright_api::keys::CapacityType;
use spotwright_extender::facts::{ClaimFacts, Expiry, NodeFacts, Resources};
use spotwright_extender::filter::{self, Reason};
use spotwright_extender::score::{
    self, combine, packing, prioritize, terms, Candidate, Lifecycle, Terms, Weights,
};

const GIB: u64 = 1 << 30;

fn resources(max_cpu: u64, max_gib: u64, max_pods: u64) -> impl Strategy<Value = Resources> {
    (0..=max_cpu, 0..=max_gib * GIB, 0..=max_pods).prop_map(|(cpu, mem, pods)| Resources {
        cpu_millis: cpu,
        memory_bytes: mem,
        pods,
    })
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        Just(Expiry::Unknown),
        Just(Expiry::Never),
        (0u64..100 * 86_400).prop_map(Expiry::AfterSeconds),
    ]
}

fn lifecycle() -> impl Strategy<Value = Option<Lifecycle>> {
    proptest::option::of(
        (
            proptest::option::of(-86_400i64..200 * 86_400),
            expiry(),
            any::<bool>(),
        )
            .prop_map(|(age_seconds, expiry, drifted)| Lifecycle {
                age_seconds,
                expiry,
                drifted,
            }),
    )
}

fn capacity_type() -> impl Strategy<Value = Option<CapacityType>> {
    proptest::option::of(prop_oneof![
        Just(CapacityType::Spot),
        Just(CapacityType::OnDemand)
    ])
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        proptest::option::of(resources(200_000, 2048, 800)),
        resources(300_000, 3000, 1000),
        proptest::option::of(prop_oneof![0.0..10.0f64, Just(0.0), Just(1e-9)]),
        capacity_type(),
        0u32..20,
        lifecycle(),
    )
        .prop_map(
            |(
                allocatable,
                requested,
                price_per_vcpu,
                capacity_type,
                pool_interruptions,
                lifecycle,
            )| {
                Candidate {
                    allocatable,
                    requested,
                    price_per_vcpu,
                    capacity_type,
                    pool_interruptions,
                    lifecycle,
                }
            },
        )
}

fn weights() -> impl Strategy<Value = Weights> {
    (0u32..100, 0u32..100, 0u32..100, 0u32..100).prop_map(|(packing, price, interruption, age)| {
        Weights {
            packing,
            price,
            interruption,
            age,
        }
    })
}

fn pod() -> impl Strategy<Value = Resources> {
    (0u64..8000, 0u64..32 * GIB).prop_map(|(cpu, mem)| Resources {
        cpu_millis: cpu,
        memory_bytes: mem,
        pods: 1,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every score is within the scheduler's 0..=10, whatever the inputs,
    /// and every term within [0, 1].
    #[test]
    fn scores_stay_in_range(
        w in weights(),
        pod in pod(),
        candidates in proptest::collection::vec(candidate(), 0..20),
    ) {
        let scores = prioritize(&w, &pod, candidates.clone());
        prop_assert_eq!(scores.len(), candidates.len());
        let cheapest = score::cheapest(&candidates);
        for (c, s) in candidates.iter().zip(&scores) {
            prop_assert!((0..=10).contains(s), "{s}");
            let t = terms(&pod, c, cheapest);
            for term in [t.packing, t.price, t.interruption, t.age] {
                prop_assert!((0.0..=1.0).contains(&term), "{t:?}");
            }
            // The streaming prioritize agrees with combine over terms.
            prop_assert_eq!(*s, combine(&w, &t));
        }
    }

    /// Adding load to a node never lowers its packing term, as long as the
    /// pod still fits (when it no longer fits the term is 0).
    #[test]
    fn more_load_never_lowers_packing(
        pod in pod(),
        allocatable in resources(200_000, 2048, 800),
        load in resources(100_000, 1024, 400),
        extra in resources(100_000, 1024, 400),
    ) {
        let before = packing(&pod, Some(&allocatable), &load);
        let heavier = load.plus(extra);
        let after = packing(&pod, Some(&allocatable), &heavier);
        if after > 0.0 {
            prop_assert!(after >= before, "{before} -> {after}");
        } else {
            // It only drops to 0 because the pod no longer fits.
            let placed = heavier.plus(pod);
            prop_assert!(
                placed.cpu_millis > allocatable.cpu_millis
                    || placed.memory_bytes > allocatable.memory_bytes
                    || placed.pods.max(1) > allocatable.pods
                    || before == 0.0
            );
        }
    }

    /// A Spot node in an interrupted pool never outscores an otherwise
    /// identical node in a quieter pool, in the same call.
    #[test]
    fn interrupted_pools_never_win(
        w in weights(),
        pod in pod(),
        node in candidate(),
        quiet in 0u32..10,
        more in 1u32..10,
        others in proptest::collection::vec(candidate(), 0..8),
    ) {
        let quiet_node = Candidate { capacity_type: Some(CapacityType::Spot), pool_interruptions: quiet, ..node };
        let noisy_node = Candidate { pool_interruptions: quiet + more, ..quiet_node.clone() };
        let mut all = vec![quiet_node, noisy_node];
        all.extend(others);
        let scores = prioritize(&w, &pod, all);
        prop_assert!(scores[1] <= scores[0], "noisy {} > quiet {}", scores[1], scores[0]);
    }

    /// Raising any one term never lowers the combined score.
    #[test]
    fn the_combination_is_monotone(
        w in weights(),
        t in (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64),
        which in 0usize..4,
        bump in 0.0..=1.0f64,
    ) {
        let base = Terms { packing: t.0, price: t.1, interruption: t.2, age: t.3 };
        let mut raised = base;
        let slot = match which {
            0 => &mut raised.packing,
            1 => &mut raised.price,
            2 => &mut raised.interruption,
            _ => &mut raised.age,
        };
        *slot = (*slot + bump).min(1.0);
        prop_assert!(combine(&w, &raised) >= combine(&w, &base));
    }

    /// Every node lands in exactly one list, with its own reason, and only
    /// nodes on their way out are unresolvable.
    #[test]
    fn the_filter_partitions_its_input(nodes in proptest::collection::vec(
        (any::<[bool; 4]>(), proptest::option::of(any::<[bool; 2]>())), 0..50)
    ) {
        let facts: Vec<(usize, NodeFacts, Option<ClaimFacts>)> = nodes
            .iter()
            .enumerate()
            .map(|(i, (flags, claim))| {
                let node = NodeFacts {
                    name: format!("n{i}"),
                    deleting: flags[0],
                    disrupted_taint: flags[1],
                    ready: flags[2],
                    unschedulable: flags[3],
                    ..NodeFacts::default()
                };
                let claim = claim.map(|c| ClaimFacts { drifted: c[0], disrupting: c[1], ..ClaimFacts::default() });
                (i, node, claim)
            })
            .collect();
        let out = filter::partition(facts.iter().map(|(i, n, c)| (*i, filter::check(n, c.as_ref()))));
        let mut seen: Vec<usize> = out.passed.clone();
        seen.extend(out.failed.iter().map(|(i, _)| *i));
        seen.extend(out.unresolvable.iter().map(|(i, _)| *i));
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..nodes.len()).collect::<Vec<_>>());
        prop_assert!(out.failed.iter().all(|(_, r)| !r.unresolvable()));
        prop_assert!(out.unresolvable.iter().all(|(_, r)| r.unresolvable()));
        prop_assert_eq!(out.counts.iter().sum::<u64>() as usize, out.failed.len() + out.unresolvable.len());
        for i in &out.passed {
            let (_, n, c) = &facts[*i];
            prop_assert!(n.ready && !n.deleting && !n.disrupted_taint && !n.unschedulable);
            prop_assert!(c.as_ref().is_none_or(|c| !c.drifted && !c.disrupting));
        }
        for (i, reason) in out.failed.iter().chain(&out.unresolvable) {
            let (_, n, c) = &facts[*i];
            let holds = match reason {
                Reason::Deleting => n.deleting,
                Reason::DisruptedTaint => n.disrupted_taint,
                Reason::Disrupting => c.as_ref().is_some_and(|c| c.disrupting),
                Reason::Drifted => c.as_ref().is_some_and(|c| c.drifted),
                Reason::NotReady => !n.ready,
                Reason::Unschedulable => n.unschedulable,
                // `check` never holds room: that needs the pod's demand.
                Reason::Reserved => false,
            };
            prop_assert!(holds, "{reason:?} for {n:?} {c:?}");
        }
    }
}
