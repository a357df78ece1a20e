//! Leader election's pure part: who may take the Lease.

mod controllers_fixtures;

use std::time::Duration;

use controllers_fixtures::at;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use proptest::prelude::*;
use spotwright_provisioner::run::leader::*;

fn held(by: &str, renewed: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(by.to_owned()),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(at(renewed))),
        acquire_time: Some(MicroTime(at(0))),
        lease_transitions: Some(3),
        ..LeaseSpec::default()
    }
}

#[test]
fn a_missing_or_released_lease_is_free() {
    assert_eq!(decide(None, "me", at(0)), LeaseDecision::Take);
    let released = LeaseSpec {
        holder_identity: None,
        ..held("x", 0)
    };
    assert_eq!(decide(Some(&released), "me", at(1)), LeaseDecision::Take);
    let empty = LeaseSpec {
        holder_identity: Some(String::new()),
        ..held("x", 0)
    };
    assert_eq!(decide(Some(&empty), "me", at(1)), LeaseDecision::Take);
}

#[test]
fn the_holder_renews_and_others_wait_until_it_expires() {
    let lease = held("other", 100);
    assert_eq!(decide(Some(&lease), "other", at(200)), LeaseDecision::Renew);
    assert_eq!(
        decide(Some(&lease), "me", at(110)),
        LeaseDecision::Wait {
            holder: "other".to_owned(),
            remaining: Duration::from_secs(5)
        }
    );
    assert_eq!(decide(Some(&lease), "me", at(115)), LeaseDecision::Take);
}

#[test]
fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
    let settings = LeaderSettings {
        identity: "me".to_owned(),
        ..LeaderSettings::new("ns")
    };
    let previous = held("other", 0);
    let taken = claimed(Some(&previous), &settings, &LeaseDecision::Take, at(50));
    assert_eq!(taken.holder_identity.as_deref(), Some("me"));
    assert_eq!(taken.lease_transitions, Some(4));
    assert_eq!(taken.acquire_time, Some(MicroTime(at(50))));
    assert_eq!(taken.lease_duration_seconds, Some(15));
    let renewed = claimed(Some(&taken), &settings, &LeaseDecision::Renew, at(53));
    assert_eq!(renewed.acquire_time, Some(MicroTime(at(50))));
    assert_eq!(renewed.renew_time, Some(MicroTime(at(53))));
    assert_eq!(renewed.lease_transitions, Some(4));
}

#[test]
fn defaults_follow_the_design() {
    let settings = LeaderSettings::new("spotwright-system");
    assert_eq!(settings.lease_name, "spotwright-provisioner");
    assert_eq!(settings.lease_duration, Duration::from_secs(15));
    assert!((2..=5).contains(&settings.renew_interval.as_secs()));
    assert!(settings.renew_deadline() < settings.lease_duration);
    assert_ne!(default_identity(), default_identity());
}

proptest! {
    /// A lease renewed less than its duration ago is never taken by another.
    #[test]
    fn a_live_lease_is_never_taken_by_another(renewed in 0i64..1000, age in 0i64..15) {
        let lease = held("other", renewed);
        let decision = decide(Some(&lease), "me", at(renewed + age));
        prop_assert!(matches!(decision, LeaseDecision::Wait { .. }), "{:?}", decision);
    }
}
