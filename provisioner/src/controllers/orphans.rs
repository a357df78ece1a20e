//! Orphan collection: an instance tagged for the cluster and for a
//! NodeClaim that no longer exists is terminated, once it is older than a
//! grace period. The claim is created before its launch, so a young
//! instance may belong to a claim still being written; instances without a
//! `spotwright.io/nodeclaim` tag (a managed node group's, say) are never
//! touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use spotwright_api::{keys, NodeClaim};

use crate::aws::fleet::instances as fleet;

use super::registration::elapsed;
use super::termination::{InstanceInfo, Instances, InstancesError};

/// How orphan collection behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanSettings {
    /// Instances younger than this are never orphans.
    pub grace_period: Duration,
    /// How often EC2 is listed.
    pub interval: Duration,
}

impl Default for OrphanSettings {
    fn default() -> Self {
        OrphanSettings {
            grace_period: Duration::from_secs(120),
            interval: Duration::from_secs(60),
        }
    }
}

/// The instances to terminate: tagged for a claim that is not in `claims`
/// (name to uid), or whose uid tag names an earlier claim of that name,
/// and launched more than `grace_period` ago. An instance with no launch
/// time is never collected: its age is unknown.
pub fn orphans(
    instances: &[InstanceInfo],
    claims: &HashMap<String, String>,
    grace_period: Duration,
    now: Timestamp,
) -> Vec<String> {
    let unclaimed = |i: &InstanceInfo| match i.nodeclaim.as_ref().map(|name| claims.get(name)) {
        None => false,
        Some(None) => true,
        Some(Some(uid)) => i.nodeclaim_uid.as_ref().is_some_and(|tagged| tagged != uid),
    };
    instances
        .iter()
        .filter(|i| unclaimed(i))
        .filter(|i| {
            i.launch_time
                .is_some_and(|t| elapsed(t, now) > grace_period)
        })
        .map(|i| i.id.clone())
        .collect()
}

/// Orphan collection failures.
#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error(transparent)]
    Instances(#[from] InstancesError),
    #[error("listing NodeClaims: {0}")]
    Claims(#[from] kube::Error),
}

/// One pass: lists instances, then claims, and terminates the orphans.
/// Instances are listed first: a claim exists before its instance, so any
/// instance seen has its claim in the later list unless it was deleted.
pub async fn collect_once<I: Instances>(
    client: &Client,
    instances: &I,
    settings: &OrphanSettings,
) -> Result<Vec<String>, OrphanError> {
    let running = instances.list_cluster_instances().await?;
    let claims: HashMap<String, String> = Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
        .collect();
    let doomed = orphans(&running, &claims, settings.grace_period, Timestamp::now());
    if !doomed.is_empty() {
        tracing::info!(instances = ?doomed, "terminating instances whose NodeClaim is gone");
        instances.terminate(&doomed).await?;
    }
    Ok(doomed)
}

/// Runs orphan collection forever.
pub async fn run<I: Instances>(client: Client, settings: OrphanSettings, instances: Arc<I>) {
    let mut ticker = tokio::time::interval(settings.interval);
    loop {
        ticker.tick().await;
        if let Err(err) = collect_once(&client, instances.as_ref(), &settings).await {
            tracing::warn!(error = %err, "orphan collection failed; retrying next pass");
        }
    }
}

/// [`Instances`] over EC2, through the `aws::fleet` adapter: terminates only
/// instances that carry the cluster's ownership tag.
#[derive(Clone, Debug)]
pub struct Ec2Instances {
    pub ec2: aws_sdk_ec2::Client,
    pub cluster_name: String,
}

impl Instances for Ec2Instances {
    async fn terminate(&self, ids: &[String]) -> Result<(), InstancesError> {
        let outcome = fleet::terminate_instances(&self.ec2, &self.cluster_name, ids)
            .await
            .map_err(|err| InstancesError(err.to_string()))?;
        if !outcome.refused.is_empty() {
            // Gone already, or not ours: either way nothing is left to do.
            tracing::info!(instances = ?outcome.refused, "not terminated: unknown or not owned by the cluster");
        }
        Ok(())
    }

    async fn list_cluster_instances(&self) -> Result<Vec<InstanceInfo>, InstancesError> {
        let all = fleet::describe_instances_by_cluster_tag(&self.ec2, &self.cluster_name)
            .await
            .map_err(|err| InstancesError(err.to_string()))?;
        Ok(all
            .into_iter()
            .filter(|i| !matches!(i.state.as_str(), "shutting-down" | "terminated"))
            .map(|i| InstanceInfo {
                nodeclaim: i.tags.get(keys::NODECLAIM_TAG).cloned(),
                nodeclaim_uid: i.tags.get(fleet::NODECLAIM_UID_TAG).cloned(),
                launch_time: i.launch_time.and_then(|t| Timestamp::try_from(t).ok()),
                id: i.id,
            })
            .collect())
    }
}
