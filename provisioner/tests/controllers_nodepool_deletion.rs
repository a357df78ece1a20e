//! NodePool deletion's planner: the finalizer, then the pool's claims
//! oldest first within its budget, then the finalizer goes.

mod controllers_fixtures;

use controllers_fixtures::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;
use spotwright_api::{NodeClaim, NodePool};
use spotwright_provisioner::controllers::nodepool_deletion::*;
use spotwright_provisioner::model::claim::TERMINATION_FINALIZER;

fn pool(deleted: bool, finalizer: bool) -> NodePool {
    let mut pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": "general"},
        "spec": {"template": {"spec": {"nodeClassRef": {"name": "default"}}}}
    }))
    .expect("a NodePool");
    if deleted {
        pool.metadata.deletion_timestamp = Some(Time(at(0)));
    }
    if finalizer {
        pool.metadata.finalizers = Some(vec![TERMINATION_FINALIZER.to_owned()]);
    }
    pool
}

/// A claim created at `at(created)`, deleting when `deleting`.
fn pool_claim(name: &str, created: i64, deleting: bool) -> NodeClaim {
    let mut claim = claim(vec![]);
    claim.metadata.name = Some(name.to_owned());
    claim.metadata.creation_timestamp = Some(Time(at(created)));
    if deleting {
        claim.metadata.deletion_timestamp = Some(Time(at(created + 1)));
    }
    claim
}

#[test]
fn a_live_pool_gets_the_finalizer_once() {
    assert_eq!(plan(&pool(false, false), &[], 5), PoolStep::AddFinalizer);
    assert_eq!(plan(&pool(false, true), &[], 5), PoolStep::Nothing);
    let claim = pool_claim("a", 0, false);
    assert_eq!(
        plan(&pool(false, true), &[&claim], 5),
        PoolStep::Nothing,
        "a live pool's claims stay"
    );
}

#[test]
fn a_deleted_pool_deletes_its_oldest_claims_within_the_budget() {
    let claims = [
        pool_claim("c", 30, false),
        pool_claim("a", 10, false),
        pool_claim("b", 20, false),
        pool_claim("d", 5, true),
    ];
    let refs: Vec<&NodeClaim> = claims.iter().collect();
    assert_eq!(
        plan(&pool(true, true), &refs, 2),
        PoolStep::DeleteClaims {
            claims: vec!["a".to_owned(), "b".to_owned()],
            left: 1
        }
    );
    assert_eq!(
        plan(&pool(true, true), &refs, 0),
        PoolStep::Wait {
            draining: 1,
            held: 3
        }
    );
    assert_eq!(
        plan(&pool(true, true), &refs[3..], 2),
        PoolStep::Wait {
            draining: 1,
            held: 0
        },
        "the last claim is still draining"
    );
}

#[test]
fn the_finalizer_goes_with_the_last_claim() {
    assert_eq!(plan(&pool(true, true), &[], 0), PoolStep::Release);
    assert_eq!(plan(&pool(true, false), &[], 0), PoolStep::Nothing);
    let claim = pool_claim("a", 0, false);
    assert_eq!(
        plan(&pool(true, false), &[&claim], 5),
        PoolStep::Nothing,
        "past our finalizer, another owner's"
    );
}

proptest! {
    /// Never more claims deleted than the budget allows, never a draining
    /// one again, and the pool released only with no claim left.
    #[test]
    fn deletions_stay_within_the_budget(
        states in prop::collection::vec(any::<bool>(), 0..12),
        allowed in 0usize..6,
    ) {
        let claims: Vec<NodeClaim> = states
            .iter()
            .enumerate()
            .map(|(i, deleting)| pool_claim(&format!("c{i}"), i as i64, *deleting))
            .collect();
        let refs: Vec<&NodeClaim> = claims.iter().collect();
        match plan(&pool(true, true), &refs, allowed) {
            PoolStep::DeleteClaims { claims: names, left } => {
                prop_assert!(!names.is_empty() && names.len() <= allowed);
                let live = states.iter().filter(|d| !**d).count();
                prop_assert_eq!(names.len() + left, live);
                for name in &names {
                    let i: usize = name[1..].parse().unwrap();
                    prop_assert!(!states[i], "a draining claim deleted again");
                }
            }
            PoolStep::Release => prop_assert!(claims.is_empty()),
            PoolStep::Wait { held, .. } => prop_assert!(allowed == 0 || held == 0),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
