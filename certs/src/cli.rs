//! Flags of `spotwright-certs generate` and `spotwright-certs ensure`.
//! Every flag can also come from the environment variable named in `--help`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use spotwright_api::keys::SYSTEM_NAMESPACE;
use time::OffsetDateTime;
use tracing::info;

use crate::cluster::{LoopOptions, Target};
use crate::duration::clap_duration;
use crate::files::GenerateOptions;
use crate::plan::{service_dns_names, Settings};

/// The webhook Service's name; also the default DNS names' first label.
pub const DEFAULT_SERVICE: &str = "spotwright-webhook";

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-certs",
    version,
    about = "TLS for the Spotwright webhook: a CA and a serving pair, as files (generate) or kept in Secrets with caBundle and rotation (ensure)."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SPOTWRIGHT_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

pub use spotwright_serving::telemetry::LogFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a CA and a serving pair as files (ca.crt, ca.key, tls.crt, tls.key).
    Generate(GenerateArgs),
    /// Keep the CA, the serving pair and caBundle up to date in the cluster.
    Ensure(EnsureArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write ca.crt, ca.key (new CA only), tls.crt and tls.key into.
    #[arg(long, env = "SPOTWRIGHT_CERTS_OUT_DIR")]
    pub out_dir: PathBuf,
    /// DNS name of the serving certificate (repeatable). Default: the four
    /// names of Service spotwright-webhook in spotwright-system.
    #[arg(
        long = "dns",
        value_name = "NAME",
        env = "SPOTWRIGHT_CERTS_DNS",
        value_delimiter = ','
    )]
    pub dns: Vec<String>,
    /// IP address of the serving certificate (repeatable).
    #[arg(
        long = "ip",
        value_name = "IP",
        env = "SPOTWRIGHT_CERTS_IP",
        value_delimiter = ','
    )]
    pub ip: Vec<IpAddr>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500), env = "SPOTWRIGHT_CERTS_VALIDITY_DAYS")]
    pub validity_days: u32,
    /// Validity of a new CA, in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500), env = "SPOTWRIGHT_CERTS_CA_VALIDITY_DAYS")]
    pub ca_validity_days: u32,
    /// Sign with this CA certificate (PEM) instead of making a CA; needs --ca-key.
    #[arg(long, requires = "ca_key", env = "SPOTWRIGHT_CERTS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PKCS#8 PEM); needs --ca-cert.
    #[arg(long, requires = "ca_cert", env = "SPOTWRIGHT_CERTS_CA_KEY")]
    pub ca_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// Namespace of the Secrets and the Service.
    #[arg(long, default_value = SYSTEM_NAMESPACE, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// Serving Secret (type kubernetes.io/tls: tls.crt, tls.key, ca.crt).
    #[arg(
        long,
        default_value = "spotwright-webhook-tls",
        env = "SPOTWRIGHT_CERTS_SECRET"
    )]
    pub secret: String,
    /// CA Secret (Opaque: ca.crt, ca.key, ca-bundle.crt).
    #[arg(
        long,
        default_value = "spotwright-webhook-ca",
        env = "SPOTWRIGHT_CERTS_CA_SECRET"
    )]
    pub ca_secret: String,
    /// MutatingWebhookConfiguration whose every webhook gets caBundle.
    #[arg(
        long,
        default_value = "spotwright-webhook",
        env = "SPOTWRIGHT_CERTS_WEBHOOK_CONFIG"
    )]
    pub webhook_config: String,
    /// Service the certificate is for (its four in-cluster DNS names).
    #[arg(long, default_value = DEFAULT_SERVICE, env = "SPOTWRIGHT_CERTS_SERVICE")]
    pub service: String,
    /// Extra IP address of the serving certificate (repeatable).
    #[arg(
        long = "ip",
        value_name = "IP",
        env = "SPOTWRIGHT_CERTS_IP",
        value_delimiter = ','
    )]
    pub ip: Vec<IpAddr>,
    /// Validity of a new serving certificate (e.g. 90d, 2160h).
    #[arg(long, default_value = "90d", value_parser = clap_duration, env = "SPOTWRIGHT_CERTS_VALIDITY")]
    pub validity: Duration,
    /// Validity of a new CA. The CA is replaced when less than a third of it is left.
    #[arg(long, default_value = "5y", value_parser = clap_duration, env = "SPOTWRIGHT_CERTS_CA_VALIDITY")]
    pub ca_validity: Duration,
    /// Reissue the serving certificate when it expires within this.
    #[arg(long, default_value = "30d", value_parser = clap_duration, env = "SPOTWRIGHT_CERTS_RENEW_BEFORE")]
    pub renew_before: Duration,
    /// Period between passes (a change to any of the objects also triggers one).
    #[arg(long, default_value = "1h", value_parser = clap_duration, env = "SPOTWRIGHT_CERTS_INTERVAL")]
    pub interval: Duration,
    /// Do one pass and exit (non-zero on failure).
    #[arg(long, env = "SPOTWRIGHT_CERTS_ONCE")]
    pub once: bool,
    /// After each pass, copy the serving Secret's tls.crt, tls.key and ca.crt into this directory.
    #[arg(long, env = "SPOTWRIGHT_CERTS_WRITE_DIR")]
    pub write_dir: Option<PathBuf>,
}

impl GenerateArgs {
    /// The options of [`crate::files::generate`], with the default DNS names filled in.
    pub fn options(&self) -> GenerateOptions {
        let dns_names = if self.dns.is_empty() {
            service_dns_names(DEFAULT_SERVICE, SYSTEM_NAMESPACE)
        } else {
            self.dns.clone()
        };
        GenerateOptions {
            out_dir: self.out_dir.clone(),
            dns_names,
            ips: self.ip.clone(),
            validity: days(self.validity_days),
            ca_validity: days(self.ca_validity_days),
            ca: self.ca_cert.clone().zip(self.ca_key.clone()),
            ca_common_name: format!("{DEFAULT_SERVICE}-ca"),
        }
    }
}

impl EnsureArgs {
    pub fn target(&self) -> Target {
        Target {
            namespace: self.namespace.clone(),
            secret: self.secret.clone(),
            ca_secret: self.ca_secret.clone(),
            webhook_config: self.webhook_config.clone(),
        }
    }

    /// Validated settings.
    pub fn settings(&self) -> Result<Settings, crate::Error> {
        let settings = Settings {
            ips: self.ip.clone(),
            validity: self.validity,
            ca_validity: self.ca_validity,
            renew_before: self.renew_before,
            ..Settings::for_service(&self.service, &self.namespace)
        };
        settings.validate()?;
        if self.interval.is_zero() {
            return Err(crate::Error::Settings(
                "--interval must be positive".to_string(),
            ));
        }
        Ok(settings)
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// `spotwright-certs generate`.
pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let opts = args.options();
    let out = crate::files::generate(&opts, OffsetDateTime::now_utc())?;
    info!(
        dir = %opts.out_dir.display(),
        files = out.files.len(),
        new_ca = out.ca_generated,
        "wrote certificates"
    );
    Ok(())
}

/// `spotwright-certs ensure`.
pub async fn run_ensure(args: &EnsureArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let target = args.target();
    let options = LoopOptions {
        interval: args.interval,
        write_dir: args.write_dir.clone(),
    };
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    // Plain requests should fail fast; watches hold a request open for minutes.
    let mut request_config = config.clone();
    request_config.read_timeout = Some(Duration::from_secs(30));
    request_config.write_timeout = Some(Duration::from_secs(30));
    let client =
        kube::Client::try_from(request_config).context("cannot build Kubernetes client")?;
    info!(
        namespace = %target.namespace,
        secret = %target.secret,
        ca_secret = %target.ca_secret,
        webhook_config = %target.webhook_config,
        dns = ?settings.dns_names,
        ips = ?settings.ips,
        once = args.once,
        "ensuring webhook certificates"
    );
    if args.once {
        crate::cluster::run_once(client, target, settings, options).await
    } else {
        let watch_client =
            kube::Client::try_from(config).context("cannot build Kubernetes client")?;
        crate::cluster::run(client, watch_client, target, settings, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("spotwright-certs").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ensure_defaults() {
        let Command::Ensure(args) = parse(&["ensure"]).unwrap().command else {
            panic!("not ensure");
        };
        // POD_NAMESPACE may be set where tests run; everything else has fixed defaults.
        let ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| SYSTEM_NAMESPACE.to_string());
        assert_eq!(args.namespace, ns);
        assert_eq!(args.secret, "spotwright-webhook-tls");
        assert_eq!(args.ca_secret, "spotwright-webhook-ca");
        assert_eq!(args.webhook_config, "spotwright-webhook");
        assert_eq!(args.validity, days(90));
        assert_eq!(args.ca_validity, days(5 * 365));
        assert_eq!(args.renew_before, days(30));
        assert_eq!(args.interval, Duration::from_secs(3600));
        assert!(!args.once);
        let settings = args.settings().unwrap();
        assert_eq!(
            settings.dns_names,
            service_dns_names("spotwright-webhook", &ns)
        );
    }

    #[test]
    fn ensure_flags() {
        let Command::Ensure(args) = parse(&[
            "ensure",
            "--namespace",
            "ns",
            "--service",
            "svc",
            "--ip",
            "10.0.0.1",
            "--ip",
            "::1",
            "--validity",
            "2160h",
            "--renew-before",
            "1d",
            "--once",
            "--write-dir",
            "/tls",
            "--log-format",
            "json",
        ])
        .unwrap()
        .command
        else {
            panic!("not ensure");
        };
        let s = args.settings().unwrap();
        assert_eq!(s.dns_names[3], "svc.ns.svc.cluster.local");
        assert_eq!(s.ips.len(), 2);
        assert_eq!(s.validity, days(90));
        assert!(args.once);
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["ensure", "--validity", "90"]).is_err());
        assert!(parse(&["ensure", "--ip", "not-an-ip"]).is_err());
        assert!(parse(&["generate"]).is_err()); // --out-dir missing
        assert!(parse(&["generate", "--out-dir", "d", "--ca-cert", "c"]).is_err());
        assert!(parse(&["generate", "--out-dir", "d", "--validity-days", "0"]).is_err());
        assert!(parse(&["--log-format", "yaml", "ensure"]).is_err());
        // Parses, but the settings are inconsistent.
        let Command::Ensure(args) =
            parse(&["ensure", "--validity", "20d", "--renew-before", "30d"])
                .unwrap()
                .command
        else {
            panic!("not ensure");
        };
        let err = args.settings().unwrap_err().to_string();
        assert!(err.contains("--renew-before"), "{err}");
    }

    #[test]
    fn generate_defaults_to_service_names() {
        let Command::Generate(args) = parse(&["generate", "--out-dir", "d"]).unwrap().command
        else {
            panic!("not generate");
        };
        let opts = args.options();
        assert_eq!(
            opts.dns_names,
            [
                "spotwright-webhook",
                "spotwright-webhook.spotwright-system",
                "spotwright-webhook.spotwright-system.svc",
                "spotwright-webhook.spotwright-system.svc.cluster.local",
            ]
        );
        assert_eq!(opts.validity, days(365));
        assert_eq!(opts.ca_validity, days(3650));
        assert!(opts.ca.is_none());
    }
}
