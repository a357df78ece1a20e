use super::known::{KnownInstances, Lifecycle};
use super::*;

fn instance(id: &str, running: bool, spot: bool) -> Instance {
    Instance {
        id: id.to_owned(),
        instance_type: "m5.large".to_owned(),
        zone: "us-east-1a".to_owned(),
        running,
        spot,
        private_ip: Some("10.0.0.7".to_owned()),
        private_dns_name: Some(format!("ip-{id}.ec2.internal")),
        image_id: Some("ami-old".to_owned()),
        tags: BTreeMap::from([(keys::NODEPOOL_TAG.to_owned(), "default".to_owned())]),
    }
}

fn types() -> HashMap<String, TypeFacts> {
    let facts = InstanceFacts {
        vcpus: 2,
        memory_mib: 8192,
        max_enis: 3,
        ipv4_per_eni: 10,
    };
    HashMap::from([(
        "m5.large".to_owned(),
        TypeFacts {
            facts,
            arch: "amd64".to_owned(),
        },
    )])
}

fn settings() -> Settings {
    Settings {
        kubelet_version: "v1.36.3".to_owned(),
        image_versions: HashMap::new(),
        zone_ids: HashMap::from([("us-east-1a".to_owned(), "use1-az6".to_owned())]),
        root_volume_gib: 20,
    }
}

fn existing(i: &Instance) -> ExistingNode {
    ExistingNode {
        name: i.node_name(),
        provider_id: Some(i.provider_id()),
    }
}

#[test]
fn a_running_instance_gets_a_node_with_provider_id_labels_and_eks_allocatable() {
    let plan = plan(&[instance("i-1", true, true)], &types(), &[], &settings());
    assert_eq!(plan.create.len(), 1);
    let node = &plan.create[0];
    assert_eq!(node.metadata.name.as_deref(), Some("ip-i-1.ec2.internal"));
    let spec = node.spec.as_ref().unwrap();
    assert_eq!(spec.provider_id.as_deref(), Some("aws:///us-east-1a/i-1"));
    let taints: Vec<&str> = spec
        .taints
        .iter()
        .flatten()
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(
        taints,
        [keys::CAPACITY_TYPE_LABEL, keys::UNREGISTERED_TAINT_KEY],
        "registered as Spotwright's user data asks"
    );
    let labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[keys::CAPACITY_TYPE_LABEL], "spot");
    assert_eq!(labels[keys::NODEPOOL_LABEL], "default");
    assert_eq!(
        labels[keys::ZONE_ID_LABEL],
        "use1-az6",
        "as the cloud node lifecycle sets it"
    );
    assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
    assert_eq!(
        node.metadata.annotations.as_ref().unwrap()[KWOK_ANNOTATION],
        "fake"
    );
    let status = node.status.as_ref().unwrap();
    assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "1930m");
    assert_eq!(status.allocatable.as_ref().unwrap()["pods"].0, "29");
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "2000m");
}

#[test]
fn on_demand_instances_are_labelled_so_and_carry_only_the_registration_taint() {
    let plan = plan(&[instance("i-2", true, false)], &types(), &[], &settings());
    let node = &plan.create[0];
    assert_eq!(
        node.metadata.labels.as_ref().unwrap()[keys::CAPACITY_TYPE_LABEL],
        "on-demand"
    );
    let taints = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
    let taint_keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(taint_keys, [keys::UNREGISTERED_TAINT_KEY]);
}

#[test]
fn nodes_exist_once_and_go_with_their_instance() {
    let up = instance("i-1", true, true);
    let down = instance("i-2", false, true);
    let plan = plan(
        &[up.clone(), down.clone()],
        &types(),
        &[existing(&up), existing(&down)],
        &settings(),
    );
    assert!(plan.create.is_empty());
    assert_eq!(plan.delete, vec![down.node_name()]);
}

#[test]
fn a_node_whose_instance_vanished_is_deleted() {
    let gone = instance("i-9", true, false);
    let plan = plan(&[], &types(), &[existing(&gone)], &settings());
    assert_eq!(plan.delete, vec![gone.node_name()]);
}

#[test]
fn unknown_instance_types_are_reported_not_guessed() {
    let mut odd = instance("i-3", true, false);
    odd.instance_type = "x99.huge".to_owned();
    let plan = plan(&[odd], &types(), &[], &settings());
    assert!(plan.create.is_empty());
    assert_eq!(plan.unknown_types, vec!["x99.huge".to_owned()]);
}

fn system_instance(id: &str, zone: &str, running: bool) -> Instance {
    let mut instance = instance(id, running, false);
    instance.zone = zone.to_owned();
    instance.tags = BTreeMap::from([(keys::EKS_NODEGROUP_TAG.to_owned(), "system".to_owned())]);
    instance
}

#[test]
fn a_system_node_group_instance_is_labelled_and_tainted_as_eks_does() {
    let node = node_for(
        &system_instance("i-sys", "us-east-1a", true),
        &types()["m5.large"],
        &settings(),
    );
    let labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[keys::EKS_NODEGROUP_LABEL], "system");
    assert_eq!(labels[keys::EKS_CAPACITY_TYPE_LABEL], "ON_DEMAND");
    assert!(
        !labels.contains_key(keys::CAPACITY_TYPE_LABEL),
        "no Spotwright label"
    );
    assert!(!labels.contains_key(keys::NODEPOOL_LABEL));
    let taints = node.spec.unwrap().taints.unwrap_or_default();
    assert_eq!(taints.len(), 1);
    assert_eq!(
        (taints[0].key.as_str(), taints[0].effect.as_str()),
        (SYSTEM_TAINT_KEY, "NoSchedule")
    );
}

#[test]
fn the_system_node_group_is_kept_at_its_size_spread_over_zones() {
    let group = SystemNodeGroup {
        name: "system".to_owned(),
        size: 3,
        instance_type: "m5.large".to_owned(),
    };
    let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
    assert_eq!(
        system_launches(&[], &group, &zones),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
    let some = [
        system_instance("i-1", "us-east-1a", true),
        system_instance("i-2", "us-east-1b", false),
        instance("i-spot", true, true),
    ];
    assert_eq!(
        system_launches(&some, &group, &zones),
        ["us-east-1b", "us-east-1c"],
        "a stopped one is replaced"
    );
    let full = [
        system_instance("i-1", "us-east-1a", true),
        system_instance("i-2", "us-east-1b", true),
        system_instance("i-3", "us-east-1b", true),
    ];
    assert!(system_launches(&full, &group, &zones).is_empty());
}

#[test]
fn a_node_reports_the_kubelet_of_the_image_it_was_launched_from() {
    let versions = parse_kubelet_versions("1.35=v1.35.4, 1.36=v1.36.3").unwrap();
    let prefix = "/spotwright-local/eks/optimized-ami";
    let parameters = [
        (
            format!("{prefix}/1.35/amazon-linux-2023/x86_64/standard/recommended/image_id"),
            "ami-old".to_owned(),
        ),
        (
            format!("{prefix}/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"),
            "ami-new".to_owned(),
        ),
        (
            format!("{prefix}/1.99/amazon-linux-2023/x86_64/standard/recommended/image_id"),
            "ami-odd".to_owned(),
        ),
        (
            "/elsewhere/1.35/image_id".to_owned(),
            "ami-other".to_owned(),
        ),
    ];
    let mut settings = settings();
    settings.image_versions = image_versions(&parameters, prefix, &versions);
    assert_eq!(
        settings.image_versions.len(),
        2,
        "{:?}",
        settings.image_versions
    );
    let mut old = instance("i-1", true, true);
    let node = node_for(&old, &types()["m5.large"], &settings);
    let info = node.status.unwrap().node_info.unwrap();
    assert_eq!(info.kubelet_version, "v1.35.4");
    old.image_id = Some("ami-unknown".to_owned());
    assert_eq!(
        settings.kubelet_version_of(&old),
        "v1.36.3",
        "unknown images run the default"
    );
    assert_eq!(
        x86_64_image_of(&parameters, prefix, "v1.36.3").as_deref(),
        Some("ami-new")
    );
    assert_eq!(x86_64_image_of(&parameters, prefix, "v1.34.0"), None);
    assert!(parse_kubelet_versions("1.35").is_err());
    assert!(parse_kubelet_versions("1.35=1.35.4").is_err());
    assert_eq!(parse_kubelet_versions("").unwrap().len(), 0);
}

fn states(pairs: &[(&str, Lifecycle)]) -> Vec<(String, Lifecycle)> {
    pairs.iter().map(|(id, s)| ((*id).to_owned(), *s)).collect()
}

#[test]
fn each_instance_is_described_once_and_ended_ones_never() {
    let mut known = KnownInstances::default();
    let now = states(&[
        ("i-ours", Lifecycle::Starting),
        ("i-theirs", Lifecycle::Running),
        ("i-gone", Lifecycle::Ended),
    ]);
    let unseen = known.unseen(&now);
    assert_eq!(unseen, vec!["i-ours".to_owned(), "i-theirs".to_owned()]);
    known.learn(&unseen, vec![instance("i-ours", false, true)]);
    assert!(
        known.unseen(&now).is_empty(),
        "ours and foreign are both remembered"
    );
    let later = states(&[
        ("i-ours", Lifecycle::Running),
        ("i-theirs", Lifecycle::Running),
        ("i-new", Lifecycle::Running),
    ]);
    assert_eq!(known.unseen(&later), vec!["i-new".to_owned()]);
}

#[test]
fn the_current_state_decides_running_and_a_vanished_instance_is_forgotten() {
    let mut known = KnownInstances::default();
    let ids = vec!["i-a".to_owned(), "i-b".to_owned()];
    known.learn(
        &ids,
        vec![instance("i-a", false, true), instance("i-b", true, true)],
    );
    let now = known.current(&states(&[
        ("i-a", Lifecycle::Running),
        ("i-b", Lifecycle::Stopped),
    ]));
    let running: Vec<(&str, bool)> = now.iter().map(|i| (i.id.as_str(), i.running)).collect();
    assert_eq!(running, vec![("i-a", true), ("i-b", false)]);
    let now = known.current(&states(&[("i-a", Lifecycle::Ended)]));
    assert_eq!(now.len(), 1, "i-b is no longer listed: {now:?}");
    assert!(!now[0].running, "an ended instance is not running");
    assert_eq!(
        known.unseen(&states(&[("i-b", Lifecycle::Running)])),
        vec!["i-b".to_owned()]
    );
}
