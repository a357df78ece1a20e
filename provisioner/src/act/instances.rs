//! EC2 instances as termination and orphan collection see them: a trait,
//! its EC2 implementation, and a wrapper that counts terminations.

use std::future::Future;

use k8s_openapi::jiff::Timestamp;
use prometheus::IntCounter;
use spotwright_api::keys;

use super::aws::fleet::instances as fleet;
use crate::metrics::Metrics;
use crate::Error;

/// An EC2 instance of the cluster, as the controllers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    /// The `spotwright.io/nodeclaim` tag, when the instance has one.
    pub nodeclaim: Option<String>,
    /// The `spotwright.io/nodeclaim-uid` tag: tells a claim from an earlier
    /// one of the same name.
    pub nodeclaim_uid: Option<String>,
    pub launch_time: Option<Timestamp>,
}

/// What the controllers need from EC2; the EC2 adapter implements it.
pub trait Instances: Send + Sync + 'static {
    /// Terminates the instances. Idempotent: ids already terminated or
    /// unknown to EC2 are not an error.
    fn terminate(&self, ids: &[String]) -> impl Future<Output = Result<(), Error>> + Send;
    /// Instances tagged `kubernetes.io/cluster/<name>: owned` that are not
    /// (yet) terminated: pending, running, stopping or stopped.
    fn list_cluster_instances(
        &self,
    ) -> impl Future<Output = Result<Vec<InstanceInfo>, Error>> + Send;
}

/// [`Instances`] over EC2, through the `aws::fleet` adapter: terminates only
/// instances that carry the cluster's ownership tag.
#[derive(Clone, Debug)]
pub struct Ec2Instances {
    pub ec2: aws_sdk_ec2::Client,
    pub cluster_name: String,
}

impl Instances for Ec2Instances {
    async fn terminate(&self, ids: &[String]) -> Result<(), Error> {
        let outcome = fleet::terminate_instances(&self.ec2, &self.cluster_name, ids)
            .await
            .map_err(|err| Error::Instances(err.to_string()))?;
        if !outcome.refused.is_empty() {
            // Gone already, or not ours: either way nothing is left to do.
            tracing::info!(instances = ?outcome.refused, "not terminated: unknown or not owned by the cluster");
        }
        Ok(())
    }

    async fn list_cluster_instances(&self) -> Result<Vec<InstanceInfo>, Error> {
        let all = fleet::describe_instances_by_cluster_tag(&self.ec2, &self.cluster_name).await?;
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

/// An [`Instances`] that counts what it terminates, under one `reason`.
pub struct CountedInstances<I> {
    pub inner: I,
    pub terminated: IntCounter,
}

impl<I> CountedInstances<I> {
    pub fn new(inner: I, metrics: &Metrics, reason: &str) -> Self {
        CountedInstances {
            inner,
            terminated: metrics.nodes_terminated.with_label_values(&[reason]),
        }
    }
}

impl<I: Instances> Instances for CountedInstances<I> {
    async fn terminate(&self, ids: &[String]) -> Result<(), Error> {
        self.inner.terminate(ids).await?;
        self.terminated
            .inc_by(u64::try_from(ids.len()).unwrap_or(u64::MAX));
        Ok(())
    }

    async fn list_cluster_instances(&self) -> Result<Vec<InstanceInfo>, Error> {
        self.inner.list_cluster_instances().await
    }
}
