//! `spotwright-timeline`: records a rollout's timeline (`record`, until
//! interrupted) and draws it as an SVG (`plot`), for `./run walkthrough`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::Api;
use spotwright_api::keys;
use spotwright_e2e::timeline::{plot, summarize, Sample};

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-timeline",
    about = "Records and draws a rollout's timeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Appends one sample a second to --out until interrupted (SIGINT or SIGTERM).
    Record {
        /// The workload's namespace (its Running pods are counted).
        #[arg(long)]
        namespace: String,
        /// The workload's PodDisruptionBudget.
        #[arg(long)]
        pdb: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Draws the samples in --samples as an SVG and prints a summary.
    Plot {
        #[arg(long)]
        samples: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// When the upgrade finished, in the samples' seconds.
        #[arg(long)]
        marker: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Record {
            namespace,
            pdb,
            out,
        } => record(&namespace, &pdb, &out).await,
        Command::Plot {
            samples,
            out,
            marker,
        } => {
            let text = std::fs::read_to_string(&samples)
                .with_context(|| format!("reading {}", samples.display()))?;
            let samples: Vec<Sample> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(Sample::parse)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
            plot::draw(&samples, marker, &out).map_err(anyhow::Error::msg)?;
            let summary = summarize(&samples);
            println!(
                "{} samples over {} s; lowest PDB healthy {}; lowest Running {}; versions {}",
                summary.samples,
                summary.seconds,
                summary
                    .lowest_pdb_healthy
                    .map_or("-".to_owned(), |n| n.to_string()),
                summary
                    .lowest_pods_running
                    .map_or("-".to_owned(), |n| n.to_string()),
                summary.versions.join(", ")
            );
            Ok(())
        }
    }
}

async fn record(namespace: &str, pdb: &str, out: &PathBuf) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes client")?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, namespace);
    let mut file =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let spotwright = ListParams::default().labels(keys::NODEPOOL_LABEL);
        let (Ok(listed), Ok(running)) = (
            nodes.list(&spotwright).await,
            pods.list(&ListParams::default()).await,
        ) else {
            // The API server is away (an upgrade): no sample this second.
            continue;
        };
        let mut by_version = BTreeMap::new();
        for node in listed.items {
            let version = node
                .status
                .and_then(|s| s.node_info)
                .map(|i| i.kubelet_version);
            *by_version.entry(version.unwrap_or_default()).or_insert(0) += 1;
        }
        let pods_running = running
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count() as u64;
        let pdb_healthy = pdbs
            .get(pdb)
            .await
            .ok()
            .and_then(|p| p.status?.current_healthy)
            .map(|healthy| u64::try_from(healthy).unwrap_or(0));
        let sample = Sample {
            seconds: started.elapsed().as_secs(),
            pods_running,
            pdb_healthy,
            nodes: by_version,
        };
        writeln!(file, "{}", sample.to_line()).context("writing a sample")?;
    }
}
