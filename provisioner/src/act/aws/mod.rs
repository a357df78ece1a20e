//! EC2, SSM, SQS, EKS and Pricing adapters. Each module keeps its decisions in pure
//! functions over SDK output types (tested without a network) and its AWS
//! calls in thin async functions (tested against moto or a replay server).

pub mod ami;
pub mod catalog;
pub mod config;
pub mod eks;
pub mod error;
pub mod fleet;
pub mod network;
pub mod pricing;
pub mod sqs;

pub use error::SdkCallError;
