//! The room claims already launched hold for the pods a later pass solved
//! onto them.
//!
//! A claim is created holding room for the pods it was launched for (its
//! `spotwright.io/reserved-for` annotation, read by the extender). A pod
//! crowded off its own node is solved again, often onto the free room of
//! another young node of the burst. If that node held room only for its
//! first pods, the extender would turn the pod away there as a stranger
//! while the node holds room (`--hold-room-seconds`), though the solver had
//! counted that room as free: the pod waited for the hold to end. So the
//! reservation follows the pass: the pods solved onto a claim are added to
//! it, and the extender treats them as the claim's own.

use std::collections::HashMap;
use std::sync::Arc;

use spotwright_api::reservation::{self, Reservation};
use spotwright_api::NodeClaim;

use super::claim::node_name;
use super::new_claim::ReservedPod;

/// A claim's reservation with pods added.
#[derive(Clone, Debug)]
pub struct Grown<'a> {
    pub claim: &'a NodeClaim,
    pub reservation: Reservation,
}

/// For each claim `solved_onto` puts pods on, as `(pod key, node name)`
/// with the node named as the solve names it (its Node, or its claim while
/// in flight), and that holds room already: its reservation with those pods
/// added. `pods` gives each pod (`None`: left out). Claims without a
/// readable reservation hold nothing and are left so; claims that gain no
/// pod are left out.
pub fn grown<'a, 'p>(
    solved_onto: &[(String, String)],
    claims: &'a [Arc<NodeClaim>],
    pods: impl Fn(&str) -> Option<ReservedPod<'p>>,
) -> Vec<Grown<'a>> {
    if solved_onto.is_empty() {
        return Vec::new();
    }
    let by_node = claims_by_node(claims);
    // Each claim's reservation as read, and whether a pod was added to it.
    let mut read: Vec<(Grown<'a>, bool)> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (pod_key, node) in solved_onto {
        let (Some(&claim), Some(pod)) = (by_node.get(node.as_str()), pods(pod_key)) else {
            continue;
        };
        let Some(name) = claim.metadata.name.as_deref() else {
            continue;
        };
        let at = match index_of.get(name) {
            Some(&at) => at,
            None => {
                let Some(reservation) = reservation_of(claim) else {
                    continue;
                };
                read.push((Grown { claim, reservation }, false));
                index_of.insert(name, read.len() - 1);
                read.len() - 1
            }
        };
        let (entry, gained) = &mut read[at];
        let requests = pod.requests;
        *gained |= entry.reservation.add(
            pod.uid,
            requests.cpu_millis,
            requests.memory_bytes,
            pod.controller,
        );
    }
    read.into_iter()
        .filter_map(|(grown, gained)| gained.then_some(grown))
        .collect()
}

/// Claims by the name the solve gives their node: the Node's once
/// registered, the claim's own while in flight.
fn claims_by_node(claims: &[Arc<NodeClaim>]) -> HashMap<&str, &NodeClaim> {
    let mut by_node = HashMap::new();
    for claim in claims {
        if let Some(name) = claim.metadata.name.as_deref() {
            by_node.insert(name, claim.as_ref());
        }
        if let Some(node) = node_name(claim) {
            by_node.insert(node, claim.as_ref());
        }
    }
    by_node
}

fn reservation_of(claim: &NodeClaim) -> Option<Reservation> {
    let value = claim
        .metadata
        .annotations
        .as_ref()?
        .get(reservation::ANNOTATION)?;
    Reservation::parse(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spotwright_solver::model::Resources;
    use std::collections::BTreeMap;

    fn claim(name: &str, node: Option<&str>, reserved: Option<&Reservation>) -> Arc<NodeClaim> {
        let mut claim = NodeClaim::new(name, Default::default());
        if let Some(r) = reserved {
            claim.metadata.annotations = Some(BTreeMap::from([(
                reservation::ANNOTATION.to_owned(),
                r.to_annotation(),
            )]));
        }
        claim.status = Some(Default::default());
        if let Some(status) = claim.status.as_mut() {
            status.node_name = node.map(str::to_owned);
        }
        Arc::new(claim)
    }

    fn first_pods() -> Reservation {
        let mut r = Reservation::default();
        r.add("uid-a", 500, 1 << 30, Some("rs-1"));
        r
    }

    static REQUESTS: Resources = Resources {
        cpu_millis: 250,
        memory_bytes: 1 << 29,
        ephemeral_bytes: 0,
        pods: 1,
        extended: Vec::new(),
    };

    fn pod(key: &str) -> Option<ReservedPod<'static>> {
        let uid = match key {
            "ns/b" => "uid-b",
            "ns/c" => "uid-c",
            "ns/a" => "uid-a",
            _ => return None,
        };
        Some(ReservedPod {
            uid,
            requests: &REQUESTS,
            controller: Some("rs-2"),
        })
    }

    fn onto(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn pods_solved_onto_a_claim_holding_room_are_added_to_it() {
        let claims = [
            claim("c-1", Some("node-1"), Some(&first_pods())),
            claim("c-2", None, Some(&first_pods())),
        ];
        let solved = onto(&[("ns/b", "node-1"), ("ns/c", "node-1"), ("ns/c", "c-2")]);
        let grown = grown(&solved, &claims, pod);
        let names: Vec<_> = grown
            .iter()
            .map(|g| g.claim.metadata.name.as_deref())
            .collect();
        assert_eq!(
            names,
            [Some("c-1"), Some("c-2")],
            "by Node, and by claim in flight"
        );
        assert_eq!(grown[0].reservation.pods, ["uid-a", "uid-b", "uid-c"]);
        assert_eq!(grown[0].reservation.groups, ["rs-1", "rs-2", "rs-2"]);
        assert_eq!(grown[0].reservation.cpu_millis, 1000);
        assert_eq!(grown[1].reservation.pods, ["uid-a", "uid-c"]);
    }

    #[test]
    fn claims_holding_nothing_or_gaining_nothing_are_left_out() {
        let claims = [
            claim("c-1", Some("node-1"), None),
            claim("c-2", Some("node-2"), Some(&first_pods())),
        ];
        let solved = onto(&[
            ("ns/b", "node-1"),
            ("ns/a", "node-2"),
            ("ns/unknown", "node-2"),
            ("ns/b", "node-gone"),
        ]);
        assert!(grown(&solved, &claims, pod).is_empty());
    }

    proptest! {
        #[test]
        fn every_claim_written_keeps_its_pods_and_gains_only_the_pods_solved_onto_it(
            targets in proptest::collection::vec((0usize..3, 0usize..3), 0..12),
        ) {
            let keys = ["ns/a", "ns/b", "ns/c"];
            let claims: Vec<_> = (0..3)
                .map(|i| claim(&format!("c-{i}"), Some(&format!("node-{i}")), Some(&first_pods())))
                .collect();
            let solved: Vec<(String, String)> = targets
                .iter()
                .map(|&(p, n)| (keys[p].to_owned(), format!("node-{n}")))
                .collect();
            for g in grown(&solved, &claims, pod) {
                let node = g.claim.status.as_ref().and_then(|s| s.node_name.clone());
                let pods = &g.reservation.pods;
                prop_assert_eq!(&pods[0], "uid-a");
                prop_assert_eq!(g.reservation.groups.len(), pods.len());
                prop_assert!(pods.len() > 1);
                let mut unique = pods.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), pods.len(), "no pod twice");
                for uid in &pods[1..] {
                    let key = keys.iter().find(|k| pod(k).map(|p| p.uid) == Some(uid.as_str()));
                    prop_assert!(solved.iter().any(|(p, n)| Some(p.as_str()) == key.copied()
                        && Some(n) == node.as_ref()), "{} was not solved onto {:?}", uid, node);
                }
            }
        }
    }
}
