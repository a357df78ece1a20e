//! The Spotwright mutating admission webhook: pods in namespaces that opt in
//! get the Spot toleration, node affinity for Spotwright's capacity and the
//! Spotwright scheduler's name.

pub mod cache;
pub mod cli;
pub mod metrics;
pub mod mutate;
pub mod patch;
pub mod pod;
pub mod review;
pub mod server;
pub mod view;
