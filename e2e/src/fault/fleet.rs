//! The parts of an EC2 `CreateFleet` Query request the fault proxy reads:
//! the launch template configs and their overrides, and a rewrite of the
//! request without the overrides it fails.
//!
//! Parameter names are the Query-protocol serialisation of
//! `CreateFleetRequest` (as aws-sdk-ec2's `shape_create_fleet_input` writes
//! it; lists are flattened and 1-based):
//! `LaunchTemplateConfigs.{c}.LaunchTemplateSpecification.{LaunchTemplateId,LaunchTemplateName,Version}`,
//! `LaunchTemplateConfigs.{c}.Overrides.{o}.{InstanceType,SubnetId,AvailabilityZone,...}`,
//! `TargetCapacitySpecification.DefaultTargetCapacityType`, `Type`.

use std::collections::{BTreeMap, BTreeSet};

use super::form::Form;
use super::FaultError;

const CONFIGS: &str = "LaunchTemplateConfigs.";
const OVERRIDES: &str = "Overrides.";
const SPEC: &str = "LaunchTemplateSpecification.";

/// `LaunchTemplateConfigs.{c}.LaunchTemplateSpecification`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchTemplateSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// `LaunchTemplateConfigs.{config}.Overrides.{index}`: the fields an
/// `errorSet` item echoes back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Override {
    pub config: u32,
    pub index: u32,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchTemplateConfig {
    pub spec: LaunchTemplateSpec,
    pub overrides: BTreeMap<u32, Override>,
}

/// A `CreateFleet` request, as far as faults need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateFleet {
    /// `Type`: `instant`, `request` or `maintain` (EC2's default).
    pub fleet_type: Option<String>,
    /// `TargetCapacitySpecification.DefaultTargetCapacityType`.
    pub default_capacity_type: Option<String>,
    pub configs: BTreeMap<u32, LaunchTemplateConfig>,
}

/// An override the proxy fails, with its config's launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultedOverride {
    pub spec: LaunchTemplateSpec,
    pub over: Override,
}

/// What to do with a `CreateFleet` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No override is faulted (or the fleet is not `instant`): forward as is.
    PassThrough,
    /// Every override is faulted: answer alone, with these errors.
    AllFaulted(Vec<FaultedOverride>),
    /// Some are: forward `body` (the request without them) and add these
    /// errors to the answer.
    Partial {
        faulted: Vec<FaultedOverride>,
        body: String,
    },
}

/// Splits `{n}.{rest}` into a 1-based index and the rest.
fn index_and_rest<'k>(text: &'k str, key: &str) -> Result<(u32, &'k str), FaultError> {
    let (index, rest) = text.split_once('.').unwrap_or((text, ""));
    match index.parse::<u32>() {
        Ok(n) if n >= 1 && !index.starts_with('+') => Ok((n, rest)),
        _ => Err(FaultError::BadIndex(key.to_owned())),
    }
}

impl CreateFleet {
    /// Reads the configs and overrides of a `CreateFleet` form. Fails on a
    /// list index that is not a positive integer, since the proxy could not
    /// tell which override such a key belongs to.
    pub fn from_form(form: &Form) -> Result<Self, FaultError> {
        let mut fleet = CreateFleet {
            fleet_type: form.get("Type").map(str::to_owned),
            default_capacity_type: form
                .get("TargetCapacitySpecification.DefaultTargetCapacityType")
                .map(str::to_owned),
            configs: BTreeMap::new(),
        };
        for pair in form.pairs() {
            let Some(after) = pair.key.strip_prefix(CONFIGS) else {
                continue;
            };
            let (c, rest) = index_and_rest(after, &pair.key)?;
            let config = fleet.configs.entry(c).or_default();
            if let Some(after) = rest.strip_prefix(OVERRIDES) {
                let (o, field) = index_and_rest(after, &pair.key)?;
                let over = config.overrides.entry(o).or_insert_with(|| Override {
                    config: c,
                    index: o,
                    ..Override::default()
                });
                let value = Some(pair.value.clone());
                match field {
                    "InstanceType" => over.instance_type = value,
                    "SubnetId" => over.subnet_id = value,
                    "AvailabilityZone" => over.availability_zone = value,
                    _ => {}
                }
            } else if let Some(field) = rest.strip_prefix(SPEC) {
                let value = Some(pair.value.clone());
                match field {
                    "LaunchTemplateId" => config.spec.id = value,
                    "LaunchTemplateName" => config.spec.name = value,
                    "Version" => config.spec.version = value,
                    _ => {}
                }
            }
        }
        Ok(fleet)
    }

    /// `spot` or `on-demand`: what EC2 puts in an error's `lifecycle`.
    /// Spot when unsaid, the capacity type Spotwright asks for.
    pub fn lifecycle(&self) -> &str {
        match self.default_capacity_type.as_deref() {
            Some("on-demand") => "on-demand",
            _ => "spot",
        }
    }

    fn is_instant(&self) -> bool {
        self.fleet_type.as_deref() == Some("instant")
    }

    /// The overrides whose instance type is in `insufficient`, in request
    /// order.
    pub fn faulted(&self, insufficient: &BTreeSet<String>) -> Vec<FaultedOverride> {
        self.configs
            .values()
            .flat_map(|config| {
                config
                    .overrides
                    .values()
                    .filter(|o| {
                        o.instance_type
                            .as_ref()
                            .is_some_and(|t| insufficient.contains(t))
                    })
                    .map(|o| FaultedOverride {
                        spec: config.spec.clone(),
                        over: o.clone(),
                    })
            })
            .collect()
    }
}

/// Decides how to answer a `CreateFleet` form given the instance types
/// without capacity. Only `instant` fleets carry an `errorSet`, so other
/// types pass through.
pub fn decide(
    form: &Form,
    insufficient: &BTreeSet<String>,
) -> Result<(CreateFleet, Decision), FaultError> {
    // With no fault armed the proxy is transparent, even to a request it
    // could not read.
    if insufficient.is_empty() {
        return Ok((CreateFleet::default(), Decision::PassThrough));
    }
    let fleet = CreateFleet::from_form(form)?;
    if !fleet.is_instant() {
        return Ok((fleet, Decision::PassThrough));
    }
    let faulted = fleet.faulted(insufficient);
    if faulted.is_empty() {
        return Ok((fleet, Decision::PassThrough));
    }
    let dropped: BTreeSet<(u32, u32)> = faulted
        .iter()
        .map(|f| (f.over.config, f.over.index))
        .collect();
    let decision = match rewrite_without(form, &fleet, &dropped) {
        Some(body) => Decision::Partial { faulted, body },
        None => Decision::AllFaulted(faulted),
    };
    Ok((fleet, decision))
}

/// The form body without the overrides in `dropped` (`(config, index)`),
/// the remaining ones renumbered from 1 so the lists stay dense, and
/// without any config left with no override (a config with no overrides
/// would launch its launch template's own instance type, which is not what
/// was asked). `None` when no config is left to forward.
pub fn rewrite_without(
    form: &Form,
    fleet: &CreateFleet,
    dropped: &BTreeSet<(u32, u32)>,
) -> Option<String> {
    // old config index -> (new config index, old override index -> new)
    let mut renumber: BTreeMap<u32, (u32, BTreeMap<u32, u32>)> = BTreeMap::new();
    for (&c, config) in &fleet.configs {
        let kept: BTreeMap<u32, u32> = config
            .overrides
            .keys()
            .filter(|&&o| !dropped.contains(&(c, o)))
            .zip(1u32..)
            .map(|(&o, new)| (o, new))
            .collect();
        if kept.is_empty() && !config.overrides.is_empty() {
            continue;
        }
        let new_c = u32::try_from(renumber.len()).ok()?.checked_add(1)?;
        renumber.insert(c, (new_c, kept));
    }
    if renumber.is_empty() {
        return None;
    }
    Some(form.encode_with(|key| {
        let Some(after) = key.strip_prefix(CONFIGS) else {
            return Some(key.to_owned());
        };
        // from_form already rejected keys whose indices do not parse.
        let (c, rest) = index_and_rest(after, key).ok()?;
        let (new_c, kept) = renumber.get(&c)?;
        match rest.strip_prefix(OVERRIDES) {
            Some(after) => {
                let (o, field) = index_and_rest(after, key).ok()?;
                let new_o = kept.get(&o)?;
                Some(join(&format!("{CONFIGS}{new_c}.{OVERRIDES}{new_o}"), field))
            }
            None => Some(join(&format!("{CONFIGS}{new_c}"), rest)),
        }
    }))
}

fn join(head: &str, rest: &str) -> String {
    if rest.is_empty() {
        head.to_owned()
    } else {
        format!("{head}.{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as aws-sdk-ec2 serialises Spotwright's CreateFleet call.
    const BODY: &str = "Action=CreateFleet&Version=2016-11-15&ClientToken=uid-1\
        &SpotOptions.AllocationStrategy=price-capacity-optimized\
        &LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName=spotwright-default\
        &LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version=%24Latest\
        &LaunchTemplateConfigs.1.Overrides.1.InstanceType=m5.large\
        &LaunchTemplateConfigs.1.Overrides.1.SubnetId=subnet-a\
        &LaunchTemplateConfigs.1.Overrides.2.InstanceType=c5.large\
        &LaunchTemplateConfigs.1.Overrides.2.SubnetId=subnet-b\
        &LaunchTemplateConfigs.1.Overrides.3.InstanceType=m5.large\
        &LaunchTemplateConfigs.1.Overrides.3.SubnetId=subnet-b\
        &LaunchTemplateConfigs.1.Overrides.3.AvailabilityZone=us-east-1b\
        &TargetCapacitySpecification.TotalTargetCapacity=1\
        &TargetCapacitySpecification.DefaultTargetCapacityType=spot\
        &Type=instant";

    fn set(types: &[&str]) -> BTreeSet<String> {
        types.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn parses_configs_and_overrides() {
        let fleet = CreateFleet::from_form(&Form::parse(BODY.as_bytes()).unwrap()).unwrap();
        assert_eq!(fleet.fleet_type.as_deref(), Some("instant"));
        assert_eq!(fleet.lifecycle(), "spot");
        let config = &fleet.configs[&1];
        assert_eq!(config.spec.name.as_deref(), Some("spotwright-default"));
        assert_eq!(config.spec.version.as_deref(), Some("$Latest"));
        assert_eq!(config.spec.id, None);
        assert_eq!(config.overrides.len(), 3);
        assert_eq!(
            config.overrides[&3],
            Override {
                config: 1,
                index: 3,
                instance_type: Some("m5.large".into()),
                subnet_id: Some("subnet-b".into()),
                availability_zone: Some("us-east-1b".into()),
            }
        );
    }

    #[test]
    fn unreadable_requests_pass_through_when_no_fault_is_armed() {
        let form =
            Form::parse(b"Action=CreateFleet&LaunchTemplateConfigs.x.Overrides.1.InstanceType=a")
                .unwrap();
        assert_eq!(decide(&form, &set(&[])).unwrap().1, Decision::PassThrough);
        assert!(matches!(
            decide(&form, &set(&["a"])),
            Err(FaultError::BadIndex(_))
        ));
    }

    #[test]
    fn rejects_bad_indices() {
        for bad in [
            "LaunchTemplateConfigs.x.Overrides.1.InstanceType=a",
            "LaunchTemplateConfigs.1.Overrides.0.InstanceType=a",
            "LaunchTemplateConfigs.1.Overrides.-1.InstanceType=a",
            "LaunchTemplateConfigs..Overrides.1.InstanceType=a",
            "LaunchTemplateConfigs.99999999999.Overrides.1.InstanceType=a",
        ] {
            let form = Form::parse(bad.as_bytes()).unwrap();
            assert!(
                matches!(CreateFleet::from_form(&form), Err(FaultError::BadIndex(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn selects_overrides_by_instance_type() {
        let fleet = CreateFleet::from_form(&Form::parse(BODY.as_bytes()).unwrap()).unwrap();
        let faulted = fleet.faulted(&set(&["m5.large", "r5.large"]));
        let at: Vec<(u32, u32)> = faulted
            .iter()
            .map(|f| (f.over.config, f.over.index))
            .collect();
        assert_eq!(at, vec![(1, 1), (1, 3)]);
        assert_eq!(faulted[0].spec.name.as_deref(), Some("spotwright-default"));
        assert!(fleet.faulted(&set(&["r5.large"])).is_empty());
    }

    #[test]
    fn partial_fault_rewrites_the_rest_densely() {
        let form = Form::parse(BODY.as_bytes()).unwrap();
        let (_, decision) = decide(&form, &set(&["m5.large"])).unwrap();
        let Decision::Partial { faulted, body } = decision else {
            panic!("expected a partial fault, got {decision:?}");
        };
        assert_eq!(faulted.len(), 2);
        let rewritten = Form::parse(body.as_bytes()).unwrap();
        assert_eq!(
            rewritten.get("LaunchTemplateConfigs.1.Overrides.1.InstanceType"),
            Some("c5.large")
        );
        assert_eq!(
            rewritten.get("LaunchTemplateConfigs.1.Overrides.1.SubnetId"),
            Some("subnet-b")
        );
        assert_eq!(
            rewritten.get("LaunchTemplateConfigs.1.Overrides.2.InstanceType"),
            None
        );
        assert_eq!(
            rewritten.get("LaunchTemplateConfigs.1.Overrides.3.InstanceType"),
            None
        );
        assert!(
            body.contains("LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version=%24Latest")
        );
        assert!(body.starts_with("Action=CreateFleet&Version=2016-11-15&ClientToken=uid-1&"));
        assert!(body.ends_with("&Type=instant"));
        let fleet = CreateFleet::from_form(&rewritten).unwrap();
        assert_eq!(fleet.configs[&1].overrides.len(), 1);
    }

    #[test]
    fn all_faulted_forwards_nothing() {
        let form = Form::parse(BODY.as_bytes()).unwrap();
        let (_, decision) = decide(&form, &set(&["m5.large", "c5.large"])).unwrap();
        let Decision::AllFaulted(faulted) = decision else {
            panic!("expected every override faulted, got {decision:?}");
        };
        let types: Vec<_> = faulted
            .iter()
            .filter_map(|f| f.over.instance_type.as_deref())
            .collect();
        assert_eq!(types, vec!["m5.large", "c5.large", "m5.large"]);
    }

    #[test]
    fn drops_emptied_configs_and_renumbers_the_rest() {
        let body = "Action=CreateFleet&Type=instant\
            &LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId=lt-1\
            &LaunchTemplateConfigs.1.Overrides.1.InstanceType=m5.large\
            &LaunchTemplateConfigs.2.LaunchTemplateSpecification.LaunchTemplateId=lt-2\
            &LaunchTemplateConfigs.2.Overrides.1.InstanceType=m5.large\
            &LaunchTemplateConfigs.2.Overrides.2.InstanceType=c5.large\
            &LaunchTemplateConfigs.2.Overrides.2.Placement.GroupName=pg";
        let form = Form::parse(body.as_bytes()).unwrap();
        let (_, decision) = decide(&form, &set(&["m5.large"])).unwrap();
        let Decision::Partial { faulted, body } = decision else {
            panic!("expected a partial fault, got {decision:?}");
        };
        assert_eq!(faulted.len(), 2);
        assert_eq!(faulted[1].spec.id.as_deref(), Some("lt-2"));
        assert_eq!(
            body,
            "Action=CreateFleet&Type=instant\
            &LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId=lt-2\
            &LaunchTemplateConfigs.1.Overrides.1.InstanceType=c5.large\
            &LaunchTemplateConfigs.1.Overrides.1.Placement.GroupName=pg"
        );
    }

    #[test]
    fn passes_through_when_nothing_is_faulted_or_not_instant() {
        let form = Form::parse(BODY.as_bytes()).unwrap();
        assert_eq!(decide(&form, &set(&[])).unwrap().1, Decision::PassThrough);
        assert_eq!(
            decide(&form, &set(&["r5.large"])).unwrap().1,
            Decision::PassThrough
        );
        let maintain = BODY.replace("Type=instant", "Type=maintain");
        let form = Form::parse(maintain.as_bytes()).unwrap();
        assert_eq!(
            decide(&form, &set(&["m5.large"])).unwrap().1,
            Decision::PassThrough
        );
    }

    #[test]
    fn on_demand_lifecycle() {
        let body = BODY.replace(
            "DefaultTargetCapacityType=spot",
            "DefaultTargetCapacityType=on-demand",
        );
        let fleet = CreateFleet::from_form(&Form::parse(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(fleet.lifecycle(), "on-demand");
    }
}
