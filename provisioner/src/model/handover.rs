//! Hand-overs between replicas: the provisioner's side of the extender's
//! slots (docs/extender.md, "Slots of one controller").
//!
//! A replica the scheduler refused on the node launched for it may take a
//! slot of its own group on another new node. One replica planned there is
//! then crowded off, while a slot stands open on the node the first one
//! left (or, down a chain of such moves, on some other). Left alone, the
//! replica crowded off counts as having lost its room and is solved again:
//! a new node for a pod whose slot stands empty. So a pending replica whose
//! own claim has no open slot of its group left is nominated for a claim
//! that has one.

use std::collections::{BTreeMap, HashMap};

/// A claim's slots of one group: how many pods of the group it was launched
/// for, and how many of the group are bound to its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSlots {
    pub claim: String,
    pub group: String,
    pub planned: u32,
    pub bound: u32,
}

/// A nominated pod still pending: its group and the claim it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub pod: String,
    pub group: String,
    pub claim: String,
}

/// A pending pod and the claim it is nominated for from now on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    pub pod: String,
    pub claim: String,
}

/// Per group, the waiting pods keep their own claim while it has open
/// slots (launched for minus bound there), in the order of their keys; the
/// rest are handed the open slots left on other claims, in the order of
/// the claims' names, as far as they go.
pub fn hand_overs(slots: &[GroupSlots], waiting: &[Waiting]) -> Vec<HandOver> {
    let mut open: HashMap<(&str, &str), u32> = HashMap::new();
    for s in slots {
        *open.entry((&s.group, &s.claim)).or_default() += s.planned.saturating_sub(s.bound);
    }
    let mut by_group: BTreeMap<&str, Vec<&Waiting>> = BTreeMap::new();
    for w in waiting {
        by_group.entry(&w.group).or_default().push(w);
    }
    let mut found = Vec::new();
    for (group, mut pods) in by_group {
        pods.sort_by(|a, b| a.pod.cmp(&b.pod));
        let mut crowded_off = Vec::new();
        for pod in pods {
            match open.get_mut(&(group, pod.claim.as_str())) {
                Some(left) if *left > 0 => *left -= 1,
                _ => crowded_off.push(pod),
            }
        }
        if crowded_off.is_empty() {
            continue;
        }
        let mut elsewhere: Vec<(&str, &mut u32)> = open
            .iter_mut()
            .filter(|((g, _), left)| *g == group && **left > 0)
            .map(|((_, claim), left)| (*claim, left))
            .collect();
        elsewhere.sort_by(|a, b| a.0.cmp(b.0));
        let mut slots_left = elsewhere
            .into_iter()
            .flat_map(|(claim, left)| std::iter::repeat_n(claim, std::mem::take(left) as usize));
        for pod in crowded_off {
            let Some(claim) = slots_left.next() else {
                break;
            };
            found.push(HandOver {
                pod: pod.pod.clone(),
                claim: claim.to_owned(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn slots(claim: &str, group: &str, planned: u32, bound: u32) -> GroupSlots {
        GroupSlots {
            claim: claim.into(),
            group: group.into(),
            planned,
            bound,
        }
    }

    fn waiting(pod: &str, group: &str, claim: &str) -> Waiting {
        Waiting {
            pod: pod.into(),
            group: group.into(),
            claim: claim.into(),
        }
    }

    #[test]
    fn the_replica_crowded_off_gets_the_slot_its_sibling_left() {
        // p (rs-a) was launched for claim-1 and took a slot on claim-2's node.
        let found = hand_overs(
            &[
                slots("claim-1", "rs-a", 1, 0),
                slots("claim-2", "rs-a", 2, 2),
                slots("claim-2", "rs-b", 1, 0),
            ],
            &[
                waiting("ns/q", "rs-a", "claim-2"),
                waiting("ns/other", "rs-b", "claim-2"),
            ],
        );
        assert_eq!(
            found,
            [HandOver {
                pod: "ns/q".into(),
                claim: "claim-1".into()
            }]
        );
    }

    #[test]
    fn down_a_chain_of_moves_the_slot_left_open_is_the_one_handed_over() {
        // p left claim-1 for claim-2's node, r left claim-3 for claim-1's.
        let found = hand_overs(
            &[
                slots("claim-1", "rs-a", 1, 1),
                slots("claim-2", "rs-a", 1, 1),
                slots("claim-3", "rs-a", 1, 0),
            ],
            &[waiting("ns/q", "rs-a", "claim-2")],
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].claim, "claim-3");
    }

    #[test]
    fn a_pod_whose_own_slot_is_open_stays_and_no_slot_goes_to_a_stranger() {
        let found = hand_overs(
            &[
                slots("claim-1", "rs-a", 2, 1),
                slots("claim-2", "rs-b", 3, 0),
            ],
            &[
                waiting("ns/a1", "rs-a", "claim-1"),
                waiting("ns/a2", "rs-a", "claim-1"),
                waiting("ns/gone", "rs-a", "claim-gone"),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
    }

    proptest::proptest! {
        #[test]
        fn pods_are_handed_only_open_slots_of_their_group_and_as_many_as_there_are(
            planned in proptest::collection::vec((0u8..4, 0u32..4, 0u32..5), 0..10),
            pending in proptest::collection::vec(0u8..8, 0..16),
        ) {
            let group_of = |i: u8| format!("rs-{}", i % 2);
            let slots: Vec<GroupSlots> = planned.iter().enumerate()
                .map(|(i, &(g, planned, bound))| GroupSlots {
                    claim: format!("claim-{}", i % 4), group: group_of(g), planned, bound,
                })
                .collect();
            let waiting: Vec<Waiting> = pending.iter().enumerate()
                .map(|(i, &k)| Waiting {
                    pod: format!("ns/p-{i}"), group: group_of(k), claim: format!("claim-{}", k % 5),
                })
                .collect();
            let found = hand_overs(&slots, &waiting);

            let pods: BTreeSet<&str> = found.iter().map(|h| h.pod.as_str()).collect();
            proptest::prop_assert_eq!(pods.len(), found.len(), "a pod handed two slots");
            let open = |group: &str, claim: &str| -> u32 {
                slots.iter().filter(|s| s.group == group && s.claim == claim)
                    .map(|s| s.planned.saturating_sub(s.bound)).sum()
            };
            for group in ["rs-0", "rs-1"] {
                let of_group: Vec<&Waiting> = waiting.iter().filter(|w| w.group == group).collect();
                let claims: BTreeSet<&str> = slots.iter().map(|s| s.claim.as_str())
                    .chain(of_group.iter().map(|w| w.claim.as_str())).collect();
                let mut crowded_off = 0;
                let mut spare = 0;
                for &claim in &claims {
                    let stays = of_group.iter().filter(|w| w.claim == claim).count() as u32;
                    let open = open(group, claim);
                    crowded_off += stays.saturating_sub(open);
                    spare += open.saturating_sub(stays);
                    // No claim is handed more than the slots its own pods leave.
                    let kept = of_group.iter()
                        .filter(|w| w.claim == claim && !pods.contains(w.pod.as_str())).count() as u32;
                    let handed = found.iter()
                        .filter(|h| h.claim == claim && of_group.iter().any(|w| w.pod == h.pod))
                        .count() as u32;
                    proptest::prop_assert!(kept.min(open) + handed <= open, "{} on {}", group, claim);
                }
                let handed = found.iter().filter(|h| of_group.iter().any(|w| w.pod == h.pod)).count();
                proptest::prop_assert_eq!(handed as u32, crowded_off.min(spare), "{}", group);
            }
            for h in &found {
                let w = waiting.iter().find(|w| w.pod == h.pod).expect("a waiting pod");
                proptest::prop_assert!(w.claim != h.claim, "handed its own claim");
                proptest::prop_assert!(open(&w.group, &h.claim) > 0, "no slot of its group there");
            }
        }
    }
}
