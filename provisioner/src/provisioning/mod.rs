//! The provisioning controller: pending pods in, NodeClaims and instances out.
//!
//! Each pass reads the watch caches, solves (a pure function), reports every
//! pod the solve could not place, then creates one NodeClaim per new node and
//! launches it. A NodeClaim exists before its EC2 call and carries
//! everything the launch needs, so a pass after a crash finishes any launch
//! an earlier process began (`resume`).

pub mod claim;
pub mod ec2;
pub mod pass;
mod pool_status;
pub mod snapshot;
pub mod stores;

use std::future::Future;

use spotwright_api::keys::CapacityType;
use spotwright_api::{NodeClaim, NodeClass};
use spotwright_solver::model::InstanceType;

pub use pass::{run, Settings};

/// An instance that now runs for a NodeClaim.
#[derive(Clone, Debug, PartialEq)]
pub struct Launched {
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

#[derive(Debug, thiserror::Error)]
pub enum LaunchFailure {
    /// Every allowed offering is out of capacity (or was marked so): the
    /// pods are solved again without them.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// The NodeClass cannot launch yet (no AMI, subnets or security groups).
    #[error("NodeClass not ready: {0}")]
    NodeClassNotReady(String),
    #[error("{code}: {message}")]
    Failed { code: String, message: String },
}

impl LaunchFailure {
    /// For the `reason` label of the launch-failure metric.
    pub fn reason(&self) -> String {
        match self {
            LaunchFailure::NoCapacity(_) => "no_capacity".into(),
            LaunchFailure::NodeClassNotReady(_) => "nodeclass_not_ready".into(),
            LaunchFailure::Failed { code, .. } => code.clone(),
        }
    }
}

/// What the controller needs from EC2.
pub trait Launcher: Send + Sync + 'static {
    /// Launches (or finds, when an earlier attempt already did) the instance
    /// of `claim`, from its requirements alone (instance types, zones,
    /// capacity types, minValues), with the claim's UID as client token.
    fn launch(
        &self,
        claim: &NodeClaim,
        class: &NodeClass,
    ) -> impl Future<Output = Result<Launched, LaunchFailure>> + Send;

    /// The instance types with their offerings, unavailable ones marked.
    fn instance_types(&self) -> Vec<InstanceType>;
}
