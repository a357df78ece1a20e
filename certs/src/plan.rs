//! Decide what `ensure` must write: a pure function of what was observed,
//! the settings and the time.
//!
//! [`plan`] looks at the CA Secret, the serving Secret and the webhook
//! configuration and returns the [`Action`]s to take, always in this order:
//!
//! 1. write the CA Secret (new CA and/or new bundle),
//! 2. set `caBundle` on the webhook entries that differ,
//! 3. write the serving Secret (new pair and/or new `ca.crt`).
//!
//! so the API server trusts a CA before anything signed by it is served.
//! [`materialize`] turns a plan into concrete [`Write`]s (it generates keys, so
//! it is not pure), and [`ObservedState::apply`] applies a write to a state in
//! memory, which is what the cluster adapter does for real.
//!
//! Rules:
//! - no usable CA (missing, unparsable, key not matching) → new CA;
//! - less than a third of the CA's validity left → new CA (rotation);
//! - the bundle is the current CA, then every other CA certificate from the
//!   CA Secret (`ca.crt` and `ca-bundle.crt`) that has not expired: an old CA
//!   stays trusted until it expires, then it is dropped;
//! - the serving pair is reissued when missing, unparsable, its key does not
//!   match, it does not cover the wanted DNS names / IPs, it is not signed by
//!   the current CA, or it expires within `renew_before`.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::pki::{
    certificates_der, der_to_pem, inspect_der, validate_dns_name, verify_issued_by, CertInfo,
    CertificateAuthority, ServingPair,
};
use crate::Error;

/// Key of the CA certificate in the CA Secret and of the bundle in the serving Secret.
pub const CA_CRT: &str = "ca.crt";
/// Key of the CA private key in the CA Secret.
pub const CA_KEY: &str = "ca.key";
/// Key of the trusted CA bundle in the CA Secret.
pub const CA_BUNDLE: &str = "ca-bundle.crt";
/// Key of the serving certificate in the serving Secret.
pub const TLS_CRT: &str = "tls.crt";
/// Key of the serving private key in the serving Secret.
pub const TLS_KEY: &str = "tls.key";

/// The serving pair must outlive `renew_before` by at least this much,
/// so that a fresh pair is not already due for renewal.
pub const MIN_RENEWAL_MARGIN: Duration = Duration::from_secs(10 * 60);
/// The shortest CA validity accepted.
pub const MIN_CA_VALIDITY: Duration = Duration::from_secs(3600);
/// The longest validity accepted for either certificate.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);
/// The longest CA common-name prefix (the CN is `<prefix>@<unix time>`).
pub const MAX_CA_NAME: usize = 48;

/// What `ensure` wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// DNS names the serving certificate must cover.
    pub dns_names: Vec<String>,
    /// IPs the serving certificate must cover.
    pub ips: Vec<IpAddr>,
    /// Validity of a new serving certificate.
    pub validity: Duration,
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// Reissue the serving certificate when it expires within this.
    pub renew_before: Duration,
    /// Common-name prefix of new CAs; the CN is `<ca_name>@<unix time>`.
    pub ca_name: String,
}

impl Settings {
    /// Defaults for a Service: its four DNS names, 90 days serving, 5 years CA,
    /// renewal 30 days before expiry.
    pub fn for_service(service: &str, namespace: &str) -> Self {
        Self {
            dns_names: service_dns_names(service, namespace),
            ips: Vec::new(),
            validity: Duration::from_secs(90 * 86_400),
            ca_validity: Duration::from_secs(5 * 365 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            ca_name: format!("{service}-ca"),
        }
    }

    /// Rejects settings under which a fresh pass would not be final.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Settings(m));
        if self.dns_names.is_empty() && self.ips.is_empty() {
            return bad("no DNS names and no IPs to certify".to_string());
        }
        for name in &self.dns_names {
            validate_dns_name(name)?;
        }
        if self.validity < self.renew_before + MIN_RENEWAL_MARGIN {
            return bad(format!(
                "--validity ({}) must exceed --renew-before ({}) by at least {}",
                crate::format_duration(self.validity),
                crate::format_duration(self.renew_before),
                crate::format_duration(MIN_RENEWAL_MARGIN),
            ));
        }
        if self.ca_validity < MIN_CA_VALIDITY {
            return bad(format!(
                "--ca-validity ({}) must be at least {}",
                crate::format_duration(self.ca_validity),
                crate::format_duration(MIN_CA_VALIDITY),
            ));
        }
        if self.validity > MAX_VALIDITY || self.ca_validity > MAX_VALIDITY {
            return bad(format!(
                "validities are limited to {}",
                crate::format_duration(MAX_VALIDITY)
            ));
        }
        if self.ca_name.is_empty() || self.ca_name.len() > MAX_CA_NAME {
            return bad(format!(
                "the CA name prefix must have 1 to {MAX_CA_NAME} characters"
            ));
        }
        Ok(())
    }

    /// Common name of a CA made at `now`.
    pub fn ca_common_name(&self, now: OffsetDateTime) -> String {
        format!("{}@{}", self.ca_name, now.unix_timestamp())
    }
}

/// The DNS names a Service answers to inside the cluster:
/// `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// The CA Secret's data (`ca.crt`, `ca.key`, `ca-bundle.crt`); absent keys are `None`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CaSecretData {
    pub ca_crt: Option<String>,
    pub ca_key: Option<String>,
    pub bundle: Option<String>,
}

/// The serving Secret's data (`tls.crt`, `tls.key`, `ca.crt`); absent keys are `None`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServingSecretData {
    pub tls_crt: Option<String>,
    pub tls_key: Option<String>,
    pub ca_crt: Option<String>,
}

impl fmt::Debug for CaSecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSecretData")
            .field("ca_crt", &self.ca_crt)
            .field("ca_key", &self.ca_key.as_ref().map(|_| "<redacted>"))
            .field("bundle", &self.bundle)
            .finish()
    }
}

impl fmt::Debug for ServingSecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingSecretData")
            .field("tls_crt", &self.tls_crt)
            .field("tls_key", &self.tls_key.as_ref().map(|_| "<redacted>"))
            .field("ca_crt", &self.ca_crt)
            .finish()
    }
}

/// One webhook entry of the MutatingWebhookConfiguration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEntry {
    pub name: String,
    /// `clientConfig.caBundle`, decoded (PEM bytes).
    pub ca_bundle: Option<Vec<u8>>,
}

/// What was read from the cluster. `None` means the object does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedState {
    pub ca_secret: Option<CaSecretData>,
    pub serving_secret: Option<ServingSecretData>,
    /// The webhook configuration's entries; `None` when the configuration does not exist.
    pub webhook: Option<Vec<WebhookEntry>>,
}

/// One entry of the trusted bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleEntry {
    /// The CA this pass generates.
    NewCa,
    /// A CA certificate that already exists (PEM of one certificate, canonical form).
    Existing(String),
}

/// Why a new CA is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaReason {
    /// No CA Secret, or it lacks `ca.crt` / `ca.key`.
    Missing,
    /// The CA certificate or key cannot be used.
    Unusable(String),
    /// Less than a third of the CA's validity is left.
    Expiring { not_after: OffsetDateTime },
}

/// Why a new serving pair is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingReason {
    /// No serving Secret, or it lacks `tls.crt` / `tls.key`.
    Missing,
    /// The certificate or key cannot be used.
    Unusable(String),
    /// The CA is being replaced in this pass.
    NewCa,
    /// The certificate was not issued by the current CA.
    NotSignedByCurrentCa,
    /// Wanted DNS names / IPs are not all among the SANs.
    NamesChanged,
    /// Expires within `renew_before`.
    Expiring { not_after: OffsetDateTime },
}

/// Something worth a warning that is not a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The MutatingWebhookConfiguration does not exist (yet): nothing to patch.
    WebhookConfigMissing,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the CA Secret with [`Plan::bundle`]; `new_ca` says whether (and why)
    /// a new CA replaces the current one, `None` keeps it.
    WriteCaSecret { new_ca: Option<CaReason> },
    /// Set `caBundle` to [`Plan::bundle`] on these webhook entries.
    PatchWebhook { entries: Vec<String> },
    /// Write the serving Secret with `ca.crt` = [`Plan::bundle`]; `reissue` says
    /// whether (and why) a new pair is issued, `None` keeps the pair.
    WriteServingSecret { reissue: Option<ServingReason> },
}

/// The result of [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The trusted CAs after this pass, current CA first.
    pub bundle: Vec<BundleEntry>,
    /// What to write, in order.
    pub actions: Vec<Action>,
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Why this plan makes a new CA, if it does.
    pub fn new_ca(&self) -> Option<&CaReason> {
        self.actions.iter().find_map(|a| match a {
            Action::WriteCaSecret { new_ca } => new_ca.as_ref(),
            _ => None,
        })
    }
}

/// A concrete write, produced by [`materialize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Create or replace the CA Secret with exactly this data (other keys are kept).
    CaSecret(CaSecretData),
    /// Set `clientConfig.caBundle` of these webhook entries to `bundle` (PEM).
    WebhookCaBundle {
        entries: Vec<String>,
        bundle: String,
    },
    /// Create or replace the serving Secret with exactly this data (other keys are kept).
    ServingSecret(ServingSecretData),
}

impl ObservedState {
    /// What the state becomes once `write` succeeded.
    pub fn apply(&mut self, write: &Write) {
        match write {
            Write::CaSecret(data) => self.ca_secret = Some(data.clone()),
            Write::ServingSecret(data) => self.serving_secret = Some(data.clone()),
            Write::WebhookCaBundle { entries, bundle } => {
                if let Some(webhooks) = &mut self.webhook {
                    for entry in webhooks.iter_mut() {
                        if entries.contains(&entry.name) {
                            entry.ca_bundle = Some(bundle.as_bytes().to_vec());
                        }
                    }
                }
            }
        }
    }
}

/// The current, usable CA.
struct CurrentCa {
    info: CertInfo,
    /// Canonical PEM of the certificate.
    pem: String,
}

/// Decides what to write. Pure: same inputs, same plan.
pub fn plan(state: &ObservedState, settings: &Settings, now: OffsetDateTime) -> Plan {
    let mut actions = Vec::new();
    let mut warnings = Vec::new();

    // 1. The CA.
    let (current, new_ca) = match evaluate_ca(state.ca_secret.as_ref(), now) {
        Ok(ca) => (Some(ca), None),
        Err(reason) => (None, Some(reason)),
    };
    let bundle = desired_bundle(state.ca_secret.as_ref(), current.as_ref(), now);
    // The bundle's text, when it can be known before generating anything.
    let bundle_text = bundle_text(&bundle, None);

    let ca_secret_bundle = state.ca_secret.as_ref().and_then(|s| s.bundle.as_deref());
    if new_ca.is_some() || bundle_text.is_none() || ca_secret_bundle != bundle_text.as_deref() {
        actions.push(Action::WriteCaSecret { new_ca });
    }

    // 2. The webhook configuration.
    match &state.webhook {
        None => warnings.push(Warning::WebhookConfigMissing),
        Some(entries) => {
            let stale: Vec<String> = entries
                .iter()
                .filter(|e| match &bundle_text {
                    Some(text) => e.ca_bundle.as_deref() != Some(text.as_bytes()),
                    None => true,
                })
                .map(|e| e.name.clone())
                .collect();
            if !stale.is_empty() {
                actions.push(Action::PatchWebhook { entries: stale });
            }
        }
    }

    // 3. The serving pair.
    let reissue = evaluate_serving(
        state.serving_secret.as_ref(),
        current.as_ref(),
        settings,
        now,
    );
    let serving_ca_crt = state
        .serving_secret
        .as_ref()
        .and_then(|s| s.ca_crt.as_deref());
    if reissue.is_some() || bundle_text.is_none() || serving_ca_crt != bundle_text.as_deref() {
        actions.push(Action::WriteServingSecret { reissue });
    }

    Plan {
        bundle,
        actions,
        warnings,
    }
}

/// Turns a plan into writes: generates the new CA and serving pair it asks for.
/// `state`, `settings` and `now` must be the ones the plan was made from.
pub fn materialize(
    plan: &Plan,
    state: &ObservedState,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Vec<Write>, Error> {
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let new_ca = match plan.new_ca() {
        Some(_) => Some(CertificateAuthority::generate(
            &settings.ca_common_name(now),
            settings.ca_validity,
            now,
        )?),
        None => None,
    };
    let bundle = bundle_text(&plan.bundle, new_ca.as_ref().map(|ca| ca.cert_pem.as_str())).ok_or(
        Error::Inconsistent("the bundle names a new CA the plan does not make"),
    )?;
    // The CA that signs from now on: the new one, or the one in the CA Secret as stored.
    let current = || -> Result<CertificateAuthority, Error> {
        if let Some(ca) = &new_ca {
            return Ok(ca.clone());
        }
        let secret = state
            .ca_secret
            .as_ref()
            .ok_or(Error::Inconsistent("no CA Secret and no new CA"))?;
        match (&secret.ca_crt, &secret.ca_key) {
            (Some(crt), Some(key)) => {
                CertificateAuthority::from_pem(crt, key)?;
                Ok(CertificateAuthority {
                    cert_pem: crt.clone(),
                    key_pem: key.clone(),
                })
            }
            _ => Err(Error::Inconsistent("the CA Secret lacks ca.crt or ca.key")),
        }
    };

    let mut writes = Vec::with_capacity(plan.actions.len());
    for action in &plan.actions {
        writes.push(match action {
            Action::WriteCaSecret { .. } => {
                let ca = current()?;
                Write::CaSecret(CaSecretData {
                    ca_crt: Some(ca.cert_pem),
                    ca_key: Some(ca.key_pem),
                    bundle: Some(bundle.clone()),
                })
            }
            Action::PatchWebhook { entries } => Write::WebhookCaBundle {
                entries: entries.clone(),
                bundle: bundle.clone(),
            },
            Action::WriteServingSecret { reissue: Some(_) } => {
                let pair = current()?.issue_serving(
                    &settings.dns_names,
                    &settings.ips,
                    settings.validity,
                    now,
                )?;
                Write::ServingSecret(ServingSecretData {
                    tls_crt: Some(pair.cert_pem),
                    tls_key: Some(pair.key_pem),
                    ca_crt: Some(bundle.clone()),
                })
            }
            Action::WriteServingSecret { reissue: None } => {
                let old = state.serving_secret.as_ref().ok_or(Error::Inconsistent(
                    "keeping a serving pair that does not exist",
                ))?;
                Write::ServingSecret(ServingSecretData {
                    tls_crt: old.tls_crt.clone(),
                    tls_key: old.tls_key.clone(),
                    ca_crt: Some(bundle.clone()),
                })
            }
        });
    }
    Ok(writes)
}

/// The current CA, or why there must be a new one.
fn evaluate_ca(secret: Option<&CaSecretData>, now: OffsetDateTime) -> Result<CurrentCa, CaReason> {
    let secret = secret.ok_or(CaReason::Missing)?;
    let (Some(crt), Some(key)) = (&secret.ca_crt, &secret.ca_key) else {
        return Err(CaReason::Missing);
    };
    let ca =
        CertificateAuthority::from_pem(crt, key).map_err(|e| CaReason::Unusable(e.to_string()))?;
    let info = ca.info().map_err(|e| CaReason::Unusable(e.to_string()))?;
    let total = info.not_after - info.not_before;
    if total <= time::Duration::ZERO {
        return Err(CaReason::Unusable(
            "its validity period is empty".to_string(),
        ));
    }
    let remaining = info.not_after - now;
    // Rotate when less than a third of the validity is left.
    if remaining.checked_mul(3).is_none_or(|r| r < total) {
        return Err(CaReason::Expiring {
            not_after: info.not_after,
        });
    }
    Ok(CurrentCa {
        pem: ca.cert_pem,
        info,
    })
}

/// Current CA first, then every other unexpired CA certificate from the CA
/// Secret's `ca.crt` and `ca-bundle.crt`, in that order, without duplicates.
fn desired_bundle(
    secret: Option<&CaSecretData>,
    current: Option<&CurrentCa>,
    now: OffsetDateTime,
) -> Vec<BundleEntry> {
    let mut bundle = Vec::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    match current {
        Some(ca) => {
            bundle.push(BundleEntry::Existing(ca.pem.clone()));
            seen.push(ca.info.der.clone());
        }
        None => bundle.push(BundleEntry::NewCa),
    }
    let sources = secret
        .into_iter()
        .flat_map(|s| [s.ca_crt.as_deref(), s.bundle.as_deref()])
        .flatten();
    for pem in sources {
        // An unreadable bundle keeps nothing of it; the CA Secret is rewritten.
        let Ok(ders) = certificates_der(pem) else {
            continue;
        };
        for der in ders {
            if seen.contains(&der) {
                continue;
            }
            let Ok(info) = inspect_der(&der) else {
                continue;
            };
            if !info.is_ca || info.not_after <= now {
                continue;
            }
            bundle.push(BundleEntry::Existing(der_to_pem(&der)));
            seen.push(der);
        }
    }
    bundle
}

/// The bundle as PEM text; `None` when it holds the new CA and `new_ca_pem` is not given.
fn bundle_text(bundle: &[BundleEntry], new_ca_pem: Option<&str>) -> Option<String> {
    let mut out = String::new();
    for entry in bundle {
        match entry {
            BundleEntry::NewCa => out.push_str(new_ca_pem?),
            BundleEntry::Existing(pem) => out.push_str(pem),
        }
    }
    Some(out)
}

/// Why the serving pair must be reissued, if it must.
fn evaluate_serving(
    secret: Option<&ServingSecretData>,
    current: Option<&CurrentCa>,
    settings: &Settings,
    now: OffsetDateTime,
) -> Option<ServingReason> {
    let Some(secret) = secret else {
        return Some(ServingReason::Missing);
    };
    let (Some(crt), Some(key)) = (&secret.tls_crt, &secret.tls_key) else {
        return Some(ServingReason::Missing);
    };
    let info = match ServingPair::from_pem(crt, key).and_then(|p| p.info()) {
        Ok(info) => info,
        Err(e) => return Some(ServingReason::Unusable(e.to_string())),
    };
    let Some(ca) = current else {
        return Some(ServingReason::NewCa);
    };
    if verify_issued_by(&info.der, &ca.info.der).is_err() {
        return Some(ServingReason::NotSignedByCurrentCa);
    }
    if !info.covers(&settings.dns_names, &settings.ips) {
        return Some(ServingReason::NamesChanged);
    }
    let renew_before =
        time::Duration::try_from(settings.renew_before).unwrap_or(time::Duration::MAX);
    if info.not_after - now <= renew_before {
        return Some(ServingReason::Expiring {
            not_after: info.not_after,
        });
    }
    None
}

impl fmt::Display for CaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaReason::Missing => f.write_str("no CA yet"),
            CaReason::Unusable(e) => write!(f, "the CA cannot be used: {e}"),
            CaReason::Expiring { not_after } => {
                write!(
                    f,
                    "less than a third of the CA's validity left (expires {not_after})"
                )
            }
        }
    }
}

impl fmt::Display for ServingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServingReason::Missing => f.write_str("no serving pair yet"),
            ServingReason::Unusable(e) => write!(f, "the serving pair cannot be used: {e}"),
            ServingReason::NewCa => f.write_str("the CA is replaced"),
            ServingReason::NotSignedByCurrentCa => f.write_str("not signed by the current CA"),
            ServingReason::NamesChanged => f.write_str("does not cover the wanted DNS names / IPs"),
            ServingReason::Expiring { not_after } => write!(f, "expires soon ({not_after})"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::WriteCaSecret { new_ca: Some(r) } => {
                write!(f, "write CA Secret with a new CA ({r})")
            }
            Action::WriteCaSecret { new_ca: None } => {
                f.write_str("write CA Secret with an updated bundle")
            }
            Action::PatchWebhook { entries } => write!(f, "set caBundle on webhooks {entries:?}"),
            Action::WriteServingSecret { reissue: Some(r) } => {
                write!(f, "write serving Secret with a new pair ({r})")
            }
            Action::WriteServingSecret { reissue: None } => {
                f.write_str("write serving Secret with an updated ca.crt")
            }
        }
    }
}

#[cfg(test)]
mod tests;
