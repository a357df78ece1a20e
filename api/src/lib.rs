//! What every Spotwright program agrees on: the `spotwright.io/v1alpha1`
//! API types and the well-known label, taint and annotation keys.

pub mod conditions;
pub mod crds;
pub mod eks;
pub mod keys;
pub mod v1alpha1;

pub use v1alpha1::{NodeClaim, NodeClass, NodePool};
