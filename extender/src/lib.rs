//! The Spotwright scheduler extender: the second kube-scheduler
//! (`spotwright-scheduler`) calls it to keep pods off nodes on their way
//! out (`filter`) and to rank the rest by packing, price, interruption risk
//! and age (`score`).
//!
//! watch (`cache`) → index (`index`, `facts`, `slots`) → decide (`filter`, `score`)
//! → act (`answer`, `wire`, `server`) → report (`metrics`).

pub mod answer;
pub mod cache;
pub mod cli;
pub mod facts;
pub mod filter;
pub mod fixtures;
pub mod index;
pub mod metrics;
pub mod score;
pub mod server;
pub mod slots;
pub mod wire;
