//! Recovery after the provisioner is gone while NodeClaims and NodePools
//! still hold its `spotwright.io/termination` finalizer (an uninstall done
//! in the wrong order, say): terminate every instance tagged for the
//! cluster's NodeClaims, delete their Nodes, then lift the finalizers so
//! the objects (and their CRDs) can go. Instances without the
//! `spotwright.io/nodeclaim` tag, such as a managed node group's, are
//! never touched. `spotwright-recover` runs this.

use std::collections::BTreeSet;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use spotwright_api::{NodeClaim, NodePool};

use crate::act::instances::{InstanceInfo, Instances};
use crate::act::{claims, nodes, pools};
use crate::model::claim::{node_name, TERMINATION_FINALIZER};
use crate::Error;

/// What recovery does, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// Instances tagged for a NodeClaim, whether or not the claim still exists.
    pub terminate: Vec<String>,
    /// The Nodes the claims name.
    pub delete_nodes: Vec<String>,
    /// Claims and pools holding the termination finalizer.
    pub release_claims: Vec<String>,
    pub release_pools: Vec<String>,
}

fn holds_finalizer<K: ResourceExt>(object: &K) -> bool {
    object
        .finalizers()
        .iter()
        .any(|f| f == TERMINATION_FINALIZER)
}

/// Plans recovery from the cluster's claims, pools and tagged instances.
pub fn plan(claims: &[NodeClaim], pools: &[NodePool], instances: &[InstanceInfo]) -> RecoveryPlan {
    let terminate: BTreeSet<String> = instances
        .iter()
        .filter(|i| i.nodeclaim.is_some())
        .map(|i| i.id.clone())
        .collect();
    let delete_nodes: BTreeSet<String> = claims
        .iter()
        .filter_map(|c| node_name(c).map(str::to_owned))
        .collect();
    let names = |objects: Vec<String>| -> Vec<String> {
        let sorted: BTreeSet<String> = objects.into_iter().collect();
        sorted.into_iter().collect()
    };
    RecoveryPlan {
        terminate: terminate.into_iter().collect(),
        delete_nodes: delete_nodes.into_iter().collect(),
        release_claims: names(
            claims
                .iter()
                .filter(|c| holds_finalizer(*c))
                .map(|c| c.name_any())
                .collect(),
        ),
        release_pools: names(
            pools
                .iter()
                .filter(|p| holds_finalizer(*p))
                .map(|p| p.name_any())
                .collect(),
        ),
    }
}

/// Reads the cluster and EC2, plans, and (unless `dry_run`) carries the
/// plan out: instances first, so a finalizer is only lifted once nothing
/// is left running behind it.
pub async fn recover<I: Instances>(
    client: &Client,
    instances: &I,
    dry_run: bool,
) -> Result<RecoveryPlan, Error> {
    let claim_api: Api<NodeClaim> = Api::all(client.clone());
    let pool_api: Api<NodePool> = Api::all(client.clone());
    let listed_claims = claim_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list", "NodeClaims"))?
        .items;
    let listed_pools = pool_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list", "NodePools"))?
        .items;
    let tagged = instances.list_cluster_instances().await?;
    let plan = plan(&listed_claims, &listed_pools, &tagged);
    if dry_run {
        return Ok(plan);
    }
    if !plan.terminate.is_empty() {
        instances.terminate(&plan.terminate).await?;
    }
    for node in &plan.delete_nodes {
        nodes::delete(client, node).await?;
    }
    for claim in listed_claims.iter().filter(|c| holds_finalizer(*c)) {
        claims::remove_finalizer(client, claim).await?;
    }
    for pool in listed_pools.iter().filter(|p| holds_finalizer(*p)) {
        pools::set_finalizer(client, pool, false).await?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(name: &str, node: Option<&str>, finalizer: bool) -> NodeClaim {
        serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": name, "finalizers": if finalizer { json!([TERMINATION_FINALIZER]) } else { json!([]) }},
            "spec": {"nodeClassRef": {"name": "default"}},
            "status": {"nodeName": node}
        }))
        .expect("a NodeClaim")
    }

    fn pool(name: &str, finalizers: &[&str]) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
            "metadata": {"name": name, "finalizers": finalizers},
            "spec": {"template": {"spec": {"nodeClassRef": {"name": "default"}}}}
        }))
        .expect("a NodePool")
    }

    fn instance(id: &str, claim: Option<&str>) -> InstanceInfo {
        InstanceInfo {
            id: id.into(),
            nodeclaim: claim.map(Into::into),
            nodeclaim_uid: None,
            launch_time: None,
        }
    }

    #[test]
    fn only_instances_tagged_for_a_claim_are_terminated() {
        let claims = [claim("b", Some("node-b"), true), claim("a", None, false)];
        let pools = [
            pool("general", &[TERMINATION_FINALIZER]),
            pool("other", &["x/y"]),
        ];
        let instances = [
            instance("i-2", Some("b")),
            instance("i-system", None),
            instance("i-1", Some("gone-already")),
        ];
        assert_eq!(
            plan(&claims, &pools, &instances),
            RecoveryPlan {
                terminate: vec!["i-1".into(), "i-2".into()],
                delete_nodes: vec!["node-b".into()],
                release_claims: vec!["b".into()],
                release_pools: vec!["general".into()],
            }
        );
        assert_eq!(
            plan(&[], &[], &[instance("i-system", None)]),
            RecoveryPlan::default()
        );
    }
}
