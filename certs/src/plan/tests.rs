//! Tests of `plan`: one per rule, then a property test over arbitrary states.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;

use super::*;
use crate::pki::{certificates_der, inspect, inspect_der, verify_issued_by};

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

/// 2026-01-01T00:00:00Z.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

fn decide(state: &ObservedState, settings: &Settings, now: OffsetDateTime) -> Plan {
    plan(state, settings, now)
}

fn settings() -> Settings {
    Settings::for_service("spotwright-webhook", "spotwright-system")
}

fn webhook(names: &[&str]) -> Option<Vec<WebhookEntry>> {
    Some(
        names
            .iter()
            .map(|n| WebhookEntry {
                name: (*n).to_string(),
                ca_bundle: None,
            })
            .collect(),
    )
}

/// Plans, materializes and applies in memory; returns the plan and the writes.
fn pass(state: &mut ObservedState, settings: &Settings, now: OffsetDateTime) -> (Plan, Vec<Write>) {
    let plan = plan(state, settings, now);
    let writes = materialize(&plan, state, settings, now).unwrap();
    for w in &writes {
        state.apply(w);
    }
    (plan, writes)
}

/// A converged installation made at `at`.
fn installed(at: OffsetDateTime) -> ObservedState {
    let mut state = ObservedState {
        webhook: webhook(&["pods.spotwright.io", "other.spotwright.io"]),
        ..ObservedState::default()
    };
    pass(&mut state, &settings(), at);
    assert!(decide(&state, &settings(), at).is_empty());
    state
}

fn ca_crt(state: &ObservedState) -> String {
    state.ca_secret.as_ref().unwrap().ca_crt.clone().unwrap()
}

fn tls_crt(state: &ObservedState) -> String {
    state
        .serving_secret
        .as_ref()
        .unwrap()
        .tls_crt
        .clone()
        .unwrap()
}

fn bundle(state: &ObservedState) -> String {
    state.ca_secret.as_ref().unwrap().bundle.clone().unwrap()
}

/// DER of every certificate in a PEM text.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    certificates_der(pem).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    inspect(pem).unwrap().der
}

/// Is `cert_pem` signed by a CA in `bundle_pem`?
fn trusted(bundle_pem: &[u8], cert_pem: &str) -> bool {
    let cert = der(cert_pem);
    let Ok(text) = std::str::from_utf8(bundle_pem) else {
        return false;
    };
    certificates_der(text)
        .unwrap_or_default()
        .iter()
        .any(|ca| verify_issued_by(&cert, ca).is_ok())
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::WriteCaSecret { .. } => "ca",
            Action::PatchWebhook { .. } => "webhook",
            Action::WriteServingSecret { .. } => "serving",
        })
        .collect()
}

#[test]
fn fresh_install_makes_everything_in_order() {
    let mut state = ObservedState {
        webhook: webhook(&["a", "b"]),
        ..ObservedState::default()
    };
    let (plan, writes) = pass(&mut state, &settings(), t0());
    assert_eq!(
        plan.actions,
        vec![
            Action::WriteCaSecret {
                new_ca: Some(CaReason::Missing)
            },
            Action::PatchWebhook {
                entries: vec!["a".to_string(), "b".to_string()]
            },
            Action::WriteServingSecret {
                reissue: Some(ServingReason::Missing)
            },
        ]
    );
    assert_eq!(plan.bundle, vec![BundleEntry::NewCa]);
    assert!(plan.warnings.is_empty());
    assert!(matches!(writes[0], Write::CaSecret(_)));
    assert!(matches!(writes[1], Write::WebhookCaBundle { .. }));
    assert!(matches!(writes[2], Write::ServingSecret(_)));

    // The bundle is exactly the CA; everybody has it; the pair is signed by it.
    let ca = ca_crt(&state);
    assert_eq!(bundle(&state), ca);
    assert_eq!(
        state.serving_secret.as_ref().unwrap().ca_crt.as_deref(),
        Some(ca.as_str())
    );
    for entry in state.webhook.as_ref().unwrap() {
        assert_eq!(entry.ca_bundle.as_deref(), Some(ca.as_bytes()));
    }
    let info = inspect(&ca).unwrap();
    assert!(info
        .subject
        .contains(&format!("spotwright-webhook-ca@{}", t0().unix_timestamp())));
    assert_eq!(info.not_after, t0() - crate::BACKDATE + days(5 * 365));
    let serving = inspect(&tls_crt(&state)).unwrap();
    verify_issued_by(&serving.der, &info.der).unwrap();
    assert!(serving.covers(&settings().dns_names, &[]));
    assert_eq!(serving.not_after, t0() - crate::BACKDATE + days(90));

    // Second pass: nothing.
    let again = decide(&state, &settings(), t0());
    assert!(again.is_empty(), "{again:?}");
    assert!(materialize(&again, &state, &settings(), t0())
        .unwrap()
        .is_empty());
}

#[test]
fn nothing_to_do_until_renewal_is_due() {
    let state = installed(t0());
    // 90-day pair, renewed 30 days before expiry: nothing until day 60 (minus back-dating).
    let due = t0() - crate::BACKDATE + days(60);
    assert!(decide(&state, &settings(), due - time::Duration::seconds(1)).is_empty());
    let plan = decide(&state, &settings(), due);
    assert_eq!(
        plan.actions,
        vec![Action::WriteServingSecret {
            reissue: Some(ServingReason::Expiring {
                not_after: t0() - crate::BACKDATE + days(90)
            })
        }]
    );
}

#[test]
fn serving_near_expiry_is_reissued_with_same_ca() {
    let mut state = installed(t0());
    let old_ca = ca_crt(&state);
    let old_pair = tls_crt(&state);
    let now = t0() + days(75);
    let (plan, writes) = pass(&mut state, &settings(), now);
    assert_eq!(kinds(&plan), ["serving"]);
    assert_eq!(writes.len(), 1);
    assert_eq!(ca_crt(&state), old_ca);
    assert_ne!(tls_crt(&state), old_pair);
    let info = inspect(&tls_crt(&state)).unwrap();
    assert_eq!(info.not_after, now - crate::BACKDATE + days(90));
    verify_issued_by(&info.der, &der(&old_ca)).unwrap();
    assert!(decide(&state, &settings(), now).is_empty());
}

#[test]
fn san_change_reissues_and_superset_is_kept() {
    let mut state = installed(t0());
    let mut wanted = settings();
    wanted.ips = vec!["10.1.2.3".parse().unwrap()];
    let (plan, _) = pass(&mut state, &wanted, t0() + HOUR_T);
    assert_eq!(
        plan.actions,
        vec![Action::WriteServingSecret {
            reissue: Some(ServingReason::NamesChanged)
        }]
    );
    let info = inspect(&tls_crt(&state)).unwrap();
    assert!(info.covers(&wanted.dns_names, &wanted.ips));
    // Asking for less than the certificate has is fine.
    let mut fewer = settings();
    fewer.dns_names.truncate(1);
    assert!(decide(&state, &fewer, t0() + HOUR_T).is_empty());
    // A new DNS name is not.
    let mut more = settings();
    more.dns_names.push("webhook.example.com".to_string());
    assert_eq!(kinds(&decide(&state, &more, t0() + HOUR_T)), ["serving"]);
}

const HOUR_T: time::Duration = time::Duration::hours(1);

#[test]
fn ca_rotation_keeps_both_cas_and_orders_writes() {
    let mut state = installed(t0());
    let old_ca = ca_crt(&state);
    let old_pair = tls_crt(&state);
    let old_not_after = inspect(&old_ca).unwrap().not_after;
    // 5-year CA: rotated once less than a third (~608 days) is left.
    let third = (old_not_after - (t0() - crate::BACKDATE)) / 3;
    let rotate_at = old_not_after - third + time::Duration::seconds(1);
    // Keep the serving pair fresh so that only the CA matters.
    state.serving_secret = None;
    pass(&mut state, &settings(), rotate_at - days(1));
    assert!(decide(&state, &settings(), rotate_at - days(1)).is_empty());
    let served_before = tls_crt(&state);
    assert_ne!(served_before, old_pair);

    let (plan, writes) = pass(&mut state, &settings(), rotate_at);
    assert_eq!(kinds(&plan), ["ca", "webhook", "serving"]);
    assert_eq!(
        plan.actions[0],
        Action::WriteCaSecret {
            new_ca: Some(CaReason::Expiring {
                not_after: old_not_after
            })
        }
    );
    assert_eq!(
        plan.actions[2],
        Action::WriteServingSecret {
            reissue: Some(ServingReason::NewCa)
        }
    );
    assert_eq!(
        plan.bundle,
        vec![BundleEntry::NewCa, BundleEntry::Existing(old_ca.clone())]
    );

    // The bundle holds the new CA first, then the old one.
    let new_ca = ca_crt(&state);
    assert_ne!(new_ca, old_ca);
    assert_eq!(ders(&bundle(&state)), vec![der(&new_ca), der(&old_ca)]);

    // Step by step, the webhook always trusts what is served.
    let Write::WebhookCaBundle {
        bundle: patched, ..
    } = &writes[1]
    else {
        panic!("second write is not the webhook");
    };
    assert!(
        trusted(patched.as_bytes(), &served_before),
        "old pair not trusted after the patch"
    );
    let Write::ServingSecret(data) = &writes[2] else {
        panic!("third write is not the serving Secret");
    };
    let new_pair = data.tls_crt.clone().unwrap();
    assert!(trusted(patched.as_bytes(), &new_pair));
    verify_issued_by(&der(&new_pair), &der(&new_ca)).unwrap();
    assert_eq!(data.ca_crt.as_deref(), Some(patched.as_str()));

    assert!(decide(&state, &settings(), rotate_at).is_empty());
}

#[test]
fn expired_old_ca_is_dropped_from_bundle() {
    let mut state = installed(t0());
    let old_ca = ca_crt(&state);
    let old_not_after = inspect(&old_ca).unwrap().not_after;
    // Rotate, then keep the serving pair renewed until the old CA has expired.
    pass(&mut state, &settings(), old_not_after - days(400));
    let new_ca = ca_crt(&state);
    assert_eq!(ders(&bundle(&state)).len(), 2);
    let mut now = old_not_after - days(400);
    while now < old_not_after - days(10) {
        now += days(30);
        pass(&mut state, &settings(), now);
    }
    assert_eq!(
        ders(&bundle(&state)).len(),
        2,
        "old CA dropped before it expired"
    );

    let (plan, _) = pass(&mut state, &settings(), old_not_after);
    assert_eq!(
        plan.actions,
        vec![
            Action::WriteCaSecret { new_ca: None },
            Action::PatchWebhook {
                entries: vec![
                    "pods.spotwright.io".to_string(),
                    "other.spotwright.io".to_string()
                ]
            },
            Action::WriteServingSecret { reissue: None },
        ]
    );
    assert_eq!(plan.bundle, vec![BundleEntry::Existing(new_ca.clone())]);
    assert_eq!(bundle(&state), new_ca);
    assert_eq!(ca_crt(&state), new_ca);
    assert_eq!(
        state.serving_secret.as_ref().unwrap().ca_crt.as_deref(),
        Some(new_ca.as_str())
    );
    assert!(decide(&state, &settings(), old_not_after).is_empty());
}

#[test]
fn ca_bundle_mismatch_only_patches_that_entry() {
    let mut state = installed(t0());
    let before = state.clone();
    state.webhook.as_mut().unwrap()[1].ca_bundle = Some(b"stale".to_vec());
    let (plan, writes) = pass(&mut state, &settings(), t0() + HOUR_T);
    assert_eq!(
        plan.actions,
        vec![Action::PatchWebhook {
            entries: vec!["other.spotwright.io".to_string()]
        }]
    );
    assert_eq!(writes.len(), 1);
    assert_eq!(state, before);

    // A missing caBundle is patched too.
    state.webhook.as_mut().unwrap()[0].ca_bundle = None;
    assert_eq!(kinds(&plan_at(&state, t0())), ["webhook"]);
}

fn plan_at(state: &ObservedState, now: OffsetDateTime) -> Plan {
    plan(state, &settings(), now)
}

#[test]
fn missing_webhook_config_warns_and_still_writes_secrets() {
    let mut state = ObservedState::default();
    let (plan, _) = pass(&mut state, &settings(), t0());
    assert_eq!(kinds(&plan), ["ca", "serving"]);
    assert_eq!(plan.warnings, vec![Warning::WebhookConfigMissing]);
    let again = decide(&state, &settings(), t0());
    assert!(again.is_empty());
    assert_eq!(again.warnings, vec![Warning::WebhookConfigMissing]);

    // The configuration appears: only the patch.
    state.webhook = webhook(&["pods.spotwright.io"]);
    let (plan, _) = pass(&mut state, &settings(), t0() + HOUR_T);
    assert_eq!(kinds(&plan), ["webhook"]);
    assert!(plan.warnings.is_empty());
}

#[test]
fn unusable_ca_is_replaced_but_its_cert_stays_trusted() {
    let mut state = installed(t0());
    let old_ca = ca_crt(&state);
    let other = CertificateAuthority::generate("other", 10 * DAY, t0()).unwrap();
    state.ca_secret.as_mut().unwrap().ca_key = Some(other.key_pem.clone());
    let (plan, _) = pass(&mut state, &settings(), t0() + HOUR_T);
    assert!(matches!(
        plan.new_ca(),
        Some(CaReason::Unusable(reason)) if reason.contains("does not belong")
    ));
    assert_eq!(kinds(&plan), ["ca", "webhook", "serving"]);
    assert_eq!(ders(&bundle(&state))[1], der(&old_ca));

    // Garbage in ca.crt: a new CA, nothing of the garbage kept.
    let mut state = installed(t0());
    state.ca_secret.as_mut().unwrap().ca_crt = Some("garbage".to_string());
    let (plan, _) = pass(&mut state, &settings(), t0() + HOUR_T);
    assert!(matches!(plan.new_ca(), Some(CaReason::Unusable(_))));
    // The old CA is still in the stored bundle, so it stays until it expires.
    assert_eq!(ders(&bundle(&state)).len(), 2);

    // No key at all.
    let mut state = installed(t0());
    state.ca_secret.as_mut().unwrap().ca_key = None;
    assert_eq!(plan_at(&state, t0()).new_ca(), Some(&CaReason::Missing));
}

#[test]
fn pair_from_another_ca_or_broken_is_reissued() {
    let mut state = installed(t0());
    let other = CertificateAuthority::generate("other", 10 * DAY, t0()).unwrap();
    let foreign = other
        .issue_serving(&settings().dns_names, &[], 10 * DAY, t0())
        .unwrap();
    state.serving_secret.as_mut().unwrap().tls_crt = Some(foreign.cert_pem.clone());
    state.serving_secret.as_mut().unwrap().tls_key = Some(foreign.key_pem.clone());
    assert_eq!(
        plan_at(&state, t0()).actions,
        vec![Action::WriteServingSecret {
            reissue: Some(ServingReason::NotSignedByCurrentCa)
        }]
    );

    // Key of another pair.
    state.serving_secret.as_mut().unwrap().tls_key = Some(other.key_pem.clone());
    assert!(matches!(
        plan_at(&state, t0()).actions.as_slice(),
        [Action::WriteServingSecret {
            reissue: Some(ServingReason::Unusable(_))
        }]
    ));

    // Garbage certificate.
    state.serving_secret.as_mut().unwrap().tls_crt = Some("nope".to_string());
    let (plan, _) = pass(&mut state, &settings(), t0());
    assert!(matches!(
        plan.actions.as_slice(),
        [Action::WriteServingSecret {
            reissue: Some(ServingReason::Unusable(_))
        }]
    ));
    assert!(plan_at(&state, t0()).is_empty());
}

#[test]
fn stale_ca_crt_in_serving_secret_is_refreshed_without_reissue() {
    let mut state = installed(t0());
    let pair = tls_crt(&state);
    state.serving_secret.as_mut().unwrap().ca_crt = None;
    let (plan, _) = pass(&mut state, &settings(), t0());
    assert_eq!(
        plan.actions,
        vec![Action::WriteServingSecret { reissue: None }]
    );
    assert_eq!(tls_crt(&state), pair);
    assert_eq!(
        state.serving_secret.as_ref().unwrap().ca_crt.as_deref(),
        Some(bundle(&state).as_str())
    );
}

#[test]
fn ca_rotation_boundary_is_one_third() {
    let state = installed(t0());
    let info = inspect(&ca_crt(&state)).unwrap();
    let total = info.not_after - info.not_before;
    let boundary = info.not_after - total / 3;
    // Serving pairs expire meanwhile; only look at the CA decision.
    assert_eq!(plan_at(&state, boundary).new_ca(), None);
    assert!(plan_at(&state, boundary + time::Duration::seconds(1))
        .new_ca()
        .is_some());
}

#[test]
fn settings_validation() {
    settings().validate().unwrap();
    let mut s = settings();
    s.renew_before = s.validity;
    assert!(s.validate().is_err());
    let mut s = settings();
    s.ca_validity = Duration::from_secs(60);
    assert!(s.validate().is_err());
    let mut s = settings();
    s.dns_names.clear();
    assert!(s.validate().is_err());
    s.ips.push("127.0.0.1".parse().unwrap());
    s.validate().unwrap();
    let mut s = settings();
    s.dns_names.push("bad name".to_string());
    assert!(s.validate().is_err());
    let mut s = settings();
    s.ca_name = "x".repeat(MAX_CA_NAME + 1);
    assert!(s.validate().is_err());
}

#[test]
fn debug_never_shows_keys() {
    let state = installed(t0());
    let text = format!("{state:?}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let writes = materialize(
        &plan_at(&ObservedState::default(), t0()),
        &ObservedState::default(),
        &settings(),
        t0(),
    )
    .unwrap();
    let text = format!("{writes:?}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

// ---------------------------------------------------------------------------
// Property test: from arbitrary states, one pass converges and keeps trust.

const CA_VALIDITY_DAYS: [u32; 4] = [1, 30, 365, 1825];
const PAIR_VALIDITY_DAYS: [u32; 4] = [1, 30, 90, 365];

#[derive(Clone, Debug)]
struct Made {
    /// How long before t0 the certificate was made, in percent of its validity.
    age_pct: u32,
    /// Index into the validity table.
    validity: usize,
}

impl Made {
    fn made_at(&self, validity_days: u32) -> OffsetDateTime {
        t0() - days(i64::from(validity_days * self.age_pct / 100))
    }
}

#[derive(Clone, Debug)]
enum CaSpec {
    Absent,
    Garbage,
    NoKey(Made),
    WrongKey(Made),
    Good(Made),
}

#[derive(Clone, Debug)]
enum Signer {
    Current,
    Extra(usize),
    Foreign,
}

#[derive(Clone, Debug)]
enum PairSpec {
    Absent,
    Garbage,
    WrongKey,
    Issued {
        by: Signer,
        made: Made,
        all_names: bool,
    },
}

#[derive(Clone, Debug)]
enum BundleSpec {
    Absent,
    Garbage,
    /// Extra CAs, optionally with the current one first.
    Cas {
        with_current: bool,
    },
}

#[derive(Clone, Debug)]
enum EntrySpec {
    /// The current CA and the stored bundle: what a converged pass leaves.
    Union,
    Empty,
    Garbage,
    StoredBundle,
    CurrentOnly,
}

#[derive(Clone, Debug)]
struct Scenario {
    ca: CaSpec,
    extras: Vec<Made>,
    bundle: BundleSpec,
    pair: PairSpec,
    serving_ca_crt_is_bundle: bool,
    webhook: Option<Vec<EntrySpec>>,
    now_minutes: u32,
    settings: usize,
}

fn made() -> impl Strategy<Value = Made> {
    // 0..67 %: fresh, 67..100 %: due for rotation, beyond: expired.
    let age_pct = prop_oneof![3 => 0u32..67, 2 => 67u32..100, 1 => 100u32..150];
    (age_pct, 0usize..CA_VALIDITY_DAYS.len())
        .prop_map(|(age_pct, validity)| Made { age_pct, validity })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let ca = prop_oneof![
        1 => Just(CaSpec::Absent),
        1 => Just(CaSpec::Garbage),
        1 => made().prop_map(CaSpec::NoKey),
        1 => made().prop_map(CaSpec::WrongKey),
        8 => made().prop_map(CaSpec::Good),
    ];
    let signer = prop_oneof![
        4 => Just(Signer::Current),
        2 => (0usize..3).prop_map(Signer::Extra),
        1 => Just(Signer::Foreign),
    ];
    let pair = prop_oneof![
        1 => Just(PairSpec::Absent),
        1 => Just(PairSpec::Garbage),
        1 => Just(PairSpec::WrongKey),
        6 => (signer, made(), any::<bool>()).prop_map(|(by, made, all_names)| PairSpec::Issued {
            by,
            made,
            all_names
        }),
    ];
    let bundle = prop_oneof![
        1 => Just(BundleSpec::Absent),
        1 => Just(BundleSpec::Garbage),
        4 => any::<bool>().prop_map(|with_current| BundleSpec::Cas { with_current }),
    ];
    let entry = prop_oneof![
        5 => Just(EntrySpec::Union),
        1 => Just(EntrySpec::Empty),
        1 => Just(EntrySpec::Garbage),
        2 => Just(EntrySpec::StoredBundle),
        2 => Just(EntrySpec::CurrentOnly),
    ];
    // Mostly soon after t0 (pairs still valid), sometimes years later.
    let now_minutes = prop_oneof![
        3 => 0u32..(2 * 24 * 60),
        1 => 0u32..(60 * 24 * 60),
        1 => 0u32..(3 * 365 * 24 * 60),
    ];
    (
        ca,
        proptest::collection::vec(made(), 0..3),
        bundle,
        pair,
        any::<bool>(),
        proptest::option::weighted(0.85, proptest::collection::vec(entry, 0..4)),
        now_minutes,
        0usize..4,
    )
        .prop_map(
            |(
                ca,
                extras,
                bundle,
                pair,
                serving_ca_crt_is_bundle,
                webhook,
                now_minutes,
                settings,
            )| {
                Scenario {
                    ca,
                    extras,
                    bundle,
                    pair,
                    serving_ca_crt_is_bundle,
                    webhook,
                    now_minutes,
                    settings,
                }
            },
        )
}

fn scenario_settings(i: usize) -> Settings {
    let mut s = settings();
    match i {
        0 => {}
        1 => {
            s.validity = DAY;
            s.renew_before = HOUR;
            s.ca_validity = 30 * DAY;
        }
        2 => {
            s.validity = 2 * HOUR;
            s.renew_before = Duration::ZERO;
            s.ca_validity = HOUR;
        }
        _ => {
            s.ips = vec![IpAddr::from([10, 0, 0, 1]), "fd00::1".parse().unwrap()];
            s.renew_before = 89 * DAY;
        }
    }
    s.validate().unwrap();
    s
}

fn make_ca(m: &Made, name: &str) -> CertificateAuthority {
    CertificateAuthority::generate(
        name,
        DAY * CA_VALIDITY_DAYS[m.validity],
        m.made_at(CA_VALIDITY_DAYS[m.validity]),
    )
    .unwrap()
}

/// Builds the state a scenario describes.
fn build(s: &Scenario, settings: &Settings) -> ObservedState {
    let foreign = CertificateAuthority::generate("foreign", 3650 * DAY, t0() - days(10)).unwrap();
    let extras: Vec<CertificateAuthority> = s
        .extras
        .iter()
        .enumerate()
        .map(|(i, m)| make_ca(m, &format!("extra-{i}")))
        .collect();
    let (ca_secret, current) = match &s.ca {
        CaSpec::Absent => (None, None),
        CaSpec::Garbage => (
            Some(CaSecretData {
                ca_crt: Some("garbage".to_string()),
                ca_key: Some("garbage".to_string()),
                bundle: None,
            }),
            None,
        ),
        CaSpec::NoKey(m) => {
            let ca = make_ca(m, "current");
            (
                Some(CaSecretData {
                    ca_crt: Some(ca.cert_pem.clone()),
                    ca_key: None,
                    bundle: None,
                }),
                Some(ca),
            )
        }
        CaSpec::WrongKey(m) => {
            let ca = make_ca(m, "current");
            (
                Some(CaSecretData {
                    ca_crt: Some(ca.cert_pem.clone()),
                    ca_key: Some(foreign.key_pem.clone()),
                    bundle: None,
                }),
                Some(ca),
            )
        }
        CaSpec::Good(m) => {
            let ca = make_ca(m, "current");
            (
                Some(CaSecretData {
                    ca_crt: Some(ca.cert_pem.clone()),
                    ca_key: Some(ca.key_pem.clone()),
                    bundle: None,
                }),
                Some(ca),
            )
        }
    };
    let stored_bundle = match &s.bundle {
        BundleSpec::Absent => None,
        BundleSpec::Garbage => {
            Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".to_string())
        }
        BundleSpec::Cas { with_current } => {
            let mut text = String::new();
            if *with_current {
                if let Some(ca) = &current {
                    text.push_str(&ca.cert_pem);
                }
            }
            for ca in &extras {
                text.push_str(&ca.cert_pem);
            }
            Some(text)
        }
    };
    let ca_secret = ca_secret.map(|mut d| {
        d.bundle = stored_bundle.clone();
        d
    });

    let pair = match &s.pair {
        PairSpec::Absent => None,
        PairSpec::Garbage => Some(("garbage".to_string(), "garbage".to_string())),
        PairSpec::WrongKey => {
            let p = foreign
                .issue_serving(&settings.dns_names, &settings.ips, 30 * DAY, t0())
                .unwrap();
            Some((p.cert_pem, foreign.key_pem.clone()))
        }
        PairSpec::Issued {
            by,
            made,
            all_names,
        } => {
            let signer = match by {
                Signer::Current => current.as_ref().unwrap_or(&foreign),
                Signer::Extra(i) => extras.get(*i).unwrap_or(&foreign),
                Signer::Foreign => &foreign,
            };
            let names = if *all_names {
                settings.dns_names.clone()
            } else {
                settings.dns_names[..1].to_vec()
            };
            let ips = if *all_names {
                settings.ips.clone()
            } else {
                Vec::new()
            };
            let p = signer
                .issue_serving(
                    &names,
                    &ips,
                    DAY * PAIR_VALIDITY_DAYS[made.validity],
                    made.made_at(PAIR_VALIDITY_DAYS[made.validity]),
                )
                .unwrap();
            Some((p.cert_pem, p.key_pem))
        }
    };
    let serving_secret = pair.map(|(crt, key)| ServingSecretData {
        tls_crt: Some(crt),
        tls_key: Some(key),
        ca_crt: if s.serving_ca_crt_is_bundle {
            stored_bundle.clone()
        } else {
            Some("garbage".to_string())
        },
    });

    let webhook = s.webhook.as_ref().map(|entries| {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| WebhookEntry {
                name: format!("hook-{i}"),
                ca_bundle: match e {
                    EntrySpec::Union => Some(
                        current
                            .iter()
                            .map(|c| c.cert_pem.clone())
                            .chain(stored_bundle.clone())
                            .collect::<String>()
                            .into_bytes(),
                    ),
                    EntrySpec::Empty => None,
                    EntrySpec::Garbage => Some(vec![0xff, 0x00, 0x13]),
                    EntrySpec::StoredBundle => stored_bundle.clone().map(String::into_bytes),
                    EntrySpec::CurrentOnly => {
                        current.as_ref().map(|c| c.cert_pem.clone().into_bytes())
                    }
                },
            })
            .collect()
    });

    ObservedState {
        ca_secret,
        serving_secret,
        webhook,
    }
}

/// The issuer of the served certificate, when the webhook trusts the served
/// pair (every entry has a valid CA that signed it) and that CA is one the CA
/// Secret knows about.
fn served_and_trusted(state: &ObservedState, now: OffsetDateTime) -> bool {
    let (Some(webhook), Some(serving)) = (&state.webhook, &state.serving_secret) else {
        return false;
    };
    let Some(Ok(served)) = serving.tls_crt.as_deref().map(inspect) else {
        return false;
    };
    if !served.valid_at(now) {
        return false;
    }
    let trusted_by = |pem: &[u8]| -> Vec<Vec<u8>> {
        let Ok(text) = std::str::from_utf8(pem) else {
            return Vec::new();
        };
        certificates_der(text)
            .unwrap_or_default()
            .into_iter()
            .filter(|ca| {
                verify_issued_by(&served.der, ca).is_ok()
                    && inspect_der(ca).is_ok_and(|i| i.valid_at(now))
            })
            .collect()
    };
    webhook.iter().all(|e| {
        e.ca_bundle
            .as_deref()
            .is_some_and(|b| !trusted_by(b).is_empty())
    })
}

fn issuer_known_to_ca_secret(state: &ObservedState) -> bool {
    let (Some(ca), Some(serving)) = (&state.ca_secret, &state.serving_secret) else {
        return false;
    };
    let Some(Ok(served)) = serving.tls_crt.as_deref().map(inspect) else {
        return false;
    };
    [ca.ca_crt.as_deref(), ca.bundle.as_deref()]
        .into_iter()
        .flatten()
        .flat_map(|pem| certificates_der(pem).unwrap_or_default())
        .any(|der| verify_issued_by(&served.der, &der).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn one_pass_converges_and_keeps_trust(s in scenario()) {
        let settings = scenario_settings(s.settings);
        let now = t0() + time::Duration::minutes(i64::from(s.now_minutes));
        let mut state = build(&s, &settings);

        let keeps_trust = served_and_trusted(&state, now) && issuer_known_to_ca_secret(&state);
        let plan1 = decide(&state, &settings, now);
        // Writes come in the safe order.
        let order = kinds(&plan1);
        let mut sorted = order.clone();
        sorted.sort_by_key(|k| ["ca", "webhook", "serving"].iter().position(|x| x == k));
        sorted.dedup();
        prop_assert_eq!(&order, &sorted);

        let writes = materialize(&plan1, &state, &settings, now).unwrap();
        prop_assert_eq!(writes.len(), plan1.actions.len());
        for w in &writes {
            state.apply(w);
            // What was served and trusted before stays trusted after every step.
            if keeps_trust {
                prop_assert!(served_and_trusted(&state, now), "trust broken after {:?}", w);
            }
        }

        // Idempotent: nothing left to do.
        let plan2 = decide(&state, &settings, now);
        prop_assert!(plan2.is_empty(), "second plan not empty: {:?}", plan2.actions);

        // The CA that signed the serving pair is the current CA and is in every bundle.
        let ca = state.ca_secret.clone().unwrap();
        let serving = state.serving_secret.clone().unwrap();
        let tls = serving.tls_crt.clone().unwrap();
        let ca_der = der(ca.ca_crt.as_deref().unwrap());
        verify_issued_by(&der(&tls), &ca_der).unwrap();
        let bundle_text = ca.bundle.clone().unwrap();
        prop_assert!(ders(&bundle_text).contains(&ca_der));
        prop_assert!(trusted(bundle_text.as_bytes(), &tls));
        prop_assert_eq!(serving.ca_crt.as_deref(), Some(bundle_text.as_str()));
        if let Some(webhook) = &state.webhook {
            for e in webhook {
                prop_assert_eq!(e.ca_bundle.as_deref(), Some(bundle_text.as_bytes()));
            }
            prop_assert!(webhook.is_empty() || served_and_trusted(&state, now));
        }
        // No expired CA and no duplicates in the bundle.
        let bundle_ders = ders(&bundle_text);
        for (i, d) in bundle_ders.iter().enumerate() {
            prop_assert!(inspect_der(d).unwrap().not_after > now);
            prop_assert!(!bundle_ders[..i].contains(d));
        }
        // The pair covers the names and is not due for renewal.
        let info = inspect(&tls).unwrap();
        prop_assert!(info.covers(&settings.dns_names, &settings.ips));
        prop_assert!(info.valid_at(now));
    }
}

/// One step of a history: time passes, then a pass runs, maybe interrupted.
fn history_step() -> impl Strategy<Value = (u32, Option<usize>)> {
    (
        // How much time passes, in per mille of the CA validity.
        // Mostly within the serving renewal window, sometimes far ahead.
        prop_oneof![4 => 0u32..15, 1 => 0u32..150, 1 => 400u32..700],
        // Interrupted after this many writes (a crash, a lost conflict).
        proptest::option::weighted(0.25, 0usize..3),
    )
}

fn run_history(
    settings: &Settings,
    steps: &[(u32, Option<usize>)],
    stats: &mut [u32; 2],
) -> Result<(), TestCaseError> {
    let mut state = ObservedState {
        webhook: webhook(&["pods.spotwright.io", "other.spotwright.io"]),
        ..ObservedState::default()
    };
    let mut now = t0();
    let ca_validity = time::Duration::try_from(settings.ca_validity).unwrap();
    for (permille, interrupted) in steps {
        now += ca_validity * (f64::from(*permille) / 1000.0);
        let keeps_trust = served_and_trusted(&state, now) && issuer_known_to_ca_secret(&state);
        let plan = decide(&state, settings, now);
        if keeps_trust && plan.new_ca().is_some() {
            stats[0] += 1;
        }
        let writes = materialize(&plan, &state, settings, now).unwrap();
        let applied = interrupted.map_or(writes.len(), |n| n.min(writes.len()));
        for w in &writes[..applied] {
            state.apply(w);
            if keeps_trust {
                prop_assert!(
                    served_and_trusted(&state, now),
                    "trust broken after {:?}",
                    w
                );
            }
        }
        if applied == writes.len() {
            stats[1] += 1;
            let again = decide(&state, settings, now);
            prop_assert!(
                again.is_empty(),
                "second plan not empty: {:?}",
                again.actions
            );
            prop_assert!(served_and_trusted(&state, now));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// From an empty cluster, passes at arbitrary times (some interrupted
    /// part-way) always converge, and what is served stays trusted throughout.
    #[test]
    fn histories_converge_and_keep_trust(
        settings in 0usize..4,
        steps in proptest::collection::vec(history_step(), 1..24),
    ) {
        run_history(&scenario_settings(settings), &steps, &mut [0, 0])?;
    }
}
