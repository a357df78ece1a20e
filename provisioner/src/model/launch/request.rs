//! A NodeClaim's launch from its requirements alone: which catalog types,
//! zones and capacity types they allow. The provisioning pass knows these
//! already; a resumed launch (after a restart) only has the NodeClaim.

use std::collections::BTreeSet;

use spotwright_api::keys;
use spotwright_solver::model::{CapacityType, InstanceType, Requirement};

use super::overrides::NewNodeLaunch;

/// Keys that describe the instance type itself; requirements on other keys
/// (NodePool template labels) do not narrow the types.
pub const INSTANCE_TYPE_KEYS: [&str; 13] = [
    keys::INSTANCE_TYPE_LABEL,
    keys::ARCH_LABEL,
    keys::OS_LABEL,
    keys::INSTANCE_CATEGORY_LABEL,
    keys::INSTANCE_FAMILY_LABEL,
    keys::INSTANCE_SIZE_LABEL,
    keys::INSTANCE_CPU_LABEL,
    keys::INSTANCE_MEMORY_LABEL,
    keys::INSTANCE_GENERATION_LABEL,
    keys::INSTANCE_GPU_COUNT_LABEL,
    keys::INSTANCE_GPU_NAME_LABEL,
    keys::INSTANCE_LOCAL_NVME_LABEL,
    keys::INSTANCE_NETWORK_BANDWIDTH_LABEL,
];

/// Whether a label value (or its absence) meets one requirement, as the
/// solver judges it.
pub fn meets(requirement: &Requirement, value: Option<&str>) -> bool {
    spotwright_solver::label_matches(requirement, value)
}

fn allowed<'a>(
    requirements: &[Requirement],
    key: &str,
    universe: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    universe
        .into_iter()
        .filter(|v| {
            requirements
                .iter()
                .filter(|r| r.key == key)
                .all(|r| meets(r, Some(v)))
        })
        .map(str::to_owned)
        .collect()
}

/// The launch `requirements` allow: types whose labels meet every
/// instance-type requirement, cheapest allowed offering first; zones and
/// capacity types from their requirements (all when unconstrained).
pub fn launch_from_requirements(
    requirements: &[Requirement],
    catalog: &[InstanceType],
) -> NewNodeLaunch {
    let all_zones: BTreeSet<&str> = catalog
        .iter()
        .flat_map(|t| t.offerings.iter().map(|o| o.zone.as_str()))
        .collect();
    let zones = allowed(requirements, keys::ZONE_LABEL, all_zones.iter().copied());
    let capacity_types: Vec<CapacityType> = allowed(
        requirements,
        keys::CAPACITY_TYPE_LABEL,
        [CapacityType::Spot.as_str(), CapacityType::OnDemand.as_str()],
    )
    .iter()
    .filter_map(|v| CapacityType::parse(v))
    .collect();
    let type_requirements: Vec<&Requirement> = requirements
        .iter()
        .filter(|r| INSTANCE_TYPE_KEYS.contains(&r.key.as_str()))
        .collect();
    let mut types: Vec<(f64, &str)> = catalog
        .iter()
        .filter(|t| {
            type_requirements
                .iter()
                .all(|r| meets(r, t.labels.get(&r.key).map(String::as_str)))
        })
        .filter_map(|t| {
            let cheapest = t
                .offerings
                .iter()
                .filter(|o| {
                    o.available
                        && zones.contains(&o.zone)
                        && capacity_types.contains(&o.capacity_type)
                })
                .map(|o| o.price)
                .min_by(f64::total_cmp)?;
            Some((cheapest, t.name.as_str()))
        })
        .collect();
    types.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    let zone_constrained = requirements.iter().any(|r| r.key == keys::ZONE_LABEL);
    NewNodeLaunch {
        instance_types: types.into_iter().map(|(_, n)| n.to_owned()).collect(),
        zones: zone_constrained.then_some(zones),
        capacity_types,
        requirements: requirements.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use spotwright_solver::model::{Offering, Operator, Resources};

    use super::*;

    fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            min_values: None,
        }
    }

    fn instance_type(
        name: &str,
        cpu: &str,
        prices: [(&str, CapacityType, f64); 2],
    ) -> InstanceType {
        InstanceType {
            name: name.to_owned(),
            labels: BTreeMap::from([
                (keys::INSTANCE_TYPE_LABEL.to_owned(), name.to_owned()),
                (keys::INSTANCE_CPU_LABEL.to_owned(), cpu.to_owned()),
            ]),
            capacity: Resources::default(),
            allocatable: Resources::default(),
            offerings: prices
                .iter()
                .map(|(zone, capacity_type, price)| Offering {
                    zone: (*zone).to_owned(),
                    capacity_type: *capacity_type,
                    price: *price,
                    available: true,
                })
                .collect(),
        }
    }

    #[test]
    fn requirements_pick_types_zones_and_capacity() {
        let catalog = [
            instance_type(
                "big",
                "8",
                [
                    ("a", CapacityType::Spot, 0.3),
                    ("b", CapacityType::OnDemand, 0.1),
                ],
            ),
            instance_type(
                "mid",
                "4",
                [
                    ("a", CapacityType::Spot, 0.2),
                    ("b", CapacityType::Spot, 0.05),
                ],
            ),
            instance_type(
                "small",
                "2",
                [
                    ("a", CapacityType::Spot, 0.01),
                    ("b", CapacityType::Spot, 0.01),
                ],
            ),
        ];
        let requirements = [
            requirement(keys::INSTANCE_CPU_LABEL, Operator::Gt, &["2"]),
            requirement(keys::ZONE_LABEL, Operator::In, &["a"]),
            requirement(keys::CAPACITY_TYPE_LABEL, Operator::In, &["spot"]),
            requirement(keys::NODEPOOL_LABEL, Operator::In, &["default"]),
        ];
        let launch = launch_from_requirements(&requirements, &catalog);
        assert_eq!(launch.instance_types, ["mid", "big"]);
        assert_eq!(launch.zones, Some(BTreeSet::from(["a".to_owned()])));
        assert_eq!(launch.capacity_types, [CapacityType::Spot]);

        let open = launch_from_requirements(&[], &catalog);
        assert_eq!(open.instance_types, ["small", "mid", "big"]);
        assert_eq!(open.zones, None);
        assert_eq!(open.capacity_types.len(), 2);
    }

    #[test]
    fn operators_follow_kubernetes() {
        let r = |op, values: &[&str]| requirement("k", op, values);
        assert!(meets(&r(Operator::NotIn, &["x"]), None));
        assert!(!meets(&r(Operator::In, &["x"]), None));
        assert!(meets(&r(Operator::Lt, &["10"]), Some("9")));
        assert!(!meets(&r(Operator::Lt, &["10"]), Some("ten")));
        assert!(meets(&r(Operator::DoesNotExist, &[]), None));
    }
}
