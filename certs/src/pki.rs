//! Certificates: make a CA, issue serving pairs, read certificates back.
//!
//! Every key is ECDSA P-256, every private key PEM is PKCS#8 (`PRIVATE KEY`).
//! Certificates are back-dated by [`BACKDATE`] so that a peer whose clock is a
//! little behind still accepts them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;

use crate::Error;

/// How far before `now` a new certificate becomes valid (clock skew allowance).
pub const BACKDATE: time::Duration = time::Duration::minutes(5);

/// The longest DNS name a certificate may carry (RFC 1035).
const MAX_DNS_NAME: usize = 253;
/// The longest common name X.509 allows (`ub-common-name`).
const MAX_COMMON_NAME: usize = 64;

/// A CA: its certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateAuthority {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving (server-auth) certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingPair {
    pub cert_pem: String,
    pub key_pem: String,
}

// Key material never reaches a log line, not even through `{:?}`.
impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for ServingPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertificateAuthority {
    /// New self-signed CA (CN given), valid from `now - 5 min` for `validity`.
    pub fn generate(
        common_name: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        if common_name.is_empty() || common_name.len() > MAX_COMMON_NAME {
            return Err(Error::InvalidName {
                name: common_name.to_string(),
                reason: format!("a CA common name must have 1 to {MAX_COMMON_NAME} characters"),
            });
        }
        let (not_before, not_after) = validity_window(validity, now)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "spotwright");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: der_to_pem(cert.der()),
            key_pem: key.serialize_pem(),
        })
    }

    /// Load an existing CA from PEM cert + key.
    ///
    /// The certificate must be a CA (basic constraints `CA:TRUE`) and the key
    /// (PKCS#8) must be the one the certificate names.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let der = first_certificate_der(cert_pem)?;
        let info = inspect_der(&der)?;
        if !info.is_ca {
            return Err(Error::NotCa {
                subject: info.subject,
            });
        }
        key_matches(key_pem, &info)?;
        Ok(Self {
            cert_pem: der_to_pem(&der),
            key_pem: key_pem.to_string(),
        })
    }

    /// Issue a serving (server-auth) certificate for these DNS names and IPs, signed by this CA.
    ///
    /// Valid from `now - 5 min` for `validity`; the first DNS name (or IP) is
    /// also the subject's common name when it fits.
    pub fn issue_serving(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<ServingPair, Error> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(Error::NoNames);
        }
        for name in dns_names {
            validate_dns_name(name)?;
        }
        let (not_before, not_after) = validity_window(validity, now)?;
        let ca_key = parse_key(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(|e| Error::ParseCertificate(format!("CA certificate: {e}")))?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let common_name = dns_names
            .first()
            .cloned()
            .or_else(|| ips.first().map(IpAddr::to_string))
            .filter(|cn| cn.len() <= MAX_COMMON_NAME);
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let mut sans = Vec::with_capacity(dns_names.len() + ips.len());
        for name in dns_names {
            let ia5 = name.clone().try_into().map_err(|_| Error::InvalidName {
                name: name.clone(),
                reason: "not an ASCII DNS name".to_string(),
            })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ServingPair {
            cert_pem: der_to_pem(cert.der()),
            key_pem: key.serialize_pem(),
        })
    }

    /// What the CA certificate says.
    pub fn info(&self) -> Result<CertInfo, Error> {
        inspect(&self.cert_pem)
    }

    /// `Ok` when the (first) certificate in `cert_pem` was issued by this CA:
    /// its issuer is this CA's subject and its signature verifies with this CA's key.
    pub fn verify(&self, cert_pem: &str) -> Result<(), Error> {
        let ca = first_certificate_der(&self.cert_pem)?;
        let cert = first_certificate_der(cert_pem)?;
        verify_issued_by(&cert, &ca)
    }
}

impl ServingPair {
    /// Load a serving pair from PEM, checking that the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let info = inspect(cert_pem)?;
        key_matches(key_pem, &info)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// What the serving certificate says.
    pub fn info(&self) -> Result<CertInfo, Error> {
        inspect(&self.cert_pem)
    }
}

/// The facts of one certificate that rotation decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, e.g. `O=spotwright, CN=spotwright-webhook-ca@1767225600`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Basic constraints `CA:TRUE`.
    pub is_ca: bool,
    /// Extended key usage includes `serverAuth`.
    pub server_auth: bool,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    /// The subject public key (the BIT STRING of the SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
    /// The whole certificate, DER.
    pub der: Vec<u8>,
}

impl CertInfo {
    /// Not expired and already valid at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// True when every wanted DNS name (case-insensitively) and IP is among the SANs.
    pub fn covers(&self, dns_names: &[String], ips: &[IpAddr]) -> bool {
        dns_names.iter().all(|want| {
            self.dns_names
                .iter()
                .any(|have| have.eq_ignore_ascii_case(want))
        }) && ips.iter().all(|want| self.ips.contains(want))
    }
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, Error> {
    inspect_der(&first_certificate_der(cert_pem)?)
}

/// Reads one DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, Error> {
    let cert = parse_der(der)?;
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    let mut is_ca = false;
    let mut server_auth = false;
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => dns_names.push((*dns).to_string()),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                ips.push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::ExtendedKeyUsage(eku) => server_auth = eku.server_auth || eku.any,
            ParsedExtension::SubjectKeyIdentifier(ski) => subject_key_id = Some(ski.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        dns_names,
        ips,
        is_ca,
        server_auth,
        subject_key_id,
        authority_key_id,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        der: der.to_vec(),
    })
}

/// `Ok` when `cert_der` names `ca_der`'s subject as its issuer and its
/// signature verifies with `ca_der`'s public key. Validity dates are not checked.
pub fn verify_issued_by(cert_der: &[u8], ca_der: &[u8]) -> Result<(), Error> {
    let cert = parse_der(cert_der)?;
    let ca = parse_der(ca_der)?;
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(Error::NotIssuedBy {
            issuer: ca.subject().to_string(),
            reason: format!("the certificate's issuer is {}", cert.issuer()),
        });
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| Error::NotIssuedBy {
            issuer: ca.subject().to_string(),
            reason: format!("signature does not verify: {e}"),
        })
}

/// Every `CERTIFICATE` block of a PEM text, DER, in order. Other blocks are skipped.
pub fn certificates_der(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| Error::ParseCertificate(format!("bad PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

/// The first `CERTIFICATE` block of a PEM text, DER.
pub fn first_certificate_der(pem: &str) -> Result<Vec<u8>, Error> {
    certificates_der(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::ParseCertificate("no CERTIFICATE block in PEM".to_string()))
}

/// DER certificate to PEM: 64-column base64, `\n` line ends, trailing newline.
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `Ok` when `key_pem` is a PKCS#8 private key whose public half is the certificate's.
pub fn key_matches(key_pem: &str, cert: &CertInfo) -> Result<(), Error> {
    let key = parse_key(key_pem)?;
    if key.public_key_raw() == cert.public_key.as_slice() {
        Ok(())
    } else {
        Err(Error::KeyMismatch {
            subject: cert.subject.clone(),
        })
    }
}

/// Checks a DNS name before it goes into a certificate: ASCII letters, digits,
/// `-`, `.` and a leading `*.` wildcard label; no empty labels.
pub fn validate_dns_name(name: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > MAX_DNS_NAME {
        return Err(bad("must have 1 to 253 characters"));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must have 1 to 63 characters"));
        }
        if i == 0 && label == "*" {
            continue;
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    Ok(())
}

fn parse_key(key_pem: &str) -> Result<KeyPair, Error> {
    KeyPair::from_pem(key_pem).map_err(|e| {
        let hint = if key_pem.contains("BEGIN EC PRIVATE KEY") || key_pem.contains("BEGIN RSA") {
            " (only PKCS#8 'PRIVATE KEY' PEM is read; convert with `openssl pkcs8 -topk8 -nocrypt`)"
        } else {
            ""
        };
        Error::ParseKey(format!("{e}{hint}"))
    })
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::ParseCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::ParseCertificate(
            "trailing bytes after the certificate".to_string(),
        ));
    }
    Ok(cert)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `[now - BACKDATE, now - BACKDATE + validity]`, checked against what X.509 can encode.
fn validity_window(
    validity: Duration,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), Error> {
    let out_of_range = || Error::Validity(format!("{validity:?} from {now} cannot be encoded"));
    let validity_t = time::Duration::try_from(validity).map_err(|_| out_of_range())?;
    if validity_t <= BACKDATE {
        return Err(Error::Validity(format!(
            "{validity:?} is too short: it must exceed the {BACKDATE} back-dating"
        )));
    }
    let not_before = now.checked_sub(BACKDATE).ok_or_else(out_of_range)?;
    let not_after = not_before
        .checked_add(validity_t)
        .ok_or_else(out_of_range)?;
    // X.509 times (UTCTime / GeneralizedTime) stop at year 9999.
    if not_before.year() < 1950 || not_after.year() > 9999 {
        return Err(out_of_range());
    }
    Ok((not_before, not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-01T12:00:00Z
    const NOW: OffsetDateTime = match OffsetDateTime::from_unix_timestamp(1_767_268_800) {
        Ok(t) => t,
        Err(_) => panic!("bad timestamp"),
    };
    const DAY: Duration = Duration::from_secs(86_400);

    fn names() -> Vec<String> {
        vec![
            "spotwright-webhook".to_string(),
            "spotwright-webhook.spotwright-system.svc".to_string(),
        ]
    }

    #[test]
    fn ca_is_self_signed_ca_with_right_window() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        let info = ca.info().unwrap();
        assert!(info.is_ca);
        assert!(!info.server_auth);
        assert_eq!(info.subject, "O=spotwright, CN=test-ca");
        assert_eq!(info.issuer, info.subject);
        assert_eq!(info.not_before, NOW - BACKDATE);
        assert_eq!(info.not_after, NOW - BACKDATE + time::Duration::days(10));
        assert!(info.subject_key_id.is_some());
        // Self-signed: verifies against itself.
        ca.verify(&ca.cert_pem).unwrap();
        assert!(ca.key_pem.contains("BEGIN PRIVATE KEY"));
        // P-256: 65-byte uncompressed point.
        assert_eq!(info.public_key.len(), 65);
        assert_eq!(info.public_key[0], 4);
    }

    #[test]
    fn serving_cert_is_signed_by_ca_and_covers_names() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        let ips: Vec<IpAddr> = vec!["10.0.0.7".parse().unwrap(), "::1".parse().unwrap()];
        let pair = ca.issue_serving(&names(), &ips, 3 * DAY, NOW).unwrap();
        let info = pair.info().unwrap();
        let ca_info = ca.info().unwrap();

        // Signed by this CA: issuer DN, authority key id and signature.
        assert_eq!(info.issuer, ca_info.subject);
        assert_eq!(info.authority_key_id, ca_info.subject_key_id);
        ca.verify(&pair.cert_pem).unwrap();
        verify_issued_by(&info.der, &ca_info.der).unwrap();

        // SANs, usage, window.
        assert_eq!(info.dns_names, names());
        assert_eq!(info.ips, ips);
        assert!(info.covers(&names(), &ips));
        assert!(info.covers(&["SPOTWRIGHT-WEBHOOK".to_string()], &[]));
        assert!(!info.covers(&["other".to_string()], &[]));
        assert!(!info.covers(&[], &["10.0.0.8".parse().unwrap()]));
        assert!(info.server_auth);
        assert!(!info.is_ca);
        assert_eq!(info.subject, "CN=spotwright-webhook");
        assert_eq!(info.not_before, NOW - BACKDATE);
        assert_eq!(info.not_after, NOW - BACKDATE + time::Duration::days(3));
        assert!(info.valid_at(NOW));
        assert!(!info.valid_at(NOW + time::Duration::days(3)));
        assert!(!info.valid_at(NOW - time::Duration::minutes(6)));

        // The key is the certificate's.
        ServingPair::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
        key_matches(&pair.key_pem, &info).unwrap();
        assert!(matches!(
            key_matches(&ca.key_pem, &info),
            Err(Error::KeyMismatch { .. })
        ));
    }

    #[test]
    fn other_ca_does_not_verify() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        // Same name, different key: the issuer DN matches but the signature does not.
        let twin = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        let other = CertificateAuthority::generate("other-ca", 10 * DAY, NOW).unwrap();
        let pair = ca.issue_serving(&names(), &[], DAY, NOW).unwrap();
        let err = twin.verify(&pair.cert_pem).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        let err = other.verify(&pair.cert_pem).unwrap_err();
        assert!(err.to_string().contains("issuer"), "{err}");
    }

    #[test]
    fn from_pem_round_trips_and_checks() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        let loaded = CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        assert_eq!(loaded.info().unwrap().der, ca.info().unwrap().der);
        // The loaded CA issues certificates the original verifies.
        let pair = loaded.issue_serving(&names(), &[], DAY, NOW).unwrap();
        ca.verify(&pair.cert_pem).unwrap();

        let other = CertificateAuthority::generate("other", 10 * DAY, NOW).unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(&ca.cert_pem, &other.key_pem),
            Err(Error::KeyMismatch { .. })
        ));
        assert!(matches!(
            CertificateAuthority::from_pem(&pair.cert_pem, &pair.key_pem),
            Err(Error::NotCa { .. })
        ));
        assert!(matches!(
            CertificateAuthority::from_pem("garbage", &ca.key_pem),
            Err(Error::ParseCertificate(_))
        ));
        assert!(matches!(
            CertificateAuthority::from_pem(&ca.cert_pem, "garbage"),
            Err(Error::ParseKey(_))
        ));
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let err = CertificateAuthority::from_pem(&ca.cert_pem, sec1).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
    }

    #[test]
    fn ip_only_serving_cert() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let pair = ca.issue_serving(&[], &[ip], DAY, NOW).unwrap();
        let info = pair.info().unwrap();
        assert_eq!(info.ips, vec![ip]);
        assert!(info.dns_names.is_empty());
        assert_eq!(info.subject, "CN=192.0.2.1");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ca = CertificateAuthority::generate("test-ca", 10 * DAY, NOW).unwrap();
        assert!(matches!(
            ca.issue_serving(&[], &[], DAY, NOW),
            Err(Error::NoNames)
        ));
        for bad in ["", "a..b", "-a.b", "a b", "ü.example", "a.*"] {
            assert!(
                matches!(
                    ca.issue_serving(&[bad.to_string()], &[], DAY, NOW),
                    Err(Error::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            ca.issue_serving(&names(), &[], Duration::from_secs(60), NOW),
            Err(Error::Validity(_))
        ));
        assert!(matches!(
            CertificateAuthority::generate("x", Duration::from_secs(u64::MAX), NOW),
            Err(Error::Validity(_))
        ));
        assert!(matches!(
            CertificateAuthority::generate("x", 100_000 * 365 * DAY, NOW),
            Err(Error::Validity(_))
        ));
        assert!(CertificateAuthority::generate("", DAY, NOW).is_err());
        validate_dns_name("*.spotwright-system.svc").unwrap();
        validate_dns_name("example.com.").unwrap();
    }

    #[test]
    fn pem_helpers() {
        let a = CertificateAuthority::generate("a", DAY, NOW).unwrap();
        let b = CertificateAuthority::generate("b", DAY, NOW).unwrap();
        let bundle = format!("{}{}{}", a.cert_pem, a.key_pem, b.cert_pem);
        let ders = certificates_der(&bundle).unwrap();
        assert_eq!(ders.len(), 2);
        assert_eq!(der_to_pem(&ders[0]), a.cert_pem.replace("\r\n", "\n"));
        assert_eq!(inspect_der(&ders[1]).unwrap().subject, "O=spotwright, CN=b");
        assert!(certificates_der("").unwrap().is_empty());
        assert!(first_certificate_der("no pem here").is_err());
        // Debug never shows the key.
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
    }
}
