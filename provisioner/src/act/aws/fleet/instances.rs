//! The cluster's instances: the pre-launch lookup that makes a retried
//! launch find its instance, listing for orphan collection, and termination
//! that refuses instances the cluster does not own.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_ec2::types::{Filter, Instance, InstanceLifecycleType};
use spotwright_api::keys::{cluster_tag_key, NODECLAIM_TAG};
use spotwright_solver::model::CapacityType;

use crate::act::aws::error::{sdk_error, SdkCallError};

/// Tag carrying the NodeClaim's UID, so a NodeClaim recreated under the
/// same name never adopts its predecessor's instance.
pub const NODECLAIM_UID_TAG: &str = "spotwright.io/nodeclaim-uid";

/// An EC2 instance tagged for the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInstance {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, ...
    pub state: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: Option<String>,
    pub capacity_type: CapacityType,
    pub image_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub launch_time: Option<SystemTime>,
}

impl ClusterInstance {
    /// `aws:///<zone>/<instance-id>`.
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.id)
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "running")
    }

    fn from_ec2(instance: &Instance) -> Option<ClusterInstance> {
        let tags = instance
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        Some(ClusterInstance {
            id: instance.instance_id()?.to_owned(),
            state: instance
                .state()
                .and_then(|s| s.name())
                .map_or_else(|| "unknown".to_owned(), |n| n.as_str().to_owned()),
            instance_type: instance.instance_type()?.as_str().to_owned(),
            zone: instance
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_owned(),
            subnet_id: instance.subnet_id().map(str::to_owned),
            capacity_type: if instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            },
            image_id: instance.image_id().map(str::to_owned),
            tags,
            launch_time: instance
                .launch_time()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        })
    }
}

fn owned_by(cluster_name: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{}", cluster_tag_key(cluster_name)))
        .values("owned")
        .build()
}

async fn describe(
    ec2: &aws_sdk_ec2::Client,
    filters: Vec<Filter>,
) -> Result<Vec<ClusterInstance>, SdkCallError> {
    let mut pages = ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    let mut instances = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("DescribeInstances"))?;
        for reservation in page.reservations() {
            instances.extend(
                reservation
                    .instances()
                    .iter()
                    .filter_map(ClusterInstance::from_ec2),
            );
        }
    }
    Ok(instances)
}

/// Every instance of the cluster, in any state (terminated ones linger in
/// EC2 for about an hour).
pub async fn describe_instances_by_cluster_tag(
    ec2: &aws_sdk_ec2::Client,
    cluster_name: &str,
) -> Result<Vec<ClusterInstance>, SdkCallError> {
    describe(ec2, vec![owned_by(cluster_name)]).await
}

/// The pending or running instance an earlier launch made for this
/// NodeClaim, if any. CreateFleet's `ClientToken` should make a retried
/// launch idempotent, but emulators ignore it and it expires; this lookup
/// is what actually keeps a crash between CreateFleet and the NodeClaim
/// update from launching twice.
pub async fn find_instance_for_claim(
    ec2: &aws_sdk_ec2::Client,
    cluster_name: &str,
    nodeclaim_name: &str,
    nodeclaim_uid: &str,
) -> Result<Option<ClusterInstance>, SdkCallError> {
    let filters = vec![
        owned_by(cluster_name),
        Filter::builder()
            .name(format!("tag:{NODECLAIM_TAG}"))
            .values(nodeclaim_name)
            .build(),
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .build(),
    ];
    let mut found = describe(ec2, filters).await?;
    // An instance without the UID tag predates it; one with another UID
    // belongs to an earlier NodeClaim of the same name.
    found.retain(|i| {
        i.is_live()
            && i.tags
                .get(NODECLAIM_UID_TAG)
                .is_none_or(|uid| uid == nodeclaim_uid)
    });
    found.sort_by_key(|i| i.launch_time);
    Ok(found.into_iter().next())
}

/// What [`terminate_instances`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termination {
    /// Asked to terminate (or already terminated).
    pub terminated: Vec<String>,
    /// Not the cluster's (no `kubernetes.io/cluster/<name>: owned` tag) or
    /// not found: left alone.
    pub refused: Vec<String>,
}

/// Terminates those of `ids` that carry the cluster's ownership tag.
pub async fn terminate_instances(
    ec2: &aws_sdk_ec2::Client,
    cluster_name: &str,
    ids: &[String],
) -> Result<Termination, SdkCallError> {
    if ids.is_empty() {
        return Ok(Termination::default());
    }
    // A filter (not InstanceIds) so an unknown id is "not found", not an error.
    let id_filter = Filter::builder()
        .name("instance-id")
        .set_values(Some(ids.to_vec()))
        .build();
    let owned_key = cluster_tag_key(cluster_name);
    let described = describe(ec2, vec![id_filter]).await?;
    let (mut terminated, mut refused) = (Vec::new(), Vec::new());
    for id in ids {
        let owned = described
            .iter()
            .any(|i| &i.id == id && i.tags.get(&owned_key).map(String::as_str) == Some("owned"));
        if owned {
            terminated.push(id.clone());
        } else {
            refused.push(id.clone());
        }
    }
    if !terminated.is_empty() {
        ec2.terminate_instances()
            .set_instance_ids(Some(terminated.clone()))
            .send()
            .await
            .map_err(sdk_error("TerminateInstances"))?;
    }
    Ok(Termination {
        terminated,
        refused,
    })
}
