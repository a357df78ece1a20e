//! The webhook's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::mutate::Decision;

/// Outcome label values of `spotwright_webhook_admissions_total`.
pub const OUTCOMES: [&str; 5] = ["mutated", "unchanged", "skipped", "invalid", "error"];

#[derive(Clone)]
pub struct Metrics {
    pub admissions: IntCounterVec,
    pub duration: Histogram,
    pub cert_reloads: IntCounterVec,
    pub invalid: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let admissions = IntCounterVec::new(
            Opts::new(
                "spotwright_webhook_admissions_total",
                "Pod admissions answered, by outcome.",
            ),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "spotwright_webhook_admission_duration_seconds",
                "Time to answer one admission request, body read included.",
            )
            .buckets(vec![
                0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        let cert_reloads = IntCounterVec::new(
            Opts::new(
                "spotwright_webhook_cert_reloads_total",
                "Serving certificate reloads, by result.",
            ),
            &["result"],
        )?;
        let invalid = IntCounterVec::new(
            Opts::new(
                "spotwright_webhook_invalid_annotations_total",
                "Opt-ins that could not be honoured (pod admitted unchanged, with a warning), by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(admissions.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(cert_reloads.clone()))?;
        registry.register(Box::new(invalid.clone()))?;
        // Every series exists from the start, so rates and alerts see zeros.
        for outcome in OUTCOMES {
            admissions.with_label_values(&[outcome]);
        }
        for result in ["success", "failure"] {
            cert_reloads.with_label_values(&[result]);
        }
        for reason in [
            "unknown-capacity",
            "unknown-nodepool",
            "nodepool-without-capacity",
        ] {
            invalid.with_label_values(&[reason]);
        }
        Ok(Metrics {
            admissions,
            duration,
            cert_reloads,
            invalid,
        })
    }

    pub fn record(&self, decision: &Decision) {
        let outcome = match decision {
            Decision::Mutated(_) => "mutated",
            Decision::Unchanged => "unchanged",
            Decision::Skipped(_) => "skipped",
            Decision::Invalid(invalid) => {
                self.invalid.with_label_values(&[invalid.reason()]).inc();
                "invalid"
            }
        };
        self.admissions.with_label_values(&[outcome]).inc();
    }

    pub fn record_error(&self) {
        self.admissions.with_label_values(&["error"]).inc();
    }
}
