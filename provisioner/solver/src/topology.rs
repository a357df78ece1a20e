//! Topology spread and hostname anti-affinity bookkeeping. Selectors are
//! interned per namespace; each node keeps how many of its pods match each
//! selector, and each selector keeps a count per zone.

use std::collections::{BTreeMap, HashMap};

use crate::model::LabelSelector;
use crate::requirements::label_selector_matches;

pub(crate) type SelectorId = u32;

/// Selectors of one solve, each scoped to a namespace.
#[derive(Default)]
pub(crate) struct Selectors<'a> {
    list: Vec<(&'a str, &'a LabelSelector)>,
    index: HashMap<(&'a str, &'a LabelSelector), SelectorId>,
    by_namespace: HashMap<&'a str, Vec<SelectorId>>,
}

impl<'a> Selectors<'a> {
    pub fn intern(&mut self, namespace: &'a str, selector: &'a LabelSelector) -> SelectorId {
        if let Some(id) = self.index.get(&(namespace, selector)) {
            return *id;
        }
        let id = self.list.len() as SelectorId;
        self.list.push((namespace, selector));
        self.index.insert((namespace, selector), id);
        self.by_namespace.entry(namespace).or_default().push(id);
        id
    }

    pub fn find(&self, namespace: &str, selector: &LabelSelector) -> Option<SelectorId> {
        self.index.get(&(namespace, selector)).copied()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The selectors a pod with these labels in this namespace matches.
    pub fn matching(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<SelectorId> {
        self.by_namespace
            .get(namespace)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|id| label_selector_matches(self.list[*id as usize].1, labels))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Per node: matching-pod counts per selector, and the selectors its pods
/// hold hostname anti-affinity against.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeTally {
    counts: Vec<(SelectorId, u32)>,
    /// Selectors held as anti-affinity by pods here, with how many pods hold each.
    anti_held: Vec<(SelectorId, u32)>,
}

fn bump(list: &mut Vec<(SelectorId, u32)>, selector: SelectorId) {
    match list.iter_mut().find(|(s, _)| *s == selector) {
        Some((_, n)) => *n += 1,
        None => list.push((selector, 1)),
    }
}

fn drop_one(list: &mut Vec<(SelectorId, u32)>, selector: SelectorId) {
    if let Some(position) = list.iter().position(|(s, _)| *s == selector) {
        list[position].1 -= 1;
        if list[position].1 == 0 {
            list.swap_remove(position);
        }
    }
}

impl NodeTally {
    pub fn count(&self, selector: SelectorId) -> u32 {
        self.counts
            .iter()
            .find(|(s, _)| *s == selector)
            .map_or(0, |(_, n)| *n)
    }

    pub fn add_pod(&mut self, matches: &[SelectorId], anti: &[SelectorId]) {
        for selector in matches {
            bump(&mut self.counts, *selector);
        }
        for selector in anti {
            bump(&mut self.anti_held, *selector);
        }
    }

    pub fn remove_pod(&mut self, matches: &[SelectorId], anti: &[SelectorId]) {
        for selector in matches {
            drop_one(&mut self.counts, *selector);
        }
        for selector in anti {
            drop_one(&mut self.anti_held, *selector);
        }
    }

    /// A pod with `anti` anti-affinity selectors and matching `matches` may
    /// join: no pod here matches its selectors, and it matches none of theirs.
    pub fn anti_affinity_allows(&self, matches: &[SelectorId], anti: &[SelectorId]) -> bool {
        anti.iter().all(|s| self.count(*s) == 0)
            && !matches
                .iter()
                .any(|s| self.anti_held.iter().any(|(held, _)| held == s))
    }

    /// Hostname spread: every node is its own domain and a new, empty node
    /// is always a possible domain, so the global minimum is 0.
    pub fn hostname_spread_allows(&self, spread: &[(SelectorId, u32)]) -> bool {
        spread
            .iter()
            .all(|(s, max_skew)| self.count(*s) < *max_skew)
    }
}

/// Matching-pod counts per selector per zone.
pub(crate) struct ZoneCounts {
    counts: Vec<Vec<u32>>,
    /// Per selector: whether any pod matching it runs or was placed, in any
    /// zone or none (pod affinity's "no pod matches yet" exception).
    seen: Vec<bool>,
}

impl ZoneCounts {
    pub fn new(selectors: usize, zones: usize) -> Self {
        ZoneCounts {
            counts: vec![vec![0; zones]; selectors],
            seen: vec![false; selectors],
        }
    }

    /// Pods matching `matches` run or were placed somewhere.
    pub fn see(&mut self, matches: &[SelectorId]) {
        for s in matches {
            if let Some(seen) = self.seen.get_mut(*s as usize) {
                *seen = true;
            }
        }
    }

    pub fn seen(&self, selector: SelectorId) -> bool {
        self.seen.get(selector as usize).copied().unwrap_or(false)
    }

    pub fn add(&mut self, matches: &[SelectorId], zone: usize) {
        for s in matches {
            if let Some(c) = self
                .counts
                .get_mut(*s as usize)
                .and_then(|z| z.get_mut(zone))
            {
                *c += 1;
            }
        }
    }

    pub fn remove(&mut self, matches: &[SelectorId], zone: usize) {
        for s in matches {
            if let Some(c) = self
                .counts
                .get_mut(*s as usize)
                .and_then(|z| z.get_mut(zone))
            {
                *c = c.saturating_sub(1);
            }
        }
    }

    pub fn count(&self, selector: SelectorId, zone: usize) -> u32 {
        self.counts
            .get(selector as usize)
            .and_then(|z| z.get(zone))
            .copied()
            .unwrap_or(0)
    }

    /// Placing one more matching pod in `zone` keeps the skew against the
    /// least-loaded eligible zone within `max_skew`.
    pub fn allows(&self, spread: &[(SelectorId, u32)], eligible: u64, zone: usize) -> bool {
        spread.iter().all(|(s, max_skew)| {
            let Some(per_zone) = self.counts.get(*s as usize) else {
                return true;
            };
            let min = per_zone
                .iter()
                .enumerate()
                .filter(|(z, _)| eligible & (1 << z) != 0)
                .map(|(_, n)| *n)
                .min()
                .unwrap_or(0);
            self.count(*s, zone) < min + max_skew
        })
    }

    /// Sum of the counts in `zone` over these selectors: lower is the better zone.
    pub fn load(&self, spread: &[(SelectorId, u32)], zone: usize) -> u32 {
        spread.iter().map(|(s, _)| self.count(*s, zone)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Operator, Requirement};

    fn app(value: &str) -> LabelSelector {
        LabelSelector {
            requirements: vec![Requirement {
                key: "app".into(),
                operator: Operator::In,
                values: vec![value.into()],
                min_values: None,
            }],
        }
    }

    #[test]
    fn selectors_are_scoped_to_their_namespace() {
        let web = app("web");
        let mut selectors = Selectors::default();
        let a = selectors.intern("a", &web);
        let b = selectors.intern("b", &web);
        assert_ne!(a, b);
        assert_eq!(selectors.intern("a", &web), a);
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert_eq!(selectors.matching("a", &labels), vec![a]);
        assert_eq!(selectors.matching("c", &labels), Vec::<SelectorId>::new());
    }

    #[test]
    fn anti_affinity_is_symmetric() {
        let mut tally = NodeTally::default();
        tally.add_pod(&[], &[7]);
        assert!(
            !tally.anti_affinity_allows(&[7], &[]),
            "the resident's anti-affinity refuses a matching pod"
        );
        assert!(tally.anti_affinity_allows(&[3], &[]));
        tally.add_pod(&[3], &[]);
        assert!(
            !tally.anti_affinity_allows(&[], &[3]),
            "the newcomer's anti-affinity refuses the node"
        );
        tally.remove_pod(&[], &[7]);
        assert!(tally.anti_affinity_allows(&[7], &[]), "the resident left");
    }

    #[test]
    fn zone_skew_is_measured_against_the_emptiest_eligible_zone() {
        let mut zones = ZoneCounts::new(1, 3);
        zones.add(&[0], 0);
        assert!(!zones.allows(&[(0, 1)], 0b111, 0));
        assert!(zones.allows(&[(0, 1)], 0b111, 1));
        assert!(
            zones.allows(&[(0, 1)], 0b001, 0),
            "zone 0 is the only domain"
        );
        assert!(zones.allows(&[(0, 2)], 0b111, 0));
    }

    #[test]
    fn hostname_spread_caps_matching_pods_per_node() {
        let mut tally = NodeTally::default();
        assert!(tally.hostname_spread_allows(&[(1, 2)]));
        tally.add_pod(&[1], &[]);
        assert!(tally.hostname_spread_allows(&[(1, 2)]));
        tally.add_pod(&[1], &[]);
        assert!(!tally.hostname_spread_allows(&[(1, 2)]));
    }
}
