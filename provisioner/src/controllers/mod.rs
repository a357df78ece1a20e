//! The controllers, one folder each. Each reads the shared
//! [`crate::state::ClusterState`], decides with pure functions (its own
//! `decide` or [`crate::model`]) and writes through [`crate::act`]. A
//! controller never imports another: what two share lives in a lower layer.

pub mod disruption;
pub mod drift;
pub mod emptiness;
pub mod interruption;
pub mod nodeclass;
pub mod nodepool_deletion;
pub mod orphans;
pub mod pod_events;
pub mod provisioning;
pub mod registration;
pub mod termination;
