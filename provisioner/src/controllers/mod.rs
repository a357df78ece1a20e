pub mod drift;
pub mod orphans;
pub mod registration;
pub mod removal;
pub mod termination;
