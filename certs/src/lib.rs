//! The webhook's TLS.
//!
//! - [`pki`]: make a CA, issue a serving pair, read certificates back.
//! - [`files`]: `spotwright-certs generate`, writing the pair as files, and the
//!   atomic file writes `ensure --write-dir` uses.
//! - [`plan`]: the pure decision of `spotwright-certs ensure` (what to write, in which order).
//! - [`cluster`]: the thin Kubernetes adapter that reads state and applies a plan.
//! - [`cli`]: flags of both subcommands.
//!
//! See `docs/certs.md` for modes, flags, the rotation order and the Secrets.

pub mod cli;
pub mod cluster;
pub mod duration;
pub mod files;
pub mod pki;
pub mod plan;

use std::path::PathBuf;

pub use duration::{format_duration, parse_duration};
pub use pki::{inspect, verify_issued_by, CertInfo, CertificateAuthority, ServingPair, BACKDATE};
pub use plan::{plan, service_dns_names, ObservedState, Plan, Settings};

/// Everything that can go wrong outside the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot parse certificate: {0}")]
    ParseCertificate(String),
    #[error("cannot parse private key: {0}")]
    ParseKey(String),
    #[error("the private key does not belong to certificate {subject}")]
    KeyMismatch { subject: String },
    #[error("certificate {subject} is not a CA")]
    NotCa { subject: String },
    #[error("not issued by {issuer}: {reason}")]
    NotIssuedBy { issuer: String, reason: String },
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no DNS names and no IPs to put in the certificate")]
    NoNames,
    #[error("invalid validity: {0}")]
    Validity(String),
    #[error("cannot make certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid duration {input:?}: {reason}")]
    Duration { input: String, reason: String },
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plan that does not fit the state it is materialized against (a bug).
    #[error("inconsistent plan: {0}")]
    Inconsistent(&'static str),
}
