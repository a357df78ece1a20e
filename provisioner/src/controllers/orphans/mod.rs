//! Orphan collection: an instance tagged for the cluster and for a
//! NodeClaim that no longer exists is terminated, once it is older than a
//! grace period. The claim is created before its launch, so a young
//! instance may belong to a claim still being written; instances without a
//! `spotwright.io/nodeclaim` tag (a managed node group's, say) are never
//! touched. Reads EC2 every minute and the claims from the cluster state;
//! terminates through [`crate::act::instances`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::act::instances::{InstanceInfo, Instances};
use crate::model::claim::elapsed;
use crate::model::clock::SharedClock;
use crate::state::ClusterState;
use crate::Error;

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

/// What orphan collection works with.
pub struct Orphans<I> {
    pub state: ClusterState,
    pub instances: Arc<I>,
    pub clock: SharedClock,
    pub settings: OrphanSettings,
}

/// One pass: lists instances, then reads the claims, and terminates the
/// orphans. Instances are listed first: a claim exists before its
/// instance, so any instance seen has its claim in the state unless it was
/// deleted (or the watch has not brought it yet: the grace period covers that).
pub async fn collect_once<I: Instances>(ctx: &Orphans<I>) -> Result<Vec<String>, Error> {
    let running = ctx.instances.list_cluster_instances().await?;
    let claims: HashMap<String, String> = ctx
        .state
        .snapshot()
        .claims
        .iter()
        .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
        .collect();
    let doomed = orphans(
        &running,
        &claims,
        ctx.settings.grace_period,
        ctx.clock.now(),
    );
    if !doomed.is_empty() {
        tracing::info!(instances = ?doomed, "terminating instances whose NodeClaim is gone");
        ctx.instances.terminate(&doomed).await?;
    }
    Ok(doomed)
}

/// Runs orphan collection forever.
pub async fn run<I: Instances>(ctx: Orphans<I>) {
    ctx.state.ready().await;
    let mut ticker = tokio::time::interval(ctx.settings.interval);
    loop {
        ticker.tick().await;
        if let Err(err) = collect_once(&ctx).await {
            tracing::warn!(error = %err, "orphan collection failed; retrying next pass");
        }
    }
}
