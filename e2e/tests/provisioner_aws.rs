//! The provisioner's AWS adapters against moto: the catalog, SSM AMI
//! resolution, selectors, launch templates, CreateFleet and termination.
//!
//! Everything here is tagged for a cluster of its own, so the node agent
//! (which serves `spotwright-local`) leaves these instances alone, and
//! every name carries a per-run suffix, since moto outlives test runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{Filter, InstanceType as Ec2Type, ResourceType, Tag, TagSpecification};
use serde_json::json;
use spotwright_api::keys::{
    CapacityType, CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL, NODECLAIM_TAG, NODEPOOL_LABEL,
    NODEPOOL_TAG,
};
use spotwright_api::v1alpha1::{AmiSelector, ResolvedSubnet, SelectorTerm};
use spotwright_api::{NodeClaim, NodeClass};
use spotwright_provisioner::act::aws::ami::{resolve_amis, AmiError, EKS_LATEST_ALIAS};
use spotwright_provisioner::act::aws::catalog::{fetch_instance_types, Arch, SpotPrices};
use spotwright_provisioner::act::aws::fleet::{
    self, describe_instances_by_cluster_tag, ensure_launch_template, find_instance_for_claim,
    template::delete_unused_launch_templates, terminate_instances, userdata, ClusterSettings,
    FleetRequest, LaunchTemplateSpec, NodeBootstrap,
};
use spotwright_provisioner::act::aws::network::{resolve_security_groups, resolve_subnets};
use spotwright_provisioner::act::ec2_launcher::Ec2Launcher;
use spotwright_provisioner::act::launcher::Launcher;
use spotwright_provisioner::model::launch::{plan_overrides, Lookup, NewNodeLaunch};
use tokio::sync::Mutex;

const CLUSTER: &str = "spotwright-aws-e2e";
const AMI_PREFIX: &str = "/spotwright-test/eks/optimized-ami";

/// One test at a time: they share moto's account.
static SERIAL: Mutex<()> = Mutex::const_new(());

struct Aws {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
}

async fn aws() -> Aws {
    // Brings the local cluster (and moto) up and exports AWS_ENDPOINT_URL etc.
    spotwright_e2e::harness::env();
    let config = spotwright_provisioner::act::aws::config::sdk_config().await;
    Aws {
        ec2: aws_sdk_ec2::Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos % (1 << 40))
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tagged(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
        .build()
}

async fn any_image(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2.describe_images().send().await.expect("DescribeImages");
    images
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto ships AMIs")
        .to_owned()
}

/// A VPC with two tagged subnets (us-east-1a, us-east-1b), an untagged
/// one, and a tagged security group.
struct Network {
    discovery: String,
    subnets: Vec<String>,
    untagged_subnet: String,
    security_group: String,
}

async fn network(ec2: &aws_sdk_ec2::Client, id: &str) -> Network {
    let discovery = format!("e2e-{id}");
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnets = Vec::new();
    for (zone, cidr, tagged_for_us) in [
        ("us-east-1a", "10.42.1.0/24", true),
        ("us-east-1b", "10.42.2.0/24", true),
        ("us-east-1c", "10.42.3.0/24", false),
    ] {
        let mut request = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(zone);
        if tagged_for_us {
            request = request.tag_specifications(tagged(
                ResourceType::Subnet,
                &[("spotwright.io/discovery", &discovery), ("tier", "private")],
            ));
        }
        let subnet = request.send().await.expect("CreateSubnet");
        subnets.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_owned(),
        );
    }
    let group = ec2
        .create_security_group()
        .group_name(format!("nodes-{id}"))
        .description("spotwright e2e nodes")
        .vpc_id(&vpc_id)
        .tag_specifications(tagged(
            ResourceType::SecurityGroup,
            &[("spotwright.io/discovery", &discovery)],
        ))
        .send()
        .await
        .expect("CreateSecurityGroup");
    let untagged_subnet = subnets.pop().expect("three subnets");
    Network {
        discovery,
        subnets,
        untagged_subnet,
        security_group: group.group_id().expect("group id").to_owned(),
    }
}

/// A fresh network and the subnets its discovery tag resolves to.
async fn network_and_subnets(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> (Network, Vec<ResolvedSubnet>) {
    let net = network(ec2, id).await;
    let subnets = resolve_subnets(ec2, &discovery_terms(&net.discovery))
        .await
        .expect("subnets");
    (net, subnets)
}

/// moto's instance types, Spot priced from its price history.
async fn catalog(ec2: &aws_sdk_ec2::Client) -> Vec<spotwright_solver::model::InstanceType> {
    fetch_instance_types(ec2, &Default::default(), SpotPrices::History, 20)
        .await
        .expect("catalog")
}

fn discovery_terms(discovery: &str) -> Vec<SelectorTerm> {
    vec![SelectorTerm {
        tags: BTreeMap::from([("spotwright.io/discovery".to_owned(), discovery.to_owned())]),
        id: None,
    }]
}

#[tokio::test]
async fn the_catalog_from_moto_has_zonal_offerings_and_eks_allocatable() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let types = catalog(&aws.ec2).await;
    assert!(types.len() > 100, "{} types", types.len());
    let m5 = types
        .iter()
        .find(|t| t.name == "m5.large")
        .expect("m5.large");
    let zones: BTreeSet<&str> = m5.offerings.iter().map(|o| o.zone.as_str()).collect();
    assert!(
        zones.contains("us-east-1a") && zones.len() >= 3,
        "{zones:?}"
    );
    assert!(zones.iter().all(|z| z.starts_with("us-east-1")));
    assert_eq!(m5.allocatable.cpu_millis, 1930);
    assert_eq!(m5.allocatable.pods, 29);
    assert_eq!(m5.labels["spotwright.io/instance-family"], "m5");
    // moto's Spot history is a flat $0.00001 for "Linux/UNIX (Amazon VPC)",
    // which we do not read; the snapshot's model prices Spot instead.
    for offering in &m5.offerings {
        match offering.capacity_type {
            CapacityType::OnDemand => assert_eq!(offering.price, 0.096),
            CapacityType::Spot => assert!((offering.price - 0.096 * 0.3).abs() < 1e-9),
        }
    }
    assert!(types
        .iter()
        .any(|t| t.labels["kubernetes.io/arch"] == "arm64"));
}

#[tokio::test]
async fn eks_latest_resolves_one_ami_per_arch_under_the_configured_prefix() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let image = any_image(&aws.ec2).await;
    for arch in ["x86_64", "arm64"] {
        aws.ssm
            .put_parameter()
            .name(format!(
                "{AMI_PREFIX}/1.36/amazon-linux-2023/{arch}/standard/recommended/image_id"
            ))
            .value(&image)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .expect("PutParameter");
    }
    let alias = AmiSelector {
        alias: Some(EKS_LATEST_ALIAS.into()),
        ssm_parameter: None,
    };
    let amis = resolve_amis(&aws.ssm, &alias, AMI_PREFIX, "v1.36.3")
        .await
        .expect("AMIs");
    let arches: Vec<Option<Arch>> = amis.iter().map(|a| a.arch).collect();
    assert_eq!(arches, [Some(Arch::Amd64), Some(Arch::Arm64)]);
    assert!(amis.iter().all(|a| a.id == image));
    assert!(amis[1]
        .source
        .ends_with("/1.36/amazon-linux-2023/arm64/standard/recommended/image_id"));

    let explicit = AmiSelector {
        alias: None,
        ssm_parameter: Some(amis[0].source.clone()),
    };
    let one = resolve_amis(&aws.ssm, &explicit, AMI_PREFIX, "ignored")
        .await
        .expect("AMI");
    assert_eq!((one.len(), one[0].arch), (1, None));

    // A control plane on a version nobody published: a GetParameter error.
    let missing = resolve_amis(&aws.ssm, &alias, AMI_PREFIX, "v1.99.0").await;
    assert!(
        matches!(&missing, Err(AmiError::Call(e)) if e.operation == "GetParameter"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn subnets_and_security_groups_resolve_from_tags_and_ids() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let net = network(&aws.ec2, &run_id()).await;
    let mut subnets = resolve_subnets(&aws.ec2, &discovery_terms(&net.discovery))
        .await
        .expect("subnets");
    // Each subnet names its zone's id too (`topology.k8s.aws/zone-id` on nodes).
    for subnet in &mut subnets {
        let zone_id = subnet.zone_id.take().unwrap_or_default();
        assert!(zone_id.starts_with("use1-az"), "{subnet:?}: {zone_id:?}");
    }
    let mut expected = vec![
        ResolvedSubnet {
            id: net.subnets[0].clone(),
            zone: "us-east-1a".into(),
            zone_id: None,
        },
        ResolvedSubnet {
            id: net.subnets[1].clone(),
            zone: "us-east-1b".into(),
            zone_id: None,
        },
    ];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(subnets, expected);

    // OR over terms: the tag term plus the untagged subnet by id; `*` values.
    let mut terms = vec![SelectorTerm {
        tags: BTreeMap::from([
            ("spotwright.io/discovery".to_owned(), net.discovery.clone()),
            ("tier".to_owned(), "*".to_owned()),
        ]),
        id: None,
    }];
    terms.push(SelectorTerm {
        tags: BTreeMap::new(),
        id: Some(net.untagged_subnet.clone()),
    });
    let all = resolve_subnets(&aws.ec2, &terms).await.expect("subnets");
    assert_eq!(all.len(), 3);
    assert!(all
        .iter()
        .any(|s| s.id == net.untagged_subnet && s.zone == "us-east-1c"));

    let groups = resolve_security_groups(&aws.ec2, &discovery_terms(&net.discovery))
        .await
        .expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].id, net.security_group);
    // An empty term selects nothing rather than everything.
    assert!(resolve_subnets(&aws.ec2, &[SelectorTerm::default()])
        .await
        .expect("none")
        .is_empty());
}

fn template_spec(image: &str, security_group: &str, id: &str) -> LaunchTemplateSpec {
    let settings = ClusterSettings {
        name: CLUSTER.into(),
        endpoint: "https://127.0.0.1:6443".into(),
        certificate_authority: "Q0E=".into(),
        service_cidr: None,
    };
    LaunchTemplateSpec {
        cluster_name: CLUSTER.into(),
        node_class: format!("default-{id}"),
        image_id: image.into(),
        user_data: userdata::render(
            &settings,
            &NodeBootstrap::default(),
            Some("#!/bin/bash\necho e2e\n"),
        ),
        security_group_ids: vec![security_group.into()],
        tags: BTreeMap::from([("team".to_owned(), "e2e".to_owned())]),
        ..Default::default()
    }
}

#[tokio::test]
async fn launch_templates_are_created_once() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let id = run_id();
    let net = network(&aws.ec2, &id).await;
    let spec = template_spec(&any_image(&aws.ec2).await, &net.security_group, &id);
    let first = ensure_launch_template(&aws.ec2, &spec)
        .await
        .expect("created");
    let again = ensure_launch_template(&aws.ec2, &spec)
        .await
        .expect("found");
    assert_eq!(first, again);
    assert_eq!(first.name, spec.name());
    let listed = aws
        .ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(&first.name)
                .build(),
        )
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert_eq!(listed.launch_templates().len(), 1);
}

#[tokio::test]
async fn unused_launch_templates_are_deleted() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let id = run_id();
    let net = network(&aws.ec2, &id).await;
    let image = any_image(&aws.ec2).await;
    let keep = template_spec(&image, &net.security_group, &id);
    let old = LaunchTemplateSpec {
        image_id: "ami-00000000000000old".into(),
        ..keep.clone()
    };
    let kept = ensure_launch_template(&aws.ec2, &keep).await.expect("kept");
    let stale = ensure_launch_template(&aws.ec2, &old).await.expect("stale");
    let deleted =
        delete_unused_launch_templates(&aws.ec2, CLUSTER, std::slice::from_ref(&kept.name))
            .await
            .expect("deleted");
    assert!(deleted.contains(&stale.name), "{deleted:?}");
    assert!(!deleted.contains(&kept.name));
    let again = ensure_launch_template(&aws.ec2, &keep)
        .await
        .expect("still there");
    assert_eq!(again.id, kept.id);
}

async fn instances_of_claim(ec2: &aws_sdk_ec2::Client, claim: &str) -> Vec<String> {
    describe_instances_by_cluster_tag(ec2, CLUSTER)
        .await
        .expect("instances")
        .into_iter()
        .filter(|i| i.is_live() && i.tags.get(NODECLAIM_TAG).map(String::as_str) == Some(claim))
        .map(|i| i.id)
        .collect()
}

#[tokio::test]
async fn create_fleet_launches_one_tagged_spot_instance_per_claim() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let id = run_id();
    let (net, subnets) = network_and_subnets(&aws.ec2, &id).await;
    let catalog = catalog(&aws.ec2).await;
    let plan = plan_overrides(
        &NewNodeLaunch {
            instance_types: vec!["c5.large".into(), "m5.large".into(), "m6i.large".into()],
            zones: None,
            capacity_types: vec![CapacityType::Spot, CapacityType::OnDemand],
            requirements: Vec::new(),
        },
        &subnets,
        &catalog,
    )
    .expect("plan");
    assert_eq!(plan.capacity_type, CapacityType::Spot);
    assert!(plan.overrides.len() >= 2, "{:?}", plan.overrides);
    let template = ensure_launch_template(
        &aws.ec2,
        &template_spec(&any_image(&aws.ec2).await, &net.security_group, &id),
    )
    .await
    .expect("template");
    let claim = format!("claim-{id}");
    let request = FleetRequest {
        cluster_name: CLUSTER.into(),
        nodepool: "default".into(),
        nodeclaim_name: claim.clone(),
        nodeclaim_uid: format!("uid-{id}"),
        launch_template: template.clone(),
        plan: plan.clone(),
        tags: BTreeMap::from([("team".to_owned(), "e2e".to_owned())]),
    };

    // A claim this process just made: no lookup, straight to CreateFleet.
    let launched = fleet::launch(&aws.ec2, &request, Lookup::Skip)
        .await
        .expect("launch");
    assert!(!launched.reused);
    let instance = &launched.instance;
    assert_eq!(instance.capacity_type, CapacityType::Spot);
    // moto fills an instant fleet from its first override: the cheapest.
    assert_eq!(instance.instance_type, plan.overrides[0].instance_type);
    assert_eq!(instance.zone, plan.overrides[0].zone);
    assert_eq!(instance.image_id, template.image_id);
    assert!(instance.price > 0.0);

    let found = find_instance_for_claim(&aws.ec2, CLUSTER, &claim, &request.nodeclaim_uid)
        .await
        .expect("lookup")
        .expect("the launched instance");
    assert_eq!(found.id, instance.instance_id);
    assert_eq!(found.capacity_type, CapacityType::Spot);
    assert_eq!(found.zone, instance.zone);
    for (key, value) in [
        (format!("kubernetes.io/cluster/{CLUSTER}"), "owned"),
        (NODEPOOL_TAG.to_owned(), "default"),
        (NODECLAIM_TAG.to_owned(), claim.as_str()),
        ("team".to_owned(), "e2e"),
    ] {
        assert_eq!(
            found.tags.get(&key).map(String::as_str),
            Some(value),
            "{key}: {:?}",
            found.tags
        );
    }

    // A retry of the same claim (a crash before the NodeClaim was updated)
    // finds the instance instead of launching another.
    let retried = fleet::launch(&aws.ec2, &request, Lookup::First)
        .await
        .expect("retry");
    assert!(retried.reused);
    assert_eq!(retried.instance.instance_id, instance.instance_id);
    assert_eq!(
        instances_of_claim(&aws.ec2, &claim).await,
        std::slice::from_ref(&instance.instance_id)
    );

    // Same claim name, another UID (the claim was deleted and recreated):
    // the old instance is not adopted.
    let other_uid = FleetRequest {
        nodeclaim_uid: format!("other-{id}"),
        ..request.clone()
    };
    assert!(
        find_instance_for_claim(&aws.ec2, CLUSTER, &claim, &other_uid.nodeclaim_uid)
            .await
            .expect("lookup")
            .is_none()
    );

    // moto ignores CreateFleet's ClientToken: a second call with the same
    // token launches a second instance. That is why `launch` looks first.
    let duplicate = fleet::create_fleet(&aws.ec2, &request)
        .await
        .expect("second fleet");
    assert_ne!(duplicate.instance.instance_id, instance.instance_id);
    let ids = instances_of_claim(&aws.ec2, &claim).await;
    assert_eq!(ids.len(), 2, "{ids:?}");

    let gone = terminate_instances(&aws.ec2, CLUSTER, &ids)
        .await
        .expect("terminate");
    assert_eq!(gone.terminated.len(), 2);
    assert!(instances_of_claim(&aws.ec2, &claim).await.is_empty());
}

#[tokio::test]
async fn each_architecture_launches_from_its_own_template_and_image() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let id = run_id();
    let (net, subnets) = network_and_subnets(&aws.ec2, &id).await;
    let images = aws
        .ec2
        .describe_images()
        .send()
        .await
        .expect("DescribeImages");
    let ids: Vec<String> = images
        .images()
        .iter()
        .filter_map(|i| i.image_id().map(str::to_owned))
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2, "moto ships several AMIs");
    let prefix = format!("{AMI_PREFIX}-{id}");
    for (arch, image) in [("x86_64", &ids[0]), ("arm64", &ids[1])] {
        aws.ssm
            .put_parameter()
            .name(format!(
                "{prefix}/1.36/amazon-linux-2023/{arch}/standard/recommended/image_id"
            ))
            .value(image)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .expect("PutParameter");
    }
    let node_class = spotwright_api::v1alpha1::NodeClassSpec {
        ami_selector: AmiSelector {
            alias: Some(EKS_LATEST_ALIAS.into()),
            ssm_parameter: None,
        },
        user_data: Some("#!/bin/bash\necho arch\n".into()),
        ..Default::default()
    };
    let images = resolve_amis(&aws.ssm, &node_class.ami_selector, &prefix, "v1.36.3")
        .await
        .expect("AMIs");
    let settings = ClusterSettings {
        name: CLUSTER.into(),
        endpoint: "https://127.0.0.1:6443".into(),
        certificate_authority: "Q0E=".into(),
        service_cidr: None,
    };
    let mut templates = BTreeMap::new();
    for image in &images {
        let spec = LaunchTemplateSpec::for_node_class(
            &settings,
            &format!("arch-{id}"),
            &node_class,
            image,
            vec![net.security_group.clone()],
            &NodeBootstrap::default(),
        );
        let arch = image.arch.expect("eks@latest names the arch").kubernetes();
        templates.insert(
            arch,
            ensure_launch_template(&aws.ec2, &spec)
                .await
                .expect("template"),
        );
    }
    assert_eq!(templates.len(), 2);
    assert_ne!(templates["amd64"].name, templates["arm64"].name);

    let catalog = catalog(&aws.ec2).await;
    let mut plan = plan_overrides(
        &NewNodeLaunch {
            instance_types: vec!["m5.large".into(), "m6g.large".into()],
            zones: None,
            capacity_types: vec![CapacityType::Spot],
            requirements: Vec::new(),
        },
        &subnets,
        &catalog,
    )
    .expect("plan");
    // Graviton is the cheaper Spot offering under the snapshot's model; the
    // launch goes with its template, and only arm64 overrides.
    let arch = plan.cheapest_arch().expect("arch").to_owned();
    assert_eq!(arch, "arm64");
    plan.retain_arch(&arch);
    assert!(plan
        .overrides
        .iter()
        .all(|o| o.instance_type == "m6g.large"));
    let request = FleetRequest {
        cluster_name: CLUSTER.into(),
        nodepool: "default".into(),
        nodeclaim_name: format!("arch-{id}"),
        nodeclaim_uid: format!("arch-uid-{id}"),
        launch_template: templates[arch.as_str()].clone(),
        plan,
        tags: BTreeMap::new(),
    };
    let launched = fleet::launch(&aws.ec2, &request, Lookup::First)
        .await
        .expect("launch");
    assert_eq!(launched.instance.instance_type, "m6g.large");
    assert_eq!(launched.instance.image_id, ids[1]);
    let found = find_instance_for_claim(
        &aws.ec2,
        CLUSTER,
        &request.nodeclaim_name,
        &request.nodeclaim_uid,
    )
    .await
    .expect("lookup")
    .expect("instance");
    assert_eq!(found.image_id.as_deref(), Some(ids[1].as_str()));
    terminate_instances(&aws.ec2, CLUSTER, &[found.id])
        .await
        .expect("terminate");
}

#[tokio::test]
async fn only_the_clusters_instances_are_terminated_and_listed() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let image = any_image(&aws.ec2).await;
    let run = |tags: Vec<(&'static str, String)>| {
        let ec2 = aws.ec2.clone();
        let image = image.clone();
        async move {
            let mut request = ec2
                .run_instances()
                .image_id(image)
                .instance_type(Ec2Type::T3Micro)
                .min_count(1)
                .max_count(1);
            if !tags.is_empty() {
                let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
                request = request.tag_specifications(tagged(ResourceType::Instance, &tags));
            }
            let reply = request.send().await.expect("RunInstances");
            reply.instances()[0].instance_id().expect("id").to_owned()
        }
    };
    let cluster_tag = spotwright_api::keys::cluster_tag_key(CLUSTER);
    let ours = run(vec![]).await;
    aws.ec2
        .create_tags()
        .resources(&ours)
        .tags(tag(&cluster_tag, "owned"))
        .send()
        .await
        .expect("CreateTags");
    let foreign = run(vec![("team", "someone-else".to_owned())]).await;

    let listed = describe_instances_by_cluster_tag(&aws.ec2, CLUSTER)
        .await
        .expect("list");
    let mine = listed
        .iter()
        .find(|i| i.id == ours)
        .expect("ours is listed");
    assert!(mine.launch_time.is_some());
    assert!(!listed.iter().any(|i| i.id == foreign));

    let ids = vec![
        ours.clone(),
        foreign.clone(),
        "i-0000000000000dead".to_owned(),
    ];
    let outcome = terminate_instances(&aws.ec2, CLUSTER, &ids)
        .await
        .expect("terminate");
    assert_eq!(outcome.terminated, std::slice::from_ref(&ours));
    assert_eq!(
        outcome.refused,
        [foreign.clone(), "i-0000000000000dead".to_owned()]
    );
    let states = aws
        .ec2
        .describe_instances()
        .instance_ids(&ours)
        .instance_ids(&foreign)
        .send()
        .await
        .expect("DescribeInstances");
    for instance in states.reservations().iter().flat_map(|r| r.instances()) {
        let state = instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned());
        let expected = if instance.instance_id() == Some(ours.as_str()) {
            ["shutting-down", "terminated"].as_slice()
        } else {
            ["pending", "running"].as_slice()
        };
        assert!(
            state.as_deref().is_some_and(|s| expected.contains(&s)),
            "{state:?}"
        );
    }
    aws.ec2
        .terminate_instances()
        .instance_ids(&foreign)
        .send()
        .await
        .expect("cleanup");
}

/// A launch through the launcher: one claim of `m5.large` Spot.
fn m5_claim(id: &str, number: u32, class: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": format!("claim-{id}-{number}"), "uid": format!("uid-{id}-{number}"),
                     "labels": {NODEPOOL_LABEL: "default"}},
        "spec": {
            "nodeClassRef": {"name": class},
            "requirements": [
                {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": ["m5.large"]},
                {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": ["spot"]}
            ]
        }
    }))
    .expect("claim manifest")
}

async fn cluster_templates(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Vec<String> {
    let listed = ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name(format!("tag:kubernetes.io/cluster/{cluster}"))
                .values("owned")
                .build(),
        )
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    listed
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name().map(str::to_owned))
        .collect()
}

/// The launcher keeps the templates it made; one deleted behind its back is
/// made again instead of failing every later launch.
#[tokio::test]
async fn the_launcher_makes_its_template_again_after_it_was_deleted() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let id = run_id();
    let (net, subnets) = network_and_subnets(&aws.ec2, &id).await;
    let cluster = format!("{CLUSTER}-{id}");
    let launcher = Ec2Launcher::new(
        aws.ec2.clone(),
        ClusterSettings {
            name: cluster.clone(),
            endpoint: "https://127.0.0.1:6443".into(),
            certificate_authority: String::new(),
            service_cidr: None,
        },
    );
    let catalog = catalog(&aws.ec2).await;
    launcher.set_instance_types(catalog);
    let class_name = format!("class-{id}");
    let class: NodeClass = serde_json::from_value(json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass",
        "metadata": {"name": class_name},
        "spec": {"amiSelector": {"alias": "eks@latest"}},
        "status": {
            "amis": [{"id": any_image(&aws.ec2).await}],
            "subnets": subnets,
            "securityGroups": [{"id": net.security_group}]
        }
    }))
    .expect("class manifest");

    let first = launcher
        .launch(&m5_claim(&id, 1, &class_name), &class, Lookup::Skip)
        .await
        .expect("first launch");
    let made = cluster_templates(&aws.ec2, &cluster).await;
    assert_eq!(made.len(), 1, "{made:?}");
    aws.ec2
        .delete_launch_template()
        .launch_template_name(&made[0])
        .send()
        .await
        .expect("DeleteLaunchTemplate");
    assert!(cluster_templates(&aws.ec2, &cluster).await.is_empty());

    let second = launcher
        .launch(&m5_claim(&id, 2, &class_name), &class, Lookup::Skip)
        .await
        .expect("a launch after the template was deleted");
    assert_eq!(cluster_templates(&aws.ec2, &cluster).await, made);
    assert_ne!(first.instance_id, second.instance_id);
    assert_eq!(second.instance_type, "m5.large");
    assert_eq!(second.capacity_type, CapacityType::Spot);
    aws.ec2
        .terminate_instances()
        .instance_ids(first.instance_id)
        .instance_ids(second.instance_id)
        .send()
        .await
        .expect("TerminateInstances");
}
