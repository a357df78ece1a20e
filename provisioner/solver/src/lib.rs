//! The provisioner's scheduling simulation as a pure function.

pub mod model;
