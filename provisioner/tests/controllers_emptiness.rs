//! Removal of empty nodes: which pods count, `consolidateAfter`, and
//! `do-not-disrupt`.

mod controllers_fixtures;

use std::time::Duration;

use controllers_fixtures::*;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::json;
use spotwright_api::conditions::INITIALIZED;
use spotwright_api::duration::Lifetime;
use spotwright_api::v1alpha1::{Budget, ConsolidationPolicy, Disruption, DisruptionReason};
use spotwright_provisioner::controllers::emptiness::*;
use spotwright_provisioner::model::budgets;

fn policy(after: &str) -> EmptinessPolicy {
    EmptinessPolicy {
        policy: ConsolidationPolicy::WhenEmpty,
        consolidate_after: Lifetime::parse(after).unwrap(),
        nomination_window: NOMINATION_WINDOW,
    }
}

fn initialized() -> spotwright_api::NodeClaim {
    claim(vec![condition(INITIALIZED, true, 0)])
}

fn ready_node() -> k8s_openapi::api::core::v1::Node {
    node(json!({}), json!([]), true)
}

#[test]
fn daemonset_mirror_and_finished_pods_do_not_count() {
    for kind in [
        PodKind::DaemonSet,
        PodKind::Mirror,
        PodKind::Succeeded,
        PodKind::Failed,
    ] {
        assert!(!pod("p", kind).is_workload(), "{kind:?}");
    }
    assert!(pod("p", PodKind::Workload).is_workload());
    assert!(pod("p", PodKind::Terminating).is_workload());
}

#[test]
fn an_empty_node_is_removed_after_consolidate_after() {
    let ds = pod("ds", PodKind::DaemonSet);
    let claim = initialized();
    let node = ready_node();
    let since = Some(at(100));
    assert_eq!(since, Some(at(100)));
    assert_eq!(
        decide(&claim, Some(&node), &[&ds], policy("30s"), since, at(110)),
        EmptinessDecision::Wait {
            remaining: Duration::from_secs(20)
        }
    );
    assert_eq!(
        decide(&claim, Some(&node), &[&ds], policy("30s"), since, at(130)),
        EmptinessDecision::Remove {
            empty_for: Duration::from_secs(30)
        }
    );
}

#[test]
fn zero_removes_at_once_and_never_never_does() {
    let claim = initialized();
    let node = ready_node();
    let now = at(45);
    let since = Some(now);
    assert_eq!(
        decide(&claim, Some(&node), &[], policy("0s"), since, now),
        EmptinessDecision::Remove {
            empty_for: Duration::ZERO
        }
    );
    assert_eq!(
        decide(
            &claim,
            Some(&node),
            &[],
            policy("Never"),
            since,
            at(1_000_000)
        ),
        EmptinessDecision::Ignore
    );
}

#[test]
fn a_new_node_waits_out_the_nomination_window_even_at_zero() {
    // Initialized at 0: the pods launched for it may not be bound yet.
    let claim = initialized();
    let node = ready_node();
    let since = Some(at(5));
    assert_eq!(
        decide(&claim, Some(&node), &[], policy("0s"), since, at(5)),
        EmptinessDecision::Wait {
            remaining: NOMINATION_WINDOW - Duration::from_secs(5)
        }
    );
    let window = NOMINATION_WINDOW.as_secs() as i64;
    assert_eq!(
        decide(&claim, Some(&node), &[], policy("0s"), since, at(window)),
        EmptinessDecision::Remove {
            empty_for: Duration::from_secs(window as u64 - 5)
        }
    );
}

#[test]
fn a_shorter_nomination_window_lets_an_empty_node_go_sooner_but_not_before_it_ends() {
    let claim = initialized();
    let node = ready_node();
    let since = Some(at(2));
    let short = EmptinessPolicy {
        nomination_window: Duration::from_secs(10),
        ..policy("0s")
    };
    assert_eq!(
        decide(&claim, Some(&node), &[], short, since, at(9)),
        EmptinessDecision::Wait {
            remaining: Duration::from_secs(1)
        }
    );
    assert_eq!(
        decide(&claim, Some(&node), &[], short, since, at(10)),
        EmptinessDecision::Remove {
            empty_for: Duration::from_secs(8)
        }
    );
    // consolidateAfter longer than the window still rules.
    let patient = EmptinessPolicy {
        nomination_window: Duration::from_secs(10),
        ..policy("20s")
    };
    assert_eq!(
        decide(&claim, Some(&node), &[], patient, since, at(10)),
        EmptinessDecision::Wait {
            remaining: Duration::from_secs(12)
        }
    );
}

#[test]
fn a_node_with_a_workload_pod_is_not_empty() {
    let workload = pod("w", PodKind::Workload);
    assert_eq!(
        decide(
            &initialized(),
            Some(&ready_node()),
            &[&workload],
            policy("0s"),
            Some(at(0)),
            at(100)
        ),
        EmptinessDecision::NotEmpty
    );
}

#[test]
fn uninitialized_deleting_or_nodeless_claims_are_not_candidates() {
    let node = ready_node();
    let uninitialized = claim(vec![condition(INITIALIZED, false, 0)]);
    assert_eq!(
        decide(
            &uninitialized,
            Some(&node),
            &[],
            policy("0s"),
            Some(at(0)),
            at(9)
        ),
        EmptinessDecision::Ignore
    );
    assert_eq!(
        decide(&initialized(), None, &[], policy("0s"), Some(at(0)), at(9)),
        EmptinessDecision::Ignore
    );
    let mut deleting = initialized();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
    assert_eq!(
        decide(
            &deleting,
            Some(&node),
            &[],
            policy("0s"),
            Some(at(0)),
            at(9)
        ),
        EmptinessDecision::Ignore
    );
}

#[test]
fn do_not_disrupt_on_the_node_or_a_pod_blocks_removal() {
    let claim = initialized();
    let node = annotate(ready_node(), "spotwright.io/do-not-disrupt", "true");
    assert!(matches!(
        decide(&claim, Some(&node), &[], policy("0s"), Some(at(0)), at(60)),
        EmptinessDecision::Blocked { reason } if reason.starts_with("Node")
    ));
    let ds = CachedPod::from(&annotate(
        pod_object("agent", PodKind::DaemonSet),
        "spotwright.io/do-not-disrupt",
        "true",
    ));
    assert!(matches!(
        decide(&claim, Some(&ready_node()), &[&ds], policy("0s"), Some(at(0)), at(60)),
        EmptinessDecision::Blocked { reason } if reason.contains("apps/agent")
    ));
    let not_true = annotate(ready_node(), "spotwright.io/do-not-disrupt", "false");
    assert!(matches!(
        decide(
            &claim,
            Some(&not_true),
            &[],
            policy("0s"),
            Some(at(0)),
            at(60)
        ),
        EmptinessDecision::Remove { .. }
    ));
}

fn budget(nodes: &str, reasons: &[DisruptionReason], schedule: Option<&str>) -> Budget {
    Budget {
        nodes: nodes.to_owned(),
        reasons: reasons.to_vec(),
        schedule: schedule.map(str::to_owned),
        duration: schedule.map(|_| "8h".to_owned()),
    }
}

#[test]
fn budgets_bound_removals_per_pool() {
    let allowed = |budgets: &[Budget], nodes, disrupting, now: &str| {
        let now: Timestamp = now.parse().unwrap();
        budgets::allowed(budgets, DisruptionReason::Empty, nodes, disrupting, now)
    };
    let monday_10 = "2026-11-23T10:00:00Z";
    let saturday_10 = "2026-11-28T10:00:00Z";
    // The default: 10% of the pool, rounded up.
    let default = Disruption::default().budgets;
    assert_eq!(allowed(&default, 5, 0, monday_10), 1);
    assert_eq!(allowed(&default, 25, 0, monday_10), 3);
    assert_eq!(allowed(&default, 25, 3, monday_10), 0);
    assert_eq!(allowed(&default, 0, 0, monday_10), 0);
    // The most restrictive applicable budget wins; others are ignored.
    let budgets = [
        budget("5", &[], None),
        budget("0", &[DisruptionReason::Drifted], None),
        budget("2", &[DisruptionReason::Empty], None),
    ];
    assert_eq!(allowed(&budgets, 100, 1, monday_10), 1);
    // A scheduled budget binds inside its window only; a bad one allows nothing.
    let office_hours = [budget("0", &[], Some("0 9 * * 1-5"))];
    assert_eq!(allowed(&office_hours, 10, 0, monday_10), 0);
    assert_eq!(allowed(&office_hours, 10, 0, saturday_10), usize::MAX);
    assert_eq!(allowed(&[budget("lots", &[], None)], 10, 0, monday_10), 0);
    assert!(allowed(&[], 10, 4, monday_10) >= usize::MAX - 4);
}

fn kind() -> impl Strategy<Value = PodKind> {
    prop::sample::select(vec![
        PodKind::Workload,
        PodKind::DaemonSet,
        PodKind::Mirror,
        PodKind::Succeeded,
        PodKind::Failed,
        PodKind::Terminating,
    ])
}

proptest! {
    /// Whatever the timing and policy, a node with a non-DaemonSet,
    /// non-mirror, unfinished pod is never removed.
    #[test]
    fn emptiness_never_removes_a_node_with_a_workload_pod(
        kinds in prop::collection::vec(kind(), 0..8),
        since in prop::option::of(0i64..1000),
        now in 0i64..5000,
        after in prop::sample::select(vec!["0s", "30s", "5m", "Never"]),
        underutilized in any::<bool>(),
    ) {
        let pods: Vec<_> = kinds.iter().enumerate().map(|(i, k)| pod(&format!("p{i}"), *k)).collect();
        let refs: Vec<_> = pods.iter().collect();
        let mut policy = policy(after);
        if underutilized {
            policy.policy = ConsolidationPolicy::WhenEmptyOrUnderutilized;
        }
        let decision = decide(&initialized(), Some(&ready_node()), &refs, policy, since.map(at), at(now));
        let has_workload = kinds.iter().any(|k| matches!(k, PodKind::Workload | PodKind::Terminating));
        if has_workload {
            let removed = matches!(decision, EmptinessDecision::Remove { .. });
            prop_assert!(!removed, "removed a node with workload pods: {:?}", kinds);
        }
    }
}
