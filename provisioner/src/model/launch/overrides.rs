//! Which (instance type, subnet) pairs go into one CreateFleet request.
//!
//! A new node carries every instance type its pods fit on. EC2 takes at most
//! [`MAX_OVERRIDES`] overrides, so we keep the cheapest ones, with two twists:
//! - `minValues`: a NodePool requirement such as "at least 10 instance
//!   types" (or families) is kept even when cheaper duplicates of fewer
//!   types across zones would crowd the others out; the types that bring a
//!   missing value are picked first, cheapest first, then the rest fills up
//!   by price;
//! - spread: each (type, zone) gets one subnet, rotating through the zone's
//!   subnets from one type to the next, so launches spread over subnets and
//!   one type never takes several slots in the same zone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use spotwright_api::keys::ARCH_LABEL;
use spotwright_api::v1alpha1::ResolvedSubnet;
use spotwright_solver::model::{CapacityType, InstanceType, Requirement};

/// The most overrides one CreateFleet request takes (Karpenter uses the same).
pub const MAX_OVERRIDES: usize = 60;

/// A node the solver decided to launch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewNodeLaunch {
    /// Every instance type the node's pods fit on, cheapest first.
    pub instance_types: Vec<String>,
    /// Zones the node may land in; `None`: any zone that has a subnet.
    pub zones: Option<BTreeSet<String>>,
    /// Capacity types the NodePool and the pods allow.
    pub capacity_types: Vec<CapacityType>,
    /// The NodePool's requirements; only those with `min_values` matter here.
    pub requirements: Vec<Requirement>,
}

/// One CreateFleet override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub instance_type: String,
    pub subnet_id: String,
    pub zone: String,
    /// $/hour of the offering, for ordering and reporting.
    pub price: f64,
    /// The type's `kubernetes.io/arch`, which picks the launch template (AMI).
    pub arch: Option<String>,
}

/// A `minValues` requirement the overrides could not meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmetMinValues {
    pub key: String,
    pub wanted: u32,
    pub got: usize,
}

/// What to ask CreateFleet for.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchPlan {
    pub capacity_type: CapacityType,
    /// Cheapest first, at most [`MAX_OVERRIDES`].
    pub overrides: Vec<Override>,
    /// Empty when every `minValues` is met; a strict NodePool refuses to
    /// launch otherwise, a best-effort one launches and reports it.
    pub unmet_min_values: Vec<UnmetMinValues>,
}

impl LaunchPlan {
    pub fn min_values_met(&self) -> bool {
        self.unmet_min_values.is_empty()
    }

    /// Keeps the overrides of one `kubernetes.io/arch` (one launch template
    /// has one AMI); overrides of unknown arch stay.
    pub fn retain_arch(&mut self, arch: &str) {
        self.overrides
            .retain(|o| o.arch.as_deref().is_none_or(|a| a == arch));
    }

    /// The architecture of the cheapest override.
    pub fn cheapest_arch(&self) -> Option<&str> {
        self.overrides.iter().find_map(|o| o.arch.as_deref())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no subnet in the allowed zones")]
    NoSubnet,
    #[error("no available offering of the node's instance types in the allowed zones for {capacity_types:?}")]
    NoAvailableOffering { capacity_types: Vec<CapacityType> },
}

/// One candidate override before selection.
struct Candidate<'a> {
    /// Position of the type in the request (the solver's order), a tie-breaker.
    rank: usize,
    instance_type: &'a InstanceType,
    zone: &'a str,
    subnet_id: &'a str,
    price: f64,
}

/// Plans the overrides of one launch. `catalog` is the solver input: the
/// instance types with unavailable offerings already marked.
pub fn plan_overrides(
    request: &NewNodeLaunch,
    subnets: &[ResolvedSubnet],
    catalog: &[InstanceType],
) -> Result<LaunchPlan, PlanError> {
    let subnets_by_zone = subnets_by_zone(subnets, request.zones.as_ref());
    if subnets_by_zone.is_empty() {
        return Err(PlanError::NoSubnet);
    }
    let by_name: HashMap<&str, &InstanceType> =
        catalog.iter().map(|t| (t.name.as_str(), t)).collect();
    // Spot before on-demand when both are allowed.
    for capacity_type in [CapacityType::Spot, CapacityType::OnDemand] {
        if !request.capacity_types.contains(&capacity_type) {
            continue;
        }
        let candidates = candidates(request, &by_name, &subnets_by_zone, capacity_type);
        if candidates.is_empty() {
            continue;
        }
        let min_values = min_values(&request.requirements);
        let chosen = select(&candidates, &min_values);
        let overrides: Vec<Override> = chosen
            .iter()
            .map(|&i| {
                let c = &candidates[i];
                Override {
                    instance_type: c.instance_type.name.clone(),
                    subnet_id: c.subnet_id.to_owned(),
                    zone: c.zone.to_owned(),
                    price: c.price,
                    arch: c.instance_type.labels.get(ARCH_LABEL).cloned(),
                }
            })
            .collect();
        let unmet_min_values = min_values
            .iter()
            .filter_map(|(key, wanted)| {
                let got = chosen
                    .iter()
                    .filter_map(|&i| candidates[i].instance_type.labels.get(*key))
                    .collect::<BTreeSet<_>>()
                    .len();
                (got < *wanted as usize).then(|| UnmetMinValues {
                    key: (*key).to_owned(),
                    wanted: *wanted,
                    got,
                })
            })
            .collect();
        return Ok(LaunchPlan {
            capacity_type,
            overrides,
            unmet_min_values,
        });
    }
    Err(PlanError::NoAvailableOffering {
        capacity_types: request.capacity_types.clone(),
    })
}

fn subnets_by_zone<'a>(
    subnets: &'a [ResolvedSubnet],
    zones: Option<&BTreeSet<String>>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for subnet in subnets {
        if zones.is_none_or(|z| z.contains(&subnet.zone)) {
            by_zone.entry(&subnet.zone).or_default().push(&subnet.id);
        }
    }
    for ids in by_zone.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    by_zone
}

/// Every available (type, zone) offering of `capacity_type`, one subnet
/// each, cheapest first.
fn candidates<'a>(
    request: &NewNodeLaunch,
    by_name: &HashMap<&str, &'a InstanceType>,
    subnets_by_zone: &BTreeMap<&'a str, Vec<&'a str>>,
    capacity_type: CapacityType,
) -> Vec<Candidate<'a>> {
    let mut seen = BTreeSet::new();
    let mut candidates = Vec::new();
    for (rank, name) in request.instance_types.iter().enumerate() {
        let Some(instance_type) = by_name.get(name.as_str()).copied() else {
            continue;
        };
        if !seen.insert(name.as_str()) {
            continue;
        }
        let mut zones_done = BTreeSet::new();
        for offering in &instance_type.offerings {
            if offering.capacity_type != capacity_type || !offering.available {
                continue;
            }
            let Some((zone, subnet_ids)) = subnets_by_zone.get_key_value(offering.zone.as_str())
            else {
                continue;
            };
            if !zones_done.insert(*zone) {
                continue;
            }
            candidates.push(Candidate {
                rank,
                instance_type,
                zone,
                subnet_id: subnet_ids[rank % subnet_ids.len()],
                price: offering.price,
            });
        }
    }
    candidates.sort_by(|a, b| {
        a.price
            .total_cmp(&b.price)
            .then(a.rank.cmp(&b.rank))
            .then(a.zone.cmp(b.zone))
    });
    candidates
}

fn min_values(requirements: &[Requirement]) -> Vec<(&str, u32)> {
    let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
    for requirement in requirements {
        if let Some(n) = requirement.min_values.filter(|n| *n > 0) {
            let slot = wanted.entry(requirement.key.as_str()).or_insert(n);
            *slot = (*slot).max(n);
        }
    }
    wanted.into_iter().collect()
}

/// Indices into `candidates` (which are cheapest first), in that order.
fn select(candidates: &[Candidate<'_>], min_values: &[(&str, u32)]) -> Vec<usize> {
    let mut chosen = vec![false; candidates.len()];
    let mut count = 0;
    let mut values: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); min_values.len()];
    // First the candidates that bring a missing value: at each step the one
    // that closes the most unmet requirements, the cheapest among equals.
    while count < MAX_OVERRIDES {
        let gain = |c: &Candidate<'_>| {
            min_values
                .iter()
                .zip(&values)
                .filter(|((key, wanted), seen)| {
                    seen.len() < *wanted as usize
                        && c.instance_type
                            .labels
                            .get(*key)
                            .is_some_and(|v| !seen.contains(v.as_str()))
                })
                .count()
        };
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen[*i])
            .map(|(i, c)| (gain(c), i))
            .filter(|(g, _)| *g > 0)
            // max_by_key keeps the last maximum; reverse the index to keep the cheapest.
            .max_by_key(|(g, i)| (*g, std::cmp::Reverse(*i)));
        let Some((_, i)) = best else { break };
        chosen[i] = true;
        count += 1;
        for ((key, _), seen) in min_values.iter().zip(values.iter_mut()) {
            if let Some(value) = candidates[i].instance_type.labels.get(*key) {
                seen.insert(value.as_str());
            }
        }
    }
    // Then the cheapest of the rest.
    for slot in chosen.iter_mut() {
        if count >= MAX_OVERRIDES {
            break;
        }
        if !*slot {
            *slot = true;
            count += 1;
        }
    }
    (0..candidates.len()).filter(|&i| chosen[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotwright_api::keys::{INSTANCE_FAMILY_LABEL, INSTANCE_TYPE_LABEL};
    use spotwright_solver::model::{Offering, Operator, Resources};

    fn instance_type(name: &str, price: f64, zones: &[&str]) -> InstanceType {
        let family = name.split('.').next().unwrap_or(name);
        InstanceType {
            name: name.to_owned(),
            labels: BTreeMap::from([
                (INSTANCE_TYPE_LABEL.to_owned(), name.to_owned()),
                (INSTANCE_FAMILY_LABEL.to_owned(), family.to_owned()),
            ]),
            capacity: Resources::default(),
            allocatable: Resources::default(),
            offerings: zones
                .iter()
                .flat_map(|z| {
                    [
                        (CapacityType::Spot, price * 0.3),
                        (CapacityType::OnDemand, price),
                    ]
                    .map(|(capacity_type, price)| Offering {
                        zone: (*z).to_owned(),
                        capacity_type,
                        price,
                        available: true,
                    })
                })
                .collect(),
        }
    }

    fn subnet(id: &str, zone: &str) -> ResolvedSubnet {
        ResolvedSubnet {
            id: id.to_owned(),
            zone: zone.to_owned(),
            zone_id: None,
        }
    }

    #[test]
    fn spot_first_cheapest_first_one_subnet_per_type_and_zone() {
        let catalog = [
            instance_type("m5.large", 0.096, &["a", "b"]),
            instance_type("c5.large", 0.085, &["a", "b"]),
        ];
        let subnets = [subnet("s-a1", "a"), subnet("s-a2", "a"), subnet("s-b", "b")];
        let request = NewNodeLaunch {
            instance_types: vec!["c5.large".into(), "m5.large".into()],
            capacity_types: vec![CapacityType::OnDemand, CapacityType::Spot],
            ..Default::default()
        };
        let plan = plan_overrides(&request, &subnets, &catalog).unwrap();
        assert_eq!(plan.capacity_type, CapacityType::Spot);
        let pairs: Vec<(&str, &str)> = plan
            .overrides
            .iter()
            .map(|o| (o.instance_type.as_str(), o.subnet_id.as_str()))
            .collect();
        // c5 (rank 0) takes the zone's first subnet, m5 (rank 1) the second.
        assert_eq!(
            pairs,
            [
                ("c5.large", "s-a1"),
                ("c5.large", "s-b"),
                ("m5.large", "s-a2"),
                ("m5.large", "s-b")
            ]
        );
    }

    #[test]
    fn on_demand_only_when_spot_has_nothing_available() {
        let mut m5 = instance_type("m5.large", 0.096, &["a"]);
        for offering in &mut m5.offerings {
            offering.available = offering.capacity_type == CapacityType::OnDemand;
        }
        let request = NewNodeLaunch {
            instance_types: vec!["m5.large".into()],
            capacity_types: vec![CapacityType::Spot, CapacityType::OnDemand],
            ..Default::default()
        };
        let plan = plan_overrides(&request, &[subnet("s", "a")], &[m5.clone()]).unwrap();
        assert_eq!(plan.capacity_type, CapacityType::OnDemand);
        let spot_only = NewNodeLaunch {
            capacity_types: vec![CapacityType::Spot],
            ..request
        };
        assert!(matches!(
            plan_overrides(&spot_only, &[subnet("s", "a")], &[m5]),
            Err(PlanError::NoAvailableOffering { .. })
        ));
    }

    #[test]
    fn min_values_pulls_in_dearer_types() {
        // 30 cheap types in 3 zones fill 60 slots with 20 types; 40 are wanted.
        let names: Vec<String> = (0..45).map(|i| format!("t{i}.large")).collect();
        let catalog: Vec<InstanceType> = names
            .iter()
            .enumerate()
            .map(|(i, n)| instance_type(n, 0.01 * (i + 1) as f64, &["a", "b", "c"]))
            .collect();
        let subnets = [subnet("sa", "a"), subnet("sb", "b"), subnet("sc", "c")];
        let request = NewNodeLaunch {
            instance_types: names.clone(),
            capacity_types: vec![CapacityType::Spot],
            requirements: vec![Requirement {
                key: INSTANCE_TYPE_LABEL.to_owned(),
                operator: Operator::Exists,
                values: vec![],
                min_values: Some(40),
            }],
            ..Default::default()
        };
        let plan = plan_overrides(&request, &subnets, &catalog).unwrap();
        assert_eq!(plan.overrides.len(), MAX_OVERRIDES);
        let types: BTreeSet<_> = plan.overrides.iter().map(|o| &o.instance_type).collect();
        assert_eq!(types.len(), 40);
        assert!(plan.min_values_met());
    }

    #[test]
    fn no_subnet_in_the_allowed_zones() {
        let request = NewNodeLaunch {
            zones: Some(BTreeSet::from(["b".to_owned()])),
            capacity_types: vec![CapacityType::Spot],
            ..Default::default()
        };
        assert_eq!(
            plan_overrides(&request, &[subnet("s", "a")], &[]),
            Err(PlanError::NoSubnet)
        );
    }
}
