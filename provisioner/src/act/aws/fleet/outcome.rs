//! Reading CreateFleet's answer: the instance it launched, and the
//! overrides it could not fill, classified.

use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::types::{CreateFleetError, InstanceLifecycle, LaunchTemplateAndOverridesResponse};
use spotwright_solver::model::CapacityType;

use super::{FleetOutcome, FleetRequest, LaunchError, LaunchedInstance};
use crate::model::launch::{classify, ErrorClass, LaunchPlan, OverrideError};

fn capacity_type(lifecycle: Option<&InstanceLifecycle>, planned: CapacityType) -> CapacityType {
    match lifecycle {
        Some(InstanceLifecycle::Spot) => CapacityType::Spot,
        Some(InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
        _ => planned,
    }
}

/// (instance type, subnet, zone) of the override an answer refers to; the
/// zone comes from our plan, as EC2 echoes only what we sent.
fn override_of(
    response: Option<&LaunchTemplateAndOverridesResponse>,
    plan: &LaunchPlan,
) -> (Option<String>, Option<String>, Option<String>) {
    let overrides = response.and_then(|r| r.overrides());
    let instance_type = overrides
        .and_then(|o| o.instance_type())
        .map(|t| t.as_str().to_owned());
    let subnet_id = overrides.and_then(|o| o.subnet_id()).map(str::to_owned);
    let zone = overrides
        .and_then(|o| o.availability_zone())
        .map(str::to_owned)
        .or_else(|| {
            let subnet = subnet_id.as_deref()?;
            plan.overrides
                .iter()
                .find(|o| o.subnet_id == subnet)
                .map(|o| o.zone.clone())
        });
    (instance_type, subnet_id, zone)
}

fn override_error(error: &CreateFleetError, plan: &LaunchPlan) -> OverrideError {
    let (instance_type, subnet_id, zone) = override_of(error.launch_template_and_overrides(), plan);
    let code = error.error_code().unwrap_or("Unknown").to_owned();
    OverrideError {
        capacity_type: capacity_type(error.lifecycle(), plan.capacity_type),
        instance_type,
        subnet_id,
        zone,
        class: classify(&code),
        code,
        message: error.error_message().unwrap_or_default().to_owned(),
    }
}

/// The launched instance and the failed overrides; an error when nothing
/// launched.
pub fn parse_create_fleet_output(
    output: &CreateFleetOutput,
    request: &FleetRequest,
) -> Result<FleetOutcome, LaunchError> {
    let plan = &request.plan;
    let errors: Vec<OverrideError> = output
        .errors()
        .iter()
        .map(|e| override_error(e, plan))
        .collect();
    let launched = output.instances().iter().find_map(|instance| {
        let id = instance.instance_ids().first()?;
        let (override_type, subnet_id, zone) =
            override_of(instance.launch_template_and_overrides(), plan);
        let instance_type = instance
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .or(override_type)?;
        let zone = instance.availability_zone().map(str::to_owned).or(zone)?;
        let subnet_id = instance.subnet_id().map(str::to_owned).or(subnet_id);
        let price = plan
            .overrides
            .iter()
            .find(|o| o.instance_type == instance_type && o.zone == zone)
            .map_or(0.0, |o| o.price);
        let image_id = request.launch_template.image_id.clone();
        Some(LaunchedInstance {
            instance_id: id.clone(),
            instance_type,
            zone,
            subnet_id,
            capacity_type: capacity_type(instance.lifecycle(), plan.capacity_type),
            image_id,
            price,
        })
    });
    match launched {
        Some(instance) => Ok(FleetOutcome {
            instance,
            errors,
            reused: false,
        }),
        None if !errors.is_empty() && errors.iter().all(|e| e.class == ErrorClass::Capacity) => {
            Err(LaunchError::NoCapacity { errors })
        }
        None => {
            let first = errors.iter().find(|e| e.class != ErrorClass::Capacity);
            Err(LaunchError::Failed {
                code: first.map_or_else(|| "NoInstanceLaunched".to_owned(), |e| e.code.clone()),
                message: first.map_or_else(
                    || "CreateFleet returned neither an instance nor an error".to_owned(),
                    |e| e.message.clone(),
                ),
                errors,
            })
        }
    }
}
