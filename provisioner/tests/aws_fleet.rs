//! Reading CreateFleet answers, and what their errors do to the
//! unavailable-offerings cache.

use std::time::Instant;

use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::types::{
    CreateFleetError, CreateFleetInstance, FleetLaunchTemplateOverrides, InstanceLifecycle,
    InstanceType as Ec2Type, LaunchTemplateAndOverridesResponse,
};
use spotwright_provisioner::act::aws::fleet::{
    parse_create_fleet_output, FleetRequest, LaunchError, LaunchTemplateRef,
};
use spotwright_provisioner::model::launch::{
    ErrorClass, LaunchPlan, Override, UnavailableOfferings,
};
use spotwright_solver::model::CapacityType;

fn plan() -> LaunchPlan {
    let o = |t: &str, s: &str, z: &str, price: f64| Override {
        instance_type: t.into(),
        subnet_id: s.into(),
        zone: z.into(),
        price,
        arch: Some("amd64".into()),
    };
    LaunchPlan {
        capacity_type: CapacityType::Spot,
        overrides: vec![
            o("c5.large", "subnet-a", "us-east-1a", 0.02),
            o("c5.large", "subnet-b", "us-east-1b", 0.021),
            o("m5.large", "subnet-a", "us-east-1a", 0.03),
        ],
        unmet_min_values: Vec::new(),
    }
}

fn request(plan: LaunchPlan) -> FleetRequest {
    FleetRequest {
        cluster_name: "c".into(),
        nodepool: "default".into(),
        nodeclaim_name: "claim".into(),
        nodeclaim_uid: "uid".into(),
        launch_template: LaunchTemplateRef {
            name: "x86".into(),
            id: "lt-x86".into(),
            image_id: "ami-x86".into(),
        },
        plan,
        tags: Default::default(),
    }
}

fn overrides(instance_type: &str, subnet: &str) -> LaunchTemplateAndOverridesResponse {
    LaunchTemplateAndOverridesResponse::builder()
        .overrides(
            FleetLaunchTemplateOverrides::builder()
                .instance_type(Ec2Type::from(instance_type))
                .subnet_id(subnet)
                .build(),
        )
        .build()
}

fn error(instance_type: &str, subnet: &str, code: &str) -> CreateFleetError {
    CreateFleetError::builder()
        .launch_template_and_overrides(overrides(instance_type, subnet))
        .lifecycle(InstanceLifecycle::Spot)
        .error_code(code)
        .error_message(format!("{code} for {instance_type}"))
        .build()
}

#[test]
fn the_instance_comes_with_its_zone_price_and_the_failed_overrides() {
    let output = CreateFleetOutput::builder()
        .fleet_id("fleet-1")
        .errors(error(
            "c5.large",
            "subnet-a",
            "InsufficientInstanceCapacity",
        ))
        .instances(
            CreateFleetInstance::builder()
                .launch_template_and_overrides(overrides("c5.large", "subnet-b"))
                .lifecycle(InstanceLifecycle::Spot)
                .instance_ids("i-1")
                .instance_type(Ec2Type::C5Large)
                .build(),
        )
        .build();
    let outcome = parse_create_fleet_output(&output, &request(plan())).expect("launched");
    let instance = &outcome.instance;
    assert_eq!(instance.instance_id, "i-1");
    assert_eq!(instance.zone, "us-east-1b");
    assert_eq!(instance.subnet_id.as_deref(), Some("subnet-b"));
    assert_eq!(instance.capacity_type, CapacityType::Spot);
    assert_eq!(instance.price, 0.021);
    assert_eq!(instance.provider_id(), "aws:///us-east-1b/i-1");
    // The amd64 template's image.
    assert_eq!(instance.image_id, "ami-x86");
    assert!(!outcome.reused);
    assert_eq!(outcome.errors.len(), 1);
    let e = &outcome.errors[0];
    assert_eq!(
        (e.zone.as_deref(), e.class.clone()),
        (Some("us-east-1a"), ErrorClass::Capacity)
    );

    let now = Instant::now();
    let mut cache = UnavailableOfferings::default();
    assert_eq!(cache.mark_capacity_errors(&outcome.errors, now), 1);
    assert!(cache.is_unavailable(CapacityType::Spot, "c5.large", "us-east-1a", now));
    assert!(!cache.is_unavailable(CapacityType::Spot, "c5.large", "us-east-1b", now));
}

#[test]
fn a_plan_narrows_to_one_architecture() {
    let mut mixed = plan();
    mixed.overrides[0].arch = Some("arm64".into());
    assert_eq!(mixed.cheapest_arch(), Some("arm64"));
    mixed.retain_arch("amd64");
    assert_eq!(mixed.overrides.len(), 2);
    assert!(mixed
        .overrides
        .iter()
        .all(|o| o.arch.as_deref() == Some("amd64")));
}

#[test]
fn nothing_launched_for_lack_of_capacity_is_no_capacity() {
    let output = CreateFleetOutput::builder()
        .errors(error(
            "c5.large",
            "subnet-a",
            "InsufficientInstanceCapacity",
        ))
        .errors(error(
            "m5.large",
            "subnet-a",
            "MaxSpotInstanceCountExceeded",
        ))
        .build();
    match parse_create_fleet_output(&output, &request(plan())) {
        Err(LaunchError::NoCapacity { errors }) => assert_eq!(errors.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_launched_for_another_reason_is_a_failure_with_its_code() {
    let output = CreateFleetOutput::builder()
        .errors(error(
            "c5.large",
            "subnet-a",
            "InsufficientInstanceCapacity",
        ))
        .errors(error("m5.large", "subnet-a", "InvalidParameterValue"))
        .build();
    match parse_create_fleet_output(&output, &request(plan())) {
        Err(LaunchError::Failed { code, errors, .. }) => {
            assert_eq!(code, "InvalidParameterValue");
            // The capacity error is still there to be marked.
            assert_eq!(
                errors
                    .iter()
                    .filter(|e| e.class == ErrorClass::Capacity)
                    .count(),
                1
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_create_fleet_output(&CreateFleetOutput::builder().build(), &request(plan())),
        Err(LaunchError::Failed { code, .. }) if code == "NoInstanceLaunched"
    ));
}
