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
    assert_eq!(plan(&claim, None, &[]), TerminationStep::Nothing);
    claim.metadata.finalizers = None;
    assert_eq!(plan(&claim, None, &[]), TerminationStep::AddFinalizer);
}

#[test]
fn a_deleted_claim_is_cordoned_first() {
    let node = node(json!({}), json!([]), true);
    assert_eq!(
        plan(&deleting(), Some(&node), &[&pod("w", PodKind::Workload)]),
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
        plan(&deleting(), Some(&cordoned()), &refs(&pods)),
        TerminationStep::Evict {
            node: NODE.to_owned(),
            pods: vec![PodRef {
                namespace: "apps".to_owned(),
                name: "w".to_owned()
            }],
        }
    );
    assert_eq!(
        plan(&deleting(), Some(&cordoned()), &refs(&pods[1..])),
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
        plan(&deleting(), Some(&cordoned()), &refs(&pods)),
        TerminationStep::Finish {
            node: Some(NODE.to_owned()),
            instance_id: Some(INSTANCE.to_owned())
        }
    );
}

#[test]
fn a_claim_without_node_or_instance_just_finishes() {
    assert_eq!(
        plan(&deleting(), None, &[]),
        TerminationStep::Finish {
            node: None,
            instance_id: Some(INSTANCE.to_owned())
        }
    );
    let mut unlaunched = deleting();
    unlaunched.status = None;
    assert_eq!(
        plan(&unlaunched, None, &[]),
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
        plan(&claim, Some(&cordoned()), &[]),
        TerminationStep::Nothing
    );
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
    ) {
        let pods: Vec<_> = kinds.iter().enumerate().map(|(i, k)| pod(&format!("p{i}"), *k)).collect();
        let node = if is_cordoned { cordoned() } else { node(json!({}), json!([]), true) };
        let step = plan(&deleting(), Some(&node), &refs(&pods));
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
