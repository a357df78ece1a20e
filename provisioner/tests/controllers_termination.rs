//! The termination planner: finalizer, cordon, drain, then terminate.

mod controllers_fixtures;

use controllers_fixtures::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;
use spotwright_provisioner::controllers::termination::*;
use spotwright_provisioner::model::claim::*;

/// Borrows, as the state hands pods out.
fn refs(pods: &[CachedPod]) -> Vec<&CachedPod> {
    pods.iter().collect()
}

fn deleting() -> spotwright_api::NodeClaim {
    let mut claim = claim(vec![]);
    claim.metadata.deletion_timestamp = Some(Time(at(0)));
    claim
}

/// Deleted at `at(0)` with this `terminationGracePeriod`.
fn deleting_with_grace(grace: &str) -> spotwright_api::NodeClaim {
    let mut claim = deleting();
    claim.spec.termination_grace_period = Some(grace.to_owned());
    claim
}

fn cordoned() -> k8s_openapi::api::core::v1::Node {
    let mut node = node(
        json!({}),
        json!([{"key": "spotwright.io/disrupted", "effect": "NoSchedule"}]),
        true,
    );
    node.spec.as_mut().unwrap().unschedulable = Some(true);
    node
}

const INSTANCE: &str = "i-0123456789abcdef0";
const NODE: &str = "ip-10-0-0-1.ec2.internal";

#[test]
fn instance_ids_come_from_provider_ids() {
    assert_eq!(instance_id("aws:///us-east-1a/i-0abc"), Some("i-0abc"));
    assert_eq!(instance_id("aws:///i-0abc"), Some("i-0abc"));
    assert_eq!(instance_id("kwok://node-1"), None);
    assert_eq!(instance_id("aws:///us-east-1a/"), None);
}

#[test]
fn a_live_claim_gets_the_finalizer_once() {
    let mut claim = claim(vec![]);
    assert_eq!(plan(&claim, None, &[], at(0)), TerminationStep::Nothing);
    claim.metadata.finalizers = None;
    assert_eq!(
        plan(&claim, None, &[], at(0)),
        TerminationStep::AddFinalizer
    );
}

#[test]
fn a_deleted_claim_is_cordoned_first() {
    let node = node(json!({}), json!([]), true);
    assert_eq!(
        plan(
            &deleting(),
            Some(&node),
            &[&pod("w", PodKind::Workload)],
            at(0)
        ),
        TerminationStep::Cordon {
            node: NODE.to_owned()
        }
    );
}

#[test]
fn then_its_workload_pods_are_evicted_and_awaited() {
    let pods = [
        pod("w", PodKind::Workload),
        pod("ds", PodKind::DaemonSet),
        pod("m", PodKind::Mirror),
        pod("done", PodKind::Succeeded),
        pod("going", PodKind::Terminating),
    ];
    assert_eq!(
        plan(&deleting(), Some(&cordoned()), &refs(&pods), at(0)),
        TerminationStep::Evict {
            node: NODE.to_owned(),
            pods: vec![PodRef {
                namespace: "apps".to_owned(),
                name: "w".to_owned()
            }],
        }
    );
    assert_eq!(
        plan(&deleting(), Some(&cordoned()), &refs(&pods[1..]), at(0)),
        TerminationStep::AwaitPodExit {
            node: NODE.to_owned(),
            pods: 1
        }
    );
}

#[test]
fn once_drained_the_instance_is_terminated_and_the_node_deleted() {
    let pods = [pod("ds", PodKind::DaemonSet), pod("m", PodKind::Mirror)];
    assert_eq!(
        plan(&deleting(), Some(&cordoned()), &refs(&pods), at(0)),
        TerminationStep::Finish {
            node: Some(NODE.to_owned()),
            instance_id: Some(INSTANCE.to_owned())
        }
    );
}

#[test]
fn a_claim_without_node_or_instance_just_finishes() {
    assert_eq!(
        plan(&deleting(), None, &[], at(0)),
        TerminationStep::Finish {
            node: None,
            instance_id: Some(INSTANCE.to_owned())
        }
    );
    let mut unlaunched = deleting();
    unlaunched.status = None;
    assert_eq!(
        plan(&unlaunched, None, &[], at(0)),
        TerminationStep::Finish {
            node: None,
            instance_id: None
        }
    );
}

#[test]
fn a_deleted_claim_past_its_finalizer_is_left_alone() {
    let mut claim = deleting();
    claim.metadata.finalizers = Some(vec!["other".to_owned()]);
    assert_eq!(
        plan(&claim, Some(&cordoned()), &[], at(0)),
        TerminationStep::Nothing
    );
}

#[test]
fn past_its_grace_period_a_drain_deletes_what_it_could_not_evict() {
    let pods = [
        pod("w", PodKind::Workload),
        pod("going", PodKind::Terminating),
    ];
    let claim = deleting_with_grace("1m");
    let wanted = vec![PodRef {
        namespace: "apps".to_owned(),
        name: "w".to_owned(),
    }];
    assert_eq!(
        plan(&claim, Some(&cordoned()), &refs(&pods), at(59)),
        TerminationStep::Evict {
            node: NODE.to_owned(),
            pods: wanted.clone()
        },
        "within the grace period, evictions"
    );
    assert_eq!(
        plan(&claim, Some(&cordoned()), &refs(&pods), at(60)),
        TerminationStep::ForceDelete {
            node: NODE.to_owned(),
            pods: wanted
        }
    );
    assert_eq!(
        plan(&claim, Some(&cordoned()), &refs(&pods[1..]), at(600)),
        TerminationStep::AwaitPodExit {
            node: NODE.to_owned(),
            pods: 1
        },
        "a pod already going is waited for"
    );
}

#[test]
fn without_a_grace_period_a_drain_never_forces() {
    let pods = [pod("w", PodKind::Workload)];
    let step = plan(&deleting(), Some(&cordoned()), &refs(&pods), at(10_000_000));
    assert!(matches!(step, TerminationStep::Evict { .. }), "{step:?}");
    assert_eq!(grace_deadline(&deleting()), None);
    let mut alive = deleting_with_grace("1m");
    alive.metadata.deletion_timestamp = None;
    assert_eq!(grace_deadline(&alive), None, "no deadline before deletion");
    assert_eq!(
        grace_deadline(&deleting_with_grace("1h30m")),
        Some(at(5400))
    );
    assert_eq!(grace_deadline(&deleting_with_grace("soon")), None);
}

#[test]
fn the_backoff_never_outlasts_the_grace_period() {
    use std::time::Duration;
    let wait = Duration::from_secs(20);
    assert_eq!(wait_within_grace(wait, None, at(0)), wait);
    assert_eq!(
        wait_within_grace(wait, Some(at(5)), at(0)),
        Duration::from_secs(5)
    );
    assert_eq!(
        wait_within_grace(wait, Some(at(0)), at(9)),
        Duration::from_millis(100),
        "past the deadline: look again soon"
    );
}

#[test]
fn a_blocked_drain_is_reported_first_and_every_tenth_time() {
    let reported: Vec<u32> = (0..25).filter(|n| report_blocked_drain(*n)).collect();
    assert_eq!(reported, [0, 10, 20]);
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
    /// With a Node present, the instance is terminated only once the node is
    /// cordoned and every pod left is a DaemonSet, mirror or finished pod.
    #[test]
    fn never_terminates_before_the_drain_is_complete(
        kinds in prop::collection::vec(kind(), 0..8),
        is_cordoned in any::<bool>(),
        grace in prop::option::of(0u32..100),
        elapsed in 0i64..200,
    ) {
        let pods: Vec<_> = kinds.iter().enumerate().map(|(i, k)| pod(&format!("p{i}"), *k)).collect();
        let node = if is_cordoned { cordoned() } else { node(json!({}), json!([]), true) };
        let claim = match grace {
            Some(seconds) => deleting_with_grace(&format!("{seconds}s")),
            None => deleting(),
        };
        let step = plan(&claim, Some(&node), &refs(&pods), at(elapsed));
        if let TerminationStep::ForceDelete { pods: deleted, .. } = &step {
            prop_assert!(grace.is_some_and(|g| elapsed >= i64::from(g)), "forced only past the grace period");
            for p in deleted {
                let i: usize = p.name[1..].parse().unwrap();
                prop_assert_eq!(kinds[i], PodKind::Workload);
            }
        }
        if grace.is_some_and(|g| elapsed >= i64::from(g)) {
            prop_assert!(!matches!(step, TerminationStep::Evict { .. }), "past the grace period nothing waits on an eviction");
        }
        let finished = matches!(step, TerminationStep::Finish { .. });
        if finished {
            prop_assert!(is_cordoned);
            prop_assert!(kinds.iter().all(|k| !matches!(k, PodKind::Workload | PodKind::Terminating)));
        }
        if let TerminationStep::Evict { pods: evicted, .. } = &step {
            for p in evicted {
                let i: usize = p.name[1..].parse().unwrap();
                prop_assert_eq!(kinds[i], PodKind::Workload);
            }
        }
    }
}

#[test]
fn refused_evictions_back_off_doubling_up_to_the_cap() {
    use std::time::Duration;
    let (base, max) = (Duration::from_secs(1), Duration::from_secs(20));
    let waits: Vec<u64> = (1..=7)
        .map(|n| eviction_delay(base, max, n).as_secs())
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 20, 20]);
    assert_eq!(eviction_delay(base, max, u32::MAX), max, "no overflow");
    assert_eq!(eviction_delay(base, max, 0), base);
}
