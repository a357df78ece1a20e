//! What the packing loop needs to know about each pending pod, computed once.

use std::collections::{BTreeMap, HashMap};

use spotwright_api::keys::{HOSTNAME_LABEL, ZONE_LABEL};

use crate::model::{ExistingNode, PendingPod};
use crate::resources::{Res, ResourceNames};
use crate::topology::{SelectorId, Selectors};

#[derive(Debug)]
pub(crate) struct PodFacts {
    pub class: usize,
    pub requests: Res,
    /// Selectors (spread or anti-affinity, of any pod) this pod matches.
    pub matches: Vec<SelectorId>,
    pub anti: Vec<SelectorId>,
    /// Hard zone spread: `(selector, maxSkew)`.
    pub zone_spread: Vec<(SelectorId, u32)>,
    /// Hard hostname spread: `(selector, maxSkew)`.
    pub hostname_spread: Vec<(SelectorId, u32)>,
    /// Zone anti-affinity: no zone where a pod matches one of these.
    pub zone_anti: Vec<SelectorId>,
    /// Pod affinity: a node (a zone) where a pod matches each of these.
    pub affinity_host: Vec<SelectorId>,
    pub affinity_zone: Vec<SelectorId>,
    /// Soft constraints, honoured only where they cost nothing extra:
    /// preferred hostname anti-affinity, `ScheduleAnyway` spreads.
    pub soft_anti: Vec<SelectorId>,
    pub soft_hostname_spread: Vec<(SelectorId, u32)>,
    pub soft_zone_spread: Vec<(SelectorId, u32)>,
    /// It has pod affinity, or another pod's affinity names it: the cost
    /// passes leave its node whole, so no follower loses its target.
    pub affinity_bound: bool,
    /// Must land on a node whose zone is fixed: it spreads by zone, or a
    /// zone spread counts it.
    pub needs_zone: bool,
    /// A hard constraint the solver cannot honour.
    pub unsupported: Option<String>,
}

impl PodFacts {
    pub fn has_soft(&self) -> bool {
        !self.soft_anti.is_empty()
            || !self.soft_hostname_spread.is_empty()
            || !self.soft_zone_spread.is_empty()
    }
}

/// Selectors of every spread constraint and anti-affinity term in the batch.
pub(crate) struct Interned<'a> {
    pub selectors: Selectors<'a>,
    pub zone_counted: Vec<bool>,
    /// Selectors some pod's pod affinity names.
    pub affinity: Vec<bool>,
}

pub(crate) fn intern_selectors(pods: &[PendingPod]) -> Interned<'_> {
    let mut selectors = Selectors::default();
    let mut zone_selectors = Vec::new();
    let mut affinity_selectors = Vec::new();
    for pod in pods {
        for spread in &pod.topology_spread {
            let id = selectors.intern(&pod.namespace, &spread.selector);
            if spread.hard && spread.topology_key == ZONE_LABEL {
                zone_selectors.push(id);
            }
        }
        for selector in &pod.preferred_hostname_anti_affinity {
            selectors.intern(&pod.namespace, selector);
        }
        for selector in &pod.hostname_anti_affinity {
            selectors.intern(&pod.namespace, selector);
        }
        for selector in &pod.zone_anti_affinity {
            zone_selectors.push(selectors.intern(&pod.namespace, selector));
        }
        for selector in &pod.hostname_affinity {
            affinity_selectors.push(selectors.intern(&pod.namespace, selector));
        }
        for selector in &pod.zone_affinity {
            let id = selectors.intern(&pod.namespace, selector);
            zone_selectors.push(id);
            affinity_selectors.push(id);
        }
    }
    let mut zone_counted = vec![false; selectors.len()];
    for id in zone_selectors {
        zone_counted[id as usize] = true;
    }
    let mut affinity = vec![false; selectors.len()];
    for id in affinity_selectors {
        affinity[id as usize] = true;
    }
    Interned {
        selectors,
        zone_counted,
        affinity,
    }
}

pub(crate) fn facts(
    pods: &[PendingPod],
    classes: &[usize],
    interned: &mut Interned<'_>,
    names: &ResourceNames,
) -> Vec<PodFacts> {
    let mut match_cache: HashMap<(&str, &BTreeMap<String, String>), Vec<SelectorId>> =
        HashMap::new();
    let selectors = &interned.selectors;
    pods.iter()
        .zip(classes)
        .map(|(pod, class)| {
            let matches = match_cache
                .entry((pod.namespace.as_str(), &pod.labels))
                .or_insert_with(|| selectors.matching(&pod.namespace, &pod.labels))
                .clone();
            let mut facts = PodFacts {
                class: *class,
                requests: names.pod_requests(&pod.requests),
                anti: Vec::new(),
                zone_spread: Vec::new(),
                hostname_spread: Vec::new(),
                zone_anti: Vec::new(),
                affinity_host: Vec::new(),
                affinity_zone: Vec::new(),
                soft_anti: Vec::new(),
                soft_hostname_spread: Vec::new(),
                soft_zone_spread: Vec::new(),
                affinity_bound: matches.iter().any(|s| interned.affinity[*s as usize]),
                needs_zone: matches.iter().any(|s| interned.zone_counted[*s as usize]),
                matches,
                unsupported: None,
            };
            for spread in pod.topology_spread.iter().filter(|s| !s.hard) {
                let id = selectors_lookup(selectors, &pod.namespace, &spread.selector);
                match spread.topology_key.as_str() {
                    ZONE_LABEL => facts.soft_zone_spread.push((id, spread.max_skew)),
                    HOSTNAME_LABEL => facts.soft_hostname_spread.push((id, spread.max_skew)),
                    _ => {}
                }
            }
            for spread in pod.topology_spread.iter().filter(|s| s.hard) {
                let id = selectors_lookup(selectors, &pod.namespace, &spread.selector);
                match spread.topology_key.as_str() {
                    ZONE_LABEL => {
                        facts.zone_spread.push((id, spread.max_skew));
                        facts.needs_zone = true;
                    }
                    HOSTNAME_LABEL => facts.hostname_spread.push((id, spread.max_skew)),
                    other => {
                        facts.unsupported =
                            Some(format!("topology spread on unsupported key {other}"));
                    }
                }
            }
            facts.anti = pod
                .hostname_anti_affinity
                .iter()
                .map(|s| selectors_lookup(selectors, &pod.namespace, s))
                .collect();
            facts.zone_anti = pod
                .zone_anti_affinity
                .iter()
                .map(|s| selectors_lookup(selectors, &pod.namespace, s))
                .collect();
            let lookup = |list: &[crate::model::LabelSelector]| -> Vec<SelectorId> {
                list.iter()
                    .map(|s| selectors_lookup(selectors, &pod.namespace, s))
                    .collect()
            };
            facts.soft_anti = lookup(&pod.preferred_hostname_anti_affinity);
            facts.affinity_host = lookup(&pod.hostname_affinity);
            facts.affinity_zone = lookup(&pod.zone_affinity);
            facts.affinity_bound |=
                !facts.affinity_host.is_empty() || !facts.affinity_zone.is_empty();
            facts.needs_zone |= !facts.zone_anti.is_empty() || !facts.affinity_zone.is_empty();
            facts
        })
        .collect()
}

fn selectors_lookup(
    selectors: &Selectors<'_>,
    namespace: &str,
    selector: &crate::model::LabelSelector,
) -> SelectorId {
    selectors
        .find(namespace, selector)
        .unwrap_or(SelectorId::MAX)
}

/// Selectors each existing node's pods match, for its starting tally.
pub(crate) fn existing_matches(
    node: &ExistingNode,
    selectors: &Selectors<'_>,
) -> Vec<Vec<SelectorId>> {
    node.pods
        .iter()
        .map(|p| selectors.matching(&p.namespace, &p.labels))
        .collect()
}
