//! Orphan collection: which instances are terminated.

mod controllers_fixtures;

use std::collections::HashMap;
use std::time::Duration;

use controllers_fixtures::at;
use proptest::prelude::*;
use spotwright_provisioner::act::instances::InstanceInfo;
use spotwright_provisioner::controllers::orphans::orphans;

fn instance(id: &str, claim: Option<&str>, launched: Option<i64>) -> InstanceInfo {
    InstanceInfo {
        id: id.to_owned(),
        nodeclaim: claim.map(str::to_owned),
        nodeclaim_uid: None,
        launch_time: launched.map(at),
    }
}

fn claims(names: &[&str]) -> HashMap<String, String> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), format!("uid-{n}")))
        .collect()
}

const GRACE: Duration = Duration::from_secs(120);

#[test]
fn an_old_instance_of_a_missing_claim_is_an_orphan() {
    let claims = claims(&["alive"]);
    let instances = [
        instance("i-gone", Some("gone"), Some(0)),
        instance("i-alive", Some("alive"), Some(0)),
        instance("i-young", Some("in-flight"), Some(200)),
        instance("i-untagged", None, Some(0)),
        instance("i-unknown-age", Some("gone"), None),
    ];
    assert_eq!(orphans(&instances, &claims, GRACE, at(300)), ["i-gone"]);
}

#[test]
fn an_instance_of_an_earlier_claim_with_the_same_name_is_an_orphan() {
    let claims = claims(&["web"]);
    let mut old = instance("i-old", Some("web"), Some(0));
    old.nodeclaim_uid = Some("uid-before".to_owned());
    let mut current = instance("i-current", Some("web"), Some(0));
    current.nodeclaim_uid = Some("uid-web".to_owned());
    assert_eq!(orphans(&[old, current], &claims, GRACE, at(300)), ["i-old"]);
}

#[test]
fn the_grace_period_is_exclusive() {
    let instances = [instance("i-1", Some("gone"), Some(0))];
    assert!(orphans(&instances, &HashMap::new(), GRACE, at(120)).is_empty());
    assert_eq!(
        orphans(&instances, &HashMap::new(), GRACE, at(121)),
        ["i-1"]
    );
}

proptest! {
    /// An instance whose claim exists, or that is younger than the grace
    /// period, or that has no claim tag, is never terminated.
    #[test]
    fn orphans_spare_claimed_young_and_foreign_instances(
        specs in prop::collection::vec((prop::option::of(0u8..4), prop::option::of(0i64..400)), 0..12),
        alive in prop::collection::hash_set(0u8..4, 0..4),
        now in 0i64..600,
    ) {
        let instances: Vec<_> = specs.iter().enumerate().map(|(i, (claim, launched))| InstanceInfo {
            id: format!("i-{i}"),
            nodeclaim: claim.map(|c| format!("claim-{c}")),
            nodeclaim_uid: claim.map(|c| format!("uid-{c}")),
            launch_time: launched.map(at),
        }).collect();
        let claims: HashMap<String, String> = alive.iter().map(|c| (format!("claim-{c}"), format!("uid-{c}"))).collect();
        let doomed = orphans(&instances, &claims, GRACE, at(now));
        for id in doomed {
            let i = instances.iter().find(|i| i.id == id).unwrap();
            let claim = i.nodeclaim.as_ref().unwrap();
            prop_assert!(!claims.contains_key(claim));
            prop_assert!(now - i.launch_time.unwrap().as_second() + 1_800_000_000 > 120);
        }
    }
}
