//! `spotwright-provisioner` as a local process against the local cluster and
//! moto (or a fault proxy in front of moto), plus the AWS network it
//! launches into.

use std::process::Command;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use super::process::{eventually, Process};
use super::webhook::get;
use super::Env;

pub const PROVISIONER_METRICS_PORT: u16 = 18082;
/// Where the tests publish the EKS AMI parameter (moto refuses `/aws/...`).
pub const AMI_SSM_PREFIX: &str = "/spotwright-local/eks/optimized-ami";
/// Tag that marks the test VPC's subnets and security group.
pub const DISCOVERY_TAG: &str = "spotwright.io/discovery";
pub const CLUSTER_NAME: &str = "spotwright-local";
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

pub struct Provisioner {
    pub process: Process,
}

impl Provisioner {
    /// Starts the provisioner talking to `aws_endpoint` and waits for `/readyz`.
    pub async fn start(
        env: &'static Env,
        name: &str,
        aws_endpoint: &str,
        flags: &[&str],
    ) -> Provisioner {
        let mut command = Command::new(env.bin("spotwright-provisioner"));
        command
            .args(["--cluster-name", CLUSTER_NAME])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{PROVISIONER_METRICS_PORT}"),
            ])
            // One local process: no Lease to wait for after a kill -9.
            .args(["--leader-elect", "false"])
            .args(["--eks-ami-ssm-prefix", AMI_SSM_PREFIX])
            // moto has no Pricing API: the bundled snapshot prices on-demand.
            .args(["--pricing-api", "false"])
            .args(["--orphan-grace", "20s"])
            // Pods bind within the scheduler's 10 s backoff of their node
            // being ready; the default 30 s would add 15 s to every test
            // whose cleanup waits for an empty node to go.
            .args(["--nomination-window", "15s"])
            .args(flags)
            .env("KUBECONFIG", &env.kubeconfig)
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("RUST_LOG", "info,spotwright_provisioner=debug");
        std::fs::create_dir_all(env.state.join("e2e")).expect("e2e state dir");
        let log = env
            .state
            .join("e2e")
            .join(format!("{name}-provisioner.log"));
        let process = Process::spawn("spotwright-provisioner", command, &log);
        eventually(
            "the provisioner's /readyz",
            Duration::from_secs(60),
            || async {
                get(&format!(
                    "http://127.0.0.1:{PROVISIONER_METRICS_PORT}/readyz"
                ))
                .await
                .is_some_and(|(status, _)| status == 200)
            },
        )
        .await;
        Provisioner { process }
    }

    pub async fn metrics(&self) -> String {
        get(&format!(
            "http://127.0.0.1:{PROVISIONER_METRICS_PORT}/metrics"
        ))
        .await
        .map(|(_, body)| body)
        .unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as a crash or an OOM kill.
    pub fn kill9(&mut self) {
        self.process.kill();
    }
}

pub async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&crate::aws::sdk_config().await)
}

pub async fn ssm() -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&crate::aws::sdk_config().await)
}

fn tags(resource: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(
            Tag::builder()
                .key(DISCOVERY_TAG)
                .value(CLUSTER_NAME)
                .build(),
        )
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

/// A VPC with one tagged subnet per zone and a tagged security group, and
/// the EKS AMI parameter for the cluster's version. Idempotent: found by tag.
pub async fn ensure_network(kubernetes_minor: &str) {
    let ec2 = ec2().await;
    let tagged = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{DISCOVERY_TAG}"))
        .values(CLUSTER_NAME)
        .build();
    let subnets = ec2
        .describe_subnets()
        .filters(tagged.clone())
        .send()
        .await
        .expect("DescribeSubnets");
    if subnets.subnets().len() < ZONES.len() {
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.42.0.0/16")
            .tag_specifications(tags(ResourceType::Vpc, "spotwright-e2e"))
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_owned();
        for (i, zone) in ZONES.iter().enumerate() {
            ec2.create_subnet()
                .vpc_id(&vpc_id)
                .availability_zone(*zone)
                .cidr_block(format!("10.42.{i}.0/24"))
                .tag_specifications(tags(
                    ResourceType::Subnet,
                    &format!("spotwright-e2e-{zone}"),
                ))
                .send()
                .await
                .expect("CreateSubnet");
        }
        ec2.create_security_group()
            .group_name("spotwright-e2e-nodes")
            .description("Spotwright e2e nodes")
            .vpc_id(&vpc_id)
            .tag_specifications(tags(ResourceType::SecurityGroup, "spotwright-e2e-nodes"))
            .send()
            .await
            .expect("CreateSecurityGroup");
    }
    // `e2e/cluster up` writes a distinct image for every minor; only a
    // cluster started otherwise lacks the parameter.
    let path = format!("{AMI_SSM_PREFIX}/{kubernetes_minor}/amazon-linux-2023/x86_64/standard/recommended/image_id");
    let ssm = ssm().await;
    if ssm.get_parameter().name(&path).send().await.is_ok() {
        return;
    }
    let image_id = x86_64_images()
        .await
        .into_iter()
        .next()
        .expect("moto ships x86_64 AMIs");
    ssm.put_parameter()
        .name(path)
        .value(image_id)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter");
}

/// A NodeClass on the network [`ensure_network`] makes, with `ami_selector`.
pub fn local_nodeclass(name: &str, ami_selector: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass", "metadata": {"name": name},
        "spec": {
            "amiSelector": ami_selector,
            "subnetSelector": [{"tags": {DISCOVERY_TAG: CLUSTER_NAME}}],
            "securityGroupSelector": [{"tags": {DISCOVERY_TAG: CLUSTER_NAME}}]
        }
    })
}

/// The ids of moto's x86_64 images.
pub async fn x86_64_images() -> Vec<String> {
    let images = ec2()
        .await
        .describe_images()
        .send()
        .await
        .expect("DescribeImages");
    images
        .images()
        .iter()
        .filter(|i| i.architecture().map(|a| a.as_str()) == Some("x86_64"))
        .filter_map(|i| i.image_id().map(str::to_owned))
        .collect()
}

pub const FAULT_PROXY_PORT: u16 = 15001;

/// `spotwright-fault-proxy` in front of moto: CreateFleet overrides of the
/// listed instance types fail with InsufficientInstanceCapacity.
pub struct FaultProxy {
    pub process: Process,
}

impl FaultProxy {
    pub async fn start(env: &'static Env, insufficient_capacity: &[String]) -> FaultProxy {
        let mut command = Command::new(env.bin("spotwright-fault-proxy"));
        command
            .args(["--listen", &format!("127.0.0.1:{FAULT_PROXY_PORT}")])
            .args(["--upstream", "http://127.0.0.1:15000"])
            .args(["--insufficient-capacity", &insufficient_capacity.join(",")]);
        let log = env.state.join("e2e").join("fault-proxy.log");
        let process = Process::spawn("spotwright-fault-proxy", command, &log);
        eventually("the fault proxy", Duration::from_secs(20), || async {
            get(&format!("{}/_fault/calls", Self::url()))
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
        FaultProxy { process }
    }

    pub fn url() -> String {
        format!("http://127.0.0.1:{FAULT_PROXY_PORT}")
    }

    /// `(CreateFleet calls, overrides faulted)` so far.
    pub async fn calls(&self) -> (u64, u64) {
        let body = get(&format!("{}/_fault/calls", Self::url()))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            value["create_fleet_calls"].as_u64().unwrap_or(0),
            value["faults_injected"].as_u64().unwrap_or(0),
        )
    }
}
