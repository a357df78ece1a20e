//! Flags (each also read from the environment) and the validated settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use spotwright_serving::telemetry::LogFormat;
use spotwright_serving::tls::TlsFiles;

use crate::answer::Settings;
use crate::score::Weights;

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-extender",
    version,
    about = "kube-scheduler extender: keeps pods off nodes on their way out and scores the rest by packing, price, interruption risk and age"
)]
pub struct Cli {
    /// Address of the listener serving POST /filter and POST /prioritize (HTTPS with --tls-cert-file).
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_LISTEN",
        default_value = "0.0.0.0:8888"
    )]
    pub listen: SocketAddr,
    /// PEM certificate chain, for HTTPS; re-read when it changes. Needs --tls-key-file.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key, for HTTPS; re-read when it changes. Needs --tls-cert-file.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Address of the plain-HTTP listener serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_METRICS_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub metrics_listen: SocketAddr,
    /// Weight of the packing term (most-allocated after placement).
    #[arg(long, env = "SPOTWRIGHT_EXTENDER_WEIGHT_PACKING", default_value_t = 4)]
    pub weight_packing: u32,
    /// Weight of the price term (USD per vCPU-hour, relative to the cheapest candidate).
    #[arg(long, env = "SPOTWRIGHT_EXTENDER_WEIGHT_PRICE", default_value_t = 3)]
    pub weight_price: u32,
    /// Weight of the interruption term (recent interruptions of the node's Spot pool).
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_WEIGHT_INTERRUPTION",
        default_value_t = 2
    )]
    pub weight_interruption: u32,
    /// Weight of the age term (age against expireAfter; drifted nodes get 0).
    #[arg(long, env = "SPOTWRIGHT_EXTENDER_WEIGHT_AGE", default_value_t = 1)]
    pub weight_age: u32,
    /// How far back interruption records count, in minutes.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_INTERRUPTION_WINDOW_MINUTES",
        default_value_t = 60
    )]
    pub interruption_window_minutes: u64,
    /// How long a new node holds room for the pods its NodeClaim was
    /// launched for (and those the provisioner solved onto it later), in
    /// seconds after the Node's creation; 0 turns it off. Measured in
    /// docs/benchmarks.md ("Held room on by default").
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_HOLD_ROOM_SECONDS",
        default_value_t = 20
    )]
    pub hold_room_seconds: u64,
    /// How long a pod whose node is still on its way (its NodeClaim, launched
    /// for it, not Initialized) is kept off nodes holding room for other
    /// pods, in seconds after that NodeClaim's creation; 0 turns it off.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_AWAIT_LAUNCHED_NODE_SECONDS",
        default_value_t = 60
    )]
    pub await_launched_node_seconds: u64,
    /// How long the slot a pod is steered to counts as taken before the
    /// pod's bind is seen, in seconds: the scheduler places the next replica
    /// before that. A steered pod then goes to one node only (its own, else
    /// the best-scored one holding a slot of its controller); 0 steers it to
    /// every such node and counts nothing until the bind.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_STEERED_SLOT_SECONDS",
        default_value_t = 10
    )]
    pub steered_slot_seconds: u64,
    /// Whether a pod the provisioner launched a node for is steered there:
    /// among the nodes that passed every filter, its own gets the top score
    /// and the others none. Soft: it still goes elsewhere when its node is
    /// not there yet or has no room left.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_PREFER_LAUNCHED_NODE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub prefer_launched_node: bool,
    /// Largest request body accepted; larger ones get 413. Full NodeLists can be big.
    #[arg(long, env = "SPOTWRIGHT_EXTENDER_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Deadline for one request, body read included, in milliseconds (under the scheduler's httpTimeout).
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_REQUEST_TIMEOUT_MS",
        default_value_t = 1500
    )]
    pub request_timeout_ms: u64,
    /// How often the certificate files are checked for change, in milliseconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_CERT_RELOAD_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub cert_reload_interval_ms: u64,
    /// How long in-flight requests may take after SIGTERM, in seconds.
    #[arg(
        long,
        env = "SPOTWRIGHT_EXTENDER_SHUTDOWN_GRACE_SECONDS",
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{flag} must be greater than zero")]
    Zero { flag: &'static str },
    #[error("the --weight-* flags must not all be zero")]
    NoWeight,
}

impl Cli {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max-request-bytes", self.max_request_bytes as u64),
            ("request-timeout-ms", self.request_timeout_ms),
            ("cert-reload-interval-ms", self.cert_reload_interval_ms),
            (
                "interruption-window-minutes",
                self.interruption_window_minutes,
            ),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { flag });
        }
        let w = self.weights();
        if [w.packing, w.price, w.interruption, w.age]
            .iter()
            .all(|w| *w == 0)
        {
            return Err(ConfigError::NoWeight);
        }
        Ok(())
    }

    pub fn weights(&self) -> Weights {
        Weights {
            packing: self.weight_packing,
            price: self.weight_price,
            interruption: self.weight_interruption,
            age: self.weight_age,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            weights: self.weights(),
            interruption_window: Duration::from_secs(
                self.interruption_window_minutes.saturating_mul(60),
            ),
            hold_room_for: Duration::from_secs(self.hold_room_seconds),
            prefer_launched_node: self.prefer_launched_node,
            await_launched_node_for: Duration::from_secs(self.await_launched_node_seconds),
            pencil_for: Duration::from_secs(self.steered_slot_seconds),
        }
    }

    /// The certificate pair, when serving HTTPS.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("spotwright-extender").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.listen.to_string(), "0.0.0.0:8888");
        assert_eq!(cli.metrics_listen.to_string(), "0.0.0.0:8081");
        assert_eq!(cli.weights(), Weights::default());
        assert_eq!(
            cli.settings().interruption_window,
            Duration::from_secs(3600)
        );
        assert_eq!(cli.settings().hold_room_for, Duration::from_secs(20));
        assert_eq!(
            parse(&["--hold-room-seconds", "0"])
                .unwrap()
                .settings()
                .hold_room_for,
            Duration::ZERO
        );
        assert_eq!(cli.settings().pencil_for, Duration::from_secs(10));
        assert_eq!(cli.max_request_bytes, 16 << 20);
        assert_eq!(cli.request_timeout(), Duration::from_millis(1500));
        assert!(cli.tls_files().is_none());
        assert_eq!(cli.validate(), Ok(()));
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        assert!(parse(&["--tls-cert-file", "c"]).is_err());
        assert!(parse(&["--tls-key-file", "k"]).is_err());
        let cli = parse(&["--tls-cert-file", "c", "--tls-key-file", "k"]).unwrap();
        assert_eq!(cli.tls_files().unwrap().key, PathBuf::from("k"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--weight-price", "-1"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        let zero = parse(&[
            "--weight-packing",
            "0",
            "--weight-price",
            "0",
            "--weight-interruption",
            "0",
            "--weight-age",
            "0",
        ])
        .unwrap();
        assert_eq!(zero.validate(), Err(ConfigError::NoWeight));
        let no_window = parse(&["--interruption-window-minutes", "0"]).unwrap();
        assert_eq!(
            no_window.validate(),
            Err(ConfigError::Zero {
                flag: "interruption-window-minutes"
            })
        );
    }
}
