//! Flags (each also read from the environment) and the validated settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use spotwright_api::keys;
use spotwright_serving::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-webhook",
    version,
    about = "Mutating admission webhook that moves opted-in pods onto Spotwright's Spot capacity"
)]
pub struct Cli {
    /// Address of the HTTPS listener serving POST /mutate.
    #[arg(
        long,
        env = "SPOTWRIGHT_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// PEM certificate chain; re-read when it changes.
    #[arg(long, env = "SPOTWRIGHT_WEBHOOK_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// PEM private key; re-read when it changes.
    #[arg(long, env = "SPOTWRIGHT_WEBHOOK_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// Address of the plain-HTTP listener serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SPOTWRIGHT_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,
    /// Scheduler that opted-in pods are handed to; empty turns the injection off.
    #[arg(long, env = "SPOTWRIGHT_WEBHOOK_SCHEDULER_NAME", default_value = keys::SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// Namespace Spotwright runs in; its pods are never mutated.
    #[arg(long, env = "POD_NAMESPACE", default_value = keys::SYSTEM_NAMESPACE)]
    pub namespace: String,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "SPOTWRIGHT_WEBHOOK_MAX_REQUEST_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Deadline for one request, body read included, in milliseconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_WEBHOOK_REQUEST_TIMEOUT_MS",
        default_value_t = 1500
    )]
    pub request_timeout_ms: u64,
    /// How often the certificate files are checked for change, in milliseconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_WEBHOOK_CERT_RELOAD_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub cert_reload_interval_ms: u64,
    /// How long in-flight requests may take after SIGTERM, in seconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_WEBHOOK_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 15
    )]
    pub shutdown_grace_seconds: u64,
    /// Log format.
    #[arg(
        long,
        env = "SPOTWRIGHT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag} must be greater than zero")]
    Zero { flag: &'static str },
}

impl Cli {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max-request-bytes", self.max_request_bytes as u64),
            ("request-timeout-ms", self.request_timeout_ms),
            ("cert-reload-interval-ms", self.cert_reload_interval_ms),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((flag, _)) => Err(ConfigError::Zero { flag }),
            None => Ok(()),
        }
    }

    pub fn scheduler_name(&self) -> Option<String> {
        (!self.scheduler_name.is_empty()).then(|| self.scheduler_name.clone())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn cert_reload_interval(&self) -> Duration {
        Duration::from_millis(self.cert_reload_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}
