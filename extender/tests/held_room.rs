//! Room held for the pods a node was launched for, from request bytes to
//! reply: who is turned away, who is not, and when the hold ends.

mod common;

use common::*;
use serde_json::{json, Value};
use spotwright_api::keys::CapacityType;
use spotwright_extender::answer::{self, Settings, Steering};
use spotwright_extender::facts::{ClaimFacts, PodFacts, ReservedRoom, Resources};
use spotwright_extender::filter::Reason;
use spotwright_extender::index::{Change, Index};

fn reserved(cpu_millis: u64, pods: &[&str]) -> Option<ReservedRoom> {
    Some(ReservedRoom {
        requests: Resources {
            cpu_millis,
            memory_bytes: 4 * GIB * pods.len() as u64,
            pods: pods.len() as u64,
        },
        pods: pods.iter().map(|p| p.to_string()).collect(),
        groups: Vec::new(),
    })
}

/// `fresh`: a node created 10 s before `NOW` (3,900m allocatable) whose
/// claim holds 3,000m for `u-a` and `u-b`, 1,500m each. `claim-coming`, not
/// registered yet, holds room for `u-x`, `u-r`, `u-d`, and `u-a` too (as
/// when the provisioner launched again for it). `u-y` has no claim.
fn cluster() -> Index {
    let index = index();
    let mut fresh = node("fresh", "m5.xlarge", "us-east-1a", CapacityType::Spot);
    fresh.created = Some(NOW - 10);
    index.apply_nodes(Change::Upsert(fresh));
    index.apply_claims(Change::Upsert(ClaimFacts {
        reserved: reserved(3000, &["u-a", "u-b"]),
        ..claim("claim-fresh", "fresh")
    }));
    index.apply_claims(Change::Upsert(ClaimFacts {
        node_name: None,
        provider_id: Some("aws:///us-east-1a/i-coming".into()),
        reserved: reserved(4000, &["u-x", "u-r", "u-d", "u-a"]),
        ..claim("claim-coming", "")
    }));
    index
}

fn asking(uid: &str, cpu: &str, owner: Option<&str>) -> Vec<u8> {
    let owners = owner.map(|kind| json!([{"kind": kind, "name": "o", "controller": true}]));
    let pod = json!({
        "metadata": {"uid": uid, "namespace": "ns", "name": uid, "ownerReferences": owners},
        "spec": {"containers": [{"resources": {"requests": {"cpu": cpu}}}]}
    });
    serde_json::to_vec(&json!({"Pod": pod, "NodeNames": ["fresh", "empty"]})).expect("json")
}

/// Settings that hold room for 90 s (the flag's default is off).
fn holding() -> Settings {
    Settings {
        hold_room_for: std::time::Duration::from_secs(90),
        ..Settings::default()
    }
}

/// The nodes that passed, and the message `fresh` got if it did not.
fn verdict(index: &Index, body: &[u8], now: i64) -> (Vec<String>, Option<String>) {
    let answer = answer::filter(body, index, &holding(), now).expect("answered");
    let reply: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let passed = serde_json::from_value(reply["NodeNames"].clone()).expect("names");
    let message = reply["FailedNodes"]["fresh"].as_str().map(str::to_owned);
    (passed, message)
}

fn turned_away(index: &Index, body: &[u8], now: i64) -> bool {
    let (passed, message) = verdict(index, body, now);
    assert!(
        passed.contains(&"empty".to_owned()),
        "an old node holds nothing"
    );
    match message {
        Some(m) => {
            assert_eq!(m, Reason::Reserved.message());
            assert!(!passed.contains(&"fresh".to_owned()));
            true
        }
        None => {
            assert!(passed.contains(&"fresh".to_owned()));
            false
        }
    }
}

#[test]
fn a_pod_with_a_node_on_the_way_waits_for_it() {
    let index = cluster();
    assert!(turned_away(&index, &asking("u-x", "100m", None), NOW));
    assert!(turned_away(&index, &asking("u-x", "3000m", None), NOW));
}

#[test]
fn a_pod_no_claim_holds_room_for_is_never_held_off() {
    let index = cluster();
    assert!(!turned_away(&index, &asking("u-y", "3000m", None), NOW));
    // Once bound, a pod is held for nowhere.
    index.apply_pods(Change::Upsert(pod("u-x", "empty", 100, 1)));
    assert!(!turned_away(&index, &asking("u-x", "100m", None), NOW));
    assert!(turned_away(&index, &asking("u-r", "100m", None), NOW));
}

#[test]
fn the_pods_it_was_launched_for_and_daemonsets_are_never_held_off() {
    let index = cluster();
    assert!(!turned_away(&index, &asking("u-a", "2000m", None), NOW));
    assert!(!turned_away(&index, &asking("u-b", "2000m", None), NOW));
    assert!(!turned_away(
        &index,
        &asking("u-d", "1000m", Some("DaemonSet")),
        NOW
    ));
    assert!(turned_away(
        &index,
        &asking("u-r", "1000m", Some("ReplicaSet")),
        NOW
    ));
}

#[test]
fn the_hold_ends_with_the_window_or_the_claim() {
    let index = cluster();
    let stranger = asking("u-x", "100m", None);
    assert!(turned_away(&index, &stranger, NOW + 79));
    assert!(
        !turned_away(&index, &stranger, NOW + 80),
        "90 s after the Node's creation"
    );
    let answer = answer::filter(&stranger, &index, &Settings::default(), NOW).expect("answered");
    assert_eq!(
        answer.passed, 2,
        "off by default: a zero window holds nothing"
    );
    index.apply_claims(Change::Remove("claim-fresh".into()));
    assert!(!turned_away(&index, &stranger, NOW));
}

#[test]
fn the_hold_ends_once_every_pod_it_was_for_is_bound_anywhere() {
    let index = cluster();
    let stranger = asking("u-x", "100m", None);
    // u-a went elsewhere, u-b not yet bound: still held.
    index.apply_pods(Change::Upsert(pod("u-a", "empty", 1500, 4)));
    assert!(turned_away(&index, &stranger, NOW));
    index.apply_pods(Change::Upsert(pod("u-b", "fresh", 1500, 4)));
    assert!(!turned_away(&index, &stranger, NOW));
    // A relist where only u-b is bound holds room for u-a again, on both
    // claims that hold room for it.
    index.apply_pods(Change::Replace(vec![pod("u-b", "fresh", 1500, 4)]));
    assert!(turned_away(&index, &stranger, NOW));
    assert!(!turned_away(&index, &asking("u-a", "100m", None), NOW));
    // The claim seen again after its pods bound holds nothing.
    index.apply_pods(Change::Upsert(pod("u-a", "fresh", 1500, 4)));
    let again = index.read().node("fresh").claim.cloned().expect("claim");
    index.apply_claims(Change::Upsert(again));
    assert!(!turned_away(&index, &stranger, NOW));
}

/// Each candidate's score for the pod `uid`, by node name.
fn scores(index: &Index, uid: &str, settings: &Settings) -> Vec<(String, i64)> {
    let body = asking(uid, "100m", None);
    let reply = answer::prioritize(&body, index, settings, NOW).expect("answered");
    let reply: Value = serde_json::from_slice(&reply).expect("JSON");
    let hosts = reply.as_array().expect("an array of HostPriority");
    hosts
        .iter()
        .map(|h| {
            let host = h["Host"].as_str().expect("a host").to_owned();
            (host, h["Score"].as_i64().expect("a score"))
        })
        .collect()
}

#[test]
fn a_pod_s_own_node_gets_the_top_score_and_the_others_none() {
    let index = cluster();
    let own = vec![("fresh".to_owned(), 10), ("empty".to_owned(), 0)];
    assert_eq!(scores(&index, "u-a", &Settings::default()), own);
    // Not launched for: the four terms alone, which give the empty node a score.
    let stranger = scores(&index, "u-y", &Settings::default());
    assert!(stranger
        .iter()
        .any(|(host, score)| host == "empty" && *score > 0));
    // Switched off, the pod is scored as any other.
    let off = Settings {
        prefer_launched_node: false,
        ..Settings::default()
    };
    assert_eq!(scores(&index, "u-a", &off), stranger);
    // Once bound (anywhere), its node is no longer its own.
    index.apply_pods(Change::Upsert(pod("u-a", "empty", 100, 1)));
    assert_eq!(
        scores(&index, "u-a", &Settings::default()),
        scores(&index, "u-y", &Settings::default())
    );
}

#[test]
fn prioritize_says_whether_the_pod_could_be_steered_to_its_own_node() {
    let index = cluster();
    let steering = |uid: &str, settings: &Settings| {
        let body = asking(uid, "100m", None);
        answer::prioritize_steering(&body, &index, settings, NOW)
            .expect("answered")
            .1
    };
    // u-a's own node `fresh` is a candidate.
    assert_eq!(steering("u-a", &Settings::default()), Steering::OwnNode);
    // u-x's node is still on its way: not among the candidates.
    assert_eq!(
        steering("u-x", &Settings::default()),
        Steering::OwnNodeAbsent
    );
    // u-y had no node launched for it.
    assert_eq!(
        steering("u-y", &Settings::default()),
        Steering::NotLaunchedFor
    );
    // Steering switched off steers nobody.
    let off = Settings {
        prefer_launched_node: false,
        ..Settings::default()
    };
    assert_eq!(steering("u-a", &off), Steering::NotLaunchedFor);
}

/// [`cluster`], with `claim-coming` created 5 s before `NOW`: its node is on
/// its way.
fn cluster_with_a_node_on_its_way(initialized: bool) -> Index {
    let index = cluster();
    index.apply_claims(Change::Upsert(ClaimFacts {
        node_name: None,
        provider_id: Some("aws:///us-east-1a/i-coming".into()),
        reserved: reserved(4000, &["u-x", "u-r", "u-d", "u-a"]),
        created: Some(NOW - 5),
        initialized,
        ..claim("claim-coming", "")
    }));
    index
}

/// Whether `fresh` turns the pod away, with the default settings (no held
/// room by node age; pods await a node on its way for 60 s).
fn kept_off_fresh(index: &Index, body: &[u8], now: i64) -> bool {
    let answer = answer::filter(body, index, &Settings::default(), now).expect("answered");
    let reply: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let passed: Vec<String> = serde_json::from_value(reply["NodeNames"].clone()).expect("names");
    assert!(passed.contains(&"empty".to_owned()), "empty holds nothing");
    match reply["FailedNodes"]["fresh"].as_str() {
        Some(message) => {
            assert_eq!(message, Reason::Reserved.message());
            true
        }
        None => false,
    }
}

#[test]
fn a_pod_whose_node_is_on_its_way_is_kept_off_room_held_for_others_until_it_opens() {
    let coming = cluster_with_a_node_on_its_way(false);
    let waiting = asking("u-x", "100m", None);
    assert!(kept_off_fresh(&coming, &waiting, NOW));
    // Its own node: never kept off. No node launched for it: never kept off.
    assert!(!kept_off_fresh(&coming, &asking("u-a", "100m", None), NOW));
    assert!(!kept_off_fresh(&coming, &asking("u-y", "100m", None), NOW));
    assert!(!kept_off_fresh(
        &coming,
        &asking("u-d", "100m", Some("DaemonSet")),
        NOW
    ));
    // The bound: 60 s after the claim's creation.
    assert!(kept_off_fresh(&coming, &waiting, NOW + 54));
    assert!(!kept_off_fresh(&coming, &waiting, NOW + 55));
    // Its node opened: the pod may go anywhere (the scheduler may refuse it
    // there for its spread or affinity).
    let opened = cluster_with_a_node_on_its_way(true);
    assert!(!kept_off_fresh(&opened, &waiting, NOW));
    // Switched off.
    let off = Settings {
        await_launched_node_for: std::time::Duration::ZERO,
        ..Settings::default()
    };
    let answer = answer::filter(&waiting, &coming, &off, NOW).expect("answered");
    assert_eq!(answer.passed, 2);
}

/// Two open nodes, `n1` and `n2`, each launched for one replica of `rs-a`
/// and one of `rs-b` (`a1`, `b1` on n1; `a2`, `b2` on n2); `n3` is on its
/// way for `c1` of `rs-c` and `a3` of `rs-a`.
fn two_replica_sets() -> Index {
    let index = index();
    for name in ["n1", "n2"] {
        let mut open = node(name, "m5.xlarge", "us-east-1a", CapacityType::Spot);
        open.created = Some(NOW - 300);
        index.apply_nodes(Change::Upsert(open));
    }
    let replicas = |claim: &str, node: &str, pods: &[(&str, &str)]| ClaimFacts {
        reserved: Some(ReservedRoom {
            requests: Resources {
                cpu_millis: 1000 * pods.len() as u64,
                memory_bytes: GIB * pods.len() as u64,
                pods: pods.len() as u64,
            },
            pods: pods.iter().map(|(p, _)| p.to_string()).collect(),
            groups: pods.iter().map(|(_, g)| g.to_string()).collect(),
        }),
        created: Some(NOW - 5),
        initialized: !node.is_empty(),
        ..claim_of(claim, node)
    };
    index.apply_claims(Change::Upsert(replicas(
        "c-n1",
        "n1",
        &[("a1", "rs-a"), ("b1", "rs-b")],
    )));
    index.apply_claims(Change::Upsert(replicas(
        "c-n2",
        "n2",
        &[("a2", "rs-a"), ("b2", "rs-b")],
    )));
    index.apply_claims(Change::Upsert(ClaimFacts {
        provider_id: Some("aws:///us-east-1a/i-n3".into()),
        ..replicas("c-n3", "", &[("c1", "rs-c"), ("a3", "rs-a")])
    }));
    index
}

fn claim_of(name: &str, node: &str) -> ClaimFacts {
    ClaimFacts {
        node_name: (!node.is_empty()).then(|| node.to_owned()),
        ..claim(name, node)
    }
}

/// A replica `uid` of the ReplicaSet `rs`, asked about `nodes`.
fn replica(uid: &str, rs: &str, nodes: &[&str]) -> Vec<u8> {
    let pod = json!({
        "metadata": {"uid": uid, "namespace": "ns", "name": uid, "ownerReferences": [
            {"kind": "ReplicaSet", "name": rs, "uid": rs, "controller": true}]},
        "spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}
    });
    serde_json::to_vec(&json!({"Pod": pod, "NodeNames": nodes})).expect("json")
}

fn steered(index: &Index, body: &[u8]) -> (Vec<(String, i64)>, Steering) {
    let (reply, steering) =
        answer::prioritize_steering(body, index, &Settings::default(), NOW).expect("answered");
    let reply: Value = serde_json::from_slice(&reply).expect("JSON");
    let scores = reply
        .as_array()
        .expect("an array of HostPriority")
        .iter()
        .map(|h| {
            (
                h["Host"].as_str().unwrap_or("").to_owned(),
                h["Score"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    (scores, steering)
}

#[test]
fn a_replica_refused_its_own_node_is_steered_to_a_slot_of_its_set_and_the_other_takes_its_own() {
    let index = two_replica_sets();
    // a1's own node n1 is not a candidate (the scheduler refused it, say
    // for its zone spread): n2, holding a2's slot, is the one to take.
    let (scores, steering) = steered(&index, &replica("a1", "rs-a", &["n2", "other"]));
    assert_eq!(steering, Steering::StandIn);
    assert_eq!(scores, [("n2".to_owned(), 10), ("other".to_owned(), 0)]);
    // A pod of another set finds no slot of its own there.
    let (_, steering) = steered(&index, &replica("c1", "rs-c", &["n2", "other"]));
    assert_eq!(steering, Steering::OwnNodeAbsent);
    // a1 lands on n2: a2's slot moves to n1, and a2 is steered there.
    index.apply_pods(Change::Upsert(PodFacts {
        group: "rs-a".into(),
        ..pod("a1", "n2", 1000, 1)
    }));
    let (scores, steering) = steered(&index, &replica("a2", "rs-a", &["n1", "other"]));
    assert_eq!(steering, Steering::StandIn);
    assert_eq!(scores, [("n1".to_owned(), 10), ("other".to_owned(), 0)]);
    // Its own node n2 among the candidates, its slot there taken by a1:
    // a2 takes the one a1 left on n1 and leaves n2's room to b2.
    let (scores, steering) = steered(&index, &replica("a2", "rs-a", &["n1", "n2"]));
    assert_eq!(steering, Steering::StandIn);
    assert_eq!(scores, [("n1".to_owned(), 10), ("n2".to_owned(), 0)]);
    // With no other slot of its set among the candidates, its own node
    // still gets the top score.
    let (scores, steering) = steered(&index, &replica("a2", "rs-a", &["n2", "other"]));
    assert_eq!(steering, Steering::OwnNodeTaken);
    assert_eq!(scores, [("n2".to_owned(), 10), ("other".to_owned(), 0)]);
    // b2's slot on n2 is open: b2's own node is Own to it.
    let (_, steering) = steered(&index, &replica("b2", "rs-b", &["n2"]));
    assert_eq!(steering, Steering::OwnNode);
}

#[test]
fn a_replica_awaiting_its_node_may_take_an_open_slot_of_its_set_and_no_other() {
    let index = two_replica_sets();
    let passes = |uid: &str, rs: &str| {
        let answer = answer::filter(
            &replica(uid, rs, &["n1"]),
            &index,
            &Settings::default(),
            NOW,
        )
        .expect("answered");
        answer.passed == 1
    };
    // a3 and c1 wait for n3; n1 holds slots of rs-a and rs-b.
    assert!(passes("a3", "rs-a"), "a3 may stand in for a1");
    assert!(!passes("c1", "rs-c"), "c1 is kept off room held for others");
    // a1 on n2 and a2 on n1: n1's slot of rs-a is filled, and a3 is kept
    // off the room n1 still holds for b1.
    index.apply_pods(Change::Upsert(PodFacts {
        group: "rs-a".into(),
        ..pod("a1", "n2", 1000, 1)
    }));
    index.apply_pods(Change::Upsert(PodFacts {
        group: "rs-a".into(),
        ..pod("a2", "n1", 1000, 1)
    }));
    assert!(!passes("a3", "rs-a"));
}

#[test]
fn a_replica_steered_to_a_slot_takes_it_before_its_bind_and_the_next_goes_elsewhere() {
    let index = two_replica_sets();
    let pencilling = Settings {
        pencil_for: std::time::Duration::from_secs(10),
        ..Settings::default()
    };
    let ask = |uid: &str, nodes: &[&str], at: i64| {
        let (reply, steering) =
            answer::prioritize_steering(&replica(uid, "rs-a", nodes), &index, &pencilling, at)
                .expect("answered");
        let reply: Value = serde_json::from_slice(&reply).expect("JSON");
        let top: Vec<String> = reply
            .as_array()
            .expect("an array of HostPriority")
            .iter()
            .filter(|h| h["Score"].as_i64() == Some(10))
            .map(|h| h["Host"].as_str().unwrap_or("").to_owned())
            .collect();
        (top, steering)
    };
    // a3's node n3 is still on its way; n1 and n2 each hold a slot of rs-a
    // and score alike. a3 is steered to one of them alone, the first.
    assert_eq!(
        ask("a3", &["n1", "n2", "other"], NOW),
        (vec!["n1".to_owned()], Steering::StandIn)
    );
    // Before a3's bind is seen, a2 (its own n2 not a candidate) finds n1's
    // slot taken; without the pencil it would be steered there too.
    assert_eq!(
        ask("a2", &["n1", "other"], NOW),
        (vec![], Steering::OwnNodeAbsent)
    );
    assert_eq!(
        ask("a3", &["n1", "n2"], NOW),
        (vec!["n1".to_owned()], Steering::StandIn),
        "asked again, a3 is not kept off by its own pencil"
    );
    // a3's bind is never seen: its pencil expires and the slot opens.
    assert_eq!(
        ask("a2", &["n1", "other"], NOW + 11),
        (vec!["n1".to_owned()], Steering::StandIn)
    );
}
