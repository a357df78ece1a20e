//! The bottom layer: plain data and pure functions over Kubernetes objects
//! and the solver's model. Nothing here does I/O or reads a clock; every
//! layer above may use it, and it uses none of them.

pub mod batch;
pub mod budgets;
pub mod burst;
pub mod claim;
pub mod clock;
pub mod consolidation;
pub mod cron;
pub mod disruption;
pub mod facts;
pub mod hashing;
pub mod launch;
pub mod launch_group;
pub mod new_claim;
pub mod node;
pub mod pod;
pub mod pod_events;
pub mod problem;
pub mod queue_order;
pub mod reservations;
pub mod simulate;
pub mod token_bucket;
pub mod volumes;
