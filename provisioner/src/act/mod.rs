//! Thin adapters: every write the controllers make to Kubernetes or AWS
//! goes through here. No decisions: the controllers decide, these carry
//! out one step each and say whether it took.

pub mod aws;
pub mod claims;
pub mod ec2_launcher;
pub mod events;
pub mod instances;
pub mod kube_client;
pub mod launcher;
pub mod nodes;
pub mod pods;
pub mod pools;

/// Field manager of every write the provisioner's controllers make.
pub const FIELD_MANAGER: &str = "spotwright-provisioner";
/// Name under which the controllers report Events.
pub const REPORTER: &str = "spotwright-provisioner";

/// Treats "already gone" as done: deletes and finalizer removals are idempotent.
pub(crate) fn ignore_not_found(result: Result<(), crate::Error>) -> Result<(), crate::Error> {
    match result {
        Err(err) if err.is_not_found() => Ok(()),
        other => other,
    }
}
