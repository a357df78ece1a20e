//! One scale-up and scale-down of the workload on the local cluster, for
//! either system: the Deployments are created at once, a watch notes when
//! each pod is first seen and first Running, and the nodes and placements
//! are read once every pod runs. Shared by `spotwright-scale-bench` and
//! the e2e test `scale.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::Serialize;
use spotwright_api::keys::{CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL, NODEPOOL_LABEL, ZONE_LABEL};

use super::figures::{quantiles, Quantiles};
use super::floor::{FLOOR_CAPACITY_LABEL, FLOOR_POOL_LABEL};
use super::workload::{deployment, Shape};

/// Which autoscaler serves the workload, and so which labels mark its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Spotwright,
    Karpenter,
    /// No autoscaler: the nodes are made before the scale-up
    /// ([`super::floor`]), and the default scheduler places the pods.
    Floor,
}

impl System {
    pub fn pool_label(self) -> &'static str {
        match self {
            System::Spotwright => NODEPOOL_LABEL,
            System::Karpenter => "karpenter.sh/nodepool",
            System::Floor => FLOOR_POOL_LABEL,
        }
    }

    pub fn capacity_label(self) -> &'static str {
        match self {
            System::Spotwright => CAPACITY_TYPE_LABEL,
            System::Karpenter => "karpenter.sh/capacity-type",
            System::Floor => FLOOR_CAPACITY_LABEL,
        }
    }
}

/// A node the system launched, as its labels describe it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaunchedNode {
    pub name: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    /// `metadata.creationTimestamp`, in Unix seconds.
    pub created: Option<i64>,
}

/// What one scale-up did.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleUp {
    pub pods: u32,
    /// Pods Running when the wait ended (`pods`, unless it timed out).
    pub running: u32,
    /// From the first Deployment's creation to the last pod Running; `None`
    /// when not every pod ran within the timeout.
    pub seconds_to_all_running: Option<f64>,
    /// Per pod that ran, from first seen (its creation) to first seen Running.
    pub pod_seconds: Quantiles,
    pub nodes: Vec<LaunchedNode>,
    /// `pod on node` for every pod on a node that is not a Spot node of the system.
    pub misplaced: Vec<String>,
}

/// When each pod of a namespace was first seen, and first seen Running.
#[derive(Default)]
struct PodClock {
    seen: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Watches `namespace`'s pods into a [`PodClock`] until dropped.
struct PodWatch {
    clock: Arc<Mutex<PodClock>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    async fn start(client: &Client, namespace: &str) -> PodWatch {
        let clock = Arc::new(Mutex::new(PodClock::default()));
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let into = clock.clone();
        let (ready, started) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
            let mut ready = Some(ready);
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let pod = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                let running =
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let Ok(mut clock) = into.lock() else {
                    return;
                };
                clock.seen.entry(uid.clone()).or_insert(now);
                if running {
                    clock.running.entry(uid).or_insert(now);
                }
            }
        });
        // The watch is listed before anything is created, so first sight is creation.
        let _ = tokio::time::timeout(Duration::from_secs(30), started).await;
        PodWatch { clock, task }
    }

    /// (pods running, per-pod seconds to Running, the last Running instant).
    fn running(&self) -> (usize, Vec<f64>, Option<Instant>) {
        let Ok(clock) = self.clock.lock() else {
            return (0, Vec::new(), None);
        };
        let seconds = clock
            .running
            .iter()
            .filter_map(|(uid, at)| Some(at.duration_since(*clock.seen.get(uid)?).as_secs_f64()))
            .collect();
        (
            clock.running.len(),
            seconds,
            clock.running.values().max().copied(),
        )
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates the Deployments of `shapes` in `namespace` and waits (up to
/// `timeout`) for all their pods to run; then reads where they run.
pub async fn scale_up(
    client: &Client,
    system: System,
    pool: &str,
    namespace: &str,
    shapes: &[Shape],
    timeout: Duration,
) -> Result<ScaleUp, String> {
    let total: u32 = shapes.iter().map(|s| s.replicas).sum();
    let watch = PodWatch::start(client, namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    for shape in shapes {
        let object: Deployment =
            serde_json::from_value(deployment(shape, namespace, shape.replicas))
                .map_err(|e| format!("the Deployment {}: {e}", shape.name))?;
        deployments
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("creating {}: {e}", shape.name))?;
    }
    let deadline = began + timeout;
    let mut reported = Instant::now();
    loop {
        let (running, _, _) = watch.running();
        if running >= total as usize {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("[scale] {running} of {total} pods Running after {timeout:?}: timed out");
            break;
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[scale] {:>5.0}s: {running}/{total} pods Running",
                began.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (running, seconds, last) = watch.running();
    drop(watch);
    let complete = running >= total as usize;
    let nodes = launched_nodes(client, system, pool).await?;
    let misplaced = misplaced_pods(client, system, namespace, &nodes).await?;
    Ok(ScaleUp {
        pods: total,
        running: u32::try_from(running).unwrap_or(u32::MAX),
        seconds_to_all_running: last
            .filter(|_| complete)
            .map(|l| l.duration_since(began).as_secs_f64()),
        pod_seconds: quantiles(&seconds),
        nodes,
        misplaced,
    })
}

/// The nodes the system launched for its NodePool `pool`.
pub async fn launched_nodes(
    client: &Client,
    system: System,
    pool: &str,
) -> Result<Vec<LaunchedNode>, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}={pool}", system.pool_label());
    let list = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .map(|node| {
            let created = node
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second());
            let labels = node.metadata.labels.unwrap_or_default();
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
            LaunchedNode {
                name: node.metadata.name.unwrap_or_default(),
                instance_type: label(INSTANCE_TYPE_LABEL),
                zone: label(ZONE_LABEL),
                capacity_type: label(system.capacity_label()),
                created,
            }
        })
        .collect())
}

/// Pods of `namespace` not on a Spot node the system launched.
async fn misplaced_pods(
    client: &Client,
    system: System,
    namespace: &str,
    nodes: &[LaunchedNode],
) -> Result<Vec<String>, String> {
    let spot: BTreeMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.capacity_type.as_str()))
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing pods: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|pod| {
            let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
            (spot.get(node.as_str()) != Some(&"spot")).then(|| {
                format!(
                    "{} on {node:?} ({system:?})",
                    pod.metadata.name.unwrap_or_default()
                )
            })
        })
        .collect())
}

/// Scales every Deployment of `shapes` to zero and waits (up to `timeout`)
/// until `nothing_left` holds; the seconds that took.
pub async fn scale_to_zero<F, Fut>(
    client: &Client,
    namespace: &str,
    shapes: &[Shape],
    timeout: Duration,
    mut nothing_left: F,
) -> Result<f64, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    let zero = Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}));
    for shape in shapes {
        deployments
            .patch(&shape.name, &PatchParams::default(), &zero)
            .await
            .map_err(|e| format!("scaling {} to 0: {e}", shape.name))?;
    }
    let mut reported = Instant::now();
    while !nothing_left().await {
        if began.elapsed() > timeout {
            return Err(format!(
                "capacity still there {timeout:?} after scaling to zero"
            ));
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[scale] {:>5.0}s after scaling to zero: capacity left",
                began.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(began.elapsed().as_secs_f64())
}

/// No node of the system's NodePool `pool` is left.
pub async fn no_launched_nodes(client: &Client, system: System, pool: &str) -> bool {
    matches!(launched_nodes(client, system, pool).await, Ok(nodes) if nodes.is_empty())
}

/// No pod is left in `namespace` (the floor's end: its nodes stay).
pub async fn no_pods_left(client: &Client, namespace: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    matches!(pods.list(&ListParams::default().limit(1)).await, Ok(list) if list.items.is_empty())
}

/// EC2 instances (pending or running) moto holds for Spotwright's NodePool `pool`.
pub async fn pool_instance_count(ec2: &aws_sdk_ec2::Client, pool: &str) -> Result<usize, String> {
    use aws_sdk_ec2::types::Filter;
    let mut pages = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{NODEPOOL_LABEL}"))
                .values(pool)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("DescribeInstances: {e}"))?;
        count += page
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum::<usize>();
    }
    Ok(count)
}
