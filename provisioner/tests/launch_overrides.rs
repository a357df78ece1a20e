//! Properties of the CreateFleet override planner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use spotwright_api::keys::{INSTANCE_FAMILY_LABEL, INSTANCE_TYPE_LABEL};
use spotwright_api::v1alpha1::ResolvedSubnet;
use spotwright_provisioner::model::launch::overrides::MAX_OVERRIDES;
use spotwright_provisioner::model::launch::{plan_overrides, NewNodeLaunch, PlanError};
use spotwright_solver::model::{
    CapacityType, InstanceType, Offering, Operator, Requirement, Resources,
};

const ZONES: [&str; 4] = ["z-a", "z-b", "z-c", "z-d"];

/// (family index, price in cents, per zone: (spot available, on-demand available)).
type TypeSpec = (usize, u32, Vec<(bool, bool)>);

fn build_type(index: usize, spec: &TypeSpec) -> InstanceType {
    let (family, cents, zones) = spec;
    let name = format!("f{family}.s{index}");
    let mut offerings = Vec::new();
    for (zone, (spot, on_demand)) in ZONES.iter().zip(zones) {
        // Spot prices differ by zone, as in the market.
        let spot_price =
            f64::from(*cents) / 300.0 + 0.001 * zone.len() as f64 * f64::from(u8::from(*spot));
        offerings.push(Offering {
            zone: (*zone).to_owned(),
            capacity_type: CapacityType::Spot,
            price: spot_price + (index % 3) as f64 * 0.0001,
            available: *spot,
        });
        offerings.push(Offering {
            zone: (*zone).to_owned(),
            capacity_type: CapacityType::OnDemand,
            price: f64::from(*cents) / 100.0,
            available: *on_demand,
        });
    }
    InstanceType {
        labels: BTreeMap::from([
            (INSTANCE_TYPE_LABEL.to_owned(), name.clone()),
            (INSTANCE_FAMILY_LABEL.to_owned(), format!("f{family}")),
        ]),
        name,
        capacity: Resources::default(),
        allocatable: Resources::default(),
        offerings,
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    catalog: Vec<InstanceType>,
    subnets: Vec<ResolvedSubnet>,
    request: NewNodeLaunch,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let type_spec = (
        0usize..25,
        1u32..500,
        proptest::collection::vec(any::<(bool, bool)>(), 4),
    );
    (
        proptest::collection::vec(type_spec, 1..120),
        proptest::collection::vec((0usize..4, 0u8..3), 1..8),
        proptest::option::of(proptest::collection::btree_set(0usize..4, 1..4)),
        prop_oneof![
            Just(vec![CapacityType::Spot]),
            Just(vec![CapacityType::OnDemand]),
            Just(vec![CapacityType::Spot, CapacityType::OnDemand]),
        ],
        proptest::option::of((
            prop_oneof![Just(INSTANCE_TYPE_LABEL), Just(INSTANCE_FAMILY_LABEL)],
            1u32..=50,
        )),
        any::<proptest::sample::Index>(),
    )
        .prop_map(|(specs, subnets, zones, capacity_types, min_values, cut)| {
            let catalog: Vec<InstanceType> = specs
                .iter()
                .enumerate()
                .map(|(i, s)| build_type(i, s))
                .collect();
            // The request names a prefix of the catalog, cheapest on-demand first.
            let mut names: Vec<(f64, String)> = catalog
                .iter()
                .map(|t| (t.offerings[1].price, t.name.clone()))
                .collect();
            names.sort_by(|a, b| a.0.total_cmp(&b.0));
            let keep = cut.index(names.len()) + 1;
            let subnets = subnets
                .into_iter()
                .map(|(zone, n)| ResolvedSubnet {
                    id: format!("subnet-{zone}-{n}"),
                    zone: ZONES[zone].to_owned(),
                    zone_id: None,
                })
                .collect();
            Scenario {
                catalog,
                subnets,
                request: NewNodeLaunch {
                    instance_types: names.into_iter().take(keep).map(|(_, n)| n).collect(),
                    zones: zones.map(|z| z.into_iter().map(|i| ZONES[i].to_owned()).collect()),
                    capacity_types,
                    requirements: min_values
                        .map(|(key, n)| Requirement {
                            key: key.to_owned(),
                            operator: Operator::Exists,
                            values: Vec::new(),
                            min_values: Some(n),
                        })
                        .into_iter()
                        .collect(),
                },
            }
        })
}

/// Every (type, zone) offering of `capacity_type` the plan could use.
fn usable(s: &Scenario, capacity_type: CapacityType) -> Vec<(&InstanceType, &Offering)> {
    let zones_with_subnet: BTreeSet<&str> = s
        .subnets
        .iter()
        .filter(|sn| {
            s.request
                .zones
                .as_ref()
                .is_none_or(|z| z.contains(&sn.zone))
        })
        .map(|sn| sn.zone.as_str())
        .collect();
    let wanted: BTreeSet<&str> = s
        .request
        .instance_types
        .iter()
        .map(String::as_str)
        .collect();
    s.catalog
        .iter()
        .filter(|t| wanted.contains(t.name.as_str()))
        .flat_map(|t| t.offerings.iter().map(move |o| (t, o)))
        .filter(|(_, o)| {
            o.capacity_type == capacity_type
                && o.available
                && zones_with_subnet.contains(o.zone.as_str())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_respect_the_request(s in scenario()) {
        let plan = match plan_overrides(&s.request, &s.subnets, &s.catalog) {
            Ok(plan) => plan,
            Err(PlanError::NoSubnet) => {
                prop_assert!(s.subnets.iter().all(|sn| s.request.zones.as_ref().is_some_and(|z| !z.contains(&sn.zone))));
                return Ok(());
            }
            Err(PlanError::NoAvailableOffering { .. }) => {
                for ct in &s.request.capacity_types {
                    prop_assert!(usable(&s, *ct).is_empty());
                }
                return Ok(());
            }
        };
        // Spot whenever it is allowed and has anything available.
        let spot_possible = s.request.capacity_types.contains(&CapacityType::Spot)
            && !usable(&s, CapacityType::Spot).is_empty();
        prop_assert_eq!(plan.capacity_type == CapacityType::Spot, spot_possible);
        prop_assert!(s.request.capacity_types.contains(&plan.capacity_type));

        let overrides = &plan.overrides;
        prop_assert!(!overrides.is_empty() && overrides.len() <= MAX_OVERRIDES);
        let pairs: BTreeSet<(&str, &str)> = overrides.iter().map(|o| (o.instance_type.as_str(), o.subnet_id.as_str())).collect();
        prop_assert_eq!(pairs.len(), overrides.len(), "duplicate pairs");
        let subnet_zone: HashMap<&str, &str> = s.subnets.iter().map(|sn| (sn.id.as_str(), sn.zone.as_str())).collect();
        let by_name: HashMap<&str, &InstanceType> = s.catalog.iter().map(|t| (t.name.as_str(), t)).collect();
        for o in overrides {
            prop_assert!(s.request.instance_types.contains(&o.instance_type));
            prop_assert_eq!(subnet_zone.get(o.subnet_id.as_str()).copied(), Some(o.zone.as_str()));
            prop_assert!(s.request.zones.as_ref().is_none_or(|z| z.contains(&o.zone)));
            let offering = by_name[o.instance_type.as_str()].offerings.iter()
                .find(|of| of.zone == o.zone && of.capacity_type == plan.capacity_type);
            prop_assert!(offering.is_some_and(|of| of.available && of.price == o.price));
        }
        // Cheapest first.
        prop_assert!(overrides.windows(2).all(|w| w[0].price <= w[1].price));

        let usable = usable(&s, plan.capacity_type);
        match s.request.requirements.first() {
            None => {
                // Exactly the cheapest (type, zone) offerings.
                let mut prices: Vec<f64> = usable.iter().map(|(_, o)| o.price).collect();
                prices.sort_by(f64::total_cmp);
                let chosen: Vec<f64> = overrides.iter().map(|o| o.price).collect();
                prop_assert_eq!(&chosen[..], &prices[..chosen.len()]);
                prop_assert_eq!(chosen.len(), prices.len().min(MAX_OVERRIDES));
            }
            Some(requirement) => {
                let key = requirement.key.as_str();
                let wanted = requirement.min_values.unwrap_or(0) as usize;
                let possible: BTreeSet<&String> = usable.iter().filter_map(|(t, _)| t.labels.get(key)).collect();
                let got: BTreeSet<&String> = overrides.iter()
                    .filter_map(|o| by_name[o.instance_type.as_str()].labels.get(key)).collect();
                if possible.len() >= wanted {
                    prop_assert!(got.len() >= wanted, "{} of {} {} values", got.len(), wanted, key);
                    prop_assert!(plan.min_values_met());
                } else {
                    prop_assert_eq!(got.len(), possible.len());
                    prop_assert!(!plan.min_values_met());
                }
                prop_assert_eq!(overrides.len(), usable.len().min(MAX_OVERRIDES));
            }
        }
    }
}
