//! What every Spotwright program agrees on: the `spotwright.io/v1alpha1`
//! API types and the well-known label, taint and annotation keys.
//! Also: the price snapshot ([`prices`]), the interruption-record contract
//! ([`interruption`]), and quantity and duration parsing.

pub mod conditions;
pub mod crds;
pub mod duration;
pub mod eks;
pub mod interruption;
pub mod keys;
pub mod prices;
pub mod quantity;
pub mod reservation;
pub mod v1alpha1;

pub use v1alpha1::{NodeClaim, NodeClass, NodePool};
