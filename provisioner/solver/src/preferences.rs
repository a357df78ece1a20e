//! Preferred node affinity, as Karpenter honours it: each pod's heaviest
//! preferred term is solved as if required; a pod that nothing can take
//! with it drops it and is solved again with the next heaviest, until it
//! fits or has no preference left. Only the pods that could not be placed
//! relax, so a solve takes at most one round per preference of the pod
//! that has most.

use std::borrow::Cow;

use crate::model::{NodeSelectorTerms, PendingPod, PreferredTerm};
use crate::{Input, Plan};

/// Rounds after which every preference left is dropped at once: a pod
/// with more preferred terms than this is rare, and each round is a solve.
const MAX_ROUNDS: usize = 8;

/// Solves with preferences, relaxing them round by round; `solve_required`
/// sees only required constraints.
pub(crate) fn solve_relaxing(input: &Input, solve_required: impl Fn(&Input) -> Plan) -> Plan {
    if input.pods.iter().all(|p| p.preferred_affinity.is_empty()) {
        return solve_required(input);
    }
    let by_key: std::collections::HashMap<&str, usize> = input
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key.as_str(), i))
        .collect();
    let mut dropped = vec![0usize; input.pods.len()];
    let mut round = 0;
    loop {
        let last = round == MAX_ROUNDS;
        let pods: Vec<PendingPod> = input
            .pods
            .iter()
            .zip(&dropped)
            .map(|(pod, dropped)| with_preference(pod, if last { usize::MAX } else { *dropped }))
            .collect();
        let plan = solve_required(&Input {
            pods: &pods,
            ..*input
        });
        let mut relaxed = false;
        for (key, _) in &plan.unschedulable {
            let Some(&i) = by_key.get(key.as_str()) else {
                continue;
            };
            if dropped[i] < input.pods[i].preferred_affinity.len() {
                dropped[i] += 1;
                relaxed = true;
            }
        }
        if !relaxed || last {
            return plan;
        }
        round += 1;
    }
}

/// `pod` with, of its preferred terms heaviest first, only the one after
/// the first `dropped` (none once all are dropped).
pub(crate) fn with_preference(pod: &PendingPod, dropped: usize) -> PendingPod {
    let mut order: Vec<&PreferredTerm> = pod.preferred_affinity.iter().collect();
    // Heaviest first; equal weights keep the pod's order.
    order.sort_by_key(|t| std::cmp::Reverse(t.weight));
    let mut out = pod.clone();
    out.preferred_affinity = order
        .get(dropped)
        .map(|t| (*t).clone())
        .into_iter()
        .collect();
    out
}

/// The terms a pod is placed by: its required terms, each joined by every
/// preferred term it still has (a preference alone is the one term).
/// Spread domains are not measured by these, only by the required ones.
pub(crate) fn placement_terms(pod: &PendingPod) -> Cow<'_, NodeSelectorTerms> {
    if pod.preferred_affinity.is_empty() {
        return Cow::Borrowed(&pod.required_affinity);
    }
    let preferred = pod
        .preferred_affinity
        .iter()
        .flat_map(|t| t.requirements.iter().cloned());
    if pod.required_affinity.is_empty() {
        return Cow::Owned(vec![preferred.collect()]);
    }
    let terms = pod
        .required_affinity
        .iter()
        .map(|term| term.iter().cloned().chain(preferred.clone()).collect())
        .collect();
    Cow::Owned(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Operator, Requirement};

    fn zone(value: &str) -> Requirement {
        Requirement {
            key: "topology.kubernetes.io/zone".into(),
            operator: Operator::In,
            values: vec![value.into()],
            min_values: None,
        }
    }

    #[test]
    fn preferences_join_every_required_term_heaviest_first() {
        let mut pod = crate::workload::blank_pod(0, 100, 100);
        pod.required_affinity = vec![vec![zone("x")], vec![zone("y")]];
        pod.preferred_affinity = vec![
            PreferredTerm {
                weight: 1,
                requirements: vec![zone("light")],
            },
            PreferredTerm {
                weight: 9,
                requirements: vec![zone("heavy")],
            },
        ];
        let first = with_preference(&pod, 0);
        assert_eq!(first.required_affinity, pod.required_affinity);
        assert_eq!(
            *placement_terms(&first),
            vec![
                vec![zone("x"), zone("heavy")],
                vec![zone("y"), zone("heavy")]
            ]
        );
        let second = with_preference(&pod, 1);
        assert_eq!(placement_terms(&second)[0], vec![zone("x"), zone("light")]);
        let none = with_preference(&pod, 2);
        assert_eq!(*placement_terms(&none), pod.required_affinity);
        let mut free = with_preference(&pod, 0);
        free.required_affinity.clear();
        assert_eq!(
            *placement_terms(&free),
            vec![vec![zone("heavy")]],
            "with no required terms, the preference is the one term"
        );
    }
}
