//! The scale benchmark's parts (`bench/scale/run`, `spotwright-scale-bench`)
//! that the e2e test `scale.rs` shares: the workload, one scale-up and
//! scale-down on the local cluster, Karpenter's instance-types file, the
//! floor's fleet (nodes made before the scale-up), and the arithmetic over
//! what was measured.

pub mod figures;
pub mod floor;
pub mod instance_types;
pub mod run;
pub mod traces;
pub mod workload;
