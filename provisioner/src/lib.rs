//! Spotwright's controllers: provisioning, registration, removal.

pub mod aws;
pub mod launch;
