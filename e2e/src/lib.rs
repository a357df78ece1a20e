//! The local cluster's node agent, and what Spotwright's end-to-end tests
//! share: the cluster, the programs run as processes, and AWS clients.

pub mod aws;
pub mod fault;
pub mod harness;
pub mod node_agent;
pub mod timeline;
