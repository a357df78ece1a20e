//! Underutilized consolidation applied until no decision pays, on a
//! scaled-down fleet of real instance types (the benchmark's fleet,
//! `benches/common/fleet.rs`, at a smaller size): it saves money, keeps
//! every pod running exactly once within every node's allocatable, stops,
//! and ends no cheaper than the LP bound allows.

#[path = "../benches/common/fleet.rs"]
mod fleet;

use fleet::{rules, settings, Launch};

/// Packed, then a third deleted: about 50 nodes and 500 pods (twice that
/// takes 30 s unoptimized; the benchmark's table has the larger fleets).
const PODS_PACKED: usize = 750;

#[test]
fn a_scaled_down_fleet_consolidates_to_a_fixpoint_above_the_lp_bound() {
    let mut fleet = fleet::underutilized(PODS_PACKED, Launch::AnyListed, 1.0 / 3.0, 7);
    let pods_before: Vec<String> = fleet.pod_keys().iter().map(|k| k.to_string()).collect();
    let (nodes_before, price_before) = (fleet.nodes.len(), fleet.price());
    assert!(fleet.overfull_nodes().is_empty());

    let fixpoint = fleet::consolidate_to_fixpoint(&mut fleet, &rules(), &settings(), 500);

    assert!(fixpoint.settled, "still consolidating after 500 decisions");
    assert!(fixpoint.deletes + fixpoint.replacements > 0, "{fixpoint:?}");
    assert_eq!(fleet.pod_keys(), pods_before, "every pod runs exactly once");
    assert!(
        fleet.overfull_nodes().is_empty(),
        "{:?}",
        fleet.overfull_nodes()
    );
    assert!(fleet.nodes.len() < nodes_before);
    let (price_after, lp) = (fleet.price(), fleet.lp_bound());
    assert!(
        price_after < 0.9 * price_before,
        "${price_before:.3}/h became ${price_after:.3}/h"
    );
    assert!(
        price_after >= lp - 1e-9,
        "${price_after:.3}/h is below the LP bound ${lp:.3}/h"
    );
    let again = fleet::evaluate_pool(
        &mut fleet.cluster(),
        &fleet.candidates(),
        &rules(),
        &settings(),
    );
    assert_eq!(again.decision, None, "a fixpoint decides nothing more");
}
