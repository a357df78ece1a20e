//! Spotwright's controllers: provisioning, registration, removal.

pub mod aws;
pub mod batch;
pub mod cli;
pub mod controllers;
pub mod disruption;
pub mod facts;
pub mod hashing;
pub mod interruption;
pub mod launch;
pub mod leader;
pub mod metrics;
pub mod nodeclass;
pub mod provisioning;
