//! `spotwright-node-agent`: Nodes for the local cluster's EC2 instances (moto).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use spotwright_e2e::node_agent::known::KnownInstances;
use spotwright_e2e::node_agent::pace::{self, Pace};
use spotwright_e2e::node_agent::{self, ec2, nodes, Settings, SystemNodeGroup, TypeFacts};
use spotwright_serving::telemetry::{self, LogFormat};

/// The zones the system node group spreads over.
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-node-agent",
    about = "Plays the kubelet and the cloud node lifecycle for the local cluster"
)]
struct Cli {
    /// Instances tagged `kubernetes.io/cluster/<name>: owned` get Nodes.
    #[arg(
        long,
        env = "SPOTWRIGHT_CLUSTER_NAME",
        default_value = "spotwright-local"
    )]
    cluster_name: String,
    /// How often EC2 is compared with the Nodes, in milliseconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_NODE_AGENT_INTERVAL_MS",
        default_value_t = 1000
    )]
    interval_ms: u64,
    /// How soon the agent looks again after a look that registered Nodes, in
    /// milliseconds, so that the rest of a launch burst registers with it; 0:
    /// the interval.
    #[arg(
        long,
        env = "SPOTWRIGHT_NODE_AGENT_FOLLOW_UP_MS",
        default_value_t = 100
    )]
    follow_up_ms: u64,
    /// The kubelet version a Node reports when its image is not one of the EKS AMI parameters.
    #[arg(long, env = "SPOTWRIGHT_KUBELET_VERSION", default_value = "v1.36.3")]
    kubelet_version: String,
    /// The kubelet version of each Kubernetes minor's image: `1.35=v1.35.4,1.36=v1.36.3`.
    #[arg(long, env = "SPOTWRIGHT_KUBELET_VERSIONS", default_value = "")]
    kubelet_versions: String,
    /// Where the EKS-optimized AMI parameters are (`<prefix>/<minor>/.../image_id`): a node
    /// reports the kubelet of the minor whose parameter names its image. Empty: none.
    #[arg(long, env = "SPOTWRIGHT_EKS_AMI_SSM_PREFIX", default_value = "")]
    ami_ssm_prefix: String,
    /// The on-demand managed node group the agent keeps running, as EKS does
    /// (instances tagged eks:nodegroup-name, nodes labelled
    /// eks.amazonaws.com/nodegroup and tainted CriticalAddonsOnly); empty: none.
    #[arg(long, env = "SPOTWRIGHT_SYSTEM_NODE_GROUP", default_value = "system")]
    system_node_group: String,
    /// How many nodes the system node group has.
    #[arg(long, env = "SPOTWRIGHT_SYSTEM_NODES", default_value_t = 2)]
    system_nodes: usize,
    /// The system node group's instance type.
    #[arg(long, default_value = "m5.large")]
    system_instance_type: String,
    /// Root volume size in GiB (ephemeral-storage capacity).
    #[arg(long, default_value_t = spotwright_api::eks::DEFAULT_ROOT_VOLUME_GIB)]
    root_volume_gib: u64,
    #[arg(
        long,
        env = "SPOTWRIGHT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Err(err) = run(cli).await {
        eprintln!("spotwright-node-agent: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let kube = spotwright_e2e::named_client("spotwright-node-agent")
        .await
        .context("configuring the Kubernetes client")?;
    let aws = spotwright_e2e::aws::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&aws);
    let mut images = Images {
        ssm: aws_sdk_ssm::Client::new(&aws),
        prefix: cli.ami_ssm_prefix.clone(),
        kubelet_versions: node_agent::parse_kubelet_versions(&cli.kubelet_versions)
            .map_err(anyhow::Error::msg)
            .context("--kubelet-versions")?,
        read_at: None,
    };
    let api: Api<Node> = Api::all(kube);
    let mut settings = Settings {
        kubelet_version: cli.kubelet_version.clone(),
        image_versions: HashMap::new(),
        zone_ids: HashMap::new(),
        root_volume_gib: cli.root_volume_gib,
    };
    let system = (!cli.system_node_group.is_empty()).then(|| SystemNodeGroup {
        name: cli.system_node_group.clone(),
        size: cli.system_nodes,
        instance_type: cli.system_instance_type.clone(),
    });
    let mut memory = Memory::default();
    let pace = Pace {
        interval: Duration::from_millis(cli.interval_ms),
        follow_up: Duration::from_millis(cli.follow_up_ms),
    };
    let mut failures = 0u32;
    tracing::info!(cluster = %cli.cluster_name, "node agent started");
    loop {
        let synced = sync(
            &ec2,
            &api,
            &cli.cluster_name,
            system.as_ref(),
            &mut images,
            &mut settings,
            &mut memory,
        );
        let registered = match synced.await {
            Ok(registered) => {
                failures = 0;
                registered
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %format!("{err:#}"), failures, "sync failed; retrying");
                0
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pace::next_look(pace, registered, failures)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// What the agent keeps between syncs: facts that do not change.
#[derive(Default)]
struct Memory {
    types: HashMap<String, TypeFacts>,
    instances: KnownInstances,
}

/// Where the agent learns which image runs which kubelet.
struct Images {
    ssm: aws_sdk_ssm::Client,
    prefix: String,
    kubelet_versions: std::collections::BTreeMap<String, String>,
    /// When the parameters were last read: an image no parameter names
    /// (an instance launched by hand) does not make the agent read them
    /// every second.
    read_at: Option<std::time::Instant>,
}

impl Images {
    /// Reads the AMI parameters again when an instance runs an image not seen yet.
    async fn refresh(
        &mut self,
        instances: &[node_agent::Instance],
        settings: &mut Settings,
    ) -> anyhow::Result<()> {
        let unseen = instances.iter().any(|i| {
            i.image_id
                .as_ref()
                .is_some_and(|image| !settings.image_versions.contains_key(image))
        });
        let recently = self
            .read_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10));
        if self.prefix.is_empty() || !unseen || recently {
            return Ok(());
        }
        self.read_at = Some(std::time::Instant::now());
        let parameters = ec2::parameters_under(&self.ssm, &self.prefix).await?;
        settings.image_versions =
            node_agent::image_versions(&parameters, &self.prefix, &self.kubelet_versions);
        Ok(())
    }
}

/// One look: Nodes for new running instances, none for ended ones. Returns
/// how many Nodes it registered.
async fn sync(
    ec2_client: &aws_sdk_ec2::Client,
    api: &Api<Node>,
    cluster: &str,
    system: Option<&SystemNodeGroup>,
    images: &mut Images,
    settings: &mut Settings,
    memory: &mut Memory,
) -> anyhow::Result<usize> {
    let Memory {
        types,
        instances: known,
    } = memory;
    let mut instances = observe(ec2_client, cluster, known).await?;
    if let Some(group) = system {
        let launches = node_agent::system_launches(&instances, group, &ZONES);
        let mut image = None;
        if !launches.is_empty() && !images.prefix.is_empty() {
            // As a managed node group at the control plane's version.
            let parameters = ec2::parameters_under(&images.ssm, &images.prefix).await?;
            image =
                node_agent::x86_64_image_of(&parameters, &images.prefix, &settings.kubelet_version);
        }
        for zone in &launches {
            let id =
                ec2::launch_system_instance(ec2_client, cluster, group, zone, image.as_deref())
                    .await?;
            tracing::info!(instance = %id, zone = %zone, group = %group.name, "system node group instance launched");
        }
        if !launches.is_empty() {
            instances = observe(ec2_client, cluster, known).await?;
        }
    }
    images.refresh(&instances, settings).await?;
    if settings.zone_ids.is_empty() {
        settings.zone_ids = ec2::zone_ids(ec2_client).await?;
    }
    let existing = nodes::managed_nodes(api).await?;
    let mut plan = node_agent::plan(&instances, types, &existing, settings);
    if !plan.unknown_types.is_empty() {
        types.extend(ec2::instance_types(ec2_client, &plan.unknown_types).await?);
        plan = node_agent::plan(&instances, types, &existing, settings);
    }
    // Several at once: a burst launches hundreds of instances, and one
    // create after another at a loaded API server made the agent, not the
    // autoscaler, the pace of bench/scale/run (about 6 Nodes a second).
    let registered = futures::stream::iter(&plan.create)
        .map(|node| async move {
            nodes::register(api, node).await?;
            let name = node.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(node = name, "node registered");
            Ok::<(), kube::Error>(())
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect::<Vec<_>>();
    let removed = futures::stream::iter(&plan.delete)
        .map(|name| async move {
            nodes::remove(api, name).await?;
            tracing::info!(node = %name, "node removed: its instance is gone");
            Ok::<(), kube::Error>(())
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect::<Vec<_>>();
    let (registered, removed) = futures::join!(registered, removed);
    // What failed is tried again at the next sync; the rest is done.
    registered
        .into_iter()
        .chain(removed)
        .collect::<Result<(), _>>()?;
    Ok(plan.create.len())
}

/// Node writes in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// The cluster's instances now: every instance's state, and a description
/// of only those not seen before.
async fn observe(
    ec2_client: &aws_sdk_ec2::Client,
    cluster: &str,
    known: &mut KnownInstances,
) -> anyhow::Result<Vec<node_agent::Instance>> {
    let states = ec2::instance_states(ec2_client).await?;
    let unseen = known.unseen(&states);
    if !unseen.is_empty() {
        let described = ec2::cluster_instances_among(ec2_client, cluster, &unseen).await?;
        known.learn(&unseen, described);
    }
    Ok(known.current(&states))
}
