//! `spotwright-recover`: after the provisioner is gone, terminates the
//! instances tagged for the cluster's NodeClaims and lifts the
//! `spotwright.io/termination` finalizers (docs/uninstall.md).

use anyhow::Context;
use clap::Parser;
use spotwright_provisioner::act::instances::Ec2Instances;
use spotwright_provisioner::run::recover::recover;
use spotwright_serving::startup;
use spotwright_serving::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-recover",
    version,
    about = "Terminates the EC2 instances tagged for the cluster's NodeClaims, then lifts Spotwright's finalizers from NodeClaims and NodePools; for when the provisioner is gone"
)]
struct Cli {
    /// The EKS cluster's name: only instances tagged kubernetes.io/cluster/<name>=owned and spotwright.io/nodeclaim are terminated.
    #[arg(long, env = "SPOTWRIGHT_CLUSTER_NAME")]
    cluster_name: String,
    /// Print what would be done, and do nothing.
    #[arg(long)]
    dry_run: bool,
    /// Log format: json or text.
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
    startup::exit_on_error("spotwright-recover", run(cli).await);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cli.cluster_name.trim().is_empty(),
        "--cluster-name must not be empty"
    );
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API server")?;
    let aws = spotwright_provisioner::act::aws::config::sdk_config().await;
    let instances = Ec2Instances {
        ec2: aws_sdk_ec2::Client::new(&aws),
        cluster_name: cli.cluster_name.clone(),
    };
    let plan = recover(&client, &instances, cli.dry_run)
        .await
        .context("recovering")?;
    let verb = if cli.dry_run { "would" } else { "did" };
    println!(
        "{verb} terminate {} instance(s) {:?}; delete {} Node(s); lift the finalizer of {} NodeClaim(s) and {} NodePool(s)",
        plan.terminate.len(),
        plan.terminate,
        plan.delete_nodes.len(),
        plan.release_claims.len(),
        plan.release_pools.len()
    );
    Ok(())
}
