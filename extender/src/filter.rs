//! The filter decision: which of the scheduler's feasible nodes must not
//! get a new pod, and why. Pure: plain facts in, a verdict out.
//!
//! A node is rejected when, in this order of precedence:
//! 1. it is being deleted (`metadata.deletionTimestamp`);
//! 2. it carries the `spotwright.io/disrupted` taint, whatever its effect;
//! 3. its NodeClaim is `Disrupting`;
//! 4. its NodeClaim is `Drifted`;
//! 5. it is not Ready;
//! 6. it is cordoned (`spec.unschedulable`);
//! 7. it holds room for the pods its NodeClaim was launched for
//!    ([`holds_room`]), and the pod is not one of them but has a node of its
//!    own on the way.
//!
//! The first four mean the node is on its way out: no preemption can change
//! that, so they go to `FailedAndUnresolvableNodes`, and the scheduler does
//! not consider evicting pods there to make room. NotReady and cordoned
//! nodes may come back, so they go to `FailedNodes`. (Preemption does not
//! evict anything for them either: the scheduler's dry run finds that the
//! pod already fits, so no victim is chosen.)
//!
//! A node the index has not seen yet passes: the extender has no opinion.

use crate::facts::{ClaimFacts, NodeFacts};

/// How many [`Reason`]s there are.
pub const REASONS: usize = 7;

/// Why a node is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Deleting,
    DisruptedTaint,
    Disrupting,
    Drifted,
    NotReady,
    Unschedulable,
    Reserved,
}

impl Reason {
    pub const ALL: [Reason; REASONS] = [
        Reason::Deleting,
        Reason::DisruptedTaint,
        Reason::Disrupting,
        Reason::Drifted,
        Reason::NotReady,
        Reason::Unschedulable,
        Reason::Reserved,
    ];

    /// The `reason` label of `spotwright_extender_filtered_nodes_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Deleting => "deleting",
            Reason::DisruptedTaint => "disrupted-taint",
            Reason::Disrupting => "disrupting",
            Reason::Drifted => "drifted",
            Reason::NotReady => "not-ready",
            Reason::Unschedulable => "unschedulable",
            Reason::Reserved => "reserved",
        }
    }

    /// The human reason the scheduler shows in the pod's events.
    pub fn message(self) -> &'static str {
        match self {
            Reason::Deleting => "spotwright: node is being deleted",
            Reason::DisruptedTaint => {
                "spotwright: node has taint spotwright.io/disrupted (being replaced or removed)"
            }
            Reason::Disrupting => "spotwright: node's NodeClaim is Disrupting",
            Reason::Drifted => "spotwright: node's NodeClaim is Drifted (it will be replaced)",
            Reason::NotReady => "spotwright: node is not Ready",
            Reason::Unschedulable => "spotwright: node is cordoned (spec.unschedulable)",
            Reason::Reserved => {
                "spotwright: node's free room is held for the pods it was launched for"
            }
        }
    }

    /// Whether preemption cannot help: the node is on its way out.
    pub fn unresolvable(self) -> bool {
        matches!(
            self,
            Reason::Deleting | Reason::DisruptedTaint | Reason::Disrupting | Reason::Drifted
        )
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The verdict on one node the index knows.
pub fn check(node: &NodeFacts, claim: Option<&ClaimFacts>) -> Option<Reason> {
    if node.deleting {
        Some(Reason::Deleting)
    } else if node.disrupted_taint {
        Some(Reason::DisruptedTaint)
    } else if claim.is_some_and(|c| c.disrupting) {
        Some(Reason::Disrupting)
    } else if claim.is_some_and(|c| c.drifted) {
        Some(Reason::Drifted)
    } else if !node.ready {
        Some(Reason::NotReady)
    } else if node.unschedulable {
        Some(Reason::Unschedulable)
    } else {
        None
    }
}

/// Whether a young node turns a pod away: it still holds room (`held`
/// pods, above zero) for pods its NodeClaim was launched for and that
/// are not bound yet,
/// and the pod is not one of them but has a node of its own on the way (the
/// caller passes zero otherwise). Only while the node is younger than
/// `window` at `now`. The scheduler places pods in its own order and
/// spreads them over the emptiest nodes; without this a burst's first nodes
/// fill with pods solved onto others, and the pods they were launched for
/// (whose anti-affinity, spread or size the solver matched to that node)
/// find no place and need further nodes.
pub fn holds_room(node: &NodeFacts, held: u64, window: Window) -> Option<Reason> {
    (held > 0 && window.covers(node.created)).then_some(Reason::Reserved)
}

/// Whether a node turns a pod away because the pod's own node is still on
/// its way (`awaiting`) and this node holds room (`held` pods, above zero)
/// for pods of its own. The scheduler opens a burst's nodes one Node
/// update at a time and places pods as they come: a pod whose node is not
/// open yet would take room planned for others, who then take room
/// planned for others in turn, and the last need new nodes. Once its own
/// node is open (or never came) the pod may go anywhere, so a pod the
/// scheduler refuses there (its spread or affinity seen differently) is not
/// held.
pub fn awaits_own_node(held: u64, awaiting: bool) -> Option<Reason> {
    (awaiting && held > 0).then_some(Reason::Reserved)
}

/// How long held room lasts: nodes created less than `seconds` before
/// `now` (Unix seconds) hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub now: i64,
    pub seconds: i64,
}

impl Window {
    /// Whether a node created at `created` still holds room.
    pub fn covers(&self, created: Option<i64>) -> bool {
        created.is_some_and(|created| self.now < created.saturating_add(self.seconds))
    }
}

/// The nodes sorted into the three lists of a filter reply, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filtered<T> {
    pub passed: Vec<T>,
    pub failed: Vec<(T, Reason)>,
    pub unresolvable: Vec<(T, Reason)>,
    /// Rejections per reason, indexed by [`Reason::index`].
    pub counts: [u64; REASONS],
}

impl<T> Default for Filtered<T> {
    fn default() -> Self {
        Filtered {
            passed: Vec::new(),
            failed: Vec::new(),
            unresolvable: Vec::new(),
            counts: [0; REASONS],
        }
    }
}

/// Sorts each node (with its verdict, `None` to pass) into its list.
/// Every node of the input lands in exactly one list, and nothing else does.
pub fn partition<T>(verdicts: impl IntoIterator<Item = (T, Option<Reason>)>) -> Filtered<T> {
    let verdicts = verdicts.into_iter();
    let mut out = Filtered {
        passed: Vec::with_capacity(verdicts.size_hint().0),
        ..Filtered::default()
    };
    for (node, verdict) in verdicts {
        match verdict {
            None => out.passed.push(node),
            Some(reason) => {
                out.counts[reason.index()] += 1;
                if reason.unresolvable() {
                    out.unresolvable.push((node, reason));
                } else {
                    out.failed.push((node, reason));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> NodeFacts {
        NodeFacts {
            name: "n".into(),
            ready: true,
            ..NodeFacts::default()
        }
    }

    #[test]
    fn only_an_awaiting_pod_is_kept_off_and_only_where_room_is_held() {
        assert_eq!(awaits_own_node(2, true), Some(Reason::Reserved));
        assert_eq!(awaits_own_node(2, false), None);
        assert_eq!(awaits_own_node(0, true), None);
    }

    fn claim(drifted: bool, disrupting: bool) -> ClaimFacts {
        ClaimFacts {
            drifted,
            disrupting,
            ..ClaimFacts::default()
        }
    }

    #[test]
    fn a_healthy_node_passes_with_or_without_a_claim() {
        assert_eq!(check(&healthy(), None), None);
        assert_eq!(check(&healthy(), Some(&claim(false, false))), None);
    }

    #[test]
    fn each_condition_rejects_with_its_reason() {
        type Change = fn(&mut NodeFacts);
        let cases: [(Change, Reason); 4] = [
            (|n| n.deleting = true, Reason::Deleting),
            (|n| n.disrupted_taint = true, Reason::DisruptedTaint),
            (|n| n.ready = false, Reason::NotReady),
            (|n| n.unschedulable = true, Reason::Unschedulable),
        ];
        for (change, reason) in cases {
            let mut node = healthy();
            change(&mut node);
            assert_eq!(check(&node, None), Some(reason));
        }
        assert_eq!(
            check(&healthy(), Some(&claim(true, false))),
            Some(Reason::Drifted)
        );
        assert_eq!(
            check(&healthy(), Some(&claim(false, true))),
            Some(Reason::Disrupting)
        );
    }

    #[test]
    fn the_way_out_wins_over_transient_states() {
        let node = NodeFacts {
            deleting: true,
            ready: false,
            unschedulable: true,
            disrupted_taint: true,
            ..healthy()
        };
        assert_eq!(
            check(&node, Some(&claim(true, true))),
            Some(Reason::Deleting)
        );
        let node = NodeFacts {
            ready: false,
            ..healthy()
        };
        assert_eq!(
            check(&node, Some(&claim(true, false))),
            Some(Reason::Drifted)
        );
    }

    #[test]
    fn only_nodes_on_their_way_out_are_unresolvable() {
        let unresolvable: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| r.unresolvable())
            .collect();
        assert_eq!(
            unresolvable,
            [
                Reason::Deleting,
                Reason::DisruptedTaint,
                Reason::Disrupting,
                Reason::Drifted
            ]
        );
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(!reason.message().contains('\n'));
        }
    }

    #[test]
    fn partition_sorts_and_counts() {
        let out = partition([
            ("a", None),
            ("b", Some(Reason::NotReady)),
            ("c", Some(Reason::Drifted)),
            ("d", None),
            ("e", Some(Reason::Drifted)),
        ]);
        assert_eq!(out.passed, ["a", "d"]);
        assert_eq!(out.failed, [("b", Reason::NotReady)]);
        assert_eq!(
            out.unresolvable,
            [("c", Reason::Drifted), ("e", Reason::Drifted)]
        );
        assert_eq!(out.counts[Reason::Drifted.index()], 2);
        assert_eq!(out.counts.iter().sum::<u64>(), 3);
    }

    const AT_10S: Window = Window {
        now: 1_010,
        seconds: 90,
    };

    fn young() -> NodeFacts {
        NodeFacts {
            created: Some(1_000),
            ..healthy()
        }
    }

    #[test]
    fn a_young_node_holding_room_turns_the_pod_away() {
        assert_eq!(holds_room(&young(), 1, AT_10S), Some(Reason::Reserved));
        assert_eq!(
            holds_room(&young(), 0, AT_10S),
            None,
            "all its pods are bound"
        );
    }

    #[test]
    fn held_room_is_let_go_when_the_window_ends() {
        let held = 1;
        let at = |now| Window { now, seconds: 90 };
        assert_eq!(
            holds_room(&young(), held, at(1_089)),
            Some(Reason::Reserved)
        );
        assert_eq!(holds_room(&young(), held, at(1_090)), None);
        let unknown_age = NodeFacts {
            created: None,
            ..young()
        };
        assert_eq!(holds_room(&unknown_age, held, at(1_010)), None);
    }

    proptest::proptest! {
        #[test]
        fn held_room_turns_away_exactly_while_young_and_holding(
            created in proptest::option::of(0i64..2_000),
            now in 0i64..2_000,
            seconds in 0i64..200,
            held in 0u64..3,
        ) {
            let node = NodeFacts { created, ..healthy() };
            let verdict = holds_room(&node, held, Window { now, seconds });
            let young = created.is_some_and(|c| now < c + seconds);
            let holding = held > 0;
            proptest::prop_assert_eq!(verdict, (young && holding).then_some(Reason::Reserved));
        }
    }
}
