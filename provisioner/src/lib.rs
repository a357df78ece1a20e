//! Spotwright's controllers, in layers whose dependencies only point down
//! (`tests/layers.rs` fails the build on an upward import):
//!
//! - [`model`]: plain data and pure functions (claim, node and pod
//!   predicates, conditions, hashes, budgets, the solver's facts);
//! - [`state`]: the one watch per kind and the indexed snapshot every
//!   controller reads;
//! - [`act`]: thin adapters for every write (NodeClaim status, Nodes,
//!   Events, EC2 launches and terminations, SSM, SQS, Pricing);
//! - [`controllers`]: one folder each; a controller never imports another;
//! - [`run`]: the wiring, and the order in which controllers take turns.
//!
//! [`error`] and [`metrics`] sit at the bottom beside [`model`].

pub mod act;
pub mod cli;
pub mod controllers;
pub mod error;
pub mod metrics;
pub mod model;
pub mod run;
pub mod state;

pub use error::{Error, Result};
