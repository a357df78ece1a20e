//! Registration's decisions: labels and taints onto the Node, conditions,
//! the registration taint's gate, and the registration timeout.

mod controllers_fixtures;

use std::collections::BTreeMap;
use std::time::Duration;

use controllers_fixtures::*;
use proptest::prelude::*;
use serde_json::json;
use spotwright_api::conditions::{INITIALIZED, LAUNCHED, REGISTERED};
use spotwright_provisioner::controllers::registration::*;
use spotwright_provisioner::model::node::*;

fn settings() -> RegistrationSettings {
    RegistrationSettings::default()
}

#[test]
fn node_labels_come_from_the_claim_its_single_value_requirements_and_the_instance() {
    let labels = node_labels(&claim(vec![]));
    let expected: BTreeMap<String, String> = [
        ("spotwright.io/nodepool", "default"),
        ("team", "a"),
        ("kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "m5.large"),
        ("topology.kubernetes.io/zone", "us-east-1a"),
        ("spotwright.io/capacity-type", "spot"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(labels, expected);
}

#[test]
fn a_fresh_node_gets_labels_taints_and_startup_taints() {
    let node = node(
        json!({"kubernetes.io/hostname": "ip-10-0-0-1"}),
        json!([]),
        false,
    );
    let update = plan_node_update(
        &claim(vec![condition(LAUNCHED, true, 0)]),
        &node,
        Gate::Open,
    );
    assert_eq!(
        update
            .labels
            .get("spotwright.io/nodepool")
            .map(String::as_str),
        Some("default")
    );
    assert!(!update.labels.contains_key("kubernetes.io/hostname"));
    let taints = update.taints.expect("taints added");
    let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["dedicated", "node.cilium.io/agent-not-ready"]);
}

#[test]
fn startup_taints_are_not_put_back_once_registered() {
    let node = node(json!({}), json!([]), true);
    let registered = claim(vec![condition(REGISTERED, true, 5)]);
    assert_eq!(
        plan_node_update(&registered, &node, Gate::Open).taints,
        None
    );
}

#[test]
fn an_up_to_date_node_needs_nothing() {
    let claim = claim(vec![]);
    let labels = serde_json::to_value(node_labels(&claim)).unwrap();
    let node = node(
        labels,
        json!([{"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
               {"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"}]),
        true,
    );
    assert!(plan_node_update(&claim, &node, Gate::Open).is_empty());
}

#[test]
fn initialized_needs_ready_allocatable_and_no_startup_taint() {
    let claim = claim(vec![]);
    assert!(is_initialized(&claim, &node(json!({}), json!([]), true)));
    assert!(!is_initialized(&claim, &node(json!({}), json!([]), false)));
    let tainted = node(
        json!({}),
        json!([{"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"}]),
        true,
    );
    assert!(!is_initialized(&claim, &tainted));
    let mut no_allocatable = node(json!({}), json!([]), true);
    no_allocatable.status.as_mut().unwrap().allocatable = None;
    assert!(!is_initialized(&claim, &no_allocatable));
}

#[test]
fn a_matching_node_registers_the_claim() {
    let claim = claim(vec![
        condition(LAUNCHED, true, 0),
        condition(REGISTERED, true, 1),
    ]);
    let node = node(json!({}), json!([]), true);
    match decide(&claim, Some(&node), None, &settings(), at(30)) {
        RegistrationDecision::Register {
            node_name,
            initialized,
            node_update,
            gate_opens_in,
        } => {
            assert_eq!(gate_opens_in, None);
            assert_eq!(node_name, "ip-10-0-0-1.ec2.internal");
            assert!(initialized);
            assert_eq!(node_update.taints, None);
        }
        other => panic!("expected Register, got {other:?}"),
    }
}

#[test]
fn a_node_that_just_gets_its_startup_taints_is_not_initialized() {
    let claim = claim(vec![condition(LAUNCHED, true, 0)]);
    let node = node(json!({}), json!([]), true);
    assert!(is_initialized(&claim, &node), "ready before the update");
    match decide(&claim, Some(&node), None, &settings(), at(30)) {
        RegistrationDecision::Register { initialized, .. } => assert!(!initialized),
        other => panic!("expected Register, got {other:?}"),
    }
}

#[test]
fn initialized_is_sticky() {
    let claim = claim(vec![
        condition(REGISTERED, true, 0),
        condition(INITIALIZED, true, 0),
    ]);
    let not_ready = node(json!({}), json!([]), false);
    match decide(&claim, Some(&not_ready), None, &settings(), at(30)) {
        RegistrationDecision::Register { initialized, .. } => assert!(initialized),
        other => panic!("expected Register, got {other:?}"),
    }
}

#[test]
fn no_node_waits_until_the_timeout_then_times_out() {
    let claim = claim(vec![condition(LAUNCHED, true, 100)]);
    assert_eq!(
        decide(&claim, None, None, &settings(), at(100 + 60)),
        RegistrationDecision::AwaitNode {
            remaining: Duration::from_secs(14 * 60)
        }
    );
    assert_eq!(
        decide(&claim, None, None, &settings(), at(100 + 15 * 60)),
        RegistrationDecision::TimedOut {
            waited: Duration::from_secs(15 * 60)
        }
    );
}

#[test]
fn unlaunched_deleting_or_already_registered_claims_are_left_alone() {
    let mut unlaunched = claim(vec![]);
    unlaunched.status.as_mut().unwrap().provider_id = None;
    assert_eq!(
        decide(&unlaunched, None, None, &settings(), at(10_000)),
        RegistrationDecision::Ignore
    );

    let mut deleting = claim(vec![condition(LAUNCHED, true, 0)]);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
    assert_eq!(
        decide(&deleting, None, None, &settings(), at(10_000)),
        RegistrationDecision::Ignore
    );

    let registered = claim(vec![
        condition(LAUNCHED, true, 0),
        condition(REGISTERED, true, 5),
    ]);
    assert_eq!(
        decide(&registered, None, None, &settings(), at(10_000)),
        RegistrationDecision::Ignore
    );
}

#[test]
fn conditions_keep_their_transition_time_until_the_status_changes() {
    let claim = claim(vec![
        condition(LAUNCHED, true, 0),
        condition(INITIALIZED, false, 10),
    ]);
    let (conditions, changed) = registered_conditions(&claim, "n", false, at(20));
    assert!(changed);
    let initialized = conditions.iter().find(|c| c.type_ == INITIALIZED).unwrap();
    assert_eq!(initialized.last_transition_time.0, at(10));
    let registered = conditions.iter().find(|c| c.type_ == REGISTERED).unwrap();
    assert_eq!(
        (
            registered.status.as_str(),
            registered.last_transition_time.0
        ),
        ("True", at(20))
    );

    let (conditions, _) = registered_conditions(&claim, "n", true, at(30));
    let initialized = conditions.iter().find(|c| c.type_ == INITIALIZED).unwrap();
    assert_eq!(
        (
            initialized.status.as_str(),
            initialized.last_transition_time.0
        ),
        ("True", at(30))
    );
}

#[test]
fn recording_the_same_conditions_twice_changes_nothing() {
    let claim = claim(vec![]);
    let (conditions, _) = registered_conditions(&claim, "n", true, at(20));
    let mut again = claim.clone();
    again.status.as_mut().unwrap().conditions = conditions;
    let (_, changed) = registered_conditions(&again, "n", true, at(40));
    assert!(!changed);
}

const UNREGISTERED: &str = "spotwright.io/unregistered";

fn gated_node(created: i64) -> k8s_openapi::api::core::v1::Node {
    let mut node = node(
        json!({}),
        json!([{"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
               {"key": UNREGISTERED, "effect": "NoSchedule"}]),
        true,
    );
    node.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        at(created),
    ));
    node
}

fn taint_keys(taints: &[k8s_openapi::api::core::v1::Taint]) -> Vec<&str> {
    taints.iter().map(|t| t.key.as_str()).collect()
}

#[test]
fn the_gate_opens_when_the_group_is_in_or_the_bound_has_passed() {
    let bound = Duration::from_secs(5);
    let partial = Some(GroupProgress {
        registered: 2,
        size: 3,
    });
    let complete = Some(GroupProgress {
        registered: 3,
        size: 3,
    });
    assert_eq!(gate(None, Some(at(0)), bound, at(1)), Gate::Open);
    assert_eq!(gate(complete, Some(at(0)), bound, at(1)), Gate::Open);
    assert_eq!(
        gate(partial, Some(at(0)), bound, at(1)),
        Gate::Closed {
            opens_in: Duration::from_secs(4)
        }
    );
    assert_eq!(gate(partial, Some(at(0)), bound, at(5)), Gate::Open);
    assert_eq!(
        gate(partial, Some(at(0)), Duration::ZERO, at(0)),
        Gate::Open
    );
    assert_eq!(
        gate(partial, None, bound, at(0)),
        Gate::Open,
        "no creation time: no wait"
    );
}

#[test]
fn the_registration_taint_comes_off_alone_and_only_when_the_gate_is_open() {
    let claim = claim(vec![condition(REGISTERED, true, 0)]);
    let node = gated_node(0);
    assert_eq!(
        plan_node_update(
            &claim,
            &node,
            Gate::Closed {
                opens_in: Duration::from_secs(1)
            }
        )
        .taints,
        None
    );
    let lifted = plan_node_update(&claim, &node, Gate::Open)
        .taints
        .expect("lifted");
    assert_eq!(taint_keys(&lifted), ["dedicated"]);
    assert!(
        !is_initialized(&claim, &node),
        "not initialized while gated"
    );
    assert!(is_initialized(
        &claim,
        &plan_node_update(&claim, &node, Gate::Open).applied_to(&node)
    ));
}

#[test]
fn a_node_waits_for_its_siblings_then_is_opened_in_the_registering_write() {
    let claim = claim(vec![condition(LAUNCHED, true, 0)]);
    let node = gated_node(10);
    let partial = Some(GroupProgress {
        registered: 1,
        size: 2,
    });
    match decide(&claim, Some(&node), partial, &settings(), at(12)) {
        RegistrationDecision::Register {
            node_update,
            initialized,
            gate_opens_in,
            ..
        } => {
            assert_eq!(gate_opens_in, Some(Duration::from_secs(3)));
            assert!(!initialized);
            let taints = node_update
                .taints
                .expect("the claim's startup taint is added");
            assert!(taint_keys(&taints).contains(&UNREGISTERED));
        }
        other => panic!("expected Register, got {other:?}"),
    }
    let complete = Some(GroupProgress {
        registered: 2,
        size: 2,
    });
    match decide(&claim, Some(&node), complete, &settings(), at(12)) {
        RegistrationDecision::Register {
            node_update,
            gate_opens_in,
            ..
        } => {
            assert_eq!(gate_opens_in, None);
            let taints = node_update.taints.expect("taints written");
            assert_eq!(
                taint_keys(&taints),
                ["dedicated", "node.cilium.io/agent-not-ready"]
            );
        }
        other => panic!("expected Register, got {other:?}"),
    }
}

proptest! {
    /// The gate is open exactly when the whole group has registered or the
    /// bound has passed; while closed, it opens when the bound is reached.
    #[test]
    fn the_gate_opens_at_the_bound_or_with_the_group(
        registered in 0usize..6, size in 1usize..6, created in 0i64..20, now in 0i64..40, bound in 0u64..15,
    ) {
        let bound = Duration::from_secs(bound);
        let group = Some(GroupProgress { registered, size });
        let waited = Duration::from_secs(now.saturating_sub(created).max(0) as u64);
        match gate(group, Some(at(created)), bound, at(now)) {
            Gate::Open => prop_assert!(registered >= size || waited >= bound),
            Gate::Closed { opens_in } => {
                prop_assert!(registered < size && waited < bound);
                prop_assert_eq!(waited + opens_in, bound);
            }
        }
    }

    /// Registration only ever adds or corrects labels: every label the Node
    /// had is still there after the update, and claim labels win.
    #[test]
    fn registration_never_drops_node_labels(
        existing in prop::collection::btree_map("[a-z]{1,3}(/[a-z]{1,3})?", "[a-z0-9]{0,4}", 0..8),
        claim_labels in prop::collection::btree_map("[a-z]{1,3}", "[a-z0-9]{0,4}", 0..8),
    ) {
        let mut claim = claim(vec![]);
        claim.metadata.labels = Some(claim_labels);
        let node = node(serde_json::to_value(&existing).unwrap(), json!([]), true);
        let update = plan_node_update(&claim, &node, Gate::Open);
        let mut after = existing.clone();
        after.extend(update.labels.clone());
        for key in existing.keys() {
            prop_assert!(after.contains_key(key));
        }
        for (key, value) in node_labels(&claim) {
            prop_assert_eq!(after.get(&key), Some(&value));
        }
    }

    /// Taints are only ever added, each at most once.
    #[test]
    fn registration_never_drops_or_duplicates_taints(
        existing in prop::collection::vec(("[a-d]", prop::sample::select(vec!["NoSchedule", "NoExecute"])), 0..6),
    ) {
        let mut seen = std::collections::BTreeSet::new();
        let taints: Vec<_> = existing
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .map(|(key, effect)| json!({"key": key, "effect": effect}))
            .collect();
        let node = node(json!({}), json!(taints), true);
        let update = plan_node_update(&claim(vec![]), &node, Gate::Open);
        if let Some(after) = update.taints {
            for t in node.spec.as_ref().unwrap().taints.as_ref().unwrap() {
                prop_assert!(after.contains(t));
            }
            let mut keys: Vec<_> = after.iter().map(|t| (t.key.clone(), t.effect.clone())).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
        }
    }
}
