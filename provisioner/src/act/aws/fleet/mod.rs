//! Launching: launch templates, CreateFleet (`instant`, one instance), the
//! cluster's instances. [`outcome`] reads CreateFleet's answer without I/O.

pub mod instances;
pub mod outcome;
pub mod template;
pub mod userdata;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, InstanceType as Ec2InstanceType,
    OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest, Tag,
    TagSpecification, TargetCapacitySpecificationRequest,
};
use spotwright_api::keys::{cluster_tag_key, NODECLAIM_TAG, NODEPOOL_TAG};
use spotwright_solver::model::CapacityType;

use crate::act::aws::error::{sdk_error, SdkCallError};
use crate::model::launch::{classify, ErrorClass, LaunchPlan, Lookup, OverrideError};
pub use instances::{
    describe_instances_by_cluster_tag, find_instance_for_claim, terminate_instances,
    ClusterInstance, Termination, NODECLAIM_UID_TAG,
};
pub use outcome::parse_create_fleet_output;
pub use template::{ensure_launch_template, LaunchTemplateRef, LaunchTemplateSpec};
pub use userdata::{ClusterSettings, NodeBootstrap};

/// One NodeClaim's launch.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetRequest {
    pub cluster_name: String,
    pub nodepool: String,
    pub nodeclaim_name: String,
    /// The NodeClaim's UID: CreateFleet's client token and a tag.
    pub nodeclaim_uid: String,
    /// The template (AMI) of the plan's architecture: narrow a mixed plan
    /// with `LaunchPlan::retain_arch` first.
    pub launch_template: LaunchTemplateRef,
    pub plan: LaunchPlan,
    /// The NodeClass's `tags`, put on the instance too.
    pub tags: BTreeMap<String, String>,
}

impl FleetRequest {
    /// Instance (and fleet) tags: the NodeClass's, then ours, which win.
    pub fn instance_tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        tags.insert(cluster_tag_key(&self.cluster_name), "owned".to_owned());
        tags.insert(NODEPOOL_TAG.to_owned(), self.nodepool.clone());
        tags.insert(NODECLAIM_TAG.to_owned(), self.nodeclaim_name.clone());
        tags.insert(NODECLAIM_UID_TAG.to_owned(), self.nodeclaim_uid.clone());
        tags
    }
}

/// The instance a launch produced (or found).
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchedInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: Option<String>,
    pub capacity_type: CapacityType,
    pub image_id: String,
    /// $/hour of the override it came from; 0 when unknown.
    pub price: f64,
}

impl LaunchedInstance {
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.instance_id)
    }
}

/// A successful launch.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetOutcome {
    pub instance: LaunchedInstance,
    /// Overrides that failed on the way (mark the capacity ones unavailable).
    pub errors: Vec<OverrideError>,
    /// `true` when the instance came from an earlier attempt (the lookup).
    pub reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Every override failed for lack of capacity: mark them and solve again.
    #[error("no capacity in any of the {} failed overrides (first: {})", errors.len(), first_code(errors))]
    NoCapacity { errors: Vec<OverrideError> },
    /// Too many calls: retry the same launch after `retry_after`.
    #[error("throttled, retry after {retry_after:?}: {source}")]
    Throttled {
        retry_after: std::time::Duration,
        source: SdkCallError,
    },
    /// Nothing launched for another reason (bad template, permissions...).
    #[error("launch failed: {code}: {message}")]
    Failed {
        code: String,
        message: String,
        /// Per-override errors, when CreateFleet returned some.
        errors: Vec<OverrideError>,
    },
    #[error("launch plan has no overrides")]
    EmptyPlan,
}

fn first_code(errors: &[OverrideError]) -> &str {
    errors.first().map_or("none", |e| e.code.as_str())
}

impl From<SdkCallError> for LaunchError {
    fn from(err: SdkCallError) -> Self {
        match err.code.as_deref().map(classify) {
            Some(ErrorClass::Throttled { retry_after }) => LaunchError::Throttled {
                retry_after,
                source: err,
            },
            _ => LaunchError::Failed {
                code: err.code.clone().unwrap_or_else(|| err.operation.to_owned()),
                message: err.to_string(),
                errors: Vec::new(),
            },
        }
    }
}

fn tag_specification(
    resource_type: ResourceType,
    tags: &BTreeMap<String, String>,
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// The one launch-template config: the template with every override.
fn launch_template_config(request: &FleetRequest) -> FleetLaunchTemplateConfigRequest {
    let overrides = request
        .plan
        .overrides
        .iter()
        .map(|o| {
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(Ec2InstanceType::from(o.instance_type.as_str()))
                .subnet_id(&o.subnet_id)
                .build()
        })
        .collect();
    FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(
            FleetLaunchTemplateSpecificationRequest::builder()
                .launch_template_name(&request.launch_template.name)
                .version("$Latest")
                .build(),
        )
        .set_overrides(Some(overrides))
        .build()
}

/// The CreateFleet call of `request`, as the SDK's fluent builder.
fn create_fleet_call(
    ec2: &aws_sdk_ec2::Client,
    request: &FleetRequest,
) -> aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder {
    let default_type = match request.plan.capacity_type {
        CapacityType::Spot => DefaultTargetCapacityType::Spot,
        CapacityType::OnDemand => DefaultTargetCapacityType::OnDemand,
    };
    let tags = request.instance_tags();
    ec2.create_fleet()
        .r#type(FleetType::Instant)
        .client_token(&request.nodeclaim_uid)
        .launch_template_configs(launch_template_config(request))
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(1)
                .default_target_capacity_type(default_type)
                .build(),
        )
        .spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .build(),
        )
        .on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                .build(),
        )
        .tag_specifications(tag_specification(ResourceType::Instance, &tags))
        .tag_specifications(tag_specification(ResourceType::Fleet, &tags))
}

/// Calls CreateFleet once for `request`.
pub async fn create_fleet(
    ec2: &aws_sdk_ec2::Client,
    request: &FleetRequest,
) -> Result<FleetOutcome, LaunchError> {
    if request.plan.overrides.is_empty() {
        return Err(LaunchError::EmptyPlan);
    }
    let output = create_fleet_call(ec2, request)
        .send()
        .await
        .map_err(sdk_error("CreateFleet"))?;
    parse_create_fleet_output(&output, request)
}

/// Launches the NodeClaim's instance unless an earlier attempt already did
/// (looked for first with [`Lookup::First`]): the crash-safe entry point.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    request: &FleetRequest,
    lookup: Lookup,
) -> Result<FleetOutcome, LaunchError> {
    let existing = match lookup {
        Lookup::Skip => None,
        Lookup::First => {
            find_instance_for_claim(
                ec2,
                &request.cluster_name,
                &request.nodeclaim_name,
                &request.nodeclaim_uid,
            )
            .await?
        }
    };
    if let Some(found) = existing {
        let price = request
            .plan
            .overrides
            .iter()
            .find(|o| o.instance_type == found.instance_type && o.zone == found.zone)
            .map_or(0.0, |o| o.price);
        let image_id = found
            .image_id
            .clone()
            .unwrap_or_else(|| request.launch_template.image_id.clone());
        return Ok(FleetOutcome {
            instance: LaunchedInstance {
                instance_id: found.id,
                instance_type: found.instance_type,
                zone: found.zone,
                subnet_id: found.subnet_id,
                capacity_type: found.capacity_type,
                image_id,
                price,
            },
            errors: Vec::new(),
            reused: true,
        });
    }
    create_fleet(ec2, request).await
}
