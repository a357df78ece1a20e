//! What Spotwright's servers share: reloadable rustls, bounded HTTP serving
//! with graceful shutdown, the metrics and health listener, and log set-up.

pub mod body;
pub mod health;
pub mod http;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub use shutdown::Shutdown;
