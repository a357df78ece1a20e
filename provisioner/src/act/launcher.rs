//! Launching a NodeClaim: the [`Launcher`] trait the EC2 adapter
//! implements, and [`launch_claim`], the one path by which provisioning and
//! disruption alike launch a claim and record the result.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use spotwright_api::keys::CapacityType;
use spotwright_api::{NodeClaim, NodeClass};
use spotwright_solver::model::InstanceType;

pub use crate::error::LaunchFailure;

use super::claims;
use super::events::{Events, Notice};
use crate::metrics::Metrics;
use crate::model::claim::nodepool_of;
pub use crate::model::launch::Lookup;

/// An instance that now runs for a NodeClaim.
#[derive(Clone, Debug, PartialEq)]
pub struct Launched {
    /// What its Node must carry beyond the claim's labels: the instance
    /// type's labels as the solver saw them, and the zone's id.
    pub labels: BTreeMap<String, String>,
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub image_id: String,
    /// $/h of the offering.
    pub price: f64,
}

impl Launched {
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.instance_id)
    }
}

/// What the controllers need from EC2.
pub trait Launcher: Send + Sync + 'static {
    /// Launches (or finds, when an earlier attempt already did and `lookup`
    /// says to look) the instance of `claim`, from its requirements alone
    /// (instance types, zones, capacity types, minValues), with the claim's
    /// UID as client token.
    fn launch(
        &self,
        claim: &NodeClaim,
        class: &NodeClass,
        lookup: Lookup,
    ) -> impl Future<Output = Result<Launched, LaunchFailure>> + Send;

    /// The instance types with their offerings, unavailable ones marked.
    fn instance_types(&self) -> Vec<InstanceType>;
}

/// Everything a launch touches; provisioning and disruption each hold one.
pub struct Launching<L> {
    pub client: kube::Client,
    pub launcher: Arc<L>,
    pub metrics: Metrics,
    pub events: Events,
}

impl<L> Clone for Launching<L> {
    fn clone(&self) -> Self {
        Launching {
            client: self.client.clone(),
            launcher: self.launcher.clone(),
            metrics: self.metrics.clone(),
            events: self.events.clone(),
        }
    }
}

/// Why a claim is launched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This process created it a moment ago, for this reason.
    New(String),
    /// It was found without an instance, for this reason (if any): a crash
    /// or a failed status write may have left one behind.
    Found(Option<String>),
}

impl Origin {
    fn lookup(&self) -> Lookup {
        match self {
            Origin::New(_) => Lookup::Skip,
            Origin::Found(_) => Lookup::First,
        }
    }

    fn why(self) -> Option<String> {
        match self {
            Origin::New(why) => Some(why),
            Origin::Found(why) => why,
        }
    }
}

/// Launches `claim`, records the instance on its status and says so in an
/// Event (with the origin's reason). A failed launch deletes the claim, so
/// its pods are solved again; a failed status write is resumed by the next
/// pass.
pub async fn launch_claim<L: Launcher>(
    ctx: &Launching<L>,
    claim: &NodeClaim,
    class: &NodeClass,
    origin: Origin,
    now: Timestamp,
) {
    let name = claim.metadata.name.clone().unwrap_or_default();
    match ctx.launcher.launch(claim, class, origin.lookup()).await {
        Ok(launched) => {
            ctx.metrics
                .nodeclaims_created
                .with_label_values(&[
                    &nodepool_of(claim),
                    launched.capacity_type.as_str(),
                    &launched.instance_type,
                ])
                .inc();
            // Labels before status: a claim marked launched has them, and a
            // crash in between is resumed by launching (finding) again.
            let labels = json!({"labels": launched.labels});
            let recorded = match claims::patch_metadata(&ctx.client, claim, labels, false).await {
                Ok(_) => {
                    claims::merge_status(&ctx.client, &name, &launched_status(&launched, now)).await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = recorded {
                // The next pass resumes: the launcher finds this instance by its tags.
                tracing::warn!(claim = name, error = %err, "recording the launch failed; will resume");
                return;
            }
            let note = format!(
                "{} {} in {} (${:.4}/h){}",
                launched.instance_type,
                launched.capacity_type.as_str(),
                launched.zone,
                launched.price,
                origin.why().map(|w| format!(": {w}")).unwrap_or_default()
            );
            let notice = Notice::normal("Launched", "Launch", note);
            ctx.events.about(claim, notice).await;
        }
        Err(failure) => {
            ctx.metrics
                .launch_failures
                .with_label_values(&[&failure.reason()])
                .inc();
            tracing::warn!(claim = name, error = %failure, "launch failed; deleting the NodeClaim so its pods are solved again");
            let notice = Notice::warning("LaunchFailed", "Launch", failure.to_string());
            ctx.events.about(claim, notice).await;
            // Nothing was launched for it: drop the finalizer, then the claim.
            if let Err(err) = claims::release(&ctx.client, claim).await {
                tracing::debug!(claim = name, error = %err, "finalizer not dropped");
            }
            if let Err(err) = claims::delete_named(&ctx.client, &name).await {
                tracing::debug!(claim = name, error = %err, "failed claim not deleted");
            }
        }
    }
}

/// The status that records a launch.
pub fn launched_status(launched: &Launched, now: Timestamp) -> serde_json::Value {
    let at = Timestamp::from_second(now.as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
    json!({"status": {
        "providerID": launched.provider_id(),
        "instanceType": launched.instance_type,
        "zone": launched.zone,
        "capacityType": launched.capacity_type.as_str(),
        "imageID": launched.image_id,
        "conditions": [{
            "type": spotwright_api::conditions::LAUNCHED, "status": "True", "reason": "Launched",
            "message": format!("{} {} in {}", launched.instance_type, launched.capacity_type.as_str(), launched.zone),
            "lastTransitionTime": at.to_string(),
        }]
    }})
}

/// Launches claims that have no instance yet (an earlier process crashed,
/// or a launch failed halfway): whether it needs one.
pub fn needs_launch(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_none()
        && claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_ref())
            .is_none()
}
