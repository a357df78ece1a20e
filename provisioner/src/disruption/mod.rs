//! Voluntary disruption: drifted, expired and rebalance-recommended nodes
//! are replaced, new node first, under the NodePool's budgets.

pub mod budgets;
pub mod controller;
pub mod cron;
pub mod decide;
pub mod simulate;
